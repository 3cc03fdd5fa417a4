//! The contract between the compliance gate (kyc-aml) and the ledger's validators
//! (settlement): an approval the gate signs is exactly what a validator accepts, and a hold or
//! rejection signed by the same key is refused.

use kyc_aml::gate::decision::{
    GateKeys, Outcome, SIGNING_DOMAIN, SignedDecision, signing_message, verify_approval,
};
use settlement::crypto::{GATE_SIGNING_DOMAIN, gate_approval_message};
use settlement::ledger::{
    Batch, BatchResults, CreateTransferResult, GateApproval, Ledger, LedgerConfig, Transfer,
    TransferEntry, TransferFlags,
};
use settlement::testkit;

#[test]
fn both_crates_sign_the_same_bytes() {
    assert_eq!(SIGNING_DOMAIN, GATE_SIGNING_DOMAIN);
    let hash = [7u8; 32];
    assert_eq!(
        signing_message(0x0102_0304, Outcome::Approve, &hash),
        gate_approval_message(0x0102_0304, &hash).to_vec()
    );
}

#[test]
fn a_gate_approval_settles_and_a_signed_rejection_does_not() {
    let gate = testkit::ed25519("gate", 0);
    let issuer = testkit::controller("issuer", 0);
    let holder = testkit::controller("holder", 0);
    let mut keys = GateKeys::new();
    keys.add("gate-1", &gate.public_key()).unwrap();
    let mut ledger = Ledger::new(&LedgerConfig {
        gate_keys: vec![gate.public_key()],
        genesis_hash: [0; 32],
        verify_threads: 1,
    });
    ledger
        .apply_block(
            1,
            1,
            &[Batch::CreateAccounts(vec![
                testkit::new_account(1, 1, 0, &issuer),
                testkit::new_account(2, 1, 0, &holder),
            ])],
        )
        .unwrap();
    let transfer = |id: u128| Transfer {
        id,
        debit_account_id: 1,
        credit_account_id: 2,
        amount: 100,
        pending_id: 0,
        user_data: 0,
        timeout_s: 0,
        ledger: 1,
        code: 1,
        flags: TransferFlags(0),
        decision_hash: testkit::decision(id),
    };
    // What the gate produces (kyc-aml's SignedDecision), carried into a ledger entry.
    let decide = |id: u128, outcome: Outcome| {
        let hash = testkit::decision(id);
        SignedDecision {
            transfer_id: id,
            outcome,
            hash,
            signature: gate.sign(&signing_message(id, outcome, &hash)),
            gate_key_id: "gate-1".into(),
        }
    };
    let entry = |signed: &SignedDecision| {
        let t = transfer(signed.transfer_id);
        TransferEntry {
            transfer: t,
            gate: Some(GateApproval {
                gate_key: gate.public_key(),
                signature: signed.signature,
            }),
            signature: Some(issuer.sign_digest(&t.signing_digest())),
        }
    };
    let approved = decide(10, Outcome::Approve);
    let rejected = decide(11, Outcome::Reject);
    let held = decide(12, Outcome::Hold);
    assert!(verify_approval(&approved, 10, &keys).is_ok());
    assert!(verify_approval(&rejected, 11, &keys).is_err());
    let outcome = ledger
        .apply_block(
            2,
            2,
            &[Batch::CreateTransfers {
                entries: vec![entry(&approved), entry(&rejected), entry(&held)],
                batch_signature: None,
            }],
        )
        .unwrap();
    assert_eq!(
        outcome.results,
        vec![BatchResults::Transfers(vec![
            CreateTransferResult::Ok,
            CreateTransferResult::GateSignatureInvalid,
            CreateTransferResult::GateSignatureInvalid
        ])]
    );
    assert_eq!(
        ledger.transfer(10).unwrap().transfer.decision_hash,
        approved.hash
    );
}
