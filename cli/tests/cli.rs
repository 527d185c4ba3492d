//! End-to-end tests: the built `sealbox` binary, run as a process, as an operator would.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use support::{Scratch, code, run_with_env, stderr, stdout};

fn run(args: &[&str]) -> Output {
    run_with_env(args, b"", &[])
}

#[test]
fn help_documents_every_command_and_the_exit_codes() {
    let o = run(&["--help"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let help = stdout(&o);
    for command in [
        "init",
        "put",
        "get",
        "list",
        "describe",
        "delete",
        "restore",
        "versions",
        "stage",
        "keys",
        "namespace",
        "verify",
        "audit",
    ] {
        assert!(help.contains(command), "{command} missing from --help");
    }
    assert!(help.contains("Exit codes:"), "{help}");
}

#[test]
fn the_readme_lists_the_same_exit_codes_as_help() {
    let help = stdout(&run(&["--help"]));
    let table = &help[help.find("Exit codes:").expect("exit codes in help")..];
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("cli/README.md");
    assert!(
        readme.contains(table.trim_end()),
        "cli/README.md must contain the exit code table exactly as --help prints it:\n{table}"
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["frobnicate"][..],
        &["get"],
        &["stage", "a/b", "PENDING"],
        &["get", "a/b", "--reveal", "--out", "f"],
        &["delete", "a/b", "--recovery-days", "0"],
    ] {
        let o = run(args);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn a_missing_vault_is_a_config_error_naming_the_flag() {
    let o = run(&["list"]);
    assert_eq!(code(&o), 8, "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("sealbox: config: no vault given: pass --vault"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn namespace_erase_requires_yes_before_anything_is_opened() {
    let s = Scratch::new();
    let o = s.run(&["namespace", "erase", "acme"], b"");
    assert_eq!(code(&o), 8, "{}", stderr(&o));
    assert!(stderr(&o).contains("--yes"), "{}", stderr(&o));
    assert!(!s.vault().exists());
}

/// A config with an in-memory store and an audit log in `dir` (the memory store forgets
/// everything between processes; the audit log does not).
fn audited_config(dir: &Path, policy: &str) -> PathBuf {
    let config = dir.join("sealbox.yaml");
    std::fs::write(
        &config,
        format!(
            "secrets: {{provider: memory}}\n\
             principal: user:ops\n\
             audit: {{path: ./audit.jsonl, fsync: batch}}\n\
             {policy}"
        ),
    )
    .unwrap();
    config
}

#[test]
fn config_clients_are_audited_and_the_log_verifies() {
    let s = Scratch::new();
    let config = audited_config(s.dir(), "");
    let config = config.to_str().unwrap();
    let o = run_with_env(
        &["--config", config, "put", "app/api/token"],
        b"t0ken-value",
        &[],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = run_with_env(&["--config", config, "get", "app/api/missing"], b"", &[]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));

    let log = s.path("audit.jsonl");
    let text = std::fs::read_to_string(&log).expect("the audit log was written");
    assert!(text.lines().count() >= 2, "{text}");
    assert!(!text.contains("t0ken-value"));

    let log_s = log.to_str().unwrap();
    let o = run(&["audit", "verify", log_s]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("ok"), "{}", stdout(&o));

    // Reorder two lines: detected, reported with the line, exit 6.
    let mut lines: Vec<&str> = text.lines().collect();
    lines.swap(0, 1);
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let o = run(&["--json", "audit", "verify", log_s]);
    assert_eq!(code(&o), 6, "{}{}", stdout(&o), stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["problem"]["line"], 1);
    assert!(
        stderr(&o).starts_with("sealbox: integrity: "),
        "{}",
        stderr(&o)
    );
}

#[test]
fn policy_denials_exit_4() {
    let s = Scratch::new();
    let policy =
        "policy: {rules: [{principals: [\"user:ops\"], allow: [read], secrets: [\"app/*\"]}]}\n";
    let config = audited_config(s.dir(), policy);
    let o = run_with_env(
        &["--config", config.to_str().unwrap(), "put", "app/api/token"],
        b"v",
        &[],
    );
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("sealbox: access_denied: "),
        "{}",
        stderr(&o)
    );
}

#[test]
fn config_and_vault_together_are_refused() {
    let s = Scratch::new();
    let config = audited_config(s.dir(), "");
    let o = s.run(&["--config", config.to_str().unwrap(), "list"], b"");
    assert_eq!(code(&o), 8, "{}", stderr(&o));
}

#[test]
fn a_config_with_a_local_store_serves_data_and_vault_commands_and_audits_them() {
    let s = Scratch::new();
    let config = s.path("sealbox.yaml");
    std::fs::write(
        &config,
        "secrets: {provider: local, config: {path: ./vault.db, key_file: ./master.key}}\n\
         principal: user:ops\n\
         audit: {path: ./audit.jsonl}\n",
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let with_config = |args: &[&str], stdin: &[u8]| {
        let mut all = vec!["--config", c];
        all.extend_from_slice(args);
        run_with_env(&all, stdin, &[])
    };
    let o = with_config(&["put", "predis/prod/api/auth-token"], b"t0ken-value");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = with_config(&["get", "predis/prod/api/auth-token", "--reveal"], b"");
    assert_eq!(o.stdout, b"t0ken-value", "{}", stderr(&o));
    let o = with_config(&["put", "acme/prod/api/key"], b"acme-value");
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    for args in [
        &["keys", "rotate-master"][..],
        &["keys", "rotate-kek", "predis"],
        &["verify"],
        &["namespace", "erase", "acme", "--yes"],
    ] {
        let o = with_config(args, b"");
        assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
    }
    // restore goes through the client (and its policy) like the data commands
    let o = with_config(&["delete", "predis/prod/api/auth-token"], b"");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = with_config(&["restore", "predis/prod/api/auth-token"], b"");
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    // The same vault through --vault/--key-file: one key id for every front end.
    let o = s.run(&["get", "predis/prod/api/auth-token", "--reveal"], b"");
    assert_eq!(o.stdout, b"t0ken-value", "{}", stderr(&o));
    let o = s.run(&["get", "acme/prod/api/key"], b"");
    assert_ne!(code(&o), 0, "acme was erased");

    let log = s.path("audit.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    // The library (the client) records the erasure: who, which namespace, what was destroyed.
    let erase = text
        .lines()
        .find(|l| l.contains("\"event\":\"namespace.erase\""))
        .unwrap_or_else(|| panic!("no erase event: {text}"));
    for want in [
        "\"user\":\"user:ops\"",
        "\"resource\":\"acme\"",
        "\"success\":true",
        "namespace key in the master key provider is destroyed",
    ] {
        assert!(erase.contains(want), "missing {want}: {erase}");
    }
    assert!(text.contains("\"action\":\"key\""), "{text}");
    assert!(!text.contains("t0ken-value") && !text.contains("acme-value"));
    // The chain key is the vault's, wrapped by its master key: nothing lies beside the log,
    // and verify finds the key through the config.
    assert!(!s.path("audit.jsonl.key").exists());
    let o = run(&["audit", "verify", log.to_str().unwrap()]);
    assert_eq!(code(&o), 8, "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("--config"), "{}", stderr(&o));
    let o = with_config(&["audit", "verify", log.to_str().unwrap()], b"");
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn the_aws_provider_is_registered_for_config_files() {
    let s = Scratch::new();
    let config = s.path("aws.yaml");
    std::fs::write(
        &config,
        "secrets: {provider: aws, config: {region: us-east-1, no_such_setting: 1}}\n",
    )
    .unwrap();
    let o = run(&["--config", config.to_str().unwrap(), "list"]);
    assert_eq!(code(&o), 8, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(!err.contains("unknown provider"), "{err}");
    assert!(err.contains("secrets.config"), "{err}");
}

#[test]
fn vault_commands_open_the_key_a_master_key_block_names_and_pkcs11_is_registered() {
    let s = Scratch::init();
    let config = s.path("sealbox.yaml");
    std::fs::write(
        &config,
        "secrets:\n  provider: local\n  config:\n    path: ./vault.db\n    master_key: {provider: key_file, path: ./master.key}\n",
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let o = run_with_env(
        &["--config", c, "put", "predis/prod/api/auth-token"],
        b"t0ken",
        &[],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    for args in [&["keys", "rotate-master"][..], &["verify"]] {
        let mut all = vec!["--config", c];
        all.extend_from_slice(args);
        let o = run_with_env(&all, b"", &[]);
        assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
    }
    // The same vault and key file through --vault/--key-file, after the rotation.
    let o = s.run(&["get", "predis/prod/api/auth-token", "--reveal"], b"");
    assert_eq!(o.stdout, b"t0ken", "{}", stderr(&o));

    // A pkcs11 block reaches the provider (the module is what is missing, not the provider).
    let hsm = s.path("hsm.yaml");
    std::fs::write(
        &hsm,
        "secrets: {provider: local, config: {path: ./vault.db, master_key: {provider: pkcs11, module: ./no-such-hsm.so, token_label: t, pin: \"4711\", key_label: m}}}\n",
    )
    .unwrap();
    for args in [&["list"][..], &["verify"]] {
        let mut all = vec!["--config", hsm.to_str().unwrap()];
        all.extend_from_slice(args);
        let o = run_with_env(&all, b"", &[]);
        assert_eq!(code(&o), 8, "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("no-such-hsm.so"), "{err}");
        assert!(
            !err.contains("unknown provider") && !err.contains("4711"),
            "{err}"
        );
    }
}

/// Set in the worker processes `four_workers_...` spawns: the config they share.
const WORKER_CONFIG_ENV: &str = "SEALBOX_CLI_AUDIT_WORKER_CONFIG";
const READS_PER_WORKER: usize = 10_000;

#[test]
fn audit_verify_fails_on_a_deleted_anchor_unless_allow_unanchored() {
    let s = Scratch::new();
    let config = audited_config(s.dir(), "");
    let config = config.to_str().unwrap();
    for name in ["app/a", "app/b", "app/c"] {
        let o = run_with_env(&["--config", config, "put", name], b"v4lue", &[]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    }
    let log = s.path("audit.jsonl");
    let log_s = log.to_str().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    // Cut the last line and delete the anchor that would have told.
    let kept: Vec<&str> = text.lines().take(2).collect();
    std::fs::write(&log, kept.join("\n") + "\n").unwrap();
    std::fs::remove_file(s.path("audit.jsonl.head")).unwrap();
    let o = run(&["--json", "audit", "verify", log_s]);
    assert_eq!(code(&o), 6, "{}{}", stdout(&o), stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["problem"]["kind"], "missing_anchor", "{report}");
    assert_eq!(report["anchored"], false, "{report}");
    let o = run(&["audit", "verify", log_s]);
    assert!(stdout(&o).contains("missing anchor"), "{}", stdout(&o));
    // For a log that never had an anchor.
    let o = run(&["audit", "verify", "--allow-unanchored", log_s]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn audit_verify_checks_a_log_against_checkpoints_kept_in_a_store() {
    let s = Scratch::new();
    let config = s.path("sealbox.yaml");
    std::fs::write(
        &config,
        "secrets: {provider: local, config: {path: ./vault.db, key_file: ./master.key}}\n\
         principal: user:ops\n\
         audit: {path: ./audit.jsonl, checkpoints: {every: 1, \
         to: [{store: default/audit/checkpoints}]}}\n",
    )
    .unwrap();
    let c = config.to_str().unwrap();
    for name in ["app/a", "app/b", "app/c", "app/d"] {
        let o = run_with_env(&["--config", c, "put", name], b"v4lue", &[]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    }
    let log = s.path("audit.jsonl");
    let log_s = log.to_str().unwrap();
    let verify = |extra: &[&str]| {
        let mut args = vec!["--json", "--config", c, "audit", "verify", log_s];
        args.extend_from_slice(extra);
        run(&args)
    };
    let checkpoints = ["--checkpoints", "default/audit/checkpoints"];
    let o = verify(&checkpoints);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["last_seq"], 3, "{report}");
    assert!(report["checkpoints"].as_u64().unwrap() >= 4, "{report}");
    let o = run(&[
        "--config",
        c,
        "audit",
        "verify",
        log_s,
        checkpoints[0],
        checkpoints[1],
    ]);
    assert!(stdout(&o).contains("checkpoints"), "{}", stdout(&o));

    // Cut back to two lines and the anchor removed: without checkpoints a log that "never had
    // an anchor" passes; the checkpoints in the store say it was cut.
    let text = std::fs::read_to_string(&log).unwrap();
    let kept: Vec<&str> = text.lines().take(2).collect();
    std::fs::write(&log, kept.join("\n") + "\n").unwrap();
    std::fs::remove_file(s.path("audit.jsonl.head")).unwrap();
    assert_eq!(code(&verify(&["--allow-unanchored"])), 0);
    let o = verify(&["--allow-unanchored", checkpoints[0], checkpoints[1]]);
    assert_eq!(code(&o), 6, "{}{}", stdout(&o), stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["problem"]["kind"], "rolled_back", "{report}");

    // The store must come from a config, and the secret must exist.
    let o = run(&["audit", "verify", log_s, checkpoints[0], checkpoints[1]]);
    assert_eq!(code(&o), 8, "{}", stderr(&o));
    assert!(stderr(&o).contains("--config"), "{}", stderr(&o));
    let o = verify(&["--checkpoints", "default/audit/elsewhere"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no audit checkpoints"),
        "{}",
        stderr(&o)
    );
}

/// A worker of a pre-forking service: a client from the shared config, a write, its reads.
/// Runs only in the spawned processes.
#[test]
fn audit_worker_child() {
    let Ok(config) = std::env::var(WORKER_CONFIG_ENV) else {
        return;
    };
    let c = sealbox::BlockingSealbox::from_config(&config).unwrap();
    let mut raw = *b"worker-value";
    c.put(
        "app/db",
        &sealbox::Secret::from_mut_slice(&mut raw).unwrap(),
    )
    .unwrap();
    for _ in 0..READS_PER_WORKER {
        c.get("app/db").unwrap();
    }
    c.flush_audit().unwrap();
}

#[test]
fn four_workers_on_one_config_leave_one_log_that_audit_verify_accepts() {
    if std::env::var(WORKER_CONFIG_ENV).is_ok() {
        return;
    }
    const WORKERS: usize = 4;
    let s = Scratch::new();
    let config = audited_config(s.dir(), "");
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
    let log = s.path("audit.jsonl");
    let log_s = log.to_str().unwrap();
    let o = run(&["--json", "audit", "verify", log_s]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let total = WORKERS * (READS_PER_WORKER + 1);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["anchored"], true, "{report}");
    assert_eq!(report["lines"], total, "{report}");
    assert_eq!(report["last_seq"], total - 1, "{report}");
    let text = std::fs::read_to_string(&log).unwrap();
    let reads = text
        .lines()
        .filter(|l| l.contains("\"event\":\"secret.read\""))
        .count();
    assert_eq!(reads, WORKERS * READS_PER_WORKER);
    let o = run(&["audit", "verify", log_s]);
    assert_eq!(
        stdout(&o),
        format!("{log_s}: ok, {total} lines verified\n"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_value_typed_as_an_argument_is_never_echoed() {
    const VALUE: &str = "s3cr3t-VALUE-123";
    for args in [
        &["put", "a/b", VALUE][..],
        &["get", "a/b", VALUE],
        &["put", "a/b", "--valeu=s3cr3t-VALUE-123"],
        &["put", "a/b", "--create-only=s3cr3t-VALUE-123"],
    ] {
        let o = run(args);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        for (stream, text) in [("stdout", stdout(&o)), ("stderr", stderr(&o))] {
            assert!(
                !text.contains(VALUE),
                "{args:?} echoed the value on {stream}: {text}"
            );
        }
    }
    let o = run(&["put", "a/b", VALUE]);
    assert!(
        stderr(&o).contains("values are read from standard input or --file"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn library_warnings_reach_stderr_unless_sealbox_log_silences_them() {
    let s = Scratch::new();
    const VALUE: &str = "w0rld-readable-VALUE";
    let secret = s.path("token");
    std::fs::write(&secret, VALUE).unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let config = s.path("sealbox.yaml");
    std::fs::write(
        &config,
        "secrets: {provider: file, config: {file: ./token, name: app/token, permissions: warn}}\n",
    )
    .unwrap();
    let args = [
        "--config",
        config.to_str().unwrap(),
        "get",
        "app/token",
        "--reveal",
    ];

    let o = run(&args);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), VALUE);
    let err = stderr(&o);
    assert!(err.contains("WARN"), "{err}");
    assert!(err.contains("accessible to other users"), "{err}");
    assert!(err.contains("mode=644"), "{err}");
    assert!(!err.contains(VALUE), "a log line carried the value: {err}");

    let o = run_with_env(&args, b"", &[("SEALBOX_LOG", Path::new("error"))]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stderr(&o), "", "SEALBOX_LOG=error still logged");

    // Everything sealbox logs at its most verbose still leaves the value out.
    let o = run_with_env(&args, b"", &[("SEALBOX_LOG", Path::new("trace"))]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(!stderr(&o).contains(VALUE), "{}", stderr(&o));
}

// ------------------------------------------------------------------------------- key lifecycle

fn rfc3339(text: &serde_json::Value) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(
        text.as_str().expect("a time"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339")
}

fn text(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// The `keys status --json` entry of `role` whose id or secret is `id`, in state `state`.
fn key_entry<'a>(
    status: &'a serde_json::Value,
    role: &str,
    id: &str,
) -> Vec<&'a serde_json::Value> {
    status["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter(|k| k["role"] == role && (k["id"] == id || k["secret"] == id))
        .collect()
}

#[test]
fn keys_status_reports_each_key_with_its_age_uses_and_due_date() {
    let v = Scratch::init();
    v.ok(&["put", "app/db"], b"first");
    v.ok(&["put", "app/db"], b"second");
    let status = v.json(&["keys", "status"], b"");
    assert_eq!(status["schedule"]["dek_seconds"], 30 * 86_400);
    assert_eq!(status["schedule"]["master_seconds"], 90 * 86_400);
    assert_eq!(status["schedule"]["session_seconds"], 86_400);
    let dek = key_entry(&status, "dek", "app/db")[0];
    // Two `put` processes each sealed one value: the persisted count has both.
    assert_eq!(
        (&dek["version"], &dek["uses"]),
        (&1.into(), &2.into()),
        "{dek}"
    );
    assert_eq!(dek["namespace"], "app");
    assert!(dek["id"].as_str().unwrap().starts_with("dek:"), "{dek}");
    let created = rfc3339(&dek["created"]);
    assert_eq!(rfc3339(&dek["due"]), created + time::Duration::days(30));
    assert_eq!(dek["is_due"], false);
    let kek = key_entry(&status, "kek", "app")[0];
    assert_eq!(
        (&kek["version"], &kek["uses"]),
        (&1.into(), &1.into()),
        "{kek}"
    );
    assert_eq!(kek["state"], "current");
    let kek_created = rfc3339(&kek["created"]);
    assert_eq!(rfc3339(&kek["due"]), kek_created + time::Duration::days(90));
    let master = key_entry(&status, "master", "local")[0];
    assert_eq!(
        rfc3339(&master["due"]),
        rfc3339(&master["created"]) + time::Duration::days(90)
    );

    // As of 31 days from now the data key is due, nothing else; the text form says so.
    let at = text(time::OffsetDateTime::now_utc() + time::Duration::days(31));
    let later = v.json(&["keys", "status", "--at", &at], b"");
    let due: Vec<&serde_json::Value> = later["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["is_due"] == true)
        .collect();
    assert_eq!(due.len(), 1, "{later}");
    assert_eq!(due[0]["secret"], "app/db");
    assert!(due[0]["age_seconds"].as_u64().unwrap() >= 31 * 86_400);
    let human = v.ok(&["keys", "status", "--at", &at], b"");
    assert!(
        human
            .lines()
            .any(|l| l.starts_with("dek") && l.contains("app/db") && l.ends_with("DUE")),
        "{human}"
    );
    let o = v.run(&["keys", "status", "--at", "next tuesday"], b"");
    assert_eq!(code(&o), 8, "{}", stderr(&o));
}

#[test]
fn keys_rotate_due_then_retire_leaves_fresh_keys_only_and_every_value() {
    let v = Scratch::init();
    v.ok(&["put", "app/db"], b"db-one");
    v.ok(&["put", "app/db"], b"db-two");
    v.ok(&["put", "billing/card"], b"card-one");
    let old = v.path("old.db");
    rusqlite::Connection::open(v.vault())
        .unwrap()
        .execute("VACUUM INTO ?1", [old.to_str().unwrap()])
        .unwrap();

    let at = text(time::OffsetDateTime::now_utc() + time::Duration::days(91));
    let rotated = v.json(&["keys", "rotate", "--due", "--at", &at], b"");
    assert_eq!(rotated["master_version"], 2, "{rotated}");
    let namespaces = rotated["namespaces"].as_array().unwrap();
    // app, billing and sealbox:metadata (whose KEK wraps the key of the rows' MACs).
    assert_eq!(namespaces.len(), 3, "{rotated}");
    assert!(namespaces.iter().all(|n| n["kek_version"] == 2));
    let status = v.json(&["keys", "status"], b"");
    assert_eq!(
        key_entry(&status, "kek", "app").len(),
        2,
        "old version kept until retired"
    );

    let retired = v.json(&["keys", "retire"], b"");
    let rows = retired["namespaces"].as_array().unwrap();
    // The metadata namespace's old KEK goes too (its key was rewrapped under the new one).
    assert_eq!(rows.len(), 3, "{retired}");
    for row in rows {
        assert_eq!(
            row["kek_versions_destroyed"],
            serde_json::json!([1]),
            "{row}"
        );
        assert_eq!(row["kek_version_kept"], 2);
    }
    // The rotation made master version 2; retirement removed version 1 from the key file.
    assert_eq!(retired["master_version_kept"], 2, "{retired}");
    assert_eq!(
        retired["master_versions_destroyed"],
        serde_json::json!([1]),
        "{retired}"
    );
    // The copy taken before the rotation needs master version 1, which is gone.
    std::fs::set_permissions(&old, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let old_copy = v.run(
        &[
            "--vault",
            old.to_str().unwrap(),
            "get",
            "app/db",
            "--reveal",
        ],
        b"",
    );
    let said = stderr(&old_copy);
    assert_ne!(code(&old_copy), 0, "the old copy still opened");
    assert!(said.contains("has no version v1"), "{said}");
    assert!(!String::from_utf8_lossy(&old_copy.stdout).contains("db-"));
    let status = v.json(&["keys", "status"], b"");
    for ns in ["app", "billing"] {
        let keks = key_entry(&status, "kek", ns);
        assert_eq!(keks.len(), 1, "{status}");
        assert_eq!(
            (&keks[0]["version"], &keks[0]["state"]),
            (&2.into(), &"current".into())
        );
    }
    assert_eq!(v.ok(&["get", "app/db", "--reveal"], b""), "db-two");
    assert_eq!(v.ok(&["get", "billing/card", "--reveal"], b""), "card-one");
    v.ok(&["verify"], b"");

    // Every data key and every stored ciphertext differs from the copy taken before.
    let rows = |db: &Path| -> Vec<(String, Vec<u8>, Vec<u8>)> {
        rusqlite::Connection::open(db)
            .unwrap()
            .prepare(
                // The current version's envelope is stored once, in the secret's row.
                "SELECT s.name, s.dek, CASE WHEN v.version = s.cur_version \
                 THEN s.cur_envelope ELSE v.envelope END FROM secrets s JOIN versions v \
                 ON v.secret_id = s.id ORDER BY s.name, v.version",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let (before, after) = (rows(&old), rows(&v.vault()));
    assert_eq!(before.len(), 3);
    for ((name, dek_a, env_a), (_, dek_b, env_b)) in before.iter().zip(&after) {
        assert_ne!(dek_a, dek_b, "{name}: same wrapped data key");
        assert_ne!(env_a, env_b, "{name}: same ciphertext");
    }
    let again = v.ok(&["keys", "retire"], b"");
    assert!(again.contains("no old namespace key versions"), "{again}");
    assert!(again.contains("no old master key versions"), "{again}");
}

#[test]
fn keys_rotate_one_secret_or_a_namespace() {
    let v = Scratch::init();
    v.ok(&["put", "app/db"], b"one");
    v.ok(&["put", "app/db"], b"two");
    v.ok(&["put", "app/api"], b"three");
    let one = v.json(&["keys", "rotate", "--secret", "app/db"], b"");
    assert_eq!(one["data_keys"][0]["dek_version"], 2, "{one}");
    assert_eq!(one["data_keys"][0]["versions_reencrypted"], 2);
    let all = v.json(&["keys", "rotate", "--namespace", "app"], b"");
    assert_eq!(all["data_keys_rotated"], 2, "{all}");
    assert_eq!(
        v.ok(&["get", "app/db", "--reveal", "--version", "1"], b""),
        "one"
    );
    let o = v.run(&["keys", "rotate"], b"");
    assert_eq!(
        code(&o),
        2,
        "one of --due, --secret, --namespace: {}",
        stderr(&o)
    );
    let o = v.run(&["keys", "rotate", "--secret", "app/nope"], b"");
    assert_eq!(code(&o), 3, "{}", stderr(&o));
}

/// Before, `--config` vault commands skipped the policy: any principal the config names could
/// rotate keys, and stage moves needed only `write`.
#[test]
fn key_operations_erasure_and_stage_moves_through_config_need_admin_or_rotate() {
    let s = Scratch::new();
    let config = s.path("sealbox.yaml");
    std::fs::write(
        &config,
        "secrets: {provider: local, config: {path: ./vault.db, key_file: ./master.key}}\n\
         principal: user:ops\n\
         audit: {path: ./audit.jsonl}\n\
         policy: {rules: [\n\
           {principals: [\"user:ops\"], allow: [read, write, delete, list], secrets: [\"*\"]},\n\
           {principals: [\"user:ops\"], allow: [admin], secrets: [\"predis/*\"]}]}\n",
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let copy = s.path("copy.db");
    let with_config = |args: &[&str]| {
        let mut all = vec!["--config", c];
        all.extend_from_slice(args);
        run_with_env(&all, b"v", &[])
    };
    for name in ["predis/prod/key", "acme/prod/key"] {
        let o = with_config(&["put", name]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    }
    for denied in [
        &["keys", "rotate-master"][..],
        &["keys", "rotate", "--due"],
        &["keys", "retire"],
        &["keys", "rotate-kek", "acme"],
        &["keys", "rotate", "--secret", "acme/prod/key"],
        &["namespace", "erase", "acme", "--yes"],
        &["stage", "acme/prod/key", "PREVIOUS", "1"],
        &["backup", "create", copy.to_str().unwrap()],
    ] {
        let o = with_config(denied);
        assert_eq!(code(&o), 4, "{denied:?}: {}", stderr(&o));
        assert!(
            stderr(&o).starts_with("sealbox: access_denied: user:ops may not"),
            "{denied:?}: {}",
            stderr(&o)
        );
    }
    // admin over predis/* covers predis's keys (and implies rotate there), nothing wider
    for allowed in [
        &["keys", "rotate-kek", "predis"][..],
        &["keys", "rotate", "--secret", "predis/prod/key"],
        &["namespace", "erase", "predis", "--yes"],
    ] {
        let o = with_config(allowed);
        assert_eq!(code(&o), 0, "{allowed:?}: {}", stderr(&o));
    }
    assert!(!copy.exists(), "a denied backup wrote a file");
    let o = s.run(&["get", "acme/prod/key", "--reveal"], b"");
    assert_eq!(o.stdout, b"v", "acme survived: {}", stderr(&o));
    let log = std::fs::read_to_string(s.path("audit.jsonl")).unwrap();
    assert!(
        log.contains("\"success\":false"),
        "denials are audited: {log}"
    );
}

#[test]
fn audit_verify_takes_a_rotated_set_by_directory_or_active_file_and_finds_a_missing_file() {
    let s = Scratch::new();
    let config = s.path("sealbox.yaml");
    // Every process after the first finds the file past 1 byte and starts a new one.
    std::fs::write(
        &config,
        "secrets: {provider: memory}\nprincipal: user:ops\n\
         audit: {path: ./logs/audit.jsonl, rotate_size: 1}\n",
    )
    .unwrap();
    std::fs::create_dir(s.path("logs")).unwrap();
    for name in ["app/a", "app/b", "app/c", "app/d"] {
        let o = run_with_env(
            &["--config", config.to_str().unwrap(), "put", name],
            b"v4lue",
            &[],
        );
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    }
    let dir = s.path("logs");
    for target in [dir.clone(), dir.join("audit.jsonl")] {
        let o = run(&["--json", "audit", "verify", target.to_str().unwrap()]);
        assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(report["files"].as_array().unwrap().len(), 4, "{report}");
    }
    let o = run(&["audit", "verify", dir.to_str().unwrap()]);
    assert!(stdout(&o).contains("in 4 files"), "{}", stdout(&o));
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e.len() == 20))
        .collect();
    rotated.sort();
    assert_eq!(rotated.len(), 3, "{rotated:?}");
    std::fs::remove_file(&rotated[1]).unwrap();
    let o = run(&["--json", "audit", "verify", dir.to_str().unwrap()]);
    assert_eq!(code(&o), 6, "{}{}", stdout(&o), stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["problem"]["kind"], "missing", "{report}");
    assert_eq!(
        report["problem"]["file"],
        rotated[2].to_str().unwrap(),
        "{report}"
    );
}
