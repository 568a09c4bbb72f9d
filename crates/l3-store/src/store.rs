//! The store: a directory with a config file, a sled metadata database and pack files.
//!
//! sled locks its database for one process. Many processes share a store by holding the
//! database only for short sessions: a session takes the store's `LOCK` file (waiting with
//! backoff up to the configured bound), opens sled, and closes both when the last session of
//! the process ends. Bulk chunk I/O happens outside sessions.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::codec::Compression;
use crate::error::{Error, Result};
use crate::id::{ChunkId, CommitId, DatasetId, SnapshotId, TensorId};
use crate::pack::{PackReader, PackWriter};
use crate::record::{self, ChunkLoc, CommitRecord, DatasetRecord, SnapshotRecord, TensorRecord};
use crate::DType;

/// The format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
/// The chunk size a new store gets unless told otherwise (store-format.md, "Chunking").
pub const DEFAULT_CHUNK_SIZE: u32 = 64 * 1024;
pub const CONFIG_FILE: &str = "l3-store";
const PACK_ROLLOVER: u64 = 1 << 30;

/// Object kinds in the `objects` tree: the first byte of the key.
pub(crate) mod kind {
    pub const TENSOR: u8 = b'T';
    pub const SNAPSHOT: u8 = b'S';
    pub const COMMIT: u8 = b'K';
    pub const DATASET: u8 = b'D';
}

pub(crate) fn object_key(kind: u8, id: &[u8; 32]) -> [u8; 33] {
    let mut key = [0u8; 33];
    key[0] = kind;
    key[1..].copy_from_slice(id);
    key
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Settings fixed when a store is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    pub chunk_size: u32,
    pub compression: Compression,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            chunk_size: DEFAULT_CHUNK_SIZE,
            compression: Compression::Zstd { level: 1 },
        }
    }
}

impl StoreConfig {
    fn render(&self) -> String {
        let compression = match self.compression {
            Compression::None => "none".to_string(),
            Compression::Zstd { level } => format!("zstd:{level}"),
        };
        format!(
            "l3 store\nformat {FORMAT_VERSION}\nchunk-size {}\ncompression {compression}\n",
            self.chunk_size
        )
    }

    fn parse(path: &Path, text: &str) -> Result<StoreConfig> {
        let bad = |message: String| Error::BadConfig {
            path: path.to_path_buf(),
            message,
        };
        let mut lines = text.lines();
        if lines.next() != Some("l3 store") {
            return Err(bad("config file does not start with \"l3 store\"".into()));
        }
        let mut fields = HashMap::new();
        for line in lines.filter(|l| !l.trim().is_empty()) {
            let (k, v) = line
                .split_once(' ')
                .ok_or_else(|| bad(format!("bad line {line:?}")))?;
            fields.insert(k, v);
        }
        let version: u32 = fields
            .get("format")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bad("no format version".into()))?;
        if version > FORMAT_VERSION {
            return Err(bad(format!(
                "format version {version} is newer than this build reads ({FORMAT_VERSION})"
            )));
        }
        let chunk_size = fields
            .get("chunk-size")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bad("no chunk size".into()))?;
        let compression = match fields.get("compression").copied() {
            Some("none") => Compression::None,
            Some(z) if z.starts_with("zstd:") => Compression::Zstd {
                level: z[5..]
                    .parse()
                    .map_err(|_| bad(format!("bad compression {z:?}")))?,
            },
            other => return Err(bad(format!("bad compression {other:?}"))),
        };
        let config = StoreConfig {
            chunk_size,
            compression,
        };
        config.validate().map_err(|e| bad(e.to_string()))?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<()> {
        if self.chunk_size < 1024
            || self.chunk_size > (1 << 30)
            || !self.chunk_size.is_multiple_of(8)
        {
            return Err(Error::Invalid(format!(
                "chunk size {} must be a multiple of 8 between 1 KiB and 1 GiB",
                self.chunk_size
            )));
        }
        Ok(())
    }
}

