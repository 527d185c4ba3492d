//! The conformance suite, whole, against the local Secret Manager over loopback HTTP, through
//! Google's official Rust client.

mod support;

use sealbox::store::SecretStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_conformance_suite_passes_against_the_local_secret_manager() {
    let server = support::LocalSecretManager::start().await;
    let store = support::store(&server, "").await;
    sealbox_conformance::run_all(&store, store.capabilities(), "conformance/gcp")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_passes_through_a_store_prefix_too() {
    let server = support::LocalSecretManager::start().await;
    let store = support::store(&server, "tenant/a_b.c").await;
    sealbox_conformance::run_all(&store, store.capabilities(), "conformance")
        .await
        .unwrap();
}
