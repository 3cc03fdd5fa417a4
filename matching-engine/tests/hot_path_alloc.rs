//! The trading hot path does not allocate once warmed up: after every structure has grown
//! to the size a steady workload needs (order slab, levels, per-account order lists, the
//! order-id index's page pool, the per-command scratch lists, the caller's event buffer),
//! passive limit orders, cancels and marketable IOC orders make no heap allocation, whether
//! each command carries its own market data (`Engine::apply`) or market data are flushed once
//! per batch of commands (`Engine::apply_in_batch` + `Engine::flush_market_data`).
//!
//! A counting global allocator (this test binary only) counts the allocations made on the
//! calling thread. Stops and GTD orders are left out: their ordered sets (`BTreeSet`)
//! allocate nodes by design.

// A global allocator can only be written as an `unsafe impl GlobalAlloc`; this test binary
// forwards every call to the system allocator and only counts.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::VecDeque;

use matching_engine::{
    ASSET_CITY, ASSET_EUR, BandAction, Command, CommandKind, Engine, EngineConfig, Event,
    MARKET_CITY_EUR, NewOrder, OrderType, PostOnly, Side, StpMode, TimeInForce, demo_markets,
};

#[derive(Debug)]
struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a
// const-initialised thread-local, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

const ACCOUNTS: u64 = 50;
/// Resting orders an account may have at once in this workload.
const PER_ACCOUNT: usize = 8;
const MID: u64 = 10_000;

/// A deterministic mix of passive adds, cancels of the oldest live order and small IOC
/// orders; it keeps the book bounded (at most `PER_ACCOUNT` orders per account).
#[derive(Debug)]
struct Load {
    seq: u64,
    rng: u64,
    live: Vec<VecDeque<u64>>,
    next_id: u64,
}

impl Load {
    fn next(&mut self) -> u64 {
        // xorshift64*: enough for a test workload.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn cmd(&mut self, kind: CommandKind) -> Command {
        self.seq += 1;
        Command {
            seq: self.seq,
            time_us: 1_000_000 + self.seq,
            kind,
        }
    }

    fn order(
        &mut self,
        account: u64,
        side: Side,
        price: u64,
        qty: u64,
        tif: TimeInForce,
    ) -> Command {
        self.cmd(CommandKind::PlaceOrder(NewOrder {
            account,
            market: MARKET_CITY_EUR,
            client_order_id: self.seq,
            side,
            order_type: OrderType::Limit,
            time_in_force: tif,
            price,
            qty,
            stop_price: 0,
            protection_price: 0,
            expire_time_us: 0,
            post_only: PostOnly::No,
            iceberg_peak: 0,
            stp: StpMode::None,
            session: 0,
        }))
    }

    /// The next command.
    fn step(&mut self) -> Command {
        let a = (self.next() % ACCOUNTS) as usize;
        let account = 100 + a as u64;
        let roll = self.next() % 10;
        let side = if self.next().is_multiple_of(2) {
            Side::Buy
        } else {
            Side::Sell
        };
        if roll < 6 && self.live[a].len() < PER_ACCOUNT {
            let off = 1 + self.next() % 40;
            let price = if side == Side::Buy {
                MID - off
            } else {
                MID + off
            };
            self.next_id += 1;
            self.live[a].push_back(self.next_id);
            let qty = 1 + self.next() % 5;
            self.order(account, side, price, qty, TimeInForce::Gtc)
        } else if roll < 9 && !self.live[a].is_empty() {
            // May already be filled: the engine refuses that cancel, which is fine here.
            let order_id = self.live[a].pop_front().unwrap_or(0);
            self.cmd(CommandKind::Cancel {
                account,
                market: MARKET_CITY_EUR,
                order_id,
            })
        } else {
            let price = if side == Side::Buy {
                MID + 40
            } else {
                MID - 40
            };
            self.next_id += 1;
            let qty = 1 + self.next() % 6;
            self.order(account, side, price, qty, TimeInForce::Ioc)
        }
    }
}

/// Applies the workload in batches of `batch` commands (1: through `Engine::apply`) and
/// returns the allocations made while applying the last 20 000 commands.
fn allocations_in_steady_trading(batch: usize) -> u64 {
    let mut engine = Engine::new(EngineConfig { fee_account: 1 });
    let mut out: Vec<Event> = Vec::with_capacity(4_096);
    let mut load = Load {
        seq: 0,
        rng: 0x9e37_79b9_7f4a_7c15,
        live: vec![VecDeque::with_capacity(PER_ACCOUNT + 1); ACCOUNTS as usize],
        next_id: 0,
    };
    let mut config = demo_markets()[0];
    config.band_action = BandAction::Reject;
    let setup = load.cmd(CommandKind::CreateMarket(config));
    engine.apply(&setup, &mut out);
    for i in 0..ACCOUNTS {
        for (asset, amount) in [(ASSET_CITY, 10u64.pow(14)), (ASSET_EUR, 10u64.pow(12))] {
            let c = load.cmd(CommandKind::Deposit {
                account: 100 + i,
                asset,
                amount,
            });
            engine.apply(&c, &mut out);
        }
    }
    engine.reserve_orders(4_096);
    // Full invariant checks build their own tables; they are a test aid, not the hot path.
    engine.set_full_invariant_checks(false);
    let mut commands = Vec::with_capacity(60_000);
    for _ in 0..60_000 {
        commands.push(load.step());
    }
    let (warm, measured) = commands.split_at(40_000);
    let apply = |engine: &mut Engine, chunk: &[Command], out: &mut Vec<Event>| {
        out.clear();
        if batch == 1 {
            engine.apply(&chunk[0], out);
        } else {
            for c in chunk {
                engine.apply_in_batch(c, out);
            }
            engine.flush_market_data(out);
        }
    };
    let mut events = 0usize;
    for chunk in warm.chunks(batch) {
        apply(&mut engine, chunk, &mut out);
        events += out.len();
    }
    let before = allocs();
    let (mut trades, mut depth) = (0usize, 0usize);
    for chunk in measured.chunks(batch) {
        apply(&mut engine, chunk, &mut out);
        trades += out
            .iter()
            .filter(|e| matches!(e, Event::Trade { .. }))
            .count();
        depth += out
            .iter()
            .filter(|e| matches!(e, Event::Depth { .. }))
            .count();
    }
    let made = allocs() - before;
    assert!(
        events > 40_000 && trades > 1_000 && depth > 1_000,
        "the workload must trade and move the book"
    );
    made
}

#[test]
fn steady_trading_makes_no_heap_allocation() {
    assert_eq!(
        allocations_in_steady_trading(1),
        0,
        "allocations on the warmed-up hot path"
    );
}

#[test]
fn steady_trading_in_batches_makes_no_heap_allocation() {
    // 64: a typical journal group-commit batch (the node takes up to `ENGINE_BATCH_MAX`);
    // 500 makes the touched lists long enough for the library sort.
    for batch in [64, 500] {
        assert_eq!(
            allocations_in_steady_trading(batch),
            0,
            "allocations on the warmed-up hot path, batches of {batch}"
        );
    }
}
