//! `rempart validator --config validator.json`: one consortium validator (the same node as
//! `rempart-validator`, `rempart_consensus::runner`) serving the client API on its
//! configuration's `api_listen`: gRPC service `rempart.v1.Validator` (proto/rempart/v1/
//! validator.proto), through which custodians hand signed, gated batches to the validator and
//! wait for their commit.
//!
//! A batch is checked before it is queued: it must decode (settlement's canonical encoding),
//! hold at most a block's worth of entries, and every transfer must carry a gate approval that
//! verifies against the genesis gate keys and a controller signature (its own or the batch's).
//! What cannot settle whatever the ledger's state is refused with a stable code rather than
//! queued; the rest (controller keys, balances, limits, idempotency) is the ledger's, whose
//! results every validator computes alike.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rempart_consensus::config::ValidatorConfig;
use rempart_consensus::mempool::{Mempool, SubmitRefusal, batch_id};
use rempart_consensus::node::{BlockReader, NodeStatus, READ_BLOCKS_MAX, ReadBlocksError};
use rempart_consensus::runner;
use rempart_proto::v1 as pb;
use settlement::codec::Reader;
use settlement::ledger::Batch;
use settlement::ledger::verified::{Preverifier, SignatureCache};
use tokio::sync::watch;
use tonic::{Code, Request, Response, Status};

use crate::node::errors::build_status;

/// Bytes of one submitted batch at most.
pub const BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Longest commit wait a submitter may ask for.
pub const WAIT_MS_MAX: u32 = 30_000;
/// Concurrent requests per client connection.
const CONNECTION_CONCURRENCY_MAX: usize = 64;

/// Stable reject codes of the Validator service (the API's 9100-9199 range).
pub mod codes {
    /// The batch bytes do not decode.
    pub const MALFORMED_BATCH: u32 = 9101;
    /// The mempool is full: retry later.
    pub const MEMPOOL_FULL: u32 = 9102;
    /// The batch holds nothing.
    pub const EMPTY_BATCH: u32 = 9103;
    /// The batch alone is larger than a block may be.
    pub const BATCH_TOO_LARGE: u32 = 9104;
    /// `wait_ms` above [`super::WAIT_MS_MAX`].
    pub const WAIT_OUT_OF_RANGE: u32 = 9105;
    /// Too many block reads are waiting on this validator: retry later.
    pub const BLOCKS_BUSY: u32 = 9106;
    /// The validator stopped or cannot read its block store.
    pub const BLOCKS_UNAVAILABLE: u32 = 9107;
    /// Added to settlement's result code of a transfer refused for want of authority at
    /// submission (9116 gate decision missing, 9117 gate key unknown, 9118 gate signature
    /// invalid, 9119 signature missing).
    pub const AUTHORITY_BASE: u32 = 9110;
}

/// `rempart validator` arguments.
#[derive(Debug, clap::Args)]
pub struct ValidatorArgs {
    /// The validator's configuration file (JSON, as for `rempart-validator`, plus
    /// `api_listen`).
    #[arg(long)]
    pub config: PathBuf,
}

fn refusal(code: Code, number: u32, name: &str, message: String, field: &str) -> Status {
    let retry_after_ms = if code == Code::ResourceExhausted {
        100
    } else {
        0
    };
    build_status(
        code,
        pb::ErrorDetail {
            code: number,
            name: name.into(),
            message,
            field: field.into(),
            retry_after_ms,
        },
    )
}

/// The Validator service.
#[derive(Clone)]
pub struct ValidatorSvc {
    validator_id: u64,
    mempool: Arc<Mempool>,
    status: watch::Receiver<NodeStatus>,
    gate: Arc<Preverifier>,
    blocks: BlockReader,
    block_entries_max: u32,
}

impl std::fmt::Debug for ValidatorSvc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidatorSvc")
            .field("validator_id", &self.validator_id)
            .finish_non_exhaustive()
    }
}

