//! The ledger state machine: accounts and transfers with TigerBeetle's semantics (two-phase
//! transfers with timeouts, linked chains, balance limits, client-chosen ids as idempotency
//! keys), plus what a consortium needs on top: every debit is authorised by its account's
//! controller (secp256k1), every transfer is approved by the compliance gate (Ed25519).
//!
//! It is deterministic and does no I/O: a block (height, timestamp, batches) goes in, results,
//! effects and the new state hash come out. Every validator applying the same blocks in the
//! same order holds the same state and computes the same hash.
//!
//! # Layout
//! - [`types`]: accounts, transfers, batches and their encodings.
//! - [`results`]: the numbered result codes.
//! - [`verified`]: signatures verified ahead of execution (a validator's mempool).
//! - [`Ledger`]: the state and [`Ledger::apply_block`].
//!
//! Architecture Invariant: after every block, for every ledger (asset), total debits equal
//! total credits, pending and posted, and no account breaks its balance limit; a violation
//! stops the ledger (every later call fails) rather than let a wrong balance be replicated.

pub mod results;
pub mod types;
pub mod verified;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use crate::codec::Writer;
use crate::crypto::{
    DOMAIN_STATE, Ed25519Key, Hash32, ParsedEd25519Key, controller_key_is_valid,
    gate_approval_message, parse_ed25519, tagged_hash, verify_controller, verify_ed25519_parsed,
};
use crate::limits::{ACCOUNTS_MAX, TIMEOUT_SECONDS_MAX, TRANSFERS_MAX, TRANSFERS_PER_BLOCK_MAX};
pub use results::{CreateAccountResult, CreateTransferResult};
pub use types::*;
use verified::{SignatureCache, Verified};

/// What every validator must agree on before the first block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerConfig {
    /// Ed25519 keys of the compliance gate; a transfer needs a decision signed by one of them.
    pub gate_keys: Vec<Ed25519Key>,
    /// The state hash before the first block (the genesis hash, so that two chains with
    /// different genesis never share a state hash).
    pub genesis_hash: Hash32,
    /// Threads used to verify gate and batch signatures (1: on the caller's thread). The result
    /// never depends on it; only the speed does.
    pub verify_threads: usize,
}

/// Failures of the machine (not business refusals).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// Blocks must be applied at consecutive heights.
    #[error("block height {got} does not follow the ledger's height {expected_previous}")]
    HeightMismatch {
        /// The ledger's current height.
        expected_previous: u64,
        /// The block's height.
        got: u64,
    },
    /// Block timestamps must strictly increase.
    #[error("block timestamp {got_us} µs is not after the previous block's {previous_us} µs")]
    TimestampNotIncreasing {
        /// The previous block's timestamp.
        previous_us: u64,
        /// The block's timestamp.
        got_us: u64,
    },
    /// The block holds more transfers than a block may.
    #[error("block holds {0} transfers, above the limit")]
    BlockTooLarge(usize),
    /// An invariant failed: the ledger has stopped (fail-stop) and refuses every later block.
    #[error("ledger invariant violated at height {height}: {what}")]
    InvariantViolated {
        /// The height being applied.
        height: u64,
        /// What failed.
        what: String,
    },
}

/// The results of one batch, in the batch's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchResults {
    /// One result per account.
    Accounts(Vec<CreateAccountResult>),
    /// One result per transfer.
    Transfers(Vec<CreateTransferResult>),
}

/// What a block changed: the final state of every account and transfer it touched, sorted by
/// id. Stores persist this (set-based) and it feeds the state hash.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BlockEffects {
    /// The block's height.
    pub height: u64,
    /// The block's timestamp.
    pub timestamp_us: u64,
    /// Accounts created or whose balances or flags changed, in their final state.
    pub accounts: Vec<Account>,
    /// Transfers created, and pending transfers whose status changed, in their final state.
    pub transfers: Vec<TransferRecord>,
    /// Pending transfers that timed out at the start of the block, in expiry order.
    pub expired: Vec<u128>,
    /// Ids whose first attempt failed in this block, with the failure.
    pub failed: Vec<(u128, CreateTransferResult)>,
}

/// The outcome of applying a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockOutcome {
    /// Per batch, per event.
    pub results: Vec<BatchResults>,
    /// What changed.
    pub effects: BlockEffects,
    /// The state hash after the block.
    pub state_hash: Hash32,
}

impl BlockOutcome {
    /// The entries refused for want of authority (no or a wrongly signed gate decision, no or a
    /// wrong controller signature), as (batch index, entry index, result). These refusals do
    /// not depend on the ledger's state, so an honest proposer, which executes its block before
    /// offering it, never includes them: a proposed block that holds one is the proposer's
    /// fault (see the consensus crate's misbehaviour records).
    pub fn authority_refusals(&self) -> Vec<(usize, usize, CreateTransferResult)> {
        let mut out = Vec::new();
        for (batch, results) in self.results.iter().enumerate() {
            if let BatchResults::Transfers(results) = results {
                for (entry, result) in results.iter().enumerate() {
                    if result.is_authority_refusal() {
                        out.push((batch, entry, *result));
                    }
                }
            }
        }
        out
    }
}

/// Per-ledger (asset) sums over all accounts, kept modulo 2^128: equality modulo 2^128 still
/// catches any imbalance a single block can cause, and the sums can never overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LedgerTotals {
    /// Sum of `debits_pending`.
    pub debits_pending: u128,
    /// Sum of `debits_posted`.
    pub debits_posted: u128,
    /// Sum of `credits_pending`.
    pub credits_pending: u128,
    /// Sum of `credits_posted`.
    pub credits_posted: u128,
}

/// What [`Ledger::commit_staged`] still has to apply of a staged block.
#[derive(Debug, Clone)]
struct StagedBlock {
    height: u64,
    timestamp_us: u64,
    state_hash: Hash32,
    delta: BTreeMap<u32, LedgerTotals>,
}

/// One step to take back a mutation (for linked chains and dry runs).
#[derive(Debug, Clone)]
enum Undo {
    Account(u128, Option<Account>),
    Transfer(u128, Option<TransferRecord>),
    ExpiryInserted(u64, u128),
    ExpiryRemoved(u64, u128),
}

