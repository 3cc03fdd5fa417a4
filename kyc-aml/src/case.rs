//! Cases: an alert (a held or rejected decision, a screening hit) opens a case, which an
//! analyst investigates and closes as confirmed or false positive. While a case about a
//! transfer is open the transfer stays held; closing it as a false positive releases the
//! transfer, closing it as confirmed refuses it (and may lead to a goAML report).
//!
//! The life cycle is a state machine with time and actor coming in with each command;
//! transitions it does not allow are refusals with stable codes (3xxx).
//!
//! ```text
//! pending --assign--> pending (assigned) --start--> investigating --close--> closed
//!                                                     (confirmed | false positive)
//! ```

use serde::{Deserialize, Serialize};

use crate::customer::{CustomerId, TimestampUs};
use crate::gate::Decision;
use crate::gate::decision::Outcome;
use crate::limits::{CASE_ATTACHMENTS_MAX, CASE_NOTES_MAX, NOTE_LEN_MAX, URI_LEN_MAX};
use crate::reject::{Refusal, Reject};
use crate::validate::field_ok;

/// Case id, assigned by the caller (the store's sequence or an idempotency key).
pub type CaseId = u64;

/// Where a case is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum CaseState {
    /// Opened, not yet investigated.
    Pending = 1,
    /// An analyst is on it.
    Investigating = 2,
    /// Closed: the suspicion is confirmed.
    ClosedConfirmed = 3,
    /// Closed: the alert was a false positive.
    ClosedFalsePositive = 4,
}

impl CaseState {
    /// From the stored byte.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Pending,
            2 => Self::Investigating,
            3 => Self::ClosedConfirmed,
            4 => Self::ClosedFalsePositive,
            _ => return None,
        })
    }

    /// Whether the case is closed.
    pub fn is_closed(self) -> bool {
        matches!(self, Self::ClosedConfirmed | Self::ClosedFalsePositive)
    }
}

/// How a case ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// The suspicion holds.
    Confirmed,
    /// The alert was wrong.
    FalsePositive,
}

/// The hold on the case's transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum HoldState {
    /// The case is not about one transfer.
    NoTransfer = 0,
    /// The transfer is held while the case is open.
    Held = 1,
    /// Released: the transfer may settle.
    Released = 2,
    /// Refused: the transfer never settles.
    Refused = 3,
}

impl HoldState {
    /// From the stored byte.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::NoTransfer,
            1 => Self::Held,
            2 => Self::Released,
            3 => Self::Refused,
            _ => return None,
        })
    }
}

/// A note by an analyst.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// Position on the case, from 0.
    pub seq: u32,
    /// Who wrote it.
    pub author: String,
    /// When.
    pub at_us: TimestampUs,
    /// The text.
    pub text: String,
}

/// An attachment by reference: the document lives elsewhere, the case keeps its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Position on the case, from 0.
    pub seq: u32,
    /// SHA-256 of the document.
    pub sha256: [u8; 32],
    /// Where it is (document store URI).
    pub uri: String,
    /// Who attached it.
    pub added_by: String,
    /// When.
    pub at_us: TimestampUs,
}

/// A case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    /// Id.
    pub id: CaseId,
    /// The customer it is about.
    pub customer: CustomerId,
    /// The transfer, if the alert came from one.
    pub transfer_id: Option<u128>,
    /// The decision hash of that transfer's decision.
    pub decision_hash: Option<[u8; 32]>,
    /// Reject codes of the alert.
    pub alert_codes: Vec<u16>,
    /// When opened.
    pub opened_at_us: TimestampUs,
    /// State.
    pub state: CaseState,
    /// Analyst in charge.
    pub assignee: Option<String>,
    /// The hold on the transfer.
    pub hold: HoldState,
    /// Notes, in order.
    pub notes: Vec<Note>,
    /// Attachments, in order.
    pub attachments: Vec<Attachment>,
    /// When closed.
    pub closed_at_us: Option<TimestampUs>,
}

impl Case {
    /// Opens a pending case; a transfer named here is held.
    pub fn open(
        id: CaseId,
        customer: CustomerId,
        transfer_id: Option<u128>,
        decision_hash: Option<[u8; 32]>,
        alert_codes: Vec<u16>,
        now: TimestampUs,
    ) -> Case {
        Case {
            id,
            customer,
            transfer_id,
            decision_hash,
            alert_codes,
            opened_at_us: now,
            state: CaseState::Pending,
            assignee: None,
            hold: if transfer_id.is_some() {
                HoldState::Held
            } else {
                HoldState::NoTransfer
            },
            notes: Vec::new(),
            attachments: Vec::new(),
            closed_at_us: None,
        }
    }

