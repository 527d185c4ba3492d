//! Name and principal patterns: literal text, `*` (any run, `/` included) and `{var}` (one
//! whole segment, bound once and compared on reuse).
//!
//! # Matching in linear time
//! Patterns are checked on every audited cache hit, so matching must not backtrack. A pattern
//! is compiled into **chunks**, the runs between its `*`s. A `{var}` must fill a whole segment
//! (it sits between the pattern's start or a `/`/`:` and the pattern's end or a `/`/`:`), so
//! where a chunk matches is decided by where it starts, and a chunk after a `*` starts with
//! literal text. The first chunk is matched at the start, the last at the end, and each one
//! between at its leftmost place after the previous one: leftmost is never worse, since
//! what follows a `*` can then start anywhere later. A chunk of literal text alone is found with
//! `str::find`, so a pattern of stars and literals costs time linear in the name; a chunk with
//! a variable costs at most its length at each place its first literal occurs. A variable
//! appears at most once in a pattern, so no choice of binding can matter later in the same
//! pattern, and matching needs no allocation.

use crate::error::{Error, Result};

/// The most variables one pattern may bind (bindings live in a fixed array: a check does not
/// allocate).
const MAX_VARS: usize = 8;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Literal(Box<str>),
    Var(Box<str>),
}

/// A compiled pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    /// The runs between `*`s; `chunks.len() - 1` is the number of `*`s (runs of `*` count
    /// once). Only the first and the last chunk may be empty.
    chunks: Vec<Vec<Token>>,
}

/// Variable bindings collected while matching: (variable, value) pairs borrowed from the
/// pattern and the text, in a fixed array.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Bindings<'a> {
    len: usize,
    slots: [(&'a str, &'a str); MAX_VARS],
}

impl<'a> Bindings<'a> {
    fn get(&self, var: &str) -> Option<&'a str> {
        self.slots[..self.len]
            .iter()
            .find(|(k, _)| *k == var)
            .map(|(_, v)| *v)
    }

    fn bind(&mut self, var: &'a str, value: &'a str) -> bool {
        if self.len == MAX_VARS {
            return false;
        }
        self.slots[self.len] = (var, value);
        self.len += 1;
        true
    }
}

fn separator(c: char) -> bool {
    c == '/' || c == ':'
}

impl Pattern {
    /// Compiles `source`. `{` must open a variable named with ASCII letters, digits or `_`,
    /// standing for a whole segment (between the start or a `/`/`:` and the end or a
    /// `/`/`:`), used once in the pattern.
    pub fn new(source: &str) -> Result<Pattern> {
        if source.is_empty() {
            return Err(Error::config(
                "an empty pattern matches nothing; use \"*\" for everything",
            ));
        }
        let bad = |why: &str| Error::config(format!("pattern {source:?}: {why}"));
        let mut chunks: Vec<Vec<Token>> = vec![Vec::new()];
        let mut literal = String::new();
        let mut vars: Vec<&str> = Vec::new();
        let mut rest = source;
        let mut prev: Option<char> = None;
        let flush = |literal: &mut String, chunks: &mut Vec<Vec<Token>>| {
            if !literal.is_empty() {
                let l = std::mem::take(literal).into_boxed_str();
                chunks
                    .last_mut()
                    .expect("one chunk")
                    .push(Token::Literal(l));
            }
        };
        while let Some(c) = rest.chars().next() {
            rest = &rest[c.len_utf8()..];
            match c {
                '*' => {
                    flush(&mut literal, &mut chunks);
                    if prev != Some('*') {
                        chunks.push(Vec::new());
                    }
                }
                '{' => {
                    let Some((var, after)) = rest.split_once('}') else {
                        return Err(bad("'{' must open a variable like {id}"));
                    };
                    if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        return Err(bad("'{' must open a variable like {id}"));
                    }
                    let whole =
                        prev.is_none_or(separator) && after.chars().next().is_none_or(separator);
                    if !whole {
                        return Err(bad(&format!(
                            "{{{var}}} must be a whole segment: between the start or a '/' or \
                             ':' and the end or a '/' or ':'"
                        )));
                    }
                    if vars.contains(&var) {
                        return Err(bad(&format!("{{{var}}} is used twice")));
                    }
                    if vars.len() == MAX_VARS {
                        return Err(bad(&format!("more than {MAX_VARS} variables")));
                    }
                    vars.push(var);
                    flush(&mut literal, &mut chunks);
                    chunks
                        .last_mut()
                        .expect("one chunk")
                        .push(Token::Var(var.into()));
                    rest = after;
                    prev = Some('}');
                    continue;
                }
                '}' => return Err(bad("unmatched '}'")),
                c => literal.push(c),
            }
            prev = Some(c);
        }
        flush(&mut literal, &mut chunks);
        Ok(Pattern {
            source: source.to_owned(),
            chunks,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The literal text every match starts with, and whether it is the whole pattern (a
    /// pattern without `*` or `{var}` matches only itself).
    pub(crate) fn literal_prefix(&self) -> (&str, bool) {
        let no_star = self.chunks.len() == 1;
        match self.chunks[0].as_slice() {
            [] => ("", no_star),
            [Token::Literal(l)] => (l, no_star),
            [Token::Literal(l), ..] => (l, false),
            _ => ("", false),
        }
    }

    /// Names of the variables in the pattern.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.chunks.iter().flatten().filter_map(|t| match t {
            Token::Var(v) => Some(&**v),
            _ => None,
        })
    }

