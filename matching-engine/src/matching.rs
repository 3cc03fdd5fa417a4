//! Continuous matching, self-trade prevention, trade settlement against holds, iceberg
//! replenishment, stop triggers and the call-auction uncross.
//!
//! Rules (also in ARCHITECTURE.md):
//! - Price-time priority; a trade happens at the resting order's price.
//! - An incoming order's whole open quantity (an iceberg's hidden part too) can trade; a
//!   resting iceberg shows its peak, and when the peak is used up it is refilled from the
//!   reserve and goes to the back of its level's queue.
//! - The band (in `BandAction::Halt` markets) is measured from the reference price as it was
//!   at the start of the command, so a sweep cannot walk the band along with it.
//! - Stops trigger on the last trade price after the incoming order has finished matching:
//!   buy stops when last >= stop (lowest stop price first), sell stops when last <= stop
//!   (highest first); between a triggered buy and sell stop the older (lower id) goes first;
//!   each triggered order matches fully before the next trigger is looked for.
//! - Auction uncross: the price maximising executed volume, then minimising imbalance, then
//!   closest to the reference price, then the lower price. Self-trade prevention does not
//!   apply to the uncross, and both sides pay the maker fee.

use crate::book::{NIL, push_back, unlink, unlink_at};
use crate::command::{
    AccountId, Aggressor, BandAction, CancelReason, Event, MarketPhase, OrderType, PriceTicks,
    QtyLots, Side, StpMode, TimeInForce,
};
use crate::engine::{Engine, bps_of, crosses, record_balance};
use crate::limits::ASSETS_MAX;

impl Engine {
    /// Whether an FOK order could trade its whole quantity now. Levels are counted in
    /// priority order within its limit (and, in Halt-band markets, within the band); a level
    /// holding one of the account's own orders stops the count when self-trade prevention
    /// would stop or reduce the order there (every mode but None and CancelOldest), and with
    /// CancelOldest the own orders are skipped.
    pub(crate) fn fok_fillable(
        &self,
        mi: u32,
        side: Side,
        limit: PriceTicks,
        qty: QtyLots,
        account: AccountId,
        stp: StpMode,
    ) -> bool {
        let m = &self.markets[mi as usize];
        let book = m.book(side.opposite());
        let mut need = qty;
        let mut p = book.next_price(None);
        while let Some(price) = p {
            if !crosses(side, limit, price)
                || (m.cfg.band_action == BandAction::Halt && m.outside_band(price))
            {
                break;
            }
            let Some(li) = book.level_at(price) else {
                break;
            };
            let mut sum: u64 = 0;
            let mut oi = book.levels[li as usize].head;
            while oi != NIL {
                let o = &self.orders[oi as usize];
                if stp != StpMode::None && o.account == account {
                    if stp != StpMode::CancelOldest {
                        return false;
                    }
                } else {
                    sum += o.qty;
                }
                oi = o.next;
            }
            if sum >= need {
                return true;
            }
            need -= sum;
            p = book.next_price(Some(price));
        }
        false
    }

