//! The data the screening module works on: list entries as parsed from the official files, the
//! query a customer is screened with, and the result (hits with explanations) handed to the gate.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// What kind of subject a list entry designates; names of entities get legal-form handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    /// A natural person.
    Individual,
    /// A company, organisation or group.
    Entity,
    /// A ship (OFAC lists vessels).
    Vessel,
    /// An aircraft.
    Aircraft,
    /// The list did not say.
    Unknown,
}

/// How a name on an entry relates to the subject; weak aliases are still screened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NameKind {
    /// The name the list designates the subject under.
    Primary,
    /// A strong ("good quality") alias.
    Alias,
    /// A low-quality alias (UN "Low", OFAC "weak a.k.a.", EU `strong="false"`).
    WeakAlias,
    /// The name in its original script as printed on the list.
    OriginalScript,
}

/// Gender, as lists and customer records state it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Gender {
    /// Male.
    Male,
    /// Female.
    Female,
}

impl Gender {
    /// Reads the spellings lists use ("M", "Male", "MALE", "f", …); anything else is unknown.
    pub fn parse(text: &str) -> Option<Gender> {
        match text.trim().to_ascii_lowercase().as_str() {
            "m" | "male" | "man" => Some(Gender::Male),
            "f" | "female" | "woman" => Some(Gender::Female),
            _ => None,
        }
    }
}

/// A date that lists often give only in part (a year, or a year and month).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PartialDate {
    /// Calendar year.
    pub year: u16,
    /// Month 1..=12 when known.
    pub month: Option<u8>,
    /// Day 1..=31 when known.
    pub day: Option<u8>,
}

impl PartialDate {
    /// Parses `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, `DD/MM/YYYY`, `DD.MM.YYYY` and `DD Mon YYYY`
    /// (the OFAC remarks style); `None` for anything else.
    pub fn parse(text: &str) -> Option<PartialDate> {
        let text = text.trim();
        let valid = |year: u16, month: Option<u8>, day: Option<u8>| {
            let ok_year = (1800..=2200).contains(&year);
            let ok_month = month.is_none_or(|m| (1..=12).contains(&m));
            let ok_day = day.is_none_or(|d| (1..=31).contains(&d));
            (ok_year && ok_month && ok_day).then_some(PartialDate { year, month, day })
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        // ISO forms, possibly followed by a time or zone ("1964-07-17T00:00:00").
        let iso = text.split(['T', ' ']).next().unwrap_or("");
        let parts: Vec<&str> = iso.split('-').collect();
        if parts.iter().all(|p| digits(p)) && parts[0].len() == 4 {
            let year = parts[0].parse().ok()?;
            return match parts.len() {
                1 => valid(year, None, None),
                2 => valid(year, Some(parts[1].parse().ok()?), None),
                3 => valid(
                    year,
                    Some(parts[1].parse().ok()?),
                    Some(parts[2].parse().ok()?),
                ),
                _ => None,
            };
        }
        for separator in ['/', '.'] {
            let parts: Vec<&str> = text.split(separator).collect();
            if parts.len() == 3 && parts.iter().all(|p| digits(p)) && parts[2].len() == 4 {
                // A leading 00 means "day/month unknown" in the UK list.
                let day: u8 = parts[0].parse().ok()?;
                let month: u8 = parts[1].parse().ok()?;
                return valid(
                    parts[2].parse().ok()?,
                    (month != 0).then_some(month),
                    (day != 0).then_some(day),
                );
            }
        }
        let words: Vec<&str> = text.split_whitespace().collect();
        let month_of = |w: &str| {
            const MONTHS: [&str; 12] = [
                "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
            ];
            let w = w.to_ascii_lowercase();
            MONTHS
                .iter()
                .position(|m| w.starts_with(m))
                .map(|i| i as u8 + 1)
        };
        match words.as_slice() {
            [d, m, y] if digits(d) && digits(y) && y.len() == 4 => {
                valid(y.parse().ok()?, Some(month_of(m)?), Some(d.parse().ok()?))
            }
            [m, y] if digits(y) && y.len() == 4 => valid(y.parse().ok()?, Some(month_of(m)?), None),
            _ => None,
        }
    }
}

impl std::fmt::Display for PartialDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}", self.year)?;
        if let Some(month) = self.month {
            write!(f, "-{month:02}")?;
            if let Some(day) = self.day {
                write!(f, "-{day:02}")?;
            }
        }
        Ok(())
    }
}

