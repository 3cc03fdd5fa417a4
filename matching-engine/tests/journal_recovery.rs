//! Recovery in process: a live engine journals through the group-commit writer and takes
//! snapshots; recovery from the directory must give an engine with the live engine's state
//! hash and exported state at the same seq, also when the newest snapshot is damaged.

use std::path::Path;

use matching_engine::codec::encode_state;
use matching_engine::engine::{Engine, EngineConfig};
use matching_engine::journal::{JournalOptions, JournalWriter, WriterOptions};
use matching_engine::recovery::{self, JOURNAL_DIR, RecoveryError, RecoveryOptions, SNAPSHOT_DIR};
use matching_engine::snapshot::SnapshotStore;
use matching_engine::{
    Command, CommandKind, MARKET_CITY_EUR, NewOrder, OrderType, PostOnly, Side, StpMode,
    TimeInForce, demo_markets,
};

const FEE_ACCOUNT: u64 = 1;

fn options() -> RecoveryOptions {
    RecoveryOptions {
        journal: JournalOptions {
            segment_bytes_max: 8 * 1024,
            sync: true,
        },
        snapshots_kept: 3,
        engine: EngineConfig {
            fee_account: FEE_ACCOUNT,
        },
    }
}

/// Deposits, then alternating resting and crossing orders with cancels: trades, fees, holds.
fn stream(n: u64) -> Vec<Command> {
    let mut kinds = vec![CommandKind::CreateMarket(demo_markets()[0])];
    for account in 10..20u64 {
        kinds.push(CommandKind::Deposit {
            account,
            asset: 1,
            amount: 10u64.pow(12),
        });
        kinds.push(CommandKind::Deposit {
            account,
            asset: 2,
            amount: 10u64.pow(10),
        });
    }
    let mut i = 0u64;
    while (kinds.len() as u64) < n {
        i += 1;
        let account = 10 + i % 10;
        let side = if i.is_multiple_of(2) {
            Side::Buy
        } else {
            Side::Sell
        };
        let kind = if i.is_multiple_of(5) {
            CommandKind::Cancel {
                account,
                market: MARKET_CITY_EUR,
                order_id: i / 2,
            }
        } else {
            CommandKind::PlaceOrder(NewOrder {
                account,
                market: MARKET_CITY_EUR,
                client_order_id: i,
                side,
                order_type: OrderType::Limit,
                time_in_force: TimeInForce::Gtc,
                price: 10_000 + (i * 7) % 21 - 10,
                qty: 1 + i % 9,
                stop_price: 0,
                protection_price: 0,
                expire_time_us: 0,
                post_only: PostOnly::No,
                iceberg_peak: 0,
                stp: StpMode::None,
                session: 0,
            })
        };
        kinds.push(kind);
    }
    kinds
        .into_iter()
        .enumerate()
        .map(|(i, kind)| Command {
            seq: i as u64 + 1,
            time_us: 5_000 + i as u64,
            kind,
        })
        .collect()
}

/// Runs the stream through a live engine with journaling and snapshots every
/// `snapshot_every` commands; returns the live engine.
fn run_live(dir: &Path, cmds: &[Command], snapshot_every: u64) -> Engine {
    let r = recovery::recover(dir, &options()).unwrap();
    let mut engine = r.engine;
    let mut writer = JournalWriter::<Command>::spawn(r.journal, WriterOptions::default()).unwrap();
    let mut events = Vec::new();
    let mut last_ticket = None;
    for cmd in cmds {
        assert_eq!(cmd.seq, writer.next_seq());
        engine.apply(cmd, &mut events);
        events.clear();
        last_ticket = Some(writer.submit(*cmd).unwrap());
        if cmd.seq.is_multiple_of(snapshot_every) {
            writer.wait_durable(cmd.seq).unwrap();
            let seq = recovery::take_snapshot(
                &r.snapshots,
                &dir.join(JOURNAL_DIR),
                &engine,
                writer.durable_seq(),
            )
            .unwrap();
            assert_eq!(seq, cmd.seq);
        }
    }
    last_ticket.unwrap().wait().unwrap();
    writer.close().unwrap();
    engine
}

#[test]
fn recovery_reproduces_the_live_engine() {
    let dir = tempfile::tempdir().unwrap();
    let cmds = stream(700);
    let live = run_live(dir.path(), &cmds, 150);
    let r = recovery::recover(dir.path(), &options()).unwrap();
    assert_eq!(r.snapshot_seq, 600);
    assert_eq!(r.replayed, 100);
    assert_eq!(r.engine.last_seq(), 700);
    assert_eq!(r.engine.state_hash(), live.state_hash());
    assert_eq!(r.engine.export_state(), live.export_state());
    // Three snapshots kept; journal segments before the oldest (300) were pruned.
    let store = SnapshotStore::open(&dir.path().join(SNAPSHOT_DIR), 3).unwrap();
    let kept: Vec<u64> = store.list().unwrap().into_iter().map(|(s, _)| s).collect();
    assert_eq!(kept, vec![300, 450, 600]);
    let first =
        matching_engine::journal::list_segments(&dir.path().join(JOURNAL_DIR)).unwrap()[0].0;
    assert!(first > 1 && first <= 301, "first segment starts at {first}");
}

