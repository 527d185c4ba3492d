//! `sb_secret`: a secret value handed to C, its views and its wiping free.

use std::ffi::c_char;
use std::ptr::NonNull;

use sealbox::client::RawSecretHandle;
use sealbox::{ExposeSecret, SecretHandle};

use crate::boundary::{Failure, ffi_boundary, ffi_free_boundary};
use crate::handle::{out_param, write_out};
use crate::result::sb_result;

/// A secret value (locked memory, wiped when freed) and the version it came from.
///
/// Returned by `sb_get`, `sb_get_version`, `sb_get_stage`, `sb_get_field` and
/// `sb_get_fields`; read it with `sb_secret_data` and `sb_secret_version`; release it with
/// `sb_secret_free`. A secret is independent of the client that returned it: it stays
/// readable after `sb_client_free` until it is freed itself. A secret may be read from
/// several threads at once; freeing it while another thread reads it is undefined behaviour.
#[derive(Debug)]
pub struct sb_secret {
    _private: [u8; 0],
}

// An `sb_secret*` is the core's own `SecretHandle::into_raw` pointer (the `Arc` the cache
// shares), not a box around a handle: a cache hit through C then costs what it costs in Rust,
// one reference-count increment, and no allocation.
impl sb_secret {
    /// Hands a secret to C.
    pub(crate) fn into_raw(handle: SecretHandle) -> *mut sb_secret {
        handle.into_raw().cast_mut().cast::<sb_secret>()
    }

    /// Runs `f` on the secret behind `ptr`, answering NULL with `SB_RESULT_NULL_PARAMETER`.
    ///
    /// # Safety
    /// `ptr` is NULL or came from [`sb_secret::into_raw`] and is not freed while `f` runs.
    unsafe fn with<R>(
        ptr: *const sb_secret,
        f: impl FnOnce(&SecretHandle) -> R,
    ) -> Result<R, Failure> {
        let ptr = NonNull::new(ptr.cast_mut()).ok_or_else(|| Failure::null("secret"))?;
        // SAFETY: by the caller's contract the pointer came from `SecretHandle::into_raw`
        // and stays live while `f` runs.
        Ok(unsafe { SecretHandle::with_raw(ptr.as_ptr().cast::<RawSecretHandle>(), f) })
    }

    /// Takes the secret back from C and drops it; NULL is a no-op.
    ///
    /// # Safety
    /// `ptr` is NULL or came from [`sb_secret::into_raw`] and is not used again.
    unsafe fn free(ptr: *mut sb_secret) {
        if !ptr.is_null() {
            // SAFETY: the pointer came from `SecretHandle::into_raw` and C gives up its
            // ownership here, once.
            drop(unsafe { SecretHandle::from_raw(ptr.cast_const().cast::<RawSecretHandle>()) });
        }
    }
}

/// Gives a view of the secret's bytes: `*data_out` points to `*len_out` bytes in locked
/// memory, valid until `sb_secret_free(secret)`. The bytes are not NUL-terminated and may
/// contain NUL. Do not copy them further than you must; never write through the pointer.
/// In a process forked after the secret was read, where its memory is wiped, this fails with
/// `SB_RESULT_FORKED`: read it again through a client of that process (`sb_client_reopen`).
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
        let data_out = out_param(data_out, "data_out")?;
        let len_out = out_param(len_out, "len_out")?;
        // The bytes live in the handle's shared allocation, not in the borrow, so the pointer
        // stays valid after `with` returns, until the secret is freed.
        // SAFETY: `secret` is NULL or live by this function's contract.
        let (ptr, len) = unsafe {
            sb_secret::with(secret, |h| {
                // In a forked child the bytes are wiped: never hand them out as the value.
                h.check_process()?;
                let bytes = h.expose_secret();
                Ok::<_, sealbox::Error>((bytes.as_ptr(), bytes.len()))
            })
        }??;
        // SAFETY: both outputs were checked non-NULL and are writable by contract.
        unsafe {
            write_out(data_out, ptr);
            write_out(len_out, len);
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
        let version_out = out_param(version_out, "version_out")?;
        let len_out = out_param(len_out, "len_out")?;
        // As in `sb_secret_data`: the version id lives in the shared version metadata.
        // SAFETY: `secret` is NULL or live by this function's contract.
        let (ptr, len) = unsafe {
            sb_secret::with(secret, |h| {
                let v = h.version().as_str();
                (v.as_ptr(), v.len())
            })
        }?;
        // SAFETY: both outputs were checked non-NULL and are writable by contract.
        unsafe {
            write_out(version_out, ptr.cast::<c_char>());
            write_out(len_out, len);
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
