//! Name normalisation: turns a name as printed (any script, any punctuation, invisible
//! characters, look-alike letters) into lowercase ASCII tokens with phonetic and consonant keys.
//!
//! Steps, in order, each for a reason:
//! 1. NFKC, so that full-width, ligature and compatibility forms compare equal.
//! 2. Invisible characters removed (zero-width, bidi controls, soft hyphen, variation
//!    selectors): they are inserted to defeat exact matching and carry no meaning in a name.
//! 3. Confusable folding when a name mixes Latin with Cyrillic/Greek letters: such a mix is the
//!    homoglyph evasion, and the look-alike is meant to be read as the Latin letter.
//! 4. Transliteration of everything else to ASCII (`any_ascii`): Arabic, Cyrillic, CJK, Latin
//!    diacritics. CJK syllables become separate tokens.
//! 5. Apostrophes join, other punctuation splits; lowercase.
//! 6. Titles, generational suffixes and (at the edges of a multi-token name) legal-form words
//!    are dropped; numbers are kept, so "11420 CORP." keeps "11420".
//!
//! A name with letters never normalises to nothing: if the steps above would leave no token, the
//! original whitespace-separated tokens are kept (lowercased) and `NormName::fallback` says so.

use rphonetic::DoubleMetaphone;
use unicode_normalization::UnicodeNormalization;

use super::limits::{NAME_CHARS_MAX, NAME_TOKENS_MAX};

/// What role a token plays; it decides how it may match and how much it weighs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// An ordinary name word.
    Word,
    /// Contains a digit: only equal numbers match (so "11420" never matches "11421").
    Number,
    /// A single letter: matches a word starting with it.
    Initial,
    /// A name particle (al, bin, van, de…): matches like a word but weighs little.
    Particle,
}

/// One normalised token with the keys used by the index and the scorer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Lowercase ASCII (or the original text lowercased in a fallback).
    pub text: String,
    /// Word, number, initial or particle.
    pub kind: TokenKind,
    /// Double Metaphone primary code (empty when not computed).
    pub phonetic: String,
    /// Double Metaphone alternate code.
    pub phonetic_alt: String,
    /// First letter plus consonants with repeats collapsed ("muhammad" → "mhmd"): survives
    /// vowel dropping and doubled letters.
    pub skeleton: String,
}

/// A normalised name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormName {
    /// Tokens in the order of the name.
    pub tokens: Vec<Token>,
    /// True when normalisation would have left nothing and the original tokens were kept.
    pub fallback: bool,
}

impl NormName {
    /// The tokens' texts joined with single spaces.
    pub fn joined(&self) -> String {
        self.tokens
            .iter()
            .map(|t| t.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Honorifics and generational suffixes: they say nothing about identity.
const TITLES: &[&str] = &[
    "mr",
    "mrs",
    "ms",
    "miss",
    "dr",
    "prof",
    "sir",
    "sheikh",
    "shaikh",
    "shaykh",
    "sheik",
    "hajji",
    "haji",
    "hajj",
    "col",
    "gen",
    "eng",
    "sayyid",
    "mullah",
    "maulana",
    "maulavi",
    "mawlawi",
    "jr",
    "sr",
    "ii",
    "iii",
    "iv",
    "colonel",
    "general",
    "brigadier",
    "major",
    "captain",
    "capt",
];

/// Legal-form words of companies in the languages lists use most.
const LEGAL_FORMS: &[&str] = &[
    "ltd",
    "llc",
    "corp",
    "corporation",
    "inc",
    "incorporated",
    "co",
    "company",
    "gmbh",
    "ag",
    "sa",
    "sarl",
    "sas",
    "bv",
    "nv",
    "plc",
    "limited",
    "llp",
    "lp",
    "oao",
    "ooo",
    "zao",
    "pao",
    "ojsc",
    "cjsc",
    "jsc",
    "pjsc",
    "fze",
    "fzco",
    "fzc",
    "srl",
    "spa",
    "kg",
    "ab",
    "oy",
    "pte",
    "pty",
    "bhd",
    "sdn",
    "kft",
    "sro",
    "doo",
    "ood",
    "ead",
    "tov",
    "pat",
    "ltda",
    "cia",
    "sl",
    "establishment",
    "est",
    "trading",
    "group",
    "holding",
    "holdings",
    "enterprise",
    "enterprises",
    "international",
    "intl",
];

/// Name particles: kept (they can be all that distinguishes two names) but weigh little.
const PARTICLES: &[&str] = &[
    "al", "el", "bin", "ibn", "bint", "ben", "abu", "abd", "van", "von", "der", "den", "de", "del",
    "della", "da", "di", "du", "la", "le", "mac", "mc", "o", "ul", "ud", "ad", "as", "an", "at",
    "az", "ar", "ash", "y",
];

/// True for characters that render as nothing: zero-width spaces and joiners, bidi controls,
/// soft hyphen, word joiner, variation selectors, BOM, tag characters, Hangul fillers.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}'
        | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E007F}'
        | '\u{E0100}'..='\u{E01EF}')
}

