//! Safetensors out: a snapshot, or the tensors a filter keeps, to a file.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::id::{ChunkId, SnapshotId};
use crate::record::ChunkLoc;
use crate::store::Store;
use crate::DType;

/// What an export wrote.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ExportOutcome {
    pub tensors: usize,
    pub bytes: u64,
}

/// Writes the tensors of `snapshot` that `keep` accepts to `path` as safetensors, with the
/// snapshot's metadata. The file appears complete or not at all (written aside, renamed).
pub fn export_safetensors(
    store: &Store,
    snapshot: &SnapshotId,
    path: &Path,
    keep: impl Fn(&str) -> bool,
) -> Result<ExportOutcome> {
    let (snap, plan) = {
        let s = store.session()?;
        let snap = s.get_snapshot(snapshot)?;
        let mut plan = Vec::new();
        for entry in snap.tensors.iter().filter(|e| keep(&e.name)) {
            let rec = s
                .tensor(&crate::TensorId(entry.tensor))?
                .ok_or_else(|| Error::missing("tensor", crate::TensorId(entry.tensor)))?;
            let locs = s.chunk_locs(&rec.chunks)?;
            plan.push((entry.name.clone(), rec, locs));
        }
        (snap, plan)
    };

    // Header: metadata first, then tensors in name order with consecutive offsets.
    let mut header = serde_json::Map::new();
    if !snap.metadata.is_empty() {
        let meta = snap
            .metadata
            .iter()
            .map(|m| (m.key.clone(), serde_json::Value::String(m.value.clone())))
            .collect();
        header.insert("__metadata__".into(), serde_json::Value::Object(meta));
    }
    let mut offset = 0u64;
    for (name, rec, _) in &plan {
        let dtype = DType::from_code(rec.dtype)
            .ok_or_else(|| Error::Invalid(format!("tensor \"{name}\": unknown dtype code")))?;
        header.insert(
            name.clone(),
            serde_json::json!({
                "dtype": dtype.name(),
                "shape": rec.shape,
                "data_offsets": [offset, offset + rec.byte_len],
            }),
        );
        offset += rec.byte_len;
    }
    let mut json = serde_json::to_vec(&header).expect("JSON maps serialize");
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }

    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.l3-partial-{}", std::process::id()));
    // The file is written aside and renamed over the target: refuse targets a rename would
    // destroy rather than write to (devices, pipes, links).
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_file() {
            return Err(Error::io(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "exists and is not a regular file (a link, device, pipe or directory); \
                     give a new or regular file's path",
                ),
            ));
        }
    }
    if !dir.is_dir() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "the directory does not exist"),
        ));
    }
    let result = (|| -> Result<()> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        let io = |e| Error::io(&tmp, e);
        let mut head = (json.len() as u64).to_le_bytes().to_vec();
        head.extend_from_slice(&json);
        file.write_all_at(&head, 0).map_err(io)?;

        // Every chunk's place in the file is known, so threads read, verify and write chunks
        // independently; memory stays at a chunk or two per thread.
        let chunk_size = store.config().chunk_size as u64;
        let mut all: Vec<(ChunkId, ChunkLoc, u64)> = Vec::new();
        let mut tensor_at = head.len() as u64;
        for (_, rec, locs) in &plan {
            for (i, (c, loc)) in rec.chunks.iter().zip(locs).enumerate() {
                all.push((ChunkId(*c), *loc, tensor_at + i as u64 * chunk_size));
            }
            tensor_at += rec.byte_len;
        }
        all.par_iter().try_for_each(|(id, loc, at)| {
            let raw = store.read_chunk(id, loc)?;
            store.report(crate::Progress::Read(raw.len() as u64));
            file.write_all_at(&raw, *at).map_err(|e| Error::io(&tmp, e))
        })?;
        file.sync_data().map_err(io)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(ExportOutcome {
        tensors: plan.len(),
        bytes: offset,
    })
}
