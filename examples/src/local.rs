//! The local vault operations the quickstart shows: creation with a new master key file, master
//! key rotation, verification and namespace erasure.
//!
//! INTERIM: the local vault (`sealbox::store::local`) is being built on another branch; until it
//! is merged these fail with `Unsupported` instead of pretending.

use std::path::Path;
use std::sync::Arc;

use sealbox::store::memory::MemoryStore;
use sealbox::{Error, ErrorKind, Result};

/// The vault type the quickstart works on.
pub type Vault = MemoryStore;

fn not_built() -> Error {
    Error::new(
        ErrorKind::Unsupported,
        "the local vault is not in this build yet",
    )
}

/// Creates a master key file at `key_path` and a vault at `vault_path`.
pub async fn create(vault_path: &Path, key_path: &Path) -> Result<Arc<Vault>> {
    let _ = (vault_path, key_path);
    Err(not_built())
}

/// Rotates the master key; returns a one-line summary.
pub async fn rotate_master(vault: &Vault) -> Result<String> {
    let _ = vault;
    Err(not_built())
}

/// Decrypts every version; returns a one-line summary.
pub async fn verify(vault: &Vault) -> Result<String> {
    let _ = vault;
    Err(not_built())
}

/// Erases `namespace`; returns a one-line summary.
pub async fn erase_namespace(vault: &Vault, namespace: &str) -> Result<String> {
    let _ = (vault, namespace);
    Err(not_built())
}