/// The Latin letter a Cyrillic or Greek look-alike is meant as, if it is one.
pub fn confusable_latin(c: char) -> Option<char> {
    Some(match c {
        'а' | 'α' => 'a',
        'в' | 'β' => 'b',
        'е' | 'ε' => 'e',
        'к' | 'κ' => 'k',
        'м' => 'm',
        'н' | 'һ' => 'h',
        'о' | 'ο' | 'օ' => 'o',
        'р' | 'ρ' => 'p',
        'с' | 'ϲ' => 'c',
        'т' | 'τ' => 't',
        'у' | 'ү' | 'γ' => 'y',
        'х' | 'χ' => 'x',
        'і' | 'ι' | 'ӏ' => 'i',
        'ј' => 'j',
        'ѕ' => 's',
        'ԁ' => 'd',
        'ԛ' => 'q',
        'ԝ' => 'w',
        'ν' => 'v',
        'υ' => 'u',
        'А' | 'Α' => 'A',
        'В' | 'Β' => 'B',
        'Е' | 'Ε' => 'E',
        'К' | 'Κ' => 'K',
        'М' | 'Μ' => 'M',
        'Н' | 'Η' => 'H',
        'О' | 'Ο' => 'O',
        'Р' | 'Ρ' => 'P',
        'С' | 'Ϲ' => 'C',
        'Т' | 'Τ' => 'T',
        'У' | 'Υ' | 'Ү' => 'Y',
        'Х' | 'Χ' => 'X',
        'І' | 'Ι' => 'I',
        'Ј' => 'J',
        'Ѕ' => 'S',
        'Ζ' => 'Z',
        'Ν' => 'N',
        _ => return None,
    })
}

fn is_latin_letter(c: char) -> bool {
    c.is_ascii_alphabetic()
        || (c.is_alphabetic() && matches!(c, '\u{00C0}'..='\u{024F}' | '\u{1E00}'..='\u{1EFF}'))
}

fn is_cyrillic_or_greek(c: char) -> bool {
    matches!(c, '\u{0370}'..='\u{03FF}' | '\u{0400}'..='\u{052F}' | '\u{0530}'..='\u{058F}')
}

fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{3040}'..='\u{30FF}'
        | '\u{3400}'..='\u{4DBF}'
        | '\u{4E00}'..='\u{9FFF}'
        | '\u{AC00}'..='\u{D7AF}'
        | '\u{F900}'..='\u{FAFF}'
        | '\u{20000}'..='\u{2FA1F}')
}

