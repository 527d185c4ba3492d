//! Coalescing of repeated cache hits, on the writer thread.
//!
//! A service that reads one secret on every request writes a line per read: at ~460 bytes a
//! line, a million hits is half a gigabyte and as many HMACs and writes. What a reviewer needs is
//! who read what and when, so with `coalesce: INTERVAL` the successful cache hits (`cache: hit`)
//! of one secret (name, store, version) by one principal from one source, within INTERVAL of the
//! first, become one `secret.read` event with `count`, `first` and `last`, dated at the first.
//! A window is written once INTERVAL has passed since its first hit (within the writer's
//! idle poll, at most 50 ms later), at every flush and at shutdown.
//!
//! Only hits are coalesced: misses, stale reads, denials, failed accesses, writes, alerts and
//! every other event go through as they are, and so does a strict-mode hit (its caller waits
//! for its own line). It happens here, where the writer takes events off the per-thread rings:
//! the hit path queues exactly what it did without coalescing, and hits from every thread of
//! the process meet in one map that only the writer thread touches (no lock).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::event::{AuditEvent, CacheOutcome, Coalesced, Resource};
use super::queue::Item;
use crate::principal::Principal;

/// One principal's reads of one resource from one source.
struct Key {
    user: Principal,
    resource: Arc<Resource>,
    source: Option<Arc<str>>,
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.user == other.user
            && (Arc::ptr_eq(&self.resource, &other.resource) || self.resource == other.resource)
            && self.source == other.source
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.user.hash(state);
        self.resource.name.hash(state);
        self.resource.store.hash(state);
        self.resource.version.hash(state);
        self.source.hash(state);
    }
}

/// The first hit of a window, how many there were and the time of the last.
struct Window {
    first: AuditEvent,
    count: u64,
    last: SystemTime,
}

impl Window {
    fn into_item(self) -> Item {
        let mut event = self.first;
        if self.count > 1 {
            event.coalesced = Some(Box::new(Coalesced {
                count: self.count,
                first: event.timestamp,
                last: self.last,
            }));
        }
        Item {
            event,
            waiter: None,
        }
    }
}

pub(crate) struct Coalescer {
    interval: Duration,
    open: HashMap<Key, Window>,
    /// Windows closed by a later hit, waiting to be handed to the writer.
    closed: Vec<Item>,
    /// The earliest end of an open window.
    next_due: Option<SystemTime>,
    scratch: Vec<Item>,
}

/// Whether `item` is a successful cache hit nobody waits on.
fn coalescable(item: &Item) -> bool {
    let e = &item.event;
    item.waiter.is_none()
        && e.success
        && !e.denied
        && e.event.is_none()
        && e.cache == Some(CacheOutcome::Hit)
        && e.coalesced.is_none()
        && e.action == super::Action::Read
}

impl Coalescer {
    pub(crate) fn new(interval: Duration) -> Coalescer {
        Coalescer {
            interval,
            open: HashMap::new(),
            closed: Vec::new(),
            next_due: None,
            scratch: Vec::new(),
        }
    }

    /// Takes the hits out of `pending[from..]` into their windows; the other events stay, in
    /// their order.
    pub(crate) fn absorb(&mut self, pending: &mut Vec<Item>, from: usize) {
        if from >= pending.len() {
            return;
        }
        self.scratch.extend(pending.drain(from..));
        let mut scratch = std::mem::take(&mut self.scratch);
        for item in scratch.drain(..) {
            if coalescable(&item) {
                self.add(item.event);
            } else {
                pending.push(item);
            }
        }
        self.scratch = scratch;
    }

