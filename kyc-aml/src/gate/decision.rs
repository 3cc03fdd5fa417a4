//! The gate's decision record, its canonical bytes and hash, the signed decision every
//! settled transfer carries, and the verification settlement validators run.
//!
//! This module depends on `sha2` and `ed25519-dalek` only (no stores, no screening), so that
//! validators can verify decisions without anything else of this crate. The byte layout is in
//! `docs/kyc-aml-formats.md`.
//!
//! What is signed is not the record alone: the gate signs
//! `SIGNING_DOMAIN || transfer_id (16 bytes BE) || outcome (1 byte) || decision hash`, so a
//! signature can neither be moved to another transfer nor a rejection be passed off as an
//! approval by a party that holds only the hash.

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Version byte at the start of the canonical record.
pub const RECORD_VERSION: u8 = 1;
/// Magic that starts the canonical record.
pub const RECORD_MAGIC: &[u8; 6] = b"RMPDR\0";
/// Domain tag of the signed message.
pub const SIGNING_DOMAIN: &[u8] = b"rempart/gate-decision/v1\n";

/// The gate's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Outcome {
    /// The transfer may settle.
    Approve = 1,
    /// The transfer is held until a person decides (a case is opened).
    Hold = 2,
    /// The transfer is refused.
    Reject = 3,
}

impl Outcome {
    /// From the stored byte.
    pub fn from_u8(v: u8) -> Option<Outcome> {
        Some(match v {
            1 => Outcome::Approve,
            2 => Outcome::Hold,
            3 => Outcome::Reject,
            _ => return None,
        })
    }
}

/// The tier and limit check made for the transfer's activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitCheck {
    /// Activity code.
    pub activity: u8,
    /// Tier in force.
    pub tier: u8,
    /// Counted over the last 24 hours before this transfer.
    pub used_day_minor: u64,
    /// The tier's 24-hour limit.
    pub limit_day_minor: u64,
    /// Counted over the last 30 days before this transfer.
    pub used_30d_minor: u64,
    /// The tier's 30-day limit.
    pub limit_30d_minor: u64,
}

/// Screening result as recorded: which list snapshot, and what it said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScreeningCheck {
    /// The list snapshot's id.
    pub snapshot_id: String,
    /// The list snapshot's content hash.
    pub snapshot_hash: [u8; 32],
    /// 0 clear, 1 possible match, 2 match.
    pub result: u8,
    /// How many names were screened.
    pub names_screened: u16,
    /// Best candidate score, basis points (0..=10000).
    pub best_score_bp: u16,
}

/// One reason: a stable reject code and a detail without personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonEntry {
    /// The stable code (`crate::Reject`).
    pub code: u16,
    /// What was seen.
    pub detail: String,
}

/// Everything the gate looked at and concluded. Pseudonymous: no names, no addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// Settlement transfer id.
    pub transfer_id: u128,
    /// Pseudonymous customer id.
    pub customer: u64,
    /// Evaluation time, UTC microseconds.
    pub evaluated_at_us: i64,
    /// Activity code.
    pub activity: u8,
    /// Direction code.
    pub direction: u8,
    /// Asset code.
    pub asset: String,
    /// Amount in asset minor units.
    pub amount_minor: u64,
    /// EUR-equivalent minor units.
    pub amount_eur_minor: u64,
    /// CDD level code.
    pub cdd_level: u8,
    /// Risk rating code.
    pub risk: u8,
    /// The limit check, when the customer had a tier.
    pub limits: Option<LimitCheck>,
    /// The screening, when names were screened.
    pub screening: Option<ScreeningCheck>,
    /// Monitoring rules version id.
    pub rules_version: String,
    /// Monitoring rules content hash.
    pub rules_hash: [u8; 32],
    /// Monitoring score.
    pub score: u32,
    /// Travel rule: 0 not required, 1 complete, 2 missing, 3 incomplete.
    pub travel_rule: u8,
    /// The outcome.
    pub outcome: Outcome,
    /// Every reason, in the order found.
    pub reasons: Vec<ReasonEntry>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

