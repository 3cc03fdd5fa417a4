//! The binary encoding of what the journal and the snapshots hold: every [`Command`] and the
//! whole [`EngineState`].
//!
//! Compact (integers as LEB128 varints, enums as one byte), versioned (a leading version byte),
//! and canonical: a decoder accepts exactly the bytes the encoder produces, so
//! `encode(decode(b)) == b` for every `b` that decodes. The decoders never panic on any input;
//! they return a [`DecodeError`] naming the byte offset and what was wrong there, and they
//! never allocate more than the input could describe. The layout is in
//! `docs/journal-format.md`.

use crate::command::{
    BandAction, Command, CommandKind, MarketConfig, MarketPhase, NewOrder, OrderType, PostOnly,
    Side, StpMode, TimeInForce,
};
use crate::journal::RecordEncode;
use crate::limits::{ACCOUNTS_MAX, ASSETS_MAX, MARKETS_MAX, ORDERS_MAX};
use crate::state::{AccountBalances, AssetBalance, EngineState, MarketSnapshot, OrderRecord};

/// Version byte that opens every encoded command.
pub const COMMAND_CODEC_VERSION: u8 = 1;
/// Version byte that opens an encoded engine state.
pub const STATE_CODEC_VERSION: u8 = 1;
/// Longest encoding of any command (checked by a test): far below the journal's record limit.
pub const COMMAND_ENCODED_MAX: usize = 160;
/// Longest LEB128 encoding of a u64.
const VARINT_LEN_MAX: usize = 10;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode at byte {offset}: {what}")]
pub struct DecodeError {
    /// Offset of the offending byte from the start of the input.
    pub offset: usize,
    /// What was wrong.
    pub what: &'static str,
}

// ---------------------------------------------------------------------------------------------
// Primitives
// ---------------------------------------------------------------------------------------------

fn put_u8(out: &mut Vec<u8>, v: u8) {
    out.push(v);
}

fn put_var(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bool(out: &mut Vec<u8>, v: bool) {
    out.push(v as u8);
}

/// A cursor over input bytes; every read checks bounds and reports its offset.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    fn err<T>(&self, at: usize, what: &'static str) -> Result<T, DecodeError> {
        Err(DecodeError { offset: at, what })
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        match self.bytes.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => self.err(self.pos, what),
        }
    }

    // Inlined into the decoders: a command has a dozen varints, and the call was a visible
    // share of replay in the profile.
    #[inline(always)]
    fn var(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        // Fast path: most fields (enums' neighbours, small ids, counts) fit in one byte.
        if let Some(&b) = self.bytes.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(b as u64);
        }
        // Second path: a varint of up to 8 bytes with 8 bytes to read, decoded without a
        // loop (times, sequence numbers and ids are 3 to 8 bytes long).
        if let Some(chunk) = self.bytes.get(self.pos..self.pos + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let w = u64::from_le_bytes(word);
            let stops = !w & 0x8080_8080_8080_8080;
            if stops != 0 {
                // The lowest stop bit is bit 8 × len - 1; `keep` masks the varint's bytes.
                let len = ((stops.trailing_zeros() + 1) / 8) as usize;
                let keep = stops ^ (stops - 1);
                // Squeeze out the continuation bits: 7-bit groups to 14, 28, then 56 bits.
                let x = w & keep & 0x7f7f_7f7f_7f7f_7f7f;
                let x = ((x & 0x7f00_7f00_7f00_7f00) >> 1) | (x & 0x007f_007f_007f_007f);
                let x = ((x & 0x3fff_0000_3fff_0000) >> 2) | (x & 0x0000_3fff_0000_3fff);
                let x = ((x & 0x0fff_ffff_0000_0000) >> 4) | (x & 0x0000_0000_0fff_ffff);
                // Shortest form: the last byte (the highest 7-bit group) is not zero.
                if len > 1 && x >> (7 * (len - 1)) == 0 {
                    return self.err(self.pos + len - 1, "varint not in its shortest form");
                }
                self.pos += len;
                return Ok(x);
            }
        }
        self.var_slow(what)
    }

    /// Byte by byte: varints of 9 or 10 bytes, and any varint near the end of the input.
    #[inline(never)]
    fn var_slow(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let start = self.pos;
        let rest = &self.bytes[start..];
        let mut v: u64 = 0;
        for (i, &b) in rest.iter().take(VARINT_LEN_MAX).enumerate() {
            let low = (b & 0x7f) as u64;
            if i == VARINT_LEN_MAX - 1 && low > 1 {
                return self.err(start + i, "varint overflows 64 bits");
            }
            v |= low << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    return self.err(start + i, "varint not in its shortest form");
                }
                self.pos = start + i + 1;
                return Ok(v);
            }
        }
        if rest.len() < VARINT_LEN_MAX {
            return self.err(self.bytes.len(), what);
        }
        self.err(start, "varint longer than 10 bytes")
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let at = self.pos;
        let v = self.var(what)?;
        u16::try_from(v).or_else(|_| self.err(at, "value does not fit in 16 bits"))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let at = self.pos;
        let v = self.var(what)?;
        u32::try_from(v).or_else(|_| self.err(at, "value does not fit in 32 bits"))
    }

    fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        let at = self.pos;
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => self.err(at, "boolean is neither 0 nor 1"),
        }
    }

    /// A collection length, bounded by `max` and by what the remaining bytes could hold
    /// (each item takes at least `item_min` bytes), so that garbage cannot make us allocate.
    fn len(
        &mut self,
        max: usize,
        item_min: usize,
        what: &'static str,
    ) -> Result<usize, DecodeError> {
        let at = self.pos;
        let n = self.var(what)?;
        if n > max as u64 {
            return self.err(at, "collection longer than its limit");
        }
        let n = n as usize;
        if n.saturating_mul(item_min) > self.remaining() {
            return self.err(at, "collection longer than the remaining bytes");
        }
        Ok(n)
    }

    fn finish(&self) -> Result<(), DecodeError> {
        if self.pos != self.bytes.len() {
            return self.err(self.pos, "trailing bytes after the value");
        }
        Ok(())
    }
}

