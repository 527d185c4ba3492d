//! `EnvStore`: read-only secrets from environment variables.
//!
//! # Mapping rules
//!
//! A name is resolved in this order; the first rule whose variable is set wins:
//!
//! 1. **Explicit mappings** ([`EnvStore::map`]): `predis/prod/database/password` -> `DB_PASSWORD`.
//! 2. **Prefix mappings** ([`EnvStore::prefix`], [`EnvStore::prefix_for`]), in the order they were
//!    added. A prefix mapping `(name_prefix, var_prefix)` applies to names starting with
//!    `name_prefix` whose rest is made of lowercase ASCII letters, digits and `/`; the rest is
//!    upper-cased and every `/` becomes `_`:
//!    - `prefix("APP_")`: `app/db/password` -> `APP_APP_DB_PASSWORD`
//!    - `prefix_for("app/", "APP_")`: `app/db/password` -> `APP_DB_PASSWORD`
//!
//! # One name, one variable
//! Access policy is decided on names, so two names must never read one variable: if
//! `app/db-password` read `APP_DB_PASSWORD`, a principal allowed `app/db-*` would read the
//! secret a rule denies as `app/db/password`. Hence:
//! - a prefix mapping covers only names whose rest spells back exactly (no uppercase, no
//!   `-_.+=@`, which upper-casing and `_` would merge); map any other name explicitly;
//! - a variable that two names still reach (two explicit mappings to one variable, or two
//!   prefix mappings that overlap, such as `("", "APP_")` and `("app/", "APP_")` both giving
//!   `APP_DB`) is read under neither name: the read fails with a `Config` error naming both.
//!
//! `list` returns every explicitly mapped name whose variable is set, plus, for each prefix
//! mapping, one name per set variable starting with `var_prefix`: the suffix lower-cased with
//! `_` read as `/` (`APP_DB_PASSWORD` under `prefix_for("app/", "APP_")` lists as
//! `app/db/password`). A variable is listed only under the one name that reads it.
//!
//! Each secret has one version, id `"1"`, staged `CURRENT`. Writes are `Unsupported`.
//!
//! # Limits
//! The process environment itself holds the value in plain memory for the life of the process
//! (and children inherit it); sealbox copies it into a [`Secret`] and wipes its own temporary
//! copy, but it cannot wipe the environment. Prefer the file store or the local vault for
//! anything long-lived.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;

use async_trait::async_trait;
use zeroize::Zeroizing;

use super::{
    Capabilities, DeleteOptions, ListOptions, ListPage, PutOptions, SecretMetadata, SecretName,
    SecretStore, SecretVersion, Stage, VersionId, VersionInfo, VersionSelector, listing,
};
use crate::error::{Error, Result};
use crate::secret::Secret;

/// The only version id an env secret has.
const VERSION: &str = "1";

/// Read-only store over environment variables; see the [module docs](self) for the mapping.
///
/// ```
/// use sealbox::store::env::EnvStore;
/// let store = EnvStore::new()
///     .map("predis/prod/database/password", "DB_PASSWORD").unwrap()
///     .prefix_for("app/", "APP_").unwrap();
/// assert_eq!(store.variable_for(&"app/api/token".parse().unwrap()), vec!["APP_API_TOKEN"]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct EnvStore {
    explicit: BTreeMap<SecretName, String>,
    prefixes: Vec<PrefixMapping>,
    source: Source,
}

#[derive(Debug, Clone)]
struct PrefixMapping {
    name_prefix: String,
    var_prefix: String,
}

/// Where variables are read from: the live process environment, or a fixed set (tests and
/// embedders that already hold a snapshot).
#[derive(Clone, Default)]
enum Source {
    #[default]
    Process,
    Fixed(BTreeMap<String, Zeroizing<Vec<u8>>>),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Process => f.write_str("Process"),
            // Variable names only, never values.
            Source::Fixed(vars) => f.debug_set().entries(vars.keys()).finish(),
        }
    }
}

impl EnvStore {
    /// A store over the process environment with no mappings yet.
    pub fn new() -> EnvStore {
        EnvStore::default()
    }

    /// A store over a fixed set of variables instead of the process environment. The values
    /// are kept in wiped-on-drop buffers.
    pub fn from_vars<I, K>(vars: I) -> EnvStore
    where
        I: IntoIterator<Item = (K, Zeroizing<Vec<u8>>)>,
        K: Into<String>,
    {
        EnvStore {
            source: Source::Fixed(vars.into_iter().map(|(k, v)| (k.into(), v)).collect()),
            ..EnvStore::default()
        }
    }

