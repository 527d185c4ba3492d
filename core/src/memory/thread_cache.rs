//! Per-thread caches of wiped, locked slots, so a thread that frees and reallocates small
//! secrets in a loop never touches a pool's mutex.
//!
//! Each thread keeps at most [`limit`] slots per size class (at most 4 KiB per class). A cached
//! slot is already wiped and its page stays locked: the pool still counts it as in use. The
//! cache is handed back to the pools when the thread exits, or on demand with
//! [`release_thread_cache`].

use std::cell::RefCell;

use super::arena::{CLASS_SIZES, Slot};

struct ThreadCache {
    classes: [Vec<Slot>; CLASS_SIZES.len()],
}

impl ThreadCache {
    fn release_all(&mut self) {
        for class in &mut self.classes {
            for slot in class.drain(..) {
                slot.return_wiped();
            }
        }
    }
}

impl Drop for ThreadCache {
    fn drop(&mut self) {
        self.release_all();
    }
}

thread_local! {
    static CACHE: RefCell<ThreadCache> = const {
        RefCell::new(ThreadCache {
            classes: [const { Vec::new() }; CLASS_SIZES.len()],
        })
    };
}

/// Most slots of each size class one thread keeps: 16, or fewer so they fit in 4 KiB.
/// (A table, not a division: this is on every free.)
const LIMITS: [usize; CLASS_SIZES.len()] = {
    let mut limits = [0; CLASS_SIZES.len()];
    let mut class = 0;
    while class < CLASS_SIZES.len() {
        let fit = 4096 / CLASS_SIZES[class];
        limits[class] = if fit > 16 { 16 } else { fit };
        class += 1;
    }
    limits
};

/// Most slots of size class `class` one thread keeps.
#[inline]
pub(crate) fn limit(class: usize) -> usize {
    LIMITS[class]
}

/// A cached slot of size class `class`, if this thread has one.
#[inline(always)]
pub(crate) fn take(class: usize) -> Option<Slot> {
    CACHE
        .try_with(|c| c.try_borrow_mut().ok()?.classes[class].pop())
        .ok()
        .flatten()
}

/// Keeps a wiped, locked slot of size class `class` for this thread's next allocation. Gives
/// the slot back when the cache is full, or is being torn down at thread exit.
#[inline(always)]
pub(crate) fn stash(class: usize, slot: Slot) -> Option<Slot> {
    let mut slot = Some(slot);
    // `try_with` fails only during thread teardown; the slot then stays in `slot`.
    let _ = CACHE.try_with(|c| {
        let Ok(mut cache) = c.try_borrow_mut() else {
            return;
        };
        let cached = &mut cache.classes[class];
        if cached.len() < limit(class) {
            if cached.capacity() == 0 {
                cached.reserve_exact(limit(class));
            }
            if let Some(s) = slot.take() {
                cached.push(s);
            }
        }
    });
    slot
}

/// Returns the calling thread's cached free slots to the process-wide pools, so that pages no
/// live secret uses can be unlocked and chunks unmapped. Useful before a thread goes idle for a
/// long time; threads do this themselves when they exit.
pub fn release_thread_cache() {
    let _ = CACHE.try_with(|c| {
        if let Ok(mut cache) = c.try_borrow_mut() {
            cache.release_all();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{LockedBuf, MemoryPolicy};

    #[test]
    fn limits_fit_in_a_page() {
        for (class, size) in CLASS_SIZES.iter().enumerate() {
            assert!(limit(class) >= 1 && limit(class) * size <= 4096);
        }
    }

    #[test]
    fn a_thread_reuses_its_own_freed_slots_wiped() {
        std::thread::spawn(|| {
            let mut a = LockedBuf::alloc(200, MemoryPolicy::Strict).unwrap();
            a.as_mut_slice().fill(9);
            let addr = a.as_slice().as_ptr();
            drop(a);
            let b = LockedBuf::alloc(256, MemoryPolicy::Strict).unwrap();
            assert_eq!(
                b.as_slice().as_ptr(),
                addr,
                "not served from the thread cache"
            );
            assert!(
                b.as_slice().iter().all(|&x| x == 0),
                "cached slot not wiped"
            );
            assert!(b.is_locked());
            drop(b);
            // Released to the pool: this thread's cache no longer has a 256-byte slot.
            release_thread_cache();
            assert!(take(3).is_none());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn secrets_freed_on_other_threads_stay_private_and_wiped() {
        use std::sync::mpsc;
        let (tx, rx) = mpsc::channel::<(u8, LockedBuf)>();
        let producers: Vec<_> = (1..=3u8)
            .map(|t| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        let mut b = LockedBuf::alloc(64, MemoryPolicy::Strict).unwrap();
                        assert!(
                            b.as_slice().iter().all(|&x| x == 0),
                            "reused slot not wiped"
                        );
                        b.as_mut_slice().fill(t);
                        tx.send((t, b)).unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        // The consumer frees everything: its cache fills, the rest goes back to the pool, and
        // the producers keep allocating from the pool concurrently.
        for (t, b) in rx {
            assert!(
                b.as_slice().iter().all(|&x| x == t),
                "slot shared between secrets"
            );
        }
        for p in producers {
            p.join().unwrap();
        }
    }

    #[test]
    fn the_cache_is_bounded() {
        std::thread::spawn(|| {
            let bufs: Vec<LockedBuf> = (0..40)
                .map(|_| LockedBuf::alloc(64, MemoryPolicy::Strict).unwrap())
                .collect();
            drop(bufs);
            let cached = CACHE.with(|c| c.borrow().classes[1].len());
            assert_eq!(cached, limit(1));
        })
        .join()
        .unwrap();
    }
}
