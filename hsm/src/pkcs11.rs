//! The PKCS#11 backend: any vendor's module, loaded from the path in [`Pkcs11Config`]; tested
//! against SoftHSM2.
//!
//! # How each operation maps onto PKCS#11
//! - secp256k1: `CKM_EC_KEY_PAIR_GEN` with `CKA_EC_PARAMS` = the secp256k1 OID; `CKM_ECDSA` over
//!   the caller's 32-byte digest. The device's raw `r || s` is normalised to low-S and given
//!   its recovery id on the host (`verify.rs`), which also verifies it.
//! - Ed25519: `CKM_EC_EDWARDS_KEY_PAIR_GEN` with the Ed25519 OID; `CKM_EDDSA` (pure). The
//!   public key comes from `CKA_EC_POINT` (a DER OCTET STRING around the 32 bytes on SoftHSM2;
//!   raw bytes on some other modules; both are read).
//! - AES-256 wrap keys: `CKM_AES_KEY_GEN`, usable only to wrap and unwrap. A secret is wrapped by
//!   importing it as a *session* generic-secret object (sensitive, extractable: it can be
//!   wrapped but never read back), `C_WrapKey` with `CKM_AES_KEY_WRAP_PAD` (RFC 5649), then
//!   destroying the object. Unwrapping is `C_UnwrapKey` into a session generic secret that is
//!   *not* sensitive, because the caller asked for the seed back: its `CKA_VALUE` is read and
//!   the object destroyed at once. SoftHSM2 refuses AES-GCM through `C_WrapKey`, and RFC 5649
//!   gives the same bytes as the software backend.
//! - Private and AES keys are token objects with `CKA_LABEL`, `CKA_SENSITIVE = true`,
//!   `CKA_EXTRACTABLE = false`, `CKA_PRIVATE = true`; [`Pkcs11KeyStore::key_protection`]
//!   reads that back for audits.
//!
//! # Sessions
//! A PKCS#11 session must not be used by two threads at once, so the store keeps a bounded pool
//! of read/write sessions ([`Pkcs11Config::sessions_max`]) and a caller waits at most
//! [`Pkcs11Config::session_wait`] for one. The user logs in once; a session opened later finds
//! itself logged in (login state is per application and token), and logs in again only if every
//! session had been closed. An absent module, a missing token, a wrong PIN, no free session or a
//! device failing mid-operation is [`HsmError::Device`], never a panic.
//!
//! # One module per process
//! `C_Initialize` may be called once per process and module, and `C_Finalize` would pull the
//! module from under every other store using it. Modules are therefore loaded once into a
//! process-wide table keyed by path and never finalised; several stores (several tokens) share
//! one loaded module.

use crate::verify::{
    check_sign_input, ed25519_verifying_key, finish_ed25519, finish_secp256k1,
    secp256k1_public_key, secp256k1_verifying_key,
};
use crate::wrap_format::{check_wrapped_len, frame, unframe};
use crate::{
    HsmError, KEYS_MAX, KeyAlgorithm, KeyInfo, KeyStore, PublicKey, SecretBytes, Signature,
    validate_label,
};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::object::{
    Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::RawAuthPin;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};
use zeroize::{Zeroize, Zeroizing};

/// DER of the secp256k1 OID 1.3.132.0.10, the `CKA_EC_PARAMS` of a secp256k1 key.
pub const SECP256K1_EC_PARAMS: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a];
/// DER of the Ed25519 OID 1.3.101.112 (RFC 8410), the `CKA_EC_PARAMS` of an Ed25519 key.
pub const ED25519_EC_PARAMS: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];
/// Most sessions a store may be configured to keep open.
pub const SESSIONS_MAX: usize = 64;

/// Where the module is and how to log in. The PIN is a secret: zeroized on drop, redacted in
/// `Debug`.
#[derive(Clone)]
pub struct Pkcs11Config {
    /// The vendor's PKCS#11 shared library (SoftHSM2: `/usr/lib/softhsm/libsofthsm2.so`).
    pub module_path: PathBuf,
    /// The label of the token holding the keys (the slot is found by it, since slot numbers
    /// change when tokens are added).
    pub token_label: String,
    /// The user PIN.
    pub user_pin: SecretBytes,
    /// Most sessions kept open at once, 1 to [`SESSIONS_MAX`]: as many signing threads can use
    /// the device in parallel.
    pub sessions_max: usize,
    /// How long a caller waits for a free session before [`HsmError::Device`].
    pub session_wait: Duration,
}

impl Pkcs11Config {
    /// A configuration with 4 sessions and a 5-second wait for a free one.
    pub fn new(
        module_path: impl Into<PathBuf>,
        token_label: impl Into<String>,
        user_pin: SecretBytes,
    ) -> Self {
        Self {
            module_path: module_path.into(),
            token_label: token_label.into(),
            user_pin,
            sessions_max: 4,
            session_wait: Duration::from_secs(5),
        }
    }
}

