//! Every whole config in the repository's Markdown that names `provider: azure` parses into the
//! provider's settings and passes their validation; the rest of each config loads with the
//! built-in stores. The stores are not connected: the documented configs name vault URLs
//! and credentials that exist only in production (`from_config.rs` connects one to the local
//! Key Vault).

#[path = "../../../core/tests/support/markdown_configs.rs"]
mod markdown_configs;

use std::sync::Arc;

use sealbox::config::{ProviderConfig, ProviderRegistry};
use sealbox::store::SecretStore;
use sealbox::store::memory::MemoryStore;
use sealbox_azure::AzureConfig;

#[tokio::test]
async fn every_markdown_azure_config_parses_and_validates() {
    let mut registry = ProviderRegistry::with_builtins();
    registry
        .stores
        .register("azure", |c: ProviderConfig| async move {
            let config: AzureConfig = c.deserialize()?;
            config.validate()?;
            Ok(Arc::new(MemoryStore::new()) as Arc<dyn SecretStore>)
        });
    let mut azure = 0;
    for block in &markdown_configs::all_blocks() {
        if !markdown_configs::providers(block)
            .iter()
            .any(|p| p == "azure")
        {
            continue;
        }
        azure += 1;
        if let Err(e) = markdown_configs::load(block, &registry).await {
            panic!("{block}: does not load: {e}\n{}", block.yaml);
        }
    }
    assert!(
        azure > 0,
        "expected the documented `provider: azure` configs"
    );
}
