//! `rempart bench-api` end to end: the real binary measures order entry through `OrderStream`,
//! unary `PlaceOrder` and `Echo`, and the disk's `fdatasync` floor, either on a node it starts
//! in its own process or, with `--connect`, on a `rempart demo` already running in another
//! process; it reports one JSON line, and refuses sizes out of range with a clear message.

mod common;

use std::process::{Command, Output};

fn bench(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rempart"));
    command
        .arg("bench-api")
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("REMPART_BENCH_SELL_KEY")
        .env_remove("REMPART_BENCH_BUY_KEY");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("rempart runs")
}

fn assert_figures(report: &serde_json::Value, orders: u64) {
    assert_eq!(report["orders"], orders, "{report}");
    assert!(
        report["orders_per_sec"].as_f64().is_some_and(|r| r > 0.0),
        "{report}"
    );
    let (p50, p99) = (report["p50_us"].as_u64(), report["p99_us"].as_u64());
    assert!(p50.is_some_and(|p| p > 0) && p50 <= p99, "{report}");
    // A round trip over loopback through the whole stack takes at least a microsecond.
    for key in ["unary_place_p50_us", "echo_p50_us"] {
        assert!(
            report[key].as_u64().is_some_and(|v| v > 0),
            "{key}: {report}"
        );
    }
    assert!(report["disk_sync_p50_us"].as_u64().is_some(), "{report}");
}

#[test]
fn bench_measures_a_node_in_its_own_process() {
    let out = bench(
        &[
            "--orders",
            "2000",
            "--connections",
            "2",
            "--window",
            "8",
            "--unary",
            "50",
        ],
        &[],
    );
    let report = common::json_report(&out);
    assert_eq!(report["node"], "in-process", "{report}");
    assert_eq!(report["window"], 8, "{report}");
    assert_figures(&report, 2000);
}

#[test]
fn bench_measures_a_running_demo_node_over_loopback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = common::start_with(dir.path(), |c| {
        c.args([
            "--calls-per-key",
            "1000000",
            "--calls-per-ip",
            "1000000",
            "--orders-per-account",
            "10000000",
            // A node with a single API worker still serves streams and unary calls.
            "--api-threads",
            "1",
        ]);
    });
    let uri = format!("http://{}", node.grpc);
    let (alice, bob) = (node.token("alice"), node.token("bob"));
    let out = bench(
        &[
            "--connect",
            &uri,
            "--orders",
            "2000",
            "--connections",
            "2",
            "--unary",
            "50",
        ],
        &[
            ("REMPART_BENCH_SELL_KEY", &alice),
            ("REMPART_BENCH_BUY_KEY", &bob),
        ],
    );
    let report = common::json_report(&out);
    assert_eq!(report["node"], "connected", "{report}");
    assert_eq!(report["window"], 14, "the default window: {report}");
    assert_figures(&report, 2000);
    // The keys came from the environment: they are never echoed back.
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains(&alice) && !all.contains(&bob));

    // A key the node does not know: the run stops with the node's refusal, not a hang.
    let out = bench(
        &["--connect", &uri, "--orders", "10", "--unary", "1"],
        &[
            ("REMPART_BENCH_SELL_KEY", "rk_forged"),
            ("REMPART_BENCH_BUY_KEY", "rk_forged"),
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("valid authentication credentials")
            && stderr.contains("API key unknown or secret wrong"),
        "{stderr}"
    );
}

#[test]
fn demo_refuses_an_api_thread_count_out_of_range() {
    for (bad, why) in [
        ("0", "between 1 and 256"),
        ("257", "between 1 and 256"),
        ("many", "a whole number"),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = common::demo_command(dir.path())
            .args(["--api-threads", bad])
            .output()
            .expect("run rempart demo");
        assert!(!out.status.success(), "--api-threads {bad} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("invalid value")
                && stderr.contains("--api-threads")
                && stderr.contains(why),
            "{bad}: {stderr}"
        );
    }
}

#[test]
fn bench_refuses_sizes_out_of_range() {
    for (args, expected) in [
        (&["--orders", "0"][..], "--orders must be between 1 and"),
        (
            &["--orders", "3", "--connections", "4"][..],
            "--orders must be at least --connections",
        ),
        (
            &["--connections", "0"][..],
            "--connections must be between 1 and",
        ),
        (
            &["--window", "0"][..],
            "--window must be between 1 and 4096",
        ),
        (
            &["--window", "5000"][..],
            "--window must be between 1 and 4096",
        ),
        (&["--unary", "0"][..], "--unary must be between 1 and"),
    ] {
        let out = bench(args, &[]);
        assert!(!out.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    // `--connect` without the two keys is refused before anything starts.
    let out = bench(&["--connect", "http://127.0.0.1:1"], &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--sell-key") && stderr.contains("--buy-key"),
        "{stderr}"
    );
}
