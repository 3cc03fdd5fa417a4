//! Property test: the ledger against a naive model (maps, clones for rollback, the rules
//! written out again in the plainest way), over random blocks of plain, pending, post and void
//! transfers, linked chains, limits, unauthorised entries, resubmitted ids and timeouts. Every
//! result and every balance must agree; at the end every transfer is resubmitted.

use std::collections::BTreeMap;

use proptest::prelude::*;
use settlement::crypto::signing::{ControllerSigner, Ed25519Signer};
use settlement::ledger::{
    AMOUNT_MAX, AccountFlags, Batch, BatchResults, CreateTransferResult as R, Ledger, LedgerConfig,
    PendingStatus, Transfer, TransferEntry, TransferFlags,
};
use settlement::testkit::{self, approve, new_account};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Balances {
    dp: u128,
    dq: u128,
    cp: u128,
    cq: u128,
}

#[derive(Debug, Clone)]
struct ModelAccount {
    ledger: u32,
    dmnec: bool,
    cmned: bool,
    b: Balances,
}

#[derive(Debug, Clone)]
struct ModelTransfer {
    t: Transfer,
    debit: u128,
    credit: u128,
    amount: u128,
    status: PendingStatus,
    expires_at: Option<u64>,
}

#[derive(Debug, Clone, Default)]
struct Model {
    accounts: BTreeMap<u128, ModelAccount>,
    transfers: BTreeMap<u128, ModelTransfer>,
    failed: BTreeMap<u128, R>,
}

#[derive(Debug, Clone, Copy)]
struct Spec {
    transfer: Transfer,
    gated: bool,
    signed: bool,
}

