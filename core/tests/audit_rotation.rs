//! Audit log a service can run with for months: rotation by size and time with the chain
//! continuing across files, retention, and coalescing of repeated cache hits.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sealbox::audit::{
    AuditKey, AuditLog, AuditLogBuilder, FsyncPolicy, ProblemKind, ROTATED_EVENT, verify_file,
};
use sealbox::cache::CacheConfig;
use sealbox::policy::{Capability, Policy, Rule};
use sealbox::store::memory::MemoryStore;
use sealbox::{BlockingSealbox, Principal, Sealbox, Secret};

const WORKER_CONFIG_ENV: &str = "SEALBOX_TEST_ROTATION_WORKER_CONFIG";
const READS_PER_WORKER: usize = 300;

fn key() -> AuditKey {
    let mut raw = [9u8; 32];
    AuditKey::new(&Secret::from_mut_slice(&mut raw).unwrap()).unwrap()
}

fn secret(v: &str) -> Secret {
    Secret::from_mut_slice(&mut v.as_bytes().to_vec()).unwrap()
}

fn client(audit: AuditLogBuilder) -> BlockingSealbox {
    Sealbox::builder()
        .store(Arc::new(MemoryStore::new()))
        .cache(CacheConfig::default())
        .audit(audit)
        .policy(Policy::new(vec![
            Rule::allow(
                &["svc:test"],
                &[Capability::Read, Capability::Write],
                &["app/*"],
            )
            .unwrap(),
        ]))
        .principal(Principal::new("svc:test"))
        .build()
        .unwrap()
        .blocking()
        .unwrap()
}

/// A log at `DIR/audit.jsonl` rotated at 4 KiB (about 9 lines), with `more` settings.
fn rotating(dir: &Path, more: impl FnOnce(AuditLogBuilder) -> AuditLogBuilder) -> BlockingSealbox {
    client(more(
        AuditLog::builder()
            .key(key())
            .file(dir.join("audit.jsonl"), FsyncPolicy::Batch)
            .rotate_size(4096),
    ))
}

/// One write and `reads` reads, flushed every 5 events, so that batches are small and the
/// file rotates between them.
fn write_events(c: &BlockingSealbox, reads: usize) {
    c.put("app/db", &secret("never-in-the-log")).unwrap();
    for i in 0..reads {
        c.get("app/db").unwrap();
        if i % 5 == 0 {
            c.flush_audit().unwrap();
        }
    }
    c.flush_audit().unwrap();
}

fn rotated(active: &Path) -> Vec<PathBuf> {
    let name = active.file_name().unwrap().to_str().unwrap().to_owned();
    let mut files: Vec<PathBuf> = std::fs::read_dir(active.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.len() == name.len() + 21
                && n.starts_with(&format!("{name}."))
                && n[name.len() + 1..].bytes().all(|b| b.is_ascii_digit())
        })
        .collect();
    files.sort();
    files
}

fn events(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every event of the set (rotated files, then the active one), checking that `seq` runs on
/// across files without a gap and each new file says which file it continues.
fn events_of_set(active: &Path) -> Vec<serde_json::Value> {
    let mut files = rotated(active);
    files.push(active.to_owned());
    let mut all: Vec<serde_json::Value> = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let evs = events(f);
        if i > 0 && !evs.is_empty() {
            assert_eq!(evs[0]["event"], ROTATED_EVENT, "{}", f.display());
            let previous = files[i - 1].file_name().unwrap().to_str().unwrap();
            let reason = evs[0]["reason"].as_str().unwrap();
            assert!(reason.contains(previous), "{reason}");
        }
        all.extend(evs);
    }
    let first = all[0]["seq"].as_u64().unwrap();
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e["seq"], first + i as u64);
    }
    all
}

fn count(events: &[serde_json::Value], name: &str) -> usize {
    events.iter().filter(|e| e["event"] == name).count()
}

