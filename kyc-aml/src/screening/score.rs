//! Name scoring: how similar two normalised names are, as a fixed-point score 0..=1000 with a
//! sentence saying which tokens matched how.
//!
//! Two views are combined and the better one kept:
//! - token alignment: every query token is paired with at most one listed token (greedy on
//!   similarity, ties broken by position, so the result is deterministic); coverage of the
//!   query weighs more than coverage of the listed name, so a missing middle name costs little
//!   while an extra, unmatched query token (another person's surname) costs a lot;
//! - the compact view: both names with spaces removed, so split ("Mu hammad") and joined
//!   ("alZawahiri") tokens still meet.
//!
//! Token similarity is the best of: equality; a bounded edit distance (optimal string
//! alignment, so a transposition is one edit); Jaro-Winkler less a margin; equal Double
//! Metaphone codes (Mohammed/Muhammad, Qasim/Kassem); equal consonant skeletons (vowels dropped,
//! doubled letters); a prefix (truncated fields); an initial. Numbers only match equal numbers.
//!
//! Floating point is used here for similarity arithmetic only (this is not money); results are
//! rounded to integers once, and ties are broken by position, so scores are deterministic.

use super::normalize::{NormName, Token, TokenKind};

/// Token similarity below which two tokens are not paired.
pub const TOKEN_MATCH_MIN: f64 = 0.82;

/// How a pair of tokens matched; named in explanations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// Same text.
    Exact,
    /// A few edits apart (typo, OCR confusion, transposition, alternative spelling).
    Edit(usize),
    /// Jaro-Winkler close.
    JaroWinkler,
    /// Same Double Metaphone code.
    Phonetic,
    /// Same consonant skeleton.
    Skeleton,
    /// One is a prefix of the other (truncation).
    Prefix,
    /// A single letter standing for the word.
    Initial,
}

impl std::fmt::Display for How {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            How::Exact => write!(f, "exact"),
            How::Edit(d) => write!(f, "{d} edit(s)"),
            How::JaroWinkler => write!(f, "jaro-winkler"),
            How::Phonetic => write!(f, "phonetic"),
            How::Skeleton => write!(f, "consonants"),
            How::Prefix => write!(f, "prefix"),
            How::Initial => write!(f, "initial"),
        }
    }
}

/// Widest row kept on the stack by `osa_distance`.
const OSA_STACK_WIDTH: usize = 64;

/// Optimal string alignment distance over bytes (tokens are ASCII after normalisation).
pub fn osa_distance(a: &[u8], b: &[u8]) -> usize {
    osa_distance_within(a, b, usize::MAX)
}

/// `osa_distance`, giving up (returning `bound + 1`) once every alignment costs more than `bound`.
pub fn osa_distance_within(a: &[u8], b: &[u8], bound: usize) -> usize {
    if a.is_empty() || b.is_empty() {
        return a.len().max(b.len());
    }
    let width = b.len() + 1;
    // Rows on the stack for the usual short tokens; the heap only for long strings.
    let mut storage = [0usize; 3 * OSA_STACK_WIDTH];
    let mut heap = Vec::new();
    let rows: &mut [usize] = if width <= OSA_STACK_WIDTH {
        &mut storage[..3 * width]
    } else {
        heap.resize(3 * width, 0);
        &mut heap
    };
    let (two_back, rest) = rows.split_at_mut(width);
    let (previous, current) = rest.split_at_mut(width);
    for (j, cell) in previous.iter_mut().enumerate() {
        *cell = j;
    }
    let (mut two_back, mut previous, mut current) = (two_back, previous, current);
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(two_back[j - 2] + 1);
            }
            current[j] = best;
        }
        if current.iter().min().is_some_and(|m| *m > bound) {
            return bound.saturating_add(1);
        }
        std::mem::swap(&mut two_back, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// Similarity of two tokens in 0..=1 and how it was reached.
pub fn token_similarity(q: &Token, c: &Token) -> (f64, How) {
    if q.text == c.text {
        return (1.0, How::Exact);
    }
    if q.kind == TokenKind::Number || c.kind == TokenKind::Number {
        return (0.0, How::Exact);
    }
    let (qb, cb) = (q.text.as_bytes(), c.text.as_bytes());
    if q.kind == TokenKind::Initial || c.kind == TokenKind::Initial {
        let (short, long) = if qb.len() <= cb.len() {
            (qb, cb)
        } else {
            (cb, qb)
        };
        return if short.len() == 1 && long.first() == short.first() {
            (0.85, How::Initial)
        } else {
            (0.0, How::Initial)
        };
    }
    let max_len = qb.len().max(cb.len());
    let min_len = qb.len().min(cb.len());
    let distance = osa_distance(qb, cb);
    let mut best = (
        1.0 - 0.6 * distance as f64 / max_len as f64,
        How::Edit(distance),
    );
    let mut consider = |score: f64, how: How| {
        if score > best.0 {
            best = (score, how);
        }
    };
    consider(
        strsim::jaro_winkler(&q.text, &c.text) - 0.08,
        How::JaroWinkler,
    );
    let both_words = q.kind == TokenKind::Word && c.kind == TokenKind::Word;
    // Phonetic codes are coarse (every initial vowel is "A"): they only count for tokens of
    // similar length that are not too many edits apart (Mohammed/Muhammad, Qasim/Kassem, but
    // not Omari/Amir or Abdul/Obaidullah).
    let comparable = 10 * min_len >= 7 * max_len && 2 * distance <= max_len;
    if both_words && comparable && !q.phonetic.is_empty() && !c.phonetic.is_empty() {
        let same = q.phonetic == c.phonetic
            || q.phonetic == c.phonetic_alt
            || q.phonetic_alt == c.phonetic;
        if same {
            consider(0.90, How::Phonetic);
        }
    }
    if both_words && q.skeleton.len() >= 3 && q.skeleton == c.skeleton {
        consider(0.90, How::Skeleton);
    }
    // A query token cut short by a fixed-width field.
    if qb.len() >= 4 && cb.starts_with(qb) {
        consider(0.88, How::Prefix);
    }
    if max_len <= 3 && best.0 >= TOKEN_MATCH_MIN && best.1 != How::Phonetic {
        // Two- and three-letter tokens one edit apart are different names (Ali/Ari).
        best.0 = TOKEN_MATCH_MIN - 0.01;
    }
    best
}

fn weight(token: &Token) -> f64 {
    match token.kind {
        TokenKind::Number => 3.0,
        TokenKind::Initial => 0.6,
        TokenKind::Particle => 0.5,
        TokenKind::Word => 1.0 + 0.15 * token.text.len().min(12) as f64,
    }
}

/// One paired token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair {
    /// Index into the query's tokens.
    pub query: usize,
    /// Index into the listed name's tokens.
    pub listed: usize,
    /// Similarity 0..=1.
    pub similarity: f64,
    /// How they matched.
    pub how: How,
}

