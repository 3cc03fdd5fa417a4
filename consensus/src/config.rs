//! The validator binary's configuration file (JSON): who it is, where its key, genesis and data
//! live, where it listens and who its peers are. Relative paths are taken from the directory of
//! the configuration file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use settlement::membership::{GenesisConfig, ValidatorId};

use crate::node::{BLOCK_ENTRIES_DEFAULT, NodeOptions};

/// Bytes of a configuration or genesis file at most.
pub const CONFIG_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// A deterministic demo workload the validator feeds its own mempool with (every validator of
/// a test network generates the same batches, as if a client had sent them to all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadConfig {
    /// Accounts to open.
    pub accounts: u64,
    /// Transfers to make.
    pub transfers: u64,
    /// Transfers per batch.
    pub batch: usize,
}

/// Where a validator keeps its chain in PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresStoreConfig {
    /// A libpq-style connection string (`host=127.0.0.1 user=postgres dbname=ledger`).
    pub url: String,
    /// The schema of this validator's tables (a plain lower-case identifier; created if absent).
    pub schema: String,
}

/// `validator.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorConfig {
    /// This validator's id in the genesis membership.
    pub validator_id: ValidatorId,
    /// File holding its Ed25519 seed (64 hex digits).
    pub key_file: PathBuf,
    /// The genesis configuration (settlement's `genesis.json`).
    pub genesis_file: PathBuf,
    /// Directory of its block store (`store/`) and consensus WAL (`wal/`).
    pub data_dir: PathBuf,
    /// Listen address, a multiaddr (`/ip4/127.0.0.1/tcp/27001`).
    pub listen: String,
    /// The other validators' multiaddrs.
    pub peers: Vec<String>,
    /// If set, a JSON status (height, state hash) is written here after every commit.
    #[serde(default)]
    pub status_file: Option<PathBuf>,
    /// If set, the validator feeds this workload to its mempool.
    #[serde(default)]
    pub workload: Option<WorkloadConfig>,
    /// Transfers per block at most.
    #[serde(default = "default_block_entries")]
    pub block_entries_max: usize,
    /// Propose timeout of round 0, in milliseconds (others scale from the local defaults).
    #[serde(default)]
    pub propose_timeout_ms: Option<u64>,
    /// How long a proposer with nothing ready waits for a batch before proposing an empty
    /// block, in milliseconds (default 100). A batch that arrives ends the wait at once, so a
    /// longer wait costs no latency under load; it makes an idle chain grow more slowly. At
    /// most half the propose timeout, so the others still receive the proposal in time.
    #[serde(default)]
    pub empty_block_wait_ms: Option<u64>,
    /// Where `rempart validator` serves its client API (gRPC service `rempart.v1.Validator`:
    /// batch submission, status), e.g. `127.0.0.1:28001`; `rempart-validator` serves none.
    #[serde(default)]
    pub api_listen: Option<String>,
    /// TLS of the client API (PEM files; relative paths from the configuration's directory).
    /// With `client_ca`, only clients presenting a certificate from that CA are served
    /// (mutual TLS: each custodian institution's certificate).
    #[serde(default)]
    pub api_tls: Option<ApiTlsConfig>,
    /// Keep the chain in PostgreSQL instead of the embedded block store under `data_dir`
    /// (the WAL and evidence logs stay under `data_dir`).
    #[serde(default)]
    pub postgres: Option<PostgresStoreConfig>,
    /// Misbehave on purpose (only in builds with the `byzantine` feature, i.e. this crate's
    /// tests; elsewhere the key is refused as unknown).
    #[cfg(feature = "byzantine")]
    #[serde(default)]
    pub byzantine: Option<crate::byzantine::ByzantineOptions>,
}

/// TLS files of a validator's client API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTlsConfig {
    /// The validator's certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// CA whose client certificates are required (PEM); without it any client is served.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

fn default_block_entries() -> usize {
    BLOCK_ENTRIES_DEFAULT
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// A file is too large.
    #[error("{0}: larger than the 16 MiB a configuration may be")]
    TooLarge(String),
    /// A file is not valid JSON of the expected shape.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: String,
        /// The error.
        source: serde_json::Error,
    },
    /// An address is not a multiaddr.
    #[error("not a multiaddr: {0}")]
    Address(String),
    /// A setting is out of its range.
    #[error("{0}")]
    Invalid(String),
}

fn read_bounded(path: &Path) -> Result<String, ConfigError> {
    let shown = path.display().to_string();
    let len = std::fs::metadata(path)
        .map_err(|source| ConfigError::Io {
            path: shown.clone(),
            source,
        })?
        .len();
    if len > CONFIG_BYTES_MAX {
        return Err(ConfigError::TooLarge(shown));
    }
    std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: shown,
        source,
    })
}

fn parse_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ConfigError> {
    serde_json::from_str(&read_bounded(path)?).map_err(|source| ConfigError::Json {
        path: path.display().to_string(),
        source,
    })
}