    /// Maps `name` to the variable `var` exactly.
    pub fn map(mut self, name: &str, var: &str) -> Result<EnvStore> {
        check_var(var)?;
        self.explicit.insert(SecretName::new(name)?, var.to_owned());
        Ok(self)
    }

    /// Maps every name to `var_prefix` + the name in variable spelling
    /// (`app/db/password` -> `APP_APP_DB_PASSWORD` for `APP_`).
    pub fn prefix(self, var_prefix: &str) -> Result<EnvStore> {
        self.prefix_for("", var_prefix)
    }

    /// Maps names starting with `name_prefix` to `var_prefix` + the rest of the name in
    /// variable spelling (`app/db/password` -> `APP_DB_PASSWORD` for `("app/", "APP_")`).
    pub fn prefix_for(mut self, name_prefix: &str, var_prefix: &str) -> Result<EnvStore> {
        if !var_prefix.is_empty() {
            check_var(var_prefix)?;
        }
        self.prefixes.push(PrefixMapping {
            name_prefix: name_prefix.to_owned(),
            var_prefix: var_prefix.to_owned(),
        });
        Ok(self)
    }

    /// The variables `name` may be read from, in resolution order.
    pub fn variable_for(&self, name: &SecretName) -> Vec<String> {
        let mut vars = Vec::new();
        if let Some(var) = self.explicit.get(name) {
            vars.push(var.clone());
        }
        for p in &self.prefixes {
            if let Some(var) = p.variable_for(name.as_str()) {
                vars.push(var);
            }
        }
        vars
    }

    /// Every name that reads `var` under some mapping (one, unless mappings overlap).
    fn names_for(&self, var: &str) -> BTreeSet<SecretName> {
        let mut names: BTreeSet<SecretName> = self
            .explicit
            .iter()
            .filter(|(_, v)| *v == var)
            .map(|(n, _)| n.clone())
            .collect();
        names.extend(self.prefixes.iter().filter_map(|p| p.name_for(var)));
        names
    }

    /// Refuses to read `var` as `name` when another name reads it too.
    fn check_sole_reader(&self, name: &SecretName, var: &str) -> Result<()> {
        let names = self.names_for(var);
        if let Some(other) = names.iter().find(|n| *n != name) {
            return Err(Error::config(format!(
                "environment variable {var} is mapped to both secret {name} and secret {other}; \
                 a variable must belong to one name (policy decides on names), so neither is \
                 read: change the env store's map or prefixes so that they do not overlap"
            )));
        }
        Ok(())
    }

    fn lookup(&self, var: &str) -> Option<Zeroizing<Vec<u8>>> {
        match &self.source {
            Source::Process => std::env::var_os(var).map(os_into_bytes),
            Source::Fixed(vars) => vars.get(var).map(|v| Zeroizing::new(v.to_vec())),
        }
    }

    fn var_names(&self) -> Vec<String> {
        match &self.source {
            // Non-UTF-8 variable names cannot be mapped from a name, so they are skipped.
            Source::Process => std::env::vars_os()
                .filter_map(|(k, v)| {
                    drop(os_into_bytes(v));
                    k.into_string().ok()
                })
                .collect(),
            Source::Fixed(vars) => vars.keys().cloned().collect(),
        }
    }

    fn read(&self, name: &SecretName) -> Result<Secret> {
        let vars = self.variable_for(name);
        for var in &vars {
            if let Some(bytes) = self.lookup(var) {
                self.check_sole_reader(name, var)?;
                let max = self.capabilities().max_value_len;
                if bytes.len() > max {
                    return Err(Error::invalid_input(format!(
                        "environment variable {var} (secret {name}) is longer than {max} bytes"
                    )));
                }
                return Secret::from_zeroizing(bytes);
            }
        }
        Err(if vars.is_empty() {
            let hint = if self
                .prefixes
                .iter()
                .any(|p| name.as_str().starts_with(&p.name_prefix))
            {
                " (prefix mappings cover only names of lowercase letters, digits and '/', \
                 which map to one variable each; map this name explicitly)"
            } else {
                ""
            };
            Error::not_found(format!(
                "secret {name} does not exist: no environment mapping covers it{hint}"
            ))
        } else {
            Error::not_found(format!(
                "secret {name} does not exist: environment variable {} is not set",
                vars.join(" / ")
            ))
        })
    }

    /// Exactly the names `get` can read: each name some mapping gives a set variable, kept
    /// when the first set variable of its own is one that no other name reads.
    fn names(&self) -> BTreeSet<SecretName> {
        let mut candidates: BTreeSet<SecretName> = self.explicit.keys().cloned().collect();
        if !self.prefixes.is_empty() {
            for var in self.var_names() {
                candidates.extend(self.prefixes.iter().filter_map(|p| p.name_for(&var)));
            }
        }
        candidates.retain(|name| {
            self.variable_for(name)
                .into_iter()
                .find(|var| self.lookup(var).is_some())
                .is_some_and(|var| self.check_sole_reader(name, &var).is_ok())
        });
        candidates
    }
}

