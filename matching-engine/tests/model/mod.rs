//! A naive reference engine: every open order in one `Vec`, every lookup a linear scan,
//! balances in a `BTreeMap`, market-data events computed by diffing the whole book and all
//! balances before and after each command. It follows the rules written in ARCHITECTURE.md
//! (and `matching.rs`'s module doc) as directly as possible, so that the property tests can
//! compare every event of the real engine against it.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use matching_engine::limits::OPEN_ORDERS_PER_ACCOUNT_MAX;
use matching_engine::{
    AccountId, Aggressor, BandAction, CancelReason, Command, CommandKind, Event, MarketConfig,
    MarketPhase, NewOrder, OrderId, OrderType, PostOnly, RejectCode, Side, StpMode, TimeInForce,
};

#[derive(Clone, Debug)]
struct MOrder {
    id: OrderId,
    account: AccountId,
    market: u32,
    side: Side,
    otype: OrderType,
    tif: TimeInForce,
    price: u64,
    qty: u64,
    visible: u64,
    peak: u64,
    stop: u64,
    expire: u64,
    stp: StpMode,
    session: u64,
    hold: u64,
    resting: bool,
    /// Time priority: smaller is earlier in its level's queue.
    qpos: u64,
}

#[derive(Clone, Debug)]
struct MMarket {
    cfg: MarketConfig,
    phase: MarketPhase,
    last: u64,
    reference: u64,
}

impl MMarket {
    fn tick_value(&self) -> u64 {
        self.cfg.tick_value_quote_minor().unwrap()
    }
    fn hold_for(&self, side: Side, price: u64, qty: u64) -> u64 {
        match side {
            Side::Buy => {
                let n = price as u128 * qty as u128 * self.tick_value() as u128;
                let bps = self.cfg.maker_fee_bps.max(self.cfg.taker_fee_bps) as u128;
                (n + n * bps / 10_000) as u64
            }
            Side::Sell => qty * self.cfg.lot_size_base_minor,
        }
    }
    fn hold_asset(&self, side: Side) -> u16 {
        if side == Side::Buy {
            self.cfg.quote_asset
        } else {
            self.cfg.base_asset
        }
    }
    fn outside_band(&self, p: u64) -> bool {
        let r = self.reference as u128;
        self.cfg.band_bps != 0
            && r != 0
            && (p as u128).abs_diff(r) * 10_000 > self.cfg.band_bps as u128 * r
    }
}

fn crosses(side: Side, limit: u64, best: u64) -> bool {
    if side == Side::Buy {
        best <= limit
    } else {
        best >= limit
    }
}

/// Priority key of a resting order within its side: better price first, then earlier.
fn prio(o: &MOrder) -> (u64, u64) {
    let p = if o.side == Side::Buy {
        u64::MAX - o.price
    } else {
        o.price
    };
    (p, o.qpos)
}

pub struct Model {
    fee_account: AccountId,
    last_seq: u64,
    last_time: u64,
    next_id: u64,
    next_trade: u64,
    qcounter: u64,
    markets: Vec<MMarket>,
    accounts: BTreeSet<AccountId>,
    bal: BTreeMap<(AccountId, u16), (u64, u64)>,
    supply: BTreeMap<u16, u64>,
    orders: Vec<MOrder>,
}

type Snapshot = (
    BTreeMap<(u32, Side, u64), (u64, u32)>,
    BTreeMap<u32, [u64; 4]>,
    BTreeMap<(AccountId, u16), (u64, u64)>,
);

impl Model {
    pub fn new(fee_account: AccountId) -> Model {
        Model {
            fee_account,
            last_seq: 0,
            last_time: 0,
            next_id: 1,
            next_trade: 1,
            qcounter: 0,
            markets: Vec::new(),
            accounts: [fee_account].into_iter().collect(),
            bal: BTreeMap::new(),
            supply: BTreeMap::new(),
            orders: Vec::new(),
        }
    }

    fn market(&self, id: u32) -> Result<usize, RejectCode> {
        self.markets
            .iter()
            .position(|m| m.cfg.market == id)
            .ok_or(RejectCode::UnknownMarket)
    }

    fn b(&mut self, account: AccountId, asset: u16) -> &mut (u64, u64) {
        self.bal.entry((account, asset)).or_insert((0, 0))
    }

