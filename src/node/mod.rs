//! The exchange node: one process holding the engine path (sequencer, engine thread, journal),
//! the gRPC API in front of it, and the metrics endpoint.
//!
//! # Layout
//! - `core`: sequencer, engine thread, group-commit acknowledgement.
//! - `hub`: the read model (books, trades, orders) and market-data fan-out.
//! - `auth`: API keys (Argon2id at rest, keyed-hash cache), roles.
//! - `gateway`: the tower layer (rate limits per IP and key, authentication), stream limits.
//! - `services`: the `rempart.v1` services; `compliance`: kyc-aml wired in (gate, KYC store,
//!   cases, the Compliance service).
//! - `custody`: custody wired in (key store, deposit addresses, deposits and withdrawals through
//!   the gate, policy and quorum, proof of reserves, the Custody service).
//! - `settle`: the single-validator ledger (trades and transfers settled as gated, signed,
//!   certified blocks), the Ledger service and the ledger half of Accounts.
//! - `errors`: reject codes to gRPC statuses; `decimal`: decimal strings at the edge.
//! - `metrics`: Prometheus; `config`: the `node --config` file; `limits`: every bound.

pub mod auth;
pub mod compliance;
pub mod config;
pub mod consortium;
pub mod core;
pub mod custody;
pub mod decimal;
pub mod errors;
pub mod gateway;
pub mod hub;
pub mod limits;
pub mod metrics;
pub mod services;
pub mod settle;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use matching_engine::{ASSET_CITY, ASSET_EUR, ASSET_LCL, CommandKind, demo_markets};
use rempart_proto::v1 as pb;
use rempart_proto::v1::Role;
use tokio::sync::watch;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use self::gateway::{Gateway, GatewayLayer, RateLimits};
use self::limits::MESSAGE_BYTES_MAX;
use self::services::Ctx;

/// TLS files; with `client_ca`, clients must present a certificate it signed (mutual TLS).
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// A server's TLS configuration from PEM files: its identity and, with `client_ca`, the CA
/// every client must present a certificate from (mutual TLS).
pub fn server_tls(tls: &TlsFiles) -> anyhow::Result<ServerTlsConfig> {
    let cert = std::fs::read(&tls.cert)
        .map_err(|e| anyhow::anyhow!("TLS certificate {}: {e}", tls.cert.display()))?;
    let key = std::fs::read(&tls.key)
        .map_err(|e| anyhow::anyhow!("TLS key {}: {e}", tls.key.display()))?;
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if let Some(ca) = &tls.client_ca {
        let ca =
            std::fs::read(ca).map_err(|e| anyhow::anyhow!("client CA {}: {e}", ca.display()))?;
        config = config.client_ca_root(Certificate::from_pem(ca));
    }
    Ok(config)
}

/// How to run a node.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub data_dir: PathBuf,
    pub tls: Option<TlsFiles>,
    pub limits: RateLimits,
    /// Seed the demo markets, accounts and keys into an empty data directory.
    pub demo: bool,
    /// OpenTelemetry OTLP/gRPC collector (`http://host:4317`); `None` = no export.
    pub otlp_endpoint: Option<String>,
    /// PKCS#11 module and token label holding custody's keys; `None` = the software store (or
    /// the `REMPART_CUSTODY_PKCS11_*` variables).
    pub custody_pkcs11: Option<(PathBuf, String)>,
    /// PostgreSQL for the compliance (kyc-aml) store; `None` = the embedded SQLite store.
    /// `REMPART_KYC_POSTGRES` overrides it.
    pub postgres_url: Option<compliance::DbUrl>,
    /// Settle on this consortium (its validators' API) instead of the node's own
    /// single-validator ledger.
    pub consortium: Option<consortium::ConsortiumOptions>,
    /// Async worker threads of the API runtime (gRPC, metrics, background tasks); `None` =
    /// one per core. Read by whoever builds the runtime (`rempart demo` and `rempart node`),
    /// before [`start`]. On a host with cores to spare, fewer workers than cores leave the
    /// engine and journal threads a core of their own (ARCHITECTURE.md, "the API runtime's
    /// size").
    pub api_threads: Option<usize>,
}

