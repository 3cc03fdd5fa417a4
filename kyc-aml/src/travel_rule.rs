//! Travel rule (Regulation (EU) 2023/1113): the IVMS101 subset an external transfer carries,
//! its parser, and the completeness check whose defects hold the transfer.
//!
//! Field names follow IVMS101's JSON (camelCase). The subset: natural and legal persons with
//! names, geographic addresses, national identification, customer identification, date and
//! place of birth, country of residence; account numbers; and the two VASPs identified by LEI.

use serde::{Deserialize, Serialize};

use crate::limits::{
    FIELD_LEN_MAX, TRAVEL_RULE_ACCOUNTS_MAX, TRAVEL_RULE_BYTES_MAX, TRAVEL_RULE_PERSONS_MAX,
};
use crate::reject::{Refusal, Reject};
use crate::validate::{country_ok, date_ok, field_ok};

/// IVMS101 `NaturalPersonNameId`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NameIdentifier {
    /// Family name (or the full name when not split).
    pub primary_identifier: String,
    /// Given names.
    pub secondary_identifier: Option<String>,
    /// LEGL (legal), ALIA (alias), BIRT, MAID, MISC.
    pub name_identifier_type: String,
}

/// IVMS101 `NaturalPersonName`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NaturalPersonName {
    /// At least one, of type LEGL for the legal name.
    pub name_identifier: Vec<NameIdentifier>,
}

/// IVMS101 `Address` (subset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Address {
    /// HOME, BIZZ, GEOG.
    pub address_type: String,
    /// Street.
    pub street_name: Option<String>,
    /// Number.
    pub building_number: Option<String>,
    /// Postcode.
    pub post_code: Option<String>,
    /// Town.
    pub town_name: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
}

/// IVMS101 `NationalIdentification`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NationalIdentification {
    /// The identifier.
    pub national_identifier: String,
    /// ARNU, CCPT, RAID, DRLC, FIIN, TXID, SOCS, IDCD, LEIX, MISC.
    pub national_identifier_type: String,
    /// ISO 3166-1 alpha-2 of the issuing country.
    pub country_of_issue: Option<String>,
}

/// IVMS101 `DateAndPlaceOfBirth`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DateAndPlaceOfBirth {
    /// `YYYY-MM-DD`.
    pub date_of_birth: String,
    /// Town and country in words.
    pub place_of_birth: String,
}

/// IVMS101 `NaturalPerson` (subset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NaturalPerson {
    /// Names.
    pub name: NaturalPersonName,
    /// Addresses.
    #[serde(default)]
    pub geographic_address: Vec<Address>,
    /// National identification.
    pub national_identification: Option<NationalIdentification>,
    /// The VASP's own customer number.
    pub customer_identification: Option<String>,
    /// Date and place of birth.
    pub date_and_place_of_birth: Option<DateAndPlaceOfBirth>,
    /// ISO 3166-1 alpha-2.
    pub country_of_residence: Option<String>,
}

/// IVMS101 `LegalPersonNameId`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LegalPersonNameId {
    /// The name.
    pub legal_person_name: String,
    /// LEGL, SHRT, TRAD.
    pub legal_person_name_identifier_type: String,
}

/// IVMS101 `LegalPersonName`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LegalPersonName {
    /// At least one.
    pub name_identifier: Vec<LegalPersonNameId>,
}

/// IVMS101 `LegalPerson` (subset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LegalPerson {
    /// Names.
    pub name: LegalPersonName,
    /// Addresses.
    #[serde(default)]
    pub geographic_address: Vec<Address>,
    /// LEI or register number.
    pub national_identification: Option<NationalIdentification>,
    /// The VASP's own customer number.
    pub customer_identification: Option<String>,
    /// ISO 3166-1 alpha-2.
    pub country_of_registration: Option<String>,
}

/// IVMS101 `Person`: exactly one of the two.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Person {
    /// A natural person.
    NaturalPerson(NaturalPerson),
    /// A legal person.
    LegalPerson(LegalPerson),
}

/// IVMS101 `Originator`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Originator {
    /// The originators.
    pub originator_persons: Vec<Person>,
    /// Their account numbers (ledger account or chain address).
    #[serde(default)]
    pub account_number: Vec<String>,
}

