//! Provider registries: each store provider and each key provider (master key) registers a
//! factory by name; the config loader looks providers up here. Provider crates add themselves
//! with their own `register(&mut registry)`
//! (`sealbox_aws::register(&mut ProviderRegistry::global().write()?)` adds the `aws` store and
//! the `aws-kms` key provider). Key providers are chosen by a store's `master_key:` block
//! ([`ProviderConfig::key_provider`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock};

use serde::de::DeserializeOwned;

use super::safe_serde_message;
use crate::error::{Error, Result};
use crate::keys::KeyProvider;
use crate::secret::SecretString;
use crate::store::SecretStore;
use crate::store::memory::MemoryStore;

/// The future a factory returns (boxed: cloud providers load credentials asynchronously).
pub type FactoryFuture<T> = Pin<Box<dyn Future<Output = Result<Arc<T>>> + Send>>;

/// A factory: builds a `T` from its provider config.
pub type Factory<T> = Arc<dyn Fn(ProviderConfig) -> FactoryFuture<T> + Send + Sync>;

/// Factories by provider name.
pub struct Factories<T: ?Sized> {
    map: BTreeMap<String, Factory<T>>,
}

impl<T: ?Sized> Clone for Factories<T> {
    fn clone(&self) -> Self {
        Factories {
            map: self.map.clone(),
        }
    }
}

impl<T: ?Sized> Default for Factories<T> {
    fn default() -> Self {
        Factories {
            map: BTreeMap::new(),
        }
    }
}

impl<T: ?Sized> std::fmt::Debug for Factories<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.map.keys()).finish()
    }
}

impl<T: ?Sized> Factories<T> {
    /// Registers (or replaces) the factory for `name`.
    pub fn register<F, Fut>(&mut self, name: impl Into<String>, factory: F)
    where
        F: Fn(ProviderConfig) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Arc<T>>> + Send + 'static,
    {
        self.map.insert(
            name.into(),
            Arc::new(move |c| Box::pin(factory(c)) as FactoryFuture<T>),
        );
    }

    /// The registered names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }

    /// Builds through the factory registered for `config.provider()`.
    pub async fn build(&self, config: ProviderConfig) -> Result<Arc<T>> {
        let factory = self.map.get(config.provider()).ok_or_else(|| {
            Error::config(format!(
                "{}: unknown provider {:?}; registered providers: {} (provider crates must be \
                 registered, e.g. sealbox_aws::register)",
                config.provider_key_path(),
                config.provider(),
                self.map.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        factory(config).await
    }
}

/// Store providers and key providers by name.
#[derive(Clone, Debug, Default)]
pub struct ProviderRegistry {
    /// Store factories: `memory` built in; `env`, `file`, `local` and provider crates add theirs.
    pub stores: Factories<dyn SecretStore>,
    /// Key-provider (master key) factories, named by a store's `master_key: {provider: ...}`:
    /// `key_file`, `passphrase` and `env` built in; provider crates add theirs (`aws-kms`,
    /// `pkcs11`).
    pub keys: Factories<dyn KeyProvider>,
}

impl ProviderRegistry {
    /// An empty registry.
    pub fn empty() -> ProviderRegistry {
        ProviderRegistry::default()
    }

    /// The built-in providers.
    pub fn with_builtins() -> ProviderRegistry {
        let mut r = ProviderRegistry::empty();
        r.stores.register("memory", |c: ProviderConfig| async move {
            memory_store(&c).map(|s| s as Arc<dyn SecretStore>)
        });
        super::register_builtin_stores(&mut r);
        super::register_builtin_key_providers(&mut r);
        r
    }

    /// The process-wide registry used by `Sealbox::from_config` (built-ins pre-registered).
    pub fn global() -> &'static RwLock<ProviderRegistry> {
        static GLOBAL: OnceLock<RwLock<ProviderRegistry>> = OnceLock::new();
        GLOBAL.get_or_init(|| RwLock::new(ProviderRegistry::with_builtins()))
    }

    /// A copy of the global registry (factories are shared, so this is cheap).
    pub fn global_snapshot() -> ProviderRegistry {
        match Self::global().read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// `memory` provider: `config: {seed: {NAME: VALUE, ...}}` (development and tests only: values
/// in a config file are plaintext).
fn memory_store(c: &ProviderConfig) -> Result<Arc<MemoryStore>> {
    #[derive(serde::Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct MemoryConfig {
        #[serde(default)]
        seed: BTreeMap<String, String>,
    }
    let parsed: MemoryConfig = if c.value().is_null() {
        MemoryConfig::default()
    } else {
        c.deserialize()?
    };
    let store = Arc::new(MemoryStore::new());
    for (name, value) in parsed.seed {
        let name = crate::store::SecretName::new(name)
            .map_err(|e| Error::config(format!("{}.seed: {}", c.key_path(), e.message())))?;
        let value = SecretString::from_string(value)?.into_secret();
        // MemoryStore::put is async only by trait; it never awaits anything.
        futures::executor::block_on(crate::store::SecretStore::put(
            &*store,
            &name,
            &value,
            &Default::default(),
        ))?;
    }
    Ok(store)
}

/// A provider's `config:` block, with helpers that name the key path in every error.
#[derive(Clone)]
pub struct ProviderConfig {
    provider: String,
    key_path: String,
    value: serde_json::Value,
    base_dir: Option<PathBuf>,
    /// The key providers a `master_key:` block may name (`None`: the global registry's).
    key_providers: Option<Factories<dyn KeyProvider>>,
    create: bool,
    /// The values of the block's `sb://` references, read when the config was built.
    refs: super::refs::Resolved,
}

impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("provider", &self.provider)
            .field("key_path", &self.key_path)
            .field("config", &super::Redacted(&self.value))
            .finish()
    }
}

impl ProviderConfig {
    /// A config for `provider` at `key_path` (`stores.main.config`); relative paths resolve
    /// against `base_dir` (the config file's directory).
    pub fn new(
        provider: impl Into<String>,
        key_path: impl Into<String>,
        value: serde_json::Value,
        base_dir: Option<PathBuf>,
    ) -> ProviderConfig {
        ProviderConfig {
            provider: provider.into(),
            key_path: key_path.into(),
            value,
            base_dir,
            key_providers: None,
            create: true,
            refs: Default::default(),
        }
    }

    pub(crate) fn with_refs(mut self, refs: super::refs::Resolved) -> Self {
        self.refs = refs;
        self
    }

    /// The mapping under `key` as a block of its own (key path `<this block>.key`), for
    /// providers that read a nested block's secret settings (`auth: {token: ...}`) with
    /// [`ProviderConfig::secret`]. `Ok(None)` when absent; an error when not a mapping.
    pub fn child(&self, key: &str) -> Result<Option<ProviderConfig>> {
        match self.value.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v @ serde_json::Value::Object(_)) => Ok(Some(ProviderConfig {
                provider: self.provider.clone(),
                key_path: format!("{}.{key}", self.key_path),
                value: v.clone(),
                base_dir: self.base_dir.clone(),
                key_providers: self.key_providers.clone(),
                create: self.create,
                refs: self.refs.clone(),
            })),
            Some(_) => Err(Error::config(format!(
                "{}.{key}: expected a mapping",
                self.key_path
            ))),
        }
    }

