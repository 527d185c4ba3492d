//! The operating-system side of locked memory: guarded anonymous mappings, page locking and the
//! advice that keeps secret pages out of core dumps and forked children.
//!
//! Everything here is a thin, checked wrapper over one `libc` call; policy (when to lock, what to
//! do when locking fails) lives in the arena.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The page size, read once from the kernel.
pub(crate) fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    let cached = PAGE.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    // SAFETY: sysconf has no preconditions; it only reads a system constant.
    let raw = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    // Linux never reports less than 4 KiB; fall back to that if sysconf fails.
    let page = usize::try_from(raw)
        .ok()
        .filter(|&p| p >= 4096)
        .unwrap_or(4096);
    PAGE.store(page, Ordering::Relaxed);
    page
}

/// `len` rounded up to whole pages, or `None` on overflow.
pub(crate) fn round_to_pages(len: usize) -> Option<usize> {
    let page = page_size();
    len.checked_add(page - 1).map(|l| l / page * page)
}

/// An anonymous private mapping laid out as `guard page | data pages | guard page`.
///
/// The guard pages are `PROT_NONE`, so a linear overrun or underrun out of the data area faults
/// instead of reading or writing a neighbour. The data pages are readable and writable, marked
/// `MADV_DONTDUMP` (excluded from core dumps) and, where the kernel supports it,
/// `MADV_WIPEONFORK` (a forked child sees zeros). They start zeroed (anonymous memory) and are
/// not locked: the owner locks the pages it hands out.
///
/// Dropping a `GuardedMapping` unmaps it, which also releases any page locks; wiping the data
/// first is the owner's job.
#[derive(Debug)]
pub(crate) struct GuardedMapping {
    base: NonNull<u8>,
    total_len: usize,
    data_len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; nothing in it is tied to the thread
// that created it, and all mutation goes through the owner's synchronisation.
unsafe impl Send for GuardedMapping {}
// SAFETY: `&GuardedMapping` only exposes addresses and lengths; the bytes themselves are reached
// through raw pointers under the owner's synchronisation.
unsafe impl Sync for GuardedMapping {}

impl GuardedMapping {
    /// Maps `data_len` bytes (a positive multiple of the page size) between two guard pages.
    pub(crate) fn new(data_len: usize) -> io::Result<GuardedMapping> {
        let page = page_size();
        debug_assert!(data_len > 0 && data_len.is_multiple_of(page));
        let total_len = data_len
            .checked_add(2 * page)
            .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        // SAFETY: a fresh anonymous private mapping at an address the kernel chooses; no existing
        // memory is affected. The result is checked against MAP_FAILED below.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total_len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base =
            NonNull::new(raw.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave NULL"))?;
        // From here on, dropping `mapping` unmaps everything, so early returns do not leak.
        let mapping = GuardedMapping {
            base,
            total_len,
            data_len,
        };
        let data = mapping.data().as_ptr().cast::<libc::c_void>();
        // SAFETY: `data .. data + data_len` lies inside the mapping created above, between the two
        // guard pages, and is page-aligned.
        if unsafe { libc::mprotect(data, data_len, libc::PROT_READ | libc::PROT_WRITE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        advise_secret_pages(data, data_len);
        Ok(mapping)
    }

    /// The first data byte (one page past the start of the mapping).
    pub(crate) fn data(&self) -> NonNull<u8> {
        // SAFETY: the mapping is `total_len = data_len + 2 * page` bytes long, so one page past
        // its base is still inside it.
        unsafe { self.base.add(page_size()) }
    }

    /// Length of the data area in bytes.
    pub(crate) fn data_len(&self) -> usize {
        self.data_len
    }
}

impl Drop for GuardedMapping {
    fn drop(&mut self) {
        // SAFETY: `base .. base + total_len` is exactly the mapping this value created and owns;
        // no reference into it outlives its owner.
        let rc = unsafe { libc::munmap(self.base.as_ptr().cast(), self.total_len) };
        debug_assert_eq!(rc, 0, "munmap of an owned mapping failed");
    }
}

/// Marks pages as secret: not in core dumps, zero in forked children. Both are best effort: a
/// kernel without `MADV_WIPEONFORK` (before Linux 4.14) answers `EINVAL`, which changes nothing
/// about the pages' other protections.
fn advise_secret_pages(addr: *mut libc::c_void, len: usize) {
    #[cfg(target_os = "linux")]
    for advice in [libc::MADV_DONTDUMP, libc::MADV_WIPEONFORK] {
        // SAFETY: `addr .. addr + len` is a page-aligned range of a mapping owned by the caller;
        // madvise with these two advices changes dump and fork behaviour, never the contents.
        let rc = unsafe { libc::madvise(addr, len, advice) };
        if rc != 0 {
            tracing::debug!(
                advice,
                error = %io::Error::last_os_error(),
                "madvise on secret pages failed; continuing"
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (addr, len);
}

/// Locks `len` bytes at `addr` (page-aligned, inside a live mapping) into RAM.
pub(crate) fn lock(addr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: callers pass a page-aligned range inside a mapping they own; mlock only pins the
    // pages and never changes their contents.
    if unsafe { libc::mlock(addr.as_ptr().cast(), len) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Unlocks `len` bytes at `addr` (page-aligned, inside a live mapping).
pub(crate) fn unlock(addr: NonNull<u8>, len: usize) {
    // SAFETY: callers pass a page-aligned range inside a mapping they own; munlock only unpins.
    let rc = unsafe { libc::munlock(addr.as_ptr().cast(), len) };
    debug_assert_eq!(rc, 0, "munlock of an owned range failed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_is_a_power_of_two_of_at_least_4k() {
        let p = page_size();
        assert!(p >= 4096 && p.is_power_of_two());
        assert_eq!(round_to_pages(1), Some(p));
        assert_eq!(round_to_pages(p), Some(p));
        assert_eq!(round_to_pages(p + 1), Some(2 * p));
        assert_eq!(round_to_pages(usize::MAX), None);
    }

    #[test]
    fn data_area_is_zeroed_writable_and_lockable() {
        let page = page_size();
        let m = GuardedMapping::new(2 * page).unwrap();
        assert_eq!(m.data_len(), 2 * page);
        assert_eq!(m.data().as_ptr() as usize % page, 0);
        // SAFETY: the data area is 2 pages of readable, writable memory owned by `m`.
        let data = unsafe { std::slice::from_raw_parts_mut(m.data().as_ptr(), 2 * page) };
        assert!(data.iter().all(|&b| b == 0));
        data.fill(0x5a);
        assert!(data.iter().all(|&b| b == 0x5a));
        // The test process runs as root in CI (CAP_IPC_LOCK) or with a memlock budget far above
        // one page, so locking a single page must succeed.
        lock(m.data(), page).unwrap();
        unlock(m.data(), page);
    }

    #[test]
    fn guard_pages_are_inaccessible() {
        let page = page_size();
        let m = GuardedMapping::new(page).unwrap();
        let data = m.data().as_ptr() as usize;
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let perms_at = |addr: usize| {
            maps.lines()
                .find_map(|l| {
                    let (range, rest) = l.split_once(' ')?;
                    let (lo, hi) = range.split_once('-')?;
                    let lo = usize::from_str_radix(lo, 16).ok()?;
                    let hi = usize::from_str_radix(hi, 16).ok()?;
                    (lo <= addr && addr < hi).then(|| rest[..4].to_string())
                })
                .unwrap()
        };
        assert_eq!(perms_at(data - page), "---p");
        assert_eq!(perms_at(data), "rw-p");
        assert_eq!(perms_at(data + page), "---p");
    }
}
