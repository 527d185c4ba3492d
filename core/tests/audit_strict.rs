//! Strict audit mode tells the truth (issue 26, item 2), and what was not audited is now
//! (item 4: `list` denials, refresh-ahead reads).
//!
//! Each test breaks the log the way it breaks in production: its directory is removed, its
//! filesystem (a small tmpfs) fills up, another writer holds its lock. Then it checks what
//! the store holds and what the log says: a change is made only after its intent is written;
//! its outcome is written as it happened, however late; an access refused because the log
//! was too slow is logged as refused, not as the success it was not; a sink that failed has
//! no gap and misses nothing once it writes again.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sealbox::audit::{AuditKey, AuditLog, AuditMode, FsyncPolicy, verify_file};
use sealbox::cache::CacheConfig;
use sealbox::policy::{Capability, Policy, Rule};
use sealbox::store::memory::MemoryStore;
use sealbox::store::{
    Capabilities, DeleteOptions, ListOptions, ListPage, PutOptions, SecretMetadata, SecretName,
    SecretStore, SecretVersion, Stage, VersionId, VersionInfo, VersionSelector,
};
use sealbox::{BlockingSealbox, ErrorKind, ExposeSecret, Principal, Sealbox, Secret};

fn key() -> AuditKey {
    let mut raw = [7u8; 32];
    AuditKey::new(&Secret::from_mut_slice(&mut raw).unwrap()).unwrap()
}

fn secret(v: &str) -> Secret {
    Secret::from_mut_slice(&mut v.as_bytes().to_vec()).unwrap()
}

fn strict_log(path: &Path, timeout: Duration) -> sealbox::audit::AuditLogBuilder {
    AuditLog::builder()
        .key(key())
        .file(path, FsyncPolicy::Batch)
        .mode(AuditMode::Strict)
        .strict_timeout(timeout)
}

fn client(store: Arc<dyn SecretStore>, audit: sealbox::audit::AuditLogBuilder) -> BlockingSealbox {
    Sealbox::builder()
        .store(store)
        .cache(CacheConfig::default())
        .audit(audit)
        .principal(Principal::new("svc:test"))
        .build()
        .unwrap()
        .blocking()
        .unwrap()
}

/// The log's lines that are whole JSON objects (a full disk can leave a fragment).
fn events(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn with_request_id<'a>(events: &'a [serde_json::Value], id: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["request_id"] == id).collect()
}

fn current_value(store: &MemoryStore, name: &str) -> Vec<u8> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let v = rt
        .block_on(store.get(&SecretName::new(name).unwrap(), &VersionSelector::Current))
        .unwrap();
    v.value.expose_secret().to_vec()
}

/// A directory holding the log, which the test removes and makes again.
fn log_dir() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let logdir = dir.path().join("logs");
    std::fs::create_dir(&logdir).unwrap();
    let path = logdir.join("audit.jsonl");
    (dir, logdir, path)
}

#[test]
fn a_strict_write_whose_intent_cannot_be_written_never_reaches_the_store() {
    let (_dir, logdir, path) = log_dir();
    let store = Arc::new(MemoryStore::new());
    let c = client(store.clone(), strict_log(&path, Duration::from_millis(500)));
    c.put("app/db", &secret("old")).unwrap();
    // The log worked until now; its directory goes away before the next write.
    std::fs::remove_dir_all(&logdir).unwrap();
    let err = c.put("app/db", &secret("new")).unwrap_err();
    assert_eq!(
        current_value(&store, "app/db"),
        b"old",
        "the store was changed"
    );
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.to_string().contains("no change was made"), "{err}");
    // Once the log can be written again, it says the write was refused, and nothing says
    // it was made.
    std::fs::create_dir(&logdir).unwrap();
    c.flush_audit().unwrap();
    let id = err.request_id().expect("the refusal's request id");
    let ev = events(&path);
    let lines = with_request_id(&ev, id);
    assert!(!lines.is_empty(), "the refusal is not in the log");
    for l in lines {
        assert_eq!(l["success"], false, "{l}");
        assert_eq!(l["event"], "secret.write", "{l}");
        assert!(
            l["reason"].as_str().unwrap().contains("no change was made"),
            "{l}"
        );
    }
}

