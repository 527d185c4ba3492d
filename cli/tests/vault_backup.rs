//! Online backups and deliberate restores, end to end with the `sealbox` binary.
//!
//! The threat: a backup taken while the vault is in use is torn (half of a write, or a later
//! write without an earlier one) or unreadable on its own, so restoring it loses or corrupts
//! secrets; or the file is readable by other users.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use support::{Scratch as Vault, code, run_with_env, stderr, stdout};

const WRITERS: usize = 2;
const BACKUPS: usize = 20;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Runs `sealbox` against the vault file `vault` with `key`.
fn run_on(vault: &Path, key: &Path, args: &[&str]) -> std::process::Output {
    run_with_env(
        args,
        b"",
        &[("SEALBOX_VAULT", vault), ("SEALBOX_KEY_FILE", key)],
    )
}

/// Two writer processes at a time (`sealbox put` in a loop, each writer writing 1, 2, 3, ...
/// to its own secret) while 20 `sealbox backup create` run. Every backup must verify on its
/// own with the key file, be mode 0600, and hold for each writer a value the writer had seen
/// acknowledged by the time the backup finished (or the one then in flight), and no older
/// than the last one acknowledged before the backup started: a prefix of the writes.
#[test]
fn backups_taken_during_writes_verify_and_hold_a_prefix_of_the_acknowledged_writes() {
    let v = Vault::init();
    let acked: Arc<Vec<Mutex<u64>>> = Arc::new((0..WRITERS).map(|_| Mutex::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (vault, key) = (v.vault(), v.key());
            let (acked, stop) = (acked.clone(), stop.clone());
            thread::spawn(move || {
                let name = format!("w{w}/counter");
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let value = n.to_string();
                    let o = run_on(&vault, &key, &["put", &name, "--value", &value]);
                    assert_eq!(code(&o), 0, "writer {w} put {n}: {}", stderr(&o));
                    *acked[w].lock().unwrap() = n;
                }
                n
            })
        })
        .collect();
    // Let both writers get going before the first backup.
    while acked.iter().any(|a| *a.lock().unwrap() < 2) {
        thread::sleep(std::time::Duration::from_millis(10));
    }
    // Backups are behind the vault by design, so with the live key file only `verify` and
    // `backup restore` open them. Their values are read with a copy of the key file taken now:
    // it holds both writers' namespace keys and a write counter below every backup's.
    let reader_key = v.path("reader.key");
    std::fs::copy(v.key(), &reader_key).unwrap();
    let snapshot = || -> Vec<u64> { acked.iter().map(|a| *a.lock().unwrap()).collect() };
    let mut taken = Vec::new();
    for i in 0..BACKUPS {
        let file = v.path(&format!("backup-{i}.sqlite3"));
        let before = snapshot();
        let o = v.run(&["backup", "create", file.to_str().unwrap()], b"");
        let after = snapshot();
        assert_eq!(code(&o), 0, "backup {i}: {}", stderr(&o));
        taken.push((file, before, after));
    }
    stop.store(true, Ordering::SeqCst);
    let written: Vec<u64> = writers.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        written.iter().all(|n| *n > 5),
        "the writers kept writing during the backups: {written:?}"
    );

    for (file, before, after) in &taken {
        assert_eq!(mode(file), 0o600, "{}", file.display());
        let o = run_on(file, &v.key(), &["--json", "verify"]);
        assert_eq!(code(&o), 0, "verify {}: {}", file.display(), stderr(&o));
        let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(report["ok"], true, "{report}");
        assert_eq!(report["backup"], true, "{report}");
        for w in 0..WRITERS {
            let o = run_on(
                file,
                &reader_key,
                &["get", &format!("w{w}/counter"), "--reveal"],
            );
            assert_eq!(code(&o), 0, "{}: {}", file.display(), stderr(&o));
            let held: u64 = stdout(&o).trim().parse().unwrap();
            assert!(
                held >= before[w] && held <= after[w] + 1,
                "{}: writer {w} holds {held}, but had acknowledged {} before the backup and \
                 {} after it",
                file.display(),
                before[w],
                after[w]
            );
        }
    }
}

/// A backup never replaces an existing file, nor writes through a symbolic link.
#[test]
fn a_backup_never_overwrites_a_file_or_follows_a_link() {
    let v = Vault::init();
    v.ok(&["put", "app/token", "--value", "one"], b"");
    let existing = v.path("existing");
    std::fs::write(&existing, b"keep me").unwrap();
    let o = v.run(&["backup", "create", existing.to_str().unwrap()], b"");
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");

    let target = v.path("elsewhere");
    let link = v.path("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let o = v.run(&["backup", "create", link.to_str().unwrap()], b"");
    assert_ne!(code(&o), 0, "a backup through a symlink: {}", stdout(&o));
    assert!(!target.exists(), "the backup followed the link");
}

/// An older copy of the vault put in its place: every command refuses it naming how far
/// behind it is, `verify` reports it, and `backup restore` of that copy puts it back on
/// purpose (the vault then opens, with the copy's values).
#[test]
fn an_older_copy_in_place_is_refused_and_reported_until_restored_on_purpose() {
    let v = Vault::init();
    v.ok(&["put", "app/db", "--value", "old-password"], b"");
    let copy = v.path("copy.sqlite3");
    std::fs::copy(v.vault(), &copy).unwrap();
    for i in 0..5 {
        v.ok(&["put", "app/db", "--value", &format!("new-{i}")], b"");
    }
    std::fs::copy(&copy, v.vault()).unwrap();

    let o = v.run(&["get", "app/db", "--reveal"], b"");
    assert_ne!(code(&o), 0, "the old copy was served: {}", stdout(&o));
    assert!(stdout(&o).is_empty());
    assert!(
        stderr(&o).starts_with("sealbox: integrity: ") && stderr(&o).contains("5 writes behind"),
        "{}",
        stderr(&o)
    );
    let o = v.run(&["--json", "verify"], b"");
    assert_ne!(code(&o), 0, "verify accepted a rolled-back vault");
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(report["writes_behind"], 5, "{report}");
    assert_eq!(report["rollback_detection"], true, "{report}");
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(
        report["failures"],
        serde_json::json!([]),
        "every version decrypts: {report}"
    );

    let o = v.run(&["backup", "restore", copy.to_str().unwrap()], b"");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("5 writes"), "{}", stdout(&o));
    let o = v.run(&["get", "app/db", "--reveal"], b"");
    assert_eq!(stdout(&o), "old-password", "{}", stderr(&o));
    v.ok(&["put", "app/db", "--value", "after-restore"], b"");
    let report = v.json(&["verify"], b"");
    assert_eq!(report["writes_behind"], 0, "{report}");
}

