//! gc, fsck, stats.

use std::fmt::Write;
use std::time::Duration;

use anyhow::{bail, Result};
use l3_store::{GcOptions, Store};

use crate::render;

pub fn gc(store: &Store, dry_run: bool, keep_days: u64, json: bool) -> Result<String> {
    let opts = GcOptions {
        dry_run,
        reflog_retention: Duration::from_secs(keep_days * 86_400),
        ..GcOptions::default()
    };
    let r = l3_store::gc(store, &opts)?;
    if json {
        return Ok(render::json(&r));
    }
    let verb = if dry_run {
        "would reclaim"
    } else {
        "reclaimed"
    };
    Ok(format!(
        "{verb} {} ({} commits, {} snapshots, {} tensors, {} chunks); {} packs rewritten, {} deleted, {} in use\n",
        render::bytes(r.bytes_reclaimed),
        r.commits_removed,
        r.snapshots_removed,
        r.tensors_removed,
        r.chunks_removed,
        r.packs_rewritten,
        r.packs_deleted,
        r.packs_in_use
    ))
}

pub fn fsck(store: &Store, json: bool) -> Result<String> {
    let r = l3_store::fsck(store)?;
    let out = if json {
        render::json(&r)
    } else {
        let mut out = String::new();
        for p in &r.problems {
            let _ = writeln!(out, "{p}");
        }
        let _ = writeln!(
            out,
            "checked {} chunks, {} objects, {} refs: {} problem(s)",
            r.chunks_checked,
            r.objects_checked,
            r.refs_checked,
            r.problems.len()
        );
        out
    };
    if !r.is_clean() {
        // The report goes to stdout; the exit code says the store is damaged.
        print!("{out}");
        bail!("the store has {} problem(s); see above", r.problems.len());
    }
    Ok(out)
}

pub fn stats(store: &Store, json: bool) -> Result<String> {
    let st = l3_store::stats(store)?;
    if json {
        return Ok(render::json(&st));
    }
    Ok(format!(
        "commits           {}\nsnapshots         {}\ntensors           {}\nchunks            {}\nlogical bytes     {} ({})\nunique bytes      {} ({})\npack bytes        {} ({}, includes garbage until gc)\ndedup ratio       {:.2}x\ncompression ratio {:.2}x (unique / stored chunk bytes)\n",
        st.commits, st.snapshots, st.tensors, st.chunks,
        st.logical_bytes, render::bytes(st.logical_bytes),
        st.unique_bytes, render::bytes(st.unique_bytes),
        st.stored_bytes, render::bytes(st.stored_bytes),
        st.dedup_ratio, st.compression_ratio
    ))
}
