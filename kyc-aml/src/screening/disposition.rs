//! Analysts' dispositions of screening hits: "confirmed match" or "false positive" for one
//! customer and one list entry, with who decided, when and why. Records are append-only (the
//! audit trail); the latest one per (customer, list, entity) is in force.
//!
//! A false positive is keyed on the entry's content hash: it silences the hit only while the
//! list entry is unchanged, so an amended entry (new alias, new date of birth) alerts again. A
//! confirmed match stays in force whatever changes.
//!
//! Storage is behind [`DispositionStore`] so the crate's persistent store can hold the records;
//! [`MemoryDispositionStore`] is the in-memory one. Time comes in with the record.

use std::collections::HashMap;

use serde::Serialize;

use super::limits::{DISPOSITION_TEXT_MAX, DISPOSITIONS_MAX};
use super::model::{Decision, ScreeningResult};

/// One analyst decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DispositionRecord {
    /// The pseudonymous customer id.
    pub customer: u64,
    /// List of the entry.
    pub list: String,
    /// The list's id of the entry.
    pub entity_id: String,
    /// Content hash (hex) of the entry as it was when decided (`Hit::entry_sha256`).
    pub entry_sha256: String,
    /// Confirmed match or false positive.
    pub decision: Decision,
    /// Who decided.
    pub analyst: String,
    /// When (UTC microseconds), handed in by the caller.
    pub at_us: i64,
    /// Why.
    pub reason: String,
}

/// A disposition refused as given; stable codes for clients and audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum DispositionRefusal {
    /// No analyst named.
    AnalystMissing = 4101,
    /// No reason given.
    ReasonMissing = 4102,
    /// Analyst or reason longer than `DISPOSITION_TEXT_MAX`.
    TextTooLong = 4103,
    /// Not a SHA-256 hex digest.
    EntryHashInvalid = 4104,
    /// The store holds `DISPOSITIONS_MAX` records already.
    StoreFull = 4105,
}

impl DispositionRefusal {
    /// Stable numeric code.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// Human-readable message.
    pub fn message(self) -> &'static str {
        match self {
            DispositionRefusal::AnalystMissing => "a disposition must name the analyst",
            DispositionRefusal::ReasonMissing => "a disposition must give a reason",
            DispositionRefusal::TextTooLong => "analyst or reason is too long",
            DispositionRefusal::EntryHashInvalid => "entry hash must be 64 hex digits",
            DispositionRefusal::StoreFull => "the disposition store is full",
        }
    }
}

/// A failure of the store's machinery (disk, database).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DispositionStoreError {
    /// The backend failed.
    #[error("disposition store failed: {0}")]
    Backend(String),
}

/// Where dispositions are kept. Implementations append; they never rewrite a record.
pub trait DispositionStore {
    /// Appends a validated record.
    fn append(&mut self, record: DispositionRecord) -> Result<(), DispositionStoreError>;
    /// The latest record for this customer and entry, if any.
    fn latest(
        &self,
        customer: u64,
        list: &str,
        entity_id: &str,
    ) -> Result<Option<DispositionRecord>, DispositionStoreError>;
    /// Every record for this customer, oldest first (the audit trail).
    fn history(&self, customer: u64) -> Result<Vec<DispositionRecord>, DispositionStoreError>;
    /// How many records the store holds.
    fn len(&self) -> Result<usize, DispositionStoreError>;
    /// True when the store holds nothing.
    fn is_empty(&self) -> Result<bool, DispositionStoreError> {
        Ok(self.len()? == 0)
    }
}

/// Validates and appends a disposition.
pub fn decide(
    store: &mut dyn DispositionStore,
    record: DispositionRecord,
) -> Result<Result<(), DispositionRefusal>, DispositionStoreError> {
    if record.analyst.trim().is_empty() {
        return Ok(Err(DispositionRefusal::AnalystMissing));
    }
    if record.reason.trim().is_empty() {
        return Ok(Err(DispositionRefusal::ReasonMissing));
    }
    if record.analyst.len() > DISPOSITION_TEXT_MAX || record.reason.len() > DISPOSITION_TEXT_MAX {
        return Ok(Err(DispositionRefusal::TextTooLong));
    }
    let hex_ok = record.entry_sha256.len() == 64
        && record.entry_sha256.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex_ok {
        return Ok(Err(DispositionRefusal::EntryHashInvalid));
    }
    if store.len()? >= DISPOSITIONS_MAX {
        return Ok(Err(DispositionRefusal::StoreFull));
    }
    store.append(record)?;
    Ok(Ok(()))
}

/// Marks each hit with the customer's disposition in force and recomputes `alert`: a false
/// positive on the same entry content no longer alerts; a confirmed match still does.
pub fn apply_dispositions(
    result: &mut ScreeningResult,
    customer: u64,
    store: &dyn DispositionStore,
) -> Result<(), DispositionStoreError> {
    for hit in &mut result.hits {
        hit.disposition = match store.latest(customer, &hit.list, &hit.entity_id)? {
            Some(record) if record.decision == Decision::ConfirmedMatch => {
                Some(Decision::ConfirmedMatch)
            }
            Some(record) if record.entry_sha256 == hit.entry_sha256 => Some(record.decision),
            _ => None,
        };
    }
    result.recompute_alert();
    Ok(())
}

/// Dispositions in memory: an append-only log and an index of the latest per key.
#[derive(Debug, Default)]
pub struct MemoryDispositionStore {
    log: Vec<DispositionRecord>,
    latest: HashMap<(u64, String, String), usize>,
}

impl DispositionStore for MemoryDispositionStore {
    fn append(&mut self, record: DispositionRecord) -> Result<(), DispositionStoreError> {
        let key = (
            record.customer,
            record.list.clone(),
            record.entity_id.clone(),
        );
        self.latest.insert(key, self.log.len());
        self.log.push(record);
        Ok(())
    }

    fn latest(
        &self,
        customer: u64,
        list: &str,
        entity_id: &str,
    ) -> Result<Option<DispositionRecord>, DispositionStoreError> {
        let key = (customer, list.to_owned(), entity_id.to_owned());
        Ok(self.latest.get(&key).map(|i| self.log[*i].clone()))
    }

    fn history(&self, customer: u64) -> Result<Vec<DispositionRecord>, DispositionStoreError> {
        Ok(self
            .log
            .iter()
            .filter(|r| r.customer == customer)
            .cloned()
            .collect())
    }

    fn len(&self) -> Result<usize, DispositionStoreError> {
        Ok(self.log.len())
    }
}
