//! The read cache in front of the stores.
//!
//! * **Hit path**: a lock-free read index (`papaya`, keyed by the reference string the caller
//!   passed) answers with another `Arc` to the cached value. It takes no lock, does not enter
//!   the async runtime, checks freshness on a coarse monotonic clock, and allocates nothing
//!   (sealed mode allocates the freshly decrypted copy it returns).
//! * **Capacity and TTL eviction**: `moka` owns the entries' lifetimes; its eviction listener
//!   removes evicted entries from the index. Hits do not touch moka, so its admission policy
//!   sees insertions, not reads (a deliberate trade for the hit cost). Misses do not wait for
//!   moka either: a `sealbox-cache` maintenance thread hands new entries to it every few
//!   milliseconds (see `lifetimes.rs`), so the index may exceed `capacity` by that much.
//! * **Misses** are single-flight: concurrent misses for one key share one store call, run
//!   inline in the first caller's future (see `flight.rs`).
//! * **Refresh-ahead**: past `refresh_ahead x ttl`, the first hit starts one background refresh;
//!   callers keep getting the cached value meanwhile.
//! * **Version check**: before refetching, stores with `cheap_describe` are asked for the
//!   CURRENT version id; when it did not change, the entry is renewed without a value fetch.
//! * **Stale-if-error**: when the store fails (anything but not-found, denied or bad input), an
//!   entry up to `max_stale` past its TTL is served and flagged (`CacheOutcome::Stale`); the
//!   store is retried at most every `ttl / 10` (capped at 5 s) meanwhile.
//! * **Invalidation** on local writes and deletes, and `Sealbox::refresh_now`.
//! * **Sealed mode**: values kept AES-256-GCM-encrypted in memory (see `sealed.rs`).

mod clock;
mod flight;
mod key;
mod lifetimes;
mod sealed;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Deserialize;

use crate::audit::CacheOutcome;
use crate::client::{HandleInner, SecretHandle, VersionMeta};
use crate::error::{Error, ErrorKind, Result};
use crate::monitor::metrics::ClientMetrics;
use crate::store::{SecretName, SecretStore, SecretVersion, Stage, VersionSelector};
use flight::Flights;
use key::{IndexKey, KeyBytes};
use lifetimes::Lifetimes;

use sealed::{SealedValue, Sealer};

/// The `cache:` config section.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Turn the cache off (every read goes to the store).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How long a value is served without asking the store (default 5 minutes).
    #[serde(default = "default_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// Maximum number of cached secrets (default 10 000).
    #[serde(default = "default_capacity")]
    pub capacity: u64,
    /// Fraction of the TTL after which a hit triggers one background refresh (default 0.8;
    /// 1.0 or more turns refresh-ahead off).
    #[serde(default = "default_refresh_ahead")]
    pub refresh_ahead: f64,
    /// How long past its TTL a value may still be served when the store fails (default 0:
    /// off).
    #[serde(default, with = "humantime_serde")]
    pub max_stale: Duration,
    /// Keep values encrypted in memory and decrypt per access.
    #[serde(default)]
    pub sealed: bool,
    /// Ask stores that can describe cheaply whether the version changed before refetching
    /// (default true).
    #[serde(default = "yes")]
    pub version_check: bool,
}

fn yes() -> bool {
    true
}
fn default_ttl() -> Duration {
    Duration::from_secs(300)
}
fn default_capacity() -> u64 {
    10_000
}
fn default_refresh_ahead() -> f64 {
    0.8
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            ttl: default_ttl(),
            capacity: default_capacity(),
            refresh_ahead: default_refresh_ahead(),
            max_stale: Duration::ZERO,
            sealed: false,
            version_check: true,
        }
    }
}

impl CacheConfig {
    fn validate(&self) -> Result<()> {
        if self.ttl.is_zero() {
            return Err(Error::config(
                "cache.ttl must be more than zero (or set enabled: false)",
            ));
        }
        if self.capacity == 0 {
            return Err(Error::config("cache.capacity must be at least 1"));
        }
        if self.refresh_ahead.is_nan() || self.refresh_ahead <= 0.0 {
            return Err(Error::config(
                "cache.refresh_ahead must be a fraction above 0 (e.g. 0.8)",
            ));
        }
        Ok(())
    }
}

