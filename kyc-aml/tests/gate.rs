//! The gate end to end: tiers and limits, monitoring rules, travel rule, screening answers,
//! signatures that settlement validators verify, and determinism.

mod common;

use common::*;
use kyc_aml::Reject;
use kyc_aml::case::{Case, Disposition, HoldState};
use kyc_aml::customer::{Activity, CddLevel, PepStatus, RiskRating};
use kyc_aml::gate::decision::{GateKeys, Outcome, verify_approval, verify_record};
use kyc_aml::transfer::{CounterpartyKind, Direction};

fn code(r: Reject) -> u16 {
    r.code()
}

#[test]
fn nothing_moves_before_basic_cdd() {
    let mut g = gate();
    g.upsert_customer(profile(1, CddLevel::None)).unwrap();
    let d = g
        .evaluate(
            &internal(1, 1, 2, Activity::Trading, Direction::Outgoing, 100),
            T0,
        )
        .unwrap();
    assert_eq!(d.outcome(), Outcome::Reject);
    assert_eq!(codes(&d), vec![code(Reject::CddIncomplete)]);
    let d = g
        .evaluate(
            &internal(2, 99, 2, Activity::Trading, Direction::Outgoing, 100),
            T0,
        )
        .unwrap();
    assert_eq!(codes(&d), vec![code(Reject::UnknownCustomer)]);
}

#[test]
fn pep_without_edd_is_refused_and_with_edd_approved() {
    let mut g = gate();
    let mut p = profile(1, CddLevel::Standard);
    p.pep = Some(PepStatus {
        left_office_at_us: Some(T0 - 30 * DAY_US),
    });
    g.upsert_customer(p.clone()).unwrap();
    let t = internal(1, 1, 2, Activity::Trading, Direction::Outgoing, 10_000);
    assert_eq!(
        codes(&g.evaluate(&t, T0).unwrap()),
        vec![code(Reject::EddRequired)]
    );
    p.cdd = CddLevel::Enhanced;
    g.upsert_customer(p).unwrap();
    assert_eq!(g.evaluate(&t, T0).unwrap().outcome(), Outcome::Approve);
    let mut hr = profile(3, CddLevel::Standard);
    hr.risk = RiskRating::High;
    g.upsert_customer(hr).unwrap();
    let t = internal(2, 3, 2, Activity::Trading, Direction::Outgoing, 10_000);
    assert_eq!(
        codes(&g.evaluate(&t, T0).unwrap()),
        vec![code(Reject::EddRequired)]
    );
}

#[test]
fn daily_and_thirty_day_limits_slide() {
    let mut g = gate();
    g.upsert_customer(profile(1, CddLevel::Basic)).unwrap();
    // Tier 1 withdrawals: EUR 500 a day, EUR 2,000 in 30 days.
    let w = |id: u128, eur: u64| {
        internal(
            id,
            1,
            2,
            Activity::Withdrawal,
            Direction::Outgoing,
            eur * 100,
        )
    };
    assert_eq!(
        g.evaluate(&w(1, 300), T0).unwrap().outcome(),
        Outcome::Approve
    );
    let d = g.evaluate(&w(2, 250), T0 + 1).unwrap();
    assert_eq!(d.outcome(), Outcome::Reject);
    assert!(codes(&d).contains(&code(Reject::DailyLimitExceeded)));
    let lc = d.record.limits.unwrap();
    assert_eq!((lc.used_day_minor, lc.limit_day_minor), (30_000, 50_000));
    // 24 hours later the first withdrawal has left the daily window.
    assert_eq!(
        g.evaluate(&w(3, 250), T0 + DAY_US).unwrap().outcome(),
        Outcome::Approve
    );
    for (i, day) in (2..5).enumerate() {
        let d = g
            .evaluate(&w(10 + i as u128, 400), T0 + day * DAY_US)
            .unwrap();
        assert_eq!(d.outcome(), Outcome::Approve, "day {day}: {:?}", d.refusals);
    }
    // 300 + 250 + 3 * 400 = 1,750; another 300 makes 2,050 > 2,000.
    let d = g.evaluate(&w(20, 300), T0 + 6 * DAY_US).unwrap();
    assert!(
        codes(&d).contains(&code(Reject::MonthlyLimitExceeded)),
        "{:?}",
        d.refusals
    );
    // Incoming trade legs do not count against the trading limit.
    let d = g
        .evaluate(
            &internal(30, 1, 2, Activity::Trading, Direction::Incoming, 900_000),
            T0,
        )
        .unwrap();
    assert!(!codes(&d).contains(&code(Reject::DailyLimitExceeded)));
}

