//! The compliance gate: `Gate::evaluate(transfer, now)` combines the tier and limit checks,
//! screening of counterparty names, transaction monitoring and the travel rule into approve /
//! hold for review / reject, and signs the hash of the decision record with the gate's Ed25519
//! key through `hsm::KeyStore`.
//!
//! The gate is a synchronous core: customer profiles are loaded into it by the node (from the
//! store), time comes in with each call, and the only outside effect is the signature, through
//! the key store handed in at construction.
//!
//! # Layout
//! - [`decision`]: the record, its canonical bytes and hash, [`decision::SignedDecision`] and the
//!   verification validators run (sha2 and ed25519 only).
//! - [`CounterpartyScreener`]: the seam to sanctions screening.
//! - [`Gate`]: the evaluation.

pub mod decision;

use std::collections::HashMap;
use std::sync::Arc;

use crate::KycError;
use crate::customer::{Activity, CustomerId, CustomerProfile, TierTable, TimestampUs};
use crate::limits::{DAY_US, DECISION_REASONS_MAX, GATE_CUSTOMERS_MAX};
use crate::monitoring::{Monitor, RuleSet, Verdict};
use crate::reject::{Refusal, Reject};
use crate::transfer::{CounterpartyKind, Direction, Transfer};
use crate::travel_rule::VaspNeeds;

use decision::{
    DecisionRecord, LimitCheck, Outcome, ReasonEntry, ScreeningCheck, SignedDecision,
    signing_message,
};

/// What screening concluded over the names of one transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum ScreeningResult {
    /// No candidate above the review threshold.
    Clear = 0,
    /// A candidate a person must look at.
    PossibleMatch = 1,
    /// A confirmed-grade match: the transfer is refused.
    Match = 2,
}

/// Screening's answer with the snapshot it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScreeningOutcome {
    /// List snapshot id.
    pub snapshot_id: String,
    /// List snapshot content hash.
    pub snapshot_hash: [u8; 32],
    /// The conclusion.
    pub result: ScreeningResult,
    /// Best candidate score in basis points.
    pub best_score_bp: u16,
    /// The list entry's reference when there is a candidate (a list id, not personal data of
    /// our customer).
    pub entry_ref: Option<String>,
}

/// The seam to sanctions and PEP screening. Implemented for `screening::Screener` and by
/// anything else that can screen names against a list snapshot.
pub trait CounterpartyScreener: Send + Sync + std::fmt::Debug {
    /// Screens the names of one party, with its country when known, and its identifiers
    /// (account numbers, crypto addresses) which lists such as OFAC's carry.
    fn screen_names(
        &self,
        names: &[String],
        country: Option<&str>,
        identifiers: &[String],
    ) -> Result<ScreeningOutcome, KycError>;
}

/// The gate's decision: the record, the signed hash and the refusals behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The full record (kept by the node in the store; regulators read it).
    pub record: DecisionRecord,
    /// What the transfer carries to settlement.
    pub signed: SignedDecision,
    /// Every refusal found (empty for a clean approval).
    pub refusals: Vec<Refusal>,
}

impl Decision {
    /// The outcome.
    pub fn outcome(&self) -> Outcome {
        self.record.outcome
    }
}

/// Configuration of the gate.
#[derive(Debug, Clone)]
pub struct GateConfig {
    /// Limits per tier.
    pub tiers: TierTable,
    /// Monitoring rules.
    pub rules: RuleSet,
    /// Label of the gate's Ed25519 key in the key store.
    pub key_label: String,
}

/// The compliance gate.
#[derive(Debug)]
pub struct Gate {
    customers: HashMap<CustomerId, CustomerProfile>,
    monitor: Monitor,
    config: GateConfig,
    screener: Arc<dyn CounterpartyScreener>,
    keys: Arc<dyn hsm::KeyStore>,
    public_key: [u8; 32],
}

/// Which direction of an activity counts against its limit: money in for deposits, money out
/// for everything else. The other direction is still monitored.
pub fn limited_direction(activity: Activity) -> Direction {
    match activity {
        Activity::Deposit => Direction::Incoming,
        _ => Direction::Outgoing,
    }
}

