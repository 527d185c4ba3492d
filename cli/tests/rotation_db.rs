//! `sealbox rotate NAME --config FILE` with the `postgres` rotator named in the config's
//! rotation schedule, against a real PostgreSQL (Debian's, started by the database rotators'
//! test support, shared here by path), as a specification:
//!
//! * single user: the role's password changes on the server to the value now `CURRENT`; the
//!   old password no longer logs in; the admin password comes from a file;
//! * alternating users: the admin password is a sealbox secret (`NAME#FIELD`), and two
//!   rotations hand the credential to `batch_clone`, then back to `batch`, each able to log in;
//! * a wrong admin password fails the rotation with an access error that names neither
//!   password, and `CURRENT` stays the value that still logs in;
//! * no password reaches the command's output, the audit log or the server's statement log.

#[path = "../../rotators/db/tests/support/mod.rs"]
mod db_server;
mod support;

use std::path::PathBuf;
use std::process::Command;

use db_server::ADMIN_PASSWORD;
use support::{Scratch, code, run_with_env, stderr, stdout};

const SINGLE: &str = "predis/prod/postgres/app";
const ALTERNATING: &str = "predis/prod/postgres/batch";
const BROKEN: &str = "predis/prod/postgres/broken";

fn psql_bin() -> PathBuf {
    std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (Debian package postgresql)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin/psql")))
        .filter(|p| p.exists())
        .max()
        .expect("a /usr/lib/postgresql/VERSION/bin/psql")
}

/// Logs in over TCP as `user` with `password`; the session user, or psql's error.
fn login(port: u16, user: &str, password: &str) -> Result<String, String> {
    let o = Command::new(psql_bin())
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", user])
        .args(["-d", "postgres", "-w", "-tA", "-c", "SELECT current_user"])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("run psql");
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).into_owned())
    }
}

