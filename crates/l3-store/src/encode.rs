//! Canonical encodings: exactly the bytes each id is the blake3 hash of.
//!
//! Integers are little-endian; every variable-length field is preceded by its length as a
//! u64. These encodings are independent of the rkyv archive layout, so a record's id never
//! changes when the archive format does. store-format.md, "Ids", spells them out.

use std::collections::BTreeMap;

use crate::id::{ChunkId, CommitId, DatasetId, SnapshotId, TensorId};
use crate::DType;

fn put_bytes(h: &mut blake3::Hasher, bytes: &[u8]) {
    h.update(&(bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

pub(crate) fn tensor_id(dtype: DType, shape: &[u64], chunks: &[ChunkId]) -> TensorId {
    let mut h = TensorId::hasher();
    h.update(&[dtype.code()]);
    h.update(&(shape.len() as u64).to_le_bytes());
    for d in shape {
        h.update(&d.to_le_bytes());
    }
    h.update(&(chunks.len() as u64).to_le_bytes());
    for c in chunks {
        h.update(c.as_bytes());
    }
    TensorId(*h.finalize().as_bytes())
}

pub(crate) fn snapshot_id(
    tensors: &BTreeMap<String, TensorId>,
    metadata: &BTreeMap<String, String>,
) -> SnapshotId {
    let mut h = SnapshotId::hasher();
    h.update(&(tensors.len() as u64).to_le_bytes());
    for (name, id) in tensors {
        put_bytes(&mut h, name.as_bytes());
        h.update(id.as_bytes());
    }
    h.update(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        put_bytes(&mut h, key.as_bytes());
        put_bytes(&mut h, value.as_bytes());
    }
    SnapshotId(*h.finalize().as_bytes())
}

pub(crate) fn commit_id(
    snapshot: &SnapshotId,
    parents: &[CommitId],
    author: &str,
    time_ms: i64,
    message: &str,
    record_json: &str,
) -> CommitId {
    let mut h = CommitId::hasher();
    h.update(snapshot.as_bytes());
    h.update(&(parents.len() as u64).to_le_bytes());
    for p in parents {
        h.update(p.as_bytes());
    }
    put_bytes(&mut h, author.as_bytes());
    h.update(&time_ms.to_le_bytes());
    put_bytes(&mut h, message.as_bytes());
    put_bytes(&mut h, record_json.as_bytes());
    CommitId(*h.finalize().as_bytes())
}

pub(crate) fn dataset_id(name: &str, snapshot: &SnapshotId) -> DatasetId {
    let mut h = DatasetId::hasher();
    put_bytes(&mut h, name.as_bytes());
    h.update(snapshot.as_bytes());
    DatasetId(*h.finalize().as_bytes())
}

/// The id a snapshot of these tensors would get in a store of this chunk size, computed
/// without a store (for checking that a re-run reproduced a commit bit for bit).
pub fn snapshot_id_of(
    tensors: &BTreeMap<String, crate::TensorData>,
    metadata: &BTreeMap<String, String>,
    chunk_size: u32,
) -> SnapshotId {
    let ids = tensors
        .iter()
        .map(|(name, t)| {
            let chunks: Vec<ChunkId> = t
                .bytes
                .chunks(chunk_size as usize)
                .map(crate::id::chunk_id)
                .collect();
            (name.clone(), tensor_id(t.dtype, &t.shape, &chunks))
        })
        .collect();
    snapshot_id(&ids, metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_id_matches_hand_built_encoding() {
        let chunk = crate::id::chunk_id(&[1, 2, 3, 4]);
        let mut bytes = vec![DType::F32.code()];
        bytes.extend_from_slice(&1u64.to_le_bytes());
        bytes.extend_from_slice(&1u64.to_le_bytes());
        bytes.extend_from_slice(&1u64.to_le_bytes());
        bytes.extend_from_slice(chunk.as_bytes());
        let expected = blake3::Hasher::new_derive_key(crate::id::domain::TENSOR)
            .update(&bytes)
            .finalize();
        assert_eq!(
            tensor_id(DType::F32, &[1], &[chunk]).0,
            *expected.as_bytes()
        );
    }

    #[test]
    fn snapshot_id_depends_on_names_and_metadata() {
        let t = tensor_id(DType::U8, &[0], &[]);
        let a = BTreeMap::from([("a".to_string(), t)]);
        let b = BTreeMap::from([("b".to_string(), t)]);
        let none = BTreeMap::new();
        let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
        assert_ne!(snapshot_id(&a, &none), snapshot_id(&b, &none));
        assert_ne!(snapshot_id(&a, &none), snapshot_id(&a, &meta));
        // A length prefix keeps ("ab", "") apart from ("a", "b").
        let m1 = BTreeMap::from([("ab".to_string(), String::new())]);
        let m2 = BTreeMap::from([("a".to_string(), "b".to_string())]);
        assert_ne!(snapshot_id(&a, &m1), snapshot_id(&a, &m2));
    }
}
