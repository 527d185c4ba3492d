//! # sealbox-aws
//!
//! AWS for sealbox: [`AwsSecretsManager`], a [`SecretStore`](sealbox::store::SecretStore) over
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
//! the AWS request id ([`sealbox::Error::request_id`]).
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
