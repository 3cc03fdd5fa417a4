//! `rempart ledger …` subcommands.
//!
//! - `verify --data DIR [--genesis FILE] [--postgres URL --schema S]`: checks a store directory
//!   (`genesis.json`, `blocks.log`, `applied`), a `rempart-validator`'s data_dir (its store
//!   under `store/`, the genesis given by `--genesis`), a node's (`rempart demo`/`node`: the
//!   same files under `DIR/ledger/`), or a validator's PostgreSQL schema: the
//!   genesis membership certificates, every block's CRC, hash link, commit certificate and
//!   transactions root, and replays balances from genesis, checking each block's state hash
//!   and the ledger invariants. Prints one JSON object; on failure exits non-zero with an error
//!   naming the bad height. Opens the store read-only (safe beside a running node).
//! - `sample --data DIR --blocks N`: writes a sample chain certified by a 4-validator test
//!   consortium (deterministic test keys), to try `verify` on.
//!
//! - `bench --validators N --transfers T [--rate R --duration-s D] [--catch-up-down-s S]`:
//!   starts a local Malachite cluster and prints its settlement figures (see
//!   `rempart_consensus::bench`).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use settlement::membership::GenesisConfig;
use settlement::membership::fixture::Consortium;
use settlement::replica::verify_chain;
use settlement::store::BlockStore;
use settlement::store::file::FileStore;

/// Name of the genesis configuration in a data directory.
const GENESIS_FILE: &str = "genesis.json";
/// Where a `rempart-validator` keeps its embedded store, under its data_dir.
const VALIDATOR_STORE_DIR: &str = "store";
/// Largest genesis file read.
const GENESIS_BYTES_MAX: u64 = 4 * 1024 * 1024;
/// Most blocks `sample` writes.
const SAMPLE_BLOCKS_MAX: u64 = 10_000;

/// The `ledger` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Verifies a data directory: chain, certificates, balances replayed from genesis.
    Verify {
        /// The data directory: a store directory (genesis.json, blocks.log, applied), a
        /// `rempart-validator`'s data_dir (its store in `store/`), or a node's (`ledger/`).
        #[arg(long)]
        data: PathBuf,
        /// The genesis configuration, if it is not `genesis.json` in the data directory (a
        /// `rempart-validator` keeps it where its configuration's `genesis_file` says).
        #[arg(long)]
        genesis: Option<PathBuf>,
        /// Verify the chain a validator keeps in PostgreSQL (a libpq connection string)
        /// instead of the embedded store; needs --schema.
        #[arg(long, requires = "schema")]
        postgres: Option<String>,
        /// The validator's PostgreSQL schema.
        #[arg(long, requires = "postgres")]
        schema: Option<String>,
    },
    /// Writes a sample chain (test consortium, test keys) into an empty data directory.
    Sample {
        /// The directory to create.
        #[arg(long)]
        data: PathBuf,
        /// Number of blocks.
        #[arg(long, default_value_t = 10)]
        blocks: u64,
    },
    /// Writes a local test consortium into an empty directory: `genesis.json` (the built-in
    /// TEST consortium's CAs and validators, whose keys are public, plus each --gate-key), and
    /// per validator `key-N.hex` and `validator-N.json` (127.0.0.1, free ports, client API on);
    /// prints one JSON line naming them. For development and measurements, never production.
    Testnet {
        /// The directory to create (must not hold a genesis.json).
        #[arg(long)]
        dir: PathBuf,
        /// Validators (n = 3f+1 tolerates f faults).
        #[arg(long, default_value_t = 4)]
        validators: usize,
        /// A compliance gate key (hex Ed25519) to list besides the test gate's: a gateway's,
        /// from `rempart demo --print-gate-key`. Repeatable.
        #[arg(long = "gate-key")]
        gate_keys: Vec<String>,
        /// Entries a block holds at most (the validators' `block_entries_max`).
        #[arg(long, default_value_t = rempart_consensus::node::BLOCK_ENTRIES_DEFAULT)]
        block_entries_max: usize,
    },
    /// Starts a local cluster of validators on 127.0.0.1 (Malachite consensus), settles signed,
    /// gated transfers through it and prints one JSON line with `transfers_per_sec`,
    /// `commit_p50_ms` and `commit_p99_ms`.
    Bench {
        /// Validators in the cluster (n = 3f+1 tolerates f faults).
        #[arg(long, default_value_t = 4)]
        validators: usize,
        /// Transfers to settle (with --duration-s: to prepare at least).
        #[arg(long, default_value_t = 200_000)]
        transfers: u64,
        /// Open loop: transfers offered per second (0: closed loop, bounded in flight).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Measured window in seconds, after a 5 s warm-up (default: settle --transfers).
        #[arg(long)]
        duration_s: Option<u64>,
        /// Catch-up mode: stop one validator this many seconds under load, restart it and
        /// report `catch_up_s` (needs --duration-s).
        #[arg(long)]
        catch_up_down_s: Option<u64>,
    },
}

