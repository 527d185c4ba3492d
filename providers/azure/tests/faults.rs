//! Faults between sealbox and Key Vault: throttling with Retry-After, 503 bursts, a server that
//! dies and comes back, slow answers, tokens that expire mid-run. Each against the local Key
//! Vault, through the official SDK and its retry policy as sealbox configures it.

mod support;

use std::time::{Duration, Instant};

use sealbox::store::{PutOptions, SecretStore, VersionSelector};
use sealbox::{ErrorKind, ExposeSecret};
use sealbox_azure::AzureKeyVault;
use support::{Fault, Local, name, secret};

async fn seeded(local: &Local) -> AzureKeyVault {
    let store = local.store("").await;
    store
        .put(&name("svc/token"), &secret(b"t-1"), &PutOptions::default())
        .await
        .unwrap();
    store
}

#[tokio::test]
async fn throttled_reads_wait_for_retry_after_and_then_pass() {
    let local = support::start().await;
    let store = seeded(&local).await;
    let before = local.server.requests();
    local.server.inject(
        Fault::Status {
            http: 429,
            retry_after: Some(1),
        },
        2,
    );
    let started = Instant::now();
    let got = store
        .get(&name("svc/token"), &VersionSelector::Current)
        .await
        .unwrap();
    assert_eq!(got.value.expose_secret(), b"t-1");
    // A read of CURRENT is one call (the latest version carries CURRENT), plus two throttled
    // attempts, each followed by the one second Key Vault asked for.
    assert_eq!(local.server.requests() - before, 3);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_burst_of_503s_longer_than_the_retry_budget_ends_as_unavailable_and_bounded() {
    let local = support::start().await;
    let store = seeded(&local).await;
    let before = local.server.requests();
    local.server.inject(
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
    assert!(err.message().contains("503"), "{err}");
    // max_attempts (3) for the one call, never more.
    assert_eq!(local.server.requests() - before, 3);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_server_that_dies_fails_reads_as_unavailable_and_serves_again_after_restart() {
    let mut local = support::start().await;
    let store = seeded(&local).await;
    local.server.stop();
    let err = store
        .get(&name("svc/token"), &VersionSelector::Current)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    local.server.restart().await;
    let got = store
        .get(&name("svc/token"), &VersionSelector::Current)
        .await
        .unwrap();
    assert_eq!(got.value.expose_secret(), b"t-1");
}

#[tokio::test]
async fn a_response_slower_than_the_attempt_timeout_ends_the_call_in_time() {
    let local = support::start().await;
    let config = sealbox_azure::AzureConfig {
        attempt_timeout: Some(Duration::from_millis(300)),
        max_attempts: Some(2),
        ..local.config()
    };
    let store = AzureKeyVault::connect(&config).await.unwrap();
    store
        .put(&name("slow"), &secret(b"v"), &PutOptions::default())
        .await
        .unwrap();
    local.server.inject(Fault::Delay(Duration::from_secs(3)), 2);
    let started = Instant::now();
    let err = store
        .get(&name("slow"), &VersionSelector::Current)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(
        started.elapsed() < Duration::from_millis(2000),
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
async fn a_token_that_expires_mid_run_is_replaced_not_reused() {
    let local = support::start().await;
    // Tokens live two seconds: the vault refuses them after that. (The SDK refreshes a token
    // this close to its expiry before each use, so it asks for one per call here.)
    local.server.set_token_lifetime(Duration::from_secs(2));
    let store = seeded(&local).await;
    let tokens = |l: &Local| {
        l.server
            .log()
            .iter()
            .filter(|(_, p)| p.ends_with("/oauth2/v2.0/token"))
            .count()
    };
    let first = tokens(&local);
    assert!(first >= 1, "{:?}", local.server.log());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let got = store
        .get(&name("svc/token"), &VersionSelector::Current)
        .await
        .unwrap();
    assert_eq!(got.value.expose_secret(), b"t-1");
    assert!(tokens(&local) > first, "{:?}", local.server.log());
}
