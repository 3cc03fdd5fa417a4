//! The signatures a validator checks, and the hashes it computes: SHA-256 with a domain tag
//! per purpose, secp256k1 ECDSA for account controllers (custody's keys) and Ed25519 for the
//! compliance gate, institution CAs, validators and their votes.
//!
//! Each signed or hashed thing starts with its own domain tag, so a signature made for one
//! purpose can never be replayed as another.

use k256::ecdsa::signature::hazmat::PrehashVerifier;
use sha2::{Digest, Sha256};

/// Domain tag of a transfer signed by its debit account's controller.
pub const DOMAIN_TRANSFER: &[u8] = b"rempart.ledger.transfer.v1";
/// Domain tag of a settlement batch signed once by a custodian.
pub const DOMAIN_BATCH: &[u8] = b"rempart.ledger.batch.v1";
/// Domain tag of a block header.
pub const DOMAIN_BLOCK: &[u8] = b"rempart.ledger.block.v1";
/// Domain tag of a validator's vote for a block.
pub const DOMAIN_VOTE: &[u8] = b"rempart.ledger.vote.v1";
/// Domain tag of the running state hash.
pub const DOMAIN_STATE: &[u8] = b"rempart.ledger.state.v1";
/// Domain tag of a membership certificate signed by an institution CA.
pub const DOMAIN_MEMBERSHIP: &[u8] = b"rempart.ledger.membership.v1";
/// Domain tag of the genesis configuration's hash.
pub const DOMAIN_GENESIS: &[u8] = b"rempart.ledger.genesis.v1";

/// Domain of the compliance gate's decision signatures (kyc-aml's
/// `gate::decision::SIGNING_DOMAIN`; the two must stay byte-identical, which the root package's
/// tests/gate_settlement.rs checks).
pub const GATE_SIGNING_DOMAIN: &[u8] = b"rempart/gate-decision/v1\n";
/// The outcome byte of an approval in the gate's signed message (kyc-aml's `Outcome::Approve`).
pub const GATE_OUTCOME_APPROVE: u8 = 1;
/// Bytes of a gate approval message.
pub const GATE_MESSAGE_BYTES: usize = GATE_SIGNING_DOMAIN.len() + 16 + 1 + 32;

/// What the gate signs to approve a transfer: `domain ‖ transfer_id (16 bytes big-endian) ‖
/// outcome (1 = approve) ‖ decision hash`. Binding the transfer id and the outcome means an
/// approval can neither be moved to another transfer nor a refusal passed off as one.
pub fn gate_approval_message(
    transfer_id: u128,
    decision_hash: &Hash32,
) -> [u8; GATE_MESSAGE_BYTES] {
    let mut message = [0u8; GATE_MESSAGE_BYTES];
    let domain = GATE_SIGNING_DOMAIN.len();
    message[..domain].copy_from_slice(GATE_SIGNING_DOMAIN);
    message[domain..domain + 16].copy_from_slice(&transfer_id.to_be_bytes());
    message[domain + 16] = GATE_OUTCOME_APPROVE;
    message[domain + 17..].copy_from_slice(decision_hash);
    message
}

/// A 32-byte SHA-256 digest.
pub type Hash32 = [u8; 32];

