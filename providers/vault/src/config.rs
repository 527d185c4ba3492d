//! `VaultConfig`: the typed `config:` block of `provider: vault`.
//!
//! ```yaml
//! stores:
//!   vault:
//!     provider: vault
//!     config:
//!       address: https://vault.internal:8200
//!       namespace: team-a                   # optional: Vault Enterprise / HCP namespace
//!       mount: secret                       # KV mount (default secret)
//!       kv_version: 2                       # 2 (default) or 1 (read-only)
//!       prefix: predis/prod                 # optional: names live under predis/prod/...
//!       auth: {method: approle, role_id: 0f1e..., secret_id_file: /run/vault/secret-id}
//!       # or {method: token, token_file: /run/vault/token}   (else VAULT_TOKEN)
//!       # or {method: kubernetes, role: predis, jwt_file: /var/run/secrets/kubernetes.io/serviceaccount/token}
//!       ca_file: /etc/vault/ca.pem          # optional TLS settings
//!       client_cert: /etc/vault/client.pem
//!       client_key: /etc/vault/client-key.pem
//!       tls_server_name: vault.internal
//!       timeout: 10s
//!       max_versions: 20                    # optional, set on secrets sealbox writes
//!       delete_version_after: 90d
//! ```

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use sealbox::store::SecretName;
use sealbox::{Error, Result};
use serde::Deserialize;

/// Settings of the Vault store (`provider: vault`, `config: {...}`). Unknown keys are
/// rejected, so a misspelt `adress` fails instead of talking to a default server.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// `https://host:8200` (or `http://` for a local dev server). Required.
    pub address: String,
    /// Vault Enterprise namespace, sent as `X-Vault-Namespace` on every request.
    pub namespace: Option<String>,
    /// The KV secrets engine's mount path. Default `secret`.
    pub mount: Option<String>,
    /// KV engine version of the mount: 2 (default, versioned) or 1 (read-only here).
    pub kv_version: Option<u8>,
    /// Names live under this path inside the mount.
    pub prefix: Option<String>,
    /// How to log in. Default: a token from `VAULT_TOKEN`.
    pub auth: Option<AuthConfig>,
    /// PEM bundle of CA certificates that sign Vault's server certificate.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (TLS client authentication), with `client_key`.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// The name to verify Vault's certificate against (and send as SNI), when the address
    /// is an IP or another name than the certificate's.
    pub tls_server_name: Option<String>,
    /// Budget for one HTTP request. Default 10 s.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// `max_versions` set on the metadata of secrets sealbox writes (Vault's default: the
    /// mount's, 10 unless configured).
    pub max_versions: Option<u64>,
    /// `delete_version_after` set on the metadata of secrets sealbox writes.
    #[serde(default, with = "humantime_serde")]
    pub delete_version_after: Option<Duration>,
}

/// `auth: {method: ...}`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// A token: inline (tests only), from `token_file` (re-read when Vault refuses the token,
    /// as Vault Agent rewrites it), else from the environment variable `VAULT_TOKEN`.
    Token {
        /// The token itself. Prefer `token_file`.
        token: Option<String>,
        /// A file holding the token.
        token_file: Option<PathBuf>,
    },
    /// AppRole: `role_id` and a `secret_id` (inline or, as Vault Agent writes it, from
    /// `secret_id_file`).
    Approle {
        /// The role id (not secret on its own).
        role_id: String,
        /// The secret id. Prefer `secret_id_file`.
        secret_id: Option<String>,
        /// A file holding the secret id, re-read at every login.
        secret_id_file: Option<PathBuf>,
        /// The auth mount. Default `approle`.
        mount: Option<String>,
    },
    /// Kubernetes: the pod's service-account JWT, re-read at every login (it is rotated).
    Kubernetes {
        /// The Vault role bound to the service account.
        role: String,
        /// Default `/var/run/secrets/kubernetes.io/serviceaccount/token`.
        jwt_file: Option<PathBuf>,
        /// The auth mount. Default `kubernetes`.
        mount: Option<String>,
    },
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthConfig::Token { token, token_file } => f
                .debug_struct("Token")
                .field("token", &token.as_ref().map(|_| "[REDACTED]"))
                .field("token_file", token_file)
                .finish(),
            AuthConfig::Approle {
                role_id,
                secret_id,
                secret_id_file,
                mount,
            } => f
                .debug_struct("Approle")
                .field("role_id", role_id)
                .field("secret_id", &secret_id.as_ref().map(|_| "[REDACTED]"))
                .field("secret_id_file", secret_id_file)
                .field("mount", mount)
                .finish(),
            AuthConfig::Kubernetes {
                role,
                jwt_file,
                mount,
            } => f
                .debug_struct("Kubernetes")
                .field("role", role)
                .field("jwt_file", jwt_file)
                .field("mount", mount)
                .finish(),
        }
    }
}

impl fmt::Debug for VaultConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultConfig")
            .field("address", &self.address)
            .field("namespace", &self.namespace)
            .field("mount", &self.mount)
            .field("kv_version", &self.kv_version)
            .field("prefix", &self.prefix)
            .field("auth", &self.auth)
            .field("ca_file", &self.ca_file)
            .field("tls_server_name", &self.tls_server_name)
            .finish_non_exhaustive()
    }
}

/// The service-account token path inside a pod.
pub const DEFAULT_JWT_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// Default budget for one request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

