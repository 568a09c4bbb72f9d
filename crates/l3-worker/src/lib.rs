//! l3-worker: lifelong learning on real data with candle, producing knowledge snapshots for
//! the l3 store.
//!
//! The `l3` binary calls [`train_task`] with a parent snapshot (or none for the root), the
//! task and its data, and stores the returned [`Knowledge`] as tensors
//! ([`Knowledge::to_tensors`]); [`Knowledge::from_tensors`] loads it back. [`evaluate`] gives
//! per-task accuracy and per-sample correctness, [`metrics`] turns an accuracy matrix into
//! ACC/BWT/FWT/forgetting, and [`stream`] reads TOML stream specs.
//!
//! # Model
//!
//! An MLP: hidden ReLU layers (default two of 400; the Split-Digits streams use two of 100)
//! and linear heads.
//!
//! * Task-incremental: one head per task, `model/heads/<task name>`, whose output `i` is the
//!   task's `classes[i]`. A head is created when its task is trained, initialised from the
//!   model seed and the head name, so evaluating a task not trained yet uses exactly the
//!   head it would start from.
//! * Class-incremental: one head `model/heads/all` of fixed width `outputs` (default 10;
//!   labels must be below it). Logits of classes not seen so far (the union of the trained
//!   tasks' classes, including the one being trained) are masked, both in training and in
//!   prediction; their rows receive no gradient and stay byte-identical until their task.
//!
//! # Tensor naming scheme
//!
//! Model (F32; `<i>` is the 0-based hidden layer, `<head>` a task name or `all`):
//!
//! * `model/backbone/<i>/weight` `[out, in]`, `model/backbone/<i>/bias` `[out]`
//! * `model/heads/<head>/weight` `[classes, last hidden]`, `model/heads/<head>/bias`
//!   `[classes]`
//!
//! Strategy state:
//!
//! * `state/ewc/fisher/<param name>`: F32, shaped as the parameter; the online-EWC Fisher
//!   diagonal, e.g. `state/ewc/fisher/model/backbone/0/weight`
//! * `state/replay/x` F32 `[m, d]`, `state/replay/y` U32 `[m]` (labels),
//!   `state/replay/task` U32 `[m]` (registry index of each sample's task),
//!   `state/replay/seen` U64 `[]` (samples offered so far; `m = min(seen, capacity)`)
//! * `state/rng` U8 `[56]`: the reservoir sampler's ChaCha8 state: seed (32 bytes), stream
//!   (u64 LE), word position (u128 LE)
//! * `state/registry` U8 `[len]`: the JSON [`Registry`]: format version, model config
//!   (input width, hidden sizes, scenario, shared-head width, init seed), the tasks in order
//!   (name, classes, head, train and test data set ids, strategy), and whether EWC and
//!   replay state are present (with the replay capacity)
//!
//! The EWC anchor is never stored: it is the parent snapshot's own model weights. EWC state
//! is present only once an EWC task has been trained, replay state once a replay task has.
//!
//! Tensors that training does not touch (other tasks' heads, state of strategies not in use,
//! unseen-class rows of the shared head) come out bit-identical, so the store deduplicates
//! them.
//!
//! # Determinism
//!
//! Initial weights, shuffling and replay sampling use seeded ChaCha8 generators (the root's
//! weights from the settings seed; task `t`'s shuffling from the seed on stream `2^32 + t`;
//! the reservoir from its stored state). All kernels are candle CPU kernels with a fixed
//! reduction order, so the same parent, data, settings and thread count
//! (`RAYON_NUM_THREADS`, default all cores) give bit-identical tensors.
//!
//! The optimiser is Adam without weight decay; its moments are reset at each task (not
//! stored). The backward pass is written out for the MLP (and checked against candle's
//! autograd in the tests); the matrix products run on candle's threaded CPU gemm and the Adam
//! update is split over rayon's threads, so training uses every core.

pub mod data;
pub mod error;
pub mod job;
pub mod metrics;
pub mod model;
mod net;
mod step;
pub mod strategy;
pub mod stream;
pub mod train;

pub use data::{split_by_classes, CsvOptions, Dataset, LabelColumn};
pub use error::{Error, Mismatch, Result};
pub use metrics::{negative_flip_rate, summarize, StreamMetrics};
pub use model::{Knowledge, ModelConfig, Param, Registry, ReplayBuffer, Scenario, TaskEntry};
pub use strategy::Strategy;
pub use stream::{run_stream, DatasetSource, StreamData, StreamResult, StreamSpec, StreamTask};
pub use train::{
    evaluate, train_task, EvalSet, Settings, TaskAccuracy, TaskData, TaskEval, TaskSpec,
    TrainReport,
};