/// What long operations report as they go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Raw bytes hashed (import, commit).
    Hashed(u64),
    /// Raw bytes of chunks the store already had: what dedup saved.
    Known(u64),
    /// Raw bytes of chunks the store lacked, now written.
    Written(u64),
    /// Bytes read back (export).
    Read(u64),
}

/// A progress callback; called from several threads.
pub type ProgressFn = std::sync::Arc<dyn Fn(Progress) + Send + Sync>;

/// How long a session waits for a store another process holds.
#[derive(Clone, Copy, Debug)]
pub struct StoreOptions {
    pub lock_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            lock_timeout: Duration::from_secs(30),
        }
    }
}

/// The sled trees of one open database. Every key and value is described in store-format.md.
#[derive(Clone)]
pub(crate) struct Trees {
    pub db: sled::Db,
    pub meta: sled::Tree,
    pub objects: sled::Tree,
    pub chunks: sled::Tree,
    pub refs: sled::Tree,
    pub reflog: sled::Tree,
    pub children: sled::Tree,
    pub datasets: sled::Tree,
    pub data_index: sled::Tree,
    pub pins: sled::Tree,
    pub packs: sled::Tree,
    pub jobs: sled::Tree,
    pub quarantine: sled::Tree,
}

impl Trees {
    fn open(db: sled::Db) -> sled::Result<Trees> {
        Ok(Trees {
            meta: db.open_tree("meta")?,
            objects: db.open_tree("objects")?,
            chunks: db.open_tree("chunks")?,
            refs: db.open_tree("refs")?,
            reflog: db.open_tree("reflog")?,
            children: db.open_tree("children")?,
            datasets: db.open_tree("datasets")?,
            data_index: db.open_tree("data_index")?,
            pins: db.open_tree("pins")?,
            packs: db.open_tree("packs")?,
            jobs: db.open_tree("jobs")?,
            quarantine: db.open_tree("quarantine")?,
            db,
        })
    }
}

struct OpenDb {
    trees: Trees,
    _lock: File,
}

#[derive(Default)]
struct Slot {
    open: Option<OpenDb>,
    users: usize,
}

struct Shared {
    slot: Mutex<Slot>,
    /// Writers finishing a commit take this shared; gc's mark-and-sweep takes it exclusive,
    /// so threads of one process never interleave the two (other processes are kept apart by
    /// the session lock itself).
    pub(crate) collect: RwLock<()>,
    writer: Mutex<Option<PackWriter>>,
    progress: RwLock<Option<ProgressFn>>,
    /// Packs this process filled; held (and so locked) until `release_writer`.
    full: Mutex<Vec<PackWriter>>,
    reader: PackReader,
}

/// A handle on one store directory. Cheap to clone; safe to share between threads.
#[derive(Clone)]
pub struct Store {
    root: PathBuf,
    config: StoreConfig,
    options: StoreOptions,
    shared: Arc<Shared>,
}

/// A session: the metadata database, held open for a short while.
pub struct Session<'s> {
    store: &'s Store,
    pub(crate) t: Trees,
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let mut slot = self
            .store
            .shared
            .slot
            .lock()
            .expect("session slot poisoned");
        slot.users -= 1;
        if slot.users == 0 {
            if let Some(open) = slot.open.take() {
                // Nothing acknowledged depends on this flush (writers flush before they
                // acknowledge); it only makes a clean close quick to reopen.
                let _ = open.trees.db.flush();
            }
        }
    }
}