    /// Whether `text` matches (variables unconstrained).
    pub fn matches(&self, text: &str) -> bool {
        self.matches_binding(text, &mut Bindings::default())
    }

    /// Matches and records the variables it binds into `bindings` (left as they were when
    /// `text` does not match).
    pub(crate) fn matches_binding<'a>(
        &'a self,
        text: &'a str,
        bindings: &mut Bindings<'a>,
    ) -> bool {
        let mut attempt = *bindings;
        let matched = self.match_chunks(text, &mut attempt);
        if matched {
            *bindings = attempt;
        }
        matched
    }

    /// Matches with `bindings` fixed (every variable bound, as in a secret pattern, whose
    /// variables the principal pattern binds).
    pub(crate) fn matches_bound<'a>(&'a self, text: &'a str, bindings: &Bindings<'a>) -> bool {
        self.match_chunks(text, &mut bindings.clone())
    }

    fn match_chunks<'a>(&'a self, text: &'a str, bindings: &mut Bindings<'a>) -> bool {
        let (first, after_first) = self.chunks.split_first().expect("one chunk");
        let Some(mut at) = match_at(first, text, 0, bindings) else {
            return false;
        };
        let Some((last, middle)) = after_first.split_last() else {
            return at == text.len();
        };
        let Some(end) = match_ending_at(last, text, text.len(), bindings) else {
            return false;
        };
        if end < at {
            return false;
        }
        let window = &text[..end];
        for chunk in middle {
            match find_leftmost(chunk, window, at, bindings) {
                Some(next) => at = next,
                None => return false,
            }
        }
        true
    }
}

/// Where `tokens` matched at `at` ends, binding unbound variables.
fn match_at<'a>(
    tokens: &'a [Token],
    text: &'a str,
    mut at: usize,
    bindings: &mut Bindings<'a>,
) -> Option<usize> {
    for t in tokens {
        let rest = &text[at..];
        at += match t {
            Token::Literal(l) => rest.starts_with(&**l).then_some(l.len())?,
            Token::Var(var) => match bindings.get(var) {
                Some(value) => rest.starts_with(value).then_some(value.len())?,
                None => {
                    let len = rest.find(separator).unwrap_or(rest.len());
                    if len == 0 || !bindings.bind(var, &rest[..len]) {
                        return None;
                    }
                    len
                }
            },
        };
    }
    // A variable ends a segment: the pattern puts a separator or its end after it.
    Some(at)
}

/// Where `tokens` matched so as to end at `end` starts, binding unbound variables.
fn match_ending_at<'a>(
    tokens: &'a [Token],
    text: &'a str,
    mut end: usize,
    bindings: &mut Bindings<'a>,
) -> Option<usize> {
    for t in tokens.iter().rev() {
        let before = &text[..end];
        end -= match t {
            Token::Literal(l) => before.ends_with(&**l).then_some(l.len())?,
            Token::Var(var) => {
                let len = before.len() - before.rfind(separator).map_or(0, |i| i + 1);
                let value = &before[before.len() - len..];
                match bindings.get(var) {
                    Some(bound) if bound == value => len,
                    Some(_) => return None,
                    None if len > 0 && bindings.bind(var, value) => len,
                    None => return None,
                }
            }
        };
    }
    Some(end)
}

