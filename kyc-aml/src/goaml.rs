//! goAML 5.0.2 regulator reports (STR and SAR) generated from a case.
//!
//! An STR (suspicious transaction report) lists the case's transactions with our customer on
//! one side; an SAR (suspicious activity report) names the customer as a report party without
//! transactions. The XML is written with `quick-xml` (text is escaped by the writer) and
//! follows the element order of `testdata/goaml/goAMLSchema-5.0.2.xsd`; tests validate every
//! generated report with `xmllint --schema`.
//!
//! The customer is written with goAML's plain `t_person` / `t_entity` forms, not the
//! `*_my_client` forms: those require phone numbers and identity-document issue and expiry
//! dates that onboarding does not collect. Counterparties are written as accounts
//! (`t_account`: the VASP's LEI or "SELF-HOSTED", the address, the name when known).

use std::io::Cursor;

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use serde::{Deserialize, Serialize};

use crate::KycError;
use crate::case::{Case, CaseState};
use crate::customer::{CustomerKind, PersonalData, TimestampUs};
use crate::limits::{FIELD_LEN_MAX, REPORT_TEXT_LEN_MAX, REPORT_TRANSACTIONS_MAX};
use crate::reject::{Refusal, Reject};
use crate::transfer::Direction;
use crate::validate::{country_ok, field_ok};

/// STR or SAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ReportKind {
    /// Suspicious transaction report.
    Str,
    /// Suspicious activity report.
    Sar,
}

impl ReportKind {
    fn code(self) -> &'static str {
        match self {
            ReportKind::Str => "STR",
            ReportKind::Sar => "SAR",
        }
    }
}

/// An address of the reporting entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityAddress {
    /// Street and number.
    pub address: String,
    /// City.
    pub city: String,
    /// ISO 3166-1 alpha-2.
    pub country_code: String,
    /// State or region (goAML requires one).
    pub state: String,
}

/// Who files: configured once per deployment (the FIU registration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportingEntity {
    /// The FIU-assigned reporting entity id.
    pub rentity_id: u32,
    /// Branch.
    pub rentity_branch: Option<String>,
    /// Local currency (ISO 4217), "EUR".
    pub currency_code_local: String,
    /// The MLRO filing: first name.
    pub mlro_first_name: String,
    /// The MLRO: last name.
    pub mlro_last_name: String,
    /// The MLRO's occupation line.
    pub mlro_occupation: Option<String>,
    /// Business address.
    pub location: Option<EntityAddress>,
}

impl ReportingEntity {
    fn validate(&self) -> Result<(), Refusal> {
        let bad = |f: &str| Refusal::new(Reject::ReportEntityInvalid, f.to_string());
        if self.rentity_id == 0 || self.rentity_id > i32::MAX as u32 {
            return Err(bad("rentity_id"));
        }
        if self.currency_code_local.len() != 3
            || !self
                .currency_code_local
                .bytes()
                .all(|b| b.is_ascii_uppercase())
        {
            return Err(bad("currency_code_local"));
        }
        if !field_ok(&self.mlro_first_name) || !field_ok(&self.mlro_last_name) {
            return Err(bad("mlro name"));
        }
        if self.rentity_branch.as_deref().is_some_and(|b| !field_ok(b))
            || self
                .mlro_occupation
                .as_deref()
                .is_some_and(|b| !field_ok(b))
        {
            return Err(bad("rentity_branch or mlro_occupation"));
        }
        if let Some(l) = &self.location
            && (!field_ok(&l.address)
                || !field_ok(&l.city)
                || !field_ok(&l.state)
                || !country_ok(&l.country_code))
        {
            return Err(bad("location"));
        }
        Ok(())
    }
}

/// One transaction of an STR, assembled from the case's decisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportTransaction {
    /// Settlement transfer id.
    pub transfer_id: u128,
    /// The gate's decision hash (internal reference).
    pub decision_hash: [u8; 32],
    /// When it was evaluated.
    pub at_us: TimestampUs,
    /// In or out for our customer.
    pub direction: Direction,
    /// EUR-equivalent minor units (the local currency).
    pub amount_eur_minor: u64,
    /// Free text.
    pub description: String,
    /// Counterparty account or address.
    pub counterparty_account: String,
    /// Counterparty name, when known.
    pub counterparty_name: Option<String>,
    /// Counterparty institution (VASP LEI, bank BIC), when known.
    pub counterparty_institution: Option<String>,
    /// Counterparty country, when known.
    pub counterparty_country: Option<String>,
}

