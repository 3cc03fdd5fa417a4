//! The engine's public vocabulary: ids, commands in, events out, reject codes and market
//! configuration.
//!
//! Every type here is plain integers and enums (no heap, no `String`) so that the journal can
//! encode a command as a fixed-size binary record and the hot path never allocates. Prices are
//! integer ticks and quantities integer lots of the market they belong to; amounts are integer
//! minor units of an asset. Decimal conversions live on [`MarketConfig`] (see `decimal.rs`).

use serde::{Deserialize, Serialize};

/// A trading account (one customer, or the fee account). Chosen by the node.
pub type AccountId = u64;
/// An order id, assigned by the engine: dense, starting at 1, never reused.
pub type OrderId = u64;
/// The client's own id for an order, echoed in events; the engine does not interpret it.
pub type ClientOrderId = u64;
/// A market (CITY/EUR, ...). Chosen by whoever creates the market.
pub type MarketId = u32;
/// An asset; must be below [`crate::limits::ASSETS_MAX`].
pub type AssetId = u16;
/// The journal sequence number of a command; strictly increasing.
pub type Seq = u64;
/// Microseconds since the Unix epoch, UTC. Only ever arrives with a command.
pub type TimeUs = u64;
/// A price in ticks of its market: decimal price = ticks × tick size.
pub type PriceTicks = u64;
/// A quantity in lots of its market: base minor units = lots × lot size.
pub type QtyLots = u64;
/// An amount of an asset in its minor units (10^-6 CITY, 10^-2 EUR/LCL).
pub type AmountMinor = u64;
/// A client session (connection); orders placed with a non-zero session are cancelled by
/// [`CommandKind::CancelOnDisconnect`] for that session.
pub type SessionId = u64;

/// One input to the engine. `seq` must be strictly greater than the previous command's and
/// `time_us` must not go backwards; both are assigned by the node before journaling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub seq: Seq,
    pub time_us: TimeUs,
    pub kind: CommandKind,
}

/// What a command asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandKind {
    /// Place a new order (every order type).
    PlaceOrder(NewOrder),
    /// Cancel one open order (resting or an untriggered stop) of `account`.
    Cancel {
        account: AccountId,
        market: MarketId,
        order_id: OrderId,
    },
    /// Change price and/or quantity of a resting order. `new_qty` is the new open
    /// (unfilled) quantity. A price change or quantity increase loses queue priority; a pure
    /// quantity decrease keeps it. An amend never trades: one that would cross is rejected.
    Amend {
        account: AccountId,
        market: MarketId,
        order_id: OrderId,
        new_price: PriceTicks,
        new_qty: QtyLots,
    },
    /// Cancel every open order of `account`, in one market or (None) in all markets.
    MassCancel {
        account: AccountId,
        market: Option<MarketId>,
    },
    /// Cancel every open order that `account` placed with `session` (the node sends this
    /// when a session's connection drops).
    CancelOnDisconnect {
        account: AccountId,
        session: SessionId,
    },
    /// Credit `amount` to the available balance (funds arrived in the hot ledger account).
    Deposit {
        account: AccountId,
        asset: AssetId,
        amount: AmountMinor,
    },
    /// Debit `amount` from the available balance (never from held funds).
    Withdraw {
        account: AccountId,
        asset: AssetId,
        amount: AmountMinor,
    },
    /// Open a new market in the continuous trading phase.
    CreateMarket(MarketConfig),
    /// Stop trading: new orders and amends are rejected, cancels still work.
    Halt { market: MarketId },
    /// Back to continuous trading from a halt.
    Resume { market: MarketId },
    /// Enter the call-auction phase: limit orders rest without matching (the book may cross).
    StartAuction { market: MarketId },
    /// Uncross the auction at one price and return to continuous trading.
    Uncross { market: MarketId },
    /// Only advances time: expires GTD orders whose time has come. Every other command does
    /// the same before its own work.
    Tick,
}

