//! The withdrawal policy: rules evaluated top-down, the first whose conditions all hold decides.
//!
//! A policy must end with an unconditional deny (checked at load): whatever the rules above
//! forget falls through to "no". Amounts are integer minor units, percentages basis points,
//! times UTC minutes of the day; nothing here is floating point.
//!
//! Policies are JSON documents (see `docs/custody-policy.md` for the format).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::limits::{
    APPROVAL_TTL_S_MAX, APPROVER_GROUPS_MAX, GROUP_MEMBERS_MAX, NAME_BYTES_MAX, POLICY_BYTES_MAX,
    POLICY_RULES_MAX, RULE_CONDITIONS_MAX, TIME_LOCK_S_MAX, VELOCITY_WINDOW_S_MAX,
};
use crate::tier::{Tier, WalletId};
use crate::velocity::{VelocityKey, VelocityLedger};

/// Fewest approvals the administrators' quorum can ask for: one person is not a quorum.
pub const ADMIN_QUORUM_MIN: u8 = 2;
/// Fewest approvals a rule clearing a cold-wallet withdrawal must ask for.
pub const COLD_QUORUM_MIN: u8 = 2;
const MINUTES_PER_DAY: u16 = 24 * 60;
const BPS_MAX: u32 = 10_000;

/// Whose velocity a condition counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VelocityScope {
    /// The customer account the withdrawal is for.
    Account,
    /// The wallet it is paid from.
    Wallet,
}

/// Whether the destination is another custody wallet or outside custody.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationKind {
    /// A move between tiers.
    Internal,
    /// A payout to a whitelisted address.
    External,
}

/// One condition of a rule. A rule applies when all its conditions hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// The asset is one of these.
    Asset {
        /// Asset codes.
        any_of: Vec<String>,
    },
    /// The amount is in `[min_minor, max_minor)` (either bound may be left out).
    Amount {
        /// Inclusive lower bound.
        #[serde(default)]
        min_minor: Option<u128>,
        /// Exclusive upper bound.
        #[serde(default)]
        max_minor: Option<u128>,
    },
    /// The source wallet's tier is one of these.
    SourceTier {
        /// Tiers.
        any_of: Vec<Tier>,
    },
    /// Internal move or external payout.
    Destination {
        /// Which.
        kind: DestinationKind,
    },
    /// The external destination's address-book tag is one of these.
    DestinationTag {
        /// Tags.
        any_of: Vec<String>,
    },
    /// The initiator's role is one of these.
    InitiatorRole {
        /// Roles.
        any_of: Vec<String>,
    },
    /// Holds when this withdrawal would take the scope past a limit within the window.
    VelocityExceeded {
        /// Account or wallet.
        scope: VelocityScope,
        /// Window length in seconds.
        window_s: u64,
        /// Limit on the sum of amounts, this one included.
        #[serde(default)]
        max_amount_minor: Option<u128>,
        /// Limit on the number of withdrawals, this one included.
        #[serde(default)]
        max_count: Option<u64>,
    },
    /// Holds when the amount is more than `above_bps` basis points of the wallet's balance.
    BalanceShareAbove {
        /// Basis points (1/100 of a percent), at most 10 000.
        above_bps: u32,
    },
    /// Holds when the UTC minute of the day is in `[from_min, to_min)`, wrapping past midnight
    /// when `from_min > to_min`.
    TimeOfDay {
        /// First minute (0..1440).
        from_min: u16,
        /// Minute after the last (0..1440).
        to_min: u16,
    },
}

/// What a rule decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Outcome {
    /// Sign at once.
    Allow,
    /// Wait for `required` approvals from distinct members of `group` (not the initiator).
    Approvals {
        /// Approver group name.
        group: String,
        /// m of the group's n members.
        required: u8,
    },
    /// Sign after `delay_s` seconds unless cancelled.
    TimeLock {
        /// Delay in seconds.
        delay_s: u64,
    },
    /// Refuse.
    Deny,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique name, reported with every decision.
    pub name: String,
    /// Conditions, all of which must hold (empty: always).
    #[serde(default)]
    pub when: Vec<Condition>,
    /// The decision.
    pub then: Outcome,
}

/// A policy as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// Version number, for the audit log.
    pub version: u64,
    /// Named approver groups.
    pub groups: BTreeMap<String, Vec<String>>,
    /// The group that approves policy changes (and may cancel any withdrawal).
    pub admin_group: String,
    /// How many administrators must approve a policy change.
    pub admin_quorum: u8,
    /// How long an approval stays valid, in seconds.
    pub approval_ttl_s: u64,
    /// The rules, top-down.
    pub rules: Vec<Rule>,
}