/// How a transfer's debit is authorised within its batch.
#[derive(Debug, Clone, Copy)]
enum BatchAuth<'a> {
    /// Each entry carries its own signature.
    PerTransfer,
    /// One signature for the batch, by `signer`; `valid` says whether it verified.
    Batch {
        signer: &'a crate::crypto::ControllerKey,
        valid: bool,
    },
}

/// The ledger.
#[derive(Debug, Clone)]
pub struct Ledger {
    /// Configured gate keys, parsed once (a key that does not parse approves nothing).
    gate_keys: HashMap<Ed25519Key, ParsedEd25519Key>,
    verify_threads: usize,
    /// Signatures verified ahead of execution (None: verify everything here).
    signature_cache: Option<Arc<SignatureCache>>,
    accounts: HashMap<u128, Account>,
    transfers: HashMap<u128, TransferRecord>,
    /// Ids whose first attempt failed (for their own reason, after authorisation), with why.
    failed: HashMap<u128, CreateTransferResult>,
    /// Pending transfers with a timeout, by expiry time then id: the deterministic order in
    /// which they expire.
    expiries: BTreeSet<(u64, u128)>,
    totals: BTreeMap<u32, LedgerTotals>,
    height: u64,
    timestamp_us: u64,
    state_hash: Hash32,
    /// Set when an invariant failed: the ledger refuses to go on.
    poisoned: Option<String>,
    /// A block executed by [`Ledger::stage`], neither committed nor discarded yet: its changes
    /// are in the maps above (with `undo` to take them back); the rest of it is here.
    staged: Option<StagedBlock>,
    // Per-block scratch, empty between blocks.
    undo: Vec<Undo>,
    /// Balances of each touched account before the block (None: created in the block).
    before: HashMap<u128, Option<Account>>,
    touched_transfers: BTreeSet<u128>,
    block_failed: Vec<(u128, CreateTransferResult)>,
}

impl Ledger {
    /// An empty ledger at height 0.
    pub fn new(config: &LedgerConfig) -> Self {
        Self {
            gate_keys: config
                .gate_keys
                .iter()
                .filter_map(|key| parse_ed25519(key).map(|parsed| (*key, parsed)))
                .collect(),
            verify_threads: config.verify_threads.max(1),
            signature_cache: None,
            accounts: HashMap::new(),
            transfers: HashMap::new(),
            failed: HashMap::new(),
            expiries: BTreeSet::new(),
            totals: BTreeMap::new(),
            height: 0,
            timestamp_us: 0,
            state_hash: config.genesis_hash,
            poisoned: None,
            staged: None,
            undo: Vec::new(),
            before: HashMap::new(),
            touched_transfers: BTreeSet::new(),
            block_failed: Vec::new(),
        }
    }

    /// Counts the signatures recorded in `cache` as valid instead of verifying them again (see
    /// [`verified`]: the results do not change, only when the verification work is done).
    pub fn use_signature_cache(&mut self, cache: Arc<SignatureCache>) {
        self.signature_cache = Some(cache);
    }

    /// Height of the last applied block (0 before the first).
    pub fn height(&self) -> u64 {
        self.height
    }

    /// Timestamp of the last applied block.
    pub fn timestamp_us(&self) -> u64 {
        self.timestamp_us
    }

    /// The state hash after the last applied block.
    pub fn state_hash(&self) -> Hash32 {
        self.state_hash
    }

    /// An account.
    pub fn account(&self, id: u128) -> Option<&Account> {
        self.accounts.get(&id)
    }

    /// A transfer.
    pub fn transfer(&self, id: u128) -> Option<&TransferRecord> {
        self.transfers.get(&id)
    }

    /// Why this id's first attempt failed, if it did.
    pub fn failure(&self, id: u128) -> Option<CreateTransferResult> {
        self.failed.get(&id).copied()
    }

