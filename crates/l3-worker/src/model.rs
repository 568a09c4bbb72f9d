//! The model (an MLP backbone plus heads), its task registry and the knowledge snapshot that
//! carries both together with strategy state, and the conversion to and from store tensors.

use std::collections::{BTreeMap, BTreeSet};

use l3_store::{DType, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Mismatch, Result};

/// The registry's JSON format version.
pub const REGISTRY_FORMAT: u32 = 1;
/// Name of the U8 tensor holding the registry JSON.
pub const REGISTRY_TENSOR: &str = "state/registry";
/// Head name used by the class-incremental scenario.
pub const CIL_HEAD: &str = "all";
/// Default width of the class-incremental head.
// Known limitation: the class-incremental head has this fixed width; labels must be below it.
pub const DEFAULT_OUTPUTS: usize = 10;

const REPLAY_X: &str = "state/replay/x";
const REPLAY_Y: &str = "state/replay/y";
const REPLAY_TASK: &str = "state/replay/task";
const REPLAY_SEEN: &str = "state/replay/seen";
const RNG_TENSOR: &str = "state/rng";
const FISHER_PREFIX: &str = "state/ewc/fisher/";
const RNG_BYTES: usize = 56;

/// Name of backbone layer `i`'s weight, `[out, in]`.
pub fn backbone_weight(i: usize) -> String {
    format!("model/backbone/{i}/weight")
}
/// Name of backbone layer `i`'s bias, `[out]`.
pub fn backbone_bias(i: usize) -> String {
    format!("model/backbone/{i}/bias")
}
/// Name of a head's weight, `[classes, last hidden]`.
pub fn head_weight(head: &str) -> String {
    format!("model/heads/{head}/weight")
}
/// Name of a head's bias, `[classes]`.
pub fn head_bias(head: &str) -> String {
    format!("model/heads/{head}/bias")
}
/// Name of the online-EWC Fisher diagonal of parameter `param`.
pub fn fisher_name(param: &str) -> String {
    format!("{FISHER_PREFIX}{param}")
}

/// How tasks share the output layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// One head per task; the task identity is given at test time.
    #[serde(alias = "til")]
    TaskIncremental,
    /// One head over all classes; prediction is among all classes seen so far.
    #[serde(alias = "cil")]
    ClassIncremental,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::TaskIncremental => "task-incremental",
            Scenario::ClassIncremental => "class-incremental",
        }
    }
}

/// The architecture and initialisation of a model; fixed for a whole lineage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Input features per sample.
    pub input_dim: usize,
    /// Widths of the hidden ReLU layers, in order.
    pub hidden: Vec<usize>,
    pub scenario: Scenario,
    /// Width of the class-incremental head `model/heads/all` (labels must be below it);
    /// unused in the task-incremental scenario.
    pub outputs: usize,
    /// Seed of the initial weights. Heads are initialised from it and the head name, so a
    /// task's head is the same whenever it is created.
    pub init_seed: u64,
}

impl ModelConfig {
    fn validate(&self) -> Result<()> {
        if self.input_dim == 0 {
            return Err(Error::Settings("model input dimension is 0".into()));
        }
        if self.hidden.is_empty() || self.hidden.contains(&0) {
            return Err(Error::Settings(format!(
                "hidden layer sizes {:?} must be non-empty and positive",
                self.hidden
            )));
        }
        if self.scenario == Scenario::ClassIncremental && self.outputs < 2 {
            return Err(Error::Settings(format!(
                "head width {} is below 2",
                self.outputs
            )));
        }
        Ok(())
    }

    /// Width of the last hidden layer (the heads' input).
    pub fn feature_dim(&self) -> usize {
        *self.hidden.last().unwrap_or(&self.input_dim)
    }
}

/// One trained task, in training order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskEntry {
    pub name: String,
    /// The task's classes; in the task-incremental scenario, head output `i` is `classes[i]`.
    pub classes: Vec<u32>,
    /// The head that predicts this task (`<name>` or `all`).
    pub head: String,
    /// Opaque id of the training data set, as the caller gave it.
    pub train_data: String,
    /// Opaque id of the test data set, as the caller gave it.
    pub test_data: String,
    /// Strategy the task was trained with (its name).
    pub strategy: String,
}

