//! The local vault: the whole conformance suite, plus the behaviour only it has (persistence
//! across reopen, key rotation, namespace erasure, verify).

use std::sync::Arc;

use sealbox::keys::{KeyId, KeyProvider, LocalKeyFile};
use sealbox::store::local::{LocalVault, LocalVaultOptions};
use sealbox::store::{PutOptions, SecretName, SecretStore, VersionSelector};
use sealbox::{ErrorKind, ExposeSecret, Secret};

fn key(dir: &std::path::Path) -> Arc<dyn KeyProvider> {
    Arc::new(
        LocalKeyFile::open_or_create(KeyId::new("local").unwrap(), dir.join("master.key")).unwrap(),
    )
}

fn secret(v: &[u8]) -> Secret {
    Secret::init_with(v.len(), |d| {
        d.copy_from_slice(v);
        Ok(())
    })
    .unwrap()
}

fn name(s: &str) -> SecretName {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_vault_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let vault = LocalVault::create(dir.path(), key(dir.path()))
        .await
        .unwrap();
    sealbox_conformance::run_all(&vault, vault.capabilities(), "conformance/local")
        .await
        .unwrap();
    let report = vault.verify().await.unwrap();
    assert!(report.is_ok(), "{report:?}");
}

#[tokio::test]
async fn the_conformance_suite_passes_on_a_current_thread_runtime_with_deep_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let options = LocalVaultOptions {
        namespace_depth: 2,
        ..LocalVaultOptions::default()
    };
    let vault = LocalVault::create_with(dir.path().join("v.db"), key(dir.path()), options)
        .await
        .unwrap();
    sealbox_conformance::run_all(&vault, vault.capabilities(), "ct")
        .await
        .unwrap();
}

#[tokio::test]
async fn secrets_survive_reopening_and_master_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let n = name("predis/prod/database/password");
    let v1 = {
        let vault = LocalVault::create(dir.path(), key(dir.path()))
            .await
            .unwrap();
        vault
            .put(&n, &secret(b"pw-1"), &PutOptions::default())
            .await
            .unwrap();
        let v2 = vault
            .put(&n, &secret(b"pw-2"), &PutOptions::default())
            .await
            .unwrap();
        let rotated = vault.rotate_master().await.unwrap();
        assert_eq!(rotated.get(), 2);
        v2.version
    };
    let vault = LocalVault::open(dir.path(), key(dir.path())).await.unwrap();
    let got = vault.get(&n, &VersionSelector::Current).await.unwrap();
    assert_eq!(got.value.expose_secret(), b"pw-2");
    assert_eq!(got.version, v1);
    let report = vault.verify().await.unwrap();
    assert!(report.is_ok() && report.versions_ok == 2, "{report:?}");
    assert!(matches!(
        LocalVault::create(dir.path(), key(dir.path()))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::AlreadyExists
    ));
}

