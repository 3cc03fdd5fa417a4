//! The consensus benchmark: a cluster of validators in this process, a client offering signed,
//! gated transfer batches to every validator's mempool, and the figures.
//!
//! The client either offers a fixed rate (open loop, `rate_per_sec > 0`: batch `k` is due at
//! `k × batch / rate` seconds, and its latency counts from when it was due, so a client held
//! up by a full mempool does not hide queueing) or keeps at most `in_flight_max` transfers
//! uncommitted (closed loop). With a `duration`, the figures cover a measured window after a
//! warm-up: `transfers_per_sec` = transfers validator 1 committed (durably) within the window
//! ÷ the window, commit latency over the batches submitted within it. Without one, the run
//! settles `transfers` and `transfers_per_sec` = transfers ÷ time until every validator
//! committed all of them.
//!
//! The catch-up mode stops the last validator at the start of the window for `down`, under
//! load, restarts it (replaying its store) and reports how long it takes to reach the height
//! of the others (`catch_up_s`), the load going on meanwhile.
//!
//! Per-stage timings (building, checking and committing blocks, summed over validators) and
//! the process's CPU use come with the figures, to say where the time goes. `consensus-bench`
//! and `rempart ledger bench` call [`run`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use settlement::ledger::Batch;
use settlement::store::BlockStore;
use settlement::store::file::FileStore;

use crate::cluster::Cluster;
use crate::mempool::{CommitSample, Mempool, SubmitRefusal};
use crate::node::{MetricsSnapshot, NodeError};
use crate::workload::Workload;

/// Transfers a run may make at most.
pub const BENCH_TRANSFERS_MAX: u64 = 10_000_000;
/// Longest measured window.
pub const BENCH_DURATION_MAX: Duration = Duration::from_secs(3_600);
/// Highest offered rate, transfers per second.
pub const BENCH_RATE_MAX: u64 = 1_000_000;
/// How long a restarted validator may take to catch up before the run gives up on it.
pub const CATCH_UP_WAIT_MAX: Duration = Duration::from_secs(300);

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Validators (n = 3f+1 for f faults).
    pub validators: usize,
    /// Transfers to settle (without a duration), or to prepare at least (with one: the run
    /// prepares what the rate and duration need if that is more).
    pub transfers: u64,
    /// Transfers per submitted batch (one custodian signature each).
    pub batch: usize,
    /// Accounts the transfers move between.
    pub accounts: u64,
    /// Transfers per block at most.
    pub block_entries_max: usize,
    /// Closed loop: transfers in flight at most (submitted, not yet committed on validator 1).
    pub in_flight_max: usize,
    /// Open loop: transfers offered per second (0: closed loop).
    pub rate_per_sec: u64,
    /// The measured window (None: settle `transfers`, measured from the first submission).
    pub duration: Option<Duration>,
    /// Load before the measured window (with a duration only).
    pub warmup: Duration,
    /// Catch-up mode: stop the last validator this long at the start of the window.
    pub catch_up_down: Option<Duration>,
    /// Validators check mempool signatures ahead of their blocks (`NodeOptions::preverify`).
    pub preverify: bool,
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
            in_flight_max: 2_048,
            rate_per_sec: 0,
            duration: None,
            warmup: Duration::from_secs(5),
            catch_up_down: None,
            preverify: true,
            dir: None,
            deadline: Duration::from_secs(900),
        }
    }
}