/// IVMS101 `Beneficiary`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Beneficiary {
    /// The beneficiaries.
    pub beneficiary_persons: Vec<Person>,
    /// Their account numbers.
    #[serde(default)]
    pub account_number: Vec<String>,
}

/// A VASP, identified by its LEI (IVMS101 carries it as a legal person with a LEIX national
/// identification; this subset keeps the two fields that matter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Vasp {
    /// ISO 17442 LEI.
    pub lei: String,
    /// Registered name.
    pub name: String,
}

/// The travel-rule payload of one transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TravelRuleData {
    /// Originator.
    pub originator: Originator,
    /// Beneficiary.
    pub beneficiary: Beneficiary,
    /// The originator's VASP (absent when the originator uses a self-hosted address).
    #[serde(rename = "originatingVASP")]
    pub originating_vasp: Option<Vasp>,
    /// The beneficiary's VASP (absent for a self-hosted address).
    #[serde(rename = "beneficiaryVASP")]
    pub beneficiary_vasp: Option<Vasp>,
}

/// Which VASPs a transfer needs identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VaspNeeds {
    /// The originating VASP must be present.
    pub originating: bool,
    /// The beneficiary VASP must be present.
    pub beneficiary: bool,
}

const NAME_TYPES: [&str; 5] = ["LEGL", "ALIA", "BIRT", "MAID", "MISC"];
const LEGAL_NAME_TYPES: [&str; 3] = ["LEGL", "SHRT", "TRAD"];
const ADDRESS_TYPES: [&str; 3] = ["HOME", "BIZZ", "GEOG"];
const ID_TYPES: [&str; 10] = [
    "ARNU", "CCPT", "RAID", "DRLC", "FIIN", "TXID", "SOCS", "IDCD", "LEIX", "MISC",
];

