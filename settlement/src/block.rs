//! Blocks: a header (height, previous block's hash, timestamp, transactions root, state hash
//! after applying the block, proposer), a body of batches, and the commit certificate (a quorum
//! of validators' Ed25519 signatures over the block hash). Blocks are hash-chained through the
//! header's `previous_hash`; block 1 points at the genesis hash.
//!
//! The consensus engine orders blocks and produces certificates; this module only defines
//! them and their canonical bytes (docs/ledger-format.md).

use crate::codec::{DecodeError, Reader, Writer};
use crate::crypto::{DOMAIN_BLOCK, DOMAIN_VOTE, Hash32, Signature64, tagged_hash};
use crate::ledger::Batch;
use crate::limits::{BATCHES_PER_BLOCK_MAX, VALIDATORS_MAX};
use crate::membership::ValidatorId;

/// The header format this code writes and reads.
pub const BLOCK_VERSION: u16 = 1;
/// Bytes of an encoded [`BlockHeader`].
pub const HEADER_BYTES: usize = 2 + 8 + 32 + 8 + 32 + 32 + 8;

/// A block header: everything the block hash covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockHeader {
    /// [`BLOCK_VERSION`].
    pub version: u16,
    /// 1 for the first block.
    pub height: u64,
    /// Hash of the previous block (the genesis hash for height 1).
    pub previous_hash: Hash32,
    /// UTC microseconds; strictly increasing; the ledger's only clock (timeouts).
    pub timestamp_us: u64,
    /// Merkle root of the batches (see [`transactions_root`]).
    pub transactions_root: Hash32,
    /// The ledger's state hash after applying this block.
    pub state_hash: Hash32,
    /// The validator that proposed it.
    pub proposer: ValidatorId,
}

impl BlockHeader {
    /// Canonical encoding.
    pub fn encode(&self, w: &mut Writer) {
        w.u16(self.version);
        w.u64(self.height);
        w.bytes(&self.previous_hash);
        w.u64(self.timestamp_us);
        w.bytes(&self.transactions_root);
        w.bytes(&self.state_hash);
        w.u64(self.proposer);
    }

    /// Decodes [`BlockHeader::encode`]'s output.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u16("header.version")?;
        if version != BLOCK_VERSION {
            return Err(DecodeError::UnknownTag {
                what: "header.version",
                tag: version.into(),
            });
        }
        Ok(Self {
            version,
            height: r.u64("header.height")?,
            previous_hash: r.array("header.previous_hash")?,
            timestamp_us: r.u64("header.timestamp_us")?,
            transactions_root: r.array("header.transactions_root")?,
            state_hash: r.array("header.state_hash")?,
            proposer: r.u64("header.proposer")?,
        })
    }

    /// The block hash: SHA-256 over the domain tag and the encoded header.
    pub fn hash(&self) -> Hash32 {
        let mut w = Writer::with_capacity(HEADER_BYTES);
        self.encode(&mut w);
        tagged_hash(DOMAIN_BLOCK, &[w.as_bytes()])
    }
}

/// A block: header and batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The header.
    pub header: BlockHeader,
    /// The batches, applied in order.
    pub batches: Vec<Batch>,
}

impl Block {
    /// The block hash.
    pub fn hash(&self) -> Hash32 {
        self.header.hash()
    }
}

/// Merkle root over the batches: leaf = H(0x00 ‖ batch bytes), node = H(0x01 ‖ left ‖ right),
/// an odd node is carried up unchanged; no batch gives H(0x02). One batch's inclusion can then
/// be proven to a regulator without the whole block.
pub fn transactions_root(batches: &[Batch]) -> Hash32 {
    if batches.is_empty() {
        return tagged_hash(DOMAIN_BLOCK, &[&[2]]);
    }
    let mut level: Vec<Hash32> = batches
        .iter()
        .map(|batch| {
            let mut w = Writer::new();
            batch.encode(&mut w);
            tagged_hash(DOMAIN_BLOCK, &[&[0], w.as_bytes()])
        })
        .collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair.get(1) {
                Some(right) => tagged_hash(DOMAIN_BLOCK, &[&[1], &pair[0], right]),
                None => pair[0],
            })
            .collect();
    }
    level[0]
}

/// What a validator signs to vote for a block: the height, the consensus round and the block
/// hash. The consensus integration signs exactly these bytes for its precommits, so that a
/// commit certificate is a set of precommit signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vote {
    /// The block's height.
    pub height: u64,
    /// The consensus round in which the validator precommitted.
    pub round: u32,
    /// The block hash voted for.
    pub block_hash: Hash32,
}

impl Vote {
    /// The signed bytes: domain tag, then height, round, block hash.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(DOMAIN_VOTE.len() + 44);
        w.bytes(DOMAIN_VOTE);
        w.u64(self.height);
        w.u32(self.round);
        w.bytes(&self.block_hash);
        w.into_bytes()
    }
}

