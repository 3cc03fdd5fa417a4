//! BIP-0032 hierarchical keys over secp256k1, on the `bip32` crate, with a strict importer.
//!
//! The `bip32` crate (0.6) accepts 4 of the 16 invalid keys of BIP-0032's test vector 5 (it
//! does not check depth-0 keys for a parent fingerprint or child index, nor a public version
//! carrying private key data), so every imported extended key goes through
//! [`import_extended_key`], which checks the 78 serialised bytes itself before handing the text
//! to `bip32`.
//!
//! Where keys live: the seed and hardened derivation stay on the signer; the online side holds
//! only an account xpub ([`WatchOnlyAccount`]) and derives non-hardened deposit keys from it.

use bip32::{ChildNumber, ExtendedKey, ExtendedKeyAttrs, Prefix, XPrv, XPub};
use hmac::{KeyInit, Mac};
use zeroize::{Zeroize, Zeroizing};

use crate::limits::{SEED_BYTES_MAX, SEED_BYTES_MIN};
use crate::path::{ChildIndex, DerivationPath};

/// Order of the secp256k1 group, big-endian.
const SECP256K1_ORDER: [u8; 32] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE,
    0xBA, 0xAE, 0xDC, 0xE6, 0xAF, 0x48, 0xA0, 0x3B, 0xBF, 0xD2, 0x5E, 0x8C, 0xD0, 0x36, 0x41, 0x41,
];
/// Mainnet private version bytes (`xprv`).
pub const VERSION_XPRV: u32 = 0x0488_ADE4;
/// Mainnet public version bytes (`xpub`).
pub const VERSION_XPUB: u32 = 0x0488_B21E;
/// Testnet private version bytes (`tprv`).
pub const VERSION_TPRV: u32 = 0x0435_8394;
/// Testnet public version bytes (`tpub`).
pub const VERSION_TPUB: u32 = 0x0435_87CF;
/// Length of a serialised extended key before base58check.
const EXTENDED_KEY_BYTES: usize = 78;
/// Longest base58 text of an extended key (82 bytes encode to at most 112 characters).
const EXTENDED_KEY_TEXT_MAX: usize = 112;

/// A master seed (BIP-0032: 128 to 512 bits). Zeroized on drop, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Seed(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Seed([REDACTED; {} bytes])", self.0.len())
    }
}

/// Why a seed or a derivation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HdError {
    /// The seed text is not hexadecimal.
    #[error("seed is not hexadecimal")]
    SeedNotHex,
    /// The seed has a length BIP-0032 does not allow.
    #[error("seed must be {SEED_BYTES_MIN} to {SEED_BYTES_MAX} bytes, got {0}")]
    SeedLength(usize),
    /// A hardened step was asked of a public (watch-only) key.
    #[error("step {0} is hardened: hardened keys can only be derived where the seed lives")]
    HardenedFromPublic(ChildIndex),
    /// The derivation produced an invalid key (probability below 2^-127) or went past depth
    /// 255.
    #[error("derivation failed: {0}")]
    Derivation(String),
    /// The extended key handed in is not public.
    #[error("expected an extended public key")]
    NotPublic,
}

impl Seed {
    /// Takes the seed bytes, checking the length.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, HdError> {
        let bytes = Zeroizing::new(bytes);
        if !(SEED_BYTES_MIN..=SEED_BYTES_MAX).contains(&bytes.len()) {
            return Err(HdError::SeedLength(bytes.len()));
        }
        Ok(Self(bytes))
    }

    /// Parses hexadecimal (the caller's string is not zeroized here; it is theirs).
    pub fn from_hex(text: &str) -> Result<Self, HdError> {
        let text = text.trim();
        if text.len() > 2 * SEED_BYTES_MAX + 2 {
            return Err(HdError::SeedLength(text.len() / 2));
        }
        let bytes = hex::decode(text).map_err(|_| HdError::SeedNotHex)?;
        Self::from_bytes(bytes)
    }

    /// The seed bytes. Callers must not copy them into anything that is not zeroized.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

/// The BIP-0032 master key: HMAC-SHA512(key = "Bitcoin seed", seed). Computed here (not with
/// `XPrv::new`) because `bip32` only takes 16-, 32- or 64-byte seeds while BIP-0032 allows any
/// length from 16 to 64 bytes.
pub fn master_key(seed: &Seed) -> Result<XPrv, HdError> {
    let mut mac = hmac::Hmac::<sha2::Sha512>::new_from_slice(b"Bitcoin seed")
        .map_err(|e| HdError::Derivation(e.to_string()))?;
    mac.update(seed.expose());
    let mut out = Zeroizing::new([0u8; 64]);
    out.copy_from_slice(&mac.finalize().into_bytes());
    let mut key_bytes = [0u8; 33];
    key_bytes[1..].copy_from_slice(&out[..32]);
    let mut chain_code = [0u8; 32];
    chain_code.copy_from_slice(&out[32..]);
    let extended = ExtendedKey {
        prefix: Prefix::XPRV,
        attrs: ExtendedKeyAttrs {
            depth: 0,
            parent_fingerprint: [0; 4],
            child_number: ChildNumber(0),
            chain_code,
        },
        key_bytes,
    };
    key_bytes.zeroize();
    XPrv::try_from(extended).map_err(|e| HdError::Derivation(e.to_string()))
}

