//! The append-only, hash-chained audit log of every request, decision, approval and signature,
//! with checkpoints signed by an HSM key (Ed25519, through `hsm::KeyStore`).
//!
//! Entry `i` has chain hash `h_i = SHA-256(h_{i-1} || canonical_i)`, with `h_{-1}` = 32 zero
//! bytes, where `canonical_i = index (u64 BE) || time_us (u64 BE) || payload length (u32 BE)
//! || payload`, the payload being the event's JSON, externally tagged (the event types hold no maps
//! and no floats, so serde_json writes them one way only). A checkpoint signs
//! `"rempart/audit-checkpoint/v1" || entry count (u64 BE) || time_us (u64 BE) || h_{count-1}`.
//! The format is described in `docs/custody-audit.md`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::CustodyError;
use crate::limits::{AUDIT_ENTRIES_MAX, AUDIT_PAYLOAD_BYTES_MAX};

const CHECKPOINT_DOMAIN: &[u8] = b"rempart/audit-checkpoint/v1";

/// What happened. Amounts are minor units; ids as the caller gave them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditEvent {
    /// A withdrawal was requested.
    WithdrawalRequested {
        /// Withdrawal id.
        id: u128,
        /// Customer account.
        account: u64,
        /// Who asked.
        initiator: String,
        /// Their role.
        role: String,
        /// Source wallet.
        from_wallet: u32,
        /// Destination, as text ("wallet:3", "address:17").
        to: String,
        /// Asset code.
        asset: String,
        /// Amount in minor units.
        amount_minor: u128,
    },
    /// The request was refused before or by the policy.
    WithdrawalRejected {
        /// Withdrawal id.
        id: u128,
        /// Stable reject code.
        code: u16,
        /// The rule that denied, if the policy did.
        rule: Option<String>,
    },
    /// The policy decided.
    PolicyDecision {
        /// Withdrawal id.
        id: u128,
        /// Version of the policy that decided.
        policy_version: u64,
        /// Matching rule.
        rule: String,
        /// Outcome, as text.
        outcome: String,
    },
    /// An approval was recorded.
    Approved {
        /// Withdrawal id.
        id: u128,
        /// Approver.
        approver: String,
        /// Live approvals after this one.
        live: u32,
        /// Approvals required.
        required: u32,
    },
    /// A command on a withdrawal was refused.
    CommandRejected {
        /// Withdrawal or policy change id.
        id: u128,
        /// Who sent it.
        by: String,
        /// Stable reject code.
        code: u16,
    },
    /// The withdrawal was cancelled.
    Cancelled {
        /// Withdrawal id.
        id: u128,
        /// Who cancelled.
        by: String,
    },
    /// The key store signed the transfer.
    Signed {
        /// Withdrawal id.
        id: u128,
        /// Key label used.
        key_label: String,
        /// SHA-256 of the signed transfer bytes, hex.
        transfer_sha256: String,
        /// The signature, hex.
        signature: String,
    },
    /// The key store failed; the withdrawal stays where it was.
    SigningFailed {
        /// Withdrawal id.
        id: u128,
        /// The error, as text (never secret material).
        error: String,
    },
    /// Handed to settlement.
    Submitted {
        /// Withdrawal id.
        id: u128,
    },
    /// An address was added to the address book.
    AddressAdded {
        /// Entry id.
        id: u64,
        /// Address.
        address: String,
        /// Asset.
        asset: String,
        /// Tag.
        tag: String,
        /// Who added it.
        by: String,
        /// When it becomes usable.
        active_from_us: u64,
    },
    /// A policy change was proposed.
    PolicyChangeProposed {
        /// Change id.
        change_id: u64,
        /// Proposer.
        by: String,
        /// SHA-256 of the proposed policy JSON, hex.
        policy_sha256: String,
    },
    /// An administrator approved a policy change.
    PolicyChangeApproved {
        /// Change id.
        change_id: u64,
        /// Administrator.
        by: String,
    },
    /// A new policy took effect.
    PolicyActivated {
        /// Change id.
        change_id: u64,
        /// New version.
        version: u64,
    },
    /// A wallet balance was observed from the ledger.
    BalanceObserved {
        /// Wallet.
        wallet: u32,
        /// Balance in minor units.
        balance_minor: u128,
    },
}

/// One entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log, from 0.
    pub index: u64,
    /// When, UTC microseconds.
    pub time_us: u64,
    /// What.
    pub event: AuditEvent,
    /// Chain hash after this entry.
    #[serde(with = "hex_32")]
    pub hash: [u8; 32],
}

