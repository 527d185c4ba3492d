//! Google client errors -> sealbox errors.
//!
//! The kind comes from the `google.rpc.Status` code where the service answered, else from the
//! HTTP status, else from the failure class (timeout, connection, credentials). The request id
//! is GCP's `google.rpc.RequestInfo.request_id` when the error carries one. GCP's messages
//! name resources, never payloads, so they are kept.

use google_cloud_gax::error::Error as GaxError;
use google_cloud_gax::error::rpc::{Code, StatusDetails};
use sealbox::{Error, ErrorKind};

/// The sealbox kind of a `google.rpc.Code`.
pub(crate) fn kind_for_code(code: Code) -> ErrorKind {
    match code {
        Code::NotFound => ErrorKind::NotFound,
        Code::AlreadyExists => ErrorKind::AlreadyExists,
        Code::PermissionDenied | Code::Unauthenticated => ErrorKind::AccessDenied,
        // GCP answers a failed etag check and access to a disabled version with
        // FAILED_PRECONDITION; the store rewords both where they mean something else.
        Code::FailedPrecondition | Code::Aborted => ErrorKind::Conflict,
        Code::InvalidArgument | Code::OutOfRange => ErrorKind::InvalidInput,
        Code::Unimplemented => ErrorKind::Unsupported,
        Code::DataLoss => ErrorKind::Integrity,
        Code::ResourceExhausted
        | Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Internal
        | Code::Cancelled
        | Code::Unknown => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    }
}

/// The sealbox kind of an HTTP status when there is no `google.rpc.Status`.
pub(crate) fn kind_for_status(status: u16) -> ErrorKind {
    match status {
        401 | 403 => ErrorKind::AccessDenied,
        404 => ErrorKind::NotFound,
        409 | 412 => ErrorKind::Conflict,
        408 | 429 | 500..=599 => ErrorKind::Unavailable,
        400..=499 => ErrorKind::InvalidInput,
        _ => ErrorKind::Unavailable,
    }
}

/// What a failed call was: `AccessSecretVersion` on `projects/p/secrets/x/versions/current`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Call<'a> {
    pub operation: &'static str,
    pub target: &'a str,
}

/// The `google.rpc.Code` of a service error.
pub(crate) fn code(err: &GaxError) -> Option<Code> {
    err.status().map(|s| s.code)
}

/// GCP's request id in the error's details, if the service sent one.
pub(crate) fn request_id(err: &GaxError) -> Option<String> {
    err.status()?.details.iter().find_map(|d| match d {
        StatusDetails::RequestInfo(info) if !info.request_id.is_empty() => {
            Some(info.request_id.clone())
        }
        _ => None,
    })
}

/// A failed client call as a sealbox [`Error`].
pub(crate) fn from_gax(call: Call<'_>, err: GaxError) -> Error {
    let Call { operation, target } = call;
    let id = request_id(&err);
    let (kind, message) = if let Some(status) = err.status() {
        (
            kind_for_code(status.code),
            format!(
                "GCP Secret Manager {operation} for {target} failed: {}: {}",
                status.code.name(),
                status.message
            ),
        )
    } else if err.is_authentication() {
        (
            ErrorKind::AccessDenied,
            format!(
                "GCP Secret Manager {operation} for {target}: no usable credentials ({}); check \
                 credentials_file, application default credentials or impersonation",
                display_chain(&err)
            ),
        )
    } else if err.is_timeout() {
        (
            ErrorKind::Unavailable,
            format!(
                "GCP Secret Manager {operation} for {target} timed out; retry later or raise \
                 the timeout"
            ),
        )
    } else if err.is_exhausted() {
        (
            ErrorKind::Unavailable,
            format!(
                "GCP Secret Manager {operation} for {target} failed after the retry policy gave \
                 up: {}",
                display_chain(&err)
            ),
        )
    } else if let Some(status) = err.http_status_code() {
        (
            kind_for_status(status),
            format!("GCP Secret Manager {operation} for {target} failed with HTTP {status}"),
        )
    } else if err.is_binding() || err.is_serialization() {
        (
            ErrorKind::InvalidInput,
            format!(
                "GCP Secret Manager {operation} for {target} could not be sent: {}",
                display_chain(&err)
            ),
        )
    } else {
        (
            ErrorKind::Unavailable,
            format!(
                "GCP Secret Manager {operation} for {target} failed: {}",
                display_chain(&err)
            ),
        )
    };
    let out = Error::new(kind, message).with_source(err);
    match id {
        Some(id) => out.with_request_id(id),
        None => out,
    }
}

/// The same failure under another kind and message, keeping the request id.
pub(crate) fn rekind(err: &Error, kind: ErrorKind, message: String) -> Error {
    let out = Error::new(kind, message);
    match err.provider_request_id() {
        Some(id) => out.with_request_id(id),
        None => out,
    }
}

/// The error and its causes on one line.
fn display_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use google_cloud_gax::error::rpc::Status;

    #[test]
    fn codes_map_to_the_documented_kinds() {
        for (code, kind) in [
            (Code::NotFound, ErrorKind::NotFound),
            (Code::AlreadyExists, ErrorKind::AlreadyExists),
            (Code::PermissionDenied, ErrorKind::AccessDenied),
            (Code::Unauthenticated, ErrorKind::AccessDenied),
            (Code::FailedPrecondition, ErrorKind::Conflict),
            (Code::InvalidArgument, ErrorKind::InvalidInput),
            (Code::ResourceExhausted, ErrorKind::Unavailable),
            (Code::Unavailable, ErrorKind::Unavailable),
            (Code::DataLoss, ErrorKind::Integrity),
        ] {
            assert_eq!(kind_for_code(code), kind, "{code:?}");
        }
        assert_eq!(kind_for_status(429), ErrorKind::Unavailable);
        assert_eq!(kind_for_status(403), ErrorKind::AccessDenied);
    }

    #[test]
    fn service_errors_keep_the_request_id_and_the_message() {
        let info = google_cloud_rpc::model::RequestInfo::default().set_request_id("req-42");
        let status = Status::default()
            .set_code(Code::NotFound)
            .set_message("Secret [projects/1/secrets/x] not found or has no versions.")
            .set_details([StatusDetails::RequestInfo(info)]);
        let err = from_gax(
            Call {
                operation: "GetSecret",
                target: "x",
            },
            GaxError::service(status),
        );
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(err.provider_request_id(), Some("req-42"));
        assert!(err.message().contains("NOT_FOUND"), "{err}");
        assert!(
            err.message().contains("not found or has no versions"),
            "{err}"
        );
    }
}
