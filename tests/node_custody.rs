//! End-to-end tests of custody in the node: the real `rempart demo` binary, talked to over
//! gRPC. Deposit addresses, deposits through the compliance gate, withdrawals through the
//! policy and the quorum to the ledger, rejections, a sanctioned beneficiary held in a case,
//! state across a restart, and a proof of reserves whose inclusion proof verifies with
//! custody's own verifier.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use common::{Node, code_of, req};
use rempart_proto::v1 as pb;
use rust_decimal::Decimal;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Starts the demo on `data_dir`; `tokens` are the keys of an earlier start (a restart prints
/// none).
fn start(data_dir: &Path, tokens: Option<HashMap<String, String>>) -> Node {
    start_with(data_dir, tokens, &[])
}

fn start_with(
    data_dir: &Path,
    tokens: Option<HashMap<String, String>>,
    envs: &[(&str, String)],
) -> Node {
    let mut node = common::start_with(data_dir, |c| {
        c.envs(envs.iter().map(|(k, v)| (*k, v.as_str())));
    });
    if let Some(tokens) = tokens {
        node.tokens = tokens;
    }
    node
}

impl Node {
    async fn custody(&self) -> pb::custody_client::CustodyClient<Channel> {
        pb::custody_client::CustodyClient::new(self.channel().await)
    }
}

fn dec(text: &str) -> Decimal {
    text.parse().expect("decimal")
}

/// (available, total) of an asset.
async fn balance(node: &Node, who: &str, asset: &str) -> (Decimal, Decimal) {
    let mut accounts = pb::accounts_client::AccountsClient::new(node.channel().await);
    let b = accounts
        .get_balances(req(
            pb::GetBalancesRequest {
                account_id: String::new(),
            },
            &node.token(who),
        ))
        .await
        .expect("balances")
        .into_inner();
    let b = b
        .balances
        .into_iter()
        .find(|b| b.asset == asset)
        .expect("asset listed");
    (dec(&b.available), dec(&b.total))
}

async fn address(node: &Node, who: &str, asset: &str) -> String {
    node.custody()
        .await
        .get_deposit_address(req(
            pb::GetDepositAddressRequest {
                asset: asset.into(),
                account_id: String::new(),
            },
            &node.token(who),
        ))
        .await
        .expect("deposit address")
        .into_inner()
        .address
}

fn withdrawal(amount: &str, beneficiary: &str, request_id: &str) -> pb::RequestWithdrawalRequest {
    pb::RequestWithdrawalRequest {
        asset: "CITY".into(),
        amount: amount.into(),
        destination: "0x1111111111111111111111111111111111111111".into(),
        client_request_id: request_id.into(),
        account_id: String::new(),
        beneficiary_name: beneficiary.into(),
    }
}

fn status_of(w: &pb::Withdrawal) -> pb::WithdrawalStatus {
    pb::WithdrawalStatus::try_from(w.status).expect("known status")
}

async fn transfer(node: &Node, id: &str) -> Result<pb::LedgerTransfer, Status> {
    let mut ledger = pb::ledger_client::LedgerClient::new(node.channel().await);
    ledger
        .get_transfer(req(
            pb::GetTransferRequest {
                transfer_id: id.into(),
            },
            &node.token("admin"),
        ))
        .await
        .map(|r| r.into_inner())
}

/// A compliance officer reviews a case and dismisses it (a false positive).
async fn dismiss(node: &Node, case_id: &str) {
    let mut compliance = pb::compliance_client::ComplianceClient::new(node.channel().await);
    for state in [pb::CaseState::UnderReview, pb::CaseState::Dismissed] {
        compliance
            .update_case(req(
                pb::UpdateCaseRequest {
                    case_id: case_id.into(),
                    state: state as i32,
                    note: "originator known to us; documents on file".into(),
                },
                &node.token("compliance"),
            ))
            .await
            .expect("case update");
    }
}

#[tokio::test]
async fn deposits_are_screened_credited_and_counted_in_the_proof_of_reserves() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), None);
    let mut custody = node.custody().await;

    // Addresses: per account and asset, stable, and only the owner (or a reader) asks.
    let alice_city = address(&node, "alice", "CITY").await;
    assert!(
        alice_city.starts_with("0x") && alice_city.len() == 42,
        "{alice_city}"
    );
    assert_eq!(address(&node, "alice", "CITY").await, alice_city);
    assert_ne!(address(&node, "bob", "CITY").await, alice_city);
    assert_ne!(address(&node, "alice", "EUR").await, alice_city);
    let err = custody
        .get_deposit_address(req(
            pb::GetDepositAddressRequest {
                asset: "CITY".into(),
                account_id: "1002".into(),
            },
            &node.token("alice"),
        ))
        .await
        .unwrap_err();
    assert_eq!((err.code(), code_of(&err)), (Code::PermissionDenied, 9011));

    // The chain watcher reports 100 CITY at alice's address: credited.
    let (available0, _) = balance(&node, "alice", "CITY").await;
    let deposit = pb::CreditDepositRequest {
        deposit_id: "tx-1:0".into(),
        account_id: "1001".into(),
        asset: "CITY".into(),
        amount: "100".into(),
        address: alice_city.clone(),
        originator_name: "Jane Doe".into(),
        originator_address: "0x2222222222222222222222222222222222222222".into(),
        // No travel-rule identification: the gate holds it for review (below).
        originator_identification: String::new(),
    };
    let err = custody
        .credit_deposit(req(deposit.clone(), &node.token("alice")))
        .await
        .unwrap_err();
    assert_eq!((err.code(), code_of(&err)), (Code::PermissionDenied, 9010));
    let mut elsewhere = deposit.clone();
    elsewhere.address = address(&node, "bob", "CITY").await;
    let err = custody
        .credit_deposit(req(elsewhere, &node.token("approver")))
        .await
        .unwrap_err();
    assert_eq!(
        (
            err.code(),
            code_of(&err),
            err.message().contains("deposit address")
        ),
        (Code::InvalidArgument, 9032, true)
    );
    let mut credited = custody
        .credit_deposit(req(deposit.clone(), &node.token("approver")))
        .await
        .expect("credit")
        .into_inner();
    if pb::DepositStatus::try_from(credited.status) == Ok(pb::DepositStatus::Held) {
        // The gate holds a deposit whose originator carries no identification beyond a name
        // (travel rule). Compliance reviews and dismisses the case; the watcher's repeat
        // re-asks the gate, which now approves, and the deposit is credited.
        assert_eq!(balance(&node, "alice", "CITY").await.0, available0);
        dismiss(&node, &credited.case_id).await;
        credited = custody
            .credit_deposit(req(deposit.clone(), &node.token("approver")))
            .await
            .expect("repeat after the case")
            .into_inner();
    }
    assert_eq!(
        pb::DepositStatus::try_from(credited.status),
        Ok(pb::DepositStatus::Credited),
        "{credited:?}"
    );
    assert!(credited.sequence > 0);
    assert_eq!(
        balance(&node, "alice", "CITY").await.0,
        available0 + dec("100")
    );
    // A repeated report is the same deposit, credited once.
    let again = custody
        .credit_deposit(req(deposit, &node.token("approver")))
        .await
        .expect("repeat")
        .into_inner();
    assert_eq!(again, credited);
    assert_eq!(
        balance(&node, "alice", "CITY").await.0,
        available0 + dec("100")
    );
    // On the ledger, from the omnibus account to alice's.
    assert!(credited.block_height > 0, "{credited:?}");
    let t = transfer(&node, &credited.transfer_id)
        .await
        .expect("on the ledger");
    assert_eq!((t.asset.as_str(), dec(&t.amount)), ("CITY", dec("100")));
    assert!(!t.gate_decision_hash.is_empty());

    // From a sanctioned originator: held in a case, not credited.
    let held = custody
        .credit_deposit(req(
            pb::CreditDepositRequest {
                deposit_id: "tx-2:0".into(),
                account_id: "1001".into(),
                asset: "CITY".into(),
                amount: "50".into(),
                address: alice_city.clone(),
                originator_name: "Ivan Petrovich Sidorov".into(),
                originator_address: "0x3333333333333333333333333333333333333333".into(),
                originator_identification: "SENDER-CUST-9".into(),
            },
            &node.token("approver"),
        ))
        .await
        .expect("held deposit answered")
        .into_inner();
    assert_eq!(
        pb::DepositStatus::try_from(held.status),
        Ok(pb::DepositStatus::Held),
        "{held:?}"
    );
    assert!(!held.case_id.is_empty());
    assert_ne!(held.case_id, credited.case_id);
    assert_eq!(
        balance(&node, "alice", "CITY").await.0,
        available0 + dec("100")
    );

    // Proof of reserves: alice's leaf verifies with custody's verifier against the root.
    let por = custody
        .get_proof_of_reserves(req(
            pb::GetProofOfReservesRequest {
                asset: "CITY".into(),
            },
            &node.token("bob"),
        ))
        .await
        .expect("proof of reserves")
        .into_inner();
    assert!(por.leaf_count >= 3);
    // Reserves cover the liabilities (no trade yet: no fees left the customers).
    assert!(
        dec(&por.total_reserves) >= dec(&por.total_liabilities),
        "{por:?}"
    );
    let proof = custody
        .get_inclusion_proof(req(
            pb::GetInclusionProofRequest {
                asset: "CITY".into(),
                account_id: String::new(),
            },
            &node.token("alice"),
        ))
        .await
        .expect("inclusion proof")
        .into_inner();
    assert_eq!(proof.root, por.liabilities_root);
    let (_, total) = balance(&node, "alice", "CITY").await;
    assert_eq!(dec(&proof.balance), total);
    let full = custody::por::InclusionProof::from_bytes(&proof.proof).expect("binary proof");
    let verified = full.verify().expect("the proof verifies");
    custody::por::check_published_root(&verified, &por.liabilities_root).expect("published root");
    assert_eq!(verified.account_id, 1001);
    assert_eq!(proof.path.len(), full.siblings.len());
    // Another account's proof is refused to a trader.
    let err = custody
        .get_inclusion_proof(req(
            pb::GetInclusionProofRequest {
                asset: "CITY".into(),
                account_id: "1001".into(),
            },
            &node.token("bob"),
        ))
        .await
        .unwrap_err();
    assert_eq!((err.code(), code_of(&err)), (Code::PermissionDenied, 9011));

    // Addresses survive a restart.
    let tokens = node.tokens.clone();
    drop(node);
    let node = start(dir.path(), Some(tokens));
    assert_eq!(address(&node, "alice", "CITY").await, alice_city);
}