#[test]
fn many_events_with_a_small_rotate_size_make_several_files_that_verify_as_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let c = rotating(dir.path(), |b| b);
    write_events(&c, 100);
    drop(c);
    let files = rotated(&log);
    assert!(files.len() >= 5, "{files:?}");
    for f in &files {
        let len = std::fs::metadata(f).unwrap().len();
        // Rotated once it reached 4 KiB: at most one small batch past it.
        assert!(
            (4096..4096 + 6 * 1024).contains(&len),
            "{} is {len} bytes",
            f.display()
        );
    }
    let all = events_of_set(&log);
    assert_eq!(all[0]["seq"], 0);
    assert_eq!(count(&all, "secret.read"), 100);
    assert_eq!(count(&all, "secret.write"), 1);
    let ok = |r: &sealbox::audit::VerifyReport| {
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(r.lines, all.len() as u64);
        assert_eq!(r.files.len(), files.len() + 1);
        assert!(r.anchored);
        assert_eq!(r.retention_cut, None);
    };
    // Named by its active file or by its directory.
    ok(&verify_file(&log, &key()).unwrap());
    ok(&verify_file(dir.path(), &key()).unwrap());
    // The `.head` anchor vouches for the chain across files: a line cut off the active
    // file's end is found.
    let text = std::fs::read_to_string(&log).unwrap();
    let kept: Vec<&str> = text.lines().collect();
    std::fs::write(&log, kept[..kept.len() - 1].join("\n") + "\n").unwrap();
    let problem = verify_file(&log, &key()).unwrap().problem.unwrap();
    assert_eq!(problem.kind, ProblemKind::Missing, "{problem:?}");
    std::fs::write(&log, text).unwrap();
    // The chain continues after a restart with rotation on.
    let c = rotating(dir.path(), |b| b);
    write_events(&c, 20);
    drop(c);
    let report = verify_file(&log, &key()).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(count(&events_of_set(&log), "secret.read"), 120);
}

#[test]
fn a_missing_or_reordered_middle_file_fails_verification() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    write_events(&rotating(dir.path(), |b| b), 100);
    let files = rotated(&log);
    assert!(files.len() >= 5, "{files:?}");

    // Two middle files swapped (each renamed to the other's name).
    let (a, b) = (&files[1], &files[2]);
    let tmp = dir.path().join("swap");
    std::fs::rename(a, &tmp).unwrap();
    std::fs::rename(b, a).unwrap();
    std::fs::rename(&tmp, b).unwrap();
    let report = verify_file(&log, &key()).unwrap();
    let problem = report.problem.expect("a reordered file is found");
    assert_eq!(problem.kind, ProblemKind::Reordered, "{problem:?}");
    assert_eq!(&problem.file, a);
    assert_eq!(problem.line, 1);
    std::fs::rename(a, &tmp).unwrap();
    std::fs::rename(b, a).unwrap();
    std::fs::rename(&tmp, b).unwrap();
    assert!(verify_file(&log, &key()).unwrap().is_ok());

    // A middle file removed.
    std::fs::remove_file(&files[2]).unwrap();
    let report = verify_file(&log, &key()).unwrap();
    let problem = report.problem.expect("a missing file is found");
    assert_eq!(problem.kind, ProblemKind::Missing, "{problem:?}");
    assert_eq!(&problem.file, &files[3]);
    assert!(
        problem.detail.contains("missing or out of order"),
        "{}",
        problem.detail
    );

    // The oldest file removed by hand: no retention record vouches for the cut.
    let dir2 = tempfile::tempdir().unwrap();
    let log2 = dir2.path().join("audit.jsonl");
    write_events(&rotating(dir2.path(), |b| b), 60);
    std::fs::remove_file(&rotated(&log2)[0]).unwrap();
    let problem = verify_file(&log2, &key()).unwrap().problem.unwrap();
    assert_eq!(problem.kind, ProblemKind::Missing, "{problem:?}");
    assert!(
        problem.detail.contains("no retention record"),
        "{}",
        problem.detail
    );
}

