//! The panic boundary and failure reporting shared by every `extern "C"` entry point.
//!
//! Each entry point's body is a closure returning `Result<(), Failure>`; [`ffi_boundary`] runs
//! it under `catch_unwind` (a Rust panic must never unwind into C, which is undefined
//! behaviour), records the message of a failure in the thread-local last error and returns the
//! code. Messages are built from parameter names, secret names and core error messages, which
//! by the core's contract never hold a secret value.

use std::borrow::Cow;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::last_error;
use crate::result::sb_result;

/// Why an entry point failed: a code and a message without secret content.
#[derive(Debug)]
pub(crate) struct Failure {
    code: sb_result,
    message: Cow<'static, str>,
    /// The request id of the failure's audit line (or provider), for
    /// `sb_last_error_request_id`.
    request_id: Option<String>,
}

impl Failure {
    /// A failure with an explicit code.
    pub(crate) fn new(code: sb_result, message: impl Into<Cow<'static, str>>) -> Failure {
        Failure {
            code,
            message: message.into(),
            request_id: None,
        }
    }

    /// A NULL pointer argument.
    pub(crate) fn null(param: &'static str) -> Failure {
        Failure::new(
            sb_result::NullParameter,
            format!("argument `{param}` is NULL"),
        )
    }

    /// A string argument that is not UTF-8.
    pub(crate) fn invalid_utf8(param: &'static str) -> Failure {
        Failure::new(
            sb_result::InvalidUtf8,
            format!("argument `{param}` is not valid UTF-8"),
        )
    }
}

impl From<sealbox::Error> for Failure {
    fn from(e: sealbox::Error) -> Failure {
        // The core's Display is "kind: message (request id ...)": no value by contract.
        Failure {
            request_id: e.request_id().map(str::to_owned),
            ..Failure::new(sb_result::from_kind(e.kind()), e.to_string())
        }
    }
}

/// Runs `body` behind the panic boundary. `function` names the entry point in messages.
pub(crate) fn ffi_boundary(
    function: &'static str,
    body: impl FnOnce() -> Result<(), Failure>,
) -> sb_result {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => sb_result::Ok,
        Ok(Err(failure)) => {
            last_error::set(function, &failure.message, failure.request_id.as_deref());
            failure.code
        }
        Err(_) => {
            last_error::set(
                function,
                "a panic was caught at the C boundary; this is a sealbox bug, please report it",
                None,
            );
            sb_result::Panic
        }
    }
}

/// Runs a `_free` body behind the panic boundary. Frees return nothing, so a caught panic
/// is only recorded in the last error.
pub(crate) fn ffi_free_boundary(function: &'static str, body: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(body)).is_err() {
        last_error::set(
            function,
            "a panic was caught at the C boundary while freeing; please report it",
            None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_the_panic_code_and_a_message() {
        let r = ffi_boundary("sb_test", || panic!("boom"));
        assert_eq!(r, sb_result::Panic);
        let msg = last_error::get();
        assert!(msg.starts_with("sb_test: a panic was caught"), "{msg}");
        assert!(
            !msg.contains("boom"),
            "panic payloads are not echoed: {msg}"
        );
    }

    #[test]
    fn a_failure_returns_its_code_and_records_its_message() {
        let r = ffi_boundary("sb_test", || Err(Failure::null("name")));
        assert_eq!(r, sb_result::NullParameter);
        assert_eq!(last_error::get(), "sb_test: argument `name` is NULL");
    }

    #[test]
    fn core_errors_map_by_kind() {
        let r = ffi_boundary("sb_test", || {
            Err(sealbox::Error::not_found("secret a/b does not exist").into())
        });
        assert_eq!(r, sb_result::NotFound);
        assert_eq!(
            last_error::get(),
            "sb_test: not_found: secret a/b does not exist"
        );
    }

    #[test]
    fn a_panicking_free_is_contained() {
        ffi_free_boundary("sb_test_free", || panic!("boom"));
        assert!(last_error::get().starts_with("sb_test_free: a panic was caught"));
    }
}
