//! Benchmark of the matching engine's full command path (risk checks and holds included) on
//! one market, and optionally of journal replay.
//!
//! `matching-bench --ops 1000000 --resting 10000 --seed 42 [--batch 64] [--prefetch 1]
//! [--replay 10000000]`
//! pre-funds the accounts with deposit commands, pre-fills `resting` passive orders, then
//! applies a seeded stream of `ops` commands (60 % passive limit adds, 30 % cancels of random
//! earlier orders, live or already filled, 10 % marketable IOC orders taking a few resting
//! orders each), generated before timing. It prints one JSON line: throughput from an
//! untimed-per-op pass, latency percentiles from a second pass on a fresh engine timing each
//! command with `Instant`. Commands are applied in batches of `--batch` (default
//! `BATCH_DEFAULT`) with `Engine::apply_in_batch`, market data flushed once per batch
//! (`Engine::flush_market_data`), as the node does per journal batch; `--batch 1` applies each
//! command with `Engine::apply` (market data per command, as before `--batch` existed). Each
//! batch is first handed to `Engine::prefetch`, as the node can do with its journal batch
//! (`--prefetch 0` leaves it out, for comparison; it never changes the results). In the
//! latency pass a command's figure is its own `apply_in_batch` time plus an equal share of its
//! batch's flush and prefetch (their time divided by the batch length); the flushes' own
//! percentiles are printed too (`flush_*_ns`). With `--replay N` it also journals N commands to a
//! temporary directory and measures replay as recovery does it (read, checksum, decode,
//! `Engine::apply_replay`, which skips market data); an "event" in the replay figures is one
//! journal record, i.e. one command. `replay_full_apply_events_per_sec` is the same replay
//! through `Engine::apply`, market data included, for comparison.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use matching_engine::codec::decode_command;
use matching_engine::engine::{Engine, EngineConfig};
use matching_engine::journal::{
    self, Journal, JournalError, JournalOptions, JournalWriter, WriterOptions,
};
use matching_engine::{
    ASSET_CITY, ASSET_EUR, BandAction, Command, CommandKind, Event, MARKET_CITY_EUR, NewOrder,
    OrderType, PostOnly, Side, StpMode, TimeInForce, demo_markets,
};

/// Default commands per market-data batch (`--batch`). The node applies what has queued up
/// for its engine thread as one journal group-commit batch (at most `ENGINE_BATCH_MAX`, 4 096,
/// in `src/node/limits.rs`) and flushes market data once per batch; 64 is a modest batch for
/// a busy node (see BENCHMARKS.md).
const BATCH_DEFAULT: u64 = 64;
/// Largest `--batch` accepted (the node's `ENGINE_BATCH_MAX`).
const BATCH_MAX: u64 = 4_096;
/// Default number of trading accounts (`--accounts`).
const ACCOUNTS_DEFAULT: u64 = 1_000;
/// Commands generated at a time while writing the replay journal.
const REPLAY_CHUNK: u64 = 1_000_000;
/// Slab room reserved beyond four times `--resting`.
const ORDERS_RESERVE_MIN: u64 = 100_000;
/// Slab room reserved for the replay engine.
const REPLAY_ORDERS_RESERVE: usize = 1_000_000;
/// Most trading accounts accepted.
const ACCOUNTS_MAX: u64 = 100_000;
/// The fee account (not one of the traders).
const FEE_ACCOUNT: u64 = 1;
/// First trader account id.
const FIRST_ACCOUNT: u64 = 1_000;
/// Mid price in ticks; passive orders rest within `SPREAD_TICKS` of it, never crossing.
const MID: u64 = 10_000;
const SPREAD_TICKS: u64 = 50;
/// Largest operation count accepted (the stream is held in memory).
const OPS_MAX: u64 = 50_000_000;
/// Largest replay length accepted.
const REPLAY_MAX: u64 = 100_000_000;

