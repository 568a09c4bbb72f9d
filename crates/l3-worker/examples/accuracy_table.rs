//! Prints the README's continual-learning table: ACC after the last task, mean and spread
//! (sample standard deviation) over seeds, for every strategy in both scenarios of a stream.
//!
//! ```text
//! cargo run --release -p l3-worker --example accuracy_table -- streams/split-mnist-til.toml [SEEDS]
//! ```
//!
//! The stream file fixes the data, model and budget; its scenario and strategy are replaced
//! in turn. Replay keeps 1,100 samples for Split-MNIST (as Hsu et al. 2018) and 200 for
//! Split-Digits; online EWC uses lambda 1000 (MNIST) as in the stream files.

use std::path::Path;

use l3_worker::{run_stream, Scenario, Strategy, StreamSpec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .first()
        .ok_or("usage: accuracy_table STREAM.toml [SEEDS]")?;
    let seeds: u64 = args.get(1).map_or(Ok(5), |s| s.parse())?;
    let base = StreamSpec::load(Path::new(path))?;
    let data = base.load_task_data(&mut |p| {
        Err(l3_worker::Error::Settings(format!(
            "not supported here: {}",
            p.display()
        )))
    })?;
    let mnist = base.name.contains("mnist");
    let capacity = if mnist { 1100 } else { 200 };
    let strategies = [
        ("naive", Strategy::Naive),
        (
            "online EWC",
            Strategy::Ewc {
                lambda: 1000.0,
                gamma: 1.0,
            },
        ),
        (
            if mnist {
                "replay (1,100)"
            } else {
                "replay (200)"
            },
            Strategy::Replay { capacity },
        ),
        (
            "LwF",
            Strategy::Lwf {
                temperature: 2.0,
                alpha: 1.0,
            },
        ),
        ("joint", Strategy::Joint),
    ];
    let started = std::time::Instant::now();
    println!(
        "| {} | task-incremental | class-incremental |",
        base.name.trim_end_matches("-til").trim_end_matches("-cil")
    );
    println!("| --- | --- | --- |");
    for (label, strategy) in strategies {
        let mut cells = Vec::new();
        for scenario in [Scenario::TaskIncremental, Scenario::ClassIncremental] {
            let mut accs = Vec::new();
            for seed in 1..=seeds {
                let mut spec = base.clone();
                spec.scenario = scenario;
                spec.strategy = strategy.clone();
                spec.seed = seed;
                let result = run_stream(&spec, &data, &mut |_, _, _| Ok(()))?;
                eprintln!(
                    "{label} {} seed {seed}: {:.4}",
                    scenario.name(),
                    result.metrics.acc
                );
                accs.push(result.metrics.acc);
            }
            let mean = accs.iter().sum::<f64>() / accs.len() as f64;
            let var = accs.iter().map(|a| (a - mean).powi(2)).sum::<f64>()
                / (accs.len().max(2) - 1) as f64;
            cells.push(format!("{mean:.3} ± {:.3}", var.sqrt()));
        }
        println!("| {label} | {} | {} |", cells[0], cells[1]);
    }
    eprintln!(
        "{} seeds in {:.0} s",
        seeds,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
