//! Store statistics: what dedup and compression saved.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::record::{self, ChunkLoc, CommitRecord, DatasetRecord, SnapshotRecord};
use crate::store::{kind, Store};

#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    pub commits: u64,
    pub snapshots: u64,
    pub tensors: u64,
    pub chunks: u64,
    /// Sum of the snapshot sizes of every commit and data set: what whole-file storage
    /// (one full copy per version) would keep.
    pub logical_bytes: u64,
    /// Raw bytes of the distinct chunks.
    pub unique_bytes: u64,
    /// Bytes of the chunks as stored, after compression.
    pub chunk_stored_bytes: u64,
    /// Bytes of pack files on disk (includes garbage until gc).
    pub stored_bytes: u64,
    /// logical / unique.
    pub dedup_ratio: f64,
    /// unique / chunk_stored.
    pub compression_ratio: f64,
}

pub fn stats(store: &Store) -> Result<Stats> {
    let mut st = Stats::default();
    {
        let s = store.session()?;
        let mut sizes = std::collections::HashMap::new();
        let mut versions = Vec::new();
        for item in s.t.objects.iter() {
            let (k, v) = item?;
            match k[0] {
                kind::COMMIT => {
                    st.commits += 1;
                    versions.push(record::decode::<CommitRecord>(&v)?.snapshot);
                }
                kind::DATASET => versions.push(record::decode::<DatasetRecord>(&v)?.snapshot),
                kind::TENSOR => st.tensors += 1,
                kind::SNAPSHOT => {
                    st.snapshots += 1;
                    let rec: SnapshotRecord = record::decode(&v)?;
                    sizes.insert(k[1..].to_vec(), rec.logical_bytes);
                }
                _ => {}
            }
        }
        st.logical_bytes = versions.iter().filter_map(|v| sizes.get(&v[..])).sum();
        for item in s.t.chunks.iter() {
            let (_, v) = item?;
            let loc: ChunkLoc = record::decode(&v)?;
            st.chunks += 1;
            st.unique_bytes += loc.raw_len as u64;
            st.chunk_stored_bytes += loc.stored_len as u64;
        }
    }
    let dir = store.packs_dir();
    for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
        let entry = entry.map_err(|e| Error::io(&dir, e))?;
        st.stored_bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
    }
    let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    st.dedup_ratio = ratio(st.logical_bytes, st.unique_bytes);
    st.compression_ratio = ratio(st.unique_bytes, st.chunk_stored_bytes);
    Ok(st)
}
