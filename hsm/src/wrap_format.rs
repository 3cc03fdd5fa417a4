//! What exactly is wrapped: the same bytes for every backend, so that a blob wrapped by one
//! store unwraps on another holding the same key.
//!
//! The secret is framed as `length (u16, big-endian) || secret` and the frame is wrapped with
//! RFC 5649 (AES key wrap with padding). The length travels inside the wrapped bytes because
//! SoftHSM2 2.6 returns an unwrapped value with the RFC 5649 zero padding still on, and a seed
//! that ends in zero bytes could not otherwise be told from its padding. On unwrap, the frame's
//! length is checked against what the device returned and any bytes past it must be zero
//! padding (fewer than 8).

use crate::{HsmError, SECRET_LEN_MAX, SecretBytes, WRAPPED_LEN_MAX};
use zeroize::Zeroizing;

/// Bytes of the length prefix.
const LEN_PREFIX: usize = 2;

/// The RFC 5649 output length for a secret of `secret_len` bytes: the frame padded to a
/// multiple of 8, plus the 8-byte integrity block.
pub fn wrapped_len(secret_len: usize) -> usize {
    (secret_len + LEN_PREFIX).div_ceil(8) * 8 + 8
}

/// The frame to hand to RFC 5649, after checking the secret is 1 to [`SECRET_LEN_MAX`] bytes.
pub(crate) fn frame(secret: &SecretBytes) -> Result<Zeroizing<Vec<u8>>, HsmError> {
    let len = secret.expose().len();
    if len == 0 || len > SECRET_LEN_MAX {
        return Err(HsmError::InvalidInput(format!(
            "a secret to wrap is 1 to {SECRET_LEN_MAX} bytes, got {len}"
        )));
    }
    let mut framed = Zeroizing::new(Vec::with_capacity(LEN_PREFIX + len));
    framed.extend_from_slice(&(len as u16).to_be_bytes());
    framed.extend_from_slice(secret.expose());
    Ok(framed)
}

/// A wrapped secret is a multiple of 8 bytes, from the smallest possible to
/// [`WRAPPED_LEN_MAX`].
pub(crate) fn check_wrapped_len(wrapped: &[u8]) -> Result<(), HsmError> {
    let len = wrapped.len();
    if !(wrapped_len(1)..=WRAPPED_LEN_MAX).contains(&len) || !len.is_multiple_of(8) {
        return Err(HsmError::InvalidInput(format!(
            "a wrapped secret is a multiple of 8 bytes from {} to {WRAPPED_LEN_MAX}, got {len}",
            wrapped_len(1)
        )));
    }
    Ok(())
}

/// The secret inside an unwrapped frame (with or without the RFC 5649 padding left on).
pub(crate) fn unframe(plain: &[u8]) -> Result<SecretBytes, HsmError> {
    let bad = || HsmError::InvalidInput("the unwrapped bytes are not a framed secret".into());
    if plain.len() < LEN_PREFIX {
        return Err(bad());
    }
    let len = usize::from(u16::from_be_bytes([plain[0], plain[1]]));
    let end = LEN_PREFIX + len;
    if len == 0 || len > SECRET_LEN_MAX || end > plain.len() {
        return Err(bad());
    }
    let rest = &plain[end..];
    if rest.len() >= 8 || rest.iter().any(|&b| b != 0) {
        return Err(bad());
    }
    Ok(SecretBytes::new(plain[LEN_PREFIX..end].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_largest_secret_fits_the_largest_blob() {
        assert_eq!(wrapped_len(SECRET_LEN_MAX), WRAPPED_LEN_MAX);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn frames_round_trip_with_or_without_padding(
            secret in proptest::collection::vec(any::<u8>(), 1..=SECRET_LEN_MAX),
            padded in any::<bool>(),
        ) {
            let framed = frame(&SecretBytes::new(secret.clone())).expect("frame");
            let mut plain = framed.to_vec();
            if padded {
                plain.resize(plain.len().div_ceil(8) * 8, 0);
            }
            let back = unframe(&plain).expect("unframe");
            prop_assert_eq!(back.expose(), &secret[..]);
            prop_assert_eq!(wrapped_len(secret.len()), plain.len().div_ceil(8) * 8 + 8);
        }

        #[test]
        fn unframe_never_panics_and_refuses_bad_trailers(plain in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(secret) = unframe(&plain) {
                let len = secret.expose().len();
                prop_assert!(plain.len() - 2 - len < 8);
                prop_assert!(plain[2 + len..].iter().all(|&b| b == 0));
            }
        }
    }

    #[test]
    fn empty_and_oversized_secrets_are_refused() {
        assert!(frame(&SecretBytes::new(Vec::new())).is_err());
        assert!(frame(&SecretBytes::new(vec![0; SECRET_LEN_MAX + 1])).is_err());
        assert!(
            unframe(&[0, 3, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0]).is_err(),
            "8 trailing bytes"
        );
        assert!(unframe(&[0, 3, 1, 2, 3, 0, 1]).is_err(), "non-zero padding");
        assert!(unframe(&[0, 9, 1, 2, 3]).is_err(), "length past the end");
    }
}
