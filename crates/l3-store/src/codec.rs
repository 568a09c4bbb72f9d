//! Per-chunk compression: zstd, with byte grouping for floating-point data.
//!
//! Byte grouping stores byte 0 of every element, then byte 1 of every element, and so on, so
//! the slowly varying sign/exponent bytes of floats sit together and compress well while the
//! noisy mantissa bytes do not spoil them.

use crate::DType;

/// How a chunk's bytes are stored in a pack. The numeric value is written to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Encoding {
    Raw = 0,
    Zstd = 1,
    Grouped2Zstd = 2,
    Grouped4Zstd = 4,
    Grouped8Zstd = 8,
    /// Grouped, with only the high half of the byte planes (sign and exponent) compressed;
    /// the low planes (mantissa bytes, which do not compress) are stored as they are.
    Split2Zstd = 0x12,
    Split4Zstd = 0x14,
    Split8Zstd = 0x18,
}

impl Encoding {
    pub fn from_u8(v: u8) -> Option<Encoding> {
        Some(match v {
            0 => Encoding::Raw,
            1 => Encoding::Zstd,
            2 => Encoding::Grouped2Zstd,
            4 => Encoding::Grouped4Zstd,
            8 => Encoding::Grouped8Zstd,
            0x12 => Encoding::Split2Zstd,
            0x14 => Encoding::Split4Zstd,
            0x18 => Encoding::Split8Zstd,
            _ => return None,
        })
    }

    fn group(self) -> usize {
        match self {
            Encoding::Raw | Encoding::Zstd => 1,
            Encoding::Grouped2Zstd | Encoding::Split2Zstd => 2,
            Encoding::Grouped4Zstd | Encoding::Split4Zstd => 4,
            Encoding::Grouped8Zstd | Encoding::Split8Zstd => 8,
        }
    }

    fn split(self) -> bool {
        matches!(
            self,
            Encoding::Split2Zstd | Encoding::Split4Zstd | Encoding::Split8Zstd
        )
    }

    /// The encoding to try first for a chunk of this dtype.
    pub fn for_dtype(dtype: DType) -> Encoding {
        match (dtype.is_float(), dtype.size()) {
            (true, 2) => Encoding::Split2Zstd,
            (true, 4) => Encoding::Split4Zstd,
            (true, 8) => Encoding::Split8Zstd,
            _ => Encoding::Zstd,
        }
    }
}

/// Compression settings chosen when the store is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Zstd { level: i32 },
}

thread_local! {
    /// One compression context per thread and level: creating one per chunk costs more than
    /// compressing a small chunk.
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn compress(input: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        let (_, c) = slot.as_mut().expect("set above");
        c.compress(input)
    })
}

fn decompress(input: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        slot.as_mut()
            .expect("set above")
            .decompress(input, capacity)
    })
}

/// A compressed chunk is kept only if it saves at least this share of the raw size.
const MIN_SAVING: f64 = 0.03;

/// Encodes one chunk; falls back to raw bytes when compression does not pay.
pub fn encode(raw: &[u8], dtype: DType, compression: Compression) -> (Encoding, Vec<u8>) {
    let Compression::Zstd { level } = compression else {
        return (Encoding::Raw, raw.to_vec());
    };
    let mut encoding = Encoding::for_dtype(dtype);
    if !raw.len().is_multiple_of(encoding.group()) {
        encoding = Encoding::Zstd;
    }
    if encoding.split() {
        // Low byte planes go as they are, the high planes through zstd.
        let grouped = group_bytes(raw, encoding.group());
        let low = raw.len() / 2;
        return match compress(&grouped[low..], level) {
            Ok(high) if ((low + high.len()) as f64) <= raw.len() as f64 * (1.0 - MIN_SAVING) => {
                let mut out = Vec::with_capacity(low + high.len());
                out.extend_from_slice(&grouped[..low]);
                out.extend_from_slice(&high);
                (encoding, out)
            }
            _ => (Encoding::Raw, raw.to_vec()),
        };
    }
    let grouped;
    let input = if encoding.group() > 1 {
        grouped = group_bytes(raw, encoding.group());
        &grouped[..]
    } else {
        raw
    };
    match compress(input, level) {
        Ok(packed) if (packed.len() as f64) <= raw.len() as f64 * (1.0 - MIN_SAVING) => {
            (encoding, packed)
        }
        _ => (Encoding::Raw, raw.to_vec()),
    }
}

