//! Values taken out of entries (replaced by a refresh, expired by a write, evicted), on their
//! way to being freed.
//!
//! A value leaves an entry as an [`Unlinked`]: readers may still hold guard-protected
//! pointers to it, so it is freed only through the read index's `seize` collector. That
//! collector frees each thread's retirements in batches (seize's default is 32; ours,
//! `RETIRE_BATCH`, is larger), so a value retired on a caller's thread could stay in memory,
//! unwiped, until that thread had filled its batch: for a service that refreshes a few
//! credentials now and then, indefinitely. Here the caller
//! only queues it (one uncontended lock, no system call); the maintenance thread retires it
//! at its next tick (within one sweep, see `lifetimes.rs`, if it is parked on a timer and
//! the value is only a refresh's old one) and flushes its batch about 100 ms later: the
//! flush is a process-wide barrier, so retirements are gathered, off the callers' path. In a
//! burst, when a whole batch (`RETIRE_BATCH`) has queued up, the caller that fills it retires
//! and flushes it instead: one barrier per batch, and the values freed on a caller's thread.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::Thread;

use papaya::Guard;

use super::slot;
use super::{HandleInner, SealedVersion};

/// A value taken out of an entry, which must be retired, not dropped (see `slot.rs`).
pub(super) enum Unlinked {
    Plain(slot::Unlinked<HandleInner>),
    Sealed(slot::Unlinked<SealedVersion>),
}

impl Unlinked {
    /// Retires the value through `guard`'s collector (the read index's).
    pub(super) fn retire(self, guard: &impl Guard) {
        match self {
            Unlinked::Plain(v) => v.retire(guard),
            Unlinked::Sealed(v) => v.retire(guard),
        }
    }
}

/// Where unlinked values wait for the maintenance thread.
pub(super) struct Graveyard {
    index: Arc<super::Index>,
    graves: Mutex<Graves>,
    /// The maintenance thread, once started (`None`: it could not be, and callers retire
    /// their values themselves).
    pub(super) thread: OnceLock<Option<Thread>>,
}

#[derive(Default)]
struct Graves {
    values: Vec<Unlinked>,
    /// How the maintenance thread is parked, if it is.
    parked: Parked,
}

#[derive(Clone, Copy, Default, PartialEq)]
enum Parked {
    #[default]
    No,
    /// Until its next sweep (at most `SWEEP_AT_MOST`).
    Timed,
    /// Until woken.
    Untimed,
}

impl Graveyard {
    pub(super) fn new(index: Arc<super::Index>) -> Graveyard {
        Graveyard {
            index,
            graves: Mutex::new(Graves::default()),
            thread: OnceLock::new(),
        }
    }

    /// Queues `value` for retirement by the maintenance thread. `urgent` (a value that must
    /// go: a write, a delete, an eviction) wakes the thread whenever it is parked; otherwise
    /// (a refresh's old value) a timed park ends at its next sweep, which saves a refresh
    /// of an idle cache the wake-up.
    pub(super) fn bury(&self, value: Unlinked, urgent: bool) {
        let Some(Some(thread)) = self.thread.get() else {
            // No maintenance thread: retire it here (freed with this thread's next batch).
            value.retire(&self.index.guard());
            return;
        };
        let (wake, burst) = {
            let mut g = self.graves.lock().unwrap_or_else(PoisonError::into_inner);
            g.values.push(value);
            if g.values.len() >= super::RETIRE_BATCH {
                (false, Some(std::mem::take(&mut g.values)))
            } else {
                let wake = g.parked == Parked::Untimed || (urgent && g.parked == Parked::Timed);
                if wake {
                    g.parked = Parked::No;
                }
                (wake, None)
            }
        };
        if let Some(values) = burst {
            // A burst of writes or refreshes: the caller frees a whole batch itself, on the
            // thread that allocated most of it (freed on the maintenance thread, each value
            // contended for malloc's arena lock with the callers), and flushes so that none
            // of it waits for this thread's next batch. One barrier per batch, as before.
            retire(values, &self.index);
            flush(&self.index);
        } else if wake {
            thread.unpark();
        }
    }

    /// Everything queued (the maintenance thread, awake).
    pub(super) fn take(&self) -> Vec<Unlinked> {
        let mut g = self.graves.lock().unwrap_or_else(PoisonError::into_inner);
        g.parked = Parked::No;
        std::mem::take(&mut g.values)
    }

    /// Whether the maintenance thread may park: only with nothing queued. `untimed`: it
    /// parks without a timer, so the next value must wake it.
    pub(super) fn may_park(&self, untimed: bool) -> bool {
        let mut g = self.graves.lock().unwrap_or_else(PoisonError::into_inner);
        if !g.values.is_empty() {
            return false;
        }
        g.parked = if untimed {
            Parked::Untimed
        } else {
            Parked::Timed
        };
        true
    }
}

impl Drop for Graveyard {
    fn drop(&mut self) {
        // The cache is going: the index (and its collector) frees what is retired to it.
        let values = std::mem::take(
            &mut self
                .graves
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .values,
        );
        let guard = self.index.guard();
        for v in values {
            v.retire(&guard);
        }
    }
}

/// Retires `values` through the index's collector on this thread.
pub(super) fn retire(values: Vec<Unlinked>, index: &super::Index) {
    let guard = index.guard();
    for v in values {
        v.retire(&guard);
    }
}

/// Starts the reclamation of this thread's retired values. Returns whether anything retired
/// in this process still awaits it (the flush fails while more threads hold guards than the
/// batch has entries; try again later).
pub(super) fn flush(index: &super::Index) -> bool {
    let guard = index.guard();
    guard.flush();
    drop(guard);
    slot::retirements_pending()
}