/// Steps 1–5: the cleaned, transliterated, lowercased text with tokens separated by spaces.
pub fn clean_text(raw: &str) -> String {
    let bounded: String = raw.chars().take(NAME_CHARS_MAX).collect();
    let visible: String = bounded.nfkc().filter(|c| !is_invisible(*c)).collect();
    let mixed = visible.chars().any(is_latin_letter) && visible.chars().any(is_cyrillic_or_greek);
    let mut ascii = String::with_capacity(visible.len());
    for c in visible.chars() {
        let c = if mixed {
            confusable_latin(c).unwrap_or(c)
        } else {
            c
        };
        if c.is_ascii() {
            ascii.push(c);
        } else if is_cjk(c) {
            // One syllable per character: each is a token of its own.
            ascii.push(' ');
            ascii.push_str(any_ascii::any_ascii_char(c));
            ascii.push(' ');
        } else if matches!(
            c,
            '\u{2019}'
                | '\u{2018}'
                | '\u{02BC}'
                | '\u{02BB}'
                | '\u{02BF}'
                | '\u{02BE}'
                | '`'
                | '\u{00B4}'
        ) {
            ascii.push('\'');
        } else {
            ascii.push_str(any_ascii::any_ascii_char(c));
        }
    }
    let mut out = String::with_capacity(ascii.len());
    for c in ascii.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if c == '\'' {
            // O'Neil and al-'Ali: the apostrophe joins.
        } else if !out.ends_with(' ') {
            out.push(' ');
        }
    }
    out.trim().to_owned()
}

fn kind_of(text: &str) -> TokenKind {
    if text.bytes().any(|b| b.is_ascii_digit()) {
        TokenKind::Number
    } else if PARTICLES.contains(&text) {
        TokenKind::Particle
    } else if text.len() == 1 {
        TokenKind::Initial
    } else {
        TokenKind::Word
    }
}

/// In a word that is mostly letters, digits are OCR misreadings of look-alike letters
/// ("A1i" → "ali", "0MAR" → "omar"); numbers and codes (more digits than letters) are kept.
fn ocr_digits(word: &str) -> String {
    let digits = word.bytes().filter(u8::is_ascii_digit).count();
    if digits == 0 || digits * 2 >= word.len() {
        return word.to_owned();
    }
    word.chars()
        .map(|c| match c {
            '0' => 'o',
            '1' => 'l',
            '2' => 'z',
            '3' => 'e',
            '4' => 'a',
            '5' => 's',
            '6' => 'g',
            '7' => 't',
            '8' => 'b',
            _ => c,
        })
        .collect()
}

/// First letter plus the consonants after it, repeats collapsed ("hussein" → "hsn",
/// "muhammad" → "mhmd"): what survives vowel dropping and doubled letters.
pub fn skeleton(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = '\0';
    for (i, c) in text.chars().enumerate() {
        let keep = i == 0 || !matches!(c, 'a' | 'e' | 'i' | 'o' | 'u' | 'y');
        if keep && c != last {
            out.push(c);
        }
        if keep {
            last = c;
        }
    }
    out
}

/// Builds a token with its keys.
pub fn make_token(text: String, encoder: &DoubleMetaphone) -> Token {
    let kind = kind_of(&text);
    let (phonetic, phonetic_alt) = if kind == TokenKind::Word && text.is_ascii() {
        let code = encoder.double_metaphone(&text);
        (code.primary(), code.alternate())
    } else {
        (String::new(), String::new())
    };
    let skeleton = if kind == TokenKind::Word {
        skeleton(&text)
    } else {
        String::new()
    };
    Token {
        text,
        kind,
        phonetic,
        phonetic_alt,
        skeleton,
    }
}

/// The phonetic encoder used everywhere (codes up to 6 letters keep long names apart).
pub fn encoder() -> DoubleMetaphone {
    DoubleMetaphone::new(Some(6))
}