    /// Matches the incoming order `oi` against the opposite side, then rests, cancels or
    /// frees what is left of it.
    pub(crate) fn match_taker(&mut self, mi: u32, oi: u32, out: &mut Vec<Event>) {
        let (side, limit, account, stp) = {
            let o = &self.orders[oi as usize];
            (o.side, o.price, o.account, o.stp)
        };
        let aggressor = match side {
            Side::Buy => Aggressor::Buy,
            Side::Sell => Aggressor::Sell,
        };
        let mut halted = false;
        loop {
            if self.orders[oi as usize].qty == 0 {
                break;
            }
            let m = &self.markets[mi as usize];
            let book = m.book(side.opposite());
            let best = book.best;
            if best == 0 || !crosses(side, limit, best) {
                break;
            }
            if m.cfg.band_action == BandAction::Halt && m.outside_band(best) {
                halted = true;
                self.markets[mi as usize].phase = MarketPhase::Halted;
                out.push(Event::PhaseChanged {
                    market: self.markets[mi as usize].cfg.market,
                    phase: MarketPhase::Halted,
                });
                break;
            }
            let li = book.best_level;
            if li == NIL {
                break;
            }
            let mo = book.levels[li as usize].head;
            let maker_account = self.orders[mo as usize].account;
            if stp != StpMode::None && maker_account == account {
                match stp {
                    StpMode::CancelNewest => {
                        self.cancel_order(oi, CancelReason::SelfTrade, out);
                        return;
                    }
                    StpMode::CancelOldest => {
                        self.cancel_order(mo, CancelReason::SelfTrade, out);
                        continue;
                    }
                    StpMode::CancelBoth => {
                        self.cancel_order(mo, CancelReason::SelfTrade, out);
                        self.cancel_order(oi, CancelReason::SelfTrade, out);
                        return;
                    }
                    StpMode::Decrement | StpMode::None => {
                        let q = self.orders[oi as usize]
                            .qty
                            .min(self.orders[mo as usize].qty);
                        self.reduce(mo, q, out);
                        self.reduce(oi, q, out);
                        if self.orders[oi as usize].qty == 0 {
                            self.cancel_order(oi, CancelReason::SelfTrade, out);
                            return;
                        }
                        continue;
                    }
                }
            }
            let q = self.orders[oi as usize]
                .qty
                .min(self.orders[mo as usize].visible);
            let (buy, sell) = match side {
                Side::Buy => (oi, mo),
                Side::Sell => (mo, oi),
            };
            // The maker's level, whose index is at hand (the taker does not rest).
            self.fill_level(mi, side.opposite(), li, q);
            self.trade(mi, buy, sell, best, q, aggressor, out);
            self.after_fill(mo, Some(li), out);
        }
        let o = &self.orders[oi as usize];
        if o.qty == 0 {
            self.free_order(oi);
        } else if halted {
            self.cancel_order(oi, CancelReason::Halted, out);
        } else if matches!(o.tif, TimeInForce::Ioc | TimeInForce::Fok)
            || matches!(o.order_type, OrderType::Market | OrderType::StopMarket)
        {
            self.cancel_order(oi, CancelReason::Unfilled, out);
        } else {
            self.rest(oi);
        }
    }

    /// After a resting order traded or was reduced: remove it when empty, refill its peak
    /// (at the back of the queue) when only the peak is used up. `li` is the index of its
    /// level when the caller holds it (matching: the best level), else it is looked up.
    #[inline(always)]
    fn after_fill(&mut self, oi: u32, li: Option<u32>, out: &mut Vec<Event>) {
        let o = &self.orders[oi as usize];
        if !o.resting {
            return;
        }
        let (mi, side, qty, visible, peak, id) = (o.market, o.side, o.qty, o.visible, o.peak, o.id);
        if qty == 0 {
            let book = self.markets[mi as usize].book_mut(side);
            match li {
                Some(li) => unlink_at(book, &mut self.orders, oi, li),
                None => unlink(book, &mut self.orders, oi),
            }
            self.free_order(oi);
        } else if visible == 0 {
            let refill = if peak > 0 { peak.min(qty) } else { qty };
            let book = self.markets[mi as usize].book_mut(side);
            let li = li.or_else(|| book.level_at(self.orders[oi as usize].price));
            if let Some(li) = li {
                if book.levels[li as usize].count > 1 {
                    unlink(book, &mut self.orders, oi);
                    self.orders[oi as usize].visible = refill;
                    push_back(book, &mut self.orders, li, oi);
                } else {
                    self.orders[oi as usize].visible = refill;
                    book.levels[li as usize].visible += refill;
                }
            }
            out.push(Event::IcebergReplenished {
                order_id: id,
                market: self.markets[mi as usize].cfg.market,
                visible: refill,
            });
        }
    }

