//! log, show, lineage, blame, merge-base.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;

use anyhow::Result;
use l3_store::{CommitId, CommitInfo, Session, Store};

use crate::cli::LineageArgs;
use crate::render;

/// Ref names by commit, for decorating output.
fn decorations(s: &Session) -> Result<HashMap<CommitId, Vec<String>>> {
    let mut out: HashMap<CommitId, Vec<String>> = HashMap::new();
    let head = s.head_branch()?;
    for (name, c) in s.branches()? {
        let shown = if name == head {
            format!("HEAD -> {name}")
        } else {
            name
        };
        out.entry(c).or_default().push(shown);
    }
    for (name, c) in s.tags()? {
        out.entry(c).or_default().push(format!("tag: {name}"));
    }
    Ok(out)
}

pub fn log(
    store: &Store,
    rev: Option<&str>,
    limit: Option<usize>,
    first_parent: bool,
    graph: bool,
    data: Option<&str>,
    json: bool,
) -> Result<String> {
    let s = store.session()?;
    let limit = limit.unwrap_or(usize::MAX);
    let commits: Vec<CommitInfo> = match data {
        Some(d) => {
            let mut ids = s.datasets_named(d)?;
            if ids.is_empty() {
                ids.push(s.resolve_dataset(d)?);
            }
            let mut c = Vec::new();
            for id in ids {
                c.extend(s.commits_with_data(&id)?);
            }
            c.sort_by_key(|c| (c.generation, c.time_ms));
            c.dedup_by_key(|c| c.id);
            c.reverse();
            c.truncate(limit);
            c
        }
        None => s.log(s.resolve(rev.unwrap_or("HEAD"))?, first_parent, limit)?,
    };
    if json {
        return Ok(render::json(&commits));
    }
    let decor = decorations(&s)?;
    let mut out = String::new();
    for c in &commits {
        let refs = decor.get(&c.id).cloned().unwrap_or_default();
        if graph {
            let merge = c.parents.len() > 1;
            let _ = writeln!(
                out,
                "{} {}",
                if merge { "M" } else { "*" },
                render::commit_line(c, &refs)
            );
            for p in c.parents.iter().skip(1) {
                let _ = writeln!(out, "|\\  merges {}", p.short(12));
            }
            if !c.parents.is_empty() {
                out.push_str("|\n");
            }
        } else {
            let _ = writeln!(
                out,
                "commit {}{}",
                c.id,
                if refs.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", refs.join(", "))
                }
            );
            if c.parents.len() > 1 {
                let ps: Vec<String> = c.parents.iter().map(|p| p.short(12)).collect();
                let _ = writeln!(out, "Merge: {}", ps.join(" "));
            }
            let _ = writeln!(out, "Author: {}", c.author);
            let _ = writeln!(out, "Date:   {}", render::time(c.time_ms));
            let _ = writeln!(out);
            for line in c.message.lines() {
                let _ = writeln!(out, "    {line}");
            }
            if let Some(acc) = c.record.pointer("/metrics/acc").and_then(|v| v.as_f64()) {
                let _ = writeln!(out, "    (accuracy over tasks seen: {acc:.4})");
            }
            let _ = writeln!(out);
        }
    }
    Ok(out)
}