fn admin_sql(port: u16, sql: &str) {
    let o = Command::new(psql_bin())
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "admin"])
        .args(["-d", "postgres", "-w", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGPASSWORD", ADMIN_PASSWORD)
        .output()
        .expect("run psql");
    assert!(
        o.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn config(s: &Scratch, port: u16) -> String {
    std::fs::write(s.path("pg-admin"), format!("{ADMIN_PASSWORD}\n")).unwrap();
    let config = s.path("sealbox.yaml");
    std::fs::write(
        &config,
        format!(
            "secrets: {{provider: local, config: {{path: ./vault.db, key_file: ./master.key}}}}\n\
             principal: user:rotator\n\
             audit: {{path: ./audit.jsonl}}\n\
             rotation:\n\
            \x20 secrets:\n\
            \x20   \"{SINGLE}\":\n\
            \x20     type: user_password\n\
            \x20     rotator:\n\
            \x20       postgres: {{host: 127.0.0.1, port: {port}, admin_user: admin,\n\
            \x20                  admin_password_file: ./pg-admin, user: app}}\n\
            \x20   \"{ALTERNATING}\":\n\
            \x20     type: user_password\n\
            \x20     length: 32\n\
            \x20     rotator:\n\
            \x20       postgres: {{host: 127.0.0.1, port: {port}, admin_user: admin,\n\
            \x20                  admin_password_secret: \"ops/postgres/admin#password\",\n\
            \x20                  user: batch, strategy: alternating_users}}\n\
            \x20   \"{BROKEN}\":\n\
            \x20     type: user_password\n\
            \x20     rotator:\n\
            \x20       postgres: {{host: 127.0.0.1, port: {port}, admin_user: admin,\n\
            \x20                  admin_password: not-the-admin-password, user: broken}}\n"
        ),
    )
    .unwrap();
    config.to_str().unwrap().to_owned()
}

fn run(config: &str, args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut all = vec!["--config", config];
    all.extend_from_slice(args);
    run_with_env(&all, stdin, &[])
}

/// The current credential's user name and password.
fn current(config: &str, name: &str) -> (String, String) {
    let o = run(config, &["get", name, "--reveal"], b"");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("a JSON credential");
    (
        v["username"].as_str().unwrap().to_owned(),
        v["password"].as_str().unwrap().to_owned(),
    )
}

fn put(config: &str, name: &str, value: &serde_json::Value) {
    let o = run(config, &["put", name], value.to_string().as_bytes());
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

fn rotate(config: &str, name: &str, seen: &mut String) -> std::process::Output {
    let o = run(config, &["rotate", name], b"");
    seen.push_str(&stdout(&o));
    seen.push_str(&stderr(&o));
    o
}

#[test]
fn sealbox_rotate_changes_a_real_postgres_password_from_the_config() {
    let server = db_server::postgres();
    let port = server.port;
    for (role, password) in [
        ("app", "initial-app"),
        ("batch", "initial-batch"),
        ("batch_clone", "initial-batch-clone"),
        ("broken", "initial-broken"),
    ] {
        admin_sql(
            port,
            &format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'"),
        );
    }
    let s = Scratch::new();
    let c = config(&s, port);
    put(
        &c,
        SINGLE,
        &serde_json::json!({"username": "app", "password": "initial-app"}),
    );
    put(
        &c,
        ALTERNATING,
        &serde_json::json!({"username": "batch", "password": "initial-batch"}),
    );
    put(
        &c,
        BROKEN,
        &serde_json::json!({"username": "broken", "password": "initial-broken"}),
    );
    put(
        &c,
        "ops/postgres/admin",
        &serde_json::json!({"username": "admin", "password": ADMIN_PASSWORD}),
    );
    let mut seen = String::new();
    let mut passwords = Vec::new();

    // Single user, admin password from a file.
    let o = rotate(&c, SINGLE, &mut seen);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).starts_with(&format!("rotated {SINGLE}: version")));
    let (user, password) = current(&c, SINGLE);
    assert_eq!(user, "app");
    assert_ne!(password, "initial-app");
    assert!(password.len() >= 16, "a SOC2 user_password");
    assert_eq!(login(port, "app", &password).as_deref(), Ok("app"));
    assert!(
        login(port, "app", "initial-app").is_err(),
        "the old password still logs in"
    );
    passwords.push(password);

    // Alternating users, admin password read through sealbox: batch_clone, then batch.
    for expected in ["batch_clone", "batch"] {
        let o = rotate(&c, ALTERNATING, &mut seen);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let (user, password) = current(&c, ALTERNATING);
        assert_eq!(user, expected);
        assert_eq!(password.chars().count(), 32, "length: 32 from the schedule");
        assert_eq!(login(port, expected, &password).as_deref(), Ok(expected));
        passwords.push(password);
    }
    // The user rotated away from keeps its password until the next rotation.
    assert_eq!(
        login(port, "batch_clone", &passwords[1]).as_deref(),
        Ok("batch_clone")
    );

    // A wrong admin password: the rotation fails at its set step, CURRENT is unchanged.
    let o = rotate(&c, BROKEN, &mut seen);
    let err = stderr(&o);
    assert_eq!(code(&o), 4, "an access error: {err}");
    assert!(!err.contains("not-the-admin-password"), "{err}");
    assert_eq!(
        current(&c, BROKEN),
        ("broken".to_owned(), "initial-broken".to_owned())
    );
    assert_eq!(
        login(port, "broken", "initial-broken").as_deref(),
        Ok("broken")
    );
    let o = run(&c, &["--json", "rotation", "status"], b"");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let status: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let broken = status["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == BROKEN)
        .expect("the broken secret in the status");
    assert_eq!(broken["last_failure"]["step"], "set", "{broken}");
    seen.push_str(&stdout(&o));

    // No password anywhere it could leak.
    let audit = std::fs::read_to_string(s.path("audit.jsonl")).unwrap();
    let server_log = server.log_text();
    for password in passwords
        .iter()
        .map(String::as_str)
        .chain([ADMIN_PASSWORD, "not-the-admin-password"])
    {
        assert!(!seen.contains(password), "a password in the command output");
        assert!(!audit.contains(password), "a password in the audit log");
        if password != ADMIN_PASSWORD {
            // The test's own CREATE ROLE statements hold the initial passwords only.
            assert!(
                !server_log.contains(password),
                "a password in the server's statement log"
            );
        }
    }
    assert!(
        server_log.contains("ALTER ROLE"),
        "the statement log is on and shows the rotations"
    );
}