impl DecisionRecord {
    /// The canonical bytes: magic, version, then every field in declaration order; integers
    /// big-endian, strings as u32 length + UTF-8, options as a 0/1 byte then the value,
    /// the reasons as a u32 count then each (code u16, detail string).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(256 + self.reasons.len() * 48);
        o.extend_from_slice(RECORD_MAGIC);
        o.push(RECORD_VERSION);
        o.extend_from_slice(&self.transfer_id.to_be_bytes());
        o.extend_from_slice(&self.customer.to_be_bytes());
        o.extend_from_slice(&self.evaluated_at_us.to_be_bytes());
        o.push(self.activity);
        o.push(self.direction);
        put_str(&mut o, &self.asset);
        o.extend_from_slice(&self.amount_minor.to_be_bytes());
        o.extend_from_slice(&self.amount_eur_minor.to_be_bytes());
        o.push(self.cdd_level);
        o.push(self.risk);
        match &self.limits {
            None => o.push(0),
            Some(l) => {
                o.push(1);
                o.push(l.activity);
                o.push(l.tier);
                for v in [
                    l.used_day_minor,
                    l.limit_day_minor,
                    l.used_30d_minor,
                    l.limit_30d_minor,
                ] {
                    o.extend_from_slice(&v.to_be_bytes());
                }
            }
        }
        match &self.screening {
            None => o.push(0),
            Some(s) => {
                o.push(1);
                put_str(&mut o, &s.snapshot_id);
                o.extend_from_slice(&s.snapshot_hash);
                o.push(s.result);
                o.extend_from_slice(&s.names_screened.to_be_bytes());
                o.extend_from_slice(&s.best_score_bp.to_be_bytes());
            }
        }
        put_str(&mut o, &self.rules_version);
        o.extend_from_slice(&self.rules_hash);
        o.extend_from_slice(&self.score.to_be_bytes());
        o.push(self.travel_rule);
        o.push(self.outcome as u8);
        o.extend_from_slice(&(self.reasons.len() as u32).to_be_bytes());
        for r in &self.reasons {
            o.extend_from_slice(&r.code.to_be_bytes());
            put_str(&mut o, &r.detail);
        }
        o
    }

    /// SHA-256 of the canonical bytes.
    pub fn decision_hash(&self) -> [u8; 32] {
        Sha256::digest(self.canonical_bytes()).into()
    }
}

/// The message the gate key signs for a decision.
pub fn signing_message(transfer_id: u128, outcome: Outcome, hash: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNING_DOMAIN.len() + 16 + 1 + 32);
    m.extend_from_slice(SIGNING_DOMAIN);
    m.extend_from_slice(&transfer_id.to_be_bytes());
    m.push(outcome as u8);
    m.extend_from_slice(hash);
    m
}

/// What a settled transfer carries: the decision hash and the gate's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedDecision {
    /// The transfer decided on.
    pub transfer_id: u128,
    /// The outcome.
    pub outcome: Outcome,
    /// SHA-256 of the canonical decision record.
    pub hash: [u8; 32],
    /// Ed25519 over [`signing_message`].
    #[serde(with = "sig_hex")]
    pub signature: [u8; 64],
    /// Which gate key signed (its label in the key store).
    pub gate_key_id: String,
}

mod sig_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(128);
        for b in v {
            out.push_str(&format!("{b:02x}"));
        }
        s.serialize_str(&out)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        let s = String::deserialize(d)?;
        let bytes = s.as_bytes();
        if bytes.len() != 128 {
            return Err(serde::de::Error::custom("signature is not 128 hex digits"));
        }
        let mut out = [0u8; 64];
        for (i, pair) in bytes.chunks(2).enumerate() {
            let txt = std::str::from_utf8(pair).map_err(serde::de::Error::custom)?;
            out[i] = u8::from_str_radix(txt, 16).map_err(serde::de::Error::custom)?;
        }
        Ok(out)
    }
}

