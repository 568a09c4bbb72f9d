//! Garbage collection: keep what is reachable, reclaim the rest, compact packs.
//!
//! Roots: every branch and tag, reflog entries inside the retention window, unexpired pins
//! (a worker pins what it fetched) and every named data set. Mark and sweep of the metadata
//! run in one session (other processes wait; threads of this process that are finishing a
//! commit are excluded by the collect lock). Packs are then compacted outside the session:
//! live chunks are copied to a new pack, the index is pointed at the copies, and only then is
//! the old pack deleted. A pack locked by a writer is never touched, so chunks an in-flight
//! writer has staged survive; a writer whose deduplicated chunk was collected meanwhile
//! notices in its commit transaction and writes the chunk again.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::id::{ChunkId, CommitId, DatasetId, SnapshotId, TensorId};
use crate::pack::{self, PackWriter};
use crate::record::{
    self, ChunkLoc, CommitRecord, DatasetRecord, PackRecord, PinRecord, RefLogRecord,
    SnapshotRecord, TensorRecord,
};
use crate::store::{fresh_u64, kind, now_ms, object_key, Store};

#[derive(Clone, Debug)]
pub struct GcOptions {
    /// Report what would go; change nothing.
    pub dry_run: bool,
    /// Reflog entries younger than this keep their commits alive.
    pub reflog_retention: Duration,
    /// Rewrite a pack when at least this share of its bytes is garbage.
    pub compact_threshold: f64,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            dry_run: false,
            reflog_retention: Duration::from_secs(30 * 24 * 3600),
            compact_threshold: 0.25,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub commits_removed: u64,
    pub snapshots_removed: u64,
    pub tensors_removed: u64,
    pub datasets_removed: u64,
    pub chunks_removed: u64,
    /// Bytes of pack files freed (or that would be freed).
    pub bytes_reclaimed: u64,
    pub packs_rewritten: u64,
    pub packs_deleted: u64,
    /// Packs skipped because a writer holds them.
    pub packs_in_use: u64,
}

fn pack_locked(path: &std::path::Path) -> bool {
    match File::open(path) {
        Ok(f) => match f.try_lock() {
            Ok(()) => false,
            Err(fs::TryLockError::WouldBlock) => true,
            Err(fs::TryLockError::Error(_)) => true,
        },
        Err(_) => false,
    }
}

