//! Criterion micro-benchmarks of the store's inner loops: chunk hashing, float decoding
//! (norms and diffs), revision resolution and lineage walks, small commits and diffs.
//! `cargo bench --bench micro`; the end-to-end table is `cargo bench --bench report`.

use std::collections::BTreeMap;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use l3_store::{
    CommitId, CommitRequest, DType, Expect, Store, StoreConfig, TensorData, TensorValue,
};

const CHUNK: usize = l3_store::DEFAULT_CHUNK_SIZE as usize;

fn floats_bytes(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .flat_map(|i| {
            let x = (i.wrapping_mul(2_654_435_761) ^ seed) as f32 / u32::MAX as f32 - 0.5;
            (x * 0.04).to_le_bytes()
        })
        .collect()
}

fn request(parent: Option<CommitId>) -> CommitRequest {
    CommitRequest {
        branch: Some("main".into()),
        parents: parent.into_iter().collect(),
        expected: Expect::exactly(parent),
        fallback: None,
        author: "bench".into(),
        message: "micro".into(),
        record: serde_json::json!({}),
        time_ms: None,
    }
}

fn commit(store: &Store, tensors: &BTreeMap<String, TensorData>) -> CommitId {
    let parent = store
        .session()
        .and_then(|s| s.get_ref(&l3_store::RefName::Branch("main".into())))
        .expect("read head");
    let values = tensors
        .iter()
        .map(|(n, t)| (n.clone(), TensorValue::Data(t)))
        .collect();
    l3_store::commit_tensors(store, &values, &BTreeMap::new(), &request(parent))
        .expect("commit")
        .commit
}

fn chunks(c: &mut Criterion) {
    let raw = floats_bytes(CHUNK / 4, 1);
    let mut g = c.benchmark_group("chunk");
    g.throughput(Throughput::Bytes(CHUNK as u64));
    g.bench_function("chunk_id 64 KiB", |b| b.iter(|| l3_store::chunk_id(&raw)));
    g.bench_function("floats F32 64 KiB (norm and diff decoding)", |b| {
        b.iter(|| l3_store::floats(DType::F32, &raw).map(|v| v.len()))
    });
    // What import computes per chunk besides the hash (l3_store's numeric::norm_sq, which is
    // private): decode to f64, then a sequential sum of the finite squares.
    g.bench_function("norm_sq F32 64 KiB (as import computes it)", |b| {
        b.iter(|| {
            l3_store::floats(DType::F32, &raw).map(|v| {
                v.iter()
                    .filter(|x| x.is_finite())
                    .map(|x| x * x)
                    .sum::<f64>()
            })
        })
    });
    g.finish();
}

fn history(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let store = Store::init(tmp.path().join("s"), StoreConfig::default()).expect("init");
    let held = store.session().expect("session");
    let mut commits = Vec::new();
    for i in 0..1000u64 {
        let t = BTreeMap::from([(
            "step".to_string(),
            TensorData::new(DType::U64, vec![], i.to_le_bytes().to_vec()).expect("tensor"),
        )]);
        commits.push(commit(&store, &t));
    }
    let tip = *commits.last().expect("commits");
    let prefix = commits[333].to_hex()[..8].to_string();
    let mut g = c.benchmark_group("history of 1000 commits");
    g.bench_function("resolve main~500", |b| {
        b.iter(|| held.resolve("main~500").expect("resolve"))
    });
    g.bench_function("resolve 8-digit hex prefix", |b| {
        b.iter(|| held.resolve(&prefix).expect("resolve"))
    });
    g.bench_function("resolve HEAD", |b| {
        b.iter(|| held.resolve("HEAD").expect("resolve"))
    });
    g.bench_function("log -n 20", |b| {
        b.iter(|| held.log(tip, false, 20).expect("log"))
    });
    g.bench_function("ancestors of the tip", |b| {
        b.iter(|| held.ancestors(tip).expect("ancestors"))
    });
    g.finish();
    drop(held);
    let mut g = c.benchmark_group("store session");
    g.bench_function("open store + resolve HEAD (1000 commits)", |b| {
        b.iter(|| {
            let s = Store::open(tmp.path().join("s"), Default::default()).expect("open");
            let c = s
                .session()
                .expect("session")
                .resolve("HEAD")
                .expect("resolve");
            c
        })
    });
    g.finish();
}

fn small_commits(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let store = Store::init(tmp.path().join("s"), StoreConfig::default()).expect("init");
    let base = BTreeMap::from([
        (
            "w".to_string(),
            TensorData::new(DType::F32, vec![256, 256], floats_bytes(256 * 256, 2))
                .expect("tensor"),
        ),
        (
            "head".to_string(),
            TensorData::new(DType::F32, vec![10, 256], floats_bytes(2560, 3)).expect("tensor"),
        ),
    ]);
    let root = commit(&store, &base);
    let mut seed = 10;
    let mut g = c.benchmark_group("commit");
    g.sample_size(20);
    for hold in [false, true] {
        let name = if hold {
            "child with a new 10 KiB head (database open)"
        } else {
            "child with a new 10 KiB head (opens the database)"
        };
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    seed += 1;
                    let mut t = base.clone();
                    t.insert(
                        "head".into(),
                        TensorData::new(DType::F32, vec![10, 256], floats_bytes(2560, seed))
                            .expect("tensor"),
                    );
                    t
                },
                |t| {
                    let held = if hold { store.session().ok() } else { None };
                    let c = commit(&store, &t);
                    drop(held);
                    c
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
    let child = commit(&store, &{
        let mut t = base.clone();
        t.insert(
            "head".into(),
            TensorData::new(DType::F32, vec![10, 256], floats_bytes(2560, 99)).expect("tensor"),
        );
        t
    });
    let snap = |c: &CommitId| {
        l3_store::SnapshotId(
            store
                .session()
                .expect("s")
                .get_commit(c)
                .expect("c")
                .snapshot,
        )
    };
    let (a, b) = (snap(&root), snap(&child));
    let held = store.session().expect("session");
    c.bench_function("diff of two 266 KiB snapshots (one head changed)", |bch| {
        bch.iter(|| l3_store::diff(&store, &a, &b).expect("diff"))
    });
    drop(held);
}

criterion_group!(benches, chunks, history, small_commits);
criterion_main!(benches);
