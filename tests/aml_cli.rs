//! `rempart aml screen` and `rempart aml match` through the real binary: CSV in, one JSON line
//! out per row, and a malformed list refusing the run with the line that failed.

use std::path::{Path, PathBuf};
use std::process::Command;

fn lists_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("kyc-aml/testdata/lists")
}

fn rempart(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rempart"))
        .args(args)
        .output()
        .expect("rempart runs")
}

fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8(stdout.to_vec())
        .expect("utf-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

#[test]
fn screen_prints_one_json_line_per_query() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("queries.csv");
    std::fs::write(
        &input,
        "customer,full_name,date_of_birth,nationality\n\
         1,\"KRASNOVA, Olga\",1975-09-07,RU\n\
         2,Marie Dubois,1980-01-01,FR\n\
         3,Pavel Testov,,\n",
    )
    .expect("write queries");
    let un = lists_dir().join("un_consolidated_sample.xml");
    let uk = lists_dir().join("uk_sanctions_list.xml");
    let ofac = lists_dir().join("ofac_sdn.csv");
    let output = rempart(&[
        "aml",
        "screen",
        "--list",
        un.to_str().expect("path"),
        "--list",
        uk.to_str().expect("path"),
        "--list",
        ofac.to_str().expect("path"),
        "--input",
        input.to_str().expect("path"),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = json_lines(&output.stdout);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["query"], "KRASNOVA, Olga");
    assert_eq!(lines[0]["alert"], true);
    assert_eq!(lines[0]["hits"][0]["list"], "UK");
    assert_eq!(lines[0]["hits"][0]["entity_id"], "RUS9001");
    assert!(lines[0]["hits"][0]["score"].as_u64().expect("score") >= 850);
    assert!(
        lines[0]["hits"][0]["why"]
            .as_str()
            .expect("why")
            .contains("date of birth")
    );
    assert_eq!(lines[1]["alert"], false);
    assert_eq!(lines[2]["alert"], true);
    assert_eq!(lines[2]["hits"][0]["list"], "OFAC-SDN");
}

#[test]
fn screen_refuses_a_malformed_list_with_its_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let list = dir.path().join("broken.xml");
    let good =
        std::fs::read_to_string(lists_dir().join("un_consolidated_sample.xml")).expect("fixture");
    std::fs::write(&list, good.replace("</ENTITY>", "")).expect("write list");
    let input = dir.path().join("q.csv");
    std::fs::write(&input, "full_name\nX\n").expect("write queries");
    let output = rempart(&[
        "aml",
        "screen",
        "--list",
        list.to_str().expect("path"),
        "--input",
        input.to_str().expect("path"),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("malformed UN consolidated XML at line"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn match_scores_pairs_at_the_threshold() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("pairs.csv");
    std::fs::write(
        &input,
        "name1,name2\n\
         Mohammed Omar,Muhammad Umar\n\
         11420 Corp.,ACME Corp.\n",
    )
    .expect("write pairs");
    let output = rempart(&["aml", "match", "--input", input.to_str().expect("path")]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = json_lines(&output.stdout);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["match"], true);
    assert_eq!(lines[1]["match"], false);
    let strict = rempart(&[
        "aml",
        "match",
        "--input",
        input.to_str().expect("path"),
        "--threshold",
        "1000",
    ]);
    assert_eq!(json_lines(&strict.stdout)[0]["match"], false);
}