/// The figures.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Transfers settled per second (see the module documentation for the window).
    pub transfers_per_sec: f64,
    /// Median commit latency (submission to durable commit on validator 1), milliseconds.
    pub commit_p50_ms: f64,
    /// 99th percentile of the same.
    pub commit_p99_ms: f64,
    /// Highest commit latency seen.
    pub commit_max_ms: f64,
    /// "open" (fixed offered rate) or "closed" (bounded in flight).
    pub mode: &'static str,
    /// Open loop: the offered rate; closed loop: the in-flight bound (transfers).
    pub offered: u64,
    /// Validators.
    pub validators: usize,
    /// Transfers committed in the measured part.
    pub transfers: u64,
    /// Blocks validator 1 committed in the measured part.
    pub blocks: u64,
    /// Wall time of the measured part, seconds.
    pub elapsed_s: f64,
    /// Mean transfers per block.
    pub transfers_per_block: f64,
    /// Mean time between blocks, milliseconds.
    pub block_interval_ms: f64,
    /// Mean time a proposer spent building (and executing) its block, milliseconds.
    pub propose_ms: f64,
    /// Mean time a validator spent checking (executing) a proposal, milliseconds.
    pub validate_ms: f64,
    /// Mean time a validator spent committing a block (certificate, staged commit or
    /// execution, durable append), milliseconds.
    pub commit_ms: f64,
    /// Share of commits whose block was staged (not executed a second time), percent.
    pub staged_commits_pct: f64,
    /// CPU time the pre-verifiers spent per transfer (per validator), microseconds: signature
    /// checks done as batches arrive, off the blocks' critical path.
    pub preverify_us_per_transfer: f64,
    /// CPU the process used during the measured part, in cores (at most the machine's).
    pub cpu_cores_used: f64,
    /// Transfers still queued on validator 1 when the window closed (open loop: the backlog).
    pub backlog_end: usize,
    /// Submissions refused because a mempool was full (retried).
    pub refused: u64,
    /// False if the prepared transfers ran out before the window closed (catch-up mode only;
    /// otherwise such a run is an error): the load was lighter than asked near the end.
    pub offered_until_end: bool,
    /// Catch-up mode: seconds the validator was down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub down_s: Option<f64>,
    /// Catch-up mode: blocks it was behind when restarted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub behind_blocks: Option<u64>,
    /// Catch-up mode: seconds to reopen it (replay of its own store, engine start).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_s: Option<f64>,
    /// Catch-up mode: seconds from the restart until its height reached the others'.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catch_up_s: Option<f64>,
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
    /// The restarted validator did not catch up in time.
    #[error("the restarted validator did not catch up within {0:?}")]
    CatchUp(Duration),
    /// The options do not describe a run.
    #[error("invalid benchmark options: {0}")]
    Options(String),
}

