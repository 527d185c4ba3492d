//! Backups and rollback detection of the local vault.
//!
//! The threats: a backup that other users can read, that overwrites a file or writes through a
//! planted link, or that does not open on its own; and a vault file replaced by an older copy
//! of itself (an old backup, last month's snapshot) which then serves old credentials, undoes
//! deletes and revocations, and opens as if nothing happened.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use sealbox::keys::{EnvKey, KeyId, LocalKeyFile};
use sealbox::store::local::{LocalVault, LocalVaultOptions, PUBLISH_EVERY};
use sealbox::store::{PutOptions, SecretName, SecretStore, VersionSelector};
use sealbox::{ErrorKind, ExposeSecret, Secret};

fn key(dir: &Path) -> Arc<LocalKeyFile> {
    Arc::new(
        LocalKeyFile::open_or_create(KeyId::new("local").unwrap(), dir.join("master.key")).unwrap(),
    )
}

fn db(dir: &Path) -> PathBuf {
    dir.join("vault.sqlite3")
}

fn name(s: &str) -> SecretName {
    s.parse().unwrap()
}

async fn put(vault: &LocalVault, n: &str, value: &str) {
    let v = secret(value.as_bytes());
    vault
        .put(&name(n), &v, &PutOptions::default())
        .await
        .unwrap();
}

async fn read(vault: &LocalVault, n: &str) -> String {
    let got = vault
        .get(&name(n), &VersionSelector::Current)
        .await
        .unwrap();
    String::from_utf8(got.value.expose_secret().to_vec()).unwrap()
}

fn secret(b: &[u8]) -> Secret {
    Secret::init_with(b.len(), |d| {
        d.copy_from_slice(b);
        Ok(())
    })
    .unwrap()
}

fn reading() -> LocalVaultOptions {
    LocalVaultOptions {
        allow_rollback: true,
        ..LocalVaultOptions::default()
    }
}

/// Copies the closed vault's file (its WAL is checkpointed away on close) to `to`.
fn copy_file(dir: &Path, to: &Path) {
    for suffix in ["-wal", "-shm"] {
        let mut p = db(dir).into_os_string();
        p.push(suffix);
        assert!(!Path::new(&p).exists(), "the vault is closed: no {suffix}");
    }
    std::fs::copy(db(dir), to).unwrap();
}

#[tokio::test]
async fn a_backup_is_owner_only_opens_alone_and_never_replaces_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let vault = LocalVault::create(db(dir.path()), key(dir.path()))
        .await
        .unwrap();
    put(&vault, "app/db", "first").await;
    let file = dir.path().join("backup.sqlite3");
    let info = vault.backup_to(&file).await.unwrap();
    assert_eq!(info.path, file);
    assert!(info.bytes > 0);
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // An existing file, or a link (even dangling), is never written.
    let again = vault.backup_to(&file).await.unwrap_err();
    assert_eq!(again.kind(), ErrorKind::AlreadyExists, "{again}");
    let link = dir.path().join("link");
    let target = dir.path().join("target");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert!(vault.backup_to(&link).await.is_err());
    assert!(!target.exists(), "the backup went through the link");

    // More writes than one publication interval: the backup is now behind the key file.
    for i in 0..PUBLISH_EVERY + 3 {
        put(&vault, "app/db", &format!("later {i}")).await;
    }
    drop(vault);
    let alone = LocalVault::open_with(&file, key(dir.path()), reading())
        .await
        .unwrap();
    assert_eq!(read(&alone, "app/db").await, "first");
    let report = alone.verify().await.unwrap();
    assert!(report.is_backup && report.rollback_detection, "{report:?}");
    assert_eq!(report.writes_behind, PUBLISH_EVERY + 3, "{report:?}");
    assert!(
        report.is_ok(),
        "a backup behind its vault verifies: {report:?}"
    );
    // A handle on an older copy reads, but never writes (that would hide the rollback).
    let v = secret(b"x");
    let err = alone
        .put(&name("app/db"), &v, &PutOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
}