/// A signed statement of the log's head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Number of entries covered (entries `0..entries`).
    pub entries: u64,
    /// When, UTC microseconds.
    pub time_us: u64,
    /// Chain hash of entry `entries - 1`.
    #[serde(with = "hex_32")]
    pub head_hash: [u8; 32],
    /// Ed25519 signature over [`Checkpoint::message`].
    #[serde(with = "hex_64")]
    pub signature: [u8; 64],
}

impl Checkpoint {
    /// The bytes the signature covers.
    pub fn message(entries: u64, time_us: u64, head_hash: &[u8; 32]) -> Vec<u8> {
        let mut m = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + 48);
        m.extend_from_slice(CHECKPOINT_DOMAIN);
        m.extend_from_slice(&entries.to_be_bytes());
        m.extend_from_slice(&time_us.to_be_bytes());
        m.extend_from_slice(head_hash);
        m
    }
}

/// The canonical bytes of an entry (what the chain hashes).
pub fn canonical_bytes(
    index: u64,
    time_us: u64,
    event: &AuditEvent,
) -> Result<Vec<u8>, CustodyError> {
    let payload =
        serde_json::to_vec(event).map_err(|e| CustodyError::Config(format!("audit event: {e}")))?;
    if payload.len() > AUDIT_PAYLOAD_BYTES_MAX {
        return Err(CustodyError::Capacity("audit payload bytes"));
    }
    let mut out = Vec::with_capacity(20 + payload.len());
    out.extend_from_slice(&index.to_be_bytes());
    out.extend_from_slice(&time_us.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

fn chain_hash(prev: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(canonical);
    h.finalize().into()
}

/// The log: entries in memory, plus its checkpoints.
#[derive(Debug, Clone, Default)]
pub struct AuditLog {
    entries: Vec<AuditEntry>,
    checkpoints: Vec<Checkpoint>,
}

impl AuditLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Entries so far.
    pub fn entries(&self) -> &[AuditEntry] {
        &self.entries
    }

    /// Checkpoints so far.
    pub fn checkpoints(&self) -> &[Checkpoint] {
        &self.checkpoints
    }

    /// Chain hash of the last entry (zeros when empty).
    pub fn head(&self) -> [u8; 32] {
        self.entries.last().map_or([0; 32], |e| e.hash)
    }

    /// Appends an event; returns its index.
    pub fn append(&mut self, time_us: u64, event: AuditEvent) -> Result<u64, CustodyError> {
        if self.entries.len() >= AUDIT_ENTRIES_MAX {
            return Err(CustodyError::Capacity("audit entries"));
        }
        let index = self.entries.len() as u64;
        let canonical = canonical_bytes(index, time_us, &event)?;
        let hash = chain_hash(&self.head(), &canonical);
        self.entries.push(AuditEntry {
            index,
            time_us,
            event,
            hash,
        });
        Ok(index)
    }

    /// Signs the current head with the Ed25519 key `label` in `store`. On a key-store error
    /// nothing is recorded.
    pub fn checkpoint(
        &mut self,
        store: &dyn hsm::KeyStore,
        label: &str,
        time_us: u64,
    ) -> Result<Checkpoint, CustodyError> {
        let entries = self.entries.len() as u64;
        let head_hash = self.head();
        let message = Checkpoint::message(entries, time_us, &head_hash);
        let signature = match store.sign(label, &message)? {
            hsm::Signature::Ed25519(bytes) => bytes,
            other => {
                return Err(CustodyError::KeyMaterial(format!(
                    "checkpoint key must be Ed25519, got {other:?}"
                )));
            }
        };
        let checkpoint = Checkpoint {
            entries,
            time_us,
            head_hash,
            signature,
        };
        self.checkpoints.push(checkpoint.clone());
        Ok(checkpoint)
    }
}

/// What a clean verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries checked.
    pub entries: u64,
    /// Entries covered by the last valid checkpoint.
    pub anchored: u64,
    /// Entries after it: chained but not yet signed.
    pub unanchored: u64,
}

