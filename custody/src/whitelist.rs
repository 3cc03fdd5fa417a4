//! The address book: external destinations custody may pay out to. A new address is unusable
//! until its activation delay (24 h by default) has passed, so that a compromised operator
//! who adds an address cannot drain funds to it before anyone notices.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::RejectCode;
use crate::limits::{ADDRESS_BOOK_MAX, ADDRESS_BYTES_MAX, NAME_BYTES_MAX};

/// One whitelisted destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressEntry {
    /// The entry's id, chosen by the caller.
    pub id: u64,
    /// The destination on the ledger.
    pub address: String,
    /// The only asset that may be sent there.
    pub asset: String,
    /// A tag policies can match (for example "exchange", "treasury", "customer").
    pub tag: String,
    /// When it was added.
    pub added_us: u64,
    /// When it becomes usable.
    pub active_from_us: u64,
}

/// The address book.
#[derive(Debug, Clone)]
pub struct AddressBook {
    entries: BTreeMap<u64, AddressEntry>,
    delay_us: u64,
}

impl AddressBook {
    /// An empty book whose new entries wait `delay_s` seconds before use.
    pub fn new(delay_s: u64) -> Self {
        Self {
            entries: BTreeMap::new(),
            delay_us: delay_s.saturating_mul(1_000_000),
        }
    }

    /// Adds an address; it is usable from `now_us + delay`.
    pub fn add(
        &mut self,
        id: u64,
        address: &str,
        asset: &str,
        tag: &str,
        now_us: u64,
    ) -> Result<&AddressEntry, RejectCode> {
        if self.entries.contains_key(&id) {
            return Err(RejectCode::DuplicateAddress);
        }
        let printable = |s: &str, max: usize| {
            !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_graphic())
        };
        if self.entries.len() >= ADDRESS_BOOK_MAX
            || !printable(address, ADDRESS_BYTES_MAX)
            || !printable(asset, NAME_BYTES_MAX)
            || !printable(tag, NAME_BYTES_MAX)
        {
            return Err(RejectCode::AddressRejected);
        }
        let entry = AddressEntry {
            id,
            address: address.to_owned(),
            asset: asset.to_owned(),
            tag: tag.to_owned(),
            added_us: now_us,
            active_from_us: now_us.saturating_add(self.delay_us),
        };
        Ok(self.entries.entry(id).or_insert(entry))
    }

    /// Removes an address (allowed at any time: removing only narrows what can happen).
    pub fn remove(&mut self, id: u64) -> Option<AddressEntry> {
        self.entries.remove(&id)
    }

    /// The entry if it may receive `asset` at `now_us`.
    pub fn usable(&self, id: u64, asset: &str, now_us: u64) -> Result<&AddressEntry, RejectCode> {
        let entry = self
            .entries
            .get(&id)
            .ok_or(RejectCode::DestinationNotWhitelisted)?;
        if entry.asset != asset {
            return Err(RejectCode::AssetMismatch);
        }
        if now_us < entry.active_from_us {
            return Err(RejectCode::DestinationNotYetActive);
        }
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_US: u64 = 3_600_000_000;

    #[test]
    fn new_address_waits_for_its_delay() {
        let mut book = AddressBook::new(24 * 3600);
        book.add(7, "ledger:abc", "EUR", "customer", 10).unwrap();
        assert_eq!(
            book.usable(7, "EUR", 10).unwrap_err(),
            RejectCode::DestinationNotYetActive
        );
        assert_eq!(
            book.usable(7, "EUR", 10 + 24 * HOUR_US - 1).unwrap_err(),
            RejectCode::DestinationNotYetActive
        );
        assert!(book.usable(7, "EUR", 10 + 24 * HOUR_US).is_ok());
        assert_eq!(
            book.usable(7, "CITY", 10 + 24 * HOUR_US).unwrap_err(),
            RejectCode::AssetMismatch
        );
        assert_eq!(
            book.usable(8, "EUR", 10 + 24 * HOUR_US).unwrap_err(),
            RejectCode::DestinationNotWhitelisted
        );
        assert_eq!(
            book.add(7, "ledger:x", "EUR", "t", 0).unwrap_err(),
            RejectCode::DuplicateAddress
        );
        assert_eq!(
            book.add(9, "bad address", "EUR", "t", 0).unwrap_err(),
            RejectCode::AddressRejected
        );
        assert_eq!(
            book.add(9, "", "EUR", "t", 0).unwrap_err(),
            RejectCode::AddressRejected
        );
    }
}
