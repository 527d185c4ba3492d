//! Which rules can apply to a principal, without trying every rule.
//!
//! Each principal pattern of each rule is filed under its literal prefix (all of `svc:cache`,
//! `svc:predis-` of `svc:predis-*`, nothing for `*` or `{id}:x`). A principal can only match a
//! pattern whose prefix is a prefix of it, so a check looks up the principal itself and its
//! prefixes of the lengths some pattern uses, plus the patterns with no prefix.

use super::pattern::Pattern;

/// Keys are the config's own text, not an attacker's, so a fast unkeyed-quality hash is fine.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A rule's principal pattern: (rule index, pattern index within the rule).
type Entry = (usize, usize);

#[derive(Clone, Default)]
pub(super) struct PrincipalIndex {
    /// Patterns that are plain text, by that text.
    exact: HashMap<Box<str>, Vec<Entry>>,
    /// Patterns with a wildcard after a literal prefix, by the prefix.
    prefixed: HashMap<Box<str>, Vec<Entry>>,
    /// The distinct lengths (bytes) of the keys of `prefixed`, ascending.
    prefix_lens: Vec<usize>,
    /// Patterns that start with a wildcard.
    anywhere: Vec<Entry>,
}

impl PrincipalIndex {
    pub(super) fn insert(&mut self, pattern: &Pattern, rule: usize, which: usize) {
        let entry = (rule, which);
        match pattern.literal_prefix() {
            (text, true) => self.exact.entry(text.into()).or_default().push(entry),
            ("", false) => self.anywhere.push(entry),
            (prefix, false) => {
                if let Err(at) = self.prefix_lens.binary_search(&prefix.len()) {
                    self.prefix_lens.insert(at, prefix.len());
                }
                self.prefixed.entry(prefix.into()).or_default().push(entry);
            }
        }
    }

    /// Calls `visit(rule, pattern)` for every principal pattern that might match `principal`,
    /// until it returns `false`.
    pub(super) fn candidates(&self, principal: &str, mut visit: impl FnMut(usize, usize) -> bool) {
        let mut each = |entries: &[Entry]| entries.iter().all(|(rule, which)| visit(*rule, *which));
        if let Some(entries) = self.exact.get(principal)
            && !each(entries)
        {
            return;
        }
        for len in &self.prefix_lens {
            let Some(prefix) = principal.get(..*len) else {
                // too long, or not on a character boundary (then no prefix of this length
                // matches either)
                if *len > principal.len() {
                    break;
                }
                continue;
            };
            if let Some(entries) = self.prefixed.get(prefix)
                && !each(entries)
            {
                return;
            }
        }
        each(&self.anywhere);
    }
}
