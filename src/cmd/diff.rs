//! diff.

use std::fmt::Write;

use anyhow::Result;
use l3_store::{SnapshotId, Status, Store};

use crate::render;

pub fn run(store: &Store, a: &str, b: &str, stat: bool, json: bool) -> Result<String> {
    let (sa, sb) = {
        let s = store.session()?;
        let ca = s.resolve(a)?;
        let cb = s.resolve(b)?;
        (
            SnapshotId(s.get_commit(&ca)?.snapshot),
            SnapshotId(s.get_commit(&cb)?.snapshot),
        )
    };
    let diffs = l3_store::diff(store, &sa, &sb)?;
    let count = |st: Status| diffs.iter().filter(|d| d.status == st).count();
    if json {
        return Ok(render::json(&serde_json::json!({
            "tensors": diffs,
            "summary": {"added": count(Status::Added), "removed": count(Status::Removed),
                        "changed": count(Status::Changed), "unchanged": count(Status::Unchanged)},
        })));
    }
    let mut out = String::new();
    if !stat {
        let fmt = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.4e}"));
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{:.1}%", x * 100.0));
        let _ = writeln!(
            out,
            "{:<10} {:<44} {:>11} {:>11} {:>8} {:>11} {:>8}",
            "status", "tensor", "l2_delta", "rel_change", "cosine", "max_abs", "changed"
        );
        for d in diffs.iter().filter(|d| d.status != Status::Unchanged) {
            let status = match d.status {
                Status::Added => "added",
                Status::Removed => "removed",
                Status::Changed => "changed",
                Status::Unchanged => "unchanged",
            };
            let _ = writeln!(
                out,
                "{status:<10} {:<44} {:>11} {:>11} {:>8} {:>11} {:>8}",
                render::name(&d.name),
                fmt(d.l2_delta),
                pct(d.rel_change),
                d.cosine.map_or("-".into(), |c| format!("{c:.5}")),
                fmt(d.max_abs),
                pct(d.changed_fraction)
            );
            if d.status == Status::Changed && d.old != d.new {
                let _ = writeln!(
                    out,
                    "           {} -> {}",
                    d.old.as_deref().unwrap_or("-"),
                    d.new.as_deref().unwrap_or("-")
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "{} added, {} removed, {} changed, {} unchanged",
        count(Status::Added),
        count(Status::Removed),
        count(Status::Changed),
        count(Status::Unchanged)
    );
    Ok(out)
}
