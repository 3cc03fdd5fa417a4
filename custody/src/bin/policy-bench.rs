//! Policy engine benchmark: the time of one decision with 1 000 rules, as a distribution.
//!
//! `cargo run --release -p custody --bin policy-bench [-- RULES DECISIONS SEED]` prints one
//! JSON line with p50, p99 and max decision time in nanoseconds. The rules mix every
//! condition kind (velocity included, over a ledger of recorded events) and most requests fall
//! through to the final catch-all deny, so most decisions read every rule: the worst case.

use std::hint::black_box;
use std::time::Instant;

use custody::policy::{
    Condition, DestinationKind, Outcome, Policy, PolicyDocument, PolicyRequest, Rule, VelocityScope,
};
use custody::tier::Tier;
use custody::velocity::{VelocityKey, VelocityLedger};

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn rule(i: usize) -> Rule {
    let i128_ = i as u128;
    let when = match i % 5 {
        0 => vec![
            Condition::Asset {
                any_of: vec!["EUR".into(), "LCL".into()],
            },
            Condition::Amount {
                min_minor: Some(i128_ * 1_000_000),
                max_minor: Some(i128_ * 1_000_000 + 10),
            },
        ],
        1 => vec![
            Condition::Asset {
                any_of: vec!["CITY".into()],
            },
            Condition::VelocityExceeded {
                scope: VelocityScope::Account,
                window_s: 3_600 + i as u64,
                max_amount_minor: Some(u128::MAX / 2),
                max_count: Some(10_000),
            },
        ],
        2 => vec![
            Condition::Destination {
                kind: DestinationKind::External,
            },
            Condition::TimeOfDay {
                from_min: (i % 1_440) as u16,
                to_min: ((i % 1_440) as u16 + 1) % 1_440,
            },
            Condition::DestinationTag {
                any_of: vec![format!("tag-{i}")],
            },
        ],
        3 => vec![
            Condition::InitiatorRole {
                any_of: vec!["ops".into(), "customer".into()],
            },
            Condition::BalanceShareAbove { above_bps: 10_000 },
        ],
        _ => vec![
            Condition::SourceTier {
                any_of: vec![Tier::Warm, Tier::Cold],
            },
            Condition::VelocityExceeded {
                scope: VelocityScope::Wallet,
                window_s: 86_400,
                max_amount_minor: None,
                max_count: Some(1_000_000),
            },
        ],
    };
    let then = match i % 3 {
        0 => Outcome::Allow,
        1 => Outcome::Approvals {
            group: "treasury".into(),
            required: 2,
        },
        _ => Outcome::TimeLock { delay_s: 600 },
    };
    Rule {
        name: format!("rule-{i}"),
        when,
        then,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let rules = arg(0, 1_000) as usize;
    let decisions = arg(1, 200_000) as usize;
    let mut state = arg(2, 42);

    let mut all: Vec<Rule> = (0..rules.saturating_sub(1)).map(rule).collect();
    all.push(Rule {
        name: "deny-all".into(),
        when: vec![],
        then: Outcome::Deny,
    });
    let doc = PolicyDocument {
        version: 1,
        groups: [
            (
                "treasury".to_owned(),
                vec!["a".to_owned(), "b".to_owned(), "c".to_owned()],
            ),
            ("admins".to_owned(), vec!["x".to_owned(), "y".to_owned()]),
        ]
        .into_iter()
        .collect(),
        admin_group: "admins".into(),
        admin_quorum: 2,
        approval_ttl_s: 3_600,
        rules: all,
    };
    let policy = Policy::load(doc)?;

    // 1 000 accounts with 20 recent withdrawals each, so velocity conditions read real deques.
    let mut velocity = VelocityLedger::new(policy.velocity_horizon_s());
    let now_s = 10 * 86_400 + 12 * 3_600;
    for account in 0..1_000u64 {
        for k in 0..20u64 {
            velocity.record(
                VelocityKey::Account(account),
                now_s - 3_000 + k * 100,
                1_000,
            )?;
        }
    }
    for wallet in 0..4u32 {
        for k in 0..1_000u64 {
            velocity.record(VelocityKey::Wallet(wallet), now_s - 80_000 + k * 50, 1_000)?;
        }
    }

    let assets = ["EUR", "LCL", "CITY"];
    let roles = ["ops", "customer", "trader"];
    let tiers = [Tier::Hot, Tier::Warm, Tier::Cold];
    let tags = ["customer", "exchange", "tag-7"];
    let mut times = Vec::with_capacity(decisions);
    let mut matched_last = 0usize;
    for _ in 0..decisions {
        let r = splitmix64(&mut state);
        let request = PolicyRequest {
            asset: assets[(r % 3) as usize],
            amount_minor: u128::from(r >> 40),
            source_tier: tiers[((r >> 8) % 3) as usize],
            wallet: ((r >> 12) % 4) as u32,
            account: (r >> 16) % 1_000,
            destination_tag: if r & (1 << 30) != 0 {
                Some(tags[((r >> 31) % 3) as usize])
            } else {
                None
            },
            initiator_role: roles[((r >> 20) % 3) as usize],
            wallet_balance_minor: 1_000_000_000,
            now_us: now_s * 1_000_000,
        };
        let start = Instant::now();
        let decision = black_box(policy.evaluate(black_box(&request), &velocity));
        times.push(start.elapsed().as_nanos() as u64);
        if decision.rule_index == rules - 1 {
            matched_last += 1;
        }
    }
    times.sort_unstable();
    let pct = |p: usize| times[(times.len() * p / 100).min(times.len() - 1)];
    println!(
        "{{\"rules\":{rules},\"decisions\":{decisions},\"fell_through_to_catch_all\":{matched_last},\"p50_ns\":{},\"p99_ns\":{},\"max_ns\":{}}}",
        pct(50),
        pct(99),
        times[times.len() - 1]
    );
    Ok(())
}
