//! Bad input to the local vault: each case is a clear typed error, and nothing is overwritten
//! (the vault file is byte-for-byte what it was, and the good data is still readable once the
//! damage is undone).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sealbox::keys::{KeyId, KeyProvider, LocalKeyFile};
use sealbox::store::local::LocalVault;
use sealbox::store::{PutOptions, SecretName, SecretStore, VersionSelector};
use sealbox::{ErrorKind, ExposeSecret, Secret};

fn key_at(path: &Path) -> Arc<dyn KeyProvider> {
    Arc::new(LocalKeyFile::open_or_create(KeyId::new("local").unwrap(), path).unwrap())
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

/// A closed vault (WAL checkpointed into the main file) holding a few secrets.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let f = Fixture { dir };
        let vault = LocalVault::create(f.dir.path(), f.key()).await.unwrap();
        for (n, v) in [
            ("app/db/password", &b"first-secret-value-0123456789"[..]),
            ("app/api/token", &b"second-secret-value-abcdefghij"[..]),
            ("ops/ssh/key", &[7u8; 300][..]),
        ] {
            vault
                .put(&name(n), &secret(v), &PutOptions::default())
                .await
                .unwrap();
        }
        drop(vault);
        assert!(
            !f.wal().exists(),
            "closing the vault should checkpoint and remove the WAL"
        );
        f
    }

    fn key(&self) -> Arc<dyn KeyProvider> {
        key_at(&self.dir.path().join("master.key"))
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("vault.sqlite3")
    }

    fn wal(&self) -> PathBuf {
        self.dir.path().join("vault.sqlite3-wal")
    }

    fn bytes(&self) -> Vec<u8> {
        fs::read(self.db()).unwrap()
    }

    fn sql(&self, sql: &str) {
        let conn = rusqlite::Connection::open(self.db()).unwrap();
        conn.execute_batch(sql).unwrap();
    }

    async fn open(&self) -> sealbox::Result<LocalVault> {
        LocalVault::open(self.dir.path(), self.key()).await
    }

    /// Opens the vault after `app/db/password`'s row was damaged: its read fails, and the
    /// other secret still reads. Returns the vault and the error.
    async fn password_fails_token_reads(&self) -> (LocalVault, sealbox::Error) {
        let vault = self.open().await.unwrap();
        let err = vault
            .get(&name("app/db/password"), &VersionSelector::Current)
            .await
            .unwrap_err();
        let ok = vault
            .get(&name("app/api/token"), &VersionSelector::Current)
            .await
            .unwrap();
        assert_eq!(ok.value.expose_secret(), b"second-secret-value-abcdefghij");
        (vault, err)
    }
}

#[tokio::test]
async fn a_ciphertext_swapped_between_rows_is_an_integrity_error() {
    let f = Fixture::new().await;
    // Move the api token's ciphertext onto the db password's row (each secret's one
    // version is current: its envelope is stored once, in the secret's row).
    f.sql(
        "UPDATE secrets SET cur_envelope = (SELECT cur_envelope FROM secrets \
         WHERE name = 'app/api/token') WHERE name = 'app/db/password'",
    );
    let before = f.bytes();
    // The row that was copied from is untouched and readable.
    let (vault, err) = f.password_fails_token_reads().await;
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    let report = vault.verify().await.unwrap();
    assert_eq!(report.failures.len(), 1, "{report:?}");
    assert_eq!(report.failures[0].name, "app/db/password");
    assert_eq!(report.failures[0].kind, ErrorKind::Integrity);
    drop(vault);
    assert_eq!(
        f.bytes(),
        before,
        "reading a damaged vault must not write to it"
    );
}

#[tokio::test]
async fn a_column_edited_to_the_wrong_type_is_an_integrity_error() {
    let f = Fixture::new().await;
    f.sql(
        "UPDATE versions SET envelope = 'not a ciphertext' \
         WHERE secret_id = (SELECT id FROM secrets WHERE name = 'app/db/password'); \
         UPDATE secrets SET cur_envelope = 'not a ciphertext' WHERE name = 'app/db/password'",
    );
    let (_vault, err) = f.password_fails_token_reads().await;
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(err.message().contains("damaged"), "{err}");
}

#[tokio::test]
async fn a_dek_swapped_between_secrets_is_an_integrity_error() {
    let f = Fixture::new().await;
    f.sql(
        "UPDATE secrets SET dek = (SELECT dek FROM secrets WHERE name = 'app/api/token') \
         WHERE name = 'app/db/password'",
    );
    let vault = f.open().await.unwrap();
    let err = vault
        .get(&name("app/db/password"), &VersionSelector::Current)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
}

#[tokio::test]
async fn a_version_renumbered_is_an_integrity_error() {
    let f = Fixture::new().await;
    f.sql(
        "UPDATE versions SET version = 7 WHERE secret_id = (SELECT id FROM secrets WHERE name = 'app/api/token'); \
         UPDATE secrets SET stages = 'CURRENT=7', cur_version = 7 WHERE name = 'app/api/token'",
    );
    let vault = f.open().await.unwrap();
    let err = vault
        .get(&name("app/api/token"), &VersionSelector::Current)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
}

