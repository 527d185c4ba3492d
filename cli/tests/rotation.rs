//! `sealbox rotate` and `sealbox rotation status` end to end, through a config with a local
//! vault, an audit log and a rotation schedule: a rotation promotes a generated API key, is
//! audited step by step without the value, shows in the status and rolls back; three
//! processes running `rotate --due` at once rotate a due secret exactly once.

mod support;

use std::process::{Command, Stdio};

use support::{Scratch, code, run_with_env, stderr, stdout};

fn config(s: &Scratch) -> String {
    let config = s.path("sealbox.yaml");
    std::fs::write(
        &config,
        "secrets: {provider: local, config: {path: ./vault.db, key_file: ./master.key}}\n\
         principal: user:rotator\n\
         audit: {path: ./audit.jsonl}\n\
         rotation:\n  types: {api_key: 30d}\n  secrets:\n    \"predis/prod/api/*\": {type: api_key, rotator: generated}\n",
    )
    .unwrap();
    config.to_str().unwrap().to_owned()
}

fn run(config: &str, args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut all = vec!["--config", config];
    all.extend_from_slice(args);
    run_with_env(&all, stdin, &[])
}

fn reveal(config: &str, name: &str) -> Vec<u8> {
    let o = run(config, &["get", name, "--reveal"], b"");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    o.stdout
}

#[test]
fn rotate_status_and_rollback_through_a_configured_schedule() {
    let s = Scratch::new();
    let c = config(&s);
    let o = run(&c, &["put", "predis/prod/api/key"], b"first-key-value");
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    let o = run(&c, &["rotate", "predis/prod/api/key"], b"");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("rotated predis/prod/api/key: version"),
        "{}",
        stdout(&o)
    );
    let new = reveal(&c, "predis/prod/api/key");
    assert!(new.starts_with(b"sbk_"), "an API key from the api_key type");

    let o = run(&c, &["--json", "rotation", "status"], b"");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let status: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let row = &status["secrets"][0];
    assert_eq!(row["name"], "predis/prod/api/key");
    assert_eq!(row["type"], "api_key");
    assert_eq!(row["period_days"], 30);
    assert_eq!(row["due"], false);
    assert!(row["last_rotated"].is_string() && row["next_due"].is_string());
    assert!(row["last_failure"].is_null());
    assert_eq!(status["secrets"].as_array().unwrap().len(), 1);

    // Not due again: --due rotates nothing.
    let o = run(&c, &["--json", "rotate", "--due"], b"");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let due: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(due["rotated"].as_array().unwrap().len(), 0);

    let audit = std::fs::read_to_string(s.path("audit.jsonl")).unwrap();
    for event in [
        "rotation_started",
        "rotation_set",
        "rotation_tested",
        "rotation_finished",
    ] {
        assert!(
            audit.contains(&format!("\"event\":\"{event}\"")),
            "{event} not audited"
        );
    }
    assert!(
        !audit.contains(std::str::from_utf8(&new).unwrap()),
        "the audit log holds the value"
    );

    let o = run(&c, &["rotate", "--rollback", "predis/prod/api/key"], b"");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(reveal(&c, "predis/prod/api/key"), b"first-key-value");
    let audit = std::fs::read_to_string(s.path("audit.jsonl")).unwrap();
    assert!(audit.contains("\"event\":\"rotation_rolled_back\""));
}

#[test]
fn three_processes_running_rotate_due_at_once_rotate_once() {
    let s = Scratch::new();
    let c = config(&s);
    for name in ["predis/prod/api/key", "predis/prod/api/other"] {
        let o = run(&c, &["put", name], b"first-key-value");
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    }
    for round in 0..3 {
        // `key` is due: its record says it was last rotated in 1970. `other` is not.
        let o = run(
            &c,
            &["put", "_sealbox/rotation/predis/prod/api/key"],
            br#"{"last_rotated_ms":0}"#,
        );
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let before = versions(&c, "predis/prod/api/key");
        let children: Vec<_> = (0..3)
            .map(|_| {
                Command::new(env!("CARGO_BIN_EXE_sealbox"))
                    .args(["--config", &c, "--json", "rotate", "--due"])
                    .env_remove("SEALBOX_VAULT")
                    .env_remove("SEALBOX_KEY_FILE")
                    .env_remove("SEALBOX_CONFIG")
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut rotated = Vec::new();
        for child in children {
            let o = child.wait_with_output().unwrap();
            assert_eq!(code(&o), 0, "round {round}: {}", stderr(&o));
            let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            for r in report["rotated"].as_array().unwrap() {
                rotated.push(r["name"].as_str().unwrap().to_owned());
            }
        }
        assert_eq!(rotated, ["predis/prod/api/key"], "round {round}");
        assert_eq!(
            versions(&c, "predis/prod/api/key"),
            before + 1,
            "round {round}"
        );
    }
    assert_eq!(versions(&c, "predis/prod/api/other"), 1);
}

fn versions(config: &str, name: &str) -> usize {
    let o = run(config, &["--json", "versions", name], b"");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["versions"]
        .as_array()
        .or_else(|| v.as_array())
        .unwrap_or_else(|| panic!("versions output: {v}"))
        .len()
}
