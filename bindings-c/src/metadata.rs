//! `sb_metadata`: what `sb_describe` tells about a secret, without its value.

use std::ffi::c_char;
use std::time::{SystemTime, UNIX_EPOCH};

use sealbox::store::{SecretMetadata, Stage};

use crate::boundary::{Failure, ffi_boundary, ffi_free_boundary};
use crate::client::{borrow_client, sb_client};
use crate::handle::{BoxedHandle, out_param, write_out};
use crate::params;
use crate::result::sb_result;

/// A secret's metadata (versions, the CURRENT version, update time), from `sb_describe`. Never holds
/// a value. Free it with `sb_metadata_free`.
#[derive(Debug)]
pub struct sb_metadata {
    _private: [u8; 0],
}

impl BoxedHandle for sb_metadata {
    type Rust = SecretMetadata;
}

/// Describes `name`. On success writes a new metadata handle to `*metadata_out`.
///
/// # Safety
/// `client` is NULL or live; `name` is NULL or NUL-terminated; `metadata_out` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_describe(
    client: *const sb_client,
    name: *const c_char,
    metadata_out: *mut *mut sb_metadata,
) -> sb_result {
    ffi_boundary("sb_describe", || {
        // SAFETY: NULL or live by contract.
        let client = unsafe { borrow_client(client) }?;
        // SAFETY: NULL or NUL-terminated by contract.
        let name = unsafe { params::utf8(name, "name") }?;
        let out = out_param(metadata_out, "metadata_out")?;
        let metadata = client.describe(name)?;
        // SAFETY: checked non-NULL, writable by contract.
        unsafe { write_out(out, sb_metadata::into_raw(metadata)) };
        Ok(())
    })
}

/// Writes the number of versions the store reports to `*count_out`.
///
/// # Safety
/// `metadata` is NULL or live; `count_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_metadata_version_count(
    metadata: *const sb_metadata,
    count_out: *mut usize,
) -> sb_result {
    ffi_boundary("sb_metadata_version_count", || {
        // SAFETY: NULL or live by contract.
        let md = unsafe { sb_metadata::borrow(metadata, "metadata") }?;
        let out = out_param(count_out, "count_out")?;
        // SAFETY: checked non-NULL, writable by contract.
        unsafe { write_out(out, md.versions.len()) };
        Ok(())
    })
}

/// Gives the id of version number `index` (0 = oldest) as `*id_out`/`*len_out` (UTF-8, not
/// NUL-terminated, valid until `sb_metadata_free`). `SB_RESULT_OUT_OF_RANGE` past the end.
///
/// # Safety
/// `metadata` is NULL or live; `id_out` and `len_out` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_metadata_version_at(
    metadata: *const sb_metadata,
    index: usize,
    id_out: *mut *const c_char,
    len_out: *mut usize,
) -> sb_result {
    ffi_boundary("sb_metadata_version_at", || {
        // SAFETY: NULL or live by contract.
        let md = unsafe { sb_metadata::borrow(metadata, "metadata") }?;
        let id_out = out_param(id_out, "id_out")?;
        let len_out = out_param(len_out, "len_out")?;
        let v = md.versions.get(index).ok_or_else(|| {
            Failure::new(
                sb_result::OutOfRange,
                format!("index {index} is past the {} versions", md.versions.len()),
            )
        })?;
        let id = v.version.as_str();
        // SAFETY: checked non-NULL, writable by contract.
        unsafe {
            write_out(id_out, id.as_ptr().cast::<c_char>());
            write_out(len_out, id.len());
        }
        Ok(())
    })
}

/// Gives the id of the version staged `CURRENT` as `*id_out`/`*len_out` (valid until
/// `sb_metadata_free`). `SB_RESULT_NOT_FOUND` when no version is current.
///
/// # Safety
/// `metadata` is NULL or live; `id_out` and `len_out` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_metadata_current_version(
    metadata: *const sb_metadata,
    id_out: *mut *const c_char,
    len_out: *mut usize,
) -> sb_result {
    ffi_boundary("sb_metadata_current_version", || {
        // SAFETY: NULL or live by contract.
        let md = unsafe { sb_metadata::borrow(metadata, "metadata") }?;
        let id_out = out_param(id_out, "id_out")?;
        let len_out = out_param(len_out, "len_out")?;
        let id = md.version_with_stage(&Stage::Current).ok_or_else(|| {
            Failure::new(
                sb_result::NotFound,
                format!("secret {} has no CURRENT version", md.name),
            )
        })?;
        // SAFETY: checked non-NULL, writable by contract.
        unsafe {
            write_out(id_out, id.as_str().as_ptr().cast::<c_char>());
            write_out(len_out, id.as_str().len());
        }
        Ok(())
    })
}

/// Writes the last write time as seconds since the Unix epoch to `*unix_seconds_out`.
/// `SB_RESULT_NOT_FOUND` when the store does not report it.
///
/// # Safety
/// `metadata` is NULL or live; `unix_seconds_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_metadata_updated(
    metadata: *const sb_metadata,
    unix_seconds_out: *mut i64,
) -> sb_result {
    ffi_boundary("sb_metadata_updated", || {
        // SAFETY: NULL or live by contract.
        let md = unsafe { sb_metadata::borrow(metadata, "metadata") }?;
        let out = out_param(unix_seconds_out, "unix_seconds_out")?;
        let updated = md.updated.ok_or_else(|| {
            Failure::new(
                sb_result::NotFound,
                format!("the store reports no update time for {}", md.name),
            )
        })?;
        // SAFETY: checked non-NULL, writable by contract.
        unsafe { write_out(out, unix_seconds(updated)) };
        Ok(())
    })
}

/// Seconds since the epoch, negative before it, saturating far outside `i64`.
pub(crate) fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// Frees metadata. NULL is accepted and ignored.
///
/// # Safety
/// `metadata` is NULL or live and not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_metadata_free(metadata: *mut sb_metadata) {
    ffi_free_boundary("sb_metadata_free", || {
        // SAFETY: NULL or live and never used again, by contract.
        unsafe { sb_metadata::free(metadata) }
    })
}
