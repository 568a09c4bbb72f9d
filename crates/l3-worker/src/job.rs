//! Training jobs against a store: fetch K_t, learn a task, evaluate on every task seen, commit
//! K_{t+1} as a child with a record of data, settings and metrics, move the branch by
//! compare-and-swap.

use std::collections::BTreeMap;
use std::time::Duration;

use l3_store::{
    CommitId, CommitInfo, CommitRequest, DatasetId, Expect, RefName, SnapshotId, Store, TensorData,
    TensorValue,
};
use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::model::Knowledge;
use crate::train::{evaluate, train_task, EvalSet, Settings, TaskData, TaskSpec};

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Store(#[from] l3_store::Error),
    #[error(transparent)]
    Worker(#[from] crate::Error),
    #[error("{0}")]
    Invalid(String),
}

pub type JobResult<T> = std::result::Result<T, JobError>;

/// Everything that determines a training job; kept in the commit record so it can be re-run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The parent commit (resolved from a revision before the job runs).
    pub parent: CommitId,
    /// The branch to move to the child; it must point at `parent` (or not exist).
    pub branch: Option<String>,
    pub task: String,
    pub classes: Vec<u32>,
    pub train_data: DatasetId,
    pub test_data: DatasetId,
    pub settings: Settings,
}

/// What a job did.
#[derive(Clone, Debug, Serialize)]
pub struct JobOutcome {
    pub commit: CommitId,
    pub parent: CommitId,
    pub snapshot: SnapshotId,
    /// The branch now pointing at the commit (the fallback ref if the branch moved).
    pub branch: Option<String>,
    pub lost_race_to: Option<CommitId>,
    pub record: serde_json::Value,
    pub new_bytes: u64,
}

/// How a job commits.
#[derive(Clone, Debug)]
pub struct JobOptions {
    pub author: String,
    /// Who holds the job (for pins).
    pub holder: String,
    /// How long the fetched parent stays pinned against gc.
    pub lease: Duration,
    /// A ref that takes the commit if the branch moved meanwhile (e.g. `jobs/<id>`).
    pub fallback: Option<String>,
}

/// Loads a data set from the store as a [`Dataset`] (tensors `x` and `y`).
pub fn load_dataset(store: &Store, id: &DatasetId) -> JobResult<Dataset> {
    let (_, tensors) = l3_store::read_dataset(store, id)?;
    Ok(Dataset::from_tensor_map(&tensors, "x", "y")?)
}

/// Stores a data set (x, y) under `name`.
pub fn store_dataset(store: &Store, name: &str, data: &Dataset) -> JobResult<DatasetId> {
    let tensors = data.to_tensors()?;
    Ok(l3_store::add_dataset(
        store,
        name,
        &tensors,
        &BTreeMap::new(),
    )?)
}

/// Loads a knowledge snapshot from a commit.
pub fn load_knowledge(store: &Store, commit: &CommitId) -> JobResult<(Knowledge, SnapshotId)> {
    let snapshot = SnapshotId(store.session()?.get_commit(commit)?.snapshot);
    let tensors = store.read_snapshot(&snapshot, |_| true)?;
    let k = Knowledge::from_tensors(&tensors).map_err(|e| {
        JobError::Invalid(format!(
            "commit {} is not a worker snapshot: {e}",
            commit.short(12)
        ))
    })?;
    Ok((k, snapshot))
}

fn parse_id(s: &str) -> JobResult<DatasetId> {
    DatasetId::from_hex(s).map_err(|e| JobError::Invalid(format!("registry data set id: {e}")))
}