/// SplitMix64: a tiny, good-enough seeded generator; the engine never sees it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is irrelevant here.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Generates the command stream: setup (market, deposits), then resting orders, then the
/// operation mix. The generator keeps a simple price-time book of its own (the engine's rules
/// for plain limit orders with every order funded), so it knows which orders are live: 90 %
/// of cancels target a random live order, 10 % an order already filled or cancelled (the
/// engine refuses those with `UnknownOrder`, and the bench reports how many it saw). The
/// marketable orders' sizes are chosen so that the book stays near its pre-filled size: per
/// operation, 0.6 orders are added and on average 0.27 are cancelled and 0.33 filled.
struct Workload {
    rng: Rng,
    /// Trading accounts, ids `FIRST_ACCOUNT..FIRST_ACCOUNT + accounts`.
    accounts: u64,
    seq: u64,
    time_us: u64,
    /// Orders placed so far (= the last order id given).
    placed: u64,
    /// The generator's book: price -> FIFO of (order id, open qty), per side.
    bids: BTreeMap<u64, VecDeque<(u64, u64)>>,
    asks: BTreeMap<u64, VecDeque<(u64, u64)>>,
    /// Live resting orders: (id, owner, side, price), with each id's index in this vector.
    live: Vec<(u64, u64, Side, u64)>,
    live_index: HashMap<u64, usize>,
    /// Orders no longer live (filled, cancelled, or IOC): (id, owner).
    dead: Vec<(u64, u64)>,
    /// Cancels generated for dead orders (the refusals to expect).
    dead_cancels: u64,
}

impl Workload {
    fn new(seed: u64, accounts: u64) -> Self {
        Self {
            rng: Rng(seed),
            accounts,
            seq: 0,
            time_us: 1_700_000_000_000_000,
            placed: 0,
            bids: BTreeMap::new(),
            asks: BTreeMap::new(),
            live: Vec::new(),
            live_index: HashMap::new(),
            dead: Vec::new(),
            dead_cancels: 0,
        }
    }

    fn cmd(&mut self, kind: CommandKind) -> Command {
        self.seq += 1;
        self.time_us += 1;
        Command {
            seq: self.seq,
            time_us: self.time_us,
            kind,
        }
    }

    fn setup(&mut self) -> Vec<Command> {
        let mut config = demo_markets()[0];
        // A trade outside the band would halt the market mid-benchmark; refuse instead.
        config.band_action = BandAction::Reject;
        let mut out = vec![self.cmd(CommandKind::CreateMarket(config))];
        for i in 0..self.accounts {
            let account = FIRST_ACCOUNT + i;
            for (asset, amount) in [(ASSET_CITY, 10u64.pow(14)), (ASSET_EUR, 10u64.pow(12))] {
                out.push(self.cmd(CommandKind::Deposit {
                    account,
                    asset,
                    amount,
                }));
            }
        }
        out
    }