/// Checks a configured worker count (1 to [`limits::API_THREADS_MAX`]).
pub fn validate_api_threads(n: usize) -> anyhow::Result<usize> {
    if (1..=limits::API_THREADS_MAX).contains(&n) {
        Ok(n)
    } else {
        anyhow::bail!(
            "api_threads must be between 1 and {}, not {n}",
            limits::API_THREADS_MAX
        )
    }
}

/// A demo party: name, account, roles, deposits (asset, minor units).
pub type DemoParty = (&'static str, u64, &'static [Role], &'static [(u16, u64)]);

/// The demo's parties; each gets an API key at the first start.
pub const DEMO_PARTIES: &[DemoParty] = &[
    ("admin", 1, &[Role::Admin], &[]),
    (
        "alice",
        1001,
        &[Role::Trader],
        &[
            (ASSET_CITY, 10_000_000 * 1_000_000),
            (ASSET_EUR, 1_000_000_000 * 100),
            (ASSET_LCL, 1_000_000_000 * 100),
        ],
    ),
    (
        "bob",
        1002,
        &[Role::Trader],
        &[
            (ASSET_CITY, 10_000_000 * 1_000_000),
            (ASSET_EUR, 1_000_000_000 * 100),
            (ASSET_LCL, 1_000_000_000 * 100),
        ],
    ),
    (
        "carol",
        1003,
        &[Role::Merchant],
        &[(ASSET_CITY, 1_000 * 1_000_000), (ASSET_EUR, 10_000 * 100)],
    ),
    ("approver", 1004, &[Role::CustodyApprover], &[]),
    ("compliance", 1005, &[Role::ComplianceOfficer], &[]),
    ("regulator", 1006, &[Role::Regulator], &[]),
];

/// A running node.
#[derive(Debug)]
pub struct RunningNode {
    pub grpc_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    /// (name, account, roles, token) of keys created at this start (shown once).
    pub new_keys: Vec<(String, u64, Vec<Role>, String)>,
    /// The compliance handle (gate, KYC store, cases).
    pub compliance: compliance::Compliance,
    shutdown_tx: watch::Sender<bool>,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    core: core::Core,
    threads: Option<core::CoreThreads>,
    ledger: settle::LedgerHub,
}

async fn seed_demo(core: &core::Core) -> anyhow::Result<()> {
    for cfg in demo_markets() {
        core.command(CommandKind::CreateMarket(cfg))
            .await
            .map_err(|s| anyhow::anyhow!("seeding market: {}", s.message()))?;
    }
    for (_, account, _, deposits) in DEMO_PARTIES {
        for (asset, amount) in deposits.iter() {
            core.command(CommandKind::Deposit {
                account: *account,
                asset: *asset,
                amount: *amount,
            })
            .await
            .map_err(|s| anyhow::anyhow!("seeding deposit: {}", s.message()))?;
        }
    }
    Ok(())
}

/// Starts a node: recovers the engine, seeds the demo when asked and the directory is new,
/// binds the listeners and serves until [`RunningNode::shutdown`].
pub async fn start(options: NodeOptions) -> anyhow::Result<RunningNode> {
    let metrics = metrics::Metrics::new()?;
    let (feed, feed_rx) = settle::feed(&options.data_dir)?;
    let (core, threads, fresh) = core::start(&options.data_dir, metrics.clone(), feed)?;
    // Compliance opens before any API key is made: a start that fails on it (no passphrase,
    // database down) must not create the first admin key, whose secret is shown only once.
    let postgres_url = options.postgres_url.clone();
    let compliance_env = move |k: &str| {
        std::env::var(k).ok().or_else(|| {
            (k == compliance::POSTGRES_ENV)
                .then(|| postgres_url.as_ref().map(|u| u.0.clone()))
                .flatten()
        })
    };
    let compliance =
        compliance::Compliance::open(&options.data_dir, options.demo, &compliance_env).await?;
    let keys = auth::KeyStore::open(&options.data_dir)?;
    let mut new_keys = Vec::new();
    if fresh && options.demo {
        seed_demo(&core).await?;
    }
    if keys.is_empty() {
        let parties: Vec<(&str, u64, &[Role])> = if options.demo {
            DEMO_PARTIES.iter().map(|p| (p.0, p.1, p.2)).collect()
        } else {
            vec![("admin", 1, &[Role::Admin][..])]
        };
        for (name, account, roles) in parties {
            let keys = keys.clone();
            let roles_v = roles.to_vec();
            let key = tokio::task::spawn_blocking(move || {
                keys.create(account, &roles_v, name, core::Core::now_us(), 0)
            })
            .await??;
            new_keys.push((
                name.to_string(),
                account,
                roles.to_vec(),
                key.token.to_string(),
            ));
        }
    }
    let gateway = Gateway::new(keys, options.limits, metrics.clone());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    {
        let gateway = gateway.clone();
        let mut rx = shutdown_rx.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(10)) => gateway.housekeeping(),
                    _ = rx.changed() => return,
                }
            }
        });
    }
    if options.demo {
        let parties: Vec<(u64, &str)> = DEMO_PARTIES
            .iter()
            .filter(|p| p.2.contains(&Role::Trader) || p.2.contains(&Role::Merchant))
            .map(|p| (p.1, p.0))
            .collect();
        compliance.onboard_demo(&parties).await?;
    }
    compliance.spawn_refresh(shutdown_rx.clone());
    let ledger = settle::LedgerHub::open(
        settle::LedgerOptions {
            data_dir: options.data_dir.clone(),
            compliance: compliance.clone(),
            metrics: metrics.clone(),
            runtime: tokio::runtime::Handle::current(),
            demo: options.demo,
            consortium: options.consortium.clone(),
        },
        feed_rx,
    )?;
    if options.demo {
        let deposits: Vec<(u64, u16, u64)> = DEMO_PARTIES
            .iter()
            .flat_map(|p| {
                p.3.iter()
                    .map(move |(asset, amount)| (p.1, *asset, *amount))
            })
            .collect();
        ledger.seed_demo_deposits(&compliance, &deposits).await?;
    }
    let custody = custody::CustodyHub::open(
        custody::CustodyOptions {
            data_dir: options.data_dir.clone(),
            whitelist_delay_s: if options.demo { 0 } else { 24 * 3600 },
            demo: options.demo,
            pkcs11: options.custody_pkcs11.clone(),
        },
        core.clone(),
        compliance.clone(),
        ledger.clone(),
    )?;
    if fresh && options.demo {
        let mut totals: Vec<(u16, u64)> = Vec::new();
        for (asset, amount) in DEMO_PARTIES.iter().flat_map(|p| p.3.iter()) {
            match totals.iter_mut().find(|t| t.0 == *asset) {
                Some(t) => t.1 += amount,
                None => totals.push((*asset, *amount)),
            }
        }
        custody.seed_reserves(&totals)?;
    }
    custody.spawn_driver(shutdown_rx.clone());
    let ctx = Ctx {
        core: core.clone(),
        gateway: gateway.clone(),
        shutdown: shutdown_rx.clone(),
        compliance: compliance.clone(),
        ledger: ledger.clone(),
        custody,
    };

    let metrics_listener = metrics::bind(options.metrics_listen).await?;
    let metrics_addr = metrics_listener.local_addr()?;
    tokio::spawn(metrics::serve(
        metrics_listener,
        metrics.clone(),
        shutdown_rx.clone(),
    ));

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    for name in rempart_proto::SERVICE_NAMES {
        health_reporter
            .set_service_status(*name, tonic_health::ServingStatus::Serving)
            .await;
    }
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(rempart_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(rempart_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let mut builder = Server::builder()
        .max_concurrent_streams(Some(limits::STREAMS_MAX as u32))
        .tcp_nodelay(true);
    if let Some(tls) = &options.tls {
        builder = builder.tls_config(server_tls(tls)?)?;
    }
    macro_rules! limited {
        ($server:expr) => {
            $server
                .max_decoding_message_size(MESSAGE_BYTES_MAX)
                .max_encoding_message_size(MESSAGE_BYTES_MAX)
        };
    }
    let router = builder
        .layer(GatewayLayer { gateway })
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(limited!(pb::trading_server::TradingServer::new(
            services::TradingSvc(ctx.clone())
        )))
        .add_service(limited!(pb::market_data_server::MarketDataServer::new(
            services::MarketDataSvc(ctx.clone())
        )))
        .add_service(limited!(pb::accounts_server::AccountsServer::new(
            services::AccountsSvc(ctx.clone())
        )))
        .add_service(limited!(pb::admin_server::AdminServer::new(
            services::AdminSvc(ctx.clone())
        )))
        .add_service(limited!(pb::diagnostics_server::DiagnosticsServer::new(
            services::DiagnosticsSvc
        )))
        .add_service(limited!(pb::custody_server::CustodyServer::new(
            custody::CustodySvc(ctx.clone())
        )))
        .add_service(limited!(pb::compliance_server::ComplianceServer::new(
            compliance::ComplianceSvc(ctx.clone())
        )))
        .add_service(limited!(pb::ledger_server::LedgerServer::new(
            settle::LedgerSvc {
                ledger: ledger.clone(),
                gateway: ctx.gateway.clone(),
                shutdown: shutdown_rx.clone(),
            }
        )));

    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| anyhow::anyhow!("gRPC listener {}: {e}", options.listen))?;
    let grpc_addr = listener.local_addr()?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut stop = shutdown_rx.clone();
    let server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async move {
        let _ = stop.changed().await;
    }));
    Ok(RunningNode {
        grpc_addr,
        metrics_addr,
        new_keys,
        compliance,
        shutdown_tx,
        server,
        core,
        threads: Some(threads),
        ledger,
    })
}

