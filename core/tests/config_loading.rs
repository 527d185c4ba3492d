//! Config: every error names its key; interpolation; `*_file`; registry; end-to-end builds.

use std::sync::Arc;

use sealbox::config::{Config, ProviderConfig, ProviderRegistry};
use sealbox::store::SecretStore;
use sealbox::store::memory::MemoryStore;
use sealbox::{BlockingSealbox, ErrorKind, ExposeSecret, Sealbox};

fn parse(yaml: &str) -> sealbox::Result<Config> {
    Config::from_yaml_str_with_env(yaml, &|name| match name {
        "REGION" => Some("eu-west-1".into()),
        "ROLE" => Some("role-123".into()),
        _ => None,
    })
}

fn err(yaml: &str) -> String {
    let e = parse(yaml).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    e.message().to_owned()
}

#[test]
fn unknown_keys_are_errors_naming_their_path() {
    let cases = [
        ("secrets: {provider: memory}\nsecret: {}\n", "secret"),
        ("secrets: {provider: memory, confg: {}}\n", "secrets"),
        ("secrets: {provider: memory}\ncache: {tll: 5m}\n", "cache"),
        (
            "secrets: {provider: memory}\naudit: {path: a, fsynk: never}\n",
            "audit",
        ),
        (
            "secrets: {provider: memory}\npolicy: {rules: [{principals: [a], secrets: [b], allow: [read], extra: 1}]}\n",
            "policy.rules[0]",
        ),
        (
            "secrets: {provider: memory}\nmonitor: {hours: {start: '08:00', end: '18:00', tz: x}}\n",
            "monitor.hours",
        ),
        (
            "stores: {main: {provider: memory, extra: 1}}\n",
            "stores.main",
        ),
    ];
    for (yaml, path) in cases {
        let m = err(yaml);
        assert!(m.starts_with(path), "{yaml:?} -> {m}");
        assert!(m.contains("unknown field"), "{yaml:?} -> {m}");
    }
}

#[test]
fn type_errors_name_the_key_and_not_the_value() {
    let m = err("secrets: {provider: memory}\ncache: {ttl: hunter2}\n");
    assert!(m.starts_with("cache.ttl"), "{m}");
    assert!(!m.contains("hunter2"), "{m}");
    let m = err("secrets: {provider: memory}\ncache: {capacity: lots}\n");
    assert!(m.starts_with("cache.capacity"), "{m}");
    assert!(!m.contains("lots"), "{m}");
    let m = err("secrets: {provider: memory}\naudit: {mode: paranoid}\n");
    assert!(m.starts_with("audit.mode"), "{m}");
}

#[test]
fn structural_errors_are_explained() {
    assert!(err("").contains("empty"));
    assert!(err("cache: {ttl: 5m}\n").contains("`secrets`"));
    assert!(
        err("secrets: {provider: memory}\nstores: {a: {provider: memory}}\n")
            .starts_with("secrets")
    );
    assert!(err("secrets: [unclosed\n").contains("line"));
}

#[test]
fn variables_are_interpolated_and_an_unset_one_names_itself_and_its_key() {
    let c = parse(
        "stores:\n  aws:\n    provider: aws\n    config: {region: \"${REGION}\", role: \"arn:${ROLE}:x\", literal: \"$${REGION}\", other: \"${UNSET:-dflt}\"}\n",
    )
    .unwrap();
    let cfg = &c.stores["aws"].config;
    assert_eq!(cfg["region"], "eu-west-1");
    assert_eq!(cfg["role"], "arn:role-123:x");
    assert_eq!(cfg["literal"], "${REGION}");
    assert_eq!(cfg["other"], "dflt");
    let m = err(
        "stores:\n  vault:\n    provider: hashicorp\n    config:\n      secret_id: ${VAULT_SECRET_ID}\n",
    );
    assert_eq!(
        m,
        "stores.vault.config.secret_id: environment variable VAULT_SECRET_ID is not set"
    );
    let m = err(
        "secrets: {provider: memory}\npolicy:\n  rules:\n    - principals: [\"${WHO}\"]\n      secrets: [x]\n      allow: [read]\n",
    );
    assert_eq!(
        m,
        "policy.rules[0].principals[0]: environment variable WHO is not set"
    );
}

