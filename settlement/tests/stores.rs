//! Both block stores pass the same suite (tests/common), survive restarts, and refuse to start
//! on a damaged block, naming it.

mod common;

use settlement::membership::fixture::Consortium;
use settlement::replica::{Replica, ReplicaError};
use settlement::store::file::FileStore;
use settlement::store::pg::PgStore;
use settlement::store::{BlockStore, StoreError};

const PG: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

fn unique_schema(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "settlement_{tag}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

#[test]
fn file_store_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    common::store_suite(|| FileStore::open(dir.path()).unwrap());
}

#[test]
fn pg_store_passes_the_suite() {
    let schema = unique_schema("suite");
    common::store_suite(|| PgStore::connect(PG, &schema).unwrap());
    PgStore::connect(PG, &schema)
        .unwrap()
        .drop_schema()
        .unwrap();
}

#[test]
fn file_store_with_a_flipped_byte_refuses_to_start_and_names_the_block() {
    let consortium = Consortium::new(4);
    let blocks = common::chain(&consortium, 4);
    let dir = tempfile::tempdir().unwrap();
    let mut store = FileStore::open(dir.path()).unwrap();
    let effects = settlement::ledger::BlockEffects::default();
    let mut offsets = Vec::new();
    for block in &blocks {
        offsets.push(
            std::fs::metadata(dir.path().join("blocks.log"))
                .unwrap()
                .len(),
        );
        store.append(block, &effects).unwrap();
    }
    drop(store);
    // Flip one byte in the middle of block 3's payload.
    let path = dir.path().join("blocks.log");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = offsets[2] as usize + 8 + 40;
    bytes[at] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    match FileStore::open(dir.path()) {
        Err(StoreError::Corrupt { height, reason }) => {
            assert_eq!(height, 3, "{reason}");
            assert!(reason.contains("CRC32C"), "{reason}");
        }
        other => panic!("expected corruption at height 3, got {other:?}"),
    }
}

#[test]
fn file_store_drops_an_interrupted_append_but_keeps_applied_blocks() {
    let consortium = Consortium::new(1);
    let blocks = common::chain(&consortium, 3);
    let dir = tempfile::tempdir().unwrap();
    let mut store = FileStore::open(dir.path()).unwrap();
    let effects = settlement::ledger::BlockEffects::default();
    for block in &blocks[..2] {
        store.append(block, &effects).unwrap();
    }
    drop(store);
    // A crash half-way through appending block 3: its record is partly written, the marker
    // still says 2.
    let record = blocks[2].encode();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("blocks.log"))
        .unwrap();
    std::io::Write::write_all(&mut file, &(record.len() as u32).to_le_bytes()).unwrap();
    std::io::Write::write_all(&mut file, &record[..record.len() / 2]).unwrap();
    drop(file);
    let mut store = FileStore::open(dir.path()).unwrap();
    assert_eq!(store.applied_height().unwrap(), 2);
    store.append(&blocks[2], &effects).unwrap();
    drop(store);
    let replica =
        Replica::open(&consortium.genesis, FileStore::open(dir.path()).unwrap(), 1).unwrap();
    assert_eq!(replica.height(), 3);
}

#[test]
fn pg_store_with_a_flipped_byte_refuses_to_start_and_names_the_block() {
    let consortium = Consortium::new(4);
    let blocks = common::chain(&consortium, 4);
    let schema = unique_schema("corrupt");
    let mut replica = Replica::open(
        &consortium.genesis,
        PgStore::connect(PG, &schema).unwrap(),
        1,
    )
    .unwrap();
    for block in &blocks {
        replica.commit(block.clone()).unwrap();
    }
    let store = replica.into_store();
    store.corrupt_record_for_test(2, 60).unwrap();
    let outcome = Replica::open(&consortium.genesis, store, 1);
    let named = matches!(
        &outcome,
        Err(ReplicaError::Store(StoreError::Corrupt { height: 2, .. }))
    );
    assert!(named, "expected corruption at height 2, got {outcome:?}");
    PgStore::connect(PG, &schema)
        .unwrap()
        .drop_schema()
        .unwrap();
}

#[test]
fn pg_store_keeps_balances_and_decision_hashes_for_regulators() {
    let consortium = Consortium::new(4);
    let blocks = common::chain(&consortium, 3);
    let schema = unique_schema("balances");
    let mut replica = Replica::open(
        &consortium.genesis,
        PgStore::connect(PG, &schema).unwrap(),
        1,
    )
    .unwrap();
    for block in &blocks {
        replica.commit(block.clone()).unwrap();
    }
    for id in 1..=5u128 {
        let account = *replica.ledger().account(id).unwrap();
        let stored = replica.store().account_balances(id).unwrap().unwrap();
        assert_eq!(
            stored,
            [
                account.debits_pending,
                account.debits_posted,
                account.credits_pending,
                account.credits_posted
            ],
            "account {id}"
        );
    }
    assert_eq!(
        replica.store().transfer_decision_hash(301).unwrap(),
        Some(settlement::testkit::decision(301))
    );
    // The failed transfer is not a transfer.
    assert_eq!(replica.store().transfer_decision_hash(305).unwrap(), None);
    replica.into_store().drop_schema().unwrap();
}

#[test]
fn pg_store_holds_amounts_beyond_28_digits() {
    // u128::MAX has 39 digits: NUMERIC(39,0) through text keeps every one.
    let schema = unique_schema("wide");
    let consortium = Consortium::new(1);
    let (issuer, custodian) = common::keys();
    let mut replica = Replica::open(
        &consortium.genesis,
        PgStore::connect(PG, &schema).unwrap(),
        1,
    )
    .unwrap();
    let accounts = vec![
        settlement::testkit::new_account(1, 1, 0, &issuer),
        settlement::testkit::new_account(2, 1, 0, &custodian),
    ];
    let block = replica
        .propose(
            1,
            1,
            vec![settlement::ledger::Batch::CreateAccounts(accounts)],
        )
        .unwrap();
    let certificate = consortium.certify(1, block.hash(), 1);
    replica
        .commit(settlement::block::CommittedBlock { block, certificate })
        .unwrap();
    let amount = u128::MAX - 7;
    let transfer = settlement::ledger::Transfer {
        id: 9,
        debit_account_id: 1,
        credit_account_id: 2,
        amount,
        pending_id: 0,
        user_data: 0,
        timeout_s: 0,
        ledger: 1,
        code: 1,
        flags: settlement::ledger::TransferFlags(0),
        decision_hash: [4; 32],
    };
    let entry = settlement::testkit::signed_entry(transfer, &issuer, &consortium.gate);
    let block = replica
        .propose(
            1,
            2,
            vec![settlement::ledger::Batch::CreateTransfers {
                entries: vec![entry],
                batch_signature: None,
            }],
        )
        .unwrap();
    let certificate = consortium.certify(2, block.hash(), 1);
    replica
        .commit(settlement::block::CommittedBlock { block, certificate })
        .unwrap();
    assert_eq!(
        replica.store().account_balances(2).unwrap(),
        Some([0, 0, 0, amount])
    );
    replica.into_store().drop_schema().unwrap();
}
