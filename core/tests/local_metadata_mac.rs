//! Authenticated metadata: whoever can write the vault file but holds no key cannot change
//! what a read returns or a listing shows. Each test edits the closed vault with `rusqlite`
//! as an attacker would (move `CURRENT` back to a leaked version, revive a deleted secret,
//! change a tag, swap or delete version rows, delete a secret) and checks that the read that
//! depends on the edit, and `verify`, fail with `Integrity` naming the secret, never answering
//! with another value.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sealbox::keys::{KeyId, KeyProvider, LocalKeyFile};
use sealbox::store::local::LocalVault;
use sealbox::store::{
    DeleteOptions, ListOptions, PutOptions, SecretName, SecretStore, Stage, VersionId,
    VersionSelector,
};
use sealbox::{Error, ErrorKind, ExposeSecret, Secret};

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

/// A closed vault: `app/db` with a leaked version 1 and a current version 2, `app/api` with a
/// `PENDING` version 2, `app/old` soft-deleted, `app/tagged` with a description and tags.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    async fn new() -> Fixture {
        let f = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        let vault = LocalVault::create(f.db(), f.key()).await.unwrap();
        let put = |n: &'static str, v: &'static str, options: PutOptions| {
            let vault = vault.clone();
            async move { vault.put(&name(n), &secret(v), &options).await.unwrap() }
        };
        put("app/db", "leaked-password", PutOptions::default()).await;
        put("app/db", "current-password", PutOptions::default()).await;
        put("app/api", "api-1", PutOptions::default()).await;
        let pending = PutOptions {
            stages: vec![Stage::Pending],
            ..PutOptions::default()
        };
        put("app/api", "api-2", pending).await;
        put("app/old", "old-value", PutOptions::default()).await;
        let tagged = PutOptions {
            description: Some("the billing token".into()),
            tags: [("owner".to_owned(), "billing".to_owned())].into(),
            ..PutOptions::default()
        };
        put("app/tagged", "tagged-value", tagged).await;
        let window = DeleteOptions {
            force: false,
            recovery_window: Duration::from_secs(7 * 86400),
        };
        vault.delete(&name("app/old"), &window).await.unwrap();
        assert!(vault.verify().await.unwrap().is_ok());
        drop(vault);
        f
    }

    fn key(&self) -> Arc<dyn KeyProvider> {
        Arc::new(
            LocalKeyFile::open_or_create(KeyId::new("local").unwrap(), self.key_path()).unwrap(),
        )
    }

    fn key_path(&self) -> PathBuf {
        self.dir.path().join("master.key")
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("vault.sqlite3")
    }

    /// Edits the file directly, as someone with write access but no key would.
    fn edit(&self, sql: &str) {
        edit(&self.db(), sql);
    }

    async fn open(&self) -> LocalVault {
        LocalVault::open(self.db(), self.key()).await.unwrap()
    }
}

fn edit(db: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch(sql).unwrap();
}

/// `Integrity`, naming `secret`.
#[track_caller]
fn assert_tampered(err: &Error, secret: &str) {
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(err.message().contains(secret), "{err}");
}

/// `verify` reports an `Integrity` failure for `secret`.
async fn assert_verify_names(vault: &LocalVault, secret: &str) {
    let report = vault.verify().await.unwrap();
    assert!(!report.is_ok(), "{report:?}");
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.name == secret && f.kind == ErrorKind::Integrity),
        "{report:?}"
    );
}

async fn current(vault: &LocalVault, n: &str) -> sealbox::Result<String> {
    vault
        .get(&name(n), &VersionSelector::Current)
        .await
        .map(|v| String::from_utf8(v.value.expose_secret().to_vec()).unwrap())
}

async fn version(vault: &LocalVault, n: &str, v: i64) -> sealbox::Result<String> {
    vault
        .get(&name(n), &VersionSelector::Version(VersionId::from(v)))
        .await
        .map(|v| String::from_utf8(v.value.expose_secret().to_vec()).unwrap())
}

