//! Custody in the node: deposit addresses, deposits through the compliance gate, withdrawals
//! under the custody policy and its quorum, proofs of reserves, and the `rempart.v1.Custody`
//! service.
//!
//! # Layout
//! - [`CustodyHub`]: the handle every service holds (in `Ctx`). It owns the key store (the
//!   software store under `<data_dir>/custody/keys`; see [`open_key_store`]), the hot wallets'
//!   account xpubs (deposit addresses are their BIP-0032 children), the [`Book`] and the latest
//!   proof-of-reserves publication.
//! - [`Book`]: the synchronous state: custody's own state machine
//!   (`custody::withdrawal::Custody`: policy, velocity, address book, quorum, signing, audit
//!   chain) plus what the node adds around it (engine debits and refunds, gate verdicts,
//!   ledger heights, idempotency keys). Every change is a [`Record`] appended to
//!   `<data_dir>/custody/custody.log` and applied by the same function at start (replay), so a
//!   restart rebuilds the identical state, audit chain included.
//! - [`CustodySvc`]: the gRPC service.
//!
//! A withdrawal: the amount leaves the engine's available balance first (so it cannot be
//! traded twice), then the compliance gate screens the beneficiary (held: a case is open and
//! the funds stay out; rejected: they come back), then custody's policy decides (approvals,
//! time lock or deny); once cleared it is signed through the key store, submitted, and
//! recorded on the ledger. A rejection returns the amount to the available balance.
//!
//! Mutating operations run one at a time (an async mutex): they are rare, they span the engine,
//! the gate and the ledger, and one at a time makes idempotency and "approve once" exact.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use custody::RejectCode as CustodyReject;
use custody::hd::WatchOnlyAccount;
use custody::path::{ChildIndex, DerivationPath};
use custody::policy::Policy;
use custody::por::{Liability, SumTree};
use custody::tier::{Destination, Tier, WalletId};
use custody::withdrawal::{
    Custody, CustodyConfig, Signers, Status as CustodyStatus, WalletConfig, WithdrawalRequest,
};
use hsm::{KeyAlgorithm, KeyStore, SecretBytes};
use kyc_aml::gate::decision::SignedDecision;
use matching_engine::{AssetId, CommandKind, Event, RejectCode, amount_from_decimal};
use rempart_proto::v1 as pb;
use rempart_proto::v1::Role;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::auth::Caller;
use super::compliance::{Compliance, Counterparty, GateActivity, GateRequest, GateVerdict};
use super::core::{Core, FEE_ACCOUNT};
use super::decimal::{canonical, parse};
use super::errors::{ApiReject, custody_status, engine_status};
use super::hub::{ASSETS, asset_code, asset_decimals, asset_id, timestamp};
use super::limits::{
    CUSTODY_AMOUNT_MINOR_MAX, CUSTODY_DEPOSITS_MAX, CUSTODY_ID_BYTES_MAX, CUSTODY_RECORD_BYTES_MAX,
    LIST_WITHDRAWALS_MAX, LIST_WITHDRAWALS_SCAN_MAX, POR_REFRESH_MIN_US, TEXT_BYTES_MAX,
};
use super::settle::LedgerHub;

/// Directory under the data directory holding custody's files.
pub const CUSTODY_DIR: &str = "custody";
/// The record log (one record per line; see [`RecordLog`]).
pub const LOG_FILE: &str = "custody.log";
/// The hot wallets' account xpubs (public; the seed they come from is only kept wrapped).
pub const XPUBS_FILE: &str = "xpubs.json";
/// The HD seed, wrapped under the key store's wrap key.
pub const SEED_FILE: &str = "seed.wrapped";
/// Environment variable with the software key store's passphrase.
pub const PASSPHRASE_ENV: &str = "REMPART_CUSTODY_PASSPHRASE";
/// Environment variable naming a PKCS#11 module: custody's keys then live in its token.
pub const PKCS11_MODULE_ENV: &str = "REMPART_CUSTODY_PKCS11_MODULE";
/// Environment variable with the label of the PKCS#11 token holding custody's keys.
pub const PKCS11_TOKEN_ENV: &str = "REMPART_CUSTODY_PKCS11_TOKEN";
/// Environment variable with the PKCS#11 user PIN.
pub const PKCS11_PIN_ENV: &str = "REMPART_CUSTODY_PKCS11_PIN";
/// Environment variable naming a custody policy JSON file to use instead of the demo policy.
pub const POLICY_ENV: &str = "REMPART_CUSTODY_POLICY";
/// The passphrase used when [`PASSPHRASE_ENV`] is unset (the node warns at start).
const DEMO_PASSPHRASE: &str = "rempart-demo-custody-passphrase";
/// Label of the key that wraps the HD seed.
const WRAP_KEY: &str = "custody-seed-wrap";
/// Label of the Ed25519 key that signs audit checkpoints.
const AUDIT_KEY: &str = "custody-audit";
/// The node's own identity in the custody policy: it registers customers' destinations in the
/// address book (the whitelist delay still applies) and nothing else.
const NODE_IDENTITY: &str = "node";
/// Address-book tag of a customer's withdrawal destination.
const CUSTOMER_TAG: &str = "customer";
/// How often the driver looks for time locks that ran out and ledger records to retry.
const DRIVE_EVERY: Duration = Duration::from_secs(1);
/// High 8 bits of a ledger transfer id: deposit (1) and withdrawal (2) (docs/api.md).
const TRANSFER_KIND_DEPOSIT: u128 = 1;
const TRANSFER_KIND_WITHDRAWAL: u128 = 2;

/// The demo's withdrawal policy (`docs/custody-policy.md`): a velocity brake, micro amounts
/// after a 30 s time lock, small amounts with one approval, everything else with two, and
/// the mandatory final deny. Approvers are named `acct:<account>`; the demo's approver
/// (1004) and admin (1) are the members.
pub const DEMO_POLICY_JSON: &str = r#"{
  "version": 1,
  "groups": {
    "approvers": ["acct:1", "acct:1004"],
    "admins": ["node", "acct:1", "acct:1004"]
  },
  "admin_group": "admins",
  "admin_quorum": 2,
  "approval_ttl_s": 86400,
  "rules": [
    { "name": "velocity-brake",
      "when": [ { "velocity_exceeded": { "scope": "account", "window_s": 86400, "max_count": 50 } } ],
      "then": "deny" },
    { "name": "micro-city",
      "when": [ { "asset": { "any_of": ["CITY"] } }, { "amount": { "max_minor": 1000000 } } ],
      "then": { "time_lock": { "delay_s": 30 } } },
    { "name": "micro-fiat",
      "when": [ { "asset": { "any_of": ["EUR", "LCL"] } }, { "amount": { "max_minor": 100 } } ],
      "then": { "time_lock": { "delay_s": 30 } } },
    { "name": "small-city",
      "when": [ { "asset": { "any_of": ["CITY"] } }, { "amount": { "max_minor": 1000000000 } } ],
      "then": { "approvals": { "group": "approvers", "required": 1 } } },
    { "name": "small-fiat",
      "when": [ { "asset": { "any_of": ["EUR", "LCL"] } }, { "amount": { "max_minor": 100000 } } ],
      "then": { "approvals": { "group": "approvers", "required": 1 } } },
    { "name": "large",
      "when": [ { "source_tier": { "any_of": ["hot"] } }, { "destination": { "kind": "external" } } ],
      "then": { "approvals": { "group": "approvers", "required": 2 } } },
    { "name": "deny-all", "then": "deny" }
  ]
}"#;

const CUSTOMER: &[Role] = &[Role::Trader, Role::Merchant, Role::Admin, Role::Regulator];
const TRADING: &[Role] = &[Role::Trader, Role::Merchant, Role::Admin];
const READERS: &[Role] = &[Role::Admin, Role::Regulator];
const ADMIN: &[Role] = &[Role::Admin];
const APPROVER: &[Role] = &[Role::CustodyApprover, Role::Admin];
const LIST_ALL: &[Role] = &[Role::CustodyApprover, Role::Regulator, Role::Admin];

/// The ledger transfer id of deposit `number`.
pub fn deposit_transfer_id(number: u64) -> u128 {
    (TRANSFER_KIND_DEPOSIT << 120) | u128::from(number)
}

/// The ledger transfer id of withdrawal `number`.
pub fn withdrawal_transfer_id(number: u64) -> u128 {
    (TRANSFER_KIND_WITHDRAWAL << 120) | u128::from(number)
}

/// The hot wallet id of an asset.
fn hot_wallet(asset: AssetId) -> WalletId {
    100 + WalletId::from(asset)
}

fn hot_key_label(code: &str) -> String {
    format!("hot-{code}")
}

/// The policy identity of an account (policy groups list these).
fn identity(account: u64) -> String {
    format!("acct:{account}")
}

fn now_us() -> u64 {
    Core::now_us()
}

// ---- records ---------------------------------------------------------------------------

/// What the compliance gate said, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Approved; the signed decision goes to the ledger with the transfer.
    Approved { decision: SignedDecision },
    /// Held in a compliance case.
    Held { case_id: String, reason: String },
    /// Refused with kyc-aml's stable code.
    Rejected { code: u16, reason: String },
}

impl From<GateVerdict> for Verdict {
    fn from(v: GateVerdict) -> Self {
        match v {
            GateVerdict::Approved(decision) => Verdict::Approved { decision },
            GateVerdict::Held { case_id, reason } => Verdict::Held { case_id, reason },
            GateVerdict::Rejected { code, reason } => Verdict::Rejected { code, reason },
        }
    }
}

/// One change of custody's state. Records are applied in order by [`Book::apply`], live and
/// at replay; a record is written only after the change it describes happened (engine
/// commands are durable, the key store signed), except [`Record::DepositScreened`] with an
/// approval, which is written before the credit so that a crash can never credit twice.
/// Externally tagged (`{"reserves": {...}}`): serde's internally tagged enums buffer their
/// content, and that buffer cannot carry the u128 transfer ids of gate decisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Record {
    /// The hot wallet of `asset` holds `amount_minor` more (the demo's opening deposits).
    Reserves {
        asset: AssetId,
        amount_minor: u64,
        time_us: u64,
    },
    /// A deposit screened by the gate (an approved one is credited next).
    DepositScreened {
        number: u64,
        deposit_id: String,
        account: u64,
        asset: AssetId,
        amount_minor: u64,
        originator_name: String,
        originator_address: String,
        /// Travel-rule identification of the originator (absent in logs written before it).
        #[serde(default)]
        originator_identification: Option<String>,
        verdict: Verdict,
        time_us: u64,
    },
    /// The gate's later verdict on a held deposit (its case was decided).
    DepositRescreened {
        number: u64,
        verdict: Verdict,
        time_us: u64,
    },
    /// The engine credited deposit `number` at `seq`; the hot wallet holds it.
    DepositCredited { number: u64, seq: u64, time_us: u64 },
    /// The engine refused to credit deposit `number` (engine reject code).
    DepositFailed {
        number: u64,
        code: u16,
        time_us: u64,
    },
    /// Deposit `number` is on the ledger at `height`.
    DepositSettled { number: u64, height: u64 },
    /// A customer destination entered the address book.
    AddressAdded {
        id: u64,
        asset: AssetId,
        address: String,
        time_us: u64,
    },
    /// A withdrawal request whose amount the engine took out of the available balance at
    /// `debit_seq`.
    WithdrawalOpened {
        number: u64,
        account: u64,
        asset: AssetId,
        amount_minor: u64,
        destination: String,
        address_id: u64,
        beneficiary_name: String,
        client_request_id: String,
        requested_by: String,
        initiator: String,
        role: String,
        debit_seq: u64,
        time_us: u64,
    },
    /// The gate's verdict on withdrawal `number`; an approval hands it to custody's policy.
    WithdrawalScreened {
        number: u64,
        verdict: Verdict,
        time_us: u64,
    },
    /// An approval (accepted or refused by custody; both are audit entries).
    WithdrawalApproval {
        number: u64,
        approver: String,
        key_id: String,
        time_us: u64,
    },
    /// A rejection by an approver (custody's cancel).
    WithdrawalCancel {
        number: u64,
        by: String,
        key_id: String,
        reason: String,
        time_us: u64,
    },
    /// Signed through the key store and submitted. `signature` (hex: secp256k1 `r || s ||
    /// recovery id`, Ed25519 64 bytes) is the one the key store gave; a replay uses it instead
    /// of signing again, so a restart costs no key-store operation and an HSM's randomised
    /// signature replays identically. Live, the record is written once the store has signed.
    WithdrawalSigned {
        number: u64,
        time_us: u64,
        #[serde(default)]
        signature: Option<String>,
    },
    /// The amount went back to the available balance at `seq`.
    WithdrawalRefunded { number: u64, seq: u64, time_us: u64 },
    /// Withdrawal `number` is on the ledger at `height`.
    WithdrawalSettled { number: u64, height: u64 },
}

impl Record {
    fn time_us(&self) -> Option<u64> {
        match self {
            Record::Reserves { time_us, .. }
            | Record::DepositScreened { time_us, .. }
            | Record::DepositRescreened { time_us, .. }
            | Record::DepositCredited { time_us, .. }
            | Record::DepositFailed { time_us, .. }
            | Record::AddressAdded { time_us, .. }
            | Record::WithdrawalOpened { time_us, .. }
            | Record::WithdrawalScreened { time_us, .. }
            | Record::WithdrawalApproval { time_us, .. }
            | Record::WithdrawalCancel { time_us, .. }
            | Record::WithdrawalSigned { time_us, .. }
            | Record::WithdrawalRefunded { time_us, .. } => Some(*time_us),
            Record::DepositSettled { .. } | Record::WithdrawalSettled { .. } => None,
        }
    }
}