#[tokio::test]
async fn withdrawals_go_through_policy_quorum_and_ledger_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), None);
    let mut custody = node.custody().await;
    let (available0, _) = balance(&node, "alice", "CITY").await;

    // 5 000 CITY: two approvals. The amount leaves the available balance at once.
    let w = custody
        .request_withdrawal(req(
            withdrawal("5000", "Jane Doe", "w1"),
            &node.token("alice"),
        ))
        .await
        .expect("request")
        .into_inner();
    assert_eq!(
        status_of(&w),
        pb::WithdrawalStatus::PendingApproval,
        "{w:?}"
    );
    assert_eq!((w.approvals, w.approvals_required), (0, 2));
    assert_eq!(w.policy_rule, "large");
    assert_eq!(
        balance(&node, "alice", "CITY").await.0,
        available0 - dec("5000")
    );
    // Idempotent on client_request_id; another request under the same id is refused.
    let again = custody
        .request_withdrawal(req(
            withdrawal("5000", "Jane Doe", "w1"),
            &node.token("alice"),
        ))
        .await
        .expect("repeat")
        .into_inner();
    assert_eq!(again.withdrawal_id, w.withdrawal_id);
    assert_eq!(
        balance(&node, "alice", "CITY").await.0,
        available0 - dec("5000")
    );
    let err = custody
        .request_withdrawal(req(withdrawal("7", "Jane Doe", "w1"), &node.token("alice")))
        .await
        .unwrap_err();
    assert_eq!((err.code(), code_of(&err)), (Code::AlreadyExists, 2011));
    // Bad input gets precise codes.
    for (bad, code) in [
        (withdrawal("0", "Jane Doe", "b1"), 2006),
        (withdrawal("1.0000001", "Jane Doe", "b2"), 1036),
        (withdrawal("1", "", "b3"), 9031),
    ] {
        let err = custody
            .request_withdrawal(req(bad, &node.token("alice")))
            .await
            .unwrap_err();
        assert_eq!(code_of(&err), code, "{err:?}");
    }
    let mut bad = withdrawal("1", "Jane Doe", "b4");
    bad.destination = "not an address".into();
    let err = custody
        .request_withdrawal(req(bad, &node.token("alice")))
        .await
        .unwrap_err();
    assert_eq!((code_of(&err), err.metadata().is_empty()), (9032, false));

    let approve = |id: &str| pb::ApproveWithdrawalRequest {
        withdrawal_id: id.into(),
    };
    // A trader cannot approve; an approver approves once.
    let err = custody
        .approve_withdrawal(req(approve(&w.withdrawal_id), &node.token("alice")))
        .await
        .unwrap_err();
    assert_eq!((err.code(), code_of(&err)), (Code::PermissionDenied, 9010));
    let one = custody
        .approve_withdrawal(req(approve(&w.withdrawal_id), &node.token("approver")))
        .await
        .expect("first approval")
        .into_inner();
    assert_eq!(
        (status_of(&one), one.approvals),
        (pb::WithdrawalStatus::PendingApproval, 1)
    );
    let err = custody
        .approve_withdrawal(req(approve(&w.withdrawal_id), &node.token("approver")))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), code_of(&err)),
        (Code::FailedPrecondition, 2016)
    );
    let err = custody
        .approve_withdrawal(req(approve("999"), &node.token("approver")))
        .await
        .unwrap_err();
    assert_eq!((err.code(), code_of(&err)), (Code::NotFound, 2012));

    // The approval survives a restart.
    let tokens = node.tokens.clone();
    drop(node);
    let node = start(dir.path(), Some(tokens));
    let mut custody = node.custody().await;
    let listed = custody
        .list_withdrawals(req(
            pb::ListWithdrawalsRequest::default(),
            &node.token("alice"),
        ))
        .await
        .expect("list")
        .into_inner();
    let after = listed
        .withdrawals
        .iter()
        .find(|x| x.withdrawal_id == w.withdrawal_id)
        .expect("still there");
    assert_eq!(after.approvals, 1);
    assert_eq!(after.approved_by, one.approved_by);

    // The second approver completes the quorum: signed, sent, on the ledger.
    let done = custody
        .approve_withdrawal(req(approve(&w.withdrawal_id), &node.token("admin")))
        .await
        .expect("second approval")
        .into_inner();
    assert_eq!(
        status_of(&done),
        pb::WithdrawalStatus::Completed,
        "{done:?}"
    );
    assert_eq!(done.approved_by.len(), 2);
    let t = transfer(&node, &done.transfer_id)
        .await
        .expect("on the ledger");
    assert_eq!(t.block_height, done.block_height);
    assert_eq!(dec(&t.amount), dec("5000"));
    assert_eq!(
        balance(&node, "alice", "CITY").await.0,
        available0 - dec("5000")
    );

    // The requester cannot approve their own request (the admin asks for alice).
    let mut for_alice = withdrawal("10", "Jane Doe", "w2");
    for_alice.account_id = "1001".into();
    let w2 = custody
        .request_withdrawal(req(for_alice, &node.token("admin")))
        .await
        .expect("admin request")
        .into_inner();
    assert_eq!((w2.approvals_required, w2.account_id.as_str()), (1, "1001"));
    let err = custody
        .approve_withdrawal(req(approve(&w2.withdrawal_id), &node.token("admin")))
        .await
        .unwrap_err();
    assert_eq!((err.code(), code_of(&err)), (Code::PermissionDenied, 2014));
    let sent = custody
        .approve_withdrawal(req(approve(&w2.withdrawal_id), &node.token("approver")))
        .await
        .expect("approval")
        .into_inner();
    assert_eq!(
        status_of(&sent),
        pb::WithdrawalStatus::Completed,
        "{sent:?}"
    );

    // A rejection returns the funds.
    let before = balance(&node, "alice", "CITY").await.0;
    let w3 = custody
        .request_withdrawal(req(
            withdrawal("20", "Jane Doe", "w3"),
            &node.token("alice"),
        ))
        .await
        .expect("request")
        .into_inner();
    assert_eq!(balance(&node, "alice", "CITY").await.0, before - dec("20"));
    let rejected = custody
        .reject_withdrawal(req(
            pb::RejectWithdrawalRequest {
                withdrawal_id: w3.withdrawal_id.clone(),
                reason: "destination unknown to us".into(),
            },
            &node.token("approver"),
        ))
        .await
        .expect("reject")
        .into_inner();
    assert_eq!(status_of(&rejected), pb::WithdrawalStatus::Rejected);
    assert!(rejected.rejection_reason.contains("destination unknown"));
    assert_eq!(balance(&node, "alice", "CITY").await.0, before);
    let err = custody
        .approve_withdrawal(req(approve(&w3.withdrawal_id), &node.token("approver")))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), code_of(&err)),
        (Code::FailedPrecondition, 2013)
    );

    // Listings are owner-scoped and paged.
    let bobs = custody
        .list_withdrawals(req(
            pb::ListWithdrawalsRequest::default(),
            &node.token("bob"),
        ))
        .await
        .expect("bob lists")
        .into_inner();
    assert!(bobs.withdrawals.is_empty());
    let err = custody
        .list_withdrawals(req(
            pb::ListWithdrawalsRequest {
                account_id: "1001".into(),
                ..Default::default()
            },
            &node.token("bob"),
        ))
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), 9011);
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = custody
            .list_withdrawals(req(
                pb::ListWithdrawalsRequest {
                    page: Some(pb::PageRequest {
                        page_size: 2,
                        page_token: token.clone(),
                    }),
                    ..Default::default()
                },
                &node.token("approver"),
            ))
            .await
            .expect("page")
            .into_inner();
        assert!(page.withdrawals.len() <= 2);
        seen.extend(page.withdrawals.into_iter().map(|w| w.withdrawal_id));
        token = page.page.unwrap_or_default().next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(
        seen,
        vec![w3.withdrawal_id, w2.withdrawal_id, w.withdrawal_id]
    );
    let completed = custody
        .list_withdrawals(req(
            pb::ListWithdrawalsRequest {
                status: pb::WithdrawalStatus::Completed as i32,
                ..Default::default()
            },
            &node.token("regulator"),
        ))
        .await
        .expect("by status")
        .into_inner();
    assert_eq!(completed.withdrawals.len(), 2);
}

