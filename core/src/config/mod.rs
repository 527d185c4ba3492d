//! YAML configuration, in the shape platform teams already write.
//!
//! ```yaml
//! secrets:                      # one store ...
//!   provider: local
//!   config: {path: ./vault, key_file: ./master.key}
//! ```
//! or several named stores with routes (longest prefix wins, on `/` boundaries):
//! ```yaml
//! stores:
//!   main: {provider: local, config: {path: ./vault, key_file: ./master.key}}
//!   aws:  {provider: aws, config: {region: us-west-2}}
//! routes:
//!   predis/prod/: aws
//! default_store: main
//! principal: svc:predis-cache
//! cache:   {ttl: 5m, capacity: 10000, refresh_ahead: 0.8, max_stale: 1h, sealed: false}
//! audit:   {path: ./audit.jsonl, fsync: batch, mode: strict,
//!           checkpoints: {every: 1000, interval: 60s, to: [syslog, store: aws/audit/checkpoints]}}
//! policy:  {rules: [{principals: ["svc:predis-*"], allow: [read], secrets: ["predis/prod/*"]}]}
//! monitor: {failed_burst: 5, rate_per_minute: 10, hours: {start: "08:00", end: "18:00"}}
//! ```
//!
//! * `${VAR}` anywhere in a key or string is replaced from the environment (`${VAR:-default}`
//!   gives a default, `$${` is a literal `${`); an unset variable is an error naming it and the
//!   key. It may stand unquoted in a flow mapping (`{key_file: ${KEY}}`), and its value is
//!   always one string: it cannot add YAML structure.
//! * A config is at most 1 MiB and nests at most 64 levels; both are checked before parsing.
//! * Errors never quote a value (any value may be a secret, whatever its YAML type).
//! * A `local` store's master key is a `master_key:` block naming a key provider from the same
//!   registry (`{provider: key_file, path: ./master.key}`; `passphrase`, `env`, and `aws-kms` /
//!   `pkcs11` from provider crates); the flat `key_file:` / `key_env:` / `passphrase:` settings
//!   still work. An unknown key provider is an error listing the registered ones.
//! * Providers read secret settings with [`ProviderConfig::secret`], which accepts `KEY` inline
//!   or `KEY_file` naming a file to read it from (Docker/Kubernetes secret mounts).
//! * Unknown keys are errors with the path to the key (`cache.tll: unknown field ...`).
//! * Relative paths resolve against the config file's directory.
//! * `Debug` prints provider settings redacted except for known non-secret keys (paths, regions,
//!   URLs).
//!
//! Interpolated values and provider settings are held in ordinary memory while the client is
//! built; only values that reach a `Secret` (through [`ProviderConfig::secret`]) are locked.

pub(crate) mod audit_key;
mod builtin;
mod interpolate;
mod limits;
mod master_key;
mod refs;
mod registry;
pub mod rotation;
mod serde_errors;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use builtin::{LOCAL_MASTER_KEY_ID, open_local_vault, register_builtin_stores};
pub use limits::{MAX_CONFIG_BYTES, MAX_CONFIG_DEPTH};
pub use master_key::register_builtin_key_providers;
pub use registry::{Factories, Factory, FactoryFuture, ProviderConfig, ProviderRegistry};
pub(crate) use serde_errors::safe_serde_message;

use crate::audit::AuditConfig;
use crate::cache::CacheConfig;
use crate::error::{Error, Result};
use crate::monitor::MonitorConfig;
use crate::policy::PolicyConfig;

/// One store: a provider name and its settings.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The provider (`local`, `env`, `file`, `memory`, `aws`, ...).
    pub provider: String,
    /// Provider settings, passed to the provider's factory.
    #[serde(default)]
    pub config: serde_json::Value,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("provider", &self.provider)
            .field("config", &Redacted(&self.config))
            .finish()
    }
}

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// A single store (id `default`).
    #[serde(default)]
    pub secrets: Option<StoreConfig>,
    /// Named stores.
    #[serde(default)]
    pub stores: BTreeMap<String, StoreConfig>,
    /// Name prefix -> store id.
    #[serde(default)]
    pub routes: BTreeMap<String, String>,
    /// The store for names no route covers (required with several stores).
    #[serde(default)]
    pub default_store: Option<String>,
    /// The client's principal (default: `user:$USER`).
    #[serde(default)]
    pub principal: Option<String>,
    /// Cache settings (default: on with defaults).
    #[serde(default)]
    pub cache: Option<CacheConfig>,
    /// Audit settings (default: off).
    #[serde(default)]
    pub audit: Option<AuditConfig>,
    /// Access policy (default: none, everything allowed).
    #[serde(default)]
    pub policy: Option<PolicyConfig>,
    /// Detectors (default: off).
    #[serde(default)]
    pub monitor: Option<MonitorConfig>,
    /// Rotation schedules (default: none).
    #[serde(default)]
    pub rotation: Option<rotation::RotationConfig>,
    /// The config file's directory, which relative paths resolve against.
    #[serde(skip)]
    pub(crate) base_dir: Option<PathBuf>,
}