    fn snapshot(&self) -> Snapshot {
        let mut l2 = BTreeMap::new();
        for o in self.orders.iter().filter(|o| o.resting) {
            let e = l2.entry((o.market, o.side, o.price)).or_insert((0, 0));
            e.0 += o.visible;
            e.1 += 1;
        }
        let mut bbo = BTreeMap::new();
        for m in &self.markets {
            let id = m.cfg.market;
            let best = |side: Side| {
                let p = self
                    .orders
                    .iter()
                    .filter(|o| o.resting && o.market == id && o.side == side)
                    .min_by_key(|o| prio(o))
                    .map_or(0, |o| o.price);
                (p, l2.get(&(id, side, p)).map_or(0, |x: &(u64, u32)| x.0))
            };
            let (bp, bq) = best(Side::Buy);
            let (ap, aq) = best(Side::Sell);
            bbo.insert(id, [bp, bq, ap, aq]);
        }
        let bal = self
            .bal
            .iter()
            .filter(|(_, v)| **v != (0, 0))
            .map(|(k, v)| (*k, *v))
            .collect();
        (l2, bbo, bal)
    }

    pub fn apply(&mut self, cmd: &Command) -> Vec<Event> {
        let mut out = Vec::new();
        if cmd.seq <= self.last_seq {
            out.push(reject(RejectCode::SeqOutOfOrder, &cmd.kind));
            return out;
        }
        if cmd.time_us < self.last_time {
            out.push(reject(RejectCode::TimeWentBackwards, &cmd.kind));
            return out;
        }
        let before = self.snapshot();
        self.last_seq = cmd.seq;
        self.last_time = cmd.time_us;
        // GTD expiry, earliest (time, id) first.
        while let Some(o) = self
            .orders
            .iter()
            .filter(|o| o.tif == TimeInForce::Gtd && o.expire <= cmd.time_us)
            .min_by_key(|o| (o.expire, o.id))
        {
            let id = o.id;
            self.cancel_id(id, CancelReason::Expired, &mut out);
        }
        let r = match cmd.kind {
            CommandKind::PlaceOrder(ref o) => self.place(o, cmd.time_us, &mut out),
            CommandKind::Cancel {
                account,
                market,
                order_id,
            } => self.cancel(account, market, order_id, &mut out),
            CommandKind::Amend {
                account,
                market,
                order_id,
                new_price,
                new_qty,
            } => self.amend(account, market, order_id, new_price, new_qty, &mut out),
            CommandKind::MassCancel { account, market } => {
                let mut ids: Vec<u64> = self
                    .orders
                    .iter()
                    .filter(|o| o.account == account && market.is_none_or(|m| m == o.market))
                    .map(|o| o.id)
                    .collect();
                ids.sort_unstable();
                for id in ids {
                    self.cancel_id(id, CancelReason::MassCancel, &mut out);
                }
                Ok(())
            }
            CommandKind::CancelOnDisconnect { account, session } => {
                let mut ids: Vec<u64> = self
                    .orders
                    .iter()
                    .filter(|o| session != 0 && o.account == account && o.session == session)
                    .map(|o| o.id)
                    .collect();
                ids.sort_unstable();
                for id in ids {
                    self.cancel_id(id, CancelReason::Disconnect, &mut out);
                }
                Ok(())
            }
            CommandKind::Deposit {
                account,
                asset,
                amount,
            } => {
                if asset >= 16 {
                    Err(RejectCode::UnknownAsset)
                } else if amount == 0 {
                    Err(RejectCode::InvalidAmount)
                } else if self
                    .supply
                    .get(&asset)
                    .copied()
                    .unwrap_or(0)
                    .checked_add(amount)
                    .is_none()
                {
                    Err(RejectCode::AmountOverflow)
                } else {
                    *self.supply.entry(asset).or_insert(0) += amount;
                    self.accounts.insert(account);
                    self.b(account, asset).0 += amount;
                    Ok(())
                }
            }
            CommandKind::Withdraw {
                account,
                asset,
                amount,
            } => {
                if asset >= 16 {
                    Err(RejectCode::UnknownAsset)
                } else if amount == 0 {
                    Err(RejectCode::InvalidAmount)
                } else if !self.accounts.contains(&account) || self.b(account, asset).0 < amount {
                    Err(RejectCode::InsufficientFunds)
                } else {
                    self.b(account, asset).0 -= amount;
                    *self.supply.get_mut(&asset).unwrap() -= amount;
                    Ok(())
                }
            }
            CommandKind::CreateMarket(cfg) => {
                if self.market(cfg.market).is_ok() {
                    Err(RejectCode::MarketExists)
                } else {
                    cfg.validate().map(|()| {
                        self.markets.push(MMarket {
                            cfg,
                            phase: MarketPhase::Continuous,
                            last: 0,
                            reference: cfg.reference_price,
                        });
                        out.push(Event::MarketCreated { market: cfg.market });
                    })
                }
            }
            CommandKind::Halt { market } => self.phase(market, 0, &mut out),
            CommandKind::Resume { market } => self.phase(market, 1, &mut out),
            CommandKind::StartAuction { market } => self.phase(market, 2, &mut out),
            CommandKind::Uncross { market } => self.phase(market, 3, &mut out),
            CommandKind::Tick => Ok(()),
        };
        if let Err(code) = r {
            out.push(reject(code, &cmd.kind));
        }
        for m in &mut self.markets {
            if m.last != 0 {
                m.reference = m.last;
            }
        }
        // Market data and balances: the differences between before and after.
        let after = self.snapshot();
        let keys: BTreeSet<_> = before.0.keys().chain(after.0.keys()).copied().collect();
        for k in keys {
            let (b, a) = (
                before.0.get(&k).copied().unwrap_or((0, 0)),
                after.0.get(&k).copied().unwrap_or((0, 0)),
            );
            if a != b {
                out.push(Event::Depth {
                    market: k.0,
                    side: k.1,
                    price: k.2,
                    qty: a.0,
                    orders: a.1,
                });
            }
        }
        for (id, a) in &after.1 {
            if before.1.get(id).copied().unwrap_or([0; 4]) != *a {
                out.push(Event::Bbo {
                    market: *id,
                    bid_price: a[0],
                    bid_qty: a[1],
                    ask_price: a[2],
                    ask_qty: a[3],
                });
            }
        }
        let keys: BTreeSet<_> = before.2.keys().chain(after.2.keys()).copied().collect();
        for k in keys {
            let (b, a) = (
                before.2.get(&k).copied().unwrap_or((0, 0)),
                after.2.get(&k).copied().unwrap_or((0, 0)),
            );
            if a != b {
                out.push(Event::Balance {
                    account: k.0,
                    asset: k.1,
                    available: a.0,
                    held: a.1,
                });
            }
        }
        out
    }