/// Through `--config`, the restore is recorded in the config's audit log.
#[test]
fn a_restore_through_a_config_is_audited() {
    let s = Vault::new();
    let config = s.path("sealbox.yaml");
    std::fs::write(
        &config,
        "secrets: {provider: local, config: {path: ./vault.db, key_file: ./master.key}}\n\
         principal: user:ops\n\
         audit: {path: ./audit.jsonl}\n",
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let with_config = |args: &[&str]| {
        let mut all = vec!["--config", c];
        all.extend_from_slice(args);
        run_with_env(&all, b"", &[])
    };
    let o = with_config(&["put", "app/db", "--value", "one"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let backup = s.path("b.sqlite3");
    let o = with_config(&["backup", "create", backup.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = with_config(&["put", "app/db", "--value", "two"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = with_config(&["backup", "restore", backup.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = with_config(&["get", "app/db", "--reveal"]);
    assert_eq!(stdout(&o), "one", "{}", stderr(&o));
    let text = std::fs::read_to_string(s.path("audit.jsonl")).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("backup-restore:"))
        .unwrap_or_else(|| panic!("no restore event: {text}"));
    assert!(line.contains("\"user\":\"user:ops\""), "{line}");
    assert!(line.contains("\"success\":true"), "{line}");
    let o = with_config(&["audit", "verify", s.path("audit.jsonl").to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
}

/// Before, `backup restore` through `--config` skipped the access policy: a principal allowed
/// only to read and write could put an old copy of every secret back. Like `backup create`, it
/// needs `admin` on the whole store; a denial changes nothing and is audited, also when the
/// vault in place does not open (an older copy, refused by rollback detection: a usual reason
/// to restore).
#[test]
fn a_restore_through_a_config_needs_admin_on_the_whole_store() {
    let s = Vault::new();
    let config = s.path("sealbox.yaml");
    let admin_on = |secrets: &str| {
        std::fs::write(
            &config,
            format!(
                "secrets: {{provider: local, config: {{path: ./vault.db, key_file: ./master.key}}}}\n\
                 principal: user:ops\n\
                 audit: {{path: ./audit.jsonl}}\n\
                 policy: {{rules: [\n\
                   {{principals: [\"user:ops\"], allow: [read, write, delete, list], secrets: [\"*\"]}},\n\
                   {{principals: [\"user:ops\"], allow: [admin], secrets: [\"{secrets}\"]}}]}}\n"
            ),
        )
        .unwrap()
    };
    let c = config.to_str().unwrap();
    let with_config = |args: &[&str]| {
        let mut all = vec!["--config", c];
        all.extend_from_slice(args);
        run_with_env(&all, b"", &[])
    };
    admin_on("*");
    let o = with_config(&["put", "app/db", "--value", "one"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let backup = s.path("b.sqlite3");
    let o = with_config(&["backup", "create", backup.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let older = s.path("older.db");
    std::fs::copy(s.path("vault.db"), &older).unwrap();
    for value in ["two", "three"] {
        let o = with_config(&["put", "app/db", "--value", value]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    }

    // admin over one namespace is not admin over the store.
    admin_on("app/*");
    let o = with_config(&["backup", "restore", backup.to_str().unwrap()]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("sealbox: access_denied: user:ops may not admin"),
        "{}",
        stderr(&o)
    );
    let o = with_config(&["get", "app/db", "--reveal"]);
    assert_eq!(
        stdout(&o),
        "three",
        "a denied restore changed the vault: {}",
        stderr(&o)
    );

    // An older copy in place, which does not open: still denied, and left as it is.
    std::fs::copy(&older, s.path("vault.db")).unwrap();
    let o = with_config(&["get", "app/db", "--reveal"]);
    assert_ne!(code(&o), 0, "the older copy opened: {}", stdout(&o));
    let o = with_config(&["backup", "restore", backup.to_str().unwrap()]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert_eq!(
        std::fs::read(s.path("vault.db")).unwrap(),
        std::fs::read(&older).unwrap(),
        "a denied restore wrote the vault file"
    );
    let log = std::fs::read_to_string(s.path("audit.jsonl")).unwrap();
    let denials = log
        .lines()
        .filter(|l| l.contains("\"success\":false") && l.contains("user:ops"))
        .count();
    assert_eq!(denials, 2, "each denied restore is audited: {log}");

    // With admin on everything the restore goes through.
    admin_on("*");
    let o = with_config(&["backup", "restore", backup.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = with_config(&["get", "app/db", "--reveal"]);
    assert_eq!(stdout(&o), "one", "{}", stderr(&o));
}
