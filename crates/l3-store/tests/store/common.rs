//! Helpers shared by the store's integration tests.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use l3_store::{CommitOptions, Store, StoreConfig};
use safetensors::tensor::TensorView;
use safetensors::Dtype;

/// The real checkpoint beside the repository (`../shared/data/models/...`).
pub fn real_checkpoint() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/models/all-minilm-l6-v2/model.safetensors");
    assert!(
        p.exists(),
        "the real checkpoint is missing at {}",
        p.display()
    );
    p
}

pub fn new_store(dir: &Path) -> Store {
    Store::init(dir.join("store"), StoreConfig::default()).expect("init")
}

pub fn opts(message: &str) -> CommitOptions {
    CommitOptions {
        branch: None,
        author: "test".into(),
        message: message.into(),
        record: serde_json::json!({}),
    }
}

/// Writes a safetensors file with the reference implementation (the `safetensors` crate).
pub fn write_st(
    path: &Path,
    tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)],
    metadata: Option<HashMap<String, String>>,
) {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let bytes = safetensors::serialize(views, metadata).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Tensors by name: (dtype name, shape, bytes).
pub type StTensors = BTreeMap<String, (String, Vec<usize>, Vec<u8>)>;

/// Every tensor of a safetensors file, read by the reference implementation:
/// name -> (dtype name, shape, bytes), plus the metadata.
pub fn read_st(path: &Path) -> (StTensors, HashMap<String, String>) {
    let bytes = std::fs::read(path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        out.insert(
            name,
            (
                format!("{:?}", view.dtype()),
                view.shape().to_vec(),
                view.data().to_vec(),
            ),
        );
    }
    (out, meta.metadata().clone().unwrap_or_default())
}

pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub fn from_f32_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// Deterministic pseudo-random floats (a simple LCG; the test needs variety, not quality).
pub fn floats(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

/// Number of files in the store's pack directory, and whether any commit exists.
pub fn footprint(store: &Store) -> (usize, u64, usize) {
    let packs = std::fs::read_dir(store.root().join("packs"))
        .unwrap()
        .count();
    let st = l3_store::stats(store).unwrap();
    let refs = store.session().unwrap().branches().unwrap().len();
    (packs, st.chunks, refs)
}