#[tokio::test]
async fn a_withdrawal_to_a_sanctioned_beneficiary_is_held_with_a_case_until_compliance_decides() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), None);
    let mut custody = node.custody().await;
    let (available0, _) = balance(&node, "alice", "CITY").await;
    let held = custody
        .request_withdrawal(req(
            withdrawal("10", "Ivan Petrovich Sidorov", "s1"),
            &node.token("alice"),
        ))
        .await
        .expect("answered")
        .into_inner();
    assert_eq!(status_of(&held), pb::WithdrawalStatus::Held, "{held:?}");
    assert!(!held.case_id.is_empty());
    assert_eq!(
        balance(&node, "alice", "CITY").await.0,
        available0 - dec("10")
    );
    // The case exists for compliance.
    let mut compliance = pb::compliance_client::ComplianceClient::new(node.channel().await);
    let case = compliance
        .get_case(req(
            pb::GetCaseRequest {
                case_id: held.case_id.clone(),
            },
            &node.token("compliance"),
        ))
        .await
        .expect("case")
        .into_inner();
    assert_eq!(case.customer_id, "1001");
    // Approvers can neither release nor refund it.
    let err = custody
        .approve_withdrawal(req(
            pb::ApproveWithdrawalRequest {
                withdrawal_id: held.withdrawal_id.clone(),
            },
            &node.token("approver"),
        ))
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), 2013);
    let err = custody
        .reject_withdrawal(req(
            pb::RejectWithdrawalRequest {
                withdrawal_id: held.withdrawal_id.clone(),
                reason: String::new(),
            },
            &node.token("approver"),
        ))
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), 2013);
    assert_eq!(
        balance(&node, "alice", "CITY").await.0,
        available0 - dec("10")
    );
    // Compliance finds it a false positive and dismisses the case; the customer's repeat
    // re-asks the gate, which releases it to custody's policy, and it is paid out.
    dismiss(&node, &held.case_id).await;
    let released = custody
        .request_withdrawal(req(
            withdrawal("10", "Ivan Petrovich Sidorov", "s1"),
            &node.token("alice"),
        ))
        .await
        .expect("repeat")
        .into_inner();
    assert_eq!(released.withdrawal_id, held.withdrawal_id);
    assert_eq!(
        status_of(&released),
        pb::WithdrawalStatus::PendingApproval,
        "{released:?}"
    );
    let done = custody
        .approve_withdrawal(req(
            pb::ApproveWithdrawalRequest {
                withdrawal_id: held.withdrawal_id.clone(),
            },
            &node.token("approver"),
        ))
        .await
        .expect("approval")
        .into_inner();
    assert_eq!(
        status_of(&done),
        pb::WithdrawalStatus::Completed,
        "{done:?}"
    );
}

