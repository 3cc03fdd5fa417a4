//! Shared fixtures of the settlement integration tests: a consortium, a small chain of
//! committed blocks, and the block-store suite every store must pass.

#![allow(dead_code, unused_imports)]

use settlement::membership::fixture::Consortium;
use settlement::replica::Replica;
use settlement::store::memory::MemoryStore;
use settlement::store::{BlockStore, StoreError};

pub use settlement::testkit::{
    SAMPLE_LEDGER as LEDGER, sample_batches as batches, sample_chain as chain, sample_keys as keys,
};

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
