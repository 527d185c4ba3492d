//! AWS SDK errors -> sealbox errors.
//!
//! The kind comes from the AWS error code where there is one, else from the HTTP status, else
//! from the failure class (timeout, connection). The AWS request id is kept on every error that
//! reached AWS, for support tickets. AWS error messages name resources, never secret values, so
//! they are kept in the message.

use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::operation::RequestId;
use sealbox::{Error, ErrorKind};

/// The raw HTTP response type both SDK clients use.
pub(crate) type HttpResponse = aws_sdk_secretsmanager::config::http::HttpResponse;

/// Where an error happened, for the message.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Call<'a> {
    /// `"Secrets Manager"` or `"KMS"`.
    pub service: &'static str,
    /// The API operation (`"GetSecretValue"`).
    pub operation: &'static str,
    /// The secret id or key id the call was about.
    pub target: &'a str,
}

/// The sealbox kind for an AWS error code (`ResourceNotFoundException`, ...), if it is one we
/// know. Codes come from both Secrets Manager and KMS, plus the common ones every AWS service
/// can return.
pub(crate) fn kind_for_code(code: &str) -> Option<ErrorKind> {
    Some(match code {
        "ResourceNotFoundException" | "NotFoundException" => ErrorKind::NotFound,
        "AccessDeniedException"
        | "AccessDenied"
        | "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "MissingAuthenticationToken"
        | "ExpiredTokenException"
        | "ExpiredToken"
        // Secrets Manager could not use the secret's KMS key; KMS: the key is disabled, pending
        // deletion or pending import. None of these heal by retrying.
        | "DecryptionFailure"
        | "EncryptionFailure"
        | "DisabledException"
        | "KMSInvalidStateException"
        | "KeyUnavailableException" => ErrorKind::AccessDenied,
        "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "ProvisionedThroughputExceededException"
        | "InternalServiceError"
        | "InternalFailure"
        | "InternalServerError"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "KMSInternalException"
        | "DependencyTimeoutException"
        | "RequestTimeout"
        | "RequestTimeoutException" => ErrorKind::Unavailable,
        "ResourceExistsException" | "AlreadyExistsException" => ErrorKind::AlreadyExists,
        "PreconditionNotMetException" | "ConcurrentModificationException" => ErrorKind::Conflict,
        "InvalidParameterException"
        | "InvalidRequestException"
        | "ValidationException"
        | "MalformedPolicyDocumentException"
        | "InvalidNextTokenException"
        | "InvalidArnException"
        | "InvalidKeyUsageException"
        | "InvalidGrantTokenException"
        | "SerializationException" => ErrorKind::InvalidInput,
        "InvalidCiphertextException" => ErrorKind::Integrity,
        "IncorrectKeyException" => ErrorKind::WrongKey,
        // Secrets Manager's LimitExceededException is a quota (too many versions or secrets),
        // KMS's is a request rate; both clear up later rather than by changing the input.
        "LimitExceededException" => ErrorKind::Unavailable,
        _ => return None,
    })
}

/// The sealbox kind for an HTTP status when the code is unknown.
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

/// A failed SDK call as a sealbox [`Error`], with the request id when AWS answered.
pub(crate) fn from_sdk<E>(call: Call<'_>, err: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let Call {
        service,
        operation,
        target,
    } = call;
    let request_id = err.request_id().map(str::to_owned);
    let status = err.raw_response().map(|r| r.status().as_u16());
    let (kind, message) = match &err {
        SdkError::ConstructionFailure(_) => (
            ErrorKind::Config,
            format!(
                "{service} {operation} for {target} could not be built: {}; check region, endpoint and credentials configuration",
                display_chain(&err)
            ),
        ),
        SdkError::TimeoutError(_) => (
            ErrorKind::Unavailable,
            format!(
                "{service} {operation} for {target} timed out (operation or attempt timeout); retry later or raise the timeout"
            ),
        ),
        SdkError::DispatchFailure(failure) => {
            let what = if failure.is_timeout() {
                "timed out connecting"
            } else if failure.is_io() {
                "could not connect"
            } else {
                "failed before a response"
            };
            // A missing or unusable credential surfaces here too: that is configuration.
            let kind = if failure.is_user() {
                ErrorKind::Config
            } else {
                ErrorKind::Unavailable
            };
            (
                kind,
                format!(
                    "{service} {operation} for {target} {what}: {}",
                    display_chain(&err)
                ),
            )
        }
        SdkError::ResponseError(_) => (
            status.map_or(ErrorKind::Unavailable, kind_for_status),
            format!(
                "{service} {operation} for {target}: the response could not be read (HTTP {})",
                status.map_or_else(|| "-".to_owned(), |s| s.to_string())
            ),
        ),
        SdkError::ServiceError(_) => {
            let code = err.code().unwrap_or("UnknownError");
            let kind = kind_for_code(code)
                .or_else(|| status.map(kind_for_status))
                .unwrap_or(ErrorKind::Internal);
            let aws_message = err.message().unwrap_or("no message");
            (
                kind,
                format!("{service} {operation} for {target} failed: {code}: {aws_message}"),
            )
        }
        _ => (
            ErrorKind::Unavailable,
            format!(
                "{service} {operation} for {target} failed: {}",
                display_chain(&err)
            ),
        ),
    };
    let mut out = Error::new(kind, message).with_source(err);
    if let Some(id) = request_id {
        out = out.with_request_id(id);
    }
    out
}

/// The same failure under another kind and message (a store's own wording), keeping the
/// request id.
pub(crate) fn rekind(err: &Error, kind: ErrorKind, message: String) -> Error {
    let out = Error::new(kind, message);
    match err.request_id() {
        Some(id) => out.with_request_id(id),
        None => out,
    }
}

/// The AWS error code of a service error, if the call reached AWS.
pub(crate) fn code<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Option<&str> {
    match err {
        SdkError::ServiceError(_) => err.code(),
        _ => None,
    }
}

/// The error and its causes, one line, without the SDK's debug dumps.
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

    #[test]
    fn codes_map_to_the_documented_kinds() {
        let cases = [
            ("ResourceNotFoundException", ErrorKind::NotFound),
            ("AccessDeniedException", ErrorKind::AccessDenied),
            ("UnrecognizedClientException", ErrorKind::AccessDenied),
            ("DisabledException", ErrorKind::AccessDenied),
            ("ThrottlingException", ErrorKind::Unavailable),
            ("InternalServiceError", ErrorKind::Unavailable),
            ("ResourceExistsException", ErrorKind::AlreadyExists),
            ("InvalidParameterException", ErrorKind::InvalidInput),
            ("InvalidRequestException", ErrorKind::InvalidInput),
            ("InvalidCiphertextException", ErrorKind::Integrity),
            ("IncorrectKeyException", ErrorKind::WrongKey),
        ];
        for (code, kind) in cases {
            assert_eq!(kind_for_code(code), Some(kind), "{code}");
        }
        assert_eq!(kind_for_code("SomethingNew"), None);
    }

    #[test]
    fn unknown_codes_fall_back_to_the_status() {
        assert_eq!(kind_for_status(403), ErrorKind::AccessDenied);
        assert_eq!(kind_for_status(404), ErrorKind::NotFound);
        assert_eq!(kind_for_status(429), ErrorKind::Unavailable);
        assert_eq!(kind_for_status(503), ErrorKind::Unavailable);
        assert_eq!(kind_for_status(400), ErrorKind::InvalidInput);
    }
}
