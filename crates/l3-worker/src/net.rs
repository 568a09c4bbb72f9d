//! The MLP's forward pass and losses in candle.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, D};

use crate::error::Result;
use crate::model::{backbone_bias, backbone_weight, head_bias, head_weight, Param};

/// Added to the logits of classes outside the allowed set. Finite so that a zero one-hot
/// entry times its log-probability is 0, large enough that its softmax weight is exactly 0.
pub(crate) const MASKED: f32 = -1.0e9;

/// The model's parameters as candle tensors; trainable ones are backed by [`Var`]s.
///
/// Weights are held transposed, `[in, out]`, so that neither the forward pass nor the
/// gradient needs a strided copy; [`Param`]s and snapshots keep the usual `[out, in]`.
pub(crate) struct Net {
    pub tensors: BTreeMap<String, Tensor>,
    pub layers: usize,
}

impl Net {
    /// Builds the network from `params`.
    pub fn new(params: &BTreeMap<String, Param>, layers: usize) -> Result<Net> {
        let mut tensors = BTreeMap::new();
        for (name, p) in params {
            tensors.insert(name.clone(), internal_tensor(name, p)?);
        }
        Ok(Net { tensors, layers })
    }

    fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| crate::Error::Snapshot(format!("model has no parameter {name}")))
    }

    /// The last hidden layer's activations.
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for i in 0..self.layers {
            h = linear(
                &h,
                self.get(&backbone_weight(i))?,
                self.get(&backbone_bias(i))?,
            )?
            .relu()?;
        }
        Ok(h)
    }

    /// Every layer's input and pre-activation: `(inputs[i], preacts[i])` for layer `i`, and the
    /// last hidden activations.
    pub fn forward_trace(&self, x: &Tensor) -> Result<(Vec<Tensor>, Vec<Tensor>, Tensor)> {
        let mut inputs = Vec::with_capacity(self.layers);
        let mut preacts = Vec::with_capacity(self.layers);
        let mut h = x.clone();
        for i in 0..self.layers {
            let z = linear(
                &h,
                self.get(&backbone_weight(i))?,
                self.get(&backbone_bias(i))?,
            )?;
            inputs.push(h);
            h = z.relu()?;
            preacts.push(z);
        }
        Ok((inputs, preacts, h))
    }

    /// A head's logits for features `h`.
    pub fn logits(&self, h: &Tensor, head: &str) -> Result<Tensor> {
        linear(
            h,
            self.get(&head_weight(head))?,
            self.get(&head_bias(head))?,
        )
    }
}

/// `x W + b` with `W` in the internal `[in, out]` layout.
pub(crate) fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(x.matmul(w)?.broadcast_add(b)?)
}

fn is_weight(name: &str) -> bool {
    name.ends_with("/weight")
}

/// A parameter (or a tensor shaped like one) as a tensor in the internal layout: weights
/// `[out, in]` become `[in, out]`.
pub(crate) fn internal_tensor(name: &str, p: &Param) -> Result<Tensor> {
    if is_weight(name) && p.shape.len() == 2 {
        let (rows, cols) = (p.shape[0], p.shape[1]);
        let mut t = vec![0f32; p.values.len()];
        for r in 0..rows {
            for c in 0..cols {
                t[c * rows + r] = p.values[r * cols + c];
            }
        }
        Ok(Tensor::from_vec(t, (cols, rows), &Device::Cpu)?)
    } else {
        Ok(Tensor::from_slice(
            &p.values,
            p.shape.as_slice(),
            &Device::Cpu,
        )?)
    }
}

/// The values of an internal-layout tensor in the parameter layout.
pub(crate) fn param_values(name: &str, t: &Tensor) -> Result<Vec<f32>> {
    let t = if is_weight(name) && t.rank() == 2 {
        t.t()?.contiguous()?
    } else {
        t.clone()
    };
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

/// Log-softmax over the last dimension (the max is treated as a constant, as usual).
pub(crate) fn log_softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let diff = x.broadcast_sub(&max)?;
    let lse = diff.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(diff.broadcast_sub(&lse)?)
}

/// Softmax over the last dimension.
pub(crate) fn softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?;
    let e = x.broadcast_sub(&max)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
}

#[cfg(test)]
/// The summed (not averaged) cross-entropy of `logits` against class indices `targets`.
pub(crate) fn ce_sum(logits: &Tensor, targets: &[u32]) -> Result<Tensor> {
    let onehot = one_hot(targets, logits.dim(1)?)?;
    Ok((onehot * log_softmax(logits)?)?.sum_all()?.neg()?)
}

pub(crate) fn one_hot(targets: &[u32], classes: usize) -> Result<Tensor> {
    let mut v = vec![0f32; targets.len() * classes];
    for (i, t) in targets.iter().enumerate() {
        v[i * classes + *t as usize] = 1.0;
    }
    Ok(Tensor::from_vec(v, (targets.len(), classes), &Device::Cpu)?)
}

/// A `[1, width]` additive mask: 0 for allowed classes, [`MASKED`] for the rest.
pub(crate) fn class_mask(allowed: &[u32], width: usize) -> Result<Tensor> {
    let mut v = vec![MASKED; width];
    for c in allowed {
        let slot = v.get_mut(*c as usize).ok_or_else(|| {
            crate::Error::Settings(format!("class {c} is not below the head's {width} outputs"))
        })?;
        *slot = 0.0;
    }
    Ok(Tensor::from_vec(v, (1, width), &Device::Cpu)?)
}

#[cfg(test)]
/// Distillation loss summed over samples: cross-entropy of the student's tempered
/// distribution against the teacher's, times `T^2` (Hinton et al.).
pub(crate) fn distill_sum(student: &Tensor, teacher: &Tensor, temperature: f64) -> Result<Tensor> {
    let inv_t = 1.0 / temperature;
    let p = softmax(&teacher.detach().affine(inv_t, 0.0)?)?;
    let logq = log_softmax(&student.affine(inv_t, 0.0)?)?;
    Ok((p * logq)?
        .sum_all()?
        .neg()?
        .affine(temperature * temperature, 0.0)?)
}

/// A host batch as a tensor.
pub(crate) fn batch_tensor(x: Vec<f32>, d: usize) -> Result<Tensor> {
    let n = x.len() / d;
    Ok(Tensor::from_vec(x, (n, d), &Device::Cpu)?)
}

/// Row-wise argmax of a `[n, c]` tensor.
pub(crate) fn argmax_rows(t: &Tensor) -> Result<Vec<usize>> {
    let rows: Vec<Vec<f32>> = t.to_dtype(DType::F32)?.to_vec2()?;
    Ok(rows
        .iter()
        .map(|r| {
            let mut best = 0;
            for (i, v) in r.iter().enumerate() {
                if *v > r[best] {
                    best = i;
                }
            }
            best
        })
        .collect())
}
