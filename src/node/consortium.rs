//! A gateway settling on the consortium ledger: a client of the validators' API
//! (`rempart.v1.Validator`, served by `rempart validator`).
//!
//! With `[consortium]` configured, the node does not certify its own blocks. Its settler still
//! builds, gates, signs and dry-runs each batch against its copy of the ledger, then submits
//! the batches to every validator (validators do not gossip transactions; whichever proposes
//! next packs them) and waits until one answers that a decided block carrying them is
//! committed. The node's copy of the ledger follows the chain by pulling committed blocks
//! ([`ConsortiumClient::blocks`]) and committing them into its own `Replica`, which checks each
//! block's hash chain, its commit certificate (2f+1 signatures of the genesis membership) and
//! executes it: no validator's answer is trusted as such. The Ledger service and statements
//! answer from that copy.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rempart_proto::v1 as pb;
use rempart_proto::v1::validator_client::ValidatorClient;
use settlement::block::CommittedBlock;
use settlement::codec::Writer;
use settlement::ledger::Batch;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::errors::detail_of;

/// Validators a gateway may name at most.
pub const VALIDATORS_MAX: usize = 64;
/// How long one submission attempt waits for the commit on each validator.
const SUBMIT_WAIT_MS: u32 = 3_000;
/// How long a batch is resubmitted before the settler gives up on it for now (its trades are
/// retried later; a deposit's caller gets an error).
pub const SUBMIT_DEADLINE: Duration = Duration::from_secs(30);
/// Per-request timeout of the validator API (above the commit wait).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Largest GetBlocks answer accepted (the validator sends about 4 MiB at most).
const BLOCKS_MESSAGE_MAX: usize = 16 * 1024 * 1024;
/// Validator reject codes a resubmission cannot cure (malformed, empty, too large, refused for
/// want of authority): a defect of this node, reported rather than retried.
const PERMANENT_CODES: [u32; 4] = [9101, 9103, 9104, 9105];
const AUTHORITY_CODES: std::ops::RangeInclusive<u32> = 9110..=9199;

/// `[consortium]`: the consortium ledger the gateway settles on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsortiumOptions {
    /// The consortium's genesis (validators' certificates, trusted CAs, gate keys); it must
    /// list this node's compliance gate key.
    pub genesis_file: PathBuf,
    /// Each validator's client API, `host:port` (or a full `http://` / `https://` URI).
    pub validators: Vec<String>,
    /// TLS towards the validators (their API's `api_tls`); `host:port` then means https.
    pub tls: Option<ConsortiumTls>,
}

/// TLS towards the validators: the CA their certificates chain to and, for mutual TLS, this
/// custodian's certificate and key (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsortiumTls {
    pub ca: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The name the validators' certificates carry, if it is not the address's host.
    pub domain: Option<String>,
}

impl ConsortiumOptions {
    /// Checks the options (at start, with a clear message).
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.validators.is_empty() {
            anyhow::bail!("consortium.validators is empty: name each validator's API address");
        }
        if self.validators.len() > VALIDATORS_MAX {
            anyhow::bail!(
                "consortium.validators names {} validators; at most {VALIDATORS_MAX}",
                self.validators.len()
            );
        }
        if let Some(tls) = &self.tls {
            if tls.cert.is_some() != tls.key.is_some() {
                anyhow::bail!("consortium.tls needs both cert and key (or neither)");
            }
            for (what, file) in [
                ("ca", Some(&tls.ca)),
                ("cert", tls.cert.as_ref()),
                ("key", tls.key.as_ref()),
            ] {
                if let Some(file) = file
                    && !file.is_file()
                {
                    anyhow::bail!("consortium.tls.{what} {} does not exist", file.display());
                }
            }
        }
        for v in &self.validators {
            endpoint(v, None)?;
        }
        if !self.genesis_file.is_file() {
            anyhow::bail!(
                "consortium.genesis_file {} does not exist",
                self.genesis_file.display()
            );
        }
        Ok(())
    }
}

fn endpoint(address: &str, tls: Option<&ClientTlsConfig>) -> anyhow::Result<Endpoint> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let uri = if address.contains("://") {
        address.to_string()
    } else {
        format!("{scheme}://{address}")
    };
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|e| anyhow::anyhow!("consortium validator {address:?}: {e}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT);
    match tls {
        Some(tls) => endpoint
            .tls_config(tls.clone())
            .map_err(|e| anyhow::anyhow!("consortium validator {address:?}: TLS: {e}")),
        None => Ok(endpoint),
    }
}

fn client_tls(tls: &ConsortiumTls) -> anyhow::Result<ClientTlsConfig> {
    let read = |what: &str, path: &PathBuf| {
        std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("consortium.tls.{what} {}: {e}", path.display()))
    };
    let mut config =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("ca", &tls.ca)?));
    if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
        config = config.identity(Identity::from_pem(read("cert", cert)?, read("key", key)?));
    }
    if let Some(domain) = &tls.domain {
        config = config.domain_name(domain.clone());
    }
    Ok(config)
}

