//! Misbehaviour evidence: a validator that signs votes for two different blocks at the same
//! height has equivocated. Given two such signed votes (or two commit certificates), this
//! produces an evidence record that anyone can re-verify from the membership alone, so the
//! consensus integration can record it and the consortium can act on it.

use crate::block::{CommitCertificate, Vote};
use crate::codec::{DecodeError, Reader, Writer};
use crate::crypto::{Signature64, verify_ed25519};
use crate::membership::{Membership, ValidatorId};

/// One validator's signed vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedVote {
    /// What was signed.
    pub vote: Vote,
    /// Who signed.
    pub validator: ValidatorId,
    /// Ed25519 over [`Vote::signing_bytes`].
    pub signature: Signature64,
}

/// Proof that `validator` voted for two different blocks at `height`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EquivocationEvidence {
    /// The culprit.
    pub validator: ValidatorId,
    /// The height.
    pub height: u64,
    /// One vote (the one with the smaller block hash, so evidence is canonical).
    pub first: SignedVote,
    /// The other.
    pub second: SignedVote,
}

impl EquivocationEvidence {
    /// Canonical bytes, for storing or gossiping the record.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u64(self.validator);
        w.u64(self.height);
        for vote in [&self.first, &self.second] {
            w.u32(vote.vote.round);
            w.bytes(&vote.vote.block_hash);
            w.bytes(&vote.signature);
        }
        w.into_bytes()
    }

    /// Reads [`EquivocationEvidence::encode`]'s bytes back; never panics. Decoding does not
    /// verify: call [`EquivocationEvidence::verify`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let validator = r.u64("evidence.validator")?;
        let height = r.u64("evidence.height")?;
        let vote = |r: &mut Reader<'_>| -> Result<SignedVote, DecodeError> {
            Ok(SignedVote {
                vote: Vote {
                    height,
                    round: r.u32("evidence.round")?,
                    block_hash: r.array("evidence.block_hash")?,
                },
                validator,
                signature: r.array("evidence.signature")?,
            })
        };
        let first = vote(&mut r)?;
        let second = vote(&mut r)?;
        r.finish()?;
        Ok(EquivocationEvidence {
            validator,
            height,
            first,
            second,
        })
    }

    /// Re-checks the evidence against the membership.
    pub fn verify(&self, membership: &Membership) -> bool {
        equivocation(&self.first, &self.second, membership).as_ref() == Some(self)
    }
}

/// Evidence if `a` and `b` are valid votes by the same member for different blocks at the same
/// height; `None` otherwise (including when either signature does not verify, so forged votes
/// cannot frame an honest validator).
pub fn equivocation(
    a: &SignedVote,
    b: &SignedVote,
    membership: &Membership,
) -> Option<EquivocationEvidence> {
    if a.validator != b.validator
        || a.vote.height != b.vote.height
        || a.vote.block_hash == b.vote.block_hash
    {
        return None;
    }
    let member = membership.member(a.validator)?;
    for vote in [a, b] {
        if !verify_ed25519(
            &member.public_key,
            &vote.vote.signing_bytes(),
            &vote.signature,
        ) {
            return None;
        }
    }
    let (first, second) = if a.vote.block_hash < b.vote.block_hash {
        (*a, *b)
    } else {
        (*b, *a)
    };
    Some(EquivocationEvidence {
        validator: a.validator,
        height: a.vote.height,
        first,
        second,
    })
}

/// Every validator that signed both certificates, if they certify different blocks at the same
/// height (which a correct consortium never produces).
pub fn equivocations_between(
    a: &CommitCertificate,
    b: &CommitCertificate,
    membership: &Membership,
) -> Vec<EquivocationEvidence> {
    let mut evidence = Vec::new();
    for left in &a.signatures {
        for right in &b.signatures {
            if left.validator != right.validator {
                continue;
            }
            let first = SignedVote {
                vote: a.vote,
                validator: left.validator,
                signature: left.signature,
            };
            let second = SignedVote {
                vote: b.vote,
                validator: right.validator,
                signature: right.signature,
            };
            if let Some(found) = equivocation(&first, &second, membership) {
                evidence.push(found);
            }
        }
    }
    evidence
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::fixture::Consortium;

    #[test]
    fn two_certificates_for_one_height_convict_the_validators_in_both() {
        let consortium = Consortium::new(4);
        let membership = consortium.genesis.verify().unwrap();
        let a = consortium.certify(3, [1; 32], 3);
        let mut b = consortium.certify(3, [2; 32], 4);
        // Validator 1 is in both; so are 2 and 3.
        let evidence = equivocations_between(&a, &b, &membership);
        let culprits: Vec<_> = evidence.iter().map(|e| e.validator).collect();
        assert_eq!(culprits, vec![1, 2, 3]);
        assert!(
            evidence
                .iter()
                .all(|e| e.verify(&membership) && e.height == 3)
        );
        let bytes = evidence[0].encode();
        assert_eq!(EquivocationEvidence::decode(&bytes).unwrap(), evidence[0]);
        assert!(EquivocationEvidence::decode(&bytes[..bytes.len() - 1]).is_err());
        // Same block: no evidence. Different heights: no evidence.
        assert!(equivocations_between(&a, &a, &membership).is_empty());
        let c = consortium.certify(4, [2; 32], 4);
        assert!(equivocations_between(&a, &c, &membership).is_empty());
        // A forged signature frames nobody.
        for signature in &mut b.signatures {
            signature.signature[5] ^= 1;
        }
        assert!(equivocations_between(&a, &b, &membership).is_empty());
    }
}
