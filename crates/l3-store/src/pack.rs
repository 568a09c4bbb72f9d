//! Pack files: append-only files of chunk entries, outside sled.
//!
//! A pack starts with a 16-byte header (`b"L3PACK"`, version u16 LE, pack id u64 LE); each
//! entry is a 48-byte header (`b"L3CK"`, encoding u8, three zero bytes, raw length u32 LE,
//! stored length u32 LE, chunk id) followed by the stored bytes. A writer holds an exclusive
//! lock on its pack for as long as it may append, so gc never touches a pack being written.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::codec::Encoding;
use crate::id::{chunk_id, ChunkId};
use crate::record::ChunkLoc;

pub const PACK_MAGIC: [u8; 6] = *b"L3PACK";
pub const PACK_VERSION: u16 = 1;
pub const PACK_HEADER_LEN: u64 = 16;
pub const ENTRY_MAGIC: [u8; 4] = *b"L3CK";
pub const ENTRY_HEADER_LEN: u64 = 48;

pub fn pack_file_name(id: u64) -> String {
    format!("{id:016x}.pack")
}

pub fn parse_pack_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".pack")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// An open pack this process appends to.
pub struct PackWriter {
    pub id: u64,
    pub path: PathBuf,
    file: File,
    len: u64,
}

impl PackWriter {
    /// Creates a new pack under `dir`, locked before it gets its final name so gc never
    /// sees it unlocked.
    pub fn create(dir: &Path, id: u64) -> io::Result<PackWriter> {
        let path = dir.join(pack_file_name(id));
        let tmp = dir.join(format!("{}.tmp", pack_file_name(id)));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.lock()?;
        let mut header = Vec::with_capacity(PACK_HEADER_LEN as usize);
        header.extend_from_slice(&PACK_MAGIC);
        header.extend_from_slice(&PACK_VERSION.to_le_bytes());
        header.extend_from_slice(&id.to_le_bytes());
        file.write_all(&header)?;
        std::fs::rename(&tmp, &path)?;
        Ok(PackWriter {
            id,
            path,
            file,
            len: PACK_HEADER_LEN,
        })
    }

    /// Appends one chunk entry; returns where its stored bytes are.
    pub fn append(
        &mut self,
        id: &ChunkId,
        encoding: Encoding,
        raw_len: u32,
        stored: &[u8],
    ) -> io::Result<ChunkLoc> {
        let mut entry = Vec::with_capacity(ENTRY_HEADER_LEN as usize + stored.len());
        entry.extend_from_slice(&ENTRY_MAGIC);
        entry.push(encoding as u8);
        entry.extend_from_slice(&[0; 3]);
        entry.extend_from_slice(&raw_len.to_le_bytes());
        entry.extend_from_slice(&(stored.len() as u32).to_le_bytes());
        entry.extend_from_slice(id.as_bytes());
        entry.extend_from_slice(stored);
        if crate::faults::fires(crate::faults::Fault::PackWriteHalf) {
            self.file
                .write_all_at(&entry[..entry.len() / 2], self.len)?;
            return Err(crate::faults::storage_full());
        }
        self.file.write_all_at(&entry, self.len)?;
        let loc = ChunkLoc {
            pack: self.id,
            offset: self.len + ENTRY_HEADER_LEN,
            stored_len: stored.len() as u32,
            raw_len,
            encoding: encoding as u8,
        };
        self.len += entry.len() as u64;
        Ok(loc)
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// Makes every appended entry durable.
    pub fn sync(&self) -> io::Result<()> {
        if crate::faults::fires(crate::faults::Fault::PackSync) {
            return Err(crate::faults::device_error());
        }
        self.file.sync_data()
    }
}

/// Why a chunk could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ChunkReadError {
    #[error("pack {pack:016x} is missing")]
    PackMissing { pack: u64 },
    #[error("chunk {chunk}: {source}")]
    Io { chunk: ChunkId, source: io::Error },
    #[error(
        "chunk {chunk} in pack {pack:016x} does not match its hash (the stored bytes are corrupt)"
    )]
    HashMismatch { chunk: ChunkId, pack: u64 },
}

/// Reads chunks from packs, keeping files open between reads.
#[derive(Default)]
pub struct PackReader {
    open: Mutex<HashMap<u64, Arc<File>>>,
}

impl PackReader {
    fn file(&self, dir: &Path, pack: u64) -> Result<Arc<File>, ChunkReadError> {
        let mut open = self.open.lock().expect("pack reader lock poisoned");
        if let Some(f) = open.get(&pack) {
            return Ok(f.clone());
        }
        match File::open(dir.join(pack_file_name(pack))) {
            Ok(f) => {
                let f = Arc::new(f);
                open.insert(pack, f.clone());
                Ok(f)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(ChunkReadError::PackMissing { pack })
            }
            Err(source) => Err(ChunkReadError::Io {
                chunk: ChunkId([0; 32]),
                source,
            }),
        }
    }

    /// Forgets open files, so a pack that gc replaced is opened afresh.
    pub fn forget(&self) {
        self.open.lock().expect("pack reader lock poisoned").clear();
    }

    /// Reads, decodes and verifies one chunk.
    pub fn read(
        &self,
        dir: &Path,
        id: &ChunkId,
        loc: &ChunkLoc,
    ) -> Result<Vec<u8>, ChunkReadError> {
        let file = self.file(dir, loc.pack)?;
        let io_err = |source| ChunkReadError::Io { chunk: *id, source };
        let mut stored = vec![0u8; loc.stored_len as usize];
        file.read_exact_at(&mut stored, loc.offset)
            .map_err(io_err)?;
        let encoding = Encoding::from_u8(loc.encoding).ok_or_else(|| {
            io_err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unknown chunk encoding {}", loc.encoding),
            ))
        })?;
        let raw = crate::codec::decode(encoding, &stored, loc.raw_len as usize).map_err(|_| {
            ChunkReadError::HashMismatch {
                chunk: *id,
                pack: loc.pack,
            }
        })?;
        if chunk_id(&raw) != *id {
            return Err(ChunkReadError::HashMismatch {
                chunk: *id,
                pack: loc.pack,
            });
        }
        Ok(raw)
    }
}
