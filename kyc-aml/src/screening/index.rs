//! The inverted index of a snapshot: every name of every entry (aliases included), normalised,
//! under its token, phonetic, consonant-skeleton and joined-neighbour keys; and every document
//! number and crypto address under its exact key. Candidate search weighs keys by rarity
//! (inverse document frequency) and keeps the best `CANDIDATES_MAX` names for full scoring.

use std::collections::HashMap;

use rphonetic::DoubleMetaphone;

use super::limits::{CANDIDATES_MAX, POSTING_SCAN_MAX};
use super::model::Entry;
use super::normalize::{NormName, Token, TokenKind, normalize_name};

/// One indexed name.
#[derive(Debug, Clone)]
pub struct IndexedName {
    /// Index of the entry in the snapshot.
    pub entry: u32,
    /// Index of the name in the entry's `names`.
    pub name: u16,
    /// The normalised name.
    pub norm: NormName,
}

/// The searchable form of a snapshot's entries.
#[derive(Debug, Default)]
pub struct Index {
    /// Every distinct normalised name of every entry.
    pub names: Vec<IndexedName>,
    postings: HashMap<String, Vec<u32>>,
    identifiers: HashMap<String, Vec<(u32, String)>>,
}

fn token_keys(token: &Token, out: &mut Vec<String>) {
    match token.kind {
        TokenKind::Initial => {}
        TokenKind::Number | TokenKind::Particle => out.push(format!("w{}", token.text)),
        TokenKind::Word => {
            out.push(format!("w{}", token.text));
            if !token.phonetic.is_empty() {
                out.push(format!("p{}", token.phonetic));
                if token.phonetic_alt != token.phonetic && !token.phonetic_alt.is_empty() {
                    out.push(format!("p{}", token.phonetic_alt));
                }
            }
            if token.skeleton.len() >= 3 {
                out.push(format!("k{}", token.skeleton));
            }
        }
    }
}

/// Keys of a name grouped per token; group i also holds the key of token i joined with token
/// i+1, so split and joined tokens find each other.
fn name_keys(name: &NormName) -> Vec<Vec<String>> {
    let mut groups = Vec::with_capacity(name.tokens.len());
    for (i, token) in name.tokens.iter().enumerate() {
        let mut keys = Vec::new();
        token_keys(token, &mut keys);
        if let Some(next) = name.tokens.get(i + 1) {
            keys.push(format!("w{}{}", token.text, next.text));
        }
        keys.sort();
        keys.dedup();
        groups.push(keys);
    }
    groups
}

/// Names of an all-common-keys query seeded from merged postings.
const SEEDS_MAX: usize = 4 * CANDIDATES_MAX;

