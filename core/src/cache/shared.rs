//! A reference-counted pointer for the versions a cache hands out: `Arc`'s strong count,
//! kept where no other allocation shares its cache line or the lines around it.
//!
//! Every hit takes a count on the cached version, and `Arc` keeps its counts at the start of
//! its allocation, where the line holding them also holds the end of whatever malloc placed
//! just before: in the hit benchmark, often the index node of another secret, which every
//! hit of that secret reads. Two threads reading different secrets then passed that line
//! between their cores on every hit. Over eight processes each (the heap's layout differs
//! per process), the 1 -> 2 thread scaling's median went from 1.44x to 1.72x, with a
//! `HashMap` of padded values at 1.70x-1.72x in the same runs. Aligning the version to a
//! line fixes it too, but an aligned allocation takes glibc's memalign path (about 500
//! instructions more per miss, and a refresh miss over the local vault went from +7.7% to
//! +12.4% over a direct get); cold bytes around the count cost only memory.
//!
//! Keeping the count's own line private was not enough on an AMD EPYC host. The `threads`
//! benchmark has one thread read the even secrets and the other the odd ones, which were
//! first read one after the other and so allocated side by side. With the next allocation
//! two lines past the count's line, that scaled 1.15x-1.50x from 1 to 2 threads (paired p50,
//! three processes), where the same secrets first read evens-then-odds scaled as a padded
//! `HashMap` does; with 64 cold bytes more at the block's end, 1.58x-1.80x (the `HashMap`
//! 1.22x-1.65x in the same runs). The likely reason: this CPU's prefetchers fetch lines
//! ahead of an access, beyond the 128-byte pair, so a neighbour's reads pulled the count's
//! line over. A handle's block is now 368 bytes, 64 more than before.

use std::fmt;
use std::marker::PhantomData;
use std::mem::{offset_of, size_of};
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering, fence};

/// The block: cold bytes, the count, the value, cold bytes. Blocks are 16-byte aligned
/// (what malloc gives anyway, so asking costs nothing), so the count at offset 112 of a block
/// at `p` lies on a 64-byte line within `p + 64 .. p + 176`: the line and the one before it
/// are always the block's. After it come the value and 64 cold bytes, so for a value of 176
/// bytes or more (a handle's) the three lines after the count's are the block's too, and the
/// nearest other allocation is at least 192 bytes past the count's line.
#[repr(C, align(16))]
struct Block<T> {
    _lead: [usize; 14],
    count: AtomicUsize,
    value: T,
    _trail: [usize; 8],
    /// Gone exactly when the block is freed: tests watch values through it.
    #[cfg(test)]
    freed: std::sync::Arc<()>,
}

/// The largest count, as for `Arc`: beyond it a leak of counts could wrap it.
const MAX_COUNT: usize = isize::MAX as usize;

/// A shared, immutable `T` freed with its last pointer, like `Arc<T>` without weak
/// pointers.
pub(crate) struct Shared<T> {
    block: NonNull<Block<T>>,
    /// Owns a `Block<T>`, for drop check and variance.
    _owns: PhantomData<Block<T>>,
}

// SAFETY: as for `Arc<T>`: the value is shared between threads and dropped by whichever
// drops the last pointer, so both need `T: Send + Sync`; the count is atomic.
unsafe impl<T: Send + Sync> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// `value` in a block of its own, with a count of one.
    #[inline]
    pub(crate) fn new(value: T) -> Shared<T> {
        const {
            assert!(
                size_of::<Block<T>>() >= 176,
                "the count's line must fit in the block"
            )
        };
        // Allocated before the block is built, so the block can be written in place rather
        // than built on the stack and copied (a handle's is 368 bytes, on every miss).
        let block = Box::new_uninit();
        let block = Box::write(
            block,
            Block {
                _lead: [0; 14],
                count: AtomicUsize::new(1),
                value,
                _trail: [0; 8],
                #[cfg(test)]
                freed: std::sync::Arc::new(()),
            },
        );
        Shared {
            block: NonNull::from(Box::leak(block)),
            _owns: PhantomData,
        }
    }

    fn block(&self) -> &Block<T> {
        // SAFETY: the block lives while this pointer holds its count.
        unsafe { self.block.as_ref() }
    }

    /// Gives up this pointer as a pointer to the value, keeping its count: take it back with
    /// [`Shared::from_raw`] exactly once, or the value is never freed.
    pub(crate) fn into_raw(this: Shared<T>) -> *const T {
        let this = std::mem::ManuallyDrop::new(this);
        // SAFETY: the block is live (this pointer's count is kept), and `value` is in it.
        unsafe { &raw const (*this.block.as_ptr()).value }
    }

    /// Takes back a pointer given up by [`Shared::into_raw`], with the count it kept.
    ///
    /// # Safety
    /// `ptr` came from `Shared::<T>::into_raw`, and its count has not been taken back.
    pub(crate) unsafe fn from_raw(ptr: *const T) -> Shared<T> {
        // SAFETY: by the caller's contract `ptr` points at the `value` field of a live
        // block, so stepping back by that field's offset stays inside the block.
        let block = unsafe { ptr.byte_sub(offset_of!(Block<T>, value)) }.cast::<Block<T>>();
        Shared {
            // SAFETY: derived from a non-null block pointer.
            block: unsafe { NonNull::new_unchecked(block.cast_mut()) },
            _owns: PhantomData,
        }
    }

    /// Adds a count to the value behind a pointer from [`Shared::into_raw`] (for a later
    /// [`Shared::from_raw`] of its own).
    ///
    /// # Safety
    /// `ptr` came from `Shared::<T>::into_raw`, and the value is alive for the whole call.
    pub(crate) unsafe fn increment_count(ptr: *const T) {
        // SAFETY: forwarded; the `ManuallyDrop` leaves the pointer's own count alone.
        let this = std::mem::ManuallyDrop::new(unsafe { Shared::from_raw(ptr) });
        std::mem::forget(Shared::clone(&this));
    }

    /// Whether both point at the same value.
    #[cfg(test)]
    pub(crate) fn ptr_eq(a: &Shared<T>, b: &Shared<T>) -> bool {
        a.block == b.block
    }

    /// The number of pointers to the value (a snapshot).
    #[cfg(test)]
    pub(crate) fn count(this: &Shared<T>) -> usize {
        this.block().count.load(Ordering::Acquire)
    }

    /// Asserts that the 64-byte lines from `before` lines before the count's line to `after`
    /// lines after it all lie in the block.
    #[cfg(test)]
    #[track_caller]
    pub(crate) fn assert_block_holds_lines_around_count(
        this: &Shared<T>,
        before: usize,
        after: usize,
    ) {
        let start = this.block.as_ptr() as usize;
        let block = start..start + size_of::<Block<T>>();
        let line = &this.block().count as *const AtomicUsize as usize & !63;
        let lines = line - 64 * before..line + 64 * (after + 1);
        assert!(
            block.start <= lines.start && lines.end <= block.end,
            "{lines:x?} outside the block {block:x?}"
        );
    }

    /// A watch that tells when the value is freed: `upgrade()` is `None` from then on.
    #[cfg(test)]
    pub(crate) fn watch(this: &Shared<T>) -> std::sync::Weak<()> {
        std::sync::Arc::downgrade(&this.block().freed)
    }
}

