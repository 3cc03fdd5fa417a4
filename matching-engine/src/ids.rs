//! The order-id index: engine-assigned order ids are dense and increasing, so the slab slot of
//! an open order is found by two array loads instead of a hash probe.
//!
//! Ids are grouped in pages of `PAGE_IDS`; a page exists only while one of its orders is open
//! and goes back to a pool when its last order closes. The table of pages spans from the page
//! of the oldest open order to the newest (16 bytes per page), so memory follows the open
//! orders and their id span, bounded by `ORDER_ID_SPAN_MAX`, not the orders ever placed.
//!
//! Also the account index (`AccountIndex`): node-chosen account ids to account-table slots, an
//! open-addressing table probed from a multiplicative hash, so that the lookup every new order
//! makes reads one slot (one cache line) instead of a hash map's control bytes and bucket.

use std::collections::VecDeque;

use crate::command::{AccountId, OrderId};
use crate::limits::ORDER_ID_SPAN_MAX;

/// Ids per page (a page is 4 bytes per id).
const PAGE_IDS: usize = 4_096;
/// Freed pages kept for reuse, so that steady trading does not allocate.
const FREE_PAGES_MAX: usize = 64;
const EMPTY: u32 = u32::MAX;

#[derive(Clone, Debug)]
struct Page {
    slots: Box<[u32; PAGE_IDS]>,
    live: u32,
}

/// Page-table entries reserved up front: a span of 4 M ids (16 KiB of table), so that the
/// table does not grow in the middle of trading while old orders stay open.
const PAGE_TABLE_PRESIZE: usize = 1_024;

/// Maps open order ids to slab slots.
#[derive(Clone, Debug)]
pub(crate) struct OrderIndex {
    /// Page number of `pages[0]`.
    first: usize,
    pages: VecDeque<Option<Page>>,
    free: Vec<Box<[u32; PAGE_IDS]>>,
    len: usize,
}

