//! Stream specs (TOML): a data set, a scenario, a strategy and a list of tasks, and running a
//! whole stream in memory.
//!
//! ```toml
//! name = "split-digits-til"
//! scenario = "task-incremental"      # or "class-incremental"
//! epochs = 4
//! batch_size = 32
//! lr = 0.001
//! seed = 1
//! hidden = [100, 100]
//!
//! [dataset]
//! kind = "optdigits"                 # bundled; or "mnist" with dir = "...",
//!                                    # "csv" with train, test, label, header, scale,
//!                                    # "safetensors" with train, test, x, y
//! [strategy]
//! kind = "ewc"                       # naive | joint | ewc | replay | lwf
//! lambda = 100.0
//! gamma = 1.0
//!
//! [[tasks]]
//! name = "d01"
//! classes = [0, 1]
//! ```
//!
//! Relative paths in `[dataset]` are resolved against the spec file's directory by
//! [`StreamSpec::load`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use l3_store::TensorData;
use serde::{Deserialize, Serialize};

use crate::data::{split_by_classes, CsvOptions, Dataset, LabelColumn};
use crate::error::{Error, Result};
use crate::metrics::{summarize, StreamMetrics};
use crate::model::{Knowledge, Scenario, DEFAULT_OUTPUTS};
use crate::strategy::Strategy;
use crate::train::{evaluate, train_task, EvalSet, Settings, TaskData, TaskSpec, TrainReport};

/// Where a stream's data comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum DatasetSource {
    /// The UCI optdigits files bundled in the library.
    Optdigits,
    /// A directory with the four MNIST IDX files (gzipped or not).
    Mnist { dir: PathBuf },
    /// Train and test CSV files with a label column.
    Csv {
        train: PathBuf,
        test: PathBuf,
        label: LabelColumn,
        #[serde(default)]
        header: bool,
        #[serde(default = "one")]
        scale: f32,
    },
    /// Train and test safetensors files with tensors `x` and `y` (read by the caller).
    Safetensors {
        train: PathBuf,
        test: PathBuf,
        #[serde(default = "x_name")]
        x: String,
        #[serde(default = "y_name")]
        y: String,
    },
}

fn one() -> f32 {
    1.0
}
fn x_name() -> String {
    "x".into()
}
fn y_name() -> String {
    "y".into()
}

/// One task of a stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamTask {
    pub name: String,
    pub classes: Vec<u32>,
}

/// A stream spec as read from TOML.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub dataset: DatasetSource,
    pub scenario: Scenario,
    pub strategy: Strategy,
    pub tasks: Vec<StreamTask>,
    #[serde(default = "d_epochs")]
    pub epochs: usize,
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    #[serde(default = "d_lr")]
    pub lr: f64,
    #[serde(default = "d_beta1")]
    pub beta1: f64,
    #[serde(default = "d_beta2")]
    pub beta2: f64,
    #[serde(default = "d_eps")]
    pub eps: f64,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "d_hidden")]
    pub hidden: Vec<usize>,
    /// Width of the class-incremental head.
    #[serde(default = "d_outputs")]
    pub outputs: usize,
}

fn d_epochs() -> usize {
    4
}
fn d_batch() -> usize {
    128
}
fn d_lr() -> f64 {
    0.001
}
fn d_beta1() -> f64 {
    0.9
}
fn d_beta2() -> f64 {
    0.999
}
fn d_eps() -> f64 {
    1e-8
}
fn d_hidden() -> Vec<usize> {
    vec![400, 400]
}
fn d_outputs() -> usize {
    DEFAULT_OUTPUTS
}

/// A stream's data, split into tasks.
#[derive(Clone, Debug)]
pub struct StreamData {
    pub train: Vec<Dataset>,
    pub test: Vec<Dataset>,
}

/// The outcome of [`run_stream`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StreamResult {
    /// `accuracy[i][j]`: accuracy on task j after training task i (all tasks, so FWT is
    /// defined).
    pub accuracy: Vec<Vec<f64>>,
    /// Accuracy of the untrained model on each task.
    pub untrained: Vec<f64>,
    pub metrics: StreamMetrics,
    /// Negative flip rate between consecutive snapshots over the tasks both had trained.
    pub negative_flip_rates: Vec<f64>,
    pub reports: Vec<TrainReport>,
    pub wall_time_s: f64,
}

