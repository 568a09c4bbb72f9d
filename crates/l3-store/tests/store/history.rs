//! Commits, refs, revisions, diff and lineage on a real store.

use std::collections::BTreeMap;

use l3_store::{
    CommitId, CommitRequest, Expect, RefName, RefUpdate, Status, Store, TensorData, TensorValue,
};

use crate::common::*;

/// Commits `tensors` on `branch` as a child of its head.
fn commit(
    store: &Store,
    branch: &str,
    tensors: &BTreeMap<String, TensorData>,
    record: serde_json::Value,
) -> CommitId {
    let head = store
        .session()
        .unwrap()
        .get_ref(&RefName::Branch(branch.into()))
        .unwrap();
    let values = tensors
        .iter()
        .map(|(k, v)| (k.clone(), TensorValue::Data(v)))
        .collect();
    let req = CommitRequest {
        branch: Some(branch.into()),
        parents: head.into_iter().collect(),
        expected: Expect::exactly(head),
        fallback: None,
        author: "test".into(),
        message: format!("commit on {branch}"),
        record,
        time_ms: None,
    };
    l3_store::commit_tensors(store, &values, &BTreeMap::new(), &req)
        .unwrap()
        .commit
}

fn model(seed: u64) -> BTreeMap<String, TensorData> {
    BTreeMap::from([
        (
            "backbone".to_string(),
            TensorData::from_f32(vec![256, 256], &floats(65536, 1)).unwrap(),
        ),
        (
            "head".to_string(),
            TensorData::from_f32(vec![10, 256], &floats(2560, seed)).unwrap(),
        ),
    ])
}

#[test]
fn revisions_resolve_from_branches_tags_prefixes_and_steps() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let c1 = commit(&store, "main", &model(1), serde_json::json!({}));
    let c2 = commit(&store, "main", &model(2), serde_json::json!({}));
    let c3 = commit(&store, "main", &model(3), serde_json::json!({}));
    let s = store.session().unwrap();
    assert_eq!(s.resolve("main").unwrap(), c3);
    assert_eq!(s.resolve("HEAD").unwrap(), c3);
    assert_eq!(s.resolve("main~1").unwrap(), c2);
    assert_eq!(s.resolve("main~2").unwrap(), c1);
    assert_eq!(s.resolve("main^").unwrap(), c2);
    assert_eq!(s.resolve("main^1~1").unwrap(), c1);
    assert_eq!(s.resolve("main^0").unwrap(), c3);
    assert_eq!(s.resolve(&c2.to_hex()[..10]).unwrap(), c2);
    assert_eq!(s.resolve(&c2.to_hex().to_uppercase()[..9]).unwrap(), c2);
    let err = s.resolve("main~3").unwrap_err().to_string();
    assert!(err.contains("history ends"), "{err}");
    assert!(s
        .resolve("main^2")
        .unwrap_err()
        .to_string()
        .contains("no parent 2"));
    assert!(s
        .resolve("nope")
        .unwrap_err()
        .to_string()
        .contains("no branch, tag or commit"));
    drop(s);

    let tag = |name: &str, c| RefUpdate {
        name: RefName::Tag(name.into()),
        new: c,
        expected: Expect::Absent,
        message: String::new(),
        fallback: None,
    };
    store.update_refs(&[tag("v1", c1)]).unwrap();
    assert_eq!(store.session().unwrap().resolve("v1").unwrap(), c1);
    let err = store.update_refs(&[tag("v1", c2)]).unwrap_err();
    assert!(matches!(err, l3_store::Error::TagExists(_)), "{err}");
    assert_eq!(
        store.session().unwrap().resolve("v1").unwrap(),
        c1,
        "tags never move"
    );
}

#[test]
fn reset_is_recorded_in_the_reflog_and_can_be_undone_and_revert_adds_a_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let c1 = commit(&store, "main", &model(1), serde_json::json!({}));
    let c2 = commit(&store, "main", &model(2), serde_json::json!({}));
    assert_eq!(store.reset("main", c1).unwrap(), Some(c2));
    let log = store.session().unwrap().reflog("main").unwrap();
    assert_eq!(log.len(), 3);
    assert_eq!((log[2].old, log[2].new), (Some(c2), Some(c1)));
    // Undo the reset from the reflog.
    store.reset("main", log[2].old.unwrap()).unwrap();
    assert_eq!(store.session().unwrap().resolve("main").unwrap(), c2);

    let r = store.revert("main", c1, "test").unwrap();
    let s = store.session().unwrap();
    let rec = s.get_commit(&r).unwrap();
    assert_eq!(rec.parents, vec![c2.0]);
    assert_eq!(rec.snapshot, s.get_commit(&c1).unwrap().snapshot);
}

