//! Limits turn into reject codes; state export/import round-trips and refuses states the
//! engine could not have produced; the state hash tracks every change.

use matching_engine::limits::OPEN_ORDERS_PER_ACCOUNT_MAX;
use matching_engine::{
    Command, CommandKind, Engine, EngineConfig, Event, NewOrder, OrderType, PostOnly, RejectCode,
    Side, StateError, StpMode, TimeInForce, demo_markets,
};

struct T {
    e: Engine,
    seq: u64,
}

impl T {
    fn new() -> T {
        let mut t = T {
            e: Engine::new(EngineConfig { fee_account: 999 }),
            seq: 0,
        };
        for m in demo_markets() {
            t.run(CommandKind::CreateMarket(m));
        }
        for acc in 1..=3 {
            t.run(CommandKind::Deposit {
                account: acc,
                asset: 2,
                amount: 1_000_000_000,
            });
            t.run(CommandKind::Deposit {
                account: acc,
                asset: 1,
                amount: 1_000_000_000_000,
            });
        }
        t
    }

    fn run(&mut self, kind: CommandKind) -> Vec<Event> {
        self.seq += 1;
        let mut out = Vec::new();
        self.e.apply(
            &Command {
                seq: self.seq,
                time_us: 1_000 + self.seq,
                kind,
            },
            &mut out,
        );
        out
    }