impl Default for OrderIndex {
    fn default() -> Self {
        OrderIndex {
            first: 0,
            pages: VecDeque::with_capacity(PAGE_TABLE_PRESIZE),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl OrderIndex {
    fn split(id: OrderId) -> (usize, usize) {
        ((id as usize) / PAGE_IDS, (id as usize) % PAGE_IDS)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn get(&self, id: &OrderId) -> Option<&u32> {
        let (p, s) = Self::split(*id);
        let slot = &self.pages.get(p.checked_sub(self.first)?)?.as_ref()?.slots[s];
        (*slot != EMPTY).then_some(slot)
    }

    /// The slot of `id`, or `EMPTY` (u32::MAX) when it is not open, without a branch on the
    /// slot itself (for `Engine::prefetch`, which reads through it before its cache line has
    /// arrived: a mispredicted branch there would throw away the work done meanwhile).
    #[inline(always)]
    pub fn slot_or_empty(&self, id: OrderId) -> u32 {
        let (p, s) = Self::split(id);
        match p.checked_sub(self.first).and_then(|at| self.pages.get(at)) {
            Some(Some(page)) => page.slots[s],
            _ => EMPTY,
        }
    }

    pub fn contains_key(&self, id: &OrderId) -> bool {
        self.get(id).is_some()
    }

    /// Whether `id` can be inserted without the table spanning more than
    /// `ORDER_ID_SPAN_MAX` ids.
    pub fn can_insert(&self, id: OrderId) -> bool {
        let (p, _) = Self::split(id);
        let (lo, hi) = if self.pages.is_empty() {
            (p, p)
        } else {
            (p.min(self.first), p.max(self.first + self.pages.len() - 1))
        };
        ((hi - lo + 1) * PAGE_IDS) as u64 <= ORDER_ID_SPAN_MAX
    }

    /// Records `slot` for `id` (which must not be open already; `can_insert(id)` holds).
    #[inline]
    pub fn insert(&mut self, id: OrderId, slot: u32) {
        let (p, s) = Self::split(id);
        // Fast path, inlined: the id's page exists (all but one id in `PAGE_IDS`).
        if let Some(at) = p.checked_sub(self.first)
            && let Some(Some(page)) = self.pages.get_mut(at)
        {
            debug_assert_eq!(page.slots[s], EMPTY, "order id inserted twice");
            if page.slots[s] == EMPTY {
                page.live += 1;
                self.len += 1;
            }
            page.slots[s] = slot;
            return;
        }
        self.insert_new_page(p, s, slot);
    }

    /// `insert` when the id's page does not exist yet: grows the table, takes a page.
    #[cold]
    #[inline(never)]
    fn insert_new_page(&mut self, p: usize, s: usize, slot: u32) {
        if self.pages.is_empty() {
            self.first = p;
        }
        while p < self.first {
            self.pages.push_front(None);
            self.first -= 1;
        }
        let at = p - self.first;
        if self.pages.len() <= at {
            self.pages.resize_with(at + 1, || None);
        }
        let page = self.pages[at].get_or_insert_with(|| Page {
            slots: self
                .free
                .pop()
                .unwrap_or_else(|| Box::new([EMPTY; PAGE_IDS])),
            live: 0,
        });
        debug_assert_eq!(page.slots[s], EMPTY, "order id inserted twice");
        if page.slots[s] == EMPTY {
            page.live += 1;
            self.len += 1;
        }
        page.slots[s] = slot;
    }

    /// Forgets `id`; frees its page when it was the page's last open order.
    #[inline]
    pub fn remove(&mut self, id: &OrderId) {
        let (p, s) = Self::split(*id);
        let Some(at) = p.checked_sub(self.first) else {
            return;
        };
        let Some(Some(page)) = self.pages.get_mut(at) else {
            return;
        };
        if page.slots[s] == EMPTY {
            return;
        }
        page.slots[s] = EMPTY;
        page.live -= 1;
        self.len -= 1;
        if page.live != 0 {
            return;
        }
        self.free_page(at);
    }

    /// Returns the emptied page at `at` to the pool and trims empty pages off both ends
    /// (rare: once per `PAGE_IDS` orders, so kept out of the inlined `remove`).
    #[cold]
    #[inline(never)]
    fn free_page(&mut self, at: usize) {
        if let Some(page) = self.pages[at].take()
            && self.free.len() < FREE_PAGES_MAX
        {
            // Every slot is EMPTY again, so the page can be reused as is.
            self.free.push(page.slots);
        }
        // Drop empty pages at both ends so the table spans only open orders (only a page
        // just freed can have made an end empty).
        while let Some(None) = self.pages.front() {
            self.pages.pop_front();
            self.first += 1;
        }
        while let Some(None) = self.pages.back() {
            self.pages.pop_back();
        }
    }

    /// Every (id, slot), in id order.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = (OrderId, u32)> + '_ {
        let first = self.first;
        self.pages.iter().enumerate().flat_map(move |(p, page)| {
            let p = p + first;
            page.iter().flat_map(move |page| {
                page.slots
                    .iter()
                    .enumerate()
                    .filter(|(_, slot)| **slot != EMPTY)
                    .map(move |(s, slot)| ((p * PAGE_IDS + s) as OrderId, *slot))
            })
        })
    }
}

/// Slots of a new account index (16 bytes each): room for 512 accounts before it grows.
const ACCOUNT_SLOTS_MIN: usize = 1_024;
/// Fibonacci hashing: the top bits of `id × K` spread dense and sparse ids alike.
const ACCOUNT_HASH_K: u64 = 0x9E37_79B9_7F4A_7C15;

/// Maps account ids to account-table slots: linear probing over a power-of-two table kept at
/// most half full, `EMPTY` in the slot marking a free entry (slots are below `ACCOUNTS_MAX`).
/// Accounts are never removed, so no tombstones. Iteration order is never observed.
#[derive(Clone, Debug)]
pub(crate) struct AccountIndex {
    slots: Vec<(AccountId, u32)>,
    /// 64 - log2(slots.len()): the hash is the top bits of the product.
    shift: u32,
    len: usize,
}

impl Default for AccountIndex {
    fn default() -> Self {
        AccountIndex {
            slots: vec![(0, EMPTY); ACCOUNT_SLOTS_MIN],
            shift: 64 - ACCOUNT_SLOTS_MIN.trailing_zeros(),
            len: 0,
        }
    }
}

impl AccountIndex {
    #[inline(always)]
    fn home(&self, id: AccountId) -> usize {
        (id.wrapping_mul(ACCOUNT_HASH_K) >> self.shift) as usize
    }

    /// The slot of account `id`, if it has one.
    #[inline(always)]
    pub fn get(&self, id: &AccountId) -> Option<&u32> {
        let mask = self.slots.len() - 1;
        let mut i = self.home(*id);
        loop {
            let (key, slot) = &self.slots[i & mask];
            if *slot == EMPTY {
                return None;
            }
            if *key == *id {
                return Some(slot);
            }
            i += 1;
        }
    }

    /// Records `slot` (< `EMPTY`) for `id`, replacing any previous one. Doubles the table
    /// when it would become more than half full.
    pub fn insert(&mut self, id: AccountId, slot: u32) {
        debug_assert!(slot != EMPTY);
        if (self.len + 1) * 2 > self.slots.len() {
            let bigger = self.slots.len() * 2;
            let old = std::mem::replace(&mut self.slots, vec![(0, EMPTY); bigger]);
            self.shift -= 1;
            self.len = 0;
            for (k, s) in old {
                if s != EMPTY {
                    self.insert(k, s);
                }
            }
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(id);
        loop {
            let entry = &mut self.slots[i & mask];
            if entry.1 == EMPTY {
                *entry = (id, slot);
                self.len += 1;
                return;
            }
            if entry.0 == id {
                entry.1 = slot;
                return;
            }
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;
    use std::collections::BTreeMap;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 100,
            failure_persistence: None,
            ..Default::default()
        })]

        /// Agrees with a `BTreeMap` for dense, sparse and colliding ids, across growth.
        #[test]
        fn account_index_agrees_with_a_map(
            ids in proptest::collection::vec(
                proptest::prop_oneof![
                    0u64..3_000,
                    proptest::num::u64::ANY,
                    (0u64..64).prop_map(|k| k << 54),
                ],
                1..3_000,
            ),
        ) {
            let mut idx = AccountIndex::default();
            let mut model = BTreeMap::new();
            for (n, id) in ids.iter().enumerate() {
                let slot = (n % 1_000_000) as u32;
                idx.insert(*id, slot);
                model.insert(*id, slot);
                proptest::prop_assert_eq!(idx.get(id).copied(), Some(slot));
            }
            for (id, slot) in &model {
                proptest::prop_assert_eq!(idx.get(id).copied(), Some(*slot));
            }
            for probe in [1u64, 7, 1 << 40, u64::MAX] {
                proptest::prop_assert_eq!(idx.get(&probe).copied(), model.get(&probe).copied());
            }
            proptest::prop_assert_eq!(idx.len, model.len());
        }

        /// Agrees with a `BTreeMap`, across page boundaries and page reuse.
        #[test]
        fn order_index_agrees_with_a_map(
            ops in proptest::collection::vec(
                (proptest::bool::ANY, proptest::prop_oneof![0u64..20_000, 1_000_000u64..1_010_000]),
                1..400,
            ),
        ) {
            let mut idx = OrderIndex::default();
            let mut model = BTreeMap::new();
            for (n, (insert, id)) in ops.into_iter().enumerate() {
                if insert && !model.contains_key(&id) && idx.can_insert(id) {
                    idx.insert(id, n as u32);
                    model.insert(id, n as u32);
                } else {
                    idx.remove(&id);
                    model.remove(&id);
                }
                proptest::prop_assert_eq!(idx.len(), model.len());
                proptest::prop_assert_eq!(idx.get(&id).copied(), model.get(&id).copied());
                proptest::prop_assert_eq!(
                    idx.slot_or_empty(id),
                    model.get(&id).copied().unwrap_or(EMPTY)
                );
            }
            let all: Vec<(u64, u32)> = idx.iter().collect();
            let want: Vec<(u64, u32)> = model.into_iter().collect();
            proptest::prop_assert_eq!(all, want);
        }
    }
}
