//! `sb://STORE/NAME#FIELD` references in a store's `config:` block: a provider's own
//! credential (a Vault token, a GCP service-account key, a database admin password, a PKCS#11
//! PIN) kept in another configured store, typically the embedded vault, instead of in the
//! config file or the environment.
//!
//! ```yaml
//! stores:
//!   vault: {provider: local, config: {path: ./vault, master_key: {provider: key_file, path: ./master.key}}}
//!   gcp: {provider: gcp, config: {project: p, credentials: "sb://vault/gcp/sa-key"}}
//! ```
//!
//! Stores are built so that every store a reference names exists first (a cycle, a store
//! naming itself or an unknown store is a `Config` error naming the key). Each reference is
//! read once, at build, from the named store's `CURRENT` version, straight into locked memory
//! ([`Secret`]); `#FIELD` takes one top-level field of a JSON value. The value reaches the
//! provider only through [`ProviderConfig::secret`](super::ProviderConfig::secret): a
//! reference at a key its provider does not read as a secret is a `Config` error after the
//! build, so a reference is never taken as a literal without notice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::secret::{Secret, SecretString};
use crate::store::{SecretName, SecretStore, VersionSelector};

const SCHEME: &str = "sb://";

/// A parsed reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoreRef {
    /// The store id (`None` for `sb:///NAME`: the default store).
    pub store: Option<String>,
    pub name: String,
    pub field: Option<String>,
}

impl StoreRef {
    /// `Ok(None)` when `text` is not a reference; an error when it starts like one but is
    /// malformed (`at` names the key).
    pub fn parse(at: &str, text: &str) -> Result<Option<StoreRef>> {
        let Some(rest) = text.strip_prefix(SCHEME) else {
            return Ok(None);
        };
        let bad = |why: &str| {
            Error::config(format!(
                "{at}: {why}; a reference is sb://STORE/NAME or sb://STORE/NAME#FIELD"
            ))
        };
        let (path, field) = match rest.split_once('#') {
            Some((_, "")) => return Err(bad("the field after # is empty")),
            Some((p, f)) => (p, Some(f.to_owned())),
            None => (rest, None),
        };
        let (store, name) = path.split_once('/').ok_or_else(|| bad("no secret name"))?;
        if name.is_empty() {
            return Err(bad("no secret name"));
        }
        SecretName::new(name).map_err(|e| bad(e.message()))?;
        Ok(Some(StoreRef {
            store: (!store.is_empty()).then(|| store.to_owned()),
            name: name.to_owned(),
            field,
        }))
    }
}

/// Every reference in a config block, by key path (`stores.gcp.config.credentials`).
pub(crate) fn collect(at: &str, value: &serde_json::Value) -> Result<Vec<(String, StoreRef)>> {
    let mut out = Vec::new();
    walk(at, value, &mut out)?;
    Ok(out)
}

