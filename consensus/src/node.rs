//! A validator: Malachite's engine (network, WAL, Tendermint, block sync) wired to a settlement
//! [`Replica`]. This module answers the engine's questions (`AppMsg`): it builds proposals
//! from the mempool, streams and reassembles blocks, has the replica check every proposal
//! before the validator votes for it, and commits each decided block with its certificate
//! through the replica (applied, then stored durably) before acknowledging the decision. A
//! decision whose block never reached this validator is not committed: the height is restarted
//! (`Next::Restart`) and Malachite's block sync brings the block with its certificate.
//!
//! The replica is synchronous; its heavy calls (propose, validate, commit) run under
//! `tokio::task::block_in_place`, so a node needs the multi-threaded tokio runtime.
//!
//! Each block is executed once per validator: the proposer stages the block it builds
//! (`Replica::propose_staged`) and a voter the proposal it checks (`Replica::validate_staged`),
//! so that committing that block (the usual case) only checks its certificate and stores it.
//! [`NodeMetrics`] counts where the time goes.

use crate::misbehaviour::{EvidenceLog, InvalidProposal, precommit_equivocation};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use malachitebft_app::config::{
    ConsensusConfig, DiscoveryConfig, NodeConfig, P2pConfig, PubSubProtocol, ValuePayload,
    ValueSyncConfig,
};
use malachitebft_app::engine::host::{HeightParams, Next, SyncedValueOutcome};
use malachitebft_app::net::Multiaddr;
use malachitebft_app::types::codec::Codec;
use malachitebft_app::types::core::{
    CommitCertificate, LinearTimeouts, Round, Validity, VoteExtensionPolicy,
};
use malachitebft_app::types::sync::RawDecidedValue;
use malachitebft_app::types::{Keypair, LocallyProposedValue, ProposedValue};
use malachitebft_app_channel::{
    AppMsg, Channels, ConsensusContext, EngineHandle, NetworkContext, NetworkIdentity, NetworkMsg,
    RequestContext, Signer, SyncContext, WalContext,
};
use settlement::block::{Block, CommittedBlock};
use settlement::crypto::Hash32;
use settlement::ledger::verified::{Preverifier, SignatureCache};
use settlement::ledger::{Batch, CreateTransferResult};
use settlement::membership::{GenesisConfig, ValidatorId};
use settlement::replica::{Replica, ReplicaError};
use settlement::store::BlockStore;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::certificate;
use crate::codec::WireCodec;
use crate::context::{Address, BlockHash, BlockRef, Height, LedgerContext, ValidatorSet};
use crate::mempool::{Mempool, PreverifyJob};
use crate::signing::{LedgerVerifier, ValidatorSigner};
use crate::stream::{self, Reassembler};

/// Blocks served in one block-sync response.
pub const SYNC_BLOCKS_PER_RESPONSE_MAX: u64 = 4;
/// Undecided blocks a validator keeps (its own and others' proposals, synced blocks).
pub const UNDECIDED_BLOCKS_MAX: usize = 256;
/// How far ahead of the local clock a block's timestamp may be.
pub const CLOCK_DRIFT_MAX: Duration = Duration::from_secs(10);
/// Default transfers (and accounts) in one block.
pub const BLOCK_ENTRIES_DEFAULT: usize = 4_096;
/// Batches waiting for the pre-verifier at most (beyond, they are verified at execution).
pub const PREVERIFY_QUEUE_BATCHES_MAX: usize = 4_096;

/// How a validator runs (everything but its identity and its store).
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// A name for logs and metrics.
    pub moniker: String,
    /// Where to listen (a multiaddr, e.g. `/ip4/127.0.0.1/tcp/27000`).
    pub listen: Multiaddr,
    /// The other validators' addresses.
    pub peers: Vec<Multiaddr>,
    /// Directory of Malachite's write-ahead log (votes and proposals of the current height).
    pub wal_dir: PathBuf,
    /// Tendermint's round timeouts.
    pub timeouts: LinearTimeouts,
    /// Transfers (and accounts) in one block at most.
    pub block_entries_max: usize,
    /// How long a proposer waits for a first transfer before proposing an empty block.
    pub empty_block_wait: Duration,
    /// Threads the ledger uses to verify signatures.
    pub verify_threads: usize,
    /// Check the signatures of mempool batches as they arrive, ahead of their block (see
    /// settlement's `ledger::verified`); off, every signature is checked when its block is
    /// executed. The results are the same either way.
    pub preverify: bool,
    /// Interval of block-sync status broadcasts (how fast a lagging validator notices).
    pub sync_status_interval: Duration,
    /// Misbehave on purpose (tests of the others' defences).
    #[cfg(feature = "byzantine")]
    pub byzantine: Option<crate::byzantine::ByzantineOptions>,
}

impl NodeOptions {
    /// Options for a local cluster: short timeouts, sync status every second.
    pub fn local(
        moniker: String,
        listen: Multiaddr,
        peers: Vec<Multiaddr>,
        wal_dir: PathBuf,
    ) -> Self {
        Self {
            moniker,
            listen,
            peers,
            wal_dir,
            timeouts: LinearTimeouts {
                propose: Duration::from_millis(1_000),
                propose_delta: Duration::from_millis(250),
                prevote: Duration::from_millis(300),
                prevote_delta: Duration::from_millis(100),
                precommit: Duration::from_millis(300),
                precommit_delta: Duration::from_millis(100),
                rebroadcast: Duration::from_millis(1_600),
                max_timeout: Duration::from_secs(10),
            },
            block_entries_max: BLOCK_ENTRIES_DEFAULT,
            empty_block_wait: Duration::from_millis(100),
            verify_threads: 1,
            preverify: true,
            sync_status_interval: Duration::from_secs(1),
            #[cfg(feature = "byzantine")]
            byzantine: None,
        }
    }
}