pub fn show(store: &Store, rev: &str, json: bool) -> Result<String> {
    let s = store.session()?;
    let id = s.resolve(rev)?;
    let c = s.commit_info(&id)?;
    let snap = s.get_snapshot(&c.snapshot)?;
    let mut tensors = Vec::new();
    for t in &snap.tensors {
        let rec = s.tensor(&l3_store::TensorId(t.tensor))?;
        let (dtype, shape, bytes) = rec.map_or(("?".into(), vec![], 0), |r| {
            let d = l3_store::DType::from_code(r.dtype).map_or("?".to_string(), |d| d.to_string());
            (d, r.shape, r.byte_len)
        });
        tensors.push(serde_json::json!({"name": t.name, "dtype": dtype, "shape": shape, "bytes": bytes, "tensor": l3_store::TensorId(t.tensor)}));
    }
    if json {
        let v = serde_json::json!({"commit": c, "logical_bytes": snap.logical_bytes, "tensors": tensors,
            "metadata": snap.metadata.iter().map(|m| (m.key.clone(), serde_json::Value::String(m.value.clone()))).collect::<serde_json::Map<String, serde_json::Value>>()});
        return Ok(render::json(&v));
    }
    let mut out = String::new();
    let _ = writeln!(out, "commit   {}", c.id);
    let _ = writeln!(out, "snapshot {}", c.snapshot);
    for p in &c.parents {
        let _ = writeln!(out, "parent   {p}");
    }
    let _ = writeln!(out, "Author:  {}", c.author);
    let _ = writeln!(out, "Date:    {}", render::time(c.time_ms));
    let _ = writeln!(out, "\n    {}\n", c.message.replace('\n', "\n    "));
    if !c.record.is_null() {
        let _ = writeln!(out, "record:");
        for line in serde_json::to_string_pretty(&c.record)?.lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    let _ = writeln!(
        out,
        "\n{} tensors, {}:",
        tensors.len(),
        render::bytes(snap.logical_bytes)
    );
    for t in &tensors {
        let _ = writeln!(
            out,
            "  {:<48} {:<5} {:<16} {}",
            render::name(t["name"].as_str().unwrap_or("")),
            t["dtype"].as_str().unwrap_or(""),
            t["shape"].to_string(),
            render::bytes(t["bytes"].as_u64().unwrap_or(0))
        );
    }
    Ok(out)
}

pub fn lineage(store: &Store, args: &LineageArgs) -> Result<String> {
    let s = store.session()?;
    let id = s.resolve(&args.rev)?;
    let mut set: BTreeSet<CommitId> = BTreeSet::new();
    if !args.descendants {
        set.extend(s.ancestors(id)?);
    }
    if !args.ancestors {
        set.extend(s.descendants(id)?);
    }
    set.insert(id);
    let mut commits: Vec<CommitInfo> = set
        .iter()
        .map(|c| s.commit_info(c))
        .collect::<l3_store::Result<_>>()?;
    commits.sort_by_key(|c| (c.generation, c.time_ms));
    if args.json {
        return Ok(render::json(&commits));
    }
    let decor = decorations(&s)?;
    let mut out = String::new();
    if args.dot {
        out.push_str(
            "digraph lineage {\n  rankdir=BT;\n  node [shape=box, fontname=\"monospace\"];\n",
        );
        for c in &commits {
            let refs = decor
                .get(&c.id)
                .map(|r| format!("\\n[{}]", r.join(", ")))
                .unwrap_or_default();
            let acc = c
                .record
                .pointer("/metrics/acc")
                .and_then(|v| v.as_f64())
                .map(|a| format!("\\nacc {a:.3}"))
                .unwrap_or_default();
            let subject = c.message.lines().next().unwrap_or("").replace('"', "'");
            let style = if c.id == id { ", style=bold" } else { "" };
            let _ = writeln!(
                out,
                "  \"{}\" [label=\"{} {subject}{acc}{refs}\"{style}];",
                c.id.short(12),
                c.id.short(8)
            );
            for p in &c.parents {
                if set.contains(p) {
                    let _ = writeln!(out, "  \"{}\" -> \"{}\";", c.id.short(12), p.short(12));
                }
            }
        }
        out.push_str("}\n");
        return Ok(out);
    }
    for c in commits.iter().rev() {
        let refs = decor.get(&c.id).cloned().unwrap_or_default();
        let marker = if c.id == id { ">" } else { " " };
        let parents: Vec<String> = c.parents.iter().map(|p| p.short(8)).collect();
        let _ = writeln!(
            out,
            "{marker} gen {:<3} {}  <- {}",
            c.generation,
            render::commit_line(c, &refs),
            if parents.is_empty() {
                "(root)".to_string()
            } else {
                parents.join(", ")
            }
        );
    }
    Ok(out)
}

pub fn blame(store: &Store, tensor: &str, rev: Option<&str>, json: bool) -> Result<String> {
    let s = store.session()?;
    let start = s.resolve(rev.unwrap_or("HEAD"))?;
    let found = s.blame(start, tensor)?.ok_or_else(|| {
        anyhow::anyhow!(
            "revision {} has no tensor named \"{tensor}\"",
            rev.unwrap_or("HEAD")
        )
    })?;
    if json {
        return Ok(render::json(
            &serde_json::json!({"tensor": tensor, "commit": found}),
        ));
    }
    Ok(format!(
        "{} {} ({}, {})\n",
        found.id.short(12),
        found.message.lines().next().unwrap_or(""),
        found.author,
        render::time(found.time_ms)
    ))
}

pub fn merge_base(store: &Store, a: &str, b: &str, json: bool) -> Result<String> {
    let s = store.session()?;
    let (ca, cb) = (s.resolve(a)?, s.resolve(b)?);
    let bases = s.merge_bases(ca, cb)?;
    if bases.is_empty() {
        anyhow::bail!("{a} and {b} have no common ancestor");
    }
    if json {
        return Ok(render::json(&bases));
    }
    Ok(bases.iter().map(|c| format!("{c}\n")).collect())
}