impl std::fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module_path", &self.module_path)
            .field("token_label", &self.token_label)
            .field("user_pin", &"[REDACTED]")
            .field("sessions_max", &self.sessions_max)
            .field("session_wait", &self.session_wait)
            .finish()
    }
}

fn device(what: &str, e: &CkError) -> HsmError {
    HsmError::Device(format!("{what}: {e}"))
}

fn rv(e: &CkError) -> Option<RvError> {
    match e {
        CkError::Pkcs11(rv, _) => Some(*rv),
        _ => None,
    }
}

/// Errors after which a session is not worth returning to the pool.
fn session_is_broken(e: &CkError) -> bool {
    matches!(
        rv(e),
        Some(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::TokenNotPresent
                | RvError::GeneralError
        )
    )
}

/// The process-wide table of loaded and initialised modules (see the module documentation).
fn load_module(path: &Path) -> Result<Pkcs11, HsmError> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut modules = MODULES
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .map_err(|_| HsmError::Device("module table lock poisoned".into()))?;
    if let Some(module) = modules.get(path) {
        return Ok(module.clone());
    }
    if !path.is_file() {
        return Err(HsmError::Device(format!(
            "no PKCS#11 module at {}",
            path.display()
        )));
    }
    let module = Pkcs11::new(path)
        .map_err(|e| device(&format!("loading PKCS#11 module {}", path.display()), &e))?;
    match module.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) => {}
        // Another component of this process initialised it; it stays initialised.
        Err(e) if rv(&e) == Some(RvError::CryptokiAlreadyInitialized) => {}
        Err(e) => return Err(device("C_Initialize", &e)),
    }
    modules.insert(path.to_path_buf(), module.clone());
    Ok(module)
}

/// A bounded pool of items (sessions) opened on demand. Generic so that its waiting and
/// counting are tested without a device.
struct Pool<S> {
    state: Mutex<PoolState<S>>,
    available: Condvar,
    max: usize,
    wait: Duration,
}

struct PoolState<S> {
    idle: Vec<S>,
    /// Items in existence: idle plus leased plus being opened.
    open: usize,
}

/// An item taken from the pool; it goes back on drop unless discarded.
struct Lease<'a, S> {
    pool: &'a Pool<S>,
    item: Option<S>,
}

impl<S> Pool<S> {
    fn new(max: usize, wait: Duration) -> Self {
        Self {
            state: Mutex::new(PoolState {
                idle: Vec::with_capacity(max),
                open: 0,
            }),
            available: Condvar::new(),
            max,
            wait,
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, PoolState<S>>, HsmError> {
        self.state
            .lock()
            .map_err(|_| HsmError::Device("session pool lock poisoned".into()))
    }

    /// An idle item, or a new one from `open` while fewer than `max` exist, or whichever is
    /// returned first within the wait.
    fn acquire(
        &self,
        open: impl FnOnce() -> Result<S, HsmError>,
    ) -> Result<Lease<'_, S>, HsmError> {
        let deadline = Instant::now() + self.wait;
        let mut state = self.lock()?;
        loop {
            if let Some(item) = state.idle.pop() {
                return Ok(Lease {
                    pool: self,
                    item: Some(item),
                });
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match open() {
                    Ok(item) => Ok(Lease {
                        pool: self,
                        item: Some(item),
                    }),
                    Err(e) => {
                        self.forget_one();
                        Err(e)
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(HsmError::Device(format!(
                    "out of PKCS#11 sessions: all {} busy for {:?}",
                    self.max, self.wait
                )));
            }
            state = self
                .available
                .wait_timeout(state, deadline - now)
                .map_err(|_| HsmError::Device("session pool lock poisoned".into()))?
                .0;
        }
    }

    fn forget_one(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.open -= 1;
        }
        self.available.notify_one();
    }

    #[cfg(test)]
    fn open_count(&self) -> usize {
        self.state.lock().map(|s| s.open).unwrap_or(usize::MAX)
    }
}

impl<S> Lease<'_, S> {
    /// Drops the item instead of returning it (a broken session).
    fn discard(mut self) {
        self.item = None;
        self.pool.forget_one();
    }
}

impl<S> std::ops::Deref for Lease<'_, S> {
    type Target = S;
    fn deref(&self) -> &S {
        // Only `discard` takes the item, and it consumes the lease.
        self.item
            .as_ref()
            .unwrap_or_else(|| unreachable!("lease without an item"))
    }
}

impl<S> Drop for Lease<'_, S> {
    fn drop(&mut self) {
        if let Some(item) = self.item.take() {
            if let Ok(mut state) = self.pool.state.lock() {
                state.idle.push(item);
            }
            self.pool.available.notify_one();
        }
    }
}