/// The task registry, stored as JSON in the U8 tensor `state/registry`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    pub format: u32,
    pub model: ModelConfig,
    pub tasks: Vec<TaskEntry>,
    /// Whether the snapshot holds online-EWC Fisher diagonals (`state/ewc/fisher/...`).
    pub ewc: bool,
    /// Capacity of the replay buffer when the snapshot holds one (`state/replay/...`).
    pub replay_capacity: Option<usize>,
}

impl Registry {
    /// The union of the classes of all trained tasks, sorted.
    pub fn seen_classes(&self) -> Vec<u32> {
        let set: BTreeSet<u32> = self
            .tasks
            .iter()
            .flat_map(|t| t.classes.iter().copied())
            .collect();
        set.into_iter().collect()
    }

    /// The trained task called `name`, with its index.
    pub fn task(&self, name: &str) -> Option<(usize, &TaskEntry)> {
        self.tasks.iter().enumerate().find(|(_, t)| t.name == name)
    }

    /// Every model parameter with its shape, in name order.
    pub fn param_shapes(&self) -> BTreeMap<String, Vec<usize>> {
        let cfg = &self.model;
        let mut out = BTreeMap::new();
        let mut fan_in = cfg.input_dim;
        for (i, h) in cfg.hidden.iter().enumerate() {
            out.insert(backbone_weight(i), vec![*h, fan_in]);
            out.insert(backbone_bias(i), vec![*h]);
            fan_in = *h;
        }
        match cfg.scenario {
            Scenario::ClassIncremental => {
                out.insert(head_weight(CIL_HEAD), vec![cfg.outputs, fan_in]);
                out.insert(head_bias(CIL_HEAD), vec![cfg.outputs]);
            }
            Scenario::TaskIncremental => {
                for t in &self.tasks {
                    out.insert(head_weight(&t.head), vec![t.classes.len(), fan_in]);
                    out.insert(head_bias(&t.head), vec![t.classes.len()]);
                }
            }
        }
        out
    }

    /// The parameters online EWC penalises: the backbone, and the shared head in the
    /// class-incremental scenario (task-incremental heads are never trained again).
    pub fn penalised_params(&self) -> Vec<String> {
        let mut out = Vec::new();
        for i in 0..self.model.hidden.len() {
            out.push(backbone_weight(i));
            out.push(backbone_bias(i));
        }
        if self.model.scenario == Scenario::ClassIncremental {
            out.push(head_weight(CIL_HEAD));
            out.push(head_bias(CIL_HEAD));
        }
        out.sort();
        out
    }

    fn validate(&self) -> Result<()> {
        if self.format != REGISTRY_FORMAT {
            return Err(Error::Snapshot(format!(
                "registry format {} is not supported (expected {REGISTRY_FORMAT})",
                self.format
            )));
        }
        self.model.validate()?;
        let mut names = BTreeSet::new();
        for t in &self.tasks {
            validate_task_name(&t.name)?;
            if !names.insert(t.name.as_str()) {
                return Err(Error::Snapshot(format!(
                    "registry lists task \"{}\" twice",
                    t.name
                )));
            }
            validate_classes(&t.name, &t.classes, &self.model)?;
            let want = match self.model.scenario {
                Scenario::TaskIncremental => t.name.as_str(),
                Scenario::ClassIncremental => CIL_HEAD,
            };
            if t.head != want {
                return Err(Error::Snapshot(format!(
                    "task \"{}\" uses head \"{}\", expected \"{want}\"",
                    t.name, t.head
                )));
            }
        }
        if self.replay_capacity == Some(0) {
            return Err(Error::Snapshot("replay capacity is 0".into()));
        }
        Ok(())
    }
}

pub(crate) fn validate_task_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name != CIL_HEAD
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::Settings(format!(
            "task name \"{name}\" must be non-empty ASCII letters, digits, '-', '_' or '.', \
             and not \"{CIL_HEAD}\""
        )))
    }
}

