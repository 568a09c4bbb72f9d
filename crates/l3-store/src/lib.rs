//! l3-store: a content-addressed store of model snapshots with lineage.
//!
//! A store is one directory: a config file, a sled database of metadata and append-only pack
//! files of chunk bytes. Tensors are cut into fixed-size chunks named by their blake3 hash,
//! so identical chunks are kept once across tensors, snapshots and branches. Commits form a
//! lineage graph with branches, tags and a reflog. The byte-level format is specified in
//! `store-format.md` at the repository root. The library never prints.

mod codec;
mod commit;
mod diff;
mod dtype;
mod encode;
mod error;
mod export;
#[doc(hidden)]
pub mod faults;
mod fsck;
mod gc;
mod id;
mod import;
mod lineage;
mod numeric;
mod ops;
mod pack;
mod record;
mod refs;
mod stage;
mod stats;
mod store;

pub use codec::{Compression, Encoding};
pub use commit::{
    add_dataset, add_dataset_file, commit_tensors, read_dataset, CommitOutcome, CommitRequest,
    TensorValue,
};
pub use diff::{diff, Status, TensorDiff};
pub use dtype::{byte_len, DType, ShapeError, TensorData, UnknownDType};
pub use encode::snapshot_id_of;
pub use error::{Error, Result};
pub use export::{export_safetensors, ExportOutcome};
pub use fsck::{fsck, FsckReport, Problem};
pub use gc::{gc, GcOptions, GcReport};
pub use id::{chunk_id, BadId, ChunkId, CommitId, DatasetId, SnapshotId, TensorId};
pub use import::{
    import_safetensors, parse_header, read_header, stage_safetensors, CommitOptions, Header,
    HeaderTensor, ImportError, ImportOutcome,
};
pub use lineage::{record_datasets, CommitInfo};
pub use numeric::floats;
pub use ops::{Job, JobState, MAX_ATTEMPTS};
pub use record::{decode_any_record, ChunkLoc, CommitRecord, SnapshotRecord, TensorRecord};
pub use refs::{check_name, Expect, RefLogEntry, RefName, RefUpdate};
pub use stage::{Finished, NewCommit, Source, Stage, TensorInput};
pub use stats::{stats, Stats};
pub use store::{
    Progress, ProgressFn, Session, Store, StoreConfig, StoreOptions, CONFIG_FILE,
    DEFAULT_CHUNK_SIZE, FORMAT_VERSION,
};
