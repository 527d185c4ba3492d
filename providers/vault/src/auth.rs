//! The Vault session: an HTTP client, a token, and what keeps the token alive.
//!
//! **Login.** Token (inline, `token_file`, or `VAULT_TOKEN`), AppRole (`role_id` and a
//! `secret_id`, inline or from `secret_id_file`, re-read at every login as Vault Agent
//! rewrites it) or Kubernetes (the service-account JWT file, re-read at every login). A
//! session logs in when it is made; a failed login is `AccessDenied` with Vault's text.
//!
//! **Renewal, without a background task.** Every call first checks whether the token has
//! passed two thirds of its TTL; if so, one caller (the others wait on a lock) renews it
//! (`auth/token/renew-self`). A renewal that is refused, or that Vault caps below half the
//! TTL the login gave (its max TTL is near), leads to a new login instead. A call that Vault
//! answers with 403 asks `lookup-self` whether the token still lives: when it does not
//! (revoked, expired while idle), the session logs in again and the call is retried once;
//! when it does, the 403 is a policy denial and is returned as such. A static token
//! (inline or `VAULT_TOKEN`) cannot log in again: once Vault refuses it, calls fail with
//! `AccessDenied`; a `token_file` is read again instead.
//!
//! **Memory.** The token is kept in a sealbox [`Secret`] (locked, wiped on drop). vaultrs
//! sends it from a `String` in its request middleware, which holds a copy for as long as
//! that token is in use; that copy is freed, not wiped, when the token is replaced.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use sealbox::{Error, ErrorKind, ExposeSecret, Result, Secret, SecretString};
use tokio::sync::Mutex;
use vaultrs::api::{AuthInfo, EndpointMiddleware};
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use crate::config::{AuthConfig, DEFAULT_JWT_FILE, DEFAULT_TIMEOUT, VaultConfig};
use crate::error::{self, Call};

/// How this session gets a token.
#[derive(Clone)]
pub(crate) enum Login {
    /// A fixed token, given inline or by `VAULT_TOKEN`.
    Static(Arc<SecretString>),
    /// A token file, read at start and again when Vault refuses the token.
    TokenFile(PathBuf),
    /// AppRole login.
    AppRole {
        mount: String,
        role_id: String,
        secret_id: SecretSource,
    },
    /// Kubernetes login with the pod's service-account JWT.
    Kubernetes {
        mount: String,
        role: String,
        jwt_file: PathBuf,
    },
}

/// A secret given inline or in a file that is re-read at every use.
#[derive(Clone)]
pub(crate) enum SecretSource {
    Inline(Arc<SecretString>),
    File(PathBuf),
}

impl SecretSource {
    fn read(&self, what: &str) -> Result<SecretString> {
        match self {
            SecretSource::Inline(s) => SecretString::from_string(s.expose_secret().to_owned()),
            SecretSource::File(path) => read_secret_file(path, what),
        }
    }
}

fn read_secret_file(path: &std::path::Path, what: &str) -> Result<SecretString> {
    let mut f = std::fs::File::open(path).map_err(|e| {
        Error::new(
            ErrorKind::AccessDenied,
            format!("vault {what} file {}: cannot read it: {e}", path.display()),
        )
    })?;
    let raw = Secret::from_reader(&mut f, 64 * 1024)?;
    let bytes = raw.expose_secret();
    let end = bytes
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    let mut copy = bytes[..end].to_vec();
    let trimmed = Secret::from_mut_slice(&mut copy)?;
    if trimmed.is_empty() {
        return Err(Error::new(
            ErrorKind::AccessDenied,
            format!("vault {what} file {} is empty", path.display()),
        ));
    }
    trimmed.into_string().map_err(|_| {
        Error::config(format!(
            "vault {what} file {} is not UTF-8 text",
            path.display()
        ))
    })
}

