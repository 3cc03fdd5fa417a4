//! Malachite's view of the consortium ledger: the types Tendermint orders (heights, validator
//! addresses, proposals, votes) and the [`LedgerContext`] that builds them.
//!
//! The value consensus agrees on is a [`BlockRef`], the hash of a settlement block; the block
//! itself travels as proposal parts (`crate::stream`) and is checked by the replica before a
//! validator votes. A validator's address is its settlement [`ValidatorId`], so that Malachite's
//! commit certificates convert one-to-one into settlement's (`crate::certificate`).

use std::fmt;

use borsh::{BorshDeserialize, BorshSerialize};
use malachitebft_core_types::{
    self as mc, LinearTimeouts, NilOrVal, Round, SignedExtension, VoteType, VotingPower,
};
use settlement::crypto::{Ed25519Key, Hash32, Signature64};
use settlement::membership::{Membership, RIGHT_PROPOSE, RIGHT_VOTE, ValidatorId};

/// A block height (1 for the first block).
#[derive(
    Copy,
    Clone,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
)]
pub struct Height(pub u64);

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl mc::Height for Height {
    const ZERO: Self = Height(0);
    const INITIAL: Self = Height(1);

    fn increment_by(&self, n: u64) -> Self {
        Height(self.0.saturating_add(n))
    }

    fn decrement_by(&self, n: u64) -> Option<Self> {
        self.0.checked_sub(n).map(Height)
    }

    fn as_u64(&self) -> u64 {
        self.0
    }
}

/// A validator's address: its settlement validator id.
#[derive(
    Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub struct Address(pub ValidatorId);

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl mc::Address for Address {}

/// A block hash, the id of a [`BlockRef`].
#[derive(
    Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub struct BlockHash(pub Hash32);

impl fmt::Display for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0[..8]))
    }
}

/// The value Tendermint decides: a settlement block, named by its hash.
#[derive(
    Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub struct BlockRef {
    /// The block hash ([`settlement::block::BlockHeader::hash`]).
    pub hash: BlockHash,
}

impl mc::Value for BlockRef {
    type Id = BlockHash;

    fn id(&self) -> BlockHash {
        self.hash
    }
}

/// A proposal: the proposer offers a block (by hash) at a height and round.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Proposal {
    /// Height.
    pub height: Height,
    /// Round.
    pub round: Round,
    /// The proposed block.
    pub value: BlockRef,
    /// The round of the proof-of-lock the proposer re-proposes under (Nil if none).
    pub pol_round: Round,
    /// Who proposes.
    pub proposer: Address,
}

impl mc::Proposal<LedgerContext> for Proposal {
    fn height(&self) -> Height {
        self.height
    }

    fn round(&self) -> Round {
        self.round
    }

    fn value(&self) -> &BlockRef {
        &self.value
    }

    fn take_value(self) -> BlockRef {
        self.value
    }

    fn pol_round(&self) -> Round {
        self.pol_round
    }

    fn validator_address(&self) -> &Address {
        &self.proposer
    }
}

/// First part of a streamed proposal: where the block belongs.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct PartInit {
    /// Height.
    pub height: Height,
    /// Round of the proposal.
    pub round: Round,
    /// The proof-of-lock round (Nil for a fresh proposal).
    pub valid_round: Round,
    /// The proposer.
    pub proposer: Address,
    /// Bytes of the encoded block that follow in `Data` parts.
    pub block_bytes: u32,
}

/// A part of a streamed proposal: the encoded block cut into chunks.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum ProposalPart {
    /// Where the block belongs and how long it is.
    Init(PartInit),
    /// A chunk of the encoded block.
    Data(Vec<u8>),
    /// End of the block, with its hash (the receiver recomputes and compares).
    Fin(BlockHash),
}

impl mc::ProposalPart<LedgerContext> for ProposalPart {
    fn is_first(&self) -> bool {
        matches!(self, ProposalPart::Init(_))
    }

    fn is_last(&self) -> bool {
        matches!(self, ProposalPart::Fin(_))
    }
}

