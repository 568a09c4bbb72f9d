//! Training one task on top of a parent snapshot, and evaluation.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use candle_core::Tensor;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::{
    backbone_bias, backbone_weight, head_bias, head_weight, validate_classes, validate_task_name,
    Knowledge, ModelConfig, Param, ReplayBuffer, Scenario, TaskEntry, CIL_HEAD, DEFAULT_OUTPUTS,
};
use crate::net::{self, Net};
use crate::step::{self, Batch, Distill, Objective};
use crate::strategy::{Adam, AdamConfig, Strategy};

/// Base of the RNG streams used for shuffling and replay sampling (stream = base + task index).
const TRAIN_STREAM: u64 = 1 << 32;
/// Rows per forward pass when evaluating or computing the Fisher diagonal.
const EVAL_CHUNK: usize = 2048;

/// Everything that determines how a task is trained. Serialised into [`TrainReport`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub strategy: Strategy,
    pub scenario: Scenario,
    pub epochs: usize,
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Seeds the initial weights (root only) and each task's shuffling and replay sampling.
    pub seed: u64,
    /// Hidden layer widths (must match the parent's).
    pub hidden: Vec<usize>,
    /// Width of the class-incremental head (must match the parent's).
    pub outputs: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            strategy: Strategy::Naive,
            scenario: Scenario::TaskIncremental,
            epochs: 4,
            batch_size: 128,
            lr: 0.001,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            seed: 0,
            hidden: vec![400, 400],
            outputs: DEFAULT_OUTPUTS,
        }
    }
}

impl Settings {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Settings(m));
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch size must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("learning rate {} must be positive", self.lr));
        }
        for (name, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return bad(format!("adam {name} {b} must be in [0, 1)"));
            }
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return bad(format!("adam eps {} must be positive", self.eps));
        }
        self.strategy.validate()
    }

    /// The model configuration a root snapshot gets for inputs of width `input_dim`.
    pub fn model_config(&self, input_dim: usize) -> ModelConfig {
        ModelConfig {
            input_dim,
            hidden: self.hidden.clone(),
            scenario: self.scenario,
            outputs: self.outputs,
            init_seed: self.seed,
        }
    }
}

/// The task to train.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub name: String,
    pub classes: Vec<u32>,
    /// Opaque id of the training data set, recorded in the registry.
    pub train_data: String,
    /// Opaque id of the test data set, recorded in the registry.
    pub test_data: String,
}

/// A test set of one task.
#[derive(Clone, Copy, Debug)]
pub struct EvalSet<'a> {
    pub task: &'a str,
    pub classes: &'a [u32],
    pub data: &'a Dataset,
}

/// The data a task is trained with.
#[derive(Clone, Debug)]
pub struct TaskData<'a> {
    /// The task's training samples (labels must be among the task's classes).
    pub train: &'a Dataset,
    /// Training data of every task in the parent's registry, in registry order. Required by
    /// the joint strategy, ignored by the others (may be empty for them).
    pub previous: Vec<&'a Dataset>,
    /// Test sets evaluated after training, giving the report's accuracy row.
    pub eval: Vec<EvalSet<'a>>,
}

/// The accuracy on one task's test set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskAccuracy {
    pub task: String,
    pub accuracy: f64,
    pub samples: usize,
}

/// What training one task did; serialisable for the commit record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    pub task: String,
    pub task_index: usize,
    pub strategy: String,
    pub scenario: Scenario,
    /// Mean training loss over the last epoch (including penalty and distillation terms).
    pub final_loss: f64,
    pub epochs: usize,
    pub steps: usize,
    pub train_samples: usize,
    pub wall_time_s: f64,
    /// Accuracy on each of [`TaskData::eval`], in order.
    pub accuracy: Vec<TaskAccuracy>,
    pub settings: Settings,
    /// Threads candle's matrix products used (results are bit-identical for a fixed count).
    pub threads: usize,
}