#[tokio::test]
async fn unknown_providers_and_stores_are_named() {
    let registry = ProviderRegistry::with_builtins();
    let c = parse("stores:\n  aws: {provider: aws}\n").unwrap();
    let e = c.build(&registry).await.unwrap_err();
    assert!(
        e.message()
            .starts_with("stores.aws.provider: unknown provider \"aws\""),
        "{e}"
    );
    assert!(e.message().contains("memory"), "{e}");
    let c = parse("stores:\n  a: {provider: memory}\n  b: {provider: memory}\n").unwrap();
    assert!(
        c.build(&registry)
            .await
            .unwrap_err()
            .message()
            .starts_with("default_store")
    );
    let c = parse("stores:\n  a: {provider: memory}\ndefault_store: z\n").unwrap();
    assert!(
        c.build(&registry)
            .await
            .unwrap_err()
            .message()
            .starts_with("default_store")
    );
    let c = parse("stores:\n  a: {provider: memory}\nroutes: {predis/prod/: nope}\n").unwrap();
    assert!(
        c.build(&registry)
            .await
            .unwrap_err()
            .message()
            .starts_with("routes.predis/prod/")
    );
    let c = parse("secrets: {provider: memory, config: {seeds: {}}}\n").unwrap();
    let e = c.build(&registry).await.unwrap_err();
    assert!(e.message().starts_with("secrets.config"), "{e}");
    let c = parse("secrets: {provider: memory}\ncache: {ttl: 0s}\n").unwrap();
    assert!(
        c.build(&registry)
            .await
            .unwrap_err()
            .message()
            .contains("cache.ttl")
    );
}

#[tokio::test]
async fn provider_crates_register_factories_that_get_their_config() {
    let mut registry = ProviderRegistry::with_builtins();
    registry
        .stores
        .register("fake", |c: ProviderConfig| async move {
            #[derive(serde::Deserialize)]
            struct Fake {
                #[allow(dead_code)]
                region: String,
            }
            let _: Fake = c.deserialize()?;
            let token = c.secret("token")?.expect("token or token_file");
            assert_eq!(token.expose_secret(), "from-a-file");
            Ok(Arc::new(MemoryStore::new()) as Arc<dyn SecretStore>)
        });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "from-a-file\n").unwrap();
    let yaml = "secrets:\n  provider: fake\n  config: {region: x, token_file: token}\n";
    std::fs::write(dir.path().join("sealbox.yaml"), yaml).unwrap();
    let client = Sealbox::from_config_with(dir.path().join("sealbox.yaml"), &registry)
        .await
        .unwrap();
    assert_eq!(
        client.router().store_ids().collect::<Vec<_>>(),
        vec!["default"]
    );
    // a bad provider config names the nested key
    let yaml = "secrets:\n  provider: fake\n  config: {region: 5, token: t}\n";
    std::fs::write(dir.path().join("bad.yaml"), yaml).unwrap();
    let e = Sealbox::from_config_with(dir.path().join("bad.yaml"), &registry)
        .await
        .unwrap_err();
    assert!(e.message().contains("secrets.config.region"), "{e}");
    let yaml = "secrets:\n  provider: fake\n  config: {region: x, token: t, token_file: token}\n";
    std::fs::write(dir.path().join("both.yaml"), yaml).unwrap();
    let e = Sealbox::from_config_with(dir.path().join("both.yaml"), &registry)
        .await
        .unwrap_err();
    assert!(e.message().contains("either token or token_file"), "{e}");
}

#[test]
fn a_full_config_builds_a_working_blocking_client() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = r#"
stores:
  main:
    provider: memory
    config:
      seed: {"predis/staging/db": "staging-pw"}
  prod:
    provider: memory
    config:
      seed: {"predis/prod/db": "prod-pw"}
routes:
  predis/prod/: prod
default_store: main
principal: svc:predis-cache
cache: {ttl: 5m, capacity: 100, refresh_ahead: 0.8, max_stale: 1h, sealed: true}
audit: {path: logs/audit.jsonl, fsync: never, mode: best_effort}
policy:
  rules:
    - principals: ["svc:predis-*"]
      secrets: ["predis/*"]
      allow: [read, list]
