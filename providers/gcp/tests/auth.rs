//! Credentials other than anonymous, against the local Secret Manager with authentication
//! required: a service-account key file (the Rust auth library signs its own JWTs, which the
//! server checks against the key's public half), impersonation through the IAM Credentials
//! `generateAccessToken` call (served by the local server at `iam_endpoint`), and application
//! default credentials found through `GOOGLE_APPLICATION_CREDENTIALS` (in a child process, so
//! the variable is set before any thread exists).

mod support;

use std::path::Path;

use rsa::RsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use sealbox::store::{PutOptions, SecretStore, VersionSelector};
use sealbox::{ErrorKind, ExposeSecret};
use sealbox_gcp::{GcpConfig, GcpSecretManager};
use support::{LocalSecretManager, name, secret};

const SOURCE: &str = "sealbox-ci@sealbox-test.iam.gserviceaccount.com";
const TARGET: &str = "sealbox-reader@sealbox-test.iam.gserviceaccount.com";

/// A fresh RSA key and a service-account key file for `email` in `dir`.
fn service_account(dir: &Path, email: &str) -> (rsa::RsaPublicKey, std::path::PathBuf) {
    let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap();
    let json = serde_json::json!({
        "type": "service_account",
        "project_id": support::PROJECT,
        "private_key_id": "local-test-key-1",
        "private_key": pem.as_str(),
        "client_email": email,
        "client_id": "1234567890",
        "token_uri": "https://oauth2.googleapis.com/token",
    });
    let path = dir.join(format!("{}.json", email.split('@').next().unwrap()));
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    (key.to_public_key(), path)
}

fn authed_config(server: &LocalSecretManager) -> GcpConfig {
    GcpConfig {
        anonymous: false,
        ..support::local_config(&server.endpoint())
    }
}

async fn round_trip(store: &GcpSecretManager) -> sealbox::Result<()> {
    store
        .put(
            &name("auth/probe"),
            &secret(b"authed"),
            &PutOptions::default(),
        )
        .await?;
    let got = store
        .get(&name("auth/probe"), &VersionSelector::Current)
        .await?;
    assert_eq!(got.value.expose_secret(), b"authed");
    Ok(())
}

fn principals(server: &LocalSecretManager) -> Vec<Option<String>> {
    server
        .log()
        .into_iter()
        .filter(|(_, path, _)| path.contains("/secrets"))
        .map(|(_, _, p)| p)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_key_file_authenticates_every_call() {
    let dir = tempfile::tempdir().unwrap();
    let server = LocalSecretManager::start().await;
    server.require_auth();
    let (public, file) = service_account(dir.path(), SOURCE);
    server.add_service_account(SOURCE, public);

    let anonymous = GcpSecretManager::connect(&support::local_config(&server.endpoint()))
        .await
        .unwrap();
    let err = round_trip(&anonymous).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");

    let config = GcpConfig {
        credentials_file: Some(file),
        ..authed_config(&server)
    };
    let store = GcpSecretManager::connect(&config).await.unwrap();
    round_trip(&store).await.unwrap();
    let seen = principals(&server);
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|p| p.as_deref() == Some(SOURCE)),
        "{seen:?}"
    );

    // A key the server does not know (another key for the same account) is refused.
    let other_dir = dir.path().join("other");
    std::fs::create_dir(&other_dir).unwrap();
    let (_, other) = service_account(&other_dir, SOURCE);
    let config = GcpConfig {
        credentials_file: Some(other),
        ..authed_config(&server)
    };
    let err = round_trip(&GcpSecretManager::connect(&config).await.unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");
}

