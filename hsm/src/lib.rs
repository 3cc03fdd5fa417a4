//! One signing and key-management interface for the whole system, with two backends.
//!
//! Everything that needs a private key (custody's cold wallets, the audit-log checkpoints, the
//! compliance gate's decision signatures, validator keys in tests) goes through [`KeyStore`].
//! The contract below is fixed early so that other crates can code against it; backends live in
//! their own modules.
//!
//! # Layout
//! - [`KeyStore`]: the trait. Keys are addressed by a unique label.
//! - [`SecretBytes`]: a secret in memory; zeroized on drop, never printed.
//! - [`software::SoftwareKeyStore`]: the embedded backend (keys encrypted at rest under a
//!   passphrase, or kept in memory only). The default for the demo and development; **not for
//!   production**, and it says so ([`KeyStore::is_production_grade`] is `false`).
//! - [`pkcs11::Pkcs11KeyStore`]: any PKCS#11 module (an HSM vendor's, or SoftHSM2 in tests),
//!   configured by [`pkcs11::Pkcs11Config`].
//! - `verify` (private): the host-side checks both backends run on every signature (low-S
//!   normalisation, recovery id, verification with `k256` / `ed25519-dalek`).
//! - The `*_MAX` constants below: the limits every backend enforces the same way.
//!
//! Architecture Invariant: no private key or seed leaves a backend in the clear, except a seed
//! the caller itself hands to [`KeyStore::wrap_secret`] and gets back from
//! [`KeyStore::unwrap_secret`].

use zeroize::{Zeroize, ZeroizeOnDrop};

pub mod pkcs11;
pub mod software;
mod verify;
pub mod wrap_format;

/// Longest key label, in bytes. Labels are also the PKCS#11 `CKA_LABEL`, and file names in the
/// software store (hex, so twice as long, within the usual 255-byte file name limit).
pub const LABEL_LEN_MAX: usize = 120;
/// Longest message an Ed25519 key signs in one call. Callers sign hashes and decision records,
/// never bulk data.
pub const MESSAGE_LEN_MAX: usize = 64 * 1024;
/// Longest secret [`KeyStore::wrap_secret`] accepts (seeds are 16 to 64 bytes).
pub const SECRET_LEN_MAX: usize = 1024;
/// Longest blob [`KeyStore::unwrap_secret`] accepts: a wrapped [`SECRET_LEN_MAX`] secret
/// (see [`wrap_format`]: a 2-byte length, padding to 8, and the 8-byte integrity block).
pub const WRAPPED_LEN_MAX: usize = SECRET_LEN_MAX + 16;
/// Most keys one store holds (and [`KeyStore::list_keys`] returns).
pub const KEYS_MAX: usize = 65_536;
/// Length of a secp256k1 digest handed to [`KeyStore::sign`].
pub const DIGEST_LEN: usize = 32;

/// The algorithms a key can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// ECDSA over secp256k1; signs a 32-byte digest computed by the caller.
    Secp256k1,
    /// Ed25519 (PureEdDSA); signs the message itself.
    Ed25519,
    /// AES-256, used only to wrap and unwrap other secrets (RFC 5649 key wrap with padding).
    Aes256Wrap,
}

/// What a backend says about one of its keys.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyInfo {
    /// The unique label the key is addressed by.
    pub label: String,
    /// Its algorithm.
    pub algorithm: KeyAlgorithm,
}

/// A public key in its usual encoding: 33-byte compressed SEC1 for secp256k1, 32 bytes for
/// Ed25519.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PublicKey {
    /// Which algorithm the bytes belong to.
    pub algorithm: KeyAlgorithm,
    /// The encoded key.
    pub bytes: Vec<u8>,
}

/// A signature, already verified by the backend against the key's public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// secp256k1 ECDSA: 64 bytes `r || s` with `s` normalised to the low half of the order,
    /// and the recovery id (0 or 1) computed on the host.
    Secp256k1 {
        /// `r || s`, big-endian, low-S.
        rs: [u8; 64],
        /// Recovery id, 0 or 1.
        recovery_id: u8,
    },
    /// Ed25519: 64 bytes.
    Ed25519([u8; 64]),
}

/// A secret held in memory: zeroized on drop, and its `Debug` prints only its length.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Takes ownership of `bytes`; the caller's copy is moved, not duplicated.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The secret's bytes. Callers must not copy them into anything that is not zeroized.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes([REDACTED; {} bytes])", self.0.len())
    }
}

