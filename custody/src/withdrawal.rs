//! The withdrawal state machine: request → policy → approvals or time lock → signing →
//! submission for settlement.
//!
//! Deterministic: every command carries its time (UTC microseconds) and the caller chooses
//! ids. The key stores are handed in at construction (the one seam for the HSM), so a test can
//! put a failing store there. A key-store failure returns `Err` and leaves the withdrawal in
//! its pre-signing state: there is never a half-signed withdrawal.
//!
//! ```text
//!            ┌──────── deny / refused ───────▶ Denied
//! request ───┼── allow ─────────────────────▶ ReadyToSign ── sign ──▶ Signed ── submit ──▶ Submitted
//!            ├── approvals ─▶ AwaitingApprovals ── m live approvals ──▲
//!            └── time lock ─▶ TimeLocked ───── delay passed, sign ────┘
//!   AwaitingApprovals / TimeLocked / ReadyToSign ── cancel ──▶ Cancelled
//! ```
//!
//! Every command, accepted or refused, is written to the audit log.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use hsm::{KeyAlgorithm, KeyStore};
use sha2::{Digest, Sha256};

use crate::audit::{AuditEvent, AuditLog, Checkpoint};
use crate::limits::{POLICY_CHANGES_PENDING_MAX, WALLETS_MAX, WITHDRAWALS_MAX};
use crate::policy::{COLD_QUORUM_MIN, Outcome, Policy, PolicyRequest};
use crate::tier::{Destination, Tier, WalletId, check_flow};
use crate::velocity::{VelocityKey, VelocityLedger};
use crate::whitelist::AddressBook;
use crate::{CustodyError, RejectCode};

/// A withdrawal's id, chosen by the caller (an idempotency key).
pub type WithdrawalId = u128;

/// A command's result: `Err` when the machine failed, `Ok(Err(code))` when custody refused.
pub type Reply<T> = Result<Result<T, RejectCode>, CustodyError>;

const TRANSFER_DOMAIN: &[u8] = b"rempart/custody/transfer/v1";

/// One wallet custody controls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletConfig {
    /// Its id.
    pub id: WalletId,
    /// Its tier, which decides its key store and the paths out of it.
    pub tier: Tier,
    /// The one asset it holds.
    pub asset: String,
    /// Label of its signing key in its tier's key store.
    pub key_label: String,
    /// The key's algorithm (secp256k1 signs a SHA-256 digest, Ed25519 the message).
    pub algorithm: KeyAlgorithm,
    /// For a hot wallet: the most it may hold (its float).
    pub float_max_minor: Option<u128>,
}

/// The key stores, one per tier, and the audit checkpoint key.
#[derive(Debug, Clone)]
pub struct Signers {
    /// The HSM holding cold keys.
    pub cold: Arc<dyn KeyStore>,
    /// The store holding warm keys.
    pub warm: Arc<dyn KeyStore>,
    /// The software store holding hot keys.
    pub hot: Arc<dyn KeyStore>,
    /// Label of the Ed25519 audit checkpoint key, in the cold store (the HSM).
    pub audit_key_label: String,
}

/// What custody starts with.
#[derive(Debug, Clone)]
pub struct CustodyConfig {
    /// The wallets.
    pub wallets: Vec<WalletConfig>,
    /// Seconds before a new address-book entry is usable.
    pub whitelist_delay_s: u64,
    /// The initial policy.
    pub policy: Policy,
}

/// A withdrawal request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithdrawalRequest {
    /// The caller's id for it.
    pub id: WithdrawalId,
    /// The customer account it is for (velocity is counted per account).
    pub account: u64,
    /// Who asks.
    pub initiator: String,
    /// Their role, for the policy.
    pub role: String,
    /// The source wallet.
    pub from_wallet: WalletId,
    /// Where it goes.
    pub to: Destination,
    /// Asset code.
    pub asset: String,
    /// Amount in minor units.
    pub amount_minor: u128,
}

/// A transfer as signed, ready for settlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTransfer {
    /// The canonical transfer bytes (see [`transfer_bytes`]).
    pub message: Vec<u8>,
    /// The key that signed.
    pub key_label: String,
    /// The signature (over SHA-256 of `message` for secp256k1, over `message` for Ed25519).
    pub signature: hsm::Signature,
}

