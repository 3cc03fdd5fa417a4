//! Policy loading and evaluation.

use super::*;

/// A policy exercising every condition and outcome; also used by the withdrawal tests.
pub(crate) fn sample_policy_json(version: u64) -> String {
    format!(
        r#"{{
  "version": {version},
  "groups": {{ "treasury": ["alice", "bob", "carol"], "admins": ["root1", "root2", "root3"] }},
  "admin_group": "admins",
  "admin_quorum": 2,
  "approval_ttl_s": 3600,
  "rules": [
    {{ "name": "night-freeze",
       "when": [ {{ "time_of_day": {{ "from_min": 1380, "to_min": 300 }} }}, {{ "destination": {{ "kind": "external" }} }} ],
       "then": "deny" }},
    {{ "name": "account-velocity",
       "when": [ {{ "destination": {{ "kind": "external" }} }},
                 {{ "velocity_exceeded": {{ "scope": "account", "window_s": 86400, "max_amount_minor": 200000, "max_count": 5 }} }} ],
       "then": "deny" }},
    {{ "name": "cold-refill", "when": [ {{ "source_tier": {{ "any_of": ["cold"] }} }} ],
       "then": {{ "approvals": {{ "group": "treasury", "required": 2 }} }} }},
    {{ "name": "warm-refill", "when": [ {{ "source_tier": {{ "any_of": ["warm"] }} }} ],
       "then": {{ "time_lock": {{ "delay_s": 600 }} }} }},
    {{ "name": "big-share", "when": [ {{ "balance_share_above": {{ "above_bps": 2000 }} }} ],
       "then": {{ "approvals": {{ "group": "treasury", "required": 2 }} }} }},
    {{ "name": "small-eur",
       "when": [ {{ "asset": {{ "any_of": ["EUR"] }} }}, {{ "amount": {{ "max_minor": 10000 }} }},
                 {{ "destination_tag": {{ "any_of": ["customer"] }} }}, {{ "initiator_role": {{ "any_of": ["customer", "ops"] }} }} ],
       "then": "allow" }},
    {{ "name": "medium", "when": [ {{ "amount": {{ "min_minor": 10000, "max_minor": 50000 }} }} ],
       "then": {{ "time_lock": {{ "delay_s": 3600 }} }} }},
    {{ "name": "large", "when": [ {{ "amount": {{ "min_minor": 50000 }} }} ],
       "then": {{ "approvals": {{ "group": "treasury", "required": 2 }} }} }},
    {{ "name": "deny-all", "then": "deny" }}
  ]
}}"#
    )
}

const NOON_US: u64 = 12 * 3600 * 1_000_000;

fn request(amount_minor: u128) -> PolicyRequest<'static> {
    PolicyRequest {
        asset: "EUR",
        amount_minor,
        source_tier: Tier::Hot,
        wallet: 3,
        account: 42,
        destination_tag: Some("customer"),
        initiator_role: "customer",
        wallet_balance_minor: 10_000_000,
        now_us: NOON_US,
    }
}

fn rule_for(policy: &Policy, req: &PolicyRequest<'_>, velocity: &VelocityLedger) -> String {
    policy.evaluate(req, velocity).rule_name.to_owned()
}

