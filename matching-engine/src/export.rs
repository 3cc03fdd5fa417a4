//! State export and import (for snapshots), the canonical state hash, and the full
//! invariant check.
//!
//! The hash is SHA-256 over a canonical little-endian encoding of `EngineState` (see
//! `state.rs` for the order). It is the same for two engines exactly when their exported
//! states are equal, so replaying a journal on a snapshot can be checked against it.

use sha2::{Digest, Sha256};

use crate::book::{NIL, Order, push_back};
use crate::command::{MarketPhase, OrderType, PriceTicks, Side, TimeInForce};
use crate::engine::{Engine, EngineConfig, new_market};
use crate::limits::{ASSETS_MAX, ORDERS_MAX};
use crate::state::{
    AccountBalances, AssetBalance, EngineState, MarketSnapshot, OrderRecord, StateError,
};

impl Engine {
    pub(crate) fn record_of(&self, oi: u32) -> OrderRecord {
        let o = &self.orders[oi as usize];
        OrderRecord {
            order_id: o.id,
            client_order_id: o.client_order_id,
            account: o.account,
            side: o.side,
            order_type: o.order_type,
            time_in_force: o.tif,
            price: o.price,
            qty: o.qty,
            visible: o.visible,
            iceberg_peak: o.peak,
            stop_price: o.stop_price,
            expire_time_us: o.expire_time_us,
            stp: o.stp,
            session: o.session,
        }
    }