#[test]
fn diff_figures_match_an_independent_computation() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let a = model(1);
    let mut b = model(1);
    let mut head = a["head"].to_f32().unwrap();
    for (i, v) in head.iter_mut().enumerate().filter(|(i, _)| i % 10 == 0) {
        *v += 0.01 * (i % 7) as f32;
    }
    b.insert(
        "head".into(),
        TensorData::from_f32(vec![10, 256], &head).unwrap(),
    );
    b.insert(
        "extra".into(),
        TensorData::from_f32(vec![3], &[1.0, 2.0, 3.0]).unwrap(),
    );
    let ca = commit(&store, "main", &a, serde_json::json!({}));
    let cb = commit(&store, "main", &b, serde_json::json!({}));
    let s = store.session().unwrap();
    let sa = l3_store::SnapshotId(s.get_commit(&ca).unwrap().snapshot);
    let sb = l3_store::SnapshotId(s.get_commit(&cb).unwrap().snapshot);
    drop(s);
    let d = l3_store::diff(&store, &sa, &sb).unwrap();
    let by: BTreeMap<_, _> = d.iter().map(|t| (t.name.as_str(), t)).collect();
    assert_eq!(by["extra"].status, Status::Added);
    assert_eq!(by["backbone"].status, Status::Unchanged);
    assert_eq!(by["backbone"].chunks_read, 0);
    let h = by["head"];
    assert_eq!(h.status, Status::Changed);

    let old = a["head"].to_f32().unwrap();
    let (mut dd, mut na, mut nb, mut dot, mut max, mut changed) = (0f64, 0f64, 0f64, 0f64, 0f64, 0);
    for (x, y) in old.iter().zip(&head) {
        let (x, y) = (*x as f64, *y as f64);
        dd += (y - x) * (y - x);
        na += x * x;
        nb += y * y;
        dot += x * y;
        max = max.max((y - x).abs());
        changed += usize::from(x != y);
    }
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1e-12);
    assert!(close(h.l2_delta.unwrap(), dd.sqrt()));
    assert!(close(h.rel_change.unwrap(), dd.sqrt() / na.sqrt()));
    assert!(close(h.cosine.unwrap(), dot / (na.sqrt() * nb.sqrt())));
    assert!(close(h.max_abs.unwrap(), max));
    assert_eq!(h.changed_fraction.unwrap(), changed as f64 / 2560.0);
    assert!(changed > 200 && changed < 300);
}

#[test]
fn lineage_queries_follow_the_graph() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let data = l3_store::add_dataset(
        &store,
        "digits",
        &BTreeMap::from([(
            "x".to_string(),
            TensorData::from_f32(vec![2], &[1.0, 2.0]).unwrap(),
        )]),
        &BTreeMap::new(),
    )
    .unwrap();
    let root = commit(&store, "main", &model(1), serde_json::json!({}));
    let a1 = commit(
        &store,
        "main",
        &model(2),
        serde_json::json!({"data": [data]}),
    );
    store
        .update_refs(&[RefUpdate {
            name: RefName::Branch("side".into()),
            new: root,
            expected: Expect::Absent,
            message: "b".into(),
            fallback: None,
        }])
        .unwrap();
    let b1 = commit(&store, "side", &model(3), serde_json::json!({}));
    let a2 = commit(&store, "main", &model(2), serde_json::json!({}));

    let s = store.session().unwrap();
    assert_eq!(
        s.ancestors(a2)
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>()
            .len(),
        2
    );
    let desc = s.descendants(root).unwrap();
    assert!(desc.contains(&a1) && desc.contains(&a2) && desc.contains(&b1) && desc.len() == 3);
    assert_eq!(s.merge_bases(a2, b1).unwrap(), vec![root]);
    assert_eq!(s.merge_bases(a2, a1).unwrap(), vec![a1]);
    // head changed at a1 (seed 2) and stayed through a2; the backbone never changed.
    assert_eq!(s.blame(a2, "head").unwrap().unwrap().id, a1);
    assert_eq!(s.blame(a2, "backbone").unwrap().unwrap().id, root);
    assert!(s.blame(a2, "missing").unwrap().is_none());
    let users: Vec<CommitId> = s
        .commits_with_data(&data)
        .unwrap()
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(users, vec![a1]);
    let log = s.log(a2, true, 10).unwrap();
    assert_eq!(
        log.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![a2, a1, root]
    );
}