#[tokio::test]
async fn tampered_ciphertext_bytes_are_an_integrity_error() {
    let f = Fixture::new().await;
    // Find the 300-byte value's envelope in the raw file and flip one ciphertext bit.
    let envelope: Vec<u8> = rusqlite::Connection::open(f.db())
        .unwrap()
        .query_row(
            "SELECT cur_envelope FROM secrets WHERE name = 'ops/ssh/key'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    // Its one copy: the current version's envelope is stored in the secret's row alone.
    let mut bytes = f.bytes();
    let mut flipped = 0;
    while let Some(at) = bytes
        .windows(envelope.len())
        .position(|w| w == envelope.as_slice())
    {
        bytes[at + envelope.len() / 2] ^= 0x01;
        flipped += 1;
    }
    assert_eq!(flipped, 1, "the envelope is stored contiguously, once");
    fs::write(f.db(), &bytes).unwrap();
    let vault = f.open().await.unwrap();
    let err = vault
        .get(&name("ops/ssh/key"), &VersionSelector::Current)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    let report = vault.verify().await.unwrap();
    assert!(!report.is_ok());
    assert!(
        report
            .failures
            .iter()
            .all(|f| f.kind == ErrorKind::Integrity),
        "{report:?}"
    );
    drop(vault);
    assert_eq!(f.bytes(), bytes, "nothing overwritten");
}

#[tokio::test]
async fn damaged_database_structure_is_refused_on_open() {
    let f = Fixture::new().await;
    let mut bytes = f.bytes();
    let page_size = usize::from(u16::from_be_bytes([bytes[16], bytes[17]]));
    assert!(bytes.len() >= 3 * page_size);
    // Scribble over the b-tree header of page 2.
    for b in &mut bytes[page_size..page_size + 12] {
        *b = 0xA5;
    }
    fs::write(f.db(), &bytes).unwrap();
    let err = f.open().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert_eq!(f.bytes(), bytes, "nothing overwritten");
}

#[tokio::test]
async fn a_wrong_master_key_is_refused_and_changes_nothing() {
    let f = Fixture::new().await;
    let before = f.bytes();
    let other = key_at(&f.dir.path().join("other.key"));
    let err = LocalVault::open(f.dir.path(), other).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongKey, "{err}");
    assert_eq!(f.bytes(), before, "nothing overwritten");
    // The right key still reads everything.
    let vault = f.open().await.unwrap();
    assert!(vault.verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn a_truncated_file_is_refused() {
    let f = Fixture::new().await;
    let full = f.bytes();
    for len in [full.len() / 2, 4096 + 10, 50, 0] {
        fs::write(f.db(), &full[..len]).unwrap();
        let err = f.open().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Truncated, "len {len}: {err}");
        assert_eq!(f.bytes().len(), len, "nothing overwritten");
    }
    // Undo the damage: the vault is intact.
    fs::write(f.db(), &full).unwrap();
    let vault = f.open().await.unwrap();
    assert!(vault.verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn a_file_that_is_not_a_vault_is_refused() {
    let f = Fixture::new().await;
    fs::write(f.db(), vec![b'#'; 8192]).unwrap();
    assert_eq!(f.open().await.unwrap_err().kind(), ErrorKind::Integrity);
    let other = f.dir.path().join("foreign.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE users (id INTEGER)")
        .unwrap();
    fs::set_permissions(&other, fs::Permissions::from_mode(0o600)).unwrap();
    let err = LocalVault::open(&other, f.key()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
}

#[tokio::test]
async fn a_world_readable_key_file_or_vault_is_refused() {
    let f = Fixture::new().await;
    let key_path = f.dir.path().join("master.key");
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o644)).unwrap();
    let err = LocalKeyFile::open(KeyId::new("local").unwrap(), &key_path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).unwrap();

    let before = f.bytes();
    for mode in [0o644, 0o640, 0o660] {
        fs::set_permissions(f.db(), fs::Permissions::from_mode(mode)).unwrap();
        let err = f.open().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "mode {mode:o}: {err}");
        assert!(err.message().contains("chmod 600"), "{err}");
    }
    fs::set_permissions(f.db(), fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(f.bytes(), before);
    assert!(f.open().await.is_ok());
}

#[tokio::test]
async fn an_unknown_schema_version_is_refused_untouched() {
    let f = Fixture::new().await;
    f.sql("UPDATE meta SET value = '999' WHERE key = 'schema_version'");
    let before = f.bytes();
    let err = f.open().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsupportedVersion, "{err}");
    assert_eq!(f.bytes(), before, "nothing overwritten");
}

/// issue 24: a flipped byte in the stored master key check surfaced as `internal` (invalid
/// UTF-8). It is tampering: `Integrity`, naming the key check.
#[tokio::test]
async fn a_flipped_byte_in_the_stored_master_key_check_is_an_integrity_error() {
    let f = Fixture::new().await;
    // The first byte becomes 0xFF: no longer UTF-8, let alone hex.
    f.sql(
        "UPDATE master_checks SET check_value = \
         CAST(X'FF' || substr(CAST(check_value AS BLOB), 2) AS TEXT)",
    );
    let before = f.bytes();
    let err = f.open().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(err.message().contains("master key check"), "{err}");
    assert_eq!(f.bytes(), before, "nothing overwritten");
}

/// issue 24: a dropped `versions` table surfaced as `internal` (`no such table`). Every table
/// the vault reads, dropped, is `Integrity` on open, naming the table.
#[tokio::test]
async fn a_dropped_table_is_an_integrity_error_naming_it() {
    for table in [
        "meta",
        "secrets",
        "versions",
        "key_namespaces",
        "master_checks",
    ] {
        let f = Fixture::new().await;
        f.sql(&format!("DROP TABLE {table}"));
        let before = f.bytes();
        let err = f.open().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Integrity, "{table}: {err}");
        assert!(
            err.message().contains(&format!("`{table}` table")),
            "{table}: {err}"
        );
        assert_eq!(f.bytes(), before, "{table}: nothing overwritten");
    }
}

