//! One training step's loss and its gradients, back-propagated by hand.
//!
//! The MLP is small and fixed, so the backward pass is written out: this skips the gradient
//! with respect to the input batch (a third of a generic autograd pass's work for the first
//! layer) and the zero-filled gradient accumulators. The tests check it against candle's
//! autograd.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};

use crate::error::{Error, Result};
use crate::model::{backbone_bias, backbone_weight, head_bias, head_weight, Scenario, CIL_HEAD};
use crate::net::{self, Net};

/// What the step minimises.
pub(crate) struct Objective<'a> {
    pub scenario: Scenario,
    /// Head name and classes of every registered task, by task index.
    pub heads: &'a [(String, Vec<u32>)],
    /// Class-incremental: the additive mask of the classes seen so far.
    pub cil_mask: &'a Tensor,
    pub distill: Option<Distill<'a>>,
}

/// LwF distillation from the parent model on the current samples.
pub(crate) struct Distill<'a> {
    pub teacher: &'a Net,
    pub temperature: f64,
    pub alpha: f64,
    /// Task-incremental: the heads of tasks `0..old_tasks` are distilled.
    pub old_tasks: usize,
    /// Class-incremental: the additive mask of the classes the parent had seen.
    pub parent_mask: &'a Tensor,
}

/// A batch: inputs, labels and task indices. Task-incremental batches must be sorted by task.
/// The first `current` rows are the current task's (distillation uses only those).
pub(crate) struct Batch<'a> {
    pub x: &'a Tensor,
    pub labels: &'a [u32],
    pub tasks: &'a [u32],
    pub current: usize,
}

/// The mean cross-entropy over the batch (plus `alpha` times the mean distillation loss over
/// the current rows) and its gradient for every parameter it depends on, in the internal
/// layout of [`Net`].
pub(crate) fn loss_and_grads(
    net: &Net,
    obj: &Objective<'_>,
    batch: &Batch<'_>,
) -> Result<(f64, BTreeMap<String, Tensor>)> {
    let n = batch.labels.len();
    let (inputs, preacts, h) = net.forward_trace(batch.x)?;
    let mut grads: BTreeMap<String, Tensor> = BTreeMap::new();
    let inv_n = 1.0 / n as f64;
    let mut loss = 0.0f64;

    // Teacher outputs for distillation (current rows only).
    let distill = match &obj.distill {
        Some(d) if batch.current > 0 => {
            let xc = batch.x.narrow(0, 0, batch.current)?;
            Some((d, d.teacher.features(&xc)?, h.narrow(0, 0, batch.current)?))
        }
        _ => None,
    };

    let mut dh = match obj.scenario {
        Scenario::ClassIncremental => {
            let logits = net.logits(&h, CIL_HEAD)?.broadcast_add(obj.cil_mask)?;
            let (l, mut dlogits) = ce_grad(&logits, batch.labels, inv_n)?;
            loss += l;
            if let Some((d, th, hc)) = &distill {
                let s = net.logits(hc, CIL_HEAD)?.broadcast_add(d.parent_mask)?;
                let t = d
                    .teacher
                    .logits(th, CIL_HEAD)?
                    .broadcast_add(d.parent_mask)?;
                let scale = d.alpha / batch.current as f64;
                let (l, ds) = distill_grad(&s, &t, d.temperature, scale)?;
                loss += l;
                let ds = pad_rows(&ds, n)?;
                dlogits = (dlogits + ds)?;
            }
            head_backward(net, &mut grads, CIL_HEAD, &h, &dlogits)?
        }
        Scenario::TaskIncremental => {
            let mut parts = Vec::new();
            let mut start = 0;
            while start < n {
                let task = batch.tasks[start];
                let len = batch.tasks[start..]
                    .iter()
                    .take_while(|t| **t == task)
                    .count();
                let (head, classes) = obj
                    .heads
                    .get(task as usize)
                    .ok_or_else(|| Error::Settings(format!("batch names unknown task {task}")))?;
                let hg = h.narrow(0, start, len)?;
                let targets: Vec<u32> = batch.labels[start..start + len]
                    .iter()
                    .map(|l| crate::train::class_index(classes, *l))
                    .collect();
                let (l, dlogits) = ce_grad(&net.logits(&hg, head)?, &targets, inv_n)?;
                loss += l;
                parts.push(head_backward(net, &mut grads, head, &hg, &dlogits)?);
                start += len;
            }
            let mut dh = Tensor::cat(&parts, 0)?;
            if let Some((d, th, hc)) = &distill {
                let scale = d.alpha / batch.current as f64;
                let mut dhc: Option<Tensor> = None;
                for (head, _) in &obj.heads[..d.old_tasks] {
                    let s = net.logits(hc, head)?;
                    let t = d.teacher.logits(th, head)?;
                    let (l, ds) = distill_grad(&s, &t, d.temperature, scale)?;
                    loss += l;
                    let part = head_backward(net, &mut grads, head, hc, &ds)?;
                    dhc = Some(match dhc {
                        None => part,
                        Some(a) => (a + part)?,
                    });
                }
                if let Some(dhc) = dhc {
                    dh = (dh + pad_rows(&dhc, n)?)?;
                }
            }
            dh
        }
    };

    for l in (0..net.layers).rev() {
        let dz = (dh * preacts[l].gt(0f32)?.to_dtype(DType::F32)?)?;
        add(&mut grads, backbone_weight(l), inputs[l].t()?.matmul(&dz)?)?;
        add(&mut grads, backbone_bias(l), dz.sum(0)?)?;
        if l == 0 {
            break;
        }
        dh = dz.matmul(&net.tensors[&backbone_weight(l)].t()?)?;
    }
    Ok((loss, grads))
}