/// Derives the extended private key at `path` from the seed.
pub fn derive_xprv(seed: &Seed, path: &DerivationPath) -> Result<XPrv, HdError> {
    let mut key = master_key(seed)?;
    for step in path.steps() {
        key = key
            .derive_child(ChildNumber(step.raw()))
            .map_err(|e| HdError::Derivation(e.to_string()))?;
    }
    Ok(key)
}

/// BIP-0032 text of both halves of a derived key.
#[derive(Clone)]
pub struct SerializedKeyPair {
    /// `xprv…` (secret; zeroized on drop).
    pub xprv: Zeroizing<String>,
    /// `xpub…`.
    pub xpub: String,
}

impl std::fmt::Debug for SerializedKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerializedKeyPair")
            .field("xprv", &"[REDACTED]")
            .field("xpub", &self.xpub)
            .finish()
    }
}

/// Derives and serialises (mainnet `xprv`/`xpub`) the key at `path`.
pub fn derive_serialized(seed: &Seed, path: &DerivationPath) -> Result<SerializedKeyPair, HdError> {
    let key = derive_xprv(seed, path)?;
    Ok(SerializedKeyPair {
        xprv: key.to_string(Prefix::XPRV),
        xpub: key.public_key().to_string(Prefix::XPUB),
    })
}

/// The fingerprint of the master public key (first 4 bytes of HASH160 of it): what a restore
/// drill compares, since it identifies the seed without revealing it.
pub fn master_fingerprint(seed: &Seed) -> Result<[u8; 4], HdError> {
    Ok(master_key(seed)?.public_key().fingerprint())
}

/// A validated imported extended key.
#[derive(Clone)]
pub enum ImportedKey {
    /// An extended private key.
    Private(XPrv),
    /// An extended public key.
    Public(XPub),
}

impl std::fmt::Debug for ImportedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Private(_) => write!(f, "ImportedKey::Private([REDACTED])"),
            Self::Public(k) => write!(f, "ImportedKey::Public({})", k.to_string(Prefix::XPUB)),
        }
    }
}

/// Why an extended key text was refused. One variant per rule of BIP-0032's serialisation
/// format, so that each invalid key of test vector 5 is refused for its own reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyImportError {
    /// Longer than any extended key.
    #[error("extended key text longer than {EXTENDED_KEY_TEXT_MAX} characters")]
    TooLong,
    /// Not base58.
    #[error("extended key is not valid base58")]
    Base58,
    /// The base58check checksum does not match.
    #[error("extended key checksum mismatch")]
    Checksum,
    /// Not 78 bytes once decoded.
    #[error("extended key must decode to 78 bytes, got {0}")]
    Length(usize),
    /// Unknown version bytes.
    #[error("unknown extended key version 0x{0:08x}")]
    UnknownVersion(u32),
    /// Depth 0 (a master key) with a parent fingerprint.
    #[error("zero depth with non-zero parent fingerprint")]
    DepthZeroWithParent,
    /// Depth 0 (a master key) with a child index.
    #[error("zero depth with non-zero child index")]
    DepthZeroWithIndex,
    /// Public version bytes on private key data.
    #[error("public version bytes with private key data")]
    PublicVersionPrivateData,
    /// Private version bytes on public key data.
    #[error("private version bytes with public key data")]
    PrivateVersionPublicData,
    /// Private key data must start with 0x00.
    #[error("private key data must start with 0x00, not 0x{0:02x}")]
    PrivateKeyPrefix(u8),
    /// The private key is 0 or at least the group order n.
    #[error("private key not in 1..n-1")]
    PrivateKeyOutOfRange,
    /// Public key data must start with 0x02 or 0x03 (compressed).
    #[error("public key data must start with 0x02 or 0x03, not 0x{0:02x}")]
    PublicKeyPrefix(u8),
    /// The x coordinate is not on secp256k1.
    #[error("public key is not a point on secp256k1")]
    PublicKeyNotOnCurve,
    /// Passed every check here but `bip32` still refused it.
    #[error("extended key refused: {0}")]
    Other(String),
}

