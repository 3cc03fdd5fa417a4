//! Sanctions and PEP screening: list ingestion in the official formats, name normalisation,
//! candidate search and scoring with explanations, and analysts' dispositions of hits.
//!
//! The gate holds one [`Screener`]. It owns the current [`ListSnapshot`] (an `Arc` swapped only
//! when a whole new set of list files has parsed), so a malformed file never leaves the gate
//! without lists or with half a list. [`Screener::screen`] is pure with respect to the snapshot:
//! the same query against the same snapshot gives the same result, which names the snapshot
//! (`version`, `content_sha256`).
//!
//! # Layout
//! - `model`: entries, queries, results.
//! - `batch`: CSV input of queries and name pairs for the command line.
//! - `formats`: one parser per official list format, format detection.
//! - `normalize`: names to ASCII tokens with phonetic and consonant keys.
//! - `score`: token alignment and similarity, explanations.
//! - `index`: the inverted index and identifier map.
//! - `country`: country names/codes to comparable keys.
//! - `disposition`: confirmed matches and false positives with their audit trail.
//! - `limits`: every bound of the module.

pub mod batch;
pub mod country;
pub mod disposition;
pub mod formats;
pub mod index;
pub mod limits;
pub mod model;
pub mod normalize;
pub mod score;

use std::sync::{Arc, RwLock};

use rphonetic::DoubleMetaphone;
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use disposition::{
    DispositionRecord, DispositionStore, DispositionStoreError, MemoryDispositionStore,
};
pub use formats::{ListError, ListFormat};
pub use model::{
    Decision, Entry, EntryName, Gender, Hit, HitBasis, Identifier, NameKind, PartialDate, Query,
    ScreeningResult, SnapshotId, SubjectKind,
};

use country::country_key;
use index::Index;
use limits::{
    ALERT_THRESHOLD_DEFAULT, ENTRIES_MAX, LIST_FILES_MAX, QUERY_IDENTIFIERS_MAX, REPORT_SCORE_MIN,
    SCREEN_HITS_MAX,
};
use normalize::{encoder, normalize_name};
use score::score_names;

/// One list file to load: a label (its path) and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFile {
    /// Where it came from; named in errors and in the snapshot's sources.
    pub label: String,
    /// The file as published.
    pub bytes: Vec<u8>,
}

/// One file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceInfo {
    /// Label (path).
    pub label: String,
    /// Detected format.
    pub format: ListFormat,
    /// SHA-256 (hex) of the file's bytes.
    pub sha256: String,
    /// Entries it contributed.
    pub entries: usize,
}

/// A parsed, immutable set of list entries with the hash of what it was loaded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListSnapshot {
    entries: Vec<Entry>,
    sources: Vec<SourceInfo>,
    content_sha256: [u8; 32],
}

impl ListSnapshot {
    /// Parses every file (format detected from content); fails whole if any file fails.
    pub fn load(files: &[ListFile]) -> Result<ListSnapshot, ListError> {
        if files.is_empty() || files.len() > LIST_FILES_MAX {
            return Err(ListError::Snapshot {
                reason: format!(
                    "{} files; between 1 and {LIST_FILES_MAX} needed",
                    files.len()
                ),
            });
        }
        let mut entries = Vec::new();
        let mut sources = Vec::new();
        let mut hasher = Sha256::new();
        for file in files {
            let (format, parsed) = formats::parse_file(&file.label, &file.bytes)?;
            let file_hash: [u8; 32] = Sha256::digest(&file.bytes).into();
            // The snapshot hash covers formats and file contents, not labels: the same files
            // loaded from another path are the same snapshot.
            hasher.update(format.list_name().as_bytes());
            hasher.update(file_hash);
            sources.push(SourceInfo {
                label: file.label.clone(),
                format,
                sha256: hex::encode(file_hash),
                entries: parsed.len(),
            });
            entries.extend(parsed);
            if entries.len() > ENTRIES_MAX {
                return Err(ListError::Snapshot {
                    reason: format!("more than {ENTRIES_MAX} entries"),
                });
            }
        }
        Ok(ListSnapshot {
            entries,
            sources,
            content_sha256: hasher.finalize().into(),
        })
    }

    /// A snapshot made from entries directly (generated lists for benchmarks and tests); its
    /// hash covers every entry's content hash.
    pub fn from_entries(label: &str, entries: Vec<Entry>) -> Result<ListSnapshot, ListError> {
        if entries.is_empty() || entries.len() > ENTRIES_MAX {
            return Err(ListError::Snapshot {
                reason: format!(
                    "{} entries; between 1 and {ENTRIES_MAX} needed",
                    entries.len()
                ),
            });
        }
        let mut hasher = Sha256::new();
        for entry in &entries {
            hasher.update(entry.content_sha256());
        }
        let content_sha256: [u8; 32] = hasher.finalize().into();
        Ok(ListSnapshot {
            sources: vec![SourceInfo {
                label: label.to_owned(),
                format: ListFormat::UnXml,
                sha256: hex::encode(content_sha256),
                entries: entries.len(),
            }],
            entries,
            content_sha256,
        })
    }

