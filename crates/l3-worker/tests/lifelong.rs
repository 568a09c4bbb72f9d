//! Lifelong-learning behaviour on the real bundled optdigits data.

use std::collections::BTreeMap;

use l3_store::TensorData;
use l3_worker::{
    evaluate, split_by_classes, train_task, Dataset, Error, EvalSet, Knowledge, Scenario, Settings,
    Strategy, TaskData, TaskSpec,
};

struct Split {
    classes: Vec<Vec<u32>>,
    train: Vec<Dataset>,
    test: Vec<Dataset>,
}

fn split(classes: &[&[u32]]) -> Split {
    let classes: Vec<Vec<u32>> = classes.iter().map(|c| c.to_vec()).collect();
    let train = Dataset::optdigits_bundled(true).unwrap();
    let test = Dataset::optdigits_bundled(false).unwrap();
    Split {
        train: split_by_classes(&train, &classes).unwrap(),
        test: split_by_classes(&test, &classes).unwrap(),
        classes,
    }
}

fn name(i: usize) -> String {
    format!("task-{i}")
}

fn spec(s: &Split, i: usize) -> TaskSpec {
    TaskSpec {
        name: name(i),
        classes: s.classes[i].clone(),
        train_data: format!("optdigits/train/{i}"),
        test_data: format!("optdigits/test/{i}"),
    }
}

fn settings(strategy: Strategy, scenario: Scenario) -> Settings {
    Settings {
        strategy,
        scenario,
        epochs: 3,
        batch_size: 32,
        lr: 0.002,
        seed: 7,
        hidden: vec![64, 64],
        ..Settings::default()
    }
}

/// Trains tasks `0..upto` in order from a fresh root; returns every snapshot.
fn run(s: &Split, settings: &Settings, upto: usize) -> Vec<Knowledge> {
    let mut out: Vec<Knowledge> = Vec::new();
    for i in 0..upto {
        let data = TaskData {
            train: &s.train[i],
            previous: s.train[..i].iter().collect(),
            eval: vec![],
        };
        let (k, report) = train_task(out.last(), &spec(s, i), &data, settings).unwrap();
        assert_eq!(report.task_index, i);
        assert!(report.final_loss.is_finite());
        out.push(k);
    }
    out
}

fn accuracies(k: &Knowledge, s: &Split, tasks: usize) -> Vec<f64> {
    let names: Vec<String> = (0..tasks).map(name).collect();
    let sets: Vec<EvalSet<'_>> = (0..tasks)
        .map(|i| EvalSet {
            task: &names[i],
            classes: &s.classes[i],
            data: &s.test[i],
        })
        .collect();
    evaluate(k, &sets)
        .unwrap()
        .iter()
        .map(|e| e.accuracy)
        .collect()
}

fn model_tensors(k: &Knowledge) -> BTreeMap<String, TensorData> {
    k.to_tensors()
        .unwrap()
        .into_iter()
        .filter(|(n, _)| n.starts_with("model/"))
        .collect()
}

#[test]
fn ewc_with_lambda_zero_is_naive_bit_for_bit() {
    let s = split(&[&[0, 1], &[2, 3], &[4, 5]]);
    let naive = run(&s, &settings(Strategy::Naive, Scenario::TaskIncremental), 3);
    let ewc = run(
        &s,
        &settings(
            Strategy::Ewc {
                lambda: 0.0,
                gamma: 1.0,
            },
            Scenario::TaskIncremental,
        ),
        3,
    );
    assert_eq!(model_tensors(&naive[2]), model_tensors(&ewc[2]));
    // EWC did keep its state; naive did not.
    let ewc_tensors = ewc[2].to_tensors().unwrap();
    assert!(ewc_tensors.contains_key("state/ewc/fisher/model/backbone/0/weight"));
    assert!(!naive[2]
        .to_tensors()
        .unwrap()
        .keys()
        .any(|k| k.starts_with("state/ewc")));
    let fisher = ewc_tensors["state/ewc/fisher/model/backbone/1/weight"]
        .to_f32()
        .unwrap();
    assert!(fisher.iter().all(|v| *v >= 0.0) && fisher.iter().any(|v| *v > 0.0));
}

