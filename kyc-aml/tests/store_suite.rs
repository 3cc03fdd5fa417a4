//! One store test suite, run against both backends: the embedded SQLite store and the real
//! PostgreSQL server at 127.0.0.1:5432 (each PostgreSQL test in its own schema, dropped after).

mod common;

use common::*;
use kyc_aml::Reject;
use kyc_aml::attestation::{AcceptedAttestation, Assurance};
use kyc_aml::case::{Case, Disposition};
use kyc_aml::customer::Activity;
use kyc_aml::customer::{CddLevel, CustomerKind, PepStatus, PersonalData, PostalAddress, Tier};
use kyc_aml::gate::decision::{GateKeys, verify_record};
use kyc_aml::store::{CustomerRecord, ErasureOutcome, KycStore, StoredDecision};
use kyc_aml::transfer::Direction;

fn personal() -> PersonalData {
    PersonalData {
        full_name: "Marie Dupont".into(),
        first_name: Some("Marie".into()),
        last_name: Some("Dupont".into()),
        birth_date: Some("1990-04-01".into()),
        nationality: Some("FR".into()),
        residence_country: "FR".into(),
        address: Some(PostalAddress {
            line: "1 rue de la Paix".into(),
            town: "Paris".into(),
            post_code: Some("75002".into()),
            country: "FR".into(),
        }),
        national_id: Some("FR-ID-123".into()),
        registration_number: None,
        beneficial_owners: vec![],
        senior_managing_official: None,
    }
}

fn customer(id: u64) -> CustomerRecord {
    let mut profile = profile(id, CddLevel::Standard);
    profile.pep = Some(PepStatus {
        left_office_at_us: Some(T0 - DAY_US),
    });
    CustomerRecord {
        profile,
        personal: Some(personal()),
        edd_signed_off: false,
        created_at_us: T0,
        erased_at_us: None,
    }
}

fn attestation(id: u64, n: u8) -> AcceptedAttestation {
    AcceptedAttestation {
        customer: id,
        issuer: "idp-1".into(),
        assurance: Assurance::High,
        accepted_at_us: T0 + i64::from(n),
        expires_at_us: T0 + 365 * DAY_US,
        claims_sha256: [n; 32],
        claims_canonical: Some(vec![1, 2, 3, n]),
        signature: [n; 64],
    }
}

