//! Shared fixtures of the settlement integration tests: a consortium, a small chain of
//! committed blocks, and the block-store suite every store must pass.

#![allow(dead_code)]

use settlement::block::CommittedBlock;
use settlement::crypto::signing::ControllerSigner;
use settlement::ledger::{AccountFlags, Batch, Transfer, TransferFlags};
use settlement::membership::fixture::Consortium;
use settlement::replica::Replica;
use settlement::store::memory::MemoryStore;
use settlement::store::{BlockStore, StoreError};
use settlement::testkit::{self, batch_signed, decision, new_account, signed_entry};

/// Asset of the test chain.
pub const LEDGER: u32 = 1;

/// The issuer's key (account 1) and the custodian's (accounts 2..=5).
pub fn keys() -> (ControllerSigner, ControllerSigner) {
    (
        testkit::controller("issuer", 0),
        testkit::controller("custodian", 0),
    )
}

/// The batches of block `height` of the test chain.
pub fn batches(consortium: &Consortium, height: u64) -> Vec<Batch> {
    let (issuer, custodian) = keys();
    if height == 1 {
        let mut accounts = vec![new_account(1, LEDGER, 0, &issuer)];
        for id in 2..=5 {
            accounts.push(new_account(
                id,
                LEDGER,
                AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
                &custodian,
            ));
        }
        return vec![Batch::CreateAccounts(accounts)];
    }
    let base = u128::from(height) * 100;
    let t = |id: u128, debit: u128, credit: u128, amount: u128, flags: u16| Transfer {
        id,
        debit_account_id: debit,
        credit_account_id: credit,
        amount,
        pending_id: 0,
        user_data: u128::from(height),
        timeout_s: if flags & TransferFlags::PENDING != 0 {
            30
        } else {
            0
        },
        ledger: LEDGER,
        code: 1,
        flags: TransferFlags(flags),
        decision_hash: decision(id),
    };
    let mint = signed_entry(t(base + 1, 1, 2, 1_000, 0), &issuer, &consortium.gate);
    let settlement = batch_signed(
        &[
            t(base + 2, 2, 3, 300, TransferFlags::LINKED),
            t(base + 3, 3, 4, 100, 0),
            t(base + 4, 2, 5, 50, TransferFlags::PENDING),
            // Fails (exceeds credits): shows up as a failure in every store.
            t(base + 5, 5, 4, 1_000_000, 0),
        ],
        &custodian,
        &consortium.gate,
    );
    vec![
        Batch::CreateTransfers {
            entries: vec![mint],
            batch_signature: None,
        },
        settlement,
    ]
}

/// A chain of `blocks` committed blocks (timestamps one second apart).
pub fn chain(consortium: &Consortium, blocks: u64) -> Vec<CommittedBlock> {
    let mut replica = Replica::open(&consortium.genesis, MemoryStore::new(), 1).unwrap();
    for height in 1..=blocks {
        let block = replica
            .propose(1, height * 1_000_000, batches(consortium, height))
            .unwrap();
        let certificate = consortium.certify(height, block.hash(), replica.membership().quorum());
        replica
            .commit(CommittedBlock { block, certificate })
            .unwrap();
    }
    replica.into_store().blocks().to_vec()
}

/// The suite every block store passes. `open` opens the same store again (a restart).
pub fn store_suite<S: BlockStore>(open: impl Fn() -> S) {
    let consortium = Consortium::new(4);
    let blocks = chain(&consortium, 6);
    let mut reference = Replica::open(&consortium.genesis, MemoryStore::new(), 1).unwrap();

    let store = open();
    assert_eq!(store.applied_height().unwrap(), 0);
    let mut replica = Replica::open(&consortium.genesis, store, 1).unwrap();
    for block in &blocks[..5] {
        replica.commit(block.clone()).unwrap();
        reference.commit(block.clone()).unwrap();
    }
    let state_hash = replica.ledger().state_hash();
    let mut store = replica.into_store();
    assert_eq!(store.applied_height().unwrap(), 5);
    for block in &blocks[..5] {
        assert_eq!(&store.read(block.block.header.height).unwrap(), block);
    }
    assert!(matches!(store.read(6), Err(StoreError::NotFound(6))));
    // Re-appending a stored block is a no-op; a different block there is a conflict.
    let effects = settlement::ledger::BlockEffects::default();
    store.append(&blocks[2], &effects).unwrap();
    let mut forged = blocks[2].clone();
    forged.block.header.timestamp_us += 1;
    assert!(matches!(
        store.append(&forged, &effects),
        Err(StoreError::Conflict { height: 3 })
    ));
    let mut far = blocks[5].clone();
    far.block.header.height = 9;
    assert!(matches!(
        store.append(&far, &effects),
        Err(StoreError::Gap {
            expected: 6,
            got: 9
        })
    ));
    drop(store);

    // Restart: the replica replays from genesis to the applied height and reaches the same
    // state, then carries on.
    let mut replica = Replica::open(&consortium.genesis, open(), 1).unwrap();
    assert_eq!(replica.height(), 5);
    assert_eq!(replica.ledger().state_hash(), state_hash);
    replica.commit(blocks[5].clone()).unwrap();
    reference.commit(blocks[5].clone()).unwrap();
    assert_eq!(
        replica.ledger().state_hash(),
        reference.ledger().state_hash()
    );
    assert_eq!(replica.ledger().account(2), reference.ledger().account(2));
    assert_eq!(replica.into_store().applied_height().unwrap(), 6);
}
