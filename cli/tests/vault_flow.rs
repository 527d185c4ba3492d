//! End-to-end: the `sealbox` binary on a real local vault in a temporary directory.
//!
//! Every test also checks that no value reaches stdout or stderr except through
//! `get --reveal`.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use support::{Scratch as Vault, code, stderr, stdout};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

fn assert_no_value(o: &Output, value: &str) {
    assert!(!stdout(o).contains(value), "value on stdout: {}", stdout(o));
    assert!(!stderr(o).contains(value), "value on stderr: {}", stderr(o));
}

const DB: &str = "predis/prod/database/password";
const DB_JSON: &str =
    r#"{"username":"predis","password":"Zq8kL2vN5xR7tY1w","host":"db.internal","port":5432}"#;
const DB_PASSWORD: &str = "Zq8kL2vN5xR7tY1w";
const TOKEN: &str = "predis/prod/api/auth-token";
const TOKEN_VALUE: &str = "9f2c4e6a8b0d1f3e5a7c9e1b3d5f7a9c";

#[test]
fn init_creates_owner_only_files_and_never_overwrites() {
    let v = Vault::init();
    assert_eq!(mode(&v.vault()), 0o600);
    assert_eq!(mode(&v.key()), 0o600);
    let key_before = std::fs::read(v.key()).unwrap();
    let o = v.run(&["init"], b"");
    assert_eq!(code(&o), 5, "second init must refuse: {}", stderr(&o));
    assert!(
        stderr(&o).starts_with("sealbox: already_exists: "),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(v.key()).unwrap(), key_before);
}

#[test]
fn put_and_get_never_show_the_value_unless_revealed() {
    let v = Vault::init();
    let o = v.run(&["put", DB], DB_JSON.as_bytes());
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_no_value(&o, DB_PASSWORD);

    let o = v.run(&["get", DB], b"");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_no_value(&o, DB_PASSWORD);
    assert!(stdout(&o).contains("not shown"), "{}", stdout(&o));

    let got = v.json(&["get", DB], b"");
    assert_eq!(got["length"], DB_JSON.len());
    assert_eq!(got["stages"][0], "CURRENT");

    let o = v.run(&["get", DB, "--reveal"], b"");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(o.stdout, DB_JSON.as_bytes());

    let out = v.path("db.json");
    let out_s = out.to_str().unwrap();
    let o = v.run(&["get", DB, "--out", out_s], b"");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_no_value(&o, DB_PASSWORD);
    assert_eq!(std::fs::read(&out).unwrap(), DB_JSON.as_bytes());
    assert_eq!(mode(&out), 0o600);
}

