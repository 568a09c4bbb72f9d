//! Bad input is refused without touching the store; corruption is found and repaired; gc
//! reclaims only what nothing reaches.

use std::io::{Seek, SeekFrom, Write};

use l3_store::{GcOptions, Store};
use safetensors::Dtype;

use crate::common::*;

fn raw(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Imports `bytes` and returns the error; the store must be exactly as before.
fn refused(store: &Store, dir: &std::path::Path, bytes: &[u8]) -> String {
    let before = footprint(store);
    let path = dir.join("bad.safetensors");
    std::fs::write(&path, bytes).unwrap();
    let err =
        l3_store::import_safetensors(store, &path, &opts("bad")).expect_err("must be refused");
    assert_eq!(
        footprint(store),
        before,
        "the store changed after refusing: {err}"
    );
    err.to_string()
}

#[test]
fn malformed_files_get_an_error_naming_the_problem_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            raw(
                r#"{"w":{"dtype":"F32","shape":[1000,1000],"data_offsets":[0,4]}}"#,
                &[0; 4],
            ),
            "needs 4000000 bytes",
        ),
        (
            raw(
                r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#,
                &[0; 4],
            ),
            "more elements than fit in 64 bits",
        ),
        (
            raw(
                r#"{"w":{"dtype":"U8","shape":[9223372036854775810,2],"data_offsets":[0,4]}}"#,
                &[0; 4],
            ),
            "more elements than fit in 64 bits",
        ),
        (
            raw(
                r#"{"w":{"dtype":"U8","shape":[-1],"data_offsets":[0,4]}}"#,
                &[0; 4],
            ),
            "not a non-negative",
        ),
        (
            raw(
                r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}"#,
                &[0; 4],
            ),
            "claim the same bytes",
        ),
        (
            raw(
                r#"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}}"#,
                &[0; 6],
            ),
            "belong to no tensor",
        ),
        (
            raw(
                r#"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}"#,
                &[0; 4],
            ),
            "appears twice",
        ),
        (
            raw(
                r#"{"__metadata__":{"n":1},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#,
                &[0],
            ),
            "not a string",
        ),
        (
            raw(
                r#"{"__metadata__":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#,
                &[0],
            ),
            "reserves",
        ),
        (
            raw(
                r#"{"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}"#,
                &[0],
            ),
            "unknown dtype \"Q4\"",
        ),
        (
            raw(
                r#"{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}"#,
                &[0; 3],
            ),
            "truncated",
        ),
        (raw("\u{fffd}not json", &[]), "not a JSON object"),
        (
            {
                let mut b = raw(r#"{}"#, &[]);
                b.push(0xff);
                b[8] = 0xc3;
                b
            },
            "not",
        ),
        (
            {
                let mut b = 1_000_000u64.to_le_bytes().to_vec();
                b.extend_from_slice(b"{}");
                b
            },
            "larger than the file",
        ),
        (vec![1, 2, 3], "too short"),
        (
            b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 90868376\n".to_vec(),
            "Git LFS pointer",
        ),
        (
            raw(
                r#"{"":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#,
                &[0],
            ),
            "empty name",
        ),
        (
            raw(
                "{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
                &[0],
            ),
            "NUL byte",
        ),
    ];
    for (bytes, expected) in cases {
        let err = refused(&store, dir.path(), &bytes);
        assert!(err.contains(expected), "expected \"{expected}\" in: {err}");
        assert!(
            err.contains("bad.safetensors"),
            "the error names the file: {err}"
        );
    }
    // A real import still works afterwards and nothing stale is visible.
    l3_store::import_safetensors(&store, &real_checkpoint(), &opts("ok")).unwrap();
    assert!(l3_store::fsck(&store).unwrap().is_clean());
}

