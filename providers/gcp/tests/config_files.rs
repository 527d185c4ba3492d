//! Every whole config in the repository's Markdown that names `provider: gcp` parses into the
//! provider's settings and passes their validation; the rest of each config loads with the
//! built-in stores. The stores are not connected: the documented configs name credential files
//! and projects that exist only in production (`from_config.rs` connects one to the local
//! Secret Manager).

#[path = "../../../core/tests/support/markdown_configs.rs"]
mod markdown_configs;

use std::sync::Arc;

use sealbox::config::{ProviderConfig, ProviderRegistry};
use sealbox::store::SecretStore;
use sealbox::store::memory::MemoryStore;
use sealbox_gcp::GcpConfig;

#[tokio::test]
async fn every_markdown_gcp_config_parses_and_validates() {
    let mut registry = ProviderRegistry::with_builtins();
    registry
        .stores
        .register("gcp", |c: ProviderConfig| async move {
            let config: GcpConfig = c.deserialize()?;
            config.validate()?;
            Ok(Arc::new(MemoryStore::new()) as Arc<dyn SecretStore>)
        });
    let mut gcp = 0;
    for block in &markdown_configs::all_blocks() {
        if !markdown_configs::providers(block)
            .iter()
            .any(|p| p == "gcp")
        {
            continue;
        }
        gcp += 1;
        if let Err(e) = markdown_configs::load(block, &registry).await {
            panic!("{block}: does not load: {e}\n{}", block.yaml);
        }
    }
    assert!(gcp > 0, "expected the documented `provider: gcp` configs");
}
