//! The slot arena: small secrets share locked pages, so a 64-byte secret costs a mutex round
//! trip and a few stores instead of several system calls.
//!
//! Each size class (32 B to 2 KiB, powers of two) is a [`Pool`] of chunks. A chunk is one
//! [`GuardedMapping`] of 64 KiB of data pages cut into equal slots; slots never straddle a page,
//! so every page keeps its own count of live slots. A page is `mlock`ed when it receives its
//! first live slot and `munlock`ed only once it has none; a chunk is unmapped only once it has no
//! live slot at all. To keep a steady alloc/free loop free of system calls, each pool keeps up to
//! [`SPARE_LOCKED_PAGES`] empty pages locked and one empty chunk mapped.
//!
//! Every slot is wiped with `zeroize` when it is released, before the pool can hand it out again,
//! so a slot is all zeros whenever it is free (fresh anonymous pages start zeroed).
//!
//! The process-wide pools sit behind small per-thread caches (see `thread_cache`): a thread
//! that frees a locked slot keeps a few for its next allocations, so the common
//! alloc-use-drop cycle takes no lock at all. Cached slots are wiped and still count as in use
//! for their page, which therefore stays locked.

use std::cell::RefCell;
use std::ptr::NonNull;
use std::sync::{Mutex, MutexGuard, Once, PoisonError};

use zeroize::Zeroize;

use super::mapping::{self, GuardedMapping};
use super::policy::{self, MemoryPolicy};
use super::thread_cache;
use crate::error::{Error, ErrorKind, Result};

/// Slot sizes of the pools, smallest first. Larger secrets get their own mapping.
/// 4 KiB is a class of its own (one slot per 4 KiB page) because 4 KiB records are common
/// (`Envelope::open` of a page-sized value): a mapping of its own would cost an mmap, mlock,
/// munlock and munmap per secret.
pub(crate) const CLASS_SIZES: [usize; 8] = [32, 64, 128, 256, 512, 1024, 2048, 4096];

/// The largest length served from a shared slot.
pub(crate) const MAX_SLOT: usize = CLASS_SIZES[CLASS_SIZES.len() - 1];

/// Empty pages a pool keeps locked so that freeing and reallocating the last slot of a page does
/// not cost an `munlock` + `mlock` pair every time.
pub(crate) const SPARE_LOCKED_PAGES: usize = 2;

/// Data bytes per chunk (rounded up to at least four pages on systems with large pages).
const CHUNK_DATA_BYTES: usize = 64 * 1024;

/// The process-wide pools, one per size class.
static POOLS: [Pool; CLASS_SIZES.len()] = [
    Pool::global(0),
    Pool::global(1),
    Pool::global(2),
    Pool::global(3),
    Pool::global(4),
    Pool::global(5),
    Pool::global(6),
    Pool::global(7),
];

/// The pool serving `len` bytes, or `None` when `len` needs its own mapping (or is zero).
#[inline]
pub(crate) fn pool_for(len: usize) -> Option<&'static Pool> {
    if len == 0 || len > MAX_SLOT {
        return None;
    }
    let class = len.max(CLASS_SIZES[0]).next_power_of_two();
    let index = (class.trailing_zeros() - CLASS_SIZES[0].trailing_zeros()) as usize;
    POOLS.get(index)
}

/// All process-wide pools (for statistics).
pub(crate) fn pools() -> &'static [Pool] {
    &POOLS
}

/// Wipes `bytes` bytes at `ptr` (8-byte aligned, `bytes` a multiple of 8) with `zeroize`, one
/// word at a time: the same volatile, non-elidable stores as zeroizing bytes, eight times fewer.
///
/// # Safety
/// `ptr .. ptr + bytes` must be writable memory owned by the caller, with no live references.
#[inline]
pub(crate) unsafe fn wipe(ptr: NonNull<u8>, bytes: usize) {
    debug_assert!((ptr.as_ptr() as usize).is_multiple_of(8) && bytes.is_multiple_of(8));
    // SAFETY: the caller guarantees the range is owned, writable and unaliased; alignment and
    // length fit `u64` as asserted above (slots and mappings are at least 32-byte aligned and
    // sized in multiples of 32 bytes).
    let words = unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr().cast::<u64>(), bytes / 8) };
    words.zeroize();
}

