//! Error mapping: every `sealbox::Error` becomes one of the exception classes defined in
//! `sealbox/_errors.py`.
//!
//! The classes live in Python (so users can subclass, pickle and document them like any other
//! exception) and are imported here lazily. Messages are the core's messages, which never hold a
//! secret value; the binding adds nothing derived from input values either.

use pyo3::PyErr;
use sealbox::ErrorKind;

pyo3::import_exception!(sealbox._errors, SealboxError);
pyo3::import_exception!(sealbox._errors, NotFound);
pyo3::import_exception!(sealbox._errors, AccessDenied);
pyo3::import_exception!(sealbox._errors, Unavailable);
pyo3::import_exception!(sealbox._errors, IntegrityError);
pyo3::import_exception!(sealbox._errors, ConfigError);
pyo3::import_exception!(sealbox._errors, InvalidInput);
pyo3::import_exception!(sealbox._errors, Conflict);
pyo3::import_exception!(sealbox._errors, Unsupported);
pyo3::import_exception!(sealbox._errors, KeyExhausted);
pyo3::import_exception!(sealbox._errors, Forked);

/// The binding's error: either a sealbox error still to be mapped, or a Python exception that
/// is already one (wrong argument type, closed object, ...).
///
/// `sealbox::Error` and `PyErr` are both foreign types, so the one conversion the binding needs
/// (`sealbox::Error` -> Python exception) goes through this local type.
#[derive(Debug)]
pub(crate) enum BindingError {
    /// An error from the sealbox core.
    Sealbox(sealbox::Error),
    /// A ready Python exception.
    Python(PyErr),
}

/// `Result` for binding methods; `?` accepts both `sealbox::Error` and `PyErr`.
pub(crate) type BindingResult<T> = Result<T, BindingError>;

impl From<sealbox::Error> for BindingError {
    fn from(e: sealbox::Error) -> Self {
        BindingError::Sealbox(e)
    }
}

impl From<PyErr> for BindingError {
    fn from(e: PyErr) -> Self {
        BindingError::Python(e)
    }
}

impl From<BindingError> for PyErr {
    fn from(e: BindingError) -> PyErr {
        match e {
            BindingError::Python(e) => e,
            BindingError::Sealbox(e) => {
                let kind = e.kind();
                let args = (
                    e.message().to_owned(),
                    kind.as_str(),
                    e.request_id().map(str::to_owned),
                    e.provider_request_id().map(str::to_owned),
                );
                match exception_class(kind) {
                    ExceptionClass::NotFound => NotFound::new_err(args),
                    ExceptionClass::AccessDenied => AccessDenied::new_err(args),
                    ExceptionClass::Unavailable => Unavailable::new_err(args),
                    ExceptionClass::Integrity => IntegrityError::new_err(args),
                    ExceptionClass::Config => ConfigError::new_err(args),
                    ExceptionClass::InvalidInput => InvalidInput::new_err(args),
                    ExceptionClass::Conflict => Conflict::new_err(args),
                    ExceptionClass::Unsupported => Unsupported::new_err(args),
                    ExceptionClass::KeyExhausted => KeyExhausted::new_err(args),
                    ExceptionClass::Forked => Forked::new_err(args),
                    ExceptionClass::Base => SealboxError::new_err(args),
                }
            }
        }
    }
}

/// Which Python class an error kind raises. Kept as data so the mapping is testable without an
/// interpreter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ExceptionClass {
    NotFound,
    AccessDenied,
    Unavailable,
    Integrity,
    Config,
    InvalidInput,
    Conflict,
    Unsupported,
    KeyExhausted,
    Forked,
    Base,
}

fn exception_class(kind: ErrorKind) -> ExceptionClass {
    match kind {
        ErrorKind::NotFound => ExceptionClass::NotFound,
        ErrorKind::AccessDenied => ExceptionClass::AccessDenied,
        ErrorKind::Unavailable => ExceptionClass::Unavailable,
        // Everything that means "these bytes cannot be trusted or opened" is one class for
        // callers; `kind` on the exception keeps the distinction for operators.
        ErrorKind::Integrity
        | ErrorKind::WrongKey
        | ErrorKind::Truncated
        | ErrorKind::UnsupportedVersion
        | ErrorKind::KeyRetired
        | ErrorKind::KeyDestroyed => ExceptionClass::Integrity,
        ErrorKind::Config => ExceptionClass::Config,
        ErrorKind::InvalidInput => ExceptionClass::InvalidInput,
        ErrorKind::AlreadyExists | ErrorKind::Conflict => ExceptionClass::Conflict,
        ErrorKind::Unsupported => ExceptionClass::Unsupported,
        // Not an integrity problem: the data reads fine, the key may not encrypt any more.
        ErrorKind::KeyExhausted => ExceptionClass::KeyExhausted,
        ErrorKind::Forked => ExceptionClass::Forked,
        // MemoryLock, Io, Internal and kinds added later: the base class, with `kind` set.
        _ => ExceptionClass::Base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integrity_family_maps_to_one_class() {
        for kind in [
            ErrorKind::Integrity,
            ErrorKind::WrongKey,
            ErrorKind::Truncated,
            ErrorKind::UnsupportedVersion,
            ErrorKind::KeyRetired,
            ErrorKind::KeyDestroyed,
        ] {
            assert_eq!(exception_class(kind), ExceptionClass::Integrity, "{kind}");
        }
    }

    #[test]
    fn each_named_kind_has_its_own_class() {
        assert_eq!(
            exception_class(ErrorKind::NotFound),
            ExceptionClass::NotFound
        );
        assert_eq!(
            exception_class(ErrorKind::AccessDenied),
            ExceptionClass::AccessDenied
        );
        assert_eq!(
            exception_class(ErrorKind::Unavailable),
            ExceptionClass::Unavailable
        );
        assert_eq!(exception_class(ErrorKind::Config), ExceptionClass::Config);
        assert_eq!(
            exception_class(ErrorKind::InvalidInput),
            ExceptionClass::InvalidInput
        );
        assert_eq!(
            exception_class(ErrorKind::AlreadyExists),
            ExceptionClass::Conflict
        );
        assert_eq!(
            exception_class(ErrorKind::Conflict),
            ExceptionClass::Conflict
        );
        assert_eq!(
            exception_class(ErrorKind::Unsupported),
            ExceptionClass::Unsupported
        );
        assert_eq!(
            exception_class(ErrorKind::KeyExhausted),
            ExceptionClass::KeyExhausted
        );
        assert_eq!(exception_class(ErrorKind::Forked), ExceptionClass::Forked);
        assert_eq!(exception_class(ErrorKind::Io), ExceptionClass::Base);
        assert_eq!(exception_class(ErrorKind::MemoryLock), ExceptionClass::Base);
        assert_eq!(exception_class(ErrorKind::Internal), ExceptionClass::Base);
    }
}