#[test]
fn strong_ewc_keeps_old_tasks_better_than_naive() {
    let s = split(&[&[0, 1], &[2, 3], &[4, 5], &[6, 7], &[8, 9]]);
    let mut base = settings(Strategy::Naive, Scenario::TaskIncremental);
    base.epochs = 6;
    let naive = run(&s, &base, 5);
    base.strategy = Strategy::Ewc {
        lambda: 10_000.0,
        gamma: 1.0,
    };
    let ewc = run(&s, &base, 5);
    let old = |k: &Knowledge| accuracies(k, &s, 4).iter().sum::<f64>() / 4.0;
    let (naive_old, ewc_old) = (old(&naive[4]), old(&ewc[4]));
    eprintln!("old-task accuracy after 5 tasks: naive {naive_old:.4}, ewc {ewc_old:.4}");
    assert!(
        ewc_old > naive_old + 0.01,
        "ewc {ewc_old} vs naive {naive_old} on old tasks"
    );
    // The penalty pins the backbone: the first task's accuracy barely moves under EWC.
    let first_after_first = accuracies(&ewc[0], &s, 1)[0];
    let first_at_end = accuracies(&ewc[4], &s, 1)[0];
    eprintln!("ewc first task: {first_after_first:.4} -> {first_at_end:.4}");
    assert!(
        first_at_end >= first_after_first - 0.02,
        "{first_after_first} -> {first_at_end}"
    );
}

#[test]
fn replay_beats_naive_class_incremental() {
    let s = split(&[&[0, 1], &[2, 3], &[4, 5]]);
    let naive = run(
        &s,
        &settings(Strategy::Naive, Scenario::ClassIncremental),
        3,
    );
    let replay = run(
        &s,
        &settings(
            Strategy::Replay { capacity: 200 },
            Scenario::ClassIncremental,
        ),
        3,
    );
    let mean = |k: &Knowledge| accuracies(k, &s, 3).iter().sum::<f64>() / 3.0;
    let (n, r) = (mean(&naive[2]), mean(&replay[2]));
    eprintln!("class-incremental accuracy after 3 tasks: naive {n:.4}, replay {r:.4}");
    // Naive class-incremental forgets old classes almost completely (about 1/3 overall).
    assert!(n < 0.45, "naive {n}");
    assert!(r > n + 0.3, "replay {r} vs naive {n}");
    let buffer = replay[2].replay().unwrap();
    assert_eq!(buffer.len(), 200);
    let first_two: u64 = (s.train[0].n + s.train[1].n + s.train[2].n) as u64;
    assert_eq!(buffer.seen, first_two);
    // Every task is represented in the reservoir.
    for t in 0..3 {
        assert!(
            buffer.task.iter().filter(|x| **x == t).count() > 30,
            "task {t}"
        );
    }
}

#[test]
fn training_twice_gives_identical_bytes() {
    let s = split(&[&[0, 1], &[2, 3]]);
    for strategy in [
        Strategy::Replay { capacity: 100 },
        Strategy::Ewc {
            lambda: 50.0,
            gamma: 0.9,
        },
        Strategy::Lwf {
            temperature: 2.0,
            alpha: 1.0,
        },
    ] {
        for scenario in [Scenario::TaskIncremental, Scenario::ClassIncremental] {
            let st = settings(strategy.clone(), scenario);
            let a = run(&s, &st, 2);
            let b = run(&s, &st, 2);
            assert_eq!(
                a[1].to_tensors().unwrap(),
                b[1].to_tensors().unwrap(),
                "{strategy:?}"
            );
            let mut other = st.clone();
            other.seed += 1;
            let c = run(&s, &other, 2);
            assert_ne!(
                model_tensors(&a[1]),
                model_tensors(&c[1]),
                "the seed must matter"
            );
        }
    }
}

#[test]
fn resuming_from_tensors_matches_uninterrupted_training() {
    let s = split(&[&[0, 1], &[2, 3], &[4, 5]]);
    for scenario in [Scenario::TaskIncremental, Scenario::ClassIncremental] {
        let st = settings(Strategy::Replay { capacity: 150 }, scenario);
        let straight = run(&s, &st, 3);
        let mut k = straight[0].clone();
        for i in 1..3 {
            let reloaded = Knowledge::from_tensors(&k.to_tensors().unwrap()).unwrap();
            assert_eq!(reloaded, k);
            let data = TaskData {
                train: &s.train[i],
                previous: vec![],
                eval: vec![],
            };
            k = train_task(Some(&reloaded), &spec(&s, i), &data, &st)
                .unwrap()
                .0;
        }
        assert_eq!(k.to_tensors().unwrap(), straight[2].to_tensors().unwrap());
    }
    // EWC state survives the round trip too.
    let st = settings(
        Strategy::Ewc {
            lambda: 100.0,
            gamma: 0.5,
        },
        Scenario::ClassIncremental,
    );
    let straight = run(&s, &st, 2);
    let reloaded = Knowledge::from_tensors(&straight[0].to_tensors().unwrap()).unwrap();
    let data = TaskData {
        train: &s.train[1],
        previous: vec![],
        eval: vec![],
    };
    let resumed = train_task(Some(&reloaded), &spec(&s, 1), &data, &st)
        .unwrap()
        .0;
    assert_eq!(
        resumed.to_tensors().unwrap(),
        straight[1].to_tensors().unwrap()
    );
}