/// A scored comparison of two names.
#[derive(Debug, Clone, PartialEq)]
pub struct NameScore {
    /// 0..=1000.
    pub score: u16,
    /// Which tokens matched how (and what was left over).
    pub why: String,
}

fn compact_similarity(query: &NormName, listed: &NormName) -> f64 {
    let q: String = query.tokens.iter().map(|t| t.text.as_str()).collect();
    if q.len() < 6 {
        return 0.0;
    }
    let forward: String = listed.tokens.iter().map(|t| t.text.as_str()).collect();
    let backward: String = listed
        .tokens
        .iter()
        .rev()
        .map(|t| t.text.as_str())
        .collect();
    let mut best: f64 = 0.5;
    for l in [forward, backward] {
        let max_len = q.len().max(l.len());
        // The length difference bounds the distance from below: skip hopeless pairs cheaply.
        let floor = q.len().abs_diff(l.len());
        if 1.0 - 2.0 * floor as f64 / max_len as f64 <= best {
            continue;
        }
        // Only distances that beat `best` matter.
        let bound = ((1.0 - best) * max_len as f64 / 2.0) as usize;
        let distance = osa_distance_within(q.as_bytes(), l.as_bytes(), bound);
        best = best.max(1.0 - 2.0 * distance as f64 / max_len as f64);
    }
    best
}

/// Scores a query name against a listed name, with the explanation.
pub fn score_names(query: &NormName, listed: &NormName) -> NameScore {
    score_names_with(query, listed, true)
}

