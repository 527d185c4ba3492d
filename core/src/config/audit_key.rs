//! Which key an audit log built from a config signs its chain with.
//!
//! In order: the `audit.key_file` the config names; a `PATH.key` already beside the log (a log
//! started with a key file keeps it); the chain key the default store keeps under its own key
//! hierarchy (the local vault: a key wrapped by its master key, so a KMS or PKCS#11 master
//! works too, and no key lies beside the log); otherwise `PATH.key`, created. Every key file
//! is refused when it is a symlink, another user's, or accessible by group or others.

use std::sync::Arc;

use super::{Config, ProviderConfig, ProviderRegistry};
use crate::audit::{AuditConfig, AuditKey, default_key_path};
use crate::error::Result;
use crate::store::SecretStore;

impl Config {
    /// The id of the store that names no route covers: `default_store`, or the only store.
    pub(crate) fn default_store_id(&self) -> Option<String> {
        match (&self.default_store, self.store_configs().as_slice()) {
            (Some(d), _) => Some(d.clone()),
            (None, [(only, _, _)]) => Some(only.clone()),
            (None, _) => None,
        }
    }

    /// The `audit.key_file` the config names, relative paths resolved against its directory.
    pub fn audit_key_file(&self) -> Option<std::path::PathBuf> {
        let a = self.audit.as_ref()?;
        a.key_file.as_deref().map(|p| self.path(p))
    }

    /// The audit chain key the default store keeps under its key hierarchy (for a local
    /// vault, its wrapped audit key, created on first use), `None` when that store keeps none.
    /// `sealbox audit verify --config` uses it for a log without a key file beside it.
    pub async fn store_audit_key(&self, registry: &ProviderRegistry) -> Result<Option<AuditKey>> {
        let Some(id) = self.default_store_id() else {
            return Ok(None);
        };
        let stores = self.store_configs();
        let Some((_, at, store)) = stores.iter().find(|(i, _, _)| *i == id) else {
            return Ok(None);
        };
        let pc = ProviderConfig::new(
            store.provider.clone(),
            format!("{at}.config"),
            store.config.clone(),
            self.base_dir.clone(),
        )
        .with_key_providers(registry.keys.clone());
        let store = registry.stores.build(pc).await?;
        key_of(store.as_ref()).await
    }
}

/// The key from `store`'s hierarchy for the audit section `audit` (paths resolved), when the
/// section names no key file and none lies beside the log from before.
pub(crate) async fn from_store(
    audit: &AuditConfig,
    store: Option<&Arc<dyn SecretStore>>,
) -> Result<Option<AuditKey>> {
    let (None, Some(path), Some(store)) = (&audit.key_file, &audit.path, store) else {
        return Ok(None);
    };
    // symlink_metadata: a link planted there is still "a key file", refused when read.
    if std::fs::symlink_metadata(default_key_path(path)).is_ok() {
        return Ok(None);
    }
    key_of(store.as_ref()).await
}

async fn key_of(store: &dyn SecretStore) -> Result<Option<AuditKey>> {
    match store.audit_chain_key().await? {
        Some(secret) => AuditKey::new(&secret).map(Some),
        None => Ok(None),
    }
}
