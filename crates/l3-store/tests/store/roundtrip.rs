//! Import and export keep every byte; identical chunks are stored once.

use std::collections::HashMap;

use l3_store::{DType, Store, StoreConfig};
use safetensors::Dtype;

use crate::common::*;

#[test]
fn real_checkpoint_round_trips_with_identical_tensor_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let src = real_checkpoint();
    let first = l3_store::import_safetensors(&store, &src, &opts("import")).unwrap();
    assert_eq!(first.tensors, 104);
    assert_eq!(first.new_bytes, first.logical_bytes);

    let out = dir.path().join("out.safetensors");
    let snap = first.snapshot;
    l3_store::export_safetensors(&store, &snap, &out, |_| true).unwrap();
    let (a, meta_a) = read_st(&src);
    let (b, meta_b) = read_st(&out);
    assert_eq!(a, b, "every tensor's dtype, shape and bytes survive");
    assert_eq!(meta_a, meta_b);

    // Re-importing writes nothing new and gives the same snapshot.
    let again = l3_store::import_safetensors(&store, &src, &opts("again")).unwrap();
    assert_eq!(again.snapshot, first.snapshot);
    assert_eq!(again.new_bytes, 0);
    assert!(l3_store::fsck(&store).unwrap().is_clean());
}

#[test]
fn every_dtype_scalars_empty_tensors_and_metadata_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let kinds = [
        (Dtype::BOOL, 1),
        (Dtype::U8, 1),
        (Dtype::I8, 1),
        (Dtype::F8_E4M3, 1),
        (Dtype::F8_E5M2, 1),
        (Dtype::U16, 2),
        (Dtype::I16, 2),
        (Dtype::F16, 2),
        (Dtype::BF16, 2),
        (Dtype::U32, 4),
        (Dtype::I32, 4),
        (Dtype::F32, 4),
        (Dtype::U64, 8),
        (Dtype::I64, 8),
        (Dtype::F64, 8),
    ];
    let mut tensors = Vec::new();
    let names: Vec<String> = kinds.iter().map(|(d, _)| format!("t/{d:?}")).collect();
    for (i, (dtype, size)) in kinds.iter().enumerate() {
        // 3 x 50_000 elements spans several 64 KiB chunks for the wide types.
        let n = 3 * 50_000 * size;
        let bytes: Vec<u8> = (0..n)
            .map(|j| ((j * 31 + i * 7) % 251) as u8 % if *dtype == Dtype::BOOL { 2 } else { 251 })
            .collect();
        tensors.push((names[i].as_str(), *dtype, vec![3, 50_000], bytes));
    }
    tensors.push(("scalar", Dtype::F32, vec![], f32_bytes(&[2.5])));
    tensors.push(("empty", Dtype::F16, vec![4, 0, 3], vec![]));
    let meta = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("note".to_string(), "ünïcode \"quoted\"".to_string()),
    ]);
    let src = dir.path().join("all.safetensors");
    write_st(&src, &tensors, Some(meta.clone()));

    let done = l3_store::import_safetensors(&store, &src, &opts("dtypes")).unwrap();
    let out = dir.path().join("out.safetensors");
    l3_store::export_safetensors(&store, &done.snapshot, &out, |_| true).unwrap();
    let (a, ma) = read_st(&src);
    let (b, mb) = read_st(&out);
    assert_eq!(a.len(), 17);
    assert_eq!(a, b);
    assert_eq!(ma, meta);
    assert_eq!(mb, meta);

    // In-memory reads agree too, dtype by dtype.
    let snap = store
        .read_snapshot(&done.snapshot, |n| n == "t/BF16" || n == "scalar")
        .unwrap();
    assert_eq!(snap["t/BF16"].dtype, DType::BF16);
    assert_eq!(snap["t/BF16"].bytes, a["t/BF16"].2);
    assert_eq!(snap["scalar"].shape, Vec::<u64>::new());
    assert_eq!(snap["scalar"].to_f32().unwrap(), vec![2.5]);
}

