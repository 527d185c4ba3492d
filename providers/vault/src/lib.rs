//! # sealbox-vault
//!
//! HashiCorp Vault (and OpenBao, which speaks the same API) for sealbox, on the `vaultrs`
//! client: [`VaultKv`], a `SecretStore` over a KV v2 mount (KV v1 read-only), with token,
//! AppRole and Kubernetes auth and token renewal ([`auth`]).
//!
//! ```no_run
//! # async fn demo() -> sealbox::Result<()> {
//! use sealbox_vault::{AuthConfig, VaultConfig, VaultKv};
//! use sealbox::store::{SecretName, SecretStore, VersionSelector};
//!
//! let config = VaultConfig {
//!     address: "https://vault.internal:8200".into(),
//!     prefix: Some("predis/prod".into()),
//!     auth: Some(AuthConfig::Token { token: None, token_file: Some("/run/vault/token".into()) }),
//!     ..VaultConfig::default()
//! };
//! let store = VaultKv::connect(&config).await?;
//! let name = SecretName::new("database/password")?; // secret/data/predis/prod/database/password
//! let current = store.get(&name, &VersionSelector::Current).await?;
//! # drop(current); Ok(()) }
//! ```
//!
//! How names, versions, stages, tags, compare-and-set, idempotency and deletion map onto KV
//! v2 is told in [`store`]; values in [`value`]; login and renewal in [`auth`]. Errors keep
//! Vault's error text; none holds a value or a token.
#![warn(missing_docs)]

pub mod auth;
pub mod config;
mod error;
pub mod store;
pub mod transit;
pub mod value;

pub use auth::Session;
pub use config::{AuthConfig, VaultConfig};
pub use store::VaultKv;
pub use transit::TransitMasterKey;

use std::sync::Arc;

use sealbox::config::{ProviderConfig, ProviderRegistry};
use sealbox::keys::KeyProvider;
use sealbox::store::SecretStore;

/// The provider name in config files (`provider: vault`).
pub const PROVIDER: &str = "vault";

/// The key provider's name in a `master_key:` block (`provider: vault-transit`).
pub const TRANSIT_KEY_PROVIDER: &str = "vault-transit";

/// The connection settings of a `vault-transit` block and its Transit mount and key name:
/// `key` names the key, `mount` the Transit mount (default `transit`); the store-only
/// settings are refused.
fn transit_config(c: &ProviderConfig) -> sealbox::Result<(VaultConfig, String, String)> {
    let at = c.key_path();
    let mut block = match c.value() {
        serde_json::Value::Object(m) => m.clone(),
        _ => return Err(sealbox::Error::config(format!("{at}: expected a mapping"))),
    };
    for store_only in [
        "prefix",
        "kv_version",
        "max_versions",
        "delete_version_after",
    ] {
        if block.contains_key(store_only) {
            return Err(sealbox::Error::config(format!(
                "{at}.{store_only}: not a setting of the vault-transit key provider"
            )));
        }
    }
    let key = match block.remove("key") {
        Some(serde_json::Value::String(k)) if !k.is_empty() => k,
        _ => {
            return Err(sealbox::Error::config(format!(
                "{at}.key: required (the Transit key's name)"
            )));
        }
    };
    let mount = match block.remove("mount") {
        None => "transit".to_owned(),
        Some(serde_json::Value::String(m)) => m.trim_matches('/').to_owned(),
        Some(_) => {
            return Err(sealbox::Error::config(format!(
                "{at}.mount: expected a string"
            )));
        }
    };
    let mut config: VaultConfig =
        ProviderConfig::new(c.provider(), at, serde_json::Value::Object(block), None)
            .deserialize()?;
    resolve_paths(c, &mut config)?;
    config
        .validate()
        .map_err(|e| sealbox::Error::config(format!("{at}: {}", e.message())))?;
    let probe = VaultConfig {
        mount: Some(mount.clone()),
        ..VaultConfig::default()
    };
    if probe.mount() != mount || mount.is_empty() {
        return Err(sealbox::Error::config(format!(
            "{at}.mount: {mount:?} is not a mount path"
        )));
    }
    Ok((config, mount, key))
}

/// Resolves the config's file paths (top-level and inside `auth:`) against the config
/// file's directory.
fn resolve_paths(c: &ProviderConfig, config: &mut VaultConfig) -> sealbox::Result<()> {
    config.ca_file = c.path("ca_file")?;
    config.client_cert = c.path("client_cert")?;
    config.client_key = c.path("client_key")?;
    let resolve = |p: &mut Option<std::path::PathBuf>| {
        if let Some(path) = p.as_mut() {
            *path = c.resolve_path(path);
        }
    };
    match &mut config.auth {
        Some(AuthConfig::Token { token_file, .. }) => resolve(token_file),
        Some(AuthConfig::Approle { secret_id_file, .. }) => resolve(secret_id_file),
        Some(AuthConfig::Kubernetes { jwt_file, .. }) => resolve(jwt_file),
        None => {}
    }
    Ok(())
}

/// Registers the `vault` store provider, so `Sealbox::from_config` and the CLI find it:
///
/// ```
/// let mut registry = sealbox::config::ProviderRegistry::with_builtins();
/// sealbox_vault::register(&mut registry);
/// assert!(registry.stores.names().any(|n| n == "vault"));
/// assert!(registry.keys.names().any(|n| n == "vault-transit"));
/// ```
///
/// The key provider seals a local vault with a Transit key (a derived key; created when the
/// local vault is being created and the key does not exist yet):
///
/// ```yaml
/// secrets:
///   provider: local
///   config:
///     path: ./vault
///     master_key: {provider: vault-transit, address: https://vault.internal:8200,
///                  mount: transit, key: sealbox, auth: {method: approle, role_id: r,
///                  secret_id_file: /run/vault/secret-id}}
/// ```
///
/// The store's `config:` block is a [`VaultConfig`]; errors name the key path
/// (`stores.vault.config.address`). Relative paths (`ca_file`, `auth.token_file`, ...) are
/// read from the config file's directory.
pub fn register(registry: &mut ProviderRegistry) {
    registry
        .keys
        .register(TRANSIT_KEY_PROVIDER, |c: ProviderConfig| async move {
            let (config, mount, key) = transit_config(&c)?;
            let session = Session::connect(&config).await?;
            let key = TransitMasterKey::open(session, &mount, &key, c.may_create()).await?;
            Ok(Arc::new(key) as Arc<dyn KeyProvider>)
        });
    registry
        .stores
        .register(PROVIDER, |c: ProviderConfig| async move {
            let mut config: VaultConfig = c.deserialize()?;
            resolve_paths(&c, &mut config)?;
            config.validate().map_err(|e| {
                sealbox::Error::config(format!("{}: {}", c.key_path(), e.message()))
            })?;
            let store = VaultKv::connect(&config).await?;
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
