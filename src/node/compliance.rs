//! Compliance in the node: kyc-aml's gate, customer and case store, sanctions screener and
//! trusted identity issuers behind one handle ([`Compliance`]), and the `rempart.v1.Compliance`
//! service ([`ComplianceSvc`]).
//!
//! # Layout
//! - [`Compliance::open`]: the gate's Ed25519 key in the node's embedded key store
//!   (`<data_dir>/compliance/keys`, `hsm::software::SoftwareKeyStore`, passphrase from
//!   `REMPART_COMPLIANCE_PASSPHRASE`; the demo falls back to a fixed passphrase and warns), the
//!   store (SQLite `<data_dir>/compliance/kyc.sqlite`, or PostgreSQL when
//!   `REMPART_KYC_POSTGRES` names one), the screener (a small embedded demo list, plus the UN
//!   consolidated list when `REMPART_UNSC_XML` names its XML), the monitoring rules (the
//!   defaults, `REMPART_KYC_RULES`, or the demo's scaled copy, see [`DEMO_SCALE`]), and the
//!   trusted issuers (`REMPART_KYC_ISSUERS="id:hex-ed25519-public-key,..."`; the demo
//!   adds its own provider, whose key it keeps in `<data_dir>/compliance/demo-provider.key`).
//! - [`Compliance::check`]: a transfer through the gate; a hold opens a case.
//! - [`Compliance::may_trade`]: the cheap per-order check (active tier, not frozen), answered
//!   from an in-memory map kept up to date by every write.
//! - [`ComplianceSvc`]: attestations, customer status, cases, goAML reports.
//! - [`kyc_status`]: kyc-aml refusals as gRPC statuses (code 20000 + k).
//!
//! Personal data (names, birth dates, national ids) enters through signed attestations, goes to
//! the store and, for an export, into the goAML document; it is never logged, never in a
//! `Debug` output and never in an error detail.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use ed25519_dalek::{Signer, SigningKey};
use kyc_aml::attestation::{
    Assurance, Attestation, AttestationClaims, IssuerKind, IssuerRegistry, canonical_claims_bytes,
};
use kyc_aml::case::{Case, CaseState, Disposition};
use kyc_aml::customer::{
    Activity, CddLevel, CustomerKind, CustomerProfile, PersonalData, RiskRating, Tier, TierTable,
};
use kyc_aml::gate::decision::{Outcome, ReasonEntry, SignedDecision, signing_message};
use kyc_aml::gate::{Decision, Gate, GateConfig};
use kyc_aml::goaml::{ReportKind, ReportRequest, ReportingEntity};
use kyc_aml::monitoring::RuleSet;
use kyc_aml::screening::model::{NameKind, SubjectKind};
use kyc_aml::screening::{Entry, ListSnapshot, ScreenConfig, Screener};
use kyc_aml::store::pg::{PgBackend, PgStore};
use kyc_aml::store::sqlite::SqliteStore;
use kyc_aml::store::{CustomerRecord, KycStore, SqlBackend, SqlStore, StoredDecision, Val};
use kyc_aml::transfer::{CounterpartyKind, Direction, Transfer};
use kyc_aml::travel_rule::{
    Beneficiary, NameIdentifier, NaturalPerson, NaturalPersonName, Originator, Person,
    TravelRuleData, Vasp,
};
use kyc_aml::{Refusal, Reject};
use rempart_proto::v1 as pb;
use rempart_proto::v1::Role;
use sha2::{Digest, Sha256};
use tonic::{Code, Request, Response, Status};
use zeroize::Zeroizing;

use super::auth::Caller;
use super::core::Core;
use super::decimal::canonical;
use super::errors::{ApiReject, KYC_CODE_BASE, build_status};
use super::hub::{asset_code, asset_decimals, timestamp};
use super::services::Ctx;

/// Label of the gate's Ed25519 key in the key store; decisions name it as their gate key id.
pub const GATE_KEY_LABEL: &str = "kyc-gate";
/// Id of the demo's identity provider.
pub const DEMO_ISSUER: &str = "demo-idp";
/// Key-store passphrase (the demo falls back to [`DEMO_PASSPHRASE`]).
pub const PASSPHRASE_ENV: &str = "REMPART_COMPLIANCE_PASSPHRASE";
/// The demo's key-store passphrase when none is given. Not a secret: the demo says so.
pub const DEMO_PASSPHRASE: &str = "rempart-demo-not-secret";
/// Trusted issuers: `id:hex-ed25519-public-key,...`.
pub const ISSUERS_ENV: &str = "REMPART_KYC_ISSUERS";
/// The UN Security Council consolidated list (XML), loaded next to the demo list.
pub const UNSC_ENV: &str = "REMPART_UNSC_XML";
/// PostgreSQL connection (libpq form, `host=... user=... dbname=...`) for the kyc-aml store.
pub const POSTGRES_ENV: &str = "REMPART_KYC_POSTGRES";
/// EUR reference rates: `ASSET:decimal-eur-per-unit,...` (demo default 1 EUR for each).
pub const RATES_ENV: &str = "REMPART_KYC_EUR_RATES";
/// The goAML reporting entity (JSON file, `kyc_aml::goaml::ReportingEntity`).
pub const GOAML_ENTITY_ENV: &str = "REMPART_GOAML_ENTITY";
/// Our own VASP's LEI, written into travel-rule data.
pub const VASP_LEI_ENV: &str = "REMPART_VASP_LEI";
/// PostgreSQL schema of the kyc-aml store (default [`POSTGRES_SCHEMA_DEFAULT`]).
pub const POSTGRES_SCHEMA_ENV: &str = "REMPART_KYC_POSTGRES_SCHEMA";
/// The default PostgreSQL schema of the kyc-aml store.
pub const POSTGRES_SCHEMA_DEFAULT: &str = "kyc";

/// Cases returned by one ListCases page at most.
pub const LIST_CASES_MAX: u32 = 100;
/// Cases per page when the request does not say.
pub const LIST_CASES_DEFAULT: u32 = 20;
/// Open case ids listed in a customer status at most.
pub const STATUS_CASES_MAX: i64 = 100;
/// How long an attestation made by `rempart kyc attest` (and the demo) stays valid by default.
pub const ATTESTATION_DAYS_DEFAULT: u32 = 365;
/// Longest attestation validity `rempart kyc attest` signs.
pub const ATTESTATION_DAYS_MAX: u32 = 5 * 365;

const DAY_US: i64 = kyc_aml::limits::DAY_US;
/// Seconds between two re-derivations of CDD levels whose attestations expired.
pub const REFRESH_EVERY_S: u64 = 60;
/// Locks that serialise checks of the same transfer id (see `Inner::check_locks`).
const CHECK_LOCKS: usize = 64;
/// A syntactically valid LEI for the demo (ISO 17442 check digits); deployments set their own.
const DEMO_VASP_LEI: &str = "529900T8BM49AURSDO55";
/// Names of the demo's embedded sanctions list (fictitious; for tests and demonstrations).
const DEMO_LIST: &[(&str, SubjectKind, &str, Option<&str>)] = &[
    (
        "DEMO-1",
        SubjectKind::Individual,
        "Ivan Petrovich Sidorov",
        None,
    ),
    (
        "DEMO-2",
        SubjectKind::Entity,
        "Lazarus Mixer Services",
        Some("0xdeadbeef00112233445566778899aabbccddeeff"),
    ),
    (
        "DEMO-3",
        SubjectKind::Individual,
        "Viktor Bout Nikolaevich",
        None,
    ),
];

/// A PostgreSQL connection string (URL or key=value form); it may carry a password, so its
/// `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct DbUrl(pub String);

impl std::fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DbUrl(<redacted>)")
    }
}

/// What a transfer is, for the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateActivity {
    /// Money comes in from outside (fiat or tokens).
    Deposit,
    /// Money leaves to outside.
    Withdrawal,
    /// A trade settlement leg: the account delivers `amount` of `asset`.
    Trade,
}

/// An external party: a withdrawal's beneficiary or a deposit's originator.
#[derive(Clone, PartialEq, Eq)]
pub struct Counterparty {
    /// Its name (screened against the sanctions lists).
    pub name: String,
    /// Its address (chain address or IBAN).
    pub address: String,
    /// How its institution identifies it (travel rule: a customer identification number or an
    /// official document number); an originator without one is not identified.
    pub identification: Option<String>,
}

impl std::fmt::Debug for Counterparty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A counterparty's name is personal data.
        f.debug_struct("Counterparty").finish_non_exhaustive()
    }
}

/// A transfer to evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateRequest {
    /// The ledger transfer id this decision is for (retries with the same id are idempotent).
    pub transfer_id: u128,
    /// What it is.
    pub activity: GateActivity,
    /// Engine account = customer id (pseudonymous).
    pub account: u64,
    /// matching_engine asset id.
    pub asset: u16,
    /// Minor units of `asset`.
    pub amount: u64,
    /// The external party, if any.
    pub counterparty: Option<Counterparty>,
    /// When (µs since the epoch).
    pub time_us: u64,
}

/// The gate's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateVerdict {
    /// Approved: the signed decision settlement needs.
    Approved(SignedDecision),
    /// Held for a person: a case was opened.
    Held {
        /// The case id (decimal).
        case_id: String,
        /// Why, without personal data.
        reason: String,
    },
    /// Refused: the stable kyc-aml reject code (the API publishes 20000 + code).
    Rejected {
        /// kyc-aml `Reject` code.
        code: u16,
        /// Why, without personal data.
        reason: String,
    },
}

/// What `may_trade` answers from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Standing {
    /// The customer's effective tier, `None` when CDD, EDD or erasure stop everything.
    tier: Option<Tier>,
    /// Frozen by compliance: an open case with a sanctions match, or a confirmed case.
    frozen: bool,
}

impl Standing {
    fn may_trade(self) -> bool {
        self.tier.is_some() && !self.frozen
    }
}

/// The kyc-aml store: SQLite (embedded) or PostgreSQL.
#[derive(Debug)]
enum Db {
    Sqlite(SqliteStore),
    Pg(PgStore),
}

macro_rules! with_db {
    ($db:expr, $s:ident => $body:expr) => {
        match $db {
            Db::Sqlite($s) => $body,
            Db::Pg($s) => $body,
        }
    };
}

async fn raw_query<B: SqlBackend>(
    s: &SqlStore<B>,
    sql: &str,
    params: Vec<Val>,
) -> Result<Vec<Vec<Val>>, kyc_aml::store::StoreError> {
    s.backend().query(sql, params).await
}

fn first_i64(rows: &[Vec<Val>]) -> Option<i64> {
    match rows.first().and_then(|r| r.first()) {
        Some(Val::I64(v)) => *v,
        _ => None,
    }
}

fn ids_of(rows: &[Vec<Val>]) -> Vec<u64> {
    rows.iter()
        .filter_map(|r| match r.first() {
            Some(Val::I64(Some(v))) => Some(*v as u64),
            _ => None,
        })
        .collect()
}

/// The compliance handle; cheap to clone.
#[derive(Clone)]
pub struct Compliance {
    inner: Arc<Inner>,
}

struct Inner {
    gate: Mutex<Gate>,
    /// The gate's screener, also used to screen customers at onboarding.
    screener: Arc<Screener>,
    keys: Arc<dyn hsm::KeyStore>,
    db: Db,
    issuers: IssuerRegistry,
    standing: RwLock<HashMap<u64, Standing>>,
    /// Serialises read-modify-write of customers and cases.
    writes: tokio::sync::Mutex<()>,
    /// Checks of one transfer id run one at a time (lock `transfer_id % CHECK_LOCKS`), so a
    /// retry racing its original finds the stored decision instead of evaluating twice.
    check_locks: Vec<tokio::sync::Mutex<()>>,
    /// Per customer, the next expiry of one of its attestations: when its CDD level may drop.
    expiries: Mutex<HashMap<u64, i64>>,
    next_case: AtomicU64,
    gate_public_key: [u8; 32],
    tiers: TierTable,
    /// EUR cents per whole unit, by asset id.
    rates: Vec<(u16, u64)>,
    vasp_lei: String,
    entity: ReportingEntity,
    demo_provider: Option<PathBuf>,
}

