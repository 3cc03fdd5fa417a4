//! KYC/AML: customers and tiers, sanctions and PEP screening, transaction monitoring, cases,
//! goAML reports and the gate whose signed decision every transfer carries.
//!
//! Architecture Invariant: personal data lives only in this crate's stores; what leaves it for the
//! ledger is a pseudonymous customer id and the hash of a decision record.

pub mod screening;
