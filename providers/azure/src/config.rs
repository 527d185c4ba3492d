//! `AzureConfig`: the typed `config:` block of `provider: azure`, and how it becomes a client.
//!
//! ```yaml
//! stores:
//!   azure:
//!     provider: azure
//!     config:
//!       vault_url: https://predis-prod.vault.azure.net/
//!       prefix: predis/prod                # optional: names live under predis/prod/...
//!       credential:                        # required: never guessed
//!         kind: managed_identity           # or workload | client_secret | client_certificate | cli
//!         client_id: 00000000-0000-0000-0000-000000000000   # optional: a user-assigned identity
//!       api_version: "7.5"                 # optional: sovereign clouds, older vaults, tests
//!       ca_file: /etc/ssl/private-endpoint-ca.pem   # optional: an extra CA to trust
//! ```
//!
//! Credentials (`credential.kind`), each an `azure_identity` credential:
//! - `managed_identity`: `ManagedIdentityCredential`, system-assigned, or user-assigned with one
//!   of `client_id`, `object_id`, `resource_id`. The SDK picks IMDS or App Service from the
//!   environment as Azure sets it.
//! - `workload`: `WorkloadIdentityCredential` (AKS workload identity); `tenant_id`,
//!   `client_id` and `token_file` default to `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
//!   `AZURE_FEDERATED_TOKEN_FILE` as the AKS webhook sets them.
//! - `client_secret`: `ClientSecretCredential` with `tenant_id`, `client_id` and the secret
//!   from `client_secret_file` or the environment variable `client_secret_env` (never inline).
//! - `client_certificate`: `ClientCertificateCredential` with a PEM or PKCS#12
//!   `certificate_file`; needs the crate feature `client-certificate` (OpenSSL).
//! - `cli`: `AzureCliCredential` (a developer's `az login`), optional `tenant_id`.
//!
//! `authority_host` (for the three Entra ID app kinds) points token requests at another
//! authority: sovereign clouds, or the local Key Vault's token endpoint in tests.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions, Transport};
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
use sealbox::store::SecretName;
use sealbox::{Error, ExposeSecret, Result, Secret};
use serde::Deserialize;

/// Settings of the Azure store (`provider: azure`, `config: {...}`). Unknown keys are refused
/// so a misspelt `vault_ulr` fails instead of being ignored.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    /// `https://NAME.vault.azure.net/` (or a sovereign cloud's, or a private endpoint's).
    pub vault_url: String,
    /// How to authenticate. Required.
    pub credential: Option<CredentialConfig>,
    /// Names live under this path: `prefix: predis/prod` maps `db/password` to the Key Vault
    /// secret of `predis/prod/db/password` (`predis--prod--db--password`).
    pub prefix: Option<String>,
    /// The data-plane API version. Default: the SDK's (`2025-07-01`).
    pub api_version: Option<String>,
    /// A PEM file of CA certificates to trust besides the system's (private endpoints behind
    /// a TLS-inspecting proxy, the local test server).
    pub ca_file: Option<PathBuf>,
    /// Whether the resource a 401 challenge names must be the vault's domain (the SDK's
    /// check). Default true; the local test server on 127.0.0.1 needs false.
    pub verify_challenge_resource: Option<bool>,
    /// Budget for one call including retries. Default 10 s.
    #[serde(default, with = "humantime_serde")]
    pub operation_timeout: Option<Duration>,
    /// Budget for one attempt. Default 5 s.
    #[serde(default, with = "humantime_serde")]
    pub attempt_timeout: Option<Duration>,
    /// Attempts per call, first included. Default 3.
    pub max_attempts: Option<u32>,
    /// First retry backoff; later ones double. Default 200 ms.
    #[serde(default, with = "humantime_serde")]
    pub initial_backoff: Option<Duration>,
    /// Largest backoff. Default 5 s.
    #[serde(default, with = "humantime_serde")]
    pub max_backoff: Option<Duration>,
}