impl Login {
    /// The login a config names (relative paths already resolved by the caller).
    pub(crate) fn from_config(auth: Option<&AuthConfig>) -> Result<Login> {
        Ok(match auth {
            None
            | Some(AuthConfig::Token {
                token: None,
                token_file: None,
            }) => {
                let token = std::env::var("VAULT_TOKEN").map_err(|_| {
                    Error::config(
                        "vault: no auth configured and VAULT_TOKEN is not set; set auth: \
                         {method: token|approle|kubernetes, ...}",
                    )
                })?;
                Login::Static(Arc::new(SecretString::from_string(token)?))
            }
            Some(AuthConfig::Token {
                token: Some(t),
                token_file: None,
            }) => Login::Static(Arc::new(SecretString::from_string(t.clone())?)),
            Some(AuthConfig::Token {
                token_file: Some(f),
                ..
            }) => Login::TokenFile(f.clone()),
            Some(AuthConfig::Approle {
                role_id,
                secret_id,
                secret_id_file,
                mount,
            }) => Login::AppRole {
                mount: mount.clone().unwrap_or_else(|| "approle".into()),
                role_id: role_id.clone(),
                secret_id: match (secret_id, secret_id_file) {
                    (Some(s), None) => {
                        SecretSource::Inline(Arc::new(SecretString::from_string(s.clone())?))
                    }
                    (None, Some(f)) => SecretSource::File(f.clone()),
                    _ => {
                        return Err(Error::config(
                            "vault auth (approle): set one of secret_id or secret_id_file",
                        ));
                    }
                },
            },
            Some(AuthConfig::Kubernetes {
                role,
                jwt_file,
                mount,
            }) => Login::Kubernetes {
                mount: mount.clone().unwrap_or_else(|| "kubernetes".into()),
                role: role.clone(),
                jwt_file: jwt_file
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_JWT_FILE)),
            },
        })
    }

    fn method(&self) -> &'static str {
        match self {
            Login::Static(_) => "token",
            Login::TokenFile(_) => "token_file",
            Login::AppRole { .. } => "approle",
            Login::Kubernetes { .. } => "kubernetes",
        }
    }

    /// Whether a refused token can be replaced by logging in (or reading the file) again.
    fn can_login_again(&self) -> bool {
        !matches!(self, Login::Static(_))
    }
}

/// The client with one token in it, and when that token wants renewing.
pub(crate) struct Current {
    /// The vaultrs client whose middleware sends this token.
    pub client: VaultClient,
    /// Bumped at every new token (login, re-read file); renewals keep it.
    generation: u64,
    /// The token (the copy sealbox keeps).
    token: Secret,
    /// When to renew: two thirds into the TTL. `None`: a token without TTL (root) or one
    /// that cannot be renewed.
    renew_at: Option<Instant>,
    /// The TTL Vault gave at login: a renewal capped well below it means the max TTL is near.
    login_ttl: Duration,
    renewable: bool,
}

/// The pieces every token's client shares.
struct Base {
    http: reqwest::Client,
    base_url: String,
    namespace: Option<String>,
    timeout: Duration,
}

/// A Vault session: base client, login method, current token.
pub struct Session {
    base: Base,
    login: Login,
    current: ArcSwap<Current>,
    refresh: Mutex<()>,
    next_generation: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("address", &self.base.base_url)
            .field("namespace", &self.base.namespace)
            .field("auth", &self.login.method())
            .finish_non_exhaustive()
    }
}

