//! The hit path: what the read index holds for a reference ([`Probe`]), and the answer a read
//! gets ([`CacheAnswer`]). It takes no lock, does not enter the async runtime and allocates
//! nothing (sealed mode allocates the decrypted copy it returns).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::entry::{Entry, SealedVersion, Value};
use super::key::KeyBytes;
use super::{HandleInner, SecretCache, SecretHandle, Shared, clock};
use crate::audit::{CacheOutcome, Resource};
use crate::error::{Error, Result};

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
pub(crate) struct Expired(pub(super) Arc<Entry>);

impl Expired {
    /// The audit resource it reads (no version yet), for policy checks and failures.
    pub(crate) fn resource(&self) -> Arc<Resource> {
        Resource::in_store(self.0.name.as_str(), self.0.store_id.clone())
    }
}

impl SecretCache {
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

    pub(super) fn answer(
        &self,
        value: Value,
        key: &str,
        outcome: CacheOutcome,
    ) -> Result<CacheAnswer> {
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
}
