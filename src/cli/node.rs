//! `rempart demo`, `rempart node --config FILE` and `rempart bench-api`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use crate::node::gateway::RateLimits;
use crate::node::{self, NodeOptions, TlsFiles};

/// `rempart demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// gRPC listen address (port 0 picks a free port; the chosen one is printed).
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Prometheus metrics listen address.
    #[arg(long, default_value = "127.0.0.1:9184")]
    pub metrics_listen: SocketAddr,
    /// Journal, snapshots and API keys.
    #[arg(long, default_value = "./rempart-demo-data")]
    pub data_dir: PathBuf,
    /// TLS certificate (PEM); with --tls-key.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA whose client certificates are required (mutual TLS).
    #[arg(long, requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// RPC calls per second per API key.
    #[arg(long, default_value_t = RateLimits::default().calls_per_key)]
    pub calls_per_key: u32,
    /// RPC calls per second per client IP.
    #[arg(long, default_value_t = RateLimits::default().calls_per_ip)]
    pub calls_per_ip: u32,
    /// Orders per second per account.
    #[arg(long, default_value_t = RateLimits::default().orders_per_account)]
    pub orders_per_account: u32,
    /// OpenTelemetry collector (OTLP over gRPC, e.g. http://127.0.0.1:4317); off when unset.
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` is read when this is absent.
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
    /// Async worker threads for the API (default: one per core). Fewer than the cores leave
    /// the engine and journal threads a core of their own.
    #[arg(long, value_parser = parse_api_threads)]
    pub api_threads: Option<usize>,
    /// Settle on a consortium ledger instead of the node's own: its genesis file (which must
    /// list this node's gate key; see --print-gate-key). With --consortium-validators.
    #[arg(long, requires = "consortium_validators")]
    pub consortium_genesis: Option<PathBuf>,
    /// The consortium validators' API addresses (`rempart validator`'s `api_listen`),
    /// comma-separated.
    #[arg(long, value_delimiter = ',', requires = "consortium_genesis")]
    pub consortium_validators: Vec<String>,
    /// CA of the validators' API certificates (PEM): talk to them over TLS.
    #[arg(long, requires = "consortium_genesis")]
    pub consortium_ca: Option<PathBuf>,
    /// This node's client certificate for the validators (PEM; mutual TLS), with
    /// --consortium-key.
    #[arg(long, requires_all = ["consortium_ca", "consortium_key"])]
    pub consortium_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, requires = "consortium_cert")]
    pub consortium_key: Option<PathBuf>,
    /// Name in the validators' certificates, if not the address's host.
    #[arg(long, requires = "consortium_ca")]
    pub consortium_domain: Option<String>,
    /// Print this node's compliance gate key (hex; created in the data directory if new) and
    /// exit: what a consortium lists in its genesis `gate_keys`.
    #[arg(long)]
    pub print_gate_key: bool,
}

/// `rempart node` options.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// TOML configuration file (environment variables REMPART_* override it).
    #[arg(long)]
    pub config: PathBuf,
    /// Print the node's compliance gate key (hex; created in its data directory if new) and
    /// exit: what a consortium lists in its genesis `gate_keys`.
    #[arg(long)]
    pub print_gate_key: bool,
}

/// `--api-threads`: the node file's rule (`node::validate_api_threads`).
fn parse_api_threads(text: &str) -> Result<usize, String> {
    let n = text
        .parse()
        .map_err(|_| format!("a whole number of threads, not {text:?}"))?;
    node::validate_api_threads(n).map_err(|e| e.to_string())
}

fn print_gate_key(data_dir: &std::path::Path, demo: bool) -> anyhow::Result<()> {
    let key = node::compliance::gate_public_key_of(data_dir, demo, &|k| std::env::var(k).ok())?;
    println!("{}", hex::encode(key));
    Ok(())
}

fn serve(options: NodeOptions) -> anyhow::Result<()> {
    let telemetry = crate::telemetry::init(
        crate::telemetry::endpoint_from(options.otlp_endpoint.as_deref()).as_deref(),
    )?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let api_threads = options.api_threads.unwrap_or(cores);
    tracing::info!(cores, api_threads, "API runtime");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(api_threads)
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(async move {
        let data_dir = options.data_dir.clone();
        let running = node::start(options).await?;
        node::print_banner(&running, &data_dir);
        node::wait_for_signal().await;
        tracing::info!("shutting down");
        running.shutdown().await?;
        tracing::info!("stopped cleanly");
        Ok(())
    });
    drop(runtime);
    // Outside any runtime: the exporter's own runtime is dropped here.
    telemetry.shutdown();
    outcome
}

/// Runs the demo node until SIGTERM or ctrl-c.
pub fn demo(args: DemoArgs) -> anyhow::Result<()> {
    if args.print_gate_key {
        return print_gate_key(&args.data_dir, true);
    }
    let consortium = match args.consortium_genesis {
        Some(genesis_file) => {
            let options = node::consortium::ConsortiumOptions {
                genesis_file,
                validators: args.consortium_validators,
                tls: args
                    .consortium_ca
                    .map(|ca| node::consortium::ConsortiumTls {
                        ca,
                        cert: args.consortium_cert,
                        key: args.consortium_key,
                        domain: args.consortium_domain,
                    }),
            };
            options.validate()?;
            Some(options)
        }
        None => None,
    };
    let tls = args.tls_cert.map(|cert| TlsFiles {
        cert,
        key: args.tls_key.unwrap_or_default(),
        client_ca: args.client_ca,
    });
    serve(NodeOptions {
        listen: args.listen,
        metrics_listen: args.metrics_listen,
        data_dir: args.data_dir,
        tls,
        limits: RateLimits {
            calls_per_key: args.calls_per_key,
            calls_per_ip: args.calls_per_ip,
            orders_per_account: args.orders_per_account,
        },
        demo: true,
        custody_pkcs11: None,
        otlp_endpoint: args.otlp_endpoint,
        postgres_url: None,
        consortium,
        api_threads: args.api_threads,
    })
}

/// Runs a node from a configuration file.
pub fn node(args: NodeArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.config)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.config.display()))?;
    if args.print_gate_key {
        // Before the consortium's genesis exists (it is made with this key): only the data
        // directory is read.
        let data_dir = node::config::data_dir_of(&text, &|k| std::env::var(k).ok())?;
        return print_gate_key(&data_dir, false);
    }
    match node::config::load_launch(&text, &|k| std::env::var(k).ok())? {
        node::config::Launch::Gateway(options) => serve(*options),
        node::config::Launch::Validator(config) => {
            crate::cli::validator::run(crate::cli::validator::ValidatorArgs { config })
        }
    }
}
