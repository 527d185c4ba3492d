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
//!   inline in the first caller's future, with the flight's state in the key's entry (see
//!   `flight.rs`). A reference's first read inserts its entry empty; after that the entry
//!   stays, and every refresh (TTL expiry, refresh-ahead, a local write) replaces its value in
//!   place (see `slot.rs`): no routing, no index write. A failed first read removes its entry.
//! * **Refresh-ahead**: past `refresh_ahead x ttl`, the first hit starts one background refresh;
//!   callers keep getting the cached value meanwhile.
//! * **Version check**: before refetching, stores with `cheap_describe` are asked for the
//!   CURRENT version id; when it did not change, the entry is renewed without a value fetch.
//! * **Stale-if-error**: when the store fails (anything but not-found, denied or bad input), an
//!   entry up to `max_stale` past its TTL is served and flagged (`CacheOutcome::Stale`); the
//!   store is retried at most every `ttl / 10` (capped at 5 s) meanwhile.
//! * **Invalidation** on local writes and deletes (the entry is expired and its value
//!   released), and `Sealbox::refresh_now`.
//! * **Sealed mode**: values kept AES-256-GCM-encrypted in locked memory under a per-cache key
//!   that is locked too; a plaintext exists only in the handles returned (see `sealed.rs`).
//! * **Release**: a value leaves memory (wiped) soon after the cache stops needing it. The
//!   maintenance thread frees an invalidated or evicted value within about 100 ms, and one
//!   replaced by a refresh within that while the cache is busy or within one sweep
//!   (`lifetime / 16`, at most 10 s) when it is idle; and it evicts an entry past TTL +
//!   `max_stale` + 1 s within a sweep, even in a cache nobody reads any more (see
//!   `graves.rs` and `lifetimes.rs`).

pub(crate) mod clock;
mod flight;
mod graves;
mod key;
mod lifetimes;
mod sealed;
mod shared;
mod slot;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Deserialize;

use crate::audit::{CacheOutcome, Resource};
use crate::client::{HandleInner, SecretHandle, VersionMeta};
use crate::error::{Error, ErrorKind, Result};
use crate::monitor::metrics::ClientMetrics;
use crate::process::ProcessBound;
use crate::store::{SecretName, SecretStore, SecretVersion, Stage, VersionId, VersionSelector};
use flight::EntryFlight;
use graves::{Graveyard, Unlinked};
use key::{IndexKey, KeyBytes};
use lifetimes::Lifetimes;

use sealed::{SealedValue, Sealer};
pub(crate) use shared::Shared;
use slot::Slot;

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
    /// off). An entry nobody refreshes leaves memory (wiped) within about
    /// `(ttl + max_stale + 1 s) x 17/16` (the sweep's delay at most 10 s) of its last fetch.
    #[serde(default, with = "humantime_serde")]
    pub max_stale: Duration,
    /// Keep values AES-256-GCM-encrypted in locked memory and decrypt into a fresh handle per
    /// access. The cache's key is locked whatever the memory policy: building a sealed cache
    /// fails with `MemoryLock` when it cannot be. The key lives in the same process, so this
    /// does not defend against a reader of the whole process's memory.
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

/// A cached version, as a flight hands it to its callers.
#[derive(Clone)]
enum Value {
    /// The handle every hit returns, with the version's metadata inside.
    Plain(Shared<HandleInner>),
    /// Decrypted into a fresh handle per hit.
    Sealed(Shared<SealedVersion>),
}

/// A sealed cache's value: the version encrypted in memory, with its metadata.
struct SealedVersion {
    value: SealedValue,
    meta: Arc<VersionMeta>,
}

/// One cached reference. The entry outlives its values: a refresh (TTL, refresh-ahead, a
/// local write) replaces the value in place, so only a reference's first read inserts into
/// the index.
struct Entry {
    key: Arc<str>,
    store: Arc<dyn SecretStore>,
    name: SecretName,
    store_id: Arc<str>,
    /// The value in a plain cache (empty after an invalidation).
    plain: Slot<HandleInner>,
    /// The value in a sealed cache (empty after an invalidation).
    sealed: Slot<SealedVersion>,
    expires: AtomicU64,
    refresh_at: AtomicU64,
    stale_until: AtomicU64,
    retry_at: AtomicU64,
    refreshing: AtomicBool,
    /// When the entry was last handed to moka (0: never).
    admitted: AtomicU64,
    /// Single-flight for refreshing this entry.
    flight: EntryFlight<(Value, CacheOutcome)>,
}

/// How much longer moka keeps an entry than the entry can be served (TTL + `max_stale`).
/// An entry renewed within half of it after its last admission needs no new one: moka's
/// deadline still lies past the renewed entry's last serving time.
const LIFETIME_SLACK: Duration = Duration::from_secs(1);

/// Retirements the index's collector gathers before it reclaims them. Reclaiming is a
/// process-wide barrier (`membarrier`: an interrupt on every CPU running one of our threads),
/// and the maintenance thread retires replaced values in bulk, so seize's default of 32
/// interrupted the callers' CPUs once per 32 writes or refreshes: under a burst of misses
/// that cost more than the misses. The maintenance thread flushes a partial batch about
/// 100 ms after retiring into it (`lifetimes.rs`), so a bigger batch delays no value longer.
const RETIRE_BATCH: usize = 512;

