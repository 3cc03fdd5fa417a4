//! A gateway settling on the consortium ledger, end to end: four `rempart validator` processes
//! on 127.0.0.1 and a `rempart demo` node started with `--consortium-genesis` and
//! `--consortium-validators`. The node's opening deposits and every trade go through the
//! compliance gate and are submitted to the validators as signed batches; the node's own copy of
//! the ledger follows the consortium's chain (each pulled block verified). A validator is
//! SIGKILLed while trades settle, and the gateway itself is SIGKILLed and restarted: every
//! acknowledged trade ends up on the consortium exactly once, the gateway's ledger equals its
//! engine, and the gateway and all four validators hold the same chain and state.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::validators::Net;
use common::{Node, assert_ledger_equals_engine, limit, req, settled_view, start_with, verify};
use rempart_proto::v1 as pb;
use rempart_proto::v1::validator_client::ValidatorClient;
use settlement::block::CommittedBlock;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

const VALIDATORS: usize = 4;
/// A bound against hangs on a loaded CI machine, not a performance assertion.
const WAIT: Duration = Duration::from_secs(180);

fn gate_key(data_dir: &Path) -> [u8; 32] {
    let out = Command::new(env!("CARGO_BIN_EXE_rempart"))
        .args(["demo", "--print-gate-key", "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("run rempart demo --print-gate-key");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    hex::decode(text.trim()).unwrap().try_into().unwrap()
}

/// The operator's step: a consortium of `validators` under `dir/consortium` whose genesis lists
/// the gate key of the gateway whose data directory is `dir/gateway`. Returns that directory
/// and the (not yet started) validators.
fn consortium_for_gateway(dir: &Path, validators: usize) -> (std::path::PathBuf, Net) {
    let gw = dir.join("gateway");
    let consortium = dir.join("consortium");
    std::fs::create_dir_all(&consortium).unwrap();
    let key = gate_key(&gw);
    (gw, Net::new(&consortium, validators, &[key]))
}

fn start_gateway(data_dir: &Path, net: &Net) -> Node {
    start_gateway_on(data_dir, net, &net.api)
}

/// Starts the demo gateway on `net`'s genesis, naming `validators` (API addresses, in order).
fn start_gateway_on(data_dir: &Path, net: &Net, validators: &[String]) -> Node {
    let genesis = net.genesis_file();
    let validators = validators.join(",");
    start_with(data_dir, move |c| {
        c.arg("--consortium-genesis")
            .arg(genesis)
            .arg("--consortium-validators")
            .arg(validators);
    })
}

async fn trade(ch: &Channel, seller: &str, buyer: &str) {
    let mut trading = pb::trading_client::TradingClient::new(ch.clone());
    trading
        .place_order(req(limit(pb::Side::Sell, "3", "1"), seller))
        .await
        .expect("sell");
    let buy = trading
        .place_order(req(limit(pb::Side::Buy, "3", "1"), buyer))
        .await
        .expect("buy")
        .into_inner();
    assert_eq!(buy.status, pb::OrderStatus::Filled as i32);
}

/// Every committed block of the validator at `addr`, pulled through GetBlocks.
async fn chain_of(addr: &str) -> Vec<CommittedBlock> {
    let mut client = common::validators::client(addr)
        .await
        .expect("validator up");
    let mut blocks = Vec::new();
    loop {
        let answer = client
            .get_blocks(pb::GetBlocksRequest {
                from_height: blocks.len() as u64 + 1,
                max_blocks: 0,
            })
            .await
            .expect("get blocks")
            .into_inner();
        if answer.blocks.is_empty() {
            // The height is read after the blocks: a block decided in between shows in the
            // height first, and is served by the next request.
            assert!(
                answer.height >= blocks.len() as u64,
                "height went backwards"
            );
            if answer.height == blocks.len() as u64 {
                return blocks;
            }
            continue;
        }
        for bytes in answer.blocks {
            let block = CommittedBlock::decode(&bytes).expect("a block decodes");
            assert_eq!(block.block.header.height, blocks.len() as u64 + 1);
            blocks.push(block);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_settles_on_the_consortium_through_validator_and_gateway_sigkills() {
    const TRADES: usize = 16;
    let dir = tempfile::tempdir().unwrap();
    let (gw, mut net) = consortium_for_gateway(dir.path(), VALIDATORS);
    net.start_all();

    // The node's demo deposits settle on the consortium before it says ready.
    let tokens = {
        let node = start_gateway(&gw, &net);
        let ch = node.channel().await;
        let (alice, bob) = (node.token("alice"), node.token("bob"));
        for i in 0..TRADES {
            if i == TRADES / 4 {
                // The consortium keeps settling with one validator down (n = 3f + 1).
                net.kill(1);
            }
            if i == TRADES / 2 {
                net.start(1);
            }
            let (seller, buyer) = if i % 2 == 0 {
                (&alice, &bob)
            } else {
                (&bob, &alice)
            };
            trade(&ch, seller, buyer).await;
        }
        let (balances, statement) = settled_view(&ch, &alice).await;
        assert_ledger_equals_engine(&balances, &statement);
        // Two more trades, then SIGKILL (Drop) right after their acknowledgement.
        trade(&ch, &alice, &bob).await;
        trade(&ch, &bob, &alice).await;
        node.tokens.clone()
    };
    // The restarted gateway settles what the killed one had not, exactly once.
    let node = start_gateway(&gw, &net);
    let ch = node.channel().await;
    for name in ["alice", "bob"] {
        let (balances, statement) = settled_view(&ch, &tokens[name]).await;
        assert_ledger_equals_engine(&balances, &statement);
        let movements = common::all_transfers(&ch, &tokens[name], "", 50).await;
        let ids: HashSet<&str> = movements.iter().map(|m| m.transfer_id.as_str()).collect();
        assert_eq!(ids.len(), movements.len(), "no transfer listed twice");
        let base_legs = movements
            .iter()
            .filter(|m| m.kind == pb::TransferKind::Trade as i32 && m.asset == "CITY")
            .count();
        assert_eq!(base_legs, TRADES + 2, "every trade settled exactly once");
    }
    // A trade leg on the ledger carries the gate decision that allowed it.
    let movements = common::all_transfers(&ch, &tokens["alice"], "CITY", 50).await;
    let leg = movements
        .iter()
        .find(|m| m.kind == pb::TransferKind::Trade as i32)
        .expect("a trade leg");
    let record = pb::ledger_client::LedgerClient::new(ch.clone())
        .get_transfer(req(
            pb::GetTransferRequest {
                transfer_id: leg.transfer_id.clone(),
            },
            &tokens["alice"],
        ))
        .await
        .expect("get transfer")
        .into_inner();
    assert_eq!(record.gate_decision_hash.len(), 64, "hex of a 32-byte hash");
    assert_ne!(record.gate_decision_hash, "0".repeat(64));
    let gateway_height = record.block_height;

    // Every validator holds the same chain (compared at the lowest of their heights: the
    // consortium keeps deciding blocks), which carries the gateway's transfers.
    let deadline = tokio::time::Instant::now() + WAIT;
    let chains = loop {
        let mut chains = Vec::new();
        for addr in &net.api {
            chains.push(chain_of(addr).await);
        }
        let heights: Vec<usize> = chains.iter().map(Vec::len).collect();
        if heights.iter().all(|h| *h as u64 >= gateway_height) {
            break chains;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "validators did not reach height {gateway_height}: {heights:?}\n{}",
            net.log_tails()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let common = chains.iter().map(Vec::len).min().unwrap();
    let hashes: Vec<_> = chains.iter().map(|c| c[common - 1].block.hash()).collect();
    assert!(hashes.iter().all(|h| *h == hashes[0]), "one chain");
    let leg_id: u128 = leg.transfer_id.parse().unwrap();
    let carried = chains[0]
        .iter()
        .flat_map(|c| c.block.batches.iter())
        .any(|b| match b {
            settlement::ledger::Batch::CreateTransfers { entries, .. } => {
                entries.iter().any(|e| e.transfer.id == leg_id)
            }
            _ => false,
        });
    assert!(carried, "the consortium chain carries the trade leg");
    drop(ch);
    drop(node);
    // The gateway's copy, checked from the genesis, is the consortium's chain.
    let report = verify(&gw);
    assert_eq!(report["ok"], true);
    let height = report["height"].as_u64().unwrap() as usize;
    assert!(height as u64 >= gateway_height);
    let chain = chain_of(&net.api[0]).await;
    assert_eq!(
        hex::encode(chain[height - 1].block.hash()),
        report["head_hash"].as_str().unwrap_or_default(),
        "{report}"
    );
}

#[test]
fn a_gateway_whose_gate_key_the_consortium_does_not_list_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new(dir.path(), VALIDATORS, &[]);
    let out = common::demo_command(&dir.path().join("gateway"))
        .arg("--consortium-genesis")
        .arg(net.genesis_file())
        .arg("--consortium-validators")
        .arg(net.api.join(","))
        .output()
        .expect("run rempart demo");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("does not list this node's compliance gate key"),
        "{stderr}"
    );
}

#[test]
fn a_data_directory_with_a_chain_of_its_own_is_not_moved_onto_a_consortium() {
    let dir = tempfile::tempdir().unwrap();
    // A single-process start: the node's ledger is a chain of its own.
    drop(common::start(&dir.path().join("gateway")));
    let (gw, net) = consortium_for_gateway(dir.path(), VALIDATORS);
    let out = common::demo_command(&gw)
        .arg("--consortium-genesis")
        .arg(net.genesis_file())
        .arg("--consortium-validators")
        .arg(net.api.join(","))
        .output()
        .expect("run rempart demo");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("belongs to chain"), "{stderr}");
}

/// Status of a validator over TLS (with a client identity when given); None if refused.
async fn status_over_tls(
    port: &str,
    ca: &str,
    identity: Option<(String, String)>,
) -> Option<pb::ValidatorStatus> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Channel::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .ok()?;
    ValidatorClient::new(channel)
        .get_status(pb::GetValidatorStatusRequest {})
        .await
        .ok()
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validators_serve_custodians_over_mutual_tls_only() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    // The consortium's CA certifies the validator's API and the custodian (the gateway).
    let pki = common::pki::TestPki::new("custodian-rempart");
    std::fs::write(p("ca.pem"), &pki.ca_pem).unwrap();
    std::fs::write(p("validator.pem"), &pki.server_cert).unwrap();
    std::fs::write(p("validator.key"), &pki.server_key).unwrap();
    std::fs::write(p("custodian.pem"), &pki.client_cert).unwrap();
    std::fs::write(p("custodian.key"), &pki.client_key).unwrap();

    // A consortium of one validator (same code path), its API behind mutual TLS.
    let (gw, mut net) = consortium_for_gateway(dir.path(), 1);
    let config_path = net.dir.join("validator-1.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["api_tls"] = serde_json::json!({
        "cert": p("validator.pem"),
        "key": p("validator.key"),
        "client_ca": p("ca.pem"),
    });
    std::fs::write(&config_path, config.to_string()).unwrap();
    net.start_all();
    let port = net.api[0].rsplit(':').next().unwrap().to_string();
    let identity = || Some((pki.client_cert.clone(), pki.client_key.clone()));
    let deadline = tokio::time::Instant::now() + WAIT;
    while status_over_tls(&port, &pki.ca_pem, identity())
        .await
        .is_none()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "validator API never came up\n{}",
            net.log_tails()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // No client certificate, or no TLS at all: nothing gets through.
    assert!(status_over_tls(&port, &pki.ca_pem, None).await.is_none());
    let plain = match common::validators::client(&net.api[0]).await {
        None => true,
        Some(mut c) => c
            .get_status(pb::GetValidatorStatusRequest {})
            .await
            .is_err(),
    };
    assert!(plain, "a plaintext client must be refused");

    // The gateway, with the custodian's certificate, settles its demo deposits through it
    // before it says ready.
    let (ca_path, cert_path, key_path) = (p("ca.pem"), p("custodian.pem"), p("custodian.key"));
    let genesis = net.genesis_file();
    let validators = net.api.join(",");
    let node = start_with(&gw, move |c| {
        c.arg("--consortium-genesis")
            .arg(genesis)
            .arg("--consortium-validators")
            .arg(validators)
            .arg("--consortium-ca")
            .arg(ca_path)
            .arg("--consortium-cert")
            .arg(cert_path)
            .arg("--consortium-key")
            .arg(key_path)
            .arg("--consortium-domain")
            .arg("localhost");
    });
    let status = status_over_tls(&port, &pki.ca_pem, identity())
        .await
        .expect("status");
    assert!(
        status.transfers > 0,
        "the gateway's deposits are on the chain"
    );
    drop(node);
}

/// A validator API in front of a real one that claims every batch committed at once (at an
/// absurd height, without queueing it) and serves every block altered (its timestamp moved by
/// 1 µs, so its hash no longer matches its certificate); status it forwards.
#[derive(Clone)]
struct Liar {
    inner: ValidatorClient<Channel>,
}

#[tonic::async_trait]
impl pb::validator_server::Validator for Liar {
    async fn submit_batch(
        &self,
        _request: tonic::Request<pb::SubmitBatchRequest>,
    ) -> Result<tonic::Response<pb::SubmitBatchResponse>, tonic::Status> {
        Ok(tonic::Response::new(pb::SubmitBatchResponse {
            batch_id: "00".repeat(32),
            committed: true,
            height: u64::MAX,
        }))
    }

    async fn get_status(
        &self,
        request: tonic::Request<pb::GetValidatorStatusRequest>,
    ) -> Result<tonic::Response<pb::ValidatorStatus>, tonic::Status> {
        self.inner.clone().get_status(request.into_inner()).await
    }

    async fn get_blocks(
        &self,
        request: tonic::Request<pb::GetBlocksRequest>,
    ) -> Result<tonic::Response<pb::GetBlocksResponse>, tonic::Status> {
        let mut answer = self
            .inner
            .clone()
            .get_blocks(request.into_inner())
            .await?
            .into_inner();
        for bytes in &mut answer.blocks {
            let mut block = CommittedBlock::decode(bytes).expect("a block decodes");
            block.block.header.timestamp_us += 1;
            *bytes = block.encode();
        }
        Ok(tonic::Response::new(answer))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_serving_altered_blocks_is_not_believed() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, mut net) = consortium_for_gateway(dir.path(), VALIDATORS);
    net.start_all();
    let deadline = tokio::time::Instant::now() + WAIT;
    let inner = loop {
        if let Some(client) = common::validators::client(&net.api[0]).await {
            break client;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "validator 1 never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let liar_addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(pb::validator_server::ValidatorServer::new(Liar { inner }))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    // The liar is named first, so the gateway asks it for blocks first, and it answers every
    // submission first.
    let validators: Vec<String> = std::iter::once(liar_addr)
        .chain(net.api.iter().cloned())
        .collect();
    let node = start_gateway_on(&gw, &net, &validators);
    // It started (its deposits settled from the honest validators' blocks) and trades settle.
    let ch = node.channel().await;
    let (alice, bob) = (node.token("alice"), node.token("bob"));
    trade(&ch, &alice, &bob).await;
    let (balances, statement) = settled_view(&ch, &alice).await;
    assert_ledger_equals_engine(&balances, &statement);
    // Operators see it: the refused blocks and the committed batches are counted.
    let metrics = common::http_get(&node.metrics, "/metrics").await;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(
        value("rempart_consortium_bad_blocks_total") >= 1.0,
        "{metrics}"
    );
    assert!(value("rempart_consortium_batches_total{outcome=\"committed\"}") >= 1.0);
    assert!(value("rempart_consortium_commit_seconds_count") >= 1.0);
    drop(ch);
    drop(node);
    // Its copy holds only the consortium's real blocks.
    let report = verify(&gw);
    assert_eq!(report["ok"], true);
    let height = report["height"].as_u64().unwrap() as usize;
    let chain = chain_of(&net.api[1]).await;
    assert_eq!(
        hex::encode(chain[height - 1].block.hash()),
        report["head_hash"].as_str().unwrap_or_default()
    );
}

#[test]
fn a_production_gateway_joins_the_consortium_from_its_configuration_file() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("gateway");
    let consortium = dir.path().join("consortium");
    std::fs::create_dir_all(&consortium).unwrap();
    let config = dir.path().join("gateway.toml");
    let write_config = |validators: &[String]| {
        std::fs::write(
            &config,
            format!(
                "role = \"gateway\"\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\n\
                 data_dir = {:?}\n[consortium]\ngenesis_file = {:?}\nvalidators = {:?}\n",
                data.display().to_string(),
                consortium.join("genesis.json").display().to_string(),
                validators,
            ),
        )
        .unwrap();
    };
    let node = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rempart"));
        cmd.arg("node")
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("RUST_LOG", "warn")
            .env(
                "REMPART_COMPLIANCE_PASSPHRASE",
                "compliance test passphrase",
            )
            .env("REMPART_CUSTODY_PASSPHRASE", "custody test passphrase")
            .env("REMPART_LEDGER_KEYS_PASSPHRASE", "ledger test passphrase");
        cmd
    };
    // The operator's first step, before the consortium's genesis exists: the gate key.
    write_config(&["127.0.0.1:1".to_string()]);
    let out = node(&["--print-gate-key"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key: [u8; 32] = hex::decode(String::from_utf8(out.stdout).unwrap().trim())
        .unwrap()
        .try_into()
        .unwrap();
    let mut net = Net::new(&consortium, 1, &[key]);
    net.start_all();
    write_config(&net.api);
    let mut child = node(&[])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line == "ready");
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready, "the gateway did not start\n{}", net.log_tails());
    // Its ledger is a copy of the consortium's chain, not a chain of its own.
    let ours: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(data.join("ledger").join("genesis.json")).unwrap(),
    )
    .unwrap();
    let theirs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(net.genesis_file()).unwrap()).unwrap();
    assert_eq!(ours, theirs);
}
