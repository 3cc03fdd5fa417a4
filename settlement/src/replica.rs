//! A validator's copy of the ledger: the state machine, its block store and the membership,
//! tied together. This is the seam the consensus engine plugs into: it proposes with
//! [`Replica::propose`], checks others' proposals with [`Replica::validate_proposal`] before
//! voting, and hands every decided block with its commit certificate to [`Replica::commit`],
//! in height order. Replication therefore only has to deliver decided blocks and their
//! certificates; everything else is recomputed and checked here.
//!
//! A validator that votes for (or builds) the block it will most likely commit can use
//! [`Replica::propose_staged`] and [`Replica::validate_staged`] instead: the block is executed
//! once and left staged in the ledger, and [`Replica::commit`] of that same block (same hash)
//! then only checks its header and certificate and stores it, without executing it again.
//!
//! On start ([`Replica::open`]) the validator replays its stored blocks from genesis up to the
//! store's applied height, checking each block's certificate, chain link, transactions root and
//! state hash; [`verify_chain`] is the same check run by `rempart ledger verify`.

use crate::block::{BLOCK_VERSION, Block, BlockHeader, CommittedBlock, transactions_root};
use crate::crypto::Hash32;
use crate::ledger::verified::SignatureCache;
use crate::ledger::{Batch, BlockOutcome, Ledger, LedgerError};
use crate::membership::{GenesisConfig, Membership, MembershipError, ValidatorId};
use crate::store::{BlockStore, StoreError};

/// Why a replica cannot go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicaError {
    /// The genesis configuration does not verify.
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// The store failed or is corrupt.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A block is not valid at its height.
    #[error("block at height {height} is invalid: {reason}")]
    BadBlock {
        /// Its height.
        height: u64,
        /// Why.
        reason: String,
    },
    /// The ledger refused to apply a block (a machine failure or an invariant).
    #[error("block at height {height}: {source}")]
    Ledger {
        /// Its height.
        height: u64,
        /// The ledger's error.
        source: LedgerError,
    },
    /// The replica stopped after an earlier fatal error.
    #[error("replica stopped after a fatal error at height {0}")]
    Stopped(u64),
}

/// Ledger + store + membership.
#[derive(Debug)]
pub struct Replica<S: BlockStore> {
    membership: Membership,
    ledger: Ledger,
    store: S,
    head_hash: Hash32,
    /// Set after a block whose state hash differs from ours was committed: fail-stop.
    stopped: bool,
    /// The block staged in the ledger (its hash and outcome), if any.
    staged: Option<(Hash32, BlockOutcome)>,
}

impl<S: BlockStore> Replica<S> {
    /// Verifies the genesis configuration and replays the store's blocks.
    pub fn open(
        genesis: &GenesisConfig,
        store: S,
        verify_threads: usize,
    ) -> Result<Self, ReplicaError> {
        let membership = genesis.verify()?;
        let mut replica = Self {
            membership,
            ledger: Ledger::new(&genesis.ledger_config(verify_threads)),
            store,
            head_hash: genesis.hash(),
            stopped: false,
            staged: None,
        };
        let applied = replica.store.applied_height()?;
        for height in 1..=applied {
            let committed = replica.store.read(height)?;
            replica.apply_checked(&committed)?;
        }
        Ok(replica)
    }

    /// The ledger. While a block is staged ([`Replica::validate_staged`]), its accounts and
    /// transfers show that block's changes (see [`Ledger::stage`]); [`Replica::discard_staged`]
    /// takes them back.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Lets the ledger count the signatures recorded in `cache` (verified ahead of execution by
    /// a `ledger::verified::Preverifier`) as verified; see [`Ledger::use_signature_cache`].
    pub fn use_signature_cache(&mut self, cache: std::sync::Arc<SignatureCache>) {
        self.ledger.use_signature_cache(cache);
    }

    /// The membership.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Gives the store back.
    pub fn into_store(self) -> S {
        self.store
    }

    /// Height of the last committed block.
    pub fn height(&self) -> u64 {
        self.ledger.height()
    }

    /// Hash of the last committed block (the genesis hash at height 0).
    pub fn head_hash(&self) -> Hash32 {
        self.head_hash
    }

    /// Builds the next block from `batches`: executes it on a scratch basis (the ledger is left
    /// unchanged) to fill in the state hash.
    pub fn propose(
        &mut self,
        proposer: ValidatorId,
        timestamp_us: u64,
        batches: Vec<Batch>,
    ) -> Result<Block, ReplicaError> {
        self.propose_with_outcome(proposer, timestamp_us, batches)
            .map(|(block, _)| block)
    }

