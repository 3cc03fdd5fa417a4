//! Signatures a validator has already verified, so that executing a block does not verify
//! them again on the block's critical path.
//!
//! A validator receives every batch in its mempool before any proposal carries it. A
//! [`Preverifier`] (on its own thread) checks the batch's gate approvals and its custodian
//! signature as it arrives and records those that hold in a [`SignatureCache`]; the ledger
//! ([`super::Ledger::use_signature_cache`]) then counts a recorded signature as valid instead of
//! verifying it again, and verifies anything not recorded itself (recording what held, so that
//! neither it nor the pre-verifier checks it twice). A verdict depends only on the
//! signed bytes, the key and the signature (Ed25519 `verify_strict`, secp256k1 ECDSA), and only
//! successes are recorded, so the ledger's results and state hash are exactly those of a ledger
//! without a cache: the cache changes when the work is done, not what is accepted. Every
//! validator still verifies every signature itself.
//!
//! The cache is bounded ([`SIGNATURE_CACHE_ENTRIES_MAX`]); the oldest entries go first, and a
//! signature evicted before its block is executed is simply verified then.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::crypto::{
    ControllerKey, Ed25519Key, Hash32, ParsedEd25519Key, Signature64, gate_approval_message,
    parse_ed25519, verify_controller, verify_ed25519_parsed,
};
use crate::limits::SIGNATURE_CACHE_ENTRIES_MAX;

use super::results::CreateTransferResult;
use super::types::{Batch, Transfer, batch_signing_digest};

/// One signature that verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Verified {
    /// A gate approval: gate key, transfer id, decision hash, signature.
    Gate(Ed25519Key, u128, Hash32, Signature64),
    /// A custodian's batch signature: signer, batch digest, signature.
    Batch(ControllerKey, Hash32, Signature64),
}

#[derive(Debug, Default)]
struct Inner {
    set: HashSet<Verified>,
    order: VecDeque<Verified>,
}

/// Verified signatures, shared between a [`Preverifier`] and the ledger. Bounded.
pub struct SignatureCache {
    inner: Mutex<Inner>,
    entries_max: usize,
}

impl std::fmt::Debug for SignatureCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignatureCache")
            .field("entries", &self.len())
            .field("entries_max", &self.entries_max)
            .finish()
    }
}

impl Default for SignatureCache {
    fn default() -> Self {
        Self::new()
    }
}

impl SignatureCache {
    /// An empty cache of up to [`SIGNATURE_CACHE_ENTRIES_MAX`] signatures.
    pub fn new() -> Self {
        Self::with_capacity(SIGNATURE_CACHE_ENTRIES_MAX)
    }

    /// An empty cache of up to `entries_max` signatures (at most
    /// [`SIGNATURE_CACHE_ENTRIES_MAX`]).
    pub fn with_capacity(entries_max: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            entries_max: entries_max.clamp(1, SIGNATURE_CACHE_ENTRIES_MAX),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Plain data: a panic elsewhere leaves it consistent enough to keep serving.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Signatures recorded.
    pub fn len(&self) -> usize {
        self.lock().set.len()
    }

    /// True if none is recorded.
    pub fn is_empty(&self) -> bool {
        self.lock().set.is_empty()
    }

    pub(crate) fn insert_all(&self, verified: impl IntoIterator<Item = Verified>) {
        let mut inner = self.lock();
        for entry in verified {
            if inner.set.insert(entry) {
                inner.order.push_back(entry);
            }
            while inner.set.len() > self.entries_max {
                match inner.order.pop_front() {
                    Some(oldest) => {
                        inner.set.remove(&oldest);
                    }
                    None => break,
                }
            }
        }
    }

    /// For each entry, whether it is recorded (one lock for the lot).
    pub(crate) fn contains_all<'a>(
        &self,
        entries: impl IntoIterator<Item = &'a Verified>,
    ) -> Vec<bool> {
        let inner = self.lock();
        entries
            .into_iter()
            .map(|entry| inner.set.contains(entry))
            .collect()
    }

    pub(crate) fn contains(&self, entry: &Verified) -> bool {
        self.lock().set.contains(entry)
    }
}

