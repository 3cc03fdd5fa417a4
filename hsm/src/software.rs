//! The embedded software key store: the default for `rempart demo` and development. **Not for
//! production**: keys live in this process's memory, and on disk they are only as safe as the
//! passphrase. It says so at start-up (a `tracing` warning) and through
//! [`KeyStore::is_production_grade`], which answers `false`.
//!
//! Two modes:
//! - [`SoftwareKeyStore::in_memory`]: nothing is written anywhere; keys die with the value.
//! - [`SoftwareKeyStore::open`]: a directory holding a header (`keystore.hdr`: Argon2id
//!   parameters and salt, and a check value that tells a wrong passphrase from a corrupt key) and
//!   one file per key (`<hex label>.key`: the key encrypted with AES-256-GCM under the key
//!   derived from the passphrase, the label and algorithm bound in as associated data so a
//!   file cannot be renamed onto another key). The byte layout is in `docs/hsm-keystore.md`.
//!
//! Keys are decrypted once at open and kept in memory in zeroize-on-drop types (`k256` and
//! `ed25519-dalek` signing keys, [`Zeroizing`] arrays); the derived key is [`Zeroizing`] too.
//! Wrapping is RFC 5649 (AES key wrap with padding), the same bytes a PKCS#11 module produces
//! with `CKM_AES_KEY_WRAP_PAD`.

use crate::verify::{check_sign_input, finish_ed25519, finish_secp256k1, secp256k1_public_key};
use crate::wrap_format::{check_wrapped_len, frame, unframe, wrapped_len};
use crate::{
    HsmError, KEYS_MAX, KeyAlgorithm, KeyInfo, KeyStore, PublicKey, SecretBytes, Signature,
    validate_label,
};
use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
type Nonce = aes_gcm::Nonce<aes_gcm::aead::consts::U12>;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use zeroize::Zeroizing;

/// Name of the header file inside a store directory.
pub const HEADER_FILE: &str = "keystore.hdr";
/// Name of the lock file inside a store directory.
pub const LOCK_FILE: &str = "keystore.lock";
/// Extension of a key file.
const KEY_EXTENSION: &str = "key";
/// Extension of a file being written; leftovers of a crash are removed at open.
const TMP_EXTENSION: &str = "tmp";

const HEADER_MAGIC: &[u8; 8] = b"RMPKSTR1";
const KEY_MAGIC: &[u8; 8] = b"RMPKEY01";
const FORMAT_VERSION: u16 = 1;
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Every key this store holds is 32 bytes of secret: a secp256k1 scalar, an Ed25519 seed or an
/// AES-256 key.
const SECRET_KEY_LEN: usize = 32;
/// magic, version, m, t, p, salt, then the check value (nonce and tag of an empty plaintext).
const HEADER_LEN: usize = 8 + 2 + 4 + 4 + 4 + SALT_LEN + NONCE_LEN + TAG_LEN;
/// magic, algorithm, nonce, ciphertext with tag.
const KEY_FILE_LEN: usize = 8 + 1 + NONCE_LEN + SECRET_KEY_LEN + TAG_LEN;
/// A random 32-byte string is not a valid secp256k1 scalar with probability about 2^-128;
/// retrying a few times and then failing keeps generation bounded.
const KEYGEN_TRIES_MAX: usize = 8;

