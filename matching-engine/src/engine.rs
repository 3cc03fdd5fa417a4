//! The engine: a deterministic state machine that applies one `Command` at a time and
//! appends the resulting `Event`s to a caller-provided buffer.
//!
//! Market data (`Depth`, `Bbo`, `Balance`) are coalesced per batch of commands: between two
//! calls of `Engine::flush_market_data`, the commands applied with `Engine::apply_in_batch`
//! record which levels, markets and balances they touched (with their value before the
//! batch), and the flush emits one event per item whose value changed. `Engine::apply` is a
//! batch of one command (its market data sorted, as always). Every other event (acceptance, refusal, trade, cancel...) is
//! appended by the command that caused it, whatever the batching, and the state never
//! depends on where batches end.
//!
//! It holds the markets (books, stops, phase), the risk engine's balances (available and
//! held per account and asset) and the order slab. Matching, auctions and stop triggers are
//! in `matching.rs`; export, import, hashing and invariant checks in `export.rs`.
//!
//! Hot-path rules: no allocation once the slab and level storage have grown (events go into
//! the caller's `Vec`, whose capacity is reused), integer arithmetic only, widened to u128
//! where a product could overflow.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use crate::book::{NIL, Order, SideBook};
use crate::command::{
    AccountId, AmountMinor, AssetId, BandAction, CancelReason, Command, CommandKind, Event,
    MarketConfig, MarketId, MarketPhase, NewOrder, OrderId, OrderType, PostOnly, PriceTicks,
    QtyLots, RejectCode, Side, TimeInForce, TimeUs,
};
use crate::ids::{AccountIndex, OrderIndex};
use crate::limits::{
    ACCOUNTS_MAX, ASSETS_MAX, MARKETS_MAX, OPEN_ORDERS_PER_ACCOUNT_MAX, ORDERS_MAX,
    PRICE_LEVELS_PER_SIDE_MAX, STOP_ORDERS_PER_MARKET_MAX,
};

/// A fast, deterministic hasher for integer ids (the std default is randomly seeded and
/// slower; iteration order of these maps is never observed, but speed is).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct IdHasher(u64);

const ID_HASH_K: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(*b)).wrapping_mul(ID_HASH_K);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(ID_HASH_K);
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
}

pub(crate) type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// Initial capacity of the per-batch lists of touched levels and balances (they grow past
/// it for a batch that touches more, and keep that capacity).
const TOUCHED_PRESIZE: usize = 1_024;

/// Commands `Engine::prefetch` reads ahead for in one round trip (bounds its stack array;
/// a longer slice is taken group by group).
const PREFETCH_GROUP: usize = 64;

/// Engine-wide settings that are not commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// The account credited with every maker and taker fee.
    pub fee_account: AccountId,
}

/// Available and held funds of one account in one asset, in minor units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Balance {
    pub available: AmountMinor,
    pub held: AmountMinor,
}

// Laid out in declaration order and aligned to 128 bytes: the fields every order and
// trade reads (id, open order count, touch marks, the order list's pointer) come first and
// the balances of the low asset ids right after, so that both sit in one aligned pair of
// cache lines, fetched together; unaligned, the account's header and its balances were two
// misses apart (`place` stalled on each in the profile).
#[derive(Clone, Debug)]
#[repr(C, align(128))]
pub(crate) struct Account {
    pub id: AccountId,
    pub touched_epoch: u64,
    pub touched_mask: u32,
    pub open_orders: u32,
    /// Ids of the account's resting orders and stops, in no particular order (readers that
    /// need id order sort: mass cancel, `orders_of`), for mass cancel and queries (at most
    /// `OPEN_ORDERS_PER_ACCOUNT_MAX`). A flat list rather than links through the orders:
    /// closing an order then touches this one buffer instead of two other orders' records
    /// (two cache misses); unsorted, so that a close is a short scan and a `swap_remove`
    /// rather than a binary search and a `memmove` of the tail.
    pub order_ids: Vec<OrderId>,
    pub bal: [Balance; ASSETS_MAX],
}

#[derive(Clone, Debug)]
pub(crate) struct Market {
    pub cfg: MarketConfig,
    /// Quote minor units of one lot at one tick (see `MarketConfig::tick_value_quote_minor`).
    pub tick_value: u64,
    /// max(maker, taker) fee: what a buy order holds for fees whatever role it ends in.
    pub hold_fee_bps: u64,
    pub phase: MarketPhase,
    pub last_price: PriceTicks,
    pub reference_price: PriceTicks,
    pub bids: SideBook,
    pub asks: SideBook,
    /// Buy stops by (stop price, id): the lowest triggers first as the price rises.
    pub buy_stops: BTreeSet<(PriceTicks, OrderId)>,
    /// Sell stops by (MAX - stop price, id): the highest triggers first as the price falls.
    pub sell_stops: BTreeSet<(PriceTicks, OrderId)>,
    /// Command (`Engine::epoch`) in which the market was last touched: it is listed for the
    /// per-command reference price update and uncrossed check.
    pub touched_epoch: u64,
    /// Market-data batch (`Engine::md_epoch`) in which `bbo_before` was recorded.
    pub md_epoch: u64,
    /// The best bid and ask (price, visible quantity) before the open batch touched them.
    pub bbo_before: [u64; 4],
}

