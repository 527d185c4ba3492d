//! Best-effort audit under a failing disk: the log's filesystem is full (a small tmpfs), two
//! threads keep reading cached secrets. Readers must never wait longer than the configured
//! bound, what could not be kept is counted, and once the disk has room again the log says
//! in its own chain how many events were lost. Strict mode still refuses instead.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sealbox::audit::{AuditKey, AuditLog, AuditMode, EVENTS_LOST_EVENT, FsyncPolicy, verify_file};
use sealbox::cache::CacheConfig;
use sealbox::monitor::MonitorConfig;
use sealbox::policy::{Capability, Policy, Rule};
use sealbox::store::memory::MemoryStore;
use sealbox::{BlockingSealbox, ErrorKind, Principal, Sealbox, Secret};

/// What a single cached read may take while the disk is full. The configured bound is 1 ms;
/// this leaves room for a loaded two-core machine descheduling a reader (63 ms seen at a load
/// of 6). Before the bound, reads waited for the writer's retries, which back off to 1 s.
const READ_BOUND: Duration = Duration::from_millis(250);

fn key() -> AuditKey {
    let mut raw = [7u8; 32];
    AuditKey::new(&Secret::from_mut_slice(&mut raw).unwrap()).unwrap()
}

fn secret(v: &str) -> Secret {
    Secret::from_mut_slice(&mut v.as_bytes().to_vec()).unwrap()
}

/// A tmpfs mounted at a fresh directory, unmounted (lazily, even if a writer still has a
/// file open there) when dropped.
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

/// Fills the filesystem holding `dir` with one file; removing the file gives the room back.
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

fn client(audit: sealbox::audit::AuditLogBuilder) -> BlockingSealbox {
    Sealbox::builder()
        .store(Arc::new(MemoryStore::new()))
        .cache(CacheConfig::default())
        .audit(audit)
        .principal(Principal::new("svc:reader"))
        .build()
        .unwrap()
        .blocking()
        .unwrap()
}

/// How a reader fared: reads, the longest, and how many took over 5 ms.
type Fared = (u64, Duration, u64);

