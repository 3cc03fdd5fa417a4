//! Conversions between the engine's integer grid (ticks, lots, minor units) and
//! `rust_decimal` values at the crate's edge, plus the demo markets.
//!
//! A value that is not exactly on the grid is rejected with a reject code, never rounded.

use rust_decimal::Decimal;

use crate::command::{
    AmountMinor, AssetId, BandAction, MarketConfig, PriceTicks, QtyLots, RejectCode,
};
use crate::limits::{BAND_BPS_MAX, FEE_BPS_MAX, ORDER_QTY_MAX, PRICE_TICKS_MAX, TICK_SCALE_MAX};

/// CITY, the city token (minor unit 10^-6).
pub const ASSET_CITY: AssetId = 1;
/// EUR token (minor unit 10^-2).
pub const ASSET_EUR: AssetId = 2;
/// LCL, the local currency (minor unit 10^-2).
pub const ASSET_LCL: AssetId = 3;
/// Market ids of the demo markets.
pub const MARKET_CITY_EUR: u32 = 1;
pub const MARKET_CITY_LCL: u32 = 2;
pub const MARKET_LCL_EUR: u32 = 3;

fn pow10(exp: u32) -> Option<u128> {
    10u128.checked_pow(exp)
}

impl MarketConfig {
    /// Quote minor units that one lot is worth at one tick, if the configuration makes that
    /// a whole positive number (the condition for exact trade amounts).
    pub fn tick_value_quote_minor(&self) -> Option<u64> {
        let num = (self.tick_mantissa as u128)
            .checked_mul(self.lot_size_base_minor as u128)?
            .checked_mul(pow10(self.quote_decimals as u32)?)?;
        let den = pow10(self.tick_scale as u32)?.checked_mul(pow10(self.base_decimals as u32)?)?;
        if den == 0 || num == 0 || num % den != 0 {
            return None;
        }
        u64::try_from(num / den).ok()
    }

    /// Checks the configuration; `Err(InvalidMarketConfig)` names nothing more precise on
    /// purpose (the operator reads the rules in this function).
    pub fn validate(&self) -> Result<(), RejectCode> {
        let ok = self.base_asset != self.quote_asset
            && (self.base_asset as usize) < crate::limits::ASSETS_MAX
            && (self.quote_asset as usize) < crate::limits::ASSETS_MAX
            && self.base_decimals <= 18
            && self.quote_decimals <= 18
            && self.tick_scale <= TICK_SCALE_MAX
            && self.tick_mantissa > 0
            && self.lot_size_base_minor > 0
            && self.min_qty > 0
            && self.min_qty <= self.max_qty
            && self.max_qty <= ORDER_QTY_MAX
            && self.max_price > 0
            && self.max_price <= PRICE_TICKS_MAX
            && self.band_bps <= BAND_BPS_MAX
            && self.market_protection_bps <= BAND_BPS_MAX
            && self.maker_fee_bps <= FEE_BPS_MAX
            && self.taker_fee_bps <= FEE_BPS_MAX
            && self.reference_price <= self.max_price
            && self.tick_value_quote_minor().is_some();
        if !ok {
            return Err(RejectCode::InvalidMarketConfig);
        }
        // The largest possible order notional must fit in u64 minor units.
        let tv = self.tick_value_quote_minor().unwrap_or(u64::MAX) as u128;
        let max_notional = (self.max_price as u128) * (self.max_qty as u128) * tv;
        if max_notional > u64::MAX as u128 / 2 {
            return Err(RejectCode::InvalidMarketConfig);
        }
        Ok(())
    }

    /// The tick size as a decimal price (quote units per base unit).
    pub fn tick_size(&self) -> Decimal {
        Decimal::from_i128_with_scale(self.tick_mantissa as i128, self.tick_scale as u32)
    }

    /// The lot size in base units.
    pub fn lot_size(&self) -> Decimal {
        Decimal::from_i128_with_scale(self.lot_size_base_minor as i128, self.base_decimals as u32)
    }

