//! Opening the store a command works on, from `--vault`/`--key-file` or `--config`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sealbox::keys::{KeyId, LocalKeyFile};
use sealbox::store::SecretStore;
use sealbox::store::local::LocalVault;
use sealbox::{Error, ErrorKind, Result, Sealbox};

use crate::client_store::ClientStore;

/// The id the local master key is known by in the vault's key records (the same id the
/// library's examples and config use for a local key file).
pub const MASTER_KEY_ID: &str = "local";

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
        KeyId::new(MASTER_KEY_ID)?,
        path,
    )?))
}

/// An open store for one command.
#[derive(Debug)]
pub struct Session {
    store: Arc<dyn SecretStore>,
    /// The local vault, for key operations and verification (`--vault` sessions only).
    vault: Option<LocalVault>,
    /// The client when opened from `--config`: its audit log is flushed before exit.
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
            let client = Sealbox::from_config(config).await?;
            return Ok(Session {
                store: Arc::new(ClientStore::new(client.clone())),
                vault: None,
                client: Some(client),
            });
        }
        let (vault_path, key_path) = locations.vault_and_key()?;
        let key = open_key_file(key_path)?;
        let vault = LocalVault::open(vault_path, key).await.map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                Error::not_found(format!(
                    "no vault at {}; check --vault, or create one with `sealbox init`",
                    vault_path.display()
                ))
            } else {
                e
            }
        })?;
        Ok(Session {
            store: Arc::new(vault.clone()),
            vault: Some(vault),
            client: None,
        })
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

    /// The local vault, or an error naming the operation for `--config` sessions.
    pub fn vault(&self, operation: &str) -> Result<&LocalVault> {
        self.vault.as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::Unsupported,
                format!("{operation} works on a local vault: use --vault and --key-file"),
            )
        })
    }
}
