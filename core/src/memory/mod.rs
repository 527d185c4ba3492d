//! Locked memory for secrets.
//!
//! Secret bytes live in anonymous mappings that are
//! - **locked** in RAM (`mlock`), so they are not written to swap,
//! - **excluded from core dumps** (`MADV_DONTDUMP`),
//! - **zeroed in forked children** (`MADV_WIPEONFORK`, Linux 4.14 and later): a child never
//!   inherits a secret. What holds secrets or keys (clients, caches, keys, stores, audit logs)
//!   records its process and answers [`ErrorKind::Forked`] in a child rather than hand out
//!   the zeros (see [`crate::process`]); the pools' locks are taken around `fork()`, so a
//!   child never inherits one held by a thread it did not copy, and a child locks its pages
//!   again (memory locks are not inherited),
//! - **fenced by guard pages** (`PROT_NONE`) before and after every mapping, so a linear overrun
//!   out of a mapping faults instead of reading whatever lies next to it (within a chunk, slots
//!   sit side by side: there Rust's bounds checks are the protection),
//! - **wiped** with `zeroize` when released, before the memory is reused or unmapped.
//!
//! Secrets up to 4 KiB share slots in an arena of 64 KiB chunks (size classes of 32 B to
//! 4 KiB), so that a small secret costs about as much as a heap allocation: no system call in the
//! steady state, and usually no lock either, because each thread keeps a few wiped slots of each
//! size (at most 4 KiB per size) for its next allocations. A page is locked when it receives its
//! first slot and unlocked only when no live secret and no thread-cached slot uses it; each size
//! class keeps up to two empty pages locked and one empty chunk mapped to avoid churn, and
//! [`release_thread_cache`] hands a thread's cached slots back. Larger secrets get a mapping of
//! their own, locked and unmapped with them.
//!
//! Locked memory therefore stays a little above what live secrets need: at most two pages per
//! size class (64 KiB with 4 KiB pages) plus the pages of thread-cached slots. Budget for that
//! when setting `RLIMIT_MEMLOCK`.
//!
//! When the kernel refuses to lock (`RLIMIT_MEMLOCK`), the [`MemoryPolicy`] decides:
//! [`MemoryPolicy::Strict`] fails with [`ErrorKind::MemoryLock`];
//! [`MemoryPolicy::BestEffort`] (the default) continues with unlocked memory, logs one `tracing`
//! warning per process, counts every failure in `sealbox_memory_lock_failures_total` (also the
//! `memory_lock_failures` counter of every client's metrics and [`lock_failures`]) and reports
//! it through [`LockedBuf::is_locked`].
//!
//! Key material is the exception: master keys, KEKs, DEKs and the sealed cache's key are always
//! allocated [`MemoryPolicy::Strict`], whatever the default, because one swapped-out key exposes
//! every value under it. A key that cannot be locked is a [`ErrorKind::MemoryLock`] error whose
//! message names the `RLIMIT_MEMLOCK` budget ([`memlock_limit`]), and the caches of unwrapped
//! keys (the local vault's DEKs, the keyring's KEKs) hold only as many keys as fit in a share of
//! that budget (a quarter and an eighth), dropping cached keys rather than failing when locking
//! does fail. Each key costs about 1 KiB of locked memory (its bytes and ring's key schedule).
//!
//! # What this cannot protect
//!
//! Like `zeroize`, this module wipes the memory it owns and nothing else. It cannot wipe:
//! - copies the caller made: a `String` or `Vec` the value came from (use the constructors that
//!   wipe their source), a `BufReader`'s buffer, a formatted message, a value passed by copy;
//! - CPU registers and stack slots the compiler used while the value was being copied or
//!   compared;
//! - scratch buffers inside libraries: `serde_json` unescapes strings that contain escapes into a
//!   private heap buffer that is freed without wiping (see [`crate::Secret::json_field`]);
//!   `std::fmt` formats numbers on the stack;
//! - kernel buffers: pipe, socket and page-cache copies of data read from a file or the network,
//!   and the pages of a process that a debugger or `root` reads through `/proc/PID/mem` or
//!   `ptrace` (use [`harden_process`] to refuse unprivileged ptrace and core dumps);
//! - memory of a process that is suspended to disk (hibernation ignores `mlock`).
//!
//! Locked pages can still be read by anything that can read the process's memory; locking keeps
//! them out of swap and dumps, not out of reach of a compromised process.