monitor: {failed_burst: 3, rate_per_minute: 100}
"#;
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    let path = dir.path().join("sealbox.yaml");
    std::fs::write(&path, yaml).unwrap();
    let b = BlockingSealbox::from_config(&path).unwrap();
    assert_eq!(b.get("predis/prod/db").unwrap().expose_secret(), b"prod-pw");
    assert_eq!(
        b.get("predis/staging/db").unwrap().expose_secret(),
        b"staging-pw"
    );
    assert_eq!(b.get("predis/prod/db").unwrap().store(), "prod");
    // `predis/prod/db` routes to `prod`: a rule without `sb://` covers it there only, so
    // naming another store is refused before that store is asked
    assert_eq!(
        b.get("sb://main/predis/prod/db").unwrap_err().kind(),
        ErrorKind::AccessDenied
    );
    let names: Vec<_> = b
        .list("predis/")
        .unwrap()
        .into_iter()
        .map(|e| e.name.to_string())
        .collect();
    assert_eq!(names, vec!["predis/prod/db", "predis/staging/db"]);
    let mut v = *b"x";
    let w = b.put(
        "predis/prod/db",
        &sealbox::Secret::from_mut_slice(&mut v).unwrap(),
    );
    assert_eq!(w.unwrap_err().kind(), ErrorKind::AccessDenied);
    b.flush_audit().unwrap();
    let log = std::fs::read_to_string(dir.path().join("logs/audit.jsonl")).unwrap();
    assert!(!log.contains("prod-pw"));
    assert!(log.lines().count() >= 6, "{log}");
    // the audit key was created beside the log (relative paths resolve against the file)
    assert!(dir.path().join("logs/audit.jsonl.key").exists());
}

// ------------------------------------------------------------------ secrets in error messages

/// Values planted in secret-bearing keys, one of each YAML type, with the text that would
/// betray each in a message.
const PLANTED: &[(&str, &[&str])] = &[
    ("5839872095347003", &["5839872095347003"]),
    ("-5839872095347003", &["5839872095347003"]),
    ("5839.872095347003", &["5839.872095347003", "5839.87209534"]),
    (
        "5.839872095347003e3",
        &["5839.87209534", "5.839872095347003"],
    ),
    (
        "58398720953470035839872095347003",
        &["583987209534700358", "5.83987209534700"],
    ),
    ("0x5839872095347003", &["6357260923022110723", "0x58398720"]),
    ("true", &["true"]),
    (
        "[s3cr3t-in-a-sequence, 5839872095347003]",
        &["s3cr3t", "5839872095347003"],
    ),
    (
        "{s3cr3t-key: s3cr3t-in-a-mapping}",
        &["s3cr3t-in-a-mapping"],
    ),
    (
        "!s3cr3t-tag s3cr3t-tagged-value",
        &["s3cr3t-tagged", "s3cr3t-tag"],
    ),
];

/// Every error of `build` for `yaml`, in every form a caller may print.
async fn error_texts(dir: &std::path::Path, yaml: &str, registry: &ProviderRegistry) -> String {
    let path = dir.join("sealbox.yaml");
    std::fs::write(&path, yaml).unwrap();
    let e = match Sealbox::from_config_with(&path, registry).await {
        Ok(_) => panic!("{yaml} was accepted"),
        Err(e) => e,
    };
    format!("{e} | {e:?} | {}", e.message())
}

fn registry_with_a_token_provider() -> ProviderRegistry {
    let mut registry = ProviderRegistry::with_builtins();
    registry
        .stores
        .register("tokened", |c: ProviderConfig| async move {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            #[allow(dead_code)]
            struct Tokened {
                token: Option<String>,
            }
            let _: Tokened = c.deserialize()?;
            c.secret("token")?;
            Ok(Arc::new(MemoryStore::new()) as Arc<dyn SecretStore>)
        });
    registry
}

