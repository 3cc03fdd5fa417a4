//! UN Security Council Consolidated List XML (schema `sc-sanctions.xsd`): `CONSOLIDATED_LIST`
//! with `INDIVIDUALS/INDIVIDUAL` and `ENTITIES/ENTITY` records. The entity id is `DATAID`;
//! names are FIRST..FOURTH_NAME joined; aliases come from `*_ALIAS/ALIAS_NAME` (QUALITY "Low"
//! makes a weak alias) and `NAME_ORIGINAL_SCRIPT`.

use super::super::country::country_key;
use super::super::model::{Entry, Gender, Identifier, NameKind, PartialDate, SubjectKind};
use super::xml::{Node, stream_records};
use super::{Failure, push_unique};

/// Widest year range (`FROM_YEAR`..`TO_YEAR`) expanded into dates of birth.
const YEAR_RANGE_MAX: u16 = 30;

/// Parses the whole file or fails.
pub fn parse(text: &str) -> Result<Vec<Entry>, Failure> {
    let mut entries = Vec::new();
    let root = stream_records(
        text,
        |depth, name| depth == 2 && (name == "INDIVIDUAL" || name == "ENTITY"),
        |node| {
            entries.push(entry_of(&node)?);
            Ok(())
        },
    )?;
    if root.name != "CONSOLIDATED_LIST" {
        return Err(Failure::at_line(
            1,
            format!("root <{}> is not CONSOLIDATED_LIST", root.name),
        ));
    }
    Ok(entries)
}