mod arena;
mod budget;
mod harden;
mod mapping;
mod policy;
#[cfg(test)]
pub(crate) mod scan;
mod thread_cache;

use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

pub use budget::memlock_limit;
pub(crate) use budget::{
    alloc_key, key_lock_error, keys_within_budget, locked_footprint, wipe_stack,
};
pub use harden::harden_process;
pub use policy::{
    LOCK_FAILURES_METRIC, MemoryPolicy, default_policy, lock_failures, set_default_policy,
};
pub use thread_cache::release_thread_cache;

use crate::error::{Error, ErrorKind, Result};
use arena::Slot;
use mapping::GuardedMapping;

/// Bytes in dedicated (large-secret) mappings, and how many of them are locked.
static LARGE_MAPPED: AtomicUsize = AtomicUsize::new(0);
static LARGE_LOCKED: AtomicUsize = AtomicUsize::new(0);
static LARGE_LIVE: AtomicUsize = AtomicUsize::new(0);

/// A fixed-size, zero-initialised buffer in locked memory, wiped when dropped.
///
/// Buffers of up to 2 KiB share arena slots; larger ones get their own guarded mapping. The
/// buffer never moves and never grows: to grow, allocate a bigger one, copy and drop the old one
/// (which wipes it).
pub struct LockedBuf {
    ptr: NonNull<u8>,
    len: usize,
    backing: Backing,
}

// A word-sized tag keeps `LockedBuf` (and `Result<LockedBuf>`) made of whole words, so moving
// one costs plain word copies rather than store-forwarding stalls on a byte-sized tag.
#[repr(usize)]
enum Backing {
    /// Zero-length buffers own no memory.
    Empty,
    Slot(Slot),
    Mapping {
        mapping: GuardedMapping,
        locked: bool,
    },
}

// SAFETY: a `LockedBuf` exclusively owns its bytes (a slot or a mapping); the arena's shared
// bookkeeping is behind a mutex. Moving the owner to another thread moves that exclusive access.
unsafe impl Send for LockedBuf {}
// SAFETY: `&LockedBuf` only gives shared, read-only access to the bytes (`as_slice`); mutation
// needs `&mut LockedBuf`.
unsafe impl Sync for LockedBuf {}

impl LockedBuf {
    /// Allocates `len` zeroed bytes under `policy`.
    ///
    /// Fails with [`ErrorKind::MemoryLock`] when the pages cannot be locked and `policy` is
    /// [`MemoryPolicy::Strict`], with [`ErrorKind::Io`] when the kernel refuses the mapping, and
    /// with [`ErrorKind::InvalidInput`] for lengths no mapping can hold.
    // Always inlined: the slot path is a few dozen instructions, and returning this large
    // `Result` from an out-of-line call costs more (store-forwarding stalls) than the work.
    #[inline(always)]
    pub fn alloc(len: usize, policy: MemoryPolicy) -> Result<LockedBuf> {
        match arena::pool_for(len) {
            Some(pool) => {
                let slot = pool.take(policy)?;
                Ok(LockedBuf {
                    ptr: slot.ptr(),
                    len,
                    backing: Backing::Slot(slot),
                })
            }
            None => Self::alloc_unpooled(len, policy),
        }
    }

