//! Random histories against a plain in-memory model.

use std::collections::{BTreeMap, HashMap};

use l3_store::{
    CommitId, CommitRequest, Expect, GcOptions, RefName, Store, TensorData, TensorValue,
};
use proptest::prelude::*;

use crate::common::*;

#[derive(Clone, Debug)]
enum Op {
    /// Commit on branch b a snapshot derived from seed s (some tensors shared).
    Commit {
        branch: u8,
        seed: u8,
    },
    /// Move branch b to the k-th commit made so far.
    Reset {
        branch: u8,
        k: usize,
    },
    /// Revert branch b to the k-th commit.
    Revert {
        branch: u8,
        k: usize,
    },
    Gc,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3u8, 0..6u8).prop_map(|(branch, seed)| Op::Commit { branch, seed }),
        1 => (0..3u8, 0..50usize).prop_map(|(branch, k)| Op::Reset { branch, k }),
        1 => (0..3u8, 0..50usize).prop_map(|(branch, k)| Op::Revert { branch, k }),
        1 => Just(Op::Gc),
    ]
}

fn snapshot_for(seed: u8) -> BTreeMap<String, TensorData> {
    // "shared" is identical across seeds; "own" differs; "half" shares its first chunk.
    let mut half = floats(32768, 9);
    half[20000] = seed as f32;
    BTreeMap::from([
        (
            "shared".to_string(),
            TensorData::from_f32(vec![20000], &floats(20000, 7)).unwrap(),
        ),
        (
            "own".to_string(),
            TensorData::from_f32(vec![3000], &floats(3000, seed as u64 + 100)).unwrap(),
        ),
        (
            "half".to_string(),
            TensorData::from_f32(vec![32768], &half).unwrap(),
        ),
    ])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn random_histories_keep_every_reachable_snapshot_byte_for_byte(ops in prop::collection::vec(op(), 1..24)) {
        let dir = tempfile::tempdir().unwrap();
        let store: Store = new_store(dir.path());
        // The model: branch -> commit, commit -> (parents, seed of its snapshot).
        let mut branches: HashMap<String, CommitId> = HashMap::new();
        let mut commits: Vec<(CommitId, Vec<CommitId>, u8)> = Vec::new();
        for op in ops {
            match op {
                Op::Commit { branch, seed } => {
                    let b = format!("b{branch}");
                    let head = branches.get(&b).copied();
                    let tensors = snapshot_for(seed);
                    let values = tensors.iter().map(|(k, v)| (k.clone(), TensorValue::Data(v))).collect();
                    let req = CommitRequest { branch: Some(b.clone()), parents: head.into_iter().collect(), expected: Expect::exactly(head), fallback: None, author: "p".into(), message: format!("{seed}"), record: serde_json::json!({}), time_ms: Some(commits.len() as i64) };
                    let out = l3_store::commit_tensors(&store, &values, &BTreeMap::new(), &req).unwrap();
                    commits.push((out.commit, head.into_iter().collect(), seed));
                    branches.insert(b, out.commit);
                }
                Op::Reset { branch, k } if !commits.is_empty() => {
                    let target = commits[k % commits.len()].0;
                    let b = format!("b{branch}");
                    if !branches.contains_key(&b) {
                        // Resetting a branch that does not exist is refused, not a creation.
                        prop_assert!(store.reset(&b, target).is_err());
                        continue;
                    }
                    store.reset(&b, target).unwrap();
                    branches.insert(b, target);
                }
                Op::Revert { branch, k } if !commits.is_empty() => {
                    let b = format!("b{branch}");
                    let Some(head) = branches.get(&b).copied() else { continue };
                    let (target, _, seed) = commits[k % commits.len()].clone();
                    let head_seed = commits.iter().find(|c| c.0 == head).map(|c| c.2);
                    if head_seed == Some(seed) {
                        // Reverting to the knowledge the branch already holds is refused.
                        prop_assert!(store.revert(&b, target, "p").is_err());
                        continue;
                    }
                    let c = store.revert(&b, target, "p").unwrap();
                    commits.push((c, vec![head], seed));
                    branches.insert(b, c);
                }
                Op::Gc => {
                    store.release_writer();
                    l3_store::gc(&store, &GcOptions::default()).unwrap();
                }
                _ => {}
            }
            // After every step: each branch shows the model's commit, parents and bytes.
            let s = store.session().unwrap();
            for (b, c) in &branches {
                prop_assert_eq!(s.get_ref(&RefName::Branch(b.clone())).unwrap(), Some(*c));
            }
            drop(s);
        }
        store.release_writer();
        l3_store::gc(&store, &GcOptions::default()).unwrap();
        prop_assert!(l3_store::fsck(&store).unwrap().is_clean());
        for (id, parents, seed) in &commits {
            let s = store.session().unwrap();
            let rec = s.get_commit(id).unwrap();
            prop_assert_eq!(rec.parents.iter().map(|p| CommitId(*p)).collect::<Vec<_>>(), parents.clone());
            let snap = l3_store::SnapshotId(rec.snapshot);
            drop(s);
            let got = store.read_snapshot(&snap, |_| true).unwrap();
            prop_assert_eq!(&got, &snapshot_for(*seed));
        }
    }
}
