//! What validators sign and how: the bytes of every consensus message, the validator's own
//! Ed25519 key, and Malachite's `Signer`/`Verifier` over them.
//!
//! A precommit for a block signs exactly settlement's [`Vote::signing_bytes`] (height, round,
//! block hash under settlement's vote domain), so the precommits of a decision ARE the ledger's
//! commit certificate. Everything else (prevotes, nil precommits, proposals, validator proofs)
//! signs under a domain of its own, so no signature can be replayed as a precommit.

use std::fmt;
use std::path::Path;

use async_trait::async_trait;
use malachitebft_core_types::{
    NilOrVal, Round, SignedMessage, ValidatorProof, VoteExtensionScope, VoteType,
};
use malachitebft_signing::{Error as SigningError, Signer, VerificationResult, Verifier};
use settlement::block::Vote as LedgerVote;
use settlement::crypto::{Ed25519Key, Signature64, verify_ed25519};
use zeroize::Zeroizing;

use crate::context::{LedgerContext, Proposal, PublicKey, Signature, Vote};

/// Domain of prevotes and nil precommits.
pub const DOMAIN_CONSENSUS_VOTE: &[u8] = b"rempart.consensus.vote.v1";
/// Domain of proposals.
pub const DOMAIN_PROPOSAL: &[u8] = b"rempart.consensus.proposal.v1";
/// Domain of validator proofs (a validator's key vouching for its network peer id).
pub const DOMAIN_VALIDATOR_PROOF: &[u8] = b"rempart.consensus.validator-proof.v1";
/// Domain of vote extensions (disabled on this chain; defined so that nothing is unsigned).
pub const DOMAIN_EXTENSION: &[u8] = b"rempart.consensus.extension.v1";
/// Domain of the network (libp2p) key derived from the validator key.
pub const DOMAIN_NETWORK_KEY: &[u8] = b"rempart.consensus.network-key.v1";

/// A round as signed bytes: -1 for Nil, else the round.
fn round_bytes(round: Round) -> [u8; 8] {
    round.as_i64().to_be_bytes()
}

/// The bytes a validator signs for `vote`.
pub fn vote_signing_bytes(vote: &Vote) -> Vec<u8> {
    if let (VoteType::Precommit, NilOrVal::Val(hash), Some(round)) =
        (vote.vote_type, &vote.value, vote.round.as_u32())
    {
        return LedgerVote {
            height: vote.height.0,
            round,
            block_hash: hash.0,
        }
        .signing_bytes();
    }
    let mut bytes = Vec::with_capacity(DOMAIN_CONSENSUS_VOTE.len() + 50);
    bytes.extend_from_slice(DOMAIN_CONSENSUS_VOTE);
    bytes.push(match vote.vote_type {
        VoteType::Prevote => 1,
        VoteType::Precommit => 2,
    });
    bytes.extend_from_slice(&vote.height.0.to_be_bytes());
    bytes.extend_from_slice(&round_bytes(vote.round));
    match &vote.value {
        NilOrVal::Nil => bytes.push(0),
        NilOrVal::Val(hash) => {
            bytes.push(1);
            bytes.extend_from_slice(&hash.0);
        }
    }
    bytes
}

/// The bytes a proposer signs for `proposal`.
pub fn proposal_signing_bytes(proposal: &Proposal) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(DOMAIN_PROPOSAL.len() + 64);
    bytes.extend_from_slice(DOMAIN_PROPOSAL);
    bytes.extend_from_slice(&proposal.height.0.to_be_bytes());
    bytes.extend_from_slice(&round_bytes(proposal.round));
    bytes.extend_from_slice(&round_bytes(proposal.pol_round));
    bytes.extend_from_slice(&proposal.value.hash.0);
    bytes.extend_from_slice(&proposal.proposer.0.to_be_bytes());
    bytes
}

fn proof_signing_bytes(public_key: &[u8], peer_id: &[u8]) -> Vec<u8> {
    let mut bytes = DOMAIN_VALIDATOR_PROOF.to_vec();
    bytes.extend_from_slice(&ValidatorProof::<LedgerContext>::signing_bytes(
        public_key, peer_id,
    ));
    bytes
}