#[tokio::test]
async fn moving_current_back_to_a_leaked_version_is_integrity_not_the_old_value() {
    let f = Fixture::new().await;
    // Everything a current read looks at, made consistent by hand: the stage map and the
    // copy of the current version in the secret's row, taken from version 1's own row.
    f.edit(
        "UPDATE secrets SET stages = 'CURRENT=1,PREVIOUS=2', \
           cur_version = 1, \
           cur_envelope = (SELECT envelope FROM versions v WHERE v.secret_id = secrets.id AND v.version = 1), \
           cur_created = (SELECT created FROM versions v WHERE v.secret_id = secrets.id AND v.version = 1) \
         WHERE name = 'app/db'",
    );
    let vault = f.open().await;
    assert_tampered(&current(&vault, "app/db").await.unwrap_err(), "app/db");
    let by_stage = vault
        .get(&name("app/db"), &VersionSelector::Stage(Stage::Current))
        .await
        .unwrap_err();
    assert_tampered(&by_stage, "app/db");
    assert_eq!(current(&vault, "app/api").await.unwrap(), "api-1");
    assert_verify_names(&vault, "app/db").await;
}

#[tokio::test]
async fn moving_only_the_stage_map_is_integrity() {
    let f = Fixture::new().await;
    // Promote the pending version by hand.
    f.edit("UPDATE secrets SET stages = 'CURRENT=2,PREVIOUS=1' WHERE name = 'app/api'");
    let vault = f.open().await;
    let err = vault
        .get(&name("app/api"), &VersionSelector::Stage(Stage::Previous))
        .await
        .unwrap_err();
    assert_tampered(&err, "app/api");
    assert_tampered(
        &vault.describe(&name("app/api")).await.unwrap_err(),
        "app/api",
    );
    assert_verify_names(&vault, "app/api").await;
}

#[tokio::test]
async fn reviving_a_deleted_secret_is_integrity() {
    let f = Fixture::new().await;
    f.edit("UPDATE secrets SET purge_at = NULL WHERE name = 'app/old'");
    let vault = f.open().await;
    assert_tampered(&current(&vault, "app/old").await.unwrap_err(), "app/old");
    let listed = vault.list(&ListOptions::default()).await.unwrap_err();
    assert_tampered(&listed, "app/old");
    assert_verify_names(&vault, "app/old").await;
}

#[tokio::test]
async fn extending_the_recovery_deadline_is_integrity() {
    let f = Fixture::new().await;
    f.edit("UPDATE secrets SET purge_at = purge_at + 31536000000 WHERE name = 'app/old'");
    let vault = f.open().await;
    assert_tampered(
        &vault.describe(&name("app/old")).await.unwrap_err(),
        "app/old",
    );
    assert_tampered(
        &vault.restore(&name("app/old")).await.unwrap_err(),
        "app/old",
    );
    assert_verify_names(&vault, "app/old").await;
}

#[tokio::test]
async fn changing_a_tag_or_the_description_is_integrity() {
    for sql in [
        "UPDATE secrets SET tags = '{\"owner\":\"attacker\"}' WHERE name = 'app/tagged'",
        "UPDATE secrets SET description = 'rotate me to http://evil' WHERE name = 'app/tagged'",
    ] {
        let f = Fixture::new().await;
        f.edit(sql);
        let vault = f.open().await;
        let err = vault.describe(&name("app/tagged")).await.unwrap_err();
        assert_tampered(&err, "app/tagged");
        let listed = vault
            .list(&ListOptions {
                prefix: "app/t".into(),
                ..ListOptions::default()
            })
            .await
            .unwrap_err();
        assert_tampered(&listed, "app/tagged");
        // A write does not launder the edit into a fresh MAC.
        let err = vault
            .put(&name("app/tagged"), &secret("x"), &PutOptions::default())
            .await
            .unwrap_err();
        assert_tampered(&err, "app/tagged");
        assert_verify_names(&vault, "app/tagged").await;
    }
}

#[tokio::test]
async fn swapping_two_version_rows_is_integrity() {
    let f = Fixture::new().await;
    f.edit(
        "UPDATE versions SET version = -1 WHERE version = 1 AND secret_id = (SELECT id FROM secrets WHERE name = 'app/db'); \
         UPDATE versions SET version = 1 WHERE version = 2 AND secret_id = (SELECT id FROM secrets WHERE name = 'app/db'); \
         UPDATE versions SET version = 2 WHERE version = -1 AND secret_id = (SELECT id FROM secrets WHERE name = 'app/db')",
    );
    let vault = f.open().await;
    assert_tampered(&version(&vault, "app/db", 1).await.unwrap_err(), "app/db");
    assert_tampered(
        &vault.describe(&name("app/db")).await.unwrap_err(),
        "app/db",
    );
    // The current version (2) is answered from the secret's own row, which is intact: the
    // true value, never the one swapped in.
    assert_eq!(current(&vault, "app/db").await.unwrap(), "current-password");
    assert_eq!(
        version(&vault, "app/db", 2).await.unwrap(),
        "current-password"
    );
    assert_verify_names(&vault, "app/db").await;
}