/// What the store remembers of a key, so that signing costs one `C_Sign` and no search.
#[derive(Clone)]
enum CachedKey {
    Secp256k1 {
        private: ObjectHandle,
        public: k256::ecdsa::VerifyingKey,
    },
    Ed25519 {
        private: ObjectHandle,
        public: ed25519_dalek::VerifyingKey,
    },
    Aes256 {
        secret: ObjectHandle,
    },
}

impl CachedKey {
    fn algorithm(&self) -> KeyAlgorithm {
        match self {
            Self::Secp256k1 { .. } => KeyAlgorithm::Secp256k1,
            Self::Ed25519 { .. } => KeyAlgorithm::Ed25519,
            Self::Aes256 { .. } => KeyAlgorithm::Aes256Wrap,
        }
    }
}

/// How a key is protected on the token, read back from its attributes (for audits and for the
/// test that proves private keys cannot leave the device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyProtection {
    /// `CKA_SENSITIVE`.
    pub sensitive: bool,
    /// `CKA_EXTRACTABLE`.
    pub extractable: bool,
    /// `CKA_ALWAYS_SENSITIVE`: sensitive since it was generated.
    pub always_sensitive: bool,
    /// `CKA_NEVER_EXTRACTABLE`: never extractable since it was generated.
    pub never_extractable: bool,
    /// `CKA_TOKEN`: persistent on the token, not a session object.
    pub token_object: bool,
    /// What the device answers when asked for the length of `CKA_VALUE`: anything other than
    /// [`ValueAccess::Refused`] means the key material could be read out.
    pub value: ValueAccess,
}

/// The device's answer to a request for the size of `CKA_VALUE` (`C_GetAttributeValue` with no
/// buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueAccess {
    /// `CKR_ATTRIBUTE_SENSITIVE` or unavailable information: the value cannot be read.
    Refused,
    /// The object has no `CKA_VALUE` at all (for example an EC private key that stores it
    /// under another attribute).
    NoSuchAttribute,
    /// The value is readable and has this many bytes.
    Readable(usize),
}

/// A key store on a PKCS#11 token.
pub struct Pkcs11KeyStore {
    module: Pkcs11,
    slot: Slot,
    token_label: String,
    pin: SecretBytes,
    pool: Pool<Session>,
    /// Label to handles and public key; filled on first use, emptied on destroy.
    cache: RwLock<HashMap<String, CachedKey>>,
    /// Serialises generate and destroy in this process so that a label check and the creation
    /// that follows cannot interleave with another thread's (other processes are not covered:
    /// one signer process owns a token).
    management: Mutex<()>,
    production_grade: bool,
    token_description: String,
}

impl std::fmt::Debug for Pkcs11KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11KeyStore")
            .field("token_label", &self.token_label)
            .field("slot", &self.slot)
            .field("token", &self.token_description)
            .field("sessions_max", &self.pool.max)
            .finish_non_exhaustive()
    }
}

impl Pkcs11KeyStore {
    /// Loads the module (once per process), finds the token by label, opens a first session and
    /// logs the user in. Every failure is [`HsmError::Device`] (or [`HsmError::InvalidInput`]
    /// for a configuration out of bounds).
    pub fn open(config: Pkcs11Config) -> Result<Self, HsmError> {
        if config.sessions_max == 0 || config.sessions_max > SESSIONS_MAX {
            return Err(HsmError::InvalidInput(format!(
                "sessions_max must be 1 to {SESSIONS_MAX}, got {}",
                config.sessions_max
            )));
        }
        let module = load_module(&config.module_path)?;
        let slots = module
            .get_slots_with_token()
            .map_err(|e| device("C_GetSlotList", &e))?;
        let mut found = None;
        for slot in slots {
            let info = module
                .get_token_info(slot)
                .map_err(|e| device("C_GetTokenInfo", &e))?;
            if info.label().trim_end() == config.token_label {
                if found.is_some() {
                    return Err(HsmError::Device(format!(
                        "more than one token labelled {:?}",
                        config.token_label
                    )));
                }
                found = Some((slot, info));
            }
        }
        let (slot, info) = found.ok_or_else(|| {
            HsmError::Device(format!("no token labelled {:?}", config.token_label))
        })?;
        let token_description = format!(
            "{} {} (serial {})",
            info.manufacturer_id().trim_end(),
            info.model().trim_end(),
            info.serial_number().trim_end()
        );
        // SoftHSM keeps keys in files under the process's control: a test and development
        // device, whatever it is called through.
        let production_grade = !info.manufacturer_id().contains("SoftHSM");
        if !production_grade {
            tracing::warn!(token = %token_description, "key store: SoftHSM token; NOT FOR PRODUCTION");
        }
        let store = Self {
            module,
            slot,
            token_label: config.token_label,
            pin: config.user_pin,
            pool: Pool::new(config.sessions_max, config.session_wait),
            cache: RwLock::new(HashMap::new()),
            management: Mutex::new(()),
            production_grade,
            token_description,
        };
        // Open (and log in) the first session now, so that a wrong PIN fails here.
        drop(store.session()?);
        tracing::info!(token = %store.token_description, "key store: PKCS#11 token opened");
        Ok(store)
    }

