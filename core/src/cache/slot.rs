//! A cache entry's value, replaced in place by refreshes while hits read it without a lock.
//!
//! A refresh or an invalidation swaps the pointer and gets back the value it replaced as an
//! [`Unlinked`], which may only be released by retiring it through the read index's `seize`
//! collector. Readers hold a guard of that collector (the hit path already holds one for the
//! index lookup), so a retired value is freed only once every guard that could have loaded it
//! is gone. A refresh of a known key therefore writes one pointer: no new entry, no index
//! insert, no index node retired.
//!
//! Who retires, and when, is the cache's choice (see `lifetimes.rs`): `seize` frees a
//! thread's retirements in batches, so a value retired on a caller's thread could stay in
//! memory until that thread retires 31 more.

use std::marker::PhantomData;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use papaya::Guard;

use super::Shared;

/// Null, or a `Shared<T>` given up with [`Shared::into_raw`] that the slot owns.
pub(super) struct Slot<T> {
    ptr: AtomicPtr<T>,
    /// Send and Sync exactly when `Shared<T>` is.
    _owns: PhantomData<Shared<T>>,
}

impl<T> Slot<T> {
    /// A slot holding nothing.
    pub(super) fn empty() -> Slot<T> {
        Slot {
            ptr: AtomicPtr::new(ptr::null_mut()),
            _owns: PhantomData,
        }
    }

    /// A slot holding `value`.
    #[cfg(test)]
    pub(super) fn new(value: Shared<T>) -> Slot<T> {
        Slot {
            ptr: AtomicPtr::new(Shared::into_raw(value).cast_mut()),
            _owns: PhantomData,
        }
    }

    /// The value, borrowed while both the slot and `guard` live. `guard` must belong to the
    /// collector that [`Slot::replace`] retires through.
    #[inline]
    pub(super) fn get<'a>(&'a self, guard: &'a impl Guard) -> Option<&'a T> {
        let p = guard.protect(&self.ptr, Ordering::Acquire);
        // SAFETY: `p` is null or came from `Shared::into_raw`. A value replaced after this load
        // is retired through the guard's collector, which frees it only after `guard` is
        // dropped; a value still in the slot lives as long as the slot. The borrow is
        // bounded by both.
        unsafe { p.as_ref() }
    }

    /// Another pointer to the value (one atomic increment), under `guard` as for
    /// [`Slot::get`].
    #[inline]
    pub(super) fn load(&self, guard: &impl Guard) -> Option<Shared<T>> {
        let p = guard.protect(&self.ptr, Ordering::Acquire);
        if p.is_null() {
            return None;
        }
        // SAFETY: as in `get`, `p` is a live value while `guard` is held; the increment
        // gives the returned pointer a count of its own.
        unsafe {
            Shared::increment_count(p);
            Some(Shared::from_raw(p))
        }
    }

    /// Puts `value` in the slot (or empties it) and hands back what it held, which readers
    /// may still be using: it must be retired ([`Unlinked::retire`]), not dropped.
    #[must_use = "the old value must be retired"]
    pub(super) fn replace(&self, value: Option<Shared<T>>) -> Option<Unlinked<T>> {
        let new = value.map_or(ptr::null_mut(), |v| Shared::into_raw(v).cast_mut());
        let old = self.ptr.swap(new, Ordering::AcqRel);
        // SAFETY: a non-null `old` came from `Shared::into_raw` and the slot owned that
        // count; the swap made it unreachable from the slot, so the count passes to the
        // `Unlinked`.
        (!old.is_null()).then(|| Unlinked(Some(unsafe { Shared::from_raw(old) })))
    }
}

/// A value taken out of a [`Slot`]. Readers may still hold guard-protected pointers to it
/// and be about to take a count of their own, so it is released only through the
/// collector. One dropped instead is leaked (never freed under a reader), and debug builds
/// fail.
#[must_use = "an unlinked value must be retired through the index's collector"]
pub(super) struct Unlinked<T>(Option<Shared<T>>);

/// Values retired by [`Unlinked::retire`], and those the collector has released since.
static RETIRED: AtomicU64 = AtomicU64::new(0);
static RELEASED: AtomicU64 = AtomicU64::new(0);

impl<T> Unlinked<T> {
    /// Releases the value once every guard of `guard`'s collector that could have loaded it
    /// is gone. That collector must be the one every reader's guard belongs to.
    pub(super) fn retire(mut self, guard: &impl Guard) {
        if let Some(value) = self.0.take() {
            RETIRED.fetch_add(1, Ordering::Relaxed);
            // SAFETY: the pointer carries the count this `Unlinked` owned and is retired
            // once; readers that loaded it hold guards of this collector, which defers the
            // release until they are gone.
            unsafe { guard.defer_retire(Shared::into_raw(value).cast_mut(), release::<T>) }
        }
    }
}

impl<T> Drop for Unlinked<T> {
    fn drop(&mut self) {
        if let Some(value) = self.0.take() {
            std::mem::forget(value);
            debug_assert!(
                std::thread::panicking(),
                "an unlinked value was dropped, not retired"
            );
        }
    }
}

/// Whether values retired in this process are still waiting for the collector.
pub(super) fn retirements_pending() -> bool {
    RELEASED.load(Ordering::Relaxed) < RETIRED.load(Ordering::Relaxed)
}