    fn phase(&mut self, market: u32, op: u8, out: &mut Vec<Event>) -> Result<(), RejectCode> {
        let mi = self.market(market)?;
        let p = self.markets[mi].phase;
        let next = match (op, p) {
            (0, MarketPhase::Continuous) => MarketPhase::Halted,
            (1, MarketPhase::Halted) => MarketPhase::Continuous,
            (2, MarketPhase::Continuous | MarketPhase::Halted) => MarketPhase::Auction,
            (3, MarketPhase::Auction) => {
                self.uncross(mi, out);
                return Ok(());
            }
            (3, _) => return Err(RejectCode::NotInAuction),
            _ => return Err(RejectCode::InvalidPhase),
        };
        self.markets[mi].phase = next;
        out.push(Event::PhaseChanged {
            market,
            phase: next,
        });
        Ok(())
    }

    fn idx(&self, id: OrderId) -> Option<usize> {
        self.orders.iter().position(|o| o.id == id)
    }

    fn cancel_id(&mut self, id: OrderId, reason: CancelReason, out: &mut Vec<Event>) {
        let i = self.idx(id).unwrap();
        let o = self.orders.remove(i);
        let m = &self.markets[self.market(o.market).unwrap()];
        let asset = m.hold_asset(o.side);
        let b = self.b(o.account, asset);
        b.1 -= o.hold;
        b.0 += o.hold;
        out.push(Event::OrderCancelled {
            order_id: o.id,
            account: o.account,
            market: o.market,
            qty: o.qty,
            reason,
        });
    }

    fn cancel(
        &mut self,
        account: AccountId,
        market: u32,
        id: OrderId,
        out: &mut Vec<Event>,
    ) -> Result<(), RejectCode> {
        self.market(market)?;
        match self.idx(id) {
            Some(i) if self.orders[i].account == account && self.orders[i].market == market => {
                self.cancel_id(id, CancelReason::Requested, out);
                Ok(())
            }
            _ => Err(RejectCode::UnknownOrder),
        }
    }