/// The append-only record file: one line per record, `<16 hex digits of BLAKE3(json)> <json>`,
/// synced after every append. At open, an unterminated or damaged last line (a crash during
/// the append, never acknowledged) is cut; damage anywhere else refuses to start, naming the
/// line.
#[derive(Debug)]
pub struct RecordLog {
    file: File,
    path: PathBuf,
}

fn checksum(json: &[u8]) -> String {
    hex::encode(&blake3::hash(json).as_bytes()[..8])
}

impl RecordLog {
    /// Opens (creating) the log and returns it with every intact record.
    pub fn open(path: &Path) -> anyhow::Result<(RecordLog, Vec<Record>)> {
        let mut records = Vec::new();
        let mut keep_bytes = 0u64;
        if path.exists() {
            let file = File::open(path)
                .map_err(|e| anyhow::anyhow!("custody log {}: {e}", path.display()))?;
            let mut reader = BufReader::new(file);
            let mut line = Vec::new();
            let mut number = 0usize;
            loop {
                line.clear();
                let n = reader
                    .by_ref()
                    .take(CUSTODY_RECORD_BYTES_MAX as u64 + 1)
                    .read_until(b'\n', &mut line)
                    .map_err(|e| anyhow::anyhow!("custody log {}: {e}", path.display()))?;
                if n == 0 {
                    break;
                }
                number += 1;
                let parsed = Self::parse_line(&line);
                match parsed {
                    Some(record) => {
                        records.push(record);
                        keep_bytes += n as u64;
                    }
                    None => {
                        // Only the very last line may be damaged (a torn append).
                        let mut rest = Vec::new();
                        reader
                            .read_to_end(&mut rest)
                            .map_err(|e| anyhow::anyhow!("custody log {}: {e}", path.display()))?;
                        if !rest.is_empty() {
                            anyhow::bail!(
                                "custody log {}: line {number} is damaged and is not the last \
                                 line; refusing to start (restore the file or remove the line \
                                 knowingly)",
                                path.display()
                            );
                        }
                        tracing::warn!(
                            path = %path.display(),
                            line = number,
                            "custody log: cutting a torn last line"
                        );
                        break;
                    }
                }
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("custody log {}: {e}", path.display()))?;
        file.set_len(keep_bytes)
            .map_err(|e| anyhow::anyhow!("custody log {}: {e}", path.display()))?;
        file.sync_all()
            .map_err(|e| anyhow::anyhow!("custody log {}: {e}", path.display()))?;
        Ok((
            RecordLog {
                file,
                path: path.to_path_buf(),
            },
            records,
        ))
    }

    fn parse_line(line: &[u8]) -> Option<Record> {
        let line = line.strip_suffix(b"\n")?;
        if line.len() < 18 || line[16] != b' ' {
            return None;
        }
        let (sum, json) = (&line[..16], &line[17..]);
        if checksum(json).as_bytes() != sum {
            return None;
        }
        serde_json::from_slice(json).ok()
    }

    /// Appends one record and syncs.
    pub fn append(&mut self, record: &Record) -> anyhow::Result<()> {
        let json = serde_json::to_vec(record)?;
        if json.len() + 18 > CUSTODY_RECORD_BYTES_MAX {
            anyhow::bail!("custody record of {} bytes is too long", json.len());
        }
        let mut line = Vec::with_capacity(json.len() + 18);
        line.extend_from_slice(checksum(&json).as_bytes());
        line.push(b' ');
        line.extend_from_slice(&json);
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|_| self.file.sync_data())
            .map_err(|e| anyhow::anyhow!("custody log {}: {e}", self.path.display()))
    }
}

// ---- signing at replay ------------------------------------------------------------------

/// The key store custody signs through: the real one, except that a replay first hands it the
/// signature recorded for the exact (key, message) about to be signed, which it returns
/// instead of signing again. Armed for one signature at a time, cleared right after.
struct ReplaySigner {
    inner: Arc<dyn KeyStore>,
    recalled: Mutex<Option<(String, Vec<u8>, hsm::Signature)>>,
}

impl std::fmt::Debug for ReplaySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplaySigner")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl ReplaySigner {
    fn recall(&self, label: String, message: Vec<u8>, signature: hsm::Signature) {
        *self.recalled.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((label, message, signature));
    }

    fn forget(&self) {
        *self.recalled.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl KeyStore for ReplaySigner {
    fn generate_key(
        &self,
        label: &str,
        algorithm: KeyAlgorithm,
    ) -> Result<hsm::KeyInfo, hsm::HsmError> {
        self.inner.generate_key(label, algorithm)
    }
    fn public_key(&self, label: &str) -> Result<hsm::PublicKey, hsm::HsmError> {
        self.inner.public_key(label)
    }
    fn sign(&self, label: &str, message_or_digest: &[u8]) -> Result<hsm::Signature, hsm::HsmError> {
        let recalled = self
            .recalled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match recalled {
            Some((l, m, signature)) if l == label && m == message_or_digest => Ok(signature),
            _ => self.inner.sign(label, message_or_digest),
        }
    }
    fn wrap_secret(
        &self,
        wrap_label: &str,
        secret: &SecretBytes,
    ) -> Result<Vec<u8>, hsm::HsmError> {
        self.inner.wrap_secret(wrap_label, secret)
    }
    fn unwrap_secret(
        &self,
        wrap_label: &str,
        wrapped: &[u8],
    ) -> Result<SecretBytes, hsm::HsmError> {
        self.inner.unwrap_secret(wrap_label, wrapped)
    }
    fn destroy_key(&self, label: &str) -> Result<(), hsm::HsmError> {
        self.inner.destroy_key(label)
    }
    fn list_keys(&self) -> Result<Vec<hsm::KeyInfo>, hsm::HsmError> {
        self.inner.list_keys()
    }
    fn is_production_grade(&self) -> bool {
        self.inner.is_production_grade()
    }
}

// ---- the book ----------------------------------------------------------------------------

/// Where a withdrawal stands, as far as the node is concerned; inside custody (policy,
/// approvals, time lock, signing) the custody state machine's status says more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// Debited, not screened yet.
    Screening,
    /// Held by the gate in a case; the funds stay out.
    Held,
    /// In custody's hands (policy, approvals, time lock, signing, submitted).
    InCustody,
    /// Refused (gate, policy or approver); the refund to the engine is still due.
    RefundDue,
    /// Refused and refunded.
    Rejected,
    /// On the ledger.
    Completed,
}

/// A withdrawal as the node keeps it.
#[derive(Debug, Clone)]
pub struct WithdrawalRec {
    pub number: u64,
    pub account: u64,
    pub asset: AssetId,
    pub amount_minor: u64,
    pub destination: String,
    pub beneficiary_name: String,
    pub client_request_id: String,
    pub requested_by: String,
    pub requested_us: u64,
    /// The destination's address-book entry.
    pub address_id: u64,
    /// Policy identity of the requester (`acct:<account>`), who may not approve.
    pub initiator: String,
    /// The requester's role, for the policy.
    pub role: String,
    pub stage: Stage,
    pub decision: Option<SignedDecision>,
    /// Key ids of accepted approvals, in order.
    pub approved_by: Vec<String>,
    pub case_id: String,
    pub reason: String,
    pub height: u64,
}

/// Where a deposit stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DepositStage {
    /// Approved, credit in progress (only ever seen live; at replay it becomes Interrupted).
    Crediting,
    /// Credited to the engine and the hot wallet.
    Credited,
    Held,
    Rejected,
    /// Screened and approved, but the node stopped before the credit was recorded: whether
    /// the engine credited it must be reconciled by an operator; it is never credited again.
    Interrupted,
}

/// A deposit as the node keeps it.
#[derive(Debug, Clone)]
pub struct DepositRec {
    pub number: u64,
    pub deposit_id: String,
    pub account: u64,
    pub asset: AssetId,
    pub amount_minor: u64,
    pub originator_name: String,
    pub originator_address: String,
    pub originator_identification: Option<String>,
    pub received_us: u64,
    pub stage: DepositStage,
    pub decision: Option<SignedDecision>,
    pub seq: u64,
    pub height: u64,
    pub case_id: String,
    pub reason: String,
}

/// Custody's state in the node: the custody state machine plus the node's records around it.
#[derive(Debug)]
pub struct Book {
    custody: Custody,
    /// The key store custody signs through, able to hand back a recorded signature.
    signer: Arc<ReplaySigner>,
    log: Option<RecordLog>,
    /// Set when a record could not be written after its change was applied: memory is ahead
    /// of disk, so every further change is refused until a restart.
    failed: bool,
    last_us: u64,
    withdrawals: BTreeMap<u64, WithdrawalRec>,
    by_request: HashMap<(u64, String), u64>,
    /// Withdrawal numbers per account (owner-scoped listings).
    by_account: HashMap<u64, BTreeSet<u64>>,
    /// Withdrawals not final yet (not rejected and refunded, not on the ledger): the driver's
    /// work list.
    open_withdrawals: BTreeSet<u64>,
    /// Deposits held or credited but not on the ledger yet.
    open_deposits: BTreeSet<u64>,
    deposits: BTreeMap<u64, DepositRec>,
    by_deposit_id: HashMap<String, u64>,
    addresses: HashMap<(AssetId, String), u64>,
}

/// What applying a record produced, for the live caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// Custody refused the command (an audit entry, no other change).
    Refused(CustodyReject),
}

fn machine(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("custody: {e}")
}

impl Book {
    /// A book over a fresh custody state machine; `log` is where records go (`None` in tests
    /// that do not persist).
    pub fn new(
        policy: Policy,
        whitelist_delay_s: u64,
        keys: Arc<dyn KeyStore>,
        log: Option<RecordLog>,
    ) -> anyhow::Result<Book> {
        let signer = Arc::new(ReplaySigner {
            inner: keys,
            recalled: Mutex::new(None),
        });
        let keys: Arc<dyn KeyStore> = signer.clone();
        let wallets = ASSETS
            .iter()
            .map(|(asset, code, _)| WalletConfig {
                id: hot_wallet(*asset),
                tier: Tier::Hot,
                asset: (*code).to_string(),
                key_label: hot_key_label(code),
                algorithm: KeyAlgorithm::Secp256k1,
                float_max_minor: None,
            })
            .collect();
        let custody = Custody::new(
            CustodyConfig {
                wallets,
                whitelist_delay_s,
                policy,
            },
            Signers {
                cold: keys.clone(),
                warm: keys.clone(),
                hot: keys,
                audit_key_label: AUDIT_KEY.into(),
            },
        )
        .map_err(machine)?;
        Ok(Book {
            custody,
            signer,
            log,
            failed: false,
            last_us: 0,
            withdrawals: BTreeMap::new(),
            by_request: HashMap::new(),
            by_account: HashMap::new(),
            open_withdrawals: BTreeSet::new(),
            open_deposits: BTreeSet::new(),
            deposits: BTreeMap::new(),
            by_deposit_id: HashMap::new(),
            addresses: HashMap::new(),
        })
    }

    /// Replays records (at start); a record that does not apply as it did live refuses start.
    pub fn replay(&mut self, records: Vec<Record>) -> anyhow::Result<()> {
        let n = records.len();
        for (i, r) in records.into_iter().enumerate() {
            self.apply(&r)
                .map_err(|e| anyhow::anyhow!("custody log record {}: {e}", i + 1))?;
        }
        for d in self.deposits.values_mut() {
            if d.stage == DepositStage::Crediting {
                tracing::error!(
                    deposit_id = %d.deposit_id,
                    "custody: deposit screened but its credit was not recorded before the node \
                     stopped; marked interrupted, reconcile with the engine journal"
                );
                d.stage = DepositStage::Interrupted;
                self.open_deposits.remove(&d.number);
            }
        }
        tracing::info!(records = n, "custody state replayed");
        Ok(())
    }

    /// The time a live change gets: the wall clock, never before the last record's.
    pub fn now(&self) -> u64 {
        now_us().max(self.last_us)
    }

    /// Applies a live record, then writes it. `Err` is a machine failure.
    pub fn commit(&mut self, record: Record) -> Result<Applied, Status> {
        if self.failed {
            return Err(ApiReject::Internal.status("", "custody log failed; restart the node"));
        }
        let applied = self.apply(&record).map_err(|e| {
            tracing::error!(error = %e, "custody change failed");
            ApiReject::Internal.status("", "custody or key store failure")
        })?;
        let record = match record {
            Record::WithdrawalSigned {
                number,
                time_us,
                signature: None,
            } => Record::WithdrawalSigned {
                number,
                time_us,
                signature: self.signature_of(number),
            },
            other => other,
        };
        if let Some(log) = &mut self.log
            && let Err(e) = log.append(&record)
        {
            tracing::error!(error = %e, "custody log append failed; refusing further changes");
            self.failed = true;
            return Err(ApiReject::Internal.status("", "custody log failed"));
        }
        Ok(applied)
    }

