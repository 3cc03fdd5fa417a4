//! One side of an order book: price levels with intrusive FIFO queues of orders.
//!
//! Levels near the first price seen live in a direct-indexed ladder (`LADDER_TICKS` slots
//! from `base`, with an occupancy bitmap to find the next level in a few word scans); levels
//! outside it fall back to a `BTreeMap`. The orders themselves live in the engine's slab
//! (`Order`), linked through `prev`/`next` indices, so that resting, filling and cancelling
//! an order never allocates once the slab and level storage have grown.

use std::collections::BTreeMap;

use crate::command::{
    AccountId, AmountMinor, ClientOrderId, OrderId, OrderType, PriceTicks, QtyLots, SessionId,
    Side, StpMode, TimeInForce, TimeUs,
};
use crate::limits::LADDER_TICKS;

/// "No index" in the intrusive lists.
pub(crate) const NIL: u32 = u32::MAX;

/// An open order in the engine's slab (resting, a stop waiting for its trigger, or an
/// incoming order while it matches).
// Aligned to 128 bytes (it is 112): each record then fills one aligned pair of cache
// lines, which the adjacent-line prefetcher fetches together, instead of straddling two or
// three lines; a random cancel or fill reads the record once per command.
#[derive(Clone, Debug)]
#[repr(align(128))]
pub(crate) struct Order {
    pub id: OrderId,
    pub client_order_id: ClientOrderId,
    pub account: AccountId,
    /// Index of the owner in the engine's account table (avoids a hash lookup per fill).
    pub acct: u32,
    /// Index of the market in the engine's market table.
    pub market: u32,
    pub side: Side,
    pub order_type: OrderType,
    pub tif: TimeInForce,
    /// Limit price, or protection price of a market order; the price the hold is made at.
    pub price: PriceTicks,
    /// Open quantity (visible plus hidden).
    pub qty: QtyLots,
    /// Visible quantity while resting (iceberg peak left), else = qty.
    pub visible: QtyLots,
    pub peak: QtyLots,
    pub stop_price: PriceTicks,
    pub expire_time_us: TimeUs,
    pub stp: StpMode,
    pub session: SessionId,
    /// Funds held for this order (quote for buys, base for sells), = `Engine::hold_for`.
    pub hold: AmountMinor,
    /// Queue links within the price level.
    pub prev: u32,
    pub next: u32,
    /// Whether the order sits in a level queue (as opposed to a stop or an incoming order).
    pub resting: bool,
    /// Whether the order is in its owner's list (`Account::order_ids`): it rested or is a
    /// stop. An incoming order that never rested is not.
    pub listed: bool,
}

/// One price level: a FIFO queue and its visible aggregate.
#[derive(Clone, Debug)]
pub(crate) struct Level {
    pub price: PriceTicks,
    pub head: u32,
    pub tail: u32,
    /// Sum of the visible quantities of its orders (what L2 shows).
    pub visible: QtyLots,
    pub count: u32,
    /// Command epoch in which this level was first touched (for depth events).
    pub touched_epoch: u64,
}

/// One side (bids or asks) of a book.
#[derive(Clone, Debug)]
pub(crate) struct SideBook {
    pub side: Side,
    /// Lowest price held in the ladder; chosen when the side is empty and a level is added.
    base: PriceTicks,
    ladder: Vec<u32>,
    bits: Vec<u64>,
    far: BTreeMap<PriceTicks, u32>,
    pub levels: Vec<Level>,
    free_levels: Vec<u32>,
    pub level_count: usize,
    /// Best price (0 = side empty).
    pub best: PriceTicks,
    /// Index of the level at `best` (NIL when the side is empty), so that the BBO and the
    /// matching loop need no ladder lookup.
    pub best_level: u32,
}

impl SideBook {
    pub fn new(side: Side) -> SideBook {
        SideBook {
            side,
            base: 0,
            ladder: vec![NIL; LADDER_TICKS as usize],
            bits: vec![0; LADDER_TICKS as usize / 64],
            far: BTreeMap::new(),
            levels: Vec::new(),
            free_levels: Vec::new(),
            level_count: 0,
            best: 0,
            best_level: NIL,
        }
    }

    fn in_ladder(&self, price: PriceTicks) -> bool {
        price >= self.base && price - self.base < LADDER_TICKS
    }

    /// Visible quantity at the best price (0 when the side is empty).
    #[inline(always)]
    pub fn best_visible(&self) -> QtyLots {
        if self.best_level == NIL {
            0
        } else {
            self.levels[self.best_level as usize].visible
        }
    }

    /// Whether `a` is a better price than `b` on this side.
    pub fn better(&self, a: PriceTicks, b: PriceTicks) -> bool {
        match self.side {
            Side::Buy => a > b,
            Side::Sell => a < b,
        }
    }

