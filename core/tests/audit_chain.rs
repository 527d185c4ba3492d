//! Audit log: completeness under load, tamper detection, strict mode, resume, no values.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sealbox::audit::{
    AuditKey, AuditLog, AuditMode, Checkpoint, CheckpointTarget, Checkpoints, FsyncPolicy,
    ProblemKind, VerifyOptions, read_checkpoints, verify_file, verify_file_with,
};
use sealbox::cache::CacheConfig;
use sealbox::policy::{Capability, Policy, Rule};
use sealbox::store::memory::MemoryStore;
use sealbox::store::{SecretName, SecretStore};
use sealbox::{ErrorKind, ExposeSecret, Principal, Sealbox, Secret};

fn key() -> (Secret, AuditKey) {
    let mut raw = [7u8; 32];
    let s = Secret::from_mut_slice(&mut raw).unwrap();
    let k = AuditKey::new(&s).unwrap();
    (s, k)
}

fn secret(v: &str) -> Secret {
    Secret::from_mut_slice(&mut v.as_bytes().to_vec()).unwrap()
}

fn client(audit: sealbox::audit::AuditLogBuilder) -> Sealbox {
    Sealbox::builder()
        .store(Arc::new(MemoryStore::new()))
        .cache(CacheConfig::default())
        .audit(audit)
        .principal(Principal::new("svc:test"))
        .build()
        .unwrap()
}

/// A blocking client whose audit log is the file at `path` under the test key: two of them
/// are two writers of one log, as two clients of one service are.
fn blocking_client_on(path: &Path) -> sealbox::BlockingSealbox {
    client(
        AuditLog::builder()
            .key(key().1)
            .file(path, FsyncPolicy::Batch),
    )
    .blocking()
    .unwrap()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

/// A log of `n` read events plus its key, in a temp dir.
fn small_log(n: usize) -> (tempfile::TempDir, PathBuf, AuditKey) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let (_, k) = key();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = client(
        AuditLog::builder()
            .key(k.clone())
            .file(&path, FsyncPolicy::Never),
    );
    rt.block_on(async {
        c.put("a/b", &secret("value-never-logged")).await.unwrap();
        for _ in 1..n {
            c.get("a/b").await.unwrap();
        }
        c.flush_audit().await.unwrap();
    });
    drop(c);
    (dir, path, k)
}

#[test]
fn two_threads_times_200k_gets_plus_writes_are_all_recorded_and_verify() {
    const PER_THREAD: usize = 200_000;
    const WRITES: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let (_, k) = key();
    let c = client(
        AuditLog::builder()
            .key(k.clone())
            .file(&path, FsyncPolicy::Never),
    );
    let b = c.blocking().unwrap();
    b.put("app/hot", &secret("v0")).unwrap();
    b.put("app/other", &secret("w0")).unwrap();
    std::thread::scope(|s| {
        for name in ["app/hot", "app/other"] {
            let b = b.clone();
            s.spawn(move || {
                for _ in 0..PER_THREAD {
                    b.get(name).unwrap();
                }
            });
        }
        let b = b.clone();
        s.spawn(move || {
            for i in 0..WRITES {
                b.put("app/hot", &secret(&format!("v{i}"))).unwrap();
            }
        });
    });
    b.flush_audit().unwrap();
    let expected = 2 * PER_THREAD + WRITES + 2;
    let n = lines(&path).len();
    assert_eq!(n, expected);
    let report = verify_file(&path, &k).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert!(report.anchored);
    assert_eq!(report.last_seq, Some(expected as u64 - 1));
    assert_eq!(c.metrics().gets, 2 * PER_THREAD as u64);
}

#[test]
fn every_edit_deletion_and_reordering_is_found_at_its_line() {
    let (_dir, path, k) = small_log(8);
    let original = lines(&path);
    assert!(verify_file(&path, &k).unwrap().is_ok());
    for i in 0..original.len() {
        // edit: flip the user name
        let mut edited = original.clone();
        edited[i] = edited[i].replace("svc:test", "svc:tess");
        write_lines(&path, &edited);
        let p = verify_file(&path, &k).unwrap().problem.unwrap();
        assert_eq!(
            (p.line, p.kind),
            (i as u64 + 1, ProblemKind::Edited),
            "edit {i}"
        );

        // deletion
        let mut deleted = original.clone();
        deleted.remove(i);
        write_lines(&path, &deleted);
        let p = verify_file(&path, &k).unwrap().problem.unwrap();
        assert_eq!(p.kind, ProblemKind::Missing, "delete {i}: {p:?}");
        assert_eq!(p.line, i as u64 + 1, "delete {i}");

        // reordering with the next line
        if i + 1 < original.len() {
            let mut swapped = original.clone();
            swapped.swap(i, i + 1);
            write_lines(&path, &swapped);
            let p = verify_file(&path, &k).unwrap().problem.unwrap();
            assert_eq!(
                (p.line, p.kind),
                (i as u64 + 1, ProblemKind::Reordered),
                "swap {i}"
            );
        }

        // a garbage line
        let mut broken = original.clone();
        broken[i] = "not json".into();
        write_lines(&path, &broken);
        let p = verify_file(&path, &k).unwrap().problem.unwrap();
        assert_eq!((p.line, p.kind), (i as u64 + 1, ProblemKind::Broken));
    }
    write_lines(&path, &original);
    assert!(verify_file(&path, &k).unwrap().is_ok());
    // another key: reported as the wrong key, not as an edit of line 1
    let mut other = [9u8; 32];
    let other = AuditKey::new(&Secret::from_mut_slice(&mut other).unwrap()).unwrap();
    let p = verify_file(&path, &other).unwrap().problem.unwrap();
    assert_eq!((p.line, p.kind), (1, ProblemKind::WrongKey));
    assert!(p.detail.contains("key does not match"), "{}", p.detail);
}

