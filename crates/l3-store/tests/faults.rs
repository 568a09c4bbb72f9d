//! Injected I/O failures (a write that fails half-way as on a full disk, a failing fsync, a
//! failing metadata commit) during import, commit and gc: the operation fails with a clear
//! error, everything the store held is still there byte for byte, and a retry succeeds.
//!
//! One test in its own binary: faults are armed process-wide.

use std::collections::BTreeMap;
use std::path::Path;

use l3_store::faults::{self, Fault};
use l3_store::{
    CommitOptions, CommitRequest, Expect, GcOptions, SnapshotId, Store, StoreConfig, TensorData,
    TensorValue,
};

fn write_file(path: &Path, seed: u32) {
    // Two F32 tensors of 200k values; contents depend on the seed.
    let mut out = Vec::new();
    let n = 200_000usize;
    let header = format!(
        r#"{{"a":{{"dtype":"F32","shape":[{n}],"data_offsets":[0,{}]}},"b":{{"dtype":"F32","shape":[{n}],"data_offsets":[{},{}]}}}}"#,
        n * 4,
        n * 4,
        n * 8
    );
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for i in 0..2 * n as u32 {
        let v = ((i.wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 1000.0;
        out.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, out).unwrap();
}

fn opts(branch: &str) -> CommitOptions {
    CommitOptions {
        branch: Some(branch.into()),
        author: "t".into(),
        message: "m".into(),
        record: serde_json::json!({}),
    }
}

/// Branches, and the bytes of every snapshot they point at.
type State = (
    Vec<(String, l3_store::CommitId)>,
    BTreeMap<SnapshotId, BTreeMap<String, TensorData>>,
);

/// Refs and every reachable snapshot's bytes.
fn state(store: &Store) -> State {
    let s = store.session().unwrap();
    let refs = s.branches().unwrap();
    let snaps: Vec<SnapshotId> = refs
        .iter()
        .map(|(_, c)| SnapshotId(s.get_commit(c).unwrap().snapshot))
        .collect();
    drop(s);
    let bytes = snaps
        .into_iter()
        .map(|id| (id, store.read_snapshot(&id, |_| true).unwrap()))
        .collect();
    (refs, bytes)
}

type Op = fn(&Store, &Path) -> l3_store::Result<()>;

fn import(store: &Store, dir: &Path) -> l3_store::Result<()> {
    l3_store::import_safetensors(store, &dir.join("new.safetensors"), &opts("main")).map(|_| ())
}

fn commit(store: &Store, _dir: &Path) -> l3_store::Result<()> {
    let head = store.session()?.resolve("main")?;
    let t = TensorData::from_f32(vec![70_000], &vec![0.25; 70_000]).unwrap();
    let values = BTreeMap::from([("head".to_string(), TensorValue::Data(&t))]);
    let req = CommitRequest {
        branch: Some("main".into()),
        parents: vec![head],
        expected: Expect::Is(head),
        fallback: None,
        author: "t".into(),
        message: "child".into(),
        record: serde_json::json!({}),
        time_ms: None,
    };
    l3_store::commit_tensors(store, &values, &BTreeMap::new(), &req).map(|_| ())
}

fn gc(store: &Store, _dir: &Path) -> l3_store::Result<()> {
    store.release_writer();
    let opts = GcOptions {
        reflog_retention: std::time::Duration::ZERO,
        ..GcOptions::default()
    };
    l3_store::gc(store, &opts).map(|_| ())
}

#[test]
fn injected_io_failures_leave_the_store_as_it_was() {
    let ops: [(&str, Op); 3] = [("import", import), ("commit", commit), ("gc", gc)];
    let kinds = [Fault::PackWriteHalf, Fault::PackSync, Fault::MetaCommit];
    let mut fired = 0;
    for (name, op) in ops {
        for fault in kinds {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::init(dir.path().join("s"), StoreConfig::default()).unwrap();
            write_file(&dir.path().join("base.safetensors"), 1);
            write_file(&dir.path().join("garbage.safetensors"), 2);
            write_file(&dir.path().join("new.safetensors"), 3);
            l3_store::import_safetensors(
                &store,
                &dir.path().join("base.safetensors"),
                &opts("main"),
            )
            .unwrap();
            l3_store::import_safetensors(
                &store,
                &dir.path().join("garbage.safetensors"),
                &opts("tmp"),
            )
            .unwrap();
            store.delete_branch("tmp").unwrap();
            store.release_writer();
            let before = state(&store);

            faults::inject(fault);
            let result = op(&store, dir.path());
            faults::clear();
            match result {
                Err(e) => {
                    fired += 1;
                    let msg = e.to_string();
                    assert!(
                        msg.contains("no space left") || msg.contains("input/output error"),
                        "{name} under {fault:?}: unclear error {msg}"
                    );
                    assert_eq!(
                        state(&store),
                        before,
                        "{name} under {fault:?} changed the store"
                    );
                }
                // gc writes nothing when there is nothing to compact: then the fault cannot
                // strike, and what counts is that the store is intact.
                Ok(()) => assert_eq!(name, "gc", "{name} under {fault:?} did not fail"),
            }
            assert!(
                l3_store::fsck(&store).unwrap().is_clean(),
                "{name} under {fault:?}"
            );

            // A retry without the fault succeeds and everything still reads.
            op(&store, dir.path()).unwrap();
            assert!(l3_store::fsck(&store).unwrap().is_clean());
            let after = state(&store);
            for (id, tensors) in &before.1 {
                if let Some(now) = after.1.get(id) {
                    assert_eq!(now, tensors);
                }
            }
        }
    }
    assert_eq!(fired, 9, "every fault struck");
}