/// Builds the HTTP client: CA bundle, client certificate, timeout, and for
/// `tls_server_name` a URL naming the server by that name, resolved to the address's host.
async fn http_client(config: &VaultConfig) -> Result<(reqwest::Client, String)> {
    let timeout = config.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let mut builder = reqwest::Client::builder()
        .tls_backend_rustls()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)));
    if let Some(ca) = &config.ca_file {
        let pem = std::fs::read(ca).map_err(|e| {
            Error::config(format!(
                "vault ca_file {}: cannot read it: {e}",
                ca.display()
            ))
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            Error::config(format!(
                "vault ca_file {}: not a PEM certificate bundle: {e}",
                ca.display()
            ))
        })?;
        builder = builder.tls_certs_merge(certs);
    }
    if let (Some(cert), Some(key)) = (&config.client_cert, &config.client_key) {
        let mut pem = std::fs::read(cert).map_err(|e| {
            Error::config(format!(
                "vault client_cert {}: cannot read it: {e}",
                cert.display()
            ))
        })?;
        let key_pem = zeroize::Zeroizing::new(std::fs::read(key).map_err(|e| {
            Error::config(format!(
                "vault client_key {}: cannot read it: {e}",
                key.display()
            ))
        })?);
        pem.extend_from_slice(b"\n");
        pem.extend_from_slice(&key_pem);
        let pem = zeroize::Zeroizing::new(pem);
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
            Error::config(format!(
                "vault client_cert/client_key: not a PEM certificate and private key: {e}"
            ))
        })?;
        builder = builder.identity(identity);
    }
    let mut url = reqwest::Url::parse(&config.address)
        .map_err(|_| Error::config(format!("vault address {:?} is not a URL", config.address)))?;
    if let Some(name) = &config.tls_server_name {
        let host = url
            .host_str()
            .ok_or_else(|| Error::config("vault address has no host"))?
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(8200);
        let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| Error::config(format!("vault address host {host}: {e}")))?
            .collect();
        if addrs.is_empty() {
            return Err(Error::config(format!(
                "vault address host {host} resolves to nothing"
            )));
        }
        builder = builder.resolve_to_addrs(name, &addrs);
        url.set_host(Some(name)).map_err(|_| {
            Error::config(format!("vault tls_server_name {name:?} is not a host name"))
        })?;
    }
    let http = builder.build().map_err(|e| {
        Error::config(format!(
            "vault: the HTTP client could not be built: {}",
            error::display_chain(&e)
        ))
    })?;
    Ok((http, url.as_str().trim_end_matches('/').to_owned()))
}

impl Session {
    /// Builds the client and logs in.
    pub async fn connect(config: &VaultConfig) -> Result<Arc<Session>> {
        config.validate()?;
        let (http, base_url) = http_client(config).await?;
        let login = Login::from_config(config.auth.as_ref())?;
        let base = Base {
            http,
            base_url,
            namespace: config.namespace.clone(),
            timeout: config.timeout.unwrap_or(DEFAULT_TIMEOUT),
        };
        let first = Self::obtain(&base, &login, 1).await?;
        Ok(Arc::new(Session {
            base,
            login,
            current: ArcSwap::from_pointee(first),
            refresh: Mutex::new(()),
            next_generation: std::sync::atomic::AtomicU64::new(2),
        }))
    }

    /// The Vault address requests go to.
    pub fn address(&self) -> &str {
        &self.base.base_url
    }

    fn client_with(base: &Base, token: &Secret) -> Result<VaultClient> {
        let token_text = std::str::from_utf8(token.expose_secret())
            .map_err(|_| Error::internal("a vault token is not UTF-8"))?;
        let mut settings = VaultClientSettingsBuilder::default();
        settings
            .address(&base.base_url)
            .token("")
            .ca_certs(Vec::new())
            .identity(None)
            .verify(true)
            .timeout(Some(base.timeout));
        if let Some(ns) = &base.namespace {
            settings.set_namespace(ns.clone());
        }
        let settings = settings
            .build()
            .map_err(|e| Error::config(format!("vault client settings: {e}")))?;
        let middle = EndpointMiddleware {
            token: token_text.to_owned(),
            version: "v1".into(),
            wrap: None,
            namespace: base.namespace.clone(),
        };
        Ok(VaultClient {
            http: rustify::clients::reqwest::Client::new(&base.base_url, base.http.clone()),
            middle,
            settings,
        })
    }

