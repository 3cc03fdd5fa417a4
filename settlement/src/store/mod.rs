//! Block stores: where a validator keeps its decided blocks (with their certificates) and, for
//! stores that keep queryable state, the balances those blocks produced. One trait, two
//! implementations that pass the same test suite:
//!
//! - [`file::FileStore`]: the embedded default, an append-only file of length-prefixed,
//!   CRC32C-checked block records plus an applied-height marker, fsynced per block.
//! - [`memory::MemoryStore`]: in memory, for scratch chains, tests and benchmarks.
//! - [`pg::PgStore`]: PostgreSQL, for production and regulators' queries; one database
//!   transaction per block.
//!
//! The store is called from the ledger's own apply thread (synchronous); `PgStore` drives its
//! async driver on a private runtime.

pub mod file;
pub mod memory;
pub mod pg;

use crate::block::CommittedBlock;
use crate::crypto::Hash32;
use crate::ledger::BlockEffects;

/// Failures of a block store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The disk failed.
    #[error("block store I/O ({context}): {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// The database failed.
    #[error("block store database ({context}): {source}")]
    Database {
        /// What was being done.
        context: String,
        /// The error.
        source: tokio_postgres::Error,
    },
    /// A stored block is damaged: the store refuses to start.
    #[error("block store is corrupt at height {height}: {reason}")]
    Corrupt {
        /// The first bad block.
        height: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A different block is stored at this height already.
    #[error("a different block is stored at height {height}")]
    Conflict {
        /// The height.
        height: u64,
    },
    /// Blocks must be appended at the next height.
    #[error("cannot append height {got}: the next height is {expected}")]
    Gap {
        /// The next height.
        expected: u64,
        /// The block's height.
        got: u64,
    },
    /// No block at this height.
    #[error("no block at height {0}")]
    NotFound(u64),
}

/// A validator's block store.
pub trait BlockStore {
    /// Height of the last block stored and applied (0: none).
    fn applied_height(&self) -> Result<u64, StoreError>;

    /// Stores a decided block with what applying it changed, durably, and makes it the applied
    /// height. Appending the block already stored at that height again is a no-op (so a crash
    /// between apply and acknowledge is harmless); a different block there is a
    /// [`StoreError::Conflict`].
    fn append(&mut self, block: &CommittedBlock, effects: &BlockEffects) -> Result<(), StoreError>;

    /// The block at `height` (1 ..= applied height), integrity-checked.
    fn read(&self, height: u64) -> Result<CommittedBlock, StoreError>;

    /// Hash of the block at `height`.
    fn block_hash(&self, height: u64) -> Result<Hash32, StoreError> {
        Ok(self.read(height)?.block.hash())
    }
}