#[test]
fn bytes_that_are_not_text_are_reported_at_their_line_not_as_a_read_failure() {
    let (_dir, path, k) = small_log(6);
    let original = std::fs::read(&path).unwrap();
    let starts: Vec<usize> = std::iter::once(0)
        .chain(
            original
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        )
        .filter(|&i| i < original.len())
        .collect();
    for (i, &start) in starts.iter().enumerate() {
        // A byte inside the line's user name replaced by one that is not UTF-8.
        let at = start
            + original[start..]
                .windows(8)
                .position(|w| w == b"svc:test")
                .unwrap();
        let mut edited = original.clone();
        edited[at + 4] = 0xff;
        std::fs::write(&path, &edited).unwrap();
        let report = verify_file(&path, &k).unwrap();
        assert_eq!(report.lines, starts.len() as u64);
        assert_eq!(report.last_seq, (i as u64).checked_sub(1), "line {i}");
        let p = report.problem.unwrap();
        assert_eq!(
            (p.line, p.kind),
            (i as u64 + 1, ProblemKind::Broken),
            "line {i}"
        );
    }
    // A line cut inside a multi-byte character, then the rest of the file.
    let mut cut = original[..starts[2]].to_vec();
    cut.extend_from_slice(b"{\"user\":\"\xc3\n");
    cut.extend_from_slice(&original[starts[2]..]);
    std::fs::write(&path, &cut).unwrap();
    let p = verify_file(&path, &k).unwrap().problem.unwrap();
    assert_eq!((p.line, p.kind), (3, ProblemKind::Broken));
    // An anchor that is not text: a broken anchor, past the last line.
    std::fs::write(&path, &original).unwrap();
    let head = path.with_extension("jsonl.head");
    assert!(
        verify_file(&path, &k).unwrap().anchored,
        "no anchor to break"
    );
    std::fs::write(&head, b"{\"seq\": 5, \"hash\": \"\xa6\"}").unwrap();
    let report = verify_file(&path, &k).unwrap();
    let p = report.problem.unwrap();
    assert_eq!(
        (p.line, p.kind),
        (starts.len() as u64 + 1, ProblemKind::Broken)
    );
}

#[test]
fn a_log_continues_its_chain_after_a_restart() {
    let (_dir, path, k) = small_log(3);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = client(
        AuditLog::builder()
            .key(k.clone())
            .file(&path, FsyncPolicy::Batch),
    );
    rt.block_on(async {
        c.put("a/b", &secret("x")).await.unwrap();
        c.get("a/b").await.unwrap();
        c.flush_audit().await.unwrap();
    });
    let head = c.audit_log().unwrap().head();
    drop(c);
    let report = verify_file(&path, &k).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.lines, 5);
    assert_eq!(head.next_seq, 5);
    assert_eq!(report.last_hash.as_deref(), Some(head.prev_hash.as_str()));
    // a log whose last line does not verify under the key refuses to continue
    let mut wrong = [1u8; 32];
    let wrong = AuditKey::new(&Secret::from_mut_slice(&mut wrong).unwrap()).unwrap();
    let err = AuditLog::builder()
        .key(wrong)
        .file(&path, FsyncPolicy::Never)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity);
}

#[test]
fn strict_mode_fails_accesses_once_the_log_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let logdir = dir.path().join("logs");
    std::fs::create_dir(&logdir).unwrap();
    let path = logdir.join("audit.jsonl");
    let (_, k) = key();
    let c = client(
        AuditLog::builder()
            .key(k)
            .file(&path, FsyncPolicy::Batch)
            .mode(AuditMode::Strict)
            .strict_timeout(std::time::Duration::from_secs(2)),
    );
    let b = c.blocking().unwrap();
    b.put("a/b", &secret("x")).unwrap();
    assert_eq!(b.get("a/b").unwrap().expose_secret(), b"x");
    std::fs::remove_dir_all(&logdir).unwrap();
    let err = b.get("a/b").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(
        b.put("a/c", &secret("y")).unwrap_err().kind(),
        ErrorKind::Unavailable
    );
    // once the path is writable again, accesses go through again
    std::fs::create_dir(&logdir).unwrap();
    assert_eq!(b.get("a/b").unwrap().expose_secret(), b"x");
}

