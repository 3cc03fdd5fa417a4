//! Identity evidence: attestations signed by trusted issuers (an identity provider, an EUDI
//! wallet presentation verifier), the registry of those issuers, and the CDD level the evidence
//! supports.
//!
//! An issuer signs, with Ed25519, the canonical bytes of the claims ([`canonical_claims_bytes`],
//! layout in `docs/kyc-aml-formats.md`). Revocation is defined by one instant per issuer,
//! `revoked_at_us`, the moment trust in the issuer ended (for a compromised key: the earliest
//! moment it may have been compromised, which can be before the revocation is recorded):
//!
//! - presenting: an attestation is refused if `now >= revoked_at_us` (nothing new is accepted
//!   from a revoked issuer) or if its `issued_at_us >= revoked_at_us`;
//! - standing: an attestation accepted earlier keeps counting for CDD only while
//!   `accepted_at_us < revoked_at_us` and `now < expires_at_us`. `accepted_at_us` is our own
//!   time of acceptance, so an attacker holding a stolen key cannot back-date past it.

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::customer::{CddLevel, CustomerId, CustomerKind, PersonalData, TimestampUs};
use crate::limits::{ATTESTATION_BYTES_MAX, ISSUERS_MAX};
use crate::reject::{Refusal, Reject};
use crate::validate::{country_ok, date_ok, field_ok};

/// Domain tag that starts the canonical claims bytes, so a signature over them can never be
/// mistaken for a signature over anything else.
pub const CLAIMS_DOMAIN: &[u8] = b"rempart/attestation/v1\n";

/// What kind of party vouches for an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssuerKind {
    /// An identity provider (video identification, bank ID, eID scheme).
    IdentityProvider,
    /// The verifier of EUDI wallet presentations (PID).
    EudiVerifier,
}

/// A configured, trusted issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedIssuer {
    /// Stable id; attestations name it.
    pub id: String,
    /// Its kind.
    pub kind: IssuerKind,
    /// Its Ed25519 verifying key.
    pub public_key: VerifyingKey,
    /// When trust in it ended, if it did.
    pub revoked_at_us: Option<TimestampUs>,
}

/// The trusted issuers, by id.
#[derive(Debug, Clone, Default)]
pub struct IssuerRegistry {
    issuers: BTreeMap<String, TrustedIssuer>,
}

/// eIDAS level of assurance of the identity proofing behind an attestation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Assurance {
    /// eIDAS "substantial".
    Substantial = 1,
    /// eIDAS "high".
    High = 2,
}

/// What an issuer attests about a customer. Personal data: stored only in the stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationClaims {
    /// The pseudonymous customer the claims are about (bound at onboarding).
    pub subject: CustomerId,
    /// The issuer's id.
    pub issuer: String,
    /// Level of assurance.
    pub assurance: Assurance,
    /// Full name.
    pub full_name: String,
    /// `YYYY-MM-DD`.
    pub birth_date: Option<String>,
    /// ISO 3166-1 alpha-2.
    pub nationality: Option<String>,
    /// ISO 3166-1 alpha-2.
    pub residence_country: String,
    /// Identity document or national number.
    pub national_id: Option<String>,
    /// When the issuer made the attestation.
    pub issued_at_us: TimestampUs,
    /// When it stops being valid.
    pub expires_at_us: TimestampUs,
}

/// Claims with the issuer's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestation {
    /// The claims.
    pub claims: AttestationClaims,
    /// Ed25519 over [`canonical_claims_bytes`].
    pub signature: [u8; 64],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttestationWire {
    claims: AttestationClaims,
    signature: String,
}

impl Attestation {
    /// Parses the JSON form `{"claims": {...}, "signature": "<128 hex digits>"}` and checks the
    /// claims' shapes. The signature is checked by [`IssuerRegistry::verify_presentation`].
    pub fn from_json(bytes: &[u8]) -> Result<Attestation, Refusal> {
        if bytes.len() > ATTESTATION_BYTES_MAX {
            return Err(Refusal::new(
                Reject::AttestationTooLarge,
                format!("{} bytes", bytes.len()),
            ));
        }
        let wire: AttestationWire = serde_json::from_slice(bytes)
            .map_err(|e| Refusal::new(Reject::AttestationMalformed, e.to_string()))?;
        let sig = hex::decode(&wire.signature)
            .ok()
            .and_then(|v| <[u8; 64]>::try_from(v).ok())
            .ok_or_else(|| {
                Refusal::new(
                    Reject::AttestationMalformed,
                    "signature is not 64 hex bytes",
                )
            })?;
        let att = Attestation {
            claims: wire.claims,
            signature: sig,
        };
        att.claims.validate()?;
        Ok(att)
    }