pub(crate) fn validate_classes(task: &str, classes: &[u32], cfg: &ModelConfig) -> Result<()> {
    let set: BTreeSet<u32> = classes.iter().copied().collect();
    if classes.is_empty() || set.len() != classes.len() {
        return Err(Error::Settings(format!(
            "task \"{task}\" classes {classes:?} must be non-empty and distinct"
        )));
    }
    if cfg.scenario == Scenario::ClassIncremental {
        if let Some(c) = classes.iter().find(|c| **c as usize >= cfg.outputs) {
            return Err(Error::Settings(format!(
                "task \"{task}\" class {c} does not fit the {}-way class-incremental head",
                cfg.outputs
            )));
        }
    }
    Ok(())
}

/// A dense f32 parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

impl Param {
    fn zeros(shape: &[usize]) -> Param {
        Param {
            shape: shape.to_vec(),
            values: vec![0.0; shape.iter().product()],
        }
    }

    fn to_tensor(&self) -> Result<TensorData> {
        Ok(TensorData::from_f32(
            self.shape.iter().map(|s| *s as u64).collect(),
            &self.values,
        )?)
    }
}

/// A reservoir sample of past training samples with the sampler's RNG.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplayBuffer {
    pub capacity: usize,
    pub d: usize,
    /// Row-major `len x d` inputs.
    pub x: Vec<f32>,
    /// Original class labels.
    pub y: Vec<u32>,
    /// Registry index of each sample's task.
    pub task: Vec<u32>,
    /// Samples offered to the reservoir so far.
    pub seen: u64,
    pub(crate) rng: ChaCha8Rng,
}

impl ReplayBuffer {
    pub(crate) fn new(capacity: usize, d: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(RESERVOIR_STREAM);
        ReplayBuffer {
            capacity,
            d,
            x: Vec::new(),
            y: Vec::new(),
            task: Vec::new(),
            seen: 0,
            rng,
        }
    }

    pub fn len(&self) -> usize {
        self.y.len()
    }

    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// Reservoir sampling (Vitter's algorithm R): every sample offered so far is kept with
    /// probability capacity / seen.
    pub(crate) fn offer(&mut self, row: &[f32], y: u32, task: u32) {
        self.seen += 1;
        if self.len() < self.capacity {
            self.x.extend_from_slice(row);
            self.y.push(y);
            self.task.push(task);
        } else {
            let j = self.rng.gen_range(0..self.seen);
            if (j as usize) < self.capacity {
                let j = j as usize;
                self.x[j * self.d..(j + 1) * self.d].copy_from_slice(row);
                self.y[j] = y;
                self.task[j] = task;
            }
        }
    }

    fn rng_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(RNG_BYTES);
        b.extend_from_slice(&self.rng.get_seed());
        b.extend_from_slice(&self.rng.get_stream().to_le_bytes());
        b.extend_from_slice(&self.rng.get_word_pos().to_le_bytes());
        b
    }

    fn rng_from_bytes(b: &[u8]) -> Result<ChaCha8Rng> {
        if b.len() != RNG_BYTES {
            return Err(Error::Snapshot(format!(
                "{RNG_TENSOR} holds {} bytes, expected 56",
                b.len()
            )));
        }
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&b[..32]);
        let mut stream = [0u8; 8];
        stream.copy_from_slice(&b[32..40]);
        let mut pos = [0u8; 16];
        pos.copy_from_slice(&b[40..56]);
        let mut rng = ChaCha8Rng::from_seed(seed);
        rng.set_stream(u64::from_le_bytes(stream));
        rng.set_word_pos(u128::from_le_bytes(pos));
        Ok(rng)
    }
}

/// RNG stream of the backbone initialisation.
const BACKBONE_STREAM: u64 = 0;
/// RNG stream of the reservoir sampler.
const RESERVOIR_STREAM: u64 = 1;

/// A knowledge snapshot K_t: the model, its task registry and the strategies' state.
#[derive(Clone, Debug, PartialEq)]
pub struct Knowledge {
    pub(crate) registry: Registry,
    pub(crate) params: BTreeMap<String, Param>,
    pub(crate) fisher: BTreeMap<String, Param>,
    pub(crate) replay: Option<ReplayBuffer>,
}

