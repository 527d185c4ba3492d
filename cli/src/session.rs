//! Opening the store a command works on, from `--vault`/`--key-file` or `--config`.
//!
//! With `--vault`/`--key-file` every command works on the local vault directly. With `--config`
//! the data commands go through the `Sealbox` client the config describes (policy, audit), and
//! the vault commands (restore, stage, keys, namespace, verify) open the config's local store
//! themselves and record what they did in the client's audit log.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sealbox::audit::{Action, AuditEvent, Resource};
use sealbox::config::{Config, LOCAL_MASTER_KEY_ID, ProviderConfig, ProviderRegistry};
use sealbox::keys::{KeyId, KeyProvider, LocalKeyFile};
use sealbox::store::local::{LocalVault, LocalVaultOptions};
use sealbox::store::memory::MemoryStore;
use sealbox::store::{Erasure, SecretStore};
use sealbox::{Error, ErrorKind, Result, Sealbox};

use crate::client_store::ClientStore;

/// Where the vault, its key and the config are (from flags or the environment).
#[derive(Debug, Clone, Default)]
pub struct Locations {
    /// `--vault` / `SEALBOX_VAULT`.
    pub vault: Option<PathBuf>,
    /// `--key-file` / `SEALBOX_KEY_FILE`.
    pub key_file: Option<PathBuf>,
    /// `--config` / `SEALBOX_CONFIG`.
    pub config: Option<PathBuf>,
}

impl Locations {
    /// The vault and key file paths, or a config error saying which flag is missing.
    pub fn vault_and_key(&self) -> Result<(&Path, &Path)> {
        let vault = self.vault.as_deref().ok_or_else(|| {
            Error::config("no vault given: pass --vault PATH or set SEALBOX_VAULT")
        })?;
        let key = self.key_file.as_deref().ok_or_else(|| {
            Error::config("no master key file given: pass --key-file PATH or set SEALBOX_KEY_FILE")
        })?;
        Ok((vault, key))
    }
}

/// Opens the master key file at `path` (never creates one: a typo must not mint a new key).
pub fn open_key_file(path: &Path) -> Result<Arc<LocalKeyFile>> {
    if !path.exists() {
        return Err(Error::config(format!(
            "master key file {} does not exist; check --key-file, or run `sealbox init` \
             to create a new vault and key",
            path.display()
        )));
    }
    Ok(Arc::new(LocalKeyFile::open(
        KeyId::new(LOCAL_MASTER_KEY_ID)?,
        path,
    )?))
}

/// The local vault and its master key provider that `locations` name (`--vault` and
/// `--key-file`, or the config's one local store), without opening the vault.
pub async fn vault_location(locations: &Locations) -> Result<(PathBuf, Arc<dyn KeyProvider>)> {
    match &locations.config {
        Some(config) => {
            crate::providers::register()?;
            local_store_in_config(config).await
        }
        None => {
            let (vault, key) = locations.vault_and_key()?;
            Ok((
                vault.to_path_buf(),
                open_key_file(key)? as Arc<dyn KeyProvider>,
            ))
        }
    }
}

/// Opens an existing vault (never creates one).
async fn open_vault(vault_path: &Path, key_path: &Path) -> Result<LocalVault> {
    open_vault_with(vault_path, open_key_file(key_path)?).await
}

async fn open_vault_with(vault_path: &Path, key: Arc<dyn KeyProvider>) -> Result<LocalVault> {
    LocalVault::open(vault_path, key).await.map_err(|e| {
        // Only a missing file is "no vault": a vault whose keys are gone (a retired master
        // version, a destroyed namespace key) says so itself.
        let missing = std::fs::symlink_metadata(sealbox::store::local::database_path(vault_path))
            .is_err_and(|m| m.kind() == std::io::ErrorKind::NotFound);
        if e.kind() == ErrorKind::NotFound && missing {
            Error::not_found(format!(
                "no vault at {}; check --vault, or create one with `sealbox init`",
                vault_path.display()
            ))
        } else {
            e
        }
    })
}