    fn best_opposite(&self, market: u32, side: Side) -> Option<usize> {
        (0..self.orders.len())
            .filter(|&i| {
                let o = &self.orders[i];
                o.resting && o.market == market && o.side != side
            })
            .min_by_key(|&i| prio(&self.orders[i]))
    }

    fn amend(
        &mut self,
        account: AccountId,
        market: u32,
        id: OrderId,
        price: u64,
        qty: u64,
        out: &mut Vec<Event>,
    ) -> Result<(), RejectCode> {
        use RejectCode as R;
        let mi = self.market(market)?;
        let i = match self.idx(id) {
            Some(i) if self.orders[i].account == account && self.orders[i].market == market => i,
            _ => return Err(R::UnknownOrder),
        };
        let m = self.markets[mi].clone();
        if m.phase == MarketPhase::Halted {
            return Err(R::MarketHalted);
        }
        let o = self.orders[i].clone();
        if !o.resting {
            return Err(R::OrderNotAmendable);
        }
        if qty == 0 {
            return Err(R::InvalidQuantity);
        }
        if qty > m.cfg.max_qty {
            return Err(R::QtyAboveMax);
        }
        if price == 0 || price > m.cfg.max_price {
            return Err(R::InvalidPrice);
        }
        if price == o.price && qty == o.qty {
            return Err(R::AmendNoChange);
        }
        if price != o.price {
            if m.cfg.band_action == BandAction::Reject && m.outside_band(price) {
                return Err(R::PriceOutsideBand);
            }
            if m.phase == MarketPhase::Continuous
                && let Some(b) = self.best_opposite(market, o.side)
                && crosses(o.side, price, self.orders[b].price)
            {
                return Err(R::AmendWouldCross);
            }
        }
        let new_hold = m.hold_for(o.side, price, qty);
        let asset = m.hold_asset(o.side);
        if new_hold > o.hold && self.b(account, asset).0 < new_hold - o.hold {
            return Err(R::InsufficientFunds);
        }
        let b = self.b(account, asset);
        b.0 = b.0 + o.hold - new_hold;
        b.1 = b.1 - o.hold + new_hold;
        let keep = price == o.price && qty < o.qty;
        let o = &mut self.orders[i];
        o.hold = new_hold;
        if keep {
            o.qty = qty;
            o.visible = o.visible.min(qty);
        } else {
            o.price = price;
            o.qty = qty;
            o.visible = if o.peak > 0 { o.peak.min(qty) } else { qty };
            self.qcounter += 1;
            o.qpos = self.qcounter;
        }
        out.push(Event::OrderAmended {
            order_id: id,
            account,
            market,
            price,
            qty,
            priority_kept: keep,
        });
        Ok(())
    }

    fn fok_fillable(
        &self,
        market: u32,
        side: Side,
        limit: u64,
        qty: u64,
        account: AccountId,
        stp: StpMode,
    ) -> bool {
        let m = &self.markets[self.market(market).unwrap()];
        let mut makers: Vec<&MOrder> = self
            .orders
            .iter()
            .filter(|o| o.resting && o.market == market && o.side != side)
            .collect();
        makers.sort_by_key(|o| prio(o));
        let mut prices: Vec<u64> = makers.iter().map(|o| o.price).collect();
        prices.dedup();
        let mut need = qty;
        for p in prices {
            if !crosses(side, limit, p)
                || (m.cfg.band_action == BandAction::Halt && m.outside_band(p))
            {
                return false;
            }
            let mut sum = 0;
            for o in makers.iter().filter(|o| o.price == p) {
                if stp != StpMode::None && o.account == account {
                    if stp != StpMode::CancelOldest {
                        return false;
                    }
                } else {
                    sum += o.qty;
                }
            }
            if sum >= need {
                return true;
            }
            need -= sum;
        }
        false
    }

