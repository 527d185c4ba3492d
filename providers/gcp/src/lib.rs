//! # sealbox-gcp
//!
//! GCP for sealbox: [`GcpSecretManager`], a `SecretStore` over GCP Secret Manager on Google's
//! official Rust client (`google-cloud-secretmanager-v1`, REST) with `google-cloud-auth`.
//!
//! ```no_run
//! # async fn demo() -> sealbox::Result<()> {
//! use sealbox_gcp::{GcpConfig, GcpSecretManager};
//! use sealbox::store::{SecretName, SecretStore, VersionSelector};
//!
//! let config = GcpConfig {
//!     project: "predis-prod".into(),
//!     prefix: Some("predis/prod".into()),
//!     ..GcpConfig::default()
//! };
//! let store = GcpSecretManager::connect(&config).await?;
//! let name = SecretName::new("database/password")?; // secret id predis__prod__database__password
//! let current = store.get(&name, &VersionSelector::Current).await?;
//! # drop(current); Ok(()) }
//! ```
//!
//! How names, versions, stages, tags, compare-and-set, idempotency and deletion map onto
//! GCP is told in [`store`] and [`names`]; credentials and retries in [`config`]. Every call
//! has an attempt timeout and a bounded retry policy (transient errors, 503 and
//! 429/`RESOURCE_EXHAUSTED`, exponential backoff, at most `max_attempts` within
//! `operation_timeout`). Errors keep GCP's request id where the service sends one
//! ([`sealbox::Error::provider_request_id`]).
#![warn(missing_docs)]

pub mod config;
mod error;
pub mod names;
pub mod store;

pub use config::{GcpConfig, ReplicaConfig, ReplicationConfig, credentials_from_secret};
pub use store::GcpSecretManager;

use std::sync::Arc;

use sealbox::config::{ProviderConfig, ProviderRegistry};
use sealbox::store::SecretStore;

/// The provider name in config files (`provider: gcp`).
pub const PROVIDER: &str = "gcp";

/// Registers the `gcp` store provider, so `Sealbox::from_config` and the CLI find it:
///
/// ```
/// let mut registry = sealbox::config::ProviderRegistry::with_builtins();
/// sealbox_gcp::register(&mut registry);
/// assert!(registry.stores.names().any(|n| n == "gcp"));
/// ```
///
/// The store's `config:` block is a [`GcpConfig`]; errors name the key path
/// (`stores.gcp.config.project`). A relative `credentials_file` is read from the config
/// file's directory.
pub fn register(registry: &mut ProviderRegistry) {
    registry
        .stores
        .register(PROVIDER, |c: ProviderConfig| async move {
            let mut config: GcpConfig = c.deserialize()?;
            config.credentials_file = c.path("credentials_file")?;
            if c.value().get("credentials").is_some() {
                config.credentials = c
                    .secret("credentials")?
                    .map(|s| config::InlineCredentials(Arc::new(s.into_secret())));
            }
            config.validate().map_err(|e| {
                sealbox::Error::config(format!("{}: {}", c.key_path(), e.message()))
            })?;
            let store = GcpSecretManager::connect(&config).await?;
            Ok(Arc::new(store) as Arc<dyn SecretStore>)
        });
}

/// [`register`] into the process-wide registry that `Sealbox::from_config` uses.
pub fn register_global() -> sealbox::Result<()> {
    let mut registry = ProviderRegistry::global()
        .write()
        .map_err(|_| sealbox::Error::internal("the global provider registry lock is poisoned"))?;
    register(&mut registry);
    Ok(())
}
