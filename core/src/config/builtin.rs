//! The built-in store providers a config file can name: `local` (the integrated vault, the
//! embedded default), `env` and `file`. (`memory` registers itself in the registry module.)
//!
//! ```yaml
//! stores:
//!   main:
//!     provider: local
//!     config: {path: ./vault, master_key: {provider: key_file, path: ./master.key}}
//!     # older flat form, still read: key_file: PATH, or key_env: VAR, or passphrase_file + params_file
//!   csi:
//!     provider: file
//!     config: {dir: /mnt/secrets-store, permissions: refuse}
//!   ci:
//!     provider: env
//!     config: {map: {predis/prod/database/password: DB_PASSWORD}, prefixes: {"app/": "APP_"}}
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{ProviderConfig, ProviderRegistry};
use crate::error::{Error, Result};
use crate::keys::{EnvKey, KeyId, KeyProvider, LocalKeyFile, PassphraseKey};
use crate::store::SecretStore;
use crate::store::env::EnvStore;
use crate::store::file::{FileStore, PermissionCheck};
use crate::store::local::{LocalVault, LocalVaultOptions};

/// The key id every front end (CLI, bindings, config) gives the local vault's master key, so
/// that a vault created by one opens in the others.
pub const LOCAL_MASTER_KEY_ID: &str = "local";

/// Registers `local`, `env` and `file` in `registry`.
pub fn register_builtin_stores(registry: &mut ProviderRegistry) {
    registry
        .stores
        .register("local", |c: ProviderConfig| async move {
            local_store(&c).await.map(|s| s as Arc<dyn SecretStore>)
        });
    registry
        .stores
        .register("env", |c: ProviderConfig| async move {
            env_store(&c).map(|s| Arc::new(s) as Arc<dyn SecretStore>)
        });
    registry
        .stores
        .register("file", |c: ProviderConfig| async move {
            file_store(&c).map(|s| Arc::new(s) as Arc<dyn SecretStore>)
        });
}