/// Cross-entropy summed over rows times `scale`, and its gradient `(softmax - onehot) * scale`.
fn ce_grad(logits: &Tensor, targets: &[u32], scale: f64) -> Result<(f64, Tensor)> {
    let onehot = net::one_hot(targets, logits.dim(1)?)?;
    let logp = net::log_softmax(logits)?;
    let loss = (&onehot * &logp)?.sum_all()?.to_scalar::<f32>()? as f64 * -scale;
    let grad = ((logp.exp()? - onehot)? * scale)?;
    Ok((loss, grad))
}

/// Distillation loss `T^2 * CE(softmax(t/T), softmax(s/T))` summed over rows times `scale`,
/// and its gradient with respect to `s`: `T * (softmax(s/T) - softmax(t/T)) * scale`.
fn distill_grad(s: &Tensor, t: &Tensor, temperature: f64, scale: f64) -> Result<(f64, Tensor)> {
    let inv_t = 1.0 / temperature;
    let p = net::softmax(&t.affine(inv_t, 0.0)?)?;
    let logq = net::log_softmax(&s.affine(inv_t, 0.0)?)?;
    let tt = temperature * temperature;
    let loss = (&p * &logq)?.sum_all()?.to_scalar::<f32>()? as f64 * -tt * scale;
    let grad = ((logq.exp()? - p)? * (temperature * scale))?;
    Ok((loss, grad))
}

/// Adds a head's weight and bias gradients for `dlogits` and returns the gradient it sends
/// back to the features `h`.
fn head_backward(
    net: &Net,
    grads: &mut BTreeMap<String, Tensor>,
    head: &str,
    h: &Tensor,
    dlogits: &Tensor,
) -> Result<Tensor> {
    add(grads, head_weight(head), h.t()?.matmul(dlogits)?)?;
    add(grads, head_bias(head), dlogits.sum(0)?)?;
    Ok(dlogits.matmul(&net.tensors[&head_weight(head)].t()?)?)
}

