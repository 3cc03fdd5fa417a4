//! API keys: creation, storage, verification and roles.
//!
//! A key is a public id plus a secret; the client sends `authorization: Bearer <id>.<secret>`.
//! Only an Argon2id hash of the secret (with a per-key salt) is stored, in `api_keys.json` in the
//! data directory (written atomically: temporary file, fsync, rename). The secret is shown once,
//! at creation. Verification runs Argon2id once per key and process; afterwards a keyed BLAKE3
//! hash of the secret (key random per process, so the cache is useless to anyone who reads
//! memory dumps from another run) is compared in constant time, so Argon2id never runs per
//! request.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use argon2::{Algorithm, Argon2, Params, Version};
use rempart_proto::v1::Role;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tonic::Status;
use zeroize::Zeroizing;

use super::errors::ApiReject;
use super::limits::{API_KEYS_MAX, ARGON2_CONCURRENT_MAX, TOKEN_BYTES_MAX};

/// Argon2id cost: 19 MiB, 2 passes, 1 lane (the OWASP minimum for Argon2id).
const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
const ARGON2_PASSES: u32 = 2;
/// Bytes of a secret (256 bits) and of a salt.
const SECRET_BYTES: usize = 32;
const SALT_BYTES: usize = 16;
/// Name of the key file in the data directory.
pub const KEY_FILE: &str = "api_keys.json";

/// Who is calling: what the gateway knows after verifying the bearer token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The key's public id.
    pub key_id: String,
    /// The account the key acts for.
    pub account: u64,
    /// The key's roles.
    pub roles: Vec<Role>,
}

impl Caller {
    /// Whether the caller holds any of `roles`.
    pub fn has_any(&self, roles: &[Role]) -> bool {
        self.roles.iter().any(|r| roles.contains(r))
    }

    /// Refuses unless the caller holds one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), Status> {
        if self.has_any(roles) {
            Ok(())
        } else {
            Err(ApiReject::RoleNotAllowed.status("", &format!("needs one of {roles:?}")))
        }
    }

    /// The account a call acts on: the key's own when `requested` is empty or equal to it;
    /// another account only for a caller holding one of `privileged`.
    pub fn account_for(&self, requested: &str, privileged: &[Role]) -> Result<u64, Status> {
        if requested.is_empty() {
            return Ok(self.account);
        }
        let account: u64 = requested.parse().map_err(|_| {
            ApiReject::InvalidField.status("account_id", "not a decimal account id")
        })?;
        if account == self.account || self.has_any(privileged) {
            Ok(account)
        } else {
            Err(ApiReject::NotAccountOwner.status("account_id", ""))
        }
    }
}

/// One stored key. Never holds the secret.
#[derive(Clone, Serialize, Deserialize)]
pub struct KeyRecord {
    pub key_id: String,
    pub account: u64,
    /// Role numbers as in `rempart.v1.Role`.
    pub roles: Vec<i32>,
    pub label: String,
    /// Hex of the Argon2id salt and hash.
    pub salt: String,
    pub hash: String,
    pub created_us: u64,
    /// Expiry in microseconds since the epoch; 0 = never.
    pub expires_us: u64,
    pub revoked: bool,
}

impl std::fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRecord")
            .field("key_id", &self.key_id)
            .field("account", &self.account)
            .field("roles", &self.roles)
            .field("hash", &"<redacted>")
            .finish()
    }
}

/// A freshly created key: the token is shown once and then forgotten.
pub struct NewKey {
    pub key_id: String,
    /// `<key_id>.<secret>`.
    pub token: Zeroizing<String>,
    pub created_us: u64,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("key_id", &self.key_id)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// The key store: records, the verification cache, persistence.
pub struct KeyStore {
    path: PathBuf,
    records: RwLock<HashMap<String, KeyRecord>>,
    /// key id → keyed BLAKE3 of the secret that passed Argon2id.
    verified: Mutex<HashMap<String, [u8; 32]>>,
    cache_key: [u8; 32],
    argon2_permits: Semaphore,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("path", &self.path)
            .finish()
    }
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(ARGON2_MEMORY_KIB, ARGON2_PASSES, 1, Some(32))
        .unwrap_or_else(|_| Params::default());
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("random source: {e}"))?;
    Ok(b)
}

