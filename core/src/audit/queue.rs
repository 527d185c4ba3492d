//! The hand-off between accesses and the audit writer.
//!
//! Each thread that records events gets its own single-producer ring (`rtrb`) per log: a push
//! is a few plain stores and one release store, with no lock and no system call. Every other
//! event goes in boxed, in the same ring, so a thread's events keep their order.
//!
//! Cache hits go in as a 16-byte [`Entry::Read`]: the version's resource and the cache's
//! answer. Who read, and when, change far less often than what is read, so a ring says them
//! only when they change ([`Entry::By`], [`Entry::At`]) and the writer applies them to the
//! reads that follow. The wall clock is read only when the cache's coarse clock, which dated
//! the hit for its TTL, has ticked. A burst of hits then streams four reads per cache line
//! to the writer, and an audited hit takes no count on the client's principal, which every
//! thread of the client shares.
//!
//! Measured, not assumed (`benches/benches/cache.rs`, four processes of each, alternating,
//! 5 December 2026): the 40-byte record this replaced (principal, resource and wall-clock time
//! in each, the clock read on every hit) cost 2.9x-3.8x a `HashMap` get in bursts of hits over
//! 1024 secrets and 2.6x-5.4x on a hot set of 64; this one 2.5x-3.0x and 2.1x-4.0x. A
//! 128-byte record with the names copied in was slower than either.
//!
//! While events keep coming the writer polls the rings; after a while without any it sleeps,
//! and the first producer after that wakes it. The rings are bounded. A best-effort producer
//! whose ring is full waits for room, at most the log's `max_wait` once the sinks have failed
//! (the writer's last batch reached none), and at most [`BUSY_WAIT_AT_MOST`] while they write
//! (a burst faster than the writer: backpressure, so a healthy log stays complete). Past it
//! the event is dropped and counted ([`Queue::lost_total`]), and the writer later signs an
//! `audit_events_lost` event with the count into the chain. Strict mode waits up to its own
//! deadline and fails instead. The cached-read fast path is unchanged: the health flag and
//! the count are read only when a ring is full.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Sender;

use super::event::{AuditEvent, CacheOutcome, Resource, coarse_unix_nanos};
use crate::clock::NO_TICK;
use crate::principal::Principal;

/// One queued event, with the strict-mode caller waiting for its write.
pub(crate) struct Item {
    pub(crate) event: AuditEvent,
    pub(crate) waiter: Option<Waiter>,
}

/// A strict-mode caller waiting for its event to be written. The caller and the writer
/// settle, through `state`, who decides what the event says: once the writer has taken the
/// event into a batch the caller waits for that batch's answer; a caller that gave up before
/// (its `strict_timeout` ran out while the event was still queued) is refused, and the
/// writer then writes the event as refused, never as the success that did not happen.
pub(crate) struct Waiter {
    pub(crate) answer: Sender<bool>,
    pub(crate) state: Arc<AtomicU8>,
    /// What the event says when its access is refused: `(timed out, not written)`
    /// reasons. `None` for an event whose access has happened whatever the log does (the
    /// outcome of a change): it is written as it is, and only the caller hears of a failure.
    pub(crate) refusal: Option<Refusal>,
}

/// The reasons a refused access's event is written with: its `strict_timeout` ran out
/// before the writer took the event, or the durable sinks could not write it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Refusal {
    pub(crate) timed_out: &'static str,
    pub(crate) not_written: &'static str,
}

/// [`Waiter::state`]: queued, the caller still waiting.
pub(crate) const WAITING: u8 = 0;
/// The writer took the event into a batch: the caller waits for that batch's answer.
pub(crate) const TAKEN: u8 = 1;
/// The caller gave up while the event was still queued: its access was refused.
pub(crate) const GAVE_UP: u8 = 2;
/// The writer answered.
pub(crate) const ANSWERED: u8 = 3;

/// Requests to the writer other than events.
pub(crate) enum Control {
    /// Answer once everything queued before is written (`true`) or could not be (`false`).
    Flush(Sender<bool>),
    /// Write everything queued, then stop.
    Shutdown,
}

/// Why an event was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The writer thread has stopped.
    Closed,
    /// The queue stayed full past the caller's deadline (strict mode).
    TimedOut,
}

/// What a caller queues.
pub(crate) enum Record<'a> {
    /// A successful read served from the cache, by `user` at `unix_nanos` (nanoseconds since
    /// 1970), read from the wall clock at `tick` of the cache's coarse monotonic clock.
    /// Borrowed: only what the ring does not already know is cloned into it. Its request id
    /// is drawn by the writer, which keeps a thread-local counter off the hit path.
    Read {
        tick: u64,
        unix_nanos: u64,
        user: &'a Principal,
        resource: &'a Arc<Resource>,
        cache: CacheOutcome,
    },
    /// Any other event.
    Event(Box<Item>),
}