impl ValidatorSvc {
    /// Decodes and checks a submitted batch: everything that can be refused without the
    /// ledger's state.
    fn check(&self, bytes: &[u8]) -> Result<Batch, Status> {
        if bytes.len() > BATCH_BYTES_MAX {
            return Err(refusal(
                Code::InvalidArgument,
                codes::BATCH_TOO_LARGE,
                "BATCH_TOO_LARGE",
                format!(
                    "the batch is {} bytes; at most {BATCH_BYTES_MAX}",
                    bytes.len()
                ),
                "batch",
            ));
        }
        let mut reader = Reader::new(bytes);
        let batch = Batch::decode(&mut reader)
            .and_then(|batch| reader.finish().map(|()| batch))
            .map_err(|error| {
                refusal(
                    Code::InvalidArgument,
                    codes::MALFORMED_BATCH,
                    "MALFORMED_BATCH",
                    format!("the batch does not decode: {error}"),
                    "batch",
                )
            })?;
        if let Some((index, result)) = self.gate.authority_refusal(&batch) {
            return Err(refusal(
                Code::InvalidArgument,
                codes::AUTHORITY_BASE + u32::from(result.code()),
                &crate::node::errors::variant_name(&result),
                format!(
                    "transfer {index} of the batch is refused before queueing: {}",
                    result.message()
                ),
                &format!("batch.entries[{index}]"),
            ));
        }
        Ok(batch)
    }
}

fn mempool_status(refusal_: SubmitRefusal) -> Status {
    let (code, number, name) = match refusal_ {
        SubmitRefusal::Full => (Code::ResourceExhausted, codes::MEMPOOL_FULL, "MEMPOOL_FULL"),
        SubmitRefusal::Empty => (Code::InvalidArgument, codes::EMPTY_BATCH, "EMPTY_BATCH"),
        SubmitRefusal::TooLarge => (
            Code::InvalidArgument,
            codes::BATCH_TOO_LARGE,
            "BATCH_TOO_LARGE",
        ),
        // Handled by the caller (an idempotent resubmission); never reaches a client.
        SubmitRefusal::Duplicate => (Code::Internal, 9199, "INTERNAL"),
    };
    refusal(code, number, name, refusal_.message().into(), "batch")
}

#[tonic::async_trait]
impl pb::validator_server::Validator for ValidatorSvc {
    async fn submit_batch(
        &self,
        request: Request<pb::SubmitBatchRequest>,
    ) -> Result<Response<pb::SubmitBatchResponse>, Status> {
        let request = request.into_inner();
        if request.wait_ms > WAIT_MS_MAX {
            return Err(refusal(
                Code::InvalidArgument,
                codes::WAIT_OUT_OF_RANGE,
                "WAIT_OUT_OF_RANGE",
                format!("wait_ms is {}; at most {WAIT_MS_MAX}", request.wait_ms),
                "wait_ms",
            ));
        }
        // Signature checks cost CPU: off the async workers.
        let svc = self.clone();
        let batch = tokio::task::spawn_blocking(move || svc.check(&request.batch))
            .await
            .map_err(|e| Status::internal(format!("batch check: {e}")))??;
        let id = batch_id(&batch);
        if !self.mempool.is_committed(&id) {
            match self.mempool.submit(batch) {
                Ok(()) | Err(SubmitRefusal::Duplicate) => {}
                Err(other) => return Err(mempool_status(other)),
            }
        }
        let committed = self.mempool.is_committed(&id)
            || (request.wait_ms > 0
                && self
                    .mempool
                    .wait_committed(&id, Duration::from_millis(u64::from(request.wait_ms)))
                    .await);
        Ok(Response::new(pb::SubmitBatchResponse {
            batch_id: hex::encode(id),
            committed,
            height: self.status.borrow().height,
        }))
    }

    async fn get_status(
        &self,
        _request: Request<pb::GetValidatorStatusRequest>,
    ) -> Result<Response<pb::ValidatorStatus>, Status> {
        let status = self.status.borrow().clone();
        Ok(Response::new(pb::ValidatorStatus {
            validator_id: self.validator_id,
            height: status.height,
            state_hash: hex::encode(status.state_hash),
            head_hash: hex::encode(status.head_hash),
            transfers: status.transfers as u64,
            block_entries_max: self.block_entries_max,
        }))
    }

