//! Blocks on the wire: the canonical block bytes (header, then batches, in settlement's
//! encoding), cut into proposal parts for streaming, and the bounded reassembly of the parts
//! other validators publish. The receiver recomputes the block hash from the bytes; the signed
//! proposal names that hash, so a relay cannot substitute a block.

use std::collections::BTreeMap;

use malachitebft_app::streaming::{StreamContent, StreamId, StreamMessage};
use malachitebft_app::types::PeerId;
use malachitebft_core_types::Round;
use settlement::block::{Block, BlockHeader};
use settlement::codec::{DecodeError, Reader, Writer};
use settlement::ledger::Batch;
use settlement::limits::{BATCHES_PER_BLOCK_MAX, BLOCK_BYTES_MAX};

use crate::context::{Address, BlockHash, Height, PartInit, ProposalPart};

/// Bytes of block data per proposal part.
pub const PART_BYTES_MAX: usize = 256 * 1024;
/// Streams being reassembled at once; the oldest is dropped beyond this.
pub const STREAMS_IN_FLIGHT_MAX: usize = 64;
/// Smallest encoded batch (a tag and a count), to bound the batch count by the bytes.
const BATCH_BYTES_MIN: usize = 5;

/// The block's canonical bytes: header, batch count, batches.
pub fn encode_block(block: &Block) -> Vec<u8> {
    let mut w = Writer::new();
    block.header.encode(&mut w);
    w.count(block.batches.len());
    for batch in &block.batches {
        batch.encode(&mut w);
    }
    w.into_bytes()
}

/// Decodes [`encode_block`]'s output; never panics.
pub fn decode_block(bytes: &[u8]) -> Result<Block, DecodeError> {
    let mut r = Reader::new(bytes);
    let header = BlockHeader::decode(&mut r)?;
    let count = r.count(BATCHES_PER_BLOCK_MAX, BATCH_BYTES_MIN, "block.batches")?;
    let mut batches = Vec::with_capacity(count);
    for _ in 0..count {
        batches.push(Batch::decode(&mut r)?);
    }
    r.finish()?;
    Ok(Block { header, batches })
}

/// The parts that stream `block` as proposed at `round` (re-proposed under `valid_round`).
pub fn block_parts(
    block: &Block,
    round: Round,
    valid_round: Round,
    proposer: Address,
) -> Vec<ProposalPart> {
    let bytes = encode_block(block);
    let mut parts = Vec::with_capacity(bytes.len() / PART_BYTES_MAX + 3);
    parts.push(ProposalPart::Init(PartInit {
        height: Height(block.header.height),
        round,
        valid_round,
        proposer,
        block_bytes: bytes.len() as u32,
    }));
    parts.extend(
        bytes
            .chunks(PART_BYTES_MAX)
            .map(|chunk| ProposalPart::Data(chunk.to_vec())),
    );
    parts.push(ProposalPart::Fin(BlockHash(block.hash())));
    parts
}

/// The stream messages for `parts` under `stream_id`, ending with the stream's Fin.
pub fn stream_messages(
    stream_id: &StreamId,
    parts: Vec<ProposalPart>,
) -> Vec<StreamMessage<ProposalPart>> {
    let mut messages: Vec<_> = parts
        .into_iter()
        .enumerate()
        .map(|(sequence, part)| {
            StreamMessage::new(
                stream_id.clone(),
                sequence as u64,
                StreamContent::Data(part),
            )
        })
        .collect();
    let fin = messages.len() as u64;
    messages.push(StreamMessage::new(
        stream_id.clone(),
        fin,
        StreamContent::Fin,
    ));
    messages
}

/// A stream id unique per (height, round, proposer).
pub fn stream_id(height: Height, round: Round, proposer: Address) -> StreamId {
    let mut bytes = Vec::with_capacity(24);
    bytes.extend_from_slice(&height.0.to_be_bytes());
    bytes.extend_from_slice(&round.as_i64().to_be_bytes());
    bytes.extend_from_slice(&proposer.0.to_be_bytes());
    StreamId::new(bytes.into())
}

/// A block reassembled from a complete stream.
#[derive(Debug, Clone)]
pub struct ReceivedBlock {
    /// Where the proposer says it belongs.
    pub init: PartInit,
    /// The block.
    pub block: Block,
}

/// Why a stream was thrown away.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The parts are out of shape (no Init first, too long, data after Fin, ...).
    #[error("malformed proposal stream: {0}")]
    Malformed(&'static str),
    /// The bytes do not decode into a block.
    #[error("proposal stream does not decode: {0}")]
    Decode(String),
    /// The block's hash is not the one the Fin part announced.
    #[error("proposal stream's block hash does not match its Fin part")]
    HashMismatch,
}

#[derive(Debug, Default)]
struct Partial {
    /// Parts by sequence number (gossip may reorder them).
    parts: BTreeMap<u64, ProposalPart>,
    /// Sequence of the stream's Fin message, once seen.
    fin_at: Option<u64>,
    /// Bytes held so far.
    bytes: usize,
    /// Arrival order, to drop the oldest stream when full.
    arrival: u64,
}

