//! End-to-end tests of the `l3` binary on temporary stores.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data")
}

fn checkpoint() -> PathBuf {
    shared().join("models/all-minilm-l6-v2/model.safetensors")
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let env = Env {
            dir: tempfile::tempdir().unwrap(),
        };
        env.ok(&["init", env.store().to_str().unwrap()]);
        env
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_l3"))
            .args(args)
            .env("L3_STORE", self.store())
            .env("L3_AUTHOR", "tester")
            .env("NO_COLOR", "1")
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "l3 {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn fail(&self, args: &[&str]) -> (i32, String) {
        let out = self.run(args);
        assert!(!out.status.success(), "l3 {args:?} should fail");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8(out.stderr).unwrap(),
        )
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }
}

fn python(script: &str, args: &[&Path]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 is needed for the interoperability tests (.ci/run installs it)");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn import_log_show_export_stats_on_the_real_checkpoint() {
    let env = Env::new();
    let out = env.json(&[
        "import",
        checkpoint().to_str().unwrap(),
        "-m",
        "minilm",
        "--json",
    ]);
    assert_eq!(out["tensors"], 104);
    assert_eq!(out["logical_bytes"], out["new_bytes"]);
    let commit = out["commit"].as_str().unwrap().to_string();
    let again = env.json(&["import", checkpoint().to_str().unwrap(), "--json"]);
    assert_eq!(again["new_bytes"], 0);
    assert_eq!(again["snapshot"], out["snapshot"]);

    let log = env.ok(&["log", "--first-parent"]);
    assert!(log.contains(&commit) && log.contains("minilm"), "{log}");
    assert_eq!(
        env.ok(&["log", "-n", "1", "--json"])
            .matches("\"id\"")
            .count(),
        1
    );
    let show = env.ok(&["show", &commit[..10]]);
    assert!(show.contains("104 tensors") && show.contains("embeddings.word_embeddings.weight"));

    let stats = env.json(&["stats", "--json"]);
    assert_eq!(
        stats["logical_bytes"].as_u64().unwrap(),
        2 * out["logical_bytes"].as_u64().unwrap()
    );
    assert!(stats["stored_bytes"].as_u64().unwrap() < out["logical_bytes"].as_u64().unwrap());
    assert_eq!(stats["chunks"], 1450);

    // l3 export is read by Python's reference safetensors with identical values.
    let exported = env.path("out.safetensors");
    env.ok(&["export", "HEAD", "-o", exported.to_str().unwrap()]);
    let same = python(
        "import sys, numpy as np\nfrom safetensors.numpy import load_file\n\
         a, b = load_file(sys.argv[1]), load_file(sys.argv[2])\n\
         assert a.keys() == b.keys()\n\
         assert all(a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and np.array_equal(a[k], b[k]) for k in a)\n\
         print(len(a))",
        &[&checkpoint(), &exported],
    );
    assert_eq!(same.trim(), "104");

    let part = env.path("part.safetensors");
    env.ok(&[
        "export",
        "HEAD",
        "-o",
        part.to_str().unwrap(),
        "--tensor",
        "pooler.*",
    ]);
    let names = python(
        "import sys\nfrom safetensors import safe_open\n\
         print(','.join(sorted(safe_open(sys.argv[1], 'np').keys())))",
        &[&part],
    );
    assert_eq!(names.trim(), "pooler.dense.bias,pooler.dense.weight");
    assert!(env.ok(&["fsck"]).contains(": 0 problem(s)"));
}