/// Verifies the signatures of incoming batches ahead of execution and records those that hold.
#[derive(Debug)]
pub struct Preverifier {
    gate_keys: HashMap<Ed25519Key, ParsedEd25519Key>,
    cache: std::sync::Arc<SignatureCache>,
}

impl Preverifier {
    /// A verifier for the configured gate keys (a key that does not parse approves nothing),
    /// recording into `cache`.
    pub fn new(gate_keys: &[Ed25519Key], cache: std::sync::Arc<SignatureCache>) -> Self {
        Self {
            gate_keys: gate_keys
                .iter()
                .filter_map(|key| parse_ed25519(key).map(|parsed| (*key, parsed)))
                .collect(),
            cache,
        }
    }

    /// Verifies every signature `batch` carries and records those that hold; returns how many
    /// held. Accounts carry no signature.
    pub fn verify(&self, batch: &Batch) -> usize {
        let Batch::CreateTransfers {
            entries,
            batch_signature,
        } = batch
        else {
            return 0;
        };
        let mut verified = Vec::with_capacity(entries.len() + 1);
        if let Some(signed) = batch_signature {
            let transfers: Vec<Transfer> = entries.iter().map(|entry| entry.transfer).collect();
            let digest = batch_signing_digest(&signed.signer, &transfers);
            let entry = Verified::Batch(signed.signer, digest, signed.signature);
            if self.cache.contains(&entry)
                || verify_controller(&signed.signer, &digest, &signed.signature)
            {
                verified.push(entry);
            }
        }
        let gates: Vec<Verified> = entries
            .iter()
            .filter_map(|entry| {
                let gate = entry.gate?;
                self.gate_keys
                    .contains_key(&gate.gate_key)
                    .then_some(Verified::Gate(
                        gate.gate_key,
                        entry.transfer.id,
                        entry.transfer.decision_hash,
                        gate.signature,
                    ))
            })
            .collect();
        // From the end: a ledger executing this batch meanwhile walks it from the start, and
        // each skips what the other recorded, so the two share the work instead of doing it
        // twice. Each signature that holds is recorded at once.
        let mut count = 0;
        for entry in gates.into_iter().rev() {
            let Verified::Gate(key, id, hash, signature) = entry else {
                continue;
            };
            let holds = self.cache.contains(&entry)
                || self.gate_keys.get(&key).is_some_and(|parsed| {
                    verify_ed25519_parsed(parsed, &gate_approval_message(id, &hash), &signature)
                });
            if holds {
                self.cache.insert_all([entry]);
                count += 1;
            }
        }
        let count = count + verified.len();
        self.cache.insert_all(verified);
        count
    }

    /// The first entry of `batch` every validator would refuse whatever the ledger's state, for
    /// want of a valid gate approval or of any controller signature, with the ledger's result
    /// for it: lets a validator refuse such a batch at submission, with a stable code, instead
    /// of queueing what can never settle. `None` if there is none (or `batch` opens accounts).
    /// The controller's key and the batch signature need the ledger's state (who controls the
    /// debited account), so they are left to execution.
    pub fn authority_refusal(&self, batch: &Batch) -> Option<(usize, CreateTransferResult)> {
        let Batch::CreateTransfers {
            entries,
            batch_signature,
        } = batch
        else {
            return None;
        };
        entries.iter().enumerate().find_map(|(index, entry)| {
            let refusal = match entry.gate {
                None => Some(CreateTransferResult::GateDecisionMissing),
                Some(gate) => match self.gate_keys.get(&gate.gate_key) {
                    None => Some(CreateTransferResult::GateKeyUnknown),
                    Some(parsed) => {
                        let message =
                            gate_approval_message(entry.transfer.id, &entry.transfer.decision_hash);
                        (!verify_ed25519_parsed(parsed, &message, &gate.signature))
                            .then_some(CreateTransferResult::GateSignatureInvalid)
                    }
                },
            }
            .or_else(|| {
                (entry.signature.is_none() && batch_signature.is_none())
                    .then_some(CreateTransferResult::SignatureMissing)
            });
            refusal.map(|refusal| (index, refusal))
        })
    }
}
