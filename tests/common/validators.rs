//! A consortium of `rempart validator` processes on 127.0.0.1 for end-to-end tests: its files
//! come from `rempart ledger testnet` (the built-in test consortium's genesis, plus any other
//! gate keys; one key and JSON configuration per validator), and its processes are each killed
//! when the [`Net`] is dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The validators' files and processes.
pub struct Net {
    pub dir: PathBuf,
    /// Each validator's client API address (`host:port`).
    pub api: Vec<String>,
    children: Vec<Option<Child>>,
}

impl Net {
    /// Writes the consortium of `validators` into `dir` with `rempart ledger testnet` (its
    /// genesis lists the test gate key and `gate_keys`); starts nothing.
    pub fn new(dir: &Path, validators: usize, gate_keys: &[[u8; 32]]) -> Net {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rempart"));
        command
            .args(["ledger", "testnet", "--validators"])
            .arg(validators.to_string())
            // Small blocks: more heights, more proposer changes under load.
            .args(["--block-entries-max", "400"])
            .arg("--dir")
            .arg(dir);
        for key in gate_keys {
            command.arg("--gate-key").arg(hex::encode(key));
        }
        let out = command.output().expect("run rempart ledger testnet");
        assert!(
            out.status.success(),
            "ledger testnet: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let api: Vec<String> = printed["api"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        assert_eq!(api.len(), validators);
        Net {
            dir: dir.to_path_buf(),
            api,
            children: (0..validators).map(|_| None).collect(),
        }
    }

    /// The genesis file every validator starts from.
    pub fn genesis_file(&self) -> PathBuf {
        self.dir.join("genesis.json")
    }

    /// Validator `index`'s data directory (its block store is `store/` in it).
    pub fn data_dir(&self, index: usize) -> PathBuf {
        self.dir.join(format!("data-{}", index + 1))
    }

    /// Starts validator `index` (0-based), its log appended to `log-<n>.txt`.
    pub fn start(&mut self, index: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("log-{}.txt", index + 1)))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_rempart"))
            .arg("validator")
            .arg("--config")
            .arg(self.dir.join(format!("validator-{}.json", index + 1)))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children[index] = Some(child);
    }

    /// Starts every validator.
    pub fn start_all(&mut self) {
        for index in 0..self.children.len() {
            self.start(index);
        }
    }

    /// SIGKILLs validator `index` and reaps it.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.children[index].take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// The last lines of every validator's log, for failure messages.
    pub fn log_tails(&self) -> String {
        (0..self.children.len())
            .map(|i| {
                let text = std::fs::read_to_string(self.dir.join(format!("log-{}.txt", i + 1)))
                    .unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(10)..].join("\n");
                format!("--- validator {} ---\n{tail}\n", i + 1)
            })
            .collect()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for index in 0..self.children.len() {
            self.kill(index);
        }
    }
}

/// A connected client of the validator API at `addr` (plaintext), or None if it does not
/// answer within half a second.
pub async fn client(
    addr: &str,
) -> Option<rempart_proto::v1::validator_client::ValidatorClient<tonic::transport::Channel>> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .ok()?
        .connect_timeout(std::time::Duration::from_millis(500))
        .timeout(std::time::Duration::from_secs(10))
        .connect()
        .await
        .ok()?;
    Some(
        rempart_proto::v1::validator_client::ValidatorClient::new(channel)
            .max_decoding_message_size(16 * 1024 * 1024),
    )
}