/// Decodes a stored chunk back to `raw_len` raw bytes.
pub fn decode(encoding: Encoding, stored: &[u8], raw_len: usize) -> std::io::Result<Vec<u8>> {
    if encoding == Encoding::Raw {
        return Ok(stored.to_vec());
    }
    let unpacked = if encoding.split() {
        let low = raw_len / 2;
        let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "split chunk too short");
        let (lo, hi) = (
            stored.get(..low).ok_or_else(bad)?,
            stored.get(low..).ok_or_else(bad)?,
        );
        let mut out = Vec::with_capacity(raw_len);
        out.extend_from_slice(lo);
        out.extend_from_slice(&decompress(hi, raw_len - low)?);
        out
    } else {
        decompress(stored, raw_len)?
    };
    if unpacked.len() != raw_len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "chunk decompressed to {} bytes, expected {raw_len}",
                unpacked.len()
            ),
        ));
    }
    if encoding.group() == 1 {
        return Ok(unpacked);
    }
    Ok(ungroup_bytes(&unpacked, encoding.group()))
}

fn group_bytes(raw: &[u8], width: usize) -> Vec<u8> {
    let n = raw.len() / width;
    let mut out = vec![0u8; raw.len()];
    if width == 4 {
        // The common case (F32), written plane by plane so the bounds checks go away.
        let (p0, rest) = out.split_at_mut(n);
        let (p1, rest) = rest.split_at_mut(n);
        let (p2, p3) = rest.split_at_mut(n);
        for (i, e) in raw.chunks_exact(4).enumerate() {
            p0[i] = e[0];
            p1[i] = e[1];
            p2[i] = e[2];
            p3[i] = e[3];
        }
        return out;
    }
    for (i, element) in raw.chunks_exact(width).enumerate() {
        for (j, &b) in element.iter().enumerate() {
            out[j * n + i] = b;
        }
    }
    out
}

fn ungroup_bytes(grouped: &[u8], width: usize) -> Vec<u8> {
    let n = grouped.len() / width;
    let mut out = vec![0u8; grouped.len()];
    for (i, element) in out.chunks_exact_mut(width).enumerate() {
        for (j, b) in element.iter_mut().enumerate() {
            *b = grouped[j * n + i];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_is_a_permutation_that_inverts() {
        let raw: Vec<u8> = (0..64u8).collect();
        let g = group_bytes(&raw, 4);
        assert_eq!(&g[..4], &[0, 4, 8, 12]);
        assert_eq!(ungroup_bytes(&g, 4), raw);
    }

    #[test]
    fn floats_compress_and_round_trip() {
        let values: Vec<f32> = (0..4096).map(|i| (i as f32 * 0.001).sin() * 0.02).collect();
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let (enc, stored) = encode(&raw, DType::F32, Compression::Zstd { level: 1 });
        assert_eq!(enc, Encoding::Split4Zstd);
        assert!(stored.len() < raw.len());
        assert_eq!(decode(enc, &stored, raw.len()).unwrap(), raw);
    }

    #[test]
    fn every_encoding_round_trips() {
        let values: Vec<f64> = (0..999).map(|i| (i as f64 * 0.01).cos() * 1e-3).collect();
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        for dtype in [DType::F64, DType::F32, DType::BF16, DType::U8] {
            let (enc, stored) = encode(&raw, dtype, Compression::Zstd { level: 3 });
            assert_eq!(decode(enc, &stored, raw.len()).unwrap(), raw, "{dtype}");
        }
        // The stored form of each older encoding still decodes.
        for enc in [
            Encoding::Zstd,
            Encoding::Grouped2Zstd,
            Encoding::Grouped4Zstd,
            Encoding::Grouped8Zstd,
        ] {
            let grouped = if enc.group() > 1 {
                group_bytes(&raw, enc.group())
            } else {
                raw.clone()
            };
            let stored = zstd::bulk::compress(&grouped, 1).unwrap();
            assert_eq!(decode(enc, &stored, raw.len()).unwrap(), raw, "{enc:?}");
        }
    }

    #[test]
    fn incompressible_bytes_stay_raw() {
        let mut raw = Vec::new();
        let mut h = blake3::Hasher::new().finalize_xof();
        raw.resize(4096, 0);
        h.fill(&mut raw);
        let (enc, stored) = encode(&raw, DType::U8, Compression::Zstd { level: 1 });
        assert_eq!(enc, Encoding::Raw);
        assert_eq!(stored, raw);
    }
}
