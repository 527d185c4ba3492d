//! Azure SDK errors -> sealbox errors.
//!
//! The kind comes from the HTTP status where the service answered (and Key Vault's error code
//! where the status alone is ambiguous), else from the failure class (credential, connection,
//! timeout). The request id is the response's `x-ms-request-id`. Key Vault's messages name
//! objects, never values, so they are kept.

use azure_core::error::ErrorKind as AzKind;
use azure_core::http::headers::HeaderName;
use sealbox::{Error, ErrorKind};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-request-id");

/// The sealbox kind of an HTTP status from Key Vault.
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

/// What a failed call was: `GetSecret` on `predis--prod--db`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Call<'a> {
    pub operation: &'static str,
    pub target: &'a str,
}

/// The parts of a service answer: status, Key Vault error code (inner code when there is
/// one), message, request id.
pub(crate) struct Answer {
    pub status: u16,
    pub code: Option<String>,
    pub inner: Option<String>,
    pub message: Option<String>,
    pub request_id: Option<String>,
}

/// The service's answer inside an SDK error, if the service answered.
pub(crate) fn answer(err: &azure_core::Error) -> Option<Answer> {
    let AzKind::HttpResponse {
        status,
        error_code,
        raw_response,
    } = err.kind()
    else {
        return None;
    };
    let mut out = Answer {
        status: u16::from(*status),
        code: error_code.clone(),
        inner: None,
        message: None,
        request_id: None,
    };
    if let Some(raw) = raw_response {
        out.request_id = raw.headers().get_optional_string(&REQUEST_ID);
        if let Ok(body) = serde_json::from_slice::<serde_json::Value>(raw.body().as_ref()) {
            let e = &body["error"];
            if let Some(c) = e["code"].as_str() {
                out.code = Some(c.to_owned());
            }
            out.inner = e["innererror"]["code"].as_str().map(str::to_owned);
            out.message = e["message"].as_str().map(str::to_owned);
        }
    }
    Some(out)
}

/// A failed SDK call as a sealbox [`Error`].
pub(crate) fn from_azure(call: Call<'_>, err: azure_core::Error) -> Error {
    let Call { operation, target } = call;
    let (kind, message, id) = if let Some(a) = answer(&err) {
        let code = a
            .inner
            .as_deref()
            .or(a.code.as_deref())
            .unwrap_or("no code");
        let hint = match a.status {
            401 => "; the token was refused: check the credential and its tenant",
            403 => {
                "; the identity lacks a data-plane role (Key Vault Secrets User to read, Key \
                 Vault Secrets Officer to write) or the vault's firewall refused it"
            }
            429 => "; Key Vault throttled the vault after retries: slow down or cache more",
            _ => "",
        };
        (
            kind_for_status(a.status),
            format!(
                "Azure Key Vault {operation} for {target} failed: HTTP {} {code}: {}{hint}",
                a.status,
                a.message.as_deref().unwrap_or("(no message)"),
            ),
            a.request_id,
        )
    } else {
        let (kind, what) = match err.kind() {
            AzKind::Credential => (
                ErrorKind::AccessDenied,
                "no token from the configured credential",
            ),
            AzKind::Connection | AzKind::Io => (
                ErrorKind::Unavailable,
                "the vault could not be reached or did not answer in time",
            ),
            AzKind::DataConversion => (
                ErrorKind::Unavailable,
                "the answer could not be read (truncated or not Key Vault's JSON)",
            ),
            _ => (ErrorKind::Unavailable, "the call failed"),
        };
        (
            kind,
            format!(
                "Azure Key Vault {operation} for {target}: {what}: {}",
                display_chain(&err)
            ),
            None,
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
        let next = s.to_string();
        if !out.contains(&next) {
            out.push_str(": ");
            out.push_str(&next);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_the_documented_kinds() {
        for (status, kind) in [
            (401, ErrorKind::AccessDenied),
            (403, ErrorKind::AccessDenied),
            (404, ErrorKind::NotFound),
            (409, ErrorKind::Conflict),
            (400, ErrorKind::InvalidInput),
            (429, ErrorKind::Unavailable),
            (503, ErrorKind::Unavailable),
        ] {
            assert_eq!(kind_for_status(status), kind, "{status}");
        }
    }
}
