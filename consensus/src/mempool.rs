//! The mempool: a bounded queue of submitted batches (signed transfers, or accounts to open)
//! waiting for a block. Clients submit each batch to every validator (the consortium has no
//! gossip of its own for transactions); whichever validator proposes next packs batches in
//! arrival order, and every validator drops the batches a decided block carried. A batch is
//! named by the hash of its canonical bytes, so the same batch submitted twice is queued once.
//!
//! A batch stays queued until a block carrying it is decided: a proposal that loses its round
//! does not lose its transfers. The ledger itself refuses a transfer id seen before, so even
//! a batch packed twice settles once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use settlement::codec::Writer;
use settlement::crypto::{Hash32, tagged_hash};
use settlement::ledger::Batch;
use settlement::limits::{BATCHES_PER_BLOCK_MAX, TRANSFERS_PER_BLOCK_MAX};
use tokio::sync::Notify;

/// Transfers (and accounts) the mempool holds at most.
pub const MEMPOOL_ENTRIES_MAX: usize = 1_000_000;
/// Batches the mempool holds at most.
pub const MEMPOOL_BATCHES_MAX: usize = 100_000;
/// Commit latencies kept for the benchmark, oldest dropped first.
pub const LATENCY_SAMPLES_MAX: usize = 1_000_000;

/// Domain of a batch's mempool id.
const DOMAIN_MEMPOOL_BATCH: &[u8] = b"rempart.consensus.mempool-batch.v1";

/// Why a batch is not queued. Stable codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum SubmitRefusal {
    /// The mempool is full: retry later.
    Full = 1,
    /// This batch is queued already.
    Duplicate = 2,
    /// The batch holds nothing.
    Empty = 3,
    /// The batch alone is larger than a block may be.
    TooLarge = 4,
}

impl SubmitRefusal {
    /// The stable numeric code.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// A message for people.
    pub fn message(self) -> &'static str {
        match self {
            Self::Full => "the mempool is full; retry later",
            Self::Duplicate => "this batch is queued already",
            Self::Empty => "the batch is empty",
            Self::TooLarge => "the batch is larger than a block may be",
        }
    }
}

/// The mempool id of a batch: a hash of its canonical bytes.
pub fn batch_id(batch: &Batch) -> Hash32 {
    let mut w = Writer::new();
    batch.encode(&mut w);
    tagged_hash(DOMAIN_MEMPOOL_BATCH, &[w.as_bytes()])
}

#[derive(Debug)]
struct Queued {
    id: Hash32,
    batch: Batch,
    submitted: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    /// Batches by arrival number.
    queue: BTreeMap<u64, Queued>,
    /// Arrival number of each queued batch id.
    index: HashMap<Hash32, u64>,
    next: u64,
    entries: usize,
    /// (commit latency, entries) of batches this validator saw decided.
    latencies: Vec<(Duration, usize)>,
}

/// A bounded, shared mempool (one per validator).
#[derive(Debug)]
pub struct Mempool {
    inner: Mutex<Inner>,
    arrived: Notify,
    entries_max: usize,
}

impl Default for Mempool {
    fn default() -> Self {
        Self::new()
    }
}

impl Mempool {
    /// An empty mempool holding up to [`MEMPOOL_ENTRIES_MAX`] entries.
    pub fn new() -> Self {
        Self::with_capacity(MEMPOOL_ENTRIES_MAX)
    }

    /// An empty mempool holding up to `entries_max` entries (at most [`MEMPOOL_ENTRIES_MAX`]).
    pub fn with_capacity(entries_max: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            arrived: Notify::new(),
            entries_max: entries_max.min(MEMPOOL_ENTRIES_MAX),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a batch.
    pub fn submit(&self, batch: Batch) -> Result<(), SubmitRefusal> {
        self.submit_at(batch, Instant::now())
    }

    /// Queues a batch that the client submitted at `submitted` (for latency figures).
    pub fn submit_at(&self, batch: Batch, submitted: Instant) -> Result<(), SubmitRefusal> {
        let entries = batch.len();
        if entries == 0 {
            return Err(SubmitRefusal::Empty);
        }
        if entries > TRANSFERS_PER_BLOCK_MAX {
            return Err(SubmitRefusal::TooLarge);
        }
        let id = batch_id(&batch);
        {
            let mut inner = self.lock();
            if inner.index.contains_key(&id) {
                return Err(SubmitRefusal::Duplicate);
            }
            if inner.entries + entries > self.entries_max
                || inner.queue.len() >= MEMPOOL_BATCHES_MAX
            {
                return Err(SubmitRefusal::Full);
            }
            let seq = inner.next;
            inner.next += 1;
            inner.entries += entries;
            inner.index.insert(id, seq);
            inner.queue.insert(
                seq,
                Queued {
                    id,
                    batch,
                    submitted,
                },
            );
        }
        self.arrived.notify_one();
        Ok(())
    }

    /// Batches queued.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// True if nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.lock().queue.is_empty()
    }

