//! A consortium of `rempart validator` processes on 127.0.0.1 for end-to-end tests: the
//! genesis (the settlement fixture's CAs, validators and gate key, plus any other gate keys),
//! one key and JSON configuration per validator, and their processes, each killed when the
//! [`Net`] is dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use rempart_consensus::cluster::{free_port, validator_seed};
use rempart_consensus::config::ValidatorConfig;
use settlement::membership::fixture::Consortium;

/// Entries a block holds at most in these consortia.
const BLOCK_ENTRIES_MAX: u64 = 400;

/// The validators' files and processes.
pub struct Net {
    pub dir: PathBuf,
    /// Each validator's client API address (`host:port`).
    pub api: Vec<String>,
    children: Vec<Option<Child>>,
}

impl Net {
    /// Writes `dir/genesis.json` (the fixture consortium of `validators`, its gate key and
    /// `gate_keys`) and each validator's key and configuration; starts nothing.
    pub fn new(dir: &Path, validators: usize, gate_keys: &[[u8; 32]]) -> Net {
        let mut genesis = Consortium::new(validators).genesis;
        genesis.gate_keys.extend_from_slice(gate_keys);
        std::fs::write(
            dir.join("genesis.json"),
            serde_json::to_string_pretty(&genesis).unwrap(),
        )
        .unwrap();
        let p2p: Vec<u16> = (0..validators).map(|_| free_port().unwrap()).collect();
        let api: Vec<String> = (0..validators)
            .map(|_| format!("127.0.0.1:{}", free_port().unwrap()))
            .collect();
        let addr = |port: u16| format!("/ip4/127.0.0.1/tcp/{port}");
        for index in 0..validators {
            std::fs::write(
                dir.join(format!("key-{}.hex", index + 1)),
                hex::encode(validator_seed(index)),
            )
            .unwrap();
            let config = serde_json::json!({
                "validator_id": index as u64 + 1,
                "key_file": format!("key-{}.hex", index + 1),
                "genesis_file": "genesis.json",
                "data_dir": format!("data-{}", index + 1),
                "listen": addr(p2p[index]),
                "peers": (0..validators).filter(|j| *j != index).map(|j| addr(p2p[j])).collect::<Vec<_>>(),
                "api_listen": api[index],
                "block_entries_max": BLOCK_ENTRIES_MAX,
            });
            // The file is the validator binary's own format.
            let parsed: ValidatorConfig = serde_json::from_value(config.clone()).unwrap();
            assert_eq!(parsed.api_listen.as_deref(), Some(api[index].as_str()));
            std::fs::write(
                dir.join(format!("validator-{}.json", index + 1)),
                config.to_string(),
            )
            .unwrap();
        }
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
