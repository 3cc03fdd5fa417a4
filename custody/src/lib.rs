//! Custody: wallet tiers, hierarchical keys, seed backup, withdrawals by policy and quorum, the
//! hash-chained audit log and proof of reserves.
//!
//! Architecture Invariant: custody signs only through `hsm::KeyStore`; it never sees a cold
//! private key.
