//! `provider: vault` in a YAML config, through the provider registry, against a real Vault:
//! the store `Sealbox::from_config` builds reads what was written directly (also a map
//! another client wrote, by field), a KV v1 mount is read-only, `max_versions` is honoured,
//! and a bad config fails naming the key.

mod support;

use sealbox::config::{Config, ProviderRegistry};
use sealbox::store::{PutOptions, SecretStore, VersionId, VersionSelector};
use sealbox::{ErrorKind, ExposeSecret};
use support::{ROOT_TOKEN, VaultServer, name, secret};

fn registry() -> ProviderRegistry {
    let mut registry = ProviderRegistry::with_builtins();
    sealbox_vault::register(&mut registry);
    registry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_vault_in_yaml_builds_a_working_store() {
    let Some(server) = VaultServer::start("from_config") else {
        return;
    };
    let token_file = server.home.path().join("token");
    std::fs::write(&token_file, format!("{ROOT_TOKEN}\n")).unwrap();
    // Written by the Vault CLI, as a platform team would: a map of fields.
    server.must(&[
        "kv",
        "put",
        "secret/predis/prod/database",
        "username=predis",
        "password=from-cli",
    ]);
    let yaml = format!(
        "stores:\n  vault:\n    provider: vault\n    config:\n      address: {}\n      \
         mount: secret\n      prefix: predis/prod\n      timeout: 5s\n      \
         auth: {{method: token, token_file: {}}}\n",
        server.address(),
        token_file.display()
    );
    let client = Config::from_yaml_str(&yaml)
        .unwrap()
        .build(&registry())
        .await
        .unwrap();
    let password = client.get_field("database", "password").await.unwrap();
    assert_eq!(password.expose_secret(), "from-cli");
    let h = client.get("sb://vault/database").await.unwrap();
    assert_eq!(
        h.expose_secret(),
        br#"{"password":"from-cli","username":"predis"}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kv_v1_mount_is_read_only_with_one_version() {
    let Some(server) = VaultServer::start("kv v1") else {
        return;
    };
    server.must(&["secrets", "enable", "-path=old", "-version=1", "kv"]);
    server.must(&["kv", "put", "old/app/api-key", "value=k-123"]);
    let mut config = server.config("app");
    config.mount = Some("old".into());
    config.kv_version = Some(1);
    let store = sealbox_vault::VaultKv::connect(&config).await.unwrap();
    let caps = store.capabilities();
    assert!(!caps.write && !caps.versions && !caps.stages, "{caps:?}");
    sealbox_conformance::run_read_only(&store, caps, "", &[("api-key", b"k-123")])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_versions_from_the_config_is_honoured() {
    let Some(server) = VaultServer::start("max_versions") else {
        return;
    };
    let mut config = server.config("app");
    config.max_versions = Some(3);
    config.delete_version_after = Some(std::time::Duration::from_secs(3600));
    let store = sealbox_vault::VaultKv::connect(&config).await.unwrap();
    let n = name("rotating");
    for i in 1..=5 {
        store
            .put(
                &n,
                &secret(format!("v{i}").as_bytes()),
                &PutOptions::default(),
            )
            .await
            .unwrap();
    }
    let meta = server.must(&[
        "kv",
        "metadata",
        "get",
        "-format=json",
        "secret/app/rotating",
    ]);
    let meta: serde_json::Value = serde_json::from_str(&meta).unwrap();
    assert_eq!(meta["data"]["max_versions"], 3, "{meta}");
    assert_eq!(meta["data"]["delete_version_after"], "1h0m0s", "{meta}");
    let described = store.describe(&n).await.unwrap();
    let ids: Vec<&str> = described
        .versions
        .iter()
        .map(|v| v.version.as_str())
        .collect();
    assert_eq!(ids, ["3", "4", "5"]);
    let err = store
        .get(&n, &VersionSelector::Version(VersionId::new("1")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

#[tokio::test]
async fn bad_vault_config_fails_naming_the_key() {
    for (yaml, needle) in [
        (
            "stores:\n  v:\n    provider: vault\n    config: {address: 'http://127.0.0.1:1', adress: x}\n",
            "adress",
        ),
        (
            "stores:\n  v:\n    provider: vault\n    config: {mount: secret}\n",
            "address",
        ),
        (
            "stores:\n  v:\n    provider: vault\n    config: {address: 'http://127.0.0.1:1', \
             auth: {method: approle, role_id: r}}\n",
            "secret_id",
        ),
        (
            "stores:\n  v:\n    provider: vault\n    config: {address: 'http://127.0.0.1:1', \
             kv_version: 3}\n",
            "kv_version",
        ),
    ] {
        let err = Config::from_yaml_str(yaml)
            .unwrap()
            .build(&registry())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(err.message().contains(needle), "{needle}: {err}");
        assert!(err.message().contains("stores.v.config"), "{err}");
    }
}