impl std::fmt::Debug for Compliance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compliance")
            .field("gate_key", &GATE_KEY_LABEL)
            .field("gate_public_key", &hex::encode(self.inner.gate_public_key))
            .field("db", &self.inner.db_kind())
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn db_kind(&self) -> &'static str {
        match self.db {
            Db::Sqlite(_) => "sqlite",
            Db::Pg(_) => "postgres",
        }
    }
}

fn store_err(e: impl std::fmt::Display) -> Status {
    tracing::error!(error = %e, "kyc-aml store failed");
    ApiReject::Internal.status("", "compliance store failure")
}

fn kyc_err(e: kyc_aml::KycError) -> Status {
    tracing::error!(error = %e, "kyc-aml failed");
    ApiReject::Internal.status("", "compliance failure")
}

fn now_i64() -> i64 {
    Core::now_us() as i64
}

/// Parses `id:hex-public-key,...` (the trusted issuers variable).
pub fn parse_issuers(text: &str) -> anyhow::Result<Vec<(String, [u8; 32])>> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, key) = item
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("{ISSUERS_ENV}: {item:?} is not id:hex-public-key"))?;
        let key: [u8; 32] = hex::decode(key.trim())
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| {
                anyhow::anyhow!("{ISSUERS_ENV}: key of {id:?} is not 32 bytes of hex")
            })?;
        out.push((id.trim().to_string(), key));
    }
    Ok(out)
}

/// Parses `ASSET:eur-per-unit,...` into EUR cents per whole unit; whole cents only.
pub fn parse_rates(text: &str) -> anyhow::Result<Vec<(u16, u64)>> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (code, rate) = item
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("{RATES_ENV}: {item:?} is not ASSET:rate"))?;
        let asset = super::hub::asset_id(code.trim())
            .ok_or_else(|| anyhow::anyhow!("{RATES_ENV}: unknown asset {code:?}"))?;
        let rate: rust_decimal::Decimal = rate
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{RATES_ENV}: rate of {code}: {e}"))?;
        let cents = rate * rust_decimal::Decimal::from(100);
        if cents <= rust_decimal::Decimal::ZERO || cents.fract() != rust_decimal::Decimal::ZERO {
            anyhow::bail!("{RATES_ENV}: rate of {code} must be positive, in whole cents");
        }
        let cents = u64::try_from(cents.mantissa() / 10i128.pow(cents.scale()))
            .map_err(|_| anyhow::anyhow!("{RATES_ENV}: rate of {code} is too large"))?;
        out.retain(|(a, _)| *a != asset);
        out.push((asset, cents));
    }
    Ok(out)
}

/// EUR cents worth of `amount` minor units of `asset`, rounded up (limits err on the safe
/// side) and at least one cent; `None` for an asset without a rate.
pub fn eur_minor(rates: &[(u16, u64)], asset: u16, amount: u64) -> Option<u64> {
    let cents = rates.iter().find(|r| r.0 == asset)?.1;
    let decimals = asset_decimals(asset)?;
    let scale = 10u128.pow(u32::from(decimals));
    let v = (u128::from(amount) * u128::from(cents)).div_ceil(scale);
    Some(u64::try_from(v).unwrap_or(u64::MAX).max(1))
}

/// Reads an Ed25519 seed file (64 hex digits).
pub fn read_key_file(path: &Path) -> anyhow::Result<Zeroizing<[u8; 32]>> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("key file {}: {e}", path.display()))?,
    );
    let bytes = Zeroizing::new(
        hex::decode(text.trim())
            .map_err(|_| anyhow::anyhow!("key file {}: not hex", path.display()))?,
    );
    let mut seed = Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        anyhow::bail!("key file {}: not 32 bytes", path.display());
    }
    seed.copy_from_slice(&bytes);
    Ok(seed)
}

/// Creates a new Ed25519 seed file (mode 0600, refused if it exists); returns the public key.
pub fn create_key_file(path: &Path) -> anyhow::Result<[u8; 32]> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut()).map_err(|e| anyhow::anyhow!("random source: {e}"))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("key file {}: {e}", path.display()))?;
    let text = Zeroizing::new(hex::encode(seed.as_ref()));
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    Ok(SigningKey::from_bytes(&seed).verifying_key().to_bytes())
}

/// The public key of a seed.
pub fn public_key_of(seed: &[u8; 32]) -> [u8; 32] {
    SigningKey::from_bytes(seed).verifying_key().to_bytes()
}

/// Signs claims as their issuer would.
pub fn sign_attestation(seed: &[u8; 32], claims: AttestationClaims) -> Attestation {
    let sig = SigningKey::from_bytes(seed).sign(&canonical_claims_bytes(&claims));
    Attestation {
        claims,
        signature: sig.to_bytes(),
    }
}

fn demo_screener(unsc: Option<&Path>) -> anyhow::Result<Screener> {
    let mut entries = Vec::new();
    for (id, kind, name, address) in DEMO_LIST {
        let mut e = Entry::new("DEMO", id, *kind);
        e.add_name(name, NameKind::Primary);
        if let Some(a) = address {
            e.crypto_addresses.push((*a).to_string());
        }
        entries.push(e);
    }
    if let Some(path) = unsc {
        let bytes = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("{UNSC_ENV} {}: {e}", path.display()))?;
        let (_, parsed) =
            kyc_aml::screening::formats::parse_file(&path.display().to_string(), &bytes)
                .map_err(|e| anyhow::anyhow!("{UNSC_ENV}: {e}"))?;
        entries.extend(parsed);
    }
    let snapshot = ListSnapshot::from_entries("rempart-demo+unsc", entries)
        .map_err(|e| anyhow::anyhow!("sanctions lists: {e}"))?;
    Ok(Screener::new(snapshot, ScreenConfig::default()))
}

/// The demo's scale for amounts in tier limits and monitoring rules: the demo funds each party
/// with about 2·10^9 EUR at its first start (so that benchmarks never run dry), which every
/// amount rule and every limit of the illustrative defaults would stop. The demo keeps the
/// same rule kinds, scores and windows with amounts ×10^6 and counts ×1000; a deployment
/// configures its own (`REMPART_KYC_RULES`).
pub const DEMO_SCALE: u64 = 1_000_000;
/// Rule configuration file (JSON, `kyc_aml::monitoring::RuleConfig`).
pub const RULES_ENV: &str = "REMPART_KYC_RULES";

/// The illustrative tier limits with every amount ×[`DEMO_SCALE`].
pub fn demo_tiers() -> TierTable {
    use kyc_aml::customer::{Limit, TierLimits};
    let scale = |l: Limit| Limit {
        per_day_minor: l.per_day_minor.saturating_mul(DEMO_SCALE),
        per_30d_minor: l.per_30d_minor.saturating_mul(DEMO_SCALE),
    };
    let tier = |t: TierLimits| TierLimits {
        trading: scale(t.trading),
        deposit: scale(t.deposit),
        withdrawal: scale(t.withdrawal),
        external_transfer: scale(t.external_transfer),
        bonus_redemption: scale(t.bonus_redemption),
    };
    let d = TierTable::default();
    TierTable {
        tier1: tier(d.tier1),
        tier2: tier(d.tier2),
        tier3: tier(d.tier3),
    }
}

/// The default monitoring rules with amounts ×[`DEMO_SCALE`] and counts ×1000.
pub fn demo_rules() -> anyhow::Result<RuleSet> {
    use kyc_aml::monitoring::RuleParams as P;
    let mut config = RuleSet::default_rules().config().clone();
    config.version = format!("{}-demo-scaled", config.version);
    let m = |v: &mut u64| *v = v.saturating_mul(DEMO_SCALE);
    for rule in &mut config.rules {
        match &mut rule.params {
            P::LargeTransfer {
                threshold_eur_minor,
            }
            | P::SelfHostedUnverified {
                threshold_eur_minor,
            }
            | P::NewCounterparty {
                threshold_eur_minor,
            }
            | P::Structuring {
                threshold_eur_minor,
                ..
            } => m(threshold_eur_minor),
            P::Velocity {
                count_max,
                amount_max_eur_minor,
                ..
            } => {
                m(amount_max_eur_minor);
                *count_max = count_max.saturating_mul(1_000);
            }
            P::RapidInOut {
                min_in_eur_minor, ..
            } => m(min_in_eur_minor),
            P::RoundAmount {
                unit_eur_minor,
                min_eur_minor,
            } => {
                m(unit_eur_minor);
                m(min_eur_minor);
            }
            P::HighRiskJurisdiction { .. } => {}
        }
    }
    RuleSet::new(config).map_err(|r| anyhow::anyhow!("demo rules: {r}"))
}

fn demo_entity() -> ReportingEntity {
    ReportingEntity {
        rentity_id: 1,
        rentity_branch: None,
        currency_code_local: "EUR".into(),
        mlro_first_name: "Demo".into(),
        mlro_last_name: "Officer".into(),
        mlro_occupation: Some("Money laundering reporting officer".into()),
        location: None,
    }
}

/// What a freshly onboarded demo party is called (fictitious names, not on any list).
fn demo_identity(name: &str) -> String {
    let mut chars = name.chars();
    let first: String = chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    format!("{first} Demo")
}

/// The compliance key store's passphrase from `env`: a demo node falls back to the public demo
/// passphrase (with a warning); any other node refuses to start without one.
fn gate_passphrase(
    demo: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<hsm::SecretBytes> {
    match env(PASSPHRASE_ENV) {
        Some(p) if !p.is_empty() => Ok(hsm::SecretBytes::new(p.into_bytes())),
        _ if demo => {
            tracing::warn!(
                "{PASSPHRASE_ENV} is not set: the demo's key store uses a fixed, public \
                 passphrase; NOT FOR PRODUCTION"
            );
            Ok(hsm::SecretBytes::new(DEMO_PASSPHRASE.as_bytes().to_vec()))
        }
        _ => anyhow::bail!(
            "{PASSPHRASE_ENV} must be set: it protects the compliance gate's signing key"
        ),
    }
}

/// Opens (creating) `<data_dir>/compliance/keys` and the gate's Ed25519 key in it.
fn open_gate_keys(
    data_dir: &Path,
    passphrase: hsm::SecretBytes,
) -> anyhow::Result<Arc<dyn hsm::KeyStore>> {
    let dir = data_dir.join("compliance");
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("compliance directory {}: {e}", dir.display()))?;
    let keys: Arc<dyn hsm::KeyStore> = Arc::new(
        hsm::software::SoftwareKeyStore::open(dir.join("keys"), &passphrase)
            .map_err(|e| anyhow::anyhow!("compliance key store: {e}"))?,
    );
    if keys.public_key(GATE_KEY_LABEL).is_err() {
        keys.generate_key(GATE_KEY_LABEL, hsm::KeyAlgorithm::Ed25519)
            .map_err(|e| anyhow::anyhow!("generating the gate key: {e}"))?;
    }
    Ok(keys)
}

