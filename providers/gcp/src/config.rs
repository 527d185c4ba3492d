//! `GcpConfig`: the typed `config:` block of `provider: gcp`, and how it becomes a client.
//!
//! ```yaml
//! stores:
//!   gcp:
//!     provider: gcp
//!     config:
//!       project: predis-prod                 # project id (or number)
//!       location: europe-west1              # optional: regional secrets (regional endpoint)
//!       prefix: predis/prod                 # optional: names live under predis/prod/...
//!       credentials_file: /run/secrets/sa.json   # optional; default: application default credentials
//!       # or the key JSON kept in another configured store (e.g. the embedded vault):
//!       # credentials: sb://vault/gcp/sa-key
//!       impersonate_service_account: sealbox-reader@predis-prod.iam.gserviceaccount.com
//!       replication: {user_managed: {replicas: [{location: europe-west1}, {location: europe-west4}]}}
//!       endpoint: http://127.0.0.1:8085      # optional: tests, private endpoints
//! ```
//!
//! Credentials, in order: `anonymous: true` (local servers only); `credentials_file` or
//! `credentials` (an `sb://STORE/NAME` reference to the JSON kept in another store, read into
//! locked memory when the config is built; inline JSON works too but puts a key in the file)
//! (any JSON
//! the Google auth library reads: a service-account key, an `authorized_user` file, an
//! `impersonated_service_account` file, or an `external_account` file for workload identity
//! federation); otherwise application default credentials (`GOOGLE_APPLICATION_CREDENTIALS`,
//! gcloud's ADC file, or the metadata server on GCE/GKE, which is how GKE workload identity
//! arrives). `impersonate_service_account` then exchanges those for the named service
//! account's tokens through the IAM Credentials API.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use google_cloud_auth::credentials::{self, Credentials, anonymous, impersonated};
use google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder;
use google_cloud_gax::retry_policy::{Aip194Strict, RetryPolicyExt, TooManyRequests};
use google_cloud_secretmanager_v1::client::SecretManagerService;
use sealbox::store::SecretName;
use sealbox::{Error, ExposeSecret, Result, Secret};
use serde::Deserialize;

/// Settings of the GCP store (`provider: gcp`, `config: {...}`). Unknown keys are rejected so
/// a misspelt `endpont` fails instead of talking to the real service.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpConfig {
    /// The project id or number that owns the secrets. Required.
    pub project: String,
    /// A location for regional secrets (`projects/P/locations/L`), served by the regional
    /// endpoint `https://secretmanager.L.rep.googleapis.com`. Default: global secrets.
    pub location: Option<String>,
    /// Names live under this path: `prefix: predis/prod` maps `database/password` to the
    /// secret id of `predis/prod/database/password`.
    pub prefix: Option<String>,
    /// A credentials JSON file (service-account key, authorized user, impersonated service
    /// account or external account). Default: application default credentials.
    pub credentials_file: Option<PathBuf>,
    /// The credentials JSON itself, in locked memory: what `credentials:` (usually an
    /// `sb://` reference) resolved to. Set by the config loader, not deserialized.
    #[serde(
        default,
        rename = "credentials",
        deserialize_with = "InlineCredentials::skip"
    )]
    pub credentials: Option<InlineCredentials>,
    /// Send no credentials (local test servers and emulators only).
    #[serde(default)]
    pub anonymous: bool,
    /// Impersonate this service account (its email) on top of the base credentials.
    pub impersonate_service_account: Option<String>,
    /// Delegation chain for impersonation (service account emails).
    #[serde(default)]
    pub delegates: Vec<String>,
    /// IAM Credentials endpoint for impersonation (tests, private endpoints); needs
    /// `credentials_file`. Default: `https://iamcredentials.googleapis.com`.
    pub iam_endpoint: Option<String>,
    /// Secret Manager endpoint override (tests, private service connect).
    pub endpoint: Option<String>,
    /// Replication of new global secrets. Default: automatic. Not for regional secrets.
    pub replication: Option<ReplicationConfig>,
    /// Cloud KMS key (`projects/*/locations/*/keyRings/*/cryptoKeys/*`) for new regional
    /// secrets (with `location`). For global secrets put keys in `replication`.
    pub kms_key_name: Option<String>,
    /// Budget for one call including retries. Default 10 s.
    #[serde(default, with = "humantime_serde")]
    pub operation_timeout: Option<Duration>,
    /// Budget for one attempt. Default 3 s.
    #[serde(default, with = "humantime_serde")]
    pub attempt_timeout: Option<Duration>,
    /// Attempts per call, first included. Default 3.
    pub max_attempts: Option<u32>,
    /// First retry backoff; later ones double with jitter. Default 100 ms.
    #[serde(default, with = "humantime_serde")]
    pub initial_backoff: Option<Duration>,
    /// Largest backoff. Default 5 s.
    #[serde(default, with = "humantime_serde")]
    pub max_backoff: Option<Duration>,
}

