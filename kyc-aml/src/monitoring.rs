//! Transaction monitoring: rules over sliding windows per customer and per counterparty,
//! evaluated on every transfer before settlement. Each rule that fires adds its score with a
//! reason; the total maps to approve / review / reject.
//!
//! Rules are configuration (JSON, see `docs/kyc-aml-formats.md`), versioned by a version id
//! and the SHA-256 of their normalised content; every decision names both. Evaluation is a
//! pure function of the rule set, the history and the transfer; time comes in with the
//! transfer.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::customer::{Activity, CustomerId, TimestampUs};
use crate::limits::{
    COUNTERPARTIES_PER_CUSTOMER_MAX, FIELD_LEN_MAX, HISTORY_PER_CUSTOMER_MAX,
    RULE_CONFIG_BYTES_MAX, RULE_SCORE_MAX, RULE_WINDOW_US_MAX, RULES_MAX,
};
use crate::reject::{Refusal, Reject};
use crate::transfer::{CounterpartyKind, Direction, Transfer};
use crate::validate::{country_ok, field_ok};

/// Which history a velocity rule counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every transfer of the customer.
    Customer,
    /// Only the customer's transfers with the same counterparty.
    Counterparty,
}

/// What a rule looks for. Amounts are EUR-equivalent minor units, windows seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RuleParams {
    /// One transfer at or above a threshold.
    LargeTransfer {
        /// Threshold.
        threshold_eur_minor: u64,
    },
    /// Several transfers just under a threshold within a window (including this one).
    Structuring {
        /// The threshold being avoided.
        threshold_eur_minor: u64,
        /// How far under it counts as "just under", in basis points of the threshold.
        margin_bp: u16,
        /// Window.
        window_s: u64,
        /// How many such transfers fire the rule.
        min_count: u32,
    },
    /// Too many transfers, or too much, within a window (including this one).
    Velocity {
        /// Per customer or per counterparty.
        scope: Scope,
        /// Window.
        window_s: u64,
        /// Fires above this many transfers.
        count_max: u32,
        /// Fires above this sum.
        amount_max_eur_minor: u64,
    },
    /// Money leaving soon after it came in.
    RapidInOut {
        /// Window.
        window_s: u64,
        /// Least incoming sum that counts.
        min_in_eur_minor: u64,
        /// Fires when outgoing (including this one) reaches this share of incoming.
        ratio_bp: u16,
    },
    /// Round amounts (a multiple of a unit) at or above a floor.
    RoundAmount {
        /// The unit, e.g. 100_000 for whole thousands of euros.
        unit_eur_minor: u64,
        /// Floor.
        min_eur_minor: u64,
    },
    /// A counterparty in a listed jurisdiction (its country or a travel-rule address).
    HighRiskJurisdiction {
        /// ISO 3166-1 alpha-2 codes.
        countries: BTreeSet<String>,
    },
    /// A transfer to a self-hosted address above a threshold without proof of control.
    SelfHostedUnverified {
        /// EUR 1,000 in TFR 2023/1113: 100_000.
        threshold_eur_minor: u64,
    },
    /// The first transfer to a counterparty above a threshold.
    NewCounterparty {
        /// Threshold.
        threshold_eur_minor: u64,
    },
}

impl RuleParams {
    /// Stable numeric code of the rule kind (in decision records).
    pub fn kind_code(&self) -> u8 {
        match self {
            RuleParams::LargeTransfer { .. } => 1,
            RuleParams::Structuring { .. } => 2,
            RuleParams::Velocity { .. } => 3,
            RuleParams::RapidInOut { .. } => 4,
            RuleParams::RoundAmount { .. } => 5,
            RuleParams::HighRiskJurisdiction { .. } => 6,
            RuleParams::SelfHostedUnverified { .. } => 7,
            RuleParams::NewCounterparty { .. } => 8,
        }
    }

    fn window_s(&self) -> Option<u64> {
        match self {
            RuleParams::Structuring { window_s, .. }
            | RuleParams::Velocity { window_s, .. }
            | RuleParams::RapidInOut { window_s, .. } => Some(*window_s),
            _ => None,
        }
    }
}

/// One rule: an id, the score it adds when it fires, and what it looks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Stable id, unique in the set (named in reasons).
    pub id: String,
    /// Score added when it fires.
    pub score: u32,
    /// What it looks for.
    pub params: RuleParams,
}