#[test]
fn sixteen_threads_committing_to_one_branch_all_land_or_get_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let root = commit(&store, "main", &model(0), serde_json::json!({}));
    let results: Vec<(CommitId, Result<CommitId, String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16u64)
            .map(|i| {
                let store = store.clone();
                scope.spawn(move || {
                    let mut last = None;
                    for _attempt in 0..100 {
                        let tensors = model(100 + i);
                        let head = store.session().unwrap().resolve("main").unwrap();
                        let values = tensors
                            .iter()
                            .map(|(k, v)| (k.clone(), TensorValue::Data(v)))
                            .collect();
                        let req = CommitRequest {
                            branch: Some("main".into()),
                            parents: vec![head],
                            expected: Expect::Is(head),
                            fallback: None,
                            author: format!("t{i}"),
                            message: format!("thread {i}"),
                            record: serde_json::json!({}),
                            time_ms: None,
                        };
                        match l3_store::commit_tensors(&store, &values, &BTreeMap::new(), &req) {
                            Ok(o) => return (head, Ok(o.commit)),
                            Err(e @ l3_store::Error::Conflict { .. }) => last = Some(e.to_string()),
                            Err(e) => return (head, Err(e.to_string())),
                        }
                    }
                    (root, Err(last.unwrap_or_default()))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let landed: Vec<CommitId> = results
        .iter()
        .map(|(_, r)| r.clone().expect("retried until it landed"))
        .collect();
    let s = store.session().unwrap();
    let history: Vec<CommitId> = s
        .log(s.resolve("main").unwrap(), true, 100)
        .unwrap()
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(
        history.len(),
        17,
        "every commit is on the branch, in a line"
    );
    for c in &landed {
        assert!(history.contains(c));
    }
}

#[test]
fn a_commit_that_loses_a_race_goes_to_its_fallback_ref() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let root = commit(&store, "main", &model(0), serde_json::json!({}));
    let winner = commit(&store, "main", &model(1), serde_json::json!({}));
    let tensors = model(2);
    let values = tensors
        .iter()
        .map(|(k, v)| (k.clone(), TensorValue::Data(v)))
        .collect();
    let req = CommitRequest {
        branch: Some("main".into()),
        parents: vec![root],
        expected: Expect::Is(root),
        fallback: Some("jobs/7".into()),
        author: "w".into(),
        message: "late".into(),
        record: serde_json::json!({}),
        time_ms: None,
    };
    let out = l3_store::commit_tensors(&store, &values, &BTreeMap::new(), &req).unwrap();
    assert_eq!(out.branch.as_deref(), Some("jobs/7"));
    assert_eq!(out.lost_race_to, Some(winner));
    let s = store.session().unwrap();
    assert_eq!(s.resolve("main").unwrap(), winner);
    assert_eq!(s.resolve("jobs/7").unwrap(), out.commit);
    assert_eq!(
        s.get_commit(&out.commit).unwrap().parents,
        vec![root.0],
        "its true parent"
    );
}

#[test]
fn reflog_revisions_name_earlier_values_of_a_branch() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let c1 = commit(&store, "main", &model(1), serde_json::json!({}));
    let c2 = commit(&store, "main", &model(2), serde_json::json!({}));
    store.reset("main", c1).unwrap();
    let s = store.session().unwrap();
    assert_eq!(s.resolve("main@{0}").unwrap(), c1);
    assert_eq!(s.resolve("main@{1}").unwrap(), c2, "before the reset");
    assert_eq!(s.resolve("main@{2}").unwrap(), c1);
    assert_eq!(s.resolve("main@{1}~1").unwrap(), c1);
    assert!(s
        .resolve("main@{3}")
        .unwrap_err()
        .to_string()
        .contains("moved only 2 times"));
    assert!(s.resolve("main@{x}").is_err());
}
