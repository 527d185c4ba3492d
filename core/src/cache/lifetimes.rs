//! Entry lifetimes (capacity and TTL eviction) in `moka`, fed off the caller's path.
//!
//! A moka insert, with the housekeeping it triggers, costs about as much as the rest of a
//! miss, and nothing on the read path needs it: hits read the index, and freshness is each
//! entry's own clock. So a miss only queues its entry here; a maintenance thread moves queued
//! entries into moka every few milliseconds while the cache is busy and parks when it is
//! idle. The queue is bounded: past `inline_limit` entries the caller moves them itself
//! (which also covers a forked child, where the maintenance thread does not exist).
//!
//! Moka and the queue hold entries weakly: an entry (and the locked memory of its value) is
//! freed as soon as the index and the callers' handles let go of it, on their threads, not
//! later and in bulk on the maintenance thread, where freeing another thread's allocations
//! contends on the allocator's arena lock.
//!
//! Moka evicts only when its housekeeping runs, and nothing on the hit path runs it. So while
//! the index holds entries the maintenance thread runs it at least every `sweep` (a sixteenth
//! of an entry's lifetime, 5 ms to 10 s), also when idle: a value leaves memory (and is
//! wiped) at most that long after it can no longer be served, not at the next miss, which in
//! a service that reads its credentials once may never come. The same thread retires the
//! values that entries give up (see `graves.rs`).
//!
//! An entry is handed to moka only while the index still holds it, so an entry invalidated
//! while queued is not inserted. The eviction listener removes an entry from the index only
//! if it is still the indexed one, so a late insert can never evict a newer value.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::Thread;
use std::time::{Duration, Instant};

use super::Entry;
use super::graves::{self, Graveyard};
use super::key::KeyBytes;

/// How often the maintenance thread drains while entries arrive.
pub(super) const TICK: Duration = Duration::from_millis(5);
/// Idle ticks after which it parks until the next queued entry (or the next sweep).
pub(super) const IDLE_TICKS: u32 = 200;
/// Bounds of the interval between evictions of expired entries.
const SWEEP_AT_LEAST: Duration = TICK;
const SWEEP_AT_MOST: Duration = Duration::from_secs(10);
/// Ticks from a value's retirement to the flush that frees it (100 ms). A flush is a
/// process-wide barrier (an interrupt on every CPU running one of the process's threads),
/// so retirements are gathered: at most ten barriers a second, whatever the write rate.
const FLUSH_AFTER_TICKS: u32 = 20;
/// Flushes retried after the first, each after twice the wait of the one before: a flush
/// fails while more threads hold guards than the batch has values, as under steady hits on
/// many threads. After the last, the values go with the thread's next successful flush or
/// full batch.
const FLUSH_RETRIES: u32 = 4;

/// Entries are keyed by address: the weak reference moka holds keeps the entry's allocation,
/// so no other entry can have that address while moka tracks it. An entry's lifetime is thus
/// its own, not its name's: forgetting a removed entry cannot forget a newer one of the same
/// name, and moka hashes a word, not the name.
pub(super) type Moka = moka::sync::Cache<usize, Weak<Entry>>;

/// The key of `entry` in moka.
fn key_of(entry: *const Entry) -> usize {
    entry.addr()
}
type Index = super::Index;

pub(super) struct Lifetimes {
    moka: Moka,
    queue: Mutex<Queue>,
    /// The buffer a drain works through (locked only by drains, before `queue`).
    batch: Mutex<Vec<Weak<Entry>>>,
    inline_limit: usize,
    /// How often expired entries are evicted while the index holds any.
    sweep: Duration,
    /// Values given up by entries, and the maintenance thread.
    pub(super) graves: Arc<Graveyard>,
}

#[derive(Default)]
struct Queue {
    entries: Vec<Weak<Entry>>,
    /// The maintenance thread is parked without a timeout and must be woken.
    parked: bool,
}

