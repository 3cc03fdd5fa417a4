//! No input makes the engine panic or break an invariant: commands with arbitrary field
//! values (extreme prices, quantities, amounts, times, ids, market configurations) are
//! applied with the full invariant check on after every command.

use matching_engine::{
    BandAction, Command, CommandKind, Engine, EngineConfig, Event, MarketConfig, NewOrder,
    OrderType, PostOnly, Side, StpMode, TimeInForce, demo_markets,
};
use proptest::prelude::*;

fn wide() -> BoxedStrategy<u64> {
    prop_oneof![
        Just(0u64),
        Just(1u64),
        Just(u64::MAX),
        Just(u64::MAX - 1),
        Just(1u64 << 48),
        90u64..120,
        any::<u64>(),
    ]
    .boxed()
}

fn order() -> BoxedStrategy<NewOrder> {
    (
        (
            1u64..5,
            0u32..5,
            any::<u64>(),
            any::<bool>(),
            0u8..4,
            0u8..4,
        ),
        (wide(), wide(), wide(), wide(), wide()),
        (0u8..3, wide(), 0u8..5, wide()),
    )
        .prop_map(
            |(
                (account, market, client_order_id, buy, ot, tif),
                (price, qty, stop_price, protection_price, expire_time_us),
                (post, iceberg_peak, stp, session),
            )| NewOrder {
                account,
                market,
                client_order_id,
                side: if buy { Side::Buy } else { Side::Sell },
                order_type: [
                    OrderType::Limit,
                    OrderType::Market,
                    OrderType::StopLimit,
                    OrderType::StopMarket,
                ][ot as usize],
                time_in_force: [
                    TimeInForce::Gtc,
                    TimeInForce::Gtd,
                    TimeInForce::Ioc,
                    TimeInForce::Fok,
                ][tif as usize],
                price,
                qty,
                stop_price,
                protection_price,
                expire_time_us,
                post_only: [PostOnly::No, PostOnly::Reject, PostOnly::Reprice][post as usize],
                iceberg_peak,
                stp: [
                    StpMode::None,
                    StpMode::CancelNewest,
                    StpMode::CancelOldest,
                    StpMode::CancelBoth,
                    StpMode::Decrement,
                ][stp as usize],
                session,
            },
        )
        .boxed()
}

fn config() -> BoxedStrategy<MarketConfig> {
    (
        (0u32..6, 0u16..20, 0u16..20, 0u8..25, 0u8..25),
        (wide(), 0u8..25, wide(), wide(), wide(), wide()),
        (
            any::<u32>(),
            any::<bool>(),
            wide(),
            any::<u32>(),
            any::<u16>(),
            any::<u16>(),
        ),
    )
        .prop_map(
            |(
                (market, base_asset, quote_asset, base_decimals, quote_decimals),
                (tick_mantissa, tick_scale, lot_size_base_minor, min_qty, max_qty, max_price),
                (band_bps, halt, reference_price, market_protection_bps, maker, taker),
            )| MarketConfig {
                market,
                base_asset,
                quote_asset,
                base_decimals,
                quote_decimals,
                tick_mantissa,
                tick_scale,
                lot_size_base_minor,
                min_qty,
                max_qty,
                max_price,
                band_bps,
                band_action: if halt {
                    BandAction::Halt
                } else {
                    BandAction::Reject
                },
                reference_price,
                market_protection_bps,
                maker_fee_bps: maker,
                taker_fee_bps: taker,
            },
        )
        .boxed()
}

fn kind() -> BoxedStrategy<CommandKind> {
    prop_oneof![
        8 => order().prop_map(CommandKind::PlaceOrder).boxed(),
        2 => (1u64..5, 0u32..5, wide()).prop_map(|(account, market, order_id)| CommandKind::Cancel { account, market, order_id }),
        2 => (1u64..5, 0u32..5, wide(), wide(), wide()).prop_map(|(account, market, order_id, new_price, new_qty)| {
            CommandKind::Amend { account, market, order_id, new_price, new_qty }
        }),
        1 => (1u64..5, prop::option::of(0u32..5)).prop_map(|(account, market)| CommandKind::MassCancel { account, market }),
        1 => (1u64..5, wide()).prop_map(|(account, session)| CommandKind::CancelOnDisconnect { account, session }),
        2 => (1u64..5, 0u16..20, wide()).prop_map(|(account, asset, amount)| CommandKind::Deposit { account, asset, amount }),
        1 => (1u64..5, 0u16..20, wide()).prop_map(|(account, asset, amount)| CommandKind::Withdraw { account, asset, amount }),
        1 => config().prop_map(CommandKind::CreateMarket),
        1 => (0u32..5, 0u8..4).prop_map(|(market, op)| match op {
            0 => CommandKind::Halt { market },
            1 => CommandKind::Resume { market },
            2 => CommandKind::StartAuction { market },
            _ => CommandKind::Uncross { market },
        }),
        1 => Just(CommandKind::Tick),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_commands_never_panic_or_break_invariants(
        kinds in prop::collection::vec((kind(), 0u64..3, prop_oneof![20 => Just(0u64), 1 => any::<u64>()]), 1..80),
    ) {
        let mut e = Engine::new(EngineConfig { fee_account: 7 });
        e.set_full_invariant_checks(true);
        let mut out = Vec::new();
        let (mut seq, mut time) = (0u64, 1_000u64);
        for m in demo_markets() {
            seq += 1;
            e.apply(&Command { seq, time_us: time, kind: CommandKind::CreateMarket(m) }, &mut out);
        }
        for (kind, dt, jump) in kinds {
            // Mostly well-ordered seq and time; sometimes a wild value.
            seq = if jump == 0 { seq + 1 } else { jump };
            time = time.saturating_add(dt);
            out.clear();
            e.apply(&Command { seq, time_us: time, kind }, &mut out);
            for ev in &out {
                if let Event::Rejected { code, .. } = ev {
                    prop_assert!(!code.message().is_empty());
                }
            }
            // Balance events report what the engine holds.
            for ev in &out {
                if let Event::Balance { account, asset, available, held } = *ev {
                    prop_assert_eq!(e.balance(account, asset), (available, held));
                }
            }
        }
        e.check_invariants().map_err(|err| TestCaseError::fail(err.to_string()))?;
        let back = Engine::import_state(&e.export_state()).map_err(|err| TestCaseError::fail(err.to_string()))?;
        prop_assert_eq!(back.state_hash(), e.state_hash());
    }
}
