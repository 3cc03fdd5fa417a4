//! Derivation paths: `m`, `m/0'/1/2'`, with `'`, `h` or `H` marking a hardened step.
//!
//! Parsed strictly, with an error that names the offending step, because a mistyped path
//! silently derives a different (valid-looking) key.

use crate::limits::{PATH_DEPTH_MAX, PATH_TEXT_BYTES_MAX};

/// First hardened index (2^31); an index written in a path must be below it.
pub const HARDENED_OFFSET: u32 = 1 << 31;

/// One step of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChildIndex {
    /// The index as written, below 2^31.
    pub index: u32,
    /// Whether the step is hardened.
    pub hardened: bool,
}

impl ChildIndex {
    /// A normal (non-hardened) step; `None` if `index` ≥ 2^31.
    pub fn normal(index: u32) -> Option<Self> {
        (index < HARDENED_OFFSET).then_some(Self {
            index,
            hardened: false,
        })
    }

    /// A hardened step; `None` if `index` ≥ 2^31.
    pub fn hardened(index: u32) -> Option<Self> {
        (index < HARDENED_OFFSET).then_some(Self {
            index,
            hardened: true,
        })
    }

    /// The 32-bit value BIP-0032 serialises (`index + 2^31` when hardened).
    pub fn raw(self) -> u32 {
        if self.hardened {
            self.index | HARDENED_OFFSET
        } else {
            self.index
        }
    }
}

impl std::fmt::Display for ChildIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.index, if self.hardened { "'" } else { "" })
    }
}

/// A parsed path from the master key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct DerivationPath {
    steps: Vec<ChildIndex>,
}

/// Why a path text does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// Empty text.
    #[error("empty derivation path (expected e.g. \"m/0'/1\")")]
    Empty,
    /// Longer than the text limit.
    #[error("derivation path longer than {PATH_TEXT_BYTES_MAX} bytes")]
    TooLong,
    /// The path does not begin with `m`.
    #[error("derivation path must start with \"m\", found {0:?}")]
    MissingRoot(String),
    /// Two slashes in a row or a trailing slash.
    #[error("empty step at position {position} (steps are counted from 1)")]
    EmptyStep {
        /// 1-based step number.
        position: usize,
    },
    /// A step that is not a decimal number with an optional hardened marker.
    #[error("step {position} {text:?} is not a number with an optional ', h or H")]
    NotANumber {
        /// 1-based step number.
        position: usize,
        /// The step as written.
        text: String,
    },
    /// A step index of 2^31 or more (write it as hardened instead).
    #[error("step {position} {text:?}: index must be below 2^31 (2147483648)")]
    IndexTooLarge {
        /// 1-based step number.
        position: usize,
        /// The step as written.
        text: String,
    },
    /// More than 255 steps.
    #[error("derivation path deeper than {PATH_DEPTH_MAX} steps")]
    TooDeep,
}

impl DerivationPath {
    /// The master key itself (`m`).
    pub fn master() -> Self {
        Self::default()
    }

    /// The steps in order.
    pub fn steps(&self) -> &[ChildIndex] {
        &self.steps
    }

    /// Number of steps (the depth of the derived key).
    pub fn depth(&self) -> usize {
        self.steps.len()
    }

    /// Whether every step is hardened (required for Ed25519 / SLIP-0010).
    pub fn all_hardened(&self) -> bool {
        self.steps.iter().all(|s| s.hardened)
    }

    /// Builds a path from steps, checking the depth limit.
    pub fn from_steps(steps: Vec<ChildIndex>) -> Result<Self, PathError> {
        if steps.len() > PATH_DEPTH_MAX {
            return Err(PathError::TooDeep);
        }
        Ok(Self { steps })
    }

