//! Every bound of the screening module in one place: list files are outside input, and a
//! query must cost bounded time whatever name it carries.

/// Largest list file accepted (the OFAC Advanced XML is the largest official file, ~120 MB).
pub const LIST_BYTES_MAX: usize = 512 * 1024 * 1024;
/// Most files in one snapshot.
pub const LIST_FILES_MAX: usize = 16;
/// Most entries in one snapshot (all lists together).
pub const ENTRIES_MAX: usize = 2_000_000;
/// Most names (primary + aliases) on one entry.
pub const ENTRY_NAMES_MAX: usize = 256;
/// Most identifiers, dates, nationalities or addresses on one entry, each.
pub const ENTRY_FIELDS_MAX: usize = 256;
/// Deepest XML nesting accepted.
pub const XML_DEPTH_MAX: usize = 64;
/// Most XML elements inside one record (one UN INDIVIDUAL, one OFAC DistinctParty…).
pub const XML_RECORD_NODES_MAX: usize = 100_000;
/// Longest text of one XML element or attribute, or one CSV field.
pub const FIELD_CHARS_MAX: usize = 64 * 1024;

/// Longest name considered (characters); the rest is ignored.
pub const NAME_CHARS_MAX: usize = 512;
/// Most tokens of one name considered.
pub const NAME_TOKENS_MAX: usize = 16;
/// Most identifiers on one query.
pub const QUERY_IDENTIFIERS_MAX: usize = 64;
/// Most candidate names scored in full for one query (the rest are pruned by index weight).
pub const CANDIDATES_MAX: usize = 64;
/// Posting lists longer than this are only scanned when the query has no rarer key.
pub const POSTING_SCAN_MAX: usize = 1_000;
/// Most hits returned for one query.
pub const SCREEN_HITS_MAX: usize = 20;
/// Hits below this score are not reported at all (0..=1000).
pub const REPORT_SCORE_MIN: u16 = 700;
/// Default alert threshold (0..=1000), chosen on the benchmark in BENCHMARKS.md.
pub const ALERT_THRESHOLD_DEFAULT: u16 = 850;

/// Longest analyst name or reason in a disposition.
pub const DISPOSITION_TEXT_MAX: usize = 2_000;
/// Most dispositions kept in the in-memory store.
pub const DISPOSITIONS_MAX: usize = 1_000_000;