#[test]
fn best_effort_mode_keeps_events_while_the_sink_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let logdir = dir.path().join("logs");
    std::fs::create_dir(&logdir).unwrap();
    let path = logdir.join("audit.jsonl");
    let (_, k) = key();
    let c = client(
        AuditLog::builder()
            .key(k.clone())
            .file(&path, FsyncPolicy::Batch),
    );
    let b = c.blocking().unwrap();
    b.put("a/b", &secret("x")).unwrap();
    b.flush_audit().unwrap();
    std::fs::remove_dir_all(&logdir).unwrap();
    for _ in 0..5 {
        b.get("a/b").unwrap();
    }
    assert_eq!(b.flush_audit().unwrap_err().kind(), ErrorKind::Unavailable);
    std::fs::create_dir(&logdir).unwrap();
    b.flush_audit().unwrap();
    // the reopened file holds the five reads, continuing the chain at seq 1
    let l = lines(&path);
    assert_eq!(l.len(), 5);
    assert!(l[0].contains("\"seq\":1,"), "{}", l[0]);
}

/// Every failed access the client audits hands its caller the `request_id` of its audit line
/// (`Error::request_id`), so a user holding the error can find the line, and the other way
/// round.
#[test]
fn each_failed_access_error_carries_the_request_id_of_its_audit_line() {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = seen.clone();
    let (_, k) = key();
    let c = Sealbox::builder()
        .store(Arc::new(MemoryStore::new()))
        .audit(AuditLog::builder().key(k).callback(move |r| {
            sink.lock().unwrap().push(r.line.to_owned());
            Ok(())
        }))
        .policy(Policy::new(vec![
            Rule::allow(
                &["svc:app"],
                &[
                    Capability::Read,
                    Capability::Write,
                    Capability::List,
                    Capability::Delete,
                ],
                &["app/*"],
            )
            .unwrap(),
        ]))
        .principal(Principal::new("svc:app"))
        .build()
        .unwrap();
    let intruder = c.as_principal(Principal::new("svc:intruder"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let errors = rt.block_on(async {
        c.put("app/db", &secret("TOPSECRET-VALUE-123"))
            .await
            .unwrap();
        let denied_miss = intruder.get("app/other").await.unwrap_err();
        c.get("app/db").await.unwrap(); // cached now
        let denied_hit = intruder.get("app/db").await.unwrap_err();
        let not_found = c.get("app/missing").await.unwrap_err();
        let denied_write = intruder.put("app/db", &secret("x")).await.unwrap_err();
        let describe_missing = c.describe("app/missing").await.unwrap_err();
        let delete_missing = c
            .delete("app/missing", &Default::default())
            .await
            .unwrap_err();
        c.flush_audit().await.unwrap();
        vec![
            ("access.denied", denied_miss),
            ("access.denied", denied_hit),
            ("secret.read", not_found),
            ("access.denied", denied_write),
            ("secret.describe", describe_missing),
            ("secret.delete", delete_missing),
        ]
    });
    let failed: Vec<serde_json::Value> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["success"] == false)
        .collect();
    assert_eq!(failed.len(), errors.len(), "{failed:?}");
    for ((event, err), line) in errors.iter().zip(&failed) {
        assert_eq!(line["event"], *event, "{line}");
        let id = err
            .request_id()
            .unwrap_or_else(|| panic!("{event}: {err:?} has no request id"));
        assert_eq!(line["request_id"].as_str(), Some(id), "{event}: {err}");
        assert_eq!(err.audit_request_id(), Some(id));
        assert!(err.to_string().contains(id), "{err}");
    }
    assert_eq!(errors[0].1.kind(), ErrorKind::AccessDenied);
    assert_eq!(errors[2].1.kind(), ErrorKind::NotFound);
    // Ids are per event: no two failures share one.
    let mut ids: Vec<&str> = errors.iter().filter_map(|(_, e)| e.request_id()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), errors.len());
}

#[test]
fn a_client_without_an_audit_log_gives_no_request_id() {
    let c = Sealbox::builder()
        .store(Arc::new(MemoryStore::new()))
        .build()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt.block_on(c.get("app/missing")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(err.request_id(), None);
}

#[test]
fn events_name_what_happened_and_never_hold_a_value() {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = seen.clone();
    let (_, k) = key();
    let store = Arc::new(MemoryStore::new());
    let c = Sealbox::builder()
        .store(store.clone())
        .audit(AuditLog::builder().key(k).callback(move |r| {
            sink.lock().unwrap().push(r.line.to_owned());
            Ok(())
        }))
        .policy(Policy::new(vec![
            Rule::allow(
                &["svc:app"],
                &[Capability::Read, Capability::Write, Capability::List],
                &["app/*"],
            )
            .unwrap(),
        ]))
        .principal(Principal::new("svc:app"))
        .build()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        c.put("app/db", &secret("TOPSECRET-VALUE-123"))
            .await
            .unwrap();
        c.get("app/db").await.unwrap();
        c.get("app/db").await.unwrap();
        c.list("app/").await.unwrap();
        assert_eq!(
            c.get("app/missing").await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
        let other = c
            .as_principal(Principal::new("svc:intruder"))
            .with_source("203.0.113.7");
        assert_eq!(
            other.get("app/db").await.unwrap_err().kind(),
            ErrorKind::AccessDenied
        );
        c.flush_audit().await.unwrap();
    });
    let lines = seen.lock().unwrap().clone();
    assert!(lines.iter().all(|l| !l.contains("TOPSECRET")));
    let events: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary: Vec<(String, String, bool, String)> = events
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_owned(),
                e["user"].as_str().unwrap().to_owned(),
                e["success"].as_bool().unwrap(),
                e["cache"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect();
    let s = |e: &str, u: &str, ok: bool, c: &str| (e.to_owned(), u.to_owned(), ok, c.to_owned());
    assert_eq!(
        summary,
        vec![
            s("secret.write", "svc:app", true, "-"),
            s("secret.read", "svc:app", true, "miss"),
            s("secret.read", "svc:app", true, "hit"),
            s("secret.list", "svc:app", true, "-"),
            s("secret.read", "svc:app", false, "-"),
            s("access.denied", "svc:intruder", false, "-"),
        ]
    );
    assert_eq!(events[1]["store"], "default");
    assert_eq!(events[1]["version"], events[0]["version"]);
    assert_eq!(events[4]["reason"], "not_found");
    assert_eq!(events[5]["source_ip"], "203.0.113.7");
    assert_eq!(events[5]["level"], "warn");
    assert!(
        events[0]["source_ip"]
            .as_str()
            .unwrap()
            .starts_with("process:")
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i as u64);
    }
    drop(store);
}

