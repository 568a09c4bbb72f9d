//! Numeric diff of two snapshots. Chunks with equal ids are known equal and never read.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::id::{ChunkId, SnapshotId, TensorId};
use crate::record::{ChunkLoc, TensorRecord};
use crate::store::Store;
use crate::{numeric, DType};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Added,
    Removed,
    Changed,
    Unchanged,
}

/// How one tensor differs. Figures are None where they do not apply (added, removed,
/// a changed shape or dtype, non-float values).
#[derive(Clone, Debug, Serialize)]
pub struct TensorDiff {
    pub name: String,
    pub status: Status,
    pub old: Option<String>,
    pub new: Option<String>,
    /// ||new - old||.
    pub l2_delta: Option<f64>,
    /// ||new - old|| / ||old||.
    pub rel_change: Option<f64>,
    /// cos(old, new).
    pub cosine: Option<f64>,
    /// max |new - old|.
    pub max_abs: Option<f64>,
    /// Share of elements whose value changed.
    pub changed_fraction: Option<f64>,
    /// Chunks that differ (and so were read), of all chunks.
    pub chunks_read: u64,
}

fn describe(r: &TensorRecord) -> String {
    let dtype = DType::from_code(r.dtype).map_or("?", |d| d.name());
    format!("{dtype}{:?}", r.shape)
}

/// Compares two snapshots tensor by tensor, in name order.
pub fn diff(store: &Store, a: &SnapshotId, b: &SnapshotId) -> Result<Vec<TensorDiff>> {
    // One session for all the metadata; chunk bytes are read outside it (in parallel).
    let s = store.session()?;
    let (sa, sb) = (s.get_snapshot(a)?, s.get_snapshot(b)?);
    let names: BTreeSet<&str> = sa
        .tensors
        .iter()
        .chain(sb.tensors.iter())
        .map(|t| t.name.as_str())
        .collect();
    let find = |snap: &crate::record::SnapshotRecord, n: &str| {
        snap.tensors
            .iter()
            .find(|t| t.name == n)
            .map(|t| TensorId(t.tensor))
    };
    let mut out = Vec::new();
    for name in names {
        let (ta, tb) = (find(&sa, name), find(&sb, name));
        let blank = |status| TensorDiff {
            name: name.to_string(),
            status,
            old: None,
            new: None,
            l2_delta: None,
            rel_change: None,
            cosine: None,
            max_abs: None,
            changed_fraction: None,
            chunks_read: 0,
        };
        let (ra, rb) = {
            let get = |t: Option<TensorId>| -> Result<Option<TensorRecord>> {
                match t {
                    Some(t) => Ok(Some(
                        s.tensor(&t)?.ok_or_else(|| Error::missing("tensor", t))?,
                    )),
                    None => Ok(None),
                }
            };
            (get(ta)?, get(tb)?)
        };
        let mut d = blank(Status::Unchanged);
        d.old = ra.as_ref().map(describe);
        d.new = rb.as_ref().map(describe);
        match (ra, rb) {
            (None, Some(_)) => d.status = Status::Added,
            (Some(_), None) => d.status = Status::Removed,
            (Some(_), Some(_)) if ta == tb => {
                d.status = Status::Unchanged;
                d.l2_delta = Some(0.0);
                d.max_abs = Some(0.0);
                d.changed_fraction = Some(0.0);
            }
            (Some(ra), Some(rb)) => {
                d.status = Status::Changed;
                if ra.dtype == rb.dtype && ra.shape == rb.shape {
                    numeric_diff(store, &s, &ra, &rb, &mut d)?;
                }
            }
            (None, None) => unreachable!("name came from one of the snapshots"),
        }
        out.push(d);
    }
    Ok(out)
}

fn numeric_diff(
    store: &Store,
    s: &crate::store::Session<'_>,
    a: &TensorRecord,
    b: &TensorRecord,
    d: &mut TensorDiff,
) -> Result<()> {
    use rayon::prelude::*;

    let dtype = DType::from_code(a.dtype).ok_or_else(|| Error::Invalid("unknown dtype".into()))?;
    let differing: Vec<usize> = (0..a.chunks.len())
        .filter(|&i| a.chunks[i] != b.chunks[i])
        .collect();
    let pick = |r: &TensorRecord| differing.iter().map(|&i| r.chunks[i]).collect::<Vec<_>>();
    let (la, lb) = (s.chunk_locs(&pick(a))?, s.chunk_locs(&pick(b))?);
    let locs: Vec<(usize, ChunkLoc, ChunkLoc)> = differing
        .iter()
        .zip(la.into_iter().zip(lb))
        .map(|(&i, (x, y))| (i, x, y))
        .collect();
    let elements: u64 = a.shape.iter().product();
    let size = dtype.size();
    let (sq, max, changed) = locs
        .par_iter()
        .map(|(i, la, lb)| -> Result<(f64, f64, u64)> {
            let ba = store.read_chunk(&ChunkId(a.chunks[*i]), la)?;
            let bb = store.read_chunk(&ChunkId(b.chunks[*i]), lb)?;
            let changed = ba
                .chunks_exact(size)
                .zip(bb.chunks_exact(size))
                .filter(|(x, y)| x != y)
                .count();
            let (mut sq, mut max) = (0.0f64, 0.0f64);
            if let (Some(fa), Some(fb)) = (numeric::floats(dtype, &ba), numeric::floats(dtype, &bb))
            {
                for (x, y) in fa.iter().zip(&fb) {
                    let delta = y - x;
                    if delta.is_finite() {
                        sq += delta * delta;
                        max = max.max(delta.abs());
                    }
                }
            }
            Ok((sq, max, changed as u64))
        })
        .try_reduce(
            || (0.0, 0.0, 0),
            |x, y| Ok((x.0 + y.0, x.1.max(y.1), x.2 + y.2)),
        )?;
    d.chunks_read = locs.len() as u64 * 2;
    d.changed_fraction = Some(if elements == 0 {
        0.0
    } else {
        changed as f64 / elements as f64
    });
    if dtype.is_float() {
        let l2 = sq.sqrt();
        let (na, nb) = (a.norm_sq, b.norm_sq);
        d.l2_delta = Some(l2);
        d.max_abs = Some(max);
        d.rel_change = (na > 0.0).then(|| l2 / na.sqrt());
        // <a, b> = (|a|^2 + |b|^2 - |a - b|^2) / 2, so no unchanged chunk needs reading.
        d.cosine = (na > 0.0 && nb > 0.0)
            .then(|| ((na + nb - sq) / 2.0 / (na.sqrt() * nb.sqrt())).clamp(-1.0, 1.0));
    }
    Ok(())
}