#[test]
fn first_match_wins_top_down() {
    let policy = Policy::from_json(&sample_policy_json(1)).unwrap();
    let v = VelocityLedger::new(policy.velocity_horizon_s());
    assert_eq!(policy.velocity_horizon_s(), 86400);
    assert_eq!(rule_for(&policy, &request(9_999), &v), "small-eur");
    assert_eq!(rule_for(&policy, &request(10_000), &v), "medium");
    assert_eq!(rule_for(&policy, &request(49_999), &v), "medium");
    assert_eq!(rule_for(&policy, &request(50_000), &v), "large");
    // Amount tiers are boundaries, not a free-for-all: a different asset falls to "medium".
    assert_eq!(
        rule_for(
            &policy,
            &PolicyRequest {
                asset: "CITY",
                ..request(5)
            },
            &v
        ),
        "deny-all"
    );
    assert_eq!(
        rule_for(
            &policy,
            &PolicyRequest {
                initiator_role: "trader",
                ..request(5)
            },
            &v
        ),
        "deny-all"
    );
    assert_eq!(
        rule_for(
            &policy,
            &PolicyRequest {
                destination_tag: Some("exchange"),
                ..request(5)
            },
            &v
        ),
        "deny-all"
    );
    assert_eq!(
        rule_for(
            &policy,
            &PolicyRequest {
                source_tier: Tier::Cold,
                ..request(5)
            },
            &v
        ),
        "cold-refill"
    );
    assert_eq!(
        rule_for(
            &policy,
            &PolicyRequest {
                source_tier: Tier::Warm,
                ..request(5)
            },
            &v
        ),
        "warm-refill"
    );
    // 20 % of the balance: 2 000 000 is exactly 20 %, not above.
    assert_eq!(
        rule_for(
            &policy,
            &PolicyRequest {
                wallet_balance_minor: 45_000,
                ..request(9_000)
            },
            &v
        ),
        "small-eur"
    );
    assert_eq!(
        rule_for(
            &policy,
            &PolicyRequest {
                wallet_balance_minor: 44_999,
                ..request(9_000)
            },
            &v
        ),
        "big-share"
    );
}

#[test]
fn time_of_day_wraps_past_midnight() {
    let policy = Policy::from_json(&sample_policy_json(1)).unwrap();
    let v = VelocityLedger::new(86400);
    let at = |h: u64, m: u64| PolicyRequest {
        now_us: (5 * 86400 + h * 3600 + m * 60) * 1_000_000,
        ..request(5)
    };
    assert_eq!(rule_for(&policy, &at(22, 59), &v), "small-eur");
    assert_eq!(rule_for(&policy, &at(23, 0), &v), "night-freeze");
    assert_eq!(rule_for(&policy, &at(0, 0), &v), "night-freeze");
    assert_eq!(rule_for(&policy, &at(4, 59), &v), "night-freeze");
    assert_eq!(rule_for(&policy, &at(5, 0), &v), "small-eur");
    // Internal moves are not frozen at night.
    assert_eq!(
        rule_for(
            &policy,
            &PolicyRequest {
                destination_tag: None,
                source_tier: Tier::Warm,
                ..at(1, 0)
            },
            &v
        ),
        "warm-refill"
    );
}

#[test]
fn velocity_counts_amount_and_count_in_the_window() {
    let policy = Policy::from_json(&sample_policy_json(1)).unwrap();
    let mut v = VelocityLedger::new(policy.velocity_horizon_s());
    let t = NOON_US / 1_000_000;
    for i in 0..5 {
        assert_eq!(
            rule_for(&policy, &request(100), &v),
            "small-eur",
            "withdrawal {i}"
        );
        v.record(VelocityKey::Account(42), t, 100).unwrap();
    }
    // The sixth in 24 h exceeds max_count 5.
    assert_eq!(rule_for(&policy, &request(100), &v), "account-velocity");
    // Another account is not affected.
    assert_eq!(
        rule_for(
            &policy,
            &PolicyRequest {
                account: 43,
                ..request(100)
            },
            &v
        ),
        "small-eur"
    );
    // Exactly 24 h later the first five have left the window.
    let later = PolicyRequest {
        now_us: NOON_US + 86_400_000_000,
        ..request(100)
    };
    assert_eq!(rule_for(&policy, &later, &v), "small-eur");
    let just_before = PolicyRequest {
        now_us: NOON_US + 86_399_000_000,
        ..request(100)
    };
    assert_eq!(rule_for(&policy, &just_before, &v), "account-velocity");
    // The amount limit: 200 000 in 24 h.
    let mut v = VelocityLedger::new(86400);
    v.record(VelocityKey::Account(42), t, 150_000).unwrap();
    assert_eq!(rule_for(&policy, &request(50_000), &v), "large");
    assert_eq!(rule_for(&policy, &request(50_001), &v), "account-velocity");
}