impl Knowledge {
    /// An untrained model (the root K_0), initialised deterministically from
    /// `config.init_seed`: every weight and bias of a layer with fan-in `k` is drawn uniformly
    /// from (-1/sqrt(k), 1/sqrt(k)), as PyTorch's `nn.Linear` does.
    pub fn init(config: ModelConfig) -> Result<Knowledge> {
        config.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(config.init_seed);
        rng.set_stream(BACKBONE_STREAM);
        let mut params = BTreeMap::new();
        let mut fan_in = config.input_dim;
        for (i, h) in config.hidden.iter().enumerate() {
            let (w, b) = init_linear(&mut rng, *h, fan_in);
            params.insert(backbone_weight(i), w);
            params.insert(backbone_bias(i), b);
            fan_in = *h;
        }
        let registry = Registry {
            format: REGISTRY_FORMAT,
            model: config,
            tasks: Vec::new(),
            ewc: false,
            replay_capacity: None,
        };
        let mut k = Knowledge {
            registry,
            params,
            fisher: BTreeMap::new(),
            replay: None,
        };
        if k.registry.model.scenario == Scenario::ClassIncremental {
            k.add_head(CIL_HEAD, k.registry.model.outputs);
        }
        Ok(k)
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn config(&self) -> &ModelConfig {
        &self.registry.model
    }

    /// The model parameters by name.
    pub fn params(&self) -> &BTreeMap<String, Param> {
        &self.params
    }

    /// The online-EWC Fisher diagonals by parameter name (empty unless EWC was used).
    pub fn fisher(&self) -> &BTreeMap<String, Param> {
        &self.fisher
    }

    /// The replay buffer, if replay was used.
    pub fn replay(&self) -> Option<&ReplayBuffer> {
        self.replay.as_ref()
    }

    /// The head a task's samples are predicted with; `None` in the task-incremental scenario
    /// for a task not trained yet.
    pub(crate) fn head_of(&self, task: &str) -> Option<String> {
        match self.registry.model.scenario {
            Scenario::ClassIncremental => Some(CIL_HEAD.to_string()),
            Scenario::TaskIncremental => self.registry.task(task).map(|(_, t)| t.head.clone()),
        }
    }

    /// The deterministic initial head called `name` with `outputs` rows.
    pub(crate) fn initial_head(&self, name: &str, outputs: usize) -> (Param, Param) {
        let cfg = &self.registry.model;
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.init_seed);
        rng.set_stream(head_stream(name));
        init_linear(&mut rng, outputs, cfg.feature_dim())
    }

    pub(crate) fn add_head(&mut self, name: &str, outputs: usize) {
        let (w, b) = self.initial_head(name, outputs);
        self.params.insert(head_weight(name), w);
        self.params.insert(head_bias(name), b);
    }

    /// The snapshot as store tensors (see the crate docs for the naming scheme).
    pub fn to_tensors(&self) -> Result<BTreeMap<String, TensorData>> {
        let mut out = BTreeMap::new();
        for (name, p) in &self.params {
            out.insert(name.clone(), p.to_tensor()?);
        }
        for (name, p) in &self.fisher {
            out.insert(fisher_name(name), p.to_tensor()?);
        }
        if let Some(r) = &self.replay {
            let m = r.len() as u64;
            out.insert(
                REPLAY_X.into(),
                TensorData::from_f32(vec![m, r.d as u64], &r.x)?,
            );
            out.insert(REPLAY_Y.into(), u32_tensor(&r.y)?);
            out.insert(REPLAY_TASK.into(), u32_tensor(&r.task)?);
            let seen = r.seen.to_le_bytes().to_vec();
            out.insert(
                REPLAY_SEEN.into(),
                TensorData::new(DType::U64, vec![], seen)?,
            );
            out.insert(
                RNG_TENSOR.into(),
                TensorData::new(DType::U8, vec![RNG_BYTES as u64], r.rng_bytes())?,
            );
        }
        let json = serde_json::to_vec(&self.registry)
            .map_err(|e| Error::Snapshot(format!("cannot encode the registry: {e}")))?;
        let len = json.len() as u64;
        out.insert(
            REGISTRY_TENSOR.into(),
            TensorData::new(DType::U8, vec![len], json)?,
        );
        Ok(out)
    }