impl Gate {
    /// A gate signing with the Ed25519 key `config.key_label` of `keys` (which must exist).
    pub fn new(
        config: GateConfig,
        screener: Arc<dyn CounterpartyScreener>,
        keys: Arc<dyn hsm::KeyStore>,
    ) -> Result<Gate, KycError> {
        let pk = keys.public_key(&config.key_label)?;
        if pk.algorithm != hsm::KeyAlgorithm::Ed25519 {
            return Err(KycError::GateKey(format!(
                "{} is not an Ed25519 key",
                config.key_label
            )));
        }
        let public_key = <[u8; 32]>::try_from(pk.bytes.as_slice())
            .map_err(|_| KycError::GateKey("public key is not 32 bytes".into()))?;
        Ok(Gate {
            customers: HashMap::new(),
            monitor: Monitor::new(),
            config,
            screener,
            keys,
            public_key,
        })
    }

    /// The gate's public key (validators add it to their `GateKeys` under the key label).
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// The key id decisions name.
    pub fn key_id(&self) -> &str {
        &self.config.key_label
    }

    /// Loads or replaces a customer profile. Refused past `GATE_CUSTOMERS_MAX` customers.
    pub fn upsert_customer(&mut self, profile: CustomerProfile) -> Result<(), KycError> {
        if !self.customers.contains_key(&profile.id) && self.customers.len() >= GATE_CUSTOMERS_MAX {
            return Err(KycError::Capacity("gate customers"));
        }
        self.customers.insert(profile.id, profile);
        Ok(())
    }

    /// A loaded profile.
    pub fn customer(&self, id: CustomerId) -> Option<&CustomerProfile> {
        self.customers.get(&id)
    }

    /// Replaces the monitoring rules; later decisions name the new version.
    pub fn set_rules(&mut self, rules: RuleSet) {
        self.config.rules = rules;
    }

    /// Records a held transfer that review released (false positive), so that limits and
    /// monitoring count it.
    pub fn record_released(&mut self, t: &Transfer, now: TimestampUs) {
        self.monitor.record(t, now);
    }

