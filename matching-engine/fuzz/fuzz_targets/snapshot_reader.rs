//! Fuzzes the snapshot container and the engine-state decoder: never a panic, and a decoded
//! state re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use matching_engine::codec::{decode_state, encode_state};
use matching_engine::snapshot::parse_snapshot;

fuzz_target!(|data: &[u8]| {
    let _ = parse_snapshot(data);
    if let Ok(state) = decode_state(data) {
        let mut again = Vec::new();
        encode_state(&mut again, &state);
        assert_eq!(again, data, "decoder accepted a non-canonical encoding");
    }
});
