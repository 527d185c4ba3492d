//! `sb_secret`: a secret value handed to C, its views and its wiping free.

use std::ffi::c_char;

use sealbox::client::SecretHandle;
use sealbox::store::VersionId;
use sealbox::{ExposeSecret, SecretString};

use crate::boundary::{ffi_boundary, ffi_free_boundary};
use crate::handle::{BoxedHandle, out_param, write_out};
use crate::result::sb_result;

/// A secret value (locked memory, wiped when freed) and the version it came from.
///
/// Returned by `sb_get`, `sb_get_version`, `sb_get_stage` and `sb_get_field`; read it with
/// `sb_secret_data` and `sb_secret_version`; release it with `sb_secret_free`. A secret is
/// independent of the client that returned it: it stays readable after `sb_client_free`
/// until it is freed itself. A secret may be read from several threads at once; freeing it
/// while another thread reads it is undefined behaviour.
#[derive(Debug)]
pub struct sb_secret {
    _private: [u8; 0],
}

/// What an `sb_secret` holds. The common case, a whole version, is one pointer (an `Arc`
/// shared with the cache), so the handle's allocation on the hot path stays small.
#[derive(Debug)]
pub(crate) enum SecretValue {
    /// A whole secret version, as the client returned it.
    Whole(SecretHandle),
    /// One JSON field of a version.
    Field(Box<FieldValue>),
}

/// One JSON field of a version and the version it came from.
#[derive(Debug)]
pub(crate) struct FieldValue {
    pub(crate) value: SecretString,
    pub(crate) version: VersionId,
}

impl SecretValue {
    fn bytes(&self) -> &[u8] {
        match self {
            SecretValue::Whole(h) => h.expose_secret(),
            SecretValue::Field(f) => f.value.expose_secret().as_bytes(),
        }
    }

    fn version(&self) -> &str {
        match self {
            SecretValue::Whole(h) => h.version().as_str(),
            SecretValue::Field(f) => f.version.as_str(),
        }
    }
}

impl BoxedHandle for sb_secret {
    type Rust = SecretValue;
}

/// Gives a view of the secret's bytes: `*data_out` points to `*len_out` bytes in locked
/// memory, valid until `sb_secret_free(secret)`. The bytes are not NUL-terminated and may
/// contain NUL. Do not copy them further than you must; never write through the pointer.
///
/// # Safety
/// `secret` is NULL or a live secret; `data_out` and `len_out` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_secret_data(
    secret: *const sb_secret,
    data_out: *mut *const u8,
    len_out: *mut usize,
) -> sb_result {
    ffi_boundary("sb_secret_data", || {
        // SAFETY: `secret` is NULL or live by this function's contract.
        let value = unsafe { sb_secret::borrow(secret, "secret") }?;
        let data_out = out_param(data_out, "data_out")?;
        let len_out = out_param(len_out, "len_out")?;
        let bytes = value.bytes();
        // SAFETY: both outputs were checked non-NULL and are writable by contract.
        unsafe {
            write_out(data_out, bytes.as_ptr());
            write_out(len_out, bytes.len());
        }
        Ok(())
    })
}

/// Gives a view of the secret's version id (a store-specific string such as `"3"`):
/// `*version_out` points to `*len_out` bytes of UTF-8, not NUL-terminated, valid until
/// `sb_secret_free(secret)`.
///
/// # Safety
/// `secret` is NULL or a live secret; `version_out` and `len_out` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_secret_version(
    secret: *const sb_secret,
    version_out: *mut *const c_char,
    len_out: *mut usize,
) -> sb_result {
    ffi_boundary("sb_secret_version", || {
        // SAFETY: `secret` is NULL or live by this function's contract.
        let value = unsafe { sb_secret::borrow(secret, "secret") }?;
        let version_out = out_param(version_out, "version_out")?;
        let len_out = out_param(len_out, "len_out")?;
        let version = value.version();
        // SAFETY: both outputs were checked non-NULL and are writable by contract.
        unsafe {
            write_out(version_out, version.as_ptr().cast::<c_char>());
            write_out(len_out, version.len());
        }
        Ok(())
    })
}

/// Releases a secret and wipes its bytes (when no cache entry shares them; the client's cache
/// wipes its own copy on eviction). Every view from `sb_secret_data` and `sb_secret_version`
/// becomes invalid. NULL is accepted and ignored.
///
/// # Safety
/// `secret` is NULL or a live secret that is not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_secret_free(secret: *mut sb_secret) {
    ffi_free_boundary("sb_secret_free", || {
        // SAFETY: NULL or live and never used again, by this function's contract.
        unsafe { sb_secret::free(secret) }
    })
}
