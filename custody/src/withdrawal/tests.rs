//! The withdrawal state machine end to end, with real software key stores and a failing one.

use super::*;
use crate::audit::verify;
use crate::policy::tests::sample_policy_json;
use hsm::software::SoftwareKeyStore;
use hsm::{HsmError, KeyInfo, PublicKey, SecretBytes, Signature};

const S: u64 = 1_000_000;
const DAY: u64 = 86_400 * S;
/// Day 10, 12:00 UTC: outside the night freeze.
const T0: u64 = 10 * DAY + 12 * 3600 * S;

const COLD: WalletId = 1;
const WARM: WalletId = 2;
const HOT: WalletId = 3;
const ADDRESS: u64 = 10;

/// A key store whose device is gone: every call fails. It tests custody's handling of a
/// failure, not the HSM.
#[derive(Debug)]
struct DeadDevice;

impl KeyStore for DeadDevice {
    fn generate_key(&self, _: &str, _: KeyAlgorithm) -> Result<KeyInfo, HsmError> {
        Err(HsmError::Device("unplugged".into()))
    }
    fn public_key(&self, _: &str) -> Result<PublicKey, HsmError> {
        Err(HsmError::Device("unplugged".into()))
    }
    fn sign(&self, _: &str, _: &[u8]) -> Result<Signature, HsmError> {
        Err(HsmError::Device("unplugged".into()))
    }
    fn wrap_secret(&self, _: &str, _: &SecretBytes) -> Result<Vec<u8>, HsmError> {
        Err(HsmError::Device("unplugged".into()))
    }
    fn unwrap_secret(&self, _: &str, _: &[u8]) -> Result<SecretBytes, HsmError> {
        Err(HsmError::Device("unplugged".into()))
    }
    fn destroy_key(&self, _: &str) -> Result<(), HsmError> {
        Err(HsmError::Device("unplugged".into()))
    }
    fn list_keys(&self) -> Result<Vec<KeyInfo>, HsmError> {
        Err(HsmError::Device("unplugged".into()))
    }
}

struct Fixture {
    custody: Custody,
    cold: Arc<SoftwareKeyStore>,
    hot: Arc<SoftwareKeyStore>,
}

fn wallets() -> Vec<WalletConfig> {
    let wallet = |id, tier, label: &str, algorithm, float_max_minor| WalletConfig {
        id,
        tier,
        asset: "EUR".into(),
        key_label: label.into(),
        algorithm,
        float_max_minor,
    };
    vec![
        wallet(COLD, Tier::Cold, "cold-eur", KeyAlgorithm::Secp256k1, None),
        wallet(WARM, Tier::Warm, "warm-eur", KeyAlgorithm::Secp256k1, None),
        wallet(
            HOT,
            Tier::Hot,
            "hot-eur",
            KeyAlgorithm::Ed25519,
            Some(2_000_000),
        ),
    ]
}

fn fixture_with(
    cold_store: Option<Arc<dyn KeyStore>>,
    hot_store: Option<Arc<dyn KeyStore>>,
) -> Fixture {
    let cold = Arc::new(SoftwareKeyStore::in_memory());
    cold.generate_key("cold-eur", KeyAlgorithm::Secp256k1)
        .unwrap();
    cold.generate_key("warm-eur", KeyAlgorithm::Secp256k1)
        .unwrap();
    cold.generate_key("audit", KeyAlgorithm::Ed25519).unwrap();
    let hot = Arc::new(SoftwareKeyStore::in_memory());
    hot.generate_key("hot-eur", KeyAlgorithm::Ed25519).unwrap();
    let signers = Signers {
        cold: cold_store.clone().unwrap_or_else(|| cold.clone()),
        warm: cold_store.unwrap_or_else(|| cold.clone()),
        hot: hot_store.unwrap_or_else(|| hot.clone()),
        audit_key_label: "audit".into(),
    };
    let config = CustodyConfig {
        wallets: wallets(),
        whitelist_delay_s: crate::limits::WHITELIST_DELAY_S_DEFAULT,
        policy: Policy::from_json(&sample_policy_json(1)).unwrap(),
    };
    let mut custody = Custody::new(config, signers).unwrap();
    custody
        .observe_balance(COLD, 100_000_000, T0 - 2 * DAY)
        .unwrap()
        .unwrap();
    custody
        .observe_balance(WARM, 5_000_000, T0 - 2 * DAY)
        .unwrap()
        .unwrap();
    custody
        .observe_balance(HOT, 1_000_000, T0 - 2 * DAY)
        .unwrap()
        .unwrap();
    custody
        .add_address(
            ADDRESS,
            "ledger:customer-42",
            "EUR",
            "customer",
            "root1",
            T0 - 2 * DAY,
        )
        .unwrap()
        .unwrap();
    Fixture { custody, cold, hot }
}