#[test]
fn files_python_writes_import_with_identical_values_and_metadata() {
    let env = Env::new();
    let src = env.path("py.safetensors");
    python(
        "import sys, numpy as np\nfrom safetensors.numpy import save_file\n\
         r = np.random.default_rng(0)\n\
         t = {'f32': r.standard_normal((33, 70001)).astype(np.float32),\n\
              'f16': r.standard_normal((5, 7)).astype(np.float16),\n\
              'f64': r.standard_normal((3,)), 'i64': np.arange(-5, 5, dtype=np.int64),\n\
              'u8': np.arange(256, dtype=np.uint8), 'i32': np.array([[1, -2], [3, -4]], dtype=np.int32),\n\
              'b': np.array([True, False, True]), 'scalar': np.array(3.5, dtype=np.float32),\n\
              'empty': np.zeros((0, 4), dtype=np.float32)}\n\
         save_file(t, sys.argv[1], metadata={'framework': 'numpy', 'step': '12'})",
        &[&src],
    );
    let out = env.json(&["import", src.to_str().unwrap(), "--json"]);
    assert_eq!(out["tensors"], 9);
    let back = env.path("back.safetensors");
    env.ok(&["export", "HEAD", "-o", back.to_str().unwrap()]);
    let verdict = python(
        "import sys, numpy as np\nfrom safetensors.numpy import load_file\nfrom safetensors import safe_open\n\
         a, b = load_file(sys.argv[1]), load_file(sys.argv[2])\n\
         ok = a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and np.array_equal(a[k], b[k]) for k in a)\n\
         m = safe_open(sys.argv[2], 'np').metadata()\n\
         print(ok, m == {'framework': 'numpy', 'step': '12'})",
        &[&src, &back],
    );
    assert_eq!(verdict.trim(), "True True");
}

#[test]
fn branches_tags_reset_revert_reflog_diff_and_lineage() {
    let env = Env::new();
    let a = env.path("a.safetensors");
    let b = env.path("b.safetensors");
    python(
        "import sys, numpy as np\nfrom safetensors.numpy import save_file\n\
         w = np.linspace(-1, 1, 40000, dtype=np.float32).reshape(200, 200)\n\
         save_file({'backbone': w, 'head': np.ones((2, 200), np.float32)}, sys.argv[1])\n\
         w2 = w.copy(); w2[0, :10] += 0.5\n\
         save_file({'backbone': w2, 'head': np.ones((2, 200), np.float32), 'head2': np.zeros(3, np.float32)}, sys.argv[2])",
        &[&a, &b],
    );
    let c1 = env
        .ok(&["import", a.to_str().unwrap(), "-m", "first"])
        .trim()
        .to_string();
    let c2 = env
        .ok(&["import", b.to_str().unwrap(), "-m", "second"])
        .trim()
        .to_string();

    let diff = env.json(&["diff", "HEAD~1", "HEAD", "--json"]);
    let t = diff["tensors"].as_array().unwrap();
    let find = |n: &str| t.iter().find(|x| x["name"] == n).unwrap().clone();
    assert_eq!(find("head2")["status"], "added");
    assert_eq!(find("head")["status"], "unchanged");
    let bb = find("backbone");
    assert_eq!(bb["status"], "changed");
    assert!((bb["l2_delta"].as_f64().unwrap() - (10.0f64 * 0.25).sqrt()).abs() < 1e-6);
    assert!((bb["max_abs"].as_f64().unwrap() - 0.5).abs() < 1e-6);
    assert!((bb["changed_fraction"].as_f64().unwrap() - 10.0 / 40000.0).abs() < 1e-12);
    assert!(find("head2")["l2_delta"].is_null());
    assert!(env
        .ok(&["diff", "HEAD~1", "HEAD", "--stat"])
        .contains("1 added, 0 removed, 1 changed, 1 unchanged"));

    env.ok(&["tag", "v1", &c1[..12]]);
    let (code, err) = env.fail(&["tag", "v1", "HEAD"]);
    assert_eq!(code, 1);
    assert!(err.contains("tag \"v1\" already exists"), "{err}");
    env.ok(&["branch", "exp", "v1"]);
    env.ok(&["switch", "exp"]);
    assert!(env.ok(&["branch"]).contains("* exp"));
    env.ok(&["switch", "main"]);

    env.ok(&["reset", "main", "v1"]);
    assert!(env.ok(&["log", "-n", "1", "--json"]).contains(&c1));
    let reflog = env.json(&["reflog", "main", "--json"]);
    assert_eq!(reflog.as_array().unwrap().len(), 3);
    env.ok(&["reset", "main", &c2]);
    let reverted = env.ok(&["revert", "v1"]).trim().to_string();
    let show = env.json(&["show", &reverted, "--json"]);
    assert_eq!(show["commit"]["parents"][0], c2.as_str());
    assert_eq!(
        show["tensors"].as_array().unwrap().len(),
        2,
        "the knowledge of v1"
    );

    assert_eq!(env.ok(&["merge-base", "exp", "main"]).trim(), c1);
    assert!(env
        .fail(&["blame", "head2"])
        .1
        .contains("no tensor named \"head2\""));
    assert!(env.ok(&["blame", "backbone"]).starts_with(&reverted[..12]));
    let dot = env.ok(&["lineage", "HEAD", "--dot"]);
    assert!(
        dot.starts_with("digraph")
            && dot.contains(&format!("\"{}\" -> \"{}\"", &reverted[..12], &c2[..12]))
    );
    let desc = env.json(&["lineage", &c1, "--descendants", "--json"]);
    assert_eq!(desc.as_array().unwrap().len(), 3);
}

