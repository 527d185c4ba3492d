//! Interop with `hvac`, the Python Vault client everyone uses: hvac writes versions (with
//! check-and-set) and stages them the way sealbox does, and sealbox reads them; sealbox writes
//! versions and stages that hvac reads. Both on the same real Vault server.
//!
//! The Python comes from `SEALBOX_TEST_PYTHON` (scripts/test.sh points it at its venv, which
//! installs scripts/requirements-test.txt), else `target/test-venv`. Without it the tests say
//! why they skip, unless `CI` is set: CI must never skip.

mod support;

use std::path::PathBuf;
use std::process::Command;

use sealbox::store::{ListOptions, PutOptions, SecretStore, Stage, VersionId, VersionSelector};
use sealbox::{ErrorKind, ExposeSecret};
use serde_json::Value;
use support::{ROOT_TOKEN, VaultServer, name, secret};

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
            .args(["-c", "import hvac"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(p);
        }
    }
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    assert!(
        !ci,
        "{test}: no Python with hvac (set SEALBOX_TEST_PYTHON or run scripts/test.sh); CI must \
         not skip it"
    );
    eprintln!("SKIPPED {test}: no Python with hvac; set SEALBOX_TEST_PYTHON");
    None
}

fn run(python: &PathBuf, server: &VaultServer, action: &str, prefix: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop_python.py");
    let out = Command::new(python)
        .args([script, &server.address(), ROOT_TOKEN, action, prefix])
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
    VersionId::from(v.as_u64().expect("a version number"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_hvac_wrote_and_staged_read_correctly_in_sealbox() {
    let test = "versions_hvac_wrote_and_staged_read_correctly_in_sealbox";
    let Some(py) = python(test) else { return };
    let Some(server) = VaultServer::start(test) else {
        return;
    };
    let prefix = "interop/hvac-writes";
    let written = run(&py, &server, "write", prefix);
    assert_eq!(written["stale"], "check-and-set", "{written}");
    let store = server.store(prefix).await;
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

    // No stage keys at all: the latest version is CURRENT; text and binary by the convention.
    let token = store
        .get(&name("token"), &VersionSelector::Current)
        .await
        .unwrap();
    assert_eq!(token.value.expose_secret(), b"tok-123");
    assert_eq!(token.stages, vec![Stage::Current]);
    let blob = store
        .get(&name("blob"), &VersionSelector::Current)
        .await
        .unwrap();
    assert_eq!(blob.value.expose_secret(), &[0, 1, 254, 255]);
    let missing = store
        .get(&db, &VersionSelector::Version(VersionId::new("9")))
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    let listed = store.list(&ListOptions::default()).await.unwrap();
    let names: Vec<&str> = listed.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["blob", "database", "token"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_sealbox_wrote_read_correctly_in_hvac() {
    let test = "versions_sealbox_wrote_read_correctly_in_hvac";
    let Some(py) = python(test) else { return };
    let Some(server) = VaultServer::start(test) else {
        return;
    };
    let prefix = "interop/sealbox-writes";
    let store = server.store(prefix).await;
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

    let seen = run(&py, &server, "read", prefix);
    let check = |stage: &str, v: &VersionId, value: &str| {
        assert_eq!(
            seen[stage]["version"].to_string(),
            v.as_str(),
            "{stage}: {seen}"
        );
        assert_eq!(seen[stage]["value"].as_str(), Some(value), "{stage}");
    };
    check("previous", &v1.version, "first");
    check("current", &v2.version, "second");
    check("pending", &v3.version, "third");
    // hvac's "latest" is the PENDING version: readers that ignore stages see it.
    assert_eq!(seen["current_version"], 3);
    assert_eq!(seen["binary"], serde_json::json!([255, 0, 128]));
    assert_eq!(seen["custom"]["team"], "platform");
    assert_eq!(seen["custom"]["sealbox-description"], "written by sealbox");
    assert_eq!(
        seen["keys"],
        serde_json::json!(["written", "written-binary"])
    );
}
