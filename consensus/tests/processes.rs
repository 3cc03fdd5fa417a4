//! Four `rempart-validator` processes on 127.0.0.1: one is killed with SIGKILL and restarted,
//! then the proposer of the height in progress is; each restarted validator catches up by
//! block sync, and all end with the same chain holding every transfer once. A second network
//! keeps two validators' chains in PostgreSQL (one of them killed and restarted) and two in the
//! embedded store: both kinds hold the same blocks.

mod common;

use common::{
    VALIDATORS, assert_one_chain, assert_one_file_chain, file_stores, genesis, others_at, setup,
};
use rempart_consensus::config::PostgresStoreConfig;
use settlement::replica::Replica;
use settlement::store::BlockStore;
use settlement::store::file::FileStore;
use settlement::store::pg::PgStore;

const TRANSFERS: u64 = 2_000;

#[test]
fn validators_survive_sigkill_of_a_validator_and_of_the_proposer() {
    let dir = tempfile::tempdir().unwrap();
    let mut net = setup(dir.path(), TRANSFERS, |_, _| {});
    for index in 0..VALIDATORS {
        net.start(index);
    }
    net.wait("all validators commit", |s| others_at(s, usize::MAX, 3));

    // Kill validator 4: the other three keep deciding.
    net.kill(3);
    let at_kill = (0..3).map(|i| net.height(i)).max().unwrap_or(0);
    net.wait("three validators progress", |s| {
        others_at(s, 3, at_kill + 3)
    });
    let target = (0..3).map(|i| net.height(i)).max().unwrap_or(0);
    net.start(3);
    let catch_up = net.wait("validator 4 catches up", |s| {
        s[3].as_ref().is_some_and(|s| s.height >= target)
    });
    eprintln!("validator 4 caught up {target} blocks in {catch_up:?}");

    // Kill the proposer of the height in progress (round 0 proposer of height h is the
    // validator at index h mod 4).
    let next = (0..VALIDATORS).map(|i| net.height(i)).max().unwrap_or(0) + 1;
    let proposer = (next % VALIDATORS as u64) as usize;
    net.kill(proposer);
    let at_kill = (0..VALIDATORS)
        .filter(|i| *i != proposer)
        .map(|i| net.height(i))
        .max()
        .unwrap_or(0);
    net.wait("the others progress without the proposer", |s| {
        others_at(s, proposer, at_kill + 3)
    });
    net.start(proposer);

    // Everyone settles the whole workload and converges.
    let tip = net.settle_and_stop(TRANSFERS);

    // Same block (hence same state hash) at the common height, and a full replay checks out.
    let genesis = genesis(dir.path());
    assert_one_file_chain(dir.path(), tip);
    let replica = Replica::open(
        &genesis,
        FileStore::open_read_only(&dir.path().join("data-1/store")).unwrap(),
        1,
    )
    .unwrap();
    assert_eq!(replica.ledger().transfer_count() as u64, TRANSFERS);
    replica.ledger().check_invariants_full().unwrap();
    drop(replica);

    // A byte flipped inside block 2 of validator 1's store: it refuses to start and names the
    // block. (blocks.log: an 8-byte file header, then records of an 8-byte header — length,
    // CRC32C — and the block.)
    let path = dir.path().join("data-1/store/blocks.log");
    let mut log = std::fs::read(&path).unwrap();
    let mut offset = 8;
    let len = u32::from_le_bytes(log[offset..offset + 4].try_into().unwrap()) as usize;
    offset += 8 + len;
    log[offset + 8 + 40] ^= 0x20;
    std::fs::write(&path, &log).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rempart-validator"))
        .arg("--config")
        .arg(net.config_path(0))
        .output()
        .unwrap();
    assert!(!out.status.success(), "started on a corrupt store");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("height 2"), "{stderr}");
}

const PG: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

#[test]
fn validators_on_postgresql_survive_sigkill_and_agree_with_the_embedded_stores() {
    let dir = tempfile::tempdir().unwrap();
    // Validators 1 and 2 keep their chain in PostgreSQL, 3 and 4 in the embedded store.
    let schema = |index: usize| format!("validator_test_{}_{}", std::process::id(), index + 1);
    let transfers = 600;
    let mut net = setup(dir.path(), transfers, |index, config| {
        if index < 2 {
            config.postgres = Some(PostgresStoreConfig {
                url: PG.into(),
                schema: schema(index),
            });
        }
    });
    for index in 0..VALIDATORS {
        net.start(index);
    }
    net.wait("all validators commit", |s| others_at(s, usize::MAX, 3));
    // SIGKILL a PostgreSQL validator mid-run; it restarts from its applied height and catches
    // up by block sync.
    net.kill(1);
    let at_kill = net.height(0);
    net.wait("three validators progress", |s| {
        others_at(s, 1, at_kill + 2)
    });
    net.start(1);
    let tip = net.settle_and_stop(transfers);

    let pg: Vec<PgStore> = (0..2)
        .map(|i| PgStore::connect(PG, &schema(i)).unwrap())
        .collect();
    let files = file_stores(dir.path(), 2..VALIDATORS);
    let all: Vec<&dyn BlockStore> = pg
        .iter()
        .map(|s| s as &dyn BlockStore)
        .chain(files.iter().map(|s| s as &dyn BlockStore))
        .collect();
    assert_one_chain(&all, tip);
    // The PostgreSQL chain replays from the genesis to the same ledger.
    let genesis = genesis(dir.path());
    let replica = Replica::open(&genesis, PgStore::connect(PG, &schema(1)).unwrap(), 1).unwrap();
    assert_eq!(replica.ledger().transfer_count() as u64, transfers);
    replica.ledger().check_invariants_full().unwrap();
    drop(replica);
    for store in pg {
        store.drop_schema().unwrap();
    }
}
