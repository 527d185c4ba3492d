//! The conformance suite, whole, against the local Key Vault over loopback HTTPS, through
//! Microsoft's official Rust SDK with a client-secret credential.

mod support;

use sealbox::store::SecretStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_conformance_suite_passes_against_the_local_key_vault() {
    let local = support::start().await;
    let store = local.store("").await;
    sealbox_conformance::run_all(&store, store.capabilities(), "conformance/azure")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_passes_through_a_store_prefix_too() {
    let local = support::start().await;
    let store = local.store("tenant/a_b.c").await;
    sealbox_conformance::run_all(&store, store.capabilities(), "conformance")
        .await
        .unwrap();
}
