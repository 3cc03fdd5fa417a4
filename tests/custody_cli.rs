//! `rempart custody …` end to end: runs the real binary.

use std::process::{Command, Output};

use custody::por::SumTree;
use custody::por::bench::{asset_codes, synthetic_liabilities};

fn rempart(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rempart"))
        .args(args)
        .output()
        .expect("rempart runs")
}

fn json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON value on stdout")
}

/// BIP-0032 test vector 1, chain m/0H/1/2H (bitcoin/bips, bip-0032.mediawiki).
#[test]
fn derive_matches_bip32_test_vector_1() {
    let out = json(&rempart(&[
        "custody",
        "derive",
        "--seed",
        "000102030405060708090a0b0c0d0e0f",
        "--path",
        "m/0'/1/2'",
    ]));
    assert_eq!(
        out["xprv"],
        "xprv9z4pot5VBttmtdRTWfWQmoH1taj2axGVzFqSb8C9xaxKymcFzXBDptWmT7FwuEzG3ryjH4ktypQSAewRiNMjANTtpgP4mLTj34bhnZX7UiM"
    );
    assert_eq!(
        out["xpub"],
        "xpub6D4BDPcP2GT577Vvch3R8wDkScZWzQzMMUm3PWbmWvVJrZwQY4VUNgqFJPMM3No2dFDFGTsxxpG5uJh7n7epu4trkrX7x7DogT5Uv6fcLW5"
    );
    // The same path written with h markers.
    let again = json(&rempart(&[
        "custody",
        "derive",
        "--seed",
        "000102030405060708090a0b0c0d0e0f",
        "--path",
        "m/0h/1/2H",
    ]));
    assert_eq!(again, out);
}

#[test]
fn derive_refuses_bad_input_clearly() {
    for (seed, path, want) in [
        ("000102030405060708090a0b0c0d0e0f", "m/0'/x", "step 2"),
        (
            "000102030405060708090a0b0c0d0e0f",
            "0/1",
            "must start with \"m\"",
        ),
        (
            "000102030405060708090a0b0c0d0e0f",
            "m/2147483648",
            "below 2^31",
        ),
        ("00zz", "m", "hexadecimal"),
        ("0011", "m", "16 to 64 bytes"),
    ] {
        let out = rempart(&["custody", "derive", "--seed", seed, "--path", path]);
        assert!(!out.status.success(), "{seed} {path}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{seed} {path}: {stderr}");
    }
    // SLIP-0010 Ed25519 accepts only hardened steps.
    let out = rempart(&[
        "custody",
        "derive",
        "--curve",
        "ed25519",
        "--seed",
        "000102030405060708090a0b0c0d0e0f",
        "--path",
        "m/0'/1",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not hardened"));
    let ok = json(&rempart(&[
        "custody",
        "derive",
        "--curve",
        "ed25519",
        "--seed",
        "000102030405060708090a0b0c0d0e0f",
        "--path",
        "m/0H",
    ]));
    assert_eq!(
        ok["public_key"],
        "8c8a13df77a28f3445213a0f432fde644acaa215fc72dcdf300d5efaa85d350c"
    );
}

#[test]
fn por_bench_prints_one_json_line() {
    let out = rempart(&[
        "custody",
        "por-bench",
        "--accounts",
        "1000",
        "--assets",
        "4",
        "--verifications",
        "20",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let v = json(&out);
    assert_eq!(v["levels"], 10);
    // 10 levels × (32 + 4 × 8) bytes of path plus the header, leaf and root.
    let bytes = v["proof_bytes"].as_u64().unwrap();
    assert!((640..1536).contains(&bytes), "{bytes}");
    assert!(v["build_ms"].is_number() && v["verify_us"].is_number());
}

#[test]
fn verify_proof_accepts_a_good_proof_and_refuses_a_tampered_one() {
    let dir = tempfile::tempdir().unwrap();
    let liabilities = synthetic_liabilities(100, 4, 3);
    let tree = SumTree::build(&asset_codes(4), &liabilities).unwrap();
    let proof = tree.proof(37).unwrap();
    let binary = dir.path().join("proof.bin");
    std::fs::write(&binary, proof.to_bytes()).unwrap();
    let as_json = dir.path().join("proof.json");
    std::fs::write(&as_json, serde_json::to_vec_pretty(&proof).unwrap()).unwrap();
    let root = hex::encode(tree.root());

    for file in [&binary, &as_json] {
        let v = json(&rempart(&[
            "custody",
            "verify-proof",
            file.to_str().unwrap(),
            "--root",
            &root,
        ]));
        assert_eq!(v["verified"], true);
        assert_eq!(v["root"], root.as_str());
        assert_eq!(v["account_id"], liabilities[37].account_id);
        assert_eq!(v["balances"][2], liabilities[37].balances[2] as u64);
        assert_eq!(v["totals"].as_array().unwrap().len(), 4);
    }

    // One balance raised by one minor unit.
    let mut forged = proof.clone();
    forged.balances[1] += 1;
    let bad = dir.path().join("forged.json");
    std::fs::write(&bad, serde_json::to_vec(&forged).unwrap()).unwrap();
    let out = rempart(&["custody", "verify-proof", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("root mismatch"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A good proof checked against another published root.
    let out = rempart(&[
        "custody",
        "verify-proof",
        binary.to_str().unwrap(),
        "--root",
        &"00".repeat(32),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not the published root"));

    // Garbage and missing files.
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"RPOR\x01").unwrap();
    let out = rempart(&["custody", "verify-proof", junk.to_str().unwrap()]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("malformed proof")
    );
    let out = rempart(&[
        "custody",
        "verify-proof",
        dir.path().join("absent").to_str().unwrap(),
    ]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("reading"));
}
