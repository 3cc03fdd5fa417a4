//! Decimal strings at the API edge: parsing (plain decimal notation only, never floats or
//! exponents) and the canonical form the API sends (no trailing zeros, no exponent, no "+").

use rust_decimal::Decimal;
use std::str::FromStr;

use super::errors::ApiReject;
use tonic::Status;

/// Longest decimal string accepted, in bytes.
pub const DECIMAL_BYTES_MAX: usize = 40;

/// Parses a plain decimal string: optional "-", digits, optionally "." and digits. Anything
/// else (exponents, "+", spaces, "NaN", empty) is refused with INVALID_DECIMAL naming `field`.
pub fn parse(field: &str, text: &str) -> Result<Decimal, Status> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let well_formed = text.len() <= DECIMAL_BYTES_MAX
        && !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()));
    if !well_formed {
        return Err(ApiReject::InvalidDecimal.status(field, &format!("{text:?}")));
    }
    Decimal::from_str(text).map_err(|e| ApiReject::InvalidDecimal.status(field, &e.to_string()))
}

/// The canonical text of a decimal.
pub fn canonical(value: Decimal) -> String {
    value.normalize().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_decimals_parse_and_print_canonically() {
        assert_eq!(canonical(parse("p", "1.230").unwrap()), "1.23");
        assert_eq!(canonical(parse("p", "100").unwrap()), "100");
        assert_eq!(canonical(parse("p", "0.000001").unwrap()), "0.000001");
        assert_eq!(canonical(parse("p", "-2.50").unwrap()), "-2.5");
        assert_eq!(canonical(Decimal::new(0, 2)), "0");
    }

    #[test]
    fn everything_else_is_refused() {
        for bad in [
            "", "1e3", "+1", " 1", "1.", ".5", "NaN", "1,5", "0x10", "--1", "1.2.3",
        ] {
            let status = parse("price", bad).expect_err(bad);
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{bad}");
        }
    }
}