/// Ids present in both sorted lists, at most `max`.
fn intersect(a: &[u32], b: &[u32], max: usize) -> Vec<u32> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() && out.len() < max {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// Key under which a document number is stored: letters and digits only, uppercase.
pub fn document_key(value: &str) -> Option<String> {
    let key: String = value
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect();
    // Very short numbers ("1", "A2") would match by accident.
    (key.len() >= 4).then(|| format!("d{key}"))
}

/// Key under which a crypto address is stored: exact, except that hex (0x…) and bech32
/// addresses are case-insensitive by definition and are lowercased.
pub fn crypto_key(value: &str) -> Option<String> {
    let value = value.trim();
    if value.len() < 8 || value.chars().any(char::is_whitespace) {
        return None;
    }
    let lower = value.to_ascii_lowercase();
    let case_insensitive = lower.starts_with("0x")
        || lower.starts_with("bc1")
        || lower.starts_with("ltc1")
        || lower.starts_with("tb1");
    Some(if case_insensitive {
        format!("c{lower}")
    } else {
        format!("c{value}")
    })
}

impl Index {
    /// Builds the index of a snapshot's entries.
    pub fn build(entries: &[Entry], encoder: &DoubleMetaphone) -> Index {
        let mut index = Index::default();
        for (e, entry) in entries.iter().enumerate() {
            let mut seen: Vec<String> = Vec::new();
            for (n, name) in entry.names.iter().enumerate() {
                let norm = normalize_name(&name.full, encoder);
                let joined = norm.joined();
                if norm.tokens.is_empty() || seen.contains(&joined) {
                    continue;
                }
                seen.push(joined);
                let id = index.names.len() as u32;
                let mut keys: Vec<String> = name_keys(&norm).into_iter().flatten().collect();
                keys.sort();
                keys.dedup();
                for key in keys {
                    index.postings.entry(key).or_default().push(id);
                }
                index.names.push(IndexedName {
                    entry: e as u32,
                    name: n as u16,
                    norm,
                });
            }
            for identifier in &entry.identifiers {
                if let Some(key) = document_key(&identifier.value) {
                    index.identifiers.entry(key).or_default().push((
                        e as u32,
                        format!("{} {}", identifier.kind, identifier.value),
                    ));
                }
            }
            for address in &entry.crypto_addresses {
                if let Some(key) = crypto_key(address) {
                    index
                        .identifiers
                        .entry(key)
                        .or_default()
                        .push((e as u32, format!("digital currency address {address}")));
                }
            }
        }
        index
    }

    /// Entries whose document number or crypto address equals `value`, with what matched.
    pub fn identifier_matches(&self, value: &str) -> Vec<(u32, String)> {
        let mut out = Vec::new();
        for key in [document_key(value), crypto_key(value)]
            .into_iter()
            .flatten()
        {
            if let Some(found) = self.identifiers.get(&key) {
                out.extend(found.iter().cloned());
            }
        }
        out
    }

    /// The names most worth scoring for a query, best first (at most `CANDIDATES_MAX`).
    pub fn candidates(&self, query: &NormName) -> Vec<u32> {
        let total = self.names.len().max(1) as f64;
        let groups = name_keys(query);
        // Rare keys first, so that common ones can be skipped once enough candidates exist.
        let mut keyed: Vec<(usize, &Vec<u32>, usize)> = Vec::new();
        for (group, keys) in groups.iter().enumerate() {
            for key in keys {
                if let Some(postings) = self.postings.get(key) {
                    keyed.push((postings.len(), postings, group));
                }
            }
        }
        keyed.sort_by_key(|(len, _, group)| (*len, *group));
        // Per name: accumulated weight, and per query token the best weight already counted.
        let mut weights: HashMap<u32, (f64, u64)> = HashMap::new();
        let credit = |weights: &mut HashMap<u32, (f64, u64)>, id: u32, weight: f64, bit: u64| {
            let slot = weights.entry(id).or_insert((0.0, 0));
            // Keys are visited rarest first, so the first key of a token is its best one.
            if slot.1 & bit == 0 {
                slot.0 += weight;
                slot.1 |= bit;
            }
        };
        let weight_of = |len: usize| (total / len as f64).ln() + 1.0;
        let (rare, common): (Vec<_>, Vec<_>) = keyed
            .into_iter()
            .partition(|(len, _, _)| *len <= POSTING_SCAN_MAX);
        for (len, postings, group) in &rare {
            let bit = 1u64 << (group % 64);
            for id in postings.iter() {
                credit(&mut weights, *id, weight_of(*len), bit);
            }
        }
        if !common.is_empty() {
            if weights.len() < CANDIDATES_MAX {
                // Every key is common ("Mohammad Ahmad"): seed with names that carry the two
                // rarest keys of two different tokens (a merge of sorted postings), or with the
                // head of the rarest list for a one-token query.
                let (len_a, first, group_a) = common[0];
                let second = common.iter().find(|(_, _, g)| *g != group_a);
                let seeds: Vec<u32> = match second {
                    Some((_, other, _)) => intersect(first, other, SEEDS_MAX),
                    None => first.iter().take(SEEDS_MAX).copied().collect(),
                };
                for id in seeds {
                    credit(&mut weights, id, weight_of(len_a), 1u64 << (group_a % 64));
                }
            }
            // Common keys only add weight to names already found; postings are sorted by id.
            let found: Vec<u32> = weights.keys().copied().collect();
            for (len, postings, group) in &common {
                let bit = 1u64 << (group % 64);
                for id in &found {
                    if postings.binary_search(id).is_ok() {
                        credit(&mut weights, *id, weight_of(*len), bit);
                    }
                }
            }
        }
        let mut ranked: Vec<(u32, f64)> = weights.into_iter().map(|(id, (w, _))| (id, w)).collect();
        let order = |a: &(u32, f64), b: &(u32, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if ranked.len() > CANDIDATES_MAX {
            ranked.select_nth_unstable_by(CANDIDATES_MAX, order);
            ranked.truncate(CANDIDATES_MAX);
        }
        ranked.sort_by(order);
        ranked.into_iter().map(|(id, _)| id).collect()
    }
}