    /// A decimal price to ticks; off-grid, non-positive or too high prices are rejected.
    pub fn price_from_decimal(&self, price: Decimal) -> Result<PriceTicks, RejectCode> {
        if price <= Decimal::ZERO {
            return Err(RejectCode::InvalidPrice);
        }
        let tick = self.tick_size();
        let rem = price.checked_rem(tick).ok_or(RejectCode::InvalidPrice)?;
        if !rem.is_zero() {
            return Err(RejectCode::PriceOffTick);
        }
        let ticks = price.checked_div(tick).ok_or(RejectCode::InvalidPrice)?;
        let ticks = u64::try_from(ticks.trunc()).map_err(|_| RejectCode::InvalidPrice)?;
        if ticks == 0 || ticks > self.max_price {
            return Err(RejectCode::InvalidPrice);
        }
        Ok(ticks)
    }

    /// Ticks to a decimal price.
    pub fn price_to_decimal(&self, ticks: PriceTicks) -> Decimal {
        Decimal::from(ticks) * self.tick_size()
    }

    /// A decimal base quantity to lots; off-grid or non-positive quantities are rejected.
    pub fn qty_from_decimal(&self, qty: Decimal) -> Result<QtyLots, RejectCode> {
        if qty <= Decimal::ZERO {
            return Err(RejectCode::InvalidQuantity);
        }
        let lot = self.lot_size();
        let rem = qty.checked_rem(lot).ok_or(RejectCode::InvalidQuantity)?;
        if !rem.is_zero() {
            return Err(RejectCode::QtyOffLot);
        }
        let lots = qty.checked_div(lot).ok_or(RejectCode::InvalidQuantity)?;
        let lots = u64::try_from(lots.trunc()).map_err(|_| RejectCode::QtyAboveMax)?;
        if lots == 0 {
            return Err(RejectCode::InvalidQuantity);
        }
        if lots > self.max_qty {
            return Err(RejectCode::QtyAboveMax);
        }
        Ok(lots)
    }

    /// Lots to a decimal base quantity.
    pub fn qty_to_decimal(&self, lots: QtyLots) -> Decimal {
        Decimal::from(lots) * self.lot_size()
    }
}

/// A decimal amount of an asset with `decimals` decimal places to minor units; amounts with
/// more decimal places than the asset has, negative or too large ones are rejected.
pub fn amount_from_decimal(amount: Decimal, decimals: u8) -> Result<AmountMinor, RejectCode> {
    if amount.is_sign_negative() {
        return Err(RejectCode::InvalidAmount);
    }
    let factor = Decimal::from_i128_with_scale(
        pow10(decimals as u32).ok_or(RejectCode::AmountOverflow)? as i128,
        0,
    );
    let minor = amount
        .checked_mul(factor)
        .ok_or(RejectCode::AmountOverflow)?;
    if minor.fract() != Decimal::ZERO {
        return Err(RejectCode::InvalidAmount);
    }
    u64::try_from(minor.trunc()).map_err(|_| RejectCode::AmountOverflow)
}

/// Minor units to a decimal amount with `decimals` decimal places.
pub fn amount_to_decimal(amount: AmountMinor, decimals: u8) -> Decimal {
    Decimal::from_i128_with_scale(amount as i128, decimals as u32)
}

