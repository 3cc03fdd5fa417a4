//! Synthetic liabilities for the proof-of-reserves benchmark (`rempart custody por-bench`):
//! reproducible from a seed, so any figure can be re-run exactly.

use super::Liability;

/// Asset codes used by the benchmark: the exchange's three, then `A4`, `A5`, ….
pub fn asset_codes(count: usize) -> Vec<String> {
    let known = ["CITY", "EUR", "LCL"];
    (0..count)
        .map(|i| {
            known
                .get(i)
                .map_or_else(|| format!("A{}", i + 1), |c| (*c).to_owned())
        })
        .collect()
}

/// SplitMix64: a tiny, well-known generator; quality is ample for test balances and it keeps
/// the library free of a randomness dependency.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `accounts` clients with `assets` balances each, below 10^12 minor units so that sums of up
/// to 2^24 accounts stay far from u64's limit.
pub fn synthetic_liabilities(accounts: usize, assets: usize, seed: u64) -> Vec<Liability> {
    let mut state = seed;
    (0..accounts)
        .map(|i| {
            let mut salt = [0u8; 32];
            for chunk in salt.chunks_mut(8) {
                chunk.copy_from_slice(&splitmix64(&mut state).to_le_bytes());
            }
            let balances = (0..assets)
                .map(|_| i128::from(splitmix64(&mut state) % 1_000_000_000_000))
                .collect();
            Liability {
                account_id: 1_000_000 + i as u64,
                salt,
                balances,
            }
        })
        .collect()
}
