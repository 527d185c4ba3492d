//! The local vault operations the quickstart shows: creation with a new master key file, master
//! key rotation, verification and namespace erasure.

use std::path::Path;
use std::sync::Arc;

use sealbox::config::LOCAL_MASTER_KEY_ID;
use sealbox::keys::{KeyId, LocalKeyFile};
use sealbox::store::local::LocalVault;
use sealbox::{Error, ErrorKind, Result};

/// The vault type the quickstart works on.
pub type Vault = LocalVault;

/// Creates a master key file at `key_path` (a random 256-bit key, mode 0600) and a new vault at
/// `vault_path` sealed under it. An existing vault is refused rather than reused, so every run
/// starts from the same state.
pub async fn create(vault_path: &Path, key_path: &Path) -> Result<Arc<Vault>> {
    if vault_path.exists() {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "{} already exists; give the quickstart an empty directory",
                vault_path.display()
            ),
        ));
    }
    let key = Arc::new(LocalKeyFile::open_or_create(
        KeyId::new(LOCAL_MASTER_KEY_ID)?,
        key_path,
    )?);
    Ok(Arc::new(LocalVault::create(vault_path, key).await?))
}

/// Rotates the master key; returns a one-line summary.
pub async fn rotate_master(vault: &Vault) -> Result<String> {
    let version = vault.rotate_master().await?;
    Ok(format!(
        "master key rotated to {version}; every namespace key was rewrapped under it"
    ))
}

/// Decrypts and authenticates every version; returns a one-line summary, or the first failure.
pub async fn verify(vault: &Vault) -> Result<String> {
    let report = vault.verify().await?;
    if let Some(first) = report.failures.first() {
        return Err(Error::new(
            first.kind,
            format!(
                "{} item(s) failed verification, first {}: {}",
                report.failures.len(),
                first.name,
                first.message
            ),
        ));
    }
    Ok(format!(
        "ok: {} secrets, {} versions decrypted and authenticated",
        report.secrets, report.versions_ok
    ))
}

/// Erases `namespace` (destroys its keys); returns a one-line summary.
pub async fn erase_namespace(vault: &Vault, namespace: &str) -> Result<String> {
    let erasure = vault.erase_namespace(namespace).await?;
    Ok(erasure.summary())
}
