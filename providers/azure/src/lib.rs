//! # sealbox-azure
//!
//! Azure for sealbox: [`AzureKeyVault`], a `SecretStore` over Azure Key Vault secrets on
//! Microsoft's official Rust SDK (`azure_security_keyvault_secrets`, `azure_core`), with
//! `azure_identity` credentials chosen by config.
//!
//! ```no_run
//! # async fn demo() -> sealbox::Result<()> {
//! use sealbox_azure::{AzureConfig, AzureKeyVault, CredentialConfig};
//! use sealbox::store::{SecretName, SecretStore, VersionSelector};
//!
//! let config = AzureConfig {
//!     vault_url: "https://predis-prod.vault.azure.net/".into(),
//!     credential: Some(CredentialConfig::ManagedIdentity {
//!         client_id: None,
//!         object_id: None,
//!         resource_id: None,
//!     }),
//!     prefix: Some("predis/prod".into()),
//!     ..AzureConfig::default()
//! };
//! let store = AzureKeyVault::connect(&config).await?;
//! let name = SecretName::new("database/password")?; // secret predis--prod--database--password
//! let current = store.get(&name, &VersionSelector::Current).await?;
//! # drop(current); Ok(()) }
//! ```
//!
//! How names, versions, stages, tags and deletion map onto Key Vault is told in [`store`] and
//! [`names`]; credentials, retries and timeouts in [`config`]. Every call has an attempt
//! timeout and the SDK's exponential retry bounded by `max_attempts` and `operation_timeout`
//! (408, 429 honouring `Retry-After`, 5xx, connection errors). Errors keep Key Vault's
//! `x-ms-request-id` ([`sealbox::Error::provider_request_id`]).
#![warn(missing_docs)]

pub mod config;
mod error;
pub mod names;
pub mod store;

pub use config::{AzureConfig, CredentialConfig};
pub use store::AzureKeyVault;

use std::sync::Arc;

use sealbox::config::{ProviderConfig, ProviderRegistry};
use sealbox::store::SecretStore;

/// The provider name in config files (`provider: azure`).
pub const PROVIDER: &str = "azure";

/// Registers the `azure` store provider, so `Sealbox::from_config` and the CLI find it:
///
/// ```
/// let mut registry = sealbox::config::ProviderRegistry::with_builtins();
/// sealbox_azure::register(&mut registry);
/// assert!(registry.stores.names().any(|n| n == "azure"));
/// ```
///
/// The store's `config:` block is an [`AzureConfig`]; errors name the key path
/// (`stores.azure.config.vault_url`). Relative `ca_file`, `client_secret_file`,
/// `certificate_file` and `token_file` are read from the config file's directory.
pub fn register(registry: &mut ProviderRegistry) {
    registry
        .stores
        .register(PROVIDER, |c: ProviderConfig| async move {
            let mut config: AzureConfig = c.deserialize()?;
            config.ca_file = c.path("ca_file")?;
            if let Some(credential) = &mut config.credential {
                let file = match credential {
                    CredentialConfig::ClientSecret {
                        client_secret_file, ..
                    } => client_secret_file.as_mut(),
                    CredentialConfig::ClientCertificate {
                        certificate_file, ..
                    } => Some(certificate_file),
                    CredentialConfig::Workload { token_file, .. } => token_file.as_mut(),
                    _ => None,
                };
                if let Some(f) = file {
                    *f = c.resolve_path(f);
                }
            }
            config.validate().map_err(|e| {
                sealbox::Error::config(format!("{}: {}", c.key_path(), e.message()))
            })?;
            let store = AzureKeyVault::connect(&config).await?;
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