/// What the analyst supplies for one report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRequest {
    /// STR or SAR.
    pub kind: ReportKind,
    /// Our reference (unique per report).
    pub entity_reference: String,
    /// Submission time.
    pub submitted_at_us: TimestampUs,
    /// Why the activity is suspicious.
    pub reason: String,
    /// What was done.
    pub action: String,
    /// goAML report indicator codes (from the FIU's list).
    pub indicators: Vec<String>,
}

/// The customer as reported: their kind and personal data (`None` once erased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportSubject {
    /// Person or entity.
    pub kind: CustomerKind,
    /// Personal data.
    pub personal: Option<PersonalData>,
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) from microseconds since the epoch (civil-from-days, proleptic
/// Gregorian).
pub fn iso_datetime(us: TimestampUs) -> String {
    let secs = us.div_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3_600,
        sod % 3_600 / 60,
        sod % 60
    )
}

/// Euro cents as a decimal string ("1234.05"); integers only, no floating point.
pub fn minor_to_decimal(minor: u64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

struct Xml {
    w: Writer<Cursor<Vec<u8>>>,
}

fn xml_err(e: impl std::fmt::Display) -> KycError {
    KycError::Xml(e.to_string())
}

impl Xml {
    fn new() -> Result<Xml, KycError> {
        let mut w = Writer::new_with_indent(Cursor::new(Vec::new()), b' ', 2);
        w.write_event(Event::Decl(BytesDecl::new(
            "1.0",
            Some("UTF-8"),
            Some("yes"),
        )))
        .map_err(xml_err)?;
        Ok(Xml { w })
    }

    fn open(&mut self, name: &str) -> Result<(), KycError> {
        self.w
            .write_event(Event::Start(BytesStart::new(name)))
            .map_err(xml_err)
    }

    fn close(&mut self, name: &str) -> Result<(), KycError> {
        self.w
            .write_event(Event::End(BytesEnd::new(name)))
            .map_err(xml_err)
    }

    fn text(&mut self, name: &str, value: &str) -> Result<(), KycError> {
        self.open(name)?;
        self.w
            .write_event(Event::Text(BytesText::new(value)))
            .map_err(xml_err)?;
        self.close(name)
    }

    fn opt(&mut self, name: &str, value: Option<&str>) -> Result<(), KycError> {
        match value {
            Some(v) => self.text(name, v),
            None => Ok(()),
        }
    }

    fn finish(self) -> Result<String, KycError> {
        String::from_utf8(self.w.into_inner().into_inner()).map_err(xml_err)
    }
}

fn report_text_ok(s: &str) -> bool {
    !s.trim().is_empty()
        && s.len() <= REPORT_TEXT_LEN_MAX
        && !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t')
}

/// goAML restricts person and account names to `[a-zA-Z0-9 .'-]*`: names are transliterated
/// to ASCII (any_ascii: "Hélène" → "Helene"), other characters become spaces, runs of spaces
/// collapse; an empty result becomes "-".
pub fn goaml_name(s: &str) -> String {
    let ascii = any_ascii::any_ascii(s);
    let kept: String = ascii
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '\'' | '-') {
                c
            } else {
                ' '
            }
        })
        .collect();
    let out = kept.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.is_empty() { "-".to_string() } else { out }
}

/// Splits a natural person's name for goAML's first/last name fields.
fn split_name(p: &PersonalData) -> (String, String) {
    match (&p.first_name, &p.last_name) {
        (Some(f), Some(l)) => (f.clone(), l.clone()),
        _ => match p.full_name.rsplit_once(' ') {
            Some((f, l)) => (f.to_string(), l.to_string()),
            None => ("-".to_string(), p.full_name.clone()),
        },
    }
}

fn write_person(x: &mut Xml, p: &PersonalData) -> Result<(), KycError> {
    let (first, last) = split_name(p);
    x.text("first_name", &goaml_name(&first))?;
    x.text("last_name", &goaml_name(&last))?;
    if let Some(b) = &p.birth_date {
        x.text("birthdate", &format!("{b}T00:00:00"))?;
    }
    x.opt("id_number", p.national_id.as_deref())?;
    x.opt("nationality1", p.nationality.as_deref())?;
    x.text("residence", &p.residence_country)?;
    write_addresses(x, p, "PRIVT")
}