/// What a validator reports about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeStatus {
    /// Height of the last committed block.
    pub height: u64,
    /// Ledger state hash after it.
    pub state_hash: Hash32,
    /// Its block hash.
    pub head_hash: Hash32,
    /// Transfers the ledger holds.
    pub transfers: usize,
    /// Set if the validator stopped on a fatal error.
    pub failed: Option<String>,
}

/// Where a validator's time goes: cumulative counters, updated as it works (for the benchmark
/// and for operators).
#[derive(Debug, Default)]
pub struct NodeMetrics {
    /// Blocks committed.
    pub blocks: AtomicU64,
    /// Transfers and accounts in the committed blocks.
    pub entries: AtomicU64,
    /// Proposals this validator built.
    pub proposals: AtomicU64,
    /// Time spent building them (selection, execution, state hash), microseconds.
    pub propose_us: AtomicU64,
    /// Proposals of others this validator checked (executed).
    pub validations: AtomicU64,
    /// Time spent checking them, microseconds.
    pub validate_us: AtomicU64,
    /// Time spent committing decided blocks (certificate check, staged commit or execution,
    /// durable append), microseconds.
    pub commit_us: AtomicU64,
    /// Commits whose block was staged, so not executed a second time.
    pub commits_staged: AtomicU64,
    /// Transfers and accounts whose signatures the pre-verifier checked.
    pub preverified: AtomicU64,
    /// Time the pre-verifier spent, microseconds (off the blocks' critical path).
    pub preverify_us: AtomicU64,
    /// Equivocations observed (pairs of conflicting votes of one validator); the provable
    /// ones (conflicting precommits) are in the evidence log (`misbehaviour`).
    pub equivocations: AtomicU64,
    /// Proposals refused because their block held entries without authority (ungated or
    /// unsigned transfers); each is in the invalid-proposal log with its builder.
    pub invalid_proposals: AtomicU64,
    /// Batches the proposer left out of its block and dropped from the mempool because the
    /// validators would refuse them for want of authority.
    pub unauthorised_batches: AtomicU64,
}

impl NodeMetrics {
    fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Ordering::Relaxed);
    }

    fn add_elapsed(counter: &AtomicU64, since: Instant) {
        Self::add(counter, since.elapsed().as_micros() as u64);
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        MetricsSnapshot {
            blocks: get(&self.blocks),
            entries: get(&self.entries),
            proposals: get(&self.proposals),
            propose_us: get(&self.propose_us),
            validations: get(&self.validations),
            validate_us: get(&self.validate_us),
            commit_us: get(&self.commit_us),
            commits_staged: get(&self.commits_staged),
            preverified: get(&self.preverified),
            preverify_us: get(&self.preverify_us),
        }
    }
}

/// The counters of [`NodeMetrics`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// See [`NodeMetrics::blocks`].
    pub blocks: u64,
    /// See [`NodeMetrics::entries`].
    pub entries: u64,
    /// See [`NodeMetrics::proposals`].
    pub proposals: u64,
    /// See [`NodeMetrics::propose_us`].
    pub propose_us: u64,
    /// See [`NodeMetrics::validations`].
    pub validations: u64,
    /// See [`NodeMetrics::validate_us`].
    pub validate_us: u64,
    /// See [`NodeMetrics::commit_us`].
    pub commit_us: u64,
    /// See [`NodeMetrics::commits_staged`].
    pub commits_staged: u64,
    /// See [`NodeMetrics::preverified`].
    pub preverified: u64,
    /// See [`NodeMetrics::preverify_us`].
    pub preverify_us: u64,
}

impl MetricsSnapshot {
    /// The counts since `earlier`.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            blocks: self.blocks.saturating_sub(earlier.blocks),
            entries: self.entries.saturating_sub(earlier.entries),
            proposals: self.proposals.saturating_sub(earlier.proposals),
            propose_us: self.propose_us.saturating_sub(earlier.propose_us),
            validations: self.validations.saturating_sub(earlier.validations),
            validate_us: self.validate_us.saturating_sub(earlier.validate_us),
            commit_us: self.commit_us.saturating_sub(earlier.commit_us),
            commits_staged: self.commits_staged.saturating_sub(earlier.commits_staged),
            preverified: self.preverified.saturating_sub(earlier.preverified),
            preverify_us: self.preverify_us.saturating_sub(earlier.preverify_us),
        }
    }
}

/// Why a validator cannot start or had to stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The replica (ledger, store, membership) failed.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// This validator is not in the genesis membership, or its key is not the certified one.
    #[error("validator {0} is not a voting member with this key")]
    NotAMember(ValidatorId),
    /// Malachite's engine failed.
    #[error("consensus engine: {0}")]
    Engine(String),
    /// The node needs tokio's multi-threaded runtime.
    #[error("the validator needs tokio's multi-threaded runtime")]
    Runtime,
    /// A decided block could not be committed: the validator stops.
    #[error("cannot commit height {height}: {reason}")]
    Commit {
        /// The height.
        height: u64,
        /// Why.
        reason: String,
    },
}

/// Committed blocks read at most per [`RunningNode::read_blocks`] call.
pub const READ_BLOCKS_MAX: usize = 64;
/// Encoded bytes of the blocks one [`RunningNode::read_blocks`] call returns at most (the
/// first block is returned whatever its size).
pub const READ_BLOCKS_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Block reads waiting for the application loop at most; more are refused at once.
const BLOCK_READS_QUEUED_MAX: usize = 64;

/// A read of committed blocks, served by the application loop from its store.
#[derive(Debug)]
struct BlockRead {
    from: u64,
    max: usize,
    reply: oneshot::Sender<Result<Vec<CommittedBlock>, String>>,
}