#[test]
fn cached_reads_name_the_principal_and_time_of_each_call() {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = seen.clone();
    let (_, k) = key();
    let c = client(AuditLog::builder().key(k).callback(move |r| {
        sink.lock().unwrap().push(r.line.to_owned());
        Ok(())
    }))
    .blocking()
    .unwrap();
    c.put("app/db", &secret("v")).unwrap();
    c.get("app/db").unwrap();
    c.flush_audit().unwrap();
    seen.lock().unwrap().clear();
    let started = std::time::SystemTime::now();
    // Hits on two threads, each switching principals call by call (a principal made anew
    // for some calls, so addresses come and go), none with a per-call source.
    let pattern = |t: usize| -> Vec<String> {
        (0..300)
            .map(|i| match (i * 7 + t) % 3 {
                0 => "svc:test".to_owned(),
                1 => format!("svc:t{t}"),
                _ => format!("user:{t}-{}", i % 5),
            })
            .collect()
    };
    std::thread::scope(|s| {
        for t in 0..2 {
            let c = &c;
            s.spawn(move || {
                for who in pattern(t) {
                    if who == "svc:test" {
                        c.get("app/db").unwrap();
                    } else {
                        c.as_principal(Principal::new(&who)).get("app/db").unwrap();
                    }
                    if who.ends_with("-4") {
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                }
            });
        }
    });
    c.flush_audit().unwrap();
    let finished = std::time::SystemTime::now();
    let events: Vec<serde_json::Value> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 600);
    let mut users: Vec<String> = events
        .iter()
        .map(|e| e["user"].as_str().unwrap().to_owned())
        .collect();
    let mut want: Vec<String> = pattern(0).into_iter().chain(pattern(1)).collect();
    users.sort();
    want.sort();
    assert_eq!(users, want);
    // Each thread's reads, in its order: its own principals appear in the order it called.
    for t in 0..2 {
        let mine: Vec<String> = events
            .iter()
            .map(|e| e["user"].as_str().unwrap().to_owned())
            .filter(|u| u.starts_with(&format!("svc:t{t}")) || u.starts_with(&format!("user:{t}-")))
            .collect();
        let expected: Vec<String> = pattern(t).into_iter().filter(|u| u != "svc:test").collect();
        assert_eq!(mine, expected);
    }
    // Dated by the wall clock within the calls (coarse: a tick before the first is fine).
    let tick = std::time::Duration::from_millis(20);
    for e in &events {
        let at = humantime::parse_rfc3339_weak(e["timestamp"].as_str().unwrap())
            .unwrap_or_else(|_| panic!("a timestamp: {e}"));
        assert!(at + tick >= started && at <= finished, "{e}");
        assert_eq!(e["cache"], "hit");
    }
}

#[test]
fn the_default_key_is_created_beside_the_log_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let c = client(AuditLog::builder().file(&path, FsyncPolicy::Never));
    c.blocking().unwrap().flush_audit().unwrap();
    drop(c);
    let key_path = sealbox::audit::default_key_path(&path);
    let mode = std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let mut f = std::fs::File::open(&key_path).unwrap();
    let k = AuditKey::new(&Secret::from_reader(&mut f, 64).unwrap()).unwrap();
    let c = client(AuditLog::builder().file(&path, FsyncPolicy::Never));
    let b = c.blocking().unwrap();
    b.put("x/y", &secret("z")).unwrap();
    b.flush_audit().unwrap();
    drop((b, c));
    assert!(verify_file(&path, &k).unwrap().is_ok());
    let _ = MemoryStore::new().kind();
}

/// Set in the worker processes the shared-log test spawns: the config they all open.
const WORKER_CONFIG_ENV: &str = "SEALBOX_AUDIT_WORKER_CONFIG";
const READS_PER_WORKER: usize = 10_000;

/// The parsed lines of a log, checking that `seq` runs 0, 1, 2, ... without a gap.
fn events_in_seq_order(path: &Path) -> Vec<serde_json::Value> {
    let events: Vec<serde_json::Value> = lines(path)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i as u64, "line {}", i + 1);
    }
    events
}

