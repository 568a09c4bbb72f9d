//! Reading float elements of any float dtype as f64, for norms and diffs.

use crate::DType;

/// Decodes little-endian elements of a float dtype to f64. Returns None for other dtypes.
pub fn floats(dtype: DType, bytes: &[u8]) -> Option<Vec<f64>> {
    let out = match dtype {
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")) as f64)
            .collect(),
        DType::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect(),
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f64())
            .collect(),
        DType::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f64())
            .collect(),
        DType::F8E4M3 => bytes.iter().map(|&b| f8_e4m3(b)).collect(),
        DType::F8E5M2 => bytes.iter().map(|&b| f8_e5m2(b)).collect(),
        _ => return None,
    };
    Some(out)
}

/// Sum of squares of the finite elements.
pub fn norm_sq(dtype: DType, bytes: &[u8]) -> Option<f64> {
    if dtype == DType::F32 {
        return Some(norm_sq_f32(bytes));
    }
    floats(dtype, bytes).map(|v| v.iter().filter(|x| x.is_finite()).map(|x| x * x).sum())
}

/// The F32 case without an intermediate vector, in eight lanes the compiler can vectorise.
fn norm_sq_f32(bytes: &[u8]) -> f64 {
    let mut acc = [0f64; 8];
    let square = |b: &[u8]| {
        let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64;
        let sq = v * v;
        if sq.is_finite() {
            sq
        } else {
            0.0
        }
    };
    let mut blocks = bytes.chunks_exact(32);
    for block in &mut blocks {
        for (lane, a) in acc.iter_mut().enumerate() {
            *a += square(&block[lane * 4..lane * 4 + 4]);
        }
    }
    let tail: f64 = blocks.remainder().chunks_exact(4).map(square).sum();
    acc.iter().sum::<f64>() + tail
}

/// OCP FP8 E4M3 ("FN": no infinities, 0x7f/0xff are NaN).
fn f8_e4m3(b: u8) -> f64 {
    let sign = if b & 0x80 != 0 { -1.0 } else { 1.0 };
    let exp = ((b >> 3) & 0x0f) as i32;
    let man = (b & 0x07) as f64;
    if exp == 0x0f && b & 0x07 == 0x07 {
        return f64::NAN;
    }
    if exp == 0 {
        sign * man / 8.0 * 2f64.powi(-6)
    } else {
        sign * (1.0 + man / 8.0) * 2f64.powi(exp - 7)
    }
}

/// OCP FP8 E5M2 (IEEE-like, with infinities and NaN).
fn f8_e5m2(b: u8) -> f64 {
    half::f16::from_bits((b as u16) << 8).to_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fp8_known_values() {
        assert_eq!(f8_e4m3(0x38), 1.0);
        assert_eq!(f8_e4m3(0xb8), -1.0);
        assert_eq!(f8_e4m3(0x7e), 448.0);
        assert!(f8_e4m3(0x7f).is_nan());
        assert_eq!(f8_e5m2(0x3c), 1.0);
        assert_eq!(f8_e5m2(0x7b), 57344.0);
    }

    #[test]
    fn f32_norm_matches_the_plain_sum_and_skips_non_finite() {
        let values: Vec<f32> = (0..1003)
            .map(|i| (i as f32 * 0.37).sin())
            .chain([f32::NAN, f32::INFINITY])
            .collect();
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let plain: f64 = values
            .iter()
            .map(|v| *v as f64)
            .filter(|v| v.is_finite())
            .map(|v| v * v)
            .sum();
        assert!((norm_sq(DType::F32, &bytes).unwrap() - plain).abs() < 1e-9 * plain);
    }

    #[test]
    fn norm_of_f16_and_bf16() {
        let f16: Vec<u8> = [3.0f32, 4.0]
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        assert_eq!(norm_sq(DType::F16, &f16), Some(25.0));
        let bf: Vec<u8> = [1.0f32, 2.0]
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect();
        assert_eq!(norm_sq(DType::BF16, &bf), Some(5.0));
        assert_eq!(norm_sq(DType::I32, &[0; 4]), None);
    }
}