    /// Loads a snapshot written by [`Knowledge::to_tensors`]. Tensors that the registry does
    /// not describe, tensors it describes that are absent, and dtype or shape differences are
    /// all reported together in [`Error::SnapshotMismatch`]; nothing is ever initialised
    /// afresh.
    pub fn from_tensors(map: &BTreeMap<String, TensorData>) -> Result<Knowledge> {
        let reg_t = map.get(REGISTRY_TENSOR).ok_or_else(|| {
            let names: Vec<&str> = map.keys().map(String::as_str).take(8).collect();
            Error::Snapshot(format!(
                "no {REGISTRY_TENSOR} tensor, so this is not an l3-worker snapshot (holds: {}{})",
                names.join(", "),
                if map.len() > 8 { ", ..." } else { "" }
            ))
        })?;
        if reg_t.dtype != DType::U8 || reg_t.shape.len() != 1 {
            return Err(Error::Snapshot(format!(
                "{REGISTRY_TENSOR} is {} {:?}, expected a 1-D U8 tensor",
                reg_t.dtype, reg_t.shape
            )));
        }
        let registry: Registry = serde_json::from_slice(&reg_t.bytes).map_err(|e| {
            Error::Snapshot(format!("{REGISTRY_TENSOR} is not a valid registry: {e}"))
        })?;
        registry.validate()?;

        // Expected tensors: name -> (dtype, shape); a shape of None accepts any 2-D shape
        // whose second dimension matches (checked below).
        let mut expected: BTreeMap<String, (DType, Vec<u64>)> = BTreeMap::new();
        let shapes = registry.param_shapes();
        for (name, shape) in &shapes {
            expected.insert(name.clone(), (DType::F32, to_u64(shape)));
        }
        if registry.ewc {
            for p in registry.penalised_params() {
                expected.insert(fisher_name(&p), (DType::F32, to_u64(&shapes[&p])));
            }
        }
        if let Some(cap) = registry.replay_capacity {
            // The buffer length follows from the seen counter: min(seen, capacity).
            let m = map
                .get(REPLAY_SEEN)
                .filter(|t| t.dtype == DType::U64 && t.shape.is_empty() && t.bytes.len() == 8)
                .map(|t| u64::from_le_bytes(arr8(&t.bytes)).min(cap as u64))
                .unwrap_or(0);
            let d = registry.model.input_dim as u64;
            expected.insert(REPLAY_X.into(), (DType::F32, vec![m, d]));
            expected.insert(REPLAY_Y.into(), (DType::U32, vec![m]));
            expected.insert(REPLAY_TASK.into(), (DType::U32, vec![m]));
            expected.insert(REPLAY_SEEN.into(), (DType::U64, vec![]));
            expected.insert(RNG_TENSOR.into(), (DType::U8, vec![RNG_BYTES as u64]));
        }
        expected.insert(REGISTRY_TENSOR.into(), (DType::U8, reg_t.shape.clone()));

        let mut mismatch = Mismatch::default();
        for (name, (dtype, shape)) in &expected {
            match map.get(name) {
                None => mismatch.missing.push(name.clone()),
                Some(t) if t.dtype != *dtype || t.shape != *shape => mismatch.wrong.push(format!(
                    "{name}: expected {dtype} {shape:?}, got {} {:?}",
                    t.dtype, t.shape
                )),
                Some(t)
                    if t.bytes.len() as u64
                        != shape.iter().product::<u64>() * dtype.size() as u64 =>
                {
                    mismatch.wrong.push(format!(
                        "{name}: {} bytes do not fit its shape",
                        t.bytes.len()
                    ))
                }
                Some(_) => {}
            }
        }
        mismatch.unexpected = map
            .keys()
            .filter(|k| !expected.contains_key(*k))
            .cloned()
            .collect();
        if !mismatch.is_empty() {
            return Err(Error::SnapshotMismatch(mismatch));
        }

        let f32s = |name: &str| map[name].to_f32().unwrap_or_default();
        let mut params = BTreeMap::new();
        for (name, shape) in &shapes {
            params.insert(
                name.clone(),
                Param {
                    shape: shape.clone(),
                    values: f32s(name),
                },
            );
        }
        let mut fisher = BTreeMap::new();
        if registry.ewc {
            for p in registry.penalised_params() {
                let values = f32s(&fisher_name(&p));
                if values.iter().any(|v| !v.is_finite() || *v < 0.0) {
                    return Err(Error::Snapshot(format!(
                        "{} has negative or non-finite values",
                        fisher_name(&p)
                    )));
                }
                fisher.insert(
                    p.clone(),
                    Param {
                        shape: shapes[&p].clone(),
                        values,
                    },
                );
            }
        }
        let replay = match registry.replay_capacity {
            None => None,
            Some(capacity) => {
                let y = u32_values(&map[REPLAY_Y]);
                let task = u32_values(&map[REPLAY_TASK]);
                if let Some(bad) = task.iter().find(|t| **t as usize >= registry.tasks.len()) {
                    return Err(Error::Snapshot(format!(
                        "{REPLAY_TASK} names task index {bad} but the registry has {} tasks",
                        registry.tasks.len()
                    )));
                }
                for (i, (l, t)) in y.iter().zip(&task).enumerate() {
                    if !registry.tasks[*t as usize].classes.contains(l) {
                        return Err(Error::Snapshot(format!(
                            "replay sample {i} has label {l}, not a class of task \"{}\"",
                            registry.tasks[*t as usize].name
                        )));
                    }
                }
                Some(ReplayBuffer {
                    capacity,
                    d: registry.model.input_dim,
                    x: f32s(REPLAY_X),
                    y,
                    task,
                    seen: u64::from_le_bytes(arr8(&map[REPLAY_SEEN].bytes)),
                    rng: ReplayBuffer::rng_from_bytes(&map[RNG_TENSOR].bytes)?,
                })
            }
        };
        Ok(Knowledge {
            registry,
            params,
            fisher,
            replay,
        })
    }