impl PrefixMapping {
    /// The variable for `name`, if this mapping covers it.
    fn variable_for(&self, name: &str) -> Option<String> {
        let rest = name.strip_prefix(&self.name_prefix)?;
        (!rest.is_empty() && spells_back(rest)).then(|| {
            format!(
                "{}{}",
                self.var_prefix,
                rest.to_ascii_uppercase().replace('/', "_")
            )
        })
    }

    /// The name this mapping reads `var` as, if any: the inverse of [`Self::variable_for`].
    fn name_for(&self, var: &str) -> Option<SecretName> {
        let rest = var.strip_prefix(&self.var_prefix)?;
        if rest.is_empty()
            || !rest
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            return None;
        }
        let name = SecretName::new(format!(
            "{}{}",
            self.name_prefix,
            rest.to_ascii_lowercase().replace('_', "/")
        ))
        .ok()?;
        (self.variable_for(name.as_str()).as_deref() == Some(var)).then_some(name)
    }
}

/// Whether a name's rest maps to a variable suffix that maps back to it alone: upper-casing
/// and `/` -> `_` are one to one on lowercase letters, digits and `/`, and on nothing wider.
fn spells_back(rest: &str) -> bool {
    rest.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'/')
}

fn os_into_bytes(v: OsString) -> Zeroizing<Vec<u8>> {
    use std::os::unix::ffi::OsStringExt;
    Zeroizing::new(v.into_vec())
}

fn check_var(var: &str) -> Result<()> {
    if var.is_empty() || var.contains(['=', '\0']) {
        return Err(Error::config(format!(
            "{var:?} is not a usable environment variable name (empty, or contains '=' or NUL)"
        )));
    }
    Ok(())
}

fn single_version() -> VersionInfo {
    VersionInfo {
        version: VersionId::new(VERSION),
        stages: vec![Stage::Current],
        created: None,
    }
}

