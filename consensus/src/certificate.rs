//! Commit certificates both ways: Malachite's (precommit signatures by address) into
//! settlement's (the same signatures by validator id, sorted), and back for block sync. The
//! signatures are the same bytes, because a precommit signs settlement's vote
//! (`crate::signing`); nothing is re-signed.

use malachitebft_core_types::{
    CommitCertificate as McCertificate, ExtendedCommitCertificate, ExtendedCommitSignature, Round,
};
use settlement::block::{CommitCertificate, Vote, VoteSignature};

use crate::context::{Address, BlockHash, Height, LedgerContext, Signature};

/// Why a Malachite certificate cannot become a ledger certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// A decision always has a defined round.
    #[error("commit certificate without a round")]
    NoRound,
    /// Two signatures by one validator.
    #[error("commit certificate has two signatures by validator {0}")]
    Duplicate(u64),
}

/// The ledger certificate carrying the signatures of `certificate`.
pub fn to_ledger(
    certificate: &McCertificate<LedgerContext>,
) -> Result<CommitCertificate, CertificateError> {
    let round = certificate
        .round
        .as_u32()
        .ok_or(CertificateError::NoRound)?;
    let mut signatures: Vec<VoteSignature> = certificate
        .commit_signatures
        .iter()
        .map(|s| VoteSignature {
            validator: s.address.0,
            signature: s.signature.0,
        })
        .collect();
    signatures.sort_by_key(|s| s.validator);
    if let Some(pair) = signatures
        .windows(2)
        .find(|pair| pair[0].validator == pair[1].validator)
    {
        return Err(CertificateError::Duplicate(pair[0].validator));
    }
    Ok(CommitCertificate {
        vote: Vote {
            height: certificate.height.0,
            round,
            block_hash: certificate.value_id.0,
        },
        signatures,
    })
}

/// Malachite's certificate for a stored block, for serving block sync.
pub fn from_ledger(certificate: &CommitCertificate) -> ExtendedCommitCertificate<LedgerContext> {
    ExtendedCommitCertificate {
        height: Height(certificate.vote.height),
        round: Round::new(certificate.vote.round),
        value_id: BlockHash(certificate.vote.block_hash),
        commit_signatures: certificate
            .signatures
            .iter()
            .map(|s| {
                ExtendedCommitSignature::new(Address(s.validator), Signature(s.signature), None)
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use malachitebft_core_types::CommitSignature;

    #[test]
    fn certificates_convert_both_ways_sorted_by_validator() {
        let mc = McCertificate::<LedgerContext> {
            height: Height(4),
            round: Round::new(1),
            value_id: BlockHash([7; 32]),
            commit_signatures: vec![
                CommitSignature::new(Address(3), Signature([3; 64])),
                CommitSignature::new(Address(1), Signature([1; 64])),
            ],
        };
        let ledger = to_ledger(&mc).unwrap();
        assert_eq!(ledger.vote.height, 4);
        assert_eq!(ledger.vote.round, 1);
        assert_eq!(
            ledger
                .signatures
                .iter()
                .map(|s| s.validator)
                .collect::<Vec<_>>(),
            vec![1, 3]
        );
        let back = from_ledger(&ledger);
        assert_eq!(back.value_id, mc.value_id);
        assert_eq!(back.commit_signatures.len(), 2);
        let mut twice = mc.clone();
        twice
            .commit_signatures
            .push(CommitSignature::new(Address(1), Signature([9; 64])));
        assert_eq!(to_ledger(&twice), Err(CertificateError::Duplicate(1)));
        let mut nil = mc;
        nil.round = Round::Nil;
        assert_eq!(to_ledger(&nil), Err(CertificateError::NoRound));
    }
}
