//! The hand-off between accesses and the audit writer.
//!
//! Each thread that records events gets its own single-producer ring (`rtrb`) per log: a push
//! is a few plain stores and one release store, with no lock and no system call. Cache hits go
//! in as a 40-byte [`ReadRecord`] (two `Arc` clones and a timestamp from the coarse clock),
//! so a burst of hits streams as little memory to the writer as possible; every
//! other event goes in boxed, in the same ring, so a thread's events keep their order.
//!
//! Measured, not assumed (bursts of cached reads, `benches/benches/cache.rs`): a record with
//! the names copied in (128 bytes, no `Arc`) was slower than this one, and a 32-byte record
//! naming principal and resource by per-ring ids (no `Arc` clone on the hot path) was no
//! faster, so the simple form stays.
//!
//! While events keep coming the writer polls the rings; after a while without any it sleeps,
//! and the first producer after that wakes it. The rings are bounded: a full ring blocks its
//! producer (backpressure) until the writer has taken from it, and nothing is ever dropped.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Sender;

use super::event::{AuditEvent, CacheOutcome, Resource};
use crate::client::Principal;

/// One queued event, with the channel a strict-mode caller waits on.
pub(crate) struct Item {
    pub(crate) event: AuditEvent,
    pub(crate) waiter: Option<Sender<bool>>,
}

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

/// A successful read served from the cache: 40 bytes, so a ring slot is under one cache
/// line and a burst of reads streams as little memory as possible to the writer. Its
/// request id is drawn by the writer: nothing on the caller's side sees it, and drawing it
/// there keeps a thread-local counter off the hit path.
pub(crate) struct ReadRecord {
    unix_nanos: u64,
    user: Principal,
    resource: Arc<Resource>,
    cache: CacheOutcome,
}

impl ReadRecord {
    /// A record of a read at `unix_nanos` (nanoseconds since 1970).
    #[inline]
    pub(crate) fn new(
        unix_nanos: u64,
        user: &Principal,
        resource: &Arc<Resource>,
        cache: CacheOutcome,
    ) -> ReadRecord {
        ReadRecord {
            unix_nanos,
            user: user.clone(),
            resource: resource.clone(),
            cache,
        }
    }
}