fn count(events: &[serde_json::Value], name: &str) -> usize {
    events.iter().filter(|e| e["event"] == name).count()
}

/// One worker of a pre-forking server (gunicorn, uWSGI, Celery): a client opened from the
/// service's config, one write, then its reads. Runs only in the spawned processes.
#[test]
fn audit_worker_child() {
    let Ok(config) = std::env::var(WORKER_CONFIG_ENV) else {
        return;
    };
    let c = sealbox::BlockingSealbox::from_config(&config).unwrap();
    c.put("app/db", &secret("worker-value")).unwrap();
    for _ in 0..READS_PER_WORKER {
        c.get("app/db").unwrap();
    }
    c.flush_audit().unwrap();
}

#[test]
fn four_worker_processes_on_one_config_write_one_log_that_verifies() {
    if std::env::var(WORKER_CONFIG_ENV).is_ok() {
        return;
    }
    const WORKERS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let config = dir.path().join("sealbox.yaml");
    std::fs::write(
        &config,
        format!(
            "secrets: {{provider: memory}}\nprincipal: svc:web\naudit: {{path: {}}}\n",
            log.display()
        ),
    )
    .unwrap();
    // All start at once, as a pre-forking server's workers do: they race to create the key
    // and the log, then append to it together.
    let workers: Vec<std::process::Child> = (0..WORKERS)
        .map(|_| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "audit_worker_child", "--test-threads=1"])
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
    assert!(report.anchored);
    let events = events_in_seq_order(&log);
    assert_eq!(report.lines, events.len() as u64);
    assert_eq!(report.last_seq, Some(events.len() as u64 - 1));
    assert_eq!(count(&events, "secret.read"), WORKERS * READS_PER_WORKER);
    assert_eq!(count(&events, "secret.write"), WORKERS);
    assert_eq!(events.len(), WORKERS * (READS_PER_WORKER + 1));
    // Every worker's own events, each in the order it made them.
    let mut sources: Vec<&str> = events
        .iter()
        .map(|e| e["source_ip"].as_str().unwrap())
        .collect();
    sources.sort_unstable();
    sources.dedup();
    assert_eq!(sources.len(), WORKERS, "{sources:?}");
}

#[test]
fn two_clients_in_one_process_share_one_log_that_verifies() {
    const READS: usize = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let (a, b) = (blocking_client_on(&path), blocking_client_on(&path));
    std::thread::scope(|s| {
        for c in [&a, &b] {
            s.spawn(move || {
                c.put("app/db", &secret("v")).unwrap();
                for _ in 0..READS {
                    c.get("app/db").unwrap();
                }
                c.flush_audit().unwrap();
            });
        }
    });
    drop((a, b));
    let report = verify_file(&path, &key().1).unwrap();
    assert!(report.is_ok(), "{report:?}");
    let events = events_in_seq_order(&path);
    assert_eq!(count(&events, "secret.read"), 2 * READS);
    assert_eq!(events.len(), 2 * (READS + 1));
}

#[test]
fn verification_stopped_by_an_edit_still_says_whether_the_anchor_is_there() {
    let (_dir, path, k) = small_log(4);
    let mut edited = lines(&path);
    edited[1] = edited[1].replace("svc:test", "svc:tess");
    write_lines(&path, &edited);
    let report = verify_file(&path, &k).unwrap();
    assert_eq!(report.problem.unwrap().kind, ProblemKind::Edited);
    assert!(report.anchored, "the anchor is beside the file");
    std::fs::remove_file(path.with_extension("jsonl.head")).unwrap();
    let report = verify_file(&path, &k).unwrap();
    assert_eq!(report.problem.unwrap().kind, ProblemKind::Edited);
    assert!(!report.anchored);
}

#[test]
fn a_wrong_key_is_named_as_such_even_for_a_one_line_log() {
    let (_dir, path, k) = small_log(1);
    assert_eq!(lines(&path).len(), 1);
    let mut other = [9u8; 32];
    let other = AuditKey::new(&Secret::from_mut_slice(&mut other).unwrap()).unwrap();
    let report = verify_file(&path, &other).unwrap();
    let p = report.problem.unwrap();
    assert_eq!((p.line, p.kind), (1, ProblemKind::WrongKey));
    assert_eq!(report.lines, 1);
    // With the right key, an edited single line is an edit.
    let edited = [lines(&path)[0].replace("svc:test", "svc:tess")];
    write_lines(&path, &edited);
    let p = verify_file(&path, &k).unwrap().problem.unwrap();
    assert_eq!((p.line, p.kind), (1, ProblemKind::Edited));
}

/// Appends what a writer killed in the middle of a line leaves: the first half of a signed
/// line, without its newline. Returns the fragment's length.
fn append_cut_off_line(path: &Path, like: &str) -> usize {
    use std::io::Write;
    let fragment = &like[..like.len() / 2];
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(fragment.as_bytes()).unwrap();
    fragment.len()
}

