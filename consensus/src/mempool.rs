//! The mempool: a bounded queue of submitted batches (signed transfers, or accounts to open)
//! waiting for a block. Clients submit each batch to every validator (the consortium has no
//! gossip of its own for transactions); whichever validator proposes next packs batches in
//! arrival order, and every validator drops the batches a decided block carried. A batch is
//! named by the hash of its canonical bytes, so the same batch submitted twice is queued once.
//!
//! A validator may hand every accepted batch to a pre-verifier ([`Mempool::set_preverifier`]),
//! which checks its signatures before any proposal carries it (settlement's
//! `ledger::verified`) and then marks it ready ([`Mempool::mark_ready`]); a proposer packs
//! ready batches first ([`Mempool::select_ready`]), so that executing its block does not wait
//! for signature checks.
//!
//! A batch stays queued until a block carrying it is decided: a proposal that loses its round
//! does not lose its transfers. The ledger itself refuses a transfer id seen before, so even
//! a batch packed twice settles once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Weak};
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
/// Ids of recently committed batches remembered (for submitters waiting on them), oldest
/// forgotten first.
pub const COMMITTED_IDS_MAX: usize = 200_000;

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

/// One decided batch as this validator saw it: for commit latency and throughput figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitSample {
    /// When the client submitted the batch.
    pub submitted: Instant,
    /// When this validator had committed (and stored) the block carrying it.
    pub committed: Instant,
    /// Transfers (or accounts) in the batch.
    pub entries: usize,
}

impl CommitSample {
    /// Submission to durable commit.
    pub fn latency(&self) -> Duration {
        self.committed.saturating_duration_since(self.submitted)
    }
}

#[derive(Debug)]
struct Queued {
    id: Hash32,
    batch: Batch,
    submitted: Instant,
    /// Its signatures were checked ahead (or there is no pre-verifier).
    ready: bool,
}

/// A batch handed to the pre-verifier: its id (to mark it ready), the batch, and the mempool
/// it came from (weak: the pre-verifier must not keep a stopped validator's mempool alive).
#[derive(Debug)]
pub struct PreverifyJob {
    /// The batch's mempool id.
    pub id: Hash32,
    /// The batch.
    pub batch: Batch,
    /// Where to mark it ready.
    pub mempool: Weak<Mempool>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Batches by arrival number.
    queue: BTreeMap<u64, Queued>,
    /// Arrival number of each queued batch id.
    index: HashMap<Hash32, u64>,
    next: u64,
    entries: usize,
    /// Batches this validator saw decided, oldest first.
    samples: Vec<CommitSample>,
    /// Ids of the batches of recently committed blocks, and their order (bounded).
    committed: std::collections::HashSet<Hash32>,
    committed_order: std::collections::VecDeque<Hash32>,
}