/// Where a withdrawal stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Refused (by a check or by the policy); final.
    Denied(RejectCode),
    /// Waiting for approvals: approver → time of their approval.
    AwaitingApprovals {
        /// The group the rule names.
        group: String,
        /// Approvals needed.
        required: u8,
        /// Approvals so far (live or expired).
        approvals: BTreeMap<String, u64>,
    },
    /// Waiting for the time lock to run out.
    TimeLocked {
        /// When it may be signed.
        unlock_at_us: u64,
    },
    /// Cleared; the next step is signing.
    ReadyToSign,
    /// Signed, not yet handed to settlement.
    Signed(SignedTransfer),
    /// Handed to settlement; final.
    Submitted(SignedTransfer),
    /// Cancelled; final.
    Cancelled,
}

/// A withdrawal and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withdrawal {
    /// The request.
    pub request: WithdrawalRequest,
    /// When it was made.
    pub requested_us: u64,
    /// The rule that decided, if the policy was reached.
    pub rule: Option<String>,
    /// Where it stands.
    pub status: Status,
}

#[derive(Debug, Clone)]
struct PendingPolicyChange {
    proposer: String,
    policy: Policy,
    approvals: BTreeMap<String, u64>,
}

/// Custody's withdrawal side.
#[derive(Debug)]
pub struct Custody {
    wallets: BTreeMap<WalletId, WalletConfig>,
    balances: BTreeMap<WalletId, u128>,
    address_book: AddressBook,
    policy: Policy,
    velocity: VelocityLedger,
    withdrawals: HashMap<WithdrawalId, Withdrawal>,
    policy_changes: BTreeMap<u64, PendingPolicyChange>,
    audit: AuditLog,
    signers: Signers,
    last_us: u64,
}

/// The bytes custody signs for a transfer: domain, id, source wallet, destination, asset,
/// amount and request time, all fixed-width big-endian or length-prefixed.
pub fn transfer_bytes(
    request: &WithdrawalRequest,
    requested_us: u64,
    to_address: Option<&str>,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(128);
    m.extend_from_slice(TRANSFER_DOMAIN);
    m.extend_from_slice(&request.id.to_be_bytes());
    m.extend_from_slice(&request.from_wallet.to_be_bytes());
    match (&request.to, to_address) {
        (Destination::Wallet(w), _) => {
            m.push(0);
            m.extend_from_slice(&w.to_be_bytes());
        }
        (Destination::External(id), address) => {
            m.push(1);
            m.extend_from_slice(&id.to_be_bytes());
            let address = address.unwrap_or_default().as_bytes();
            m.extend_from_slice(&(address.len() as u16).to_be_bytes());
            m.extend_from_slice(address);
        }
    }
    m.push(request.asset.len() as u8);
    m.extend_from_slice(request.asset.as_bytes());
    m.extend_from_slice(&request.amount_minor.to_be_bytes());
    m.extend_from_slice(&requested_us.to_be_bytes());
    m
}

fn destination_text(to: &Destination) -> String {
    match to {
        Destination::Wallet(w) => format!("wallet:{w}"),
        Destination::External(a) => format!("address:{a}"),
    }
}

fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Allow => "allow".into(),
        Outcome::Deny => "deny".into(),
        Outcome::Approvals { group, required } => format!("approvals {required} of {group}"),
        Outcome::TimeLock { delay_s } => format!("time lock {delay_s} s"),
    }
}

