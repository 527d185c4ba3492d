//! Faults with a moto server this test owns: it is stopped mid-run, calls fail `Unavailable`
//! within the configured timeout, and the same store recovers when moto is back.

mod support;

use std::time::{Duration, Instant};

use sealbox::store::{PutOptions, SecretStore, VersionSelector};
use sealbox::{ErrorKind, ExposeSecret, Secret};
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