#[test]
fn retention_deletes_old_files_and_the_rest_verifies_as_a_recorded_cut() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    write_events(&rotating(dir.path(), |b| b.retain_files(3)), 100);
    let files = rotated(&log);
    assert_eq!(files.len(), 3, "{files:?}");
    let all = events_of_set(&log);
    let first = all[0]["seq"].as_u64().unwrap();
    assert!(first > 0, "older files were deleted");
    let report = verify_file(&log, &key()).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.retention_cut, Some(first));
    assert_eq!(report.lines, all.len() as u64);

    // The record vouches for that cut only: the first kept file removed by hand is found.
    let record = dir.path().join("audit.jsonl.retention");
    let saved = std::fs::read(&record).unwrap();
    let first_file = std::fs::read(&files[0]).unwrap();
    std::fs::remove_file(&files[0]).unwrap();
    let problem = verify_file(&log, &key()).unwrap().problem.unwrap();
    assert_eq!(problem.kind, ProblemKind::Missing, "{problem:?}");
    std::fs::write(&files[0], first_file).unwrap();
    assert!(verify_file(&log, &key()).unwrap().is_ok());

    // Without the record, or with one not signed by the key, the cut is a problem.
    std::fs::remove_file(&record).unwrap();
    let problem = verify_file(&log, &key()).unwrap().problem.unwrap();
    assert_eq!(problem.kind, ProblemKind::Missing, "{problem:?}");
    let forged = String::from_utf8(saved.clone())
        .unwrap()
        .replace("\"mac\":\"", "\"mac\":\"00");
    std::fs::write(&record, forged).unwrap();
    assert!(!verify_file(&log, &key()).unwrap().is_ok());
    std::fs::write(&record, saved).unwrap();
    assert!(verify_file(&log, &key()).unwrap().is_ok());
}

#[test]
fn retention_by_age_deletes_the_files_last_written_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    write_events(&rotating(dir.path(), |b| b.retain_days(30)), 40);
    let before = rotated(&log);
    assert!(before.len() >= 3, "{before:?}");
    // The two oldest were last written 31 days ago.
    let old = std::time::SystemTime::now() - Duration::from_secs(31 * 86_400);
    for f in &before[..2] {
        std::fs::File::options()
            .append(true)
            .open(f)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    // The next rotation applies retention.
    write_events(&rotating(dir.path(), |b| b.retain_days(30)), 20);
    let after = rotated(&log);
    assert!(
        !after.contains(&before[0]) && !after.contains(&before[1]),
        "{after:?}"
    );
    assert!(after.contains(&before[2]), "{after:?}");
    let report = verify_file(&log, &key()).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert!(report.retention_cut.is_some());
}

#[test]
fn time_rotation_starts_a_new_file_when_the_period_ends() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let c = client(
        AuditLog::builder()
            .key(key())
            .file(&log, FsyncPolicy::Batch)
            .rotate_every(Duration::from_secs(1)),
    );
    c.put("app/db", &secret("v")).unwrap();
    c.flush_audit().unwrap();
    assert!(rotated(&log).is_empty());
    // The next whole second: a new period.
    std::thread::sleep(Duration::from_millis(1100));
    c.get("app/db").unwrap();
    c.flush_audit().unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    c.get("app/db").unwrap();
    c.flush_audit().unwrap();
    drop(c);
    let files = rotated(&log);
    assert_eq!(files.len(), 2, "{files:?}");
    // Each rotated file holds one second's events.
    for f in &files {
        let secs: Vec<String> = events(f)
            .iter()
            .map(|e| e["timestamp"].as_str().unwrap()[..19].to_owned())
            .collect();
        assert!(secs.iter().all(|s| *s == secs[0]), "{secs:?}");
    }
    let all = events_of_set(&log);
    assert_eq!(count(&all, "secret.read"), 2);
    assert!(verify_file(&log, &key()).unwrap().is_ok());
}

