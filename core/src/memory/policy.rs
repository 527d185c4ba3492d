//! What happens when the kernel refuses to lock memory, and how that is reported.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use crate::error::{Error, ErrorKind};

/// What to do when the kernel refuses to lock memory (RLIMIT_MEMLOCK reached).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MemoryPolicy {
    /// Fail the allocation with [`crate::ErrorKind::MemoryLock`].
    Strict,
    /// Continue with unlocked (but still dump-excluded and wiped) memory, report it through a
    /// `tracing` warning (once per process), the `sealbox_memory_lock_failures_total` counter and
    /// [`crate::Secret::is_locked`].
    #[default]
    BestEffort,
}

const STRICT: u8 = 0;
const BEST_EFFORT: u8 = 1;

static DEFAULT_POLICY: AtomicU8 = AtomicU8::new(BEST_EFFORT);

/// The process-wide default policy used by constructors that take none
/// ([`MemoryPolicy::BestEffort`] until [`set_default_policy`] changes it).
pub fn default_policy() -> MemoryPolicy {
    match DEFAULT_POLICY.load(Ordering::Relaxed) {
        STRICT => MemoryPolicy::Strict,
        _ => MemoryPolicy::BestEffort,
    }
}

/// Sets the process-wide default policy. Secrets already allocated keep the state they got.
pub fn set_default_policy(policy: MemoryPolicy) {
    let raw = match policy {
        MemoryPolicy::Strict => STRICT,
        MemoryPolicy::BestEffort => BEST_EFFORT,
    };
    DEFAULT_POLICY.store(raw, Ordering::Relaxed);
}

/// Name of the counter incremented on every failed lock attempt.
pub const LOCK_FAILURES_METRIC: &str = "sealbox_memory_lock_failures_total";

static LOCK_FAILURES: AtomicU64 = AtomicU64::new(0);
static WARNED: AtomicBool = AtomicBool::new(false);

/// Failed lock attempts in this process so far (the same count the metric reports, and
/// the `memory_lock_failures` counter of every client's metrics). Bindings read it to tell
/// programs without a `tracing` subscriber that secrets are not locked.
pub fn lock_failures() -> u64 {
    LOCK_FAILURES.load(Ordering::Relaxed)
}

/// Records one failed `mlock` and turns it into the policy's answer: `Err` under `Strict`,
/// `Ok(())` (carry on unlocked) under `BestEffort`.
pub(crate) fn on_lock_failure(policy: MemoryPolicy, cause: io::Error) -> Result<(), Error> {
    match policy {
        MemoryPolicy::Strict => Err(strict_failure(cause)),
        MemoryPolicy::BestEffort => {
            best_effort_failure(cause);
            Ok(())
        }
    }
}

fn count_failure() {
    LOCK_FAILURES.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(LOCK_FAILURES_METRIC).increment(1);
}

/// Records a failed `mlock` under [`MemoryPolicy::Strict`] and returns the error to fail with.
pub(crate) fn strict_failure(cause: io::Error) -> Error {
    count_failure();
    Error::new(
        ErrorKind::MemoryLock,
        format!(
            "could not lock memory for a secret ({cause}); raise RLIMIT_MEMLOCK \
             (ulimit -l, LimitMEMLOCK= in systemd) or use MemoryPolicy::BestEffort"
        ),
    )
    .with_source(cause)
}

/// Records a failed `mlock` under [`MemoryPolicy::BestEffort`]: counter always, warning once.
pub(crate) fn best_effort_failure(cause: io::Error) {
    count_failure();
    // One warning per process: a service under a small limit would otherwise log on every
    // allocation. The counter keeps the full count.
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            error = %cause,
            metric = LOCK_FAILURES_METRIC,
            "could not lock memory for secrets; continuing with unlocked (still dump-excluded \
             and wiped) memory under MemoryPolicy::BestEffort; raise RLIMIT_MEMLOCK to fix"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_failure_is_a_memory_lock_error_that_says_what_to_do() {
        let before = lock_failures();
        let err = on_lock_failure(
            MemoryPolicy::Strict,
            io::Error::from_raw_os_error(libc::ENOMEM),
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MemoryLock);
        assert!(err.message().contains("RLIMIT_MEMLOCK"));
        assert!(lock_failures() > before);
    }

    #[test]
    fn best_effort_failure_continues_and_counts() {
        let before = lock_failures();
        on_lock_failure(
            MemoryPolicy::BestEffort,
            io::Error::from_raw_os_error(libc::EPERM),
        )
        .unwrap();
        assert!(lock_failures() > before);
    }
}