#[test]
fn untouched_tensors_keep_their_bytes() {
    let s = split(&[&[0, 1], &[2, 3]]);
    let til = run(&s, &settings(Strategy::Naive, Scenario::TaskIncremental), 2);
    let (before, after) = (til[0].to_tensors().unwrap(), til[1].to_tensors().unwrap());
    for n in ["model/heads/task-0/weight", "model/heads/task-0/bias"] {
        assert_eq!(before[n], after[n], "{n}");
    }
    assert_ne!(
        before["model/backbone/0/weight"],
        after["model/backbone/0/weight"]
    );
    assert!(after.contains_key("model/heads/task-1/weight"));
    assert_eq!(after["model/heads/task-1/weight"].shape, vec![2, 64]);

    // Class-incremental: rows of classes not seen yet stay exactly as initialised.
    let cil = run(
        &s,
        &settings(Strategy::Naive, Scenario::ClassIncremental),
        1,
    );
    let root =
        Knowledge::init(settings(Strategy::Naive, Scenario::ClassIncremental).model_config(64))
            .unwrap();
    let w0 = root.params()["model/heads/all/weight"].values.clone();
    let w1 = cil[0].params()["model/heads/all/weight"].values.clone();
    let row = |w: &[f32], r: usize| w[r * 64..(r + 1) * 64].to_vec();
    for r in 2..10 {
        assert_eq!(row(&w0, r), row(&w1, r), "row {r}");
    }
    assert_ne!(row(&w0, 0), row(&w1, 0));
}