/// The configuration document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Version id chosen by compliance, e.g. "2026-11-01.1".
    pub version: String,
    /// Total score at or above which a transfer is held for review.
    pub review_score: u32,
    /// Total score at or above which a transfer is rejected.
    pub reject_score: u32,
    /// The rules.
    pub rules: Vec<Rule>,
}

/// A validated rule configuration with its content hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSet {
    config: RuleConfig,
    content_hash: [u8; 32],
}

impl RuleSet {
    /// Parses and validates a JSON rule configuration.
    pub fn from_json(bytes: &[u8]) -> Result<RuleSet, Refusal> {
        if bytes.len() > RULE_CONFIG_BYTES_MAX {
            return Err(Refusal::new(
                Reject::RuleConfigTooLarge,
                format!("{} bytes", bytes.len()),
            ));
        }
        let config: RuleConfig = serde_json::from_slice(bytes)
            .map_err(|e| Refusal::new(Reject::RuleConfigMalformed, e.to_string()))?;
        RuleSet::new(config)
    }

    /// Validates a configuration and computes its content hash: SHA-256 of its normalised JSON
    /// (fields in declaration order, no whitespace), so formatting changes keep the hash and
    /// any change of substance changes it.
    pub fn new(config: RuleConfig) -> Result<RuleSet, Refusal> {
        if !field_ok(&config.version) || config.version.len() > 64 {
            return Err(Refusal::new(Reject::RuleVersionInvalid, "version"));
        }
        if config.review_score == 0 || config.review_score > config.reject_score {
            return Err(Refusal::new(
                Reject::ScoreThresholdsInvalid,
                "0 < review_score <= reject_score",
            ));
        }
        if config.rules.len() > RULES_MAX {
            return Err(Refusal::new(
                Reject::TooManyRules,
                format!("{}", config.rules.len()),
            ));
        }
        let mut ids = HashSet::new();
        for r in &config.rules {
            let bad = |what: &str| Refusal::new(Reject::RuleInvalid, format!("{}: {what}", r.id));
            if !field_ok(&r.id) || r.id.len() > 64 {
                return Err(Refusal::new(Reject::RuleInvalid, "rule id"));
            }
            if !ids.insert(r.id.as_str()) {
                return Err(Refusal::new(Reject::DuplicateRuleId, r.id.clone()));
            }
            if r.score == 0 || r.score > RULE_SCORE_MAX {
                return Err(bad("score out of range"));
            }
            if let Some(w) = r.params.window_s()
                && (w == 0 || (w as i128) * 1_000_000 > RULE_WINDOW_US_MAX as i128)
            {
                return Err(bad("window_s out of range"));
            }
            match &r.params {
                RuleParams::LargeTransfer {
                    threshold_eur_minor: t,
                }
                | RuleParams::SelfHostedUnverified {
                    threshold_eur_minor: t,
                }
                | RuleParams::NewCounterparty {
                    threshold_eur_minor: t,
                } => {
                    if *t == 0 {
                        return Err(bad("threshold is zero"));
                    }
                }
                RuleParams::Structuring {
                    threshold_eur_minor,
                    margin_bp,
                    min_count,
                    ..
                } => {
                    if *threshold_eur_minor == 0
                        || *margin_bp == 0
                        || *margin_bp > 10_000
                        || *min_count < 2
                    {
                        return Err(bad("threshold, margin_bp or min_count"));
                    }
                }
                RuleParams::Velocity {
                    count_max,
                    amount_max_eur_minor,
                    ..
                } => {
                    if *count_max == 0 || *amount_max_eur_minor == 0 {
                        return Err(bad("count_max or amount_max is zero"));
                    }
                }
                RuleParams::RapidInOut {
                    min_in_eur_minor,
                    ratio_bp,
                    ..
                } => {
                    if *min_in_eur_minor == 0 || *ratio_bp == 0 {
                        return Err(bad("min_in or ratio_bp is zero"));
                    }
                }
                RuleParams::RoundAmount { unit_eur_minor, .. } => {
                    if *unit_eur_minor == 0 {
                        return Err(bad("unit is zero"));
                    }
                }
                RuleParams::HighRiskJurisdiction { countries } => {
                    if countries.is_empty() || countries.iter().any(|c| !country_ok(c)) {
                        return Err(bad("countries"));
                    }
                }
            }
        }
        let normalised = serde_json::to_vec(&config)
            .map_err(|e| Refusal::new(Reject::RuleConfigMalformed, e.to_string()))?;
        let content_hash = Sha256::digest(&normalised).into();
        Ok(RuleSet {
            config,
            content_hash,
        })
    }

