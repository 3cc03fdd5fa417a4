//! EU Financial Sanctions Files XML, v1.1 (namespace `http://eu.europa.ec/fpi/fsd/export`):
//! `export/sanctionEntity` records whose details are attributes: `nameAlias` (`wholeName`, or
//! first/middle/last name; `strong="false"` is a weak alias; `gender`), `identification`
//! (`number`, `latinNumber`), `birthdate` (`birthdate` or `year`), `citizenship`
//! (`countryIso2Code`). The entity id is the `logicalId` of the sanctionEntity.

use super::super::country::country_key;
use super::super::model::{Entry, Gender, Identifier, NameKind, PartialDate, SubjectKind};
use super::xml::{Node, stream_records};
use super::{Failure, push_unique};

/// Parses the whole file or fails.
pub fn parse(text: &str) -> Result<Vec<Entry>, Failure> {
    let mut entries = Vec::new();
    let root = stream_records(
        text,
        |depth, name| depth == 1 && name == "sanctionEntity",
        |node| {
            entries.push(entry_of(&node)?);
            Ok(())
        },
    )?;
    if root.name != "export" {
        return Err(Failure::at_line(
            1,
            format!("root <{}> is not export", root.name),
        ));
    }
    Ok(entries)
}

fn entry_of(node: &Node) -> Result<Entry, String> {
    let where_ = |what: &str| format!("<sanctionEntity> at line {}: {what}", node.line);
    let id = node.attr_or_empty("logicalId");
    if id.is_empty() {
        return Err(where_("no logicalId"));
    }
    let kind = match node.child("subjectType").map(|s| s.attr_or_empty("code")) {
        Some("person") => SubjectKind::Individual,
        Some("enterprise") => SubjectKind::Entity,
        _ => SubjectKind::Unknown,
    };
    let mut entry = Entry::new("EU", id, kind);
    for (i, alias) in node.children_named("nameAlias").enumerate() {
        let whole = alias.attr_or_empty("wholeName");
        let name = if whole.is_empty() {
            ["firstName", "middleName", "lastName"]
                .iter()
                .map(|a| alias.attr_or_empty(a))
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            whole.to_owned()
        };
        let kind = if i == 0 {
            NameKind::Primary
        } else if alias.attr_or_empty("strong") == "false" {
            NameKind::WeakAlias
        } else {
            NameKind::Alias
        };
        entry.add_name(&name, kind);
        if entry.gender.is_none() {
            entry.gender = Gender::parse(alias.attr_or_empty("gender"));
        }
    }
    for identification in node.children_named("identification") {
        for attribute in ["number", "latinNumber"] {
            let number = identification.attr_or_empty(attribute);
            if !number.is_empty() && !entry.identifiers.iter().any(|i| i.value == number) {
                entry.identifiers.push(Identifier {
                    kind: identification
                        .attr_or_empty("identificationTypeDescription")
                        .to_owned(),
                    value: number.to_owned(),
                });
            }
        }
    }
    for birth in node.children_named("birthdate") {
        let date = PartialDate::parse(birth.attr_or_empty("birthdate"))
            .or_else(|| PartialDate::parse(birth.attr_or_empty("year")));
        if let Some(date) = date {
            entry.dates_of_birth.push(date);
        }
    }
    for citizenship in node.children_named("citizenship") {
        let code = citizenship.attr_or_empty("countryIso2Code");
        let text = if code.is_empty() || code == "00" {
            citizenship.attr_or_empty("countryDescription")
        } else {
            code
        };
        if let Some(key) = country_key(text) {
            push_unique(&mut entry.nationalities, &key);
        }
    }
    if entry.names.is_empty() {
        return Err(where_("no nameAlias with a name"));
    }
    Ok(entry)
}
