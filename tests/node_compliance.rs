//! End-to-end tests of the node's Compliance wiring: they start the real `rempart demo`
//! binary, sign attestations with the real `rempart kyc` subcommands and the demo provider's
//! key file, and talk gRPC. They prove that a trusted attestation onboards a customer and a
//! forged one is refused with its code, that an account without KYC cannot trade, that a
//! listed customer is frozen with a case an officer works to a goAML report that validates
//! against the goAML 5.0.2 schema (xmllint), and that every other role is refused.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Node, code_of, req};
use rempart_proto::v1 as pb;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Starts the demo with no compliance settings inherited from the environment.
fn start(data_dir: &Path) -> Node {
    let node = common::start_with(data_dir, |c| {
        c.env_remove("REMPART_COMPLIANCE_PASSPHRASE")
            .env_remove("REMPART_KYC_ISSUERS")
            .env_remove("REMPART_KYC_POSTGRES");
    });
    assert!(
        provider_key(&node).is_file(),
        "node printed no demo provider key"
    );
    node
}

/// The demo KYC provider's key file, as the node printed it.
fn provider_key(node: &Node) -> PathBuf {
    let f = node
        .printed("kyc-provider ")
        .expect("node printed its demo provider");
    assert_eq!(f["issuer"], "demo-idp");
    PathBuf::from(&f["key"])
}

fn refused(r: Result<impl std::fmt::Debug, Status>) -> (Code, u32) {
    let err = r.expect_err("refused");
    (err.code(), code_of(&err))
}

fn order() -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        market: "CITY/EUR".into(),
        side: pb::Side::Buy as i32,
        order_type: pb::OrderType::Limit as i32,
        time_in_force: pb::TimeInForce::Gtc as i32,
        price: "1".into(),
        quantity: "1".into(),
        client_order_id: String::new(),
        account_id: String::new(),
    }
}