    /// Transfers and accounts queued.
    pub fn entries(&self) -> usize {
        self.lock().entries
    }

    /// The oldest batches that fit in a block of `entries_max` entries (at least one batch
    /// if any is queued and fits a block at all), left queued until decided.
    pub fn select(&self, entries_max: usize) -> Vec<Batch> {
        let inner = self.lock();
        let mut taken = 0;
        let mut batches = Vec::new();
        for queued in inner.queue.values() {
            let len = queued.batch.len();
            if batches.len() >= BATCHES_PER_BLOCK_MAX
                || (taken + len > entries_max && !batches.is_empty())
            {
                break;
            }
            taken += len;
            batches.push(queued.batch.clone());
        }
        batches
    }

    /// Waits until a batch arrives or `wait` passes, whichever is first.
    pub async fn wait_for_batch(&self, wait: Duration) {
        if !self.is_empty() {
            return;
        }
        let _ = tokio::time::timeout(wait, self.arrived.notified()).await;
    }

    /// Drops the batches a decided block carried, recording their commit latency.
    pub fn remove_committed(&self, batches: &[Batch], committed: Instant) {
        let mut inner = self.lock();
        for batch in batches {
            let id = batch_id(batch);
            let Some(seq) = inner.index.remove(&id) else {
                continue;
            };
            if let Some(queued) = inner.queue.remove(&seq) {
                debug_assert_eq!(queued.id, id);
                let len = queued.batch.len();
                inner.entries -= len;
                if inner.latencies.len() < LATENCY_SAMPLES_MAX {
                    let latency = committed.saturating_duration_since(queued.submitted);
                    inner.latencies.push((latency, len));
                }
            }
        }
    }

    /// Takes the (commit latency, entries) samples recorded so far.
    pub fn take_latencies(&self) -> Vec<(Duration, usize)> {
        std::mem::take(&mut self.lock().latencies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use settlement::ledger::{AccountFlags, NewAccount};

    fn batch(id: u128, n: usize) -> Batch {
        Batch::CreateAccounts(
            (0..n as u128)
                .map(|i| NewAccount {
                    id: id * 1_000 + i,
                    user_data: 0,
                    ledger: 1,
                    code: 1,
                    flags: AccountFlags(0),
                    controller: [2; 33],
                })
                .collect(),
        )
    }

    #[test]
    fn batches_queue_once_in_order_and_leave_when_decided() {
        let pool = Mempool::new();
        pool.submit(batch(1, 3)).unwrap();
        pool.submit(batch(2, 3)).unwrap();
        pool.submit(batch(3, 3)).unwrap();
        assert_eq!(pool.submit(batch(2, 3)), Err(SubmitRefusal::Duplicate));
        assert_eq!(pool.submit(batch(4, 0)), Err(SubmitRefusal::Empty));
        assert_eq!(pool.entries(), 9);
        let selected = pool.select(7);
        assert_eq!(selected, vec![batch(1, 3), batch(2, 3)]);
        // Selection leaves them queued until a block carrying them is decided.
        assert_eq!(pool.select(7), selected);
        pool.remove_committed(&selected, Instant::now());
        assert_eq!(pool.select(7), vec![batch(3, 3)]);
        assert_eq!(pool.take_latencies().len(), 2);
        // An oversized first batch still goes alone rather than blocking the queue.
        assert_eq!(pool.select(1), vec![batch(3, 3)]);
    }

    #[test]
    fn the_mempool_is_bounded() {
        let pool = Mempool::with_capacity(100);
        let mut accepted = 0;
        for id in 0.. {
            match pool.submit(batch(id, 7)) {
                Ok(()) => accepted += 7,
                Err(refusal) => {
                    assert_eq!(refusal, SubmitRefusal::Full);
                    assert_eq!(refusal.code(), 1);
                    break;
                }
            }
        }
        assert_eq!(accepted, 98);
        assert_eq!(
            pool.submit(batch(99, TRANSFERS_PER_BLOCK_MAX + 1)),
            Err(SubmitRefusal::TooLarge)
        );
    }
}