#[test]
fn structuring_just_under_the_threshold_is_held() {
    let mut g = gate();
    g.upsert_customer(profile(1, CddLevel::Enhanced)).unwrap();
    let t = |id: u128, other: u64| {
        internal(
            id,
            1,
            other,
            Activity::Trading,
            Direction::Outgoing,
            950_000,
        )
    };
    assert_eq!(
        g.evaluate(&t(1, 2), T0).unwrap().outcome(),
        Outcome::Approve
    );
    // Two hours apart, so the hourly velocity rule stays quiet.
    let hour = 3_600_000_000;
    assert_eq!(
        g.evaluate(&t(2, 3), T0 + 2 * hour).unwrap().outcome(),
        Outcome::Approve
    );
    let d = g.evaluate(&t(3, 4), T0 + 4 * hour).unwrap();
    assert_eq!(d.outcome(), Outcome::Hold, "{:?}", d.refusals);
    assert!(
        d.refusals
            .iter()
            .any(|r| r.detail.starts_with("structuring-10k"))
    );
    assert!(codes(&d).contains(&code(Reject::MonitoringReview)));
    assert_eq!(d.record.score, 60 + 20);
    assert_eq!(d.record.rules_version, "default-2026-11-24");
}

#[test]
fn travel_rule_and_self_hosted_addresses() {
    let mut g = gate();
    g.upsert_customer(profile(1, CddLevel::Standard)).unwrap();
    // Missing travel-rule data holds.
    let d = g
        .evaluate(&external(1, 1, 50_000, CounterpartyKind::Vasp, false), T0)
        .unwrap();
    assert_eq!(d.outcome(), Outcome::Hold);
    assert!(codes(&d).contains(&code(Reject::TravelRuleMissing)));
    assert_eq!(d.record.travel_rule, 2);
    // Complete data approves, and the beneficiary's name was screened.
    let d = g
        .evaluate(&external(2, 1, 50_000, CounterpartyKind::Vasp, true), T0)
        .unwrap();
    assert_eq!(d.outcome(), Outcome::Approve, "{:?}", d.refusals);
    assert_eq!(d.record.travel_rule, 1);
    assert_eq!(d.record.screening.as_ref().unwrap().names_screened, 1);
    // Malformed data holds with the defect named.
    let mut t = external(3, 1, 50_000, CounterpartyKind::Vasp, true);
    t.travel_rule
        .as_mut()
        .unwrap()
        .beneficiary_vasp
        .as_mut()
        .unwrap()
        .lei = "529900T8BM49AURSDO56".into();
    let d = g.evaluate(&t, T0).unwrap();
    assert_eq!(d.outcome(), Outcome::Hold);
    assert!(codes(&d).contains(&code(Reject::LeiInvalid)));
    // Self-hosted above EUR 1,000 without proof of control: rejected by the rule's score.
    let d = g
        .evaluate(
            &external(
                4,
                1,
                150_000,
                CounterpartyKind::SelfHosted {
                    proof_of_control: false,
                },
                true,
            ),
            T0,
        )
        .unwrap();
    assert_eq!(d.outcome(), Outcome::Reject, "{:?}", d.refusals);
    assert!(
        d.refusals
            .iter()
            .any(|r| r.detail.starts_with("self-hosted-1000"))
    );
    // With proof of control it passes.
    let d = g
        .evaluate(
            &external(
                5,
                1,
                150_000,
                CounterpartyKind::SelfHosted {
                    proof_of_control: true,
                },
                true,
            ),
            T0,
        )
        .unwrap();
    assert_eq!(d.outcome(), Outcome::Approve, "{:?}", d.refusals);
}

#[test]
fn screening_answers_decide() {
    let mut g = gate();
    g.upsert_customer(profile(1, CddLevel::Standard)).unwrap();
    let mut t = internal(1, 1, 2, Activity::Withdrawal, Direction::Outgoing, 10_000);
    t.counterparty.kind = CounterpartyKind::Bank;
    t.counterparty.name = Some("Ivan Sanctioned".into());
    let d = g.evaluate(&t, T0).unwrap();
    assert_eq!(d.outcome(), Outcome::Reject);
    assert!(codes(&d).contains(&code(Reject::SanctionsMatch)));
    let s = d.record.screening.as_ref().unwrap();
    assert_eq!(
        (s.snapshot_id.as_str(), s.snapshot_hash, s.result),
        ("test-list-1", [7; 32], 2)
    );
    t.id = 2;
    t.counterparty.name = Some("Maybe Listed".into());
    let d = g.evaluate(&t, T0).unwrap();
    assert_eq!(d.outcome(), Outcome::Hold);
    assert!(codes(&d).contains(&code(Reject::SanctionsPossibleMatch)));
}

