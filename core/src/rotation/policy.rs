//! Credential policy: what a password must look like, checked without ever showing it.

use std::fmt;

use crate::error::{Error, Result};

/// Characters of the `special` class: punctuation that needs no quoting in SQL string
/// literals, shell words or URLs (no quotes, backslash, `$`, backtick, space, `/`, `&`, `?`).
pub const SPECIAL: &[u8] = b"!#%*+,-.:;<=>@[]^_{|}~";

/// Words (4 letters or more) a credential must not contain, case-insensitive, also spelled
/// with the usual digit and symbol substitutions (`p@ssw0rd`). Common passwords and the
/// words of credentials written by hand; the SOC2 "no dictionary words" rule.
const WORDS: &[&str] = &[
    "password", "passwd", "pass", "admin", "root", "secret", "secure", "login", "welcome",
    "letmein", "qwerty", "asdf", "zxcv", "abcd", "1234", "monkey", "dragon", "master", "shadow",
    "sunshine", "princess", "football", "baseball", "superman", "batman", "trustno", "iloveyou",
    "hello", "freedom", "whatever", "access", "default", "change", "changeme", "guest", "test",
    "user", "database", "token", "slack", "your", "love", "summer", "winter", "spring", "autumn",
    "flower", "computer", "internet", "server", "system", "service", "account", "company",
    "google", "apple", "micro", "soft", "oracle", "mysql", "postgres", "redis", "cache", "predis",
    "sight", "prod", "staging", "mike", "john", "michael", "jordan", "harley", "ranger", "hunter",
    "buster", "tigger", "charlie", "robert", "thomas", "soccer", "hockey", "killer", "george",
    "andrew", "pepper", "daniel", "access", "joshua", "maggie", "starwars", "silver", "orange",
    "ginger", "purple", "yellow", "cookie", "matrix", "banana", "chelsea", "coffee", "money",
    "magic", "lucky", "happy", "angel", "blue", "black", "green", "white", "house", "phone",
    "world", "time", "year", "work", "life", "home", "city", "name", "help", "data", "bank",
    "cloud", "azure", "pipeline", "gate", "zero", "trust", "click", "house", "kafka", "grafana",
    "sealbox", "vault", "private",
];

/// What a credential must satisfy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialPolicy {
    /// Shortest length in characters.
    pub min_length: usize,
    /// At least one `A-Z`.
    pub upper: bool,
    /// At least one `a-z`.
    pub lower: bool,
    /// At least one `0-9`.
    pub digit: bool,
    /// At least one of [`SPECIAL`].
    pub special: bool,
    /// No character twice in a row (`aa`, `11`).
    pub no_repeated_runs: bool,
    /// No word of the shipped list, in any case or with digit/symbol substitutions.
    pub no_dictionary_words: bool,
    /// Least estimated strength in bits: length times log2 of the alphabet the credential
    /// draws from (the classes it uses), 0 when it holds a dictionary word.
    pub min_strength_bits: u32,
}

impl CredentialPolicy {
    /// The SOC2 CC6.1 controls of the Predis plan: 16 characters or more, upper, lower, digit
    /// and special, no dictionary words, no repeated characters; at least 90 bits.
    pub const SOC2: CredentialPolicy = CredentialPolicy {
        min_length: 16,
        upper: true,
        lower: true,
        digit: true,
        special: true,
        no_repeated_runs: true,
        no_dictionary_words: true,
        min_strength_bits: 90,
    };

    /// Only a length (API keys and tokens, whose strength is their randomness).
    pub const fn length_only(min_length: usize) -> CredentialPolicy {
        CredentialPolicy {
            min_length,
            upper: false,
            lower: false,
            digit: false,
            special: false,
            no_repeated_runs: false,
            no_dictionary_words: false,
            min_strength_bits: 0,
        }
    }