/// A credentials JSON held in locked memory; compared in constant time, never shown.
#[derive(Clone)]
pub struct InlineCredentials(pub std::sync::Arc<Secret>);

impl InlineCredentials {
    /// The YAML value is a reference or text that the loader reads through
    /// `ProviderConfig::secret`; serde only skips it.
    fn skip<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Self>, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| None)
    }
}

impl PartialEq for InlineCredentials {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0)
    }
}

impl Eq for InlineCredentials {}

impl fmt::Debug for InlineCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InlineCredentials([redacted])")
    }
}

/// Replication of a global secret's payload, fixed when the secret is created.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ReplicationConfig {
    /// Google chooses the locations; optionally one global CMEK key.
    Automatic {
        /// Cloud KMS key in `global`.
        #[serde(default)]
        kms_key_name: Option<String>,
    },
    /// Only these locations, each with an optional CMEK key in the same location.
    UserManaged {
        /// At least one replica.
        replicas: Vec<ReplicaConfig>,
    },
}

/// One user-managed replica.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaConfig {
    /// A location id (`europe-west1`).
    pub location: String,
    /// Cloud KMS key in that location.
    #[serde(default)]
    pub kms_key_name: Option<String>,
}

impl fmt::Debug for GcpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Nothing here is secret (the key file's contents are never held in the config).
        f.debug_struct("GcpConfig")
            .field("project", &self.project)
            .field("location", &self.location)
            .field("prefix", &self.prefix)
            .field("credentials_file", &self.credentials_file)
            .field("credentials", &self.credentials)
            .field("anonymous", &self.anonymous)
            .field(
                "impersonate_service_account",
                &self.impersonate_service_account,
            )
            .field("endpoint", &self.endpoint)
            .field("replication", &self.replication)
            .finish_non_exhaustive()
    }
}

/// Default budget for one call including retries.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
/// Default budget for one attempt.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default attempts per call.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Default first backoff.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Default largest backoff.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(5);

fn is_id(s: &str, extra: &[char]) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || extra.contains(&c))
}

