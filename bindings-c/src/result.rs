//! `sb_result`: the one return code of every fallible C function, and its names.
//!
//! Codes are grouped in numbered ranges so a caller can branch on a range as well as on a code.
//! Numbers are never reused: a retired code stays here as a comment.
//!
//! | range | meaning |
//! |---|---|
//! | 0-999 | success and non-error outcomes |
//! | 1000-1999 | the caller misused the API (NULL, invalid UTF-8, buffer too small, ...) |
//! | 2000-2999 | the request was refused or did not match (not found, conflict, denied, ...) |
//! | 3000-3999 | the environment failed (store unavailable, I/O, memory locking, config) |
//! | 4000-4999 | integrity and key errors (tampering, wrong key, truncated, retired keys) |
//! | 9000-9999 | bugs inside sealbox (internal error, caught panic) |

use std::ffi::c_char;

use sealbox::ErrorKind;

/// The result of every fallible `sb_*` function. `SB_RESULT_OK` is 0; see the ranges in the
/// crate documentation. Outputs are written only when the result is `SB_RESULT_OK` (or
/// `SB_RESULT_DONE`, or a needed size with `SB_RESULT_INSUFFICIENT_SIZE`, where
/// documented). `sb_last_error_message` gives details of a failure.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum sb_result {
    /// Success.
    Ok = 0,
    /// An iterator has no more items (not an error).
    Done = 1,

    /// A pointer argument was NULL.
    NullParameter = 1000,
    /// A string argument was not valid UTF-8.
    InvalidUtf8 = 1001,
    /// An output buffer was too small.
    InsufficientSize = 1002,
    /// An index argument was out of range.
    OutOfRange = 1003,

    /// The secret, version, stage or key does not exist.
    NotFound = 2000,
    /// The name already exists where a new one was required.
    AlreadyExists = 2001,
    /// A compare-and-set lost, or the secret is in a state that forbids the call.
    Conflict = 2002,
    /// The policy, store or provider refused the principal.
    AccessDenied = 2003,
    /// An argument was malformed (a bad secret name, a missing JSON field, ...).
    InvalidInput = 2004,
    /// The store or this build does not support the operation.
    Unsupported = 2005,

    /// The store or key provider is unreachable or failed transiently; retry later.
    Unavailable = 3000,
    /// A local I/O operation failed.
    Io = 3001,
    /// Locked memory could not be obtained under the strict memory policy.
    MemoryLock = 3002,
    /// The configuration is malformed, incomplete or names something unknown.
    Config = 3003,
    /// The client (or secret) was made before `fork()` and used in the child, where its
    /// secrets are wiped and its threads do not exist: get a client of the child's own with
    /// `sb_client_reopen` (or open one after the fork), and read secrets again through it.
    Forked = 3004,

    /// Ciphertext failed authentication (tampered, moved or corrupted).
    Integrity = 4000,
    /// The key presented is not the key the data was sealed with.
    WrongKey = 4001,
    /// Input ended early.
    Truncated = 4002,
    /// A format or algorithm version this build does not understand.
    UnsupportedVersion = 4003,
    /// The key version needed is older than `min_decryption_version`.
    KeyRetired = 4004,
    /// The key material was destroyed (crypto-shredding).
    KeyDestroyed = 4005,
    /// A key reached its limit of encryptions and could not be rotated automatically; rotate
    /// it (`sealbox keys rotate`).
    KeyExhausted = 4006,

    /// An invariant inside sealbox broke; please report it.
    Internal = 9000,
    /// A panic was caught at the C boundary; please report it.
    Panic = 9001,
    /// An error kind newer than this binding (the core library grew a kind).
    Unknown = 9002,
}

impl sb_result {
    /// Every code, for `sb_result_name` and the tests.
    pub(crate) const ALL: [sb_result; 27] = [
        sb_result::Ok,
        sb_result::Done,
        sb_result::NullParameter,
        sb_result::InvalidUtf8,
        sb_result::InsufficientSize,
        sb_result::OutOfRange,
        sb_result::NotFound,
        sb_result::AlreadyExists,
        sb_result::Conflict,
        sb_result::AccessDenied,
        sb_result::InvalidInput,
        sb_result::Unsupported,
        sb_result::Unavailable,
        sb_result::Io,
        sb_result::MemoryLock,
        sb_result::Config,
        sb_result::Forked,
        sb_result::Integrity,
        sb_result::WrongKey,
        sb_result::Truncated,
        sb_result::UnsupportedVersion,
        sb_result::KeyRetired,
        sb_result::KeyDestroyed,
        sb_result::KeyExhausted,
        sb_result::Internal,
        sb_result::Panic,
        sb_result::Unknown,
    ];

    /// The code for a core error kind.
    pub(crate) fn from_kind(kind: ErrorKind) -> sb_result {
        match kind {
            ErrorKind::NotFound => sb_result::NotFound,
            ErrorKind::AlreadyExists => sb_result::AlreadyExists,
            ErrorKind::Conflict => sb_result::Conflict,
            ErrorKind::AccessDenied => sb_result::AccessDenied,
            ErrorKind::InvalidInput => sb_result::InvalidInput,
            ErrorKind::Unsupported => sb_result::Unsupported,
            ErrorKind::Unavailable => sb_result::Unavailable,
            ErrorKind::Io => sb_result::Io,
            ErrorKind::MemoryLock => sb_result::MemoryLock,
            ErrorKind::Config => sb_result::Config,
            ErrorKind::Forked => sb_result::Forked,
            ErrorKind::Integrity => sb_result::Integrity,
            ErrorKind::WrongKey => sb_result::WrongKey,
            ErrorKind::Truncated => sb_result::Truncated,
            ErrorKind::UnsupportedVersion => sb_result::UnsupportedVersion,
            ErrorKind::KeyRetired => sb_result::KeyRetired,
            ErrorKind::KeyDestroyed => sb_result::KeyDestroyed,
            ErrorKind::KeyExhausted => sb_result::KeyExhausted,
            ErrorKind::Internal => sb_result::Internal,
            _ => sb_result::Unknown,
        }
    }