    fn open_session(&self) -> Result<Session, HsmError> {
        let session = self
            .module
            .open_rw_session(self.slot)
            .map_err(|e| device("C_OpenSession", &e))?;
        let state = session
            .get_session_info()
            .map_err(|e| device("C_GetSessionInfo", &e))?
            .session_state();
        if state != SessionState::RwUser {
            let pin = RawAuthPin::new(Box::new(self.pin.expose().to_vec()));
            match session.login_with_raw(UserType::User, &pin) {
                Ok(()) => {}
                // Another thread logged in between our check and our login.
                Err(e) if rv(&e) == Some(RvError::UserAlreadyLoggedIn) => {}
                Err(e) => return Err(device("C_Login", &e)),
            }
        }
        Ok(session)
    }

    fn session(&self) -> Result<Lease<'_, Session>, HsmError> {
        self.pool.acquire(|| self.open_session())
    }

    /// Runs `op` on a pooled session; a session the device broke is discarded, not reused.
    fn with_session<T>(
        &self,
        what: &str,
        op: impl FnOnce(&Session) -> Result<T, CkError>,
    ) -> Result<T, HsmError> {
        let session = self.session()?;
        match op(&session) {
            Ok(value) => Ok(value),
            Err(e) => {
                if session_is_broken(&e) {
                    session.discard();
                }
                Err(device(what, &e))
            }
        }
    }

    fn find(
        session: &Session,
        label: &str,
        class: ObjectClass,
    ) -> Result<Vec<ObjectHandle>, CkError> {
        session.find_objects(&[
            Attribute::Token(true),
            Attribute::Class(class),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
    }

    /// Whether any object on the token carries `label` (any class: a label names one key).
    fn label_taken(session: &Session, label: &str) -> Result<bool, CkError> {
        Ok(!session
            .find_objects(&[
                Attribute::Token(true),
                Attribute::Label(label.as_bytes().to_vec()),
            ])?
            .is_empty())
    }

    /// Finds a key by label on the token and reads what signing needs.
    fn lookup(&self, label: &str) -> Result<CachedKey, HsmError> {
        if let Some(key) = self
            .cache
            .read()
            .map_err(|_| HsmError::Device("key cache lock poisoned".into()))?
            .get(label)
        {
            return Ok(key.clone());
        }
        let key = self
            .with_session("looking up a key", |session| self.lookup_on(session, label))?
            .ok_or_else(|| HsmError::KeyNotFound(label.to_owned()))??;
        self.cache
            .write()
            .map_err(|_| HsmError::Device("key cache lock poisoned".into()))?
            .insert(label.to_owned(), key.clone());
        Ok(key)
    }

    /// `Ok(None)`: no such key; `Ok(Some(Err))`: a key we cannot use.
    #[allow(clippy::type_complexity)]
    fn lookup_on(
        &self,
        session: &Session,
        label: &str,
    ) -> Result<Option<Result<CachedKey, HsmError>>, CkError> {
        if let Some(&secret) = Self::find(session, label, ObjectClass::SECRET_KEY)?.first() {
            let attrs = session.get_attributes(secret, &[AttributeType::KeyType])?;
            return Ok(Some(match attrs.first() {
                Some(Attribute::KeyType(t)) if *t == KeyType::AES => {
                    Ok(CachedKey::Aes256 { secret })
                }
                _ => Err(unsupported(label)),
            }));
        }
        let Some(&private) = Self::find(session, label, ObjectClass::PRIVATE_KEY)?.first() else {
            return Ok(None);
        };
        let Some(&public) = Self::find(session, label, ObjectClass::PUBLIC_KEY)?.first() else {
            return Ok(Some(Err(HsmError::Device(format!(
                "key {label:?} has no public key object on the token"
            )))));
        };
        let attrs = session.get_attributes(
            public,
            &[
                AttributeType::KeyType,
                AttributeType::EcParams,
                AttributeType::EcPoint,
            ],
        )?;
        let (mut key_type, mut params, mut point) = (None, None, None);
        for attr in attrs {
            match attr {
                Attribute::KeyType(t) => key_type = Some(t),
                Attribute::EcParams(p) => params = Some(p),
                Attribute::EcPoint(p) => point = Some(p),
                _ => {}
            }
        }
        let (Some(key_type), Some(params), Some(point)) = (key_type, params, point) else {
            return Ok(Some(Err(unsupported(label))));
        };
        Ok(Some(
            if key_type == KeyType::EC && params == SECP256K1_EC_PARAMS {
                secp256k1_verifying_key(unwrap_octet_string(&point, &[33, 65]))
                    .map(|public| CachedKey::Secp256k1 { private, public })
            } else if key_type == KeyType::EC_EDWARDS {
                ed25519_verifying_key(unwrap_octet_string(&point, &[32]))
                    .map(|public| CachedKey::Ed25519 { private, public })
            } else {
                Err(unsupported(label))
            },
        ))
    }

    /// Drops a cached key whose handle the device no longer knows (destroyed by another
    /// process), so that the next call looks it up again.
    fn evict(&self, label: &str) {
        if let Ok(mut cache) = self.cache.write() {
            cache.remove(label);
        }
    }

    /// Reads back how the key labelled `label` is protected (its private or secret object).
    pub fn key_protection(&self, label: &str) -> Result<KeyProtection, HsmError> {
        let handle = match self.lookup(label)? {
            CachedKey::Secp256k1 { private, .. } | CachedKey::Ed25519 { private, .. } => private,
            CachedKey::Aes256 { secret } => secret,
        };
        self.with_session("reading key attributes", |session| {
            let mut protection = KeyProtection {
                sensitive: false,
                extractable: true,
                always_sensitive: false,
                never_extractable: false,
                token_object: false,
                value: ValueAccess::NoSuchAttribute,
            };
            for attr in session.get_attributes(
                handle,
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::AlwaysSensitive,
                    AttributeType::NeverExtractable,
                    AttributeType::Token,
                ],
            )? {
                match attr {
                    Attribute::Sensitive(v) => protection.sensitive = v,
                    Attribute::Extractable(v) => protection.extractable = v,
                    Attribute::AlwaysSensitive(v) => protection.always_sensitive = v,
                    Attribute::NeverExtractable(v) => protection.never_extractable = v,
                    Attribute::Token(v) => protection.token_object = v,
                    _ => {}
                }
            }
            // `get_attributes` silently leaves out attributes the device refuses, so the value
            // is probed with `get_attribute_info`, which reports the refusal itself.
            protection.value = match session
                .get_attribute_info(handle, &[AttributeType::Value])?
                .first()
            {
                Some(AttributeInfo::Available(len)) => ValueAccess::Readable(*len),
                Some(AttributeInfo::TypeInvalid) => ValueAccess::NoSuchAttribute,
                _ => ValueAccess::Refused,
            };
            Ok(protection)
        })
    }

    /// The token this store uses, as the device describes it.
    pub fn token_description(&self) -> &str {
        &self.token_description
    }

    fn generate_on(
        &self,
        session: &Session,
        label: &str,
        algorithm: KeyAlgorithm,
    ) -> Result<(), CkError> {
        let label_attr = Attribute::Label(label.as_bytes().to_vec());
        let private_template = vec![
            Attribute::Token(true),
            label_attr.clone(),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Derive(false),
        ];
        let public_template = |params: Vec<u8>| {
            vec![
                Attribute::Token(true),
                label_attr.clone(),
                Attribute::Private(false),
                Attribute::Verify(true),
                Attribute::EcParams(params),
            ]
        };
        match algorithm {
            KeyAlgorithm::Secp256k1 => session
                .generate_key_pair(
                    &Mechanism::EccKeyPairGen,
                    &public_template(SECP256K1_EC_PARAMS.to_vec()),
                    &private_template,
                )
                .map(drop),
            KeyAlgorithm::Ed25519 => session
                .generate_key_pair(
                    &Mechanism::EccEdwardsKeyPairGen,
                    &public_template(ED25519_EC_PARAMS.to_vec()),
                    &private_template,
                )
                .map(drop),
            KeyAlgorithm::Aes256Wrap => session
                .generate_key(
                    &Mechanism::AesKeyGen,
                    &[
                        Attribute::Class(ObjectClass::SECRET_KEY),
                        Attribute::KeyType(KeyType::AES),
                        Attribute::ValueLen(32u64.into()),
                        Attribute::Token(true),
                        label_attr.clone(),
                        Attribute::Private(true),
                        Attribute::Sensitive(true),
                        Attribute::Extractable(false),
                        Attribute::Wrap(true),
                        Attribute::Unwrap(true),
                        Attribute::Encrypt(false),
                        Attribute::Decrypt(false),
                        Attribute::Sign(false),
                        Attribute::Verify(false),
                        Attribute::Derive(false),
                    ],
                )
                .map(drop),
        }
    }

    /// One signing attempt; `Ok(None)` when the device no longer knows the cached handle (the
    /// cache entry is dropped so that the next attempt looks the label up again).
    fn sign_once(
        &self,
        label: &str,
        message_or_digest: &[u8],
    ) -> Result<Option<Signature>, HsmError> {
        let key = self.lookup(label)?;
        check_sign_input(label, key.algorithm(), message_or_digest)?;
        let (mechanism, private) = match &key {
            CachedKey::Secp256k1 { private, .. } => (Mechanism::Ecdsa, *private),
            CachedKey::Ed25519 { private, .. } => (
                Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
                *private,
            ),
            CachedKey::Aes256 { .. } => {
                return Err(HsmError::WrongAlgorithm {
                    label: label.to_owned(),
                    algorithm: KeyAlgorithm::Aes256Wrap,
                    operation: "sign",
                });
            }
        };
        let session = self.session()?;
        let raw = match session.sign(&mechanism, private, message_or_digest) {
            Ok(raw) => raw,
            Err(e)
                if matches!(
                    rv(&e),
                    Some(RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid)
                ) =>
            {
                drop(session);
                self.evict(label);
                return Ok(None);
            }
            Err(e) => {
                if session_is_broken(&e) {
                    session.discard();
                }
                return Err(device("C_Sign", &e));
            }
        };
        drop(session);
        match &key {
            CachedKey::Secp256k1 { public, .. } => {
                finish_secp256k1(public, message_or_digest, &raw, None).map(Some)
            }
            CachedKey::Ed25519 { public, .. } => {
                finish_ed25519(public, message_or_digest, &raw).map(Some)
            }
            CachedKey::Aes256 { .. } => Err(HsmError::WrongAlgorithm {
                label: label.to_owned(),
                algorithm: KeyAlgorithm::Aes256Wrap,
                operation: "sign",
            }),
        }
    }

    fn wrap_key_handle(&self, wrap_label: &str) -> Result<ObjectHandle, HsmError> {
        match self.lookup(wrap_label)? {
            CachedKey::Aes256 { secret } => Ok(secret),
            other => Err(HsmError::WrongAlgorithm {
                label: wrap_label.to_owned(),
                algorithm: other.algorithm(),
                operation: "wrap or unwrap",
            }),
        }
    }
}