/// Why a submission did not settle.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// A validator refused the batch for good (its code and message): this node built
    /// something the consortium will never accept.
    #[error("validator refused the batch: {code} {message}")]
    Refused { code: u32, message: String },
    /// No validator answered committed before the deadline.
    #[error("no validator committed the batch within {0:?} (last answers: {1})")]
    Timeout(Duration, String),
}

/// Blocks one validator served, and what it said of its height.
#[derive(Debug)]
pub struct ServedBlocks {
    pub blocks: Vec<CommittedBlock>,
    /// Its committed height when it answered.
    pub height: u64,
    /// Which validator (index in the configuration) served them.
    pub validator: usize,
}

/// The validators' API, one lazily connected channel each (tonic reconnects on its own).
#[derive(Debug)]
pub struct ConsortiumClient {
    addresses: Vec<String>,
    clients: Vec<ValidatorClient<Channel>>,
    /// The validator asked for blocks first (the last that answered).
    preferred: AtomicUsize,
}

/// A batch in settlement's canonical encoding (what validators decode and controllers sign
/// over).
pub fn encode_batch(batch: &Batch) -> Vec<u8> {
    let mut w = Writer::new();
    batch.encode(&mut w);
    w.into_bytes()
}

impl ConsortiumClient {
    /// Channels to every validator (no connection is made yet).
    pub fn new(options: &ConsortiumOptions) -> anyhow::Result<ConsortiumClient> {
        let tls = options.tls.as_ref().map(client_tls).transpose()?;
        let mut clients = Vec::new();
        for address in &options.validators {
            let channel = endpoint(address, tls.as_ref())?.connect_lazy();
            clients
                .push(ValidatorClient::new(channel).max_decoding_message_size(BLOCKS_MESSAGE_MAX));
        }
        Ok(ConsortiumClient {
            addresses: options.validators.clone(),
            clients,
            preferred: AtomicUsize::new(0),
        })
    }

