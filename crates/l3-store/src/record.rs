//! Archived records kept in sled: rkyv 0.8 archives behind an 8-byte header.
//!
//! Header: `b"L3"`, a kind byte, the record's format version, four zero bytes. The archive
//! follows; it is validated (bytecheck) on every read. See store-format.md, "Records".

use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

pub const HEADER_LEN: usize = 8;
pub const MAGIC: [u8; 2] = *b"L3";

/// A record kind: its kind byte and current version.
pub trait Record: Archive + Sized {
    const KIND: u8;
    const VERSION: u8;
    const NAME: &'static str;
}

/// A stored record that could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("{kind} record is corrupt: {cause}")]
pub struct RecordError {
    pub kind: &'static str,
    pub cause: String,
}

pub fn encode<T>(value: &T) -> Vec<u8>
where
    T: Record + for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>,
{
    let archive = rkyv::to_bytes::<rancor::Error>(value).expect("records always serialize");
    let mut out = Vec::with_capacity(HEADER_LEN + archive.len());
    out.extend_from_slice(&MAGIC);
    out.push(T::KIND);
    out.push(T::VERSION);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&archive);
    out
}

pub fn decode<T>(bytes: &[u8]) -> Result<T, RecordError>
where
    T: Record,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<HighValidator<'a, rancor::Error>>
        + Deserialize<T, HighDeserializer<rancor::Error>>,
{
    let fail = |cause: String| RecordError {
        kind: T::NAME,
        cause,
    };
    if bytes.len() < HEADER_LEN || bytes[..2] != MAGIC {
        return Err(fail("missing L3 record header".into()));
    }
    if bytes[2] != T::KIND {
        return Err(fail(format!(
            "kind byte {:#04x}, expected {:#04x}",
            bytes[2],
            T::KIND
        )));
    }
    if bytes[3] > T::VERSION {
        return Err(fail(format!(
            "record version {} is newer than this build reads ({}); upgrade l3",
            bytes[3],
            T::VERSION
        )));
    }
    let mut aligned = AlignedVec::<16>::with_capacity(bytes.len() - HEADER_LEN);
    aligned.extend_from_slice(&bytes[HEADER_LEN..]);
    rkyv::from_bytes::<T, rancor::Error>(&aligned).map_err(|e| fail(e.to_string()))
}

/// Where a chunk's stored bytes are. Kind `C`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLoc {
    pub pack: u64,
    pub offset: u64,
    pub stored_len: u32,
    pub raw_len: u32,
    pub encoding: u8,
}

/// A tensor manifest. Kind `T`. `norm_sq` (sum of squared elements, NaN for non-floats)
/// is derived data kept for diffs; it is not part of the id.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TensorRecord {
    pub dtype: u8,
    pub shape: Vec<u64>,
    pub chunks: Vec<[u8; 32]>,
    pub byte_len: u64,
    pub norm_sq: f64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct NamedTensor {
    pub name: String,
    pub tensor: [u8; 32],
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MetaEntry {
    pub key: String,
    pub value: String,
}

/// A snapshot. Kind `S`. Tensors sorted by name bytes, metadata sorted by key.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRecord {
    pub tensors: Vec<NamedTensor>,
    pub metadata: Vec<MetaEntry>,
    pub logical_bytes: u64,
}

/// A commit. Kind `K`. `generation` (1 for a root, else 1 + the largest parent generation)
/// is derived and not part of the id.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CommitRecord {
    pub snapshot: [u8; 32],
    pub parents: Vec<[u8; 32]>,
    pub author: String,
    pub time_ms: i64,
    pub message: String,
    pub record_json: String,
    pub generation: u64,
}

/// A data set. Kind `D`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct DatasetRecord {
    pub name: String,
    pub snapshot: [u8; 32],
    pub time_ms: i64,
}

/// One move of a branch. Kind `R`. An all-zero id means "no commit" (created or deleted).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RefLogRecord {
    pub old: [u8; 32],
    pub new: [u8; 32],
    pub time_ms: i64,
    pub message: String,
}

/// A pin keeps a commit and everything it reaches from gc until it expires. Kind `P`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PinRecord {
    pub commit: [u8; 32],
    pub expires_ms: i64,
    pub holder: String,
}

/// A pack file known to the index. Kind `A`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PackRecord {
    pub created_ms: i64,
}

/// A queued training job. Kind `J`. `spec_json` is the worker's job description.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    pub spec_json: String,
    pub state: u8,
    pub attempts: u32,
    pub lease_holder: String,
    pub lease_expires_ms: i64,
    pub result_json: String,
    pub submitted_ms: i64,
}

macro_rules! record_kind {
    ($t:ty, $kind:expr, $name:expr) => {
        impl Record for $t {
            const KIND: u8 = $kind;
            const VERSION: u8 = 1;
            const NAME: &'static str = $name;
        }
    };
}

record_kind!(ChunkLoc, b'C', "chunk location");
record_kind!(TensorRecord, b'T', "tensor");
record_kind!(SnapshotRecord, b'S', "snapshot");
record_kind!(CommitRecord, b'K', "commit");
record_kind!(DatasetRecord, b'D', "data set");
record_kind!(RefLogRecord, b'R', "reflog entry");
record_kind!(PinRecord, b'P', "pin");
record_kind!(PackRecord, b'A', "pack");
record_kind!(JobRecord, b'J', "job");

/// Decodes `bytes` as every record kind in turn, discarding the results: for fuzzing that
/// validation refuses bad archives instead of misreading them.
#[doc(hidden)]
pub fn decode_any_record(bytes: &[u8]) {
    let _ = decode::<ChunkLoc>(bytes);
    let _ = decode::<TensorRecord>(bytes);
    let _ = decode::<SnapshotRecord>(bytes);
    let _ = decode::<CommitRecord>(bytes);
    let _ = decode::<DatasetRecord>(bytes);
    let _ = decode::<RefLogRecord>(bytes);
    let _ = decode::<PinRecord>(bytes);
    let _ = decode::<PackRecord>(bytes);
    let _ = decode::<JobRecord>(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_header_checks() {
        let rec = CommitRecord {
            snapshot: [7; 32],
            parents: vec![[1; 32], [2; 32]],
            author: "ada".into(),
            time_ms: 1_700_000_000_000,
            message: "train task 2".into(),
            record_json: "{}".into(),
            generation: 3,
        };
        let bytes = encode(&rec);
        assert_eq!(&bytes[..4], &[b'L', b'3', b'K', 1]);
        assert_eq!(decode::<CommitRecord>(&bytes).unwrap(), rec);

        // Wrong kind, newer version and truncation are refused, never mis-read.
        assert!(decode::<SnapshotRecord>(&bytes).is_err());
        let mut newer = bytes.clone();
        newer[3] = 2;
        assert!(decode::<CommitRecord>(&newer)
            .unwrap_err()
            .to_string()
            .contains("newer"));
        assert!(decode::<CommitRecord>(&bytes[..bytes.len() - 3]).is_err());
    }
}