thread_local! {
    /// The pools' locks, held by the thread that calls `fork()` from the `prepare` handler
    /// until the `parent` and `child` ones (the child's one thread is that thread's copy).
    static HELD_FOR_FORK: RefCell<Vec<MutexGuard<'static, PoolState>>> =
        const { RefCell::new(Vec::new()) };
}

/// Before a fork: takes every pool's lock, so that no other thread holds one when the
/// process is copied. A child copies only the forking thread; a lock another thread held
/// would stay held there forever, and the child's first secret of that size would wait for it.
extern "C" fn lock_pools_for_fork() {
    // `try_`: a fork from a thread whose locals are being destroyed takes no locks (and a
    // panic must not unwind out of a C callback).
    let _ = HELD_FOR_FORK.try_with(|held| {
        if let Ok(mut held) = held.try_borrow_mut() {
            held.extend(POOLS.iter().map(Pool::state));
        }
    });
}

/// After a fork, in the parent: releases what `lock_pools_for_fork` took.
extern "C" fn unlock_pools_after_fork() {
    let _ = HELD_FOR_FORK.try_with(|held| {
        if let Ok(mut held) = held.try_borrow_mut() {
            held.clear();
        }
    });
}

/// After a fork, in the child: memory locks are not inherited (`mlock(2)`), so every page is
/// marked unlocked (the next slot handed out on it locks it again, under the caller's policy,
/// as after a failed lock); then the pools are released, and the slots this thread had cached
/// (which would claim a lock) go back to them.
extern "C" fn unlock_pools_in_child() {
    let _ = HELD_FOR_FORK.try_with(|held| {
        if let Ok(mut held) = held.try_borrow_mut() {
            for st in held.iter_mut() {
                st.forget_locks();
            }
            held.clear();
        }
    });
    thread_cache::release_thread_cache();
}

/// Registers the fork handlers once, before the first slot is handed out (so before any
/// thread can hold a pool's lock).
fn guard_pools_across_fork() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // SAFETY: `pthread_atfork` only records the three function pointers, static
        // `extern "C"` functions without arguments that stay valid for the life of the
        // process. They lock and unlock the pools' mutexes in one fixed order (the arena
        // never holds two pool locks at once, so no thread waits on a pool lock while
        // holding another), allocate only before the fork, and never unwind.
        let rc = unsafe {
            libc::pthread_atfork(
                Some(lock_pools_for_fork),
                Some(unlock_pools_after_fork),
                Some(unlock_pools_in_child),
            )
        };
        if rc != 0 {
            tracing::error!(
                target: "sealbox::memory",
                code = rc,
                "could not register the secret arena's fork handlers; a forked child may \
                 wait forever for a lock another thread held"
            );
        }
    });
}

/// One size class.
#[derive(Debug)]
pub(crate) struct Pool {
    slot_size: usize,
    /// The size class, for the process-wide pools whose freed slots may wait in a thread cache.
    class: Option<usize>,
    state: Mutex<PoolState>,
}

#[derive(Debug)]
struct PoolState {
    /// Every chunk of the pool, owned through `Box::into_raw`.
    chunks: Vec<NonNull<Chunk>>,
    /// Index of a chunk that probably has a free slot.
    hint: usize,
    /// Empty pages that are still locked (at most `SPARE_LOCKED_PAGES`).
    spare_locked_pages: usize,
    /// Chunks with no live slot (at most one is kept).
    empty_chunks: usize,
}

// SAFETY: the chunks behind the raw pointers are owned by this state and only touched while the
// pool's mutex is held, from whichever thread holds it.
unsafe impl Send for PoolState {}

impl PoolState {
    /// Marks every page unlocked: in a forked child, none is (see `unlock_pools_in_child`).
    fn forget_locks(&mut self) {
        self.spare_locked_pages = 0;
        for chunk in &self.chunks {
            // SAFETY: chunks in the list are live boxes owned by the pool; the caller holds
            // the pool's mutex.
            let chunk = unsafe { &mut *chunk.as_ptr() };
            chunk.pages.iter_mut().for_each(|p| p.locked = false);
        }
    }
}

