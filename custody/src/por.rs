//! Proof of reserves: a Merkle-sum tree over every client liability, one sum per asset in every
//! node, so one inclusion proof shows a client all their balances at once.
//!
//! - Account commitment: `C = SHA-256(0x10 || account_id (u64 BE) || salt (32))`; the salt is
//!   per account and per publication, so the published tree reveals no ids.
//! - Leaf: `SHA-256(0x00 || C || balance_1 .. balance_k)` (u64 BE each), sums = the balances.
//! - Node: `SHA-256(0x01 || left_hash || left_sums || right_hash || right_sums)`, sums = left +
//!   right, checked. Each child's sums are hashed separately, not just their total: hashing
//!   only the total lets a prover shift liabilities between siblings (ePrint 2018/1139).
//! - A level with an odd number of nodes is padded with `EMPTY = SHA-256(0x02)` with zero sums.
//! - Published root: `SHA-256(0x03 || levels || asset count || asset codes (length-prefixed)
//!   || top_hash || top_sums)`, binding every field of a proof into one value.
//!
//! Balances are unsigned: negative liabilities are refused at build time, as is any sum that
//! would overflow u64. The wire formats (compact binary and JSON) are in `docs/custody-por.md`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::limits::{
    POR_ACCOUNTS_MAX, POR_ASSET_CODE_BYTES_MAX, POR_ASSETS_MAX, POR_PROOF_FILE_BYTES_MAX,
};

const TAG_LEAF: u8 = 0x00;
const TAG_NODE: u8 = 0x01;
const TAG_EMPTY: u8 = 0x02;
const TAG_ROOT: u8 = 0x03;
const TAG_COMMITMENT: u8 = 0x10;
const MAGIC: &[u8; 4] = b"RPOR";
const FORMAT_VERSION: u8 = 1;
/// Deepest tree a proof may describe (2^32 leaves, far above [`POR_ACCOUNTS_MAX`]).
const LEVELS_MAX: usize = 32;

/// One client's liabilities, as the ledger reports them (signed, so that a negative balance
/// can be seen and refused rather than wrapped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Liability {
    /// The client account.
    pub account_id: u64,
    /// Per-account secret salt for this publication.
    pub salt: [u8; 32],
    /// One balance per asset, in minor units, in the tree's asset order.
    pub balances: Vec<i128>,
}

/// Why a tree could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No accounts, or more than the limit.
    #[error("a tree needs 1 to {POR_ACCOUNTS_MAX} accounts, got {0}")]
    AccountCount(usize),
    /// No assets, more than the limit, or a malformed or repeated code.
    #[error("invalid asset list: {0}")]
    Assets(String),
    /// An account has the wrong number of balances.
    #[error("account {account_id} has {got} balances, expected {want}")]
    BalanceCount {
        /// The account.
        account_id: u64,
        /// Balances given.
        got: usize,
        /// Assets in the tree.
        want: usize,
    },
    /// A negative liability.
    #[error("account {account_id} has a negative balance in {asset}")]
    NegativeBalance {
        /// The account.
        account_id: u64,
        /// The asset.
        asset: String,
    },
    /// A balance or a sum above u64.
    #[error("sum overflow in {asset}")]
    Overflow {
        /// The asset.
        asset: String,
    },
    /// Two entries for one account.
    #[error("account {0} appears twice")]
    DuplicateAccount(u64),
}

/// Why a proof does not verify. Any mismatch is an error: the proof proves nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The file is neither a binary nor a JSON proof, or is malformed.
    #[error("malformed proof: {0}")]
    Malformed(String),
    /// A sum overflowed on the way up: the sibling sums are forged.
    #[error("sum overflow at level {0}: the proof is forged")]
    Overflow(usize),
    /// The recomputed root differs from the proof's root.
    #[error("root mismatch: the proof computes {computed}, it claims {claimed}")]
    RootMismatch {
        /// Hex of the recomputed root.
        computed: String,
        /// Hex of the claimed root.
        claimed: String,
    },
    /// The recomputed totals differ from the proof's totals.
    #[error("totals mismatch: the proof computes {computed:?}, it claims {claimed:?}")]
    TotalsMismatch {
        /// Recomputed totals.
        computed: Vec<u64>,
        /// Claimed totals.
        claimed: Vec<u64>,
    },
    /// The root is not the one published.
    #[error("the proof's root {proof} is not the published root {published}")]
    NotPublishedRoot {
        /// Proof root hex.
        proof: String,
        /// Published root hex.
        published: String,
    },
}

