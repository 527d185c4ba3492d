//! Cache behaviour against a store double that counts calls, fails on demand and delays.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sealbox::cache::CacheConfig;
use sealbox::store::memory::MemoryStore;
use sealbox::store::{
    Capabilities, DeleteOptions, ListOptions, ListPage, PutOptions, SecretMetadata, SecretName,
    SecretStore, SecretVersion, Stage, VersionId, VersionInfo, VersionSelector,
};
use sealbox::{Error, ErrorKind, ExposeSecret, Result, Sealbox, Secret};

/// A memory store that counts `get`/`describe` calls, fails while `failing` is set and sleeps
/// `delay_ms` in every read.
#[derive(Debug, Default)]
struct Double {
    inner: MemoryStore,
    gets: AtomicUsize,
    describes: AtomicUsize,
    failing: AtomicBool,
    delay_ms: AtomicU64,
    cheap_describe: AtomicBool,
}

impl Double {
    async fn pause(&self) -> Result<()> {
        let ms = self.delay_ms.load(Ordering::SeqCst);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if self.failing.load(Ordering::SeqCst) {
            return Err(Error::new(
                ErrorKind::Unavailable,
                "store double is failing",
            ));
        }
        Ok(())
    }
    fn gets(&self) -> usize {
        self.gets.load(Ordering::SeqCst)
    }
    async fn set(&self, name: &str, value: &str) {
        let mut raw = value.as_bytes().to_vec();
        self.inner
            .put(
                &SecretName::new(name).unwrap(),
                &Secret::from_mut_slice(&mut raw).unwrap(),
                &PutOptions::default(),
            )
            .await
            .unwrap();
    }
}

#[async_trait]
impl SecretStore for Double {
    fn kind(&self) -> &'static str {
        "double"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            cheap_describe: self.cheap_describe.load(Ordering::SeqCst),
            ..Capabilities::FULL
        }
    }
    async fn get(&self, name: &SecretName, selector: &VersionSelector) -> Result<SecretVersion> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.pause().await?;
        self.inner.get(name, selector).await
    }
    async fn put(&self, name: &SecretName, value: &Secret, o: &PutOptions) -> Result<VersionInfo> {
        self.inner.put(name, value, o).await
    }
    async fn describe(&self, name: &SecretName) -> Result<SecretMetadata> {
        self.describes.fetch_add(1, Ordering::SeqCst);
        self.pause().await?;
        self.inner.describe(name).await
    }
    async fn list(&self, o: &ListOptions) -> Result<ListPage> {
        self.inner.list(o).await
    }
    async fn delete(&self, name: &SecretName, o: &DeleteOptions) -> Result<()> {
        self.inner.delete(name, o).await
    }
    async fn restore(&self, name: &SecretName) -> Result<()> {
        self.inner.restore(name).await
    }
    async fn set_stage(&self, n: &SecretName, s: &Stage, v: Option<&VersionId>) -> Result<()> {
        self.inner.set_stage(n, s, v).await
    }
}

fn config(ttl_ms: u64) -> CacheConfig {
    CacheConfig {
        ttl: Duration::from_millis(ttl_ms),
        refresh_ahead: 1.0,
        version_check: false,
        ..CacheConfig::default()
    }
}

async fn setup(cache: CacheConfig) -> (Arc<Double>, Sealbox) {
    let store = Arc::new(Double::default());
    store.set("app/db/password", "v1").await;
    let client = Sealbox::builder()
        .store(store.clone())
        .cache(cache)
        .build()
        .unwrap();
    (store, client)
}