/// Argon2id cost parameters, stored in the header so that a store keeps opening after the
/// defaults change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory, in KiB.
    pub m_cost_kib: u32,
    /// Passes over memory.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl KdfParams {
    /// The default for new stores: 64 MiB, 3 passes, 1 lane (RFC 9106's second recommended
    /// option), about a quarter second on the development machine.
    pub const DEFAULT: Self = Self {
        m_cost_kib: 64 * 1024,
        t_cost: 3,
        p_cost: 1,
    };
    /// Cheap parameters for tests only: a store created with them falls to a brute-force
    /// attack on its passphrase.
    pub const INSECURE_FAST_FOR_TESTS: Self = Self {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };
    /// Most memory a header may ask for (1 GiB): a tampered header must not exhaust memory.
    pub const M_COST_KIB_MAX: u32 = 1024 * 1024;
    /// Most passes a header may ask for.
    pub const T_COST_MAX: u32 = 16;
    /// Most lanes a header may ask for.
    pub const P_COST_MAX: u32 = 16;

    fn to_argon2(self) -> Result<argon2::Argon2<'static>, HsmError> {
        if self.m_cost_kib > Self::M_COST_KIB_MAX
            || self.t_cost > Self::T_COST_MAX
            || self.p_cost > Self::P_COST_MAX
        {
            return Err(HsmError::Storage(format!(
                "Argon2id parameters {self:?} exceed the limits"
            )));
        }
        let params = argon2::Params::new(
            self.m_cost_kib,
            self.t_cost,
            self.p_cost,
            Some(SECRET_KEY_LEN),
        )
        .map_err(|e| HsmError::Storage(format!("Argon2id parameters {self:?}: {e}")))?;
        Ok(argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params,
        ))
    }
}

/// A key held in memory. Each variant zeroizes its secret on drop.
enum Secret {
    Secp256k1(k256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
    Aes256(Zeroizing<[u8; SECRET_KEY_LEN]>),
}

impl Secret {
    fn algorithm(&self) -> KeyAlgorithm {
        match self {
            Self::Secp256k1(_) => KeyAlgorithm::Secp256k1,
            Self::Ed25519(_) => KeyAlgorithm::Ed25519,
            Self::Aes256(_) => KeyAlgorithm::Aes256Wrap,
        }
    }

    fn from_bytes(algorithm: KeyAlgorithm, bytes: &[u8; SECRET_KEY_LEN]) -> Result<Self, HsmError> {
        match algorithm {
            KeyAlgorithm::Secp256k1 => k256::ecdsa::SigningKey::from_slice(bytes)
                .map(Self::Secp256k1)
                .map_err(|_| HsmError::InvalidInput("not a valid secp256k1 scalar".into())),
            KeyAlgorithm::Ed25519 => {
                Ok(Self::Ed25519(ed25519_dalek::SigningKey::from_bytes(bytes)))
            }
            KeyAlgorithm::Aes256Wrap => Ok(Self::Aes256(Zeroizing::new(*bytes))),
        }
    }

    fn to_bytes(&self) -> Zeroizing<[u8; SECRET_KEY_LEN]> {
        let mut out = Zeroizing::new([0u8; SECRET_KEY_LEN]);
        match self {
            Self::Secp256k1(key) => out.copy_from_slice(&Zeroizing::new(key.to_bytes())),
            Self::Ed25519(key) => out.copy_from_slice(&Zeroizing::new(key.to_bytes())[..]),
            Self::Aes256(key) => out.copy_from_slice(&key[..]),
        }
        out
    }