#[derive(Debug)]
struct Chunk {
    mapping: GuardedMapping,
    slots_per_page: usize,
    /// Free slot indices; the lowest is handed out first.
    free: FreeSlots,
    pages: Box<[Page]>,
    live: usize,
    /// This chunk's index in `PoolState::chunks`.
    position: usize,
}

#[derive(Clone, Copy, Debug, Default)]
struct Page {
    live: u32,
    locked: bool,
}

impl Chunk {
    fn new(slot_size: usize, position: usize) -> Result<Chunk> {
        let page = mapping::page_size();
        let data_len = CHUNK_DATA_BYTES.max(4 * page);
        let mapping = GuardedMapping::new(data_len).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("could not map memory for secrets: {e}"),
            )
            .with_source(e)
        })?;
        let slots_per_page = page / slot_size;
        let pages = data_len / page;
        let slots = u32::try_from(slots_per_page * pages)
            .map_err(|_| Error::internal("secret arena chunk has too many slots"))?;
        Ok(Chunk {
            mapping,
            slots_per_page,
            free: FreeSlots::all(slots),
            pages: vec![Page::default(); pages].into_boxed_slice(),
            live: 0,
            position,
        })
    }

    fn page_addr(&self, page: usize) -> NonNull<u8> {
        // SAFETY: `page < pages.len()`, so the offset stays inside the data area.
        unsafe { self.mapping.data().add(page * mapping::page_size()) }
    }

    fn locked_pages(&self) -> usize {
        self.pages.iter().filter(|p| p.locked).count()
    }
}

/// A chunk's free slots as a bitmap, handed out lowest index first. Address order packs live
/// slots into the lowest pages, so the pages above stay empty (and unlocked) however frees
/// and allocations interleave. (A stack of freed slots, reused last-in first-out, scattered
/// long-lived and short-lived slots over every page of the chunk; batches of frees, such as
/// the cache index reclaiming 32 replaced entries at a time, then emptied, unlocked and
/// relocked pages over and over: an `mlock` every few cache misses.)
#[derive(Debug)]
struct FreeSlots {
    words: Box<[u64]>,
    count: usize,
    /// No free slot below word `lowest`.
    lowest: usize,
}

impl FreeSlots {
    fn all(slots: u32) -> FreeSlots {
        let slots = slots as usize;
        let mut words = vec![u64::MAX; slots.div_ceil(64)].into_boxed_slice();
        if !slots.is_multiple_of(64)
            && let Some(last) = words.last_mut()
        {
            *last = (1u64 << (slots % 64)) - 1;
        }
        FreeSlots {
            words,
            count: slots,
            lowest: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Takes the lowest free slot.
    fn pop(&mut self) -> Option<u32> {
        let (i, word) = self
            .words
            .iter_mut()
            .enumerate()
            .skip(self.lowest)
            .find(|(_, w)| **w != 0)?;
        let bit = word.trailing_zeros();
        *word &= !(1u64 << bit);
        self.count -= 1;
        self.lowest = i;
        u32::try_from(i * 64).ok().map(|base| base + bit)
    }

    /// Frees slot `index` (which must be taken).
    fn push(&mut self, index: u32) {
        let (i, bit) = (index as usize / 64, index % 64);
        if let Some(word) = self.words.get_mut(i) {
            debug_assert!(*word & (1u64 << bit) == 0, "slot {index} freed twice");
            *word |= 1u64 << bit;
            self.count += 1;
            self.lowest = self.lowest.min(i);
        }
    }
}

/// A live slot handed out by a [`Pool`]; returned (and wiped) by [`Pool::free`].
#[derive(Debug)]
pub(crate) struct Slot {
    ptr: NonNull<u8>,
    chunk: NonNull<Chunk>,
    pool: &'static Pool,
    /// `index << 1 | locked`: whole words only, so moving a slot around (through `Option`s and
    /// the thread cache) copies words instead of stalling on byte-sized pieces.
    meta: usize,
}

impl Slot {
    fn new(
        ptr: NonNull<u8>,
        chunk: NonNull<Chunk>,
        pool: &'static Pool,
        index: u32,
        locked: bool,
    ) -> Slot {
        Slot {
            ptr,
            chunk,
            pool,
            meta: (index as usize) << 1 | usize::from(locked),
        }
    }

    /// The slot's index in its chunk.
    fn index(&self) -> u32 {
        // Constructed from a `u32` in `Slot::new`.
        (self.meta >> 1) as u32
    }

    /// The first byte of the slot (`pool.slot_size()` bytes, 32-byte aligned).
    #[inline]
    pub(crate) fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// Whether the slot's page was locked when the slot was handed out; it stays locked until
    /// the slot is freed.
    #[inline]
    pub(crate) fn is_locked(&self) -> bool {
        self.meta & 1 == 1
    }

    /// The slot's size in bytes.
    #[inline]
    pub(crate) fn size(&self) -> usize {
        self.pool.slot_size
    }

    /// Wipes the slot and returns it: to this thread's cache when it is a locked slot of a
    /// process-wide pool and the cache has room, otherwise to its pool.
    #[inline(always)]
    pub(crate) fn release(self) {
        // SAFETY: the slot is `size()` bytes owned by `self` (consumed here), 32-byte aligned;
        // nobody else can reach it until it is cached or pushed back on a free list.
        unsafe { wipe(self.ptr, self.size()) };
        let unstashed = match self.pool.class {
            Some(class) if self.is_locked() => thread_cache::stash(class, self),
            _ => Some(self),
        };
        if let Some(slot) = unstashed {
            slot.pool.return_wiped(slot);
        }
    }

    /// Returns an already wiped slot to its pool.
    pub(crate) fn return_wiped(self) {
        self.pool.return_wiped(self);
    }
}

/// Counters of one pool, summed into [`super::ArenaStats`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PoolStats {
    pub(crate) live_slots: usize,
    pub(crate) mapped_bytes: usize,
    pub(crate) locked_bytes: usize,
}

impl Pool {
    /// The process-wide pool of size class `class`.
    const fn global(class: usize) -> Pool {
        let mut pool = Pool::new(CLASS_SIZES[class]);
        pool.class = Some(class);
        pool
    }

