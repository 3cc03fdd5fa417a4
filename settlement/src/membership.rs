//! Who may validate, Fabric-MSP style: each institution has a CA key (Ed25519); the CA signs a
//! membership certificate for each of its validators (validator id, institution, validator
//! public key, rights); the genesis configuration lists the trusted CA keys, the certificates
//! and the compliance gate's keys. Everything is verified when the configuration is loaded, and
//! commit certificates count only members' signatures.
//!
//! Quorum: with `n` voting members, a certificate needs more than two thirds of them,
//! `floor(2n/3) + 1` (= 2f+1 when n = 3f+1), so that any two quorums share an honest member.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::block::CommitCertificate;
use crate::codec::Writer;
use crate::crypto::{
    DOMAIN_GENESIS, DOMAIN_MEMBERSHIP, Ed25519Key, Hash32, Signature64, tagged_hash, verify_ed25519,
};
use crate::ledger::LedgerConfig;
use crate::limits::{NAME_BYTES_MAX, VALIDATORS_MAX};

/// A validator's id (unique in the consortium).
pub type ValidatorId = u64;

/// Right to vote on blocks (signatures count towards a quorum).
pub const RIGHT_VOTE: u8 = 1 << 0;
/// Right to propose blocks.
pub const RIGHT_PROPOSE: u8 = 1 << 1;
/// Every defined right.
pub const RIGHTS_ALL: u8 = RIGHT_VOTE | RIGHT_PROPOSE;

/// Hex (de)serialisation of fixed-size byte arrays in the JSON configuration.
mod hex_array {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        deserializer: D,
    ) -> Result<[u8; N], D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = hex::decode(&text).map_err(D::Error::custom)?;
        bytes
            .try_into()
            .map_err(|_| D::Error::custom(format!("expected {N} bytes of hex")))
    }
}

/// Hex for a list of keys.
mod hex_keys {
    use serde::{Deserialize, Deserializer, Serializer, de::Error, ser::SerializeSeq};

    pub fn serialize<S: Serializer>(keys: &[[u8; 32]], serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(keys.len()))?;
        for key in keys {
            seq.serialize_element(&hex::encode(key))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<[u8; 32]>, D::Error> {
        let texts = Vec::<String>::deserialize(deserializer)?;
        texts
            .iter()
            .map(|text| {
                let bytes = hex::decode(text).map_err(D::Error::custom)?;
                bytes
                    .try_into()
                    .map_err(|_| D::Error::custom("expected 32 bytes of hex"))
            })
            .collect()
    }
}

/// A CA the consortium trusts to certify one institution's validators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedCa {
    /// The institution (as written in its certificates).
    pub institution: String,
    /// The CA's Ed25519 public key.
    #[serde(with = "hex_array")]
    pub public_key: Ed25519Key,
}

/// A validator's membership certificate, signed by its institution's CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipCertificate {
    /// The validator's id.
    pub validator_id: ValidatorId,
    /// Its institution.
    pub institution: String,
    /// Its Ed25519 key (signs votes).
    #[serde(with = "hex_array")]
    pub public_key: Ed25519Key,
    /// [`RIGHT_VOTE`] | [`RIGHT_PROPOSE`].
    pub rights: u8,
    /// The CA key that signed it.
    #[serde(with = "hex_array")]
    pub ca_key: Ed25519Key,
    /// Ed25519 over [`MembershipCertificate::signing_bytes`].
    #[serde(with = "hex_array")]
    pub signature: Signature64,
}

impl MembershipCertificate {
    /// The bytes the CA signs.
    pub fn signing_bytes(
        validator_id: ValidatorId,
        institution: &str,
        public_key: &Ed25519Key,
        rights: u8,
    ) -> Vec<u8> {
        let mut w = Writer::new();
        w.bytes(DOMAIN_MEMBERSHIP);
        w.u64(validator_id);
        w.var_bytes(institution.as_bytes());
        w.bytes(public_key);
        w.u8(rights);
        w.into_bytes()
    }
}

