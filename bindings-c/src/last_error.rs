//! The thread-local last error (its message and request id), `sb_last_error_message` and
//! `sb_last_error_request_id`.
//!
//! Like `errno`, the last error belongs to the calling thread and is replaced by the next
//! failing call on that thread; successful calls leave it alone (so the hot path pays nothing).

use std::cell::RefCell;
use std::ffi::c_char;

use crate::result::sb_result;

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
    static LAST_REQUEST_ID: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records `function: message` as this thread's last error, with the request id of the
/// failure's audit line (or provider) when it has one.
pub(crate) fn set(function: &str, message: &str, request_id: Option<&str>) {
    LAST_ERROR.with(|cell| {
        if let Ok(mut s) = cell.try_borrow_mut() {
            s.clear();
            s.push_str(function);
            s.push_str(": ");
            s.push_str(message);
        }
    });
    LAST_REQUEST_ID.with(|cell| {
        if let Ok(mut s) = cell.try_borrow_mut() {
            s.clear();
            s.push_str(request_id.unwrap_or_default());
        }
    });
}

/// This thread's last error (empty when none).
#[cfg(test)]
pub(crate) fn get() -> String {
    LAST_ERROR.with(|cell| cell.borrow().clone())
}

/// Copies one of this thread's last-error strings into `buf` (capacity `len`) NUL-terminated,
/// truncated at a UTF-8 boundary, and writes its length without the NUL to `*written`: the
/// body of both `sb_last_error_*` functions. It reports its own errors by code only, since
/// recording them would overwrite the text being asked for.
///
/// # Safety
/// `buf` must point to `len` writable bytes; `written` must point to a writable `size_t`.
unsafe fn copy_last(
    which: &'static std::thread::LocalKey<RefCell<String>>,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> sb_result {
    let Some(buf) = std::ptr::NonNull::new(buf.cast::<u8>()) else {
        return sb_result::NullParameter;
    };
    let Some(written) = std::ptr::NonNull::new(written) else {
        return sb_result::NullParameter;
    };
    if len == 0 {
        return sb_result::InsufficientSize;
    }
    let copy = || {
        which.with(|cell| {
            let Ok(text) = cell.try_borrow() else {
                return sb_result::Internal;
            };
            let mut n = text.len().min(len - 1);
            while !text.is_char_boundary(n) {
                n -= 1;
            }
            // SAFETY: the caller guarantees `buf` points to `len` writable bytes and n < len;
            // `text` is a distinct Rust allocation, so the ranges do not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(text.as_ptr(), buf.as_ptr(), n);
                buf.as_ptr().add(n).write(0);
            }
            // SAFETY: the caller guarantees `written` points to a writable size_t.
            unsafe { written.as_ptr().write(n) };
            sb_result::Ok
        })
    };
    std::panic::catch_unwind(copy).unwrap_or(sb_result::Panic)
}

/// Copies this thread's last error's request id into `buf` (capacity `len` bytes) as a
/// NUL-terminated string and writes its length without the NUL to `*written`.
///
/// For a failed access that the client audited (every failed read, write, list, describe
/// and delete, and every policy deny, when the client has an audit log) this is the
/// `request_id` of the audit line that recorded it, so the failure can be found in the log;
/// otherwise the remote provider's request id when a remote store failed; otherwise the
/// empty string. Request ids are ASCII and shorter than 64 bytes. Errors and truncation as
/// `sb_last_error_message`.
///
/// # Safety
/// `buf` must point to `len` writable bytes; `written` must point to a writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_last_error_request_id(
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> sb_result {
    // SAFETY: forwarded from this function's contract.
    unsafe { copy_last(&LAST_REQUEST_ID, buf, len, written) }
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
    // SAFETY: forwarded from this function's contract.
    unsafe { copy_last(&LAST_ERROR, buf, len, written) }
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
        set("sb_get", "not_found: secret a/b does not exist", None);
        let (r, msg, n) = read(256);
        assert_eq!(r, sb_result::Ok);
        assert_eq!(msg, "sb_get: not_found: secret a/b does not exist");
        assert_eq!(n, msg.len());
    }

    #[test]
    fn a_small_buffer_truncates_on_a_char_boundary() {
        set("f", "é", None);
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

    fn read_id(len: usize) -> (sb_result, String) {
        let mut buf = vec![0x7f as c_char; len.max(1)];
        let mut written = usize::MAX;
        // SAFETY: buf has at least `len` bytes; written is a local.
        let r = unsafe { sb_last_error_request_id(buf.as_mut_ptr(), len, &mut written) };
        if r != sb_result::Ok {
            return (r, String::new());
        }
        assert_eq!(buf[written], 0, "NUL-terminated");
        let bytes: Vec<u8> = buf[..written].iter().map(|c| *c as u8).collect();
        (r, String::from_utf8(bytes).unwrap_or_default())
    }

    #[test]
    fn the_request_id_goes_with_its_error_and_is_cleared_by_the_next() {
        set("sb_get", "access_denied: no", Some("9f1c22aa-1f"));
        assert_eq!(read_id(64), (sb_result::Ok, "9f1c22aa-1f".to_owned()));
        assert_eq!(read_id(4), (sb_result::Ok, "9f1".to_owned()));
        set("sb_get", "invalid_input: bad name", None);
        assert_eq!(read_id(64), (sb_result::Ok, String::new()));
        assert_eq!(read_id(0).0, sb_result::InsufficientSize);
    }

    #[test]
    fn messages_are_per_thread() {
        set("main", "here", None);
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
