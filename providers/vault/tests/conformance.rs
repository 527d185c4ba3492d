//! The conformance suite, whole, against a real Vault 1.21.0 dev server (KV v2 at `secret/`),
//! through vaultrs. The suite's race writes 26 versions of one secret and reads them all
//! back, more than the 10 versions Vault keeps by default, so the stores set `max_versions`.

mod support;

use sealbox::store::SecretStore;
use sealbox_vault::VaultKv;
use support::VaultServer;

async fn versioned_store(server: &VaultServer, prefix: &str) -> VaultKv {
    let mut config = server.config(prefix);
    config.max_versions = Some(64);
    VaultKv::connect(&config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_conformance_suite_passes_against_a_real_vault() {
    let Some(server) = VaultServer::start("conformance") else {
        return;
    };
    let store = versioned_store(&server, "").await;
    sealbox_conformance::run_all(&store, store.capabilities(), "conformance/vault")
        .await
        .unwrap();
    // A second run through a store prefix, on the same server.
    let store = versioned_store(&server, "tenant/a_b.c").await;
    sealbox_conformance::run_all(&store, store.capabilities(), "conformance")
        .await
        .unwrap();
}