    fn place(&mut self, o: &NewOrder, now: u64, out: &mut Vec<Event>) -> Result<(), RejectCode> {
        use RejectCode as R;
        let mi = self.market(o.market)?;
        let m = self.markets[mi].clone();
        let cfg = m.cfg;
        let is_stop = matches!(o.order_type, OrderType::StopLimit | OrderType::StopMarket);
        let is_market = matches!(o.order_type, OrderType::Market | OrderType::StopMarket);
        let immediate = matches!(o.time_in_force, TimeInForce::Ioc | TimeInForce::Fok);
        match m.phase {
            MarketPhase::Halted => return Err(R::MarketHalted),
            MarketPhase::Auction
                if !is_stop && (is_market || immediate || o.post_only != PostOnly::No) =>
            {
                return Err(R::NotAllowedInAuction);
            }
            _ => {}
        }
        if o.qty == 0 {
            return Err(R::InvalidQuantity);
        }
        if o.qty < cfg.min_qty {
            return Err(R::QtyBelowMin);
        }
        if o.qty > cfg.max_qty {
            return Err(R::QtyAboveMax);
        }
        if is_market {
            if o.price != 0 || !immediate || o.post_only != PostOnly::No || o.iceberg_peak != 0 {
                return Err(R::InvalidOrderCombination);
            }
        } else {
            if o.protection_price != 0 {
                return Err(R::InvalidOrderCombination);
            }
            if o.price == 0 || o.price > cfg.max_price {
                return Err(R::InvalidPrice);
            }
        }
        if is_stop {
            if o.stop_price == 0 || o.stop_price > cfg.max_price {
                return Err(R::InvalidPrice);
            }
            if o.post_only != PostOnly::No {
                return Err(R::InvalidOrderCombination);
            }
        } else if o.stop_price != 0 {
            return Err(R::InvalidOrderCombination);
        }
        if o.post_only != PostOnly::No && immediate {
            return Err(R::InvalidOrderCombination);
        }
        if o.iceberg_peak != 0 {
            if immediate {
                return Err(R::InvalidOrderCombination);
            }
            if o.iceberg_peak >= o.qty {
                return Err(R::InvalidIcebergPeak);
            }
        }
        if (o.time_in_force == TimeInForce::Gtd) != (o.expire_time_us != 0)
            || (o.expire_time_us != 0 && o.expire_time_us <= now)
        {
            return Err(R::InvalidExpiry);
        }
        if is_stop
            && m.last != 0
            && (if o.side == Side::Buy {
                m.last >= o.stop_price
            } else {
                m.last <= o.stop_price
            })
        {
            return Err(R::StopWouldTriggerNow);
        }
        let best_opp = self
            .best_opposite(o.market, o.side)
            .map_or(0, |i| self.orders[i].price);
        let mut price = if is_market {
            if o.protection_price != 0 {
                if o.protection_price > cfg.max_price {
                    return Err(R::InvalidPrice);
                }
                o.protection_price
            } else {
                let r = if is_stop {
                    o.stop_price
                } else if m.last != 0 {
                    m.last
                } else if m.reference != 0 {
                    m.reference
                } else {
                    best_opp
                };
                if r == 0 {
                    return Err(R::NoReferencePrice);
                }
                let bps = cfg.market_protection_bps as u128;
                if o.side == Side::Buy {
                    ((r as u128 * (10_000 + bps) / 10_000) as u64).min(cfg.max_price)
                } else {
                    ((r as u128 * (10_000 - bps) / 10_000) as u64).max(1)
                }
            }
        } else {
            o.price
        };
        if cfg.band_action == BandAction::Reject && m.outside_band(price) {
            return Err(R::PriceOutsideBand);
        }
        if o.post_only != PostOnly::No
            && m.phase == MarketPhase::Continuous
            && best_opp != 0
            && crosses(o.side, price, best_opp)
        {
            if o.post_only == PostOnly::Reject {
                return Err(R::PostOnlyWouldTake);
            }
            price = if o.side == Side::Buy {
                best_opp - 1
            } else {
                best_opp + 1
            };
            if price == 0 || price > cfg.max_price {
                return Err(R::PostOnlyWouldTake);
            }
        }
        if o.time_in_force == TimeInForce::Fok
            && !is_stop
            && !self.fok_fillable(o.market, o.side, price, o.qty, o.account, o.stp)
        {
            return Err(R::FokNotFillable);
        }
        let hold = m.hold_for(o.side, price, o.qty);
        if !self.accounts.contains(&o.account) {
            return Err(R::InsufficientFunds);
        }
        if self
            .orders
            .iter()
            .filter(|x| x.account == o.account)
            .count() as u32
            >= OPEN_ORDERS_PER_ACCOUNT_MAX
        {
            return Err(R::TooManyOpenOrders);
        }
        let asset = m.hold_asset(o.side);
        if self.b(o.account, asset).0 < hold {
            return Err(R::InsufficientFunds);
        }
        let b = self.b(o.account, asset);
        b.0 -= hold;
        b.1 += hold;
        let id = self.next_id;
        self.next_id += 1;
        out.push(Event::Accepted {
            order_id: id,
            client_order_id: o.client_order_id,
            account: o.account,
            market: o.market,
            side: o.side,
            price,
            qty: o.qty,
        });
        let order = MOrder {
            id,
            account: o.account,
            market: o.market,
            side: o.side,
            otype: o.order_type,
            tif: o.time_in_force,
            price,
            qty: o.qty,
            visible: o.qty,
            peak: o.iceberg_peak,
            stop: o.stop_price,
            expire: o.expire_time_us,
            stp: o.stp,
            session: o.session,
            hold,
            resting: false,
            qpos: 0,
        };
        self.orders.push(order);
        if is_stop {
            return Ok(());
        }
        if m.phase == MarketPhase::Auction {
            self.rest(id);
        } else {
            self.match_taker(id, out);
            self.run_stops(mi, out);
        }
        Ok(())
    }