impl Market {
    pub fn book(&self, side: Side) -> &SideBook {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    pub fn book_mut(&mut self, side: Side) -> &mut SideBook {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    // Inlined so that the result stays in registers: returned through memory, the 8-byte
    // stores followed by the 16-byte loads of the comparison in `finish` stalled store
    // forwarding (a visible share of every command in the profile).
    #[inline(always)]
    pub fn bbo(&self) -> [u64; 4] {
        [
            self.bids.best,
            self.bids.best_visible(),
            self.asks.best,
            self.asks.best_visible(),
        ]
    }

    /// Whether `price` is outside the band around the reference price. In u64 when both
    /// products fit (always, for prices within `PRICE_TICKS_MAX`), else in u128.
    #[inline(always)]
    pub fn outside_band(&self, price: PriceTicks) -> bool {
        let r = self.reference_price;
        let band = u64::from(self.cfg.band_bps);
        if band == 0 || r == 0 {
            return false;
        }
        let diff = price.abs_diff(r);
        if let (Some(lhs), Some(rhs)) = (diff.checked_mul(10_000), band.checked_mul(r)) {
            return lhs > rhs;
        }
        u128::from(diff) * 10_000 > u128::from(band) * u128::from(r)
    }

    /// Funds an order of `qty` lots at `price` holds: quote (notional plus the highest fee
    /// it could pay) for a buy, base for a sell. None if it does not fit in u64. Always
    /// inlined: `place` calls it for every order, and the call cost a third of its work.
    #[inline(always)]
    pub fn hold_for(&self, side: Side, price: PriceTicks, qty: QtyLots) -> Option<AmountMinor> {
        match side {
            Side::Buy => {
                // In u64 when the notional and its fee fit (real orders), else in u128.
                if let Some(n) = price
                    .checked_mul(qty)
                    .and_then(|pq| pq.checked_mul(self.tick_value))
                    && let Some(nb) = n.checked_mul(self.hold_fee_bps)
                {
                    return n.checked_add(nb / 10_000);
                }
                let n = price as u128 * qty as u128 * self.tick_value as u128;
                let total = n + bps_of(n, self.hold_fee_bps);
                u64::try_from(total).ok()
            }
            Side::Sell => qty.checked_mul(self.cfg.lot_size_base_minor),
        }
    }

    pub fn hold_asset(&self, side: Side) -> AssetId {
        match side {
            Side::Buy => self.cfg.quote_asset,
            Side::Sell => self.cfg.base_asset,
        }
    }
}

/// ⌊n × bps / 10 000⌋. In u64 when the product fits (always, for real amounts): a u128
/// division is a library call, a u64 division by a constant is a multiplication.
#[inline]
pub(crate) fn bps_of(n: u128, bps: u64) -> u128 {
    if let Ok(n) = u64::try_from(n)
        && let Some(p) = n.checked_mul(bps)
    {
        return u128::from(p / 10_000);
    }
    n * u128::from(bps) / 10_000
}

/// Whether an incoming order on `side` with limit `limit` trades against `best`.
pub(crate) fn crosses(side: Side, limit: PriceTicks, best: PriceTicks) -> bool {
    match side {
        Side::Buy => best <= limit,
        Side::Sell => best >= limit,
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct TouchedLevel {
    pub market: MarketId,
    pub mi: u32,
    pub side: Side,
    pub price: PriceTicks,
    pub qty: QtyLots,
    pub count: u32,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct TouchedBalance {
    pub account: AccountId,
    pub ai: u32,
    pub asset: AssetId,
    pub before: Balance,
}

/// The matching engine with its risk engine. See the crate docs and ARCHITECTURE.md.
#[derive(Debug)]
pub struct Engine {
    pub(crate) fee_account: AccountId,
    pub(crate) fee_acct: u32,
    pub(crate) last_seq: u64,
    pub(crate) last_time_us: TimeUs,
    pub(crate) next_order_id: OrderId,
    pub(crate) next_trade_id: u64,
    pub(crate) markets: Vec<Market>,
    pub(crate) market_index: IdMap<u32>,
    /// The last (market id, index) `market_idx` found.
    pub(crate) market_cache: Option<(MarketId, u32)>,
    pub(crate) accounts: Vec<Account>,
    pub(crate) account_index: AccountIndex,
    pub(crate) orders: Vec<Order>,
    pub(crate) free_orders: Vec<u32>,
    pub(crate) order_index: OrderIndex,
    pub(crate) expiries: BTreeSet<(TimeUs, OrderId)>,
    /// Sum of all balances per asset (deposits minus withdrawals); bounds every balance.
    pub(crate) supply: [AmountMinor; ASSETS_MAX],
    /// Counts commands; marks the markets a command touched (`touched_markets`), whose
    /// reference price and uncrossed book are settled at the end of that command.
    pub(crate) epoch: u64,
    pub(crate) touched_markets: Vec<u32>,
    /// Counts market-data batches (starts at 1: 0 marks "never touched"); marks the levels,
    /// balances and markets whose value before the open batch is recorded below.
    pub(crate) md_epoch: u64,
    pub(crate) md_markets: Vec<u32>,
    pub(crate) touched_levels: Vec<TouchedLevel>,
    pub(crate) touched_balances: Vec<TouchedBalance>,
    pub(crate) scratch: Vec<u32>,
    pub(crate) full_checks: bool,
    /// Whether the command being applied produces market data (`Depth`, `Bbo`, `Balance`);
    /// false only inside `apply_replay`. When false, levels and balances are not recorded in
    /// the touched lists at all: that bookkeeping is what market data costs.
    pub(crate) market_data: bool,
}

/// An L2 price level: price, visible quantity, number of orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L2Level {
    pub price: PriceTicks,
    pub qty: QtyLots,
    pub orders: u32,
}

/// Aggregated depth of one market, best levels first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L2Snapshot {
    pub market: MarketId,
    pub phase: MarketPhase,
    pub bids: Vec<L2Level>,
    pub asks: Vec<L2Level>,
}

impl Engine {
    /// An empty engine: no markets, no balances.
    pub fn new(config: EngineConfig) -> Engine {
        let mut e = Engine {
            fee_account: config.fee_account,
            fee_acct: 0,
            last_seq: 0,
            last_time_us: 0,
            next_order_id: 1,
            next_trade_id: 1,
            markets: Vec::new(),
            market_index: IdMap::default(),
            market_cache: None,
            accounts: Vec::new(),
            account_index: AccountIndex::default(),
            orders: Vec::new(),
            free_orders: Vec::new(),
            order_index: OrderIndex::default(),
            expiries: BTreeSet::new(),
            supply: [0; ASSETS_MAX],
            epoch: 0,
            // Sized for any ordinary command up front, so that the first sweep through a
            // few levels does not grow them in the middle of trading.
            touched_markets: Vec::with_capacity(MARKETS_MAX),
            md_epoch: 1,
            md_markets: Vec::with_capacity(MARKETS_MAX),
            touched_levels: Vec::with_capacity(TOUCHED_PRESIZE),
            touched_balances: Vec::with_capacity(TOUCHED_PRESIZE),
            scratch: Vec::new(),
            full_checks: cfg!(debug_assertions),
            market_data: true,
        };
        // The fee account exists from the start so that crediting a fee can never fail.
        e.fee_acct = e.account_or_create(config.fee_account).unwrap_or(0);
        e
    }

    /// Reserves slab room for `orders` open orders (at most `ORDERS_MAX`) so that the slab
    /// never has to grow, and copy itself, in the middle of trading: a latency spike
    /// otherwise. Call once at start-up.
    pub fn reserve_orders(&mut self, orders: usize) {
        let want = orders.min(ORDERS_MAX);
        self.orders.reserve(want.saturating_sub(self.orders.len()));
        self.free_orders
            .reserve(want.saturating_sub(self.free_orders.len()));
    }

    /// Turns the full invariant check after every command on or off. It is O(open orders +
    /// accounts) per command: on by default in debug builds (tests), off in release builds,
    /// where only the O(1) "book not crossed" assertion runs after each command.
    pub fn set_full_invariant_checks(&mut self, on: bool) {
        self.full_checks = on;
    }

    /// The account credited with fees.
    pub fn fee_account(&self) -> AccountId {
        self.fee_account
    }

    /// Seq of the last applied command (0 = none).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The id the next accepted order will get.
    pub fn next_order_id(&self) -> OrderId {
        self.next_order_id
    }

    /// Time of the last applied command.
    pub fn last_time_us(&self) -> TimeUs {
        self.last_time_us
    }

    /// (available, held) of `account` in `asset`; zeros for an unknown account.
    pub fn balance(&self, account: AccountId, asset: AssetId) -> (AmountMinor, AmountMinor) {
        match (
            self.account_index.get(&account),
            (asset as usize) < ASSETS_MAX,
        ) {
            (Some(ai), true) => {
                let b = self.accounts[*ai as usize].bal[asset as usize];
                (b.available, b.held)
            }
            _ => (0, 0),
        }
    }

    /// The configuration of a market.
    pub fn market_config(&self, market: MarketId) -> Option<&MarketConfig> {
        self.market_index
            .get(&u64::from(market))
            .map(|mi| &self.markets[*mi as usize].cfg)
    }

    /// Phase, last trade price and band reference price of a market.
    pub fn market_status(&self, market: MarketId) -> Option<(MarketPhase, PriceTicks, PriceTicks)> {
        self.market_index.get(&u64::from(market)).map(|mi| {
            let m = &self.markets[*mi as usize];
            (m.phase, m.last_price, m.reference_price)
        })
    }

    /// Ids of every market, ascending.
    pub fn market_ids(&self) -> Vec<MarketId> {
        let mut v: Vec<MarketId> = self.markets.iter().map(|m| m.cfg.market).collect();
        v.sort_unstable();
        v
    }

    /// An open order (resting or untriggered stop).
    pub fn order(&self, order_id: OrderId) -> Option<crate::state::OrderRecord> {
        self.order_index
            .get(&order_id)
            .map(|oi| self.record_of(*oi))
    }

    /// Every open order (resting or untriggered stop) of `account`, by id, with its market.
    pub fn orders_of(&self, account: AccountId) -> Vec<(MarketId, crate::state::OrderRecord)> {
        // The owner's list is unsorted (`Account::order_ids`).
        let mut v = Vec::new();
        if let Some(&ai) = self.account_index.get(&account) {
            for id in &self.accounts[ai as usize].order_ids {
                if let Some(&oi) = self.order_index.get(id) {
                    let o = &self.orders[oi as usize];
                    v.push((
                        self.markets[o.market as usize].cfg.market,
                        self.record_of(oi),
                    ));
                }
            }
        }
        v.sort_unstable_by_key(|(_, r)| r.order_id);
        v
    }

    /// The non-zero balances of `account`, by asset.
    pub fn balances_of(&self, account: AccountId) -> Vec<crate::state::AssetBalance> {
        let Some(&ai) = self.account_index.get(&account) else {
            return Vec::new();
        };
        self.accounts[ai as usize]
            .bal
            .iter()
            .enumerate()
            .filter(|(_, b)| b.available != 0 || b.held != 0)
            .map(|(asset, b)| crate::state::AssetBalance {
                asset: asset as AssetId,
                available: b.available,
                held: b.held,
            })
            .collect()
    }

    /// The market of an open order.
    pub fn order_market(&self, order_id: OrderId) -> Option<MarketId> {
        self.order_index.get(&order_id).map(|oi| {
            self.markets[self.orders[*oi as usize].market as usize]
                .cfg
                .market
        })
    }

    /// Number of open orders (resting plus stops) in the engine.
    pub fn open_orders(&self) -> usize {
        self.order_index.len()
    }

    /// The `depth` best levels of each side of `market` (at most `L2_DEPTH_MAX`).
    pub fn l2_snapshot(&self, market: MarketId, depth: usize) -> Option<L2Snapshot> {
        let mi = *self.market_index.get(&u64::from(market))?;
        let m = &self.markets[mi as usize];
        let depth = depth.min(crate::limits::L2_DEPTH_MAX);
        let side = |b: &SideBook| {
            let mut v = Vec::new();
            let mut p = b.next_price(None);
            while let Some(price) = p {
                if v.len() >= depth {
                    break;
                }
                if let Some(l) = b.level_at(price) {
                    let l = &b.levels[l as usize];
                    v.push(L2Level {
                        price,
                        qty: l.visible,
                        orders: l.count,
                    });
                }
                p = b.next_price(Some(price));
            }
            v
        };
        Some(L2Snapshot {
            market,
            phase: m.phase,
            bids: side(&m.bids),
            asks: side(&m.asks),
        })
    }

    /// Applies one command as recovery replays the journal: the state changes exactly as with
    /// [`Engine::apply`] (same state hash afterwards, `tests/model_props.rs` checks it), and
    /// the same events are appended except the market data (`Depth`, `Bbo`, `Balance`), which
    /// nobody reads during a replay and whose bookkeeping is a fair share of a command's cost.
    /// Not to be mixed into an open market-data batch: the batch's flush would not see this
    /// command's changes.
    pub fn apply_replay(&mut self, cmd: &Command, out: &mut Vec<Event>) {
        self.market_data = false;
        self.apply_in_batch(cmd, out);
        self.market_data = true;
    }

    /// Applies one command, appending its events to `out` (which is not cleared), then its
    /// market data (`Depth`, `Bbo`, `Balance`, coalesced over the command): a batch of one,
    /// i.e. [`Engine::apply_in_batch`] followed by [`Engine::flush_market_data`]. Never fails:
    /// a refusal is an `Event::Rejected`. Panics only if an internal invariant is broken
    /// (fail-stop: the money path must not go on from a corrupt state).
    pub fn apply(&mut self, cmd: &Command, out: &mut Vec<Event>) {
        self.apply_in_batch(cmd, out);
        self.emit_market_data(out, true);
    }

    /// Reads, and changes nothing, the order records that the cancels and amends among `cmds`
    /// will look up, so that their cache misses overlap one another instead of each stalling
    /// its command in turn. No effect on the state, the events or anything observable:
    /// calling it or not, with any commands, gives the same results; only the timing changes.
    /// A driver that holds a batch calls it once before applying the batch.
    ///
    /// The reads are plain loads handed to `std::hint::black_box` (a prefetch instruction
    /// needs `unsafe`, which the workspace denies). A plain load holds up retirement until its
    /// line arrives, so the reads go in two rounds, every id's index slot and then every
    /// order, each round's misses under way together, and nothing branches on a value read
    /// here. In `matching-bench` this gave 5-9 % more commands per CPU-second; reading more
    /// (the queue neighbours, the owners, a new order's account) cost more than it saved.
    #[inline(never)]
    pub fn prefetch(&self, cmds: &[Command]) {
        let Some(last) = self.orders.len().checked_sub(1) else {
            return;
        };
        for group in cmds.chunks(PREFETCH_GROUP) {
            let mut slots = [u32::MAX; PREFETCH_GROUP];
            let mut n = 0;
            for cmd in group {
                if let CommandKind::Cancel { order_id, .. } | CommandKind::Amend { order_id, .. } =
                    cmd.kind
                {
                    slots[n] = self.order_index.slot_or_empty(order_id);
                    n += 1;
                }
            }
            // An order that is not open reads the last slot instead: harmless.
            let seen = slots[..n].iter().fold(0u64, |seen, &oi| {
                let o = &self.orders[(oi as usize).min(last)];
                seen ^ o.id ^ o.hold
            });
            std::hint::black_box(seen);
        }
    }

    /// Applies one command as part of the open market-data batch: appends every event of the
    /// command except market data, and records what it touched; the batch's market data come
    /// from the next [`Engine::flush_market_data`]. The state after each command, and every
    /// event other than market data, are exactly those of [`Engine::apply`].
    pub fn apply_in_batch(&mut self, cmd: &Command, out: &mut Vec<Event>) {
        if cmd.seq <= self.last_seq {
            out.push(reject_event(RejectCode::SeqOutOfOrder, &cmd.kind));
            return;
        }
        if cmd.time_us < self.last_time_us {
            out.push(reject_event(RejectCode::TimeWentBackwards, &cmd.kind));
            return;
        }
        self.last_seq = cmd.seq;
        self.last_time_us = cmd.time_us;
        self.epoch += 1;
        self.expire(cmd.time_us, out);
        let result = match cmd.kind {
            CommandKind::PlaceOrder(ref o) => self.place(o, cmd.time_us, out),
            CommandKind::Cancel {
                account,
                market,
                order_id,
            } => self.cancel(account, market, order_id, out),
            CommandKind::Amend {
                account,
                market,
                order_id,
                new_price,
                new_qty,
            } => self.amend(account, market, order_id, new_price, new_qty, out),
            CommandKind::MassCancel { account, market } => {
                self.cancel_where(account, out, CancelReason::MassCancel, |o, m| {
                    market.is_none_or(|id| id == m) && o.account == account
                });
                Ok(())
            }
            CommandKind::CancelOnDisconnect { account, session } => {
                if session != 0 {
                    self.cancel_where(account, out, CancelReason::Disconnect, |o, _| {
                        o.session == session
                    });
                }
                Ok(())
            }
            CommandKind::Deposit {
                account,
                asset,
                amount,
            } => self.deposit(account, asset, amount),
            CommandKind::Withdraw {
                account,
                asset,
                amount,
            } => self.withdraw(account, asset, amount),
            CommandKind::CreateMarket(cfg) => self.create_market(cfg, out),
            CommandKind::Halt { market } => self.set_phase(market, PhaseOp::Halt, out),
            CommandKind::Resume { market } => self.set_phase(market, PhaseOp::Resume, out),
            CommandKind::StartAuction { market } => {
                self.set_phase(market, PhaseOp::StartAuction, out)
            }
            CommandKind::Uncross { market } => self.set_phase(market, PhaseOp::Uncross, out),
            CommandKind::Tick => Ok(()),
        };
        if let Err(code) = result {
            out.push(reject_event(code, &cmd.kind));
        }
        self.end_command();
    }

    // ---- accounts and balances -------------------------------------------------------

    pub(crate) fn account_or_create(&mut self, id: AccountId) -> Result<u32, RejectCode> {
        if let Some(ai) = self.account_index.get(&id) {
            return Ok(*ai);
        }
        if self.accounts.len() >= ACCOUNTS_MAX {
            return Err(RejectCode::TooManyAccounts);
        }
        let ai = self.accounts.len() as u32;
        self.accounts.push(Account {
            id,
            bal: [Balance::default(); ASSETS_MAX],
            open_orders: 0,
            order_ids: Vec::new(),
            touched_epoch: 0,
            touched_mask: 0,
        });
        self.account_index.insert(id, ai);
        Ok(ai)
    }

    /// Records the balance before its first change in the open market-data batch.
    #[inline(always)]
    pub(crate) fn touch_balance(&mut self, ai: u32, asset: AssetId) {
        if self.market_data {
            let a = &mut self.accounts[ai as usize];
            record_balance(a, ai, asset, self.md_epoch, &mut self.touched_balances);
        }
    }

    fn deposit(
        &mut self,
        account: AccountId,
        asset: AssetId,
        amount: u64,
    ) -> Result<(), RejectCode> {
        if asset as usize >= ASSETS_MAX {
            return Err(RejectCode::UnknownAsset);
        }
        if amount == 0 {
            return Err(RejectCode::InvalidAmount);
        }
        let supply = self.supply[asset as usize]
            .checked_add(amount)
            .ok_or(RejectCode::AmountOverflow)?;
        let ai = self.account_or_create(account)?;
        self.touch_balance(ai, asset);
        self.supply[asset as usize] = supply;
        // Cannot overflow: every balance is at most the supply.
        self.accounts[ai as usize].bal[asset as usize].available += amount;
        Ok(())
    }

    fn withdraw(
        &mut self,
        account: AccountId,
        asset: AssetId,
        amount: u64,
    ) -> Result<(), RejectCode> {
        if asset as usize >= ASSETS_MAX {
            return Err(RejectCode::UnknownAsset);
        }
        if amount == 0 {
            return Err(RejectCode::InvalidAmount);
        }
        let ai = *self
            .account_index
            .get(&account)
            .ok_or(RejectCode::InsufficientFunds)?;
        if self.accounts[ai as usize].bal[asset as usize].available < amount {
            return Err(RejectCode::InsufficientFunds);
        }
        self.touch_balance(ai, asset);
        self.accounts[ai as usize].bal[asset as usize].available -= amount;
        self.supply[asset as usize] -= amount;
        Ok(())
    }

    /// Moves `amount` of `asset` from available to held. The account is indexed once for the
    /// market-data record and the change (as in `release` and `trade`).
    #[inline(always)]
    pub(crate) fn hold(&mut self, ai: u32, asset: AssetId, amount: u64) {
        let a = &mut self.accounts[ai as usize];
        if self.market_data {
            record_balance(a, ai, asset, self.md_epoch, &mut self.touched_balances);
        }
        let b = &mut a.bal[asset as usize];
        b.available -= amount;
        b.held += amount;
    }

    /// Moves `amount` of `asset` from held back to available.
    #[inline(always)]
    pub(crate) fn release(&mut self, ai: u32, asset: AssetId, amount: u64) {
        if amount == 0 {
            return;
        }
        let a = &mut self.accounts[ai as usize];
        if self.market_data {
            record_balance(a, ai, asset, self.md_epoch, &mut self.touched_balances);
        }
        let b = &mut a.bal[asset as usize];
        b.held -= amount;
        b.available += amount;
    }

    // ---- markets -----------------------------------------------------------------------

    /// The index of `market`; the last one found is cached (commands come in runs on one
    /// market, and markets are never removed, so the cache cannot go stale).
    pub(crate) fn market_idx(&mut self, market: MarketId) -> Result<u32, RejectCode> {
        if let Some((id, mi)) = self.market_cache
            && id == market
        {
            return Ok(mi);
        }
        let mi = self
            .market_index
            .get(&u64::from(market))
            .copied()
            .ok_or(RejectCode::UnknownMarket)?;
        self.market_cache = Some((market, mi));
        Ok(mi)
    }

    /// Lists the market for the end of this command (reference price, uncrossed check) and
    /// records its BBO before its first change in the open market-data batch.
    #[inline(always)]
    pub(crate) fn touch_market(&mut self, mi: u32) {
        let m = &mut self.markets[mi as usize];
        if m.touched_epoch != self.epoch {
            m.touched_epoch = self.epoch;
            self.touched_markets.push(mi);
            // Only the `Bbo` event reads it, so a replay records nothing.
            if self.market_data && m.md_epoch != self.md_epoch {
                m.md_epoch = self.md_epoch;
                m.bbo_before = m.bbo();
                self.md_markets.push(mi);
            }
        }
    }

    /// Records a level's aggregate before its first change in the open market-data batch
    /// (call before changing it; a level created later in the batch starts from zero). Returns the
    /// level's index, if it exists, to spare the caller a second lookup. Inlined, so that a
    /// replay, which records nothing, drops the lookup where the caller ignores it.
    #[inline(always)]
    pub(crate) fn touch_level(&mut self, mi: u32, side: Side, price: PriceTicks) -> Option<u32> {
        let epoch = self.md_epoch;
        let market_data = self.market_data;
        let m = &mut self.markets[mi as usize];
        let market = m.cfg.market;
        let book = m.book_mut(side);
        let book_level = book.level_at(price);
        if !market_data {
            return book_level;
        }
        let (qty, count) = match book_level {
            Some(li) => {
                let l = &mut book.levels[li as usize];
                if l.touched_epoch == epoch {
                    return Some(li);
                }
                l.touched_epoch = epoch;
                (l.visible, l.count)
            }
            None => (0, 0),
        };
        self.touched_levels.push(TouchedLevel {
            market,
            mi,
            side,
            price,
            qty,
            count,
        });
        book_level
    }

    /// `touch_level` for a level that exists and whose index the caller already holds (the
    /// best level in matching, a resting order's level): no ladder lookup.
    #[inline(always)]
    pub(crate) fn touch_level_at(&mut self, mi: u32, side: Side, li: u32) {
        if !self.market_data {
            return;
        }
        let epoch = self.md_epoch;
        let m = &mut self.markets[mi as usize];
        let market = m.cfg.market;
        let l = &mut m.book_mut(side).levels[li as usize];
        if l.touched_epoch == epoch {
            return;
        }
        l.touched_epoch = epoch;
        let (price, qty, count) = (l.price, l.visible, l.count);
        self.touched_levels.push(TouchedLevel {
            market,
            mi,
            side,
            price,
            qty,
            count,
        });
    }

    fn create_market(&mut self, cfg: MarketConfig, out: &mut Vec<Event>) -> Result<(), RejectCode> {
        if self.market_index.contains_key(&u64::from(cfg.market)) {
            return Err(RejectCode::MarketExists);
        }
        if self.markets.len() >= MARKETS_MAX {
            return Err(RejectCode::TooManyMarkets);
        }
        cfg.validate()?;
        let mi = self.markets.len() as u32;
        self.markets.push(new_market(cfg));
        self.market_index.insert(u64::from(cfg.market), mi);
        out.push(Event::MarketCreated { market: cfg.market });
        Ok(())
    }

    fn set_phase(
        &mut self,
        market: MarketId,
        op: PhaseOp,
        out: &mut Vec<Event>,
    ) -> Result<(), RejectCode> {
        let mi = self.market_idx(market)?;
        let phase = self.markets[mi as usize].phase;
        let next = match (op, phase) {
            (PhaseOp::Halt, MarketPhase::Continuous) => MarketPhase::Halted,
            (PhaseOp::Resume, MarketPhase::Halted) => MarketPhase::Continuous,
            (PhaseOp::StartAuction, MarketPhase::Continuous | MarketPhase::Halted) => {
                MarketPhase::Auction
            }
            (PhaseOp::Uncross, MarketPhase::Auction) => {
                self.touch_market(mi);
                self.uncross(mi, out);
                return Ok(());
            }
            (PhaseOp::Uncross, _) => return Err(RejectCode::NotInAuction),
            _ => return Err(RejectCode::InvalidPhase),
        };
        self.touch_market(mi);
        self.markets[mi as usize].phase = next;
        out.push(Event::PhaseChanged {
            market,
            phase: next,
        });
        Ok(())
    }

    // ---- orders ------------------------------------------------------------------------

    fn place(&mut self, o: &NewOrder, now: TimeUs, out: &mut Vec<Event>) -> Result<(), RejectCode> {
        let mi = self.market_idx(o.market)?;
        let checked = self.check_new_order(mi, o, now)?;
        // Everything below changes state: every refusal happened above.
        let ai = checked.ai;
        self.touch_market(mi);
        // The hold and the owner's open-order count in one index of the account.
        {
            let a = &mut self.accounts[ai as usize];
            if self.market_data {
                record_balance(
                    a,
                    ai,
                    checked.asset,
                    self.md_epoch,
                    &mut self.touched_balances,
                );
            }
            let b = &mut a.bal[checked.asset as usize];
            b.available -= checked.hold;
            b.held += checked.hold;
            a.open_orders += 1;
        }
        let id = self.next_order_id;
        self.next_order_id += 1;
        let order = Order {
            id,
            client_order_id: o.client_order_id,
            account: o.account,
            acct: ai,
            market: mi,
            side: o.side,
            order_type: o.order_type,
            tif: o.time_in_force,
            price: checked.price,
            qty: o.qty,
            visible: o.qty,
            peak: o.iceberg_peak,
            stop_price: o.stop_price,
            expire_time_us: o.expire_time_us,
            stp: o.stp,
            session: o.session,
            hold: checked.hold,
            prev: NIL,
            next: NIL,
            resting: false,
            listed: false,
        };
        let oi = self.alloc_order(order);
        out.push(Event::Accepted {
            order_id: id,
            client_order_id: o.client_order_id,
            account: o.account,
            market: o.market,
            side: o.side,
            price: checked.price,
            qty: o.qty,
        });
        let m = &mut self.markets[mi as usize];
        match o.order_type {
            OrderType::StopLimit | OrderType::StopMarket => {
                match o.side {
                    Side::Buy => m.buy_stops.insert((o.stop_price, id)),
                    Side::Sell => m.sell_stops.insert((PriceTicks::MAX - o.stop_price, id)),
                };
                if o.time_in_force == TimeInForce::Gtd {
                    self.expiries.insert((o.expire_time_us, id));
                }
                self.list_order(ai, oi);
            }
            OrderType::Limit | OrderType::Market => {
                if m.phase == MarketPhase::Auction {
                    self.rest(oi);
                    self.list_order(ai, oi);
                } else if o.order_type == OrderType::Limit
                    && matches!(o.time_in_force, TimeInForce::Gtc | TimeInForce::Gtd)
                    && {
                        let best = m.book(o.side.opposite()).best;
                        best == 0 || !crosses(o.side, checked.price, best)
                    }
                {
                    // A resting-kind limit order that does not reach the opposite best
                    // cannot trade: `match_taker` would stop before its first fill and rest
                    // it, so it rests here without the call (most new orders are these).
                    self.rest(oi);
                    self.list_order(ai, oi);
                    self.run_stops(mi, out);
                } else {
                    self.match_taker(mi, oi, out);
                    // Only an order left resting joins its owner's list: an incoming order
                    // that traded out or was cancelled is gone before anyone can ask.
                    let o = &self.orders[oi as usize];
                    if o.resting && o.id == id {
                        self.list_order(ai, oi);
                    }
                    self.run_stops(mi, out);
                }
            }
        }
        Ok(())
    }

    /// Every check of a new order, without changing anything.
    fn check_new_order(
        &self,
        mi: u32,
        o: &NewOrder,
        now: TimeUs,
    ) -> Result<CheckedOrder, RejectCode> {
        use RejectCode as R;
        let m = &self.markets[mi as usize];
        let cfg = &m.cfg;
        let is_stop = matches!(o.order_type, OrderType::StopLimit | OrderType::StopMarket);
        let is_market = matches!(o.order_type, OrderType::Market | OrderType::StopMarket);
        let immediate = matches!(o.time_in_force, TimeInForce::Ioc | TimeInForce::Fok);
        match m.phase {
            MarketPhase::Halted => return Err(R::MarketHalted),
            MarketPhase::Auction => {
                if !is_stop && (is_market || immediate || o.post_only != PostOnly::No) {
                    return Err(R::NotAllowedInAuction);
                }
            }
            MarketPhase::Continuous => {}
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
        // Shape of the order: which fields each type and time in force may use. A plain limit
        // order (most orders) uses none of the optional fields, so of the shape checks only
        // its price's can refuse it: one test of the fields instead of the whole chain.
        let plain = o.order_type == OrderType::Limit
            && o.post_only == PostOnly::No
            && o.time_in_force != TimeInForce::Gtd
            && (o.protection_price | o.stop_price | o.iceberg_peak | o.expire_time_us) == 0;
        if plain {
            if o.price == 0 || o.price > cfg.max_price {
                return Err(R::InvalidPrice);
            }
        } else {
            check_shape(m, o, now)?;
        }
        // The price the order holds at and, for limit orders, rests at.
        let mut price = if is_market {
            if o.protection_price != 0 {
                if o.protection_price > cfg.max_price {
                    return Err(R::InvalidPrice);
                }
                o.protection_price
            } else {
                let reference = if is_stop {
                    o.stop_price
                } else if m.last_price != 0 {
                    m.last_price
                } else if m.reference_price != 0 {
                    m.reference_price
                } else {
                    m.book(o.side.opposite()).best
                };
                if reference == 0 {
                    return Err(R::NoReferencePrice);
                }
                derive_protection(cfg, o.side, reference)
            }
        } else {
            o.price
        };
        if cfg.band_action == BandAction::Reject && m.outside_band(price) {
            return Err(R::PriceOutsideBand);
        }
        let opposite_best = m.book(o.side.opposite()).best;
        if o.post_only != PostOnly::No
            && m.phase == MarketPhase::Continuous
            && opposite_best != 0
            && crosses(o.side, price, opposite_best)
        {
            if o.post_only == PostOnly::Reject {
                return Err(R::PostOnlyWouldTake);
            }
            price = match o.side {
                Side::Buy => opposite_best - 1,
                Side::Sell => opposite_best + 1,
            };
            if price == 0 || price > cfg.max_price {
                return Err(R::PostOnlyWouldTake);
            }
        }
        if o.time_in_force == TimeInForce::Fok
            && !is_stop
            && !self.fok_fillable(mi, o.side, price, o.qty, o.account, o.stp)
        {
            return Err(R::FokNotFillable);
        }
        // Capacity.
        if self.order_index.len() >= ORDERS_MAX || !self.order_index.can_insert(self.next_order_id)
        {
            return Err(R::EngineFull);
        }
        if is_stop {
            if m.buy_stops.len() + m.sell_stops.len() >= STOP_ORDERS_PER_MARKET_MAX {
                return Err(R::EngineFull);
            }
        } else if !is_market && !immediate {
            let book = m.book(o.side);
            if book.level_count >= PRICE_LEVELS_PER_SIDE_MAX && book.level_at(price).is_none() {
                return Err(R::TooManyPriceLevels);
            }
        }
        // Funds.
        let hold = m.hold_for(o.side, price, o.qty).ok_or(R::AmountOverflow)?;
        let ai = *self
            .account_index
            .get(&o.account)
            .ok_or(R::InsufficientFunds)?;
        let acct = &self.accounts[ai as usize];
        if acct.open_orders >= OPEN_ORDERS_PER_ACCOUNT_MAX {
            return Err(R::TooManyOpenOrders);
        }
        let asset = m.hold_asset(o.side);
        if acct.bal[asset as usize].available < hold {
            return Err(R::InsufficientFunds);
        }
        Ok(CheckedOrder {
            ai,
            price,
            hold,
            asset,
        })
    }

    /// Appends the id of order `oi` (resting or a stop) to its owner's list.
    #[inline(always)]
    pub(crate) fn list_order(&mut self, ai: u32, oi: u32) {
        let o = &mut self.orders[oi as usize];
        o.listed = true;
        self.accounts[ai as usize].order_ids.push(o.id);
    }

    /// Puts an order into the slab and the id index (the caller has counted it for its
    /// owner, and lists it with `list_order` once it rests or waits as a stop; an incoming
    /// order that is gone by the end of the command is never listed).
    fn alloc_order(&mut self, order: Order) -> u32 {
        let id = order.id;
        let oi = match self.free_orders.pop() {
            Some(i) => {
                self.orders[i as usize] = order;
                i
            }
            None => {
                self.orders.push(order);
                // The free list can then take every slot without growing: closing orders
                // never allocates.
                self.free_orders.reserve(self.orders.len());
                (self.orders.len() - 1) as u32
            }
        };
        self.order_index.insert(id, oi);
        oi
    }

    /// Takes a closed order (not resting, no stop entry, hold already zero or released)
    /// out of the slab, the index, the expiry set and its owner's list.
    #[inline(always)]
    pub(crate) fn free_order(&mut self, oi: u32) {
        let (id, ai, tif, exp, listed) = {
            let o = &self.orders[oi as usize];
            (o.id, o.acct, o.tif, o.expire_time_us, o.listed)
        };
        debug_assert_eq!(self.orders[oi as usize].hold, 0);
        if tif == TimeInForce::Gtd {
            self.expiries.remove(&(exp, id));
        }
        self.order_index.remove(&id);
        let a = &mut self.accounts[ai as usize];
        if listed && let Some(pos) = a.order_ids.iter().rposition(|x| *x == id) {
            a.order_ids.swap_remove(pos);
        }
        a.open_orders -= 1;
        self.free_orders.push(oi);
    }

    /// Puts an order at the back of its price level.
    #[inline(always)]
    pub(crate) fn rest(&mut self, oi: u32) {
        let (mi, side, price, tif, exp, id) = {
            let o = &mut self.orders[oi as usize];
            o.visible = if o.peak > 0 { o.peak.min(o.qty) } else { o.qty };
            (o.market, o.side, o.price, o.tif, o.expire_time_us, o.id)
        };
        // One lookup: the level is found or created first, then recorded as `touch_level`
        // would have before the change (a new level records a zero aggregate, as an absent
        // one does); the market is indexed once for both.
        let (market_data, epoch) = (self.market_data, self.md_epoch);
        let m = &mut self.markets[mi as usize];
        let market = m.cfg.market;
        let book = m.book_mut(side);
        let li = book.level_or_insert(price);
        let l = &mut book.levels[li as usize];
        if market_data && l.touched_epoch != epoch {
            l.touched_epoch = epoch;
            self.touched_levels.push(TouchedLevel {
                market,
                mi,
                side,
                price,
                qty: l.visible,
                count: l.count,
            });
        }
        crate::book::push_back(book, &mut self.orders, li, oi);
        if tif == TimeInForce::Gtd {
            self.expiries.insert((exp, id));
        }
    }

    /// Closes an open order (resting, stop, or incoming), releasing its hold.
    pub(crate) fn cancel_order(&mut self, oi: u32, reason: CancelReason, out: &mut Vec<Event>) {
        // The order's hold is zeroed and the market's fields read up front, each record
        // indexed once.
        let (mi, side, price, resting, id, account, qty, hold, ai, otype, stop) = {
            let o = &mut self.orders[oi as usize];
            let hold = o.hold;
            o.hold = 0;
            (
                o.market,
                o.side,
                o.price,
                o.resting,
                o.id,
                o.account,
                o.qty,
                hold,
                o.acct,
                o.order_type,
                o.stop_price,
            )
        };
        let (asset, market) = {
            let m = &self.markets[mi as usize];
            (m.hold_asset(side), m.cfg.market)
        };
        self.touch_market(mi);
        if resting {
            let li = self.touch_level(mi, side, price);
            let book = self.markets[mi as usize].book_mut(side);
            match li {
                Some(li) => crate::book::unlink_at(book, &mut self.orders, oi, li),
                None => crate::book::unlink(book, &mut self.orders, oi),
            }
        } else if matches!(otype, OrderType::StopLimit | OrderType::StopMarket) {
            let m = &mut self.markets[mi as usize];
            match side {
                Side::Buy => m.buy_stops.remove(&(stop, id)),
                Side::Sell => m.sell_stops.remove(&(PriceTicks::MAX - stop, id)),
            };
        }
        self.release(ai, asset, hold);
        out.push(Event::OrderCancelled {
            order_id: id,
            account,
            market,
            qty,
            reason,
        });
        self.free_order(oi);
    }

    #[inline(always)]
    fn find_order(
        &self,
        account: AccountId,
        market: MarketId,
        order_id: OrderId,
    ) -> Result<u32, RejectCode> {
        let oi = *self
            .order_index
            .get(&order_id)
            .ok_or(RejectCode::UnknownOrder)?;
        let o = &self.orders[oi as usize];
        if o.account != account || self.markets[o.market as usize].cfg.market != market {
            return Err(RejectCode::UnknownOrder);
        }
        Ok(oi)
    }

    fn cancel(
        &mut self,
        account: AccountId,
        market: MarketId,
        order_id: OrderId,
        out: &mut Vec<Event>,
    ) -> Result<(), RejectCode> {
        self.market_idx(market)?;
        let oi = self.find_order(account, market, order_id)?;
        self.cancel_order(oi, CancelReason::Requested, out);
        Ok(())
    }

    /// Cancels, in id order, every open order of `account` that `select` picks.
    fn cancel_where(
        &mut self,
        account: AccountId,
        out: &mut Vec<Event>,
        reason: CancelReason,
        select: impl Fn(&Order, MarketId) -> bool,
    ) {
        let Some(&ai) = self.account_index.get(&account) else {
            return;
        };
        let mut list = std::mem::take(&mut self.scratch);
        list.clear();
        for id in &self.accounts[ai as usize].order_ids {
            if let Some(&oi) = self.order_index.get(id) {
                let o = &self.orders[oi as usize];
                if select(o, self.markets[o.market as usize].cfg.market) {
                    list.push(oi);
                }
            } else {
                debug_assert!(false, "closed order {id} still listed");
            }
        }
        // In id order: the owner's list is unsorted.
        list.sort_unstable_by_key(|oi| self.orders[*oi as usize].id);
        for &oi in &list {
            self.cancel_order(oi, reason, out);
        }
        self.scratch = list;
    }

    fn amend(
        &mut self,
        account: AccountId,
        market: MarketId,
        order_id: OrderId,
        new_price: PriceTicks,
        new_qty: QtyLots,
        out: &mut Vec<Event>,
    ) -> Result<(), RejectCode> {
        use RejectCode as R;
        let mi = self.market_idx(market)?;
        let oi = self.find_order(account, market, order_id)?;
        let m = &self.markets[mi as usize];
        if m.phase == MarketPhase::Halted {
            return Err(R::MarketHalted);
        }
        let o = &self.orders[oi as usize];
        if !o.resting {
            return Err(R::OrderNotAmendable);
        }
        if new_qty == 0 {
            return Err(R::InvalidQuantity);
        }
        if new_qty > m.cfg.max_qty {
            return Err(R::QtyAboveMax);
        }
        if new_price == 0 || new_price > m.cfg.max_price {
            return Err(R::InvalidPrice);
        }
        if new_price == o.price && new_qty == o.qty {
            return Err(R::AmendNoChange);
        }
        let price_changed = new_price != o.price;
        if price_changed {
            if m.cfg.band_action == BandAction::Reject && m.outside_band(new_price) {
                return Err(R::PriceOutsideBand);
            }
            let opp = m.book(o.side.opposite()).best;
            if m.phase == MarketPhase::Continuous && opp != 0 && crosses(o.side, new_price, opp) {
                return Err(R::AmendWouldCross);
            }
            let book = m.book(o.side);
            if book.level_count >= PRICE_LEVELS_PER_SIDE_MAX && book.level_at(new_price).is_none() {
                return Err(R::TooManyPriceLevels);
            }
        }
        let new_hold = m
            .hold_for(o.side, new_price, new_qty)
            .ok_or(R::AmountOverflow)?;
        let asset = m.hold_asset(o.side);
        let ai = o.acct;
        if new_hold > o.hold
            && self.accounts[ai as usize].bal[asset as usize].available < new_hold - o.hold
        {
            return Err(R::InsufficientFunds);
        }
        // Accepted: adjust the hold, then the book.
        let (old_hold, side, old_price, old_qty) = (o.hold, o.side, o.price, o.qty);
        self.touch_market(mi);
        if new_hold > old_hold {
            self.hold(ai, asset, new_hold - old_hold);
        } else {
            self.release(ai, asset, old_hold - new_hold);
        }
        self.orders[oi as usize].hold = new_hold;
        let keep = !price_changed && new_qty < old_qty;
        self.touch_level(mi, side, old_price);
        if keep {
            let o = &mut self.orders[oi as usize];
            let new_visible = o.visible.min(new_qty);
            let shown_less = o.visible - new_visible;
            o.qty = new_qty;
            o.visible = new_visible;
            let book = self.markets[mi as usize].book_mut(side);
            if let Some(li) = book.level_at(old_price) {
                book.levels[li as usize].visible -= shown_less;
            }
        } else {
            let book = self.markets[mi as usize].book_mut(side);
            crate::book::unlink(book, &mut self.orders, oi);
            let o = &mut self.orders[oi as usize];
            o.price = new_price;
            o.qty = new_qty;
            // `rest` re-adds the GTD expiry entry, which is unchanged (same key).
            self.rest(oi);
        }
        let o = &self.orders[oi as usize];
        out.push(Event::OrderAmended {
            order_id,
            account,
            market,
            price: o.price,
            qty: o.qty,
            priority_kept: keep,
        });
        Ok(())
    }

    /// Expires every GTD order whose expiry time has come, in (time, id) order.
    fn expire(&mut self, now: TimeUs, out: &mut Vec<Event>) {
        while let Some(&(t, id)) = self.expiries.first() {
            if t > now {
                break;
            }
            self.expiries.pop_first();
            if let Some(&oi) = self.order_index.get(&id) {
                self.cancel_order(oi, CancelReason::Expired, out);
            }
        }
    }

    /// The end of every command: settles the reference price of each market the command
    /// touched and checks the invariants. Per command, whatever the market-data batching: the
    /// reference price is state.
    fn end_command(&mut self) {
        for &mi in &self.touched_markets {
            let m = &mut self.markets[mi as usize];
            if m.last_price != 0 {
                m.reference_price = m.last_price;
            }
            // Architecture Invariant: a book in continuous trading is never crossed after a
            // command. O(1), so it runs in production too (fail-stop).
            assert!(
                m.phase == MarketPhase::Auction
                    || m.bids.best == 0
                    || m.asks.best == 0
                    || m.bids.best < m.asks.best,
                "book crossed in market {}",
                m.cfg.market
            );
        }
        self.touched_markets.clear();

        if self.full_checks
            && let Err(e) = self.check_invariants()
        {
            panic!("engine invariant broken: {e}");
        }
    }

    /// Ends the open market-data batch: appends to `out` one `Depth` per level whose
    /// (visible quantity, orders) differs from before the batch, one `Bbo` per market whose
    /// best bid or ask changed (by market id), one `Balance` per (account, asset) whose
    /// balance changed. Each carries the value at the flush, so that a reader who applies them
    /// holds the engine's depth, BBO and balances as they are now, whatever the batching.
    /// `Depth` and `Balance` come in the order the batch first touched their level or balance
    /// (deterministic: the same commands in the same batches give the same events); sorting
    /// them would cost more than batching saves (n log n over a batch's ~100 entries against
    /// an insertion sort of a command's few). Starts the next batch.
    pub fn flush_market_data(&mut self, out: &mut Vec<Event>) {
        self.emit_market_data(out, false);
    }

    /// Appends the open batch's market data (see [`Engine::flush_market_data`]); `sorted`
    /// puts `Depth` in (market, side, price) order and `Balance` in (account, asset) order,
    /// as [`Engine::apply`] has always given a command's. Never inlined, so that a profile
    /// can count it (`callgrind --toggle-collect='*Engine::emit_market_data'`).
    #[inline(never)]
    fn emit_market_data(&mut self, out: &mut Vec<Event>, sorted: bool) {
        let md_epoch = self.md_epoch;
        let levels = &mut self.touched_levels;
        if sorted && levels.len() > 1 {
            // Stable, so that of a level recorded twice the first record stays first.
            sort_small_by_key(levels, |t| (t.market, t.side as u8, t.price));
        }
        // A level is recorded again only when it was absent at the touch (removed and created
        // again within the batch), with a zero aggregate; its first record holds the aggregate
        // before the batch. A level that exists now was marked by the batch (`touch_level`,
        // `rest`): its first record unmarks it, and later records of it are skipped. Of an
        // absent level's records only one can hold a non-zero aggregate (the one taken while
        // it existed), so only that one emits.
        for t in levels.iter() {
            let book = self.markets[t.mi as usize].book_mut(t.side);
            let now = match book.level_at(t.price) {
                Some(li) => {
                    let l = &mut book.levels[li as usize];
                    if l.touched_epoch != md_epoch {
                        continue;
                    }
                    l.touched_epoch = 0;
                    (l.visible, l.count)
                }
                None => (0, 0),
            };
            if now != (t.qty, t.count) {
                out.push(Event::Depth {
                    market: t.market,
                    side: t.side,
                    price: t.price,
                    qty: now.0,
                    orders: now.1,
                });
            }
        }
        levels.clear();

        let markets = &mut self.md_markets;
        if markets.len() > 1 {
            markets.sort_unstable_by_key(|mi| self.markets[*mi as usize].cfg.market);
        }
        for &mi in markets.iter() {
            let m = &self.markets[mi as usize];
            let now = m.bbo();
            // Compared word by word from registers: an array `!=` was compiled to 16-byte
            // loads of `now` just stored as 8-byte words, a store-forwarding stall that was
            // a fifth of `apply`'s own cycles in the profile.
            let b = m.bbo_before;
            let changed =
                ((now[0] ^ b[0]) | (now[1] ^ b[1]) | (now[2] ^ b[2]) | (now[3] ^ b[3])) != 0;
            if changed {
                out.push(Event::Bbo {
                    market: m.cfg.market,
                    bid_price: now[0],
                    bid_qty: now[1],
                    ask_price: now[2],
                    ask_qty: now[3],
                });
            }
        }
        markets.clear();

        let bals = &mut self.touched_balances;
        if sorted && bals.len() > 1 {
            // (account, asset) pairs are distinct (`record_balance` records each once per
            // batch).
            sort_small_by_key(bals, |t| (t.account, t.asset));
        }
        for t in bals.iter() {
            let now = self.accounts[t.ai as usize].bal[t.asset as usize];
            if now != t.before {
                out.push(Event::Balance {
                    account: t.account,
                    asset: t.asset,
                    available: now.available,
                    held: now.held,
                });
            }
        }
        bals.clear();
        self.md_epoch += 1;
    }
}

/// Records balance `asset` of account `a` (slot `ai`) in `list` before its first change in
/// the batch `md_epoch` (the account's touch mark says which of its balances are recorded).
/// A free function over the account and the list, so that callers holding the account
/// borrowed index it once.
#[inline(always)]
pub(crate) fn record_balance(
    a: &mut Account,
    ai: u32,
    asset: AssetId,
    md_epoch: u64,
    list: &mut Vec<TouchedBalance>,
) {
    if a.touched_epoch != md_epoch {
        a.touched_epoch = md_epoch;
        a.touched_mask = 0;
    }
    let bit = 1u32 << asset;
    if a.touched_mask & bit == 0 {
        a.touched_mask |= bit;
        list.push(TouchedBalance {
            account: a.id,
            ai,
            asset,
            before: a.bal[asset as usize],
        });
    }
}

/// Stable sort by key of the short lists a command touches (a few entries): an insertion
/// sort, cheaper there than the library sort; long lists (a sweep through many levels) go
/// to the library sort.
fn sort_small_by_key<T: Copy, K: Ord>(v: &mut [T], key: impl Fn(&T) -> K) {
    const SMALL: usize = 24;
    if v.len() > SMALL {
        v.sort_by_key(key);
        return;
    }
    // Insertion with a hole: each step moves one element instead of swapping two.
    for i in 1..v.len() {
        let item = v[i];
        let k = key(&item);
        let mut j = i;
        while j > 0 && key(&v[j - 1]) > k {
            v[j] = v[j - 1];
            j -= 1;
        }
        v[j] = item;
    }
}

#[derive(Clone, Copy, Debug)]
enum PhaseOp {
    Halt,
    Resume,
    StartAuction,
    Uncross,
}

struct CheckedOrder {
    ai: u32,
    price: PriceTicks,
    hold: AmountMinor,
    /// What the order holds: quote for a buy, base for a sell.
    asset: AssetId,
}

pub(crate) fn new_market(cfg: MarketConfig) -> Market {
    Market {
        tick_value: cfg.tick_value_quote_minor().unwrap_or(1),
        hold_fee_bps: u64::from(cfg.maker_fee_bps.max(cfg.taker_fee_bps)),
        phase: MarketPhase::Continuous,
        last_price: 0,
        reference_price: cfg.reference_price,
        bids: SideBook::new(Side::Buy),
        asks: SideBook::new(Side::Sell),
        buy_stops: BTreeSet::new(),
        sell_stops: BTreeSet::new(),
        touched_epoch: 0,
        md_epoch: 0,
        bbo_before: [0; 4],
        cfg,
    }
}

/// The shape checks of a new order in market `m` (which fields each type and time in force
/// may use, the stop and the expiry), in `check_new_order`'s order; a plain limit order
/// skips them (only its price can fail there).
#[inline(never)]
fn check_shape(m: &Market, o: &NewOrder, now: TimeUs) -> Result<(), RejectCode> {
    use RejectCode as R;
    let cfg = &m.cfg;
    let is_stop = matches!(o.order_type, OrderType::StopLimit | OrderType::StopMarket);
    let is_market = matches!(o.order_type, OrderType::Market | OrderType::StopMarket);
    let immediate = matches!(o.time_in_force, TimeInForce::Ioc | TimeInForce::Fok);
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
    match o.time_in_force {
        TimeInForce::Gtd => {
            if o.expire_time_us <= now {
                return Err(R::InvalidExpiry);
            }
        }
        _ => {
            if o.expire_time_us != 0 {
                return Err(R::InvalidExpiry);
            }
        }
    }
    if is_stop && m.last_price != 0 {
        let triggered = match o.side {
            Side::Buy => m.last_price >= o.stop_price,
            Side::Sell => m.last_price <= o.stop_price,
        };
        if triggered {
            return Err(R::StopWouldTriggerNow);
        }
    }
    Ok(())
}

/// The protection price `market_protection_bps` away from `reference`, inside [1, max].
fn derive_protection(cfg: &MarketConfig, side: Side, reference: PriceTicks) -> PriceTicks {
    let r = reference as u128;
    let bps = cfg.market_protection_bps as u128;
    match side {
        Side::Buy => ((r * (10_000 + bps) / 10_000) as u64).min(cfg.max_price),
        Side::Sell => ((r * (10_000 - bps) / 10_000) as u64).max(1),
    }
}

/// The rejection event for a command (ids copied from the command).
fn reject_event(code: RejectCode, kind: &CommandKind) -> Event {
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
