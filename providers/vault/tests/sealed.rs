//! Vault sealed mid-run (`vault operator seal`, as an operator does in an incident): the store
//! answers `Unavailable` with Vault's "Vault is sealed"; a cached `Sealbox` serves the value it
//! had within `max_stale` and then shows the failure; once Vault is unsealed the same client
//! recovers by itself.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sealbox::cache::CacheConfig;
use sealbox::store::{PutOptions, SecretStore, VersionSelector};
use sealbox::{ErrorKind, ExposeSecret, Sealbox};
use support::{VaultServer, name, secret};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_vault_is_unavailable_and_the_cache_serves_stale_within_max_stale() {
    let Some(server) = VaultServer::start("sealed mid-run") else {
        return;
    };
    // Dev mode prints its one unseal key in its log.
    let started = Instant::now();
    let unseal_key = loop {
        let key = server
            .log_text()
            .lines()
            .find_map(|l| l.trim().strip_prefix("Unseal Key: ").map(str::to_owned));
        match key {
            Some(k) => break k,
            None if started.elapsed() < Duration::from_secs(15) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            None => panic!(
                "no unseal key in the dev server's log:\n{}",
                server.log_text()
            ),
        }
    };
    let store = server.store("app").await;
    store
        .put(&name("svc/key"), &secret(b"before"), &PutOptions::default())
        .await
        .unwrap();
    let ttl = Duration::from_millis(300);
    let max_stale = Duration::from_secs(2);
    let client = Sealbox::builder()
        .store(Arc::new(store.clone()))
        .cache(CacheConfig {
            ttl,
            max_stale,
            refresh_ahead: 1.0,
            ..CacheConfig::default()
        })
        .build()
        .unwrap();
    assert_eq!(
        client.get("svc/key").await.unwrap().expose_secret(),
        b"before"
    );

    server.must(&["operator", "seal"]);
    let sealed_at = Instant::now();
    let err = store
        .get(&name("svc/key"), &VersionSelector::Current)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.message().contains("Vault is sealed"), "{err}");

    // Past the TTL: the refetch fails, the cache serves the value it had.
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let started = Instant::now();
    assert_eq!(
        client.get("svc/key").await.unwrap().expose_secret(),
        b"before"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // Past max_stale, the failure shows.
    let stale_until = ttl + max_stale + Duration::from_millis(300);
    if let Some(left) = stale_until.checked_sub(sealed_at.elapsed()) {
        tokio::time::sleep(left).await;
    }
    let err = client.get("svc/key").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");

    // Unsealed: the same client and token work again.
    server.must(&["operator", "unseal", &unseal_key]);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match client.get("svc/key").await {
            Ok(h) if h.expose_secret() == b"before" => break,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "no recovery after unseal: {:?}",
                    other.map(|_| ())
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
