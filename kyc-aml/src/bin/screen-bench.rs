//! Screening benchmark binary (not a test): latency of `Screener::screen` against a large
//! synthetic list, and a `screen` mode with the same CSV-in / JSON-lines-out contract as
//! `rempart aml screen`, so the quality benchmark (`kyc-aml/bench/ssb_eval.py`) can run against
//! a release build of this crate alone.
//!
//! `screen-bench perf --un UN.xml [--names 80000] [--queries 5000] [--seed 1]`
//!   builds a list of at least `--names` entries from the UN list by seeded recombination and
//!   perturbation of its name tokens (the real entries included), then screens `--queries`
//!   queries (half perturbed listed names, half recombined names that are mostly not listed)
//!   one after another on one thread and prints p50/p90/p99/max latency.
//! `screen-bench screen --list FILE [--list FILE …] --input QUERIES.csv [--threshold N]`
//!
//! Floating point appears here only for timing statistics.

use std::io::Write;
use std::time::Instant;

use kyc_aml::screening::{
    Entry, ListFile, ListSnapshot, NameKind, PartialDate, Query, ScreenConfig, Screener,
    SubjectKind, batch, limits::ALERT_THRESHOLD_DEFAULT,
};

/// SplitMix64: a seeded generator, so a run is reproduced from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn args_all(args: &[String], name: &str) -> Vec<String> {
    args.iter()
        .enumerate()
        .filter(|(_, a)| *a == name)
        .filter_map(|(i, _)| args.get(i + 1).cloned())
        .collect()
}

/// One character changed, dropped, doubled or swapped: the edits names suffer in transit.
fn perturb(token: &str, rng: &mut Rng) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    if chars.len() < 4 {
        return token.to_owned();
    }
    let i = 1 + rng.below(chars.len() - 2);
    match rng.below(4) {
        0 => chars[i] = *rng.pick(&['a', 'e', 'i', 'o', 'u', 'y']),
        1 => {
            chars.remove(i);
        }
        2 => chars.insert(i, chars[i]),
        _ => chars.swap(i, i + 1),
    }
    chars.into_iter().collect()
}

fn synthetic(base: &[Entry], target: usize, rng: &mut Rng) -> Vec<Entry> {
    let mut given: Vec<String> = Vec::new();
    let mut family: Vec<String> = Vec::new();
    let mut companies: Vec<String> = Vec::new();
    for entry in base {
        for name in &entry.names {
            if name.kind == NameKind::OriginalScript {
                continue;
            }
            let tokens: Vec<&str> = name.full.split_whitespace().collect();
            if entry.kind == SubjectKind::Individual {
                if let Some((first, rest)) = tokens.split_first() {
                    given.push((*first).to_owned());
                    family.extend(rest.iter().map(|t| (*t).to_owned()));
                }
            } else {
                companies.extend(tokens.iter().map(|t| (*t).to_owned()));
            }
        }
    }
    let mut entries: Vec<Entry> = base.to_vec();
    let mut n = 0u64;
    while entries.len() < target {
        n += 1;
        let individual = rng.below(10) < 8 || companies.is_empty();
        let kind = if individual {
            SubjectKind::Individual
        } else {
            SubjectKind::Entity
        };
        let mut entry = Entry::new("SYNTH", &format!("S{n}"), kind);
        for alias in 0..1 + rng.below(3) {
            let mut tokens: Vec<String> = Vec::new();
            if individual {
                tokens.push(rng.pick(&given).clone());
                for _ in 0..1 + rng.below(3) {
                    tokens.push(rng.pick(&family).clone());
                }
            } else {
                for _ in 0..2 + rng.below(3) {
                    tokens.push(rng.pick(&companies).clone());
                }
            }
            if rng.below(3) == 0 {
                let i = rng.below(tokens.len());
                tokens[i] = perturb(&tokens[i], rng);
            }
            let kind = if alias == 0 {
                NameKind::Primary
            } else {
                NameKind::Alias
            };
            entry.add_name(&tokens.join(" "), kind);
        }
        if individual {
            let year = 1940 + rng.below(60);
            if let Some(date) = PartialDate::parse(&format!("{year}")) {
                entry.dates_of_birth.push(date);
            }
        }
        entries.push(entry);
    }
    entries
}

/// This thread's on-CPU time in nanoseconds (Linux `schedstat`), so that latency can be told
/// apart from time spent waiting for a core on a shared machine; `None` elsewhere.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn percentile(sorted_us: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * (sorted_us.len() - 1) as f64).round() as usize;
    sorted_us[rank.min(sorted_us.len() - 1)]
}