/// The result of evaluating one test set.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskEval {
    pub task: String,
    pub accuracy: f64,
    /// Per test sample: whether the prediction was right (for the negative flip rate).
    pub correct: Vec<bool>,
}

/// A training sample's origin: the data source and row.
#[derive(Clone, Copy)]
struct Sample {
    source: u32,
    row: u32,
}

/// One training source: a data set and the registry index of its task.
struct Source<'a> {
    data: &'a Dataset,
    task: u32,
}

/// Trains `spec` on top of `parent` (or a fresh model initialised from `settings.seed` when
/// `parent` is `None`) and returns the child snapshot with a report.
///
/// Deterministic: the same parent, data, settings and thread count give bit-identical
/// tensors. Parameters that receive no gradient (other tasks' heads, unseen classes' rows of
/// the class-incremental head) are copied unchanged, so their bytes are identical.
pub fn train_task(
    parent: Option<&Knowledge>,
    spec: &TaskSpec,
    data: &TaskData<'_>,
    settings: &Settings,
) -> Result<(Knowledge, TrainReport)> {
    let started = Instant::now();
    settings.validate()?;
    validate_task_name(&spec.name)?;
    if let Some(c) = spec
        .classes
        .iter()
        .find(|c| **c as usize >= settings.outputs)
    {
        return Err(Error::Settings(format!(
            "task \"{}\": class {c} is not below the model's {} outputs",
            spec.name, settings.outputs
        )));
    }
    let train = data.train;
    let mut k = match parent {
        Some(p) => {
            check_compatible(p.config(), settings, train.d)?;
            p.clone()
        }
        None => Knowledge::init(settings.model_config(train.d))?,
    };
    let cfg = k.registry.model.clone();
    if k.registry.task(&spec.name).is_some() {
        return Err(Error::Settings(format!(
            "task \"{}\" is already trained",
            spec.name
        )));
    }
    validate_classes(&spec.name, &spec.classes, &cfg)?;
    check_labels(
        &format!("training data of task \"{}\"", spec.name),
        train,
        &spec.classes,
        cfg.input_dim,
    )?;
    if train.n == 0 {
        return Err(Error::Dataset(format!(
            "task \"{}\" has no training samples",
            spec.name
        )));
    }
    let t = k.registry.tasks.len();

    // Training sources: the task itself, plus every earlier task for joint training.
    let mut sources = vec![Source {
        data: train,
        task: t as u32,
    }];
    if settings.strategy == Strategy::Joint {
        if data.previous.len() != t {
            return Err(Error::Settings(format!(
                "joint training of task {t} needs the training data of the {t} earlier tasks, \
                 got {}",
                data.previous.len()
            )));
        }
        for (i, d) in data.previous.iter().enumerate() {
            let entry = &k.registry.tasks[i];
            check_labels(
                &format!("training data of task \"{}\"", entry.name),
                d,
                &entry.classes,
                cfg.input_dim,
            )?;
            sources.push(Source {
                data: d,
                task: i as u32,
            });
        }
    }

    // Register the task (and create its head).
    let head = match cfg.scenario {
        Scenario::TaskIncremental => {
            k.add_head(&spec.name, spec.classes.len());
            spec.name.clone()
        }
        Scenario::ClassIncremental => CIL_HEAD.to_string(),
    };
    k.registry.tasks.push(TaskEntry {
        name: spec.name.clone(),
        classes: spec.classes.clone(),
        head,
        train_data: spec.train_data.clone(),
        test_data: spec.test_data.clone(),
        strategy: settings.strategy.name().to_string(),
    });
    if let Strategy::Replay { capacity } = settings.strategy {
        match &k.replay {
            None => {
                k.replay = Some(ReplayBuffer::new(capacity, cfg.input_dim, settings.seed));
                k.registry.replay_capacity = Some(capacity);
            }
            Some(b) if b.capacity != capacity => {
                return Err(Error::Settings(format!(
                    "replay capacity {capacity} differs from the parent's buffer of {}",
                    b.capacity
                )))
            }
            Some(_) => {}
        }
    }
    let replay = match settings.strategy {
        Strategy::Replay { .. } => k.replay.clone().filter(|b| !b.is_empty()),
        _ => None,
    };

    // Which parameters train.
    let mut trainable: BTreeSet<String> = BTreeSet::new();
    for i in 0..cfg.hidden.len() {
        trainable.insert(backbone_weight(i));
        trainable.insert(backbone_bias(i));
    }
    let mut active_tasks: BTreeSet<u32> = sources.iter().map(|s| s.task).collect();
    if let Some(b) = &replay {
        active_tasks.extend(b.task.iter().copied());
    }
    let lwf = match (&settings.strategy, parent) {
        (Strategy::Lwf { temperature, alpha }, Some(p)) if t > 0 => Some((p, *temperature, *alpha)),
        _ => None,
    };
    if lwf.is_some() {
        active_tasks.extend(0..t as u32);
    }
    for task in &active_tasks {
        let h = &k.registry.tasks[*task as usize].head;
        trainable.insert(head_weight(h));
        trainable.insert(head_bias(h));
    }

    let mut net = Net::new(&k.params, cfg.hidden.len())?;

    // Online EWC: penalty against the parent's weights with the parent's Fisher diagonal.
    let mut penalties = BTreeMap::new();
    let lambda = match settings.strategy {
        Strategy::Ewc { lambda, .. } if lambda > 0.0 && !k.fisher.is_empty() => {
            for (name, f) in &k.fisher {
                let anchor = net::internal_tensor(name, &k.params[name])?;
                penalties.insert(name.clone(), (net::internal_tensor(name, f)?, anchor));
            }
            lambda
        }
        _ => 0.0,
    };
    let adam_config = AdamConfig {
        lr: settings.lr,
        beta1: settings.beta1,
        beta2: settings.beta2,
        eps: settings.eps,
        lambda,
    };
    // Known limitation: Adam's moments start from zero at every task and are not stored in the
    // snapshot, so a job resumes at a task boundary, not in the middle of a task.
    let mut adam = Adam::new(&net, &trainable, &penalties, &adam_config)?;
    let teacher = match lwf {
        Some((p, _, _)) => Some(Net::new(&p.params, cfg.hidden.len())?),
        None => None,
    };

    let heads: Vec<(String, Vec<u32>)> = k
        .registry
        .tasks
        .iter()
        .map(|e| (e.head.clone(), e.classes.clone()))
        .collect();
    let allowed = k.registry.seen_classes();
    let cil_mask = net::class_mask(&allowed, cfg.outputs)?;
    let parent_mask = match lwf {
        Some((p, _, _)) => net::class_mask(&p.registry.seen_classes(), cfg.outputs)?,
        None => cil_mask.clone(),
    };
    let objective = Objective {
        scenario: cfg.scenario,
        heads: &heads,
        cil_mask: &cil_mask,
        distill: match (lwf, &teacher) {
            (Some((_, temperature, alpha)), Some(teacher)) => Some(Distill {
                teacher,
                temperature,
                alpha,
                old_tasks: t,
                parent_mask: &parent_mask,
            }),
            _ => None,
        },
    };

    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    rng.set_stream(TRAIN_STREAM + t as u64);
    let mut order: Vec<Sample> = sources
        .iter()
        .enumerate()
        .flat_map(|(s, src)| {
            (0..src.data.n).map(move |r| Sample {
                source: s as u32,
                row: r as u32,
            })
        })
        .collect();
    let d = cfg.input_dim;
    let mut steps = 0;
    let mut final_loss = 0.0;
    for epoch in 0..settings.epochs {
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0f64;
        let mut loss_rows = 0usize;
        for (step, chunk) in order.chunks(settings.batch_size).enumerate() {
            // Rows of the batch: (x, label, task).
            let mut rows: Vec<(&[f32], u32, u32)> = chunk
                .iter()
                .map(|s| {
                    let src = &sources[s.source as usize];
                    (
                        src.data.row(s.row as usize),
                        src.data.y[s.row as usize],
                        src.task,
                    )
                })
                .collect();
            let current = rows.len();
            if let Some(b) = &replay {
                for _ in 0..current {
                    let j = rng.gen_range(0..b.len());
                    rows.push((&b.x[j * d..(j + 1) * d], b.y[j], b.task[j]));
                }
            }
            // Task-incremental heads take contiguous rows. LwF has no replayed rows, so the
            // current rows stay first.
            if cfg.scenario == Scenario::TaskIncremental {
                rows.sort_by_key(|r| r.2);
            }
            let x = net::batch_tensor(rows.iter().flat_map(|r| r.0.iter().copied()).collect(), d)?;
            let labels: Vec<u32> = rows.iter().map(|r| r.1).collect();
            let tasks: Vec<u32> = rows.iter().map(|r| r.2).collect();
            let batch = Batch {
                x: &x,
                labels: &labels,
                tasks: &tasks,
                current,
            };
            let (loss, grads) = step::loss_and_grads(&net, &objective, &batch)?;
            let penalty = adam.step(&mut net, &grads)?;
            let value = loss + penalty;
            if !value.is_finite() {
                return Err(Error::Diverged {
                    loss: value as f32,
                    epoch,
                    step,
                });
            }
            loss_sum += value * current as f64;
            loss_rows += current;
            steps += 1;
        }
        final_loss = loss_sum / loss_rows.max(1) as f64;
        tracing::debug!(task = %spec.name, epoch, loss = final_loss, "epoch done");
    }

    // Write the trained parameters back.
    for name in &trainable {
        let p = k
            .params
            .get_mut(name)
            .ok_or_else(|| Error::Snapshot(format!("lost {name}")))?;
        p.values = net::param_values(name, &net.tensors[name])?;
    }

    if let Strategy::Ewc { gamma, .. } = settings.strategy {
        let fresh = fisher_diagonal(&k, t, train)?;
        let old = std::mem::take(&mut k.fisher);
        for (name, mut f) in fresh {
            if let Some(o) = old.get(&name) {
                for (v, o) in f.values.iter_mut().zip(&o.values) {
                    *v += (gamma as f32) * o;
                }
            }
            k.fisher.insert(name, f);
        }
        k.registry.ewc = true;
    }
    if let (Strategy::Replay { .. }, Some(b)) = (&settings.strategy, k.replay.as_mut()) {
        for i in 0..train.n {
            b.offer(train.row(i), train.y[i], t as u32);
        }
    }

    let evals = evaluate(&k, &data.eval)?;
    let accuracy = evals
        .iter()
        .map(|e| TaskAccuracy {
            task: e.task.clone(),
            accuracy: e.accuracy,
            samples: e.correct.len(),
        })
        .collect();
    let report = TrainReport {
        task: spec.name.clone(),
        task_index: t,
        strategy: settings.strategy.name().to_string(),
        scenario: cfg.scenario,
        final_loss,
        epochs: settings.epochs,
        steps,
        train_samples: order.len(),
        wall_time_s: started.elapsed().as_secs_f64(),
        accuracy,
        settings: settings.clone(),
        threads: candle_core::utils::get_num_threads(),
    };
    tracing::info!(
        task = %spec.name,
        strategy = %report.strategy,
        loss = report.final_loss,
        seconds = report.wall_time_s,
        "task trained"
    );
    Ok((k, report))
}