#[test]
fn metadata_only_file_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let src = dir.path().join("meta.safetensors");
    let meta = HashMap::from([("k".to_string(), "v".to_string())]);
    write_st(&src, &[], Some(meta.clone()));
    let done = l3_store::import_safetensors(&store, &src, &opts("meta only")).unwrap();
    assert_eq!(done.tensors, 0);
    let out = dir.path().join("out.safetensors");
    l3_store::export_safetensors(&store, &done.snapshot, &out, |_| true).unwrap();
    let (t, m) = read_st(&out);
    assert!(t.is_empty());
    assert_eq!(m, meta);
}

#[test]
fn partial_export_keeps_only_chosen_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let done = l3_store::import_safetensors(&store, &real_checkpoint(), &opts("i")).unwrap();
    let out = dir.path().join("part.safetensors");
    let keep = |n: &str| n.starts_with("encoder.layer.5.");
    l3_store::export_safetensors(&store, &done.snapshot, &out, keep).unwrap();
    let (all, _) = read_st(&real_checkpoint());
    let (part, _) = read_st(&out);
    let expected: Vec<&String> = all.keys().filter(|n| keep(n)).collect();
    assert_eq!(part.keys().collect::<Vec<_>>(), expected);
    assert!(!part.is_empty());
    for (name, t) in &part {
        assert_eq!(t, &all[name]);
    }
}

#[test]
fn a_change_to_some_rows_stores_only_the_touched_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let chunk = StoreConfig::default().chunk_size as usize;
    let rows = 64; // 64 rows of 4096 f32 = 16 KiB each, 4 rows per chunk, 16 chunks
    let base = floats(rows * 4096, 1);
    let src = dir.path().join("a.safetensors");
    write_st(
        &src,
        &[("w", Dtype::F32, vec![rows, 4096], f32_bytes(&base))],
        None,
    );
    l3_store::import_safetensors(&store, &src, &opts("a")).unwrap();

    let mut changed = base.clone();
    for v in &mut changed[5 * 4096..6 * 4096] {
        *v += 1.0; // row 5 only: lies in the second chunk
    }
    write_st(
        &src,
        &[("w", Dtype::F32, vec![rows, 4096], f32_bytes(&changed))],
        None,
    );
    let second = l3_store::import_safetensors(&store, &src, &opts("b")).unwrap();
    assert_eq!(
        second.new_bytes,
        chunk as u64,
        "one chunk of {}",
        rows * 4096 * 4 / chunk
    );
}

#[test]
fn two_stores_give_the_same_ids_for_the_same_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let a = Store::init(dir.path().join("a"), StoreConfig::default()).unwrap();
    let b = Store::init(
        dir.path().join("b"),
        StoreConfig {
            compression: l3_store::Compression::None,
            ..StoreConfig::default()
        },
    )
    .unwrap();
    let src = dir.path().join("x.safetensors");
    write_st(
        &src,
        &[(
            "x",
            Dtype::F32,
            vec![100_000],
            f32_bytes(&floats(100_000, 3)),
        )],
        None,
    );
    let ia = l3_store::import_safetensors(&a, &src, &opts("a")).unwrap();
    let ib = l3_store::import_safetensors(&b, &src, &opts("b")).unwrap();
    assert_eq!(ia.snapshot, ib.snapshot, "compression never changes an id");
    let c = Store::init(
        dir.path().join("c"),
        StoreConfig {
            chunk_size: 32 * 1024,
            ..StoreConfig::default()
        },
    )
    .unwrap();
    let ic = l3_store::import_safetensors(&c, &src, &opts("c")).unwrap();
    assert_ne!(
        ia.snapshot, ic.snapshot,
        "another chunk size makes other chunks"
    );
}

#[test]
fn unknown_future_dtypes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let src = dir.path().join("f8e8m0.safetensors");
    write_st(
        &src,
        &[("x", Dtype::F8_E8M0, vec![4], vec![1, 2, 3, 4])],
        None,
    );
    let err = l3_store::import_safetensors(&store, &src, &opts("x"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown dtype \"F8_E8M0\""), "{err}");
    assert_eq!(footprint(&store), (0, 0, 0));
}