async fn value(client: &Sealbox, name: &str) -> Result<String> {
    let h = client.get(name).await?;
    Ok(String::from_utf8(h.expose_secret().to_vec()).unwrap())
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_are_served_until_the_ttl_expires() {
    let (store, client) = setup(config(1000)).await;
    assert_eq!(value(&client, "app/db/password").await.unwrap(), "v1");
    assert_eq!(value(&client, "app/db/password").await.unwrap(), "v1");
    assert_eq!(store.gets(), 1);
    store.set("app/db/password", "v2").await;
    assert_eq!(
        value(&client, "app/db/password").await.unwrap(),
        "v1",
        "still cached"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(value(&client, "app/db/password").await.unwrap(), "v2");
    assert_eq!(store.gets(), 2);
    let m = client.metrics();
    assert_eq!((m.gets, m.hits, m.misses), (4, 2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_ahead_refreshes_once_in_the_background() {
    let (store, client) = setup(CacheConfig {
        refresh_ahead: 0.5,
        ..config(1500)
    })
    .await;
    assert_eq!(value(&client, "app/db/password").await.unwrap(), "v1");
    store.set("app/db/password", "v2").await;
    store.delay_ms.store(300, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(800)).await;
    // Past half the TTL: callers keep the cached value while one (slow) refresh runs.
    for _ in 0..10 {
        assert_eq!(value(&client, "app/db/password").await.unwrap(), "v1");
    }
    eventually("the background refresh", || store.gets() == 2).await;
    eventually("the refreshed value", || {
        futures::executor::block_on(value(&client, "app/db/password")).unwrap() == "v2"
    })
    .await;
    assert_eq!(store.gets(), 2, "exactly one refresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_serves_within_max_stale_and_fails_beyond() {
    let (store, client) = setup(CacheConfig {
        max_stale: Duration::from_millis(1000),
        ..config(1000)
    })
    .await;
    assert_eq!(value(&client, "app/db/password").await.unwrap(), "v1");
    store.failing.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1050)).await;
    assert_eq!(value(&client, "app/db/password").await.unwrap(), "v1");
    assert_eq!(value(&client, "app/db/password").await.unwrap(), "v1");
    assert!(client.metrics().stale >= 2);
    let calls_while_failing = store.gets();
    assert_eq!(
        calls_while_failing, 2,
        "retries are spaced (ttl/10), not one per call"
    );
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let err = value(&client, "app/db/password").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    store.failing.store(false, Ordering::SeqCst);
    assert_eq!(value(&client, "app/db/password").await.unwrap(), "v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_max_stale_a_store_failure_is_an_error() {
    let (store, client) = setup(config(100)).await;
    value(&client, "app/db/password").await.unwrap();
    store.failing.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        value(&client, "app/db/password").await.unwrap_err().kind(),
        ErrorKind::Unavailable
    );
}

/// 100 concurrent reads of the test secret, each on its own task; all must read `expected`.
async fn hundred_concurrent_reads(client: &Sealbox, expected: &str) {
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { value(&c, "app/db/password").await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), expected);
    }
}

/// 20 concurrent reads of the test secret; all must fail with the store's error.
async fn twenty_reads_all_fail(client: &Sealbox) {
    let results =
        futures::future::join_all((0..20).map(|_| value(client, "app/db/password"))).await;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().unwrap_err().kind() == ErrorKind::Unavailable)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_misses_make_one_store_call() {
    let (store, client) = setup(config(10_000)).await;
    store.delay_ms.store(100, Ordering::SeqCst);
    hundred_concurrent_reads(&client, "v1").await;
    assert_eq!(store.gets(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_refreshes_of_an_expired_entry_make_one_store_call() {
    let (store, client) = setup(config(50)).await;
    assert_eq!(value(&client, "app/db/password").await.unwrap(), "v1");
    tokio::time::sleep(Duration::from_millis(80)).await;
    store.set("app/db/password", "v2").await;
    store.delay_ms.store(100, Ordering::SeqCst);
    let before = store.gets();
    hundred_concurrent_reads(&client, "v2").await;
    assert_eq!(store.gets() - before, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_share_the_failure_too() {
    let (store, client) = setup(config(50)).await;
    assert_eq!(value(&client, "app/db/password").await.unwrap(), "v1");
    tokio::time::sleep(Duration::from_millis(80)).await;
    store.delay_ms.store(50, Ordering::SeqCst);
    store.failing.store(true, Ordering::SeqCst);
    let before = store.gets();
    twenty_reads_all_fail(&client).await;
    assert_eq!(store.gets() - before, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_first_read_caches_nothing_and_the_next_read_retries() {
    let (store, client) = setup(config(10_000)).await;
    store.failing.store(true, Ordering::SeqCst);
    let e = value(&client, "app/db/password").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(client.cache().unwrap().is_empty());
    store.failing.store(false, Ordering::SeqCst);
    assert_eq!(value(&client, "app/db/password").await.unwrap(), "v1");
    assert_eq!(store.gets(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_share_the_failure_too() {
    let (store, client) = setup(config(10_000)).await;
    store.delay_ms.store(50, Ordering::SeqCst);
    store.failing.store(true, Ordering::SeqCst);
    twenty_reads_all_fail(&client).await;
    assert_eq!(store.gets(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_writes_and_deletes_invalidate() {
    let (store, client) = setup(config(60_000)).await;
    assert_eq!(value(&client, "app/db/password").await.unwrap(), "v1");
    let mut raw = *b"v2";
    client
        .put(
            "app/db/password",
            &Secret::from_mut_slice(&mut raw).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(value(&client, "app/db/password").await.unwrap(), "v2");
    // the same secret cached under another reference string is invalidated too
    assert_eq!(
        value(&client, "sb://default/app/db/password")
            .await
            .unwrap(),
        "v2"
    );
    let mut raw = *b"v3";
    client
        .put(
            "app/db/password",
            &Secret::from_mut_slice(&mut raw).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        value(&client, "sb://default/app/db/password")
            .await
            .unwrap(),
        "v3"
    );
    client
        .delete(
            "app/db/password",
            &DeleteOptions {
                force: true,
                ..DeleteOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        value(&client, "app/db/password").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert!(store.gets() >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_check_renews_without_refetching_the_value() {
    let (store, client) = setup(config(100)).await;
    store.cheap_describe.store(true, Ordering::SeqCst);
    let client = {
        drop(client);
        Sealbox::builder()
            .store(store.clone())
            .cache(CacheConfig {
                version_check: true,
                ..config(100)
            })
            .build()
            .unwrap()
    };
    assert_eq!(value(&client, "app/db/password").await.unwrap(), "v1");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(value(&client, "app/db/password").await.unwrap(), "v1");
    assert_eq!(
        (store.gets(), store.describes.load(Ordering::SeqCst)),
        (1, 1)
    );
    store.set("app/db/password", "v2").await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(value(&client, "app/db/password").await.unwrap(), "v2");
    assert_eq!(
        (store.gets(), store.describes.load(Ordering::SeqCst)),
        (2, 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_now_refetches_immediately() {
    let (store, client) = setup(config(60_000)).await;
    value(&client, "app/db/password").await.unwrap();
    store.set("app/db/password", "v2").await;
    assert_eq!(value(&client, "app/db/password").await.unwrap(), "v1");
    client.refresh_now("app/db/password").await.unwrap();
    assert_eq!(value(&client, "app/db/password").await.unwrap(), "v2");
    assert_eq!(store.gets(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_now_reports_a_failing_store_and_keeps_the_cached_value() {
    let (store, client) = setup(config(60_000)).await;
    value(&client, "app/db/password").await.unwrap();
    store.set("app/db/password", "v2").await;
    store.failing.store(true, Ordering::SeqCst);
    let e = client.refresh_now("app/db/password").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert_eq!(value(&client, "app/db/password").await.unwrap(), "v1");
    store.failing.store(false, Ordering::SeqCst);
    client.refresh_now("app/db/password").await.unwrap();
    assert_eq!(value(&client, "app/db/password").await.unwrap(), "v2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_mode_returns_fresh_copies_of_the_value() {
    let (store, client) = setup(CacheConfig {
        sealed: true,
        ..config(60_000)
    })
    .await;
    let a = client.get("app/db/password").await.unwrap();
    let b = client.get("app/db/password").await.unwrap();
    assert_eq!(a.expose_secret(), b"v1");
    assert_eq!(b.expose_secret(), b"v1");
    assert_ne!(
        a.expose_secret().as_ptr(),
        b.expose_secret().as_ptr(),
        "each access decrypts into its own buffer"
    );
    assert_eq!(store.gets(), 1);
}

#[test]
fn a_hit_completes_without_any_async_runtime() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (store, client) = rt.block_on(setup(config(60_000)));
    rt.block_on(value(&client, "app/db/password")).unwrap();
    // No tokio context here: a hit that touched the runtime (timers, spawn) would panic.
    let v = futures::executor::block_on(value(&client, "app/db/password")).unwrap();
    assert_eq!(v, "v1");
    assert_eq!(store.gets(), 1);
    let blocking = client.blocking().unwrap();
    assert_eq!(
        blocking.get("app/db/password").unwrap().expose_secret(),
        b"v1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_evicts_entries() {
    let (store, client) = setup(CacheConfig {
        capacity: 10,
        ..config(60_000)
    })
    .await;
    for i in 0..100 {
        store.set(&format!("app/k{i}"), "x").await;
        value(&client, &format!("app/k{i}")).await.unwrap();
    }
    client.cache().unwrap().run_pending_tasks();
    let len = client.cache().unwrap().len();
    assert!(len <= 12, "index holds {len} entries with capacity 10");
}

/// Readers on two threads hit while a writer replaces the value 2000 times (each write
/// invalidates; the next read refreshes in place and gives up the old value, which the
/// cache's maintenance thread frees). Every read sees a whole written value, never a freed
/// or wiped one.
#[test]
fn hits_racing_writes_only_ever_see_whole_values() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_store, client) = rt.block_on(setup(config(60_000)));
    let client = client.blocking().unwrap();
    const WRITES: u32 = 2000;
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (client, done) = (client.clone(), done.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !done.load(Ordering::Relaxed) || reads < 1000 {
                    let h = client.get("app/db/password").unwrap();
                    let v = std::str::from_utf8(h.expose_secret()).expect("a written value");
                    assert!(
                        v == "v1" || v.strip_prefix("value-").is_some_and(|n| n.len() == 8),
                        "read {v:?}"
                    );
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for i in 0..WRITES {
        let mut raw = format!("value-{i:08}").into_bytes();
        client
            .put(
                "app/db/password",
                &Secret::from_mut_slice(&mut raw).unwrap(),
            )
            .unwrap();
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().expect("a reader failed") >= 1000);
    }
    let last = client.get("app/db/password").unwrap();
    assert_eq!(
        last.expose_secret(),
        format!("value-{:08}", WRITES - 1).as_bytes()
    );
}

/// The bytes entry point of the blocking facade (the C ABI's): a name is turned into text only
/// when the cache does not hold it; a hit and a refresh of an expired entry use the entry's
/// own name, and every path makes the store calls a `get` makes.
#[test]
fn blocking_get_bytes_checks_a_name_only_when_the_cache_does_not_hold_it() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (store, client) = rt.block_on(setup(config(60_000)));
    let client = client.blocking().unwrap();
    let checked = AtomicUsize::new(0);
    let text = |b| {
        checked.fetch_add(1, Ordering::SeqCst);
        std::str::from_utf8(b).map_err(|_| Error::invalid_input("not UTF-8"))
    };
    let read = |text: &dyn Fn(&'static [u8]) -> Result<&'static str>| {
        let h = client.get_bytes(b"app/db/password", text).unwrap();
        String::from_utf8(h.expose_secret().to_vec()).unwrap()
    };
    // A first read: checked, routed, one store call.
    assert_eq!(read(&text), "v1");
    assert_eq!((checked.load(Ordering::SeqCst), store.gets()), (1, 1));
    // A hit: nothing checked, no store call.
    assert_eq!(read(&text), "v1");
    assert_eq!((checked.load(Ordering::SeqCst), store.gets()), (1, 1));
    // A local write expires the entry: refreshed in place, still nothing checked.
    let mut raw = *b"v2";
    client
        .put(
            "app/db/password",
            &Secret::from_mut_slice(&mut raw).unwrap(),
        )
        .unwrap();
    assert_eq!(read(&text), "v2");
    assert_eq!((checked.load(Ordering::SeqCst), store.gets()), (1, 2));
    // Bytes that are not a name fail with the checker's error, before any store call.
    let err = client.get_bytes(b"app/\xff", text).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!((checked.load(Ordering::SeqCst), store.gets()), (2, 2));
}