    fn generate(algorithm: KeyAlgorithm) -> Result<Self, HsmError> {
        for _ in 0..KEYGEN_TRIES_MAX {
            let mut bytes = Zeroizing::new([0u8; SECRET_KEY_LEN]);
            fill_random(&mut bytes[..])?;
            match Self::from_bytes(algorithm, &bytes) {
                Ok(secret) => return Ok(secret),
                Err(HsmError::InvalidInput(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(HsmError::Device(
            "the random generator gave no valid key".into(),
        ))
    }

    fn kwp(&self, label: &str) -> Result<aes_kw::KwpAes256, HsmError> {
        match self {
            Self::Aes256(key) => aes_kw::KwpAes256::new_from_slice(&key[..])
                .map_err(|_| HsmError::Device("AES key of the wrong length".into())),
            other => Err(HsmError::WrongAlgorithm {
                label: label.to_owned(),
                algorithm: other.algorithm(),
                operation: "wrap or unwrap",
            }),
        }
    }
}

fn algorithm_code(algorithm: KeyAlgorithm) -> u8 {
    match algorithm {
        KeyAlgorithm::Secp256k1 => 1,
        KeyAlgorithm::Ed25519 => 2,
        KeyAlgorithm::Aes256Wrap => 3,
    }
}

fn algorithm_from_code(code: u8) -> Option<KeyAlgorithm> {
    match code {
        1 => Some(KeyAlgorithm::Secp256k1),
        2 => Some(KeyAlgorithm::Ed25519),
        3 => Some(KeyAlgorithm::Aes256Wrap),
        _ => None,
    }
}

fn gcm_nonce(bytes: &[u8]) -> Result<Nonce, HsmError> {
    Nonce::try_from(bytes)
        .map_err(|_| HsmError::Storage("AES-GCM nonce of the wrong length".into()))
}

fn fill_random(out: &mut [u8]) -> Result<(), HsmError> {
    getrandom::fill(out).map_err(|e| HsmError::Device(format!("operating system random: {e}")))
}

/// Where an on-disk store lives and the key that encrypts it.
struct Disk {
    dir: PathBuf,
    /// Derived from the passphrase with Argon2id; encrypts every key file.
    master: Zeroizing<[u8; SECRET_KEY_LEN]>,
    /// Holds an exclusive lock on `keystore.lock` while the store is open: a second process
    /// (or a second store in this one) would otherwise keep its own copy of the key set and
    /// the two would drift apart.
    _lock: fs::File,
}

impl Disk {
    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new((&*self.master).into())
    }

    fn key_path(&self, label: &str) -> PathBuf {
        self.dir
            .join(format!("{}.{KEY_EXTENSION}", hex::encode(label.as_bytes())))
    }

    /// Encrypts and writes a key atomically (temporary file, fsync, rename, fsync of the
    /// directory), so that a crash leaves either the whole key or none of it.
    fn write_key(&self, label: &str, secret: &Secret) -> Result<(), HsmError> {
        let algorithm = algorithm_code(secret.algorithm());
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        let aad = key_aad(algorithm, label);
        let plaintext = secret.to_bytes();
        let ciphertext = self
            .cipher()
            .encrypt(
                &gcm_nonce(&nonce)?,
                Payload {
                    msg: &plaintext[..],
                    aad: &aad,
                },
            )
            .map_err(|_| HsmError::Storage("AES-GCM encryption failed".into()))?;
        let mut file = Vec::with_capacity(KEY_FILE_LEN);
        file.extend_from_slice(KEY_MAGIC);
        file.push(algorithm);
        file.extend_from_slice(&nonce);
        file.extend_from_slice(&ciphertext);
        write_atomically(&self.key_path(label), &file)
    }

    fn read_key(&self, label: &str, bytes: &[u8]) -> Result<Secret, HsmError> {
        let corrupt = || HsmError::Storage(format!("key file for {label:?} is corrupt"));
        if bytes.len() != KEY_FILE_LEN || &bytes[..8] != KEY_MAGIC {
            return Err(corrupt());
        }
        let algorithm = algorithm_from_code(bytes[8]).ok_or_else(corrupt)?;
        let nonce = &bytes[9..9 + NONCE_LEN];
        let aad = key_aad(bytes[8], label);
        let plaintext = Zeroizing::new(
            self.cipher()
                .decrypt(
                    &gcm_nonce(nonce)?,
                    Payload {
                        msg: &bytes[9 + NONCE_LEN..],
                        aad: &aad,
                    },
                )
                .map_err(|_| corrupt())?,
        );
        let plaintext: &[u8; SECRET_KEY_LEN] =
            plaintext.as_slice().try_into().map_err(|_| corrupt())?;
        Secret::from_bytes(algorithm, plaintext).map_err(|_| corrupt())
    }

    fn remove_key(&self, label: &str) -> Result<(), HsmError> {
        fs::remove_file(self.key_path(label)).map_err(|e| io_error("removing a key file", &e))?;
        sync_dir(&self.dir)
    }
}

fn key_aad(algorithm: u8, label: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(9 + label.len());
    aad.extend_from_slice(KEY_MAGIC);
    aad.push(algorithm);
    aad.extend_from_slice(label.as_bytes());
    aad
}

fn io_error(what: &str, e: &std::io::Error) -> HsmError {
    HsmError::Storage(format!("{what}: {e}"))
}

fn sync_dir(dir: &Path) -> Result<(), HsmError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("syncing the key store directory", &e))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), HsmError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(TMP_EXTENSION);
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        // Best effort: a leftover temporary file is also removed at the next open.
        let _ = fs::remove_file(&tmp);
        return Err(io_error("writing a key store file", &e));
    }
    let dir = path
        .parent()
        .ok_or_else(|| HsmError::Storage("key store file has no directory".into()))?;
    sync_dir(dir)
}