    /// The signature custody holds for a signed withdrawal, as recorded (hex).
    fn signature_of(&self, number: u64) -> Option<String> {
        match self.custody_status(number)? {
            CustodyStatus::Signed(t) | CustodyStatus::Submitted(t) => Some(match &t.signature {
                hsm::Signature::Secp256k1 { rs, recovery_id } => {
                    format!("{}{:02x}", hex::encode(rs), recovery_id)
                }
                hsm::Signature::Ed25519(bytes) => hex::encode(bytes),
            }),
            _ => None,
        }
    }

    /// Arms the signer with a recorded signature for the message custody is about to sign for
    /// withdrawal `number`.
    fn recall_signature(&mut self, number: u64, hex_text: &str) -> anyhow::Result<()> {
        let bytes = hex::decode(hex_text).map_err(machine)?;
        let signature = match bytes.len() {
            65 => {
                let mut rs = [0u8; 64];
                rs.copy_from_slice(&bytes[..64]);
                hsm::Signature::Secp256k1 {
                    rs,
                    recovery_id: bytes[64],
                }
            }
            64 => {
                let mut sig = [0u8; 64];
                sig.copy_from_slice(&bytes);
                hsm::Signature::Ed25519(sig)
            }
            n => anyhow::bail!("withdrawal {number}: a recorded signature of {n} bytes"),
        };
        let w = self
            .custody
            .withdrawal(u128::from(number))
            .ok_or_else(|| anyhow::anyhow!("withdrawal {number} signed before it was requested"))?;
        let address = self
            .withdrawals
            .get(&number)
            .map(|r| r.destination.as_str());
        let message = custody::withdrawal::transfer_bytes(&w.request, w.requested_us, address);
        let to_sign = match signature {
            hsm::Signature::Secp256k1 { .. } => Sha256::digest(&message).to_vec(),
            hsm::Signature::Ed25519(_) => message,
        };
        let label = hot_key_label(&w.request.asset);
        self.signer.recall(label, to_sign, signature);
        Ok(())
    }

    fn withdrawal_mut(&mut self, number: u64) -> anyhow::Result<&mut WithdrawalRec> {
        self.withdrawals
            .get_mut(&number)
            .ok_or_else(|| anyhow::anyhow!("no withdrawal {number}"))
    }

    fn deposit_mut(&mut self, number: u64) -> anyhow::Result<&mut DepositRec> {
        self.deposits
            .get_mut(&number)
            .ok_or_else(|| anyhow::anyhow!("no deposit {number}"))
    }

    fn add_reserves(&mut self, asset: AssetId, amount: u64, time_us: u64) -> anyhow::Result<()> {
        let wallet = hot_wallet(asset);
        let balance = self
            .custody
            .balance(wallet)
            .saturating_add(u128::from(amount));
        match self
            .custody
            .observe_balance(wallet, balance, time_us)
            .map_err(machine)?
        {
            Ok(()) => Ok(()),
            Err(code) => anyhow::bail!("hot wallet of asset {asset}: {code}"),
        }
    }

    /// Applies one record. `Err` means the record cannot apply to this state (at replay: the
    /// log does not belong to this state; live: a machine failure).
    pub fn apply(&mut self, record: &Record) -> anyhow::Result<Applied> {
        let applied = self.apply_record(record)?;
        self.track(record);
        Ok(applied)
    }

    /// Keeps the indexes the driver and the listings use in step with a record just applied.
    fn track(&mut self, record: &Record) {
        match record {
            Record::WithdrawalOpened {
                number, account, ..
            } => {
                self.by_account.entry(*account).or_default().insert(*number);
                self.open_withdrawals.insert(*number);
            }
            Record::WithdrawalScreened { number, .. }
            | Record::WithdrawalApproval { number, .. }
            | Record::WithdrawalCancel { number, .. }
            | Record::WithdrawalSigned { number, .. }
            | Record::WithdrawalRefunded { number, .. }
            | Record::WithdrawalSettled { number, .. } => {
                let done = self
                    .withdrawals
                    .get(number)
                    .is_none_or(|w| matches!(w.stage, Stage::Rejected | Stage::Completed));
                if done {
                    self.open_withdrawals.remove(number);
                }
            }
            Record::DepositScreened { number, .. }
            | Record::DepositRescreened { number, .. }
            | Record::DepositCredited { number, .. }
            | Record::DepositFailed { number, .. }
            | Record::DepositSettled { number, .. } => {
                let open = self.deposits.get(number).is_some_and(|d| match d.stage {
                    DepositStage::Held | DepositStage::Crediting => true,
                    DepositStage::Credited => d.height == 0,
                    DepositStage::Rejected | DepositStage::Interrupted => false,
                });
                if open {
                    self.open_deposits.insert(*number);
                } else {
                    self.open_deposits.remove(number);
                }
            }
            Record::Reserves { .. } | Record::AddressAdded { .. } => {}
        }
    }

    fn apply_record(&mut self, record: &Record) -> anyhow::Result<Applied> {
        if let Some(t) = record.time_us() {
            self.last_us = self.last_us.max(t);
        }
        match record {
            Record::Reserves {
                asset,
                amount_minor,
                time_us,
            } => {
                self.add_reserves(*asset, *amount_minor, *time_us)?;
            }
            Record::DepositScreened {
                number,
                deposit_id,
                account,
                asset,
                amount_minor,
                originator_name,
                originator_address,
                originator_identification,
                verdict,
                time_us,
            } => {
                let (stage, decision, case_id, reason) = match verdict {
                    Verdict::Approved { decision } => (
                        DepositStage::Crediting,
                        Some(decision.clone()),
                        String::new(),
                        String::new(),
                    ),
                    Verdict::Held { case_id, reason } => {
                        (DepositStage::Held, None, case_id.clone(), reason.clone())
                    }
                    Verdict::Rejected { code, reason } => (
                        DepositStage::Rejected,
                        None,
                        String::new(),
                        format!("compliance gate refused ({code}): {reason}"),
                    ),
                };
                self.by_deposit_id.insert(deposit_id.clone(), *number);
                self.deposits.insert(
                    *number,
                    DepositRec {
                        number: *number,
                        deposit_id: deposit_id.clone(),
                        account: *account,
                        asset: *asset,
                        amount_minor: *amount_minor,
                        originator_name: originator_name.clone(),
                        originator_address: originator_address.clone(),
                        originator_identification: originator_identification.clone(),
                        received_us: *time_us,
                        stage,
                        decision,
                        seq: 0,
                        height: 0,
                        case_id,
                        reason,
                    },
                );
            }
            Record::DepositRescreened {
                number, verdict, ..
            } => {
                let d = self.deposit_mut(*number)?;
                match verdict {
                    Verdict::Approved { decision } => {
                        d.stage = DepositStage::Crediting;
                        d.decision = Some(decision.clone());
                        d.reason.clear();
                    }
                    Verdict::Held { case_id, reason } => {
                        d.case_id = case_id.clone();
                        d.reason = reason.clone();
                    }
                    Verdict::Rejected { code, reason } => {
                        d.stage = DepositStage::Rejected;
                        d.reason = format!("compliance gate refused ({code}): {reason}");
                    }
                }
            }
            Record::DepositCredited {
                number,
                seq,
                time_us,
            } => {
                let d = self.deposit_mut(*number)?;
                d.stage = DepositStage::Credited;
                d.seq = *seq;
                let (asset, amount) = (d.asset, d.amount_minor);
                self.add_reserves(asset, amount, *time_us)?;
            }
            Record::DepositFailed { number, code, .. } => {
                let d = self.deposit_mut(*number)?;
                d.stage = DepositStage::Rejected;
                d.reason = format!("the engine refused the credit (code {})", 1000 + code);
            }
            Record::DepositSettled { number, height } => {
                self.deposit_mut(*number)?.height = *height;
            }
            Record::AddressAdded {
                id,
                asset,
                address,
                time_us,
            } => {
                let code = asset_code(*asset).ok_or_else(|| machine("unknown asset"))?;
                match self
                    .custody
                    .add_address(*id, address, code, CUSTOMER_TAG, NODE_IDENTITY, *time_us)
                    .map_err(machine)?
                {
                    Ok(_) => {
                        self.addresses.insert((*asset, address.clone()), *id);
                    }
                    Err(code) => return Ok(Applied::Refused(code)),
                }
            }
            Record::WithdrawalOpened {
                number,
                account,
                asset,
                amount_minor,
                destination,
                address_id,
                beneficiary_name,
                client_request_id,
                requested_by,
                initiator,
                role,
                debit_seq: _,
                time_us,
            } => {
                self.by_request
                    .insert((*account, client_request_id.clone()), *number);
                self.withdrawals.insert(
                    *number,
                    WithdrawalRec {
                        number: *number,
                        account: *account,
                        asset: *asset,
                        amount_minor: *amount_minor,
                        destination: destination.clone(),
                        beneficiary_name: beneficiary_name.clone(),
                        client_request_id: client_request_id.clone(),
                        requested_by: requested_by.clone(),
                        requested_us: *time_us,
                        address_id: *address_id,
                        initiator: initiator.clone(),
                        role: role.clone(),
                        stage: Stage::Screening,
                        decision: None,
                        approved_by: Vec::new(),
                        case_id: String::new(),
                        reason: String::new(),
                        height: 0,
                    },
                );
            }
            Record::WithdrawalScreened {
                number,
                verdict,
                time_us,
            } => match verdict {
                Verdict::Approved { decision } => {
                    let w = self.withdrawal_mut(*number)?;
                    let code = asset_code(w.asset).ok_or_else(|| machine("unknown asset"))?;
                    let request = WithdrawalRequest {
                        id: u128::from(*number),
                        account: w.account,
                        initiator: w.initiator.clone(),
                        role: w.role.clone(),
                        from_wallet: hot_wallet(w.asset),
                        to: Destination::External(w.address_id),
                        asset: code.to_string(),
                        amount_minor: u128::from(w.amount_minor),
                    };
                    let outcome = self.custody.request(request, *time_us).map_err(machine)?;
                    let w = self.withdrawal_mut(*number)?;
                    w.decision = Some(decision.clone());
                    match outcome {
                        Ok(_) => w.stage = Stage::InCustody,
                        Err(code) => {
                            w.stage = Stage::RefundDue;
                            w.reason = format!("custody refused: {code}");
                            return Ok(Applied::Refused(code));
                        }
                    }
                }
                Verdict::Held { case_id, reason } => {
                    let w = self.withdrawal_mut(*number)?;
                    w.stage = Stage::Held;
                    w.case_id = case_id.clone();
                    w.reason = reason.clone();
                }
                Verdict::Rejected { code, reason } => {
                    let w = self.withdrawal_mut(*number)?;
                    w.stage = Stage::RefundDue;
                    w.reason = format!("compliance gate refused ({code}): {reason}");
                }
            },
            Record::WithdrawalApproval {
                number,
                approver,
                key_id,
                time_us,
            } => {
                let outcome = self
                    .custody
                    .approve(u128::from(*number), approver, *time_us)
                    .map_err(machine)?;
                match outcome {
                    Ok(_) => self
                        .withdrawal_mut(*number)?
                        .approved_by
                        .push(key_id.clone()),
                    Err(code) => return Ok(Applied::Refused(code)),
                }
            }
            Record::WithdrawalCancel {
                number,
                by,
                reason,
                time_us,
                ..
            } => {
                let outcome = self
                    .custody
                    .cancel(u128::from(*number), by, *time_us)
                    .map_err(machine)?;
                match outcome {
                    Ok(_) => {
                        let w = self.withdrawal_mut(*number)?;
                        w.stage = Stage::RefundDue;
                        w.reason = if reason.is_empty() {
                            "rejected by an approver".into()
                        } else {
                            format!("rejected by an approver: {reason}")
                        };
                    }
                    Err(code) => return Ok(Applied::Refused(code)),
                }
            }
            Record::WithdrawalSigned {
                number,
                time_us,
                signature,
            } => {
                let id = u128::from(*number);
                if let Some(hex_text) = signature {
                    self.recall_signature(*number, hex_text)?;
                }
                let signed = self.custody.sign(id, *time_us).map_err(machine);
                self.signer.forget();
                if let Err(code) = signed? {
                    return Ok(Applied::Refused(code));
                }
                if let Err(code) = self.custody.submit(id, *time_us).map_err(machine)? {
                    anyhow::bail!("withdrawal {number} signed but not submitted: {code}");
                }
            }
            Record::WithdrawalRefunded { number, .. } => {
                self.withdrawal_mut(*number)?.stage = Stage::Rejected;
            }
            Record::WithdrawalSettled { number, height } => {
                let w = self.withdrawal_mut(*number)?;
                w.stage = Stage::Completed;
                w.height = *height;
            }
        }
        Ok(Applied::Done)
    }

    /// Custody's status of a withdrawal handed to it.
    pub fn custody_status(&self, number: u64) -> Option<&CustodyStatus> {
        self.custody
            .withdrawal(u128::from(number))
            .map(|w| &w.status)
    }

    /// A withdrawal by number.
    pub fn withdrawal(&self, number: u64) -> Option<&WithdrawalRec> {
        self.withdrawals.get(&number)
    }

    /// The reserves custody controls in `asset` (its wallets' balances).
    pub fn reserves(&self, asset: AssetId) -> u128 {
        self.custody.balance(hot_wallet(asset))
    }