impl GcpConfig {
    /// Checks what the service would only reject at the first call.
    pub fn validate(&self) -> Result<()> {
        if !is_id(&self.project, &['-', '.', ':']) {
            return Err(Error::config(format!(
                "gcp project {:?} is not a project id or number (lower-case letters, digits, \
                 '-')",
                self.project
            )));
        }
        if let Some(l) = &self.location
            && !is_id(l, &['-'])
        {
            return Err(Error::config(format!(
                "gcp location {l:?} is not a location id like europe-west1"
            )));
        }
        for (what, url) in [
            ("endpoint", &self.endpoint),
            ("iam_endpoint", &self.iam_endpoint),
        ] {
            if let Some(url) = url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(Error::config(format!(
                    "gcp {what} {url:?} must start with http:// or https://"
                )));
            }
        }
        if self.anonymous
            && (self.credentials_file.is_some()
                || self.credentials.is_some()
                || self.impersonate_service_account.is_some())
        {
            return Err(Error::config(
                "gcp anonymous: true sends no credentials; remove credentials(_file) and \
                 impersonate_service_account, or anonymous",
            ));
        }
        if self.iam_endpoint.is_some()
            && self.credentials_file.is_none()
            && self.credentials.is_none()
        {
            return Err(Error::config(
                "gcp iam_endpoint needs credentials_file (application default credentials \
                 impersonate through the default IAM endpoint only)",
            ));
        }
        if (self.iam_endpoint.is_some() || !self.delegates.is_empty())
            && self.impersonate_service_account.is_none()
        {
            return Err(Error::config(
                "gcp iam_endpoint and delegates are for impersonate_service_account; set it or \
                 remove them",
            ));
        }
        if self.location.is_some() && self.replication.is_some() {
            return Err(Error::config(
                "gcp replication is for global secrets; a regional secret (location) stays in \
                 its location: remove replication (use kms_key_name for a CMEK key)",
            ));
        }
        if self.location.is_none() && self.kms_key_name.is_some() {
            return Err(Error::config(
                "gcp kms_key_name is for regional secrets (with location); for global secrets \
                 use replication: {automatic: {kms_key_name: ...}} or per replica",
            ));
        }
        if let Some(ReplicationConfig::UserManaged { replicas }) = &self.replication
            && replicas.is_empty()
        {
            return Err(Error::config(
                "gcp replication.user_managed.replicas needs at least one location",
            ));
        }
        if self.max_attempts == Some(0) {
            return Err(Error::config("gcp max_attempts must be at least 1"));
        }
        for (what, d) in [
            ("operation_timeout", self.operation_timeout),
            ("attempt_timeout", self.attempt_timeout),
        ] {
            if d == Some(Duration::ZERO) {
                return Err(Error::config(format!("gcp {what} must be more than zero")));
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
                    Error::config(format!("gcp prefix {p:?} is not a valid path: {e}"))
                })?;
                Ok(Some(p.to_owned()))
            }
        }
    }

    /// The parent of this store's secrets: `projects/P` or `projects/P/locations/L`.
    pub fn parent(&self) -> String {
        match &self.location {
            Some(l) => format!("projects/{}/locations/{l}", self.project),
            None => format!("projects/{}", self.project),
        }
    }

    /// The endpoint the client talks to.
    pub fn effective_endpoint(&self) -> Option<String> {
        match (&self.endpoint, &self.location) {
            (Some(e), _) => Some(e.clone()),
            (None, Some(l)) => Some(format!("https://secretmanager.{l}.rep.googleapis.com")),
            (None, None) => None,
        }
    }

    /// The credentials this config names (see the module docs for the order).
    pub fn credentials(&self) -> Result<Credentials> {
        if self.anonymous {
            return Ok(anonymous::Builder::new().build());
        }
        let json = match (&self.credentials_file, &self.credentials) {
            (Some(_), Some(_)) => {
                return Err(Error::config(
                    "gcp: set either credentials or credentials_file, not both",
                ));
            }
            (Some(path), None) => Some(read_credentials_file(path)?),
            (None, Some(inline)) => Some(parse_credentials(&inline.0, "(credentials:)")?),
            (None, None) => None,
        };
        match (&self.impersonate_service_account, json) {
            (None, Some(json)) => credentials_from_json(json),
            (None, None) => credentials::Builder::default().build().map_err(|e| {
                Error::config(format!(
                    "gcp: no application default credentials ({e}); set credentials_file, \
                     GOOGLE_APPLICATION_CREDENTIALS, or run on GCP with a service account"
                ))
            }),
            (Some(target), Some(source)) => {
                let endpoint = self
                    .iam_endpoint
                    .as_deref()
                    .unwrap_or("https://iamcredentials.googleapis.com")
                    .trim_end_matches('/');
                let json = serde_json::json!({
                    "type": "impersonated_service_account",
                    "service_account_impersonation_url": format!(
                        "{endpoint}/v1/projects/-/serviceAccounts/{target}:generateAccessToken"
                    ),
                    "source_credentials": source,
                    "delegates": self.delegates,
                });
                credentials_from_json(json)
            }
            (Some(target), None) => {
                let source = credentials::Builder::default().build().map_err(|e| {
                    Error::config(format!(
                        "gcp: no application default credentials to impersonate {target} with \
                         ({e})"
                    ))
                })?;
                impersonated::Builder::from_source_credentials(source)
                    .with_target_principal(target.clone())
                    .with_delegates(self.delegates.clone())
                    .build()
                    .map_err(|e| Error::config(format!("gcp: cannot impersonate {target}: {e}")))
            }
        }
    }

    /// Builds the Google client: endpoint, credentials, a bounded retry policy (transient
    /// errors, 503 and 429/RESOURCE_EXHAUSTED, at most `max_attempts` within
    /// `operation_timeout`) with exponential backoff, and an attempt timeout.
    pub async fn client(&self) -> Result<SecretManagerService> {
        self.client_with(self.credentials()?).await
    }

    /// Like [`GcpConfig::client`] with credentials the caller built (for instance from a
    /// service-account key held in sealbox: see [`credentials_from_secret`]).
    pub async fn client_with(&self, credentials: Credentials) -> Result<SecretManagerService> {
        self.validate()?;
        let backoff = ExponentialBackoffBuilder::new()
            .with_initial_delay(self.initial_backoff.unwrap_or(DEFAULT_INITIAL_BACKOFF))
            .with_maximum_delay(self.max_backoff.unwrap_or(DEFAULT_MAX_BACKOFF))
            .build()
            .map_err(|e| Error::config(format!("gcp backoff settings: {e}")))?;
        let retry = TooManyRequests::new(Aip194Strict)
            .with_attempt_limit(self.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS))
            .with_time_limit(self.operation_timeout.unwrap_or(DEFAULT_OPERATION_TIMEOUT));
        let mut builder = SecretManagerService::builder()
            .with_credentials(credentials)
            .with_retry_policy(retry)
            .with_backoff_policy(backoff)
            .with_attempt_timeout(self.attempt_timeout.unwrap_or(DEFAULT_ATTEMPT_TIMEOUT));
        if let Some(endpoint) = self.effective_endpoint() {
            builder = builder.with_endpoint(endpoint);
        }
        builder.build().await.map_err(|e| {
            Error::config(format!(
                "gcp: the Secret Manager client could not be built: {e}"
            ))
        })
    }
}