    /// The JSON form [`Attestation::from_json`] reads.
    pub fn to_json(&self) -> String {
        serde_json::json!({ "claims": self.claims, "signature": hex::encode(self.signature) })
            .to_string()
    }
}

impl AttestationClaims {
    /// Shapes of every claim.
    pub fn validate(&self) -> Result<(), Refusal> {
        let bad = |f: &str| Refusal::new(Reject::AttestationFieldInvalid, f.to_string());
        if !field_ok(&self.issuer) {
            return Err(bad("issuer"));
        }
        if !field_ok(&self.full_name) {
            return Err(bad("full_name"));
        }
        if self.birth_date.as_deref().is_some_and(|d| !date_ok(d)) {
            return Err(bad("birth_date"));
        }
        if self.nationality.as_deref().is_some_and(|c| !country_ok(c)) {
            return Err(bad("nationality"));
        }
        if !country_ok(&self.residence_country) {
            return Err(bad("residence_country"));
        }
        if self.national_id.as_deref().is_some_and(|s| !field_ok(s)) {
            return Err(bad("national_id"));
        }
        if self.expires_at_us <= self.issued_at_us {
            return Err(bad("expires_at_us is not after issued_at_us"));
        }
        Ok(())
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

/// The bytes an issuer signs: the domain tag, then each claim in declaration order; integers
/// big-endian, strings as a u32 big-endian length and UTF-8 bytes, options as a 0/1 byte then
/// the value.
pub fn canonical_claims_bytes(c: &AttestationClaims) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(CLAIMS_DOMAIN);
    out.extend_from_slice(&c.subject.to_be_bytes());
    put_str(&mut out, &c.issuer);
    out.push(c.assurance as u8);
    put_str(&mut out, &c.full_name);
    put_opt(&mut out, c.birth_date.as_deref());
    put_opt(&mut out, c.nationality.as_deref());
    put_str(&mut out, &c.residence_country);
    put_opt(&mut out, c.national_id.as_deref());
    out.extend_from_slice(&c.issued_at_us.to_be_bytes());
    out.extend_from_slice(&c.expires_at_us.to_be_bytes());
    out
}

/// An attestation accepted at a given time: what the store keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedAttestation {
    /// The subject.
    pub customer: CustomerId,
    /// The issuer's id.
    pub issuer: String,
    /// Level of assurance.
    pub assurance: Assurance,
    /// Our time of acceptance.
    pub accepted_at_us: TimestampUs,
    /// The attestation's expiry.
    pub expires_at_us: TimestampUs,
    /// SHA-256 of the canonical claims: survives erasure as evidence that a check happened.
    pub claims_sha256: [u8; 32],
    /// The canonical claims (personal data); `None` once erased.
    pub claims_canonical: Option<Vec<u8>>,
    /// The issuer's signature.
    pub signature: [u8; 64],
}