impl Model {
    fn expire(&mut self, now: u64) {
        let due: Vec<u128> = self
            .transfers
            .iter()
            .filter(|(_, t)| {
                t.status == PendingStatus::Pending && t.expires_at.is_some_and(|at| at <= now)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let t = self.transfers.get_mut(&id).unwrap();
            t.status = PendingStatus::Expired;
            let (debit, credit, amount) = (t.debit, t.credit, t.amount);
            self.accounts.get_mut(&debit).unwrap().b.dp -= amount;
            self.accounts.get_mut(&credit).unwrap().b.cp -= amount;
        }
    }

    fn one(&mut self, s: &Spec, now: u64) -> R {
        let t = s.transfer;
        if t.id == 0 {
            return R::IdMustNotBeZero;
        }
        if let Some(e) = self.transfers.get(&t.id) {
            let e = e.t;
            return if e.flags != t.flags {
                R::ExistsWithDifferentFlags
            } else if e.pending_id != t.pending_id {
                R::ExistsWithDifferentPendingId
            } else if e.timeout_s != t.timeout_s {
                R::ExistsWithDifferentTimeout
            } else if e.debit_account_id != t.debit_account_id {
                R::ExistsWithDifferentDebitAccountId
            } else if e.credit_account_id != t.credit_account_id {
                R::ExistsWithDifferentCreditAccountId
            } else if e.amount != t.amount {
                R::ExistsWithDifferentAmount
            } else if e.user_data != t.user_data {
                R::ExistsWithDifferentUserData
            } else if e.ledger != t.ledger {
                R::ExistsWithDifferentLedger
            } else {
                R::Exists
            };
        }
        if self.failed.contains_key(&t.id) {
            return R::IdAlreadyFailed;
        }
        if !s.gated {
            return R::GateDecisionMissing;
        }
        let f = |bit| t.flags.0 & bit != 0;
        let pending = f(TransferFlags::PENDING);
        let post = f(TransferFlags::POST_PENDING);
        let void = f(TransferFlags::VOID_PENDING);
        if [pending, post, void].iter().filter(|x| **x).count() > 1 {
            return R::FlagsAreMutuallyExclusive;
        }
        if post || void {
            if t.pending_id == 0 {
                return R::PendingIdMustNotBeZero;
            }
            if t.pending_id == t.id {
                return R::PendingIdMustBeDifferent;
            }
            if t.timeout_s != 0 {
                return R::TimeoutReservedForPendingTransfer;
            }
            let Some(p) = self.transfers.get(&t.pending_id).cloned() else {
                return R::PendingTransferNotFound;
            };
            match p.status {
                PendingStatus::None => return R::PendingTransferNotPending,
                PendingStatus::Posted => return R::PendingTransferAlreadyPosted,
                PendingStatus::Voided => return R::PendingTransferAlreadyVoided,
                PendingStatus::Expired => return R::PendingTransferExpired,
                PendingStatus::Pending => {}
            }
            if t.debit_account_id != 0 && t.debit_account_id != p.debit {
                return R::PendingTransferHasDifferentDebitAccountId;
            }
            if t.credit_account_id != 0 && t.credit_account_id != p.credit {
                return R::PendingTransferHasDifferentCreditAccountId;
            }
            if t.ledger != 0 && t.ledger != p.t.ledger {
                return R::PendingTransferHasDifferentLedger;
            }
            let amount = if post {
                if t.amount == AMOUNT_MAX {
                    p.amount
                } else if t.amount == 0 {
                    return R::AmountMustNotBeZero;
                } else if t.amount > p.amount {
                    return R::ExceedsPendingTransferAmount;
                } else {
                    t.amount
                }
            } else {
                if t.amount != 0 && t.amount != p.amount && t.amount != AMOUNT_MAX {
                    return R::PendingTransferHasDifferentAmount;
                }
                p.amount
            };
            if !s.signed {
                return R::SignatureMissing;
            }
            let d = &mut self.accounts.get_mut(&p.debit).unwrap().b;
            d.dp -= p.amount;
            if post {
                d.dq += amount;
            }
            let c = &mut self.accounts.get_mut(&p.credit).unwrap().b;
            c.cp -= p.amount;
            if post {
                c.cq += amount;
            }
            self.transfers.get_mut(&t.pending_id).unwrap().status = if post {
                PendingStatus::Posted
            } else {
                PendingStatus::Voided
            };
            self.transfers.insert(
                t.id,
                ModelTransfer {
                    t,
                    debit: p.debit,
                    credit: p.credit,
                    amount,
                    status: PendingStatus::None,
                    expires_at: None,
                },
            );
            return R::Ok;
        }
        if t.pending_id != 0 {
            return R::PendingIdMustBeZero;
        }
        if !pending && t.timeout_s != 0 {
            return R::TimeoutReservedForPendingTransfer;
        }
        if t.debit_account_id == 0 {
            return R::DebitAccountIdMustNotBeZero;
        }
        if t.credit_account_id == 0 {
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
        let Some(debit) = self.accounts.get(&t.debit_account_id).cloned() else {
            return R::DebitAccountNotFound;
        };
        let Some(credit) = self.accounts.get(&t.credit_account_id).cloned() else {
            return R::CreditAccountNotFound;
        };
        if debit.ledger != credit.ledger {
            return R::AccountsMustHaveTheSameLedger;
        }
        if t.ledger != debit.ledger {
            return R::TransferMustHaveTheSameLedgerAsAccounts;
        }
        if !s.signed {
            return R::SignatureMissing;
        }
        if debit.dmnec && debit.b.dp + debit.b.dq + t.amount > debit.b.cq {
            return R::ExceedsCredits;
        }
        if credit.cmned && credit.b.cp + credit.b.cq + t.amount > credit.b.dq {
            return R::ExceedsDebits;
        }
        let d = &mut self.accounts.get_mut(&t.debit_account_id).unwrap().b;
        if pending {
            d.dp += t.amount;
        } else {
            d.dq += t.amount;
        }
        let c = &mut self.accounts.get_mut(&t.credit_account_id).unwrap().b;
        if pending {
            c.cp += t.amount;
        } else {
            c.cq += t.amount;
        }
        self.transfers.insert(
            t.id,
            ModelTransfer {
                t,
                debit: t.debit_account_id,
                credit: t.credit_account_id,
                amount: t.amount,
                status: if pending {
                    PendingStatus::Pending
                } else {
                    PendingStatus::None
                },
                expires_at: (pending && t.timeout_s > 0)
                    .then(|| now + u64::from(t.timeout_s) * 1_000_000),
            },
        );
        R::Ok
    }

    fn recorded(result: R) -> bool {
        !matches!(
            result,
            R::Ok
                | R::LinkedEventFailed
                | R::LinkedEventChainOpen
                | R::IdMustNotBeZero
                | R::IdAlreadyFailed
                | R::GateDecisionMissing
                | R::SignatureMissing
                | R::Exists
                | R::ExistsWithDifferentFlags
                | R::ExistsWithDifferentPendingId
                | R::ExistsWithDifferentTimeout
                | R::ExistsWithDifferentDebitAccountId
                | R::ExistsWithDifferentCreditAccountId
                | R::ExistsWithDifferentAmount
                | R::ExistsWithDifferentUserData
                | R::ExistsWithDifferentLedger
        )
    }

    fn batch(&mut self, specs: &[Spec], now: u64) -> Vec<R> {
        let mut results = Vec::new();
        let linked = |s: &Spec| s.transfer.flags.0 & TransferFlags::LINKED != 0;
        let mut i = 0;
        while i < specs.len() {
            let mut end = i;
            while linked(&specs[end]) && end + 1 < specs.len() {
                end += 1;
            }
            let open = linked(&specs[end]);
            let saved = self.clone();
            let mut chain = Vec::new();
            let mut failed_at = None;
            for (j, spec) in specs.iter().enumerate().take(end + 1).skip(i) {
                let r = if j == end && open {
                    R::LinkedEventChainOpen
                } else {
                    self.one(spec, now)
                };
                chain.push(r);
                if r != R::Ok {
                    failed_at = Some(j);
                    break;
                }
            }
            if let Some(at) = failed_at {
                *self = saved;
                let culprit = chain[at - i];
                for (j, spec) in specs.iter().enumerate().take(end + 1).skip(i) {
                    let r = if j == at {
                        culprit
                    } else {
                        R::LinkedEventFailed
                    };
                    if Self::recorded(r) {
                        self.failed.insert(spec.transfer.id, r);
                    }
                    results.push(r);
                }
            } else {
                results.extend(chain);
            }
            i = end + 1;
        }
        results
    }
}

fn spec_strategy() -> impl Strategy<Value = Spec> {
    (
        0u128..16,
        0u8..9,
        0u128..6,
        0u128..6,
        prop_oneof![5 => 0u128..160, 2 => Just(AMOUNT_MAX), 1 => Just(0u128)],
        prop_oneof![4 => 1u128..8, 1 => 0u128..16],
        0u32..4,
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.93),
        prop::bool::weighted(0.93),
        prop_oneof![10 => Just(1u32), 1 => Just(0u32), 1 => Just(2u32)],
        0u128..3,
    )
        .prop_map(
            |(
                id,
                kind,
                debit,
                credit,
                amount,
                pending_id,
                timeout,
                linked,
                gated,
                signed,
                ledger,
                user_data,
            )| {
                let mut flags = match kind {
                    0 | 1 => 0,
                    2 | 3 => TransferFlags::PENDING,
                    4 | 5 => TransferFlags::POST_PENDING,
                    6 | 7 => TransferFlags::VOID_PENDING,
                    _ => TransferFlags::PENDING | TransferFlags::POST_PENDING,
                };
                if linked {
                    flags |= TransferFlags::LINKED;
                }
                let phase2 = matches!(kind, 4..=7);
                // Post/void usually leave accounts and ledger to the pending transfer.
                let inherit = |value: u128| if phase2 && value != 5 { 0 } else { value };
                Spec {
                    transfer: Transfer {
                        id,
                        debit_account_id: inherit(debit),
                        credit_account_id: inherit(credit),
                        // AMOUNT_MAX only means something to a post or void.
                        amount: if !phase2 && amount == AMOUNT_MAX {
                            7
                        } else {
                            amount
                        },
                        pending_id: if phase2 || kind == 1 && pending_id == 1 {
                            pending_id
                        } else {
                            0
                        },
                        user_data,
                        timeout_s: if kind == 2 || kind == 0 && timeout == 3 {
                            timeout
                        } else {
                            0
                        },
                        ledger: if phase2 && ledger == 1 { 0 } else { ledger },
                        code: 1,
                        flags: TransferFlags(flags),
                        decision_hash: testkit::decision(id),
                    },
                    gated,
                    signed,
                }
            },
        )
}

struct Keys {
    gate: Ed25519Signer,
    key: ControllerSigner,
}

fn entry(keys: &Keys, s: &Spec) -> TransferEntry {
    TransferEntry {
        transfer: s.transfer,
        gate: s
            .gated
            .then(|| approve(&keys.gate, s.transfer.id, &s.transfer.decision_hash)),
        signature: s
            .signed
            .then(|| keys.key.sign_digest(&s.transfer.signing_digest())),
    }
}

fn run(blocks: Vec<(u64, Vec<Spec>)>) -> Result<(), TestCaseError> {
    let keys = Keys {
        gate: testkit::ed25519("gate", 0),
        key: testkit::controller("model", 0),
    };
    let mut ledger = Ledger::new(&LedgerConfig {
        gate_keys: vec![keys.gate.public_key()],
        genesis_hash: [0; 32],
        verify_threads: 1,
    });
    let mut model = Model::default();
    // 1: issuer; 2, 3: holders (debits ≤ credits); 4: liability-limited (credits ≤ debits);
    // 5: another asset.
    let layout = [
        (1u128, 1u32, 0u16),
        (2, 1, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
        (3, 1, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
        (4, 1, AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS),
        (5, 2, 0),
    ];
    let accounts = layout
        .iter()
        .map(|(id, ledger, flags)| new_account(*id, *ledger, *flags, &keys.key))
        .collect();
    ledger
        .apply_block(1, 1_000_000, &[Batch::CreateAccounts(accounts)])
        .unwrap();
    for (id, l, flags) in layout {
        model.accounts.insert(
            id,
            ModelAccount {
                ledger: l,
                dmnec: flags & AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS != 0,
                cmned: flags & AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS != 0,
                b: Balances::default(),
            },
        );
    }
    let mut now = 1_000_000u64;
    let mut height = 1;
    let mut submitted: Vec<Spec> = Vec::new();
    let apply = |specs: &[Spec], now: u64, height: u64, ledger: &mut Ledger, model: &mut Model| {
        let entries = specs.iter().map(|s| entry(&keys, s)).collect();
        let outcome = ledger
            .apply_block(
                height,
                now,
                &[Batch::CreateTransfers {
                    entries,
                    batch_signature: None,
                }],
            )
            .unwrap();
        model.expire(now);
        let expected = model.batch(specs, now);
        let BatchResults::Transfers(got) = &outcome.results[0] else {
            unreachable!()
        };
        (got.clone(), expected)
    };
    for (advance_s, specs) in blocks {
        now += (advance_s * 1_000_000).max(1);
        height += 1;
        let (got, expected) = apply(&specs, now, height, &mut ledger, &mut model);
        prop_assert_eq!(&got, &expected, "block {} specs {:?}", height, specs);
        ledger
            .check_invariants_full()
            .map_err(TestCaseError::fail)?;
        for (id, account) in &model.accounts {
            let real = ledger.account(*id).unwrap();
            let b = Balances {
                dp: real.debits_pending,
                dq: real.debits_posted,
                cp: real.credits_pending,
                cq: real.credits_posted,
            };
            prop_assert_eq!(b, account.b, "account {} after block {}", id, height);
        }
        submitted.extend(specs);
    }
    for (id, t) in &model.transfers {
        prop_assert_eq!(ledger.transfer(*id).map(|r| r.status), Some(t.status));
    }
    // Resubmit every transfer, one per block so chains do not interfere: an applied one is
    // `exists`, a failed one stays failed, never a success the second time.
    for mut spec in submitted {
        spec.transfer.flags.0 &= !TransferFlags::LINKED;
        let was_applied = model.transfers.get(&spec.transfer.id).map(|t| t.t);
        let failed_before = model.failed.get(&spec.transfer.id).copied();
        now += 1;
        height += 1;
        let (got, expected) = apply(&[spec], now, height, &mut ledger, &mut model);
        prop_assert_eq!(&got, &expected);
        if let Some(first) = was_applied {
            if first == spec.transfer {
                prop_assert_eq!(got[0], R::Exists);
            }
        } else if failed_before.is_some() && spec.transfer.id != 0 {
            prop_assert_eq!(got[0], R::IdAlreadyFailed);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn ledger_agrees_with_the_naive_model(
        blocks in prop::collection::vec((0u64..3, prop::collection::vec(spec_strategy(), 0..10)), 1..7)
    ) {
        run(blocks)?;
    }
}