/// A store whose writes take the audit log's directory away once they are made: the disk
/// goes between a change and the record of its outcome.
#[derive(Debug)]
struct LogDiesAfterWrite {
    inner: MemoryStore,
    logdir: PathBuf,
}

#[async_trait]
impl SecretStore for LogDiesAfterWrite {
    fn kind(&self) -> &'static str {
        "memory"
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn get(
        &self,
        name: &SecretName,
        selector: &VersionSelector,
    ) -> sealbox::Result<SecretVersion> {
        self.inner.get(name, selector).await
    }
    async fn put(
        &self,
        name: &SecretName,
        value: &Secret,
        options: &PutOptions,
    ) -> sealbox::Result<VersionInfo> {
        let made = self.inner.put(name, value, options).await;
        if made.is_ok() && value.expose_secret() == b"new" {
            std::fs::remove_dir_all(&self.logdir).unwrap();
        }
        made
    }
    async fn describe(&self, name: &SecretName) -> sealbox::Result<SecretMetadata> {
        self.inner.describe(name).await
    }
    async fn list(&self, options: &ListOptions) -> sealbox::Result<ListPage> {
        self.inner.list(options).await
    }
    async fn delete(&self, name: &SecretName, options: &DeleteOptions) -> sealbox::Result<()> {
        self.inner.delete(name, options).await
    }
    async fn restore(&self, name: &SecretName) -> sealbox::Result<()> {
        self.inner.restore(name).await
    }
    async fn set_stage(
        &self,
        name: &SecretName,
        stage: &Stage,
        version: Option<&VersionId>,
    ) -> sealbox::Result<()> {
        self.inner.set_stage(name, stage, version).await
    }
}

#[test]
fn a_write_made_while_its_outcome_cannot_be_written_is_logged_as_made_never_as_refused() {
    let (_dir, logdir, path) = log_dir();
    let store = Arc::new(LogDiesAfterWrite {
        inner: MemoryStore::new(),
        logdir: logdir.clone(),
    });
    let c = client(store.clone(), strict_log(&path, Duration::from_millis(500)));
    c.put("app/db", &secret("old")).unwrap();
    let err = c.put("app/db", &secret("new")).unwrap_err();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let now = rt
        .block_on(store.get(
            &SecretName::new("app/db").unwrap(),
            &VersionSelector::Current,
        ))
        .unwrap();
    assert_eq!(now.value.expose_secret(), b"new", "the write was made");
    // The disk comes back: the outcome, kept meanwhile, is written as it happened.
    std::fs::create_dir(&logdir).unwrap();
    c.flush_audit().unwrap();
    let ev = events(&path);
    let writes: Vec<_> = ev.iter().filter(|e| e["action"] == "write").collect();
    assert_eq!(writes.len(), 1, "{writes:?}");
    let outcome = writes[0];
    assert_eq!(outcome["event"], "secret.write", "{outcome}");
    assert_eq!(outcome["success"], true, "{outcome}");
    assert_eq!(outcome["version"], now.version.as_str(), "{outcome}");
    assert!(outcome["reason"].is_null(), "{outcome}");
    // The caller hears that strict mode could not confirm the record in time, that the
    // change was made all the same, and which line records it.
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.to_string().contains("the change was made"), "{err}");
    assert_eq!(
        Some(outcome["request_id"].as_str().unwrap()),
        err.request_id()
    );
}

#[test]
fn a_strict_change_writes_its_intent_before_and_its_outcome_after() {
    let (_dir, _logdir, path) = log_dir();
    let store = Arc::new(MemoryStore::new());
    let c = client(store.clone(), strict_log(&path, Duration::from_secs(2)));
    let info = c.put("app/db", &secret("v1")).unwrap();
    c.flush_audit().unwrap();
    let ev = events(&path);
    let names: Vec<&str> = ev.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(names, ["secret.write.intent", "secret.write"]);
    assert!(
        ev[0]["success"].is_null(),
        "an intent claims nothing: {}",
        ev[0]
    );
    assert_eq!(ev[0]["request_id"], ev[1]["request_id"]);
    assert_eq!(ev[1]["success"], true);
    assert_eq!(ev[1]["version"], info.version.as_str());
}

