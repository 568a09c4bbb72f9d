//! Random bytes against the parsers that read untrusted input: they refuse, never panic.
//! (The cargo-fuzz targets in `fuzz/` explore further; what they find becomes a case here.)

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn header_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300), extra in 0u64..1 << 40) {
        let _ = l3_store::parse_header(&bytes, 8 + bytes.len() as u64 + extra);
    }

    #[test]
    fn mutated_valid_headers_never_panic(pos in 0usize..120, byte in any::<u8>(), extra in 0u64..64) {
        let mut h = br#"{"__metadata__":{"a":"b"},"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"x":{"dtype":"U8","shape":[],"data_offsets":[24,25]}}"#.to_vec();
        let at = pos % h.len();
        h[at] = byte;
        let _ = l3_store::parse_header(&h, 8 + h.len() as u64 + extra);
    }

    #[test]
    fn record_decoding_never_panics(mut bytes in prop::collection::vec(any::<u8>(), 0..200), kind in prop::sample::select(b"CTSKDRPAJ".to_vec())) {
        if bytes.len() >= 4 {
            bytes[0] = b'L';
            bytes[1] = b'3';
            bytes[2] = kind;
            bytes[3] = 1;
        }
        l3_store::decode_any_record(&bytes);
    }
}
