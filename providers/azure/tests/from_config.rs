//! `provider: azure` in a YAML config file, through the provider registry, against the local
//! Key Vault: the store `Sealbox::from_config` builds reads what was written directly, relative
//! `ca_file` and `client_secret_file` resolve against the config file's directory, and a bad
//! config fails naming the key.

mod support;

use sealbox::config::{Config, ProviderRegistry};
use sealbox::store::{PutOptions, SecretStore};
use sealbox::{ErrorKind, ExposeSecret};
use support::{name, secret};

fn registry() -> ProviderRegistry {
    let mut registry = ProviderRegistry::with_builtins();
    sealbox_azure::register(&mut registry);
    registry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_azure_in_a_yaml_file_builds_a_working_store() {
    let local = support::start().await;
    let seeder = local.store("predis/prod").await;
    seeder
        .put(
            &name("database"),
            &secret(br#"{"username":"predis","password":"from-yaml"}"#),
            &PutOptions::default(),
        )
        .await
        .unwrap();
    let yaml = format!(
        "stores:\n  azure:\n    provider: azure\n    config:\n      vault_url: {}\n      \
         prefix: predis/prod\n      ca_file: ca.pem\n      verify_challenge_resource: false\n      \
         credential:\n        kind: client_secret\n        tenant_id: {}\n        \
         client_id: {}\n        client_secret_file: client-secret\n        \
         authority_host: {}\n      operation_timeout: 5s\n",
        local.server.vault_url(),
        local.server.tenant(),
        support::CLIENT_ID,
        local.server.authority_host(),
    );
    let path = local.dir.path().join("sealbox.yaml");
    std::fs::write(&path, yaml).unwrap();
    let client = Config::from_path(&path)
        .unwrap()
        .build(&registry())
        .await
        .unwrap();
    let password = client.get_field("database", "password").await.unwrap();
    assert_eq!(password.expose_secret(), "from-yaml");
    let h = client.get("sb://azure/database").await.unwrap();
    assert!(h.expose_secret().starts_with(b"{"));
}

#[tokio::test]
async fn bad_azure_config_fails_naming_the_key() {
    for (yaml, needle) in [
        (
            "stores:\n  azure:\n    provider: azure\n    config: {vault_ulr: x}\n",
            "vault_ulr",
        ),
        (
            "stores:\n  azure:\n    provider: azure\n    config: {vault_url: 'https://v.vault.azure.net'}\n",
            "credential",
        ),
        (
            "stores:\n  azure:\n    provider: azure\n    config: {vault_url: 'https://v', \
             credential: {kind: magic}}\n",
            "credential.kind",
        ),
        (
            "stores:\n  azure:\n    provider: azure\n    config: {vault_url: 'https://v', \
             credential: {kind: cli}, ca_file: /nonexistent/ca.pem}\n",
            "/nonexistent/ca.pem",
        ),
    ] {
        let err = Config::from_yaml_str(yaml)
            .unwrap()
            .build(&registry())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(err.message().contains(needle), "{needle}: {err}");
    }
}