fn extension_signing_bytes(scope: &VoteExtensionScope<LedgerContext>) -> Vec<u8> {
    let mut bytes = DOMAIN_EXTENSION.to_vec();
    bytes.extend_from_slice(&scope.height.0.to_be_bytes());
    bytes.extend_from_slice(&round_bytes(scope.round));
    bytes.extend_from_slice(&scope.value_id.0);
    bytes.extend_from_slice(&scope.validator_address.0.to_be_bytes());
    bytes
}

/// Why a validator key file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The file cannot be read.
    #[error("validator key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not 64 hex digits.
    #[error("validator key file {0}: expected a 32-byte seed as 64 hex digits")]
    Format(String),
}

/// A validator's own Ed25519 key. The seed is zeroized on drop and never printed.
pub struct ValidatorSigner {
    key: ed25519_dalek::SigningKey,
}

impl fmt::Debug for ValidatorSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ValidatorSigner({})", hex::encode(self.public_key()))
    }
}

impl ValidatorSigner {
    /// The key with this 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            key: ed25519_dalek::SigningKey::from_bytes(seed),
        }
    }

    /// Reads a key file: the seed as 64 hex digits (surrounding whitespace ignored).
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| KeyError::Io {
                    path: path.display().to_string(),
                    source,
                })?,
            );
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), &mut seed[..])
            .map_err(|_| KeyError::Format(path.display().to_string()))?;
        Ok(Self::from_seed(&seed))
    }

    /// A second handle on the same key (the byzantine tests' proxy signs conflicting votes
    /// with it).
    #[cfg(feature = "byzantine")]
    pub fn duplicate(&self) -> Self {
        let seed = Zeroizing::new(self.key.to_bytes());
        Self::from_seed(&seed)
    }

    /// The public key (as in the validator's membership certificate).
    pub fn public_key(&self) -> Ed25519Key {
        self.key.verifying_key().to_bytes()
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Signature64 {
        use ed25519_dalek::Signer as _;
        self.key.sign(message).to_bytes()
    }

    /// The seed of the validator's network (libp2p) identity, derived from its vote key so that
    /// the peer id is stable across restarts without a second secret on disk. The derivation is
    /// one-way: the network key reveals nothing about the vote key.
    pub fn network_key_seed(&self) -> Zeroizing<[u8; 32]> {
        let seed = Zeroizing::new(self.key.to_bytes());
        Zeroizing::new(settlement::crypto::tagged_hash(
            DOMAIN_NETWORK_KEY,
            &[&seed[..]],
        ))
    }
}

#[async_trait]
impl Signer<LedgerContext> for ValidatorSigner {
    async fn sign_vote(
        &self,
        vote: Vote,
    ) -> Result<SignedMessage<LedgerContext, Vote>, SigningError> {
        let signature = Signature(self.sign(&vote_signing_bytes(&vote)));
        Ok(SignedMessage::new(vote, signature))
    }

    async fn sign_proposal(
        &self,
        proposal: Proposal,
    ) -> Result<SignedMessage<LedgerContext, Proposal>, SigningError> {
        let signature = Signature(self.sign(&proposal_signing_bytes(&proposal)));
        Ok(SignedMessage::new(proposal, signature))
    }

    async fn sign_vote_extension(
        &self,
        scope: VoteExtensionScope<LedgerContext>,
        extension: (),
    ) -> Result<SignedMessage<LedgerContext, ()>, SigningError> {
        let signature = Signature(self.sign(&extension_signing_bytes(&scope)));
        Ok(SignedMessage::new(extension, signature))
    }

    async fn sign_validator_proof(
        &self,
        public_key: Vec<u8>,
        peer_id: Vec<u8>,
    ) -> Result<ValidatorProof<LedgerContext>, SigningError> {
        let signature = Signature(self.sign(&proof_signing_bytes(&public_key, &peer_id)));
        Ok(ValidatorProof::new(public_key, peer_id, signature))
    }
}

/// Checks consensus signatures with settlement's Ed25519 verification.
#[derive(Debug, Clone, Copy, Default)]
pub struct LedgerVerifier;

