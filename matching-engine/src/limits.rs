//! Every bound of the engine in one place, so that load turns into refusals with reject codes
//! instead of unbounded memory or time.

/// Asset ids must be below this; balances are a fixed array per account.
pub const ASSETS_MAX: usize = 16;
/// Markets the engine holds at once.
pub const MARKETS_MAX: usize = 64;
/// Accounts with a balance or an order.
pub const ACCOUNTS_MAX: usize = 1_000_000;
/// Open orders (resting plus untriggered stops) per account, across markets.
pub const OPEN_ORDERS_PER_ACCOUNT_MAX: u32 = 1_000;
/// Open orders in the whole engine (size of the order slab).
pub const ORDERS_MAX: usize = 10_000_000;
/// Price levels per side of one book.
pub const PRICE_LEVELS_PER_SIDE_MAX: usize = 100_000;
/// Largest distance between the ids of the oldest and the newest open order (the order-id
/// index is a table over that span; 2^32 ids cost at most 16 MiB of page table).
pub const ORDER_ID_SPAN_MAX: u64 = 1 << 32;
/// Untriggered stop orders per market.
pub const STOP_ORDERS_PER_MARKET_MAX: usize = 100_000;
/// Largest quantity any market may allow, in lots (keeps notional arithmetic in u128 range).
pub const ORDER_QTY_MAX: u64 = 1 << 48;
/// Largest price any market may allow, in ticks.
pub const PRICE_TICKS_MAX: u64 = 1 << 48;
/// Widest price band and market protection, in basis points (100 %).
pub const BAND_BPS_MAX: u32 = 10_000;
/// Highest maker or taker fee, in basis points (10 %).
pub const FEE_BPS_MAX: u16 = 1_000;
/// Largest tick scale (decimal places of a tick size).
pub const TICK_SCALE_MAX: u8 = 18;
/// Levels returned by an L2 snapshot at most.
pub const L2_DEPTH_MAX: usize = 1_000;

/// Price levels kept in the direct-indexed ladder around the first price seen on a side;
/// prices outside fall back to an ordered map. A tuning constant, not a limit.
pub const LADDER_TICKS: u64 = 4_096;