impl Lifetimes {
    /// Lifetimes for entries that moka keeps for `lifetime` after their last admission.
    pub(super) fn new(
        moka: Moka,
        capacity: u64,
        lifetime: Duration,
        graves: Arc<Graveyard>,
    ) -> Lifetimes {
        // Small caches stay exact: below 16 entries of capacity, every miss inserts inline.
        let inline_limit = usize::try_from(capacity / 8)
            .unwrap_or(usize::MAX)
            .clamp(1, 1024);
        Lifetimes {
            moka,
            queue: Mutex::new(Queue::default()),
            batch: Mutex::new(Vec::new()),
            inline_limit,
            sweep: (lifetime / 16).clamp(SWEEP_AT_LEAST, SWEEP_AT_MOST),
            graves,
        }
    }

    /// Queues `entry` (new, or renewed by a version check) for moka. `owner` is the cache the
    /// maintenance thread serves, started on first use (borrowed, and downgraded only then:
    /// a `Weak` made per admission costs two atomic operations on the cache's counts).
    pub(super) fn admit(&self, entry: &Arc<Entry>, index: &Index, owner: &Arc<super::Owner>) {
        let entry = Arc::downgrade(entry);
        let (overflow, wake) = {
            let Ok(mut q) = self.queue.lock() else {
                // A poisoned queue: insert directly rather than lose the lifetime.
                self.insert_if_indexed(entry, index);
                return;
            };
            q.entries.push(entry);
            let overflow =
                (q.entries.len() >= self.inline_limit).then(|| std::mem::take(&mut q.entries));
            (overflow, std::mem::take(&mut q.parked))
        };
        // Started even when this caller inserts the entries itself: it also sweeps expired
        // entries and retires given-up values.
        let thread = self
            .graves
            .thread
            .get_or_init(|| start(Arc::downgrade(owner)));
        if let Some(entries) = overflow {
            self.insert_all(entries, index);
            return;
        }
        match thread {
            Some(t) if wake => t.unpark(),
            Some(_) => {}
            // No maintenance thread could be started: the caller does the work.
            None => {
                self.drain(index);
            }
        }
    }

    /// Moves every queued entry into moka now. Returns how many there were.
    pub(super) fn drain(&self, index: &Index) -> usize {
        // The queue and the batch trade buffers, so each keeps its capacity: a miss's push
        // does not regrow an emptied queue. An empty queue keeps its buffer: the idle ticks'
        // drains would otherwise hand it the batch's, which is still unallocated until a
        // second drain has had something to take.
        let mut batch = self.batch.lock().unwrap_or_else(PoisonError::into_inner);
        match self.queue.lock() {
            Ok(q) if q.entries.is_empty() => return 0,
            Ok(mut q) => std::mem::swap(&mut q.entries, &mut *batch),
            Err(_) => return 0,
        }
        let n = batch.len();
        for e in batch.drain(..) {
            self.insert_if_indexed(e, index);
        }
        n
    }

    fn insert_all(&self, entries: Vec<Weak<Entry>>, index: &Index) {
        for e in entries {
            self.insert_if_indexed(e, index);
        }
    }

    fn insert_if_indexed(&self, entry: Weak<Entry>, index: &Index) {
        let indexed = entry.upgrade().is_some_and(|e| {
            index
                .pin()
                .get(&KeyBytes(e.key.as_bytes()))
                .is_some_and(|current| Arc::ptr_eq(current, &e))
        });
        if indexed {
            self.moka.insert(key_of(entry.as_ptr()), entry);
        }
    }

    /// Drains the queue and runs moka's pending evictions.
    pub(super) fn run_pending_tasks(&self, index: &Index) {
        self.drain(index);
        self.moka.run_pending_tasks();
    }

    /// Forgets `entry`, which the index no longer holds (so a queued one is skipped when
    /// drained).
    pub(super) fn invalidate(&self, entry: &Arc<Entry>) {
        self.moka.invalidate(&key_of(Arc::as_ptr(entry)));
    }

    /// Forgets everything queued and cached.
    pub(super) fn clear(&self) {
        if let Ok(mut q) = self.queue.lock() {
            q.entries.clear();
        }
        self.moka.invalidate_all();
    }

    /// Whether the maintenance thread may park: only with nothing queued, and then the next
    /// `admit` will wake it (and, parked without a timer, the next buried value).
    fn may_park(&self, untimed: bool) -> bool {
        let Ok(mut q) = self.queue.lock() else {
            return false;
        };
        if !q.entries.is_empty() || !self.graves.may_park(untimed) {
            return false;
        }
        q.parked = true;
        true
    }

