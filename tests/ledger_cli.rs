//! `rempart ledger verify` end to end: runs the real binary on a data directory written by the
//! settlement crate, then on copies damaged in different ways.

use std::path::Path;
use std::process::{Command, Output};

fn rempart(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rempart"))
        .args(args)
        .output()
        .expect("rempart runs")
}

fn sample(dir: &Path, blocks: &str) {
    let out = rempart(&[
        "ledger",
        "sample",
        "--data",
        dir.to_str().unwrap(),
        "--blocks",
        blocks,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn verify(dir: &Path) -> Output {
    rempart(&["ledger", "verify", "--data", dir.to_str().unwrap()])
}

/// Offset of block `height`'s record in blocks.log (records are length-prefixed after an
/// 8-byte file header).
fn record_offset(log: &[u8], height: u64) -> usize {
    let mut offset = 8;
    for _ in 1..height {
        let len = u32::from_le_bytes(log[offset..offset + 4].try_into().unwrap()) as usize;
        offset += 8 + len;
    }
    offset
}

#[test]
fn verify_accepts_a_good_chain_and_replays_balances() {
    let dir = tempfile::tempdir().unwrap();
    sample(dir.path(), "6");
    let out = verify(dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["height"], 6);
    assert_eq!(report["accounts"], 5);
    // Per block after the first: a mint and three applied settlement transfers.
    assert_eq!(report["transfers"], 5 * 4);
}

#[test]
fn verify_names_the_block_with_a_flipped_byte() {
    let dir = tempfile::tempdir().unwrap();
    sample(dir.path(), "5");
    let path = dir.path().join("blocks.log");
    let mut log = std::fs::read(&path).unwrap();
    let at = record_offset(&log, 4) + 8 + 100;
    log[at] ^= 0x20;
    std::fs::write(&path, &log).unwrap();
    let out = verify(dir.path());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("height 4"), "{stderr}");
}

#[test]
fn verify_refuses_a_chain_certified_by_another_consortium() {
    let dir = tempfile::tempdir().unwrap();
    sample(dir.path(), "3");
    // Replace the first validator's certificate with one its CA never signed.
    let path = dir.path().join("genesis.json");
    let mut genesis: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    genesis["validators"][0]["rights"] = serde_json::json!(1);
    std::fs::write(&path, genesis.to_string()).unwrap();
    let out = verify(dir.path());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("validator 1"), "{stderr}");
}

#[test]
fn verify_fails_clearly_on_a_missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = verify(&dir.path().join("absent"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("genesis.json"));
}

#[test]
fn verify_reads_a_validator_data_dir_with_its_genesis_elsewhere() {
    // A rempart-validator keeps its store in <data_dir>/store and its genesis where its
    // configuration says.
    let dir = tempfile::tempdir().unwrap();
    let chain = dir.path().join("chain");
    sample(&chain, "4");
    let data = dir.path().join("data-2");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::rename(&chain, data.join("store")).unwrap();
    let genesis = dir.path().join("genesis.json");
    std::fs::rename(data.join("store/genesis.json"), &genesis).unwrap();
    let out = rempart(&[
        "ledger",
        "verify",
        "--data",
        data.to_str().unwrap(),
        "--genesis",
        genesis.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["height"], 4);
    assert_eq!(report["store"], "embedded");
}

#[test]
fn verify_checks_a_chain_kept_in_postgresql_and_names_a_damaged_block() {
    use settlement::store::BlockStore;
    use settlement::store::pg::PgStore;

    const PG: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";
    let dir = tempfile::tempdir().unwrap();
    sample(dir.path(), "5");
    // The same chain, written into a PostgreSQL schema as a validator would.
    let schema = format!("verify_cli_{}", std::process::id());
    let file = settlement::store::file::FileStore::open_read_only(dir.path()).unwrap();
    let genesis: settlement::membership::GenesisConfig =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("genesis.json")).unwrap())
            .unwrap();
    let mut replica =
        settlement::replica::Replica::open(&genesis, PgStore::connect(PG, &schema).unwrap(), 1)
            .unwrap();
    for height in 1..=file.applied_height().unwrap() {
        replica.commit(file.read(height).unwrap()).unwrap();
    }
    drop(replica);
    let verify_pg = || {
        rempart(&[
            "ledger",
            "verify",
            "--data",
            dir.path().to_str().unwrap(),
            "--postgres",
            PG,
            "--schema",
            &schema,
        ])
    };
    let out = verify_pg();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["height"], 5);
    assert_eq!(report["store"], format!("postgresql schema {schema}"));
    let pg = PgStore::connect(PG, &schema).unwrap();
    pg.corrupt_record_for_test(3, 120).unwrap();
    let out = verify_pg();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("height 3"), "{stderr}");
    pg.drop_schema().unwrap();
}

#[test]
fn testnet_writes_a_consortium_and_refuses_bad_input_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("net");
    let key = "11".repeat(32);
    let out = rempart(&[
        "ledger",
        "testnet",
        "--dir",
        net.to_str().unwrap(),
        "--validators",
        "4",
        "--gate-key",
        &key,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["configs"].as_array().unwrap().len(), 4);
    assert_eq!(printed["api"].as_array().unwrap().len(), 4);
    let genesis: settlement::membership::GenesisConfig =
        serde_json::from_str(&std::fs::read_to_string(net.join("genesis.json")).unwrap()).unwrap();
    genesis.verify().unwrap();
    assert_eq!(genesis.validators.len(), 4);
    assert!(
        genesis.gate_keys.contains(&[0x11; 32]),
        "the extra gate key is listed"
    );
    for n in 1..=4 {
        assert!(net.join(format!("key-{n}.hex")).is_file());
        assert!(net.join(format!("validator-{n}.json")).is_file());
    }
    // Never over an existing consortium; bad keys and sizes are refused with a message.
    let again = rempart(&["ledger", "testnet", "--dir", net.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a genesis.json"));
    let other = dir.path().join("other");
    let bad_key = rempart(&[
        "ledger",
        "testnet",
        "--dir",
        other.to_str().unwrap(),
        "--gate-key",
        "abcd",
    ]);
    assert!(!bad_key.status.success());
    assert!(String::from_utf8_lossy(&bad_key.stderr).contains("32 bytes"));
    let too_many = rempart(&[
        "ledger",
        "testnet",
        "--dir",
        other.to_str().unwrap(),
        "--validators",
        "99",
    ]);
    assert!(!too_many.status.success());
    assert!(String::from_utf8_lossy(&too_many.stderr).contains("--validators must be between"));
}
