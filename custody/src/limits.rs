//! Every bound custody enforces, in one place, so that limits are reviewed together.

/// Deepest derivation path accepted (BIP-0032 stores depth in one byte).
pub const PATH_DEPTH_MAX: usize = 255;
/// Longest derivation path text accepted, before parsing.
pub const PATH_TEXT_BYTES_MAX: usize = 4096;
/// Shortest seed BIP-0032 allows (128 bits).
pub const SEED_BYTES_MIN: usize = 16;
/// Longest seed BIP-0032 allows (512 bits).
pub const SEED_BYTES_MAX: usize = 64;
/// Most shares a seed can be split into (GF(256) has 255 non-zero evaluation points).
pub const BACKUP_SHARES_MAX: u8 = 255;
/// Fewest shares needed to restore: below 2 a single share would be the seed itself.
pub const BACKUP_THRESHOLD_MIN: u8 = 2;
/// Longest policy document accepted, in bytes.
pub const POLICY_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Most rules in one policy.
pub const POLICY_RULES_MAX: usize = 10_000;
/// Most conditions in one rule.
pub const RULE_CONDITIONS_MAX: usize = 32;
/// Most approver groups in one policy.
pub const APPROVER_GROUPS_MAX: usize = 64;
/// Most members of one approver group.
pub const GROUP_MEMBERS_MAX: usize = 64;
/// Longest name (rule, group, asset, tag, approver), in bytes.
pub const NAME_BYTES_MAX: usize = 64;
/// Longest velocity window: 31 days.
pub const VELOCITY_WINDOW_S_MAX: u64 = 31 * 24 * 3600;
/// Most velocity events kept per account or wallet inside the longest window.
pub const VELOCITY_EVENTS_PER_KEY_MAX: usize = 100_000;
/// Longest time lock: 30 days.
pub const TIME_LOCK_S_MAX: u64 = 30 * 24 * 3600;
/// Longest approval lifetime: 7 days.
pub const APPROVAL_TTL_S_MAX: u64 = 7 * 24 * 3600;
/// Default delay before a newly whitelisted address can be used: 24 hours.
pub const WHITELIST_DELAY_S_DEFAULT: u64 = 24 * 3600;
/// Most entries in the address book.
pub const ADDRESS_BOOK_MAX: usize = 100_000;
/// Longest destination address, in bytes.
pub const ADDRESS_BYTES_MAX: usize = 128;
/// Most wallets custody manages.
pub const WALLETS_MAX: usize = 1_024;
/// Most withdrawals held in memory (open or finished) before the caller must archive.
pub const WITHDRAWALS_MAX: usize = 1_000_000;
/// Most policy-change requests pending at once.
pub const POLICY_CHANGES_PENDING_MAX: usize = 16;
/// Most audit entries held in one in-memory log segment.
pub const AUDIT_ENTRIES_MAX: usize = 50_000_000;
/// Largest canonical audit payload, in bytes.
pub const AUDIT_PAYLOAD_BYTES_MAX: usize = 64 * 1024;
/// Most accounts in one proof-of-reserves tree (2^24).
pub const POR_ACCOUNTS_MAX: usize = 1 << 24;
/// Most assets summed in every node of the proof-of-reserves tree.
pub const POR_ASSETS_MAX: usize = 8;
/// Longest asset code in a proof, in bytes.
pub const POR_ASSET_CODE_BYTES_MAX: usize = 16;
/// Largest proof file a verifier reads, in bytes.
pub const POR_PROOF_FILE_BYTES_MAX: usize = 64 * 1024;
