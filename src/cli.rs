//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "l3",
    version,
    about = "Version, diff and train lifelong-learning knowledge"
)]
pub struct Cli {
    /// The store directory itself, e.g. ./.l3 (else $L3_STORE, else the nearest .l3 upward)
    #[arg(long, global = true, value_name = "DIR")]
    pub store: Option<PathBuf>,

    /// Log what happens (-v info, -vv debug, -vvv trace)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a store (in ./.l3, or in DIR)
    Init {
        dir: Option<PathBuf>,
        /// Chunk size in bytes (multiple of 8, 1 KiB to 1 GiB)
        #[arg(long, default_value_t = l3_store::DEFAULT_CHUNK_SIZE)]
        chunk_size: u32,
        /// Chunk compression: "zstd", "zstd:LEVEL" or "none"
        #[arg(long, default_value = "zstd:1")]
        compression: String,
    },
    /// Commit a safetensors file (or a PyTorch .pt/.bin state dict) as a snapshot
    Import {
        file: PathBuf,
        /// Branch to commit on (default: the current branch)
        #[arg(long, short)]
        branch: Option<String>,
        /// Commit message
        #[arg(short, long)]
        message: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Write a snapshot, or the tensors matching --tensor, to a safetensors file
    Export {
        rev: String,
        #[arg(short, long)]
        output: PathBuf,
        /// Keep only tensors whose names match this glob (repeatable)
        #[arg(long = "tensor", value_name = "PATTERN")]
        tensors: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show history
    Log {
        rev: Option<String>,
        /// Show at most N commits
        #[arg(short = 'n', long)]
        max_count: Option<usize>,
        /// Follow only first parents
        #[arg(long)]
        first_parent: bool,
        /// Draw the commit graph
        #[arg(long)]
        graph: bool,
        /// Only commits that learned from this data set (name or id)
        #[arg(long, value_name = "DATASET")]
        data: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show a commit: record, metrics and a tensor summary
    Show {
        rev: String,
        #[arg(long)]
        json: bool,
    },
    /// Compare the snapshots of two revisions tensor by tensor
    Diff {
        a: String,
        b: String,
        /// Only count tensors added, removed, changed and unchanged
        #[arg(long)]
        stat: bool,
        #[arg(long)]
        json: bool,
    },
    /// List branches, or create one at REV (default HEAD)
    Branch {
        name: Option<String>,
        rev: Option<String>,
        /// Delete the branch NAME
        #[arg(short, long)]
        delete: bool,
        #[arg(long)]
        json: bool,
    },
    /// Make BRANCH the current branch
    Switch {
        branch: String,
        /// Create it at the current head first
        #[arg(short, long)]
        create: bool,
    },
    /// List tags, or tag REV (default HEAD) as NAME; tags never move
    Tag {
        name: Option<String>,
        rev: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Move BRANCH to REV (the reflog keeps the old value)
    Reset { branch: String, rev: String },
    /// Commit on the current branch a child whose knowledge is REV's
    Revert {
        rev: String,
        #[arg(long, short)]
        branch: Option<String>,
    },
    /// Show how a branch moved
    Reflog {
        branch: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show the lineage graph around REV
    Lineage(LineageArgs),
    /// Show the commit that last changed TENSOR
    Blame {
        tensor: String,
        rev: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show the best common ancestor of two revisions
    MergeBase {
        a: String,
        b: String,
        #[arg(long)]
        json: bool,
    },
    /// Reclaim space held by unreachable snapshots
    Gc {
        /// Say what would be reclaimed; change nothing
        #[arg(long)]
        dry_run: bool,
        /// Keep commits named by reflog entries younger than this many days
        #[arg(long, default_value_t = 30)]
        keep_reflog_days: u64,
        #[arg(long)]
        json: bool,
    },
    /// Re-hash every chunk and check every reference
    Fsck {
        #[arg(long)]
        json: bool,
    },
    /// Show sizes, dedup and compression
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Data sets kept in the store
    #[command(subcommand)]
    Data(DataCommand),
    /// Train one task from a revision and commit the child
    Train(crate::cmd::train::TrainArgs),
    /// Run a whole stream of tasks (a .toml stream file), one commit per task
    Run(crate::cmd::train::RunArgs),
    /// Show the accuracy matrix and continual-learning metrics along the lineage
    Metrics {
        rev: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Re-run the job that made REV and check the result is bit-identical
    Reproduce {
        rev: String,
        #[arg(long)]
        json: bool,
    },
    /// Take training jobs from the store's queue and run them
    Worker(crate::cmd::train::WorkerArgs),
    /// The store's job queue
    #[command(subcommand)]
    Job(JobCommand),
}

#[derive(Args, Debug)]
pub struct LineageArgs {
    pub rev: String,
    /// Only ancestors
    #[arg(long, conflicts_with = "descendants")]
    pub ancestors: bool,
    /// Only descendants
    #[arg(long)]
    pub descendants: bool,
    /// Print Graphviz dot
    #[arg(long)]
    pub dot: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Store a data set: a safetensors file with x and y, a CSV with a label column, or
    /// "optdigits-train"/"optdigits-test" for the bundled data
    Add {
        file: PathBuf,
        #[arg(long)]
        name: String,
        /// CSV: the label column's name or 0-based index (default: the last column)
        #[arg(long)]
        label: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List data sets
    Ls {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum JobCommand {
    /// Queue a training job (same options as `l3 train`)
    Submit(Box<crate::cmd::train::TrainArgs>),
    /// List jobs
    Ls {
        #[arg(long)]
        json: bool,
    },
}
