//! A torn last line: a writer killed (or a machine crashed) in the middle of appending leaves a
//! fragment without its newline at the end of the audit log. The service must start again on
//! that log, record a signed `torn_tail_recovered` line and go on; `verify` reports the
//! recovery, not tampering. A line torn anywhere else is still tampering.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sealbox::audit::{AuditKey, ProblemKind, TORN_TAIL_EVENT, default_key_path, verify_file};
use sealbox::{BlockingSealbox, Secret};

fn secret(v: &str) -> Secret {
    Secret::from_mut_slice(&mut v.as_bytes().to_vec()).unwrap()
}

/// A service's config: a memory store and the audit log `log` (key beside it).
fn service_config(dir: &Path, log: &Path) -> PathBuf {
    let config = dir.join("sealbox.yaml");
    std::fs::write(
        &config,
        format!(
            "secrets: {{provider: memory}}\nprincipal: svc:web\naudit: {{path: {}, fsync: never}}\n",
            log.display()
        ),
    )
    .unwrap();
    config
}

/// The service starting on its config, doing one write and stopping.
fn start_service_and_write(config: &Path) -> sealbox::Result<()> {
    let c = BlockingSealbox::from_config(config)?;
    c.put("app/after", &secret("v"))?;
    c.flush_audit()?;
    Ok(())
}

fn chain_key(log: &Path) -> AuditKey {
    AuditKey::from_file(&default_key_path(log)).unwrap()
}

fn head_of(log: &Path) -> PathBuf {
    let mut p = log.as_os_str().to_owned();
    p.push(".head");
    PathBuf::from(p)
}

fn events(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn a_last_line_torn_at_every_byte_is_recovered_when_the_service_starts_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let config = service_config(dir.path(), &log);
    // Two events, the anchor vouching for them; then a third event, whose append is what a
    // crash tears (the anchor is moved only after a batch is in the file).
    let c = BlockingSealbox::from_config(&config).unwrap();
    c.put("app/db", &secret("v")).unwrap();
    c.get("app/db").unwrap();
    c.flush_audit().unwrap();
    let anchor_before = std::fs::read(head_of(&log)).unwrap();
    let start = std::fs::metadata(&log).unwrap().len() as usize;
    c.get("app/db").unwrap();
    c.flush_audit().unwrap();
    drop(c);
    let whole = std::fs::read(&log).unwrap();
    let key = chain_key(&log);
    assert!(whole.len() - start > 100, "the third line is in the file");

    for cut in start + 1..whole.len() {
        std::fs::write(&log, &whole[..cut]).unwrap();
        std::fs::write(head_of(&log), &anchor_before).unwrap();
        // Until a writer comes, the torn tail is what the file ends with.
        let torn = verify_file(&log, &key).unwrap();
        assert_eq!(
            torn.problem.map(|p| p.kind),
            (cut + 1 < whole.len()).then_some(ProblemKind::Broken),
            "cut at byte {cut}"
        );

        start_service_and_write(&config).unwrap_or_else(|e| {
            panic!("the service did not start with a log cut at byte {cut}: {e}")
        });

        let report = verify_file(&log, &key).unwrap();
        assert!(report.is_ok(), "cut at byte {cut}: {report:?}");
        let events = events(&log);
        if cut + 1 == whole.len() {
            // Only the newline was lost: the line is whole, nothing to recover.
            assert!(report.cut_off_lines.is_empty(), "cut at byte {cut}");
            assert_eq!(report.lines, 4);
            assert_eq!(events.len(), 4);
        } else {
            assert_eq!(report.cut_off_lines, vec![3], "cut at byte {cut}");
            assert_eq!(report.lines, 5);
            let marker = &events[2];
            assert_eq!(marker["event"], TORN_TAIL_EVENT, "cut at byte {cut}");
            assert_eq!(marker["seq"], 2);
            assert!(
                marker["reason"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("fragment of {} bytes", cut - start)),
                "{marker}"
            );
            assert_eq!(events[3]["event"], "secret.write");
            assert_eq!(events[3]["seq"], 3);
        }
    }
}

#[test]
fn a_line_torn_in_the_middle_of_the_log_is_still_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let config = service_config(dir.path(), &log);
    let c = BlockingSealbox::from_config(&config).unwrap();
    c.put("app/db", &secret("v")).unwrap();
    for _ in 0..3 {
        c.get("app/db").unwrap();
    }
    c.flush_audit().unwrap();
    drop(c);
    let key = chain_key(&log);
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let half = &lines[1][..lines[1].len() / 2];
    lines[1] = half;
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let p = verify_file(&log, &key).unwrap().problem.unwrap();
    assert_eq!((p.line, p.kind), (2, ProblemKind::Broken));

    // A writer coming after it only looks at the end: it goes on, and the cut stays reported.
    start_service_and_write(&config).unwrap();
    let report = verify_file(&log, &key).unwrap();
    let p = report.problem.unwrap();
    assert_eq!((p.line, p.kind), (2, ProblemKind::Broken));
    assert!(report.cut_off_lines.is_empty());
    assert!(!events(&log).iter().any(|e| e["event"] == TORN_TAIL_EVENT));
}

