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
    // `anchored` says whether an anchor file is there.
    assert!(!report.anchored || head.is_some(), "{report:?}");
    // Fragments cut off mid-line (each followed by a signed `audit.cut_off` line) hold no seq.
    let cut_off = report.cut_off_lines.len() as u64;
    assert!(
        report.cut_off_lines.windows(2).all(|w| w[0] < w[1]),
        "{report:?}"
    );
    match &report.problem {
        None => {
            let signed = report.lines - cut_off;
            assert_eq!(report.last_seq, signed.checked_sub(1), "{report:?}");
            assert_eq!(report.last_hash.is_some(), signed > 0, "{report:?}");
        }
        Some(p) => {
            assert!(p.line >= 1 && p.line <= report.lines + 1, "{report:?}");
            assert!(
                report.cut_off_lines.iter().all(|&l| l < p.line),
                "{report:?}"
            );
            assert_eq!(
                report.last_seq,
                p.line.checked_sub(2 + cut_off),
                "{report:?}"
            );
        }
    }
});
