//! The matching engine: order books for CITY/EUR, CITY/LCL and LCL/EUR with a risk engine in
//! front, as a deterministic state machine (`apply(command) -> events`).
//!
//! Architecture Invariant: nothing in this crate reads a clock, a random source, the network or
//! the disk, except the journal and snapshot modules, which only read and write the files they
//! are handed. Time, sequence numbers and ids arrive with each command.
//!
//! # Layout
//! - `command`: ids, `Command`, `Event`, `RejectCode`, `MarketConfig` (the public vocabulary).
//! - `limits`: every `*_MAX` bound.
//! - `decimal`: `rust_decimal` conversions at the edge, `demo_markets()`.
//! - `state`: `EngineState`, the canonical plain-data export used by snapshots and hashing.
//! - `engine`: `Engine` (`apply`), accounts and holds, order placement, cancel, amend.
//! - `matching`: continuous matching, self-trade prevention, stops, auction uncross.
//! - `book`: one side of a book (price ladder, levels, intrusive FIFO queues).
//! - `export`: state export/import, `state_hash`, the full invariant check.
//! - `ids`: the paged order-id index.
//! - `journal`, `codec`, `snapshot`, `recovery`: durability (checksummed group-commit journal,
//!   binary encoding, atomic snapshots, restart = latest snapshot + journal replay).

mod book;
pub mod codec;
pub mod command;
pub mod decimal;
pub mod engine;
mod export;
mod ids;
pub mod journal;
pub mod limits;
mod matching;
pub mod recovery;
pub mod snapshot;
pub mod state;

pub use command::*;
pub use decimal::{
    ASSET_CITY, ASSET_EUR, ASSET_LCL, MARKET_CITY_EUR, MARKET_CITY_LCL, MARKET_LCL_EUR,
    amount_from_decimal, amount_to_decimal, demo_markets,
};
pub use engine::{Engine, EngineConfig, L2Level, L2Snapshot};
pub use export::hash_state;
pub use state::{
    AccountBalances, AssetBalance, EngineState, MarketSnapshot, OrderRecord, StateError,
};