impl Record<'_> {
    /// The event this record stands for, whole (for the paths that bypass the rings).
    fn into_item(self) -> Item {
        match self {
            Record::Read {
                unix_nanos,
                user,
                resource,
                cache,
                ..
            } => read_item(user.clone(), resource.clone(), cache, unix_nanos),
            Record::Event(item) => *item,
        }
    }
}

fn read_item(
    user: Principal,
    resource: Arc<Resource>,
    cache: CacheOutcome,
    unix_nanos: u64,
) -> Item {
    let mut event = AuditEvent::cached_read(user, resource, cache);
    event.timestamp = SystemTime::UNIX_EPOCH + Duration::from_nanos(unix_nanos);
    Item {
        event,
        waiter: None,
    }
}

/// What a ring slot holds: 16 bytes, four to a cache line.
pub(crate) enum Entry {
    /// A cached read by the ring's current principal at its current time.
    Read {
        resource: Arc<Resource>,
        cache: CacheOutcome,
    },
    /// The principal of the reads that follow (boxed: a principal is a wide pointer). The
    /// ring's reader keeps it until the next one, so its address is not reused while the
    /// producer still compares against it.
    By(Box<Principal>),
    /// The time of the reads that follow, in nanoseconds since 1970.
    At(u64),
    /// Any other event (boxed, so a slot stays small).
    Event(Box<Item>),
}

/// A thread's producer end of one log's ring, with what that ring last said.
struct Producer {
    log: u64,
    ring: rtrb::Producer<Entry>,
    /// The address of the principal last sent ([`Principal::addr`]); 0 before the first.
    by: usize,
    /// The time last sent, and the coarse monotonic tick it was read at: the two coarse
    /// clocks move together, once a tick, so a read in the same tick needs no new time (a
    /// wall-clock step within a tick dates the rest of that tick's reads before the step).
    at: u64,
    tick: u64,
}

/// The writer's end of one ring, with the principal and time its reads are under.
struct Consumer {
    ring: rtrb::Consumer<Entry>,
    by: Option<Principal>,
    at: u64,
}

impl Consumer {
    /// Moves everything this ring holds into `out`, as events.
    fn take(&mut self, out: &mut Vec<Item>) {
        let n = self.ring.slots();
        if n == 0 {
            return;
        }
        let Ok(chunk) = self.ring.read_chunk(n) else {
            return;
        };
        for entry in chunk {
            match entry {
                Entry::Read { resource, cache } => {
                    // A producer names its principal before its first read, so `by` is set.
                    let user = self.by.clone().unwrap_or_else(|| Principal::new("unknown"));
                    out.push(read_item(user, resource, cache, self.at));
                }
                Entry::By(user) => self.by = Some(*user),
                Entry::At(unix_nanos) => self.at = unix_nanos,
                Entry::Event(item) => out.push(*item),
            }
        }
    }
}

/// Read on every push; written only when the writer goes to sleep or wakes up.
#[repr(align(128))]
struct Flag(AtomicBool);

/// How the writer waits for work: polls every `POLL_EVERY` while events are likely, and
/// sleeps after `POLLS_BEFORE_SLEEP` empty polls until a producer wakes it.
const POLL_EVERY: Duration = Duration::from_micros(100);
const POLLS_BEFORE_SLEEP: u32 = 20;
/// Bounds how late an event is written if a wake-up is missed: producers check the writer's
/// flag without a fence, so one can miss it going to sleep (`flush` never relies on this).
const SLEEP_AT_MOST: Duration = Duration::from_millis(50);

/// How long a best-effort producer waits for room while the sinks are writing (the writer is
/// behind a burst, or one batch is slow). Past it the event is dropped even so: a write that
/// hangs (a stalled network filesystem) does not stall readers for longer.
pub(crate) const BUSY_WAIT_AT_MOST: Duration = Duration::from_secs(1);

/// How long a full ring makes a producer wait.
#[derive(Clone, Copy)]
pub(crate) enum Wait {
    /// Until there is room (or the writer is gone).
    Forever,
    /// Until then (strict mode's deadline).
    Until(Instant),
    /// Best effort, from this start: `max_wait` while the sinks fail, else
    /// [`BUSY_WAIT_AT_MOST`] (or `max_wait` if longer).
    BestEffort(Instant),
}

