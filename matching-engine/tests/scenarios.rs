//! Scenario tests written as data: every `tests/scenarios/*.txt` file is a script of engine
//! commands with the events and state expected after each (format in
//! `tests/scenarios/README.md`). A failure names the file and line.

use std::fmt::Write as _;
use std::path::Path;

use matching_engine::{
    Aggressor, BandAction, CancelReason, Command, CommandKind, Engine, EngineConfig, Event,
    MarketConfig, MarketPhase, NewOrder, OrderType, PostOnly, RejectCode, Side, StpMode,
    TimeInForce, demo_markets,
};

const FEE_ACCOUNT: u64 = 999;
const MARKET: u32 = 1;

fn account(tok: &str) -> u64 {
    let c = tok.as_bytes()[0];
    assert!(
        tok.len() == 1 && c.is_ascii_uppercase(),
        "account must be A..Z: {tok}"
    );
    u64::from(c - b'A' + 1)
}

fn asset(tok: &str) -> u16 {
    match tok {
        "CITY" => 1,
        "EUR" => 2,
        "LCL" => 3,
        _ => panic!("unknown asset {tok}"),
    }
}

fn num(tok: &str) -> u64 {
    tok.trim_start_matches('#')
        .replace('_', "")
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {tok}"))
}

/// A compact text form of every event that is not market data or balances.
fn fmt_event(e: &Event) -> Option<String> {
    Some(match *e {
        Event::Accepted {
            order_id, price, ..
        } => format!("accepted #{order_id} @{price}"),
        Event::Rejected { code, .. } => format!("reject {code:?}"),
        Event::Trade {
            price,
            qty,
            buy_order,
            sell_order,
            aggressor,
            buy_fee,
            sell_fee,
            ..
        } => {
            let mut s = format!("trade {price}x{qty} b#{buy_order} s#{sell_order}");
            if buy_fee != 0 || sell_fee != 0 {
                let _ = write!(s, " fee={buy_fee}/{sell_fee}");
            }
            if aggressor == Aggressor::Auction {
                s.push_str(" auction");
            }
            s
        }
        Event::OrderCancelled {
            order_id,
            qty,
            reason,
            ..
        } => format!("cancelled #{order_id} {qty} {reason:?}"),
        Event::OrderReduced {
            order_id,
            reduced,
            remaining,
            ..
        } => format!("reduced #{order_id} by {reduced} left {remaining}"),
        Event::OrderAmended {
            order_id,
            price,
            qty,
            priority_kept,
            ..
        } => format!(
            "amended #{order_id} {price}x{qty} {}",
            if priority_kept { "keep" } else { "lose" }
        ),
        Event::StopTriggered { order_id, .. } => format!("triggered #{order_id}"),
        Event::IcebergReplenished {
            order_id, visible, ..
        } => format!("replenished #{order_id} {visible}"),
        Event::PhaseChanged { phase, .. } => format!("phase {phase:?}"),
        Event::Uncrossed { price, volume, .. } => format!("uncrossed {price}x{volume}"),
        Event::MarketCreated { market } => format!("created {market}"),
        Event::Depth { .. } | Event::Bbo { .. } | Event::Balance { .. } => return None,
    })
}

struct Runner {
    engine: Engine,
    seq: u64,
    time: u64,
    last_events: Vec<Event>,
    where_: String,
}

impl Runner {
    fn apply(&mut self, kind: CommandKind) {
        self.seq += 1;
        self.time += 1;
        let mut out = Vec::new();
        self.engine.apply(
            &Command {
                seq: self.seq,
                time_us: self.time,
                kind,
            },
            &mut out,
        );
        self.last_events = out;
    }

    fn setup(&mut self, args: &[&str]) {
        let mut cfg: MarketConfig = demo_markets()[0];
        cfg.band_bps = 0;
        cfg.maker_fee_bps = 0;
        cfg.taker_fee_bps = 0;
        for a in args {
            let (k, v) = a
                .split_once('=')
                .unwrap_or_else(|| panic!("{}: bad {a}", self.where_));
            match k {
                "band" => {
                    let (bps, action) = v.split_once('/').expect("band=bps/reject|halt");
                    cfg.band_bps = num(bps) as u32;
                    cfg.band_action = if action == "halt" {
                        BandAction::Halt
                    } else {
                        BandAction::Reject
                    };
                }
                "ref" => cfg.reference_price = num(v),
                "fees" => {
                    let (m, t) = v.split_once('/').expect("fees=maker/taker");
                    cfg.maker_fee_bps = num(m) as u16;
                    cfg.taker_fee_bps = num(t) as u16;
                }
                "prot" => cfg.market_protection_bps = num(v) as u32,
                "min" => cfg.min_qty = num(v),
                "max" => cfg.max_qty = num(v),
                _ => panic!("{}: unknown setup key {k}", self.where_),
            }
        }
        self.apply(CommandKind::CreateMarket(cfg));
        for acc in 1..=6 {
            self.apply(CommandKind::Deposit {
                account: acc,
                asset: 2,
                amount: 10_000_000,
            });
            self.apply(CommandKind::Deposit {
                account: acc,
                asset: 1,
                amount: 10_000 * 1_000_000,
            });
        }
        self.last_events.clear();
    }