    fn random_side(&mut self) -> Side {
        if self.rng.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        }
    }

    fn order(&mut self, side: Side, price: u64, qty: u64, tif: TimeInForce) -> (u64, u64, Command) {
        let account = FIRST_ACCOUNT + self.rng.below(self.accounts);
        self.placed += 1;
        let id = self.placed;
        let cmd = self.cmd(CommandKind::PlaceOrder(NewOrder {
            account,
            market: MARKET_CITY_EUR,
            client_order_id: id,
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
        }));
        (id, account, cmd)
    }

    fn kill(&mut self, id: u64) {
        if let Some(i) = self.live_index.remove(&id) {
            let (_, owner, _, _) = self.live.swap_remove(i);
            if let Some(moved) = self.live.get(i) {
                self.live_index.insert(moved.0, i);
            }
            self.dead.push((id, owner));
        }
    }

    fn passive(&mut self) -> Command {
        let side = self.random_side();
        let offset = 1 + self.rng.below(SPREAD_TICKS);
        let price = match side {
            Side::Buy => MID - offset,
            Side::Sell => MID + offset,
        };
        let qty = 1 + self.rng.below(10);
        let (id, account, cmd) = self.order(side, price, qty, TimeInForce::Gtc);
        let book = match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        book.entry(price).or_default().push_back((id, qty));
        self.live_index.insert(id, self.live.len());
        self.live.push((id, account, side, price));
        cmd
    }

    fn marketable(&mut self) -> Command {
        let side = self.random_side();
        let price = match side {
            Side::Buy => MID + SPREAD_TICKS,
            Side::Sell => MID - SPREAD_TICKS,
        };
        let mut qty = 1 + self.rng.below(35);
        let (id, account, cmd) = self.order(side, price, qty, TimeInForce::Ioc);
        // Walk the opposite side best price first, FIFO within a level, as the engine does.
        let mut filled = Vec::new();
        let opposite = match side {
            Side::Buy => &mut self.asks,
            Side::Sell => &mut self.bids,
        };
        while qty > 0 {
            let best = match side {
                Side::Buy => opposite.first_entry(),
                Side::Sell => opposite.last_entry(),
            };
            let Some(mut level) = best else { break };
            while qty > 0 {
                let Some(front) = level.get_mut().front_mut() else {
                    break;
                };
                let take = front.1.min(qty);
                front.1 -= take;
                qty -= take;
                if front.1 == 0 {
                    filled.push(front.0);
                    level.get_mut().pop_front();
                }
            }
            if level.get().is_empty() {
                level.remove();
            }
        }
        for f in filled {
            self.kill(f);
        }
        self.dead.push((id, account));
        cmd
    }

    fn cancel(&mut self) -> Command {
        let (order_id, account) = if self.rng.below(10) == 0 && !self.dead.is_empty() {
            self.dead_cancels += 1;
            self.dead[self.rng.below(self.dead.len() as u64) as usize]
        } else {
            let (id, owner, side, price) =
                self.live[self.rng.below(self.live.len() as u64) as usize];
            let book = match side {
                Side::Buy => &mut self.bids,
                Side::Sell => &mut self.asks,
            };
            if let Some(level) = book.get_mut(&price) {
                level.retain(|(o, _)| *o != id);
                if level.is_empty() {
                    book.remove(&price);
                }
            }
            self.kill(id);
            (id, owner)
        };
        self.cmd(CommandKind::Cancel {
            account,
            market: MARKET_CITY_EUR,
            order_id,
        })
    }

    fn next_op(&mut self) -> Command {
        let roll = self.rng.below(100);
        if roll < 60 || self.live.is_empty() {
            self.passive()
        } else if roll < 90 {
            self.cancel()
        } else {
            self.marketable()
        }
    }
}

struct Args {
    ops: u64,
    resting: u64,
    seed: u64,
    replay: u64,
    accounts: u64,
    batch: u64,
    prefetch: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        ops: 1_000_000,
        resting: 10_000,
        seed: 42,
        replay: 0,
        accounts: ACCOUNTS_DEFAULT,
        batch: BATCH_DEFAULT,
        prefetch: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let n: u64 = value
            .parse()
            .map_err(|_| format!("{flag}: not a number: {value}"))?;
        match flag.as_str() {
            "--ops" => args.ops = n,
            "--resting" => args.resting = n,
            "--seed" => args.seed = n,
            "--replay" => args.replay = n,
            "--accounts" => args.accounts = n,
            "--batch" => args.batch = n,
            "--prefetch" => args.prefetch = n != 0,
            _ => {
                return Err(format!(
                    "unknown flag {flag} (--ops, --resting, --seed, --replay, --accounts, --batch, --prefetch)"
                ));
            }
        }
    }
    if args.ops == 0 || args.ops > OPS_MAX {
        return Err(format!("--ops must be in 1..={OPS_MAX}"));
    }
    if args.accounts == 0 || args.accounts > ACCOUNTS_MAX {
        return Err(format!("--accounts must be in 1..={ACCOUNTS_MAX}"));
    }
    if args.batch == 0 || args.batch > BATCH_MAX {
        return Err(format!("--batch must be in 1..={BATCH_MAX}"));
    }
    if args.resting > OPS_MAX || args.replay > REPLAY_MAX {
        return Err("--resting or --replay too large".into());
    }
    Ok(args)
}

