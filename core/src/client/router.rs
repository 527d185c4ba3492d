//! The store router: named stores, name-prefix routes and `sb://STORE/...` references.

use std::sync::Arc;

use crate::audit::Resource;
use crate::config::printable;
use crate::error::{Error, ErrorKind, Result};
use crate::store::{SecretName, SecretRef, SecretStore};

/// Where a reference goes.
#[derive(Clone, Debug)]
pub(crate) struct Route {
    pub(crate) store_id: Arc<str>,
    pub(crate) store: Arc<dyn SecretStore>,
    pub(crate) name: SecretName,
    pub(crate) field: Option<String>,
}

impl Route {
    /// The audit resource this route reads (no version yet).
    pub(crate) fn resource(&self) -> Arc<Resource> {
        Resource::in_store(self.name.as_str(), self.store_id.clone())
    }
}

/// A store a listing visits: its id, the store and the prefix to list there.
pub(crate) type ListTarget = (Arc<str>, Arc<dyn SecretStore>, String);

/// Named stores, prefix routes (longest wins, on `/` boundaries) and a default store.
#[derive(Clone, Debug)]
pub struct Router {
    stores: Vec<(Arc<str>, Arc<dyn SecretStore>)>,
    routes: Vec<(String, usize)>,
    default: usize,
}

impl Router {
    /// Builds a router. Route targets and the default must name configured stores.
    pub fn new(
        stores: Vec<(String, Arc<dyn SecretStore>)>,
        routes: Vec<(String, String)>,
        default: &str,
    ) -> Result<Router> {
        if stores.is_empty() {
            return Err(Error::config("a Sealbox needs at least one store"));
        }
        let mut seen = std::collections::HashSet::new();
        for (id, _) in &stores {
            printable("store id", id)?;
            if id.is_empty() || id.contains('/') {
                return Err(Error::config(format!(
                    "store id {id:?} must be non-empty and contain no '/'"
                )));
            }
            if !seen.insert(id.clone()) {
                return Err(Error::config(format!(
                    "store id {id:?} is configured twice"
                )));
            }
        }
        let index = |id: &str| {
            stores.iter().position(|(s, _)| s == id).ok_or_else(|| {
                Error::config(format!(
                    "no store named {id:?}; configured stores: {}",
                    stores
                        .iter()
                        .map(|(s, _)| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
        };
        let default = index(default)?;
        let mut compiled = Vec::with_capacity(routes.len());
        for (prefix, id) in routes {
            printable("route prefix", &prefix)?;
            let prefix = prefix.trim_end_matches('/').to_owned();
            if prefix.is_empty() {
                return Err(Error::config(
                    "a route prefix must not be empty; use default_store instead",
                ));
            }
            compiled.push((prefix, index(&id)?));
        }
        compiled.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
        Ok(Router {
            stores: stores
                .into_iter()
                .map(|(id, s)| (Arc::from(id.as_str()), s))
                .collect(),
            routes: compiled,
            default,
        })
    }

    /// A router with a single store named `default`.
    pub fn single(store: Arc<dyn SecretStore>) -> Router {
        Router {
            stores: vec![(Arc::from("default"), store)],
            routes: Vec::new(),
            default: 0,
        }
    }

    /// The configured store ids.
    pub fn store_ids(&self) -> impl Iterator<Item = &str> {
        self.stores.iter().map(|(id, _)| &**id)
    }

    /// The store with this id.
    pub fn store(&self, id: &str) -> Option<&Arc<dyn SecretStore>> {
        self.stores.iter().find(|(s, _)| &**s == id).map(|(_, s)| s)
    }

    fn index_for_name(&self, name: &str) -> usize {
        self.routes
            .iter()
            .find(|(prefix, _)| covers(prefix, name))
            .map_or(self.default, |(_, i)| *i)
    }

    pub(crate) fn resolve(&self, reference: &str) -> Result<Route> {
        // The usual reference is a bare name; one that passes the name's quick check has no
        // `sb://` and no `#`, so it skips the reference parser.
        if let Some(name) = SecretName::plain(reference) {
            let (store_id, store) = &self.stores[self.index_for_name(name.as_str())];
            return Ok(Route {
                store_id: store_id.clone(),
                store: store.clone(),
                name,
                field: None,
            });
        }
        self.resolve_parsed(reference)
    }

    /// [`Router::resolve`] through the reference parser, for every reference.
    fn resolve_parsed(&self, reference: &str) -> Result<Route> {
        let r: SecretRef = reference.parse()?;
        let i = match &r.store {
            Some(id) => self
                .stores
                .iter()
                .position(|(s, _)| **s == **id)
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::NotFound,
                        format!("reference names store {id:?}, which is not configured"),
                    )
                })?,
            None => self.index_for_name(r.name.as_str()),
        };
        let (store_id, store) = &self.stores[i];
        Ok(Route {
            store_id: store_id.clone(),
            store: store.clone(),
            name: r.name,
            field: r.field,
        })
    }

    /// The stores a listing of `prefix` must visit, with whether each entry name belongs to it.
    pub(crate) fn list_targets(&self, prefix: &str) -> Result<Vec<ListTarget>> {
        if let Some(rest) = prefix.strip_prefix("sb://") {
            let (id, p) = rest.split_once('/').unwrap_or((rest, ""));
            let store = self.store(id).ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("reference names store {id:?}, which is not configured"),
                )
            })?;
            return Ok(vec![(Arc::from(id), store.clone(), p.to_owned())]);
        }
        let mut targets: Vec<usize> = vec![self.index_for_name(prefix)];
        for (route, i) in &self.routes {
            if route.starts_with(prefix) && !targets.contains(i) {
                targets.push(*i);
            }
        }
        Ok(targets
            .into_iter()
            .map(|i| {
                (
                    self.stores[i].0.clone(),
                    self.stores[i].1.clone(),
                    prefix.to_owned(),
                )
            })
            .collect())
    }

    /// The resource a key operation covers: `TEXT` or `sb://STORE/TEXT`, where `TEXT` is a
    /// name or a pattern of names (`*`, `predis/*`) and is not validated as a name.
    pub(crate) fn key_resource(&self, reference: &str) -> Result<Arc<Resource>> {
        let (i, text) = match reference.strip_prefix("sb://") {
            Some(rest) => {
                let (id, text) = rest.split_once('/').unwrap_or((rest, "*"));
                let i = self
                    .stores
                    .iter()
                    .position(|(s, _)| &**s == id)
                    .ok_or_else(|| {
                        Error::new(
                            ErrorKind::NotFound,
                            format!("reference names store {id:?}, which is not configured"),
                        )
                    })?;
                (i, text)
            }
            None => (self.index_for_name(reference), reference),
        };
        Ok(Resource::in_store(text, self.stores[i].0.clone()))
    }

    /// Whether a bare `name` routes to store `store_id`.
    pub(crate) fn routes_to(&self, name: &str, store_id: &str) -> bool {
        *self.stores[self.index_for_name(name)].0 == *store_id
    }
}