    /// Parses `m`, `m/0'/1/2'`, `m/44h/0H`.
    pub fn parse(text: &str) -> Result<Self, PathError> {
        if text.is_empty() {
            return Err(PathError::Empty);
        }
        if text.len() > PATH_TEXT_BYTES_MAX {
            return Err(PathError::TooLong);
        }
        let mut parts = text.split('/');
        let root = parts.next().unwrap_or_default();
        if root != "m" {
            return Err(PathError::MissingRoot(root.chars().take(16).collect()));
        }
        let mut steps = Vec::new();
        for (i, part) in parts.enumerate() {
            let position = i + 1;
            if steps.len() == PATH_DEPTH_MAX {
                return Err(PathError::TooDeep);
            }
            if part.is_empty() {
                return Err(PathError::EmptyStep { position });
            }
            let (digits, hardened) = match part.strip_suffix(['\'', 'h', 'H']) {
                Some(d) => (d, true),
                None => (part, false),
            };
            let shown = || part.chars().take(24).collect::<String>();
            // Only ASCII digits: no sign, no spaces, no "0x".
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(PathError::NotANumber {
                    position,
                    text: shown(),
                });
            }
            let index: u64 = match digits.parse() {
                Ok(v) => v,
                Err(_) => {
                    return Err(PathError::IndexTooLarge {
                        position,
                        text: shown(),
                    });
                }
            };
            if index >= u64::from(HARDENED_OFFSET) {
                return Err(PathError::IndexTooLarge {
                    position,
                    text: shown(),
                });
            }
            steps.push(ChildIndex {
                index: index as u32,
                hardened,
            });
        }
        Ok(Self { steps })
    }
}

impl std::str::FromStr for DerivationPath {
    type Err = PathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl std::fmt::Display for DerivationPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "m")?;
        for s in &self.steps {
            write!(f, "/{s}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_hardened_markers() {
        let p = DerivationPath::parse("m/0'/1/2h/3H").unwrap();
        let raw: Vec<u32> = p.steps().iter().map(|s| s.raw()).collect();
        assert_eq!(
            raw,
            vec![HARDENED_OFFSET, 1, HARDENED_OFFSET + 2, HARDENED_OFFSET + 3]
        );
        assert_eq!(p.to_string(), "m/0'/1/2'/3'");
        assert_eq!(DerivationPath::parse("m").unwrap().depth(), 0);
        assert_eq!(
            DerivationPath::parse("m/2147483647'").unwrap().steps()[0].raw(),
            u32::MAX
        );
    }

    #[test]
    fn rejects_malformed_paths_with_clear_errors() {
        use PathError::*;
        let cases: &[(&str, PathError)] = &[
            ("", Empty),
            ("0/1", MissingRoot("0".into())),
            ("M/1", MissingRoot("M".into())),
            ("m/", EmptyStep { position: 1 }),
            ("m//1", EmptyStep { position: 1 }),
            ("m/1/", EmptyStep { position: 2 }),
            (
                "m/a",
                NotANumber {
                    position: 1,
                    text: "a".into(),
                },
            ),
            (
                "m/1''",
                NotANumber {
                    position: 1,
                    text: "1''".into(),
                },
            ),
            (
                "m/-1",
                NotANumber {
                    position: 1,
                    text: "-1".into(),
                },
            ),
            (
                "m/+1",
                NotANumber {
                    position: 1,
                    text: "+1".into(),
                },
            ),
            (
                "m/ 1",
                NotANumber {
                    position: 1,
                    text: " 1".into(),
                },
            ),
            (
                "m/'",
                NotANumber {
                    position: 1,
                    text: "'".into(),
                },
            ),
            (
                "m/0x10",
                NotANumber {
                    position: 1,
                    text: "0x10".into(),
                },
            ),
            (
                "m/2147483648",
                IndexTooLarge {
                    position: 1,
                    text: "2147483648".into(),
                },
            ),
            (
                "m/1/2147483648'",
                IndexTooLarge {
                    position: 2,
                    text: "2147483648'".into(),
                },
            ),
            (
                "m/99999999999999999999999",
                IndexTooLarge {
                    position: 1,
                    text: "99999999999999999999999".into(),
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(DerivationPath::parse(text).unwrap_err(), *want, "{text:?}");
        }
        let deep = format!("m{}", "/1".repeat(256));
        assert_eq!(DerivationPath::parse(&deep).unwrap_err(), TooDeep);
        let max = format!("m{}", "/1".repeat(255));
        assert_eq!(DerivationPath::parse(&max).unwrap().depth(), 255);
        assert_eq!(
            DerivationPath::parse(&"m/1".repeat(2000)).unwrap_err(),
            TooLong
        );
    }
}