#[test]
fn a_damaged_newest_snapshot_falls_back_and_still_matches() {
    let dir = tempfile::tempdir().unwrap();
    let cmds = stream(500);
    let live = run_live(dir.path(), &cmds, 100);
    let store = SnapshotStore::open(&dir.path().join(SNAPSHOT_DIR), 3).unwrap();
    let (_, newest) = store.list().unwrap().pop().unwrap();
    let mut bytes = std::fs::read(&newest).unwrap();
    let mid = bytes.len() / 2 + 40;
    bytes[mid] ^= 0x10;
    std::fs::write(&newest, &bytes).unwrap();
    let r = recovery::recover(dir.path(), &options()).unwrap();
    assert_eq!(r.skipped_snapshots.len(), 1);
    assert_eq!(r.snapshot_seq, 400);
    assert_eq!(r.engine.state_hash(), live.state_hash());
}

#[test]
fn a_snapshot_whose_hash_disagrees_is_passed_over() {
    let dir = tempfile::tempdir().unwrap();
    let cmds = stream(300);
    let live = run_live(dir.path(), &cmds, 1_000);
    // Forge a snapshot at seq 200 with valid checksums but the wrong state hash.
    let mut engine = Engine::new(EngineConfig {
        fee_account: FEE_ACCOUNT,
    });
    let mut events = Vec::new();
    for cmd in &cmds[..200] {
        engine.apply(cmd, &mut events);
    }
    let mut payload = Vec::new();
    encode_state(&mut payload, &engine.export_state());
    let store = SnapshotStore::open(&dir.path().join(SNAPSHOT_DIR), 3).unwrap();
    store.write(200, &[0xAB; 32], &payload).unwrap();
    let r = recovery::recover(dir.path(), &options()).unwrap();
    assert_eq!(r.snapshot_seq, 0);
    assert_eq!(r.skipped_snapshots.len(), 1);
    assert!(
        r.skipped_snapshots[0]
            .to_string()
            .contains("hashes differently")
    );
    assert_eq!(r.engine.state_hash(), live.state_hash());
}

#[test]
fn snapshots_of_undurable_state_and_journals_behind_snapshots_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cmds = stream(120);
    let mut engine = Engine::new(EngineConfig {
        fee_account: FEE_ACCOUNT,
    });
    let mut events = Vec::new();
    for cmd in &cmds {
        engine.apply(cmd, &mut events);
    }
    let store = SnapshotStore::open(&dir.path().join(SNAPSHOT_DIR), 3).unwrap();
    let journal_dir = dir.path().join(JOURNAL_DIR);
    std::fs::create_dir_all(&journal_dir).unwrap();
    assert!(matches!(
        recovery::take_snapshot(&store, &journal_dir, &engine, 119),
        Err(RecoveryError::NotDurable {
            engine_seq: 120,
            durable_seq: 119
        })
    ));
    // A snapshot at 120 with a journal holding only 1..=50 (written by hand here, as a
    // broken node would): recovery refuses.
    run_live(dir.path(), &cmds[..50], 1_000);
    recovery::take_snapshot(&store, &journal_dir, &engine, 120).unwrap();
    assert!(matches!(
        recovery::recover(dir.path(), &options()),
        Err(RecoveryError::JournalBehindSnapshot {
            journal_seq: 50,
            snapshot_seq: 120
        })
    ));
}

#[test]
fn a_torn_last_record_is_cut_and_the_state_is_the_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let cmds = stream(260);
    run_live(dir.path(), &cmds, 100);
    // Chop the last record in half, as a power cut during its batch would.
    let segments = matching_engine::journal::list_segments(&dir.path().join(JOURNAL_DIR)).unwrap();
    let (_, last) = segments.last().unwrap();
    // Segments are preallocated: the records end where the zero tail begins.
    let bytes = std::fs::read(last).unwrap();
    let mut records = matching_engine::journal::SegmentRecords::new(&bytes, last, true).unwrap();
    assert!(records.by_ref().all(|r| r.is_ok()));
    let len = records.valid_len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let r = recovery::recover(dir.path(), &options()).unwrap();
    assert!(r.torn.is_some());
    assert_eq!(r.engine.last_seq(), 259);
    let mut model = Engine::new(EngineConfig {
        fee_account: FEE_ACCOUNT,
    });
    let mut events = Vec::new();
    for cmd in &cmds[..259] {
        model.apply(cmd, &mut events);
    }
    assert_eq!(r.engine.state_hash(), model.state_hash());
    // The journal goes on from there: the lost command can be journaled again.
    drop(r);
    let live = run_live(dir.path(), &cmds[259..], 1_000);
    assert_eq!(live.last_seq(), 260);
    let r = recovery::recover(dir.path(), &options()).unwrap();
    assert!(r.torn.is_none());
    assert_eq!(r.engine.state_hash(), live.state_hash());
}
