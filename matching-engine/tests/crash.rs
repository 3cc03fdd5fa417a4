//! Crash test: a child process (`journal-child`) applies a seeded command stream with the
//! group-commit journal and snapshots, acknowledging each command once durable; the test kills
//! it with SIGKILL at seeded random points, recovers, and checks that every acknowledged
//! command survived, that the journal holds exactly a prefix of the stream, and that the
//! recovered engine's state hash equals that of a fresh in-memory engine fed that prefix.
//! The next round's child resumes from what the previous one left, torn tail and all.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command as Process, Stdio};

use matching_engine::codec::{decode_command, encode_command};
use matching_engine::engine::{Engine, EngineConfig};
use matching_engine::journal::{self, JournalOptions};
use matching_engine::recovery::{self, JOURNAL_DIR, RecoveryOptions};
use matching_engine::{
    Command, CommandKind, MARKET_CITY_EUR, MARKET_LCL_EUR, NewOrder, OrderType, PostOnly, Side,
    StpMode, TimeInForce, demo_markets,
};

const FEE_ACCOUNT: u64 = 1;
const STREAM_LEN: u64 = 2_500;
const ROUNDS: usize = 6;
const SNAPSHOT_EVERY: u64 = 300;
/// Commands the child submits per byte of credit (its `CREDIT_COMMANDS`).
const CREDIT_COMMANDS: u64 = 50;
/// Bytes of credit a killed round's child starts with.
const CREDIT_START: usize = 5;
/// The most commands a child can be ahead of the acknowledgements read here, plus margin.
const CREDIT_AHEAD_MAX: u64 = (CREDIT_START as u64 + 1) * CREDIT_COMMANDS;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A varied stream: markets, deposits, then limit/IOC/market/stop orders, cancels, amends,
/// mass cancels, withdrawals and ticks over two markets (rejections included: replay must
/// reproduce those too).
fn stream(seed: u64) -> Vec<Command> {
    let mut rng = Rng(seed);
    let mut kinds = Vec::new();
    for m in demo_markets() {
        kinds.push(CommandKind::CreateMarket(m));
    }
    let accounts: Vec<u64> = (100..140).collect();
    for &account in &accounts {
        for asset in [1u16, 2, 3] {
            kinds.push(CommandKind::Deposit {
                account,
                asset,
                amount: 5_000_000_000_000,
            });
        }
    }
    let mut placed = 0u64;
    while (kinds.len() as u64) < STREAM_LEN {
        let account = accounts[rng.below(accounts.len() as u64) as usize];
        let (market, mid) = if rng.below(3) == 0 {
            (MARKET_LCL_EUR, 10_000)
        } else {
            (MARKET_CITY_EUR, 10_000)
        };
        let side = if rng.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let away = rng.below(40) as i64 - 10; // mostly passive, sometimes crossing
        let price = match side {
            Side::Buy => (mid as i64 - away) as u64,
            Side::Sell => (mid as i64 + away) as u64,
        };
        let mut order = NewOrder {
            account,
            market,
            client_order_id: placed + 1,
            side,
            order_type: OrderType::Limit,
            time_in_force: TimeInForce::Gtc,
            price,
            qty: 1 + rng.below(20),
            stop_price: 0,
            protection_price: 0,
            expire_time_us: 0,
            post_only: PostOnly::No,
            iceberg_peak: 0,
            stp: StpMode::CancelNewest,
            session: 0,
        };
        let kind = match rng.below(100) {
            0..50 => {
                placed += 1;
                CommandKind::PlaceOrder(order)
            }
            50..58 => {
                placed += 1;
                order.time_in_force = TimeInForce::Ioc;
                CommandKind::PlaceOrder(order)
            }
            58..62 => {
                placed += 1;
                order.order_type = OrderType::Market;
                order.time_in_force = TimeInForce::Ioc;
                order.price = 0;
                CommandKind::PlaceOrder(order)
            }
            62..65 => {
                placed += 1;
                order.order_type = OrderType::StopLimit;
                order.stop_price = match side {
                    Side::Buy => mid + 5,
                    Side::Sell => mid - 5,
                };
                CommandKind::PlaceOrder(order)
            }
            65..67 => {
                placed += 1;
                order.iceberg_peak = 1;
                order.qty = order.qty.max(2);
                CommandKind::PlaceOrder(order)
            }
            67..87 => CommandKind::Cancel {
                account,
                market,
                order_id: 1 + rng.below(placed + 1),
            },
            87..92 => CommandKind::Amend {
                account,
                market,
                order_id: 1 + rng.below(placed + 1),
                new_price: price,
                new_qty: 1 + rng.below(20),
            },
            92..94 => CommandKind::MassCancel {
                account,
                market: Some(market),
            },
            94..97 => CommandKind::Withdraw {
                account,
                asset: 2,
                amount: 1 + rng.below(1_000),
            },
            _ => CommandKind::Tick,
        };
        kinds.push(kind);
    }
    kinds
        .into_iter()
        .enumerate()
        .map(|(i, kind)| Command {
            seq: i as u64 + 1,
            time_us: 1_000_000 + i as u64 * 3,
            kind,
        })
        .collect()
}

fn model_hash(stream: &[Command]) -> [u8; 32] {
    let mut engine = Engine::new(EngineConfig {
        fee_account: FEE_ACCOUNT,
    });
    let mut out = Vec::new();
    for cmd in stream {
        engine.apply(cmd, &mut out);
        out.clear();
    }
    engine.state_hash()
}

