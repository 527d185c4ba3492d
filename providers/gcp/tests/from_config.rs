//! `provider: gcp` in a YAML config, through the provider registry, against the local Secret
//! Manager: the store `Sealbox::from_config` builds reads what was written directly, and a bad
//! config fails naming the key.

mod support;

use sealbox::config::{Config, ProviderRegistry};
use sealbox::store::{PutOptions, SecretStore};
use sealbox::{ErrorKind, ExposeSecret};
use support::{LocalSecretManager, name, secret};

fn registry() -> ProviderRegistry {
    let mut registry = ProviderRegistry::with_builtins();
    sealbox_gcp::register(&mut registry);
    registry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_gcp_in_yaml_builds_a_working_store() {
    let server = LocalSecretManager::start().await;
    let seeder = support::store(&server, "predis/prod").await;
    seeder
        .put(
            &name("database"),
            &secret(br#"{"username":"predis","password":"from-yaml"}"#),
            &PutOptions::default(),
        )
        .await
        .unwrap();
    let yaml = format!(
        "stores:\n  gcp:\n    provider: gcp\n    config:\n      project: {}\n      \
         endpoint: {}\n      anonymous: true\n      prefix: predis/prod\n      \
         operation_timeout: 5s\n",
        support::PROJECT,
        server.endpoint()
    );
    let client = Config::from_yaml_str(&yaml)
        .unwrap()
        .build(&registry())
        .await
        .unwrap();
    let password = client.get_field("database", "password").await.unwrap();
    assert_eq!(password.expose_secret(), "from-yaml");
    let h = client.get("sb://gcp/database").await.unwrap();
    assert!(h.expose_secret().starts_with(b"{"));
}

#[tokio::test]
async fn bad_gcp_config_fails_naming_the_key() {
    for (yaml, needle) in [
        (
            "stores:\n  gcp:\n    provider: gcp\n    config: {project: p, endpont: x}\n",
            "endpont",
        ),
        (
            "stores:\n  gcp:\n    provider: gcp\n    config: {endpoint: 'http://127.0.0.1:1'}\n",
            "project",
        ),
        (
            "stores:\n  gcp:\n    provider: gcp\n    config: {project: p, anonymous: true, \
             credentials_file: sa.json}\n",
            "anonymous",
        ),
        (
            "stores:\n  gcp:\n    provider: gcp\n    config: {project: p, credentials_file: \
             /nonexistent/sa.json}\n",
            "/nonexistent/sa.json",
        ),
    ] {
        let err = Config::from_yaml_str(yaml)
            .unwrap()
            .build(&registry())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(err.message().contains(needle), "{needle}: {err}");
        assert!(
            err.message().contains("stores.gcp.config") || needle.starts_with('/'),
            "{err}"
        );
    }
}