    /// [`Replica::propose`], also returning what executing the block gives (per-batch results):
    /// a proposer that is the only validator (the node's single-process mode) uses it to leave
    /// out transfers that would fail, before their ids are marked failed for good.
    pub fn propose_with_outcome(
        &mut self,
        proposer: ValidatorId,
        timestamp_us: u64,
        batches: Vec<Batch>,
    ) -> Result<(Block, BlockOutcome), ReplicaError> {
        self.build(proposer, timestamp_us, batches, false)
    }

    /// [`Replica::propose`], leaving the block staged: committing it later does not execute it
    /// again. A block staged before is discarded.
    pub fn propose_staged(
        &mut self,
        proposer: ValidatorId,
        timestamp_us: u64,
        batches: Vec<Batch>,
    ) -> Result<Block, ReplicaError> {
        self.build(proposer, timestamp_us, batches, true)
            .map(|(block, _)| block)
    }

    /// [`Replica::propose_staged`], also returning the outcome of executing the block: a
    /// consortium proposer uses it to leave out batches the validators would refuse for want of
    /// authority (see [`BlockOutcome::authority_refusals`]).
    pub fn propose_staged_with_outcome(
        &mut self,
        proposer: ValidatorId,
        timestamp_us: u64,
        batches: Vec<Batch>,
    ) -> Result<(Block, BlockOutcome), ReplicaError> {
        self.build(proposer, timestamp_us, batches, true)
    }

    fn build(
        &mut self,
        proposer: ValidatorId,
        timestamp_us: u64,
        batches: Vec<Batch>,
        stage: bool,
    ) -> Result<(Block, BlockOutcome), ReplicaError> {
        self.ensure_running()?;
        self.staged = None;
        let height = self.height() + 1;
        let outcome = if stage {
            self.ledger.stage(height, timestamp_us, &batches)
        } else {
            self.ledger.dry_run(height, timestamp_us, &batches)
        }
        .map_err(|source| ReplicaError::Ledger { height, source })?;
        let block = Block {
            header: BlockHeader {
                version: BLOCK_VERSION,
                height,
                previous_hash: self.head_hash,
                timestamp_us,
                transactions_root: transactions_root(&batches),
                state_hash: outcome.state_hash,
                proposer,
            },
            batches,
        };
        if stage {
            self.staged = Some((block.hash(), outcome.clone()));
        }
        Ok((block, outcome))
    }

    /// What a validator checks before voting for a proposal: the header fits the chain, and
    /// executing the block gives the state hash it claims. The ledger is left unchanged.
    pub fn validate_proposal(&mut self, block: &Block) -> Result<BlockOutcome, ReplicaError> {
        self.validate(block, false)
    }

    /// [`Replica::validate_proposal`], leaving a valid block staged (an invalid one is taken
    /// back): committing it later does not execute it again. A block staged before is
    /// discarded.
    pub fn validate_staged(&mut self, block: &Block) -> Result<BlockOutcome, ReplicaError> {
        self.validate(block, true)
    }

    /// Takes back the staged block, if any (the ledger is then the last committed state).
    pub fn discard_staged(&mut self) {
        self.staged = None;
        self.ledger.discard_staged();
    }

    /// Hash of the staged block, if any.
    pub fn staged_hash(&self) -> Option<Hash32> {
        self.staged.as_ref().map(|(hash, _)| *hash)
    }

    fn validate(&mut self, block: &Block, stage: bool) -> Result<BlockOutcome, ReplicaError> {
        self.ensure_running()?;
        self.discard_staged();
        self.check_header(block)?;
        let height = block.header.height;
        let timestamp_us = block.header.timestamp_us;
        let outcome = if stage {
            self.ledger.stage(height, timestamp_us, &block.batches)
        } else {
            self.ledger.dry_run(height, timestamp_us, &block.batches)
        }
        .map_err(|source| ReplicaError::Ledger { height, source })?;
        if outcome.state_hash != block.header.state_hash {
            self.ledger.discard_staged();
            return Err(ReplicaError::BadBlock {
                height,
                reason: "state hash differs from the result of executing the block".into(),
            });
        }
        if stage {
            self.staged = Some((block.hash(), outcome.clone()));
        }
        Ok(outcome)
    }

    /// Applies a decided block (with its commit certificate) and stores it. Blocks must come in
    /// height order; a block already committed at its height is refused with `BadBlock`. If
    /// this very block is staged, its staged execution is committed instead of executing it
    /// again (its header and certificate are checked all the same); any other staged block is
    /// discarded.
    pub fn commit(&mut self, committed: CommittedBlock) -> Result<BlockOutcome, ReplicaError> {
        self.ensure_running()?;
        let outcome = match self.staged.take() {
            Some((hash, outcome)) if hash == committed.block.hash() => {
                self.commit_staged(&committed, hash, outcome)?
            }
            _ => {
                self.ledger.discard_staged();
                self.apply_checked(&committed)?
            }
        };
        self.store.append(&committed, &outcome.effects)?;
        Ok(outcome)
    }