/// The published statement: root and totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// Asset codes, in order.
    pub assets: Vec<String>,
    /// Number of accounts.
    pub accounts: u64,
    /// Root, hex.
    pub root: String,
    /// Total liabilities per asset, minor units.
    pub totals: Vec<u64>,
}

/// A built tree.
#[derive(Debug, Clone)]
pub struct SumTree {
    assets: Vec<String>,
    /// Level 0 = leaves; each level padded to even length except the top.
    hashes: Vec<Vec<[u8; 32]>>,
    /// Sums per node, `assets.len()` per node, same layout as `hashes`.
    sums: Vec<Vec<u64>>,
    /// Leaf index per account and the account's inputs, for making proofs.
    accounts: Vec<(u64, [u8; 32])>,
    root: [u8; 32],
}

fn empty_hash() -> [u8; 32] {
    Sha256::digest([TAG_EMPTY]).into()
}

/// The account commitment.
pub fn commitment(account_id: u64, salt: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([TAG_COMMITMENT]);
    h.update(account_id.to_be_bytes());
    h.update(salt);
    h.finalize().into()
}

fn leaf_hash(commitment: &[u8; 32], balances: &[u64]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([TAG_LEAF]);
    h.update(commitment);
    for b in balances {
        h.update(b.to_be_bytes());
    }
    h.finalize().into()
}

fn node_hash(left: &[u8; 32], left_sums: &[u64], right: &[u8; 32], right_sums: &[u64]) -> [u8; 32] {
    // One buffer, one update: the node is hashed 1 M times per publication.
    let mut buf = [0u8; 1 + 2 * (32 + 8 * POR_ASSETS_MAX)];
    let mut at = 0;
    buf[at] = TAG_NODE;
    at += 1;
    for (hash, sums) in [(left, left_sums), (right, right_sums)] {
        buf[at..at + 32].copy_from_slice(hash);
        at += 32;
        for s in sums {
            buf[at..at + 8].copy_from_slice(&s.to_be_bytes());
            at += 8;
        }
    }
    Sha256::digest(&buf[..at]).into()
}

fn root_hash(levels: usize, assets: &[String], top: &[u8; 32], top_sums: &[u64]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([TAG_ROOT, levels as u8, assets.len() as u8]);
    for code in assets {
        h.update([code.len() as u8]);
        h.update(code.as_bytes());
    }
    h.update(top);
    for s in top_sums {
        h.update(s.to_be_bytes());
    }
    h.finalize().into()
}

fn check_assets(assets: &[String]) -> Result<(), String> {
    if assets.is_empty() || assets.len() > POR_ASSETS_MAX {
        return Err(format!(
            "1 to {POR_ASSETS_MAX} assets, got {}",
            assets.len()
        ));
    }
    for (i, code) in assets.iter().enumerate() {
        if code.is_empty()
            || code.len() > POR_ASSET_CODE_BYTES_MAX
            || !code.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(format!("asset code {code:?}"));
        }
        if assets[..i].contains(code) {
            return Err(format!("asset {code:?} listed twice"));
        }
    }
    Ok(())
}

