//! Prometheus metrics and the plain HTTP endpoint (`GET /metrics`) that serves them.
//!
//! The endpoint is a few lines over a TCP listener rather than a web framework: it answers one
//! fixed path with one fixed content type, reads at most `METRICS_REQUEST_BYTES_MAX` bytes of
//! request head and closes the connection.

use std::net::SocketAddr;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::limits::METRICS_REQUEST_BYTES_MAX;

/// Every metric the node exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Seconds from a command's submission to the engine until its acknowledgement (durable).
    pub order_latency: Histogram,
    /// Commands waiting for the engine thread.
    pub engine_queue_depth: IntGauge,
    /// Batches applied and waiting for their journal sync.
    pub ack_queue_depth: IntGauge,
    /// Commands per group-commit batch.
    pub batch_size: Histogram,
    /// Commands applied.
    pub commands: IntCounter,
    /// Refusals by stable code.
    pub rejects: IntCounterVec,
    /// Last durable journal sequence number.
    pub durable_seq: IntGauge,
    /// Open streaming RPCs.
    pub open_streams: IntGauge,
    /// Durable engine seq minus the seq whose trades are all settled on the ledger.
    pub settlement_lag_seq: IntGauge,
    /// Age of the oldest trade waiting for settlement, in seconds (0 when none waits).
    pub settlement_lag_seconds: Gauge,
    /// Trades the gate or the ledger did not accept yet (retried).
    pub settlement_blocked_trades: IntGauge,
    /// Height of the node's ledger.
    pub ledger_height: IntGauge,
    /// Transfers settled on the ledger.
    pub settled_transfers: IntCounter,
    /// Consortium mode: batches submitted to the validators, by outcome (`committed`,
    /// `failed`).
    pub consortium_batches: IntCounterVec,
    /// Consortium mode: from the first submission of a batch until its block is in the
    /// node's copy of the chain.
    pub consortium_commit_seconds: Histogram,
    /// Consortium mode: pulled blocks that did not verify (a faulty validator served them).
    pub consortium_bad_blocks: IntCounter,
}

impl Metrics {
    /// Registers every metric in a new registry.
    pub fn new() -> anyhow::Result<Metrics> {
        let registry = Registry::new_custom(Some("rempart".into()), None)?;
        let order_latency = Histogram::with_opts(
            HistogramOpts::new(
                "order_latency_seconds",
                "Submission to the engine until durable acknowledgement",
            )
            .buckets(vec![
                25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3,
                100e-3, 250e-3, 1.0,
            ]),
        )?;
        let engine_queue_depth = IntGauge::new(
            "engine_queue_depth",
            "Commands waiting for the engine thread",
        )?;
        let ack_queue_depth = IntGauge::new(
            "ack_queue_depth",
            "Applied batches waiting for their journal sync",
        )?;
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("journal_batch_commands", "Commands per group-commit batch")
                .buckets(prometheus::exponential_buckets(1.0, 4.0, 8)?),
        )?;
        let commands = IntCounter::new("commands_total", "Commands applied by the engine")?;
        let rejects = IntCounterVec::new(
            Opts::new("rejects_total", "Refused requests by stable reject code"),
            &["code"],
        )?;
        let durable_seq = IntGauge::new("journal_durable_seq", "Last durable journal sequence")?;
        let open_streams = IntGauge::new("open_streams", "Open streaming RPCs")?;
        let settlement_lag_seq = IntGauge::new(
            "settlement_lag_seq",
            "Durable engine seq minus the seq whose trades are all settled on the ledger",
        )?;
        let settlement_lag_seconds = Gauge::new(
            "settlement_lag_seconds",
            "Age of the oldest trade waiting for settlement",
        )?;
        let settlement_blocked_trades = IntGauge::new(
            "settlement_blocked_trades",
            "Trades the gate or the ledger did not accept yet (retried)",
        )?;
        let ledger_height = IntGauge::new("ledger_height", "Height of the node's ledger")?;
        let settled_transfers =
            IntCounter::new("settled_transfers_total", "Transfers settled on the ledger")?;
        registry.register(Box::new(order_latency.clone()))?;
        registry.register(Box::new(engine_queue_depth.clone()))?;
        registry.register(Box::new(ack_queue_depth.clone()))?;
        registry.register(Box::new(batch_size.clone()))?;
        registry.register(Box::new(commands.clone()))?;
        registry.register(Box::new(rejects.clone()))?;
        registry.register(Box::new(durable_seq.clone()))?;
        registry.register(Box::new(open_streams.clone()))?;
        registry.register(Box::new(settlement_lag_seq.clone()))?;
        registry.register(Box::new(settlement_lag_seconds.clone()))?;
        registry.register(Box::new(settlement_blocked_trades.clone()))?;
        registry.register(Box::new(ledger_height.clone()))?;
        let consortium_batches = IntCounterVec::new(
            Opts::new(
                "consortium_batches_total",
                "Batches submitted to the consortium's validators, by outcome",
            ),
            &["outcome"],
        )?;
        let consortium_commit_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "consortium_commit_seconds",
                "First submission of a batch until its block is in the node's copy",
            )
            .buckets(vec![
                5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
        )?;
        let consortium_bad_blocks = IntCounter::new(
            "consortium_bad_blocks_total",
            "Blocks pulled from a validator that did not verify",
        )?;
        registry.register(Box::new(settled_transfers.clone()))?;
        registry.register(Box::new(consortium_batches.clone()))?;
        registry.register(Box::new(consortium_commit_seconds.clone()))?;
        registry.register(Box::new(consortium_bad_blocks.clone()))?;
        Ok(Metrics {
            registry,
            order_latency,
            engine_queue_depth,
            ack_queue_depth,
            batch_size,
            commands,
            rejects,
            durable_seq,
            open_streams,
            settlement_lag_seq,
            settlement_lag_seconds,
            settlement_blocked_trades,
            ledger_height,
            settled_transfers,
            consortium_batches,
            consortium_commit_seconds,
            consortium_bad_blocks,
        })
    }

    /// Counts one refusal.
    pub fn reject(&self, code: u32) {
        self.rejects.with_label_values(&[&code.to_string()]).inc();
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` turns true.
pub async fn serve(listener: TcpListener, metrics: Metrics, mut shutdown: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let Ok((mut stream, _)) = accepted else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut head = vec![0u8; METRICS_REQUEST_BYTES_MAX];
            let mut len = 0;
            while len < head.len() {
                match stream.read(&mut head[len..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => len += n,
                }
                if head[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let head = String::from_utf8_lossy(&head[..len]);
            let response = if head.starts_with("GET /metrics ") {
                let body = metrics.render();
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                r.extend_from_slice(&body);
                r
            } else {
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec()
            };
            let _ = stream.write_all(&response).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// Binds the metrics listener.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("metrics listener {addr}: {e}"))
}
