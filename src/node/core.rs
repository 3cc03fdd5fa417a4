//! The sequencer and the engine thread: the one path every command takes.
//!
//! gRPC handlers send requests into a bounded channel. The engine thread takes what has queued
//! up (at most `ENGINE_BATCH_MAX`), gives each command the journal's next sequence number and
//! the wall-clock time (never earlier than the previous command's: this is where the clock
//! enters, at the edge), applies it to the engine and hands the batch, commands and outcomes
//! together, to the journal thread. The engine's market data (depth, BBO, balances) are
//! coalesced per batch (`Engine::apply_in_batch`, then one `Engine::flush_market_data`). The
//! journal thread takes every batch that has queued up, writes their commands with one write
//! and one `fdatasync` (group commit), then updates the read model ([`Hub`]) with each
//! command's events and each batch's market data, publishes market data and answers the
//! callers. So a client is answered, and the market sees a trade, only once the command that
//! made it survives a crash. Writing and acknowledging on one thread spares a lone command a
//! thread hand-off (ARCHITECTURE.md, "the journal thread acknowledges").

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use matching_engine::journal::{BATCH_BYTES_MAX, BATCH_RECORDS_MAX, Journal, JournalOptions};
use matching_engine::recovery::{self, JOURNAL_DIR, RecoveryOptions, SNAPSHOTS_KEPT_DEFAULT};
use matching_engine::snapshot::SnapshotStore;
use matching_engine::{AssetId, Command, CommandKind, Engine, EngineConfig, Event};
use tokio::sync::{broadcast, mpsc, oneshot};
use tonic::Status;

use super::errors::ApiReject;
use super::hub::{ASSETS, Hub};
use super::limits::{
    ACK_QUEUE_DEPTH, ENGINE_BATCH_MAX, ENGINE_QUEUE_DEPTH, MARKET_DATA_BUFFER,
    SHUTDOWN_SETTLE_WAIT_MS, SNAPSHOT_EVERY_COMMANDS, SNAPSHOT_RETRY_COMMANDS,
    SNAPSHOT_SETTLE_WAIT_MS,
};
use super::metrics::Metrics;
use super::settle::{SettleItem, TradeFeed, trades_of};

/// The account credited with every fee.
pub const FEE_ACCOUNT: u64 = 9;

/// A command's outcome: its sequence number, its time and the engine's events.
#[derive(Debug, Clone)]
pub struct Applied {
    pub seq: u64,
    pub time_us: u64,
    pub events: Vec<Event>,
}

/// (asset, available, held) per known asset, and the seq they are consistent with.
pub type Balances = (u64, Vec<(AssetId, u64, u64)>);

/// Every account's (asset, available, held), sorted by account, and the seq they are
/// consistent with (custody's proof of reserves reads the liabilities from it).
pub type AllBalances = (u64, Vec<(u64, Vec<(AssetId, u64, u64)>)>);

type CommandReply = oneshot::Sender<Result<Applied, Status>>;

#[derive(Debug)]
enum Request {
    Command {
        kind: CommandKind,
        reply: CommandReply,
        enqueued: Instant,
    },
    Balances {
        account: u64,
        reply: oneshot::Sender<Balances>,
    },
    AllBalances {
        reply: oneshot::Sender<AllBalances>,
    },
    Stop,
}

#[derive(Debug)]
enum Reply {
    Command {
        cmd: Command,
        events: Vec<Event>,
        reply: CommandReply,
        enqueued: Instant,
    },
    Balances {
        data: Balances,
        reply: oneshot::Sender<Balances>,
    },
    AllBalances {
        data: AllBalances,
        reply: oneshot::Sender<AllBalances>,
    },
}

#[derive(Debug)]
struct AckBatch {
    /// Commands in `replies` (the rest answer queries).
    commands: usize,
    replies: Vec<Reply>,
    /// The batch's market data (`Depth`, `Bbo`, `Balance`), coalesced over its commands by
    /// `Engine::flush_market_data`, published after the commands' own events.
    market_data: Vec<Event>,
    /// Time of the batch's last command: the market data's time.
    market_data_time_us: u64,
}

