//! The safetensors header parser must refuse, never panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    // The first 8 bytes give a claimed file length beyond the header.
    let extra = u64::from_le_bytes(data[..8].try_into().unwrap()) % (1 << 40);
    let header = &data[8..];
    let _ = l3_store::parse_header(header, 8 + header.len() as u64 + extra);
});
