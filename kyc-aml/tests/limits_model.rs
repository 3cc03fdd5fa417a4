//! The gate's tier limits against a naive model: random withdrawals at random times, and the
//! gate approves exactly when the model's sums over the last 24 hours and 30 days allow it.

mod common;

use common::*;
use kyc_aml::customer::{Activity, CddLevel};
use kyc_aml::gate::decision::Outcome;
use kyc_aml::monitoring::RuleSet;
use kyc_aml::transfer::{CounterpartyKind, Direction};
use proptest::prelude::*;

/// One rule that never fires here, so only limits decide.
fn quiet_rules() -> RuleSet {
    RuleSet::from_json(
        br#"{"version":"quiet","review_score":1,"reject_score":2,"rules":[
            {"id":"huge","score":1,"params":{"kind":"large_transfer","threshold_eur_minor":1000000000000}}]}"#,
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn limits_match_the_model(steps in proptest::collection::vec((0i64..(3 * DAY_US), 1u64..40_000), 1..40)) {
        let mut g = gate_with(quiet_rules(), ExactScreener { matches: vec![], possible: vec![] });
        g.upsert_customer(profile(1, CddLevel::Basic)).unwrap();
        // Tier 1 withdrawals: EUR 500 a day, EUR 2,000 in 30 days.
        let (day_max, month_max) = (50_000u64, 200_000u64);
        let mut approved: Vec<(i64, u64)> = Vec::new();
        let mut now = T0;
        for (i, (dt, amount)) in steps.into_iter().enumerate() {
            now += dt;
            let sum = |w: i64| approved.iter().filter(|(t, _)| *t > now - w && *t <= now).map(|(_, a)| a).sum::<u64>();
            let ok = sum(DAY_US) + amount <= day_max && sum(30 * DAY_US) + amount <= month_max;
            let mut t = internal(i as u128, 1, 2, Activity::Withdrawal, Direction::Outgoing, amount);
            t.counterparty.kind = CounterpartyKind::Bank;
            let d = g.evaluate(&t, now).unwrap();
            prop_assert_eq!(d.outcome() == Outcome::Approve, ok, "step {} {:?}", i, d.refusals);
            if ok {
                approved.push((now, amount));
            }
        }
    }
}