    /// Self-trade prevention (Decrement): takes `q` lots off an order without trading.
    fn reduce(&mut self, oi: u32, q: QtyLots, out: &mut Vec<Event>) {
        let (mi, side, price, resting) = {
            let o = &self.orders[oi as usize];
            (o.market, o.side, o.price, o.resting)
        };
        if resting {
            self.touch_level(mi, side, price);
        }
        let m = &self.markets[mi as usize];
        let o = &mut self.orders[oi as usize];
        o.qty -= q;
        let new_visible = o.visible.min(o.qty);
        let hidden_less = o.visible - new_visible;
        o.visible = new_visible;
        let new_hold = m.hold_for(side, o.price, o.qty).unwrap_or(o.hold);
        let release = o.hold - new_hold;
        o.hold = new_hold;
        let (id, account, ai, remaining) = (o.id, o.account, o.acct, o.qty);
        let asset = m.hold_asset(side);
        let market = m.cfg.market;
        if resting {
            let book = self.markets[mi as usize].book_mut(side);
            if let Some(li) = book.level_at(price) {
                book.levels[li as usize].visible -= hidden_less;
            }
        }
        self.release(ai, asset, release);
        out.push(Event::OrderReduced {
            order_id: id,
            account,
            market,
            reduced: q,
            remaining,
        });
        if resting {
            if remaining == 0 {
                self.cancel_order(oi, CancelReason::SelfTrade, out);
            } else {
                self.after_fill(oi, None, out);
            }
        }
    }

