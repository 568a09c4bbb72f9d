//! Committing a snapshot built in memory: the worker's path.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::id::{CommitId, SnapshotId, TensorId};
use crate::refs::{Expect, RefName, RefUpdate};
use crate::stage::{Finished, NewCommit, Source, Stage, TensorInput};
use crate::store::Store;
use crate::TensorData;

/// A tensor of a snapshot to commit: new bytes, or the id of one already stored.
#[derive(Clone, Copy, Debug)]
pub enum TensorValue<'a> {
    Data(&'a TensorData),
    /// Unchanged since a stored snapshot: not re-hashed, not re-written.
    Known(TensorId),
}

/// Where and how to commit.
#[derive(Clone, Debug)]
pub struct CommitRequest {
    /// The branch to move. None commits without moving any branch.
    pub branch: Option<String>,
    /// The parents, and the value the branch must still hold (compare-and-swap).
    pub parents: Vec<CommitId>,
    pub expected: Expect,
    /// A branch that takes the commit instead if `branch` moved meanwhile.
    pub fallback: Option<String>,
    pub author: String,
    pub message: String,
    pub record: serde_json::Value,
    pub time_ms: Option<i64>,
}

/// What a commit did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CommitOutcome {
    pub commit: CommitId,
    pub snapshot: SnapshotId,
    /// The branch that now points at the commit: the requested one, or the fallback.
    pub branch: Option<String>,
    /// Set when the requested branch had moved; holds its value then.
    pub lost_race_to: Option<CommitId>,
    pub new_bytes: u64,
    pub stored_bytes: u64,
}

/// Commits named tensors and metadata as one snapshot.
pub fn commit_tensors(
    store: &Store,
    tensors: &BTreeMap<String, TensorValue<'_>>,
    metadata: &BTreeMap<String, String>,
    req: &CommitRequest,
) -> Result<CommitOutcome> {
    let mut stage = Stage::new(store);
    let (snapshot, done_commit) = stage_tensors_commit(&mut stage, tensors, metadata, req)?;
    let updates: Vec<RefUpdate> = req
        .branch
        .iter()
        .map(|b| RefUpdate {
            name: RefName::Branch(b.clone()),
            new: done_commit,
            expected: req.expected,
            message: req.message.lines().next().unwrap_or("commit").to_string(),
            fallback: req.fallback.clone(),
        })
        .collect();
    let Finished {
        new_bytes,
        stored_bytes,
        fallbacks,
        ..
    } = stage.finish(&updates)?;
    let (branch, lost) = match fallbacks.first() {
        Some((_, fallback, actual)) => (Some(fallback.clone()), *actual),
        None => (req.branch.clone(), None),
    };
    Ok(CommitOutcome {
        commit: done_commit,
        snapshot,
        branch,
        lost_race_to: lost,
        new_bytes,
        stored_bytes,
    })
}

fn stage_tensors_commit<'a>(
    stage: &mut Stage<'a>,
    tensors: &'a BTreeMap<String, TensorValue<'a>>,
    metadata: &BTreeMap<String, String>,
    req: &CommitRequest,
) -> Result<(SnapshotId, CommitId)> {
    let mut names = Vec::new();
    let mut inputs = Vec::new();
    let mut map = BTreeMap::new();
    for (name, value) in tensors {
        match value {
            TensorValue::Data(t) => {
                if crate::byte_len(t.dtype, &t.shape).ok() != Some(t.bytes.len() as u64) {
                    return Err(Error::Invalid(format!(
                        "tensor \"{name}\": shape {:?} of {} does not fit its {} bytes",
                        t.shape,
                        t.dtype,
                        t.bytes.len()
                    )));
                }
                names.push(name.clone());
                inputs.push(TensorInput {
                    dtype: t.dtype,
                    shape: &t.shape,
                    source: Source::Memory(&t.bytes),
                });
            }
            TensorValue::Known(id) => {
                stage.add_known_tensor(*id);
                map.insert(name.clone(), *id);
            }
        }
    }
    let ids = stage.add_tensors(&inputs)?;
    map.extend(names.into_iter().zip(ids));
    let snapshot = stage.add_snapshot(&map, metadata)?;
    let commit = stage.add_commit(NewCommit {
        snapshot,
        parents: req.parents.clone(),
        author: req.author.clone(),
        time_ms: req.time_ms,
        message: req.message.clone(),
        record: req.record.clone(),
    })?;
    Ok((snapshot, commit))
}

/// Stores named tensors (inputs, labels) as a data set; identical data gives the same id.
pub fn add_dataset(
    store: &Store,
    name: &str,
    tensors: &BTreeMap<String, TensorData>,
    metadata: &BTreeMap<String, String>,
) -> Result<crate::DatasetId> {
    let mut stage = Stage::new(store);
    let names: Vec<&String> = tensors.keys().collect();
    let inputs: Vec<TensorInput> = tensors
        .values()
        .map(|t| TensorInput {
            dtype: t.dtype,
            shape: &t.shape,
            source: Source::Memory(&t.bytes),
        })
        .collect();
    let ids = stage.add_tensors(&inputs)?;
    let map = names.into_iter().cloned().zip(ids).collect();
    let snapshot = stage.add_snapshot(&map, metadata)?;
    let id = stage.add_dataset(name, snapshot)?;
    stage.finish(&[])?;
    Ok(id)
}

/// Stores every tensor of a safetensors file as a data set.
pub fn add_dataset_file(
    store: &Store,
    name: &str,
    path: &std::path::Path,
) -> Result<crate::DatasetId> {
    let (file, header) = crate::import::read_header(path)?;
    let mut stage = Stage::new(store);
    let snapshot = crate::import::stage_safetensors(&mut stage, &file, &header)?;
    let id = stage.add_dataset(name, snapshot)?;
    stage.finish(&[])?;
    Ok(id)
}

/// A data set's name and tensors.
pub fn read_dataset(
    store: &Store,
    id: &crate::DatasetId,
) -> Result<(String, BTreeMap<String, TensorData>)> {
    let rec = store
        .session()?
        .dataset(id)?
        .ok_or_else(|| Error::missing("data set", id))?;
    let tensors = store.read_snapshot(&SnapshotId(rec.snapshot), |_| true)?;
    Ok((rec.name, tensors))
}
