//! Interop with Microsoft's official Python clients (`azure-keyvault-secrets` with
//! `azure-identity`'s client-secret credential): Python writes versions that sealbox reads;
//! sealbox writes versions, stages and binary values that Python reads. Both against the same
//! local Key Vault, so two official SDKs must agree with it.
//!
//! The Python comes from `SEALBOX_TEST_PYTHON` (scripts/test.sh points it at its venv, which
//! installs scripts/requirements-test.txt), else `target/test-venv`. Without it the tests say
//! why they skip, unless `CI` is set: CI must never skip.

mod support;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use sealbox::store::{PutOptions, SecretStore, Stage, VersionId, VersionSelector};
use sealbox::{ErrorKind, ExposeSecret};
use serde_json::{Value, json};
use support::{Local, name, secret};

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
            .args(["-c", "import azure.keyvault.secrets, azure.identity"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(p);
        }
    }
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    assert!(
        !ci,
        "{test}: no Python with azure-keyvault-secrets (set SEALBOX_TEST_PYTHON or run \
         scripts/test.sh); CI must not skip it"
    );
    eprintln!("SKIPPED {test}: no Python with azure-keyvault-secrets; set SEALBOX_TEST_PYTHON");
    None
}

/// Runs the script; the connection settings (with the client secret) go in on stdin, never
/// on the command line.
fn run(python: &PathBuf, local: &Local, action: &str, prefix: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop_python.py");
    let ca_file = local.dir.path().join("ca.pem");
    let input = json!({
        "vault_url": local.server.vault_url(),
        "authority_host": local.server.authority_host(),
        "tenant": local.server.tenant(),
        "client_id": support::CLIENT_ID,
        "client_secret": support::CLIENT_SECRET,
        "ca_file": ca_file,
        "prefix": prefix,
    });
    let mut child = Command::new(python)
        .args([script, action])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python {action} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the script prints JSON")
}

fn id(v: &Value) -> VersionId {
    VersionId::new(v.as_str().expect("a version id"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_the_python_client_wrote_read_correctly_in_sealbox() {
    let test = "versions_the_python_client_wrote_read_correctly_in_sealbox";
    let Some(py) = python(test) else { return };
    let local = support::start().await;
    let prefix = "interop/py";
    let written = run(&py, &local, "write", prefix);
    let store = local.store(prefix).await;
    let db = name("database");

    // No sealbox stage anywhere: the latest version is CURRENT.
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
    let old = store
        .get(
            &db,
            &VersionSelector::Version(id(&written["database"]["v1"])),
        )
        .await
        .unwrap();
    assert_eq!(
        old.value.json_field("password").unwrap().expose_secret(),
        "py-old"
    );
    let meta = store.describe(&db).await.unwrap();
    assert_eq!(meta.versions.len(), 2);
    assert_eq!(meta.tags.get("team").map(String::as_str), Some("platform"));

    let blob = store
        .get(&name("blob"), &VersionSelector::Current)
        .await
        .unwrap();
    assert_eq!(blob.value.expose_secret(), &[0, 1, 2, 254, 255]);
    assert_eq!(blob.version, id(&written["blob"]));

    let err = store
        .get(&name("blob/off"), &VersionSelector::Current)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.message().contains("disabled"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_stages_and_binary_values_sealbox_wrote_read_correctly_in_python() {
    let test = "versions_stages_and_binary_values_sealbox_wrote_read_correctly_in_python";
    let Some(py) = python(test) else { return };
    let local = support::start().await;
    let prefix = "interop/rs";
    let store = local.store(prefix).await;
    let token = name("token");
    store
        .put(&token, &secret(b"rs-1"), &PutOptions::default())
        .await
        .unwrap();
    store
        .put(&token, &secret(b"rs-2"), &PutOptions::default())
        .await
        .unwrap();
    let pending = PutOptions {
        stages: vec![Stage::Pending],
        ..PutOptions::default()
    };
    store.put(&token, &secret(b"rs-3"), &pending).await.unwrap();
    store
        .put(&name("blob"), &secret(&[0, 255, 1]), &PutOptions::default())
        .await
        .unwrap();

    let seen = run(&py, &local, "read", prefix);
    assert_eq!(seen.get("bad_name_tag"), None, "{seen}");
    // Python's "latest" is the PENDING version; the tags say which one is CURRENT.
    assert_eq!(seen["latest"], "rs-3", "{seen}");
    assert_eq!(seen["by_stage"]["CURRENT"], "rs-2", "{seen}");
    assert_eq!(seen["by_stage"]["PREVIOUS"], "rs-1", "{seen}");
    assert_eq!(seen["by_stage"]["PENDING"], "rs-3", "{seen}");
    assert_eq!(
        seen["blob_content_type"],
        sealbox_azure::names::CONTENT_TYPE_BASE64
    );
    assert_eq!(seen["blob_hex"], "00ff01");
    let names: Vec<&str> = seen["names"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(names, vec!["interop--rs--blob", "interop--rs--token"]);
}