/// Holds the exclusive lock of `path` (as another writer of the log does for its batch)
/// until dropped.
struct HeldLock(#[allow(dead_code, reason = "held for its lock")] std::fs::File);

impl HeldLock {
    fn take(path: &Path) -> HeldLock {
        use std::os::fd::AsRawFd;
        let f = std::fs::OpenOptions::new().read(true).open(path).unwrap();
        // SAFETY: `f` is an open file for the duration of the call; flock only locks it.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
        HeldLock(f)
    }
}

#[test]
fn a_read_that_timed_out_is_logged_as_timed_out_not_as_a_success() {
    let (_dir, _logdir, path) = log_dir();
    let store = Arc::new(MemoryStore::new());
    let c = client(store, strict_log(&path, Duration::from_millis(300)));
    c.put("app/db", &secret("s3cr3t")).unwrap();
    c.flush_audit().unwrap();
    // Another writer of the log holds its lock for a second: longer than strict_timeout,
    // shorter than a writer waits for the lock, so the read's event is written late.
    let lock = HeldLock::take(&path);
    let started = Instant::now();
    let err = c.get("app/db").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    std::thread::sleep(Duration::from_millis(700));
    drop(lock);
    c.flush_audit().unwrap();
    let ev = events(&path);
    let reads: Vec<_> = ev.iter().filter(|e| e["action"] == "read").collect();
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert_eq!(reads[0]["success"], false, "{}", reads[0]);
    let reason = reads[0]["reason"].as_str().unwrap();
    assert!(reason.contains("strict_timeout"), "{reason}");
    assert!(reason.contains("refused"), "{reason}");
    // And a read the log keeps up with is released and logged as the success it is.
    assert_eq!(c.get("app/db").unwrap().expose_secret(), b"s3cr3t");
}

#[test]
fn strict_mode_without_a_durable_sink_is_refused_at_config_load() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sealbox.yaml");
    std::fs::write(
        &config,
        "secrets: {provider: memory}\naudit: {mode: strict, tracing: true}\n",
    )
    .unwrap();
    let err = sealbox::config::Config::from_path(&config).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let msg = err.to_string();
    assert!(msg.contains("strict") && msg.contains("durable"), "{msg}");
    assert!(msg.contains("audit.path"), "{msg}");
    // The Rust API says the same of tracing and of callbacks.
    for b in [
        AuditLog::builder().tracing(),
        AuditLog::builder().callback(|_| Ok(())),
    ] {
        let err = b.mode(AuditMode::Strict).build().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains("durable"), "{err}");
    }
}

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
fn a_file_that_was_full_gets_every_event_another_sink_took_meanwhile_with_no_gap() {
    let Some(fs) = Tmpfs::mount("1m") else {
        return;
    };
    let path = fs.at.join("audit.jsonl");
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = seen.clone();
    // Best effort, the file and a callback: the callback is no durable sink, so the chain
    // may not move on with it alone.
    let c = client(
        Arc::new(MemoryStore::new()),
        AuditLog::builder()
            .key(key())
            .file(&path, FsyncPolicy::Batch)
            .callback(move |_| {
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }),
    );
    c.put("app/db", &secret("s3cr3t")).unwrap();
    c.get("app/db").unwrap();
    c.flush_audit().unwrap();
    let filler = fill(&fs.at);
    // Enough reads that their lines cannot fit in what the last page had left.
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
    let ev = events(&path);
    let hits = ev.iter().filter(|e| e["cache"] == "hit").count();
    assert_eq!(hits, READS, "reads missing from the file");
    let report = verify_file(&path, &key()).unwrap();
    assert!(report.problem.is_none(), "{:?}", report.problem);
    let seqs: Vec<u64> = ev.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>(), "a gap");
}