fn unsupported(label: &str) -> HsmError {
    HsmError::Device(format!(
        "key {label:?} on the token is of a type this store does not use"
    ))
}

/// `CKA_EC_POINT` is a DER OCTET STRING around the point per the standard (SoftHSM2), but some
/// modules return the bare point: strip the wrapper only when the lengths say it is one.
fn unwrap_octet_string<'a>(bytes: &'a [u8], bare_lens: &[usize]) -> &'a [u8] {
    if bytes.len() >= 2
        && bytes[0] == 0x04
        && usize::from(bytes[1]) == bytes.len() - 2
        && bare_lens.contains(&(bytes.len() - 2))
    {
        &bytes[2..]
    } else {
        bytes
    }
}

/// A session object holding a secret, destroyed when dropped (whatever happened in between).
struct TransientObject<'s> {
    session: &'s Session,
    handle: ObjectHandle,
}

impl Drop for TransientObject<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.session.destroy_object(self.handle) {
            // A session object dies with its session anyway; note it and go on.
            tracing::warn!(error = %e, "could not destroy a transient secret object");
        }
    }
}

/// Zeroizes the `CKA_VALUE` of a template once it has been handed to the device.
struct SecretTemplate(Vec<Attribute>);

impl Drop for SecretTemplate {
    fn drop(&mut self) {
        for attr in &mut self.0 {
            if let Attribute::Value(v) = attr {
                v.zeroize();
            }
        }
    }
}