/// Why a policy does not load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Not valid JSON for a policy.
    #[error("policy is not valid: {0}")]
    Syntax(String),
    /// Larger than the size limit.
    #[error("policy larger than {POLICY_BYTES_MAX} bytes")]
    TooLarge,
    /// No rules, or more than the limit.
    #[error("a policy needs 1 to {POLICY_RULES_MAX} rules, got {0}")]
    RuleCount(usize),
    /// The last rule is not an unconditional deny.
    #[error("the last rule must be a catch-all deny (no conditions, then deny); found {0:?}")]
    MissingCatchAllDeny(String),
    /// An unconditional rule before the last makes those after it dead.
    #[error("rule {0:?} has no conditions, so the rules after it can never apply")]
    UnreachableRules(String),
    /// Two rules share a name.
    #[error("rule name {0:?} is used twice")]
    DuplicateRule(String),
    /// A name is empty, too long, or not printable.
    #[error("invalid name {0:?} (1 to {NAME_BYTES_MAX} printable ASCII characters)")]
    BadName(String),
    /// A group is malformed.
    #[error("group {group:?}: {reason}")]
    BadGroup {
        /// The group.
        group: String,
        /// What is wrong.
        reason: String,
    },
    /// A rule is malformed.
    #[error("rule {rule:?}: {reason}")]
    BadRule {
        /// The rule.
        rule: String,
        /// What is wrong.
        reason: String,
    },
    /// The admin settings are malformed.
    #[error("admin settings: {0}")]
    BadAdmin(String),
}

/// What the policy sees of a withdrawal.
#[derive(Debug, Clone, Copy)]
pub struct PolicyRequest<'a> {
    /// Asset code.
    pub asset: &'a str,
    /// Amount in minor units.
    pub amount_minor: u128,
    /// The source wallet's tier.
    pub source_tier: Tier,
    /// The source wallet.
    pub wallet: WalletId,
    /// The customer account.
    pub account: u64,
    /// Address-book tag of an external destination; `None` for an internal move.
    pub destination_tag: Option<&'a str>,
    /// The initiator's role.
    pub initiator_role: &'a str,
    /// The source wallet's known balance.
    pub wallet_balance_minor: u128,
    /// Time of the request, UTC microseconds.
    pub now_us: u64,
}

/// The decision: which rule matched and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'p> {
    /// Index of the matching rule.
    pub rule_index: usize,
    /// Its name.
    pub rule_name: &'p str,
    /// Its outcome.
    pub outcome: &'p Outcome,
}

/// A loaded, validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    doc: PolicyDocument,
    velocity_horizon_s: u64,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= NAME_BYTES_MAX && name.bytes().all(|b| b.is_ascii_graphic())
}

fn check_names(list: &[String], rule: &str, what: &str) -> Result<(), PolicyError> {
    if list.is_empty() {
        return Err(PolicyError::BadRule {
            rule: rule.into(),
            reason: format!("{what}: empty list"),
        });
    }
    match list.iter().find(|n| !valid_name(n)) {
        Some(bad) => Err(PolicyError::BadName(bad.clone())),
        None => Ok(()),
    }
}