fn fixture() -> Fixture {
    fixture_with(None, None)
}

fn payout(id: WithdrawalId, amount_minor: u128) -> WithdrawalRequest {
    WithdrawalRequest {
        id,
        account: 42,
        initiator: "dana".into(),
        role: "customer".into(),
        from_wallet: HOT,
        to: Destination::External(ADDRESS),
        asset: "EUR".into(),
        amount_minor,
    }
}

fn refill(
    id: WithdrawalId,
    from_wallet: WalletId,
    to: WalletId,
    amount_minor: u128,
) -> WithdrawalRequest {
    WithdrawalRequest {
        id,
        account: 0,
        initiator: "ops-bot".into(),
        role: "ops".into(),
        from_wallet,
        to: Destination::Wallet(to),
        asset: "EUR".into(),
        amount_minor,
    }
}

#[test]
fn small_payout_is_allowed_signed_by_the_hot_store_and_submitted() {
    let mut f = fixture();
    assert_eq!(
        f.custody.request(payout(1, 5_000), T0).unwrap(),
        Ok(Status::ReadyToSign)
    );
    let Ok(Status::Signed(signed)) = f.custody.sign(1, T0 + 1).unwrap() else {
        panic!("not signed")
    };
    // The hot store's Ed25519 key signed exactly the transfer bytes.
    let pk = f.hot.public_key("hot-eur").unwrap();
    let key =
        ed25519_dalek::VerifyingKey::from_bytes(pk.bytes.as_slice().try_into().unwrap()).unwrap();
    let Signature::Ed25519(sig) = signed.signature else {
        panic!("wrong algorithm")
    };
    key.verify_strict(&signed.message, &ed25519_dalek::Signature::from_bytes(&sig))
        .unwrap();
    let request = &f.custody.withdrawal(1).unwrap().request;
    assert_eq!(
        signed.message,
        transfer_bytes(request, T0, Some("ledger:customer-42"))
    );
    assert_eq!(f.custody.submit(1, T0 + 2).unwrap().unwrap(), signed);
    assert_eq!(f.custody.balance(HOT), 1_000_000 - 5_000);
    assert_eq!(
        f.custody.submit(1, T0 + 3).unwrap(),
        Err(RejectCode::WrongState)
    );
    assert_eq!(
        f.custody.sign(1, T0 + 3).unwrap(),
        Err(RejectCode::WrongState)
    );
}

