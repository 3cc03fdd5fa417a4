//! Fuzzes the batch decoder validators run on client bytes: it must never panic, and whatever
//! it accepts must encode back to exactly the same bytes (the encoding is canonical, so a
//! batch's id and signatures cannot be malleated).
#![no_main]

use libfuzzer_sys::fuzz_target;
use settlement::codec::{Reader, Writer};
use settlement::ledger::Batch;

fuzz_target!(|data: &[u8]| {
    let mut reader = Reader::new(data);
    if let Ok(batch) = Batch::decode(&mut reader)
        && reader.finish().is_ok()
    {
        let mut w = Writer::new();
        batch.encode(&mut w);
        assert_eq!(w.as_bytes(), data, "decoder accepted a non-canonical encoding");
    }
});
