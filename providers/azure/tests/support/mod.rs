//! Shared set-up: a local Key Vault per test and stores pointed at it through the official
//! SDK, authenticating with a client secret against the server's own token endpoint and
//! trusting the server's CA through `ca_file`.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sealbox::store::SecretName;
use sealbox_azure::{AzureConfig, AzureKeyVault, CredentialConfig};

// The local Key Vault is a crate of its own (`providers/azure/local`), so tests outside Rust
// run it too (`local-key-vault`).
#[allow(unused_imports)]
pub use sealbox_azure_local::{Fault, LocalKeyVault};

/// The service principal every local test signs in as.
pub const CLIENT_ID: &str = "5b1e4f2a-0c3d-4e6f-8a9b-0c1d2e3f4a5b";
pub const CLIENT_SECRET: &str = "local~client~secret~Zx9";

/// A started server with the test principal registered, and a directory for the CA and the
/// client-secret files the config points at.
pub struct Local {
    pub server: LocalKeyVault,
    pub dir: tempfile::TempDir,
}

pub async fn start() -> Local {
    let server = LocalKeyVault::start().await;
    server.add_client(CLIENT_ID, CLIENT_SECRET);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), server.ca_pem()).unwrap();
    std::fs::write(dir.path().join("client-secret"), CLIENT_SECRET).unwrap();
    Local { server, dir }
}

impl Local {
    /// A config for this server: client-secret credential, its CA trusted, short timeouts.
    pub fn config(&self) -> AzureConfig {
        AzureConfig {
            vault_url: self.server.vault_url(),
            credential: Some(CredentialConfig::ClientSecret {
                tenant_id: self.server.tenant(),
                client_id: CLIENT_ID.into(),
                client_secret_file: Some(self.dir.path().join("client-secret")),
                client_secret_env: None,
                authority_host: Some(self.server.authority_host()),
            }),
            ca_file: Some(self.dir.path().join("ca.pem")),
            verify_challenge_resource: Some(false),
            attempt_timeout: Some(Duration::from_secs(2)),
            operation_timeout: Some(Duration::from_secs(8)),
            initial_backoff: Some(Duration::from_millis(20)),
            max_backoff: Some(Duration::from_millis(200)),
            ..AzureConfig::default()
        }
    }

    /// A store on this server whose names live under `prefix` (none when empty).
    pub async fn store(&self, prefix: &str) -> AzureKeyVault {
        let config = AzureConfig {
            prefix: (!prefix.is_empty()).then(|| prefix.to_owned()),
            ..self.config()
        };
        AzureKeyVault::connect(&config).await.unwrap()
    }
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
