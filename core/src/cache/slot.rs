//! A cache entry's value, replaced in place by refreshes while hits read it without a lock.
//!
//! A refresh or an invalidation swaps the pointer and retires the value it replaced through
//! the read index's `seize` collector. Readers hold a guard of that collector (the hit path
//! already holds one for the index lookup), so a retired value is freed only once every
//! guard that could have loaded it is gone. A refresh of a known key therefore writes one
//! pointer: no new entry, no index insert, no index node retired.

use std::marker::PhantomData;
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicPtr, Ordering};

use papaya::Guard;

/// Null, or an `Arc<T>` given up with [`Arc::into_raw`] that the slot owns.
pub(super) struct Slot<T> {
    ptr: AtomicPtr<T>,
    /// Send and Sync exactly when `Arc<T>` is.
    _owns: PhantomData<Arc<T>>,
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
    pub(super) fn new(value: Arc<T>) -> Slot<T> {
        Slot {
            ptr: AtomicPtr::new(Arc::into_raw(value).cast_mut()),
            _owns: PhantomData,
        }
    }

    /// The value, borrowed while both the slot and `guard` live. `guard` must belong to the
    /// collector that [`Slot::replace`] retires through.
    #[inline]
    pub(super) fn get<'a>(&'a self, guard: &'a impl Guard) -> Option<&'a T> {
        let p = guard.protect(&self.ptr, Ordering::Acquire);
        // SAFETY: `p` is null or came from `Arc::into_raw`. A value replaced after this load
        // is retired through the guard's collector, which frees it only after `guard` is
        // dropped; a value still in the slot lives as long as the slot. The borrow is
        // bounded by both.
        unsafe { p.as_ref() }
    }

    /// Another `Arc` to the value (one atomic increment), under `guard` as for [`Slot::get`].
    #[inline]
    pub(super) fn load(&self, guard: &impl Guard) -> Option<Arc<T>> {
        let p = guard.protect(&self.ptr, Ordering::Acquire);
        if p.is_null() {
            return None;
        }
        // SAFETY: as in `get`, `p` is a live `Arc` allocation while `guard` is held; the
        // increment gives the returned `Arc` a count of its own.
        unsafe {
            Arc::increment_strong_count(p);
            Some(Arc::from_raw(p))
        }
    }

    /// Puts `value` in the slot (or empties it) and retires what it held through `guard`'s
    /// collector, which must be the one every reader's guard belongs to.
    pub(super) fn replace(&self, value: Option<Arc<T>>, guard: &impl Guard) {
        let new = value.map_or(ptr::null_mut(), |v| Arc::into_raw(v).cast_mut());
        let old = self.ptr.swap(new, Ordering::AcqRel);
        if !old.is_null() {
            // SAFETY: `old` came from `Arc::into_raw` and is no longer reachable from the
            // slot; readers that loaded it hold guards of this collector, which defers the
            // release until they are gone.
            unsafe { guard.defer_retire(old, release::<T>) }
        }
    }
}

/// Releases the slot's `Arc` to a retired value.
///
/// # Safety
/// `ptr` came from `Arc::into_raw` and is released once.
unsafe fn release<T>(ptr: *mut T, _: &seize::Collector) {
    // SAFETY: guaranteed by the caller (`Slot::replace` retires each pointer once).
    drop(unsafe { Arc::from_raw(ptr) });
}

impl<T> Drop for Slot<T> {
    fn drop(&mut self) {
        let p = *self.ptr.get_mut();
        if !p.is_null() {
            // SAFETY: the slot owns this `Arc`. Dropping the slot means its entry is gone:
            // the index retires entries through the same collector, so no guard that could
            // have loaded `p` through this slot is still held.
            drop(unsafe { Arc::from_raw(p) });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counted(Arc<()>);

    fn map() -> papaya::HashMap<u8, u8> {
        papaya::HashMap::new()
    }

    #[test]
    fn a_replaced_value_lives_until_the_guards_that_saw_it_are_gone() {
        let index = map();
        let alive = Arc::new(());
        let slot = Slot::new(Arc::new(Counted(alive.clone())));
        let reader = index.guard();
        let seen = slot.get(&reader).map(|c| Arc::strong_count(&c.0));
        assert_eq!(seen, Some(2));
        slot.replace(None, &index.guard());
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
        let slot = Slot::new(Arc::new(Counted(alive.clone())));
        let loaded = slot.load(&index.guard()).expect("held");
        drop(slot);
        assert_eq!(Arc::strong_count(&alive), 2, "the loaded Arc keeps it");
        drop(loaded);
        assert_eq!(Arc::strong_count(&alive), 1);
    }

    #[test]
    fn replace_swaps_values_in_order() {
        let index = map();
        let slot = Slot::empty();
        assert!(slot.load(&index.guard()).is_none());
        for v in 0..100u32 {
            slot.replace(Some(Arc::new(v)), &index.guard());
            assert_eq!(slot.get(&index.guard()).copied(), Some(v));
        }
    }
}