#[test]
fn flows_only_go_cold_warm_hot_and_out_to_whitelisted_addresses() {
    let mut f = fixture();
    let c = &mut f.custody;
    assert_eq!(
        c.request(refill(1, HOT, COLD, 10), T0).unwrap(),
        Err(RejectCode::FlowNotAllowed)
    );
    assert_eq!(
        c.request(refill(2, COLD, HOT, 10), T0).unwrap(),
        Err(RejectCode::FlowNotAllowed)
    );
    assert_eq!(
        c.request(refill(3, WARM, COLD, 10), T0).unwrap(),
        Err(RejectCode::FlowNotAllowed)
    );
    assert_eq!(
        c.request(
            WithdrawalRequest {
                from_wallet: WARM,
                ..payout(4, 10)
            },
            T0
        )
        .unwrap(),
        Err(RejectCode::FlowNotAllowed)
    );
    assert_eq!(
        c.request(
            WithdrawalRequest {
                from_wallet: COLD,
                ..payout(5, 10)
            },
            T0
        )
        .unwrap(),
        Err(RejectCode::FlowNotAllowed)
    );
    assert_eq!(
        c.request(
            WithdrawalRequest {
                to: Destination::External(99),
                ..payout(6, 10)
            },
            T0
        )
        .unwrap(),
        Err(RejectCode::DestinationNotWhitelisted)
    );
    assert_eq!(
        c.request(payout(7, 0), T0).unwrap(),
        Err(RejectCode::AmountZero)
    );
    assert_eq!(
        c.request(payout(8, 2_000_000), T0).unwrap(),
        Err(RejectCode::InsufficientBalance)
    );
    assert_eq!(
        c.request(
            WithdrawalRequest {
                asset: "CITY".into(),
                ..payout(9, 10)
            },
            T0
        )
        .unwrap(),
        Err(RejectCode::AssetMismatch)
    );
    assert_eq!(
        c.request(payout(9, 10), T0).unwrap(),
        Err(RejectCode::DuplicateId)
    );
    // A fresh address is unusable for 24 h.
    c.add_address(11, "ledger:new", "EUR", "customer", "root2", T0)
        .unwrap()
        .unwrap();
    let to_new = |id| WithdrawalRequest {
        to: Destination::External(11),
        ..payout(id, 10)
    };
    assert_eq!(
        c.request(to_new(20), T0 + 3600 * S).unwrap(),
        Err(RejectCode::DestinationNotYetActive)
    );
    assert_eq!(
        c.request(to_new(21), T0 + DAY).unwrap(),
        Ok(Status::ReadyToSign)
    );
    // Only administrators add addresses.
    assert_eq!(
        c.add_address(12, "ledger:x", "EUR", "customer", "dana", T0 + DAY)
            .unwrap(),
        Err(RejectCode::NotAnApprover)
    );
    // The hot float caps warm → hot refills: 1 000 000 held, limit 2 000 000.
    assert_eq!(
        c.request(refill(30, WARM, HOT, 1_000_001), T0 + DAY)
            .unwrap(),
        Err(RejectCode::HotFloatExceeded)
    );
    assert!(matches!(
        c.request(refill(31, WARM, HOT, 1_000_000), T0 + DAY)
            .unwrap(),
        Ok(Status::TimeLocked { .. })
    ));
    assert_eq!(
        c.withdrawal(1).unwrap().status,
        Status::Denied(RejectCode::FlowNotAllowed)
    );
}

#[test]
fn approvals_need_distinct_live_members_other_than_the_initiator() {
    let mut f = fixture();
    let c = &mut f.custody;
    assert!(matches!(
        c.request(payout(1, 60_000), T0).unwrap(),
        Ok(Status::AwaitingApprovals { required: 2, .. })
    ));
    assert_eq!(c.sign(1, T0).unwrap(), Err(RejectCode::WrongState));
    assert_eq!(
        c.approve(1, "mallory", T0).unwrap(),
        Err(RejectCode::NotAnApprover)
    );
    assert!(matches!(
        c.approve(1, "alice", T0 + S).unwrap(),
        Ok(Status::AwaitingApprovals { .. })
    ));
    assert_eq!(
        c.approve(1, "alice", T0 + 2 * S).unwrap(),
        Err(RejectCode::AlreadyApproved)
    );
    // Alice's approval expires after an hour: Bob alone is not enough.
    assert!(matches!(
        c.approve(1, "bob", T0 + S + 3600 * S).unwrap(),
        Ok(Status::AwaitingApprovals { .. })
    ));
    // Alice renews hers, and the quorum is met.
    assert_eq!(
        c.approve(1, "alice", T0 + S + 3601 * S).unwrap(),
        Ok(Status::ReadyToSign)
    );
    assert_eq!(
        c.approve(1, "carol", T0 + 3700 * S).unwrap(),
        Err(RejectCode::WrongState)
    );
    assert!(matches!(
        c.sign(1, T0 + 3700 * S).unwrap(),
        Ok(Status::Signed(_))
    ));

    // The initiator cannot approve their own request, even as a group member.
    let own = WithdrawalRequest {
        initiator: "alice".into(),
        ..payout(2, 60_000)
    };
    assert!(c.request(own, T0 + 3800 * S).unwrap().is_ok());
    assert_eq!(
        c.approve(2, "alice", T0 + 3801 * S).unwrap(),
        Err(RejectCode::InitiatorCannotApprove)
    );
    assert_eq!(
        c.approve(99, "bob", T0 + 3801 * S).unwrap(),
        Err(RejectCode::UnknownWithdrawal)
    );
}