fn verdict(public_key: &PublicKey, message: &[u8], signature: &Signature) -> VerificationResult {
    VerificationResult::from_bool(verify_ed25519(&public_key.0, message, &signature.0))
}

#[async_trait]
impl Verifier<LedgerContext> for LedgerVerifier {
    async fn verify_signed_vote(
        &self,
        vote: &Vote,
        signature: &Signature,
        public_key: &PublicKey,
    ) -> Result<VerificationResult, SigningError> {
        Ok(verdict(public_key, &vote_signing_bytes(vote), signature))
    }

    async fn verify_signed_proposal(
        &self,
        proposal: &Proposal,
        signature: &Signature,
        public_key: &PublicKey,
    ) -> Result<VerificationResult, SigningError> {
        Ok(verdict(
            public_key,
            &proposal_signing_bytes(proposal),
            signature,
        ))
    }

    async fn verify_signed_vote_extension(
        &self,
        scope: &VoteExtensionScope<LedgerContext>,
        _extension: &(),
        signature: &Signature,
        public_key: &PublicKey,
    ) -> Result<VerificationResult, SigningError> {
        Ok(verdict(
            public_key,
            &extension_signing_bytes(scope),
            signature,
        ))
    }

    async fn verify_validator_proof(
        &self,
        proof: &ValidatorProof<LedgerContext>,
    ) -> Result<VerificationResult, SigningError> {
        let Ok(key) = <[u8; 32]>::try_from(proof.public_key.as_slice()) else {
            return Ok(VerificationResult::Invalid);
        };
        Ok(verdict(
            &PublicKey(key),
            &proof_signing_bytes(&proof.public_key, &proof.peer_id),
            &proof.signature,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{Address, BlockHash, Height};

    fn vote(vote_type: VoteType, value: NilOrVal<BlockHash>) -> Vote {
        Vote {
            vote_type,
            height: Height(7),
            round: Round::new(2),
            value,
            validator: Address(1),
        }
    }

    #[test]
    fn a_precommit_signature_is_a_ledger_vote_signature_and_nothing_else_is() {
        let hash = BlockHash([9; 32]);
        let precommit = vote(VoteType::Precommit, NilOrVal::Val(hash));
        let ledger = LedgerVote {
            height: 7,
            round: 2,
            block_hash: hash.0,
        };
        assert_eq!(vote_signing_bytes(&precommit), ledger.signing_bytes());
        let prevote = vote(VoteType::Prevote, NilOrVal::Val(hash));
        let nil = vote(VoteType::Precommit, NilOrVal::Nil);
        let all = [
            vote_signing_bytes(&precommit),
            vote_signing_bytes(&prevote),
            vote_signing_bytes(&nil),
            vote_signing_bytes(&vote(VoteType::Prevote, NilOrVal::Nil)),
        ];
        for i in 0..all.len() {
            for j in i + 1..all.len() {
                assert_ne!(all[i], all[j]);
            }
        }
    }

    #[tokio::test]
    async fn signatures_verify_only_for_what_was_signed() {
        let signer = ValidatorSigner::from_seed(&[3; 32]);
        let key = PublicKey(signer.public_key());
        let hash = BlockHash([1; 32]);
        let signed = signer
            .sign_vote(vote(VoteType::Prevote, NilOrVal::Val(hash)))
            .await
            .unwrap();
        let verifier = LedgerVerifier;
        assert!(
            verifier
                .verify_signed_vote(&signed.message, &signed.signature, &key)
                .await
                .unwrap()
                .is_valid()
        );
        let other = vote(VoteType::Precommit, NilOrVal::Val(hash));
        assert!(
            verifier
                .verify_signed_vote(&other, &signed.signature, &key)
                .await
                .unwrap()
                .is_invalid()
        );
        let proof = signer
            .sign_validator_proof(key.0.to_vec(), vec![5; 38])
            .await
            .unwrap();
        assert!(
            verifier
                .verify_validator_proof(&proof)
                .await
                .unwrap()
                .is_valid()
        );
        let mut forged = proof.clone();
        forged.peer_id[0] ^= 1;
        assert!(
            verifier
                .verify_validator_proof(&forged)
                .await
                .unwrap()
                .is_invalid()
        );
    }
}