impl Entry {
    /// The value, if the entry holds one. `guard` is the index's.
    fn value(&self, guard: &impl papaya::Guard) -> Option<Value> {
        match self.plain.load(guard) {
            Some(h) => Some(Value::Plain(h)),
            None => self.sealed.load(guard).map(Value::Sealed),
        }
    }

    /// Whether the entry holds a value (without taking a reference to it).
    fn holds_value(&self, guard: &impl papaya::Guard) -> bool {
        self.plain.get(guard).is_some() || self.sealed.get(guard).is_some()
    }

    /// Whether the entry holds `version`.
    fn holds_version(&self, version: &VersionId, guard: &impl papaya::Guard) -> bool {
        match self.plain.get(guard) {
            Some(h) => h.meta().version == *version,
            None => self
                .sealed
                .get(guard)
                .is_some_and(|s| s.meta.version == *version),
        }
    }

    /// Publishes `value` with fresh times; readers that see the new times see the new value.
    /// The value it replaces goes to `graves`.
    /// Returns when, on the coarse clock.
    fn publish(&self, value: Value, config: &CacheConfig, graves: &Graveyard) -> u64 {
        let old = match value {
            Value::Plain(h) => self.plain.replace(Some(h)).map(Unlinked::Plain),
            Value::Sealed(s) => self.sealed.replace(Some(s)).map(Unlinked::Sealed),
        };
        let now = clock::now_nanos();
        self.set_times(config, now);
        if let Some(old) = old {
            graves.bury(old, false);
        }
        now
    }

    /// Expires the entry and releases its value to `graves`: the next read goes to the
    /// store, and no failure can serve the old value.
    fn expire(&self, graves: &Graveyard) {
        for old in self.unlink() {
            graves.bury(old, true);
        }
    }

    /// Expires the entry and hands back its values, which the caller must retire.
    fn unlink(&self) -> impl Iterator<Item = Unlinked> {
        self.expires.store(0, Ordering::Release);
        self.stale_until.store(0, Ordering::Relaxed);
        let plain = self.plain.replace(None).map(Unlinked::Plain);
        let sealed = self.sealed.replace(None).map(Unlinked::Sealed);
        plain.into_iter().chain(sealed)
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
    sealer: Option<Sealer>,
    metrics: Arc<ClientMetrics>,
    runtime: BackgroundRuntime,
    /// Told of every refresh-ahead read (the client audits them): the resource read, or
    /// the resource asked for and the error.
    refreshed: OnceLock<RefreshHook>,
}

/// See [`SecretCache::on_refresh_ahead`].
pub(crate) type RefreshHook = Box<dyn Fn(Arc<Resource>, Option<ErrorKind>) + Send + Sync>;

impl Drop for Inner {
    fn drop(&mut self) {
        self.lifetimes.stop();
    }
}

/// The cache as its clones and its maintenance thread hold it: bound to the process that
/// made it, so that a forked child, which has neither its values (wiped) nor its threads,
/// never runs its teardown (see [`ProcessBound`]).
type Owner = ProcessBound<Inner>;

/// The cache. Cheap to clone.
///
/// In a process forked after the cache was made, the client refuses every read with
/// [`ErrorKind::Forked`] before it reaches the cache, and the cache's own methods do
/// nothing there (its values are wiped and its maintenance thread does not exist).
#[derive(Clone)]
pub struct SecretCache {
    inner: Arc<Owner>,
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
    /// When a hit was answered, on the cache's coarse clock ([`clock::now_nanos`]), so that
    /// the audit log dates it without reading a clock again; [`clock::NO_TICK`] for an
    /// answer from the store, which no clock read is saved for.
    pub(crate) tick: u64,
}

/// What the read index holds for a reference.
pub(crate) enum Probe {
    /// A fresh value (or a stale one while the store fails).
    Answer(Result<CacheAnswer>),
    /// An entry that needs a refresh (see [`SecretCache::refresh_expired`]).
    Expired(Expired),
    /// Nothing: the reference has not been read (or was evicted).
    Absent,
}

/// A cached reference that cannot be served as it is (past its TTL, or invalidated).
pub(crate) struct Expired(Arc<Entry>);

impl Expired {
    /// The audit resource it reads (no version yet), for policy checks and failures.
    pub(crate) fn resource(&self) -> Arc<Resource> {
        Resource::in_store(self.0.name.as_str(), self.0.store_id.clone())
    }
}

impl SecretCache {
    /// A cache with `config`, counting into `metrics`.
    pub(crate) fn new(config: CacheConfig, metrics: Arc<ClientMetrics>) -> Result<SecretCache> {
        config.validate()?;
        let index: Arc<Index> = Arc::new(
            papaya::HashMap::builder()
                .hasher(foldhash::fast::RandomState::default())
                .collector(seize::Collector::new().batch_size(RETIRE_BATCH))
                .build(),
        );
        let graves = Arc::new(Graveyard::new(index.clone()));
        let (listener_index, listener_graves) = (index.clone(), graves.clone());
        let lifetime = config
            .ttl
            .saturating_add(config.max_stale)
            .saturating_add(LIFETIME_SLACK);
        let lifetimes: lifetimes::Moka = moka::sync::Cache::builder()
            .max_capacity(config.capacity)
            .time_to_live(lifetime)
            .eviction_listener(
                move |_: Arc<usize>,
                      entry: std::sync::Weak<Entry>,
                      cause: moka::notification::RemovalCause| {
                    if cause == moka::notification::RemovalCause::Replaced {
                        return;
                    }
                    // An entry that nothing holds any more is in no index.
                    let Some(entry) = entry.upgrade() else { return };
                    let removed = listener_index
                        .pin()
                        .remove_if(&KeyBytes(entry.key.as_bytes()), |_, current| {
                            Arc::ptr_eq(current, &entry)
                        })
                        .is_ok_and(|r| r.is_some());
                    // The index retires the entry lazily; its value goes now.
                    if removed {
                        entry.expire(&listener_graves);
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
            inner: Arc::new(ProcessBound::new(Inner {
                config,
                index,
                lifetimes: Lifetimes::new(lifetimes, capacity, lifetime, graves),
                sealer,
                metrics,
                runtime: BackgroundRuntime {
                    handle: tokio::runtime::Handle::try_current().ok(),
                    own: OnceLock::new(),
                },
                refreshed: OnceLock::new(),
            })),
        })
    }

    /// Whether this cache may be used: false in a process forked after it was made.
    #[inline]
    fn in_own_process(&self) -> bool {
        self.inner.stamp().is_current()
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
        match self.probe(key) {
            Probe::Answer(answer) => Some(answer),
            Probe::Expired(_) | Probe::Absent => None,
        }
    }

    /// The hit path, telling an entry to refresh (see [`SecretCache::refresh_expired`]) from
    /// a reference never read.
    #[inline]
    pub(crate) fn probe(&self, key: &[u8]) -> Probe {
        let inner = &*self.inner;
        let guard = inner.index.guard();
        let Some(entry) = inner.index.get(&KeyBytes(key), &guard) else {
            return Probe::Absent;
        };
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
            CacheOutcome::Stale
        } else {
            return Probe::Expired(Expired(entry.clone()));
        };
        let answer = match entry.plain.load(&guard) {
            Some(h) => Ok(CacheAnswer {
                handle: SecretHandle::from_inner(h),
                outcome,
                tick: now,
            }),
            None => match entry.sealed.get(&guard) {
                Some(sealed) => self.open(sealed, &entry.key, outcome, now),
                // Emptied by an invalidation since its times were read.
                None => return Probe::Expired(Expired(entry.clone())),
            },
        };
        if outcome == CacheOutcome::Hit {
            inner.metrics.fast_hits.incr();
        } else {
            inner.metrics.stale.incr();
            inner.metrics.fast_stale.incr();
        }
        Probe::Answer(answer)
    }