    /// The entries, in file order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The files it was loaded from.
    pub fn sources(&self) -> &[SourceInfo] {
        &self.sources
    }

    /// SHA-256 (hex) of the snapshot's content.
    pub fn content_sha256(&self) -> String {
        hex::encode(self.content_sha256)
    }
}

/// Screening settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScreenConfig {
    /// Score (0..=1000) at or above which a hit alerts.
    pub alert_threshold: u16,
}

impl Default for ScreenConfig {
    fn default() -> Self {
        ScreenConfig {
            alert_threshold: ALERT_THRESHOLD_DEFAULT,
        }
    }
}

/// A snapshot with its index and id: what a screening runs against.
#[derive(Debug)]
pub struct PreparedSnapshot {
    snapshot: ListSnapshot,
    index: Index,
    entry_hashes: Vec<String>,
    id: SnapshotId,
}

impl PreparedSnapshot {
    fn new(snapshot: ListSnapshot, version: u64, encoder: &DoubleMetaphone) -> PreparedSnapshot {
        let index = Index::build(&snapshot.entries, encoder);
        let entry_hashes = snapshot
            .entries
            .iter()
            .map(|e| hex::encode(e.content_sha256()))
            .collect();
        let id = SnapshotId {
            version,
            content_sha256: snapshot.content_sha256(),
        };
        PreparedSnapshot {
            snapshot,
            index,
            entry_hashes,
            id,
        }
    }

    /// The snapshot's id.
    pub fn id(&self) -> &SnapshotId {
        &self.id
    }

    /// The snapshot.
    pub fn snapshot(&self) -> &ListSnapshot {
        &self.snapshot
    }
}

/// Screens queries against the current snapshot; replaced atomically by a successful load.
#[derive(Debug)]
pub struct Screener {
    current: RwLock<Arc<PreparedSnapshot>>,
    config: ScreenConfig,
    encoder: DoubleMetaphone,
}

impl Screener {
    /// A screener over its first snapshot (version 1).
    pub fn new(snapshot: ListSnapshot, config: ScreenConfig) -> Screener {
        let encoder = encoder();
        let prepared = PreparedSnapshot::new(snapshot, 1, &encoder);
        Screener {
            current: RwLock::new(Arc::new(prepared)),
            config,
            encoder,
        }
    }

    /// Loads list files into a new screener.
    pub fn from_files(files: &[ListFile], config: ScreenConfig) -> Result<Screener, ListError> {
        Ok(Screener::new(ListSnapshot::load(files)?, config))
    }

