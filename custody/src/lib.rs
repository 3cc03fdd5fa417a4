//! Custody: wallet tiers, hierarchical keys, seed backup, withdrawals by policy and quorum, the
//! hash-chained audit log and proof of reserves.
//!
//! Architecture Invariant: custody signs only through `hsm::KeyStore`; it never sees a cold
//! private key. The hierarchical keys derived here are deposit (receiving) keys: the online side
//! holds only an account xpub and derives non-hardened children; hardened derivation happens only
//! where the seed lives.
//!
//! # Layout
//! - [`limits`]: every bound in one place.
//! - [`reject`]: business refusals with stable codes ([`RejectCode`]).
//! - [`path`]: derivation path parser (`m/0'/1/2h`).
//! - [`hd`]: BIP-0032 over secp256k1 (the `bip32` crate) with strict import validation.
//! - [`slip10`]: SLIP-0010 hardened derivation for Ed25519.
//! - [`backup`]: Shamir 3-of-5 split and restore of the seed.
//! - [`tier`]: hot / warm / cold wallets and the flows allowed between them.
//! - [`velocity`]: rolling-window amount and count per account and per wallet.
//! - [`policy`]: the rule engine (first match wins, final catch-all deny).
//! - [`audit`]: the append-only, hash-chained audit log with signed checkpoints.
//! - [`whitelist`]: the address book with its activation delay.
//! - [`withdrawal`]: the withdrawal state machine (request → policy → approvals → signing →
//!   submission).
//! - [`por`]: proof of reserves, a Merkle-sum tree with one sum per asset in every node.

pub mod audit;
pub mod backup;
pub mod hd;
pub mod limits;
pub mod path;
pub mod policy;
pub mod por;
pub mod reject;
pub mod slip10;
pub mod tier;
pub mod velocity;
pub mod whitelist;
pub mod withdrawal;

pub use reject::RejectCode;

/// Failures of the machine (not business refusals, which are [`RejectCode`] values).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CustodyError {
    /// The key store failed; nothing was changed.
    #[error("key store: {0}")]
    Hsm(#[from] hsm::HsmError),
    /// A command carried a time earlier than one already applied; the state machine only
    /// moves forward in time.
    #[error("time went backwards: {now_us} < {last_us}")]
    TimeWentBackwards {
        /// The command's time.
        now_us: u64,
        /// The latest time already applied.
        last_us: u64,
    },
    /// A bounded collection is full.
    #[error("capacity exhausted: {0}")]
    Capacity(&'static str),
    /// The configuration handed in is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A key store returned a key or signature of the wrong kind.
    #[error("unexpected key material: {0}")]
    KeyMaterial(String),
}
