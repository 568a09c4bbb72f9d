//! The shipped stream specs, the whole Split-Digits stream, and the MNIST loader on real files.

use std::path::{Path, PathBuf};

use l3_worker::{run_stream, Dataset, DatasetSource, Error, Scenario, Strategy, StreamSpec};

fn streams_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../streams")
}

fn no_safetensors(
    p: &Path,
) -> l3_worker::Result<std::collections::BTreeMap<String, l3_store::TensorData>> {
    Err(Error::Settings(format!(
        "unexpected safetensors read of {}",
        p.display()
    )))
}

#[test]
fn shipped_stream_specs_parse() {
    for (file, scenario) in [
        ("split-digits-til.toml", Scenario::TaskIncremental),
        ("split-digits-cil.toml", Scenario::ClassIncremental),
        ("split-mnist-til.toml", Scenario::TaskIncremental),
        ("split-mnist-cil.toml", Scenario::ClassIncremental),
    ] {
        let spec = StreamSpec::load(&streams_dir().join(file)).unwrap();
        assert_eq!(spec.name, file.trim_end_matches(".toml"));
        assert_eq!(spec.scenario, scenario);
        let classes = spec.task_classes();
        assert_eq!(
            classes,
            vec![vec![0, 1], vec![2, 3], vec![4, 5], vec![6, 7], vec![8, 9]]
        );
        match &spec.dataset {
            DatasetSource::Optdigits => assert_eq!(spec.hidden, vec![100, 100]),
            DatasetSource::Mnist { dir } => {
                assert_eq!(spec.hidden, vec![400, 400]);
                assert_eq!(spec.epochs, 4);
                assert!(
                    dir.ends_with("../../shared/data/mnist"),
                    "{}",
                    dir.display()
                );
                assert!(
                    dir.starts_with(streams_dir()),
                    "resolved against the spec's directory"
                );
            }
            other => panic!("unexpected source {other:?}"),
        }
    }
}

#[test]
fn stream_spec_errors_name_the_file_and_problem() {
    let base = "name = \"s\"\nscenario = \"til\"\n[dataset]\nkind = \"optdigits\"\n";
    let tasks = "[[tasks]]\nname = \"a\"\nclasses = [0, 1]\n";
    let ok = format!("{base}[strategy]\nkind = \"replay\"\ncapacity = 10\n{tasks}");
    let spec = StreamSpec::parse(&ok, "ok.toml").unwrap();
    assert_eq!(spec.strategy, Strategy::Replay { capacity: 10 });
    assert_eq!(
        (spec.epochs, spec.batch_size, spec.hidden.clone()),
        (4, 128, vec![400, 400])
    );

    let bad = format!("{base}[strategy]\nkind = \"magic\"\n{tasks}");
    let err = StreamSpec::parse(&bad, "bad.toml").unwrap_err().to_string();
    assert!(
        err.starts_with("invalid stream spec bad.toml:") && err.contains("magic"),
        "{err}"
    );
    let bad = format!("{base}[strategy]\nkind = \"ewc\"\nlambda = -1.0\n{tasks}");
    let err = StreamSpec::parse(&bad, "neg.toml").unwrap_err().to_string();
    assert!(
        err.contains("ewc lambda -1 must be finite and non-negative"),
        "{err}"
    );
    let bad = format!("epoch = 3\n{base}[strategy]\nkind = \"naive\"\n{tasks}");
    let err = StreamSpec::parse(&bad, "typo.toml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `epoch`"), "{err}");
    let mnist = "name = \"s\"\nscenario = \"cil\"\n[dataset]\nkind = \"mnist\"\ndri = \"x\"\n";
    let bad = format!("{mnist}[strategy]\nkind = \"naive\"\n{tasks}");
    let err = StreamSpec::parse(&bad, "dir.toml").unwrap_err().to_string();
    assert!(err.contains("unknown field `dri`"), "{err}");
    let bad = format!("{base}[strategy]\nkind = \"naive\"\n{tasks}{tasks}");
    let err = StreamSpec::parse(&bad, "dup.toml").unwrap_err().to_string();
    assert!(err.contains("task \"a\" appears twice"), "{err}");
}

#[test]
fn split_digits_stream_runs_end_to_end() {
    let spec = StreamSpec::load(&streams_dir().join("split-digits-til.toml")).unwrap();
    let data = spec.load_task_data(&mut no_safetensors).unwrap();
    assert_eq!(data.train.iter().map(|d| d.n).sum::<usize>(), 3823);
    let mut seen = Vec::new();
    let result = run_stream(&spec, &data, &mut |i, k, r| {
        seen.push((i, k.registry().tasks.len(), r.task.clone()));
        Ok(())
    })
    .unwrap();
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[4], (4, 5, "digits-8-9".to_string()));
    assert_eq!(result.accuracy.len(), 5);
    assert!(result.accuracy.iter().all(|row| row.len() == 5));
    let m = &result.metrics;
    assert!(
        m.acc > 0.95,
        "split-digits task-incremental EWC ACC {}",
        m.acc
    );
    assert!(m.bwt.unwrap() > -0.05, "BWT {:?}", m.bwt);
    // Untrained two-way heads are near chance.
    assert!(
        result.untrained.iter().all(|b| *b < 0.9),
        "{:?}",
        result.untrained
    );
    assert_eq!(result.negative_flip_rates.len(), 4);
    let json = serde_json::to_string(&result.reports[0]).unwrap();
    assert!(
        json.contains("\"strategy\":\"ewc\"") && json.contains("\"wall_time_s\""),
        "{json}"
    );
}

/// The real MNIST files beside the project (`../shared/data/mnist`), when present.
fn mnist_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/mnist");
    if dir.join("t10k-images-idx3-ubyte.gz").is_file() {
        Some(dir)
    } else {
        eprintln!("skipping: no MNIST files in {}", dir.display());
        None
    }
}

#[test]
fn mnist_test_set_loads_from_gzipped_idx() {
    let Some(dir) = mnist_dir() else { return };
    let test = Dataset::mnist(&dir, false).unwrap();
    assert_eq!((test.n, test.d), (10_000, 784));
    assert_eq!(test.classes(), (0..10).collect::<Vec<_>>());
    // The first t10k label is a 7; pixel values are scaled into [0, 1].
    assert_eq!(test.y[0], 7);
    assert!(test.x.iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(test.x.contains(&1.0));
}

#[test]
fn mnist_loader_rejects_swapped_and_truncated_files() {
    let Some(dir) = mnist_dir() else { return };
    let images = dir.join("t10k-images-idx3-ubyte.gz");
    let labels = dir.join("t10k-labels-idx1-ubyte.gz");
    let err = Dataset::mnist_files(&labels, &images)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("magic number 0x00000801, expected 0x00000803"),
        "{err}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let short = tmp.path().join("short-labels");
    let mut bytes = vec![0, 0, 8, 1, 0, 0, 0x27, 0x10];
    bytes.extend(std::iter::repeat_n(3u8, 10));
    std::fs::write(&short, bytes).unwrap();
    let err = Dataset::mnist_files(&images, &short)
        .unwrap_err()
        .to_string();
    assert!(err.contains("need 10000 data bytes, file has 10"), "{err}");
    let err = Dataset::mnist(tmp.path(), true).unwrap_err().to_string();
    assert!(err.contains("train-images-idx3-ubyte[.gz]"), "{err}");
}
