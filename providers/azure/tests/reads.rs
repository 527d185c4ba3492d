//! How the store reads and writes Key Vault, checked on the server's side of the wire: the
//! one-call read of CURRENT, validity windows honoured, names that differ only in case kept
//! apart, values other clients can read, and secrets other clients wrote.

mod support;

use std::collections::HashMap;

use azure_security_keyvault_secrets::models::{
    SecretAttributes, SecretClientGetSecretOptions, SecretClientUpdateSecretPropertiesOptions,
    SetSecretParameters, UpdateSecretPropertiesParameters,
};
use sealbox::store::{PutOptions, SecretStore, Stage, VersionSelector};
use sealbox::{ErrorKind, ExposeSecret};
use support::{name, secret};

#[tokio::test]
async fn a_read_of_current_after_a_put_is_one_request() {
    let local = support::start().await;
    let store = local.store("").await;
    store
        .put(&name("one/call"), &secret(b"v1"), &PutOptions::default())
        .await
        .unwrap();
    let before = local.server.requests();
    let got = store
        .get(&name("one/call"), &VersionSelector::Current)
        .await
        .unwrap();
    assert_eq!(got.value.expose_secret(), b"v1");
    assert_eq!(local.server.requests() - before, 1);
}

#[tokio::test]
async fn an_expired_or_disabled_current_version_is_not_served_and_says_why() {
    let local = support::start().await;
    let store = local.store("").await;
    let n = name("short/lived");
    let v1 = store
        .put(&n, &secret(b"old"), &PutOptions::default())
        .await
        .unwrap();
    let v2 = store
        .put(&n, &secret(b"new"), &PutOptions::default())
        .await
        .unwrap();
    // Another client marks the current version expired an hour ago.
    let past = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    let params = UpdateSecretPropertiesParameters {
        secret_attributes: Some(SecretAttributes {
            expires: Some(past),
            ..Default::default()
        }),
        ..Default::default()
    };
    store
        .client()
        .update_secret_properties(
            "short--lived",
            params.try_into().unwrap(),
            Some(SecretClientUpdateSecretPropertiesOptions {
                secret_version: Some(v2.version.to_string()),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    let err = store.get(&n, &VersionSelector::Current).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.message().contains("expired"), "{err}");
    // Never a silent fall back to the older value; the older one stays readable by id.
    let old = store
        .get(&n, &VersionSelector::Version(v1.version.clone()))
        .await
        .unwrap();
    assert_eq!(old.value.expose_secret(), b"old");
    // Disabled: the same.
    let params = UpdateSecretPropertiesParameters {
        secret_attributes: Some(SecretAttributes {
            enabled: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    };
    store
        .client()
        .update_secret_properties(
            "short--lived",
            params.try_into().unwrap(),
            Some(SecretClientUpdateSecretPropertiesOptions {
                secret_version: Some(v1.version.to_string()),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    let err = store
        .get(&n, &VersionSelector::Version(v1.version.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.message().contains("disabled"), "{err}");
}

#[tokio::test]
async fn names_that_differ_only_in_case_never_share_a_secret() {
    let local = support::start().await;
    let store = local.store("").await;
    store
        .put(&name("Db/pw"), &secret(b"upper"), &PutOptions::default())
        .await
        .unwrap();
    let err = store
        .put(&name("db/pw"), &secret(b"lower"), &PutOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    let err = store
        .get(&name("db/pw"), &VersionSelector::Current)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let got = store
        .get(&name("Db/pw"), &VersionSelector::Current)
        .await
        .unwrap();
    assert_eq!(got.value.expose_secret(), b"upper");
    let page = store.list(&Default::default()).await.unwrap();
    let names: Vec<String> = page.entries.iter().map(|e| e.name.to_string()).collect();
    assert_eq!(names, vec!["Db/pw".to_owned()]);
}

#[tokio::test]
async fn text_is_stored_as_text_and_binary_as_tagged_base64() {
    let local = support::start().await;
    let store = local.store("").await;
    store
        .put(&name("t"), &secret(b"plain text"), &PutOptions::default())
        .await
        .unwrap();
    store
        .put(&name("b"), &secret(&[0, 255, 1]), &PutOptions::default())
        .await
        .unwrap();
    let raw = |n: &'static str| {
        let client = store.client();
        async move {
            client
                .get_secret(n, None::<SecretClientGetSecretOptions<'_>>)
                .await
                .unwrap()
                .into_model()
                .unwrap()
        }
    };
    let t = raw("t").await;
    assert_eq!(t.value.as_deref(), Some("plain text"));
    assert_eq!(t.content_type, None);
    assert_eq!(
        t.tags.unwrap().get("sealbox-stage").map(String::as_str),
        Some("CURRENT")
    );
    let b = raw("b").await;
    assert_eq!(b.value.as_deref(), Some("AP8B"));
    assert_eq!(
        b.content_type.as_deref(),
        Some(sealbox_azure::names::CONTENT_TYPE_BASE64)
    );
    let got = store
        .get(&name("b"), &VersionSelector::Current)
        .await
        .unwrap();
    assert_eq!(got.value.expose_secret(), &[0, 255, 1]);
}

#[tokio::test]
async fn a_secret_another_client_wrote_reads_its_latest_version_as_current() {
    let local = support::start().await;
    let store = local.store("").await;
    for value in ["first", "second"] {
        let params = SetSecretParameters {
            value: Some(value.into()),
            tags: Some(HashMap::from([("team".to_owned(), "ops".to_owned())])),
            ..Default::default()
        };
        store
            .client()
            .set_secret("foreign--secret", params.try_into().unwrap(), None)
            .await
            .unwrap();
    }
    let got = store
        .get(&name("foreign/secret"), &VersionSelector::Current)
        .await
        .unwrap();
    assert_eq!(got.value.expose_secret(), b"second");
    assert_eq!(got.stages, vec![Stage::Current]);
    let meta = store.describe(&name("foreign/secret")).await.unwrap();
    assert_eq!(meta.versions.len(), 2);
    assert_eq!(meta.tags.get("team").map(String::as_str), Some("ops"));
    // A sealbox put on top makes the old latest PREVIOUS, as a rotation expects.
    let v3 = store
        .put(
            &name("foreign/secret"),
            &secret(b"third"),
            &PutOptions::default(),
        )
        .await
        .unwrap();
    let prev = store
        .get(
            &name("foreign/secret"),
            &VersionSelector::Stage(Stage::Previous),
        )
        .await
        .unwrap();
    assert_eq!(prev.value.expose_secret(), b"second");
    assert_ne!(prev.version, v3.version);
}