    /// The code's C spelling, NUL-terminated.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            sb_result::Ok => "SB_RESULT_OK\0",
            sb_result::Done => "SB_RESULT_DONE\0",
            sb_result::NullParameter => "SB_RESULT_NULL_PARAMETER\0",
            sb_result::InvalidUtf8 => "SB_RESULT_INVALID_UTF8\0",
            sb_result::InsufficientSize => "SB_RESULT_INSUFFICIENT_SIZE\0",
            sb_result::OutOfRange => "SB_RESULT_OUT_OF_RANGE\0",
            sb_result::NotFound => "SB_RESULT_NOT_FOUND\0",
            sb_result::AlreadyExists => "SB_RESULT_ALREADY_EXISTS\0",
            sb_result::Conflict => "SB_RESULT_CONFLICT\0",
            sb_result::AccessDenied => "SB_RESULT_ACCESS_DENIED\0",
            sb_result::InvalidInput => "SB_RESULT_INVALID_INPUT\0",
            sb_result::Unsupported => "SB_RESULT_UNSUPPORTED\0",
            sb_result::Unavailable => "SB_RESULT_UNAVAILABLE\0",
            sb_result::Io => "SB_RESULT_IO\0",
            sb_result::MemoryLock => "SB_RESULT_MEMORY_LOCK\0",
            sb_result::Config => "SB_RESULT_CONFIG\0",
            sb_result::Forked => "SB_RESULT_FORKED\0",
            sb_result::Integrity => "SB_RESULT_INTEGRITY\0",
            sb_result::WrongKey => "SB_RESULT_WRONG_KEY\0",
            sb_result::Truncated => "SB_RESULT_TRUNCATED\0",
            sb_result::UnsupportedVersion => "SB_RESULT_UNSUPPORTED_VERSION\0",
            sb_result::KeyRetired => "SB_RESULT_KEY_RETIRED\0",
            sb_result::KeyDestroyed => "SB_RESULT_KEY_DESTROYED\0",
            sb_result::KeyExhausted => "SB_RESULT_KEY_EXHAUSTED\0",
            sb_result::Internal => "SB_RESULT_INTERNAL\0",
            sb_result::Panic => "SB_RESULT_PANIC\0",
            sb_result::Unknown => "SB_RESULT_UNKNOWN\0",
        }
    }
}

/// The name of a result code (`"SB_RESULT_NOT_FOUND"`), or `"SB_RESULT_UNRECOGNISED"` for a
/// number that is not a code. The string is static and NUL-terminated; never free it.
/// Never fails and never returns NULL.
#[unsafe(no_mangle)]
pub extern "C" fn sb_result_name(code: u32) -> *const c_char {
    // No panic is possible here (a lookup in a constant table), so no boundary is needed.
    let name = sb_result::ALL
        .iter()
        .find(|r| **r as u32 == code)
        .map_or("SB_RESULT_UNRECOGNISED\0", |r| r.name());
    name.as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::ffi::CStr;

    fn name_of(code: u32) -> String {
        // SAFETY: sb_result_name always returns a static NUL-terminated string.
        unsafe { CStr::from_ptr(sb_result_name(code)) }
            .to_str()
            .map(str::to_owned)
            .unwrap_or_default()
    }

    #[test]
    fn every_code_has_its_own_name_matching_the_header_spelling() {
        let mut names = HashSet::new();
        for code in sb_result::ALL {
            let name = name_of(code as u32);
            assert!(name.starts_with("SB_RESULT_"), "{name}");
            names.insert(name);
        }
        assert_eq!(
            names.len(),
            sb_result::ALL.len(),
            "one name per distinct code"
        );
        assert_eq!(
            name_of(sb_result::from_kind(ErrorKind::KeyExhausted) as u32),
            "SB_RESULT_KEY_EXHAUSTED"
        );
        assert_eq!(name_of(2000), "SB_RESULT_NOT_FOUND");
        assert_eq!(name_of(0), "SB_RESULT_OK");
    }

    #[test]
    fn unknown_numbers_are_named_unrecognised() {
        assert_eq!(name_of(7), "SB_RESULT_UNRECOGNISED");
        assert_eq!(name_of(u32::MAX), "SB_RESULT_UNRECOGNISED");
    }

    #[test]
    fn codes_sit_in_their_ranges() {
        assert!((1000..2000).contains(&(sb_result::InvalidUtf8 as u32)));
        assert!((2000..3000).contains(&(sb_result::from_kind(ErrorKind::NotFound) as u32)));
        assert!((3000..4000).contains(&(sb_result::from_kind(ErrorKind::Unavailable) as u32)));
        assert_eq!(sb_result::from_kind(ErrorKind::Forked), sb_result::Forked);
        assert!((4000..5000).contains(&(sb_result::from_kind(ErrorKind::WrongKey) as u32)));
        assert!((9000..10000).contains(&(sb_result::from_kind(ErrorKind::Internal) as u32)));
    }
}