#[test]
fn a_line_cut_off_by_a_writer_that_stopped_is_marked_by_the_next_writer_and_the_log_verifies() {
    let (_dir, path, k) = small_log(3);
    let before = lines(&path);
    let cut = append_cut_off_line(&path, &before[2]);
    // Until another writer comes, the fragment is what the file ends with: reported.
    let p = verify_file(&path, &k).unwrap().problem.unwrap();
    assert_eq!((p.line, p.kind), (4, ProblemKind::Broken));
    assert!(p.detail.contains("cut off"), "{}", p.detail);

    let c = client(
        AuditLog::builder()
            .key(k.clone())
            .file(&path, FsyncPolicy::Batch),
    )
    .blocking()
    .unwrap();
    c.put("a/c", &secret("v")).unwrap();
    c.get("a/c").unwrap();
    c.flush_audit().unwrap();
    drop(c);

    let report = verify_file(&path, &k).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.cut_off_lines, vec![4]);
    assert_eq!(report.lines, 3 + 1 + 1 + 2);
    assert_eq!(report.last_seq, Some(5));
    let after = lines(&path);
    assert_eq!(after[3].len(), cut);
    let marker: serde_json::Value = serde_json::from_str(&after[4]).unwrap();
    assert_eq!(marker["event"], sealbox::audit::TORN_TAIL_EVENT);
    assert_eq!(marker["seq"], 3);
    assert_eq!(marker["level"], "warn");
    assert!(
        marker["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("{cut} bytes"))
    );
    // A fragment without the signed line after it is not accepted.
    let mut forged = after.clone();
    forged.remove(4);
    write_lines(&path, &forged);
    let p = verify_file(&path, &k).unwrap().problem.unwrap();
    assert_eq!((p.line, p.kind), (4, ProblemKind::Broken));
}

#[test]
fn a_last_line_cut_in_half_after_the_anchor_vouched_for_it_stays_a_reported_loss() {
    let (_dir, path, k) = small_log(3);
    let before = lines(&path);
    // Cut the anchored last line in half, as someone hiding that event would.
    let mut text = before[..2].join("\n");
    text.push('\n');
    text.push_str(&before[2][..before[2].len() / 2]);
    std::fs::write(&path, text).unwrap();
    let c = client(
        AuditLog::builder()
            .key(k.clone())
            .file(&path, FsyncPolicy::Batch),
    )
    .blocking()
    .unwrap();
    c.put("a/c", &secret("v")).unwrap();
    c.flush_audit().unwrap();
    drop(c);
    let report = verify_file(&path, &k).unwrap();
    let p = report.problem.unwrap();
    assert_eq!((p.line, p.kind), (3, ProblemKind::Broken), "{}", p.detail);
    assert!(report.cut_off_lines.is_empty());
}

#[test]
fn a_line_longer_than_a_page_written_by_another_client_is_continued_after() {
    use sealbox::audit::{Action, AuditEvent, Resource};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let (a, b) = (blocking_client_on(&path), blocking_client_on(&path));
    let long = "x".repeat(6000);
    a.client()
        .record_event(AuditEvent::access(
            Action::List,
            Principal::new("svc:test"),
            Resource::named(&long),
        ))
        .unwrap();
    a.flush_audit().unwrap();
    b.put("a/b", &secret("v")).unwrap();
    b.flush_audit().unwrap();
    drop((a, b));
    let report = verify_file(&path, &key().1).unwrap();
    assert!(report.is_ok(), "{report:?}");
    let events = events_in_seq_order(&path);
    assert_eq!(events.len(), 2);
    assert!(lines(&path)[0].len() > 6000);
}

// Cut or rolled-back logs: the `.head` anchor, and checkpoints published away from the log.

fn head_of(path: &Path) -> PathBuf {
    path.with_extension("jsonl.head")
}

fn verify_with(
    path: &Path,
    k: &AuditKey,
    allow_unanchored: bool,
    checkpoints: &[Checkpoint],
) -> sealbox::audit::VerifyReport {
    let options = VerifyOptions {
        allow_unanchored,
        checkpoints: checkpoints.to_vec(),
    };
    verify_file_with(path, k, &options).unwrap()
}

/// A client on the log at `path` under the test key that appends `n` writes, each in its own
/// batch (as a service that writes now and then does), then closes.
fn append_events(path: &Path, n: usize, checkpoints: Option<Checkpoints>) {
    let mut audit = AuditLog::builder()
        .key(key().1)
        .file(path, FsyncPolicy::Batch);
    if let Some(c) = checkpoints {
        audit = audit.checkpoints(c);
    }
    let c = client(audit).blocking().unwrap();
    for i in 0..n {
        c.put("app/db", &secret(&format!("value-never-logged-{i}")))
            .unwrap();
        c.flush_audit().unwrap();
    }
}

