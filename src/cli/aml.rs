//! `rempart aml …` subcommands: sanctions screening and name matching from CSV files.
//!
//! - `screen --list FILE [--list FILE …] --input QUERIES.csv [--threshold N]`: loads the lists
//!   (format detected from content; any malformed file refuses the run), screens each row
//!   (`full_name`, optional `date_of_birth`, `nationality`, `gender`, `identifiers`) and prints
//!   one JSON line per query: `{"query", "alert", "hits": [{"list", "entity_id", "name",
//!   "score", "why"}], "snapshot"}`.
//! - `match --input PAIRS.csv [--threshold N]`: scores each `name1,name2` row and prints one
//!   JSON line per pair: `{"name1", "name2", "score", "match", "why"}`.
//!
//! Scores are integers 0..=1000; the default threshold is the screening module's.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use kyc_aml::screening::{
    ListFile, ScreenConfig, Screener, batch, limits::ALERT_THRESHOLD_DEFAULT, match_names,
};

/// The `aml` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Screens queries from a CSV file against sanctions list files; one JSON line per query.
    Screen {
        /// A list file (UN XML, EU FSF XML, OFAC SDN CSV or Advanced XML, UK XML); repeatable.
        #[arg(long = "list", required = true)]
        lists: Vec<PathBuf>,
        /// CSV with a header row and a `full_name` column.
        #[arg(long)]
        input: PathBuf,
        /// Alert threshold, 0..=1000.
        #[arg(long, default_value_t = ALERT_THRESHOLD_DEFAULT)]
        threshold: u16,
    },
    /// Regulator reports.
    Report {
        /// Which report.
        #[command(subcommand)]
        report: ReportCommand,
    },
    /// Scores name pairs from a CSV file (`name1,name2`); one JSON line per pair.
    Match {
        /// CSV with a header row and `name1`, `name2` columns.
        #[arg(long)]
        input: PathBuf,
        /// Match threshold, 0..=1000.
        #[arg(long, default_value_t = ALERT_THRESHOLD_DEFAULT)]
        threshold: u16,
    },
}

/// `aml report …`: regulator reports.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Writes the goAML 5.0.2 XML report (STR or SAR) about a case to stdout.
    Goaml {
        /// The case id.
        #[arg(long = "case")]
        case: u64,
        /// The embedded (SQLite) kyc-aml store.
        #[arg(long)]
        db: PathBuf,
        /// Reporting entity JSON (FIU registration, MLRO, address).
        #[arg(long)]
        entity: PathBuf,
        /// STR (with the case's transaction) or SAR.
        #[arg(long, default_value = "STR")]
        kind: String,
        /// Our reference; defaults to `<KIND>-<case>`.
        #[arg(long)]
        reference: Option<String>,
        /// Why the activity is suspicious.
        #[arg(long)]
        reason: String,
        /// What was done.
        #[arg(long, default_value = "Transfer held; case under investigation")]
        action: String,
        /// goAML report indicator code; repeatable.
        #[arg(long = "indicator", required = true)]
        indicators: Vec<String>,
    },
}

/// Runs one subcommand.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Screen {
            lists,
            input,
            threshold,
        } => screen(&lists, &input, threshold),
        Command::Match { input, threshold } => match_pairs(&input, threshold),
        Command::Report {
            report:
                ReportCommand::Goaml {
                    case,
                    db,
                    entity,
                    kind,
                    reference,
                    reason,
                    action,
                    indicators,
                },
        } => {
            use kyc_aml::goaml::{ReportKind, ReportRequest, report_from_sqlite};
            let kind = match kind.to_ascii_uppercase().as_str() {
                "STR" => ReportKind::Str,
                "SAR" => ReportKind::Sar,
                other => anyhow::bail!("--kind must be STR or SAR, not {other:?}"),
            };
            let entity =
                std::fs::read(&entity).with_context(|| format!("reading {}", entity.display()))?;
            let now_us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_micros() as i64;
            let req = ReportRequest {
                kind,
                entity_reference: reference
                    .unwrap_or_else(|| format!("{kind:?}-{case}").to_uppercase()),
                submitted_at_us: now_us,
                reason,
                action,
                indicators,
            };
            let rt = tokio::runtime::Builder::new_current_thread().build()?;
            match rt.block_on(report_from_sqlite(&db, case, &entity, &req))? {
                Ok(xml) => print!("{xml}"),
                Err(r) => anyhow::bail!("report refused: {r}"),
            }
            Ok(())
        }
    }
}

fn check_threshold(threshold: u16) -> anyhow::Result<()> {
    anyhow::ensure!(threshold <= 1000, "threshold {threshold} is above 1000");
    Ok(())
}

fn screen(lists: &[PathBuf], input: &PathBuf, threshold: u16) -> anyhow::Result<()> {
    check_threshold(threshold)?;
    let mut files = Vec::with_capacity(lists.len());
    for path in lists {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        files.push(ListFile {
            label: path.display().to_string(),
            bytes,
        });
    }
    let screener = Screener::from_files(
        &files,
        ScreenConfig {
            alert_threshold: threshold,
        },
    )?;
    let queries_csv =
        std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let queries = batch::read_queries(&queries_csv)
        .with_context(|| format!("reading queries from {}", input.display()))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for query in &queries {
        let result = screener.screen(query);
        let hits: Vec<serde_json::Value> = result
            .hits
            .iter()
            .map(|hit| {
                serde_json::json!({
                    "list": hit.list,
                    "entity_id": hit.entity_id,
                    "name": hit.name,
                    "score": hit.score,
                    "basis": hit.basis,
                    "why": hit.why,
                })
            })
            .collect();
        let line = serde_json::json!({
            "query": query.full_name,
            "alert": result.alert,
            "hits": hits,
            "notes": result.notes,
            "snapshot": result.snapshot.content_sha256,
        });
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}

fn match_pairs(input: &PathBuf, threshold: u16) -> anyhow::Result<()> {
    check_threshold(threshold)?;
    let pairs_csv = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let pairs = batch::read_pairs(&pairs_csv)
        .with_context(|| format!("reading pairs from {}", input.display()))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (first, second) in &pairs {
        let scored = match_names(first, second);
        let line = serde_json::json!({
            "name1": first,
            "name2": second,
            "score": scored.score,
            "match": scored.score >= threshold,
            "why": scored.why,
        });
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}