    /// Room in the queue for entries before it regrows.
    #[cfg(test)]
    pub(super) fn queued_capacity(&self) -> usize {
        self.queue.lock().map_or(0, |q| q.entries.capacity())
    }

    /// Whether moka holds the lifetime of `entry`.
    #[cfg(test)]
    pub(super) fn tracks(&self, entry: &Arc<Entry>) -> bool {
        self.moka.contains_key(&key_of(Arc::as_ptr(entry)))
    }

    /// Entries waiting for the next drain.
    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        self.queue.lock().map_or(0, |q| q.entries.len())
    }

    /// Entries moka tracks (after its pending tasks).
    #[cfg(test)]
    pub(super) fn tracked(&self) -> u64 {
        self.moka.run_pending_tasks();
        self.moka.entry_count()
    }

    /// Wakes the maintenance thread so that it notices its cache is gone.
    pub(super) fn stop(&self) {
        if let Some(Some(t)) = self.graves.thread.get() {
            t.unpark();
        }
    }
}

fn start(owner: Weak<super::Owner>) -> Option<Thread> {
    std::thread::Builder::new()
        .name("sealbox-cache".into())
        .spawn(move || maintain(owner))
        .map(|h| h.thread().clone())
        .map_err(
            |e| tracing::warn!(error = %e, "no cache maintenance thread; misses insert inline"),
        )
        .ok()
}

fn maintain(owner: Weak<super::Owner>) {
    let mut idle = 0u32;
    let mut last_sweep = Instant::now();
    let mut flush = Flush::default();
    loop {
        let Some(inner) = owner.upgrade() else { return };
        let lifetimes = &inner.lifetimes;
        let drained = lifetimes.drain(&inner.index);
        idle = if drained == 0 { idle + 1 } else { 0 };
        if drained > 0 || last_sweep.elapsed() >= lifetimes.sweep {
            // Evictions bury their entries' values, retired just below.
            lifetimes.moka.run_pending_tasks();
            last_sweep = Instant::now();
        }
        let buried = lifetimes.graves.take();
        if !buried.is_empty() {
            // Activity like a queued entry: more is likely, and a polling thread need not
            // be woken for it.
            idle = 0;
            graves::retire(buried, &inner.index);
            flush.schedule();
        }
        if flush.due() && !graves::flush(&inner.index) {
            flush = Flush::default();
        }
        // Held entries keep the thread on a timer (their expiry); an empty cache needs it
        // only when the next entry (or value to retire) arrives, and that wakes it.
        let untimed = inner.index.is_empty();
        let wait = if idle < IDLE_TICKS || flush.pending() || !lifetimes.may_park(untimed) {
            Some(TICK)
        } else if untimed {
            None
        } else {
            Some(lifetimes.sweep.saturating_sub(last_sweep.elapsed()))
        };
        drop(inner);
        match wait {
            Some(t) => std::thread::park_timeout(t),
            None => {
                idle = 0;
                std::thread::park();
            }
        }
    }
}

/// When the maintenance thread next flushes its retired values, counted in ticks.
#[derive(Default)]
struct Flush {
    /// Ticks until the next attempt; `None`: nothing to flush.
    in_ticks: Option<u32>,
    attempts: u32,
}

impl Flush {
    /// A flush within `FLUSH_AFTER_TICKS`, unless one is due sooner.
    fn schedule(&mut self) {
        if self.in_ticks.is_none_or(|t| t > FLUSH_AFTER_TICKS) {
            *self = Flush {
                in_ticks: Some(FLUSH_AFTER_TICKS),
                attempts: 0,
            };
        }
    }

    fn pending(&self) -> bool {
        self.in_ticks.is_some()
    }

    /// Counts a tick; whether an attempt is due now (the next one is then scheduled).
    fn due(&mut self) -> bool {
        match self.in_ticks {
            Some(0) => {
                self.in_ticks =
                    (self.attempts < FLUSH_RETRIES).then(|| FLUSH_AFTER_TICKS << self.attempts);
                self.attempts += 1;
                true
            }
            Some(n) => {
                self.in_ticks = Some(n - 1);
                false
            }
            None => false,
        }
    }
}