    fn rest(&mut self, id: OrderId) {
        let i = self.idx(id).unwrap();
        self.qcounter += 1;
        let o = &mut self.orders[i];
        o.visible = if o.peak > 0 { o.peak.min(o.qty) } else { o.qty };
        o.resting = true;
        o.qpos = self.qcounter;
    }

    fn match_taker(&mut self, id: OrderId, out: &mut Vec<Event>) {
        let t = self.orders[self.idx(id).unwrap()].clone();
        let mi = self.market(t.market).unwrap();
        let mut halted = false;
        loop {
            let ti = self.idx(id).unwrap();
            if self.orders[ti].qty == 0 {
                break;
            }
            let Some(bi) = self.best_opposite(t.market, t.side) else {
                break;
            };
            let best = self.orders[bi].price;
            if !crosses(t.side, t.price, best) {
                break;
            }
            if self.markets[mi].cfg.band_action == BandAction::Halt
                && self.markets[mi].outside_band(best)
            {
                halted = true;
                self.markets[mi].phase = MarketPhase::Halted;
                out.push(Event::PhaseChanged {
                    market: t.market,
                    phase: MarketPhase::Halted,
                });
                break;
            }
            let maker = self.orders[bi].clone();
            if t.stp != StpMode::None && maker.account == t.account {
                match t.stp {
                    StpMode::CancelNewest => {
                        self.cancel_id(id, CancelReason::SelfTrade, out);
                        return;
                    }
                    StpMode::CancelOldest => {
                        self.cancel_id(maker.id, CancelReason::SelfTrade, out);
                        continue;
                    }
                    StpMode::CancelBoth => {
                        self.cancel_id(maker.id, CancelReason::SelfTrade, out);
                        self.cancel_id(id, CancelReason::SelfTrade, out);
                        return;
                    }
                    _ => {
                        let q = self.orders[ti].qty.min(maker.qty);
                        self.reduce(maker.id, q, out);
                        self.reduce(id, q, out);
                        if self.orders[self.idx(id).unwrap()].qty == 0 {
                            self.cancel_id(id, CancelReason::SelfTrade, out);
                            return;
                        }
                        continue;
                    }
                }
            }
            let q = self.orders[ti].qty.min(maker.visible);
            let agg = if t.side == Side::Buy {
                Aggressor::Buy
            } else {
                Aggressor::Sell
            };
            let (b, s) = if t.side == Side::Buy {
                (id, maker.id)
            } else {
                (maker.id, id)
            };
            self.trade(mi, b, s, best, q, agg, out);
            self.after_fill(maker.id, out);
        }
        let o = self.orders[self.idx(id).unwrap()].clone();
        if o.qty == 0 {
            self.orders.retain(|x| x.id != id);
        } else if halted {
            self.cancel_id(id, CancelReason::Halted, out);
        } else if matches!(o.tif, TimeInForce::Ioc | TimeInForce::Fok)
            || matches!(o.otype, OrderType::Market | OrderType::StopMarket)
        {
            self.cancel_id(id, CancelReason::Unfilled, out);
        } else {
            self.rest(id);
        }
    }