/// Debian's SoftHSM2 module (package `softhsm2`, installed by `.ci/install`).
const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

#[tokio::test]
async fn with_a_pkcs11_token_custody_keys_live_in_the_hsm() {
    let dir = tempfile::tempdir().unwrap();
    // A private SoftHSM2 token for this node.
    let hsm_dir = tempfile::tempdir().unwrap();
    let tokens = hsm_dir.path().join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = hsm_dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let output = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args(["--init-token", "--free", "--label", "custody"])
        .args(["--so-pin", "5678", "--pin", "1234"])
        .output()
        .expect("softhsm2-util runs (is softhsm2 installed? see .ci/install)");
    assert!(output.status.success(), "{output:?}");
    let envs = [
        ("SOFTHSM2_CONF", conf.display().to_string()),
        ("REMPART_CUSTODY_PKCS11_MODULE", SOFTHSM_MODULE.to_string()),
        ("REMPART_CUSTODY_PKCS11_TOKEN", "custody".to_string()),
        ("REMPART_CUSTODY_PKCS11_PIN", "1234".to_string()),
    ];
    let node = start_with(dir.path(), None, &envs);
    // No software key store was made.
    assert!(!dir.path().join("custody").join("keys").exists());
    let alice_city = address(&node, "alice", "CITY").await;
    let mut custody = node.custody().await;
    let w = custody
        .request_withdrawal(req(withdrawal("3", "Jane Doe", "h1"), &node.token("alice")))
        .await
        .expect("request")
        .into_inner();
    let done = custody
        .approve_withdrawal(req(
            pb::ApproveWithdrawalRequest {
                withdrawal_id: w.withdrawal_id,
            },
            &node.token("approver"),
        ))
        .await
        .expect("approval")
        .into_inner();
    assert_eq!(
        status_of(&done),
        pb::WithdrawalStatus::Completed,
        "{done:?}"
    );
    // A restart opens the same token: same addresses, the signed withdrawal replays.
    let tokens = node.tokens.clone();
    drop(node);
    let node = start_with(dir.path(), Some(tokens), &envs);
    assert_eq!(address(&node, "alice", "CITY").await, alice_city);
    let listed = node
        .custody()
        .await
        .list_withdrawals(req(
            pb::ListWithdrawalsRequest::default(),
            &node.token("alice"),
        ))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.withdrawals.len(), 1);
    assert_eq!(
        status_of(&listed.withdrawals[0]),
        pb::WithdrawalStatus::Completed
    );
}
