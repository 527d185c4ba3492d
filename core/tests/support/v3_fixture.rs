//! The contents of `fixtures/vault-v3.sqlite3`: a vault written by the schema-3 layout (main
//! at 05a00e6), described here so that the migration test can check every value, stage, tag,
//! description and deletion it holds after opening it with today's code.

use std::collections::BTreeMap;

/// How many secrets the fixture holds.
pub const SECRETS: usize = 300;

/// The namespaces (first name segment) the secrets are spread over.
pub const NAMESPACES: [&str; 3] = ["app", "billing", "ops"];

/// One secret of the fixture, as written.
pub struct Expected {
    pub name: String,
    /// Values of versions 1..=n.
    pub values: Vec<String>,
    /// The version holding `CURRENT`.
    pub current: i64,
    /// The version holding `PENDING`, if any.
    pub pending: Option<i64>,
    /// The version holding `PREVIOUS`, if any.
    pub previous: Option<i64>,
    pub description: Option<String>,
    pub tags: BTreeMap<String, String>,
    /// Soft-deleted (with a ten-year recovery window).
    pub deleted: bool,
}

/// Secret `i` of the fixture: `1 + i % 4` versions, each `CURRENT` except that for every
/// fifth secret with more than one version the last is only `PENDING`; a description on every
/// other secret, tags on every third, every tenth (from the seventh) soft-deleted.
pub fn expected(i: usize) -> Expected {
    let ns = NAMESPACES[i % NAMESPACES.len()];
    let name = format!("{ns}/svc-{i:03}/key");
    let n = 1 + (i % 4) as i64;
    let values = (1..=n).map(|v| value(&name, v)).collect();
    let last_pending = i.is_multiple_of(5) && n > 1;
    let current = if last_pending { n - 1 } else { n };
    let pending = last_pending.then_some(n);
    let previous = (current > 1).then_some(current - 1);
    let description = i
        .is_multiple_of(2)
        .then(|| format!("secret number {i} of the fixture"));
    let mut tags = BTreeMap::new();
    if i.is_multiple_of(3) {
        tags.insert("team".to_owned(), ns.to_owned());
        tags.insert("index".to_owned(), i.to_string());
    }
    Expected {
        name,
        values,
        current,
        pending,
        previous,
        description,
        tags,
        deleted: i % 10 == 7,
    }
}

/// The value of version `v` of `name`.
pub fn value(name: &str, v: i64) -> String {
    format!("value {v} of {name}: {}", "z".repeat((v as usize * 7) % 23))
}
