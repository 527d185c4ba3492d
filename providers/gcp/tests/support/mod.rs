//! Shared set-up: a local Secret Manager per test and stores pointed at it.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sealbox::store::SecretName;
use sealbox_gcp::{GcpConfig, GcpSecretManager};

// The local Secret Manager is a crate of its own (`providers/gcp/local`), so the binding
// tests and the benches run it too.
#[allow(unused_imports)]
pub use sealbox_gcp_local::{Fault, LocalSecretManager};

/// The project every local test uses.
pub const PROJECT: &str = "sealbox-test";

/// A config for the local server at `endpoint`: anonymous, short timeouts and backoff.
pub fn local_config(endpoint: &str) -> GcpConfig {
    GcpConfig {
        project: PROJECT.into(),
        endpoint: Some(endpoint.to_owned()),
        anonymous: true,
        attempt_timeout: Some(Duration::from_secs(2)),
        operation_timeout: Some(Duration::from_secs(8)),
        initial_backoff: Some(Duration::from_millis(20)),
        max_backoff: Some(Duration::from_millis(200)),
        ..GcpConfig::default()
    }
}

/// A store on `server` whose names live under `prefix` (none when empty).
pub async fn store(server: &LocalSecretManager, prefix: &str) -> GcpSecretManager {
    let config = GcpConfig {
        prefix: (!prefix.is_empty()).then(|| prefix.to_owned()),
        ..local_config(&server.endpoint())
    };
    GcpSecretManager::connect(&config).await.unwrap()
}

/// A unique path segment.
pub fn unique(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn name(s: &str) -> SecretName {
    SecretName::new(s).unwrap()
}

pub fn secret(bytes: &[u8]) -> sealbox::Secret {
    let mut b = bytes.to_vec();
    sealbox::Secret::from_mut_slice(&mut b).unwrap()
}