#[test]
fn policies_without_a_final_catch_all_deny_are_refused() {
    let mut doc: PolicyDocument = serde_json::from_str(&sample_policy_json(1)).unwrap();
    doc.rules.pop();
    assert!(
        matches!(Policy::load(doc.clone()), Err(PolicyError::MissingCatchAllDeny(name)) if name == "large")
    );
    doc.rules.push(Rule {
        name: "allow-all".into(),
        when: vec![],
        then: Outcome::Allow,
    });
    assert!(matches!(
        Policy::load(doc.clone()),
        Err(PolicyError::MissingCatchAllDeny(_))
    ));
    doc.rules.pop();
    doc.rules.insert(
        0,
        Rule {
            name: "early".into(),
            when: vec![],
            then: Outcome::Deny,
        },
    );
    doc.rules.push(Rule {
        name: "deny-all".into(),
        when: vec![],
        then: Outcome::Deny,
    });
    assert!(
        matches!(Policy::load(doc), Err(PolicyError::UnreachableRules(name)) if name == "early")
    );
}

#[test]
fn malformed_policies_get_clear_errors() {
    let base = sample_policy_json(1);
    let broken = |from: &str, to: &str| {
        assert!(base.contains(from), "{from}");
        Policy::from_json(&base.replacen(from, to, 1)).unwrap_err()
    };
    assert!(
        matches!(broken("\"required\": 2", "\"required\": 4"), PolicyError::BadRule { rule, .. } if rule == "cold-refill")
    );
    assert!(matches!(
        broken("\"required\": 2", "\"required\": 0"),
        PolicyError::BadRule { .. }
    ));
    assert!(matches!(
        broken("\"group\": \"treasury\"", "\"group\": \"nobody\""),
        PolicyError::BadRule { .. }
    ));
    assert!(matches!(
        broken("\"admin_quorum\": 2", "\"admin_quorum\": 1"),
        PolicyError::BadAdmin(_)
    ));
    assert!(matches!(
        broken("\"admin_group\": \"admins\"", "\"admin_group\": \"x\""),
        PolicyError::BadAdmin(_)
    ));
    assert!(matches!(
        broken("\"approval_ttl_s\": 3600", "\"approval_ttl_s\": 0"),
        PolicyError::BadAdmin(_)
    ));
    assert!(matches!(
        broken("\"to_min\": 300", "\"to_min\": 1440"),
        PolicyError::BadRule { .. }
    ));
    assert!(matches!(
        broken("\"to_min\": 300", "\"to_min\": 1380"),
        PolicyError::BadRule { .. }
    ));
    assert!(matches!(
        broken("\"window_s\": 86400", "\"window_s\": 0"),
        PolicyError::BadRule { .. }
    ));
    assert!(matches!(
        broken("\"above_bps\": 2000", "\"above_bps\": 10001"),
        PolicyError::BadRule { .. }
    ));
    assert!(matches!(
        broken(
            "\"min_minor\": 10000, \"max_minor\": 50000",
            "\"min_minor\": 50000, \"max_minor\": 10000"
        ),
        PolicyError::BadRule { .. }
    ));
    assert!(matches!(
        broken("\"delay_s\": 600", "\"delay_s\": 0"),
        PolicyError::BadRule { .. }
    ));
    assert!(matches!(
        broken("\"name\": \"medium\"", "\"name\": \"large\""),
        PolicyError::DuplicateRule(_)
    ));
    assert!(matches!(
        broken("\"name\": \"medium\"", "\"name\": \"\""),
        PolicyError::BadName(_)
    ));
    assert!(matches!(
        broken("\"alice\", \"bob\"", "\"alice\", \"alice\""),
        PolicyError::BadGroup { .. }
    ));
    assert!(matches!(
        broken("\"max_minor\": 10000", "\"max_minor\": -5"),
        PolicyError::Syntax(_)
    ));
    assert!(matches!(
        broken("\"time_of_day\"", "\"hour_of_day\""),
        PolicyError::Syntax(_)
    ));
    assert!(matches!(
        Policy::from_json("not json"),
        Err(PolicyError::Syntax(_))
    ));
    assert!(matches!(
        Policy::from_json(&" ".repeat(POLICY_BYTES_MAX + 1)),
        Err(PolicyError::TooLarge)
    ));
    let mut doc: PolicyDocument = serde_json::from_str(&base).unwrap();
    doc.rules.clear();
    assert_eq!(Policy::load(doc).unwrap_err(), PolicyError::RuleCount(0));
}
