//! Helpers shared by the integration tests: profiles, transfers, a gate with a software key
//! store, and a small exact-name screener for gate tests that need a chosen screening answer.

#![allow(dead_code)]

use std::sync::Arc;

use hsm::KeyStore;
use kyc_aml::KycError;
use kyc_aml::customer::{Activity, CddLevel, CustomerKind, CustomerProfile, RiskRating, TierTable};
use kyc_aml::gate::{CounterpartyScreener, Gate, GateConfig, ScreeningOutcome, ScreeningResult};
use kyc_aml::monitoring::RuleSet;
use kyc_aml::transfer::{Counterparty, CounterpartyKind, Direction, Transfer};

pub const DAY_US: i64 = 86_400_000_000;
pub const T0: i64 = 1_780_000_000_000_000;

/// Screens names by exact, case-insensitive equality against two fixed lists. It stands in for
/// the sanctions list only where a test needs a chosen screening answer; the real screener is
/// exercised through `screening::Screener` in `gate_screening.rs`.
#[derive(Debug)]
pub struct ExactScreener {
    pub matches: Vec<String>,
    pub possible: Vec<String>,
}

impl CounterpartyScreener for ExactScreener {
    fn screen_names(
        &self,
        names: &[String],
        _country: Option<&str>,
        _identifiers: &[String],
    ) -> Result<ScreeningOutcome, KycError> {
        let has = |list: &Vec<String>| {
            names
                .iter()
                .find(|n| list.iter().any(|l| l.eq_ignore_ascii_case(n)))
        };
        let (result, score, entry) = if let Some(n) = has(&self.matches) {
            (ScreeningResult::Match, 10_000, Some(format!("TEST-{n}")))
        } else if let Some(n) = has(&self.possible) {
            (
                ScreeningResult::PossibleMatch,
                8_500,
                Some(format!("TEST-{n}")),
            )
        } else {
            (ScreeningResult::Clear, 0, None)
        };
        Ok(ScreeningOutcome {
            snapshot_id: "test-list-1".into(),
            snapshot_hash: [7; 32],
            result,
            best_score_bp: score,
            entry_ref: entry,
        })
    }
}

pub fn profile(id: u64, cdd: CddLevel) -> CustomerProfile {
    CustomerProfile {
        id,
        kind: CustomerKind::NaturalPerson,
        cdd,
        risk: RiskRating::Low,
        pep: None,
        erased: false,
    }
}

pub fn key_store() -> Arc<dyn KeyStore> {
    let ks = hsm::software::SoftwareKeyStore::in_memory();
    ks.generate_key("gate-1", hsm::KeyAlgorithm::Ed25519)
        .expect("gate key");
    Arc::new(ks)
}

pub fn gate_with(rules: RuleSet, screener: ExactScreener) -> Gate {
    let cfg = GateConfig {
        tiers: TierTable::default(),
        rules,
        key_label: "gate-1".into(),
    };
    Gate::new(cfg, Arc::new(screener), key_store()).expect("gate")
}

pub fn gate() -> Gate {
    gate_with(
        RuleSet::default_rules(),
        ExactScreener {
            matches: vec!["Ivan Sanctioned".into()],
            possible: vec!["Maybe Listed".into()],
        },
    )
}

pub fn internal(
    id: u128,
    customer: u64,
    other: u64,
    activity: Activity,
    dir: Direction,
    eur_minor: u64,
) -> Transfer {
    Transfer {
        id,
        customer,
        activity,
        direction: dir,
        asset: "EUR".into(),
        amount_minor: eur_minor,
        amount_eur_minor: eur_minor,
        counterparty: Counterparty {
            key: format!("acct:{other}"),
            kind: CounterpartyKind::Customer(other),
            name: None,
            country: None,
        },
        travel_rule: None,
    }
}

pub const TRAVEL_RULE: &str = r#"{
  "originator": {
    "originatorPersons": [{"naturalPerson": {
      "name": {"nameIdentifier": [{"primaryIdentifier": "Dupont", "secondaryIdentifier": "Marie", "nameIdentifierType": "LEGL"}]},
      "geographicAddress": [{"addressType": "HOME", "streetName": "Rue de la Paix", "buildingNumber": "1", "postCode": "75002", "townName": "Paris", "country": "FR"}],
      "countryOfResidence": "FR"}}],
    "accountNumber": ["rempart:acct:42"]
  },
  "beneficiary": {
    "beneficiaryPersons": [{"naturalPerson": {
      "name": {"nameIdentifier": [{"primaryIdentifier": "Smith", "secondaryIdentifier": "John", "nameIdentifierType": "LEGL"}]}}}],
    "accountNumber": ["0xabc"]
  },
  "originatingVASP": {"lei": "5493001KJTIIGC8Y1R12", "name": "Rempart Exchange"},
  "beneficiaryVASP": {"lei": "529900T8BM49AURSDO55", "name": "Other VASP"}
}"#;

pub fn external(
    id: u128,
    customer: u64,
    eur_minor: u64,
    kind: CounterpartyKind,
    with_tr: bool,
) -> Transfer {
    Transfer {
        id,
        customer,
        activity: Activity::ExternalTransfer,
        direction: Direction::Outgoing,
        asset: "CITY".into(),
        amount_minor: eur_minor * 10_000,
        amount_eur_minor: eur_minor,
        counterparty: Counterparty {
            key: "0xabc".into(),
            kind,
            name: None,
            country: Some("GB".into()),
        },
        travel_rule: with_tr.then(|| {
            kyc_aml::travel_rule::TravelRuleData::from_json(TRAVEL_RULE.as_bytes()).unwrap()
        }),
    }
}

pub fn codes(d: &kyc_aml::gate::Decision) -> Vec<u16> {
    d.record.reasons.iter().map(|r| r.code).collect()
}
