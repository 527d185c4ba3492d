//! `sb_list_iter`: the names under a prefix, one at a time.

use std::ffi::c_char;

use sealbox::store::ListEntry;

use crate::boundary::{ffi_boundary, ffi_free_boundary};
use crate::client::{borrow_client, sb_client};
use crate::handle::{BoxedHandle, out_param, write_out};
use crate::params;
use crate::result::sb_result;

/// An iterator over secret names, from `sb_list`. Not thread-safe: use it from one thread at
/// a time. Free it with `sb_list_free`.
#[derive(Debug)]
pub struct sb_list_iter {
    _private: [u8; 0],
}

/// The listed entries (all pages, fetched by `sb_list`) and the position of the next one.
#[derive(Debug)]
pub(crate) struct ListIter {
    entries: Vec<ListEntry>,
    next: usize,
}

impl BoxedHandle for sb_list_iter {
    type Rust = ListIter;
}

/// Lists every secret whose name starts with `prefix` (`""` for all), sorted by name where the
/// store sorts. On success writes a new iterator to `*iter_out`; read it with `sb_list_next`.
///
/// # Safety
/// `client` is NULL or live; `prefix` is NULL or NUL-terminated; `iter_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_list(
    client: *const sb_client,
    prefix: *const c_char,
    iter_out: *mut *mut sb_list_iter,
) -> sb_result {
    ffi_boundary("sb_list", || {
        // SAFETY: NULL or live by contract.
        let client = unsafe { borrow_client(client) }?;
        // SAFETY: NULL or NUL-terminated by contract.
        let prefix = unsafe { params::utf8(prefix, "prefix") }?;
        let out = out_param(iter_out, "iter_out")?;
        let entries = client.list(prefix)?;
        // SAFETY: checked non-NULL, writable by contract.
        unsafe { write_out(out, sb_list_iter::into_raw(ListIter { entries, next: 0 })) };
        Ok(())
    })
}

/// Advances the iterator. Returns `SB_RESULT_OK` and writes the next name to
/// `*name_out`/`*len_out` (UTF-8, not NUL-terminated, valid until `sb_list_free(iter)`), or
/// returns `SB_RESULT_DONE` and writes nothing when no name is left.
///
/// # Safety
/// `iter` is NULL or a live iterator not used by another thread; `name_out` and `len_out` are
/// NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_list_next(
    iter: *mut sb_list_iter,
    name_out: *mut *const c_char,
    len_out: *mut usize,
) -> sb_result {
    let mut done = false;
    let r = ffi_boundary("sb_list_next", || {
        // SAFETY: NULL or live and unshared by contract.
        let iter = unsafe { sb_list_iter::borrow_mut(iter, "iter") }?;
        let name_out = out_param(name_out, "name_out")?;
        let len_out = out_param(len_out, "len_out")?;
        let Some(entry) = iter.entries.get(iter.next) else {
            done = true;
            return Ok(());
        };
        iter.next += 1;
        let name = entry.name.as_str();
        // SAFETY: checked non-NULL, writable by contract.
        unsafe {
            write_out(name_out, name.as_ptr().cast::<c_char>());
            write_out(len_out, name.len());
        }
        Ok(())
    });
    if done { sb_result::Done } else { r }
}

/// Frees an iterator and the names it handed out. NULL is accepted and ignored.
///
/// # Safety
/// `iter` is NULL or a live iterator that is not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_list_free(iter: *mut sb_list_iter) {
    ffi_free_boundary("sb_list_free", || {
        // SAFETY: NULL or live and never used again, by contract.
        unsafe { sb_list_iter::free(iter) }
    })
}
