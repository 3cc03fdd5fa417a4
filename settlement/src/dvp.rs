//! Delivery versus payment: turns one trade into a linked chain of transfers (the base asset
//! from seller to buyer, the quote asset from buyer to seller, then each fee) so that either
//! every leg settles or none does.
//!
//! Transfer ids are derived from the trade id and the leg's index, so resubmitting the same
//! trade is idempotent (`exists`), never a second settlement.

use crate::crypto::Hash32;
use crate::ledger::{Transfer, TransferFlags};

/// Transfer code of a trade's base-asset leg.
pub const CODE_DVP_BASE: u16 = 10;
/// Transfer code of a trade's quote-asset leg.
pub const CODE_DVP_QUOTE: u16 = 11;
/// Transfer code of a fee leg.
pub const CODE_DVP_FEE: u16 = 12;
/// Fee legs one trade may carry.
pub const FEE_LEGS_MAX: usize = 8;
/// Trade ids must fit below this so that `trade_id << 8 | leg` is a valid transfer id.
pub const TRADE_ID_LIMIT: u128 = 1 << 119;

/// One fee: `amount` minor units of `ledger` from `payer` to `payee`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeeLeg {
    /// The account paying (the buyer's or seller's).
    pub payer_account_id: u128,
    /// The exchange's fee account.
    pub payee_account_id: u128,
    /// The fee's asset.
    pub ledger: u32,
    /// Minor units.
    pub amount: u128,
}

/// A matched trade, in ledger accounts and minor units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DvpTrade {
    /// The engine's trade id (also the transfers' `user_data`).
    pub trade_id: u128,
    /// Asset delivered (for CITY/EUR: CITY).
    pub base_ledger: u32,
    /// Asset paid (for CITY/EUR: EUR).
    pub quote_ledger: u32,
    /// Base minor units the seller delivers.
    pub base_amount: u128,
    /// Quote minor units the buyer pays.
    pub quote_amount: u128,
    /// Seller's base account (debited).
    pub seller_base_account_id: u128,
    /// Seller's quote account (credited).
    pub seller_quote_account_id: u128,
    /// Buyer's base account (credited).
    pub buyer_base_account_id: u128,
    /// Buyer's quote account (debited).
    pub buyer_quote_account_id: u128,
    /// Fees, paid after both legs.
    pub fees: Vec<FeeLeg>,
}

/// Why a trade cannot become transfers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DvpError {
    /// The trade id is too large (or 0) to derive transfer ids from.
    #[error("trade id {0} is 0 or too large to derive transfer ids")]
    TradeIdOutOfRange(u128),
    /// More fee legs than [`FEE_LEGS_MAX`].
    #[error("{0} fee legs, above the limit")]
    TooManyFees(usize),
    /// A leg moves nothing.
    #[error("a leg has a zero amount")]
    ZeroAmount,
}

/// The transfer id of leg `leg` of trade `trade_id`.
pub fn leg_transfer_id(trade_id: u128, leg: u8) -> u128 {
    (trade_id << 8) | u128::from(leg)
}

/// The trade's legs as one linked chain: base, quote, then fees, all carrying the gate's
/// `decision_hash`. Sign them (one batch signature by the custodian) and submit them in one
/// batch, in this order.
pub fn dvp_transfers(trade: &DvpTrade, decision_hash: Hash32) -> Result<Vec<Transfer>, DvpError> {
    if trade.trade_id == 0 || trade.trade_id >= TRADE_ID_LIMIT {
        return Err(DvpError::TradeIdOutOfRange(trade.trade_id));
    }
    if trade.fees.len() > FEE_LEGS_MAX {
        return Err(DvpError::TooManyFees(trade.fees.len()));
    }
    if trade.base_amount == 0 || trade.quote_amount == 0 || trade.fees.iter().any(|f| f.amount == 0)
    {
        return Err(DvpError::ZeroAmount);
    }
    let leg =
        |index: usize, debit: u128, credit: u128, ledger: u32, amount: u128, code: u16| Transfer {
            id: leg_transfer_id(trade.trade_id, index as u8),
            debit_account_id: debit,
            credit_account_id: credit,
            amount,
            pending_id: 0,
            user_data: trade.trade_id,
            timeout_s: 0,
            ledger,
            code,
            flags: TransferFlags(TransferFlags::LINKED),
            decision_hash,
        };
    let mut legs = vec![
        leg(
            0,
            trade.seller_base_account_id,
            trade.buyer_base_account_id,
            trade.base_ledger,
            trade.base_amount,
            CODE_DVP_BASE,
        ),
        leg(
            1,
            trade.buyer_quote_account_id,
            trade.seller_quote_account_id,
            trade.quote_ledger,
            trade.quote_amount,
            CODE_DVP_QUOTE,
        ),
    ];
    for (index, fee) in trade.fees.iter().enumerate() {
        legs.push(leg(
            2 + index,
            fee.payer_account_id,
            fee.payee_account_id,
            fee.ledger,
            fee.amount,
            CODE_DVP_FEE,
        ));
    }
    if let Some(last) = legs.last_mut() {
        last.flags = TransferFlags(0);
    }
    Ok(legs)
}