    /// The key providers that [`ProviderConfig::key_provider`] may build (by default, those of
    /// [`ProviderRegistry::global`]). `Config::build` passes its registry's.
    pub fn with_key_providers(mut self, key_providers: Factories<dyn KeyProvider>) -> Self {
        self.key_providers = Some(key_providers);
        self
    }

    /// Whether a key provider may create key material that does not exist yet (a new key
    /// file, new passphrase parameters, a key in an HSM). The `local` store passes `true` to
    /// its `master_key:` block only when it is about to create a new vault (`create: true` and
    /// no vault yet), so for an existing vault a typo in a path or label is an error instead of
    /// a new key.
    pub fn with_create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }

    /// See [`ProviderConfig::with_create`] (default `true`).
    pub fn may_create(&self) -> bool {
        self.create
    }

    /// Builds the key provider that the block under `key` names, e.g. for `key = "master_key"`:
    ///
    /// ```yaml
    /// master_key: {provider: key_file, path: ./master.key}
    /// ```
    ///
    /// The factory registered for `provider` gets the block's other settings as its
    /// [`ProviderConfig`], at key path `<this block>.master_key`, with the same base directory
    /// and [`ProviderConfig::may_create`]. `Ok(None)` when `key` is absent. An unknown provider
    /// is a `Config` error listing the registered ones.
    pub async fn key_provider(&self, key: &str) -> Result<Option<Arc<dyn KeyProvider>>> {
        let at = format!("{}.{key}", self.key_path);
        let mut settings = match self.value.get(key) {
            None | Some(serde_json::Value::Null) => return Ok(None),
            Some(serde_json::Value::Object(m)) => m.clone(),
            Some(_) => {
                return Err(Error::config(format!(
                    "{at}: expected a mapping such as {{provider: key_file, path: ./master.key}}"
                )));
            }
        };
        let provider = match settings.remove("provider") {
            Some(serde_json::Value::String(p)) => p,
            None => {
                return Err(Error::config(format!(
                    "{at}.provider: required (one of: {})",
                    self.key_factories().names().collect::<Vec<_>>().join(", ")
                )));
            }
            Some(_) => return Err(Error::config(format!("{at}.provider: expected a string"))),
        };
        let block = ProviderConfig {
            provider,
            key_path: at,
            value: serde_json::Value::Object(settings),
            base_dir: self.base_dir.clone(),
            key_providers: self.key_providers.clone(),
            create: self.create,
            refs: self.refs.clone(),
        };
        self.key_factories().build(block).await.map(Some)
    }

    /// The names a `master_key: {provider: ...}` block may use here.
    pub fn key_provider_names(&self) -> Vec<String> {
        self.key_factories().names().map(str::to_owned).collect()
    }

    fn key_factories(&self) -> Factories<dyn KeyProvider> {
        match &self.key_providers {
            Some(k) => k.clone(),
            None => ProviderRegistry::global_snapshot().keys,
        }
    }

    /// The provider name.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// Where this block sits in the config (`stores.main.config`).
    pub fn key_path(&self) -> &str {
        &self.key_path
    }

    /// Where the provider's name sits: beside a store's `config:` block, inside a
    /// `master_key:` block.
    fn provider_key_path(&self) -> String {
        match self.key_path.strip_suffix(".config") {
            Some(p) => format!("{p}.provider"),
            None => format!("{}.provider", self.key_path),
        }
    }

    /// The raw value (`null` when the block is absent).
    pub fn value(&self) -> &serde_json::Value {
        &self.value
    }

    /// Deserializes the block; errors name the key path (`stores.main.config.region`).
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T> {
        serde_path_to_error::deserialize(&self.value).map_err(|e| {
            let inner = safe_serde_message(&e.inner().to_string());
            let path = e.path().to_string();
            let at = if path == "." {
                self.key_path.clone()
            } else {
                format!("{}.{path}", self.key_path)
            };
            Error::config(format!("{at}: {inner}"))
        })
    }

    /// A string setting.
    pub fn string(&self, key: &str) -> Result<Option<String>> {
        match self.value.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Error::config(format!(
                "{}.{key}: expected a string",
                self.key_path
            ))),
        }
    }

    /// A secret setting, given inline as `key`, as an `sb://STORE/NAME#FIELD` reference to
    /// another configured store (read into locked memory when the config was built: see
    /// the `refs` module), or read from the file named by `key_file` (trailing newline
    /// removed). Two of them at once is an error.
    pub fn secret(&self, key: &str) -> Result<Option<SecretString>> {
        let file_key = format!("{key}_file");
        let inline = self.string(key)?;
        let file = self.path(&file_key)?;
        match (inline, file) {
            (Some(_), Some(_)) => Err(Error::config(format!(
                "{}: set either {key} or {file_key}, not both",
                self.key_path
            ))),
            (Some(v), None) if v.starts_with("sb://") => {
                let at = format!("{}.{key}", self.key_path);
                match self.refs.take(&at) {
                    Some(value) => value.map(Some),
                    None => Err(Error::config(format!(
                        "{at}: sb:// references are read when a whole config is built \
                         (Config::build, a --config file); this store was built on its own"
                    ))),
                }
            }
            (Some(v), None) => Ok(Some(SecretString::from_string(v)?)),
            (None, Some(path)) => {
                let mut f = std::fs::File::open(&path).map_err(|e| {
                    Error::config(format!(
                        "{}.{file_key}: cannot read {}: {e}",
                        self.key_path,
                        path.display()
                    ))
                })?;
                let raw = crate::secret::Secret::from_reader(&mut f, 1 << 20)?;
                let trimmed = {
                    use secrecy::ExposeSecret;
                    let b = raw.expose_secret();
                    let end = b
                        .iter()
                        .rposition(|c| *c != b'\n' && *c != b'\r')
                        .map_or(0, |i| i + 1);
                    let mut copy = b[..end].to_vec();
                    crate::secret::Secret::from_mut_slice(&mut copy)?
                };
                trimmed.into_string().map(Some).map_err(|_| {
                    Error::config(format!(
                        "{}.{file_key}: {} is not UTF-8 text",
                        self.key_path,
                        path.display()
                    ))
                })
            }
            (None, None) => Ok(None),
        }
    }

    /// The directory relative paths resolve against (the config file's), if any: for
    /// providers whose blocks nest path settings (`auth: {token_file: ...}`).
    pub fn base_dir(&self) -> Option<&Path> {
        self.base_dir.as_deref()
    }

    /// A path setting, resolved against the config file's directory when relative.
    pub fn path(&self, key: &str) -> Result<Option<PathBuf>> {
        Ok(self
            .string(key)?
            .map(|p| resolve(self.base_dir.as_deref(), &p)))
    }

    /// A path found deeper in the block (`credential.token_file`), resolved like [`path`]
    /// does: a relative path is taken from the config file's directory.
    ///
    /// [`path`]: ProviderConfig::path
    pub fn resolve_path(&self, raw: &Path) -> PathBuf {
        match raw.to_str() {
            Some(p) => resolve(self.base_dir.as_deref(), p),
            None => raw.to_path_buf(),
        }
    }
}

pub(crate) fn resolve(base: Option<&Path>, p: &str) -> PathBuf {
    let path = PathBuf::from(p);
    match base {
        Some(b) if path.is_relative() => b.join(path),
        _ => path,
    }
}