fn write_addresses(x: &mut Xml, p: &PersonalData, kind: &str) -> Result<(), KycError> {
    if let Some(a) = &p.address {
        x.open("addresses")?;
        x.open("address")?;
        x.text("address_type", kind)?;
        x.text("address", &a.line)?;
        x.text("city", &a.town)?;
        x.opt("zip", a.post_code.as_deref())?;
        x.text("country_code", &a.country)?;
        x.text("state", &a.town)?;
        x.close("address")?;
        x.close("addresses")?;
    }
    Ok(())
}

fn write_entity(x: &mut Xml, p: &PersonalData) -> Result<(), KycError> {
    x.text("name", &p.full_name)?;
    x.opt("incorporation_number", p.registration_number.as_deref())?;
    write_addresses(x, p, "BU")?;
    x.text("incorporation_country_code", &p.residence_country)
}

/// Writes the customer as `<{prefix}person>` or `<{prefix}entity>`.
fn write_subject(
    x: &mut Xml,
    prefix: &str,
    kind: CustomerKind,
    p: &PersonalData,
) -> Result<(), KycError> {
    match kind {
        CustomerKind::NaturalPerson => {
            let tag = format!("{prefix}person");
            x.open(&tag)?;
            write_person(x, p)?;
            x.close(&tag)
        }
        CustomerKind::LegalEntity => {
            let tag = format!("{prefix}entity");
            x.open(&tag)?;
            write_entity(x, p)?;
            x.close(&tag)
        }
    }
}

fn write_counterparty_account(
    x: &mut Xml,
    tag: &str,
    t: &ReportTransaction,
) -> Result<(), KycError> {
    x.open(tag)?;
    x.text(
        "institution_code",
        t.counterparty_institution
            .as_deref()
            .unwrap_or("SELF-HOSTED"),
    )?;
    x.text("account", &t.counterparty_account)?;
    x.text(
        "account_name",
        t.counterparty_name.as_deref().unwrap_or("unknown"),
    )?;
    x.close(tag)
}

fn validate_transaction(t: &ReportTransaction, i: usize) -> Result<(), Refusal> {
    let bad = |f: &str| Refusal::new(Reject::ReportFieldInvalid, format!("transactions[{i}].{f}"));
    if t.amount_eur_minor == 0 {
        return Err(bad("amount"));
    }
    if !report_text_ok(&t.description) || t.description.len() > FIELD_LEN_MAX * 4 {
        return Err(bad("description"));
    }
    if !field_ok(&t.counterparty_account) {
        return Err(bad("counterparty_account"));
    }
    if t.counterparty_name.as_deref().is_some_and(|n| !field_ok(n)) {
        return Err(bad("counterparty_name"));
    }
    if t.counterparty_institution
        .as_deref()
        .is_some_and(|n| !field_ok(n) || n.len() > 50)
    {
        return Err(bad("counterparty_institution"));
    }
    if t.counterparty_country
        .as_deref()
        .is_some_and(|c| !country_ok(c))
    {
        return Err(bad("counterparty_country"));
    }
    Ok(())
}

