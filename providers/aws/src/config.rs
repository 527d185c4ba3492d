//! `AwsConfig`: the typed `config:` block of `provider: aws`, and how it becomes an SDK config.
//!
//! ```yaml
//! stores:
//!   aws:
//!     provider: aws
//!     config:
//!       region: eu-west-1
//!       prefix: predis/prod               # optional: names live under predis/prod/...
//!       role_arn: arn:aws:iam::123456789012:role/sealbox-reader   # optional cross-account role
//!       external_id: predis-7f3a          # optional, for the role's trust policy
//!       kms_key_id: alias/predis-secrets  # optional CMK for new secrets / the KMS key provider
//!       endpoint_url: http://127.0.0.1:5000                       # optional: moto, LocalStack, VPC
//! ```
//!
//! Credentials always come from the standard AWS chain (environment, shared profile, web
//! identity / IRSA, ECS container role, EC2 instance role); this block never holds a key.

use std::fmt;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_secretsmanager::config::SharedCredentialsProvider;
use sealbox::store::SecretName;
use sealbox::{Error, Result};
use serde::Deserialize;

/// Settings for the AWS store and the KMS key provider (`provider: aws`, `config: {...}`).
///
/// Unknown keys are rejected, so a misspelt `endpoint_ur` fails loudly instead of silently
/// talking to real AWS. `Debug` prints no credentials (there are none here) and hides the
/// external id, which some teams treat as confidential.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// AWS region (`eu-west-1`). Default: the SDK's region chain (`AWS_REGION`, profile, IMDS).
    pub region: Option<String>,
    /// Endpoint override for every AWS call (moto, LocalStack, a VPC endpoint).
    pub endpoint_url: Option<String>,
    /// A role to assume through STS on top of the base credentials (cross-account access).
    pub role_arn: Option<String>,
    /// The external id the role's trust policy requires.
    pub external_id: Option<String>,
    /// The STS session name (shows in CloudTrail). Default: `sealbox`.
    pub role_session_name: Option<String>,
    /// The KMS key (id, ARN, alias name or alias ARN) for new secrets and for the KMS key
    /// provider. Default for secrets: the account's `aws/secretsmanager` key.
    pub kms_key_id: Option<String>,
    /// Names live under this path: `prefix: predis/prod` maps `database/password` to the AWS
    /// secret `predis/prod/database/password`.
    pub prefix: Option<String>,
    /// A named profile from the shared config files instead of the default one.
    pub profile: Option<String>,
    /// Budget for one call including retries. Default 10 s.
    #[serde(default, with = "humantime_serde")]
    pub operation_timeout: Option<Duration>,
    /// Budget for one attempt. Default 3 s.
    #[serde(default, with = "humantime_serde")]
    pub attempt_timeout: Option<Duration>,
    /// TCP + TLS connect timeout. Default 2 s.
    #[serde(default, with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    /// Attempts per call, first included (throttling, 5xx, timeouts and connection errors are
    /// retried; client errors never are). Default 3.
    pub max_attempts: Option<u32>,
    /// First retry backoff; later ones grow exponentially with full jitter. Default 100 ms.
    #[serde(default, with = "humantime_serde")]
    pub initial_backoff: Option<Duration>,
    /// Largest backoff between attempts. Default 5 s.
    #[serde(default, with = "humantime_serde")]
    pub max_backoff: Option<Duration>,
}

impl fmt::Debug for AwsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsConfig")
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("role_arn", &self.role_arn)
            .field(
                "external_id",
                &self.external_id.as_ref().map(|_| "[REDACTED]"),
            )
            .field("role_session_name", &self.role_session_name)
            .field("kms_key_id", &self.kms_key_id)
            .field("prefix", &self.prefix)
            .field("profile", &self.profile)
            .field("operation_timeout", &self.operation_timeout)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .finish()
    }
}

/// Default budget for one call including retries.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
/// Default budget for one attempt.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default attempts per call.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Default first backoff.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Default largest backoff.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(5);

