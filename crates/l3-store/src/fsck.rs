//! fsck: re-hash every chunk and check every reference.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;
use serde::Serialize;

use crate::error::Result;
use crate::id::{ChunkId, CommitId, DatasetId, SnapshotId, TensorId};
use crate::record::{self, ChunkLoc, CommitRecord, DatasetRecord, SnapshotRecord, TensorRecord};
use crate::store::{kind, Store};

/// One thing wrong with a store, named precisely.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// The stored bytes do not hash to the chunk's id; `snapshots` use the chunk.
    CorruptChunk {
        chunk: ChunkId,
        pack: String,
        cause: String,
        snapshots: Vec<SnapshotId>,
    },
    MissingChunk {
        chunk: ChunkId,
        tensor: TensorId,
    },
    MissingTensor {
        tensor: TensorId,
        snapshot: SnapshotId,
        name: String,
    },
    MissingSnapshot {
        snapshot: SnapshotId,
        referenced_by: String,
    },
    MissingCommit {
        commit: CommitId,
        referenced_by: String,
    },
    BadRecord {
        key: String,
        cause: String,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::CorruptChunk {
                chunk,
                pack,
                cause,
                snapshots,
            } => write!(
                f,
                "chunk {chunk} in pack {pack} is corrupt ({cause}); used by {} snapshot(s): {}",
                snapshots.len(),
                snapshots
                    .iter()
                    .map(|s| s.short(12))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Problem::MissingChunk { chunk, tensor } => {
                write!(f, "chunk {chunk} of tensor {tensor} is not in the store")
            }
            Problem::MissingTensor {
                tensor,
                snapshot,
                name,
            } => write!(
                f,
                "tensor {tensor} (\"{name}\" in snapshot {}) is not in the store",
                snapshot.short(12)
            ),
            Problem::MissingSnapshot {
                snapshot,
                referenced_by,
            } => {
                write!(
                    f,
                    "snapshot {snapshot} named by {referenced_by} is not in the store"
                )
            }
            Problem::MissingCommit {
                commit,
                referenced_by,
            } => {
                write!(
                    f,
                    "commit {commit} named by {referenced_by} is not in the store"
                )
            }
            Problem::BadRecord { key, cause } => write!(f, "record {key}: {cause}"),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct FsckReport {
    pub chunks_checked: u64,
    pub objects_checked: u64,
    pub refs_checked: u64,
    pub problems: Vec<Problem>,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

pub fn fsck(store: &Store) -> Result<FsckReport> {
    let mut report = FsckReport::default();
    let mut chunks: Vec<(ChunkId, ChunkLoc)> = Vec::new();
    let mut tensors: HashMap<TensorId, TensorRecord> = HashMap::new();
    let mut snapshots: HashMap<SnapshotId, SnapshotRecord> = HashMap::new();
    let mut commits: HashMap<CommitId, CommitRecord> = HashMap::new();
    let mut datasets: HashMap<DatasetId, DatasetRecord> = HashMap::new();
    let mut refs = Vec::new();
    {
        let s = store.session()?;
        let bad = |key: String, e: record::RecordError| Problem::BadRecord {
            key,
            cause: e.to_string(),
        };
        for item in s.t.chunks.iter() {
            let (k, v) = item?;
            let id = ChunkId::from_slice(&k).unwrap_or(ChunkId([0; 32]));
            match record::decode::<ChunkLoc>(&v) {
                Ok(loc) => chunks.push((id, loc)),
                Err(e) => report.problems.push(bad(format!("chunk {id}"), e)),
            }
        }
        for item in s.t.objects.iter() {
            let (k, v) = item?;
            report.objects_checked += 1;
            let raw: [u8; 32] = k[1..].try_into().unwrap_or([0; 32]);
            let key = format!("{}:{}", k[0] as char, CommitId(raw).to_hex());
            let res = match k[0] {
                kind::TENSOR => record::decode(&v).map(|r| {
                    tensors.insert(TensorId(raw), r);
                }),
                kind::SNAPSHOT => record::decode(&v).map(|r| {
                    snapshots.insert(SnapshotId(raw), r);
                }),
                kind::COMMIT => record::decode(&v).map(|r| {
                    commits.insert(CommitId(raw), r);
                }),
                kind::DATASET => record::decode(&v).map(|r| {
                    datasets.insert(DatasetId(raw), r);
                }),
                _ => Ok(()),
            };
            if let Err(e) = res {
                report.problems.push(bad(key, e));
            }
        }
        for item in s.t.refs.iter() {
            let (k, v) = item?;
            refs.push((
                String::from_utf8_lossy(&k).into_owned(),
                CommitId::from_slice(&v),
            ));
        }
    }

    // Every chunk: read and re-hash.
    report.chunks_checked = chunks.len() as u64;
    let corrupt: Vec<(ChunkId, ChunkLoc, String)> = chunks
        .par_iter()
        .filter_map(|(id, loc)| match store.read_chunk(id, loc) {
            Ok(_) => None,
            Err(e) => Some((*id, *loc, e.to_string())),
        })
        .collect();
    let indexed: HashSet<ChunkId> = chunks.iter().map(|(c, _)| *c).collect();
    for (chunk, loc, cause) in corrupt {
        let mut users: Vec<SnapshotId> = snapshots
            .iter()
            .filter(|(_, s)| {
                s.tensors.iter().any(|t| {
                    tensors
                        .get(&TensorId(t.tensor))
                        .is_some_and(|r| r.chunks.contains(&chunk.0))
                })
            })
            .map(|(id, _)| *id)
            .collect();
        users.sort();
        report.problems.push(Problem::CorruptChunk {
            chunk,
            pack: crate::pack::pack_file_name(loc.pack),
            cause,
            snapshots: users,
        });
    }

    // Every reference.
    for (tid, rec) in &tensors {
        for c in &rec.chunks {
            if !indexed.contains(&ChunkId(*c)) {
                report.problems.push(Problem::MissingChunk {
                    chunk: ChunkId(*c),
                    tensor: *tid,
                });
            }
        }
    }
    for (sid, rec) in &snapshots {
        for t in &rec.tensors {
            if !tensors.contains_key(&TensorId(t.tensor)) {
                report.problems.push(Problem::MissingTensor {
                    tensor: TensorId(t.tensor),
                    snapshot: *sid,
                    name: t.name.clone(),
                });
            }
        }
    }
    for (cid, rec) in &commits {
        if !snapshots.contains_key(&SnapshotId(rec.snapshot)) {
            report.problems.push(Problem::MissingSnapshot {
                snapshot: SnapshotId(rec.snapshot),
                referenced_by: format!("commit {}", cid.short(12)),
            });
        }
        for p in &rec.parents {
            if !commits.contains_key(&CommitId(*p)) {
                report.problems.push(Problem::MissingCommit {
                    commit: CommitId(*p),
                    referenced_by: format!("commit {} (parent)", cid.short(12)),
                });
            }
        }
    }
    for (did, rec) in &datasets {
        if !snapshots.contains_key(&SnapshotId(rec.snapshot)) {
            report.problems.push(Problem::MissingSnapshot {
                snapshot: SnapshotId(rec.snapshot),
                referenced_by: format!("data set \"{}\" ({})", rec.name, did.short(12)),
            });
        }
    }
    for (name, target) in refs {
        report.refs_checked += 1;
        match target {
            Some(c) if commits.contains_key(&c) => {}
            Some(c) => report.problems.push(Problem::MissingCommit {
                commit: c,
                referenced_by: name,
            }),
            None => report.problems.push(Problem::BadRecord {
                key: name,
                cause: "ref value is not a 32-byte id".into(),
            }),
        }
    }
    Ok(report)
}