#[test]
fn unusual_but_valid_files_import() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    // Header order differs from offset order; names that look like paths are opaque keys.
    let header = r#"{"b/../../x":{"dtype":"U8","shape":[2],"data_offsets":[2,4]},"a/b":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"z":{"dtype":"F32","shape":[0,5],"data_offsets":[4,4]}}"#;
    let path = dir.path().join("odd.safetensors");
    std::fs::write(&path, raw(header, &[1, 2, 3, 4])).unwrap();
    let done = l3_store::import_safetensors(&store, &path, &opts("odd")).unwrap();
    let t = store.read_snapshot(&done.snapshot, |_| true).unwrap();
    assert_eq!(t["a/b"].bytes, vec![1, 2]);
    assert_eq!(t["b/../../x"].bytes, vec![3, 4]);
    assert_eq!(t["z"].shape, vec![0, 5]);
    let out = dir.path().join("odd-out.safetensors");
    l3_store::export_safetensors(&store, &done.snapshot, &out, |_| true).unwrap();
    assert!(!dir.path().join("x").exists() && !dir.path().join("a").exists());
    let (a, _) = read_st(&out);
    assert_eq!(a["b/../../x"].2, vec![3, 4]);
}

/// Flips one byte inside the stored bytes of the chunk holding tensor `name`'s first bytes.
fn corrupt_first_chunk(
    store: &Store,
    snapshot: &l3_store::SnapshotId,
    name: &str,
) -> l3_store::ChunkId {
    let s = store.session().unwrap();
    let tid = s.tensor_in(snapshot, name).unwrap().unwrap();
    let rec = s.tensor(&tid).unwrap().unwrap();
    let chunk = l3_store::ChunkId(rec.chunks[0]);
    let loc = s.chunk_loc(&chunk).unwrap().unwrap();
    drop(s);
    let pack = store
        .root()
        .join("packs")
        .join(format!("{:016x}.pack", loc.pack));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(pack)
        .unwrap();
    let at = loc.offset + loc.stored_len as u64 / 2;
    let mut b = [0u8; 1];
    use std::os::unix::fs::FileExt;
    f.read_exact_at(&mut b, at).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0x5a]).unwrap();
    chunk
}

#[test]
fn a_flipped_byte_is_named_by_fsck_refused_on_read_and_repaired_by_reimport() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let src = real_checkpoint();
    let done = l3_store::import_safetensors(&store, &src, &opts("i")).unwrap();
    store.release_writer();
    let chunk = corrupt_first_chunk(&store, &done.snapshot, "pooler.dense.weight");

    let report = l3_store::fsck(&store).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    match &report.problems[0] {
        l3_store::Problem::CorruptChunk {
            chunk: c,
            snapshots,
            ..
        } => {
            assert_eq!(*c, chunk);
            assert_eq!(snapshots, &vec![done.snapshot]);
        }
        p => panic!("unexpected problem {p:?}"),
    }
    let out = dir.path().join("out.safetensors");
    let err = l3_store::export_safetensors(&store, &done.snapshot, &out, |_| true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&chunk.to_hex()) && err.contains("does not match its hash"),
        "{err}"
    );
    assert!(!out.exists(), "no partial file is left");

    l3_store::import_safetensors(&store, &src, &opts("repair")).unwrap();
    assert!(l3_store::fsck(&store).unwrap().is_clean());
    l3_store::export_safetensors(&store, &done.snapshot, &out, |_| true).unwrap();
    assert_eq!(read_st(&out).0, read_st(&src).0);
}