/// A prevote or precommit.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Vote {
    /// Prevote or precommit.
    pub vote_type: VoteType,
    /// Height.
    pub height: Height,
    /// Round.
    pub round: Round,
    /// The block voted for, or nil.
    pub value: NilOrVal<BlockHash>,
    /// Who votes.
    pub validator: Address,
}

impl mc::Vote<LedgerContext> for Vote {
    fn height(&self) -> Height {
        self.height
    }

    fn round(&self) -> Round {
        self.round
    }

    fn value(&self) -> &NilOrVal<BlockHash> {
        &self.value
    }

    fn take_value(self) -> NilOrVal<BlockHash> {
        self.value
    }

    fn vote_type(&self) -> VoteType {
        self.vote_type
    }

    fn validator_address(&self) -> &Address {
        &self.validator
    }

    // Vote extensions are disabled on this chain (the policy is `Disabled` at every height),
    // so votes never carry one.
    fn extension(&self) -> Option<&SignedExtension<LedgerContext>> {
        None
    }

    fn take_extension(&mut self) -> Option<SignedExtension<LedgerContext>> {
        None
    }

    fn extend(self, _extension: SignedExtension<LedgerContext>) -> Self {
        self
    }
}

/// An Ed25519 public key (a validator's vote key from its membership certificate).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub Ed25519Key);

/// An Ed25519 signature.
#[derive(
    Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub struct Signature(pub Signature64);

/// The private key type Malachite's signing scheme names. Validators sign through
/// [`crate::signing::ValidatorSigner`]; this only wraps the seed and never prints it.
#[derive(Clone)]
pub struct PrivateKey(pub zeroize::Zeroizing<[u8; 32]>);

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

/// Why a key or signature does not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDecodingError(pub &'static str);

impl fmt::Display for KeyDecodingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Ed25519, as settlement verifies it (`settlement::crypto::verify_ed25519`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ed25519Scheme;

impl mc::SigningScheme for Ed25519Scheme {
    type DecodingError = KeyDecodingError;
    type Signature = Signature;
    type PublicKey = PublicKey;
    type PrivateKey = PrivateKey;

    fn decode_signature(bytes: &[u8]) -> Result<Signature, KeyDecodingError> {
        bytes
            .try_into()
            .map(Signature)
            .map_err(|_| KeyDecodingError("an Ed25519 signature is 64 bytes"))
    }

    fn encode_signature(signature: &Signature) -> Vec<u8> {
        signature.0.to_vec()
    }

    fn decode_public_key(bytes: &[u8]) -> Result<PublicKey, KeyDecodingError> {
        bytes
            .try_into()
            .map(PublicKey)
            .map_err(|_| KeyDecodingError("an Ed25519 public key is 32 bytes"))
    }

    fn encode_public_key(public_key: &PublicKey) -> Vec<u8> {
        public_key.0.to_vec()
    }
}

/// A voting member as Malachite sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validator {
    /// Its id.
    pub address: Address,
    /// Its vote key.
    pub public_key: PublicKey,
    /// One vote each: the quorum rule is settlement's `floor(2n/3) + 1` of the voters.
    pub voting_power: VotingPower,
    /// May it propose blocks (settlement's `RIGHT_PROPOSE`)?
    pub may_propose: bool,
}

impl mc::Validator<LedgerContext> for Validator {
    fn address(&self) -> &Address {
        &self.address
    }

    fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    fn voting_power(&self) -> VotingPower {
        self.voting_power
    }
}

/// The voting members, sorted by id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatorSet {
    validators: Vec<Validator>,
}

impl ValidatorSet {
    /// The voting members of `membership` (`ids` lists the ids to look at), one vote each.
    /// Returns None if no member may vote.
    pub fn from_membership(
        membership: &Membership,
        ids: impl IntoIterator<Item = ValidatorId>,
    ) -> Option<Self> {
        let mut validators: Vec<Validator> = ids
            .into_iter()
            .filter_map(|id| {
                let member = membership.member(id)?;
                (member.rights & RIGHT_VOTE != 0).then_some(Validator {
                    address: Address(id),
                    public_key: PublicKey(member.public_key),
                    voting_power: 1,
                    may_propose: member.rights & RIGHT_PROPOSE != 0,
                })
            })
            .collect();
        validators.sort_by_key(|v| v.address);
        validators.dedup_by_key(|v| v.address);
        (!validators.is_empty()).then_some(Self { validators })
    }

