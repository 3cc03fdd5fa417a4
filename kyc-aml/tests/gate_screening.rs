//! The gate with the real sanctions screener (`screening::Screener`): a listed name holds the
//! transfer, a listed crypto address rejects it, and the decision names the list snapshot.

mod common;

use std::sync::Arc;

use common::*;
use kyc_aml::Reject;
use kyc_aml::customer::{CddLevel, TierTable};
use kyc_aml::gate::decision::Outcome;
use kyc_aml::gate::{Gate, GateConfig};
use kyc_aml::monitoring::RuleSet;
use kyc_aml::screening::model::{Entry, NameKind, SubjectKind};
use kyc_aml::screening::{ListSnapshot, ScreenConfig, Screener};
use kyc_aml::transfer::CounterpartyKind;

fn screener() -> Screener {
    let mut listed = Entry::new("TEST", "T-1", SubjectKind::Individual);
    listed.add_name("Ivan Petrovich Sidorov", NameKind::Primary);
    let mut wallet = Entry::new("TEST", "T-2", SubjectKind::Entity);
    wallet.add_name("Lazarus Mixer Services", NameKind::Primary);
    wallet.crypto_addresses.push("0xdeadbeef00112233".into());
    let snapshot = ListSnapshot::from_entries("test", vec![listed, wallet]).unwrap();
    Screener::new(snapshot, ScreenConfig::default())
}

fn gate() -> (Gate, String) {
    let s = screener();
    let hash = s.snapshot_id().content_sha256;
    let cfg = GateConfig {
        tiers: TierTable::default(),
        rules: RuleSet::default_rules(),
        key_label: "gate-1".into(),
    };
    let mut g = Gate::new(cfg, Arc::new(s), key_store()).unwrap();
    g.upsert_customer(profile(1, CddLevel::Standard)).unwrap();
    (g, hash)
}

#[test]
fn listed_name_holds_and_names_the_snapshot() {
    let (mut g, hash) = gate();
    let mut t = external(1, 1, 50_000, CounterpartyKind::Vasp, true);
    t.counterparty.name = Some("SIDOROV, Ivan Petrovich".into());
    let d = g.evaluate(&t, T0).unwrap();
    assert_eq!(d.outcome(), Outcome::Hold, "{:?}", d.refusals);
    assert!(codes(&d).contains(&Reject::SanctionsPossibleMatch.code()));
    let s = d.record.screening.unwrap();
    assert_eq!(hex::encode(s.snapshot_hash), hash);
    assert_eq!(s.snapshot_id, "v1");
    assert_eq!(s.result, 1);
    assert!(s.best_score_bp >= 8_500, "{}", s.best_score_bp);
}

#[test]
fn clear_names_pass_and_a_listed_address_rejects() {
    let (mut g, _) = gate();
    let t = external(2, 1, 50_000, CounterpartyKind::Vasp, true);
    let d = g.evaluate(&t, T0).unwrap();
    assert_eq!(d.outcome(), Outcome::Approve, "{:?}", d.refusals);
    assert_eq!(d.record.screening.unwrap().result, 0);
    let mut t = external(
        3,
        1,
        50_000,
        CounterpartyKind::SelfHosted {
            proof_of_control: true,
        },
        true,
    );
    t.counterparty.key = "0xdeadbeef00112233".into();
    let d = g.evaluate(&t, T0).unwrap();
    assert_eq!(d.outcome(), Outcome::Reject, "{:?}", d.refusals);
    assert!(codes(&d).contains(&Reject::SanctionsMatch.code()));
}