/// One worker process appending to a rotating log. Runs only in the spawned processes.
#[test]
fn rotation_worker_child() {
    let Ok(config) = std::env::var(WORKER_CONFIG_ENV) else {
        return;
    };
    let c = BlockingSealbox::from_config(&config).unwrap();
    c.put("app/db", &secret("worker-value")).unwrap();
    for i in 0..READS_PER_WORKER {
        c.get("app/db").unwrap();
        if i % 7 == 0 {
            c.flush_audit().unwrap();
        }
    }
    c.flush_audit().unwrap();
}

#[test]
fn three_processes_rotating_one_log_leave_one_chain_that_verifies() {
    if std::env::var(WORKER_CONFIG_ENV).is_ok() {
        return;
    }
    const WORKERS: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let config = dir.path().join("sealbox.yaml");
    std::fs::write(
        &config,
        format!(
            "secrets: {{provider: memory}}\nprincipal: svc:web\n\
             audit: {{path: {}, rotate_size: 4KiB}}\n",
            log.display()
        ),
    )
    .unwrap();
    let workers: Vec<std::process::Child> = (0..WORKERS)
        .map(|_| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "rotation_worker_child", "--test-threads=1"])
                .env(WORKER_CONFIG_ENV, &config)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for w in workers {
        let out = w.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a worker failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut raw = std::fs::read(sealbox::audit::default_key_path(&log)).unwrap();
    let k = AuditKey::new(&Secret::from_mut_slice(&mut raw).unwrap()).unwrap();
    let report = verify_file(&log, &k).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert!(report.files.len() > 10, "{:?}", report.files);
    let all = events_of_set(&log);
    assert_eq!(count(&all, "secret.read"), WORKERS * READS_PER_WORKER);
    assert_eq!(count(&all, "secret.write"), WORKERS);
    // One rotation line per rotated file: no two writers both started one file.
    assert_eq!(count(&all, ROTATED_EVENT), report.files.len() - 1);
}

fn coalescing(dir: &Path, interval: Duration) -> BlockingSealbox {
    client(
        AuditLog::builder()
            .key(key())
            .file(dir.join("audit.jsonl"), FsyncPolicy::Batch)
            .coalesce(interval),
    )
}

#[test]
fn coalescing_gives_one_event_with_the_count_and_times_across_two_threads_and_never_a_denial() {
    const PER_THREAD: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let c = coalescing(dir.path(), Duration::from_secs(60));
    c.put("app/db", &secret("v")).unwrap();
    c.get("app/db").unwrap();
    let intruder = c.as_principal(Principal::new("svc:intruder"));
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..PER_THREAD {
                    c.get_cached(b"app/db").unwrap().unwrap();
                }
            });
        }
        s.spawn(|| {
            for _ in 0..3 {
                assert!(intruder.get("app/db").is_err());
            }
        });
    });
    c.get("app/missing").unwrap_err();
    c.flush_audit().unwrap();
    drop((c, intruder));
    let all = events(&log);
    let hits: Vec<&serde_json::Value> = all
        .iter()
        .filter(|e| e["event"] == "secret.read" && e["cache"] == "hit")
        .collect();
    // The first read after the write may be a hit too: every hit is counted in one event.
    assert_eq!(hits.len(), 1, "{hits:?}");
    let hit = hits[0];
    let counted = hit["count"].as_u64().unwrap();
    assert!(
        counted == 2 * PER_THREAD as u64 || counted == 2 * PER_THREAD as u64 + 1,
        "{counted}"
    );
    assert_eq!(hit["user"], "svc:test");
    assert_eq!(hit["resource"], "app/db");
    let (first, last) = (
        humantime::parse_rfc3339(hit["first"].as_str().unwrap()).unwrap(),
        humantime::parse_rfc3339(hit["last"].as_str().unwrap()).unwrap(),
    );
    assert!(first <= last);
    assert_eq!(hit["timestamp"], hit["first"]);
    // Denials and misses are written one by one, never coalesced.
    assert_eq!(count(&all, "access.denied"), 3);
    assert!(
        all.iter()
            .filter(|e| e["event"] == "access.denied")
            .all(|e| e.get("count").is_none())
    );
    assert!(
        all.iter()
            .any(|e| e["resource"] == "app/missing" && e["success"] == false)
    );
    assert!(verify_file(&log, &key()).unwrap().is_ok());
}