#[async_trait]
impl SecretStore for EnvStore {
    fn kind(&self) -> &'static str {
        "env"
    }

    /// The same mapping: it holds no secret and nothing a fork wipes.
    async fn reopen(&self) -> Result<std::sync::Arc<dyn SecretStore>> {
        Ok(std::sync::Arc::new(self.clone()))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            list_paging: true,
            cheap_describe: true,
            ..Capabilities::READ_ONLY
        }
    }

    async fn get(&self, name: &SecretName, selector: &VersionSelector) -> Result<SecretVersion> {
        let value = self.read(name)?;
        let matches = match selector {
            VersionSelector::Current | VersionSelector::Stage(Stage::Current) => true,
            VersionSelector::Stage(_) => false,
            VersionSelector::Version(id) => id.as_str() == VERSION,
        };
        if !matches {
            return Err(Error::not_found(format!(
                "secret {name} has no version {selector}: environment secrets have one version, {VERSION}, staged CURRENT"
            )));
        }
        let info = single_version();
        Ok(SecretVersion {
            value,
            version: info.version,
            stages: info.stages,
            created: None,
        })
    }

    async fn put(&self, _: &SecretName, _: &Secret, _: &PutOptions) -> Result<VersionInfo> {
        Err(Error::unsupported("put", "env (read-only)"))
    }

    async fn describe(&self, name: &SecretName) -> Result<SecretMetadata> {
        drop(self.read(name)?);
        Ok(SecretMetadata {
            name: name.clone(),
            versions: vec![single_version()],
            created: None,
            updated: None,
            last_rotated: None,
            description: None,
            tags: BTreeMap::new(),
            rotation_period: None,
            deleted: None,
        })
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        Ok(listing::page(&self.names(), options, |_| None))
    }

    async fn delete(&self, _: &SecretName, _: &DeleteOptions) -> Result<()> {
        Err(Error::unsupported("delete", "env (read-only)"))
    }

    async fn restore(&self, _: &SecretName) -> Result<()> {
        Err(Error::unsupported("restore", "env (read-only)"))
    }

    async fn set_stage(&self, _: &SecretName, _: &Stage, _: Option<&VersionId>) -> Result<()> {
        Err(Error::unsupported("set_stage", "env (read-only)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> SecretName {
        SecretName::new(s).unwrap()
    }

    #[test]
    fn prefix_mapping_spells_the_whole_name() {
        let store = EnvStore::new().prefix("APP_").unwrap();
        assert_eq!(
            store.variable_for(&name("app/db/password")),
            ["APP_APP_DB_PASSWORD"]
        );
        assert_eq!(store.variable_for(&name("x/b2/c")), ["APP_X_B2_C"]);
    }

    #[test]
    fn names_that_would_share_a_variable_have_none() {
        let store = EnvStore::new().prefix_for("app/", "APP_").unwrap();
        for merged in [
            "app/db-password",
            "app/db_password",
            "app/DB/password",
            "app/db.password",
        ] {
            assert!(store.variable_for(&name(merged)).is_empty(), "{merged}");
        }
    }

    fn read_error(store: &EnvStore, n: &str) -> Error {
        match store.read(&name(n)) {
            Ok(_) => panic!("{n} was read"),
            Err(e) => e,
        }
    }

    /// The bypass: a rule denies `app/db/password` and allows `app/db-*`; before, the allowed
    /// name read the denied secret's variable.
    #[test]
    fn a_denied_name_cannot_be_read_under_a_lookalike_name() {
        let store = EnvStore::from_vars([("APP_DB_PASSWORD", Zeroizing::new(b"s3cret".to_vec()))])
            .prefix_for("app/", "APP_")
            .unwrap();
        assert_eq!(store.read(&name("app/db/password")).unwrap().len(), 6);
        for lookalike in [
            "app/db-password",
            "app/db_password",
            "app/DB/PASSWORD",
            "app/db.password",
        ] {
            let e = read_error(&store, lookalike);
            assert_eq!(e.kind(), crate::ErrorKind::NotFound, "{lookalike}: {e}");
            assert!(e.message().contains("map this name explicitly"), "{e}");
        }
        let listed: Vec<String> = store.names().iter().map(|n| n.to_string()).collect();
        assert_eq!(listed, ["app/db/password"]);
    }

    #[test]
    fn overlapping_mappings_read_a_shared_variable_under_neither_name() {
        let vars = || [("APP_DB", Zeroizing::new(b"x".to_vec()))];
        let overlapping = EnvStore::from_vars(vars())
            .prefix("APP_")
            .unwrap()
            .prefix_for("app/", "APP_")
            .unwrap();
        for n in ["db", "app/db"] {
            let e = read_error(&overlapping, n);
            assert_eq!(e.kind(), crate::ErrorKind::Config, "{e}");
            assert!(
                e.message().contains("secret app/db and secret db")
                    || e.message().contains("secret db and secret app/db"),
                "{e}"
            );
        }
        assert!(overlapping.names().is_empty());
        let explicit_twice = EnvStore::from_vars(vars())
            .map("a", "APP_DB")
            .unwrap()
            .map("b", "APP_DB")
            .unwrap();
        assert_eq!(
            read_error(&explicit_twice, "a").kind(),
            crate::ErrorKind::Config
        );
        assert!(explicit_twice.names().is_empty());
    }

    #[test]
    fn scoped_prefix_mapping_strips_the_name_prefix() {
        let store = EnvStore::new().prefix_for("app/", "APP_").unwrap();
        assert_eq!(
            store.variable_for(&name("app/db/password")),
            ["APP_DB_PASSWORD"]
        );
        assert!(store.variable_for(&name("other/db")).is_empty());
    }

    #[test]
    fn explicit_mapping_comes_first() {
        let store = EnvStore::new()
            .prefix("APP_")
            .unwrap()
            .map("app/db", "DB")
            .unwrap();
        assert_eq!(store.variable_for(&name("app/db")), ["DB", "APP_APP_DB"]);
    }

    #[test]
    fn bad_variable_names_are_config_errors() {
        for bad in ["", "A=B", "A\0"] {
            let err = EnvStore::new().map("a", bad).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Config);
        }
    }

    #[test]
    fn listed_names_round_trip_to_their_variable() {
        let store = EnvStore::from_vars([
            ("APP_DB_PASSWORD", Zeroizing::new(b"x".to_vec())),
            ("APP_", Zeroizing::new(b"x".to_vec())),
            ("APP_A__B", Zeroizing::new(b"x".to_vec())),
            ("APP_lower", Zeroizing::new(b"x".to_vec())),
            ("OTHER", Zeroizing::new(b"x".to_vec())),
        ])
        .prefix_for("app/", "APP_")
        .unwrap();
        let names: Vec<String> = store.names().iter().map(|n| n.to_string()).collect();
        assert_eq!(names, ["app/db/password"]);
    }

    #[test]
    fn debug_shows_variable_names_not_values() {
        let store = EnvStore::from_vars([("TOKEN", Zeroizing::new(b"hunter2".to_vec()))]);
        let shown = format!("{store:?}");
        assert!(
            shown.contains("TOKEN") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
