//! `AwsSecretsManager` against a real moto server: the AWS mapping, specified.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use sealbox::store::{
    DeleteOptions, ListOptions, PutOptions, SecretStore, Stage, VersionId, VersionSelector,
};
use sealbox::{ErrorKind, ExposeSecret, Secret};
use support::{endpoint, name, store};

fn secret(bytes: &[u8]) -> Secret {
    let mut b = bytes.to_vec();
    Secret::from_mut_slice(&mut b).unwrap()
}

#[tokio::test]
async fn string_and_binary_values_round_trip_with_explicit_stages() {
    let Some(ep) = endpoint("string_and_binary_values_round_trip_with_explicit_stages") else {
        return;
    };
    let store = store(&ep, "roundtrip").await;
    let text = name("predis/prod/database/password");
    let v1 = store
        .put(&text, &secret(b"hunter2"), &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(v1.stages, vec![Stage::Current]);
    assert!(
        (32..=64).contains(&v1.version.as_str().len()),
        "AWS ids are UUIDs"
    );

    let got = store.get(&text, &VersionSelector::Current).await.unwrap();
    assert_eq!(got.value.expose_secret(), b"hunter2");
    assert_eq!(got.version, v1.version);
    assert_eq!(got.stages, vec![Stage::Current]);

    let binary = name("predis/prod/tls/key.der");
    let raw = [0u8, 159, 146, 150, 255, 10];
    store
        .put(&binary, &secret(&raw), &PutOptions::default())
        .await
        .unwrap();
    let got = store
        .get(&binary, &VersionSelector::Stage(Stage::Current))
        .await
        .unwrap();
    assert_eq!(got.value.expose_secret(), &raw);
}

#[tokio::test]
async fn a_new_current_version_pushes_the_old_one_to_previous() {
    let Some(ep) = endpoint("a_new_current_version_pushes_the_old_one_to_previous") else {
        return;
    };
    let store = store(&ep, "previous").await;
    let n = name("app/api-key");
    let v1 = store
        .put(&n, &secret(b"one"), &PutOptions::default())
        .await
        .unwrap();
    let v2 = store
        .put(&n, &secret(b"two"), &PutOptions::default())
        .await
        .unwrap();
    assert_ne!(v1.version, v2.version);

    let prev = store
        .get(&n, &VersionSelector::Stage(Stage::Previous))
        .await
        .unwrap();
    assert_eq!(prev.version, v1.version);
    assert_eq!(prev.value.expose_secret(), b"one");
    let by_id = store
        .get(&n, &VersionSelector::Version(v1.version.clone()))
        .await
        .unwrap();
    assert_eq!(by_id.value.expose_secret(), b"one");

    let meta = store.describe(&n).await.unwrap();
    assert_eq!(meta.version_with_stage(&Stage::Current), Some(&v2.version));
    assert_eq!(meta.version_with_stage(&Stage::Previous), Some(&v1.version));
    let ids: Vec<_> = meta.versions.iter().map(|v| v.version.clone()).collect();
    assert_eq!(ids, vec![v1.version, v2.version], "oldest first");
}

#[tokio::test]
async fn rotation_writes_pending_then_promotes_it_with_set_stage() {
    let Some(ep) = endpoint("rotation_writes_pending_then_promotes_it_with_set_stage") else {
        return;
    };
    let store = store(&ep, "rotate").await;
    let n = name("db/creds");
    let v1 = store
        .put(&n, &secret(b"old"), &PutOptions::default())
        .await
        .unwrap();
    let pending = PutOptions {
        stages: vec![Stage::Pending],
        ..PutOptions::default()
    };
    let v2 = store.put(&n, &secret(b"new"), &pending).await.unwrap();
    assert_eq!(v2.stages, vec![Stage::Pending]);
    // Readers still see the old value.
    let cur = store.get(&n, &VersionSelector::Current).await.unwrap();
    assert_eq!(cur.value.expose_secret(), b"old");

    store
        .set_stage(&n, &Stage::Current, Some(&v2.version))
        .await
        .unwrap();
    store.set_stage(&n, &Stage::Pending, None).await.unwrap();

    let meta = store.describe(&n).await.unwrap();
    assert_eq!(meta.version_with_stage(&Stage::Current), Some(&v2.version));
    assert_eq!(meta.version_with_stage(&Stage::Previous), Some(&v1.version));
    assert_eq!(meta.version_with_stage(&Stage::Pending), None);
    let cur = store.get(&n, &VersionSelector::Current).await.unwrap();
    assert_eq!(cur.value.expose_secret(), b"new");

    // Moving a stage onto the version that has it is a no-op; CURRENT cannot be removed.
    store
        .set_stage(&n, &Stage::Current, Some(&v2.version))
        .await
        .unwrap();
    let err = store
        .set_stage(&n, &Stage::Current, None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = store
        .set_stage(&n, &Stage::Pending, Some(&VersionId::new("0".repeat(36))))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn custom_stages_pass_through_and_aws_prefixed_ones_are_refused() {
    let Some(ep) = endpoint("custom_stages_pass_through_and_aws_prefixed_ones_are_refused") else {
        return;
    };
    let store = store(&ep, "custom").await;
    let n = name("svc/token");
    store
        .put(&n, &secret(b"a"), &PutOptions::default())
        .await
        .unwrap();
    let canary = Stage::Custom("canary".into());
    let v = store
        .put(
            &n,
            &secret(b"b"),
            &PutOptions {
                stages: vec![canary.clone()],
                ..PutOptions::default()
            },
        )
        .await
        .unwrap();
    let got = store
        .get(&n, &VersionSelector::Stage(canary.clone()))
        .await
        .unwrap();
    assert_eq!(got.version, v.version);
    assert_eq!(got.value.expose_secret(), b"b");

    let reserved = Stage::Custom("AWSCURRENT".into());
    let err = store
        .get(&n, &VersionSelector::Stage(reserved))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = store
        .put(
            &n,
            &secret(b"c"),
            &PutOptions {
                stages: vec![],
                ..PutOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn missing_secrets_versions_and_stages_are_not_found_with_a_request_id() {
    let Some(ep) = endpoint("missing_secrets_versions_and_stages_are_not_found_with_a_request_id")
    else {
        return;
    };
    let store = store(&ep, "missing").await;
    let n = name("nope/never");
    let err = store.get(&n, &VersionSelector::Current).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.request_id().is_some_and(|id| !id.is_empty()), "{err:?}");
    assert_eq!(
        store.describe(&n).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );

    store
        .put(&n, &secret(b"x"), &PutOptions::default())
        .await
        .unwrap();
    let err = store
        .get(&n, &VersionSelector::Stage(Stage::Pending))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    for bad in ["1", &"f".repeat(36)] {
        let err = store
            .get(&n, &VersionSelector::Version(VersionId::new(bad)))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{bad}");
    }
}

#[tokio::test]
async fn idempotency_tokens_make_retried_puts_create_one_version() {
    let Some(ep) = endpoint("idempotency_tokens_make_retried_puts_create_one_version") else {
        return;
    };
    let store = store(&ep, "idem").await;
    let n = name("job/secret");
    store
        .put(&n, &secret(b"base"), &PutOptions::default())
        .await
        .unwrap();
    let opts = PutOptions {
        idempotency_token: Some("retry-7".into()),
        ..PutOptions::default()
    };
    let a = store.put(&n, &secret(b"v"), &opts).await.unwrap();
    let b = store.put(&n, &secret(b"v"), &opts).await.unwrap();
    assert_eq!(a.version, b.version);
    let err = store.put(&n, &secret(b"other"), &opts).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(store.describe(&n).await.unwrap().versions.len(), 2);
}

#[tokio::test]
async fn expected_current_is_checked_before_the_write() {
    let Some(ep) = endpoint("expected_current_is_checked_before_the_write") else {
        return;
    };
    let store = store(&ep, "cas").await;
    assert!(
        !store.capabilities().compare_and_set,
        "AWS has no atomic CAS"
    );
    let n = name("cas/value");
    let create = PutOptions {
        expected_current: Some(None),
        description: Some("made by the CAS test".into()),
        tags: BTreeMap::from([("team".to_owned(), "predis".to_owned())]),
        ..PutOptions::default()
    };
    let v1 = store.put(&n, &secret(b"1"), &create).await.unwrap();
    let err = store.put(&n, &secret(b"again"), &create).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);

    let stale = PutOptions {
        expected_current: Some(Some(VersionId::new("0".repeat(36)))),
        ..PutOptions::default()
    };
    let err = store.put(&n, &secret(b"2"), &stale).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    let fresh = PutOptions {
        expected_current: Some(Some(v1.version.clone())),
        ..PutOptions::default()
    };
    let v2 = store.put(&n, &secret(b"2"), &fresh).await.unwrap();
    assert_ne!(v1.version, v2.version);

    let meta = store.describe(&n).await.unwrap();
    assert_eq!(meta.description.as_deref(), Some("made by the CAS test"));
    assert_eq!(meta.tags.get("team").map(String::as_str), Some("predis"));
}

#[tokio::test]
async fn list_pages_through_names_under_a_prefix() {
    let Some(ep) = endpoint("list_pages_through_names_under_a_prefix") else {
        return;
    };
    let store = store(&ep, "list").await;
    for n in ["a/1", "a/2", "a/3", "a/4", "a/5", "b/1"] {
        store
            .put(&name(n), &secret(b"v"), &PutOptions::default())
            .await
            .unwrap();
    }
    let mut options = ListOptions {
        prefix: "a/".into(),
        page_size: Some(2),
        ..ListOptions::default()
    };
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = store.list(&options).await.unwrap();
        pages += 1;
        assert!(page.entries.len() <= 2);
        seen.extend(page.entries.into_iter().map(|e| e.name.to_string()));
        match page.next_page_token {
            Some(t) => options.page_token = Some(t),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["a/1", "a/2", "a/3", "a/4", "a/5"]);
    assert!(pages >= 3, "5 names in pages of 2");

    let all = store.list(&ListOptions::default()).await.unwrap();
    let names: Vec<_> = all.entries.iter().map(|e| e.name.to_string()).collect();
    assert_eq!(names, ["a/1", "a/2", "a/3", "a/4", "a/5", "b/1"]);
}

#[tokio::test]
async fn soft_delete_hides_restore_brings_back_force_destroys() {
    let Some(ep) = endpoint("soft_delete_hides_restore_brings_back_force_destroys") else {
        return;
    };
    let store = store(&ep, "delete").await;
    let n = name("old/key");
    store
        .put(&n, &secret(b"v"), &PutOptions::default())
        .await
        .unwrap();

    let too_short = DeleteOptions {
        force: false,
        recovery_window: Duration::from_secs(3600),
    };
    assert_eq!(
        store.delete(&n, &too_short).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );

    let week = DeleteOptions {
        force: false,
        recovery_window: Duration::from_secs(7 * 24 * 3600),
    };
    store.delete(&n, &week).await.unwrap();
    store.delete(&n, &week).await.unwrap();
    assert_eq!(
        store
            .get(&n, &VersionSelector::Current)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert!(store.describe(&n).await.unwrap().deleted.is_some());
    let err = store
        .put(&n, &secret(b"w"), &PutOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    let listed = store.list(&ListOptions::default()).await.unwrap();
    assert!(listed.entries.is_empty());
    let listed = store
        .list(&ListOptions {
            include_deleted: true,
            ..ListOptions::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.entries.len(), 1);
    assert!(listed.entries[0].deleted);

    store.restore(&n).await.unwrap();
    let got = store.get(&n, &VersionSelector::Current).await.unwrap();
    assert_eq!(got.value.expose_secret(), b"v");

    store.delete(&n, &week).await.unwrap();
    let force = DeleteOptions {
        force: true,
        ..DeleteOptions::default()
    };
    store.delete(&n, &force).await.unwrap();
    assert_eq!(
        store.describe(&n).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        store.restore(&n).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        store.delete(&n, &force).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn json_secrets_select_fields() {
    let Some(ep) = endpoint("json_secrets_select_fields") else {
        return;
    };
    let store = store(&ep, "json").await;
    let n = name("predis/prod/database");
    let doc = br#"{"username":"predis","password":"s3cr3t","host":"db.internal","port":5432}"#;
    store
        .put(&n, &secret(doc), &PutOptions::default())
        .await
        .unwrap();
    let got = store.get(&n, &VersionSelector::Current).await.unwrap();
    let password = got.value.json_field("password").unwrap();
    assert_eq!(password.expose_secret(), "s3cr3t");
    let port = got.value.json_field("port").unwrap();
    assert_eq!(port.expose_secret(), "5432");
}

#[tokio::test]
async fn values_over_the_aws_limit_are_refused_before_sending() {
    let Some(ep) = endpoint("values_over_the_aws_limit_are_refused_before_sending") else {
        return;
    };
    let store = store(&ep, "limit").await;
    let big = Secret::init_with(65_537, |b| {
        b.fill(b'x');
        Ok(())
    })
    .unwrap();
    let err = store
        .put(&name("too/big"), &big, &PutOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn an_assumed_role_with_external_id_reads_and_writes() {
    let Some(ep) = endpoint("an_assumed_role_with_external_id_reads_and_writes") else {
        return;
    };
    let config = sealbox_aws::AwsConfig {
        role_arn: Some("arn:aws:iam::123456789012:role/sealbox-reader".into()),
        external_id: Some("predis-7f3a".into()),
        role_session_name: Some("sealbox-tests".into()),
        prefix: Some(format!("sealbox-tests/{}", support::unique("assume-role"))),
        ..support::moto_config(&ep)
    };
    let sdk = support::sdk_config(&config).await;
    // The credentials in use are the role's (moto's STS answers AssumeRole), not the base ones.
    let creds = aws_sdk_secretsmanager::config::ProvideCredentials::provide_credentials(
        &sdk.credentials_provider().unwrap(),
    )
    .await
    .unwrap();
    assert_ne!(creds.access_key_id(), "testing");
    let store = sealbox_aws::AwsSecretsManager::from_sdk_config(&sdk, &config).unwrap();
    let n = name("cross/account");
    store
        .put(&n, &secret(b"v"), &PutOptions::default())
        .await
        .unwrap();
    let got = store.get(&n, &VersionSelector::Current).await.unwrap();
    assert_eq!(got.value.expose_secret(), b"v");
}
