//! Rotation through the client, as a specification: `Sealbox::rotation()` needs the `rotate`
//! capability (a principal with only read and write is refused before anything changes);
//! a rotation counts in the client's metrics and drops its cached value, so the next read
//! gets the new one; `run_due` rotates exactly the scheduled secrets whose period has passed,
//! with the generator of their credential type, and a second run finds nothing due.

use std::sync::Arc;

use sealbox::config::rotation::RotationConfig;
use sealbox::policy::{Capability, Policy, Rule};
use sealbox::rotation::record_name;
use sealbox::store::memory::MemoryStore;
use sealbox::store::{PutOptions, SecretName, SecretStore, Stage};
use sealbox::{ErrorKind, ExposeSecret, Principal, Sealbox, Secret};

fn secret(text: &str) -> Secret {
    Secret::init_with(text.len(), |d| {
        d.copy_from_slice(text.as_bytes());
        Ok(())
    })
    .unwrap()
}

async fn put(store: &dyn SecretStore, name: &str, value: &str) {
    let name: SecretName = name.parse().unwrap();
    store
        .put(&name, &secret(value), &PutOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn rotating_needs_the_rotate_capability_and_refreshes_the_cache() {
    let store = Arc::new(MemoryStore::new());
    put(store.as_ref(), "predis/prod/api/key", "old-key").await;
    let policy = Policy::new(vec![
        Rule::allow(
            &["user:ops"],
            &[Capability::Read, Capability::Write],
            &["predis/*"],
        )
        .unwrap(),
        Rule::allow(
            &["user:rotator"],
            &[Capability::Read, Capability::Rotate],
            &["predis/*"],
        )
        .unwrap(),
    ]);
    let sb = Sealbox::builder()
        .store(store.clone())
        .policy(policy)
        .principal(Principal::new("user:ops"))
        .build()
        .unwrap();
    let err = sb
        .rotation()
        .rotate("predis/prod/api/key")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");
    let name: SecretName = "predis/prod/api/key".parse().unwrap();
    let meta = store.describe(&name).await.unwrap();
    assert_eq!(meta.versions.len(), 1, "nothing was written");

    let rotator = sb.as_principal(Principal::new("user:rotator"));
    let cached = rotator.get("predis/prod/api/key").await.unwrap();
    assert_eq!(cached.expose_secret(), b"old-key");
    let done = rotator
        .rotation()
        .rotate("predis/prod/api/key")
        .await
        .unwrap();
    let fresh = rotator.get("predis/prod/api/key").await.unwrap();
    assert_ne!(
        fresh.expose_secret(),
        b"old-key",
        "the cache kept the old value"
    );
    assert_eq!(fresh.expose_secret().len(), 43, "a 32-byte base64url token");
    assert_eq!(
        store
            .describe(&name)
            .await
            .unwrap()
            .version_with_stage(&Stage::Current),
        Some(&done.current)
    );
    assert_eq!(
        rotator.metrics().rotations,
        4,
        "four successful step events"
    );
}

#[tokio::test]
async fn run_due_rotates_only_what_is_due_with_its_types_generator() {
    let store = Arc::new(MemoryStore::new());
    for n in [
        "predis/prod/api/a",
        "predis/prod/api/b",
        "predis/prod/db/password",
    ] {
        put(store.as_ref(), n, "initial").await;
    }
    // `a` was last rotated long ago; `b` was written just now; the db password is a user
    // password due after 90 days (the SOC2 default) and was written just now.
    let rec = record_name(&"predis/prod/api/a".parse().unwrap()).unwrap();
    store
        .put(
            &rec,
            &secret(r#"{"last_rotated_ms":0}"#),
            &PutOptions::default(),
        )
        .await
        .unwrap();
    let schedule: RotationConfig = serde_norway::from_str(
        r#"
types: {api_key: 30d}
secrets:
  "predis/prod/api/*": {type: api_key, rotator: generated}
  "predis/prod/db/*": {type: user_password, rotator: generated}
"#,
    )
    .unwrap();
    let sb = Sealbox::builder().store(store.clone()).build().unwrap();
    let report = sb
        .rotation()
        .schedule(schedule.clone())
        .run_due()
        .await
        .unwrap();
    let rotated: Vec<_> = report.rotated.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(rotated, ["predis/prod/api/a"]);
    assert_eq!(report.skipped.len(), 2);
    assert!(report.failed.is_empty());
    let key = sb.get("predis/prod/api/a").await.unwrap();
    assert!(key.expose_secret().starts_with(b"sbk_"), "an API key");

    let again = sb
        .rotation()
        .schedule(schedule.clone())
        .run_due()
        .await
        .unwrap();
    assert!(again.rotated.is_empty());

    let status = sb.rotation().schedule(schedule).status().await.unwrap();
    assert_eq!(status.len(), 3, "the record secrets are not listed");
    let a = status
        .iter()
        .find(|s| s.status.name.as_str() == "predis/prod/api/a")
        .unwrap();
    assert_eq!(a.kind, "api_key");
    assert!(a.next_due.unwrap() > std::time::SystemTime::now());
    let db = status.iter().find(|s| s.kind == "user_password").unwrap();
    assert_eq!(db.period.as_secs(), 90 * 86_400);
}