    /// The whole state in canonical order (see `state.rs`).
    pub fn export_state(&self) -> EngineState {
        let mut markets: Vec<MarketSnapshot> = self
            .markets
            .iter()
            .map(|m| {
                let side = |side: Side| {
                    let book = m.book(side);
                    let mut v = Vec::new();
                    for li in book.levels_in_order() {
                        let mut oi = book.levels[li as usize].head;
                        while oi != NIL {
                            v.push(self.record_of(oi));
                            oi = self.orders[oi as usize].next;
                        }
                    }
                    v
                };
                let mut stops: Vec<OrderRecord> = m
                    .buy_stops
                    .iter()
                    .chain(m.sell_stops.iter())
                    .filter_map(|(_, id)| self.order_index.get(id))
                    .map(|oi| self.record_of(*oi))
                    .collect();
                stops.sort_by_key(|o| o.order_id);
                MarketSnapshot {
                    config: m.cfg,
                    phase: m.phase,
                    last_price: m.last_price,
                    reference_price: m.reference_price,
                    bids: side(Side::Buy),
                    asks: side(Side::Sell),
                    stops,
                }
            })
            .collect();
        markets.sort_by_key(|m| m.config.market);
        let mut accounts: Vec<AccountBalances> = self
            .accounts
            .iter()
            .map(|a| AccountBalances {
                account: a.id,
                balances: a
                    .bal
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| b.available != 0 || b.held != 0)
                    .map(|(asset, b)| AssetBalance {
                        asset: asset as u16,
                        available: b.available,
                        held: b.held,
                    })
                    .collect(),
            })
            .filter(|a| !a.balances.is_empty())
            .collect();
        accounts.sort_by_key(|a| a.account);
        EngineState {
            fee_account: self.fee_account,
            last_seq: self.last_seq,
            last_time_us: self.last_time_us,
            next_order_id: self.next_order_id,
            next_trade_id: self.next_trade_id,
            markets,
            accounts,
        }
    }

    /// Rebuilds an engine from an exported state, checking that it is one this engine could
    /// have produced (valid configs, orders on their market's grid, holds matching orders).
    pub fn import_state(state: &EngineState) -> Result<Engine, StateError> {
        let mut e = Engine::new(EngineConfig {
            fee_account: state.fee_account,
        });
        e.last_seq = state.last_seq;
        e.last_time_us = state.last_time_us;
        e.next_order_id = state.next_order_id;
        e.next_trade_id = state.next_trade_id;
        for a in &state.accounts {
            let ai = e
                .account_or_create(a.account)
                .map_err(|_| StateError::LimitExceeded("accounts"))?;
            for b in &a.balances {
                if b.asset as usize >= ASSETS_MAX {
                    return Err(StateError::InvalidAccount {
                        account: a.account,
                        reason: "asset id out of range",
                    });
                }
                e.accounts[ai as usize].bal[b.asset as usize] = crate::engine::Balance {
                    available: b.available,
                    held: b.held,
                };
                let s = &mut e.supply[b.asset as usize];
                *s = s
                    .checked_add(b.available)
                    .and_then(|s| s.checked_add(b.held))
                    .ok_or(StateError::InvalidAccount {
                        account: a.account,
                        reason: "balances overflow the asset supply",
                    })?;
            }
        }
        for ms in &state.markets {
            let market = ms.config.market;
            let bad = |reason| StateError::InvalidMarket { market, reason };
            if e.market_index.contains_key(&u64::from(market)) {
                return Err(bad("duplicate market"));
            }
            ms.config.validate().map_err(|_| bad("invalid config"))?;
            let mi = e.markets.len() as u32;
            let mut m = new_market(ms.config);
            m.phase = ms.phase;
            m.last_price = ms.last_price;
            m.reference_price = ms.reference_price;
            e.markets.push(m);
            e.market_index.insert(u64::from(market), mi);
            for (side, list) in [(Side::Buy, &ms.bids), (Side::Sell, &ms.asks)] {
                let mut prev_price: Option<PriceTicks> = None;
                for r in list {
                    let oi = e.import_order(mi, r)?;
                    if r.side != side
                        || r.order_type != OrderType::Limit
                        || r.visible == 0
                        || (r.iceberg_peak != 0 && r.visible > r.iceberg_peak)
                    {
                        return Err(StateError::InvalidOrder {
                            order_id: r.order_id,
                            reason: "not a resting limit order of this side",
                        });
                    }
                    if let Some(p) = prev_price
                        && p != r.price
                        && !e.markets[mi as usize].book(side).better(p, r.price)
                    {
                        return Err(StateError::InvalidOrder {
                            order_id: r.order_id,
                            reason: "book not in priority order",
                        });
                    }
                    prev_price = Some(r.price);
                    let book = e.markets[mi as usize].book_mut(side);
                    let li = book.level_or_insert(r.price);
                    push_back(book, &mut e.orders, li, oi);
                    if r.time_in_force == TimeInForce::Gtd {
                        e.expiries.insert((r.expire_time_us, r.order_id));
                    }
                }
            }
            for r in &ms.stops {
                e.import_order(mi, r)?;
                let m = &mut e.markets[mi as usize];
                match (r.order_type, r.side) {
                    (OrderType::StopLimit | OrderType::StopMarket, Side::Buy) => {
                        m.buy_stops.insert((r.stop_price, r.order_id));
                    }
                    (OrderType::StopLimit | OrderType::StopMarket, Side::Sell) => {
                        m.sell_stops
                            .insert((PriceTicks::MAX - r.stop_price, r.order_id));
                    }
                    _ => {
                        return Err(StateError::InvalidOrder {
                            order_id: r.order_id,
                            reason: "not a stop order",
                        });
                    }
                }
                if r.time_in_force == TimeInForce::Gtd {
                    e.expiries.insert((r.expire_time_us, r.order_id));
                }
            }
        }
        e.check_invariants()?;
        Ok(e)
    }

    fn import_order(&mut self, mi: u32, r: &OrderRecord) -> Result<u32, StateError> {
        let bad = |reason| StateError::InvalidOrder {
            order_id: r.order_id,
            reason,
        };
        if self.order_index.len() >= ORDERS_MAX || !self.order_index.can_insert(r.order_id) {
            return Err(StateError::LimitExceeded("orders"));
        }
        if self.order_index.contains_key(&r.order_id) || r.order_id >= self.next_order_id {
            return Err(bad("duplicate or future order id"));
        }
        let m = &self.markets[mi as usize];
        if r.qty == 0 || r.visible > r.qty || r.price == 0 || r.price > m.cfg.max_price {
            return Err(bad("quantity or price out of range"));
        }
        let hold = m
            .hold_for(r.side, r.price, r.qty)
            .ok_or(bad("hold overflows"))?;
        let ai = *self
            .account_index
            .get(&r.account)
            .ok_or(bad("owner has no balances"))?;
        let order = Order {
            id: r.order_id,
            client_order_id: r.client_order_id,
            account: r.account,
            acct: ai,
            market: mi,
            side: r.side,
            order_type: r.order_type,
            tif: r.time_in_force,
            price: r.price,
            qty: r.qty,
            visible: r.visible,
            peak: r.iceberg_peak,
            stop_price: r.stop_price,
            expire_time_us: r.expire_time_us,
            stp: r.stp,
            session: r.session,
            hold,
            prev: NIL,
            next: NIL,
            resting: false,
            listed: true,
        };
        let oi = match self.free_orders.pop() {
            Some(i) => {
                self.orders[i as usize] = order;
                i
            }
            None => {
                self.orders.push(order);
                (self.orders.len() - 1) as u32
            }
        };
        self.order_index.insert(r.order_id, oi);
        // Owner lists must be in id order; records come by market and price, so the lists
        // are sorted once every order is in (`import_state`).
        self.accounts[ai as usize].order_ids.push(r.order_id);
        self.accounts[ai as usize].open_orders += 1;
        Ok(oi)
    }

    /// SHA-256 of the canonical encoding of `export_state()`.
    pub fn state_hash(&self) -> [u8; 32] {
        hash_state(&self.export_state())
    }

    /// Checks every invariant (O(orders + accounts)): books not crossed in continuous
    /// trading, level aggregates equal their orders, every order's hold is what it could
    /// spend, held balances equal the sum of their orders' holds, and the balances of each
    /// asset add up to its supply (no quantity created or lost).
    pub fn check_invariants(&self) -> Result<(), StateError> {
        let mut held = vec![[0u128; ASSETS_MAX]; self.accounts.len()];
        let mut count = vec![0u32; self.accounts.len()];
        for (mi, m) in self.markets.iter().enumerate() {
            let market = m.cfg.market;
            let bad = |reason| StateError::InvalidMarket { market, reason };
            if m.phase != MarketPhase::Auction
                && m.bids.best != 0
                && m.asks.best != 0
                && m.bids.best >= m.asks.best
            {
                return Err(bad("book crossed"));
            }
            for side in [Side::Buy, Side::Sell] {
                let book = m.book(side);
                if book.next_price(None).unwrap_or(0) != book.best {
                    return Err(bad("cached best price wrong"));
                }
                for li in book.levels_in_order() {
                    let l = &book.levels[li as usize];
                    let (mut vis, mut n, mut oi) = (0u64, 0u32, l.head);
                    while oi != NIL {
                        let o = &self.orders[oi as usize];
                        if o.price != l.price
                            || o.side != side
                            || !o.resting
                            || o.market as usize != mi
                        {
                            return Err(bad("order in the wrong level"));
                        }
                        if o.visible == 0 || o.visible > o.qty {
                            return Err(bad("visible quantity out of range"));
                        }
                        vis += o.visible;
                        n += 1;
                        oi = o.next;
                    }
                    if vis != l.visible || n != l.count || n == 0 {
                        return Err(bad("level aggregate wrong"));
                    }
                }
            }
        }
        // Open orders are the slab entries the id index points at (freed entries are not).
        let mut open = 0usize;
        for (oi, o) in self.orders.iter().enumerate() {
            if self.order_index.get(&o.id) != Some(&(oi as u32)) {
                continue;
            }
            open += 1;
            let id = o.id;
            let m = &self.markets[o.market as usize];
            if o.qty == 0 {
                return Err(StateError::InvalidOrder {
                    order_id: id,
                    reason: "index or quantity wrong",
                });
            }
            if Some(o.hold) != m.hold_for(o.side, o.price, o.qty) {
                return Err(StateError::InvalidOrder {
                    order_id: id,
                    reason: "hold is not what the order could spend",
                });
            }
            held[o.acct as usize][m.hold_asset(o.side) as usize] += o.hold as u128;
            count[o.acct as usize] += 1;
        }
        if open != self.order_index.len() {
            return Err(StateError::LimitExceeded("order index and slab disagree"));
        }
        let mut supply = [0u128; ASSETS_MAX];
        for (ai, a) in self.accounts.iter().enumerate() {
            if count[ai] != a.open_orders {
                return Err(StateError::InvalidAccount {
                    account: a.id,
                    reason: "open order count wrong",
                });
            }
            // The owner list holds exactly the account's open orders, in any order (entries
            // are distinct, open, the account's own, and as many as it has open).
            let mut sorted = a.order_ids.clone();
            sorted.sort_unstable();
            if sorted.windows(2).any(|w| w[0] == w[1]) {
                return Err(StateError::InvalidAccount {
                    account: a.id,
                    reason: "order list holds an id twice",
                });
            }
            let mut live = 0u32;
            for id in &a.order_ids {
                if let Some(&oi) = self.order_index.get(id) {
                    if self.orders[oi as usize].acct as usize != ai {
                        return Err(StateError::InvalidAccount {
                            account: a.id,
                            reason: "order list holds another account's order",
                        });
                    }
                    live += 1;
                }
            }
            if live != a.open_orders || a.order_ids.len() != live as usize {
                return Err(StateError::InvalidAccount {
                    account: a.id,
                    reason: "order list wrong",
                });
            }
            for asset in 0..ASSETS_MAX {
                if held[ai][asset] != a.bal[asset].held as u128 {
                    return Err(StateError::HoldMismatch {
                        account: a.id,
                        asset: asset as u16,
                    });
                }
                supply[asset] += a.bal[asset].available as u128 + a.bal[asset].held as u128;
            }
        }
        for (sum, &expected) in supply.iter().zip(self.supply.iter()) {
            if *sum != expected as u128 {
                return Err(StateError::InvalidAccount {
                    account: self.fee_account,
                    reason: "balances do not add up to the asset supply",
                });
            }
        }
        Ok(())
    }
}