/// The service-account key kept in the embedded vault, named by `credentials:
/// sb://vault/...`: no key file on disk when the client is built, and every call is the
/// account's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_key_kept_in_the_local_vault_authenticates_every_call() {
    let dir = tempfile::tempdir().unwrap();
    let server = LocalSecretManager::start().await;
    server.require_auth();
    let (public, file) = service_account(dir.path(), SOURCE);
    server.add_service_account(SOURCE, public);
    let vault = format!(
        "  vault:\n    provider: local\n    config: {{path: {0}/vault, master_key: \
         {{provider: key_file, path: {0}/master.key}}}}\n",
        dir.path().display()
    );
    let mut registry = sealbox::config::ProviderRegistry::with_builtins();
    sealbox_gcp::register(&mut registry);
    let only_vault = format!("default_store: vault\nstores:\n{vault}");
    let keeper = sealbox::config::Config::from_yaml_str(&only_vault)
        .unwrap()
        .build(&registry)
        .await
        .unwrap();
    let key = std::fs::read(&file).unwrap();
    keeper
        .put(
            "gcp/sa-key",
            &sealbox::Secret::from_mut_slice(&mut key.clone()).unwrap(),
        )
        .await
        .unwrap();
    drop(keeper);
    std::fs::remove_file(&file).unwrap();

    let both = format!(
        "default_store: gcp\nstores:\n{vault}  gcp:\n    provider: gcp\n    config: \
         {{project: {}, endpoint: {}, credentials: sb://vault/gcp/sa-key}}\n",
        support::PROJECT,
        server.endpoint()
    );
    let client = sealbox::config::Config::from_yaml_str(&both)
        .unwrap()
        .build(&registry)
        .await
        .unwrap();
    client
        .put("sb://gcp/auth/probe", &secret(b"authed"))
        .await
        .unwrap();
    let got = client.get("sb://gcp/auth/probe").await.unwrap();
    assert_eq!(got.expose_secret(), b"authed");
    let seen = principals(&server);
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|p| p.as_deref() == Some(SOURCE)),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impersonation_acts_as_the_target_account_and_needs_the_grant() {
    let dir = tempfile::tempdir().unwrap();
    let server = LocalSecretManager::start().await;
    server.require_auth();
    let (public, file) = service_account(dir.path(), SOURCE);
    server.add_service_account(SOURCE, public);
    let config = GcpConfig {
        credentials_file: Some(file),
        impersonate_service_account: Some(TARGET.into()),
        iam_endpoint: Some(server.endpoint()),
        ..authed_config(&server)
    };

    // Without the grant the token exchange is refused.
    let store = GcpSecretManager::connect(&config).await.unwrap();
    let err = round_trip(&store).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");

    server.allow_impersonation(SOURCE, TARGET);
    let store = GcpSecretManager::connect(&config).await.unwrap();
    round_trip(&store).await.unwrap();
    let log = server.log();
    assert!(
        log.iter()
            .any(|(m, p, _)| m == "POST" && p.ends_with(&format!("{TARGET}:generateAccessToken"))),
        "{log:?}"
    );
    let seen = principals(&server);
    assert!(
        seen.iter().all(|p| p.as_deref() == Some(TARGET)),
        "{seen:?}"
    );
}

/// Runs only as the child of the test below, with `GOOGLE_APPLICATION_CREDENTIALS` set.
#[tokio::test]
#[ignore = "the child half of application_default_credentials_come_from_the_environment"]
async fn adc_child() {
    let Ok(endpoint) = std::env::var("SEALBOX_TEST_GCP_ADC_ENDPOINT") else {
        return;
    };
    let config = GcpConfig {
        anonymous: false,
        ..support::local_config(&endpoint)
    };
    round_trip(&GcpSecretManager::connect(&config).await.unwrap())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_default_credentials_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let server = LocalSecretManager::start().await;
    server.require_auth();
    let (public, file) = service_account(dir.path(), SOURCE);
    server.add_service_account(SOURCE, public);
    let out = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "adc_child", "--ignored", "--nocapture"])
        .env("GOOGLE_APPLICATION_CREDENTIALS", &file)
        .env("SEALBOX_TEST_GCP_ADC_ENDPOINT", server.endpoint())
        .env_remove("GOOGLE_CLOUD_QUOTA_PROJECT")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "child failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
    let seen = principals(&server);
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|p| p.as_deref() == Some(SOURCE)),
        "{seen:?}"
    );
}