#[tokio::test]
async fn no_secret_value_of_any_yaml_type_appears_in_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry_with_a_token_provider();
    // Every secret-bearing key the config knows: the local vault's passphrase, the memory
    // store's seeded values and a provider secret read through ProviderConfig::secret. (The
    // AWS provider's external_id is covered in providers/aws.)
    let places: &[(&str, &str)] = &[
        (
            "secrets:\n  provider: local\n  config:\n    path: ./v\n    params_file: ./p\n    passphrase: VALUE\n",
            "secrets.config.passphrase",
        ),
        (
            "secrets:\n  provider: memory\n  config:\n    seed:\n      predis/prod/db: VALUE\n",
            "secrets.config.seed",
        ),
        (
            "stores:\n  t:\n    provider: tokened\n    config:\n      token: VALUE\n",
            "stores.t.config.token",
        ),
        (
            "secrets:\n  provider: local\n  config:\n    path: ./v\n    master_key:\n      provider: passphrase\n      params_file: ./p\n      passphrase: VALUE\n",
            "secrets.config.master_key.passphrase",
        ),
        // flow style, where the value ends at `}`
        (
            "secrets: {provider: local, config: {path: ./v, params_file: ./p, passphrase: VALUE}}\n",
            "secrets.config.passphrase",
        ),
    ];
    for (template, key) in places {
        for (value, betrayals) in PLANTED {
            let yaml = template.replace("VALUE", value);
            let text = error_texts(dir.path(), &yaml, &registry).await;
            // (an integer too large for any number type is refused by the YAML reader, which
            // reports only where it is)
            assert!(
                text.contains(key) || text.contains("invalid YAML at line"),
                "{value}: the error should name {key}: {text}"
            );
            for b in *betrayals {
                assert!(!text.contains(b), "{value} leaked as {b:?} in: {text}");
            }
        }
    }
}

#[tokio::test]
async fn string_values_in_errors_are_dropped_even_when_they_imitate_serde() {
    let dir = tempfile::tempdir().unwrap();
    let registry = ProviderRegistry::with_builtins();
    // a string where a number or an enum is expected; quotes and serde's own separators in
    // the value must not fool the scrubbing
    for yaml in [
        "secrets: {provider: memory}\ncache: {capacity: 'hun\"ter2, expected x'}\n",
        "secrets: {provider: memory}\naudit: {mode: \"hun`ter2`, expected x\"}\n",
        "secrets: {provider: memory}\ncache: {ttl: \"hunter2 \\\" \\\\\"}\n",
        "secrets: {provider: local, config: {path: ./v, namespace_depth: 'hunter2\"'}}\n",
    ] {
        let text = error_texts(dir.path(), yaml, &registry).await;
        assert!(!text.contains("hunter2"), "{yaml}: {text}");
        assert!(!text.contains("ter2"), "{yaml}: {text}");
    }
}

// ------------------------------------------------------------------------- master_key blocks

fn write(dir: &std::path::Path, yaml: &str) -> std::path::PathBuf {
    let p = dir.join("sealbox.yaml");
    std::fs::write(&p, yaml).unwrap();
    p
}

#[tokio::test]
async fn a_master_key_block_opens_the_vault_that_the_flat_key_file_setting_made() {
    let dir = tempfile::tempdir().unwrap();
    let registry = ProviderRegistry::with_builtins();
    // Made with the older flat setting, as README configs and existing deployments write it.
    let flat = write(
        dir.path(),
        "secrets: {provider: local, config: {path: ./vault, key_file: ./master.key}}\n",
    );
    let client = Sealbox::from_config_with(&flat, &registry).await.unwrap();
    let mut v = *b"made-flat";
    client
        .put(
            "predis/prod/db",
            &sealbox::Secret::from_mut_slice(&mut v).unwrap(),
        )
        .await
        .unwrap();
    drop(client);
    // The same key through a master_key block.
    let block = write(
        dir.path(),
        "secrets:\n  provider: local\n  config:\n    path: ./vault\n    create: false\n    master_key: {provider: key_file, path: ./master.key}\n",
    );
    let client = Sealbox::from_config_with(&block, &registry).await.unwrap();
    let h = client.get("predis/prod/db").await.unwrap();
    assert_eq!(h.expose_secret(), b"made-flat");
    drop(client);
    // Key material is made only with a new vault: not with create: false, and not for a vault
    // that exists (a typo in the path must not mint a key that then fails as the wrong one).
    for yaml in [
        "secrets: {provider: local, config: {path: ./v2, master_key: {provider: key_file, path: ./other.key}, create: false}}\n",
        "secrets: {provider: local, config: {path: ./vault, master_key: {provider: key_file, path: ./other.key}}}\n",
    ] {
        let e = Sealbox::from_config_with(&write(dir.path(), yaml), &registry)
            .await
            .unwrap_err();
        assert!(e.message().contains("other.key"), "{yaml}: {e}");
        assert!(!dir.path().join("other.key").exists(), "{yaml}");
    }
}

