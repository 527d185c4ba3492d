//! vaultrs errors -> sealbox errors.
//!
//! The kind comes from the HTTP status Vault answered with (and, for a 400, from Vault's text:
//! a failed check-and-set is a `Conflict`), else from the failure class (connection, TLS,
//! timeout: `Unavailable`). Vault's error texts name paths and reasons, never values, so they
//! are kept. Vault's error bodies carry no request id; a response that has one (every
//! successful JSON answer) is where [`request_id`] finds it.

use sealbox::{Error, ErrorKind};
use vaultrs::error::ClientError;

/// What a failed call was: `read` on `secret/data/predis/db`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Call<'a> {
    pub operation: &'static str,
    pub target: &'a str,
}

/// The HTTP status of an answer Vault gave, if it gave one.
pub(crate) fn status(err: &ClientError) -> Option<u16> {
    match err {
        ClientError::APIError { code, .. } => Some(*code),
        ClientError::RestClientError {
            source: rustify::errors::ClientError::ServerResponseError { code, .. },
        } => Some(*code),
        _ => None,
    }
}

/// Vault's error texts (`"permission denied"`, `"check-and-set parameter did not match the
/// current version"`).
pub(crate) fn texts(err: &ClientError) -> &[String] {
    match err {
        ClientError::APIError { errors, .. } => errors,
        _ => &[],
    }
}

/// Whether the error is a failed check-and-set (`cas`) on a KV v2 write.
pub(crate) fn is_cas_mismatch(err: &ClientError) -> bool {
    status(err) == Some(400) && texts(err).iter().any(|t| t.contains("check-and-set"))
}

/// Whether Vault refused the token (revoked, expired, or not allowed on this path).
pub(crate) fn is_denied(err: &ClientError) -> bool {
    status(err) == Some(403)
}

/// The sealbox kind of an HTTP status from Vault.
pub(crate) fn kind_for_status(status: u16) -> ErrorKind {
    match status {
        400 | 422 => ErrorKind::InvalidInput,
        401 | 403 => ErrorKind::AccessDenied,
        404 => ErrorKind::NotFound,
        405 => ErrorKind::Unsupported,
        409 | 412 => ErrorKind::Conflict,
        // 429 rate limited, 473 performance standby, 5xx (503: sealed or standby).
        408 | 429 | 473 | 500..=599 => ErrorKind::Unavailable,
        _ => ErrorKind::Unavailable,
    }
}

/// A failed vaultrs call as a sealbox [`Error`].
pub(crate) fn from_client(call: Call<'_>, err: ClientError) -> Error {
    let Call { operation, target } = call;
    let (kind, message) = match &err {
        ClientError::APIError { code, errors } => {
            let kind = if is_cas_mismatch(&err) {
                ErrorKind::Conflict
            } else {
                kind_for_status(*code)
            };
            let text = if errors.is_empty() {
                String::from("(no error text)")
            } else {
                errors.join("; ")
            };
            let hint = match *code {
                503 => "; Vault is sealed, in standby or down: unseal it or retry later",
                403 => "; check the token's policies for this path (see the provider README)",
                _ => "",
            };
            (
                kind,
                format!("Vault {operation} on {target} failed with HTTP {code}: {text}{hint}"),
            )
        }
        _ => match status(&err) {
            Some(code) => (
                kind_for_status(code),
                format!("Vault {operation} on {target} failed with HTTP {code}"),
            ),
            None => (
                ErrorKind::Unavailable,
                format!(
                    "Vault {operation} on {target} failed: {}; check the address, TLS settings \
                     and that Vault is up",
                    display_chain(&err)
                ),
            ),
        },
    };
    Error::new(kind, message).with_source(Redacted(display_chain(&err)))
}

/// The same failure under another kind and message, keeping the request id.
pub(crate) fn rekind(err: &Error, kind: ErrorKind, message: String) -> Error {
    let out = Error::new(kind, message);
    match err.provider_request_id() {
        Some(id) => out.with_request_id(id),
        None => out,
    }
}

/// The error and its causes on one line. Neither vaultrs nor reqwest put request or response
/// bodies into their `Display` text, so no value can reach it.
pub(crate) fn display_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A source kept as text: vaultrs's `ServerResponseError` holds the raw response body, which
/// for a read of a deleted version is Vault's JSON (metadata only, but a source's `Debug` must
/// never risk showing a body).
#[derive(Debug)]
struct Redacted(String);

impl std::fmt::Display for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Redacted {}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, text: &str) -> ClientError {
        ClientError::APIError {
            code,
            errors: vec![text.to_owned()],
        }
    }

    #[test]
    fn statuses_map_to_the_documented_kinds() {
        for (code, kind) in [
            (400, ErrorKind::InvalidInput),
            (403, ErrorKind::AccessDenied),
            (404, ErrorKind::NotFound),
            (405, ErrorKind::Unsupported),
            (429, ErrorKind::Unavailable),
            (500, ErrorKind::Unavailable),
            (503, ErrorKind::Unavailable),
        ] {
            assert_eq!(kind_for_status(code), kind, "{code}");
        }
    }

    #[test]
    fn a_failed_check_and_set_is_a_conflict_with_vaults_text() {
        let err = from_client(
            Call {
                operation: "write",
                target: "secret/data/x",
            },
            api(
                400,
                "check-and-set parameter did not match the current version",
            ),
        );
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert!(err.message().contains("check-and-set"), "{err}");
        assert!(err.message().contains("secret/data/x"), "{err}");
    }

    #[test]
    fn a_sealed_vault_is_unavailable_and_says_so() {
        let err = from_client(
            Call {
                operation: "read",
                target: "secret/data/x",
            },
            api(503, "Vault is sealed"),
        );
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert!(err.message().contains("Vault is sealed"), "{err}");
    }
}
