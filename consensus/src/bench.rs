//! The consensus benchmark: a cluster of validators in this process, a closed-loop client
//! keeping a bounded number of transfers in flight, and the figures: sustained transfers per
//! second (all validators committed everything) and commit latency percentiles (submission to
//! durable commit on validator 1). `consensus-bench` and `rempart ledger bench --validators N`
//! call [`run`].

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use settlement::store::BlockStore;
use settlement::store::file::FileStore;

use crate::cluster::Cluster;
use crate::node::NodeError;
use crate::workload::Workload;

/// Transfers a run may make at most.
pub const BENCH_TRANSFERS_MAX: u64 = 10_000_000;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Validators (n = 3f+1 for f faults).
    pub validators: usize,
    /// Transfers to settle.
    pub transfers: u64,
    /// Transfers per submitted batch (one custodian signature each).
    pub batch: usize,
    /// Accounts the transfers move between.
    pub accounts: u64,
    /// Transfers per block at most.
    pub block_entries_max: usize,
    /// Transfers in flight at most (submitted, not yet committed on validator 1).
    pub in_flight_max: usize,
    /// Where the validators keep their stores (a temporary directory if None).
    pub dir: Option<PathBuf>,
    /// Give up after this long.
    pub deadline: Duration,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            validators: 4,
            transfers: 200_000,
            batch: 256,
            accounts: 1_000,
            block_entries_max: 4_096,
            in_flight_max: 8_192,
            dir: None,
            deadline: Duration::from_secs(600),
        }
    }
}

/// The figures.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Transfers settled per second, until every validator committed all of them.
    pub transfers_per_sec: f64,
    /// Median commit latency (submission to durable commit on validator 1), milliseconds.
    pub commit_p50_ms: f64,
    /// 99th percentile of the same.
    pub commit_p99_ms: f64,
    /// Validators.
    pub validators: usize,
    /// Transfers settled.
    pub transfers: u64,
    /// Blocks decided.
    pub blocks: u64,
    /// Wall time of the measured part, seconds.
    pub elapsed_s: f64,
    /// True if every validator ended with the same state hash.
    pub state_hashes_equal: bool,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// A validator failed to start or stopped.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The temporary directory could not be made.
    #[error("benchmark directory: {0}")]
    Io(#[from] std::io::Error),
    /// The run did not finish before the deadline.
    #[error("the run did not finish within {0:?}")]
    Deadline(Duration),
}

fn percentile(sorted: &[(Duration, usize)], total: usize, q: f64) -> f64 {
    // Weighted by transfers: a batch's latency counts once per transfer it carried.
    let target = (total as f64 * q).ceil() as usize;
    let mut seen = 0;
    for (latency, weight) in sorted {
        seen += weight;
        if seen >= target {
            return latency.as_secs_f64() * 1_000.0;
        }
    }
    sorted
        .last()
        .map_or(0.0, |(latency, _)| latency.as_secs_f64() * 1_000.0)
}

/// The lowest height every validator stored, and whether all stored the same block there
/// (same block hash, hence same state hash: the header carries it).
pub fn compare_chains(cluster: &Cluster, validators: usize) -> Result<(u64, bool), NodeError> {
    let mut stores = Vec::with_capacity(validators);
    for index in 0..validators {
        stores.push(
            FileStore::open_read_only(&cluster.store_dir(index))
                .map_err(|e| NodeError::Replica(e.into()))?,
        );
    }
    let height = stores
        .iter()
        .map(|s| s.applied_height().unwrap_or(0))
        .min()
        .unwrap_or(0);
    if height == 0 {
        return Ok((0, false));
    }
    let hashes: Vec<_> = stores.iter().map(|s| s.block_hash(height).ok()).collect();
    let equal = hashes[0].is_some() && hashes.iter().all(|h| *h == hashes[0]);
    Ok((height, equal))
}

/// Runs the benchmark (needs tokio's multi-threaded runtime).
pub async fn run(options: &BenchOptions) -> Result<BenchReport, BenchError> {
    let transfers = options.transfers.min(BENCH_TRANSFERS_MAX);
    let temp;
    let dir = match &options.dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let workload = Workload::new(options.accounts);
    // Sign everything before the clock starts: signing is the clients' cost, not the ledger's.
    let mut batches = workload.batches(transfers, options.batch).into_iter();
    let accounts = batches.next();
    let batches: Vec<_> = batches.collect();

    let block_entries_max = options.block_entries_max;
    let mut cluster = Cluster::start(&dir, options.validators, |node| {
        node.block_entries_max = block_entries_max;
        node.empty_block_wait = Duration::from_millis(20);
    })
    .await?;
    let end = Instant::now() + options.deadline;
    if let Some(accounts) = accounts {
        let _ = cluster.submit(&accounts);
        let emptied = cluster
            .wait_until(options.deadline, |_| {
                (0..options.validators).all(|i| cluster.mempool(i).is_some_and(|m| m.is_empty()))
            })
            .await;
        if !emptied {
            cluster.stop_all().await;
            return Err(BenchError::Deadline(options.deadline));
        }
    }
    let start_height = cluster
        .statuses()
        .iter()
        .flatten()
        .map(|s| s.height)
        .min()
        .unwrap_or(0);
    let Some(leader_pool) = cluster.mempool(0).cloned() else {
        cluster.stop_all().await;
        return Err(BenchError::Deadline(options.deadline));
    };
    let _ = leader_pool.take_latencies();

    let started = Instant::now();
    let mut next = batches.into_iter().peekable();
    while next.peek().is_some() {
        if Instant::now() > end {
            cluster.stop_all().await;
            return Err(BenchError::Deadline(options.deadline));
        }
        if leader_pool.entries() > 0
            && leader_pool.entries() + options.batch > options.in_flight_max
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        if let Some(batch) = next.next()
            && cluster.submit(&batch).is_err()
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let done = cluster
        .wait_until(end.saturating_duration_since(Instant::now()), |_| {
            (0..options.validators).all(|i| cluster.mempool(i).is_some_and(|m| m.is_empty()))
        })
        .await;
    let elapsed = started.elapsed();
    cluster.stop_all().await;
    if !done {
        return Err(BenchError::Deadline(options.deadline));
    }
    let (final_height, state_hashes_equal) = compare_chains(&cluster, options.validators)?;
    let mut latencies = leader_pool.take_latencies();
    latencies.sort();
    let total: usize = latencies.iter().map(|(_, n)| n).sum();
    Ok(BenchReport {
        transfers_per_sec: transfers as f64 / elapsed.as_secs_f64().max(1e-9),
        commit_p50_ms: percentile(&latencies, total, 0.50),
        commit_p99_ms: percentile(&latencies, total, 0.99),
        validators: options.validators,
        transfers,
        blocks: final_height.saturating_sub(start_height),
        elapsed_s: elapsed.as_secs_f64(),
        state_hashes_equal,
    })
}