    fn answer(&self, value: Value, key: &str, outcome: CacheOutcome) -> Result<CacheAnswer> {
        let tick = clock::NO_TICK;
        match value {
            Value::Plain(h) => Ok(CacheAnswer {
                handle: SecretHandle::from_inner(h),
                outcome,
                tick,
            }),
            Value::Sealed(sealed) => self.open(&sealed, key, outcome, tick),
        }
    }

    /// Decrypts a sealed version into a fresh handle.
    fn open(
        &self,
        sealed: &SealedVersion,
        key: &str,
        outcome: CacheOutcome,
        tick: u64,
    ) -> Result<CacheAnswer> {
        let sealer = self
            .inner
            .sealer
            .as_ref()
            .ok_or_else(|| Error::internal("sealed cache entry without a sealing key"))?;
        let value = sealer.open(&sealed.value, key.as_bytes())?;
        let handle =
            SecretHandle::from_inner(Shared::new(HandleInner::shared(sealed.meta.clone(), value)));
        Ok(CacheAnswer {
            handle,
            outcome,
            tick,
        })
    }

    /// Calls `hook` after every refresh-ahead read from a store (a read no caller waits
    /// for, so that no other path sees it): the client audits them. Set once.
    pub(crate) fn on_refresh_ahead(&self, hook: RefreshHook) {
        let _ = self.inner.refreshed.set(hook);
    }

    fn spawn_refresh(&self, entry: Arc<Entry>) {
        let this = self.clone();
        self.inner.runtime.spawn(async move {
            let loaded = this.load(&entry, false).await;
            entry.refreshing.store(false, Ordering::Release);
            if let Some(hook) = this.inner.refreshed.get() {
                match loaded {
                    Ok((Value::Plain(h), _)) => hook(h.meta().resource().clone(), None),
                    Ok((Value::Sealed(v), _)) => hook(v.meta.resource().clone(), None),
                    Err(e) => hook(
                        Resource::in_store(entry.name.as_str(), entry.store_id.clone()),
                        Some(e.kind()),
                    ),
                }
            }
        });
    }

    /// The miss path of a reference the cache does not hold (a first read): one store call
    /// per key however many callers wait (single-flight).
    ///
    /// The entry is found or inserted here, before the future runs, so the future holds the
    /// entry alone and not the route it was made from: an `async fn` keeps its arguments
    /// beside its locals for as long as it runs, and a runtime copies every byte of a
    /// future it is handed (`block_on` moves it twice).
    pub(crate) fn fetch(
        &self,
        key: &str,
        store: Arc<dyn SecretStore>,
        name: SecretName,
        store_id: Arc<str>,
    ) -> impl Future<Output = Result<CacheAnswer>> + '_ {
        let entry = self.entry_for(key, store, name, store_id);
        async move { self.answer_from(&entry).await }
    }