enum Value {
    /// The handle every hit returns, with the version's metadata inside.
    Plain(Arc<HandleInner>),
    /// Decrypted into a fresh handle per hit, sharing `meta`.
    Sealed(SealedValue, Arc<VersionMeta>),
}

struct Entry {
    key: Arc<str>,
    store: Arc<dyn SecretStore>,
    value: Value,
    expires: AtomicU64,
    refresh_at: AtomicU64,
    stale_until: AtomicU64,
    retry_at: AtomicU64,
    refreshing: AtomicBool,
}

impl Entry {
    fn meta(&self) -> &VersionMeta {
        match &self.value {
            Value::Plain(h) => h.meta(),
            Value::Sealed(_, meta) => meta,
        }
    }

    fn set_times(&self, config: &CacheConfig, now: u64) {
        let ttl = clock::nanos(config.ttl);
        let expires = now.saturating_add(ttl);
        let refresh_at = if config.refresh_ahead >= 1.0 {
            u64::MAX
        } else {
            now.saturating_add((ttl as f64 * config.refresh_ahead) as u64)
        };
        self.refresh_at.store(refresh_at, Ordering::Relaxed);
        self.stale_until.store(
            expires.saturating_add(clock::nanos(config.max_stale)),
            Ordering::Relaxed,
        );
        self.retry_at.store(0, Ordering::Relaxed);
        self.expires.store(expires, Ordering::Release);
    }
}

type Index = papaya::HashMap<IndexKey, Arc<Entry>, foldhash::fast::RandomState>;

struct Inner {
    config: CacheConfig,
    index: Arc<Index>,
    lifetimes: Lifetimes,
    flights: Flights<(Arc<Entry>, CacheOutcome)>,
    sealer: Option<Sealer>,
    metrics: Arc<ClientMetrics>,
    runtime: BackgroundRuntime,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.lifetimes.stop();
    }
}

/// The cache. Cheap to clone.
#[derive(Clone)]
pub struct SecretCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SecretCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretCache")
            .field("config", &self.inner.config)
            .field("entries", &self.inner.index.len())
            .finish()
    }
}

/// Where refresh-ahead tasks run: the runtime the client was built in, or a small runtime of
/// the cache's own (shut down in the background on drop, so dropping a client inside async
/// code cannot panic).
struct BackgroundRuntime {
    handle: Option<tokio::runtime::Handle>,
    own: OnceLock<Option<OwnedRuntime>>,
}

struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl BackgroundRuntime {
    fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        if let Some(h) = &self.handle {
            h.spawn(fut);
            return;
        }
        let own = self.own.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("sealbox-refresh")
                .enable_all()
                .build()
                .map(|rt| OwnedRuntime(Some(rt)))
                .map_err(|e| tracing::warn!(error = %e, "no runtime for cache refresh-ahead"))
                .ok()
        });
        if let Some(OwnedRuntime(Some(rt))) = own {
            rt.spawn(fut);
        }
    }
}

/// The answer to a read: the handle (which knows its audit resource) and how the cache
/// answered.
pub(crate) struct CacheAnswer {
    pub(crate) handle: SecretHandle,
    pub(crate) outcome: CacheOutcome,
}

