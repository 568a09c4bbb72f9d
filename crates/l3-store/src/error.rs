//! The store's errors. Messages are lowercase, name the thing and the cause.

use std::path::PathBuf;
use std::time::Duration;

use crate::id::{ChunkId, CommitId};
use crate::pack::ChunkReadError;
use crate::record::RecordError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{0} is not an l3 store (no l3-store file); create one with `l3 init`")]
    NotAStore(PathBuf),

    #[error("{path} already holds an l3 store")]
    AlreadyAStore { path: PathBuf },

    #[error("store {path} is busy: another process holds it (waited {waited:.1?}); try again or raise the lock timeout")]
    Busy { path: PathBuf, waited: Duration },

    #[error("store {path}: {message}")]
    BadConfig { path: PathBuf, message: String },

    #[error("metadata database: {0}")]
    Sled(#[from] sled::Error),

    #[error(transparent)]
    Record(#[from] RecordError),

    #[error(transparent)]
    Chunk(#[from] ChunkReadError),

    #[error("chunk {0} is not in the store")]
    MissingChunk(ChunkId),

    #[error("{kind} {id} is not in the store")]
    MissingObject { kind: &'static str, id: String },

    #[error("revision \"{rev}\": {cause}")]
    BadRevision { rev: String, cause: String },

    #[error("{0}")]
    Import(#[from] crate::import::ImportError),

    #[error(
        "branch \"{branch}\" moved: expected {expected}, found {actual}; retry on the new head"
    )]
    Conflict {
        branch: String,
        expected: String,
        actual: String,
    },

    #[error("tag \"{0}\" already exists; tags never move")]
    TagExists(String),

    #[error("invalid {what} name \"{name}\": {why}")]
    InvalidName {
        what: &'static str,
        name: String,
        why: &'static str,
    },

    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn missing(kind: &'static str, id: impl ToString) -> Error {
        Error::MissingObject {
            kind,
            id: id.to_string(),
        }
    }

    pub(crate) fn conflict(
        branch: &str,
        expected: Option<CommitId>,
        actual: Option<CommitId>,
    ) -> Error {
        let show = |c: Option<CommitId>| c.map_or("no commit".to_string(), |c| c.short(12));
        Error::Conflict {
            branch: branch.into(),
            expected: show(expected),
            actual: show(actual),
        }
    }
}