/// The gate public keys a verifier trusts, by key id (several during a rotation).
#[derive(Debug, Clone, Default)]
pub struct GateKeys {
    keys: BTreeMap<String, VerifyingKey>,
}

impl GateKeys {
    /// No keys.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts a gate key. Refuses bytes that are not a valid, non-weak Ed25519 key.
    pub fn add(&mut self, key_id: &str, public_key: &[u8; 32]) -> Result<(), DecisionVerifyError> {
        let key =
            VerifyingKey::from_bytes(public_key).map_err(|_| DecisionVerifyError::BadGateKey)?;
        if key.is_weak() {
            return Err(DecisionVerifyError::BadGateKey);
        }
        self.keys.insert(key_id.to_string(), key);
        Ok(())
    }

    /// Stops trusting a key id.
    pub fn remove(&mut self, key_id: &str) {
        self.keys.remove(key_id);
    }
}

/// Why a signed decision does not verify. Stable codes (8xxx) for validators' logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u16)]
#[non_exhaustive]
pub enum DecisionVerifyError {
    /// The key id is not trusted.
    UnknownGateKey = 8001,
    /// The public key bytes are not a valid Ed25519 key.
    BadGateKey = 8002,
    /// The signature does not verify.
    BadSignature = 8003,
    /// The record does not hash to the signed hash.
    HashMismatch = 8004,
    /// The decision is not an approval.
    NotApproved = 8005,
    /// The decision is for another transfer.
    WrongTransfer = 8006,
}

impl DecisionVerifyError {
    /// The stable code.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// A short message.
    pub fn message(self) -> &'static str {
        match self {
            Self::UnknownGateKey => "gate key is not trusted",
            Self::BadGateKey => "gate key is invalid",
            Self::BadSignature => "decision signature does not verify",
            Self::HashMismatch => "decision record does not match the signed hash",
            Self::NotApproved => "decision is not an approval",
            Self::WrongTransfer => "decision is for another transfer",
        }
    }
}

impl std::fmt::Display for DecisionVerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message(), self.code())
    }
}

impl std::error::Error for DecisionVerifyError {}

/// Verifies the gate's signature over a signed decision (any outcome).
pub fn verify_signature(
    signed: &SignedDecision,
    keys: &GateKeys,
) -> Result<(), DecisionVerifyError> {
    let key = keys
        .keys
        .get(&signed.gate_key_id)
        .ok_or(DecisionVerifyError::UnknownGateKey)?;
    let msg = signing_message(signed.transfer_id, signed.outcome, &signed.hash);
    key.verify_strict(&msg, &Signature::from_bytes(&signed.signature))
        .map_err(|_| DecisionVerifyError::BadSignature)
}

/// What a settlement validator calls: the decision is signed by a trusted gate key, is for
/// this transfer, and approves it.
pub fn verify_approval(
    signed: &SignedDecision,
    transfer_id: u128,
    keys: &GateKeys,
) -> Result<(), DecisionVerifyError> {
    verify_signature(signed, keys)?;
    if signed.transfer_id != transfer_id {
        return Err(DecisionVerifyError::WrongTransfer);
    }
    if signed.outcome != Outcome::Approve {
        return Err(DecisionVerifyError::NotApproved);
    }
    Ok(())
}