/// Opens the local vault at `path` (a directory or a vault file), creating it and the master
/// key file `key_file` (a sealbox key file holding one random 256-bit version, 0600; see
/// [`LocalKeyFile`]) when they do not exist yet. This is what
/// `Sealbox.local(...)` in Python and `sb_client_open_local` in C call.
pub async fn open_local_vault(path: &Path, key_file: &Path) -> Result<Arc<LocalVault>> {
    let key = LocalKeyFile::open_or_create(KeyId::new(LOCAL_MASTER_KEY_ID)?, key_file)?;
    Ok(Arc::new(
        LocalVault::open_or_create(path, Arc::new(key)).await?,
    ))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // paths and secrets are read through ProviderConfig so errors name the key
struct LocalConfig {
    path: String,
    master_key: Option<serde_json::Value>,
    key_file: Option<String>,
    key_env: Option<String>,
    passphrase: Option<String>,
    passphrase_file: Option<String>,
    params_file: Option<String>,
    #[serde(default = "yes")]
    create: bool,
    namespace_depth: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    busy_timeout: Option<Duration>,
}

fn yes() -> bool {
    true
}

async fn local_store(c: &ProviderConfig) -> Result<Arc<LocalVault>> {
    let parsed: LocalConfig = c.deserialize()?;
    let at = c.key_path();
    let path = c
        .path("path")?
        .ok_or_else(|| Error::config(format!("{at}.path: required")))?;
    let db = crate::store::local::database_path(&path);
    let new_vault = parsed.create && !db.exists();
    let key = local_key_provider(c, parsed.create, new_vault).await?;
    let mut options = LocalVaultOptions::default();
    if let Some(depth) = parsed.namespace_depth {
        if depth == 0 {
            return Err(Error::config(format!(
                "{at}.namespace_depth: must be at least 1"
            )));
        }
        options.namespace_depth = depth;
    }
    if let Some(t) = parsed.busy_timeout {
        options.busy_timeout = t;
    }
    let vault = if db.exists() {
        LocalVault::open_with(&path, key, options).await?
    } else if parsed.create {
        LocalVault::create_with(&path, key, options).await?
    } else {
        return Err(Error::config(format!(
            "{at}.path: no vault at {} (create one with `sealbox init` or set create: true)",
            db.display()
        )));
    };
    Ok(Arc::new(vault))
}

/// A `master_key:` block (any registered key provider), or exactly one of the older flat
/// settings: `key_file`, `key_env`, or a passphrase (`passphrase`/`passphrase_file` with
/// `params_file`).
///
/// A block may create key material (a key file, passphrase parameters, a key in an HSM) only
/// together with a new vault: for a vault that exists, a key that cannot be found is an error,
/// never a fresh key that would then fail as the wrong one. The flat settings keep their
/// older rule (`create` alone decides).
async fn local_key_provider(
    c: &ProviderConfig,
    create: bool,
    new_vault: bool,
) -> Result<Arc<dyn KeyProvider>> {
    let at = c.key_path();
    const FLAT: [&str; 5] = [
        "key_file",
        "key_env",
        "passphrase",
        "passphrase_file",
        "params_file",
    ];
    if c.value().get("master_key").is_some_and(|v| !v.is_null()) {
        if let Some(flat) = FLAT.iter().find(|k| c.value().get(**k).is_some()) {
            return Err(Error::config(format!(
                "{at}: set the master key either in master_key or with {flat}, not both \
                 (master_key: {{provider: key_file, path: ...}} replaces key_file: ...)"
            )));
        }
        return c
            .clone()
            .with_create(new_vault)
            .key_provider("master_key")
            .await?
            .ok_or_else(|| Error::internal("master_key vanished"));
    }
    let id = KeyId::new(LOCAL_MASTER_KEY_ID)?;
    let key_file = c.path("key_file")?;
    let key_env = c.string("key_env")?;
    let passphrase = c.secret("passphrase")?;
    let chosen = [key_file.is_some(), key_env.is_some(), passphrase.is_some()];
    if chosen.iter().filter(|x| **x).count() != 1 {
        return Err(Error::config(format!(
            "{at}: set exactly one master key source: a master_key block ({{provider: \
             key_file, path: ./master.key}}), or key_file, key_env, or \
             passphrase / passphrase_file (with params_file); key providers: {}",
            c.key_provider_names().join(", ")
        )));
    }
    if let Some(path) = key_file {
        let key = if create {
            LocalKeyFile::open_or_create(id, &path)?
        } else {
            LocalKeyFile::open(id, &path)?
        };
        return Ok(Arc::new(key));
    }
    if let Some(var) = key_env {
        return Ok(Arc::new(EnvKey::from_env(id, &var)?));
    }
    let passphrase = passphrase.ok_or_else(|| Error::internal("passphrase vanished"))?;
    let params = c
        .path("params_file")?
        .ok_or_else(|| Error::config(format!("{at}.params_file: required with a passphrase")))?;
    let key = if params.exists() || !create {
        PassphraseKey::open_file(id, &passphrase, &params)?
    } else {
        PassphraseKey::create_file(id, &passphrase, Default::default(), &params)?
    };
    Ok(Arc::new(key))
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EnvConfig {
    #[serde(default)]
    map: BTreeMap<String, String>,
    #[serde(default)]
    prefixes: BTreeMap<String, String>,
}

fn env_store(c: &ProviderConfig) -> Result<EnvStore> {
    let parsed: EnvConfig = if c.value().is_null() {
        EnvConfig::default()
    } else {
        c.deserialize()?
    };
    let at = c.key_path();
    let mut store = EnvStore::new();
    for (name, var) in &parsed.map {
        store = store
            .map(name, var)
            .map_err(|e| Error::config(format!("{at}.map.{name}: {}", e.message())))?;
    }
    for (name_prefix, var_prefix) in &parsed.prefixes {
        store = store
            .prefix_for(name_prefix, var_prefix)
            .map_err(|e| Error::config(format!("{at}.prefixes.{name_prefix}: {}", e.message())))?;
    }
    Ok(store)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // paths are read through ProviderConfig so relative paths resolve
struct FileConfig {
    dir: Option<String>,
    file: Option<String>,
    name: Option<String>,
    #[serde(default)]
    permissions: Permissions,
    max_value_len: Option<usize>,
}

#[derive(serde::Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Permissions {
    Allow,
    #[default]
    Warn,
    Refuse,
}

fn file_store(c: &ProviderConfig) -> Result<FileStore> {
    let parsed: FileConfig = c.deserialize()?;
    let at = c.key_path();
    let store = match (c.path("dir")?, c.path("file")?, parsed.name) {
        (Some(dir), None, None) => FileStore::dir(dir)?,
        (None, Some(file), Some(name)) => FileStore::file(&name, file)
            .map_err(|e| Error::config(format!("{at}.name: {}", e.message())))?,
        (None, Some(_), None) => {
            return Err(Error::config(format!("{at}.name: required with file")));
        }
        _ => {
            return Err(Error::config(format!(
                "{at}: set either dir (a directory such as a CSI mount) or file with name"
            )));
        }
    };
    let check = match parsed.permissions {
        Permissions::Allow => PermissionCheck::Allow,
        Permissions::Warn => PermissionCheck::Warn,
        Permissions::Refuse => PermissionCheck::Refuse,
    };
    let store = store.permissions(check);
    Ok(match parsed.max_value_len {
        Some(n) => store.max_value_len(n),
        None => store,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::{ErrorKind, ExposeSecret, Sealbox, Secret};

    fn yaml(dir: &Path, body: &str) -> std::path::PathBuf {
        let p = dir.join("sealbox.yaml");
        std::fs::write(&p, body).unwrap();
        p
    }

    #[tokio::test]
    async fn local_provider_opens_the_same_vault_as_open_local_vault() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = yaml(
            dir.path(),
            "secrets:\n  provider: local\n  config: {path: ./vault, key_file: ./master.key}\n",
        );
        let client = Sealbox::from_config(&cfg).await.unwrap();
        let mut raw = *b"hunter2-generated";
        client
            .put(
                "predis/prod/api/auth-token",
                &Secret::from_mut_slice(&mut raw).unwrap(),
            )
            .await
            .unwrap();
        drop(client);
        let vault = open_local_vault(&dir.path().join("vault"), &dir.path().join("master.key"))
            .await
            .unwrap();
        let name = "predis/prod/api/auth-token".parse().unwrap();
        let got = vault.get(&name, &Default::default()).await.unwrap();
        assert_eq!(got.value.expose_secret(), b"hunter2-generated");
    }

    #[tokio::test]
    async fn local_provider_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "secrets:\n  provider: local\n  config: {key_file: ./k}\n",
                "secrets.config: missing field `path`",
            ),
            (
                "secrets:\n  provider: local\n  config: {path: ./v}\n",
                "master key source",
            ),
            (
                "secrets:\n  provider: local\n  config: {path: ./v, key_file: ./k, create: false}\n",
                "reading key file",
            ),
            (
                "secrets:\n  provider: local\n  config: {path: ./v, key_file: ./k, colour: red}\n",
                "colour",
            ),
            (
                "secrets:\n  provider: file\n  config: {file: ./x}\n",
                "secrets.config.name",
            ),
            (
                "secrets:\n  provider: env\n  config: {map: {\"../x\": A}}\n",
                "secrets.config.map",
            ),
        ];
        for (body, needle) in cases {
            let cfg = yaml(dir.path(), body);
            let err = Sealbox::from_config(&cfg).await.unwrap_err();
            assert!(
                matches!(
                    err.kind(),
                    ErrorKind::Config | ErrorKind::NotFound | ErrorKind::Io
                ),
                "{body}: {err}"
            );
            assert!(err.to_string().contains(needle), "{body}: {err}");
        }
    }

    #[tokio::test]
    async fn env_and_file_providers_serve_values() {
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("db_password");
        std::fs::write(&secret_file, "from-file").unwrap();
        let body = format!(
            "stores:\n  f:\n    provider: file\n    config: {{file: {}, name: predis/prod/database/password, permissions: allow}}\n",
            secret_file.display()
        );
        let config = Config::from_yaml_str(&body).unwrap();
        assert_eq!(config.store_configs().len(), 1);
        let client = Sealbox::from_config(&yaml(dir.path(), &body))
            .await
            .unwrap();
        let h = client.get("predis/prod/database/password").await.unwrap();
        assert_eq!(h.expose_secret(), b"from-file");
    }
}