    /// Settles one trade of `q` lots at `price` between the buy order `buy` and the sell
    /// order `sell`: moves base and quote, charges fees to the fee account, shrinks both
    /// orders and their holds. The buyer's hold released is never less than what it pays
    /// (price <= its limit, fee bps <= the held fee bps, floor rounding of fees). The levels
    /// of the resting parties are the caller's (`fill_level`, before the trade): it holds
    /// their indices, which spares a ladder lookup per fill.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(crate) fn trade(
        &mut self,
        mi: u32,
        buy: u32,
        sell: u32,
        price: PriceTicks,
        q: QtyLots,
        aggressor: Aggressor,
        out: &mut Vec<Event>,
    ) {
        let m = &self.markets[mi as usize];
        let (base, quote) = (m.cfg.base_asset, m.cfg.quote_asset);
        // Always true (`MarketConfig::validate`); checked once here, it spares a bounds check
        // at each of the balances indexed below.
        assert!((base as usize) < ASSETS_MAX && (quote as usize) < ASSETS_MAX);
        let notional = price as u128 * q as u128 * m.tick_value as u128;
        let fee = |bps: u16| bps_of(notional, u64::from(bps)) as u64;
        let (maker_bps, taker_bps) = (m.cfg.maker_fee_bps, m.cfg.taker_fee_bps);
        let buy_fee = fee(if aggressor == Aggressor::Buy {
            taker_bps
        } else {
            maker_bps
        });
        let sell_fee = fee(if aggressor == Aggressor::Sell {
            taker_bps
        } else {
            maker_bps
        });
        let notional = notional as u64;
        let base_amount = q * m.cfg.lot_size_base_minor;
        let market = m.cfg.market;
        // Buyer: takes q lots off the order, releases the hold for them, pays notional + fee,
        // receives base. Each order record is indexed once.
        let (b_ai, b_id, b_acc, b_rem, b_release) = {
            let o = &mut self.orders[buy as usize];
            o.qty -= q;
            o.visible = o.visible.saturating_sub(q);
            let new_hold = m.hold_for(Side::Buy, o.price, o.qty).unwrap_or(0);
            let release = o.hold - new_hold;
            o.hold = new_hold;
            (o.acct, o.id, o.account, o.qty, release)
        };
        let pay = notional + buy_fee;
        assert!(
            b_release >= pay,
            "buy hold smaller than what the trade costs"
        );
        // Each party's account is indexed once for its records and its changes.
        let (market_data, md_epoch) = (self.market_data, self.md_epoch);
        {
            let a = &mut self.accounts[b_ai as usize];
            if market_data {
                record_balance(a, b_ai, quote, md_epoch, &mut self.touched_balances);
                record_balance(a, b_ai, base, md_epoch, &mut self.touched_balances);
            }
            let bq = &mut a.bal[quote as usize];
            bq.held -= b_release;
            bq.available += b_release - pay;
            a.bal[base as usize].available += base_amount;
        }
        // Seller: release and deliver q lots of base, receive notional - fee.
        let (s_ai, s_id, s_acc, s_rem) = {
            let o = &mut self.orders[sell as usize];
            o.qty -= q;
            o.visible = o.visible.saturating_sub(q);
            o.hold -= base_amount;
            (o.acct, o.id, o.account, o.qty)
        };
        {
            let a = &mut self.accounts[s_ai as usize];
            if market_data {
                record_balance(a, s_ai, base, md_epoch, &mut self.touched_balances);
                record_balance(a, s_ai, quote, md_epoch, &mut self.touched_balances);
            }
            a.bal[base as usize].held -= base_amount;
            a.bal[quote as usize].available += notional - sell_fee;
        }
        let fee_ai = self.fee_acct;
        {
            let a = &mut self.accounts[fee_ai as usize];
            if market_data {
                record_balance(a, fee_ai, quote, md_epoch, &mut self.touched_balances);
            }
            a.bal[quote as usize].available += buy_fee + sell_fee;
        }

        self.markets[mi as usize].last_price = price;
        let trade_id = self.next_trade_id;
        self.next_trade_id += 1;
        out.push(Event::Trade {
            trade_id,
            market,
            price,
            qty: q,
            buy_order: b_id,
            buy_account: b_acc,
            sell_order: s_id,
            sell_account: s_acc,
            aggressor,
            buy_fee,
            sell_fee,
            buy_remaining: b_rem,
            sell_remaining: s_rem,
        });
    }

    /// The level side of a fill: takes `q` lots off the visible aggregate of level `li`
    /// (the resting party's), recorded for market data first.
    #[inline(always)]
    fn fill_level(&mut self, mi: u32, side: Side, li: u32, q: QtyLots) {
        self.touch_level_at(mi, side, li);
        self.markets[mi as usize].book_mut(side).levels[li as usize].visible -= q;
    }

    /// Triggers and matches stops while the last trade price reaches them.
    #[inline(always)]
    pub(crate) fn run_stops(&mut self, mi: u32, out: &mut Vec<Event>) {
        // Most markets have no stop waiting: checked here, inlined, before the loop.
        let m = &self.markets[mi as usize];
        if m.buy_stops.is_empty() && m.sell_stops.is_empty() {
            return;
        }
        self.run_stops_loop(mi, out);
    }

    fn run_stops_loop(&mut self, mi: u32, out: &mut Vec<Event>) {
        loop {
            let m = &mut self.markets[mi as usize];
            if m.phase != MarketPhase::Continuous || m.last_price == 0 {
                return;
            }
            if m.buy_stops.is_empty() && m.sell_stops.is_empty() {
                return;
            }
            let last = m.last_price;
            let buy = m.buy_stops.first().filter(|(s, _)| *s <= last).copied();
            let sell = m
                .sell_stops
                .first()
                .filter(|(s, _)| PriceTicks::MAX - *s >= last)
                .copied();
            let id = match (buy, sell) {
                (Some(b), Some(s)) if s.1 < b.1 => {
                    m.sell_stops.remove(&s);
                    s.1
                }
                (Some(b), _) => {
                    m.buy_stops.remove(&b);
                    b.1
                }
                (None, Some(s)) => {
                    m.sell_stops.remove(&s);
                    s.1
                }
                (None, None) => return,
            };
            let market = m.cfg.market;
            let Some(&oi) = self.order_index.get(&id) else {
                continue;
            };
            let o = &mut self.orders[oi as usize];
            o.order_type = match o.order_type {
                OrderType::StopMarket => OrderType::Market,
                _ => OrderType::Limit,
            };
            let (account, side, price, qty, stp, tif) =
                (o.account, o.side, o.price, o.qty, o.stp, o.tif);
            out.push(Event::StopTriggered {
                order_id: id,
                account,
                market,
                last_price: last,
            });
            if tif == TimeInForce::Fok && !self.fok_fillable(mi, side, price, qty, account, stp) {
                self.cancel_order(oi, CancelReason::Unfilled, out);
                continue;
            }
            self.match_taker(mi, oi, out);
        }
    }

    /// Uncrosses an auction at one price, then returns the market to continuous trading.
    pub(crate) fn uncross(&mut self, mi: u32, out: &mut Vec<Event>) {
        let (price, volume) = self.uncross_price(mi);
        let mut left = volume;
        while left > 0 {
            let m = &self.markets[mi as usize];
            let (Some(bl), Some(al)) = (m.bids.level_at(m.bids.best), m.asks.level_at(m.asks.best))
            else {
                break;
            };
            let b = m.bids.levels[bl as usize].head;
            let a = m.asks.levels[al as usize].head;
            let q = left
                .min(self.orders[b as usize].visible)
                .min(self.orders[a as usize].visible);
            self.fill_level(mi, Side::Buy, bl, q);
            self.fill_level(mi, Side::Sell, al, q);
            self.trade(mi, b, a, price, q, Aggressor::Auction, out);
            // Both are the heads of the levels at hand (on two sides, so removing one level
            // leaves the other's index valid).
            self.after_fill(b, Some(bl), out);
            self.after_fill(a, Some(al), out);
            left -= q;
        }
        let m = &mut self.markets[mi as usize];
        if volume > 0 {
            m.reference_price = price;
        }
        m.phase = MarketPhase::Continuous;
        let market = m.cfg.market;
        out.push(Event::Uncrossed {
            market,
            price: if volume > 0 { price } else { 0 },
            volume,
        });
        out.push(Event::PhaseChanged {
            market,
            phase: MarketPhase::Continuous,
        });
        self.run_stops(mi, out);
    }

    /// The uncross price and volume (0, 0 when nothing crosses).
    pub(crate) fn uncross_price(&self, mi: u32) -> (PriceTicks, QtyLots) {
        let m = &self.markets[mi as usize];
        let totals = |side: Side| -> Vec<(PriceTicks, u64)> {
            let book = m.book(side);
            book.levels_in_order()
                .into_iter()
                .map(|li| {
                    let l = &book.levels[li as usize];
                    let mut sum = 0u64;
                    let mut oi = l.head;
                    while oi != NIL {
                        sum += self.orders[oi as usize].qty;
                        oi = self.orders[oi as usize].next;
                    }
                    (l.price, sum)
                })
                .collect()
        };
        let bids = totals(Side::Buy); // descending price
        let asks = totals(Side::Sell); // ascending price
        if bids.is_empty() || asks.is_empty() || bids[0].0 < asks[0].0 {
            return (0, 0);
        }
        let mut candidates: Vec<PriceTicks> =
            bids.iter().chain(asks.iter()).map(|(p, _)| *p).collect();
        candidates.sort_unstable();
        candidates.dedup();
        let reference = m.reference_price;
        let mut best: Option<(u64, u64, u64, PriceTicks)> = None; // (volume, imbalance, distance, price)
        // Candidates ascend, so the volume offered at or below p only grows and the volume
        // bid at or above p only shrinks: two cursors make this linear.
        let mut buy: u64 = bids.iter().map(|(_, q)| q).sum();
        let mut sell: u64 = 0;
        let (mut ai, mut bi) = (0usize, bids.len());
        for &p in &candidates {
            while ai < asks.len() && asks[ai].0 <= p {
                sell += asks[ai].1;
                ai += 1;
            }
            while bi > 0 && bids[bi - 1].0 < p {
                buy -= bids[bi - 1].1;
                bi -= 1;
            }
            let vol = buy.min(sell);
            if vol == 0 {
                continue;
            }
            let imbalance = buy.abs_diff(sell);
            let distance = if reference == 0 {
                0
            } else {
                p.abs_diff(reference)
            };
            let better = match best {
                None => true,
                Some((bv, bi, bd, _)) => {
                    vol > bv
                        || (vol == bv && (imbalance < bi || (imbalance == bi && distance < bd)))
                }
            };
            if better {
                best = Some((vol, imbalance, distance, p));
            }
        }
        best.map_or((0, 0), |(v, _, _, p)| (p, v))
    }
}