fn is_bad_wrapped_input(e: &CkError) -> bool {
    matches!(
        rv(e),
        Some(
            RvError::WrappedKeyInvalid
                | RvError::WrappedKeyLenRange
                | RvError::EncryptedDataInvalid
                | RvError::EncryptedDataLenRange
        )
    )
}

impl KeyStore for Pkcs11KeyStore {
    fn generate_key(&self, label: &str, algorithm: KeyAlgorithm) -> Result<KeyInfo, HsmError> {
        validate_label(label)?;
        let _management = self
            .management
            .lock()
            .map_err(|_| HsmError::Device("management lock poisoned".into()))?;
        let taken = self.with_session("generating a key", |session| {
            if Self::label_taken(session, label)? {
                return Ok(true);
            }
            self.generate_on(session, label, algorithm)?;
            Ok(false)
        })?;
        if taken {
            return Err(HsmError::KeyExists(label.to_owned()));
        }
        Ok(KeyInfo {
            label: label.to_owned(),
            algorithm,
        })
    }

    fn public_key(&self, label: &str) -> Result<PublicKey, HsmError> {
        match self.lookup(label)? {
            CachedKey::Secp256k1 { public, .. } => Ok(secp256k1_public_key(&public)),
            CachedKey::Ed25519 { public, .. } => Ok(PublicKey {
                algorithm: KeyAlgorithm::Ed25519,
                bytes: public.to_bytes().to_vec(),
            }),
            CachedKey::Aes256 { .. } => Err(HsmError::WrongAlgorithm {
                label: label.to_owned(),
                algorithm: KeyAlgorithm::Aes256Wrap,
                operation: "have a public key",
            }),
        }
    }

    fn sign(&self, label: &str, message_or_digest: &[u8]) -> Result<Signature, HsmError> {
        match self.sign_once(label, message_or_digest)? {
            Some(signature) => Ok(signature),
            // The cached handle was stale (the key was destroyed, perhaps re-created, by another
            // process): look the label up afresh and try once more.
            None => self
                .sign_once(label, message_or_digest)?
                .ok_or_else(|| HsmError::KeyNotFound(label.to_owned())),
        }
    }

