//! Writing: stage chunks, tensors, snapshots, commits and data sets, then finish them in
//! one metadata transaction.
//!
//! Write order (store-format.md, "Crash safety"): chunk bytes are appended to this process's
//! pack and fsynced first; then one sled transaction records chunk locations, manifests,
//! snapshots, commits, indexes and ref moves together; then sled is flushed; only then is
//! the commit acknowledged. A crash before the flush leaves at most unreferenced pack bytes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;

use rayon::prelude::*;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

use crate::codec::{self, Encoding};
use crate::encode;
use crate::error::{Error, Result};
use crate::id::{chunk_id, ChunkId, CommitId, DatasetId, SnapshotId, TensorId};
use crate::record::{
    self, ChunkLoc, CommitRecord, DatasetRecord, MetaEntry, NamedTensor, PackRecord, RefLogRecord,
    SnapshotRecord, TensorRecord,
};
use crate::refs::{RefName, RefUpdate};
use crate::store::{kind, now_ms, object_key, Store};
use crate::{numeric, DType};

/// Where a tensor's raw bytes come from.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    Memory(&'a [u8]),
    /// `len` bytes of an open file starting at `offset`; read in chunk-sized pieces.
    File {
        file: &'a File,
        offset: u64,
    },
}

impl Source<'_> {
    fn read(&self, start: u64, len: usize) -> std::io::Result<std::borrow::Cow<'_, [u8]>> {
        match self {
            Source::Memory(bytes) => Ok(bytes[start as usize..start as usize + len].into()),
            Source::File { file, offset } => {
                let mut buf = vec![0u8; len];
                file.read_exact_at(&mut buf, offset + start)?;
                Ok(buf.into())
            }
        }
    }
}

/// One tensor to store.
#[derive(Clone, Copy)]
pub struct TensorInput<'a> {
    pub dtype: DType,
    pub shape: &'a [u64],
    pub source: Source<'a>,
}

/// A new commit to record.
#[derive(Clone, Debug)]
pub struct NewCommit {
    pub snapshot: SnapshotId,
    pub parents: Vec<CommitId>,
    pub author: String,
    /// Milliseconds since the Unix epoch; now when None.
    pub time_ms: Option<i64>,
    pub message: String,
    /// What produced the commit (serde JSON). Data set ids under `"data"` are indexed.
    pub record: serde_json::Value,
}

/// What a finished stage wrote.
#[derive(Clone, Debug, Default)]
pub struct Finished {
    /// Chunks written by this stage (not already in the store).
    pub new_chunks: u64,
    /// Raw bytes of those chunks.
    pub new_bytes: u64,
    /// Their bytes as stored in packs, after compression.
    pub stored_bytes: u64,
    /// Ref updates that lost a race and were written to their fallback ref instead:
    /// (wanted ref, fallback ref, the wanted ref's actual value).
    pub fallbacks: Vec<(String, String, Option<CommitId>)>,
}

/// A chunk's origin, so it can be written again if gc collects its twin mid-stage.
#[derive(Clone, Copy)]
struct ChunkOrigin {
    input: usize,
    start: u64,
    len: u32,
}

/// Objects waiting to be recorded. Nothing here is visible to other processes until `finish`.
pub struct Stage<'a> {
    store: &'a Store,
    /// The metadata session, kept across the steps of a small commit so the database is
    /// opened once; dropped before bulk chunk writes.
    session: Option<crate::store::Session<'a>>,
    inputs: Vec<TensorInput<'a>>,
    origins: HashMap<ChunkId, ChunkOrigin>,
    tensors: HashMap<TensorId, TensorRecord>,
    known_tensors: HashSet<TensorId>,
    new_chunks: HashMap<ChunkId, ChunkLoc>,
    snapshots: HashMap<SnapshotId, SnapshotRecord>,
    commits: Vec<(CommitId, CommitRecord, Vec<DatasetId>)>,
    datasets: Vec<(DatasetId, DatasetRecord)>,
    finished: Finished,
}

enum Abort {
    MissingChunks(Vec<ChunkId>),
    Fail(Error),
}

impl From<sled::Error> for Abort {
    fn from(e: sled::Error) -> Self {
        Abort::Fail(e.into())
    }
}