/// The compliance gate's Ed25519 public key of the node whose data directory is `data_dir`
/// (created if the node has none yet): what a consortium lists in its genesis `gate_keys`.
pub fn gate_public_key_of(
    data_dir: &Path,
    demo: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<[u8; 32]> {
    let keys = open_gate_keys(data_dir, gate_passphrase(demo, env)?)?;
    let key = keys
        .public_key(GATE_KEY_LABEL)
        .map_err(|e| anyhow::anyhow!("the gate key: {e}"))?;
    key.bytes
        .as_slice()
        .try_into()
        .map_err(|_| anyhow::anyhow!("the gate key is not an Ed25519 key"))
}

impl Compliance {
    /// Opens everything under `data_dir` (see the module docs); `env` reads the environment.
    pub async fn open(
        data_dir: &Path,
        demo: bool,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Compliance> {
        let dir = data_dir.join("compliance");
        let keys = {
            let (data_dir, passphrase) = (data_dir.to_path_buf(), gate_passphrase(demo, env)?);
            tokio::task::spawn_blocking(move || open_gate_keys(&data_dir, passphrase)).await??
        };

        let db = match env(POSTGRES_ENV) {
            Some(url) if !url.is_empty() => {
                let schema = env(POSTGRES_SCHEMA_ENV)
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| POSTGRES_SCHEMA_DEFAULT.to_string());
                let backend = PgBackend::connect(&url, &schema)
                    .await
                    .map_err(|e| anyhow::anyhow!("{POSTGRES_ENV}: {e}"))?;
                let s = SqlStore::new(backend);
                s.migrate()
                    .await
                    .map_err(|e| anyhow::anyhow!("kyc-aml store: {e}"))?;
                Db::Pg(s)
            }
            _ => Db::Sqlite(
                SqliteStore::open(dir.join("kyc.sqlite"))
                    .await
                    .map_err(|e| anyhow::anyhow!("kyc-aml store: {e}"))?,
            ),
        };

        let unsc = env(UNSC_ENV).filter(|s| !s.is_empty()).map(PathBuf::from);
        let screener =
            Arc::new(tokio::task::spawn_blocking(move || demo_screener(unsc.as_deref())).await??);
        let tiers = if demo {
            demo_tiers()
        } else {
            TierTable::default()
        };
        let rules = match env(RULES_ENV).filter(|s| !s.is_empty()) {
            Some(path) => {
                let bytes =
                    std::fs::read(&path).map_err(|e| anyhow::anyhow!("{RULES_ENV} {path}: {e}"))?;
                RuleSet::from_json(&bytes)
                    .map_err(|r| anyhow::anyhow!("{RULES_ENV} {path}: {r}"))?
            }
            None if demo => demo_rules()?,
            None => RuleSet::default_rules(),
        };
        let gate = Gate::new(
            GateConfig {
                tiers: tiers.clone(),
                rules,
                key_label: GATE_KEY_LABEL.into(),
            },
            screener.clone(),
            keys.clone(),
        )
        .map_err(|e| anyhow::anyhow!("compliance gate: {e}"))?;
        let gate_public_key = gate.public_key();

        let mut issuers = IssuerRegistry::new();
        for (id, key) in parse_issuers(&env(ISSUERS_ENV).unwrap_or_default())? {
            issuers
                .add(&id, IssuerKind::IdentityProvider, key)
                .map_err(|r| anyhow::anyhow!("{ISSUERS_ENV}: {r}"))?;
        }
        let mut demo_provider = None;
        if demo {
            let path = dir.join("demo-provider.key");
            let public = if path.exists() {
                let seed = read_key_file(&path)?;
                public_key_of(&seed)
            } else {
                create_key_file(&path)?
            };
            if issuers.get(DEMO_ISSUER).is_none() {
                issuers
                    .add(DEMO_ISSUER, IssuerKind::IdentityProvider, public)
                    .map_err(|r| anyhow::anyhow!("demo issuer: {r}"))?;
            }
            demo_provider = Some(path);
        }

        let mut rates = parse_rates("CITY:1,EUR:1,LCL:1")?;
        for (asset, cents) in parse_rates(&env(RATES_ENV).unwrap_or_default())? {
            rates.retain(|(a, _)| *a != asset);
            rates.push((asset, cents));
        }
        let entity = match env(GOAML_ENTITY_ENV).filter(|s| !s.is_empty()) {
            Some(path) => {
                let bytes = std::fs::read(&path)
                    .map_err(|e| anyhow::anyhow!("{GOAML_ENTITY_ENV} {path}: {e}"))?;
                serde_json::from_slice(&bytes)
                    .map_err(|e| anyhow::anyhow!("{GOAML_ENTITY_ENV} {path}: {e}"))?
            }
            None => demo_entity(),
        };
        let vasp_lei = env(VASP_LEI_ENV)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEMO_VASP_LEI.to_string());
        if !kyc_aml::travel_rule::lei_ok(&vasp_lei) {
            anyhow::bail!("{VASP_LEI_ENV}: {vasp_lei:?} is not a valid LEI");
        }

        let c = Compliance {
            inner: Arc::new(Inner {
                gate: Mutex::new(gate),
                screener,
                keys,
                db,
                issuers,
                standing: RwLock::new(HashMap::new()),
                writes: tokio::sync::Mutex::new(()),
                expiries: Mutex::new(HashMap::new()),
                check_locks: (0..CHECK_LOCKS)
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect(),
                next_case: AtomicU64::new(1),
                gate_public_key,
                tiers,
                rates,
                vasp_lei,
                entity,
                demo_provider,
            }),
        };
        c.load().await?;
        Ok(c)
    }

    /// Loads the profiles into the gate and the standing map, and the next case id.
    async fn load(&self) -> anyhow::Result<()> {
        let inner = &self.inner;
        let profiles = with_db!(&inner.db, s => s.profiles().await)?;
        let frozen = self
            .frozen_customers()
            .await
            .map_err(|s| anyhow::anyhow!("loading frozen customers: {}", s.message()))?;
        let max_case =
            with_db!(&inner.db, s => raw_query(s, "SELECT MAX(id) FROM cases", vec![]).await)?;
        let expiring = with_db!(&inner.db, s => raw_query(
            s,
            "SELECT customer, MIN(expires_at_us) FROM attestations GROUP BY customer",
            vec![],
        ).await)?;
        if let Ok(mut m) = inner.expiries.lock() {
            for row in &expiring {
                if let (Some(Val::I64(Some(c))), Some(Val::I64(Some(at)))) =
                    (row.first(), row.get(1))
                {
                    m.insert(*c as u64, *at);
                }
            }
        }
        inner.next_case.store(
            first_i64(&max_case).unwrap_or(0).max(0) as u64 + 1,
            Ordering::SeqCst,
        );
        let now = now_i64();
        {
            let mut gate = inner
                .gate
                .lock()
                .map_err(|_| anyhow::anyhow!("gate lock poisoned"))?;
            let mut standing = inner
                .standing
                .write()
                .map_err(|_| anyhow::anyhow!("standing lock poisoned"))?;
            for p in profiles {
                standing.insert(
                    p.id,
                    Standing {
                        tier: p.effective_tier(now).ok(),
                        frozen: frozen.contains(&p.id),
                    },
                );
                gate.upsert_customer(p)
                    .map_err(|e| anyhow::anyhow!("gate: {e}"))?;
            }
        }
        // Attestations that expired while the node was down stop counting now.
        self.refresh(now)
            .await
            .map_err(|s| anyhow::anyhow!("re-deriving CDD levels: {}", s.message()))?;
        Ok(())
    }

    /// Frozen customers: an open case carrying a sanctions match, an open onboarding case
    /// (no transfer) carrying a possible match, or any case closed as confirmed.
    async fn frozen_customers(&self) -> Result<Vec<u64>, Status> {
        let sql = format!(
            "SELECT DISTINCT customer FROM cases WHERE state = {} OR (state IN ({}, {}) AND \
             (alert_codes LIKE '%{}%' OR (transfer_id IS NULL AND alert_codes LIKE '%{}%')))",
            CaseState::ClosedConfirmed as u8,
            CaseState::Pending as u8,
            CaseState::Investigating as u8,
            Reject::SanctionsMatch.code(),
            Reject::SanctionsPossibleMatch.code(),
        );
        let rows =
            with_db!(&self.inner.db, s => raw_query(s, &sql, vec![]).await).map_err(store_err)?;
        Ok(ids_of(&rows))
    }

    /// The gate's Ed25519 public key (for the ledger's `gate_keys`, under [`GATE_KEY_LABEL`]).
    pub fn gate_public_key(&self) -> [u8; 32] {
        self.inner.gate_public_key
    }

    /// The demo provider's key file, when this is a demo node.
    pub fn demo_provider_key(&self) -> Option<&Path> {
        self.inner.demo_provider.as_deref()
    }

    /// Whether `account` may trade: an active KYC tier and not frozen. No I/O, one read lock.
    pub fn may_trade(&self, account: u64) -> bool {
        self.inner
            .standing
            .read()
            .map(|m| m.get(&account).is_some_and(|s| s.may_trade()))
            .unwrap_or(false)
    }

    fn set_standing(&self, profile: &CustomerProfile, frozen: Option<bool>, now: i64) {
        if let Ok(mut m) = self.inner.standing.write() {
            let e = m.entry(profile.id).or_default();
            e.tier = profile.effective_tier(now).ok();
            if let Some(f) = frozen {
                e.frozen = f;
            }
        }
    }

    async fn refresh_frozen(&self, customer: u64) -> Result<(), Status> {
        let frozen = self.frozen_customers().await?.contains(&customer);
        if let Ok(mut m) = self.inner.standing.write() {
            m.entry(customer).or_default().frozen = frozen;
        }
        Ok(())
    }

    /// Signs, with the demo provider's key, attestations for the given parties (account, name)
    /// that are not onboarded yet, and submits them as a provider would.
    pub async fn onboard_demo(&self, parties: &[(u64, &str)]) -> anyhow::Result<()> {
        let Some(path) = &self.inner.demo_provider else {
            anyhow::bail!("not a demo node");
        };
        let seed = read_key_file(path)?;
        let now = now_i64();
        for (account, name) in parties {
            let known = with_db!(&self.inner.db, s => s.get_customer(*account).await)?;
            if known.is_some_and(|c| c.profile.cdd != CddLevel::None) {
                continue;
            }
            let att = sign_attestation(
                &seed,
                AttestationClaims {
                    subject: *account,
                    issuer: DEMO_ISSUER.into(),
                    assurance: Assurance::High,
                    full_name: demo_identity(name),
                    birth_date: Some("1990-01-01".into()),
                    nationality: Some("FR".into()),
                    residence_country: "FR".into(),
                    national_id: None,
                    issued_at_us: now - 1,
                    expires_at_us: now + i64::from(ATTESTATION_DAYS_DEFAULT) * DAY_US,
                },
            );
            self.submit_attestation(*account, &att, now)
                .await
                .map_err(|s| {
                    anyhow::anyhow!("onboarding demo account {account}: {}", s.message())
                })?;
        }
        Ok(())
    }

    /// Verifies an attestation for `customer` against the trusted issuers, keeps it, and
    /// creates or updates the customer (CDD level, tier, personal data from the claims).
    pub async fn submit_attestation(
        &self,
        customer: u64,
        att: &Attestation,
        now: i64,
    ) -> Result<pb::CustomerStatus, Status> {
        let accepted = self
            .inner
            .issuers
            .verify_presentation(att, customer, now)
            .map_err(|r| kyc_status(&r, "attestation"))?;
        let _w = self.inner.writes.lock().await;
        let db = &self.inner.db;
        let existing = with_db!(db, s => s.get_customer(customer).await).map_err(store_err)?;
        if existing.as_ref().is_some_and(|c| c.erased_at_us.is_some()) {
            return Err(kyc_status(
                &Refusal::new(Reject::CustomerErased, format!("customer {customer}")),
                "customer_id",
            ));
        }
        let c = &att.claims;
        let previous = existing.as_ref().and_then(|e| e.personal.clone());
        let personal = PersonalData {
            full_name: c.full_name.clone(),
            first_name: None,
            last_name: None,
            birth_date: c.birth_date.clone(),
            nationality: c.nationality.clone(),
            residence_country: c.residence_country.clone(),
            address: previous.as_ref().and_then(|p| p.address.clone()),
            national_id: c.national_id.clone(),
            registration_number: None,
            beneficial_owners: Vec::new(),
            senior_managing_official: None,
        };
        personal
            .validate(CustomerKind::NaturalPerson)
            .map_err(|r| kyc_status(&r, "attestation"))?;
        if existing.is_none() {
            // The attestation row refers to the customer row: a new customer is stored first,
            // at no CDD level, and raised below once its evidence is stored.
            let bare = CustomerRecord {
                profile: CustomerProfile {
                    id: customer,
                    kind: CustomerKind::NaturalPerson,
                    cdd: CddLevel::None,
                    risk: RiskRating::Low,
                    pep: None,
                    erased: false,
                },
                personal: Some(personal.clone()),
                edd_signed_off: false,
                created_at_us: now,
                erased_at_us: None,
            };
            with_db!(db, s => s.put_customer(&bare).await).map_err(store_err)?;
        }
        with_db!(db, s => s.put_attestation(&accepted).await).map_err(store_err)?;
        let evidence = with_db!(db, s => s.attestations(customer).await).map_err(store_err)?;
        let edd = existing.as_ref().is_some_and(|e| e.edd_signed_off);
        let kind = existing
            .as_ref()
            .map(|e| e.profile.kind)
            .unwrap_or(CustomerKind::NaturalPerson);
        let cdd = self
            .inner
            .issuers
            .cdd_level(kind, &personal, &evidence, edd, now);
        let old_tier = existing
            .as_ref()
            .and_then(|e| e.profile.effective_tier(now).ok());
        let record = CustomerRecord {
            profile: CustomerProfile {
                id: customer,
                kind,
                cdd,
                risk: existing
                    .as_ref()
                    .map(|e| e.profile.risk)
                    .unwrap_or(RiskRating::Low),
                pep: existing.as_ref().and_then(|e| e.profile.pep),
                erased: false,
            },
            personal: Some(personal),
            edd_signed_off: edd,
            created_at_us: existing.as_ref().map(|e| e.created_at_us).unwrap_or(now),
            erased_at_us: None,
        };
        with_db!(db, s => s.put_customer(&record).await).map_err(store_err)?;
        let new_tier = record.profile.effective_tier(now).ok();
        if new_tier != old_tier {
            let reason = format!("attestation from {} accepted", accepted.issuer);
            with_db!(db, s => s
                .record_tier_change(customer, now, new_tier.unwrap_or(Tier::Tier0), cdd, &reason)
                .await)
            .map_err(store_err)?;
        }
        self.inner
            .gate
            .lock()
            .map_err(|_| ApiReject::Internal.status("", "gate lock poisoned"))?
            .upsert_customer(record.profile.clone())
            .map_err(kyc_err)?;
        self.set_standing(&record.profile, None, now);
        self.note_expiry(customer, &evidence, now);
        drop(_w);
        self.screen_customer(customer, &att.claims, now).await?;
        self.status(customer, now).await
    }

    fn note_expiry(
        &self,
        customer: u64,
        evidence: &[kyc_aml::attestation::AcceptedAttestation],
        now: i64,
    ) {
        let next = evidence
            .iter()
            .map(|a| a.expires_at_us)
            .filter(|t| *t > now)
            .min();
        if let Ok(mut m) = self.inner.expiries.lock() {
            match next {
                Some(t) => m.insert(customer, t),
                None => m.remove(&customer),
            };
        }
    }

    /// Re-derives the CDD level of every customer one of whose attestations expired by `now`
    /// (and the tier from it): expired evidence stops counting, so a customer whose only
    /// attestation expired is back at tier 0 and may not trade. Run by a background task every
    /// [`REFRESH_EVERY_S`] seconds; returns how many customers changed tier.
    pub async fn refresh(&self, now: i64) -> Result<usize, Status> {
        let due: Vec<u64> = match self.inner.expiries.lock() {
            Ok(m) => m
                .iter()
                .filter(|(_, t)| **t <= now)
                .map(|(c, _)| *c)
                .collect(),
            Err(_) => return Err(ApiReject::Internal.status("", "expiry lock poisoned")),
        };
        let mut changed = 0;
        for customer in due {
            let _w = self.inner.writes.lock().await;
            let db = &self.inner.db;
            let Some(mut record) =
                with_db!(db, s => s.get_customer(customer).await).map_err(store_err)?
            else {
                continue;
            };
            let evidence = with_db!(db, s => s.attestations(customer).await).map_err(store_err)?;
            self.note_expiry(customer, &evidence, now);
            let Some(personal) = record.personal.clone() else {
                continue;
            };
            let cdd = self.inner.issuers.cdd_level(
                record.profile.kind,
                &personal,
                &evidence,
                record.edd_signed_off,
                now,
            );
            if cdd == record.profile.cdd {
                continue;
            }
            let old_tier = record.profile.effective_tier(now).ok();
            record.profile.cdd = cdd;
            with_db!(db, s => s.put_customer(&record).await).map_err(store_err)?;
            let new_tier = record.profile.effective_tier(now).ok();
            if new_tier != old_tier {
                changed += 1;
                with_db!(db, s => s
                    .record_tier_change(
                        customer,
                        now,
                        new_tier.unwrap_or(Tier::Tier0),
                        cdd,
                        "attestation expired",
                    )
                    .await)
                .map_err(store_err)?;
            }
            self.inner
                .gate
                .lock()
                .map_err(|_| ApiReject::Internal.status("", "gate lock poisoned"))?
                .upsert_customer(record.profile.clone())
                .map_err(kyc_err)?;
            self.set_standing(&record.profile, None, now);
            tracing::info!(
                customer,
                ?cdd,
                "CDD level re-derived after an attestation expired"
            );
        }
        Ok(changed)
    }

    /// Runs [`Compliance::refresh`] every [`REFRESH_EVERY_S`] seconds until `shutdown` changes.
    pub fn spawn_refresh(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(REFRESH_EVERY_S)) => {
                        if let Err(s) = me.refresh(now_i64()).await {
                            tracing::warn!(error = %s.message(), "compliance refresh failed");
                        }
                    }
                    _ = shutdown.changed() => return,
                }
            }
        });
    }

    /// Screens a customer's attested name at onboarding. A hit opens a case about the customer
    /// (no transfer; a goAML SAR if confirmed) that freezes it until an officer closes it, unless
    /// an earlier onboarding case about the same list entry was closed as a false positive or
    /// one is open already. The list entry is kept as the case's first note (list data, not
    /// our customer's).
    async fn screen_customer(
        &self,
        customer: u64,
        claims: &AttestationClaims,
        now: i64,
    ) -> Result<(), Status> {
        use kyc_aml::gate::{CounterpartyScreener, ScreeningResult};
        let screener = self.inner.screener.clone();
        let names = vec![claims.full_name.clone()];
        let country = claims.nationality.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            screener.screen_names(&names, country.as_deref(), &[])
        })
        .await
        .map_err(|_| ApiReject::Internal.status("", "screening task failed"))?
        .map_err(kyc_err)?;
        let code = match outcome.result {
            ScreeningResult::Clear => return Ok(()),
            ScreeningResult::PossibleMatch => Reject::SanctionsPossibleMatch.code(),
            ScreeningResult::Match => Reject::SanctionsMatch.code(),
        };
        let entry = outcome.entry_ref.unwrap_or_default();
        let note = format!(
            "onboarding screening: list entry {entry}, score {} bp, snapshot {}",
            outcome.best_score_bp, outcome.snapshot_id
        );
        let _w = self.inner.writes.lock().await;
        let rows = with_db!(&self.inner.db, s => raw_query(
            s,
            "SELECT id, state FROM cases WHERE customer = $1 AND transfer_id IS NULL ORDER BY id",
            vec![Val::I64(Some(customer as i64))],
        ).await)
        .map_err(store_err)?;
        for row in &rows {
            let (Some(Val::I64(Some(id))), Some(Val::I64(Some(state)))) = (row.first(), row.get(1))
            else {
                continue;
            };
            if *state == CaseState::Pending as i64 || *state == CaseState::Investigating as i64 {
                return Ok(());
            }
            if *state == CaseState::ClosedFalsePositive as i64 {
                let old = with_db!(&self.inner.db, s => s.get_case(*id as u64).await)
                    .map_err(store_err)?;
                let same_entry = old.is_some_and(|c| {
                    c.notes
                        .first()
                        .is_some_and(|n| n.text.contains(&format!("list entry {entry},")))
                });
                if same_entry {
                    return Ok(());
                }
            }
        }
        let id = self.inner.next_case.fetch_add(1, Ordering::SeqCst);
        let mut case = Case::open(id, customer, None, None, vec![code], now);
        case.add_note("compliance-gate", &note, now)
            .map_err(|r| kyc_status(&r, ""))?;
        with_db!(&self.inner.db, s => s.save_case(&case).await).map_err(store_err)?;
        drop(_w);
        tracing::info!(
            case = id,
            customer,
            code,
            "onboarding screening hit; case opened"
        );
        self.refresh_frozen(customer).await
    }

    /// A customer's status (an unknown customer is pending at tier 0).
    pub async fn status(&self, customer: u64, now: i64) -> Result<pb::CustomerStatus, Status> {
        let db = &self.inner.db;
        let record = with_db!(db, s => s.get_customer(customer).await).map_err(store_err)?;
        let rows = with_db!(db, s => raw_query(
            s,
            "SELECT id FROM cases WHERE customer = $1 AND state IN (1, 2) ORDER BY id LIMIT $2",
            vec![Val::I64(Some(customer as i64)), Val::I64(Some(STATUS_CASES_MAX))],
        ).await)
        .map_err(store_err)?;
        let frozen = self
            .inner
            .standing
            .read()
            .map(|m| m.get(&customer).is_some_and(|s| s.frozen))
            .unwrap_or(false);
        let tier = record
            .as_ref()
            .and_then(|r| r.profile.effective_tier(now).ok());
        let updated_us = match &record {
            None => 0,
            Some(r) => {
                let history =
                    with_db!(db, s => s.tier_history(customer).await).map_err(store_err)?;
                history.last().map(|h| h.at_us).unwrap_or(r.created_at_us)
            }
        };
        let limit = self
            .inner
            .tiers
            .limits(tier.unwrap_or(Tier::Tier0))
            .for_activity(Activity::Withdrawal)
            .per_day_minor;
        Ok(pb::CustomerStatus {
            customer_id: customer.to_string(),
            tier: tier.map(|t| t as u32).unwrap_or(0),
            state: customer_state(tier, frozen) as i32,
            daily_limit_eur: canonical(rust_decimal::Decimal::from_i128_with_scale(
                i128::from(limit),
                2,
            )),
            open_case_ids: ids_of(&rows).iter().map(u64::to_string).collect(),
            updated_at: (updated_us > 0).then(|| timestamp(updated_us as u64)),
        })
    }

    fn transfer_of(&self, req: &GateRequest, personal: Option<&PersonalData>) -> Transfer {
        let asset = asset_code(req.asset).unwrap_or("UNKNOWN").to_string();
        let amount_eur_minor = eur_minor(&self.inner.rates, req.asset, req.amount).unwrap_or(0);
        let customer_key = format!("rempart:{}", req.account);
        let (activity, direction, counterparty) = match (&req.activity, &req.counterparty) {
            (GateActivity::Trade, _) => (
                Activity::Trading,
                Direction::Outgoing,
                kyc_aml::transfer::Counterparty {
                    key: "rempart:book".into(),
                    kind: CounterpartyKind::Operator,
                    name: None,
                    country: None,
                },
            ),
            (GateActivity::Deposit, None) => (
                Activity::Deposit,
                Direction::Incoming,
                kyc_aml::transfer::Counterparty {
                    key: "rempart:omnibus".into(),
                    kind: CounterpartyKind::Operator,
                    name: None,
                    country: None,
                },
            ),
            (GateActivity::Withdrawal, None) => (
                Activity::Withdrawal,
                Direction::Outgoing,
                kyc_aml::transfer::Counterparty {
                    key: "rempart:omnibus".into(),
                    kind: CounterpartyKind::Bank,
                    name: None,
                    country: None,
                },
            ),
            (GateActivity::Deposit, Some(cp)) => {
                (Activity::Deposit, Direction::Incoming, self_hosted(cp))
            }
            (GateActivity::Withdrawal, Some(cp)) => (
                Activity::ExternalTransfer,
                Direction::Outgoing,
                self_hosted(cp),
            ),
        };
        let travel_rule = req.counterparty.as_ref().map(|cp| {
            let ours = Person::NaturalPerson(NaturalPerson {
                name: legal_name(personal.map(|p| p.full_name.as_str()).unwrap_or("-")),
                geographic_address: Vec::new(),
                national_identification: None,
                customer_identification: Some(req.account.to_string()),
                date_and_place_of_birth: None,
                country_of_residence: personal.map(|p| p.residence_country.clone()),
            });
            let theirs = Person::NaturalPerson(NaturalPerson {
                name: legal_name(&cp.name),
                geographic_address: Vec::new(),
                national_identification: None,
                customer_identification: cp.identification.clone(),
                date_and_place_of_birth: None,
                country_of_residence: None,
            });
            let our_vasp = Vasp {
                lei: self.inner.vasp_lei.clone(),
                name: "rempart".into(),
            };
            match direction {
                Direction::Outgoing => TravelRuleData {
                    originator: Originator {
                        originator_persons: vec![ours],
                        account_number: vec![customer_key.clone()],
                    },
                    beneficiary: Beneficiary {
                        beneficiary_persons: vec![theirs],
                        account_number: vec![cp.address.clone()],
                    },
                    originating_vasp: Some(our_vasp),
                    beneficiary_vasp: None,
                },
                Direction::Incoming => TravelRuleData {
                    originator: Originator {
                        originator_persons: vec![theirs],
                        account_number: vec![cp.address.clone()],
                    },
                    beneficiary: Beneficiary {
                        beneficiary_persons: vec![ours],
                        account_number: vec![customer_key.clone()],
                    },
                    originating_vasp: None,
                    beneficiary_vasp: Some(our_vasp),
                },
            }
        });
        Transfer {
            id: req.transfer_id,
            customer: req.account,
            activity,
            direction,
            asset,
            amount_minor: req.amount,
            amount_eur_minor,
            counterparty,
            travel_rule,
        }
    }

    async fn case_for_transfer(&self, transfer_id: u128) -> Result<Option<Case>, Status> {
        let rows = with_db!(&self.inner.db, s => raw_query(
            s,
            "SELECT id FROM cases WHERE transfer_id = $1 ORDER BY id DESC LIMIT 1",
            vec![Val::Text(Some(transfer_id.to_string()))],
        ).await)
        .map_err(store_err)?;
        match ids_of(&rows).first() {
            None => Ok(None),
            Some(id) => with_db!(&self.inner.db, s => s.get_case(*id).await).map_err(store_err),
        }
    }

    /// Evaluates a transfer through the gate. Approved carries the signed decision; a hold
    /// opens a case (and a rejection for a sanctions match or a monitoring score opens one
    /// too). A retry with the same transfer id answers from the stored decision: an approval
    /// again, a hold while its case is open, a rejection once the case is confirmed, and a
    /// signed approval (the release) once it is closed as a false positive. `Err` only when
    /// the machine fails.
    pub async fn check(&self, req: GateRequest) -> Result<GateVerdict, Status> {
        let db = &self.inner.db;
        let now = (req.time_us as i64).max(1);
        let _same_transfer = self.inner.check_locks
            [(req.transfer_id % CHECK_LOCKS as u128) as usize]
            .lock()
            .await;
        let previous = with_db!(db, s => s.decisions_for_transfer(req.transfer_id).await)
            .map_err(store_err)?;
        // An approval, once given (by the gate or by a release), is the answer for good.
        if let Some(approved) = previous
            .iter()
            .rev()
            .find(|d| d.record.outcome == Outcome::Approve)
        {
            return Ok(GateVerdict::Approved(approved.signed.clone()));
        }
        if let Some(last) = previous.last() {
            return self.answer_again(&req, last, now).await;
        }
        if req.activity != GateActivity::Deposit
            && let Some(verdict) = self.frozen_verdict(req.account).await?
        {
            return Ok(verdict);
        }
        let personal = if req.counterparty.is_some() {
            with_db!(db, s => s.get_customer(req.account).await)
                .map_err(store_err)?
                .and_then(|c| c.personal)
        } else {
            None
        };
        let transfer = self.transfer_of(&req, personal.as_ref());
        drop(personal);
        let inner = self.inner.clone();
        let decision = tokio::task::spawn_blocking(move || {
            let mut gate = inner
                .gate
                .lock()
                .map_err(|_| ApiReject::Internal.status("", "gate lock poisoned"))?;
            gate.evaluate(&transfer, now).map_err(kyc_err)
        })
        .await
        .map_err(|_| ApiReject::Internal.status("", "gate task failed"))??;
        let stored = StoredDecision {
            record: decision.record.clone(),
            signed: decision.signed.clone(),
        };
        with_db!(db, s => s.put_decision(&stored).await).map_err(store_err)?;
        match decision.outcome() {
            Outcome::Approve => Ok(GateVerdict::Approved(decision.signed)),
            Outcome::Hold => {
                let case_id = self.open_case(&decision, now).await?;
                Ok(GateVerdict::Held {
                    case_id: case_id.to_string(),
                    reason: summary(&decision.refusals),
                })
            }
            Outcome::Reject => {
                let primary = primary_refusal(&decision.refusals);
                let alerting = decision
                    .refusals
                    .iter()
                    .any(|r| matches!(r.reject, Reject::SanctionsMatch | Reject::MonitoringReject));
                let mut reason = summary(&decision.refusals);
                if alerting {
                    let case_id = self.open_case(&decision, now).await?;
                    reason = format!("{reason}; case {case_id} opened");
                }
                Ok(GateVerdict::Rejected {
                    code: primary.map(|r| r.code()).unwrap_or(0),
                    reason,
                })
            }
        }
    }

    /// For a frozen customer, what its outgoing transfers get without evaluation: held on the
    /// open case that froze it, or rejected with that case's alert code once it is confirmed.
    /// Nothing is stored, so the transfer is evaluated normally once the customer is cleared.
    async fn frozen_verdict(&self, account: u64) -> Result<Option<GateVerdict>, Status> {
        let frozen = self
            .inner
            .standing
            .read()
            .map(|m| m.get(&account).is_some_and(|s| s.frozen))
            .unwrap_or(false);
        if !frozen {
            return Ok(None);
        }
        let sql = format!(
            "SELECT id, state, alert_codes FROM cases WHERE customer = $1 AND (state = {} OR \
             (state IN ({}, {}) AND (alert_codes LIKE '%{}%' OR (transfer_id IS NULL AND \
             alert_codes LIKE '%{}%')))) ORDER BY state DESC, id LIMIT 1",
            CaseState::ClosedConfirmed as u8,
            CaseState::Pending as u8,
            CaseState::Investigating as u8,
            Reject::SanctionsMatch.code(),
            Reject::SanctionsPossibleMatch.code(),
        );
        let rows = with_db!(&self.inner.db, s =>
            raw_query(s, &sql, vec![Val::I64(Some(account as i64))]).await)
        .map_err(store_err)?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let (Some(Val::I64(Some(id))), Some(Val::I64(Some(state))), Some(Val::Text(Some(codes)))) =
            (row.first(), row.get(1), row.get(2))
        else {
            return Err(store_err("case row of unexpected shape"));
        };
        if *state == CaseState::ClosedConfirmed as i64 {
            let code = codes
                .split(',')
                .find_map(|c| c.parse::<u16>().ok())
                .unwrap_or(Reject::SanctionsMatch.code());
            return Ok(Some(GateVerdict::Rejected {
                code,
                reason: format!("customer frozen: case {id} closed as confirmed"),
            }));
        }
        Ok(Some(GateVerdict::Held {
            case_id: id.to_string(),
            reason: format!("customer frozen while case {id} is open"),
        }))
    }

    async fn open_case(&self, decision: &Decision, now: i64) -> Result<u64, Status> {
        let id = self.inner.next_case.fetch_add(1, Ordering::SeqCst);
        let Some(case) = Case::open_from_decision(id, decision, now) else {
            return Err(ApiReject::Internal.status("", "no case for an approval"));
        };
        let _w = self.inner.writes.lock().await;
        with_db!(&self.inner.db, s => s.save_case(&case).await).map_err(store_err)?;
        drop(_w);
        tracing::info!(
            case = id,
            customer = case.customer,
            transfer = %decision.record.transfer_id,
            codes = ?case.alert_codes,
            "compliance case opened"
        );
        if case.alert_codes.contains(&Reject::SanctionsMatch.code()) {
            self.refresh_frozen(case.customer).await?;
        }
        Ok(id)
    }

    async fn answer_again(
        &self,
        req: &GateRequest,
        last: &StoredDecision,
        now: i64,
    ) -> Result<GateVerdict, Status> {
        let codes: Vec<u16> = last.record.reasons.iter().map(|r| r.code).collect();
        let primary = codes
            .iter()
            .copied()
            .find(|c| c != &Reject::RuleHit.code())
            .unwrap_or(0);
        match last.record.outcome {
            Outcome::Approve => Ok(GateVerdict::Approved(last.signed.clone())),
            Outcome::Reject => Ok(GateVerdict::Rejected {
                code: primary,
                reason: "refused earlier for the same transfer id".into(),
            }),
            Outcome::Hold => {
                let case = self.case_for_transfer(req.transfer_id).await?;
                match case {
                    Some(c) if c.state == CaseState::ClosedConfirmed => Ok(GateVerdict::Rejected {
                        code: primary,
                        reason: format!("case {} closed as confirmed", c.id),
                    }),
                    Some(c) if c.state == CaseState::ClosedFalsePositive => {
                        self.release(req, last, &c, now).await
                    }
                    Some(c) => Ok(GateVerdict::Held {
                        case_id: c.id.to_string(),
                        reason: "case open".into(),
                    }),
                    None => Err(ApiReject::Internal.status("", "held decision without a case")),
                }
            }
        }
    }

    /// A held transfer whose case closed as a false positive: the gate key signs an approval
    /// record that is the held record with the release added to its reasons (the case id is
    /// the evidence), and the transfer counts in the customer's limits from now on.
    async fn release(
        &self,
        req: &GateRequest,
        held: &StoredDecision,
        case: &Case,
        now: i64,
    ) -> Result<GateVerdict, Status> {
        let mut record = held.record.clone();
        record.outcome = Outcome::Approve;
        record.evaluated_at_us = now;
        record.reasons.push(ReasonEntry {
            code: Reject::CaseClosed.code(),
            detail: format!("released: case {} closed as a false positive", case.id),
        });
        let hash = record.decision_hash();
        let msg = signing_message(record.transfer_id, Outcome::Approve, &hash);
        let signature = match self.inner.keys.sign(GATE_KEY_LABEL, &msg) {
            Ok(hsm::Signature::Ed25519(sig)) => sig,
            Ok(_) => return Err(ApiReject::Internal.status("", "gate key is not Ed25519")),
            Err(e) => return Err(kyc_err(kyc_aml::KycError::Hsm(e))),
        };
        let signed = SignedDecision {
            transfer_id: record.transfer_id,
            outcome: Outcome::Approve,
            hash,
            signature,
            gate_key_id: GATE_KEY_LABEL.into(),
        };
        let personal = if req.counterparty.is_some() {
            with_db!(&self.inner.db, s => s.get_customer(req.account).await)
                .map_err(store_err)?
                .and_then(|c| c.personal)
        } else {
            None
        };
        let transfer = self.transfer_of(req, personal.as_ref());
        self.inner
            .gate
            .lock()
            .map_err(|_| ApiReject::Internal.status("", "gate lock poisoned"))?
            .record_released(&transfer, now);
        let stored = StoredDecision {
            record,
            signed: signed.clone(),
        };
        with_db!(&self.inner.db, s => s.put_decision(&stored).await).map_err(store_err)?;
        Ok(GateVerdict::Approved(signed))
    }

    async fn get_case(&self, id: u64) -> Result<Case, Status> {
        with_db!(&self.inner.db, s => s.get_case(id).await)
            .map_err(store_err)?
            .ok_or_else(|| {
                kyc_status(
                    &Refusal::new(Reject::UnknownCase, format!("case {id}")),
                    "case_id",
                )
            })
    }

    /// A page of cases, by id, optionally of one state.
    async fn list_cases(
        &self,
        state: Option<CaseState>,
        after: u64,
        limit: u32,
    ) -> Result<(Vec<Case>, bool), Status> {
        let fetch = i64::from(limit) + 1;
        let (sql, params) = match state {
            None => (
                "SELECT id FROM cases WHERE id > $1 ORDER BY id LIMIT $2",
                vec![Val::I64(Some(after as i64)), Val::I64(Some(fetch))],
            ),
            Some(st) => (
                "SELECT id FROM cases WHERE id > $1 AND state = $2 ORDER BY id LIMIT $3",
                vec![
                    Val::I64(Some(after as i64)),
                    Val::I64(Some(st as i64)),
                    Val::I64(Some(fetch)),
                ],
            ),
        };
        let rows =
            with_db!(&self.inner.db, s => raw_query(s, sql, params).await).map_err(store_err)?;
        let mut ids = ids_of(&rows);
        let more = ids.len() > limit as usize;
        ids.truncate(limit as usize);
        let mut cases = Vec::with_capacity(ids.len());
        for id in ids {
            cases.push(self.get_case(id).await?);
        }
        Ok((cases, more))
    }

    /// Applies an officer's update to a case (see [`plan_update`]).
    async fn update_case(
        &self,
        id: u64,
        target: Option<CaseState>,
        note: &str,
        actor: &str,
        now: i64,
    ) -> Result<Case, Status> {
        let _w = self.inner.writes.lock().await;
        let mut case = self.get_case(id).await?;
        apply_update(&mut case, target, note, actor, now).map_err(|r| kyc_status(&r, ""))?;
        with_db!(&self.inner.db, s => s.save_case(&case).await).map_err(store_err)?;
        drop(_w);
        tracing::info!(case = id, actor, state = ?case.state, "compliance case updated");
        if target.is_some_and(CaseState::is_closed) {
            self.refresh_frozen(case.customer).await?;
        }
        Ok(case)
    }

    /// The goAML XML of a case: an STR when the case is about a transfer, otherwise an SAR.
    async fn report(&self, id: u64, now: i64) -> Result<Vec<u8>, Status> {
        let case = self.get_case(id).await?;
        let req = report_request(&case, now);
        let out = with_db!(&self.inner.db, s =>
            kyc_aml::goaml::report_for_case(s, id, &self.inner.entity, &req).await)
        .map_err(kyc_err)?;
        match out {
            Ok(xml) => Ok(xml.into_bytes()),
            Err(r) => Err(kyc_status(&r, "case_id")),
        }
    }
}

