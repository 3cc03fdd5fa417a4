//! An in-memory block store: for proposers' scratch chains, tests and the benchmark. It keeps
//! nothing across restarts, so a validator never runs on it in production.

use super::{BlockStore, StoreError};
use crate::block::CommittedBlock;
use crate::ledger::BlockEffects;

/// Blocks in a vector.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    blocks: Vec<CommittedBlock>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every stored block, in height order.
    pub fn blocks(&self) -> &[CommittedBlock] {
        &self.blocks
    }
}

impl BlockStore for MemoryStore {
    fn applied_height(&self) -> Result<u64, StoreError> {
        Ok(self.blocks.len() as u64)
    }

    fn append(
        &mut self,
        block: &CommittedBlock,
        _effects: &BlockEffects,
    ) -> Result<(), StoreError> {
        let height = block.block.header.height;
        let next = self.blocks.len() as u64 + 1;
        if height < next {
            return match height
                .checked_sub(1)
                .and_then(|i| self.blocks.get(i as usize))
            {
                Some(stored) if stored.block.hash() == block.block.hash() => Ok(()),
                _ => Err(StoreError::Conflict { height }),
            };
        }
        if height > next {
            return Err(StoreError::Gap {
                expected: next,
                got: height,
            });
        }
        self.blocks.push(block.clone());
        Ok(())
    }

    fn read(&self, height: u64) -> Result<CommittedBlock, StoreError> {
        height
            .checked_sub(1)
            .and_then(|i| self.blocks.get(i as usize))
            .cloned()
            .ok_or(StoreError::NotFound(height))
    }
}