    fn limit(&mut self, account: u64, side: Side, price: u64, qty: u64) -> Vec<Event> {
        self.run(CommandKind::PlaceOrder(NewOrder {
            account,
            market: 1,
            client_order_id: self.seq,
            side,
            order_type: OrderType::Limit,
            time_in_force: TimeInForce::Gtc,
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
}

fn rejected(events: &[Event]) -> Option<RejectCode> {
    events.iter().find_map(|e| match e {
        Event::Rejected { code, .. } => Some(*code),
        _ => None,
    })
}

#[test]
fn open_orders_per_account_are_bounded() {
    let mut t = T::new();
    t.e.reserve_orders(2 * OPEN_ORDERS_PER_ACCOUNT_MAX as usize);
    for i in 0..OPEN_ORDERS_PER_ACCOUNT_MAX as u64 {
        assert_eq!(rejected(&t.limit(1, Side::Buy, 100 + i % 50, 1)), None);
    }
    assert_eq!(
        rejected(&t.limit(1, Side::Buy, 100, 1)),
        Some(RejectCode::TooManyOpenOrders)
    );
    // Another account is not affected; a cancel frees a slot.
    assert_eq!(rejected(&t.limit(2, Side::Buy, 100, 1)), None);
    let out = t.run(CommandKind::Cancel {
        account: 1,
        market: 1,
        order_id: 1,
    });
    assert_eq!(rejected(&out), None);
    assert_eq!(rejected(&t.limit(1, Side::Buy, 100, 1)), None);
    t.e.check_invariants().unwrap();
}

#[test]
fn account_queries_list_open_orders_and_balances() {
    let mut t = T::new();
    t.limit(1, Side::Buy, 100, 5);
    t.limit(2, Side::Sell, 105, 3);
    t.limit(1, Side::Sell, 110, 2);
    let mine = t.e.orders_of(1);
    assert_eq!(
        mine.iter()
            .map(|(m, o)| (*m, o.order_id, o.price, o.qty))
            .collect::<Vec<_>>(),
        vec![(1, 1, 100, 5), (1, 3, 110, 2)]
    );
    assert!(t.e.orders_of(42).is_empty());
    let bals = t.e.balances_of(1);
    let eur = bals.iter().find(|b| b.asset == 2).unwrap();
    // 500 for the price, 1 for the taker fee at 20 bps.
    assert_eq!((eur.available, eur.held), (1_000_000_000 - 501, 501));
    assert_eq!(t.e.balance(1, 2), (eur.available, eur.held));
    assert_eq!(t.e.order_market(3), Some(1));
    assert_eq!(t.e.open_orders(), 3);
}

#[test]
fn stale_seq_and_time_going_backwards_are_refused_without_effect() {
    let mut t = T::new();
    let before = t.e.state_hash();
    let mut out = Vec::new();
    t.e.apply(
        &Command {
            seq: t.seq,
            time_us: 5_000,
            kind: CommandKind::Tick,
        },
        &mut out,
    );
    assert_eq!(rejected(&out), Some(RejectCode::SeqOutOfOrder));
    out.clear();
    t.e.apply(
        &Command {
            seq: t.seq + 1,
            time_us: 1,
            kind: CommandKind::Tick,
        },
        &mut out,
    );
    assert_eq!(rejected(&out), Some(RejectCode::TimeWentBackwards));
    assert_eq!(t.e.state_hash(), before);
}

#[test]
fn bad_deposits_and_unknown_markets_are_refused() {
    let mut t = T::new();
    let out = t.run(CommandKind::Deposit {
        account: 1,
        asset: 99,
        amount: 1,
    });
    assert_eq!(rejected(&out), Some(RejectCode::UnknownAsset));
    let out = t.run(CommandKind::Deposit {
        account: 1,
        asset: 2,
        amount: u64::MAX,
    });
    assert_eq!(rejected(&out), Some(RejectCode::AmountOverflow));
    let out = t.run(CommandKind::CreateMarket(demo_markets()[0]));
    assert_eq!(rejected(&out), Some(RejectCode::MarketExists));
    let mut bad = demo_markets()[0];
    bad.market = 77;
    bad.tick_mantissa = 0;
    let out = t.run(CommandKind::CreateMarket(bad));
    assert_eq!(rejected(&out), Some(RejectCode::InvalidMarketConfig));
    let out = t.run(CommandKind::Halt { market: 42 });
    assert_eq!(rejected(&out), Some(RejectCode::UnknownMarket));
}

#[test]
fn state_round_trips_and_hash_tracks_changes() {
    let mut t = T::new();
    t.limit(1, Side::Buy, 100, 5);
    t.limit(2, Side::Sell, 105, 3);
    t.limit(3, Side::Sell, 100, 2);
    let state = t.e.export_state();
    let back = Engine::import_state(&state).unwrap();
    assert_eq!(back.export_state(), state);
    assert_eq!(back.state_hash(), t.e.state_hash());
    let h = t.e.state_hash();
    t.limit(1, Side::Buy, 99, 1);
    assert_ne!(t.e.state_hash(), h, "a new order changes the hash");
    // Both engines go on identically from the same state.
    let mut a = Engine::import_state(&state).unwrap();
    let mut b = Engine::import_state(&state).unwrap();
    let cmd = Command {
        seq: state.last_seq + 1,
        time_us: state.last_time_us + 1,
        kind: CommandKind::Uncross { market: 1 },
    };
    let (mut oa, mut ob) = (Vec::new(), Vec::new());
    a.apply(&cmd, &mut oa);
    b.apply(&cmd, &mut ob);
    assert_eq!(oa, ob);
    assert_eq!(a.state_hash(), b.state_hash());
}

#[test]
fn import_refuses_states_the_engine_could_not_have_produced() {
    let mut t = T::new();
    t.limit(1, Side::Buy, 100, 5);
    t.limit(2, Side::Sell, 105, 3);
    let good = t.e.export_state();

    // Held funds that no order explains.
    let mut s = good.clone();
    let acc = s.accounts.iter_mut().find(|a| a.account == 1).unwrap();
    acc.balances.iter_mut().find(|b| b.asset == 2).unwrap().held += 1;
    assert!(matches!(
        Engine::import_state(&s),
        Err(StateError::HoldMismatch { .. })
    ));

    // An order id the counters say was never given.
    let mut s = good.clone();
    s.next_order_id = 1;
    assert!(matches!(
        Engine::import_state(&s),
        Err(StateError::InvalidOrder { .. })
    ));

    // A crossed book.
    let mut s = good.clone();
    let m = s.markets.iter_mut().find(|m| m.config.market == 1).unwrap();
    m.bids[0].price = 110;
    assert!(Engine::import_state(&s).is_err());

    // A bid on the ask side.
    let mut s = good.clone();
    let m = s.markets.iter_mut().find(|m| m.config.market == 1).unwrap();
    let bid = m.bids.remove(0);
    m.asks.push(bid);
    assert!(Engine::import_state(&s).is_err());

    // An invalid market configuration.
    let mut s = good;
    s.markets[0].config.lot_size_base_minor = 0;
    assert!(matches!(
        Engine::import_state(&s),
        Err(StateError::InvalidMarket { .. })
    ));
}

/// The reject-code table in docs/matching-engine.md lists every code with its number and
/// message, so clients reading the doc see what the engine sends.
#[test]
fn reject_code_table_in_the_docs_is_complete() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/matching-engine.md");
    let doc = std::fs::read_to_string(path).expect("docs/matching-engine.md");
    for code in RejectCode::ALL {
        let row = format!("| {} | `{:?}` | {} |", code.code(), code, code.message());
        assert!(doc.contains(&row), "missing from the doc: {row}");
    }
}
