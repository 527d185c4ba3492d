//! Store providers this binding is built with, registered in the global config registry at
//! import so that `Sealbox.open(config)` knows them.
//!
//! The core's registry has `memory` built in; `aws` comes from `sealbox-aws`; `local` (the
//! integrated vault) is registered here only when the core did not register it already, so a
//! core that lists it itself wins.

use std::sync::Arc;

use sealbox::config::{ProviderConfig, ProviderRegistry};
use sealbox::keys::{KeyId, LocalKeyFile};
use sealbox::store::SecretStore;
use sealbox::store::local::LocalVault;

/// Registers the providers missing from the global registry.
pub(crate) fn register_missing() {
    let mut registry = ProviderRegistry::global()
        .write()
        .unwrap_or_else(|p| p.into_inner());
    if !registry.stores.names().any(|n| n == "aws") {
        sealbox_aws::register(&mut registry);
    }
    if !registry.stores.names().any(|n| n == "local") {
        registry
            .stores
            .register("local", |c: ProviderConfig| async move {
                let store: Arc<dyn SecretStore> = Arc::new(open_local(&c).await?);
                Ok(store)
            });
    }
}

/// `local` provider: `config: {path: ./vault, key_file: ./master.key}` (relative paths resolve
/// against the config file's directory; the key file is created with mode 0600 if missing).
async fn open_local(c: &ProviderConfig) -> sealbox::Result<LocalVault> {
    let unknown = c.value().as_object().and_then(|map| {
        map.keys()
            .find(|k| !matches!(k.as_str(), "path" | "key_file"))
    });
    if let Some(unknown) = unknown {
        return Err(sealbox::Error::config(format!(
            "{}.{unknown}: unknown key (expected path, key_file)",
            c.key_path()
        )));
    }
    let required = |key: &str| {
        c.path(key)?.ok_or_else(|| {
            sealbox::Error::config(format!(
                "{}.{key}: required by the local provider",
                c.key_path()
            ))
        })
    };
    let path = required("path")?;
    let key_file = required("key_file")?;
    let key = LocalKeyFile::open_or_create(KeyId::new("local")?, key_file)?;
    LocalVault::open_or_create(path, Arc::new(key)).await
}
