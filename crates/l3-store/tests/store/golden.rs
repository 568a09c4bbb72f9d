//! The golden store of format version 1 (`tests/golden/v1`) must open and read in every build.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use l3_store::{Store, StoreOptions};

use crate::common::*;

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden/v1")
}

/// Copies a directory tree (the golden store is opened on a copy: opening writes).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The snapshot id of a safetensors file, computed from the spec (store-format.md, section 2)
/// with blake3 alone: chunks of 64 KiB, tensor encoding, snapshot encoding.
fn spec_snapshot_id(file: &Path) -> [u8; 32] {
    let (tensors, meta) = read_st(file);
    let dtype_code = |name: &str| {
        [
            "BOOL", "U8", "I8", "F8_E4M3", "F8_E5M2", "U16", "I16", "F16", "BF16", "U32", "I32",
            "F32", "U64", "I64", "F64",
        ]
        .iter()
        .position(|d| *d == name)
        .unwrap() as u8
    };
    let mut snap = blake3::Hasher::new_derive_key("l3 2026-12 snapshot v1");
    snap.update(&(tensors.len() as u64).to_le_bytes());
    for (name, (dtype, shape, bytes)) in &tensors {
        let mut t = blake3::Hasher::new_derive_key("l3 2026-12 tensor v1");
        t.update(&[dtype_code(dtype)]);
        t.update(&(shape.len() as u64).to_le_bytes());
        for d in shape {
            t.update(&(*d as u64).to_le_bytes());
        }
        let chunks: Vec<&[u8]> = bytes.chunks(65536).collect();
        t.update(&(chunks.len() as u64).to_le_bytes());
        for c in chunks {
            t.update(
                blake3::Hasher::new_derive_key("l3 2026-12 chunk v1")
                    .update(c)
                    .finalize()
                    .as_bytes(),
            );
        }
        snap.update(&(name.len() as u64).to_le_bytes());
        snap.update(name.as_bytes());
        snap.update(t.finalize().as_bytes());
    }
    let meta: BTreeMap<_, _> = meta.into_iter().collect();
    snap.update(&(meta.len() as u64).to_le_bytes());
    for (k, v) in meta {
        snap.update(&(k.len() as u64).to_le_bytes());
        snap.update(k.as_bytes());
        snap.update(&(v.len() as u64).to_le_bytes());
        snap.update(v.as_bytes());
    }
    *snap.finalize().as_bytes()
}

#[test]
fn golden_v1_store_opens_and_reads_back_its_source_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("v1");
    copy_tree(&golden().join("store"), &copy);
    let store = Store::open(&copy, StoreOptions::default()).unwrap();
    let s = store.session().unwrap();
    let head = s.resolve("main").unwrap();
    let info = s.commit_info(&head).unwrap();
    assert_eq!(info.message, "second");
    assert_eq!(s.resolve("v1-first").unwrap(), info.parents[0]);
    drop(s);

    for (rev, file) in [
        ("main", "second.safetensors"),
        ("v1-first", "first.safetensors"),
    ] {
        let src = golden().join(file);
        let s = store.session().unwrap();
        let snap = s.get_commit(&s.resolve(rev).unwrap()).unwrap().snapshot;
        drop(s);
        assert_eq!(snap, spec_snapshot_id(&src), "{rev}: id per the spec");
        let out = dir.path().join(file);
        l3_store::export_safetensors(&store, &l3_store::SnapshotId(snap), &out, |_| true).unwrap();
        assert_eq!(read_st(&out), read_st(&src));
    }
    assert!(l3_store::fsck(&store).unwrap().is_clean());
}

/// Regenerates the golden store; run by hand only when starting a new format version.
#[test]
#[ignore = "writes tests/golden/v1; only for creating a new golden store"]
fn make_golden_v1() {
    use safetensors::Dtype;
    let root = golden();
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let first = root.join("first.safetensors");
    let second = root.join("second.safetensors");
    let w = floats(40_000, 11);
    let mut w2 = w.clone();
    w2[100] += 1.0;
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    write_st(
        &first,
        &[
            ("enc/w", Dtype::F32, vec![200, 200], f32_bytes(&w)),
            (
                "ids",
                Dtype::I64,
                vec![3],
                [1i64, 2, 3].iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            ("h", Dtype::BF16, vec![2], vec![0x80, 0x3f, 0, 0x40]),
        ],
        Some(meta.clone()),
    );
    write_st(
        &second,
        &[
            ("enc/w", Dtype::F32, vec![200, 200], f32_bytes(&w2)),
            (
                "ids",
                Dtype::I64,
                vec![3],
                [1i64, 2, 3].iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            ("h", Dtype::BF16, vec![2], vec![0x80, 0x3f, 0, 0x40]),
        ],
        Some(meta),
    );
    let store = Store::init(root.join("store"), l3_store::StoreConfig::default()).unwrap();
    let a = l3_store::import_safetensors(&store, &first, &opts("first")).unwrap();
    store
        .update_refs(&[l3_store::RefUpdate {
            name: l3_store::RefName::Tag("v1-first".into()),
            new: a.commit,
            expected: l3_store::Expect::Absent,
            message: String::new(),
            fallback: None,
        }])
        .unwrap();
    l3_store::import_safetensors(&store, &second, &opts("second")).unwrap();
    store.release_writer();
    let _ = std::fs::remove_file(root.join("store/LOCK"));
}
