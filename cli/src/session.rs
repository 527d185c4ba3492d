//! Opening the store a command works on, from `--vault`/`--key-file` or `--config`.

use std::path::PathBuf;
use std::sync::Arc;

use sealbox::store::SecretStore;
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
    pub fn vault_and_key(&self) -> Result<(&PathBuf, &PathBuf)> {
        let vault = self.vault.as_ref().ok_or_else(|| {
            Error::config("no vault given: pass --vault PATH or set SEALBOX_VAULT")
        })?;
        let key = self.key_file.as_ref().ok_or_else(|| {
            Error::config("no master key file given: pass --key-file PATH or set SEALBOX_KEY_FILE")
        })?;
        Ok((vault, key))
    }
}

/// An open store for one command.
#[derive(Debug)]
pub struct Session {
    store: Arc<dyn SecretStore>,
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
                client: Some(client),
            });
        }
        let _ = locations.vault_and_key()?;
        Err(Error::new(
            ErrorKind::Unsupported,
            "the local vault is not in this build yet",
        ))
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
}