/// The embedded key store. See the module documentation; **not for production**.
pub struct SoftwareKeyStore {
    /// Every key, sorted by label (which [`KeyStore::list_keys`] needs).
    keys: RwLock<BTreeMap<String, Secret>>,
    /// `None` for an in-memory store.
    disk: Option<Disk>,
}

impl std::fmt::Debug for SoftwareKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.keys.read().map(|k| k.len()).unwrap_or(0);
        let mut s = f.debug_struct("SoftwareKeyStore");
        match &self.disk {
            Some(disk) => s.field("dir", &disk.dir),
            None => s.field("dir", &"in memory"),
        };
        s.field("keys", &count).finish_non_exhaustive()
    }
}

impl SoftwareKeyStore {
    /// A store that keeps its keys in memory only, for tests and the demo.
    pub fn in_memory() -> Self {
        tracing::warn!(
            "key store: in-memory software keys, lost at exit; NOT FOR PRODUCTION (use a PKCS#11 HSM)"
        );
        Self {
            keys: RwLock::new(BTreeMap::new()),
            disk: None,
        }
    }

    /// Opens the store in directory `dir`, creating it (mode 0700) with
    /// [`KdfParams::DEFAULT`] if it does not exist or is empty. A wrong passphrase is
    /// [`HsmError::Storage`].
    pub fn open(dir: impl AsRef<Path>, passphrase: &SecretBytes) -> Result<Self, HsmError> {
        Self::open_with_params(dir, passphrase, KdfParams::DEFAULT)
    }

    /// Like [`SoftwareKeyStore::open`]; `params_for_new` applies only when the store is
    /// created (an existing store uses the parameters in its header).
    pub fn open_with_params(
        dir: impl AsRef<Path>,
        passphrase: &SecretBytes,
        params_for_new: KdfParams,
    ) -> Result<Self, HsmError> {
        let dir = dir.as_ref().to_path_buf();
        tracing::warn!(
            dir = %dir.display(),
            "key store: software keys encrypted under a passphrase; NOT FOR PRODUCTION (use a PKCS#11 HSM)"
        );
        if passphrase.expose().is_empty() {
            return Err(HsmError::InvalidInput("empty passphrase".into()));
        }
        {
            use std::os::unix::fs::DirBuilderExt;
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| io_error("creating the key store directory", &e))?;
        }
        let lock = lock_dir(&dir)?;
        let header_path = dir.join(HEADER_FILE);
        let master = if header_path.exists() {
            let header = fs::read(&header_path).map_err(|e| io_error("reading the header", &e))?;
            open_header(&header, passphrase)?
        } else {
            let (header, master) = new_header(passphrase, params_for_new)?;
            write_atomically(&header_path, &header)?;
            master
        };
        let disk = Disk {
            dir,
            master,
            _lock: lock,
        };
        let keys = load_keys(&disk)?;
        Ok(Self {
            keys: RwLock::new(keys),
            disk: Some(disk),
        })
    }

    fn read(&self) -> Result<std::sync::RwLockReadGuard<'_, BTreeMap<String, Secret>>, HsmError> {
        self.keys
            .read()
            .map_err(|_| HsmError::Device("key store lock poisoned".into()))
    }

    fn write(&self) -> Result<std::sync::RwLockWriteGuard<'_, BTreeMap<String, Secret>>, HsmError> {
        self.keys
            .write()
            .map_err(|_| HsmError::Device("key store lock poisoned".into()))
    }
}

