//! Consensus and replication of the consortium ledger: Malachite (Tendermint BFT) orders
//! settlement blocks among the validators; each validator checks every proposal with its
//! settlement `Replica`, and commits each decided block with its commit certificate (2f+1
//! precommit signatures, which are settlement vote signatures) through the replica before
//! acknowledging the decision. With n = 3f+1 validators the chain survives f faulty or crashed
//! ones; a validator that was down catches up by Malachite's block sync.
//!
//! This crate is separate from `settlement` so that the engine's dependency tree (libp2p,
//! ractor, ...) stays out of the ledger's state machine, its tests and the single-validator
//! demo path.
//!
//! # Layout
//! - [`context`]: Malachite's types for the ledger (heights, addresses, block refs, votes).
//! - [`signing`]: what validators sign, their key, Malachite's signer and verifier.
//! - [`codec`]: wire and WAL encoding of Malachite's messages.
//! - [`certificate`]: Malachite certificates to settlement certificates and back.
//! - [`stream`]: blocks as proposal parts, and their bounded reassembly.
//! - [`mempool`]: the bounded queue of submitted batches.
//! - [`node`]: one validator (engine + application loop + replica).
//! - [`cluster`]: several validators in one process (tests, benchmark).
//! - [`config`]: the validator binary's configuration file.
//! - [`runner`]: a validator started from its configuration file.
//! - [`workload`]: deterministic signed transfer batches for tests and the benchmark.
//! - [`bench`]: the consensus benchmark (`consensus-bench`, `rempart ledger bench`).
//! - [`misbehaviour`]: equivocation evidence and invalid-proposal records.
//! - `byzantine` (feature `byzantine`, tests only): a validator that misbehaves on purpose.

pub mod bench;
#[cfg(feature = "byzantine")]
pub mod byzantine;
pub mod certificate;
pub mod cluster;
pub mod codec;
pub mod config;
pub mod context;
pub mod mempool;
pub mod misbehaviour;
pub mod node;
pub mod runner;
pub mod signing;
pub mod stream;
pub mod workload;
