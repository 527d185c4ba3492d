//! Rotators by name, for a config's `rotation.secrets.PATTERN.rotator: {NAME: {SETTINGS}}`.
//!
//! As with store providers, the crates that implement rotators register them here and the
//! programs that embed sealbox (the CLI, the bindings) register the crates they are built with:
//! `sealbox_db_rotators::register_global()` adds `postgres` and `mysql`. `generated` and `exec`
//! are built in and never looked up here.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock};

use crate::client::Sealbox;
use crate::config::ProviderConfig;
use crate::error::{Error, Result};
use crate::secret::Secret;

use super::generator::Generator;
use super::rotator::Rotator;

/// The future a rotator factory returns.
pub type RotatorFuture = Pin<Box<dyn Future<Output = Result<Arc<dyn Rotator>>> + Send>>;

/// Builds a rotator from its settings.
pub type RotatorFactory = Arc<dyn Fn(RotatorSettings) -> RotatorFuture + Send + Sync>;

/// What a rotator factory is given: the settings block of the config, the generator the
/// secret's type calls for, and the client the rotation runs through (to read a secret the
/// settings name, such as an admin password, under the same principal and policy).
#[derive(Clone, Debug)]
pub struct RotatorSettings {
    config: ProviderConfig,
    generator: Generator,
    client: Sealbox,
}

impl RotatorSettings {
    /// Settings `config` (its key path names the block in errors) for a rotation through
    /// `client` whose type calls for values from `generator`.
    pub fn new(config: ProviderConfig, generator: Generator, client: Sealbox) -> RotatorSettings {
        RotatorSettings {
            config,
            generator,
            client,
        }
    }

    /// The settings block (deserialize it, read strings and paths; errors name the key).
    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    /// The generator for new values (from the secret's type and `length`).
    pub fn generator(&self) -> &Generator {
        &self.generator
    }

    /// A secret setting, given one of three ways: `KEY` inline (from `${VAR}`, say), `KEY_file`
    /// naming a file that holds it (a Docker or Kubernetes secret mount), or `KEY_secret`
    /// naming a sealbox secret read through the rotation's client (`NAME`, or `NAME#FIELD` for
    /// one field of a JSON secret). More than one is an error; `Ok(None)` when none is set.
    pub async fn secret(&self, key: &str) -> Result<Option<Secret>> {
        let reference_key = format!("{key}_secret");
        let reference = self.config.string(&reference_key)?;
        let other = self.config.string(key)?.is_some()
            || self.config.string(&format!("{key}_file"))?.is_some();
        let Some(reference) = reference else {
            return Ok(self.config.secret(key)?.map(|s| s.into_secret()));
        };
        if other {
            return Err(Error::config(format!(
                "{}: set one of {key}, {key}_file and {reference_key}",
                self.config.key_path()
            )));
        }
        let (name, field) = match reference.rsplit_once('#') {
            Some((name, field)) => (name, Some(field)),
            None => (reference.as_str(), None),
        };
        let handle = self.client.get(name).await.map_err(|e| {
            Error::new(
                e.kind(),
                format!(
                    "{}.{reference_key}: reading {name}: {}",
                    self.config.key_path(),
                    e.message()
                ),
            )
        })?;
        match field {
            Some(field) => Ok(Some(handle.secret().json_field(field)?.into_secret())),
            None => handle.secret().try_clone().map(Some),
        }
    }

    /// A path setting, resolved against the config file's directory.
    pub fn path(&self, key: &str) -> Result<Option<PathBuf>> {
        self.config.path(key)
    }
}

/// Rotator factories by name.
#[derive(Clone, Default)]
pub struct RotatorRegistry {
    map: BTreeMap<String, RotatorFactory>,
}

impl std::fmt::Debug for RotatorRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.map.keys()).finish()
    }
}

impl RotatorRegistry {
    /// Registers (or replaces) the factory for rotator `name`.
    pub fn register<F, Fut>(&mut self, name: impl Into<String>, factory: F)
    where
        F: Fn(RotatorSettings) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Arc<dyn Rotator>>> + Send + 'static,
    {
        self.map.insert(
            name.into(),
            Arc::new(move |s| Box::pin(factory(s)) as RotatorFuture),
        );
    }

    /// The registered names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }

    /// Builds rotator `name` from `settings`; an unregistered name is a `Config` error that
    /// lists the registered ones.
    pub async fn build(&self, name: &str, settings: RotatorSettings) -> Result<Arc<dyn Rotator>> {
        let Some(factory) = self.map.get(name) else {
            let known: Vec<&str> = ["generated", "exec"]
                .into_iter()
                .chain(self.names())
                .collect();
            return Err(Error::config(format!(
                "{}: unknown rotator {name:?}; known here: {} (rotator crates must be registered, \
                 e.g. sealbox_db_rotators::register_global for postgres and mysql)",
                settings.config.key_path(),
                known.join(", ")
            )));
        };
        factory(settings).await
    }

    /// The process-wide registry the client's rotations look names up in.
    pub fn global() -> &'static RwLock<RotatorRegistry> {
        static GLOBAL: OnceLock<RwLock<RotatorRegistry>> = OnceLock::new();
        GLOBAL.get_or_init(|| RwLock::new(RotatorRegistry::default()))
    }

    /// A copy of the global registry (factories are shared, so this is cheap).
    pub fn global_snapshot() -> RotatorRegistry {
        match Self::global().read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}
