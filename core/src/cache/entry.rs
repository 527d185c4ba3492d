//! One cached reference ([`Entry`]) and the value it holds: the times that decide how it is
//! served (fresh until its TTL, refreshed ahead after `refresh_ahead`, stale-if-error until
//! `max_stale`), and how a new value replaces the old in place or the entry is expired.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::flight::EntryFlight;
use super::graves::{Graveyard, Unlinked};
use super::sealed::SealedValue;
use super::slot::Slot;
use super::{CacheConfig, HandleInner, Shared, VersionMeta, clock};
use crate::audit::CacheOutcome;
use crate::store::{SecretName, SecretStore, VersionId};

/// A cached version, as a flight hands it to its callers.
#[derive(Clone)]
pub(super) enum Value {
    /// The handle every hit returns, with the version's metadata inside.
    Plain(Shared<HandleInner>),
    /// Decrypted into a fresh handle per hit.
    Sealed(Shared<SealedVersion>),
}

/// A sealed cache's value: the version encrypted in memory, with its metadata.
pub(super) struct SealedVersion {
    pub(super) value: SealedValue,
    pub(super) meta: Arc<VersionMeta>,
}

/// One cached reference. The entry outlives its values: a refresh (TTL, refresh-ahead, a
/// local write) replaces the value in place, so only a reference's first read inserts into
/// the index.
pub(super) struct Entry {
    pub(super) key: Arc<str>,
    pub(super) store: Arc<dyn SecretStore>,
    pub(super) name: SecretName,
    pub(super) store_id: Arc<str>,
    /// The value in a plain cache (empty after an invalidation).
    pub(super) plain: Slot<HandleInner>,
    /// The value in a sealed cache (empty after an invalidation).
    pub(super) sealed: Slot<SealedVersion>,
    pub(super) expires: AtomicU64,
    pub(super) refresh_at: AtomicU64,
    pub(super) stale_until: AtomicU64,
    pub(super) retry_at: AtomicU64,
    pub(super) refreshing: AtomicBool,
    /// When the entry was last handed to moka (0: never).
    pub(super) admitted: AtomicU64,
    /// Single-flight for refreshing this entry.
    pub(super) flight: EntryFlight<(Value, CacheOutcome)>,
}

impl Entry {
    /// The value, if the entry holds one. `guard` is the index's.
    pub(super) fn value(&self, guard: &impl papaya::Guard) -> Option<Value> {
        match self.plain.load(guard) {
            Some(h) => Some(Value::Plain(h)),
            None => self.sealed.load(guard).map(Value::Sealed),
        }
    }

    /// Whether the entry holds a value (without taking a reference to it).
    pub(super) fn holds_value(&self, guard: &impl papaya::Guard) -> bool {
        self.plain.get(guard).is_some() || self.sealed.get(guard).is_some()
    }

    /// Whether the entry holds `version`.
    pub(super) fn holds_version(&self, version: &VersionId, guard: &impl papaya::Guard) -> bool {
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
    pub(super) fn publish(&self, value: Value, config: &CacheConfig, graves: &Graveyard) -> u64 {
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
    pub(super) fn expire(&self, graves: &Graveyard) {
        for old in self.unlink() {
            graves.bury(old, true);
        }
    }

    /// Expires the entry and hands back its values, which the caller must retire.
    pub(super) fn unlink(&self) -> impl Iterator<Item = Unlinked> {
        self.expires.store(0, Ordering::Release);
        self.stale_until.store(0, Ordering::Relaxed);
        let plain = self.plain.replace(None).map(Unlinked::Plain);
        let sealed = self.sealed.replace(None).map(Unlinked::Sealed);
        plain.into_iter().chain(sealed)
    }

    pub(super) fn set_times(&self, config: &CacheConfig, now: u64) {
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

    /// An entry without a value (expired): the first read fills it.
    pub(super) fn empty(
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
}