fn legal_name(name: &str) -> NaturalPersonName {
    NaturalPersonName {
        name_identifier: vec![NameIdentifier {
            primary_identifier: name.to_string(),
            secondary_identifier: None,
            name_identifier_type: "LEGL".into(),
        }],
    }
}

fn self_hosted(cp: &Counterparty) -> kyc_aml::transfer::Counterparty {
    kyc_aml::transfer::Counterparty {
        key: cp.address.clone(),
        kind: CounterpartyKind::SelfHosted {
            proof_of_control: false,
        },
        name: Some(cp.name.clone()),
        country: None,
    }
}

/// The refusal a rejection is known by: the first one that rejects on its own, else the first.
fn primary_refusal(refusals: &[Refusal]) -> Option<&Refusal> {
    const DECISIVE: &[Reject] = &[
        Reject::InvalidTransfer,
        Reject::UnknownCustomer,
        Reject::CustomerErased,
        Reject::CddIncomplete,
        Reject::EddRequired,
        Reject::SanctionsMatch,
        Reject::DailyLimitExceeded,
        Reject::MonthlyLimitExceeded,
        Reject::MonitoringReject,
    ];
    DECISIVE
        .iter()
        .find_map(|d| refusals.iter().find(|r| r.reject == *d))
        .or_else(|| refusals.iter().find(|r| r.reject != Reject::RuleHit))
        .or(refusals.first())
}

