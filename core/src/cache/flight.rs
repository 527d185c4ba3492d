//! Single-flight for misses: concurrent loads of one key share the first caller's store call.
//!
//! The flight lives in the key's cache entry (a first read inserts the entry empty, so it is
//! the flight of that read too). The first caller (the leader) runs the load inline, in its
//! own future, with nothing boxed or spawned; it only flips the entry's state, so an
//! uncontended miss costs two atomic operations, no lock and no key hashing. The shared
//! `Flight` (result slot and `Notify`) is made by the first follower, under a small lock; a
//! leader that finds it followed when it lands hands its result to the followers and wakes
//! them. If the leader's future is dropped before it lands (a caller's timeout), its guard
//! marks the flight abandoned and wakes the followers, and one of them leads again.

use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use tokio::sync::Notify;

use crate::error::{Error, ErrorKind, Result};

/// A followed flight: its result, and the followers' wake-up.
struct Flight<T> {
    landing: OnceLock<Landing<T>>,
    landed: Notify,
}

/// How a flight ended.
enum Landing<T> {
    Done(std::result::Result<T, SharedError>),
    Abandoned,
}

/// An error as every waiter of a flight sees it (errors are not `Clone`).
#[derive(Clone, Debug)]
struct SharedError {
    kind: ErrorKind,
    message: String,
    request_id: Option<String>,
}

impl From<&Error> for SharedError {
    fn from(e: &Error) -> Self {
        SharedError {
            kind: e.kind(),
            message: e.message().to_owned(),
            request_id: e.provider_request_id().map(str::to_owned),
        }
    }
}

impl From<SharedError> for Error {
    fn from(e: SharedError) -> Self {
        let err = Error::new(e.kind, e.message);
        match e.request_id {
            Some(id) => err.with_request_id(id),
            None => err,
        }
    }
}

/// Lands `flight` (taken down by its leader), if anyone followed it, and wakes its followers.
fn hand_over<T>(flight: Option<Arc<Flight<T>>>, landing: impl FnOnce() -> Landing<T>) {
    if let Some(flight) = flight {
        let _ = flight.landing.set(landing());
        flight.landed.notify_waiters();
    }
}

/// Waits for `flight` to land. `Some` is its result; `None` means its leader gave up (the
/// caller tries to lead).
async fn follow<T: Clone>(flight: &Flight<T>) -> Option<Result<T>> {
    let landed = flight.landed.notified();
    tokio::pin!(landed);
    landed.as_mut().enable();
    if flight.landing.get().is_none() {
        landed.await;
    }
    match flight.landing.get() {
        Some(Landing::Done(r)) => Some(r.clone().map_err(Error::from)),
        // Abandoned (or, impossibly, woken before landing).
        _ => None,
    }
}

/// Nobody is loading.
const IDLE: u8 = 0;
/// A leader is loading, alone.
const LED: u8 = 1;
/// A leader is loading and the shared flight is in `EntryFlight::followed`.
const FOLLOWED: u8 = 2;

/// Single-flight for one key, kept in the key's cache entry.
pub(super) struct EntryFlight<T> {
    state: AtomicU8,
    /// The shared flight, made by the first follower. Only followers and a followed leader's
    /// landing take this lock.
    followed: Mutex<Option<Arc<Flight<T>>>>,
}

impl<T> EntryFlight<T> {
    pub(super) fn new() -> Self {
        EntryFlight {
            state: AtomicU8::new(IDLE),
            followed: Mutex::new(None),
        }
    }

    /// Every change under this lock is a single assignment: poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, Option<Arc<Flight<T>>>> {
        self.followed.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T: Clone> EntryFlight<T> {
    /// Runs `load` unless a load is under way, in which case this waits for its result.
    ///
    /// A function returning a block rather than an `async fn`, whose future would hold a
    /// second copy of its arguments: a miss's future is copied whole whenever a runtime
    /// moves it, so every layer of it is kept small.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn would copy its arguments"
    )]
    pub(super) fn run<'a, F, Fut>(&'a self, load: F) -> impl Future<Output = Result<T>> + 'a
    where
        F: FnOnce() -> Fut + 'a,
        Fut: Future<Output = Result<T>>,
    {
        async move {
            // Followed until this caller can lead. A follower's wait is boxed: followers are
            // rare (concurrent misses of one key), and unboxed it would add its size to every
            // miss's future.
            while self
                .state
                .compare_exchange(IDLE, LED, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                if let Some(flight) = self.join()
                    && let Some(result) = Box::pin(follow(&flight)).await
                {
                    return result;
                }
            }
            let mut guard = EntryLanding {
                flight: self,
                landed: false,
            };
            let result = load().await;
            guard.land(|| Landing::Done(result.as_ref().map(T::clone).map_err(SharedError::from)));
            result
        }
    }

    /// The flight under way, made here if this is its first follower; `None` when its
    /// leader landed meanwhile (the caller tries again).
    fn join(&self) -> Option<Arc<Flight<T>>> {
        let mut followed = self.lock();
        // Under the lock, so the flight is in place before any landing can see FOLLOWED:
        // a landing that swaps FOLLOWED out takes the lock after this caller lets go.
        match self
            .state
            .compare_exchange(LED, FOLLOWED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) | Err(FOLLOWED) => Some(
                followed
                    .get_or_insert_with(|| {
                        Arc::new(Flight {
                            landing: OnceLock::new(),
                            landed: Notify::new(),
                        })
                    })
                    .clone(),
            ),
            Err(_) => None,
        }
    }
}