#[test]
fn time_locks_can_be_cancelled_during_the_delay() {
    let mut f = fixture();
    let c = &mut f.custody;
    assert_eq!(
        c.request(payout(1, 20_000), T0).unwrap(),
        Ok(Status::TimeLocked {
            unlock_at_us: T0 + 3600 * S
        })
    );
    assert_eq!(
        c.sign(1, T0 + 3599 * S).unwrap(),
        Err(RejectCode::TimeLockActive)
    );
    assert_eq!(
        c.cancel(1, "eve", T0 + 3599 * S).unwrap(),
        Err(RejectCode::NotAllowedToCancel)
    );
    assert_eq!(
        c.cancel(1, "dana", T0 + 3599 * S).unwrap(),
        Ok(Status::Cancelled)
    );
    assert_eq!(
        c.sign(1, T0 + 3600 * S).unwrap(),
        Err(RejectCode::WrongState)
    );
    assert_eq!(
        c.cancel(1, "dana", T0 + 3600 * S).unwrap(),
        Err(RejectCode::WrongState)
    );

    assert!(c.request(payout(2, 20_000), T0 + 3600 * S).unwrap().is_ok());
    assert!(matches!(
        c.sign(2, T0 + 7200 * S).unwrap(),
        Ok(Status::Signed(_))
    ));
    // An administrator may cancel anyone's pending request.
    assert!(c.request(payout(3, 20_000), T0 + 7200 * S).unwrap().is_ok());
    assert_eq!(
        c.cancel(3, "root3", T0 + 7201 * S).unwrap(),
        Ok(Status::Cancelled)
    );
}

#[test]
fn cold_withdrawals_need_a_quorum_and_are_signed_by_the_hsm() {
    let mut f = fixture();
    let c = &mut f.custody;
    assert!(matches!(
        c.request(refill(1, COLD, WARM, 1_000_000), T0).unwrap(),
        Ok(Status::AwaitingApprovals { .. })
    ));
    c.approve(1, "alice", T0 + S).unwrap().unwrap();
    assert_eq!(
        c.approve(1, "bob", T0 + 2 * S).unwrap(),
        Ok(Status::ReadyToSign)
    );
    let Ok(Status::Signed(signed)) = c.sign(1, T0 + 3 * S).unwrap() else {
        panic!("not signed")
    };
    assert_eq!(signed.key_label, "cold-eur");
    assert!(matches!(signed.signature, Signature::Secp256k1 { .. }));
    c.submit(1, T0 + 4 * S).unwrap().unwrap();
    assert_eq!((c.balance(COLD), c.balance(WARM)), (99_000_000, 6_000_000));
    assert!(f.cold.public_key("cold-eur").is_ok());
}