    /// The protobuf view of a withdrawal.
    pub fn withdrawal_pb(&self, w: &WithdrawalRec) -> pb::Withdrawal {
        use pb::WithdrawalStatus as S;
        let decimals = asset_decimals(w.asset).unwrap_or(0);
        let mut approvals = w.approved_by.len() as u32;
        let mut required = 0u32;
        let mut not_before = None;
        let mut rule = String::new();
        let status = match w.stage {
            Stage::Screening => S::PendingApproval,
            Stage::Held => S::Held,
            Stage::RefundDue | Stage::Rejected => S::Rejected,
            Stage::Completed => S::Completed,
            Stage::InCustody => match self.custody.withdrawal(u128::from(w.number)) {
                None => S::PendingApproval,
                Some(c) => {
                    rule = c.rule.clone().unwrap_or_default();
                    match &c.status {
                        CustodyStatus::AwaitingApprovals {
                            required: r,
                            approvals: a,
                            ..
                        } => {
                            required = u32::from(*r);
                            approvals = a.len() as u32;
                            S::PendingApproval
                        }
                        CustodyStatus::TimeLocked { unlock_at_us } => {
                            not_before = Some(timestamp(*unlock_at_us));
                            S::TimeLocked
                        }
                        CustodyStatus::ReadyToSign | CustodyStatus::Signed(_) => {
                            required = approvals;
                            S::PendingApproval
                        }
                        CustodyStatus::Submitted(_) => S::Sent,
                        CustodyStatus::Cancelled | CustodyStatus::Denied(_) => S::Rejected,
                    }
                }
            },
        };
        if rule.is_empty() {
            rule = self
                .custody
                .withdrawal(u128::from(w.number))
                .and_then(|c| c.rule.clone())
                .unwrap_or_default();
        }
        pb::Withdrawal {
            withdrawal_id: w.number.to_string(),
            account_id: w.account.to_string(),
            asset: asset_code(w.asset).unwrap_or("?").into(),
            amount: canonical(matching_engine::amount_to_decimal(w.amount_minor, decimals)),
            destination: w.destination.clone(),
            status: status as i32,
            approvals,
            approvals_required: required,
            approved_by: w.approved_by.clone(),
            rejection_reason: if matches!(w.stage, Stage::RefundDue | Stage::Rejected) {
                w.reason.clone()
            } else {
                String::new()
            },
            requested_at: Some(timestamp(w.requested_us)),
            not_before,
            transfer_id: withdrawal_transfer_id(w.number).to_string(),
            case_id: w.case_id.clone(),
            beneficiary_name: w.beneficiary_name.clone(),
            client_request_id: w.client_request_id.clone(),
            requested_by: w.requested_by.clone(),
            policy_rule: rule,
            block_height: w.height,
        }
    }

    fn deposit_pb(&self, d: &DepositRec) -> pb::Deposit {
        use pb::DepositStatus as S;
        let decimals = asset_decimals(d.asset).unwrap_or(0);
        let status = match d.stage {
            DepositStage::Credited => S::Credited,
            DepositStage::Held => S::Held,
            DepositStage::Rejected => S::Rejected,
            DepositStage::Crediting | DepositStage::Interrupted => S::Unspecified,
        };
        pb::Deposit {
            deposit_id: d.deposit_id.clone(),
            account_id: d.account.to_string(),
            asset: asset_code(d.asset).unwrap_or("?").into(),
            amount: canonical(matching_engine::amount_to_decimal(d.amount_minor, decimals)),
            status: status as i32,
            transfer_id: deposit_transfer_id(d.number).to_string(),
            block_height: d.height,
            case_id: d.case_id.clone(),
            reason: d.reason.clone(),
            sequence: d.seq,
            received_at: Some(timestamp(d.received_us)),
        }
    }

    fn next_withdrawal(&self) -> u64 {
        self.withdrawals.keys().next_back().map_or(1, |n| n + 1)
    }

    fn next_deposit(&self) -> u64 {
        self.deposits.keys().next_back().map_or(1, |n| n + 1)
    }

    fn next_address(&self) -> u64 {
        self.addresses.values().max().map_or(1, |n| n + 1)
    }
}

// ---- keys and addresses ---------------------------------------------------------------

/// Opens custody's key store and makes sure the wrap key, the audit key and one hot wallet
/// key per asset exist. With [`PKCS11_MODULE_ENV`] set: that PKCS#11 module's token labelled
/// [`PKCS11_TOKEN_ENV`], logged in with [`PKCS11_PIN_ENV`] (all three required). Otherwise the
/// software store in `<dir>/keys`, under the passphrase in [`PASSPHRASE_ENV`]; when it is
/// unset, a demo node uses a fixed demo passphrase (with a warning) and any other node refuses
/// to start.
pub fn open_key_store(dir: &Path, demo: bool) -> anyhow::Result<Arc<dyn KeyStore>> {
    open_key_store_with(dir, demo, &|name| std::env::var(name).ok())
}

/// [`open_key_store`] reading its settings from `env` (name → value).
pub fn open_key_store_with(
    dir: &Path,
    demo: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Arc<dyn KeyStore>> {
    let env = |name: &str| env(name).filter(|v| !v.is_empty());
    if let Some(module) = env(PKCS11_MODULE_ENV) {
        let (Some(token), Some(pin)) = (env(PKCS11_TOKEN_ENV), env(PKCS11_PIN_ENV)) else {
            anyhow::bail!(
                "{PKCS11_MODULE_ENV} is set: {PKCS11_TOKEN_ENV} and {PKCS11_PIN_ENV} are required too"
            );
        };
        let config = hsm::pkcs11::Pkcs11Config::new(
            PathBuf::from(&module),
            token,
            SecretBytes::new(pin.into_bytes()),
        );
        let store = hsm::pkcs11::Pkcs11KeyStore::open(config)
            .map_err(|e| anyhow::anyhow!("custody HSM ({module}): {e}"))?;
        let store: Arc<dyn KeyStore> = Arc::new(store);
        ensure_keys(store.as_ref())?;
        tracing::info!(module = %module, "custody keys in a PKCS#11 token");
        return Ok(store);
    }
    let passphrase = match env(PASSPHRASE_ENV) {
        Some(v) => SecretBytes::new(v.into_bytes()),
        _ if !demo => anyhow::bail!(
            "{PASSPHRASE_ENV} must be set: it protects custody's keys (or set \
             {PKCS11_MODULE_ENV}, {PKCS11_TOKEN_ENV} and {PKCS11_PIN_ENV} to keep them in an HSM)"
        ),
        _ => {
            tracing::warn!(
                "custody key store: {PASSPHRASE_ENV} is unset; using the public demo passphrase. \
                 Anyone with the data directory can use these keys: demo only"
            );
            SecretBytes::new(DEMO_PASSPHRASE.as_bytes().to_vec())
        }
    };
    let store = hsm::software::SoftwareKeyStore::open(dir.join("keys"), &passphrase)
        .map_err(|e| anyhow::anyhow!("custody key store {}: {e}", dir.display()))?;
    let store: Arc<dyn KeyStore> = Arc::new(store);
    ensure_keys(store.as_ref())?;
    Ok(store)
}

/// Creates the keys custody needs that the store does not hold yet.
pub fn ensure_keys(store: &dyn KeyStore) -> anyhow::Result<()> {
    let have: Vec<String> = store
        .list_keys()
        .map_err(|e| anyhow::anyhow!("custody key store: {e}"))?
        .into_iter()
        .map(|k| k.label)
        .collect();
    let mut want = vec![
        (WRAP_KEY.to_string(), KeyAlgorithm::Aes256Wrap),
        (AUDIT_KEY.to_string(), KeyAlgorithm::Ed25519),
    ];
    for (_, code, _) in ASSETS {
        want.push((hot_key_label(code), KeyAlgorithm::Secp256k1));
    }
    for (label, algorithm) in want {
        if !have.contains(&label) {
            store
                .generate_key(&label, algorithm)
                .map_err(|e| anyhow::anyhow!("custody key {label}: {e}"))?;
        }
    }
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp).map_err(|e| anyhow::anyhow!("{}: {e}", tmp.display()))?;
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| anyhow::anyhow!("{}: {e}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if let Some(parent) = path.parent() {
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| anyhow::anyhow!("{}: {e}", parent.display()))?;
    }
    Ok(())
}

/// The hot wallets' account xpubs, by asset. At the first start a random seed is generated,
/// wrapped under the key store's wrap key (`seed.wrapped`), each asset's account key
/// `m/44'/9797'/<asset>'` derived from it and only its xpub kept (`xpubs.json`); the seed
/// leaves memory at once. Later starts read the xpubs (validated on import), so deposit
/// addresses are stable across restarts.
pub fn load_xpubs(
    dir: &Path,
    store: &dyn KeyStore,
) -> anyhow::Result<BTreeMap<AssetId, WatchOnlyAccount>> {
    let xpubs_path = dir.join(XPUBS_FILE);
    if !xpubs_path.exists() {
        let seed_path = dir.join(SEED_FILE);
        let seed = if seed_path.exists() {
            let wrapped = std::fs::read(&seed_path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", seed_path.display()))?;
            store
                .unwrap_secret(WRAP_KEY, &wrapped)
                .map_err(|e| anyhow::anyhow!("unwrapping the custody seed: {e}"))?
        } else {
            let mut bytes = vec![0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("random source: {e}"))?;
            let seed = SecretBytes::new(bytes);
            let wrapped = store
                .wrap_secret(WRAP_KEY, &seed)
                .map_err(|e| anyhow::anyhow!("wrapping the custody seed: {e}"))?;
            write_atomically(&seed_path, &wrapped)?;
            seed
        };
        let seed = custody::hd::Seed::from_bytes(seed.expose().to_vec())
            .map_err(|e| anyhow::anyhow!("custody seed: {e}"))?;
        let mut texts = BTreeMap::new();
        for (asset, code, _) in ASSETS {
            let path = DerivationPath::parse(&format!("m/44'/9797'/{asset}'"))
                .map_err(|e| anyhow::anyhow!("derivation path: {e}"))?;
            let xprv = custody::hd::derive_xprv(&seed, &path)
                .map_err(|e| anyhow::anyhow!("deriving the {code} account key: {e}"))?;
            texts.insert(code.to_string(), WatchOnlyAccount::from_xprv(&xprv).xpub());
        }
        drop(seed);
        write_atomically(&xpubs_path, &serde_json::to_vec_pretty(&texts)?)?;
    }
    let text = std::fs::read_to_string(&xpubs_path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", xpubs_path.display()))?;
    let texts: BTreeMap<String, String> = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", xpubs_path.display()))?;
    let mut out = BTreeMap::new();
    for (asset, code, _) in ASSETS {
        let xpub = texts
            .get(code)
            .ok_or_else(|| anyhow::anyhow!("{}: no xpub for {code}", xpubs_path.display()))?;
        let account = WatchOnlyAccount::from_xpub(xpub)
            .map_err(|e| anyhow::anyhow!("{}: {code}: {e}", xpubs_path.display()))?;
        out.insert(asset, account);
    }
    Ok(out)
}

/// The deposit address of `account` below an asset's account xpub: the compressed public key
/// at `0/account` (BIP-0044's external chain; `2/hi/lo` for accounts from 2^31 to 2^62), shown
/// as `0x` and the first 20 bytes of its SHA-256 in hex.
pub fn deposit_address(xpub: &WatchOnlyAccount, account: u64) -> Result<String, Status> {
    let refused = || {
        ApiReject::InvalidField.status("account_id", "no deposit address for accounts from 2^62")
    };
    let key: [u8; 33] = if account < 1 << 31 {
        xpub.deposit_key(account as u32)
    } else if account < 1 << 62 {
        let steps = [2, (account >> 31) as u32, (account & 0x7fff_ffff) as u32]
            .into_iter()
            .map(ChildIndex::normal)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(refused)?;
        let path = DerivationPath::from_steps(steps).map_err(|_| refused())?;
        xpub.derive(&path).map(|k| k.to_bytes())
    } else {
        return Err(refused());
    }
    .map_err(|e| ApiReject::Internal.status("", &format!("deriving a deposit key: {e}")))?;
    let digest = Sha256::digest(key);
    Ok(format!("0x{}", hex::encode(&digest[..20])))
}

/// A ledger address: `0x` and 40 hex digits; returned in lowercase.
fn ledger_address(field: &str, text: &str) -> Result<String, Status> {
    let hexpart = text.strip_prefix("0x").unwrap_or("");
    if hexpart.len() != 40 || !hexpart.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiReject::InvalidField.status(field, "a ledger address: 0x and 40 hex digits"));
    }
    Ok(format!("0x{}", hexpart.to_ascii_lowercase()))
}

/// A required free-text field: 1 to `max` bytes, no control characters.
fn text_field(field: &str, text: &str, max: usize) -> Result<String, Status> {
    if text.is_empty() {
        return Err(ApiReject::MissingField.status(field, ""));
    }
    if text.len() > max {
        return Err(ApiReject::FieldTooLong.status(field, &format!("at most {max} bytes")));
    }
    if text.chars().any(char::is_control) {
        return Err(ApiReject::InvalidField.status(field, "control characters"));
    }
    Ok(text.to_string())
}