// Known limitation: mark and sweep hold the metadata database for their whole run, so other
// processes wait that long (about a second for ~100k chunks), and compaction scans the whole
// chunk index once.
pub fn gc(store: &Store, opts: &GcOptions) -> Result<GcReport> {
    let mut report = GcReport {
        dry_run: opts.dry_run,
        ..GcReport::default()
    };
    let now = now_ms();
    let horizon = now - opts.reflog_retention.as_millis() as i64;

    // Mark and sweep the metadata.
    let live_chunks_by_pack: HashMap<u64, Vec<(ChunkId, ChunkLoc)>> = {
        let _exclusive = store.collect_lock().write().expect("collect lock poisoned");
        let s = store.session()?;
        let t = &s.t;

        let mut roots: Vec<CommitId> = Vec::new();
        for item in t.refs.iter() {
            let (_, v) = item?;
            roots.extend(CommitId::from_slice(&v));
        }
        let mut old_reflog = Vec::new();
        for item in t.reflog.iter() {
            let (k, v) = item?;
            let r: RefLogRecord = record::decode(&v)?;
            if r.time_ms >= horizon {
                for c in [r.old, r.new] {
                    if c != [0; 32] {
                        roots.push(CommitId(c));
                    }
                }
            } else {
                old_reflog.push(k);
            }
        }
        let mut expired_pins = Vec::new();
        for item in t.pins.iter() {
            let (k, v) = item?;
            let p: PinRecord = record::decode(&v)?;
            if p.expires_ms >= now {
                roots.push(CommitId(p.commit));
            } else {
                expired_pins.push(k);
            }
        }

        // Queued and running jobs keep the commit they start from (`parent` or `job.parent`
        // in their spec), so a job never finds its parent collected.
        for item in t.jobs.iter() {
            let (_, v) = item?;
            let job: crate::record::JobRecord = record::decode(&v)?;
            if job.state <= 1 {
                let spec: serde_json::Value =
                    serde_json::from_str(&job.spec_json).unwrap_or(serde_json::Value::Null);
                let parent = spec.pointer("/job/parent").or_else(|| spec.get("parent"));
                roots.extend(
                    parent
                        .and_then(|p| p.as_str())
                        .and_then(|p| CommitId::from_hex(p).ok()),
                );
            }
        }
        let mut live_commits = HashSet::new();
        let mut live_snapshots = HashSet::new();
        let mut live_datasets: HashSet<DatasetId> = HashSet::new();
        for item in t.datasets.iter() {
            let (_, v) = item?;
            live_datasets.extend(DatasetId::from_slice(&v));
        }
        let mut stack = roots;
        while let Some(c) = stack.pop() {
            if !live_commits.insert(c) {
                continue;
            }
            let Some(bytes) = t.objects.get(object_key(kind::COMMIT, &c.0))? else {
                continue; // fsck reports dangling refs; gc must not fail on them
            };
            let rec: CommitRecord = record::decode(&bytes)?;
            live_snapshots.insert(SnapshotId(rec.snapshot));
            let json: serde_json::Value =
                serde_json::from_str(&rec.record_json).unwrap_or(serde_json::Value::Null);
            live_datasets.extend(crate::lineage::record_datasets(&json));
            stack.extend(rec.parents.into_iter().map(CommitId));
        }
        for d in &live_datasets {
            if let Some(bytes) = t.objects.get(object_key(kind::DATASET, &d.0))? {
                let rec: DatasetRecord = record::decode(&bytes)?;
                live_snapshots.insert(SnapshotId(rec.snapshot));
            }
        }
        let mut live_tensors = HashSet::new();
        for sid in &live_snapshots {
            if let Some(bytes) = t.objects.get(object_key(kind::SNAPSHOT, &sid.0))? {
                let rec: SnapshotRecord = record::decode(&bytes)?;
                live_tensors.extend(rec.tensors.iter().map(|e| TensorId(e.tensor)));
            }
        }
        let mut live_chunks = HashSet::new();
        for tid in &live_tensors {
            if let Some(bytes) = t.objects.get(object_key(kind::TENSOR, &tid.0))? {
                let rec: TensorRecord = record::decode(&bytes)?;
                live_chunks.extend(rec.chunks.iter().map(|c| ChunkId(*c)));
            }
        }

        // Sweep.
        let mut dead_objects = Vec::new();
        for item in t.objects.iter() {
            let (k, _) = item?;
            let id: [u8; 32] = k[1..].try_into().unwrap_or([0; 32]);
            let live = match k[0] {
                kind::COMMIT => live_commits.contains(&CommitId(id)),
                kind::SNAPSHOT => live_snapshots.contains(&SnapshotId(id)),
                kind::TENSOR => live_tensors.contains(&TensorId(id)),
                kind::DATASET => live_datasets.contains(&DatasetId(id)),
                _ => true,
            };
            if !live {
                match k[0] {
                    kind::COMMIT => report.commits_removed += 1,
                    kind::SNAPSHOT => report.snapshots_removed += 1,
                    kind::TENSOR => report.tensors_removed += 1,
                    _ => report.datasets_removed += 1,
                }
                dead_objects.push(k);
            }
        }
        let mut by_pack: HashMap<u64, Vec<(ChunkId, ChunkLoc)>> = HashMap::new();
        let mut dead_chunks = Vec::new();
        for item in t.chunks.iter() {
            let (k, v) = item?;
            let id = ChunkId::from_slice(&k).expect("chunk keys hold 32 bytes");
            let loc: ChunkLoc = record::decode(&v)?;
            if live_chunks.contains(&id) {
                by_pack.entry(loc.pack).or_default().push((id, loc));
            } else {
                report.chunks_removed += 1;
                dead_chunks.push(k);
            }
        }
        let mut dead_edges = Vec::new();
        for item in t.children.iter() {
            let (k, _) = item?;
            let child = CommitId::from_slice(&k[32..]).expect("64-byte key");
            if !live_commits.contains(&child) {
                dead_edges.push(k);
            }
        }
        let mut dead_data_edges = Vec::new();
        for item in t.data_index.iter() {
            let (k, _) = item?;
            let commit = CommitId::from_slice(&k[32..]).expect("64-byte key");
            if !live_commits.contains(&commit) {
                dead_data_edges.push(k);
            }
        }

        if !opts.dry_run {
            if crate::faults::fires(crate::faults::Fault::MetaCommit) {
                return Err(Error::io(
                    store.root().join("meta"),
                    crate::faults::device_error(),
                ));
            }
            for k in dead_objects {
                t.objects.remove(k)?;
            }
            for k in dead_chunks {
                t.chunks.remove(&k)?;
                t.quarantine.remove(&k)?;
            }
            for k in dead_edges {
                t.children.remove(k)?;
            }
            for k in dead_data_edges {
                t.data_index.remove(k)?;
            }
            for k in old_reflog {
                t.reflog.remove(k)?;
            }
            for k in expired_pins {
                t.pins.remove(k)?;
            }
            t.db.flush()?;
        }
        by_pack
    };

    // Compact: rewrite packs with much garbage, delete packs with none live. A pack's lock is
    // checked first: once a pack is seen unlocked its writer is done with it (a writer
    // registers and indexes its chunks before it unlocks), so no index entry can start
    // pointing at it afterwards and the live map read after that is exact.
    let dir = store.packs_dir();
    let own = store.writer_pack();
    let mut candidates = Vec::new();
    let entries = fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
        if name.ends_with(".tmp") {
            let age = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| m.elapsed().ok())
                .unwrap_or_default();
            if age > Duration::from_secs(3600) && !pack_locked(&path) {
                report.bytes_reclaimed += size;
                if !opts.dry_run {
                    let _ = fs::remove_file(&path);
                }
            }
            continue;
        }
        let Some(id) = pack::parse_pack_file_name(&name) else {
            continue;
        };
        if Some(id) == own || pack_locked(&path) {
            report.packs_in_use += 1;
            continue;
        }
        candidates.push((id, path, size));
    }
    let live_chunks_by_pack = if opts.dry_run {
        live_chunks_by_pack
    } else {
        let _exclusive = store.collect_lock().write().expect("collect lock poisoned");
        let s = store.session()?;
        let mut by_pack: HashMap<u64, Vec<(ChunkId, ChunkLoc)>> = HashMap::new();
        for item in s.t.chunks.iter() {
            let (k, v) = item?;
            let loc: ChunkLoc = record::decode(&v)?;
            let id = ChunkId::from_slice(&k).expect("chunk keys hold 32 bytes");
            by_pack.entry(loc.pack).or_default().push((id, loc));
        }
        by_pack
    };
    let registered = registered_packs(store)?;
    for (id, path, size) in candidates {
        let live = live_chunks_by_pack
            .get(&id)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let live_bytes: u64 = live
            .iter()
            .map(|(_, l)| l.stored_len as u64 + pack::ENTRY_HEADER_LEN)
            .sum::<u64>()
            + pack::PACK_HEADER_LEN;
        if !registered.contains(&id) && live.is_empty() {
            // An orphan: a writer that crashed before its commit transaction.
            report.bytes_reclaimed += size;
            report.packs_deleted += 1;
            if !opts.dry_run {
                let _ = fs::remove_file(&path);
            }
            continue;
        }
        let garbage = size.saturating_sub(live_bytes);
        if garbage == 0 || (garbage as f64) < opts.compact_threshold * size as f64 {
            continue;
        }
        if opts.dry_run {
            report.bytes_reclaimed += garbage;
            continue;
        }
        report.bytes_reclaimed += garbage;
        if live.is_empty() {
            unregister_and_delete(store, id, &path, &[], None)?;
            report.packs_deleted += 1;
        } else {
            let mut writer =
                PackWriter::create(&dir, fresh_u64()).map_err(|e| Error::io(&dir, e))?;
            let mut moved = Vec::with_capacity(live.len());
            for (cid, loc) in live {
                let raw_stored = read_stored(&path, loc)?;
                let new = writer
                    .append(
                        cid,
                        crate::Encoding::from_u8(loc.encoding).unwrap_or(crate::Encoding::Raw),
                        loc.raw_len,
                        &raw_stored,
                    )
                    .map_err(|e| Error::io(&writer.path, e))?;
                moved.push((*cid, *loc, new));
            }
            writer.sync().map_err(|e| Error::io(&writer.path, e))?;
            unregister_and_delete(store, id, &path, &moved, Some(writer.id))?;
            report.packs_rewritten += 1;
        }
    }
    store.forget_open_packs();
    Ok(report)
}