    /// The snapshot in force.
    pub fn current(&self) -> Arc<PreparedSnapshot> {
        // A poisoned lock only means a writer panicked after the swap; the Arc is intact.
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Id of the snapshot in force.
    pub fn snapshot_id(&self) -> SnapshotId {
        self.current().id.clone()
    }

    /// The settings.
    pub fn config(&self) -> ScreenConfig {
        self.config
    }

    /// Makes `snapshot` the one in force, with the next version number.
    pub fn replace(&self, snapshot: ListSnapshot) -> SnapshotId {
        let next = self.current().id.version + 1;
        // Indexing happens before taking the write lock, so screening never waits for it.
        let prepared = Arc::new(PreparedSnapshot::new(snapshot, next, &self.encoder));
        let id = prepared.id.clone();
        let mut slot = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *slot = prepared;
        id
    }

    /// Parses `files` and, only if all of them parse, puts them in force. On error the previous
    /// snapshot stays in force and the error names the file and line that failed.
    pub fn load(&self, files: &[ListFile]) -> Result<SnapshotId, ListError> {
        let snapshot = ListSnapshot::load(files)?;
        Ok(self.replace(snapshot))
    }

    /// Screens one query against the snapshot in force.
    pub fn screen(&self, query: &Query) -> ScreeningResult {
        let prepared = self.current();
        screen_prepared(&prepared, query, self.config, &self.encoder)
    }
}

/// Scores two names directly (0..=1000) with the explanation; what `rempart aml match` prints.
pub fn match_names(a: &str, b: &str) -> score::NameScore {
    let encoder = encoder();
    score_names(&normalize_name(a, &encoder), &normalize_name(b, &encoder))
}

/// Score changes from date of birth, nationality and gender, when both sides have them.
fn adjustments(query: &Query, entry: &Entry) -> (i32, Vec<String>) {
    let mut total = 0;
    let mut why = Vec::new();
    if let Some(dob) = query.date_of_birth
        && !entry.dates_of_birth.is_empty()
    {
        let exact = entry.dates_of_birth.iter().any(|d| {
            d.year == dob.year
                && d.month.is_some()
                && d.month == dob.month
                && d.day.is_some()
                && d.day == dob.day
        });
        let compatible = entry.dates_of_birth.iter().any(|d| {
            d.year == dob.year && (d.month.is_none() || dob.month.is_none() || d.month == dob.month)
        });
        let near = entry
            .dates_of_birth
            .iter()
            .any(|d| d.year.abs_diff(dob.year) <= 1);
        let (delta, text) = if exact {
            (50, format!("date of birth {dob} equal +50"))
        } else if compatible {
            (25, format!("year of birth {} equal +25", dob.year))
        } else if near {
            (0, format!("year of birth {} within a year +0", dob.year))
        } else {
            (-150, format!("date of birth {dob} differs -150"))
        };
        total += delta;
        why.push(text);
    }
    if let Some(key) = query.nationality.as_deref().and_then(country_key)
        && !entry.nationalities.is_empty()
    {
        if entry.nationalities.contains(&key) {
            total += 20;
            why.push(format!("nationality {key} equal +20"));
        } else {
            total -= 50;
            why.push(format!("nationality {key} differs -50"));
        }
    }
    if let (Some(ours), Some(theirs)) = (query.gender, entry.gender)
        && ours != theirs
    {
        total -= 150;
        why.push("gender differs -150".to_owned());
    }
    (total, why)
}

fn screen_prepared(
    prepared: &PreparedSnapshot,
    query: &Query,
    config: ScreenConfig,
    encoder: &DoubleMetaphone,
) -> ScreeningResult {
    let entries = &prepared.snapshot.entries;
    let mut notes = Vec::new();
    let mut best: Vec<Option<Hit>> = Vec::new();
    let mut by_entry: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    let mut offer = |entry: u32, hit: Hit, best: &mut Vec<Option<Hit>>| match by_entry.get(&entry) {
        Some(&slot) => {
            let keep = best[slot].as_ref().is_none_or(|old| {
                (hit.basis == HitBasis::Identifier && old.basis != HitBasis::Identifier)
                    || (hit.basis == old.basis && hit.score > old.score)
            });
            if keep {
                best[slot] = Some(hit);
            }
        }
        None => {
            by_entry.insert(entry, best.len());
            best.push(Some(hit));
        }
    };

    for value in query.identifiers.iter().take(QUERY_IDENTIFIERS_MAX) {
        for (entry_index, what) in prepared.index.identifier_matches(value) {
            let entry = &entries[entry_index as usize];
            let hit = Hit {
                list: entry.list.clone(),
                entity_id: entry.entity_id.clone(),
                entry_sha256: prepared.entry_hashes[entry_index as usize].clone(),
                name: entry.primary_name().to_owned(),
                score: 1000,
                basis: HitBasis::Identifier,
                why: format!("{what} equals the query's identifier"),
                disposition: None,
            };
            offer(entry_index, hit, &mut best);
        }
    }

    let norm = normalize_name(&query.full_name, encoder);
    if norm.fallback {
        notes.push(format!(
            "name could not be transliterated; original tokens kept: {}",
            norm.joined()
        ));
    }
    if !norm.tokens.is_empty() {
        for candidate in prepared.index.candidates(&norm) {
            let indexed = &prepared.index.names[candidate as usize];
            if score::score_names_with(&norm, &indexed.norm, false).score < REPORT_SCORE_MIN {
                continue;
            }
            let name_score = score_names(&norm, &indexed.norm);
            let entry = &entries[indexed.entry as usize];
            let (delta, reasons) = adjustments(query, entry);
            let score = (i32::from(name_score.score) + delta).clamp(0, 1000) as u16;
            if score < REPORT_SCORE_MIN && delta >= 0 {
                continue;
            }
            let listed = &entry.names[indexed.name as usize];
            let mut why = format!("name {}: {}", name_score.score, name_score.why);
            for reason in reasons {
                why.push_str("; ");
                why.push_str(&reason);
            }
            let hit = Hit {
                list: entry.list.clone(),
                entity_id: entry.entity_id.clone(),
                entry_sha256: prepared.entry_hashes[indexed.entry as usize].clone(),
                name: listed.full.clone(),
                score,
                basis: HitBasis::Name,
                why,
                disposition: None,
            };
            offer(indexed.entry, hit, &mut best);
        }
    }
    let mut hits: Vec<Hit> = best.into_iter().flatten().collect();
    hits.sort_by(|a, b| {
        b.score
            .cmp(&a.score)
            .then(a.list.cmp(&b.list))
            .then(a.entity_id.cmp(&b.entity_id))
    });
    hits.truncate(SCREEN_HITS_MAX);
    let mut result = ScreeningResult {
        snapshot: prepared.id.clone(),
        alert: false,
        threshold: config.alert_threshold,
        hits,
        notes,
    };
    result.recompute_alert();
    result
}