/// How far the journal thread has made the journal durable, for the engine thread's snapshots
/// and shutdown.
#[derive(Debug, Default)]
struct Durable {
    state: Mutex<DurableState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct DurableState {
    seq: u64,
    failed: Option<String>,
    stopped: bool,
}

impl Durable {
    fn lock(&self) -> std::sync::MutexGuard<'_, DurableState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut DurableState)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }

    /// Blocks until every command up to `seq` is durable; fails once the journal failed or
    /// its thread stopped short of `seq`.
    fn wait_for(&self, seq: u64) -> anyhow::Result<()> {
        let mut s = self.lock();
        loop {
            if s.seq >= seq {
                return Ok(());
            }
            if let Some(why) = &s.failed {
                anyhow::bail!("journal failed: {why}");
            }
            if s.stopped {
                anyhow::bail!("journal thread stopped at seq {} before {seq}", s.seq);
            }
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// A handle on the engine path, cheap to clone into every service.
#[derive(Debug, Clone)]
pub struct Core {
    tx: mpsc::Sender<Request>,
    /// The read model.
    pub hub: Arc<Mutex<Hub>>,
    /// Market-data fan-out.
    pub md_tx: broadcast::Sender<super::hub::MdEvent>,
    pub metrics: Metrics,
    failed: Arc<AtomicBool>,
}

/// The threads behind a [`Core`].
#[derive(Debug)]
pub struct CoreThreads {
    engine: std::thread::JoinHandle<anyhow::Result<()>>,
    journal: std::thread::JoinHandle<()>,
}

impl CoreThreads {
    /// Waits for both threads (after [`Core::stop`]); the journal is flushed and a snapshot
    /// written when this returns `Ok`.
    pub fn join(self) -> anyhow::Result<()> {
        let engine = self
            .engine
            .join()
            .map_err(|_| anyhow::anyhow!("engine thread panicked"))?;
        self.journal
            .join()
            .map_err(|_| anyhow::anyhow!("journal thread panicked"))?;
        engine
    }
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// How the node recovers its engine: the default journal, the snapshots it keeps, the fee
/// account. One definition, so that the tests that recover a node's data directory do what
/// the node does.
pub(crate) fn recovery_options() -> RecoveryOptions {
    RecoveryOptions {
        journal: JournalOptions::default(),
        snapshots_kept: SNAPSHOTS_KEPT_DEFAULT,
        engine: EngineConfig {
            fee_account: FEE_ACCOUNT,
        },
    }
}

/// Recovers the engine from `data_dir` and starts the engine and journal threads.
/// Returns the handle, the threads, and whether the data directory was empty (fresh).
pub fn start(
    data_dir: &Path,
    metrics: Metrics,
    feed: TradeFeed,
) -> anyhow::Result<(Core, CoreThreads, bool)> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| anyhow::anyhow!("data dir {}: {e}", data_dir.display()))?;
    let recovered = recovery::recover(data_dir, &recovery_options())
        .map_err(|e| anyhow::anyhow!("recovering {}: {e}", data_dir.display()))?;
    if let Some((path, offset, what)) = &recovered.torn {
        tracing::warn!(path = %path.display(), offset, what, "cut a torn journal tail");
    }
    tracing::info!(
        snapshot_seq = recovered.snapshot_seq,
        replayed = recovered.replayed,
        "engine recovered"
    );
    let mut engine = recovered.engine;
    // The O(n) check after every command is for the engine's own tests; the node keeps the
    // O(1) crossed-book assertion only.
    engine.set_full_invariant_checks(false);
    let fresh = engine.last_seq() == 0;
    let (md_tx, _) = broadcast::channel(MARKET_DATA_BUFFER);
    let hub = Arc::new(Mutex::new(Hub::from_engine(&engine, md_tx.clone())));
    metrics.durable_seq.set(engine.last_seq() as i64);
    // Everything recovered is durable; the settler settles what of it is not on the ledger.
    feed.durable(engine.last_seq());
    let journal = recovered.journal;
    let durable = Arc::new(Durable::default());
    durable.update(|d| d.seq = journal.durable_seq());
    let (tx, rx) = mpsc::channel(ENGINE_QUEUE_DEPTH);
    let (ack_tx, ack_rx) = std::sync::mpsc::sync_channel(ACK_QUEUE_DEPTH);
    let failed = Arc::new(AtomicBool::new(false));
    let first_seq = journal.next_seq();
    let engine_thread = {
        let metrics = metrics.clone();
        let snapshots = recovered.snapshots;
        let journal_dir = data_dir.join(JOURNAL_DIR);
        let failed = failed.clone();
        let feed = feed.clone();
        let durable = durable.clone();
        std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || {
                let r = engine_loop(
                    engine,
                    first_seq,
                    rx,
                    ack_tx,
                    &EngineCtx {
                        metrics: &metrics,
                        snapshots: &snapshots,
                        journal_dir: &journal_dir,
                        feed: &feed,
                        durable: &durable,
                        failed: &failed,
                    },
                );
                if r.is_err() {
                    failed.store(true, Ordering::SeqCst);
                }
                r
            })?
    };
    let journal_thread = {
        let metrics = metrics.clone();
        let hub = hub.clone();
        let failed = failed.clone();
        std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || {
                journal_loop(journal, ack_rx, &hub, &metrics, &failed, &feed, &durable)
            })?
    };
    Ok((
        Core {
            tx,
            hub,
            md_tx,
            metrics,
            failed,
        },
        CoreThreads {
            engine: engine_thread,
            journal: journal_thread,
        },
        fresh,
    ))
}

/// What the engine thread reads besides its queue.
struct EngineCtx<'a> {
    metrics: &'a Metrics,
    snapshots: &'a SnapshotStore,
    journal_dir: &'a Path,
    feed: &'a TradeFeed,
    durable: &'a Durable,
    failed: &'a AtomicBool,
}

