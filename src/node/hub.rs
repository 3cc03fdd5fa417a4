//! What the node derives from the engine's events for reading: per-market L2 books, recent
//! trades and market-data sequence numbers (published to subscribers through a tokio
//! broadcast), and an index of orders for GetOrder / ListOrders.
//!
//! Only the journal thread writes it, after the events' commands are durable, so
//! nothing a client reads here can be lost by a crash. Readers take the same lock, which makes
//! a snapshot and its sequence number consistent with the stream that follows it.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use matching_engine::{
    Aggressor, AssetId, Command, CommandKind, Engine, Event, MarketConfig, MarketId, MarketPhase,
    OrderId, OrderType, PostOnly, PriceTicks, QtyLots, Side, TimeInForce,
};
use rempart_proto::v1 as pb;
use tokio::sync::broadcast;

use super::decimal::canonical;
use super::limits::{CLOSED_ORDERS_KEPT_MAX, L2_SNAPSHOT_DEPTH, TRADES_KEPT_MAX};

/// The assets the node knows: id, code, decimal places of the minor unit.
pub const ASSETS: [(AssetId, &str, u8); 3] = [
    (matching_engine::ASSET_CITY, "CITY", 6),
    (matching_engine::ASSET_EUR, "EUR", 2),
    (matching_engine::ASSET_LCL, "LCL", 2),
];

/// Code of an asset id.
pub fn asset_code(asset: AssetId) -> Option<&'static str> {
    ASSETS.iter().find(|a| a.0 == asset).map(|a| a.1)
}

/// Decimal places of an asset id.
pub fn asset_decimals(asset: AssetId) -> Option<u8> {
    ASSETS.iter().find(|a| a.0 == asset).map(|a| a.2)
}

/// Id of an asset code.
pub fn asset_id(code: &str) -> Option<AssetId> {
    ASSETS.iter().find(|a| a.1 == code).map(|a| a.0)
}

/// "BASE/QUOTE" of a market configuration.
pub fn market_symbol(cfg: &MarketConfig) -> String {
    format!(
        "{}/{}",
        asset_code(cfg.base_asset).unwrap_or("?"),
        asset_code(cfg.quote_asset).unwrap_or("?")
    )
}

/// Microseconds since the epoch as a protobuf timestamp.
pub fn timestamp(time_us: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: (time_us / 1_000_000) as i64,
        nanos: ((time_us % 1_000_000) * 1_000) as i32,
    }
}

/// A protobuf timestamp as microseconds since the epoch (negative times clamp to 0).
pub fn time_us_of(ts: &prost_types::Timestamp) -> u64 {
    if ts.seconds < 0 {
        return 0;
    }
    (ts.seconds as u64)
        .saturating_mul(1_000_000)
        .saturating_add((ts.nanos.max(0) as u64) / 1_000)
}

/// One order as the node tracks it.
#[derive(Clone, Debug)]
pub struct OrderInfo {
    pub order_id: OrderId,
    pub client_order_id: u64,
    pub account: u64,
    pub market: MarketId,
    pub side: Side,
    pub order_type: OrderType,
    pub time_in_force: TimeInForce,
    pub post_only: bool,
    pub price: PriceTicks,
    /// Original quantity.
    pub qty: QtyLots,
    pub filled: QtyLots,
    /// Open (resting) quantity.
    pub open: QtyLots,
    pub closed: bool,
    pub created_us: u64,
    pub updated_us: u64,
}

/// One market's derived data.
#[derive(Debug)]
pub struct MarketMd {
    pub cfg: MarketConfig,
    pub symbol: String,
    pub phase: MarketPhase,
    /// Sequence number of the last published event.
    pub seq: u64,
    /// price → (quantity, orders).
    pub bids: BTreeMap<PriceTicks, (QtyLots, u32)>,
    pub asks: BTreeMap<PriceTicks, (QtyLots, u32)>,
    /// Newest at the back.
    pub trades: VecDeque<pb::Trade>,
}

impl MarketMd {
    fn new(cfg: MarketConfig) -> Self {
        MarketMd {
            symbol: market_symbol(&cfg),
            cfg,
            phase: MarketPhase::Continuous,
            seq: 0,
            bids: BTreeMap::new(),
            asks: BTreeMap::new(),
            trades: VecDeque::new(),
        }
    }

    fn level(&self, price: PriceTicks, qty: QtyLots, orders: u32) -> pb::PriceLevel {
        pb::PriceLevel {
            price: canonical(self.cfg.price_to_decimal(price)),
            quantity: canonical(self.cfg.qty_to_decimal(qty)),
            order_count: orders,
        }
    }