    fn after_fill(&mut self, id: OrderId, out: &mut Vec<Event>) {
        let Some(i) = self.idx(id) else { return };
        let o = &self.orders[i];
        if !o.resting {
            return;
        }
        if o.qty == 0 {
            self.orders.remove(i);
        } else if o.visible == 0 {
            let refill = if o.peak > 0 { o.peak.min(o.qty) } else { o.qty };
            self.qcounter += 1;
            let o = &mut self.orders[i];
            o.visible = refill;
            o.qpos = self.qcounter;
            out.push(Event::IcebergReplenished {
                order_id: id,
                market: o.market,
                visible: refill,
            });
        }
    }

    fn reduce(&mut self, id: OrderId, q: u64, out: &mut Vec<Event>) {
        let i = self.idx(id).unwrap();
        let m = self.markets[self.market(self.orders[i].market).unwrap()].clone();
        let o = &mut self.orders[i];
        o.qty -= q;
        o.visible = o.visible.min(o.qty);
        let new_hold = m.hold_for(o.side, o.price, o.qty);
        let release = o.hold - new_hold;
        o.hold = new_hold;
        let o = o.clone();
        let b = self.b(o.account, m.hold_asset(o.side));
        b.1 -= release;
        b.0 += release;
        out.push(Event::OrderReduced {
            order_id: id,
            account: o.account,
            market: o.market,
            reduced: q,
            remaining: o.qty,
        });
        if o.resting {
            if o.qty == 0 {
                self.cancel_id(id, CancelReason::SelfTrade, out);
            } else {
                self.after_fill(id, out);
            }
        }
    }

    fn trade(
        &mut self,
        mi: usize,
        buy: OrderId,
        sell: OrderId,
        price: u64,
        q: u64,
        agg: Aggressor,
        out: &mut Vec<Event>,
    ) {
        let m = self.markets[mi].clone();
        let n = price as u128 * q as u128 * m.tick_value() as u128;
        let fee = |bps: u16| (n * bps as u128 / 10_000) as u64;
        let (mk, tk) = (m.cfg.maker_fee_bps, m.cfg.taker_fee_bps);
        let buy_fee = fee(if agg == Aggressor::Buy { tk } else { mk });
        let sell_fee = fee(if agg == Aggressor::Sell { tk } else { mk });
        let n = n as u64;
        let base_amt = q * m.cfg.lot_size_base_minor;
        let (base, quote) = (m.cfg.base_asset, m.cfg.quote_asset);
        let bi = self.idx(buy).unwrap();
        let bo = &mut self.orders[bi];
        bo.qty -= q;
        bo.visible = bo.visible.saturating_sub(q);
        let new_hold = m.hold_for(Side::Buy, bo.price, bo.qty);
        let release = bo.hold - new_hold;
        bo.hold = new_hold;
        let (b_acc, b_rem) = (bo.account, bo.qty);
        let si = self.idx(sell).unwrap();
        let so = &mut self.orders[si];
        so.qty -= q;
        so.visible = so.visible.saturating_sub(q);
        so.hold -= base_amt;
        let (s_acc, s_rem) = (so.account, so.qty);
        assert!(release >= n + buy_fee);
        let bq = self.b(b_acc, quote);
        bq.1 -= release;
        bq.0 += release - n - buy_fee;
        self.b(b_acc, base).0 += base_amt;
        self.b(s_acc, base).1 -= base_amt;
        self.b(s_acc, quote).0 += n - sell_fee;
        let fa = self.fee_account;
        self.b(fa, quote).0 += buy_fee + sell_fee;
        self.markets[mi].last = price;
        out.push(Event::Trade {
            trade_id: self.next_trade,
            market: m.cfg.market,
            price,
            qty: q,
            buy_order: buy,
            buy_account: b_acc,
            sell_order: sell,
            sell_account: s_acc,
            aggressor: agg,
            buy_fee,
            sell_fee,
            buy_remaining: b_rem,
            sell_remaining: s_rem,
        });
        self.next_trade += 1;
    }