/// Scores a query name against a listed name; `explain` builds the `why` text, which costs
/// more than the score itself, so candidate search scores without it first.
pub fn score_names_with(query: &NormName, listed: &NormName, explain: bool) -> NameScore {
    let (qt, lt) = (&query.tokens, &listed.tokens);
    if qt.is_empty() || lt.is_empty() {
        return NameScore {
            score: 0,
            why: "empty name".to_owned(),
        };
    }
    let mut candidates: Vec<Pair> = Vec::with_capacity(qt.len() * lt.len());
    for (i, q) in qt.iter().enumerate() {
        for (j, l) in lt.iter().enumerate() {
            let (similarity, how) = token_similarity(q, l);
            if similarity >= TOKEN_MATCH_MIN {
                candidates.push(Pair {
                    query: i,
                    listed: j,
                    similarity,
                    how,
                });
            }
        }
    }
    candidates.sort_by(|a, b| {
        b.similarity
            .total_cmp(&a.similarity)
            .then(a.query.cmp(&b.query))
            .then(a.listed.cmp(&b.listed))
    });
    let mut query_used = vec![false; qt.len()];
    let mut listed_used = vec![false; lt.len()];
    let mut pairs = Vec::new();
    for pair in candidates {
        if !query_used[pair.query] && !listed_used[pair.listed] {
            query_used[pair.query] = true;
            listed_used[pair.listed] = true;
            pairs.push(pair);
        }
    }
    // Truncation cuts the last query token anywhere: a short tail that starts an unpaired
    // listed token counts as that token's prefix, when the rest of the name already matched.
    let last = qt.len() - 1;
    if !query_used[last] && qt.len() >= 3 && pairs.len() + 1 >= qt.len() {
        let tail = qt[last].text.as_bytes();
        let found =
            (0..lt.len()).find(|j| !listed_used[*j] && lt[*j].text.as_bytes().starts_with(tail));
        if let Some(j) = found {
            query_used[last] = true;
            listed_used[j] = true;
            pairs.push(Pair {
                query: last,
                listed: j,
                similarity: 0.85,
                how: How::Prefix,
            });
        }
    }
    let query_total: f64 = qt.iter().map(weight).sum();
    let listed_total: f64 = lt.iter().map(weight).sum();
    let query_covered: f64 = pairs
        .iter()
        .map(|p| p.similarity * weight(&qt[p.query]))
        .sum();
    let listed_covered: f64 = pairs
        .iter()
        .map(|p| p.similarity * weight(&lt[p.listed]))
        .sum();
    // Listed tokens the query lacks (middle names, a truncated tail) cost less once three or
    // more tokens agree; with one or two agreeing tokens they are the only guard against
    // matching every listed name that shares a common given name and surname.
    let listed_share = if pairs.len() >= 3 { 0.25 } else { 0.4 };
    let aligned = (1.0 - listed_share) * query_covered / query_total
        + listed_share * listed_covered / listed_total;
    let compact = compact_similarity(query, listed);

    let mut why = String::new();
    if !explain {
        // Nothing to say.
    } else if compact > aligned {
        why.push_str(&format!(
            "names equal with spaces removed ({} of 1000)",
            (compact * 1000.0).round() as i64
        ));
    } else {
        pairs.sort_by_key(|p| p.query);
        let parts: Vec<String> = pairs
            .iter()
            .map(|p| {
                if p.how == How::Exact {
                    qt[p.query].text.clone()
                } else {
                    format!(
                        "{}~{} {} {}",
                        qt[p.query].text,
                        lt[p.listed].text,
                        p.how,
                        (p.similarity * 1000.0).round() as i64
                    )
                }
            })
            .collect();
        why.push_str(&format!("matched [{}]", parts.join(", ")));
        let extra: Vec<&str> = (0..qt.len())
            .filter(|i| !query_used[*i])
            .map(|i| qt[i].text.as_str())
            .collect();
        if !extra.is_empty() {
            why.push_str(&format!("; query-only [{}]", extra.join(", ")));
        }
        let missing: Vec<&str> = (0..lt.len())
            .filter(|j| !listed_used[*j])
            .map(|j| lt[j].text.as_str())
            .collect();
        if !missing.is_empty() {
            why.push_str(&format!("; list-only [{}]", missing.join(", ")));
        }
    }
    let best = aligned.max(compact).clamp(0.0, 1.0);
    NameScore {
        score: (best * 1000.0).round() as u16,
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::super::normalize::{encoder, normalize_name};
    use super::*;

    fn score(a: &str, b: &str) -> u16 {
        let e = encoder();
        score_names(&normalize_name(a, &e), &normalize_name(b, &e)).score
    }

    #[test]
    fn osa_counts_a_transposition_as_one_edit() {
        assert_eq!(osa_distance(b"abcd", b"acbd"), 1);
        assert_eq!(osa_distance(b"kitten", b"sitting"), 3);
        assert_eq!(osa_distance(b"", b"abc"), 3);
    }

    #[test]
    fn variants_of_a_name_score_high() {
        let base = "Saddam Hussein Al-Tikriti";
        for variant in [
            "Saddam Hussein Al-Tikriti",
            "Hussein, Saddam al Tikriti",
            "Saddam Husein Al-Tikriti",
            "Sadam Hussein Tikriti",
            "S. Hussein Al-Tikriti",
            "Sddm Hssn Al-Tkrt",
            "SADDAM HUSSEIN ALTIKRITI",
            "Saddam Hussien Al-Tikriti",
        ] {
            assert!(
                score(variant, base) >= 850,
                "{variant}: {}",
                score(variant, base)
            );
        }
        assert!(score("Mohammed Omar", "Muhammad Umar") >= 850);
    }

    #[test]
    fn different_people_score_low() {
        let base = "Saddam Hussein Al-Tikriti";
        for other in [
            "Saddam Ahmed",
            "Hussein Obama",
            "Saddam Hussein Al-Bakr Rashid",
            "Sara Hasan",
        ] {
            assert!(score(other, base) < 850, "{other}: {}", score(other, base));
        }
    }

    #[test]
    fn numbers_keep_companies_apart() {
        assert!(score("11420 Corp.", "11420 Corporation") >= 950);
        assert!(score("11421 Corp", "11420 Corp") < 700);
        assert!(score("Acme Corp", "11420 Corp") < 700);
    }
}