impl<T> Clone for Shared<T> {
    #[inline]
    fn clone(&self) -> Shared<T> {
        // Relaxed, as in `Arc`: a new pointer is made from one that already keeps the value
        // alive, so nothing is published here.
        if self.block().count.fetch_add(1, Ordering::Relaxed) > MAX_COUNT {
            std::process::abort();
        }
        Shared {
            block: self.block,
            _owns: PhantomData,
        }
    }
}

impl<T> Drop for Shared<T> {
    #[inline]
    fn drop(&mut self) {
        // Release, then Acquire before freeing, as in `Arc`: every use of the value through
        // another pointer happens before the value is dropped.
        if self.block().count.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        fence(Ordering::Acquire);
        // SAFETY: the count reached zero, so this was the last pointer; the block came from
        // `Box::leak` in `Shared::new` and is freed once, here.
        drop(unsafe { Box::from_raw(self.block.as_ptr()) });
    }
}

impl<T> Deref for Shared<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.block().value
    }
}

impl<T: fmt::Debug> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    struct Flagged(std::sync::Arc<AtomicBool>, [u64; 8]);

    impl Drop for Flagged {
        fn drop(&mut self) {
            assert!(!self.0.swap(true, Ordering::SeqCst), "dropped twice");
        }
    }

    #[test]
    fn the_value_is_dropped_once_with_its_last_pointer() {
        let dropped = std::sync::Arc::new(AtomicBool::new(false));
        let a = Shared::new(Flagged(dropped.clone(), [7; 8]));
        let b = a.clone();
        assert!(Shared::ptr_eq(&a, &b));
        assert_eq!(Shared::count(&a), 2);
        drop(a);
        assert!(!dropped.load(Ordering::SeqCst));
        assert_eq!(b.1, [7; 8]);
        drop(b);
        assert!(dropped.load(Ordering::SeqCst));
    }

    #[test]
    fn a_raw_pointer_round_trips_with_its_count() {
        let a = Shared::new([1u64; 8]);
        let watch = Shared::watch(&a);
        let raw = Shared::into_raw(a);
        // SAFETY: `raw` came from `into_raw` and is alive (its count is held).
        unsafe { Shared::increment_count(raw) };
        // SAFETY: two counts are held, each taken back once.
        let (b, c) = unsafe { (Shared::from_raw(raw), Shared::from_raw(raw)) };
        assert_eq!(*b, [1; 8]);
        assert_eq!(Shared::count(&b), 2);
        drop(b);
        assert!(watch.upgrade().is_some());
        drop(c);
        assert!(watch.upgrade().is_none());
    }

    #[test]
    fn no_other_allocation_is_near_the_count() {
        let mut keep = Vec::new();
        for _ in 0..64 {
            // Any value (the block is at least 176 bytes): the count's line and the one before.
            let small = Shared::new([0u64; 7]);
            Shared::assert_block_holds_lines_around_count(&small, 1, 0);
            // A value of 176 bytes or more: three lines after the count's too.
            let large = Shared::new([0u64; 22]);
            Shared::assert_block_holds_lines_around_count(&large, 1, 3);
            // Kept, so that each block lands somewhere new.
            keep.push((small, large));
        }
    }

    #[test]
    fn pointers_shared_across_threads_free_the_value_once() {
        let dropped = std::sync::Arc::new(AtomicBool::new(false));
        let a = Shared::new(Flagged(dropped.clone(), [0; 8]));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let a = a.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        drop(std::hint::black_box(a.clone()));
                    }
                })
            })
            .collect();
        drop(a);
        for t in threads {
            t.join().unwrap();
        }
        assert!(dropped.load(Ordering::SeqCst));
    }
}