#[tokio::test]
async fn a_passphrase_master_key_takes_its_passphrase_from_a_file_and_its_cost_from_the_block() {
    let dir = tempfile::tempdir().unwrap();
    let registry = ProviderRegistry::with_builtins();
    std::fs::write(dir.path().join("pass"), "correct horse battery staple\n").unwrap();
    let yaml = "secrets:\n  provider: local\n  config:\n    path: ./vault\n    master_key:\n      provider: passphrase\n      passphrase_file: ./pass\n      params_file: ./params.json\n      cost: {m_cost_kib: 131072, t_cost: 2, p_cost: 1}\n";
    let cfg = write(dir.path(), yaml);
    let client = Sealbox::from_config_with(&cfg, &registry).await.unwrap();
    drop(client);
    let params: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("params.json")).unwrap()).unwrap();
    assert_eq!(params["m_cost_kib"], 131072);
    assert_eq!(params["t_cost"], 2);
    // Reopens with the same passphrase; another passphrase is WrongKey.
    Sealbox::from_config_with(&cfg, &registry).await.unwrap();
    std::fs::write(dir.path().join("pass"), "wrong horse\n").unwrap();
    let e = Sealbox::from_config_with(&cfg, &registry)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongKey, "{e}");
    assert!(!e.to_string().contains("wrong horse"), "{e}");
    // A cost below the floor is refused where the block says it.
    let weak = yaml
        .replace("./vault", "./vault2")
        .replace("params.json", "weak.json")
        .replace("t_cost: 2", "t_cost: 1");
    std::fs::write(dir.path().join("pass"), "correct horse battery staple\n").unwrap();
    let e = Sealbox::from_config_with(&write(dir.path(), &weak), &registry)
        .await
        .unwrap_err();
    assert!(
        e.message().starts_with("secrets.config.master_key: "),
        "{e}"
    );
    assert!(e.message().contains("floor"), "{e}");
}

#[tokio::test]
async fn master_key_blocks_that_cannot_work_are_config_errors_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let registry = ProviderRegistry::with_builtins();
    let cases = [
        (
            "secrets: {provider: local, config: {path: ./v, master_key: {provider: yubikey-magic}}}\n",
            "secrets.config.master_key.provider: unknown provider \"yubikey-magic\"; registered providers: env, key_file, passphrase",
        ),
        (
            "secrets: {provider: local, config: {path: ./v, master_key: {path: ./k}}}\n",
            "secrets.config.master_key.provider: required (one of: env, key_file, passphrase)",
        ),
        (
            "secrets: {provider: local, config: {path: ./v, key_file: ./k, master_key: {provider: key_file, path: ./k}}}\n",
            "secrets.config: set the master key either in master_key or with key_file, not both",
        ),
        (
            "secrets: {provider: local, config: {path: ./v, master_key: {provider: key_file, file: ./k}}}\n",
            "secrets.config.master_key.file: unknown field `file`, expected `path`",
        ),
        (
            "secrets: {provider: local, config: {path: ./v, master_key: {provider: env, var: SEALBOX_TEST_SURELY_UNSET_VAR}}}\n",
            "environment variable SEALBOX_TEST_SURELY_UNSET_VAR is not set",
        ),
        (
            "secrets: {provider: local, config: {path: ./v, master_key: {provider: passphrase, passphrase: x}}}\n",
            "secrets.config.master_key.params_file: required",
        ),
        (
            "secrets: {provider: local, config: {path: ./v, master_key: ./k}}\n",
            "secrets.config.master_key: expected a mapping",
        ),
        (
            "secrets: {provider: local, config: {path: ./v}}\n",
            "key providers: env, key_file, passphrase",
        ),
    ];
    for (yaml, needle) in cases {
        let text = error_texts(dir.path(), yaml, &registry).await;
        assert!(text.contains(needle), "{yaml}: {text}");
    }
    assert!(!dir.path().join("v").exists(), "no vault without its key");
    // Provider crates add theirs to the same list.
    let mut registry = ProviderRegistry::with_builtins();
    registry
        .keys
        .register("hsm-test", |_c: ProviderConfig| async move {
            Err::<Arc<dyn sealbox::keys::KeyProvider>, _>(sealbox::Error::new(
                ErrorKind::Unavailable,
                "the test HSM is switched off",
            ))
        });
    let text = error_texts(
        dir.path(),
        "secrets: {provider: local, config: {path: ./v, master_key: {provider: nope}}}\n",
        &registry,
    )
    .await;
    assert!(
        text.contains("env, hsm-test, key_file, passphrase"),
        "{text}"
    );
    let e = Sealbox::from_config_with(
        &write(
            dir.path(),
            "secrets: {provider: local, config: {path: ./v, master_key: {provider: hsm-test}}}\n",
        ),
        &registry,
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
}

