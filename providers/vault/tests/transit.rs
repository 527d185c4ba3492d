//! A local vault sealed by a Vault Transit key on a real Vault: it opens through Transit,
//! keeps opening after the Transit key is rotated behind its back (old KEKs still unwrap),
//! rewraps on `rotate_master`, and after old versions are retired by
//! `min_decryption_version` a KEK wrapped under them fails with `KeyRetired`. A wrapped key
//! is bound to its context. Also: `master_key: {provider: vault-transit}` in YAML.

mod support;

use std::sync::Arc;

use sealbox::config::{Config, ProviderRegistry};
use sealbox::keys::{KeyProvider, KeyVersion};
use sealbox::store::local::LocalVault;
use sealbox::store::{PutOptions, SecretStore, VersionSelector};
use sealbox::{ErrorKind, ExposeSecret};
use sealbox_vault::{Session, TransitMasterKey};
use support::{ROOT_TOKEN, VaultServer, name, secret};

async fn provider(server: &VaultServer, create: bool) -> Arc<dyn KeyProvider> {
    let session = Session::connect(&server.config("")).await.unwrap();
    Arc::new(
        TransitMasterKey::open(session, "transit", "sealbox", create)
            .await
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_vault_sealed_by_transit_survives_key_rotation_and_retirement() {
    let Some(server) = VaultServer::start("transit") else {
        return;
    };
    server.must(&["secrets", "enable", "transit"]);
    let dir = tempfile::tempdir().unwrap();
    let n = name("predis/prod/database/password");
    let early_context = b"sealbox-test/early";
    let early = {
        let p = provider(&server, true).await;
        assert_eq!(p.current_version().await.unwrap(), KeyVersion::FIRST);
        let vault = LocalVault::create(dir.path(), p.clone()).await.unwrap();
        vault
            .put(&n, &secret(b"sealed-by-transit"), &PutOptions::default())
            .await
            .unwrap();
        p.wrap(early_context, &secret(&[7u8; 32])).await.unwrap()
    };
    let info = server.must(&["read", "-format=json", "transit/keys/sealbox"]);
    assert!(info.contains("\"derived\": true"), "{info}");

    // The Transit key rotates behind sealbox's back: KEKs wrapped under v1 still unwrap.
    server.must(&["write", "-f", "transit/keys/sealbox/rotate"]);
    let p = provider(&server, false).await;
    assert_eq!(p.current_version().await.unwrap().get(), 2);
    let vault = LocalVault::open(dir.path(), p.clone()).await.unwrap();
    let got = vault.get(&n, &VersionSelector::Current).await.unwrap();
    assert_eq!(got.value.expose_secret(), b"sealed-by-transit");

    // A wrapped key is bound to its context.
    let err = p.unwrap(b"sealbox-test/other", &early).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert_eq!(
        p.unwrap(early_context, &early)
            .await
            .unwrap()
            .expose_secret(),
        &[7u8; 32]
    );

    // sealbox's own master rotation: Transit rotates to v3 and every KEK is rewrapped.
    let after = vault.rotate_master().await.unwrap();
    assert_eq!(after.get(), 3);
    drop(vault);

    // Retire v1 and v2 (min_decryption_version = 3): the vault still opens (its KEKs are on
    // v3); a key wrapped under v1 no longer unwraps, with KeyRetired.
    let retired = p.retire_below(after).await.unwrap();
    assert_eq!(retired.iter().map(|v| v.get()).collect::<Vec<_>>(), [1, 2]);
    let vault = LocalVault::open(dir.path(), provider(&server, false).await)
        .await
        .unwrap();
    let got = vault.get(&n, &VersionSelector::Current).await.unwrap();
    assert_eq!(got.value.expose_secret(), b"sealed-by-transit");
    let err = p.unwrap(early_context, &early).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::KeyRetired, "{err}");

    // A missing key is a Config error with the command that makes one.
    let session = Session::connect(&server.config("")).await.unwrap();
    let err = TransitMasterKey::open(session, "transit", "nope", false)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.message().contains("derived=true"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_transit_master_key_block_seals_the_local_vault() {
    let Some(server) = VaultServer::start("transit yaml") else {
        return;
    };
    server.must(&["secrets", "enable", "-path=kms", "transit"]);
    let mut registry = ProviderRegistry::with_builtins();
    sealbox_vault::register(&mut registry);
    let dir = tempfile::tempdir().unwrap();
    let vault_dir = dir.path().join("vault");
    let yaml = format!(
        "secrets:\n  provider: local\n  config:\n    path: {}\n    master_key:\n      \
         provider: vault-transit\n      address: {}\n      mount: kms\n      key: sealbox\n      \
         auth: {{method: token, token: {ROOT_TOKEN}}}\n",
        vault_dir.display(),
        server.address()
    );
    let client = Config::from_yaml_str(&yaml)
        .unwrap()
        .build(&registry)
        .await
        .unwrap();
    client
        .put("predis/prod/api-key", &secret(b"sealed-from-yaml"))
        .await
        .unwrap();
    drop(client);
    let client = Config::from_yaml_str(&yaml)
        .unwrap()
        .build(&registry)
        .await
        .unwrap();
    let got = client.get("predis/prod/api-key").await.unwrap();
    assert_eq!(got.expose_secret(), b"sealed-from-yaml");
    let keys = server.must(&["list", "kms/keys"]);
    assert!(keys.contains("sealbox"), "{keys}");

    for (bad, needle) in [
        ("key: sealbox", "master_key.key: required"),
        ("mount: kms", "master_key.prefix: not a setting"),
    ] {
        let yaml = yaml
            .replace(
                bad,
                if bad.starts_with("key") {
                    ""
                } else {
                    "prefix: x"
                },
            )
            .replace("\n      \n", "\n");
        let err = match Config::from_yaml_str(&yaml).unwrap().build(&registry).await {
            Err(e) => e,
            Ok(_) => panic!("{yaml} built"),
        };
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(err.message().contains(needle), "{needle}: {err}");
    }
}