/// SHA-256 of `domain` followed by each part.
pub fn tagged_hash(domain: &[u8], parts: &[&[u8]]) -> Hash32 {
    let mut hasher = Sha256::new();
    hasher.update((domain.len() as u32).to_le_bytes());
    hasher.update(domain);
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// A secp256k1 public key in 33-byte compressed SEC1 form: an account's controller.
pub type ControllerKey = [u8; 33];

/// An Ed25519 public key (gate, CA, validator).
pub type Ed25519Key = [u8; 32];

/// A 64-byte signature (`r || s` for ECDSA, `R || S` for Ed25519).
pub type Signature64 = [u8; 64];

/// True if `key` is a valid compressed secp256k1 point.
pub fn controller_key_is_valid(key: &ControllerKey) -> bool {
    key[0] != 0x04 && k256::ecdsa::VerifyingKey::from_sec1_bytes(key).is_ok()
}

/// Verifies a low-S secp256k1 ECDSA signature (`r || s`) over a 32-byte digest. High-S
/// signatures are refused (k256 normalises on signing and rejects on verifying), so a
/// signature has exactly one valid encoding.
pub fn verify_controller(key: &ControllerKey, digest: &Hash32, signature: &Signature64) -> bool {
    let Ok(verifying_key) = k256::ecdsa::VerifyingKey::from_sec1_bytes(key) else {
        return false;
    };
    let Ok(signature) = k256::ecdsa::Signature::from_slice(signature) else {
        return false;
    };
    verifying_key.verify_prehash(digest, &signature).is_ok()
}

/// Verifies an Ed25519 signature with the strict rules (no small-order keys, canonical `S`),
/// so every validator accepts exactly the same signatures.
pub fn verify_ed25519(key: &Ed25519Key, message: &[u8], signature: &Signature64) -> bool {
    let Ok(verifying_key) = ed25519_dalek::VerifyingKey::from_bytes(key) else {
        return false;
    };
    let signature = ed25519_dalek::Signature::from_bytes(signature);
    verifying_key.verify_strict(message, &signature).is_ok()
}

/// A parsed Ed25519 public key: parsing decompresses a curve point, which costs as much as a
/// third of a verification, so keys that verify many signatures (the gate's) are parsed once.
pub type ParsedEd25519Key = ed25519_dalek::VerifyingKey;

/// Parses an Ed25519 public key.
pub fn parse_ed25519(key: &Ed25519Key) -> Option<ParsedEd25519Key> {
    ed25519_dalek::VerifyingKey::from_bytes(key).ok()
}

/// [`verify_ed25519`] with a key parsed once.
pub fn verify_ed25519_parsed(
    key: &ParsedEd25519Key,
    message: &[u8],
    signature: &Signature64,
) -> bool {
    let signature = ed25519_dalek::Signature::from_bytes(signature);
    key.verify_strict(message, &signature).is_ok()
}

/// Test and tool helpers that hold private keys: signing is the custodian's, the gate's and
/// the validators' business, never a validator's; these exist for tests, the benchmark and the
/// CLI's fixtures. Keys come from a 32-byte seed so that tests are reproducible.
pub mod signing {
    use super::{ControllerKey, Ed25519Key, Hash32, Signature64};
    use k256::ecdsa::signature::hazmat::PrehashSigner;

    /// A secp256k1 signing key (a controller's), from a seed.
    pub struct ControllerSigner(k256::ecdsa::SigningKey);

    impl std::fmt::Debug for ControllerSigner {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "ControllerSigner({})", hex::encode(self.public_key()))
        }
    }

    impl ControllerSigner {
        /// The key whose scalar is derived from `seed` (re-hashed until it is in range).
        pub fn from_seed(seed: &[u8; 32]) -> Self {
            let mut candidate: Hash32 = *seed;
            loop {
                if let Ok(key) = k256::ecdsa::SigningKey::from_slice(&candidate) {
                    return Self(key);
                }
                candidate = super::tagged_hash(b"rempart.test.seed", &[&candidate]);
            }
        }
        /// The compressed public key.
        pub fn public_key(&self) -> ControllerKey {
            let point = self.0.verifying_key().to_sec1_point(true);
            let mut out = [0u8; 33];
            out.copy_from_slice(point.as_bytes());
            out
        }
        /// Signs a 32-byte digest (low-S, deterministic RFC 6979).
        pub fn sign_digest(&self, digest: &Hash32) -> Signature64 {
            let signature: k256::ecdsa::Signature = self
                .0
                .sign_prehash(digest)
                .expect("a 32-byte digest is always signable");
            let mut out = [0u8; 64];
            out.copy_from_slice(&signature.to_bytes());
            out
        }
    }

    /// An Ed25519 signing key (gate, CA, validator), from a seed.
    pub struct Ed25519Signer(ed25519_dalek::SigningKey);

    impl std::fmt::Debug for Ed25519Signer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Ed25519Signer({})", hex::encode(self.public_key()))
        }
    }

    impl Ed25519Signer {
        /// The key with this seed.
        pub fn from_seed(seed: &[u8; 32]) -> Self {
            Self(ed25519_dalek::SigningKey::from_bytes(seed))
        }
        /// The public key.
        pub fn public_key(&self) -> Ed25519Key {
            self.0.verifying_key().to_bytes()
        }
        /// Signs a message.
        pub fn sign(&self, message: &[u8]) -> Signature64 {
            use ed25519_dalek::Signer;
            self.0.sign(message).to_bytes()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::signing::*;
    use super::*;

    #[test]
    fn controller_signatures_verify_and_tampering_fails() {
        let signer = ControllerSigner::from_seed(&[7; 32]);
        let key = signer.public_key();
        assert!(controller_key_is_valid(&key));
        let digest = tagged_hash(DOMAIN_TRANSFER, &[b"x"]);
        let signature = signer.sign_digest(&digest);
        assert!(verify_controller(&key, &digest, &signature));
        let mut bad = signature;
        bad[10] ^= 1;
        assert!(!verify_controller(&key, &digest, &bad));
        let other = tagged_hash(DOMAIN_TRANSFER, &[b"y"]);
        assert!(!verify_controller(&key, &other, &signature));
    }

    #[test]
    fn high_s_signatures_are_refused() {
        let signer = ControllerSigner::from_seed(&[9; 32]);
        let digest = tagged_hash(DOMAIN_TRANSFER, &[b"z"]);
        let signature = k256::ecdsa::Signature::from_slice(&signer.sign_digest(&digest)).unwrap();
        let (r, s) = signature.split_scalars();
        let high = k256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
        let mut bytes = [0u8; 64];
        bytes.copy_from_slice(&high.to_bytes());
        assert!(!verify_controller(&signer.public_key(), &digest, &bytes));
    }

    #[test]
    fn ed25519_signatures_verify_strictly() {
        let signer = Ed25519Signer::from_seed(&[3; 32]);
        let signature = signer.sign(b"decision");
        assert!(verify_ed25519(
            &signer.public_key(),
            b"decision",
            &signature
        ));
        assert!(!verify_ed25519(
            &signer.public_key(),
            b"decisioN",
            &signature
        ));
    }
}