/// Which `azure_identity` credential to use (`credential: {kind: ...}`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CredentialConfig {
    /// Azure managed identity: system-assigned, or user-assigned by one id.
    ManagedIdentity {
        /// Client id of a user-assigned identity.
        client_id: Option<String>,
        /// Object (principal) id of a user-assigned identity.
        object_id: Option<String>,
        /// Azure resource id of a user-assigned identity.
        resource_id: Option<String>,
    },
    /// AKS workload identity (a federated token file).
    Workload {
        /// Default `AZURE_TENANT_ID`.
        tenant_id: Option<String>,
        /// Default `AZURE_CLIENT_ID`.
        client_id: Option<String>,
        /// Default `AZURE_FEDERATED_TOKEN_FILE`.
        token_file: Option<PathBuf>,
        /// Entra ID authority (sovereign clouds, tests).
        authority_host: Option<String>,
    },
    /// A service principal with a client secret.
    ClientSecret {
        /// The tenant (directory) id.
        tenant_id: String,
        /// The application (client) id.
        client_id: String,
        /// A file holding the secret.
        client_secret_file: Option<PathBuf>,
        /// An environment variable holding the secret.
        client_secret_env: Option<String>,
        /// Entra ID authority (sovereign clouds, tests).
        authority_host: Option<String>,
    },
    /// A service principal with a certificate (PEM with its key, or PKCS#12).
    ClientCertificate {
        /// The tenant (directory) id.
        tenant_id: String,
        /// The application (client) id.
        client_id: String,
        /// The certificate and private key.
        certificate_file: PathBuf,
        /// Entra ID authority (sovereign clouds, tests).
        authority_host: Option<String>,
    },
    /// The Azure CLI's signed-in account (developers).
    Cli {
        /// A tenant other than the CLI's default.
        tenant_id: Option<String>,
    },
}

impl CredentialConfig {
    /// The `kind` as written in config.
    pub fn kind(&self) -> &'static str {
        match self {
            CredentialConfig::ManagedIdentity { .. } => "managed_identity",
            CredentialConfig::Workload { .. } => "workload",
            CredentialConfig::ClientSecret { .. } => "client_secret",
            CredentialConfig::ClientCertificate { .. } => "client_certificate",
            CredentialConfig::Cli { .. } => "cli",
        }
    }
}

impl fmt::Debug for CredentialConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only where secrets come from is held here, never a secret; still, ids are enough.
        f.debug_struct("CredentialConfig")
            .field("kind", &self.kind())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for AzureConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureConfig")
            .field("vault_url", &self.vault_url)
            .field("credential", &self.credential)
            .field("prefix", &self.prefix)
            .field("api_version", &self.api_version)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

/// Default budget for one call including retries.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
/// Default budget for one attempt.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default attempts per call.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Default first backoff.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(200);
/// Default largest backoff.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(5);

fn https_url(what: &str, url: &str) -> Result<()> {
    if url.starts_with("https://") && url.len() > "https://".len() {
        Ok(())
    } else {
        Err(Error::config(format!(
            "azure {what} {url:?} must be an https:// URL"
        )))
    }
}

