//! A local vault sealed by a moto KMS key: it opens, rotates its master key, and fails clearly
//! when the key is disabled.

mod support;

use std::sync::Arc;

use aws_sdk_kms::Client as KmsClient;
use sealbox::keys::KeyProvider;
use sealbox::store::local::LocalVault;
use sealbox::store::{PutOptions, SecretStore, VersionSelector};
use sealbox::{ErrorKind, ExposeSecret, Secret};
use sealbox_aws::KmsMasterKey;

fn secret(bytes: &[u8]) -> Secret {
    let mut b = bytes.to_vec();
    Secret::from_mut_slice(&mut b).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_sealed_by_kms_opens_rotates_and_fails_clearly_when_the_key_is_disabled() {
    let Some(ep) = support::endpoint(
        "a_vault_sealed_by_kms_opens_rotates_and_fails_clearly_when_the_key_is_disabled",
    ) else {
        return;
    };
    let sdk = support::sdk_config(&support::moto_config(&ep)).await;
    let kms = KmsClient::new(&sdk);
    let key_id = kms
        .create_key()
        .description("sealbox vault master key")
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let alias = format!("alias/{}", support::unique("vault-master"));
    kms.create_alias()
        .alias_name(&alias)
        .target_key_id(&key_id)
        .send()
        .await
        .unwrap();
    let provider = || -> Arc<dyn KeyProvider> {
        Arc::new(KmsMasterKey::from_sdk_config(&sdk, &alias).unwrap())
    };

    let dir = tempfile::tempdir().unwrap();
    let name = support::name("predis/prod/database/password");
    {
        let vault = LocalVault::create(dir.path(), provider()).await.unwrap();
        vault
            .put(&name, &secret(b"sealed-by-kms"), &PutOptions::default())
            .await
            .unwrap();
    }

    // Reopened with a fresh provider: the KEK comes back through KMS Decrypt.
    let vault = LocalVault::open(dir.path(), provider()).await.unwrap();
    let got = vault.get(&name, &VersionSelector::Current).await.unwrap();
    assert_eq!(got.value.expose_secret(), b"sealed-by-kms");

    // Master rotation: KMS rotates its key material, the vault rewraps its KEKs.
    let before = provider().current_version().await.unwrap();
    let after = vault.rotate_master().await.unwrap();
    assert!(after > before, "{after:?} after {before:?}");
    drop(vault);
    let vault = LocalVault::open(dir.path(), provider()).await.unwrap();
    let got = vault.get(&name, &VersionSelector::Current).await.unwrap();
    assert_eq!(got.value.expose_secret(), b"sealed-by-kms");
    drop(vault);

    // Disabled key: opening and reading fail with AccessDenied that names the cause.
    kms.disable_key().key_id(&key_id).send().await.unwrap();
    let failure = match LocalVault::open(dir.path(), provider()).await {
        Err(e) => e,
        Ok(vault) => vault
            .get(&name, &VersionSelector::Current)
            .await
            .expect_err("a vault sealed by a disabled KMS key must not read"),
    };
    assert_eq!(failure.kind(), ErrorKind::AccessDenied, "{failure}");
    assert!(failure.message().contains("Disabled"), "{failure}");

    kms.enable_key().key_id(&key_id).send().await.unwrap();
    let vault = LocalVault::open(dir.path(), provider()).await.unwrap();
    let got = vault.get(&name, &VersionSelector::Current).await.unwrap();
    assert_eq!(got.value.expose_secret(), b"sealed-by-kms");
}
