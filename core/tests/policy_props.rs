//! Allow/deny over generated names: whatever an attacker spells (`..`, `//`, case, Unicode
//! look-alikes, `sb://` store prefixes), a principal reads only what its rules allow.

use std::sync::Arc;

use proptest::prelude::*;
use sealbox::policy::{Capability, Policy, Rule};
use sealbox::store::SecretName;
use sealbox::store::memory::MemoryStore;
use sealbox::{BlockingSealbox, ExposeSecret, Principal, Sealbox, Secret};

use Capability::*;

fn policy() -> Policy {
    Policy::new(vec![
        Rule::allow(&["svc:app"], &[Read, List], &["app/*"]).unwrap(),
        Rule::deny(&["svc:app"], &[Read], &["app/secret/*"]).unwrap(),
        Rule::allow(&["tenant:{id}"], &[Read], &["t/{id}/*"]).unwrap(),
        Rule::allow(&["root"], &[Admin], &["sb://*/*"]).unwrap(),
    ])
}

/// What each principal may read, said plainly.
fn allowed(principal: &str, name: &str) -> bool {
    match principal {
        "svc:app" => name.starts_with("app/") && !name.starts_with("app/secret/"),
        "tenant:acme" => name.starts_with("t/acme/"),
        _ => false,
    }
}

/// A client over two stores whose cache already holds every secret (read by `root`), so
/// that hits are checked too.
fn client() -> BlockingSealbox {
    let client = Sealbox::builder()
        .named_store("default", Arc::new(MemoryStore::new()))
        .named_store("other", Arc::new(MemoryStore::new()))
        .default_store("default")
        .policy(policy())
        .principal(Principal::new("root"))
        .build()
        .unwrap()
        .blocking()
        .unwrap();
    for (reference, value) in STORED {
        let mut v = value.as_bytes().to_vec();
        client
            .put(reference, &Secret::from_mut_slice(&mut v).unwrap())
            .unwrap();
        client.get(reference).unwrap();
    }
    client
}

const STORED: [(&str, &str); 5] = [
    ("app/x", "app-x"),
    ("app/secret/key", "SECRET"),
    ("t/acme/db", "ACME"),
    ("t/globex/db", "GLOBEX"),
    ("sb://other/app/x", "OTHER-STORE"),
];

/// Which values each principal may see.
fn may_see(principal: &str) -> &'static [&'static str] {
    match principal {
        "svc:app" => &["app-x"],
        "tenant:acme" => &["ACME"],
        _ => &[],
    }
}

const PIECES: &[&str] = &[
    "app", "APP", "аpp", "secret", "Secret", "sеcret", "key", "x", "t", "acme", "Acme", "globex",
    "db", "/", "//", "..", ".", "/./", "/../", "-", "_", "é", "e\u{301}", "／", "*",
];

fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 1..8).prop_map(|v| v.concat())
}

fn reference() -> impl Strategy<Value = String> {
    let store = prop::sample::select(&["", "", "sb://default/", "sb://other/", "sb://Other/"][..]);
    (store, name()).prop_map(|(s, n)| format!("{s}{n}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// The decision on a valid name is the plain rule above; names that are not valid are
    /// refused before any policy or store sees them.
    #[test]
    fn decisions_follow_the_rules_on_every_valid_name(
        n in name(),
        who in prop::sample::select(&["svc:app", "tenant:acme", "tenant:Acme", "svc:App"][..]),
    ) {
        if SecretName::new(&n).is_ok() {
            let decision = policy().check(&Principal::new(who), Read, &n);
            prop_assert_eq!(decision.is_allowed(), allowed(who, &n), "{} reads {:?}", who, n);
        }
    }

    /// Through the client, cached or not, in either store: no reference yields a value the
    /// principal's rules do not allow.
    #[test]
    fn no_spelling_reads_a_value_the_rules_deny(
        references in prop::collection::vec(reference(), 1..8),
        who in prop::sample::select(&["svc:app", "tenant:acme"][..]),
    ) {
        let client = client();
        let as_who = client.as_principal(Principal::new(who));
        for r in references.iter().map(String::as_str).chain(STORED.iter().map(|(r, _)| *r)) {
            if let Ok(handle) = as_who.get(r) {
                let value = String::from_utf8(handle.expose_secret().to_vec()).unwrap();
                prop_assert!(
                    may_see(who).contains(&value.as_str()),
                    "{} read {:?} as {:?}", who, value, r
                );
            }
        }
    }
}