fn registered_packs(store: &Store) -> Result<HashSet<u64>> {
    let s = store.session()?;
    let mut out = HashSet::new();
    for item in s.t.packs.iter() {
        let (k, _) = item?;
        out.insert(u64::from_be_bytes(k.as_ref().try_into().unwrap_or([0; 8])));
    }
    Ok(out)
}

fn read_stored(path: &std::path::Path, loc: &ChunkLoc) -> Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = vec![0u8; loc.stored_len as usize];
    f.read_exact_at(&mut buf, loc.offset)
        .map_err(|e| Error::io(path, e))?;
    Ok(buf)
}

/// Points moved chunks at their copies, registers the new pack, forgets the old one, makes
/// that durable, and only then deletes the old file.
fn unregister_and_delete(
    store: &Store,
    old: u64,
    path: &std::path::Path,
    moved: &[(ChunkId, ChunkLoc, ChunkLoc)],
    new_pack: Option<u64>,
) -> Result<()> {
    {
        let _exclusive = store.collect_lock().write().expect("collect lock poisoned");
        let s = store.session()?;
        for (cid, was, now) in moved {
            let current = s.chunk_loc(cid)?;
            if current.as_ref() == Some(was) {
                s.t.chunks.insert(cid.as_bytes(), record::encode(now))?;
            }
        }
        if let Some(p) = new_pack {
            s.t.packs.insert(
                p.to_be_bytes(),
                record::encode(&PackRecord {
                    created_ms: now_ms(),
                }),
            )?;
        }
        s.t.packs.remove(old.to_be_bytes())?;
        s.t.db.flush()?;
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}
