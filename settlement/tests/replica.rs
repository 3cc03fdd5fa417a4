//! The replica: what consensus plugs into. Proposals are executed before voting, commits need
//! a quorum certificate and the right chain link, and a block with unauthorised transfers
//! refuses exactly those.

mod common;

use settlement::block::CommittedBlock;
use settlement::ledger::{Batch, BatchResults, CreateTransferResult as R, Transfer, TransferFlags};
use settlement::membership::fixture::Consortium;
use settlement::replica::{Replica, ReplicaError};
use settlement::store::memory::MemoryStore;
use settlement::testkit::{decision, signed_entry};

fn open(consortium: &Consortium) -> Replica<MemoryStore> {
    Replica::open(&consortium.genesis, MemoryStore::new(), 1).unwrap()
}

#[test]
fn commits_need_a_quorum_and_the_chain_link() {
    let consortium = Consortium::new(4);
    let mut replica = open(&consortium);
    let block = replica
        .propose(1, 1_000_000, common::batches(&consortium, 1))
        .unwrap();
    replica.validate_proposal(&block).unwrap();
    let weak = consortium.certify(1, block.hash(), 2);
    let refused = replica.commit(CommittedBlock {
        block: block.clone(),
        certificate: weak,
    });
    assert!(matches!(
        refused,
        Err(ReplicaError::BadBlock { height: 1, .. })
    ));
    let certificate = consortium.certify(1, block.hash(), 3);
    replica
        .commit(CommittedBlock {
            block: block.clone(),
            certificate: certificate.clone(),
        })
        .unwrap();
    // The same block again is not the next block.
    assert!(
        replica
            .commit(CommittedBlock { block, certificate })
            .is_err()
    );

    let mut unlinked = replica
        .propose(1, 2_000_000, common::batches(&consortium, 2))
        .unwrap();
    unlinked.header.previous_hash = [0; 32];
    assert!(replica.validate_proposal(&unlinked).is_err());
    let mut lying = replica
        .propose(1, 2_000_000, common::batches(&consortium, 2))
        .unwrap();
    lying.header.state_hash[0] ^= 1;
    assert!(matches!(
        replica.validate_proposal(&lying),
        Err(ReplicaError::BadBlock { .. })
    ));
    let mut stranger = replica
        .propose(99, 2_000_000, common::batches(&consortium, 2))
        .unwrap();
    stranger.header.proposer = 99;
    assert!(replica.validate_proposal(&stranger).is_err());
}

#[test]
fn a_block_with_ungated_or_unsigned_transfers_rejects_exactly_those() {
    let consortium = Consortium::new(1);
    let mut replica = open(&consortium);
    let (issuer, _) = common::keys();
    let block = replica
        .propose(1, 1, common::batches(&consortium, 1))
        .unwrap();
    let certificate = consortium.certify(1, block.hash(), 1);
    replica
        .commit(CommittedBlock { block, certificate })
        .unwrap();
    let t = |id: u128| Transfer {
        id,
        debit_account_id: 1,
        credit_account_id: 2,
        amount: 10,
        pending_id: 0,
        user_data: 0,
        timeout_s: 0,
        ledger: common::LEDGER,
        code: 1,
        flags: TransferFlags(0),
        decision_hash: decision(id),
    };
    let mut entries: Vec<_> = (1..=6)
        .map(|id| signed_entry(t(id), &issuer, &consortium.gate))
        .collect();
    entries[1].gate = None;
    entries[3].signature = None;
    entries[4].signature.as_mut().unwrap()[7] ^= 1;
    let block = replica
        .propose(
            1,
            2,
            vec![Batch::CreateTransfers {
                entries,
                batch_signature: None,
            }],
        )
        .unwrap();
    let certificate = consortium.certify(2, block.hash(), 1);
    let outcome = replica
        .commit(CommittedBlock { block, certificate })
        .unwrap();
    assert_eq!(
        outcome.results,
        vec![BatchResults::Transfers(vec![
            R::Ok,
            R::GateDecisionMissing,
            R::Ok,
            R::SignatureMissing,
            R::SignatureInvalid,
            R::Ok
        ])]
    );
    assert_eq!(replica.ledger().account(2).unwrap().credits_posted, 30);
}

#[test]
fn a_staged_block_commits_without_a_second_execution_and_as_if_applied() {
    let consortium = Consortium::new(4);
    let mut plain = open(&consortium);
    let mut proposer = open(&consortium);
    let mut voter = open(&consortium);
    for height in 1..=3u64 {
        let timestamp_us = height * 1_000_000;
        let batches = common::batches(&consortium, height);
        let block = proposer
            .propose_staged(1, timestamp_us, batches.clone())
            .unwrap();
        assert_eq!(proposer.staged_hash(), Some(block.hash()));
        // The proposer's staged block is the one a plain proposer builds.
        assert_eq!(block, plain.propose(1, timestamp_us, batches).unwrap());
        // A voter stages a rival first (same height, other timestamp), then the real block.
        let rival = plain
            .propose(1, timestamp_us + 1, common::batches(&consortium, height))
            .unwrap();
        voter.validate_staged(&rival).unwrap();
        voter.validate_staged(&block).unwrap();
        assert_eq!(voter.staged_hash(), Some(block.hash()));
        assert_eq!(voter.height(), height - 1);

        let weak = consortium.certify(height, block.hash(), 2);
        for replica in [&mut proposer, &mut voter] {
            // A bad certificate is refused and takes the staged block back.
            assert!(
                replica
                    .commit(CommittedBlock {
                        block: block.clone(),
                        certificate: weak.clone(),
                    })
                    .is_err()
            );
            assert_eq!(replica.staged_hash(), None);
            assert_eq!(replica.height(), height - 1);
        }
        // Staged again, then committed with a quorum.
        proposer.validate_staged(&block).unwrap();
        voter.validate_staged(&block).unwrap();
        let certificate = consortium.certify(height, block.hash(), 3);
        let committed = CommittedBlock { block, certificate };
        let expected = plain.commit(committed.clone()).unwrap();
        assert_eq!(proposer.commit(committed.clone()).unwrap(), expected);
        assert_eq!(voter.commit(committed).unwrap(), expected);
        for replica in [&proposer, &voter] {
            assert_eq!(replica.height(), height);
            assert_eq!(replica.head_hash(), plain.head_hash());
            assert_eq!(replica.ledger().state_hash(), plain.ledger().state_hash());
            assert_eq!(replica.ledger().totals(), plain.ledger().totals());
            assert_eq!(
                replica.ledger().transfer_count(),
                plain.ledger().transfer_count()
            );
        }
    }
    // Committing a block other than the staged one applies it in full.
    let batches = common::batches(&consortium, 4);
    let staged = voter.propose_staged(2, 4_000_000, batches.clone()).unwrap();
    let other = plain.propose(1, 4_000_001, batches).unwrap();
    assert_ne!(staged.hash(), other.hash());
    let certificate = consortium.certify(4, other.hash(), 3);
    let committed = CommittedBlock {
        block: other,
        certificate,
    };
    let expected = plain.commit(committed.clone()).unwrap();
    assert_eq!(voter.commit(committed).unwrap(), expected);
    assert_eq!(voter.ledger().state_hash(), plain.ledger().state_hash());
    voter.ledger().check_invariants_full().unwrap();
}
