//! OFAC SDN Advanced XML (`SDN_ADVANCED.XML`, root `Sanctions`): reference value sets give
//! meaning to numeric ids (feature types, countries, party types, document types); `Locations`
//! hold countries; `IDRegDocuments` hold document numbers by identity; `DistinctParties` hold
//! each party's `Profile` with its `Identity/Alias/DocumentedName/DocumentedNamePart/
//! NamePartValue` names and `Feature`s (birthdate, nationality, gender, digital currency
//! address). The entity id is the DistinctParty's `FixedRef`. Records are streamed, and tied
//! together once the file has been read.

use std::collections::HashMap;

use super::super::country::country_key;
use super::super::model::{Entry, Gender, Identifier, NameKind, PartialDate, SubjectKind};
use super::xml::{Node, stream_records};
use super::{Failure, push_unique};

#[derive(Default)]
struct Reference {
    feature_types: HashMap<String, String>,
    details: HashMap<String, String>,
    document_types: HashMap<String, String>,
    countries: HashMap<String, String>,
    party_subtypes: HashMap<String, String>,
    party_types: HashMap<String, String>,
}

/// Parses the whole file or fails.
pub fn parse(text: &str) -> Result<Vec<Entry>, Failure> {
    let mut reference = Reference::default();
    let mut locations: HashMap<String, String> = HashMap::new();
    let mut documents: Vec<(String, Identifier)> = Vec::new();
    let mut parties: Vec<Node> = Vec::new();
    let root = stream_records(
        text,
        |depth, name| {
            (depth == 1 && name == "ReferenceValueSets")
                || (depth == 2 && matches!(name, "Location" | "IDRegDocument" | "DistinctParty"))
        },
        |node| {
            match node.name.as_str() {
                "ReferenceValueSets" => read_reference(&node, &mut reference),
                "Location" => {
                    let id = node.attr_or_empty("ID").to_owned();
                    if let Some(country) = node.child("LocationCountry") {
                        locations.insert(id, country.attr_or_empty("CountryID").to_owned());
                    }
                }
                "IDRegDocument" => {
                    let number = node.child_text("IDRegistrationNo");
                    let identity = node.attr_or_empty("IdentityID");
                    if identity.is_empty() {
                        return Err(format!(
                            "<IDRegDocument> at line {} has no IdentityID",
                            node.line
                        ));
                    }
                    if !number.is_empty() {
                        documents.push((
                            identity.to_owned(),
                            Identifier {
                                kind: node.attr_or_empty("IDRegDocTypeID").to_owned(),
                                value: number.to_owned(),
                            },
                        ));
                    }
                }
                _ => parties.push(node),
            }
            Ok(())
        },
    )?;
    if root.name != "Sanctions" {
        return Err(Failure::at_line(
            1,
            format!("root <{}> is not Sanctions", root.name),
        ));
    }
    let mut entries = Vec::with_capacity(parties.len());
    let mut by_identity: HashMap<String, usize> = HashMap::new();
    for party in &parties {
        let (entry, identities) =
            entry_of(party, &reference, &locations).map_err(|reason| Failure {
                location: format!("line {}", party.line),
                reason,
            })?;
        for identity in identities {
            by_identity.insert(identity, entries.len());
        }
        entries.push(entry);
    }
    for (identity, mut document) in documents {
        if let Some(&index) = by_identity.get(&identity) {
            if let Some(kind) = reference.document_types.get(&document.kind) {
                document.kind = kind.clone();
            }
            entries[index].identifiers.push(document);
        }
    }
    Ok(entries)
}

fn read_reference(node: &Node, reference: &mut Reference) {
    for set in &node.children {
        for value in &set.children {
            let id = value.attr_or_empty("ID").to_owned();
            let text = value.text.trim().to_owned();
            match value.name.as_str() {
                "FeatureType" => {
                    reference.feature_types.insert(id, text);
                }
                "DetailReference" => {
                    reference.details.insert(id, text);
                }
                "IDRegDocType" => {
                    reference.document_types.insert(id, text);
                }
                "Country" => {
                    let iso2 = value.attr_or_empty("ISO2");
                    reference.countries.insert(
                        id,
                        if iso2.is_empty() {
                            text
                        } else {
                            iso2.to_owned()
                        },
                    );
                }
                "PartySubType" => {
                    reference
                        .party_subtypes
                        .insert(id, value.attr_or_empty("PartyTypeID").to_owned());
                }
                "PartyType" => {
                    reference.party_types.insert(id, text);
                }
                _ => {}
            }
        }
    }
}

