//! `provider: aws` in a YAML config, through the provider registry, against moto: the store
//! `Sealbox::from_config` builds reads what boto3-compatible tools wrote, with the standard
//! credential chain (here: the environment).
//!
//! This binary holds a single test because it sets AWS credential variables in the process
//! environment, which must happen before any other thread exists.

mod support;

use sealbox::config::{Config, ProviderRegistry};
use sealbox::store::{PutOptions, SecretStore};
use sealbox::{ErrorKind, ExposeSecret, Secret};
use sealbox_aws::{AwsConfig, AwsSecretsManager};

#[test]
fn provider_aws_in_yaml_builds_a_working_store_and_bad_config_names_the_key() {
    let Some(ep) = support::endpoint(
        "provider_aws_in_yaml_builds_a_working_store_and_bad_config_names_the_key",
    ) else {
        return;
    };
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ] {
        // SAFETY: this test binary has one test and sets the variables before it starts the
        // runtime or any other thread, so nothing reads the environment concurrently.
        unsafe { std::env::set_var(k, v) };
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let prefix = format!("from-config/{}", support::unique("yaml"));
        // Seed through a store built in code.
        let direct = AwsConfig {
            prefix: Some(prefix.clone()),
            ..support::moto_config(&ep)
        };
        let seeder =
            AwsSecretsManager::from_sdk_config(&support::sdk_config(&direct).await, &direct)
                .unwrap();
        let mut raw = br#"{"username":"predis","password":"from-yaml"}"#.to_vec();
        seeder
            .put(
                &support::name("database"),
                &Secret::from_mut_slice(&mut raw).unwrap(),
                &PutOptions::default(),
            )
            .await
            .unwrap();

        let mut registry = ProviderRegistry::with_builtins();
        sealbox_aws::register(&mut registry);
        let yaml = format!(
            "stores:\n  aws:\n    provider: aws\n    config:\n      region: us-east-1\n      \
             endpoint_url: {ep}\n      prefix: {prefix}\n      operation_timeout: 5s\n"
        );
        let client = Config::from_yaml_str(&yaml)
            .unwrap()
            .build(&registry)
            .await
            .unwrap();
        let password = client.get_field("database", "password").await.unwrap();
        assert_eq!(password.expose_secret(), "from-yaml");
        let h = client.get("sb://aws/database").await.unwrap();
        assert!(h.expose_secret().starts_with(b"{"));

        // A misspelt key fails, naming where it is.
        let bad =
            "stores:\n  aws:\n    provider: aws\n    config: {region: us-east-1, endpoint_ur: x}\n";
        let err = Config::from_yaml_str(bad)
            .unwrap()
            .build(&registry)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.message().contains("stores.aws.config"), "{err}");
        assert!(err.message().contains("endpoint_ur"), "{err}");
        let bad =
            "stores:\n  aws:\n    provider: aws\n    config: {region: us-east-1, external_id: x}\n";
        let err = Config::from_yaml_str(bad)
            .unwrap()
            .build(&registry)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.message().contains("role_arn"), "{err}");
    });
}
