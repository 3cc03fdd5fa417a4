//! Tidy checks over the whole source tree, run by `cargo test` (in the spirit of TigerBeetle's
//! `tidy.zig` and rust-analyzer's `xtask tidy`): rules that a reviewer would otherwise have to
//! remember.
//!
//! - Every source file of a crate opens with a `//!` module doc saying what it is for.
//! - Money crates never mention `f32`/`f64` outside their benchmark binaries.
//! - No `dbg!`, `todo!`, `unimplemented!` or `#[ignore]` anywhere.

use std::path::{Path, PathBuf};

/// Crates whose `src/` is scanned, relative to the workspace root.
const CRATE_SRC_DIRS: &[&str] = &[
    "src",
    "matching-engine/src",
    "custody/src",
    "hsm/src",
    "kyc-aml/src",
    "settlement/src",
    "proto/src",
];

/// Crates that move money: floating point is banned in their libraries. Benchmark binaries
/// (`src/bin/`) may compute rates and percentiles in floating point.
const MONEY_SRC_DIRS: &[&str] = &["matching-engine/src", "settlement/src", "custody/src"];

/// Directories whose tests are scanned for `#[ignore]` and debugging leftovers too.
const TEST_DIRS: &[&str] = &[
    "tests",
    "matching-engine/tests",
    "custody/tests",
    "hsm/tests",
    "kyc-aml/tests",
    "settlement/tests",
];

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("directory entry is readable").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

fn files_under(dirs: &[&str]) -> Vec<PathBuf> {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in dirs {
        rust_files(&root.join(dir), &mut files);
    }
    files.sort();
    assert!(
        !files.is_empty(),
        "tidy found no source files under {dirs:?}"
    );
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(workspace_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The code of a line with any `//` comment removed; good enough for the tokens we look for,
/// which never appear inside string literals in this project.
fn code_of(line: &str) -> &str {
    match line.find("//") {
        Some(index) => &line[..index],
        None => line,
    }
}

fn has_word(code: &str, word: &str) -> bool {
    code.match_indices(word).any(|(index, _)| {
        let before = code[..index].chars().next_back();
        let after = code[index + word.len()..].chars().next();
        let is_ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !is_ident(before) && !is_ident(after)
    })
}

#[test]
fn every_source_file_opens_with_a_module_doc() {
    let mut missing = Vec::new();
    for file in files_under(CRATE_SRC_DIRS) {
        let text = std::fs::read_to_string(&file).expect("source file is readable");
        let first = text.lines().find(|line| !line.trim().is_empty());
        // Generated code included with `include!` is exempt only when it says so.
        let opens_with_doc = first.is_some_and(|line| {
            line.trim_start().starts_with("//!") || line.contains("@generated")
        });
        if !opens_with_doc {
            missing.push(relative(&file));
        }
    }
    assert!(
        missing.is_empty(),
        "these files do not open with a `//!` module doc saying what they are for: {missing:#?}"
    );
}

#[test]
fn money_crates_never_use_floating_point() {
    let mut offenders = Vec::new();
    for file in files_under(MONEY_SRC_DIRS) {
        let rel = relative(&file);
        if rel.contains("/src/bin/") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("source file is readable");
        for (number, line) in text.lines().enumerate() {
            let code = code_of(line);
            if has_word(code, "f64") || has_word(code, "f32") {
                offenders.push(format!("{rel}:{}: {}", number + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "money is never floating point; use integer minor units or rust_decimal: {offenders:#?}"
    );
}

#[test]
fn no_debugging_leftovers_or_switched_off_tests() {
    let mut dirs = CRATE_SRC_DIRS.to_vec();
    dirs.extend_from_slice(TEST_DIRS);
    let this_file = workspace_root().join("tests").join("tidy.rs");
    let banned = ["dbg!(", "todo!(", "unimplemented!(", "#[ignore"];
    let mut offenders = Vec::new();
    for file in files_under(&dirs) {
        if file == this_file {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("source file is readable");
        for (number, line) in text.lines().enumerate() {
            let code = code_of(line);
            if banned.iter().any(|token| code.contains(token)) {
                offenders.push(format!(
                    "{}:{}: {}",
                    relative(&file),
                    number + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "stubs, debug prints and ignored tests are defects: {offenders:#?}"
    );
}

#[test]
fn word_matching_ignores_identifiers_that_merely_contain_the_word() {
    assert!(has_word("let x: f64 = 1.0;", "f64"));
    assert!(!has_word("let price_f64x = 1;", "f64"));
    assert!(!has_word("fn to_f64() {}", "f64"));
    assert_eq!(code_of("let a = 1; // f64 here"), "let a = 1; ");
}