/// Reassembles proposal streams, keyed by (publisher, stream id), within fixed bounds.
#[derive(Debug, Default)]
pub struct Reassembler {
    streams: BTreeMap<(PeerId, StreamId), Partial>,
    arrivals: u64,
}

impl Reassembler {
    /// An empty reassembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Streams in progress.
    pub fn in_flight(&self) -> usize {
        self.streams.len()
    }

    /// Adds one message; returns the block once its stream is complete.
    pub fn push(
        &mut self,
        publisher: PeerId,
        message: StreamMessage<ProposalPart>,
    ) -> Option<Result<ReceivedBlock, StreamError>> {
        let key = (publisher, message.stream_id.clone());
        if !self.streams.contains_key(&key) && self.streams.len() >= STREAMS_IN_FLIGHT_MAX {
            let oldest = self
                .streams
                .iter()
                .min_by_key(|(_, partial)| partial.arrival)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                self.streams.remove(&oldest);
            }
        }
        self.arrivals += 1;
        let arrivals = self.arrivals;
        let partial = self.streams.entry(key.clone()).or_insert_with(|| Partial {
            arrival: arrivals,
            ..Partial::default()
        });
        match message.content {
            StreamContent::Fin => partial.fin_at = Some(message.sequence),
            StreamContent::Data(part) => {
                if let ProposalPart::Data(chunk) = &part {
                    partial.bytes += chunk.len();
                }
                if partial.bytes > BLOCK_BYTES_MAX
                    || partial.parts.len() > BLOCK_BYTES_MAX / PART_BYTES_MAX + 2
                {
                    self.streams.remove(&key);
                    return Some(Err(StreamError::Malformed("stream exceeds the block size")));
                }
                partial.parts.insert(message.sequence, part);
            }
        }
        let fin_at = partial.fin_at?;
        if partial.parts.len() as u64 != fin_at {
            return None;
        }
        let partial = self.streams.remove(&key)?;
        Some(assemble(partial.parts.into_values().collect()))
    }
}

fn assemble(parts: Vec<ProposalPart>) -> Result<ReceivedBlock, StreamError> {
    let mut parts = parts.into_iter();
    let Some(ProposalPart::Init(init)) = parts.next() else {
        return Err(StreamError::Malformed("first part is not Init"));
    };
    let mut bytes = Vec::with_capacity((init.block_bytes as usize).min(BLOCK_BYTES_MAX));
    let mut announced = None;
    for part in parts {
        match part {
            ProposalPart::Data(chunk) if announced.is_none() => bytes.extend_from_slice(&chunk),
            ProposalPart::Fin(hash) if announced.is_none() => announced = Some(hash),
            _ => return Err(StreamError::Malformed("parts out of order")),
        }
    }
    let Some(announced) = announced else {
        return Err(StreamError::Malformed("no Fin part"));
    };
    if bytes.len() != init.block_bytes as usize {
        return Err(StreamError::Malformed("length differs from Init"));
    }
    let block = decode_block(&bytes).map_err(|e| StreamError::Decode(e.to_string()))?;
    if block.hash() != announced.0 || block.header.height != init.height.0 {
        return Err(StreamError::HashMismatch);
    }
    Ok(ReceivedBlock { init, block })
}

#[cfg(test)]
mod tests {
    use super::*;
    use settlement::membership::fixture::Consortium;
    use settlement::testkit::sample_chain;

    fn peer() -> PeerId {
        let mut seed = [7u8; 32];
        let keypair = malachitebft_app::types::Keypair::ed25519_from_bytes(&mut seed[..]).unwrap();
        PeerId::from_bytes(&keypair.public().to_peer_id().to_bytes()).unwrap()
    }

    #[test]
    fn blocks_survive_streaming_in_any_order_and_corruption_is_caught() {
        let consortium = Consortium::new(4);
        let chain = sample_chain(&consortium, 3);
        let block = chain[2].block.clone();
        assert_eq!(decode_block(&encode_block(&block)).unwrap(), block);
        let id = stream_id(Height(3), Round::new(0), Address(1));
        let mut messages = stream_messages(
            &id,
            block_parts(&block, Round::new(0), Round::Nil, Address(1)),
        );
        messages.reverse();
        let mut reassembler = Reassembler::new();
        let publisher = peer();
        let mut done = None;
        for message in messages {
            if let Some(result) = reassembler.push(publisher, message) {
                done = Some(result);
            }
        }
        let received = done.unwrap().unwrap();
        assert_eq!(received.block, block);
        assert_eq!(reassembler.in_flight(), 0);

        let mut parts = block_parts(&block, Round::new(0), Round::Nil, Address(1));
        if let ProposalPart::Data(chunk) = &mut parts[1] {
            let last = chunk.len() - 1;
            chunk[last] ^= 1;
        }
        let mut result = None;
        for message in stream_messages(&id, parts) {
            result = reassembler.push(publisher, message).or(result);
        }
        assert!(result.unwrap().is_err());
    }
}
