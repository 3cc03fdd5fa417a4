//! Settlement: the consortium ledger's deterministic state machine (accounts, transfers,
//! two-phase and linked transfers), blocks, block stores and replication.
//!
//! Architecture Invariant: the ledger holds pseudonymous ids and hashes only, never personal data.
//!
//! # Layout
//! - [`ledger`]: the state machine (`Ledger::apply_block`), its records and result codes.
//! - [`dvp`]: builds a trade's linked delivery-versus-payment transfers.
//! - [`block`]: block headers, bodies, votes and commit certificates, hash-chained.
//! - [`membership`]: validators, their institutions' CAs, the quorum rule, the genesis config.
//! - [`evidence`]: equivocation evidence from conflicting votes.
//! - [`store`]: block stores (append-only file, PostgreSQL) behind one trait.
//! - [`replica`]: a validator's ledger + store: replay on start, apply decided blocks, verify
//!   a whole chain.
//! - [`codec`], [`crypto`], [`limits`]: canonical encoding, signatures, bounds.
//! - [`testkit`]: deterministic keys and signed fixtures for tests, benchmarks and tools.

pub mod block;
pub mod codec;
pub mod crypto;
pub mod dvp;
pub mod evidence;
pub mod ledger;
pub mod limits;
pub mod membership;
pub mod replica;
pub mod store;
pub mod testkit;