/// Runs one subcommand.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Verify {
            data,
            genesis,
            postgres,
            schema,
        } => verify(&data, genesis.as_deref(), postgres.zip(schema)),
        Command::Sample { data, blocks } => sample(&data, blocks),
        Command::Testnet {
            dir,
            validators,
            gate_keys,
            block_entries_max,
        } => testnet(&dir, validators, &gate_keys, block_entries_max),
        Command::Bench {
            validators,
            transfers,
            rate,
            duration_s,
            catch_up_down_s,
        } => bench(validators, transfers, rate, duration_s, catch_up_down_s),
    }
}

/// Runs the consensus benchmark. Out-of-range sizes are refused here rather than clamped, so
/// the printed figures always describe the cluster that was asked for.
fn bench(
    validators: usize,
    transfers: u64,
    rate: u64,
    duration_s: Option<u64>,
    catch_up_down_s: Option<u64>,
) -> anyhow::Result<()> {
    use std::time::Duration;

    use rempart_consensus::bench::{
        BENCH_DURATION_MAX, BENCH_RATE_MAX, BENCH_TRANSFERS_MAX, BenchOptions,
    };
    use rempart_consensus::cluster::CLUSTER_VALIDATORS_MAX;
    if !(1..=CLUSTER_VALIDATORS_MAX).contains(&validators) {
        bail!("--validators must be between 1 and {CLUSTER_VALIDATORS_MAX}, got {validators}");
    }
    if !(1..=BENCH_TRANSFERS_MAX).contains(&transfers) {
        bail!("--transfers must be between 1 and {BENCH_TRANSFERS_MAX}, got {transfers}");
    }
    if rate > BENCH_RATE_MAX {
        bail!("--rate must be at most {BENCH_RATE_MAX}, got {rate}");
    }
    let duration_max = BENCH_DURATION_MAX.as_secs();
    if let Some(d) = duration_s
        && !(1..=duration_max).contains(&d)
    {
        bail!("--duration-s must be between 1 and {duration_max}, got {d}");
    }
    if let Some(down) = catch_up_down_s {
        if duration_s.is_none() {
            bail!("--catch-up-down-s needs --duration-s");
        }
        if !(1..=duration_max).contains(&down) {
            bail!("--catch-up-down-s must be between 1 and {duration_max}, got {down}");
        }
        if validators < 4 {
            bail!("--catch-up-down-s needs at least 4 validators, got {validators}");
        }
    }
    let options = BenchOptions {
        validators,
        transfers,
        rate_per_sec: rate,
        duration: duration_s.map(Duration::from_secs),
        catch_up_down: catch_up_down_s.map(Duration::from_secs),
        ..BenchOptions::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime
        .block_on(rempart_consensus::bench::run(&options))
        .context("running the consensus benchmark")?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn read_genesis(path: &Path) -> anyhow::Result<GenesisConfig> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    if size > GENESIS_BYTES_MAX {
        bail!(
            "{} is {size} bytes, above the {GENESIS_BYTES_MAX}-byte limit",
            path.display()
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The directory holding the ledger: `data` itself (a store directory), `data/ledger` (a
/// node's) or `data/store` (a `rempart-validator`'s).
fn ledger_dir(data: &Path) -> PathBuf {
    let node = data.join(crate::node::settle::LEDGER_DIR);
    let validator = data.join(VALIDATOR_STORE_DIR);
    if data.join(GENESIS_FILE).exists() || data.join(settlement::store::file::LOG_FILE).exists() {
        data.to_path_buf()
    } else if node.join(GENESIS_FILE).exists() {
        node
    } else if validator.join(settlement::store::file::LOG_FILE).exists() {
        validator
    } else {
        data.to_path_buf()
    }
}

fn verify(
    data: &Path,
    genesis: Option<&Path>,
    postgres: Option<(String, String)>,
) -> anyhow::Result<()> {
    let data = &ledger_dir(data);
    let genesis = match genesis {
        Some(path) => read_genesis(path)?,
        None => read_genesis(&data.join(GENESIS_FILE))?,
    };
    let report = match &postgres {
        Some((url, schema)) => {
            let store = settlement::store::pg::PgStore::connect(url, schema)
                .with_context(|| format!("opening the PostgreSQL block store (schema {schema})"))?;
            verify_chain(&genesis, store)
        }
        None => {
            let store = FileStore::open_read_only(data)
                .with_context(|| format!("opening the block store in {}", data.display()))?;
            verify_chain(&genesis, store)
        }
    }
    .context("ledger verification failed")?;
    let out = serde_json::json!({
        "ok": true,
        "chain_id": genesis.chain_id,
        "height": report.height,
        "head_hash": hex::encode(report.head_hash),
        "state_hash": hex::encode(report.state_hash),
        "accounts": report.accounts,
        "transfers": report.transfers,
        "data": data.display().to_string(),
        "store": match &postgres {
            Some((_, schema)) => format!("postgresql schema {schema}"),
            None => "embedded".to_owned(),
        },
    });
    println!("{out}");
    Ok(())
}

/// Largest `--block-entries-max` of a testnet.
const TESTNET_BLOCK_ENTRIES_MAX: usize = 65_536;

fn testnet(
    dir: &Path,
    validators: usize,
    gate_keys: &[String],
    block_entries_max: usize,
) -> anyhow::Result<()> {
    use rempart_consensus::cluster::{CLUSTER_VALIDATORS_MAX, free_port, validator_seed};
    use rempart_consensus::config::ValidatorConfig;
    if !(1..=CLUSTER_VALIDATORS_MAX).contains(&validators) {
        bail!("--validators must be between 1 and {CLUSTER_VALIDATORS_MAX}, got {validators}");
    }
    if !(1..=TESTNET_BLOCK_ENTRIES_MAX).contains(&block_entries_max) {
        bail!("--block-entries-max must be between 1 and {TESTNET_BLOCK_ENTRIES_MAX}");
    }
    if dir.join(GENESIS_FILE).exists() {
        bail!("{} already holds a genesis.json", dir.display());
    }
    let mut genesis = Consortium::new(validators).genesis;
    for key in gate_keys {
        let bytes = hex::decode(key.trim()).with_context(|| format!("--gate-key {key:?}"))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("--gate-key must be 32 bytes of hex"))?;
        genesis.gate_keys.push(key);
    }
    genesis.verify()?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(
        dir.join(GENESIS_FILE),
        serde_json::to_string_pretty(&genesis)?,
    )?;
    let p2p = (0..validators)
        .map(|_| free_port())
        .collect::<std::io::Result<Vec<u16>>>()?;
    let api = (0..validators)
        .map(|_| free_port().map(|p| format!("127.0.0.1:{p}")))
        .collect::<std::io::Result<Vec<String>>>()?;
    let addr = |port: u16| format!("/ip4/127.0.0.1/tcp/{port}");
    let mut configs = Vec::new();
    for index in 0..validators {
        let n = index + 1;
        std::fs::write(
            dir.join(format!("key-{n}.hex")),
            hex::encode(validator_seed(index)),
        )?;
        let config = serde_json::json!({
            "validator_id": n as u64,
            "key_file": format!("key-{n}.hex"),
            "genesis_file": GENESIS_FILE,
            "data_dir": format!("data-{n}"),
            "listen": addr(p2p[index]),
            "peers": (0..validators).filter(|j| *j != index).map(|j| addr(p2p[j])).collect::<Vec<_>>(),
            "api_listen": api[index],
            "block_entries_max": block_entries_max,
        });
        // Written in the validator's own format: parse it back to be sure.
        serde_json::from_value::<ValidatorConfig>(config.clone())
            .context("a testnet validator configuration")?;
        let path = dir.join(format!("validator-{n}.json"));
        std::fs::write(&path, config.to_string())?;
        configs.push(path.display().to_string());
    }
    println!(
        "{}",
        serde_json::json!({
            "genesis": dir.join(GENESIS_FILE).display().to_string(),
            "configs": configs,
            "api": api,
        })
    );
    Ok(())
}

fn sample(data: &Path, blocks: u64) -> anyhow::Result<()> {
    if blocks == 0 || blocks > SAMPLE_BLOCKS_MAX {
        bail!("--blocks must be between 1 and {SAMPLE_BLOCKS_MAX}");
    }
    if data.join(GENESIS_FILE).exists() {
        bail!("{} already holds a ledger", data.display());
    }
    let consortium = Consortium::new(4);
    let chain = settlement::testkit::sample_chain(&consortium, blocks);
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let mut store = FileStore::open(data)?;
    let effects = settlement::ledger::BlockEffects::default();
    for block in &chain {
        store.append(block, &effects)?;
    }
    let genesis = serde_json::to_string_pretty(&consortium.genesis)?;
    std::fs::write(data.join(GENESIS_FILE), genesis)
        .with_context(|| format!("writing {}", data.join(GENESIS_FILE).display()))?;
    println!(
        "{}",
        serde_json::json!({ "blocks": store.applied_height()?, "data": data.display().to_string() })
    );
    Ok(())
}
