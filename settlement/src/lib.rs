//! Settlement: the consortium ledger's deterministic state machine (accounts, transfers,
//! two-phase and linked transfers), blocks, block stores and replication.
//!
//! Architecture Invariant: the ledger holds pseudonymous ids and hashes only, never personal data.