/// Runs `rempart kyc ...` and returns its stdout.
fn kyc(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rempart"))
        .arg("kyc")
        .args(args)
        .output()
        .expect("run rempart kyc");
    assert!(
        out.status.success(),
        "rempart kyc {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn attest(key: &Path, issuer: &str, customer: u64, name: &str) -> String {
    kyc(&[
        "attest",
        "--key",
        key.to_str().expect("path"),
        "--issuer",
        issuer,
        "--customer",
        &customer.to_string(),
        "--name",
        name,
        "--residence",
        "FR",
        "--birth-date",
        "1991-02-03",
    ])
}

fn submit(customer: u64, attestation: &str) -> pb::SubmitAttestationRequest {
    pb::SubmitAttestationRequest {
        customer_id: customer.to_string(),
        provider: String::new(),
        attestation: attestation.trim().as_bytes().to_vec(),
    }
}

async fn new_trader(node: &Node, ch: &Channel, account: u64) -> String {
    pb::admin_client::AdminClient::new(ch.clone())
        .create_api_key(req(
            pb::CreateApiKeyRequest {
                account_id: account.to_string(),
                roles: vec![pb::Role::Trader as i32],
                label: format!("customer {account}"),
                expires_at: None,
            },
            &node.token("admin"),
        ))
        .await
        .expect("create key")
        .into_inner()
        .token
}

#[tokio::test]
async fn a_trusted_attestation_onboards_a_customer_and_forgeries_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    let ch = node.channel().await;
    let mut compliance = pb::compliance_client::ComplianceClient::new(ch.clone());
    let mut trading = pb::trading_client::TradingClient::new(ch.clone());
    let officer = node.token("compliance");
    let dora = new_trader(&node, &ch, 2001).await;

    // No KYC: no order, with the stable code; the demo parties were onboarded at start.
    assert_eq!(
        refused(trading.place_order(req(order(), &dora)).await),
        (Code::FailedPrecondition, 9040)
    );
    trading
        .place_order(req(order(), &node.token("alice")))
        .await
        .expect("alice is onboarded by the demo");
    let own = compliance
        .get_customer_status(req(pb::GetCustomerStatusRequest::default(), &dora))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (own.customer_id.as_str(), own.tier, own.state),
        ("2001", 0, pb::CustomerState::Pending as i32)
    );
    // A customer reads its own status only.
    let alices = pb::GetCustomerStatusRequest {
        customer_id: "1001".into(),
    };
    assert_eq!(
        refused(
            compliance
                .get_customer_status(req(alices.clone(), &dora))
                .await
        ),
        (Code::PermissionDenied, 9011)
    );
    let alice = compliance
        .get_customer_status(req(alices, &node.token("regulator")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(alice.state, pb::CustomerState::Active as i32);

    let genuine = attest(&provider_key(&node), "demo-idp", 2001, "Dora Example");
    // Tampered claims: the signature no longer verifies.
    let mut forged: serde_json::Value = serde_json::from_str(&genuine).unwrap();
    forged["claims"]["full_name"] = "Mallory Example".into();
    assert_eq!(
        refused(
            compliance
                .submit_attestation(req(submit(2001, &forged.to_string()), &officer))
                .await
        ),
        (Code::PermissionDenied, 21005)
    );
    // Signed by a key the node does not trust, under the trusted issuer's name or another.
    let rogue = dir.path().join("rogue.key");
    let printed = kyc(&["keygen", "--out", rogue.to_str().unwrap()]);
    assert!(printed.starts_with("issuer-public-key="), "{printed}");
    let impostor = attest(&rogue, "demo-idp", 2001, "Dora Example");
    assert_eq!(
        refused(
            compliance
                .submit_attestation(req(submit(2001, &impostor), &officer))
                .await
        ),
        (Code::PermissionDenied, 21005)
    );
    let unknown = attest(&rogue, "rogue-idp", 2001, "Dora Example");
    assert_eq!(
        refused(
            compliance
                .submit_attestation(req(submit(2001, &unknown), &officer))
                .await
        ),
        (Code::PermissionDenied, 21004)
    );
    // About another customer, malformed, or missing.
    assert_eq!(
        refused(
            compliance
                .submit_attestation(req(submit(2003, &genuine), &officer))
                .await
        ),
        (Code::InvalidArgument, 21009)
    );
    assert_eq!(
        refused(
            compliance
                .submit_attestation(req(submit(2001, "{not json"), &officer))
                .await
        ),
        (Code::InvalidArgument, 21001)
    );
    assert_eq!(
        refused(
            compliance
                .submit_attestation(req(submit(2001, ""), &officer))
                .await
        ),
        (Code::InvalidArgument, 9031)
    );
    // Only a compliance officer submits attestations.
    for who in ["alice", "regulator", "admin", "approver"] {
        assert_eq!(
            refused(
                compliance
                    .submit_attestation(req(submit(2001, &genuine), &node.token(who)))
                    .await
            ),
            (Code::PermissionDenied, 9010),
            "{who}"
        );
    }
    assert_eq!(
        refused(trading.place_order(req(order(), &dora)).await),
        (Code::FailedPrecondition, 9040),
        "refused attestations onboard nobody"
    );

    let status = compliance
        .submit_attestation(req(submit(2001, &genuine), &officer))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.customer_id, "2001");
    assert_eq!(status.tier, 2, "assurance high: standard CDD, tier 2");
    assert_eq!(status.state, pb::CustomerState::Active as i32);
    assert!(status.open_case_ids.is_empty());
    // Tier 2's withdrawal limit per day: EUR 20,000 in the defaults, ×10^6 in the demo.
    assert_eq!(status.daily_limit_eur, "20000000000");
    // Onboarded: the order now reaches the engine, which refuses it for lack of funds.
    assert_eq!(
        refused(trading.place_order(req(order(), &dora)).await),
        (Code::FailedPrecondition, 1011)
    );
}