type TxResult<T> = std::result::Result<T, ConflictableTransactionError<Abort>>;

fn fail<T>(e: Error) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(Abort::Fail(e)))
}

impl<'a> Stage<'a> {
    pub fn new(store: &'a Store) -> Stage<'a> {
        Stage {
            store,
            session: None,
            inputs: Vec::new(),
            origins: HashMap::new(),
            tensors: HashMap::new(),
            known_tensors: HashSet::new(),
            new_chunks: HashMap::new(),
            snapshots: HashMap::new(),
            commits: Vec::new(),
            datasets: Vec::new(),
            finished: Finished::default(),
        }
    }

    /// Hashes tensors chunk by chunk (in parallel) and writes the chunks the store lacks.
    /// Memory stays within a few chunks per thread whatever the tensors' size.
    // Known limitation: there is no delta encoding against the parent's tensor; a dense update
    // that moves every weight stores the whole tensor again (compressed).
    pub fn add_tensors(&mut self, inputs: &[TensorInput<'a>]) -> Result<Vec<TensorId>> {
        let chunk_size = self.store.config().chunk_size as u64;
        let first_input = self.inputs.len();
        let mut pieces = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            let len = crate::byte_len(input.dtype, input.shape)
                .map_err(|e| Error::Invalid(e.to_string()))?;
            if let Source::Memory(bytes) = input.source {
                if bytes.len() as u64 != len {
                    return Err(Error::Invalid(format!(
                        "tensor of shape {:?} {} needs {len} bytes, got {}",
                        input.shape,
                        input.dtype,
                        bytes.len()
                    )));
                }
            }
            let mut start = 0;
            while start < len {
                let n = chunk_size.min(len - start) as u32;
                pieces.push((first_input + i, start, n));
                start += n as u64;
            }
        }
        self.inputs.extend_from_slice(inputs);

        // Hash every chunk.
        let all = &self.inputs;
        let hashed: Vec<ChunkId> = pieces
            .par_iter()
            .map(|&(input, start, len)| {
                let bytes = all[input]
                    .source
                    .read(start, len as usize)
                    .map_err(|e| Error::Invalid(format!("reading tensor bytes at {start}: {e}")))?;
                self.store.report(crate::Progress::Hashed(len as u64));
                Ok(chunk_id(&bytes))
            })
            .collect::<Result<_>>()?;

        let mut ids = Vec::with_capacity(inputs.len());
        let mut spans = Vec::with_capacity(inputs.len());
        let mut at = 0;
        for (i, input) in inputs.iter().enumerate() {
            let first = at;
            let mut chunks = Vec::new();
            while at < pieces.len() && pieces[at].0 == first_input + i {
                let (input_idx, start, len) = pieces[at];
                let cid = hashed[at];
                self.origins.entry(cid).or_insert(ChunkOrigin {
                    input: input_idx,
                    start,
                    len,
                });
                chunks.push(cid);
                at += 1;
            }
            spans.push(first..at);
            let id = encode::tensor_id(input.dtype, input.shape, &chunks);
            let byte_len = crate::byte_len(input.dtype, input.shape).expect("checked above");
            let rec = TensorRecord {
                dtype: input.dtype.code(),
                shape: input.shape.to_vec(),
                chunks: chunks.iter().map(|c| c.0).collect(),
                byte_len,
                norm_sq: f64::NAN,
            };
            self.tensors.entry(id).or_insert(rec);
            ids.push(id);
        }

        // The norm (kept for diffs) is computed only for float tensors the store lacks: a
        // re-import of known tensors reads every byte once, to hash it.
        let fresh: Vec<usize> = {
            if self.session.is_none() {
                self.session = Some(self.store.session()?);
            }
            let session = self.session.as_ref().expect("opened above");
            let mut fresh = Vec::new();
            for (i, id) in ids.iter().enumerate() {
                let rec = &self.tensors[id];
                let float = DType::from_code(rec.dtype).is_some_and(DType::is_float);
                if float && rec.norm_sq.is_nan() && session.tensor(id)?.is_none() {
                    fresh.push(i);
                }
            }
            fresh
        };
        let all = &self.inputs;
        let norms: Vec<(usize, f64)> = fresh
            .par_iter()
            .map(|&i| {
                let sum = spans[i]
                    .clone()
                    .into_par_iter()
                    .map(|p| {
                        let (input, start, len) = pieces[p];
                        let bytes = all[input].source.read(start, len as usize).map_err(|e| {
                            Error::Invalid(format!("reading tensor bytes at {start}: {e}"))
                        })?;
                        Ok(numeric::norm_sq(all[input].dtype, &bytes).unwrap_or(0.0))
                    })
                    .sum::<Result<f64>>()?;
                Ok((i, sum))
            })
            .collect::<Result<_>>()?;
        for (i, sum) in norms {
            if let Some(rec) = self.tensors.get_mut(&ids[i]) {
                rec.norm_sq = sum;
            }
        }

        // Ask the index which chunks it lacks (or holds only corrupt), then write those.
        let wanted: Vec<ChunkId> = {
            if self.session.is_none() {
                self.session = Some(self.store.session()?);
            }
            let session = self.session.as_ref().expect("opened above");
            let mut seen = HashSet::new();
            let mut wanted = Vec::new();
            // A chunk whose pack file is gone (deleted by hand, lost disk) counts as missing,
            // so importing the same bytes again repairs it.
            let mut pack_exists: HashMap<u64, bool> = HashMap::new();
            let packs = self.store.packs_dir();
            for id in &ids {
                for c in &self.tensors[id].chunks {
                    let c = ChunkId(*c);
                    if self.new_chunks.contains_key(&c) || !seen.insert(c) {
                        continue;
                    }
                    // One index read per chunk: this is the whole cost of a re-import.
                    let present = session.chunk_loc(&c)?.is_some_and(|loc| {
                        *pack_exists.entry(loc.pack).or_insert_with(|| {
                            packs.join(crate::pack::pack_file_name(loc.pack)).exists()
                        })
                    }) && !session.t.quarantine.contains_key(c.as_bytes())?;
                    if !present {
                        wanted.push(c);
                    }
                }
            }
            wanted
        };
        let total: u64 = pieces.iter().map(|p| p.2 as u64).sum();
        let wanted_bytes: u64 = wanted.iter().map(|c| self.origins[c].len as u64).sum();
        self.store
            .report(crate::Progress::Known(total.saturating_sub(wanted_bytes)));
        if wanted_bytes > 16 << 20 {
            // Other processes need not wait while this one writes much chunk data.
            self.session = None;
        }
        self.write_chunks(&wanted)?;
        Ok(ids)
    }

    /// Names a tensor the caller knows is already stored (unchanged since the parent): it is
    /// neither hashed nor written. `finish` fails if it is not in the store.
    pub fn add_known_tensor(&mut self, id: TensorId) {
        if !self.tensors.contains_key(&id) {
            self.known_tensors.insert(id);
        }
    }

    fn write_chunks(&mut self, wanted: &[ChunkId]) -> Result<()> {
        let compression = self.store.config().compression;
        let batch = rayon::current_num_threads().max(1) * 4;
        for group in wanted.chunks(batch) {
            let encoded: Vec<(ChunkId, Encoding, u32, Vec<u8>)> = group
                .par_iter()
                .map(|cid| {
                    let o = self.origins[cid];
                    let input = &self.inputs[o.input];
                    let raw = input.source.read(o.start, o.len as usize).map_err(|e| {
                        Error::Invalid(format!("reading tensor bytes at {}: {e}", o.start))
                    })?;
                    if chunk_id(&raw) != *cid {
                        return Err(Error::Invalid(format!(
                            "tensor bytes changed while being stored (chunk {})",
                            cid.short(12)
                        )));
                    }
                    let (enc, stored) = codec::encode(&raw, input.dtype, compression);
                    Ok((*cid, enc, o.len, stored))
                })
                .collect::<Result<_>>()?;
            for (cid, enc, raw_len, stored) in encoded {
                let loc = self
                    .store
                    .with_writer(|w| w.append(&cid, enc, raw_len, &stored))?;
                self.store.report(crate::Progress::Written(raw_len as u64));
                self.finished.new_chunks += 1;
                self.finished.new_bytes += raw_len as u64;
                self.finished.stored_bytes += stored.len() as u64;
                self.new_chunks.insert(cid, loc);
            }
        }
        Ok(())
    }

    /// Records a snapshot of named tensors (staged or already stored) with string metadata.
    pub fn add_snapshot(
        &mut self,
        tensors: &BTreeMap<String, TensorId>,
        metadata: &BTreeMap<String, String>,
    ) -> Result<SnapshotId> {
        let id = encode::snapshot_id(tensors, metadata);
        let mut logical_bytes = 0;
        if self.session.is_none() {
            self.session = Some(self.store.session()?);
        }
        let session = self.session.as_ref().expect("opened above");
        for (name, tid) in tensors {
            logical_bytes += match self.tensors.get(tid) {
                Some(rec) => rec.byte_len,
                None => {
                    let rec = session.tensor(tid)?.ok_or_else(|| {
                        Error::Invalid(format!("tensor \"{name}\" ({}) is not in the store", tid))
                    })?;
                    rec.byte_len
                }
            };
        }
        let rec = SnapshotRecord {
            tensors: tensors
                .iter()
                .map(|(name, t)| NamedTensor {
                    name: name.clone(),
                    tensor: t.0,
                })
                .collect(),
            metadata: metadata
                .iter()
                .map(|(k, v)| MetaEntry {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            logical_bytes,
        };
        self.snapshots.insert(id, rec);
        Ok(id)
    }

    /// Records a data set: a named snapshot of tensors (inputs, labels).
    pub fn add_dataset(&mut self, name: &str, snapshot: SnapshotId) -> Result<DatasetId> {
        crate::refs::check_name("data set", name)?;
        let id = encode::dataset_id(name, &snapshot);
        let rec = DatasetRecord {
            name: name.to_string(),
            snapshot: snapshot.0,
            time_ms: now_ms(),
        };
        self.datasets.push((id, rec));
        Ok(id)
    }

    /// Records a commit; its parents must be staged or stored.
    pub fn add_commit(&mut self, c: NewCommit) -> Result<CommitId> {
        let time_ms = c.time_ms.unwrap_or_else(now_ms);
        let record_json = serde_json::to_string(&c.record).expect("JSON values serialize");
        let id = encode::commit_id(
            &c.snapshot,
            &c.parents,
            &c.author,
            time_ms,
            &c.message,
            &record_json,
        );
        let mut generation = 0;
        if self.session.is_none() {
            self.session = Some(self.store.session()?);
        }
        let session = self.session.as_ref().expect("opened above");
        for p in &c.parents {
            let staged = self
                .commits
                .iter()
                .find(|(id, _, _)| id == p)
                .map(|(_, r, _)| r.clone());
            let parent = match staged {
                Some(r) => r,
                None => session.get_commit(p)?,
            };
            generation = generation.max(parent.generation);
        }
        let data = crate::lineage::record_datasets(&c.record);
        let rec = CommitRecord {
            snapshot: c.snapshot.0,
            parents: c.parents.iter().map(|p| p.0).collect(),
            author: c.author,
            time_ms,
            message: c.message,
            record_json,
            generation: generation + 1,
        };
        self.commits.push((id, rec, data));
        Ok(id)
    }

    /// Makes everything staged durable and visible, then applies the ref updates, all in one
    /// transaction. Chunks that gc collected meanwhile are written again and the transaction
    /// retried.
    pub fn finish(mut self, updates: &[RefUpdate]) -> Result<Finished> {
        let store = self.store;
        for attempt in 0.. {
            store.sync_writer()?;
            let s = match self.session.take() {
                Some(s) => s,
                None => store.session()?,
            };
            let reflog_seqs = updates
                .iter()
                .map(|_| s.t.db.generate_id())
                .collect::<sled::Result<Vec<_>>>()?;
            self.record_chunk_locations(&s)?;
            let outcome = {
                let _shared = store.collect_lock().read().expect("collect lock poisoned");
                if crate::faults::fires(crate::faults::Fault::MetaCommit) {
                    return Err(Error::io(
                        store.root().join("meta"),
                        crate::faults::device_error(),
                    ));
                }
                let t = &s.t;
                let trees = (
                    &t.objects,
                    &t.chunks,
                    &t.refs,
                    &t.reflog,
                    &t.children,
                    &t.data_index,
                    &t.datasets,
                );
                let res = trees.transaction(|trees| self.apply(trees, updates, &reflog_seqs));
                match res {
                    Ok(fallbacks) => {
                        t.db.flush()?;
                        Ok(fallbacks)
                    }
                    Err(TransactionError::Abort(a)) => Err(a),
                    Err(TransactionError::Storage(e)) => Err(Abort::Fail(e.into())),
                }
            };
            drop(s);
            match outcome {
                Ok(fallbacks) => {
                    self.finished.fallbacks = fallbacks;
                    return Ok(self.finished);
                }
                Err(Abort::MissingChunks(missing)) if attempt < 3 => {
                    tracing::warn!(
                        count = missing.len(),
                        "chunks collected mid-commit; rewriting"
                    );
                    for c in &missing {
                        if !self.origins.contains_key(c) {
                            return Err(Error::MissingChunk(*c));
                        }
                    }
                    self.write_chunks(&missing)?;
                }
                Err(Abort::MissingChunks(missing)) => {
                    return Err(Error::MissingChunk(missing[0]));
                }
                Err(Abort::Fail(e)) => return Err(e),
            }
        }
        unreachable!("the loop returns")
    }

    /// Records where the new chunks are, in batches before the commit transaction, so the
    /// transaction stays small however many chunks a snapshot has. The entries point at
    /// fsynced pack bytes; if the commit then fails they are unreferenced and gc drops them.
    fn record_chunk_locations(&self, s: &crate::store::Session<'_>) -> Result<()> {
        let t = &s.t;
        let packs_dir = self.store.packs_dir();
        let mut packs = HashSet::new();
        let new: Vec<(&ChunkId, &ChunkLoc)> = self.new_chunks.iter().collect();
        for group in new.chunks(4096) {
            let mut batch = sled::Batch::default();
            let mut cleared = sled::Batch::default();
            for (cid, loc) in group {
                // Replace an entry only when its bytes are known bad or its pack is gone.
                let bad = t.quarantine.contains_key(cid.as_bytes())?;
                let gone = match t.chunks.get(cid.as_bytes())? {
                    None => true,
                    Some(v) => record::decode::<ChunkLoc>(&v).map_or(true, |old| {
                        !packs_dir
                            .join(crate::pack::pack_file_name(old.pack))
                            .exists()
                    }),
                };
                if bad || gone {
                    batch.insert(cid.as_bytes(), record::encode(*loc));
                    cleared.remove(cid.as_bytes());
                    packs.insert(loc.pack);
                }
            }
            for pack in &packs {
                let key = pack.to_be_bytes();
                if !t.packs.contains_key(key)? {
                    t.packs.insert(
                        key,
                        record::encode(&PackRecord {
                            created_ms: now_ms(),
                        }),
                    )?;
                }
            }
            t.chunks.apply_batch(batch)?;
            t.quarantine.apply_batch(cleared)?;
        }
        Ok(())
    }

    #[allow(clippy::type_complexity)]
    fn apply(
        &self,
        (objects, chunks, refs, reflog, children, data_index, datasets): &(
            TransactionalTree,
            TransactionalTree,
            TransactionalTree,
            TransactionalTree,
            TransactionalTree,
            TransactionalTree,
            TransactionalTree,
        ),
        updates: &[RefUpdate],
        reflog_seqs: &[u64],
    ) -> TxResult<Vec<(String, String, Option<CommitId>)>> {
        // Tensors: every chunk they name must be indexed now.
        let mut missing = Vec::new();
        for (tid, rec) in &self.tensors {
            for c in &rec.chunks {
                if chunks.get(c)?.is_none() {
                    missing.push(ChunkId(*c));
                }
            }
            let key = object_key(kind::TENSOR, &tid.0);
            if objects.get(key)?.is_none() {
                objects.insert(&key[..], record::encode(rec))?;
            }
        }
        if !missing.is_empty() {
            missing.sort();
            missing.dedup();
            return Err(ConflictableTransactionError::Abort(Abort::MissingChunks(
                missing,
            )));
        }
        for tid in &self.known_tensors {
            if objects.get(object_key(kind::TENSOR, &tid.0))?.is_none() {
                return fail(Error::missing("tensor", tid));
            }
        }

        for (sid, rec) in &self.snapshots {
            for t in &rec.tensors {
                let staged = self.tensors.contains_key(&TensorId(t.tensor));
                if !staged && objects.get(object_key(kind::TENSOR, &t.tensor))?.is_none() {
                    return fail(Error::missing("tensor", TensorId(t.tensor)));
                }
            }
            objects.insert(&object_key(kind::SNAPSHOT, &sid.0)[..], record::encode(rec))?;
        }

        for (did, rec) in &self.datasets {
            let snap = SnapshotId(rec.snapshot);
            if !self.snapshots.contains_key(&snap)
                && objects.get(object_key(kind::SNAPSHOT, &snap.0))?.is_none()
            {
                return fail(Error::missing("snapshot", snap));
            }
            objects.insert(&object_key(kind::DATASET, &did.0)[..], record::encode(rec))?;
            datasets.insert(rec.name.as_bytes(), &did.0)?;
        }

        for (cid, rec, data) in &self.commits {
            let snap = SnapshotId(rec.snapshot);
            if !self.snapshots.contains_key(&snap)
                && objects.get(object_key(kind::SNAPSHOT, &snap.0))?.is_none()
            {
                return fail(Error::missing("snapshot", snap));
            }
            for p in &rec.parents {
                let staged = self.commits.iter().any(|(id, _, _)| id.0 == *p);
                if !staged && objects.get(object_key(kind::COMMIT, p))?.is_none() {
                    return fail(Error::missing("commit", CommitId(*p)));
                }
                children.insert([&p[..], &cid.0[..]].concat(), &[])?;
            }
            for d in data {
                data_index.insert([&d.0[..], &cid.0[..]].concat(), &[])?;
            }
            objects.insert(&object_key(kind::COMMIT, &cid.0)[..], record::encode(rec))?;
        }

        // Refs last: a branch moves by compare-and-swap on the value it was expected to have.
        let mut fallbacks = Vec::new();
        for (u, seq) in updates.iter().zip(reflog_seqs) {
            let current = refs
                .get(u.name.key())?
                .and_then(|v| CommitId::from_slice(&v));
            let mut target = u.name.clone();
            if let RefName::Tag(tag) = &u.name {
                match current {
                    Some(c) if c == u.new => continue,
                    Some(_) => return fail(Error::TagExists(tag.clone())),
                    None => {}
                }
            } else if !u.expected.matches(current) {
                match &u.fallback {
                    Some(fb) => {
                        fallbacks.push((u.name.to_string(), fb.clone(), current));
                        target = RefName::Branch(fb.clone());
                    }
                    None => {
                        return fail(Error::conflict(
                            u.name.short_name(),
                            u.expected.value(),
                            current,
                        ))
                    }
                }
            }
            let old = refs
                .get(target.key())?
                .and_then(|v| CommitId::from_slice(&v));
            if old.is_none() {
                // A new ref must not share its name with a ref of the other kind.
                let other = match &target {
                    RefName::Branch(n) => RefName::Tag(n.clone()),
                    RefName::Tag(n) => RefName::Branch(n.clone()),
                };
                if refs.get(other.key())?.is_some() {
                    return fail(Error::Invalid(format!(
                        "cannot create {target}: a {} of that name exists",
                        if matches!(other, RefName::Tag(_)) {
                            "tag"
                        } else {
                            "branch"
                        }
                    )));
                }
            }
            refs.insert(target.key(), &u.new.0)?;
            if let RefName::Branch(branch) = &target {
                let entry = RefLogRecord {
                    old: old.map_or([0; 32], |c| c.0),
                    new: u.new.0,
                    time_ms: now_ms(),
                    message: u.message.clone(),
                };
                reflog.insert(
                    crate::refs::reflog_key(branch, *seq),
                    record::encode(&entry),
                )?;
            }
        }
        Ok(fallbacks)
    }
}
