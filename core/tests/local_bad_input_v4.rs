//! Bad input to a schema-4 vault (issue 27): a flipped byte in any table, a truncated file, a
//! WAL from another vault, a vault from a newer schema, a key file from another vault. Each is
//! its own typed error naming the problem; never a panic, never a wrong value.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sealbox::keys::{KeyId, KeyProvider, LocalKeyFile};
use sealbox::store::local::LocalVault;
use sealbox::store::{PutOptions, SecretName, SecretStore, VersionSelector};
use sealbox::{ErrorKind, ExposeSecret, Secret};

fn secret(v: &str) -> Secret {
    Secret::init_with(v.len(), |d| {
        d.copy_from_slice(v.as_bytes());
        Ok(())
    })
    .unwrap()
}

fn name(s: &str) -> SecretName {
    s.parse().unwrap()
}

fn key_at(path: &Path) -> Arc<dyn KeyProvider> {
    Arc::new(LocalKeyFile::open_or_create(KeyId::new("local").unwrap(), path).unwrap())
}

/// A vault directory with its own key file.
struct Vault {
    dir: PathBuf,
}

impl Vault {
    async fn new(root: &Path, tag: &str, secrets: usize) -> Vault {
        let dir = root.join(tag);
        fs::create_dir_all(&dir).unwrap();
        let v = Vault { dir };
        let vault = LocalVault::create(v.db(), v.key()).await.unwrap();
        for i in 0..secrets {
            vault
                .put(
                    &name(&format!("app/{tag}-{i}")),
                    &secret(&format!("{tag} value {i}")),
                    &PutOptions::default(),
                )
                .await
                .unwrap();
        }
        drop(vault);
        v
    }

    fn db(&self) -> PathBuf {
        self.dir.join("vault.sqlite3")
    }

    fn wal(&self) -> PathBuf {
        self.dir.join("vault.sqlite3-wal")
    }

    fn key_path(&self) -> PathBuf {
        self.dir.join("master.key")
    }

    fn key(&self) -> Arc<dyn KeyProvider> {
        key_at(&self.key_path())
    }

    async fn open(&self) -> sealbox::Result<LocalVault> {
        LocalVault::open(self.db(), self.key()).await
    }
}

#[tokio::test]
async fn a_wal_from_another_vault_is_refused_naming_the_journal() {
    let root = tempfile::tempdir().unwrap();
    let a = Vault::new(root.path(), "a", 3).await;
    let b = Vault::new(root.path(), "b", 0).await;
    // Keep b's WAL full of frames: copy it while a handle has written and is still open.
    let vb = b.open().await.unwrap();
    for i in 0..20 {
        vb.put(
            &name(&format!("app/b-{i}")),
            &secret("b value"),
            &PutOptions::default(),
        )
        .await
        .unwrap();
    }
    assert!(fs::metadata(b.wal()).unwrap().len() > 0);
    let a_file = fs::read(a.db()).unwrap();
    fs::copy(b.wal(), a.wal()).unwrap();
    drop(vb);
    let err = a.open().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(err.message().contains("journal"), "{err}");
    assert!(err.message().contains("belongs to another vault"), "{err}");
    // Nothing of b's journal reached a's file (no checkpoint on the way out).
    assert_eq!(fs::read(a.db()).unwrap(), a_file);
    fs::remove_file(a.wal()).unwrap();
    let va = a.open().await.unwrap();
    let got = va
        .get(&name("app/a-1"), &VersionSelector::Current)
        .await
        .unwrap();
    assert_eq!(got.value.expose_secret(), b"a value 1");
    assert!(va.verify().await.unwrap().is_ok());
}

/// A closed vault with two versions of `app/two` (the first only in `versions`, the second
/// also copied in the secret's row), a described secret and two namespaces.
async fn content_vault(root: &Path) -> Vault {
    let v = Vault::new(root, "c", 0).await;
    let vault = v.open().await.unwrap();
    let put = |n: &'static str, val: &'static str, description: Option<&str>| {
        let vault = vault.clone();
        let options = PutOptions {
            description: description.map(str::to_owned),
            ..PutOptions::default()
        };
        async move { vault.put(&name(n), &secret(val), &options).await.unwrap() }
    };
    put("app/two", "first value of two", None).await;
    put("app/two", "second value of two", None).await;
    put(
        "app/described",
        "described value",
        Some("a description to flip"),
    )
    .await;
    put("ops/other", "other value", None).await;
    drop(vault);
    assert!(!v.wal().exists());
    v
}

