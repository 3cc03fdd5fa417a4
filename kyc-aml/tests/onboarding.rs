//! Onboarding end to end: an EUDI-wallet attestation is verified against the issuer registry,
//! kept in the store, lifts the customer's CDD level and tier, and the gate loaded from the
//! store lets money move; revoking the issuer before the acceptance time takes it away again.

mod common;

use common::*;
use ed25519_dalek::{Signer, SigningKey};
use kyc_aml::attestation::{
    Assurance, Attestation, AttestationClaims, IssuerKind, IssuerRegistry, canonical_claims_bytes,
};
use kyc_aml::customer::{Activity, CddLevel, CustomerKind, PersonalData, Tier};
use kyc_aml::gate::decision::Outcome;
use kyc_aml::store::{CustomerRecord, KycStore};
use kyc_aml::transfer::Direction;

fn personal() -> PersonalData {
    PersonalData {
        full_name: "Marie Dupont".into(),
        first_name: Some("Marie".into()),
        last_name: Some("Dupont".into()),
        birth_date: Some("1990-04-01".into()),
        nationality: Some("FR".into()),
        residence_country: "FR".into(),
        address: None,
        national_id: None,
        registration_number: None,
        beneficial_owners: vec![],
        senior_managing_official: None,
    }
}

#[tokio::test]
async fn attestation_to_tier_to_gate() {
    let store = kyc_aml::store::sqlite::SqliteStore::in_memory()
        .await
        .unwrap();
    let mut registry = IssuerRegistry::new();
    let wallet = SigningKey::from_bytes(&[21; 32]);
    registry
        .add(
            "eudi-verifier",
            IssuerKind::EudiVerifier,
            wallet.verifying_key().to_bytes(),
        )
        .unwrap();

    // A new customer: no evidence, no CDD, nothing moves.
    let mut rec = CustomerRecord {
        profile: profile(42, CddLevel::None),
        personal: Some(personal()),
        edd_signed_off: false,
        created_at_us: T0,
        erased_at_us: None,
    };
    store.put_customer(&rec).await.unwrap();
    let mut g = gate();
    for p in store.profiles().await.unwrap() {
        g.upsert_customer(p).unwrap();
    }
    let t = internal(1, 42, 7, Activity::Trading, Direction::Outgoing, 10_000);
    assert_eq!(g.evaluate(&t, T0).unwrap().outcome(), Outcome::Reject);

    // The wallet presentation arrives as JSON.
    let claims = AttestationClaims {
        subject: 42,
        issuer: "eudi-verifier".into(),
        assurance: Assurance::High,
        full_name: "Marie Dupont".into(),
        birth_date: Some("1990-04-01".into()),
        nationality: Some("FR".into()),
        residence_country: "FR".into(),
        national_id: None,
        issued_at_us: T0,
        expires_at_us: T0 + 365 * DAY_US,
    };
    let signature = wallet.sign(&canonical_claims_bytes(&claims)).to_bytes();
    let json = Attestation { claims, signature }.to_json();
    let att = Attestation::from_json(json.as_bytes()).unwrap();
    let accepted = registry.verify_presentation(&att, 42, T0 + 10).unwrap();
    store.put_attestation(&accepted).await.unwrap();

    let evidence = store.attestations(42).await.unwrap();
    let level = registry.cdd_level(
        CustomerKind::NaturalPerson,
        &personal(),
        &evidence,
        false,
        T0 + 10,
    );
    assert_eq!(level, CddLevel::Standard);
    rec.profile.cdd = level;
    store.put_customer(&rec).await.unwrap();
    store
        .record_tier_change(
            42,
            T0 + 10,
            Tier::for_cdd(level),
            level,
            "EUDI PID presentation",
        )
        .await
        .unwrap();
    for p in store.profiles().await.unwrap() {
        g.upsert_customer(p).unwrap();
    }
    assert_eq!(g.evaluate(&t, T0 + 20).unwrap().outcome(), Outcome::Approve);

    // The issuer turns out to have been compromised before we accepted the attestation.
    registry.revoke("eudi-verifier", T0 + 5).unwrap();
    let level = registry.cdd_level(
        CustomerKind::NaturalPerson,
        &personal(),
        &evidence,
        false,
        T0 + 30,
    );
    assert_eq!(level, CddLevel::None);
    rec.profile.cdd = level;
    store.put_customer(&rec).await.unwrap();
    g.upsert_customer(rec.profile.clone()).unwrap();
    let t2 = internal(2, 42, 7, Activity::Trading, Direction::Outgoing, 10_000);
    assert_eq!(g.evaluate(&t2, T0 + 30).unwrap().outcome(), Outcome::Reject);
}
