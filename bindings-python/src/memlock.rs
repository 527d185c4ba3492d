//! Tells Python programs that secret memory could not be locked.
//!
//! The core reports a refused `mlock` through a `tracing` warning, which a Python process
//! never sees, and a counter. The binding turns the first failure into one
//! `sealbox.MemoryLockWarning` per process, issued by the client call that follows it (the
//! call that allocated the memory, or the next one), through Python's `warnings`, so that
//! filters, `-W error` and logging's capture of warnings all apply.

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::prelude::*;

pyo3::import_exception!(sealbox._errors, MemoryLockWarning);

static WARNED: AtomicBool = AtomicBool::new(false);

/// Issues the process's one `MemoryLockWarning` if a lock has failed and none was issued yet.
/// An `Err` is the warning raised as an exception (`-W error`).
#[inline]
pub(crate) fn warn_if_unlocked(py: Python<'_>) -> PyResult<()> {
    if WARNED.load(Ordering::Relaxed) || sealbox::memory::lock_failures() == 0 {
        return Ok(());
    }
    warn_once(py)
}

#[cold]
fn warn_once(py: Python<'_>) -> PyResult<()> {
    if WARNED.swap(true, Ordering::Relaxed) {
        return Ok(());
    }
    let category = py.get_type::<MemoryLockWarning>();
    PyErr::warn(
        py,
        category.as_any(),
        c"sealbox could not lock memory for secrets (RLIMIT_MEMLOCK reached), so they may be \
          written to swap; they are still wiped and kept out of core dumps. Raise the limit \
          (ulimit -l, LimitMEMLOCK= in systemd) or grant CAP_IPC_LOCK; \
          Sealbox.metrics()['memory_lock_failures'] counts the failures.",
        1,
    )
}