    /// A fresh token by the login method, as a ready client.
    async fn obtain(base: &Base, login: &Login, generation: u64) -> Result<Current> {
        let anonymous = Self::client_with(base, &Secret::from_mut_slice(&mut [])?)?;
        let (token, auth) = match login {
            Login::Static(t) => (secret_of(t.expose_secret())?, None),
            Login::TokenFile(path) => (read_secret_file(path, "token_file")?.into_secret(), None),
            Login::AppRole {
                mount,
                role_id,
                secret_id,
            } => {
                let secret_id = secret_id.read("secret_id")?;
                let auth = vaultrs::auth::approle::login(
                    &anonymous,
                    mount,
                    role_id,
                    secret_id.expose_secret(),
                )
                .await
                .map_err(|e| login_failed("approle", mount, e))?;
                take_token(auth)?
            }
            Login::Kubernetes {
                mount,
                role,
                jwt_file,
            } => {
                let jwt = read_secret_file(jwt_file, "kubernetes jwt_file")?;
                let auth =
                    vaultrs::auth::kubernetes::login(&anonymous, mount, role, jwt.expose_secret())
                        .await
                        .map_err(|e| login_failed("kubernetes", mount, e))?;
                take_token(auth)?
            }
        };
        let client = Self::client_with(base, &token)?;
        let (ttl, renewable) = match auth {
            Some(a) => a,
            // A token we were handed: ask Vault what it is.
            None => {
                let me = vaultrs::token::lookup_self(&client).await.map_err(|e| {
                    let err = error::from_client(
                        Call {
                            operation: "token lookup-self",
                            target: "auth/token/lookup-self",
                        },
                        e,
                    );
                    if err.kind() == ErrorKind::AccessDenied {
                        error::rekind(
                            &err,
                            ErrorKind::AccessDenied,
                            format!(
                                "Vault refused the configured token ({}); it is revoked, \
                                 expired or wrong: give a valid token",
                                err.message()
                            ),
                        )
                    } else {
                        err
                    }
                })?;
                (
                    Duration::from_secs(me.ttl),
                    me.renewable.unwrap_or(false) && me.ttl > 0,
                )
            }
        };
        Ok(Current {
            client,
            generation,
            token,
            renew_at: renew_at(ttl, renewable),
            login_ttl: ttl,
            renewable,
        })
    }

    /// The client to use now, renewing (or logging in again) first when the token is due.
    pub(crate) async fn client(&self) -> Result<Arc<Current>> {
        let cur = self.current.load_full();
        match cur.renew_at {
            Some(at) if Instant::now() >= at => {
                self.refresh(cur.generation, false).await?;
                Ok(self.current.load_full())
            }
            _ => Ok(cur),
        }
    }

    /// Renews the token of `generation` (unless another caller already replaced it), or logs
    /// in again when renewal is refused or capped, or when `force_login`.
    async fn refresh(&self, generation: u64, force_login: bool) -> Result<()> {
        let _one = self.refresh.lock().await;
        let cur = self.current.load_full();
        if cur.generation != generation {
            return Ok(());
        }
        if !force_login && cur.renewable {
            match vaultrs::token::renew_self(&cur.client, None).await {
                Ok(auth) => {
                    let ttl = Duration::from_secs(auth.lease_duration);
                    let capped = ttl * 2 < cur.login_ttl;
                    if !capped || !self.login.can_login_again() {
                        tracing::debug!(ttl_s = ttl.as_secs(), "vault: token renewed");
                        let client = Self::client_with(&self.base, &cur.token)?;
                        self.current.store(Arc::new(Current {
                            client,
                            generation: cur.generation,
                            token: secret_of_bytes(cur.token.expose_secret())?,
                            renew_at: renew_at(ttl, auth.renewable),
                            login_ttl: cur.login_ttl,
                            renewable: auth.renewable,
                        }));
                        return Ok(());
                    }
                    tracing::info!(
                        ttl_s = ttl.as_secs(),
                        "vault: token renewal capped near its max TTL; logging in again"
                    );
                }
                Err(e) => {
                    tracing::info!(
                        status = error::status(&e),
                        "vault: token renewal refused; logging in again"
                    );
                    if !self.login.can_login_again() {
                        // Keep the token until Vault refuses it; calls will say why.
                        let client = Self::client_with(&self.base, &cur.token)?;
                        self.current.store(Arc::new(Current {
                            client,
                            generation: cur.generation,
                            token: secret_of_bytes(cur.token.expose_secret())?,
                            renew_at: None,
                            login_ttl: cur.login_ttl,
                            renewable: false,
                        }));
                        return Ok(());
                    }
                }
            }
        }
        if !self.login.can_login_again() {
            return Err(Error::new(
                ErrorKind::AccessDenied,
                "Vault refused the configured token (revoked or expired) and a fixed token \
                 cannot log in again: give a new token, or use token_file, approle or \
                 kubernetes auth",
            ));
        }
        let generation = self
            .next_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let next = Self::obtain(&self.base, &self.login, generation).await?;
        tracing::info!(method = self.login.method(), "vault: logged in again");
        self.current.store(Arc::new(next));
        Ok(())
    }