/// An asset code and a positive amount on its grid, bounded.
fn asset_amount(asset: &str, amount: &str) -> Result<(AssetId, u64), Status> {
    let id = asset_id(asset).ok_or_else(|| engine_status(RejectCode::UnknownAsset, "asset"))?;
    let decimals = asset_decimals(id).unwrap_or(0);
    let minor = amount_from_decimal(parse("amount", amount)?, decimals)
        .map_err(|c| engine_status(c, "amount"))?;
    if minor == 0 {
        return Err(custody_status(CustodyReject::AmountZero, "amount", ""));
    }
    if minor > CUSTODY_AMOUNT_MINOR_MAX {
        return Err(ApiReject::InvalidField.status(
            "amount",
            &format!("at most {CUSTODY_AMOUNT_MINOR_MAX} minor units"),
        ));
    }
    Ok((id, minor))
}

fn caller<T>(req: &Request<T>) -> Result<Caller, Status> {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| ApiReject::MissingCredentials.status("", ""))
}

fn withdrawal_number(text: &str) -> Result<u64, Status> {
    text.parse().map_err(|_| {
        custody_status(
            CustodyReject::UnknownWithdrawal,
            "withdrawal_id",
            "not a decimal withdrawal id",
        )
    })
}

// ---- proof of reserves -------------------------------------------------------------------

/// One account's (asset, available, held) balances, as `Core::all_balances` lists them.
pub type AccountBalances = (u64, Vec<(AssetId, u64, u64)>);

/// One proof-of-reserves publication.
#[derive(Debug)]
pub struct Publication {
    tree: SumTree,
    leaves: HashMap<u64, usize>,
    /// Engine seq the liabilities are consistent with.
    seq: u64,
    time_us: u64,
    /// Reserves per asset, in `ASSETS` order.
    reserves: Vec<u128>,
}

/// Builds a publication over `(account, [(asset, available, held)])`, the fee account left out
/// (fees are the exchange's own money, not a liability). Salts are keyed BLAKE3 of the account
/// under a fresh random key, so each publication's salts are new and unlinkable.
pub fn build_publication(
    seq: u64,
    accounts: &[AccountBalances],
    reserves: Vec<u128>,
    time_us: u64,
) -> Result<Publication, Status> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|_| ApiReject::Internal.status("", "random source"))?;
    let codes: Vec<String> = ASSETS.iter().map(|a| a.1.to_string()).collect();
    let mut liabilities = Vec::with_capacity(accounts.len());
    let mut leaves = HashMap::with_capacity(accounts.len());
    for (account, balances) in accounts {
        if *account == FEE_ACCOUNT {
            continue;
        }
        let per_asset = ASSETS
            .iter()
            .map(|(asset, _, _)| {
                balances
                    .iter()
                    .find(|b| b.0 == *asset)
                    .map_or(0, |b| i128::from(b.1) + i128::from(b.2))
            })
            .collect();
        leaves.insert(*account, liabilities.len());
        liabilities.push(Liability {
            account_id: *account,
            salt: *blake3::keyed_hash(&key, &account.to_be_bytes()).as_bytes(),
            balances: per_asset,
        });
    }
    if liabilities.is_empty() {
        return Err(ApiReject::NotInProof.status("", "no customer balances yet"));
    }
    let tree = SumTree::build(&codes, &liabilities)
        .map_err(|e| ApiReject::Internal.status("", &format!("proof of reserves: {e}")))?;
    Ok(Publication {
        tree,
        leaves,
        seq,
        time_us,
        reserves,
    })
}

impl Publication {
    fn asset_index(asset: &str) -> Result<usize, Status> {
        ASSETS
            .iter()
            .position(|a| a.1 == asset)
            .ok_or_else(|| engine_status(RejectCode::UnknownAsset, "asset"))
    }

    /// The published statement for one asset.
    pub fn statement(&self, asset: &str) -> Result<pb::ProofOfReserves, Status> {
        let k = Self::asset_index(asset)?;
        let decimals = ASSETS[k].2;
        Ok(pb::ProofOfReserves {
            asset: asset.to_string(),
            liabilities_root: hex::encode(self.tree.root()),
            total_liabilities: canonical(matching_engine::amount_to_decimal(
                self.tree.totals()[k],
                decimals,
            )),
            total_reserves: canonical(rust_decimal::Decimal::from_i128_with_scale(
                i128::try_from(self.reserves[k]).unwrap_or(i128::MAX),
                u32::from(decimals),
            )),
            leaf_count: self.leaves.len() as u64,
            time: Some(timestamp(self.time_us)),
        })
    }

    /// One account's inclusion proof, in its whole binary form and as a view of one asset.
    pub fn inclusion(&self, account: u64, asset: &str) -> Result<pb::InclusionProof, Status> {
        let k = Self::asset_index(asset)?;
        let decimals = ASSETS[k].2;
        let proof = self
            .leaves
            .get(&account)
            .and_then(|i| self.tree.proof(*i))
            .ok_or_else(|| ApiReject::NotInProof.status("account_id", ""))?;
        let mut h = Sha256::new();
        h.update([0x00]);
        h.update(custody::por::commitment(proof.account_id, &proof.salt));
        for b in &proof.balances {
            h.update(b.to_be_bytes());
        }
        let leaf_hash: [u8; 32] = h.finalize().into();
        let path = proof
            .siblings
            .iter()
            .enumerate()
            .map(|(level, s)| pb::ProofStep {
                hash: hex::encode(s.hash),
                sum: canonical(matching_engine::amount_to_decimal(s.sums[k], decimals)),
                left: (proof.leaf_index >> level) & 1 == 1,
            })
            .collect();
        Ok(pb::InclusionProof {
            asset: asset.to_string(),
            leaf_hash: hex::encode(leaf_hash),
            balance: canonical(matching_engine::amount_to_decimal(
                proof.balances[k],
                decimals,
            )),
            path,
            root: hex::encode(proof.root),
            proof: proof.to_bytes(),
            leaf_index: proof.leaf_index,
        })
    }
}

// ---- the hub -------------------------------------------------------------------------------

/// Custody's handle in the node. Cheap to clone.
#[derive(Clone)]
pub struct CustodyHub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CustodyHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustodyHub").finish_non_exhaustive()
    }
}

struct Inner {
    core: Core,
    compliance: Compliance,
    ledger: LedgerHub,
    book: Mutex<Book>,
    /// Serialises mutating operations (see the module doc).
    ops: tokio::sync::Mutex<()>,
    xpubs: BTreeMap<AssetId, WatchOnlyAccount>,
    /// The latest proof-of-reserves publication; the lock also makes builds one at a time.
    por: tokio::sync::Mutex<Option<Arc<Publication>>>,
}

/// Options of [`CustodyHub::open`].
#[derive(Debug, Clone)]
pub struct CustodyOptions {
    /// The node's data directory (custody uses `<data_dir>/custody`).
    pub data_dir: PathBuf,
    /// Seconds before a new destination is usable (0 in the demo; 24 h otherwise).
    pub whitelist_delay_s: u64,
    /// A demo node may run its software key store under the public demo passphrase.
    pub demo: bool,
    /// PKCS#11 module and token label from the node configuration (the PIN always comes from
    /// [`PKCS11_PIN_ENV`]); `None` leaves the choice to [`PKCS11_MODULE_ENV`].
    pub pkcs11: Option<(PathBuf, String)>,
}

fn load_policy() -> anyhow::Result<Policy> {
    match std::env::var(POLICY_ENV) {
        Ok(path) if !path.is_empty() => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| anyhow::anyhow!("{POLICY_ENV}={path}: {e}"))?;
            Policy::from_json(&text).map_err(|e| anyhow::anyhow!("{POLICY_ENV}={path}: {e}"))
        }
        _ => Policy::from_json(DEMO_POLICY_JSON)
            .map_err(|e| anyhow::anyhow!("the embedded demo custody policy: {e}")),
    }
}