impl AzureConfig {
    /// Checks what the service would only reject at the first call.
    pub fn validate(&self) -> Result<()> {
        https_url("vault_url", &self.vault_url)?;
        let Some(credential) = &self.credential else {
            return Err(Error::config(
                "azure credential is required: credential: {kind: managed_identity | workload | \
                 client_secret | client_certificate | cli, ...}; sealbox never picks one for you",
            ));
        };
        match credential {
            CredentialConfig::ManagedIdentity {
                client_id,
                object_id,
                resource_id,
            } => {
                let ids = [client_id, object_id, resource_id]
                    .iter()
                    .filter(|x| x.is_some())
                    .count();
                if ids > 1 {
                    return Err(Error::config(
                        "azure managed_identity takes at most one of client_id, object_id, \
                         resource_id (a user-assigned identity); none means system-assigned",
                    ));
                }
            }
            CredentialConfig::ClientSecret {
                client_secret_file,
                client_secret_env,
                authority_host,
                ..
            } => {
                if client_secret_file.is_some() == client_secret_env.is_some() {
                    return Err(Error::config(
                        "azure client_secret needs exactly one of client_secret_file and \
                         client_secret_env (the secret itself never goes in the config)",
                    ));
                }
                if let Some(a) = authority_host {
                    https_url("credential.authority_host", a)?;
                }
            }
            CredentialConfig::Workload {
                authority_host: Some(a),
                ..
            }
            | CredentialConfig::ClientCertificate {
                authority_host: Some(a),
                ..
            } => https_url("credential.authority_host", a)?,
            _ => {}
        }
        if self.max_attempts == Some(0) {
            return Err(Error::config("azure max_attempts must be at least 1"));
        }
        for (what, d) in [
            ("operation_timeout", self.operation_timeout),
            ("attempt_timeout", self.attempt_timeout),
        ] {
            if d == Some(Duration::ZERO) {
                return Err(Error::config(format!(
                    "azure {what} must be more than zero"
                )));
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
                    Error::config(format!("azure prefix {p:?} is not a valid path: {e}"))
                })?;
                Ok(Some(p.to_owned()))
            }
        }
    }

    /// The HTTP transport: reqwest with rustls, the attempt timeout, and `ca_file` trusted.
    pub fn transport(&self) -> Result<Transport> {
        let mut builder = reqwest::Client::builder()
            .timeout(self.attempt_timeout.unwrap_or(DEFAULT_ATTEMPT_TIMEOUT))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = &self.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                Error::config(format!(
                    "azure ca_file {}: cannot read it: {e}",
                    path.display()
                ))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::config(format!(
                    "azure ca_file {} holds no PEM certificate: {e}",
                    path.display()
                ))
            })?;
            if certs.is_empty() {
                return Err(Error::config(format!(
                    "azure ca_file {} holds no PEM certificate",
                    path.display()
                )));
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let client = builder.build().map_err(|e| {
            Error::config(format!("azure: the HTTP client could not be built: {e}"))
        })?;
        Ok(Transport::new(Arc::new(client)))
    }

    /// Client options shared by the vault client and the credential: transport and a bounded
    /// exponential retry (408, 429 honouring `Retry-After`, 500, 502, 503, 504 and connection
    /// errors; at most `max_attempts` within `operation_timeout`).
    pub fn client_options(&self) -> Result<ClientOptions> {
        let attempts = self.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
        let retry = ExponentialRetryOptions {
            initial_delay: to_time(self.initial_backoff.unwrap_or(DEFAULT_INITIAL_BACKOFF)),
            max_retries: attempts.saturating_sub(1),
            max_total_elapsed: to_time(self.operation_timeout.unwrap_or(DEFAULT_OPERATION_TIMEOUT)),
            max_delay: to_time(self.max_backoff.unwrap_or(DEFAULT_MAX_BACKOFF)),
        };
        Ok(ClientOptions {
            retry: RetryOptions::exponential(retry),
            transport: Some(self.transport()?),
            ..ClientOptions::default()
        })
    }

    fn cloud(authority_host: Option<&String>) -> Option<Arc<CloudConfiguration>> {
        authority_host.map(|a| {
            let mut custom = CustomConfiguration::default();
            custom.authority_host = a.trim_end_matches('/').to_owned();
            Arc::new(CloudConfiguration::Custom(custom))
        })
    }

    /// The credential `credential` names.
    pub fn token_credential(&self) -> Result<Arc<dyn TokenCredential>> {
        self.validate()?;
        let credential = self
            .credential
            .as_ref()
            .ok_or_else(|| Error::config("azure credential is required"))?;
        let kind = credential.kind();
        let failed = |e: azure_core::Error| {
            Error::config(format!("azure credential {kind} could not be set up: {e}"))
        };
        let with_cloud = |authority: Option<&String>| -> Result<ClientOptions> {
            Ok(ClientOptions {
                cloud: Self::cloud(authority),
                ..self.client_options()?
            })
        };
        Ok(match credential {
            CredentialConfig::ManagedIdentity {
                client_id,
                object_id,
                resource_id,
            } => {
                use azure_identity::{
                    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
                };
                let user_assigned_id = match (client_id, object_id, resource_id) {
                    (Some(c), _, _) => Some(UserAssignedId::ClientId(c.clone())),
                    (_, Some(o), _) => Some(UserAssignedId::ObjectId(o.clone())),
                    (_, _, Some(r)) => Some(UserAssignedId::ResourceId(r.clone())),
                    _ => None,
                };
                ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                    user_assigned_id,
                    client_options: self.client_options()?,
                }))
                .map_err(failed)?
            }
            CredentialConfig::Workload {
                tenant_id,
                client_id,
                token_file,
                authority_host,
            } => {
                use azure_identity::{
                    ClientAssertionCredentialOptions, WorkloadIdentityCredential,
                    WorkloadIdentityCredentialOptions,
                };
                let options = WorkloadIdentityCredentialOptions {
                    credential_options: ClientAssertionCredentialOptions {
                        client_options: with_cloud(authority_host.as_ref())?,
                    },
                    client_id: client_id.clone(),
                    tenant_id: tenant_id.clone(),
                    token_file_path: token_file.clone(),
                };
                WorkloadIdentityCredential::new(Some(options)).map_err(failed)?
            }
            CredentialConfig::ClientSecret {
                tenant_id,
                client_id,
                client_secret_file,
                client_secret_env,
                authority_host,
            } => {
                use azure_identity::{ClientSecretCredential, ClientSecretCredentialOptions};
                let secret = read_client_secret(client_secret_file, client_secret_env)?;
                let options = ClientSecretCredentialOptions {
                    client_options: with_cloud(authority_host.as_ref())?,
                };
                ClientSecretCredential::new(tenant_id, client_id.clone(), secret, Some(options))
                    .map_err(failed)?
            }
            CredentialConfig::ClientCertificate {
                tenant_id,
                client_id,
                certificate_file,
                authority_host,
            } => client_certificate(
                tenant_id,
                client_id,
                certificate_file,
                with_cloud(authority_host.as_ref())?,
            )?,
            CredentialConfig::Cli { tenant_id } => {
                use azure_identity::{AzureCliCredential, AzureCliCredentialOptions};
                AzureCliCredential::new(Some(AzureCliCredentialOptions {
                    tenant_id: tenant_id.clone(),
                    ..Default::default()
                }))
                .map_err(failed)?
            }
        })
    }

    /// Builds the Key Vault secrets client with the configured credential.
    pub fn secret_client(&self) -> Result<SecretClient> {
        self.secret_client_with(self.token_credential()?)
    }

    /// Like [`AzureConfig::secret_client`] with a credential the caller built.
    pub fn secret_client_with(&self, credential: Arc<dyn TokenCredential>) -> Result<SecretClient> {
        self.validate()?;
        let mut options = SecretClientOptions {
            client_options: self.client_options()?,
            verify_challenge_resource: Some(self.verify_challenge_resource.unwrap_or(true)),
            ..SecretClientOptions::default()
        };
        if let Some(v) = &self.api_version {
            options.api_version = v.clone();
        }
        SecretClient::new(&self.vault_url, credential, Some(options)).map_err(|e| {
            Error::config(format!(
                "azure: the Key Vault client for {} could not be built: {e}",
                self.vault_url
            ))
        })
    }
}