impl Policy {
    /// Parses and validates a JSON policy.
    pub fn from_json(text: &str) -> Result<Self, PolicyError> {
        if text.len() > POLICY_BYTES_MAX {
            return Err(PolicyError::TooLarge);
        }
        let doc: PolicyDocument =
            serde_json::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))?;
        Self::load(doc)
    }

    /// Validates a policy document.
    pub fn load(doc: PolicyDocument) -> Result<Self, PolicyError> {
        if doc.groups.len() > APPROVER_GROUPS_MAX {
            return Err(PolicyError::BadGroup {
                group: String::new(),
                reason: format!("more than {APPROVER_GROUPS_MAX} groups"),
            });
        }
        for (group, members) in &doc.groups {
            if !valid_name(group) {
                return Err(PolicyError::BadName(group.clone()));
            }
            if members.is_empty() || members.len() > GROUP_MEMBERS_MAX {
                return Err(PolicyError::BadGroup {
                    group: group.clone(),
                    reason: format!("needs 1 to {GROUP_MEMBERS_MAX} members"),
                });
            }
            if let Some(bad) = members.iter().find(|m| !valid_name(m)) {
                return Err(PolicyError::BadName(bad.clone()));
            }
            if members.iter().collect::<BTreeSet<_>>().len() != members.len() {
                return Err(PolicyError::BadGroup {
                    group: group.clone(),
                    reason: "a member is listed twice".into(),
                });
            }
        }
        let admins = doc.groups.get(&doc.admin_group).ok_or_else(|| {
            PolicyError::BadAdmin(format!("unknown admin group {:?}", doc.admin_group))
        })?;
        if doc.admin_quorum < ADMIN_QUORUM_MIN || usize::from(doc.admin_quorum) > admins.len() {
            return Err(PolicyError::BadAdmin(format!(
                "admin quorum must be between {ADMIN_QUORUM_MIN} and the group's {} members, got {}",
                admins.len(),
                doc.admin_quorum
            )));
        }
        if doc.approval_ttl_s == 0 || doc.approval_ttl_s > APPROVAL_TTL_S_MAX {
            return Err(PolicyError::BadAdmin(format!(
                "approval_ttl_s must be 1..={APPROVAL_TTL_S_MAX}"
            )));
        }
        if doc.rules.is_empty() || doc.rules.len() > POLICY_RULES_MAX {
            return Err(PolicyError::RuleCount(doc.rules.len()));
        }
        let mut names = BTreeSet::new();
        let mut horizon = 0u64;
        let last = doc.rules.len() - 1;
        for (i, rule) in doc.rules.iter().enumerate() {
            if !valid_name(&rule.name) {
                return Err(PolicyError::BadName(rule.name.clone()));
            }
            if !names.insert(rule.name.as_str()) {
                return Err(PolicyError::DuplicateRule(rule.name.clone()));
            }
            if i < last && rule.when.is_empty() {
                return Err(PolicyError::UnreachableRules(rule.name.clone()));
            }
            if rule.when.len() > RULE_CONDITIONS_MAX {
                return Err(PolicyError::BadRule {
                    rule: rule.name.clone(),
                    reason: format!("more than {RULE_CONDITIONS_MAX} conditions"),
                });
            }
            for condition in &rule.when {
                if let Some(window) = Self::check_condition(&rule.name, condition)? {
                    horizon = horizon.max(window);
                }
            }
            let bad = |reason: String| PolicyError::BadRule {
                rule: rule.name.clone(),
                reason,
            };
            match &rule.then {
                Outcome::Allow | Outcome::Deny => {}
                Outcome::Approvals { group, required } => {
                    let members = doc
                        .groups
                        .get(group)
                        .ok_or_else(|| bad(format!("unknown group {group:?}")))?;
                    if *required == 0 || usize::from(*required) > members.len() {
                        return Err(bad(format!(
                            "needs 1 to {} approvals of group {group:?}, got {required}",
                            members.len()
                        )));
                    }
                }
                Outcome::TimeLock { delay_s } => {
                    if *delay_s == 0 || *delay_s > TIME_LOCK_S_MAX {
                        return Err(bad(format!(
                            "time lock must be 1..={TIME_LOCK_S_MAX} seconds"
                        )));
                    }
                }
            }
        }
        let final_rule = &doc.rules[last];
        if !final_rule.when.is_empty() || final_rule.then != Outcome::Deny {
            return Err(PolicyError::MissingCatchAllDeny(final_rule.name.clone()));
        }
        Ok(Self {
            doc,
            velocity_horizon_s: horizon,
        })
    }

    /// Checks one condition; returns its velocity window if it has one.
    fn check_condition(rule: &str, condition: &Condition) -> Result<Option<u64>, PolicyError> {
        let bad = |reason: &str| PolicyError::BadRule {
            rule: rule.into(),
            reason: reason.into(),
        };
        match condition {
            Condition::Asset { any_of } => check_names(any_of, rule, "asset")?,
            Condition::DestinationTag { any_of } => check_names(any_of, rule, "destination_tag")?,
            Condition::InitiatorRole { any_of } => check_names(any_of, rule, "initiator_role")?,
            Condition::SourceTier { any_of } => {
                if any_of.is_empty() {
                    return Err(bad("source_tier: empty list"));
                }
            }
            Condition::Destination { .. } => {}
            Condition::Amount {
                min_minor,
                max_minor,
            } => match (min_minor, max_minor) {
                (None, None) => return Err(bad("amount: give min_minor, max_minor or both")),
                (Some(lo), Some(hi)) if lo >= hi => {
                    return Err(bad("amount: min_minor must be below max_minor"));
                }
                _ => {}
            },
            Condition::VelocityExceeded {
                window_s,
                max_amount_minor,
                max_count,
                ..
            } => {
                if *window_s == 0 || *window_s > crate::limits::VELOCITY_WINDOW_S_MAX {
                    return Err(bad(&format!(
                        "velocity window must be 1..={VELOCITY_WINDOW_S_MAX} seconds"
                    )));
                }
                if max_amount_minor.is_none() && max_count.is_none() {
                    return Err(bad("velocity: give max_amount_minor, max_count or both"));
                }
                return Ok(Some(*window_s));
            }
            Condition::BalanceShareAbove { above_bps } => {
                if *above_bps > BPS_MAX {
                    return Err(bad("balance_share_above: above_bps must be at most 10000"));
                }
            }
            Condition::TimeOfDay { from_min, to_min } => {
                if *from_min >= MINUTES_PER_DAY || *to_min >= MINUTES_PER_DAY || from_min == to_min
                {
                    return Err(bad("time_of_day: minutes must be 0..1440 and differ"));
                }
            }
        }
        Ok(None)
    }

    /// The document as loaded.
    pub fn document(&self) -> &PolicyDocument {
        &self.doc
    }

    /// The longest velocity window used, in seconds.
    pub fn velocity_horizon_s(&self) -> u64 {
        self.velocity_horizon_s
    }

    /// Members of a group.
    pub fn group(&self, name: &str) -> Option<&[String]> {
        self.doc.groups.get(name).map(Vec::as_slice)
    }

    /// Evaluates the rules top-down; the catch-all deny guarantees a match.
    pub fn evaluate<'p>(
        &'p self,
        req: &PolicyRequest<'_>,
        velocity: &VelocityLedger,
    ) -> Decision<'p> {
        for (rule_index, rule) in self.doc.rules.iter().enumerate() {
            if rule.when.iter().all(|c| holds(c, req, velocity)) {
                return Decision {
                    rule_index,
                    rule_name: &rule.name,
                    outcome: &rule.then,
                };
            }
        }
        // Unreachable for a loaded policy (its last rule has no conditions); deny regardless.
        const DENY: Outcome = Outcome::Deny;
        Decision {
            rule_index: self.doc.rules.len(),
            rule_name: "implicit-deny",
            outcome: &DENY,
        }
    }
}

