//! Several validators in one process, on 127.0.0.1 ports picked by the OS, each with its own
//! file block store and WAL under one base directory: for the integration tests and the
//! benchmark. The consortium (keys, CAs, gate) is settlement's deterministic test fixture.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use malachitebft_app::net::Multiaddr;
use settlement::ledger::Batch;
use settlement::membership::fixture::Consortium;
use settlement::replica::Replica;
use settlement::store::file::FileStore;
use settlement::testkit;

use crate::mempool::{Mempool, SubmitRefusal};
use crate::node::{self, NodeError, NodeMetrics, NodeOptions, NodeStatus, RunningNode};
use crate::signing::ValidatorSigner;

/// Validators a cluster may have.
pub const CLUSTER_VALIDATORS_MAX: usize = 16;

/// A free TCP port on 127.0.0.1 (the OS picks; the listener is closed again at once).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The multiaddr of a TCP port on 127.0.0.1.
pub fn local_addr(port: u16) -> Multiaddr {
    format!("/ip4/127.0.0.1/tcp/{port}")
        .parse()
        .unwrap_or_else(|_| Multiaddr::empty())
}

/// The seed of validator `index`'s key in the test consortium.
pub fn validator_seed(index: usize) -> [u8; 32] {
    testkit::seed("validator", index as u64)
}

/// Validators running in this process.
#[derive(Debug)]
pub struct Cluster {
    /// The consortium (genesis and keys).
    pub consortium: Consortium,
    nodes: Vec<Option<RunningNode>>,
    options: Vec<NodeOptions>,
    dir: PathBuf,
}

impl Cluster {
    /// Starts `validators` validators under `dir`; `tune` adjusts each one's options.
    pub async fn start(
        dir: &Path,
        validators: usize,
        tune: impl Fn(&mut NodeOptions),
    ) -> Result<Self, NodeError> {
        let validators = validators.clamp(1, CLUSTER_VALIDATORS_MAX);
        let consortium = Consortium::new(validators);
        let mut ports = Vec::with_capacity(validators);
        for _ in 0..validators {
            ports.push(free_port().map_err(|e| NodeError::Engine(format!("no free port: {e}")))?);
        }
        let mut options = Vec::with_capacity(validators);
        for (index, port) in ports.iter().enumerate() {
            let peers = ports
                .iter()
                .filter(|p| *p != port)
                .map(|p| local_addr(*p))
                .collect();
            let mut option = NodeOptions::local(
                format!("validator-{}", index + 1),
                local_addr(*port),
                peers,
                dir.join(format!("validator-{}", index + 1)).join("wal"),
            );
            tune(&mut option);
            options.push(option);
        }
        let mut cluster = Self {
            consortium,
            nodes: (0..validators).map(|_| None).collect(),
            options,
            dir: dir.to_path_buf(),
        };
        for index in 0..validators {
            cluster.start_validator(index).await?;
        }
        Ok(cluster)
    }

    /// The block store directory of validator `index` (0-based).
    pub fn store_dir(&self, index: usize) -> PathBuf {
        self.dir
            .join(format!("validator-{}", index + 1))
            .join("store")
    }

    /// Starts (or restarts) validator `index` with an empty mempool.
    pub async fn start_validator(&mut self, index: usize) -> Result<(), NodeError> {
        let store =
            FileStore::open(&self.store_dir(index)).map_err(|e| NodeError::Replica(e.into()))?;
        let node = node::start(
            &self.consortium.genesis,
            index as u64 + 1,
            ValidatorSigner::from_seed(&validator_seed(index)),
            store,
            self.options[index].clone(),
            Arc::new(Mempool::new()),
        )
        .await?;
        self.nodes[index] = Some(node);
        Ok(())
    }

    /// Stops validator `index`.
    pub async fn stop_validator(&mut self, index: usize) {
        if let Some(node) = self.nodes.get_mut(index).and_then(Option::take) {
            node.shutdown().await;
        }
    }

    /// Submits `batch` to every running validator's mempool (what a client of the consortium
    /// does). Refused only if every running validator refuses it.
    pub fn submit(&self, batch: &Batch) -> Result<(), SubmitRefusal> {
        let submitted = Instant::now();
        let mut last = Err(SubmitRefusal::Full);
        for node in self.nodes.iter().flatten() {
            let result = node.mempool.submit_at(batch.clone(), submitted);
            if last.is_err() {
                last = result;
            }
        }
        last
    }

    /// Validator `index`'s mempool, if it runs.
    pub fn mempool(&self, index: usize) -> Option<&Arc<Mempool>> {
        self.nodes.get(index)?.as_ref().map(|node| &node.mempool)
    }

    /// The mempools of the running validators (what a client submits to).
    pub fn mempools(&self) -> Vec<Arc<Mempool>> {
        self.nodes
            .iter()
            .flatten()
            .map(|node| Arc::clone(&node.mempool))
            .collect()
    }

    /// Validator `index`'s metrics, if it runs.
    pub fn metrics(&self, index: usize) -> Option<&Arc<NodeMetrics>> {
        self.nodes.get(index)?.as_ref().map(|node| &node.metrics)
    }

    /// Validators in the cluster (running or not).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True if the cluster has no validators (never: it starts at least one).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The status of every validator (None: stopped).
    pub fn statuses(&self) -> Vec<Option<NodeStatus>> {
        self.nodes
            .iter()
            .map(|node| node.as_ref().map(|n| n.status.borrow().clone()))
            .collect()
    }

    /// Polls the statuses until `done` holds or `deadline` passes; returns whether it held.
    pub async fn wait_until(
        &self,
        deadline: Duration,
        done: impl Fn(&[Option<NodeStatus>]) -> bool,
    ) -> bool {
        let end = Instant::now() + deadline;
        loop {
            let statuses = self.statuses();
            if done(&statuses) {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops every validator.
    pub async fn stop_all(&mut self) {
        for index in 0..self.nodes.len() {
            self.stop_validator(index).await;
        }
    }

    /// Opens validator `index`'s stored chain read-only and replays it (after `stop_all`).
    pub fn replay(&self, index: usize) -> Result<Replica<FileStore>, NodeError> {
        let store = FileStore::open_read_only(&self.store_dir(index))
            .map_err(|e| NodeError::Replica(e.into()))?;
        Ok(Replica::open(&self.consortium.genesis, store, 1)?)
    }
}