/// Commits a freshly initialised model as the root K_0 of a stream, recording the untrained
/// model's accuracy on `tasks` (needed for forward transfer).
pub fn commit_root(
    store: &Store,
    branch: &str,
    settings: &Settings,
    input_dim: usize,
    tasks: &[(String, Vec<u32>, DatasetId)],
    author: &str,
) -> JobResult<CommitId> {
    let k = Knowledge::init(settings.model_config(input_dim))?;
    let tests: Vec<Dataset> = tasks
        .iter()
        .map(|(_, _, d)| load_dataset(store, d))
        .collect::<JobResult<_>>()?;
    let sets: Vec<EvalSet> = tasks
        .iter()
        .zip(&tests)
        .map(|((name, classes, _), data)| EvalSet {
            task: name,
            classes,
            data,
        })
        .collect();
    let untrained: serde_json::Map<String, serde_json::Value> = evaluate(&k, &sets)?
        .into_iter()
        .map(|e| (e.task, serde_json::json!(e.accuracy)))
        .collect();
    let tensors = k.to_tensors()?;
    let values = tensors
        .iter()
        .map(|(n, t)| (n.clone(), TensorValue::Data(t)))
        .collect();
    let head = store
        .session()?
        .get_ref(&RefName::Branch(branch.to_string()))?;
    let req = CommitRequest {
        branch: Some(branch.to_string()),
        parents: vec![],
        expected: Expect::exactly(head),
        fallback: None,
        author: author.to_string(),
        message: "initialise the model (K_0)".into(),
        record: serde_json::json!({
            "kind": "init",
            "settings": settings,
            "seed": settings.seed,
            "metrics": {"untrained": untrained},
        }),
        time_ms: None,
    };
    Ok(l3_store::commit_tensors(store, &values, &k.metadata(), &req)?.commit)
}

/// The result of training before it is committed.
struct Trained {
    child: Knowledge,
    record: serde_json::Value,
}

fn train(store: &Store, spec: &JobSpec, parent: &Knowledge) -> JobResult<Trained> {
    // Data: the new task's sets, and the test (and, for joint, train) sets of every task
    // the parent has seen.
    let train_set = load_dataset(store, &spec.train_data)?;
    let test_set = load_dataset(store, &spec.test_data)?;
    let registry = parent.registry().clone();
    let mut old_tests = Vec::new();
    let mut old_trains = Vec::new();
    for t in &registry.tasks {
        old_tests.push(load_dataset(store, &parse_id(&t.test_data)?)?);
        if spec.settings.strategy.name() == "joint" {
            old_trains.push(load_dataset(store, &parse_id(&t.train_data)?)?);
        }
    }
    let mut eval: Vec<EvalSet> = registry
        .tasks
        .iter()
        .zip(&old_tests)
        .map(|(t, d)| EvalSet {
            task: &t.name,
            classes: &t.classes,
            data: d,
        })
        .collect();
    let old_sets = eval.clone();
    eval.push(EvalSet {
        task: &spec.task,
        classes: &spec.classes,
        data: &test_set,
    });

    // Before training: the parent on the new task (R[t-1][t]), an untrained model on it
    // (b_t), and the parent's per-sample correctness on old tasks (for the flip rate).
    let new_set = [eval[eval.len() - 1]];
    let before = evaluate(parent, &new_set)?[0].accuracy;
    let untrained = evaluate(&Knowledge::init(parent.config().clone())?, &new_set)?[0].accuracy;
    let parent_old = evaluate(parent, &old_sets)?;

    let task = TaskSpec {
        name: spec.task.clone(),
        classes: spec.classes.clone(),
        train_data: spec.train_data.to_hex(),
        test_data: spec.test_data.to_hex(),
    };
    let data = TaskData {
        train: &train_set,
        previous: old_trains.iter().collect(),
        eval,
    };
    let (child, report) = train_task(Some(parent), &task, &data, &spec.settings)?;

    let child_old = evaluate(&child, &old_sets)?;
    let (mut flips, mut total) = (0usize, 0usize);
    for (p, c) in parent_old.iter().zip(&child_old) {
        flips += p
            .correct
            .iter()
            .zip(&c.correct)
            .filter(|(b, a)| **b && !**a)
            .count();
        total += p.correct.len();
    }
    let nfr = (total > 0).then(|| flips as f64 / total as f64);
    let row: Vec<serde_json::Value> = report
        .accuracy
        .iter()
        .map(|a| serde_json::json!({"task": a.task, "accuracy": a.accuracy}))
        .collect();
    let acc = report.accuracy.iter().map(|a| a.accuracy).sum::<f64>()
        / report.accuracy.len().max(1) as f64;

    let mut data_ids = vec![spec.train_data.to_hex(), spec.test_data.to_hex()];
    for t in &registry.tasks {
        data_ids.push(t.test_data.clone());
        if spec.settings.strategy.name() == "joint" {
            data_ids.push(t.train_data.clone());
        }
    }
    let record = serde_json::json!({
        "kind": "train",
        "job": spec,
        "data": data_ids,
        "task": spec.task,
        "strategy": spec.settings.strategy,
        "scenario": spec.settings.scenario,
        "seed": spec.settings.seed,
        "epochs": spec.settings.epochs,
        "batch_size": spec.settings.batch_size,
        "lr": spec.settings.lr,
        "final_loss": report.final_loss,
        "wall_time_s": report.wall_time_s,
        "threads": report.threads,
        "metrics": {
            "row": row,
            "acc": acc,
            "before": before,
            "untrained": untrained,
            "negative_flip_rate": nfr,
        },
    });
    Ok(Trained { child, record })
}