impl Config {
    /// Reads and parses a YAML file. Relative paths in it resolve against its directory.
    pub fn from_path(path: &Path) -> Result<Config> {
        Config::from_path_with_env(path, &|name| std::env::var(name).ok())
    }

    /// [`Config::from_path`] with an explicit variable lookup (tests, sandboxes).
    pub fn from_path_with_env(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config> {
        let text = limits::read_capped(path)?;
        let mut config = Config::from_yaml_str_with_env(&text, env)
            .map_err(|e| Error::config(format!("{}: {}", path.display(), e.message())))?;
        config.base_dir = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .map(Path::to_path_buf);
        if let Some(r) = &mut config.rotation {
            r.base_dir = config.base_dir.clone();
        }
        Ok(config)
    }

    /// Parses YAML text, interpolating `${VAR}` from the environment.
    pub fn from_yaml_str(text: &str) -> Result<Config> {
        Config::from_yaml_str_with_env(text, &|name| std::env::var(name).ok())
    }

    /// Parses YAML text with an explicit variable lookup (tests, sandboxes).
    pub fn from_yaml_str_with_env(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config> {
        limits::check(text)?;
        let (text, exprs) = interpolate::hide(text)?;
        let mut value: serde_norway::Value = serde_norway::from_str(&text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(" at line {}, column {}", l.line(), l.column()))
                .unwrap_or_default();
            Error::config(format!("invalid YAML{at}"))
        })?;
        if value.is_null() {
            return Err(Error::config(
                "the config is empty; it needs `secrets` or `stores`",
            ));
        }
        interpolate::interpolate(&mut value, &mut String::new(), &exprs, env)?;
        let config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = safe_serde_message(&e.inner().to_string());
            if path == "." {
                Error::config(inner)
            } else {
                Error::config(format!("{path}: {inner}"))
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        // Before any message names them: a raw control byte would reach the terminal.
        for id in self.stores.keys() {
            printable("stores: store id", id)?;
        }
        for (prefix, store) in &self.routes {
            printable("routes: route prefix", prefix)?;
            printable("routes: store id", store)?;
        }
        if let Some(d) = &self.default_store {
            printable("default_store: store id", d)?;
        }
        if let Some(a) = &self.audit {
            a.validate()?;
        }
        match (&self.secrets, self.stores.is_empty()) {
            (None, true) => Err(Error::config(
                "the config needs `secrets` (one store) or `stores` (several)",
            )),
            (Some(_), false) => Err(Error::config(
                "secrets: use either `secrets` (one store) or `stores` (several), not both",
            )),
            _ => Ok(()),
        }
    }

    /// The store configs by id, in build order (`secrets:` is the store `default`).
    pub fn store_configs(&self) -> Vec<(String, String, &StoreConfig)> {
        match &self.secrets {
            Some(s) => vec![("default".into(), "secrets".into(), s)],
            None => self
                .stores
                .iter()
                .map(|(id, s)| (id.clone(), format!("stores.{id}"), s))
                .collect(),
        }
    }

    /// `p` from the config, resolved against the config file's directory.
    pub(crate) fn path(&self, p: &Path) -> PathBuf {
        registry::resolve(self.base_dir.as_deref(), &p.to_string_lossy())
    }

    /// Builds only the store with id `id` (`default` for a single `secrets:` store), e.g. to
    /// read the audit checkpoints kept in it, with the stores its `sb://` references name.
    pub async fn build_store(
        &self,
        registry: &ProviderRegistry,
        id: &str,
    ) -> Result<std::sync::Arc<dyn crate::store::SecretStore>> {
        let stores = self.store_configs();
        if !stores.iter().any(|(i, _, _)| i == id) {
            return Err(Error::config(format!(
                "no store named {id:?} in the config (stores: {}; a single `secrets:` store \
                 is `default`)",
                stores
                    .iter()
                    .map(|(i, _, _)| i.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let mut built = self.build_stores(registry, Some(id)).await?;
        Ok(built.remove(id).expect("the store asked for is built"))
    }

    /// Builds the stores (all, or `only` and the stores its references need), each after the
    /// stores its `sb://` references name, each reference read into locked memory for it.
    pub(crate) async fn build_stores(
        &self,
        registry: &ProviderRegistry,
        only: Option<&str>,
    ) -> Result<BTreeMap<String, std::sync::Arc<dyn crate::store::SecretStore>>> {
        let stores = self.store_configs();
        let ids: Vec<String> = stores.iter().map(|(id, _, _)| id.clone()).collect();
        let default = self.default_store_id();
        let mut refs = Vec::with_capacity(stores.len());
        let mut names = Vec::with_capacity(stores.len());
        for (_, at, store) in &stores {
            let found = refs::collect(&format!("{at}.config"), &store.config)?;
            let mut named = Vec::with_capacity(found.len());
            for (key, r) in &found {
                let target = match (&r.store, &default) {
                    (Some(s), _) => s.clone(),
                    (None, Some(d)) => d.clone(),
                    (None, None) => {
                        return Err(Error::config(format!(
                            "{key}: sb:///NAME names the default store, and this config has \
                             no default_store"
                        )));
                    }
                };
                named.push((key.clone(), target));
            }
            names.push(named);
            refs.push(found);
        }
        let wanted: Option<std::collections::BTreeSet<usize>> = only.map(|id| {
            // `id` and, transitively, the stores it references.
            let mut want = std::collections::BTreeSet::new();
            let mut todo: Vec<usize> = ids.iter().position(|i| i == id).into_iter().collect();
            while let Some(i) = todo.pop() {
                if want.insert(i) {
                    for (_, target) in &names[i] {
                        todo.extend(ids.iter().position(|x| x == target));
                    }
                }
            }
            want
        });
        // Only the stores to build are checked: a broken store the one asked for does not
        // need stays out of the way.
        if let Some(w) = &wanted {
            for (i, n) in names.iter_mut().enumerate() {
                if !w.contains(&i) {
                    n.clear();
                }
            }
        }
        let order = refs::build_order(&ids, &names)?;
        let mut built: BTreeMap<String, std::sync::Arc<dyn crate::store::SecretStore>> =
            BTreeMap::new();
        for i in order {
            if wanted.as_ref().is_some_and(|w| !w.contains(&i)) {
                continue;
            }
            let (id, at, store) = &stores[i];
            let targets: BTreeMap<&str, &str> = names[i]
                .iter()
                .map(|(k, t)| (k.as_str(), t.as_str()))
                .collect();
            let resolved = refs::Resolved::read(&refs[i], &|key: &str| {
                let target = targets.get(key)?;
                Some((target.to_string(), built.get(*target)?.clone()))
            })
            .await?;
            let pc = ProviderConfig::new(
                store.provider.clone(),
                format!("{at}.config"),
                store.config.clone(),
                self.base_dir.clone(),
            )
            .with_key_providers(registry.keys.clone())
            .with_refs(resolved.clone());
            let built_store = registry.stores.build(pc).await?;
            resolved.check_all_taken(&store.provider)?;
            built.insert(id.clone(), built_store);
        }
        Ok(built)
    }
}

/// Refuses a store id or route prefix with a control character (a NUL, a newline, an escape
/// sequence): no secret name has one, so such a route could never match, and the raw byte
/// would reach terminals and logs through every message that names it. The message shows it
/// escaped.
pub(crate) fn printable(what: &str, text: &str) -> Result<()> {
    match text.chars().find(|c| c.is_control()) {
        None => Ok(()),
        Some(c) => Err(Error::config(format!(
            "{what} \"{}\" contains the control character {}; store ids and route prefixes \
             must be printable text",
            text.escape_debug(),
            c.escape_unicode()
        ))),
    }
}

/// Debug view of provider settings: keys shown, values redacted unless the key is known not to
/// hold secrets.
pub(crate) struct Redacted<'a>(pub(crate) &'a serde_json::Value);

fn is_public_key(key: &str) -> bool {
    const PUBLIC: &[&str] = &[
        "path",
        "region",
        "url",
        "endpoint",
        "mount_path",
        "prefix",
        "namespace",
        "provider",
        "auth_method",
        "vault_url",
        "kms_key_id",
        "project",
        "project_id",
        "tenant_id",
        "client_id",
        "directory",
        "dir",
        "role_id_file",
    ];
    PUBLIC.contains(&key)
        || key.ends_with("_file")
        || key.ends_with("_path")
        || key.ends_with("_url")
        || key.ends_with("_dir")
}

impl std::fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn show(
            v: &serde_json::Value,
            public: bool,
            f: &mut std::fmt::Formatter<'_>,
        ) -> std::fmt::Result {
            match v {
                serde_json::Value::Object(m) => {
                    let mut d = f.debug_map();
                    for (k, v) in m {
                        d.key(k);
                        d.value(&Field(v, is_public_key(k)));
                    }
                    d.finish()
                }
                serde_json::Value::Array(items) => f
                    .debug_list()
                    .entries(items.iter().map(|i| Field(i, public)))
                    .finish(),
                serde_json::Value::Null => f.write_str("null"),
                other if public => write!(f, "{other}"),
                _ => f.write_str("\"[REDACTED]\""),
            }
        }
        struct Field<'a>(&'a serde_json::Value, bool);
        impl std::fmt::Debug for Field<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                show(self.0, self.1, f)
            }
        }
        show(self.0, false, f)
    }
}

#[cfg(test)]
mod tests {
    use super::interpolate::tests::env;
    use super::*;

    #[test]
    fn debug_shows_paths_but_not_secrets() {
        let c = Config::from_yaml_str_with_env(
            "secrets:\n  provider: hashicorp\n  config:\n    url: https://vault:8200\n    secret_id: ${SID}\n    token_file: /run/token\n",
            &env(&[("SID", "s3cr3t-id")]),
        )
        .unwrap();
        let d = format!("{c:?}");
        assert!(!d.contains("s3cr3t-id"), "{d}");
        assert!(d.contains("https://vault:8200"), "{d}");
        assert!(d.contains("/run/token"), "{d}");
        assert!(d.contains("secret_id"), "{d}");
    }
}