#[tokio::test]
async fn kek_rotation_rewraps_every_dek_of_the_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let vault = LocalVault::create(dir.path(), key(dir.path()))
        .await
        .unwrap();
    for i in 0..5 {
        vault
            .put(
                &name(&format!("tenant-a/s{i}")),
                &secret(b"a"),
                &PutOptions::default(),
            )
            .await
            .unwrap();
    }
    vault
        .put(&name("tenant-b/s"), &secret(b"b"), &PutOptions::default())
        .await
        .unwrap();
    let r = vault.rotate_kek("tenant-a").await.unwrap();
    assert_eq!((r.version.get(), r.deks_rotated), (2, 5));
    let unknown = vault.rotate_kek("tenant-typo").await.unwrap_err();
    assert_eq!(unknown.kind(), ErrorKind::NotFound, "{unknown}");
    let typo = KeyId::new("tenant-typo").unwrap();
    assert!(
        vault.keyring().namespace_keys(&typo).unwrap().is_none(),
        "rotating an unknown namespace created keys"
    );
    let reopened = LocalVault::open(dir.path(), key(dir.path())).await.unwrap();
    for i in 0..5 {
        let got = reopened
            .get(&name(&format!("tenant-a/s{i}")), &VersionSelector::Current)
            .await
            .unwrap();
        assert_eq!(got.value.expose_secret(), b"a");
    }
    assert!(reopened.verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn erasing_a_namespace_removes_it_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let vault = LocalVault::create(dir.path(), key(dir.path()))
        .await
        .unwrap();
    vault
        .put(&name("gone/a"), &secret(b"x"), &PutOptions::default())
        .await
        .unwrap();
    vault
        .put(&name("gone/b"), &secret(b"y"), &PutOptions::default())
        .await
        .unwrap();
    vault
        .put(&name("kept/a"), &secret(b"z"), &PutOptions::default())
        .await
        .unwrap();
    // A second handle (as another process would) caches the namespace's keys first.
    let other = LocalVault::open(dir.path(), key(dir.path())).await.unwrap();
    other
        .get(&name("gone/a"), &VersionSelector::Current)
        .await
        .unwrap();

    assert_eq!(
        vault.erase_namespace("gone").await.unwrap().secrets_erased,
        2
    );
    for v in [&vault, &other] {
        let err = v
            .get(&name("gone/a"), &VersionSelector::Current)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        let got = v
            .get(&name("kept/a"), &VersionSelector::Current)
            .await
            .unwrap();
        assert_eq!(got.value.expose_secret(), b"z");
    }
    let report = vault.verify().await.unwrap();
    assert!(report.is_ok() && report.secrets == 1, "{report:?}");
    // The namespace can be used again, under a fresh KEK.
    vault
        .put(&name("gone/a"), &secret(b"new"), &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(
        vault
            .get(&name("gone/a"), &VersionSelector::Current)
            .await
            .unwrap()
            .value
            .expose_secret(),
        b"new"
    );
    assert_eq!(
        vault
            .erase_namespace("never-used")
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn opening_a_missing_vault_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let err = LocalVault::open(dir.path().join("nope.db"), key(dir.path()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn vault_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let vault = LocalVault::create(dir.path().join("sub/dir"), key(dir.path()))
        .await
        .unwrap();
    vault
        .put(&name("a/b"), &secret(b"x"), &PutOptions::default())
        .await
        .unwrap();
    let mode = std::fs::metadata(vault.path())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let parent = std::fs::metadata(dir.path().join("sub"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(parent, 0o700);
}

#[tokio::test]
async fn bulk_import_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let vault = LocalVault::create(dir.path(), key(dir.path()))
        .await
        .unwrap();
    let items: Vec<_> = (0..50)
        .map(|i| {
            (
                name(&format!("bulk/s{i}")),
                secret(format!("v{i}").as_bytes()),
            )
        })
        .collect();
    assert_eq!(vault.import(items).await.unwrap(), 50);
    let got = vault
        .get(&name("bulk/s7"), &VersionSelector::Current)
        .await
        .unwrap();
    assert_eq!(got.value.expose_secret(), b"v7");
    // A new version after import continues the numbering.
    let next = vault
        .put(&name("bulk/s7"), &secret(b"again"), &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(next.version.as_str(), "2");

    let clash = vec![
        (name("bulk/new"), secret(b"n")),
        (name("bulk/s1"), secret(b"dup")),
    ];
    assert_eq!(
        vault.import(clash).await.unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    let err = vault
        .get(&name("bulk/new"), &VersionSelector::Current)
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::NotFound,
        "a failed import wrote nothing"
    );
    assert!(vault.verify().await.unwrap().is_ok());
}

/// Rows in the vault's `secrets` and `versions` tables, read straight from the file.
fn stored_rows(vault: &LocalVault) -> (i64, i64) {
    let conn = rusqlite::Connection::open(vault.path()).unwrap();
    let count = |table: &str| {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    (count("secrets"), count("versions"))
}

#[tokio::test]
async fn deleted_secrets_are_purged_once_their_recovery_window_passes() {
    use sealbox::store::DeleteOptions;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let vault = LocalVault::create(dir.path(), key(dir.path()))
        .await
        .unwrap();
    let (short, long, kept) = (name("app/short"), name("app/long"), name("app/kept"));
    for n in [&short, &long, &kept] {
        vault
            .put(n, &secret(b"value"), &PutOptions::default())
            .await
            .unwrap();
    }
    let window = |ms| DeleteOptions {
        recovery_window: Duration::from_millis(ms),
        ..DeleteOptions::default()
    };
    vault.delete(&short, &window(100)).await.unwrap();
    vault.delete(&long, &window(3_600_000)).await.unwrap();
    assert_eq!(
        vault.purge_deleted().await.unwrap(),
        0,
        "nothing is due yet"
    );
    assert_eq!(stored_rows(&vault), (3, 3));
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(vault.purge_deleted().await.unwrap(), 1);
    assert_eq!(stored_rows(&vault), (2, 2), "the rows themselves are gone");
    assert_eq!(
        vault.restore(&short).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // The other deleted secret is still within its window, and the live one untouched.
    vault.restore(&long).await.unwrap();
    let got = vault.get(&kept, &VersionSelector::Current).await.unwrap();
    assert_eq!(got.value.expose_secret(), b"value");
}

#[tokio::test]
async fn opening_a_vault_purges_what_passed_its_recovery_window_while_it_was_closed() {
    use sealbox::store::DeleteOptions;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let n = name("app/gone");
    {
        let vault = LocalVault::create(dir.path(), key(dir.path()))
            .await
            .unwrap();
        vault
            .put(&n, &secret(b"value"), &PutOptions::default())
            .await
            .unwrap();
        let options = DeleteOptions {
            recovery_window: Duration::from_millis(50),
            ..DeleteOptions::default()
        };
        vault.delete(&n, &options).await.unwrap();
        assert_eq!(stored_rows(&vault), (1, 1));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let vault = LocalVault::open(dir.path(), key(dir.path())).await.unwrap();
    assert_eq!(stored_rows(&vault), (0, 0));
}

/// issue 24: a missing version was reported as `has no version Version(VersionId("abc"))`.
/// Messages name versions and stages as text, in the local vault and the memory store alike.
#[tokio::test]
async fn a_missing_version_is_named_as_text_not_debug() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalVault::create(dir.path(), key(dir.path()))
        .await
        .unwrap();
    let memory = sealbox::store::memory::MemoryStore::new();
    let stores: [(&str, &dyn SecretStore); 2] = [("local", &local), ("memory", &memory)];
    for (store, s) in stores {
        let n = name("app/db");
        s.put(&n, &secret(b"v1"), &PutOptions::default())
            .await
            .unwrap();
        let cases = [
            (
                VersionSelector::Version(sealbox::store::VersionId::new("abc")),
                "secret app/db has no version abc",
            ),
            (
                VersionSelector::Version(sealbox::store::VersionId::new("99")),
                "secret app/db has no version 99",
            ),
            (
                VersionSelector::Stage("PENDING".parse().unwrap()),
                "secret app/db has no version staged PENDING",
            ),
        ];
        for (selector, expected) in cases {
            let err = s.get(&n, &selector).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::NotFound, "{store}: {err}");
            let message = err.to_string();
            assert!(message.contains(expected), "{store}: {message}");
            for debug in ["VersionId(", "Version(", "Stage(", "Pending"] {
                assert!(
                    !message.contains(debug),
                    "{store}: Debug text in: {message}"
                );
            }
        }
    }
}