const EXPECTED: &[(&str, i64, &str)] = &[
    ("app/two", 1, "first value of two"),
    ("app/two", 2, "second value of two"),
    ("app/described", 1, "described value"),
    ("ops/other", 1, "other value"),
];

/// Opens the vault and reads every version and `verify`: returns the errors seen. Every value
/// that reads is the one written (never a wrong value).
async fn read_everything(v: &Vault) -> Vec<sealbox::Error> {
    let vault = match v.open().await {
        Ok(vault) => vault,
        Err(e) => return vec![e],
    };
    let mut errors = Vec::new();
    for (n, version, value) in EXPECTED {
        let selector = VersionSelector::Version(sealbox::store::VersionId::from(*version));
        match vault.get(&name(n), &selector).await {
            Ok(got) => assert_eq!(
                got.value.expose_secret(),
                value.as_bytes(),
                "{n} v{version}"
            ),
            Err(e) => errors.push(e),
        }
    }
    match vault.get(&name("app/two"), &VersionSelector::Current).await {
        Ok(got) => assert_eq!(got.value.expose_secret(), b"second value of two"),
        Err(e) => errors.push(e),
    }
    if let Err(e) = vault.describe(&name("app/described")).await {
        errors.push(e);
    }
    match vault.verify().await {
        Ok(report) => {
            for f in report.failures {
                errors.push(sealbox::Error::new(f.kind, f.message));
            }
        }
        Err(e) => errors.push(e),
    }
    errors
}

/// Flips the middle byte of every place `needle` is stored in the file.
fn flip(db: &Path, needle: &[u8]) {
    let mut bytes = fs::read(db).unwrap();
    let mut found = 0;
    let mut from = 0;
    while let Some(at) = bytes[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
    {
        bytes[at + needle.len() / 2] ^= 0x04;
        found += 1;
        from = at + needle.len();
    }
    assert!(found > 0, "the value is stored contiguously");
    fs::write(db, bytes).unwrap();
}

fn stored<T: rusqlite::types::FromSql>(db: &Path, sql: &str) -> T {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn a_byte_flipped_in_any_table_is_an_integrity_error_never_a_wrong_value() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        (
            "meta",
            "SELECT CAST(value AS BLOB) FROM meta WHERE key = 'mac_key'",
            None,
        ),
        (
            "meta",
            "SELECT CAST(value AS BLOB) FROM meta WHERE key = 'secrets_set'",
            None,
        ),
        (
            "secrets",
            "SELECT CAST(description AS BLOB) FROM secrets WHERE name = 'app/described'",
            Some("app/described"),
        ),
        (
            "secrets",
            "SELECT cur_envelope FROM secrets WHERE name = 'app/two'",
            Some("app/two"),
        ),
        (
            "secrets",
            "SELECT mac FROM secrets WHERE name = 'ops/other'",
            Some("ops/other"),
        ),
        (
            "versions",
            "SELECT v.envelope FROM versions v JOIN secrets s ON s.id = v.secret_id WHERE s.name = 'app/two' AND v.version = 1",
            Some("app/two"),
        ),
        (
            "versions",
            // A current version's row has no MAC of its own (its secret's record vouches for
            // it): the MAC to flip is that of a version that is not current.
            "SELECT v.mac FROM versions v JOIN secrets s ON s.id = v.secret_id WHERE s.name = 'app/two' AND v.version = 1",
            Some("app/two"),
        ),
        (
            "key_namespaces",
            "SELECT CAST(record AS BLOB) FROM key_namespaces WHERE namespace = 'ops'",
            None,
        ),
        (
            "master_checks",
            "SELECT CAST(check_value AS BLOB) FROM master_checks",
            None,
        ),
    ];
    for (table, sql, secret) in cases {
        let root = tempfile::tempdir().unwrap();
        let v = content_vault(root.path()).await;
        let needle: Vec<u8> = stored(&v.db(), sql);
        flip(&v.db(), &needle);
        let errors = read_everything(&v).await;
        assert!(
            !errors.is_empty(),
            "{table} ({sql}): the flip went unnoticed"
        );
        // The master key check is the one row no key but the master's can vouch for: a check
        // value changed to other hex digits reads as a different master key (`WrongKey`),
        // one that is no longer hex as damage (`Integrity`); either way nothing opens.
        for e in &errors {
            let wrong_key = *table == "master_checks" && e.kind() == ErrorKind::WrongKey;
            assert!(
                e.kind() == ErrorKind::Integrity || wrong_key,
                "{table} ({sql}): {e}"
            );
        }
        if let Some(secret) = secret {
            assert!(
                errors.iter().any(|e| e.message().contains(secret)),
                "{table} ({sql}): no error names {secret}: {errors:?}"
            );
        }
    }
}

