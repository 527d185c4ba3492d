//! What a client keeps to build itself again in a forked child ([`Sealbox::reopen`]).
//!
//! A child inherits a copy of the client whose secrets and keys are wiped and whose threads
//! do not exist, so it needs a new client. A client keeps how it was made: the config file it
//! was read from (read again), the [`Config`] it was built from, or, for a builder-built
//! client, its settings and stores, each asked to [`SecretStore::reopen`] itself (the local
//! vault reopens from its path and key file; a store that cannot says so).

use std::path::PathBuf;
use std::sync::Arc;

use super::{Sealbox, SealboxBuilder};
use crate::audit::AuditReplica;
use crate::cache::CacheConfig;
use crate::config::rotation::RotationConfig;
use crate::config::{Config, ProviderRegistry};
use crate::error::{Error, ErrorKind, Result};
use crate::monitor::{AlertHook, MonitorConfig};
use crate::store::SecretStore;

/// How to make a client again.
pub(crate) enum Recipe {
    /// Read this config file again and build what it says.
    ConfigFile {
        path: PathBuf,
        registry: ProviderRegistry,
    },
    /// Build this config again.
    Config {
        config: Box<Config>,
        registry: ProviderRegistry,
    },
    /// Reopen these stores and build with these settings.
    Builder(Box<BuilderRecipe>),
}

/// A builder's settings, kept by the client it built.
pub(crate) struct BuilderRecipe {
    pub(crate) stores: Vec<(String, Arc<dyn SecretStore>)>,
    pub(crate) routes: Vec<(String, String)>,
    pub(crate) default_store: Option<String>,
    pub(crate) cache: Option<CacheConfig>,
    /// `Some(None)`: the client had an audit log that cannot be made again from here.
    pub(crate) audit: Option<Option<AuditReplica>>,
    pub(crate) monitor: Option<MonitorConfig>,
    pub(crate) hooks: Vec<AlertHook>,
    pub(crate) rotation: Option<RotationConfig>,
}

impl std::fmt::Debug for Recipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Recipe::ConfigFile { path, .. } => f
                .debug_struct("ConfigFile")
                .field("path", path)
                .finish_non_exhaustive(),
            Recipe::Config { .. } => f.write_str("Config"),
            Recipe::Builder(_) => f.write_str("Builder"),
        }
    }
}

impl Recipe {
    /// A new client made as this one was (the caller carries over principal, source and
    /// policy).
    pub(crate) async fn make(&self) -> Result<Sealbox> {
        match self {
            Recipe::ConfigFile { path, registry } => {
                let config = Config::from_path(path)?;
                let recipe = Recipe::ConfigFile {
                    path: path.clone(),
                    registry: registry.clone(),
                };
                config.build_with_recipe(registry, recipe).await
            }
            Recipe::Config { config, registry } => config.build(registry).await,
            Recipe::Builder(b) => b.make().await,
        }
    }
}

impl BuilderRecipe {
    async fn make(&self) -> Result<Sealbox> {
        let mut builder = SealboxBuilder::default();
        for (id, store) in &self.stores {
            let fresh = store.reopen().await.map_err(|e| {
                Error::new(e.kind(), format!("reopening store {id:?}: {}", e.message()))
            })?;
            builder = builder.named_store(id.clone(), fresh);
        }
        for (prefix, store) in &self.routes {
            builder = builder.route(prefix.clone(), store.clone());
        }
        if let Some(r) = &self.rotation {
            builder = builder.rotation_schedule(r.clone());
        }
        if let Some(d) = &self.default_store {
            builder = builder.default_store(d.clone());
        }
        builder = match &self.cache {
            Some(c) => builder.cache(c.clone()),
            None => builder.no_cache(),
        };
        match &self.audit {
            None => {}
            Some(Some(audit)) => builder = builder.audit(audit.builder()),
            Some(None) => {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    "this client's audit log was given a sink, callback or key in code, which \
                     cannot be made again here; build the client again in the child process",
                ));
            }
        }
        if let Some(m) = &self.monitor {
            builder = builder.monitor(m.clone());
        }
        builder.hooks = self.hooks.clone();
        builder.build()
    }
}