/// Normalises a name (see the module doc). Never empty when `raw` has a letter or digit.
pub fn normalize_name(raw: &str, encoder: &DoubleMetaphone) -> NormName {
    let cleaned = clean_text(raw);
    let words: Vec<&str> = cleaned.split(' ').filter(|w| !w.is_empty()).collect();
    let mut kept: Vec<&str> = words
        .iter()
        .copied()
        .filter(|w| !TITLES.contains(w))
        .collect();
    // Legal forms only at the edges of a longer name, where they are forms and not names.
    while kept.len() > 1 && kept.last().is_some_and(|w| LEGAL_FORMS.contains(w)) {
        kept.pop();
    }
    while kept.len() > 1 && kept.first().is_some_and(|w| LEGAL_FORMS.contains(w)) {
        kept.remove(0);
    }
    if kept.is_empty() {
        kept = words;
    }
    kept.truncate(NAME_TOKENS_MAX);
    let ocr_fixed: Vec<String> = kept.iter().map(|w| ocr_digits(w)).collect();
    let kept: Vec<&str> = ocr_fixed.iter().map(String::as_str).collect();
    let mut fallback = false;
    let texts: Vec<String> = if kept.is_empty() {
        // Nothing survived: keep the original tokens rather than an empty name.
        let original: Vec<String> = raw
            .chars()
            .take(NAME_CHARS_MAX)
            .filter(|c| !is_invisible(*c))
            .collect::<String>()
            .split_whitespace()
            .map(|w| w.to_lowercase())
            .filter(|w| w.chars().any(char::is_alphanumeric))
            .take(NAME_TOKENS_MAX)
            .collect();
        fallback = !original.is_empty();
        original
    } else {
        kept.into_iter().map(str::to_owned).collect()
    };
    NormName {
        tokens: texts.into_iter().map(|t| make_token(t, encoder)).collect(),
        fallback,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> String {
        normalize_name(raw, &encoder()).joined()
    }

    #[test]
    fn invisible_characters_and_bidi_controls_vanish() {
        assert_eq!(
            norm("Mu\u{200B}ham\u{00AD}mad A\u{202E}li\u{FEFF}"),
            "muhammad ali"
        );
    }

    #[test]
    fn homoglyphs_fold_to_latin_in_a_mixed_name() {
        // Cyrillic а, е, о inside a Latin name.
        assert_eq!(
            norm("S\u{0430}dd\u{0430}m Huss\u{0435}in"),
            "saddam hussein"
        );
        assert_eq!(norm("\u{041E}s\u{0430}ma"), "osama");
    }

    #[test]
    fn other_scripts_are_transliterated() {
        assert_eq!(norm("Владимир Путин"), "vladimir putin");
        assert_eq!(norm("José MÜLLER"), "jose muller");
        let arabic = norm("محمد");
        assert!(!arabic.is_empty() && arabic.is_ascii(), "{arabic}");
        let chinese = norm("张三");
        assert_eq!(chinese.split(' ').count(), 2, "{chinese}");
    }

    #[test]
    fn punctuation_titles_and_legal_forms() {
        assert_eq!(norm("Dr. O'Neil, John Jr."), "oneil john");
        assert_eq!(norm("al-Zawahiri"), "al zawahiri");
        assert_eq!(norm("11420 CORP."), "11420");
        assert_eq!(norm("ACME Trading LLC"), "acme");
        // A name made only of a legal form keeps it rather than vanishing.
        assert_eq!(norm("Company"), "company");
    }

    #[test]
    fn never_empty_when_there_are_letters() {
        let name = normalize_name("\u{1F600}ℵ", &encoder());
        assert!(!name.tokens.is_empty());
        let emoji_only = normalize_name("Mr.", &encoder());
        assert_eq!(emoji_only.joined(), "mr");
    }

    #[test]
    fn skeleton_survives_vowel_drop_and_doubling() {
        assert_eq!(skeleton("muhammad"), skeleton("mhmmd"));
        assert_eq!(skeleton("hussein"), skeleton("husein"));
        assert_eq!(skeleton("nasser"), skeleton("naser"));
    }
}
