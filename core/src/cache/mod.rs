//! The read cache in front of the stores.
//!
//! * **Hit path**: a lock-free read index (`papaya`, keyed by the reference string the caller
//!   passed) answers with another `Arc` to the cached value. It takes no lock, does not enter
//!   the async runtime, checks freshness on a coarse monotonic clock, and allocates nothing
//!   (sealed mode allocates the freshly decrypted copy it returns; see `probe.rs`).
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
//!   An entry's times decide how it is served (see `entry.rs`); refreshes run in `refresh.rs`.
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

mod config;
mod entry;
mod flight;
mod graves;
pub(crate) mod handle;
mod key;
mod lifetimes;
mod probe;
mod refresh;
mod sealed;
mod shared;
mod slot;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

// Also named `cache::clock` by the client, which dates its answers with it.
use crate::audit::Resource;
pub(crate) use crate::clock;
use crate::error::{ErrorKind, Result};
use crate::monitor::metrics::ClientMetrics;
use crate::process::ProcessBound;
use crate::store::SecretName;
use graves::{Graveyard, Unlinked};
use key::{IndexKey, KeyBytes};
use lifetimes::Lifetimes;

pub use config::CacheConfig;
use entry::{Entry, SealedVersion};
pub(crate) use handle::{HandleInner, SecretHandle, VersionMeta};
pub(crate) use probe::{CacheAnswer, Expired, Probe};
use refresh::BackgroundRuntime;
use sealed::Sealer;
pub(crate) use shared::Shared;

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
/// [`ErrorKind::Forked`] before it reaches the cache, and the
/// cache's own methods do nothing there (its values are wiped and its maintenance thread does
/// not exist).
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
                runtime: BackgroundRuntime::here(),
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
    use std::sync::atomic::Ordering;

    use super::entry::Value;
    use super::slot::Slot;
    use super::*;
    use crate::Secret;
    use crate::audit::CacheOutcome;
    use crate::error::ErrorKind;
    use crate::store::memory::MemoryStore;
    use crate::store::{PutOptions, SecretStore, SecretVersion, VersionId};

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