fn date_of(period: &Node) -> Option<PartialDate> {
    let from = period.child("Start")?.child("From")?;
    let year = from.child_text("Year");
    let month = from.child_text("Month");
    let day = from.child_text("Day");
    let text = match (month.is_empty(), day.is_empty()) {
        (false, false) => format!("{year}-{month:0>2}-{day:0>2}"),
        (false, true) => format!("{year}-{month:0>2}"),
        _ => year.to_owned(),
    };
    PartialDate::parse(&text)
}

fn entry_of(
    party: &Node,
    reference: &Reference,
    locations: &HashMap<String, String>,
) -> Result<(Entry, Vec<String>), String> {
    let where_ = |what: &str| format!("<DistinctParty> at line {}: {what}", party.line);
    let id = party.attr_or_empty("FixedRef");
    if id.is_empty() {
        return Err(where_("no FixedRef"));
    }
    let profile = party.child("Profile").ok_or_else(|| where_("no Profile"))?;
    let party_type = reference
        .party_subtypes
        .get(profile.attr_or_empty("PartySubTypeID"))
        .and_then(|t| reference.party_types.get(t))
        .map(|t| t.to_ascii_lowercase())
        .unwrap_or_default();
    let kind = match party_type.as_str() {
        "individual" => SubjectKind::Individual,
        "entity" => SubjectKind::Entity,
        "vessel" => SubjectKind::Vessel,
        "aircraft" => SubjectKind::Aircraft,
        _ => SubjectKind::Unknown,
    };
    let mut entry = Entry::new("OFAC-SDN", id, kind);
    let mut identities = Vec::new();
    let mut names: Vec<(bool, NameKind, String)> = Vec::new();
    for identity in profile.children_named("Identity") {
        identities.push(identity.attr_or_empty("ID").to_owned());
        for alias in identity.children_named("Alias") {
            let primary = alias.attr_or_empty("Primary") == "true";
            let kind = if primary {
                NameKind::Primary
            } else if alias.attr_or_empty("LowQuality") == "true" {
                NameKind::WeakAlias
            } else {
                NameKind::Alias
            };
            for documented in alias.children_named("DocumentedName") {
                let mut parts = Vec::new();
                documented.descendants("NamePartValue", &mut parts);
                let full = parts
                    .iter()
                    .map(|p| p.text.trim())
                    .filter(|p| !p.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
                names.push((primary, kind, full));
            }
        }
    }
    names.sort_by_key(|(primary, _, _)| !primary);
    for (_, kind, full) in names {
        entry.add_name(&full, kind);
    }
    for feature in profile.children_named("Feature") {
        let feature_type = reference
            .feature_types
            .get(feature.attr_or_empty("FeatureTypeID"))
            .map(|t| t.to_ascii_lowercase())
            .unwrap_or_default();
        for version in feature.children_named("FeatureVersion") {
            if feature_type == "birthdate" {
                if let Some(date) = version.child("DatePeriod").and_then(date_of) {
                    entry.dates_of_birth.push(date);
                }
            } else if feature_type.contains("nationality") || feature_type.contains("citizenship") {
                for location in version.children_named("VersionLocation") {
                    let country = locations
                        .get(location.attr_or_empty("LocationID"))
                        .and_then(|c| reference.countries.get(c));
                    if let Some(key) = country.and_then(|c| country_key(c)) {
                        push_unique(&mut entry.nationalities, &key);
                    }
                }
            } else if feature_type == "gender" {
                for detail in version.children_named("VersionDetail") {
                    let text = reference
                        .details
                        .get(detail.attr_or_empty("DetailReferenceID"))
                        .map(String::as_str)
                        .unwrap_or(detail.text.trim());
                    entry.gender = entry.gender.or(Gender::parse(text));
                }
            } else if feature_type.starts_with("digital currency address") {
                for detail in version.children_named("VersionDetail") {
                    push_unique(&mut entry.crypto_addresses, detail.text.trim());
                }
            }
        }
    }
    if entry.names.is_empty() {
        return Err(where_("no DocumentedName"));
    }
    Ok((entry, identities))
}