    /// Evaluates a transfer at `now`, signs the decision and, when approved, counts the
    /// transfer in the customer's limits and history. `Err` only when the machine fails
    /// (screening or key store); every business refusal is in the decision.
    pub fn evaluate(&mut self, t: &Transfer, now: TimestampUs) -> Result<Decision, KycError> {
        let mut refusals: Vec<Refusal> = Vec::new();
        let mut outcome = Outcome::Approve;
        let worsen = |o: Outcome, out: &mut Outcome| {
            if (o as u8) > (*out as u8) {
                *out = o;
            }
        };
        let rules = &self.config.rules;
        let mut record = DecisionRecord {
            transfer_id: t.id,
            customer: t.customer,
            evaluated_at_us: now,
            activity: t.activity as u8,
            direction: t.direction as u8,
            asset: t.asset.chars().take(8).collect(),
            amount_minor: t.amount_minor,
            amount_eur_minor: t.amount_eur_minor,
            cdd_level: 0,
            risk: 0,
            limits: None,
            screening: None,
            rules_version: rules.version().to_string(),
            rules_hash: rules.content_hash(),
            score: 0,
            travel_rule: 0,
            outcome,
            reasons: Vec::new(),
        };

        if let Err(r) = t.validate() {
            refusals.push(r);
            worsen(Outcome::Reject, &mut outcome);
            return self.finish(record, refusals, outcome, t, now);
        }
        let Some(profile) = self.customers.get(&t.customer) else {
            refusals.push(Refusal::new(
                Reject::UnknownCustomer,
                format!("customer {}", t.customer),
            ));
            return self.finish(record, refusals, Outcome::Reject, t, now);
        };
        record.cdd_level = profile.cdd as u8;
        record.risk = profile.risk as u8;

        // Tier and limits: no CDD, missing EDD or erasure stop everything here.
        match profile.effective_tier(now) {
            Err(reject) => {
                refusals.push(Refusal::new(reject, format!("cdd {:?}", profile.cdd)));
                return self.finish(record, refusals, Outcome::Reject, t, now);
            }
            Ok(tier) => {
                let limit = self.config.tiers.limits(tier).for_activity(t.activity);
                let dir = limited_direction(t.activity);
                let (used_day, used_30d) = if t.direction == dir {
                    (
                        self.monitor
                            .sum_in_window(t.customer, t.activity, dir, now, DAY_US),
                        self.monitor
                            .sum_in_window(t.customer, t.activity, dir, now, 30 * DAY_US),
                    )
                } else {
                    (0, 0)
                };
                record.limits = Some(LimitCheck {
                    activity: t.activity as u8,
                    tier: tier as u8,
                    used_day_minor: used_day,
                    limit_day_minor: limit.per_day_minor,
                    used_30d_minor: used_30d,
                    limit_30d_minor: limit.per_30d_minor,
                });
                if t.direction == dir {
                    if used_day.saturating_add(t.amount_eur_minor) > limit.per_day_minor {
                        refusals.push(Refusal::new(
                            Reject::DailyLimitExceeded,
                            format!(
                                "{used_day} + {} > {}",
                                t.amount_eur_minor, limit.per_day_minor
                            ),
                        ));
                        worsen(Outcome::Reject, &mut outcome);
                    }
                    if used_30d.saturating_add(t.amount_eur_minor) > limit.per_30d_minor {
                        refusals.push(Refusal::new(
                            Reject::MonthlyLimitExceeded,
                            format!(
                                "{used_30d} + {} > {}",
                                t.amount_eur_minor, limit.per_30d_minor
                            ),
                        ));
                        worsen(Outcome::Reject, &mut outcome);
                    }
                }
            }
        }
        if self.monitor.history_full(t.customer) {
            refusals.push(Refusal::new(Reject::HistoryFull, "history"));
            worsen(Outcome::Hold, &mut outcome);
        }

        // Travel rule.
        let mut screen_names: Vec<String> = t.counterparty.name.iter().cloned().collect();
        if t.needs_travel_rule() {
            match &t.travel_rule {
                None => {
                    record.travel_rule = 2;
                    refusals.push(Refusal::new(Reject::TravelRuleMissing, "travel_rule"));
                    worsen(Outcome::Hold, &mut outcome);
                }
                Some(tr) => {
                    let self_hosted =
                        matches!(t.counterparty.kind, CounterpartyKind::SelfHosted { .. });
                    let needs = match t.direction {
                        Direction::Outgoing => VaspNeeds {
                            originating: true,
                            beneficiary: !self_hosted,
                        },
                        Direction::Incoming => VaspNeeds {
                            originating: !self_hosted,
                            beneficiary: true,
                        },
                    };
                    let defects = tr.defects(needs);
                    if defects.is_empty() {
                        record.travel_rule = 1;
                    } else {
                        record.travel_rule = 3;
                        refusals.push(Refusal::new(
                            Reject::TravelRuleIncomplete,
                            format!("{} defects", defects.len()),
                        ));
                        refusals.extend(defects);
                        worsen(Outcome::Hold, &mut outcome);
                    }
                    // The other side's names are screened too.
                    screen_names.extend(match t.direction {
                        Direction::Outgoing => tr.beneficiary_names(),
                        Direction::Incoming => tr.originator_names(),
                    });
                }
            }
        }

        // Screening.
        if !screen_names.is_empty() {
            screen_names.sort();
            screen_names.dedup();
            let ids = [t.counterparty.key.clone()];
            let s = self.screener.screen_names(
                &screen_names,
                t.counterparty.country.as_deref(),
                &ids,
            )?;
            record.screening = Some(ScreeningCheck {
                snapshot_id: s.snapshot_id.clone(),
                snapshot_hash: s.snapshot_hash,
                result: s.result as u8,
                names_screened: screen_names.len().min(u16::MAX as usize) as u16,
                best_score_bp: s.best_score_bp,
            });
            let entry = s.entry_ref.clone().unwrap_or_default();
            match s.result {
                ScreeningResult::Clear => {}
                ScreeningResult::PossibleMatch => {
                    refusals.push(Refusal::new(
                        Reject::SanctionsPossibleMatch,
                        format!("entry {entry}"),
                    ));
                    worsen(Outcome::Hold, &mut outcome);
                }
                ScreeningResult::Match => {
                    refusals.push(Refusal::new(
                        Reject::SanctionsMatch,
                        format!("entry {entry}"),
                    ));
                    worsen(Outcome::Reject, &mut outcome);
                }
            }
        }

        // Monitoring.
        let eval = self.monitor.evaluate(&self.config.rules, t, now);
        record.score = eval.score;
        for h in &eval.hits {
            refusals.push(Refusal::new(
                Reject::RuleHit,
                format!("{} +{}: {}", h.rule_id, h.score, h.detail),
            ));
        }
        match eval.verdict {
            Verdict::Approve => {}
            Verdict::Review => {
                refusals.push(Refusal::new(
                    Reject::MonitoringReview,
                    format!("score {}", eval.score),
                ));
                worsen(Outcome::Hold, &mut outcome);
            }
            Verdict::Reject => {
                refusals.push(Refusal::new(
                    Reject::MonitoringReject,
                    format!("score {}", eval.score),
                ));
                worsen(Outcome::Reject, &mut outcome);
            }
        }
        self.finish(record, refusals, outcome, t, now)
    }