/// Takes the store's exclusive lock, or says who has it.
fn lock_dir(dir: &Path) -> Result<fs::File, HsmError> {
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(LOCK_FILE))
        .map_err(|e| io_error("opening the key store lock", &e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(HsmError::Storage(format!(
            "the key store in {} is open elsewhere",
            dir.display()
        ))),
        Err(fs::TryLockError::Error(e)) => Err(io_error("locking the key store", &e)),
    }
}

fn header_prefix(params: KdfParams, salt: &[u8; SALT_LEN]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(HEADER_MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    out.extend_from_slice(&params.m_cost_kib.to_be_bytes());
    out.extend_from_slice(&params.t_cost.to_be_bytes());
    out.extend_from_slice(&params.p_cost.to_be_bytes());
    out.extend_from_slice(salt);
    out
}

fn derive(
    passphrase: &SecretBytes,
    params: KdfParams,
    salt: &[u8],
) -> Result<Zeroizing<[u8; SECRET_KEY_LEN]>, HsmError> {
    let mut master = Zeroizing::new([0u8; SECRET_KEY_LEN]);
    params
        .to_argon2()?
        .hash_password_into(passphrase.expose(), salt, &mut master[..])
        .map_err(|e| HsmError::Storage(format!("Argon2id: {e}")))?;
    Ok(master)
}

/// The check value is the GCM tag of an empty plaintext with the header's other bytes as
/// associated data: it proves the passphrase (and the header's integrity) without encrypting
/// anything known.
fn new_header(
    passphrase: &SecretBytes,
    params: KdfParams,
) -> Result<(Vec<u8>, Zeroizing<[u8; SECRET_KEY_LEN]>), HsmError> {
    let mut salt = [0u8; SALT_LEN];
    fill_random(&mut salt)?;
    let master = derive(passphrase, params, &salt)?;
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce)?;
    let mut header = header_prefix(params, &salt);
    let tag = Aes256Gcm::new((&*master).into())
        .encrypt(
            &gcm_nonce(&nonce)?,
            Payload {
                msg: &[],
                aad: &header,
            },
        )
        .map_err(|_| HsmError::Storage("AES-GCM encryption failed".into()))?;
    header.extend_from_slice(&nonce);
    header.extend_from_slice(&tag);
    debug_assert_eq!(header.len(), HEADER_LEN);
    Ok((header, master))
}

fn open_header(
    header: &[u8],
    passphrase: &SecretBytes,
) -> Result<Zeroizing<[u8; SECRET_KEY_LEN]>, HsmError> {
    if header.len() != HEADER_LEN || &header[..8] != HEADER_MAGIC {
        return Err(HsmError::Storage("not a rempart key store header".into()));
    }
    let u32_at = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let version = u16::from_be_bytes([header[8], header[9]]);
    if version != FORMAT_VERSION {
        return Err(HsmError::Storage(format!(
            "key store format version {version}, this build reads {FORMAT_VERSION}"
        )));
    }
    let params = KdfParams {
        m_cost_kib: u32_at(10),
        t_cost: u32_at(14),
        p_cost: u32_at(18),
    };
    let salt_end = 22 + SALT_LEN;
    let salt = &header[22..salt_end];
    let master = derive(passphrase, params, salt)?;
    let nonce = &header[salt_end..salt_end + NONCE_LEN];
    Aes256Gcm::new((&*master).into())
        .decrypt(
            &gcm_nonce(nonce)?,
            Payload {
                msg: &header[salt_end + NONCE_LEN..],
                aad: &header[..salt_end],
            },
        )
        .map_err(|_| {
            HsmError::Storage("wrong passphrase, or the key store header is corrupt".into())
        })?;
    Ok(master)
}