    /// The version id.
    pub fn version(&self) -> &str {
        &self.config.version
    }

    /// SHA-256 of the normalised configuration.
    pub fn content_hash(&self) -> [u8; 32] {
        self.content_hash
    }

    /// The configuration.
    pub fn config(&self) -> &RuleConfig {
        &self.config
    }

    /// Maps a total score to a verdict.
    pub fn verdict(&self, score: u32) -> Verdict {
        if score >= self.config.reject_score {
            Verdict::Reject
        } else if score >= self.config.review_score {
            Verdict::Review
        } else {
            Verdict::Approve
        }
    }

    /// A sensible default set for the demo and the benchmark (EUR thresholds).
    pub fn default_rules() -> RuleSet {
        let json = include_str!("../testdata/rules/default.json");
        match RuleSet::from_json(json.as_bytes()) {
            Ok(r) => r,
            // The file ships with the crate and is checked by a unit test.
            Err(e) => panic!("bundled default rules are invalid: {e}"),
        }
    }
}

/// What monitoring says of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Below the review score.
    Approve,
    /// At or above the review score.
    Review,
    /// At or above the reject score.
    Reject,
}

/// One rule that fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleHit {
    /// The rule's id.
    pub rule_id: String,
    /// Its kind code.
    pub kind: u8,
    /// The score it added.
    pub score: u32,
    /// What it saw (numbers only, no personal data).
    pub detail: String,
}

/// The evaluation of one transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// Sum of the scores of the rules that fired.
    pub score: u32,
    /// The rules that fired, in configuration order.
    pub hits: Vec<RuleHit>,
    /// The verdict for `score`.
    pub verdict: Verdict,
}

#[derive(Debug, Clone)]
struct Entry {
    at_us: TimestampUs,
    activity: u8,
    amount_eur_minor: u64,
    direction: Direction,
    counterparty: String,
}

/// One customer's recent transfers (at most 30 days, at most `HISTORY_PER_CUSTOMER_MAX`) and
/// the counterparties they have dealt with.
#[derive(Debug, Clone, Default)]
pub struct History {
    entries: VecDeque<Entry>,
    known_counterparties: HashSet<String>,
}

impl History {
    /// Whether there is room for one more transfer.
    pub fn is_full(&self) -> bool {
        self.entries.len() >= HISTORY_PER_CUSTOMER_MAX
    }

    /// Number of transfers kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sum and count of transfers in `(now - window, now]` matching `pred`.
    fn window(
        &self,
        now: TimestampUs,
        window_us: i64,
        mut pred: impl FnMut(&Entry) -> bool,
    ) -> (u64, u32) {
        let from = now.saturating_sub(window_us);
        let mut sum = 0u64;
        let mut count = 0u32;
        for e in &self.entries {
            if e.at_us > from && e.at_us <= now && pred(e) {
                sum = sum.saturating_add(e.amount_eur_minor);
                count += 1;
            }
        }
        (sum, count)
    }

    fn record(&mut self, t: &Transfer, now: TimestampUs) {
        let oldest = now.saturating_sub(RULE_WINDOW_US_MAX);
        while self.entries.front().is_some_and(|e| e.at_us <= oldest) {
            self.entries.pop_front();
        }
        if self.entries.len() < HISTORY_PER_CUSTOMER_MAX {
            self.entries.push_back(Entry {
                at_us: now,
                activity: t.activity as u8,
                amount_eur_minor: t.amount_eur_minor,
                direction: t.direction,
                counterparty: t.counterparty.key.clone(),
            });
        }
        if self.known_counterparties.len() < COUNTERPARTIES_PER_CUSTOMER_MAX {
            self.known_counterparties.insert(t.counterparty.key.clone());
        }
    }
}

fn window_us(s: u64) -> i64 {
    (s as i64).saturating_mul(1_000_000)
}

fn scaled(amount: u64, bp: u16) -> u128 {
    u128::from(amount) * u128::from(bp)
}

/// The monitoring state: one history per customer. The gate's limit checks sum the same
/// history per activity and direction, so limits and rules see the same transfers.
#[derive(Debug, Default)]
pub struct Monitor {
    all: HashMap<CustomerId, History>,
}

impl Monitor {
    /// Empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the customer's history has room for one more transfer.
    pub fn history_full(&self, customer: CustomerId) -> bool {
        self.all.get(&customer).is_some_and(History::is_full)
    }