    fn run_stops(&mut self, mi: usize, out: &mut Vec<Event>) {
        loop {
            let m = &self.markets[mi];
            if m.phase != MarketPhase::Continuous || m.last == 0 {
                return;
            }
            let (last, market) = (m.last, m.cfg.market);
            let stops = || {
                self.orders.iter().filter(|o| {
                    !o.resting
                        && o.market == market
                        && matches!(o.otype, OrderType::StopLimit | OrderType::StopMarket)
                })
            };
            let buy = stops()
                .filter(|o| o.side == Side::Buy && o.stop <= last)
                .min_by_key(|o| (o.stop, o.id))
                .map(|o| o.id);
            let sell = stops()
                .filter(|o| o.side == Side::Sell && o.stop >= last)
                .min_by_key(|o| (u64::MAX - o.stop, o.id))
                .map(|o| o.id);
            let id = match (buy, sell) {
                (Some(b), Some(s)) => b.min(s),
                (Some(b), None) => b,
                (None, Some(s)) => s,
                (None, None) => return,
            };
            let i = self.idx(id).unwrap();
            let o = &mut self.orders[i];
            o.otype = if o.otype == OrderType::StopMarket {
                OrderType::Market
            } else {
                OrderType::Limit
            };
            let o = o.clone();
            out.push(Event::StopTriggered {
                order_id: id,
                account: o.account,
                market,
                last_price: last,
            });
            if o.tif == TimeInForce::Fok
                && !self.fok_fillable(market, o.side, o.price, o.qty, o.account, o.stp)
            {
                self.cancel_id(id, CancelReason::Unfilled, out);
                continue;
            }
            self.match_taker(id, out);
        }
    }

    fn uncross(&mut self, mi: usize, out: &mut Vec<Event>) {
        let market = self.markets[mi].cfg.market;
        let side_tot = |side: Side| {
            let mut t: BTreeMap<u64, u64> = BTreeMap::new();
            for o in self
                .orders
                .iter()
                .filter(|o| o.resting && o.market == market && o.side == side)
            {
                *t.entry(o.price).or_insert(0) += o.qty;
            }
            t
        };
        let (bids, asks) = (side_tot(Side::Buy), side_tot(Side::Sell));
        let mut cands: Vec<u64> = bids.keys().chain(asks.keys()).copied().collect();
        cands.sort_unstable();
        cands.dedup();
        let r = self.markets[mi].reference;
        let mut best: Option<(u64, u64, u64, u64)> = None;
        for p in cands {
            let buy: u64 = bids.range(p..).map(|(_, q)| q).sum();
            let sell: u64 = asks.range(..=p).map(|(_, q)| q).sum();
            let vol = buy.min(sell);
            if vol == 0 {
                continue;
            }
            let key = (
                vol,
                buy.abs_diff(sell),
                if r == 0 { 0 } else { p.abs_diff(r) },
                p,
            );
            let better = best.is_none_or(|b| {
                key.0 > b.0 || (key.0 == b.0 && (key.1 < b.1 || (key.1 == b.1 && key.2 < b.2)))
            });
            if better {
                best = Some(key);
            }
        }
        let (volume, price) = best.map_or((0, 0), |b| (b.0, b.3));
        let mut left = volume;
        while left > 0 {
            let b = self.best_opposite(market, Side::Sell).unwrap();
            let a = self.best_opposite(market, Side::Buy).unwrap();
            let (bid, ask) = (self.orders[b].id, self.orders[a].id);
            let q = left.min(self.orders[b].visible).min(self.orders[a].visible);
            self.trade(mi, bid, ask, price, q, Aggressor::Auction, out);
            self.after_fill(bid, out);
            self.after_fill(ask, out);
            left -= q;
        }
        if volume > 0 {
            self.markets[mi].reference = price;
        }
        self.markets[mi].phase = MarketPhase::Continuous;
        out.push(Event::Uncrossed {
            market,
            price,
            volume,
        });
        out.push(Event::PhaseChanged {
            market,
            phase: MarketPhase::Continuous,
        });
        self.run_stops(mi, out);
    }
}

fn reject(code: RejectCode, kind: &CommandKind) -> Event {
    let (account, client_order_id, order_id) = match *kind {
        CommandKind::PlaceOrder(ref o) => (o.account, o.client_order_id, 0),
        CommandKind::Cancel {
            account, order_id, ..
        }
        | CommandKind::Amend {
            account, order_id, ..
        } => (account, 0, order_id),
        CommandKind::MassCancel { account, .. }
        | CommandKind::CancelOnDisconnect { account, .. }
        | CommandKind::Deposit { account, .. }
        | CommandKind::Withdraw { account, .. } => (account, 0, 0),
        _ => (0, 0, 0),
    };
    Event::Rejected {
        code,
        account,
        client_order_id,
        order_id,
    }
}
