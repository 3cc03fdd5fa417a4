//! Storage of customers (with their personal data), attestations, tier changes, cases with
//! notes, attachments and dispositions, and gate decisions; and GDPR erasure.
//!
//! [`KycStore`] is the one store interface. Both backends implement it through [`SqlStore`],
//! which writes every query once over a small [`SqlBackend`] seam (typed parameter values in,
//! rows of values out, a batch of statements in one transaction):
//! - [`pg::PgBackend`]: PostgreSQL through `tokio-postgres` and a `deadpool-postgres` pool
//!   (production);
//! - [`sqlite::SqliteBackend`]: embedded SQLite through `rusqlite` with the bundled library
//!   (the demo).
//!
//! Migrations are numbered SQL files per dialect (`migrations/<dialect>/V<n>__<name>.sql`),
//! embedded in the binary and applied by [`SqlStore::migrate`], which records each applied
//! version with its SHA-256 in `kyc_schema_migrations` and refuses to start when an applied
//! file has changed since.
//!
//! Personal data lives in two columns only (`customers.personal_json`, `attestations.claims`);
//! [`KycStore::erase_customer`] sets both to NULL (see ARCHITECTURE.md for what is retained).

#[cfg(feature = "postgres")]
pub mod pg;
#[cfg(feature = "sqlite")]
pub mod sqlite;

use std::future::Future;

use sha2::{Digest, Sha256};

use crate::attestation::{AcceptedAttestation, Assurance};
use crate::case::{Attachment, Case, CaseId, CaseState, HoldState, Note};
use crate::customer::{
    CddLevel, CustomerId, CustomerKind, CustomerProfile, PepStatus, PersonalData, RiskRating, Tier,
    TimestampUs,
};
use crate::gate::decision::{DecisionRecord, SignedDecision};
use crate::reject::{Refusal, Reject};

/// Failures of a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database reported an error.
    #[error("database: {0}")]
    Database(String),
    /// No connection could be had from the pool.
    #[error("connection pool: {0}")]
    Pool(String),
    /// Stored data does not decode or does not match its hash.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// An applied migration differs from the one shipped, or a migration failed.
    #[error("migration: {0}")]
    Migration(String),
}

/// One SQL value. Nulls carry their type so that PostgreSQL can bind them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    /// BIGINT / INTEGER.
    I64(Option<i64>),
    /// TEXT.
    Text(Option<String>),
    /// BYTEA / BLOB.
    Blob(Option<Vec<u8>>),
}

impl Val {
    fn i64(v: i64) -> Val {
        Val::I64(Some(v))
    }
    fn u64(v: u64) -> Val {
        Val::I64(Some(v as i64))
    }
    fn text(v: impl Into<String>) -> Val {
        Val::Text(Some(v.into()))
    }
    fn blob(v: &[u8]) -> Val {
        Val::Blob(Some(v.to_vec()))
    }
    fn is_null(&self) -> bool {
        matches!(self, Val::I64(None) | Val::Text(None) | Val::Blob(None))
    }
}

/// A row as values, in select order.
pub type Row = Vec<Val>;

/// SQL dialect of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL: `$n` placeholders.
    Postgres,
    /// SQLite: `?n` placeholders.
    Sqlite,
}

/// The seam between the store logic and a database driver.
pub trait SqlBackend: Send + Sync + std::fmt::Debug {
    /// The dialect (placeholders and migration files).
    fn dialect(&self) -> Dialect;
    /// Runs a query and returns its rows. Placeholders are `$1`, `$2`, …
    fn query(
        &self,
        sql: &str,
        params: Vec<Val>,
    ) -> impl Future<Output = Result<Vec<Row>, StoreError>> + Send;
    /// Runs statements in one transaction and returns each one's affected row count.
    fn batch(
        &self,
        stmts: Vec<(String, Vec<Val>)>,
    ) -> impl Future<Output = Result<Vec<u64>, StoreError>> + Send;
    /// Runs a script of several statements (no parameters) in one transaction.
    fn script(&self, sql: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A customer as stored: the non-personal profile, the personal data (until erased) and
/// onboarding facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerRecord {
    /// What the gate sees.
    pub profile: CustomerProfile,
    /// Personal data; `None` once erased.
    pub personal: Option<PersonalData>,
    /// Compliance signed off enhanced due diligence.
    pub edd_signed_off: bool,
    /// Onboarding time.
    pub created_at_us: TimestampUs,
    /// Erasure time.
    pub erased_at_us: Option<TimestampUs>,
}

/// A change of tier (append-only history).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierChange {
    /// Customer.
    pub customer: CustomerId,
    /// Position in the customer's history, from 0.
    pub seq: u32,
    /// When.
    pub at_us: TimestampUs,
    /// The new tier.
    pub tier: Tier,
    /// The CDD level behind it.
    pub cdd: CddLevel,
    /// Why (no personal data).
    pub reason: String,
}