impl CustodyHub {
    /// Opens custody: key store, xpubs, policy, and the state replayed from the record log.
    pub fn open(
        options: CustodyOptions,
        core: Core,
        compliance: Compliance,
        ledger: LedgerHub,
    ) -> anyhow::Result<CustodyHub> {
        let dir = options.data_dir.join(CUSTODY_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
        let keys = match &options.pkcs11 {
            Some((module, token)) => {
                let module = module.display().to_string();
                let token = token.clone();
                open_key_store_with(&dir, options.demo, &move |name| match name {
                    PKCS11_MODULE_ENV => Some(module.clone()),
                    PKCS11_TOKEN_ENV => Some(token.clone()),
                    _ => std::env::var(name).ok(),
                })?
            }
            None => open_key_store(&dir, options.demo)?,
        };
        let xpubs = load_xpubs(&dir, keys.as_ref())?;
        let policy = load_policy()?;
        let (log, records) = RecordLog::open(&dir.join(LOG_FILE))?;
        let mut book = Book::new(policy, options.whitelist_delay_s, keys, Some(log))?;
        book.replay(records)?;
        Ok(CustodyHub {
            inner: Arc::new(Inner {
                core,
                compliance,
                ledger,
                book: Mutex::new(book),
                ops: tokio::sync::Mutex::new(()),
                xpubs,
                por: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// Runs the driver until shutdown: finishes what a restart interrupted, signs withdrawals
    /// whose time lock ran out, re-asks the gate about held ones (their case may be decided),
    /// and retries ledger records that failed.
    pub fn spawn_driver(&self, mut shutdown: watch::Receiver<bool>) {
        let hub = self.clone();
        tokio::spawn(async move {
            let mut round = 0u64;
            loop {
                hub.drive(round.is_multiple_of(10)).await;
                round += 1;
                tokio::select! {
                    _ = tokio::time::sleep(DRIVE_EVERY) => {}
                    _ = shutdown.changed() => return,
                }
            }
        });
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.inner.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn commit(&self, record: Record) -> Result<Applied, Status> {
        self.book().commit(record)
    }

    fn now(&self) -> u64 {
        self.book().now()
    }

    /// Records the demo's opening deposits (already credited to the engine by the seeding) as
    /// held by the hot wallets, so the reserves match the liabilities.
    pub fn seed_reserves(&self, totals: &[(AssetId, u64)]) -> anyhow::Result<()> {
        for (asset, amount) in totals {
            let time_us = self.now();
            self.commit(Record::Reserves {
                asset: *asset,
                amount_minor: *amount,
                time_us,
            })
            .map_err(|s| anyhow::anyhow!("custody reserves: {}", s.message()))?;
        }
        Ok(())
    }

    /// The deposit address of an account for an asset.
    pub fn deposit_address(&self, account: u64, asset: AssetId) -> Result<String, Status> {
        let xpub = self
            .inner
            .xpubs
            .get(&asset)
            .ok_or_else(|| engine_status(RejectCode::UnknownAsset, "asset"))?;
        deposit_address(xpub, account)
    }

    /// Runs an engine command; `Ok(Err(code))` when the engine refused it.
    async fn engine(&self, kind: CommandKind) -> Result<Result<u64, RejectCode>, Status> {
        let applied = self.inner.core.command(kind).await?;
        for e in &applied.events {
            if let Event::Rejected { code, .. } = e {
                return Ok(Err(*code));
            }
        }
        Ok(Ok(applied.seq))
    }

    #[allow(clippy::too_many_arguments)]
    async fn screen(
        &self,
        transfer_id: u128,
        activity: GateActivity,
        account: u64,
        asset: AssetId,
        amount: u64,
        name: &str,
        address: &str,
        identification: Option<&str>,
    ) -> Result<Verdict, Status> {
        let verdict = self
            .inner
            .compliance
            .check(GateRequest {
                transfer_id,
                activity,
                account,
                asset,
                amount,
                counterparty: Some(Counterparty {
                    name: name.to_string(),
                    address: address.to_string(),
                    identification: identification.map(str::to_string),
                }),
                time_us: now_us(),
            })
            .await?;
        Ok(verdict.into())
    }

    // -- deposits --

    /// The chain watcher's report of an incoming deposit (see `CreditDeposit`).
    pub async fn credit_deposit(
        &self,
        r: &pb::CreditDepositRequest,
    ) -> Result<pb::Deposit, Status> {
        let deposit_id = text_field("deposit_id", &r.deposit_id, CUSTODY_ID_BYTES_MAX)?;
        let account: u64 = r
            .account_id
            .parse()
            .map_err(|_| ApiReject::InvalidField.status("account_id", "decimal account id"))?;
        let (asset, amount) = asset_amount(&r.asset, &r.amount)?;
        let address = ledger_address("address", &r.address)?;
        if address != self.deposit_address(account, asset)? {
            return Err(ApiReject::InvalidField.status(
                "address",
                "not this account's deposit address for this asset",
            ));
        }
        let originator_name = text_field("originator_name", &r.originator_name, TEXT_BYTES_MAX)?;
        if r.originator_address.len() > CUSTODY_ID_BYTES_MAX {
            return Err(ApiReject::FieldTooLong.status("originator_address", ""));
        }
        let originator_identification = if r.originator_identification.is_empty() {
            None
        } else {
            Some(text_field(
                "originator_identification",
                &r.originator_identification,
                CUSTODY_ID_BYTES_MAX,
            )?)
        };
        let _op = self.inner.ops.lock().await;
        let repeat = {
            let book = self.book();
            if let Some(n) = book.by_deposit_id.get(&deposit_id) {
                let d = &book.deposits[n];
                if (d.account, d.asset, d.amount_minor) != (account, asset, amount) {
                    return Err(custody_status(
                        CustodyReject::DuplicateId,
                        "deposit_id",
                        "this deposit id was reported with other values",
                    ));
                }
                if d.stage == DepositStage::Interrupted {
                    return Err(custody_status(
                        CustodyReject::WrongState,
                        "deposit_id",
                        "interrupted by a restart between screening and credit; an operator \
                         must reconcile it with the engine journal",
                    ));
                }
                if d.stage != DepositStage::Held {
                    return Ok(book.deposit_pb(d));
                }
                // The watcher's repeat of a held deposit re-asks the gate at once.
                Some(d.clone())
            } else {
                None
            }
        };
        if let Some(held) = repeat {
            self.recheck_deposit(&held).await?;
            let book = self.book();
            return Ok(book.deposit_pb(&book.deposits[&held.number]));
        }
        let number = {
            let book = self.book();
            if book.deposits.len() >= CUSTODY_DEPOSITS_MAX {
                return Err(ApiReject::InvalidField.status("", "custody holds too many deposits"));
            }
            book.next_deposit()
        };
        let verdict = self
            .screen(
                deposit_transfer_id(number),
                GateActivity::Deposit,
                account,
                asset,
                amount,
                &originator_name,
                &r.originator_address,
                originator_identification.as_deref(),
            )
            .await?;
        let time_us = self.now();
        self.commit(Record::DepositScreened {
            number,
            deposit_id,
            account,
            asset,
            amount_minor: amount,
            originator_name,
            originator_address: r.originator_address.clone(),
            originator_identification,
            verdict,
            time_us,
        })?;
        self.advance_deposit(number).await?;
        let book = self.book();
        Ok(book.deposit_pb(&book.deposits[&number]))
    }

    /// Takes a deposit as far as it can go: credit, then the ledger record.
    async fn advance_deposit(&self, number: u64) -> Result<(), Status> {
        let Some(d) = self.book().deposits.get(&number).cloned() else {
            return Ok(());
        };
        let mut stage = d.stage.clone();
        if stage == DepositStage::Crediting {
            let outcome = self
                .engine(CommandKind::Deposit {
                    account: d.account,
                    asset: d.asset,
                    amount: d.amount_minor,
                })
                .await?;
            let time_us = self.now();
            match outcome {
                Ok(seq) => {
                    self.commit(Record::DepositCredited {
                        number,
                        seq,
                        time_us,
                    })?;
                    stage = DepositStage::Credited;
                }
                Err(code) => {
                    self.commit(Record::DepositFailed {
                        number,
                        code: code.code(),
                        time_us,
                    })?;
                    return Ok(());
                }
            }
        }
        if stage == DepositStage::Credited
            && d.height == 0
            && let Some(decision) = &d.decision
        {
            match self
                .inner
                .ledger
                .settle_deposit(
                    deposit_transfer_id(number),
                    d.account,
                    d.asset,
                    d.amount_minor,
                    decision,
                )
                .await
            {
                Ok(height) => {
                    self.commit(Record::DepositSettled { number, height })?;
                }
                Err(s) => {
                    tracing::warn!(number, error = %s.message(), "deposit not on the ledger yet; will retry");
                }
            }
        }
        Ok(())
    }

    // -- withdrawals --

    /// A customer's withdrawal request (see `RequestWithdrawal`).
    pub async fn request_withdrawal(
        &self,
        c: &Caller,
        r: &pb::RequestWithdrawalRequest,
    ) -> Result<pb::Withdrawal, Status> {
        c.require(TRADING)?;
        let account = c.account_for(&r.account_id, ADMIN)?;
        let (asset, amount) = asset_amount(&r.asset, &r.amount)?;
        let destination = ledger_address("destination", &r.destination)?;
        let beneficiary_name = text_field("beneficiary_name", &r.beneficiary_name, TEXT_BYTES_MAX)?;
        let client_request_id = text_field(
            "client_request_id",
            &r.client_request_id,
            CUSTODY_ID_BYTES_MAX,
        )?;
        let _op = self.inner.ops.lock().await;
        let repeat = {
            let book = self.book();
            match book.by_request.get(&(account, client_request_id.clone())) {
                Some(n) => {
                    let w = &book.withdrawals[n];
                    if (w.asset, w.amount_minor, &w.destination) != (asset, amount, &destination) {
                        return Err(custody_status(
                            CustodyReject::DuplicateId,
                            "client_request_id",
                            "this id was used for another request",
                        ));
                    }
                    if w.stage != Stage::Held {
                        return Ok(book.withdrawal_pb(w));
                    }
                    // A repeat of a held request re-asks the gate at once (its case may have
                    // been decided).
                    Some(w.clone())
                }
                None => None,
            }
        };
        if let Some(held) = repeat {
            self.recheck_withdrawal(&held).await?;
            let book = self.book();
            return Ok(book.withdrawal_pb(&book.withdrawals[&held.number]));
        }
        let (number, address) = {
            let book = self.book();
            let address = match book.addresses.get(&(asset, destination.clone())) {
                Some(id) => (*id, false),
                None => (book.next_address(), true),
            };
            (book.next_withdrawal(), address)
        };
        let (address_id, new_address) = address;
        if new_address {
            let time_us = self.now();
            if let Applied::Refused(code) = self.commit(Record::AddressAdded {
                id: address_id,
                asset,
                address: destination.clone(),
                time_us,
            })? {
                return Err(custody_status(code, "destination", ""));
            }
        }
        // First out of the available balance, so the amount cannot be traded meanwhile.
        let debit_seq = match self
            .engine(CommandKind::Withdraw {
                account,
                asset,
                amount,
            })
            .await?
        {
            Ok(seq) => seq,
            Err(code) => return Err(engine_status(code, "amount")),
        };
        let time_us = self.now();
        let role = c
            .roles
            .first()
            .map(|r| r.as_str_name().to_string())
            .unwrap_or_default();
        self.commit(Record::WithdrawalOpened {
            number,
            account,
            asset,
            amount_minor: amount,
            destination,
            address_id,
            beneficiary_name,
            client_request_id,
            requested_by: c.key_id.clone(),
            initiator: identity(c.account),
            role,
            debit_seq,
            time_us,
        })?;
        self.advance_withdrawal(number).await?;
        let book = self.book();
        Ok(book.withdrawal_pb(&book.withdrawals[&number]))
    }

    /// Takes a withdrawal as far as it can go now: screening, refund, signing, ledger.
    async fn advance_withdrawal(&self, number: u64) -> Result<(), Status> {
        // Each pass makes one step; a withdrawal has at most five, the bound is generous.
        for _ in 0..8 {
            let (w, status) = {
                let book = self.book();
                let Some(w) = book.withdrawals.get(&number).cloned() else {
                    return Ok(());
                };
                (w, book.custody_status(number).cloned())
            };
            match w.stage {
                Stage::Screening => {
                    let verdict = self
                        .screen(
                            withdrawal_transfer_id(number),
                            GateActivity::Withdrawal,
                            w.account,
                            w.asset,
                            w.amount_minor,
                            &w.beneficiary_name,
                            &w.destination,
                            None,
                        )
                        .await?;
                    let time_us = self.now();
                    self.commit(Record::WithdrawalScreened {
                        number,
                        verdict,
                        time_us,
                    })?;
                }
                Stage::RefundDue => {
                    let seq = match self
                        .engine(CommandKind::Deposit {
                            account: w.account,
                            asset: w.asset,
                            amount: w.amount_minor,
                        })
                        .await?
                    {
                        Ok(seq) => seq,
                        Err(code) => {
                            tracing::error!(
                                number,
                                ?code,
                                "the engine refused a withdrawal refund"
                            );
                            return Err(engine_status(code, ""));
                        }
                    };
                    let time_us = self.now();
                    self.commit(Record::WithdrawalRefunded {
                        number,
                        seq,
                        time_us,
                    })?;
                }
                Stage::InCustody => {
                    let time_us = self.now();
                    let due = match status {
                        Some(CustodyStatus::ReadyToSign) => true,
                        Some(CustodyStatus::TimeLocked { unlock_at_us }) => time_us >= unlock_at_us,
                        Some(CustodyStatus::Submitted(_)) => {
                            if let Some(decision) = &w.decision {
                                match self
                                    .inner
                                    .ledger
                                    .settle_withdrawal(
                                        withdrawal_transfer_id(number),
                                        w.account,
                                        w.asset,
                                        w.amount_minor,
                                        decision,
                                    )
                                    .await
                                {
                                    Ok(height) => {
                                        self.commit(Record::WithdrawalSettled { number, height })?;
                                    }
                                    Err(s) => tracing::warn!(
                                        number,
                                        error = %s.message(),
                                        "withdrawal not on the ledger yet; will retry"
                                    ),
                                }
                            }
                            return Ok(());
                        }
                        _ => false,
                    };
                    if !due {
                        return Ok(());
                    }
                    if let Applied::Refused(code) = self.commit(Record::WithdrawalSigned {
                        number,
                        time_us,
                        signature: None,
                    })? {
                        tracing::warn!(number, %code, "custody refused to sign");
                        return Ok(());
                    }
                }
                Stage::Held | Stage::Rejected | Stage::Completed => return Ok(()),
            }
        }
        Ok(())
    }

    /// An approver's approval.
    pub async fn approve(&self, c: &Caller, id: &str) -> Result<pb::Withdrawal, Status> {
        c.require(APPROVER)?;
        let number = withdrawal_number(id)?;
        let _op = self.inner.ops.lock().await;
        {
            let book = self.book();
            let w = book.withdrawal(number).ok_or_else(|| {
                custody_status(CustodyReject::UnknownWithdrawal, "withdrawal_id", "")
            })?;
            if w.account == c.account {
                return Err(custody_status(
                    CustodyReject::InitiatorCannotApprove,
                    "withdrawal_id",
                    "an approver never approves a withdrawal from their own account",
                ));
            }
            let awaiting = w.stage == Stage::InCustody
                && matches!(
                    book.custody_status(number),
                    Some(CustodyStatus::AwaitingApprovals { .. })
                );
            if !awaiting {
                return Err(custody_status(
                    CustodyReject::WrongState,
                    "withdrawal_id",
                    "not waiting for approvals",
                ));
            }
        }
        let time_us = self.now();
        if let Applied::Refused(code) = self.commit(Record::WithdrawalApproval {
            number,
            approver: identity(c.account),
            key_id: c.key_id.clone(),
            time_us,
        })? {
            return Err(custody_status(code, "withdrawal_id", ""));
        }
        self.advance_withdrawal(number).await?;
        let book = self.book();
        Ok(book.withdrawal_pb(&book.withdrawals[&number]))
    }

    /// An approver's rejection: custody cancels, the amount returns to the account.
    pub async fn reject(
        &self,
        c: &Caller,
        id: &str,
        reason: &str,
    ) -> Result<pb::Withdrawal, Status> {
        c.require(APPROVER)?;
        let number = withdrawal_number(id)?;
        if reason.len() > TEXT_BYTES_MAX {
            return Err(ApiReject::FieldTooLong.status("reason", ""));
        }
        if reason.chars().any(char::is_control) {
            return Err(ApiReject::InvalidField.status("reason", "control characters"));
        }
        let _op = self.inner.ops.lock().await;
        {
            let book = self.book();
            let w = book.withdrawal(number).ok_or_else(|| {
                custody_status(CustodyReject::UnknownWithdrawal, "withdrawal_id", "")
            })?;
            let open = w.stage == Stage::InCustody
                && matches!(
                    book.custody_status(number),
                    Some(
                        CustodyStatus::AwaitingApprovals { .. }
                            | CustodyStatus::TimeLocked { .. }
                            | CustodyStatus::ReadyToSign
                    )
                );
            if !open {
                return Err(custody_status(
                    CustodyReject::WrongState,
                    "withdrawal_id",
                    "only a withdrawal waiting for approvals or its time lock can be rejected",
                ));
            }
        }
        let time_us = self.now();
        if let Applied::Refused(code) = self.commit(Record::WithdrawalCancel {
            number,
            by: identity(c.account),
            key_id: c.key_id.clone(),
            reason: reason.to_string(),
            time_us,
        })? {
            return Err(custody_status(code, "withdrawal_id", ""));
        }
        self.advance_withdrawal(number).await?;
        let book = self.book();
        Ok(book.withdrawal_pb(&book.withdrawals[&number]))
    }

    /// A page of withdrawals, newest first.
    pub fn list(
        &self,
        c: &Caller,
        r: &pb::ListWithdrawalsRequest,
    ) -> Result<pb::ListWithdrawalsResponse, Status> {
        c.require(&[
            Role::Trader,
            Role::Merchant,
            Role::CustodyApprover,
            Role::Regulator,
            Role::Admin,
        ])?;
        let account = c.account_for(&r.account_id, LIST_ALL)?;
        let all = r.account_id.is_empty() && c.has_any(LIST_ALL);
        let status = pb::WithdrawalStatus::try_from(r.status)
            .map_err(|_| ApiReject::InvalidField.status("status", "unknown status"))?;
        let page = r.page.clone().unwrap_or_default();
        let size = match page.page_size as usize {
            0 => 50,
            n => n.min(LIST_WITHDRAWALS_MAX),
        };
        let below = if page.page_token.is_empty() {
            u64::MAX
        } else {
            page.page_token
                .parse()
                .map_err(|_| ApiReject::InvalidField.status("page.page_token", ""))?
        };
        let book = self.book();
        let numbers: Box<dyn Iterator<Item = u64> + '_> = if all {
            Box::new(book.withdrawals.range(..below).rev().map(|(n, _)| *n))
        } else {
            match book.by_account.get(&account) {
                Some(set) => Box::new(set.range(..below).rev().copied()),
                None => Box::new(std::iter::empty()),
            }
        };
        let mut withdrawals = Vec::with_capacity(size);
        let mut next_page_token = String::new();
        for (scanned, number) in numbers.enumerate() {
            // A status filter may skip many; the page then ends early with a token to go on.
            if withdrawals.len() == size || scanned == LIST_WITHDRAWALS_SCAN_MAX {
                next_page_token = (number + 1).to_string();
                break;
            }
            let Some(w) = book.withdrawals.get(&number) else {
                continue;
            };
            let view = book.withdrawal_pb(w);
            if status != pb::WithdrawalStatus::Unspecified && view.status != status as i32 {
                continue;
            }
            withdrawals.push(view);
        }
        Ok(pb::ListWithdrawalsResponse {
            withdrawals,
            page: Some(pb::PageResponse { next_page_token }),
        })
    }

    // -- proof of reserves --

    /// The latest publication; with `refresh`, a new one when the balances changed and the
    /// last is older than `POR_REFRESH_MIN_US`.
    pub async fn publication(&self, refresh: bool) -> Result<Arc<Publication>, Status> {
        let mut slot = self.inner.por.lock().await;
        let now = now_us();
        if let Some(p) = slot.as_ref()
            && (!refresh || now.saturating_sub(p.time_us) < POR_REFRESH_MIN_US)
        {
            return Ok(p.clone());
        }
        let (seq, accounts) = self.inner.core.all_balances().await?;
        let reserves: Vec<u128> = {
            let book = self.book();
            ASSETS.iter().map(|a| book.reserves(a.0)).collect()
        };
        if let Some(p) = slot.as_ref()
            && p.seq == seq
            && p.reserves == reserves
        {
            return Ok(p.clone());
        }
        let built =
            tokio::task::spawn_blocking(move || build_publication(seq, &accounts, reserves, now))
                .await
                .map_err(|_| ApiReject::Internal.status("", "proof of reserves build"))??;
        let built = Arc::new(built);
        *slot = Some(built.clone());
        Ok(built)
    }

    // -- the driver --

    async fn drive(&self, recheck_held: bool) {
        let _op = self.inner.ops.lock().await;
        let now = self.now();
        let (withdrawals, deposits, held_w, held_d) = {
            let book = self.book();
            let mut withdrawals = Vec::new();
            let mut held_w = Vec::new();
            for w in book
                .open_withdrawals
                .iter()
                .filter_map(|n| book.withdrawals.get(n))
            {
                let due = match w.stage {
                    Stage::Screening | Stage::RefundDue => true,
                    Stage::InCustody => match book.custody_status(w.number) {
                        Some(CustodyStatus::ReadyToSign | CustodyStatus::Submitted(_)) => true,
                        Some(CustodyStatus::TimeLocked { unlock_at_us }) => now >= *unlock_at_us,
                        _ => false,
                    },
                    Stage::Held => {
                        held_w.push(w.clone());
                        false
                    }
                    _ => false,
                };
                if due {
                    withdrawals.push(w.number);
                }
            }
            let mut deposits = Vec::new();
            let mut held_d = Vec::new();
            for d in book
                .open_deposits
                .iter()
                .filter_map(|n| book.deposits.get(n))
            {
                if d.stage == DepositStage::Credited && d.height == 0 {
                    deposits.push(d.number);
                }
                if d.stage == DepositStage::Held {
                    held_d.push(d.clone());
                }
            }
            (withdrawals, deposits, held_w, held_d)
        };
        for number in withdrawals {
            if let Err(s) = self.advance_withdrawal(number).await {
                tracing::warn!(number, error = %s.message(), "custody: withdrawal step failed");
            }
        }
        for number in deposits {
            if let Err(s) = self.advance_deposit(number).await {
                tracing::warn!(number, error = %s.message(), "custody: deposit step failed");
            }
        }
        if !recheck_held {
            return;
        }
        for w in held_w {
            if let Err(s) = self.recheck_withdrawal(&w).await {
                tracing::warn!(number = w.number, error = %s.message(), "custody: held withdrawal re-check failed");
            }
        }
        for d in held_d {
            if let Err(s) = self.recheck_deposit(&d).await {
                tracing::warn!(number = d.number, error = %s.message(), "custody: held deposit re-check failed");
            }
        }
    }

    /// Asks the gate again about a held withdrawal (its case may have been decided): released,
    /// it goes on to custody's policy; refused, its amount goes back. Caller holds `ops`.
    async fn recheck_withdrawal(&self, w: &WithdrawalRec) -> Result<(), Status> {
        let verdict = self
            .screen(
                withdrawal_transfer_id(w.number),
                GateActivity::Withdrawal,
                w.account,
                w.asset,
                w.amount_minor,
                &w.beneficiary_name,
                &w.destination,
                None,
            )
            .await?;
        if matches!(verdict, Verdict::Held { .. }) {
            return Ok(());
        }
        let time_us = self.now();
        self.commit(Record::WithdrawalScreened {
            number: w.number,
            verdict,
            time_us,
        })?;
        self.advance_withdrawal(w.number).await
    }

    /// Asks the gate again about a held deposit: released, it is credited. Caller holds `ops`.
    async fn recheck_deposit(&self, d: &DepositRec) -> Result<(), Status> {
        let verdict = self
            .screen(
                deposit_transfer_id(d.number),
                GateActivity::Deposit,
                d.account,
                d.asset,
                d.amount_minor,
                &d.originator_name,
                &d.originator_address,
                d.originator_identification.as_deref(),
            )
            .await?;
        if matches!(verdict, Verdict::Held { .. }) {
            return Ok(());
        }
        let time_us = self.now();
        self.commit(Record::DepositRescreened {
            number: d.number,
            verdict,
            time_us,
        })?;
        self.advance_deposit(d.number).await
    }
}

// ---- the service ---------------------------------------------------------------------------

/// `rempart.v1.Custody`.
#[derive(Debug, Clone)]
pub struct CustodySvc(pub super::services::Ctx);

#[tonic::async_trait]
impl pb::custody_server::Custody for CustodySvc {
    async fn get_deposit_address(
        &self,
        req: Request<pb::GetDepositAddressRequest>,
    ) -> Result<Response<pb::DepositAddress>, Status> {
        let c = caller(&req)?;
        c.require(CUSTOMER)?;
        let r = req.get_ref();
        let account = c.account_for(&r.account_id, READERS)?;
        let asset =
            asset_id(&r.asset).ok_or_else(|| engine_status(RejectCode::UnknownAsset, "asset"))?;
        Ok(Response::new(pb::DepositAddress {
            asset: r.asset.clone(),
            address: self.0.custody.deposit_address(account, asset)?,
            memo: String::new(),
        }))
    }

    async fn request_withdrawal(
        &self,
        req: Request<pb::RequestWithdrawalRequest>,
    ) -> Result<Response<pb::Withdrawal>, Status> {
        let c = caller(&req)?;
        Ok(Response::new(
            self.0.custody.request_withdrawal(&c, req.get_ref()).await?,
        ))
    }

    async fn approve_withdrawal(
        &self,
        req: Request<pb::ApproveWithdrawalRequest>,
    ) -> Result<Response<pb::Withdrawal>, Status> {
        let c = caller(&req)?;
        Ok(Response::new(
            self.0
                .custody
                .approve(&c, &req.get_ref().withdrawal_id)
                .await?,
        ))
    }

    async fn reject_withdrawal(
        &self,
        req: Request<pb::RejectWithdrawalRequest>,
    ) -> Result<Response<pb::Withdrawal>, Status> {
        let c = caller(&req)?;
        let r = req.get_ref();
        Ok(Response::new(
            self.0
                .custody
                .reject(&c, &r.withdrawal_id, &r.reason)
                .await?,
        ))
    }

    async fn list_withdrawals(
        &self,
        req: Request<pb::ListWithdrawalsRequest>,
    ) -> Result<Response<pb::ListWithdrawalsResponse>, Status> {
        let c = caller(&req)?;
        Ok(Response::new(self.0.custody.list(&c, req.get_ref())?))
    }

    async fn get_proof_of_reserves(
        &self,
        req: Request<pb::GetProofOfReservesRequest>,
    ) -> Result<Response<pb::ProofOfReserves>, Status> {
        caller(&req)?;
        let asset = req.get_ref().asset.clone();
        Publication::asset_index(&asset)?;
        let p = self.0.custody.publication(true).await?;
        Ok(Response::new(p.statement(&asset)?))
    }

    async fn get_inclusion_proof(
        &self,
        req: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::InclusionProof>, Status> {
        let c = caller(&req)?;
        let r = req.get_ref();
        let account = c.account_for(&r.account_id, READERS)?;
        Publication::asset_index(&r.asset)?;
        let p = self.0.custody.publication(false).await?;
        Ok(Response::new(p.inclusion(account, &r.asset)?))
    }

    async fn credit_deposit(
        &self,
        req: Request<pb::CreditDepositRequest>,
    ) -> Result<Response<pb::Deposit>, Status> {
        let c = caller(&req)?;
        c.require(APPROVER)?;
        Ok(Response::new(
            self.0.custody.credit_deposit(req.get_ref()).await?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Arc<dyn KeyStore> {
        let store: Arc<dyn KeyStore> = Arc::new(hsm::software::SoftwareKeyStore::in_memory());
        ensure_keys(store.as_ref()).unwrap();
        store
    }

    fn book(keys: &Arc<dyn KeyStore>, log: Option<RecordLog>) -> Book {
        Book::new(
            Policy::from_json(DEMO_POLICY_JSON).unwrap(),
            0,
            keys.clone(),
            log,
        )
        .unwrap()
    }

    fn decision(transfer_id: u128) -> SignedDecision {
        SignedDecision {
            transfer_id,
            outcome: kyc_aml::gate::decision::Outcome::Approve,
            hash: [7; 32],
            signature: [0; 64],
            gate_key_id: "gate".into(),
        }
    }

    const T0: u64 = 1_700_000_000_000_000;
    const CITY: AssetId = matching_engine::ASSET_CITY;

    /// Opening reserves, one address, and a withdrawal of `amount` CITY minor units by
    /// account 1001 (initiator acct:1001), approved by the gate.
    fn opened(number: u64, amount: u64, t: u64) -> Vec<Record> {
        vec![
            Record::AddressAdded {
                id: number,
                asset: CITY,
                address: format!("0x{:040x}", number),
                time_us: t,
            },
            Record::WithdrawalOpened {
                number,
                account: 1001,
                asset: CITY,
                amount_minor: amount,
                destination: format!("0x{:040x}", number),
                address_id: number,
                beneficiary_name: "Beneficiary".into(),
                client_request_id: format!("req-{number}"),
                requested_by: "rk_alice".into(),
                initiator: "acct:1001".into(),
                role: "ROLE_TRADER".into(),
                debit_seq: 10 + number,
                time_us: t,
            },
            Record::WithdrawalScreened {
                number,
                verdict: Verdict::Approved {
                    decision: decision(withdrawal_transfer_id(number)),
                },
                time_us: t,
            },
        ]
    }

    fn apply_all(book: &mut Book, records: &[Record]) -> Vec<Applied> {
        records.iter().map(|r| book.apply(r).unwrap()).collect()
    }

    fn status(book: &Book, number: u64) -> i32 {
        book.withdrawal_pb(book.withdrawal(number).unwrap()).status
    }

    #[test]
    fn approvals_reach_the_quorum_then_the_withdrawal_is_signed_and_sent() {
        let keys = keys();
        let mut b = book(&keys, None);
        let mut records = vec![Record::Reserves {
            asset: CITY,
            amount_minor: 10_000_000_000,
            time_us: T0,
        }];
        // 5 000 CITY: the "large" rule, two approvals.
        records.extend(opened(1, 5_000_000_000, T0 + 1));
        apply_all(&mut b, &records);
        let view = b.withdrawal_pb(b.withdrawal(1).unwrap());
        assert_eq!(view.status, pb::WithdrawalStatus::PendingApproval as i32);
        assert_eq!((view.approvals, view.approvals_required), (0, 2));
        assert_eq!(view.policy_rule, "large");
        let approve = |approver: &str, key: &str, t: u64| Record::WithdrawalApproval {
            number: 1,
            approver: approver.into(),
            key_id: key.into(),
            time_us: t,
        };
        // The requester, a non-member and a second approval by the same approver are refused.
        assert_eq!(
            b.apply(&approve("acct:1001", "rk_alice", T0 + 2)).unwrap(),
            Applied::Refused(CustodyReject::InitiatorCannotApprove)
        );
        assert_eq!(
            b.apply(&approve("acct:1002", "rk_bob", T0 + 3)).unwrap(),
            Applied::Refused(CustodyReject::NotAnApprover)
        );
        assert_eq!(
            b.apply(&approve("acct:1004", "rk_appr", T0 + 4)).unwrap(),
            Applied::Done
        );
        assert_eq!(
            b.apply(&approve("acct:1004", "rk_appr2", T0 + 5)).unwrap(),
            Applied::Refused(CustodyReject::AlreadyApproved)
        );
        let view = b.withdrawal_pb(b.withdrawal(1).unwrap());
        assert_eq!((view.approvals, view.approved_by.len()), (1, 1));
        assert_eq!(
            b.apply(&approve("acct:1", "rk_admin", T0 + 6)).unwrap(),
            Applied::Done
        );
        assert_eq!(b.custody_status(1), Some(&CustodyStatus::ReadyToSign));
        assert_eq!(
            b.apply(&Record::WithdrawalSigned {
                number: 1,
                time_us: T0 + 7,
                signature: None,
            })
            .unwrap(),
            Applied::Done
        );
        assert_eq!(status(&b, 1), pb::WithdrawalStatus::Sent as i32);
        assert_eq!(b.reserves(CITY), 5_000_000_000);
        // The signature verifies against the hot wallet's key.
        let Some(CustodyStatus::Submitted(signed)) = b.custody_status(1) else {
            panic!("not submitted");
        };
        assert_eq!(signed.key_label, "hot-CITY");
        b.apply(&Record::WithdrawalSettled {
            number: 1,
            height: 9,
        })
        .unwrap();
        let view = b.withdrawal_pb(b.withdrawal(1).unwrap());
        assert_eq!(
            (view.status, view.block_height),
            (pb::WithdrawalStatus::Completed as i32, 9)
        );
        // Final: off the driver's work list, still listed for its owner.
        assert!(b.open_withdrawals.is_empty());
        assert_eq!(
            b.by_account[&1001].iter().copied().collect::<Vec<_>>(),
            vec![1]
        );
    }

    #[test]
    fn a_time_lock_signs_only_once_it_ran_out() {
        let keys = keys();
        let mut b = book(&keys, None);
        let mut records = vec![Record::Reserves {
            asset: CITY,
            amount_minor: 10_000_000,
            time_us: T0,
        }];
        // 0.5 CITY: "micro-city", a 30 s time lock.
        records.extend(opened(1, 500_000, T0));
        apply_all(&mut b, &records);
        let view = b.withdrawal_pb(b.withdrawal(1).unwrap());
        assert_eq!(view.status, pb::WithdrawalStatus::TimeLocked as i32);
        assert_eq!(view.not_before, Some(timestamp(T0 + 30_000_000)));
        let sign = |t| Record::WithdrawalSigned {
            number: 1,
            time_us: t,
            signature: None,
        };
        assert_eq!(
            b.apply(&sign(T0 + 29_999_999)).unwrap(),
            Applied::Refused(CustodyReject::TimeLockActive)
        );
        assert_eq!(b.apply(&sign(T0 + 30_000_000)).unwrap(), Applied::Done);
        assert_eq!(status(&b, 1), pb::WithdrawalStatus::Sent as i32);
    }

    #[test]
    fn held_and_rejected_verdicts_never_reach_custody_and_a_policy_refusal_is_refunded() {
        let keys = keys();
        let mut b = book(&keys, None);
        let mut records = opened(1, 5_000_000, T0);
        records[2] = Record::WithdrawalScreened {
            number: 1,
            verdict: Verdict::Held {
                case_id: "7".into(),
                reason: "sanctions".into(),
            },
            time_us: T0,
        };
        let mut second = opened(2, 5_000_000, T0);
        second[2] = Record::WithdrawalScreened {
            number: 2,
            verdict: Verdict::Rejected {
                code: 3001,
                reason: "limit".into(),
            },
            time_us: T0,
        };
        records.extend(second);
        apply_all(&mut b, &records);
        let held = b.withdrawal_pb(b.withdrawal(1).unwrap());
        assert_eq!(
            (held.status, held.case_id.as_str()),
            (pb::WithdrawalStatus::Held as i32, "7")
        );
        assert!(b.custody_status(1).is_none());
        assert_eq!(b.withdrawal(2).unwrap().stage, Stage::RefundDue);
        assert!(b.custody_status(2).is_none());
        // No hot-wallet balance: custody's own check denies, and the refund is due.
        let mut third = opened(3, 5_000_000, T0 + 1);
        third.remove(0);
        third[0] = Record::WithdrawalOpened {
            number: 3,
            account: 1001,
            asset: CITY,
            amount_minor: 5_000_000,
            destination: format!("0x{:040x}", 1),
            address_id: 1,
            beneficiary_name: "B".into(),
            client_request_id: "req-3".into(),
            requested_by: "rk_alice".into(),
            initiator: "acct:1001".into(),
            role: "ROLE_TRADER".into(),
            debit_seq: 20,
            time_us: T0 + 1,
        };
        let out = apply_all(&mut b, &third);
        assert_eq!(out[1], Applied::Refused(CustodyReject::InsufficientBalance));
        assert_eq!(b.withdrawal(3).unwrap().stage, Stage::RefundDue);
        b.apply(&Record::WithdrawalRefunded {
            number: 3,
            seq: 21,
            time_us: T0 + 2,
        })
        .unwrap();
        let view = b.withdrawal_pb(b.withdrawal(3).unwrap());
        assert_eq!(view.status, pb::WithdrawalStatus::Rejected as i32);
        // The held one and the one whose refund is due stay on the driver's list.
        assert_eq!(
            b.open_withdrawals.iter().copied().collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert!(view.rejection_reason.contains("insufficient"));
    }

    #[test]
    fn the_log_replays_into_the_same_state_and_cuts_only_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE);
        let keys = keys();
        let (log, none) = RecordLog::open(&path).unwrap();
        assert!(none.is_empty());
        let mut live = book(&keys, Some(log));
        let mut records = vec![Record::Reserves {
            asset: CITY,
            amount_minor: 10_000_000_000,
            time_us: T0,
        }];
        records.extend(opened(1, 5_000_000, T0 + 1));
        records.push(Record::WithdrawalApproval {
            number: 1,
            approver: "acct:1004".into(),
            key_id: "rk_appr".into(),
            time_us: T0 + 2,
        });
        records.push(Record::WithdrawalSigned {
            number: 1,
            time_us: T0 + 3,
            signature: None,
        });
        for r in &records {
            live.commit(r.clone()).unwrap();
        }
        drop(live.log.take());
        // A torn append at the end is cut.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"0123456789abcdef {\"reserves\":{\"as")
            .unwrap();
        drop(f);
        let (_log, read) = RecordLog::open(&path).unwrap();
        // What was written is what was committed, the key store's signature filled in.
        let signature = live.signature_of(1);
        assert!(signature.is_some());
        let mut expected = records.clone();
        expected[5] = Record::WithdrawalSigned {
            number: 1,
            time_us: T0 + 3,
            signature: signature.clone(),
        };
        assert_eq!(read, expected);
        let mut replayed = book(&keys, None);
        replayed.replay(read.clone()).unwrap();
        assert_eq!(replayed.custody.audit().head(), live.custody.audit().head());
        // A replay signs nothing: with other keys the recorded signature is still the one.
        let other_keys = super::tests::keys();
        let mut elsewhere = book(&other_keys, None);
        elsewhere.replay(read).unwrap();
        assert_eq!(elsewhere.signature_of(1), signature);
        assert_eq!(
            elsewhere.custody.audit().head(),
            live.custody.audit().head()
        );
        assert_eq!(
            replayed.withdrawal_pb(replayed.withdrawal(1).unwrap()),
            live.withdrawal_pb(live.withdrawal(1).unwrap())
        );
        assert_eq!(replayed.reserves(CITY), live.reserves(CITY));
        // Damage before the last line refuses to open.
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("\"reserves\"", "\"reservez\"", 1)).unwrap();
        let err = RecordLog::open(&path).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn an_approved_deposit_not_yet_credited_is_interrupted_after_a_restart() {
        let keys = keys();
        let mut b = book(&keys, None);
        let screened = |number: u64, id: &str| Record::DepositScreened {
            number,
            deposit_id: id.into(),
            account: 1001,
            asset: CITY,
            amount_minor: 42,
            originator_name: "O".into(),
            originator_address: "0xabc".into(),
            originator_identification: Some("CUST-1".into()),
            verdict: Verdict::Approved {
                decision: decision(deposit_transfer_id(number)),
            },
            time_us: T0,
        };
        b.replay(vec![
            screened(1, "tx1"),
            Record::DepositCredited {
                number: 1,
                seq: 5,
                time_us: T0,
            },
            screened(2, "tx2"),
        ])
        .unwrap();
        assert_eq!(b.deposits[&1].stage, DepositStage::Credited);
        assert_eq!(b.deposits[&2].stage, DepositStage::Interrupted);
        // The credited one waits for its ledger record; the interrupted one for an operator.
        assert_eq!(b.open_deposits.iter().copied().collect::<Vec<_>>(), vec![1]);
        assert_eq!(b.reserves(CITY), 42);
    }

    #[test]
    fn deposit_addresses_are_stable_distinct_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let keys = keys();
        let first = load_xpubs(dir.path(), keys.as_ref()).unwrap();
        let again = load_xpubs(dir.path(), keys.as_ref()).unwrap();
        // Without the xpub file, the wrapped seed gives the same keys.
        std::fs::remove_file(dir.path().join(XPUBS_FILE)).unwrap();
        let rederived = load_xpubs(dir.path(), keys.as_ref()).unwrap();
        let xpub = &first[&CITY];
        for account in [1001u64, 1 << 40] {
            let a = deposit_address(xpub, account).unwrap();
            assert_eq!(a, deposit_address(&again[&CITY], account).unwrap());
            assert_eq!(a, deposit_address(&rederived[&CITY], account).unwrap());
            assert_eq!(ledger_address("a", &a).unwrap(), a);
        }
        let a = deposit_address(xpub, 1001).unwrap();
        assert_ne!(a, deposit_address(xpub, 1002).unwrap());
        assert_ne!(
            a,
            deposit_address(&first[&matching_engine::ASSET_EUR], 1001).unwrap()
        );
        assert!(deposit_address(xpub, 1 << 62).is_err());
        // The online side never writes the seed in clear.
        let wrapped = std::fs::read(dir.path().join(SEED_FILE)).unwrap();
        assert!(wrapped.len() > 32);
    }

    #[test]
    fn only_a_demo_runs_custody_keys_under_the_public_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let none = |_: &str| None;
        let err = open_key_store_with(dir.path(), false, &none)
            .unwrap_err()
            .to_string();
        assert!(err.contains(PASSPHRASE_ENV), "{err}");
        let half = |k: &str| (k == PKCS11_MODULE_ENV).then(|| "/nonexistent.so".to_string());
        let err = open_key_store_with(dir.path(), true, &half)
            .unwrap_err()
            .to_string();
        assert!(err.contains(PKCS11_PIN_ENV), "{err}");
        let set = |k: &str| (k == PASSPHRASE_ENV).then(|| "correct horse".to_string());
        let store = open_key_store_with(dir.path(), false, &set).unwrap();
        let labels: Vec<String> = store
            .list_keys()
            .unwrap()
            .into_iter()
            .map(|k| k.label)
            .collect();
        assert!(labels.contains(&"hot-CITY".to_string()), "{labels:?}");
        assert!(dir.path().join("keys").exists());
    }

    #[test]
    fn ledger_addresses_and_fields_are_validated() {
        assert!(ledger_address("d", "0x00112233445566778899AABBCCDDEEFF00112233").is_ok());
        for bad in ["", "0x", "00112233445566778899aabbccddeeff00112233", "0xzz"] {
            assert!(ledger_address("d", bad).is_err(), "{bad}");
        }
        assert!(text_field("n", "", 10).is_err());
        assert!(text_field("n", "a\u{7}", 10).is_err());
        assert!(text_field("n", "abcdefghijk", 10).is_err());
        assert!(asset_amount("CITY", "0").is_err());
        assert!(asset_amount("CITY", "0.0000001").is_err());
        assert!(asset_amount("XXX", "1").is_err());
        assert_eq!(
            asset_amount("EUR", "12.34").unwrap(),
            (matching_engine::ASSET_EUR, 1234)
        );
    }

    #[test]
    fn a_publication_leaves_out_the_fee_account_and_its_proofs_verify() {
        let accounts = vec![
            (FEE_ACCOUNT, vec![(CITY, 5, 0)]),
            (
                1001,
                vec![(CITY, 100, 20), (matching_engine::ASSET_EUR, 7, 0)],
            ),
            (1002, vec![(CITY, 3, 0)]),
            (1003, vec![]),
        ];
        let p = build_publication(4, &accounts, vec![200, 7, 0], T0).unwrap();
        let statement = p.statement("CITY").unwrap();
        assert_eq!(statement.leaf_count, 3);
        assert_eq!(statement.total_liabilities, "0.000123");
        assert_eq!(statement.total_reserves, "0.0002");
        let proof = p.inclusion(1001, "CITY").unwrap();
        assert_eq!(proof.balance, "0.00012");
        assert_eq!(proof.root, statement.liabilities_root);
        let full = custody::por::InclusionProof::from_bytes(&proof.proof).unwrap();
        let verified = full.verify().unwrap();
        assert_eq!(verified.root, statement.liabilities_root);
        assert_eq!(verified.account_id, 1001);
        assert_eq!(verified.balances, vec![120, 7, 0]);
        assert!(p.inclusion(FEE_ACCOUNT, "CITY").is_err());
        assert!(p.inclusion(1001, "XXX").is_err());
    }
}
