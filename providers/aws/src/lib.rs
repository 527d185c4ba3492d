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
use sealbox::keys::KeyProvider;
use sealbox::store::SecretStore;

/// The [`AwsConfig`] of an `aws-kms` block: `key_id` becomes `kms_key_id`; the store-only
/// settings are refused.
fn kms_key_config(c: &ProviderConfig) -> sealbox::Result<AwsConfig> {
    let at = c.key_path();
    let mut block = match c.value() {
        serde_json::Value::Object(m) => m.clone(),
        _ => return Err(sealbox::Error::config(format!("{at}: expected a mapping"))),
    };
    for store_only in ["kms_key_id", "prefix"] {
        if block.contains_key(store_only) {
            return Err(sealbox::Error::config(format!(
                "{at}.{store_only}: not a setting of the aws-kms key provider (name the key with \
                 key_id)"
            )));
        }
    }
    match block.remove("key_id") {
        Some(id @ serde_json::Value::String(_)) => {
            block.insert("kms_key_id".into(), id);
        }
        Some(_) => {
            return Err(sealbox::Error::config(format!(
                "{at}.key_id: expected a string"
            )));
        }
        None => {
            return Err(sealbox::Error::config(format!(
                "{at}.key_id: required (key id, ARN, alias/NAME or alias ARN)"
            )));
        }
    }
    let config: AwsConfig =
        ProviderConfig::new(c.provider(), at, serde_json::Value::Object(block), None)
            .deserialize()?;
    config
        .validate()
        .map_err(|e| sealbox::Error::config(format!("{at}: {}", e.message())))?;
    Ok(config)
}

/// The provider name in config files (`provider: aws`).
pub const PROVIDER: &str = "aws";

/// The key provider's name in a `master_key:` block (`provider: aws-kms`).
pub const KMS_KEY_PROVIDER: &str = "aws-kms";

/// Registers the `aws` store provider and the `aws-kms` key provider, so
/// `Sealbox::from_config` and the CLI find them:
///
/// ```
/// let mut registry = sealbox::config::ProviderRegistry::with_builtins();
/// sealbox_aws::register(&mut registry);
/// assert!(registry.stores.names().any(|n| n == "aws"));
/// assert!(registry.keys.names().any(|n| n == "aws-kms"));
/// ```
///
/// The store's `config:` block is an [`AwsConfig`]; its errors name the key path
/// (`stores.aws.config.region`). The key provider seals a local vault with a KMS key:
///
/// ```yaml
/// secrets:
///   provider: local
///   config:
///     path: ./vault
///     master_key: {provider: aws-kms, key_id: alias/sealbox, region: eu-west-1}
/// ```
///
/// Its block takes `key_id` (key id, ARN, alias name or alias ARN) and the connection settings
/// of [`AwsConfig`] (`region`, `endpoint_url`, `role_arn`, `external_id`, `profile`, timeouts
/// and retries).
pub fn register(registry: &mut ProviderRegistry) {
    registry
        .keys
        .register(KMS_KEY_PROVIDER, |c: ProviderConfig| async move {
            let config = kms_key_config(&c)?;
            let key = KmsMasterKey::connect(&config).await?;
            Ok(Arc::new(key) as Arc<dyn KeyProvider>)
        });
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