/// The refusals' codes and messages (never their details: those may name list entries).
fn summary(refusals: &[Refusal]) -> String {
    let mut codes: Vec<Reject> = refusals.iter().map(|r| r.reject).collect();
    codes.sort();
    codes.dedup();
    codes
        .iter()
        .map(|r| format!("{} {}", r.code(), r.message()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The status state of a customer.
pub fn customer_state(tier: Option<Tier>, frozen: bool) -> pb::CustomerState {
    if frozen {
        pb::CustomerState::Frozen
    } else if tier.is_some() {
        pb::CustomerState::Active
    } else {
        pb::CustomerState::Pending
    }
}

/// kyc-aml's case states as the API's.
pub fn case_state_pb(s: CaseState) -> pb::CaseState {
    match s {
        CaseState::Pending => pb::CaseState::Open,
        CaseState::Investigating => pb::CaseState::UnderReview,
        CaseState::ClosedFalsePositive => pb::CaseState::Dismissed,
        CaseState::ClosedConfirmed => pb::CaseState::Reported,
    }
}

/// The API's case states as kyc-aml's (`None` for unspecified).
pub fn case_state_of(s: pb::CaseState) -> Option<CaseState> {
    match s {
        pb::CaseState::Unspecified => None,
        pb::CaseState::Open => Some(CaseState::Pending),
        pb::CaseState::UnderReview => Some(CaseState::Investigating),
        pb::CaseState::Dismissed => Some(CaseState::ClosedFalsePositive),
        pb::CaseState::Reported => Some(CaseState::ClosedConfirmed),
    }
}

/// An officer's update on the case state machine: UNDER_REVIEW from OPEN (assigns the case to
/// the officer and starts the investigation), DISMISSED (false positive) or REPORTED
/// (confirmed) from UNDER_REVIEW with the note as the rationale, a note alone on an open case.
/// Anything else is a refusal with kyc-aml's case code; nothing changes when refused.
pub fn apply_update(
    case: &mut Case,
    target: Option<CaseState>,
    note: &str,
    actor: &str,
    now: i64,
) -> Result<(), Refusal> {
    let mut next = case.clone();
    match target {
        None => {
            next.add_note(actor, note, now)?;
        }
        Some(t) if t == next.state && !t.is_closed() => {
            if note.is_empty() {
                return Err(Refusal::new(
                    Reject::InvalidCaseTransition,
                    "no state change and no note",
                ));
            }
            next.add_note(actor, note, now)?;
        }
        Some(CaseState::Investigating) => {
            if next.state != CaseState::Pending {
                return Err(Refusal::new(
                    Reject::InvalidCaseTransition,
                    format!("{:?} to investigating", next.state),
                ));
            }
            next.assign(actor, now)?;
            next.start_investigation(now)?;
            if !note.is_empty() {
                next.add_note(actor, note, now)?;
            }
        }
        Some(t @ (CaseState::ClosedConfirmed | CaseState::ClosedFalsePositive)) => {
            let disposition = if t == CaseState::ClosedConfirmed {
                Disposition::Confirmed
            } else {
                Disposition::FalsePositive
            };
            next.close(disposition, note, actor, now)?;
        }
        Some(CaseState::Pending) => {
            return Err(Refusal::new(
                Reject::InvalidCaseTransition,
                format!("{:?} to pending", next.state),
            ));
        }
    }
    *case = next;
    Ok(())
}

fn report_request(case: &Case, now: i64) -> ReportRequest {
    let kind = if case.transfer_id.is_some() {
        ReportKind::Str
    } else {
        ReportKind::Sar
    };
    let codes: Vec<String> = case
        .alert_codes
        .iter()
        .map(|c| match Reject::from_code(*c) {
            Some(r) => format!("{c} ({})", r.message()),
            None => c.to_string(),
        })
        .collect();
    let sanctions = case.alert_codes.iter().any(|c| {
        *c == Reject::SanctionsMatch.code() || *c == Reject::SanctionsPossibleMatch.code()
    });
    let travel = case
        .alert_codes
        .iter()
        .any(|c| (5000..6000).contains(c) || *c == 2012 || *c == 2013);
    // goAML report indicators must be codes of the schema's enumeration: targeted financial
    // sanctions, missing identification, unusual activity.
    let indicator = if sanctions {
        "TFS01"
    } else if travel {
        "NOID"
    } else {
        "UNUSU"
    };
    ReportRequest {
        kind,
        entity_reference: format!("{kind:?}-CASE-{}", case.id).to_uppercase(),
        submitted_at_us: now,
        reason: format!(
            "Case {} opened by the compliance gate: {}",
            case.id,
            if codes.is_empty() {
                "no alert codes".to_string()
            } else {
                codes.join("; ")
            }
        ),
        action: match case.state {
            CaseState::ClosedConfirmed => "Transfer refused; suspicion confirmed by compliance",
            _ => "Transfer held; case under investigation",
        }
        .into(),
        indicators: vec![indicator.into()],
    }
}

/// `CddIncomplete` → `CDD_INCOMPLETE`.
pub fn kyc_code_name(r: Reject) -> String {
    super::errors::variant_name(&r)
}

/// The gRPC code a kyc-aml refusal travels with.
pub fn kyc_grpc_code(r: Reject) -> Code {
    use Reject as R;
    match r {
        R::UnknownIssuer | R::BadSignature | R::IssuerRevoked => Code::PermissionDenied,
        R::UnknownCustomer | R::UnknownCase => Code::NotFound,
        R::AttestationMalformed
        | R::AttestationTooLarge
        | R::AttestationFieldInvalid
        | R::AttestationSubjectMismatch
        | R::CustomerFieldInvalid
        | R::InvalidTransfer
        | R::NoteInvalid
        | R::AttachmentInvalid
        | R::AssigneeInvalid
        | R::RationaleMissing
        | R::ReportFieldInvalid
        | R::ReportTooManyTransactions => Code::InvalidArgument,
        r if (4000..6000).contains(&r.code()) => Code::InvalidArgument,
        _ => Code::FailedPrecondition,
    }
}

/// A kyc-aml refusal as a status: code 20000 + k, the kyc-aml name and message, the detail.
pub fn kyc_status(r: &Refusal, field: &str) -> Status {
    let message = if r.detail.is_empty() {
        r.reject.message().to_string()
    } else {
        format!("{}: {}", r.reject.message(), r.detail)
    };
    build_status(
        kyc_grpc_code(r.reject),
        pb::ErrorDetail {
            code: KYC_CODE_BASE + u32::from(r.code()),
            name: kyc_code_name(r.reject),
            message,
            field: field.into(),
            retry_after_ms: 0,
        },
    )
}

/// A case as the API shows it (no personal data: ids, codes, notes by key id).
pub fn case_pb(c: &Case) -> pb::Case {
    pb::Case {
        case_id: c.id.to_string(),
        customer_id: c.customer.to_string(),
        state: case_state_pb(c.state) as i32,
        rule: c
            .alert_codes
            .iter()
            .map(|code| match Reject::from_code(*code) {
                Some(r) => format!("{code} {}", kyc_code_name(r)),
                None => code.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", "),
        transfer_ids: c.transfer_id.iter().map(u128::to_string).collect(),
        opened_at: Some(timestamp(c.opened_at_us.max(0) as u64)),
        history: c
            .notes
            .iter()
            .map(|n| pb::CaseEvent {
                time: Some(timestamp(n.at_us.max(0) as u64)),
                actor: n.author.clone(),
                text: n.text.clone(),
            })
            .collect(),
    }
}

fn caller<T>(req: &Request<T>) -> Result<Caller, Status> {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| ApiReject::MissingCredentials.status("", ""))
}

fn case_id_of(text: &str) -> Result<u64, Status> {
    if text.is_empty() {
        return Err(ApiReject::MissingField.status("case_id", ""));
    }
    text.parse()
        .map_err(|_| ApiReject::InvalidField.status("case_id", "decimal case id expected"))
}

const OFFICER: &[Role] = &[Role::ComplianceOfficer];
const CASE_READERS: &[Role] = &[Role::ComplianceOfficer, Role::Regulator, Role::Admin];
const REPORT_READERS: &[Role] = &[Role::ComplianceOfficer, Role::Regulator];

/// `rempart.v1.Compliance`.
#[derive(Debug, Clone)]
pub struct ComplianceSvc(pub Ctx);

impl ComplianceSvc {
    fn c(&self) -> &Compliance {
        &self.0.compliance
    }
}

#[tonic::async_trait]
impl pb::compliance_server::Compliance for ComplianceSvc {
    async fn submit_attestation(
        &self,
        req: Request<pb::SubmitAttestationRequest>,
    ) -> Result<Response<pb::CustomerStatus>, Status> {
        caller(&req)?.require(OFFICER)?;
        let r = req.into_inner();
        let customer: u64 = if r.customer_id.is_empty() {
            return Err(ApiReject::MissingField.status("customer_id", ""));
        } else {
            r.customer_id
                .parse()
                .map_err(|_| ApiReject::InvalidField.status("customer_id", "decimal id expected"))?
        };
        if r.attestation.is_empty() {
            return Err(ApiReject::MissingField.status("attestation", ""));
        }
        let att =
            Attestation::from_json(&r.attestation).map_err(|e| kyc_status(&e, "attestation"))?;
        if !r.provider.is_empty() && r.provider != att.claims.issuer {
            return Err(
                ApiReject::InvalidField.status("provider", "differs from the attestation's issuer")
            );
        }
        let status = self
            .c()
            .submit_attestation(customer, &att, now_i64())
            .await?;
        Ok(Response::new(status))
    }

    async fn get_customer_status(
        &self,
        req: Request<pb::GetCustomerStatusRequest>,
    ) -> Result<Response<pb::CustomerStatus>, Status> {
        let c = caller(&req)?;
        let customer = if c.has_any(CASE_READERS) {
            let id = &req.get_ref().customer_id;
            if id.is_empty() {
                return Err(ApiReject::MissingField.status("customer_id", ""));
            }
            id.parse()
                .map_err(|_| ApiReject::InvalidField.status("customer_id", "decimal id expected"))?
        } else {
            c.account_for(&req.get_ref().customer_id, &[])?
        };
        Ok(Response::new(self.c().status(customer, now_i64()).await?))
    }

    async fn list_cases(
        &self,
        req: Request<pb::ListCasesRequest>,
    ) -> Result<Response<pb::ListCasesResponse>, Status> {
        caller(&req)?.require(CASE_READERS)?;
        let r = req.into_inner();
        let state = match pb::CaseState::try_from(r.state) {
            Ok(s) => case_state_of(s),
            Err(_) => return Err(ApiReject::InvalidField.status("state", "unknown case state")),
        };
        let page = r.page.unwrap_or_default();
        let limit = match page.page_size {
            0 => LIST_CASES_DEFAULT,
            n => n.min(LIST_CASES_MAX),
        };
        let after: u64 = if page.page_token.is_empty() {
            0
        } else {
            page.page_token
                .parse()
                .map_err(|_| ApiReject::InvalidField.status("page.page_token", "not a token"))?
        };
        let (cases, more) = self.c().list_cases(state, after, limit).await?;
        let next = if more {
            cases.last().map(|c| c.id.to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListCasesResponse {
            cases: cases.iter().map(case_pb).collect(),
            page: Some(pb::PageResponse {
                next_page_token: next,
            }),
        }))
    }

    async fn get_case(
        &self,
        req: Request<pb::GetCaseRequest>,
    ) -> Result<Response<pb::Case>, Status> {
        caller(&req)?.require(CASE_READERS)?;
        let id = case_id_of(&req.get_ref().case_id)?;
        Ok(Response::new(case_pb(&self.c().get_case(id).await?)))
    }

    async fn update_case(
        &self,
        req: Request<pb::UpdateCaseRequest>,
    ) -> Result<Response<pb::Case>, Status> {
        let c = caller(&req)?;
        c.require(OFFICER)?;
        let r = req.into_inner();
        let id = case_id_of(&r.case_id)?;
        let target = match pb::CaseState::try_from(r.state) {
            Ok(s) => case_state_of(s),
            Err(_) => return Err(ApiReject::InvalidField.status("state", "unknown case state")),
        };
        if r.note.len() > kyc_aml::limits::NOTE_LEN_MAX {
            return Err(ApiReject::FieldTooLong.status("note", ""));
        }
        let case = self
            .c()
            .update_case(id, target, &r.note, &c.key_id, now_i64())
            .await?;
        Ok(Response::new(case_pb(&case)))
    }

    async fn export_report(
        &self,
        req: Request<pb::ExportReportRequest>,
    ) -> Result<Response<pb::Report>, Status> {
        caller(&req)?.require(REPORT_READERS)?;
        let r = req.into_inner();
        let id = case_id_of(&r.case_id)?;
        match pb::ReportFormat::try_from(r.format) {
            Ok(pb::ReportFormat::Unspecified | pb::ReportFormat::GoamlXml) => {}
            Err(_) => return Err(ApiReject::InvalidField.status("format", "unknown format")),
        }
        let content = self.c().report(id, now_i64()).await?;
        let sha256 = hex::encode(Sha256::digest(&content));
        Ok(Response::new(pb::Report {
            case_id: id.to_string(),
            format: pb::ReportFormat::GoamlXml as i32,
            content,
            sha256,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::errors::detail_of;
    use matching_engine::{ASSET_CITY, ASSET_EUR};

    #[test]
    fn kyc_refusals_map_to_offset_codes_and_grpc_codes() {
        let s = kyc_status(
            &Refusal::new(Reject::BadSignature, "demo-idp"),
            "attestation",
        );
        assert_eq!(s.code(), Code::PermissionDenied);
        let d = detail_of(&s).expect("detail");
        assert_eq!(d.code, 21005);
        assert_eq!(d.name, "BAD_SIGNATURE");
        assert_eq!(d.field, "attestation");
        assert_eq!(
            s.metadata()
                .get("rempart-reject-code")
                .and_then(|v| v.to_str().ok()),
            Some("21005")
        );
        assert_eq!(kyc_grpc_code(Reject::UnknownCase), Code::NotFound);
        assert_eq!(
            kyc_grpc_code(Reject::InvalidCaseTransition),
            Code::FailedPrecondition
        );
        assert_eq!(kyc_grpc_code(Reject::NoteInvalid), Code::InvalidArgument);
        assert_eq!(kyc_grpc_code(Reject::RuleInvalid), Code::InvalidArgument);
        assert_eq!(
            kyc_grpc_code(Reject::CddIncomplete),
            Code::FailedPrecondition
        );
        // Every kyc-aml code lands above the gateway's range and below 30000.
        for r in Reject::ALL {
            let code = KYC_CODE_BASE + u32::from(r.code());
            assert!((21_000..28_000).contains(&code), "{r:?}");
            assert!(!kyc_code_name(*r).contains(' '));
        }
    }

    #[test]
    fn case_states_round_trip() {
        for s in [
            CaseState::Pending,
            CaseState::Investigating,
            CaseState::ClosedConfirmed,
            CaseState::ClosedFalsePositive,
        ] {
            assert_eq!(case_state_of(case_state_pb(s)), Some(s));
        }
        assert_eq!(case_state_of(pb::CaseState::Unspecified), None);
        assert_eq!(
            customer_state(Some(Tier::Tier1), false),
            pb::CustomerState::Active
        );
        assert_eq!(
            customer_state(Some(Tier::Tier1), true),
            pb::CustomerState::Frozen
        );
        assert_eq!(customer_state(None, false), pb::CustomerState::Pending);
    }

    #[test]
    fn updates_follow_the_case_state_machine_and_keep_the_actor() {
        let mut c = Case::open(7, 1001, Some(42), Some([1; 32]), vec![2009], 10);
        let err = apply_update(
            &mut c,
            Some(CaseState::ClosedConfirmed),
            "too early",
            "key-1",
            11,
        )
        .unwrap_err();
        assert_eq!(err.reject, Reject::InvalidCaseTransition);
        assert_eq!(c.state, CaseState::Pending);
        assert!(c.notes.is_empty(), "a refused update changes nothing");
        apply_update(&mut c, Some(CaseState::Investigating), "", "key-1", 12).unwrap();
        assert_eq!(c.state, CaseState::Investigating);
        assert_eq!(c.assignee.as_deref(), Some("key-1"));
        apply_update(&mut c, None, "called the customer", "key-2", 13).unwrap();
        let err = apply_update(
            &mut c,
            Some(CaseState::ClosedFalsePositive),
            " ",
            "key-1",
            14,
        )
        .unwrap_err();
        assert_eq!(err.reject, Reject::RationaleMissing);
        apply_update(
            &mut c,
            Some(CaseState::ClosedConfirmed),
            "name and birth date match the listing",
            "key-1",
            15,
        )
        .unwrap();
        assert_eq!(c.state, CaseState::ClosedConfirmed);
        let pb_case = case_pb(&c);
        assert_eq!(pb_case.state, pb::CaseState::Reported as i32);
        assert_eq!(pb_case.transfer_ids, vec!["42".to_string()]);
        assert_eq!(pb_case.rule, "2009 SANCTIONS_POSSIBLE_MATCH");
        let actors: Vec<&str> = pb_case.history.iter().map(|e| e.actor.as_str()).collect();
        assert_eq!(actors, ["key-1", "key-1", "key-2", "key-1"]);
        let err = apply_update(&mut c, None, "late", "key-1", 16).unwrap_err();
        assert_eq!(err.reject, Reject::CaseClosed);
        let err = apply_update(&mut c, Some(CaseState::Pending), "", "key-1", 16).unwrap_err();
        assert_eq!(err.reject, Reject::InvalidCaseTransition);
    }

    #[test]
    fn issuers_and_rates_parse_and_convert_to_euro_cents() {
        let key = hex::encode([9u8; 32]);
        let parsed = parse_issuers(&format!("idp-a:{key}, idp-b:{key}")).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[1].0, "idp-b");
        assert!(parse_issuers("idp-a").is_err());
        assert!(parse_issuers("idp-a:abcd").is_err());
        assert!(parse_issuers("").unwrap().is_empty());
        let rates = parse_rates("CITY:1.25,EUR:1").unwrap();
        assert_eq!(rates, vec![(ASSET_CITY, 125), (ASSET_EUR, 100)]);
        assert!(parse_rates("CITY:1.255").is_err());
        assert!(parse_rates("CITY:0").is_err());
        assert!(parse_rates("XYZ:1").is_err());
        // 2 CITY (10^-6) at 1.25 EUR = 250 cents; a millionth of a CITY rounds up to a cent.
        assert_eq!(eur_minor(&rates, ASSET_CITY, 2_000_000), Some(250));
        assert_eq!(eur_minor(&rates, ASSET_CITY, 1), Some(1));
        assert_eq!(eur_minor(&rates, ASSET_EUR, 1234), Some(1234));
        assert_eq!(eur_minor(&rates, 999, 1), None);
    }

    #[test]
    fn primary_refusal_prefers_what_decides_and_summaries_carry_no_details() {
        let refusals = vec![
            Refusal::new(Reject::RuleHit, "large-10k +50"),
            Refusal::new(Reject::SanctionsMatch, "entry DEMO:DEMO-2"),
        ];
        assert_eq!(
            primary_refusal(&refusals).map(|r| r.reject),
            Some(Reject::SanctionsMatch)
        );
        let s = summary(&refusals);
        assert!(s.contains("2008") && s.contains("2015"), "{s}");
        assert!(!s.contains("DEMO-2"), "{s}");
        assert_eq!(primary_refusal(&[]), None);
    }

    #[test]
    fn demo_scaling_keeps_rules_valid_and_lets_demo_funding_through() {
        let rules = demo_rules().unwrap();
        assert!(rules.version().ends_with("-demo-scaled"));
        assert_eq!(
            rules.config().rules.len(),
            RuleSet::default_rules().config().rules.len()
        );
        let tiers = demo_tiers();
        let day = tiers
            .limits(Tier::Tier2)
            .for_activity(Activity::Deposit)
            .per_day_minor;
        // alice's demo funding: 10^9 EUR + 10^9 LCL + 10^7 CITY at 1 EUR, in cents.
        assert!(day >= (2 * 1_000_000_000 + 10_000_000) * 100, "{day}");
        assert_eq!(
            tiers.limits(Tier::Tier0),
            TierTable::default().limits(Tier::Tier0)
        );
    }

    fn withdrawal(id: u128, name: &str, now: u64) -> GateRequest {
        GateRequest {
            transfer_id: (2u128 << 120) | id,
            activity: GateActivity::Withdrawal,
            account: 1001,
            asset: ASSET_EUR,
            amount: 10_000,
            counterparty: Some(Counterparty {
                name: name.into(),
                address: "FR7630006000011234567890189".into(),
                identification: None,
            }),
            time_us: now,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sanctioned_counterparty_is_held_with_a_case_and_released_after_dismissal() {
        use kyc_aml::gate::decision::{GateKeys, verify_approval};
        let dir = tempfile::tempdir().unwrap();
        let c = Compliance::open(dir.path(), true, &|_| None).await.unwrap();
        c.onboard_demo(&[(1001, "alice")]).await.unwrap();
        assert!(c.may_trade(1001));
        assert!(!c.may_trade(1002));
        let mut keys = GateKeys::new();
        keys.add(GATE_KEY_LABEL, &c.gate_public_key()).unwrap();
        let now = Core::now_us();

        let clean = withdrawal(1, "Marie Curie", now);
        let GateVerdict::Approved(signed) = c.check(clean.clone()).await.unwrap() else {
            panic!("a clean withdrawal is approved");
        };
        verify_approval(&signed, clean.transfer_id, &keys).unwrap();
        assert_eq!(
            c.check(clean.clone()).await.unwrap(),
            GateVerdict::Approved(signed),
            "a retry answers the stored approval"
        );

        let listed = withdrawal(2, "SIDOROV, Ivan Petrovich", now + 1);
        let GateVerdict::Held { case_id, reason } = c.check(listed.clone()).await.unwrap() else {
            panic!("a listed beneficiary is held");
        };
        assert!(reason.contains("2009"), "{reason}");
        assert!(
            !reason.contains("SIDOROV"),
            "no personal data in the reason: {reason}"
        );
        let GateVerdict::Held { case_id: again, .. } = c.check(listed.clone()).await.unwrap()
        else {
            panic!("still held");
        };
        assert_eq!(again, case_id, "a retry opens no second case");
        let id: u64 = case_id.parse().unwrap();
        let case = c.get_case(id).await.unwrap();
        assert_eq!(case.transfer_id, Some(listed.transfer_id));
        assert_eq!(case.state, CaseState::Pending);
        // A possible match on a transfer holds the transfer, not the customer.
        assert!(c.may_trade(1001));

        c.update_case(id, Some(CaseState::Investigating), "", "officer-key", 10)
            .await
            .unwrap();
        c.update_case(
            id,
            Some(CaseState::ClosedFalsePositive),
            "beneficiary born 1990, listing born 1965",
            "officer-key",
            11,
        )
        .await
        .unwrap();
        let GateVerdict::Approved(released) = c.check(listed.clone()).await.unwrap() else {
            panic!("a dismissed hold is released");
        };
        verify_approval(&released, listed.transfer_id, &keys).unwrap();
        // A retry, even one carrying the original (earlier) time, answers the same release.
        let early = GateRequest {
            time_us: now,
            ..listed.clone()
        };
        assert_eq!(
            c.check(early).await.unwrap(),
            GateVerdict::Approved(released.clone())
        );

        let unknown = GateRequest {
            account: 1002,
            ..withdrawal(3, "Marie Curie", now + 2)
        };
        assert_eq!(
            c.check(unknown).await.unwrap(),
            GateVerdict::Rejected {
                code: Reject::UnknownCustomer.code(),
                reason: "2001 unknown customer".into()
            }
        );
        drop(c);
        // Reopened from disk: customers, standing and case numbering survive.
        let c = Compliance::open(dir.path(), true, &|_| None).await.unwrap();
        assert!(c.may_trade(1001));
        let held = withdrawal(4, "Ivan Petrovich Sidorov", now + 3);
        let GateVerdict::Held { case_id: next, .. } = c.check(held).await.unwrap() else {
            panic!("held again");
        };
        assert_eq!(next.parse::<u64>().unwrap(), id + 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_listed_customer_is_frozen_at_onboarding_until_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let c = Compliance::open(dir.path(), true, &|_| None).await.unwrap();
        let seed = read_key_file(c.demo_provider_key().unwrap()).unwrap();
        let now = now_i64();
        let claims = AttestationClaims {
            subject: 2002,
            issuer: DEMO_ISSUER.into(),
            assurance: Assurance::High,
            full_name: "Ivan Petrovich Sidorov".into(),
            birth_date: None,
            nationality: None,
            residence_country: "FR".into(),
            national_id: None,
            issued_at_us: now - 1,
            expires_at_us: now + DAY_US,
        };
        let att = sign_attestation(&seed, claims);
        let status = c.submit_attestation(2002, &att, now).await.unwrap();
        assert_eq!(status.state, pb::CustomerState::Frozen as i32);
        assert_eq!(status.tier, 2);
        assert_eq!(status.open_case_ids.len(), 1);
        assert!(!c.may_trade(2002));
        // A frozen customer's outgoing transfers wait on the case that froze it.
        let out = GateRequest {
            account: 2002,
            ..withdrawal(20, "Marie Curie", now as u64)
        };
        let GateVerdict::Held { case_id, .. } = c.check(out.clone()).await.unwrap() else {
            panic!("held while frozen");
        };
        assert_eq!(case_id, status.open_case_ids[0]);
        // Submitting again opens no second case.
        let status = c.submit_attestation(2002, &att, now + 1).await.unwrap();
        assert_eq!(status.open_case_ids.len(), 1);
        let id: u64 = status.open_case_ids[0].parse().unwrap();
        c.update_case(id, Some(CaseState::Investigating), "", "k", now + 2)
            .await
            .unwrap();
        c.update_case(
            id,
            Some(CaseState::ClosedFalsePositive),
            "different person",
            "k",
            now + 3,
        )
        .await
        .unwrap();
        assert!(c.may_trade(2002));
        let GateVerdict::Approved(_) = c.check(out).await.unwrap() else {
            panic!("evaluated normally once cleared");
        };
        let status = c.submit_attestation(2002, &att, now + 4).await.unwrap();
        assert_eq!(status.state, pb::CustomerState::Active as i32);
        assert!(
            status.open_case_ids.is_empty(),
            "a dismissed hit is not raised again"
        );
    }

    /// The same wiring over PostgreSQL (127.0.0.1:5432, database `test`), in a schema of its
    /// own that the test drops.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_postgresql_store_serves_the_same_wiring() {
        let dir = tempfile::tempdir().unwrap();
        let schema = format!("kyc_node_test_{}", std::process::id());
        let url = "host=127.0.0.1 port=5432 user=postgres dbname=test";
        let env = |k: &str| match k {
            POSTGRES_ENV => Some(url.to_string()),
            POSTGRES_SCHEMA_ENV => Some(schema.clone()),
            _ => None,
        };
        let c = Compliance::open(dir.path(), true, &env).await.unwrap();
        assert_eq!(c.inner.db_kind(), "postgres");
        c.onboard_demo(&[(1001, "alice")]).await.unwrap();
        assert!(c.may_trade(1001));
        let held = withdrawal(9, "Ivan Petrovich Sidorov", Core::now_us());
        let GateVerdict::Held { case_id, .. } = c.check(held).await.unwrap() else {
            panic!("held");
        };
        let (cases, more) = c.list_cases(Some(CaseState::Pending), 0, 10).await.unwrap();
        assert!(!more);
        assert_eq!(cases.len(), 1);
        assert_eq!(cases[0].id.to_string(), case_id);
        drop(c);
        PgBackend::connect(url, &schema)
            .await
            .unwrap()
            .drop_schema()
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_expired_attestation_takes_the_tier_away() {
        let dir = tempfile::tempdir().unwrap();
        let c = Compliance::open(dir.path(), true, &|_| None).await.unwrap();
        let seed = read_key_file(c.demo_provider_key().unwrap()).unwrap();
        let now = now_i64();
        let att = sign_attestation(
            &seed,
            AttestationClaims {
                subject: 3001,
                issuer: DEMO_ISSUER.into(),
                assurance: Assurance::Substantial,
                full_name: "Erin Demo".into(),
                birth_date: None,
                nationality: None,
                residence_country: "FR".into(),
                national_id: None,
                issued_at_us: now - 1,
                expires_at_us: now + 1_000,
            },
        );
        let status = c.submit_attestation(3001, &att, now).await.unwrap();
        assert_eq!((status.tier, c.may_trade(3001)), (1, true));
        assert_eq!(c.refresh(now + 999).await.unwrap(), 0);
        assert!(c.may_trade(3001));
        assert_eq!(c.refresh(now + 1_000).await.unwrap(), 1);
        assert!(!c.may_trade(3001));
        let status = c.status(3001, now + 1_000).await.unwrap();
        assert_eq!(
            (status.tier, status.state),
            (0, pb::CustomerState::Pending as i32)
        );
        // A restart keeps it at tier 0 (the store says so).
        drop(c);
        let c = Compliance::open(dir.path(), true, &|_| None).await.unwrap();
        assert!(!c.may_trade(3001));
    }

    #[test]
    fn database_urls_are_redacted() {
        let url = DbUrl("postgres://kyc:s3cret@db/kyc".into());
        assert_eq!(format!("{url:?}"), "DbUrl(<redacted>)");
    }

    #[test]
    fn counterparty_debug_hides_the_name() {
        let cp = Counterparty {
            name: "Ivan Petrovich Sidorov".into(),
            address: "0xabc".into(),
            identification: Some("CUST-77".into()),
        };
        assert!(!format!("{cp:?}").contains("Ivan"));
    }

    #[test]
    fn attestations_signed_with_a_key_file_verify() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.key");
        let public = create_key_file(&path).unwrap();
        assert!(create_key_file(&path).is_err(), "never overwrites a key");
        let seed = read_key_file(&path).unwrap();
        assert_eq!(public_key_of(&seed), public);
        let mut reg = IssuerRegistry::new();
        reg.add("p", IssuerKind::IdentityProvider, public).unwrap();
        let claims = AttestationClaims {
            subject: 5,
            issuer: "p".into(),
            assurance: Assurance::Substantial,
            full_name: "Dora Demo".into(),
            birth_date: None,
            nationality: None,
            residence_country: "FR".into(),
            national_id: None,
            issued_at_us: 10,
            expires_at_us: 20,
        };
        let att = sign_attestation(&seed, claims);
        assert!(reg.verify_presentation(&att, 5, 15).is_ok());
    }

    #[test]
    fn reports_name_their_kind_and_indicator() {
        let c = Case::open(3, 1001, Some(9), Some([2; 32]), vec![2009, 2015], 0);
        let r = report_request(&c, 5);
        assert_eq!(r.kind, ReportKind::Str);
        assert_eq!(r.entity_reference, "STR-CASE-3");
        assert_eq!(r.indicators, vec!["TFS01".to_string()]);
        let c = Case::open(4, 1001, None, None, vec![2010], 0);
        let r = report_request(&c, 5);
        assert_eq!(r.kind, ReportKind::Sar);
        assert_eq!(r.indicators, vec!["UNUSU".to_string()]);
    }
}