    /// An empty pool of `slot_size`-byte slots (a power of two, at least 32, at most half a page).
    pub(crate) const fn new(slot_size: usize) -> Pool {
        Pool {
            slot_size,
            class: None,
            state: Mutex::new(PoolState {
                chunks: Vec::new(),
                hint: 0,
                spare_locked_pages: 0,
                empty_chunks: 0,
            }),
        }
    }

    /// The size of this pool's slots in bytes.
    pub(crate) fn slot_size(&self) -> usize {
        self.slot_size
    }

    fn state(&self) -> MutexGuard<'_, PoolState> {
        // Nothing panics while the lock is held; if something did, the bookkeeping is still
        // consistent at every await-free step, so keep going rather than poisoning every secret.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands out a zeroed slot under `policy`: from this thread's cache when it holds one (a
    /// cached slot is always locked, so it satisfies either policy), otherwise from the pool.
    #[inline(always)]
    pub(crate) fn take(&'static self, policy: MemoryPolicy) -> Result<Slot> {
        if let Some(slot) = self.class.and_then(thread_cache::take) {
            return Ok(slot);
        }
        self.alloc(policy)
    }

    /// Hands out a zeroed slot from the pool itself under `policy`.
    #[inline(never)]
    pub(crate) fn alloc(&'static self, policy: MemoryPolicy) -> Result<Slot> {
        guard_pools_across_fork();
        let mut st = self.state();
        let chunk_ptr = st.chunk_with_free_slot(self.slot_size)?;
        // SAFETY: chunks in `st.chunks` are live boxes owned by the pool; the mutex is held.
        let chunk = unsafe { &mut *chunk_ptr.as_ptr() };
        let Some(index) = chunk.free.pop() else {
            return Err(Error::internal("secret arena chunk unexpectedly full"));
        };
        let page_index = index as usize / chunk.slots_per_page;
        let page_addr = chunk.page_addr(page_index);
        let page = &mut chunk.pages[page_index];

        let mut lock_error = None;
        if page.locked {
            if page.live == 0 {
                st.spare_locked_pages -= 1;
            }
        } else {
            // Also reached for a page already in use whose lock failed earlier under
            // BestEffort: every allocation on it retries, so it heals once memory frees up.
            match mapping::lock(page_addr, mapping::page_size()) {
                Ok(()) => page.locked = true,
                Err(e) => lock_error = Some(e),
            }
        }
        let locked = page.locked;
        if policy == MemoryPolicy::Strict
            && let Some(cause) = lock_error.take()
        {
            chunk.free.push(index);
            drop(st);
            return Err(policy::strict_failure(cause));
        }
        page.live += 1;
        if chunk.live == 0 {
            st.empty_chunks -= 1;
        }
        chunk.live += 1;
        let ptr = {
            // SAFETY: `index < slots_per_page * pages`, so the slot lies inside the data area.
            unsafe { chunk.mapping.data().add(index as usize * self.slot_size) }
        };
        drop(st);

        // Report outside the lock: a tracing subscriber may take its own locks.
        if let Some(cause) = lock_error {
            policy::best_effort_failure(cause);
        }
        Ok(Slot::new(ptr, chunk_ptr, self, index, locked))
    }