    /// String metadata describing the snapshot, for a commit record.
    pub fn metadata(&self) -> BTreeMap<String, String> {
        let r = &self.registry;
        let mut m = BTreeMap::new();
        m.insert("l3.scenario".into(), r.model.scenario.name().into());
        m.insert(
            "l3.tasks".into(),
            r.tasks
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
        );
        let hidden: Vec<String> = r.model.hidden.iter().map(|h| h.to_string()).collect();
        m.insert("l3.hidden".into(), hidden.join(","));
        if let Some(t) = r.tasks.last() {
            m.insert("l3.last_task".into(), t.name.clone());
            m.insert("l3.strategy".into(), t.strategy.clone());
        }
        m
    }
}

fn init_linear(rng: &mut ChaCha8Rng, out: usize, fan_in: usize) -> (Param, Param) {
    let k = 1.0 / (fan_in as f32).sqrt();
    let mut w = Param::zeros(&[out, fan_in]);
    for v in &mut w.values {
        *v = rng.gen_range(-k..k);
    }
    let mut b = Param::zeros(&[out]);
    for v in &mut b.values {
        *v = rng.gen_range(-k..k);
    }
    (w, b)
}

/// A stable RNG stream per head name (FNV-1a), never the backbone's or the reservoir's.
fn head_stream(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h | (1 << 63)
}

fn to_u64(shape: &[usize]) -> Vec<u64> {
    shape.iter().map(|s| *s as u64).collect()
}

fn arr8(b: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    a
}

fn u32_tensor(v: &[u32]) -> Result<TensorData> {
    let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    Ok(TensorData::new(DType::U32, vec![v.len() as u64], bytes)?)
}

fn u32_values(t: &TensorData) -> Vec<u32> {
    t.bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