/// Why committed blocks could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadBlocksError {
    /// Too many reads are waiting: retry later.
    #[error("too many block reads are waiting")]
    Busy,
    /// The validator stopped.
    #[error("the validator stopped")]
    Stopped,
    /// The store could not be read.
    #[error("block store: {0}")]
    Store(String),
}

/// A running validator.
pub struct RunningNode {
    /// Its mempool.
    pub mempool: Arc<Mempool>,
    /// Its status, updated after every commit.
    pub status: watch::Receiver<NodeStatus>,
    /// Where its time goes.
    pub metrics: Arc<NodeMetrics>,
    engine: EngineHandle,
    app: JoinHandle<Result<(), NodeError>>,
    block_reads: mpsc::Sender<BlockRead>,
}

impl std::fmt::Debug for RunningNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningNode")
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

impl RunningNode {
    /// Stops the engine, the application loop and the pre-verifier.
    pub async fn shutdown(self) {
        self.mempool.set_preverifier(None);
        let _ = self.engine.actor.kill_and_wait(None).await;
        self.engine.handle.abort();
        self.app.abort();
    }

    /// True once the application loop ended (on a fatal error or shutdown).
    pub fn is_finished(&self) -> bool {
        self.app.is_finished()
    }

    /// A cheap handle that reads committed blocks (for clients following the chain).
    pub fn block_reader(&self) -> BlockReader {
        BlockReader {
            tx: self.block_reads.clone(),
        }
    }
}

/// Reads this validator's committed blocks, with their commit certificates, from its store:
/// what a consortium client (a gateway following the chain) pulls. Reads queue behind the
/// application loop's other work, bounded.
#[derive(Debug, Clone)]
pub struct BlockReader {
    tx: mpsc::Sender<BlockRead>,
}

impl BlockReader {
    /// The committed blocks from height `from` on, at most `max` (capped at
    /// [`READ_BLOCKS_MAX`]) and about [`READ_BLOCKS_BYTES_MAX`] encoded bytes; empty when
    /// `from` is above the committed height.
    pub async fn read_blocks(
        &self,
        from: u64,
        max: usize,
    ) -> Result<Vec<CommittedBlock>, ReadBlocksError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .try_send(BlockRead {
                from: from.max(1),
                max: max.clamp(1, READ_BLOCKS_MAX),
                reply,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => ReadBlocksError::Busy,
                mpsc::error::TrySendError::Closed(_) => ReadBlocksError::Stopped,
            })?;
        answer
            .await
            .map_err(|_| ReadBlocksError::Stopped)?
            .map_err(ReadBlocksError::Store)
    }
}

/// Malachite's node configuration.
#[derive(Debug, Clone)]
struct EngineConfig {
    moniker: String,
    consensus: ConsensusConfig,
    value_sync: ValueSyncConfig,
}

impl NodeConfig for EngineConfig {
    fn moniker(&self) -> &str {
        &self.moniker
    }

    fn consensus(&self) -> &ConsensusConfig {
        &self.consensus
    }

    fn consensus_mut(&mut self) -> &mut ConsensusConfig {
        &mut self.consensus
    }

    fn value_sync(&self) -> &ValueSyncConfig {
        &self.value_sync
    }

    fn value_sync_mut(&mut self) -> &mut ValueSyncConfig {
        &mut self.value_sync
    }
}