    /// Wipes `slot` and returns it to the pool (never to a thread cache).
    #[cfg(test)]
    fn free(&self, slot: Slot) {
        // SAFETY: the slot is `slot_size` bytes owned by `slot` (consumed here), 32-byte aligned;
        // nobody else can reach it until it is pushed back on the free list.
        unsafe { wipe(slot.ptr, self.slot_size) };
        self.return_wiped(slot);
    }

    /// Returns a wiped slot to the pool; unlocks its page and unmaps its chunk when they fall
    /// empty (beyond the spares kept).
    #[inline(never)]
    fn return_wiped(&self, slot: Slot) {
        debug_assert!(std::ptr::eq(self, slot.pool));
        let mut st = self.state();
        // SAFETY: a chunk with a live slot is never unmapped, so the pointer is valid; the mutex
        // is held.
        let chunk = unsafe { &mut *slot.chunk.as_ptr() };
        chunk.free.push(slot.index());
        chunk.live -= 1;
        let page_index = slot.index() as usize / chunk.slots_per_page;
        let page_addr = chunk.page_addr(page_index);
        let page = &mut chunk.pages[page_index];
        page.live -= 1;
        if page.live == 0 && page.locked {
            if st.spare_locked_pages < SPARE_LOCKED_PAGES {
                st.spare_locked_pages += 1;
            } else {
                mapping::unlock(page_addr, mapping::page_size());
                page.locked = false;
            }
        }

        let mut released = None;
        if chunk.live == 0 {
            if st.empty_chunks >= 1 {
                st.spare_locked_pages -= chunk.locked_pages();
                released = Some(st.remove_chunk(chunk.position));
            } else {
                st.empty_chunks += 1;
            }
        } else if st
            .chunks
            .get(st.hint)
            // SAFETY: chunks in the list are live boxes owned by the pool; the mutex is held.
            .is_none_or(|c| unsafe { c.as_ref() }.free.is_empty())
        {
            st.hint = chunk.position;
        }
        drop(st);
        // Unmap outside the lock; nobody else can reach a removed chunk.
        drop(released);
    }

    /// Live slots, mapped and locked bytes of this pool.
    pub(crate) fn stats(&self) -> PoolStats {
        let st = self.state();
        let page = mapping::page_size();
        let mut stats = PoolStats::default();
        for c in &st.chunks {
            // SAFETY: chunks in the list are live boxes owned by the pool; the mutex is held.
            let c = unsafe { c.as_ref() };
            stats.live_slots += c.live;
            stats.mapped_bytes += c.mapping.data_len();
            stats.locked_bytes += c.locked_pages() * page;
        }
        stats
    }
}

impl PoolState {
    fn chunk_with_free_slot(&mut self, slot_size: usize) -> Result<NonNull<Chunk>> {
        let has_free = |c: &NonNull<Chunk>| {
            // SAFETY: chunks in the list are live boxes owned by the pool, and the caller holds
            // the mutex.
            !unsafe { c.as_ref() }.free.is_empty()
        };
        if let Some(c) = self.chunks.get(self.hint).filter(|c| has_free(c)) {
            return Ok(*c);
        }
        if let Some(i) = self.chunks.iter().position(has_free) {
            self.hint = i;
            return Ok(self.chunks[i]);
        }
        let chunk = Chunk::new(slot_size, self.chunks.len())?;
        let ptr = NonNull::from(Box::leak(Box::new(chunk)));
        self.hint = self.chunks.len();
        self.chunks.push(ptr);
        self.empty_chunks += 1;
        Ok(ptr)
    }

