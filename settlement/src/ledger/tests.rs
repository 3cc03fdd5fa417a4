//! Unit tests of the ledger state machine: each rule on a small hand-built ledger.

use super::*;
use crate::crypto::signing::{ControllerSigner, Ed25519Signer};
use crate::testkit::{self, batch_signed, decision, new_account, signed_entry};

struct Fixture {
    ledger: Ledger,
    gate: Ed25519Signer,
    keys: Vec<ControllerSigner>,
    height: u64,
}

const LEDGER: u32 = 1;

impl Fixture {
    /// Accounts 1..=4 on ledger 1: 1 is an issuer (no limit), 2..=4 holders whose debits may
    /// not exceed credits; account i is controlled by keys[i].
    fn new() -> Self {
        let gate = testkit::ed25519("gate", 0);
        let keys: Vec<ControllerSigner> = (0..5).map(|i| testkit::controller("k", i)).collect();
        let mut ledger = Ledger::new(&LedgerConfig {
            gate_keys: vec![gate.public_key()],
            genesis_hash: [0; 32],
            verify_threads: 1,
        });
        let accounts = (1..=4u128)
            .map(|id| {
                let flags = if id == 1 {
                    0
                } else {
                    AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS
                };
                new_account(id, LEDGER, flags, &keys[id as usize])
            })
            .collect();
        let outcome = ledger
            .apply_block(1, 1_000_000, &[Batch::CreateAccounts(accounts)])
            .unwrap();
        assert_eq!(
            outcome.results,
            vec![BatchResults::Accounts(vec![CreateAccountResult::Ok; 4])]
        );
        Self {
            ledger,
            gate,
            keys,
            height: 1,
        }
    }

    fn transfer(&self, id: u128, debit: u128, credit: u128, amount: u128, flags: u16) -> Transfer {
        Transfer {
            id,
            debit_account_id: debit,
            credit_account_id: credit,
            amount,
            pending_id: 0,
            user_data: 0,
            timeout_s: 0,
            ledger: LEDGER,
            code: 1,
            flags: TransferFlags(flags),
            decision_hash: decision(id),
        }
    }

    fn signed(&self, t: Transfer) -> TransferEntry {
        let debit = if t.debit_account_id != 0 {
            t.debit_account_id
        } else {
            self.ledger
                .transfer(t.pending_id)
                .map_or(1, |p| p.debit_account_id)
        };
        signed_entry(t, &self.keys[debit as usize], &self.gate)
    }

