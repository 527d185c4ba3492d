//! The C ABI of sealbox: opaque handles, `sb_result` codes and `(pointer, length)` views.
//!
//! C and C++ programs use it through `include/sealbox.h` (generated from this crate by
//! cbindgen) and `include/sealbox.hpp` (a header-only C++17 RAII wrapper).
//!
//! Conventions, for every function:
//! - every fallible function returns an [`sb_result`]; outputs are the last parameters and are
//!   written only on success;
//! - a buffer pointer is always followed by its length; input strings (names, paths) are
//!   NUL-terminated, output strings are `(pointer, length)` views that are not;
//! - every `_free` accepts NULL; freeing a secret wipes it;
//! - every entry point runs behind a panic boundary: a panic becomes `SB_RESULT_PANIC`;
//! - NULL pointers are answered with `SB_RESULT_NULL_PARAMETER`, string arguments that are not
//!   UTF-8 with `SB_RESULT_INVALID_UTF8`;
//! - a failure's message is kept per thread for `sb_last_error_message`; it never contains a
//!   secret value; `sb_last_error_request_id` gives the request id of the audit line that
//!   recorded the failure;
//! - an `sb_client` is thread-safe; secrets outlive the client that returned them;
//! - a client and its secrets belong to the process that opened it: in a forked child they
//!   answer `SB_RESULT_FORKED`, and `sb_client_reopen` gives the child a client of its own.
#![allow(non_camel_case_types)]

mod boundary;
mod client;
mod handle;
mod last_error;
mod list;
mod metadata;
mod metrics;
mod params;
mod process;
mod providers;
mod result;
mod rotation;
mod secret;

use std::ffi::c_char;

pub use client::{
    sb_audit_flush, sb_client, sb_client_free, sb_client_open, sb_client_open_local,
    sb_client_open_memory, sb_client_reopen, sb_delete, sb_get, sb_get_field, sb_get_fields,
    sb_get_n, sb_get_stage, sb_get_version, sb_put, sb_put_stage, sb_refresh_now,
};
pub use last_error::{sb_last_error_message, sb_last_error_request_id};
pub use list::{sb_list, sb_list_free, sb_list_iter, sb_list_next};
pub use metadata::{
    sb_describe, sb_metadata, sb_metadata_current_version, sb_metadata_free, sb_metadata_updated,
    sb_metadata_version_at, sb_metadata_version_count,
};
pub use metrics::{sb_memory_lock_failures, sb_metrics_prometheus};
pub use process::sb_harden_process;
pub use result::{sb_result, sb_result_name};
pub use rotation::{
    sb_rollback, sb_rotate, sb_rotation_state_failures, sb_rotation_state_free,
    sb_rotation_state_last_failure, sb_rotation_state_last_rotated, sb_rotation_state_pending,
    sb_rotation_status,
};
pub use secret::{sb_secret, sb_secret_data, sb_secret_free, sb_secret_version};

/// Major version of this library (checked against Cargo.toml by a test).
pub const SB_VERSION_MAJOR: u32 = 0;
/// Minor version of this library.
pub const SB_VERSION_MINOR: u32 = 1;
/// Patch version of this library.
pub const SB_VERSION_PATCH: u32 = 0;

/// The library version as a static NUL-terminated string (`"0.1.0"`), for checking at run
/// time that the loaded library matches the header (`SB_VERSION_MAJOR`, ...). Never free it.
#[unsafe(no_mangle)]
pub extern "C" fn sb_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_defines_match_cargo_toml() {
        assert_eq!(
            SB_VERSION_MAJOR.to_string(),
            env!("CARGO_PKG_VERSION_MAJOR")
        );
        assert_eq!(
            SB_VERSION_MINOR.to_string(),
            env!("CARGO_PKG_VERSION_MINOR")
        );
        assert_eq!(
            SB_VERSION_PATCH.to_string(),
            env!("CARGO_PKG_VERSION_PATCH")
        );
        // SAFETY: sb_version returns a static NUL-terminated string.
        let v = unsafe { std::ffi::CStr::from_ptr(sb_version()) };
        assert_eq!(v.to_str().ok(), Some(env!("CARGO_PKG_VERSION")));
    }
}