fn engine_config(options: &NodeOptions) -> EngineConfig {
    EngineConfig {
        moniker: options.moniker.clone(),
        consensus: ConsensusConfig {
            enabled: true,
            p2p: P2pConfig {
                listen_addr: options.listen.clone(),
                persistent_peers: options.peers.clone(),
                // Peers are listed by address only (no peer ids), so an inbound connection from
                // a listed peer (from an ephemeral port) would not be recognised as persistent
                // and be refused; membership is enforced by signatures, not by connections.
                persistent_peers_only: false,
                // A consortium knows its members: no discovery. Every validator of a local
                // cluster shares one IP, so the per-IP limits must allow all of them.
                discovery: DiscoveryConfig {
                    enabled: false,
                    max_connections_per_ip: 64,
                    ip_throttle_duration: Duration::from_millis(100),
                    ..DiscoveryConfig::default()
                },
                // Direct broadcast to every peer: with a handful of validators there is no
                // mesh to build, and it keeps the latency of a round to one hop.
                protocol: PubSubProtocol::Broadcast,
                ..P2pConfig::default()
            },
            value_payload: ValuePayload::ProposalAndParts,
            ..ConsensusConfig::default()
        },
        value_sync: ValueSyncConfig {
            enabled: true,
            status_update_interval: options.sync_status_interval,
            request_timeout: Duration::from_secs(5),
            batch_size: SYNC_BLOCKS_PER_RESPONSE_MAX as usize,
            ..ValueSyncConfig::default()
        },
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Starts a validator: opens the replica (replaying its store), starts Malachite's engine and
/// the application loop. `validator_id` must be a voting member whose certified key is
/// `signer`'s.
pub async fn start<S>(
    genesis: &GenesisConfig,
    validator_id: ValidatorId,
    signer: ValidatorSigner,
    store: S,
    options: NodeOptions,
    mempool: Arc<Mempool>,
) -> Result<RunningNode, NodeError>
where
    S: BlockStore + Send + 'static,
{
    if tokio::runtime::Handle::current().runtime_flavor()
        != tokio::runtime::RuntimeFlavor::MultiThread
    {
        return Err(NodeError::Runtime);
    }
    let mut replica = tokio::task::block_in_place(|| {
        Replica::open(genesis, store, options.verify_threads.max(1))
    })?;
    let member_key = replica
        .membership()
        .member(validator_id)
        .map(|member| member.public_key);
    if member_key != Some(signer.public_key()) {
        return Err(NodeError::NotAMember(validator_id));
    }
    let validator_set = ValidatorSet::from_membership(
        replica.membership(),
        genesis.validators.iter().map(|cert| cert.validator_id),
    )
    .ok_or(NodeError::NotAMember(validator_id))?;
    let address = Address(validator_id);

    let mut network_seed = signer.network_key_seed();
    let keypair = Keypair::ed25519_from_bytes(&mut network_seed[..])
        .map_err(|e| NodeError::Engine(format!("network key: {e}")))?;
    let peer_id = keypair.public().to_peer_id();
    let proof = signer
        .sign_validator_proof(signer.public_key().to_vec(), peer_id.to_bytes())
        .await
        .map_err(|e| NodeError::Engine(format!("validator proof: {e}")))?;
    let proof_bytes = Codec::encode(&WireCodec, &proof)
        .map_err(|e| NodeError::Engine(format!("validator proof: {e}")))?;
    let identity = NetworkIdentity::new_validator(
        options.moniker.clone(),
        keypair,
        address.to_string(),
        proof_bytes,
    );
    std::fs::create_dir_all(&options.wal_dir)
        .map_err(|e| NodeError::Engine(format!("WAL directory: {e}")))?;
    #[cfg(feature = "byzantine")]
    let started = match &options.byzantine {
        Some(byzantine) => {
            start_byzantine_engine(&options, byzantine, identity, address, signer).await
        }
        None => start_engine(&options, identity, address, signer).await,
    };
    #[cfg(not(feature = "byzantine"))]
    let started = start_engine(&options, identity, address, signer).await;
    let (channels, engine) = started?;

    let (status_tx, status) = watch::channel(NodeStatus {
        height: replica.height(),
        state_hash: replica.ledger().state_hash(),
        head_hash: replica.head_hash(),
        transfers: replica.ledger().transfer_count(),
        failed: None,
    });
    let metrics = Arc::new(NodeMetrics::default());
    if options.preverify {
        let cache = Arc::new(SignatureCache::new());
        replica.use_signature_cache(Arc::clone(&cache));
        start_preverifier(
            Preverifier::new(&genesis.ledger_config(1).gate_keys, cache),
            &mempool,
            &metrics,
            &options.moniker,
        )?;
    }
    let evidence = EvidenceLog::open(&options.wal_dir)
        .map_err(|e| NodeError::Engine(format!("evidence log: {e}")))?;
    let invalid_proposals = EvidenceLog::open_invalid_proposals(&options.wal_dir)
        .map_err(|e| NodeError::Engine(format!("invalid-proposal log: {e}")))?;
    let app = App {
        evidence,
        invalid_proposals,
        address,
        replica,
        validator_set,
        options,
        mempool: Arc::clone(&mempool),
        undecided: BTreeMap::new(),
        received: BTreeMap::new(),
        validity: BTreeMap::new(),
        reassembler: Reassembler::new(),
        status: status_tx,
        metrics: Arc::clone(&metrics),
    };
    let (block_reads, block_reads_rx) = mpsc::channel(BLOCK_READS_QUEUED_MAX);
    let app = tokio::spawn(app.run(channels, block_reads_rx));
    Ok(RunningNode {
        mempool,
        status,
        metrics,
        engine,
        app,
        block_reads,
    })
}

#[cfg(feature = "byzantine")]
fn engine_error(error: impl std::fmt::Display) -> NodeError {
    NodeError::Engine(error.to_string())
}

/// Malachite's engine with its default actors.
async fn start_engine(
    options: &NodeOptions,
    identity: NetworkIdentity,
    address: Address,
    signer: ValidatorSigner,
) -> Result<(Channels<LedgerContext>, EngineHandle), NodeError> {
    malachitebft_app_channel::start_engine(
        LedgerContext,
        engine_config(options),
        WalContext::new(options.wal_dir.join("consensus.wal"), WireCodec),
        NetworkContext::new(identity, WireCodec),
        ConsensusContext::new_validator(address, Box::new(LedgerVerifier), Box::new(signer)),
        SyncContext::new(WireCodec),
        RequestContext::new(64),
    )
    .await
    .map_err(|e| NodeError::Engine(e.to_string()))
}

/// Malachite's engine with its byzantine proxy in front of the network (tests only).
#[cfg(feature = "byzantine")]
async fn start_byzantine_engine(
    options: &NodeOptions,
    byzantine: &crate::byzantine::ByzantineOptions,
    identity: NetworkIdentity,
    address: Address,
    signer: ValidatorSigner,
) -> Result<(Channels<LedgerContext>, EngineHandle), NodeError> {
    warn!(moniker = %options.moniker, ?byzantine, "BYZANTINE validator: misbehaving on purpose");
    let proxy_signer = signer.duplicate();
    malachitebft_app_channel::EngineBuilder::new(LedgerContext, engine_config(options))
        .with_default_wal(WalContext::new(
            options.wal_dir.join("consensus.wal"),
            WireCodec,
        ))
        .with_byzantine_network(malachitebft_app_channel::ByzantineContext {
            identity,
            codec: WireCodec,
            config: byzantine.malachite.clone(),
            signer: Box::new(proxy_signer),
            address,
            conflicting_value_fn: None,
            conflicting_vote_value_fn: Some(crate::byzantine::conflicting_vote_value()),
        })
        .await
        .map_err(engine_error)?
        .with_default_sync(SyncContext::new(WireCodec))
        .with_default_consensus(ConsensusContext::new_validator(
            address,
            Box::new(LedgerVerifier),
            Box::new(signer),
        ))
        .with_default_request(RequestContext::new(64))
        .build()
        .await
        .map_err(engine_error)
}

/// Starts the thread that checks the signatures of the batches `mempool` accepts, ahead of the
/// blocks that will carry them. It ends when the mempool lets go of its sender (at shutdown).
fn start_preverifier(
    preverifier: Preverifier,
    mempool: &Arc<Mempool>,
    metrics: &Arc<NodeMetrics>,
    moniker: &str,
) -> Result<(), NodeError> {
    let (sender, receiver) =
        std::sync::mpsc::sync_channel::<PreverifyJob>(PREVERIFY_QUEUE_BATCHES_MAX);
    let metrics = Arc::clone(metrics);
    std::thread::Builder::new()
        .name(format!("preverify-{moniker}"))
        .spawn(move || {
            while let Ok(job) = receiver.recv() {
                let started = Instant::now();
                preverifier.verify(&job.batch);
                NodeMetrics::add_elapsed(&metrics.preverify_us, started);
                NodeMetrics::add(&metrics.preverified, job.batch.len() as u64);
                if let Some(mempool) = job.mempool.upgrade() {
                    mempool.mark_ready(&job.id);
                }
            }
        })
        .map_err(|e| NodeError::Engine(format!("pre-verification thread: {e}")))?;
    mempool.set_preverifier(Some(sender));
    Ok(())
}

/// Publishes `block` as a proposal stream of `proposer` at `round`.
async fn stream_block(
    channels: &Channels<LedgerContext>,
    proposer: Address,
    block: &Block,
    round: Round,
    valid_round: Round,
) {
    let height = Height(block.header.height);
    let id = stream::stream_id(height, round, proposer);
    let parts = stream::block_parts(block, round, valid_round, proposer);
    for message in stream::stream_messages(&id, parts) {
        if channels
            .network
            .send(NetworkMsg::PublishProposalPart(message))
            .await
            .is_err()
        {
            warn!("network channel closed while streaming a proposal");
            return;
        }
    }
}

/// A proposal seen for a (height, round): block hash, proposer, valid round.
type Offer = (BlockHash, Address, Round);

/// The application side of one validator.
struct App<S: BlockStore> {
    address: Address,
    replica: Replica<S>,
    validator_set: ValidatorSet,
    options: NodeOptions,
    mempool: Arc<Mempool>,
    /// Blocks this validator built or received, by hash, not yet decided.
    undecided: BTreeMap<BlockHash, Block>,
    /// Received proposals by (height, round): (hash, proposer, valid round).
    received: BTreeMap<(Height, Round), Vec<Offer>>,
    /// The replica's verdict on blocks checked at the next height.
    validity: BTreeMap<BlockHash, Validity>,
    reassembler: Reassembler,
    status: watch::Sender<NodeStatus>,
    metrics: Arc<NodeMetrics>,
    /// Where equivocation evidence is kept (beside the WAL).
    evidence: EvidenceLog,
    /// Where blocks refused for an ungated or unsigned entry are recorded, with their builder.
    invalid_proposals: EvidenceLog,
}

impl<S: BlockStore> App<S> {
    async fn run(
        mut self,
        mut channels: Channels<LedgerContext>,
        mut block_reads: mpsc::Receiver<BlockRead>,
    ) -> Result<(), NodeError> {
        loop {
            let msg = tokio::select! {
                msg = channels.consensus.recv() => match msg {
                    Some(msg) => msg,
                    None => break,
                },
                Some(read) = block_reads.recv() => {
                    // Store reads may block (PostgreSQL): outside the async context.
                    let blocks = tokio::task::block_in_place(|| self.read_blocks(read.from, read.max));
                    let _ = read.reply.send(blocks);
                    continue;
                }
            };
            if let Err(error) = self.handle(msg, &channels).await {
                error!(%error, moniker = %self.options.moniker, "validator stops");
                self.status
                    .send_modify(|s| s.failed = Some(error.to_string()));
                return Err(error);
            }
        }
        Ok(())
    }

    fn next_height(&self) -> Height {
        Height(self.replica.height() + 1)
    }

    fn params(&self) -> HeightParams<LedgerContext> {
        HeightParams::new(self.validator_set.clone(), self.options.timeouts, None)
            .with_vote_extension_policy(VoteExtensionPolicy::Disabled)
    }

    /// The replica's verdict on `block` as the next block (cached per hash).
    fn check(&mut self, hash: BlockHash, block: &Block) -> Validity {
        if let Some(validity) = self.validity.get(&hash) {
            return *validity;
        }
        let future =
            block.header.timestamp_us > now_us().saturating_add(CLOCK_DRIFT_MAX.as_micros() as u64);
        let validity = if future {
            warn!(
                height = block.header.height,
                "proposal timestamped in the future"
            );
            Validity::Invalid
        } else {
            let started = Instant::now();
            // Staged: the block checked last is the one most likely decided, and committing
            // it then costs no second execution.
            let verdict = tokio::task::block_in_place(|| self.replica.validate_staged(block));
            NodeMetrics::add_elapsed(&self.metrics.validate_us, started);
            NodeMetrics::add(&self.metrics.validations, 1);
            match verdict {
                Ok(outcome) => {
                    let refusals = outcome.authority_refusals();
                    if refusals.is_empty() {
                        Validity::Valid
                    } else {
                        // The block's builder slipped in entries without authority: refuse the
                        // block (the staged execution goes) and record who built it.
                        self.replica.discard_staged();
                        self.record_invalid_proposal(hash, block, &refusals);
                        Validity::Invalid
                    }
                }
                Err(error) => {
                    warn!(%error, height = block.header.height, "invalid proposal");
                    Validity::Invalid
                }
            }
        };
        self.validity.insert(hash, validity);
        validity
    }

    /// Records a proposed block refused for entries without authority (see
    /// [`InvalidProposal`]); a full or failing log is reported, never fatal.
    fn record_invalid_proposal(
        &mut self,
        hash: BlockHash,
        block: &Block,
        refusals: &[(usize, usize, CreateTransferResult)],
    ) {
        NodeMetrics::add(&self.metrics.invalid_proposals, 1);
        let Some(&(batch, entry, result)) = refusals.first() else {
            return;
        };
        let transfer_id = match block.batches.get(batch) {
            Some(Batch::CreateTransfers { entries, .. }) => {
                entries.get(entry).map_or(0, |e| e.transfer.id)
            }
            _ => 0,
        };
        let record = InvalidProposal {
            height: block.header.height,
            proposer: block.header.proposer,
            block_hash: hex::encode(hash.0),
            batch,
            entry,
            transfer_id: format!("{transfer_id:x}"),
            code: u32::from(result.code()),
            reason: result.message().to_owned(),
        };
        match self.invalid_proposals.record_invalid_proposal(&record) {
            Ok(true) => error!(
                proposer = record.proposer,
                height = record.height,
                code = record.code,
                refusals = refusals.len(),
                "invalid proposal: a block with entries lacking authority; proposer recorded"
            ),
            Ok(false) => warn!(proposer = record.proposer, "invalid-proposal log full"),
            Err(error) => error!(%error, "invalid-proposal log write failed"),
        }
    }

    /// Turns Malachite's conflicting-vote pairs into ledger evidence and records the provable
    /// ones (see [`crate::misbehaviour`]); a full or failing log is reported, never fatal.
    fn record_equivocations<'a>(
        &mut self,
        votes: impl IntoIterator<
            Item = (
                &'a Address,
                &'a Vec<malachitebft_core_types::DoubleVote<LedgerContext>>,
            ),
        >,
    ) {
        for (validator, pairs) in votes {
            for (a, b) in pairs {
                NodeMetrics::add(&self.metrics.equivocations, 1);
                let Some(proof) = precommit_equivocation(a, b, self.replica.membership()) else {
                    warn!(%validator, "conflicting votes without ledger-verifiable evidence");
                    continue;
                };
                match self.evidence.record(&proof) {
                    Ok(true) => error!(
                        %validator,
                        height = proof.height,
                        "equivocation: evidence recorded"
                    ),
                    Ok(false) => warn!(%validator, "evidence log full; equivocation not recorded"),
                    Err(error) => error!(%error, %validator, "evidence log write failed"),
                }
            }
        }
    }

    fn keep_undecided(&mut self, hash: BlockHash, block: Block) {
        if self.undecided.len() >= UNDECIDED_BLOCKS_MAX && !self.undecided.contains_key(&hash) {
            // Drop the block furthest ahead: the ones near the tip are the ones needed.
            let furthest = self
                .undecided
                .iter()
                .max_by_key(|(_, b)| b.header.height)
                .map(|(h, _)| *h);
            if let Some(furthest) = furthest {
                self.undecided.remove(&furthest);
            }
        }
        self.undecided.insert(hash, block);
    }

    /// Forgets everything at or below the committed height.
    fn prune(&mut self) {
        let height = self.replica.height();
        self.undecided.retain(|_, b| b.header.height > height);
        self.received.retain(|(h, _), _| h.0 > height);
        self.validity.clear();
    }

    fn publish_status(&self) {
        let status = NodeStatus {
            height: self.replica.height(),
            state_hash: self.replica.ledger().state_hash(),
            head_hash: self.replica.head_hash(),
            transfers: self.replica.ledger().transfer_count(),
            failed: None,
        };
        self.status.send_replace(status);
    }

    /// Builds (and stages) the next block from `batches`, leaving out the batches the
    /// validators would refuse it for: entries without authority (no or a forged gate decision,
    /// no or a wrong controller signature; see [`BlockOutcome::authority_refusals`]). Those
    /// batches can never settle as they are, so they leave the mempool too.
    /// `keep_unauthorised` is the faulty proposer of the byzantine tests.
    ///
    /// [`BlockOutcome::authority_refusals`]: settlement::ledger::BlockOutcome::authority_refusals
    fn build_authorised(
        &mut self,
        proposer: ValidatorId,
        timestamp: u64,
        batches: Vec<Batch>,
        keep_unauthorised: bool,
    ) -> Result<Block, ReplicaError> {
        let (block, outcome) = self
            .replica
            .propose_staged_with_outcome(proposer, timestamp, batches)?;
        let refusals = outcome.authority_refusals();
        if refusals.is_empty() || keep_unauthorised {
            return Ok(block);
        }
        // The block is dropped; its batches are rebuilt without the refused ones.
        let mut batches = block.batches;
        let mut refused: Vec<usize> = refusals.iter().map(|(batch, _, _)| *batch).collect();
        refused.dedup();
        let mut dropped = Vec::with_capacity(refused.len());
        for &index in refused.iter().rev() {
            if index < batches.len() {
                dropped.push(batches.remove(index));
            }
        }
        warn!(
            batches = dropped.len(),
            entries = refusals.len(),
            "left out batches without authority (ungated or unsigned); dropped from the mempool"
        );
        NodeMetrics::add(&self.metrics.unauthorised_batches, dropped.len() as u64);
        self.mempool.remove_refused(&dropped);
        // The refusals do not depend on state: the batches left cannot have any.
        self.replica.propose_staged(proposer, timestamp, batches)
    }

    async fn build_block(&mut self, height: Height) -> Option<Block> {
        // Batches whose signatures were checked ahead first, so that executing the block does
        // not wait for signature checks; if none is ready in time, whatever is queued.
        self.mempool
            .wait_for_ready(self.options.empty_block_wait)
            .await;
        let started = Instant::now();
        let mut batches = self.mempool.select_ready(self.options.block_entries_max);
        if batches.is_empty() {
            batches = self.mempool.select(self.options.block_entries_max);
        }
        #[cfg(feature = "byzantine")]
        let keep_unauthorised = self
            .options
            .byzantine
            .as_ref()
            .is_some_and(|byzantine| byzantine.propose_ungated);
        #[cfg(not(feature = "byzantine"))]
        let keep_unauthorised = false;
        if keep_unauthorised {
            #[cfg(feature = "byzantine")]
            batches.push(crate::byzantine::ungated_batch(height.0));
        }
        let timestamp = now_us().max(self.replica.ledger().timestamp_us() + 1);
        let proposer = self.address.0;
        let built = tokio::task::block_in_place(|| {
            self.build_authorised(proposer, timestamp, batches, keep_unauthorised)
                .or_else(|error| {
                    // A machine failure while executing the batches: offer an empty block
                    // rather than stall the height.
                    warn!(%error, height = height.0, "cannot build a block; proposing an empty one");
                    self.replica.propose_staged(proposer, timestamp, Vec::new())
                })
        });
        NodeMetrics::add_elapsed(&self.metrics.propose_us, started);
        NodeMetrics::add(&self.metrics.proposals, 1);
        match built {
            Ok(block) => Some(block),
            Err(error) => {
                error!(%error, height = height.0, "cannot build even an empty block");
                None
            }
        }
    }

    async fn handle(
        &mut self,
        msg: AppMsg<LedgerContext>,
        channels: &Channels<LedgerContext>,
    ) -> Result<(), NodeError> {
        match msg {
            AppMsg::ConsensusReady { reply } => {
                info!(moniker = %self.options.moniker, height = self.replica.height(), "consensus ready");
                let _ = reply.send((self.next_height(), self.params()));
            }
            AppMsg::StartedRound {
                height,
                round,
                reply_value,
                ..
            } => {
                // Offer the proposals that arrived for this round before we reached it.
                let mut values = Vec::new();
                let seen = self
                    .received
                    .get(&(height, round))
                    .cloned()
                    .unwrap_or_default();
                if height == self.next_height() {
                    for (hash, proposer, valid_round) in seen {
                        let Some(block) = self.undecided.get(&hash).cloned() else {
                            continue;
                        };
                        let validity = self.check(hash, &block);
                        values.push(ProposedValue {
                            height,
                            round,
                            valid_round,
                            proposer,
                            value: BlockRef { hash },
                            validity,
                        });
                    }
                }
                let _ = reply_value.send(values);
            }
            AppMsg::GetValue {
                height,
                round,
                reply,
                ..
            } => {
                if height != self.next_height() {
                    warn!(
                        height = height.0,
                        "asked for a value at a height we are not at"
                    );
                    return Ok(());
                }
                let Some(block) = self.build_block(height).await else {
                    return Ok(());
                };
                let hash = BlockHash(block.hash());
                self.validity.insert(hash, Validity::Valid);
                let _ = reply.send(LocallyProposedValue::new(height, round, BlockRef { hash }));
                stream_block(channels, self.address, &block, round, Round::Nil).await;
                debug!(height = height.0, round = %round, batches = block.batches.len(), "proposed");
                self.keep_undecided(hash, block);
            }
            AppMsg::ExtendVote { reply, .. } => {
                let _ = reply.send(None);
            }
            AppMsg::VerifyVoteExtensions {
                extensions, reply, ..
            } => {
                // Extensions are disabled: none should arrive, and none is accepted.
                let verdicts = extensions
                    .into_iter()
                    .map(|(address, _)| {
                        (
                            address,
                            Err(malachitebft_app::consensus::VoteExtensionError::InvalidVoteExtension),
                        )
                    })
                    .collect();
                let _ = reply.send(verdicts);
            }
            AppMsg::RestreamProposal {
                height,
                round,
                valid_round,
                address,
                value_id,
            } => {
                // A re-proposal of a locked block: `address` is this round's proposer (us); the
                // block keeps the proposer it was built by.
                if let Some(block) = self.undecided.get(&value_id).cloned() {
                    stream_block(channels, address, &block, round, valid_round).await;
                } else {
                    warn!(
                        height = height.0,
                        "asked to restream a block we do not have"
                    );
                }
            }
            AppMsg::GetHistoryMinHeight { reply } => {
                let _ = reply.send(Height(1));
            }
            AppMsg::ReceivedProposalPart {
                from,
                published_by,
                part,
                reply,
            } => {
                let publisher = published_by.unwrap_or(from);
                let value = match self.reassembler.push(publisher, part) {
                    None => None,
                    Some(Err(error)) => {
                        warn!(%error, %publisher, "dropped a proposal stream");
                        None
                    }
                    Some(Ok(received)) => self.on_received_block(received),
                };
                let _ = reply.send(value);
            }
            AppMsg::Decided {
                certificate, reply, ..
            } => {
                if certificate.height.0 <= self.replica.height()
                    || self.undecided.contains_key(&certificate.value_id)
                {
                    self.commit(&certificate)?;
                    let _ = reply.send(());
                } else {
                    // A quorum precommitted a block whose parts never reached us (we were not
                    // connected while it streamed). Nothing is committed; `Finalized` then
                    // restarts the height, and block sync brings the block and its certificate.
                    warn!(
                        height = certificate.height.0,
                        "decided a block not received; restarting the height"
                    );
                    let _ = reply.send(());
                }
            }
            AppMsg::Finalized {
                certificate,
                evidence,
                reply,
                ..
            } => {
                if !evidence.proposals.is_empty() || !evidence.votes.is_empty() {
                    warn!(
                        height = certificate.height.0,
                        ?evidence,
                        "equivocation observed"
                    );
                    self.record_equivocations(&evidence.votes);
                }
                self.prune();
                let next = if self.replica.height() >= certificate.height.0 {
                    Next::Start(self.next_height(), self.params())
                } else {
                    Next::Restart(self.next_height(), self.params())
                };
                let _ = reply.send(next);
            }
            AppMsg::GetDecidedValues { range, reply } => {
                // Store reads may block (PostgreSQL): outside the async context.
                let values = tokio::task::block_in_place(|| {
                    self.decided_values(range.start().0, range.end().0)
                });
                let _ = reply.send(values);
            }
            AppMsg::ProcessSyncedValue {
                height,
                round,
                proposer,
                value_bytes,
                reply,
            } => {
                let outcome = match stream::decode_block(&value_bytes) {
                    Err(error) => {
                        warn!(%error, height = height.0, "undecodable synced block");
                        SyncedValueOutcome::PeerFault
                    }
                    Ok(block) if block.header.height != height.0 => SyncedValueOutcome::PeerFault,
                    Ok(block) => {
                        let hash = BlockHash(block.hash());
                        let validity = if height == self.next_height() {
                            self.check(hash, &block)
                        } else {
                            Validity::Invalid
                        };
                        self.keep_undecided(hash, block);
                        SyncedValueOutcome::Verdict(ProposedValue {
                            height,
                            round,
                            valid_round: Round::Nil,
                            proposer,
                            value: BlockRef { hash },
                            validity,
                        })
                    }
                };
                let _ = reply.send(outcome);
            }
        }
        Ok(())
    }

    fn on_received_block(
        &mut self,
        received: stream::ReceivedBlock,
    ) -> Option<ProposedValue<LedgerContext>> {
        let init = received.init;
        if init.height < self.next_height() {
            return None;
        }
        let hash = BlockHash(received.block.hash());
        let block = received.block;
        // A fresh proposal carries a block its proposer built; a re-proposal (valid round set)
        // carries a block locked in an earlier round, possibly built by another validator.
        let proposer_matches =
            init.valid_round.is_defined() || block.header.proposer == init.proposer.0;
        let entry = self.received.entry((init.height, init.round)).or_default();
        if !entry.iter().any(|(h, _, _)| *h == hash) && entry.len() < UNDECIDED_BLOCKS_MAX {
            entry.push((hash, init.proposer, init.valid_round));
        }
        let validity = if !proposer_matches {
            Some(Validity::Invalid)
        } else if init.height == self.next_height() {
            Some(self.check(hash, &block))
        } else {
            None
        };
        self.keep_undecided(hash, block);
        validity.map(|validity| ProposedValue {
            height: init.height,
            round: init.round,
            valid_round: init.valid_round,
            proposer: init.proposer,
            value: BlockRef { hash },
            validity,
        })
    }

    fn commit(&mut self, certificate: &CommitCertificate<LedgerContext>) -> Result<(), NodeError> {
        let height = certificate.height.0;
        if height <= self.replica.height() {
            // Decided again after a restart (the WAL replays): it is stored already.
            return Ok(());
        }
        let fail = |reason: String| NodeError::Commit { height, reason };
        let block = self
            .undecided
            .get(&certificate.value_id)
            .cloned()
            .ok_or_else(|| fail("the decided block is not known here".into()))?;
        let ledger_certificate =
            certificate::to_ledger(certificate).map_err(|e| fail(e.to_string()))?;
        let batches = block.batches.clone();
        let entries: usize = batches.iter().map(|batch| batch.len()).sum();
        let staged = self.replica.staged_hash() == Some(certificate.value_id.0);
        let committed = CommittedBlock {
            block,
            certificate: ledger_certificate,
        };
        let started = Instant::now();
        tokio::task::block_in_place(|| self.replica.commit(committed))
            .map_err(|e| fail(e.to_string()))?;
        NodeMetrics::add_elapsed(&self.metrics.commit_us, started);
        NodeMetrics::add(&self.metrics.blocks, 1);
        NodeMetrics::add(&self.metrics.entries, entries as u64);
        if staged {
            NodeMetrics::add(&self.metrics.commits_staged, 1);
        }
        // Verdicts were reached against the previous state.
        self.validity.clear();
        // The status first: a submitter woken by the mempool then reads a height that
        // includes its batch.
        self.publish_status();
        self.mempool.remove_committed(&batches, Instant::now());
        self.undecided.remove(&certificate.value_id);
        debug!(moniker = %self.options.moniker, height, "committed");
        Ok(())
    }

    /// Committed blocks `from..` for a [`BlockReader`]: at most `max` and about
    /// [`READ_BLOCKS_BYTES_MAX`] encoded bytes.
    fn read_blocks(&self, from: u64, max: usize) -> Result<Vec<CommittedBlock>, String> {
        let end = self
            .replica
            .height()
            .min(from.saturating_add(max as u64).saturating_sub(1));
        let mut blocks = Vec::new();
        let mut bytes = 0usize;
        for height in from..=end {
            let committed = self
                .replica
                .store()
                .read(height)
                .map_err(|e| format!("height {height}: {e}"))?;
            bytes += committed.encode().len();
            if !blocks.is_empty() && bytes > READ_BLOCKS_BYTES_MAX {
                break;
            }
            blocks.push(committed);
        }
        Ok(blocks)
    }

    fn decided_values(&self, start: u64, end: u64) -> Vec<RawDecidedValue<LedgerContext>> {
        let end = end
            .min(self.replica.height())
            .min(start.saturating_add(SYNC_BLOCKS_PER_RESPONSE_MAX - 1));
        let mut values = Vec::new();
        for height in start.max(1)..=end {
            match self.replica.store().read(height) {
                Ok(committed) => values.push(RawDecidedValue::new(
                    stream::encode_block(&committed.block).into(),
                    certificate::from_ledger(&committed.certificate),
                )),
                Err(error) => {
                    warn!(%error, height, "cannot serve a stored block");
                    break;
                }
            }
        }
        values
    }
}
