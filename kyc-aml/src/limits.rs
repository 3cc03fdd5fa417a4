//! Every bound of the crate in one place, so that outside input, queues and histories degrade
//! into refusals instead of unbounded memory or time.

/// Microseconds in one day; windows and retention periods are multiples of it.
pub const DAY_US: i64 = 86_400_000_000;

/// Longest text field accepted anywhere (names, addresses, notes are bounded separately).
pub const FIELD_LEN_MAX: usize = 256;
/// Longest free-text note on a case.
pub const NOTE_LEN_MAX: usize = 4_000;
/// Most notes on one case.
pub const CASE_NOTES_MAX: usize = 500;
/// Most attachments on one case.
pub const CASE_ATTACHMENTS_MAX: usize = 100;
/// Longest attachment URI.
pub const URI_LEN_MAX: usize = 1_024;

/// Largest attestation document accepted (JSON bytes).
pub const ATTESTATION_BYTES_MAX: usize = 16 * 1024;
/// Most trusted issuers in a registry.
pub const ISSUERS_MAX: usize = 256;

/// Most beneficial owners recorded for one legal entity.
pub const BENEFICIAL_OWNERS_MAX: usize = 32;
/// Ownership share at or above which a natural person is a beneficial owner (25 %, in basis
/// points).
pub const BENEFICIAL_OWNER_SHARE_BP_MIN: u16 = 2_500;

/// How long a former PEP keeps PEP status after leaving office (12 months, taken as 365 days).
pub const PEP_RETENTION_US: i64 = 365 * DAY_US;

/// Largest rule configuration document accepted (JSON bytes).
pub const RULE_CONFIG_BYTES_MAX: usize = 64 * 1024;
/// Most rules in one rule set.
pub const RULES_MAX: usize = 64;
/// Longest sliding window a rule may use (also how long monitoring keeps history).
pub const RULE_WINDOW_US_MAX: i64 = 30 * DAY_US;
/// Largest score one rule may add; the total is bounded by `RULES_MAX * RULE_SCORE_MAX`.
pub const RULE_SCORE_MAX: u32 = 1_000;

/// Most transfers kept per customer in the monitoring history (30 days at most). A customer
/// whose history is full has further transfers held for review rather than silently forgotten.
pub const HISTORY_PER_CUSTOMER_MAX: usize = 4_096;
/// Most distinct counterparties remembered per customer for the "new counterparty" rule; past
/// this, every counterparty not remembered counts as new (the conservative side).
pub const COUNTERPARTIES_PER_CUSTOMER_MAX: usize = 4_096;
/// Most customers the gate holds in memory.
pub const GATE_CUSTOMERS_MAX: usize = 10_000_000;

/// Most persons on one side (originator or beneficiary) of a travel-rule payload.
pub const TRAVEL_RULE_PERSONS_MAX: usize = 8;
/// Most account numbers on one side of a travel-rule payload.
pub const TRAVEL_RULE_ACCOUNTS_MAX: usize = 8;
/// Largest travel-rule payload accepted (JSON bytes).
pub const TRAVEL_RULE_BYTES_MAX: usize = 32 * 1024;

/// Most reasons in one decision record.
pub const DECISION_REASONS_MAX: usize = 128;
/// Largest canonical decision record.
pub const DECISION_RECORD_BYTES_MAX: usize = 64 * 1024;

/// Most transactions in one goAML report.
pub const REPORT_TRANSACTIONS_MAX: usize = 1_000;
/// Longest `reason` / `action` text of a goAML report (the schema's own limit is 4000).
pub const REPORT_TEXT_LEN_MAX: usize = 4_000;
