//! `consensus-bench --validators 4 --transfers 200000 [--rate R --duration-s D]
//! [--catch-up-down-s S]`: runs a cluster of validators in this process and prints the figures
//! as one JSON object (see `rempart_consensus::bench`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use rempart_consensus::bench::{BenchOptions, run};

#[derive(Debug, Parser)]
#[command(
    name = "consensus-bench",
    about = "Consensus throughput and commit latency"
)]
struct Args {
    /// Validators.
    #[arg(long, default_value_t = 4)]
    validators: usize,
    /// Transfers to settle.
    #[arg(long, default_value_t = 200_000)]
    transfers: u64,
    /// Transfers per submitted batch.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Transfers per block at most.
    #[arg(long, default_value_t = 4_096)]
    block_entries: usize,
    /// Closed loop: transfers in flight at most.
    #[arg(long, default_value_t = 2_048)]
    in_flight: usize,
    /// Open loop: transfers offered per second (0: closed loop).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Measured window in seconds (default: settle --transfers).
    #[arg(long)]
    duration_s: Option<u64>,
    /// Warm-up before the window, seconds.
    #[arg(long, default_value_t = 5)]
    warmup_s: u64,
    /// Catch-up mode: stop the last validator this many seconds at the start of the window.
    #[arg(long)]
    catch_up_down_s: Option<u64>,
    /// Check every signature only when its block is executed (no pre-verification).
    #[arg(long)]
    no_preverify: bool,
    /// Directory for the validators' stores (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 900)]
    deadline_s: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let options = BenchOptions {
        validators: args.validators,
        transfers: args.transfers,
        batch: args.batch,
        block_entries_max: args.block_entries,
        in_flight_max: args.in_flight,
        rate_per_sec: args.rate,
        duration: args.duration_s.map(Duration::from_secs),
        warmup: Duration::from_secs(args.warmup_s),
        catch_up_down: args.catch_up_down_s.map(Duration::from_secs),
        preverify: !args.no_preverify,
        dir: args.dir,
        deadline: Duration::from_secs(args.deadline_s),
        ..BenchOptions::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let report = runtime.block_on(run(&options))?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
