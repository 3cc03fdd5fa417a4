//! `rempart ledger bench` end to end: the real binary starts a four-validator Malachite cluster
//! on loopback, settles transfers through consensus and reports in one JSON line; out-of-range
//! sizes are refused with a clear message instead of being silently clamped.

mod common;

use std::process::{Command, Output};

fn rempart(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rempart"))
        .args(args)
        .output()
        .expect("rempart runs")
}

#[test]
fn bench_settles_every_transfer_on_a_four_validator_cluster() {
    let out = rempart(&[
        "ledger",
        "bench",
        "--validators",
        "4",
        "--transfers",
        "2000",
    ]);
    let report = common::json_report(&out);
    assert_eq!(report["validators"], 4, "{report}");
    assert_eq!(report["transfers"], 2000, "{report}");
    assert_eq!(report["state_hashes_equal"], true, "{report}");
    assert!(report["blocks"].as_u64().is_some_and(|b| b > 0), "{report}");
    for key in ["transfers_per_sec", "commit_p50_ms", "commit_p99_ms"] {
        let value = report[key].as_f64().unwrap_or(-1.0);
        assert!(value > 0.0, "{key} should be a positive figure: {report}");
    }
    assert!(
        report["commit_p50_ms"].as_f64() <= report["commit_p99_ms"].as_f64(),
        "{report}"
    );
}

#[test]
fn bench_refuses_sizes_out_of_range() {
    for (validators, transfers, expected) in [
        ("0", "10", "--validators must be between 1 and 16"),
        ("17", "10", "--validators must be between 1 and 16"),
        ("4", "0", "--transfers must be between 1 and"),
    ] {
        let out = rempart(&[
            "ledger",
            "bench",
            "--validators",
            validators,
            "--transfers",
            transfers,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "accepted {validators}/{transfers}");
        assert!(stderr.contains(expected), "{stderr}");
    }
}
