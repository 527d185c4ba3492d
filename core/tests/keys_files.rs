//! The files that hold keys and secrets are trusted only when they are what they claim to be:
//! a regular file (never a symlink), owned by the user sealbox runs as, closed to group and
//! others. And writing them never follows a link planted beside them.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use sealbox::ErrorKind;
use sealbox::keys::{KeyId, KeyProvider, LocalKeyFile, PassphraseCost, PassphraseKey};
use sealbox::store::local::LocalVault;
use sealbox::{Secret, SecretString};

/// The uid of `nobody`; a file chowned to it is owned by someone else.
const OTHER_UID: u32 = 65534;

fn id() -> KeyId {
    KeyId::new("local").unwrap()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn key_at(path: &Path) -> Arc<dyn KeyProvider> {
    Arc::new(LocalKeyFile::open_or_create(id(), path).unwrap())
}

#[test]
fn a_key_file_that_is_a_symlink_is_refused_and_names_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.key");
    LocalKeyFile::open_or_create(id(), &real).unwrap();
    let link = dir.path().join("link.key");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let err = LocalKeyFile::open(id(), &link).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("symlink"), "{err}");
    // open_or_create does not replace the link with a new key either.
    let err = LocalKeyFile::open_or_create(id(), &link).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn a_key_file_at_0644_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    LocalKeyFile::open_or_create(id(), &path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let err = LocalKeyFile::open(id(), &path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("chmod 600"), "{err}");
}

#[test]
fn a_key_file_owned_by_another_user_is_refused() {
    if !is_root() {
        println!("skipped: chown-ing a file to another uid needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    LocalKeyFile::open_or_create(id(), &path).unwrap();
    std::os::unix::fs::chown(&path, Some(OTHER_UID), None).unwrap();
    let err = LocalKeyFile::open(id(), &path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let text = err.to_string();
    assert!(text.contains("uid 65534"), "{text}");
    assert!(text.contains("chown 0 "), "{text}");
    // Back to our own uid, the same file opens.
    std::os::unix::fs::chown(&path, Some(0), None).unwrap();
    LocalKeyFile::open(id(), &path).unwrap();
}

#[tokio::test]
async fn rotation_does_not_write_through_a_symlink_planted_at_the_temporary_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    let file = LocalKeyFile::open_or_create(id(), &path).unwrap();
    // The key file is rewritten through `<name>.tmp.<pid>` beside it.
    let victim = dir.path().join("victim");
    fs::write(&victim, b"not a key file").unwrap();
    let planted = dir
        .path()
        .join(format!("master.key.tmp.{}", std::process::id()));
    std::os::unix::fs::symlink(&victim, &planted).unwrap();

    assert_eq!(file.rotate().await.unwrap().get(), 2);
    assert_eq!(fs::read(&victim).unwrap(), b"not a key file");
    assert!(fs::symlink_metadata(&path).unwrap().file_type().is_file());
    let reopened = LocalKeyFile::open(id(), &path).unwrap();
    assert_eq!(reopened.current_version().await.unwrap().get(), 2);
}

#[tokio::test]
async fn rotation_does_not_create_a_file_through_a_symlink_planted_at_the_lock_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    let file = LocalKeyFile::open_or_create(id(), &path).unwrap();
    let target = dir.path().join("created-through-the-link");
    std::os::unix::fs::symlink(&target, dir.path().join("master.key.lock")).unwrap();

    let err = file.rotate().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(
        !target.exists(),
        "the lock's open followed the planted link"
    );
    let dek = Secret::random(32).unwrap();
    assert_eq!(file.wrap(b"", &dek).await.unwrap().master_version.get(), 1);
}

#[test]
fn a_passphrase_parameters_file_that_is_a_symlink_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("params.json");
    let pass = SecretString::from_string("pass phrase".into()).unwrap();
    PassphraseKey::create_file(id(), &pass, PassphraseCost::default(), &real).unwrap();
    let link = dir.path().join("link.json");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let err = PassphraseKey::open_file(id(), &pass, &link).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("symlink"), "{err}");
}

#[tokio::test]
async fn a_vault_file_that_is_a_symlink_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_at(&dir.path().join("master.key"));
    let real = dir.path().join("real.sqlite3");
    drop(LocalVault::create(&real, key.clone()).await.unwrap());
    let link = dir.path().join("link.sqlite3");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let err = LocalVault::open(&link, key.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("symlink"), "{err}");
    LocalVault::open(&real, key).await.unwrap();
}

#[tokio::test]
async fn a_vault_file_owned_by_another_user_is_refused() {
    if !is_root() {
        println!("skipped: chown-ing a file to another uid needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = key_at(&dir.path().join("master.key"));
    let db = dir.path().join("vault.sqlite3");
    drop(LocalVault::create(&db, key.clone()).await.unwrap());
    let before = fs::read(&db).unwrap();
    std::os::unix::fs::chown(&db, Some(OTHER_UID), None).unwrap();
    let err = LocalVault::open(&db, key.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("uid 65534"), "{err}");
    assert_eq!(fs::read(&db).unwrap(), before, "refused untouched");
    assert_eq!(fs::metadata(&db).unwrap().uid(), OTHER_UID);
    std::os::unix::fs::chown(&db, Some(0), None).unwrap();
    LocalVault::open(&db, key).await.unwrap();
}