fn entry_of(node: &Node) -> Result<Entry, String> {
    let where_ = |what: &str| format!("<{}> at line {}: {what}", node.name, node.line);
    let id = node.child_text("DATAID");
    if id.is_empty() {
        return Err(where_("no DATAID"));
    }
    let individual = node.name == "INDIVIDUAL";
    let kind = if individual {
        SubjectKind::Individual
    } else {
        SubjectKind::Entity
    };
    let mut entry = Entry::new("UN", id, kind);
    let name = ["FIRST_NAME", "SECOND_NAME", "THIRD_NAME", "FOURTH_NAME"]
        .iter()
        .map(|part| node.child_text(part))
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if name.is_empty() {
        return Err(where_("no FIRST_NAME"));
    }
    entry.add_name(&name, NameKind::Primary);
    let alias_tag = if individual {
        "INDIVIDUAL_ALIAS"
    } else {
        "ENTITY_ALIAS"
    };
    for alias in node.children_named(alias_tag) {
        let kind = if alias.child_text("QUALITY").eq_ignore_ascii_case("low") {
            NameKind::WeakAlias
        } else {
            NameKind::Alias
        };
        entry.add_name(alias.child_text("ALIAS_NAME"), kind);
    }
    entry.add_name(
        node.child_text("NAME_ORIGINAL_SCRIPT"),
        NameKind::OriginalScript,
    );
    for nationality in node.children_named("NATIONALITY") {
        for value in nationality.children_named("VALUE") {
            if let Some(key) = country_key(&value.text) {
                push_unique(&mut entry.nationalities, &key);
            }
        }
    }
    entry.gender = Gender::parse(node.child_text("GENDER"));
    for birth in node.children_named("INDIVIDUAL_DATE_OF_BIRTH") {
        if let Some(date) = PartialDate::parse(birth.child_text("DATE")) {
            entry.dates_of_birth.push(date);
        }
        if let Some(date) = PartialDate::parse(birth.child_text("YEAR")) {
            entry.dates_of_birth.push(date);
        }
        let from = birth.child_text("FROM_YEAR").parse::<u16>().ok();
        let to = birth.child_text("TO_YEAR").parse::<u16>().ok();
        if let (Some(from), Some(to)) = (from, to) {
            if to < from || to - from > YEAR_RANGE_MAX {
                return Err(where_("FROM_YEAR/TO_YEAR range invalid or too wide"));
            }
            for year in from..=to {
                if let Some(date) = PartialDate::parse(&format!("{year:04}")) {
                    entry.dates_of_birth.push(date);
                }
            }
        }
    }
    entry.dates_of_birth.sort();
    entry.dates_of_birth.dedup();
    for document in node.children_named("INDIVIDUAL_DOCUMENT") {
        let number = document.child_text("NUMBER");
        if !number.is_empty() {
            let kind = match document.child_text("TYPE_OF_DOCUMENT") {
                "" => "Document",
                kind => kind,
            };
            entry.identifiers.push(Identifier {
                kind: kind.to_owned(),
                value: number.to_owned(),
            });
        }
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<CONSOLIDATED_LIST dateGenerated="2020-11-24T20:23:07.617-05:00">
  <INDIVIDUALS>
    <INDIVIDUAL><DATAID>6908555</DATAID><FIRST_NAME> RI </FIRST_NAME><SECOND_NAME>WON HO</SECOND_NAME>
      <THIRD_NAME/><NATIONALITY><VALUE>Democratic People's Republic of Korea</VALUE></NATIONALITY>
      <INDIVIDUAL_ALIAS><QUALITY>Low</QUALITY><ALIAS_NAME>Ri W&#246;n &amp; Ho</ALIAS_NAME></INDIVIDUAL_ALIAS>
      <INDIVIDUAL_DATE_OF_BIRTH><TYPE_OF_DATE>EXACT</TYPE_OF_DATE><DATE>1964-07-17</DATE></INDIVIDUAL_DATE_OF_BIRTH>
      <INDIVIDUAL_DATE_OF_BIRTH><TYPE_OF_DATE>BETWEEN</TYPE_OF_DATE><FROM_YEAR>1965</FROM_YEAR><TO_YEAR>1966</TO_YEAR></INDIVIDUAL_DATE_OF_BIRTH>
      <INDIVIDUAL_DOCUMENT><TYPE_OF_DOCUMENT>Passport</TYPE_OF_DOCUMENT><NUMBER> 381310014</NUMBER></INDIVIDUAL_DOCUMENT>
      <GENDER>Male</GENDER>
    </INDIVIDUAL>
  </INDIVIDUALS>
  <ENTITIES>
    <ENTITY><DATAID>110</DATAID><FIRST_NAME>AL-HARAMAIN FOUNDATION</FIRST_NAME>
      <ENTITY_ALIAS><QUALITY>Good</QUALITY><ALIAS_NAME>Vazir</ALIAS_NAME></ENTITY_ALIAS></ENTITY>
  </ENTITIES>
</CONSOLIDATED_LIST>"#;

    #[test]
    fn parses_individuals_and_entities() {
        let entries = parse(SAMPLE).expect("sample parses");
        assert_eq!(entries.len(), 2);
        let ri = &entries[0];
        assert_eq!(ri.entity_id, "6908555");
        assert_eq!(ri.primary_name(), "RI WON HO");
        assert_eq!(ri.names[1].full, "Ri Wön & Ho");
        assert_eq!(ri.names[1].kind, NameKind::WeakAlias);
        assert_eq!(ri.nationalities, vec!["KP".to_owned()]);
        assert_eq!(ri.dates_of_birth.len(), 3);
        assert_eq!(ri.identifiers[0].value, "381310014");
        assert_eq!(ri.gender, Some(Gender::Male));
        assert_eq!(entries[1].kind, SubjectKind::Entity);
        assert_eq!(entries[1].names.len(), 2);
    }

    #[test]
    fn a_broken_record_names_its_line() {
        let broken = SAMPLE.replace("<DATAID>110</DATAID>", "");
        let failure = parse(&broken).expect_err("entity without DATAID");
        assert!(failure.reason.contains("line 14"), "{failure:?}");
        let unclosed = SAMPLE.replace("</INDIVIDUAL>", "");
        let failure = parse(&unclosed).expect_err("unclosed element");
        assert!(failure.location.starts_with("line "), "{failure:?}");
    }
}
