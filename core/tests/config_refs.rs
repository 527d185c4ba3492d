//! `sb://STORE/NAME#FIELD` references in a store's config: a provider's own credential read
//! from another configured store at build time (core/src/config/refs.rs).

use std::sync::{Arc, Mutex};

use sealbox::config::{Config, ProviderConfig, ProviderRegistry};
use sealbox::store::SecretStore;
use sealbox::store::memory::MemoryStore;
use sealbox::{ErrorKind, ExposeSecret};

/// A registry with a `probe` store whose factory reads `token` and `auth.password` as
/// secrets and hands what it got to the test.
fn registry(seen: Arc<Mutex<Vec<String>>>) -> ProviderRegistry {
    let mut registry = ProviderRegistry::with_builtins();
    registry.stores.register("probe", move |c: ProviderConfig| {
        let seen = seen.clone();
        async move {
            if let Some(t) = c.secret("token")? {
                seen.lock().unwrap().push(t.expose_secret().to_owned());
            }
            if let Some(auth) = c.child("auth")?
                && let Some(p) = auth.secret("password")?
            {
                seen.lock().unwrap().push(p.expose_secret().to_owned());
            }
            Ok(Arc::new(MemoryStore::new()) as Arc<dyn SecretStore>)
        }
    });
    registry
}

fn config(yaml: &str) -> Config {
    Config::from_yaml_str(yaml).expect("the test config parses")
}

#[tokio::test]
async fn a_providers_credential_comes_from_another_store_whole_or_as_a_json_field() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    // `app` is listed first: it is built after `keys`, the store its references name.
    let c = config(
        r#"
default_store: app
stores:
  app:
    provider: probe
    config:
      token: sb://keys/app/token
      auth: {password: "sb://keys/db/admin#password"}
  keys:
    provider: memory
    config:
      seed:
        app/token: tok-from-the-vault
        db/admin: '{"username": "admin", "password": "pw-from-json"}'
"#,
    );
    c.build(&registry(seen.clone())).await.unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        ["tok-from-the-vault", "pw-from-json"]
    );
}

#[tokio::test]
async fn a_reference_where_the_provider_reads_no_secret_is_refused_not_taken_literally() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let c = config(
        r#"
default_store: app
stores:
  app: {provider: probe, config: {region: "sb://keys/app/token"}}
  keys: {provider: memory, config: {seed: {app/token: tok}}}
"#,
    );
    let e = c.build(&registry(seen)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.message().contains("stores.app.config.region"), "{e}");
    assert!(
        e.message().contains("not read this setting as a secret"),
        "{e}"
    );
}

#[tokio::test]
async fn cycles_self_references_unknown_stores_and_missing_secrets_are_named_errors() {
    let reg = registry(Arc::default());
    let cases = [
        (
            "stores:\n  a: {provider: probe, config: {token: sb://b/x}}\n  b: {provider: probe, config: {token: sb://a/x}}\ndefault_store: a\n",
            "cycle",
        ),
        (
            "stores:\n  a: {provider: probe, config: {token: sb://a/x}}\ndefault_store: a\n",
            "itself",
        ),
        (
            "stores:\n  a: {provider: probe, config: {token: sb://nope/x}}\ndefault_store: a\n",
            "no store named \"nope\"",
        ),
        (
            "stores:\n  a: {provider: probe, config: {token: \"sb://k/x#\"}}\n  k: {provider: memory}\ndefault_store: a\n",
            "field after # is empty",
        ),
    ];
    for (yaml, expected) in cases {
        let e = config(yaml).build(&reg).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{yaml}");
        assert!(e.message().contains(expected), "{yaml}: {e}");
    }
    // A missing secret keeps its kind and says which key asked for it.
    let e = config(
        "stores:\n  a: {provider: probe, config: {token: sb://k/absent}}\n  k: {provider: memory}\ndefault_store: a\n",
    )
    .build(&reg)
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.message().contains("stores.a.config.token"), "{e}");
    // A JSON field that is not there: the message names the field, never the value.
    let e = config(
        "stores:\n  a: {provider: probe, config: {token: \"sb://k/j#pass\"}}\n  k: {provider: memory, config: {seed: {j: '{\"user\": \"hidden-value\"}'}}}\ndefault_store: a\n",
    )
    .build(&reg)
    .await
    .unwrap_err();
    assert!(e.message().contains("field \"pass\""), "{e}");
    assert!(!e.message().contains("hidden-value"), "{e}");
}

#[tokio::test]
async fn building_one_store_builds_the_stores_it_references() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let c = config(
        r#"
default_store: other
stores:
  app: {provider: probe, config: {token: sb://keys/t}}
  keys: {provider: memory, config: {seed: {t: one}}}
  other: {provider: probe, config: {token: sb://nope/t}}
"#,
    );
    // `other` is broken, but building `app` alone needs only `keys`.
    c.build_store(&registry(seen.clone()), "app").await.unwrap();
    assert_eq!(*seen.lock().unwrap(), ["one"]);
}

#[tokio::test]
async fn a_store_built_on_its_own_says_references_need_a_whole_config() {
    let reg = registry(Arc::default());
    let pc = ProviderConfig::new(
        "probe",
        "stores.app.config",
        serde_json::json!({"token": "sb://keys/t"}),
        None,
    );
    let Err(e) = reg.stores.build(pc).await else {
        panic!("a reference outside a whole config must be refused")
    };
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.message().contains("built on its own"), "{e}");
}
