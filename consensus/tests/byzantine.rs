//! Four `rempart-validator` processes, one of them byzantine (feature `byzantine`): after every
//! vote it signs and sends a conflicting vote for another block (Malachite's byzantine network
//! proxy), and every block it builds carries a transfer without a gate decision. The three
//! honest validators settle the whole workload, refuse its blocks and record its faults: the
//! conflicting precommits as evidence that re-verifies from the membership, the ungated
//! proposals with their builder. All four hold the same chain, without the ungated transfers.

mod common;

use common::{VALIDATORS, assert_one_file_chain, genesis, others_at, setup};
use rempart_consensus::byzantine::{ByzantineOptions, ungated_transfer_id};
use rempart_consensus::misbehaviour::EvidenceLog;
use settlement::evidence::EquivocationEvidence;
use settlement::replica::Replica;
use settlement::store::file::FileStore;

const TRANSFERS: u64 = 1_000;
/// The byzantine validator (index 3, validator id 4).
const BYZANTINE: usize = 3;

#[test]
fn honest_validators_record_a_double_signing_ungated_proposer_and_do_not_diverge() {
    let dir = tempfile::tempdir().unwrap();
    let mut net = setup(dir.path(), TRANSFERS, |index, config| {
        if index == BYZANTINE {
            config.byzantine = Some(
                serde_json::from_str::<ByzantineOptions>(
                    r#"{"malachite": {"equivocate_votes": {"mode": "always"}, "seed": 7},
                        "propose_ungated": true}"#,
                )
                .unwrap(),
            );
        }
    });
    for index in 0..VALIDATORS {
        net.start(index);
    }
    // Its own blocks are refused, so within 2 x VALIDATORS heights the byzantine validator
    // has had its turn as proposer; run past that before settling the workload everywhere.
    net.wait("some heights", |s| {
        others_at(s, usize::MAX, 2 * VALIDATORS as u64 + 1)
    });
    let tip = net.settle_and_stop(TRANSFERS);

    let genesis = genesis(dir.path());
    let membership = genesis.verify().unwrap();
    let culprit = BYZANTINE as u64 + 1;
    let wal = |index: usize| dir.path().join(format!("data-{}/wal", index + 1));
    for honest in (0..VALIDATORS).filter(|i| *i != BYZANTINE) {
        // Conflicting precommits: evidence that anyone can re-verify, all against the culprit.
        let evidence: Vec<EquivocationEvidence> = EvidenceLog::open(&wal(honest))
            .unwrap()
            .read_all()
            .unwrap()
            .iter()
            .map(|bytes| EquivocationEvidence::decode(bytes).unwrap())
            .collect();
        assert!(
            !evidence.is_empty(),
            "validator {} recorded no equivocation; logs:\n{}",
            honest + 1,
            net.log_tails()
        );
        for proof in &evidence {
            assert_eq!(proof.validator, culprit);
            assert!(proof.verify(&membership), "evidence does not verify");
            assert_ne!(proof.first.vote.block_hash, proof.second.vote.block_hash);
        }
        // Ungated proposals: refused and recorded with their builder.
        let invalid = EvidenceLog::open_invalid_proposals(&wal(honest))
            .unwrap()
            .read_invalid_proposals()
            .unwrap();
        assert!(
            !invalid.is_empty(),
            "validator {} recorded no invalid proposal; logs:\n{}",
            honest + 1,
            net.log_tails()
        );
        for record in &invalid {
            assert_eq!(record.proposer, culprit);
            assert_eq!(record.code, 6, "gate decision missing");
        }
    }
    // The byzantine validator records no fault of its own against the honest ones.
    for index in 0..VALIDATORS {
        let recorded = EvidenceLog::open(&wal(index)).unwrap().read_all().unwrap();
        for bytes in recorded {
            assert_eq!(
                EquivocationEvidence::decode(&bytes).unwrap().validator,
                culprit
            );
        }
    }

    // One chain: the same block at the common height everywhere, every workload transfer once,
    // no ungated transfer, invariants hold from the genesis.
    assert_one_file_chain(dir.path(), tip);
    for index in 0..VALIDATORS {
        let replica = Replica::open(
            &genesis,
            FileStore::open_read_only(&dir.path().join(format!("data-{}/store", index + 1)))
                .unwrap(),
            1,
        )
        .unwrap();
        let ledger = replica.ledger();
        assert_eq!(ledger.transfer_count() as u64, TRANSFERS);
        for height in 0..=replica.height() {
            assert!(ledger.transfer(ungated_transfer_id(height)).is_none());
        }
        ledger.check_invariants_full().unwrap();
    }
}