impl SecretCache {
    /// A cache with `config`, counting into `metrics`.
    pub(crate) fn new(config: CacheConfig, metrics: Arc<ClientMetrics>) -> Result<SecretCache> {
        config.validate()?;
        let index: Arc<Index> = Arc::new(papaya::HashMap::with_hasher(
            foldhash::fast::RandomState::default(),
        ));
        let listener_index = index.clone();
        let lifetime = config
            .ttl
            .saturating_add(config.max_stale)
            .saturating_add(Duration::from_secs(1));
        let lifetimes: lifetimes::Moka = moka::sync::Cache::builder()
            .max_capacity(config.capacity)
            .time_to_live(lifetime)
            .eviction_listener(
                move |key: Arc<Arc<str>>,
                      entry: std::sync::Weak<Entry>,
                      cause: moka::notification::RemovalCause| {
                    if cause != moka::notification::RemovalCause::Replaced {
                        // The weak reference keeps the entry's allocation, so no newer entry
                        // can have its address.
                        let _ = listener_index
                            .pin()
                            .remove_if(&KeyBytes(key.as_bytes()), |_, current| {
                                std::ptr::eq(Arc::as_ptr(current), entry.as_ptr())
                            });
                    }
                },
            )
            .build();
        let capacity = config.capacity;
        let sealer = if config.sealed {
            Some(Sealer::new()?)
        } else {
            None
        };
        Ok(SecretCache {
            inner: Arc::new(Inner {
                config,
                index,
                lifetimes: Lifetimes::new(lifetimes, capacity),
                flights: Flights::new(),
                sealer,
                metrics,
                runtime: BackgroundRuntime {
                    handle: tokio::runtime::Handle::try_current().ok(),
                    own: OnceLock::new(),
                },
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    /// Number of entries in the read index.
    pub fn len(&self) -> usize {
        self.inner.index.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The hit path. `None` means: go to [`SecretCache::fetch`]. The key is bytes (see
    /// `key.rs`): bytes that are not UTF-8 are simply never found.
    #[inline]
    pub(crate) fn lookup(&self, key: &[u8]) -> Option<Result<CacheAnswer>> {
        let inner = &*self.inner;
        let guard = inner.index.guard();
        let entry = inner.index.get(&KeyBytes(key), &guard)?;
        let now = clock::now_nanos();
        let outcome = if now < entry.expires.load(Ordering::Acquire) {
            if now >= entry.refresh_at.load(Ordering::Relaxed)
                && !entry.refreshing.load(Ordering::Relaxed)
                && !entry.refreshing.swap(true, Ordering::AcqRel)
            {
                self.spawn_refresh(entry.clone());
            }
            CacheOutcome::Hit
        } else if now < entry.stale_until.load(Ordering::Relaxed)
            && now < entry.retry_at.load(Ordering::Relaxed)
        {
            inner.metrics.stale.incr();
            inner.metrics.fast_stale.incr();
            CacheOutcome::Stale
        } else {
            return None;
        };
        if outcome == CacheOutcome::Hit {
            inner.metrics.fast_hits.incr();
        }
        Some(self.answer(entry, outcome))
    }

    fn answer(&self, entry: &Entry, outcome: CacheOutcome) -> Result<CacheAnswer> {
        let handle = match &entry.value {
            Value::Plain(h) => SecretHandle::from_inner(h.clone()),
            Value::Sealed(sealed, meta) => {
                let sealer =
                    self.inner.sealer.as_ref().ok_or_else(|| {
                        Error::internal("sealed cache entry without a sealing key")
                    })?;
                let value = sealer.open(sealed, entry.key.as_bytes())?;
                SecretHandle::from_inner(Arc::new(HandleInner::shared(meta.clone(), value)))
            }
        };
        Ok(CacheAnswer { handle, outcome })
    }

    fn spawn_refresh(&self, entry: Arc<Entry>) {
        let this = self.clone();
        self.inner.runtime.spawn(async move {
            let _ = this
                .flight(
                    &entry.key,
                    entry.store.clone(),
                    entry.meta().name.clone(),
                    entry.meta().store.clone(),
                    false,
                )
                .await;
            entry.refreshing.store(false, Ordering::Release);
        });
    }

    /// The miss path: one store call per key however many callers wait (single-flight).
    pub(crate) async fn fetch(
        &self,
        key: &str,
        store: Arc<dyn SecretStore>,
        name: SecretName,
        store_id: Arc<str>,
    ) -> Result<CacheAnswer> {
        let (entry, outcome) = self.flight(key, store, name, store_id, false).await?;
        self.answer(&entry, outcome)
    }

    /// Refetches `key` now (no version check), replacing the cached value. A store failure
    /// is returned, not answered from the cache (the cached value is kept and still served).
    pub(crate) async fn refresh_now(
        &self,
        key: &str,
        store: Arc<dyn SecretStore>,
        name: SecretName,
        store_id: Arc<str>,
    ) -> Result<()> {
        self.flight(key, store, name, store_id, true)
            .await
            .map(|_| ())
    }

    async fn flight(
        &self,
        key: &str,
        store: Arc<dyn SecretStore>,
        name: SecretName,
        store_id: Arc<str>,
        force: bool,
    ) -> Result<(Arc<Entry>, CacheOutcome)> {
        // A reference that is the bare name (the usual case) is keyed by the name's own string.
        let shared = name.shared().clone();
        self.inner
            .flights
            .run(key, &shared, |key| {
                self.load(key, store, name, store_id, force)
            })
            .await
    }

    async fn load(
        &self,
        key: Arc<str>,
        store: Arc<dyn SecretStore>,
        name: SecretName,
        store_id: Arc<str>,
        force: bool,
    ) -> Result<(Arc<Entry>, CacheOutcome)> {
        let inner = &*self.inner;
        let old = inner.index.pin().get(&KeyBytes(key.as_bytes())).cloned();
        if !force
            && let Some(old) = &old
            && clock::now_nanos() < old.expires.load(Ordering::Acquire)
            && !old.refreshing.load(Ordering::Relaxed)
        {
            // Another flight refreshed it while this caller was queued.
            return Ok((old.clone(), CacheOutcome::Hit));
        }
        if !force
            && inner.config.version_check
            && let Some(old) = &old
            && store.capabilities().cheap_describe
        {
            let started = inner.metrics.start_store_call();
            let described = store.describe(&name).await;
            inner.metrics.end_store_call(started);
            match described {
                Ok(meta)
                    if meta.version_with_stage(&Stage::Current) == Some(&old.meta().version) =>
                {
                    old.set_times(&inner.config, clock::now_nanos());
                    self.admit(old);
                    return Ok((old.clone(), CacheOutcome::Hit));
                }
                Ok(_) => {}
                Err(e) => {
                    inner.metrics.store_error(e.kind());
                    return self.on_error(&key, Some(old), e);
                }
            }
        }
        let started = inner.metrics.start_store_call();
        let got = store.get(&name, &VersionSelector::Current).await;
        inner.metrics.end_store_call(started);
        match got {
            Ok(version) => {
                let entry = self.make_entry(key, store, store_id, name, version)?;
                inner
                    .index
                    .pin()
                    .insert(IndexKey(entry.key.clone()), entry.clone());
                self.admit(&entry);
                Ok((entry, CacheOutcome::Miss))
            }
            Err(e) => {
                inner.metrics.store_error(e.kind());
                // A forced refresh reports the failure; the cached value stays as it was.
                let old = if force { None } else { old.as_ref() };
                self.on_error(&key, old, e)
            }
        }
    }

    /// Hands `entry` to the lifetime tracking (capacity, TTL eviction), off the caller's path.
    fn admit(&self, entry: &Arc<Entry>) {
        self.inner
            .lifetimes
            .admit(entry, &self.inner.index, Arc::downgrade(&self.inner));
    }

    fn on_error(
        &self,
        key: &str,
        old: Option<&Arc<Entry>>,
        e: Error,
    ) -> Result<(Arc<Entry>, CacheOutcome)> {
        let inner = &*self.inner;
        let stale_allowed = !matches!(
            e.kind(),
            ErrorKind::NotFound | ErrorKind::AccessDenied | ErrorKind::InvalidInput
        );
        if e.kind() == ErrorKind::NotFound {
            inner.index.pin().remove(&KeyBytes(key.as_bytes()));
            inner.lifetimes.invalidate(key);
        }
        let now = clock::now_nanos();
        match old {
            Some(old) if stale_allowed && now < old.stale_until.load(Ordering::Relaxed) => {
                let retry = (inner.config.ttl / 10).min(Duration::from_secs(5));
                old.retry_at
                    .store(now.saturating_add(clock::nanos(retry)), Ordering::Relaxed);
                inner.metrics.stale.incr();
                tracing::warn!(
                    target: "sealbox::cache",
                    key,
                    error = %e,
                    "store failed; serving the cached value past its TTL (stale-if-error)"
                );
                Ok((old.clone(), CacheOutcome::Stale))
            }
            _ => Err(e),
        }
    }

    fn make_entry(
        &self,
        key: Arc<str>,
        store: Arc<dyn SecretStore>,
        store_id: Arc<str>,
        name: SecretName,
        version: SecretVersion,
    ) -> Result<Arc<Entry>> {
        let SecretVersion {
            value,
            version,
            stages,
            created,
        } = version;
        let meta = VersionMeta::new(name, store_id, version, stages, created);
        let value = match &self.inner.sealer {
            Some(sealer) => Value::Sealed(sealer.seal(&value, key.as_bytes())?, Arc::new(meta)),
            None => Value::Plain(Arc::new(HandleInner::new(meta, value))),
        };
        let entry = Arc::new(Entry {
            key,
            store,
            value,
            expires: AtomicU64::new(0),
            refresh_at: AtomicU64::new(0),
            stale_until: AtomicU64::new(0),
            retry_at: AtomicU64::new(0),
            refreshing: AtomicBool::new(false),
        });
        entry.set_times(&self.inner.config, clock::now_nanos());
        Ok(entry)
    }

    /// Drops every cached entry for `name` in store `store_id`, whatever reference string
    /// cached it.
    ///
    /// A cached reference has no `#field` (fields are read through their whole secret), so
    /// it is one of three spellings: `NAME`, `sb://STORE/NAME` or `sb:///NAME`. Each is
    /// looked up, and dropped only if it holds this store's secret: a write costs three
    /// lookups, whatever the cache holds.
    pub fn invalidate(&self, store_id: &str, name: &SecretName) {
        let n = name.as_str();
        let index = self.inner.index.pin();
        let spellings = [
            n.to_owned(),
            format!("sb://{store_id}/{n}"),
            format!("sb:///{n}"),
        ];
        for key in spellings {
            let removed = index.remove_if(&KeyBytes(key.as_bytes()), |_, e| {
                e.meta().name == *name && &*e.meta().store == store_id
            });
            if matches!(removed, Ok(Some(_))) {
                self.inner.lifetimes.invalidate(&key);
            }
        }
    }

    /// Runs the pending lifetime maintenance (queued entries, evictions) now instead of on
    /// the maintenance thread's next tick.
    pub fn run_pending_tasks(&self) {
        self.inner.lifetimes.run_pending_tasks(&self.inner.index);
    }

    /// Drops everything.
    pub fn clear(&self) {
        self.inner.lifetimes.clear();
        self.inner.index.pin().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Secret;
    use crate::store::PutOptions;
    use crate::store::memory::MemoryStore;

    async fn filled(n: usize) -> Arc<MemoryStore> {
        let store = Arc::new(MemoryStore::new());
        for i in 0..n {
            let name = SecretName::new(format!("app/k{i}")).unwrap();
            store
                .put(&name, &Secret::random(16).unwrap(), &PutOptions::default())
                .await
                .unwrap();
        }
        store
    }

    fn cache(capacity: u64) -> SecretCache {
        let config = CacheConfig {
            capacity,
            ..CacheConfig::default()
        };
        SecretCache::new(config, Arc::new(ClientMetrics::default())).unwrap()
    }

    async fn miss(cache: &SecretCache, store: &Arc<MemoryStore>, i: usize) {
        let key = format!("app/k{i}");
        let name = SecretName::new(key.clone()).unwrap();
        cache
            .fetch(&key, store.clone(), name, Arc::from("default"))
            .await
            .unwrap();
    }

    async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..400 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("timed out waiting until {what}");
    }

    #[tokio::test]
    async fn the_maintenance_thread_hands_queued_entries_to_moka() {
        let store = filled(5).await;
        let cache = cache(1000); // queues up to 125 entries before the caller inserts
        for i in 0..5 {
            miss(&cache, &store, i).await;
        }
        let moka = &cache.inner.lifetimes;
        eventually("moka tracks all 5 entries", || moka.tracked() == 5).await;
        assert_eq!(cache.len(), 5);
    }

    #[tokio::test]
    async fn a_parked_maintenance_thread_wakes_for_new_entries() {
        let store = filled(2).await;
        let cache = cache(1000);
        miss(&cache, &store, 0).await;
        let moka = &cache.inner.lifetimes;
        eventually("moka tracks the first entry", || moka.tracked() == 1).await;
        // Idle for longer than it polls: it parks without a timeout.
        tokio::time::sleep(lifetimes::TICK * (lifetimes::IDLE_TICKS + 50)).await;
        miss(&cache, &store, 1).await;
        eventually("moka tracks the second entry", || moka.tracked() == 2).await;
    }

    #[tokio::test]
    async fn drained_queues_keep_their_capacity() {
        let store = filled(40).await;
        let cache = cache(1000);
        let lifetimes = &cache.inner.lifetimes;
        for round in 0..2 {
            for i in 0..20 {
                miss(&cache, &store, round * 20 + i).await;
            }
            cache.run_pending_tasks();
        }
        // The drains (this test's and the maintenance thread's, however they split the
        // bursts) left the queue a used buffer, not a new empty one that the next miss
        // would have to grow.
        assert!(lifetimes.queued_capacity() > 0);
        assert_eq!(lifetimes.tracked(), 40);
    }

    #[tokio::test]
    async fn capacity_holds_with_deferred_inserts() {
        let store = filled(1000).await;
        let cache = cache(100);
        for i in 0..1000 {
            miss(&cache, &store, i).await;
        }
        cache.run_pending_tasks();
        let len = cache.len();
        assert!(
            len <= 110,
            "the index holds {len} entries with capacity 100"
        );
    }

    #[tokio::test]
    async fn an_entry_invalidated_while_queued_is_never_tracked() {
        let store = filled(1).await;
        let cache = cache(1000);
        miss(&cache, &store, 0).await;
        cache.invalidate("default", &SecretName::new("app/k0").unwrap());
        cache.run_pending_tasks();
        assert_eq!(cache.inner.lifetimes.tracked(), 0);
        assert!(cache.is_empty());
    }

    #[tokio::test]
    async fn invalidation_drops_every_spelling_of_the_name_in_that_store_only() {
        let store = filled(2).await;
        let cache = cache(1000);
        for (reference, store_id, n) in [
            ("app/k0", "default", "app/k0"),
            ("sb://default/app/k0", "default", "app/k0"),
            ("sb:///app/k0", "default", "app/k0"),
            ("sb://other/app/k0", "other", "app/k0"),
            ("app/k1", "default", "app/k1"),
        ] {
            let n = SecretName::new(n).unwrap();
            cache
                .fetch(reference, store.clone(), n, Arc::from(store_id))
                .await
                .unwrap();
        }
        assert_eq!(cache.len(), 5);
        cache.invalidate("default", &SecretName::new("app/k0").unwrap());
        cache.run_pending_tasks();
        let mut left: Vec<String> = cache
            .inner
            .index
            .pin()
            .keys()
            .map(|k| k.0.to_string())
            .collect();
        left.sort();
        assert_eq!(left, ["app/k1", "sb://other/app/k0"]);
        assert_eq!(cache.inner.lifetimes.tracked(), 2);
    }

    #[tokio::test]
    async fn the_maintenance_thread_does_not_keep_the_cache_alive() {
        let store = filled(1).await;
        let cache = cache(1000);
        miss(&cache, &store, 0).await;
        let weak = Arc::downgrade(&cache.inner);
        drop(cache);
        eventually("the cache is freed", || weak.upgrade().is_none()).await;
    }
}
