//! `provider: aws` in config files, without a network: every whole config in the repository's
//! Markdown loads with the AWS provider registered, and no value of the secret-bearing
//! `external_id` appears in an error, whatever its YAML type.

#[path = "../../../core/tests/support/markdown_configs.rs"]
mod markdown_configs;

use sealbox::config::{Config, ProviderRegistry};

fn registry() -> ProviderRegistry {
    let mut registry = ProviderRegistry::with_builtins();
    sealbox_aws::register(&mut registry);
    registry
}

#[tokio::test]
async fn every_markdown_config_loads_with_the_aws_provider_registered() {
    let registry = registry();
    let known: Vec<&str> = registry
        .stores
        .names()
        .chain(registry.keys.names())
        .collect();
    let blocks = markdown_configs::all_blocks();
    let (mut aws, mut kms) = (0, 0);
    for block in &blocks {
        let providers = markdown_configs::providers(block);
        if providers.iter().any(|p| p == "aws") {
            aws += 1;
        }
        // Another crate's provider (pkcs11): that crate's tests cover its blocks.
        if providers.iter().any(|p| !known.contains(&p.as_str())) {
            continue;
        }
        // A vault sealed by KMS calls KMS as it opens: these blocks parse here (the
        // markdown harness checked that) and kms_from_config.rs runs one against moto.
        if providers.iter().any(|p| p == sealbox_aws::KMS_KEY_PROVIDER) {
            kms += 1;
            continue;
        }
        if let Err(e) = markdown_configs::load(block, &registry).await {
            panic!("{block}: does not load: {e}\n{}", block.yaml);
        }
    }
    assert!(aws > 0, "expected the documented `provider: aws` configs");
    assert!(
        kms > 0,
        "expected the documented `provider: aws-kms` master key"
    );
}

#[tokio::test]
async fn external_id_values_of_any_yaml_type_never_appear_in_errors() {
    let registry = registry();
    let planted: &[(&str, &[&str])] = &[
        ("5839872095347003", &["5839872095347003"]),
        ("5839.872095347003", &["5839.87209534"]),
        ("true", &["true"]),
        ("[s3cr3t-in-a-sequence]", &["s3cr3t"]),
        ("{s3cr3t-key: s3cr3t-value}", &["s3cr3t-value"]),
        ("!s3cr3t-tag s3cr3t-tagged", &["s3cr3t"]),
    ];
    for (value, betrayals) in planted {
        for yaml in [
            format!(
                "secrets:\n  provider: aws\n  config:\n    region: eu-west-1\n    \
                 role_arn: arn:aws:iam::1:role/r\n    external_id: {value}\n"
            ),
            format!(
                "secrets: {{provider: aws, config: {{region: eu-west-1, role_arn: \"arn:aws:iam::1:role/r\", external_id: {value}}}}}\n"
            ),
        ] {
            let e = match Config::from_yaml_str(&yaml) {
                Ok(c) => match c.build(&registry).await {
                    Ok(_) => panic!("{yaml} was accepted"),
                    Err(e) => e,
                },
                Err(e) => e,
            };
            let text = format!("{e} | {e:?}");
            assert!(text.contains("external_id"), "{text}");
            for b in *betrayals {
                assert!(!text.contains(b), "{value} leaked as {b:?}: {text}");
            }
        }
    }
}