impl IssuerRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts a new issuer.
    pub fn add(&mut self, id: &str, kind: IssuerKind, public_key: [u8; 32]) -> Result<(), Refusal> {
        if !field_ok(id) {
            return Err(Refusal::new(Reject::AttestationFieldInvalid, "issuer id"));
        }
        if self.issuers.contains_key(id) {
            return Err(Refusal::new(Reject::DuplicateIssuer, id.to_string()));
        }
        if self.issuers.len() >= ISSUERS_MAX {
            return Err(Refusal::new(Reject::IssuerRegistryFull, id.to_string()));
        }
        let key = VerifyingKey::from_bytes(&public_key)
            .map_err(|_| Refusal::new(Reject::IssuerKeyInvalid, id.to_string()))?;
        if key.is_weak() {
            return Err(Refusal::new(
                Reject::IssuerKeyInvalid,
                format!("{id}: weak key"),
            ));
        }
        self.issuers.insert(
            id.to_string(),
            TrustedIssuer {
                id: id.to_string(),
                kind,
                public_key: key,
                revoked_at_us: None,
            },
        );
        Ok(())
    }

    /// Ends trust in an issuer from `at_us` on. Revoking again moves the instant earlier only:
    /// trust that has ended cannot be given back by a later revocation.
    pub fn revoke(&mut self, id: &str, at_us: TimestampUs) -> Result<(), Refusal> {
        let issuer = self
            .issuers
            .get_mut(id)
            .ok_or_else(|| Refusal::new(Reject::UnknownIssuer, id.to_string()))?;
        issuer.revoked_at_us = Some(issuer.revoked_at_us.map_or(at_us, |t| t.min(at_us)));
        Ok(())
    }

    /// An issuer by id.
    pub fn get(&self, id: &str) -> Option<&TrustedIssuer> {
        self.issuers.get(id)
    }

    /// Checks an attestation presented at `now` for `subject`: issuer trusted and not revoked
    /// (see the module docs), signature valid, issued no later than now, not expired.
    pub fn verify_presentation(
        &self,
        att: &Attestation,
        subject: CustomerId,
        now: TimestampUs,
    ) -> Result<AcceptedAttestation, Refusal> {
        att.claims.validate()?;
        let c = &att.claims;
        let issuer = self
            .issuers
            .get(&c.issuer)
            .ok_or_else(|| Refusal::new(Reject::UnknownIssuer, c.issuer.clone()))?;
        let bytes = canonical_claims_bytes(c);
        let sig = Signature::from_bytes(&att.signature);
        issuer
            .public_key
            .verify_strict(&bytes, &sig)
            .map_err(|_| Refusal::new(Reject::BadSignature, c.issuer.clone()))?;
        if let Some(revoked) = issuer.revoked_at_us
            && (now >= revoked || c.issued_at_us >= revoked)
        {
            return Err(Refusal::new(Reject::IssuerRevoked, c.issuer.clone()));
        }
        if c.subject != subject {
            return Err(Refusal::new(Reject::AttestationSubjectMismatch, "subject"));
        }
        if c.issued_at_us > now {
            return Err(Refusal::new(Reject::AttestationNotYetValid, "issued_at_us"));
        }
        if now >= c.expires_at_us {
            return Err(Refusal::new(Reject::AttestationExpired, "expires_at_us"));
        }
        Ok(AcceptedAttestation {
            customer: subject,
            issuer: c.issuer.clone(),
            assurance: c.assurance,
            accepted_at_us: now,
            expires_at_us: c.expires_at_us,
            claims_sha256: Sha256::digest(&bytes).into(),
            claims_canonical: Some(bytes),
            signature: att.signature,
        })
    }

    /// Whether an accepted attestation still counts at `now` (see the module docs).
    pub fn is_standing(&self, a: &AcceptedAttestation, now: TimestampUs) -> bool {
        let Some(issuer) = self.issuers.get(&a.issuer) else {
            return false;
        };
        let revoked_ok = issuer.revoked_at_us.is_none_or(|r| a.accepted_at_us < r);
        revoked_ok && now < a.expires_at_us
    }

    /// The CDD level a customer's evidence supports at `now`: basic needs a standing
    /// attestation at "substantial", standard one at "high", enhanced additionally the
    /// compliance sign-off of enhanced due diligence. A legal entity reaches no level until
    /// every beneficial owner of 25 % or more is verified.
    pub fn cdd_level(
        &self,
        kind: CustomerKind,
        personal: &PersonalData,
        evidence: &[AcceptedAttestation],
        edd_signed_off: bool,
        now: TimestampUs,
    ) -> CddLevel {
        if personal.validate(kind).is_err() {
            return CddLevel::None;
        }
        if kind == CustomerKind::LegalEntity && !personal.beneficial_owners_verified() {
            return CddLevel::None;
        }
        let best = evidence
            .iter()
            .filter(|a| self.is_standing(a, now))
            .map(|a| a.assurance)
            .max();
        match (best, edd_signed_off) {
            (None, _) => CddLevel::None,
            (Some(Assurance::Substantial), _) => CddLevel::Basic,
            (Some(Assurance::High), false) => CddLevel::Standard,
            (Some(Assurance::High), true) => CddLevel::Enhanced,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn claims(issued: i64, expires: i64) -> AttestationClaims {
        AttestationClaims {
            subject: 42,
            issuer: "idp-1".into(),
            assurance: Assurance::High,
            full_name: "Marie Dupont".into(),
            birth_date: Some("1990-04-01".into()),
            nationality: Some("FR".into()),
            residence_country: "FR".into(),
            national_id: Some("FR-ID-123".into()),
            issued_at_us: issued,
            expires_at_us: expires,
        }
    }

    fn signed(key: &SigningKey, c: AttestationClaims) -> Attestation {
        let sig = key.sign(&canonical_claims_bytes(&c));
        Attestation {
            claims: c,
            signature: sig.to_bytes(),
        }
    }

    fn setup() -> (SigningKey, IssuerRegistry) {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let mut reg = IssuerRegistry::new();
        reg.add(
            "idp-1",
            IssuerKind::IdentityProvider,
            key.verifying_key().to_bytes(),
        )
        .unwrap();
        (key, reg)
    }

    #[test]
    fn valid_attestation_is_accepted_and_round_trips_json() {
        let (key, reg) = setup();
        let att = signed(&key, claims(100, 1_000));
        let parsed = Attestation::from_json(att.to_json().as_bytes()).unwrap();
        assert_eq!(parsed, att);
        let acc = reg.verify_presentation(&parsed, 42, 200).unwrap();
        assert_eq!(acc.accepted_at_us, 200);
        assert!(reg.is_standing(&acc, 999));
        assert!(!reg.is_standing(&acc, 1_000));
    }

    #[test]
    fn tampering_and_wrong_subject_are_refused() {
        let (key, reg) = setup();
        let mut att = signed(&key, claims(100, 1_000));
        assert_eq!(
            reg.verify_presentation(&att, 43, 200).unwrap_err().reject,
            Reject::AttestationSubjectMismatch
        );
        att.claims.full_name = "Mallory".into();
        assert_eq!(
            reg.verify_presentation(&att, 42, 200).unwrap_err().reject,
            Reject::BadSignature
        );
        let other = SigningKey::from_bytes(&[8u8; 32]);
        let att = signed(&other, claims(100, 1_000));
        assert_eq!(
            reg.verify_presentation(&att, 42, 200).unwrap_err().reject,
            Reject::BadSignature
        );
    }

    #[test]
    fn revocation_is_exact() {
        let (key, mut reg) = setup();
        let before = signed(&key, claims(100, 10_000));
        let accepted = reg.verify_presentation(&before, 42, 150).unwrap();
        reg.revoke("idp-1", 500).unwrap();
        // Presented before the revocation instant, issued before it: accepted.
        assert!(reg.verify_presentation(&before, 42, 499).is_ok());
        // Presented at the revocation instant: refused, even though issued before.
        assert_eq!(
            reg.verify_presentation(&before, 42, 500)
                .unwrap_err()
                .reject,
            Reject::IssuerRevoked
        );
        // Issued at the revocation instant: refused whenever presented.
        let at = signed(&key, claims(500, 10_000));
        assert_eq!(
            reg.verify_presentation(&at, 42, 400).unwrap_err().reject,
            Reject::IssuerRevoked
        );
        // Accepted before: keeps standing until expiry. Revoking earlier than acceptance ends it.
        assert!(reg.is_standing(&accepted, 9_999));
        reg.revoke("idp-1", 150).unwrap();
        assert!(!reg.is_standing(&accepted, 200));
        // A later revocation cannot restore trust.
        reg.revoke("idp-1", 9_000).unwrap();
        assert_eq!(reg.get("idp-1").unwrap().revoked_at_us, Some(150));
    }

    #[test]
    fn expiry_and_malformed_input() {
        let (key, reg) = setup();
        let att = signed(&key, claims(100, 1_000));
        assert_eq!(
            reg.verify_presentation(&att, 42, 1_000).unwrap_err().reject,
            Reject::AttestationExpired
        );
        assert_eq!(
            reg.verify_presentation(&att, 42, 99).unwrap_err().reject,
            Reject::AttestationNotYetValid
        );
        let bad = |s: &str| Attestation::from_json(s.as_bytes()).unwrap_err().reject;
        assert_eq!(bad("{"), Reject::AttestationMalformed);
        assert_eq!(
            bad(&"x".repeat(ATTESTATION_BYTES_MAX + 1)),
            Reject::AttestationTooLarge
        );
        let mut j: serde_json::Value = serde_json::from_str(&att.to_json()).unwrap();
        j["signature"] = "abcd".into();
        assert_eq!(bad(&j.to_string()), Reject::AttestationMalformed);
        let mut j: serde_json::Value = serde_json::from_str(&att.to_json()).unwrap();
        j["claims"]["residence_country"] = "France".into();
        assert_eq!(bad(&j.to_string()), Reject::AttestationFieldInvalid);
        let mut j: serde_json::Value = serde_json::from_str(&att.to_json()).unwrap();
        j["claims"]["extra"] = 1.into();
        assert_eq!(bad(&j.to_string()), Reject::AttestationMalformed);
    }
}