#[test]
fn a_torn_line_without_its_recovery_line_is_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let config = service_config(dir.path(), &log);
    start_service_and_write(&config).unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(b"{\"timestamp\":\"2026-").unwrap();
    drop(f);
    start_service_and_write(&config).unwrap();
    let key = chain_key(&log);
    assert_eq!(verify_file(&log, &key).unwrap().cut_off_lines, vec![2]);
    // Without the signed recovery line after it, the fragment is an unexplained broken line.
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let without_marker = [lines[0], lines[1], lines[3]].join("\n") + "\n";
    std::fs::write(&log, without_marker).unwrap();
    let p = verify_file(&log, &key).unwrap().problem.unwrap();
    assert_eq!((p.line, p.kind), (2, ProblemKind::Broken));
}

/// Set in the writer process the kill test spawns: the config it writes through.
const KILLED_WRITER_CONFIG_ENV: &str = "SEALBOX_TORN_TAIL_WRITER_CONFIG";

/// A service recording large events as fast as it can (a 64 KiB name each), so that its
/// writer spends its time appending multi-megabyte batches; it runs until it is killed. Runs
/// only in the spawned processes.
#[test]
fn torn_tail_writer_child() {
    use sealbox::audit::{Action, AuditEvent, Resource};
    let Ok(config) = std::env::var(KILLED_WRITER_CONFIG_ENV) else {
        return;
    };
    let c = BlockingSealbox::from_config(&config).unwrap();
    let name = format!("app/{}", "n".repeat(64 << 10));
    let resource = Resource::named(&name);
    loop {
        c.client()
            .record_event(AuditEvent::access(
                Action::List,
                sealbox::Principal::new("svc:web"),
                resource.clone(),
            ))
            .unwrap();
    }
}

#[test]
fn a_writer_killed_mid_append_leaves_a_torn_tail_the_restarted_service_recovers_from() {
    if std::env::var(KILLED_WRITER_CONFIG_ENV).is_ok() {
        return;
    }
    const WANTED: usize = 3;
    let mut torn = 0usize;
    let mut kills = 0usize;
    let deadline = Instant::now() + Duration::from_secs(120);
    while torn < WANTED && Instant::now() < deadline {
        // A fresh log each time, so the files stay small.
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        let config = service_config(dir.path(), &log);
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "torn_tail_writer_child", "--test-threads=1"])
            .env(KILLED_WRITER_CONFIG_ENV, &config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Let it append a while, then SIGKILL it at a moment of its choosing.
        while std::fs::metadata(&log).map_or(0, |m| m.len()) < 1 << 20 {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the writer died by itself"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_micros(kills as u64 * 397 % 3000));
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        let ends_torn = std::fs::read(&log).unwrap().last() != Some(&b'\n');
        // The service starts again on whatever the kill left.
        start_service_and_write(&config)
            .unwrap_or_else(|e| panic!("the service did not start after kill {kills}: {e}"));
        let report = verify_file(&log, &chain_key(&log)).unwrap();
        assert!(report.is_ok(), "after kill {kills}: {report:?}");
        let markers = events(&log)
            .iter()
            .filter(|e| e["event"] == TORN_TAIL_EVENT)
            .count();
        assert_eq!(
            report.cut_off_lines.len(),
            usize::from(ends_torn),
            "kill {kills}"
        );
        assert_eq!(markers, usize::from(ends_torn), "kill {kills}");
        torn += usize::from(ends_torn);
    }
    assert!(
        torn >= WANTED,
        "{kills} kills tore the log's last line only {torn} times"
    );
    eprintln!("{kills} kills, {torn} torn tails recovered");
}

/// The same tail search serves every writer of a shared log: a line longer than the old 64 KiB
/// search window, written by one writer, must not stop the others.
#[test]
fn a_line_over_64_kib_from_one_writer_is_continued_by_the_next() {
    use sealbox::audit::{Action, AuditEvent, Resource};
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let config = service_config(dir.path(), &log);
    let (a, b) = (
        BlockingSealbox::from_config(&config).unwrap(),
        BlockingSealbox::from_config(&config).unwrap(),
    );
    let long = "x".repeat(200 << 10);
    a.client()
        .record_event(AuditEvent::access(
            Action::List,
            sealbox::Principal::new("svc:web"),
            Resource::named(&long),
        ))
        .unwrap();
    a.flush_audit().unwrap();
    b.put("app/after", &secret("v")).unwrap();
    b.flush_audit()
        .expect("the second writer continues after the long line");
    drop((a, b));
    let report = verify_file(&log, &chain_key(&log)).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.lines, 2);
}