/// Runs one job: pin the parent, train, commit the child, move the branch.
pub fn run_job(store: &Store, spec: &JobSpec, opts: &JobOptions) -> JobResult<JobOutcome> {
    let pin = store.pin(spec.parent, &opts.holder, opts.lease)?;
    let result = run_pinned(store, spec, opts);
    // The commit (if any) is on a ref now; the pin has done its work either way.
    let _ = store.unpin(pin);
    result
}

fn run_pinned(store: &Store, spec: &JobSpec, opts: &JobOptions) -> JobResult<JobOutcome> {
    let (parent, parent_snapshot) = load_knowledge(store, &spec.parent)?;
    let Trained { child, record } = train(store, spec, &parent)?;

    // Tensors whose bytes did not change keep the parent's tensor id: neither hashed nor
    // written again.
    let parent_ids: BTreeMap<String, l3_store::TensorId> = {
        let s = store.session()?;
        let snap = s.get_snapshot(&parent_snapshot)?;
        snap.tensors
            .iter()
            .map(|t| (t.name.clone(), l3_store::TensorId(t.tensor)))
            .collect()
    };
    let parent_tensors = parent.to_tensors()?;
    let tensors = child.to_tensors()?;
    let values: BTreeMap<String, TensorValue> = tensors
        .iter()
        .map(|(name, t)| {
            let same = parent_tensors.get(name) == Some(t);
            let value = match (same, parent_ids.get(name)) {
                (true, Some(id)) => TensorValue::Known(*id),
                _ => TensorValue::Data(t),
            };
            (name.clone(), value)
        })
        .collect();

    let (branch, expected) = match &spec.branch {
        Some(b) => {
            let head = store.session()?.get_ref(&RefName::Branch(b.clone()))?;
            match head {
                Some(h) if h != spec.parent && opts.fallback.is_none() => {
                    return Err(JobError::Invalid(format!(
                        "branch \"{b}\" is at {}, not at the parent {}; train onto a new branch",
                        h.short(12),
                        spec.parent.short(12)
                    )))
                }
                // The branch either points at the parent or does not exist yet.
                Some(_) => (Some(b.clone()), Expect::Is(spec.parent)),
                None => (Some(b.clone()), Expect::Absent),
            }
        }
        None => (None, Expect::Any),
    };
    let req = CommitRequest {
        branch,
        parents: vec![spec.parent],
        expected,
        fallback: opts.fallback.clone(),
        author: opts.author.clone(),
        message: format!("train {} ({})", spec.task, spec.settings.strategy.name()),
        record: record.clone(),
        time_ms: None,
    };
    let out = l3_store::commit_tensors(store, &values, &child.metadata(), &req)?;
    Ok(JobOutcome {
        commit: out.commit,
        parent: spec.parent,
        snapshot: out.snapshot,
        branch: out.branch,
        lost_race_to: out.lost_race_to,
        record,
        new_bytes: out.new_bytes,
    })
}

/// How a re-run compares with the commit it reproduces.
#[derive(Clone, Debug, Serialize)]
pub struct Reproduction {
    pub commit: CommitId,
    pub recorded_snapshot: SnapshotId,
    pub rerun_snapshot: SnapshotId,
    pub identical: bool,
    pub recorded_threads: Option<u64>,
    pub threads: usize,
    /// Tensors that differ: name and max |difference| (None if shapes or dtypes differ).
    pub differences: Vec<(String, Option<f64>)>,
}