/// A new order. Unused fields are zero (documented per field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOrder {
    pub account: AccountId,
    pub market: MarketId,
    pub client_order_id: ClientOrderId,
    pub side: Side,
    pub order_type: OrderType,
    pub time_in_force: TimeInForce,
    /// Limit price (Limit, StopLimit); must be 0 for Market and StopMarket.
    pub price: PriceTicks,
    /// Total quantity, in lots.
    pub qty: QtyLots,
    /// Trigger price (StopLimit, StopMarket); 0 otherwise.
    pub stop_price: PriceTicks,
    /// Worst price a Market/StopMarket order may trade at; 0 lets the engine derive it from
    /// the reference price (or the stop price) and the market's `market_protection_bps`.
    /// Must be 0 for limit orders.
    pub protection_price: PriceTicks,
    /// Expiry for GTD (the order is expired by the first command with `time_us >=` it);
    /// 0 otherwise.
    pub expire_time_us: TimeUs,
    pub post_only: PostOnly,
    /// Visible peak of an iceberg order, 0 for a plain order. Must be < qty.
    pub iceberg_peak: QtyLots,
    pub stp: StpMode,
    /// The placing session, for cancel-on-disconnect; 0 = not tied to a session.
    pub session: SessionId,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum Side {
    Buy = 0,
    Sell = 1,
}

impl Side {
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum OrderType {
    Limit = 0,
    /// Trades immediately up to its protection price; the rest is cancelled (never rests).
    Market = 1,
    /// Becomes a Limit order when the last trade price reaches `stop_price`.
    StopLimit = 2,
    /// Becomes a Market order when the last trade price reaches `stop_price`.
    StopMarket = 3,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum TimeInForce {
    /// Good till cancelled.
    Gtc = 0,
    /// Good till `expire_time_us`.
    Gtd = 1,
    /// Immediate or cancel: trades what it can now, the rest is cancelled.
    Ioc = 2,
    /// Fill or kill: trades its whole quantity now or is rejected without trading.
    Fok = 3,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum PostOnly {
    /// An ordinary order.
    No = 0,
    /// Rejected if it would take liquidity.
    Reject = 1,
    /// Re-priced one tick behind the best opposite price if it would take liquidity.
    Reprice = 2,
}

/// Self-trade prevention: what happens when this (incoming) order meets a resting order of
/// the same account. The incoming order's mode decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum StpMode {
    /// Self trades are allowed.
    None = 0,
    /// Cancel the incoming order's remainder.
    CancelNewest = 1,
    /// Cancel the resting order and go on matching.
    CancelOldest = 2,
    /// Cancel both.
    CancelBoth = 3,
    /// Reduce both by the smaller open quantity; an order reduced to zero is cancelled.
    Decrement = 4,
}

/// What the market does with prices beyond its band.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum BandAction {
    /// Incoming orders priced outside the band are rejected.
    Reject = 0,
    /// Orders are accepted, but a trade outside the band halts the market instead of
    /// happening (the incoming order's remainder is cancelled).
    Halt = 1,
}

/// The trading phase of a market.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum MarketPhase {
    Continuous = 0,
    Halted = 1,
    Auction = 2,
}

/// Configuration of one market. Decimal tick size = `tick_mantissa` × 10^-`tick_scale` quote
/// units per base unit; lot size = `lot_size_base_minor` base minor units. The quote value of
/// one lot at one tick must be a whole number of quote minor units (checked at creation),
/// which makes every trade's quote amount exact: `price_ticks × qty_lots × tick_value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketConfig {
    pub market: MarketId,
    pub base_asset: AssetId,
    pub quote_asset: AssetId,
    /// Decimal places of the base asset's minor unit (6 for CITY).
    pub base_decimals: u8,
    /// Decimal places of the quote asset's minor unit (2 for EUR, LCL).
    pub quote_decimals: u8,
    pub tick_mantissa: u64,
    pub tick_scale: u8,
    pub lot_size_base_minor: u64,
    pub min_qty: QtyLots,
    pub max_qty: QtyLots,
    /// Highest acceptable price in ticks.
    pub max_price: PriceTicks,
    /// Width of the price band around the reference price, in basis points; 0 = no band.
    pub band_bps: u32,
    pub band_action: BandAction,
    /// Reference price before the first trade (0 = none, then no band applies until a trade).
    pub reference_price: PriceTicks,
    /// Distance of a derived protection price from its reference, in basis points.
    pub market_protection_bps: u32,
    /// Fee of the resting side of a trade (and of both sides of an auction trade), in bps.
    pub maker_fee_bps: u16,
    /// Fee of the incoming side of a trade, in bps.
    pub taker_fee_bps: u16,
}

