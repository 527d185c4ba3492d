//! Faults between sealbox and Secret Manager: throttling, 5xx bursts, slow and truncated
//! responses, a server that dies and comes back, data damaged at rest. Each against the local
//! server, through the official client and its retry policy as sealbox configures it.

mod support;

use std::time::{Duration, Instant};

use sealbox::store::{PutOptions, SecretStore, VersionSelector};
use sealbox::{ErrorKind, ExposeSecret};
use sealbox_gcp::GcpSecretManager;
use support::{Fault, LocalSecretManager, PROJECT, name, secret};

async fn seeded(server: &LocalSecretManager) -> GcpSecretManager {
    let store = support::store(server, "").await;
    store
        .put(&name("svc/token"), &secret(b"t-1"), &PutOptions::default())
        .await
        .unwrap();
    store
}

#[tokio::test]
async fn throttled_reads_are_retried_until_they_pass() {
    let server = LocalSecretManager::start().await;
    let store = seeded(&server).await;
    let before = server.requests();
    server.inject(
        Fault::Status {
            http: 429,
            retry_after: Some(1),
        },
        2,
    );
    let got = store
        .get(&name("svc/token"), &VersionSelector::Current)
        .await
        .unwrap();
    assert_eq!(got.value.expose_secret(), b"t-1");
    // One call per read by stage (an access by alias), plus the two throttled attempts.
    assert_eq!(server.requests() - before, 3);
}

#[tokio::test]
async fn a_burst_of_503s_longer_than_the_retry_budget_ends_as_unavailable_and_bounded() {
    let server = LocalSecretManager::start().await;
    let store = seeded(&server).await;
    let before = server.requests();
    server.inject(
        Fault::Status {
            http: 503,
            retry_after: None,
        },
        100,
    );
    let started = Instant::now();
    let err = store
        .get(&name("svc/token"), &VersionSelector::Current)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.provider_request_id().is_some(), "{err:?}");
    // max_attempts (3) for the one call of a read by stage, never more.
    assert_eq!(server.requests() - before, 3);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// The client's policy does not retry an attempt that timed out (it may have been applied):
/// the call ends as `Unavailable` at the attempt timeout instead of hanging, and the next one
/// works.
#[tokio::test]
async fn a_response_slower_than_the_attempt_timeout_ends_the_call_in_time() {
    let server = LocalSecretManager::start().await;
    let config = sealbox_gcp::GcpConfig {
        attempt_timeout: Some(Duration::from_millis(300)),
        ..support::local_config(&server.endpoint())
    };
    let store = GcpSecretManager::connect(&config).await.unwrap();
    store
        .put(&name("slow"), &secret(b"v"), &PutOptions::default())
        .await
        .unwrap();
    server.inject(Fault::Delay(Duration::from_secs(3)), 1);
    let started = Instant::now();
    let err = store
        .get(&name("slow"), &VersionSelector::Current)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.message().contains("timed out"), "{err}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    let got = store
        .get(&name("slow"), &VersionSelector::Current)
        .await
        .unwrap();
    assert_eq!(got.value.expose_secret(), b"v");
}

#[tokio::test]
async fn a_truncated_response_is_never_taken_for_a_value() {
    let server = LocalSecretManager::start().await;
    let store = seeded(&server).await;
    for _ in 0..2 {
        server.inject(Fault::Truncate, 1);
        match store
            .get(&name("svc/token"), &VersionSelector::Current)
            .await
        {
            Ok(got) => assert_eq!(got.value.expose_secret(), b"t-1"),
            Err(e) => assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}"),
        }
    }
    let got = store
        .get(&name("svc/token"), &VersionSelector::Current)
        .await
        .unwrap();
    assert_eq!(got.value.expose_secret(), b"t-1");
}

#[tokio::test]
async fn a_server_that_dies_is_unavailable_and_its_data_reads_again_after_restart() {
    let mut server = LocalSecretManager::start().await;
    let store = seeded(&server).await;
    server.stop();
    let started = Instant::now();
    let err = store
        .get(&name("svc/token"), &VersionSelector::Current)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    server.restart().await;
    let got = store
        .get(&name("svc/token"), &VersionSelector::Current)
        .await
        .unwrap();
    assert_eq!(got.value.expose_secret(), b"t-1");
}

#[tokio::test]
async fn a_value_damaged_at_rest_fails_its_crc32c_check() {
    let server = LocalSecretManager::start().await;
    let store = seeded(&server).await;
    server.corrupt(PROJECT, "svc__token", 1);
    let err = store
        .get(&name("svc/token"), &VersionSelector::Current)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(!err.to_string().contains("t-1"));
}

#[tokio::test]
async fn a_write_whose_version_cannot_be_added_changes_nothing() {
    let server = LocalSecretManager::start().await;
    let store = seeded(&server).await;
    // GetSecret passes, AddSecretVersion (a POST, not retried: it could add twice) fails.
    server.inject(Fault::Delay(Duration::ZERO), 1);
    server.inject(
        Fault::Status {
            http: 503,
            retry_after: None,
        },
        1,
    );
    let err = store
        .put(&name("svc/token"), &secret(b"t-2"), &PutOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let got = store
        .get(&name("svc/token"), &VersionSelector::Current)
        .await
        .unwrap();
    assert_eq!(got.value.expose_secret(), b"t-1");
}