    /// The L2 snapshot of the `depth` best levels per side.
    pub fn snapshot(&self, depth: usize, time_us: u64) -> pb::OrderBookSnapshot {
        pb::OrderBookSnapshot {
            market: self.symbol.clone(),
            sequence: self.seq,
            bids: self
                .bids
                .iter()
                .rev()
                .take(depth)
                .map(|(p, (q, n))| self.level(*p, *q, *n))
                .collect(),
            asks: self
                .asks
                .iter()
                .take(depth)
                .map(|(p, (q, n))| self.level(*p, *q, *n))
                .collect(),
            time: Some(timestamp(time_us)),
        }
    }
}

/// A published market-data event and the market it belongs to.
pub type MdEvent = Arc<pb::MarketDataEvent>;

/// The derived read model.
#[derive(Debug)]
pub struct Hub {
    pub markets: BTreeMap<MarketId, MarketMd>,
    pub symbols: HashMap<String, MarketId>,
    /// Open orders and the last `CLOSED_ORDERS_KEPT_MAX` closed ones. A B-tree, not a hash
    /// map: engine order ids only grow, so inserts land at the right edge and the oldest
    /// closed orders leave from the left, both on paths that stay in cache, where a hash map
    /// spread every insert and removal over a 100 000-entry table (and SipHash; ~5 % of the
    /// node's CPU under `bench-api` load, in `perf`).
    pub orders: BTreeMap<OrderId, OrderInfo>,
    pub by_account: HashMap<u64, BTreeSet<OrderId>>,
    closed: VecDeque<OrderId>,
    pub md_tx: broadcast::Sender<MdEvent>,
    /// Time of the last applied command.
    pub last_time_us: u64,
    /// Seq of the last durable applied command.
    pub last_seq: u64,
}

fn side_pb(side: Side) -> pb::Side {
    match side {
        Side::Buy => pb::Side::Buy,
        Side::Sell => pb::Side::Sell,
    }
}

impl Hub {
    /// The read model of a recovered engine: markets, open orders and books as they stand
    /// (trade history starts empty after a restart).
    pub fn from_engine(engine: &Engine, md_tx: broadcast::Sender<MdEvent>) -> Hub {
        let mut hub = Hub {
            markets: BTreeMap::new(),
            symbols: HashMap::new(),
            orders: BTreeMap::new(),
            by_account: HashMap::new(),
            closed: VecDeque::new(),
            md_tx,
            last_time_us: engine.last_time_us(),
            last_seq: engine.last_seq(),
        };
        let state = engine.export_state();
        for m in &state.markets {
            hub.add_market(m.config);
            if let Some(md) = hub.markets.get_mut(&m.config.market) {
                md.phase = m.phase;
            }
            for o in m.bids.iter().chain(m.asks.iter()).chain(m.stops.iter()) {
                hub.insert_order(OrderInfo {
                    order_id: o.order_id,
                    client_order_id: o.client_order_id,
                    account: o.account,
                    market: m.config.market,
                    side: o.side,
                    order_type: o.order_type,
                    time_in_force: o.time_in_force,
                    post_only: false,
                    price: o.price,
                    qty: o.qty,
                    filled: 0,
                    open: o.qty,
                    closed: false,
                    created_us: 0,
                    updated_us: 0,
                });
            }
            if let Some(l2) = engine.l2_snapshot(m.config.market, L2_SNAPSHOT_DEPTH)
                && let Some(md) = hub.markets.get_mut(&m.config.market)
            {
                for l in l2.bids {
                    md.bids.insert(l.price, (l.qty, l.orders));
                }
                for l in l2.asks {
                    md.asks.insert(l.price, (l.qty, l.orders));
                }
            }
        }
        hub
    }

    fn add_market(&mut self, cfg: MarketConfig) {
        let md = MarketMd::new(cfg);
        self.symbols.insert(md.symbol.clone(), cfg.market);
        self.markets.insert(cfg.market, md);
    }

    fn insert_order(&mut self, info: OrderInfo) {
        self.by_account
            .entry(info.account)
            .or_default()
            .insert(info.order_id);
        self.orders.insert(info.order_id, info);
    }

    fn close_order(&mut self, order_id: OrderId) {
        self.closed.push_back(order_id);
        while self.closed.len() > CLOSED_ORDERS_KEPT_MAX {
            if let Some(old) = self.closed.pop_front()
                && let Some(info) = self.orders.remove(&old)
                && let Some(set) = self.by_account.get_mut(&info.account)
            {
                set.remove(&old);
                if set.is_empty() {
                    self.by_account.remove(&info.account);
                }
            }
        }
    }

