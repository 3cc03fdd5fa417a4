//! Seed backup: Shamir secret sharing over GF(256) (the `blahaj` crate), 3-of-5 by default.
//!
//! Each share carries a small header so that a restore can tell a wrong or mixed-up set of
//! shares from a good one: the threshold, the share's x coordinate is inside blahaj's bytes,
//! and the master xpub fingerprint of the seed (4 bytes of HASH160, which identifies the seed
//! without revealing it). A restore that interpolates to a seed with another fingerprint is
//! refused instead of handing back a wrong seed.
//!
//! Share text: `rempart-share-v1:` then hex of `threshold (1) || fingerprint (4) ||
//! x (1) || y (seed length)`.

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::hd::{HdError, Seed, master_fingerprint};
use crate::limits::{BACKUP_THRESHOLD_MIN, SEED_BYTES_MAX};

/// Default number of shares needed to restore.
pub const DEFAULT_THRESHOLD: u8 = 3;
/// Default number of shares made.
pub const DEFAULT_SHARES: u8 = 5;
const SHARE_PREFIX: &str = "rempart-share-v1:";
/// threshold (1) + fingerprint (4) + x (1).
const SHARE_HEADER_BYTES: usize = 6;

/// One share of a seed. Zeroized on drop; `Debug` shows only the share number.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SeedShare {
    threshold: u8,
    fingerprint: [u8; 4],
    /// blahaj's encoding: x followed by one y byte per seed byte.
    body: Vec<u8>,
}

impl std::fmt::Debug for SeedShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SeedShare(#{} of threshold {}, seed {}, [REDACTED])",
            self.body.first().copied().unwrap_or_default(),
            self.threshold,
            hex::encode(self.fingerprint)
        )
    }
}

/// Why a split or a restore failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// Threshold below 2, or above the number of shares, or more than 255 shares.
    #[error("invalid sharing scheme {threshold}-of-{shares}")]
    Scheme {
        /// Shares needed.
        threshold: u8,
        /// Shares made.
        shares: u8,
    },
    /// Fewer distinct shares than the threshold.
    #[error("{have} distinct shares given, {need} needed")]
    NotEnoughShares {
        /// Distinct shares given.
        have: usize,
        /// Threshold.
        need: u8,
    },
    /// The shares are not from the same split (threshold, seed or length differ).
    #[error("shares come from different splits")]
    MixedShares,
    /// The restored seed does not have the fingerprint the shares carry: a share is corrupt.
    #[error("restored seed fingerprint {got} does not match {want}: a share is corrupt")]
    FingerprintMismatch {
        /// Fingerprint of what was restored.
        got: String,
        /// Fingerprint the shares carry.
        want: String,
    },
    /// A share text is malformed.
    #[error("malformed share: {0}")]
    Malformed(&'static str),
    /// The seed itself is unusable.
    #[error(transparent)]
    Seed(#[from] HdError),
}

impl SeedShare {
    /// The share's x coordinate (1..=255).
    pub fn number(&self) -> u8 {
        self.body.first().copied().unwrap_or_default()
    }

    /// The text to print on paper (secret: zeroized on drop).
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut bytes = Zeroizing::new(Vec::with_capacity(SHARE_HEADER_BYTES + self.body.len()));
        bytes.push(self.threshold);
        bytes.extend_from_slice(&self.fingerprint);
        bytes.extend_from_slice(&self.body);
        let mut hexed = Zeroizing::new(hex::encode(bytes.as_slice()));
        let out = Zeroizing::new(format!("{SHARE_PREFIX}{}", hexed.as_str()));
        hexed.zeroize();
        out
    }

    /// Parses [`SeedShare::to_text`]'s output.
    pub fn from_text(text: &str) -> Result<Self, BackupError> {
        let body = text
            .trim()
            .strip_prefix(SHARE_PREFIX)
            .ok_or(BackupError::Malformed("missing prefix"))?;
        if body.len() > 2 * (SHARE_HEADER_BYTES + SEED_BYTES_MAX) {
            return Err(BackupError::Malformed("too long"));
        }
        let bytes = Zeroizing::new(
            hex::decode(body).map_err(|_| BackupError::Malformed("not hexadecimal"))?,
        );
        if bytes.len() < SHARE_HEADER_BYTES + 16 {
            return Err(BackupError::Malformed("too short"));
        }
        if bytes[5] == 0 {
            return Err(BackupError::Malformed(
                "share number 0 is the secret itself",
            ));
        }
        Ok(Self {
            threshold: bytes[0],
            fingerprint: [bytes[1], bytes[2], bytes[3], bytes[4]],
            body: bytes[5..].to_vec(),
        })
    }
}

/// Splits the seed into `shares` shares, any `threshold` of which restore it. Randomness comes
/// from the operating system (blahaj's dealer uses the thread's CSPRNG): this runs on the
/// signer at the edge, not inside a state machine.
pub fn split_seed(seed: &Seed, threshold: u8, shares: u8) -> Result<Vec<SeedShare>, BackupError> {
    // `shares` is a u8, so it cannot exceed BACKUP_SHARES_MAX (255 non-zero points of GF(256)).
    if threshold < BACKUP_THRESHOLD_MIN || threshold > shares {
        return Err(BackupError::Scheme { threshold, shares });
    }
    let fingerprint = master_fingerprint(seed)?;
    let dealer = blahaj::Sharks(threshold).dealer(seed.expose());
    Ok(dealer
        .take(usize::from(shares))
        .map(|share| SeedShare {
            threshold,
            fingerprint,
            body: Vec::from(&share),
        })
        .collect())
}

