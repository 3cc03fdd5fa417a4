//! The consortium ledger end to end: four `rempart validator` processes on 127.0.0.1, a client
//! submitting signed, gated transfer batches to every validator over gRPC
//! (`rempart.v1.Validator`) from several tasks at once, while validators — the proposer of the
//! height in progress among them — are killed with SIGKILL and restarted, one at a time. At the
//! end every acknowledged transfer is on every validator exactly once, all validators hold the
//! same block at their common height (hence the same state hash), and each account's balance is
//! the model's. Bad input gets its stable code, and a replayed batch settles nothing twice.

mod common;

use std::collections::{HashMap, VecDeque};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::code_of;
use common::validators::{Net, client};
use rempart_consensus::workload::Workload;
use rempart_proto::v1 as pb;
use settlement::codec::Writer;
use settlement::ledger::Batch;
use settlement::membership::GenesisConfig;
use settlement::replica::Replica;
use settlement::store::BlockStore;
use settlement::store::file::FileStore;
use tonic::transport::Channel;

const VALIDATORS: usize = 4;
const ACCOUNTS: u64 = 40;
const TRANSFERS: u64 = 3_000;
const BATCH: usize = 25;
const CLIENT_TASKS: usize = 4;
const KILLS: usize = 4;
/// Generous: debug builds on a loaded CI machine. Waits end as soon as their condition holds.
const WAIT: Duration = Duration::from_secs(180);

fn encode(batch: &Batch) -> Vec<u8> {
    let mut w = Writer::new();
    batch.encode(&mut w);
    w.into_bytes()
}

async fn status(addr: &str) -> Option<pb::ValidatorStatus> {
    let mut client = client(addr).await?;
    client
        .get_status(pb::GetValidatorStatusRequest {})
        .await
        .ok()
        .map(|r| r.into_inner())
}