impl RunningNode {
    /// Graceful shutdown: stop accepting, end streams, let in-flight calls finish, then stop
    /// the engine thread, flush the journal and write a snapshot.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let _ = self.shutdown_tx.send(true);
        match tokio::time::timeout(Duration::from_secs(10), &mut self.server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "gRPC server ended with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "gRPC server task failed"),
            Err(_) => {
                tracing::warn!("in-flight calls did not finish in 10 s; closing them");
                self.server.abort();
            }
        }
        // Every acknowledged trade settles before the engine's final snapshot (which must not
        // get ahead of settlement); what does not in time is settled at the next start.
        self.ledger.drain(Duration::from_secs(10)).await;
        self.core.stop().await;
        let threads = self.threads.take();
        if let Some(t) = threads {
            tokio::task::spawn_blocking(move || t.join()).await??;
        }
        self.ledger.stop().await;
        Ok(())
    }
}

/// Prints the lines clients and tests read: addresses, then one line per new key.
pub fn print_banner(node: &RunningNode, data_dir: &std::path::Path) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "listening grpc={} metrics={} data_dir={}",
        node.grpc_addr,
        node.metrics_addr,
        data_dir.display()
    );
    if node.new_keys.is_empty() {
        let _ = writeln!(
            out,
            "api keys already exist in {}; their secrets were shown when they were created",
            data_dir.display()
        );
    }
    for (name, account, roles, token) in &node.new_keys {
        let roles: Vec<&str> = roles.iter().map(|r| r.as_str_name()).collect();
        let _ = writeln!(
            out,
            "api-key name={name} account={account} roles={} token={token}",
            roles.join(",")
        );
    }
    if let Some(key) = node.compliance.demo_provider_key() {
        let _ = writeln!(
            out,
            "kyc-provider issuer={} key={} (sign attestations: rempart kyc attest --key {} --issuer {} --customer ID --name NAME --residence CC)",
            compliance::DEMO_ISSUER,
            key.display(),
            key.display(),
            compliance::DEMO_ISSUER
        );
    }
    let _ = writeln!(out, "ready");
    let _ = out.flush();
}

/// Waits for SIGTERM or ctrl-c.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_threads_are_bounded() {
        assert_eq!(validate_api_threads(1).unwrap(), 1);
        assert_eq!(validate_api_threads(256).unwrap(), 256);
        for bad in [0, 257] {
            let err = validate_api_threads(bad).unwrap_err().to_string();
            assert!(err.contains("between 1 and 256"), "{bad}: {err}");
        }
    }
}
