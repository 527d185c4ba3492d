//! One error type for all of sealbox.
//!
//! An [`Error`] has a [`kind`](Error::kind) that callers and bindings branch on, and a message
//! that says what happened and what to do next. No error ever carries a secret value or key
//! material: constructors take `&'static str` or text the caller builds from names, ids and
//! counts, never from secret bytes. Sources are kept for diagnostics (`std::error::Error::source`).

use std::fmt;

/// What went wrong, as a closed set that bindings map to their own exception or code types.
///
/// The integrity-related kinds are deliberately distinct so an operator can tell a wrong key
/// from tampering from a truncated file from a newer format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The secret, version, stage or key does not exist.
    NotFound,
    /// The name already exists where a new one was required.
    AlreadyExists,
    /// A compare-and-set saw a different current version, or another writer won a race.
    Conflict,
    /// The access policy, the store or the provider refused the principal.
    AccessDenied,
    /// The store or key provider could not be reached or failed transiently (timeouts, 5xx,
    /// throttling after retries). Retrying later may succeed.
    Unavailable,
    /// Authentication of ciphertext failed: the data was tampered with, moved to another
    /// name/version, or corrupted.
    Integrity,
    /// The key presented is not the key the data was sealed with (e.g. a wrong master key).
    WrongKey,
    /// Input ended early: a truncated envelope, file or record.
    Truncated,
    /// A format, schema or algorithm version this build does not understand.
    UnsupportedVersion,
    /// The key version needed is older than the configured `min_decryption_version`.
    KeyRetired,
    /// The key material was destroyed (crypto-shredding): the data can never be read again.
    KeyDestroyed,
    /// An argument was malformed: a bad secret name, an empty value where one is required,
    /// invalid UTF-8, a JSON field that is missing or not a string.
    InvalidInput,
    /// Configuration is malformed, incomplete or refers to something unknown.
    Config,
    /// The store or build does not support this operation (see its capabilities).
    Unsupported,
    /// Locked memory could not be obtained and the memory policy is `Strict`.
    MemoryLock,
    /// A local I/O operation failed (file permissions, disk full, ...).
    Io,
    /// The object was made before `fork()` and used in the child, where its secrets and keys
    /// are wiped and its threads do not exist. Reopen it in the child
    /// ([`Sealbox::reopen`](crate::Sealbox::reopen)) or open it after the fork.
    Forked,
    /// An invariant inside sealbox broke; please report it.
    Internal,
    /// A key reached its limit of encryptions (its persisted use count) and could not be
    /// rotated automatically (automatic rotation is off, or the secret has more versions than
    /// a fresh key may encrypt). Rotate the key (`sealbox keys rotate`) or raise the limit.
    KeyExhausted,
}