/// A byte flipped at offsets spread over every page of the file: whatever it hits (row data,
/// b-tree structure, free space), opening and reading never panics and never returns a value
/// other than the one written; what fails, fails with a typed error.
#[tokio::test]
async fn a_byte_flipped_anywhere_never_panics_or_reads_a_wrong_value() {
    let root = tempfile::tempdir().unwrap();
    let v = content_vault(root.path()).await;
    let pristine = fs::read(v.db()).unwrap();
    let key = fs::read(v.key_path()).unwrap();
    let mut detected = 0;
    let mut offsets = Vec::new();
    for page in 0..pristine.len() / 4096 {
        for within in [17, 811, 2049, 4001] {
            offsets.push(page * 4096 + within);
        }
    }
    for at in &offsets {
        let mut bytes = pristine.clone();
        bytes[*at] ^= 0x10;
        fs::write(v.db(), &bytes).unwrap();
        fs::write(v.key_path(), &key).unwrap();
        let errors = read_everything(&v).await;
        for e in &errors {
            assert!(
                matches!(
                    e.kind(),
                    ErrorKind::Integrity
                        | ErrorKind::Truncated
                        | ErrorKind::UnsupportedVersion
                        | ErrorKind::NotFound
                        | ErrorKind::WrongKey
                ),
                "offset {at}: {:?}: {e}",
                e.kind()
            );
        }
        detected += usize::from(!errors.is_empty());
        let _ = fs::remove_file(v.wal());
    }
    eprintln!("{} offsets flipped, {detected} detected", offsets.len());
    assert!(detected > 0);
}

#[tokio::test]
async fn a_truncated_file_is_truncated() {
    let root = tempfile::tempdir().unwrap();
    let v = content_vault(root.path()).await;
    let bytes = fs::read(v.db()).unwrap();
    fs::write(v.db(), &bytes[..bytes.len() - 4096]).unwrap();
    let err = v.open().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Truncated, "{err}");
    assert!(err.message().contains("truncated"), "{err}");
}

#[tokio::test]
async fn a_vault_from_a_newer_schema_is_unsupported_and_untouched() {
    let root = tempfile::tempdir().unwrap();
    let v = content_vault(root.path()).await;
    rusqlite::Connection::open(v.db())
        .unwrap()
        .execute_batch("UPDATE meta SET value = '6' WHERE key = 'schema_version'")
        .unwrap();
    let before = fs::read(v.db()).unwrap();
    let err = v.open().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsupportedVersion, "{err}");
    assert!(err.message().contains("schema version 6"), "{err}");
    assert_eq!(fs::read(v.db()).unwrap(), before);
}

#[tokio::test]
async fn a_key_file_from_another_vault_is_the_wrong_key_and_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let v = content_vault(root.path()).await;
    let other = Vault::new(root.path(), "other", 1).await;
    let before = fs::read(v.db()).unwrap();
    let err = LocalVault::open(v.db(), other.key()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongKey, "{err}");
    assert!(err.message().contains("key"), "{err}");
    assert_eq!(fs::read(v.db()).unwrap(), before);
    assert!(v.open().await.is_ok());
}
