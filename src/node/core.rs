//! The sequencer and the engine thread: the one path every command takes.
//!
//! gRPC handlers send requests into a bounded channel. The engine thread takes what has queued
//! up (at most `ENGINE_BATCH_MAX`), gives each command the journal's next sequence number and
//! the wall-clock time (never earlier than the previous command's: this is where the clock
//! enters, at the edge), applies it to the engine and submits it to the journal writer thread,
//! which syncs whole batches at once (group commit). The engine's market data (depth, BBO,
//! balances) are coalesced per batch (`Engine::apply_in_batch`, then one
//! `Engine::flush_market_data`). The acknowledgement thread waits until a batch is durable,
//! then updates the read model ([`Hub`]) with each command's events and then the batch's
//! market data, publishes market data and answers the callers. So a client is answered, and
//! the market sees a trade, only once the command that made it survives a crash.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use matching_engine::journal::{JournalOptions, JournalWriter, Ticket, WriterOptions};
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
    ticket: Option<Ticket>,
    replies: Vec<Reply>,
    /// The batch's market data (`Depth`, `Bbo`, `Balance`), coalesced over its commands by
    /// `Engine::flush_market_data`, published after the commands' own events.
    market_data: Vec<Event>,
    /// Time of the batch's last command: the market data's time.
    market_data_time_us: u64,
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
    ack: std::thread::JoinHandle<()>,
}

impl CoreThreads {
    /// Waits for both threads (after [`Core::stop`]); the journal is flushed and a snapshot
    /// written when this returns `Ok`.
    pub fn join(self) -> anyhow::Result<()> {
        let engine = self
            .engine
            .join()
            .map_err(|_| anyhow::anyhow!("engine thread panicked"))?;
        self.ack
            .join()
            .map_err(|_| anyhow::anyhow!("acknowledgement thread panicked"))?;
        engine
    }
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Recovers the engine from `data_dir` and starts the engine and acknowledgement threads.
/// Returns the handle, the threads, and whether the data directory was empty (fresh).
pub fn start(
    data_dir: &Path,
    metrics: Metrics,
    feed: TradeFeed,
) -> anyhow::Result<(Core, CoreThreads, bool)> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| anyhow::anyhow!("data dir {}: {e}", data_dir.display()))?;
    let recovered = recovery::recover(
        data_dir,
        &RecoveryOptions {
            journal: JournalOptions::default(),
            snapshots_kept: SNAPSHOTS_KEPT_DEFAULT,
            engine: EngineConfig {
                fee_account: FEE_ACCOUNT,
            },
        },
    )
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
    let writer = JournalWriter::spawn(recovered.journal, WriterOptions::default())
        .map_err(|e| anyhow::anyhow!("journal writer: {e}"))?;
    let (tx, rx) = mpsc::channel(ENGINE_QUEUE_DEPTH);
    let (ack_tx, ack_rx) = std::sync::mpsc::sync_channel(ACK_QUEUE_DEPTH);
    let failed = Arc::new(AtomicBool::new(false));
    let engine_thread = {
        let metrics = metrics.clone();
        let snapshots = recovered.snapshots;
        let journal_dir = data_dir.join(JOURNAL_DIR);
        let failed = failed.clone();
        let feed = feed.clone();
        std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || {
                let r = engine_loop(
                    engine,
                    writer,
                    rx,
                    ack_tx,
                    &metrics,
                    &snapshots,
                    &journal_dir,
                    &feed,
                );
                if r.is_err() {
                    failed.store(true, Ordering::SeqCst);
                }
                r
            })?
    };
    let ack_thread = {
        let metrics = metrics.clone();
        let hub = hub.clone();
        let failed = failed.clone();
        std::thread::Builder::new()
            .name("ack".into())
            .spawn(move || ack_loop(ack_rx, &hub, &metrics, &failed, &feed))?
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
            ack: ack_thread,
        },
        fresh,
    ))
}