    fn wrap_secret(&self, wrap_label: &str, secret: &SecretBytes) -> Result<Vec<u8>, HsmError> {
        let framed = frame(secret)?;
        let kek = self.wrap_key_handle(wrap_label)?;
        self.with_session("wrapping a secret", |session| {
            let template = SecretTemplate(vec![
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::GENERIC_SECRET),
                Attribute::Token(false),
                Attribute::Private(true),
                // Wrappable, never readable in the clear.
                Attribute::Sensitive(true),
                Attribute::Extractable(true),
                Attribute::Value(framed.to_vec()),
            ]);
            let object = TransientObject {
                session,
                handle: session.create_object(&template.0)?,
            };
            session.wrap_key(&Mechanism::AesKeyWrapPad, kek, object.handle)
        })
    }

    fn unwrap_secret(&self, wrap_label: &str, wrapped: &[u8]) -> Result<SecretBytes, HsmError> {
        check_wrapped_len(wrapped)?;
        let kek = self.wrap_key_handle(wrap_label)?;
        let session = self.session()?;
        let result = (|| {
            let handle = session.unwrap_key(
                &Mechanism::AesKeyWrapPad,
                kek,
                wrapped,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::GENERIC_SECRET),
                    Attribute::Token(false),
                    Attribute::Private(true),
                    // The caller asked for the seed back: it must be readable, once.
                    Attribute::Sensitive(false),
                    Attribute::Extractable(true),
                ],
            )?;
            let object = TransientObject {
                session: &session,
                handle,
            };
            let attrs = session.get_attributes(object.handle, &[AttributeType::Value])?;
            Ok(attrs.into_iter().find_map(|a| match a {
                Attribute::Value(v) => Some(Zeroizing::new(v)),
                _ => None,
            }))
        })();
        match result {
            Ok(Some(value)) => unframe(&value),
            Ok(None) => Err(HsmError::Device(
                "the device did not return the unwrapped secret".into(),
            )),
            Err(e) if is_bad_wrapped_input(&e) => Err(HsmError::InvalidInput(
                "wrapped secret fails its integrity check (wrong key or corrupt)".into(),
            )),
            // SoftHSM2 answers a failed RFC 5649 integrity check with CKR_GENERAL_ERROR. If the
            // session still answers, the device is alive and it was the blob it refused.
            Err(e)
                if rv(&e) == Some(RvError::GeneralError) && session.get_session_info().is_ok() =>
            {
                Err(HsmError::InvalidInput(
                    "wrapped secret fails its integrity check (wrong key or corrupt)".into(),
                ))
            }
            Err(e) => {
                if session_is_broken(&e) {
                    session.discard();
                }
                Err(device("C_UnwrapKey", &e))
            }
        }
    }

    fn destroy_key(&self, label: &str) -> Result<(), HsmError> {
        let _management = self
            .management
            .lock()
            .map_err(|_| HsmError::Device("management lock poisoned".into()))?;
        self.evict(label);
        let destroyed = self.with_session("destroying a key", |session| {
            let objects = session.find_objects(&[
                Attribute::Token(true),
                Attribute::Label(label.as_bytes().to_vec()),
            ])?;
            for &object in &objects {
                session.destroy_object(object)?;
            }
            Ok(objects.len())
        })?;
        if destroyed == 0 {
            return Err(HsmError::KeyNotFound(label.to_owned()));
        }
        Ok(())
    }

    fn list_keys(&self) -> Result<Vec<KeyInfo>, HsmError> {
        let mut keys = self.with_session("listing keys", |session| {
            let mut keys = Vec::new();
            for class in [ObjectClass::PRIVATE_KEY, ObjectClass::SECRET_KEY] {
                let objects =
                    session.find_objects(&[Attribute::Token(true), Attribute::Class(class)])?;
                for object in objects {
                    let mut label = None;
                    let mut key_type = None;
                    let mut params = None;
                    for attr in session.get_attributes(
                        object,
                        &[
                            AttributeType::Label,
                            AttributeType::KeyType,
                            AttributeType::EcParams,
                        ],
                    )? {
                        match attr {
                            Attribute::Label(l) => label = String::from_utf8(l).ok(),
                            Attribute::KeyType(t) => key_type = Some(t),
                            Attribute::EcParams(p) => params = Some(p),
                            _ => {}
                        }
                    }
                    let algorithm = match (key_type, params.as_deref()) {
                        (Some(t), Some(p)) if t == KeyType::EC && p == SECP256K1_EC_PARAMS => {
                            Some(KeyAlgorithm::Secp256k1)
                        }
                        (Some(t), _) if t == KeyType::EC_EDWARDS => Some(KeyAlgorithm::Ed25519),
                        (Some(t), _) if t == KeyType::AES => Some(KeyAlgorithm::Aes256Wrap),
                        _ => None,
                    };
                    // Objects this store did not make (other key types, no label) are not
                    // its keys.
                    if let (Some(label), Some(algorithm)) = (label, algorithm) {
                        keys.push(KeyInfo { label, algorithm });
                    }
                    if keys.len() > KEYS_MAX {
                        return Ok(keys);
                    }
                }
            }
            Ok(keys)
        })?;
        if keys.len() > KEYS_MAX {
            return Err(HsmError::Device(format!(
                "the token holds more than {KEYS_MAX} keys"
            )));
        }
        keys.sort_by(|a, b| a.label.cmp(&b.label));
        Ok(keys)
    }

    fn is_production_grade(&self) -> bool {
        self.production_grade
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn pool_is_bounded_and_reports_exhaustion_as_a_device_error() {
        let opened = AtomicUsize::new(0);
        let open = || Ok::<usize, HsmError>(opened.fetch_add(1, Ordering::SeqCst));
        let pool = Pool::new(2, Duration::ZERO);
        let a = pool.acquire(open).expect("first");
        let b = pool.acquire(open).expect("second");
        assert_ne!(*a, *b);
        assert!(matches!(pool.acquire(open), Err(HsmError::Device(_))));
        drop(a);
        let c = pool.acquire(open).expect("a returned item is reused");
        assert_eq!(opened.load(Ordering::SeqCst), 2, "no third item opened");
        c.discard();
        assert_eq!(pool.open_count(), 1);
        let d = pool.acquire(open).expect("a discarded item frees a place");
        assert_eq!(*d, 2);
        drop((b, d));
    }

    #[test]
    fn a_failed_open_gives_its_place_back() {
        let pool: Pool<u8> = Pool::new(1, Duration::ZERO);
        assert!(matches!(
            pool.acquire(|| Err(HsmError::Device("no device".into()))),
            Err(HsmError::Device(_))
        ));
        assert_eq!(pool.open_count(), 0);
        assert_eq!(*pool.acquire(|| Ok(7)).expect("opens"), 7);
    }

    #[test]
    fn a_waiting_caller_gets_the_returned_item() {
        let pool: Pool<u8> = Pool::new(1, Duration::from_secs(60));
        let held = pool.acquire(|| Ok(1)).expect("first");
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| *pool.acquire(|| Ok(2)).expect("waits, then gets it"));
            // The waiter blocks until this drop; no timing is asserted.
            drop(held);
            assert_eq!(waiter.join().expect("thread"), 1);
        });
    }

    #[test]
    fn ec_point_wrapper_is_stripped_only_when_it_is_one() {
        let mut wrapped = vec![0x04, 0x20];
        wrapped.extend_from_slice(&[7u8; 32]);
        assert_eq!(unwrap_octet_string(&wrapped, &[32]), &[7u8; 32]);
        assert_eq!(unwrap_octet_string(&[7u8; 32], &[32]), &[7u8; 32]);
        let mut uncompressed = vec![0x04];
        uncompressed.extend_from_slice(&[1u8; 64]);
        assert_eq!(
            unwrap_octet_string(&uncompressed, &[33, 65]),
            &uncompressed[..]
        );
    }

    #[test]
    fn config_debug_redacts_the_pin() {
        let config = Pkcs11Config::new(
            "/usr/lib/softhsm/libsofthsm2.so",
            "rempart",
            SecretBytes::new(b"987654".to_vec()),
        );
        let printed = format!("{config:?}");
        assert!(!printed.contains("987654"), "{printed}");
        assert!(printed.contains("REDACTED"));
    }

    #[test]
    fn an_absent_module_is_a_device_error() {
        let config = Pkcs11Config::new(
            "/nonexistent/libpkcs11.so",
            "rempart",
            SecretBytes::new(b"1234".to_vec()),
        );
        assert!(matches!(
            Pkcs11KeyStore::open(config),
            Err(HsmError::Device(_))
        ));
    }

    #[test]
    fn a_file_that_is_not_a_module_is_a_device_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("libfake.so");
        std::fs::write(&path, b"not an ELF file").expect("write");
        let config = Pkcs11Config::new(path, "rempart", SecretBytes::new(b"1234".to_vec()));
        assert!(matches!(
            Pkcs11KeyStore::open(config),
            Err(HsmError::Device(_))
        ));
    }

    #[test]
    fn sessions_max_is_bounded() {
        for sessions_max in [0, SESSIONS_MAX + 1] {
            let mut config = Pkcs11Config::new(
                "/nonexistent/libpkcs11.so",
                "rempart",
                SecretBytes::new(b"1234".to_vec()),
            );
            config.sessions_max = sessions_max;
            assert!(matches!(
                Pkcs11KeyStore::open(config),
                Err(HsmError::InvalidInput(_))
            ));
        }
    }
}
