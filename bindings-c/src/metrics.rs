//! The client's metrics as Prometheus text, for a C or C++ service's own `/metrics` endpoint,
//! and the process's count of refused memory locks.

use std::ffi::c_char;

use crate::boundary::{Failure, ffi_boundary};
use crate::client::{borrow_client, sb_client};
use crate::handle::{out_param, write_out};
use crate::result::sb_result;

/// Copies this client's metrics as Prometheus text (counters, store errors by kind and the
/// store-latency histogram; no secret names or values) into `buf` as a NUL-terminated
/// string, and writes its length without the NUL to `*needed`.
///
/// The text does not fit in `len` bytes (NUL included): `SB_RESULT_INSUFFICIENT_SIZE`,
/// `buf` untouched and `*needed` written all the same, so the call can be repeated with a
/// buffer of `*needed + 1` bytes. `buf` may be NULL when `len` is 0, to ask for the size.
///
/// # Safety
/// `client` is NULL or live; `buf` is NULL with `len` 0, or points to `len` writable bytes;
/// `needed` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_metrics_prometheus(
    client: *const sb_client,
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> sb_result {
    ffi_boundary("sb_metrics_prometheus", || {
        // SAFETY: NULL or live by contract.
        let client = unsafe { borrow_client(client) }?;
        let needed = out_param(needed, "needed")?;
        if buf.is_null() && len > 0 {
            return Err(Failure::null("buf"));
        }
        let text = client.client().render_prometheus();
        // SAFETY: checked non-NULL, writable by contract.
        unsafe { write_out(needed, text.len()) };
        if text.len() >= len {
            return Err(Failure::new(
                sb_result::InsufficientSize,
                format!(
                    "the metrics take {} bytes and a NUL; `buf` has {len}",
                    text.len()
                ),
            ));
        }
        // SAFETY: `buf` is non-NULL (len > text.len() >= 0) and points to `len` writable
        // bytes by contract, and text.len() < len leaves room for the NUL; `text` is a
        // distinct Rust allocation, so the ranges do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
            buf.add(text.len()).write(0);
        }
        Ok(())
    })
}

/// Writes to `*count_out` how many times the kernel refused to lock secret memory in this
/// process (`RLIMIT_MEMLOCK` reached, no `CAP_IPC_LOCK`). Above 0, some secrets sit in memory
/// that may be swapped to disk (the default BestEffort memory policy carries on unlocked:
/// still wiped and kept out of core dumps). The same count is the
/// `sealbox_memory_lock_failures_total` counter of `sb_metrics_prometheus`. The library has
/// no log of its own for C programs: check this after opening a client and reading a first
/// secret, and raise the limit (`ulimit -l`, `LimitMEMLOCK=` in systemd) if it is not 0.
///
/// # Safety
/// `count_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_memory_lock_failures(count_out: *mut u64) -> sb_result {
    ffi_boundary("sb_memory_lock_failures", || {
        let out = out_param(count_out, "count_out")?;
        // SAFETY: checked non-NULL, writable by contract.
        unsafe { write_out(out, sealbox::memory::lock_failures()) };
        Ok(())
    })
}
