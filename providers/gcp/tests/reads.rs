//! How `get` reads: one call to Secret Manager for a read by stage (the access by alias), and
//! a soft delete that takes the aliases away (in the same conditional update that marks the
//! secret) so that no alias answers for a deleted secret, through sealbox or another client,
//! until `restore` puts them back.

mod support;

use google_cloud_gax::error::rpc::Code;
use sealbox::store::{DeleteOptions, PutOptions, SecretStore, Stage, VersionId, VersionSelector};
use sealbox::{ErrorKind, ExposeSecret};
use support::{LocalSecretManager, name, secret};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_by_stage_is_one_call_to_secret_manager() {
    let server = LocalSecretManager::start().await;
    let store = support::store(&server, "").await;
    let n = name("reads/one-call");
    store
        .put(&n, &secret(b"one"), &PutOptions::default())
        .await
        .unwrap();
    store
        .put(&n, &secret(b"two"), &PutOptions::default())
        .await
        .unwrap();
    for (selector, stage, value, version) in [
        (VersionSelector::Current, Stage::Current, b"two", "2"),
        (
            VersionSelector::Stage(Stage::Previous),
            Stage::Previous,
            b"one",
            "1",
        ),
    ] {
        let before = server.requests();
        let got = store.get(&n, &selector).await.unwrap();
        assert_eq!(
            server.requests() - before,
            1,
            "{selector:?}: one AccessSecretVersion by alias, nothing else"
        );
        assert_eq!(got.value.expose_secret(), value);
        assert_eq!(got.version, VersionId::new(version));
        assert_eq!(got.stages, vec![stage]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soft_deleted_secret_answers_to_no_alias_until_restored() {
    let server = LocalSecretManager::start().await;
    let store = support::store(&server, "").await;
    let n = name("reads/deleted");
    let blue = Stage::Custom("blue".into());
    store
        .put(&n, &secret(b"one"), &PutOptions::default())
        .await
        .unwrap();
    store
        .put(&n, &secret(b"two"), &PutOptions::default())
        .await
        .unwrap();
    store
        .set_stage(&n, &blue, Some(&VersionId::new("1")))
        .await
        .unwrap();

    store.delete(&n, &DeleteOptions::default()).await.unwrap();
    for selector in [
        VersionSelector::Current,
        VersionSelector::Stage(Stage::Previous),
        VersionSelector::Stage(blue.clone()),
        VersionSelector::Version(VersionId::new("2")),
    ] {
        let err = store.get(&n, &selector).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{selector:?}");
        assert!(err.message().contains("deleted"), "{selector:?}: {err}");
    }
    // Google's client reading by alias finds nothing either.
    let current = format!("{}/versions/current", store.resource(&n).unwrap());
    let err = store
        .client()
        .access_secret_version()
        .set_name(&current)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.code), Some(Code::NotFound), "{err}");
    // describe still shows where the stages will be once restored.
    let meta = store.describe(&n).await.unwrap();
    assert!(meta.deleted.is_some());
    assert_eq!(
        meta.version_with_stage(&Stage::Current),
        Some(&VersionId::new("2"))
    );
    assert_eq!(meta.version_with_stage(&blue), Some(&VersionId::new("1")));

    store.restore(&n).await.unwrap();
    let got = store.get(&n, &VersionSelector::Current).await.unwrap();
    assert_eq!(got.value.expose_secret(), b"two");
    let got = store.get(&n, &VersionSelector::Stage(blue)).await.unwrap();
    assert_eq!(got.value.expose_secret(), b"one");
    let got = store
        .get(&n, &VersionSelector::Stage(Stage::Previous))
        .await
        .unwrap();
    assert_eq!(got.version, VersionId::new("1"));
}
