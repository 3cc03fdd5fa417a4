//! Delivery versus payment: a trade's legs settle together or not at all, and settling the
//! same trade twice never moves funds twice.

use settlement::dvp::{DvpTrade, FeeLeg, dvp_transfers, leg_transfer_id};
use settlement::ledger::{
    AccountFlags, Batch, BatchResults, CreateTransferResult as R, Ledger, LedgerConfig, Transfer,
    TransferFlags,
};
use settlement::testkit::{self, batch_signed, decision, new_account, signed_entry};

const CITY: u32 = 1;
const EUR: u32 = 2;

struct Market {
    ledger: Ledger,
    height: u64,
}

impl Market {
    fn apply(&mut self, batches: Vec<Batch>) -> Vec<BatchResults> {
        self.height += 1;
        let outcome = self
            .ledger
            .apply_block(self.height, self.height * 1_000_000, &batches)
            .unwrap();
        self.ledger.check_invariants_full().unwrap();
        outcome.results
    }

    fn posted(&self, id: u128) -> (u128, u128) {
        let a = self.ledger.account(id).unwrap();
        (a.debits_posted, a.credits_posted)
    }
}

fn trade(trade_id: u128, base_amount: u128) -> DvpTrade {
    DvpTrade {
        trade_id,
        base_ledger: CITY,
        quote_ledger: EUR,
        base_amount,
        quote_amount: 2_500,
        seller_base_account_id: 10,
        seller_quote_account_id: 11,
        buyer_base_account_id: 20,
        buyer_quote_account_id: 21,
        fees: vec![
            FeeLeg {
                payer_account_id: 21,
                payee_account_id: 30,
                ledger: EUR,
                amount: 5,
            },
            FeeLeg {
                payer_account_id: 11,
                payee_account_id: 30,
                ledger: EUR,
                amount: 4,
            },
        ],
    }
}

#[test]
fn dvp_legs_settle_together_or_not_at_all() {
    let gate = testkit::ed25519("gate", 0);
    let issuer = testkit::controller("issuer", 0);
    let custodian = testkit::controller("custodian", 0);
    let mut market = Market {
        ledger: Ledger::new(&LedgerConfig {
            gate_keys: vec![gate.public_key()],
            genesis_hash: [0; 32],
            verify_threads: 1,
        }),
        height: 0,
    };
    let holder = AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS;
    let accounts = vec![
        new_account(1, CITY, 0, &issuer),
        new_account(2, EUR, 0, &issuer),
        new_account(10, CITY, holder, &custodian),
        new_account(11, EUR, holder, &custodian),
        new_account(20, CITY, holder, &custodian),
        new_account(21, EUR, holder, &custodian),
        new_account(30, EUR, holder, &custodian),
    ];
    market.apply(vec![Batch::CreateAccounts(accounts)]);
    // The seller holds 1,000,000 µCITY; the buyer 100.00 EUR.
    let mint = |id, debit, credit, ledger, amount| Transfer {
        id,
        debit_account_id: debit,
        credit_account_id: credit,
        amount,
        pending_id: 0,
        user_data: 0,
        timeout_s: 0,
        ledger,
        code: 1,
        flags: TransferFlags(0),
        decision_hash: decision(id),
    };
    market.apply(vec![Batch::CreateTransfers {
        entries: vec![
            signed_entry(mint(1, 1, 10, CITY, 1_000_000), &issuer, &gate),
            signed_entry(mint(2, 2, 21, EUR, 10_000), &issuer, &gate),
        ],
        batch_signature: None,
    }]);

    let decision_hash = decision(7_000);
    let legs = dvp_transfers(&trade(7, 400_000), decision_hash).unwrap();
    assert_eq!(legs.len(), 4);
    assert!(legs[..3].iter().all(|t| t.flags.has(TransferFlags::LINKED)));
    assert!(!legs[3].flags.has(TransferFlags::LINKED));
    let results = market.apply(vec![batch_signed(&legs, &custodian, &gate)]);
    assert_eq!(results, vec![BatchResults::Transfers(vec![R::Ok; 4])]);
    assert_eq!(market.posted(10), (400_000, 1_000_000));
    assert_eq!(market.posted(20), (0, 400_000));
    assert_eq!(market.posted(21), (2_505, 10_000));
    assert_eq!(market.posted(11), (4, 2_500));
    assert_eq!(market.posted(30), (0, 9));
    let stored = market.ledger.transfer(leg_transfer_id(7, 1)).unwrap();
    assert_eq!(stored.transfer.decision_hash, decision_hash);

    // The seller has 600,000 left: a trade for 700,000 fails on the base leg, and no leg moves.
    let before: Vec<_> = [10, 11, 20, 21, 30].map(|id| market.posted(id)).to_vec();
    let legs = dvp_transfers(&trade(8, 700_000), decision(8_000)).unwrap();
    let results = market.apply(vec![batch_signed(&legs, &custodian, &gate)]);
    assert_eq!(
        results,
        vec![BatchResults::Transfers(vec![
            R::ExceedsCredits,
            R::LinkedEventFailed,
            R::LinkedEventFailed,
            R::LinkedEventFailed
        ])]
    );
    let after: Vec<_> = [10, 11, 20, 21, 30].map(|id| market.posted(id)).to_vec();
    assert_eq!(before, after);

    // Settling trade 7 again moves nothing: its legs exist, the chain is refused.
    let legs = dvp_transfers(&trade(7, 400_000), decision_hash).unwrap();
    let results = market.apply(vec![batch_signed(&legs, &custodian, &gate)]);
    assert_eq!(
        results,
        vec![BatchResults::Transfers(vec![
            R::Exists,
            R::LinkedEventFailed,
            R::LinkedEventFailed,
            R::LinkedEventFailed
        ])]
    );
    let again: Vec<_> = [10, 11, 20, 21, 30].map(|id| market.posted(id)).to_vec();
    assert_eq!(again, after);
}

#[test]
fn malformed_trades_are_refused() {
    let mut bad = trade(0, 1);
    assert!(dvp_transfers(&bad, [0; 32]).is_err());
    bad = trade(1, 0);
    assert!(dvp_transfers(&bad, [0; 32]).is_err());
    bad = trade(1, 1);
    bad.fees = vec![bad.fees[0]; 9];
    assert!(dvp_transfers(&bad, [0; 32]).is_err());
}
