//! `rempart-validator --config validator.json`: one consortium validator in its own process
//! (the deployment shape, and what the crash tests kill and restart).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Parser;
use rempart_consensus::config::ValidatorConfig;
use rempart_consensus::runner;

#[derive(Debug, Parser)]
#[command(
    name = "rempart-validator",
    about = "Run one consortium ledger validator"
)]
struct Args {
    /// The validator's configuration file (JSON).
    #[arg(long)]
    config: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    runner::init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(run(&args.config))
}

async fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = ValidatorConfig::load(config_path)?;
    let running = runner::start(&config).await?;
    runner::follow(&config, &running).await
}