impl ValidatorConfig {
    /// Loads `path`, resolving relative paths against its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut config: Self = parse_json(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        for file in [
            &mut config.key_file,
            &mut config.genesis_file,
            &mut config.data_dir,
        ] {
            if file.is_relative() {
                *file = base.join(&*file);
            }
        }
        if let Some(status) = &mut config.status_file
            && status.is_relative()
        {
            *status = base.join(&*status);
        }
        if let Some(tls) = &mut config.api_tls {
            for file in [
                Some(&mut tls.cert),
                Some(&mut tls.key),
                tls.client_ca.as_mut(),
            ]
            .into_iter()
            .flatten()
            {
                if file.is_relative() {
                    *file = base.join(&*file);
                }
            }
        }
        Ok(config)
    }

    /// The genesis configuration it names.
    pub fn genesis(&self) -> Result<GenesisConfig, ConfigError> {
        parse_json(&self.genesis_file)
    }

    /// The node options it implies.
    pub fn node_options(&self) -> Result<NodeOptions, ConfigError> {
        let parse = |text: &String| text.parse().map_err(|_| ConfigError::Address(text.clone()));
        let listen = parse(&self.listen)?;
        let peers = self.peers.iter().map(parse).collect::<Result<_, _>>()?;
        let mut options = NodeOptions::local(
            format!("validator-{}", self.validator_id),
            listen,
            peers,
            self.data_dir.join("wal"),
        );
        options.block_entries_max = self.block_entries_max.max(1);
        if let Some(ms) = self.propose_timeout_ms {
            options.timeouts.propose = Duration::from_millis(ms);
        }
        if let Some(ms) = self.empty_block_wait_ms {
            let wait = Duration::from_millis(ms);
            if wait > options.timeouts.propose / 2 {
                return Err(ConfigError::Invalid(format!(
                    "empty_block_wait_ms {ms} is more than half the propose timeout ({} ms)",
                    options.timeouts.propose.as_millis()
                )));
            }
            options.empty_block_wait = wait;
        }
        #[cfg(feature = "byzantine")]
        {
            options.byzantine = self.byzantine.clone();
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_against_the_config_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("validator.json");
        std::fs::write(
            &path,
            r#"{"validator_id": 2, "key_file": "key.hex", "genesis_file": "/etc/genesis.json",
                "data_dir": "data", "listen": "/ip4/127.0.0.1/tcp/27001",
                "peers": ["/ip4/127.0.0.1/tcp/27002"]}"#,
        )
        .unwrap();
        let config = ValidatorConfig::load(&path).unwrap();
        assert_eq!(config.key_file, dir.path().join("key.hex"));
        assert_eq!(config.genesis_file, PathBuf::from("/etc/genesis.json"));
        assert_eq!(config.block_entries_max, BLOCK_ENTRIES_DEFAULT);
        let options = config.node_options().unwrap();
        assert_eq!(options.peers.len(), 1);
        std::fs::write(&path, r#"{"validator_id": 2, "surprise": 1}"#).unwrap();
        assert!(ValidatorConfig::load(&path).is_err());
    }

    #[test]
    fn the_api_tls_files_resolve_against_the_config_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("validator.json");
        std::fs::write(
            &path,
            r#"{"validator_id": 1, "key_file": "k", "genesis_file": "g", "data_dir": "d",
                "listen": "/ip4/127.0.0.1/tcp/27001", "peers": [],
                "api_listen": "127.0.0.1:28001",
                "api_tls": {"cert": "api.pem", "key": "/secret/api.key", "client_ca": "ca.pem"}}"#,
        )
        .unwrap();
        let tls = ValidatorConfig::load(&path).unwrap().api_tls.unwrap();
        assert_eq!(tls.cert, dir.path().join("api.pem"));
        assert_eq!(tls.key, PathBuf::from("/secret/api.key"));
        assert_eq!(tls.client_ca, Some(dir.path().join("ca.pem")));
        std::fs::write(
            &path,
            r#"{"validator_id": 1, "key_file": "k", "genesis_file": "g", "data_dir": "d",
                "listen": "/ip4/127.0.0.1/tcp/27001", "peers": [],
                "api_tls": {"cert": "a", "key": "b", "typo": "c"}}"#,
        )
        .unwrap();
        assert!(
            ValidatorConfig::load(&path).is_err(),
            "unknown TLS keys are refused"
        );
    }

    #[test]
    fn the_empty_block_wait_is_bounded_by_the_propose_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("validator.json");
        let with = |extra: &str| {
            std::fs::write(
                &path,
                format!(
                    r#"{{"validator_id": 1, "key_file": "k", "genesis_file": "g", "data_dir": "d",
                        "listen": "/ip4/127.0.0.1/tcp/27001", "peers": [] {extra}}}"#
                ),
            )
            .unwrap();
            ValidatorConfig::load(&path).unwrap().node_options()
        };
        assert_eq!(
            with("").unwrap().empty_block_wait,
            Duration::from_millis(100)
        );
        assert_eq!(
            with(r#", "empty_block_wait_ms": 400"#)
                .unwrap()
                .empty_block_wait,
            Duration::from_millis(400)
        );
        let refused = with(r#", "empty_block_wait_ms": 600"#)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("half the propose timeout"), "{refused}");
        assert!(with(r#", "propose_timeout_ms": 3000, "empty_block_wait_ms": 1500"#).is_ok());
    }
}