    fn place(&mut self, t: &[&str]) {
        let mut o = NewOrder {
            account: account(t[1]),
            market: MARKET,
            client_order_id: 0,
            side: if t[2] == "buy" { Side::Buy } else { Side::Sell },
            order_type: OrderType::Limit,
            time_in_force: TimeInForce::Gtc,
            price: 0,
            qty: num(t[4]),
            stop_price: 0,
            protection_price: 0,
            expire_time_us: 0,
            post_only: PostOnly::No,
            iceberg_peak: 0,
            stp: StpMode::None,
            session: 0,
        };
        if t[3] == "market" {
            o.order_type = OrderType::Market;
            o.time_in_force = TimeInForce::Ioc;
        } else {
            o.price = num(t[3]);
        }
        for a in &t[5..] {
            let (k, v) = a.split_once('=').unwrap_or((a, ""));
            match k {
                "ioc" => o.time_in_force = TimeInForce::Ioc,
                "fok" => o.time_in_force = TimeInForce::Fok,
                "gtc" => o.time_in_force = TimeInForce::Gtc,
                "gtd" => {
                    o.time_in_force = TimeInForce::Gtd;
                    o.expire_time_us = num(v);
                }
                "stop" => {
                    o.stop_price = num(v);
                    o.order_type = if o.order_type == OrderType::Market {
                        OrderType::StopMarket
                    } else {
                        OrderType::StopLimit
                    };
                }
                "prot" => o.protection_price = num(v),
                "post" => o.post_only = PostOnly::Reject,
                "reprice" => o.post_only = PostOnly::Reprice,
                "peak" => o.iceberg_peak = num(v),
                "stp" => {
                    o.stp = match v {
                        "newest" => StpMode::CancelNewest,
                        "oldest" => StpMode::CancelOldest,
                        "both" => StpMode::CancelBoth,
                        "dec" => StpMode::Decrement,
                        _ => panic!("{}: stp mode {v}", self.where_),
                    }
                }
                "session" => o.session = num(v),
                "coid" => o.client_order_id = num(v),
                "price" => o.price = num(v),
                _ => panic!("{}: unknown order option {k}", self.where_),
            }
        }
        self.apply(CommandKind::PlaceOrder(o));
    }

    fn check_book(&self, t: &[&str]) {
        let snap = self.engine.l2_snapshot(MARKET, 100).expect("market");
        let fmt = |levels: &[matching_engine::L2Level]| {
            if levels.is_empty() {
                "-".to_string()
            } else {
                levels
                    .iter()
                    .map(|l| format!("{}x{}", l.price, l.qty))
                    .collect::<Vec<_>>()
                    .join(",")
            }
        };
        let got = format!("bids={} asks={}", fmt(&snap.bids), fmt(&snap.asks));
        let want = t[1..].join(" ");
        assert_eq!(got, want, "{}: book", self.where_);
    }