fn load_keys(disk: &Disk) -> Result<BTreeMap<String, Secret>, HsmError> {
    let mut keys = BTreeMap::new();
    let entries =
        fs::read_dir(&disk.dir).map_err(|e| io_error("listing the key store directory", &e))?;
    for entry in entries {
        let path = entry
            .map_err(|e| io_error("listing the key store directory", &e))?
            .path();
        let extension = path.extension().and_then(|e| e.to_str());
        if extension == Some(TMP_EXTENSION) {
            // An interrupted write: the key was never generated as far as any caller knows.
            fs::remove_file(&path).map_err(|e| io_error("removing a temporary file", &e))?;
            continue;
        }
        if extension != Some(KEY_EXTENSION) {
            continue;
        }
        let label = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| hex::decode(s).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                HsmError::Storage(format!("unexpected key file name {}", path.display()))
            })?;
        if keys.len() >= KEYS_MAX {
            return Err(HsmError::Storage(format!(
                "more than {KEYS_MAX} keys in the store"
            )));
        }
        let bytes = fs::read(&path).map_err(|e| io_error("reading a key file", &e))?;
        let secret = disk.read_key(&label, &bytes)?;
        keys.insert(label, secret);
    }
    Ok(keys)
}

impl KeyStore for SoftwareKeyStore {
    fn generate_key(&self, label: &str, algorithm: KeyAlgorithm) -> Result<KeyInfo, HsmError> {
        validate_label(label)?;
        // Generate outside the lock; hold the write lock across the file write so that two
        // callers cannot both create the same label.
        let secret = Secret::generate(algorithm)?;
        let mut keys = self.write()?;
        if keys.contains_key(label) {
            return Err(HsmError::KeyExists(label.to_owned()));
        }
        if keys.len() >= KEYS_MAX {
            return Err(HsmError::Storage(format!(
                "the store holds {KEYS_MAX} keys already"
            )));
        }
        if let Some(disk) = &self.disk {
            disk.write_key(label, &secret)?;
        }
        keys.insert(label.to_owned(), secret);
        Ok(KeyInfo {
            label: label.to_owned(),
            algorithm,
        })
    }

    fn public_key(&self, label: &str) -> Result<PublicKey, HsmError> {
        let keys = self.read()?;
        match keys.get(label) {
            None => Err(HsmError::KeyNotFound(label.to_owned())),
            Some(Secret::Secp256k1(key)) => Ok(secp256k1_public_key(key.verifying_key())),
            Some(Secret::Ed25519(key)) => Ok(PublicKey {
                algorithm: KeyAlgorithm::Ed25519,
                bytes: key.verifying_key().to_bytes().to_vec(),
            }),
            Some(Secret::Aes256(_)) => Err(HsmError::WrongAlgorithm {
                label: label.to_owned(),
                algorithm: KeyAlgorithm::Aes256Wrap,
                operation: "have a public key",
            }),
        }
    }

    fn sign(&self, label: &str, message_or_digest: &[u8]) -> Result<Signature, HsmError> {
        let keys = self.read()?;
        let secret = keys
            .get(label)
            .ok_or_else(|| HsmError::KeyNotFound(label.to_owned()))?;
        check_sign_input(label, secret.algorithm(), message_or_digest)?;
        match secret {
            Secret::Secp256k1(key) => {
                let (signature, id) = key.sign_prehash_recoverable(message_or_digest);
                finish_secp256k1(
                    key.verifying_key(),
                    message_or_digest,
                    &signature.to_bytes(),
                    Some(id.to_byte()),
                )
            }
            Secret::Ed25519(key) => {
                use ed25519_dalek::Signer;
                let signature = key.sign(message_or_digest);
                finish_ed25519(
                    &key.verifying_key(),
                    message_or_digest,
                    &signature.to_bytes(),
                )
            }
            Secret::Aes256(_) => Err(HsmError::WrongAlgorithm {
                label: label.to_owned(),
                algorithm: KeyAlgorithm::Aes256Wrap,
                operation: "sign",
            }),
        }
    }