/// Ring slots per thread per log, at most (1 MiB).
const RING_SLOTS: usize = 65_536;

/// Events dropped because a ring stayed full past `max_wait`, not yet written as an
/// `audit_events_lost` event: how many, and the times of the first and the last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Losses {
    pub(crate) count: u64,
    pub(crate) first: SystemTime,
    pub(crate) last: SystemTime,
}

impl Losses {
    /// Adds `later` (losses counted after these) to these.
    pub(crate) fn merge(&mut self, later: Losses) {
        self.count += later.count;
        self.first = self.first.min(later.first);
        self.last = self.last.max(later.last);
    }
}

pub(crate) struct Queue {
    id: u64,
    /// How long a best-effort push waits for room in a full ring before dropping its event.
    max_wait: Duration,
    /// Every event dropped so far (the `audit_events_lost` metric).
    lost_total: AtomicU64,
    /// Dropped events the writer has not yet recorded in the chain.
    unreported: Mutex<Option<Losses>>,
    /// Whether the writer's last batch reached no sink.
    sinks_failing: AtomicBool,
    ring_slots: usize,
    rings: Mutex<Vec<Consumer>>,
    /// For threads whose thread-local ring is gone (a push from a thread-local destructor).
    fallback: Mutex<Vec<Item>>,
    asleep: Flag,
    writer: OnceLock<Thread>,
    control: Mutex<Vec<Control>>,
    space: Mutex<()>,
    space_freed: Condvar,
    waiting: AtomicUsize,
    closed: AtomicBool,
}

