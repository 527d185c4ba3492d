//! Which process an object belongs to, so that a forked child never uses what it inherited.
//!
//! Secret memory is `MADV_WIPEONFORK` (see [`crate::memory`]): a child process starts with
//! every secret, cached value and key schedule zeroed, and without the parent's threads (the
//! audit writer, the cache's maintenance thread, runtime workers). An object made before the
//! fork therefore cannot serve the child: its values read as zeros, its keys hold a wiped AES
//! schedule, its queues have no reader. Every object that holds key material, cached secrets,
//! database connections or background threads records a [`ProcessStamp`] when it is made and
//! answers [`ErrorKind::Forked`] once used in another process; [`ProcessBound`] keeps a
//! child from running the destructor of something it inherited (joining threads that do not
//! exist in it, closing the parent's connections).
//!
//! The process is told by a *generation*, not a pid: a counter bumped by a `pthread_atfork`
//! child handler, so the check is one relaxed load and a compare (`getpid` is a system call).
//! The handler is registered when the first stamp is made; an object made before that cannot
//! exist. A process made by a raw `clone` system call that skips the `atfork` handlers is not
//! seen (glibc's `fork`, `posix_spawn` and Python's `os.fork` all run them).

use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, ErrorKind, Result};

/// Bumped in every forked child, before `fork()` returns there.
static GENERATION: AtomicU64 = AtomicU64::new(0);
static REGISTER: Once = Once::new();

extern "C" fn bump_generation_in_child() {
    // Async-signal-safe: one atomic add, no allocation, no lock. The child has one thread
    // here, and threads it starts later see the new value through their creation.
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

fn register_handler() {
    REGISTER.call_once(|| {
        // SAFETY: `pthread_atfork` only records the three function pointers; the child
        // handler is an `extern "C" fn` with no arguments that stays valid for the life of
        // the process (a static function) and is async-signal-safe, as the handlers of a
        // multithreaded process's fork must be.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(bump_generation_in_child)) };
        if rc != 0 {
            // Only ENOMEM is documented: the process is out of memory at start-up.
            tracing::error!(
                target: "sealbox::process",
                code = rc,
                "could not register sealbox's fork handler; objects used in a forked child \
                 will not be detected"
            );
        }
    });
}

/// The process generation now: 0 in the process that first made a stamp, one more in each
/// forked generation below it.
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

/// The process an object was made in. `Copy`, 8 bytes; [`ProcessStamp::check`] is one relaxed
/// atomic load and a compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessStamp(u64);

impl ProcessStamp {
    /// A stamp of the calling process (registers the fork handler on first use).
    pub fn new() -> ProcessStamp {
        register_handler();
        ProcessStamp(generation())
    }

    /// Whether the calling process is the one the stamp was made in.
    #[inline]
    pub fn is_current(self) -> bool {
        GENERATION.load(Ordering::Relaxed) == self.0
    }

    /// `Ok` in the process the stamp was made in; in a forked child, an
    /// [`ErrorKind::Forked`] error naming `what` (`"client"`, `"local vault"`, ...) and what
    /// to do instead.
    #[inline]
    pub fn check(self, what: &'static str) -> Result<()> {
        if self.is_current() {
            Ok(())
        } else {
            Err(forked(what))
        }
    }
}

impl Default for ProcessStamp {
    fn default() -> Self {
        ProcessStamp::new()
    }
}

/// The error of an object used in a process forked after it was made.
#[cold]
#[inline(never)]
pub fn forked(what: &str) -> Error {
    Error::new(
        ErrorKind::Forked,
        format!(
            "this {what} was opened before fork() and cannot be used in the child process \
             (its secrets and keys are wiped there, its threads do not exist); call \
             Sealbox::reopen() in the child (sb_client_reopen in C), or open clients after \
             fork"
        ),
    )
}

/// A value that belongs to the process that made it: dropped normally there, leaked when
/// dropped in a forked child. What it holds (a runtime whose workers, a writer whose thread,
/// connections whose locks all live in the parent) must not be torn down by a child, where
/// joining a thread that was never copied waits forever. The child's copy of the memory is
/// copy-on-write and goes with the child.
pub struct ProcessBound<T> {
    stamp: ProcessStamp,
    value: ManuallyDrop<T>,
}

impl<T> ProcessBound<T> {
    /// Binds `value` to the calling process.
    pub fn new(value: T) -> ProcessBound<T> {
        ProcessBound {
            stamp: ProcessStamp::new(),
            value: ManuallyDrop::new(value),
        }
    }

    /// The process the value belongs to.
    #[inline]
    pub fn stamp(&self) -> ProcessStamp {
        self.stamp
    }
}

impl<T> Deref for ProcessBound<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> Drop for ProcessBound<T> {
    fn drop(&mut self) {
        if self.stamp.is_current() {
            // SAFETY: `value` is dropped exactly once, here, and never used afterwards (this
            // is the owner's destructor).
            unsafe { ManuallyDrop::drop(&mut self.value) }
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for ProcessBound<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Runs `child` in a forked child and returns its exit status (0 = all checks passed).
    /// The child does async-signal-safe work only, then `_exit`s.
    fn in_child(child: impl FnOnce() -> bool) -> i32 {
        // SAFETY: the child only runs `child` (atomic loads, no allocation, no lock) and
        // `_exit`s without running the harness's destructors.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let ok = child();
            // SAFETY: ends the child at once, as a forked child of a threaded process must.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status), "child died (status {status})");
        libc::WEXITSTATUS(status)
    }

    #[test]
    fn a_stamp_is_current_here_and_stale_in_a_forked_child() {
        let stamp = ProcessStamp::new();
        assert!(stamp.is_current());
        assert!(stamp.check("client").is_ok());
        // Only atomics in the child: `is_current` must flip without the parent's help.
        let code = in_child(|| {
            let fresh = ProcessStamp(generation());
            !stamp.is_current() && fresh.is_current() && generation() > stamp.0
        });
        assert_eq!(code, 0, "the child saw the parent's stamp as its own");
        assert!(stamp.is_current(), "the parent's generation moved");
    }

    #[test]
    fn the_forked_error_says_what_to_do() {
        let e = forked("client");
        assert_eq!(e.kind(), ErrorKind::Forked);
        assert!(e.message().contains("before fork()"), "{e}");
        assert!(e.message().contains("Sealbox::reopen()"), "{e}");
    }

    static DROPS: AtomicUsize = AtomicUsize::new(0);
    struct Counted;
    impl Drop for Counted {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_bound_value_is_dropped_here_and_leaked_in_a_child() {
        let before = DROPS.load(Ordering::Relaxed);
        drop(ProcessBound::new(Counted));
        assert_eq!(DROPS.load(Ordering::Relaxed), before + 1);
        let inherited = ProcessBound::new(Counted);
        let code = in_child(move || {
            let seen = DROPS.load(Ordering::Relaxed);
            drop(inherited);
            DROPS.load(Ordering::Relaxed) == seen
        });
        assert_eq!(code, 0, "a forked child ran an inherited destructor");
    }
}