impl Store {
    /// Creates a new, empty store in `dir` (created if absent, must not hold a store).
    pub fn init(dir: impl AsRef<Path>, config: StoreConfig) -> Result<Store> {
        let root = dir.as_ref().to_path_buf();
        config.validate()?;
        let config_path = root.join(CONFIG_FILE);
        if config_path.exists() {
            return Err(Error::AlreadyAStore { path: root });
        }
        fs::create_dir_all(root.join("packs")).map_err(|e| Error::io(&root, e))?;

        // The config file appears last and atomically: a directory without it is not a store.
        let tmp = root.join(format!("{CONFIG_FILE}.tmp"));
        fs::write(&tmp, config.render()).map_err(|e| Error::io(&tmp, e))?;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(&tmp, e))?;
        let store = Store::from_parts(root.clone(), config, StoreOptions::default());
        {
            let s = store.session()?;
            s.t.meta.insert("format", &FORMAT_VERSION.to_le_bytes())?;
            s.t.meta
                .insert("chunk-size", &config.chunk_size.to_le_bytes())?;
            s.t.meta.insert("HEAD", "main")?;
            s.t.db.flush()?;
        }
        fs::rename(&tmp, &config_path).map_err(|e| Error::io(&config_path, e))?;
        File::open(&root)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(&root, e))?;
        Ok(store)
    }

    /// Opens an existing store.
    pub fn open(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        let root = dir.as_ref().to_path_buf();
        let config_path = root.join(CONFIG_FILE);
        let text = match fs::read_to_string(&config_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotAStore(root));
            }
            Err(e) => return Err(Error::io(config_path, e)),
        };
        let config = StoreConfig::parse(&config_path, &text)?;
        Ok(Store::from_parts(root, config, options))
    }

    fn from_parts(root: PathBuf, config: StoreConfig, options: StoreOptions) -> Store {
        let shared = Shared {
            slot: Mutex::new(Slot::default()),
            collect: RwLock::new(()),
            writer: Mutex::new(None),
            progress: RwLock::new(None),
            full: Mutex::new(Vec::new()),
            reader: PackReader::default(),
        };
        Store {
            root,
            config,
            options,
            shared: Arc::new(shared),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config(&self) -> StoreConfig {
        self.config
    }

    pub(crate) fn packs_dir(&self) -> PathBuf {
        self.root.join("packs")
    }

    pub(crate) fn collect_lock(&self) -> &RwLock<()> {
        &self.shared.collect
    }

    /// Opens a session, waiting with backoff while another process holds the store.
    pub fn session(&self) -> Result<Session<'_>> {
        let mut slot = self.shared.slot.lock().expect("session slot poisoned");
        if let Some(open) = &slot.open {
            let t = open.trees.clone();
            slot.users += 1;
            return Ok(Session { store: self, t });
        }

        let lock_path = self.root.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) => {
                    let waited = start.elapsed();
                    if waited >= self.options.lock_timeout {
                        return Err(Error::Busy {
                            path: self.root.clone(),
                            waited,
                        });
                    }
                    if waited > Duration::from_secs(1) && pause >= Duration::from_millis(50) {
                        tracing::warn!(waited_ms = waited.as_millis() as u64, "store is busy");
                    }
                    std::thread::sleep(pause.min(self.options.lock_timeout - waited));
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(fs::TryLockError::Error(e)) => return Err(Error::io(&lock_path, e)),
            }
        }

        // sled's own lock can outlive a closed database for a moment while its background
        // threads wind down; that is this process's own leftover, so wait it out too.
        let db = loop {
            let opened = sled::Config::new()
                .path(self.root.join("meta"))
                .cache_capacity(32 << 20)
                .flush_every_ms(None)
                .open();
            match opened {
                Ok(db) => break db,
                Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                    let waited = start.elapsed();
                    if waited >= self.options.lock_timeout {
                        return Err(Error::Busy {
                            path: self.root.clone(),
                            waited,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(e.into()),
            }
        };
        let trees = Trees::open(db)?;
        tracing::debug!(
            waited_us = start.elapsed().as_micros() as u64,
            "session opened"
        );
        slot.open = Some(OpenDb {
            trees: trees.clone(),
            _lock: lock,
        });
        slot.users = 1;
        Ok(Session {
            store: self,
            t: trees,
        })
    }

    /// Appends to this process's pack, creating one when needed.
    pub(crate) fn with_writer<T>(
        &self,
        f: impl FnOnce(&mut PackWriter) -> std::io::Result<T>,
    ) -> Result<T> {
        let mut writer = self.shared.writer.lock().expect("pack writer poisoned");
        if writer.as_ref().is_none_or(|w| w.len() >= PACK_ROLLOVER) {
            if let Some(old) = writer.take() {
                // Keep the full pack locked (its chunks may not be indexed yet) but durable.
                old.sync().map_err(|e| Error::io(&old.path, e))?;
                self.shared
                    .full
                    .lock()
                    .expect("pack list poisoned")
                    .push(old);
            }
            let id = fresh_u64();
            let dir = self.packs_dir();
            *writer = Some(PackWriter::create(&dir, id).map_err(|e| Error::io(&dir, e))?);
        }
        let w = writer.as_mut().expect("writer was just set");
        let path = w.path.clone();
        f(w).map_err(|e| {
            // A failed append may leave a torn entry; start a fresh pack next time.
            *writer = None;
            Error::io(path, e)
        })
    }

    /// Sets (or clears) the callback long operations report progress to.
    pub fn set_progress(&self, progress: Option<ProgressFn>) {
        *self
            .shared
            .progress
            .write()
            .expect("progress lock poisoned") = progress;
    }

    pub(crate) fn report(&self, event: Progress) {
        if let Some(f) = self
            .shared
            .progress
            .read()
            .expect("progress lock poisoned")
            .as_ref()
        {
            f(event);
        }
    }

    /// Makes everything this process appended to its pack durable.
    pub(crate) fn sync_writer(&self) -> Result<()> {
        let mut writer = self.shared.writer.lock().expect("pack writer poisoned");
        let Some(w) = writer.as_ref() else {
            return Ok(());
        };
        let path = w.path.clone();
        w.sync().map_err(|e| {
            // After a failed fsync the pack's unsynced tail is in an unknown state: never
            // append to it again (its entries were not indexed, so nothing refers to them).
            *writer = None;
            Error::io(path, e)
        })
    }

    /// Drops this process's pack writer (and its lock), e.g. before the process idles.
    pub fn release_writer(&self) {
        *self.shared.writer.lock().expect("pack writer poisoned") = None;
        self.shared.full.lock().expect("pack list poisoned").clear();
    }

    pub(crate) fn writer_pack(&self) -> Option<u64> {
        self.shared
            .writer
            .lock()
            .expect("pack writer poisoned")
            .as_ref()
            .map(|w| w.id)
    }

    /// Reads and verifies one chunk. A pack gc has just replaced is looked up again.
    pub fn read_chunk(&self, id: &ChunkId, loc: &ChunkLoc) -> Result<Vec<u8>> {
        match self.shared.reader.read(&self.packs_dir(), id, loc) {
            Ok(raw) => Ok(raw),
            Err(crate::pack::ChunkReadError::PackMissing { .. }) => {
                // gc may have moved the chunk: look it up again before calling it lost.
                self.shared.reader.forget();
                let loc = self
                    .session()?
                    .chunk_loc(id)?
                    .ok_or(Error::MissingChunk(*id))?;
                let again = self.shared.reader.read(&self.packs_dir(), id, &loc);
                if again.is_err() {
                    self.quarantine(id);
                }
                Ok(again?)
            }
            Err(e @ crate::pack::ChunkReadError::HashMismatch { .. }) => {
                self.quarantine(id);
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Remembers a chunk whose stored bytes are bad or gone, so the next import of the same
    /// bytes writes it again.
    fn quarantine(&self, id: &ChunkId) {
        if let Ok(s) = self.session() {
            let _ = s.t.quarantine.insert(id.as_bytes(), &[]);
            let _ = s.t.db.flush();
        }
    }

    pub(crate) fn forget_open_packs(&self) {
        self.shared.reader.forget();
    }

    /// Reads a whole tensor into memory, verifying every chunk.
    pub fn read_tensor(&self, id: &TensorId) -> Result<crate::TensorData> {
        let (rec, locs) = {
            let s = self.session()?;
            let rec = s.tensor(id)?.ok_or_else(|| Error::missing("tensor", id))?;
            let locs = s.chunk_locs(&rec.chunks)?;
            (rec, locs)
        };
        let dtype = DType::from_code(rec.dtype).ok_or_else(|| {
            Error::Invalid(format!("tensor {id}: unknown dtype code {}", rec.dtype))
        })?;
        let parts: Vec<Vec<u8>> = {
            use rayon::prelude::*;
            rec.chunks
                .par_iter()
                .zip(locs.par_iter())
                .map(|(c, loc)| self.read_chunk(&ChunkId(*c), loc))
                .collect::<Result<_>>()?
        };
        let bytes = parts.concat();
        crate::TensorData::new(dtype, rec.shape, bytes)
            .map_err(|e| Error::Invalid(format!("tensor {id}: {e}")))
    }

    /// Reads every tensor of a snapshot, or those whose names `keep` accepts.
    pub fn read_snapshot(
        &self,
        id: &SnapshotId,
        keep: impl Fn(&str) -> bool,
    ) -> Result<BTreeMap<String, crate::TensorData>> {
        let snap = self
            .session()?
            .snapshot(id)?
            .ok_or_else(|| Error::missing("snapshot", id))?;
        let mut out = BTreeMap::new();
        for entry in snap.tensors.iter().filter(|e| keep(&e.name)) {
            out.insert(
                entry.name.clone(),
                self.read_tensor(&TensorId(entry.tensor))?,
            );
        }
        Ok(out)
    }
}

/// A process-unique random-enough u64 for pack and pin ids.
pub(crate) fn fresh_u64() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = blake3::Hasher::new();
    h.update(&std::process::id().to_le_bytes());
    h.update(&now_ms().to_le_bytes());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    h.update(&nanos.to_le_bytes());
    h.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"))
}

impl Session<'_> {
    pub fn store(&self) -> &Store {
        self.store
    }

    fn object<T>(&self, kind: u8, id: &[u8; 32]) -> Result<Option<T>>
    where
        T: record::Record,
        T::Archived: for<'a> rkyv::bytecheck::CheckBytes<
                rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>,
            > + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
    {
        match self.t.objects.get(object_key(kind, id))? {
            Some(bytes) => Ok(Some(record::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    pub fn tensor(&self, id: &TensorId) -> Result<Option<TensorRecord>> {
        self.object(kind::TENSOR, &id.0)
    }

    pub fn snapshot(&self, id: &SnapshotId) -> Result<Option<SnapshotRecord>> {
        self.object(kind::SNAPSHOT, &id.0)
    }

    pub fn commit(&self, id: &CommitId) -> Result<Option<CommitRecord>> {
        self.object(kind::COMMIT, &id.0)
    }

    pub fn dataset(&self, id: &DatasetId) -> Result<Option<DatasetRecord>> {
        self.object(kind::DATASET, &id.0)
    }

    /// A commit that must exist.
    pub fn get_commit(&self, id: &CommitId) -> Result<CommitRecord> {
        self.commit(id)?.ok_or_else(|| Error::missing("commit", id))
    }

    pub fn get_snapshot(&self, id: &SnapshotId) -> Result<SnapshotRecord> {
        self.snapshot(id)?
            .ok_or_else(|| Error::missing("snapshot", id))
    }

    pub fn chunk_loc(&self, id: &ChunkId) -> Result<Option<ChunkLoc>> {
        match self.t.chunks.get(id.as_bytes())? {
            Some(bytes) => Ok(Some(record::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    pub(crate) fn chunk_locs(&self, ids: &[[u8; 32]]) -> Result<Vec<ChunkLoc>> {
        ids.iter()
            .map(|c| {
                self.chunk_loc(&ChunkId(*c))?
                    .ok_or(Error::MissingChunk(ChunkId(*c)))
            })
            .collect()
    }
}
