//! The crate's error type.

use std::fmt;
use std::path::PathBuf;

/// Everything that can go wrong in l3-worker.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A text data file (CSV) has a malformed line.
    #[error("{path}: line {line}: {message}")]
    Csv {
        path: String,
        line: usize,
        message: String,
    },
    /// An MNIST IDX file is malformed.
    #[error("invalid idx file {path}: {message}")]
    Idx { path: PathBuf, message: String },
    /// A data set is unusable (wrong shapes, labels, dtypes).
    #[error("invalid data set: {0}")]
    Dataset(String),
    /// A snapshot's tensors do not match the model its registry describes.
    #[error("snapshot does not match its registry: {0}")]
    SnapshotMismatch(Mismatch),
    /// A snapshot is malformed in some other way (registry JSON, state tensors).
    #[error("invalid snapshot: {0}")]
    Snapshot(String),
    /// The training settings, task spec or evaluation sets are inconsistent.
    #[error("invalid settings: {0}")]
    Settings(String),
    /// A stream spec could not be parsed.
    #[error("invalid stream spec {path}: {message}")]
    Stream { path: String, message: String },
    /// A tensor operation in candle failed.
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// Training diverged (a loss became NaN or infinite).
    #[error("training diverged: loss is {loss} at epoch {epoch} step {step}")]
    Diverged {
        loss: f32,
        epoch: usize,
        step: usize,
    },
    /// A tensor could not be built because its bytes do not fit its shape.
    #[error("tensor shape error: {0}")]
    Shape(#[from] l3_store::ShapeError),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The difference between the tensors a snapshot holds and the ones its registry expects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mismatch {
    /// Names the registry expects that the snapshot lacks.
    pub missing: Vec<String>,
    /// Names the snapshot holds that the registry does not expect.
    pub unexpected: Vec<String>,
    /// Names present in both whose dtype or shape differ, as "name: expected X, got Y".
    pub wrong: Vec<String>,
}

impl Mismatch {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.wrong.is_empty()
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!("missing tensors: {}", self.missing.join(", ")));
        }
        if !self.unexpected.is_empty() {
            parts.push(format!(
                "unexpected tensors: {}",
                self.unexpected.join(", ")
            ));
        }
        if !self.wrong.is_empty() {
            parts.push(format!("wrong dtype or shape: {}", self.wrong.join("; ")));
        }
        if parts.is_empty() {
            parts.push("no differences".to_string());
        }
        f.write_str(&parts.join("; "))
    }
}
