//! Every bound of the settlement crate in one place: sizes a decoder accepts, counts a block
//! may hold, how much state the ledger may grow to. Load beyond these degrades into refusals
//! (`AccountsFull`, `TransfersFull`, decode errors), never into unbounded memory.

/// Batches in one block.
pub const BATCHES_PER_BLOCK_MAX: usize = 1_024;
/// Transfers in one batch.
pub const TRANSFERS_PER_BATCH_MAX: usize = 8_192;
/// Accounts in one batch.
pub const ACCOUNTS_PER_BATCH_MAX: usize = 8_192;
/// Verified signatures a validator remembers ahead of execution (`ledger::verified`).
pub const SIGNATURE_CACHE_ENTRIES_MAX: usize = 262_144;
/// Transfers in one block, all batches together.
pub const TRANSFERS_PER_BLOCK_MAX: usize = 65_536;
/// Accounts the ledger holds (accounts are never deleted).
pub const ACCOUNTS_MAX: usize = 10_000_000;
/// Transfers (applied plus failed ids) the ledger remembers in memory.
pub const TRANSFERS_MAX: usize = 100_000_000;
/// Signatures in one commit certificate (one per validator at most).
pub const VALIDATORS_MAX: usize = 256;
/// Bytes of one encoded block record.
pub const BLOCK_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Bytes of a short text field (institution name, chain id).
pub const NAME_BYTES_MAX: usize = 128;
/// Pending timeout in seconds (about 10 years); longer holds are refused as `OverflowsTimeout`.
pub const TIMEOUT_SECONDS_MAX: u32 = 315_360_000;