/// Generates the goAML XML of a report about `case`. Refused (6xxx) when the case is neither
/// under investigation nor closed as confirmed, the subject is erased, an STR has no
/// transactions, or a field is out of the schema's bounds.
pub fn generate(
    entity: &ReportingEntity,
    req: &ReportRequest,
    case: &Case,
    subject: &ReportSubject,
    transactions: &[ReportTransaction],
) -> Result<Result<String, Refusal>, KycError> {
    if let Err(r) = check(entity, req, case, subject, transactions) {
        return Ok(Err(r));
    }
    let Some(personal) = &subject.personal else {
        return Ok(Err(Refusal::new(Reject::ReportSubjectErased, "subject")));
    };
    let mut x = Xml::new()?;
    x.open("report")?;
    x.text("rentity_id", &entity.rentity_id.to_string())?;
    x.opt("rentity_branch", entity.rentity_branch.as_deref())?;
    x.text("submission_code", "E")?;
    x.text("report_code", req.kind.code())?;
    x.text("entity_reference", &req.entity_reference)?;
    x.text("submission_date", &iso_datetime(req.submitted_at_us))?;
    x.text("currency_code_local", &entity.currency_code_local)?;
    x.open("reporting_person")?;
    x.text("first_name", &goaml_name(&entity.mlro_first_name))?;
    x.text("last_name", &goaml_name(&entity.mlro_last_name))?;
    x.opt("occupation", entity.mlro_occupation.as_deref())?;
    x.close("reporting_person")?;
    if let Some(l) = &entity.location {
        x.open("location")?;
        x.text("address_type", "BU")?;
        x.text("address", &l.address)?;
        x.text("city", &l.city)?;
        x.text("country_code", &l.country_code)?;
        x.text("state", &l.state)?;
        x.close("location")?;
    }
    x.text("reason", &req.reason)?;
    x.text("action", &req.action)?;
    match req.kind {
        ReportKind::Str => {
            for t in transactions {
                x.open("transaction")?;
                x.text("transactionnumber", &t.transfer_id.to_string())?;
                x.text(
                    "internal_ref_number",
                    &format!("case-{}/{}", case.id, hex::encode(&t.decision_hash[..16])),
                )?;
                x.text("transaction_location", "rempart ledger")?;
                x.text("transaction_description", &t.description)?;
                x.text("date_transaction", &iso_datetime(t.at_us))?;
                x.text("transmode_code", "ELCFT")?;
                x.text("transmode_comment", "E")?;
                x.text("amount_local", &minor_to_decimal(t.amount_eur_minor))?;
                let our_country = personal.residence_country.as_str();
                let their_country = t.counterparty_country.as_deref().unwrap_or(our_country);
                match t.direction {
                    Direction::Outgoing => {
                        x.open("t_from")?;
                        x.text("from_funds_code", "CRPTC")?;
                        write_subject(&mut x, "from_", subject.kind, personal)?;
                        x.text("from_country", our_country)?;
                        x.close("t_from")?;
                        x.open("t_to")?;
                        x.text("to_funds_code", "CRPTC")?;
                        write_counterparty_account(&mut x, "to_account", t)?;
                        x.text("to_country", their_country)?;
                        x.close("t_to")?;
                    }
                    Direction::Incoming => {
                        x.open("t_from")?;
                        x.text("from_funds_code", "CRPTC")?;
                        write_counterparty_account(&mut x, "from_account", t)?;
                        x.text("from_country", their_country)?;
                        x.close("t_from")?;
                        x.open("t_to")?;
                        x.text("to_funds_code", "CRPTC")?;
                        write_subject(&mut x, "to_", subject.kind, personal)?;
                        x.text("to_country", our_country)?;
                        x.close("t_to")?;
                    }
                }
                x.close("transaction")?;
            }
        }
        ReportKind::Sar => {
            x.open("activity")?;
            x.open("report_parties")?;
            x.open("report_party")?;
            write_subject(&mut x, "", subject.kind, personal)?;
            x.text("reason", &req.reason)?;
            x.close("report_party")?;
            x.close("report_parties")?;
            x.close("activity")?;
        }
    }
    x.open("report_indicators")?;
    for i in &req.indicators {
        x.text("indicator", i)?;
    }
    x.close("report_indicators")?;
    x.close("report")?;
    Ok(Ok(x.finish()?))
}

fn check(
    entity: &ReportingEntity,
    req: &ReportRequest,
    case: &Case,
    subject: &ReportSubject,
    transactions: &[ReportTransaction],
) -> Result<(), Refusal> {
    entity.validate()?;
    if !matches!(
        case.state,
        CaseState::Investigating | CaseState::ClosedConfirmed
    ) {
        return Err(Refusal::new(
            Reject::ReportCaseState,
            format!("case {} is {:?}", case.id, case.state),
        ));
    }
    let bad = |f: &str| Refusal::new(Reject::ReportFieldInvalid, f.to_string());
    if !field_ok(&req.entity_reference) {
        return Err(bad("entity_reference"));
    }
    if !report_text_ok(&req.reason) || !report_text_ok(&req.action) {
        return Err(bad("reason or action"));
    }
    if req.indicators.is_empty()
        || req.indicators.len() > 32
        || req
            .indicators
            .iter()
            .any(|i| i.is_empty() || i.len() > 10 || !i.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        return Err(bad("indicators"));
    }
    if req.submitted_at_us < -6_847_804_800_000_000 {
        // Before 1753-01-01, goAML's minimum date.
        return Err(bad("submitted_at_us"));
    }
    let Some(p) = &subject.personal else {
        return Err(Refusal::new(Reject::ReportSubjectErased, "subject"));
    };
    p.validate(subject.kind)
        .map_err(|r| Refusal::new(Reject::ReportFieldInvalid, r.detail))?;
    if transactions.len() > REPORT_TRANSACTIONS_MAX {
        return Err(Refusal::new(
            Reject::ReportTooManyTransactions,
            format!("{}", transactions.len()),
        ));
    }
    if req.kind == ReportKind::Str && transactions.is_empty() {
        return Err(Refusal::new(Reject::ReportNoTransactions, "STR"));
    }
    for (i, t) in transactions.iter().enumerate() {
        validate_transaction(t, i)?;
    }
    Ok(())
}