impl StreamSpec {
    /// Parses a spec; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<StreamSpec> {
        let spec: StreamSpec = toml::from_str(text).map_err(|e| Error::Stream {
            path: origin.into(),
            message: e.to_string(),
        })?;
        spec.validate().map_err(|e| Error::Stream {
            path: origin.into(),
            message: e.to_string(),
        })?;
        Ok(spec)
    }

    /// Reads and parses a spec file, resolving relative data paths against its directory.
    pub fn load(path: &Path) -> Result<StreamSpec> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut spec = Self::parse(&text, &path.display().to_string())?;
        let base = path.parent().unwrap_or(Path::new("."));
        spec.dataset = spec.dataset.resolved(base);
        Ok(spec)
    }

    fn validate(&self) -> Result<()> {
        if self.tasks.is_empty() {
            return Err(Error::Settings("stream has no tasks".into()));
        }
        let mut names = std::collections::BTreeSet::new();
        for t in &self.tasks {
            crate::model::validate_task_name(&t.name)?;
            if let Some(c) = t.classes.iter().find(|c| **c as usize >= self.outputs) {
                return Err(Error::Settings(format!(
                    "task \"{}\": class {c} is not below the model's {} outputs",
                    t.name, self.outputs
                )));
            }
            if t.classes.len() < 2 {
                return Err(Error::Settings(format!(
                    "task \"{}\" needs at least two classes",
                    t.name
                )));
            }
            if !names.insert(&t.name) {
                return Err(Error::Settings(format!(
                    "task \"{}\" appears twice",
                    t.name
                )));
            }
        }
        self.settings().validate()
    }

    /// The training settings of every task in the stream.
    pub fn settings(&self) -> Settings {
        Settings {
            strategy: self.strategy.clone(),
            scenario: self.scenario,
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            seed: self.seed,
            hidden: self.hidden.clone(),
            outputs: self.outputs,
        }
    }

    /// Each task's class list, in order.
    pub fn task_classes(&self) -> Vec<Vec<u32>> {
        self.tasks.iter().map(|t| t.classes.clone()).collect()
    }

    /// A task spec for task `i` with the caller's data set ids.
    pub fn task_spec(&self, i: usize, train_data: &str, test_data: &str) -> Option<TaskSpec> {
        self.tasks.get(i).map(|t| TaskSpec {
            name: t.name.clone(),
            classes: t.classes.clone(),
            train_data: train_data.into(),
            test_data: test_data.into(),
        })
    }

    /// Loads the train and test sets. `read_safetensors` reads a safetensors file into
    /// tensors; it is only called for a `safetensors` source.
    pub fn load_data(
        &self,
        read_safetensors: &mut dyn FnMut(&Path) -> Result<BTreeMap<String, TensorData>>,
    ) -> Result<(Dataset, Dataset)> {
        self.dataset.load(read_safetensors)
    }

    /// Loads the data and splits it into the stream's tasks.
    pub fn load_task_data(
        &self,
        read_safetensors: &mut dyn FnMut(&Path) -> Result<BTreeMap<String, TensorData>>,
    ) -> Result<StreamData> {
        let (train, test) = self.load_data(read_safetensors)?;
        let classes = self.task_classes();
        Ok(StreamData {
            train: split_by_classes(&train, &classes)?,
            test: split_by_classes(&test, &classes)?,
        })
    }
}

impl DatasetSource {
    fn resolved(self, base: &Path) -> DatasetSource {
        let fix = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
        match self {
            DatasetSource::Optdigits => DatasetSource::Optdigits,
            DatasetSource::Mnist { dir } => DatasetSource::Mnist { dir: fix(dir) },
            DatasetSource::Csv {
                train,
                test,
                label,
                header,
                scale,
            } => DatasetSource::Csv {
                train: fix(train),
                test: fix(test),
                label,
                header,
                scale,
            },
            DatasetSource::Safetensors { train, test, x, y } => DatasetSource::Safetensors {
                train: fix(train),
                test: fix(test),
                x,
                y,
            },
        }
    }