#[test]
fn a_coalesced_event_is_written_when_its_interval_ends_without_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let c = coalescing(dir.path(), Duration::from_millis(200));
    c.put("app/db", &secret("v")).unwrap();
    c.get("app/db").unwrap();
    c.flush_audit().unwrap();
    for _ in 0..50 {
        c.get_cached(b"app/db").unwrap().unwrap();
    }
    // The interval plus the writer's idle poll (50 ms), with room for a slow machine.
    std::thread::sleep(Duration::from_millis(800));
    let all = events(&log);
    let coalesced: Vec<_> = all.iter().filter(|e| e.get("count").is_some()).collect();
    assert_eq!(coalesced.len(), 1, "{all:?}");
    assert_eq!(coalesced[0]["count"], 50);
    drop(c);
}

#[test]
fn the_audit_config_names_rotation_retention_and_coalescing() {
    let config = sealbox::config::Config::from_yaml_str(
        "secrets: {provider: memory}\n\
         audit:\n  path: /var/log/app/audit.jsonl\n  fsync: batch\n  rotate_size: 64MiB\n  \
         rotate_every: 1d\n  retain_files: 30\n  retain_days: 90\n  coalesce: 1s\n",
    )
    .unwrap();
    let audit = config.audit.unwrap();
    assert_eq!(audit.rotate_size, Some(64 << 20));
    assert_eq!(audit.rotate_every, Some(Duration::from_secs(86_400)));
    assert_eq!(
        (audit.retain_files, audit.retain_days),
        (Some(30), Some(90))
    );
    assert_eq!(audit.coalesce, Some(Duration::from_secs(1)));
    assert!(AuditLogBuilder::from_config(&audit).is_ok());

    let bad = sealbox::config::Config::from_yaml_str(
        "secrets: {provider: memory}\naudit: {path: a.jsonl, rotate_size: 12 parsecs}\n",
    )
    .unwrap_err();
    assert!(bad.to_string().contains("audit.rotate_size"), "{bad}");
    // Retention without rotation would never run: refused, naming what to set.
    let audit = sealbox::config::Config::from_yaml_str(
        "secrets: {provider: memory}\naudit: {path: a.jsonl, retain_files: 3}\n",
    )
    .unwrap()
    .audit
    .unwrap();
    let err = AuditLogBuilder::from_config(&audit).unwrap_err();
    assert!(err.to_string().contains("rotate_size"), "{err}");
}

#[test]
fn checkpoints_vouch_for_the_chain_across_rotated_files() {
    use sealbox::audit::{Checkpoints, VerifyOptions, read_checkpoints, verify_file_with};
    use sealbox::store::SecretName;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let store = Arc::new(MemoryStore::new());
    let name = SecretName::new("audit/checkpoints").unwrap();
    let publish = Checkpoints::new()
        .every(5)
        .store(store.clone(), name.clone());
    write_events(&rotating(dir.path(), |b| b.checkpoints(publish)), 60);
    let published = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(read_checkpoints(store.as_ref(), &name))
        .unwrap();
    assert!(published.len() > 5);
    let with = |allow_unanchored| VerifyOptions {
        allow_unanchored,
        checkpoints: published.clone(),
    };
    let report = verify_file_with(&log, &key(), &with(false)).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert!(report.files.len() > 3);
    // The set cut back to its older files, the active file and the anchor gone: the
    // checkpoints name the cut.
    std::fs::remove_file(&log).unwrap();
    std::fs::remove_file(dir.path().join("audit.jsonl.head")).unwrap();
    let newest = rotated(&log).pop().unwrap();
    std::fs::remove_file(newest).unwrap();
    let problem = verify_file_with(&log, &key(), &with(true))
        .unwrap()
        .problem
        .expect("a cut");
    assert_eq!(problem.kind, ProblemKind::RolledBack, "{problem:?}");
}