thread_local! {
    /// This thread's producer end of each live log's ring.
    static PRODUCERS: RefCell<Vec<Producer>> = const { RefCell::new(Vec::new()) };
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a queue lock leaves a valid `Vec`; keep going.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

enum Pushed<'a> {
    Done,
    Full(Record<'a>),
}

/// What this thread's ring did with a record.
enum Ring {
    Pushed,
    Full,
    /// No ring to use: the thread-local list is borrowed (a push from inside a push) or gone.
    Missing,
}

impl Producer {
    /// Puts `record` in the ring, after whatever principal and time it needs said first;
    /// `Full` when there is no room for all of it. What was pushed before running out of
    /// room stays pushed and noted, so a retry sends only the rest.
    #[inline]
    fn push(&mut self, record: &mut Option<Record<'_>>) -> Ring {
        match record {
            Some(Record::Read {
                tick,
                unix_nanos,
                user,
                resource,
                cache,
            }) => {
                if self.by != user.addr() {
                    if !self.put(Entry::By(Box::new((*user).clone()))) {
                        return Ring::Full;
                    }
                    self.by = user.addr();
                }
                if self.at != *unix_nanos {
                    if !self.put(Entry::At(*unix_nanos)) {
                        return Ring::Full;
                    }
                    self.at = *unix_nanos;
                }
                if *tick != NO_TICK {
                    self.tick = *tick;
                }
                // Checked first, so the resource is cloned only into a free slot.
                if self.ring.is_full() {
                    return Ring::Full;
                }
                let read = Entry::Read {
                    resource: Arc::clone(resource),
                    cache: *cache,
                };
                if !self.put(read) {
                    // Not reached: this thread is the ring's only producer and saw room.
                    return Ring::Full;
                }
                *record = None;
                Ring::Pushed
            }
            Some(Record::Event(_)) => {
                if self.ring.is_full() {
                    return Ring::Full;
                }
                let Some(Record::Event(item)) = record.take() else {
                    return Ring::Pushed;
                };
                match self.ring.push(Entry::Event(item)) {
                    Ok(()) => Ring::Pushed,
                    Err(rtrb::PushError::Full(Entry::Event(item))) => {
                        // Not reached, as above; the event is kept for the retry.
                        *record = Some(Record::Event(item));
                        Ring::Full
                    }
                    Err(rtrb::PushError::Full(_)) => Ring::Full,
                }
            }
            None => Ring::Pushed,
        }
    }

    /// Pushes `entry` if there is room; `false` (dropping it) if not.
    #[inline]
    fn put(&mut self, entry: Entry) -> bool {
        self.ring.push(entry).is_ok()
    }
}

impl Queue {
    /// A queue whose per-thread rings hold at most `capacity` events each, where a
    /// best-effort push waits for room at most `max_wait`.
    pub(crate) fn new(capacity: usize, max_wait: Duration) -> Queue {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Queue {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            max_wait,
            lost_total: AtomicU64::new(0),
            unreported: Mutex::new(None),
            sinks_failing: AtomicBool::new(false),
            ring_slots: capacity.clamp(1, RING_SLOTS),
            rings: Mutex::new(Vec::new()),
            fallback: Mutex::new(Vec::new()),
            asleep: Flag(AtomicBool::new(false)),
            writer: OnceLock::new(),
            control: Mutex::new(Vec::new()),
            space: Mutex::new(()),
            space_freed: Condvar::new(),
            waiting: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        }
    }

    /// Names the thread to wake (the writer, once started).
    pub(crate) fn set_writer(&self, writer: Thread) {
        let _ = self.writer.set(writer);
    }

    /// Queues a record, waiting while this thread's ring is full: forever when `deadline`
    /// is `None`, else until then. `urgent` wakes the writer even when it is polling (strict
    /// mode waits for the write).
    #[inline]
    pub(crate) fn push(
        &self,
        record: Record<'_>,
        urgent: bool,
        deadline: Option<Instant>,
    ) -> Result<(), PushError> {
        match self.try_push(record) {
            Pushed::Done => {
                if urgent || self.asleep.0.load(Ordering::Relaxed) {
                    self.wake();
                }
                Ok(())
            }
            Pushed::Full(record) => {
                let wait = deadline.map_or(Wait::Forever, Wait::Until);
                self.push_when_room(record, wait)
            }
        }
    }

    /// Queues a cached read made at `tick` (the cache's coarse monotonic clock, or
    /// [`NO_TICK`] when the caller has no reading), best effort.
    /// The common case (the ring has room, and already names this principal and this tick's
    /// time) pushes one slot and reads no clock; the rest goes the general way.
    #[inline]
    pub(crate) fn push_read(
        &self,
        tick: u64,
        user: &Principal,
        resource: &Arc<Resource>,
        cache: CacheOutcome,
    ) -> Result<(), PushError> {
        let pushed = PRODUCERS.try_with(|producers| {
            let Ok(mut producers) = producers.try_borrow_mut() else {
                return false;
            };
            match producers.iter_mut().find(|p| p.log == self.id) {
                Some(p) if p.by == user.addr() && p.tick == tick && !p.ring.is_full() => {
                    p.put(Entry::Read {
                        resource: Arc::clone(resource),
                        cache,
                    })
                }
                _ => false,
            }
        });
        if pushed == Ok(true) {
            if self.asleep.0.load(Ordering::Relaxed) {
                self.wake();
            }
            return Ok(());
        }
        let read = Record::Read {
            tick,
            unix_nanos: coarse_unix_nanos(),
            user,
            resource,
            cache,
        };
        self.push_slowly(read)
    }

    /// [`Queue::push_best_effort`], kept out of the hit path.
    #[cold]
    #[inline(never)]
    fn push_slowly(&self, record: Record<'_>) -> Result<(), PushError> {
        self.push_best_effort(record)
    }

    /// Queues a record, waiting at most `max_wait` for room in this thread's ring; past
    /// that the record is dropped and counted as lost (`Ok`: the caller goes on).
    #[inline]
    pub(crate) fn push_best_effort(&self, record: Record<'_>) -> Result<(), PushError> {
        match self.try_push(record) {
            Pushed::Done => {
                if self.asleep.0.load(Ordering::Relaxed) {
                    self.wake();
                }
                Ok(())
            }
            Pushed::Full(record) => self.push_or_drop(record),
        }
    }

    #[cold]
    #[inline(never)]
    fn push_or_drop(&self, record: Record<'_>) -> Result<(), PushError> {
        match self.push_when_room(record, Wait::BestEffort(Instant::now())) {
            Err(PushError::TimedOut) => {
                self.lose(1);
                Ok(())
            }
            other => other,
        }
    }

    /// Counts `n` events that could not be kept.
    #[cold]
    pub(crate) fn lose(&self, n: u64) {
        if n == 0 {
            return;
        }
        let now = SystemTime::now();
        let loss = Losses {
            count: n,
            first: now,
            last: now,
        };
        let mut unreported = lock(&self.unreported);
        match unreported.as_mut() {
            Some(l) => l.merge(loss),
            None => *unreported = Some(loss),
        }
        self.lost_total.fetch_add(n, Ordering::Relaxed);
    }

    /// Told by the writer after each batch: whether it reached no sink.
    pub(crate) fn set_sinks_failing(&self, failing: bool) {
        if self.sinks_failing.load(Ordering::Relaxed) != failing {
            self.sinks_failing.store(failing, Ordering::Relaxed);
        }
    }

    /// When a best-effort wait that began at `start` ends.
    fn best_effort_deadline(&self, start: Instant) -> Instant {
        if self.sinks_failing.load(Ordering::Relaxed) {
            start + self.max_wait
        } else {
            start + self.max_wait.max(BUSY_WAIT_AT_MOST)
        }
    }

    /// Every event dropped so far.
    pub(crate) fn lost_total(&self) -> u64 {
        self.lost_total.load(Ordering::Relaxed)
    }

    /// The losses not yet recorded in the chain (the writer's side).
    pub(crate) fn take_losses(&self) -> Option<Losses> {
        lock(&self.unreported).take()
    }

    #[inline]
    fn try_push<'a>(&self, record: Record<'a>) -> Pushed<'a> {
        let mut record = Some(record);
        let ring = PRODUCERS.try_with(|producers| {
            let Ok(mut producers) = producers.try_borrow_mut() else {
                return Ring::Missing;
            };
            let i = match producers.iter().position(|p| p.log == self.id) {
                Some(i) => i,
                None => self.register(&mut producers),
            };
            producers[i].push(&mut record)
        });
        match (ring, record) {
            (_, None) => Pushed::Done,
            (Ok(Ring::Full | Ring::Pushed), Some(r)) => Pushed::Full(r),
            // No thread-local ring (this thread is exiting): the shared, unbounded list.
            (Ok(Ring::Missing) | Err(_), Some(r)) => {
                lock(&self.fallback).push(r.into_item());
                Pushed::Done
            }
        }
    }

    #[cold]
    fn register(&self, producers: &mut Vec<Producer>) -> usize {
        // Rings of logs that are gone are dropped here, the only time this list changes.
        producers.retain(|p| !p.ring.is_abandoned());
        let (producer, consumer) = rtrb::RingBuffer::new(self.ring_slots);
        lock(&self.rings).push(Consumer {
            ring: consumer,
            by: None,
            at: 0,
        });
        producers.push(Producer {
            log: self.id,
            ring: producer,
            by: 0,
            at: 0,
            // Neither a tick the coarse clock gives nor `NO_TICK` (which is never stored),
            // so the first read, and every untimed one, reads the time.
            tick: NO_TICK - 1,
        });
        producers.len() - 1
    }

    #[cold]
    fn push_when_room(&self, record: Record<'_>, until: Wait) -> Result<(), PushError> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut record = record;
        let result = loop {
            if self.closed.load(Ordering::Acquire) {
                break Err(PushError::Closed);
            }
            self.wake();
            let space = lock(&self.space);
            record = match self.try_push(record) {
                Pushed::Done => break Ok(()),
                Pushed::Full(r) => r,
            };
            // Re-read each time: the sinks may fail (or recover) while this waits.
            let deadline = match until {
                Wait::Forever => None,
                Wait::Until(d) => Some(d),
                Wait::BestEffort(start) => Some(self.best_effort_deadline(start)),
            };
            let wait = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left.min(Duration::from_millis(10)),
                    _ => break Err(PushError::TimedOut),
                },
                None => Duration::from_millis(10),
            };
            // The writer notifies under `space` after taking from the rings, so a wake-up
            // between the try above and this wait cannot be lost; the timeout re-checks
            // `closed`.
            let _ = self.space_freed.wait_timeout(space, wait);
        };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        if result.is_ok() {
            self.wake();
        }
        result
    }

    /// Queues a flush or shutdown request and wakes the writer.
    pub(crate) fn control(&self, c: Control) -> Result<(), PushError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(PushError::Closed);
        }
        lock(&self.control).push(c);
        self.wake();
        Ok(())
    }

    fn wake(&self) {
        self.asleep.0.store(false, Ordering::Relaxed);
        if let Some(w) = self.writer.get() {
            w.unpark();
        }
    }

    // ---- the writer's side ----

    /// Moves every queued event into `out` (each thread's in its order) and control requests
    /// into `control`. Returns whether anything was taken.
    pub(crate) fn take(&self, out: &mut Vec<Item>, control: &mut Vec<Control>) -> bool {
        // Control first: a flush answers for events queued before it (the flushing thread
        // pushed them, then took the control lock), which this take then includes.
        control.append(&mut lock(&self.control));
        let before = out.len();
        {
            let mut rings = lock(&self.rings);
            for ring in rings.iter_mut() {
                ring.take(out);
            }
            // A ring whose thread has ended and that is drained is done with.
            rings.retain(|r| !(r.ring.is_abandoned() && r.ring.is_empty()));
        }
        out.append(&mut lock(&self.fallback));
        if out.len() > before && self.waiting.load(Ordering::SeqCst) > 0 {
            let _space = lock(&self.space);
            self.space_freed.notify_all();
        }
        out.len() > before || !control.is_empty()
    }

    fn is_empty(&self) -> bool {
        lock(&self.rings).iter().all(|r| r.ring.is_empty())
            && lock(&self.fallback).is_empty()
            && lock(&self.control).is_empty()
    }

    /// Waits for work after `idle_polls` empty polls in a row: polls while events are
    /// likely to come, then sleeps until a producer wakes it.
    pub(crate) fn idle(&self, idle_polls: u32) {
        if idle_polls < POLLS_BEFORE_SLEEP {
            std::thread::park_timeout(POLL_EVERY);
            return;
        }
        self.asleep.0.store(true, Ordering::SeqCst);
        if self.is_empty() {
            std::thread::park_timeout(SLEEP_AT_MOST);
        }
        self.asleep.0.store(false, Ordering::Relaxed);
    }

    /// Marks the writer gone: producers waiting for room and later requests get `Closed`.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let _space = lock(&self.space);
        self.space_freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::super::event::STALE_REASON;
    use super::*;
    use crate::audit::Action;

    /// Long enough that no test here reaches it.
    const FOREVER: Duration = Duration::from_secs(3600);

    fn item(i: usize) -> Record<'static> {
        Record::Event(Box::new(Item {
            event: AuditEvent::access(
                Action::Read,
                Principal::new("t"),
                Resource::named(&format!("n/{i}")),
            ),
            waiter: None,
        }))
    }

    /// Each event's time, in nanoseconds since 1970.
    fn unix_times(items: &[Item]) -> Vec<u64> {
        items
            .iter()
            .map(|i| {
                let t = i.event.timestamp.duration_since(SystemTime::UNIX_EPOCH);
                t.unwrap().as_nanos() as u64
            })
            .collect()
    }

    fn take_all(q: &Queue) -> Vec<Item> {
        let (mut out, mut ctl) = (Vec::new(), Vec::new());
        q.take(&mut out, &mut ctl);
        out
    }

    #[test]
    fn take_returns_each_threads_events_in_order() {
        let q = Queue::new(1000, FOREVER);
        for i in 0..10 {
            q.push(item(i), false, None).unwrap();
        }
        let names: Vec<_> = take_all(&q)
            .iter()
            .map(|i| i.event.resource.name.clone())
            .collect();
        let expected: Vec<Box<str>> = (0..10).map(|i| format!("n/{i}").into()).collect();
        assert_eq!(names, expected);
        assert!(take_all(&q).is_empty());
    }

    fn resource(name: &str) -> Arc<Resource> {
        Arc::new(Resource {
            name: name.into(),
            store: Some(Arc::from("main")),
            version: None,
        })
    }

    fn read<'a>(
        unix_nanos: u64,
        user: &'a Principal,
        resource: &'a Arc<Resource>,
        cache: CacheOutcome,
    ) -> Record<'a> {
        Record::Read {
            tick: unix_nanos,
            unix_nanos,
            user,
            resource,
            cache,
        }
    }

    #[test]
    fn a_read_record_comes_back_as_the_event_it_stands_for() {
        let resource = resource("predis/prod/db");
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        let user = Principal::new("svc:a");
        let q = Queue::new(10, FOREVER);
        let nanos = 1_795_000_000_123_000_000;
        q.push(
            read(nanos, &user, &resource, CacheOutcome::Stale),
            false,
            None,
        )
        .unwrap();
        q.push(
            read(nanos, &user, &resource, CacheOutcome::Hit),
            false,
            None,
        )
        .unwrap();
        let items = take_all(&q);
        assert_eq!(items.len(), 2);
        let e = &items[0].event;
        assert_eq!(e.user.as_str(), "svc:a");
        assert_eq!(e.resource, resource);
        assert_eq!(e.timestamp, at);
        // Drawn by the writer, one per event, as every other event's is.
        assert_ne!(e.request_id, items[1].event.request_id);
        assert_eq!(e.cache, Some(CacheOutcome::Stale));
        assert_eq!(e.reason.as_deref(), Some(STALE_REASON));
        assert_eq!(e.action, Action::Read);
        assert!(e.success);
        assert_eq!(items[1].event.cache, Some(CacheOutcome::Hit));
        assert_eq!(items[1].event.timestamp, at);
        assert_eq!(std::mem::size_of::<Entry>(), 16);
    }

    #[test]
    fn reads_carry_the_principal_and_time_they_were_made_under() {
        let (a, b) = (Principal::new("svc:a"), Principal::new("svc:b"));
        let (x, y) = (resource("n/x"), resource("n/y"));
        let q = Queue::new(100, FOREVER);
        let reads = [
            (1, &a, &x),
            (1, &b, &x),
            (2, &b, &y),
            (2, &a, &y),
            (2, &a, &x),
            (1, &a, &x),
        ];
        for &(t, user, r) in &reads {
            q.push(read(t, user, r, CacheOutcome::Hit), false, None)
                .unwrap();
        }
        // An event in between keeps its own principal and time, and its place.
        q.push(item(9), false, None).unwrap();
        q.push(read(3, &b, &y, CacheOutcome::Hit), false, None)
            .unwrap();
        let items = take_all(&q);
        let got: Vec<(u64, String, String)> = unix_times(&items)
            .into_iter()
            .zip(&items)
            .map(|(t, i)| {
                let e = &i.event;
                (t, e.user.as_str().to_owned(), e.resource.name.to_string())
            })
            .collect();
        let mut want: Vec<(u64, String, String)> = reads
            .iter()
            .map(|&(t, u, r)| (t, u.as_str().to_owned(), r.name.to_string()))
            .collect();
        assert_eq!(got[..6], want[..]);
        assert_eq!((got[6].1.as_str(), got[6].2.as_str()), ("t", "n/9"));
        want = vec![(3, "svc:b".into(), "n/y".into())];
        assert_eq!(got[7..], want[..]);
    }

    #[test]
    fn a_read_is_dated_by_the_wall_clock_once_a_tick() {
        let q = Queue::new(100, FOREVER);
        let (user, r) = (Principal::new("svc:a"), resource("n/x"));
        let unix = coarse_unix_nanos;
        let before = unix();
        q.push_read(7, &user, &r, CacheOutcome::Hit).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        // The same tick: dated as the first, though the wall clock has moved on.
        q.push_read(7, &user, &r, CacheOutcome::Hit).unwrap();
        let middle = unix();
        // A new tick reads the wall clock again.
        q.push_read(8, &user, &r, CacheOutcome::Hit).unwrap();
        let after = unix();
        let at = unix_times(&take_all(&q));
        assert_eq!(at.len(), 3);
        assert!(
            before <= at[0] && at[0] < middle,
            "{before} {at:?} {middle}"
        );
        assert_eq!(at[1], at[0]);
        assert!(middle <= at[2] && at[2] <= after, "{middle} {at:?} {after}");
    }

    #[test]
    fn an_untimed_read_reads_the_wall_clock_every_time() {
        let q = Queue::new(100, FOREVER);
        let (user, r) = (Principal::new("svc:a"), resource("n/x"));
        q.push_read(NO_TICK, &user, &r, CacheOutcome::Miss).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let middle = coarse_unix_nanos();
        q.push_read(NO_TICK, &user, &r, CacheOutcome::Miss).unwrap();
        let at = unix_times(&take_all(&q));
        assert!(at[0] < middle && middle <= at[1], "{at:?} {middle}");
    }

    #[test]
    fn a_principal_dropped_by_its_caller_is_kept_while_its_reads_are_queued() {
        let q = Queue::new(100, FOREVER);
        let r = resource("n/x");
        // Each principal is gone from the caller's side once its read is queued; one whose
        // address the ring still names must not be mistaken for the next.
        for name in ["svc:1", "svc:2", "svc:3"] {
            let user = Principal::new(name);
            q.push(read(1, &user, &r, CacheOutcome::Hit), false, None)
                .unwrap();
            drop(user);
            let items = take_all(&q);
            assert_eq!(items[0].event.user.as_str(), name);
        }
    }

    #[test]
    fn a_read_waits_for_room_for_its_principal_and_time() {
        let q = Arc::new(Queue::new(1, FOREVER));
        let r = resource("n/x");
        let producer = {
            let (q, r) = (q.clone(), r.clone());
            std::thread::spawn(move || {
                let user = Principal::new("svc:a");
                q.push(read(5, &user, &r, CacheOutcome::Hit), false, None)
            })
        };
        let mut items = Vec::new();
        while items.is_empty() {
            items = take_all(&q);
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(producer.join().unwrap(), Ok(()));
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].event.user.as_str(), "svc:a");
        assert_eq!(
            items[0].event.timestamp,
            SystemTime::UNIX_EPOCH + Duration::from_nanos(5)
        );
    }

    #[test]
    fn a_full_ring_blocks_until_the_writer_takes_from_it() {
        let q = Arc::new(Queue::new(1, FOREVER));
        q.set_writer(std::thread::current());
        q.push(item(0), false, None).unwrap();
        // Full now: with a deadline the push gives up and keeps nothing.
        let deadline = Instant::now() + Duration::from_millis(30);
        assert_eq!(
            q.push(item(1), false, Some(deadline)),
            Err(PushError::TimedOut)
        );
        // Rings are per thread: this one fills its own, then waits.
        let producer = {
            let q = q.clone();
            std::thread::spawn(move || {
                q.push(item(2), false, None)?;
                q.push(item(3), false, None)
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!producer.is_finished(), "the producer waits for room");
        let mut taken = 0;
        while taken < 3 {
            taken += take_all(&q).len();
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(producer.join().unwrap(), Ok(()));
    }

    #[test]
    fn a_best_effort_push_into_a_full_ring_waits_at_most_max_wait_then_counts_a_loss() {
        let q = Queue::new(1, Duration::from_millis(5));
        q.set_sinks_failing(true);
        let (user, r) = (Principal::new("svc:a"), resource("n/x"));
        q.push_best_effort(item(0)).unwrap();
        assert_eq!(q.lost_total(), 0);
        let started = Instant::now();
        for _ in 0..3 {
            // Dropped, not refused: the caller goes on.
            q.push_best_effort(item(1)).unwrap();
            q.push_read(1, &user, &r, CacheOutcome::Hit).unwrap();
        }
        let waited = started.elapsed();
        assert!(waited < Duration::from_secs(1), "{waited:?}");
        assert!(waited >= Duration::from_millis(5 * 6), "{waited:?}");
        assert_eq!(q.lost_total(), 6);
        let losses = q.take_losses().expect("losses to report");
        assert_eq!(losses.count, 6);
        assert!(losses.first <= losses.last);
        assert_eq!(q.take_losses(), None, "reported once");
        assert_eq!(q.lost_total(), 6, "the metric keeps the total");
        let items = take_all(&q);
        assert_eq!(items.len(), 1);
        assert_eq!(&*items[0].event.resource.name, "n/0");
    }

    #[test]
    fn while_the_sinks_write_a_full_ring_waits_for_the_writer_past_max_wait() {
        // A burst faster than a healthy writer is backpressure, not loss.
        let q = Arc::new(Queue::new(1, Duration::from_millis(1)));
        q.push_best_effort(item(0)).unwrap();
        let producer = {
            let q = q.clone();
            std::thread::spawn(move || {
                q.push_best_effort(item(1)).unwrap();
                q.push_best_effort(item(2))
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!producer.is_finished(), "the producer waits for room");
        let mut taken = 0;
        while taken < 3 {
            taken += take_all(&q).len();
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(producer.join().unwrap(), Ok(()));
        assert_eq!(q.lost_total(), 0);
    }

    #[test]
    fn a_closed_queue_releases_blocked_producers() {
        let q = Arc::new(Queue::new(1, FOREVER));
        let producer = {
            let q = q.clone();
            std::thread::spawn(move || {
                q.push(item(1), false, None)?;
                q.push(item(2), false, None)
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        q.close();
        assert_eq!(producer.join().unwrap(), Err(PushError::Closed));
        assert_eq!(q.control(Control::Shutdown).err(), Some(PushError::Closed));
    }

    #[test]
    fn events_of_a_thread_that_ended_are_still_taken() {
        let q = Arc::new(Queue::new(100, FOREVER));
        {
            let q = q.clone();
            std::thread::spawn(move || q.push(item(7), false, None))
                .join()
                .unwrap()
                .unwrap();
        }
        let items = take_all(&q);
        assert_eq!(&*items[0].event.resource.name, "n/7");
        assert!(
            lock(&q.rings).is_empty(),
            "the ended thread's ring is released"
        );
    }

    #[test]
    fn a_sleeping_writer_is_woken_by_the_next_push() {
        let q = Arc::new(Queue::new(100, FOREVER));
        let writer = {
            let q = q.clone();
            std::thread::spawn(move || {
                let (mut out, mut ctl) = (Vec::new(), Vec::new());
                let started = Instant::now();
                let mut polls = 0;
                while !q.take(&mut out, &mut ctl) {
                    q.idle(polls.max(POLLS_BEFORE_SLEEP));
                    polls += 1;
                }
                started.elapsed()
            })
        };
        q.set_writer(writer.thread().clone());
        std::thread::sleep(Duration::from_millis(120));
        let pushed = Instant::now();
        q.push(item(0), false, None).unwrap();
        let waited = writer.join().unwrap();
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        // Woken by the push, not only by the bounded sleep.
        assert!(pushed.elapsed() < SLEEP_AT_MOST, "{:?}", pushed.elapsed());
    }
}