    /// Opens a case for a held or rejected decision; `None` for an approval (no alert).
    pub fn open_from_decision(id: CaseId, d: &Decision, now: TimestampUs) -> Option<Case> {
        if d.outcome() == Outcome::Approve {
            return None;
        }
        let mut codes: Vec<u16> = d.record.reasons.iter().map(|r| r.code).collect();
        codes.sort_unstable();
        codes.dedup();
        let mut c = Case::open(
            id,
            d.record.customer,
            Some(d.record.transfer_id),
            Some(d.signed.hash),
            codes,
            now,
        );
        if d.outcome() == Outcome::Reject {
            // A rejected transfer is refused already; the case investigates the customer.
            c.hold = HoldState::Refused;
        }
        Some(c)
    }

    fn open_or_refuse(&self) -> Result<(), Refusal> {
        if self.state.is_closed() {
            return Err(Refusal::new(
                Reject::CaseClosed,
                format!("case {}", self.id),
            ));
        }
        Ok(())
    }

    /// Assigns (or re-assigns) the case. The assignment is kept as a note by the analyst, so
    /// the notes are the case's full, timed audit trail.
    pub fn assign(&mut self, analyst: &str, now: TimestampUs) -> Result<(), Refusal> {
        self.open_or_refuse()?;
        if !field_ok(analyst) {
            return Err(Refusal::new(Reject::AssigneeInvalid, "assignee"));
        }
        self.push_note(analyst, &format!("assigned to {analyst}"), now)?;
        self.assignee = Some(analyst.to_string());
        Ok(())
    }

    /// Pending → investigating; needs an assignee.
    pub fn start_investigation(&mut self, now: TimestampUs) -> Result<(), Refusal> {
        self.open_or_refuse()?;
        if self.state != CaseState::Pending {
            return Err(Refusal::new(
                Reject::InvalidCaseTransition,
                "investigating already",
            ));
        }
        if self.assignee.is_none() {
            return Err(Refusal::new(
                Reject::CaseNotAssigned,
                format!("case {}", self.id),
            ));
        }
        let analyst = self.assignee.clone().unwrap_or_default();
        self.push_note(&analyst, "investigation started", now)?;
        self.state = CaseState::Investigating;
        Ok(())
    }

    /// Adds a note.
    pub fn add_note(
        &mut self,
        author: &str,
        text: &str,
        now: TimestampUs,
    ) -> Result<&Note, Refusal> {
        self.open_or_refuse()?;
        self.push_note(author, text, now)
    }

    fn push_note(&mut self, author: &str, text: &str, now: TimestampUs) -> Result<&Note, Refusal> {
        if !field_ok(author) {
            return Err(Refusal::new(Reject::AssigneeInvalid, "author"));
        }
        // Notes may span lines; other control characters (NUL breaks PostgreSQL text, XML
        // forbids most) are refused.
        let bad_char = text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t');
        if text.trim().is_empty() || text.len() > NOTE_LEN_MAX || bad_char {
            return Err(Refusal::new(Reject::NoteInvalid, "text"));
        }
        if self.notes.len() >= CASE_NOTES_MAX {
            return Err(Refusal::new(
                Reject::TooManyNotes,
                format!("case {}", self.id),
            ));
        }
        let seq = self.notes.len() as u32;
        self.notes.push(Note {
            seq,
            author: author.to_string(),
            at_us: now,
            text: text.to_string(),
        });
        Ok(&self.notes[self.notes.len() - 1])
    }

    /// Attaches a document by reference.
    pub fn attach(
        &mut self,
        sha256: [u8; 32],
        uri: &str,
        by: &str,
        now: TimestampUs,
    ) -> Result<&Attachment, Refusal> {
        self.open_or_refuse()?;
        let uri_ok = !uri.is_empty()
            && uri.len() <= URI_LEN_MAX
            && uri.contains(':')
            && !uri.chars().any(|c| c.is_control() || c.is_whitespace());
        if !uri_ok || sha256 == [0; 32] {
            return Err(Refusal::new(Reject::AttachmentInvalid, "uri or hash"));
        }
        if !field_ok(by) {
            return Err(Refusal::new(Reject::AssigneeInvalid, "added_by"));
        }
        if self.attachments.len() >= CASE_ATTACHMENTS_MAX {
            return Err(Refusal::new(
                Reject::TooManyAttachments,
                format!("case {}", self.id),
            ));
        }
        let seq = self.attachments.len() as u32;
        self.attachments.push(Attachment {
            seq,
            sha256,
            uri: uri.to_string(),
            added_by: by.to_string(),
            at_us: now,
        });
        Ok(&self.attachments[self.attachments.len() - 1])
    }

