//! OFAC SDN list in its CSV form (`SDN.CSV`): headerless rows of 12 columns (ent_num,
//! SDN_Name, SDN_Type, Program, Title, Call_Sign, Vess_type, Tonnage, GRT, Vess_flag,
//! Vess_owner, Remarks), `-0-` for an empty field, and a trailing `0x1A` end-of-file byte.
//! Everything beyond the name lives in Remarks, `;`-separated: `DOB 28 Apr 1937`,
//! `nationality Iraq`, `Gender Male`, `Passport 123 (Iraq)`, `National ID No. …`,
//! `Digital Currency Address - XBT …`, `a.k.a. 'NAME'` (aliases), `IMO 1234567`.

use super::super::country::country_key;
use super::super::limits::FIELD_CHARS_MAX;
use super::super::model::{Entry, Gender, Identifier, NameKind, PartialDate, SubjectKind};
use super::{Failure, push_unique};

/// Columns of an SDN.CSV row.
const COLUMNS: usize = 12;

/// Remark prefixes that introduce a document number, with the kind recorded.
const DOCUMENT_PREFIXES: &[(&str, &str)] = &[
    ("passport", "Passport"),
    ("national id no.", "National ID"),
    ("national id", "National ID"),
    ("cedula no.", "Cedula"),
    ("registration id", "Registration ID"),
    ("registration number", "Registration number"),
    ("tax id no.", "Tax ID"),
    ("ssn", "SSN"),
    ("driver's license no.", "Driver's licence"),
    ("identification number", "Identification number"),
    ("business registration number", "Business registration"),
    ("company number", "Company number"),
    ("imo", "IMO"),
    ("vessel registration identification imo", "IMO"),
    ("mmsi", "MMSI"),
    ("swift/bic", "SWIFT/BIC"),
];

fn field(value: &str) -> &str {
    let value = value.trim();
    if value == "-0-" { "" } else { value }
}

/// Parses the whole file or fails.
pub fn parse(text: &str) -> Result<Vec<Entry>, Failure> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut entries = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
            Failure::at_line(line, format!("CSV: {e}"))
        })?;
        let line = record.position().map(|p| p.line() as usize).unwrap_or(0);
        let first = record.get(0).unwrap_or("").trim();
        if record.len() == 1 && (first.is_empty() || first == "\u{1A}") {
            continue;
        }
        if record.len() != COLUMNS {
            return Err(Failure::at_line(
                line,
                format!("{} columns, {COLUMNS} expected", record.len()),
            ));
        }
        if record.iter().any(|f| f.len() > FIELD_CHARS_MAX) {
            return Err(Failure::at_line(line, "field too long"));
        }
        if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Failure::at_line(
                line,
                format!("ent_num {first:?} is not a number"),
            ));
        }
        let name = field(&record[1]);
        if name.is_empty() {
            return Err(Failure::at_line(line, "SDN_Name is empty"));
        }
        let kind = match field(&record[2]).to_ascii_lowercase().as_str() {
            "individual" => SubjectKind::Individual,
            "vessel" => SubjectKind::Vessel,
            "aircraft" => SubjectKind::Aircraft,
            _ => SubjectKind::Entity,
        };
        let mut entry = Entry::new("OFAC-SDN", first, kind);
        entry.add_name(name, NameKind::Primary);
        read_remarks(field(&record[11]), &mut entry);
        entries.push(entry);
    }
    Ok(entries)
}

/// Reads the structured parts of the Remarks column into the entry.
pub fn read_remarks(remarks: &str, entry: &mut Entry) {
    for part in remarks.split(';') {
        let part = part.trim().trim_end_matches('.');
        let lower = part.to_ascii_lowercase();
        if let Some(alias) = quoted_alias(part, &lower) {
            entry.add_name(&alias.0, alias.1);
        } else if let Some(rest) = lower.strip_prefix("dob ") {
            let rest = rest
                .trim_start_matches("circa ")
                .trim_start_matches("alt. ");
            // "1960 to 1962": the first year stands for the range's start.
            let first = rest.split(" to ").next().unwrap_or(rest);
            if let Some(date) = PartialDate::parse(first) {
                entry.dates_of_birth.push(date);
            }
        } else if let Some(rest) = lower
            .strip_prefix("nationality ")
            .or_else(|| lower.strip_prefix("citizen "))
            .or_else(|| lower.strip_prefix("alt. nationality "))
            .or_else(|| lower.strip_prefix("alt. citizen "))
        {
            if let Some(key) = country_key(rest) {
                push_unique(&mut entry.nationalities, &key);
            }
        } else if let Some(rest) = lower.strip_prefix("gender ") {
            entry.gender = Gender::parse(rest);
        } else if lower.starts_with("digital currency address") {
            if let Some(address) = part.split_whitespace().last() {
                push_unique(&mut entry.crypto_addresses, address);
            }
        } else if let Some((prefix, kind)) = DOCUMENT_PREFIXES
            .iter()
            .filter(|(prefix, _)| lower.starts_with(&format!("{prefix} ")))
            .max_by_key(|(prefix, _)| prefix.len())
        {
            let rest = part[prefix.len()..].trim();
            let number = rest.split(" (").next().unwrap_or(rest).trim();
            if !number.is_empty() {
                entry.identifiers.push(Identifier {
                    kind: (*kind).to_owned(),
                    value: number.to_owned(),
                });
            }
        }
    }
}

/// `a.k.a. 'NAME'`, `f.k.a. 'NAME'`, `n.k.a. 'NAME'`; a `(weak)` marker makes it weak.
fn quoted_alias(part: &str, lower: &str) -> Option<(String, NameKind)> {
    let prefix = ["a.k.a.", "f.k.a.", "n.k.a."]
        .iter()
        .find(|p| lower.starts_with(*p))?;
    let rest = part[prefix.len()..].trim();
    let rest = rest.trim_start_matches(['\'', '"']);
    let end = rest.rfind(['\'', '"']).unwrap_or(rest.len());
    let name = rest[..end].trim();
    let kind = if lower.contains("weak") {
        NameKind::WeakAlias
    } else {
        NameKind::Alias
    };
    (!name.is_empty()).then(|| (name.to_owned(), kind))
}