    /// Loads (train, test).
    pub fn load(
        &self,
        read_safetensors: &mut dyn FnMut(&Path) -> Result<BTreeMap<String, TensorData>>,
    ) -> Result<(Dataset, Dataset)> {
        match self {
            DatasetSource::Optdigits => Ok((
                Dataset::optdigits_bundled(true)?,
                Dataset::optdigits_bundled(false)?,
            )),
            DatasetSource::Mnist { dir } => {
                Ok((Dataset::mnist(dir, true)?, Dataset::mnist(dir, false)?))
            }
            DatasetSource::Csv {
                train,
                test,
                label,
                header,
                scale,
            } => {
                let o = CsvOptions {
                    label: label.clone(),
                    header: *header,
                    scale: *scale,
                };
                Ok((Dataset::csv(train, &o)?, Dataset::csv(test, &o)?))
            }
            DatasetSource::Safetensors { train, test, x, y } => {
                let tr = Dataset::from_tensor_map(&read_safetensors(train)?, x, y)?;
                let te = Dataset::from_tensor_map(&read_safetensors(test)?, x, y)?;
                Ok((tr, te))
            }
        }
    }
}

/// Trains every task of `spec` in order from a fresh root, evaluating all tasks after each
/// one. `on_task` sees each new snapshot (to commit it, say).
pub fn run_stream(
    spec: &StreamSpec,
    data: &StreamData,
    on_task: &mut dyn FnMut(usize, &Knowledge, &TrainReport) -> Result<()>,
) -> Result<StreamResult> {
    let started = std::time::Instant::now();
    let settings = spec.settings();
    let n = spec.tasks.len();
    if data.train.len() != n || data.test.len() != n {
        return Err(Error::Settings(format!(
            "stream has {n} tasks but the data {} train and {} test sets",
            data.train.len(),
            data.test.len()
        )));
    }
    let d = data.train[0].d;
    let eval: Vec<EvalSet<'_>> = spec
        .tasks
        .iter()
        .zip(&data.test)
        .map(|(t, ds)| EvalSet {
            task: &t.name,
            classes: &t.classes,
            data: ds,
        })
        .collect();
    let root = Knowledge::init(settings.model_config(d))?;
    let untrained: Vec<f64> = evaluate(&root, &eval)?.iter().map(|e| e.accuracy).collect();
    let mut parent: Option<Knowledge> = None;
    let mut prev_correct: Option<Vec<Vec<bool>>> = None;
    let (mut accuracy, mut reports, mut nfr) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let spec_i = TaskSpec {
            name: spec.tasks[i].name.clone(),
            classes: spec.tasks[i].classes.clone(),
            train_data: format!("{}/train/{}", spec.name, spec.tasks[i].name),
            test_data: format!("{}/test/{}", spec.name, spec.tasks[i].name),
        };
        let task_data = TaskData {
            train: &data.train[i],
            previous: data.train[..i].iter().collect(),
            eval: Vec::new(),
        };
        let (k, report) = train_task(parent.as_ref(), &spec_i, &task_data, &settings)?;
        let evals = evaluate(&k, &eval)?;
        let mut report = report;
        report.accuracy = evals
            .iter()
            .map(|e| crate::train::TaskAccuracy {
                task: e.task.clone(),
                accuracy: e.accuracy,
                samples: e.correct.len(),
            })
            .collect();
        if let Some(prev) = &prev_correct {
            let before: Vec<bool> = prev[..i].iter().flatten().copied().collect();
            let after: Vec<bool> = evals[..i]
                .iter()
                .flat_map(|e| e.correct.iter().copied())
                .collect();
            nfr.push(crate::metrics::negative_flip_rate(&before, &after)?);
        }
        prev_correct = Some(evals.iter().map(|e| e.correct.clone()).collect());
        accuracy.push(evals.iter().map(|e| e.accuracy).collect::<Vec<_>>());
        on_task(i, &k, &report)?;
        reports.push(report);
        parent = Some(k);
    }
    let metrics = summarize(&accuracy, Some(&untrained))?;
    Ok(StreamResult {
        accuracy,
        untrained,
        metrics,
        negative_flip_rates: nfr,
        reports,
        wall_time_s: started.elapsed().as_secs_f64(),
    })
}