#[test]
fn a_log_whose_anchor_was_deleted_fails_as_missing_anchor_unless_unanchored_logs_are_allowed() {
    let (_dir, path, k) = small_log(5);
    assert!(verify_file(&path, &k).unwrap().is_ok());
    // Cut the tail and delete the anchor that would have told.
    let all = lines(&path);
    write_lines(&path, &all[..3]);
    std::fs::remove_file(head_of(&path)).unwrap();
    let report = verify_file(&path, &k).unwrap();
    let p = report.problem.expect("a log without its anchor fails");
    assert_eq!(
        (p.line, p.kind),
        (4, ProblemKind::MissingAnchor),
        "{}",
        p.detail
    );
    assert!(p.detail.contains("missing anchor"), "{}", p.detail);
    assert!(!report.anchored);
    assert_eq!(p.kind.as_str(), "missing_anchor");
    // A log that never had an anchor is accepted when the caller says so.
    let report = verify_with(&path, &k, true, &[]);
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.last_seq, Some(2));
    // An empty log without an anchor is a log cut to nothing.
    std::fs::write(&path, "").unwrap();
    let p = verify_file(&path, &k).unwrap().problem.unwrap();
    assert_eq!((p.line, p.kind), (1, ProblemKind::MissingAnchor));
}

#[test]
fn an_old_anchor_put_back_after_the_log_was_cut_and_written_again_is_a_hash_mismatch() {
    let (_dir, path, k) = small_log(5);
    let old_anchor = std::fs::read(head_of(&path)).unwrap();
    let anchored: serde_json::Value = serde_json::from_slice(&old_anchor).unwrap();
    assert_eq!(anchored["seq"], 4);
    // Cut back to seq 2, then let the log go on past the old anchor's seq.
    let all = lines(&path);
    write_lines(&path, &all[..3]);
    append_events(&path, 3, None);
    assert_eq!(lines(&path).len(), 6);
    assert!(
        verify_file(&path, &k).unwrap().is_ok(),
        "the new anchor vouches for the new tail"
    );
    // The old anchor put back: its seq is within the log, its hash is not the log's there.
    std::fs::write(head_of(&path), &old_anchor).unwrap();
    let p = verify_file(&path, &k).unwrap().problem.expect("a mismatch");
    assert_eq!(
        (p.line, p.kind),
        (5, ProblemKind::HashMismatch),
        "{}",
        p.detail
    );
    assert!(p.detail.contains("seq 4"), "{}", p.detail);
    assert!(p.detail.contains(".head anchor"), "{}", p.detail);
}

#[test]
fn checkpoints_in_a_store_catch_a_cut_log_whose_anchor_was_deleted_or_signed_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let (_, k) = key();
    let store = Arc::new(MemoryStore::new());
    let name = SecretName::new("audit/checkpoints").unwrap();
    let publish = Checkpoints::new()
        .every(3)
        .store(store.clone(), name.clone());
    append_events(&path, 10, Some(publish));
    let published = rt()
        .block_on(read_checkpoints(store.as_ref(), &name))
        .unwrap();
    // Every 3 events (seq 2, 5, 8), and one at close for seq 9.
    let seqs: Vec<u64> = published.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, [2, 5, 8, 9]);
    assert!(published.iter().all(|c| c.verifies(&k)));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("value-never-logged"));

    // The whole log verifies against them.
    let report = verify_with(&path, &k, false, &published);
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.checkpoints, 4);

    // Cut to seq 5, anchor deleted: the checkpoints name the cut.
    let all = lines(&path);
    write_lines(&path, &all[..6]);
    std::fs::remove_file(head_of(&path)).unwrap();
    let p = verify_with(&path, &k, true, &published)
        .problem
        .expect("a cut");
    assert_eq!(
        (p.line, p.kind),
        (7, ProblemKind::RolledBack),
        "{}",
        p.detail
    );
    assert!(p.detail.contains("records seq 9"), "{}", p.detail);

    // Whoever holds the key signs the cut log a new anchor by writing to it: the log and its
    // anchor agree, and only the checkpoints tell.
    append_events(&path, 1, None);
    assert!(verify_file(&path, &k).unwrap().is_ok());
    let p = verify_with(&path, &k, false, &published)
        .problem
        .expect("a cut");
    assert_eq!(p.kind, ProblemKind::RolledBack, "{}", p.detail);
    // Written on past the last checkpoint: the first checkpoint after the cut (seq 8) names
    // another hash than the rewritten line there; the ones before the cut still match.
    append_events(&path, 4, None);
    assert!(verify_file(&path, &k).unwrap().is_ok());
    let p = verify_with(&path, &k, false, &published)
        .problem
        .expect("a rewrite");
    assert_eq!(
        (p.line, p.kind),
        (9, ProblemKind::HashMismatch),
        "{}",
        p.detail
    );
    assert!(
        p.detail.contains("checkpoint of") && p.detail.contains("seq 8"),
        "{}",
        p.detail
    );

    // A checkpoint not signed with the log's key is refused, not trusted.
    let mut forged = published[3].clone();
    forged.seq = 3;
    let p = verify_with(&path, &k, false, &[forged]).problem.unwrap();
    assert_eq!(p.kind, ProblemKind::Broken, "{}", p.detail);
}