/// Which side initiated a trade.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum Aggressor {
    Buy = 0,
    Sell = 1,
    /// A trade of an auction uncross: neither side took; both pay the maker fee.
    Auction = 2,
}

/// Why an order left the book (or never entered it) without being filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum CancelReason {
    /// The owner's Cancel command.
    Requested = 0,
    MassCancel = 1,
    Disconnect = 2,
    /// GTD expiry.
    Expired = 3,
    /// IOC or Market remainder that found no more liquidity within its price.
    Unfilled = 4,
    /// Self-trade prevention.
    SelfTrade = 5,
    /// The market halted (price band) while this order was matching.
    Halted = 6,
}

/// One output of the engine. A command's events come in this order: its own events (accept
/// or reject, trades, cancels, triggers, replenishments) as they happen, then, with
/// `Engine::apply`, its market data: `Depth` changes sorted by (market, side, price), then
/// `Bbo` per changed market, then `Balance` changes sorted by (account, asset). Commands applied
/// with `Engine::apply_in_batch` have no market data of their own; `Engine::flush_market_data`
/// gives the batch's, coalesced (one event per changed item, its value at the flush): `Depth`
/// and `Balance` there come in the order the batch first touched them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// An order passed the risk checks; `price` is the final one (after a post-only reprice,
    /// or the protection price of a market order).
    Accepted {
        order_id: OrderId,
        client_order_id: ClientOrderId,
        account: AccountId,
        market: MarketId,
        side: Side,
        price: PriceTicks,
        qty: QtyLots,
    },
    /// The command was refused and changed nothing. `order_id` is the target of a
    /// Cancel/Amend, else 0; `client_order_id` that of a PlaceOrder, else 0.
    Rejected {
        code: RejectCode,
        account: AccountId,
        client_order_id: ClientOrderId,
        order_id: OrderId,
    },
    Trade {
        trade_id: u64,
        market: MarketId,
        price: PriceTicks,
        qty: QtyLots,
        buy_order: OrderId,
        buy_account: AccountId,
        sell_order: OrderId,
        sell_account: AccountId,
        aggressor: Aggressor,
        /// Quote minor units paid by the buyer on top of the trade's quote amount.
        buy_fee: AmountMinor,
        /// Quote minor units kept from the seller's proceeds.
        sell_fee: AmountMinor,
        /// Open quantity of each order after this trade.
        buy_remaining: QtyLots,
        sell_remaining: QtyLots,
    },
    /// The order is closed; `qty` is the open quantity that was cancelled.
    OrderCancelled {
        order_id: OrderId,
        account: AccountId,
        market: MarketId,
        qty: QtyLots,
        reason: CancelReason,
    },
    /// Self-trade prevention in Decrement mode reduced an order without trading.
    OrderReduced {
        order_id: OrderId,
        account: AccountId,
        market: MarketId,
        reduced: QtyLots,
        remaining: QtyLots,
    },
    OrderAmended {
        order_id: OrderId,
        account: AccountId,
        market: MarketId,
        price: PriceTicks,
        qty: QtyLots,
        priority_kept: bool,
    },
    /// A stop order's trigger was reached; it now enters matching as a limit/market order.
    StopTriggered {
        order_id: OrderId,
        account: AccountId,
        market: MarketId,
        last_price: PriceTicks,
    },
    /// An iceberg's visible peak was used up and refilled from its reserve, at the back of
    /// its price level's queue.
    IcebergReplenished {
        order_id: OrderId,
        market: MarketId,
        visible: QtyLots,
    },
    /// New aggregate visible quantity at one price level (0 = level gone).
    Depth {
        market: MarketId,
        side: Side,
        price: PriceTicks,
        qty: QtyLots,
        orders: u32,
    },
    /// Best bid and offer after the command or batch (price 0 and qty 0 = that side is empty).
    Bbo {
        market: MarketId,
        bid_price: PriceTicks,
        bid_qty: QtyLots,
        ask_price: PriceTicks,
        ask_qty: QtyLots,
    },
    /// New available and held balance of an account in one asset.
    Balance {
        account: AccountId,
        asset: AssetId,
        available: AmountMinor,
        held: AmountMinor,
    },
    MarketCreated {
        market: MarketId,
    },
    /// The market changed phase (halt, resume, auction start, uncross, band halt).
    PhaseChanged {
        market: MarketId,
        phase: MarketPhase,
    },
    /// An auction uncrossed: `volume` lots traded at `price` (0, 0 when nothing crossed).
    Uncrossed {
        market: MarketId,
        price: PriceTicks,
        volume: QtyLots,
    },
}

