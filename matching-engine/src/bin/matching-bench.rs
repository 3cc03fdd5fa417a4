//! Benchmark of the matching engine's full command path (risk checks and holds included) on
//! one market, and optionally of journal replay.
//!
//! `matching-bench --ops 1000000 --resting 10000 --seed 42 [--replay 10000000]` pre-funds the
//! accounts with deposit commands, pre-fills `resting` passive orders, then applies a seeded
//! stream of `ops` commands (60 % passive limit adds, 30 % cancels of random earlier orders,
//! live or already filled, 10 % marketable IOC orders taking a few resting orders each), generated before timing. It prints one
//! JSON line: throughput from an untimed-per-op pass, latency percentiles from a second pass
//! on a fresh engine timing each command with `Instant`. With `--replay N` it also journals N
//! commands to a temporary directory and measures replay (read + checksum + decode + apply).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use matching_engine::codec::decode_command;
use matching_engine::engine::{Engine, EngineConfig};
use matching_engine::journal::{self, Journal, JournalError, JournalOptions};
use matching_engine::{
    ASSET_CITY, ASSET_EUR, BandAction, Command, CommandKind, Event, MARKET_CITY_EUR, NewOrder,
    OrderType, PostOnly, Side, StpMode, TimeInForce, demo_markets,
};

/// Default number of trading accounts (`--accounts`).
const ACCOUNTS_DEFAULT: u64 = 1_000;
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
/// Commands per journal batch while writing the replay journal.
const REPLAY_BATCH: usize = 16 * 1024;

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
/// operation mix. Order ids are predicted (the engine gives accepted orders dense ids from 1,
/// and every order here is accepted), so cancels can name earlier orders and their owners.
/// A cancel targets a random resting order the stream has not cancelled yet, which may have
/// been filled meanwhile (the engine then refuses it with `UnknownOrder`). Marketable orders
/// take a few resting orders each, so the book stays near its pre-filled size instead of
/// growing for ever.
struct Workload {
    rng: Rng,
    /// Trading accounts, ids `FIRST_ACCOUNT..FIRST_ACCOUNT + accounts`.
    accounts: u64,
    seq: u64,
    time_us: u64,
    /// Orders placed so far (= the last order id given).
    placed: u64,
    /// Resting orders not yet cancelled by the stream: (order id, owner).
    live: Vec<(u64, u64)>,
}

