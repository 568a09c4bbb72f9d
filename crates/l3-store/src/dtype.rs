//! Element types, named as safetensors names them.

use std::fmt;
use std::str::FromStr;

/// The element type of a tensor. Every dtype safetensors defines is kept byte-exact; the
/// numeric code is part of the canonical tensor encoding (see store-format.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    Bool,
    U8,
    I8,
    F8E4M3,
    F8E5M2,
    U16,
    I16,
    F16,
    BF16,
    U32,
    I32,
    F32,
    U64,
    I64,
    F64,
}

impl DType {
    pub const ALL: [DType; 15] = [
        DType::Bool,
        DType::U8,
        DType::I8,
        DType::F8E4M3,
        DType::F8E5M2,
        DType::U16,
        DType::I16,
        DType::F16,
        DType::BF16,
        DType::U32,
        DType::I32,
        DType::F32,
        DType::U64,
        DType::I64,
        DType::F64,
    ];

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::Bool | DType::U8 | DType::I8 | DType::F8E4M3 | DType::F8E5M2 => 1,
            DType::U16 | DType::I16 | DType::F16 | DType::BF16 => 2,
            DType::U32 | DType::I32 | DType::F32 => 4,
            DType::U64 | DType::I64 | DType::F64 => 8,
        }
    }

    /// The name safetensors writes in a header.
    pub fn name(self) -> &'static str {
        match self {
            DType::Bool => "BOOL",
            DType::U8 => "U8",
            DType::I8 => "I8",
            DType::F8E4M3 => "F8_E4M3",
            DType::F8E5M2 => "F8_E5M2",
            DType::U16 => "U16",
            DType::I16 => "I16",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::U32 => "U32",
            DType::I32 => "I32",
            DType::F32 => "F32",
            DType::U64 => "U64",
            DType::I64 => "I64",
            DType::F64 => "F64",
        }
    }

    /// The one-byte code used in canonical encodings and archived records.
    pub fn code(self) -> u8 {
        DType::ALL
            .iter()
            .position(|d| *d == self)
            .expect("every dtype is in ALL") as u8
    }

    pub fn from_code(code: u8) -> Option<DType> {
        DType::ALL.get(code as usize).copied()
    }

    /// Whether the values are floating point, so a numeric diff applies.
    pub fn is_float(self) -> bool {
        matches!(
            self,
            DType::F8E4M3 | DType::F8E5M2 | DType::F16 | DType::BF16 | DType::F32 | DType::F64
        )
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A dtype name that no version of this store knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dtype \"{0}\" (known: BOOL, U8, I8, F8_E4M3, F8_E5M2, U16, I16, F16, BF16, U32, I32, F32, U64, I64, F64)")]
pub struct UnknownDType(pub String);

impl FromStr for DType {
    type Err = UnknownDType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DType::ALL
            .iter()
            .copied()
            .find(|d| d.name() == s)
            .ok_or_else(|| UnknownDType(s.to_string()))
    }
}

/// A tensor held in memory: dtype, shape and its raw little-endian bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorData {
    pub dtype: DType,
    pub shape: Vec<u64>,
    pub bytes: Vec<u8>,
}

impl TensorData {
    /// Builds a tensor, checking that the byte length matches dtype and shape.
    pub fn new(dtype: DType, shape: Vec<u64>, bytes: Vec<u8>) -> Result<Self, ShapeError> {
        let expected = byte_len(dtype, &shape)?;
        if expected != bytes.len() as u64 {
            return Err(ShapeError::Length {
                shape,
                dtype,
                expected,
                actual: bytes.len() as u64,
            });
        }
        Ok(TensorData {
            dtype,
            shape,
            bytes,
        })
    }

    pub fn from_f32(shape: Vec<u64>, values: &[f32]) -> Result<Self, ShapeError> {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        TensorData::new(DType::F32, shape, bytes)
    }

    /// The values as f32, for F32 tensors only.
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        if self.dtype != DType::F32 {
            return None;
        }
        let values = self.bytes.chunks_exact(4);
        Some(
            values
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        )
    }

    pub fn element_count(&self) -> u64 {
        self.shape.iter().product()
    }
}

/// A shape that does not fit its bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("shape {shape:?} has more elements than fit in 64 bits")]
    Overflow { shape: Vec<u64> },
    #[error("shape {shape:?} of {dtype} needs {expected} bytes, got {actual}")]
    Length {
        shape: Vec<u64>,
        dtype: DType,
        expected: u64,
        actual: u64,
    },
}

/// Bytes a tensor of this dtype and shape occupies, or an overflow error.
pub fn byte_len(dtype: DType, shape: &[u64]) -> Result<u64, ShapeError> {
    shape
        .iter()
        .try_fold(dtype.size() as u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| ShapeError::Overflow {
            shape: shape.to_vec(),
        })
}