/// SHA-256 over the canonical little-endian encoding of a state.
pub fn hash_state(s: &EngineState) -> [u8; 32] {
    let mut h = Sha256::new();
    let u = |h: &mut Sha256, v: u64| h.update(v.to_le_bytes());
    h.update(b"rempart-engine-state-v1");
    u(&mut h, s.fee_account);
    u(&mut h, s.last_seq);
    u(&mut h, s.last_time_us);
    u(&mut h, s.next_order_id);
    u(&mut h, s.next_trade_id);
    u(&mut h, s.markets.len() as u64);
    for m in &s.markets {
        let c = &m.config;
        for v in [
            u64::from(c.market),
            u64::from(c.base_asset),
            u64::from(c.quote_asset),
            u64::from(c.base_decimals),
            u64::from(c.quote_decimals),
            c.tick_mantissa,
            u64::from(c.tick_scale),
            c.lot_size_base_minor,
            c.min_qty,
            c.max_qty,
            c.max_price,
            u64::from(c.band_bps),
            c.band_action as u64,
            c.reference_price,
            u64::from(c.market_protection_bps),
            u64::from(c.maker_fee_bps),
            u64::from(c.taker_fee_bps),
            m.phase as u64,
            m.last_price,
            m.reference_price,
        ] {
            u(&mut h, v);
        }
        for list in [&m.bids, &m.asks, &m.stops] {
            u(&mut h, list.len() as u64);
            for o in list.iter() {
                for v in [
                    o.order_id,
                    o.client_order_id,
                    o.account,
                    o.side as u64,
                    o.order_type as u64,
                    o.time_in_force as u64,
                    o.price,
                    o.qty,
                    o.visible,
                    o.iceberg_peak,
                    o.stop_price,
                    o.expire_time_us,
                    o.stp as u64,
                    o.session,
                ] {
                    u(&mut h, v);
                }
            }
        }
    }
    u(&mut h, s.accounts.len() as u64);
    for a in &s.accounts {
        u(&mut h, a.account);
        u(&mut h, a.balances.len() as u64);
        for b in &a.balances {
            u(&mut h, u64::from(b.asset));
            u(&mut h, b.available);
            u(&mut h, b.held);
        }
    }
    h.finalize().into()
}
