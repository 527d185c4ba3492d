//! PKCS#11 return values as sealbox errors: a kind that says what the caller can do, and a
//! message with the PKCS#11 name of the code (`CKR_PIN_INCORRECT`) and what to check.

use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, RvError};
use sealbox::{Error, ErrorKind};

/// `what` says what was being done ("logging in to token sealbox").
pub(crate) fn from_cryptoki(what: &str, e: CkError) -> Error {
    match e {
        CkError::Pkcs11(rv, function) => from_rv(what, rv, function),
        CkError::LibraryLoading(e) => Error::config(format!("{what}: cannot load the module: {e}")),
        CkError::MissingSymbol(symbol) => Error::config(format!(
            "{what}: the module has no {symbol}; is it a PKCS#11 module?"
        )),
        CkError::NullFunctionPointer | CkError::NotSupported => Error::new(
            ErrorKind::Unsupported,
            format!("{what}: the module does not implement a function sealbox needs"),
        ),
        other => Error::internal(format!("{what}: {other}")),
    }
}

/// Whether `e` means the session (or the token behind it) is gone, so a fresh session (and
/// login) may succeed where this one failed.
pub(crate) fn session_lost(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::DeviceError,
            _
        )
    )
}

fn from_rv(what: &str, rv: RvError, function: Function) -> Error {
    let code = ckr_name(&rv);
    let call = format!("C_{function:?}");
    let (kind, hint) = match rv {
        RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange => (
            ErrorKind::AccessDenied,
            "the token refused the PIN; check pin / pin_file (the user PIN, not the SO PIN)",
        ),
        RvError::PinLocked | RvError::PinExpired => (
            ErrorKind::AccessDenied,
            "the token's user PIN is locked or expired; the token's security officer must \
             reset it",
        ),
        RvError::UserPinNotInitialized => (
            ErrorKind::Config,
            "the token has no user PIN yet; initialise it (softhsm2-util --init-token, or the \
             HSM's tools)",
        ),
        RvError::TokenNotPresent
        | RvError::TokenNotRecognized
        | RvError::DeviceRemoved
        | RvError::DeviceError
        | RvError::DeviceMemory
        | RvError::SessionHandleInvalid
        | RvError::SessionClosed
        | RvError::SessionCount
        | RvError::CryptokiNotInitialized
        | RvError::GeneralError
        | RvError::FunctionFailed
        | RvError::HostMemory => (
            ErrorKind::Unavailable,
            "the token is not reachable now (removed, disconnected or failing); check the HSM \
             and retry",
        ),
        RvError::SlotIdInvalid => (
            ErrorKind::NotFound,
            "no such slot; list them with `pkcs11-tool --module MODULE --list-slots`",
        ),
        RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid => (
            ErrorKind::NotFound,
            "the key is no longer in the token (deleted, or the token was replaced)",
        ),
        RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange => (
            ErrorKind::Integrity,
            "the wrapped key does not authenticate under this token key and context: it was \
             wrapped by another key, for another namespace, or is damaged",
        ),
        RvError::MechanismInvalid | RvError::MechanismParamInvalid => (
            ErrorKind::Unsupported,
            "the token does not offer CKM_AES_GCM with a 12-byte IV and 128-bit tag",
        ),
        RvError::KeyFunctionNotPermitted | RvError::KeyTypeInconsistent => (
            ErrorKind::Config,
            "the key may not encrypt/decrypt with AES-GCM; it must be an AES key with \
             CKA_ENCRYPT and CKA_DECRYPT set",
        ),
        RvError::UserNotLoggedIn => (
            ErrorKind::AccessDenied,
            "the session is not logged in to the token",
        ),
        _ => (ErrorKind::Unavailable, "the token refused the operation"),
    };
    Error::new(kind, format!("{what}: {call} returned {code}: {hint}"))
}

/// `PinIncorrect` -> `CKR_PIN_INCORRECT`, the name the PKCS#11 headers and HSM manuals use.
fn ckr_name(rv: &RvError) -> String {
    let camel = format!("{rv:?}");
    let mut out = String::from("CKR");
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// The error every call gets in a forked child: the token's sessions belong to the parent.
pub(crate) fn forked(label: &str) -> Error {
    Error::new(
        ErrorKind::Forked,
        format!(
            "PKCS#11 key {label} was opened in another process (this one is a forked child); \
             PKCS#11 sessions cannot cross fork: open the key provider again in this process"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_read_as_pkcs11_names() {
        assert_eq!(ckr_name(&RvError::PinIncorrect), "CKR_PIN_INCORRECT");
        assert_eq!(ckr_name(&RvError::TokenNotPresent), "CKR_TOKEN_NOT_PRESENT");
        let e = from_rv("logging in", RvError::PinIncorrect, Function::Login);
        assert_eq!(e.kind(), ErrorKind::AccessDenied);
        assert!(
            e.message()
                .starts_with("logging in: C_Login returned CKR_PIN_INCORRECT"),
            "{e}"
        );
    }
}
