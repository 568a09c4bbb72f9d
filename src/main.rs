//! `l3`: the command line of the lifelong-learning knowledge store.
//!
//! Thin by design: every subcommand parses its arguments, calls `l3-store` or `l3-worker`
//! and renders the answer. Exit codes: 0 success, 1 a failure the user can act on (bad
//! revision, bad file, busy store), 2 a usage error. A closed pipe is not an error.

mod cli;
mod cmd;
mod progress;
mod render;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    init_logging(args.verbose);
    let result = cmd::run(&args);
    let out = match result {
        Ok(text) => text,
        Err(e) => {
            let _ = std::io::stdout().flush();
            eprintln!("error: {}", render::error_chain(&e));
            if let Some(hint) = render::hint(&e) {
                eprintln!("hint: {hint}");
            }
            return ExitCode::from(1);
        }
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(out.as_bytes())
        .and_then(|_| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: writing output: {e}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("L3_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