/// A renamed column is found by the statement that reads it: `Integrity`, never `internal`.
#[tokio::test]
async fn a_renamed_column_is_an_integrity_error() {
    let f = Fixture::new().await;
    f.sql("ALTER TABLE secrets RENAME COLUMN cur_envelope TO moved");
    let vault = f.open().await.unwrap();
    let err = vault
        .get(&name("app/db/password"), &VersionSelector::Current)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(err.message().contains("altered"), "{err}");
    let err = vault
        .put(
            &name("app/db/password"),
            &secret(b"new"),
            &PutOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
}

/// A namespace's key record deleted while its secrets hold keys wrapped under it is
/// tampering (`Integrity`), not a missing namespace (`NotFound`).
#[tokio::test]
async fn a_deleted_namespace_key_record_is_an_integrity_error() {
    let f = Fixture::new().await;
    f.sql("DELETE FROM key_namespaces WHERE namespace = 'app'");
    let (vault, err) = {
        let vault = f.open().await.unwrap();
        let err = vault
            .get(&name("app/db/password"), &VersionSelector::Current)
            .await
            .unwrap_err();
        (vault, err)
    };
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(err.message().contains("namespace app"), "{err}");
    // The other namespace is untouched.
    let ok = vault
        .get(&name("ops/ssh/key"), &VersionSelector::Current)
        .await
        .unwrap();
    assert_eq!(ok.value.expose_secret(), &[7u8; 300][..]);
}

/// SQLite now judges the file's length (after replaying the WAL), so a vault genuinely cut
/// short while a WAL is beside it must still be refused with a typed error, never read as a
/// wrong value. The crash image is the vault and its WAL copied while a handle is open.
#[tokio::test]
async fn a_truncated_file_beside_a_live_wal_is_refused_or_reads_true() {
    let f = Fixture::new().await;
    let vault = f.open().await.unwrap();
    vault
        .put(
            &name("app/db/password"),
            &secret(b"after-reopen"),
            &PutOptions::default(),
        )
        .await
        .unwrap();
    let db = f.bytes();
    let wal = fs::read(f.wal()).unwrap();
    assert!(
        !wal.is_empty(),
        "the open handle's WAL should hold the last put"
    );
    drop(vault);
    let expected: [(&str, &[u8]); 3] = [
        ("app/db/password", b"after-reopen"),
        ("app/api/token", b"second-secret-value-abcdefghij"),
        ("ops/ssh/key", &[7u8; 300]),
    ];
    let (mut refused, mut opened) = (0, 0);
    for len in [db.len() / 2, db.len() - 4096, 4096 + 10, 8192] {
        let copy = tempfile::tempdir().unwrap();
        let copy_db = copy.path().join("vault.sqlite3");
        fs::write(&copy_db, &db[..len]).unwrap();
        fs::write(copy.path().join("vault.sqlite3-wal"), &wal).unwrap();
        for p in [copy_db.clone(), copy.path().join("vault.sqlite3-wal")] {
            fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        }
        match LocalVault::open(copy.path(), f.key()).await {
            Err(e) => {
                assert!(
                    matches!(e.kind(), ErrorKind::Truncated | ErrorKind::Integrity),
                    "len {len}: {e}"
                );
                refused += 1;
            }
            Ok(vault) => {
                // Whatever opens must read true values or fail as damage, never anything else.
                opened += 1;
                for (n, v) in expected {
                    match vault.get(&name(n), &VersionSelector::Current).await {
                        Ok(got) => assert_eq!(got.value.expose_secret(), v, "len {len}: {n}"),
                        Err(e) => assert!(
                            matches!(e.kind(), ErrorKind::Truncated | ErrorKind::Integrity),
                            "len {len}: {n}: {e}"
                        ),
                    }
                }
                if let Ok(report) = vault.verify().await {
                    assert!(
                        report
                            .failures
                            .iter()
                            .all(|f| f.kind == ErrorKind::Integrity),
                        "len {len}: {report:?}"
                    );
                }
            }
        }
    }
    eprintln!("{refused} truncations refused, {opened} opened and read true");
    assert!(refused > 0, "no truncation was refused ({opened} opened)");
}