    /// The validators, sorted by id.
    pub fn validators(&self) -> &[Validator] {
        &self.validators
    }
}

impl mc::ValidatorSet<LedgerContext> for ValidatorSet {
    fn count(&self) -> usize {
        self.validators.len()
    }

    fn total_voting_power(&self) -> VotingPower {
        self.validators.iter().map(|v| v.voting_power).sum()
    }

    fn get_by_address(&self, address: &Address) -> Option<&Validator> {
        self.validators
            .binary_search_by_key(address, |v| v.address)
            .ok()
            .map(|index| &self.validators[index])
    }

    fn get_by_index(&self, index: usize) -> Option<&Validator> {
        self.validators.get(index)
    }
}

/// Malachite's context for the ledger.
#[derive(Clone, Copy, Debug, Default)]
pub struct LedgerContext;

impl mc::Context for LedgerContext {
    type Address = Address;
    type Height = Height;
    type ProposalPart = ProposalPart;
    type Proposal = Proposal;
    type Validator = Validator;
    type ValidatorSet = ValidatorSet;
    type Timeouts = LinearTimeouts;
    type Value = BlockRef;
    type Vote = Vote;
    type Extension = ();
    type SigningScheme = Ed25519Scheme;

    /// Round robin over the validators that may propose, advancing by one per height and per
    /// round, so a crashed proposer costs one round.
    fn select_proposer<'a>(
        &self,
        validator_set: &'a ValidatorSet,
        height: Height,
        round: Round,
    ) -> &'a Validator {
        let proposers: Vec<&Validator> = validator_set
            .validators
            .iter()
            .filter(|v| v.may_propose)
            .collect();
        let candidates: Vec<&Validator> = if proposers.is_empty() {
            validator_set.validators.iter().collect()
        } else {
            proposers
        };
        let step = height
            .0
            .wrapping_add(u64::from(round.as_u32().unwrap_or(0)));
        // A validator set is never empty (`ValidatorSet::from_membership`).
        candidates[(step % candidates.len() as u64) as usize]
    }

    fn new_proposal(
        &self,
        height: Height,
        round: Round,
        value: BlockRef,
        pol_round: Round,
        address: Address,
    ) -> Proposal {
        Proposal {
            height,
            round,
            value,
            pol_round,
            proposer: address,
        }
    }

    fn new_prevote(
        &self,
        height: Height,
        round: Round,
        value_id: NilOrVal<BlockHash>,
        address: Address,
    ) -> Vote {
        Vote {
            vote_type: VoteType::Prevote,
            height,
            round,
            value: value_id,
            validator: address,
        }
    }

    fn new_precommit(
        &self,
        height: Height,
        round: Round,
        value_id: NilOrVal<BlockHash>,
        address: Address,
    ) -> Vote {
        Vote {
            vote_type: VoteType::Precommit,
            height,
            round,
            value: value_id,
            validator: address,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use malachitebft_core_types::{Context as _, ValidatorSet as _};
    use settlement::membership::fixture::Consortium;

    #[test]
    fn proposers_rotate_over_heights_and_rounds() {
        let consortium = Consortium::new(4);
        let membership = consortium.genesis.verify().unwrap();
        let set = ValidatorSet::from_membership(&membership, 1..=4).unwrap();
        assert_eq!(set.count(), 4);
        let ctx = LedgerContext;
        let pick = |h: u64, r: u32| ctx.select_proposer(&set, Height(h), Round::new(r)).address;
        assert_ne!(pick(1, 0), pick(2, 0));
        assert_eq!(pick(1, 1), pick(2, 0));
        let all: std::collections::BTreeSet<_> = (1..=4).map(|h| pick(h, 0)).collect();
        assert_eq!(all.len(), 4);
    }
}