    fn block_at(&mut self, seconds: u64, entries: Vec<TransferEntry>) -> Vec<CreateTransferResult> {
        self.height += 1;
        let outcome = self
            .ledger
            .apply_block(
                self.height,
                seconds * 1_000_000,
                &[Batch::CreateTransfers {
                    entries,
                    batch_signature: None,
                }],
            )
            .unwrap();
        self.ledger.check_invariants_full().unwrap();
        match outcome.results.into_iter().next() {
            Some(BatchResults::Transfers(results)) => results,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn block(&mut self, transfers: Vec<Transfer>) -> Vec<CreateTransferResult> {
        let entries = transfers.into_iter().map(|t| self.signed(t)).collect();
        let seconds = self.height + 1;
        self.block_at(seconds, entries)
    }

    fn balances(&self, id: u128) -> (u128, u128, u128, u128) {
        let a = self.ledger.account(id).unwrap();
        (
            a.debits_pending,
            a.debits_posted,
            a.credits_pending,
            a.credits_posted,
        )
    }
}

use CreateTransferResult as R;

#[test]
fn a_plain_transfer_moves_posted_balances_and_limits_hold() {
    let mut f = Fixture::new();
    let t = f.transfer(10, 1, 2, 500, 0);
    assert_eq!(f.block(vec![t]), vec![R::Ok]);
    assert_eq!(f.balances(1), (0, 500, 0, 0));
    assert_eq!(f.balances(2), (0, 0, 0, 500));
    // Account 2 may not spend more than it holds.
    let t = f.transfer(11, 2, 3, 501, 0);
    assert_eq!(f.block(vec![t]), vec![R::ExceedsCredits]);
    let t = f.transfer(12, 2, 3, 500, 0);
    assert_eq!(f.block(vec![t]), vec![R::Ok]);
    assert_eq!(
        f.ledger.transfer(10).unwrap().transfer.decision_hash,
        decision(10)
    );
}

#[test]
fn resubmission_is_idempotent_and_failures_stay_failures() {
    let mut f = Fixture::new();
    let t = f.transfer(10, 1, 2, 500, 0);
    assert_eq!(f.block(vec![t]), vec![R::Ok]);
    assert_eq!(f.block(vec![t]), vec![R::Exists]);
    let mut different = t;
    different.amount = 501;
    assert_eq!(f.block(vec![different]), vec![R::ExistsWithDifferentAmount]);
    let mut different = t;
    different.credit_account_id = 3;
    assert_eq!(
        f.block(vec![different]),
        vec![R::ExistsWithDifferentCreditAccountId]
    );
    assert_eq!(f.balances(2), (0, 0, 0, 500));
    // A failure binds its id: once account 3 has funds, the same transfer still fails.
    let fail = f.transfer(20, 3, 4, 100, 0);
    assert_eq!(f.block(vec![fail]), vec![R::ExceedsCredits]);
    let fund = f.transfer(21, 1, 3, 1000, 0);
    assert_eq!(f.block(vec![fund]), vec![R::Ok]);
    assert_eq!(f.block(vec![fail]), vec![R::IdAlreadyFailed]);
    assert_eq!(f.ledger.failure(20), Some(R::ExceedsCredits));
}

#[test]
fn two_phase_post_partly_void_and_expire() {
    let mut f = Fixture::new();
    let fund = f.transfer(1, 1, 2, 1000, 0);
    assert_eq!(f.block(vec![fund]), vec![R::Ok]);
    let mut pending = f.transfer(2, 2, 3, 600, TransferFlags::PENDING);
    pending.timeout_s = 0;
    assert_eq!(f.block(vec![pending]), vec![R::Ok]);
    assert_eq!(f.balances(2), (600, 0, 0, 1000));
    // 600 are held: only 400 remain spendable.
    assert_eq!(
        f.block(vec![f.transfer(3, 2, 4, 401, 0)]),
        vec![R::ExceedsCredits]
    );
    let mut post = f.transfer(4, 0, 0, 250, TransferFlags::POST_PENDING);
    post.pending_id = 2;
    assert_eq!(f.block(vec![post]), vec![R::Ok]);
    assert_eq!(f.balances(2), (0, 250, 0, 1000));
    assert_eq!(f.balances(3), (0, 0, 0, 250));
    let mut again = f.transfer(5, 0, 0, 0, TransferFlags::VOID_PENDING);
    again.pending_id = 2;
    assert_eq!(f.block(vec![again]), vec![R::PendingTransferAlreadyPosted]);

    let mut pending = f.transfer(6, 2, 3, 100, TransferFlags::PENDING);
    pending.timeout_s = 0;
    assert_eq!(f.block(vec![pending]), vec![R::Ok]);
    let mut void = f.transfer(7, 0, 0, 0, TransferFlags::VOID_PENDING);
    void.pending_id = 6;
    assert_eq!(f.block(vec![void]), vec![R::Ok]);
    assert_eq!(f.balances(2), (0, 250, 0, 1000));

    let mut expiring = f.transfer(8, 2, 3, 100, TransferFlags::PENDING);
    expiring.timeout_s = 5;
    let now = f.height + 1;
    assert_eq!(f.block_at(now, vec![f.signed(expiring)]), vec![R::Ok]);
    assert_eq!(f.balances(2).0, 100);
    // Four seconds later it still holds; at five it has expired.
    assert!(f.block_at(now + 4, vec![]).is_empty());
    assert_eq!(f.balances(2).0, 100);
    assert!(f.block_at(now + 5, vec![]).is_empty());
    assert_eq!(f.balances(2).0, 0);
    assert_eq!(f.ledger.transfer(8).unwrap().status, PendingStatus::Expired);
    let mut late = f.transfer(9, 0, 0, AMOUNT_MAX, TransferFlags::POST_PENDING);
    late.pending_id = 8;
    assert_eq!(
        f.block_at(now + 6, vec![f.signed(late)]),
        vec![R::PendingTransferExpired]
    );
}

#[test]
fn a_linked_chain_fails_as_a_unit() {
    let mut f = Fixture::new();
    let a = f.transfer(1, 1, 2, 100, TransferFlags::LINKED);
    let b = f.transfer(2, 2, 3, 100, TransferFlags::LINKED);
    let c = f.transfer(3, 3, 4, 101, 0); // 3 holds only 100
    let d = f.transfer(4, 1, 4, 7, 0);
    assert_eq!(
        f.block(vec![a, b, c, d]),
        vec![
            R::LinkedEventFailed,
            R::LinkedEventFailed,
            R::ExceedsCredits,
            R::Ok
        ]
    );
    assert_eq!(f.balances(2), (0, 0, 0, 0));
    assert_eq!(f.balances(4), (0, 0, 0, 7));
    // The innocent members' ids are free; the culprit's is not.
    assert_eq!(f.ledger.failure(1), None);
    assert_eq!(f.ledger.failure(3), Some(R::ExceedsCredits));
    let open = f.transfer(5, 1, 2, 1, TransferFlags::LINKED);
    assert_eq!(f.block(vec![open]), vec![R::LinkedEventChainOpen]);
    let c_fixed = f.transfer(13, 3, 4, 100, 0);
    assert_eq!(f.block(vec![a, b, c_fixed]), vec![R::Ok, R::Ok, R::Ok]);
}

#[test]
fn ungated_unsigned_or_wrongly_signed_transfers_are_refused_alone() {
    let mut f = Fixture::new();
    let good = f.signed(f.transfer(1, 1, 2, 10, 0));
    let mut ungated = f.signed(f.transfer(2, 1, 2, 10, 0));
    ungated.gate = None;
    let mut unsigned = f.signed(f.transfer(3, 1, 2, 10, 0));
    unsigned.signature = None;
    // Signed by account 2's key, but debiting account 1.
    let wrong = signed_entry(f.transfer(4, 1, 2, 10, 0), &f.keys[2], &f.gate);
    let stranger_gate = testkit::ed25519("gate", 9);
    let foreign = signed_entry(f.transfer(5, 1, 2, 10, 0), &f.keys[1], &stranger_gate);
    let mut forged_gate = f.signed(f.transfer(6, 1, 2, 10, 0));
    if let Some(gate) = &mut forged_gate.gate {
        gate.signature[3] ^= 1;
    }
    let good2 = f.signed(f.transfer(7, 1, 2, 10, 0));
    let results = f.block_at(
        5,
        vec![good, ungated, unsigned, wrong, foreign, forged_gate, good2],
    );
    assert_eq!(
        results,
        vec![
            R::Ok,
            R::GateDecisionMissing,
            R::SignatureMissing,
            R::SignatureInvalid,
            R::GateKeyUnknown,
            R::GateSignatureInvalid,
            R::Ok
        ]
    );
    assert_eq!(f.balances(2), (0, 0, 0, 20));
    // Refusals for missing authority do not burn the id: a proper retry succeeds.
    assert_eq!(f.ledger.failure(2), None);
    let retry = f.signed(f.transfer(2, 1, 2, 10, 0));
    assert_eq!(f.block_at(6, vec![retry]), vec![R::Ok]);
}

#[test]
fn batch_signatures_cover_only_the_signers_accounts() {
    let mut f = Fixture::new();
    let fund = f.transfer(1, 1, 2, 100, 0);
    assert_eq!(f.block(vec![fund]), vec![R::Ok]);
    let own = f.transfer(2, 2, 3, 10, 0);
    let other = f.transfer(3, 1, 3, 10, 0);
    let batch = batch_signed(&[own, other], &f.keys[2], &f.gate);
    f.height += 1;
    let outcome = f
        .ledger
        .apply_block(f.height, 50_000_000, std::slice::from_ref(&batch))
        .unwrap();
    assert_eq!(
        outcome.results,
        vec![BatchResults::Transfers(vec![R::Ok, R::SignerNotController])]
    );
    // Tampering with any transfer of the batch voids the batch signature (the gate's approval
    // does not cover the amount, only the controller's signature does).
    let fresh = batch_signed(
        &[f.transfer(20, 2, 3, 10, 0), f.transfer(21, 2, 4, 10, 0)],
        &f.keys[2],
        &f.gate,
    );
    let Batch::CreateTransfers {
        mut entries,
        batch_signature,
    } = fresh
    else {
        unreachable!()
    };
    entries[0].transfer.amount = 11;
    f.height += 1;
    let outcome = f
        .ledger
        .apply_block(
            f.height,
            51_000_000,
            &[Batch::CreateTransfers {
                entries,
                batch_signature,
            }],
        )
        .unwrap();
    assert_eq!(
        outcome.results,
        vec![BatchResults::Transfers(vec![
            R::SignatureInvalid,
            R::SignatureInvalid
        ])]
    );
}

#[test]
fn closing_pending_transfer_closes_and_void_reopens() {
    let mut f = Fixture::new();
    assert_eq!(f.block(vec![f.transfer(1, 1, 2, 100, 0)]), vec![R::Ok]);
    let closing = f.transfer(
        2,
        2,
        3,
        1,
        TransferFlags::PENDING | TransferFlags::CLOSING_DEBIT,
    );
    assert_eq!(f.block(vec![closing]), vec![R::Ok]);
    assert_eq!(
        f.block(vec![f.transfer(3, 2, 3, 1, 0)]),
        vec![R::DebitAccountClosed]
    );
    let mut void = f.transfer(4, 0, 0, 0, TransferFlags::VOID_PENDING);
    void.pending_id = 2;
    assert_eq!(f.block(vec![void]), vec![R::Ok]);
    assert_eq!(f.block(vec![f.transfer(5, 2, 3, 1, 0)]), vec![R::Ok]);
    let not_pending = f.transfer(6, 2, 3, 1, TransferFlags::CLOSING_CREDIT);
    assert_eq!(
        f.block(vec![not_pending]),
        vec![R::ClosingTransferMustBePending]
    );
}

#[test]
fn dry_run_leaves_no_trace_and_matches_apply() {
    let mut f = Fixture::new();
    let entries = vec![
        f.signed(f.transfer(1, 1, 2, 100, 0)),
        f.signed(f.transfer(2, 2, 3, 500, 0)),
    ];
    let batches = vec![Batch::CreateTransfers {
        entries,
        batch_signature: None,
    }];
    let before_hash = f.ledger.state_hash();
    let dry = f.ledger.dry_run(2, 9_000_000, &batches).unwrap();
    assert_eq!(f.ledger.state_hash(), before_hash);
    assert_eq!(f.ledger.transfer(1), None);
    assert_eq!(f.ledger.failure(2), None);
    assert_eq!(f.balances(2), (0, 0, 0, 0));
    let applied = f.ledger.apply_block(2, 9_000_000, &batches).unwrap();
    assert_eq!(dry, applied);
    assert_eq!(f.ledger.failure(2), Some(R::ExceedsCredits));
}

#[test]
fn a_staged_block_commits_as_applied_and_discards_without_trace() {
    let mut staged = Fixture::new();
    let mut applied = Fixture::new();
    let block = |f: &Fixture, first: u128| {
        vec![Batch::CreateTransfers {
            entries: vec![
                f.signed(f.transfer(first, 1, 2, 100, 0)),
                // Fails for lack of credits: the failure is staged too.
                f.signed(f.transfer(first + 1, 3, 4, 500, 0)),
                f.signed(f.transfer(first + 2, 1, 3, 7, TransferFlags::PENDING)),
            ],
            batch_signature: None,
        }]
    };
    let first = block(&staged, 1);
    let other = block(&staged, 10);

    // Staging one block, then another at the same height, then discarding: no trace.
    let before_hash = staged.ledger.state_hash();
    staged.ledger.stage(2, 2_000_000, &first).unwrap();
    assert_eq!(staged.ledger.staged_height(), Some(2));
    assert_eq!(staged.balances(2), (0, 0, 0, 100));
    assert_eq!(staged.ledger.height(), 1);
    assert_eq!(staged.ledger.state_hash(), before_hash);
    staged.ledger.stage(2, 2_000_000, &other).unwrap();
    assert_eq!(staged.ledger.transfer(1), None);
    assert_eq!(staged.ledger.failure(2), None);
    staged.ledger.discard_staged();
    assert_eq!(staged.ledger.staged_height(), None);
    assert_eq!(staged.ledger.transfer(10), None);
    assert_eq!(staged.ledger.failure(11), None);
    assert_eq!(staged.balances(2), (0, 0, 0, 0));
    assert!(!staged.ledger.commit_staged());

    // Staged then committed equals applied, and the next blocks agree too.
    let outcome = staged.ledger.stage(2, 2_000_000, &first).unwrap();
    assert!(staged.ledger.commit_staged());
    let expected = applied.ledger.apply_block(2, 2_000_000, &first).unwrap();
    assert_eq!(outcome, expected);
    assert_eq!(staged.ledger.height(), 2);
    assert_eq!(staged.ledger.state_hash(), applied.ledger.state_hash());
    assert_eq!(staged.ledger.totals(), applied.ledger.totals());
    assert_eq!(staged.ledger.failure(2), Some(R::ExceedsCredits));
    staged.ledger.check_invariants_full().unwrap();
    // A staged block is discarded by a dry run or by applying another block.
    staged.ledger.stage(3, 3_000_000, &other).unwrap();
    let dry = staged.ledger.dry_run(3, 3_000_000, &other).unwrap();
    assert_eq!(staged.ledger.staged_height(), None);
    staged.ledger.stage(3, 3_000_000, &other).unwrap();
    let next = staged.ledger.apply_block(3, 3_000_000, &other).unwrap();
    assert_eq!(dry, next);
    assert_eq!(
        next,
        applied.ledger.apply_block(3, 3_000_000, &other).unwrap()
    );
    assert_eq!(staged.ledger.state_hash(), applied.ledger.state_hash());
    staged.ledger.check_invariants_full().unwrap();
}

#[test]
fn signatures_verified_ahead_change_nothing_but_when_they_are_checked() {
    use std::sync::Arc;
    use verified::{Preverifier, SignatureCache};

    let mut plain = Fixture::new();
    let mut cached = Fixture::new();
    let cache = Arc::new(SignatureCache::new());
    cached.ledger.use_signature_cache(Arc::clone(&cache));
    let preverifier = Preverifier::new(&[plain.gate.public_key()], Arc::clone(&cache));
    let batch = |ids: std::ops::RangeInclusive<u128>| {
        let transfers: Vec<Transfer> = ids.map(|id| plain.transfer(id, 1, 2, 5, 0)).collect();
        batch_signed(&transfers, &plain.keys[1], &plain.gate)
    };
    let good = batch(1..=3);
    let mut forged_batch = batch(4..=5);
    if let Batch::CreateTransfers {
        batch_signature: Some(signed),
        ..
    } = &mut forged_batch
    {
        signed.signature[5] ^= 1;
    }
    let mut forged_gate = batch(6..=7);
    if let Batch::CreateTransfers { entries, .. } = &mut forged_gate
        && let Some(gate) = &mut entries[0].gate
    {
        gate.signature[1] ^= 1;
    }
    let other = batch(8..=9);
    let batches = vec![good, forged_batch, forged_gate];
    // Recorded: the good batch's signature and 3 approvals, the 2 approvals under the forged
    // batch signature, the last batch's signature and its 1 good approval.
    let held: usize = batches.iter().map(|b| preverifier.verify(b)).sum();
    assert_eq!(held, 8);
    assert_eq!(cache.len(), 8);
    let expected = plain.ledger.apply_block(2, 2_000_000, &batches).unwrap();
    let outcome = cached.ledger.apply_block(2, 2_000_000, &batches).unwrap();
    assert_eq!(outcome, expected);
    assert_eq!(outcome.results[0], BatchResults::Transfers(vec![R::Ok; 3]));
    assert!(matches!(
        &outcome.results[1],
        BatchResults::Transfers(results) if results.iter().all(|r| *r != R::Ok)
    ));
    assert_eq!(
        outcome.results[2],
        BatchResults::Transfers(vec![R::GateSignatureInvalid, R::Ok])
    );
    assert_eq!(cached.ledger.state_hash(), plain.ledger.state_hash());
    // Approvals by a key that is not a configured gate key are not recorded.
    let stranger = Preverifier::new(&[testkit::ed25519("gate", 9).public_key()], cache);
    assert_eq!(stranger.verify(&other), 1);
}

#[test]
fn the_signature_cache_is_bounded() {
    let cache = std::sync::Arc::new(verified::SignatureCache::with_capacity(2));
    let f = Fixture::new();
    let preverifier =
        verified::Preverifier::new(&[f.gate.public_key()], std::sync::Arc::clone(&cache));
    let transfers: Vec<Transfer> = (1..=5).map(|id| f.transfer(id, 1, 2, 5, 0)).collect();
    let batch = batch_signed(&transfers, &f.keys[1], &f.gate);
    assert_eq!(preverifier.verify(&batch), 6);
    assert_eq!(cache.len(), 2);
}

#[test]
fn blocks_must_follow_in_height_and_time() {
    let mut f = Fixture::new();
    assert!(matches!(
        f.ledger.apply_block(5, 10_000_000, &[]),
        Err(LedgerError::HeightMismatch { .. })
    ));
    assert!(matches!(
        f.ledger.apply_block(2, 1_000_000, &[]),
        Err(LedgerError::TimestampNotIncreasing { .. })
    ));
}

#[test]
fn account_creation_rules() {
    let mut f = Fixture::new();
    let key = &f.keys[1];
    let mut bad_key = new_account(9, LEDGER, 0, key);
    bad_key.controller = [0; 33];
    let both = new_account(
        10,
        LEDGER,
        AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS,
        key,
    );
    let existing = new_account(1, LEDGER, 0, key);
    let mut changed = new_account(2, LEDGER, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS, key);
    changed.user_data = 5;
    let linked_ok = new_account(11, LEDGER, AccountFlags::LINKED, key);
    let linked_bad = new_account(12, 0, 0, key);
    let outcome = f
        .ledger
        .apply_block(
            2,
            5_000_000,
            &[Batch::CreateAccounts(vec![
                bad_key, both, existing, changed, linked_ok, linked_bad,
            ])],
        )
        .unwrap();
    use CreateAccountResult as A;
    assert_eq!(
        outcome.results,
        vec![BatchResults::Accounts(vec![
            A::ControllerKeyInvalid,
            A::FlagsAreMutuallyExclusive,
            A::Exists,
            A::ExistsWithDifferentUserData,
            A::LinkedEventFailed,
            A::LedgerMustNotBeZero
        ])]
    );
    assert!(f.ledger.account(11).is_none());
}

#[test]
fn a_gate_approval_cannot_be_moved_to_another_transfer() {
    let mut f = Fixture::new();
    let approved = f.signed(f.transfer(1, 1, 2, 10, 0));
    let mut moved = f.signed(f.transfer(2, 1, 2, 10, 0));
    moved.transfer.decision_hash = approved.transfer.decision_hash;
    moved.gate = approved.gate;
    moved.signature = Some(f.keys[1].sign_digest(&moved.transfer.signing_digest()));
    assert_eq!(
        f.block_at(5, vec![approved, moved]),
        vec![R::Ok, R::GateSignatureInvalid]
    );
}
