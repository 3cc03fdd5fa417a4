//! The order-id index: engine-assigned order ids are dense and increasing, so the slab slot of
//! an open order is found by two array loads instead of a hash probe.
//!
//! Ids are grouped in pages of `PAGE_IDS`; a page exists only while one of its orders is open
//! and goes back to a pool when its last order closes. The table of pages spans from the page
//! of the oldest open order to the newest (16 bytes per page), so memory follows the open
//! orders and their id span, bounded by `ORDER_ID_SPAN_MAX`, not the orders ever placed.

use std::collections::VecDeque;

use crate::command::OrderId;
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
    pub fn insert(&mut self, id: OrderId, slot: u32) {
        let (p, s) = Self::split(id);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 100,
            failure_persistence: None,
            ..Default::default()
        })]

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
            }
            let all: Vec<(u64, u32)> = idx.iter().collect();
            let want: Vec<(u64, u32)> = model.into_iter().collect();
            proptest::prop_assert_eq!(all, want);
        }
    }
}