    fn finish(
        &mut self,
        mut record: DecisionRecord,
        refusals: Vec<Refusal>,
        outcome: Outcome,
        t: &Transfer,
        now: TimestampUs,
    ) -> Result<Decision, KycError> {
        record.outcome = outcome;
        record.reasons = refusals
            .iter()
            .take(DECISION_REASONS_MAX)
            .map(|r| ReasonEntry {
                code: r.code(),
                detail: r.detail.chars().take(200).collect(),
            })
            .collect();
        let hash = record.decision_hash();
        let msg = signing_message(record.transfer_id, outcome, &hash);
        let signature = match self.keys.sign(&self.config.key_label, &msg)? {
            hsm::Signature::Ed25519(sig) => sig,
            other => return Err(KycError::GateKey(format!("unexpected signature {other:?}"))),
        };
        if outcome == Outcome::Approve {
            self.monitor.record(t, now);
        }
        let signed = SignedDecision {
            transfer_id: record.transfer_id,
            outcome,
            hash,
            signature,
            gate_key_id: self.config.key_label.clone(),
        };
        Ok(Decision {
            record,
            signed,
            refusals,
        })
    }
}

/// `screening::Screener` as the gate's screener. Each name is screened with the party's country
/// and identifiers; the answers combine as follows: a hit at or above the alert threshold that
/// an analyst confirmed for this party, or an exact identifier hit (a listed crypto address),
/// is a match (reject); any other alerting hit is a possible match (hold); otherwise clear.
/// The snapshot id is the screener's load counter, its hash the content SHA-256 of the lists.
impl CounterpartyScreener for crate::screening::Screener {
    fn screen_names(
        &self,
        names: &[String],
        country: Option<&str>,
        identifiers: &[String],
    ) -> Result<ScreeningOutcome, KycError> {
        use crate::screening::model::{Decision as Disposition, HitBasis, Query};
        let mut outcome: Option<ScreeningOutcome> = None;
        let mut best: Option<(ScreeningResult, u16, String)> = None;
        for (i, name) in names.iter().enumerate() {
            let query = Query {
                full_name: name.clone(),
                nationality: country.map(str::to_string),
                // Identifiers once: they do not depend on the name.
                identifiers: if i == 0 {
                    identifiers.to_vec()
                } else {
                    Vec::new()
                },
                ..Query::default()
            };
            let r = self.screen(&query);
            if outcome.is_none() {
                let hash = hex::decode(&r.snapshot.content_sha256)
                    .ok()
                    .and_then(|v| <[u8; 32]>::try_from(v).ok())
                    .ok_or_else(|| {
                        KycError::Screening("snapshot hash is not 32 bytes of hex".into())
                    })?;
                outcome = Some(ScreeningOutcome {
                    snapshot_id: format!("v{}", r.snapshot.version),
                    snapshot_hash: hash,
                    result: ScreeningResult::Clear,
                    best_score_bp: 0,
                    entry_ref: None,
                });
            }
            for h in &r.hits {
                let alerting =
                    h.score >= r.threshold && h.disposition != Some(Disposition::FalsePositive);
                let result = if !alerting {
                    ScreeningResult::Clear
                } else if h.disposition == Some(Disposition::ConfirmedMatch)
                    || h.basis == HitBasis::Identifier
                {
                    ScreeningResult::Match
                } else {
                    ScreeningResult::PossibleMatch
                };
                let better = match &best {
                    None => true,
                    Some((r0, s0, _)) => (result, h.score) > (*r0, *s0),
                };
                if better {
                    best = Some((result, h.score, format!("{}:{}", h.list, h.entity_id)));
                }
            }
        }
        let mut out = outcome.ok_or_else(|| KycError::Screening("no names to screen".into()))?;
        if let Some((result, score, entry)) = best {
            out.result = result;
            out.best_score_bp = score.min(1_000) * 10;
            out.entry_ref = Some(entry);
        }
        Ok(out)
    }
}