fn to_time(d: Duration) -> azure_core::time::Duration {
    azure_core::time::Duration::try_from(d).unwrap_or(azure_core::time::Duration::MAX)
}

/// The client secret from its file or variable. It passes through a locked, wiped buffer; the
/// SDK then keeps its own copy (a `String`), which sealbox cannot wipe.
fn read_client_secret(
    file: &Option<PathBuf>,
    env: &Option<String>,
) -> Result<azure_core::credentials::Secret> {
    let raw = match (file, env) {
        (Some(path), _) => {
            let mut f = std::fs::File::open(path).map_err(|e| {
                Error::config(format!(
                    "azure client_secret_file {}: cannot read it: {e}",
                    path.display()
                ))
            })?;
            Secret::from_reader(&mut f, 64 * 1024)?
        }
        (None, Some(var)) => {
            let mut value = std::env::var(var)
                .map_err(|_| {
                    Error::config(format!(
                        "azure client_secret_env: the environment variable {var} is not set"
                    ))
                })?
                .into_bytes();
            Secret::from_mut_slice(&mut value)?
        }
        (None, None) => return Err(Error::config("azure client_secret needs a source")),
    };
    let text = std::str::from_utf8(raw.expose_secret())
        .map_err(|_| Error::config("azure client secret is not UTF-8 text"))?
        .trim();
    if text.is_empty() {
        return Err(Error::config("azure client secret is empty"));
    }
    Ok(azure_core::credentials::Secret::new(text.to_owned()))
}