fn walk(at: &str, value: &serde_json::Value, out: &mut Vec<(String, StoreRef)>) -> Result<()> {
    match value {
        serde_json::Value::String(s) => {
            if let Some(r) = StoreRef::parse(at, s)? {
                out.push((at.to_owned(), r));
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                walk(&format!("{at}[{i}]"), v, out)?;
            }
        }
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                walk(&format!("{at}.{k}"), v, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The order to build `stores` in (indices), each after the stores its references name.
/// `refs[i]` are store `i`'s references with the default store already filled in.
pub(crate) fn build_order(ids: &[String], refs: &[Vec<(String, String)>]) -> Result<Vec<usize>> {
    let index: BTreeMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i))
        .collect();
    let mut deps = vec![BTreeSet::new(); ids.len()];
    for (i, list) in refs.iter().enumerate() {
        for (at, store) in list {
            let j = *index.get(store.as_str()).ok_or_else(|| {
                Error::config(format!(
                    "{at}: no store named {store:?} (stores: {})",
                    ids.join(", ")
                ))
            })?;
            if j == i {
                return Err(Error::config(format!(
                    "{at}: a store's config cannot reference the store itself"
                )));
            }
            deps[i].insert(j);
        }
    }
    // Depth-first, in id order, so that the order is the config's when nothing is referenced.
    let mut order = Vec::with_capacity(ids.len());
    let mut state = vec![0u8; ids.len()]; // 0 new, 1 on the path, 2 done
    fn visit(
        i: usize,
        ids: &[String],
        deps: &[BTreeSet<usize>],
        state: &mut [u8],
        order: &mut Vec<usize>,
    ) -> Result<()> {
        match state[i] {
            2 => return Ok(()),
            1 => {
                return Err(Error::config(format!(
                    "stores.{}: its config and another store's reference each other through \
                     sb:// (a cycle); keep a store's own credential outside the stores it \
                     unlocks",
                    ids[i]
                )));
            }
            _ => {}
        }
        state[i] = 1;
        for &j in &deps[i] {
            visit(j, ids, deps, state, order)?;
        }
        state[i] = 2;
        order.push(i);
        Ok(())
    }
    for i in 0..ids.len() {
        visit(i, ids, &deps, &mut state, &mut order)?;
    }
    Ok(order)
}

/// A store and the id it has in the config.
pub(crate) type NamedStore = (String, Arc<dyn SecretStore>);

/// The values of a block's references, read at build, and which of them the provider took.
#[derive(Clone, Default)]
pub(crate) struct Resolved {
    values: Arc<BTreeMap<String, Secret>>,
    taken: Arc<Mutex<BTreeSet<String>>>,
}

impl Resolved {
    /// Reads each reference from its store; `store_of` gives, for a reference's key path,
    /// the id and the built store it names.
    pub async fn read(
        refs: &[(String, StoreRef)],
        store_of: &dyn Fn(&str) -> Option<NamedStore>,
    ) -> Result<Resolved> {
        let mut values = BTreeMap::new();
        for (at, r) in refs {
            let (id, store) = store_of(at).ok_or_else(|| {
                Error::config(format!("{at}: the store this reference names is not built"))
            })?;
            let name = SecretName::new(r.name.clone())?;
            let version = store
                .get(&name, &VersionSelector::Current)
                .await
                .map_err(|e| {
                    Error::new(
                        e.kind(),
                        format!("{at}: reading sb://{id}/{}: {}", r.name, e.message()),
                    )
                })?;
            let secret = match &r.field {
                None => version.value,
                Some(f) => version
                    .value
                    .json_field(f)
                    .map_err(|e| {
                        Error::new(
                            e.kind(),
                            format!("{at}: field {f:?} of sb://{id}/{}: {}", r.name, e.message()),
                        )
                    })?
                    .into_secret(),
            };
            values.insert(at.clone(), secret);
        }
        Ok(Resolved {
            values: Arc::new(values),
            taken: Arc::default(),
        })
    }

    /// The value of the reference at `at`, marked as taken.
    pub fn take(&self, at: &str) -> Option<Result<SecretString>> {
        let v = self.values.get(at)?;
        self.taken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(at.to_owned());
        Some(v.try_clone().and_then(Secret::into_string))
    }

    /// A `Config` error for the first reference no provider took as a secret.
    pub fn check_all_taken(&self, provider: &str) -> Result<()> {
        let taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        match self.values.keys().find(|k| !taken.contains(*k)) {
            None => Ok(()),
            Some(at) => Err(Error::config(format!(
                "{at}: provider {provider:?} does not read this setting as a secret, so an \
                 sb:// reference cannot stand there (references work in secret settings: \
                 passwords, tokens, keys, PINs)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_with_store_name_and_field() {
        let r = StoreRef::parse("k", "sb://vault/db/admin#password")
            .unwrap()
            .unwrap();
        assert_eq!(r.store.as_deref(), Some("vault"));
        assert_eq!(r.name, "db/admin");
        assert_eq!(r.field.as_deref(), Some("password"));
        let r = StoreRef::parse("k", "sb:///t").unwrap().unwrap();
        assert_eq!((r.store, r.field), (None, None));
        assert!(StoreRef::parse("k", "https://x").unwrap().is_none());
        for bad in ["sb://vault", "sb://vault/", "sb://vault/a#"] {
            let e = StoreRef::parse("stores.a.config.token", bad).unwrap_err();
            assert!(e.message().contains("stores.a.config.token"), "{e}");
        }
    }

    #[test]
    fn stores_are_built_after_the_stores_they_reference() {
        let ids: Vec<String> = ["a", "b", "c"].map(String::from).into();
        let refs = vec![
            vec![("stores.a.config.t".into(), "c".into())],
            vec![],
            vec![("stores.c.config.t".into(), "b".into())],
        ];
        assert_eq!(build_order(&ids, &refs).unwrap(), [1, 2, 0]);
        let cycle = vec![
            vec![("x".into(), "b".into())],
            vec![("y".into(), "a".into())],
            vec![],
        ];
        assert!(
            build_order(&ids, &cycle)
                .unwrap_err()
                .message()
                .contains("cycle")
        );
        let own = vec![vec![("x".into(), "a".into())], vec![], vec![]];
        assert!(
            build_order(&ids, &own)
                .unwrap_err()
                .message()
                .contains("itself")
        );
        let unknown = vec![vec![("x".into(), "zz".into())], vec![], vec![]];
        assert!(
            build_order(&ids, &unknown)
                .unwrap_err()
                .message()
                .contains("no store named")
        );
    }
}
