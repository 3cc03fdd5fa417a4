//! `rempart bench-api`: starts a demo node in this process (temporary data directory, real
//! journal with fsync), or with `--connect` uses a demo node already running in its own
//! process, then measures orders sent through `OrderStream` from submission to
//! acknowledgement over several connections, and the latency of unary `PlaceOrder` against a
//! `Diagnostics.Echo` call on the same stack, and the disk's own floor under a durable
//! acknowledgement (a 4 KiB write and `fdatasync` in the data directory). Prints one JSON line.
//!
//! Every order is an immediate-or-cancel limit order at 1 EUR, alternating buy and sell, on
//! two accounts: each is risk-checked (funds held), matched against an empty book, cancelled
//! (funds released), journaled and acknowledged, so the run can be repeated without running
//! out of funds or hitting the open-order limit. Resting orders and trades are exercised by the
//! end-to-end tests, not measured here.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use rempart_proto::v1 as pb;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Request;
use tonic::transport::Channel;

use crate::node::gateway::RateLimits;
use crate::node::limits::STREAM_IN_FLIGHT_MAX;
use crate::node::{self, NodeOptions};

/// `rempart bench-api` options.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Orders sent through OrderStream in total.
    #[arg(long, default_value_t = 200_000)]
    pub orders: u64,
    /// Client connections (each with one OrderStream).
    #[arg(long, default_value_t = 4)]
    pub connections: u64,
    /// Requests in flight per stream. The default, 14, is the load at which 4 streams meet
    /// the throughput target (100 000 orders/s) at the lowest latency on the 2-core machine
    /// (BENCHMARKS.md); a larger window raises throughput only by queueing (512: ~295 000
    /// orders/s at a p99 of ~33 ms, since latency = orders in flight / throughput).
    #[arg(long, default_value_t = 14)]
    pub window: usize,
    /// Unary PlaceOrder and Echo calls measured one at a time.
    #[arg(long, default_value_t = 2_000)]
    pub unary: u64,
    /// Where the node's temporary data directory (journal, ledger, stores) is made; the
    /// system's temporary directory by default. On a tmpfs (`/dev/shm`) `fdatasync` costs
    /// nothing, which separates the API path's own cost from the disk's: a diagnostic, since
    /// a journal on tmpfs is not durable. With `--connect`, the directory of the disk probe.
    #[arg(long)]
    pub data_parent: Option<std::path::PathBuf>,
    /// Measure a node that is already running (`rempart demo`, started with rate limits
    /// raised above the load: `--calls-per-key`, `--calls-per-ip`, `--orders-per-account`)
    /// at this address, e.g. `http://127.0.0.1:50051`, instead of starting one in this
    /// process. Needs the API keys of two funded traders (`--sell-key`, `--buy-key`).
    #[arg(long, requires_all = ["sell_key", "buy_key"])]
    pub connect: Option<String>,
    /// With `--connect`: the API key of the trader who sells (the demo's `alice`). Read from
    /// the environment so that it stays out of the process list.
    #[arg(long, env = "REMPART_BENCH_SELL_KEY", hide_env_values = true)]
    pub sell_key: Option<String>,
    /// With `--connect`: the API key of the trader who buys (the demo's `bob`).
    #[arg(long, env = "REMPART_BENCH_BUY_KEY", hide_env_values = true)]
    pub buy_key: Option<String>,
}

/// Largest `--orders`, `--connections`, `--window` and `--unary` accepted: the latencies are
/// held in memory, and one stream's window is bounded by the node's in-flight limit.
const ORDERS_MAX: u64 = 50_000_000;
const CONNECTIONS_MAX: u64 = 256;
const UNARY_MAX: u64 = 1_000_000;

impl BenchArgs {
    /// Refuses sizes out of range with a message naming the flag.
    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=ORDERS_MAX).contains(&self.orders),
            "--orders must be between 1 and {ORDERS_MAX}"
        );
        anyhow::ensure!(
            (1..=CONNECTIONS_MAX).contains(&self.connections),
            "--connections must be between 1 and {CONNECTIONS_MAX}"
        );
        anyhow::ensure!(
            self.orders >= self.connections,
            "--orders must be at least --connections (each stream sends orders / connections)"
        );
        anyhow::ensure!(
            (1..=STREAM_IN_FLIGHT_MAX).contains(&self.window),
            "--window must be between 1 and {STREAM_IN_FLIGHT_MAX} (the node's in-flight limit per stream)"
        );
        anyhow::ensure!(
            (1..=UNARY_MAX).contains(&self.unary),
            "--unary must be between 1 and {UNARY_MAX}"
        );
        Ok(())
    }
}

