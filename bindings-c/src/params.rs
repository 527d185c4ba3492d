//! Reading C string and buffer arguments: NULL and invalid UTF-8 become codes.

use std::ffi::{CStr, OsStr, c_char};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::boundary::Failure;

/// A NUL-terminated UTF-8 string argument (names, fields, prefixes, version ids).
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that stays valid for 'a.
pub(crate) unsafe fn utf8<'a>(ptr: *const c_char, param: &'static str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(Failure::null(param));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_str().map_err(|_| Failure::invalid_utf8(param))
}

/// An array of `count` NUL-terminated UTF-8 strings (field names). NULL for the array or any
/// element is refused, naming the element.
///
/// # Safety
/// `ptr` is NULL or points to `count` pointers, each NULL or NUL-terminated, all valid for 'a.
pub(crate) unsafe fn utf8_array<'a>(
    ptr: *const *const c_char,
    count: usize,
    param: &'static str,
) -> Result<Vec<&'a str>, Failure> {
    if ptr.is_null() {
        return Err(Failure::null(param));
    }
    // SAFETY: non-NULL and `count` readable pointers by the caller's contract.
    let ptrs = unsafe { std::slice::from_raw_parts(ptr, count) };
    ptrs.iter()
        .enumerate()
        .map(|(i, &p)| {
            if p.is_null() {
                return Err(Failure::new(
                    crate::result::sb_result::NullParameter,
                    format!("argument `{param}[{i}]` is NULL"),
                ));
            }
            // SAFETY: non-NULL and NUL-terminated by the caller's contract.
            unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| {
                Failure::new(
                    crate::result::sb_result::InvalidUtf8,
                    format!("argument `{param}[{i}]` is not valid UTF-8"),
                )
            })
        })
        .collect()
}

/// A NUL-terminated name argument as bytes, not yet checked as UTF-8 (see [`name_str`]).
///
/// # Safety
/// As [`utf8`].
pub(crate) unsafe fn cstr_bytes<'a>(
    ptr: *const c_char,
    param: &'static str,
) -> Result<&'a [u8], Failure> {
    if ptr.is_null() {
        return Err(Failure::null(param));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    Ok(unsafe { CStr::from_ptr(ptr) }.to_bytes())
}

/// Checks a name given as bytes (from [`cstr_bytes`] or a `(pointer, length)` pair).
pub(crate) fn name_str<'a>(name: &'a [u8], param: &'static str) -> Result<&'a str, Failure> {
    std::str::from_utf8(name).map_err(|_| Failure::invalid_utf8(param))
}

/// A NUL-terminated path argument. Paths are bytes on Unix, so any bytes are accepted.
///
/// # Safety
/// As [`utf8`].
pub(crate) unsafe fn path<'a>(
    ptr: *const c_char,
    param: &'static str,
) -> Result<&'a Path, Failure> {
    if ptr.is_null() {
        return Err(Failure::null(param));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let s = unsafe { CStr::from_ptr(ptr) };
    Ok(Path::new(OsStr::from_bytes(s.to_bytes())))
}

/// A `(pointer, length)` byte buffer argument. NULL is refused even with length 0, so a
/// forgotten pointer is never mistaken for an empty value.
///
/// # Safety
/// `ptr` is NULL or points to `len` readable bytes that stay valid for 'a.
pub(crate) unsafe fn bytes<'a>(
    ptr: *const u8,
    len: usize,
    param: &'static str,
) -> Result<&'a [u8], Failure> {
    if ptr.is_null() {
        return Err(Failure::null(param));
    }
    // SAFETY: non-NULL and `len` readable bytes by the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}