    /// The level at `price`, if any.
    pub fn level_at(&self, price: PriceTicks) -> Option<u32> {
        if self.in_ladder(price) {
            let l = self.ladder[(price - self.base) as usize];
            (l != NIL).then_some(l)
        } else {
            self.far.get(&price).copied()
        }
    }

    /// The level at `price`, created empty if missing. The caller checks the level limit.
    /// The lookup is inlined; creating a level is not.
    #[inline(always)]
    pub fn level_or_insert(&mut self, price: PriceTicks) -> u32 {
        if let Some(l) = self.level_at(price) {
            return l;
        }
        self.insert_level(price)
    }

    /// Creates the (missing) level at `price`.
    #[inline(never)]
    fn insert_level(&mut self, price: PriceTicks) -> u32 {
        if self.level_count == 0 {
            // Centre the ladder on the first price of an empty side.
            self.base = price.saturating_sub(LADDER_TICKS / 2);
        }
        let level = Level {
            price,
            head: NIL,
            tail: NIL,
            visible: 0,
            count: 0,
            touched_epoch: 0,
        };
        let idx = match self.free_levels.pop() {
            Some(i) => {
                self.levels[i as usize] = level;
                i
            }
            None => {
                self.levels.push(level);
                // The free list can then take every level without growing: removing a
                // level (in a sweep) never allocates.
                self.free_levels.reserve(self.levels.len());
                (self.levels.len() - 1) as u32
            }
        };
        if self.in_ladder(price) {
            let off = (price - self.base) as usize;
            self.ladder[off] = idx;
            self.bits[off / 64] |= 1 << (off % 64);
        } else {
            self.far.insert(price, idx);
        }
        self.level_count += 1;
        if self.best == 0 || self.better(price, self.best) {
            self.best = price;
            self.best_level = idx;
        }
        idx
    }

    /// Removes the (empty) level at `price`.
    pub fn remove_level(&mut self, price: PriceTicks) {
        let idx = if self.in_ladder(price) {
            let off = (price - self.base) as usize;
            let idx = self.ladder[off];
            self.ladder[off] = NIL;
            self.bits[off / 64] &= !(1 << (off % 64));
            idx
        } else {
            self.far.remove(&price).unwrap_or(NIL)
        };
        debug_assert!(idx != NIL, "removing a missing level");
        if idx == NIL {
            return;
        }
        self.free_levels.push(idx);
        self.level_count -= 1;
        if self.best == price {
            self.best = self.next_price(Some(price)).unwrap_or(0);
            self.best_level = self.level_at(self.best).unwrap_or(NIL);
        }
    }

    /// The next price in priority order strictly after `after` (or the best with None).
    pub fn next_price(&self, after: Option<PriceTicks>) -> Option<PriceTicks> {
        if self.level_count == 0 {
            return None;
        }
        match self.side {
            Side::Sell => {
                let from = after.map_or(0, |p| p.saturating_add(1));
                if after == Some(PriceTicks::MAX) {
                    return None;
                }
                let far = self.far.range(from..).next().map(|(p, _)| *p);
                let lad = self.ladder_up(from);
                match (far, lad) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
            Side::Buy => {
                let to = match after {
                    Some(0) => return None,
                    Some(p) => p - 1,
                    None => PriceTicks::MAX,
                };
                let far = self.far.range(..=to).next_back().map(|(p, _)| *p);
                let lad = self.ladder_down(to);
                match (far, lad) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                }
            }
        }
    }

    /// Lowest ladder price >= `from`.
    fn ladder_up(&self, from: PriceTicks) -> Option<PriceTicks> {
        let start = if from <= self.base {
            0
        } else {
            let off = from - self.base;
            if off >= LADDER_TICKS {
                return None;
            }
            off as usize
        };
        let mut w = start / 64;
        let mut word = self.bits[w] & (u64::MAX << (start % 64));
        loop {
            if word != 0 {
                return Some(self.base + (w * 64 + word.trailing_zeros() as usize) as u64);
            }
            w += 1;
            if w >= self.bits.len() {
                return None;
            }
            word = self.bits[w];
        }
    }

    /// Highest ladder price <= `to`.
    fn ladder_down(&self, to: PriceTicks) -> Option<PriceTicks> {
        if to < self.base {
            return None;
        }
        let end = (to - self.base).min(LADDER_TICKS - 1) as usize;
        let mut w = end / 64;
        let shift = 63 - (end % 64);
        let mut word = self.bits[w] & (u64::MAX >> shift);
        loop {
            if word != 0 {
                return Some(self.base + (w * 64 + 63 - word.leading_zeros() as usize) as u64);
            }
            if w == 0 {
                return None;
            }
            w -= 1;
            word = self.bits[w];
        }
    }

