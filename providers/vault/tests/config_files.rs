//! Every whole config in the repository's Markdown that names `provider: vault` parses into the
//! provider's settings and passes their validation; the rest of each config loads with the
//! built-in stores. The stores are not connected: the documented configs name addresses
//! and credentials that exist only in production (`from_config.rs` connects one to a real dev
//! server). Configs whose local vault is sealed by `vault-transit` are parsed only: building
//! their key provider needs a Transit key (`transit.rs` builds one from YAML).

#[path = "../../../core/tests/support/markdown_configs.rs"]
mod markdown_configs;

use std::sync::Arc;

use sealbox::config::{ProviderConfig, ProviderRegistry};
use sealbox::store::SecretStore;
use sealbox::store::memory::MemoryStore;
use sealbox_vault::VaultConfig;

#[tokio::test]
async fn every_markdown_vault_config_parses_and_validates() {
    let mut registry = ProviderRegistry::with_builtins();
    registry
        .stores
        .register("vault", |c: ProviderConfig| async move {
            let config: VaultConfig = c.deserialize()?;
            config.validate()?;
            Ok(Arc::new(MemoryStore::new()) as Arc<dyn SecretStore>)
        });
    let (mut vault, mut transit) = (0, 0);
    for block in &markdown_configs::all_blocks() {
        let names = markdown_configs::providers(block);
        if names.iter().any(|p| p == "vault-transit") {
            transit += 1;
            if let (_dir, Err(e)) = markdown_configs::parse(block) {
                panic!("{block}: does not parse: {e}\n{}", block.yaml);
            }
            continue;
        }
        if !names.iter().any(|p| p == "vault") {
            continue;
        }
        vault += 1;
        if let Err(e) = markdown_configs::load(block, &registry).await {
            panic!("{block}: does not load: {e}\n{}", block.yaml);
        }
    }
    assert!(
        vault > 0,
        "expected the documented `provider: vault` configs"
    );
    assert!(
        transit > 0,
        "expected the documented `vault-transit` config"
    );
}