#[test]
fn bad_input_gets_one_line_errors_and_exit_codes() {
    let env = Env::new();
    let (code, err) = env.fail(&["log"]);
    assert_eq!(code, 1);
    assert!(err.contains("has no commits yet"), "{err}");
    let lfs = env.path("model.safetensors");
    std::fs::write(
        &lfs,
        "version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n",
    )
    .unwrap();
    let (code, err) = env.fail(&["import", lfs.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("Git LFS pointer") && err.lines().count() <= 2,
        "{err}"
    );
    assert!(!err.contains("panicked"));
    let (code, _) = env.fail(&["frobnicate"]);
    assert_eq!(code, 2, "usage errors exit 2");
    let (code, err) = env.fail(&["show", "nope~2"]);
    assert_eq!(code, 1);
    assert!(err.contains("revision \"nope~2\""), "{err}");
    let (_, err) = env.fail(&["--store", env.path("nowhere").to_str().unwrap(), "log"]);
    assert!(
        err.contains("not an l3 store") && err.contains("hint:"),
        "{err}"
    );
}

#[test]
fn a_closed_pipe_is_not_an_error() {
    let env = Env::new();
    env.ok(&["import", checkpoint().to_str().unwrap()]);
    // `show` prints more than `head` reads; l3 must exit 0, silently.
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("'{}' log --graph | head -c 1 >/dev/null; '{}' show HEAD | head -c 10 >/dev/null; echo ${{PIPESTATUS[0]}}", env!("CARGO_BIN_EXE_l3"), env!("CARGO_BIN_EXE_l3")))
        .env("L3_STORE", env.store())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
    assert!(
        String::from_utf8_lossy(&out.stderr).is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_main_job_runs_a_stream_and_metrics_reproduce_and_rollback_work() {
    let env = Env::new();
    let stream = Path::new(env!("CARGO_MANIFEST_DIR")).join("streams/split-digits-til.toml");
    let out = env.json(&["run", stream.to_str().unwrap(), "--json"]);
    let m = &out["metrics"];
    assert_eq!(m["tasks"].as_array().unwrap().len(), 5);
    let matrix = m["matrix"].as_array().unwrap();
    let last: Vec<f64> = matrix[4]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(last.len(), 5);
    let acc = last.iter().sum::<f64>() / 5.0;
    assert!(
        (m["acc"].as_f64().unwrap() - acc).abs() < 1e-12,
        "ACC is the mean of the last row"
    );
    assert!(acc > 0.9, "task-incremental Split-Digits reaches {acc}");
    let bwt: f64 = (0..4)
        .map(|j| last[j] - matrix[j][j].as_f64().unwrap())
        .sum::<f64>()
        / 4.0;
    assert!((m["bwt"].as_f64().unwrap() - bwt).abs() < 1e-12);

    // The run's branch became current; its history is root + 5 tasks.
    let log = env.json(&["log", "--json"]);
    assert_eq!(log.as_array().unwrap().len(), 6);
    assert!(env.ok(&["metrics"]).contains("ACC"));
    assert!(env
        .ok(&["reproduce", "HEAD~2"])
        .starts_with("bit-identical"));

    // Every commit names its data; the data sets know who learned from them.
    let users = env.json(&[
        "log",
        "--data",
        "split-digits-til/digits-2-3/train",
        "--json",
    ]);
    assert_eq!(users.as_array().unwrap().len(), 1);
    let diff = env.json(&["diff", "HEAD~1", "HEAD", "--json"]);
    let added: Vec<&str> = diff["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "added")
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        added,
        vec![
            "model/heads/digits-8-9/bias",
            "model/heads/digits-8-9/weight"
        ]
    );
    let head_before = env.json(&["show", "HEAD", "--json"])["commit"]["id"].clone();
    env.ok(&["reset", "split-digits-til", "HEAD~2"]);
    assert_eq!(env.json(&["log", "--json"]).as_array().unwrap().len(), 4);
    let reflog = env.json(&["reflog", "--json"]);
    assert_eq!(
        reflog.as_array().unwrap().last().unwrap()["old"],
        head_before
    );
}

#[test]
fn train_one_task_then_workers_take_queued_jobs() {
    let env = Env::new();
    let first = env.ok(&[
        "train",
        "--task",
        "a",
        "--data",
        "optdigits",
        "--classes",
        "0,1",
        "--hidden",
        "32",
        "--epochs",
        "1",
    ]);
    let commit = first.lines().next().unwrap().to_string();
    assert!(first.contains("  a "));
    let show = env.json(&["show", &commit, "--json"]);
    assert_eq!(show["commit"]["record"]["kind"], "train");
    assert_eq!(
        show["commit"]["parents"].as_array().unwrap().len(),
        1,
        "a root was made first"
    );

    let j1 = env.ok(&[
        "job",
        "submit",
        "--task",
        "b",
        "--data",
        "optdigits",
        "--classes",
        "2,3",
        "--epochs",
        "1",
        "--from",
        "HEAD",
    ]);
    let j2 = env.ok(&[
        "job",
        "submit",
        "--task",
        "c",
        "--data",
        "optdigits",
        "--classes",
        "4,5",
        "--epochs",
        "1",
        "--from",
        "HEAD",
    ]);
    assert_ne!(j1, j2);
    // Both jobs name their parent (--from), so whichever commits second has lost the race:
    // its commit is kept on jobs/<id> with its true parent. Two workers run side by side.
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_l3"))
            .args(["worker", "--once"])
            .env("L3_STORE", env.store())
            .spawn()
            .unwrap()
    };
    let (mut w1, mut w2) = (spawn(), spawn());
    assert!(w1.wait().unwrap().success() && w2.wait().unwrap().success());
    let jobs = env.json(&["job", "ls", "--json"]);
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    assert!(jobs.iter().all(|j| j["state"] == "done"), "{jobs:?}");
    let branches: Vec<String> = jobs
        .iter()
        .map(|j| j["result"]["branch"].as_str().unwrap().to_string())
        .collect();
    assert!(branches.contains(&"main".to_string()));
    let loser = branches
        .iter()
        .find(|b| b.starts_with("jobs/"))
        .unwrap_or_else(|| panic!("one lost the race: {jobs:?}"));
    let parent_of = |rev: &str| env.json(&["show", rev, "--json"])["commit"]["parents"][0].clone();
    assert_eq!(parent_of(loser), serde_json::json!(commit));
    assert_eq!(parent_of("main"), serde_json::json!(commit));
}

#[test]
fn a_worker_snapshot_with_a_renamed_tensor_is_refused_with_the_names() {
    let env = Env::new();
    env.ok(&[
        "train",
        "--task",
        "a",
        "--data",
        "optdigits",
        "--classes",
        "0,1",
        "--hidden",
        "16",
        "--epochs",
        "1",
    ]);
    let good = env.path("k.safetensors");
    let bad = env.path("renamed.safetensors");
    env.ok(&["export", "HEAD", "-o", good.to_str().unwrap()]);
    python(
        "import sys\nfrom safetensors.numpy import load_file, save_file\nfrom safetensors import safe_open\n\
         t = load_file(sys.argv[1]); m = safe_open(sys.argv[1], 'np').metadata()\n\
         t['model/backbone/0/weights'] = t.pop('model/backbone/0/weight')\n\
         save_file(t, sys.argv[2], metadata=m)",
        &[&good, &bad],
    );
    env.ok(&["import", bad.to_str().unwrap(), "--branch", "broken"]);
    let (code, err) = env.fail(&[
        "train",
        "--from",
        "broken",
        "--branch",
        "broken",
        "--task",
        "b",
        "--data",
        "optdigits",
        "--classes",
        "2,3",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("model/backbone/0/weight") && err.contains("model/backbone/0/weights"),
        "{err}"
    );
    assert!(
        err.contains("missing") && err.contains("unexpected"),
        "{err}"
    );
}

#[test]
fn queued_jobs_without_a_parent_follow_their_branch() {
    let env = Env::new();
    for (task, classes) in [("a", "0,1"), ("b", "2,3"), ("c", "4,5")] {
        env.ok(&[
            "job",
            "submit",
            "--task",
            task,
            "--data",
            "optdigits",
            "--classes",
            classes,
            "--hidden",
            "16",
            "--epochs",
            "1",
        ]);
    }
    // The first submit made the root; one worker then chains the three jobs on main.
    env.ok(&["worker", "--once"]);
    let log = env.json(&["log", "--first-parent", "--json"]);
    let subjects: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["message"].as_str().unwrap())
        .collect();
    assert_eq!(subjects.len(), 4, "{subjects:?}");
    assert!(subjects[0].starts_with("train c") && subjects[2].starts_with("train a"));
    assert!(!env.ok(&["branch"]).contains("jobs/"));
    let m = env.json(&["metrics", "--json"]);
    assert_eq!(m["tasks"], serde_json::json!(["a", "b", "c"]));
}

/// Refusals found by trying the product as a new user: each leaves the store (and the
/// user's files) exactly as they were.
#[test]
fn refused_commands_change_nothing() {
    let env = Env::new();
    let base = [
        "train",
        "--task",
        "a",
        "--data",
        "optdigits",
        "--classes",
        "0,1",
        "--hidden",
        "16",
        "--epochs",
        "1",
    ];
    env.ok(&base);
    let snapshot = |env: &Env| {
        (
            env.ok(&["log", "--json"]),
            env.ok(&["data", "ls", "--json"]),
            env.ok(&["branch", "--json"]),
            env.ok(&["tag", "--json"]),
        )
    };
    let before = snapshot(&env);

    // export: a pattern matching nothing must not clobber the output file.
    let precious = env.path("precious.safetensors");
    std::fs::write(&precious, b"do not touch").unwrap();
    let (_, err) = env.fail(&[
        "export",
        "HEAD",
        "-o",
        precious.to_str().unwrap(),
        "--tensor",
        "typo*",
    ]);
    assert!(err.contains("no tensor of HEAD matches typo*"), "{err}");
    assert_eq!(std::fs::read(&precious).unwrap(), b"do not touch");

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "train",
                "--task",
                "a",
                "--data",
                "optdigits",
                "--classes",
                "4,5",
            ],
            "was trained with classes [0, 1]",
        ),
        (
            vec![
                "train",
                "--task",
                "b",
                "--data",
                "optdigits",
                "--classes",
                "4,5",
                "--hidden",
                "50,50",
            ],
            "contradicts the parent",
        ),
        (
            vec![
                "train",
                "--task",
                "b",
                "--data",
                "optdigits",
                "--classes",
                "4,5",
                "--scenario",
                "cil",
            ],
            "contradicts the parent",
        ),
        (
            vec![
                "train",
                "--task",
                "b",
                "--data",
                "optdigits",
                "--classes",
                "4",
            ],
            "at least two",
        ),
        (
            vec![
                "train",
                "--task",
                "",
                "--data",
                "optdigits",
                "--classes",
                "4,5",
            ],
            "invalid task name",
        ),
        (
            vec!["train", "--task", "b", "--data", "nonexistent"],
            "neither a data set",
        ),
        (
            vec![
                "train",
                "--task",
                "b",
                "--data",
                "optdigits",
                "--epochs",
                "0",
            ],
            "epochs",
        ),
        (vec!["show", "HEAD~x"], "unexpected 'x' after ~"),
        (vec!["show", "HEAD^{}"], "unexpected '{' after ^"),
        (vec!["branch", "x", "HEAD~1x"], "unexpected 'x'"),
        (
            vec!["reset", "nonexistent", "HEAD"],
            "no branch named \"nonexistent\"",
        ),
        (vec!["branch", "-d", "main"], "is the current branch"),
        (vec!["revert", "HEAD"], "nothing to revert"),
        (vec!["show", "ab"], "needs 4 digits"),
    ];
    for (args, expected) in cases {
        let (code, err) = env.fail(&args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.contains(expected),
            "{args:?}: expected {expected:?} in {err}"
        );
        assert_eq!(snapshot(&env), before, "{args:?} changed the store");
    }

    // Tags and branches never share a name; the bundled data's name is reserved.
    env.ok(&["tag", "good", "HEAD~1"]);
    let (_, err) = env.fail(&["branch", "good", "HEAD"]);
    assert!(err.contains("a tag of that name exists"), "{err}");
    env.ok(&["branch", "exp", "HEAD"]);
    let (_, err) = env.fail(&["tag", "exp", "HEAD"]);
    assert!(err.contains("a branch of that name exists"), "{err}");
    let csv = env.path("d.csv");
    std::fs::write(&csv, "1,2,0\n3,4,1\n").unwrap();
    let (_, err) = env.fail(&["data", "add", csv.to_str().unwrap(), "--name", "optdigits"]);
    assert!(err.contains("names the bundled data"), "{err}");
    let bad = env.path("bad.csv");
    std::fs::write(&bad, "1,2,0\n3,4\n").unwrap();
    env.fail(&["data", "add", bad.to_str().unwrap(), "--name", "bad"]);
    assert!(!env.ok(&["data", "ls"]).contains("bad"));
}

