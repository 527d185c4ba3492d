//! The memory store passes the whole conformance suite.

use sealbox::store::SecretStore;
use sealbox::store::memory::MemoryStore;

#[tokio::test]
async fn memory_store_passes_the_conformance_suite() {
    let store = MemoryStore::new();
    sealbox_conformance::run_all(&store, store.capabilities(), "conformance/memory")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_passes_on_a_multi_threaded_runtime() {
    let store = MemoryStore::new();
    sealbox_conformance::run_all(&store, store.capabilities(), "mt")
        .await
        .unwrap();
}
