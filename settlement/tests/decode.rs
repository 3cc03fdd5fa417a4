//! Batches arrive from clients (`rempart validator`'s SubmitBatch) as bytes: the decoder never
//! panics on any input, and what it accepts is canonical (it encodes back to the same bytes),
//! so a batch's id and signatures cannot be malleated. The fuzz target
//! `settlement/fuzz/fuzz_targets/decode_batch.rs` explores the same property further.

use proptest::prelude::*;
use settlement::codec::{Reader, Writer};
use settlement::ledger::Batch;

fn encode(batch: &Batch) -> Vec<u8> {
    let mut w = Writer::new();
    batch.encode(&mut w);
    w.into_bytes()
}

/// Decodes a whole input; `Some` only if the batch uses every byte.
fn decode(bytes: &[u8]) -> Option<Batch> {
    let mut reader = Reader::new(bytes);
    let batch = Batch::decode(&mut reader).ok()?;
    reader.finish().ok()?;
    Some(batch)
}

/// Real batches (accounts, signed and gated transfers) of a sample chain, encoded.
fn sample_batches() -> Vec<Vec<u8>> {
    let consortium = settlement::membership::fixture::Consortium::new(1);
    let mut out: Vec<Vec<u8>> = Vec::new();
    for height in 1..=2 {
        out.extend(
            settlement::testkit::sample_batches(&consortium, height)
                .iter()
                .map(encode),
        );
    }
    out
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_and_accepted_ones_are_canonical(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        if let Some(batch) = decode(&bytes) {
            prop_assert_eq!(encode(&batch), bytes);
        }
    }

    #[test]
    fn mutated_batches_never_panic_and_stay_canonical(
        which in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let samples = sample_batches();
        let mut bytes = samples[which.index(samples.len())].clone();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        if let Some(batch) = decode(&bytes) {
            prop_assert_eq!(encode(&batch), bytes);
        }
    }
}

#[test]
fn the_samples_round_trip() {
    for bytes in sample_batches() {
        assert_eq!(encode(&decode(&bytes).expect("decodes")), bytes);
    }
}
