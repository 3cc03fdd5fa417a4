//! Misbehaviour Malachite observes during a height, recorded: a validator that signs two
//! precommits for different blocks at one height has equivocated. Malachite's vote keeper
//! collects such pairs; this module turns each into settlement's
//! [`EquivocationEvidence`] (a precommit signs exactly settlement's `Vote::signing_bytes`, so
//! the pair re-verifies from the membership alone, without Malachite) and appends it to a
//! bounded, synced log beside the WAL, where operators and the consortium find it.
//!
//! A pair that does not verify (a forged signature, votes of two validators) yields nothing, so
//! no one can frame an honest validator. Prevote equivocations are not provable with ledger
//! signatures (they sign under the consensus domain) and are only counted by the caller.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use malachitebft_core_types::{NilOrVal, SignedVote, VoteType};
use settlement::block::Vote as LedgerVote;
use settlement::evidence::{EquivocationEvidence, SignedVote as LedgerSignedVote, equivocation};
use settlement::membership::Membership;

use crate::context::LedgerContext;

/// The evidence file in a validator's WAL directory: one record a line, hex of
/// [`EquivocationEvidence::encode`].
pub const EVIDENCE_FILE: &str = "evidence.log";

/// Records kept at most; later ones are refused (the first few already prove the fault).
pub const EVIDENCE_RECORDS_MAX: usize = 10_000;

/// The invalid-proposal file in a validator's WAL directory: one JSON object a line.
pub const INVALID_PROPOSALS_FILE: &str = "invalid-proposals.log";

/// A proposed block that holds an entry refused for want of authority (an ungated transfer,
/// a forged gate or controller signature). An honest proposer executes its block before
/// offering it and leaves such batches out, so the block's builder is at fault; the
/// validators refuse the block (prevote nil) and record this. The entry is named by block
/// hash and position, so anyone holding the proposal can re-check it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InvalidProposal {
    /// The block's height.
    pub height: u64,
    /// The validator that built the block (its header's proposer).
    pub proposer: u64,
    /// The block's hash, hex.
    pub block_hash: String,
    /// Index of the batch in the block.
    pub batch: usize,
    /// Index of the entry in the batch.
    pub entry: usize,
    /// The refused transfer's id, hex.
    pub transfer_id: String,
    /// Settlement's result code.
    pub code: u32,
    /// The result's name.
    pub reason: String,
}

/// A signed consensus vote as the ledger's signed vote, if it is a precommit for a block.
fn as_ledger_vote(vote: &SignedVote<LedgerContext>) -> Option<LedgerSignedVote> {
    let v = &vote.message;
    let (VoteType::Precommit, NilOrVal::Val(hash), Some(round)) =
        (v.vote_type, &v.value, v.round.as_u32())
    else {
        return None;
    };
    Some(LedgerSignedVote {
        vote: LedgerVote {
            height: v.height.0,
            round,
            block_hash: hash.0,
        },
        validator: v.validator.0,
        signature: vote.signature.0,
    })
}

/// The ledger's evidence for a pair of conflicting precommits, if both verify against
/// `membership`; `None` for prevotes, nil votes, forged or unrelated pairs.
pub fn precommit_equivocation(
    a: &SignedVote<LedgerContext>,
    b: &SignedVote<LedgerContext>,
    membership: &Membership,
) -> Option<EquivocationEvidence> {
    equivocation(&as_ledger_vote(a)?, &as_ledger_vote(b)?, membership)
}

/// An append-only, bounded, synced log of one record a line: equivocation evidence
/// ([`EvidenceLog::open`]) or invalid proposals ([`EvidenceLog::open_invalid_proposals`]).
#[derive(Debug)]
pub struct EvidenceLog {
    path: PathBuf,
    records: usize,
}

impl EvidenceLog {
    /// Opens (or creates) the equivocation evidence log in `dir`.
    pub fn open(dir: &Path) -> std::io::Result<EvidenceLog> {
        Self::open_file(dir.join(EVIDENCE_FILE))
    }

    /// Opens (or creates) the invalid-proposal log in `dir`.
    pub fn open_invalid_proposals(dir: &Path) -> std::io::Result<EvidenceLog> {
        Self::open_file(dir.join(INVALID_PROPOSALS_FILE))
    }