macro_rules! small_enum {
    ($put:ident, $get:ident, $ty:ty, $what:literal, [$($variant:path = $n:literal),+ $(,)?]) => {
        fn $put(out: &mut Vec<u8>, v: $ty) {
            out.push(match v { $($variant => $n,)+ });
        }

        fn $get(r: &mut Reader<'_>) -> Result<$ty, DecodeError> {
            let at = r.pos;
            match r.u8($what)? {
                $($n => Ok($variant),)+
                _ => r.err(at, concat!("unknown ", $what)),
            }
        }
    };
}

small_enum!(
    put_side,
    get_side,
    Side,
    "side",
    [Side::Buy = 0, Side::Sell = 1]
);
small_enum!(
    put_order_type,
    get_order_type,
    OrderType,
    "order type",
    [
        OrderType::Limit = 0,
        OrderType::Market = 1,
        OrderType::StopLimit = 2,
        OrderType::StopMarket = 3,
    ]
);
small_enum!(
    put_tif,
    get_tif,
    TimeInForce,
    "time in force",
    [
        TimeInForce::Gtc = 0,
        TimeInForce::Gtd = 1,
        TimeInForce::Ioc = 2,
        TimeInForce::Fok = 3,
    ]
);
small_enum!(
    put_post_only,
    get_post_only,
    PostOnly,
    "post-only mode",
    [
        PostOnly::No = 0,
        PostOnly::Reject = 1,
        PostOnly::Reprice = 2,
    ]
);
small_enum!(
    put_stp,
    get_stp,
    StpMode,
    "self-trade prevention mode",
    [
        StpMode::None = 0,
        StpMode::CancelNewest = 1,
        StpMode::CancelOldest = 2,
        StpMode::CancelBoth = 3,
        StpMode::Decrement = 4,
    ]
);
small_enum!(
    put_band_action,
    get_band_action,
    BandAction,
    "band action",
    [BandAction::Reject = 0, BandAction::Halt = 1,]
);
small_enum!(
    put_phase,
    get_phase,
    MarketPhase,
    "market phase",
    [
        MarketPhase::Continuous = 0,
        MarketPhase::Halted = 1,
        MarketPhase::Auction = 2,
    ]
);

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