/// The vault and master key of the one `local` store in the config at `path`: its
/// `master_key:` block (any registered key provider; never creating key material), or its
/// `key_file:`.
async fn local_store_in_config(path: &Path) -> Result<(PathBuf, Arc<dyn KeyProvider>)> {
    local_store_of_config(path)
        .await
        .map(|(_, vault, key)| (vault, key))
}

/// The id, vault and master key of the one `local` store in the config at `path`.
async fn local_store_of_config(path: &Path) -> Result<(String, PathBuf, Arc<dyn KeyProvider>)> {
    let config = Config::from_path(path)?;
    let base = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .map(Path::to_path_buf);
    let locals: Vec<_> = config
        .store_configs()
        .into_iter()
        .filter(|(_, _, s)| s.provider == "local")
        .collect();
    let (id, at, store) = match locals.as_slice() {
        [one] => one,
        [] => {
            return Err(Error::config(format!(
                "{} has no `local` store; vault commands need one (or --vault and --key-file)",
                path.display()
            )));
        }
        several => {
            let ids: Vec<&str> = several.iter().map(|(id, _, _)| id.as_str()).collect();
            return Err(Error::config(format!(
                "{} has several local stores ({}); use --vault and --key-file to pick one",
                path.display(),
                ids.join(", ")
            )));
        }
    };
    let pc = ProviderConfig::new("local", format!("{at}.config"), store.config.clone(), base);
    let vault = pc
        .path("path")?
        .ok_or_else(|| Error::config(format!("{at}.config.path: required")))?;
    let from_block = pc
        .clone()
        .with_create(false)
        .with_key_providers(ProviderRegistry::global_snapshot().keys)
        .key_provider("master_key")
        .await?;
    if let Some(key) = from_block {
        return Ok((id.clone(), vault, key));
    }
    let key_file = pc.path("key_file")?.ok_or_else(|| {
        Error::new(
            ErrorKind::Unsupported,
            format!(
                "store {id} gets its master key from key_env or a flat passphrase setting; vault \
                 commands through --config need a master_key: block or key_file (or use \
                 --vault and --key-file)"
            ),
        )
    })?;
    Ok((
        id.clone(),
        vault,
        open_key_file(&key_file)? as Arc<dyn KeyProvider>,
    ))
}

/// Through `--config`, checks the policy before `sealbox backup restore`: restoring replaces
/// every secret of the config's local store, so it needs `admin` on all of it (`*`), as
/// `backup create` does. The vault in place may not open (an older copy or a damaged file is
/// why one restores), so the check runs on a client built from the config with that store
/// opened even when it is an older copy (it keeps the audit chain key the log is signed with),
/// or, when it does not open at all, stood in for by an empty memory store: the config's
/// principal, routes and policy decide, and a denial is recorded in its audit log like any
/// other.
pub async fn authorize_restore(config: &Path) -> Result<()> {
    crate::providers::register()?;
    let (id, vault_path, key) = local_store_of_config(config).await?;
    let options = LocalVaultOptions {
        allow_rollback: true,
        ..LocalVaultOptions::default()
    };
    let in_place = LocalVault::open_with(&vault_path, key, options).await.ok();
    let mut registry = ProviderRegistry::global_snapshot();
    registry.stores.register("local", move |_: ProviderConfig| {
        let in_place = in_place.clone();
        async move {
            Ok(match in_place {
                Some(vault) => Arc::new(vault) as Arc<dyn SecretStore>,
                None => Arc::new(MemoryStore::new()) as Arc<dyn SecretStore>,
            })
        }
    });
    let client = Sealbox::from_config_with(config, &registry).await?;
    let decision = client.authorize_key_operation(&format!("sb://{id}/*"));
    client.flush_audit().await?;
    decision
}

/// An open store for one command.
#[derive(Debug)]
pub struct Session {
    store: Arc<dyn SecretStore>,
    /// The local vault behind `--vault`, opened at once.
    vault: Option<LocalVault>,
    /// The config file, whose local store vault commands open on demand.
    config: Option<PathBuf>,
    /// The client when opened from `--config`: it audits vault commands, and its audit log is
    /// flushed before exit.
    client: Option<Sealbox>,
}

