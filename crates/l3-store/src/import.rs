//! Safetensors in: header validation and streaming import.
//!
//! The header is checked completely before a single chunk is written, so a bad file leaves
//! the store untouched. Tensor bytes are read from the file chunk by chunk (never the whole
//! file), hashed in parallel, and only chunks the store lacks are compressed and written.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::de::{Deserializer, MapAccess, Visitor};

use crate::dtype::{byte_len, DType};
use crate::error::{Error, Result};
use crate::id::{CommitId, SnapshotId};
use crate::refs::{Expect, RefName, RefUpdate};
use crate::stage::{NewCommit, Source, Stage, TensorInput};
use crate::store::Store;

/// Largest header accepted (the reference implementation's limit).
const MAX_HEADER: u64 = 100_000_000;

/// Why a safetensors file was refused. Each names the file and the problem.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct ImportError {
    pub path: PathBuf,
    pub problem: String,
}

/// One tensor entry of a validated header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderTensor {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<u64>,
    /// Offsets into the data section, as the header gives them.
    pub begin: u64,
    pub end: u64,
}

/// A validated safetensors header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub tensors: Vec<HeaderTensor>,
    pub metadata: BTreeMap<String, String>,
    /// Where the data section starts in the file: 8 + header length.
    pub data_start: u64,
}

/// Keeps every key of a JSON object in order, so duplicates can be refused.
struct Entries(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Entries, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = m.next_entry::<String, serde_json::Value>()? {
                    out.push(entry);
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Parses and validates the header of a safetensors file of `file_len` bytes whose first
/// bytes (at least 8 + header length) are `prefix`.
pub fn parse_header(header_json: &[u8], file_len: u64) -> std::result::Result<Header, String> {
    let data_start = 8 + header_json.len() as u64;
    let text = std::str::from_utf8(header_json).map_err(|e| {
        format!(
            "header is not UTF-8 JSON (invalid UTF-8 at byte {})",
            e.valid_up_to()
        )
    })?;
    let Entries(entries) = serde_json::from_str(text.trim_end_matches(' '))
        .map_err(|e| format!("header is not a JSON object: {e}"))?;

    let mut header = Header {
        data_start,
        ..Header::default()
    };
    let mut names = std::collections::HashSet::new();
    for (name, value) in entries {
        if !names.insert(name.clone()) {
            return Err(format!(
                "tensor \"{}\" appears twice in the header",
                name.escape_debug()
            ));
        }
        if name == "__metadata__" {
            let map = value
                .as_object()
                .ok_or("__metadata__ is not an object of strings")?;
            if map.contains_key("dtype") && map.contains_key("data_offsets") {
                return Err(
                    "a tensor is named \"__metadata__\", which safetensors reserves".into(),
                );
            }
            for (k, v) in map {
                let v = v.as_str().ok_or_else(|| {
                    format!("__metadata__ value for \"{k}\" is {v}, not a string")
                })?;
                header.metadata.insert(k.clone(), v.to_string());
            }
            continue;
        }
        header.tensors.push(parse_tensor(&name, &value)?);
    }

    // The data section must be exactly tiled by the tensors: no overlap, no gap.
    let data_len = file_len.saturating_sub(data_start);
    let mut by_offset: Vec<&HeaderTensor> = header.tensors.iter().collect();
    by_offset.sort_by_key(|t| (t.begin, t.end));
    let mut at = 0u64;
    let mut last: Option<&HeaderTensor> = None;
    for t in &by_offset {
        if t.begin < at {
            let other = last.map_or(String::new(), |l| {
                format!(" and \"{}\"", l.name.escape_debug())
            });
            return Err(format!(
                "tensor \"{}\"{other} claim the same bytes (offset {} is before {at})",
                t.name.escape_debug(),
                t.begin
            ));
        }
        if t.begin > at {
            return Err(format!(
                "data bytes [{at}, {}) belong to no tensor (before \"{}\")",
                t.begin,
                t.name.escape_debug()
            ));
        }
        at = t.end;
        last = Some(t);
    }
    if at > data_len {
        return Err(format!(
            "file is truncated: the header needs {at} data bytes, the file has {data_len}"
        ));
    }
    if at < data_len {
        return Err(format!(
            "data bytes [{at}, {data_len}) after the last tensor belong to no tensor"
        ));
    }
    Ok(header)
}

fn parse_tensor(
    name: &str,
    value: &serde_json::Value,
) -> std::result::Result<HeaderTensor, String> {
    let shown = name.escape_debug().to_string();
    if name.is_empty() {
        return Err("a tensor has an empty name".into());
    }
    if name.contains('\0') {
        return Err(format!("tensor \"{shown}\" has a NUL byte in its name"));
    }
    let obj = value
        .as_object()
        .ok_or_else(|| format!("tensor \"{shown}\" is not an object"))?;
    let dtype_name = obj
        .get("dtype")
        .and_then(|d| d.as_str())
        .ok_or_else(|| format!("tensor \"{shown}\" has no dtype string"))?;
    let dtype: DType = dtype_name
        .parse()
        .map_err(|e| format!("tensor \"{shown}\": {e}"))?;
    let dims = obj
        .get("shape")
        .and_then(|s| s.as_array())
        .ok_or_else(|| format!("tensor \"{shown}\" has no shape array"))?;
    let mut shape = Vec::with_capacity(dims.len());
    for d in dims {
        let dim = d.as_u64().ok_or_else(|| {
            format!("tensor \"{shown}\": dimension {d} is not a non-negative 64-bit integer")
        })?;
        shape.push(dim);
    }
    let offsets = obj
        .get("data_offsets")
        .and_then(|o| o.as_array())
        .filter(|o| o.len() == 2)
        .ok_or_else(|| format!("tensor \"{shown}\" has no data_offsets pair"))?;
    let (Some(begin), Some(end)) = (offsets[0].as_u64(), offsets[1].as_u64()) else {
        return Err(format!(
            "tensor \"{shown}\": data_offsets are not non-negative integers"
        ));
    };
    if end < begin {
        return Err(format!(
            "tensor \"{shown}\": data_offsets [{begin}, {end}] run backwards"
        ));
    }
    let need = byte_len(dtype, &shape).map_err(|_| {
        format!("tensor \"{shown}\": shape {shape:?} has more elements than fit in 64 bits")
    })?;
    if need != end - begin {
        return Err(format!(
            "tensor \"{shown}\": shape {shape:?} of {dtype} needs {need} bytes, data_offsets [{begin}, {end}] give {}",
            end - begin
        ));
    }
    Ok(HeaderTensor {
        name: name.to_string(),
        dtype,
        shape,
        begin,
        end,
    })
}

/// Reads and validates the header of a safetensors file.
pub fn read_header(path: &Path) -> Result<(File, Header)> {
    let fail = |problem: String| {
        Error::Import(ImportError {
            path: path.to_path_buf(),
            problem,
        })
    };
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut first = [0u8; 8];
    let got = (&file)
        .take(8)
        .read(&mut first)
        .map_err(|e| Error::io(path, e))?;
    let mut head = [0u8; 64];
    let n = file.read_at(&mut head, 0).unwrap_or(0);
    if head[..n].starts_with(b"version https://git-lfs") {
        return Err(fail(
            "this is a Git LFS pointer file, not the weights; run `git lfs pull` to fetch them"
                .into(),
        ));
    }
    if got < 8 || file_len < 8 {
        return Err(fail(format!(
            "file is {file_len} bytes, too short for a safetensors header"
        )));
    }
    let header_len = u64::from_le_bytes(first);
    if header_len > file_len - 8 {
        return Err(fail(format!(
            "header length {header_len} is larger than the file ({file_len} bytes)"
        )));
    }
    if header_len > MAX_HEADER {
        return Err(fail(format!(
            "header length {header_len} exceeds the {MAX_HEADER}-byte limit"
        )));
    }
    let mut json = vec![0u8; header_len as usize];
    file.read_exact_at(&mut json, 8)
        .map_err(|e| Error::io(path, e))?;
    let header = parse_header(&json, file_len).map_err(fail)?;
    Ok((file, header))
}

/// Stages every tensor of a validated safetensors file; returns the snapshot id.
pub fn stage_safetensors<'a>(
    stage: &mut Stage<'a>,
    file: &'a File,
    header: &'a Header,
) -> Result<SnapshotId> {
    let inputs: Vec<TensorInput<'a>> = header
        .tensors
        .iter()
        .map(|t| TensorInput {
            dtype: t.dtype,
            shape: &t.shape,
            source: Source::File {
                file,
                offset: header.data_start + t.begin,
            },
        })
        .collect();
    let ids = stage.add_tensors(&inputs)?;
    let map = header
        .tensors
        .iter()
        .map(|t| t.name.clone())
        .zip(ids)
        .collect();
    stage.add_snapshot(&map, &header.metadata)
}

/// How an import is committed.
#[derive(Clone, Debug)]
pub struct CommitOptions {
    /// The branch to commit on; the current branch when None.
    pub branch: Option<String>,
    pub author: String,
    pub message: String,
    pub record: serde_json::Value,
}

/// What an import did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ImportOutcome {
    pub commit: CommitId,
    pub snapshot: SnapshotId,
    pub branch: String,
    pub tensors: usize,
    pub logical_bytes: u64,
    /// Raw bytes of chunks the store did not have before.
    pub new_bytes: u64,
    /// Those bytes as stored, after compression.
    pub stored_bytes: u64,
}