// Command kind tags: stable, never renumbered, only appended.
const TAG_PLACE: u8 = 1;
const TAG_CANCEL: u8 = 2;
const TAG_AMEND: u8 = 3;
const TAG_MASS_CANCEL: u8 = 4;
const TAG_CANCEL_ON_DISCONNECT: u8 = 5;
const TAG_DEPOSIT: u8 = 6;
const TAG_WITHDRAW: u8 = 7;
const TAG_CREATE_MARKET: u8 = 8;
const TAG_HALT: u8 = 9;
const TAG_RESUME: u8 = 10;
const TAG_START_AUCTION: u8 = 11;
const TAG_UNCROSS: u8 = 12;
const TAG_TICK: u8 = 13;

fn put_market_config(out: &mut Vec<u8>, c: &MarketConfig) {
    put_var(out, c.market as u64);
    put_var(out, c.base_asset as u64);
    put_var(out, c.quote_asset as u64);
    put_u8(out, c.base_decimals);
    put_u8(out, c.quote_decimals);
    put_var(out, c.tick_mantissa);
    put_u8(out, c.tick_scale);
    put_var(out, c.lot_size_base_minor);
    put_var(out, c.min_qty);
    put_var(out, c.max_qty);
    put_var(out, c.max_price);
    put_var(out, c.band_bps as u64);
    put_band_action(out, c.band_action);
    put_var(out, c.reference_price);
    put_var(out, c.market_protection_bps as u64);
    put_var(out, c.maker_fee_bps as u64);
    put_var(out, c.taker_fee_bps as u64);
}

fn get_market_config(r: &mut Reader<'_>) -> Result<MarketConfig, DecodeError> {
    Ok(MarketConfig {
        market: r.u32("market id")?,
        base_asset: r.u16("base asset")?,
        quote_asset: r.u16("quote asset")?,
        base_decimals: r.u8("base decimals")?,
        quote_decimals: r.u8("quote decimals")?,
        tick_mantissa: r.var("tick mantissa")?,
        tick_scale: r.u8("tick scale")?,
        lot_size_base_minor: r.var("lot size")?,
        min_qty: r.var("min qty")?,
        max_qty: r.var("max qty")?,
        max_price: r.var("max price")?,
        band_bps: r.u32("band bps")?,
        band_action: get_band_action(r)?,
        reference_price: r.var("reference price")?,
        market_protection_bps: r.u32("market protection bps")?,
        maker_fee_bps: r.u16("maker fee bps")?,
        taker_fee_bps: r.u16("taker fee bps")?,
    })
}

/// Appends the encoding of `cmd` to `out`.
pub fn encode_command(out: &mut Vec<u8>, cmd: &Command) {
    put_u8(out, COMMAND_CODEC_VERSION);
    put_var(out, cmd.seq);
    put_var(out, cmd.time_us);
    match &cmd.kind {
        CommandKind::PlaceOrder(o) => {
            put_u8(out, TAG_PLACE);
            put_var(out, o.account);
            put_var(out, o.market as u64);
            put_var(out, o.client_order_id);
            put_side(out, o.side);
            put_order_type(out, o.order_type);
            put_tif(out, o.time_in_force);
            put_var(out, o.price);
            put_var(out, o.qty);
            put_var(out, o.stop_price);
            put_var(out, o.protection_price);
            put_var(out, o.expire_time_us);
            put_post_only(out, o.post_only);
            put_var(out, o.iceberg_peak);
            put_stp(out, o.stp);
            put_var(out, o.session);
        }
        CommandKind::Cancel {
            account,
            market,
            order_id,
        } => {
            put_u8(out, TAG_CANCEL);
            put_var(out, *account);
            put_var(out, *market as u64);
            put_var(out, *order_id);
        }
        CommandKind::Amend {
            account,
            market,
            order_id,
            new_price,
            new_qty,
        } => {
            put_u8(out, TAG_AMEND);
            put_var(out, *account);
            put_var(out, *market as u64);
            put_var(out, *order_id);
            put_var(out, *new_price);
            put_var(out, *new_qty);
        }
        CommandKind::MassCancel { account, market } => {
            put_u8(out, TAG_MASS_CANCEL);
            put_var(out, *account);
            match market {
                None => put_bool(out, false),
                Some(m) => {
                    put_bool(out, true);
                    put_var(out, *m as u64);
                }
            }
        }
        CommandKind::CancelOnDisconnect { account, session } => {
            put_u8(out, TAG_CANCEL_ON_DISCONNECT);
            put_var(out, *account);
            put_var(out, *session);
        }
        CommandKind::Deposit {
            account,
            asset,
            amount,
        } => {
            put_u8(out, TAG_DEPOSIT);
            put_var(out, *account);
            put_var(out, *asset as u64);
            put_var(out, *amount);
        }
        CommandKind::Withdraw {
            account,
            asset,
            amount,
        } => {
            put_u8(out, TAG_WITHDRAW);
            put_var(out, *account);
            put_var(out, *asset as u64);
            put_var(out, *amount);
        }
        CommandKind::CreateMarket(config) => {
            put_u8(out, TAG_CREATE_MARKET);
            put_market_config(out, config);
        }
        CommandKind::Halt { market } => {
            put_u8(out, TAG_HALT);
            put_var(out, *market as u64);
        }
        CommandKind::Resume { market } => {
            put_u8(out, TAG_RESUME);
            put_var(out, *market as u64);
        }
        CommandKind::StartAuction { market } => {
            put_u8(out, TAG_START_AUCTION);
            put_var(out, *market as u64);
        }
        CommandKind::Uncross { market } => {
            put_u8(out, TAG_UNCROSS);
            put_var(out, *market as u64);
        }
        CommandKind::Tick => put_u8(out, TAG_TICK),
    }
}

