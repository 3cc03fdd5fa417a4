//! Property tests of the screening parsers and normaliser: list files are outside input, so no
//! byte sequence or XML fragment may make a parser panic; and a name with a letter never
//! normalises to nothing.

use kyc_aml::screening::normalize::{encoder, normalize_name};
use kyc_aml::screening::{ListFile, ListSnapshot, match_names};
use proptest::prelude::*;

fn load(bytes: Vec<u8>) {
    // Any outcome is fine except a panic.
    let _ = ListSnapshot::load(&[ListFile {
        label: "fuzz".to_owned(),
        bytes,
    }]);
}

fn fragment() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("<INDIVIDUAL>".to_owned()),
            Just("</INDIVIDUAL>".to_owned()),
            Just("<DATAID>1</DATAID>".to_owned()),
            Just("<FIRST_NAME>A</FIRST_NAME>".to_owned()),
            Just("<sanctionEntity logicalId=\"1\">".to_owned()),
            Just("</sanctionEntity>".to_owned()),
            Just("<nameAlias wholeName=\"x &amp; y\"/>".to_owned()),
            Just("<DistinctParty FixedRef=\"1\">".to_owned()),
            Just("<Profile>".to_owned()),
            Just("<Designation><UniqueID>U</UniqueID>".to_owned()),
            Just("&#x0;".to_owned()),
            Just("&bogus;".to_owned()),
            Just("<![CDATA[z]]>".to_owned()),
            "[a-zA-Z<>/=\" &;#]{0,12}",
        ],
        0..24,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn parsers_never_panic_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        load(bytes);
    }

    #[test]
    fn parsers_never_panic_on_xml_fragments(
        root in prop_oneof![
            Just("CONSOLIDATED_LIST"), Just("export"), Just("Sanctions"), Just("Designations")
        ],
        body in fragment(),
        inner in prop_oneof![Just(""), Just("INDIVIDUALS"), Just("DistinctParties")],
    ) {
        let open = if inner.is_empty() { String::new() } else { format!("<{inner}>") };
        let close = if inner.is_empty() { String::new() } else { format!("</{inner}>") };
        load(format!("<?xml version=\"1.0\"?><{root}>{open}{body}{close}</{root}>").into_bytes());
        load(format!("<{root}>{body}").into_bytes());
    }

    #[test]
    fn csv_rows_never_panic(rows in prop::collection::vec("[0-9]{1,4},[\"a-zA-Z ,;'-]{0,40}", 1..6)) {
        load(rows.join("\n").into_bytes());
    }

    #[test]
    fn names_with_letters_never_normalise_to_nothing(name in "\\PC{0,40}") {
        let normalised = normalize_name(&name, &encoder());
        if name.chars().any(char::is_alphanumeric) {
            prop_assert!(!normalised.tokens.is_empty(), "{name:?}");
        }
        let scored = match_names(&name, &name);
        prop_assert!(scored.score <= 1000);
    }

    #[test]
    fn a_name_matches_itself(name in "[A-Z][a-z]{2,8}( [A-Z][a-z]{2,8}){1,3}") {
        prop_assert_eq!(match_names(&name, &name).score, 1000);
    }
}