    /// Sum of the customer's recorded transfers of one activity and direction in
    /// `(now - window_us, now]`.
    pub fn sum_in_window(
        &self,
        customer: CustomerId,
        activity: Activity,
        direction: Direction,
        now: TimestampUs,
        window_us: i64,
    ) -> u64 {
        self.all.get(&customer).map_or(0, |h| {
            h.window(now, window_us, |e| {
                e.activity == activity as u8 && e.direction == direction
            })
            .0
        })
    }

    /// Number of customers with a history.
    pub fn customers(&self) -> usize {
        self.all.len()
    }

    /// Records a transfer that went through (approved, or released after review).
    pub fn record(&mut self, t: &Transfer, now: TimestampUs) {
        self.all.entry(t.customer).or_default().record(t, now);
    }

    /// Evaluates every rule on `t` at `now` against the history; changes nothing.
    pub fn evaluate(&self, rules: &RuleSet, t: &Transfer, now: TimestampUs) -> Evaluation {
        let empty = History::default();
        let h = self.all.get(&t.customer).unwrap_or(&empty);
        let amount = t.amount_eur_minor;
        let mut hits = Vec::new();
        for rule in &rules.config.rules {
            let fired: Option<String> = match &rule.params {
                RuleParams::LargeTransfer { threshold_eur_minor } => {
                    (amount >= *threshold_eur_minor).then(|| format!("amount {amount} >= {threshold_eur_minor}"))
                }
                RuleParams::Structuring { threshold_eur_minor, margin_bp, window_s, min_count } => {
                    let t_ = *threshold_eur_minor;
                    // "Just under": in [threshold * (1 - margin), threshold).
                    let in_band = |a: u64| {
                        a < t_ && u128::from(a) * 10_000 >= u128::from(t_) * u128::from(10_000 - margin_bp)
                    };
                    if in_band(amount) {
                        let (_, n) = h.window(now, window_us(*window_s), |e| in_band(e.amount_eur_minor));
                        let n = n + 1;
                        (n >= *min_count).then(|| format!("{n} transfers just under {t_} in {window_s}s"))
                    } else {
                        None
                    }
                }
                RuleParams::Velocity { scope, window_s, count_max, amount_max_eur_minor } => {
                    let (sum, n) = h.window(now, window_us(*window_s), |e| match scope {
                        Scope::Customer => true,
                        Scope::Counterparty => e.counterparty == t.counterparty.key,
                    });
                    let (sum, n) = (sum.saturating_add(amount), n + 1);
                    (n > *count_max || sum > *amount_max_eur_minor)
                        .then(|| format!("{n} transfers, sum {sum} in {window_s}s"))
                }
                RuleParams::RapidInOut { window_s, min_in_eur_minor, ratio_bp } => {
                    if t.direction == Direction::Outgoing {
                        let w = window_us(*window_s);
                        let (inn, _) = h.window(now, w, |e| e.direction == Direction::Incoming);
                        let (out, _) = h.window(now, w, |e| e.direction == Direction::Outgoing);
                        let out = out.saturating_add(amount);
                        (inn >= *min_in_eur_minor
                            && u128::from(out) * 10_000 >= scaled(inn, *ratio_bp))
                        .then(|| format!("out {out} after in {inn} within {window_s}s"))
                    } else {
                        None
                    }
                }
                RuleParams::RoundAmount { unit_eur_minor, min_eur_minor } => {
                    (amount >= *min_eur_minor && amount.is_multiple_of(*unit_eur_minor))
                        .then(|| format!("amount {amount} is a multiple of {unit_eur_minor}"))
                }
                RuleParams::HighRiskJurisdiction { countries } => {
                    let mut found = t.counterparty.country.iter().find(|c| countries.contains(*c)).cloned();
                    if found.is_none()
                        && let Some(tr) = &t.travel_rule
                    {
                            found = tr.countries().into_iter().find(|c| countries.contains(*c)).map(str::to_string);
                    }
                    found.map(|c| format!("jurisdiction {c}"))
                }
                RuleParams::SelfHostedUnverified { threshold_eur_minor } => {
                    (t.counterparty.kind == CounterpartyKind::SelfHosted { proof_of_control: false }
                        && amount > *threshold_eur_minor)
                        .then(|| format!("self-hosted without proof of control, amount {amount} > {threshold_eur_minor}"))
                }
                RuleParams::NewCounterparty { threshold_eur_minor } => {
                    (amount > *threshold_eur_minor
                        && !h.known_counterparties.contains(&t.counterparty.key))
                    .then(|| format!("first transfer to counterparty, amount {amount} > {threshold_eur_minor}"))
                }
            };
            if let Some(detail) = fired {
                debug_assert!(detail.len() <= FIELD_LEN_MAX);
                hits.push(RuleHit {
                    rule_id: rule.id.clone(),
                    kind: rule.params.kind_code(),
                    score: rule.score,
                    detail,
                });
            }
        }
        let score = hits.iter().map(|h| h.score).sum();
        Evaluation {
            score,
            verdict: rules.verdict(score),
            hits,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rules_load_and_hash_ignores_formatting() {
        let r = RuleSet::default_rules();
        assert_eq!(r.config().rules.len(), 9);
        let compact = serde_json::to_vec(r.config()).unwrap();
        assert_eq!(
            RuleSet::from_json(&compact).unwrap().content_hash(),
            r.content_hash()
        );
        let mut changed = r.config().clone();
        changed.review_score += 1;
        assert_ne!(
            RuleSet::new(changed).unwrap().content_hash(),
            r.content_hash()
        );
    }

    #[test]
    fn bad_configs_have_codes() {
        let bad = |s: &str| RuleSet::from_json(s.as_bytes()).unwrap_err().reject;
        assert_eq!(bad("{"), Reject::RuleConfigMalformed);
        let base = r#"{"version":"v","review_score":5,"reject_score":10,"rules":[RULES]}"#;
        let with = |rules: &str| base.replace("RULES", rules);
        assert_eq!(
            bad(&with(r#"{"id":"a","score":1,"params":{"kind":"nope"}}"#)),
            Reject::RuleConfigMalformed
        );
        assert_eq!(
            bad(&with(
                r#"{"id":"a","score":1,"params":{"kind":"large_transfer","threshold_eur_minor":1,"x":1}}"#
            )),
            Reject::RuleConfigMalformed
        );
        assert_eq!(
            bad(&with(
                r#"{"id":"a","score":1,"params":{"kind":"large_transfer","threshold_eur_minor":0}}"#
            )),
            Reject::RuleInvalid
        );
        let one =
            r#"{"id":"a","score":1,"params":{"kind":"large_transfer","threshold_eur_minor":1}}"#;
        assert_eq!(bad(&with(&format!("{one},{one}"))), Reject::DuplicateRuleId);
        assert_eq!(
            bad(&with(
                r#"{"id":"a","score":1,"params":{"kind":"velocity","scope":"customer","window_s":99999999,"count_max":1,"amount_max_eur_minor":1}}"#
            )),
            Reject::RuleInvalid
        );
        assert_eq!(
            bad(r#"{"version":"v","review_score":11,"reject_score":10,"rules":[]}"#),
            Reject::ScoreThresholdsInvalid
        );
        assert_eq!(
            bad(r#"{"version":"","review_score":1,"reject_score":10,"rules":[]}"#),
            Reject::RuleVersionInvalid
        );
        assert_eq!(
            bad(&" ".repeat(RULE_CONFIG_BYTES_MAX + 1)),
            Reject::RuleConfigTooLarge
        );
    }

    fn transfer(
        amount: u64,
        dir: Direction,
        cp: &str,
        kind: CounterpartyKind,
        country: Option<&str>,
    ) -> Transfer {
        Transfer {
            id: 1,
            customer: 1,
            activity: Activity::ExternalTransfer,
            direction: dir,
            asset: "EUR".into(),
            amount_minor: amount,
            amount_eur_minor: amount,
            counterparty: crate::transfer::Counterparty {
                key: cp.into(),
                kind,
                name: None,
                country: country.map(str::to_string),
            },
            travel_rule: None,
        }
    }

    fn one_rule(params: &str) -> RuleSet {
        RuleSet::from_json(
            format!(r#"{{"version":"t","review_score":10,"reject_score":20,"rules":[{{"id":"r","score":10,"params":{params}}}]}}"#)
                .as_bytes(),
        )
        .unwrap()
    }

    fn fires(m: &Monitor, rules: &RuleSet, t: &Transfer, now: i64) -> bool {
        !m.evaluate(rules, t, now).hits.is_empty()
    }

    const S: i64 = 1_000_000;

    #[test]
    fn each_rule_fires_exactly_when_it_should() {
        let bank = CounterpartyKind::Bank;
        let out = Direction::Outgoing;
        let m = Monitor::new();

        let r = one_rule(r#"{"kind":"large_transfer","threshold_eur_minor":1000}"#);
        assert!(fires(
            &m,
            &r,
            &transfer(1000, out, "a", bank.clone(), None),
            0
        ));
        assert!(!fires(
            &m,
            &r,
            &transfer(999, out, "a", bank.clone(), None),
            0
        ));

        let r = one_rule(r#"{"kind":"round_amount","unit_eur_minor":100,"min_eur_minor":500}"#);
        assert!(fires(
            &m,
            &r,
            &transfer(700, out, "a", bank.clone(), None),
            0
        ));
        assert!(!fires(
            &m,
            &r,
            &transfer(701, out, "a", bank.clone(), None),
            0
        ));
        assert!(!fires(
            &m,
            &r,
            &transfer(400, out, "a", bank.clone(), None),
            0
        ));

        let r = one_rule(r#"{"kind":"high_risk_jurisdiction","countries":["KP"]}"#);
        assert!(fires(
            &m,
            &r,
            &transfer(1, out, "a", bank.clone(), Some("KP")),
            0
        ));
        assert!(!fires(
            &m,
            &r,
            &transfer(1, out, "a", bank.clone(), Some("FR")),
            0
        ));

        let r = one_rule(r#"{"kind":"self_hosted_unverified","threshold_eur_minor":100000}"#);
        let unproven = CounterpartyKind::SelfHosted {
            proof_of_control: false,
        };
        assert!(fires(
            &m,
            &r,
            &transfer(100_001, out, "a", unproven.clone(), None),
            0
        ));
        assert!(!fires(
            &m,
            &r,
            &transfer(100_000, out, "a", unproven, None),
            0
        ));
        let proven = CounterpartyKind::SelfHosted {
            proof_of_control: true,
        };
        assert!(!fires(
            &m,
            &r,
            &transfer(500_000, out, "a", proven, None),
            0
        ));

        // Velocity per counterparty over 60 s: the third transfer to "a" fires, to "b" not.
        let r = one_rule(
            r#"{"kind":"velocity","scope":"counterparty","window_s":60,"count_max":2,"amount_max_eur_minor":1000000}"#,
        );
        let mut m = Monitor::new();
        m.record(&transfer(10, out, "a", bank.clone(), None), 0);
        m.record(&transfer(10, out, "a", bank.clone(), None), S);
        assert!(fires(
            &m,
            &r,
            &transfer(10, out, "a", bank.clone(), None),
            2 * S
        ));
        assert!(!fires(
            &m,
            &r,
            &transfer(10, out, "b", bank.clone(), None),
            2 * S
        ));
        // 60 s after the first, it has left the window.
        assert!(!fires(
            &m,
            &r,
            &transfer(10, out, "a", bank.clone(), None),
            60 * S
        ));

        // Rapid in and out: 90 % of what came in leaves within the window.
        let r = one_rule(
            r#"{"kind":"rapid_in_out","window_s":3600,"min_in_eur_minor":1000,"ratio_bp":9000}"#,
        );
        let mut m = Monitor::new();
        m.record(
            &transfer(10_000, Direction::Incoming, "x", bank.clone(), None),
            0,
        );
        assert!(fires(
            &m,
            &r,
            &transfer(9_000, out, "y", bank.clone(), None),
            S
        ));
        assert!(!fires(
            &m,
            &r,
            &transfer(8_999, out, "y", bank.clone(), None),
            S
        ));
        assert!(!fires(
            &m,
            &r,
            &transfer(9_000, out, "y", bank.clone(), None),
            3_600 * S
        ));
        assert!(!fires(
            &m,
            &r,
            &transfer(9_000, Direction::Incoming, "y", bank.clone(), None),
            S
        ));

        // New counterparty: fires until the counterparty has been seen.
        let r = one_rule(r#"{"kind":"new_counterparty","threshold_eur_minor":100}"#);
        let mut m = Monitor::new();
        assert!(fires(
            &m,
            &r,
            &transfer(101, out, "n", bank.clone(), None),
            0
        ));
        m.record(&transfer(5, out, "n", bank.clone(), None), 0);
        assert!(!fires(
            &m,
            &r,
            &transfer(101, out, "n", bank.clone(), None),
            S
        ));
        // Seen 31 days ago still counts as known: the counterparty memory outlives the windows.
        assert!(!fires(
            &m,
            &r,
            &transfer(101, out, "n", bank, None),
            31 * 86_400 * S
        ));
    }
}
