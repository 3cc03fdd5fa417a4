//! List file formats: detection from the content and one parser per official format. A parser
//! either returns every entry of the file or fails whole, naming the line or element that was
//! wrong; it never returns part of a file.
//!
//! # Layout
//! - `xml`: the streaming record walker the XML parsers share.
//! - `un`: UN Security Council Consolidated List XML.
//! - `eu`: EU Financial Sanctions Files XML (v1.1).
//! - `ofac_csv`: OFAC SDN CSV (`SDN.CSV`, headerless, remarks carry aliases, dates, ids).
//! - `ofac_xml`: OFAC SDN Advanced XML (`SDN_ADVANCED.XML`).
//! - `uk`: UK Sanctions List XML (FCDO).

pub mod eu;
pub mod ofac_csv;
pub mod ofac_xml;
pub mod uk;
pub mod un;
pub mod xml;

use serde::Serialize;

use super::limits::{ENTRY_FIELDS_MAX, ENTRY_NAMES_MAX, LIST_BYTES_MAX};
use super::model::Entry;

/// The official formats understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ListFormat {
    /// UN Security Council Consolidated List XML (`CONSOLIDATED_LIST`).
    UnXml,
    /// EU Financial Sanctions Files XML v1.1 (`export` in the FSF namespace).
    EuXml,
    /// OFAC SDN CSV (headerless, 12 columns).
    OfacSdnCsv,
    /// OFAC SDN Advanced XML (`Sanctions`).
    OfacAdvancedXml,
    /// UK Sanctions List XML (`Designations`).
    UkXml,
}

impl ListFormat {
    /// The list name entries of this format carry.
    pub fn list_name(self) -> &'static str {
        match self {
            ListFormat::UnXml => "UN",
            ListFormat::EuXml => "EU",
            ListFormat::OfacSdnCsv | ListFormat::OfacAdvancedXml => "OFAC-SDN",
            ListFormat::UkXml => "UK",
        }
    }
}

impl std::fmt::Display for ListFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            ListFormat::UnXml => "UN consolidated XML",
            ListFormat::EuXml => "EU FSF XML",
            ListFormat::OfacSdnCsv => "OFAC SDN CSV",
            ListFormat::OfacAdvancedXml => "OFAC advanced XML",
            ListFormat::UkXml => "UK sanctions list XML",
        };
        f.write_str(name)
    }
}

/// Why a list file (and so the whole load) was refused. The screener keeps its previous snapshot.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListError {
    /// The content matches none of the supported formats.
    #[error("{label}: not a supported list format ({reason})")]
    UnknownFormat {
        /// File label (path).
        label: String,
        /// What was seen.
        reason: String,
    },
    /// The file is in a known format but broken; `location` names the line or element.
    #[error("{label}: malformed {format} at {location}: {reason}")]
    Malformed {
        /// File label (path).
        label: String,
        /// Detected format.
        format: ListFormat,
        /// "line N" and/or the element or record.
        location: String,
        /// What was wrong.
        reason: String,
    },
    /// The file exceeds `LIST_BYTES_MAX`.
    #[error("{label}: {bytes} bytes is larger than {LIST_BYTES_MAX}")]
    TooLarge {
        /// File label (path).
        label: String,
        /// Its size.
        bytes: usize,
    },
    /// The snapshot would be empty or too big, or has too many files.
    #[error("snapshot refused: {reason}")]
    Snapshot {
        /// What was wrong.
        reason: String,
    },
}

/// A parse failure before it is tied to a file label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// "line N" and/or element.
    pub location: String,
    /// What was wrong.
    pub reason: String,
}

impl Failure {
    /// A failure at a line.
    pub fn at_line(line: usize, reason: impl Into<String>) -> Failure {
        Failure {
            location: format!("line {line}"),
            reason: reason.into(),
        }
    }
}

impl From<xml::XmlFailure> for Failure {
    fn from(failure: xml::XmlFailure) -> Failure {
        Failure::at_line(failure.line, failure.reason)
    }
}

/// Detects the format from the content (root element, or the shape of the first CSV row).
pub fn detect(text: &str) -> Result<ListFormat, String> {
    let body = text.trim_start_matches('\u{FEFF}').trim_start();
    if body.starts_with('<') {
        let root = xml::root_of(body).ok_or("XML without a readable root element")?;
        return match root.name.as_str() {
            "CONSOLIDATED_LIST" => Ok(ListFormat::UnXml),
            "export" => Ok(ListFormat::EuXml),
            "Sanctions" => Ok(ListFormat::OfacAdvancedXml),
            "Designations" => Ok(ListFormat::UkXml),
            other => Err(format!("unknown XML root <{other}>")),
        };
    }
    let first_line = body.lines().next().unwrap_or("");
    let first_field = first_line.split(',').next().unwrap_or("").trim();
    if !first_field.is_empty() && first_field.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(ListFormat::OfacSdnCsv);
    }
    Err(format!(
        "neither XML nor an OFAC SDN CSV row: {:?}",
        first_line.chars().take(60).collect::<String>()
    ))
}

/// Decodes a file: UTF-8 (with or without BOM); OFAC's CSV is also accepted in Latin-1.
pub fn decode(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.trim_start_matches('\u{FEFF}').to_owned(),
        Err(_) => bytes.iter().map(|b| char::from(*b)).collect(),
    }
}

/// Parses one file: detects its format, then parses it whole or fails.
pub fn parse_file(label: &str, bytes: &[u8]) -> Result<(ListFormat, Vec<Entry>), ListError> {
    if bytes.len() > LIST_BYTES_MAX {
        return Err(ListError::TooLarge {
            label: label.to_owned(),
            bytes: bytes.len(),
        });
    }
    let text = decode(bytes);
    let format = detect(&text).map_err(|reason| ListError::UnknownFormat {
        label: label.to_owned(),
        reason,
    })?;
    let parsed = match format {
        ListFormat::UnXml => un::parse(&text),
        ListFormat::EuXml => eu::parse(&text),
        ListFormat::OfacSdnCsv => ofac_csv::parse(&text),
        ListFormat::OfacAdvancedXml => ofac_xml::parse(&text),
        ListFormat::UkXml => uk::parse(&text),
    };
    let malformed = |failure: Failure| ListError::Malformed {
        label: label.to_owned(),
        format,
        location: failure.location,
        reason: failure.reason,
    };
    let entries = parsed.map_err(malformed)?;
    for entry in &entries {
        let too_many = entry.names.len() > ENTRY_NAMES_MAX
            || entry.identifiers.len() > ENTRY_FIELDS_MAX
            || entry.dates_of_birth.len() > ENTRY_FIELDS_MAX
            || entry.nationalities.len() > ENTRY_FIELDS_MAX
            || entry.crypto_addresses.len() > ENTRY_FIELDS_MAX;
        if too_many {
            return Err(malformed(Failure {
                location: format!("entry {}", entry.entity_id),
                reason: "more names, dates or identifiers than the limits allow".to_owned(),
            }));
        }
        if entry.names.is_empty() {
            return Err(malformed(Failure {
                location: format!("entry {}", entry.entity_id),
                reason: "entry without any name".to_owned(),
            }));
        }
    }
    if entries.is_empty() {
        return Err(malformed(Failure {
            location: "whole file".to_owned(),
            reason: "no entries".to_owned(),
        }));
    }
    Ok((format, entries))
}

/// Pushes a value unless blank or already present.
pub(crate) fn push_unique(values: &mut Vec<String>, value: &str) {
    let value = value.trim();
    if !value.is_empty() && !values.iter().any(|v| v == value) {
        values.push(value.to_owned());
    }
}
