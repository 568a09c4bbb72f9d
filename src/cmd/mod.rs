//! One module per group of subcommands; each parses nothing, calls a library, renders.

mod data;
mod diff;
pub mod history;
mod init;
mod maint;
mod refs;
pub mod train;
mod transfer;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use l3_store::{Store, StoreOptions};

use crate::cli::{Cli, Command};

pub fn run(cli: &Cli) -> Result<String> {
    match &cli.command {
        Command::Init {
            dir,
            chunk_size,
            compression,
        } => init::run(dir.as_deref(), *chunk_size, compression),
        Command::Import {
            file,
            branch,
            message,
            json,
        } => transfer::import(
            &open(cli)?,
            file,
            branch.as_deref(),
            message.as_deref(),
            *json,
        ),
        Command::Export {
            rev,
            output,
            tensors,
            json,
        } => transfer::export(&open(cli)?, rev, output, tensors, *json),
        Command::Log {
            rev,
            max_count,
            first_parent,
            graph,
            data,
            json,
        } => history::log(
            &open(cli)?,
            rev.as_deref(),
            *max_count,
            *first_parent,
            *graph,
            data.as_deref(),
            *json,
        ),
        Command::Show { rev, json } => history::show(&open(cli)?, rev, *json),
        Command::Diff { a, b, stat, json } => diff::run(&open(cli)?, a, b, *stat, *json),
        Command::Branch {
            name,
            rev,
            delete,
            json,
        } => refs::branch(&open(cli)?, name.as_deref(), rev.as_deref(), *delete, *json),
        Command::Switch { branch, create } => refs::switch(&open(cli)?, branch, *create),
        Command::Tag { name, rev, json } => {
            refs::tag(&open(cli)?, name.as_deref(), rev.as_deref(), *json)
        }
        Command::Reset { branch, rev } => refs::reset(&open(cli)?, branch, rev),
        Command::Revert { rev, branch } => refs::revert(&open(cli)?, rev, branch.as_deref()),
        Command::Reflog { branch, json } => refs::reflog(&open(cli)?, branch.as_deref(), *json),
        Command::Lineage(args) => history::lineage(&open(cli)?, args),
        Command::Blame { tensor, rev, json } => {
            history::blame(&open(cli)?, tensor, rev.as_deref(), *json)
        }
        Command::MergeBase { a, b, json } => history::merge_base(&open(cli)?, a, b, *json),
        Command::Gc {
            dry_run,
            keep_reflog_days,
            json,
        } => maint::gc(&open(cli)?, *dry_run, *keep_reflog_days, *json),
        Command::Fsck { json } => maint::fsck(&open(cli)?, *json),
        Command::Stats { json } => maint::stats(&open(cli)?, *json),
        Command::Data(c) => data::run(&open(cli)?, c),
        Command::Train(args) => train::train(&open(cli)?, args),
        Command::Run(args) => train::run_stream(cli, args),
        Command::Metrics { rev, json } => train::metrics(&open(cli)?, rev.as_deref(), *json),
        Command::Reproduce { rev, json } => train::reproduce(&open(cli)?, rev, *json),
        Command::Worker(args) => train::worker(&open(cli)?, args),
        Command::Job(c) => train::job(&open(cli)?, c),
    }
}

/// Finds the store: --store, else $L3_STORE, else the nearest `.l3` upward.
pub fn locate(cli: &Cli) -> Result<PathBuf> {
    if let Some(dir) = &cli.store {
        return Ok(dir.clone());
    }
    if let Some(dir) = std::env::var_os("L3_STORE").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let mut at: Option<&Path> = Some(&cwd);
    while let Some(dir) = at {
        let candidate = dir.join(".l3");
        if candidate.join(l3_store::CONFIG_FILE).is_file() {
            return Ok(candidate);
        }
        at = dir.parent();
    }
    Err(l3_store::Error::NotAStore(cwd.join(".l3")).into())
}

pub fn open(cli: &Cli) -> Result<Store> {
    let dir = locate(cli)?;
    Ok(Store::open(&dir, options()?)?)
}

pub fn options() -> Result<StoreOptions> {
    let mut opts = StoreOptions::default();
    if let Some(v) = std::env::var_os("L3_LOCK_TIMEOUT") {
        let secs: f64 = v
            .to_string_lossy()
            .parse()
            .ok()
            .filter(|s: &f64| s.is_finite() && *s >= 0.0)
            .context("L3_LOCK_TIMEOUT must be a number of seconds")?;
        opts.lock_timeout = Duration::from_secs_f64(secs);
    }
    Ok(opts)
}

pub fn author() -> String {
    std::env::var("L3_AUTHOR")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".to_string())
}
