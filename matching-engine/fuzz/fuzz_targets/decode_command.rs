//! Fuzzes the journal's command decoder: it must never panic, and whatever it accepts must
//! encode back to exactly the same bytes (the encoding is canonical).
#![no_main]

use libfuzzer_sys::fuzz_target;
use matching_engine::codec::{decode_command, encode_command};

fuzz_target!(|data: &[u8]| {
    match decode_command(data) {
        Ok(cmd) => {
            let mut again = Vec::new();
            encode_command(&mut again, &cmd);
            assert_eq!(again, data, "decoder accepted a non-canonical encoding");
        }
        Err(e) => assert!(e.offset <= data.len(), "error offset past the input"),
    }
});