impl AwsConfig {
    /// Checks values that the SDK would only reject at the first call.
    pub fn validate(&self) -> Result<()> {
        if let Some(url) = &self.endpoint_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(Error::config(format!(
                "aws endpoint_url {url:?} must start with http:// or https://"
            )));
        }
        if let Some(region) = &self.region {
            let ok = !region.is_empty()
                && region
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok {
                return Err(Error::config(format!(
                    "aws region {region:?} is not a region name like eu-west-1"
                )));
            }
        }
        if self.external_id.is_some() && self.role_arn.is_none() {
            return Err(Error::config(
                "aws external_id is only used with role_arn; set role_arn or remove external_id",
            ));
        }
        if let Some(arn) = &self.role_arn
            && !arn.starts_with("arn:")
        {
            return Err(Error::config(format!(
                "aws role_arn {arn:?} must be an ARN (arn:aws:iam::ACCOUNT:role/NAME)"
            )));
        }
        if self.max_attempts == Some(0) {
            return Err(Error::config("aws max_attempts must be at least 1"));
        }
        for (what, d) in [
            ("operation_timeout", self.operation_timeout),
            ("attempt_timeout", self.attempt_timeout),
            ("connect_timeout", self.connect_timeout),
        ] {
            if d == Some(Duration::ZERO) {
                return Err(Error::config(format!("aws {what} must be more than zero")));
            }
        }
        self.secret_prefix()?;
        Ok(())
    }

    /// The prefix as a path without trailing `/`, validated like a secret name.
    pub(crate) fn secret_prefix(&self) -> Result<Option<String>> {
        match self.prefix.as_deref().map(|p| p.trim_end_matches('/')) {
            None | Some("") => Ok(None),
            Some(p) => {
                SecretName::new(p).map_err(|e| {
                    Error::config(format!("aws prefix {p:?} is not a valid path: {e}"))
                })?;
                Ok(Some(p.to_owned()))
            }
        }
    }

    /// The SDK timeout settings (every call has an operation and an attempt budget).
    pub fn timeout_config(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .operation_timeout(self.operation_timeout.unwrap_or(DEFAULT_OPERATION_TIMEOUT))
            .operation_attempt_timeout(self.attempt_timeout.unwrap_or(DEFAULT_ATTEMPT_TIMEOUT))
            .connect_timeout(self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT))
            .build()
    }

    /// The SDK's standard retry mode: exponential backoff with full jitter on throttling, 5xx,
    /// timeouts and connection errors; client errors (4xx other than throttling) are final.
    pub fn retry_config(&self) -> RetryConfig {
        RetryConfig::standard()
            .with_max_attempts(self.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS))
            .with_initial_backoff(self.initial_backoff.unwrap_or(DEFAULT_INITIAL_BACKOFF))
            .with_max_backoff(self.max_backoff.unwrap_or(DEFAULT_MAX_BACKOFF))
    }

    /// Loads the SDK configuration: the standard credential chain, then the optional role.
    pub async fn load_sdk_config(&self) -> Result<SdkConfig> {
        self.load_sdk_config_with(None).await
    }

    /// Like [`AwsConfig::load_sdk_config`] with explicit base credentials instead of the chain
    /// (tests, or programs that obtain credentials themselves). The role, if set, is still
    /// assumed on top of them.
    pub async fn load_sdk_config_with(
        &self,
        credentials: Option<SharedCredentialsProvider>,
    ) -> Result<SdkConfig> {
        self.validate()?;
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(self.timeout_config())
            .retry_config(self.retry_config());
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        if let Some(profile) = &self.profile {
            loader = loader.profile_name(profile.clone());
        }
        if let Some(credentials) = credentials {
            loader = loader.credentials_provider(credentials);
        }
        let base = loader.load().await;
        if base.region().is_none() {
            return Err(Error::config(
                "no AWS region: set `region` in the aws config or AWS_REGION in the environment",
            ));
        }
        let Some(role_arn) = &self.role_arn else {
            return Ok(base);
        };
        let mut role = AssumeRoleProvider::builder(role_arn.clone())
            .session_name(
                self.role_session_name
                    .clone()
                    .unwrap_or_else(|| "sealbox".to_owned()),
            )
            .configure(&base);
        if let Some(id) = &self.external_id {
            role = role.external_id(id.clone());
        }
        let role = role.build().await;
        Ok(base
            .into_builder()
            .credentials_provider(SharedCredentialsProvider::new(role))
            .build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<AwsConfig> {
        let value: serde_norway::Value = serde_norway::from_str(yaml).unwrap();
        AwsConfig::deserialize(value).map_err(|e| Error::config(e.to_string()))
    }

    #[test]
    fn the_documented_yaml_parses() {
        let c = parse(
            "region: eu-west-1\nendpoint_url: http://127.0.0.1:5000\n\
             role_arn: arn:aws:iam::123456789012:role/r\nexternal_id: ext-1\n\
             kms_key_id: alias/k\nprefix: predis/prod/\noperation_timeout: 4s\n\
             attempt_timeout: 500ms\nmax_attempts: 5\n",
        )
        .unwrap();
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.operation_timeout, Some(Duration::from_secs(4)));
        assert_eq!(c.attempt_timeout, Some(Duration::from_millis(500)));
        assert_eq!(c.secret_prefix().unwrap().as_deref(), Some("predis/prod"));
        c.validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = parse("region: eu-west-1\nendpoint_ur: http://x\n").unwrap_err();
        assert!(err.message().contains("endpoint_ur"), "{err}");
    }

    #[test]
    fn debug_hides_the_external_id() {
        let c = AwsConfig {
            role_arn: Some("arn:aws:iam::1:role/r".into()),
            external_id: Some("very-private-id".into()),
            ..AwsConfig::default()
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("very-private-id"), "{shown}");
        assert!(shown.contains("[REDACTED]"));
        assert!(shown.contains("arn:aws:iam::1:role/r"));
    }

    #[test]
    fn bad_values_fail_validation_with_config_errors() {
        let cases = [
            AwsConfig {
                endpoint_url: Some("127.0.0.1:5000".into()),
                ..Default::default()
            },
            AwsConfig {
                region: Some("EU West".into()),
                ..Default::default()
            },
            AwsConfig {
                external_id: Some("x".into()),
                ..Default::default()
            },
            AwsConfig {
                role_arn: Some("my-role".into()),
                ..Default::default()
            },
            AwsConfig {
                prefix: Some("a//b".into()),
                ..Default::default()
            },
            AwsConfig {
                max_attempts: Some(0),
                ..Default::default()
            },
            AwsConfig {
                attempt_timeout: Some(Duration::ZERO),
                ..Default::default()
            },
        ];
        for c in cases {
            let err = c.validate().unwrap_err();
            assert_eq!(err.kind(), sealbox::ErrorKind::Config, "{c:?}");
        }
    }

    #[test]
    fn timeouts_and_retries_have_bounded_defaults() {
        let c = AwsConfig::default();
        let t = c.timeout_config();
        assert_eq!(t.operation_timeout(), Some(DEFAULT_OPERATION_TIMEOUT));
        assert_eq!(t.operation_attempt_timeout(), Some(DEFAULT_ATTEMPT_TIMEOUT));
        assert_eq!(t.connect_timeout(), Some(DEFAULT_CONNECT_TIMEOUT));
        let r = c.retry_config();
        assert_eq!(r.max_attempts(), DEFAULT_MAX_ATTEMPTS);
        assert_eq!(r.initial_backoff(), DEFAULT_INITIAL_BACKOFF);
    }
}