/// A name printed on a list entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryName {
    /// The name as the list prints it (whole name, parts joined by spaces).
    pub full: String,
    /// Primary name, alias, weak alias, original script.
    pub kind: NameKind,
}

/// A document or registration number printed on a list entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identifier {
    /// What the list calls it ("Passport", "National Identification Number", "IMO", …).
    pub kind: String,
    /// The number as printed.
    pub value: String,
}

/// One designated subject of one list, with everything screening compares against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Which list ("UN", "EU", "OFAC-SDN", "UK").
    pub list: String,
    /// The list's own stable id for the subject (UN DATAID, EU logicalId, OFAC ent_num /
    /// FixedRef, UK UniqueID).
    pub entity_id: String,
    /// Individual, entity, vessel…
    pub kind: SubjectKind,
    /// Every name: the primary name first, then aliases and original-script names.
    pub names: Vec<EntryName>,
    /// Dates of birth (several when the list is unsure).
    pub dates_of_birth: Vec<PartialDate>,
    /// Nationalities or citizenships, as country keys (see `country::country_key`).
    pub nationalities: Vec<String>,
    /// Gender when the list gives it.
    pub gender: Option<Gender>,
    /// Passports, national ids, registration numbers, IMO numbers.
    pub identifiers: Vec<Identifier>,
    /// Digital currency addresses listed for the subject.
    pub crypto_addresses: Vec<String>,
}

impl Entry {
    /// A new entry with only its list, id and kind; parsers fill in the rest.
    pub fn new(list: &str, entity_id: &str, kind: SubjectKind) -> Entry {
        Entry {
            list: list.to_owned(),
            entity_id: entity_id.trim().to_owned(),
            kind,
            names: Vec::new(),
            dates_of_birth: Vec::new(),
            nationalities: Vec::new(),
            gender: None,
            identifiers: Vec::new(),
            crypto_addresses: Vec::new(),
        }
    }

    /// Adds a name unless it is blank or already present; whitespace is collapsed.
    pub fn add_name(&mut self, full: &str, kind: NameKind) {
        let full = full.split_whitespace().collect::<Vec<_>>().join(" ");
        if full.is_empty() || self.names.iter().any(|n| n.full == full) {
            return;
        }
        self.names.push(EntryName { full, kind });
    }

    /// The primary name (the first one), or an empty string for an entry without names.
    pub fn primary_name(&self) -> &str {
        self.names.first().map(|n| n.full.as_str()).unwrap_or("")
    }

    /// SHA-256 over a canonical encoding of everything screening uses from this entry. A
    /// false-positive disposition is keyed on it, so any change to the entry re-alerts.
    pub fn content_sha256(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        let mut field = |tag: &str, value: &str| {
            // Length-prefixed fields: no two different entries encode to the same bytes.
            hasher.update((tag.len() as u64).to_be_bytes());
            hasher.update(tag.as_bytes());
            hasher.update((value.len() as u64).to_be_bytes());
            hasher.update(value.as_bytes());
        };
        field("list", &self.list);
        field("id", &self.entity_id);
        field("kind", &format!("{:?}", self.kind));
        for name in &self.names {
            field("name", &format!("{:?}:{}", name.kind, name.full));
        }
        for date in &self.dates_of_birth {
            field("dob", &date.to_string());
        }
        for nationality in &self.nationalities {
            field("nationality", nationality);
        }
        if let Some(gender) = self.gender {
            field("gender", &format!("{gender:?}"));
        }
        for id in &self.identifiers {
            field("identifier", &format!("{}:{}", id.kind, id.value));
        }
        for address in &self.crypto_addresses {
            field("crypto", address);
        }
        hasher.finalize().into()
    }
}

