//! The locked-memory budget (`RLIMIT_MEMLOCK`) and key material, which never runs unlocked.
//!
//! Secret values follow the process's [`MemoryPolicy`]; keys do not. A master key, KEK, DEK or
//! cache sealing key in swappable memory would expose every value under it, so key material is
//! always allocated [`MemoryPolicy::Strict`], and caches of keys size themselves to the budget
//! ([`keys_within_budget`]) rather than outgrow it.

use crate::error::{Error, ErrorKind, Result};

use super::{LockedBuf, MemoryPolicy, arena, mapping, stats};

/// The soft `RLIMIT_MEMLOCK` in bytes: how much memory this process may lock. `None` when it
/// is unlimited (or unreadable). A process with `CAP_IPC_LOCK` may lock beyond it.
pub fn memlock_limit() -> Option<usize> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the fully initialised struct passed by pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0
        || lim.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    Some(usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX))
}

/// Bytes of locked memory a buffer of `len` bytes occupies: its arena slot, or its own pages.
pub(crate) fn locked_footprint(len: usize) -> usize {
    match arena::pool_for(len) {
        Some(pool) => pool.slot_size(),
        None => mapping::round_to_pages(len).unwrap_or(usize::MAX),
    }
}

/// How many keys of `footprint` locked bytes each fit in `1 / share` of the memlock budget,
/// at most `max`. A cache of unwrapped keys holds at most this many, so it cannot exhaust the
/// budget that keys (which are never left unlocked) and secrets need.
pub(crate) fn keys_within_budget(footprint: usize, share: usize, max: usize) -> usize {
    match memlock_limit() {
        None => max,
        Some(limit) => (limit / share.max(1) / footprint.max(1)).min(max),
    }
}

/// Allocates `len` bytes for key material: locked, whatever the process's default policy.
///
/// Fails with [`ErrorKind::MemoryLock`] when the pages cannot be locked, with a message that
/// names the budget (see [`key_lock_error`]).
pub(crate) fn alloc_key(len: usize) -> Result<LockedBuf> {
    LockedBuf::alloc(len, MemoryPolicy::Strict).map_err(key_lock_error)
}

/// Turns a [`ErrorKind::MemoryLock`] error from allocating key material into one that says why
/// keys are never left unlocked and how big the budget is; other errors pass through.
pub(crate) fn key_lock_error(e: Error) -> Error {
    if e.kind() != ErrorKind::MemoryLock {
        return e;
    }
    let limit = match memlock_limit() {
        Some(bytes) => format!("RLIMIT_MEMLOCK is {}", kib(bytes)),
        None => "RLIMIT_MEMLOCK is unlimited".to_owned(),
    };
    Error::new(
        ErrorKind::MemoryLock,
        format!(
            "could not lock memory for key material: sealbox keeps keys (master keys, KEKs, \
             DEKs, the cache's sealing key) only in locked memory, and {limit} with {} \
             already locked by sealbox; raise RLIMIT_MEMLOCK (ulimit -l, LimitMEMLOCK= in \
             systemd, --ulimit memlock= in Docker) or grant CAP_IPC_LOCK",
            kib(stats().locked_bytes)
        ),
    )
    .with_source(e)
}

/// Bytes of stack [`wipe_stack`] overwrites: more than ring's key setup leaves behind below
/// its caller (about 9 KiB measured in a debug build; less with optimisations).
const STACK_WIPE_BYTES: usize = 16 * 1024;

/// Overwrites the 16 KiB of stack below the caller's frame with zeros.
///
/// ring builds an expanded AES key on the stack and moves it by value into place; every copy
/// holds the key itself (AES-256's first two round keys are the key), and those dead frames stay
/// readable until something reuses them. Called right after such a call, from the frame that
/// made it, this wipes them (libsodium's `sodium_stackzero` does the same). It needs 16 KiB of
/// free stack.
#[inline(never)]
pub(crate) fn wipe_stack() {
    let mut scratch = [0u64; STACK_WIPE_BYTES / 8];
    // Volatile writes: the compiler cannot drop them although the array is never read.
    zeroize::Zeroize::zeroize(&mut scratch);
    std::hint::black_box(&mut scratch);
}

fn kib(bytes: usize) -> String {
    if bytes >= 1024 {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footprints_are_slots_or_whole_pages() {
        assert_eq!(locked_footprint(32), 32);
        assert_eq!(locked_footprint(33), 64);
        assert_eq!(locked_footprint(4096), 4096);
        let page = mapping::page_size();
        let large = locked_footprint(4097);
        assert!(large > 4096 && large.is_multiple_of(page), "{large}");
    }

    #[test]
    fn key_lock_errors_name_the_limit_and_keep_other_kinds() {
        let e = key_lock_error(Error::new(ErrorKind::MemoryLock, "mlock failed"));
        assert_eq!(e.kind(), ErrorKind::MemoryLock);
        assert!(e.message().contains("RLIMIT_MEMLOCK is"), "{}", e.message());
        assert!(e.message().contains("key material"), "{}", e.message());
        let other = key_lock_error(Error::new(ErrorKind::Io, "no map"));
        assert_eq!(other.kind(), ErrorKind::Io);
    }

    #[test]
    fn key_buffers_are_locked_under_a_best_effort_default() {
        // The process default stays BestEffort in unit tests.
        assert_eq!(super::super::default_policy(), MemoryPolicy::BestEffort);
        let b = alloc_key(32).unwrap();
        assert!(b.is_locked());
    }
}