fn role_from_i32(r: i32) -> Option<Role> {
    Role::try_from(r).ok().filter(|r| *r != Role::Unspecified)
}

impl KeyStore {
    /// Opens (or creates empty) the key store of a data directory.
    pub fn open(data_dir: &Path) -> anyhow::Result<Arc<KeyStore>> {
        let path = data_dir.join(KEY_FILE);
        let records: HashMap<String, KeyRecord> = match std::fs::read(&path) {
            Ok(bytes) => {
                let list: Vec<KeyRecord> = serde_json::from_slice(&bytes)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                list.into_iter().map(|r| (r.key_id.clone(), r)).collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => return Err(anyhow::anyhow!("{}: {e}", path.display())),
        };
        Ok(Arc::new(KeyStore {
            path,
            records: RwLock::new(records),
            verified: Mutex::new(HashMap::new()),
            cache_key: random_bytes()?,
            argon2_permits: Semaphore::new(ARGON2_CONCURRENT_MAX),
        }))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.records.read().map(|r| r.len()).unwrap_or(0)
    }

    /// Whether the store has no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Creates a key; runs Argon2id (call from a blocking context).
    pub fn create(
        &self,
        account: u64,
        roles: &[Role],
        label: &str,
        now_us: u64,
        expires_us: u64,
    ) -> anyhow::Result<NewKey> {
        if roles.is_empty() || roles.contains(&Role::Unspecified) {
            anyhow::bail!("a key needs at least one role");
        }
        let id_bytes: [u8; 8] = random_bytes()?;
        let key_id = format!("rk_{}", hex::encode(id_bytes));
        let secret = Zeroizing::new(hex::encode(random_bytes::<SECRET_BYTES>()?));
        let salt: [u8; SALT_BYTES] = random_bytes()?;
        let mut hash = Zeroizing::new([0u8; 32]);
        argon2()
            .hash_password_into(secret.as_bytes(), &salt, hash.as_mut())
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
        let record = KeyRecord {
            key_id: key_id.clone(),
            account,
            roles: roles.iter().map(|r| *r as i32).collect(),
            label: label.into(),
            salt: hex::encode(salt),
            hash: hex::encode(hash.as_ref()),
            created_us: now_us,
            expires_us,
            revoked: false,
        };
        {
            let mut records = self
                .records
                .write()
                .map_err(|_| anyhow::anyhow!("poisoned"))?;
            if records.len() >= API_KEYS_MAX {
                anyhow::bail!("key store full ({API_KEYS_MAX} keys)");
            }
            records.insert(key_id.clone(), record);
            self.persist(&records)?;
        }
        let token = Zeroizing::new(format!("{key_id}.{}", secret.as_str()));
        Ok(NewKey {
            key_id,
            token,
            created_us: now_us,
        })
    }

    /// Revokes a key; false when unknown.
    pub fn revoke(&self, key_id: &str) -> anyhow::Result<bool> {
        let mut records = self
            .records
            .write()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        let Some(r) = records.get_mut(key_id) else {
            return Ok(false);
        };
        r.revoked = true;
        self.persist(&records)?;
        drop(records);
        if let Ok(mut v) = self.verified.lock() {
            v.remove(key_id);
        }
        Ok(true)
    }

    /// Replaces a key's roles; false when unknown.
    pub fn set_roles(&self, key_id: &str, roles: &[Role]) -> anyhow::Result<bool> {
        if roles.is_empty() || roles.contains(&Role::Unspecified) {
            anyhow::bail!("a key needs at least one role");
        }
        let mut records = self
            .records
            .write()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        let Some(r) = records.get_mut(key_id) else {
            return Ok(false);
        };
        r.roles = roles.iter().map(|r| *r as i32).collect();
        self.persist(&records)?;
        Ok(true)
    }

    fn persist(&self, records: &HashMap<String, KeyRecord>) -> anyhow::Result<()> {
        use std::io::Write;
        let mut list: Vec<&KeyRecord> = records.values().collect();
        list.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        let bytes = serde_json::to_vec_pretty(&list)?;
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Verifies a bearer token (the `authorization` metadata value) at `now_us`.
    pub async fn verify(&self, header: Option<&str>, now_us: u64) -> Result<Caller, Status> {
        let header = header.ok_or_else(|| ApiReject::MissingCredentials.status("", ""))?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| ApiReject::MissingCredentials.status("", "expected `Bearer <key>`"))?;
        if token.len() > TOKEN_BYTES_MAX {
            return Err(ApiReject::InvalidCredentials.status("", "token too long"));
        }
        let (key_id, secret) = token
            .split_once('.')
            .ok_or_else(|| ApiReject::InvalidCredentials.status("", ""))?;
        let record = self
            .records
            .read()
            .ok()
            .and_then(|r| r.get(key_id).cloned())
            .ok_or_else(|| ApiReject::InvalidCredentials.status("", ""))?;
        let keyed = blake3::keyed_hash(&self.cache_key, secret.as_bytes());
        let cached = self
            .verified
            .lock()
            .ok()
            .and_then(|v| v.get(key_id).copied())
            .is_some_and(|h| blake3::Hash::from(h) == keyed);
        if !cached {
            let _permit = self
                .argon2_permits
                .acquire()
                .await
                .map_err(|_| ApiReject::ShuttingDown.status("", ""))?;
            let secret = Zeroizing::new(secret.to_string());
            let salt = hex::decode(&record.salt).unwrap_or_default();
            let stored = hex::decode(&record.hash).unwrap_or_default();
            let ok = tokio::task::spawn_blocking(move || {
                let mut hash = Zeroizing::new([0u8; 32]);
                argon2()
                    .hash_password_into(secret.as_bytes(), &salt, hash.as_mut())
                    .is_ok()
                    && constant_time_eq(hash.as_ref(), &stored)
            })
            .await
            .unwrap_or(false);
            if !ok {
                return Err(ApiReject::InvalidCredentials.status("", ""));
            }
            if let Ok(mut v) = self.verified.lock() {
                if v.len() >= API_KEYS_MAX {
                    v.clear();
                }
                v.insert(key_id.to_string(), *keyed.as_bytes());
            }
        }
        if record.revoked {
            return Err(ApiReject::KeyRevoked.status("", ""));
        }
        if record.expires_us != 0 && now_us >= record.expires_us {
            return Err(ApiReject::KeyExpired.status("", ""));
        }
        Ok(Caller {
            key_id: record.key_id,
            account: record.account,
            roles: record
                .roles
                .iter()
                .filter_map(|r| role_from_i32(*r))
                .collect(),
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_verify_expire_revoke_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path()).unwrap();
        let key = store.create(7, &[Role::Trader], "t", 1_000, 0).unwrap();
        let header = format!("Bearer {}", key.token.as_str());
        let caller = store.verify(Some(&header), 2_000).await.unwrap();
        assert_eq!(caller.account, 7);
        assert_eq!(caller.roles, vec![Role::Trader]);
        // Second time from the cache, same answer.
        assert_eq!(store.verify(Some(&header), 2_000).await.unwrap(), caller);
        // A forged secret is refused even though the id is cached.
        let forged = format!("Bearer {}.{}", key.key_id, "00".repeat(32));
        let err = store.verify(Some(&forged), 2_000).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert!(store.verify(None, 0).await.is_err());

        let expiring = store.create(8, &[Role::Admin], "e", 1_000, 5_000).unwrap();
        let h2 = format!("Bearer {}", expiring.token.as_str());
        assert!(store.verify(Some(&h2), 4_999).await.is_ok());
        let err = store.verify(Some(&h2), 5_000).await.unwrap_err();
        assert_eq!(
            super::super::errors::detail_of(&err).map(|d| d.code),
            Some(ApiReject::KeyExpired.code())
        );

        let reopened = KeyStore::open(dir.path()).unwrap();
        assert_eq!(reopened.len(), 2);
        assert!(reopened.verify(Some(&header), 2_000).await.is_ok());
        assert!(reopened.revoke(&key.key_id).unwrap());
        let err = reopened.verify(Some(&header), 2_000).await.unwrap_err();
        assert_eq!(
            super::super::errors::detail_of(&err).map(|d| d.code),
            Some(ApiReject::KeyRevoked.code())
        );
        let file = std::fs::read_to_string(dir.path().join(KEY_FILE)).unwrap();
        assert!(!file.contains(key.token.split_once('.').unwrap().1));
    }
}