/// A business refusal. The numbers are stable: clients, the journal and regulators key on
/// them. Never renumber; only append.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u16)]
pub enum RejectCode {
    UnknownMarket = 1,
    MarketExists = 2,
    InvalidMarketConfig = 3,
    MarketHalted = 4,
    UnknownOrder = 5,
    InvalidPrice = 6,
    InvalidQuantity = 7,
    QtyBelowMin = 8,
    QtyAboveMax = 9,
    PriceOutsideBand = 10,
    InsufficientFunds = 11,
    TooManyOpenOrders = 12,
    PostOnlyWouldTake = 13,
    FokNotFillable = 14,
    NoReferencePrice = 15,
    StopWouldTriggerNow = 16,
    InvalidExpiry = 17,
    InvalidOrderCombination = 18,
    NotAllowedInAuction = 19,
    NotInAuction = 20,
    SeqOutOfOrder = 21,
    TimeWentBackwards = 22,
    UnknownAsset = 23,
    AmountOverflow = 24,
    TooManyPriceLevels = 25,
    EngineFull = 26,
    PriceOffTick = 27,
    QtyOffLot = 28,
    AmendNoChange = 29,
    AmendWouldCross = 30,
    OrderNotAmendable = 31,
    TooManyAccounts = 32,
    InvalidIcebergPeak = 33,
    InvalidPhase = 34,
    TooManyMarkets = 35,
    InvalidAmount = 36,
}

