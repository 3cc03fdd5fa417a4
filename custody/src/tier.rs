//! Wallet tiers and the only paths funds may take between them.
//!
//! Cold wallets (keys in the HSM, every withdrawal needs a quorum) feed warm wallets, warm feed
//! hot (automated, small float), and funds leave custody only from hot wallets to a
//! whitelisted address. Anything else is refused with [`RejectCode::FlowNotAllowed`].

use serde::{Deserialize, Serialize};

use crate::RejectCode;

/// A wallet's id.
pub type WalletId = u32;

/// How exposed a wallet's key is, from most to least.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Online, signs automatically within policy; holds a small float.
    Hot,
    /// Online signer with tighter policy; refills hot.
    Warm,
    /// Offline, HSM-only; every withdrawal needs a quorum of approvals.
    Cold,
}

/// Where a withdrawal goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Destination {
    /// Another custody wallet (a move between tiers).
    Wallet(WalletId),
    /// An address-book entry outside custody.
    External(u64),
}

/// Checks that a move from a wallet of tier `from` to `to` (`None` = outside custody) is on
/// an allowed path.
pub fn check_flow(from: Tier, to: Option<Tier>) -> Result<(), RejectCode> {
    match (from, to) {
        (Tier::Cold, Some(Tier::Warm)) | (Tier::Warm, Some(Tier::Hot)) | (Tier::Hot, None) => {
            Ok(())
        }
        _ => Err(RejectCode::FlowNotAllowed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cold_warm_hot_out() {
        let tiers = [None, Some(Tier::Hot), Some(Tier::Warm), Some(Tier::Cold)];
        let mut allowed = Vec::new();
        for from in [Tier::Hot, Tier::Warm, Tier::Cold] {
            for to in tiers {
                match check_flow(from, to) {
                    Ok(()) => allowed.push((from, to)),
                    Err(code) => assert_eq!(code, RejectCode::FlowNotAllowed),
                }
            }
        }
        assert_eq!(
            allowed,
            vec![
                (Tier::Hot, None),
                (Tier::Warm, Some(Tier::Hot)),
                (Tier::Cold, Some(Tier::Warm))
            ]
        );
    }
}
