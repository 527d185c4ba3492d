//! Name and principal patterns: literal text, `*` (any run, `/` included) and `{var}` (one
//! segment, bound once and compared on reuse).

use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Literal(String),
    Star,
    Var(String),
}

/// A compiled pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    tokens: Vec<Token>,
}

/// Variable bindings collected while matching (few, so a small vector).
#[derive(Clone, Debug, Default)]
pub(crate) struct Bindings(Vec<(String, String)>);

impl Bindings {
    fn get(&self, var: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == var)
            .map(|(_, v)| v.as_str())
    }
}

impl Pattern {
    /// Compiles `source`. `{` must open a variable named with ASCII letters, digits or `_`.
    pub fn new(source: &str) -> Result<Pattern> {
        if source.is_empty() {
            return Err(Error::config(
                "an empty pattern matches nothing; use \"*\" for everything",
            ));
        }
        let mut tokens = Vec::new();
        let mut literal = String::new();
        let mut chars = source.chars();
        while let Some(c) = chars.next() {
            match c {
                '*' => {
                    if !literal.is_empty() {
                        tokens.push(Token::Literal(std::mem::take(&mut literal)));
                    }
                    if tokens.last() != Some(&Token::Star) {
                        tokens.push(Token::Star);
                    }
                }
                '{' => {
                    let var: String = chars.by_ref().take_while(|c| *c != '}').collect();
                    let valid = !var.is_empty()
                        && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        && source.contains(&format!("{{{var}}}"));
                    if !valid {
                        return Err(Error::config(format!(
                            "pattern {source:?}: '{{' must open a variable like {{id}}"
                        )));
                    }
                    if !literal.is_empty() {
                        tokens.push(Token::Literal(std::mem::take(&mut literal)));
                    }
                    tokens.push(Token::Var(var));
                }
                '}' => {
                    return Err(Error::config(format!("pattern {source:?}: unmatched '}}'")));
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            tokens.push(Token::Literal(literal));
        }
        Ok(Pattern {
            source: source.to_owned(),
            tokens,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The literal text every match starts with, and whether it is the whole pattern (a
    /// pattern without `*` or `{var}` matches only itself).
    pub(crate) fn literal_prefix(&self) -> (&str, bool) {
        match self.tokens.as_slice() {
            [] => ("", true),
            [Token::Literal(l)] => (l, true),
            [Token::Literal(l), ..] => (l, false),
            _ => ("", false),
        }
    }

    /// Names of the variables in the pattern.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.tokens.iter().filter_map(|t| match t {
            Token::Var(v) => Some(v.as_str()),
            _ => None,
        })
    }

    /// Whether `text` matches (variables unconstrained).
    pub fn matches(&self, text: &str) -> bool {
        self.matches_with(text, &mut Bindings::default())
    }

    /// Matches and records the variables it binds into `bindings`.
    pub(crate) fn matches_binding(&self, text: &str, bindings: &mut Bindings) -> bool {
        self.matches_with(text, bindings)
    }

    pub(crate) fn matches_with(&self, text: &str, bindings: &mut Bindings) -> bool {
        match_tokens(&self.tokens, text, bindings)
    }
}

fn segment_char(c: char) -> bool {
    c != '/' && c != ':'
}

fn match_tokens(tokens: &[Token], text: &str, bindings: &mut Bindings) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return text.is_empty();
    };
    match first {
        Token::Literal(l) => text
            .strip_prefix(l.as_str())
            .is_some_and(|t| match_tokens(rest, t, bindings)),
        Token::Star => (0..=text.len())
            .filter(|i| text.is_char_boundary(*i))
            .any(|i| match_tokens(rest, &text[i..], bindings)),
        Token::Var(var) => {
            if let Some(bound) = bindings.get(var) {
                let bound = bound.to_owned();
                return text
                    .strip_prefix(bound.as_str())
                    .is_some_and(|t| match_tokens(rest, t, bindings));
            }
            let max = text.find(|c| !segment_char(c)).unwrap_or(text.len());
            for end in (1..=max).rev().filter(|i| text.is_char_boundary(*i)) {
                let mut attempt = bindings.clone();
                attempt.0.push((var.clone(), text[..end].to_owned()));
                if match_tokens(rest, &text[end..], &mut attempt) {
                    *bindings = attempt;
                    return true;
                }
            }
            false
        }
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
    }

    #[test]
    fn bad_patterns_are_config_errors() {
        for bad in ["", "a/{", "a/{}/b", "a}b", "{a-b}"] {
            assert!(Pattern::new(bad).is_err(), "{bad:?}");
        }
    }
}