/// Failures of the key store: the machine, the device or the caller's request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HsmError {
    /// No key has this label.
    #[error("no key labelled {0:?}")]
    KeyNotFound(String),
    /// A key with this label exists already.
    #[error("a key labelled {0:?} exists already")]
    KeyExists(String),
    /// The key exists but cannot do what was asked (for example signing with a wrap key).
    #[error("key {label:?} is {algorithm:?} and cannot {operation}")]
    WrongAlgorithm {
        /// The key's label.
        label: String,
        /// Its algorithm.
        algorithm: KeyAlgorithm,
        /// What was asked of it.
        operation: &'static str,
    },
    /// The request itself is malformed (empty label, bad digest length, corrupt wrapped blob).
    #[error("invalid request: {0}")]
    InvalidInput(String),
    /// The device or module is absent, out of sessions, or failed mid-operation.
    #[error("key store device failure: {0}")]
    Device(String),
    /// A signature the device produced did not verify; it never leaves the crate.
    #[error("the device produced a signature that does not verify")]
    BadSignature,
    /// Stored key material could not be read or decrypted (wrong passphrase, corrupt file).
    #[error("key storage failure: {0}")]
    Storage(String),
}

/// The one key-management interface. Implementations are thread-safe.
pub trait KeyStore: Send + Sync + std::fmt::Debug {
    /// Generates a key that never leaves the store (sensitive, non-extractable).
    fn generate_key(&self, label: &str, algorithm: KeyAlgorithm) -> Result<KeyInfo, HsmError>;
    /// The public half of an asymmetric key.
    fn public_key(&self, label: &str) -> Result<PublicKey, HsmError>;
    /// Signs: a 32-byte digest for secp256k1, the message itself for Ed25519. The signature is
    /// verified before it is returned.
    fn sign(&self, label: &str, message_or_digest: &[u8]) -> Result<Signature, HsmError>;
    /// Wraps a secret (a seed) under an [`KeyAlgorithm::Aes256Wrap`] key.
    fn wrap_secret(&self, wrap_label: &str, secret: &SecretBytes) -> Result<Vec<u8>, HsmError>;
    /// Unwraps what [`KeyStore::wrap_secret`] produced.
    fn unwrap_secret(&self, wrap_label: &str, wrapped: &[u8]) -> Result<SecretBytes, HsmError>;
    /// Destroys a key for good.
    fn destroy_key(&self, label: &str) -> Result<(), HsmError>;
    /// Every key with its label, sorted by label.
    fn list_keys(&self) -> Result<Vec<KeyInfo>, HsmError>;
    /// Whether keys held by this backend are protected well enough for production (a real
    /// HSM). Defaults to `false` so that a backend has to claim it; the node refuses to run a
    /// production profile on a store that answers `false`.
    fn is_production_grade(&self) -> bool {
        false
    }
}

/// Checks a key label: 1 to [`LABEL_LEN_MAX`] bytes, no control characters (labels end up in
/// logs, file names and the token's object list).
pub fn validate_label(label: &str) -> Result<(), HsmError> {
    if label.is_empty() {
        return Err(HsmError::InvalidInput("empty key label".into()));
    }
    if label.len() > LABEL_LEN_MAX {
        return Err(HsmError::InvalidInput(format!(
            "key label is {} bytes, more than {LABEL_LEN_MAX}",
            label.len()
        )));
    }
    if label.chars().any(char::is_control) {
        return Err(HsmError::InvalidInput(
            "key label contains a control character".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_never_prints_the_secret() {
        let secret = SecretBytes::new(b"correct horse battery".to_vec());
        let printed = format!("{secret:?}");
        assert!(!printed.contains("horse"), "{printed}");
        assert!(printed.contains("REDACTED"));
    }

    #[test]
    fn labels_are_bounded_and_printable() {
        assert!(validate_label("custody/cold/42").is_ok());
        assert!(validate_label(&"a".repeat(LABEL_LEN_MAX)).is_ok());
        for bad in ["", "a\nb", "tab\there"] {
            assert!(
                matches!(validate_label(bad), Err(HsmError::InvalidInput(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            validate_label(&"a".repeat(LABEL_LEN_MAX + 1)),
            Err(HsmError::InvalidInput(_))
        ));
    }
}