impl RejectCode {
    /// The stable number of this refusal.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// A short English explanation, stable enough to show to a client.
    pub fn message(self) -> &'static str {
        match self {
            RejectCode::UnknownMarket => "unknown market",
            RejectCode::MarketExists => "market already exists",
            RejectCode::InvalidMarketConfig => "invalid market configuration",
            RejectCode::MarketHalted => "market is halted",
            RejectCode::UnknownOrder => "unknown order",
            RejectCode::InvalidPrice => "invalid price",
            RejectCode::InvalidQuantity => "invalid quantity",
            RejectCode::QtyBelowMin => "quantity below market minimum",
            RejectCode::QtyAboveMax => "quantity above market maximum",
            RejectCode::PriceOutsideBand => "price outside the market's price band",
            RejectCode::InsufficientFunds => "insufficient available funds",
            RejectCode::TooManyOpenOrders => "too many open orders for this account",
            RejectCode::PostOnlyWouldTake => "post-only order would take liquidity",
            RejectCode::FokNotFillable => "fill-or-kill order cannot be filled completely",
            RejectCode::NoReferencePrice => "no reference price to derive a protection price",
            RejectCode::StopWouldTriggerNow => "stop price already reached",
            RejectCode::InvalidExpiry => "expiry missing, in the past, or not allowed",
            RejectCode::InvalidOrderCombination => "invalid combination of order options",
            RejectCode::NotAllowedInAuction => "order type not allowed during an auction",
            RejectCode::NotInAuction => "market is not in an auction",
            RejectCode::SeqOutOfOrder => "command sequence number not increasing",
            RejectCode::TimeWentBackwards => "command time earlier than the previous one",
            RejectCode::UnknownAsset => "unknown asset",
            RejectCode::AmountOverflow => "amount too large",
            RejectCode::TooManyPriceLevels => "too many price levels in the book",
            RejectCode::EngineFull => "engine order capacity reached",
            RejectCode::PriceOffTick => "price is not on the tick grid",
            RejectCode::QtyOffLot => "quantity is not on the lot grid",
            RejectCode::AmendNoChange => "amend changes nothing",
            RejectCode::AmendWouldCross => "amended price would cross the book",
            RejectCode::OrderNotAmendable => "order cannot be amended",
            RejectCode::TooManyAccounts => "too many accounts",
            RejectCode::InvalidIcebergPeak => "iceberg peak must be positive and below quantity",
            RejectCode::InvalidPhase => "command not allowed in the market's current phase",
            RejectCode::TooManyMarkets => "too many markets",
            RejectCode::InvalidAmount => "amount must be positive",
        }
    }

    /// Every code, in numeric order (for tables, docs and exhaustive tests).
    pub const ALL: [RejectCode; 36] = [
        RejectCode::UnknownMarket,
        RejectCode::MarketExists,
        RejectCode::InvalidMarketConfig,
        RejectCode::MarketHalted,
        RejectCode::UnknownOrder,
        RejectCode::InvalidPrice,
        RejectCode::InvalidQuantity,
        RejectCode::QtyBelowMin,
        RejectCode::QtyAboveMax,
        RejectCode::PriceOutsideBand,
        RejectCode::InsufficientFunds,
        RejectCode::TooManyOpenOrders,
        RejectCode::PostOnlyWouldTake,
        RejectCode::FokNotFillable,
        RejectCode::NoReferencePrice,
        RejectCode::StopWouldTriggerNow,
        RejectCode::InvalidExpiry,
        RejectCode::InvalidOrderCombination,
        RejectCode::NotAllowedInAuction,
        RejectCode::NotInAuction,
        RejectCode::SeqOutOfOrder,
        RejectCode::TimeWentBackwards,
        RejectCode::UnknownAsset,
        RejectCode::AmountOverflow,
        RejectCode::TooManyPriceLevels,
        RejectCode::EngineFull,
        RejectCode::PriceOffTick,
        RejectCode::QtyOffLot,
        RejectCode::AmendNoChange,
        RejectCode::AmendWouldCross,
        RejectCode::OrderNotAmendable,
        RejectCode::TooManyAccounts,
        RejectCode::InvalidIcebergPeak,
        RejectCode::InvalidPhase,
        RejectCode::TooManyMarkets,
        RejectCode::InvalidAmount,
    ];

    /// The code with this number, if any (for decoding journals and wire messages).
    pub fn from_code(code: u16) -> Option<RejectCode> {
        RejectCode::ALL.iter().copied().find(|c| c.code() == code)
    }
}

impl std::fmt::Display for RejectCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message(), self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reject_codes_are_dense_unique_and_round_trip() {
        for (i, c) in RejectCode::ALL.iter().enumerate() {
            assert_eq!(c.code() as usize, i + 1);
            assert_eq!(RejectCode::from_code(c.code()), Some(*c));
            assert!(!c.message().is_empty());
        }
        assert_eq!(RejectCode::from_code(0), None);
        assert_eq!(
            RejectCode::from_code(RejectCode::ALL.len() as u16 + 1),
            None
        );
    }
}