    /// Takes the chunk at `position` out of the pool and returns it for unmapping.
    fn remove_chunk(&mut self, position: usize) -> Box<Chunk> {
        let ptr = self.chunks.swap_remove(position);
        if let Some(moved) = self.chunks.get_mut(position) {
            // SAFETY: a live box owned by the pool; the mutex is held.
            unsafe { moved.as_mut() }.position = position;
        }
        if self.hint >= self.chunks.len() {
            self.hint = 0;
        }
        // SAFETY: `ptr` came from `Box::leak` in `chunk_with_free_slot` and was just removed from
        // the list, so this is the only owner.
        unsafe { Box::from_raw(ptr.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn private_pool(slot_size: usize) -> &'static Pool {
        Box::leak(Box::new(Pool::new(slot_size)))
    }

    fn bytes(slot: &Slot) -> &[u8] {
        // SAFETY: a live slot is `size()` readable bytes owned by the test.
        unsafe { std::slice::from_raw_parts(slot.ptr().as_ptr(), slot.size()) }
    }

    fn fill(slot: &Slot, byte: u8) {
        // SAFETY: a live slot is `size()` writable bytes owned by the test.
        unsafe { std::ptr::write_bytes(slot.ptr().as_ptr(), byte, slot.size()) }
    }

    fn locked_pages(pool: &Pool) -> usize {
        pool.stats().locked_bytes / mapping::page_size()
    }

    #[test]
    fn lengths_map_to_the_smallest_class_that_fits() {
        assert!(pool_for(0).is_none());
        assert_eq!(pool_for(1).unwrap().slot_size, 32);
        assert_eq!(pool_for(32).unwrap().slot_size, 32);
        assert_eq!(pool_for(33).unwrap().slot_size, 64);
        assert_eq!(pool_for(64).unwrap().slot_size, 64);
        assert_eq!(pool_for(1000).unwrap().slot_size, 1024);
        assert_eq!(pool_for(2048).unwrap().slot_size, 2048);
        assert_eq!(pool_for(2049).unwrap().slot_size, 4096);
        assert_eq!(pool_for(4096).unwrap().slot_size, 4096);
        assert!(pool_for(4097).is_none());
    }

    #[test]
    fn slots_are_zeroed_aligned_distinct_and_locked() {
        let pool = private_pool(64);
        let a = pool.alloc(MemoryPolicy::Strict).unwrap();
        let b = pool.alloc(MemoryPolicy::Strict).unwrap();
        assert!(bytes(&a).iter().all(|&x| x == 0));
        assert_eq!(a.ptr().as_ptr() as usize % 64, 0);
        assert_eq!(
            (b.ptr().as_ptr() as usize).abs_diff(a.ptr().as_ptr() as usize),
            64
        );
        assert!(a.is_locked() && b.is_locked());
        assert_eq!(pool.stats().live_slots, 2);
        pool.free(a);
        pool.free(b);
        assert_eq!(pool.stats().live_slots, 0);
    }

    #[test]
    fn free_slots_hand_out_the_lowest_first() {
        let mut free = FreeSlots::all(130);
        let taken: Vec<u32> = (0..130).map(|_| free.pop().unwrap()).collect();
        assert_eq!(taken, (0..130).collect::<Vec<_>>());
        assert!(free.is_empty());
        assert_eq!(free.pop(), None);
        for i in [129, 64, 3, 70] {
            free.push(i);
        }
        assert_eq!(free.pop(), Some(3));
        assert_eq!(free.pop(), Some(64));
        assert_eq!(free.pop(), Some(70));
        assert_eq!(free.pop(), Some(129));
        assert!(free.is_empty());
    }

    #[test]
    fn live_slots_pack_into_the_lowest_pages_under_churn() {
        let pool = private_pool(64);
        let per_page = mapping::page_size() / 64;
        // A sliding window of live slots, freed in batches (as a cache's reclamation does).
        let mut live: std::collections::VecDeque<Slot> = Default::default();
        let mut most_locked = 0;
        for _ in 0..400 {
            for _ in 0..32 {
                live.push_back(pool.alloc(MemoryPolicy::Strict).unwrap());
            }
            if live.len() > 96 {
                for s in live.drain(..64) {
                    pool.free(s);
                }
            }
            most_locked = most_locked.max(locked_pages(pool));
        }
        // The window never holds more than 128 slots.
        let bound = 128usize.div_ceil(per_page) + SPARE_LOCKED_PAGES + 1;
        assert!(
            most_locked <= bound,
            "{most_locked} pages locked at once for at most 128 live slots"
        );
        for s in live {
            pool.free(s);
        }
    }

    #[test]
    fn a_freed_slot_is_wiped_and_reused_first() {
        let pool = private_pool(128);
        let keep = pool.alloc(MemoryPolicy::Strict).unwrap(); // keeps the chunk mapped
        let s = pool.alloc(MemoryPolicy::Strict).unwrap();
        fill(&s, 0xa5);
        let addr = s.ptr();
        pool.free(s);
        // SAFETY: the chunk is still mapped (`keep` is live) and the slot is free, so reading
        // its 128 bytes races with nobody in this private pool.
        let after = unsafe { std::slice::from_raw_parts(addr.as_ptr(), 128) };
        assert!(after.iter().all(|&x| x == 0), "slot not wiped on free");
        let again = pool.alloc(MemoryPolicy::Strict).unwrap();
        assert_eq!(again.ptr(), addr);
        pool.free(again);
        pool.free(keep);
    }

    #[test]
    fn pages_are_unlocked_once_empty_beyond_the_spares() {
        let pool = private_pool(1024);
        let per_page = mapping::page_size() / 1024;
        let slots: Vec<Slot> = (0..per_page * 5)
            .map(|_| pool.alloc(MemoryPolicy::Strict).unwrap())
            .collect();
        assert_eq!(locked_pages(pool), 5);
        // Emptying three slots of every page leaves every page in use: all stay locked.
        let mut slots = slots.into_iter();
        let mut kept = Vec::new();
        for _ in 0..5 {
            for i in 0..per_page {
                let s = slots.next().unwrap();
                if i == 0 { kept.push(s) } else { pool.free(s) }
            }
        }
        assert_eq!(locked_pages(pool), 5);
        // Releasing the last slot of each page unlocks all but the spares.
        for s in kept {
            pool.free(s);
        }
        assert_eq!(locked_pages(pool), SPARE_LOCKED_PAGES);
        assert_eq!(pool.stats().live_slots, 0);
    }

    #[test]
    fn empty_chunks_are_unmapped_except_one() {
        let pool = private_pool(2048);
        let per_chunk = CHUNK_DATA_BYTES.max(4 * mapping::page_size()) / 2048;
        let slots: Vec<Slot> = (0..per_chunk * 3)
            .map(|_| pool.alloc(MemoryPolicy::Strict).unwrap())
            .collect();
        assert_eq!(pool.stats().mapped_bytes, 3 * per_chunk * 2048);
        for s in slots {
            pool.free(s);
        }
        let stats = pool.stats();
        assert_eq!(stats.mapped_bytes, per_chunk * 2048);
        assert!(stats.locked_bytes <= SPARE_LOCKED_PAGES * mapping::page_size());
        // The pool still works after shrinking.
        let s = pool.alloc(MemoryPolicy::Strict).unwrap();
        assert!(s.is_locked());
        pool.free(s);
    }

    #[test]
    fn concurrent_alloc_and_free_keep_every_slot_private() {
        let pool = private_pool(32);
        std::thread::scope(|scope| {
            for t in 0..4u8 {
                scope.spawn(move || {
                    for round in 0..2000usize {
                        let held: Vec<Slot> = (0..1 + round % 7)
                            .map(|_| pool.alloc(MemoryPolicy::Strict).unwrap())
                            .collect();
                        for s in &held {
                            assert!(bytes(s).iter().all(|&x| x == 0));
                            fill(s, t + 1);
                        }
                        for s in held {
                            assert!(bytes(&s).iter().all(|&x| x == t + 1));
                            pool.free(s);
                        }
                    }
                });
            }
        });
        assert_eq!(pool.stats().live_slots, 0);
    }
}