impl Session {
    /// Opens what `locations` points at.
    pub async fn open(locations: &Locations) -> Result<Session> {
        if let Some(config) = &locations.config {
            if locations.vault.is_some() || locations.key_file.is_some() {
                return Err(Error::config(
                    "--config and --vault/--key-file (or SEALBOX_CONFIG and SEALBOX_VAULT/\
                     SEALBOX_KEY_FILE) both given; use one or the other",
                ));
            }
            crate::providers::register()?;
            let client = Sealbox::from_config(config).await?;
            return Ok(Session {
                store: Arc::new(ClientStore::new(client.clone())),
                vault: None,
                config: Some(config.clone()),
                client: Some(client),
            });
        }
        let (vault_path, key_path) = locations.vault_and_key()?;
        let vault = open_vault(vault_path, key_path).await?;
        Ok(Session {
            store: Arc::new(vault.clone()),
            vault: Some(vault),
            config: None,
            client: None,
        })
    }

    /// A client for rotation: the config's own, or one over the `--vault` vault (no policy,
    /// no audit log, no cache), with the config's `rotation:` schedule when there is one.
    pub async fn rotation_client(
        &self,
    ) -> Result<(Sealbox, Option<sealbox::config::rotation::RotationConfig>)> {
        if let (Some(client), Some(config)) = (&self.client, &self.config) {
            let schedule = sealbox::config::Config::from_path(config)?.rotation;
            return Ok((client.clone(), schedule));
        }
        let vault = self.vault().await?;
        let client = Sealbox::builder()
            .store(Arc::new(vault))
            .no_cache()
            .build()?;
        Ok((client, None))
    }

    /// Writes everything the command left queued (audit events) before the process exits.
    pub async fn finish(&self) -> Result<()> {
        match &self.client {
            Some(client) => client.flush_audit().await,
            None => Ok(()),
        }
    }

    /// The store data commands work on.
    pub fn store(&self) -> &dyn SecretStore {
        self.store.as_ref()
    }

    /// The local vault: the one behind `--vault`, or the config's local store.
    pub async fn vault(&self) -> Result<LocalVault> {
        if let Some(v) = &self.vault {
            return Ok(v.clone());
        }
        let config = self
            .config
            .as_deref()
            .ok_or_else(|| Error::internal("a session without a vault or a config"))?;
        let (vault_path, key) = local_store_in_config(config).await?;
        open_vault_with(&vault_path, key).await
    }

    /// Erases a namespace of the local vault. Through `--config` the client does it, so the
    /// library records the erasure in the config's audit log; `--vault` sessions have no log.
    pub async fn erase_namespace(&self, namespace: &str) -> Result<Erasure> {
        match (&self.client, &self.config) {
            (Some(client), Some(config)) => {
                let (id, _, _) = local_store_of_config(config).await?;
                client
                    .erase_namespace(&format!("sb://{id}/{namespace}"))
                    .await
            }
            _ => self.vault().await?.erase_namespace(namespace).await,
        }
    }

    /// Through `--config`, checks the policy before a key operation on the local vault:
    /// `admin` on `covers`, the names the keys protect (`*`, `NAMESPACE/*` or a secret's
    /// name). `--vault` sessions have no policy: whoever holds the key file holds the keys.
    pub async fn authorize_keys(&self, covers: &str) -> Result<()> {
        match (&self.client, &self.config) {
            (Some(client), Some(config)) => {
                let (id, _, _) = local_store_of_config(config).await?;
                client.authorize_key_operation(&format!("sb://{id}/{covers}"))
            }
            _ => Ok(()),
        }
    }

    /// Records a vault command in the client's audit log (`--config` sessions; `--vault`
    /// sessions have no audit log). `resource` names what was acted on, never a value.
    pub fn audit<T>(&self, action: Action, resource: &str, result: &Result<T>) -> Result<()> {
        let Some(client) = &self.client else {
            return Ok(());
        };
        let event = AuditEvent::access(
            action,
            client.principal().clone(),
            Resource::named(resource),
        );
        let event = match result {
            Ok(_) => event,
            Err(e) => event.failed(e.kind().as_str()),
        };
        client.record_event(event)
    }
}