/// Verifies a full record against its signed decision (auditors, regulators): the record
/// hashes to the signed hash, names the same transfer and outcome, and the signature holds.
pub fn verify_record(
    record: &DecisionRecord,
    signed: &SignedDecision,
    keys: &GateKeys,
) -> Result<(), DecisionVerifyError> {
    verify_signature(signed, keys)?;
    if record.decision_hash() != signed.hash || record.outcome != signed.outcome {
        return Err(DecisionVerifyError::HashMismatch);
    }
    if record.transfer_id != signed.transfer_id {
        return Err(DecisionVerifyError::WrongTransfer);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    pub(crate) fn record() -> DecisionRecord {
        DecisionRecord {
            transfer_id: 99,
            customer: 7,
            evaluated_at_us: 1_700_000_000_000_000,
            activity: 4,
            direction: 2,
            asset: "CITY".into(),
            amount_minor: 5_000_000,
            amount_eur_minor: 12_345,
            cdd_level: 2,
            risk: 1,
            limits: Some(LimitCheck {
                activity: 4,
                tier: 2,
                used_day_minor: 0,
                limit_day_minor: 1_000_000,
                used_30d_minor: 10,
                limit_30d_minor: 5_000_000,
            }),
            screening: Some(ScreeningCheck {
                snapshot_id: "un-2026-11-20".into(),
                snapshot_hash: [3; 32],
                result: 0,
                names_screened: 2,
                best_score_bp: 1_200,
            }),
            rules_version: "v1".into(),
            rules_hash: [4; 32],
            score: 10,
            travel_rule: 1,
            outcome: Outcome::Approve,
            reasons: vec![ReasonEntry {
                code: 2015,
                detail: "round-thousands".into(),
            }],
        }
    }

    fn sign(key: &SigningKey, r: &DecisionRecord) -> SignedDecision {
        let hash = r.decision_hash();
        let sig = key.sign(&signing_message(r.transfer_id, r.outcome, &hash));
        SignedDecision {
            transfer_id: r.transfer_id,
            outcome: r.outcome,
            hash,
            signature: sig.to_bytes(),
            gate_key_id: "gate-1".into(),
        }
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = record();
        let h = base.decision_hash();
        let mut variants = Vec::new();
        let mut r = base.clone();
        r.score = 11;
        variants.push(r);
        let mut r = base.clone();
        r.reasons[0].detail.push('x');
        variants.push(r);
        let mut r = base.clone();
        r.screening = None;
        variants.push(r);
        let mut r = base.clone();
        r.asset = "CITYE".into();
        r.rules_version = "1".into();
        variants.push(r);
        let mut r = base.clone();
        r.outcome = Outcome::Hold;
        variants.push(r);
        for v in variants {
            assert_ne!(v.decision_hash(), h);
        }
        assert_eq!(base.clone().decision_hash(), h);
    }

    #[test]
    fn approval_verifies_and_forgeries_do_not() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let mut keys = GateKeys::new();
        keys.add("gate-1", &key.verifying_key().to_bytes()).unwrap();
        let r = record();
        let s = sign(&key, &r);
        assert_eq!(verify_approval(&s, 99, &keys), Ok(()));
        assert_eq!(verify_record(&r, &s, &keys), Ok(()));
        assert_eq!(
            verify_approval(&s, 98, &keys),
            Err(DecisionVerifyError::WrongTransfer)
        );
        let mut forged = s.clone();
        forged.outcome = Outcome::Approve;
        forged.transfer_id = 98;
        assert_eq!(
            verify_approval(&forged, 98, &keys),
            Err(DecisionVerifyError::BadSignature)
        );
        let mut other = r.clone();
        other.score = 1;
        assert_eq!(
            verify_record(&other, &s, &keys),
            Err(DecisionVerifyError::HashMismatch)
        );
        let mut held = r.clone();
        held.outcome = Outcome::Hold;
        let hs = sign(&key, &held);
        assert_eq!(
            verify_approval(&hs, 99, &keys),
            Err(DecisionVerifyError::NotApproved)
        );
        let mut unknown = s.clone();
        unknown.gate_key_id = "gate-2".into();
        assert_eq!(
            verify_approval(&unknown, 99, &keys),
            Err(DecisionVerifyError::UnknownGateKey)
        );
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<SignedDecision>(&json).unwrap(), s);
    }
}
