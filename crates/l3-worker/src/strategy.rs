//! Continual-learning strategies and the Adam optimiser.
//!
//! * **naive**: fine-tune on the new task only.
//! * **joint**: train on the new task plus the training data of every earlier task (the
//!   caller passes it); the usual upper bound.
//! * **ewc** (online EWC, Schwarz et al. 2018): the loss gets `lambda/2 * sum F (w - w_parent)^2`
//!   over the penalised parameters (backbone; plus the shared head in the class-incremental
//!   scenario). `w_parent` is the parent snapshot's own weights, so no anchor copy is stored.
//!   After the task, the Fisher diagonal becomes `gamma * F_old + F_new`, where `F_new` is the
//!   empirical Fisher (mean over the task's training samples of the squared per-sample
//!   gradient of the cross-entropy with the true label), computed exactly from per-layer
//!   outer products.
//! * **replay** (experience replay): a reservoir buffer (capacity, inputs, labels, task index,
//!   seen counter, sampler RNG) lives in the snapshot. Every step appends a replay batch, as
//!   large as the current batch, drawn uniformly with replacement from the buffer; after the
//!   task every training sample of the task is offered to the reservoir.
//! * **lwf** (Learning without Forgetting, Li & Hoiem 2016): the parent model is the teacher;
//!   the loss gets `alpha * T^2 * CE(softmax(teacher/T), softmax(student/T))` on the current
//!   batch, over every earlier task head (task-incremental) or over the classes the parent
//!   had seen (class-incremental).
//!
//! Adam's moments are reset at every task: each `train_task` call starts a fresh optimiser,
//! so no optimiser state is kept in a snapshot.

use candle_core::{backprop::GradStore, Device, Tensor, Var};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A strategy with its settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Strategy {
    Naive,
    Joint,
    Ewc {
        /// Penalty strength.
        lambda: f64,
        /// Decay of the accumulated Fisher diagonal (1 = plain sum).
        #[serde(default = "default_gamma")]
        gamma: f64,
    },
    Replay {
        /// Reservoir capacity in samples.
        capacity: usize,
    },
    Lwf {
        #[serde(default = "default_temperature")]
        temperature: f64,
        #[serde(default = "default_alpha")]
        alpha: f64,
    },
}

fn default_gamma() -> f64 {
    1.0
}
fn default_temperature() -> f64 {
    2.0
}
fn default_alpha() -> f64 {
    1.0
}

impl Strategy {
    /// The strategy's short name: naive, joint, ewc, replay or lwf.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Naive => "naive",
            Strategy::Joint => "joint",
            Strategy::Ewc { .. } => "ewc",
            Strategy::Replay { .. } => "replay",
            Strategy::Lwf { .. } => "lwf",
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Settings(m));
        match *self {
            Strategy::Ewc { lambda, gamma } => {
                if !(lambda.is_finite() && lambda >= 0.0) {
                    return bad(format!(
                        "ewc lambda {lambda} must be finite and non-negative"
                    ));
                }
                if !(gamma.is_finite() && (0.0..=1.0).contains(&gamma)) {
                    return bad(format!("ewc gamma {gamma} must be in [0, 1]"));
                }
            }
            Strategy::Replay { capacity: 0 } => {
                return bad("replay capacity must be positive".into())
            }
            Strategy::Lwf { temperature, alpha } => {
                if !(temperature.is_finite() && temperature > 0.0) {
                    return bad(format!("lwf temperature {temperature} must be positive"));
                }
                if !(alpha.is_finite() && alpha >= 0.0) {
                    return bad(format!("lwf alpha {alpha} must be non-negative"));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Adam (Kingma & Ba 2015) over candle variables, without weight decay. Written here because
/// candle-nn's `AdamW` does not expose its moments and applies decoupled weight decay. The
/// update is one fused element-wise pass on the host (split over threads; each element is
/// computed independently, so the result does not depend on the thread count).
pub(crate) struct Adam {
    vars: Vec<AdamSlot>,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    step: i32,
}

struct AdamSlot {
    var: Var,
    w: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
}

/// Elements per parallel work unit of the Adam update.
const ADAM_CHUNK: usize = 1 << 14;

impl Adam {
    pub fn new(vars: Vec<Var>, lr: f64, beta1: f64, beta2: f64, eps: f64) -> Result<Adam> {
        let vars = vars
            .into_iter()
            .map(|var| {
                let w = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
                let n = w.len();
                Ok(AdamSlot {
                    var,
                    w,
                    m: vec![0.0; n],
                    v: vec![0.0; n],
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Adam {
            vars,
            lr: lr as f32,
            beta1: beta1 as f32,
            beta2: beta2 as f32,
            eps: eps as f32,
            step: 0,
        })
    }

    /// One update from `grads`; a variable without a gradient is left untouched.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step += 1;
        let (b1, b2, eps) = (self.beta1, self.beta2, self.eps);
        let bc1 = 1.0 - b1.powi(self.step);
        let bc2 = 1.0 - b2.powi(self.step);
        let step_size = self.lr / bc1;
        let inv_bc2 = 1.0 / bc2;
        for slot in &mut self.vars {
            let Some(g) = grads.get(slot.var.as_tensor()) else {
                continue;
            };
            let g = g.flatten_all()?.to_vec1::<f32>()?;
            if g.len() != slot.w.len() {
                return Err(Error::Settings(format!(
                    "gradient of {} elements for a parameter of {}",
                    g.len(),
                    slot.w.len()
                )));
            }
            slot.w
                .par_chunks_mut(ADAM_CHUNK)
                .zip(slot.m.par_chunks_mut(ADAM_CHUNK))
                .zip(slot.v.par_chunks_mut(ADAM_CHUNK))
                .zip(g.par_chunks(ADAM_CHUNK))
                .for_each(|(((w, m), v), g)| {
                    for i in 0..w.len() {
                        m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                        v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                        w[i] -= step_size * m[i] / ((v[i] * inv_bc2).sqrt() + eps);
                    }
                });
            let t = Tensor::from_slice(&slot.w, slot.var.as_tensor().shape(), &Device::Cpu)?;
            slot.var.set(&t)?;
        }
        Ok(())
    }
}