// ------------------------------------------------------------------------- size and depth caps

use sealbox::config::{MAX_CONFIG_BYTES, MAX_CONFIG_DEPTH};
use std::time::{Duration, Instant};

/// `f`'s result and how long it took.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

#[test]
fn a_config_of_exactly_the_cap_loads_and_one_byte_more_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let head = "secrets: {provider: memory}\n#";
    let fits = format!("{head}{}\n", "x".repeat(MAX_CONFIG_BYTES - head.len() - 1));
    assert_eq!(fits.len(), MAX_CONFIG_BYTES);
    let path = dir.path().join("fits.yaml");
    std::fs::write(&path, &fits).unwrap();
    Config::from_path(&path).unwrap();
    let over = format!("{fits}#");
    std::fs::write(&path, &over).unwrap();
    let e = Config::from_path(&path).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.message().contains("larger than 1 MiB"), "{e}");
    assert!(
        parse(&over)
            .unwrap_err()
            .message()
            .contains("larger than 1 MiB")
    );
}

#[test]
fn an_endless_config_file_is_refused_after_reading_one_mib() {
    // /dev/zero never ends and stat says it is empty: the read itself must stop.
    let (r, took) = timed(|| Config::from_path(std::path::Path::new("/dev/zero")));
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.message().contains("larger than 1 MiB"), "{e}");
    assert!(took < Duration::from_secs(2), "took {took:?}");

    // A FIFO whose writer never stops (a process substitution, a misdirected pipe).
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("config.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let writer_path = fifo.clone();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .open(writer_path)
            .unwrap();
        let chunk = b"secrets: {provider: memory}\n".repeat(1024);
        let mut written = 0usize;
        // Ends when the reader closes its end (EPIPE); SIGPIPE is ignored by Rust programs.
        while w.write_all(&chunk).is_ok() {
            written += chunk.len();
        }
        written
    });
    let (r, took) = timed(|| Config::from_path(&fifo));
    let e = r.unwrap_err();
    assert!(e.message().contains("larger than 1 MiB"), "{e}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let written = writer.join().unwrap();
    assert!(
        written > MAX_CONFIG_BYTES,
        "the writer stopped early: {written}"
    );
}

#[test]
fn deep_nesting_is_refused_quickly_before_the_parser_sees_it() {
    let cases = [
        // 50,000 unclosed `[` (100 kB) took the parser 20 s
        format!("secrets: {}", "[".repeat(50_000)),
        // 20,000 balanced levels took 5.6 s
        format!(
            "secrets: {{provider: memory, config: {{x: {}1{}}}}}\n",
            "[".repeat(20_000),
            "]".repeat(20_000)
        ),
        format!("secrets: {}", "{a: ".repeat(20_000)),
        // block style: indentation levels and `- ` entries
        (0..200)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect::<String>(),
        format!("x:\n{}y\n", "- ".repeat(20_000)),
    ];
    for yaml in &cases {
        let (r, took) = timed(|| parse(yaml));
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert!(
            e.message()
                .contains(&format!("more than {MAX_CONFIG_DEPTH} levels")),
            "{e}"
        );
        assert!(took < Duration::from_secs(1), "took {took:?}");
    }
}

#[test]
fn nesting_within_the_cap_and_brackets_in_strings_are_accepted() {
    let deep = MAX_CONFIG_DEPTH - 3; // secrets, config, x
    let yaml = format!(
        "secrets: {{provider: memory, config: {{x: {}1{}}}}}\n",
        "[".repeat(deep),
        "]".repeat(deep)
    );
    parse(&yaml).unwrap();
    let brackets = "[".repeat(500);
    let yaml = format!(
        "secrets: {{provider: memory}}\nprincipal: \"{brackets}\" # {brackets}\npolicy: {{rules: [{{principals: ['{brackets}'], secrets: [x], allow: [read]}}]}}\n"
    );
    let c = parse(&yaml).unwrap();
    assert_eq!(c.principal.as_deref(), Some(brackets.as_str()));
}

