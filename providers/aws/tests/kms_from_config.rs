//! `master_key: {provider: aws-kms, ...}` in a YAML config: the local vault is sealed by a KMS
//! key (moto) through the provider registry, and opens again through the Rust API.
//!
//! This binary holds a single test because it sets AWS credential variables in the process
//! environment, which must happen before any other thread exists.

mod support;

use std::sync::Arc;

use aws_sdk_kms::Client as KmsClient;
use sealbox::config::{Config, ProviderRegistry};
use sealbox::store::local::LocalVault;
use sealbox::store::{SecretStore, VersionSelector};
use sealbox::{ErrorKind, ExposeSecret, Secret};
use sealbox_aws::KmsMasterKey;

#[test]
fn an_aws_kms_master_key_block_seals_the_local_vault() {
    let mut registry = ProviderRegistry::with_builtins();
    sealbox_aws::register(&mut registry);
    let dir = tempfile::tempdir().unwrap();
    let build_error = |yaml: &str| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let config = Config::from_yaml_str(yaml).unwrap();
        rt.block_on(config.build(&registry)).unwrap_err()
    };
    // Checked before any call to AWS.
    for (yaml, needle) in [
        (
            "secrets: {provider: local, config: {path: VAULT, master_key: {provider: aws-kms, region: us-east-1}}}",
            "secrets.config.master_key.key_id: required",
        ),
        (
            "secrets: {provider: local, config: {path: VAULT, master_key: {provider: aws-kms, key_id: alias/x, prefix: p}}}",
            "secrets.config.master_key.prefix: not a setting of the aws-kms key provider",
        ),
        (
            "secrets: {provider: local, config: {path: VAULT, master_key: {provider: aws-kms, key_id: alias/x, regoin: us-east-1}}}",
            "secrets.config.master_key.regoin: unknown field",
        ),
        (
            "secrets: {provider: local, config: {path: VAULT, master_key: {provider: aws-kms, key_id: alias/x, endpoint_url: ftp://x}}}",
            "secrets.config.master_key: aws endpoint_url",
        ),
    ] {
        let yaml = yaml.replace("VAULT", &dir.path().join("v").display().to_string());
        let e = build_error(&yaml);
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert!(e.message().contains(needle), "{yaml}: {e}");
    }

    let Some(ep) = support::endpoint("an_aws_kms_master_key_block_seals_the_local_vault") else {
        return;
    };
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ] {
        // SAFETY: this test binary has one test; the runtimes above have finished and no
        // other thread reads the environment while these are set.
        unsafe { std::env::set_var(k, v) };
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sdk = support::sdk_config(&support::moto_config(&ep)).await;
        let kms = KmsClient::new(&sdk);
        let key_id = kms
            .create_key()
            .send()
            .await
            .unwrap()
            .key_metadata
            .unwrap()
            .key_id;
        let alias = format!("alias/{}", support::unique("yaml-master"));
        kms.create_alias()
            .alias_name(&alias)
            .target_key_id(&key_id)
            .send()
            .await
            .unwrap();

        let vault_dir = dir.path().join("vault");
        let yaml = format!(
            "secrets:\n  provider: local\n  config:\n    path: {}\n    master_key:\n      provider: aws-kms\n      key_id: {alias}\n      region: us-east-1\n      endpoint_url: {ep}\n",
            vault_dir.display()
        );
        let client = Config::from_yaml_str(&yaml)
            .unwrap()
            .build(&registry)
            .await
            .unwrap();
        let mut raw = *b"sealed-by-kms-from-yaml";
        client
            .put(
                "predis/prod/database/password",
                &Secret::from_mut_slice(&mut raw).unwrap(),
            )
            .await
            .unwrap();
        drop(client);

        // The same vault through the Rust API: the KEK was wrapped by KMS, not by a local key.
        let provider = Arc::new(KmsMasterKey::from_sdk_config(&sdk, &alias).unwrap());
        let vault = LocalVault::open(&vault_dir, provider).await.unwrap();
        let got = vault
            .get(
                &support::name("predis/prod/database/password"),
                &VersionSelector::Current,
            )
            .await
            .unwrap();
        assert_eq!(got.value.expose_secret(), b"sealed-by-kms-from-yaml");
        drop(vault);

        // A disabled key: the YAML-built client cannot open the vault, with the KMS reason.
        kms.disable_key().key_id(&key_id).send().await.unwrap();
        let e = match Config::from_yaml_str(&yaml).unwrap().build(&registry).await {
            Err(e) => e,
            Ok(client) => client
                .get("predis/prod/database/password")
                .await
                .expect_err("a vault sealed by a disabled KMS key must not read"),
        };
        assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    });
}