impl Workload {
    fn new(seed: u64, accounts: u64) -> Self {
        Self {
            rng: Rng(seed),
            accounts,
            seq: 0,
            time_us: 1_700_000_000_000_000,
            placed: 0,
            live: Vec::new(),
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

    fn order(&mut self, side: Side, price: u64, qty: u64, tif: TimeInForce) -> Command {
        let account = FIRST_ACCOUNT + self.rng.below(self.accounts);
        self.placed += 1;
        let client_order_id = self.placed;
        if tif == TimeInForce::Gtc {
            self.live.push((self.placed, account));
        }
        self.cmd(CommandKind::PlaceOrder(NewOrder {
            account,
            market: MARKET_CITY_EUR,
            client_order_id,
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

    fn passive(&mut self) -> Command {
        let side = if self.rng.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let offset = 1 + self.rng.below(SPREAD_TICKS);
        let price = match side {
            Side::Buy => MID - offset,
            Side::Sell => MID + offset,
        };
        let qty = 1 + self.rng.below(10);
        self.order(side, price, qty, TimeInForce::Gtc)
    }

    fn next_op(&mut self) -> Command {
        let roll = self.rng.below(100);
        if roll < 60 || self.live.is_empty() {
            self.passive()
        } else if roll < 90 {
            let pick = self.rng.below(self.live.len() as u64) as usize;
            let (order_id, account) = self.live.swap_remove(pick);
            self.cmd(CommandKind::Cancel {
                account,
                market: MARKET_CITY_EUR,
                order_id,
            })
        } else {
            let side = if self.rng.below(2) == 0 {
                Side::Buy
            } else {
                Side::Sell
            };
            let price = match side {
                Side::Buy => MID + SPREAD_TICKS,
                Side::Sell => MID - SPREAD_TICKS,
            };
            let qty = 1 + self.rng.below(60);
            self.order(side, price, qty, TimeInForce::Ioc)
        }
    }
}

struct Args {
    ops: u64,
    resting: u64,
    seed: u64,
    replay: u64,
    accounts: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        ops: 1_000_000,
        resting: 10_000,
        seed: 42,
        replay: 0,
        accounts: ACCOUNTS_DEFAULT,
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
            _ => {
                return Err(format!(
                    "unknown flag {flag} (--ops, --resting, --seed, --replay, --accounts)"
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
    if args.resting > OPS_MAX || args.replay > REPLAY_MAX {
        return Err("--resting or --replay too large".into());
    }
    Ok(args)
}

fn fresh_engine(setup: &[Command]) -> Engine {
    let mut engine = Engine::new(EngineConfig {
        fee_account: FEE_ACCOUNT,
    });
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

    // Pass 1: throughput, no per-command clock.
    let mut engine = fresh_engine(&setup);
    let mut out = Vec::with_capacity(1024);
    let mut events = 0u64;
    let mut rejects = 0u64;
    let cpu_before = thread_cpu_ns();
    let start = Instant::now();
    for cmd in &ops {
        engine.apply(cmd, &mut out);
        events += out.len() as u64;
        rejects += count_rejects(&out);
        out.clear();
    }
    let elapsed = start.elapsed();
    let cpu_ns = cpu_before.zip(thread_cpu_ns()).map(|(a, b)| b - a);
    let open_orders = engine.open_orders();
    drop(engine);

    // Pass 2: latency of each command on a fresh engine fed the same stream.
    let mut engine = fresh_engine(&setup);
    let mut lat_ns: Vec<u32> = Vec::with_capacity(ops.len());
    let mut reject_codes = [0u64; 64];
    let clock_overhead = {
        let t = Instant::now();
        for _ in 0..1000 {
            std::hint::black_box(Instant::now());
        }
        t.elapsed().as_nanos() / 1000
    };
    for cmd in &ops {
        let t = Instant::now();
        engine.apply(cmd, &mut out);
        let dt = t.elapsed();
        for e in &out {
            if let Event::Rejected { code, .. } = e {
                reject_codes[code.code() as usize % reject_codes.len()] += 1;
            }
        }
        out.clear();
        lat_ns.push(dt.as_nanos().min(u32::MAX as u128) as u32);
    }
    drop(engine);
    lat_ns.sort_unstable();

    let ops_per_sec = args.ops as f64 / elapsed.as_secs_f64();
    let mut line = format!(
        "{{\"ops\":{},\"resting\":{},\"accounts\":{},\"seed\":{},\"ops_per_sec\":{:.0},\"ops_per_cpu_sec\":{:.0},\"p50_ns\":{},\"p99_ns\":{},\"p999_ns\":{},\"max_ns\":{},\"clock_overhead_ns\":{},\"events_per_op\":{:.2},\"rejects\":{},\"open_orders_after\":{}",
        args.ops,
        args.resting,
        args.accounts,
        args.seed,
        ops_per_sec,
        cpu_ns.map_or(0.0, |ns| args.ops as f64 / (ns as f64 / 1e9)),
        percentile(&lat_ns, 0.50),
        percentile(&lat_ns, 0.99),
        percentile(&lat_ns, 0.999),
        lat_ns.last().copied().unwrap_or(0),
        clock_overhead,
        events as f64 / args.ops as f64,
        rejects,
        open_orders,
    );
    if args.replay > 0 {
        let f = replay_bench(args.replay, args.seed, args.accounts).map_err(|e| e.to_string())?;
        let n = args.replay as f64;
        line.push_str(&format!(
            ",\"replay_events\":{},\"journal_write_events_per_sec\":{:.0},\"replay_decode_events_per_sec\":{:.0},\"replay_events_per_sec\":{:.0},\"replay_events_per_cpu_sec\":{:.0}",
            args.replay,
            n / f.write.as_secs_f64(),
            n / f.decode.as_secs_f64(),
            n / f.replay.as_secs_f64(),
            f.replay_cpu_ns.map_or(0.0, |ns| n / (ns as f64 / 1e9)),
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
    /// Read + checksum + decode + apply.
    replay: Duration,
    replay_cpu_ns: Option<u64>,
}

/// Journals `n` commands (setup first, then the operation mix) with group commit and real
/// `fdatasync`s, then reads the whole journal twice: once only decoding, once also applying
/// every command to a fresh engine.
fn replay_bench(n: u64, seed: u64, accounts: u64) -> Result<ReplayFigures, JournalError> {
    let dir = TempDir::new()?;
    let mut w = Workload::new(seed ^ 0x5eed, accounts);
    let mut setup = w.setup();
    setup.truncate(n as usize);
    let options = JournalOptions::default();
    let (mut j, _) = Journal::open(&dir.0, options, 0, |_, _| Ok(()))?;
    let start = Instant::now();
    for cmd in &setup {
        j.stage(cmd)?;
    }
    j.commit()?;
    let mut written = setup.len() as u64;
    while written < n {
        let batch = (n - written).min(REPLAY_BATCH as u64);
        for _ in 0..batch {
            let cmd = w.next_op();
            j.stage(&cmd)?;
        }
        j.commit()?;
        written += batch;
    }
    let write = start.elapsed();
    drop(j);
    drop(w);

    let decode_err = |seq, e: matching_engine::codec::DecodeError| JournalError::Replay {
        seq,
        what: e.to_string(),
    };
    let start = Instant::now();
    let mut checksum = 0u64;
    journal::read_dir(&dir.0, 0, |seq, payload| {
        let cmd = decode_command(payload).map_err(|e| decode_err(seq, e))?;
        checksum = checksum.wrapping_add(cmd.time_us);
        Ok(())
    })?;
    let decode = start.elapsed();
    std::hint::black_box(checksum);

    let mut engine = Engine::new(EngineConfig {
        fee_account: FEE_ACCOUNT,
    });
    engine.set_full_invariant_checks(false);
    let mut out = Vec::with_capacity(1024);
    let cpu_before = thread_cpu_ns();
    let start = Instant::now();
    let end = journal::read_dir(&dir.0, 0, |seq, payload| {
        let cmd = decode_command(payload).map_err(|e| decode_err(seq, e))?;
        engine.apply(&cmd, &mut out);
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
    Ok(ReplayFigures {
        write,
        decode,
        replay,
        replay_cpu_ns,
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