/// Imports a safetensors file as a commit on a branch (parent: the branch's head).
pub fn import_safetensors(
    store: &Store,
    path: &Path,
    opts: &CommitOptions,
) -> Result<ImportOutcome> {
    let (file, header) = read_header(path)?;
    let branch = match &opts.branch {
        Some(b) => b.clone(),
        None => store.session()?.head_branch()?,
    };
    crate::refs::check_name("branch", &branch)?;
    let logical_bytes = header.tensors.iter().map(|t| t.end - t.begin).sum();

    // A concurrent commit to the same branch makes the CAS fail: commit again on the new
    // head (the chunks are stored by then, so the retry only re-hashes).
    let mut totals = (0, 0);
    for attempt in 0.. {
        let head = store.session()?.get_ref(&RefName::Branch(branch.clone()))?;
        let mut stage = Stage::new(store);
        let snapshot = stage_safetensors(&mut stage, &file, &header)?;
        let commit = stage.add_commit(NewCommit {
            snapshot,
            parents: head.into_iter().collect(),
            author: opts.author.clone(),
            time_ms: None,
            message: opts.message.clone(),
            record: opts.record.clone(),
        })?;
        let update = RefUpdate {
            name: RefName::Branch(branch.clone()),
            new: commit,
            expected: Expect::exactly(head),
            message: format!(
                "import {}",
                path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into_owned()
                )
            ),
            fallback: None,
        };
        match stage.finish(&[update]) {
            Ok(done) => {
                totals.0 += done.new_bytes;
                totals.1 += done.stored_bytes;
                return Ok(ImportOutcome {
                    commit,
                    snapshot,
                    branch,
                    tensors: header.tensors.len(),
                    logical_bytes,
                    new_bytes: totals.0,
                    stored_bytes: totals.1,
                });
            }
            Err(Error::Conflict { .. }) if attempt < 8 => {
                tracing::debug!(branch = %branch, "branch moved during import; retrying");
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop returns")
}
