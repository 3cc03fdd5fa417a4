//! Running one validator from its configuration file: what `rempart-validator` and
//! `rempart validator` (which adds the client API) share.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use settlement::ledger::Batch;
use settlement::replica::Replica;
use settlement::store::BlockStore;
use settlement::store::file::FileStore;
use settlement::store::pg::PgStore;

use crate::config::ValidatorConfig;
use crate::mempool::Mempool;
use crate::node::{self, NodeStatus, RunningNode};
use crate::signing::ValidatorSigner;
use crate::workload::Workload;

/// The workload batches not yet in the chain `store` holds (so a restarted validator does not
/// offer settled batches again).
fn pending_workload<S: BlockStore>(
    config: &ValidatorConfig,
    store: S,
) -> anyhow::Result<Vec<Batch>> {
    let Some(workload) = &config.workload else {
        return Ok(Vec::new());
    };
    let generator = Workload::new(workload.accounts);
    let batches = generator.batches(workload.transfers, workload.batch);
    let genesis = config.genesis()?;
    let replica = Replica::open(&genesis, store, 1)?;
    let ledger = replica.ledger();
    Ok(batches
        .into_iter()
        .filter(|batch| match batch {
            Batch::CreateAccounts(accounts) => accounts
                .first()
                .is_some_and(|a| ledger.account(a.id).is_none()),
            Batch::CreateTransfers { entries, .. } => entries
                .first()
                .is_some_and(|e| ledger.transfer(e.transfer.id).is_none()),
        })
        .collect())
}

fn write_status(path: &Path, status: &NodeStatus) -> std::io::Result<()> {
    let json = serde_json::json!({
        "height": status.height,
        "state_hash": hex::encode(status.state_hash),
        "head_hash": hex::encode(status.head_hash),
        "transfers": status.transfers,
        "failed": status.failed,
    });
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json.to_string())?;
    std::fs::rename(&tmp, path)
}

/// Logs to stderr, filtered by `RUST_LOG` (default: warnings).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Starts the validator `config` describes: opens its store (embedded or PostgreSQL), queues
/// its test workload if any, and starts the node.
pub async fn start(config: &ValidatorConfig) -> anyhow::Result<RunningNode> {
    match &config.postgres {
        // The store's synchronous calls run outside the async runtime's context
        // (`block_in_place`), as the node makes all of its store calls.
        Some(pg) => {
            let open = || {
                PgStore::connect(&pg.url, &pg.schema)
                    .with_context(|| format!("PostgreSQL block store (schema {})", pg.schema))
            };
            let pending = tokio::task::block_in_place(|| pending_workload(config, open()?))?;
            let store = tokio::task::block_in_place(open)?;
            start_with(config, pending, store).await
        }
        None => {
            let store_dir = config.data_dir.join("store");
            let pending = pending_workload(config, FileStore::open(&store_dir)?)?;
            start_with(config, pending, FileStore::open(&store_dir)?).await
        }
    }
}

async fn start_with<S: BlockStore + Send + 'static>(
    config: &ValidatorConfig,
    pending: Vec<Batch>,
    store: S,
) -> anyhow::Result<RunningNode> {
    let genesis = config.genesis()?;
    let signer = ValidatorSigner::from_file(&config.key_file)?;
    let mempool = Arc::new(Mempool::new());
    for batch in pending {
        // A refusal here means the workload is larger than the mempool: the rest is dropped.
        if let Err(refusal) = mempool.submit(batch) {
            tracing::warn!(code = refusal.code(), "{}", refusal.message());
            break;
        }
    }
    let running = node::start(
        &genesis,
        config.validator_id,
        signer,
        store,
        config.node_options()?,
        mempool,
    )
    .await?;
    Ok(running)
}

/// Follows `running`'s status: rewrites the configured status file after every commit, and
/// returns an error when the validator stops.
pub async fn follow(config: &ValidatorConfig, running: &RunningNode) -> anyhow::Result<()> {
    let mut status = running.status.clone();
    loop {
        let current = status.borrow_and_update().clone();
        if let Some(path) = &config.status_file {
            write_status(path, &current).context("write status file")?;
        }
        if let Some(reason) = current.failed {
            anyhow::bail!("validator stopped: {reason}");
        }
        if status.changed().await.is_err() {
            anyhow::bail!("validator stopped");
        }
    }
}
