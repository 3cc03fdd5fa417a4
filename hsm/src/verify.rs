//! Host-side checks that every signature passes before it leaves the crate, whichever backend
//! made it.
//!
//! HSMs return ECDSA signatures with a high `s` about half the time and never a recovery id;
//! ledgers want low-S (malleability) and a recovery id. Both are computed here, on the host,
//! from the public key, and the signature is verified with an independent implementation
//! (`k256`, `ed25519-dalek`) so that a faulty device cannot hand out a bad signature.

use crate::{DIGEST_LEN, HsmError, KeyAlgorithm, MESSAGE_LEN_MAX, PublicKey, Signature};
use k256::ecdsa::{RecoveryId, VerifyingKey};

/// Checks the length of what is to be signed for `algorithm`.
pub(crate) fn check_sign_input(
    label: &str,
    algorithm: KeyAlgorithm,
    message_or_digest: &[u8],
) -> Result<(), HsmError> {
    match algorithm {
        KeyAlgorithm::Secp256k1 if message_or_digest.len() != DIGEST_LEN => {
            Err(HsmError::InvalidInput(format!(
                "a secp256k1 key signs a {DIGEST_LEN}-byte digest, got {} bytes",
                message_or_digest.len()
            )))
        }
        KeyAlgorithm::Ed25519 if message_or_digest.len() > MESSAGE_LEN_MAX => {
            Err(HsmError::InvalidInput(format!(
                "message is {} bytes, more than {MESSAGE_LEN_MAX}",
                message_or_digest.len()
            )))
        }
        KeyAlgorithm::Aes256Wrap => Err(HsmError::WrongAlgorithm {
            label: label.to_owned(),
            algorithm,
            operation: "sign",
        }),
        _ => Ok(()),
    }
}

/// Parses a 33-byte compressed (or 65-byte uncompressed) SEC1 secp256k1 point.
pub(crate) fn secp256k1_verifying_key(sec1: &[u8]) -> Result<VerifyingKey, HsmError> {
    VerifyingKey::from_sec1_bytes(sec1)
        .map_err(|_| HsmError::Device("the device returned an invalid secp256k1 point".into()))
}

/// The public key in the crate's encoding: 33-byte compressed SEC1.
pub(crate) fn secp256k1_public_key(key: &VerifyingKey) -> PublicKey {
    PublicKey {
        algorithm: KeyAlgorithm::Secp256k1,
        bytes: key.to_sec1_point(true).as_bytes().to_vec(),
    }
}

/// Turns a raw `r || s` from a device (or from `k256`) into the crate's signature: `s`
/// normalised to the low half of the order and the recovery id found by recovering the public
/// key. `likely_id` (the signer's own id, when it has one) is tried first.
///
/// Recovering exactly `key` is a verification: recovery computes `Q = r⁻¹(s·R − z·G)` from the
/// point `R` whose x is `r`, so `Q == key` means `s·R = z·G + r·key`, the ECDSA equation. One
/// recovery (1.5 on average without a hint) therefore replaces a verification plus trial
/// recoveries.
pub(crate) fn finish_secp256k1(
    key: &VerifyingKey,
    digest: &[u8],
    rs: &[u8],
    likely_id: Option<u8>,
) -> Result<Signature, HsmError> {
    let signature = k256::ecdsa::Signature::from_slice(rs).map_err(|_| HsmError::BadSignature)?;
    let high_s = signature.normalize_s() != signature;
    let signature = signature.normalize_s();
    // Negating `s` flips the parity of the recovered `R`, so a hint for the high-S twin flips.
    let first = likely_id.map_or(0, |id| (id ^ u8::from(high_s)) & 1);
    // Ids 2 and 3 (x reduced modulo n) occur with probability about 2^-128 and are not
    // representable by every ledger; they are never tried, so such a signature is refused.
    for recovery_id in [first, first ^ 1] {
        let id = RecoveryId::from_byte(recovery_id).ok_or(HsmError::BadSignature)?;
        if VerifyingKey::recover_from_prehash(digest, &signature, id).is_ok_and(|q| &q == key) {
            let mut out = [0u8; 64];
            out.copy_from_slice(&signature.to_bytes());
            return Ok(Signature::Secp256k1 {
                rs: out,
                recovery_id,
            });
        }
    }
    Err(HsmError::BadSignature)
}

/// Parses a 32-byte Ed25519 public key.
pub(crate) fn ed25519_verifying_key(bytes: &[u8]) -> Result<ed25519_dalek::VerifyingKey, HsmError> {
    let bytes: &[u8; 32] = bytes.try_into().map_err(|_| {
        HsmError::Device("the device returned an Ed25519 key that is not 32 bytes".into())
    })?;
    ed25519_dalek::VerifyingKey::from_bytes(bytes)
        .map_err(|_| HsmError::Device("the device returned an invalid Ed25519 point".into()))
}

