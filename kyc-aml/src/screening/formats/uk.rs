//! UK Sanctions List XML (FCDO): `Designations/Designation` records with `UniqueID`,
//! `Names/Name` (`Name1`..`Name6`, `NameType` "Primary Name" or "Alias", `AliasStrength`),
//! `NonLatinNames/NonLatinName/NameNonLatinScript`, `IndividualEntityShip`, and details under
//! `IndividualDetails` / `EntityDetails` / `ShipDetails` (DOBs `dd/mm/yyyy`, nationalities,
//! genders, passport and national identifier numbers, business registration and IMO numbers).
//! Details are found by element name anywhere inside the record, as their nesting varies.

use super::super::country::country_key;
use super::super::model::{Entry, Gender, Identifier, NameKind, PartialDate, SubjectKind};
use super::xml::{Node, stream_records};
use super::{Failure, push_unique};

/// Parses the whole file or fails.
pub fn parse(text: &str) -> Result<Vec<Entry>, Failure> {
    let mut entries = Vec::new();
    let root = stream_records(
        text,
        |depth, name| depth == 1 && name == "Designation",
        |node| {
            entries.push(entry_of(&node)?);
            Ok(())
        },
    )?;
    if root.name != "Designations" {
        return Err(Failure::at_line(
            1,
            format!("root <{}> is not Designations", root.name),
        ));
    }
    Ok(entries)
}

fn texts<'a>(node: &'a Node, name: &str) -> Vec<&'a str> {
    let mut found = Vec::new();
    node.descendants(name, &mut found);
    found
        .into_iter()
        .map(|n| n.text.trim())
        .filter(|t| !t.is_empty())
        .collect()
}

fn entry_of(node: &Node) -> Result<Entry, String> {
    let where_ = |what: &str| format!("<Designation> at line {}: {what}", node.line);
    let id = node.child_text("UniqueID");
    if id.is_empty() {
        return Err(where_("no UniqueID"));
    }
    let kind = match node
        .child_text("IndividualEntityShip")
        .to_ascii_lowercase()
        .as_str()
    {
        "individual" => SubjectKind::Individual,
        "entity" => SubjectKind::Entity,
        "ship" => SubjectKind::Vessel,
        _ => SubjectKind::Unknown,
    };
    let mut entry = Entry::new("UK", id, kind);
    let mut names = Vec::new();
    node.descendants("Name", &mut names);
    // Primary names first, whatever their order in the file.
    names.sort_by_key(|n| {
        !n.child_text("NameType")
            .eq_ignore_ascii_case("primary name")
    });
    for (i, name) in names.iter().enumerate() {
        let full = ["Name1", "Name2", "Name3", "Name4", "Name5", "Name6"]
            .iter()
            .map(|part| name.child_text(part))
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        let kind = if i == 0 {
            NameKind::Primary
        } else if name
            .child_text("AliasStrength")
            .to_ascii_lowercase()
            .starts_with("low")
        {
            NameKind::WeakAlias
        } else {
            NameKind::Alias
        };
        entry.add_name(&full, kind);
    }
    for original in texts(node, "NameNonLatinScript") {
        entry.add_name(original, NameKind::OriginalScript);
    }
    for dob in texts(node, "DOB") {
        if let Some(date) = PartialDate::parse(dob) {
            entry.dates_of_birth.push(date);
        }
    }
    for nationality in texts(node, "Nationality") {
        if let Some(key) = country_key(nationality) {
            push_unique(&mut entry.nationalities, &key);
        }
    }
    entry.gender = texts(node, "Gender").into_iter().find_map(Gender::parse);
    for (tag, kind) in [
        ("PassportNumber", "Passport"),
        ("NationalIdentifierNumber", "National identifier"),
        ("BusinessRegistrationNumber", "Business registration"),
        ("IMONumber", "IMO"),
    ] {
        for value in texts(node, tag) {
            entry.identifiers.push(Identifier {
                kind: kind.to_owned(),
                value: value.to_owned(),
            });
        }
    }
    if entry.names.is_empty() {
        return Err(where_("no Name with Name1..Name6"));
    }
    Ok(entry)
}