#[tokio::test]
async fn deleting_a_version_row_is_integrity() {
    let f = Fixture::new().await;
    f.edit(
        "DELETE FROM versions WHERE version = 2 AND secret_id = (SELECT id FROM secrets WHERE name = 'app/api')",
    );
    let vault = f.open().await;
    assert_tampered(&version(&vault, "app/api", 2).await.unwrap_err(), "app/api");
    let pending = vault
        .get(&name("app/api"), &VersionSelector::Stage(Stage::Pending))
        .await
        .unwrap_err();
    assert_tampered(&pending, "app/api");
    assert_tampered(
        &vault.describe(&name("app/api")).await.unwrap_err(),
        "app/api",
    );
    assert_verify_names(&vault, "app/api").await;
}

#[tokio::test]
async fn deleting_a_secret_row_is_found_by_verify() {
    let f = Fixture::new().await;
    f.edit("PRAGMA foreign_keys = ON; DELETE FROM secrets WHERE name = 'app/api'");
    let vault = f.open().await;
    // What a row MAC cannot catch: the row is gone, so a read finds nothing to check.
    let err = current(&vault, "app/api").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    // The set MAC over every secret's row does.
    assert_verify_names(&vault, "(the set of secrets)").await;
}

#[tokio::test]
async fn a_version_row_moved_to_another_secret_is_integrity() {
    let f = Fixture::new().await;
    f.edit(
        "UPDATE versions SET secret_id = (SELECT id FROM secrets WHERE name = 'app/api'), \
         version = 3 WHERE version = 1 AND secret_id = (SELECT id FROM secrets WHERE name = 'app/db')",
    );
    let vault = f.open().await;
    assert_tampered(&version(&vault, "app/api", 3).await.unwrap_err(), "app/api");
    assert_tampered(
        &vault.describe(&name("app/db")).await.unwrap_err(),
        "app/db",
    );
    assert_verify_names(&vault, "app/api").await;
    assert_verify_names(&vault, "app/db").await;
}

/// The row of a secret's current version has no MAC of its own (schema 5): its secret's record
/// binds its number, creation time and envelope. An edit of that row is still caught, both by
/// the reads that use it and when a later write moves the version out of the record (which
/// gives the row its own MAC again, so the move must not vouch for an edited row).
#[tokio::test]
async fn an_edited_current_version_row_is_caught_and_not_resealed_by_a_later_write() {
    let f = Fixture::new().await;
    let macs: Vec<Option<Vec<u8>>> = rusqlite::Connection::open(f.db())
        .unwrap()
        .prepare(
            "SELECT v.mac FROM versions v JOIN secrets s ON s.id = v.secret_id \
             WHERE s.name = 'app/db' ORDER BY v.version",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(macs[0].is_some() && macs[1].is_none(), "{macs:?}");
    for sql in [
        "UPDATE versions SET created = created - 86400000 WHERE version = 2 \
         AND secret_id = (SELECT id FROM secrets WHERE name = 'app/db')",
        "UPDATE versions SET token = 'planted' WHERE version = 2 \
         AND secret_id = (SELECT id FROM secrets WHERE name = 'app/db')",
    ] {
        let f = Fixture::new().await;
        f.edit(sql);
        let vault = f.open().await;
        assert_tampered(
            &vault.describe(&name("app/db")).await.unwrap_err(),
            "app/db",
        );
        assert_verify_names(&vault, "app/db").await;
        // A new version moves version 2 out of the record: refused, nothing written.
        let err = vault
            .put(&name("app/db"), &secret("third"), &PutOptions::default())
            .await
            .unwrap_err();
        assert_tampered(&err, "app/db");
        assert_eq!(current(&vault, "app/db").await.unwrap(), "current-password");
        assert_verify_names(&vault, "app/db").await;
    }
}