#[test]
fn a_checkpoint_never_vouches_for_lines_the_log_did_not_keep() {
    let dir = tempfile::tempdir().unwrap();
    let logdir = dir.path().join("logs");
    std::fs::create_dir(&logdir).unwrap();
    let path = logdir.join("audit.jsonl");
    let store = Arc::new(MemoryStore::new());
    let name = SecretName::new("audit/checkpoints").unwrap();
    let c = client(
        AuditLog::builder()
            .key(key().1)
            .file(&path, FsyncPolicy::Batch)
            .checkpoints(
                Checkpoints::new()
                    .every(1)
                    .store(store.clone(), name.clone()),
            )
            .mode(AuditMode::Strict)
            .strict_timeout(std::time::Duration::from_secs(1)),
    );
    let b = c.blocking().unwrap();
    b.put("a/b", &secret("x")).unwrap();
    let published = || {
        rt().block_on(read_checkpoints(store.as_ref(), &name))
            .unwrap()
    };
    // The write's intent (seq 0), then its outcome (seq 1), each waited for.
    assert_eq!(
        published().iter().map(|c| c.seq).collect::<Vec<_>>(),
        [0, 1]
    );
    // The log cannot be written: the checkpoint publisher is no place that keeps events, so
    // strict mode still refuses, and no checkpoint names a line the log does not have.
    std::fs::remove_dir_all(&logdir).unwrap();
    assert_eq!(b.get("a/b").unwrap_err().kind(), ErrorKind::Unavailable);
    assert_eq!(published().len(), 2);
}

#[test]
fn checkpoints_reach_a_syslog_socket_with_a_mac_that_verifies() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let socket = dir.path().join("log.sock");
    let syslog = UnixDatagram::bind(&socket).unwrap();
    syslog
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let (_, k) = key();
    append_events(
        &path,
        5,
        Some(Checkpoints::new().every(2).syslog(&socket, &path)),
    );
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    while got.len() < 3 {
        let n = syslog.recv(&mut buf).expect("a checkpoint datagram");
        got.push(String::from_utf8(buf[..n].to_vec()).unwrap());
    }
    let log = lines(&path);
    let hash_at = |seq: u64| -> String {
        let v: serde_json::Value = serde_json::from_str(&log[seq as usize]).unwrap();
        v["hash"].as_str().unwrap().to_owned()
    };
    let mut seqs = Vec::new();
    for message in &got {
        // RFC 3164: <PRI>, facility auth (4) * 8 + notice (5) = 37, then the tag.
        assert!(message.starts_with("<37>"), "{message}");
        assert!(message.contains("sealbox-audit["), "{message}");
        assert!(message.contains(path.to_str().unwrap()), "{message}");
        assert!(!message.contains("value-never-logged"), "{message}");
        let c = Checkpoint::from_syslog_message(message).expect("a checkpoint");
        assert!(c.verifies(&k), "{message}");
        assert_eq!(c.hash, hash_at(c.seq));
        seqs.push(c.seq);
    }
    assert_eq!(seqs, [1, 3, 4]);
    // What syslog got is what verification takes.
    let from_syslog: Vec<Checkpoint> = got
        .iter()
        .filter_map(|m| Checkpoint::from_syslog_message(m))
        .collect();
    assert!(verify_with(&path, &k, false, &from_syslog).is_ok());
}

#[test]
fn the_checkpoint_config_names_syslog_and_stores() {
    let yaml = "secrets: {provider: memory}\n\
                audit: {path: ./audit.jsonl, checkpoints: {every: 5, interval: 10s, \
                to: [syslog, {syslog: {socket: /run/test.sock}}, {store: default/audit/cp}]}}\n";
    let config = sealbox::config::Config::from_yaml_str(yaml).unwrap();
    let cp = config.audit.unwrap().checkpoints.unwrap();
    assert_eq!((cp.every, cp.interval.as_secs()), (5, 10));
    assert_eq!(
        cp.to,
        [
            CheckpointTarget::Syslog {
                socket: sealbox::audit::DEFAULT_SYSLOG_SOCKET.into()
            },
            CheckpointTarget::Syslog {
                socket: "/run/test.sock".into()
            },
            CheckpointTarget::Store {
                store: "default".into(),
                name: SecretName::new("audit/cp").unwrap()
            },
        ]
    );
    // The short form: a one-pair mapping inside the flow sequence.
    let yaml = "secrets: {provider: memory}\n\
                audit: {checkpoints: {to: [syslog, store: default/audit/cp]}}\n";
    let config = sealbox::config::Config::from_yaml_str(yaml).unwrap();
    let cp = config.audit.unwrap().checkpoints.unwrap();
    assert_eq!((cp.every, cp.interval.as_secs()), (1000, 60));
    assert_eq!(cp.to.len(), 2);
    for bad in ["[sylog]", "[{store: nostore}]", "[{file: x}]"] {
        let yaml =
            format!("secrets: {{provider: memory}}\naudit: {{checkpoints: {{to: {bad}}}}}\n");
        let err = sealbox::config::Config::from_yaml_str(&yaml).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{bad}");
        assert!(
            err.message().contains("checkpoints.to"),
            "{bad}: {}",
            err.message()
        );
    }
    // A store the config does not define is refused when the client is built.
    let yaml = "secrets: {provider: memory}\n\
                audit: {checkpoints: {to: [{store: other/audit/cp}]}}\n";
    let config = sealbox::config::Config::from_yaml_str(yaml).unwrap();
    let err = rt()
        .block_on(config.build(&sealbox::config::ProviderRegistry::global_snapshot()))
        .unwrap_err();
    assert!(
        err.message().contains("no store named \"other\""),
        "{}",
        err.message()
    );
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}