    fn commit_staged(
        &mut self,
        committed: &CommittedBlock,
        hash: Hash32,
        outcome: BlockOutcome,
    ) -> Result<BlockOutcome, ReplicaError> {
        let block = &committed.block;
        let height = block.header.height;
        let checked = self.check_header(block).and_then(|()| {
            self.membership
                .verify_certificate(&committed.certificate, height, &hash)
                .map_err(|error| ReplicaError::BadBlock {
                    height,
                    reason: error.to_string(),
                })
        });
        if let Err(error) = checked {
            self.ledger.discard_staged();
            return Err(error);
        }
        // The staged outcome's state hash was checked against this header when it was staged
        // (or the header was built from it); the hash covers the header, so it still holds.
        if !self.ledger.commit_staged() || outcome.state_hash != block.header.state_hash {
            self.stopped = true;
            return Err(ReplicaError::BadBlock {
                height,
                reason: "the staged execution does not match the committed block".into(),
            });
        }
        self.head_hash = hash;
        Ok(outcome)
    }

    fn ensure_running(&self) -> Result<(), ReplicaError> {
        if self.stopped {
            Err(ReplicaError::Stopped(self.height() + 1))
        } else {
            Ok(())
        }
    }

    fn check_header(&self, block: &Block) -> Result<(), ReplicaError> {
        let header = &block.header;
        let height = header.height;
        let bad = |reason: String| Err(ReplicaError::BadBlock { height, reason });
        if height != self.height() + 1 {
            return bad(format!("expected height {}", self.height() + 1));
        }
        if header.previous_hash != self.head_hash {
            return bad("previous hash does not match the chain".into());
        }
        if !self.membership.may_propose(header.proposer) {
            return bad(format!("proposer {} may not propose", header.proposer));
        }
        if header.timestamp_us <= self.ledger.timestamp_us() {
            return bad("timestamp does not increase".into());
        }
        if transactions_root(&block.batches) != header.transactions_root {
            return bad("transactions root does not match the batches".into());
        }
        Ok(())
    }

    fn apply_checked(&mut self, committed: &CommittedBlock) -> Result<BlockOutcome, ReplicaError> {
        let block = &committed.block;
        let height = block.header.height;
        self.check_header(block)?;
        let hash = block.hash();
        self.membership
            .verify_certificate(&committed.certificate, height, &hash)
            .map_err(|error| ReplicaError::BadBlock {
                height,
                reason: error.to_string(),
            })?;
        let outcome = self
            .ledger
            .apply_block(height, block.header.timestamp_us, &block.batches)
            .map_err(|source| {
                self.stopped = true;
                ReplicaError::Ledger { height, source }
            })?;
        if outcome.state_hash != block.header.state_hash {
            // A quorum certified a state we do not reach: our copy diverged (or a quorum is
            // faulty). Either way, stop rather than serve a wrong ledger.
            self.stopped = true;
            return Err(ReplicaError::BadBlock {
                height,
                reason: "state hash after applying differs from the header's".into(),
            });
        }
        self.head_hash = hash;
        Ok(outcome)
    }
}

/// What [`verify_chain`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Blocks checked.
    pub height: u64,
    /// Hash of the last block.
    pub head_hash: Hash32,
    /// State hash after the last block.
    pub state_hash: Hash32,
    /// Accounts in the replayed ledger.
    pub accounts: usize,
    /// Transfers in the replayed ledger.
    pub transfers: usize,
}

/// Checks a whole stored chain: every block's certificate, link, transactions root, and the
/// balances replayed from genesis (state hash per block, then the full invariant check).
pub fn verify_chain<S: BlockStore>(
    genesis: &GenesisConfig,
    store: S,
) -> Result<ChainReport, ReplicaError> {
    let replica = Replica::open(genesis, store, 1)?;
    let height = replica.height();
    replica
        .ledger()
        .check_invariants_full()
        .map_err(|what| ReplicaError::Ledger {
            height,
            source: LedgerError::InvariantViolated { height, what },
        })?;
    Ok(ChainReport {
        height,
        head_hash: replica.head_hash(),
        state_hash: replica.ledger().state_hash(),
        accounts: replica.ledger().account_count(),
        transfers: replica.ledger().transfer_count(),
    })
}