/// Lands an entry's flight exactly once: with its result, or abandoned if the leader's
/// future is dropped first.
struct EntryLanding<'a, T> {
    flight: &'a EntryFlight<T>,
    landed: bool,
}

impl<T> EntryLanding<'_, T> {
    fn land(&mut self, landing: impl FnOnce() -> Landing<T>) {
        self.landed = true;
        if self.flight.state.swap(IDLE, Ordering::AcqRel) == FOLLOWED {
            let flight = self.flight.lock().take();
            hand_over(flight, landing);
        }
    }
}

impl<T> Drop for EntryLanding<'_, T> {
    fn drop(&mut self) {
        if !self.landed {
            self.land(|| Landing::Abandoned);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// The follower's result, failing the test if it hangs.
    async fn unhung(follower: tokio::task::JoinHandle<Result<u32>>) -> u32 {
        tokio::time::timeout(Duration::from_secs(5), follower)
            .await
            .expect("the follower did not hang")
            .unwrap()
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_entry_flight_shares_one_load_and_its_error() {
        let flight = Arc::new(EntryFlight::<u32>::new());
        for fails in [false, true] {
            let calls = Arc::new(AtomicUsize::new(0));
            let tasks: Vec<_> = (0..50)
                .map(|_| {
                    let (flight, calls) = (flight.clone(), calls.clone());
                    tokio::spawn(async move {
                        flight
                            .run(|| async {
                                calls.fetch_add(1, Ordering::SeqCst);
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                match fails {
                                    false => Ok(7),
                                    true => Err(Error::new(ErrorKind::Unavailable, "store down")),
                                }
                            })
                            .await
                    })
                })
                .collect();
            for t in tasks {
                let got = t.await.unwrap();
                match fails {
                    false => assert_eq!(got.unwrap(), 7),
                    true => assert_eq!(got.unwrap_err().kind(), ErrorKind::Unavailable),
                }
            }
            assert_eq!(calls.load(Ordering::SeqCst), 1);
            assert_eq!(flight.state.load(Ordering::SeqCst), IDLE);
            assert!(flight.lock().is_none(), "the shared flight was taken down");
        }
    }

    #[tokio::test]
    async fn a_lone_entry_flight_makes_no_shared_flight() {
        let flight = EntryFlight::<u32>::new();
        let got = flight
            .run(|| async {
                assert_eq!(flight.state.load(Ordering::SeqCst), LED);
                assert!(flight.lock().is_none());
                Ok(4)
            })
            .await;
        assert_eq!(got.unwrap(), 4);
        assert_eq!(flight.state.load(Ordering::SeqCst), IDLE);
    }

    /// Starts a load that lands `result` after `delay`, and lets it take off.
    async fn lead_in_background(
        flight: &Arc<EntryFlight<u32>>,
        delay: Duration,
        result: Result<u32>,
    ) -> tokio::task::JoinHandle<Result<u32>> {
        let flight = flight.clone();
        let leader = tokio::spawn(async move {
            flight
                .run(|| async move {
                    tokio::time::sleep(delay).await;
                    result
                })
                .await
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        leader
    }

    #[tokio::test]
    async fn a_dropped_entry_flight_leader_hands_over_to_a_follower() {
        let flight = Arc::new(EntryFlight::<u32>::new());
        let leader = lead_in_background(&flight, Duration::from_secs(3600), Ok(1)).await;
        let f2 = flight.clone();
        let follower = tokio::spawn(async move { f2.run(|| async { Ok(2) }).await });
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(flight.state.load(Ordering::SeqCst), FOLLOWED);
        leader.abort();
        let got = unhung(follower).await;
        assert_eq!(got, 2, "the follower led a new load");
        assert_eq!(flight.state.load(Ordering::SeqCst), IDLE);
    }

    #[tokio::test]
    async fn followers_get_the_leaders_error_with_its_request_id() {
        let flight = Arc::new(EntryFlight::<u32>::new());
        let down = Error::new(ErrorKind::Unavailable, "store down").with_request_id("r-1");
        let leader = lead_in_background(&flight, Duration::from_millis(30), Err(down)).await;
        let follower = flight
            .run(|| async { Ok(1) })
            .await
            .expect_err("joined the failing flight");
        assert_eq!(follower.kind(), ErrorKind::Unavailable);
        assert_eq!(follower.request_id(), Some("r-1"));
        assert!(leader.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn sequential_calls_each_load() {
        let flight = EntryFlight::<u32>::new();
        for i in 0..3 {
            assert_eq!(flight.run(|| async move { Ok(i) }).await.unwrap(), i);
        }
    }
}
