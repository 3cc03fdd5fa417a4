//! Batch input for the command line: queries and name pairs read from CSV files with a header
//! row. Columns are found by name; unknown columns are ignored, so exports from other systems
//! can be fed as they are.

use super::model::{Gender, PartialDate, Query};

/// Most rows read from one batch file.
pub const BATCH_ROWS_MAX: usize = 10_000_000;

/// Why a batch file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchError {
    /// A required column is missing from the header.
    #[error("missing column {0:?}")]
    MissingColumn(&'static str),
    /// The CSV itself is broken.
    #[error("line {line}: {reason}")]
    Row {
        /// 1-based line.
        line: u64,
        /// What was wrong.
        reason: String,
    },
    /// More than `BATCH_ROWS_MAX` rows.
    #[error("more than {BATCH_ROWS_MAX} rows")]
    TooManyRows,
}

fn reader(bytes: &[u8]) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes)
}

fn column(headers: &csv::StringRecord, name: &str) -> Option<usize> {
    headers
        .iter()
        .position(|h| h.trim_start_matches('\u{FEFF}').eq_ignore_ascii_case(name))
}

fn row_error(error: &csv::Error) -> BatchError {
    BatchError::Row {
        line: error.position().map(|p| p.line()).unwrap_or(0),
        reason: error.to_string(),
    }
}

/// Reads queries: `full_name` (required), `date_of_birth`, `nationality`, `gender`, and
/// `identifiers` (separated by `;` or `|`). A date that cannot be read is ignored for that row
/// rather than refusing the file: the name is still screened.
pub fn read_queries(bytes: &[u8]) -> Result<Vec<Query>, BatchError> {
    let mut reader = reader(bytes);
    let headers = reader.headers().map_err(|e| row_error(&e))?.clone();
    let name = column(&headers, "full_name").ok_or(BatchError::MissingColumn("full_name"))?;
    let dob = column(&headers, "date_of_birth");
    let nationality = column(&headers, "nationality");
    let gender = column(&headers, "gender");
    let identifiers = column(&headers, "identifiers");
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| row_error(&e))?;
        if out.len() >= BATCH_ROWS_MAX {
            return Err(BatchError::TooManyRows);
        }
        let get = |i: Option<usize>| i.and_then(|i| record.get(i)).unwrap_or("");
        out.push(Query {
            full_name: get(Some(name)).to_owned(),
            date_of_birth: PartialDate::parse(get(dob)),
            nationality: Some(get(nationality).to_owned()).filter(|n| !n.is_empty()),
            gender: Gender::parse(get(gender)),
            identifiers: get(identifiers)
                .split([';', '|'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        });
    }
    Ok(out)
}

/// Reads name pairs: columns `name1` and `name2`.
pub fn read_pairs(bytes: &[u8]) -> Result<Vec<(String, String)>, BatchError> {
    let mut reader = reader(bytes);
    let headers = reader.headers().map_err(|e| row_error(&e))?.clone();
    let first = column(&headers, "name1").ok_or(BatchError::MissingColumn("name1"))?;
    let second = column(&headers, "name2").ok_or(BatchError::MissingColumn("name2"))?;
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| row_error(&e))?;
        if out.len() >= BATCH_ROWS_MAX {
            return Err(BatchError::TooManyRows);
        }
        out.push((
            record.get(first).unwrap_or("").to_owned(),
            record.get(second).unwrap_or("").to_owned(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_queries_by_column_name() {
        let csv = "id,nationality,full_name,date_of_birth,identifiers\n\
                   7,IQ,\"Hussein, Saddam\",1937-04-28,A123;0xabc\n\
                   8,,Jane Doe,not a date,\n";
        let queries = read_queries(csv.as_bytes()).expect("valid CSV");
        assert_eq!(queries.len(), 2);
        assert_eq!(queries[0].full_name, "Hussein, Saddam");
        assert_eq!(queries[0].nationality.as_deref(), Some("IQ"));
        assert_eq!(queries[0].identifiers, vec!["A123", "0xabc"]);
        assert!(queries[0].date_of_birth.is_some());
        assert_eq!(queries[1].date_of_birth, None);
        assert_eq!(queries[1].nationality, None);
    }

    #[test]
    fn missing_columns_are_refused() {
        assert_eq!(
            read_queries(b"name\nx\n"),
            Err(BatchError::MissingColumn("full_name"))
        );
        assert_eq!(
            read_pairs(b"name1\nx\n"),
            Err(BatchError::MissingColumn("name2"))
        );
        assert_eq!(read_pairs(b"name1,name2\na,b\n").map(|p| p.len()), Ok(1));
    }
}
