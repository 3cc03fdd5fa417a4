//! Business refusals of the crate: one enum of stable numeric codes, grouped by thousands
//! (1xxx identity and customers, 2xxx the gate, 3xxx cases, 4xxx rule configuration,
//! 5xxx travel rule, 6xxx reports, 7xxx erasure), and [`Refusal`], a code with the detail that
//! says which field or value was refused.
//!
//! Codes are never renumbered or reused: clients, analysts and regulators key on them. A
//! refusal is a value; `Err` ([`crate::KycError`]) is kept for failures of the machine.

use serde::{Deserialize, Serialize};

macro_rules! rejects {
    ($( $(#[$doc:meta])* $name:ident = $code:literal, $msg:literal; )*) => {
        /// A stable refusal code. See the module docs for the numbering.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[repr(u16)]
        #[non_exhaustive]
        pub enum Reject {
            $( $(#[$doc])* $name = $code, )*
        }

        impl Reject {
            /// The stable numeric code.
            pub fn code(self) -> u16 {
                self as u16
            }

            /// A short English message for people.
            pub fn message(self) -> &'static str {
                match self {
                    $( Reject::$name => $msg, )*
                }
            }

            /// The variant with this code, if any (codes read back from storage).
            pub fn from_code(code: u16) -> Option<Reject> {
                match code {
                    $( $code => Some(Reject::$name), )*
                    _ => None,
                }
            }

            /// Every code, in numeric order (for documentation and tests).
            pub const ALL: &'static [Reject] = &[ $( Reject::$name, )* ];
        }
    };
}

rejects! {
    /// The attestation document is not valid JSON of the expected shape.
    AttestationMalformed = 1001, "attestation is malformed";
    /// The attestation document exceeds `ATTESTATION_BYTES_MAX`.
    AttestationTooLarge = 1002, "attestation is too large";
    /// A claim has an invalid value (length, country code, date).
    AttestationFieldInvalid = 1003, "attestation claim is invalid";
    /// The issuer is not configured as trusted.
    UnknownIssuer = 1004, "attestation issuer is not trusted";
    /// The Ed25519 signature does not verify over the canonical claims.
    BadSignature = 1005, "attestation signature does not verify";
    /// The issuer was revoked at or before the attestation was issued or presented.
    IssuerRevoked = 1006, "attestation issuer is revoked";
    /// The attestation's expiry has passed.
    AttestationExpired = 1007, "attestation has expired";
    /// The attestation claims to be issued in the future.
    AttestationNotYetValid = 1008, "attestation is not yet valid";
    /// The attestation is about another customer.
    AttestationSubjectMismatch = 1009, "attestation subject is another customer";
    /// The issuer registry holds `ISSUERS_MAX` issuers already.
    IssuerRegistryFull = 1010, "too many trusted issuers";
    /// The issuer's public key is not a valid Ed25519 key.
    IssuerKeyInvalid = 1011, "issuer public key is invalid";
    /// An issuer with this id is configured already.
    DuplicateIssuer = 1012, "issuer is configured already";
    /// A beneficial owner's share is out of range or the shares add up past 100 %.
    BeneficialOwnerShareInvalid = 1101, "beneficial owner share is invalid";
    /// A legal entity names no beneficial owner of 25 % or more and no senior managing official.
    BeneficialOwnersMissing = 1102, "legal entity has no beneficial owner";
    /// More than `BENEFICIAL_OWNERS_MAX` beneficial owners.
    TooManyBeneficialOwners = 1103, "too many beneficial owners";
    /// A customer field has an invalid value.
    CustomerFieldInvalid = 1104, "customer field is invalid";
    /// A beneficial owner of 25 % or more is not verified yet.
    BeneficialOwnerUnverified = 1105, "beneficial owner is not verified";

    /// The gate knows no customer with this id.
    UnknownCustomer = 2001, "unknown customer";
    /// Basic customer due diligence is not complete: nothing moves.
    CddIncomplete = 2002, "customer due diligence is incomplete";
    /// The customer is high risk or a PEP and enhanced due diligence is not complete.
    EddRequired = 2003, "enhanced due diligence is required";
    /// The transfer would exceed the tier's limit over the last 24 hours.
    DailyLimitExceeded = 2004, "daily limit exceeded";
    /// The transfer would exceed the tier's limit over the last 30 days.
    MonthlyLimitExceeded = 2005, "30-day limit exceeded";
    /// The customer's personal data was erased; the account is closed.
    CustomerErased = 2006, "customer record is erased";
    /// The customer's monitoring history is full; the transfer needs a person.
    HistoryFull = 2007, "monitoring history is full";
    /// The counterparty name matches a sanctions or PEP list entry.
    SanctionsMatch = 2008, "counterparty matches a sanctions list entry";
    /// The counterparty name may match a list entry; a person must decide.
    SanctionsPossibleMatch = 2009, "counterparty may match a sanctions list entry";
    /// The monitoring score reached the review threshold.
    MonitoringReview = 2010, "monitoring score requires review";
    /// The monitoring score reached the reject threshold.
    MonitoringReject = 2011, "monitoring score requires rejection";
    /// An external transfer carries no travel-rule data.
    TravelRuleMissing = 2012, "travel-rule data is missing";
    /// An external transfer's travel-rule data is incomplete or malformed.
    TravelRuleIncomplete = 2013, "travel-rule data is incomplete or malformed";
    /// The transfer itself is malformed (zero amount, over-long field, bad country).
    InvalidTransfer = 2014, "transfer is invalid";
    /// A monitoring rule fired (the detail names the rule); adds to the score.
    RuleHit = 2015, "monitoring rule fired";

    /// The case is closed; nothing more can change.
    CaseClosed = 3001, "case is closed";
    /// The transition is not allowed from the case's current state.
    InvalidCaseTransition = 3002, "invalid case transition";
    /// The case has no assignee; it cannot be investigated.
    CaseNotAssigned = 3003, "case is not assigned";
    /// The note is empty or longer than `NOTE_LEN_MAX`.
    NoteInvalid = 3004, "note is empty or too long";
    /// The case holds `CASE_NOTES_MAX` notes already.
    TooManyNotes = 3005, "too many notes on the case";
    /// The attachment's hash or URI is invalid.
    AttachmentInvalid = 3006, "attachment reference is invalid";
    /// The case holds `CASE_ATTACHMENTS_MAX` attachments already.
    TooManyAttachments = 3007, "too many attachments on the case";
    /// The assignee name is empty or too long.
    AssigneeInvalid = 3008, "assignee is invalid";
    /// Closing needs a rationale note.
    RationaleMissing = 3009, "closing a case needs a rationale";
    /// No case has this id.
    UnknownCase = 3010, "unknown case";

    /// The rule configuration is not valid JSON of the expected shape.
    RuleConfigMalformed = 4001, "rule configuration is malformed";
    /// The rule configuration exceeds `RULE_CONFIG_BYTES_MAX`.
    RuleConfigTooLarge = 4002, "rule configuration is too large";
    /// A rule has an invalid parameter (zero threshold, window too long, score too high).
    RuleInvalid = 4003, "rule parameter is invalid";
    /// Two rules share an id.
    DuplicateRuleId = 4004, "duplicate rule id";
    /// More than `RULES_MAX` rules.
    TooManyRules = 4005, "too many rules";
    /// The review threshold is zero or above the reject threshold.
    ScoreThresholdsInvalid = 4006, "score thresholds are invalid";
    /// The version id is empty or too long.
    RuleVersionInvalid = 4007, "rule set version is invalid";

    /// The travel-rule document is not valid JSON of the IVMS101 subset.
    TravelRuleMalformed = 5001, "travel-rule data is malformed";
    /// The travel-rule document exceeds `TRAVEL_RULE_BYTES_MAX`.
    TravelRuleTooLarge = 5002, "travel-rule data is too large";
    /// The originator has no name.
    OriginatorNameMissing = 5101, "originator name is missing";
    /// The originator has no account number.
    OriginatorAccountMissing = 5102, "originator account number is missing";
    /// The originator has no address, national id, customer id or date and place of birth.
    OriginatorIdentificationMissing = 5103, "originator identification is missing";
    /// The beneficiary has no name.
    BeneficiaryNameMissing = 5104, "beneficiary name is missing";
    /// The beneficiary has no account number.
    BeneficiaryAccountMissing = 5105, "beneficiary account number is missing";
    /// A name is empty or too long.
    TravelRuleNameInvalid = 5106, "travel-rule name is invalid";
    /// A country code is not two upper-case letters.
    TravelRuleCountryInvalid = 5107, "travel-rule country code is invalid";
    /// A VASP's LEI fails the ISO 17442 format or check digits.
    LeiInvalid = 5108, "LEI is invalid";
    /// The counterparty VASP is not identified.
    VaspMissing = 5109, "counterparty VASP is missing";
    /// Too many persons or account numbers on one side.
    TravelRuleTooManyEntries = 5110, "too many travel-rule persons or accounts";
    /// An account number is empty or too long.
    TravelRuleAccountInvalid = 5111, "travel-rule account number is invalid";
    /// A date of birth is not `YYYY-MM-DD`.
    TravelRuleDateInvalid = 5112, "travel-rule date is invalid";

    /// The case is not in a state a report can be filed from.
    ReportCaseState = 6001, "case state does not allow a report";
    /// The report subject's personal data was erased.
    ReportSubjectErased = 6002, "report subject is erased";
    /// An STR needs at least one transaction.
    ReportNoTransactions = 6003, "report has no transactions";
    /// A report field is invalid (length, country, currency, amount).
    ReportFieldInvalid = 6004, "report field is invalid";
    /// More than `REPORT_TRANSACTIONS_MAX` transactions.
    ReportTooManyTransactions = 6005, "report has too many transactions";
    /// The reporting entity configuration is invalid.
    ReportEntityInvalid = 6006, "reporting entity configuration is invalid";

    /// The customer's personal data is erased already.
    AlreadyErased = 7001, "customer is erased already";
    /// A case about the customer is open; its data is needed until it closes.
    ErasureBlockedOpenCase = 7002, "customer has an open case";
}

/// A refusal: the stable code and a detail naming what was refused (never personal data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The stable code.
    pub reject: Reject,
    /// Which field or value, in words.
    pub detail: String,
}

impl Refusal {
    /// A refusal with a detail.
    pub fn new(reject: Reject, detail: impl Into<String>) -> Self {
        Self {
            reject,
            detail: detail.into(),
        }
    }

    /// The stable numeric code.
    pub fn code(&self) -> u16 {
        self.reject.code()
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.reject.message(),
            self.reject.code(),
            self.detail
        )
    }
}

impl std::error::Error for Refusal {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = std::collections::BTreeSet::new();
        for r in Reject::ALL {
            assert!(seen.insert(r.code()), "duplicate code {}", r.code());
            assert_eq!(Reject::from_code(r.code()), Some(*r));
            assert!(!r.message().is_empty());
        }
        assert_eq!(Reject::CddIncomplete.code(), 2002);
        assert_eq!(Reject::from_code(9999), None);
    }
}