/// Verifies an Ed25519 signature (strictly: no small-order keys, canonical `S`) before it is
/// returned.
pub(crate) fn finish_ed25519(
    key: &ed25519_dalek::VerifyingKey,
    message: &[u8],
    signature: &[u8],
) -> Result<Signature, HsmError> {
    let bytes: [u8; 64] = signature.try_into().map_err(|_| HsmError::BadSignature)?;
    let parsed = ed25519_dalek::Signature::from_bytes(&bytes);
    key.verify_strict(message, &parsed)
        .map_err(|_| HsmError::BadSignature)?;
    Ok(Signature::Ed25519(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k256::ecdsa::SigningKey;

    fn key() -> SigningKey {
        SigningKey::from_slice(&[7u8; 32]).expect("valid scalar")
    }

    #[test]
    fn high_s_is_normalised_and_still_verifies() {
        let key = key();
        let digest = [0x42u8; 32];
        let (signature, _) = key.sign_prehash_recoverable(&digest);
        // Build the high-S twin that a device could have returned: (r, n - s).
        let (r, s) = signature.split_scalars();
        let high = k256::ecdsa::Signature::from_scalars(r, -*s).expect("valid scalars");
        assert!(high.normalize_s() != high, "the twin must be high-S");
        let finished = finish_secp256k1(key.verifying_key(), &digest, &high.to_bytes(), None)
            .expect("normalised");
        let Signature::Secp256k1 { rs, recovery_id } = finished else {
            panic!("wrong variant")
        };
        let low = k256::ecdsa::Signature::from_slice(&rs).expect("parses");
        assert_eq!(low.normalize_s(), low, "returned signature is low-S");
        let recovered = VerifyingKey::recover_from_prehash(
            &digest,
            &low,
            RecoveryId::from_byte(recovery_id).expect("0 or 1"),
        )
        .expect("recovers");
        assert_eq!(&recovered, key.verifying_key());
    }

    #[test]
    fn any_hint_gives_the_same_result() {
        let key = key();
        for i in 0u8..16 {
            let digest = [i; 32];
            let (signature, id) = key.sign_prehash_recoverable(&digest);
            let (r, s) = signature.split_scalars();
            let twin = k256::ecdsa::Signature::from_scalars(r, -*s).expect("valid scalars");
            let expected =
                finish_secp256k1(key.verifying_key(), &digest, &signature.to_bytes(), None)
                    .expect("verifies");
            for rs in [signature.to_bytes(), twin.to_bytes()] {
                for hint in [None, Some(0), Some(1), Some(id.to_byte())] {
                    assert_eq!(
                        finish_secp256k1(key.verifying_key(), &digest, &rs, hint).expect("ok"),
                        expected
                    );
                }
            }
        }
    }

    #[test]
    fn a_signature_by_another_key_is_refused() {
        let other = SigningKey::from_slice(&[8u8; 32]).expect("valid scalar");
        let (signature, id) = other.sign_prehash_recoverable(&[1u8; 32]);
        assert!(matches!(
            finish_secp256k1(
                key().verifying_key(),
                &[1u8; 32],
                &signature.to_bytes(),
                Some(id.to_byte())
            ),
            Err(HsmError::BadSignature)
        ));
    }

    #[test]
    fn a_signature_for_another_digest_is_refused() {
        let key = key();
        let (signature, _) = key.sign_prehash_recoverable(&[1u8; 32]);
        assert!(matches!(
            finish_secp256k1(key.verifying_key(), &[2u8; 32], &signature.to_bytes(), None),
            Err(HsmError::BadSignature)
        ));
        assert!(matches!(
            finish_secp256k1(key.verifying_key(), &[1u8; 32], &[0u8; 64], None),
            Err(HsmError::BadSignature)
        ));
    }

    #[test]
    fn a_bad_ed25519_signature_is_refused() {
        use ed25519_dalek::Signer;
        let key = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
        let signature = key.sign(b"decision");
        assert!(finish_ed25519(&key.verifying_key(), b"decision", &signature.to_bytes()).is_ok());
        assert!(matches!(
            finish_ed25519(&key.verifying_key(), b"decisioN", &signature.to_bytes()),
            Err(HsmError::BadSignature)
        ));
        assert!(matches!(
            finish_ed25519(&key.verifying_key(), b"decision", &[0u8; 63]),
            Err(HsmError::BadSignature)
        ));
    }

    #[test]
    fn sign_input_lengths_are_checked() {
        assert!(check_sign_input("k", KeyAlgorithm::Secp256k1, &[0; 32]).is_ok());
        assert!(matches!(
            check_sign_input("k", KeyAlgorithm::Secp256k1, &[0; 31]),
            Err(HsmError::InvalidInput(_))
        ));
        assert!(check_sign_input("k", KeyAlgorithm::Ed25519, &[]).is_ok());
        assert!(matches!(
            check_sign_input("k", KeyAlgorithm::Ed25519, &vec![0; MESSAGE_LEN_MAX + 1]),
            Err(HsmError::InvalidInput(_))
        ));
        assert!(matches!(
            check_sign_input("k", KeyAlgorithm::Aes256Wrap, &[0; 32]),
            Err(HsmError::WrongAlgorithm { .. })
        ));
    }
}
