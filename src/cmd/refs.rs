//! branch, switch, tag, reset, revert, reflog.

use std::fmt::Write;

use anyhow::{bail, Result};
use l3_store::{Expect, RefName, RefUpdate, Store};

use crate::render;

pub fn branch(
    store: &Store,
    name: Option<&str>,
    rev: Option<&str>,
    delete: bool,
    json: bool,
) -> Result<String> {
    if delete {
        let Some(name) = name else {
            bail!("give the branch to delete")
        };
        let old = store.delete_branch(name)?;
        return Ok(format!("deleted branch {name} (was {})\n", old.short(12)));
    }
    if let Some(name) = name {
        let target = store.session()?.resolve(rev.unwrap_or("HEAD"))?;
        store
            .update_refs(&[RefUpdate {
                name: RefName::Branch(name.to_string()),
                new: target,
                expected: Expect::Absent,
                message: format!("branch created at {}", target.short(12)),
                fallback: None,
            }])
            .map_err(|e| match e {
                l3_store::Error::Conflict { .. } => anyhow::anyhow!(
                    "branch \"{name}\" already exists; use `l3 reset {name} REV` to move it"
                ),
                e => e.into(),
            })?;
        return Ok(String::new());
    }
    let s = store.session()?;
    let head = s.head_branch()?;
    let branches = s.branches()?;
    if json {
        let v: Vec<_> = branches
            .iter()
            .map(|(n, c)| serde_json::json!({"name": n, "commit": c, "current": *n == head}))
            .collect();
        return Ok(render::json(&v));
    }
    let mut out = String::new();
    for (n, c) in &branches {
        let _ = writeln!(
            out,
            "{} {n} {}",
            if *n == head { "*" } else { " " },
            c.short(12)
        );
    }
    if !branches.iter().any(|(n, _)| *n == head) {
        let _ = writeln!(out, "* {head} (no commits yet)");
    }
    Ok(out)
}

pub fn switch(store: &Store, branch: &str, create: bool) -> Result<String> {
    if create {
        self::branch(store, Some(branch), None, false, false)?;
    } else if store
        .session()?
        .get_ref(&RefName::Branch(branch.to_string()))?
        .is_none()
    {
        bail!("no branch named \"{branch}\"; use `l3 switch -c {branch}` to create it");
    }
    store.set_head(branch)?;
    Ok(String::new())
}

pub fn tag(store: &Store, name: Option<&str>, rev: Option<&str>, json: bool) -> Result<String> {
    if let Some(name) = name {
        let target = store.session()?.resolve(rev.unwrap_or("HEAD"))?;
        store.update_refs(&[RefUpdate {
            name: RefName::Tag(name.to_string()),
            new: target,
            expected: Expect::Absent,
            message: String::new(),
            fallback: None,
        }])?;
        return Ok(String::new());
    }
    let tags = store.session()?.tags()?;
    if json {
        let v: Vec<_> = tags
            .iter()
            .map(|(n, c)| serde_json::json!({"name": n, "commit": c}))
            .collect();
        return Ok(render::json(&v));
    }
    Ok(tags
        .iter()
        .map(|(n, c)| format!("{n} {}\n", c.short(12)))
        .collect())
}

pub fn reset(store: &Store, branch: &str, rev: &str) -> Result<String> {
    let target = store.session()?.resolve(rev)?;
    let old = store.reset(branch, target)?;
    Ok(format!(
        "{branch}: {} -> {}\n",
        old.map_or("(none)".to_string(), |c| c.short(12)),
        target.short(12)
    ))
}

pub fn revert(store: &Store, rev: &str, branch: Option<&str>) -> Result<String> {
    let (target, branch) = {
        let s = store.session()?;
        (
            s.resolve(rev)?,
            branch.map_or_else(|| s.head_branch(), |b| Ok(b.to_string()))?,
        )
    };
    let commit = store.revert(&branch, target, &super::author())?;
    Ok(format!("{commit}\n"))
}

pub fn reflog(store: &Store, branch: Option<&str>, json: bool) -> Result<String> {
    let s = store.session()?;
    let branch = branch.map_or_else(|| s.head_branch(), |b| Ok(b.to_string()))?;
    let entries = s.reflog(&branch)?;
    if json {
        return Ok(render::json(&entries));
    }
    let mut out = String::new();
    for (i, e) in entries.iter().enumerate().rev() {
        let show = |c: Option<l3_store::CommitId>| c.map_or("(none)".to_string(), |c| c.short(12));
        let _ = writeln!(
            out,
            "{branch}@{{{}}} {} -> {} {} {}",
            entries.len() - 1 - i,
            show(e.old),
            show(e.new),
            render::time(e.time_ms),
            e.message
        );
    }
    Ok(out)
}
