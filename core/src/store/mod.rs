//! The `SecretStore` trait and the built-in stores.
//!
//! One trait covers the integrated local vault, the memory, env and file stores, and every
//! provider crate (AWS, ...). What a store must do is written once, in the conformance suite
//! (`providers/conformance`), which every store runs.

mod types;

pub mod env;
pub mod file;
mod listing;
pub mod local;
pub mod memory;

pub use types::{
    Capabilities, DeleteOptions, Erasure, ListEntry, ListOptions, ListPage, PutOptions,
    SecretMetadata, SecretName, SecretRef, SecretVersion, Stage, VersionId, VersionInfo,
    VersionSelector,
};

use async_trait::async_trait;

use crate::error::{Error, ErrorKind, Result};
use crate::secret::Secret;

/// A place secrets live. Implementations are `Send + Sync` and cheap to share behind an `Arc`.
///
/// Errors: `NotFound` for a missing secret, version or stage; `Conflict` for a failed
/// compare-and-set; `Unsupported` for operations outside [`SecretStore::capabilities`];
/// `Unavailable` for transient remote failures. No error carries a value.
#[async_trait]
pub trait SecretStore: Send + Sync + std::fmt::Debug {
    /// A short kind name for logs, audit and errors (`"local"`, `"aws"`, ...).
    fn kind(&self) -> &'static str;

    /// What this store supports.
    fn capabilities(&self) -> Capabilities;

    /// Reads one version.
    async fn get(&self, name: &SecretName, selector: &VersionSelector) -> Result<SecretVersion>;

    /// Writes a new version (creating the secret if needed) and returns its metadata.
    /// The value is borrowed: the store copies it into its own (encrypted or remote) storage.
    async fn put(
        &self,
        name: &SecretName,
        value: &Secret,
        options: &PutOptions,
    ) -> Result<VersionInfo>;

    /// Metadata without values.
    async fn describe(&self, name: &SecretName) -> Result<SecretMetadata>;

    /// One page of names.
    async fn list(&self, options: &ListOptions) -> Result<ListPage>;

    /// Soft-deletes (or, with `force`, destroys) a secret.
    async fn delete(&self, name: &SecretName, options: &DeleteOptions) -> Result<()>;

    /// Undoes a soft delete within the recovery window. A secret that is not deleted is a
    /// `Conflict` ("not deleted; nothing to restore"), so a caller that restored the wrong name
    /// hears about it; a missing or purged one is `NotFound`.
    async fn restore(&self, name: &SecretName) -> Result<()>;

    /// Moves `stage` to `version` (or removes it from whichever version has it with `None`).
    /// Moving `CURRENT` moves the old current version to `PREVIOUS`.
    async fn set_stage(
        &self,
        name: &SecretName,
        stage: &Stage,
        version: Option<&VersionId>,
    ) -> Result<()>;

    /// Crypto-shreds a namespace: destroys its keys and deletes its secrets, for good.
    /// [`Erasure`] says what was destroyed and whether copies taken before are covered.
    /// Stores without their own key hierarchy answer `Unsupported` (the default).
    async fn erase_namespace(&self, namespace: &str) -> Result<Erasure> {
        Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "the {} store has no namespace keys to erase (namespace {namespace}); erase \
                 is for the local vault",
                self.kind()
            ),
        ))
    }

    /// The key an audit log configured with this store signs its chain with, held under the
    /// store's own key hierarchy (the local vault keeps one wrapped by its master key, see
    /// `LocalVault::audit_chain_key`). `None` (the default): the store keeps no such key, and
    /// the audit log uses a key file.
    async fn audit_chain_key(&self) -> Result<Option<Secret>> {
        Ok(None)
    }

    /// The same store opened afresh, for a process forked after this one was made (see
    /// [`Sealbox::reopen`](crate::Sealbox::reopen)): a child must not use what it inherited
    /// (wiped values and keys, the parent's connections and threads). The default refuses
    /// with `Unsupported`: such a store has to be made again in the child.
    async fn reopen(&self) -> Result<std::sync::Arc<dyn SecretStore>> {
        Err(crate::Error::new(
            crate::ErrorKind::Unsupported,
            format!(
                "the {} store cannot be reopened from what it keeps; build the client again in \
                 the child process",
                self.kind()
            ),
        ))
    }
}
