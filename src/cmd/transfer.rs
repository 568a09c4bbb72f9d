//! import and export.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use l3_store::{CommitOptions, Store};

use crate::render;

pub fn import(
    store: &Store,
    file: &Path,
    branch: Option<&str>,
    message: Option<&str>,
    json: bool,
) -> Result<String> {
    let message = message.map_or_else(
        || {
            format!(
                "import {}",
                file.file_name().unwrap_or_default().to_string_lossy()
            )
        },
        str::to_string,
    );
    let record = serde_json::json!({"kind": "import", "source": file.display().to_string()});
    let opts = CommitOptions {
        branch: branch.map(str::to_string),
        author: super::author(),
        message,
        record,
    };
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let _bar = crate::progress::Bar::new(store, size, "importing");
    let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("");
    let outcome = if matches!(ext, "pt" | "pth" | "bin") {
        import_pickle(store, file, &opts)?
    } else {
        l3_store::import_safetensors(store, file, &opts)?
    };
    if json {
        return Ok(render::json(&outcome));
    }
    Ok(format!("{}\n", outcome.commit))
}

/// A PyTorch state dict, read by candle, committed as an in-memory snapshot.
fn import_pickle(
    store: &Store,
    file: &Path,
    opts: &CommitOptions,
) -> Result<l3_store::ImportOutcome> {
    let tensors = crate::cmd::train::read_pytorch(file)?;
    let branch = match &opts.branch {
        Some(b) => b.clone(),
        None => store.session()?.head_branch()?,
    };
    let head = store
        .session()?
        .get_ref(&l3_store::RefName::Branch(branch.clone()))?;
    let values: BTreeMap<String, l3_store::TensorValue> = tensors
        .iter()
        .map(|(k, v)| (k.clone(), l3_store::TensorValue::Data(v)))
        .collect();
    let req = l3_store::CommitRequest {
        branch: Some(branch.clone()),
        parents: head.into_iter().collect(),
        expected: l3_store::Expect::exactly(head),
        fallback: None,
        author: opts.author.clone(),
        message: opts.message.clone(),
        record: opts.record.clone(),
        time_ms: None,
    };
    let out = l3_store::commit_tensors(store, &values, &BTreeMap::new(), &req)?;
    Ok(l3_store::ImportOutcome {
        commit: out.commit,
        snapshot: out.snapshot,
        branch,
        tensors: tensors.len(),
        logical_bytes: tensors.values().map(|t| t.bytes.len() as u64).sum(),
        new_bytes: out.new_bytes,
        stored_bytes: out.stored_bytes,
    })
}

pub fn export(
    store: &Store,
    rev: &str,
    output: &Path,
    patterns: &[String],
    json: bool,
) -> Result<String> {
    if output.as_os_str() == "-" {
        anyhow::bail!(
            "l3 export writes a file; give a path to -o (standard output is not supported)"
        );
    }
    let globs = patterns
        .iter()
        .map(|p| glob::Pattern::new(p).with_context(|| format!("bad tensor pattern \"{p}\"")))
        .collect::<Result<Vec<_>>>()?;
    let snapshot = {
        let s = store.session()?;
        let commit = s.resolve(rev)?;
        l3_store::SnapshotId(s.get_commit(&commit)?.snapshot)
    };
    let keep = |name: &str| globs.is_empty() || globs.iter().any(|g| g.matches(name));
    let snap = store.session()?.get_snapshot(&snapshot)?;
    if !globs.is_empty() && !snap.tensors.iter().any(|t| keep(&t.name)) {
        // Refuse before touching the output file.
        anyhow::bail!("no tensor of {rev} matches {}", patterns.join(", "));
    }
    let total = snap.logical_bytes;
    let bar = crate::progress::Bar::new(store, total, "exporting");
    let outcome = l3_store::export_safetensors(store, &snapshot, output, keep)?;
    drop(bar);
    if json {
        return Ok(render::json(&outcome));
    }
    Ok(String::new())
}