/// The genesis configuration every validator starts from (`genesis.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisConfig {
    /// The chain's name (keeps test and production chains apart).
    pub chain_id: String,
    /// CAs trusted to certify validators.
    pub trusted_cas: Vec<TrustedCa>,
    /// The validators' certificates.
    pub validators: Vec<MembershipCertificate>,
    /// The compliance gate's Ed25519 keys.
    #[serde(with = "hex_keys")]
    pub gate_keys: Vec<Ed25519Key>,
}

/// Why a configuration or a certificate is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// The configuration is malformed (empty, duplicate, too long).
    #[error("invalid genesis configuration: {0}")]
    Invalid(String),
    /// A validator's certificate does not verify.
    #[error("membership certificate of validator {validator}: {reason}")]
    BadMembership {
        /// The validator.
        validator: ValidatorId,
        /// Why.
        reason: String,
    },
    /// A commit certificate does not prove a quorum.
    #[error("commit certificate: {0}")]
    BadCertificate(String),
}

/// A verified member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its institution.
    pub institution: String,
    /// Its vote key.
    pub public_key: Ed25519Key,
    /// Its rights.
    pub rights: u8,
}

/// The verified validator set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    members: BTreeMap<ValidatorId, Member>,
    voters: usize,
}

impl GenesisConfig {
    /// Verifies every certificate against the trusted CAs and returns the validator set.
    pub fn verify(&self) -> Result<Membership, MembershipError> {
        let invalid = |what: String| Err(MembershipError::Invalid(what));
        if self.chain_id.is_empty() || self.chain_id.len() > NAME_BYTES_MAX {
            return invalid("chain_id must be 1 to 128 bytes".into());
        }
        if self.validators.is_empty() || self.validators.len() > VALIDATORS_MAX {
            return invalid(format!(
                "{} validators; between 1 and {VALIDATORS_MAX} allowed",
                self.validators.len()
            ));
        }
        if self.gate_keys.is_empty() {
            return invalid("no gate key: no transfer could ever be approved".into());
        }
        let mut members = BTreeMap::new();
        let mut keys = BTreeSet::new();
        for cert in &self.validators {
            let bad = |reason: &str| MembershipError::BadMembership {
                validator: cert.validator_id,
                reason: reason.to_string(),
            };
            if cert.institution.is_empty() || cert.institution.len() > NAME_BYTES_MAX {
                return Err(bad("institution must be 1 to 128 bytes"));
            }
            if cert.rights & !RIGHTS_ALL != 0 {
                return Err(bad("unknown rights bits"));
            }
            let trusted = self
                .trusted_cas
                .iter()
                .any(|ca| ca.public_key == cert.ca_key && ca.institution == cert.institution);
            if !trusted {
                return Err(bad("signed by a CA not trusted for its institution"));
            }
            let message = MembershipCertificate::signing_bytes(
                cert.validator_id,
                &cert.institution,
                &cert.public_key,
                cert.rights,
            );
            if !verify_ed25519(&cert.ca_key, &message, &cert.signature) {
                return Err(bad("CA signature does not verify"));
            }
            if !keys.insert(cert.public_key) {
                return Err(bad("public key used by another validator"));
            }
            let member = Member {
                institution: cert.institution.clone(),
                public_key: cert.public_key,
                rights: cert.rights,
            };
            if members.insert(cert.validator_id, member).is_some() {
                return Err(bad("duplicate validator id"));
            }
        }
        let voters = members
            .values()
            .filter(|m| m.rights & RIGHT_VOTE != 0)
            .count();
        if voters == 0 {
            return invalid("no validator may vote".into());
        }
        Ok(Membership { members, voters })
    }

    /// The genesis hash: over the canonical form of the whole configuration. Block 1 points at
    /// it and the ledger's state hash starts from it.
    pub fn hash(&self) -> Hash32 {
        let mut w = Writer::new();
        w.var_bytes(self.chain_id.as_bytes());
        w.count(self.trusted_cas.len());
        for ca in &self.trusted_cas {
            w.var_bytes(ca.institution.as_bytes());
            w.bytes(&ca.public_key);
        }
        w.count(self.validators.len());
        for cert in &self.validators {
            w.u64(cert.validator_id);
            w.var_bytes(cert.institution.as_bytes());
            w.bytes(&cert.public_key);
            w.u8(cert.rights);
            w.bytes(&cert.ca_key);
            w.bytes(&cert.signature);
        }
        w.count(self.gate_keys.len());
        for key in &self.gate_keys {
            w.bytes(key);
        }
        tagged_hash(DOMAIN_GENESIS, &[w.as_bytes()])
    }

