//! train, run, metrics, reproduce, worker, job.

use anyhow::{bail, Result};
use clap::Args;
use l3_store::Store;

use crate::cli::{Cli, JobCommand};

#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    #[arg(long)]
    pub from: Option<String>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    pub stream: std::path::PathBuf,
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    #[arg(long)]
    pub once: bool,
}

pub fn train(_store: &Store, _args: &TrainArgs) -> Result<String> {
    bail!("not wired yet")
}
pub fn run_stream(_cli: &Cli, _args: &RunArgs) -> Result<String> {
    bail!("not wired yet")
}
pub fn metrics(_store: &Store, _rev: Option<&str>, _json: bool) -> Result<String> {
    bail!("not wired yet")
}
pub fn reproduce(_store: &Store, _rev: &str, _json: bool) -> Result<String> {
    bail!("not wired yet")
}
pub fn worker(_store: &Store, _args: &WorkerArgs) -> Result<String> {
    bail!("not wired yet")
}
pub fn job(_store: &Store, _c: &JobCommand) -> Result<String> {
    bail!("not wired yet")
}

/// A CSV file (label column) or the bundled optdigits data as x/y tensors.
pub fn load_table(
    file: &std::path::Path,
    label: Option<&str>,
) -> Result<std::collections::BTreeMap<String, l3_store::TensorData>> {
    let _ = (file, label);
    bail!("not wired yet")
}

/// A PyTorch state dict (.pt, .pth, .bin), read with candle's pickle reader.
pub fn read_pytorch(
    file: &std::path::Path,
) -> Result<std::collections::BTreeMap<String, l3_store::TensorData>> {
    let _ = file;
    bail!("not wired yet")
}