impl ErrorKind {
    /// A short, stable, lowercase identifier (`"not_found"`), used in audit events, metrics
    /// labels and binding error names.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::Conflict => "conflict",
            ErrorKind::AccessDenied => "access_denied",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Integrity => "integrity",
            ErrorKind::WrongKey => "wrong_key",
            ErrorKind::Truncated => "truncated",
            ErrorKind::UnsupportedVersion => "unsupported_version",
            ErrorKind::KeyRetired => "key_retired",
            ErrorKind::KeyDestroyed => "key_destroyed",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Config => "config",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::MemoryLock => "memory_lock",
            ErrorKind::Io => "io",
            ErrorKind::Forked => "forked",
            ErrorKind::Internal => "internal",
            ErrorKind::KeyExhausted => "key_exhausted",
        }
    }

    /// Whether retrying the same call later may succeed.
    pub const fn is_transient(self) -> bool {
        matches!(self, ErrorKind::Unavailable | ErrorKind::Conflict)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The sealbox error: a kind, a message without secret content, the request id of the audit
/// line that recorded the failed access (when it was audited), an optional provider request id
/// (kept for support tickets) and an optional source.
pub struct Error {
    kind: ErrorKind,
    message: String,
    audit_request_id: Option<String>,
    request_id: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error. `message` must never contain a secret value or key bytes: build it from
    /// names, ids, counts and paths only.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            audit_request_id: None,
            request_id: None,
            source: None,
        }
    }

    /// Attaches the underlying cause. The source's own `Display` must not contain secret values
    /// either: wrap foreign errors that might echo input (e.g. JSON parse errors quoting the
    /// input) by their kind instead.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Attaches a provider request id (AWS `x-amzn-RequestId`, ...).
    pub fn with_request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }

    /// Attaches the `request_id` of the audit line that recorded this failed access (the
    /// client does this for every failure it audits), so a caller can find that line.
    pub fn with_audit_request_id(mut self, id: impl Into<String>) -> Self {
        self.audit_request_id = Some(id.into());
        self
    }

    /// The kind to branch on.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind prefix.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The id to quote for this failure: the `request_id` of the audit line that recorded it
    /// when the access was audited (a client with an audit log audits every failed read,
    /// write, list, describe, delete and every policy deny), else the provider's request id
    /// when the error came from a remote store.
    pub fn request_id(&self) -> Option<&str> {
        self.audit_request_id
            .as_deref()
            .or(self.request_id.as_deref())
    }

    /// The `request_id` of the audit line that recorded this failed access, if one did.
    pub fn audit_request_id(&self) -> Option<&str> {
        self.audit_request_id.as_deref()
    }

    /// The remote provider's request id (AWS `x-amzn-RequestId`, ...), when the error came
    /// from a remote store.
    pub fn provider_request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// Shorthand for an [`ErrorKind::NotFound`] error.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// Shorthand for an [`ErrorKind::InvalidInput`] error.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// Shorthand for an [`ErrorKind::Config`] error.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    /// Shorthand for an [`ErrorKind::Unsupported`] error naming the operation and the store.
    pub fn unsupported(operation: &str, store: &str) -> Self {
        Self::new(
            ErrorKind::Unsupported,
            format!("the {store} store does not support {operation}; see its capabilities()"),
        )
    }

    /// Shorthand for an [`ErrorKind::Internal`] error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// An [`ErrorKind::Io`] error with the operation and path in the message.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        let context = context.into();
        Self::new(ErrorKind::Io, format!("{context}: {source}")).with_source(source)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(id) = &self.audit_request_id {
            d.field("audit_request_id", id);
        }
        if let Some(id) = &self.request_id {
            d.field("request_id", id);
        }
        if let Some(src) = &self.source {
            d.field("source", &format_args!("{src}"));
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        match (&self.audit_request_id, &self.request_id) {
            (Some(audit), Some(provider)) => {
                write!(f, " (request id {audit}; provider request id {provider})")
            }
            (Some(id), None) | (None, Some(id)) => write!(f, " (request id {id})"),
            (None, None) => Ok(()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_kind_message_and_request_id() {
        let e = Error::new(ErrorKind::Unavailable, "store timed out after 2s")
            .with_request_id("abc-123");
        assert_eq!(
            e.to_string(),
            "unavailable: store timed out after 2s (request id abc-123)"
        );
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.kind().is_transient());
    }

    #[test]
    fn the_audit_request_id_comes_first_and_the_providers_is_kept() {
        let e = Error::new(ErrorKind::Unavailable, "store timed out")
            .with_request_id("aws-1")
            .with_audit_request_id("9f1c22aa-1f");
        assert_eq!(e.request_id(), Some("9f1c22aa-1f"));
        assert_eq!(e.audit_request_id(), Some("9f1c22aa-1f"));
        assert_eq!(e.provider_request_id(), Some("aws-1"));
        assert_eq!(
            e.to_string(),
            "unavailable: store timed out (request id 9f1c22aa-1f; provider request id aws-1)"
        );
        let provider_only = Error::new(ErrorKind::Unavailable, "x").with_request_id("aws-1");
        assert_eq!(provider_only.request_id(), Some("aws-1"));
        assert_eq!(provider_only.audit_request_id(), None);
    }

    #[test]
    fn kinds_have_distinct_names() {
        use std::collections::HashSet;
        let all = [
            ErrorKind::NotFound,
            ErrorKind::AlreadyExists,
            ErrorKind::Conflict,
            ErrorKind::AccessDenied,
            ErrorKind::Unavailable,
            ErrorKind::Integrity,
            ErrorKind::WrongKey,
            ErrorKind::Truncated,
            ErrorKind::UnsupportedVersion,
            ErrorKind::KeyRetired,
            ErrorKind::KeyDestroyed,
            ErrorKind::InvalidInput,
            ErrorKind::Config,
            ErrorKind::Unsupported,
            ErrorKind::MemoryLock,
            ErrorKind::Io,
            ErrorKind::Forked,
            ErrorKind::Internal,
            ErrorKind::KeyExhausted,
        ];
        let names: HashSet<_> = all.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), all.len());
    }
}
