//! KYC/AML: customers and tiers, sanctions and PEP screening, transaction monitoring, cases,
//! goAML reports and the gate whose signed decision every transfer carries.
//!
//! Architecture Invariant: personal data lives only in this crate's stores; what leaves it for the
//! ledger is a pseudonymous customer id and the hash of a decision record.
//!
//! # Layout
//! - [`customer`]: customers, personal data, CDD levels, tiers and limits, PEP status.
//! - [`attestation`]: signed identity evidence and the trusted-issuer registry.
//! - [`risk`]: customer risk rating.
//! - [`transfer`]: the transfer the gate evaluates.
//! - [`monitoring`]: rule configuration and evaluation over sliding windows.
//! - [`travel_rule`]: the IVMS101 subset and its completeness check.
//! - [`screening`]: sanctions and PEP list screening.
//! - [`gate`]: the gate and, in [`gate::decision`], the signed decision validators verify.
//! - [`case`]: alert cases and their life cycle.
//! - [`goaml`]: goAML 5.0.2 STR/SAR reports from a case.
//! - [`store`]: the store trait with its PostgreSQL and SQLite backends, GDPR erasure.
//! - [`reject`]: stable refusal codes; [`limits`]: every bound.

pub mod attestation;
pub mod case;
pub mod customer;
pub mod gate;
pub mod goaml;
pub mod limits;
pub mod monitoring;
pub mod reject;
pub mod risk;
pub mod screening;
pub mod store;
pub mod transfer;
pub mod travel_rule;
mod validate;

pub use reject::{Refusal, Reject};

/// Failures of the machine (key store, screening backend, stores, XML writer). Business
/// refusals are [`Refusal`] values, never this.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KycError {
    /// The key store failed or refused the gate key.
    #[error("key store: {0}")]
    Hsm(#[from] hsm::HsmError),
    /// The gate key is missing or of the wrong kind.
    #[error("gate key: {0}")]
    GateKey(String),
    /// Screening could not run; the gate fails closed.
    #[error("screening: {0}")]
    Screening(String),
    /// A bounded collection is full.
    #[error("capacity reached: {0}")]
    Capacity(&'static str),
    /// A store failed.
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    /// Writing XML failed.
    #[error("xml: {0}")]
    Xml(String),
}