fn engine_loop(
    mut engine: Engine,
    mut writer: JournalWriter<Command>,
    mut rx: mpsc::Receiver<Request>,
    ack_tx: std::sync::mpsc::SyncSender<AckBatch>,
    metrics: &Metrics,
    snapshots: &SnapshotStore,
    journal_dir: &Path,
    feed: &TradeFeed,
) -> anyhow::Result<()> {
    let mut batch = Vec::with_capacity(ENGINE_BATCH_MAX);
    let mut since_snapshot = 0u64;
    let mut snapshot_wait_at = SNAPSHOT_EVERY_COMMANDS;
    let mut stopping = false;
    while !stopping {
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        batch.push(first);
        while batch.len() < ENGINE_BATCH_MAX {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        metrics.engine_queue_depth.set(rx.len() as i64);
        let mut replies = Vec::with_capacity(batch.len());
        let mut ticket = None;
        let mut commands = 0u64;
        for request in batch.drain(..) {
            match request {
                Request::Command {
                    kind,
                    reply,
                    enqueued,
                } => {
                    let cmd = Command {
                        seq: writer.next_seq(),
                        time_us: now_us().max(engine.last_time_us()),
                        kind,
                    };
                    let mut events = Vec::new();
                    // Market data come once per batch, after the loop.
                    engine.apply_in_batch(&cmd, &mut events);
                    match writer.submit(cmd) {
                        Ok(t) => ticket = Some(t),
                        Err(e) => {
                            // Fail-stop: the engine holds a command the journal refused.
                            let _ = reply.send(Err(ApiReject::Internal.status("", "journal")));
                            return Err(anyhow::anyhow!("journal refused a command: {e}"));
                        }
                    }
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
        metrics.commands.inc_by(commands);
        metrics.ack_queue_depth.inc();
        let batch = AckBatch {
            ticket,
            replies,
            market_data,
            market_data_time_us: engine.last_time_us(),
        };
        if ack_tx.send(batch).is_err() {
            anyhow::bail!("acknowledgement thread gone");
        }
        since_snapshot += commands;
        if since_snapshot >= SNAPSHOT_EVERY_COMMANDS {
            // A snapshot never gets ahead of settlement: the settler re-derives unsettled
            // trades by replaying the journal from a snapshot at or below the settled seq, and
            // snapshots prune the journal before them. Under settlement lag the snapshot waits
            // (briefly, then again every SNAPSHOT_RETRY_COMMANDS), never order entry.
            let seq = engine.last_seq();
            let mut settled = feed.settled_seq() >= seq;
            if !settled && since_snapshot >= snapshot_wait_at {
                writer
                    .wait_durable(seq)
                    .map_err(|e| anyhow::anyhow!("journal: {e}"))?;
                settled = feed.wait_settled(seq, Duration::from_millis(SNAPSHOT_SETTLE_WAIT_MS));
                snapshot_wait_at = since_snapshot + SNAPSHOT_RETRY_COMMANDS;
            }
            if settled {
                writer
                    .wait_durable(seq)
                    .map_err(|e| anyhow::anyhow!("journal: {e}"))?;
                recovery::take_snapshot(snapshots, journal_dir, &engine, seq)
                    .map_err(|e| anyhow::anyhow!("snapshot: {e}"))?;
                since_snapshot = 0;
                snapshot_wait_at = SNAPSHOT_EVERY_COMMANDS;
            }
        }
    }
    // Refuse what is still queued, then flush the journal and leave a snapshot so the next
    // start need not replay.
    rx.close();
    while rx.try_recv().is_ok() {}
    let journal = writer
        .close()
        .map_err(|e| anyhow::anyhow!("closing the journal: {e}"))?;
    drop(ack_tx);
    if engine.last_seq() > 0 {
        if feed.wait_settled(
            engine.last_seq(),
            Duration::from_millis(SHUTDOWN_SETTLE_WAIT_MS),
        ) {
            recovery::take_snapshot(snapshots, journal_dir, &engine, journal.durable_seq())
                .map_err(|e| anyhow::anyhow!("snapshot at shutdown: {e}"))?;
        } else {
            tracing::warn!(
                seq = engine.last_seq(),
                settled = feed.settled_seq(),
                "no snapshot at shutdown: settlement is behind (the next start replays the journal)"
            );
        }
    }
    tracing::info!(seq = engine.last_seq(), "engine stopped, journal flushed");
    Ok(())
}

fn ack_loop(
    rx: std::sync::mpsc::Receiver<AckBatch>,
    hub: &Mutex<Hub>,
    metrics: &Metrics,
    failed: &AtomicBool,
    feed: &TradeFeed,
) {
    let mut items = Vec::new();
    for batch in rx {
        metrics.ack_queue_depth.dec();
        let durable = match &batch.ticket {
            Some(t) => t.wait().map(|_| Some(t.seq())),
            None => Ok(None),
        };
        let durable_seq = match durable {
            Err(e) => {
                tracing::error!(error = %e, "journal failed; refusing every further command");
                failed.store(true, Ordering::SeqCst);
                for r in batch.replies {
                    if let Reply::Command { reply, .. } = r {
                        let _ = reply.send(Err(ApiReject::Internal.status("", "journal failed")));
                    }
                }
                continue;
            }
            Ok(Some(seq)) => {
                metrics.durable_seq.set(seq as i64);
                Some(seq)
            }
            Ok(None) => None,
        };
        {
            let mut hub = hub.lock().unwrap_or_else(|e| e.into_inner());
            for r in &batch.replies {
                if let Reply::Command { cmd, events, .. } = r {
                    hub.apply(cmd, events);
                    let trades = trades_of(cmd, events, |m| hub.markets.get(&m).map(|md| md.cfg));
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
        // Durable trades go to settlement (never blocking), then the durable mark moves.
        for item in items.drain(..) {
            feed.publish(item);
        }
        if let Some(seq) = durable_seq {
            feed.durable(seq);
        }
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
