//! The store providers a config file can name through this library.
//!
//! The core's global registry brings the built-in stores it registers itself; this library
//! adds the integrated local vault (`provider: local`, `config: {path, key_file}`) when the
//! core does not register it, so C and C++ services can open the embedded default from YAML.

use std::path::Path;
use std::sync::Arc;

use sealbox::config::{ProviderConfig, ProviderRegistry};
use sealbox::keys::{KeyId, LocalKeyFile};
use sealbox::store::SecretStore;
use sealbox::store::local::LocalVault;
use sealbox::{Error, Result};

/// The registry `sb_client_open` loads configs with.
pub(crate) fn registry() -> ProviderRegistry {
    let mut registry = ProviderRegistry::global_snapshot();
    if !registry.stores.names().any(|n| n == "local") {
        registry
            .stores
            .register("local", |config: ProviderConfig| async move {
                local_from_config(&config)
                    .await
                    .map(|v| v as Arc<dyn SecretStore>)
            });
    }
    registry
}

/// Opens (creating if needed) the vault in `dir` with the master key file `key_file`
/// (created with a fresh key if absent).
pub(crate) async fn open_local(dir: &Path, key_file: &Path) -> Result<Arc<LocalVault>> {
    let key = LocalKeyFile::open_or_create(KeyId::new("local")?, key_file)?;
    Ok(Arc::new(
        LocalVault::open_or_create(dir, Arc::new(key)).await?,
    ))
}

async fn local_from_config(config: &ProviderConfig) -> Result<Arc<LocalVault>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // read through ProviderConfig::path, which resolves relative paths
    struct LocalConfig {
        path: String,
        key_file: String,
    }
    let _: LocalConfig = config.deserialize()?;
    let required = |key: &str| {
        Error::config(format!(
            "{}.{key}: required for the local vault",
            config.key_path()
        ))
    };
    let path = config.path("path")?.ok_or_else(|| required("path"))?;
    let key_file = config
        .path("key_file")?
        .ok_or_else(|| required("key_file"))?;
    open_local(&path, &key_file).await
}