/// Restores the seed from at least `threshold` distinct shares of one split.
pub fn restore_seed(shares: &[SeedShare]) -> Result<Seed, BackupError> {
    let first = shares
        .first()
        .ok_or(BackupError::NotEnoughShares { have: 0, need: 0 })?;
    let (threshold, fingerprint, len) = (first.threshold, first.fingerprint, first.body.len());
    if threshold < BACKUP_THRESHOLD_MIN {
        return Err(BackupError::Scheme {
            threshold,
            shares: 0,
        });
    }
    if shares
        .iter()
        .any(|s| s.threshold != threshold || s.fingerprint != fingerprint || s.body.len() != len)
    {
        return Err(BackupError::MixedShares);
    }
    let mut numbers: Vec<u8> = shares.iter().map(SeedShare::number).collect();
    numbers.sort_unstable();
    numbers.dedup();
    if numbers.len() < usize::from(threshold) {
        return Err(BackupError::NotEnoughShares {
            have: numbers.len(),
            need: threshold,
        });
    }
    let parsed: Vec<blahaj::Share> = shares
        .iter()
        .map(|s| blahaj::Share::try_from(s.body.as_slice()))
        .collect::<Result<_, _>>()
        .map_err(BackupError::Malformed)?;
    // Interpolate over exactly `threshold` distinct shares: extra ones add nothing and
    // duplicates would make the interpolation singular.
    let mut chosen: Vec<&blahaj::Share> = Vec::with_capacity(usize::from(threshold));
    for share in &parsed {
        if chosen.len() < usize::from(threshold) && !chosen.iter().any(|c| c.x.0 == share.x.0) {
            chosen.push(share);
        }
    }
    let secret =
        blahaj::Sharks(threshold)
            .recover(chosen)
            .map_err(|_| BackupError::NotEnoughShares {
                have: numbers.len(),
                need: threshold,
            })?;
    let seed = Seed::from_bytes(secret)?;
    let got = master_fingerprint(&seed)?;
    if got != fingerprint {
        return Err(BackupError::FingerprintMismatch {
            got: hex::encode(got),
            want: hex::encode(fingerprint),
        });
    }
    Ok(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> Seed {
        Seed::from_hex("fffcf9f6f3f0edeae7e4e1dedbd8d5d2cfccc9c6c3c0bdbab7b4b1aeaba8a5a29f9c999693908d8a8784817e7b7875726f6c696663605d5a5754514e4b484542").unwrap()
    }

    /// The restore drill: every one of the 10 sets of 3 out of 5 shares rebuilds the same master
    /// xpub fingerprint; every set of 2 fails.
    #[test]
    fn restore_drill_any_three_of_five() {
        let seed = seed();
        let want = master_fingerprint(&seed).unwrap();
        let shares = split_seed(&seed, DEFAULT_THRESHOLD, DEFAULT_SHARES).unwrap();
        assert_eq!(shares.len(), 5);
        let mut combinations = 0;
        for a in 0..5 {
            for b in a + 1..5 {
                let pair = [shares[a].clone(), shares[b].clone()];
                assert!(matches!(
                    restore_seed(&pair),
                    Err(BackupError::NotEnoughShares { have: 2, need: 3 })
                ));
                for c in b + 1..5 {
                    // Through the paper text, as a real drill would.
                    let set: Vec<SeedShare> = [a, b, c]
                        .iter()
                        .map(|&i| SeedShare::from_text(&shares[i].to_text()).unwrap())
                        .collect();
                    let restored = restore_seed(&set).unwrap();
                    assert_eq!(master_fingerprint(&restored).unwrap(), want);
                    assert_eq!(restored.expose(), seed.expose());
                    combinations += 1;
                }
            }
        }
        assert_eq!(combinations, 10);
        // The same share three times is still one share.
        let same = [shares[0].clone(), shares[0].clone(), shares[0].clone()];
        assert!(matches!(
            restore_seed(&same),
            Err(BackupError::NotEnoughShares { have: 1, .. })
        ));
    }

    #[test]
    fn corrupt_or_mixed_shares_are_detected() {
        let seed = seed();
        let shares = split_seed(&seed, 3, 5).unwrap();
        let mut corrupt = shares[1].clone();
        let last = corrupt.body.len() - 1;
        corrupt.body[last] ^= 1;
        let set = [shares[0].clone(), corrupt, shares[2].clone()];
        assert!(matches!(
            restore_seed(&set),
            Err(BackupError::FingerprintMismatch { .. })
        ));
        let other = split_seed(&Seed::from_hex(&"11".repeat(32)).unwrap(), 3, 5).unwrap();
        let mixed = [shares[0].clone(), shares[1].clone(), other[2].clone()];
        assert_eq!(restore_seed(&mixed).unwrap_err(), BackupError::MixedShares);
        assert!(matches!(
            split_seed(&seed, 1, 5),
            Err(BackupError::Scheme { .. })
        ));
        assert!(matches!(
            split_seed(&seed, 6, 5),
            Err(BackupError::Scheme { .. })
        ));
        assert!(SeedShare::from_text("rempart-share-v1:zz").is_err());
        assert!(SeedShare::from_text("hello").is_err());
        let printed = format!("{:?}", shares[0]);
        assert!(printed.contains("REDACTED") && !printed.contains(&hex::encode(&shares[0].body)));
    }
}