#[tokio::test]
async fn a_vault_replaced_by_an_older_copy_is_refused_until_restored_on_purpose() {
    let dir = tempfile::tempdir().unwrap();
    let vault = LocalVault::create(db(dir.path()), key(dir.path()))
        .await
        .unwrap();
    put(&vault, "app/db", "leaked-old-password").await;
    drop(vault);
    let copy = dir.path().join("copy.sqlite3");
    copy_file(dir.path(), &copy);

    let writes = PUBLISH_EVERY + 8;
    let vault = LocalVault::open(db(dir.path()), key(dir.path()))
        .await
        .unwrap();
    for i in 0..writes {
        put(&vault, "app/db", &format!("rotated {i}")).await;
    }
    drop(vault);

    // The attacker puts the old copy back.
    std::fs::copy(&copy, db(dir.path())).unwrap();
    let err = LocalVault::open(db(dir.path()), key(dir.path()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(
        err.message().contains(&format!("{writes} writes behind")),
        "{err}"
    );
    assert!(!err.message().contains("leaked-old-password"));
    // verify (on a handle that may read an older copy) reports how far back it is, and fails.
    let behind = LocalVault::open_with(db(dir.path()), key(dir.path()), reading())
        .await
        .unwrap();
    let report = behind.verify().await.unwrap();
    assert_eq!(report.writes_behind, writes, "{report:?}");
    assert!(!report.is_backup);
    assert!(
        !report.is_ok(),
        "an older copy in the vault's place fails verify"
    );
    drop(behind);

    // Restoring that copy on purpose resets the counter: the vault opens and takes writes.
    let restored = LocalVault::restore_backup(
        db(dir.path()),
        &copy,
        key(dir.path()),
        LocalVaultOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(restored.writes_discarded, writes, "{restored:?}");
    let vault = LocalVault::open(db(dir.path()), key(dir.path()))
        .await
        .unwrap();
    assert_eq!(read(&vault, "app/db").await, "leaked-old-password");
    put(&vault, "app/db", "after restore").await;
    let report = vault.verify().await.unwrap();
    assert!(report.is_ok() && report.writes_behind == 0, "{report:?}");
    drop(vault);
    assert_eq!(
        read(
            &LocalVault::open(db(dir.path()), key(dir.path()))
                .await
                .unwrap(),
            "app/db"
        )
        .await,
        "after restore"
    );
}

/// A process that keeps the vault open records the counter every `PUBLISH_EVERY` writes, so
/// a copy put in place under it is detected by the next open even before it closes.
#[tokio::test]
async fn a_running_writer_records_the_counter_every_interval() {
    let dir = tempfile::tempdir().unwrap();
    let vault = LocalVault::create(db(dir.path()), key(dir.path()))
        .await
        .unwrap();
    put(&vault, "app/db", "v0").await;
    let copy = dir.path().join("copy.sqlite3");
    vault.backup_to(&copy).await.unwrap();
    for i in 0..PUBLISH_EVERY {
        put(&vault, "app/db", &format!("v{}", i + 1)).await;
    }
    // Still open: published after at most PUBLISH_EVERY writes.
    let file = key(dir.path());
    let report = LocalVault::open_with(&copy, file, reading())
        .await
        .unwrap()
        .verify()
        .await
        .unwrap();
    assert!(report.writes_behind >= 1, "{report:?}");
    drop(vault);
}

/// Providers that keep nothing outside the vault cannot detect a rollback, and say so.
#[tokio::test]
async fn without_a_key_file_verify_reports_no_rollback_detection() {
    let dir = tempfile::tempdir().unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let env = Arc::new(EnvKey::from_base64(KeyId::new("env").unwrap(), &b64, "TEST").unwrap());
    let vault = LocalVault::create(db(dir.path()), env).await.unwrap();
    put(&vault, "app/db", "x").await;
    let report = vault.verify().await.unwrap();
    assert!(!report.rollback_detection, "{report:?}");
    assert!(report.is_ok());
}

/// The key file keeps one counter per store id: raised, never lowered, except by a reset (a
/// deliberate restore); a key file that never held one keeps its older format.
#[test]
fn the_key_file_keeps_store_counters_that_only_a_reset_lowers() {
    use sealbox::keys::KeyProvider;
    let dir = tempfile::tempdir().unwrap();
    let file = key(dir.path());
    let path = dir.path().join("master.key");
    assert_eq!(std::fs::read(&path).unwrap()[4], 1, "no counter: format 1");
    assert_eq!(file.store_counter("store-a").unwrap(), None);
    assert!(file.record_store_counter("store-a", 10, false).unwrap());
    assert!(file.record_store_counter("store-b", 3, false).unwrap());
    assert!(file.record_store_counter("store-a", 7, false).unwrap());
    assert_eq!(
        std::fs::read(&path).unwrap()[4],
        3,
        "with counters: format 3"
    );
    // Another process (a fresh open) reads what was recorded.
    let again = key(dir.path());
    assert_eq!(
        again.store_counter("store-a").unwrap(),
        Some(10),
        "never lowered"
    );
    assert_eq!(again.store_counter("store-b").unwrap(), Some(3));
    again.record_store_counter("store-a", 4, true).unwrap();
    assert_eq!(
        file.store_counter("store-a").unwrap(),
        Some(4),
        "a reset lowers"
    );
    // A flipped counter byte fails the file's checksum.
    let mut raw = std::fs::read(&path).unwrap();
    let at = raw.len() - 33;
    raw[at] ^= 1;
    std::fs::write(&path, &raw).unwrap();
    let err = file.store_counter("store-a").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
}
