//! The conformance suite against the real GCP Secret Manager, when a project is given:
//!
//! ```sh
//! SEALBOX_TEST_GCP_PROJECT=my-test-project \
//! SEALBOX_TEST_GCP_CREDENTIALS_FILE=/path/to/sa.json \   # optional; default: ADC
//! SEALBOX_TEST_GCP_LOCATION=europe-west1 \               # optional: regional secrets too
//!   cargo test -p sealbox-gcp --test real_gcp -- --nocapture
//! ```
//!
//! The identity needs `roles/secretmanager.admin` on the project (the suite creates, stages,
//! deletes and destroys). Every secret lives under `sealbox-conformance/<run id>/` and the
//! suite force-deletes what it made. Without `SEALBOX_TEST_GCP_PROJECT` the test says it skips
//! (also in CI: this machine has no GCP credentials or network).

use sealbox::store::SecretStore;
use sealbox_gcp::{GcpConfig, GcpSecretManager};

fn config() -> Option<GcpConfig> {
    let project = std::env::var("SEALBOX_TEST_GCP_PROJECT").ok()?;
    Some(GcpConfig {
        project,
        credentials_file: std::env::var_os("SEALBOX_TEST_GCP_CREDENTIALS_FILE").map(Into::into),
        ..GcpConfig::default()
    })
}

fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("sealbox-conformance/{}-{nanos:x}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_conformance_suite_passes_against_real_gcp() {
    let Some(config) = config() else {
        eprintln!("SKIPPED: SEALBOX_TEST_GCP_PROJECT is not set (no real GCP project to test)");
        return;
    };
    let store = GcpSecretManager::connect(&config).await.unwrap();
    sealbox_conformance::run_all(&store, store.capabilities(), &run_id())
        .await
        .unwrap();
    if let Ok(location) = std::env::var("SEALBOX_TEST_GCP_LOCATION") {
        let regional = GcpConfig {
            location: Some(location),
            ..config
        };
        let store = GcpSecretManager::connect(&regional).await.unwrap();
        sealbox_conformance::run_all(&store, store.capabilities(), &run_id())
            .await
            .unwrap();
    }
}