    /// The ledger configuration this genesis implies.
    pub fn ledger_config(&self, verify_threads: usize) -> LedgerConfig {
        LedgerConfig {
            gate_keys: self.gate_keys.clone(),
            genesis_hash: self.hash(),
            verify_threads,
        }
    }
}

impl Membership {
    /// A member.
    pub fn member(&self, id: ValidatorId) -> Option<&Member> {
        self.members.get(&id)
    }

    /// Number of voting members.
    pub fn voters(&self) -> usize {
        self.voters
    }

    /// Signatures a commit certificate needs: more than two thirds of the voters.
    pub fn quorum(&self) -> usize {
        self.voters * 2 / 3 + 1
    }

    /// True if `id` may propose.
    pub fn may_propose(&self, id: ValidatorId) -> bool {
        self.members
            .get(&id)
            .is_some_and(|m| m.rights & RIGHT_PROPOSE != 0)
    }

    /// Checks that `certificate` is for `height`/`block_hash` and carries valid signatures of
    /// at least a quorum of distinct voting members. Signatures of non-members or non-voters
    /// are refused (not silently skipped), so a certificate has one meaning.
    pub fn verify_certificate(
        &self,
        certificate: &CommitCertificate,
        height: u64,
        block_hash: &Hash32,
    ) -> Result<(), MembershipError> {
        let bad = |what: String| Err(MembershipError::BadCertificate(what));
        if certificate.vote.height != height || certificate.vote.block_hash != *block_hash {
            return bad("it is for another block".into());
        }
        let message = certificate.vote.signing_bytes();
        let mut previous: Option<ValidatorId> = None;
        for signature in &certificate.signatures {
            if previous.is_some_and(|p| p >= signature.validator) {
                return bad("signatures not sorted by validator id or duplicated".into());
            }
            previous = Some(signature.validator);
            let Some(member) = self.members.get(&signature.validator) else {
                return bad(format!("validator {} is not a member", signature.validator));
            };
            if member.rights & RIGHT_VOTE == 0 {
                return bad(format!("validator {} may not vote", signature.validator));
            }
            if !verify_ed25519(&member.public_key, &message, &signature.signature) {
                return bad(format!(
                    "signature of validator {} does not verify",
                    signature.validator
                ));
            }
        }
        if certificate.signatures.len() < self.quorum() {
            return bad(format!(
                "{} signatures, quorum is {} of {}",
                certificate.signatures.len(),
                self.quorum(),
                self.voters
            ));
        }
        Ok(())
    }
}

/// Test and tool support: a consortium of `n` validators from deterministic seeds, each
/// institution with its own CA.
pub mod fixture {
    use super::*;
    use crate::block::{CommitCertificate, Vote, VoteSignature};
    use crate::crypto::signing::Ed25519Signer;
    use crate::testkit;

    /// A consortium's keys (validators, CAs, gate) and its genesis configuration.
    #[derive(Debug)]
    pub struct Consortium {
        /// The genesis configuration.
        pub genesis: GenesisConfig,
        /// Validator keys, by index (validator id = index + 1).
        pub validators: Vec<Ed25519Signer>,
        /// The gate's key.
        pub gate: Ed25519Signer,
    }