/// A gate decision as stored: the full record and its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDecision {
    /// The record.
    pub record: DecisionRecord,
    /// The signed hash.
    pub signed: SignedDecision,
}

/// What erasure did, or why it refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErasureOutcome {
    /// Personal data removed.
    Erased {
        /// Attestations whose claims were removed.
        attestations: u64,
    },
    /// Not done.
    Refused(Refusal),
}

/// The one store interface (PostgreSQL in production, SQLite in the demo).
pub trait KycStore: Send + Sync {
    /// Applies pending migrations.
    fn migrate(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Inserts or replaces a customer.
    fn put_customer(
        &self,
        c: &CustomerRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A customer.
    fn get_customer(
        &self,
        id: CustomerId,
    ) -> impl Future<Output = Result<Option<CustomerRecord>, StoreError>> + Send;
    /// Every customer profile (to load the gate).
    fn profiles(&self) -> impl Future<Output = Result<Vec<CustomerProfile>, StoreError>> + Send;
    /// Appends a tier change; the seq is assigned by the store.
    fn record_tier_change(
        &self,
        customer: CustomerId,
        at_us: TimestampUs,
        tier: Tier,
        cdd: CddLevel,
        reason: &str,
    ) -> impl Future<Output = Result<TierChange, StoreError>> + Send;
    /// A customer's tier history, oldest first.
    fn tier_history(
        &self,
        id: CustomerId,
    ) -> impl Future<Output = Result<Vec<TierChange>, StoreError>> + Send;
    /// Keeps an accepted attestation (idempotent on customer and claims hash).
    fn put_attestation(
        &self,
        a: &AcceptedAttestation,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A customer's attestations, by acceptance time.
    fn attestations(
        &self,
        id: CustomerId,
    ) -> impl Future<Output = Result<Vec<AcceptedAttestation>, StoreError>> + Send;
    /// Saves a case: its row, and its notes and attachments not stored yet (both append-only).
    fn save_case(&self, c: &Case) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A case with its notes and attachments.
    fn get_case(&self, id: CaseId)
    -> impl Future<Output = Result<Option<Case>, StoreError>> + Send;
    /// Ids of cases not closed, oldest first.
    fn open_cases(&self) -> impl Future<Output = Result<Vec<CaseId>, StoreError>> + Send;
    /// Keeps a decision (idempotent on its hash).
    fn put_decision(
        &self,
        d: &StoredDecision,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A decision by hash; its record is re-hashed on load and must match.
    fn get_decision(
        &self,
        hash: &[u8; 32],
    ) -> impl Future<Output = Result<Option<StoredDecision>, StoreError>> + Send;
    /// Decisions about a transfer, by evaluation time.
    fn decisions_for_transfer(
        &self,
        transfer_id: u128,
    ) -> impl Future<Output = Result<Vec<StoredDecision>, StoreError>> + Send;
    /// GDPR erasure: removes the customer's personal data (profile and attestation claims),
    /// keeps the pseudonymous id, tiers, decisions and cases. Refused while a case about the
    /// customer is open.
    fn erase_customer(
        &self,
        id: CustomerId,
        now: TimestampUs,
    ) -> impl Future<Output = Result<ErasureOutcome, StoreError>> + Send;
}

/// The store logic over a backend.
#[derive(Debug)]
pub struct SqlStore<B: SqlBackend> {
    backend: B,
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn get_i64(row: &Row, i: usize) -> Result<i64, StoreError> {
    match row.get(i) {
        Some(Val::I64(Some(v))) => Ok(*v),
        _ => Err(corrupt(&format!("column {i}: expected integer"))),
    }
}

fn get_opt_i64(row: &Row, i: usize) -> Result<Option<i64>, StoreError> {
    match row.get(i) {
        Some(Val::I64(v)) => Ok(*v),
        Some(v) if v.is_null() => Ok(None),
        _ => Err(corrupt(&format!("column {i}: expected integer"))),
    }
}

fn get_opt_text(row: &Row, i: usize) -> Result<Option<String>, StoreError> {
    match row.get(i) {
        Some(Val::Text(v)) => Ok(v.clone()),
        Some(v) if v.is_null() => Ok(None),
        _ => Err(corrupt(&format!("column {i}: expected text"))),
    }
}

fn get_text(row: &Row, i: usize) -> Result<String, StoreError> {
    get_opt_text(row, i)?.ok_or_else(|| corrupt(&format!("column {i}: null text")))
}

fn get_opt_blob(row: &Row, i: usize) -> Result<Option<Vec<u8>>, StoreError> {
    match row.get(i) {
        Some(Val::Blob(v)) => Ok(v.clone()),
        Some(v) if v.is_null() => Ok(None),
        _ => Err(corrupt(&format!("column {i}: expected bytes"))),
    }
}

fn get_array<const N: usize>(row: &Row, i: usize) -> Result<[u8; N], StoreError> {
    let v = get_opt_blob(row, i)?.ok_or_else(|| corrupt("null bytes"))?;
    <[u8; N]>::try_from(v.as_slice())
        .map_err(|_| corrupt(&format!("column {i}: expected {N} bytes")))
}

fn small<T>(v: i64, f: impl Fn(u8) -> Option<T>, what: &str) -> Result<T, StoreError> {
    u8::try_from(v)
        .ok()
        .and_then(f)
        .ok_or_else(|| corrupt(what))
}

/// The migrations of a dialect: (version, name, SQL).
pub fn migrations(d: Dialect) -> &'static [(i64, &'static str, &'static str)] {
    match d {
        Dialect::Postgres => &[(
            1,
            "init",
            include_str!("../../migrations/postgres/V1__init.sql"),
        )],
        Dialect::Sqlite => &[(
            1,
            "init",
            include_str!("../../migrations/sqlite/V1__init.sql"),
        )],
    }
}

const CUSTOMER_COLS: &str = "id, kind, cdd, risk, is_pep, pep_left_office_us, edd_signed_off, created_at_us, erased_at_us, personal_json";

impl<B: SqlBackend> SqlStore<B> {
    /// A store over a backend; call [`KycStore::migrate`] before use.
    pub fn new(backend: B) -> Self {
        Self { backend }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    fn customer_from_row(row: &Row) -> Result<CustomerRecord, StoreError> {
        let id = get_i64(row, 0)? as u64;
        let kind = small(
            get_i64(row, 1)?,
            |v| match v {
                1 => Some(CustomerKind::NaturalPerson),
                2 => Some(CustomerKind::LegalEntity),
                _ => None,
            },
            "kind",
        )?;
        let cdd = small(get_i64(row, 2)?, CddLevel::from_u8, "cdd")?;
        let risk = small(get_i64(row, 3)?, RiskRating::from_u8, "risk")?;
        let pep = (get_i64(row, 4)? != 0).then_some(PepStatus {
            left_office_at_us: get_opt_i64(row, 5)?,
        });
        let erased_at_us = get_opt_i64(row, 8)?;
        let personal = match get_opt_text(row, 9)? {
            None => None,
            Some(j) => Some(
                serde_json::from_str(&j).map_err(|e| corrupt(&format!("personal_json: {e}")))?,
            ),
        };
        Ok(CustomerRecord {
            profile: CustomerProfile {
                id,
                kind,
                cdd,
                risk,
                pep,
                erased: erased_at_us.is_some(),
            },
            personal,
            edd_signed_off: get_i64(row, 6)? != 0,
            created_at_us: get_i64(row, 7)?,
            erased_at_us,
        })
    }

    fn decision_from_row(row: &Row) -> Result<StoredDecision, StoreError> {
        let hash: [u8; 32] = get_array(row, 0)?;
        let record: DecisionRecord = serde_json::from_str(&get_text(row, 1)?)
            .map_err(|e| corrupt(&format!("record_json: {e}")))?;
        if record.decision_hash() != hash {
            return Err(corrupt("decision record does not match its hash"));
        }
        let signature: [u8; 64] = get_array(row, 2)?;
        let gate_key_id = get_text(row, 3)?;
        let signed = SignedDecision {
            transfer_id: record.transfer_id,
            outcome: record.outcome,
            hash,
            signature,
            gate_key_id,
        };
        Ok(StoredDecision { record, signed })
    }
}

impl<B: SqlBackend> KycStore for SqlStore<B> {
    async fn migrate(&self) -> Result<(), StoreError> {
        self.backend
            .script(
                "CREATE TABLE IF NOT EXISTS kyc_schema_migrations (
                    version BIGINT PRIMARY KEY, name TEXT NOT NULL, sha256 TEXT NOT NULL)",
            )
            .await?;
        let applied = self
            .backend
            .query(
                "SELECT version, sha256 FROM kyc_schema_migrations ORDER BY version",
                vec![],
            )
            .await?;
        let mut done = std::collections::BTreeMap::new();
        for r in &applied {
            done.insert(get_i64(r, 0)?, get_text(r, 1)?);
        }
        for (version, name, sql) in migrations(self.backend.dialect()) {
            let sum = hex::encode(Sha256::digest(sql.as_bytes()));
            match done.get(version) {
                Some(s) if *s == sum => continue,
                Some(_) => {
                    return Err(StoreError::Migration(format!(
                        "applied migration V{version} was changed"
                    )));
                }
                None => {
                    // The version row goes in the same transaction as the migration, so a
                    // crash leaves either both or neither.
                    let script = format!(
                        "{sql}\nINSERT INTO kyc_schema_migrations (version, name, sha256) VALUES ({version}, '{name}', '{sum}');"
                    );
                    self.backend
                        .script(&script)
                        .await
                        .map_err(|e| StoreError::Migration(format!("V{version}: {e}")))?;
                }
            }
        }
        Ok(())
    }

    async fn put_customer(&self, c: &CustomerRecord) -> Result<(), StoreError> {
        let p = &c.profile;
        let personal = match &c.personal {
            None => Val::Text(None),
            Some(pd) => Val::text(serde_json::to_string(pd).map_err(|e| corrupt(&e.to_string()))?),
        };
        let sql = format!(
            "INSERT INTO customers ({CUSTOMER_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, cdd = excluded.cdd, risk = excluded.risk,
               is_pep = excluded.is_pep, pep_left_office_us = excluded.pep_left_office_us,
               edd_signed_off = excluded.edd_signed_off, erased_at_us = excluded.erased_at_us,
               personal_json = excluded.personal_json"
        );
        let params = vec![
            Val::u64(p.id),
            Val::i64(p.kind as i64),
            Val::i64(p.cdd as i64),
            Val::i64(p.risk as i64),
            Val::i64(i64::from(p.pep.is_some())),
            Val::I64(p.pep.and_then(|x| x.left_office_at_us)),
            Val::i64(i64::from(c.edd_signed_off)),
            Val::i64(c.created_at_us),
            Val::I64(c.erased_at_us),
            personal,
        ];
        self.backend.batch(vec![(sql, params)]).await.map(|_| ())
    }

    async fn get_customer(&self, id: CustomerId) -> Result<Option<CustomerRecord>, StoreError> {
        let rows = self
            .backend
            .query(
                &format!("SELECT {CUSTOMER_COLS} FROM customers WHERE id = $1"),
                vec![Val::u64(id)],
            )
            .await?;
        rows.first().map(Self::customer_from_row).transpose()
    }

    async fn profiles(&self) -> Result<Vec<CustomerProfile>, StoreError> {
        let rows = self
            .backend
            .query(
                &format!("SELECT {CUSTOMER_COLS} FROM customers ORDER BY id"),
                vec![],
            )
            .await?;
        rows.iter()
            .map(|r| Self::customer_from_row(r).map(|c| c.profile))
            .collect()
    }

    async fn record_tier_change(
        &self,
        customer: CustomerId,
        at_us: TimestampUs,
        tier: Tier,
        cdd: CddLevel,
        reason: &str,
    ) -> Result<TierChange, StoreError> {
        // The seq is computed inside the insert, so two writers cannot take the same one (the
        // primary key refuses the loser).
        let sql = "INSERT INTO tier_changes (customer, seq, at_us, tier, cdd, reason)
                   SELECT CAST($1 AS BIGINT), COALESCE(MAX(seq) + 1, 0), CAST($2 AS BIGINT), CAST($3 AS BIGINT),
                          CAST($4 AS BIGINT), CAST($5 AS TEXT)
                   FROM tier_changes WHERE customer = $1";
        self.backend
            .batch(vec![(
                sql.to_string(),
                vec![
                    Val::u64(customer),
                    Val::i64(at_us),
                    Val::i64(tier as i64),
                    Val::i64(cdd as i64),
                    Val::text(reason),
                ],
            )])
            .await?;
        let history = self.tier_history(customer).await?;
        history
            .into_iter()
            .last()
            .ok_or_else(|| corrupt("tier change vanished"))
    }

    async fn tier_history(&self, id: CustomerId) -> Result<Vec<TierChange>, StoreError> {
        let rows = self
            .backend
            .query(
                "SELECT seq, at_us, tier, cdd, reason FROM tier_changes WHERE customer = $1 ORDER BY seq",
                vec![Val::u64(id)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(TierChange {
                    customer: id,
                    seq: get_i64(r, 0)? as u32,
                    at_us: get_i64(r, 1)?,
                    tier: small(get_i64(r, 2)?, Tier::from_u8, "tier")?,
                    cdd: small(get_i64(r, 3)?, CddLevel::from_u8, "cdd")?,
                    reason: get_text(r, 4)?,
                })
            })
            .collect()
    }

    async fn put_attestation(&self, a: &AcceptedAttestation) -> Result<(), StoreError> {
        let sql = "INSERT INTO attestations (customer, claims_sha256, issuer, assurance, accepted_at_us, expires_at_us, signature, claims)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (customer, claims_sha256) DO NOTHING";
        let params = vec![
            Val::u64(a.customer),
            Val::blob(&a.claims_sha256),
            Val::text(a.issuer.clone()),
            Val::i64(a.assurance as i64),
            Val::i64(a.accepted_at_us),
            Val::i64(a.expires_at_us),
            Val::blob(&a.signature),
            Val::Blob(a.claims_canonical.clone()),
        ];
        self.backend
            .batch(vec![(sql.to_string(), params)])
            .await
            .map(|_| ())
    }

    async fn attestations(&self, id: CustomerId) -> Result<Vec<AcceptedAttestation>, StoreError> {
        let rows = self
            .backend
            .query(
                "SELECT claims_sha256, issuer, assurance, accepted_at_us, expires_at_us, signature, claims
                 FROM attestations WHERE customer = $1 ORDER BY accepted_at_us, claims_sha256",
                vec![Val::u64(id)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AcceptedAttestation {
                    customer: id,
                    claims_sha256: get_array(r, 0)?,
                    issuer: get_text(r, 1)?,
                    assurance: small(
                        get_i64(r, 2)?,
                        |v| match v {
                            1 => Some(Assurance::Substantial),
                            2 => Some(Assurance::High),
                            _ => None,
                        },
                        "assurance",
                    )?,
                    accepted_at_us: get_i64(r, 3)?,
                    expires_at_us: get_i64(r, 4)?,
                    signature: get_array(r, 5)?,
                    claims_canonical: get_opt_blob(r, 6)?,
                })
            })
            .collect()
    }

    async fn save_case(&self, c: &Case) -> Result<(), StoreError> {
        let codes = c
            .alert_codes
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut stmts = vec![(
            "INSERT INTO cases (id, customer, transfer_id, decision_hash, alert_codes, opened_at_us, state, assignee, hold, closed_at_us)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, assignee = excluded.assignee,
               hold = excluded.hold, closed_at_us = excluded.closed_at_us"
                .to_string(),
            vec![
                Val::u64(c.id),
                Val::u64(c.customer),
                Val::Text(c.transfer_id.map(|t| t.to_string())),
                Val::Blob(c.decision_hash.map(|h| h.to_vec())),
                Val::text(codes),
                Val::i64(c.opened_at_us),
                Val::i64(c.state as i64),
                Val::Text(c.assignee.clone()),
                Val::i64(c.hold as i64),
                Val::I64(c.closed_at_us),
            ],
        )];
        for n in &c.notes {
            stmts.push((
                "INSERT INTO case_notes (case_id, seq, author, at_us, body) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (case_id, seq) DO NOTHING"
                    .to_string(),
                vec![Val::u64(c.id), Val::i64(i64::from(n.seq)), Val::text(n.author.clone()), Val::i64(n.at_us), Val::text(n.text.clone())],
            ));
        }
        for a in &c.attachments {
            stmts.push((
                "INSERT INTO case_attachments (case_id, seq, sha256, uri, added_by, at_us) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (case_id, seq) DO NOTHING"
                    .to_string(),
                vec![
                    Val::u64(c.id),
                    Val::i64(i64::from(a.seq)),
                    Val::blob(&a.sha256),
                    Val::text(a.uri.clone()),
                    Val::text(a.added_by.clone()),
                    Val::i64(a.at_us),
                ],
            ));
        }
        self.backend.batch(stmts).await.map(|_| ())
    }

    async fn get_case(&self, id: CaseId) -> Result<Option<Case>, StoreError> {
        let rows = self
            .backend
            .query(
                "SELECT customer, transfer_id, decision_hash, alert_codes, opened_at_us, state, assignee, hold, closed_at_us
                 FROM cases WHERE id = $1",
                vec![Val::u64(id)],
            )
            .await?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let transfer_id = match get_opt_text(r, 1)? {
            None => None,
            Some(t) => Some(t.parse::<u128>().map_err(|_| corrupt("transfer_id"))?),
        };
        let decision_hash = match get_opt_blob(r, 2)? {
            None => None,
            Some(h) => {
                Some(<[u8; 32]>::try_from(h.as_slice()).map_err(|_| corrupt("decision_hash"))?)
            }
        };
        let codes_txt = get_text(r, 3)?;
        let alert_codes = if codes_txt.is_empty() {
            Vec::new()
        } else {
            codes_txt
                .split(',')
                .map(|c| c.parse::<u16>().map_err(|_| corrupt("alert_codes")))
                .collect::<Result<_, _>>()?
        };
        let notes = self
            .backend
            .query(
                "SELECT seq, author, at_us, body FROM case_notes WHERE case_id = $1 ORDER BY seq",
                vec![Val::u64(id)],
            )
            .await?
            .iter()
            .map(|n| {
                Ok(Note {
                    seq: get_i64(n, 0)? as u32,
                    author: get_text(n, 1)?,
                    at_us: get_i64(n, 2)?,
                    text: get_text(n, 3)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let attachments = self
            .backend
            .query(
                "SELECT seq, sha256, uri, added_by, at_us FROM case_attachments WHERE case_id = $1 ORDER BY seq",
                vec![Val::u64(id)],
            )
            .await?
            .iter()
            .map(|a| {
                Ok(Attachment {
                    seq: get_i64(a, 0)? as u32,
                    sha256: get_array(a, 1)?,
                    uri: get_text(a, 2)?,
                    added_by: get_text(a, 3)?,
                    at_us: get_i64(a, 4)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(Case {
            id,
            customer: get_i64(r, 0)? as u64,
            transfer_id,
            decision_hash,
            alert_codes,
            opened_at_us: get_i64(r, 4)?,
            state: small(get_i64(r, 5)?, CaseState::from_u8, "state")?,
            assignee: get_opt_text(r, 6)?,
            hold: small(get_i64(r, 7)?, HoldState::from_u8, "hold")?,
            notes,
            attachments,
            closed_at_us: get_opt_i64(r, 8)?,
        }))
    }

    async fn open_cases(&self) -> Result<Vec<CaseId>, StoreError> {
        let rows = self
            .backend
            .query(
                "SELECT id FROM cases WHERE state IN (1, 2) ORDER BY opened_at_us, id",
                vec![],
            )
            .await?;
        rows.iter()
            .map(|r| get_i64(r, 0).map(|v| v as u64))
            .collect()
    }

    async fn put_decision(&self, d: &StoredDecision) -> Result<(), StoreError> {
        let json = serde_json::to_string(&d.record).map_err(|e| corrupt(&e.to_string()))?;
        let sql = "INSERT INTO decisions (hash, transfer_id, customer, evaluated_at_us, outcome, record_json, signature, gate_key_id)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (hash) DO NOTHING";
        let params = vec![
            Val::blob(&d.signed.hash),
            Val::text(d.record.transfer_id.to_string()),
            Val::u64(d.record.customer),
            Val::i64(d.record.evaluated_at_us),
            Val::i64(d.record.outcome as i64),
            Val::text(json),
            Val::blob(&d.signed.signature),
            Val::text(d.signed.gate_key_id.clone()),
        ];
        self.backend
            .batch(vec![(sql.to_string(), params)])
            .await
            .map(|_| ())
    }

    async fn get_decision(&self, hash: &[u8; 32]) -> Result<Option<StoredDecision>, StoreError> {
        let rows = self
            .backend
            .query(
                "SELECT hash, record_json, signature, gate_key_id FROM decisions WHERE hash = $1",
                vec![Val::blob(hash)],
            )
            .await?;
        rows.first().map(Self::decision_from_row).transpose()
    }

    async fn decisions_for_transfer(
        &self,
        transfer_id: u128,
    ) -> Result<Vec<StoredDecision>, StoreError> {
        let rows = self
            .backend
            .query(
                "SELECT hash, record_json, signature, gate_key_id FROM decisions WHERE transfer_id = $1
                 ORDER BY evaluated_at_us, hash",
                vec![Val::text(transfer_id.to_string())],
            )
            .await?;
        rows.iter().map(Self::decision_from_row).collect()
    }

    async fn erase_customer(
        &self,
        id: CustomerId,
        now: TimestampUs,
    ) -> Result<ErasureOutcome, StoreError> {
        let Some(c) = self.get_customer(id).await? else {
            return Ok(ErasureOutcome::Refused(Refusal::new(
                Reject::UnknownCustomer,
                format!("customer {id}"),
            )));
        };
        if c.erased_at_us.is_some() {
            return Ok(ErasureOutcome::Refused(Refusal::new(
                Reject::AlreadyErased,
                format!("customer {id}"),
            )));
        }
        // The open-case condition is inside the UPDATE, so a case opened concurrently cannot
        // slip between a check and the erasure.
        let counts = self
            .backend
            .batch(vec![
                (
                    "UPDATE customers SET personal_json = NULL, erased_at_us = $2
                     WHERE id = $1 AND erased_at_us IS NULL
                       AND NOT EXISTS (SELECT 1 FROM cases WHERE customer = $1 AND state IN (1, 2))"
                        .to_string(),
                    vec![Val::u64(id), Val::i64(now)],
                ),
                (
                    "UPDATE attestations SET claims = NULL
                     WHERE customer = $1 AND claims IS NOT NULL
                       AND EXISTS (SELECT 1 FROM customers WHERE id = $1 AND erased_at_us = $2)"
                        .to_string(),
                    vec![Val::u64(id), Val::i64(now)],
                ),
            ])
            .await?;
        if counts.first() == Some(&0) {
            return Ok(ErasureOutcome::Refused(Refusal::new(
                Reject::ErasureBlockedOpenCase,
                format!("customer {id}"),
            )));
        }
        Ok(ErasureOutcome::Erased {
            attestations: counts.get(1).copied().unwrap_or(0),
        })
    }
}

/// Rewrites `$n` placeholders to SQLite's `?n`.
pub fn to_sqlite_placeholders(sql: &str) -> String {
    sql.replace('$', "?")
}
