//! A day in the life of the exchange, end to end over gRPC against the real `rempart demo`
//! binary: two new customers are onboarded with signed attestations, receive deposits, trade
//! CITY/EUR to a fill, see their balances and the settled delivery-versus-payment on the ledger
//! with its gate decision; one withdraws through policy and approval; a withdrawal to a
//! sanctioned beneficiary is held and a case opened, which a compliance officer works to an
//! exported goAML report; and every role is refused what it may not do.
//!
//! Each step checks what the user would check; the ledger is compared with the engine (the sum
//! of an account's ledger movements equals its balance).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{code_of, limit, req, start};
use rempart_proto::v1 as pb;
use rust_decimal::Decimal;
use tonic::transport::Channel;
use tonic::{Code, Status};

fn dec(s: &str) -> Decimal {
    s.parse()
        .unwrap_or_else(|e| panic!("{s:?} is not a decimal: {e}"))
}

/// Signs an identity attestation with the demo provider's key, as `rempart kyc attest` does for
/// an identity provider.
fn attest(data_dir: &Path, customer: u64, name: &str) -> Vec<u8> {
    let key: PathBuf = data_dir.join("compliance/demo-provider.key");
    let out = Command::new(env!("CARGO_BIN_EXE_rempart"))
        .args(["kyc", "attest", "--key"])
        .arg(&key)
        .args(["--issuer", "demo-idp", "--customer"])
        .arg(customer.to_string())
        .args([
            "--name",
            name,
            "--residence",
            "FR",
            "--birth-date",
            "1990-04-02",
        ])
        .output()
        .expect("rempart kyc attest");
    assert!(
        out.status.success(),
        "kyc attest failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

struct Clients {
    channel: Channel,
    trading: pb::trading_client::TradingClient<Channel>,
    accounts: pb::accounts_client::AccountsClient<Channel>,
    custody: pb::custody_client::CustodyClient<Channel>,
    compliance: pb::compliance_client::ComplianceClient<Channel>,
    ledger: pb::ledger_client::LedgerClient<Channel>,
    admin: pb::admin_client::AdminClient<Channel>,
}

impl Clients {
    fn new(ch: &Channel) -> Clients {
        Clients {
            channel: ch.clone(),
            trading: pb::trading_client::TradingClient::new(ch.clone()),
            accounts: pb::accounts_client::AccountsClient::new(ch.clone()),
            custody: pb::custody_client::CustodyClient::new(ch.clone()),
            compliance: pb::compliance_client::ComplianceClient::new(ch.clone()),
            ledger: pb::ledger_client::LedgerClient::new(ch.clone()),
            admin: pb::admin_client::AdminClient::new(ch.clone()),
        }
    }

    async fn key(&mut self, admin: &str, account: u64, role: pb::Role, label: &str) -> String {
        self.admin
            .create_api_key(req(
                pb::CreateApiKeyRequest {
                    account_id: account.to_string(),
                    roles: vec![role as i32],
                    label: label.into(),
                    ..Default::default()
                },
                admin,
            ))
            .await
            .expect("create api key")
            .into_inner()
            .token
    }

    async fn total(&mut self, token: &str, asset: &str) -> Decimal {
        let b = self
            .accounts
            .get_balances(req(pb::GetBalancesRequest::default(), token))
            .await
            .expect("balances")
            .into_inner();
        b.balances
            .iter()
            .find(|b| b.asset == asset)
            .map(|b| dec(&b.total))
            .unwrap_or_default()
    }

    async fn movements(&mut self, token: &str, asset: &str) -> Vec<pb::Transfer> {
        common::all_transfers(&self.channel, token, asset, 100).await
    }

    /// Polls the ledger until `done` holds for the account's movements in `asset` (settlement
    /// is asynchronous); a deadline for failure, not a latency assertion.
    async fn wait_movements(
        &mut self,
        token: &str,
        asset: &str,
        what: &str,
        done: impl Fn(&[pb::Transfer]) -> bool,
    ) -> Vec<pb::Transfer> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let m = self.movements(token, asset).await;
            if done(&m) {
                return m;
            }
            assert!(Instant::now() < deadline, "{what}: ledger shows {m:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn kind_of(t: &pb::Transfer) -> pb::TransferKind {
    pb::TransferKind::try_from(t.kind).unwrap_or(pb::TransferKind::Unspecified)
}

fn status_of(w: &pb::Withdrawal) -> pb::WithdrawalStatus {
    pb::WithdrawalStatus::try_from(w.status).unwrap_or(pb::WithdrawalStatus::Unspecified)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_in_the_life() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start(dir.path());
    let ch = Channel::from_shared(format!("http://{}", node.grpc))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut c = Clients::new(&ch);
    let t = |name: &str| node.tokens[name].clone();
    let (admin, approver, officer, regulator) =
        (t("admin"), t("approver"), t("compliance"), t("regulator"));

    // --- Morning: two new customers open accounts. ---
    let (dora_id, emil_id) = (3001u64, 3002u64);
    let dora = c.key(&admin, dora_id, pb::Role::Trader, "dora").await;
    let emil = c.key(&admin, emil_id, pb::Role::Trader, "emil").await;
    let approver2 = c
        .key(&admin, 1008, pb::Role::CustodyApprover, "second approver")
        .await;

    // Without KYC, no trading.
    let refused = c
        .trading
        .place_order(req(limit(pb::Side::Buy, "2", "1"), &dora))
        .await
        .expect_err("an order before KYC");
    assert_eq!(code_of(&refused), 9040, "KYC_REQUIRED: {refused:?}");

    for (id, name) in [(dora_id, "Dora Lindqvist"), (emil_id, "Emil Okonkwo")] {
        let status = c
            .compliance
            .submit_attestation(req(
                pb::SubmitAttestationRequest {
                    customer_id: id.to_string(),
                    provider: "demo-idp".into(),
                    attestation: attest(dir.path(), id, name),
                },
                &officer,
            ))
            .await
            .expect("attestation accepted")
            .into_inner();
        assert_eq!(status.state, pb::CustomerState::Active as i32, "{status:?}");
        assert!(status.tier >= 1, "{status:?}");
    }
    // A customer reads their own status, not another's.
    let own = c
        .compliance
        .get_customer_status(req(
            pb::GetCustomerStatusRequest {
                customer_id: dora_id.to_string(),
            },
            &dora,
        ))
        .await
        .expect("own status")
        .into_inner();
    assert_eq!(own.customer_id, dora_id.to_string());
    let other = c
        .compliance
        .get_customer_status(req(
            pb::GetCustomerStatusRequest {
                customer_id: dora_id.to_string(),
            },
            &emil,
        ))
        .await
        .expect_err("another customer's status");
    assert_eq!(other.code(), Code::PermissionDenied);

    // --- Deposits arrive at their deposit addresses. ---
    let mut deposit = async |token: &str, id: u64, asset: &str, amount: &str, n: u32| {
        let address = c
            .custody
            .get_deposit_address(req(
                pb::GetDepositAddressRequest {
                    asset: asset.into(),
                    account_id: String::new(),
                },
                token,
            ))
            .await
            .expect("deposit address")
            .into_inner()
            .address;
        assert!(!address.is_empty());
        let d = c
            .custody
            .credit_deposit(req(
                pb::CreditDepositRequest {
                    deposit_id: format!("chain-tx-{id}-{n}"),
                    account_id: id.to_string(),
                    asset: asset.into(),
                    amount: amount.into(),
                    address,
                    originator_name: "Banque Populaire Rives de Paris".into(),
                    originator_address: "FR7610207000012345678901234".into(),
                    // Travel rule: the sending institution identifies its customer.
                    originator_identification: format!("BPRP-CUST-{id}"),
                },
                &approver,
            ))
            .await
            .expect("deposit")
            .into_inner();
        assert_eq!(d.status, pb::DepositStatus::Credited as i32, "{d:?}");
    };
    deposit(&dora, dora_id, "EUR", "1000", 1).await;
    deposit(&emil, emil_id, "CITY", "500", 1).await;
    assert_eq!(c.total(&dora, "EUR").await, dec("1000"));
    assert_eq!(c.total(&emil, "CITY").await, dec("500"));

    // --- Midday: they trade CITY/EUR to a fill. ---
    let sell = c
        .trading
        .place_order(req(limit(pb::Side::Sell, "2", "10"), &emil))
        .await
        .expect("sell")
        .into_inner();
    assert_eq!(sell.status, pb::OrderStatus::Open as i32);
    let buy = c
        .trading
        .place_order(req(limit(pb::Side::Buy, "2", "10"), &dora))
        .await
        .expect("buy")
        .into_inner();
    assert_eq!(buy.status, pb::OrderStatus::Filled as i32, "{buy:?}");
    assert_eq!(buy.fills.len(), 1);
    let trade_id = buy.fills[0].trade_id.clone();
    assert_eq!(c.total(&dora, "CITY").await, dec("10"));
    assert_eq!(c.total(&emil, "CITY").await, dec("490"));
    let dora_eur = c.total(&dora, "EUR").await;
    assert!(
        dora_eur <= dec("980") && dora_eur > dec("979"),
        "Dora paid 20 EUR and a taker fee: {dora_eur}"
    );

    // The trade settles on the ledger as a linked DvP carrying the gate's decision.
    let city = c
        .wait_movements(&dora, "CITY", "trade settled", |m| {
            m.iter()
                .any(|t| kind_of(t) == pb::TransferKind::Trade && t.reference == trade_id)
        })
        .await;
    let leg = city
        .iter()
        .find(|t| kind_of(t) == pb::TransferKind::Trade && t.reference == trade_id)
        .expect("trade leg")
        .clone();
    assert_eq!(dec(&leg.amount), dec("10"));
    assert!(leg.block_height > 0);
    let on_ledger = c
        .ledger
        .get_transfer(req(
            pb::GetTransferRequest {
                transfer_id: leg.transfer_id.clone(),
            },
            &regulator,
        ))
        .await
        .expect("regulator reads the transfer")
        .into_inner();
    assert_eq!(on_ledger.gate_decision_hash.len(), 64, "{on_ledger:?}");
    assert_ne!(on_ledger.gate_decision_hash, "0".repeat(64));
    assert!(!on_ledger.linked_id.is_empty(), "a DvP leg is linked");
    assert_eq!(on_ledger.block_height, leg.block_height);
    let block = c
        .ledger
        .get_block(req(
            pb::GetBlockRequest {
                height: leg.block_height,
            },
            &regulator,
        ))
        .await
        .expect("block")
        .into_inner();
    let chain: Vec<&pb::LedgerTransfer> = block
        .transfers
        .iter()
        .filter(|x| x.linked_id == on_ledger.linked_id)
        .collect();
    assert!(
        chain.len() >= 2,
        "both legs (and fees) settle in one chain: {chain:?}"
    );
    assert!(chain.iter().all(|x| x.gate_decision_hash.len() == 64));
    // Ledger and engine agree: the account's movements add up to its balance.
    for (token, asset) in [(&dora, "EUR"), (&dora, "CITY"), (&emil, "CITY")] {
        let want = c.total(token, asset).await;
        let m = c
            .wait_movements(token, asset, "ledger = engine", |m| {
                m.iter().map(|t| dec(&t.amount)).sum::<Decimal>() == want
            })
            .await;
        assert!(!m.is_empty());
    }

    // --- Afternoon: Dora withdraws euros through policy and approval. ---
    let w = c
        .custody
        .request_withdrawal(req(
            pb::RequestWithdrawalRequest {
                asset: "EUR".into(),
                amount: "100".into(),
                destination: "0x5a0b54d5dc17e0aadc383d2db43b0a0d3e029c4c".into(),
                client_request_id: "dora-w-1".into(),
                account_id: String::new(),
                beneficiary_name: "Dora Lindqvist".into(),
            },
            &dora,
        ))
        .await
        .expect("withdrawal requested")
        .into_inner();
    assert_eq!(
        status_of(&w),
        pb::WithdrawalStatus::PendingApproval,
        "{w:?}"
    );
    assert_eq!(c.total(&dora, "EUR").await, dora_eur - dec("100"));
    // The same request id is the same withdrawal.
    let again = c
        .custody
        .request_withdrawal(req(
            pb::RequestWithdrawalRequest {
                asset: "EUR".into(),
                amount: "100".into(),
                destination: "0x5a0b54d5dc17e0aadc383d2db43b0a0d3e029c4c".into(),
                client_request_id: "dora-w-1".into(),
                account_id: String::new(),
                beneficiary_name: "Dora Lindqvist".into(),
            },
            &dora,
        ))
        .await
        .expect("idempotent retry")
        .into_inner();
    assert_eq!(again.withdrawal_id, w.withdrawal_id);
    assert_eq!(c.total(&dora, "EUR").await, dora_eur - dec("100"));
    // Neither the customer nor another trader can approve it.
    for token in [&dora, &emil] {
        let e = c
            .custody
            .approve_withdrawal(req(
                pb::ApproveWithdrawalRequest {
                    withdrawal_id: w.withdrawal_id.clone(),
                },
                token,
            ))
            .await
            .expect_err("a trader approving");
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    }
    let mut w = c
        .custody
        .approve_withdrawal(req(
            pb::ApproveWithdrawalRequest {
                withdrawal_id: w.withdrawal_id.clone(),
            },
            &approver,
        ))
        .await
        .expect("approved")
        .into_inner();
    if status_of(&w) == pb::WithdrawalStatus::PendingApproval {
        // The same approver cannot count twice toward the quorum.
        let twice = c
            .custody
            .approve_withdrawal(req(
                pb::ApproveWithdrawalRequest {
                    withdrawal_id: w.withdrawal_id.clone(),
                },
                &approver,
            ))
            .await
            .expect_err("approving twice");
        assert_ne!(code_of(&twice), 0, "{twice:?}");
        w = c
            .custody
            .approve_withdrawal(req(
                pb::ApproveWithdrawalRequest {
                    withdrawal_id: w.withdrawal_id.clone(),
                },
                &approver2,
            ))
            .await
            .expect("second approval")
            .into_inner();
    }
    assert!(
        matches!(
            status_of(&w),
            pb::WithdrawalStatus::Sent | pb::WithdrawalStatus::Completed
        ),
        "{w:?}"
    );
    assert!(
        w.approvals >= 1 && w.approvals >= w.approvals_required,
        "{w:?}"
    );
    c.wait_movements(&dora, "EUR", "withdrawal settled", |m| {
        m.iter().any(|t| kind_of(t) == pb::TransferKind::Withdrawal)
    })
    .await;

    // --- A withdrawal to a sanctioned beneficiary is held and a case opened. ---
    let emil_city = c.total(&emil, "CITY").await;
    let held = c
        .custody
        .request_withdrawal(req(
            pb::RequestWithdrawalRequest {
                asset: "CITY".into(),
                amount: "50".into(),
                destination: "0x9b2f6c1f3e8d4a7b5c0e1d2f3a4b5c6d7e8f9a0b".into(),
                client_request_id: "emil-w-1".into(),
                account_id: String::new(),
                beneficiary_name: "Ivan Petrovich Sidorov".into(),
            },
            &emil,
        ))
        .await
        .expect("a held withdrawal is an answer, not an error")
        .into_inner();
    assert_eq!(status_of(&held), pb::WithdrawalStatus::Held, "{held:?}");
    assert!(!held.case_id.is_empty());
    assert_eq!(c.total(&emil, "CITY").await, emil_city - dec("50"));
    let e = c
        .custody
        .approve_withdrawal(req(
            pb::ApproveWithdrawalRequest {
                withdrawal_id: held.withdrawal_id.clone(),
            },
            &approver,
        ))
        .await
        .expect_err("approvers cannot release a held withdrawal");
    assert_ne!(code_of(&e), 0, "{e:?}");

    let cases = c
        .compliance
        .list_cases(req(pb::ListCasesRequest::default(), &officer))
        .await
        .expect("cases")
        .into_inner();
    assert!(
        cases.cases.iter().any(|k| k.case_id == held.case_id),
        "{cases:?}"
    );
    let case = c
        .compliance
        .update_case(req(
            pb::UpdateCaseRequest {
                case_id: held.case_id.clone(),
                state: pb::CaseState::UnderReview as i32,
                note: "beneficiary matches a listed person; reviewing".into(),
            },
            &officer,
        ))
        .await
        .expect("officer works the case")
        .into_inner();
    assert_eq!(case.state, pb::CaseState::UnderReview as i32);
    let report = c
        .compliance
        .export_report(req(
            pb::ExportReportRequest {
                case_id: held.case_id.clone(),
                format: pb::ReportFormat::GoamlXml as i32,
            },
            &regulator,
        ))
        .await
        .expect("the regulator exports the goAML report")
        .into_inner();
    let xml = String::from_utf8(report.content.clone()).expect("utf-8 XML");
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert!(
        xml.contains("<report>") || xml.contains("<report "),
        "{xml}"
    );
    assert!(
        !xml.contains("Dora Lindqvist"),
        "another customer's data in the report"
    );
    assert_eq!(report.sha256.len(), 64);

    // --- Every role is refused what it may not do. ---
    let denied = |r: Result<(), Status>, what: &str| {
        let e = r.expect_err(what);
        assert_eq!(e.code(), Code::PermissionDenied, "{what}: {e:?}");
    };
    let page = || pb::ListCasesRequest::default();
    denied(
        c.compliance
            .list_cases(req(page(), &dora))
            .await
            .map(|_| ()),
        "a trader lists cases",
    );
    denied(
        c.compliance
            .update_case(req(
                pb::UpdateCaseRequest {
                    case_id: held.case_id.clone(),
                    state: pb::CaseState::Dismissed as i32,
                    note: "nothing to see".into(),
                },
                &regulator,
            ))
            .await
            .map(|_| ()),
        "a regulator (read-only) updates a case",
    );
    denied(
        c.compliance
            .export_report(req(
                pb::ExportReportRequest {
                    case_id: held.case_id.clone(),
                    format: pb::ReportFormat::GoamlXml as i32,
                },
                &approver,
            ))
            .await
            .map(|_| ()),
        "a custody approver exports a report",
    );
    denied(
        c.compliance
            .submit_attestation(req(
                pb::SubmitAttestationRequest {
                    customer_id: emil_id.to_string(),
                    provider: "demo-idp".into(),
                    attestation: attest(dir.path(), emil_id, "Emil Okonkwo"),
                },
                &emil,
            ))
            .await
            .map(|_| ()),
        "a customer attests themself",
    );
    denied(
        c.custody
            .credit_deposit(req(
                pb::CreditDepositRequest {
                    deposit_id: "forged".into(),
                    account_id: emil_id.to_string(),
                    asset: "EUR".into(),
                    amount: "1000000".into(),
                    address: "x".into(),
                    originator_name: "Emil Okonkwo".into(),
                    originator_address: String::new(),
                    originator_identification: String::new(),
                },
                &emil,
            ))
            .await
            .map(|_| ()),
        "a customer credits their own deposit",
    );
    denied(
        c.custody
            .list_withdrawals(req(
                pb::ListWithdrawalsRequest {
                    account_id: dora_id.to_string(),
                    ..Default::default()
                },
                &emil,
            ))
            .await
            .map(|_| ()),
        "a customer lists another's withdrawals",
    );
    denied(
        c.accounts
            .get_balances(req(
                pb::GetBalancesRequest {
                    account_id: dora_id.to_string(),
                },
                &emil,
            ))
            .await
            .map(|_| ()),
        "a customer reads another's balances",
    );
    denied(
        c.trading
            .place_order(req(limit(pb::Side::Buy, "2", "1"), &regulator))
            .await
            .map(|_| ()),
        "a regulator trades",
    );
    denied(
        c.ledger
            .get_block(req(
                pb::GetBlockRequest {
                    height: leg.block_height,
                },
                &dora,
            ))
            .await
            .map(|_| ()),
        "a trader reads whole blocks",
    );
    denied(
        c.admin
            .create_api_key(req(
                pb::CreateApiKeyRequest {
                    account_id: emil_id.to_string(),
                    roles: vec![pb::Role::Admin as i32],
                    label: "escalation".into(),
                    ..Default::default()
                },
                &officer,
            ))
            .await
            .map(|_| ()),
        "a compliance officer mints an admin key",
    );
    denied(
        c.custody
            .reject_withdrawal(req(
                pb::RejectWithdrawalRequest {
                    withdrawal_id: held.withdrawal_id.clone(),
                    reason: "mine".into(),
                },
                &emil,
            ))
            .await
            .map(|_| ()),
        "a customer rejects a withdrawal",
    );
}