/// Accuracy and per-sample correctness of `knowledge` on each test set.
///
/// Task-incremental: a task's samples are predicted by its head among its classes; a task
/// not trained yet uses the head it would start from (deterministic from the seed), which
/// gives the untrained accuracy `b_j`. Class-incremental: prediction is the argmax over the
/// classes seen so far (over the whole head for an untrained model).
pub fn evaluate(knowledge: &Knowledge, sets: &[EvalSet<'_>]) -> Result<Vec<TaskEval>> {
    let cfg = knowledge.config();
    let mut params = knowledge.params.clone();
    // Heads of task-incremental tasks not trained yet: their initial weights.
    let mut heads = Vec::new();
    for set in sets {
        validate_task_name(set.task)?;
        if let Some((_, entry)) = knowledge.registry.task(set.task) {
            if entry.classes != set.classes {
                return Err(Error::Settings(format!(
                    "test set of task \"{}\" has classes {:?}, the task was trained with {:?}",
                    set.task, set.classes, entry.classes
                )));
            }
        } else {
            validate_classes(set.task, set.classes, cfg)?;
        }
        check_labels(
            &format!("test data of task \"{}\"", set.task),
            set.data,
            set.classes,
            cfg.input_dim,
        )?;
        let head = match knowledge.head_of(set.task) {
            Some(h) => h,
            None => {
                let name = set.task.to_string();
                let (w, b) = knowledge.initial_head(&name, set.classes.len());
                params.insert(head_weight(&name), w);
                params.insert(head_bias(&name), b);
                name
            }
        };
        heads.push(head);
    }
    let net = Net::new(&params, cfg.hidden.len())?;
    let seen = knowledge.registry.seen_classes();
    let allowed: Vec<u32> = if seen.is_empty() {
        (0..cfg.outputs as u32).collect()
    } else {
        seen
    };
    let mask = match cfg.scenario {
        Scenario::ClassIncremental => Some(net::class_mask(&allowed, cfg.outputs)?),
        Scenario::TaskIncremental => None,
    };
    let mut out = Vec::with_capacity(sets.len());
    for (set, head) in sets.iter().zip(&heads) {
        let mut correct = Vec::with_capacity(set.data.n);
        for start in (0..set.data.n).step_by(EVAL_CHUNK) {
            let end = (start + EVAL_CHUNK).min(set.data.n);
            let x = net::batch_tensor(
                set.data.x[start * cfg.input_dim..end * cfg.input_dim].to_vec(),
                cfg.input_dim,
            )?;
            let mut logits = net.logits(&net.features(&x)?, head)?;
            if let Some(m) = &mask {
                logits = logits.broadcast_add(m)?;
            }
            for (i, p) in net::argmax_rows(&logits)?.into_iter().enumerate() {
                let predicted = match cfg.scenario {
                    Scenario::ClassIncremental => p as u32,
                    Scenario::TaskIncremental => set.classes[p],
                };
                correct.push(predicted == set.data.y[start + i]);
            }
        }
        let right = correct.iter().filter(|c| **c).count();
        let accuracy = if correct.is_empty() {
            0.0
        } else {
            right as f64 / correct.len() as f64
        };
        out.push(TaskEval {
            task: set.task.to_string(),
            accuracy,
            correct,
        });
    }
    Ok(out)
}

/// The empirical Fisher diagonal of the penalised parameters on `data` (task index `t`):
/// the mean over samples of the squared gradient of each sample's cross-entropy. For a
/// linear layer the per-sample gradient is `delta a^T`, so the sum of its squares over a
/// batch is `(delta^2)^T (a^2)`, computed here without per-sample backward passes.
fn fisher_diagonal(k: &Knowledge, t: usize, data: &Dataset) -> Result<BTreeMap<String, Param>> {
    let cfg = k.config();
    let layers = cfg.hidden.len();
    let net = Net::new(&k.params, layers)?;
    let entry = &k.registry.tasks[t];
    let allowed = k.registry.seen_classes();
    let mut acc: BTreeMap<String, Tensor> = BTreeMap::new();
    let mut add = |name: String, v: Tensor| -> Result<()> {
        let next = match acc.remove(&name) {
            Some(a) => (a + v)?,
            None => v,
        };
        acc.insert(name, next);
        Ok(())
    };
    for start in (0..data.n).step_by(EVAL_CHUNK) {
        let end = (start + EVAL_CHUNK).min(data.n);
        let d = cfg.input_dim;
        let x = net::batch_tensor(data.x[start * d..end * d].to_vec(), d)?;
        let (inputs, preacts, h) = net.forward_trace(&x)?;
        let labels = &data.y[start..end];
        let (logits, targets) = match cfg.scenario {
            Scenario::ClassIncremental => {
                let mask = net::class_mask(&allowed, cfg.outputs)?;
                (
                    net.logits(&h, CIL_HEAD)?.broadcast_add(&mask)?,
                    labels.to_vec(),
                )
            }
            Scenario::TaskIncremental => {
                let targets = labels
                    .iter()
                    .map(|l| class_index(&entry.classes, *l))
                    .collect();
                (net.logits(&h, &entry.head)?, targets)
            }
        };
        let delta = (net::softmax(&logits)? - net::one_hot(&targets, logits.dim(1)?)?)?;
        if cfg.scenario == Scenario::ClassIncremental {
            add(head_weight(CIL_HEAD), delta.sqr()?.t()?.matmul(&h.sqr()?)?)?;
            add(head_bias(CIL_HEAD), delta.sqr()?.sum(0)?)?;
        }
        let mut g = delta.matmul(&net.tensors[&head_weight(&entry.head)].t()?)?;
        for l in (0..layers).rev() {
            let dl = (g * preacts[l].gt(0f32)?.to_dtype(candle_core::DType::F32)?)?;
            add(
                backbone_weight(l),
                dl.sqr()?.t()?.matmul(&inputs[l].sqr()?)?,
            )?;
            add(backbone_bias(l), dl.sqr()?.sum(0)?)?;
            g = dl.matmul(&net.tensors[&backbone_weight(l)].t()?)?;
        }
    }
    let n = data.n as f64;
    let mut out = BTreeMap::new();
    for name in k.registry.penalised_params() {
        let t = acc
            .get(&name)
            .ok_or_else(|| Error::Snapshot(format!("no fisher for {name}")))?;
        let values = (t / n)?.flatten_all()?.to_vec1::<f32>()?;
        out.insert(
            name.clone(),
            Param {
                shape: k.params[&name].shape.clone(),
                values,
            },
        );
    }
    Ok(out)
}

pub(crate) fn class_index(classes: &[u32], label: u32) -> u32 {
    classes.iter().position(|c| *c == label).unwrap_or(0) as u32
}

fn check_labels(what: &str, data: &Dataset, classes: &[u32], d: usize) -> Result<()> {
    if data.d != d {
        return Err(Error::Dataset(format!(
            "{what} has {} features, the model takes {d}",
            data.d
        )));
    }
    if data.x.len() != data.n * data.d || data.y.len() != data.n {
        return Err(Error::Dataset(format!("{what} has inconsistent sizes")));
    }
    if let Some(bad) = data.y.iter().find(|y| !classes.contains(y)) {
        return Err(Error::Dataset(format!(
            "{what} has label {bad}, not among classes {classes:?}"
        )));
    }
    Ok(())
}

fn check_compatible(cfg: &ModelConfig, s: &Settings, d: usize) -> Result<()> {
    if cfg.scenario != s.scenario {
        return Err(Error::Settings(format!(
            "scenario {} differs from the parent's {}",
            s.scenario.name(),
            cfg.scenario.name()
        )));
    }
    if cfg.hidden != s.hidden {
        return Err(Error::Settings(format!(
            "hidden sizes {:?} differ from the parent's {:?}",
            s.hidden, cfg.hidden
        )));
    }
    if cfg.scenario == Scenario::ClassIncremental && cfg.outputs != s.outputs {
        return Err(Error::Settings(format!(
            "head width {} differs from the parent's {}",
            s.outputs, cfg.outputs
        )));
    }
    if cfg.input_dim != d {
        return Err(Error::Dataset(format!(
            "training data has {d} features, the parent model takes {}",
            cfg.input_dim
        )));
    }
    Ok(())
}
