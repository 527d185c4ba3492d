//! `sealbox policy check` as a specification: it names every stored secret whose `CURRENT`
//! value breaks the credential policy (SOC2 by default) and the rules it breaks, checks a JSON
//! credential's `password` field, never prints a value, exits 1 while any secret breaks the
//! policy and 0 once rotation has replaced them.

mod support;

use support::{Scratch, code, run_with_env, stderr, stdout};

fn config(s: &Scratch) -> String {
    let config = s.path("sealbox.yaml");
    std::fs::write(
        &config,
        "secrets: {provider: local, config: {path: ./vault.db, key_file: ./master.key}}\n\
         principal: user:auditor\n\
         rotation:\n  secrets:\n    \"app/db/*\": {type: user_password, rotator: generated}\n",
    )
    .unwrap();
    config.to_str().unwrap().to_owned()
}

fn run(config: &str, args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut all = vec!["--config", config];
    all.extend_from_slice(args);
    run_with_env(&all, stdin, &[])
}

fn put(config: &str, name: &str, value: &str) {
    let o = run(config, &["put", name], value.as_bytes());
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn policy_check_names_the_secrets_and_rules_broken_never_the_values() {
    let s = Scratch::new();
    let c = config(&s);
    // The Predis documents' bad examples: a word with digits, a season and year.
    let weak = "password123";
    let seasonal = "Summer2024!";
    put(&c, "app/db/weak", weak);
    put(
        &c,
        "app/db/json",
        &serde_json::json!({"username": "app", "password": seasonal}).to_string(),
    );
    let token = "0123456789abcdef".repeat(4);
    put(&c, "app/api/token", &token);

    let o = run(&c, &["policy", "check", "app/db/"], b"");
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("app/db/weak: shorter than 16 characters"),
        "{text}"
    );
    assert!(text.contains("contains a dictionary word"), "{text}");
    assert!(text.contains("app/db/json (field password):"), "{text}");
    assert!(
        text.contains("2 of 2 secrets break the SOC2 policy"),
        "{text}"
    );
    assert!(
        !text.contains("app/api/token"),
        "only the prefixes asked for"
    );

    let o = run(&c, &["--json", "policy", "check"], b"");
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["checked"], 3);
    let broken: Vec<&str> = report["broken"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    // The hex token breaks SOC2 (no upper case, no special character).
    assert_eq!(broken, ["app/api/token", "app/db/json", "app/db/weak"]);
    let json_row = &report["broken"][1];
    assert_eq!(json_row["field"], "password");
    assert!(
        json_row["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "contains a dictionary word"),
        "{json_row}"
    );
    let all = format!("{text}{}{}", stdout(&o), stderr(&o));
    for value in [weak, seasonal, &token, "Summer", "password1"] {
        assert!(
            !all.contains(value),
            "a value (or part of one) in the output"
        );
    }

    // A length-only policy for API tokens: the 64-character token passes.
    let o = run(
        &c,
        &["policy", "check", "--min-length", "32", "app/api/"],
        b"",
    );
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("0 of 1 secrets break the length-only policy"));

    // Rotation replaces the weak password with a SOC2 one: the check passes.
    let o = run(&c, &["rotate", "app/db/weak"], b"");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = run(&c, &["policy", "check", "app/db/weak"], b"");
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("0 of 1 secrets break the SOC2 policy"));
}