/// Releases the slot's pointer to a retired value.
///
/// # Safety
/// `ptr` came from `Shared::into_raw` and is released once.
unsafe fn release<T>(ptr: *mut T, _: &seize::Collector) {
    // SAFETY: guaranteed by the caller (`Unlinked::retire` retires each pointer once).
    drop(unsafe { Shared::from_raw(ptr) });
    RELEASED.fetch_add(1, Ordering::Relaxed);
}

impl<T> Drop for Slot<T> {
    fn drop(&mut self) {
        let p = *self.ptr.get_mut();
        if !p.is_null() {
            // SAFETY: the slot owns this pointer, released once here. `&mut self` means no
            // borrow from `get` is left (they live no longer than `&self`), and every pointer
            // that `load` handed out holds a count of its own.
            drop(unsafe { Shared::from_raw(p) });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Shared values take at least 56 bytes (see `shared.rs`).
    struct Counted(Arc<()>, #[allow(dead_code)] [u64; 7]);

    fn map() -> papaya::HashMap<u8, u8> {
        papaya::HashMap::new()
    }

    #[test]
    fn a_replaced_value_lives_until_the_guards_that_saw_it_are_gone() {
        let index = map();
        let alive = Arc::new(());
        let slot = Slot::new(Shared::new(Counted(alive.clone(), [0; 7])));
        let reader = index.guard();
        let seen = slot.get(&reader).map(|c| Arc::strong_count(&c.0));
        assert_eq!(seen, Some(2));
        slot.replace(None).expect("held").retire(&index.guard());
        // The reader's guard still holds the retired value.
        assert_eq!(Arc::strong_count(&alive), 2);
        drop(reader);
        // Reclaimed once the collector runs its batch; flush it.
        index.guard().flush();
        assert!(slot.load(&index.guard()).is_none());
        drop(index);
        assert_eq!(
            Arc::strong_count(&alive),
            1,
            "the retired value was released"
        );
    }

    #[test]
    fn load_gives_an_arc_of_its_own_and_drop_releases_the_held_value() {
        let index = map();
        let alive = Arc::new(());
        let slot = Slot::new(Shared::new(Counted(alive.clone(), [0; 7])));
        let loaded = slot.load(&index.guard()).expect("held");
        drop(slot);
        assert_eq!(Arc::strong_count(&alive), 2, "the loaded pointer keeps it");
        drop(loaded);
        assert_eq!(Arc::strong_count(&alive), 1);
    }

    /// A value that knows whether it was freed, counting its frees.
    struct Canary {
        alive: u64,
        _size: [u64; 7],
        frees: Arc<std::sync::atomic::AtomicUsize>,
    }

    const ALIVE: u64 = 0x5ea1_b0c5;

    impl Drop for Canary {
        fn drop(&mut self) {
            assert_eq!(self.alive, ALIVE, "freed twice");
            self.alive = 0;
            self.frees.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn readers_never_see_a_freed_value_and_every_value_is_freed_once() {
        use std::sync::atomic::{AtomicBool, AtomicUsize};
        const WRITES: usize = 20_000;
        let index = Arc::new(map());
        let frees = Arc::new(AtomicUsize::new(0));
        let canary = || {
            Shared::new(Canary {
                alive: ALIVE,
                _size: [0; 7],
                frees: frees.clone(),
            })
        };
        let slot = Arc::new(Slot::new(canary()));
        let done = Arc::new(AtomicBool::new(false));
        let reads = Arc::new(AtomicUsize::new(0));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (index, slot, done) = (index.clone(), slot.clone(), done.clone());
                let reads = reads.clone();
                std::thread::spawn(move || {
                    while !done.load(Ordering::Relaxed) {
                        let guard = index.guard();
                        if let Some(c) = slot.get(&guard) {
                            assert_eq!(c.alive, ALIVE, "read a freed value");
                        }
                        if let Some(c) = slot.load(&guard) {
                            drop(guard);
                            assert_eq!(c.alive, ALIVE, "a loaded value was freed");
                        }
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        // Writes go on until the readers have read alongside them for a while.
        let mut made = 1;
        let mut i = 0;
        while i < WRITES || reads.load(Ordering::Relaxed) < 10_000 {
            let value = (i % 7 != 0).then(canary);
            made += usize::from(value.is_some());
            if let Some(old) = slot.replace(value) {
                old.retire(&index.guard());
            }
            i += 1;
        }
        done.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().expect("a reader failed");
        }
        drop(slot);
        drop(index);
        assert_eq!(frees.load(Ordering::SeqCst), made);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "dropped, not retired")]
    fn an_unlinked_value_dropped_instead_of_retired_is_caught() {
        let slot = Slot::new(Shared::new([1u8; 64]));
        drop(slot.replace(None));
    }

    #[test]
    fn replace_swaps_values_in_order() {
        let index = map();
        let slot = Slot::empty();
        assert!(slot.load(&index.guard()).is_none());
        for v in 0..100u32 {
            if let Some(old) = slot.replace(Some(Shared::new([v; 16]))) {
                old.retire(&index.guard());
            }
            assert_eq!(slot.get(&index.guard()).map(|a| a[15]), Some(v));
        }
    }
}