    fn open_file(path: PathBuf) -> std::io::Result<EvidenceLog> {
        let records = match File::open(&path) {
            Ok(file) => BufReader::new(file).lines().count(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(EvidenceLog { path, records })
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.records
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Appends `evidence` and syncs it; `false` when the log is full.
    pub fn record(&mut self, evidence: &EquivocationEvidence) -> std::io::Result<bool> {
        self.append_line(&hex::encode(evidence.encode()))
    }

    /// Appends an invalid proposal (one JSON line) and syncs it; `false` when the log is full.
    pub fn record_invalid_proposal(&mut self, record: &InvalidProposal) -> std::io::Result<bool> {
        let line = serde_json::to_string(record).map_err(std::io::Error::other)?;
        self.append_line(&line)
    }

    fn append_line(&mut self, line: &str) -> std::io::Result<bool> {
        if self.records >= EVIDENCE_RECORDS_MAX {
            return Ok(false);
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        writeln!(file, "{line}")?;
        file.sync_data()?;
        self.records += 1;
        Ok(true)
    }

    /// Every line of the log, each parsed by `parse` (for operators and tests).
    fn read_lines<T, E>(&self, parse: impl Fn(&str) -> Result<T, E>) -> std::io::Result<Vec<T>>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        BufReader::new(file)
            .lines()
            .map(|line| {
                parse(line?.trim())
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
            })
            .collect()
    }

    /// Every invalid-proposal record (for operators and tests).
    pub fn read_invalid_proposals(&self) -> std::io::Result<Vec<InvalidProposal>> {
        self.read_lines(|line| serde_json::from_str(line))
    }

    /// Every equivocation record, decoded from hex (for operators and tests).
    pub fn read_all(&self) -> std::io::Result<Vec<Vec<u8>>> {
        self.read_lines(|line| hex::decode(line))
    }
}

#[cfg(test)]
mod tests {
    use malachitebft_core_types::{Round, SignedMessage};
    use settlement::membership::fixture::Consortium;

    use super::*;
    use crate::context::{Address, BlockHash, Height, Signature, Vote};
    use crate::signing::vote_signing_bytes;

    fn signed(
        consortium: &Consortium,
        index: usize,
        vote_type: VoteType,
        value: NilOrVal<BlockHash>,
    ) -> SignedVote<LedgerContext> {
        let vote = Vote {
            vote_type,
            height: Height(7),
            round: Round::new(0),
            value,
            validator: Address(index as u64 + 1),
        };
        let signature = consortium.validators[index].sign(&vote_signing_bytes(&vote));
        SignedMessage::new(vote, Signature(signature))
    }

    #[test]
    fn conflicting_precommits_become_evidence_that_re_verifies() {
        let consortium = Consortium::new(4);
        let membership = consortium.genesis.verify().expect("membership");
        let a = signed(
            &consortium,
            2,
            VoteType::Precommit,
            NilOrVal::Val(BlockHash([1; 32])),
        );
        let b = signed(
            &consortium,
            2,
            VoteType::Precommit,
            NilOrVal::Val(BlockHash([2; 32])),
        );
        let evidence = precommit_equivocation(&a, &b, &membership).expect("evidence");
        assert_eq!((evidence.validator, evidence.height), (3, 7));
        assert!(evidence.verify(&membership));
        // The same in either order (canonical evidence).
        assert_eq!(precommit_equivocation(&b, &a, &membership), Some(evidence));
    }

    #[test]
    fn no_evidence_from_forgeries_prevotes_or_two_validators() {
        let consortium = Consortium::new(4);
        let membership = consortium.genesis.verify().expect("membership");
        let val = |n: u8| NilOrVal::Val(BlockHash([n; 32]));
        let a = signed(&consortium, 1, VoteType::Precommit, val(1));
        // Validator 3 signs a vote that claims to be validator 2's: it cannot frame it.
        let mut forged = signed(&consortium, 2, VoteType::Precommit, val(2));
        forged.message.validator = Address(2);
        assert_eq!(precommit_equivocation(&a, &forged, &membership), None);
        let other = signed(&consortium, 2, VoteType::Precommit, val(2));
        assert_eq!(precommit_equivocation(&a, &other, &membership), None);
        let p1 = signed(&consortium, 1, VoteType::Prevote, val(1));
        let p2 = signed(&consortium, 1, VoteType::Prevote, val(2));
        assert_eq!(precommit_equivocation(&p1, &p2, &membership), None);
        let nil = signed(&consortium, 1, VoteType::Precommit, NilOrVal::Nil);
        assert_eq!(precommit_equivocation(&a, &nil, &membership), None);
    }

    #[test]
    fn the_log_keeps_records_across_reopening() {
        let consortium = Consortium::new(4);
        let membership = consortium.genesis.verify().expect("membership");
        let val = |n: u8| NilOrVal::Val(BlockHash([n; 32]));
        let evidence = precommit_equivocation(
            &signed(&consortium, 0, VoteType::Precommit, val(1)),
            &signed(&consortium, 0, VoteType::Precommit, val(2)),
            &membership,
        )
        .expect("evidence");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = EvidenceLog::open(dir.path()).expect("open");
        assert!(log.is_empty());
        assert!(log.record(&evidence).expect("record"));
        let log = EvidenceLog::open(dir.path()).expect("reopen");
        assert_eq!(log.len(), 1);
        assert_eq!(log.read_all().expect("read"), vec![evidence.encode()]);
    }

    #[test]
    fn invalid_proposals_round_trip_through_their_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = EvidenceLog::open_invalid_proposals(dir.path()).expect("open");
        let record = InvalidProposal {
            height: 9,
            proposer: 4,
            block_hash: "ab".repeat(32),
            batch: 1,
            entry: 0,
            transfer_id: "0f".into(),
            code: 6,
            reason: "gate decision missing".into(),
        };
        assert!(log.record_invalid_proposal(&record).expect("record"));
        let log = EvidenceLog::open_invalid_proposals(dir.path()).expect("reopen");
        assert_eq!(log.len(), 1);
        assert_eq!(log.read_invalid_proposals().expect("read"), vec![record]);
        // The equivocation log beside it is a different file.
        assert!(EvidenceLog::open(dir.path()).expect("open").is_empty());
    }
}