#[test]
fn decisions_are_signed_verifiable_and_deterministic() {
    let mut g = gate();
    g.upsert_customer(profile(1, CddLevel::Standard)).unwrap();
    let t = internal(77, 1, 2, Activity::Trading, Direction::Outgoing, 12_345);
    let d = g.evaluate(&t, T0).unwrap();
    let mut keys = GateKeys::new();
    keys.add(g.key_id(), &g.public_key()).unwrap();
    assert_eq!(verify_approval(&d.signed, 77, &keys), Ok(()));
    assert_eq!(verify_record(&d.record, &d.signed, &keys), Ok(()));
    assert_eq!(d.signed.hash, d.record.decision_hash());

    // A second gate with another key reaches the same record and hash from the same inputs.
    let mut g2 = gate();
    g2.upsert_customer(profile(1, CddLevel::Standard)).unwrap();
    let d2 = g2.evaluate(&t, T0).unwrap();
    assert_eq!(d2.record, d.record);
    assert_eq!(d2.signed.hash, d.signed.hash);
    // But the other gate's key is not trusted.
    assert!(verify_approval(&d2.signed, 77, &keys).is_err());

    // A held decision verifies as a signature but not as an approval.
    let mut bad = internal(78, 1, 2, Activity::Trading, Direction::Outgoing, 12_345);
    bad.counterparty.kind = CounterpartyKind::Bank;
    bad.counterparty.name = Some("Maybe Listed".into());
    let h = g.evaluate(&bad, T0).unwrap();
    assert_eq!(h.outcome(), Outcome::Hold);
    assert!(verify_approval(&h.signed, 78, &keys).is_err());
}

#[test]
fn a_held_transfer_opens_a_case_and_release_counts_it() {
    let mut g = gate();
    g.upsert_customer(profile(1, CddLevel::Basic)).unwrap();
    let mut t = internal(5, 1, 2, Activity::Withdrawal, Direction::Outgoing, 40_000);
    t.counterparty.kind = CounterpartyKind::Bank;
    t.counterparty.name = Some("Maybe Listed".into());
    let d = g.evaluate(&t, T0).unwrap();
    assert_eq!(d.outcome(), Outcome::Hold);
    let mut case = Case::open_from_decision(1, &d, T0).unwrap();
    assert_eq!(case.hold, HoldState::Held);
    assert!(
        case.alert_codes
            .contains(&code(Reject::SanctionsPossibleMatch))
    );
    case.assign("ana", T0 + 1).unwrap();
    case.start_investigation(T0 + 2).unwrap();
    case.close(
        Disposition::FalsePositive,
        "different person: birth dates differ",
        "ana",
        T0 + 3,
    )
    .unwrap();
    assert_eq!(case.hold, HoldState::Released);
    g.record_released(&t, T0 + 3);
    // The released EUR 400 now counts against the EUR 500 daily limit.
    let mut t2 = internal(6, 1, 2, Activity::Withdrawal, Direction::Outgoing, 20_000);
    t2.counterparty.kind = CounterpartyKind::Bank;
    let d = g.evaluate(&t2, T0 + 4).unwrap();
    assert!(
        codes(&d).contains(&code(Reject::DailyLimitExceeded)),
        "{:?}",
        d.refusals
    );
}

#[test]
fn malformed_transfers_are_refused_with_a_code() {
    let mut g = gate();
    g.upsert_customer(profile(1, CddLevel::Standard)).unwrap();
    let mut t = internal(1, 1, 2, Activity::Trading, Direction::Outgoing, 0);
    assert_eq!(
        codes(&g.evaluate(&t, T0).unwrap()),
        vec![code(Reject::InvalidTransfer)]
    );
    t.amount_minor = 5;
    t.amount_eur_minor = 5;
    t.counterparty.country = Some("gb".into());
    assert_eq!(
        codes(&g.evaluate(&t, T0).unwrap()),
        vec![code(Reject::InvalidTransfer)]
    );
    t.counterparty.country = None;
    t.counterparty.kind = kyc_aml::transfer::CounterpartyKind::Customer(1);
    assert_eq!(
        codes(&g.evaluate(&t, T0).unwrap()),
        vec![code(Reject::InvalidTransfer)]
    );
}
