//! Archived records read from disk are validated: any bytes decode or fail cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    l3_store::decode_any_record(data);
});
