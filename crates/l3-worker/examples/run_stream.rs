//! Runs a stream spec in memory and prints the accuracy matrix and metrics.
//!
//! ```text
//! cargo run --release -p l3-worker --example run_stream -- streams/split-mnist-til.toml \
//!     [--strategy naive|joint|ewc:LAMBDA[:GAMMA]|replay:CAPACITY|lwf[:T[:ALPHA]]] \
//!     [--scenario til|cil] [--epochs N] [--seed N] [--lr X] [--batch N]
//! ```

use std::path::Path;

use l3_worker::{run_stream, Scenario, Strategy, StreamSpec};

fn parse_strategy(s: &str) -> Strategy {
    let parts: Vec<&str> = s.split(':').collect();
    let num = |i: usize, d: f64| {
        parts
            .get(i)
            .map(|v| v.parse().expect("number"))
            .unwrap_or(d)
    };
    match parts[0] {
        "naive" => Strategy::Naive,
        "joint" => Strategy::Joint,
        "ewc" => Strategy::Ewc {
            lambda: num(1, 1000.0),
            gamma: num(2, 1.0),
        },
        "replay" => Strategy::Replay {
            capacity: num(1, 1100.0) as usize,
        },
        "lwf" => Strategy::Lwf {
            temperature: num(1, 2.0),
            alpha: num(2, 1.0),
        },
        other => panic!("unknown strategy {other}"),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut spec = StreamSpec::load(Path::new(args.first().ok_or("usage: run_stream SPEC")?))?;
    let mut i = 1;
    while i + 1 < args.len() {
        let v = &args[i + 1];
        match args[i].as_str() {
            "--strategy" => spec.strategy = parse_strategy(v),
            "--scenario" => {
                spec.scenario = match v.as_str() {
                    "til" => Scenario::TaskIncremental,
                    _ => Scenario::ClassIncremental,
                }
            }
            "--epochs" => spec.epochs = v.parse()?,
            "--seed" => spec.seed = v.parse()?,
            "--lr" => spec.lr = v.parse()?,
            "--batch" => spec.batch_size = v.parse()?,
            other => return Err(format!("unknown option {other}").into()),
        }
        i += 2;
    }
    let data = spec.load_task_data(&mut |p| {
        Err(l3_worker::Error::Settings(format!(
            "safetensors not supported here: {}",
            p.display()
        )))
    })?;
    let mut checksum = String::new();
    let result = run_stream(&spec, &data, &mut |i, k, r| {
        eprintln!(
            "task {i} {}: loss {:.4} in {:.2}s",
            r.task, r.final_loss, r.wall_time_s
        );
        // FNV-1a over every tensor's name and bytes: equal runs give equal sums.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for (name, t) in k.to_tensors()? {
            for b in name.bytes().chain(t.bytes.iter().copied()) {
                h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
            }
        }
        checksum = format!("{h:016x}");
        Ok(())
    })?;
    for row in &result.accuracy {
        let cells: Vec<String> = row.iter().map(|a| format!("{a:.3}")).collect();
        println!("{}", cells.join(" "));
    }
    println!("final snapshot checksum {checksum}");
    let m = &result.metrics;
    println!(
        "{} {} {}: ACC {:.4} BWT {:.4} FWT {:.4} forgetting {:.4} NFR {:?} time {:.2}s",
        spec.name,
        spec.scenario.name(),
        spec.strategy.name(),
        m.acc,
        m.bwt.unwrap_or(f64::NAN),
        m.fwt.unwrap_or(f64::NAN),
        m.forgetting.unwrap_or(f64::NAN),
        result
            .negative_flip_rates
            .iter()
            .map(|v| (v * 1000.0).round() / 1000.0)
            .collect::<Vec<_>>(),
        result.wall_time_s
    );
    Ok(())
}
