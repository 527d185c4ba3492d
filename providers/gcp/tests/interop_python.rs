//! Interop with Google's official Python client (`google-cloud-secret-manager`, REST transport):
//! Python writes and stages versions that sealbox reads; sealbox writes versions that Python
//! reads. Both against the same local Secret Manager, so two official clients must agree with
//! it.
//!
//! The Python comes from `SEALBOX_TEST_PYTHON` (scripts/test.sh points it at its venv, which
//! installs scripts/requirements-test.txt), else `target/test-venv`. Without it the tests say
//! why they skip, unless `CI` is set: CI must never skip.

mod support;

use std::path::PathBuf;
use std::process::Command;

use sealbox::store::{PutOptions, SecretStore, Stage, VersionId, VersionSelector};
use sealbox::{ErrorKind, ExposeSecret};
use serde_json::Value;
use support::{LocalSecretManager, PROJECT, name, secret};

fn python(test: &str) -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("SEALBOX_TEST_PYTHON").map(PathBuf::from),
        Some(PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../target/test-venv/bin/python"
        ))),
    ];
    for p in candidates.into_iter().flatten() {
        let ok = Command::new(&p)
            .args(["-c", "import google.cloud.secretmanager, google_crc32c"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(p);
        }
    }
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    assert!(
        !ci,
        "{test}: no Python with google-cloud-secret-manager (set SEALBOX_TEST_PYTHON or run \
         scripts/test.sh); CI must not skip it"
    );
    eprintln!(
        "SKIPPED {test}: no Python with google-cloud-secret-manager; set SEALBOX_TEST_PYTHON"
    );
    None
}

fn run(python: &PathBuf, endpoint: &str, action: &str, id_prefix: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop_python.py");
    let out = Command::new(python)
        .args([script, endpoint, PROJECT, action, id_prefix])
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "python {action} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the script prints JSON")
}

fn id(v: &Value) -> VersionId {
    VersionId::new(v.as_str().expect("version number"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_the_python_client_wrote_and_staged_read_correctly_in_sealbox() {
    let test = "versions_the_python_client_wrote_and_staged_read_correctly_in_sealbox";
    let Some(py) = python(test) else { return };
    let server = LocalSecretManager::start().await;
    let prefix = "interop/py-writes";
    let written = run(
        &py,
        &server.endpoint(),
        "write",
        &sealbox_gcp::names::secret_id(prefix).unwrap(),
    );
    assert_eq!(written["stale_etag"], "FAILED_PRECONDITION", "{written}");
    let store = support::store(&server, prefix).await;
    let db = name("database");

    let current = store.get(&db, &VersionSelector::Current).await.unwrap();
    assert_eq!(current.version, id(&written["database"]["v2"]));
    assert_eq!(current.stages, vec![Stage::Current]);
    assert_eq!(
        current
            .value
            .json_field("password")
            .unwrap()
            .expose_secret(),
        "py-new"
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
        "py-old"
    );
    let meta = store.describe(&db).await.unwrap();
    assert_eq!(meta.version_with_stage(&Stage::Pending), None);
    assert_eq!(meta.tags.get("team").map(String::as_str), Some("platform"));

    // No aliases at all: the latest version is CURRENT; a disabled version is not readable.
    let blob = name("blob");
    let latest_enabled = store
        .get(&blob, &VersionSelector::Version(id(&written["blob"]["v"])))
        .await
        .unwrap();
    assert_eq!(latest_enabled.value.expose_secret(), &[0, 1, 2, 254, 255]);
    let disabled = store
        .get(
            &blob,
            &VersionSelector::Version(id(&written["blob"]["disabled"])),
        )
        .await
        .unwrap_err();
    assert_eq!(disabled.kind(), ErrorKind::NotFound);
    assert!(disabled.message().contains("disabled"), "{disabled}");
    assert!(disabled.provider_request_id().is_some(), "{disabled:?}");
    let listed = store
        .list(&sealbox::store::ListOptions::default())
        .await
        .unwrap();
    let names: Vec<&str> = listed.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["blob", "database"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_sealbox_wrote_read_correctly_in_the_python_client() {
    let test = "versions_sealbox_wrote_read_correctly_in_the_python_client";
    let Some(py) = python(test) else { return };
    let server = LocalSecretManager::start().await;
    let prefix = "interop/sealbox-writes";
    let store = support::store(&server, prefix).await;
    let n = name("written");
    let described = PutOptions {
        description: Some("written by sealbox".into()),
        tags: [("team".to_owned(), "platform".to_owned())].into(),
        ..PutOptions::default()
    };
    let v1 = store.put(&n, &secret(b"first"), &described).await.unwrap();
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
            &name("written-binary"),
            &secret(&[255, 0, 128]),
            &PutOptions::default(),
        )
        .await
        .unwrap();

    let seen = run(
        &py,
        &server.endpoint(),
        "read",
        &sealbox_gcp::names::secret_id(prefix).unwrap(),
    );
    let check = |alias: &str, v: &VersionId, value: &str| {
        assert_eq!(
            seen[alias]["version"].as_str(),
            Some(v.as_str()),
            "{alias}: {seen}"
        );
        assert_eq!(seen[alias]["value"].as_str(), Some(value), "{alias}");
    };
    check("previous", &v1.version, "first");
    check("current", &v2.version, "second");
    check("pending", &v3.version, "third");
    assert_eq!(seen["binary"], serde_json::json!([255, 0, 128]));
    assert_eq!(seen["labels"]["team"], "platform");
    assert_eq!(
        seen["annotations"]["sealbox-description"],
        "written by sealbox"
    );
    assert_eq!(seen["replication"], "automatic");
    assert_eq!(seen["versions"], serde_json::json!(["3", "2", "1"]));
    let id_prefix = sealbox_gcp::names::secret_id(prefix).unwrap();
    assert_eq!(
        seen["ids"],
        serde_json::json!([
            format!("{id_prefix}__written"),
            format!("{id_prefix}__written-binary")
        ])
    );
}