    /// Every level index in priority order (best first). Not for the hot path.
    pub fn levels_in_order(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.level_count);
        let mut p = self.next_price(None);
        while let Some(price) = p {
            if let Some(l) = self.level_at(price) {
                out.push(l);
            }
            p = self.next_price(Some(price));
        }
        out
    }
}

/// Appends order `oi` at the back of the queue of level `li`.
pub(crate) fn push_back(book: &mut SideBook, orders: &mut [Order], li: u32, oi: u32) {
    let level = &mut book.levels[li as usize];
    let tail = level.tail;
    {
        let o = &mut orders[oi as usize];
        o.prev = tail;
        o.next = NIL;
        o.resting = true;
        level.visible += o.visible;
    }
    if tail == NIL {
        level.head = oi;
    } else {
        orders[tail as usize].next = oi;
    }
    level.tail = oi;
    level.count += 1;
}

/// Takes order `oi` out of its level queue; removes the level if it became empty.
pub(crate) fn unlink(book: &mut SideBook, orders: &mut [Order], oi: u32) {
    let Some(li) = book.level_at(orders[oi as usize].price) else {
        debug_assert!(false, "unlinking an order whose level is missing");
        return;
    };
    unlink_at(book, orders, oi, li);
}

/// `unlink` when the caller already holds the index `li` of the order's level.
#[inline(always)]
pub(crate) fn unlink_at(book: &mut SideBook, orders: &mut [Order], oi: u32, li: u32) {
    let (prev, next, price, visible) = {
        let o = &orders[oi as usize];
        (o.prev, o.next, o.price, o.visible)
    };
    debug_assert_eq!(book.levels[li as usize].price, price);
    let level = &mut book.levels[li as usize];
    if prev == NIL {
        level.head = next;
    } else {
        orders[prev as usize].next = next;
    }
    if next == NIL {
        level.tail = prev;
    } else {
        orders[next as usize].prev = prev;
    }
    level.visible -= visible;
    level.count -= 1;
    let empty = level.count == 0;
    let o = &mut orders[oi as usize];
    o.prev = NIL;
    o.next = NIL;
    o.resting = false;
    if empty {
        book.remove_level(price);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_price_walks_ladder_and_far_levels_in_priority_order() {
        for side in [Side::Buy, Side::Sell] {
            let mut b = SideBook::new(side);
            let prices = [
                10_000u64, 10_001, 9_000, 20_000, 1, 3_000_000, 10_064, 9_999,
            ];
            for p in prices {
                b.level_or_insert(p);
            }
            let mut sorted = prices.to_vec();
            sorted.sort_unstable();
            if side == Side::Buy {
                sorted.reverse();
            }
            let got: Vec<u64> = b
                .levels_in_order()
                .iter()
                .map(|l| b.levels[*l as usize].price)
                .collect();
            assert_eq!(got, sorted);
            assert_eq!(b.best, sorted[0]);
            for p in sorted.clone() {
                b.remove_level(p);
                let rest: Vec<u64> = sorted
                    .iter()
                    .copied()
                    .filter(|x| if side == Side::Buy { *x < p } else { *x > p })
                    .collect();
                assert_eq!(b.best, rest.first().copied().unwrap_or(0));
            }
            assert_eq!(b.level_count, 0);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 200,
            failure_persistence: None,
            ..Default::default()
        })]

        /// The ladder + map + bitmap side agrees with a `BTreeSet` of prices, including prices
        /// far outside the ladder window and re-centring after the side empties.
        #[test]
        fn side_book_agrees_with_an_ordered_set(
            buy in proptest::bool::ANY,
            ops in proptest::collection::vec(
                (proptest::bool::ANY, proptest::prop_oneof![
                    9_900u64..10_100,
                    1u64..20_000,
                    0u64..3,
                    (PriceTicks::MAX - 3)..=PriceTicks::MAX,
                ]),
                1..200,
            ),
        ) {
            let side = if buy { Side::Buy } else { Side::Sell };
            let mut b = SideBook::new(side);
            let mut model = std::collections::BTreeSet::new();
            for (insert, price) in ops {
                if price == 0 {
                    continue; // 0 means "no price" on a side
                }
                if insert {
                    b.level_or_insert(price);
                    model.insert(price);
                } else if model.remove(&price) {
                    b.remove_level(price);
                }
                let mut want: Vec<u64> = model.iter().copied().collect();
                if side == Side::Buy {
                    want.reverse();
                }
                proptest::prop_assert_eq!(b.best, want.first().copied().unwrap_or(0));
                proptest::prop_assert_eq!(b.level_count, want.len());
                let got: Vec<u64> = b
                    .levels_in_order()
                    .iter()
                    .map(|l| b.levels[*l as usize].price)
                    .collect();
                proptest::prop_assert_eq!(got, want);
            }
        }
    }
}
