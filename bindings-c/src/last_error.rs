//! The thread-local last error message and `sb_last_error_message`.
//!
//! Like `errno`, the message belongs to the calling thread and is replaced by the next failing
//! call on that thread; successful calls leave it alone (so the hot path pays nothing).

use std::cell::RefCell;
use std::ffi::c_char;

use crate::result::sb_result;

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records `function: message` as this thread's last error.
pub(crate) fn set(function: &str, message: &str) {
    LAST_ERROR.with(|cell| {
        if let Ok(mut s) = cell.try_borrow_mut() {
            s.clear();
            s.push_str(function);
            s.push_str(": ");
            s.push_str(message);
        }
    });
}

/// This thread's last error (empty when none).
#[cfg(test)]
pub(crate) fn get() -> String {
    LAST_ERROR.with(|cell| cell.borrow().clone())
}

/// Copies this thread's last error message into `buf` (capacity `len` bytes) as a
/// NUL-terminated string and writes its length without the NUL to `*written`.
///
/// The message names the failing function and what went wrong; it never contains a secret
/// value. A message longer than `len - 1` bytes is truncated at a UTF-8 character boundary
/// (a diagnostic cut short is still a success). With no error so far, writes the empty string.
///
/// Returns `SB_RESULT_NULL_PARAMETER` when `buf` or `written` is NULL and
/// `SB_RESULT_INSUFFICIENT_SIZE` when `len` is 0.
///
/// # Safety
/// `buf` must point to `len` writable bytes; `written` must point to a writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_last_error_message(
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> sb_result {
    // This function reports its own errors by code only: recording them would overwrite the
    // message being asked for.
    let buf = match std::ptr::NonNull::new(buf.cast::<u8>()) {
        Some(b) => b,
        None => return sb_result::NullParameter,
    };
    let written = match std::ptr::NonNull::new(written) {
        Some(w) => w,
        None => return sb_result::NullParameter,
    };
    if len == 0 {
        return sb_result::InsufficientSize;
    }
    let copy = || {
        LAST_ERROR.with(|cell| {
            let Ok(msg) = cell.try_borrow() else {
                return sb_result::Internal;
            };
            let mut n = msg.len().min(len - 1);
            while !msg.is_char_boundary(n) {
                n -= 1;
            }
            // SAFETY: the caller guarantees `buf` points to `len` writable bytes and n < len;
            // `msg` is a distinct Rust allocation, so the ranges do not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(msg.as_ptr(), buf.as_ptr(), n);
                buf.as_ptr().add(n).write(0);
            }
            // SAFETY: the caller guarantees `written` points to a writable size_t.
            unsafe { written.as_ptr().write(n) };
            sb_result::Ok
        })
    };
    std::panic::catch_unwind(copy).unwrap_or(sb_result::Panic)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(len: usize) -> (sb_result, String, usize) {
        let mut buf = vec![0x7f as c_char; len.max(1)];
        let mut written = usize::MAX;
        // SAFETY: buf has at least `len` bytes; written is a local.
        let r = unsafe { sb_last_error_message(buf.as_mut_ptr(), len, &mut written) };
        if r != sb_result::Ok {
            return (r, String::new(), written);
        }
        let bytes: Vec<u8> = buf[..written].iter().map(|c| *c as u8).collect();
        assert_eq!(buf[written], 0, "NUL-terminated");
        (r, String::from_utf8(bytes).unwrap_or_default(), written)
    }

    #[test]
    fn the_message_is_copied_and_nul_terminated() {
        set("sb_get", "not_found: secret a/b does not exist");
        let (r, msg, n) = read(256);
        assert_eq!(r, sb_result::Ok);
        assert_eq!(msg, "sb_get: not_found: secret a/b does not exist");
        assert_eq!(n, msg.len());
    }

    #[test]
    fn a_small_buffer_truncates_on_a_char_boundary() {
        set("f", "é");
        // "f: é" is 5 bytes; 4 bytes of room (plus NUL) would split the é.
        let (r, msg, n) = read(5);
        assert_eq!(r, sb_result::Ok);
        assert_eq!(msg, "f: ");
        assert_eq!(n, 3);
    }

    #[test]
    fn null_and_empty_buffers_are_answered_with_codes() {
        let mut written = 0usize;
        let mut byte: c_char = 0;
        // SAFETY: NULL is what is being tested; the function checks before writing.
        unsafe {
            assert_eq!(
                sb_last_error_message(std::ptr::null_mut(), 8, &mut written),
                sb_result::NullParameter
            );
            assert_eq!(
                sb_last_error_message(&mut byte, 1, std::ptr::null_mut()),
                sb_result::NullParameter
            );
            assert_eq!(
                sb_last_error_message(&mut byte, 0, &mut written),
                sb_result::InsufficientSize
            );
        }
    }

    #[test]
    fn messages_are_per_thread() {
        set("main", "here");
        let other = std::thread::spawn(|| {
            let (_, msg, _) = read(64);
            msg
        })
        .join()
        .unwrap_or_default();
        assert_eq!(other, "");
        assert_eq!(read(64).1, "main: here");
    }
}
