//! A misbehaving validator, for the tests that show the others detect it and do not diverge
//! (feature `byzantine`, compiled only into this crate's tests: a production validator cannot
//! be configured to misbehave).
//!
//! Two faults:
//! - Malachite's own [`ByzantineNetworkProxy`] between the consensus actor and the network:
//!   with `equivocate_votes` the validator signs and sends, after each vote, a second vote of
//!   the same height, round and type for another block (the hash with its last byte flipped).
//!   Conflicting precommits become ledger evidence at the honest validators
//!   ([`crate::misbehaviour`]).
//! - `propose_ungated`: every block this validator builds carries one transfer without a gate
//!   decision. Honest validators refuse such a block and record the proposer
//!   ([`crate::misbehaviour::InvalidProposal`]).
//!
//! [`ByzantineNetworkProxy`]: malachitebft_engine_byzantine::ByzantineNetworkProxy

use malachitebft_core_types::ValueId;
use malachitebft_engine_byzantine::{ByzantineConfig, ConflictingVoteValueFn};
use serde::{Deserialize, Serialize};
use settlement::ledger::{Batch, Transfer, TransferEntry, TransferFlags};

use crate::context::{BlockHash, LedgerContext};
use crate::workload::WORKLOAD_LEDGER;

/// Ids of the ungated transfers a faulty proposer slips in: far above any workload id.
const UNGATED_ID_BASE: u128 = 0xBAD0_0000_0000_0000_0000_0000_0000_0000;

/// How a validator misbehaves.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ByzantineOptions {
    /// Malachite's attack configuration (equivocate or drop votes and proposals, ...).
    #[serde(default)]
    pub malachite: ByzantineConfig,
    /// Put one ungated transfer into every block this validator builds.
    #[serde(default)]
    pub propose_ungated: bool,
}

/// The block a conflicting vote names: the original hash with its last byte flipped (for a
/// nil vote, a hash of all ones).
pub fn conflicting_vote_value() -> ConflictingVoteValueFn<LedgerContext> {
    Box::new(|original: Option<&ValueId<LedgerContext>>| {
        let mut hash = original.map_or([0xFF; 32], |hash| hash.0);
        hash[31] ^= 0xFF;
        BlockHash(hash)
    })
}

/// The id of the ungated transfer a faulty proposer slips into its block at `height`.
pub fn ungated_transfer_id(height: u64) -> u128 {
    UNGATED_ID_BASE + u128::from(height)
}

/// The batch a faulty proposer adds to its block at `height`: one transfer with no gate
/// decision and no signature.
pub fn ungated_batch(height: u64) -> Batch {
    Batch::CreateTransfers {
        entries: vec![TransferEntry {
            transfer: Transfer {
                id: ungated_transfer_id(height),
                debit_account_id: 1,
                credit_account_id: 2,
                amount: 1,
                pending_id: 0,
                user_data: 0,
                timeout_s: 0,
                ledger: WORKLOAD_LEDGER,
                code: 1,
                flags: TransferFlags(0),
                decision_hash: [0; 32],
            },
            gate: None,
            signature: None,
        }],
        batch_signature: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conflicting_vote_names_another_block() {
        let make = conflicting_vote_value();
        let original = BlockHash([7; 32]);
        assert_ne!(make(Some(&original)), original);
        assert_ne!(make(None), make(Some(&original)));
    }

    #[test]
    fn the_options_parse_from_a_validator_config() {
        let options: ByzantineOptions = serde_json::from_str(
            r#"{"malachite": {"equivocate_votes": {"mode": "always"}}, "propose_ungated": true}"#,
        )
        .expect("parse");
        assert!(options.malachite.equivocate_votes.is_set());
        assert!(options.propose_ungated);
        assert!(serde_json::from_str::<ByzantineOptions>(r#"{"explode": true}"#).is_err());
    }
}