fn fresh_engine(setup: &[Command], resting: u64) -> Engine {
    let mut engine = Engine::new(EngineConfig {
        fee_account: FEE_ACCOUNT,
    });
    // Room for the book to wander well above its pre-filled size without the slab growing.
    engine.reserve_orders((4 * resting + ORDERS_RESERVE_MIN) as usize);
    // The O(n) invariant sweep after every command is a test aid, not part of the hot path.
    engine.set_full_invariant_checks(false);
    let mut out = Vec::new();
    for cmd in setup {
        engine.apply(cmd, &mut out);
        out.clear();
    }
    engine
}

fn count_rejects(events: &[Event]) -> u64 {
    events
        .iter()
        .filter(|e| matches!(e, Event::Rejected { .. }))
        .count() as u64
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    // f64 only for a rank in a latency list, never for money.
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() -> Result<(), String> {
    let args = parse_args()?;
    let mut w = Workload::new(args.seed, args.accounts);
    let mut setup = w.setup();
    for _ in 0..args.resting {
        let c = w.passive();
        setup.push(c);
    }
    let ops: Vec<Command> = (0..args.ops).map(|_| w.next_op()).collect();
    let expected_rejects = w.dead_cancels;
    drop(w);

    // Pass 1: throughput, no per-command clock.
    let batch = args.batch as usize;
    let mut engine = fresh_engine(&setup, args.resting);
    let mut out = Vec::with_capacity(1024 + 8 * batch);
    let mut events = 0u64;
    let mut rejects = 0u64;
    let cpu_before = thread_cpu_ns();
    let start = Instant::now();
    if batch == 1 {
        for cmd in &ops {
            engine.apply(cmd, &mut out);
            events += out.len() as u64;
            rejects += count_rejects(&out);
            out.clear();
        }
    } else {
        for chunk in ops.chunks(batch) {
            if args.prefetch {
                engine.prefetch(chunk);
            }
            for cmd in chunk {
                engine.apply_in_batch(cmd, &mut out);
            }
            engine.flush_market_data(&mut out);
            events += out.len() as u64;
            rejects += count_rejects(&out);
            out.clear();
        }
    }
    let elapsed = start.elapsed();
    let cpu_ns = cpu_before.zip(thread_cpu_ns()).map(|(a, b)| b - a);
    let open_orders = engine.open_orders();
    drop(engine);

    // Pass 2: latency of each command on a fresh engine fed the same stream.
    let mut engine = fresh_engine(&setup, args.resting);
    let mut lat_ns: Vec<u32> = Vec::with_capacity(ops.len());
    let mut flush_ns: Vec<u32> = Vec::with_capacity(ops.len() / batch + 1);
    let mut reject_codes = [0u64; 64];
    let clock_overhead = {
        let t = Instant::now();
        for _ in 0..1000 {
            std::hint::black_box(Instant::now());
        }
        t.elapsed().as_nanos() / 1000
    };
    let ns = |d: Duration| d.as_nanos().min(u32::MAX as u128) as u32;
    for chunk in ops.chunks(batch) {
        let first = lat_ns.len();
        let prefetch = if batch > 1 && args.prefetch {
            let t = Instant::now();
            engine.prefetch(chunk);
            ns(t.elapsed())
        } else {
            0
        };
        for cmd in chunk {
            let t = Instant::now();
            if batch == 1 {
                engine.apply(cmd, &mut out);
            } else {
                engine.apply_in_batch(cmd, &mut out);
            }
            lat_ns.push(ns(t.elapsed()));
        }
        if batch > 1 {
            let t = Instant::now();
            engine.flush_market_data(&mut out);
            let flush = ns(t.elapsed());
            flush_ns.push(flush);
            // Each command of the batch carries an equal share of the flush and of the
            // prefetch.
            let share = flush.saturating_add(prefetch) / chunk.len() as u32;
            for l in &mut lat_ns[first..] {
                *l = l.saturating_add(share);
            }
        }
        for e in &out {
            if let Event::Rejected { code, .. } = e {
                reject_codes[code.code() as usize % reject_codes.len()] += 1;
            }
        }
        out.clear();
    }
    drop(engine);
    lat_ns.sort_unstable();
    flush_ns.sort_unstable();
    let flush_pct = |p: f64| {
        if flush_ns.is_empty() {
            0
        } else {
            percentile(&flush_ns, p)
        }
    };

    let ops_per_sec = args.ops as f64 / elapsed.as_secs_f64();
    let mut line = format!(
        "{{\"ops\":{},\"resting\":{},\"accounts\":{},\"seed\":{},\"batch\":{},\"prefetch\":{},\"ops_per_sec\":{:.0},\"ops_per_cpu_sec\":{:.0},\"p50_ns\":{},\"p99_ns\":{},\"p999_ns\":{},\"max_ns\":{},\"flush_p50_ns\":{},\"flush_p99_ns\":{},\"flush_max_ns\":{},\"clock_overhead_ns\":{},\"events_per_op\":{:.2},\"rejects\":{},\"expected_rejects\":{},\"open_orders_after\":{}",
        args.ops,
        args.resting,
        args.accounts,
        args.seed,
        args.batch,
        args.prefetch && args.batch > 1,
        ops_per_sec,
        cpu_ns.map_or(0.0, |ns| args.ops as f64 / (ns as f64 / 1e9)),
        percentile(&lat_ns, 0.50),
        percentile(&lat_ns, 0.99),
        percentile(&lat_ns, 0.999),
        lat_ns.last().copied().unwrap_or(0),
        flush_pct(0.50),
        flush_pct(0.99),
        flush_ns.last().copied().unwrap_or(0),
        clock_overhead,
        events as f64 / args.ops as f64,
        rejects,
        expected_rejects,
        open_orders,
    );
    if args.replay > 0 {
        let f = replay_bench(args.replay, args.seed, args.accounts).map_err(|e| e.to_string())?;
        let n = args.replay as f64;
        line.push_str(&format!(
            ",\"replay_events\":{},\"journal_write_events_per_sec\":{:.0},\"replay_decode_events_per_sec\":{:.0},\"replay_decode_events_per_cpu_sec\":{:.0},\"replay_events_per_sec\":{:.0},\"replay_events_per_cpu_sec\":{:.0},\"replay_full_apply_events_per_sec\":{:.0},\"replay_open_orders_after\":{}",
            args.replay,
            n / f.write.as_secs_f64(),
            n / f.decode.as_secs_f64(),
            f.decode_cpu_ns.map_or(0.0, |ns| n / (ns as f64 / 1e9)),
            n / f.replay.as_secs_f64(),
            f.replay_cpu_ns.map_or(0.0, |ns| n / (ns as f64 / 1e9)),
            n / f.replay_full.as_secs_f64(),
            f.open_orders_after,
        ));
    }
    line.push('}');
    println!("{line}");
    // Which refusals the stream met (cancels of orders already filled or cancelled are
    // expected), on stderr so that stdout stays one JSON line.
    let by_code: Vec<String> = reject_codes
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(code, n)| format!("{code}:{n}"))
        .collect();
    eprintln!("rejects by code: {}", by_code.join(" "));
    Ok(())
}

