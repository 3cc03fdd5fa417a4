//! Four validators in one process: they decide blocks of submitted transfers, survive one
//! stopped validator, and the stopped one catches up by block sync; every validator ends with
//! the same chain and every transfer settled exactly once.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rempart_consensus::bench::compare_chains;
use rempart_consensus::cluster::Cluster;
use rempart_consensus::node::NodeStatus;
use rempart_consensus::workload::Workload;
use settlement::ledger::Batch;
use settlement::store::BlockStore;
use settlement::store::file::FileStore;

const VALIDATORS: usize = 4;
/// The id of a transfer submitted without its gate approval.
const UNGATED_ID: u128 = 9_999;
/// Generous: debug builds on a loaded CI machine. The wait ends as soon as the condition holds.
const WAIT: Duration = Duration::from_secs(120);

fn heights(statuses: &[Option<NodeStatus>]) -> Vec<Option<u64>> {
    statuses
        .iter()
        .map(|s| s.as_ref().map(|s| s.height))
        .collect()
}

/// Every running validator holds `count` transfers and has an empty mempool.
fn all_settled(cluster: &Cluster, count: usize) -> impl Fn(&[Option<NodeStatus>]) -> bool + '_ {
    move |statuses| {
        statuses
            .iter()
            .flatten()
            .all(|s| s.transfers == count && s.failed.is_none())
            && (0..VALIDATORS).all(|i| cluster.mempool(i).is_none_or(|m| m.is_empty()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_validators_settle_every_transfer_once_through_a_crash_and_catch_up() {
    // Logs on demand: RUST_LOG=rempart_consensus=debug cargo test ...
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), VALIDATORS, |_| {})
        .await
        .unwrap();
    let workload = Workload::new(40);
    let batches = workload.batches(3_000, 100);
    let (first, second) = batches.split_at(16);

    // Phase 1: all four validators. Among the batches, one whose transfer lost its gate
    // approval: honest proposers leave it out of their blocks and drop it from the mempool.
    let mut ungated = workload.transfers(UNGATED_ID, 1);
    if let Batch::CreateTransfers { entries, .. } = &mut ungated {
        entries[0].gate = None;
    }
    for batch in first {
        cluster.submit(batch).unwrap();
    }
    cluster.submit(&ungated).unwrap();
    let settled_first = 15 * 100;
    assert!(
        cluster
            .wait_until(WAIT, all_settled(&cluster, settled_first))
            .await,
        "first transfers not settled: {:?}",
        heights(&cluster.statuses())
    );

    // Phase 2: validator 4 stops; the other three (2f+1) go on deciding.
    cluster.stop_validator(3).await;
    let stopped_at = cluster.statuses()[0].as_ref().unwrap().height;
    for batch in second {
        cluster.submit(batch).unwrap();
    }
    assert!(
        cluster.wait_until(WAIT, all_settled(&cluster, 3_000)).await,
        "three validators did not settle the rest: {:?}",
        heights(&cluster.statuses())
    );
    let tip = cluster.statuses()[0].as_ref().unwrap().height;
    assert!(tip > stopped_at, "no progress without validator 4");

    // Phase 3: validator 4 restarts from its store and catches up by block sync.
    cluster.start_validator(3).await.unwrap();
    assert!(
        cluster
            .wait_until(WAIT, |statuses| {
                statuses[3]
                    .as_ref()
                    .is_some_and(|s| s.height >= tip && s.transfers == 3_000)
            })
            .await,
        "validator 4 did not catch up: {:?}",
        heights(&cluster.statuses())
    );
    let metric = |name: fn(&rempart_consensus::node::NodeMetrics) -> u64| -> u64 {
        (0..VALIDATORS)
            .filter_map(|i| cluster.metrics(i))
            .map(|m| name(m))
            .sum()
    };
    let left_out = metric(|m| m.unauthorised_batches.load(Ordering::Relaxed));
    assert!(left_out >= 1, "no proposer left the ungated batch out");
    assert_eq!(
        metric(|m| m.invalid_proposals.load(Ordering::Relaxed)),
        0,
        "an honest validator's proposal was refused"
    );
    cluster.stop_all().await;

    // Every validator stored the same chain up to the common height...
    let (height, equal) = compare_chains(&cluster, VALIDATORS).unwrap();
    assert!(height >= tip, "common height {height} below {tip}");
    assert!(equal, "validators disagree at height {height}");
    // ...and replaying it gives every transfer, once, in exactly one block.
    for index in 0..VALIDATORS {
        let replica = cluster.replay(index).unwrap();
        assert_eq!(
            replica.ledger().transfer_count(),
            3_000,
            "validator {index}"
        );
        for id in 1..=3_000u128 {
            assert!(replica.ledger().transfer(id).is_some(), "transfer {id}");
        }
        assert!(replica.ledger().transfer(UNGATED_ID).is_none());
        replica.ledger().check_invariants_full().unwrap();
    }
    let store = FileStore::open_read_only(&cluster.store_dir(0)).unwrap();
    let mut blocks_of: BTreeMap<u128, u64> = BTreeMap::new();
    for h in 1..=store.applied_height().unwrap() {
        let committed = store.read(h).unwrap();
        for batch in &committed.block.batches {
            if let Batch::CreateTransfers { entries, .. } = batch {
                for entry in entries {
                    assert!(
                        blocks_of.insert(entry.transfer.id, h).is_none(),
                        "transfer {} packed twice",
                        entry.transfer.id
                    );
                }
            }
        }
        // Each certificate holds a quorum of the four.
        assert!(committed.certificate.signatures.len() >= 3);
    }
    assert_eq!(blocks_of.len(), 3_000);
}