/// Assembles and generates the report about a stored case: the customer's personal data from
/// the store, and for a case about a transfer, that transfer as the gate last recorded it. The
/// decision record holds no counterparty identity (it is pseudonymous), so the counterparty is
/// written as the ledger transfer reference.
pub async fn report_for_case<S: crate::store::KycStore>(
    store: &S,
    case_id: crate::case::CaseId,
    entity: &ReportingEntity,
    req: &ReportRequest,
) -> Result<Result<String, Refusal>, KycError> {
    let Some(case) = store.get_case(case_id).await? else {
        return Ok(Err(Refusal::new(
            Reject::UnknownCase,
            format!("case {case_id}"),
        )));
    };
    let Some(customer) = store.get_customer(case.customer).await? else {
        return Ok(Err(Refusal::new(
            Reject::UnknownCustomer,
            format!("customer {}", case.customer),
        )));
    };
    let subject = ReportSubject {
        kind: customer.profile.kind,
        personal: customer.personal,
    };
    let mut transactions = Vec::new();
    if let Some(tid) = case.transfer_id
        && let Some(d) = store.decisions_for_transfer(tid).await?.pop()
    {
        let r = &d.record;
        transactions.push(ReportTransaction {
            transfer_id: tid,
            decision_hash: d.signed.hash,
            at_us: r.evaluated_at_us,
            direction: if r.direction == Direction::Incoming as u8 {
                Direction::Incoming
            } else {
                Direction::Outgoing
            },
            amount_eur_minor: r.amount_eur_minor,
            description: format!(
                "{} {} minor units of {}, activity {}",
                if r.direction == 1 { "received" } else { "sent" },
                r.amount_minor,
                r.asset,
                r.activity
            ),
            counterparty_account: format!("ledger-transfer-{tid}"),
            counterparty_name: None,
            counterparty_institution: None,
            counterparty_country: None,
        });
    }
    generate(entity, req, &case, &subject, &transactions)
}

/// `rempart aml report goaml`: opens the embedded (SQLite) store at `db`, reads the reporting
/// entity from its JSON, and generates the report about case `case_id`.
#[cfg(feature = "sqlite")]
pub async fn report_from_sqlite(
    db: &std::path::Path,
    case_id: crate::case::CaseId,
    entity_json: &[u8],
    req: &ReportRequest,
) -> Result<Result<String, Refusal>, KycError> {
    let entity: ReportingEntity = match serde_json::from_slice(entity_json) {
        Ok(e) => e,
        Err(e) => {
            return Ok(Err(Refusal::new(
                Reject::ReportEntityInvalid,
                e.to_string(),
            )));
        }
    };
    if !db.exists() {
        return Err(KycError::Store(crate::store::StoreError::Database(
            format!("{} does not exist", db.display()),
        )));
    }
    let store = crate::store::sqlite::SqliteStore::open(db).await?;
    report_for_case(&store, case_id, &entity, req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_amounts() {
        assert_eq!(iso_datetime(0), "1970-01-01T00:00:00");
        assert_eq!(iso_datetime(951_782_400_000_000), "2000-02-29T00:00:00");
        assert_eq!(iso_datetime(1_779_789_600_000_000), "2026-05-26T10:00:00");
        assert_eq!(iso_datetime(-1), "1969-12-31T23:59:59");
        assert_eq!(minor_to_decimal(123_405), "1234.05");
        assert_eq!(minor_to_decimal(7), "0.07");
        assert_eq!(
            goaml_name("Hélène  O'Brien-Łukasz"),
            "Helene O'Brien-Lukasz"
        );
        assert_eq!(goaml_name("&<>"), "-");
    }
}