/// A bounded, shared mempool (one per validator).
#[derive(Debug)]
pub struct Mempool {
    inner: Mutex<Inner>,
    arrived: Notify,
    /// Woken at every commit.
    committed: Notify,
    entries_max: usize,
    /// Where accepted batches go to have their signatures checked ahead (bounded; a batch that
    /// does not fit is verified when its block is executed).
    preverify: Mutex<Option<(SyncSender<PreverifyJob>, Weak<Mempool>)>>,
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
            committed: Notify::new(),
            entries_max: entries_max.min(MEMPOOL_ENTRIES_MAX),
            preverify: Mutex::new(None),
        }
    }

    /// Sends a copy of every batch this mempool accepts from now on to `sender`, to be marked
    /// ready once checked; a batch accepted while no pre-verifier is set, or that does not fit
    /// in the channel, is ready at once. None: stop (dropping the sender lets the receiving
    /// thread end).
    pub fn set_preverifier(self: &Arc<Self>, sender: Option<SyncSender<PreverifyJob>>) {
        *self
            .preverify
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            sender.map(|sender| (sender, Arc::downgrade(self)));
    }

    /// Marks a queued batch ready (its signatures were checked).
    pub fn mark_ready(&self, id: &Hash32) {
        {
            let mut inner = self.lock();
            let Some(seq) = inner.index.get(id).copied() else {
                return;
            };
            if let Some(queued) = inner.queue.get_mut(&seq) {
                queued.ready = true;
            }
        }
        self.arrived.notify_one();
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
        let preverify = self
            .preverify
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let copy = preverify.as_ref().map(|_| batch.clone());
        let seq = {
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
                    ready: preverify.is_none(),
                },
            );
            seq
        };
        if let (Some((sender, mempool)), Some(batch)) = (preverify, copy) {
            let job = PreverifyJob { id, batch, mempool };
            if sender.try_send(job).is_err() {
                // The pre-verifier is behind (or gone): the block's execution will verify it.
                if let Some(queued) = self.lock().queue.get_mut(&seq) {
                    queued.ready = true;
                }
            }
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
        self.select_where(entries_max, false)
    }

    fn select_where(&self, entries_max: usize, ready_only: bool) -> Vec<Batch> {
        let inner = self.lock();
        let mut taken = 0;
        let mut batches = Vec::new();
        for queued in inner.queue.values() {
            if ready_only && !queued.ready {
                continue;
            }
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

    /// True if a batch is ready.
    pub fn has_ready(&self) -> bool {
        self.lock().queue.values().any(|queued| queued.ready)
    }

    /// Waits until a batch is ready or `wait` passes, whichever is first.
    pub async fn wait_for_ready(&self, wait: Duration) {
        let end = tokio::time::Instant::now() + wait;
        while !self.has_ready() {
            if tokio::time::timeout_at(end, self.arrived.notified())
                .await
                .is_err()
            {
                return;
            }
        }
    }

    /// [`Mempool::select`] over the ready batches only.
    pub fn select_ready(&self, entries_max: usize) -> Vec<Batch> {
        self.select_where(entries_max, true)
    }

    /// Drops batches that can never settle as they are (refused for want of authority).
    pub fn remove_refused(&self, batches: &[Batch]) {
        self.remove(batches, None);
    }

    /// Drops the batches a decided block carried, recording their commit latency.
    pub fn remove_committed(&self, batches: &[Batch], committed: Instant) {
        self.remove(batches, Some(committed));
        self.committed.notify_waiters();
    }

    fn remove(&self, batches: &[Batch], committed: Option<Instant>) {
        let mut inner = self.lock();
        for batch in batches {
            let id = batch_id(batch);
            if committed.is_some() && inner.committed.insert(id) {
                inner.committed_order.push_back(id);
                if inner.committed_order.len() > COMMITTED_IDS_MAX
                    && let Some(oldest) = inner.committed_order.pop_front()
                {
                    inner.committed.remove(&oldest);
                }
            }
            let Some(seq) = inner.index.remove(&id) else {
                continue;
            };
            if let Some(queued) = inner.queue.remove(&seq) {
                debug_assert_eq!(queued.id, id);
                let len = queued.batch.len();
                inner.entries -= len;
                if let Some(committed) = committed
                    && inner.samples.len() < LATENCY_SAMPLES_MAX
                {
                    inner.samples.push(CommitSample {
                        submitted: queued.submitted,
                        committed,
                        entries: len,
                    });
                }
            }
        }
    }

    /// True if a block carrying the batch `id` was committed here recently (the last
    /// [`COMMITTED_IDS_MAX`] batches, since this process started).
    pub fn is_committed(&self, id: &Hash32) -> bool {
        self.lock().committed.contains(id)
    }

    /// Waits until the batch `id` is committed here or `wait` passes; true if committed.
    pub async fn wait_committed(&self, id: &Hash32, wait: Duration) -> bool {
        let end = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.committed.notified();
            tokio::pin!(notified);
            // Registered before the check, so a commit in between is not missed.
            notified.as_mut().enable();
            if self.is_committed(id) {
                return true;
            }
            if tokio::time::timeout_at(end, notified).await.is_err() {
                return self.is_committed(id);
            }
        }
    }

    /// Takes the commit samples recorded so far.
    pub fn take_samples(&self) -> Vec<CommitSample> {
        std::mem::take(&mut self.lock().samples)
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
        let samples = pool.take_samples();
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].entries, 3);
        assert!(samples[0].committed >= samples[0].submitted);
        // An oversized first batch still goes alone rather than blocking the queue.
        assert_eq!(pool.select(1), vec![batch(3, 3)]);
    }

    #[tokio::test]
    async fn submitters_wait_for_the_commit_of_their_batch() {
        let pool = Arc::new(Mempool::new());
        pool.submit(batch(1, 2)).unwrap();
        let id = batch_id(&batch(1, 2));
        assert!(!pool.wait_committed(&id, Duration::from_millis(20)).await);
        let waiter = {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move { pool.wait_committed(&id, Duration::from_secs(30)).await })
        };
        tokio::task::yield_now().await;
        // A block carrying it (and another batch never queued here) commits.
        pool.remove_committed(&[batch(1, 2), batch(5, 1)], Instant::now());
        assert!(waiter.await.unwrap());
        assert!(pool.is_committed(&batch_id(&batch(5, 1))));
        assert!(!pool.is_committed(&batch_id(&batch(6, 1))));
        // Refused batches are not committed.
        pool.submit(batch(7, 1)).unwrap();
        pool.remove_refused(&[batch(7, 1)]);
        assert!(!pool.is_committed(&batch_id(&batch(7, 1))));
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
