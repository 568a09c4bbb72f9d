use std::path::Path;

use anyhow::{bail, Result};
use l3_store::{Compression, Store, StoreConfig};

pub fn run(dir: Option<&Path>, chunk_size: u32, compression: &str) -> Result<String> {
    let compression = match compression {
        "none" => Compression::None,
        "zstd" => Compression::Zstd { level: 1 },
        z => match z.strip_prefix("zstd:").and_then(|l| l.parse().ok()) {
            Some(level) if (-7..=22).contains(&level) => Compression::Zstd { level },
            _ => bail!("compression \"{z}\" is not \"none\", \"zstd\" or \"zstd:LEVEL\" (-7..22)"),
        },
    };
    let dir = dir.map_or_else(|| Path::new(".l3").to_path_buf(), Path::to_path_buf);
    Store::init(
        &dir,
        StoreConfig {
            chunk_size,
            compression,
        },
    )?;
    Ok(format!("initialised an l3 store in {}\n", dir.display()))
}
