//! Object ids: blake3-256 digests, one type per object kind.

use std::fmt;

/// The derive-key contexts that separate the id domains (store-format.md, "Ids").
pub(crate) mod domain {
    pub const CHUNK: &str = "l3 2026-12 chunk v1";
    pub const TENSOR: &str = "l3 2026-12 tensor v1";
    pub const SNAPSHOT: &str = "l3 2026-12 snapshot v1";
    pub const COMMIT: &str = "l3 2026-12 commit v1";
    pub const DATASET: &str = "l3 2026-12 dataset v1";
}

/// A hex string that is not a full id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("\"{0}\" is not a 64-digit hex id")]
pub struct BadId(pub String);

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $domain:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// A hasher in this kind's domain; feed it the canonical encoding.
            pub(crate) fn hasher() -> blake3::Hasher {
                blake3::Hasher::new_derive_key($domain)
            }

            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            pub fn to_hex(&self) -> String {
                self.to_string()
            }

            /// The first `n` hex digits, for display.
            pub fn short(&self, n: usize) -> String {
                let mut hex = self.to_string();
                hex.truncate(n.min(64));
                hex
            }

            pub fn from_hex(hex: &str) -> Result<Self, BadId> {
                parse_hex(hex).map($name).ok_or_else(|| BadId(hex.to_string()))
            }

            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                bytes.try_into().ok().map($name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for b in &self.0 {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short(12))
            }
        }

        impl std::str::FromStr for $name {
            type Err = BadId;

            fn from_str(s: &str) -> Result<Self, BadId> {
                $name::from_hex(s)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_string())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let hex = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::from_hex(&hex).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// Names a chunk: the hash of its raw (uncompressed) bytes.
    ChunkId,
    domain::CHUNK
);
id_type!(
    /// Names a tensor manifest: dtype, shape and chunk list.
    TensorId,
    domain::TENSOR
);
id_type!(
    /// Names a snapshot: the sorted map of tensor names to tensor ids, plus metadata.
    SnapshotId,
    domain::SNAPSHOT
);
id_type!(
    /// Names a commit: snapshot, parents, author, time, message and record.
    CommitId,
    domain::COMMIT
);
id_type!(
    /// Names a data set: its name and the snapshot holding its tensors.
    DatasetId,
    domain::DATASET
);

fn parse_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The chunk id of raw bytes.
pub fn chunk_id(bytes: &[u8]) -> ChunkId {
    let mut h = ChunkId::hasher();
    h.update(bytes);
    ChunkId(*h.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects_bad_input() {
        let id = chunk_id(b"hello");
        assert_eq!(ChunkId::from_hex(&id.to_hex()).unwrap(), id);
        assert_eq!(id.short(8).len(), 8);
        assert!(ChunkId::from_hex("zz").is_err());
        assert!(ChunkId::from_hex(&"g".repeat(64)).is_err());
    }

    #[test]
    fn domains_separate_kinds() {
        // The same bytes hashed as a chunk and as a plain blake3 hash differ.
        let id = chunk_id(b"abc");
        assert_ne!(id.0, *blake3::hash(b"abc").as_bytes());
        let mut t = TensorId::hasher();
        t.update(b"abc");
        assert_ne!(id.0, *t.finalize().as_bytes());
    }
}