fn add(grads: &mut BTreeMap<String, Tensor>, name: String, g: Tensor) -> Result<()> {
    let next = match grads.remove(&name) {
        Some(a) => (a + g)?,
        None => g,
    };
    grads.insert(name, next);
    Ok(())
}

/// `t` (the first rows of a batch) padded with zero rows to `n` rows.
fn pad_rows(t: &Tensor, n: usize) -> Result<Tensor> {
    let rows = t.dim(0)?;
    if rows == n {
        return Ok(t.clone());
    }
    let zeros = Tensor::zeros((n - rows, t.dim(1)?), DType::F32, t.device())?;
    Ok(Tensor::cat(&[t, &zeros], 0)?)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use candle_core::Var;

    use super::*;
    use crate::model::{Knowledge, ModelConfig};

    /// The same loss through candle's autograd.
    fn autograd(
        params: &BTreeMap<String, crate::model::Param>,
        layers: usize,
        obj: &Objective<'_>,
        batch: &Batch<'_>,
    ) -> (f64, BTreeMap<String, Tensor>) {
        let names: BTreeSet<String> = params.keys().cloned().collect();
        let net = Net::new(params, layers).unwrap();
        let vars: BTreeMap<String, Var> = names
            .iter()
            .map(|n| (n.clone(), Var::from_tensor(&net.tensors[n]).unwrap()))
            .collect();
        let vnet = Net {
            tensors: vars
                .iter()
                .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
                .collect(),
            layers,
        };
        let h = vnet.features(batch.x).unwrap();
        let n = batch.labels.len() as f64;
        let mut loss = match obj.scenario {
            Scenario::ClassIncremental => {
                let logits = vnet
                    .logits(&h, CIL_HEAD)
                    .unwrap()
                    .broadcast_add(obj.cil_mask)
                    .unwrap();
                net::ce_sum(&logits, batch.labels).unwrap()
            }
            Scenario::TaskIncremental => {
                let mut total = Tensor::new(0f32, &candle_core::Device::Cpu).unwrap();
                for (i, (l, t)) in batch.labels.iter().zip(batch.tasks).enumerate() {
                    let (head, classes) = &obj.heads[*t as usize];
                    let logits = vnet.logits(&h.narrow(0, i, 1).unwrap(), head).unwrap();
                    let target = crate::train::class_index(classes, *l);
                    total = (total + net::ce_sum(&logits, &[target]).unwrap()).unwrap();
                }
                total
            }
        };
        loss = (loss / n).unwrap();
        if let Some(d) = &obj.distill {
            let xc = batch.x.narrow(0, 0, batch.current).unwrap();
            let hc = h.narrow(0, 0, batch.current).unwrap();
            let th = d.teacher.features(&xc).unwrap();
            let kd = match obj.scenario {
                Scenario::ClassIncremental => {
                    let s = vnet
                        .logits(&hc, CIL_HEAD)
                        .unwrap()
                        .broadcast_add(d.parent_mask)
                        .unwrap();
                    let t = d
                        .teacher
                        .logits(&th, CIL_HEAD)
                        .unwrap()
                        .broadcast_add(d.parent_mask)
                        .unwrap();
                    net::distill_sum(&s, &t, d.temperature).unwrap()
                }
                Scenario::TaskIncremental => {
                    let mut acc = Tensor::new(0f32, &candle_core::Device::Cpu).unwrap();
                    for (head, _) in &obj.heads[..d.old_tasks] {
                        let s = vnet.logits(&hc, head).unwrap();
                        let t = d.teacher.logits(&th, head).unwrap();
                        acc = (acc + net::distill_sum(&s, &t, d.temperature).unwrap()).unwrap();
                    }
                    acc
                }
            };
            loss = (loss + (kd * (d.alpha / batch.current as f64)).unwrap()).unwrap();
        }
        let grads = loss.backward().unwrap();
        let out = vars
            .iter()
            .filter_map(|(n, v)| grads.get(v.as_tensor()).map(|g| (n.clone(), g.clone())))
            .collect();
        (loss.to_scalar::<f32>().unwrap() as f64, out)
    }

    fn close(a: &Tensor, b: &Tensor) -> f32 {
        let d = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let m = b
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        d / m.max(1e-6)
    }

    fn check(scenario: Scenario, with_distill: bool) {
        let data = crate::Dataset::optdigits_bundled(true).unwrap().take(40);
        let cfg = ModelConfig {
            input_dim: 64,
            hidden: vec![12, 9],
            scenario,
            outputs: 10,
            init_seed: 3,
        };
        let mut k = Knowledge::init(cfg.clone()).unwrap();
        let mut teacher_k = Knowledge::init(ModelConfig {
            init_seed: 4,
            ..cfg
        })
        .unwrap();
        // Task-incremental: one head per label's task (labels split by parity).
        let heads: Vec<(String, Vec<u32>)> = match scenario {
            Scenario::TaskIncremental => {
                let hs = vec![
                    ("even".to_string(), vec![0, 2, 4, 6, 8]),
                    ("odd".to_string(), vec![1, 3, 5, 7, 9]),
                ];
                for (h, c) in &hs {
                    k.add_head(h, c.len());
                    teacher_k.add_head(h, c.len());
                }
                hs
            }
            Scenario::ClassIncremental => vec![("all".into(), (0..10).collect())],
        };
        let mut rows: Vec<(usize, u32)> = (0..data.n)
            .map(|i| {
                (
                    i,
                    if scenario == Scenario::TaskIncremental {
                        data.y[i] % 2
                    } else {
                        0
                    },
                )
            })
            .collect();
        rows.sort_by_key(|r| r.1);
        let x: Vec<f32> = rows
            .iter()
            .flat_map(|(i, _)| data.row(*i).to_vec())
            .collect();
        let labels: Vec<u32> = rows.iter().map(|(i, _)| data.y[*i]).collect();
        let tasks: Vec<u32> = rows.iter().map(|r| r.1).collect();
        let x = net::batch_tensor(x, 64).unwrap();
        let cil_mask = net::class_mask(&(0..10).collect::<Vec<_>>(), 10).unwrap();
        let parent_mask = net::class_mask(&[0, 1, 2, 3, 4, 5], 10).unwrap();
        let teacher = Net::new(&teacher_k.params, 2).unwrap();
        // Distillation of task 0 only on the first 25 rows (the "current" ones).
        let current = if with_distill { 25 } else { data.n };
        let obj = Objective {
            scenario,
            heads: &heads,
            cil_mask: &cil_mask,
            distill: with_distill.then_some(Distill {
                teacher: &teacher,
                temperature: 2.0,
                alpha: 0.7,
                old_tasks: 1,
                parent_mask: &parent_mask,
            }),
        };
        let batch = Batch {
            x: &x,
            labels: &labels,
            tasks: &tasks,
            current,
        };
        let net = Net::new(&k.params, 2).unwrap();
        let (loss, grads) = loss_and_grads(&net, &obj, &batch).unwrap();
        let (want_loss, want) = autograd(&k.params, 2, &obj, &batch);
        assert!(
            (loss - want_loss).abs() < 1e-5 * want_loss.abs().max(1.0),
            "{loss} vs {want_loss}"
        );
        assert_eq!(
            grads.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>()
        );
        for (name, g) in &grads {
            let err = close(g, &want[name]);
            assert!(err < 1e-4, "{name}: relative error {err}");
        }
    }

    #[test]
    fn manual_gradients_match_autograd_class_incremental() {
        check(Scenario::ClassIncremental, false);
        check(Scenario::ClassIncremental, true);
    }

    #[test]
    fn manual_gradients_match_autograd_task_incremental() {
        check(Scenario::TaskIncremental, false);
        check(Scenario::TaskIncremental, true);
    }
}