    /// Market configuration by symbol.
    pub fn market_by_symbol(&self, symbol: &str) -> Option<&MarketMd> {
        self.symbols.get(symbol).and_then(|id| self.markets.get(id))
    }

    fn publish(&mut self, market: MarketId, time_us: u64, event: pb::market_data_event::Event) {
        let Some(md) = self.markets.get_mut(&market) else {
            return;
        };
        md.seq += 1;
        let ev = Arc::new(pb::MarketDataEvent {
            market: md.symbol.clone(),
            sequence: md.seq,
            time: Some(timestamp(time_us)),
            event: Some(event),
        });
        // No subscriber is not an error.
        let _ = self.md_tx.send(ev);
    }

    /// Applies one durable command's events (market data among them, if it has any; the
    /// engine thread's batches bring theirs through [`Hub::apply_market_data`]).
    pub fn apply(&mut self, cmd: &Command, events: &[Event]) {
        use pb::market_data_event::Event as E;
        let t = cmd.time_us;
        self.last_time_us = t;
        self.last_seq = cmd.seq;
        for ev in events {
            match *ev {
                Event::MarketCreated { market } => {
                    if let CommandKind::CreateMarket(cfg) = cmd.kind
                        && cfg.market == market
                    {
                        self.add_market(cfg);
                    }
                }
                Event::PhaseChanged { market, phase } => {
                    if let Some(md) = self.markets.get_mut(&market) {
                        md.phase = phase;
                    }
                }
                Event::Accepted {
                    order_id,
                    client_order_id,
                    account,
                    market,
                    side,
                    price,
                    qty,
                } => {
                    let (order_type, time_in_force, post_only) = match cmd.kind {
                        CommandKind::PlaceOrder(o) => {
                            (o.order_type, o.time_in_force, o.post_only != PostOnly::No)
                        }
                        _ => (OrderType::Limit, TimeInForce::Gtc, false),
                    };
                    self.insert_order(OrderInfo {
                        order_id,
                        client_order_id,
                        account,
                        market,
                        side,
                        order_type,
                        time_in_force,
                        post_only,
                        price,
                        qty,
                        filled: 0,
                        open: qty,
                        closed: false,
                        created_us: t,
                        updated_us: t,
                    });
                }
                Event::Trade {
                    trade_id,
                    market,
                    price,
                    qty,
                    buy_order,
                    sell_order,
                    aggressor,
                    buy_remaining,
                    sell_remaining,
                    ..
                } => {
                    for (id, remaining) in
                        [(buy_order, buy_remaining), (sell_order, sell_remaining)]
                    {
                        let mut closed = false;
                        if let Some(o) = self.orders.get_mut(&id) {
                            o.filled += qty;
                            o.open = remaining;
                            o.updated_us = t;
                            if remaining == 0 && !o.closed {
                                o.closed = true;
                                closed = true;
                            }
                        }
                        if closed {
                            self.close_order(id);
                        }
                    }
                    if let Some(md) = self.markets.get_mut(&market) {
                        let trade = pb::Trade {
                            trade_id: trade_id.to_string(),
                            market: md.symbol.clone(),
                            price: canonical(md.cfg.price_to_decimal(price)),
                            quantity: canonical(md.cfg.qty_to_decimal(qty)),
                            taker_side: match aggressor {
                                Aggressor::Buy => pb::Side::Buy as i32,
                                Aggressor::Sell => pb::Side::Sell as i32,
                                Aggressor::Auction => pb::Side::Unspecified as i32,
                            },
                            time: Some(timestamp(t)),
                        };
                        md.trades.push_back(trade.clone());
                        while md.trades.len() > TRADES_KEPT_MAX {
                            md.trades.pop_front();
                        }
                        self.publish(market, t, E::Trade(trade));
                    }
                }
                Event::OrderCancelled { order_id, .. } => {
                    let mut closed = false;
                    if let Some(o) = self.orders.get_mut(&order_id) {
                        o.open = 0;
                        o.updated_us = t;
                        if !o.closed {
                            o.closed = true;
                            closed = true;
                        }
                    }
                    if closed {
                        self.close_order(order_id);
                    }
                }
                Event::OrderReduced {
                    order_id,
                    remaining,
                    ..
                } => {
                    if let Some(o) = self.orders.get_mut(&order_id) {
                        o.open = remaining;
                        o.updated_us = t;
                    }
                }
                Event::OrderAmended {
                    order_id,
                    price,
                    qty,
                    ..
                } => {
                    if let Some(o) = self.orders.get_mut(&order_id) {
                        o.qty = o.filled + qty;
                        o.open = qty;
                        o.price = price;
                        o.updated_us = t;
                    }
                }
                Event::Depth { .. } | Event::Bbo { .. } => self.market_data_event(t, ev),
                Event::Rejected { .. }
                | Event::StopTriggered { .. }
                | Event::IcebergReplenished { .. }
                | Event::Balance { .. }
                | Event::Uncrossed { .. } => {}
            }
        }
    }