fn check_mount(what: &str, m: &str) -> Result<()> {
    let ok = !m.is_empty()
        && !m.starts_with('/')
        && !m.ends_with('/')
        && m.split('/').all(|s| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(Error::config(format!(
            "vault {what} {m:?} is not a mount path like secret or kv/team-a"
        )))
    }
}

impl VaultConfig {
    /// Checks what Vault would only reject at the first call.
    pub fn validate(&self) -> Result<()> {
        let a = self.address.as_str();
        if !(a.starts_with("http://") || a.starts_with("https://")) {
            return Err(Error::config(format!(
                "vault address {a:?} must start with https:// (or http:// for a local dev \
                 server)"
            )));
        }
        if reqwest::Url::parse(a).is_err() {
            return Err(Error::config(format!("vault address {a:?} is not a URL")));
        }
        check_mount("mount", self.mount())?;
        match self.kv_version {
            None | Some(1) | Some(2) => {}
            Some(v) => {
                return Err(Error::config(format!(
                    "vault kv_version {v}: use 2 (versioned) or 1"
                )));
            }
        }
        if let Some(ns) = &self.namespace
            && (ns.is_empty() || ns.bytes().any(|b| b.is_ascii_control() || b == b' '))
        {
            return Err(Error::config(format!(
                "vault namespace {ns:?} is not a namespace path"
            )));
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err(Error::config(
                "vault client_cert and client_key go together: set both or neither",
            ));
        }
        if self.timeout == Some(Duration::ZERO) {
            return Err(Error::config("vault timeout must be more than zero"));
        }
        match &self.auth {
            Some(AuthConfig::Token {
                token: Some(_),
                token_file: Some(_),
            }) => {
                return Err(Error::config(
                    "vault auth: set token or token_file, not both",
                ));
            }
            Some(AuthConfig::Approle {
                role_id,
                secret_id,
                secret_id_file,
                mount,
            }) => {
                if role_id.is_empty() {
                    return Err(Error::config("vault auth.role_id is empty"));
                }
                if secret_id.is_some() == secret_id_file.is_some() {
                    return Err(Error::config(
                        "vault auth (approle): set one of secret_id or secret_id_file",
                    ));
                }
                check_mount("auth.mount", mount.as_deref().unwrap_or("approle"))?;
            }
            Some(AuthConfig::Kubernetes { role, mount, .. }) => {
                if role.is_empty() {
                    return Err(Error::config("vault auth.role is empty"));
                }
                check_mount("auth.mount", mount.as_deref().unwrap_or("kubernetes"))?;
            }
            _ => {}
        }
        self.secret_prefix()?;
        Ok(())
    }

    /// The KV mount path.
    pub fn mount(&self) -> &str {
        self.mount
            .as_deref()
            .map(|m| m.trim_matches('/'))
            .unwrap_or("secret")
    }

    /// The prefix as a path without trailing `/`, validated like a secret name.
    pub(crate) fn secret_prefix(&self) -> Result<Option<String>> {
        match self.prefix.as_deref().map(|p| p.trim_matches('/')) {
            None | Some("") => Ok(None),
            Some(p) => {
                SecretName::new(p).map_err(|e| {
                    Error::config(format!("vault prefix {p:?} is not a valid path: {e}"))
                })?;
                Ok(Some(p.to_owned()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<VaultConfig> {
        let value: serde_json::Value = serde_norway::from_str(yaml).unwrap();
        VaultConfig::deserialize(value).map_err(|e| Error::config(e.to_string()))
    }

    #[test]
    fn the_documented_yaml_parses() {
        let c = parse(
            "address: https://vault.internal:8200\nnamespace: team-a\nmount: kv/team\n\
             prefix: predis/prod/\nauth: {method: approle, role_id: r, secret_id_file: /s}\n\
             ca_file: /ca.pem\ntls_server_name: vault.internal\ntimeout: 4s\n\
             max_versions: 20\ndelete_version_after: 90d\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.mount(), "kv/team");
        assert_eq!(c.secret_prefix().unwrap().as_deref(), Some("predis/prod"));
        assert!(matches!(c.auth, Some(AuthConfig::Approle { .. })));
        let k =
            parse("address: http://127.0.0.1:8200\nauth: {method: kubernetes, role: r}\n").unwrap();
        k.validate().unwrap();
        assert_eq!(k.mount(), "secret");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_config_errors() {
        assert!(parse("address: http://x\nadress: y\n").is_err());
        assert!(parse("address: http://x\nauth: {method: ldap}\n").is_err());
        for bad in [
            "address: vault:8200\n",
            "address: http://x\nmount: /secret/../x\n",
            "address: http://x\nkv_version: 3\n",
            "address: http://x\nclient_cert: /c.pem\n",
            "address: http://x\nauth: {method: token, token: t, token_file: /t}\n",
            "address: http://x\nauth: {method: approle, role_id: r}\n",
            "address: http://x\nauth: {method: kubernetes, role: ''}\n",
            "address: http://x\nprefix: a//b\n",
        ] {
            let err = parse(bad).unwrap().validate().unwrap_err();
            assert_eq!(err.kind(), sealbox::ErrorKind::Config, "{bad}");
        }
    }

    #[test]
    fn debug_output_hides_inline_credentials() {
        let c = parse(
            "address: http://x\nauth: {method: approle, role_id: r, secret_id: s3cr3t-xyzzy}\n",
        )
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("xyzzy"), "{shown}");
        assert!(shown.contains("REDACTED"), "{shown}");
    }
}