/// One validator's signature in a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VoteSignature {
    /// Who signed.
    pub validator: ValidatorId,
    /// Ed25519 over [`Vote::signing_bytes`].
    pub signature: Signature64,
}

/// Proof that a quorum decided a block: their signatures over the same [`Vote`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitCertificate {
    /// The vote every signature covers.
    pub vote: Vote,
    /// Signatures, sorted by validator id, one per validator.
    pub signatures: Vec<VoteSignature>,
}

/// A decided block with its certificate: what replication delivers and stores keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedBlock {
    /// The block.
    pub block: Block,
    /// Its commit certificate.
    pub certificate: CommitCertificate,
}

/// Smallest encoded batch: a tag and a count.
const BATCH_BYTES_MIN: usize = 5;
/// Bytes of one encoded vote signature.
const VOTE_SIGNATURE_BYTES: usize = 8 + 64;

impl CommittedBlock {
    /// Canonical encoding: header, batches, certificate.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.block.header.encode(&mut w);
        w.count(self.block.batches.len());
        for batch in &self.block.batches {
            batch.encode(&mut w);
        }
        w.u64(self.certificate.vote.height);
        w.u32(self.certificate.vote.round);
        w.bytes(&self.certificate.vote.block_hash);
        w.count(self.certificate.signatures.len());
        for signature in &self.certificate.signatures {
            w.u64(signature.validator);
            w.bytes(&signature.signature);
        }
        w.into_bytes()
    }

    /// Decodes [`CommittedBlock::encode`]'s output; never panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let header = BlockHeader::decode(&mut r)?;
        let count = r.count(BATCHES_PER_BLOCK_MAX, BATCH_BYTES_MIN, "block.batches")?;
        let mut batches = Vec::with_capacity(count);
        for _ in 0..count {
            batches.push(Batch::decode(&mut r)?);
        }
        let vote = Vote {
            height: r.u64("certificate.height")?,
            round: r.u32("certificate.round")?,
            block_hash: r.array("certificate.block_hash")?,
        };
        let count = r.count(
            VALIDATORS_MAX,
            VOTE_SIGNATURE_BYTES,
            "certificate.signatures",
        )?;
        let mut signatures = Vec::with_capacity(count);
        for _ in 0..count {
            signatures.push(VoteSignature {
                validator: r.u64("certificate.validator")?,
                signature: r.array("certificate.signature")?,
            });
        }
        r.finish()?;
        Ok(Self {
            block: Block { header, batches },
            certificate: CommitCertificate { vote, signatures },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{AccountFlags, NewAccount};

    fn sample() -> CommittedBlock {
        let batches = vec![Batch::CreateAccounts(vec![NewAccount {
            id: 1,
            user_data: 0,
            ledger: 1,
            code: 1,
            flags: AccountFlags(0),
            controller: [2; 33],
        }])];
        let header = BlockHeader {
            version: BLOCK_VERSION,
            height: 1,
            previous_hash: [1; 32],
            timestamp_us: 5,
            transactions_root: transactions_root(&batches),
            state_hash: [3; 32],
            proposer: 7,
        };
        CommittedBlock {
            certificate: CommitCertificate {
                vote: Vote {
                    height: 1,
                    round: 0,
                    block_hash: header.hash(),
                },
                signatures: vec![VoteSignature {
                    validator: 7,
                    signature: [9; 64],
                }],
            },
            block: Block { header, batches },
        }
    }

    #[test]
    fn committed_blocks_round_trip_and_every_truncation_fails() {
        let block = sample();
        let bytes = block.encode();
        assert_eq!(CommittedBlock::decode(&bytes).unwrap(), block);
        for cut in 0..bytes.len() {
            assert!(CommittedBlock::decode(&bytes[..cut]).is_err(), "cut {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(CommittedBlock::decode(&longer).is_err());
    }

    #[test]
    fn merkle_root_depends_on_every_batch_and_order() {
        let a = Batch::CreateAccounts(vec![]);
        let b = Batch::CreateTransfers {
            entries: vec![],
            batch_signature: None,
        };
        let ab = transactions_root(&[a.clone(), b.clone()]);
        let ba = transactions_root(&[b.clone(), a.clone()]);
        assert_ne!(ab, ba);
        assert_ne!(
            transactions_root(std::slice::from_ref(&a)),
            transactions_root(&[])
        );
        assert_ne!(
            transactions_root(&[a.clone(), b.clone(), a.clone()]),
            transactions_root(&[a, b])
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = CommittedBlock::decode(&bytes);
        }

        #[test]
        fn decoding_mutated_blocks_never_panics(index in 0usize..400, value in proptest::prelude::any::<u8>()) {
            let mut bytes = sample().encode();
            let index = index % bytes.len();
            bytes[index] = value;
            let _ = CommittedBlock::decode(&bytes);
        }
    }
}