/// Reads a credentials JSON file. Its private key passes through a locked, wiped buffer, but
/// the parsed JSON the auth library keeps is ordinary heap memory.
fn read_credentials_file(path: &std::path::Path) -> Result<serde_json::Value> {
    let mut f = std::fs::File::open(path).map_err(|e| {
        Error::config(format!(
            "gcp credentials_file {}: cannot read it: {e}",
            path.display()
        ))
    })?;
    let raw = Secret::from_reader(&mut f, 1 << 20)?;
    parse_credentials(&raw, &path.display().to_string())
}

fn parse_credentials(raw: &Secret, what: &str) -> Result<serde_json::Value> {
    // serde_json's errors quote no input, only line and column.
    serde_json::from_slice(raw.expose_secret()).map_err(|e| {
        Error::config(format!(
            "gcp credentials {what} is not JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

fn credentials_from_json(json: serde_json::Value) -> Result<Credentials> {
    let kind = json
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or("")
        .to_owned();
    let built = match kind.as_str() {
        "service_account" => credentials::service_account::Builder::new(json).build(),
        "authorized_user" => credentials::user_account::Builder::new(json).build(),
        "impersonated_service_account" => impersonated::Builder::new(json).build(),
        "external_account" => credentials::external_account::Builder::new(json).build(),
        other => {
            return Err(Error::config(format!(
                "gcp credentials of type {other:?} are not supported; use a service_account \
                 key, authorized_user, impersonated_service_account or external_account JSON"
            )));
        }
    };
    built.map_err(|e| Error::config(format!("gcp {kind} credentials: {e}")))
}

/// Credentials from a JSON key held as a sealbox [`Secret`] (for instance read from the
/// local vault), so the key file never has to sit on disk.
pub fn credentials_from_secret(json: &Secret) -> Result<Credentials> {
    credentials_from_json(parse_credentials(json, "secret")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As the config loader reads a block: YAML into JSON values, then the struct.
    fn parse(yaml: &str) -> Result<GcpConfig> {
        let value: serde_json::Value = serde_norway::from_str(yaml).unwrap();
        GcpConfig::deserialize(value).map_err(|e| Error::config(e.to_string()))
    }

    #[test]
    fn the_documented_yaml_parses() {
        let c = parse(
            "project: predis-prod\nprefix: predis/prod/\n\
             impersonate_service_account: r@p.iam.gserviceaccount.com\n\
             credentials_file: /run/sa.json\nendpoint: http://127.0.0.1:1\n\
             replication: {user_managed: {replicas: [{location: europe-west1}, \
             {location: europe-west4, kms_key_name: k}]}}\noperation_timeout: 4s\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.secret_prefix().unwrap().as_deref(), Some("predis/prod"));
        assert_eq!(c.parent(), "projects/predis-prod");
        assert!(matches!(
            c.replication,
            Some(ReplicationConfig::UserManaged { ref replicas }) if replicas.len() == 2
        ));
        let regional = parse("project: p\nlocation: europe-west1\n").unwrap();
        assert_eq!(regional.parent(), "projects/p/locations/europe-west1");
        assert_eq!(
            regional.effective_endpoint().as_deref(),
            Some("https://secretmanager.europe-west1.rep.googleapis.com")
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_config_errors() {
        assert!(parse("project: p\nendpont: http://x\n").is_err());
        for bad in [
            "project: P_1\n",
            "project: p\nendpoint: 127.0.0.1:1\n",
            "project: p\nanonymous: true\ncredentials_file: x.json\n",
            "project: p\nlocation: europe-west1\nreplication: {automatic: {}}\n",
            "project: p\nkms_key_name: k\n",
            "project: p\nreplication: {user_managed: {replicas: []}}\n",
            "project: p\niam_endpoint: http://x\nimpersonate_service_account: a@b\n",
            "project: p\nmax_attempts: 0\n",
            "project: p\nprefix: a//b\n",
        ] {
            let err = parse(bad).unwrap().validate().unwrap_err();
            assert_eq!(err.kind(), sealbox::ErrorKind::Config, "{bad}");
        }
    }

    #[test]
    fn credentials_of_an_unknown_type_are_refused_without_echoing_the_file() {
        let mut raw = br#"{"type": "mystery", "private_key": "not-a-key-xyzzy"}"#.to_vec();
        let secret = Secret::from_mut_slice(&mut raw).unwrap();
        let err = credentials_from_secret(&secret).unwrap_err();
        assert_eq!(err.kind(), sealbox::ErrorKind::Config);
        assert!(!err.to_string().contains("xyzzy"), "{err}");
        let mut raw = b"{not json xyzzy".to_vec();
        let secret = Secret::from_mut_slice(&mut raw).unwrap();
        let err = credentials_from_secret(&secret).unwrap_err();
        assert!(!err.to_string().contains("xyzzy"), "{err}");
    }
}