/// Parses and validates an extended key (`xprv`/`xpub`/`tprv`/`tpub`).
pub fn import_extended_key(text: &str) -> Result<ImportedKey, KeyImportError> {
    if text.len() > EXTENDED_KEY_TEXT_MAX {
        return Err(KeyImportError::TooLong);
    }
    let bytes = Zeroizing::new(bs58::decode(text).with_check(None).into_vec().map_err(
        |e| match e {
            bs58::decode::Error::InvalidChecksum { .. } => KeyImportError::Checksum,
            bs58::decode::Error::NoChecksum => KeyImportError::Length(0),
            _ => KeyImportError::Base58,
        },
    )?);
    // `with_check` leaves the 4 checksum bytes out of what it returns.
    if bytes.len() != EXTENDED_KEY_BYTES {
        return Err(KeyImportError::Length(bytes.len()));
    }
    let version = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let private = match version {
        VERSION_XPRV | VERSION_TPRV => true,
        VERSION_XPUB | VERSION_TPUB => false,
        other => return Err(KeyImportError::UnknownVersion(other)),
    };
    let depth = bytes[4];
    let parent_fingerprint = &bytes[5..9];
    let child_number = &bytes[9..13];
    if depth == 0 && parent_fingerprint != [0u8; 4] {
        return Err(KeyImportError::DepthZeroWithParent);
    }
    if depth == 0 && child_number != [0u8; 4] {
        return Err(KeyImportError::DepthZeroWithIndex);
    }
    let key = &bytes[45..78];
    if private {
        match key[0] {
            0x00 => {}
            0x02 | 0x03 => return Err(KeyImportError::PrivateVersionPublicData),
            other => return Err(KeyImportError::PrivateKeyPrefix(other)),
        }
        let scalar = &key[1..];
        // Big-endian byte strings of equal length compare like the numbers they encode.
        if scalar.iter().all(|b| *b == 0) || scalar >= &SECP256K1_ORDER[..] {
            return Err(KeyImportError::PrivateKeyOutOfRange);
        }
        let xprv = text
            .parse::<XPrv>()
            .map_err(|e| KeyImportError::Other(e.to_string()))?;
        Ok(ImportedKey::Private(xprv))
    } else {
        match key[0] {
            0x02 | 0x03 => {}
            0x00 => return Err(KeyImportError::PublicVersionPrivateData),
            other => return Err(KeyImportError::PublicKeyPrefix(other)),
        }
        if bip32::secp256k1::PublicKey::from_sec1_bytes(key).is_err() {
            return Err(KeyImportError::PublicKeyNotOnCurve);
        }
        let xpub = text
            .parse::<XPub>()
            .map_err(|e| KeyImportError::Other(e.to_string()))?;
        Ok(ImportedKey::Public(xpub))
    }
}

/// The online side's view of one account: an account-level xpub, from which per-customer
/// deposit keys are derived without any secret.
#[derive(Clone)]
pub struct WatchOnlyAccount {
    xpub: XPub,
}

impl std::fmt::Debug for WatchOnlyAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WatchOnlyAccount({})", self.xpub.to_string(Prefix::XPUB))
    }
}

/// Why a watch-only account could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WatchOnlyError {
    /// The text is not a valid extended key.
    #[error(transparent)]
    Import(#[from] KeyImportError),
    /// Derivation refused.
    #[error(transparent)]
    Hd(#[from] HdError),
}

impl WatchOnlyAccount {
    /// From a validated `xpub` text; an `xprv` is refused (the online side must not hold one).
    pub fn from_xpub(text: &str) -> Result<Self, WatchOnlyError> {
        match import_extended_key(text)? {
            ImportedKey::Public(xpub) => Ok(Self { xpub }),
            ImportedKey::Private(_) => Err(HdError::NotPublic.into()),
        }
    }

    /// From the signer side's derived account key (used when provisioning the online side).
    pub fn from_xprv(xprv: &XPrv) -> Self {
        Self {
            xpub: xprv.public_key(),
        }
    }

    /// The account xpub text.
    pub fn xpub(&self) -> String {
        self.xpub.to_string(Prefix::XPUB)
    }

    /// Derives the public key at a relative, non-hardened path below the account key.
    pub fn derive(&self, path: &DerivationPath) -> Result<XPub, HdError> {
        let mut key = self.xpub.clone();
        for step in path.steps() {
            if step.hardened {
                return Err(HdError::HardenedFromPublic(*step));
            }
            key = key
                .derive_child(ChildNumber(step.raw()))
                .map_err(|e| HdError::Derivation(e.to_string()))?;
        }
        Ok(key)
    }

    /// The 33-byte compressed deposit public key of customer account `index` (path `0/index`:
    /// the external chain of BIP-0044).
    pub fn deposit_key(&self, index: u32) -> Result<[u8; 33], HdError> {
        let step = ChildIndex::normal(index)
            .ok_or_else(|| HdError::Derivation(format!("index {index} is not below 2^31")))?;
        let path = DerivationPath::from_steps(vec![
            ChildIndex {
                index: 0,
                hardened: false,
            },
            step,
        ])
        .map_err(|e| HdError::Derivation(e.to_string()))?;
        Ok(self.derive(&path)?.to_bytes())
    }
}

#[cfg(test)]
mod tests;