    fn add(&mut self, event: AuditEvent) {
        let at = event.timestamp;
        let key = Key {
            user: event.user.clone(),
            resource: event.resource.clone(),
            source: event.source.clone(),
        };
        match self.open.get_mut(&key) {
            Some(w) if at < w.first.timestamp + self.interval => {
                w.count += 1;
                w.last = w.last.max(at);
            }
            Some(w) => {
                let ended = std::mem::replace(
                    w,
                    Window {
                        first: event,
                        count: 1,
                        last: at,
                    },
                );
                self.closed.push(ended.into_item());
                self.note_due(at);
            }
            None => {
                self.open.insert(
                    key,
                    Window {
                        first: event,
                        count: 1,
                        last: at,
                    },
                );
                self.note_due(at);
            }
        }
    }

    fn note_due(&mut self, first: SystemTime) {
        let due = first + self.interval;
        self.next_due = Some(self.next_due.map_or(due, |d| d.min(due)));
    }

    /// Appends to `out` the windows that ended by `now` (all of them when `all`: a flush or
    /// shutdown), oldest first.
    pub(crate) fn emit(&mut self, now: SystemTime, all: bool, out: &mut Vec<Item>) {
        let start = out.len();
        out.append(&mut self.closed);
        if all {
            out.extend(self.open.drain().map(|(_, w)| w.into_item()));
            self.next_due = None;
        } else if self.next_due.is_some_and(|d| d <= now) {
            let mut next: Option<SystemTime> = None;
            for (key, w) in std::mem::take(&mut self.open) {
                let due = w.first.timestamp + self.interval;
                if due <= now {
                    out.push(w.into_item());
                } else {
                    next = Some(next.map_or(due, |n| n.min(due)));
                    self.open.insert(key, w);
                }
            }
            self.next_due = next;
        }
        out[start..].sort_by_key(|i| i.event.timestamp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Action;

    fn hit(user: &Principal, r: &Arc<Resource>, ms: u64) -> Item {
        let mut event = AuditEvent::cached_read(user.clone(), r.clone(), CacheOutcome::Hit);
        event.timestamp = SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
        Item {
            event,
            waiter: None,
        }
    }

    #[test]
    fn hits_within_the_interval_become_one_event_and_others_pass_through() {
        let (a, b) = (Principal::new("svc:a"), Principal::new("svc:b"));
        let r = Resource::in_store("db/password", Arc::from("main"));
        let mut c = Coalescer::new(Duration::from_millis(1000));
        let mut pending = vec![hit(&a, &r, 10), hit(&a, &r, 20), hit(&b, &r, 30)];
        let denied = AuditEvent::access(Action::Read, a.clone(), r.clone()).deny("no rule");
        pending.push(Item {
            event: denied,
            waiter: None,
        });
        pending.push(hit(&a, &r, 900));
        c.absorb(&mut pending, 0);
        assert_eq!(pending.len(), 1, "the denial stays");
        assert!(pending[0].event.denied);
        let mut out = Vec::new();
        c.emit(
            SystemTime::UNIX_EPOCH + Duration::from_millis(500),
            false,
            &mut out,
        );
        assert!(out.is_empty(), "no window has ended");
        // A hit past the window's end closes it and opens the next.
        let mut more = vec![hit(&a, &r, 1010)];
        c.absorb(&mut more, 0);
        c.emit(
            SystemTime::UNIX_EPOCH + Duration::from_millis(1040),
            false,
            &mut out,
        );
        let got: Vec<(String, Option<u64>)> = out
            .iter()
            .map(|i| {
                let e = &i.event;
                (
                    e.user.as_str().to_owned(),
                    e.coalesced.as_ref().map(|c| c.count),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![("svc:a".to_owned(), Some(3)), ("svc:b".to_owned(), None)]
        );
        let c3 = out[0].event.coalesced.as_ref().unwrap();
        assert_eq!(c3.first, SystemTime::UNIX_EPOCH + Duration::from_millis(10));
        assert_eq!(c3.last, SystemTime::UNIX_EPOCH + Duration::from_millis(900));
        out.clear();
        c.emit(SystemTime::UNIX_EPOCH, true, &mut out);
        assert_eq!(out.len(), 1, "a flush writes the open window");
        assert!(
            out[0].event.coalesced.is_none(),
            "a single hit is written as it is"
        );
    }
}