#[test]
fn two_files_stay_one_chain_when_one_of_them_cannot_be_written_for_a_while() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    let c = client(
        Arc::new(MemoryStore::new()),
        AuditLog::builder()
            .key(key())
            .file(&a, FsyncPolicy::Batch)
            .file(&b, FsyncPolicy::Batch)
            .mode(AuditMode::Strict)
            .strict_timeout(Duration::from_millis(500)),
    );
    c.put("app/db", &secret("s3cr3t")).unwrap();
    c.flush_audit().unwrap();
    // A stuck writer holds `a` for longer than a writer waits for it (10 s): `b` is written
    // and must not go on without `a`.
    let lock = HeldLock::take(&a);
    assert_eq!(c.get("app/db").unwrap_err().kind(), ErrorKind::Unavailable);
    std::thread::sleep(Duration::from_secs(11));
    drop(lock);
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.get("app/db").is_err() {
        assert!(Instant::now() < deadline, "the log did not recover");
        std::thread::sleep(Duration::from_millis(100));
    }
    c.flush_audit().unwrap();
    let (la, lb) = (
        std::fs::read_to_string(&a).unwrap(),
        std::fs::read_to_string(&b).unwrap(),
    );
    assert_eq!(la, lb, "the two files went separate ways");
    for p in [&a, &b] {
        let report = verify_file(p, &key()).unwrap();
        assert!(
            report.problem.is_none(),
            "{}: {:?}",
            p.display(),
            report.problem
        );
    }
    let ev = events(&a);
    let reads: Vec<_> = ev.iter().filter(|e| e["action"] == "read").collect();
    assert_eq!(reads.first().unwrap()["success"], false, "{reads:?}");
    assert_eq!(reads.last().unwrap()["success"], true, "{reads:?}");
}

#[test]
fn list_denials_and_refresh_ahead_reads_are_in_the_log() {
    let (_dir, _logdir, path) = log_dir();
    let c = Sealbox::builder()
        .store(Arc::new(MemoryStore::new()))
        .cache(CacheConfig {
            ttl: Duration::from_millis(600),
            refresh_ahead: 0.3,
            ..CacheConfig::default()
        })
        .audit(
            AuditLog::builder()
                .key(key())
                .file(&path, FsyncPolicy::Batch),
        )
        .principal(Principal::new("svc:test"))
        .build()
        .unwrap()
        .blocking()
        .unwrap();
    c.put("app/public/a", &secret("1")).unwrap();
    c.put("app/private/b", &secret("2")).unwrap();
    c.client().set_policy(Policy::new(vec![
        Rule::allow(
            &["svc:test"],
            &[Capability::List, Capability::Read],
            &["app/public/*"],
        )
        .unwrap(),
    ]));
    let listed = c.list("app/").unwrap();
    assert_eq!(listed.len(), 1);
    // Refresh-ahead: a hit past 30% of the TTL starts a read from the store.
    c.get("app/public/a").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    c.get("app/public/a").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let ev = loop {
        c.flush_audit().unwrap();
        let ev = events(&path);
        if ev.iter().any(|e| e["user"] == "sealbox:refresh-ahead") {
            break ev;
        }
        assert!(
            Instant::now() < deadline,
            "no refresh-ahead read in the log"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let denied: Vec<_> = ev
        .iter()
        .filter(|e| e["event"] == "access.denied" && e["action"] == "list")
        .collect();
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["resource"], "app/");
    assert!(denied[0]["reason"].as_str().unwrap().contains("1 names"));
    let refresh = ev
        .iter()
        .find(|e| e["user"] == "sealbox:refresh-ahead")
        .unwrap();
    assert_eq!(refresh["action"], "read");
    assert_eq!(refresh["resource"], "app/public/a");
    assert_eq!(refresh["success"], true);
    assert!(refresh["version"].is_string(), "{refresh}");
    assert_eq!(c.client().metrics().denies, 1);
}

#[test]
fn a_key_operation_recorded_after_it_was_done_is_never_logged_as_refused() {
    // What the CLI does for key rotation through `--config`: the vault's keys are rotated,
    // then the client records it. The log's directory is gone at that moment.
    let (_dir, logdir, path) = log_dir();
    let c = client(
        Arc::new(MemoryStore::new()),
        strict_log(&path, Duration::from_millis(300)),
    );
    c.put("app/db", &secret("x")).unwrap();
    std::fs::remove_dir_all(&logdir).unwrap();
    let event = sealbox::audit::AuditEvent::access(
        sealbox::audit::Action::Key,
        Principal::new("svc:test"),
        sealbox::audit::Resource::named("master"),
    );
    let err = c.client().record_event(event).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    std::fs::create_dir(&logdir).unwrap();
    c.flush_audit().unwrap();
    let ev = events(&path);
    let keys: Vec<_> = ev.iter().filter(|e| e["action"] == "key").collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0]["success"], true, "{}", keys[0]);
    assert!(keys[0]["reason"].is_null(), "{}", keys[0]);
}