#[test]
fn reproduce_is_bit_identical_across_thread_counts() {
    let env = Env::new();
    let stream = Path::new(env!("CARGO_MANIFEST_DIR")).join("streams/split-digits-cil.toml");
    let with = |threads: &str, args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_l3"))
            .args(args)
            .env("L3_STORE", env.store())
            .env("RAYON_NUM_THREADS", threads)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    with("2", &["run", stream.to_str().unwrap()]);
    for rev in ["HEAD", "HEAD~3"] {
        let r: serde_json::Value =
            serde_json::from_str(&with("1", &["reproduce", rev, "--json"])).unwrap();
        assert_eq!(r["identical"], true, "{r}");
        assert_eq!(r["recorded_threads"], 2);
        assert_eq!(r["threads"], 1);
    }
}

/// Second round of a new user's findings.
#[test]
fn queue_gc_and_export_guards() {
    let env = Env::new();
    // Classes beyond the model's outputs are refused up front, not a panic later.
    let (code, err) = env.fail(&[
        "train",
        "--task",
        "b",
        "--data",
        "optdigits",
        "--classes",
        "2,99",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("class 99 is not below the model's 10 outputs"),
        "{err}"
    );
    assert!(env.ok(&["data", "ls"]).is_empty(), "nothing was stored");

    env.ok(&[
        "train",
        "--task",
        "a",
        "--data",
        "optdigits",
        "--classes",
        "0,1",
        "--hidden",
        "16",
        "--epochs",
        "1",
    ]);
    // Export never replaces a link or a special file.
    let target = env.path("target.txt");
    std::fs::write(&target, "keep").unwrap();
    let link = env.path("link.safetensors");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let (_, err) = env.fail(&["export", "HEAD", "-o", link.to_str().unwrap()]);
    assert!(err.contains("not a regular file"), "{err}");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());

    // A queued job's parent survives gc even when no branch names it any more.
    env.ok(&["branch", "side", "HEAD"]);
    env.ok(&[
        "job",
        "submit",
        "--task",
        "c",
        "--data",
        "optdigits",
        "--classes",
        "2,3",
        "--epochs",
        "1",
        "--from",
        "side",
        "--branch",
        "other",
    ]);
    env.ok(&["branch", "-d", "side"]);
    env.ok(&["reset", "main", "HEAD~1"]);
    env.ok(&["gc", "--keep-reflog-days", "0"]);
    env.ok(&["worker", "--once"]);
    let jobs = env.json(&["job", "ls", "--json"]);
    assert_eq!(jobs[0]["state"], "done", "{jobs}");

    // A data set whose name is also a file's path is ambiguous.
    let csv = env.path("t.csv");
    std::fs::write(&csv, "1,2,0\n3,4,1\n").unwrap();
    env.ok(&["data", "add", "t.csv", "--name", "t.csv"]);
    let (_, err) = env.fail(&[
        "train",
        "--task",
        "t",
        "--data",
        "t.csv",
        "--test-data",
        "t.csv",
        "--branch",
        "x",
    ]);
    assert!(
        err.contains("both a data set in the store and a file"),
        "{err}"
    );
}