/// The end of the leftmost match of `tokens` (which start with a literal) at or after `from`.
fn find_leftmost<'a>(
    tokens: &'a [Token],
    text: &'a str,
    mut from: usize,
    bindings: &mut Bindings<'a>,
) -> Option<usize> {
    let Some(Token::Literal(head)) = tokens.first() else {
        return None; // not built by `Pattern::new`
    };
    loop {
        let start = from + text[from..].find(&**head)?;
        let mut attempt = *bindings;
        if let Some(end) = match_at(tokens, text, start, &mut attempt) {
            *bindings = attempt;
            return Some(end);
        }
        // next occurrence: one character on
        from = start + text[start..].chars().next().map_or(1, char::len_utf8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_crosses_segments() {
        let p = Pattern::new("predis/prod/*").unwrap();
        assert!(p.matches("predis/prod/database/password"));
        assert!(p.matches("predis/prod/"));
        assert!(!p.matches("predis/production"));
        assert!(!p.matches("predis/staging/x"));
        assert!(Pattern::new("*").unwrap().matches("anything/at/all"));
        assert!(
            Pattern::new("svc:predis-*")
                .unwrap()
                .matches("svc:predis-cache")
        );
    }

    #[test]
    fn variables_bind_one_segment() {
        let p = Pattern::new("t/{id}/x").unwrap();
        assert!(p.matches("t/acme/x"));
        assert!(!p.matches("t/acme/evil/x"));
        assert!(!p.matches("t//x"));
        let tenant = Pattern::new("tenant:{id}").unwrap();
        let mut b = Bindings::default();
        assert!(tenant.matches_binding("tenant:acme", &mut b));
        assert_eq!(b.get("id"), Some("acme"));
        // after a star the variable is still the whole segment it sits in
        let p = Pattern::new("*/{id}/x").unwrap();
        let mut b = Bindings::default();
        assert!(p.matches_binding("a/b/c/x", &mut b));
        assert_eq!(b.get("id"), Some("c"));
    }

    #[test]
    fn a_bound_variable_must_be_the_whole_segment() {
        let p = Pattern::new("t/{id}/*").unwrap();
        let mut acme = Bindings::default();
        assert!(acme.bind("id", "acme"));
        assert!(p.matches_bound("t/acme/db", &acme));
        // a tenant named `acme` does not get `acme-evil` or `acm`
        assert!(!p.matches_bound("t/acme-evil/db", &acme));
        assert!(!p.matches_bound("t/acm/db", &acme));
    }

    #[test]
    fn bad_patterns_are_config_errors() {
        for bad in [
            "", "a/{", "a/{}/b", "a}b", "{a-b}",
            // a variable is a whole segment, used once
            "t/x{id}", "t/{id}x", "*{id}", "{id}*", "{a}/{a}",
        ] {
            assert!(Pattern::new(bad).is_err(), "{bad:?}");
        }
    }

    /// The old matcher tried every split of the name among the stars: this case took more
    /// than 50 seconds (killed) in a debug build; a 50 ms bound leaves room for slow CI.
    #[test]
    fn many_stars_against_a_long_name_answer_quickly() {
        let p = Pattern::new(&format!("{}b", "a*".repeat(12))).unwrap();
        let miss = "a".repeat(200);
        let hit = format!("{miss}b");
        let started = std::time::Instant::now();
        for _ in 0..10 {
            assert!(!p.matches(&miss));
            assert!(p.matches(&hit));
        }
        let took = started.elapsed() / 10;
        assert!(took < std::time::Duration::from_millis(50), "{took:?}");
    }
}

/// The matcher against the obvious one: try every split (exponential, so small inputs).
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// `pattern` matches `text` given `bound` values, by trying everything.
    fn reference(pattern: &str, text: &str, bound: &[(&str, &str)]) -> bool {
        if let Some(rest) = pattern.strip_prefix('*') {
            let rest = rest.trim_start_matches('*');
            return text
                .char_indices()
                .map(|(i, _)| i)
                .chain([text.len()])
                .any(|i| reference(rest, &text[i..], bound));
        }
        if let Some(rest) = pattern.strip_prefix('{') {
            let (var, rest) = rest.split_once('}').expect("checked by Pattern::new");
            if let Some((_, value)) = bound.iter().find(|(k, _)| *k == var) {
                return text
                    .strip_prefix(value)
                    .is_some_and(|t| reference(rest, t, bound));
            }
            let segment = text.find(['/', ':']).unwrap_or(text.len());
            return (1..=segment)
                .filter(|i| text.is_char_boundary(*i))
                .any(|i| {
                    let mut more = bound.to_vec();
                    more.push((var, &text[..i]));
                    reference(rest, &text[i..], &more)
                });
        }
        match pattern.chars().next() {
            None => text.is_empty(),
            Some(c) => text
                .strip_prefix(c)
                .is_some_and(|t| reference(&pattern[c.len_utf8()..], t, bound)),
        }
    }

    /// Pieces of names an attacker would try: separators, dots, case and look-alikes
    /// (Cyrillic `а`, `е`, a fullwidth slash, a combining accent).
    const PIECES: &[&str] = &[
        "a", "b", "ab", "A", "/", "//", ":", ".", "..", "-", "_", "а", "е", "é", "e\u{301}", "／",
    ];

    fn text() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(PIECES), 0..10).prop_map(|v| v.concat())
    }

    fn pattern() -> impl Strategy<Value = String> {
        let mut pieces: Vec<&str> = PIECES.to_vec();
        pieces.extend(["*", "*", "{id}", "{x}", "/{id}/", ":{x}"]);
        prop::collection::vec(prop::sample::select(pieces), 1..7)
            .prop_map(|v| v.concat())
            .prop_filter("a valid pattern", |p| Pattern::new(p).is_ok())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn the_matcher_agrees_with_trying_everything(p in pattern(), t in text()) {
            let compiled = Pattern::new(&p).unwrap();
            prop_assert_eq!(compiled.matches(&t), reference(&p, &t, &[]), "{:?} ~ {:?}", p, t);
        }

        #[test]
        fn with_a_bound_variable_too(
            p in pattern(),
            t in text(),
            id in prop::sample::select(&["a", "ab", "A", "а", "..", "é"][..]),
        ) {
            let compiled = Pattern::new(&p).unwrap();
            let mut bindings = Bindings::default();
            prop_assert!(bindings.bind("id", id));
            prop_assert_eq!(
                compiled.matches_bound(&t, &bindings),
                reference(&p, &t, &[("id", id)]),
                "{:?} ~ {:?} with id={:?}", p, t, id
            );
        }
    }
}