    /// Runs one Vault call with a live token: renews first when due; on a 403 checks whether
    /// the token itself was refused and, if so, logs in again and retries once. The outer
    /// error is a session failure (login), the inner one Vault's answer to the call.
    pub(crate) async fn run<T, F, Fut>(&self, f: F) -> Result<Result<T, ClientError>>
    where
        F: Fn(Arc<Current>) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let cur = self.client().await?;
        let generation = cur.generation;
        match f(cur.clone()).await {
            Err(e) if error::is_denied(&e) && self.token_refused(&cur).await => {
                self.refresh(generation, true).await?;
                let cur = self.current.load_full();
                Ok(f(cur).await)
            }
            other => Ok(other),
        }
    }

    /// Whether Vault no longer accepts the token of `cur` (as opposed to a policy denial).
    async fn token_refused(&self, cur: &Current) -> bool {
        matches!(
            vaultrs::token::lookup_self(&cur.client).await,
            Err(ref e) if error::status(e) == Some(403)
        )
    }

    /// The current token's generation (tests: a new login bumps it).
    pub fn generation(&self) -> u64 {
        self.current.load().generation
    }
}

fn renew_at(ttl: Duration, renewable: bool) -> Option<Instant> {
    (renewable && !ttl.is_zero()).then(|| Instant::now() + ttl * 2 / 3)
}

fn secret_of(s: &str) -> Result<Secret> {
    secret_of_bytes(s.as_bytes())
}

fn secret_of_bytes(b: &[u8]) -> Result<Secret> {
    Secret::init_with(b.len(), |dst| {
        dst.copy_from_slice(b);
        Ok(())
    })
}

/// Moves the token out of a login answer into locked memory.
fn take_token(auth: AuthInfo) -> Result<(Secret, Option<(Duration, bool)>)> {
    let ttl = Duration::from_secs(auth.lease_duration);
    let renewable = auth.renewable;
    let token = SecretString::from_string(auth.client_token)?.into_secret();
    Ok((token, Some((ttl, renewable))))
}

fn login_failed(method: &str, mount: &str, e: ClientError) -> Error {
    let texts = error::texts(&e).join("; ");
    let target = format!("auth/{mount}/login");
    let err = error::from_client(
        Call {
            operation: "login",
            target: &target,
        },
        e,
    );
    if err.kind() == ErrorKind::Unavailable {
        return err;
    }
    // Vault's text, without the policy hint that 403s on other paths get.
    let said = if texts.is_empty() {
        err.message().to_owned()
    } else {
        texts
    };
    error::rekind(
        &err,
        ErrorKind::AccessDenied,
        format!(
            "Vault {method} login on {target} failed: {said}; check the role and the \
             credentials it was given"
        ),
    )
}
