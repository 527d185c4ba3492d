//! # sealbox-aws
//!
//! AWS for sealbox: [`AwsSecretsManager`], a `SecretStore` over
//! AWS Secrets Manager, and [`KmsMasterKey`], an AWS KMS key that wraps sealbox's KEKs so the
//! local vault can be sealed by KMS.
//!
//! ```no_run
//! # async fn demo() -> sealbox::Result<()> {
//! use sealbox_aws::{AwsConfig, AwsSecretsManager};
//! use sealbox::store::{SecretName, SecretStore, VersionSelector};
//!
//! let config = AwsConfig {
//!     region: Some("eu-west-1".into()),
//!     prefix: Some("predis/prod".into()),
//!     ..AwsConfig::default()
//! };
//! let store = AwsSecretsManager::connect(&config).await?;
//! let name = SecretName::new("database/password")?; // AWS secret predis/prod/database/password
//! let current = store.get(&name, &VersionSelector::Current).await?;
//! # drop(current); Ok(()) }
//! ```
//!
//! Credentials come from the standard AWS chain (environment, shared profile, web identity /
//! IRSA, ECS container role, EC2 instance role), optionally followed by an STS `AssumeRole`
//! with external id and session name ([`AwsConfig::role_arn`]). Every call has an operation and
//! an attempt timeout and uses the SDK's standard retries (exponential backoff with jitter on
//! throttling, 5xx, timeouts and connection errors; never on other client errors). Errors keep
//! the AWS request id ([`sealbox::Error::provider_request_id`]; also
//! [`sealbox::Error::request_id`] unless an audited client gave the error its audit line's id).
//!
//! ## What cannot be wiped
//! Values pass through the AWS SDK, which keeps its own short-lived copies (request input and
//! serialised body, raw response body, parsed output). sealbox moves the parsed value into
//! locked memory and wipes that copy at once; the SDK's other buffers are freed, not wiped.
#![warn(missing_docs)]

pub mod config;
mod error;
pub mod kms;
pub mod secrets_manager;
pub mod stage;

pub use config::AwsConfig;
pub use kms::{KmsKeyInfo, KmsMasterKey};
pub use secrets_manager::AwsSecretsManager;

use std::sync::Arc;

use sealbox::config::{ProviderConfig, ProviderRegistry};
use sealbox::store::SecretStore;

/// The provider name in config files (`provider: aws`).
pub const PROVIDER: &str = "aws";

/// Registers the `aws` store provider, so `Sealbox::from_config` and the CLI find it:
///
/// ```
/// let mut registry = sealbox::config::ProviderRegistry::with_builtins();
/// sealbox_aws::register(&mut registry);
/// assert!(registry.stores.names().any(|n| n == "aws"));
/// ```
///
/// The `config:` block is an [`AwsConfig`]; its errors name the key path
/// (`stores.aws.config.region`).
pub fn register(registry: &mut ProviderRegistry) {
    registry
        .stores
        .register(PROVIDER, |c: ProviderConfig| async move {
            let config: AwsConfig = c.deserialize()?;
            config.validate().map_err(|e| {
                sealbox::Error::config(format!("{}: {}", c.key_path(), e.message()))
            })?;
            let store = AwsSecretsManager::connect(&config).await?;
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