impl Custody {
    /// Starts custody with its wallets, policy and key stores.
    pub fn new(config: CustodyConfig, signers: Signers) -> Result<Self, CustodyError> {
        if config.wallets.len() > WALLETS_MAX {
            return Err(CustodyError::Config(format!(
                "more than {WALLETS_MAX} wallets"
            )));
        }
        let mut wallets = BTreeMap::new();
        for w in config.wallets {
            if w.float_max_minor.is_some() && w.tier != Tier::Hot {
                return Err(CustodyError::Config(format!(
                    "wallet {}: only hot wallets have a float limit",
                    w.id
                )));
            }
            if let Some(dup) = wallets.insert(w.id, w) {
                return Err(CustodyError::Config(format!(
                    "wallet {} listed twice",
                    dup.id
                )));
            }
        }
        let velocity = VelocityLedger::new(config.policy.velocity_horizon_s());
        Ok(Self {
            wallets,
            balances: BTreeMap::new(),
            address_book: AddressBook::new(config.whitelist_delay_s),
            policy: config.policy,
            velocity,
            withdrawals: HashMap::new(),
            policy_changes: BTreeMap::new(),
            audit: AuditLog::new(),
            signers,
            last_us: 0,
        })
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// A withdrawal by id.
    pub fn withdrawal(&self, id: WithdrawalId) -> Option<&Withdrawal> {
        self.withdrawals.get(&id)
    }

    /// A wallet's known balance.
    pub fn balance(&self, wallet: WalletId) -> u128 {
        self.balances.get(&wallet).copied().unwrap_or(0)
    }

    fn advance(&mut self, now_us: u64) -> Result<(), CustodyError> {
        if now_us < self.last_us {
            return Err(CustodyError::TimeWentBackwards {
                now_us,
                last_us: self.last_us,
            });
        }
        self.last_us = now_us;
        Ok(())
    }

    fn refuse<T>(&mut self, now_us: u64, id: u128, by: &str, code: RejectCode) -> Reply<T> {
        self.audit.append(
            now_us,
            AuditEvent::CommandRejected {
                id,
                by: by.to_owned(),
                code: code.code(),
            },
        )?;
        Ok(Err(code))
    }

    fn is_admin(&self, who: &str) -> bool {
        let doc = self.policy.document();
        self.policy
            .group(&doc.admin_group)
            .is_some_and(|m| m.iter().any(|a| a == who))
    }

    /// Records a wallet balance read from the ledger.
    pub fn observe_balance(
        &mut self,
        wallet: WalletId,
        balance_minor: u128,
        now_us: u64,
    ) -> Reply<()> {
        self.advance(now_us)?;
        if !self.wallets.contains_key(&wallet) {
            return self.refuse(
                now_us,
                u128::from(wallet),
                "ledger",
                RejectCode::UnknownWallet,
            );
        }
        self.balances.insert(wallet, balance_minor);
        self.audit.append(
            now_us,
            AuditEvent::BalanceObserved {
                wallet,
                balance_minor,
            },
        )?;
        Ok(Ok(()))
    }

    /// Adds an address-book entry; returns when it becomes usable. Only administrators add.
    pub fn add_address(
        &mut self,
        id: u64,
        address: &str,
        asset: &str,
        tag: &str,
        by: &str,
        now_us: u64,
    ) -> Reply<u64> {
        self.advance(now_us)?;
        if !self.is_admin(by) {
            return self.refuse(now_us, u128::from(id), by, RejectCode::NotAnApprover);
        }
        let active_from_us = match self.address_book.add(id, address, asset, tag, now_us) {
            Ok(entry) => entry.active_from_us,
            Err(code) => return self.refuse(now_us, u128::from(id), by, code),
        };
        self.audit.append(
            now_us,
            AuditEvent::AddressAdded {
                id,
                address: address.to_owned(),
                asset: asset.to_owned(),
                tag: tag.to_owned(),
                by: by.to_owned(),
                active_from_us,
            },
        )?;
        Ok(Ok(active_from_us))
    }

    /// Checks a request against wallets, flows, the address book and balances; returns the
    /// source tier and the destination tag (external) on success.
    fn precheck(
        &self,
        req: &WithdrawalRequest,
        now_us: u64,
    ) -> Result<(Tier, Option<String>), RejectCode> {
        if req.amount_minor == 0 {
            return Err(RejectCode::AmountZero);
        }
        let from = self
            .wallets
            .get(&req.from_wallet)
            .ok_or(RejectCode::UnknownWallet)?;
        if from.asset != req.asset {
            return Err(RejectCode::AssetMismatch);
        }
        let tag = match &req.to {
            Destination::Wallet(w) => {
                let to = self.wallets.get(w).ok_or(RejectCode::UnknownWallet)?;
                check_flow(from.tier, Some(to.tier))?;
                if to.asset != req.asset {
                    return Err(RejectCode::AssetMismatch);
                }
                if let Some(float_max) = to.float_max_minor
                    && self.balance(*w).saturating_add(req.amount_minor) > float_max
                {
                    return Err(RejectCode::HotFloatExceeded);
                }
                None
            }
            Destination::External(a) => {
                check_flow(from.tier, None)?;
                Some(
                    self.address_book
                        .usable(*a, &req.asset, now_us)?
                        .tag
                        .clone(),
                )
            }
        };
        if self.balance(req.from_wallet) < req.amount_minor {
            return Err(RejectCode::InsufficientBalance);
        }
        Ok((from.tier, tag))
    }

    /// A new withdrawal request: checks, then the policy. Returns where it stands.
    pub fn request(&mut self, req: WithdrawalRequest, now_us: u64) -> Reply<Status> {
        self.advance(now_us)?;
        if self.withdrawals.contains_key(&req.id) {
            return self.refuse(now_us, req.id, &req.initiator, RejectCode::DuplicateId);
        }
        if self.withdrawals.len() >= WITHDRAWALS_MAX {
            return self.refuse(
                now_us,
                req.id,
                &req.initiator,
                RejectCode::TooManyWithdrawals,
            );
        }
        self.audit.append(
            now_us,
            AuditEvent::WithdrawalRequested {
                id: req.id,
                account: req.account,
                initiator: req.initiator.clone(),
                role: req.role.clone(),
                from_wallet: req.from_wallet,
                to: destination_text(&req.to),
                asset: req.asset.clone(),
                amount_minor: req.amount_minor,
            },
        )?;
        let (tier, tag) = match self.precheck(&req, now_us) {
            Ok(found) => found,
            Err(code) => return self.deny(req, now_us, code, None),
        };
        let policy_request = PolicyRequest {
            asset: &req.asset,
            amount_minor: req.amount_minor,
            source_tier: tier,
            wallet: req.from_wallet,
            account: req.account,
            destination_tag: tag.as_deref(),
            initiator_role: &req.role,
            wallet_balance_minor: self.balance(req.from_wallet),
            now_us,
        };
        let decision = self.policy.evaluate(&policy_request, &self.velocity);
        let rule = decision.rule_name.to_owned();
        let outcome = decision.outcome.clone();
        self.audit.append(
            now_us,
            AuditEvent::PolicyDecision {
                id: req.id,
                policy_version: self.policy.document().version,
                rule: rule.clone(),
                outcome: outcome_text(&outcome),
            },
        )?;
        let quorum_ok =
            matches!(&outcome, Outcome::Approvals { required, .. } if *required >= COLD_QUORUM_MIN);
        let status = match outcome {
            Outcome::Deny => return self.deny(req, now_us, RejectCode::PolicyDenied, Some(rule)),
            _ if tier == Tier::Cold && !quorum_ok => {
                return self.deny(req, now_us, RejectCode::ColdRequiresQuorum, Some(rule));
            }
            Outcome::Allow => Status::ReadyToSign,
            Outcome::Approvals { group, required } => Status::AwaitingApprovals {
                group,
                required,
                approvals: BTreeMap::new(),
            },
            Outcome::TimeLock { delay_s } => Status::TimeLocked {
                unlock_at_us: now_us.saturating_add(delay_s.saturating_mul(1_000_000)),
            },
        };
        // Counted when accepted, not when settled, so that concurrent requests cannot all
        // slip under a limit; a cancelled request keeps counting (the cautious side).
        let now_s = now_us / 1_000_000;
        self.velocity
            .record(VelocityKey::Account(req.account), now_s, req.amount_minor)?;
        self.velocity.record(
            VelocityKey::Wallet(req.from_wallet),
            now_s,
            req.amount_minor,
        )?;
        self.withdrawals.insert(
            req.id,
            Withdrawal {
                request: req,
                requested_us: now_us,
                rule: Some(rule),
                status: status.clone(),
            },
        );
        Ok(Ok(status))
    }

    fn deny(
        &mut self,
        req: WithdrawalRequest,
        now_us: u64,
        code: RejectCode,
        rule: Option<String>,
    ) -> Reply<Status> {
        self.audit.append(
            now_us,
            AuditEvent::WithdrawalRejected {
                id: req.id,
                code: code.code(),
                rule: rule.clone(),
            },
        )?;
        self.withdrawals.insert(
            req.id,
            Withdrawal {
                request: req,
                requested_us: now_us,
                rule,
                status: Status::Denied(code),
            },
        );
        Ok(Err(code))
    }

    /// An approval by `approver`. The initiator cannot approve; each approver counts once;
    /// approvals older than the policy's `approval_ttl_s` no longer count.
    pub fn approve(&mut self, id: WithdrawalId, approver: &str, now_us: u64) -> Reply<Status> {
        self.advance(now_us)?;
        let ttl_us = self
            .policy
            .document()
            .approval_ttl_s
            .saturating_mul(1_000_000);
        let check = match self.withdrawals.get(&id) {
            None => Err(RejectCode::UnknownWithdrawal),
            Some(w) => match &w.status {
                Status::AwaitingApprovals {
                    group, approvals, ..
                } => {
                    if w.request.initiator == approver {
                        Err(RejectCode::InitiatorCannotApprove)
                    } else if !self
                        .policy
                        .group(group)
                        .is_some_and(|m| m.iter().any(|a| a == approver))
                    {
                        Err(RejectCode::NotAnApprover)
                    } else if approvals
                        .get(approver)
                        .is_some_and(|&t| now_us - t < ttl_us)
                    {
                        Err(RejectCode::AlreadyApproved)
                    } else {
                        Ok(())
                    }
                }
                _ => Err(RejectCode::WrongState),
            },
        };
        if let Err(code) = check {
            return self.refuse(now_us, id, approver, code);
        }
        let Some(w) = self.withdrawals.get_mut(&id) else {
            return Ok(Err(RejectCode::UnknownWithdrawal));
        };
        let Status::AwaitingApprovals {
            required,
            approvals,
            ..
        } = &mut w.status
        else {
            return Ok(Err(RejectCode::WrongState));
        };
        approvals.insert(approver.to_owned(), now_us);
        let live = approvals.values().filter(|&&t| now_us - t < ttl_us).count() as u32;
        let required = u32::from(*required);
        if live >= required {
            w.status = Status::ReadyToSign;
        }
        let status = w.status.clone();
        self.audit.append(
            now_us,
            AuditEvent::Approved {
                id,
                approver: approver.to_owned(),
                live,
                required,
            },
        )?;
        Ok(Ok(status))
    }

    /// Cancels a withdrawal not yet signed: by its initiator or an administrator.
    pub fn cancel(&mut self, id: WithdrawalId, by: &str, now_us: u64) -> Reply<Status> {
        self.advance(now_us)?;
        let is_admin = self.is_admin(by);
        let check = match self.withdrawals.get(&id) {
            None => Err(RejectCode::UnknownWithdrawal),
            Some(w) => match w.status {
                Status::AwaitingApprovals { .. }
                | Status::TimeLocked { .. }
                | Status::ReadyToSign => {
                    if w.request.initiator == by || is_admin {
                        Ok(())
                    } else {
                        Err(RejectCode::NotAllowedToCancel)
                    }
                }
                _ => Err(RejectCode::WrongState),
            },
        };
        if let Err(code) = check {
            return self.refuse(now_us, id, by, code);
        }
        if let Some(w) = self.withdrawals.get_mut(&id) {
            w.status = Status::Cancelled;
        }
        self.audit.append(
            now_us,
            AuditEvent::Cancelled {
                id,
                by: by.to_owned(),
            },
        )?;
        Ok(Ok(Status::Cancelled))
    }

    /// Signs a cleared withdrawal with its wallet's key, through the tier's key store. On a
    /// key-store error the withdrawal stays as it was and the error is returned.
    pub fn sign(&mut self, id: WithdrawalId, now_us: u64) -> Reply<Status> {
        self.advance(now_us)?;
        let Some(w) = self.withdrawals.get(&id) else {
            return self.refuse(now_us, id, "signer", RejectCode::UnknownWithdrawal);
        };
        match w.status {
            Status::ReadyToSign => {}
            Status::TimeLocked { unlock_at_us } if now_us >= unlock_at_us => {}
            Status::TimeLocked { .. } => {
                return self.refuse(now_us, id, "signer", RejectCode::TimeLockActive);
            }
            _ => return self.refuse(now_us, id, "signer", RejectCode::WrongState),
        }
        let request = w.request.clone();
        let requested_us = w.requested_us;
        // The address must still be in the book: removing it stops payouts not yet signed.
        let address = match &request.to {
            Destination::External(a) => {
                match self.address_book.usable(*a, &request.asset, now_us) {
                    Ok(entry) => Some(entry.address.clone()),
                    Err(code) => return self.refuse(now_us, id, "signer", code),
                }
            }
            Destination::Wallet(_) => None,
        };
        let Some(wallet) = self.wallets.get(&request.from_wallet).cloned() else {
            return self.refuse(now_us, id, "signer", RejectCode::UnknownWallet);
        };
        let store = match wallet.tier {
            Tier::Cold => Arc::clone(&self.signers.cold),
            Tier::Warm => Arc::clone(&self.signers.warm),
            Tier::Hot => Arc::clone(&self.signers.hot),
        };
        let message = transfer_bytes(&request, requested_us, address.as_deref());
        let digest: [u8; 32] = Sha256::digest(&message).into();
        let to_sign: &[u8] = match wallet.algorithm {
            KeyAlgorithm::Secp256k1 => &digest,
            KeyAlgorithm::Ed25519 => &message,
            other => {
                return Err(CustodyError::KeyMaterial(format!(
                    "wallet {} has a {other:?} key",
                    wallet.id
                )));
            }
        };
        let signature = match store.sign(&wallet.key_label, to_sign) {
            Ok(signature) => signature,
            Err(error) => {
                self.audit.append(
                    now_us,
                    AuditEvent::SigningFailed {
                        id,
                        error: error.to_string(),
                    },
                )?;
                return Err(CustodyError::Hsm(error));
            }
        };
        let signature_hex = match (&signature, wallet.algorithm) {
            (hsm::Signature::Secp256k1 { rs, recovery_id }, KeyAlgorithm::Secp256k1) => {
                format!("{}{:02x}", hex::encode(rs), recovery_id)
            }
            (hsm::Signature::Ed25519(bytes), KeyAlgorithm::Ed25519) => hex::encode(bytes),
            _ => {
                return Err(CustodyError::KeyMaterial(
                    "signature of the wrong algorithm".into(),
                ));
            }
        };
        self.audit.append(
            now_us,
            AuditEvent::Signed {
                id,
                key_label: wallet.key_label.clone(),
                transfer_sha256: hex::encode(digest),
                signature: signature_hex,
            },
        )?;
        let signed = SignedTransfer {
            message,
            key_label: wallet.key_label,
            signature,
        };
        let status = Status::Signed(signed);
        if let Some(w) = self.withdrawals.get_mut(&id) {
            w.status = status.clone();
        }
        Ok(Ok(status))
    }

    /// Hands a signed withdrawal to settlement; returns what to submit. The source balance is
    /// debited and an internal destination credited at once, so that later checks see the
    /// move before the ledger confirms it.
    pub fn submit(&mut self, id: WithdrawalId, now_us: u64) -> Reply<SignedTransfer> {
        self.advance(now_us)?;
        let (signed, request) = match self.withdrawals.get(&id) {
            None => return self.refuse(now_us, id, "settlement", RejectCode::UnknownWithdrawal),
            Some(Withdrawal {
                status: Status::Signed(signed),
                request,
                ..
            }) => (signed.clone(), request.clone()),
            Some(_) => return self.refuse(now_us, id, "settlement", RejectCode::WrongState),
        };
        let from = self.balances.entry(request.from_wallet).or_default();
        *from = from.saturating_sub(request.amount_minor);
        if let Destination::Wallet(to) = request.to {
            let to = self.balances.entry(to).or_default();
            *to = to.saturating_add(request.amount_minor);
        }
        if let Some(w) = self.withdrawals.get_mut(&id) {
            w.status = Status::Submitted(signed.clone());
        }
        self.audit.append(now_us, AuditEvent::Submitted { id })?;
        Ok(Ok(signed))
    }

    /// Proposes a new policy (JSON). Only administrators propose; the version must increase;
    /// it takes effect once the admin quorum approves.
    pub fn propose_policy(
        &mut self,
        change_id: u64,
        by: &str,
        policy_json: &str,
        now_us: u64,
    ) -> Reply<()> {
        self.advance(now_us)?;
        let id = u128::from(change_id);
        if !self.is_admin(by) {
            return self.refuse(now_us, id, by, RejectCode::NotAnApprover);
        }
        if self.policy_changes.contains_key(&change_id) {
            return self.refuse(now_us, id, by, RejectCode::DuplicateId);
        }
        if self.policy_changes.len() >= POLICY_CHANGES_PENDING_MAX {
            return self.refuse(now_us, id, by, RejectCode::TooManyPendingChanges);
        }
        let policy = match Policy::from_json(policy_json) {
            Ok(p) if p.document().version > self.policy.document().version => p,
            _ => return self.refuse(now_us, id, by, RejectCode::InvalidPolicy),
        };
        self.audit.append(
            now_us,
            AuditEvent::PolicyChangeProposed {
                change_id,
                by: by.to_owned(),
                policy_sha256: hex::encode(Sha256::digest(policy_json.as_bytes())),
            },
        )?;
        self.policy_changes.insert(
            change_id,
            PendingPolicyChange {
                proposer: by.to_owned(),
                policy,
                approvals: BTreeMap::new(),
            },
        );
        Ok(Ok(()))
    }

    /// An administrator's approval of a policy change; returns whether it took effect.
    pub fn approve_policy_change(&mut self, change_id: u64, by: &str, now_us: u64) -> Reply<bool> {
        self.advance(now_us)?;
        let id = u128::from(change_id);
        let ttl_us = self
            .policy
            .document()
            .approval_ttl_s
            .saturating_mul(1_000_000);
        let quorum = usize::from(self.policy.document().admin_quorum);
        let is_admin = self.is_admin(by);
        let check = match self.policy_changes.get(&change_id) {
            None => Err(RejectCode::UnknownPolicyChange),
            Some(change) if change.proposer == by => Err(RejectCode::InitiatorCannotApprove),
            Some(_) if !is_admin => Err(RejectCode::NotAnApprover),
            Some(change)
                if change
                    .approvals
                    .get(by)
                    .is_some_and(|&t| now_us - t < ttl_us) =>
            {
                Err(RejectCode::AlreadyApproved)
            }
            Some(_) => Ok(()),
        };
        if let Err(code) = check {
            return self.refuse(now_us, id, by, code);
        }
        let Some(change) = self.policy_changes.get_mut(&change_id) else {
            return Ok(Err(RejectCode::UnknownPolicyChange));
        };
        change.approvals.insert(by.to_owned(), now_us);
        let live = change
            .approvals
            .values()
            .filter(|&&t| now_us - t < ttl_us)
            .count();
        self.audit.append(
            now_us,
            AuditEvent::PolicyChangeApproved {
                change_id,
                by: by.to_owned(),
            },
        )?;
        if live < quorum {
            return Ok(Ok(false));
        }
        let Some(change) = self.policy_changes.remove(&change_id) else {
            return Ok(Err(RejectCode::UnknownPolicyChange));
        };
        let version = change.policy.document().version;
        self.velocity
            .set_horizon(change.policy.velocity_horizon_s());
        self.policy = change.policy;
        self.audit
            .append(now_us, AuditEvent::PolicyActivated { change_id, version })?;
        Ok(Ok(true))
    }

    /// Signs a checkpoint of the audit log with the audit key in the cold store.
    pub fn checkpoint(&mut self, now_us: u64) -> Result<Checkpoint, CustodyError> {
        self.advance(now_us)?;
        let store = Arc::clone(&self.signers.cold);
        let label = self.signers.audit_key_label.clone();
        self.audit.checkpoint(store.as_ref(), &label, now_us)
    }
}

#[cfg(test)]
mod tests;