/// The first thing found wrong with a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditViolation {
    /// The entry at this position carries another index: entries were removed or reordered.
    #[error("entry at position {position} has index {found}: entries removed or reordered")]
    IndexGap {
        /// First bad position (= the index that should be there).
        position: u64,
        /// Index found there.
        found: u64,
    },
    /// The entry's stored chain hash does not match its content: it was edited.
    #[error("entry {index} does not match its chain hash: edited")]
    HashMismatch {
        /// First bad index.
        index: u64,
    },
    /// A checkpoint's signature does not verify.
    #[error("checkpoint {checkpoint} has a bad signature")]
    BadSignature {
        /// Position of the checkpoint.
        checkpoint: usize,
    },
    /// Checkpoints are not in increasing order of entries.
    #[error("checkpoint {checkpoint} is out of order")]
    CheckpointOrder {
        /// Position of the checkpoint.
        checkpoint: usize,
    },
    /// The entries a checkpoint covers hash to something else: rewritten consistently, so the
    /// first entry not covered by an earlier good checkpoint is the first that may be bad.
    #[error(
        "checkpoint {checkpoint} does not match the log: entries from {first_bad_index} were rewritten"
    )]
    CheckpointMismatch {
        /// Position of the checkpoint.
        checkpoint: usize,
        /// First index not proven by an earlier checkpoint.
        first_bad_index: u64,
    },
    /// The log ends before a checkpoint's count: its tail was cut off.
    #[error(
        "log truncated: a checkpoint covers {expected} entries, only {found} present; first missing index {found}"
    )]
    Truncated {
        /// Entries the checkpoint covers.
        expected: u64,
        /// Entries present.
        found: u64,
    },
    /// The public key is not a valid Ed25519 key.
    #[error("invalid checkpoint public key")]
    BadPublicKey,
}

/// Verifies entries and checkpoints against the checkpoint key's 32-byte Ed25519 public key.
pub fn verify(
    entries: &[AuditEntry],
    checkpoints: &[Checkpoint],
    public_key: &[u8; 32],
) -> Result<VerifyReport, AuditViolation> {
    let key = ed25519_dalek::VerifyingKey::from_bytes(public_key)
        .map_err(|_| AuditViolation::BadPublicKey)?;
    // Signatures and order first: a checkpoint proves nothing unless it is genuine.
    let mut previous = 0u64;
    for (i, cp) in checkpoints.iter().enumerate() {
        let message = Checkpoint::message(cp.entries, cp.time_us, &cp.head_hash);
        let signature = ed25519_dalek::Signature::from_bytes(&cp.signature);
        if key.verify_strict(&message, &signature).is_err() {
            return Err(AuditViolation::BadSignature { checkpoint: i });
        }
        if i > 0 && cp.entries < previous {
            return Err(AuditViolation::CheckpointOrder { checkpoint: i });
        }
        previous = cp.entries;
    }
    let mut hashes = Vec::with_capacity(entries.len());
    let mut prev = [0u8; 32];
    let mut first_mismatch = None;
    for (position, entry) in entries.iter().enumerate() {
        let position = position as u64;
        if entry.index != position {
            return Err(AuditViolation::IndexGap {
                position,
                found: entry.index,
            });
        }
        let canonical = canonical_bytes(entry.index, entry.time_us, &entry.event)
            .map_err(|_| AuditViolation::HashMismatch { index: position })?;
        let hash = chain_hash(&prev, &canonical);
        if hash != entry.hash && first_mismatch.is_none() {
            first_mismatch = Some(position);
        }
        hashes.push(hash);
        prev = hash;
    }
    if let Some(index) = first_mismatch {
        return Err(AuditViolation::HashMismatch { index });
    }
    let found = entries.len() as u64;
    let mut anchored = 0u64;
    for (i, cp) in checkpoints.iter().enumerate() {
        if cp.entries > found {
            return Err(AuditViolation::Truncated {
                expected: cp.entries,
                found,
            });
        }
        let at = if cp.entries == 0 {
            [0; 32]
        } else {
            hashes[(cp.entries - 1) as usize]
        };
        if at != cp.head_hash {
            return Err(AuditViolation::CheckpointMismatch {
                checkpoint: i,
                first_bad_index: anchored,
            });
        }
        anchored = cp.entries;
    }
    Ok(VerifyReport {
        entries: found,
        anchored,
        unanchored: found - anchored,
    })
}

macro_rules! hex_array {
    ($name:ident, $n:expr) => {
        mod $name {
            use serde::{Deserialize, Deserializer, Serializer, de::Error};
            pub fn serialize<S: Serializer>(bytes: &[u8; $n], s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&hex::encode(bytes))
            }
            pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; $n], D::Error> {
                let text = String::deserialize(d)?;
                let mut out = [0u8; $n];
                hex::decode_to_slice(&text, &mut out).map_err(D::Error::custom)?;
                Ok(out)
            }
        }
    };
}
hex_array!(hex_32, 32);
hex_array!(hex_64, 64);

#[cfg(test)]
mod tests;