fn options() -> RecoveryOptions {
    RecoveryOptions {
        journal: JournalOptions {
            segment_bytes_max: 16 * 1024,
            sync: true,
        },
        snapshots_kept: 2,
        engine: EngineConfig {
            fee_account: FEE_ACCOUNT,
        },
    }
}

/// Recovers in this process and checks it against the stream; returns the recovered seq.
fn check_recovery(dir: &Path, stream: &[Command], acked: u64) -> u64 {
    let recovered = recovery::recover(dir, &options()).expect("recovery succeeds");
    let seq = recovered.engine.last_seq();
    assert!(
        seq >= acked,
        "acknowledged command {acked} lost: recovered only to {seq}"
    );
    assert_eq!(recovered.journal.durable_seq(), seq);
    assert_eq!(
        recovered.engine.state_hash(),
        model_hash(&stream[..seq as usize]),
        "state after recovery to {seq} differs from the model's"
    );
    drop(recovered);
    // Every record still in the journal (older segments are pruned behind snapshots) is
    // exactly the stream's command of that number.
    let journal_dir = dir.join(JOURNAL_DIR);
    let first = journal::list_segments(&journal_dir)
        .unwrap()
        .first()
        .map_or(1, |s| s.0);
    let end = journal::read_dir(&journal_dir, first - 1, |s, payload| {
        assert_eq!(decode_command(payload).unwrap(), stream[s as usize - 1]);
        Ok(())
    })
    .unwrap();
    assert!(end.torn.is_none(), "recovery left a torn tail");
    assert_eq!(end.last_seq, seq);
    seq
}

#[test]
fn acknowledged_commands_survive_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let stream_file = tmp.path().join("stream.bin");
    let stream = stream(0xC0FFEE);
    let mut bytes = Vec::new();
    for cmd in &stream {
        let mut enc = Vec::new();
        encode_command(&mut enc, cmd);
        bytes.extend_from_slice(&(enc.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&enc);
    }
    std::fs::write(&stream_file, &bytes).unwrap();

    let mut rng = Rng(7);
    let mut recovered_seq = 0;
    let mut kills = 0;
    for round in 0..=ROUNDS {
        // A round is killed unless it is the last one, or too little of the stream is left
        // to kill the child before its end (a child is at most CREDIT_AHEAD_MAX ahead).
        let final_round = round == ROUNDS || STREAM_LEN - recovered_seq <= CREDIT_AHEAD_MAX + 2;
        let mut child = Process::new(env!("CARGO_BIN_EXE_journal-child"))
            .arg(&data)
            .arg(&stream_file)
            .arg(SNAPSHOT_EVERY.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // Credit: the child submits CREDIT_COMMANDS commands per byte. It starts with
        // CREDIT_START bytes and gets one more per CREDIT_COMMANDS acks read, so it is never
        // more than CREDIT_START * CREDIT_COMMANDS commands ahead of what was read here.
        // The final round closes stdin: no limit.
        let mut stdin = child.stdin.take();
        if final_round {
            stdin = None;
        } else if let Some(s) = stdin.as_mut() {
            s.write_all(&[0; CREDIT_START]).unwrap();
        }
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = lines.next().unwrap().unwrap();
        assert_eq!(ready, format!("ready {recovered_seq}"), "round {round}");
        // Kill rounds stop the child after a random number of acknowledgements; the child
        // goes on working meanwhile, so the kill lands mid-batch, mid-rollover or
        // mid-snapshot. The bound keeps the kill point before the end of the stream.
        let remaining = STREAM_LEN - recovered_seq;
        let kill_after = if final_round {
            u64::MAX
        } else {
            1 + rng.below((remaining - CREDIT_AHEAD_MAX) / 2)
        };
        let mut acked = recovered_seq;
        let mut seen = 0;
        let mut done = false;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("ack ") {
                let n: u64 = n.parse().unwrap();
                assert_eq!(n, acked + 1, "acks are in order");
                acked = n;
                seen += 1;
                if seen == kill_after {
                    child.kill().unwrap();
                    stdin = None;
                } else if seen % CREDIT_COMMANDS == 0
                    && let Some(s) = stdin.as_mut()
                {
                    // The child may already be dead (killed, or stopped by a failure that
                    // the checks below will report): a broken pipe is fine here.
                    let _ = s.write_all(&[0]);
                }
            } else if line.starts_with("done ") {
                done = true;
            }
        }
        drop(stdin);
        let status = child.wait().unwrap();
        // Lines printed before the kill were read to the end above: all acknowledged.
        recovered_seq = check_recovery(&data, &stream, acked);
        println!(
            "round {round}: {seen} acks read, kill after {kill_after}, acked {acked}, recovered {recovered_seq}, done {done}"
        );
        if final_round {
            assert!(done && status.success(), "the final round runs to the end");
            assert_eq!(acked, STREAM_LEN);
            break;
        }
        assert!(
            !done,
            "round {round}: the child finished before its kill point"
        );
        kills += 1;
    }
    assert_eq!(recovered_seq, STREAM_LEN);
    // Each killed round leaves at least half the rest minus the credit window, so at least
    // three rounds are always killed.
    assert!(kills >= 3, "only {kills} rounds were killed");
}