/// Decodes one command that fills `bytes` exactly.
pub fn decode_command(bytes: &[u8]) -> Result<Command, DecodeError> {
    let mut r = Reader::new(bytes);
    if r.u8("codec version")? != COMMAND_CODEC_VERSION {
        return r.err(0, "unsupported command codec version");
    }
    let seq = r.var("seq")?;
    let time_us = r.var("time")?;
    let tag_at = r.pos;
    let kind = match r.u8("command tag")? {
        TAG_PLACE => CommandKind::PlaceOrder(NewOrder {
            account: r.var("account")?,
            market: r.u32("market")?,
            client_order_id: r.var("client order id")?,
            side: get_side(&mut r)?,
            order_type: get_order_type(&mut r)?,
            time_in_force: get_tif(&mut r)?,
            price: r.var("price")?,
            qty: r.var("qty")?,
            stop_price: r.var("stop price")?,
            protection_price: r.var("protection price")?,
            expire_time_us: r.var("expire time")?,
            post_only: get_post_only(&mut r)?,
            iceberg_peak: r.var("iceberg peak")?,
            stp: get_stp(&mut r)?,
            session: r.var("session")?,
        }),
        TAG_CANCEL => CommandKind::Cancel {
            account: r.var("account")?,
            market: r.u32("market")?,
            order_id: r.var("order id")?,
        },
        TAG_AMEND => CommandKind::Amend {
            account: r.var("account")?,
            market: r.u32("market")?,
            order_id: r.var("order id")?,
            new_price: r.var("new price")?,
            new_qty: r.var("new qty")?,
        },
        TAG_MASS_CANCEL => CommandKind::MassCancel {
            account: r.var("account")?,
            market: if r.bool("market present")? {
                Some(r.u32("market")?)
            } else {
                None
            },
        },
        TAG_CANCEL_ON_DISCONNECT => CommandKind::CancelOnDisconnect {
            account: r.var("account")?,
            session: r.var("session")?,
        },
        TAG_DEPOSIT => CommandKind::Deposit {
            account: r.var("account")?,
            asset: r.u16("asset")?,
            amount: r.var("amount")?,
        },
        TAG_WITHDRAW => CommandKind::Withdraw {
            account: r.var("account")?,
            asset: r.u16("asset")?,
            amount: r.var("amount")?,
        },
        TAG_CREATE_MARKET => CommandKind::CreateMarket(get_market_config(&mut r)?),
        TAG_HALT => CommandKind::Halt {
            market: r.u32("market")?,
        },
        TAG_RESUME => CommandKind::Resume {
            market: r.u32("market")?,
        },
        TAG_START_AUCTION => CommandKind::StartAuction {
            market: r.u32("market")?,
        },
        TAG_UNCROSS => CommandKind::Uncross {
            market: r.u32("market")?,
        },
        TAG_TICK => CommandKind::Tick,
        _ => return r.err(tag_at, "unknown command tag"),
    };
    r.finish()?;
    Ok(Command { seq, time_us, kind })
}

impl RecordEncode for Command {
    fn encode_into(&self, out: &mut Vec<u8>) {
        encode_command(out, self);
    }
}

// ---------------------------------------------------------------------------------------------
// Engine state (snapshot payload)
// ---------------------------------------------------------------------------------------------

