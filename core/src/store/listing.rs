//! Prefix filtering and token paging over a sorted set of names, shared by the stores that
//! list from an in-memory snapshot (env, file).
//!
//! The page token is the last name of the previous page, so a page never repeats or skips a
//! name even when names are added or removed between calls.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::time::SystemTime;

use super::{ListEntry, ListOptions, ListPage, SecretName};

/// Default page size when the caller gives none.
pub(crate) const DEFAULT_PAGE: usize = 100;

/// One page of `names` (already deduplicated and sorted) under `options`.
pub(crate) fn page(
    names: &BTreeSet<SecretName>,
    options: &ListOptions,
    updated: impl Fn(&SecretName) -> Option<SystemTime>,
) -> ListPage {
    let page_size = options.page_size.unwrap_or(DEFAULT_PAGE).max(1);
    let start = match &options.page_token {
        Some(token) => Bound::Excluded(token.as_str()),
        None => Bound::Unbounded,
    };
    let mut matching = names
        .iter()
        .filter(|n| match start {
            Bound::Excluded(t) => n.as_str() > t,
            _ => true,
        })
        .filter(|n| n.starts_with(&options.prefix));
    let entries: Vec<ListEntry> = matching
        .by_ref()
        .take(page_size)
        .map(|n| ListEntry {
            name: n.clone(),
            updated: updated(n),
            deleted: false,
        })
        .collect();
    let next_page_token = match (entries.len() == page_size, matching.next()) {
        (true, Some(_)) => entries.last().map(|e| e.name.to_string()),
        _ => None,
    };
    ListPage {
        entries,
        next_page_token,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(raw: &[&str]) -> BTreeSet<SecretName> {
        raw.iter().map(|n| SecretName::new(*n).unwrap()).collect()
    }

    #[test]
    fn pages_follow_tokens_to_the_end_without_repeats() {
        let all = names(&["a/1", "a/2", "a/3", "b/1", "a/4"]);
        let mut options = ListOptions {
            prefix: "a/".into(),
            page_size: Some(2),
            ..ListOptions::default()
        };
        let mut seen = Vec::new();
        loop {
            let p = page(&all, &options, |_| None);
            assert!(p.entries.len() <= 2);
            seen.extend(p.entries.into_iter().map(|e| e.name.to_string()));
            match p.next_page_token {
                Some(t) => options.page_token = Some(t),
                None => break,
            }
        }
        assert_eq!(seen, ["a/1", "a/2", "a/3", "a/4"]);
    }

    #[test]
    fn an_exactly_full_last_page_has_no_token() {
        let all = names(&["x/1", "x/2"]);
        let options = ListOptions {
            page_size: Some(2),
            ..ListOptions::default()
        };
        assert_eq!(page(&all, &options, |_| None).next_page_token, None);
    }
}
