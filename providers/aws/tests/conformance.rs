//! The conformance suite, whole, against moto.

mod support;

use sealbox::store::SecretStore;
use sealbox_aws::{AwsConfig, AwsSecretsManager};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_conformance_suite_passes_against_moto() {
    let Some(ep) = support::endpoint("the_whole_conformance_suite_passes_against_moto") else {
        return;
    };
    let config = support::moto_config(&ep);
    let store =
        AwsSecretsManager::from_sdk_config(&support::sdk_config(&config).await, &config).unwrap();
    let prefix = format!("conformance/{}", support::unique("aws"));
    sealbox_conformance::run_all(&store, store.capabilities(), &prefix)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_passes_through_a_store_prefix_too() {
    let Some(ep) = support::endpoint("the_suite_passes_through_a_store_prefix_too") else {
        return;
    };
    let config = AwsConfig {
        prefix: Some(format!("tenant/{}", support::unique("prefixed"))),
        ..support::moto_config(&ep)
    };
    let store =
        AwsSecretsManager::from_sdk_config(&support::sdk_config(&config).await, &config).unwrap();
    sealbox_conformance::run_all(&store, store.capabilities(), "conformance")
        .await
        .unwrap();
}
