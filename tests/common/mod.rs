//! The harness the end-to-end tests share: start the real `rempart demo` binary on ephemeral
//! ports with a temporary data directory, read what it prints (addresses, API keys, the demo
//! KYC provider), and make authenticated requests. Each test file is its own crate and uses a
//! part of this module, hence `dead_code` is allowed here only.
#![allow(dead_code)]

pub mod validators;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

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

/// Starts `rempart demo` on `data_dir`; `configure` adds arguments or environment.
pub fn start_with(data_dir: &Path, configure: impl FnOnce(&mut Command)) -> Node {
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
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
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