#[test]
fn a_cold_rule_without_quorum_is_refused() {
    let json = sample_policy_json(1).replace(
        r#""then": { "approvals": { "group": "treasury", "required": 2 } } },
    { "name": "warm-refill""#,
        r#""then": "allow" },
    { "name": "warm-refill""#,
    );
    assert_ne!(json, sample_policy_json(1));
    let mut f = fixture();
    let c = &mut f.custody;
    let change = c
        .propose_policy(
            7,
            "root1",
            &json.replace("\"version\": 1", "\"version\": 2"),
            T0,
        )
        .unwrap();
    assert_eq!(change, Ok(()));
    c.approve_policy_change(7, "root2", T0 + S)
        .unwrap()
        .unwrap();
    assert_eq!(
        c.approve_policy_change(7, "root3", T0 + 2 * S).unwrap(),
        Ok(true)
    );
    assert_eq!(
        c.request(refill(1, COLD, WARM, 10), T0 + 3 * S).unwrap(),
        Err(RejectCode::ColdRequiresQuorum)
    );
}

#[test]
fn an_hsm_failure_leaves_the_withdrawal_unsigned() {
    let mut f = fixture_with(Some(Arc::new(DeadDevice)), Some(Arc::new(DeadDevice)));
    let c = &mut f.custody;
    assert_eq!(
        c.request(payout(1, 5_000), T0).unwrap(),
        Ok(Status::ReadyToSign)
    );
    let before = c.withdrawal(1).unwrap().clone();
    assert!(matches!(
        c.sign(1, T0 + S),
        Err(CustodyError::Hsm(HsmError::Device(_)))
    ));
    assert_eq!(c.withdrawal(1).unwrap(), &before);
    assert_eq!(
        c.submit(1, T0 + 2 * S).unwrap(),
        Err(RejectCode::WrongState)
    );
    assert_eq!(c.balance(HOT), 1_000_000);
    assert!(matches!(
        c.audit().entries().last().unwrap().event,
        AuditEvent::CommandRejected { .. }
    ));
    assert!(
        c.audit()
            .entries()
            .iter()
            .any(|e| matches!(e.event, AuditEvent::SigningFailed { id: 1, .. }))
    );
    // A checkpoint needs the HSM too: it fails and records nothing.
    assert!(c.checkpoint(T0 + 3 * S).is_err());
    assert!(c.audit().checkpoints().is_empty());
}

#[test]
fn velocity_denies_the_sixth_payout_of_the_day() {
    let mut f = fixture();
    let c = &mut f.custody;
    for id in 1..=5 {
        assert_eq!(
            c.request(payout(id, 1_000), T0 + u64::try_from(id).unwrap() * S)
                .unwrap(),
            Ok(Status::ReadyToSign)
        );
    }
    assert_eq!(
        c.request(payout(6, 1_000), T0 + 10 * S).unwrap(),
        Err(RejectCode::PolicyDenied)
    );
    assert_eq!(
        c.withdrawal(6).unwrap().rule.as_deref(),
        Some("account-velocity")
    );
    assert_eq!(
        c.request(payout(7, 1_000), T0 + DAY + S).unwrap(),
        Ok(Status::ReadyToSign)
    );
    // At night external payouts are frozen.
    assert_eq!(
        c.request(payout(8, 1_000), T0 + DAY + 11 * 3600 * S)
            .unwrap(),
        Err(RejectCode::PolicyDenied)
    );
}

#[test]
fn policy_changes_need_the_admin_quorum() {
    let mut f = fixture();
    let c = &mut f.custody;
    let v2 = sample_policy_json(2).replace("\"max_minor\": 10000 }", "\"max_minor\": 20000 }");
    assert_eq!(
        c.propose_policy(1, "dana", &v2, T0).unwrap(),
        Err(RejectCode::NotAnApprover)
    );
    assert_eq!(
        c.propose_policy(1, "root1", "{}", T0).unwrap(),
        Err(RejectCode::InvalidPolicy)
    );
    assert_eq!(
        c.propose_policy(1, "root1", &sample_policy_json(1), T0)
            .unwrap(),
        Err(RejectCode::InvalidPolicy)
    );
    assert_eq!(c.propose_policy(1, "root1", &v2, T0).unwrap(), Ok(()));
    assert_eq!(
        c.propose_policy(1, "root1", &v2, T0).unwrap(),
        Err(RejectCode::DuplicateId)
    );
    assert_eq!(
        c.approve_policy_change(1, "root1", T0).unwrap(),
        Err(RejectCode::InitiatorCannotApprove)
    );
    assert_eq!(
        c.approve_policy_change(1, "alice", T0).unwrap(),
        Err(RejectCode::NotAnApprover)
    );
    assert_eq!(
        c.approve_policy_change(2, "root2", T0).unwrap(),
        Err(RejectCode::UnknownPolicyChange)
    );
    assert_eq!(c.approve_policy_change(1, "root2", T0).unwrap(), Ok(false));
    assert_eq!(
        c.approve_policy_change(1, "root2", T0 + S).unwrap(),
        Err(RejectCode::AlreadyApproved)
    );
    assert_eq!(c.policy().document().version, 1);
    assert!(matches!(
        c.request(payout(1, 15_000), T0 + S).unwrap(),
        Ok(Status::TimeLocked { .. })
    ));
    assert_eq!(
        c.approve_policy_change(1, "root3", T0 + 2 * S).unwrap(),
        Ok(true)
    );
    assert_eq!(c.policy().document().version, 2);
    assert_eq!(
        c.request(payout(2, 15_000), T0 + 3 * S).unwrap(),
        Ok(Status::ReadyToSign)
    );
}

#[test]
fn every_step_is_in_a_verifiable_audit_log() {
    let mut f = fixture();
    let c = &mut f.custody;
    c.request(payout(1, 5_000), T0).unwrap().unwrap();
    c.sign(1, T0 + S).unwrap().unwrap();
    c.checkpoint(T0 + 2 * S).unwrap();
    c.request(payout(2, 60_000), T0 + 3 * S).unwrap().unwrap();
    c.approve(2, "alice", T0 + 4 * S).unwrap().unwrap();
    assert!(c.approve(2, "dana", T0 + 5 * S).unwrap().is_err());
    c.submit(1, T0 + 6 * S).unwrap().unwrap();
    c.checkpoint(T0 + 7 * S).unwrap();
    let kinds: Vec<&str> = c
        .audit()
        .entries()
        .iter()
        .map(|e| match e.event {
            AuditEvent::WithdrawalRequested { .. } => "request",
            AuditEvent::PolicyDecision { .. } => "decision",
            AuditEvent::Approved { .. } => "approval",
            AuditEvent::Signed { .. } => "signature",
            AuditEvent::Submitted { .. } => "submitted",
            AuditEvent::CommandRejected { .. } => "rejected",
            _ => "setup",
        })
        .filter(|k| *k != "setup")
        .collect();
    assert_eq!(
        kinds,
        [
            "request",
            "decision",
            "signature",
            "request",
            "decision",
            "approval",
            "rejected",
            "submitted"
        ]
    );
    let mut pk = [0u8; 32];
    pk.copy_from_slice(&f.cold.public_key("audit").unwrap().bytes);
    let report = verify(c.audit().entries(), c.audit().checkpoints(), &pk).unwrap();
    assert_eq!(report.unanchored, 0);
}

#[test]
fn time_never_goes_backwards() {
    let mut f = fixture();
    f.custody.request(payout(1, 5_000), T0).unwrap().unwrap();
    assert!(matches!(
        f.custody.sign(1, T0 - 1),
        Err(CustodyError::TimeWentBackwards { .. })
    ));
    assert_eq!(f.custody.withdrawal(1).unwrap().status, Status::ReadyToSign);
}

#[test]
fn bad_configurations_are_refused() {
    let signers = Signers {
        cold: Arc::new(DeadDevice),
        warm: Arc::new(DeadDevice),
        hot: Arc::new(DeadDevice),
        audit_key_label: "audit".into(),
    };
    let policy = Policy::from_json(&sample_policy_json(1)).unwrap();
    let mut twice = wallets();
    twice.push(twice[0].clone());
    let config = CustodyConfig {
        wallets: twice,
        whitelist_delay_s: 0,
        policy: policy.clone(),
    };
    assert!(matches!(
        Custody::new(config, signers.clone()),
        Err(CustodyError::Config(_))
    ));
    let mut float_on_cold = wallets();
    float_on_cold[0].float_max_minor = Some(1);
    let config = CustodyConfig {
        wallets: float_on_cold,
        whitelist_delay_s: 0,
        policy,
    };
    assert!(matches!(
        Custody::new(config, signers),
        Err(CustodyError::Config(_))
    ));
}