#[cfg(feature = "client-certificate")]
fn client_certificate(
    tenant_id: &str,
    client_id: &str,
    file: &std::path::Path,
    client_options: ClientOptions,
) -> Result<Arc<dyn TokenCredential>> {
    use azure_identity::{ClientCertificateCredential, ClientCertificateCredentialOptions};
    let mut f = std::fs::File::open(file).map_err(|e| {
        Error::config(format!(
            "azure certificate_file {}: cannot read it: {e}",
            file.display()
        ))
    })?;
    let raw = Secret::from_reader(&mut f, 1 << 20)?;
    let cert = azure_core::credentials::SecretBytes::new(raw.expose_secret().to_vec());
    let options = ClientCertificateCredentialOptions {
        client_options,
        ..Default::default()
    };
    Ok(ClientCertificateCredential::new(
        tenant_id.to_owned(),
        client_id.to_owned(),
        cert,
        Some(options),
    )
    .map_err(|e| Error::config(format!("azure client_certificate: {e}")))?)
}

#[cfg(not(feature = "client-certificate"))]
fn client_certificate(
    _tenant_id: &str,
    _client_id: &str,
    _file: &std::path::Path,
    _client_options: ClientOptions,
) -> Result<Arc<dyn TokenCredential>> {
    Err(Error::config(
        "azure credential kind client_certificate needs sealbox-azure built with the \
         `client-certificate` feature (it links OpenSSL); use client_secret, workload or \
         managed_identity, or rebuild with that feature",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<AzureConfig> {
        let value: serde_json::Value = serde_norway::from_str(yaml).unwrap();
        AzureConfig::deserialize(value).map_err(|e| Error::config(e.to_string()))
    }

    #[test]
    fn the_documented_yaml_parses() {
        let c = parse(
            "vault_url: https://predis-prod.vault.azure.net/\nprefix: predis/prod/\n\
             credential: {kind: managed_identity, client_id: abc}\napi_version: '7.5'\n\
             operation_timeout: 4s\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.secret_prefix().unwrap().as_deref(), Some("predis/prod"));
        assert_eq!(c.credential.as_ref().unwrap().kind(), "managed_identity");
        let sp = parse(
            "vault_url: https://v.vault.azure.net\ncredential: {kind: client_secret, \
             tenant_id: t, client_id: c, client_secret_env: SP_SECRET}\n",
        )
        .unwrap();
        sp.validate().unwrap();
    }

    #[test]
    fn a_missing_credential_and_bad_values_are_config_errors() {
        assert!(parse("vault_url: https://v\ncredential: {kind: cli}\nvault_ulr: x\n").is_err());
        assert!(parse("vault_url: https://v\ncredential: {kind: guess}\n").is_err());
        for bad in [
            "vault_url: https://v.vault.azure.net\n",
            "vault_url: http://v.vault.azure.net\ncredential: {kind: cli}\n",
            "vault_url: https://v\ncredential: {kind: managed_identity, client_id: a, object_id: b}\n",
            "vault_url: https://v\ncredential: {kind: client_secret, tenant_id: t, client_id: c}\n",
            "vault_url: https://v\ncredential: {kind: client_secret, tenant_id: t, client_id: c, \
             client_secret_env: A, client_secret_file: /x}\n",
            "vault_url: https://v\ncredential: {kind: cli}\nmax_attempts: 0\n",
            "vault_url: https://v\ncredential: {kind: cli}\nprefix: a//b\n",
        ] {
            let err = parse(bad).unwrap().validate().unwrap_err();
            assert_eq!(err.kind(), sealbox::ErrorKind::Config, "{bad}");
        }
    }

    #[test]
    fn a_client_secret_never_appears_in_errors_or_debug() {
        let c = parse(
            "vault_url: https://v\ncredential: {kind: client_secret, tenant_id: t, \
             client_id: c, client_secret_env: SEALBOX_AZURE_TEST_UNSET_VAR}\n",
        )
        .unwrap();
        let Err(err) = c.token_credential() else {
            panic!("the variable is unset, so no credential can be made");
        };
        assert_eq!(err.kind(), sealbox::ErrorKind::Config);
        assert!(
            err.message().contains("SEALBOX_AZURE_TEST_UNSET_VAR"),
            "{err}"
        );
        assert!(!format!("{c:?}").contains("client_secret_env"));
    }
}