#[test]
fn from_tensors_lists_missing_unexpected_and_wrong_tensors() {
    let s = split(&[&[0, 1], &[2, 3]]);
    let k = run(
        &s,
        &settings(
            Strategy::Ewc {
                lambda: 1.0,
                gamma: 1.0,
            },
            Scenario::TaskIncremental,
        ),
        2,
    );
    let mut map = k[1].to_tensors().unwrap();
    let t = map.remove("model/heads/task-1/weight").unwrap();
    map.insert("model/heads/task-one/weight".into(), t);
    let bad = TensorData::from_f32(vec![3], &[0.0; 3]).unwrap();
    map.insert("model/backbone/1/bias".into(), bad);
    match Knowledge::from_tensors(&map) {
        Err(Error::SnapshotMismatch(m)) => {
            assert_eq!(m.missing, vec!["model/heads/task-1/weight".to_string()]);
            assert_eq!(
                m.unexpected,
                vec!["model/heads/task-one/weight".to_string()]
            );
            assert_eq!(m.wrong.len(), 1);
            assert!(
                m.wrong[0].starts_with("model/backbone/1/bias: expected F32 [64]"),
                "{:?}",
                m.wrong
            );
            let text = Error::SnapshotMismatch(m).to_string();
            assert!(
                text.contains("missing tensors: model/heads/task-1/weight"),
                "{text}"
            );
            assert!(
                text.contains("unexpected tensors: model/heads/task-one/weight"),
                "{text}"
            );
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    // A snapshot without the registry is rejected by name.
    let mut map = k[1].to_tensors().unwrap();
    map.remove("state/registry");
    let err = Knowledge::from_tensors(&map).unwrap_err().to_string();
    assert!(err.contains("no state/registry tensor"), "{err}");
    // Dropping the EWC state is reported, not silently accepted.
    let map: BTreeMap<_, _> = k[1]
        .to_tensors()
        .unwrap()
        .into_iter()
        .filter(|(n, _)| !n.starts_with("state/ewc/fisher/model/backbone/0"))
        .collect();
    match Knowledge::from_tensors(&map) {
        Err(Error::SnapshotMismatch(m)) => assert_eq!(m.missing.len(), 2, "{m}"),
        other => panic!("expected a mismatch, got {other:?}"),
    }
}

#[test]
fn joint_training_needs_previous_data_and_beats_naive_class_incremental() {
    let s = split(&[&[0, 1], &[2, 3], &[4, 5]]);
    let st = settings(Strategy::Joint, Scenario::ClassIncremental);
    let joint = run(&s, &st, 3);
    let naive = run(
        &s,
        &settings(Strategy::Naive, Scenario::ClassIncremental),
        3,
    );
    let mean = |k: &Knowledge| accuracies(k, &s, 3).iter().sum::<f64>() / 3.0;
    assert!(mean(&joint[2]) > 0.9, "joint {}", mean(&joint[2]));
    assert!(mean(&joint[2]) > mean(&naive[2]) + 0.4);
    let data = TaskData {
        train: &s.train[1],
        previous: vec![],
        eval: vec![],
    };
    let err = train_task(Some(&joint[0]), &spec(&s, 1), &data, &st)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("needs the training data of the 1 earlier tasks"),
        "{err}"
    );
}

#[test]
fn evaluation_gives_untrained_accuracy_and_rejects_bad_sets() {
    let s = split(&[&[0, 1], &[2, 3]]);
    let st = settings(Strategy::Naive, Scenario::TaskIncremental);
    let root = Knowledge::init(st.model_config(64)).unwrap();
    // An untrained head on a two-class task is near chance, never perfect.
    let b = accuracies(&root, &s, 2);
    assert!(b.iter().all(|a| *a < 0.9), "{b:?}");
    let k = run(&s, &st, 1);
    let sets = [EvalSet {
        task: "task-0",
        classes: &[0, 2],
        data: &s.test[0],
    }];
    let err = evaluate(&k[0], &sets).unwrap_err().to_string();
    assert!(err.contains("the task was trained with [0, 1]"), "{err}");
    let sets = [EvalSet {
        task: "task-1",
        classes: &[2, 3],
        data: &s.test[0],
    }];
    let err = evaluate(&k[0], &sets).unwrap_err().to_string();
    assert!(
        err.contains("has label 0, not among classes [2, 3]"),
        "{err}"
    );
    let e = evaluate(
        &k[0],
        &[EvalSet {
            task: "task-0",
            classes: &[0, 1],
            data: &s.test[0],
        }],
    )
    .unwrap();
    assert_eq!(e[0].correct.len(), s.test[0].n);
    assert!(e[0].accuracy > 0.95, "{}", e[0].accuracy);
}

#[test]
fn settings_mismatch_with_parent_is_an_error() {
    let s = split(&[&[0, 1], &[2, 3]]);
    let st = settings(Strategy::Naive, Scenario::TaskIncremental);
    let k = run(&s, &st, 1);
    let data = TaskData {
        train: &s.train[1],
        previous: vec![],
        eval: vec![],
    };
    let mut other = st.clone();
    other.hidden = vec![32];
    let err = train_task(Some(&k[0]), &spec(&s, 1), &data, &other)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("hidden sizes [32] differ from the parent's [64, 64]"),
        "{err}"
    );
    let mut other = st.clone();
    other.scenario = Scenario::ClassIncremental;
    let err = train_task(Some(&k[0]), &spec(&s, 1), &data, &other)
        .unwrap_err()
        .to_string();
    assert!(err.contains("scenario class-incremental differs"), "{err}");
    let err = train_task(
        Some(&k[0]),
        &spec(&s, 0),
        &TaskData {
            train: &s.train[0],
            previous: vec![],
            eval: vec![],
        },
        &st,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("task \"task-0\" is already trained"), "{err}");
}

#[test]
fn an_explicit_root_trains_like_no_parent() {
    let s = split(&[&[0, 1]]);
    let st = settings(
        Strategy::Replay { capacity: 50 },
        Scenario::ClassIncremental,
    );
    let root = Knowledge::init(st.model_config(64)).unwrap();
    assert!(root.registry().tasks.is_empty());
    let root = Knowledge::from_tensors(&root.to_tensors().unwrap()).unwrap();
    let data = TaskData {
        train: &s.train[0],
        previous: vec![],
        eval: vec![],
    };
    let from_root = train_task(Some(&root), &spec(&s, 0), &data, &st).unwrap().0;
    let from_none = train_task(None, &spec(&s, 0), &data, &st).unwrap().0;
    assert_eq!(
        from_root.to_tensors().unwrap(),
        from_none.to_tensors().unwrap()
    );
    let meta = from_root.metadata();
    assert_eq!(meta["l3.scenario"], "class-incremental");
    assert_eq!(meta["l3.tasks"], "task-0");
    assert_eq!(meta["l3.strategy"], "replay");
}