/// The three markets of the demo (CITY/EUR, CITY/LCL, LCL/EUR). CITY trades in lots of
/// 1 CITY at 0.01 ticks; LCL/EUR in lots of 100 LCL at 0.0001 ticks, so that one lot at one
/// tick is exactly one quote minor unit in every market.
pub fn demo_markets() -> [MarketConfig; 3] {
    let city = |market, quote_asset, band_action| MarketConfig {
        market,
        base_asset: ASSET_CITY,
        quote_asset,
        base_decimals: 6,
        quote_decimals: 2,
        tick_mantissa: 1,
        tick_scale: 2,
        lot_size_base_minor: 1_000_000,
        min_qty: 1,
        max_qty: 1_000_000,
        max_price: 100_000_000,
        band_bps: 1_000,
        band_action,
        reference_price: 0,
        market_protection_bps: 500,
        maker_fee_bps: 10,
        taker_fee_bps: 20,
    };
    [
        city(MARKET_CITY_EUR, ASSET_EUR, BandAction::Halt),
        city(MARKET_CITY_LCL, ASSET_LCL, BandAction::Reject),
        MarketConfig {
            market: MARKET_LCL_EUR,
            base_asset: ASSET_LCL,
            quote_asset: ASSET_EUR,
            base_decimals: 2,
            quote_decimals: 2,
            tick_mantissa: 1,
            tick_scale: 4,
            lot_size_base_minor: 10_000,
            min_qty: 1,
            max_qty: 10_000_000,
            max_price: 1_000_000,
            band_bps: 500,
            band_action: BandAction::Reject,
            reference_price: 10_000,
            market_protection_bps: 200,
            maker_fee_bps: 5,
            taker_fee_bps: 10,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn demo_markets_are_valid_with_unit_tick_value() {
        for m in demo_markets() {
            m.validate().unwrap();
            assert_eq!(m.tick_value_quote_minor(), Some(1));
        }
    }

    #[test]
    fn prices_on_grid_convert_and_off_grid_are_rejected() {
        let [city_eur, _, lcl_eur] = demo_markets();
        assert_eq!(city_eur.price_from_decimal(d("1.23")), Ok(123));
        assert_eq!(city_eur.price_from_decimal(d("1.230")), Ok(123));
        assert_eq!(
            city_eur.price_from_decimal(d("1.235")),
            Err(RejectCode::PriceOffTick)
        );
        assert_eq!(
            city_eur.price_from_decimal(d("0")),
            Err(RejectCode::InvalidPrice)
        );
        assert_eq!(
            city_eur.price_from_decimal(d("-1")),
            Err(RejectCode::InvalidPrice)
        );
        assert_eq!(city_eur.price_to_decimal(123), d("1.23"));
        assert_eq!(lcl_eur.price_from_decimal(d("0.9999")), Ok(9_999));
        assert_eq!(
            lcl_eur.price_from_decimal(d("0.99995")),
            Err(RejectCode::PriceOffTick)
        );
    }

    #[test]
    fn quantities_on_grid_convert_and_off_grid_are_rejected() {
        let [city_eur, _, lcl_eur] = demo_markets();
        assert_eq!(city_eur.qty_from_decimal(d("5")), Ok(5));
        assert_eq!(
            city_eur.qty_from_decimal(d("5.5")),
            Err(RejectCode::QtyOffLot)
        );
        assert_eq!(lcl_eur.qty_from_decimal(d("300")), Ok(3));
        assert_eq!(
            lcl_eur.qty_from_decimal(d("250")),
            Err(RejectCode::QtyOffLot)
        );
        assert_eq!(lcl_eur.qty_to_decimal(3), d("300"));
        assert_eq!(
            city_eur.qty_from_decimal(d("2000000")),
            Err(RejectCode::QtyAboveMax)
        );
    }

    #[test]
    fn amounts_convert_exactly() {
        assert_eq!(amount_from_decimal(d("12.34"), 2), Ok(1234));
        assert_eq!(
            amount_from_decimal(d("12.345"), 2),
            Err(RejectCode::InvalidAmount)
        );
        assert_eq!(
            amount_from_decimal(d("-1"), 2),
            Err(RejectCode::InvalidAmount)
        );
        assert_eq!(amount_to_decimal(1234, 2), d("12.34"));
        assert_eq!(amount_from_decimal(d("0.000001"), 6), Ok(1));
    }

    #[test]
    fn configs_with_fractional_tick_value_are_invalid() {
        let mut m = demo_markets()[0];
        m.lot_size_base_minor = 10_000; // 0.01 CITY at 0.01 EUR = 0.0001 EUR: not whole
        assert_eq!(m.validate(), Err(RejectCode::InvalidMarketConfig));
    }
}