    fn wrap_secret(&self, wrap_label: &str, secret: &SecretBytes) -> Result<Vec<u8>, HsmError> {
        let framed = frame(secret)?;
        let keys = self.read()?;
        let kwp = keys
            .get(wrap_label)
            .ok_or_else(|| HsmError::KeyNotFound(wrap_label.to_owned()))?
            .kwp(wrap_label)?;
        let mut out = vec![0u8; wrapped_len(secret.expose().len())];
        kwp.wrap_key(&framed, &mut out)
            .map_err(|e| HsmError::Device(format!("AES key wrap: {e:?}")))?;
        Ok(out)
    }

    fn unwrap_secret(&self, wrap_label: &str, wrapped: &[u8]) -> Result<SecretBytes, HsmError> {
        check_wrapped_len(wrapped)?;
        let keys = self.read()?;
        let kwp = keys
            .get(wrap_label)
            .ok_or_else(|| HsmError::KeyNotFound(wrap_label.to_owned()))?
            .kwp(wrap_label)?;
        let mut buf = Zeroizing::new(vec![0u8; wrapped.len()]);
        let plain = kwp.unwrap_key(wrapped, &mut buf).map_err(|_| {
            HsmError::InvalidInput(
                "wrapped secret fails its integrity check (wrong key or corrupt)".into(),
            )
        })?;
        unframe(plain)
    }

    fn destroy_key(&self, label: &str) -> Result<(), HsmError> {
        let mut keys = self.write()?;
        if !keys.contains_key(label) {
            return Err(HsmError::KeyNotFound(label.to_owned()));
        }
        if let Some(disk) = &self.disk {
            disk.remove_key(label)?;
        }
        keys.remove(label);
        Ok(())
    }

