//! The engine's whole state as plain data in one canonical order, for snapshots
//! (`Engine::export_state` / `Engine::import_state`) and for `Engine::state_hash`.
//!
//! Canonical order: markets by id; within a market, bids best price first (highest) then
//! queue order, asks best price first (lowest) then queue order, stops by order id;
//! accounts by id, each with its non-zero asset balances by asset id. Two engines with the
//! same state export equal `EngineState`s and hash equally.

use serde::{Deserialize, Serialize};

use crate::command::{
    AccountId, AmountMinor, AssetId, ClientOrderId, MarketConfig, MarketPhase, OrderId, OrderType,
    PriceTicks, QtyLots, Seq, SessionId, Side, StpMode, TimeInForce, TimeUs,
};

/// Everything needed to rebuild an engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineState {
    /// The account that receives every fee.
    pub fee_account: AccountId,
    /// Seq of the last command applied (0 = none).
    pub last_seq: Seq,
    /// Time of the last command applied.
    pub last_time_us: TimeUs,
    /// The id the next accepted order gets.
    pub next_order_id: OrderId,
    /// The id the next trade gets.
    pub next_trade_id: u64,
    pub markets: Vec<MarketSnapshot>,
    pub accounts: Vec<AccountBalances>,
}

/// One market's configuration, phase, prices and orders.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketSnapshot {
    pub config: MarketConfig,
    pub phase: MarketPhase,
    /// Price of the last trade (0 = none yet); stops trigger on it.
    pub last_price: PriceTicks,
    /// Centre of the price band (last trade, auction price, or the configured one).
    pub reference_price: PriceTicks,
    /// Resting buy orders, best price first, then queue order.
    pub bids: Vec<OrderRecord>,
    /// Resting sell orders, best price first, then queue order.
    pub asks: Vec<OrderRecord>,
    /// Untriggered stop orders, by order id.
    pub stops: Vec<OrderRecord>,
}

/// One open order. Its hold is not stored: it is a function of the order and its market.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    pub order_id: OrderId,
    pub client_order_id: ClientOrderId,
    pub account: AccountId,
    pub side: Side,
    /// Limit for resting orders; StopLimit or StopMarket for untriggered stops.
    pub order_type: OrderType,
    pub time_in_force: TimeInForce,
    /// Limit price, or the protection price of a StopMarket order.
    pub price: PriceTicks,
    /// Open (unfilled) quantity, visible and hidden.
    pub qty: QtyLots,
    /// Currently visible quantity (= qty unless iceberg).
    pub visible: QtyLots,
    /// Iceberg peak (0 = not an iceberg).
    pub iceberg_peak: QtyLots,
    pub stop_price: PriceTicks,
    pub expire_time_us: TimeUs,
    pub stp: StpMode,
    pub session: SessionId,
}

/// The balances of one account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountBalances {
    pub account: AccountId,
    pub balances: Vec<AssetBalance>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetBalance {
    pub asset: AssetId,
    pub available: AmountMinor,
    pub held: AmountMinor,
}

/// Why a state could not be imported (a snapshot that passed its checksum but is not a
/// state this engine could have produced).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateError {
    #[error("invalid market {market}: {reason}")]
    InvalidMarket { market: u32, reason: &'static str },
    #[error("invalid order {order_id}: {reason}")]
    InvalidOrder {
        order_id: OrderId,
        reason: &'static str,
    },
    #[error("invalid account {account}: {reason}")]
    InvalidAccount {
        account: AccountId,
        reason: &'static str,
    },
    #[error("held balances disagree with open orders for account {account} asset {asset}")]
    HoldMismatch { account: AccountId, asset: AssetId },
    #[error("a limit was exceeded: {0}")]
    LimitExceeded(&'static str),
}