/// Fewest bytes one encoded order takes (used to bound allocations while decoding).
const ORDER_ENCODED_MIN: usize = 16;

fn put_order(out: &mut Vec<u8>, o: &OrderRecord) {
    put_var(out, o.order_id);
    put_var(out, o.client_order_id);
    put_var(out, o.account);
    put_side(out, o.side);
    put_order_type(out, o.order_type);
    put_tif(out, o.time_in_force);
    put_var(out, o.price);
    put_var(out, o.qty);
    put_var(out, o.visible);
    put_var(out, o.iceberg_peak);
    put_var(out, o.stop_price);
    put_var(out, o.expire_time_us);
    put_stp(out, o.stp);
    put_var(out, o.session);
}

fn get_order(r: &mut Reader<'_>) -> Result<OrderRecord, DecodeError> {
    Ok(OrderRecord {
        order_id: r.var("order id")?,
        client_order_id: r.var("client order id")?,
        account: r.var("account")?,
        side: get_side(r)?,
        order_type: get_order_type(r)?,
        time_in_force: get_tif(r)?,
        price: r.var("price")?,
        qty: r.var("qty")?,
        visible: r.var("visible qty")?,
        iceberg_peak: r.var("iceberg peak")?,
        stop_price: r.var("stop price")?,
        expire_time_us: r.var("expire time")?,
        stp: get_stp(r)?,
        session: r.var("session")?,
    })
}

fn put_orders(out: &mut Vec<u8>, orders: &[OrderRecord]) {
    put_var(out, orders.len() as u64);
    for o in orders {
        put_order(out, o);
    }
}

fn get_orders(r: &mut Reader<'_>, what: &'static str) -> Result<Vec<OrderRecord>, DecodeError> {
    let n = r.len(ORDERS_MAX, ORDER_ENCODED_MIN, what)?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(get_order(r)?);
    }
    Ok(v)
}

/// Appends the encoding of a whole engine state to `out`.
pub fn encode_state(out: &mut Vec<u8>, s: &EngineState) {
    put_u8(out, STATE_CODEC_VERSION);
    put_var(out, s.fee_account);
    put_var(out, s.last_seq);
    put_var(out, s.last_time_us);
    put_var(out, s.next_order_id);
    put_var(out, s.next_trade_id);
    put_var(out, s.markets.len() as u64);
    for m in &s.markets {
        put_market_config(out, &m.config);
        put_phase(out, m.phase);
        put_var(out, m.last_price);
        put_var(out, m.reference_price);
        put_orders(out, &m.bids);
        put_orders(out, &m.asks);
        put_orders(out, &m.stops);
    }
    put_var(out, s.accounts.len() as u64);
    for a in &s.accounts {
        put_var(out, a.account);
        put_var(out, a.balances.len() as u64);
        for b in &a.balances {
            put_var(out, b.asset as u64);
            put_var(out, b.available);
            put_var(out, b.held);
        }
    }
}