    async fn get_blocks(
        &self,
        request: Request<pb::GetBlocksRequest>,
    ) -> Result<Response<pb::GetBlocksResponse>, Status> {
        let request = request.into_inner();
        let max = match request.max_blocks {
            0 => READ_BLOCKS_MAX,
            n => n as usize,
        };
        let blocks = self
            .blocks
            .read_blocks(request.from_height, max)
            .await
            .map_err(|error| match error {
                ReadBlocksError::Busy => refusal(
                    Code::ResourceExhausted,
                    codes::BLOCKS_BUSY,
                    "BLOCKS_BUSY",
                    error.to_string(),
                    "",
                ),
                other => refusal(
                    Code::Unavailable,
                    codes::BLOCKS_UNAVAILABLE,
                    "BLOCKS_UNAVAILABLE",
                    other.to_string(),
                    "",
                ),
            })?;
        Ok(Response::new(pb::GetBlocksResponse {
            blocks: blocks.iter().map(|b| b.encode()).collect(),
            height: self.status.borrow().height,
        }))
    }
}

/// Runs the validator until it fails or the process is asked to stop.
pub fn run(args: ValidatorArgs) -> anyhow::Result<()> {
    runner::init_tracing();
    let config = ValidatorConfig::load(&args.config)?;
    let api_listen: Option<SocketAddr> = config
        .api_listen
        .as_deref()
        .map(|text| {
            text.parse()
                .with_context(|| format!("api_listen {text:?} is not an address:port"))
        })
        .transpose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(async move {
        let genesis = config.genesis()?;
        let running = runner::start(&config).await?;
        if let Some(addr) = api_listen {
            let svc = ValidatorSvc {
                validator_id: config.validator_id,
                mempool: Arc::clone(&running.mempool),
                status: running.status.clone(),
                gate: Arc::new(Preverifier::new(
                    &genesis.gate_keys,
                    Arc::new(SignatureCache::with_capacity(1)),
                )),
                blocks: running.block_reader(),
                block_entries_max: u32::try_from(config.block_entries_max.max(1))
                    .unwrap_or(u32::MAX),
            };
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("api_listen {addr}"))?;
            // Health and reflection (v1 and v1alpha), so generic gRPC tools work unaided.
            let (health_reporter, health) = tonic_health::server::health_reporter();
            for name in rempart_proto::VALIDATOR_SERVICE_NAMES {
                health_reporter
                    .set_service_status(*name, tonic_health::ServingStatus::Serving)
                    .await;
            }
            let reflection = || {
                tonic_reflection::server::Builder::configure()
                    .register_encoded_file_descriptor_set(
                        rempart_proto::VALIDATOR_FILE_DESCRIPTOR_SET,
                    )
                    .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            };
            let mut builder = tonic::transport::Server::builder();
            if let Some(tls) = &config.api_tls {
                builder = builder.tls_config(crate::node::server_tls(&crate::node::TlsFiles {
                    cert: tls.cert.clone(),
                    key: tls.key.clone(),
                    client_ca: tls.client_ca.clone(),
                })?)?;
            }
            let server = builder
                .concurrency_limit_per_connection(CONNECTION_CONCURRENCY_MAX)
                .add_service(health)
                .add_service(reflection().build_v1()?)
                .add_service(reflection().build_v1alpha()?)
                .add_service(
                    pb::validator_server::ValidatorServer::new(svc)
                        .max_decoding_message_size(BATCH_BYTES_MAX + 1024),
                )
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
            tokio::spawn(async move {
                if let Err(error) = server.await {
                    tracing::error!(%error, "validator API stopped");
                }
            });
            eprintln!("validator {} API on {addr}", config.validator_id);
        }
        tokio::select! {
            outcome = runner::follow(&config, &running) => outcome,
            () = crate::node::wait_for_signal() => Ok(()),
        }
    })
}