    /// The miss path of a reference the cache holds but cannot serve (expired or
    /// invalidated): refreshed in place, with the entry's own store and name, so the
    /// reference is not routed again.
    pub(crate) fn refresh_expired<'a>(
        &'a self,
        expired: &'a Expired,
    ) -> impl Future<Output = Result<CacheAnswer>> + 'a {
        self.answer_from(&expired.0)
    }

    /// Loads `entry` (see [`SecretCache::load`]) and answers the read from what it loaded.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn would copy its arguments"
    )]
    fn answer_from<'a>(
        &'a self,
        entry: &'a Arc<Entry>,
    ) -> impl Future<Output = Result<CacheAnswer>> + 'a {
        // A block, not an `async fn` (see `EntryFlight::run`).
        async move {
            let (value, outcome) = self.load(entry, false).await?;
            self.answer(value, &entry.key, outcome)
        }
    }

    /// Refetches `key` now (no version check), replacing the cached value. A store failure
    /// is returned, not answered from the cache (the cached value is kept and still served).
    pub(crate) fn refresh_now(
        &self,
        key: &str,
        store: Arc<dyn SecretStore>,
        name: SecretName,
        store_id: Arc<str>,
    ) -> impl Future<Output = Result<()>> + '_ {
        let entry = self.entry_for(key, store, name, store_id);
        async move { self.load(&entry, true).await.map(|_| ()) }
    }

    /// Refreshes `entry` through its single-flight: the first caller calls the store, the
    /// others wait for its result.
    fn load<'a>(
        &'a self,
        entry: &'a Arc<Entry>,
        force: bool,
    ) -> impl Future<Output = Result<(Value, CacheOutcome)>> + 'a {
        entry.flight.run(move || self.refresh(entry, force))
    }

    /// The entry of a reference, inserted empty if it has none (a first read): the entry is
    /// then the single-flight of every caller of that first read too.
    ///
    /// Callers come here after the hit path found no entry, so the insert is tried first,
    /// without a lookup of its own: a first read hashes and probes the index once more, not
    /// twice. An entry found there (another caller's first read, or a `refresh_now`) is
    /// joined, and the unused one dropped.
    fn entry_for(
        &self,
        key: &str,
        store: Arc<dyn SecretStore>,
        name: SecretName,
        store_id: Arc<str>,
    ) -> Arc<Entry> {
        // A reference that is the bare name (the usual case) shares the name's own string.
        let key: Arc<str> = if **name.shared() == *key {
            name.shared().clone()
        } else {
            Arc::from(key)
        };
        let fresh = self.new_entry(key, store, name, store_id);
        let index = self.inner.index.pin();
        match index.try_insert(IndexKey(fresh.key.clone()), fresh.clone()) {
            Ok(_) => {}
            Err(occupied) if Arc::ptr_eq(&occupied.current.store, &fresh.store) => {
                return occupied.current.clone();
            }
            Err(_) => {
                // The reference now routes to another store: the new entry replaces the old.
                if let Some(old) = index.insert(IndexKey(fresh.key.clone()), fresh.clone()) {
                    self.inner.lifetimes.invalidate(old);
                    old.expire(&self.inner.lifetimes.graves);
                }
            }
        }
        // Tracked from the start, so an entry whose first read was abandoned (a caller's
        // timeout) is still evicted; the read's own admission then falls within the slack.
        self.admit(&fresh, clock::now_nanos());
        fresh
    }

    /// Refreshes `old` in place: its value is replaced, and the index is not written.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn would copy its arguments"
    )]
    fn refresh<'a>(
        &'a self,
        old: &'a Arc<Entry>,
        force: bool,
    ) -> impl Future<Output = Result<(Value, CacheOutcome)>> + 'a {
        async move {
            let inner = &*self.inner;
            let (store, name) = (&old.store, &old.name);
            // An entry never filled, or emptied by a write, has no expiry (0) and needs no
            // clock read to know it (about 6 ns each here, over a percent of what a miss
            // adds to the store call).
            let expires = old.expires.load(Ordering::Acquire);
            if !force
                && expires != 0
                && clock::now_nanos() < expires
                && !old.refreshing.load(Ordering::Relaxed)
                && let Some(value) = old.value(&inner.index.guard())
            {
                // Another flight refreshed it while this caller was queued.
                return Ok((value, CacheOutcome::Hit));
            }
            if !force
                && inner.config.version_check
                && store.capabilities().cheap_describe
                && old.holds_value(&inner.index.guard())
            {
                let started = inner.metrics.start_store_call();
                let described = store.describe(name).await;
                inner.metrics.end_store_call(started);
                match described {
                    Ok(meta) => {
                        let guard = inner.index.guard();
                        if let Some(current) = meta.version_with_stage(&Stage::Current)
                            && old.holds_version(current, &guard)
                            && let Some(value) = old.value(&guard)
                        {
                            let now = clock::now_nanos();
                            old.set_times(&inner.config, now);
                            self.admit(old, now);
                            return Ok((value, CacheOutcome::Hit));
                        }
                    }
                    Err(e) => {
                        inner.metrics.store_error(e.kind());
                        return self.on_error(old, true, e);
                    }
                }
            }
            let started = inner.metrics.start_store_call();
            let got = store.get(name, &VersionSelector::Current).await;
            inner.metrics.end_store_call(started);
            match got {
                Ok(version) => {
                    let value =
                        self.make_value(&old.key, name.clone(), old.store_id.clone(), version)?;
                    let now = old.publish(value.clone(), &inner.config, &inner.lifetimes.graves);
                    self.admit(old, now);
                    Ok((value, CacheOutcome::Miss))
                }
                Err(e) => {
                    inner.metrics.store_error(e.kind());
                    // A forced refresh reports the failure; the cached value stays as it was.
                    self.on_error(old, !force, e)
                }
            }
        }
    }

    /// Hands `entry` (new, or renewed) to the lifetime tracking (capacity, TTL eviction), off
    /// the caller's path. A renewal soon after the last admission skips it (see
    /// [`LIFETIME_SLACK`]), so a key written and read in a tight loop does not keep moka busy.
    /// `now`: the coarse clock's reading.
    fn admit(&self, entry: &Arc<Entry>, now: u64) {
        let last = entry.admitted.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < clock::nanos(LIFETIME_SLACK / 2) {
            return;
        }
        entry.admitted.store(now.max(1), Ordering::Relaxed);
        self.inner
            .lifetimes
            .admit(entry, &self.inner.index, &self.inner);
    }

    /// A failed refresh of `entry`: its value served past the TTL when `serve_stale` and the
    /// failure allow (stale-if-error), or else the error. A secret gone from the store, and an
    /// entry with nothing to serve (a failed first read), leave the index.
    fn on_error(
        &self,
        entry: &Arc<Entry>,
        serve_stale: bool,
        e: Error,
    ) -> Result<(Value, CacheOutcome)> {
        let inner = &*self.inner;
        let key = &*entry.key;
        let value = entry.value(&inner.index.guard());
        if e.kind() == ErrorKind::NotFound || value.is_none() {
            let removed = inner
                .index
                .pin()
                .remove_if(&KeyBytes(key.as_bytes()), |_, current| {
                    Arc::ptr_eq(current, entry)
                })
                .is_ok_and(|r| r.is_some());
            if removed {
                inner.lifetimes.invalidate(entry);
                entry.expire(&inner.lifetimes.graves);
            }
        }
        let stale_allowed = serve_stale
            && !matches!(
                e.kind(),
                ErrorKind::NotFound | ErrorKind::AccessDenied | ErrorKind::InvalidInput
            );
        let now = clock::now_nanos();
        match value {
            Some(value) if stale_allowed && now < entry.stale_until.load(Ordering::Relaxed) => {
                let retry = (inner.config.ttl / 10).min(Duration::from_secs(5));
                entry
                    .retry_at
                    .store(now.saturating_add(clock::nanos(retry)), Ordering::Relaxed);
                inner.metrics.stale.incr();
                tracing::warn!(
                    target: "sealbox::cache",
                    key,
                    error = %e,
                    "store failed; serving the cached value past its TTL (stale-if-error)"
                );
                Ok((value, CacheOutcome::Stale))
            }
            _ => Err(e),
        }
    }

    /// The cached form of `version` (sealed when the cache is).
    fn make_value(
        &self,
        key: &str,
        name: SecretName,
        store_id: Arc<str>,
        version: SecretVersion,
    ) -> Result<Value> {
        let SecretVersion {
            value,
            version,
            stages,
            created,
        } = version;
        let meta = VersionMeta::new(name, store_id, version, stages, created);
        Ok(match &self.inner.sealer {
            Some(sealer) => Value::Sealed(Shared::new(SealedVersion {
                value: sealer.seal(&value, key.as_bytes())?,
                meta: Arc::new(meta),
            })),
            None => Value::Plain(Shared::new(HandleInner::new(meta, value))),
        })
    }

    /// An entry without a value (expired): the first read fills it.
    fn new_entry(
        &self,
        key: Arc<str>,
        store: Arc<dyn SecretStore>,
        name: SecretName,
        store_id: Arc<str>,
    ) -> Arc<Entry> {
        Arc::new(Entry {
            key,
            store,
            name,
            store_id,
            plain: Slot::empty(),
            sealed: Slot::empty(),
            expires: AtomicU64::new(0),
            refresh_at: AtomicU64::new(0),
            stale_until: AtomicU64::new(0),
            retry_at: AtomicU64::new(0),
            refreshing: AtomicBool::new(false),
            admitted: AtomicU64::new(0),
            flight: EntryFlight::new(),
        })
    }

    /// Expires every cached entry for `name` in store `store_id`, whatever reference string
    /// cached it, and releases its value: the next read goes to the store, and a failing
    /// store cannot bring the old value back (stale-if-error). The entries keep their place,
    /// so that read refreshes them in place.
    ///
    /// A cached reference has no `#field` (fields are read through their whole secret), so
    /// it is one of three spellings: `NAME`, `sb://STORE/NAME` or `sb:///NAME`. Each is
    /// looked up, and expired only if it holds this store's secret: a write costs three
    /// lookups, whatever the cache holds.
    pub fn invalidate(&self, store_id: &str, name: &SecretName) {
        if !self.in_own_process() {
            return;
        }
        let n = name.as_str();
        let index = &self.inner.index;
        let guard = index.guard();
        let mut key = String::with_capacity("sb://".len() + store_id.len() + 1 + n.len());
        let spellings: [&[&str]; 3] = [&[n], &["sb://", store_id, "/", n], &["sb:///", n]];
        for parts in spellings {
            key.clear();
            parts.iter().for_each(|part| key.push_str(part));
            if let Some(e) = index.get(&KeyBytes(key.as_bytes()), &guard)
                && e.name == *name
                && &*e.store_id == store_id
            {
                e.expire(&self.inner.lifetimes.graves);
            }
        }
    }

    /// Runs the pending lifetime maintenance (queued entries, evictions) now instead of on
    /// the maintenance thread's next tick.
    pub fn run_pending_tasks(&self) {
        if !self.in_own_process() {
            return;
        }
        self.inner.lifetimes.run_pending_tasks(&self.inner.index);
    }

    /// Drops everything. The values are wiped before this returns unless a reader still
    /// holds them (a handle, or a read in progress on another thread).
    pub fn clear(&self) {
        // A forked child's copy holds only wiped values, and its locks may be held by the
        // parent's threads that were not copied.
        if !self.in_own_process() {
            return;
        }
        self.inner.lifetimes.clear();
        let index = self.inner.index.pin();
        // Retired here rather than queued for the maintenance thread, so that what a clear
        // drops leaves memory before it returns.
        let values: Vec<Unlinked> = index.iter().flat_map(|(_, e)| e.unlink()).collect();
        index.clear();
        drop(index);
        graves::retire(values, &self.inner.index);
        // Starts freeing the values and the removed entries now rather than with this
        // thread's next batch of retirements (a later read's, on its latency).
        graves::flush(&self.inner.index);
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
    async fn clear_wipes_the_values_before_it_returns() {
        let store = filled(3).await;
        let cache = cache(1000);
        // No maintenance thread: a value queued for it would stay.
        assert!(
            cache
                .inner
                .lifetimes
                .graves
                .thread
                .set(Some(std::thread::current()))
                .is_ok()
        );
        let mut values = Vec::new();
        for i in 0..3 {
            miss(&cache, &store, i).await;
            let entry = indexed(&cache, &format!("app/k{i}")).expect("indexed");
            let value = entry.plain.load(&cache.inner.index.guard());
            values.push(Shared::watch(&value.expect("a cached value")));
        }
        cache.clear();
        assert_eq!(cache.len(), 0);
        for (i, v) in values.iter().enumerate() {
            assert!(v.upgrade().is_none(), "value {i} outlived the clear");
        }
    }

    #[tokio::test]
    async fn forgetting_a_removed_entry_keeps_the_lifetime_of_a_newer_one_of_its_name() {
        let store = filled(1).await;
        let cache = cache(1000);
        miss(&cache, &store, 0).await;
        let old = indexed(&cache, "app/k0").expect("indexed");
        cache.run_pending_tasks();
        // Removed as a failed refresh removes it, and read again (a new entry) before the
        // remover forgets the old one's lifetime.
        assert!(
            cache
                .inner
                .index
                .pin()
                .remove(&KeyBytes(b"app/k0"))
                .is_some()
        );
        miss(&cache, &store, 0).await;
        let new = indexed(&cache, "app/k0").expect("indexed again");
        assert!(!Arc::ptr_eq(&old, &new));
        cache.run_pending_tasks();
        let lifetimes = &cache.inner.lifetimes;
        assert!(lifetimes.tracks(&old) && lifetimes.tracks(&new));
        lifetimes.invalidate(&old);
        assert!(!lifetimes.tracks(&old));
        assert!(
            lifetimes.tracks(&new),
            "the new entry would never be evicted"
        );
    }

    #[tokio::test]
    async fn an_entry_replaced_by_one_of_another_store_gives_up_its_lifetime() {
        let (first, second) = (filled(1).await, filled(1).await);
        let cache = cache(1000);
        miss(&cache, &first, 0).await;
        let old = indexed(&cache, "app/k0").expect("indexed");
        cache.run_pending_tasks();
        assert!(cache.inner.lifetimes.tracks(&old));
        miss(&cache, &second, 0).await;
        let new = indexed(&cache, "app/k0").expect("indexed");
        assert!(Arc::ptr_eq(
            &new.store,
            &(second.clone() as Arc<dyn SecretStore>)
        ));
        cache.run_pending_tasks();
        assert!(
            !cache.inner.lifetimes.tracks(&old),
            "it would hold a place in the capacity"
        );
        assert!(cache.inner.lifetimes.tracks(&new));
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn drained_queues_keep_their_capacity() {
        let store = filled(40).await;
        let cache = cache(1000);
        let lifetimes = &cache.inner.lifetimes;
        // No maintenance thread: this test's drains are the only ones.
        assert!(
            lifetimes
                .graves
                .thread
                .set(Some(std::thread::current()))
                .is_ok()
        );
        for round in 0..2 {
            for i in 0..20 {
                miss(&cache, &store, round * 20 + i).await;
            }
            cache.run_pending_tasks();
            if round == 0 {
                // An idle tick's drain between the bursts, with nothing queued.
                assert_eq!(lifetimes.drain(&cache.inner.index), 0);
            }
        }
        // The queue was left a used buffer, not a new empty one that the next miss would
        // have to grow (an empty drain once handed it the batch's unused one).
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

    fn indexed(cache: &SecretCache, key: &str) -> Option<Arc<Entry>> {
        cache
            .inner
            .index
            .pin()
            .get(&KeyBytes(key.as_bytes()))
            .cloned()
    }

    #[tokio::test]
    async fn an_invalidated_entry_misses_releases_its_value_and_is_refreshed_in_place() {
        let store = filled(1).await;
        let cache = cache(1000);
        miss(&cache, &store, 0).await;
        let entry = indexed(&cache, "app/k0").expect("indexed");
        let first = entry
            .plain
            .load(&cache.inner.index.guard())
            .expect("a value");
        assert!(cache.lookup(b"app/k0").is_some());

        cache.invalidate("default", &SecretName::new("app/k0").unwrap());
        assert!(
            cache.lookup(b"app/k0").is_none(),
            "an invalidated entry misses"
        );
        assert!(entry.value(&cache.inner.index.guard()).is_none());
        eventually("the cache no longer holds the old value", || {
            Shared::count(&first) == 1
        })
        .await;

        miss(&cache, &store, 0).await;
        let again = indexed(&cache, "app/k0").expect("indexed");
        assert!(
            Arc::ptr_eq(&entry, &again),
            "refreshed in place, not re-inserted"
        );
        let second = again
            .plain
            .load(&cache.inner.index.guard())
            .expect("a value");
        assert!(
            !Shared::ptr_eq(&first, &second),
            "a fresh value from the store"
        );
        assert!(matches!(
            cache.lookup(b"app/k0"),
            Some(Ok(CacheAnswer {
                outcome: CacheOutcome::Hit,
                ..
            }))
        ));
        cache.run_pending_tasks();
        assert_eq!(cache.inner.lifetimes.tracked(), 1);
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn a_renewal_soon_after_an_admission_leaves_moka_alone() {
        let store = filled(1).await;
        let cache = cache(1000);
        let name = SecretName::new("app/k0").unwrap();
        miss(&cache, &store, 0).await;
        let entry = indexed(&cache, "app/k0").expect("indexed");
        let first = entry.admitted.load(Ordering::Relaxed);
        assert_ne!(first, 0);
        let lifetimes = &cache.inner.lifetimes;
        cache.run_pending_tasks();
        for _ in 0..10 {
            cache.invalidate("default", &name);
            miss(&cache, &store, 0).await;
        }
        assert_eq!(lifetimes.queued(), 0, "refreshed within the slack");
        assert_eq!(entry.admitted.load(Ordering::Relaxed), first);
        tokio::time::sleep(LIFETIME_SLACK / 2 + Duration::from_millis(50)).await;
        cache.invalidate("default", &name);
        miss(&cache, &store, 0).await;
        assert!(
            entry.admitted.load(Ordering::Relaxed) > first,
            "admitted again"
        );
        assert_eq!(lifetimes.tracked(), 1);
    }

    #[tokio::test]
    async fn a_sealed_entry_is_refreshed_in_place_too() {
        let store = filled(1).await;
        let config = CacheConfig {
            sealed: true,
            ..CacheConfig::default()
        };
        let cache = SecretCache::new(config, Arc::new(ClientMetrics::default())).unwrap();
        miss(&cache, &store, 0).await;
        let entry = indexed(&cache, "app/k0").expect("indexed");
        let before = cache.lookup(b"app/k0").expect("hit").unwrap().handle;
        cache.invalidate("default", &SecretName::new("app/k0").unwrap());
        assert!(cache.lookup(b"app/k0").is_none());
        miss(&cache, &store, 0).await;
        assert!(Arc::ptr_eq(&entry, &indexed(&cache, "app/k0").unwrap()));
        let after = cache.lookup(b"app/k0").expect("hit").unwrap().handle;
        assert_eq!(after.version(), before.version());
        assert!(after.secret().ct_eq(before.secret()));
    }

    #[tokio::test]
    async fn invalidation_expires_every_spelling_of_the_name_in_that_store_only() {
        let store = filled(2).await;
        let cache = cache(1000);
        let references = [
            ("app/k0", "default", "app/k0"),
            ("sb://default/app/k0", "default", "app/k0"),
            ("sb:///app/k0", "default", "app/k0"),
            ("sb://other/app/k0", "other", "app/k0"),
            ("app/k1", "default", "app/k1"),
        ];
        for (reference, store_id, n) in references {
            let n = SecretName::new(n).unwrap();
            cache
                .fetch(reference, store.clone(), n, Arc::from(store_id))
                .await
                .unwrap();
        }
        assert_eq!(cache.len(), 5);
        cache.invalidate("default", &SecretName::new("app/k0").unwrap());
        let answering: Vec<&str> = references
            .iter()
            .map(|r| r.0)
            .filter(|r| cache.lookup(r.as_bytes()).is_some())
            .collect();
        assert_eq!(answering, ["sb://other/app/k0", "app/k1"]);
    }

    #[tokio::test]
    async fn an_entry_is_tracked_from_its_insertion_before_its_first_read_lands() {
        let store = filled(1).await;
        let cache = cache(1000);
        let name = SecretName::new("app/k0").unwrap();
        // What an abandoned first read leaves: the empty entry, and no flight running.
        let entry = cache.entry_for("app/k0", store, name, Arc::from("default"));
        assert!(entry.value(&cache.inner.index.guard()).is_none());
        cache.run_pending_tasks();
        assert_eq!(cache.inner.lifetimes.tracked(), 1, "moka will evict it");
    }

    #[tokio::test]
    async fn a_first_read_of_a_missing_secret_leaves_no_entry_behind() {
        let store = filled(0).await;
        let cache = cache(1000);
        let name = SecretName::new("app/k0").unwrap();
        let e = cache
            .fetch("app/k0", store.clone(), name, Arc::from("default"))
            .await
            .err()
            .expect("not found");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(cache.is_empty());
    }

    #[tokio::test]
    async fn an_idle_cache_releases_a_value_once_it_can_no_longer_be_served() {
        // Both a cache whose misses queue their entries for the maintenance thread and a
        // small one whose misses insert them into moka themselves.
        for capacity in [1000, 4] {
            idle_release(capacity).await;
        }
    }

    async fn idle_release(capacity: u64) {
        let store = filled(1).await;
        let config = CacheConfig {
            ttl: Duration::from_millis(100),
            max_stale: Duration::from_millis(100),
            capacity,
            ..CacheConfig::default()
        };
        let cache = SecretCache::new(config, Arc::new(ClientMetrics::default())).unwrap();
        miss(&cache, &store, 0).await;
        let entry = indexed(&cache, "app/k0").expect("cached");
        let value = match entry.value(&cache.inner.index.guard()) {
            Some(Value::Plain(h)) => Shared::watch(&h),
            _ => panic!("a plain value"),
        };
        drop(entry);
        // No reads, no writes, nothing queued: the maintenance thread alone must evict the
        // entry once TTL + max_stale (+ moka's slack) have passed, and so free (and wipe) the
        // value rather than keep it until the next miss happens to run moka's housekeeping.
        let lifetime = Duration::from_millis(200) + LIFETIME_SLACK;
        tokio::time::sleep(lifetime).await;
        for _ in 0..200 {
            if value.upgrade().is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            value.upgrade().is_none(),
            "the value outlived its last serving time by 2 s (capacity {capacity})"
        );
        assert!(cache.is_empty(), "the entry is still indexed");
    }

    /// A watch on the plain value `key`'s entry holds (`upgrade()` is `None` once it is freed).
    fn held_value(cache: &SecretCache, key: &str) -> std::sync::Weak<()> {
        let entry = indexed(cache, key).expect("cached");
        match entry.value(&cache.inner.index.guard()) {
            Some(Value::Plain(h)) => Shared::watch(&h),
            _ => panic!("no plain value"),
        }
    }

    #[tokio::test]
    async fn values_given_up_by_their_entry_are_freed_within_a_tick_not_a_batch() {
        let store = filled(1).await;
        let cache = cache(1000);
        let name = SecretName::new("app/k0").unwrap();
        miss(&cache, &store, 0).await;
        // Replaced by a refresh (a local write's invalidation, then a read).
        let first = held_value(&cache, "app/k0");
        cache.invalidate("default", &name);
        miss(&cache, &store, 0).await;
        eventually("the replaced value is freed", || first.upgrade().is_none()).await;
        // Released by an invalidation, with no read after it.
        let second = held_value(&cache, "app/k0");
        cache.invalidate("default", &name);
        eventually("the invalidated value is freed", || {
            second.upgrade().is_none()
        })
        .await;
        // Dropped by `clear`, the cache then empty (the maintenance thread parked untimed).
        miss(&cache, &store, 0).await;
        let third = held_value(&cache, "app/k0");
        tokio::time::sleep(lifetimes::TICK * (lifetimes::IDLE_TICKS + 50)).await;
        cache.clear();
        eventually("the cleared value is freed", || third.upgrade().is_none()).await;
    }

    #[test]
    fn a_burst_of_given_up_values_is_freed_by_the_caller_that_fills_a_batch() {
        let cache = cache(1000);
        let graves = &cache.inner.lifetimes.graves;
        // A maintenance thread that never runs: only the callers can free anything.
        assert!(graves.thread.set(Some(std::thread::current())).is_ok());
        let value = |i: usize| {
            let version = SecretVersion {
                value: Secret::random(16).unwrap(),
                version: VersionId::new(i.to_string()),
                stages: Vec::new(),
                created: None,
            };
            let name = SecretName::new("app/k0").unwrap();
            match cache.make_value("app/k0", name, Arc::from("default"), version) {
                Ok(Value::Plain(h)) => h,
                _ => panic!("no plain value"),
            }
        };
        let slot = Slot::new(value(0));
        let mut given_up = Vec::new();
        for i in 1..=RETIRE_BATCH {
            let old = slot.load(&cache.inner.index.guard()).unwrap();
            given_up.push(Shared::watch(&old));
            drop(old);
            let unlinked = slot.replace(Some(value(i))).unwrap();
            graves.bury(Unlinked::Plain(unlinked), false);
            if i < RETIRE_BATCH {
                assert!(
                    given_up[0].upgrade().is_some(),
                    "freed before a batch filled"
                );
            }
        }
        // The bury that filled the batch freed all of it, on this thread, at once.
        assert!(given_up.iter().all(|v| v.upgrade().is_none()));
        let last = slot.replace(None).unwrap();
        last.retire(&cache.inner.index.guard());
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