/// Decodes an engine state that fills `bytes` exactly. Only the encoding is checked here;
/// whether the state makes sense is `Engine::import_state`'s business.
pub fn decode_state(bytes: &[u8]) -> Result<EngineState, DecodeError> {
    let mut r = Reader::new(bytes);
    if r.u8("state codec version")? != STATE_CODEC_VERSION {
        return r.err(0, "unsupported state codec version");
    }
    let fee_account = r.var("fee account")?;
    let last_seq = r.var("last seq")?;
    let last_time_us = r.var("last time")?;
    let next_order_id = r.var("next order id")?;
    let next_trade_id = r.var("next trade id")?;
    let n_markets = r.len(MARKETS_MAX, 20, "market count")?;
    let mut markets = Vec::with_capacity(n_markets);
    for _ in 0..n_markets {
        markets.push(MarketSnapshot {
            config: get_market_config(&mut r)?,
            phase: get_phase(&mut r)?,
            last_price: r.var("last price")?,
            reference_price: r.var("reference price")?,
            bids: get_orders(&mut r, "bid count")?,
            asks: get_orders(&mut r, "ask count")?,
            stops: get_orders(&mut r, "stop count")?,
        });
    }
    let n_accounts = r.len(ACCOUNTS_MAX, 2, "account count")?;
    let mut accounts = Vec::with_capacity(n_accounts);
    for _ in 0..n_accounts {
        let account = r.var("account")?;
        let n = r.len(ASSETS_MAX, 3, "balance count")?;
        let mut balances = Vec::with_capacity(n);
        for _ in 0..n {
            balances.push(AssetBalance {
                asset: r.u16("asset")?,
                available: r.var("available")?,
                held: r.var("held")?,
            });
        }
        accounts.push(AccountBalances { account, balances });
    }
    r.finish()?;
    Ok(EngineState {
        fee_account,
        last_seq,
        last_time_us,
        next_order_id,
        next_trade_id,
        markets,
        accounts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn side() -> impl Strategy<Value = Side> {
        prop_oneof![Just(Side::Buy), Just(Side::Sell)]
    }
    fn order_type() -> impl Strategy<Value = OrderType> {
        prop_oneof![
            Just(OrderType::Limit),
            Just(OrderType::Market),
            Just(OrderType::StopLimit),
            Just(OrderType::StopMarket)
        ]
    }
    fn tif() -> impl Strategy<Value = TimeInForce> {
        prop_oneof![
            Just(TimeInForce::Gtc),
            Just(TimeInForce::Gtd),
            Just(TimeInForce::Ioc),
            Just(TimeInForce::Fok)
        ]
    }
    fn stp() -> impl Strategy<Value = StpMode> {
        prop_oneof![
            Just(StpMode::None),
            Just(StpMode::CancelNewest),
            Just(StpMode::CancelOldest),
            Just(StpMode::CancelBoth),
            Just(StpMode::Decrement)
        ]
    }
    fn post_only() -> impl Strategy<Value = PostOnly> {
        prop_oneof![
            Just(PostOnly::No),
            Just(PostOnly::Reject),
            Just(PostOnly::Reprice)
        ]
    }

    fn config() -> impl Strategy<Value = MarketConfig> {
        (
            (
                any::<u32>(),
                any::<u16>(),
                any::<u16>(),
                any::<u8>(),
                any::<u8>(),
                any::<u64>(),
            ),
            (
                any::<u8>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u32>(),
            ),
            (
                any::<bool>(),
                any::<u64>(),
                any::<u32>(),
                any::<u16>(),
                any::<u16>(),
            ),
        )
            .prop_map(
                |((m, b, q, bd, qd, tm), (ts, lot, mn, mx, mp, band), (ba, rp, mpb, mk, tk))| {
                    MarketConfig {
                        market: m,
                        base_asset: b,
                        quote_asset: q,
                        base_decimals: bd,
                        quote_decimals: qd,
                        tick_mantissa: tm,
                        tick_scale: ts,
                        lot_size_base_minor: lot,
                        min_qty: mn,
                        max_qty: mx,
                        max_price: mp,
                        band_bps: band,
                        band_action: if ba {
                            BandAction::Halt
                        } else {
                            BandAction::Reject
                        },
                        reference_price: rp,
                        market_protection_bps: mpb,
                        maker_fee_bps: mk,
                        taker_fee_bps: tk,
                    }
                },
            )
    }

    fn new_order() -> impl Strategy<Value = NewOrder> {
        (
            (
                any::<u64>(),
                any::<u32>(),
                any::<u64>(),
                side(),
                order_type(),
                tif(),
            ),
            (
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
            ),
            (post_only(), any::<u64>(), stp(), any::<u64>()),
        )
            .prop_map(
                |((a, m, c, s, ot, tif), (p, q, sp, pp, e), (po, ib, stp, ses))| NewOrder {
                    account: a,
                    market: m,
                    client_order_id: c,
                    side: s,
                    order_type: ot,
                    time_in_force: tif,
                    price: p,
                    qty: q,
                    stop_price: sp,
                    protection_price: pp,
                    expire_time_us: e,
                    post_only: po,
                    iceberg_peak: ib,
                    stp,
                    session: ses,
                },
            )
    }

    pub(crate) fn command() -> impl Strategy<Value = Command> {
        let kind = prop_oneof![
            new_order().prop_map(CommandKind::PlaceOrder),
            (any::<u64>(), any::<u32>(), any::<u64>()).prop_map(|(account, market, order_id)| {
                CommandKind::Cancel {
                    account,
                    market,
                    order_id,
                }
            }),
            (
                any::<u64>(),
                any::<u32>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>()
            )
                .prop_map(|(account, market, order_id, new_price, new_qty)| {
                    CommandKind::Amend {
                        account,
                        market,
                        order_id,
                        new_price,
                        new_qty,
                    }
                }),
            (any::<u64>(), any::<Option<u32>>())
                .prop_map(|(account, market)| CommandKind::MassCancel { account, market }),
            (any::<u64>(), any::<u64>()).prop_map(|(account, session)| {
                CommandKind::CancelOnDisconnect { account, session }
            }),
            (any::<u64>(), any::<u16>(), any::<u64>()).prop_map(|(account, asset, amount)| {
                CommandKind::Deposit {
                    account,
                    asset,
                    amount,
                }
            }),
            (any::<u64>(), any::<u16>(), any::<u64>()).prop_map(|(account, asset, amount)| {
                CommandKind::Withdraw {
                    account,
                    asset,
                    amount,
                }
            }),
            config().prop_map(CommandKind::CreateMarket),
            any::<u32>().prop_map(|market| CommandKind::Halt { market }),
            any::<u32>().prop_map(|market| CommandKind::Resume { market }),
            any::<u32>().prop_map(|market| CommandKind::StartAuction { market }),
            any::<u32>().prop_map(|market| CommandKind::Uncross { market }),
            Just(CommandKind::Tick),
        ];
        (any::<u64>(), any::<u64>(), kind).prop_map(|(seq, time_us, kind)| Command {
            seq,
            time_us,
            kind,
        })
    }

    fn order_record() -> impl Strategy<Value = OrderRecord> {
        (
            (
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                side(),
                order_type(),
                tif(),
            ),
            (
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
            ),
            (stp(), any::<u64>()),
        )
            .prop_map(
                |((id, c, a, s, ot, tif), (p, q, v, ib, sp, e), (stp, ses))| OrderRecord {
                    order_id: id,
                    client_order_id: c,
                    account: a,
                    side: s,
                    order_type: ot,
                    time_in_force: tif,
                    price: p,
                    qty: q,
                    visible: v,
                    iceberg_peak: ib,
                    stop_price: sp,
                    expire_time_us: e,
                    stp,
                    session: ses,
                },
            )
    }

    fn state() -> impl Strategy<Value = EngineState> {
        let phase = prop_oneof![
            Just(MarketPhase::Continuous),
            Just(MarketPhase::Halted),
            Just(MarketPhase::Auction)
        ];
        let market = (
            config(),
            phase,
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(order_record(), 0..4),
            proptest::collection::vec(order_record(), 0..4),
            proptest::collection::vec(order_record(), 0..3),
        )
            .prop_map(
                |(config, phase, last_price, reference_price, bids, asks, stops)| MarketSnapshot {
                    config,
                    phase,
                    last_price,
                    reference_price,
                    bids,
                    asks,
                    stops,
                },
            );
        let balance =
            (any::<u16>(), any::<u64>(), any::<u64>()).prop_map(|(asset, available, held)| {
                AssetBalance {
                    asset,
                    available,
                    held,
                }
            });
        let account = (any::<u64>(), proptest::collection::vec(balance, 0..4))
            .prop_map(|(account, balances)| AccountBalances { account, balances });
        (
            (
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
            ),
            proptest::collection::vec(market, 0..3),
            proptest::collection::vec(account, 0..5),
        )
            .prop_map(
                |(
                    (fee_account, last_seq, last_time_us, next_order_id, next_trade_id),
                    markets,
                    accounts,
                )| {
                    EngineState {
                        fee_account,
                        last_seq,
                        last_time_us,
                        next_order_id,
                        next_trade_id,
                        markets,
                        accounts,
                    }
                },
            )
    }

    /// Bytes that make every kind of varint: 1 to 10 bytes long, continuation bits set and
    /// clear, zero last bytes (not shortest form), and inputs ending mid-varint.
    fn varint_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..14),
            (0usize..11, any::<u8>(), 0usize..4).prop_map(|(cont, last, tail)| {
                let mut v = vec![0x80u8 | 0x15; cont];
                v.push(last);
                v.extend(std::iter::repeat_n(0x7fu8, tail));
                v
            }),
            (any::<u64>(), 0usize..4).prop_map(|(n, tail)| {
                let mut v = Vec::new();
                put_var(&mut v, n);
                v.extend(std::iter::repeat_n(0xffu8, tail));
                v
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// The loop-free varint path gives exactly what the byte-by-byte decoder gives: the
        /// same value and length, or the same error at the same offset.
        #[test]
        fn fast_varint_agrees_with_the_byte_loop(bytes in varint_bytes()) {
            let mut fast = Reader::new(&bytes);
            let mut slow = Reader::new(&bytes);
            let got = fast.var("v");
            let want = slow.var_slow("v");
            let ok = got.is_ok();
            prop_assert_eq!(got, want);
            if ok {
                prop_assert_eq!(fast.pos, slow.pos);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn commands_round_trip(cmd in command()) {
            let mut buf = Vec::new();
            encode_command(&mut buf, &cmd);
            prop_assert!(buf.len() <= COMMAND_ENCODED_MAX);
            prop_assert_eq!(decode_command(&buf), Ok(cmd));
            // Every strict prefix is refused, at an offset inside the input.
            for cut in 0..buf.len() {
                let err = decode_command(&buf[..cut]).unwrap_err();
                prop_assert!(err.offset <= cut);
            }
        }

        #[test]
        fn decoding_random_bytes_never_panics_and_is_canonical(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            match decode_command(&bytes) {
                Ok(cmd) => {
                    let mut again = Vec::new();
                    encode_command(&mut again, &cmd);
                    prop_assert_eq!(&again, &bytes);
                }
                Err(e) => prop_assert!(e.offset <= bytes.len()),
            }
            match decode_state(&bytes) {
                Ok(s) => {
                    let mut again = Vec::new();
                    encode_state(&mut again, &s);
                    prop_assert_eq!(&again, &bytes);
                }
                Err(e) => prop_assert!(e.offset <= bytes.len()),
            }
        }

        #[test]
        fn corrupted_commands_never_panic(cmd in command(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
            let mut buf = Vec::new();
            encode_command(&mut buf, &cmd);
            for (i, x) in flips {
                let n = buf.len();
                buf[i % n] ^= x;
            }
            if let Ok(c) = decode_command(&buf) {
                let mut again = Vec::new();
                encode_command(&mut again, &c);
                prop_assert_eq!(again, buf);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn states_round_trip(s in state()) {
            let mut buf = Vec::new();
            encode_state(&mut buf, &s);
            prop_assert_eq!(decode_state(&buf), Ok(s));
            for cut in [0, buf.len() / 2, buf.len() - 1] {
                prop_assert!(decode_state(&buf[..cut]).is_err());
            }
        }
    }

    #[test]
    fn varints_reject_overlong_and_overflowing_forms() {
        assert_eq!(
            Reader::new(&[0x80, 0x00]).var("x").unwrap_err().what,
            "varint not in its shortest form"
        );
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(Reader::new(&max).var("x"), Ok(u64::MAX));
        let over = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(
            Reader::new(&over).var("x").unwrap_err().what,
            "varint overflows 64 bits"
        );
        assert_eq!(
            decode_command(&[2]).unwrap_err(),
            DecodeError {
                offset: 0,
                what: "unsupported command codec version"
            }
        );
        assert_eq!(
            decode_command(&[1, 5, 6, 99]).unwrap_err(),
            DecodeError {
                offset: 3,
                what: "unknown command tag"
            }
        );
    }

    #[test]
    fn huge_declared_collections_do_not_allocate() {
        // A state claiming ORDERS_MAX bids with no bytes behind them is refused up front.
        let mut bytes = vec![STATE_CODEC_VERSION, 0, 0, 0, 0, 0, 1];
        put_market_config(
            &mut bytes,
            &MarketConfig {
                market: 1,
                base_asset: 1,
                quote_asset: 2,
                base_decimals: 6,
                quote_decimals: 2,
                tick_mantissa: 1,
                tick_scale: 2,
                lot_size_base_minor: 1,
                min_qty: 1,
                max_qty: 1,
                max_price: 1,
                band_bps: 0,
                band_action: BandAction::Reject,
                reference_price: 0,
                market_protection_bps: 0,
                maker_fee_bps: 0,
                taker_fee_bps: 0,
            },
        );
        bytes.extend_from_slice(&[0, 0, 0]);
        put_var(&mut bytes, ORDERS_MAX as u64);
        assert_eq!(
            decode_state(&bytes).unwrap_err().what,
            "collection longer than the remaining bytes"
        );
    }
}