/// A device node for the test: a private null device when this process may make one (so a
/// regression cannot replace the machine's `/dev/null`), else `/dev/null` itself.
fn null_device(v: &Vault) -> std::path::PathBuf {
    let private = v.path("null");
    let made = Command::new("mknod")
        .args([private.to_str().unwrap(), "c", "1", "3"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if made { private } else { "/dev/null".into() }
}

#[test]
fn get_out_overwrites_only_regular_files() {
    use std::os::unix::fs::{FileTypeExt, symlink};
    let v = Vault::init();
    v.ok(&["put", DB], DB_JSON.as_bytes());

    let fifo = v.path("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo failed");
    let device = null_device(&v);
    let elsewhere = v.path("elsewhere.txt");
    std::fs::write(&elsewhere, "not yours").unwrap();
    let link = v.path("link");
    symlink(&elsewhere, &link).unwrap();

    for (target, what) in [
        (&fifo, "a FIFO"),
        (&device, "a device"),
        (&link, "a symbolic link"),
    ] {
        for overwrite in [true, false] {
            let mut args = vec!["get", DB, "--out", target.to_str().unwrap()];
            if overwrite {
                args.push("--overwrite");
            }
            let o = v.run(&args, b"");
            assert_eq!(code(&o), 8, "{args:?}: {}", stderr(&o));
            assert!(stderr(&o).contains(what), "{args:?}: {}", stderr(&o));
            assert!(stderr(&o).contains("left untouched"), "{}", stderr(&o));
            assert_no_value(&o, DB_PASSWORD);
        }
    }
    // Each is left exactly as it was.
    let kind = |p: &Path| std::fs::symlink_metadata(p).unwrap().file_type();
    assert!(kind(&fifo).is_fifo());
    assert!(kind(&device).is_char_device());
    assert!(kind(&link).is_symlink());
    assert_eq!(std::fs::read_link(&link).unwrap(), elsewhere);
    assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "not yours");
    let leftovers: Vec<_> = std::fs::read_dir(v.dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // A regular file, even a world-readable one, is replaced by an owner-only file.
    let regular = v.path("regular.txt");
    std::fs::write(&regular, "old").unwrap();
    std::fs::set_permissions(&regular, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = regular.to_str().unwrap();
    let o = v.run(&["get", DB, "--out", out], b"");
    assert_eq!(code(&o), 5, "without --overwrite: {}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&regular).unwrap(), "old");
    v.ok(&["get", DB, "--out", out, "--overwrite"], b"");
    assert_eq!(std::fs::read(&regular).unwrap(), DB_JSON.as_bytes());
    assert_eq!(mode(&regular), 0o600);
}

#[test]
fn json_fields_and_argv_values() {
    let v = Vault::init();
    v.ok(
        &["put", DB, "--file", &write_file(&v, "in.json", DB_JSON)],
        b"",
    );
    let o = v.run(&["get", DB, "--field", "password", "--reveal"], b"");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), DB_PASSWORD);

    let o = v.run(&["put", TOKEN, "--value", TOKEN_VALUE], b"");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("warning: --value"), "{}", stderr(&o));
    assert_no_value(&o, TOKEN_VALUE);
    let o = v.run(&["get", TOKEN, "--reveal"], b"");
    assert_eq!(stdout(&o), TOKEN_VALUE);
}

fn write_file(v: &Vault, name: &str, content: &str) -> String {
    let p = v.path(name);
    std::fs::write(&p, content).unwrap();
    p.to_str().unwrap().to_owned()
}

#[test]
fn versions_stages_and_compare_and_set() {
    let v = Vault::init();
    let first = v.json(&["put", TOKEN, "--create-only"], b"token-one");
    let first_version = first["version"].as_str().unwrap().to_owned();

    let o = v.run(&["put", TOKEN, "--create-only"], b"token-two");
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("sealbox: conflict: "),
        "{}",
        stderr(&o)
    );

    let second = v.json(
        &[
            "put",
            TOKEN,
            "--stage",
            "PENDING",
            "--expect-version",
            &first_version,
        ],
        b"token-two",
    );
    let second_version = second["version"].as_str().unwrap().to_owned();
    let o = v.run(&["put", TOKEN, "--expect-version", "999"], b"token-three");
    assert_eq!(code(&o), 5, "{}", stderr(&o));

    let versions = v.json(&["versions", TOKEN], b"");
    let rows = versions["versions"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let o = v.run(&["get", TOKEN, "--stage", "PENDING", "--reveal"], b"");
    assert_eq!(o.stdout, b"token-two");

    v.ok(&["stage", TOKEN, "CURRENT", &second_version], b"");
    v.ok(&["stage", TOKEN, "PENDING", "--remove"], b"");
    let o = v.run(&["get", TOKEN, "--reveal"], b"");
    assert_eq!(o.stdout, b"token-two");
    let o = v.run(&["get", TOKEN, "--stage", "PREVIOUS", "--reveal"], b"");
    assert_eq!(o.stdout, b"token-one");
    let o = v.run(
        &["get", TOKEN, "--version", &first_version, "--reveal"],
        b"",
    );
    assert_eq!(o.stdout, b"token-one");

    let described = v.json(&["describe", TOKEN], b"");
    assert_eq!(described["name"], TOKEN);
    assert_eq!(described["versions"].as_array().unwrap().len(), 2);
}

#[test]
fn list_delete_restore_and_not_found() {
    let v = Vault::init();
    v.ok(&["put", "predis/prod/a"], b"1");
    v.ok(&["put", "predis/dev/b"], b"2");
    let listed = v.json(&["list", "predis/prod/"], b"");
    assert_eq!(listed["secrets"].as_array().unwrap().len(), 1);
    let text = v.ok(&["list"], b"");
    assert_eq!(text.lines().count(), 2, "{text}");

    v.ok(&["delete", "predis/prod/a", "--recovery-days", "7"], b"");
    let o = v.run(&["get", "predis/prod/a"], b"");
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("sealbox: not_found: "),
        "{}",
        stderr(&o)
    );
    v.ok(&["restore", "predis/prod/a"], b"");
    v.ok(&["get", "predis/prod/a"], b"");
    // Restoring a live secret is a mistake worth hearing about (a wrong name, a delete that
    // never ran), not a success.
    let o = v.run(&["restore", "predis/prod/a"], b"");
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("is not deleted; nothing to restore"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), "", "no `restored` report");

    v.ok(&["delete", "predis/prod/a", "--force"], b"");
    let o = v.run(&["restore", "predis/prod/a"], b"");
    assert_eq!(code(&o), 3, "{}", stderr(&o));

    let o = v.run(&["get", "not a name"], b"");
    assert_eq!(code(&o), 8, "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("sealbox: invalid_input: "),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_erased_namespace_cannot_be_read_from_a_vault_backup_with_the_current_key_file() {
    let v = Vault::init();
    v.ok(&["put", DB], DB_JSON.as_bytes());
    v.ok(&["put", "acme/prod/api/key"], b"acme-token-value");
    // A file-level backup of the vault (and its journal, if any), taken before the erase.
    let backup = v.path("backup.db");
    std::fs::copy(v.vault(), &backup).unwrap();
    let wal = v.path("vault.db-wal");
    if wal.exists() {
        std::fs::copy(&wal, v.path("backup.db-wal")).unwrap();
    }

    let erased = v.json(&["namespace", "erase", "acme", "--yes"], b"");
    assert_eq!(erased["secrets_erased"], 1, "{erased}");
    assert_eq!(erased["provider_key_destroyed"], true, "{erased}");
    assert_eq!(erased["backups_covered"], true, "{erased}");
    let human = v.ok(&["namespace", "erase", "acme", "--yes"], b"");
    assert!(human.contains("cannot read it"), "{human}");

    // The backup is older than the key file's write counter, so it does not open in place
    // (rollback detection); restored on purpose elsewhere, it opens with the current key file.
    let o = v.run_with_key(
        &v.key(),
        &["--vault", backup.to_str().unwrap(), "get", DB],
        b"",
    );
    assert!(
        stderr(&o).starts_with("sealbox: integrity: "),
        "{}",
        stderr(&o)
    );
    let restored = v.path("restored.db");
    let o = support::run_with_env(
        &["backup", "restore", backup.to_str().unwrap()],
        b"",
        &[("SEALBOX_VAULT", &restored), ("SEALBOX_KEY_FILE", &v.key())],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let from_backup = |args: &[&str]| {
        support::run_with_env(
            args,
            b"",
            &[("SEALBOX_VAULT", &restored), ("SEALBOX_KEY_FILE", &v.key())],
        )
    };
    let o = from_backup(&["get", "acme/prod/api/key", "--reveal"]);
    assert_eq!(code(&o), 6, "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("sealbox: key_destroyed: "),
        "{}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty());
    assert_no_value(&o, "acme-token-value");
    let o = from_backup(&["get", DB, "--reveal"]);
    assert_eq!(
        o.stdout,
        DB_JSON.as_bytes(),
        "the backup's other namespaces still read: {}",
        stderr(&o)
    );
}

#[test]
fn key_rotation_verify_and_namespace_erasure() {
    let v = Vault::init();
    v.ok(&["put", DB], DB_JSON.as_bytes());
    v.ok(&["put", "acme/prod/api/key"], b"acme-token-value");

    v.ok(&["keys", "rotate-master"], b"");
    v.ok(&["keys", "rotate-kek", "predis"], b"");
    let o = v.run(&["keys", "rotate-kek", "predsi"], b"");
    assert!(
        stderr(&o).starts_with("sealbox: not_found: "),
        "a typo must not create keys: {}",
        stderr(&o)
    );
    assert_ne!(code(&o), 0);
    let verified = v.json(&["verify"], b"");
    assert_eq!(verified["ok"], true, "{verified}");
    let o = v.run(&["get", DB, "--reveal"], b"");
    assert_eq!(o.stdout, DB_JSON.as_bytes());

    let o = v.run(&["namespace", "erase", "acme"], b"");
    assert_eq!(code(&o), 8, "erase needs --yes: {}", stderr(&o));
    v.ok(&["namespace", "erase", "acme", "--yes"], b"");
    let o = v.run(&["get", "acme/prod/api/key", "--reveal"], b"");
    assert!(
        code(&o) == 6 || code(&o) == 3,
        "erased secrets are destroyed or gone: {} {}",
        code(&o),
        stderr(&o)
    );
    assert!(o.stdout.is_empty());
    let o = v.run(&["get", DB, "--reveal"], b"");
    assert_eq!(
        o.stdout,
        DB_JSON.as_bytes(),
        "other namespaces are untouched"
    );
}

#[test]
fn a_wrong_or_exposed_key_file_is_refused() {
    let v = Vault::init();
    v.ok(&["put", TOKEN], TOKEN_VALUE.as_bytes());

    let other = Vault::init();
    let o = v.run_with_key(&other.key(), &["get", TOKEN, "--reveal"], b"");
    assert_eq!(code(&o), 6, "wrong key: {}", stderr(&o));
    assert!(
        stderr(&o).starts_with("sealbox: wrong_key: "),
        "{}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty());

    std::fs::set_permissions(v.key(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = v.run(&["get", TOKEN, "--reveal"], b"");
    assert_ne!(code(&o), 0, "a world-readable key file must be refused");
    assert!(stderr(&o).contains("master.key"), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
}

fn vault_db(v: &Vault) -> rusqlite::Connection {
    rusqlite::Connection::open(v.vault()).expect("open the vault file behind sealbox's back")
}

/// The envelope of `name` at `version`: the current version's is stored once, in the
/// secret's row (its version row holds an empty one); the others in their version rows.
fn envelope(conn: &rusqlite::Connection, name: &str, version: i64) -> Vec<u8> {
    conn.query_row(
        "SELECT CASE WHEN s.cur_version = v.version THEN s.cur_envelope ELSE v.envelope END \
         FROM versions v JOIN secrets s ON s.id = v.secret_id \
         WHERE s.name = ?1 AND v.version = ?2",
        rusqlite::params![name, version],
        |r| r.get(0),
    )
    .expect("read an envelope")
}

/// Writes `bytes` where `envelope` reads the envelope from.
fn set_envelope(conn: &rusqlite::Connection, name: &str, version: i64, bytes: &[u8]) {
    let changed = conn
        .execute(
            "UPDATE versions SET envelope = ?3 WHERE version = ?2 AND secret_id = \
             (SELECT id FROM secrets WHERE name = ?1 AND cur_version IS NOT ?2)",
            rusqlite::params![name, version, bytes],
        )
        .expect("write an envelope")
        + conn
            .execute(
                "UPDATE secrets SET cur_envelope = ?3 WHERE name = ?1 AND cur_version = ?2",
                rusqlite::params![name, version, bytes],
            )
            .expect("write the current version's envelope");
    assert_eq!(changed, 1);
}

#[test]
fn swapped_ciphertexts_fail_verify_and_reads_with_integrity_errors() {
    let v = Vault::init();
    v.ok(&["put", "predis/prod/a"], b"value-of-a-1");
    v.ok(&["put", "predis/prod/a"], b"value-of-a-2");
    v.ok(&["put", "predis/prod/b"], b"value-of-b-1");
    let conn = vault_db(&v);
    // Same secret, same data key: only the binding of the version number catches it.
    let (one, two) = (
        envelope(&conn, "predis/prod/a", 1),
        envelope(&conn, "predis/prod/a", 2),
    );
    set_envelope(&conn, "predis/prod/a", 1, &two);
    set_envelope(&conn, "predis/prod/a", 2, &one);
    // Another secret's ciphertext: sealed under another data key.
    let other = envelope(&conn, "predis/prod/a", 1);
    set_envelope(&conn, "predis/prod/b", 1, &other);
    drop(conn);

    let o = v.run(&["get", "predis/prod/a", "--reveal"], b"");
    assert_eq!(code(&o), 6, "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    assert!(
        stderr(&o).starts_with("sealbox: integrity: "),
        "{}",
        stderr(&o)
    );
    let o = v.run(&["get", "predis/prod/b", "--reveal"], b"");
    assert_eq!(code(&o), 6, "{}", stderr(&o));
    assert!(o.stdout.is_empty());

    let o = v.run(&["--json", "verify"], b"");
    assert_eq!(code(&o), 6, "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["ok"], false);
    let failures = report["failures"].as_array().unwrap();
    // One per secret: each secret's row (holding the edited copy of its current version)
    // fails its MAC, and verify reads no further rows of a secret whose own row is not genuine.
    assert_eq!(failures.len(), 2, "{report}");
    assert_no_value(&o, "value-of-");
}

#[test]
fn a_flipped_byte_is_an_integrity_error() {
    let v = Vault::init();
    v.ok(&["put", TOKEN], TOKEN_VALUE.as_bytes());
    let conn = vault_db(&v);
    let mut bytes = envelope(&conn, TOKEN, 1);
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    set_envelope(&conn, TOKEN, 1, &bytes);
    drop(conn);
    let o = v.run(&["get", TOKEN, "--reveal"], b"");
    assert_eq!(code(&o), 6, "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("sealbox: integrity: "),
        "{}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty());
}

#[test]
fn init_reuses_an_existing_key_file_for_a_second_vault() {
    let v = Vault::init();
    let second = v.path("second.db");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sealbox"));
    let o = cmd
        .args(["--json", "--vault", second.to_str().unwrap(), "init"])
        .env("SEALBOX_KEY_FILE", v.key())
        .env_remove("SEALBOX_VAULT")
        .env_remove("SEALBOX_CONFIG")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["key_created"], false);
    assert_eq!(mode(&second), 0o600);
}

#[test]
fn a_missing_key_file_is_never_created_by_an_ordinary_command() {
    let v = Vault::init();
    let typo = v.path("typo.key");
    let o = v.run_with_key(&typo, &["list"], b"");
    assert_eq!(code(&o), 8, "{}", stderr(&o));
    assert!(stderr(&o).contains("typo.key"), "{}", stderr(&o));
    assert!(!typo.exists());
}

#[test]
fn a_closed_pipe_ends_quietly() {
    let v = Vault::init();
    for i in 0..3 {
        v.ok(&["put", &format!("predis/prod/s{i}")], b"v");
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_sealbox"))
        .arg("list")
        .env("SEALBOX_VAULT", v.vault())
        .env("SEALBOX_KEY_FILE", v.key())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
}

#[test]
fn a_missing_vault_says_how_to_make_one() {
    let v = Vault::init();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sealbox"));
    let o = cmd
        .args(["--vault", v.path("absent.db").to_str().unwrap(), "list"])
        .env("SEALBOX_KEY_FILE", v.key())
        .env_remove("SEALBOX_VAULT")
        .env_remove("SEALBOX_CONFIG")
        .output()
        .unwrap();
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(stderr(&o).contains("sealbox init"), "{}", stderr(&o));
    assert!(!v.path("absent.db").exists());
}

/// issue 24: tampering with the vault's tables exits 6 (integrity), never 1 (internal).
#[test]
fn tampered_tables_exit_with_the_integrity_code() {
    let tamper = [
        (
            "UPDATE master_checks SET check_value = \
             CAST(X'FF' || substr(CAST(check_value AS BLOB), 2) AS TEXT)",
            "master key check",
        ),
        ("DROP TABLE versions", "`versions` table"),
        (
            "ALTER TABLE secrets RENAME COLUMN cur_envelope TO moved",
            "altered",
        ),
    ];
    for (sql, named) in tamper {
        let v = Vault::init();
        v.ok(&["put", TOKEN], TOKEN_VALUE.as_bytes());
        rusqlite::Connection::open(v.vault())
            .unwrap()
            .execute_batch(sql)
            .unwrap();
        for args in [&["get", TOKEN, "--reveal"][..], &["verify"][..]] {
            let o = v.run(args, b"");
            assert_eq!(code(&o), 6, "{sql}: {args:?}: {}", stderr(&o));
            assert!(
                stderr(&o).starts_with("sealbox: integrity: ") && stderr(&o).contains(named),
                "{sql}: {}",
                stderr(&o)
            );
            assert_no_value(&o, TOKEN_VALUE);
        }
    }
}