impl SumTree {
    /// Builds the tree. Accounts are placed in the order given.
    pub fn build(assets: &[String], liabilities: &[Liability]) -> Result<Self, BuildError> {
        check_assets(assets).map_err(BuildError::Assets)?;
        let n = liabilities.len();
        if n == 0 || n > POR_ACCOUNTS_MAX {
            return Err(BuildError::AccountCount(n));
        }
        let k = assets.len();
        let mut leaf_hashes = Vec::with_capacity(n + 1);
        let mut leaf_sums = Vec::with_capacity((n + 1) * k);
        let mut accounts = Vec::with_capacity(n);
        let mut balances = vec![0u64; k];
        for l in liabilities {
            if l.balances.len() != k {
                return Err(BuildError::BalanceCount {
                    account_id: l.account_id,
                    got: l.balances.len(),
                    want: k,
                });
            }
            for (j, (&b, out)) in l.balances.iter().zip(balances.iter_mut()).enumerate() {
                if b < 0 {
                    return Err(BuildError::NegativeBalance {
                        account_id: l.account_id,
                        asset: assets[j].clone(),
                    });
                }
                *out = u64::try_from(b).map_err(|_| BuildError::Overflow {
                    asset: assets[j].clone(),
                })?;
            }
            leaf_hashes.push(leaf_hash(&commitment(l.account_id, &l.salt), &balances));
            leaf_sums.extend_from_slice(&balances);
            accounts.push((l.account_id, l.salt));
        }
        {
            let mut ids: Vec<u64> = accounts.iter().map(|a| a.0).collect();
            ids.sort_unstable();
            if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
                return Err(BuildError::DuplicateAccount(w[0]));
            }
        }
        let mut hashes = vec![leaf_hashes];
        let mut sums = vec![leaf_sums];
        let empty = empty_hash();
        let zeros = vec![0u64; k];
        while hashes.last().map_or(0, Vec::len) > 1 {
            let (level_hashes, level_sums) = (hashes.len() - 1, sums.len() - 1);
            if hashes[level_hashes].len() % 2 == 1 {
                hashes[level_hashes].push(empty);
                sums[level_sums].extend_from_slice(&zeros);
            }
            let below_h = &hashes[level_hashes];
            let below_s = &sums[level_sums];
            let parents = below_h.len() / 2;
            let mut up_h = Vec::with_capacity(parents + 1);
            let mut up_s = Vec::with_capacity((parents + 1) * k);
            for p in 0..parents {
                let (l, r) = (2 * p, 2 * p + 1);
                let ls = &below_s[l * k..(l + 1) * k];
                let rs = &below_s[r * k..(r + 1) * k];
                up_h.push(node_hash(&below_h[l], ls, &below_h[r], rs));
                for j in 0..k {
                    let s = ls[j]
                        .checked_add(rs[j])
                        .ok_or_else(|| BuildError::Overflow {
                            asset: assets[j].clone(),
                        })?;
                    up_s.push(s);
                }
            }
            hashes.push(up_h);
            sums.push(up_s);
        }
        let levels = hashes.len() - 1;
        let root = root_hash(levels, assets, &hashes[levels][0], &sums[levels][..k]);
        Ok(Self {
            assets: assets.to_vec(),
            hashes,
            sums,
            accounts,
            root,
        })
    }

    /// Number of levels above the leaves.
    pub fn levels(&self) -> usize {
        self.hashes.len() - 1
    }

    /// The published root.
    pub fn root(&self) -> [u8; 32] {
        self.root
    }

    /// Total liabilities per asset.
    pub fn totals(&self) -> &[u64] {
        let k = self.assets.len();
        &self.sums[self.levels()][..k]
    }

    /// Root, totals and account count, to publish.
    pub fn published(&self) -> Published {
        Published {
            assets: self.assets.clone(),
            accounts: self.accounts.len() as u64,
            root: hex::encode(self.root),
            totals: self.totals().to_vec(),
        }
    }

    /// The inclusion proof of the account at `leaf_index` (the order given to `build`).
    pub fn proof(&self, leaf_index: usize) -> Option<InclusionProof> {
        let (account_id, salt) = *self.accounts.get(leaf_index)?;
        let k = self.assets.len();
        let mut siblings = Vec::with_capacity(self.levels());
        let mut i = leaf_index;
        for level in 0..self.levels() {
            let s = i ^ 1;
            siblings.push(Sibling {
                hash: self.hashes[level][s],
                sums: self.sums[level][s * k..(s + 1) * k].to_vec(),
            });
            i /= 2;
        }
        Some(InclusionProof {
            assets: self.assets.clone(),
            account_id,
            salt,
            balances: self.sums[0][leaf_index * k..(leaf_index + 1) * k].to_vec(),
            leaf_index: leaf_index as u64,
            siblings,
            root: self.root,
            totals: self.totals().to_vec(),
        })
    }
}