/// What a ring holds.
pub(crate) enum Entry {
    /// A cached read, flat.
    Read(ReadRecord),
    /// Any other event (boxed, so a ring slot stays the size of a read record).
    Event(Box<Item>),
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

/// Ring slots per thread per log, at most (8 MiB).
const RING_SLOTS: usize = 65_536;

pub(crate) struct Queue {
    id: u64,
    ring_slots: usize,
    rings: Mutex<Vec<rtrb::Consumer<Entry>>>,
    /// For threads whose thread-local ring is gone (a push from a thread-local destructor).
    fallback: Mutex<Vec<Entry>>,
    asleep: Flag,
    writer: OnceLock<Thread>,
    control: Mutex<Vec<Control>>,
    space: Mutex<()>,
    space_freed: Condvar,
    waiting: AtomicUsize,
    closed: AtomicBool,
}

thread_local! {
    /// This thread's producer end of each live log's ring, by log id.
    static PRODUCERS: RefCell<Vec<(u64, rtrb::Producer<Entry>)>> = const { RefCell::new(Vec::new()) };
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a queue lock leaves a valid `Vec`; keep going.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

enum Pushed {
    Done,
    Full(Entry),
}

/// What this thread's ring did with an entry.
enum Ring {
    Pushed,
    Full,
    /// No ring to use: the thread-local list is borrowed (a push from inside a push) or gone.
    Missing,
}

impl Queue {
    /// A queue whose per-thread rings hold at most `capacity` events each.
    pub(crate) fn new(capacity: usize) -> Queue {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Queue {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
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

    /// Queues an entry, waiting while this thread's ring is full: forever when `deadline`
    /// is `None`, else until then. `urgent` wakes the writer even when it is polling (strict
    /// mode waits for the write).
    #[inline]
    pub(crate) fn push(
        &self,
        entry: Entry,
        urgent: bool,
        deadline: Option<Instant>,
    ) -> Result<(), PushError> {
        match self.try_push(entry) {
            Pushed::Done => {
                if urgent || self.asleep.0.load(Ordering::Relaxed) {
                    self.wake();
                }
                Ok(())
            }
            Pushed::Full(entry) => self.push_when_room(entry, deadline),
        }
    }

    #[inline]
    fn try_push(&self, entry: Entry) -> Pushed {
        let mut entry = Some(entry);
        // The ring is checked for room first, so the entry moves once, into its slot.
        let ring = PRODUCERS.try_with(|producers| {
            let Ok(mut producers) = producers.try_borrow_mut() else {
                return Ring::Missing;
            };
            let i = match producers.iter().position(|(id, _)| *id == self.id) {
                Some(i) => i,
                None => self.register(&mut producers),
            };
            let producer = &mut producers[i].1;
            if producer.is_full() {
                return Ring::Full;
            }
            if let Some(e) = entry.take()
                && let Err(rtrb::PushError::Full(e)) = producer.push(e)
            {
                // Not reached: this thread is the ring's only producer and saw room.
                entry = Some(e);
                return Ring::Full;
            }
            Ring::Pushed
        });
        match (ring, entry) {
            (Ok(Ring::Pushed), _) | (_, None) => Pushed::Done,
            (Ok(Ring::Full), Some(e)) => Pushed::Full(e),
            // No thread-local ring (this thread is exiting): the shared, unbounded list.
            (Ok(Ring::Missing) | Err(_), Some(e)) => {
                lock(&self.fallback).push(e);
                Pushed::Done
            }
        }
    }

    #[cold]
    fn register(&self, producers: &mut Vec<(u64, rtrb::Producer<Entry>)>) -> usize {
        // Rings of logs that are gone are dropped here, the only time this list changes.
        producers.retain(|(_, p)| !p.is_abandoned());
        let (producer, consumer) = rtrb::RingBuffer::new(self.ring_slots);
        lock(&self.rings).push(consumer);
        producers.push((self.id, producer));
        producers.len() - 1
    }

    #[cold]
    fn push_when_room(&self, entry: Entry, deadline: Option<Instant>) -> Result<(), PushError> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut entry = entry;
        let result = loop {
            if self.closed.load(Ordering::Acquire) {
                break Err(PushError::Closed);
            }
            self.wake();
            let space = lock(&self.space);
            entry = match self.try_push(entry) {
                Pushed::Done => break Ok(()),
                Pushed::Full(e) => e,
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
                let n = ring.slots();
                if n == 0 {
                    continue;
                }
                if let Ok(chunk) = ring.read_chunk(n) {
                    out.extend(chunk.into_iter().map(Entry::into_item));
                }
            }
            // A ring whose thread has ended and that is drained is done with.
            rings.retain(|r| !(r.is_abandoned() && r.is_empty()));
        }
        let fallback = std::mem::take(&mut *lock(&self.fallback));
        out.extend(fallback.into_iter().map(Entry::into_item));
        if out.len() > before && self.waiting.load(Ordering::SeqCst) > 0 {
            let _space = lock(&self.space);
            self.space_freed.notify_all();
        }
        out.len() > before || !control.is_empty()
    }

    fn is_empty(&self) -> bool {
        lock(&self.rings).iter().all(|r| r.is_empty())
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

impl Entry {
    /// The event this entry stands for.
    fn into_item(self) -> Item {
        match self {
            Entry::Event(item) => *item,
            Entry::Read(r) => {
                let mut e = AuditEvent::cached_read(r.user, r.resource, r.cache);
                e.timestamp = SystemTime::UNIX_EPOCH + Duration::from_nanos(r.unix_nanos);
                Item {
                    event: e,
                    waiter: None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::event::STALE_REASON;
    use super::*;
    use crate::audit::Action;

    fn item(i: usize) -> Entry {
        Entry::Event(Box::new(Item {
            event: AuditEvent::access(
                Action::Read,
                Principal::new("t"),
                Resource::named(&format!("n/{i}")),
            ),
            waiter: None,
        }))
    }

    fn take_all(q: &Queue) -> Vec<Item> {
        let (mut out, mut ctl) = (Vec::new(), Vec::new());
        q.take(&mut out, &mut ctl);
        out
    }

    #[test]
    fn take_returns_each_threads_events_in_order() {
        let q = Queue::new(1000);
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

    #[test]
    fn a_read_record_comes_back_as_the_event_it_stands_for() {
        let resource = Arc::new(Resource {
            name: "predis/prod/db".into(),
            store: Some(Arc::from("main")),
            version: None,
        });
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        let user = Principal::new("svc:a");
        let r = ReadRecord::new(
            1_795_000_000_123_000_000,
            &user,
            &resource,
            CacheOutcome::Stale,
        );
        let again = ReadRecord::new(0, &user, &resource, CacheOutcome::Hit);
        let q = Queue::new(10);
        q.push(Entry::Read(r), false, None).unwrap();
        q.push(Entry::Read(again), false, None).unwrap();
        let items = take_all(&q);
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
        assert_eq!(std::mem::size_of::<Entry>(), 40);
    }

    #[test]
    fn a_full_ring_blocks_until_the_writer_takes_from_it() {
        let q = Arc::new(Queue::new(1));
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
    fn a_closed_queue_releases_blocked_producers() {
        let q = Arc::new(Queue::new(1));
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
        let q = Arc::new(Queue::new(100));
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
        let q = Arc::new(Queue::new(100));
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
