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
    assert_eq!(
        b.get("sb://main/predis/prod/db").unwrap_err().kind(),
        ErrorKind::NotFound
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