/// Latency percentile `q` of `samples` (sorted by latency), weighted by transfers: a batch's
/// latency counts once per transfer it carried.
fn percentile(sorted: &[CommitSample], total: usize, q: f64) -> f64 {
    let target = ((total as f64 * q).ceil() as usize).max(1);
    let mut seen = 0;
    for sample in sorted {
        seen += sample.entries;
        if seen >= target {
            return ms(sample.latency());
        }
    }
    sorted.last().map_or(0.0, |sample| ms(sample.latency()))
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

/// CPU time (user + system) this process used so far, if `/proc` tells.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // The kernel's USER_HZ is 100 on every Linux this runs on.
    Some(Duration::from_millis((utime + stime) * 10))
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

/// Signs every batch of the run, spread over the machine's cores (the clients' work, done
/// before the clock starts).
fn prepare(workload: &Workload, transfers: u64, batch: usize) -> Vec<Batch> {
    let batch = batch.max(1) as u64;
    let count = transfers.div_ceil(batch);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let per_thread = count.div_ceil(threads.max(1)).max(1);
    let mut out: Vec<Vec<Batch>> = Vec::new();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                scope.spawn(move || {
                    let mut batches = Vec::new();
                    let first = thread * per_thread;
                    let last = ((thread + 1) * per_thread).min(count);
                    for index in first..last {
                        let start = index * batch + 1;
                        let len = batch.min(transfers + 1 - start);
                        batches.push(workload.transfers(u128::from(start), len as usize));
                    }
                    batches
                })
            })
            .collect();
        for handle in handles {
            match handle.join() {
                Ok(batches) => out.push(batches),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    out.into_iter().flatten().collect()
}

/// The mempools a client submits to: those of the running validators.
type Targets = Arc<Mutex<Vec<Arc<Mempool>>>>;

/// What the client did.
#[derive(Debug, Default)]
struct ClientReport {
    offered: u64,
    refused: u64,
}

/// Submits `batch` (submitted at `at`) to every target; refused only if every one refused.
fn submit(targets: &Targets, batch: &Batch, at: Instant) -> Result<(), SubmitRefusal> {
    let targets = targets
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let mut result = Err(SubmitRefusal::Full);
    for pool in &targets {
        let outcome = pool.submit_at(batch.clone(), at);
        if result.is_err() {
            result = outcome;
        }
    }
    result
}

/// The client: offers the batches until they run out or `stop` is set.
async fn client(
    batches: Vec<Batch>,
    targets: Targets,
    reference: Arc<Mempool>,
    options: BenchOptions,
    stop: Arc<AtomicBool>,
) -> ClientReport {
    let mut report = ClientReport::default();
    let started = Instant::now();
    let mut due_entries: u64 = 0;
    let mut next = batches.into_iter().peekable();
    while let Some(batch) = next.peek() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        let at = if options.rate_per_sec > 0 {
            let due =
                started + Duration::from_secs_f64(due_entries as f64 / options.rate_per_sec as f64);
            if due > now {
                tokio::time::sleep_until(due.into()).await;
                continue;
            }
            due
        } else {
            let queued = reference.entries();
            if queued > 0 && queued + batch.len() > options.in_flight_max {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            now
        };
        match submit(&targets, batch, at) {
            Ok(()) | Err(SubmitRefusal::Duplicate) => {
                let len = batch.len() as u64;
                report.offered += len;
                due_entries += len;
                next.next();
            }
            Err(_) => {
                report.refused += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    report
}

fn check(options: &BenchOptions) -> Result<(), BenchError> {
    let bad = |what: String| Err(BenchError::Options(what));
    if options.rate_per_sec > BENCH_RATE_MAX {
        return bad(format!("the rate is above {BENCH_RATE_MAX} transfers/s"));
    }
    if options
        .duration
        .is_some_and(|d| d > BENCH_DURATION_MAX || d.is_zero())
    {
        return bad(format!(
            "the duration must be between 1 s and {}",
            BENCH_DURATION_MAX.as_secs()
        ));
    }
    if options.catch_up_down.is_some() {
        if options.duration.is_none() {
            return bad("catch-up needs a duration".into());
        }
        if options.validators < 4 {
            return bad("catch-up needs at least 4 validators (one may be down)".into());
        }
    }
    if options.rate_per_sec == 0 && options.in_flight_max == 0 {
        return bad("a closed loop needs transfers in flight".into());
    }
    Ok(())
}

/// Runs the benchmark (needs tokio's multi-threaded runtime).
pub async fn run(options: &BenchOptions) -> Result<BenchReport, BenchError> {
    check(options)?;
    let mut transfers = options.transfers;
    if let (Some(duration), true) = (options.duration, options.rate_per_sec > 0) {
        // Enough for the warm-up, the window, a catch-up after it, and the moments between
        // (start-up, the window opening late): a tenth and 5 s more.
        let extra = options
            .catch_up_down
            .map_or(Duration::ZERO, |_| CATCH_UP_WAIT_MAX / 4);
        let offered_s = (options.warmup + duration + extra).as_secs_f64() * 1.1 + 5.0;
        transfers = transfers.max((options.rate_per_sec as f64 * offered_s).ceil() as u64);
    }
    let transfers = transfers.clamp(1, BENCH_TRANSFERS_MAX);
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
    let batches = tokio::task::block_in_place(|| prepare(&workload, transfers, options.batch));

    let block_entries_max = options.block_entries_max;
    let preverify = options.preverify;
    let mut cluster = Cluster::start(&dir, options.validators, |node| {
        node.block_entries_max = block_entries_max;
        node.preverify = preverify;
        // Signatures left to execution (replay after a restart, blocks fetched by block sync,
        // batches that reached the block before the pre-verifier) use every core.
        node.verify_threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        node.empty_block_wait = Duration::from_millis(20);
    })
    .await?;
    let result = measure(&mut cluster, &workload, batches, transfers, options).await;
    cluster.stop_all().await;
    let mut report = result?;
    let (_, state_hashes_equal) = compare_chains(&cluster, options.validators)?;
    report.state_hashes_equal = state_hashes_equal;
    Ok(report)
}

/// Metrics of every validator (None: stopped).
fn metrics_of(cluster: &Cluster) -> Vec<Option<MetricsSnapshot>> {
    (0..cluster.len())
        .map(|index| cluster.metrics(index).map(|m| m.snapshot()))
        .collect()
}

/// What each validator did between two snapshots, summed; a validator restarted in between
/// (`restarted`) counts from its restart.
fn stages_between(
    start: &[Option<MetricsSnapshot>],
    end: &[Option<MetricsSnapshot>],
    restarted: Option<usize>,
) -> MetricsSnapshot {
    let mut sum = MetricsSnapshot::default();
    for (index, end) in end.iter().enumerate() {
        let Some(end) = end else { continue };
        let m = match start.get(index).copied().flatten() {
            Some(start) if restarted != Some(index) => end.since(&start),
            _ => *end,
        };
        sum.blocks += m.blocks;
        sum.entries += m.entries;
        sum.proposals += m.proposals;
        sum.propose_us += m.propose_us;
        sum.validations += m.validations;
        sum.validate_us += m.validate_us;
        sum.commit_us += m.commit_us;
        sum.commits_staged += m.commits_staged;
        sum.preverified += m.preverified;
        sum.preverify_us += m.preverify_us;
    }
    sum
}

fn all_empty(cluster: &Cluster) -> bool {
    cluster.mempools().iter().all(|pool| pool.is_empty())
}

async fn measure(
    cluster: &mut Cluster,
    workload: &Workload,
    batches: Vec<Batch>,
    transfers: u64,
    options: &BenchOptions,
) -> Result<BenchReport, BenchError> {
    let end = Instant::now() + options.deadline;
    let remaining = || end.saturating_duration_since(Instant::now());
    let _ = cluster.submit(&workload.open_accounts());
    if !cluster
        .wait_until(remaining(), |_| all_empty(cluster))
        .await
    {
        return Err(BenchError::Deadline(options.deadline));
    }
    let reference = cluster
        .mempool(0)
        .cloned()
        .ok_or(BenchError::Deadline(options.deadline))?;
    let _ = reference.take_samples();
    let last = cluster.len() - 1;
    let targets: Targets = Arc::new(Mutex::new(cluster.mempools()));
    let stop = Arc::new(AtomicBool::new(false));

    let started = Instant::now();
    let client = tokio::spawn(client(
        batches,
        Arc::clone(&targets),
        Arc::clone(&reference),
        options.clone(),
        Arc::clone(&stop),
    ));
    let mut report = BenchReport {
        transfers_per_sec: 0.0,
        commit_p50_ms: 0.0,
        commit_p99_ms: 0.0,
        commit_max_ms: 0.0,
        mode: if options.rate_per_sec > 0 {
            "open"
        } else {
            "closed"
        },
        offered: if options.rate_per_sec > 0 {
            options.rate_per_sec
        } else {
            options.in_flight_max as u64
        },
        validators: cluster.len(),
        transfers: 0,
        blocks: 0,
        elapsed_s: 0.0,
        transfers_per_block: 0.0,
        block_interval_ms: 0.0,
        propose_ms: 0.0,
        validate_ms: 0.0,
        commit_ms: 0.0,
        staged_commits_pct: 0.0,
        preverify_us_per_transfer: 0.0,
        cpu_cores_used: 0.0,
        backlog_end: 0,
        refused: 0,
        offered_until_end: true,
        down_s: None,
        behind_blocks: None,
        restart_s: None,
        catch_up_s: None,
        state_hashes_equal: false,
    };

    let (window_start, window_end, metrics_start, metrics_end, cpu_start, cpu_end);
    match options.duration {
        None => {
            window_start = started;
            metrics_start = metrics_of(cluster);
            cpu_start = process_cpu();
            let done = cluster
                .wait_until(remaining(), |_| client.is_finished() && all_empty(cluster))
                .await;
            if !done {
                stop.store(true, Ordering::Relaxed);
                return Err(BenchError::Deadline(options.deadline));
            }
            window_end = Instant::now();
            metrics_end = metrics_of(cluster);
            cpu_end = process_cpu();
        }
        Some(duration) => {
            tokio::time::sleep(options.warmup).await;
            window_start = Instant::now();
            metrics_start = metrics_of(cluster);
            cpu_start = process_cpu();
            let mut until = window_start + duration;
            if let Some(down) = options.catch_up_down {
                let caught_up =
                    catch_up(cluster, &targets, last, down, options, &mut report).await?;
                until = until.max(caught_up);
            }
            tokio::time::sleep_until(until.into()).await;
            window_end = Instant::now();
            metrics_end = metrics_of(cluster);
            cpu_end = process_cpu();
            if client.is_finished() && options.catch_up_down.is_none() {
                // The prepared transfers ran out inside the window: the rate was not offered
                // for the whole window, so the figures would flatter the cluster.
                return Err(BenchError::Options(format!(
                    "the {transfers} prepared transfers ran out before the window closed; \
                     raise --transfers"
                )));
            }
            // A catch-up that outlasts the prepared load is still worth its figure; the
            // report says the load stopped early.
            report.offered_until_end = !client.is_finished();
        }
    }
    report.backlog_end = reference.entries();
    stop.store(true, Ordering::Relaxed);
    let client = client.await.unwrap_or_default();
    report.refused = client.refused;
    // Let the cluster settle what was offered, so that the chains can be compared.
    if !cluster
        .wait_until(remaining(), |_| all_empty(cluster))
        .await
    {
        return Err(BenchError::Deadline(options.deadline));
    }
    let _ = cluster
        .wait_until(remaining(), |statuses| {
            let heights: Vec<u64> = statuses.iter().flatten().map(|s| s.height).collect();
            heights.windows(2).all(|w| w[0] == w[1])
        })
        .await;

    let window = window_end.saturating_duration_since(window_start);
    let samples = reference.take_samples();
    let committed: u64 = samples
        .iter()
        .filter(|s| s.committed >= window_start && s.committed <= window_end)
        .map(|s| s.entries as u64)
        .sum();
    let mut measured: Vec<CommitSample> = samples
        .into_iter()
        .filter(|s| s.submitted >= window_start && s.submitted <= window_end)
        .collect();
    measured.sort_by_key(CommitSample::latency);
    let total: usize = measured.iter().map(|s| s.entries).sum();
    report.transfers = committed;
    report.transfers_per_sec = committed as f64 / window.as_secs_f64().max(1e-9);
    report.commit_p50_ms = percentile(&measured, total, 0.50);
    report.commit_p99_ms = percentile(&measured, total, 0.99);
    report.commit_max_ms = measured.last().map_or(0.0, |s| ms(s.latency()));
    report.elapsed_s = window.as_secs_f64();

    let restarted = options.catch_up_down.map(|_| last);
    let stages = stages_between(&metrics_start, &metrics_end, restarted);
    let per = |us: u64, count: u64| us as f64 / 1_000.0 / count.max(1) as f64;
    report.propose_ms = per(stages.propose_us, stages.proposals);
    report.validate_ms = per(stages.validate_us, stages.validations);
    report.commit_ms = per(stages.commit_us, stages.blocks);
    report.staged_commits_pct = stages.commits_staged as f64 * 100.0 / stages.blocks.max(1) as f64;
    report.preverify_us_per_transfer =
        stages.preverify_us as f64 / stages.preverified.max(1) as f64;
    // Validator 1 never stops: its blocks are the chain's.
    let chain = match (&metrics_start[0], &metrics_end[0]) {
        (Some(start), Some(end)) => end.since(start),
        _ => MetricsSnapshot::default(),
    };
    report.blocks = chain.blocks;
    report.transfers_per_block = chain.entries as f64 / chain.blocks.max(1) as f64;
    report.block_interval_ms = ms(window) / report.blocks.max(1) as f64;
    if let (Some(a), Some(b)) = (cpu_start, cpu_end) {
        report.cpu_cores_used = b.saturating_sub(a).as_secs_f64() / window.as_secs_f64().max(1e-9);
    }
    Ok(report)
}

/// Stops validator `index` for `down` under load, restarts it and waits until its height
/// reaches the others'. Returns when it caught up.
async fn catch_up(
    cluster: &mut Cluster,
    targets: &Targets,
    index: usize,
    down: Duration,
    options: &BenchOptions,
    report: &mut BenchReport,
) -> Result<Instant, BenchError> {
    let stopped_at = Instant::now();
    cluster.stop_validator(index).await;
    *targets
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = cluster.mempools();
    tokio::time::sleep_until((stopped_at + down).into()).await;
    report.down_s = Some(stopped_at.elapsed().as_secs_f64());
    let tip = |cluster: &Cluster| {
        cluster
            .statuses()
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != index)
            .filter_map(|(_, s)| s.as_ref().map(|s| s.height))
            .min()
            .unwrap_or(0)
    };
    let restarted = Instant::now();
    let stored = FileStore::open_read_only(&cluster.store_dir(index))
        .ok()
        .and_then(|store| store.applied_height().ok())
        .unwrap_or(0);
    report.behind_blocks = Some(tip(cluster).saturating_sub(stored));
    cluster.start_validator(index).await?;
    report.restart_s = Some(restarted.elapsed().as_secs_f64());
    *targets
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = cluster.mempools();
    let wait = CATCH_UP_WAIT_MAX.min(options.deadline);
    let caught_up = cluster
        .wait_until(wait, |statuses| {
            let own = statuses
                .get(index)
                .and_then(|s| s.as_ref())
                .map_or(0, |s| s.height);
            own > 0 && own >= tip(cluster)
        })
        .await;
    if !caught_up {
        return Err(BenchError::CatchUp(wait));
    }
    report.catch_up_s = Some(restarted.elapsed().as_secs_f64());
    Ok(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_weigh_each_batch_by_its_transfers() {
        let now = Instant::now();
        let sample = |latency_ms: u64, entries: usize| CommitSample {
            submitted: now,
            committed: now + Duration::from_millis(latency_ms),
            entries,
        };
        // 98 transfers at 10 ms, 2 at 500 ms: p50 is 10 ms, p99 is 500 ms.
        let mut samples = vec![sample(500, 2), sample(10, 90), sample(10, 8)];
        samples.sort_by_key(CommitSample::latency);
        let close = |got: f64, want: f64| (got - want).abs() < 1e-9;
        assert!(close(percentile(&samples, 100, 0.50), 10.0));
        assert!(close(percentile(&samples, 100, 0.98), 10.0));
        assert!(close(percentile(&samples, 100, 0.99), 500.0));
        assert!(close(percentile(&[], 0, 0.99), 0.0));
    }

    #[test]
    fn options_that_describe_no_run_are_refused() {
        let ok = BenchOptions::default();
        assert!(check(&ok).is_ok());
        let refused = [
            BenchOptions {
                rate_per_sec: BENCH_RATE_MAX + 1,
                ..BenchOptions::default()
            },
            BenchOptions {
                duration: Some(Duration::ZERO),
                ..BenchOptions::default()
            },
            BenchOptions {
                catch_up_down: Some(Duration::from_secs(5)),
                ..BenchOptions::default()
            },
            BenchOptions {
                catch_up_down: Some(Duration::from_secs(5)),
                duration: Some(Duration::from_secs(10)),
                validators: 3,
                ..BenchOptions::default()
            },
            BenchOptions {
                in_flight_max: 0,
                ..BenchOptions::default()
            },
        ];
        for options in refused {
            assert!(
                matches!(check(&options), Err(BenchError::Options(_))),
                "{options:?}"
            );
        }
    }
}