/// Two threads reading cached secrets as fast as they can until `stop`.
fn readers(c: &BlockingSealbox, stop: &Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<Fared>> {
    (0..2)
        .map(|_| {
            let (c, stop) = (c.clone(), stop.clone());
            std::thread::spawn(move || {
                let (mut n, mut longest, mut slow) = (0u64, Duration::ZERO, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let got = c.get_cached(b"app/db").expect("cached").expect("read");
                    let took = started.elapsed();
                    longest = longest.max(took);
                    slow += u64::from(took > Duration::from_millis(5));
                    drop(got);
                    n += 1;
                }
                (n, longest, slow)
            })
        })
        .collect()
}

#[test]
fn a_full_disk_never_blocks_cached_reads_and_the_loss_is_counted_then_recorded_in_the_chain() {
    // Room for the backlog the writer holds (65 536 events of ~460 bytes) once freed.
    let Some(fs) = Tmpfs::mount("64m") else {
        return;
    };
    let path = fs.at.join("audit.jsonl");
    let k = key();
    let c = client(
        AuditLog::builder()
            .key(k.clone())
            .file(&path, FsyncPolicy::Batch)
            .queue_capacity(256),
    );
    c.put("app/db", &secret("s3cr3t")).unwrap();
    c.get("app/db").unwrap();
    c.flush_audit().unwrap();
    let filler = fill(&fs.at);

    let stop = Arc::new(AtomicBool::new(false));
    let threads = readers(&c, &stop);
    // Read until events are being dropped (the writer's backlog and the rings are full),
    // then a while longer, all of it well within the time a blocked reader would show.
    let started = Instant::now();
    while c.client().metrics().audit_events_lost == 0 && started.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !threads.iter().all(|t| t.is_finished()) {
        assert!(
            Instant::now() < deadline,
            "cached reads are blocked by the full audit disk (nothing returned in 5 s)"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let results: Vec<Fared> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let reads: u64 = results.iter().map(|r| r.0).sum();
    let longest = results.iter().map(|r| r.1).max().unwrap();
    let slow: u64 = results.iter().map(|r| r.2).sum();
    let lost = c.client().metrics().audit_events_lost;
    eprintln!(
        "{reads} cached reads on a full disk, {slow} over 5 ms, longest {longest:?}, \
         {lost} events lost"
    );
    assert!(lost > 0, "the dropped events are counted");
    assert!(longest < READ_BOUND, "a cached read took {longest:?}");
    assert!(
        c.client()
            .render_prometheus()
            .contains(&format!("sealbox_audit_events_lost_total {lost}\n")),
        "{}",
        c.client().render_prometheus()
    );

    // The disk has room again: the writer writes its backlog, led by the loss.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = c.flush_audit() {
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(Instant::now() < deadline, "the log did not recover");
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let recorded: u64 = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == EVENTS_LOST_EVENT)
        .map(|v| {
            let reason = v["reason"].as_str().unwrap().to_owned();
            assert!(reason.contains(" between "), "{reason}");
            assert_eq!(v["success"], false);
            reason.split(' ').next().unwrap().parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(
        recorded, lost,
        "every lost event is accounted for in the chain"
    );
    let report = verify_file(&path, &k).unwrap();
    assert!(report.problem.is_none(), "{:?}", report.problem);
    assert!(report.anchored);
}

#[test]
fn strict_mode_on_a_full_disk_refuses_reads_instead_of_dropping_their_events() {
    let Some(fs) = Tmpfs::mount("1m") else {
        return;
    };
    let path = fs.at.join("audit.jsonl");
    let c = client(
        AuditLog::builder()
            .key(key())
            .file(&path, FsyncPolicy::Batch)
            .mode(AuditMode::Strict)
            .strict_timeout(Duration::from_millis(500)),
    );
    c.put("app/db", &secret("s3cr3t")).unwrap();
    c.get("app/db").unwrap();
    let filler = fill(&fs.at);
    // The log's last page may still hold a few lines; past that every read is refused.
    let refused = (0..64)
        .map(|_| c.get_cached(b"app/db").expect("cached"))
        .position(|r| r.is_err_and(|e| e.kind() == ErrorKind::Unavailable));
    assert!(refused.is_some(), "strict reads go on with a full disk");
    assert_eq!(
        c.client().metrics().audit_events_lost,
        0,
        "strict mode drops nothing"
    );
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.get("app/db").is_err() {
        assert!(Instant::now() < deadline, "strict reads did not resume");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_stuck_alert_hook_does_not_stall_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let (release, stuck) = crossbeam_channel::bounded::<()>(0);
    let (called, was_called) = crossbeam_channel::unbounded::<()>();
    let c = Sealbox::builder()
        .store(Arc::new(MemoryStore::new()))
        .policy(Policy::new(vec![
            Rule::allow(&["svc:ok"], &[Capability::Read], &["app/*"]).unwrap(),
        ]))
        .monitor(MonitorConfig {
            failed_burst: 2,
            ..MonitorConfig::default()
        })
        // Blocks until the test lets it go: a webhook that hangs.
        .alert_hook(move |_| {
            let _ = called.send(());
            let _ = stuck.recv();
        })
        .audit(
            AuditLog::builder()
                .key(key())
                .file(&path, FsyncPolicy::Batch),
        )
        .principal(Principal::new("svc:eve"))
        .build()
        .unwrap()
        .blocking()
        .unwrap();
    for _ in 0..2 {
        assert_eq!(c.get("app/db").unwrap_err().kind(), ErrorKind::AccessDenied);
    }
    was_called
        .recv_timeout(Duration::from_secs(10))
        .expect("the hook is called");
    // The hook is stuck; the log goes on.
    let started = Instant::now();
    for _ in 0..100 {
        let _ = c.get("app/db");
    }
    let flushed = {
        let c = c.clone();
        std::thread::spawn(move || c.flush_audit())
    };
    while !flushed.is_finished() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the audit log is stalled by the alert hook"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    flushed.join().unwrap().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.matches("\"event\":\"access.denied\"").count(), 102);
    assert!(text.contains("\"event\":\"alert.failed_burst\""));
    drop(release);
}

/// The `sealbox::audit` warnings of this process: (message, `events` field).
#[derive(Default)]
struct Warnings(std::sync::Mutex<Vec<(String, Option<u64>)>>);

#[derive(Default)]
struct Fields {
    message: String,
    events: Option<u64>,
}

impl tracing::field::Visit for Fields {
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        if field.name() == "events" {
            self.events = Some(value);
        }
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for Warnings {
    fn enabled(&self, m: &tracing::Metadata<'_>) -> bool {
        m.target() == "sealbox::audit" && *m.level() == tracing::Level::WARN
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, e: &tracing::Event<'_>) {
        let mut f = Fields::default();
        e.record(&mut f);
        self.0.lock().unwrap().push((f.message, f.events));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Installs [`Warnings`] as the process's subscriber (the writer thread logs there).
fn warnings() -> &'static Arc<Warnings> {
    static W: std::sync::OnceLock<Arc<Warnings>> = std::sync::OnceLock::new();
    W.get_or_init(|| {
        let w = Arc::new(Warnings::default());
        tracing::subscriber::set_global_default(w.clone()).unwrap();
        w
    })
}

#[test]
fn dropping_a_client_on_a_full_disk_gives_up_within_the_deadline_and_counts_the_lost_events() {
    let warnings = warnings();
    let Some(fs) = Tmpfs::mount("1m") else {
        return;
    };
    let path = fs.at.join("audit.jsonl");
    let c = client(
        AuditLog::builder()
            .key(key())
            .file(&path, FsyncPolicy::Batch),
    );
    c.put("app/db", &secret("s3cr3t")).unwrap();
    c.flush_audit().unwrap();
    let _filler = fill(&fs.at);
    for _ in 0..200 {
        c.get("app/db").unwrap();
    }
    assert!(c.flush_audit().is_err(), "the disk is full");
    let started = Instant::now();
    drop(c);
    let took = started.elapsed();
    eprintln!("dropping the client took {took:?}");
    // The deadline is 2 s; one more sink call may be under way when it passes.
    assert!(took < Duration::from_secs(4), "shutdown took {took:?}");
    let lost: Vec<u64> = warnings
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(m, _)| m.contains("audit shutdown"))
        .filter_map(|(_, n)| *n)
        .collect();
    // The last page of the log may have held a few of the 200 reads.
    assert!(
        lost.iter().any(|&n| n > 150 && n <= 200),
        "no shutdown warning counting the lost reads: {lost:?}"
    );
}