/// ISO 17442: 18 upper-case alphanumerics and two check digits, ISO 7064 MOD 97-10 == 1.
pub fn lei_ok(lei: &str) -> bool {
    if lei.len() != 20
        || !lei
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
    {
        return false;
    }
    if !lei[18..].bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let mut rem: u32 = 0;
    for b in lei.bytes() {
        let v = if b.is_ascii_digit() {
            u32::from(b - b'0')
        } else {
            u32::from(b - b'A') + 10
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

impl TravelRuleData {
    /// Parses the JSON form.
    pub fn from_json(bytes: &[u8]) -> Result<TravelRuleData, Refusal> {
        if bytes.len() > TRAVEL_RULE_BYTES_MAX {
            return Err(Refusal::new(
                Reject::TravelRuleTooLarge,
                format!("{} bytes", bytes.len()),
            ));
        }
        serde_json::from_slice(bytes)
            .map_err(|e| Refusal::new(Reject::TravelRuleMalformed, e.to_string()))
    }

    /// Every country named (addresses, residence, registration, issue): for the jurisdiction
    /// rule.
    pub fn countries(&self) -> Vec<&str> {
        let mut out = Vec::new();
        let persons = self
            .originator
            .originator_persons
            .iter()
            .chain(&self.beneficiary.beneficiary_persons);
        for p in persons {
            let (addrs, nid, extra) = match p {
                Person::NaturalPerson(n) => (
                    &n.geographic_address,
                    &n.national_identification,
                    &n.country_of_residence,
                ),
                Person::LegalPerson(l) => (
                    &l.geographic_address,
                    &l.national_identification,
                    &l.country_of_registration,
                ),
            };
            out.extend(addrs.iter().map(|a| a.country.as_str()));
            out.extend(nid.iter().filter_map(|n| n.country_of_issue.as_deref()));
            out.extend(extra.as_deref());
        }
        out
    }

    /// Names to screen: every originator and beneficiary name (LEGL and aliases).
    pub fn names(&self) -> Vec<String> {
        let mut out = person_names(&self.originator.originator_persons);
        out.extend(person_names(&self.beneficiary.beneficiary_persons));
        out
    }

    /// The originators' names.
    pub fn originator_names(&self) -> Vec<String> {
        person_names(&self.originator.originator_persons)
    }

    /// The beneficiaries' names.
    pub fn beneficiary_names(&self) -> Vec<String> {
        person_names(&self.beneficiary.beneficiary_persons)
    }

    /// Every defect, as refusals. Empty means complete (TFR art. 14): originator name, account
    /// number and one of address, national id, customer id or date and place of birth;
    /// beneficiary name and account number; the VASPs `needs` asks for, with valid LEIs.
    pub fn defects(&self, needs: VaspNeeds) -> Vec<Refusal> {
        let mut d = Vec::new();
        let o = &self.originator;
        let b = &self.beneficiary;
        if o.originator_persons.len() > TRAVEL_RULE_PERSONS_MAX
            || b.beneficiary_persons.len() > TRAVEL_RULE_PERSONS_MAX
            || o.account_number.len() > TRAVEL_RULE_ACCOUNTS_MAX
            || b.account_number.len() > TRAVEL_RULE_ACCOUNTS_MAX
        {
            d.push(Refusal::new(
                Reject::TravelRuleTooManyEntries,
                "persons or accounts",
            ));
            return d;
        }
        if o.originator_persons.is_empty() {
            d.push(Refusal::new(
                Reject::OriginatorNameMissing,
                "originatorPersons",
            ));
        }
        if b.beneficiary_persons.is_empty() {
            d.push(Refusal::new(
                Reject::BeneficiaryNameMissing,
                "beneficiaryPersons",
            ));
        }
        if o.account_number.is_empty() {
            d.push(Refusal::new(
                Reject::OriginatorAccountMissing,
                "originator.accountNumber",
            ));
        }
        if b.account_number.is_empty() {
            d.push(Refusal::new(
                Reject::BeneficiaryAccountMissing,
                "beneficiary.accountNumber",
            ));
        }
        for (side, accts) in [
            ("originator", &o.account_number),
            ("beneficiary", &b.account_number),
        ] {
            if accts
                .iter()
                .any(|a| a.is_empty() || a.len() > FIELD_LEN_MAX || a.chars().any(char::is_control))
            {
                d.push(Refusal::new(
                    Reject::TravelRuleAccountInvalid,
                    format!("{side}.accountNumber"),
                ));
            }
        }
        for (i, p) in o.originator_persons.iter().enumerate() {
            check_person(p, &format!("originatorPersons[{i}]"), true, &mut d);
        }
        for (i, p) in b.beneficiary_persons.iter().enumerate() {
            check_person(p, &format!("beneficiaryPersons[{i}]"), false, &mut d);
        }
        for (name, vasp, needed) in [
            ("originatingVASP", &self.originating_vasp, needs.originating),
            ("beneficiaryVASP", &self.beneficiary_vasp, needs.beneficiary),
        ] {
            match vasp {
                None if needed => d.push(Refusal::new(Reject::VaspMissing, name)),
                None => {}
                Some(v) => {
                    if !lei_ok(&v.lei) {
                        d.push(Refusal::new(Reject::LeiInvalid, name));
                    }
                    if !field_ok(&v.name) {
                        d.push(Refusal::new(
                            Reject::TravelRuleNameInvalid,
                            format!("{name}.name"),
                        ));
                    }
                }
            }
        }
        d
    }
}

fn person_names(persons: &[Person]) -> Vec<String> {
    let mut out = Vec::new();
    for p in persons {
        match p {
            Person::NaturalPerson(n) => {
                for id in &n.name.name_identifier {
                    out.push(match &id.secondary_identifier {
                        Some(g) => format!("{g} {}", id.primary_identifier),
                        None => id.primary_identifier.clone(),
                    });
                }
            }
            Person::LegalPerson(l) => {
                out.extend(
                    l.name
                        .name_identifier
                        .iter()
                        .map(|n| n.legal_person_name.clone()),
                );
            }
        }
    }
    out
}

fn check_address(a: &Address, at: &str, d: &mut Vec<Refusal>) {
    if !country_ok(&a.country) {
        d.push(Refusal::new(
            Reject::TravelRuleCountryInvalid,
            format!("{at}.country"),
        ));
    }
    let opt_bad = [&a.street_name, &a.building_number, &a.post_code]
        .iter()
        .any(|v| v.as_deref().is_some_and(|s| !field_ok(s)));
    if !ADDRESS_TYPES.contains(&a.address_type.as_str()) || !field_ok(&a.town_name) || opt_bad {
        d.push(Refusal::new(Reject::TravelRuleMalformed, at.to_string()));
    }
}

fn check_nid(n: &NationalIdentification, at: &str, d: &mut Vec<Refusal>) {
    if !field_ok(&n.national_identifier) || !ID_TYPES.contains(&n.national_identifier_type.as_str())
    {
        d.push(Refusal::new(
            Reject::TravelRuleMalformed,
            format!("{at}.nationalIdentification"),
        ));
    }
    if n.country_of_issue
        .as_deref()
        .is_some_and(|c| !country_ok(c))
    {
        d.push(Refusal::new(
            Reject::TravelRuleCountryInvalid,
            format!("{at}.countryOfIssue"),
        ));
    }
}

fn check_person(p: &Person, at: &str, originator: bool, d: &mut Vec<Refusal>) {
    let missing_name = if originator {
        Reject::OriginatorNameMissing
    } else {
        Reject::BeneficiaryNameMissing
    };
    let identified = match p {
        Person::NaturalPerson(n) => {
            if !n
                .name
                .name_identifier
                .iter()
                .any(|id| id.name_identifier_type == "LEGL")
            {
                d.push(Refusal::new(missing_name, format!("{at}.name (LEGL)")));
            }
            for id in &n.name.name_identifier {
                let bad_secondary = id
                    .secondary_identifier
                    .as_deref()
                    .is_some_and(|s| !field_ok(s));
                if !field_ok(&id.primary_identifier)
                    || bad_secondary
                    || !NAME_TYPES.contains(&id.name_identifier_type.as_str())
                {
                    d.push(Refusal::new(
                        Reject::TravelRuleNameInvalid,
                        format!("{at}.name"),
                    ));
                }
            }
            for (j, a) in n.geographic_address.iter().enumerate() {
                check_address(a, &format!("{at}.geographicAddress[{j}]"), d);
            }
            if let Some(nid) = &n.national_identification {
                check_nid(nid, at, d);
            }
            if let Some(dob) = &n.date_and_place_of_birth
                && (!date_ok(&dob.date_of_birth) || !field_ok(&dob.place_of_birth))
            {
                d.push(Refusal::new(
                    Reject::TravelRuleDateInvalid,
                    format!("{at}.dateAndPlaceOfBirth"),
                ));
            }
            if n.country_of_residence
                .as_deref()
                .is_some_and(|c| !country_ok(c))
            {
                d.push(Refusal::new(
                    Reject::TravelRuleCountryInvalid,
                    format!("{at}.countryOfResidence"),
                ));
            }
            !n.geographic_address.is_empty()
                || n.national_identification.is_some()
                || n.customer_identification.is_some()
                || n.date_and_place_of_birth.is_some()
        }
        Person::LegalPerson(l) => {
            if !l
                .name
                .name_identifier
                .iter()
                .any(|id| id.legal_person_name_identifier_type == "LEGL")
            {
                d.push(Refusal::new(missing_name, format!("{at}.name (LEGL)")));
            }
            for id in &l.name.name_identifier {
                if !field_ok(&id.legal_person_name)
                    || !LEGAL_NAME_TYPES.contains(&id.legal_person_name_identifier_type.as_str())
                {
                    d.push(Refusal::new(
                        Reject::TravelRuleNameInvalid,
                        format!("{at}.name"),
                    ));
                }
            }
            for (j, a) in l.geographic_address.iter().enumerate() {
                check_address(a, &format!("{at}.geographicAddress[{j}]"), d);
            }
            if let Some(nid) = &l.national_identification {
                check_nid(nid, at, d);
                if nid.national_identifier_type == "LEIX" && !lei_ok(&nid.national_identifier) {
                    d.push(Refusal::new(
                        Reject::LeiInvalid,
                        format!("{at}.nationalIdentification"),
                    ));
                }
            }
            if l.country_of_registration
                .as_deref()
                .is_some_and(|c| !country_ok(c))
            {
                d.push(Refusal::new(
                    Reject::TravelRuleCountryInvalid,
                    format!("{at}.countryOfRegistration"),
                ));
            }
            !l.geographic_address.is_empty()
                || l.national_identification.is_some()
                || l.customer_identification.is_some()
        }
    };
    if originator && !identified {
        d.push(Refusal::new(
            Reject::OriginatorIdentificationMissing,
            at.to_string(),
        ));
    }
    let cust_id = match p {
        Person::NaturalPerson(n) => &n.customer_identification,
        Person::LegalPerson(l) => &l.customer_identification,
    };
    if cust_id.as_deref().is_some_and(|c| !field_ok(c)) {
        d.push(Refusal::new(
            Reject::TravelRuleMalformed,
            format!("{at}.customerIdentification"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const SAMPLE: &str = r#"{
      "originator": {
        "originatorPersons": [{"naturalPerson": {
          "name": {"nameIdentifier": [{"primaryIdentifier": "Dupont", "secondaryIdentifier": "Marie", "nameIdentifierType": "LEGL"}]},
          "geographicAddress": [{"addressType": "HOME", "streetName": "Rue de la Paix", "buildingNumber": "1", "postCode": "75002", "townName": "Paris", "country": "FR"}],
          "countryOfResidence": "FR"}}],
        "accountNumber": ["rempart:acct:42"]
      },
      "beneficiary": {
        "beneficiaryPersons": [{"naturalPerson": {
          "name": {"nameIdentifier": [{"primaryIdentifier": "Smith", "secondaryIdentifier": "John", "nameIdentifierType": "LEGL"}]}}}],
        "accountNumber": ["0xabc"]
      },
      "originatingVASP": {"lei": "5493001KJTIIGC8Y1R12", "name": "Rempart Exchange"},
      "beneficiaryVASP": {"lei": "529900T8BM49AURSDO55", "name": "Other VASP"}
    }"#;

    #[test]
    fn lei_check_digits() {
        assert!(lei_ok("5493001KJTIIGC8Y1R12"));
        assert!(lei_ok("529900T8BM49AURSDO55"));
        assert!(!lei_ok("5493001KJTIIGC8Y1R13"));
        assert!(!lei_ok("5493001kjtiigc8y1r12"));
    }

    #[test]
    fn complete_payload_has_no_defects() {
        let t = TravelRuleData::from_json(SAMPLE.as_bytes()).unwrap();
        assert!(
            t.defects(VaspNeeds {
                originating: true,
                beneficiary: true
            })
            .is_empty()
        );
        assert_eq!(
            t.names(),
            vec!["Marie Dupont".to_string(), "John Smith".to_string()]
        );
        assert_eq!(t.countries(), vec!["FR", "FR"]);
    }

    #[test]
    fn defects_are_named() {
        let mut t = TravelRuleData::from_json(SAMPLE.as_bytes()).unwrap();
        if let Person::NaturalPerson(n) = &mut t.originator.originator_persons[0] {
            n.geographic_address.clear();
            n.country_of_residence = Some("fr".into());
        }
        t.beneficiary.account_number.clear();
        t.beneficiary_vasp = None;
        let codes: Vec<_> = t
            .defects(VaspNeeds {
                originating: true,
                beneficiary: true,
            })
            .into_iter()
            .map(|r| r.reject)
            .collect();
        assert!(
            codes.contains(&Reject::OriginatorIdentificationMissing),
            "{codes:?}"
        );
        assert!(
            codes.contains(&Reject::TravelRuleCountryInvalid),
            "{codes:?}"
        );
        assert!(
            codes.contains(&Reject::BeneficiaryAccountMissing),
            "{codes:?}"
        );
        assert!(codes.contains(&Reject::VaspMissing), "{codes:?}");
    }

    #[test]
    fn malformed_json_is_refused() {
        let e = TravelRuleData::from_json(br#"{"originator": 1}"#).unwrap_err();
        assert_eq!(e.reject, Reject::TravelRuleMalformed);
        let big = vec![b' '; TRAVEL_RULE_BYTES_MAX + 1];
        assert_eq!(
            TravelRuleData::from_json(&big).unwrap_err().reject,
            Reject::TravelRuleTooLarge
        );
    }
}
