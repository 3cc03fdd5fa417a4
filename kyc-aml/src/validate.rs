//! Small checks shared by every parser of outside input: bounded text, ISO 3166 alpha-2
//! country codes, `YYYY-MM-DD` dates. Each returns whether the value is acceptable; callers
//! attach their own reject code.

use crate::limits::FIELD_LEN_MAX;

/// Non-empty after trimming, at most `max` bytes, no control characters.
pub fn text_ok(s: &str, max: usize) -> bool {
    !s.trim().is_empty() && s.len() <= max && !s.chars().any(char::is_control)
}

/// A bounded name field (`FIELD_LEN_MAX`).
pub fn field_ok(s: &str) -> bool {
    text_ok(s, FIELD_LEN_MAX)
}

/// Two upper-case ASCII letters (ISO 3166-1 alpha-2 shape; the list itself is the FIU's).
pub fn country_ok(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase())
}

/// `YYYY-MM-DD` with a month 1..=12 and a day valid for that month (leap years included).
pub fn date_ok(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = &s[r];
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (Some(y), Some(m), Some(d)) = (num(0..4), num(5..7), num(8..10)) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    y >= 1753 && (1..=days).contains(&d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert!(date_ok("2024-02-29"));
        assert!(!date_ok("2023-02-29"));
        assert!(!date_ok("2023-13-01"));
        assert!(!date_ok("2023-1-01"));
        assert!(!date_ok("1700-01-01"));
        assert!(!date_ok("+023-01-01"));
    }

    #[test]
    fn countries_and_text() {
        assert!(country_ok("FR"));
        assert!(!country_ok("fr"));
        assert!(!country_ok("FRA"));
        assert!(field_ok("Marie Dupont"));
        assert!(!field_ok("  "));
        assert!(!field_ok("a\u{0}b"));
        assert!(!field_ok(&"x".repeat(FIELD_LEN_MAX + 1)));
    }
}