async fn suite<S: KycStore>(s: &S) {
    // Migrating twice is a no-op.
    s.migrate().await.unwrap();

    // Customers: insert, read back, update, u64 ids beyond i64.
    let big = u64::MAX - 3;
    for id in [1, big] {
        s.put_customer(&customer(id)).await.unwrap();
        assert_eq!(s.get_customer(id).await.unwrap(), Some(customer(id)));
    }
    let mut c = customer(1);
    c.profile.cdd = CddLevel::Enhanced;
    c.edd_signed_off = true;
    s.put_customer(&c).await.unwrap();
    assert_eq!(s.get_customer(1).await.unwrap(), Some(c.clone()));
    assert_eq!(s.get_customer(2).await.unwrap(), None);
    let profiles = s.profiles().await.unwrap();
    assert_eq!(profiles.len(), 2);

    // Tiers: append-only history with store-assigned seq.
    let t0 = s
        .record_tier_change(1, T0, Tier::Tier2, CddLevel::Standard, "attestation high")
        .await
        .unwrap();
    let t1 = s
        .record_tier_change(1, T0 + 5, Tier::Tier3, CddLevel::Enhanced, "edd signed off")
        .await
        .unwrap();
    assert_eq!((t0.seq, t1.seq), (0, 1));
    let h = s.tier_history(1).await.unwrap();
    assert_eq!(h, vec![t0, t1]);
    assert!(s.tier_history(big).await.unwrap().is_empty());

    // Attestations: idempotent on the claims hash.
    for n in [2, 1, 2] {
        s.put_attestation(&attestation(1, n)).await.unwrap();
    }
    assert_eq!(
        s.attestations(1).await.unwrap(),
        vec![attestation(1, 1), attestation(1, 2)]
    );

    // Decisions: stored with their record, re-hashed on load.
    let mut g = gate();
    g.upsert_customer(c.profile.clone()).unwrap();
    let d = g
        .evaluate(
            &internal(
                u128::MAX - 1,
                1,
                9,
                Activity::Trading,
                Direction::Outgoing,
                500,
            ),
            T0,
        )
        .unwrap();
    let sd = StoredDecision {
        record: d.record.clone(),
        signed: d.signed.clone(),
    };
    s.put_decision(&sd).await.unwrap();
    s.put_decision(&sd).await.unwrap();
    let back = s.get_decision(&d.signed.hash).await.unwrap().unwrap();
    assert_eq!(back, sd);
    let mut keys = GateKeys::new();
    keys.add(g.key_id(), &g.public_key()).unwrap();
    assert_eq!(verify_record(&back.record, &back.signed, &keys), Ok(()));
    assert_eq!(
        s.decisions_for_transfer(u128::MAX - 1).await.unwrap(),
        vec![sd]
    );
    assert_eq!(s.get_decision(&[0; 32]).await.unwrap(), None);

    // Cases, notes, attachments and dispositions.
    let mut case = Case::open(
        10,
        1,
        Some(u128::MAX - 1),
        Some(d.signed.hash),
        vec![2009, 2015],
        T0,
    );
    s.save_case(&case).await.unwrap();
    assert_eq!(s.get_case(10).await.unwrap(), Some(case.clone()));
    case.assign("ana", T0 + 1).unwrap();
    case.start_investigation(T0 + 2).unwrap();
    case.add_note("ana", "called the customer;\nline two", T0 + 3)
        .unwrap();
    case.attach([9; 32], "s3://evidence/c10/invoice.pdf", "ana", T0 + 4)
        .unwrap();
    s.save_case(&case).await.unwrap();
    assert_eq!(s.get_case(10).await.unwrap(), Some(case.clone()));
    assert_eq!(s.open_cases().await.unwrap(), vec![10]);

    // Erasure is refused while a case is open…
    match s.erase_customer(1, T0 + 10).await.unwrap() {
        ErasureOutcome::Refused(r) => assert_eq!(r.reject, Reject::ErasureBlockedOpenCase),
        other => panic!("{other:?}"),
    }
    case.close(Disposition::FalsePositive, "explained", "ana", T0 + 11)
        .unwrap();
    s.save_case(&case).await.unwrap();
    assert_eq!(s.get_case(10).await.unwrap(), Some(case.clone()));
    assert!(s.open_cases().await.unwrap().is_empty());

    // …and done once it is closed: personal data gone, the rest retained.
    assert_eq!(
        s.erase_customer(1, T0 + 12).await.unwrap(),
        ErasureOutcome::Erased { attestations: 2 }
    );
    let erased = s.get_customer(1).await.unwrap().unwrap();
    assert_eq!(erased.personal, None);
    assert_eq!(erased.erased_at_us, Some(T0 + 12));
    assert!(erased.profile.erased);
    assert_eq!(erased.profile.kind, CustomerKind::NaturalPerson);
    let atts = s.attestations(1).await.unwrap();
    assert!(atts.iter().all(|a| a.claims_canonical.is_none()));
    assert_eq!(atts[0].claims_sha256, [1; 32]);
    assert_eq!(s.tier_history(1).await.unwrap().len(), 2);
    assert!(s.get_decision(&d.signed.hash).await.unwrap().is_some());
    assert_eq!(s.get_case(10).await.unwrap().unwrap().notes.len(), 4);
    match s.erase_customer(1, T0 + 13).await.unwrap() {
        ErasureOutcome::Refused(r) => assert_eq!(r.reject, Reject::AlreadyErased),
        other => panic!("{other:?}"),
    }
    match s.erase_customer(12345, T0).await.unwrap() {
        ErasureOutcome::Refused(r) => assert_eq!(r.reject, Reject::UnknownCustomer),
        other => panic!("{other:?}"),
    }
    // The other customer is untouched.
    assert_eq!(s.get_customer(big).await.unwrap(), Some(customer(big)));
    // The erased profile keeps the gate closed for the customer.
    assert_eq!(
        erased.profile.effective_tier(T0),
        Err(Reject::CustomerErased)
    );
}

#[tokio::test]
async fn sqlite_store_passes_the_suite() {
    let s = kyc_aml::store::sqlite::SqliteStore::in_memory()
        .await
        .unwrap();
    suite(&s).await;
}

#[tokio::test]
async fn sqlite_store_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kyc.db");
    {
        let s = kyc_aml::store::sqlite::SqliteStore::open(&path)
            .await
            .unwrap();
        s.put_customer(&customer(5)).await.unwrap();
    }
    let s = kyc_aml::store::sqlite::SqliteStore::open(&path)
        .await
        .unwrap();
    assert_eq!(s.get_customer(5).await.unwrap(), Some(customer(5)));
}

fn unique_schema() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "kyc_test_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000_000
    )
}

const PG: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

#[tokio::test]
async fn postgres_store_passes_the_suite() {
    let schema = unique_schema();
    let s = kyc_aml::store::pg::PgStore::connect(PG, &schema)
        .await
        .expect("PostgreSQL at 127.0.0.1:5432");
    // Run the suite, then drop the schema whatever happened.
    let outcome = tokio::spawn(async move {
        suite(&s).await;
        s
    })
    .await;
    let backend = kyc_aml::store::pg::PgBackend::connect(PG, &schema)
        .await
        .unwrap();
    backend.drop_schema().await.unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test]
async fn postgres_refuses_a_changed_migration() {
    let schema = unique_schema() + "_m";
    let backend = kyc_aml::store::pg::PgBackend::connect(PG, &schema)
        .await
        .unwrap();
    let s = kyc_aml::store::SqlStore::new(backend);
    s.migrate().await.unwrap();
    use kyc_aml::store::SqlBackend;
    s.backend()
        .script("UPDATE kyc_schema_migrations SET sha256 = 'x' WHERE version = 1")
        .await
        .unwrap();
    let err = s.migrate().await.unwrap_err();
    s.backend().drop_schema().await.unwrap();
    assert!(err.to_string().contains("V1 was changed"), "{err}");
}