// ---------------------------------------------------------------- `${VAR}` as the README writes it

fn parse_with(yaml: &str, vars: &[(&str, &str)]) -> sealbox::Result<Config> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_yaml_str_with_env(yaml, &move |name| {
        vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
}

#[test]
fn unquoted_variables_work_inside_flow_mappings_and_sequences() {
    let c = parse_with(
        "stores:\n  main: {provider: local, config: {path: ${VAULT}, key_file: ${KEY}}}\n  \
         other: {provider: memory}\nroutes: {${PREFIX}: other}\ndefault_store: main\n\
         policy: {rules: [{principals: [${WHO}], secrets: [${WHAT}/*], allow: [read]}]}\n",
        &[
            ("VAULT", "/srv/vault"),
            ("KEY", "/etc/master.key"),
            ("PREFIX", "predis/prod/"),
            ("WHO", "svc:predis-cache"),
            ("WHAT", "predis/prod"),
        ],
    )
    .unwrap();
    assert_eq!(c.stores["main"].config["path"], "/srv/vault");
    assert_eq!(c.stores["main"].config["key_file"], "/etc/master.key");
    assert_eq!(c.routes["predis/prod/"], "other");
    let rule = &c.policy.as_ref().unwrap().rules[0];
    assert_eq!(rule.principals, ["svc:predis-cache"]);
    assert_eq!(rule.secrets, ["predis/prod/*"]);
    // an unset one names itself and its key, wherever it stands
    let e = parse_with(
        "secrets: {provider: local, config: {path: ./v, key_file: ${KEY}}}\n",
        &[],
    )
    .unwrap_err();
    assert_eq!(
        e.message(),
        "secrets.config.key_file: environment variable KEY is not set"
    );
    // a variable in a comment is never looked up
    parse_with("secrets: {provider: memory} # uses ${NOT_SET}\n", &[]).unwrap();
}

#[test]
fn a_variable_value_is_one_string_and_never_yaml_structure() {
    let hostile = "x}, passphrase: p, extra: [1\n  evil: {a: b}\n- c: 'd\" # e";
    for yaml in [
        "secrets: {provider: local, config: {path: ${V}, key_file: k}}\n",
        "secrets:\n  provider: local\n  config:\n    path: ${V}\n    key_file: k\n",
        "secrets:\n  provider: local\n  config:\n    path: \"${V}\"\n    key_file: k\n",
        "secrets:\n  provider: local\n  config:\n    path: '${V}'\n    key_file: k\n",
    ] {
        let c = parse_with(yaml, &[("V", hostile)]).unwrap();
        let config = &c.secrets.as_ref().unwrap().config;
        assert_eq!(config["path"], hostile, "{yaml}");
        assert_eq!(
            config.as_object().unwrap().len(),
            2,
            "{yaml}: the value added keys"
        );
    }
    // a value that looks like a number or a variable stays that text
    let c = parse_with(
        "secrets: {provider: memory, config: {seed: {a/b: ${N}, c/d: ${D}}}}\n",
        &[("N", "0012"), ("D", "${N}")],
    )
    .unwrap();
    let seed = &c.secrets.as_ref().unwrap().config["seed"];
    assert_eq!(seed["a/b"], "0012");
    assert_eq!(seed["c/d"], "${N}");
}

// ------------------------------------------------------------ control bytes in ids and prefixes

#[test]
fn control_bytes_in_store_ids_and_route_prefixes_are_refused_escaped() {
    for (yaml, shown) in [
        (
            "stores: {main: {provider: memory}}\nroutes: {\"predis\\0/prod/\": main}\n",
            r"predis\0/prod/",
        ),
        (
            "stores: {\"ma\\x1b[2Jin\": {provider: memory}}\n",
            r"ma\u{1b}[2Jin",
        ),
        (
            "stores: {main: {provider: memory}}\nroutes: {p/: \"main\\n\"}\n",
            r"main\n",
        ),
        (
            "stores: {main: {provider: memory}}\ndefault_store: \"main\\r\"\n",
            r"main\r",
        ),
    ] {
        let m = err(yaml);
        assert!(m.contains(shown), "{yaml:?} -> {m}");
        assert!(m.contains("control character"), "{yaml:?} -> {m}");
        assert!(!m.chars().any(char::is_control), "{yaml:?} -> {m:?}");
    }
}