    impl Consortium {
        /// `n` validators, one institution each, all with every right.
        pub fn new(n: usize) -> Self {
            let mut trusted_cas = Vec::new();
            let mut certs = Vec::new();
            let mut validators = Vec::new();
            for index in 0..n {
                let institution = format!("institution-{index}");
                let ca = testkit::ed25519("ca", index as u64);
                let key = testkit::ed25519("validator", index as u64);
                let id = index as u64 + 1;
                let public_key = key.public_key();
                let signature = ca.sign(&MembershipCertificate::signing_bytes(
                    id,
                    &institution,
                    &public_key,
                    RIGHTS_ALL,
                ));
                trusted_cas.push(TrustedCa {
                    institution: institution.clone(),
                    public_key: ca.public_key(),
                });
                certs.push(MembershipCertificate {
                    validator_id: id,
                    institution,
                    public_key,
                    rights: RIGHTS_ALL,
                    ca_key: ca.public_key(),
                    signature,
                });
                validators.push(key);
            }
            let gate = testkit::ed25519("gate", 0);
            Self {
                genesis: GenesisConfig {
                    chain_id: "rempart-test".into(),
                    trusted_cas,
                    validators: certs,
                    gate_keys: vec![gate.public_key()],
                },
                validators,
                gate,
            }
        }

        /// A certificate for `block_hash` signed by the first `signers` validators.
        pub fn certify(
            &self,
            height: u64,
            block_hash: Hash32,
            signers: usize,
        ) -> CommitCertificate {
            let vote = Vote {
                height,
                round: 0,
                block_hash,
            };
            let message = vote.signing_bytes();
            CommitCertificate {
                vote,
                signatures: self
                    .validators
                    .iter()
                    .take(signers)
                    .enumerate()
                    .map(|(index, key)| VoteSignature {
                        validator: index as u64 + 1,
                        signature: key.sign(&message),
                    })
                    .collect(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::Consortium;
    use super::*;

    #[test]
    fn a_valid_configuration_loads_and_quorum_is_two_thirds_plus_one() {
        for (n, quorum) in [(1, 1), (2, 2), (3, 3), (4, 3), (5, 4), (7, 5)] {
            let consortium = Consortium::new(n);
            let membership = consortium.genesis.verify().unwrap();
            assert_eq!(membership.quorum(), quorum, "n = {n}");
        }
    }

    #[test]
    fn untrusted_or_forged_certificates_are_refused() {
        let mut consortium = Consortium::new(4);
        consortium.genesis.validators[2].rights = RIGHT_VOTE;
        assert!(matches!(
            consortium.genesis.verify(),
            Err(MembershipError::BadMembership { validator: 3, .. })
        ));
        let mut consortium = Consortium::new(4);
        consortium.genesis.trusted_cas.remove(1);
        assert!(consortium.genesis.verify().is_err());
        let mut consortium = Consortium::new(4);
        // The CA of institution 0 is not trusted for institution 1.
        consortium.genesis.trusted_cas[1].institution = "institution-0".into();
        assert!(consortium.genesis.verify().is_err());
    }

    #[test]
    fn certificates_need_a_quorum_of_valid_member_signatures() {
        let consortium = Consortium::new(4);
        let membership = consortium.genesis.verify().unwrap();
        let hash = [5; 32];
        assert!(
            membership
                .verify_certificate(&consortium.certify(1, hash, 3), 1, &hash)
                .is_ok()
        );
        assert!(
            membership
                .verify_certificate(&consortium.certify(1, hash, 2), 1, &hash)
                .is_err()
        );
        assert!(
            membership
                .verify_certificate(&consortium.certify(1, hash, 4), 2, &hash)
                .is_err()
        );
        let mut forged = consortium.certify(1, hash, 3);
        forged.signatures[1].signature[0] ^= 1;
        assert!(membership.verify_certificate(&forged, 1, &hash).is_err());
        let mut duplicated = consortium.certify(1, hash, 2);
        duplicated.signatures.push(duplicated.signatures[1]);
        assert!(
            membership
                .verify_certificate(&duplicated, 1, &hash)
                .is_err()
        );
        let mut stranger = consortium.certify(1, hash, 3);
        stranger.signatures[2].validator = 99;
        assert!(membership.verify_certificate(&stranger, 1, &hash).is_err());
    }

    #[test]
    fn configuration_round_trips_through_json() {
        let consortium = Consortium::new(2);
        let text = serde_json::to_string_pretty(&consortium.genesis).unwrap();
        let back: GenesisConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(back, consortium.genesis);
        assert_eq!(back.hash(), consortium.genesis.hash());
    }
}
