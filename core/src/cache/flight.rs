//! Single-flight for misses: concurrent loads of one key share the first caller's store call.
//!
//! The first caller (the leader) runs the load inline, in its own future, with nothing boxed
//! or spawned, so an uncontended miss pays one small allocation and two short lock holds.
//! Later callers (followers) wait on the flight's `Notify` and clone the result. If the
//! leader's future is dropped before it lands (a caller's timeout), its guard marks the
//! flight abandoned and wakes the followers, and one of them leads a new flight.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::Notify;

use crate::error::{Error, ErrorKind, Result};

type Table<T> = HashMap<Arc<str>, Arc<Flight<T>>, foldhash::fast::RandomState>;

/// Flights in progress, by key.
pub(super) struct Flights<T> {
    table: Mutex<Table<T>>,
}

struct Flight<T> {
    landing: OnceLock<Landing<T>>,
    landed: Notify,
}

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
            request_id: e.request_id().map(str::to_owned),
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

impl<T: Clone> Flights<T> {
    pub(super) fn new() -> Self {
        Flights {
            table: Mutex::new(HashMap::default()),
        }
    }

    /// Runs `load` for `key` unless a flight for it is under way, in which case this waits for
    /// that flight's result instead. `load` gets the key as an `Arc<str>` it may keep.
    pub(super) async fn run<F, Fut>(&self, key: &str, load: F) -> Result<T>
    where
        F: FnOnce(Arc<str>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut load = Some(load);
        loop {
            let (flight, key) = {
                let mut table = self.lock()?;
                match table.get_key_value(key) {
                    Some((_, f)) => (f.clone(), None),
                    None => {
                        let key: Arc<str> = Arc::from(key);
                        let f = Arc::new(Flight {
                            landing: OnceLock::new(),
                            landed: Notify::new(),
                        });
                        table.insert(key.clone(), f.clone());
                        (f, Some(key))
                    }
                }
            };
            if let Some(key) = key {
                let load = load
                    .take()
                    .ok_or_else(|| Error::internal("a flight was led twice by one caller"))?;
                return self.lead(key, flight, load).await;
            }
            let landed = flight.landed.notified();
            tokio::pin!(landed);
            landed.as_mut().enable();
            match flight.landing.get() {
                Some(Landing::Done(r)) => return r.clone().map_err(Error::from),
                Some(Landing::Abandoned) => continue,
                None => {}
            }
            landed.await;
            match flight.landing.get() {
                Some(Landing::Done(r)) => return r.clone().map_err(Error::from),
                // Abandoned (or, impossibly, woken before landing): try to lead.
                _ => continue,
            }
        }
    }

    async fn lead<F, Fut>(&self, key: Arc<str>, flight: Arc<Flight<T>>, load: F) -> Result<T>
    where
        F: FnOnce(Arc<str>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut guard = LandingGuard {
            flights: self,
            key: key.clone(),
            flight,
            landed: false,
        };
        let result = load(key).await;
        guard.land(Landing::Done(
            result.as_ref().map(T::clone).map_err(SharedError::from),
        ));
        result
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Table<T>>> {
        self.table
            .lock()
            .map_err(|_| Error::internal("cache flight table poisoned"))
    }

    /// Flights under way (for tests).
    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.lock().map(|t| t.len()).unwrap_or(0)
    }
}

/// Lands the leader's flight exactly once: with its result, or abandoned if the leader's
/// future is dropped first.
struct LandingGuard<'a, T> {
    flights: &'a Flights<T>,
    key: Arc<str>,
    flight: Arc<Flight<T>>,
    landed: bool,
}

impl<T> LandingGuard<'_, T> {
    fn land(&mut self, landing: Landing<T>) {
        self.landed = true;
        let _ = self.flight.landing.set(landing);
        if let Ok(mut table) = self.flights.table.lock()
            && table
                .get(&self.key)
                .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
        {
            table.remove(&self.key);
        }
        self.flight.landed.notify_waiters();
    }
}

impl<T> Drop for LandingGuard<'_, T> {
    fn drop(&mut self) {
        if !self.landed {
            self.land(Landing::Abandoned);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_load() {
        let flights = Arc::new(Flights::<u32>::new());
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (flights, calls) = (flights.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                flights
                    .run("k", |_| async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(7)
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), 7);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(flights.in_flight(), 0);
    }

    /// Starts a flight for "k" that lands `result` after `delay`, and lets it take off.
    async fn lead_in_background(
        flights: &Arc<Flights<u32>>,
        delay: Duration,
        result: Result<u32>,
    ) -> tokio::task::JoinHandle<Result<u32>> {
        let flights = flights.clone();
        let leader = tokio::spawn(async move {
            flights
                .run("k", |_| async move {
                    tokio::time::sleep(delay).await;
                    result
                })
                .await
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        leader
    }

    #[tokio::test]
    async fn followers_get_the_leaders_error() {
        let flights = Arc::new(Flights::<u32>::new());
        let down = Error::new(ErrorKind::Unavailable, "store down").with_request_id("r-1");
        let leader = lead_in_background(&flights, Duration::from_millis(30), Err(down)).await;
        let follower = flights
            .run("k", |_| async { Ok(1) })
            .await
            .expect_err("joined the failing flight");
        assert_eq!(follower.kind(), ErrorKind::Unavailable);
        assert_eq!(follower.request_id(), Some("r-1"));
        assert!(leader.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn a_dropped_leader_hands_the_flight_to_a_follower() {
        let flights = Arc::new(Flights::<u32>::new());
        let leader = lead_in_background(&flights, Duration::from_secs(3600), Ok(1)).await;
        let f3 = flights.clone();
        let follower = tokio::spawn(async move { f3.run("k", |_| async { Ok(2) }).await });
        tokio::time::sleep(Duration::from_millis(5)).await;
        leader.abort();
        let got = tokio::time::timeout(Duration::from_secs(5), follower)
            .await
            .expect("the follower did not hang")
            .unwrap()
            .unwrap();
        assert_eq!(got, 2, "the follower led a new flight");
        assert_eq!(flights.in_flight(), 0);
    }

    #[tokio::test]
    async fn sequential_calls_each_load() {
        let flights = Flights::<u32>::new();
        for i in 0..3 {
            let got = flights.run("k", |key| async move {
                assert_eq!(&*key, "k");
                Ok(i)
            });
            assert_eq!(got.await.unwrap(), i);
        }
        assert_eq!(flights.in_flight(), 0);
    }
}