/// A sibling on the path to the root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sibling {
    /// Its hash.
    #[serde(with = "hex32")]
    pub hash: [u8; 32],
    /// Its sums, one per asset.
    pub sums: Vec<u64>,
}

/// What a client receives to check that their balances are counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// Asset codes, in order.
    pub assets: Vec<String>,
    /// The client's account.
    pub account_id: u64,
    /// The client's salt.
    #[serde(with = "hex32")]
    pub salt: [u8; 32],
    /// The client's balances.
    pub balances: Vec<u64>,
    /// Position of the leaf (its bits choose left or right at each level).
    pub leaf_index: u64,
    /// Siblings from the leaf's level up.
    pub siblings: Vec<Sibling>,
    /// The published root.
    #[serde(with = "hex32")]
    pub root: [u8; 32],
    /// The published totals.
    pub totals: Vec<u64>,
}

/// What a verified proof shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    /// Root, hex.
    pub root: String,
    /// Asset codes.
    pub assets: Vec<String>,
    /// Totals per asset.
    pub totals: Vec<u64>,
    /// The client's account.
    pub account_id: u64,
    /// The client's balances.
    pub balances: Vec<u64>,
}

impl InclusionProof {
    /// Recomputes the root from the leaf up and checks it and the totals against the proof's.
    pub fn verify(&self) -> Result<Verified, ProofError> {
        let malformed = |m: &str| ProofError::Malformed(m.to_owned());
        check_assets(&self.assets).map_err(ProofError::Malformed)?;
        let k = self.assets.len();
        let levels = self.siblings.len();
        if levels > LEVELS_MAX {
            return Err(malformed("too many levels"));
        }
        // Bits above the tree's height would be ignored, so a proof carrying them is refused:
        // every field must matter.
        if levels < 64 && self.leaf_index >> levels != 0 {
            return Err(malformed("leaf index outside the tree"));
        }
        if self.balances.len() != k
            || self.totals.len() != k
            || self.siblings.iter().any(|s| s.sums.len() != k)
        {
            return Err(malformed(
                "balances, totals and sibling sums must have one value per asset",
            ));
        }
        let mut hash = leaf_hash(&commitment(self.account_id, &self.salt), &self.balances);
        let mut sums = self.balances.clone();
        for (level, sibling) in self.siblings.iter().enumerate() {
            let right_child = (self.leaf_index >> level) & 1 == 1;
            hash = if right_child {
                node_hash(&sibling.hash, &sibling.sums, &hash, &sums)
            } else {
                node_hash(&hash, &sums, &sibling.hash, &sibling.sums)
            };
            for (s, o) in sums.iter_mut().zip(&sibling.sums) {
                *s = s.checked_add(*o).ok_or(ProofError::Overflow(level))?;
            }
        }
        let root = root_hash(levels, &self.assets, &hash, &sums);
        if root != self.root {
            return Err(ProofError::RootMismatch {
                computed: hex::encode(root),
                claimed: hex::encode(self.root),
            });
        }
        if sums != self.totals {
            return Err(ProofError::TotalsMismatch {
                computed: sums,
                claimed: self.totals.clone(),
            });
        }
        Ok(Verified {
            root: hex::encode(root),
            assets: self.assets.clone(),
            totals: sums,
            account_id: self.account_id,
            balances: self.balances.clone(),
        })
    }