/// Whether route `prefix` covers `name`: equal, or a `/`-boundary prefix.
fn covers(prefix: &str, name: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    fn router() -> Router {
        let s = || Arc::new(MemoryStore::new()) as Arc<dyn SecretStore>;
        Router::new(
            vec![
                ("main".into(), s()),
                ("aws".into(), s()),
                ("ci".into(), s()),
            ],
            vec![
                ("predis/prod/".into(), "aws".into()),
                ("predis/prod/ci".into(), "ci".into()),
            ],
            "main",
        )
        .unwrap()
    }

    #[test]
    fn longest_prefix_on_segment_boundaries_wins() {
        let r = router();
        let id = |n: &str| r.resolve(n).unwrap().store_id.to_string();
        assert_eq!(id("predis/prod/database/password"), "aws");
        assert_eq!(id("predis/prod/ci/token"), "ci");
        assert_eq!(id("predis/production/x"), "main");
        assert_eq!(id("predis/staging/x"), "main");
        assert_eq!(id("sb://ci/predis/staging/x"), "ci");
        assert_eq!(id("sb:///predis/prod/x"), "aws");
        assert_eq!(
            r.resolve("sb://nope/x").unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn the_bare_name_fast_path_resolves_as_the_parser_does() {
        let r = router();
        let refs = [
            "predis/prod/db",
            "predis/prod/ci/token",
            "predis/dev/db",
            "a",
            "sb://ci/predis/prod/db",
            "sb:///predis/prod/db",
            "predis/prod/db#user",
            "predis/prod/./db",
            "predis//db",
            "predis/prod/db/",
            "sb://nowhere/x",
            "",
        ];
        let seen = |route: Result<Route>| {
            route
                .map(|r| (r.store_id.to_string(), r.name.to_string(), r.field))
                .map_err(|e| (e.kind(), e.to_string()))
        };
        for reference in refs {
            assert_eq!(
                seen(r.resolve(reference)),
                seen(r.resolve_parsed(reference)),
                "{reference:?}"
            );
        }
        let taken: Vec<_> = refs
            .into_iter()
            .filter(|r| SecretName::plain(r).is_some())
            .collect();
        assert_eq!(
            taken,
            [
                "predis/prod/db",
                "predis/prod/ci/token",
                "predis/dev/db",
                "a"
            ],
            "only bare names take the fast path"
        );
    }

    #[test]
    fn bad_configs_are_config_errors() {
        let s = || Arc::new(MemoryStore::new()) as Arc<dyn SecretStore>;
        assert!(Router::new(vec![], vec![], "x").is_err());
        assert!(Router::new(vec![("a".into(), s())], vec![], "b").is_err());
        assert!(Router::new(vec![("a".into(), s())], vec![("p".into(), "b".into())], "a").is_err());
        assert!(Router::new(vec![("a".into(), s()), ("a".into(), s())], vec![], "a").is_err());
    }

    #[test]
    fn control_characters_in_ids_and_prefixes_are_refused_and_shown_escaped() {
        let s = || Arc::new(MemoryStore::new()) as Arc<dyn SecretStore>;
        let e = Router::new(
            vec![("a".into(), s())],
            vec![("predis\0/prod/".into(), "a".into())],
            "a",
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(!e.message().contains('\0'), "{e}");
        assert!(e.message().contains(r"predis\0/prod/"), "{e}");
        assert!(e.message().contains(r"\u{0}"), "{e}");
        let e = Router::new(vec![("a\u{1b}[2J".into(), s())], vec![], "a\u{1b}[2J").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(!e.message().contains('\u{1b}'), "{e}");
        assert!(e.message().contains(r"a\u{1b}[2J"), "{e}");
    }
}