/// Submits `batch` to every validator until one answers that it is committed.
async fn submit_until_committed(api: &[String], batch: &[u8]) {
    let start = Instant::now();
    loop {
        let mut attempts = tokio::task::JoinSet::new();
        for addr in api {
            let (addr, bytes) = (addr.clone(), batch.to_vec());
            attempts.spawn(async move {
                let mut client = client(&addr).await?;
                client
                    .submit_batch(pb::SubmitBatchRequest {
                        batch: bytes,
                        wait_ms: 1_500,
                    })
                    .await
                    .ok()
                    .map(|r| r.into_inner().committed)
            });
        }
        let answers: Vec<Option<bool>> = attempts.join_all().await;
        if answers.contains(&Some(true)) {
            return;
        }
        assert!(start.elapsed() < WAIT, "batch never committed: {answers:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn submitted_transfers_settle_once_everywhere_through_repeated_sigkills() {
    let dir = tempfile::tempdir().unwrap();
    let mut net = Net::new(dir.path(), VALIDATORS, &[]);
    for index in 0..VALIDATORS {
        net.start(index);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let api = net.api.clone();
    let workload = Workload::new(ACCOUNTS);
    let mut batches: VecDeque<Batch> = workload.batches(TRANSFERS, BATCH).into();
    let open_accounts = batches.pop_front().unwrap();

    runtime.block_on(async {
        // Accounts first: a transfer on an account not yet open would fail for good.
        submit_until_committed(&api, &encode(&open_accounts)).await;

        // Generic tools work: gRPC health for the service.
        let channel = Channel::from_shared(format!("http://{}", api[0]))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let health = tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest {
                service: "rempart.v1.Validator".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            health.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );

        // Bad input, each with its stable code.
        let mut c = client(&api[0]).await.unwrap();
        let refused = |r: Result<tonic::Response<pb::SubmitBatchResponse>, tonic::Status>| {
            code_of(&r.expect_err("refused"))
        };
        let malformed = c
            .submit_batch(pb::SubmitBatchRequest {
                batch: vec![2, 0xFF, 0xFF],
                wait_ms: 0,
            })
            .await;
        assert_eq!(refused(malformed), 9101);
        let mut ungated = workload.transfers(TRANSFERS as u128 + 1, 1);
        if let Batch::CreateTransfers { entries, .. } = &mut ungated {
            entries[0].gate = None;
        }
        let r = c
            .submit_batch(pb::SubmitBatchRequest {
                batch: encode(&ungated),
                wait_ms: 0,
            })
            .await;
        assert_eq!(refused(r), 9116, "gate decision missing");
        let mut forged = workload.transfers(TRANSFERS as u128 + 2, 1);
        if let Batch::CreateTransfers { entries, .. } = &mut forged
            && let Some(gate) = &mut entries[0].gate
        {
            gate.signature[3] ^= 1;
        }
        let r = c
            .submit_batch(pb::SubmitBatchRequest {
                batch: encode(&forged),
                wait_ms: 0,
            })
            .await;
        assert_eq!(refused(r), 9118, "gate signature invalid");
        // Gated, but neither the transfer nor the batch is signed by a controller.
        let mut unsigned = workload.transfers(TRANSFERS as u128 + 3, 2);
        if let Batch::CreateTransfers {
            batch_signature, ..
        } = &mut unsigned
        {
            *batch_signature = None;
        }
        let r = c
            .submit_batch(pb::SubmitBatchRequest {
                batch: encode(&unsigned),
                wait_ms: 0,
            })
            .await;
        assert_eq!(refused(r), 9119, "signature missing");
        let empty = Batch::CreateTransfers {
            entries: Vec::new(),
            batch_signature: None,
        };
        let r = c
            .submit_batch(pb::SubmitBatchRequest {
                batch: encode(&empty),
                wait_ms: 0,
            })
            .await;
        assert_eq!(refused(r), 9103);
        let r = c
            .submit_batch(pb::SubmitBatchRequest {
                batch: encode(&open_accounts),
                wait_ms: 60_000,
            })
            .await;
        assert_eq!(refused(r), 9105);
        // A replay of a committed batch: committed at once, nothing queued again.
        let replay = c
            .submit_batch(pb::SubmitBatchRequest {
                batch: encode(&open_accounts),
                wait_ms: 0,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(replay.committed);
    });

    // Load: client tasks drain the batch queue, each batch to every validator until committed;
    // meanwhile validators are killed (the proposer of the next height on even rounds, another
    // one on odd rounds) and restarted, one at a time.
    let queue = Arc::new(Mutex::new(batches));
    let acked = Arc::new(Mutex::new(Vec::<Batch>::new()));
    let load = {
        let api = api.clone();
        let queue = Arc::clone(&queue);
        let acked = Arc::clone(&acked);
        runtime.spawn(async move {
            let tasks: Vec<_> = (0..CLIENT_TASKS)
                .map(|_| {
                    let api = api.clone();
                    let queue = Arc::clone(&queue);
                    let acked = Arc::clone(&acked);
                    tokio::spawn(async move {
                        loop {
                            let Some(batch) = queue.lock().unwrap().pop_front() else {
                                return;
                            };
                            submit_until_committed(&api, &encode(&batch)).await;
                            acked.lock().unwrap().push(batch);
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
        })
    };
    let mut killed = Vec::new();
    for round in 0..KILLS {
        std::thread::sleep(Duration::from_millis(1_200));
        let heights: Vec<u64> = runtime.block_on(async {
            let mut out = Vec::new();
            for addr in &api {
                out.push(status(addr).await.map_or(0, |s| s.height));
            }
            out
        });
        let next = heights.iter().max().copied().unwrap_or(0) + 1;
        let victim = if round % 2 == 0 {
            (next % VALIDATORS as u64) as usize
        } else {
            (round * 3 + 1) % VALIDATORS
        };
        net.kill(victim);
        killed.push((victim + 1, next));
        std::thread::sleep(Duration::from_millis(1_500));
        net.start(victim);
    }
    runtime.block_on(load).unwrap();
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len() as u64, TRANSFERS.div_ceil(BATCH as u64));
    eprintln!("killed (validator, next height): {killed:?}");

    // Every validator catches up to the same height.
    let start = Instant::now();
    let tip = loop {
        let statuses: Vec<Option<pb::ValidatorStatus>> = runtime.block_on(async {
            let mut out = Vec::new();
            for addr in &api {
                out.push(status(addr).await);
            }
            out
        });
        let heights: Vec<u64> = statuses
            .iter()
            .map(|s| s.as_ref().map_or(0, |s| s.height))
            .collect();
        let all_transfers = statuses
            .iter()
            .all(|s| s.as_ref().is_some_and(|s| s.transfers == TRANSFERS));
        let max = heights.iter().max().copied().unwrap_or(0);
        if all_transfers && heights.iter().all(|h| *h == max) {
            break max;
        }
        assert!(
            start.elapsed() < WAIT,
            "validators do not converge: {statuses:?}\n{}",
            net.log_tails()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    for index in 0..VALIDATORS {
        net.kill(index);
    }

    // The stores: one chain, every acknowledged transfer once, the model's balances.
    let genesis: GenesisConfig =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("genesis.json")).unwrap())
            .unwrap();
    let mut expected: HashMap<u128, (u128, u128)> = HashMap::new();
    let mut ids = Vec::new();
    for batch in &acked {
        let Batch::CreateTransfers { entries, .. } = batch else {
            continue;
        };
        for entry in entries {
            let t = entry.transfer;
            ids.push(t.id);
            expected.entry(t.debit_account_id).or_default().0 += t.amount;
            expected.entry(t.credit_account_id).or_default().1 += t.amount;
        }
    }
    assert_eq!(ids.len() as u64, TRANSFERS);
    let mut head = None;
    for index in 0..VALIDATORS {
        let store =
            FileStore::open_read_only(&dir.path().join(format!("data-{}/store", index + 1)))
                .unwrap();
        assert!(store.applied_height().unwrap() >= tip);
        let hash = store.block_hash(tip).unwrap();
        assert_eq!(
            *head.get_or_insert(hash),
            hash,
            "validator {} forked",
            index + 1
        );
        let replica = Replica::open(&genesis, store, 1).unwrap();
        let ledger = replica.ledger();
        assert_eq!(ledger.transfer_count() as u64, TRANSFERS);
        for id in &ids {
            let record = ledger.transfer(*id).expect("acknowledged transfer present");
            assert_eq!(record.transfer.id, *id);
        }
        for account in 1..=u128::from(ACCOUNTS) {
            let (debits, credits) = expected.get(&account).copied().unwrap_or_default();
            let got = ledger.account(account).expect("account");
            assert_eq!(
                (got.debits_posted, got.credits_posted),
                (debits, credits),
                "account {account} on validator {}",
                index + 1
            );
        }
        ledger.check_invariants_full().unwrap();
    }
}