fn engine_loop(
    mut engine: Engine,
    mut next_seq: u64,
    mut rx: mpsc::Receiver<Request>,
    ack_tx: std::sync::mpsc::SyncSender<AckBatch>,
    ctx: &EngineCtx<'_>,
) -> anyhow::Result<()> {
    let metrics = ctx.metrics;
    let mut batch = Vec::with_capacity(ENGINE_BATCH_MAX);
    let mut since_snapshot = 0u64;
    let mut snapshot_wait_at = SNAPSHOT_EVERY_COMMANDS;
    let mut stopping = false;
    while !stopping {
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        // Fail-stop: once the journal failed, the engine holds commands it never wrote.
        if ctx.failed.load(Ordering::SeqCst) {
            reply_refused(first);
            anyhow::bail!("the journal failed: the engine stops");
        }
        batch.push(first);
        while batch.len() < ENGINE_BATCH_MAX {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        metrics.engine_queue_depth.set(rx.len() as i64);
        let mut replies = Vec::with_capacity(batch.len());
        let mut commands = 0usize;
        for request in batch.drain(..) {
            match request {
                Request::Command {
                    kind,
                    reply,
                    enqueued,
                } => {
                    let cmd = Command {
                        seq: next_seq,
                        time_us: now_us().max(engine.last_time_us()),
                        kind,
                    };
                    next_seq += 1;
                    let mut events = Vec::new();
                    // Market data come once per batch, after the loop.
                    engine.apply_in_batch(&cmd, &mut events);
                    commands += 1;
                    replies.push(Reply::Command {
                        cmd,
                        events,
                        reply,
                        enqueued,
                    });
                }
                Request::Balances { account, reply } => {
                    let data = ASSETS
                        .iter()
                        .map(|(asset, _, _)| {
                            let (available, held) = engine.balance(account, *asset);
                            (*asset, available, held)
                        })
                        .collect();
                    replies.push(Reply::Balances {
                        data: (engine.last_seq(), data),
                        reply,
                    });
                }
                Request::AllBalances { reply } => {
                    let accounts = engine
                        .export_state()
                        .accounts
                        .into_iter()
                        .map(|a| {
                            let list = a
                                .balances
                                .iter()
                                .map(|b| (b.asset, b.available, b.held))
                                .collect();
                            (a.account, list)
                        })
                        .collect();
                    replies.push(Reply::AllBalances {
                        data: (engine.last_seq(), accounts),
                        reply,
                    });
                }
                Request::Stop => stopping = true,
            }
        }
        let mut market_data = Vec::new();
        engine.flush_market_data(&mut market_data);
        metrics.batch_size.observe(commands as f64);
        metrics.commands.inc_by(commands as u64);
        metrics.ack_queue_depth.inc();
        let batch = AckBatch {
            commands,
            replies,
            market_data,
            market_data_time_us: engine.last_time_us(),
        };
        if ack_tx.send(batch).is_err() {
            anyhow::bail!("journal thread gone");
        }
        since_snapshot += commands as u64;
        if since_snapshot >= SNAPSHOT_EVERY_COMMANDS {
            // A snapshot never gets ahead of settlement: the settler re-derives unsettled
            // trades by replaying the journal from a snapshot at or below the settled seq, and
            // snapshots prune the journal before them. Under settlement lag the snapshot waits
            // (briefly, then again every SNAPSHOT_RETRY_COMMANDS), never order entry.
            let seq = engine.last_seq();
            let mut settled = ctx.feed.settled_seq() >= seq;
            if !settled && since_snapshot >= snapshot_wait_at {
                ctx.durable.wait_for(seq)?;
                settled = ctx
                    .feed
                    .wait_settled(seq, Duration::from_millis(SNAPSHOT_SETTLE_WAIT_MS));
                snapshot_wait_at = since_snapshot + SNAPSHOT_RETRY_COMMANDS;
            }
            if settled {
                ctx.durable.wait_for(seq)?;
                recovery::take_snapshot(ctx.snapshots, ctx.journal_dir, &engine, seq)
                    .map_err(|e| anyhow::anyhow!("snapshot: {e}"))?;
                since_snapshot = 0;
                snapshot_wait_at = SNAPSHOT_EVERY_COMMANDS;
            }
        }
    }
    // Refuse what is still queued, then let the journal thread write and acknowledge the rest
    // and leave a snapshot so the next start need not replay.
    rx.close();
    while let Ok(r) = rx.try_recv() {
        reply_refused(r);
    }
    drop(ack_tx);
    ctx.durable
        .wait_for(engine.last_seq())
        .map_err(|e| anyhow::anyhow!("flushing the journal: {e}"))?;
    if engine.last_seq() > 0 {
        if ctx.feed.wait_settled(
            engine.last_seq(),
            Duration::from_millis(SHUTDOWN_SETTLE_WAIT_MS),
        ) {
            recovery::take_snapshot(ctx.snapshots, ctx.journal_dir, &engine, engine.last_seq())
                .map_err(|e| anyhow::anyhow!("snapshot at shutdown: {e}"))?;
        } else {
            tracing::warn!(
                seq = engine.last_seq(),
                settled = ctx.feed.settled_seq(),
                "no snapshot at shutdown: settlement is behind (the next start replays the journal)"
            );
        }
    }
    tracing::info!(seq = engine.last_seq(), "engine stopped, journal flushed");
    Ok(())
}

/// Answers a request that will not be applied (the engine path is stopping or failed); a
/// query's caller sees its reply dropped, which it reports as shutting down.
fn reply_refused(request: Request) {
    if let Request::Command { reply, .. } = request {
        let _ = reply.send(Err(
            ApiReject::ShuttingDown.status("", "the engine path stopped")
        ));
    }
}

/// The journal thread: group commit of whatever batches have queued up, then their
/// acknowledgements. After a journal failure it refuses every command it is handed (the
/// engine thread stops at its next batch).
fn journal_loop(
    mut journal: Journal,
    rx: std::sync::mpsc::Receiver<AckBatch>,
    hub: &Mutex<Hub>,
    metrics: &Metrics,
    failed: &AtomicBool,
    feed: &TradeFeed,
    durable: &Durable,
) {
    let mut batches: Vec<AckBatch> = Vec::new();
    let mut items = Vec::new();
    let mut broken: Option<String> = None;
    while let Ok(first) = rx.recv() {
        batches.push(first);
        // Take whatever else has queued up while the last sync ran: the batch size adapts to
        // the load.
        loop {
            let last = batches.len() - 1;
            if broken.is_none()
                && let Err(e) = stage(&mut journal, &batches[last])
            {
                broken = Some(e);
            }
            if journal.staged() >= BATCH_RECORDS_MAX || journal.staged_bytes() >= BATCH_BYTES_MAX {
                break;
            }
            match rx.try_recv() {
                Ok(b) => batches.push(b),
                Err(_) => break,
            }
        }
        metrics.ack_queue_depth.sub(batches.len() as i64);
        let committed = match &broken {
            Some(why) => Err(why.clone()),
            None => journal.commit().map_err(|e| e.to_string()),
        };
        match committed {
            Err(why) => {
                if !failed.swap(true, Ordering::SeqCst) {
                    tracing::error!(error = %why, "journal failed; refusing every further command");
                }
                broken = Some(why.clone());
                durable.update(|d| d.failed = Some(why));
                for batch in batches.drain(..) {
                    refuse(batch);
                }
            }
            Ok(seq) => {
                metrics.durable_seq.set(seq as i64);
                durable.update(|d| d.seq = seq);
                {
                    let mut hub = hub.lock().unwrap_or_else(|e| e.into_inner());
                    for batch in &batches {
                        for r in &batch.replies {
                            if let Reply::Command { cmd, events, .. } = r {
                                hub.apply(cmd, events);
                                let trades = trades_of(cmd, events, |m| {
                                    hub.markets.get(&m).map(|md| md.cfg)
                                });
                                if !trades.is_empty() {
                                    items.push(SettleItem {
                                        seq: cmd.seq,
                                        trades,
                                    });
                                }
                            }
                        }
                        hub.apply_market_data(batch.market_data_time_us, &batch.market_data);
                    }
                }
                // Durable trades go to settlement (never blocking), then the durable mark
                // moves.
                for item in items.drain(..) {
                    feed.publish(item);
                }
                if batches.iter().any(|b| b.commands > 0) {
                    feed.durable(seq);
                }
                for batch in batches.drain(..) {
                    answer(batch, metrics);
                }
            }
        }
    }
    durable.update(|d| d.stopped = true);
}

/// Stages the commands of one batch, checking that the journal numbers them as the engine
/// did.
fn stage(journal: &mut Journal, batch: &AckBatch) -> Result<(), String> {
    for r in &batch.replies {
        if let Reply::Command { cmd, .. } = r {
            let seq = journal.stage(cmd).map_err(|e| e.to_string())?;
            if seq != cmd.seq {
                return Err(format!("the journal numbered command {} as {seq}", cmd.seq));
            }
        }
    }
    Ok(())
}

fn refuse(batch: AckBatch) {
    for r in batch.replies {
        if let Reply::Command { reply, .. } = r {
            let _ = reply.send(Err(ApiReject::Internal.status("", "journal failed")));
        }
    }
}

fn answer(batch: AckBatch, metrics: &Metrics) {
    for r in batch.replies {
        match r {
            Reply::Command {
                cmd,
                events,
                reply,
                enqueued,
            } => {
                metrics
                    .order_latency
                    .observe(enqueued.elapsed().as_secs_f64());
                let _ = reply.send(Ok(Applied {
                    seq: cmd.seq,
                    time_us: cmd.time_us,
                    events,
                }));
            }
            Reply::Balances { data, reply } => {
                let _ = reply.send(data);
            }
            Reply::AllBalances { data, reply } => {
                let _ = reply.send(data);
            }
        }
    }
}

impl Core {
    fn check_alive(&self) -> Result<(), Status> {
        if self.failed.load(Ordering::Relaxed) {
            Err(ApiReject::ShuttingDown.status("", "the engine path stopped"))
        } else {
            Ok(())
        }
    }

    /// Submits a command and returns the receiver of its outcome (for pipelining: the engine
    /// answers in submission order).
    pub async fn submit(
        &self,
        kind: CommandKind,
    ) -> Result<oneshot::Receiver<Result<Applied, Status>>, Status> {
        self.check_alive()?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Command {
                kind,
                reply,
                enqueued: Instant::now(),
            })
            .await
            .map_err(|_| ApiReject::ShuttingDown.status("", ""))?;
        Ok(rx)
    }

    /// Runs one command and waits until it is durable.
    pub async fn command(&self, kind: CommandKind) -> Result<Applied, Status> {
        let rx = self.submit(kind).await?;
        rx.await
            .map_err(|_| ApiReject::ShuttingDown.status("", ""))?
    }

    /// Balances of an account, consistent with everything acknowledged before.
    pub async fn balances(&self, account: u64) -> Result<Balances, Status> {
        self.check_alive()?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Balances { account, reply })
            .await
            .map_err(|_| ApiReject::ShuttingDown.status("", ""))?;
        rx.await.map_err(|_| ApiReject::ShuttingDown.status("", ""))
    }

    /// Every account's balances, consistent with everything acknowledged before. Costs a
    /// walk of the engine's state on the engine thread: for periodic reports, not per call.
    pub async fn all_balances(&self) -> Result<AllBalances, Status> {
        self.check_alive()?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::AllBalances { reply })
            .await
            .map_err(|_| ApiReject::ShuttingDown.status("", ""))?;
        rx.await.map_err(|_| ApiReject::ShuttingDown.status("", ""))
    }

    /// Asks the engine thread to finish its batch, flush the journal and stop.
    pub async fn stop(&self) {
        let _ = self.tx.send(Request::Stop).await;
    }

    /// The time the node would stamp now (for key expiry checks).
    pub fn now_us() -> u64 {
        now_us()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::settle::{LEDGER_DIR, SETTLED_FILE, feed};

    /// Many callers at once: every command is answered once, in each caller's order, with
    /// seqs that the journal holds after a restart, and the recovered engine is the live one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_commands_are_answered_once_durable_and_recovered_whole() {
        let dir = tempfile::tempdir().unwrap();
        // No settler runs here: mark everything settled so that shutdown snapshots at once.
        std::fs::create_dir_all(dir.path().join(LEDGER_DIR)).unwrap();
        std::fs::write(
            dir.path().join(LEDGER_DIR).join(SETTLED_FILE),
            format!("{}\n", u64::MAX / 2),
        )
        .unwrap();
        let (tx, _rx) = feed(dir.path()).unwrap();
        let (core, threads, fresh) = start(dir.path(), Metrics::new().unwrap(), tx).unwrap();
        assert!(fresh);
        let callers = 8u64;
        let per_caller = 250u64;
        let mut tasks = Vec::new();
        for c in 0..callers {
            let core = core.clone();
            tasks.push(tokio::spawn(async move {
                let mut seqs = Vec::new();
                // Submitted back to back without waiting, so that batches hold many commands.
                let mut pending = Vec::new();
                for _ in 0..per_caller {
                    pending.push(
                        core.submit(CommandKind::Deposit {
                            account: 1_000 + c,
                            asset: 1,
                            amount: 5,
                        })
                        .await
                        .unwrap(),
                    );
                }
                for rx in pending {
                    let applied = rx.await.unwrap().unwrap();
                    assert!(applied.events.is_empty(), "{:?}", applied.events);
                    seqs.push(applied.seq);
                }
                seqs
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            let seqs = t.await.unwrap();
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "answered out of order"
            );
            all.extend(seqs);
        }
        all.sort_unstable();
        let n = callers * per_caller;
        assert_eq!(
            all,
            (1..=n).collect::<Vec<_>>(),
            "each seq answered exactly once"
        );
        // A query after the commands sees every one of them.
        let (seq, balances) = core.balances(1_003).await.unwrap();
        assert_eq!(seq, n);
        let cash = balances.iter().find(|(a, _, _)| *a == 1).unwrap();
        assert_eq!((cash.1, cash.2), (5 * per_caller, 0));
        assert_eq!(core.metrics.durable_seq.get(), n as i64);
        core.stop().await;
        threads.join().unwrap();

        let recovered = recovery::recover(dir.path(), &recovery_options()).unwrap();
        assert_eq!(recovered.engine.last_seq(), n);
        for c in 0..callers {
            assert_eq!(recovered.engine.balance(1_000 + c, 1), (5 * per_caller, 0));
        }
    }

    /// After shutdown nothing more is taken, and what was queued is refused, not lost silently.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_core_refuses_commands() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, _rx) = feed(dir.path()).unwrap();
        let (core, threads, _) = start(dir.path(), Metrics::new().unwrap(), tx).unwrap();
        core.stop().await;
        threads.join().unwrap();
        let err = core
            .command(CommandKind::Deposit {
                account: 1_000,
                asset: 1,
                amount: 5,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    }
}
