//! The canonical binary encoding shared by everything that is hashed, signed or stored:
//! little-endian fixed-width integers, fixed-size byte arrays, and sequences prefixed by a
//! `u32` count that the reader bounds before allocating.
//!
//! One encoding for hashing and storage means a block's hash is over exactly the bytes on disk.
//! The [`Reader`] never panics and never allocates more than its caller's limit allows, so a
//! corrupt or hostile record costs a [`DecodeError`], not a crash.

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before the value did.
    #[error("truncated: needed {needed} more bytes for {what}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// How many bytes were missing.
        needed: usize,
    },
    /// A sequence count is above its limit.
    #[error("{what}: count {count} exceeds the limit {max}")]
    TooMany {
        /// What was being read.
        what: &'static str,
        /// The count found.
        count: u64,
        /// The limit.
        max: u64,
    },
    /// A tag or version byte has no meaning.
    #[error("{what}: unknown tag {tag}")]
    UnknownTag {
        /// What was being read.
        what: &'static str,
        /// The tag found.
        tag: u64,
    },
    /// Bytes were left over after the value.
    #[error("{0} trailing bytes after the value")]
    Trailing(usize),
}

/// Appends canonical encodings to a byte vector.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty writer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity),
        }
    }

    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// The bytes written so far, borrowed.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// One byte.
    pub fn u8(&mut self, value: u8) {
        self.buf.push(value);
    }
    /// Little-endian `u16`.
    pub fn u16(&mut self, value: u16) {
        self.buf.extend_from_slice(&value.to_le_bytes());
    }
    /// Little-endian `u32`.
    pub fn u32(&mut self, value: u32) {
        self.buf.extend_from_slice(&value.to_le_bytes());
    }
    /// Little-endian `u64`.
    pub fn u64(&mut self, value: u64) {
        self.buf.extend_from_slice(&value.to_le_bytes());
    }
    /// Little-endian `u128`.
    pub fn u128(&mut self, value: u128) {
        self.buf.extend_from_slice(&value.to_le_bytes());
    }
    /// Raw bytes with no length (the reader knows the size).
    pub fn bytes(&mut self, value: &[u8]) {
        self.buf.extend_from_slice(value);
    }
    /// A sequence count.
    pub fn count(&mut self, count: usize) {
        // Every sequence is bounded far below u32::MAX by a `*_MAX` limit before it is built.
        self.u32(count as u32);
    }
    /// Variable-length bytes: `u32` length then the bytes.
    pub fn var_bytes(&mut self, value: &[u8]) {
        self.count(value.len());
        self.bytes(value);
    }
}

/// Reads canonical encodings from a byte slice; every method fails cleanly on short input.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads from `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Fails unless everything was read.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing(self.rest.len()))
        }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated {
                what,
                needed: n - self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// A fixed-size array.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }
    /// Little-endian `u16`.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    /// Little-endian `u32`.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    /// Little-endian `u64`.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    /// Little-endian `u128`.
    pub fn u128(&mut self, what: &'static str) -> Result<u128, DecodeError> {
        Ok(u128::from_le_bytes(self.array(what)?))
    }

    /// A sequence count, refused above `max` and above what the remaining input could hold
    /// at `min_item_size` bytes per item (so a forged count cannot make us allocate).
    pub fn count(
        &mut self,
        max: usize,
        min_item_size: usize,
        what: &'static str,
    ) -> Result<usize, DecodeError> {
        let count = self.u32(what)? as usize;
        if count > max {
            return Err(DecodeError::TooMany {
                what,
                count: count as u64,
                max: max as u64,
            });
        }
        let needed = count.saturating_mul(min_item_size);
        if needed > self.rest.len() {
            return Err(DecodeError::Truncated {
                what,
                needed: needed - self.rest.len(),
            });
        }
        Ok(count)
    }

    /// Variable-length bytes of at most `max` bytes.
    pub fn var_bytes(&mut self, max: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.count(max, 1, what)?;
        self.take(len, what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_round_trip_little_endian() {
        let mut w = Writer::new();
        w.u8(1);
        w.u16(0x0203);
        w.u32(0x0405_0607);
        w.u64(8);
        w.u128(u128::MAX - 1);
        w.var_bytes(b"abc");
        let bytes = w.into_bytes();
        assert_eq!(&bytes[1..3], &[0x03, 0x02]);
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8("a").unwrap(), 1);
        assert_eq!(r.u16("b").unwrap(), 0x0203);
        assert_eq!(r.u32("c").unwrap(), 0x0405_0607);
        assert_eq!(r.u64("d").unwrap(), 8);
        assert_eq!(r.u128("e").unwrap(), u128::MAX - 1);
        assert_eq!(r.var_bytes(10, "f").unwrap(), b"abc");
        r.finish().unwrap();
    }

    #[test]
    fn short_input_and_forged_counts_are_errors() {
        let mut r = Reader::new(&[1, 2]);
        assert!(matches!(r.u32("x"), Err(DecodeError::Truncated { .. })));
        let forged = u32::MAX.to_le_bytes();
        let mut r = Reader::new(&forged);
        assert!(matches!(
            r.count(10, 1, "items"),
            Err(DecodeError::TooMany { .. })
        ));
        let mut r = Reader::new(&[5, 0, 0, 0, 1]);
        assert!(matches!(
            r.count(10, 4, "items"),
            Err(DecodeError::Truncated { .. })
        ));
    }
}
