//! Filling and refreshing entries (the miss path): a first read, an expired or invalidated
//! entry, a refresh-ahead in the background and a forced refresh all run through the entry's
//! single flight, ask a store that describes cheaply whether the version changed
//! (`version_check`), and serve the old value when the store fails (stale-if-error).

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::entry::{Entry, SealedVersion, Value};
use super::key::{IndexKey, KeyBytes};
use super::probe::{CacheAnswer, Expired};
use super::{HandleInner, LIFETIME_SLACK, SecretCache, Shared, VersionMeta, clock};
use crate::audit::{CacheOutcome, Resource};
use crate::error::{Error, ErrorKind, Result};
use crate::store::{SecretName, SecretStore, SecretVersion, Stage, VersionSelector};

/// Where refresh-ahead tasks run: the runtime the client was built in, or a small runtime of
/// the cache's own (shut down in the background on drop, so dropping a client inside async
/// code cannot panic).
pub(super) struct BackgroundRuntime {
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
    /// The runtime the caller runs in, if any; else the cache's own, made on first need.
    pub(super) fn here() -> BackgroundRuntime {
        BackgroundRuntime {
            handle: tokio::runtime::Handle::try_current().ok(),
            own: OnceLock::new(),
        }
    }

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

impl SecretCache {
    /// Calls `hook` after every refresh-ahead read from a store (a read no caller waits
    /// for, so that no other path sees it): the client audits them. Set once.
    pub(crate) fn on_refresh_ahead(&self, hook: super::RefreshHook) {
        let _ = self.inner.refreshed.set(hook);
    }

    pub(super) fn spawn_refresh(&self, entry: Arc<Entry>) {
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
    pub(super) fn entry_for(
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
        let fresh = Entry::empty(key, store, name, store_id);
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
    pub(super) fn make_value(
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
}