    fn list_keys(&self) -> Result<Vec<KeyInfo>, HsmError> {
        Ok(self
            .read()?
            .iter()
            .map(|(label, secret)| KeyInfo {
                label: label.clone(),
                algorithm: secret.algorithm(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passphrase(s: &str) -> SecretBytes {
        SecretBytes::new(s.as_bytes().to_vec())
    }

    #[test]
    fn rfc5649_vector_20_bytes() {
        // RFC 5649 section 6, first example. Its KEK is AES-192, so this checks the wrapping
        // crate with its 192-bit variant; the AES-256 path is the same code.
        let kek = hex::decode("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8").expect("hex");
        let key = hex::decode("c37b7e6492584340bed12207808941155068f738").expect("hex");
        let expected =
            hex::decode("138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a")
                .expect("hex");
        let kwp = aes_kw::KwpAes192::new_from_slice(&kek).expect("key");
        let mut out = vec![0u8; key.len().div_ceil(8) * 8 + 8];
        kwp.wrap_key(&key, &mut out).expect("wraps");
        assert_eq!(out, expected);
    }

    #[test]
    fn on_disk_store_survives_reopen_and_refuses_a_wrong_passphrase() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys");
        let params = KdfParams::INSECURE_FAST_FOR_TESTS;
        let store = SoftwareKeyStore::open_with_params(&path, &passphrase("pass one"), params)
            .expect("open");
        store
            .generate_key("audit/checkpoint", KeyAlgorithm::Ed25519)
            .expect("generate");
        store
            .generate_key("custody/seed-kek", KeyAlgorithm::Aes256Wrap)
            .expect("generate");
        let public = store.public_key("audit/checkpoint").expect("public key");
        let wrapped = store
            .wrap_secret("custody/seed-kek", &SecretBytes::new(vec![5u8; 64]))
            .expect("wrap");
        drop(store);

        let reopened = SoftwareKeyStore::open_with_params(&path, &passphrase("pass one"), params)
            .expect("reopen");
        assert_eq!(reopened.public_key("audit/checkpoint").expect("pk"), public);
        assert_eq!(
            reopened
                .unwrap_secret("custody/seed-kek", &wrapped)
                .expect("unwrap")
                .expose(),
            &[5u8; 64][..]
        );
        reopened.destroy_key("audit/checkpoint").expect("destroy");
        drop(reopened);

        let again = SoftwareKeyStore::open_with_params(&path, &passphrase("pass one"), params)
            .expect("reopen");
        assert_eq!(again.list_keys().expect("list").len(), 1);

        assert!(matches!(
            SoftwareKeyStore::open_with_params(&path, &passphrase("pass two"), params),
            Err(HsmError::Storage(_))
        ));
    }

    #[test]
    fn a_store_directory_is_open_once_at_a_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let params = KdfParams::INSECURE_FAST_FOR_TESTS;
        let first =
            SoftwareKeyStore::open_with_params(dir.path(), &passphrase("p"), params).expect("open");
        assert!(matches!(
            SoftwareKeyStore::open_with_params(dir.path(), &passphrase("p"), params),
            Err(HsmError::Storage(_))
        ));
        drop(first);
        SoftwareKeyStore::open_with_params(dir.path(), &passphrase("p"), params)
            .expect("the lock goes with the store");
    }

    #[test]
    fn a_key_file_renamed_onto_another_label_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let params = KdfParams::INSECURE_FAST_FOR_TESTS;
        let store =
            SoftwareKeyStore::open_with_params(dir.path(), &passphrase("p"), params).expect("open");
        store
            .generate_key("a", KeyAlgorithm::Secp256k1)
            .expect("generate");
        drop(store);
        let from = dir.path().join(format!("{}.key", hex::encode("a")));
        let to = dir.path().join(format!("{}.key", hex::encode("b")));
        fs::rename(from, to).expect("rename");
        assert!(matches!(
            SoftwareKeyStore::open_with_params(dir.path(), &passphrase("p"), params),
            Err(HsmError::Storage(_))
        ));
    }

    #[test]
    fn a_flipped_bit_in_a_key_file_is_refused_and_leftover_tmp_files_are_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let params = KdfParams::INSECURE_FAST_FOR_TESTS;
        let store =
            SoftwareKeyStore::open_with_params(dir.path(), &passphrase("p"), params).expect("open");
        store
            .generate_key("a", KeyAlgorithm::Ed25519)
            .expect("generate");
        drop(store);
        let tmp = dir.path().join("6262.tmp");
        fs::write(&tmp, b"half written").expect("write");
        let reopened =
            SoftwareKeyStore::open_with_params(dir.path(), &passphrase("p"), params).expect("open");
        assert!(!tmp.exists());
        drop(reopened);

        let path = dir.path().join(format!("{}.key", hex::encode("a")));
        let mut bytes = fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, bytes).expect("write");
        assert!(matches!(
            SoftwareKeyStore::open_with_params(dir.path(), &passphrase("p"), params),
            Err(HsmError::Storage(_))
        ));
    }

    #[test]
    fn header_with_absurd_params_is_refused_before_deriving() {
        let mut header = header_prefix(
            KdfParams {
                m_cost_kib: u32::MAX,
                t_cost: 1,
                p_cost: 1,
            },
            &[0u8; SALT_LEN],
        );
        header.extend_from_slice(&[0u8; NONCE_LEN + TAG_LEN]);
        assert!(matches!(
            open_header(&header, &passphrase("p")),
            Err(HsmError::Storage(_))
        ));
    }

    #[test]
    fn debug_shows_neither_keys_nor_derived_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SoftwareKeyStore::open_with_params(
            dir.path(),
            &passphrase("hunter2"),
            KdfParams::INSECURE_FAST_FOR_TESTS,
        )
        .expect("open");
        store
            .generate_key("k", KeyAlgorithm::Aes256Wrap)
            .expect("generate");
        let printed = format!("{store:?}");
        let keys = store.read().expect("lock");
        let secret = hex::encode(&keys["k"].to_bytes()[..]);
        let master = hex::encode(&store.disk.as_ref().expect("disk").master[..]);
        assert!(
            !printed.contains(&secret) && !printed.contains(&master),
            "{printed}"
        );
        assert!(!printed.contains("hunter2"));
        assert!(printed.contains("keys: 1"), "{printed}");
    }

    #[test]
    fn the_software_store_does_not_claim_production_grade() {
        assert!(!SoftwareKeyStore::in_memory().is_production_grade());
    }
}