    fn run_line(&mut self, line: &str, expected: &mut Option<Vec<String>>) {
        let t: Vec<&str> = line.split_whitespace().collect();
        match t[0] {
            "setup" => self.setup(&t[1..]),
            "place" => self.place(&t),
            "cancel" => self.apply(CommandKind::Cancel {
                account: account(t[1]),
                market: MARKET,
                order_id: num(t[2]),
            }),
            "amend" => self.apply(CommandKind::Amend {
                account: account(t[1]),
                market: MARKET,
                order_id: num(t[2]),
                new_price: num(t[3]),
                new_qty: num(t[4]),
            }),
            "mass" => self.apply(CommandKind::MassCancel {
                account: account(t[1]),
                market: if t.get(2) == Some(&"all") {
                    None
                } else {
                    Some(MARKET)
                },
            }),
            "disconnect" => self.apply(CommandKind::CancelOnDisconnect {
                account: account(t[1]),
                session: num(t[2]),
            }),
            "deposit" | "withdraw" => {
                let (account, asset, amount) = (account(t[1]), asset(t[2]), num(t[3]));
                self.apply(if t[0] == "deposit" {
                    CommandKind::Deposit {
                        account,
                        asset,
                        amount,
                    }
                } else {
                    CommandKind::Withdraw {
                        account,
                        asset,
                        amount,
                    }
                })
            }
            "halt" => self.apply(CommandKind::Halt { market: MARKET }),
            "resume" => self.apply(CommandKind::Resume { market: MARKET }),
            "auction" => self.apply(CommandKind::StartAuction { market: MARKET }),
            "uncross" => self.apply(CommandKind::Uncross { market: MARKET }),
            "tick" => {
                self.time = num(t[1]) - 1;
                self.apply(CommandKind::Tick);
            }
            // Checks.
            "book" => {
                self.check_book(&t);
                return;
            }
            "bal" => {
                let got = self.engine.balance(account(t[1]), asset(t[2]));
                assert_eq!(got, (num(t[3]), num(t[4])), "{}: balance", self.where_);
                return;
            }
            "feebal" => {
                let got = self.engine.balance(FEE_ACCOUNT, asset(t[1]));
                assert_eq!(got.0, num(t[2]), "{}: fee balance", self.where_);
                return;
            }
            "phase" => {
                let (phase, _, _) = self.engine.market_status(MARKET).expect("market");
                assert_eq!(format!("{phase:?}"), t[1], "{}: phase", self.where_);
                return;
            }
            "last" => {
                let (_, last, _) = self.engine.market_status(MARKET).expect("market");
                assert_eq!(last, num(t[1]), "{}: last price", self.where_);
                return;
            }
            _ => panic!("{}: unknown command {}", self.where_, t[0]),
        }
        *expected = Some(Vec::new());
    }
}

fn run_file(path: &Path) {
    let text = std::fs::read_to_string(path).expect("read scenario");
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let mut engine = Engine::new(EngineConfig {
        fee_account: FEE_ACCOUNT,
    });
    engine.set_full_invariant_checks(true);
    let mut r = Runner {
        engine,
        seq: 0,
        time: 1_000,
        last_events: Vec::new(),
        where_: String::new(),
    };
    // Expected event lines of the last command (None before any command).
    let mut expected: Option<Vec<String>> = None;
    let mut expected_from = String::new();
    let flush = |r: &Runner, expected: &mut Option<Vec<String>>, from: &str| {
        if let Some(want) = expected.take() {
            let got: Vec<String> = r.last_events.iter().filter_map(fmt_event).collect();
            assert_eq!(got, want, "{from}: events");
        }
    };
    for (i, raw) in text.lines().enumerate() {
        let line = strip_comment(raw);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        r.where_ = format!("{name}:{}", i + 1);
        if let Some(ev) = line.strip_prefix('>') {
            expected
                .as_mut()
                .unwrap_or_else(|| panic!("{}: '>' before any command", r.where_))
                .push(ev.trim().to_string());
            continue;
        }
        if !matches!(
            line.split_whitespace().next(),
            Some("book" | "bal" | "feebal" | "phase" | "last")
        ) {
            flush(&r, &mut expected, &expected_from);
            expected_from = r.where_.clone();
        }
        r.run_line(line, &mut expected);
    }
    flush(&r, &mut expected, &expected_from);
    // Every scenario's final state survives export -> import with the same hash.
    let state = r.engine.export_state();
    let back = Engine::import_state(&state).expect("import");
    assert_eq!(
        back.state_hash(),
        r.engine.state_hash(),
        "{name}: state hash"
    );
}

/// Drops a trailing comment that starts with "# " (order ids are written "#N").
fn strip_comment(raw: &str) -> String {
    let trimmed = raw.trim_start();
    if trimmed.starts_with("# ") || trimmed == "#" {
        return String::new();
    }
    match raw.find(" # ") {
        Some(i) => raw[..i].to_string(),
        None => raw.to_string(),
    }
}

#[test]
fn scenarios() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("scenario dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "scenario files missing");
    for f in files {
        run_file(&f);
    }
}

#[test]
fn reject_code_names_used_in_scenarios_are_real() {
    // The scenarios spell codes by their Debug name; keep them tied to the enum.
    assert_eq!(
        format!("{:?}", RejectCode::InsufficientFunds),
        "InsufficientFunds"
    );
    assert_eq!(format!("{:?}", CancelReason::SelfTrade), "SelfTrade");
    assert_eq!(format!("{:?}", MarketPhase::Auction), "Auction");
}
