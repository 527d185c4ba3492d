//! Exit codes: one per group of error kinds, so scripts can branch without parsing messages.
//!
//! The table is part of the command's interface: it is printed by `--help` and documented in
//! `cli/README.md`, and a test keeps the three in step.

use sealbox::ErrorKind;

/// Success.
pub const OK: u8 = 0;
/// An error outside the groups below (I/O, unsupported operation, internal).
pub const GENERIC: u8 = 1;
/// The command line was malformed (clap's own code for usage errors).
pub const USAGE: u8 = 2;
/// The secret, version, stage or key does not exist.
pub const NOT_FOUND: u8 = 3;
/// The policy, store or provider refused the principal.
pub const ACCESS_DENIED: u8 = 4;
/// A compare-and-set failed, another writer won, or the thing already exists.
pub const CONFLICT: u8 = 5;
/// Data or key problem: tampering, wrong key, truncation, unknown format, retired, destroyed or
/// exhausted key.
pub const INTEGRITY: u8 = 6;
/// The store or key provider is unreachable or failing; retrying later may succeed.
pub const UNAVAILABLE: u8 = 7;
/// Configuration or input is malformed (bad name, bad value, bad config file).
pub const INVALID: u8 = 8;

/// `sealbox scan` found credentials.
pub const SCAN_FOUND: u8 = 1;
/// `sealbox scan` failed (any error kind): a scanner's callers only need clean, found, failed.
pub const SCAN_ERROR: u8 = 2;

/// The exit code for an error of `kind`.
pub fn for_kind(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::NotFound => NOT_FOUND,
        ErrorKind::AccessDenied => ACCESS_DENIED,
        ErrorKind::Conflict | ErrorKind::AlreadyExists => CONFLICT,
        ErrorKind::Integrity
        | ErrorKind::WrongKey
        | ErrorKind::Truncated
        | ErrorKind::UnsupportedVersion
        | ErrorKind::KeyRetired
        | ErrorKind::KeyDestroyed
        | ErrorKind::KeyExhausted => INTEGRITY,
        ErrorKind::Unavailable => UNAVAILABLE,
        ErrorKind::InvalidInput | ErrorKind::Config => INVALID,
        _ => GENERIC,
    }
}

/// The table shown at the end of `sealbox --help` (and kept identical in `cli/README.md`).
pub const HELP_TABLE: &str = "\
Exit codes:
  0  success
  1  other error (I/O, unsupported operation, internal)
  2  usage error (bad command line)
  3  not found (secret, version, stage or key)
  4  access denied
  5  conflict (compare-and-set failed, already exists)
  6  integrity or key error (tampered data, wrong key, truncated, unknown format,
     retired, destroyed or exhausted key)
  7  unavailable (store or key provider unreachable; retry later)
  8  invalid input or configuration";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_has_its_own_code() {
        let kinds = [
            (ErrorKind::NotFound, NOT_FOUND),
            (ErrorKind::AccessDenied, ACCESS_DENIED),
            (ErrorKind::Conflict, CONFLICT),
            (ErrorKind::AlreadyExists, CONFLICT),
            (ErrorKind::WrongKey, INTEGRITY),
            (ErrorKind::Integrity, INTEGRITY),
            (ErrorKind::KeyDestroyed, INTEGRITY),
            (ErrorKind::KeyExhausted, INTEGRITY),
            (ErrorKind::Unavailable, UNAVAILABLE),
            (ErrorKind::Config, INVALID),
            (ErrorKind::InvalidInput, INVALID),
            (ErrorKind::Io, GENERIC),
            (ErrorKind::Unsupported, GENERIC),
        ];
        for (kind, code) in kinds {
            assert_eq!(for_kind(kind), code, "{kind}");
        }
    }

    #[test]
    fn help_table_lists_every_code() {
        for code in [
            OK,
            GENERIC,
            USAGE,
            NOT_FOUND,
            ACCESS_DENIED,
            CONFLICT,
            INTEGRITY,
            UNAVAILABLE,
            INVALID,
        ] {
            assert!(
                HELP_TABLE.contains(&format!("\n  {code}  ")),
                "code {code} missing from the help table"
            );
        }
    }
}
