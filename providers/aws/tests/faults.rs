//! Faults with a moto server this test owns: it is stopped mid-run, calls fail `Unavailable`
//! within the configured timeout, a cached `Sealbox` serves stale values within `max_stale`,
//! and both recover when moto is back.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sealbox::cache::CacheConfig;
use sealbox::store::{PutOptions, SecretStore, VersionSelector};
use sealbox::{ErrorKind, ExposeSecret, Sealbox, Secret};
use sealbox_aws::{AwsConfig, AwsSecretsManager};
use support::OwnMoto;

fn secret(bytes: &[u8]) -> Secret {
    let mut b = bytes.to_vec();
    Secret::from_mut_slice(&mut b).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_moto_fails_unavailable_in_time_and_the_store_recovers() {
    if support::endpoint("a_stopped_moto_fails_unavailable_in_time_and_the_store_recovers")
        .is_none()
    {
        return;
    }
    let mut moto = OwnMoto::start();
    let config = AwsConfig {
        max_attempts: Some(3),
        initial_backoff: Some(Duration::from_millis(20)),
        attempt_timeout: Some(Duration::from_millis(500)),
        operation_timeout: Some(Duration::from_secs(2)),
        ..support::moto_config(&moto.endpoint())
    };
    let sdk = support::sdk_config(&config).await;
    let store = AwsSecretsManager::from_sdk_config(&sdk, &config).unwrap();
    // A fresh moto answers its first requests slowly (lazy imports): seed through a client
    // with the default, generous timeouts so the tight ones below measure only the fault.
    let relaxed = support::moto_config(&moto.endpoint());
    let seeder =
        AwsSecretsManager::from_sdk_config(&support::sdk_config(&relaxed).await, &relaxed).unwrap();
    let n = support::name("faults/db");
    seeder
        .put(&n, &secret(b"before"), &PutOptions::default())
        .await
        .unwrap();
    let got = store.get(&n, &VersionSelector::Current).await.unwrap();
    assert_eq!(got.value.expose_secret(), b"before");

    moto.stop();
    let started = Instant::now();
    let err = store.get(&n, &VersionSelector::Current).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(
        started.elapsed() <= Duration::from_millis(2500),
        "failed after {:?}, beyond the 2s operation timeout",
        started.elapsed()
    );

    // moto keeps state in memory: the restarted server is empty, the client is the same.
    moto.restart();
    seeder
        .put(&n, &secret(b"after"), &PutOptions::default())
        .await
        .unwrap();
    let got = store.get(&n, &VersionSelector::Current).await.unwrap();
    assert_eq!(got.value.expose_secret(), b"after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_client_serves_stale_values_within_max_stale_while_moto_is_down() {
    if support::endpoint("a_cached_client_serves_stale_values_within_max_stale_while_moto_is_down")
        .is_none()
    {
        return;
    }
    let mut moto = OwnMoto::start();
    let relaxed = support::moto_config(&moto.endpoint());
    let seeder =
        AwsSecretsManager::from_sdk_config(&support::sdk_config(&relaxed).await, &relaxed).unwrap();
    let n = support::name("faults/cached");
    seeder
        .put(&n, &secret(b"before"), &PutOptions::default())
        .await
        .unwrap();

    let tight = AwsConfig {
        max_attempts: Some(2),
        initial_backoff: Some(Duration::from_millis(20)),
        attempt_timeout: Some(Duration::from_millis(400)),
        operation_timeout: Some(Duration::from_secs(1)),
        ..relaxed.clone()
    };
    let store =
        AwsSecretsManager::from_sdk_config(&support::sdk_config(&tight).await, &tight).unwrap();
    let ttl = Duration::from_millis(300);
    let max_stale = Duration::from_secs(3);
    let client = Sealbox::builder()
        .store(Arc::new(store))
        .cache(CacheConfig {
            ttl,
            max_stale,
            refresh_ahead: 1.0,
            ..CacheConfig::default()
        })
        .build()
        .unwrap();
    assert_eq!(
        client.get("faults/cached").await.unwrap().expose_secret(),
        b"before"
    );

    moto.stop();
    let down_at = Instant::now();
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    // Past the TTL, the store fails within its timeout and the cache serves the old value.
    let started = Instant::now();
    let stale = client.get("faults/cached").await.unwrap();
    assert_eq!(stale.expose_secret(), b"before");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        client.get("faults/cached").await.unwrap().expose_secret(),
        b"before"
    );

    // Past max_stale, the failure shows.
    let stale_until = ttl + max_stale;
    let since_down = down_at.elapsed();
    if since_down < stale_until {
        tokio::time::sleep(stale_until - since_down + Duration::from_millis(200)).await;
    }
    let err = client.get("faults/cached").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");

    // moto is back (empty: it keeps state in memory); the client recovers on its own.
    moto.restart();
    seeder
        .put(&n, &secret(b"after"), &PutOptions::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.get("faults/cached").await {
            Ok(h) if h.expose_secret() == b"after" => break,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "no recovery: {:?}",
                    other.map(|_| ())
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
