//! Rolling-window velocity: how much and how many withdrawals an account or a wallet made in
//! the last W seconds, exact to the second.
//!
//! An event at second `t` counts at second `now` for a window of `W` seconds exactly when
//! `t <= now` and `now - t < W`. Times only move forward (the withdrawal machine refuses a
//! command from the past), so each key's events sit in time order in a deque with running
//! totals, and a window is two binary searches and a subtraction, whatever its length.

use std::collections::{HashMap, VecDeque};

use crate::CustodyError;
use crate::limits::VELOCITY_EVENTS_PER_KEY_MAX;
use crate::tier::WalletId;

/// Whose velocity is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VelocityKey {
    /// A customer account.
    Account(u64),
    /// A custody wallet.
    Wallet(WalletId),
}

/// Amount and count inside a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Sum of amounts, in minor units.
    pub amount_minor: u128,
    /// Number of events.
    pub count: u64,
}

/// One key's events in time order, each with the running total of amounts up to and
/// including it, so that any window's sum is one subtraction after two binary searches.
#[derive(Debug, Clone, Default)]
struct KeyEvents {
    /// Running total before the oldest event kept (what the dropped events added up to).
    base: u128,
    /// (second, running total including this event). Running totals wrap; a difference of
    /// two is exact while the window's true sum is below 2^128, far above any real amount.
    events: VecDeque<(u64, u128)>,
}

/// Events per key, kept as long as the longest window any rule uses.
#[derive(Debug, Clone, Default)]
pub struct VelocityLedger {
    keys: HashMap<VelocityKey, KeyEvents>,
    horizon_s: u64,
}

impl VelocityLedger {
    /// Keeps events for `horizon_s` seconds (the longest window in the policy).
    pub fn new(horizon_s: u64) -> Self {
        Self {
            keys: HashMap::new(),
            horizon_s,
        }
    }

    /// Changes the horizon (after a policy change); it only grows, so no window a rule may
    /// still ask about loses events.
    pub fn set_horizon(&mut self, horizon_s: u64) {
        self.horizon_s = self.horizon_s.max(horizon_s);
    }

    /// Records an event at second `t_s` (not earlier than the key's last event).
    pub fn record(
        &mut self,
        key: VelocityKey,
        t_s: u64,
        amount_minor: u128,
    ) -> Result<(), CustodyError> {
        let horizon = self.horizon_s;
        let k = self.keys.entry(key).or_default();
        if k.events.back().is_some_and(|&(t, _)| t > t_s) {
            return Err(CustodyError::TimeWentBackwards {
                now_us: t_s,
                last_us: k.events.back().map_or(0, |e| e.0),
            });
        }
        while let Some(&(t, running)) = k.events.front() {
            if t_s.saturating_sub(t) < horizon {
                break;
            }
            k.base = running;
            k.events.pop_front();
        }
        if k.events.len() >= VELOCITY_EVENTS_PER_KEY_MAX {
            return Err(CustodyError::Capacity("velocity events per key"));
        }
        let last = k.events.back().map_or(k.base, |e| e.1);
        k.events.push_back((t_s, last.wrapping_add(amount_minor)));
        Ok(())
    }

    /// Amount and count of `key`'s events in the `window_s` seconds ending at `now_s`.
    pub fn usage(&self, key: VelocityKey, now_s: u64, window_s: u64) -> Usage {
        let Some(k) = self.keys.get(&key) else {
            return Usage::default();
        };
        // In the window: t <= now_s and now_s - t < window_s, i.e. t > now_s - window_s.
        let hi = k.events.partition_point(|&(t, _)| t <= now_s);
        let lo = match now_s.checked_sub(window_s) {
            Some(oldest_excluded) => k.events.partition_point(|&(t, _)| t <= oldest_excluded),
            None => 0,
        };
        if lo >= hi {
            return Usage::default();
        }
        let before = if lo == 0 { k.base } else { k.events[lo - 1].1 };
        Usage {
            amount_minor: k.events[hi - 1].1.wrapping_sub(before),
            count: (hi - lo) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn window_edges_are_exact_to_the_second() {
        let mut v = VelocityLedger::new(3600);
        let k = VelocityKey::Account(1);
        v.record(k, 100, 5).unwrap();
        assert_eq!(
            v.usage(k, 100, 3600),
            Usage {
                amount_minor: 5,
                count: 1
            }
        );
        assert_eq!(v.usage(k, 3699, 3600).count, 1);
        assert_eq!(v.usage(k, 3700, 3600).count, 0);
        assert_eq!(v.usage(k, 99, 3600).count, 0);
        assert_eq!(v.usage(VelocityKey::Wallet(1), 100, 3600).count, 0);
        assert!(matches!(
            v.record(k, 99, 1),
            Err(CustodyError::TimeWentBackwards { .. })
        ));
        // Events older than the horizon are dropped on the next record, and stop counting.
        v.record(k, 3_700, 7).unwrap();
        assert_eq!(
            v.usage(k, 3_700, 3_600),
            Usage {
                amount_minor: 7,
                count: 1
            }
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Against a naive model: keep every event, filter on each query.
        #[test]
        fn matches_naive_model(
            steps in proptest::collection::vec((0u64..50, 0u8..3, 0u128..1_000_000, 1u64..200), 1..200),
        ) {
            let horizon = 200;
            let mut ledger = VelocityLedger::new(horizon);
            let mut naive: Vec<(VelocityKey, u64, u128)> = Vec::new();
            let mut now = 0u64;
            for (dt, key, amount, window) in steps {
                now += dt;
                let key = if key == 2 { VelocityKey::Wallet(1) } else { VelocityKey::Account(u64::from(key)) };
                for k in [VelocityKey::Account(0), VelocityKey::Account(1), VelocityKey::Wallet(1)] {
                    let want = naive.iter().filter(|(nk, t, _)| *nk == k && *t <= now && now - *t < window)
                        .fold(Usage::default(), |u, (_, _, a)| Usage { amount_minor: u.amount_minor + a, count: u.count + 1 });
                    prop_assert_eq!(ledger.usage(k, now, window), want);
                }
                ledger.record(key, now, amount).unwrap();
                naive.push((key, now, amount));
            }
        }
    }
}