/// What a customer (or counterparty) is screened with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// The full name in any script and order.
    pub full_name: String,
    /// Date of birth (or year only) when known.
    pub date_of_birth: Option<PartialDate>,
    /// Nationality as ISO 3166-1 alpha-2/alpha-3 code or English country name.
    pub nationality: Option<String>,
    /// Gender when known.
    pub gender: Option<Gender>,
    /// Document numbers, registration numbers and crypto addresses, compared exactly (after
    /// removing spaces, dashes and case for document numbers).
    pub identifiers: Vec<String>,
}

impl Query {
    /// A query with just a name.
    pub fn name(full_name: &str) -> Query {
        Query {
            full_name: full_name.to_owned(),
            ..Query::default()
        }
    }
}

/// Which snapshot of the lists a result was computed against.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct SnapshotId {
    /// Monotonic load counter of the `Screener` (1 for the first snapshot).
    pub version: u64,
    /// SHA-256 (hex) over the loaded files' formats, labels and bytes, in load order.
    pub content_sha256: String,
}

/// Why a hit was raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HitBasis {
    /// The name scored at or above the threshold.
    Name,
    /// A document number or crypto address matched exactly.
    Identifier,
}

/// An analyst's decision on a hit for one customer (see `disposition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The customer is the listed subject.
    ConfirmedMatch,
    /// The customer is not the listed subject; does not alert again while the entry is unchanged.
    FalsePositive,
}

/// One list entry that the query resembles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hit {
    /// List of the entry.
    pub list: String,
    /// The list's id of the entry.
    pub entity_id: String,
    /// SHA-256 (hex) of the entry's content, the key of dispositions.
    pub entry_sha256: String,
    /// The listed name (or identifier) that matched best.
    pub name: String,
    /// 0..=1000; at or above the screener's threshold the hit alerts.
    pub score: u16,
    /// Name similarity or identifier equality.
    pub basis: HitBasis,
    /// Which tokens matched how and which adjustments applied.
    pub why: String,
    /// An analyst's decision for this customer on this exact entry content, if any.
    pub disposition: Option<Decision>,
}

/// The outcome of screening one query against one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScreeningResult {
    /// The snapshot the result was computed against.
    pub snapshot: SnapshotId,
    /// True when a hit at or above the threshold is not dismissed as a false positive.
    pub alert: bool,
    /// The threshold in force.
    pub threshold: u16,
    /// Hits, best first, at most `SCREEN_HITS_MAX`; includes hits below the threshold down to
    /// the reporting floor so analysts see near misses.
    pub hits: Vec<Hit>,
    /// Remarks about the query itself (e.g. a name kept unnormalised).
    pub notes: Vec<String>,
}

impl ScreeningResult {
    /// Recomputes `alert` from the hits and their dispositions.
    pub fn recompute_alert(&mut self) {
        self.alert = self
            .hits
            .iter()
            .any(|h| h.score >= self.threshold && h.disposition != Some(Decision::FalsePositive));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_dates_parse_in_the_forms_lists_use() {
        let full = PartialDate {
            year: 1937,
            month: Some(4),
            day: Some(28),
        };
        assert_eq!(PartialDate::parse("1937-04-28"), Some(full));
        assert_eq!(PartialDate::parse("28/04/1937"), Some(full));
        assert_eq!(PartialDate::parse("28.04.1937"), Some(full));
        assert_eq!(PartialDate::parse("28 Apr 1937"), Some(full));
        assert_eq!(PartialDate::parse("1937-04-28T00:00:00"), Some(full));
        assert_eq!(
            PartialDate::parse("00/00/1960"),
            Some(PartialDate {
                year: 1960,
                month: None,
                day: None
            })
        );
        assert_eq!(
            PartialDate::parse("1960").map(|d| d.to_string()),
            Some("1960".into())
        );
        assert_eq!(PartialDate::parse("circa 1960"), None);
        assert_eq!(PartialDate::parse("1937-13-01"), None);
    }

    #[test]
    fn entry_hash_changes_with_content() {
        let mut entry = Entry::new("UN", "1", SubjectKind::Individual);
        entry.add_name("A B", NameKind::Primary);
        let before = entry.content_sha256();
        entry.add_name("A C", NameKind::Alias);
        assert_ne!(before, entry.content_sha256());
    }
}