    /// Every account, in no particular order.
    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        self.accounts.values()
    }

    /// Number of accounts.
    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// Number of applied transfers.
    pub fn transfer_count(&self) -> usize {
        self.transfers.len()
    }

    /// Per-ledger totals.
    pub fn totals(&self) -> &BTreeMap<u32, LedgerTotals> {
        &self.totals
    }

    /// Applies a block and keeps its effects. A staged block is discarded first.
    pub fn apply_block(
        &mut self,
        height: u64,
        timestamp_us: u64,
        batches: &[Batch],
    ) -> Result<BlockOutcome, LedgerError> {
        self.discard_staged();
        let outcome = self.execute(height, timestamp_us, batches);
        self.undo.clear();
        let (outcome, delta) = outcome?;
        self.finish_block(height, timestamp_us, outcome.state_hash, delta);
        Ok(outcome)
    }

    /// Moves the ledger to the end of a block whose changes are already in the maps.
    fn finish_block(
        &mut self,
        height: u64,
        timestamp_us: u64,
        state_hash: Hash32,
        delta: BTreeMap<u32, LedgerTotals>,
    ) {
        for (ledger, d) in delta {
            let totals = self.totals.entry(ledger).or_default();
            totals.debits_pending = totals.debits_pending.wrapping_add(d.debits_pending);
            totals.debits_posted = totals.debits_posted.wrapping_add(d.debits_posted);
            totals.credits_pending = totals.credits_pending.wrapping_add(d.credits_pending);
            totals.credits_posted = totals.credits_posted.wrapping_add(d.credits_posted);
        }
        self.height = height;
        self.timestamp_us = timestamp_us;
        self.state_hash = state_hash;
    }

    /// Executes the next block and keeps its changes staged, so that committing it later
    /// ([`Ledger::commit_staged`]) costs nothing like a second execution: what a validator runs
    /// on the proposal it votes for (or builds), which is the block it then commits unless the
    /// round fails. A block staged earlier is discarded first; an error stages nothing.
    ///
    /// While a block is staged, [`Ledger::account`], [`Ledger::transfer`],
    /// [`Ledger::failure`], [`Ledger::accounts`] and the counts show its changes, whereas the
    /// height, timestamp, state hash and totals are still the last committed block's.
    /// [`Ledger::apply_block`] and [`Ledger::dry_run`] discard a staged block.
    pub fn stage(
        &mut self,
        height: u64,
        timestamp_us: u64,
        batches: &[Batch],
    ) -> Result<BlockOutcome, LedgerError> {
        self.discard_staged();
        match self.execute(height, timestamp_us, batches) {
            Ok((outcome, delta)) => {
                self.staged = Some(StagedBlock {
                    height,
                    timestamp_us,
                    state_hash: outcome.state_hash,
                    delta,
                });
                Ok(outcome)
            }
            Err(error) => {
                self.take_back_block();
                Err(error)
            }
        }
    }

    /// Height of the staged block, if one is staged.
    pub fn staged_height(&self) -> Option<u64> {
        self.staged.as_ref().map(|staged| staged.height)
    }

    /// Commits the staged block (the ledger is then exactly as if [`Ledger::apply_block`] had
    /// applied it); returns false, changing nothing, if no block is staged.
    pub fn commit_staged(&mut self) -> bool {
        let Some(staged) = self.staged.take() else {
            return false;
        };
        self.undo.clear();
        self.block_failed.clear();
        self.finish_block(
            staged.height,
            staged.timestamp_us,
            staged.state_hash,
            staged.delta,
        );
        true
    }

    /// Takes back the staged block's changes, if one is staged.
    pub fn discard_staged(&mut self) {
        if self.staged.take().is_some() {
            self.take_back_block();
        }
    }

    /// Takes back the changes of the block being executed (unless an invariant failed: then
    /// the ledger stays stopped as it is).
    fn take_back_block(&mut self) {
        if self.poisoned.is_none() {
            self.rollback_to(0);
            for (id, _) in self.block_failed.drain(..) {
                self.failed.remove(&id);
            }
        }
        self.undo.clear();
    }

    /// Computes what [`Ledger::apply_block`] would return and leaves the ledger unchanged: what
    /// a proposer runs to fill in the header's state hash, and what a validator runs before it
    /// votes for a proposal. A staged block is discarded first.
    pub fn dry_run(
        &mut self,
        height: u64,
        timestamp_us: u64,
        batches: &[Batch],
    ) -> Result<BlockOutcome, LedgerError> {
        self.discard_staged();
        let outcome = self.execute(height, timestamp_us, batches);
        self.take_back_block();
        outcome.map(|(outcome, _)| outcome)
    }

    fn execute(
        &mut self,
        height: u64,
        timestamp_us: u64,
        batches: &[Batch],
    ) -> Result<(BlockOutcome, BTreeMap<u32, LedgerTotals>), LedgerError> {
        if let Some(what) = &self.poisoned {
            return Err(LedgerError::InvariantViolated {
                height: self.height + 1,
                what: what.clone(),
            });
        }
        if height != self.height + 1 {
            return Err(LedgerError::HeightMismatch {
                expected_previous: self.height,
                got: height,
            });
        }
        if timestamp_us <= self.timestamp_us {
            return Err(LedgerError::TimestampNotIncreasing {
                previous_us: self.timestamp_us,
                got_us: timestamp_us,
            });
        }
        let transfer_count: usize = batches
            .iter()
            .map(|batch| match batch {
                Batch::CreateTransfers { entries, .. } => entries.len(),
                Batch::CreateAccounts(_) => 0,
            })
            .sum();
        if transfer_count > TRANSFERS_PER_BLOCK_MAX {
            return Err(LedgerError::BlockTooLarge(transfer_count));
        }
        self.undo.clear();
        self.before.clear();
        self.touched_transfers.clear();
        self.block_failed.clear();

        let expired = self.expire_pending(timestamp_us);
        let gate_verdicts = self.verify_gates(batches);
        let mut results = Vec::with_capacity(batches.len());
        let mut entry_index = 0usize;
        for batch in batches {
            match batch {
                Batch::CreateAccounts(accounts) => {
                    results.push(BatchResults::Accounts(
                        self.create_accounts(accounts, timestamp_us),
                    ));
                }
                Batch::CreateTransfers {
                    entries,
                    batch_signature,
                } => {
                    let auth = match batch_signature {
                        None => BatchAuth::PerTransfer,
                        Some(batch) => {
                            let transfers: Vec<Transfer> =
                                entries.iter().map(|entry| entry.transfer).collect();
                            let digest = batch_signing_digest(&batch.signer, &transfers);
                            let known = self.signature_cache.as_ref().is_some_and(|cache| {
                                cache.contains(&Verified::Batch(
                                    batch.signer,
                                    digest,
                                    batch.signature,
                                ))
                            });
                            let valid = known
                                || verify_controller(&batch.signer, &digest, &batch.signature);
                            if valid && !known {
                                self.remember(Verified::Batch(
                                    batch.signer,
                                    digest,
                                    batch.signature,
                                ));
                            }
                            BatchAuth::Batch {
                                signer: &batch.signer,
                                valid,
                            }
                        }
                    };
                    let verdicts = &gate_verdicts[entry_index..entry_index + entries.len()];
                    entry_index += entries.len();
                    results.push(BatchResults::Transfers(self.create_transfers(
                        entries,
                        auth,
                        verdicts,
                        height,
                        timestamp_us,
                    )));
                }
            }
        }

        let effects = self.collect_effects(height, timestamp_us, expired);
        let delta = self.check_block_invariants(height, &effects)?;
        let state_hash = self.next_state_hash(&effects, &results);
        Ok((
            BlockOutcome {
                results,
                effects,
                state_hash,
            },
            delta,
        ))
    }

    /// Checks the gate approval of every transfer entry of the block (deduplicated, so a
    /// resubmitted entry costs nothing) spread over `verify_threads`. Pure: the verdicts depend
    /// only on the entries and the configured gate keys.
    fn verify_gates(&self, batches: &[Batch]) -> Vec<CreateTransferResult> {
        type Triple = (Ed25519Key, u128, Hash32, crate::crypto::Signature64);
        let mut entries: Vec<Option<Triple>> = Vec::new();
        for batch in batches {
            if let Batch::CreateTransfers { entries: list, .. } = batch {
                for entry in list {
                    entries.push(entry.gate.map(|gate| {
                        (
                            gate.gate_key,
                            entry.transfer.id,
                            entry.transfer.decision_hash,
                            gate.signature,
                        )
                    }));
                }
            }
        }
        let mut unique: Vec<Triple> = entries
            .iter()
            .flatten()
            .filter(|triple| self.gate_keys.contains_key(&triple.0))
            .copied()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        unique.sort_unstable();
        // Signatures verified ahead of execution count as verified; the rest are checked here.
        let known: Vec<bool> = match &self.signature_cache {
            Some(cache) => cache.contains_all(
                unique
                    .iter()
                    .map(|(key, id, hash, sig)| Verified::Gate(*key, *id, *hash, *sig))
                    .collect::<Vec<_>>()
                    .iter(),
            ),
            None => vec![false; unique.len()],
        };
        let unknown: Vec<Triple> = unique
            .iter()
            .zip(&known)
            .filter(|(_, known)| !**known)
            .map(|(triple, _)| *triple)
            .collect();
        let checked: Vec<bool> =
            parallel_map(&unknown, self.verify_threads, |(key, id, hash, sig)| {
                let entry = Verified::Gate(*key, *id, *hash, *sig);
                // The pre-verifier may have got here meanwhile (it walks batches from the end,
                // this from the start), and what holds here is recorded at once for it and for
                // a later execution of the same entry (another round, an unstaged commit).
                if self
                    .signature_cache
                    .as_ref()
                    .is_some_and(|c| c.contains(&entry))
                {
                    return true;
                }
                let holds = self.gate_keys.get(key).is_some_and(|parsed| {
                    verify_ed25519_parsed(parsed, &gate_approval_message(*id, hash), sig)
                });
                if holds {
                    self.remember(entry);
                }
                holds
            });
        let mut checked = checked.into_iter();
        let verified: Vec<bool> = known
            .iter()
            .map(|known| *known || checked.next().unwrap_or(false))
            .collect();
        let valid: HashSet<&Triple> = unique
            .iter()
            .zip(&verified)
            .filter(|(_, ok)| **ok)
            .map(|(triple, _)| triple)
            .collect();
        entries
            .iter()
            .map(|entry| match entry {
                None => CreateTransferResult::GateDecisionMissing,
                Some(triple) if !self.gate_keys.contains_key(&triple.0) => {
                    CreateTransferResult::GateKeyUnknown
                }
                Some(triple) if valid.contains(triple) => CreateTransferResult::Ok,
                Some(_) => CreateTransferResult::GateSignatureInvalid,
            })
            .collect()
    }

    fn remember(&self, verified: Verified) {
        if let Some(cache) = &self.signature_cache {
            cache.insert_all([verified]);
        }
    }

    fn expire_pending(&mut self, timestamp_us: u64) -> Vec<u128> {
        let mut expired = Vec::new();
        while let Some(&(expires_at, id)) = self.expiries.first() {
            if expires_at > timestamp_us {
                break;
            }
            self.expiries.remove(&(expires_at, id));
            self.undo.push(Undo::ExpiryRemoved(expires_at, id));
            let Some(mut record) = self.transfers.get(&id).copied() else {
                continue;
            };
            if record.status != PendingStatus::Pending {
                continue;
            }
            self.release_pending(&record);
            record.status = PendingStatus::Expired;
            self.put_transfer(record);
            expired.push(id);
        }
        expired
    }

    /// Takes a pending transfer's reservation off both accounts and reopens accounts it closed.
    fn release_pending(&mut self, record: &TransferRecord) {
        let flags = record.transfer.flags;
        if let Some(mut debit) = self.accounts.get(&record.debit_account_id).copied() {
            debit.debits_pending = debit.debits_pending.wrapping_sub(record.amount_applied);
            if flags.has(TransferFlags::CLOSING_DEBIT) {
                debit.flags.0 &= !AccountFlags::CLOSED;
            }
            self.put_account(debit);
        }
        if let Some(mut credit) = self.accounts.get(&record.credit_account_id).copied() {
            credit.credits_pending = credit.credits_pending.wrapping_sub(record.amount_applied);
            if flags.has(TransferFlags::CLOSING_CREDIT) {
                credit.flags.0 &= !AccountFlags::CLOSED;
            }
            self.put_account(credit);
        }
    }

    fn put_account(&mut self, account: Account) {
        let previous = self.accounts.insert(account.id, account);
        self.before.entry(account.id).or_insert(previous);
        self.undo.push(Undo::Account(account.id, previous));
    }

    fn put_transfer(&mut self, record: TransferRecord) {
        let id = record.transfer.id;
        let previous = self.transfers.insert(id, record);
        self.touched_transfers.insert(id);
        self.undo.push(Undo::Transfer(id, previous));
    }

    fn rollback_to(&mut self, mark: usize) {
        while self.undo.len() > mark {
            match self.undo.pop() {
                Some(Undo::Account(id, previous)) => match previous {
                    Some(account) => {
                        self.accounts.insert(id, account);
                    }
                    None => {
                        self.accounts.remove(&id);
                    }
                },
                Some(Undo::Transfer(id, previous)) => match previous {
                    Some(record) => {
                        self.transfers.insert(id, record);
                    }
                    None => {
                        self.transfers.remove(&id);
                    }
                },
                Some(Undo::ExpiryInserted(at, id)) => {
                    self.expiries.remove(&(at, id));
                }
                Some(Undo::ExpiryRemoved(at, id)) => {
                    self.expiries.insert((at, id));
                }
                None => break,
            }
        }
    }

    fn create_accounts(
        &mut self,
        accounts: &[NewAccount],
        timestamp_us: u64,
    ) -> Vec<CreateAccountResult> {
        run_chains(
            accounts.len(),
            |i| accounts[i].flags.has(AccountFlags::LINKED),
            self,
            |ledger, i| ledger.create_account(&accounts[i], timestamp_us),
            |_, _, _| {},
            CreateAccountResult::Ok,
            CreateAccountResult::LinkedEventFailed,
            CreateAccountResult::LinkedEventChainOpen,
        )
    }

    fn create_account(&mut self, new: &NewAccount, timestamp_us: u64) -> CreateAccountResult {
        use CreateAccountResult as R;
        if new.flags.0 & !AccountFlags::ALL != 0 || new.flags.has(AccountFlags::CLOSED) {
            return R::ReservedFlag;
        }
        if new.id == 0 {
            return R::IdMustNotBeZero;
        }
        if new.id == u128::MAX {
            return R::IdMustNotBeIntMax;
        }
        if new.flags.has(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
            && new.flags.has(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
        {
            return R::FlagsAreMutuallyExclusive;
        }
        if new.ledger == 0 {
            return R::LedgerMustNotBeZero;
        }
        if new.code == 0 {
            return R::CodeMustNotBeZero;
        }
        if let Some(existing) = self.accounts.get(&new.id) {
            // The closed bit is state, so it does not count as a difference in flags.
            let existing_flags = existing.flags.0 & !AccountFlags::CLOSED;
            return if existing_flags != new.flags.0 {
                R::ExistsWithDifferentFlags
            } else if existing.user_data != new.user_data {
                R::ExistsWithDifferentUserData
            } else if existing.ledger != new.ledger {
                R::ExistsWithDifferentLedger
            } else if existing.code != new.code {
                R::ExistsWithDifferentCode
            } else if existing.controller != new.controller {
                R::ExistsWithDifferentController
            } else {
                R::Exists
            };
        }
        if !controller_key_is_valid(&new.controller) {
            return R::ControllerKeyInvalid;
        }
        if self.accounts.len() >= ACCOUNTS_MAX {
            return R::AccountsFull;
        }
        self.put_account(Account {
            id: new.id,
            debits_pending: 0,
            debits_posted: 0,
            credits_pending: 0,
            credits_posted: 0,
            user_data: new.user_data,
            ledger: new.ledger,
            code: new.code,
            flags: new.flags,
            controller: new.controller,
            timestamp_us,
        });
        R::Ok
    }

    fn create_transfers(
        &mut self,
        entries: &[TransferEntry],
        auth: BatchAuth<'_>,
        gate_verdicts: &[CreateTransferResult],
        height: u64,
        timestamp_us: u64,
    ) -> Vec<CreateTransferResult> {
        run_chains(
            entries.len(),
            |i| entries[i].transfer.flags.has(TransferFlags::LINKED),
            self,
            |ledger, i| {
                ledger.create_transfer(&entries[i], auth, gate_verdicts[i], height, timestamp_us)
            },
            |ledger, i, result| {
                // A failure is remembered (after any rollback, so that it survives it) unless
                // it says nothing about the transfer itself.
                let id = entries[i].transfer.id;
                if failure_is_recorded(result, id) && ledger.failed.len() < TRANSFERS_MAX {
                    ledger.failed.insert(id, result);
                    ledger.block_failed.push((id, result));
                }
            },
            CreateTransferResult::Ok,
            CreateTransferResult::LinkedEventFailed,
            CreateTransferResult::LinkedEventChainOpen,
        )
    }

    fn create_transfer(
        &mut self,
        entry: &TransferEntry,
        auth: BatchAuth<'_>,
        gate_verdict: CreateTransferResult,
        height: u64,
        timestamp_us: u64,
    ) -> CreateTransferResult {
        use CreateTransferResult as R;
        let t = &entry.transfer;
        if t.id == 0 {
            return R::IdMustNotBeZero;
        }
        if t.id == u128::MAX {
            return R::IdMustNotBeIntMax;
        }
        if let Some(existing) = self.transfers.get(&t.id) {
            return compare_existing(&existing.transfer, t);
        }
        if self.failed.contains_key(&t.id) {
            return R::IdAlreadyFailed;
        }
        if gate_verdict != R::Ok {
            return gate_verdict;
        }
        if self.transfers.len() + self.failed.len() >= TRANSFERS_MAX {
            return R::TransfersFull;
        }
        let flags = t.flags;
        if flags.0 & !TransferFlags::ALL != 0 {
            return R::ReservedFlag;
        }
        let phase_flags = [
            TransferFlags::PENDING,
            TransferFlags::POST_PENDING,
            TransferFlags::VOID_PENDING,
        ]
        .iter()
        .filter(|bit| flags.has(**bit))
        .count();
        if phase_flags > 1 {
            return R::FlagsAreMutuallyExclusive;
        }
        let closing =
            flags.has(TransferFlags::CLOSING_DEBIT) || flags.has(TransferFlags::CLOSING_CREDIT);
        if closing && !flags.has(TransferFlags::PENDING) {
            return R::ClosingTransferMustBePending;
        }
        if flags.has(TransferFlags::POST_PENDING) || flags.has(TransferFlags::VOID_PENDING) {
            self.resolve_pending(entry, auth, height, timestamp_us)
        } else {
            self.create_plain_or_pending(entry, auth, height, timestamp_us)
        }
    }

    fn authorise(
        &self,
        entry: &TransferEntry,
        debit: &Account,
        auth: BatchAuth<'_>,
    ) -> Result<(), CreateTransferResult> {
        match auth {
            BatchAuth::Batch { signer, valid } => {
                if !valid {
                    Err(CreateTransferResult::SignatureInvalid)
                } else if *signer != debit.controller {
                    Err(CreateTransferResult::SignerNotController)
                } else {
                    Ok(())
                }
            }
            BatchAuth::PerTransfer => match &entry.signature {
                None => Err(CreateTransferResult::SignatureMissing),
                Some(signature) => {
                    if verify_controller(
                        &debit.controller,
                        &entry.transfer.signing_digest(),
                        signature,
                    ) {
                        Ok(())
                    } else {
                        Err(CreateTransferResult::SignatureInvalid)
                    }
                }
            },
        }
    }

    fn create_plain_or_pending(
        &mut self,
        entry: &TransferEntry,
        auth: BatchAuth<'_>,
        height: u64,
        timestamp_us: u64,
    ) -> CreateTransferResult {
        use CreateTransferResult as R;
        let t = &entry.transfer;
        let pending = t.flags.has(TransferFlags::PENDING);
        if t.pending_id != 0 {
            return R::PendingIdMustBeZero;
        }
        if !pending && t.timeout_s != 0 {
            return R::TimeoutReservedForPendingTransfer;
        }
        if t.debit_account_id == 0 || t.debit_account_id == u128::MAX {
            return R::DebitAccountIdMustNotBeZero;
        }
        if t.credit_account_id == 0 || t.credit_account_id == u128::MAX {
            return R::CreditAccountIdMustNotBeZero;
        }
        if t.debit_account_id == t.credit_account_id {
            return R::AccountsMustBeDifferent;
        }
        if t.amount == 0 {
            return R::AmountMustNotBeZero;
        }
        if t.ledger == 0 {
            return R::LedgerMustNotBeZero;
        }
        if t.code == 0 {
            return R::CodeMustNotBeZero;
        }
        let Some(mut debit) = self.accounts.get(&t.debit_account_id).copied() else {
            return R::DebitAccountNotFound;
        };
        let Some(mut credit) = self.accounts.get(&t.credit_account_id).copied() else {
            return R::CreditAccountNotFound;
        };
        if debit.ledger != credit.ledger {
            return R::AccountsMustHaveTheSameLedger;
        }
        if t.ledger != debit.ledger {
            return R::TransferMustHaveTheSameLedgerAsAccounts;
        }
        if let Err(refusal) = self.authorise(entry, &debit, auth) {
            return refusal;
        }
        if debit.flags.has(AccountFlags::CLOSED) {
            return R::DebitAccountClosed;
        }
        if credit.flags.has(AccountFlags::CLOSED) {
            return R::CreditAccountClosed;
        }
        let amount = t.amount;
        let mut expires_at = None;
        if pending {
            if debit.debits_pending.checked_add(amount).is_none() {
                return R::OverflowsDebitsPending;
            }
            if credit.credits_pending.checked_add(amount).is_none() {
                return R::OverflowsCreditsPending;
            }
            if t.timeout_s != 0 {
                if t.timeout_s > TIMEOUT_SECONDS_MAX {
                    return R::OverflowsTimeout;
                }
                match timestamp_us.checked_add(u64::from(t.timeout_s) * 1_000_000) {
                    Some(at) => expires_at = Some(at),
                    None => return R::OverflowsTimeout,
                }
            }
        } else {
            if debit.debits_posted.checked_add(amount).is_none() {
                return R::OverflowsDebitsPosted;
            }
            if credit.credits_posted.checked_add(amount).is_none() {
                return R::OverflowsCreditsPosted;
            }
        }
        let Some(debits_total) = debit
            .debits_pending
            .checked_add(debit.debits_posted)
            .and_then(|sum| sum.checked_add(amount))
        else {
            return R::OverflowsDebits;
        };
        let Some(credits_total) = credit
            .credits_pending
            .checked_add(credit.credits_posted)
            .and_then(|sum| sum.checked_add(amount))
        else {
            return R::OverflowsCredits;
        };
        if debit
            .flags
            .has(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
            && debits_total > debit.credits_posted
        {
            return R::ExceedsCredits;
        }
        if credit
            .flags
            .has(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
            && credits_total > credit.debits_posted
        {
            return R::ExceedsDebits;
        }
        if pending {
            debit.debits_pending += amount;
            credit.credits_pending += amount;
            if t.flags.has(TransferFlags::CLOSING_DEBIT) {
                debit.flags.0 |= AccountFlags::CLOSED;
            }
            if t.flags.has(TransferFlags::CLOSING_CREDIT) {
                credit.flags.0 |= AccountFlags::CLOSED;
            }
        } else {
            debit.debits_posted += amount;
            credit.credits_posted += amount;
        }
        self.put_account(debit);
        self.put_account(credit);
        self.put_transfer(TransferRecord {
            transfer: *t,
            amount_applied: amount,
            debit_account_id: t.debit_account_id,
            credit_account_id: t.credit_account_id,
            timestamp_us,
            height,
            status: if pending {
                PendingStatus::Pending
            } else {
                PendingStatus::None
            },
        });
        if let Some(at) = expires_at {
            self.expiries.insert((at, t.id));
            self.undo.push(Undo::ExpiryInserted(at, t.id));
        }
        R::Ok
    }

    fn resolve_pending(
        &mut self,
        entry: &TransferEntry,
        auth: BatchAuth<'_>,
        height: u64,
        timestamp_us: u64,
    ) -> CreateTransferResult {
        use CreateTransferResult as R;
        let t = &entry.transfer;
        let post = t.flags.has(TransferFlags::POST_PENDING);
        if t.pending_id == 0 || t.pending_id == u128::MAX {
            return R::PendingIdMustNotBeZero;
        }
        if t.pending_id == t.id {
            return R::PendingIdMustBeDifferent;
        }
        if t.timeout_s != 0 {
            return R::TimeoutReservedForPendingTransfer;
        }
        let Some(pending) = self.transfers.get(&t.pending_id).copied() else {
            return R::PendingTransferNotFound;
        };
        match pending.status {
            PendingStatus::None => return R::PendingTransferNotPending,
            PendingStatus::Pending => {}
            PendingStatus::Posted => return R::PendingTransferAlreadyPosted,
            PendingStatus::Voided => return R::PendingTransferAlreadyVoided,
            PendingStatus::Expired => return R::PendingTransferExpired,
        }
        if t.debit_account_id != 0 && t.debit_account_id != pending.debit_account_id {
            return R::PendingTransferHasDifferentDebitAccountId;
        }
        if t.credit_account_id != 0 && t.credit_account_id != pending.credit_account_id {
            return R::PendingTransferHasDifferentCreditAccountId;
        }
        if t.ledger != 0 && t.ledger != pending.transfer.ledger {
            return R::PendingTransferHasDifferentLedger;
        }
        if t.code != 0 && t.code != pending.transfer.code {
            return R::PendingTransferHasDifferentCode;
        }
        let reserved = pending.amount_applied;
        let amount = if post {
            if t.amount == AMOUNT_MAX {
                reserved
            } else if t.amount == 0 {
                return R::AmountMustNotBeZero;
            } else if t.amount > reserved {
                return R::ExceedsPendingTransferAmount;
            } else {
                t.amount
            }
        } else {
            if t.amount != 0 && t.amount != reserved && t.amount != AMOUNT_MAX {
                return R::PendingTransferHasDifferentAmount;
            }
            reserved
        };
        let (Some(mut debit), Some(mut credit)) = (
            self.accounts.get(&pending.debit_account_id).copied(),
            self.accounts.get(&pending.credit_account_id).copied(),
        ) else {
            // Accounts are never deleted, so a pending transfer's accounts always exist.
            return R::DebitAccountNotFound;
        };
        if let Err(refusal) = self.authorise(entry, &debit, auth) {
            return refusal;
        }
        if post {
            if debit.debits_posted.checked_add(amount).is_none() {
                return R::OverflowsDebitsPosted;
            }
            if credit.credits_posted.checked_add(amount).is_none() {
                return R::OverflowsCreditsPosted;
            }
        }
        // Release the whole reservation; post what is posted. Limits compare against the other
        // side's posted balance, which this can only raise, so no limit can break here.
        debit.debits_pending -= reserved;
        credit.credits_pending -= reserved;
        let pending_flags = pending.transfer.flags;
        if post {
            debit.debits_posted += amount;
            credit.credits_posted += amount;
        } else {
            if pending_flags.has(TransferFlags::CLOSING_DEBIT) {
                debit.flags.0 &= !AccountFlags::CLOSED;
            }
            if pending_flags.has(TransferFlags::CLOSING_CREDIT) {
                credit.flags.0 &= !AccountFlags::CLOSED;
            }
        }
        self.put_account(debit);
        self.put_account(credit);
        let mut resolved = pending;
        resolved.status = if post {
            PendingStatus::Posted
        } else {
            PendingStatus::Voided
        };
        self.put_transfer(resolved);
        if pending.transfer.timeout_s != 0 {
            let at = pending.timestamp_us + u64::from(pending.transfer.timeout_s) * 1_000_000;
            if self.expiries.remove(&(at, pending.transfer.id)) {
                self.undo.push(Undo::ExpiryRemoved(at, pending.transfer.id));
            }
        }
        self.put_transfer(TransferRecord {
            transfer: *t,
            amount_applied: amount,
            debit_account_id: pending.debit_account_id,
            credit_account_id: pending.credit_account_id,
            timestamp_us,
            height,
            status: PendingStatus::None,
        });
        R::Ok
    }

    fn collect_effects(
        &mut self,
        height: u64,
        timestamp_us: u64,
        expired: Vec<u128>,
    ) -> BlockEffects {
        let mut touched: Vec<u128> = self.before.keys().copied().collect();
        touched.sort_unstable();
        let accounts = touched
            .iter()
            .filter_map(|id| self.accounts.get(id).copied())
            .collect();
        let transfers = self
            .touched_transfers
            .iter()
            .filter_map(|id| self.transfers.get(id).copied())
            .collect();
        BlockEffects {
            height,
            timestamp_us,
            accounts,
            transfers,
            expired,
            failed: self.block_failed.clone(),
        }
    }

    /// Debits equal credits per ledger (pending and posted) and every touched account keeps its
    /// limit; checked over what the block touched, so the cost follows the block, not the
    /// ledger's size. Returns the change to the running totals.
    fn check_block_invariants(
        &mut self,
        height: u64,
        effects: &BlockEffects,
    ) -> Result<BTreeMap<u32, LedgerTotals>, LedgerError> {
        let mut delta: BTreeMap<u32, LedgerTotals> = BTreeMap::new();
        for (id, before) in &self.before {
            let after = self.accounts.get(id);
            for (account, sign_add) in [(before.as_ref(), false), (after, true)] {
                let Some(account) = account else { continue };
                let entry = delta.entry(account.ledger).or_default();
                let apply = |total: &mut u128, value: u128| {
                    *total = if sign_add {
                        total.wrapping_add(value)
                    } else {
                        total.wrapping_sub(value)
                    }
                };
                apply(&mut entry.debits_pending, account.debits_pending);
                apply(&mut entry.debits_posted, account.debits_posted);
                apply(&mut entry.credits_pending, account.credits_pending);
                apply(&mut entry.credits_posted, account.credits_posted);
            }
        }
        let mut violation = None;
        for (ledger, d) in &delta {
            if d.debits_pending != d.credits_pending || d.debits_posted != d.credits_posted {
                violation = Some(format!("debits and credits differ on ledger {ledger}"));
            }
        }
        for account in &effects.accounts {
            if let Some(what) = limit_violation(account) {
                violation = Some(what);
            }
        }
        if let Some(what) = violation {
            self.poisoned = Some(what.clone());
            return Err(LedgerError::InvariantViolated { height, what });
        }
        Ok(delta)
    }

    /// The full check, over every account: slower than the per-block one; for tests, tools and
    /// `rempart ledger verify`.
    pub fn check_invariants_full(&self) -> Result<(), String> {
        let mut sums: BTreeMap<u32, LedgerTotals> = BTreeMap::new();
        for account in self.accounts.values() {
            let entry = sums.entry(account.ledger).or_default();
            entry.debits_pending = entry.debits_pending.wrapping_add(account.debits_pending);
            entry.debits_posted = entry.debits_posted.wrapping_add(account.debits_posted);
            entry.credits_pending = entry.credits_pending.wrapping_add(account.credits_pending);
            entry.credits_posted = entry.credits_posted.wrapping_add(account.credits_posted);
            if let Some(what) = limit_violation(account) {
                return Err(what);
            }
        }
        for (ledger, s) in &sums {
            if s.debits_pending != s.credits_pending || s.debits_posted != s.credits_posted {
                return Err(format!("debits and credits differ on ledger {ledger}"));
            }
        }
        let nonzero_totals: BTreeMap<u32, LedgerTotals> = self
            .totals
            .iter()
            .filter(|(_, t)| **t != LedgerTotals::default())
            .map(|(k, v)| (*k, *v))
            .collect();
        let nonzero_sums: BTreeMap<u32, LedgerTotals> = sums
            .into_iter()
            .filter(|(_, t)| *t != LedgerTotals::default())
            .collect();
        if nonzero_totals != nonzero_sums {
            return Err("running totals differ from the accounts' sums".to_string());
        }
        Ok(())
    }

    /// Running hash: the previous state hash, then this block's effects and results. Each
    /// validator computes it in time proportional to the block, not to the ledger.
    fn next_state_hash(&self, effects: &BlockEffects, results: &[BatchResults]) -> Hash32 {
        let mut w = Writer::with_capacity(
            64 + effects.accounts.len() * ACCOUNT_BYTES
                + effects.transfers.len() * TRANSFER_RECORD_BYTES,
        );
        w.u64(effects.height);
        w.u64(effects.timestamp_us);
        w.count(effects.accounts.len());
        for account in &effects.accounts {
            account.encode(&mut w);
        }
        w.count(effects.transfers.len());
        for record in &effects.transfers {
            record.encode(&mut w);
        }
        w.count(effects.expired.len());
        for id in &effects.expired {
            w.u128(*id);
        }
        w.count(effects.failed.len());
        for (id, result) in &effects.failed {
            w.u128(*id);
            w.u16(result.code());
        }
        w.count(results.len());
        for batch in results {
            match batch {
                BatchResults::Accounts(list) => {
                    w.u8(1);
                    w.count(list.len());
                    for result in list {
                        w.u16(result.code());
                    }
                }
                BatchResults::Transfers(list) => {
                    w.u8(2);
                    w.count(list.len());
                    for result in list {
                        w.u16(result.code());
                    }
                }
            }
        }
        tagged_hash(DOMAIN_STATE, &[&self.state_hash, w.as_bytes()])
    }
}

fn limit_violation(account: &Account) -> Option<String> {
    let debits = account.debits_pending.checked_add(account.debits_posted);
    let credits = account.credits_pending.checked_add(account.credits_posted);
    if account
        .flags
        .has(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
        && debits.is_none_or(|d| d > account.credits_posted)
    {
        return Some(format!("account {} debits exceed its credits", account.id));
    }
    if account
        .flags
        .has(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
        && credits.is_none_or(|c| c > account.debits_posted)
    {
        return Some(format!("account {} credits exceed its debits", account.id));
    }
    None
}

/// Whether a transfer's failure binds its id for good.
fn failure_is_recorded(result: CreateTransferResult, id: u128) -> bool {
    use CreateTransferResult as R;
    !(result == R::Ok
        || id == 0
        || id == u128::MAX
        || result.is_authority_refusal()
        || matches!(
            result,
            R::LinkedEventFailed
                | R::LinkedEventChainOpen
                | R::IdMustNotBeZero
                | R::IdMustNotBeIntMax
                | R::IdAlreadyFailed
                | R::TransfersFull
                | R::Exists
                | R::ExistsWithDifferentFlags
                | R::ExistsWithDifferentDebitAccountId
                | R::ExistsWithDifferentCreditAccountId
                | R::ExistsWithDifferentAmount
                | R::ExistsWithDifferentPendingId
                | R::ExistsWithDifferentUserData
                | R::ExistsWithDifferentTimeout
                | R::ExistsWithDifferentCode
                | R::ExistsWithDifferentLedger
        ))
}

/// An idempotent resubmission is `Exists` only if every field the client chose is the same.
/// The decision hash is not compared: a retry may carry a fresh gate decision for the same
/// money movement, and the decision stored is the one that authorised the first attempt.
fn compare_existing(existing: &Transfer, t: &Transfer) -> CreateTransferResult {
    use CreateTransferResult as R;
    if existing.flags != t.flags {
        R::ExistsWithDifferentFlags
    } else if existing.pending_id != t.pending_id {
        R::ExistsWithDifferentPendingId
    } else if existing.timeout_s != t.timeout_s {
        R::ExistsWithDifferentTimeout
    } else if existing.debit_account_id != t.debit_account_id {
        R::ExistsWithDifferentDebitAccountId
    } else if existing.credit_account_id != t.credit_account_id {
        R::ExistsWithDifferentCreditAccountId
    } else if existing.amount != t.amount {
        R::ExistsWithDifferentAmount
    } else if existing.user_data != t.user_data {
        R::ExistsWithDifferentUserData
    } else if existing.ledger != t.ledger {
        R::ExistsWithDifferentLedger
    } else if existing.code != t.code {
        R::ExistsWithDifferentCode
    } else {
        R::Exists
    }
}

/// Runs events with linked-chain semantics: a chain (consecutive events with the linked flag,
/// closed by the first one without it) succeeds or fails as a unit; the failing event keeps its
/// own result, the others get `failed`; a chain left open at the end of the batch fails with
/// `open` on its last event. `after` sees each event's final result once any rollback is done.
#[allow(clippy::too_many_arguments)]
fn run_chains<R: Copy + PartialEq>(
    n: usize,
    linked: impl Fn(usize) -> bool,
    ledger: &mut Ledger,
    mut create: impl FnMut(&mut Ledger, usize) -> R,
    mut after: impl FnMut(&mut Ledger, usize, R),
    ok: R,
    failed: R,
    open: R,
) -> Vec<R> {
    let mut results = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        // The chain is events i..=end.
        let mut end = i;
        while linked(end) && end + 1 < n {
            end += 1;
        }
        let chain_open = linked(end);
        if end == i && !chain_open {
            let result = create(ledger, i);
            results.push(result);
            after(ledger, i, result);
            i += 1;
            continue;
        }
        let mark = ledger.undo.len();
        let mut chain_results = Vec::with_capacity(end - i + 1);
        let mut failure = None;
        for j in i..=end {
            let result = if j == end && chain_open {
                open
            } else {
                create(ledger, j)
            };
            chain_results.push(result);
            if result != ok {
                failure = Some(j);
                break;
            }
        }
        match failure {
            None => {
                for (offset, result) in chain_results.into_iter().enumerate() {
                    results.push(result);
                    after(ledger, i + offset, result);
                }
            }
            Some(failed_at) => {
                ledger.rollback_to(mark);
                let failed_result = chain_results[failed_at - i];
                for j in i..=end {
                    let result = if j == failed_at {
                        failed_result
                    } else {
                        failed
                    };
                    results.push(result);
                    after(ledger, j, result);
                }
            }
        }
        i = end + 1;
    }
    results
}

/// Maps `f` over `items` on up to `threads` scoped threads, in order. Pure computation only.
fn parallel_map<T: Sync, U: Send + Default + Clone>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> U + Sync,
) -> Vec<U> {
    const PARALLEL_MIN: usize = 64;
    if threads <= 1 || items.len() < PARALLEL_MIN {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let mut out = vec![U::default(); items.len()];
    std::thread::scope(|scope| {
        for (input, output) in items.chunks(chunk).zip(out.chunks_mut(chunk)) {
            let f = &f;
            scope.spawn(move || {
                for (item, slot) in input.iter().zip(output.iter_mut()) {
                    *slot = f(item);
                }
            });
        }
    });
    out
}

#[cfg(test)]
mod tests;
