//! `KmsMasterKey` against moto's KMS: KEKs wrap and unwrap without the master key leaving KMS,
//! bound to their context, and a disabled key fails clearly.

mod support;

use std::collections::BTreeMap;

use aws_sdk_kms::Client as KmsClient;
use sealbox::{ErrorKind, ExposeSecret, Secret};
use sealbox_aws::KmsMasterKey;

async fn new_key(kms: &KmsClient, alias: &str) -> String {
    let key = kms
        .create_key()
        .description("sealbox test master key")
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    kms.create_alias()
        .alias_name(alias)
        .target_key_id(&key)
        .send()
        .await
        .unwrap();
    key
}

fn context(namespace: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("sealbox:purpose".to_owned(), "kek".to_owned()),
        ("sealbox:namespace".to_owned(), namespace.to_owned()),
    ])
}

#[tokio::test]
async fn a_kek_wraps_and_unwraps_under_a_kms_alias_bound_to_its_context() {
    let Some(ep) =
        support::endpoint("a_kek_wraps_and_unwraps_under_a_kms_alias_bound_to_its_context")
    else {
        return;
    };
    let sdk = support::sdk_config(&support::moto_config(&ep)).await;
    let kms = KmsClient::new(&sdk);
    let alias = format!("alias/{}", support::unique("sealbox-master"));
    let key_id = new_key(&kms, &alias).await;
    let master = KmsMasterKey::from_sdk_config(&sdk, &alias).unwrap();

    let info = master.ensure_usable().await.unwrap();
    assert_eq!(info.key_id, key_id);
    assert!(info.enabled);

    let kek = Secret::random(32).unwrap();
    let wrapped = master.encrypt_key(&kek, &context("predis")).await.unwrap();
    assert!(wrapped.len() > 32);
    assert!(
        !wrapped.windows(32).any(|w| w == kek.expose_secret()),
        "the blob must not contain the KEK in clear"
    );
    let back = master
        .decrypt_key(&wrapped, &context("predis"))
        .await
        .unwrap();
    assert!(back.ct_eq(&kek));

    // Another namespace's context cannot open it.
    let err = master
        .decrypt_key(&wrapped, &context("other"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    // Nor can another key.
    let other_alias = format!("alias/{}", support::unique("sealbox-other"));
    new_key(&kms, &other_alias).await;
    let other = KmsMasterKey::from_sdk_config(&sdk, &other_alias).unwrap();
    let err = other
        .decrypt_key(&wrapped, &context("predis"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::AccessDenied | ErrorKind::WrongKey | ErrorKind::Integrity
        ),
        "{err}"
    );
    assert_eq!(
        master
            .decrypt_key(&[], &context("predis"))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Truncated
    );
}

#[tokio::test]
async fn a_disabled_key_fails_with_access_denied_and_says_so() {
    let Some(ep) = support::endpoint("a_disabled_key_fails_with_access_denied_and_says_so") else {
        return;
    };
    let sdk = support::sdk_config(&support::moto_config(&ep)).await;
    let kms = KmsClient::new(&sdk);
    let alias = format!("alias/{}", support::unique("sealbox-disabled"));
    let key_id = new_key(&kms, &alias).await;
    let master = KmsMasterKey::from_sdk_config(&sdk, &alias).unwrap();
    let kek = Secret::random(32).unwrap();
    let wrapped = master.encrypt_key(&kek, &context("predis")).await.unwrap();

    kms.disable_key().key_id(&key_id).send().await.unwrap();
    let err = master
        .decrypt_key(&wrapped, &context("predis"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");
    assert!(err.message().contains("Disabled"), "{err}");
    assert_eq!(
        master
            .encrypt_key(&kek, &context("predis"))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::AccessDenied
    );

    kms.enable_key().key_id(&key_id).send().await.unwrap();
    let back = master
        .decrypt_key(&wrapped, &context("predis"))
        .await
        .unwrap();
    assert!(back.ct_eq(&kek));
}

#[tokio::test]
async fn an_unknown_key_is_not_found() {
    let Some(ep) = support::endpoint("an_unknown_key_is_not_found") else {
        return;
    };
    let sdk = support::sdk_config(&support::moto_config(&ep)).await;
    let master = KmsMasterKey::from_sdk_config(&sdk, "alias/does-not-exist").unwrap();
    let err = master.describe().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.message().contains("kms_key_id") || err.message().contains("NotFound"));
}
