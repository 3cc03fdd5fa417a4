//! Four `rempart-validator` processes on 127.0.0.1: one is killed with SIGKILL and restarted,
//! then the proposer of the height in progress is; each restarted validator catches up by
//! block sync, and all end with the same chain holding every transfer once.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rempart_consensus::cluster::{free_port, validator_seed};
use rempart_consensus::config::{ValidatorConfig, WorkloadConfig};
use settlement::membership::fixture::Consortium;
use settlement::replica::Replica;
use settlement::store::BlockStore;
use settlement::store::file::FileStore;

const VALIDATORS: usize = 4;
const TRANSFERS: u64 = 2_000;
/// Generous: debug builds on a loaded CI machine. Waits end as soon as their condition holds.
const WAIT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, PartialEq)]
struct Status {
    height: u64,
    transfers: u64,
}

struct Net {
    dir: PathBuf,
    children: Vec<Option<Child>>,
}

impl Net {
    fn config_path(&self, index: usize) -> PathBuf {
        self.dir.join(format!("validator-{}.json", index + 1))
    }

    fn status_path(&self, index: usize) -> PathBuf {
        self.dir.join(format!("status-{}.json", index + 1))
    }

    fn start(&mut self, index: usize) {
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

    fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.children[index].take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn status(&self, index: usize) -> Option<Status> {
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

    fn wait(&self, what: &str, done: impl Fn(&[Option<Status>]) -> bool) -> Duration {
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
    fn log_tails(&self) -> String {
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

    fn height(&self, index: usize) -> u64 {
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

fn setup(dir: &Path) -> Net {
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
        let config = ValidatorConfig {
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
                transfers: TRANSFERS,
                batch: 50,
            }),
            block_entries_max: 400,
            propose_timeout_ms: None,
        };
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
fn others_at(statuses: &[Option<Status>], except: usize, height: u64) -> bool {
    statuses
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != except)
        .all(|(_, s)| s.as_ref().is_some_and(|s| s.height >= height))
}

#[test]
fn validators_survive_sigkill_of_a_validator_and_of_the_proposer() {
    let dir = tempfile::tempdir().unwrap();
    let mut net = setup(dir.path());
    for index in 0..VALIDATORS {
        net.start(index);
    }
    net.wait("all validators commit", |s| others_at(s, usize::MAX, 3));

    // Kill validator 4: the other three keep deciding.
    net.kill(3);
    let at_kill = (0..3).map(|i| net.height(i)).max().unwrap_or(0);
    net.wait("three validators progress", |s| {
        others_at(s, 3, at_kill + 3)
    });
    let target = (0..3).map(|i| net.height(i)).max().unwrap_or(0);
    net.start(3);
    let catch_up = net.wait("validator 4 catches up", |s| {
        s[3].as_ref().is_some_and(|s| s.height >= target)
    });
    eprintln!("validator 4 caught up {target} blocks in {catch_up:?}");

    // Kill the proposer of the height in progress (round 0 proposer of height h is the
    // validator at index h mod 4).
    let next = (0..VALIDATORS).map(|i| net.height(i)).max().unwrap_or(0) + 1;
    let proposer = (next % VALIDATORS as u64) as usize;
    net.kill(proposer);
    let at_kill = (0..VALIDATORS)
        .filter(|i| *i != proposer)
        .map(|i| net.height(i))
        .max()
        .unwrap_or(0);
    net.wait("the others progress without the proposer", |s| {
        others_at(s, proposer, at_kill + 3)
    });
    net.start(proposer);

    // Everyone settles the whole workload and converges.
    net.wait("every transfer settled everywhere", |s| {
        s.iter()
            .all(|s| s.as_ref().is_some_and(|s| s.transfers == TRANSFERS))
    });
    let tip = (0..VALIDATORS).map(|i| net.height(i)).max().unwrap_or(0);
    net.wait("all reach the same height", |s| {
        others_at(s, usize::MAX, tip)
    });
    for index in 0..VALIDATORS {
        net.kill(index);
    }

    // Same block (hence same state hash) at the common height, and a full replay checks out.
    let genesis: settlement::membership::GenesisConfig =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("genesis.json")).unwrap())
            .unwrap();
    let stores: Vec<FileStore> = (0..VALIDATORS)
        .map(|i| {
            FileStore::open_read_only(&dir.path().join(format!("data-{}/store", i + 1))).unwrap()
        })
        .collect();
    let common = stores
        .iter()
        .map(|s| s.applied_height().unwrap())
        .min()
        .unwrap();
    assert!(common >= tip);
    let hash = stores[0].block_hash(common).unwrap();
    for store in &stores {
        assert_eq!(store.block_hash(common).unwrap(), hash);
    }
    let replica = Replica::open(
        &genesis,
        FileStore::open_read_only(&dir.path().join("data-1/store")).unwrap(),
        1,
    )
    .unwrap();
    assert_eq!(replica.ledger().transfer_count() as u64, TRANSFERS);
    replica.ledger().check_invariants_full().unwrap();
}