    /// The rules `value` breaks (none: it passes). Names rules only, never the value.
    pub fn violations(&self, value: &[u8]) -> Vec<Violation> {
        let mut out = Vec::new();
        if value.len() < self.min_length {
            out.push(Violation::TooShort {
                min: self.min_length,
            });
        }
        let has = |f: fn(&u8) -> bool| value.iter().any(f);
        for (wanted, present, class) in [
            (
                self.upper,
                has(u8::is_ascii_uppercase),
                "an upper-case letter",
            ),
            (
                self.lower,
                has(u8::is_ascii_lowercase),
                "a lower-case letter",
            ),
            (self.digit, has(u8::is_ascii_digit), "a digit"),
            (
                self.special,
                has(|b| SPECIAL.contains(b)),
                "a special character",
            ),
        ] {
            if wanted && !present {
                out.push(Violation::Missing(class));
            }
        }
        if self.no_repeated_runs && value.windows(2).any(|w| w[0] == w[1]) {
            out.push(Violation::RepeatedCharacter);
        }
        let word = contains_word(value);
        if self.no_dictionary_words && word {
            out.push(Violation::DictionaryWord);
        }
        let bits = strength_bits(value, word);
        if bits < self.min_strength_bits {
            out.push(Violation::Weak {
                bits,
                min: self.min_strength_bits,
            });
        }
        out
    }

    /// `Ok` when `value` passes; else an `InvalidInput` error listing the rules broken.
    pub fn check(&self, value: &[u8]) -> Result<()> {
        let v = self.violations(value);
        if v.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = v.iter().map(ToString::to_string).collect();
        Err(Error::invalid_input(format!(
            "the credential breaks the policy: {}; generate one (sealbox rotate) or choose one \
             that meets it",
            list.join("; ")
        )))
    }

    /// The characters a generator draws from: the classes this policy asks for, or all four
    /// when it asks for none.
    pub fn alphabet(&self) -> Vec<u8> {
        let none = !(self.upper || self.lower || self.digit || self.special);
        let mut out = Vec::new();
        if self.upper || none {
            out.extend(b'A'..=b'Z');
        }
        if self.lower || none {
            out.extend(b'a'..=b'z');
        }
        if self.digit || none {
            out.extend(b'0'..=b'9');
        }
        if self.special || none {
            out.extend_from_slice(SPECIAL);
        }
        out
    }
}

/// One broken rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// Shorter than `min`.
    TooShort {
        /// The shortest allowed.
        min: usize,
    },
    /// A required class is missing.
    Missing(&'static str),
    /// The same character twice in a row.
    RepeatedCharacter,
    /// Holds a word of the list.
    DictionaryWord,
    /// Estimated `bits` below `min`.
    Weak {
        /// The estimate.
        bits: u32,
        /// The least allowed.
        min: u32,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::TooShort { min } => write!(f, "shorter than {min} characters"),
            Violation::Missing(class) => write!(f, "has no {class}"),
            Violation::RepeatedCharacter => f.write_str("repeats a character"),
            Violation::DictionaryWord => f.write_str("contains a dictionary word"),
            Violation::Weak { bits, min } => {
                write!(f, "estimated strength {bits} bits, below {min}")
            }
        }
    }
}

/// Lower case, with digit and symbol substitutions undone.
fn plain(b: u8) -> u8 {
    match b.to_ascii_lowercase() {
        b'0' => b'o',
        b'1' | b'!' | b'|' => b'i',
        b'3' => b'e',
        b'4' | b'@' => b'a',
        b'5' | b'$' => b's',
        b'7' | b'+' => b't',
        b'8' => b'b',
        c => c,
    }
}

fn contains_word(value: &[u8]) -> bool {
    let lower: Vec<u8> = value.iter().map(u8::to_ascii_lowercase).collect();
    let subst: Vec<u8> = value.iter().map(|&b| plain(b)).collect();
    let found = WORDS.iter().any(|w| {
        let w = w.as_bytes();
        lower.windows(w.len()).any(|x| x == w) || subst.windows(w.len()).any(|x| x == w)
    });
    let mut lower = lower;
    let mut subst = subst;
    zeroize::Zeroize::zeroize(&mut lower);
    zeroize::Zeroize::zeroize(&mut subst);
    found
}

fn strength_bits(value: &[u8], has_word: bool) -> u32 {
    if has_word {
        return 0;
    }
    let mut pool = 0u32;
    if value.iter().any(u8::is_ascii_uppercase) {
        pool += 26;
    }
    if value.iter().any(u8::is_ascii_lowercase) {
        pool += 26;
    }
    if value.iter().any(u8::is_ascii_digit) {
        pool += 10;
    }
    if value.iter().any(|b| !b.is_ascii_alphanumeric()) {
        pool += 33;
    }
    if pool < 2 {
        return 0;
    }
    (value.len() as f64 * f64::from(pool).log2()) as u32
}