fn holds(condition: &Condition, req: &PolicyRequest<'_>, velocity: &VelocityLedger) -> bool {
    match condition {
        Condition::Asset { any_of } => any_of.iter().any(|a| a == req.asset),
        Condition::Amount {
            min_minor,
            max_minor,
        } => {
            min_minor.is_none_or(|lo| req.amount_minor >= lo)
                && max_minor.is_none_or(|hi| req.amount_minor < hi)
        }
        Condition::SourceTier { any_of } => any_of.contains(&req.source_tier),
        Condition::Destination { kind } => match kind {
            DestinationKind::Internal => req.destination_tag.is_none(),
            DestinationKind::External => req.destination_tag.is_some(),
        },
        Condition::DestinationTag { any_of } => req
            .destination_tag
            .is_some_and(|t| any_of.iter().any(|a| a == t)),
        Condition::InitiatorRole { any_of } => any_of.iter().any(|r| r == req.initiator_role),
        Condition::VelocityExceeded {
            scope,
            window_s,
            max_amount_minor,
            max_count,
        } => {
            let key = match scope {
                VelocityScope::Account => VelocityKey::Account(req.account),
                VelocityScope::Wallet => VelocityKey::Wallet(req.wallet),
            };
            let usage = velocity.usage(key, req.now_us / 1_000_000, *window_s);
            max_amount_minor
                .is_some_and(|max| usage.amount_minor.saturating_add(req.amount_minor) > max)
                || max_count.is_some_and(|max| usage.count.saturating_add(1) > max)
        }
        Condition::BalanceShareAbove { above_bps } => {
            // amount / balance > bps / 10 000, in integers; saturation only errs towards
            // "holds", which is the cautious side for a rule that escalates.
            req.amount_minor.saturating_mul(u128::from(BPS_MAX))
                > req
                    .wallet_balance_minor
                    .saturating_mul(u128::from(*above_bps))
        }
        Condition::TimeOfDay { from_min, to_min } => {
            let minute = ((req.now_us / 60_000_000) % u64::from(MINUTES_PER_DAY)) as u16;
            if from_min < to_min {
                (*from_min..*to_min).contains(&minute)
            } else {
                minute >= *from_min || minute < *to_min
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