    /// Empty buffers and buffers too large for a slot.
    #[inline(never)]
    fn alloc_unpooled(len: usize, policy: MemoryPolicy) -> Result<LockedBuf> {
        if len == 0 {
            return Ok(LockedBuf {
                ptr: NonNull::dangling(),
                len: 0,
                backing: Backing::Empty,
            });
        }
        let data_len = mapping::round_to_pages(len)
            .filter(|&l| l <= isize::MAX as usize / 2)
            .ok_or_else(|| {
                Error::invalid_input(format!("a secret of {len} bytes is too large to allocate"))
            })?;
        let mapping = GuardedMapping::new(data_len).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("could not map {data_len} bytes for a secret: {e}"),
            )
            .with_source(e)
        })?;
        let locked = match mapping::lock(mapping.data(), data_len) {
            Ok(()) => true,
            // Dropping `mapping` on the error path unmaps it; nothing was written yet.
            Err(cause) => {
                policy::on_lock_failure(policy, cause)?;
                false
            }
        };
        LARGE_MAPPED.fetch_add(data_len, Ordering::Relaxed);
        LARGE_LIVE.fetch_add(1, Ordering::Relaxed);
        if locked {
            LARGE_LOCKED.fetch_add(data_len, Ordering::Relaxed);
        }
        Ok(LockedBuf {
            ptr: mapping.data(),
            len,
            backing: Backing::Mapping { mapping, locked },
        })
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the pages holding this buffer are locked in RAM. Always `true` for an empty
    /// buffer (there is nothing to lock); `false` when [`MemoryPolicy::BestEffort`] had to
    /// continue without a lock.
    #[inline]
    pub fn is_locked(&self) -> bool {
        match &self.backing {
            Backing::Empty => true,
            Backing::Slot(slot) => slot.is_locked(),
            Backing::Mapping { locked, .. } => *locked,
        }
    }

    /// The bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` points to at least `len` initialised bytes owned by `self` (or is
        // dangling with `len == 0`), and `&self` rules out concurrent mutation.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes, writable.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes this the only access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Shortens the buffer to `len` bytes, wiping the bytes cut off. Does nothing if `len` is not
    /// shorter. The memory stays allocated until the buffer is dropped.
    pub(crate) fn truncate(&mut self, len: usize) {
        if len < self.len {
            zeroize::Zeroize::zeroize(&mut self.as_mut_slice()[len..]);
            self.len = len;
        }
    }

    /// Bytes of memory behind the buffer that `Drop` wipes: the whole slot, or the data pages
    /// up to the length rounded to a word.
    #[inline]
    fn wipe_len(&self) -> usize {
        match &self.backing {
            Backing::Empty => 0,
            Backing::Slot(slot) => slot.size(),
            Backing::Mapping { mapping, .. } => {
                self.len.next_multiple_of(32).min(mapping.data_len())
            }
        }
    }
}

impl Drop for LockedBuf {
    #[inline(always)]
    fn drop(&mut self) {
        let wipe_len = self.wipe_len();
        match std::mem::replace(&mut self.backing, Backing::Empty) {
            Backing::Empty => {}
            // The pool wipes the slot before it can be reused.
            Backing::Slot(slot) => slot.release(),
            Backing::Mapping { mapping, locked } => release_mapping(mapping, locked, wipe_len),
        }
    }
}

/// Wipes the first `wipe_len` bytes of a large buffer's mapping and unmaps it.
#[inline(never)]
fn release_mapping(mapping: GuardedMapping, locked: bool, wipe_len: usize) {
    // SAFETY: `wipe_len` bytes from the start of the data area belonged to the dropped buffer
    // (now consumed), are page-aligned and a multiple of 32 bytes, and nothing borrows them.
    unsafe { arena::wipe(mapping.data(), wipe_len) };
    let data_len = mapping.data_len();
    drop(mapping); // munmap also releases the lock
    LARGE_MAPPED.fetch_sub(data_len, Ordering::Relaxed);
    LARGE_LIVE.fetch_sub(1, Ordering::Relaxed);
    if locked {
        LARGE_LOCKED.fetch_sub(data_len, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for LockedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockedBuf")
            .field("len", &self.len())
            .field("locked", &self.is_locked())
            .finish_non_exhaustive()
    }
}

/// A snapshot of the process's secret memory, for monitoring and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArenaStats {
    /// Buffers currently allocated (empty buffers excluded), counting the free slots that
    /// threads keep cached for reuse.
    pub live_buffers: usize,
    /// Bytes of data pages mapped for secrets (guard pages excluded).
    pub mapped_bytes: usize,
    /// Bytes of those pages currently locked in RAM.
    pub locked_bytes: usize,
    /// Failed lock attempts since the process started.
    pub lock_failures: u64,
}

