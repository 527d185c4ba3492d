//! Interop with the real AWS client: boto3 writes and rotates, sealbox reads; sealbox writes,
//! boto3 reads. Both against the same moto server.

mod support;

use std::process::Command;

use sealbox::store::{PutOptions, SecretName, SecretStore, Stage, VersionId, VersionSelector};
use sealbox::{ExposeSecret, Secret};
use sealbox_aws::{AwsConfig, AwsSecretsManager};
use serde_json::Value;

fn boto3(endpoint: &str, action: &str, prefix: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop_boto3.py");
    let python = support::python();
    let out = Command::new(&python)
        .args([script, endpoint, action, prefix])
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "boto3 {action} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("boto3 script prints JSON")
}

async fn store_under(endpoint: &str, prefix: &str) -> AwsSecretsManager {
    let config = AwsConfig {
        prefix: Some(prefix.to_owned()),
        ..support::moto_config(endpoint)
    };
    AwsSecretsManager::from_sdk_config(&support::sdk_config(&config).await, &config).unwrap()
}

fn secret(bytes: &[u8]) -> Secret {
    let mut b = bytes.to_vec();
    Secret::from_mut_slice(&mut b).unwrap()
}

fn id(v: &Value) -> VersionId {
    VersionId::new(v.as_str().expect("version id"))
}

#[tokio::test]
async fn secrets_rotated_by_boto3_read_correctly_in_sealbox() {
    let Some(ep) = support::endpoint("secrets_rotated_by_boto3_read_correctly_in_sealbox") else {
        return;
    };
    let prefix = format!("interop/{}", support::unique("boto3-writes"));
    let written = boto3(&ep, "write", &prefix);
    let store = store_under(&ep, &prefix).await;
    let db = SecretName::new("database").unwrap();

    let current = store.get(&db, &VersionSelector::Current).await.unwrap();
    assert_eq!(current.version, id(&written["database"]["v2"]));
    assert_eq!(current.stages, vec![Stage::Current]);
    assert_eq!(
        current
            .value
            .json_field("password")
            .unwrap()
            .expose_secret(),
        "boto-new"
    );
    let previous = store
        .get(&db, &VersionSelector::Stage(Stage::Previous))
        .await
        .unwrap();
    assert_eq!(previous.version, id(&written["database"]["v1"]));
    assert_eq!(
        previous
            .value
            .json_field("password")
            .unwrap()
            .expose_secret(),
        "boto-old"
    );
    let meta = store.describe(&db).await.unwrap();
    assert_eq!(meta.version_with_stage(&Stage::Pending), None);

    let blob = store
        .get(&SecretName::new("blob").unwrap(), &VersionSelector::Current)
        .await
        .unwrap();
    assert_eq!(blob.value.expose_secret(), &[0, 1, 2, 254, 255]);
    assert_eq!(blob.version, id(&written["blob"]["v"]));
}

#[tokio::test]
async fn versions_written_by_sealbox_read_correctly_in_boto3() {
    let Some(ep) = support::endpoint("versions_written_by_sealbox_read_correctly_in_boto3") else {
        return;
    };
    let prefix = format!("interop/{}", support::unique("sealbox-writes"));
    let store = store_under(&ep, &prefix).await;
    let n = SecretName::new("written").unwrap();
    let v1 = store
        .put(&n, &secret(b"first"), &PutOptions::default())
        .await
        .unwrap();
    let v2 = store
        .put(&n, &secret(b"second"), &PutOptions::default())
        .await
        .unwrap();
    let pending = PutOptions {
        stages: vec![Stage::Pending],
        ..PutOptions::default()
    };
    let v3 = store.put(&n, &secret(b"third"), &pending).await.unwrap();
    store
        .put(
            &SecretName::new("written-binary").unwrap(),
            &secret(&[255, 0, 128]),
            &PutOptions::default(),
        )
        .await
        .unwrap();

    let seen = boto3(&ep, "read", &prefix);
    let check = |stage: &str, v: &VersionId, value: &str| {
        assert_eq!(seen[stage]["version"].as_str(), Some(v.as_str()), "{stage}");
        assert_eq!(seen[stage]["value"].as_str(), Some(value), "{stage}");
    };
    check("AWSPREVIOUS", &v1.version, "first");
    check("AWSCURRENT", &v2.version, "second");
    check("AWSPENDING", &v3.version, "third");
    assert_eq!(seen["binary"], serde_json::json!([255, 0, 128]));
}