    /// The compact binary encoding (see `docs/custody-por.md`).
    pub fn to_bytes(&self) -> Vec<u8> {
        let k = self.assets.len();
        let mut out = Vec::with_capacity(64 + 8 * k + self.siblings.len() * (32 + 8 * k) + 80);
        out.extend_from_slice(MAGIC);
        out.push(FORMAT_VERSION);
        out.push(k as u8);
        for code in &self.assets {
            out.push(code.len() as u8);
            out.extend_from_slice(code.as_bytes());
        }
        out.push(self.siblings.len() as u8);
        out.extend_from_slice(&self.leaf_index.to_be_bytes());
        out.extend_from_slice(&self.account_id.to_be_bytes());
        out.extend_from_slice(&self.salt);
        self.balances
            .iter()
            .for_each(|b| out.extend_from_slice(&b.to_be_bytes()));
        for s in &self.siblings {
            out.extend_from_slice(&s.hash);
            s.sums
                .iter()
                .for_each(|b| out.extend_from_slice(&b.to_be_bytes()));
        }
        out.extend_from_slice(&self.root);
        self.totals
            .iter()
            .for_each(|b| out.extend_from_slice(&b.to_be_bytes()));
        out
    }

    /// Parses the compact binary encoding; refuses trailing bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ProofError> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(4)? != MAGIC {
            return Err(ProofError::Malformed(
                "not a rempart proof (bad magic)".into(),
            ));
        }
        let version = r.u8()?;
        if version != FORMAT_VERSION {
            return Err(ProofError::Malformed(format!(
                "unsupported format version {version}"
            )));
        }
        let k = usize::from(r.u8()?);
        if k == 0 || k > POR_ASSETS_MAX {
            return Err(ProofError::Malformed(format!("asset count {k}")));
        }
        let mut assets = Vec::with_capacity(k);
        for _ in 0..k {
            let len = usize::from(r.u8()?);
            let code = std::str::from_utf8(r.take(len)?)
                .map_err(|_| ProofError::Malformed("asset code not UTF-8".into()))?;
            assets.push(code.to_owned());
        }
        let levels = usize::from(r.u8()?);
        if levels > LEVELS_MAX {
            return Err(ProofError::Malformed(format!("{levels} levels")));
        }
        let leaf_index = r.u64()?;
        let account_id = r.u64()?;
        let salt = r.array32()?;
        let balances = r.u64s(k)?;
        let mut siblings = Vec::with_capacity(levels);
        for _ in 0..levels {
            let hash = r.array32()?;
            siblings.push(Sibling {
                hash,
                sums: r.u64s(k)?,
            });
        }
        let root = r.array32()?;
        let totals = r.u64s(k)?;
        if r.at != bytes.len() {
            return Err(ProofError::Malformed("trailing bytes".into()));
        }
        Ok(Self {
            assets,
            account_id,
            salt,
            balances,
            leaf_index,
            siblings,
            root,
            totals,
        })
    }

    /// Reads a proof file's content: binary if it starts with the magic, JSON otherwise.
    pub fn parse_file(content: &[u8]) -> Result<Self, ProofError> {
        if content.len() > POR_PROOF_FILE_BYTES_MAX {
            return Err(ProofError::Malformed(format!(
                "file larger than {POR_PROOF_FILE_BYTES_MAX} bytes"
            )));
        }
        if content.starts_with(MAGIC) {
            Self::from_bytes(content)
        } else {
            serde_json::from_slice(content).map_err(|e| ProofError::Malformed(format!("JSON: {e}")))
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProofError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| ProofError::Malformed("truncated".into()))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, ProofError> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> Result<u64, ProofError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }
    fn u64s(&mut self, n: usize) -> Result<Vec<u64>, ProofError> {
        (0..n).map(|_| self.u64()).collect()
    }
    fn array32(&mut self) -> Result<[u8; 32], ProofError> {
        let mut b = [0u8; 32];
        b.copy_from_slice(self.take(32)?);
        Ok(b)
    }
}

/// Checks a verified proof's root against the published one (hex).
pub fn check_published_root(
    verified: &Verified,
    published_root_hex: &str,
) -> Result<(), ProofError> {
    if !verified
        .root
        .eq_ignore_ascii_case(published_root_hex.trim())
    {
        return Err(ProofError::NotPublishedRoot {
            proof: verified.root.clone(),
            published: published_root_hex.trim().to_owned(),
        });
    }
    Ok(())
}

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    pub fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&text, &mut out).map_err(D::Error::custom)?;
        Ok(out)
    }
}

pub mod bench;

#[cfg(test)]
mod tests;