    /// Applies a batch's market data (`Engine::flush_market_data`), stamped `time_us`: the
    /// depth kept for snapshots, and one published message per `Depth` or `Bbo`.
    pub fn apply_market_data(&mut self, time_us: u64, events: &[Event]) {
        for ev in events {
            self.market_data_event(time_us, ev);
        }
    }

    fn market_data_event(&mut self, t: u64, ev: &Event) {
        use pb::market_data_event::Event as E;
        match *ev {
            Event::Depth {
                market,
                side,
                price,
                qty,
                orders,
            } => {
                if let Some(md) = self.markets.get_mut(&market) {
                    let book = match side {
                        Side::Buy => &mut md.bids,
                        Side::Sell => &mut md.asks,
                    };
                    if qty == 0 {
                        book.remove(&price);
                    } else {
                        book.insert(price, (qty, orders));
                    }
                    let level = md.level(price, qty, if qty == 0 { 0 } else { orders });
                    self.publish(
                        market,
                        t,
                        E::L2Update(pb::L2Update {
                            side: side_pb(side) as i32,
                            level: Some(level),
                        }),
                    );
                }
            }
            Event::Bbo {
                market,
                bid_price,
                bid_qty,
                ask_price,
                ask_qty,
            } => {
                if let Some(md) = self.markets.get_mut(&market) {
                    let price = |p: u64| {
                        if p == 0 {
                            String::new()
                        } else {
                            canonical(md.cfg.price_to_decimal(p))
                        }
                    };
                    let qty = |q: u64, p: u64| {
                        if p == 0 {
                            String::new()
                        } else {
                            canonical(md.cfg.qty_to_decimal(q))
                        }
                    };
                    let bbo = pb::Bbo {
                        bid_price: price(bid_price),
                        bid_quantity: qty(bid_qty, bid_price),
                        ask_price: price(ask_price),
                        ask_quantity: qty(ask_qty, ask_price),
                    };
                    self.publish(market, t, E::Bbo(bbo));
                }
            }
            _ => {}
        }
    }

    /// An order as the API shows it.
    pub fn order_pb(&self, o: &OrderInfo) -> pb::Order {
        let cfg = self.markets.get(&o.market).map(|m| m.cfg);
        let (price, qty, filled, open, symbol) = match cfg {
            Some(cfg) => (
                if o.order_type == OrderType::Market {
                    String::new()
                } else {
                    canonical(cfg.price_to_decimal(o.price))
                },
                canonical(cfg.qty_to_decimal(o.qty)),
                canonical(cfg.qty_to_decimal(o.filled)),
                canonical(cfg.qty_to_decimal(o.open)),
                market_symbol(&cfg),
            ),
            None => Default::default(),
        };
        let status = if !o.closed {
            if o.filled > 0 {
                pb::OrderStatus::PartiallyFilled
            } else {
                pb::OrderStatus::Open
            }
        } else if o.open == 0 && o.filled == o.qty {
            pb::OrderStatus::Filled
        } else {
            pb::OrderStatus::Cancelled
        };
        pb::Order {
            order_id: o.order_id.to_string(),
            client_order_id: if o.client_order_id == 0 {
                String::new()
            } else {
                o.client_order_id.to_string()
            },
            account_id: o.account.to_string(),
            market: symbol,
            side: side_pb(o.side) as i32,
            order_type: match o.order_type {
                OrderType::Market | OrderType::StopMarket => pb::OrderType::Market as i32,
                _ => pb::OrderType::Limit as i32,
            },
            time_in_force: if o.post_only {
                pb::TimeInForce::PostOnly as i32
            } else {
                match o.time_in_force {
                    TimeInForce::Gtc | TimeInForce::Gtd => pb::TimeInForce::Gtc as i32,
                    TimeInForce::Ioc => pb::TimeInForce::Ioc as i32,
                    TimeInForce::Fok => pb::TimeInForce::Fok as i32,
                }
            },
            price,
            quantity: qty,
            filled_quantity: filled,
            resting_quantity: open,
            status: status as i32,
            created_at: Some(timestamp(o.created_us)),
            updated_at: Some(timestamp(o.updated_us)),
        }
    }
}