    /// Investigating → closed, with a rationale (kept as the last note). A false positive
    /// releases the held transfer, a confirmation refuses it.
    pub fn close(
        &mut self,
        disposition: Disposition,
        rationale: &str,
        by: &str,
        now: TimestampUs,
    ) -> Result<(), Refusal> {
        self.open_or_refuse()?;
        if self.state != CaseState::Investigating {
            return Err(Refusal::new(
                Reject::InvalidCaseTransition,
                "only an investigated case closes",
            ));
        }
        if rationale.trim().is_empty() {
            return Err(Refusal::new(Reject::RationaleMissing, "rationale"));
        }
        self.push_note(by, rationale, now)?;
        self.state = match disposition {
            Disposition::Confirmed => CaseState::ClosedConfirmed,
            Disposition::FalsePositive => CaseState::ClosedFalsePositive,
        };
        if self.hold == HoldState::Held {
            self.hold = match disposition {
                Disposition::Confirmed => HoldState::Refused,
                Disposition::FalsePositive => HoldState::Released,
            };
        }
        self.closed_at_us = Some(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn life_cycle_and_hold() {
        let mut c = Case::open(1, 7, Some(99), Some([1; 32]), vec![2010], 10);
        assert_eq!(c.hold, HoldState::Held);
        assert_eq!(
            c.start_investigation(11).unwrap_err().reject,
            Reject::CaseNotAssigned
        );
        assert_eq!(
            c.close(Disposition::FalsePositive, "ok", "ana", 11)
                .unwrap_err()
                .reject,
            Reject::InvalidCaseTransition
        );
        c.assign("ana", 12).unwrap();
        c.start_investigation(13).unwrap();
        assert_eq!(
            c.start_investigation(13).unwrap_err().reject,
            Reject::InvalidCaseTransition
        );
        c.add_note("ana", "customer explained the payment", 14)
            .unwrap();
        c.attach([5; 32], "s3://evidence/invoice.pdf", "ana", 15)
            .unwrap();
        assert_eq!(
            c.close(Disposition::FalsePositive, " ", "ana", 16)
                .unwrap_err()
                .reject,
            Reject::RationaleMissing
        );
        c.close(Disposition::FalsePositive, "invoice matches", "ana", 16)
            .unwrap();
        assert_eq!(c.state, CaseState::ClosedFalsePositive);
        assert_eq!(c.hold, HoldState::Released);
        // Assignment, start, the analyst's note and the closing rationale.
        assert_eq!(c.notes.len(), 4);
        assert_eq!(c.notes[0].text, "assigned to ana");
        assert_eq!(
            c.add_note("ana", "late", 17).unwrap_err().reject,
            Reject::CaseClosed
        );
        assert_eq!(c.assign("bob", 17).unwrap_err().reject, Reject::CaseClosed);
    }

    #[test]
    fn confirmed_refuses_the_transfer_and_inputs_are_bounded() {
        let mut c = Case::open(2, 7, Some(5), None, vec![], 0);
        c.assign("ana", 1).unwrap();
        c.start_investigation(1).unwrap();
        assert_eq!(
            c.add_note("ana", "", 2).unwrap_err().reject,
            Reject::NoteInvalid
        );
        assert_eq!(
            c.add_note("ana", &"x".repeat(NOTE_LEN_MAX + 1), 2)
                .unwrap_err()
                .reject,
            Reject::NoteInvalid
        );
        assert_eq!(
            c.attach([0; 32], "s3://x", "ana", 2).unwrap_err().reject,
            Reject::AttachmentInvalid
        );
        assert_eq!(
            c.attach([1; 32], "no scheme", "ana", 2).unwrap_err().reject,
            Reject::AttachmentInvalid
        );
        c.close(Disposition::Confirmed, "structuring confirmed", "ana", 3)
            .unwrap();
        assert_eq!(c.hold, HoldState::Refused);
        assert_eq!(c.state, CaseState::ClosedConfirmed);
    }
}