fn perf(args: &[String]) -> Result<(), String> {
    let un = arg(args, "--un").ok_or("--un PATH is required")?;
    let names: usize = arg(args, "--names")
        .map_or(Ok(80_000), |v| v.parse())
        .map_err(|e| format!("--names: {e}"))?;
    let queries: usize = arg(args, "--queries")
        .map_or(Ok(5_000), |v| v.parse())
        .map_err(|e| format!("--queries: {e}"))?;
    let seed: u64 = arg(args, "--seed")
        .map_or(Ok(1), |v| v.parse())
        .map_err(|e| format!("--seed: {e}"))?;
    let bytes = std::fs::read(&un).map_err(|e| format!("{un}: {e}"))?;
    let base = ListSnapshot::load(&[ListFile {
        label: un.clone(),
        bytes,
    }])
    .map_err(|e| e.to_string())?;
    let mut rng = Rng(seed);
    let entries = synthetic(base.entries(), names, &mut rng);
    let total_names: usize = entries.iter().map(|e| e.names.len()).sum();
    let built = Instant::now();
    let snapshot =
        ListSnapshot::from_entries("synthetic", entries.clone()).map_err(|e| e.to_string())?;
    let screener = Screener::new(snapshot, ScreenConfig::default());
    let build_ms = built.elapsed().as_secs_f64() * 1e3;

    let mut batch: Vec<Query> = Vec::with_capacity(queries);
    for i in 0..queries {
        let name = if i % 2 == 0 {
            let entry = rng.pick(&entries);
            let name = &rng.pick(&entry.names).full;
            let tokens: Vec<String> = name
                .split_whitespace()
                .map(|t| {
                    if rng.below(3) == 0 {
                        perturb(t, &mut rng)
                    } else {
                        t.to_owned()
                    }
                })
                .collect();
            tokens.join(" ")
        } else {
            let a = &rng.pick(&entries).names[0].full;
            let b = &rng.pick(&entries).names[0].full;
            let first = a.split_whitespace().next().unwrap_or("");
            let last = b.split_whitespace().last().unwrap_or("");
            format!("{first} {last} {}", perturb(last, &mut rng))
        };
        batch.push(Query::name(&name));
    }
    let mut latencies: Vec<f64> = Vec::with_capacity(queries);
    let mut alerts = 0usize;
    // Scheduler statistics have tick resolution per query, but their sum over the run is exact
    // enough for the mean on-CPU time, which tells work from waiting for a shared core.
    let cpu_before = thread_cpu_ns();
    for query in &batch {
        let started = Instant::now();
        let result = screener.screen(query);
        latencies.push(started.elapsed().as_secs_f64() * 1e6);
        alerts += usize::from(result.alert);
    }
    if let (Some(before), Some(after)) = (cpu_before, thread_cpu_ns()) {
        println!(
            "{{\"on_cpu_mean_us\":{:.0}}}",
            after.saturating_sub(before) as f64 / 1e3 / queries.max(1) as f64
        );
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "{{\"entries\":{},\"names\":{},\"index_build_ms\":{:.0},\"queries\":{},\"alerts\":{},\"p50_us\":{:.0},\"p90_us\":{:.0},\"p99_us\":{:.0},\"max_us\":{:.0},\"seed\":{}}}",
        entries.len(),
        total_names,
        build_ms,
        queries,
        alerts,
        percentile(&latencies, 50.0),
        percentile(&latencies, 90.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(0.0),
        seed
    );
    Ok(())
}

fn screen(args: &[String]) -> Result<(), String> {
    let lists = args_all(args, "--list");
    let input = arg(args, "--input").ok_or("--input CSV is required")?;
    let threshold: u16 = arg(args, "--threshold")
        .map_or(Ok(ALERT_THRESHOLD_DEFAULT), |v| v.parse())
        .map_err(|e| format!("--threshold: {e}"))?;
    let mut files = Vec::new();
    for path in lists {
        let bytes = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
        files.push(ListFile { label: path, bytes });
    }
    let screener = Screener::from_files(
        &files,
        ScreenConfig {
            alert_threshold: threshold,
        },
    )
    .map_err(|e| e.to_string())?;
    let csv = std::fs::read(&input).map_err(|e| format!("{input}: {e}"))?;
    let queries = batch::read_queries(&csv).map_err(|e| e.to_string())?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for query in &queries {
        let result = screener.screen(query);
        let hits: Vec<serde_json::Value> = result
            .hits
            .iter()
            .map(|h| serde_json::json!({"list": h.list, "entity_id": h.entity_id, "name": h.name, "score": h.score, "why": h.why}))
            .collect();
        let line =
            serde_json::json!({"query": query.full_name, "alert": result.alert, "hits": hits});
        writeln!(out, "{line}").map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let outcome = match args.get(1).map(String::as_str) {
        Some("perf") => perf(&args),
        Some("screen") => screen(&args),
        // Accept the CLI's shape too: `screen-bench aml screen …`.
        Some("aml") if args.get(2).map(String::as_str) == Some("screen") => screen(&args),
        _ => Err("usage: screen-bench perf --un UN.xml [--names N] [--queries N] [--seed N] | screen --list FILE --input CSV [--threshold N]".to_owned()),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
