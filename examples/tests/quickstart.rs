//! The quickstart runs on a fresh directory, says what it does at each step, and never prints a
//! value: after the run, every value still in the vault is read back and searched for in the
//! output.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::Arc;

use sealbox::ExposeSecret;
use sealbox::config::LOCAL_MASTER_KEY_ID;
use sealbox::keys::{KeyId, LocalKeyFile};
use sealbox::store::local::LocalVault;
use sealbox::store::{SecretName, SecretStore, VersionId, VersionSelector};

#[tokio::test]
async fn quickstart_runs_and_prints_no_value() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_quickstart"))
        .arg(dir.path())
        .output()
        .expect("run the quickstart");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "quickstart failed:\n{stdout}\n{stderr}"
    );

    for step in 1..=8 {
        assert!(
            stdout.contains(&format!("\n{step}. ")),
            "step {step} missing:\n{stdout}"
        );
    }
    assert_eq!(stdout.matches("matches: true").count(), 5, "{stdout}");
    assert!(!stdout.contains("matches: false"), "{stdout}");
    assert!(
        !stdout.contains(": false"),
        "a check printed false:\n{stdout}"
    );
    assert!(
        stdout.contains("[PREVIOUS]") && stdout.contains("[PENDING]"),
        "{stdout}"
    );
    assert!(stdout.contains("verify: ok"), "{stdout}");
    assert!(stdout.contains("get acme/prod/api/key: "), "{stdout}");

    let vault_path = dir.path().join("vault.db");
    let key_path = dir.path().join("master.key");
    for path in [&vault_path, &key_path] {
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }

    // Every value the run left in the vault, and the password field of each JSON version.
    let key =
        Arc::new(LocalKeyFile::open(KeyId::new(LOCAL_MASTER_KEY_ID).unwrap(), &key_path).unwrap());
    let vault = LocalVault::open(&vault_path, key).await.unwrap();
    let mut values = Vec::new();
    for name in [
        "predis/prod/database/password",
        "predis/prod/api/auth-token",
    ] {
        let name = SecretName::new(name).unwrap();
        for v in vault.describe(&name).await.unwrap().versions {
            let got = vault
                .get(
                    &name,
                    &VersionSelector::Version(VersionId::new(v.version.as_str())),
                )
                .await
                .unwrap();
            values.push(String::from_utf8(got.value.expose_secret().to_vec()).unwrap());
            if let Ok(pw) = got.value.json_field("password") {
                values.push(pw.expose_secret().to_owned());
            }
        }
    }
    assert_eq!(
        values.len(),
        2 * 2 + 1,
        "two JSON versions with passwords and one token"
    );
    for value in &values {
        assert!(value.len() >= 24);
        assert!(!stdout.contains(value.as_str()), "a value was printed");
        assert!(
            !stderr.contains(value.as_str()),
            "a value was printed on stderr"
        );
    }
}

#[test]
fn an_existing_vault_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let vault = dir.path().join("vault.db");
    std::fs::write(&vault, b"not mine").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_quickstart"))
        .arg(dir.path())
        .output()
        .expect("run the quickstart");
    assert!(!out.status.success());
    assert_eq!(std::fs::read(&vault).unwrap(), b"not mine");
}