/// Re-runs the job that produced `commit` from its parent, data and settings, without
/// committing, and compares the result bit for bit.
pub fn reproduce(store: &Store, commit: &CommitId) -> JobResult<Reproduction> {
    let info: CommitInfo = store.session()?.commit_info(commit)?;
    let spec: JobSpec =
        serde_json::from_value(info.record.get("job").cloned().ok_or_else(|| {
            JobError::Invalid(format!(
                "commit {} was not made by a training job",
                commit.short(12)
            ))
        })?)
        .map_err(|e| {
            JobError::Invalid(format!("commit {}: bad job record: {e}", commit.short(12)))
        })?;
    let (parent, _) = load_knowledge(store, &spec.parent)?;
    let Trained { child, .. } = train(store, &spec, &parent)?;
    let tensors = child.to_tensors()?;
    let chunk = store.config().chunk_size;
    let rerun = l3_store::snapshot_id_of(&tensors, &child.metadata(), chunk);

    let mut differences = Vec::new();
    if rerun != info.snapshot {
        let recorded = store.read_snapshot(&info.snapshot, |_| true)?;
        for (name, t) in &tensors {
            match recorded.get(name) {
                Some(r) if r == t => {}
                Some(r) => differences.push((name.clone(), max_abs_diff(r, t))),
                None => differences.push((name.clone(), None)),
            }
        }
    }
    Ok(Reproduction {
        commit: *commit,
        recorded_snapshot: info.snapshot,
        rerun_snapshot: rerun,
        identical: rerun == info.snapshot,
        recorded_threads: info.record.get("threads").and_then(|t| t.as_u64()),
        threads: rayon::current_num_threads(),
        differences,
    })
}

fn max_abs_diff(a: &TensorData, b: &TensorData) -> Option<f64> {
    if a.dtype != b.dtype || a.shape != b.shape {
        return None;
    }
    let fa = l3_store::floats(a.dtype, &a.bytes)?;
    let fb = l3_store::floats(b.dtype, &b.bytes)?;
    Some(
        fa.iter()
            .zip(&fb)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max),
    )
}

/// The accuracy matrix and continual-learning metrics along the first-parent lineage.
#[derive(Clone, Debug, Serialize)]
pub struct LineageMetrics {
    pub commits: Vec<CommitId>,
    pub tasks: Vec<String>,
    /// Row i: accuracy on tasks 0..=i after training task i, then (when known) the accuracy
    /// on task i+1 before it was trained.
    pub matrix: Vec<Vec<f64>>,
    /// Accuracy of an untrained model on each task.
    pub untrained: Vec<f64>,
    pub acc: f64,
    pub bwt: Option<f64>,
    pub fwt: Option<f64>,
    pub forgetting: Option<f64>,
    /// Parent-to-child negative flip rate of each training commit (None for the first).
    pub negative_flip_rate: Vec<Option<f64>>,
}

/// Reads the training records from the root to `rev` and computes the metrics.
pub fn lineage_metrics(store: &Store, head: CommitId) -> JobResult<LineageMetrics> {
    let mut chain = store.session()?.log(head, true, usize::MAX)?;
    chain.reverse();
    let trained: Vec<&CommitInfo> = chain
        .iter()
        .filter(|c| c.record.get("kind").and_then(|k| k.as_str()) == Some("train"))
        .collect();
    if trained.is_empty() {
        return Err(JobError::Invalid(format!(
            "no training commit between the root and {}",
            head.short(12)
        )));
    }
    let tasks: Vec<String> = trained
        .iter()
        .map(|c| c.record["task"].as_str().unwrap_or("?").to_string())
        .collect();
    let mut matrix = Vec::new();
    let mut untrained = Vec::new();
    let mut nfr = Vec::new();
    for (i, c) in trained.iter().enumerate() {
        let m = &c.record["metrics"];
        let row: BTreeMap<&str, f64> = m["row"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| Some((e["task"].as_str()?, e["accuracy"].as_f64()?)))
            .collect();
        let mut r = Vec::new();
        for t in &tasks[..=i] {
            r.push(*row.get(t.as_str()).ok_or_else(|| {
                JobError::Invalid(format!(
                    "commit {} has no accuracy for task \"{t}\"",
                    c.id.short(12)
                ))
            })?);
        }
        if let Some(next) = trained.get(i + 1) {
            if let Some(b) = next.record["metrics"]["before"].as_f64() {
                r.push(b);
            }
        }
        matrix.push(r);
        untrained.push(m["untrained"].as_f64().unwrap_or(f64::NAN));
        nfr.push(m["negative_flip_rate"].as_f64());
    }
    let summary = crate::metrics::summarize(&matrix, Some(&untrained))?;
    Ok(LineageMetrics {
        commits: trained.iter().map(|c| c.id).collect(),
        tasks,
        matrix,
        untrained,
        acc: summary.acc,
        bwt: summary.bwt,
        fwt: summary.fwt,
        forgetting: summary.forgetting,
        negative_flip_rate: nfr,
    })
}