    /// Submits `batch` to every validator until f+1 of them (f = (n-1)/3 for the n configured)
    /// answer that a block carrying it is committed: at least one honest validator then has,
    /// so one faulty validator answering at once cannot make the caller give up on it early.
    /// Idempotent: validators queue a batch once and the ledger settles each transfer id once.
    /// Full mempools and unreachable validators are retried until [`SUBMIT_DEADLINE`].
    pub async fn submit(&self, batch: &Batch) -> Result<(), SubmitError> {
        let bytes = encode_batch(batch);
        let started = Instant::now();
        let mut pause = Duration::from_millis(20);
        let quorum = (self.clients.len() - 1) / 3 + 1;
        let mut committed = vec![false; self.clients.len()];
        loop {
            let mut attempts = tokio::task::JoinSet::new();
            for (index, client) in self.clients.iter().enumerate() {
                let mut client = client.clone();
                let request = pb::SubmitBatchRequest {
                    batch: bytes.clone(),
                    wait_ms: SUBMIT_WAIT_MS,
                };
                attempts.spawn(async move { (index, client.submit_batch(request).await) });
            }
            let mut answers = Vec::new();
            while let Some(joined) = attempts.join_next().await {
                let Ok((index, answer)) = joined else {
                    continue;
                };
                match answer {
                    Ok(response) if response.get_ref().committed => {
                        // A hint, not a proof: the caller then follows the chain (verifying
                        // every block) until it carries the batch. The validators that
                        // answered do not become the block source (a liar could forward
                        // submissions honestly and still serve altered blocks).
                        committed[index] = true;
                        if committed.iter().filter(|c| **c).count() >= quorum {
                            attempts.abort_all();
                            return Ok(());
                        }
                    }
                    Ok(_) => answers.push(format!("{}: queued", self.addresses[index])),
                    Err(status) => {
                        let code = detail_of(&status).map(|d| d.code).unwrap_or(0);
                        if PERMANENT_CODES.contains(&code) || AUTHORITY_CODES.contains(&code) {
                            return Err(SubmitError::Refused {
                                code,
                                message: status.message().to_string(),
                            });
                        }
                        answers.push(format!(
                            "{}: {:?} {}",
                            self.addresses[index],
                            status.code(),
                            status.message()
                        ));
                    }
                }
            }
            if started.elapsed() >= SUBMIT_DEADLINE {
                return Err(SubmitError::Timeout(SUBMIT_DEADLINE, answers.join("; ")));
            }
            tracing::debug!(answers = %answers.join("; "), "batch not committed yet; resubmitting");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Stops asking `validator` first (it served a block that does not verify): the next one
    /// is asked first from now on.
    pub fn distrust(&self, validator: usize) {
        let next = (validator + 1) % self.clients.len();
        let _ =
            self.preferred
                .compare_exchange(validator, next, Ordering::Relaxed, Ordering::Relaxed);
        tracing::error!(
            validator = %self.addresses[validator],
            "a validator served a block that does not verify; asking the others first"
        );
    }

    /// The smallest `block_entries_max` among the validators that answer (a batch above it
    /// would be refused by some), or None if none answers.
    pub async fn block_entries_max(&self) -> Option<usize> {
        let mut smallest: Option<usize> = None;
        for client in &self.clients {
            let mut client = client.clone();
            if let Ok(status) = client.get_status(pb::GetValidatorStatusRequest {}).await {
                let max = status.into_inner().block_entries_max as usize;
                if max > 0 {
                    smallest = Some(smallest.map_or(max, |s| s.min(max)));
                }
            }
        }
        smallest
    }

    /// Committed blocks from `from` on (at most 64 per call), from the first validator that
    /// answers, starting with the last that did; with the committed height it reported. The
    /// blocks are decoded, not verified: the caller's replica verifies them.
    pub async fn blocks(&self, from: u64) -> anyhow::Result<ServedBlocks> {
        let n = self.clients.len();
        let first = self.preferred.load(Ordering::Relaxed) % n;
        let mut errors = Vec::new();
        for k in 0..n {
            let index = (first + k) % n;
            let mut client = self.clients[index].clone();
            let answer = client
                .get_blocks(pb::GetBlocksRequest {
                    from_height: from,
                    max_blocks: 0,
                })
                .await;
            match answer {
                Ok(response) => {
                    let response = response.into_inner();
                    let mut blocks = Vec::with_capacity(response.blocks.len());
                    let mut bad = None;
                    for (i, bytes) in response.blocks.iter().enumerate() {
                        match CommittedBlock::decode(bytes) {
                            Ok(block) if block.block.header.height == from + i as u64 => {
                                blocks.push(block)
                            }
                            Ok(block) => {
                                bad = Some(format!(
                                    "sent height {} for {}",
                                    block.block.header.height,
                                    from + i as u64
                                ));
                                break;
                            }
                            Err(e) => {
                                bad = Some(format!("undecodable block: {e}"));
                                break;
                            }
                        }
                    }
                    match bad {
                        None => {
                            self.preferred.store(index, Ordering::Relaxed);
                            return Ok(ServedBlocks {
                                blocks,
                                height: response.height,
                                validator: index,
                            });
                        }
                        Some(reason) => {
                            tracing::warn!(validator = %self.addresses[index], %reason, "bad block answer");
                            errors.push(format!("{}: {reason}", self.addresses[index]));
                        }
                    }
                }
                Err(status) if status.code() == Code::ResourceExhausted => {
                    errors.push(format!("{}: busy", self.addresses[index]));
                }
                Err(status) => {
                    errors.push(format!("{}: {}", self.addresses[index], status.message()));
                }
            }
        }
        anyhow::bail!("no validator served blocks: {}", errors.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_with_clear_messages() {
        let dir = tempfile::tempdir().unwrap();
        let genesis = dir.path().join("genesis.json");
        std::fs::write(&genesis, "{}").unwrap();
        let ok = ConsortiumOptions {
            genesis_file: genesis.clone(),
            validators: vec!["127.0.0.1:7001".into(), "https://v2.example:443".into()],
            tls: None,
        };
        ok.validate().unwrap();
        let empty = ConsortiumOptions {
            validators: vec![],
            ..ok.clone()
        };
        assert!(empty.validate().unwrap_err().to_string().contains("empty"));
        let missing = ConsortiumOptions {
            genesis_file: dir.path().join("absent.json"),
            ..ok.clone()
        };
        assert!(
            missing
                .validate()
                .unwrap_err()
                .to_string()
                .contains("does not exist")
        );
        let bad = ConsortiumOptions {
            validators: vec!["not a uri at all".into()],
            ..ok.clone()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("not a uri")
        );
        let many = ConsortiumOptions {
            validators: (0..=VALIDATORS_MAX)
                .map(|i| format!("127.0.0.1:{}", 7000 + i))
                .collect(),
            ..ok.clone()
        };
        assert!(many.validate().unwrap_err().to_string().contains("at most"));
        let half_tls = ConsortiumOptions {
            tls: Some(ConsortiumTls {
                ca: genesis.clone(),
                cert: Some(genesis.clone()),
                key: None,
                domain: None,
            }),
            ..ok.clone()
        };
        assert!(
            half_tls
                .validate()
                .unwrap_err()
                .to_string()
                .contains("both cert and key")
        );
        let no_ca = ConsortiumOptions {
            tls: Some(ConsortiumTls {
                ca: dir.path().join("absent-ca.pem"),
                cert: None,
                key: None,
                domain: None,
            }),
            ..ok
        };
        assert!(no_ca.validate().unwrap_err().to_string().contains("tls.ca"));
    }
}