/// Reads the current [`ArenaStats`].
pub fn stats() -> ArenaStats {
    let mut s = ArenaStats {
        live_buffers: LARGE_LIVE.load(Ordering::Relaxed),
        mapped_bytes: LARGE_MAPPED.load(Ordering::Relaxed),
        locked_bytes: LARGE_LOCKED.load(Ordering::Relaxed),
        lock_failures: policy::lock_failures(),
    };
    for pool in arena::pools() {
        let p = pool.stats();
        s.live_buffers += p.live_slots;
        s.mapped_bytes += p.mapped_bytes;
        s.locked_bytes += p.locked_bytes;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_of_every_size_are_zeroed_writable_and_locked() {
        for len in [0, 1, 31, 32, 33, 64, 100, 2048, 2049, 4096, 10_000, 100_000] {
            let mut b = LockedBuf::alloc(len, MemoryPolicy::Strict).unwrap();
            assert_eq!(b.len(), len);
            assert_eq!(b.is_empty(), len == 0);
            assert!(b.is_locked(), "len {len}");
            assert!(b.as_slice().iter().all(|&x| x == 0), "len {len}");
            b.as_mut_slice().fill(0x42);
            assert!(b.as_slice().iter().all(|&x| x == 0x42));
        }
    }

    #[test]
    fn large_buffers_are_accounted_and_released() {
        let b = LockedBuf::alloc(3 * 4096 + 1, MemoryPolicy::Strict).unwrap();
        assert!(matches!(b.backing, Backing::Mapping { locked: true, .. }));
        assert_eq!(b.ptr.as_ptr() as usize % mapping::page_size(), 0);
        // Other tests only add their own live buffers to these totals.
        let live = stats();
        assert!(live.locked_bytes >= 4 * 4096 && live.live_buffers >= 1);
        drop(b);
    }

    #[test]
    fn truncate_wipes_the_cut_off_tail() {
        let mut b = LockedBuf::alloc(40, MemoryPolicy::BestEffort).unwrap();
        b.as_mut_slice().fill(7);
        b.truncate(10);
        assert_eq!(b.as_slice(), &[7; 10]);
        // SAFETY: the slot behind `b` is 64 bytes and owned by `b`; bytes 10..40 are still ours.
        let tail = unsafe { std::slice::from_raw_parts(b.ptr.as_ptr().add(10), 30) };
        assert!(tail.iter().all(|&x| x == 0));
        b.truncate(20); // longer: no effect
        assert_eq!(b.len(), 10);
    }

    #[test]
    fn absurd_lengths_are_invalid_input() {
        let err = LockedBuf::alloc(usize::MAX, MemoryPolicy::BestEffort).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn debug_shows_only_length_and_lock_state() {
        let mut b = LockedBuf::alloc(4, MemoryPolicy::BestEffort).unwrap();
        b.as_mut_slice().copy_from_slice(b"pw42");
        let d = format!("{b:?}");
        assert!(d.contains("len: 4") && !d.contains("pw42"), "{d}");
    }

    #[test]
    fn default_policy_is_best_effort_and_settable() {
        assert_eq!(MemoryPolicy::default(), MemoryPolicy::BestEffort);
        // Only this test changes the default, and it restores it.
        let before = default_policy();
        set_default_policy(MemoryPolicy::Strict);
        assert_eq!(default_policy(), MemoryPolicy::Strict);
        set_default_policy(MemoryPolicy::BestEffort);
        assert_eq!(default_policy(), MemoryPolicy::BestEffort);
        set_default_policy(before);
    }
}
