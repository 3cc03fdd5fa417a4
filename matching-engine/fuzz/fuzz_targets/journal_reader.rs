//! Fuzzes the journal segment reader on arbitrary file bytes: it must never panic, records it
//! yields must be in sequence and inside the file, a clean end leaves only zeros (the
//! preallocated tail) after them, and a torn tail must lie after them.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use matching_engine::journal::{SegmentEnd, SegmentRecords, encode_segment_header};

fn check(bytes: &[u8], last: bool) {
    let Ok(mut records) = SegmentRecords::new(bytes, Path::new("fuzz.journal"), last) else {
        return;
    };
    let mut expect = records.next_seq();
    for r in records.by_ref() {
        match r {
            Ok(r) => {
                assert_eq!(r.seq, expect);
                assert!(r.offset as usize + r.payload.len() <= bytes.len());
                expect += 1;
            }
            Err(_) => return,
        }
    }
    match records.end() {
        Some(SegmentEnd::Clean) => {
            let valid = records.valid_len() as usize;
            assert!(valid <= bytes.len());
            assert!(bytes[valid..].iter().all(|&b| b == 0));
        }
        Some(SegmentEnd::Torn { offset, .. }) => {
            assert!(last);
            assert_eq!(*offset, records.valid_len());
        }
        None => panic!("iterator ended without an end state"),
    }
}

fuzz_target!(|data: &[u8]| {
    // As given (mostly rejected at the header), and behind a valid header so that the fuzzer
    // reaches the record parser at once.
    check(data, true);
    check(data, false);
    let mut with_header = encode_segment_header(1).to_vec();
    with_header.extend_from_slice(data);
    check(&with_header, true);
    check(&with_header, false);
    // And followed by a zero tail, as every preallocated segment is.
    with_header.resize(with_header.len() + 256, 0);
    check(&with_header, true);
    check(&with_header, false);
});