/// Figures of the replay benchmark.
struct ReplayFigures {
    write: Duration,
    /// Read + checksum + decode, without applying.
    decode: Duration,
    /// Read + checksum + decode + `apply_replay` (what recovery does).
    replay: Duration,
    replay_cpu_ns: Option<u64>,
    /// Read + checksum + decode + `apply` (market data included).
    replay_full: Duration,
    decode_cpu_ns: Option<u64>,
    open_orders_after: usize,
}

/// Journals `n` commands (setup first, then the operation mix) through the group-commit
/// writer with real `fdatasync`s, then reads the whole journal three times: once only
/// decoding, once also applying every command to a fresh engine as recovery does
/// (`apply_replay`), once applying with `apply` (market data included).
fn replay_bench(n: u64, seed: u64, accounts: u64) -> Result<ReplayFigures, JournalError> {
    let dir = TempDir::new()?;
    let mut w = Workload::new(seed ^ 0x5eed, accounts);
    let mut setup = w.setup();
    setup.truncate(n as usize);
    let options = JournalOptions::default();
    let (j, _) = Journal::open(&dir.0, options, 0, |_, _| Ok(()))?;
    // Written through the group-commit writer thread, as the node does: submit each command,
    // then wait for the last ticket.
    let mut writer = JournalWriter::<Command>::spawn(j, WriterOptions::default())?;
    // Commands are generated in chunks outside the timed part; each chunk is submitted and
    // waited for, so the figure is submit-to-durable throughput of the writer alone.
    let mut write = Duration::ZERO;
    let mut chunk = setup;
    let mut written = 0u64;
    loop {
        let start = Instant::now();
        for cmd in &chunk {
            let _ticket = writer.submit(*cmd)?;
        }
        written += chunk.len() as u64;
        writer.wait_durable(written)?;
        write += start.elapsed();
        if written >= n {
            break;
        }
        let next = (n - written).min(REPLAY_CHUNK);
        chunk = (0..next).map(|_| w.next_op()).collect();
    }
    writer.close()?;
    drop(w);

    let decode_err = |seq, e: matching_engine::codec::DecodeError| JournalError::Replay {
        seq,
        what: e.to_string(),
    };
    let decode_cpu_before = thread_cpu_ns();
    let start = Instant::now();
    let mut checksum = 0u64;
    journal::read_dir(&dir.0, 0, |seq, payload| {
        let cmd = decode_command(payload).map_err(|e| decode_err(seq, e))?;
        checksum = checksum.wrapping_add(cmd.time_us);
        Ok(())
    })?;
    let decode = start.elapsed();
    let decode_cpu_ns = decode_cpu_before.zip(thread_cpu_ns()).map(|(a, b)| b - a);
    std::hint::black_box(checksum);

    // Full apply first, then recovery's replay, so that neither pass profits from the
    // other's warm page cache more than the decode pass already gave both.
    let new_engine = || {
        let mut engine = Engine::new(EngineConfig {
            fee_account: FEE_ACCOUNT,
        });
        engine.set_full_invariant_checks(false);
        engine.reserve_orders(REPLAY_ORDERS_RESERVE);
        engine
    };
    let mut out = Vec::with_capacity(1024);
    let mut full = new_engine();
    let start = Instant::now();
    journal::read_dir(&dir.0, 0, |seq, payload| {
        let cmd = decode_command(payload).map_err(|e| decode_err(seq, e))?;
        full.apply(&cmd, &mut out);
        out.clear();
        Ok(())
    })?;
    let replay_full = start.elapsed();

    let mut engine = new_engine();
    let cpu_before = thread_cpu_ns();
    let start = Instant::now();
    let end = journal::read_dir(&dir.0, 0, |seq, payload| {
        let cmd = decode_command(payload).map_err(|e| decode_err(seq, e))?;
        engine.apply_replay(&cmd, &mut out);
        out.clear();
        Ok(())
    })?;
    let replay = start.elapsed();
    let replay_cpu_ns = cpu_before.zip(thread_cpu_ns()).map(|(a, b)| b - a);
    if end.last_seq != n {
        return Err(JournalError::Replay {
            seq: end.last_seq,
            what: "journal shorter than written".into(),
        });
    }
    // Both ways of applying must end in the same state.
    if engine.state_hash() != full.state_hash() {
        return Err(JournalError::Replay {
            seq: end.last_seq,
            what: "apply_replay and apply ended in different states".into(),
        });
    }
    Ok(ReplayFigures {
        write,
        decode,
        replay,
        replay_cpu_ns,
        replay_full,
        decode_cpu_ns,
        open_orders_after: engine.open_orders(),
    })
}

/// CPU time this thread has run, in nanoseconds (Linux `/proc/thread-self/schedstat`), so
/// that figures taken on a shared, loaded machine can also be given per CPU-second.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// A temporary directory removed on drop (std only; the benchmark keeps its dependencies to
/// the crate's own).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self, JournalError> {
        let base = std::env::temp_dir();
        let path = base.join(format!("matching-bench-{}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|source| JournalError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
