//! `sealbox audit verify` on a log whose filesystem was full for a while (a small tmpfs):
//! once the disk has room again, the file holds every event, whole, in one gapless chain,
//! with no fragment of a batch the full disk cut short.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sealbox::audit::{AuditLog, FsyncPolicy};
use sealbox::store::memory::MemoryStore;
use sealbox::{Principal, Sealbox, Secret};
use support::{code, run_with_env, stderr, stdout};

/// A tmpfs mounted at a fresh directory, unmounted (lazily) when dropped.
struct Tmpfs {
    _dir: tempfile::TempDir,
    at: PathBuf,
}

impl Tmpfs {
    /// `None` (with the reason printed) when this machine does not let the test mount one.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().join("fs");
        std::fs::create_dir(&at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { _dir: dir, at }),
            Ok(o) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs to fill up (needs root): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

/// Fills the filesystem holding `dir`; removing the returned file gives the room back.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write as _;
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 4096];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling the tmpfs: {e}"),
        }
    }
    filler
}

#[test]
fn a_log_that_was_full_for_a_while_verifies_whole_with_every_event() {
    let Some(fs) = Tmpfs::mount("1m") else {
        return;
    };
    let log = fs.at.join("audit.jsonl");
    // The file (its key beside it, where `audit verify` looks) and a callback: the callback
    // keeps nothing, so the chain may not move on while only it can be written.
    let c = Sealbox::builder()
        .store(Arc::new(MemoryStore::new()))
        .audit(
            AuditLog::builder()
                .file(&log, FsyncPolicy::Batch)
                .callback(|_| Ok(())),
        )
        .principal(Principal::new("svc:test"))
        .build()
        .unwrap()
        .blocking()
        .unwrap();
    let mut v = b"s3cr3t".to_vec();
    c.put("app/db", &Secret::from_mut_slice(&mut v).unwrap())
        .unwrap();
    c.get("app/db").unwrap();
    c.flush_audit().unwrap();
    let filler = fill(&fs.at);
    const READS: usize = 40;
    for _ in 0..READS {
        c.get_cached(b"app/db").expect("cached").unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.flush_audit().is_err() {
        assert!(Instant::now() < deadline, "the log did not recover");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(c);

    let o = run_with_env(
        &["--json", "audit", "verify", log.to_str().unwrap()],
        b"",
        &[],
    );
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["anchored"], true, "{report}");
    assert_eq!(
        report["cut_off_lines"].as_array().map(Vec::len),
        Some(0),
        "a fragment of a failed batch was left in the file: {report}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(report["lines"], text.lines().count() as u64, "{report}");
    let hits = text
        .lines()
        .filter(|l| l.contains("\"cache\":\"hit\""))
        .count();
    assert_eq!(hits, READS, "reads missing from the file");
}