#[test]
fn gc_reclaims_unreachable_snapshots_and_keeps_everything_reachable() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let keep = dir.path().join("keep.safetensors");
    let drop_ = dir.path().join("drop.safetensors");
    write_st(
        &keep,
        &[(
            "w",
            Dtype::F32,
            vec![300_000],
            f32_bytes(&floats(300_000, 1)),
        )],
        None,
    );
    write_st(
        &drop_,
        &[(
            "w",
            Dtype::F32,
            vec![300_000],
            f32_bytes(&floats(300_000, 2)),
        )],
        None,
    );
    let kept = l3_store::import_safetensors(&store, &keep, &opts("keep")).unwrap();
    let mut side = opts("drop");
    side.branch = Some("scratch".into());
    let dropped = l3_store::import_safetensors(&store, &drop_, &side).unwrap();
    store.delete_branch("scratch").unwrap();
    store.release_writer();

    // The reflog still names the dropped commit inside the retention window.
    let r = l3_store::gc(&store, &GcOptions::default()).unwrap();
    assert_eq!(r.commits_removed, 0);
    let dry = l3_store::gc(
        &store,
        &GcOptions {
            dry_run: true,
            reflog_retention: std::time::Duration::ZERO,
            ..GcOptions::default()
        },
    )
    .unwrap();
    assert_eq!(dry.commits_removed, 1);
    assert!(
        store
            .session()
            .unwrap()
            .commit(&dropped.commit)
            .unwrap()
            .is_some(),
        "dry run changes nothing"
    );
    let before = l3_store::stats(&store).unwrap().stored_bytes;
    let r = l3_store::gc(
        &store,
        &GcOptions {
            reflog_retention: std::time::Duration::ZERO,
            ..GcOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        (r.commits_removed, r.snapshots_removed, r.tensors_removed),
        (1, 1, 1)
    );
    assert_eq!(r.chunks_removed, dropped.new_bytes.div_ceil(65536));
    let after = l3_store::stats(&store).unwrap().stored_bytes;
    assert!(
        after < before && before - after >= r.bytes_reclaimed / 2,
        "{before} -> {after}, {r:?}"
    );
    assert!(dry.bytes_reclaimed > 0);

    assert!(store
        .session()
        .unwrap()
        .commit(&dropped.commit)
        .unwrap()
        .is_none());
    assert!(l3_store::fsck(&store).unwrap().is_clean());
    let out = dir.path().join("out.safetensors");
    l3_store::export_safetensors(&store, &kept.snapshot, &out, |_| true).unwrap();
    assert_eq!(read_st(&out).0, read_st(&keep).0);
}

#[test]
fn gc_keeps_pinned_commits_and_never_touches_a_pack_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let a = dir.path().join("a.safetensors");
    write_st(
        &a,
        &[(
            "w",
            Dtype::F32,
            vec![100_000],
            f32_bytes(&floats(100_000, 5)),
        )],
        None,
    );
    let mut o = opts("pinned");
    o.branch = Some("tmp".into());
    let done = l3_store::import_safetensors(&store, &a, &o).unwrap();
    store
        .pin(done.commit, "test", std::time::Duration::from_secs(600))
        .unwrap();
    store.delete_branch("tmp").unwrap();

    // Another process's view: a second handle runs gc while this one's pack is open.
    let other = Store::open(store.root(), Default::default()).unwrap();
    let r = l3_store::gc(
        &other,
        &GcOptions {
            reflog_retention: std::time::Duration::ZERO,
            ..GcOptions::default()
        },
    )
    .unwrap();
    assert_eq!(r.commits_removed, 0, "the pin keeps it");
    assert_eq!(r.packs_in_use, 1, "the writer's pack is locked");
    let out = dir.path().join("out.safetensors");
    l3_store::export_safetensors(&other, &done.snapshot, &out, |_| true).unwrap();
    assert_eq!(read_st(&out).0, read_st(&a).0);
}

#[test]
fn a_deleted_pack_is_reported_and_restored_by_importing_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let src = dir.path().join("a.safetensors");
    write_st(
        &src,
        &[(
            "w",
            Dtype::F32,
            vec![100_000],
            f32_bytes(&floats(100_000, 8)),
        )],
        None,
    );
    let done = l3_store::import_safetensors(&store, &src, &opts("a")).unwrap();
    store.release_writer();
    for entry in std::fs::read_dir(store.root().join("packs")).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    // Without running fsck first: the import itself notices the chunks are gone.
    l3_store::import_safetensors(&store, &src, &opts("again")).unwrap();
    let report = l3_store::fsck(&store).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    let got = store.read_snapshot(&done.snapshot, |_| true).unwrap();
    assert_eq!(got["w"].to_f32().unwrap(), floats(100_000, 8));
}