fn xmllint(file: &Path) -> (bool, String) {
    let schema =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("kyc-aml/testdata/goaml/goAMLSchema-5.0.2.xsd");
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(schema)
        .arg(file)
        .output()
        .expect("xmllint (libxml2-utils) is required by this test");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_listed_customer_is_frozen_and_an_officer_works_the_case_to_a_goaml_report() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    let ch = node.channel().await;
    let mut compliance = pb::compliance_client::ComplianceClient::new(ch.clone());
    let mut trading = pb::trading_client::TradingClient::new(ch.clone());
    let officer = node.token("compliance");
    let officer_key_id = officer.split_once('.').unwrap().0.to_string();
    let ivan = new_trader(&node, &ch, 2002).await;

    let listed = attest(
        &provider_key(&node),
        "demo-idp",
        2002,
        "Ivan Petrovich Sidorov",
    );
    let status = compliance
        .submit_attestation(req(submit(2002, &listed), &officer))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.state, pb::CustomerState::Frozen as i32);
    assert_eq!(status.open_case_ids.len(), 1);
    let case_id = status.open_case_ids[0].clone();
    assert_eq!(
        refused(trading.place_order(req(order(), &ivan)).await),
        (Code::FailedPrecondition, 9040)
    );

    // Officers, regulators and admins read cases; nobody else.
    let open = pb::ListCasesRequest {
        state: pb::CaseState::Open as i32,
        page: None,
    };
    for who in ["compliance", "regulator", "admin"] {
        let list = compliance
            .list_cases(req(open.clone(), &node.token(who)))
            .await
            .unwrap()
            .into_inner();
        let case = list
            .cases
            .iter()
            .find(|c| c.case_id == case_id)
            .expect("the case is listed");
        assert_eq!(case.customer_id, "2002");
        assert!(case.rule.contains("2009"), "{}", case.rule);
        assert!(case.transfer_ids.is_empty());
    }
    for who in ["alice", "carol", "approver"] {
        assert_eq!(
            refused(
                compliance
                    .list_cases(req(open.clone(), &node.token(who)))
                    .await
            ),
            (Code::PermissionDenied, 9010),
            "{who}"
        );
        assert_eq!(
            refused(
                compliance
                    .get_case(req(
                        pb::GetCaseRequest {
                            case_id: case_id.clone()
                        },
                        &node.token(who)
                    ))
                    .await
            ),
            (Code::PermissionDenied, 9010),
            "{who}"
        );
    }
    // Paging is bounded and resumable; a state filter excludes other states.
    let page = compliance
        .list_cases(req(
            pb::ListCasesRequest {
                state: pb::CaseState::Unspecified as i32,
                page: Some(pb::PageRequest {
                    page_size: 1,
                    page_token: String::new(),
                }),
            },
            &officer,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.cases.len(), 1);
    let dismissed = compliance
        .list_cases(req(
            pb::ListCasesRequest {
                state: pb::CaseState::Dismissed as i32,
                page: None,
            },
            &officer,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(dismissed.cases.is_empty());
    assert_eq!(
        refused(
            compliance
                .get_case(req(
                    pb::GetCaseRequest {
                        case_id: "999999".into()
                    },
                    &officer
                ))
                .await
        ),
        (Code::NotFound, 23010)
    );

    let export = |who: &str| {
        req(
            pb::ExportReportRequest {
                case_id: case_id.clone(),
                format: pb::ReportFormat::GoamlXml as i32,
            },
            &node.token(who),
        )
    };
    // Not reportable before review.
    assert_eq!(
        refused(compliance.export_report(export("compliance")).await),
        (Code::FailedPrecondition, 26001)
    );
    let update = |state: pb::CaseState, note: &str, token: &str| {
        req(
            pb::UpdateCaseRequest {
                case_id: case_id.clone(),
                state: state as i32,
                note: note.into(),
            },
            token,
        )
    };
    for who in ["regulator", "admin", "alice", "approver"] {
        assert_eq!(
            refused(
                compliance
                    .update_case(update(pb::CaseState::UnderReview, "", &node.token(who)))
                    .await
            ),
            (Code::PermissionDenied, 9010),
            "{who}"
        );
    }
    assert_eq!(
        refused(
            compliance
                .update_case(update(pb::CaseState::Reported, "too early", &officer))
                .await
        ),
        (Code::FailedPrecondition, 23002)
    );
    let case = compliance
        .update_case(update(pb::CaseState::UnderReview, "", &officer))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(case.state, pb::CaseState::UnderReview as i32);
    assert!(
        case.history
            .iter()
            .skip(1)
            .all(|e| e.actor == officer_key_id),
        "{:?}",
        case.history
    );
    assert_eq!(
        refused(
            compliance
                .update_case(update(pb::CaseState::Dismissed, "", &officer))
                .await
        ),
        (Code::InvalidArgument, 23009)
    );

    for who in ["admin", "alice", "approver"] {
        assert_eq!(
            refused(compliance.export_report(export(who)).await),
            (Code::PermissionDenied, 9010),
            "{who}"
        );
    }
    for who in ["compliance", "regulator"] {
        let report = compliance
            .export_report(export(who))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(report.format, pb::ReportFormat::GoamlXml as i32);
        assert_eq!(
            report.sha256,
            hex::encode(sha2::Sha256::digest(&report.content))
        );
        let xml = String::from_utf8(report.content.clone()).unwrap();
        assert!(xml.contains("<report_code>SAR</report_code>"), "{xml}");
        let file = dir.path().join(format!("report-{who}.xml"));
        std::fs::write(&file, &report.content).unwrap();
        let (valid, stderr) = xmllint(&file);
        assert!(valid, "goAML schema validation failed: {stderr}\n{xml}");
    }

    let case = compliance
        .update_case(update(
            pb::CaseState::Reported,
            "identity matches the listing; SAR filed",
            &officer,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(case.state, pb::CaseState::Reported as i32);
    assert_eq!(
        case.history.last().map(|e| e.text.as_str()),
        Some("identity matches the listing; SAR filed")
    );
    assert_eq!(
        refused(
            compliance
                .update_case(update(pb::CaseState::Unspecified, "late note", &officer))
                .await
        ),
        (Code::FailedPrecondition, 23001)
    );
    let status = compliance
        .get_customer_status(req(
            pb::GetCustomerStatusRequest {
                customer_id: "2002".into(),
            },
            &node.token("regulator"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.state, pb::CustomerState::Frozen as i32);
    assert!(status.open_case_ids.is_empty());
    assert_eq!(
        refused(trading.place_order(req(order(), &ivan)).await),
        (Code::FailedPrecondition, 9040),
        "a confirmed case keeps the customer frozen"
    );
}

/// `rempart node --config` (not the demo): the compliance store in PostgreSQL (127.0.0.1:5432,
/// database `test`, a schema of the test's own, dropped at the end), the key-store passphrase
/// required, and only the issuers named in `REMPART_KYC_ISSUERS` trusted.
#[tokio::test]
async fn a_configured_node_keeps_customers_in_postgresql_and_trusts_only_its_issuers() {
    use kyc_aml::store::KycStore;
    use kyc_aml::store::pg::PgBackend;
    let dir = tempfile::tempdir().unwrap();
    let provider = dir.path().join("city-idp.key");
    let printed = kyc(&["keygen", "--out", provider.to_str().unwrap()]);
    let public = printed
        .trim()
        .strip_prefix("issuer-public-key=")
        .expect("public key printed")
        .to_string();
    let schema = format!("kyc_node_e2e_{}", std::process::id());
    let libpq = "host=127.0.0.1 port=5432 user=postgres dbname=test";
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "role = \"gateway\"\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\n\
             data_dir = \"{}\"\npostgres_url = \"postgres://postgres@127.0.0.1:5432/test\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let run = |passphrase: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rempart"));
        cmd.arg("node")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .env("REMPART_KYC_ISSUERS", format!("city-idp:{public}"))
            .env("REMPART_KYC_POSTGRES_SCHEMA", &schema)
            .env("REMPART_CUSTODY_PASSPHRASE", "custody test passphrase")
            .env("REMPART_LEDGER_KEYS_PASSPHRASE", "ledger test passphrase")
            .env_remove("REMPART_KYC_POSTGRES")
            .env_remove("REMPART_COMPLIANCE_PASSPHRASE")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(p) = passphrase {
            cmd.env("REMPART_COMPLIANCE_PASSPHRASE", p);
        }
        cmd
    };
    // Outside the demo the gate's key store needs a passphrase; the failed start makes no API
    // key (the next start prints the admin's).
    let out = run(None).output().expect("run rempart node");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("REMPART_COMPLIANCE_PASSPHRASE"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut child = run(Some("compliance test passphrase"))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start rempart node");
    let stdout = child.stdout.take().expect("stdout");
    let mut grpc = String::new();
    let mut admin = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read stdout");
        if line == "ready" {
            break;
        }
        assert!(
            !line.starts_with("kyc-provider "),
            "no demo provider: {line}"
        );
        let fields: HashMap<&str, &str> = line
            .split_whitespace()
            .filter_map(|f| f.split_once('='))
            .collect();
        if line.starts_with("listening ") {
            grpc = fields["grpc"].to_string();
        } else if line.starts_with("api-key ") && fields["name"] == "admin" {
            admin = fields["token"].to_string();
        }
    }
    let node = Node {
        child,
        grpc,
        metrics: String::new(),
        tokens: HashMap::from([("admin".to_string(), admin.clone())]),
        lines: Vec::new(),
    };
    let ch = node.channel().await;
    let officer = pb::admin_client::AdminClient::new(ch.clone())
        .create_api_key(req(
            pb::CreateApiKeyRequest {
                account_id: "5".into(),
                roles: vec![pb::Role::ComplianceOfficer as i32],
                label: "officer".into(),
                expires_at: None,
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .token;
    let mut compliance = pb::compliance_client::ComplianceClient::new(ch.clone());
    let rogue = dir.path().join("rogue.key");
    kyc(&["keygen", "--out", rogue.to_str().unwrap()]);
    let untrusted = attest(&rogue, "demo-idp", 2001, "Dora Example");
    assert_eq!(
        refused(
            compliance
                .submit_attestation(req(submit(2001, &untrusted), &officer))
                .await
        ),
        (Code::PermissionDenied, 21004),
        "the demo's issuer is not trusted outside the demo"
    );
    let genuine = attest(&provider, "city-idp", 2001, "Dora Example");
    let status = compliance
        .submit_attestation(req(submit(2001, &genuine), &officer))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (status.tier, status.state),
        (2, pb::CustomerState::Active as i32)
    );
    // Outside the demo the illustrative limits apply: EUR 20,000 a day at tier 2.
    assert_eq!(status.daily_limit_eur, "20000");
    drop(node);

    // The customer is in PostgreSQL, in the configured schema.
    let store = kyc_aml::store::SqlStore::new(PgBackend::connect(libpq, &schema).await.unwrap());
    let customer = store.get_customer(2001).await.unwrap().expect("stored");
    assert_eq!(customer.profile.cdd, kyc_aml::customer::CddLevel::Standard);
    assert_eq!(store.attestations(2001).await.unwrap().len(), 1);
    store.backend().drop_schema().await.unwrap();
}
