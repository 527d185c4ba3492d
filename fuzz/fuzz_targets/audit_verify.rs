//! Fuzzes audit log verification (`sealbox audit verify`): any file, and any `.head` anchor
//! beside it, gives a report, never a panic or an error (the file is readable). The report is
//! consistent: a clean log's lines are its seqs 0.. in order; a problem sits on a line of the
//! file, or just past its end (a cut-off tail, a bad anchor), and every line before it verified.
//! The seeds (`seeds/audit_verify`) are a real log signed with this target's key, so mutations
//! reach the chain checks (missing, reordered, edited lines), not only the parser.
//!
//! Input: the log, then optionally `\0HEAD\0` and the anchor's text.
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sealbox::Secret;
use sealbox::audit::{AuditKey, verify_file};

static KEY: LazyLock<AuditKey> = LazyLock::new(|| {
    let mut bytes = [0x42u8; 32];
    let secret = Secret::from_mut_slice(&mut bytes).expect("locked memory for the fuzz key");
    AuditKey::new(&secret).expect("32-byte key")
});

/// One log path per fuzzing process (libFuzzer runs inputs one at a time).
static LOG: LazyLock<(tempfile::TempDir, PathBuf)> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("audit.jsonl");
    (dir, path)
});

const HEAD_MARK: &[u8] = b"\0HEAD\0";

fuzz_target!(|data: &[u8]| {
    let (_, path) = &*LOG;
    let head_path = path.with_extension("jsonl.head");
    let (log, head) = match data.windows(HEAD_MARK.len()).position(|w| w == HEAD_MARK) {
        Some(at) => (&data[..at], Some(&data[at + HEAD_MARK.len()..])),
        None => (data, None),
    };
    std::fs::write(path, log).expect("writing the log");
    match head {
        Some(h) => std::fs::write(&head_path, h).expect("writing the anchor"),
        None => match std::fs::remove_file(&head_path) {
            Ok(()) => {}
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}"),
        },
    }
    let report = verify_file(path, &KEY).expect("a readable log always gives a report");
    // The anchor is checked only after every line verified.
    assert!(!report.anchored || head.is_some(), "{report:?}");
    match &report.problem {
        None => {
            assert_eq!(report.last_seq, report.lines.checked_sub(1), "{report:?}");
            assert_eq!(report.last_hash.is_some(), report.lines > 0, "{report:?}");
        }
        Some(p) => {
            assert!(p.line >= 1 && p.line <= report.lines + 1, "{report:?}");
            assert_eq!(report.last_seq, p.line.checked_sub(2), "{report:?}");
        }
    }
});
