//! data add, data ls.

use std::fmt::Write;

use anyhow::{Context, Result};
use l3_store::Store;

use crate::cli::DataCommand;
use crate::render;

pub fn run(store: &Store, cmd: &DataCommand) -> Result<String> {
    match cmd {
        DataCommand::Add {
            file,
            name,
            label,
            json,
        } => {
            if crate::cmd::train::BUNDLED
                .iter()
                .any(|b| b.eq_ignore_ascii_case(name))
            {
                anyhow::bail!("\"{name}\" names the bundled data; choose another name");
            }
            l3_store::check_name("data set", name)?;
            // Checked as training data before it is stored: x [n, d] and integer labels y [n].
            let tensors = crate::cmd::train::load_table(file, label.as_deref())?;
            l3_worker::Dataset::from_tensor_map(&tensors, "x", "y")
                .with_context(|| format!("{} is not usable as a data set", file.display()))?;
            let id = l3_store::add_dataset(store, name, &tensors, &Default::default())?;
            if *json {
                return Ok(render::json(&serde_json::json!({"name": name, "id": id})));
            }
            Ok(format!("{id}\n"))
        }
        DataCommand::Ls { json } => {
            let s = store.session()?;
            let mut rows = Vec::new();
            for (name, id) in s.datasets()? {
                let rec = s.dataset(&id)?;
                let snap = match &rec {
                    Some(r) => s.snapshot(&l3_store::SnapshotId(r.snapshot))?,
                    None => None,
                };
                let tensors: Vec<String> = snap.as_ref().map_or(vec![], |s| {
                    s.tensors.iter().map(|t| t.name.clone()).collect()
                });
                let bytes = snap.as_ref().map_or(0, |s| s.logical_bytes);
                let used_by = s.commits_with_data(&id)?.len();
                rows.push(serde_json::json!({"name": name, "id": id, "tensors": tensors, "bytes": bytes, "commits": used_by}));
            }
            if *json {
                return Ok(render::json(&rows));
            }
            let mut out = String::new();
            for r in &rows {
                let _ = writeln!(
                    out,
                    "{:<28} {} {:>10} {} commits  [{}]",
                    r["name"].as_str().unwrap_or(""),
                    &r["id"].as_str().unwrap_or("")[..12],
                    render::bytes(r["bytes"].as_u64().unwrap_or(0)),
                    r["commits"],
                    r["tensors"]
                        .as_array()
                        .map(|a| a
                            .iter()
                            .filter_map(|v| v.as_str())
                            .collect::<Vec<_>>()
                            .join(", "))
                        .unwrap_or_default()
                );
            }
            Ok(out)
        }
    }
}
