//! The process harness of the validator tests: `VALIDATORS` `rempart-validator` processes on
//! 127.0.0.1 ports, each with a deterministic workload, reporting through a status file.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rempart_consensus::cluster::{free_port, validator_seed};
use rempart_consensus::config::{ValidatorConfig, WorkloadConfig};
use settlement::membership::GenesisConfig;
use settlement::membership::fixture::Consortium;
use settlement::store::BlockStore;
use settlement::store::file::FileStore;

pub const VALIDATORS: usize = 4;
/// Generous: debug builds on a loaded CI machine. Waits end as soon as their condition holds.
pub const WAIT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub height: u64,
    pub transfers: u64,
}

pub struct Net {
    pub dir: PathBuf,
    children: Vec<Option<Child>>,
}

impl Net {
    pub fn config_path(&self, index: usize) -> PathBuf {
        self.dir.join(format!("validator-{}.json", index + 1))
    }

    pub fn status_path(&self, index: usize) -> PathBuf {
        self.dir.join(format!("status-{}.json", index + 1))
    }

    pub fn start(&mut self, index: usize) {
        let log = std::fs::File::create(self.dir.join(format!("log-{}.txt", index + 1))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_rempart-validator"))
            .arg("--config")
            .arg(self.config_path(index))
            .env("RUST_LOG", "warn,rempart_consensus=info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children[index] = Some(child);
    }

    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.children[index].take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub fn status(&self, index: usize) -> Option<Status> {
        let text = std::fs::read_to_string(self.status_path(index)).ok()?;
        let json: serde_json::Value = serde_json::from_str(&text).ok()?;
        assert!(
            json["failed"].is_null(),
            "validator {} failed: {}",
            index + 1,
            json["failed"]
        );
        Some(Status {
            height: json["height"].as_u64()?,
            transfers: json["transfers"].as_u64()?,
        })
    }

    pub fn wait(&self, what: &str, done: impl Fn(&[Option<Status>]) -> bool) -> Duration {
        let start = Instant::now();
        loop {
            let statuses: Vec<_> = (0..VALIDATORS).map(|i| self.status(i)).collect();
            if done(&statuses) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < WAIT,
                "{what}: not reached; statuses {statuses:?}; logs:\n{}",
                self.log_tails()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The end of every validator's log, for failure messages.
    pub fn log_tails(&self) -> String {
        (0..VALIDATORS)
            .map(|i| {
                let text = std::fs::read_to_string(self.dir.join(format!("log-{}.txt", i + 1)))
                    .unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(15)..].join("\n");
                format!("--- validator {} ---\n{tail}\n", i + 1)
            })
            .collect()
    }

    /// Waits until every validator holds `transfers` transfers and all reach the highest
    /// height then seen, stops them all, and returns that height.
    pub fn settle_and_stop(&mut self, transfers: u64) -> u64 {
        self.wait("every transfer settled everywhere", |s| {
            s.iter()
                .all(|s| s.as_ref().is_some_and(|s| s.transfers == transfers))
        });
        let tip = self.tip();
        self.wait("all reach the same height", |s| {
            others_at(s, usize::MAX, tip)
        });
        for index in 0..VALIDATORS {
            self.kill(index);
        }
        tip
    }

    /// The highest height any validator reports.
    pub fn tip(&self) -> u64 {
        (0..VALIDATORS).map(|i| self.height(i)).max().unwrap_or(0)
    }

    pub fn height(&self, index: usize) -> u64 {
        self.status(index).map_or(0, |s| s.height)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for index in 0..self.children.len() {
            self.kill(index);
        }
    }
}

pub fn setup(dir: &Path, transfers: u64, customize: impl Fn(usize, &mut ValidatorConfig)) -> Net {
    let consortium = Consortium::new(VALIDATORS);
    std::fs::write(
        dir.join("genesis.json"),
        serde_json::to_string_pretty(&consortium.genesis).unwrap(),
    )
    .unwrap();
    let ports: Vec<u16> = (0..VALIDATORS).map(|_| free_port().unwrap()).collect();
    let addr = |port: u16| format!("/ip4/127.0.0.1/tcp/{port}");
    for index in 0..VALIDATORS {
        std::fs::write(
            dir.join(format!("key-{}.hex", index + 1)),
            hex::encode(validator_seed(index)),
        )
        .unwrap();
        let mut config = ValidatorConfig {
            validator_id: index as u64 + 1,
            key_file: format!("key-{}.hex", index + 1).into(),
            genesis_file: "genesis.json".into(),
            data_dir: format!("data-{}", index + 1).into(),
            listen: addr(ports[index]),
            peers: (0..VALIDATORS)
                .filter(|j| *j != index)
                .map(|j| addr(ports[j]))
                .collect(),
            status_file: Some(format!("status-{}.json", index + 1).into()),
            workload: Some(WorkloadConfig {
                accounts: 30,
                transfers,
                batch: 50,
            }),
            block_entries_max: 400,
            propose_timeout_ms: None,
            empty_block_wait_ms: None,
            postgres: None,
            api_listen: None,
            api_tls: None,
            byzantine: None,
        };
        customize(index, &mut config);
        std::fs::write(
            dir.join(format!("validator-{}.json", index + 1)),
            serde_json::to_string_pretty(&config).unwrap(),
        )
        .unwrap();
    }
    Net {
        dir: dir.to_path_buf(),
        children: (0..VALIDATORS).map(|_| None).collect(),
    }
}

/// The other validators all reached `height`.
pub fn others_at(statuses: &[Option<Status>], except: usize, height: u64) -> bool {
    statuses
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != except)
        .all(|(_, s)| s.as_ref().is_some_and(|s| s.height >= height))
}

/// The embedded stores of `indexes`, read-only.
pub fn file_stores(dir: &Path, indexes: impl IntoIterator<Item = usize>) -> Vec<FileStore> {
    indexes
        .into_iter()
        .map(|i| FileStore::open_read_only(&dir.join(format!("data-{}/store", i + 1))).unwrap())
        .collect()
}

/// [`assert_one_chain`] over the embedded stores of every validator under `dir`.
pub fn assert_one_file_chain(dir: &Path, tip: u64) -> u64 {
    let stores = file_stores(dir, 0..VALIDATORS);
    assert_one_chain(
        &stores
            .iter()
            .map(|s| s as &dyn BlockStore)
            .collect::<Vec<_>>(),
        tip,
    )
}

/// Every store holds the same block at their common applied height, which is at least `tip`;
/// returns that height.
pub fn assert_one_chain(stores: &[&dyn BlockStore], tip: u64) -> u64 {
    let heights: Vec<u64> = stores.iter().map(|s| s.applied_height().unwrap()).collect();
    let common = *heights.iter().min().unwrap();
    assert!(common >= tip, "applied heights {heights:?}, tip {tip}");
    let hash = stores[0].block_hash(common).unwrap();
    for store in stores {
        assert_eq!(store.block_hash(common).unwrap(), hash);
    }
    common
}

/// The network's genesis configuration.
pub fn genesis(dir: &Path) -> GenesisConfig {
    serde_json::from_str(&std::fs::read_to_string(dir.join("genesis.json")).unwrap()).unwrap()
}