fn with_token<T>(msg: T, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    if let Ok(v) = format!("Bearer {token}").parse() {
        r.metadata_mut().insert("authorization", v);
    }
    r
}

fn order(side: pb::Side, time_in_force: pb::TimeInForce) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        market: "CITY/EUR".into(),
        side: side as i32,
        order_type: pb::OrderType::Limit as i32,
        time_in_force: time_in_force as i32,
        price: "1".into(),
        quantity: "1".into(),
        client_order_id: String::new(),
        account_id: String::new(),
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn stream_client(
    ch: Channel,
    token: String,
    orders: u64,
    window: usize,
    first_side: pb::Side,
) -> anyhow::Result<Vec<u64>> {
    let mut client = pb::trading_client::TradingClient::new(ch).max_decoding_message_size(1 << 20);
    let (tx, rx) = mpsc::channel(window);
    let permits = Arc::new(Semaphore::new(window));
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..orders).map(|_| AtomicU64::new(0)).collect());
    let start = Instant::now();
    let sender = {
        let permits = permits.clone();
        let sent_at = sent_at.clone();
        tokio::spawn(async move {
            for i in 0..orders {
                let Ok(p) = permits.acquire().await else {
                    return;
                };
                p.forget();
                let side = if i % 2 == 0 {
                    first_side
                } else if first_side == pb::Side::Buy {
                    pb::Side::Sell
                } else {
                    pb::Side::Buy
                };
                sent_at[i as usize].store(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
                let msg = pb::OrderStreamRequest {
                    request_id: i,
                    action: Some(pb::order_stream_request::Action::Place(order(
                        side,
                        pb::TimeInForce::Ioc,
                    ))),
                };
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
        })
    };
    let mut responses = client
        .order_stream(with_token(ReceiverStream::new(rx), &token))
        .await?
        .into_inner();
    let mut latencies = Vec::with_capacity(orders as usize);
    let mut errors = 0u64;
    while let Some(r) = responses.message().await? {
        let now = start.elapsed().as_nanos() as u64;
        let sent = sent_at[r.request_id as usize].load(Ordering::Relaxed);
        latencies.push(now.saturating_sub(sent) / 1_000);
        if matches!(r.result, Some(pb::order_stream_response::Result::Error(_))) {
            errors += 1;
        }
        permits.add_permits(1);
        if latencies.len() as u64 == orders {
            break;
        }
    }
    sender.abort();
    if errors > 0 {
        anyhow::bail!("{errors} orders were refused");
    }
    Ok(latencies)
}

/// Microseconds of each of `n` 4 KiB writes, each followed by `fdatasync`, into a file made
/// at full size with written zeros first (the journal's preallocated segments).
fn sync_latencies(path: &std::path::Path, n: u64) -> anyhow::Result<Vec<u64>> {
    use std::os::unix::fs::FileExt;
    const BLOCK: u64 = 4096;
    const BLOCKS: u64 = 1024;
    let file = std::fs::OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(path)?;
    file.write_all_at(&vec![0u8; (BLOCK * BLOCKS) as usize], 0)?;
    file.sync_all()?;
    let data = vec![0x5au8; BLOCK as usize];
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n {
        let t = Instant::now();
        file.write_all_at(&data, (i % BLOCKS) * BLOCK)?;
        file.sync_data()?;
        out.push(t.elapsed().as_micros() as u64);
    }
    out.sort_unstable();
    std::fs::remove_file(path)?;
    Ok(out)
}

/// A temporary directory in `parent`, or in the system's temporary directory.
fn temp_dir(parent: Option<&std::path::Path>) -> std::io::Result<tempfile::TempDir> {
    match parent {
        Some(parent) => tempfile::tempdir_in(parent),
        None => tempfile::tempdir(),
    }
}

/// Starts a demo node in this process with rate limits above the benchmark's load, on a
/// temporary data directory made in `data_parent`.
async fn start_node(
    data_parent: Option<&std::path::Path>,
) -> anyhow::Result<(node::RunningNode, tempfile::TempDir)> {
    let dir = temp_dir(data_parent)?;
    let running = node::start(NodeOptions {
        otlp_endpoint: None,
        postgres_url: None,
        consortium: None,
        // The node runs on the bench's own runtime, beside its clients.
        api_threads: None,
        listen: "127.0.0.1:0".parse()?,
        metrics_listen: "127.0.0.1:0".parse()?,
        data_dir: dir.path().to_path_buf(),
        tls: None,
        limits: RateLimits {
            calls_per_key: 1_000_000,
            calls_per_ip: 1_000_000,
            orders_per_account: 10_000_000,
        },
        demo: true,
        custody_pkcs11: None,
    })
    .await?;
    Ok((running, dir))
}

/// Runs the benchmark.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    args.validate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // Either a node of our own (its data directory also holds the disk probe), or the
        // running node named by `--connect` (the probe goes to a temporary directory).
        let (running, dir, uri, alice, bob) = match &args.connect {
            None => {
                let (running, dir) = start_node(args.data_parent.as_deref()).await?;
                let token = |name: &str| {
                    running
                        .new_keys
                        .iter()
                        .find(|k| k.0 == name)
                        .map(|k| k.3.clone())
                        .unwrap_or_default()
                };
                let (alice, bob) = (token("alice"), token("bob"));
                let uri = format!("http://{}", running.grpc_addr);
                (Some(running), dir, uri, alice, bob)
            }
            Some(uri) => {
                let dir = temp_dir(args.data_parent.as_deref())?;
                let (Some(alice), Some(bob)) = (args.sell_key.clone(), args.buy_key.clone()) else {
                    anyhow::bail!("--connect needs --sell-key and --buy-key");
                };
                (None, dir, uri.clone(), alice, bob)
            }
        };
        let per = args.orders / args.connections;
        let mut tasks = Vec::new();
        let started = Instant::now();
        for c in 0..args.connections {
            let ch = Channel::from_shared(uri.clone())?
                .connect()
                .await
                .with_context(|| format!("connecting to {uri}"))?;
            let (tok, side) = if c % 2 == 0 {
                (alice.clone(), pb::Side::Sell)
            } else {
                (bob.clone(), pb::Side::Buy)
            };
            tasks.push(tokio::spawn(stream_client(ch, tok, per, args.window, side)));
        }
        let mut latencies = Vec::new();
        for t in tasks {
            latencies.extend(t.await??);
        }
        let elapsed = started.elapsed().as_secs_f64();
        latencies.sort_unstable();

        let ch = Channel::from_shared(uri)?.connect().await?;
        let mut trading = pb::trading_client::TradingClient::new(ch.clone());
        let mut diag = pb::diagnostics_client::DiagnosticsClient::new(ch);
        // Unary PlaceOrder and Echo alternate, so that both see the same machine at the
        // same moment (a burst of other load, or a quiet spell with slow wake-ups of idle
        // cores, moves both).
        let mut unary = Vec::with_capacity(args.unary as usize);
        let mut echo = Vec::with_capacity(args.unary as usize);
        for i in 0..args.unary {
            let side = if i % 2 == 0 {
                pb::Side::Sell
            } else {
                pb::Side::Buy
            };
            let t = Instant::now();
            trading
                .place_order(with_token(order(side, pb::TimeInForce::Ioc), &alice))
                .await?;
            unary.push(t.elapsed().as_micros() as u64);
            let t = Instant::now();
            diag.echo(with_token(
                pb::EchoRequest {
                    payload: vec![0; 64],
                },
                &alice,
            ))
            .await?;
            echo.push(t.elapsed().as_micros() as u64);
        }
        unary.sort_unstable();
        echo.sort_unstable();
        // The floor under a durable acknowledgement: one 4 KiB write and `fdatasync` over
        // preallocated zeros in the same directory, as the journal does per batch.
        let probe = dir.path().join("sync-probe");
        let syncs = args.unary.max(200);
        let disk_sync =
            tokio::task::spawn_blocking(move || sync_latencies(&probe, syncs)).await??;
        let line = serde_json::json!({
            "node": if running.is_some() { "in-process" } else { "connected" },
            "orders": latencies.len(),
            "connections": args.connections,
            "window": args.window,
            "orders_per_sec": (latencies.len() as f64 / elapsed).round(),
            "p50_us": percentile(&latencies, 0.50),
            "p99_us": percentile(&latencies, 0.99),
            "unary_place_p50_us": percentile(&unary, 0.50),
            "echo_p50_us": percentile(&echo, 0.50),
            "disk_sync_p50_us": percentile(&disk_sync, 0.50),
        });
        println!("{line}");
        if let Some(running) = running {
            running.shutdown().await?;
        }
        Ok(())
    })
}
