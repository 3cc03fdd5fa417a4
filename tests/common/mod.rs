//! The harness the end-to-end tests share: start the real `rempart demo` binary on ephemeral
//! ports with a temporary data directory, read what it prints (addresses, API keys, the demo
//! KYC provider), and make authenticated requests. Each test file is its own crate and uses a
//! part of this module, hence `dead_code` is allowed here only.
#![allow(dead_code)]

pub mod pki;
pub mod validators;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use rempart_proto::v1 as pb;
use tonic::transport::Channel;
use tonic::{Request, Status};

/// A running demo node; killed when dropped.
pub struct Node {
    pub child: Child,
    /// gRPC address (`host:port`).
    pub grpc: String,
    /// Prometheus address (`host:port`).
    pub metrics: String,
    /// API keys printed at this start (a restart prints none), by party name.
    pub tokens: HashMap<String, String>,
    /// Every line printed before `ready`.
    pub lines: Vec<String>,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `key=value` fields of a printed line.
pub fn fields(line: &str) -> HashMap<String, String> {
    line.split_whitespace()
        .filter_map(|f| f.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Starts `rempart demo` on `data_dir` with logs at WARN.
pub fn start(data_dir: &Path) -> Node {
    start_with(data_dir, |_| {})
}

/// `rempart demo` on ephemeral ports and `data_dir`, logs at WARN; not started.
pub fn demo_command(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rempart"));
    command
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn");
    command
}

/// Starts `rempart demo` on `data_dir`; `configure` adds arguments or environment.
pub fn start_with(data_dir: &Path, configure: impl FnOnce(&mut Command)) -> Node {
    let mut command = demo_command(data_dir);
    command.stdout(Stdio::piped()).stderr(Stdio::inherit());
    configure(&mut command);
    let mut child = command.spawn().expect("start rempart demo");
    let stdout = child.stdout.take().expect("stdout");
    let (mut grpc, mut metrics) = (String::new(), String::new());
    let mut tokens = HashMap::new();
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read stdout");
        if line == "ready" {
            break;
        }
        let f = fields(&line);
        if line.starts_with("listening ") {
            grpc = f["grpc"].clone();
            metrics = f["metrics"].clone();
        } else if line.starts_with("api-key ") {
            tokens.insert(f["name"].clone(), f["token"].clone());
        }
        lines.push(line);
    }
    assert!(!grpc.is_empty(), "node printed no address");
    Node {
        child,
        grpc,
        metrics,
        tokens,
        lines,
    }
}

impl Node {
    /// A connected channel to the node's gRPC port.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.grpc))
            .expect("uri")
            .connect()
            .await
            .expect("connect")
    }

    /// The API key of a demo party.
    pub fn token(&self, name: &str) -> String {
        self.tokens[name].clone()
    }

    /// The fields of the first printed line that starts with `prefix`.
    pub fn printed(&self, prefix: &str) -> Option<HashMap<String, String>> {
        self.lines
            .iter()
            .find(|l| l.starts_with(prefix))
            .map(|l| fields(l))
    }
}

/// A request carrying `token` as its bearer credential.
pub fn req<T>(msg: T, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    r
}

/// The stable reject code of a refusal (0 when it carries none).
pub fn code_of(status: &Status) -> u32 {
    status
        .metadata()
        .get("rempart-reject-code")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Every ledger movement of the caller's account (in `asset`, or all assets when empty), read
/// page by page with `page_size` (small sizes exercise the paging).
pub async fn all_transfers(
    ch: &Channel,
    token: &str,
    asset: &str,
    page_size: u32,
) -> Vec<pb::Transfer> {
    let mut accounts = pb::accounts_client::AccountsClient::new(ch.clone());
    let mut out = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = accounts
            .list_transfers(req(
                pb::ListTransfersRequest {
                    account_id: String::new(),
                    asset: asset.into(),
                    page: Some(pb::PageRequest {
                        page_size,
                        page_token: page_token.clone(),
                    }),
                },
                token,
            ))
            .await
            .expect("list transfers")
            .into_inner();
        out.extend(page.transfers);
        page_token = page.page.map(|p| p.next_page_token).unwrap_or_default();
        if page_token.is_empty() {
            return out;
        }
    }
}

/// How long a test waits for settlement to catch up before it fails (a bound against hangs,
/// not a performance assertion: settlement normally follows within seconds).
pub const SETTLE_WAIT: Duration = Duration::from_secs(180);

/// A GTC limit order on `market`.
pub fn limit_on(market: &str, side: pb::Side, price: &str, qty: &str) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        market: market.into(),
        side: side as i32,
        order_type: pb::OrderType::Limit as i32,
        time_in_force: pb::TimeInForce::Gtc as i32,
        price: price.into(),
        quantity: qty.into(),
        client_order_id: String::new(),
        account_id: String::new(),
    }
}

/// A GTC limit order on CITY/EUR.
pub fn limit(side: pb::Side, price: &str, qty: &str) -> pb::PlaceOrderRequest {
    limit_on("CITY/EUR", side, price, qty)
}

/// Waits until the ledger has settled everything the engine acknowledged for `token`'s
/// account, then returns (engine balances, ledger statement) taken at the same seq.
pub async fn settled_view(ch: &Channel, token: &str) -> (pb::GetBalancesResponse, pb::Statement) {
    let mut accounts = pb::accounts_client::AccountsClient::new(ch.clone());
    let deadline = tokio::time::Instant::now() + SETTLE_WAIT;
    loop {
        let balances = accounts
            .get_balances(req(pb::GetBalancesRequest::default(), token))
            .await
            .expect("balances")
            .into_inner();
        let statement = accounts
            .get_statement(req(pb::GetStatementRequest::default(), token))
            .await
            .expect("statement")
            .into_inner();
        if statement.sequence >= balances.sequence {
            return (balances, statement);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "settlement did not reach seq {} (at {})",
            balances.sequence,
            statement.sequence
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The ledger's closing position of every asset equals the engine's total.
pub fn assert_ledger_equals_engine(balances: &pb::GetBalancesResponse, statement: &pb::Statement) {
    for b in &balances.balances {
        let position = statement
            .positions
            .iter()
            .find(|p| p.asset == b.asset)
            .expect("a position per asset");
        assert_eq!(
            position.closing, b.total,
            "ledger and engine differ for {} of account {}",
            b.asset, balances.account_id
        );
        assert_eq!(position.held, b.held);
    }
}

/// Runs `rempart ledger verify` on `data_dir`; its JSON report (the run must succeed).
pub fn verify(data_dir: &Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_rempart"))
        .args(["ledger", "verify", "--data"])
        .arg(data_dir)
        .output()
        .expect("run ledger verify");
    assert!(
        out.status.success(),
        "ledger verify failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("verify prints JSON")
}

/// The body (with headers) of an HTTP/1.1 GET of `path` on `addr` (the metrics port).
pub async fn http_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// The last stdout line of a command that must have succeeded, parsed as JSON (the benches'
/// one-line reports); on failure, panics with both outputs.
pub fn json_report(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().expect("one JSON line");
    serde_json::from_str(line).expect("the line is JSON")
}
