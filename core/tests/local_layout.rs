//! The local vault's storage layout: the current version's envelope is stored once, in the
//! secret's row, and moves back to its `versions` row in the transaction that makes another
//! version current (a stage move, a new version, a DEK rotation). Reads of any version by
//! number, and `verify`, see every envelope wherever it is.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sealbox::keys::{KeyId, KeyProvider, LocalKeyFile};
use sealbox::store::local::LocalVault;
use sealbox::store::{PutOptions, SecretName, SecretStore, Stage, VersionId, VersionSelector};
use sealbox::{ExposeSecret, Secret};

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

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn key(&self) -> Arc<dyn KeyProvider> {
        Arc::new(
            LocalKeyFile::open_or_create(
                KeyId::new("local").unwrap(),
                self.dir.path().join("master.key"),
            )
            .unwrap(),
        )
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("vault.sqlite3")
    }
}

/// Every stored envelope of `name`, by version, and where it is: `(version, in versions
/// row, in secret row)`, read behind the vault's back.
fn placement(db: &Path, name: &str) -> Vec<(i64, bool, bool)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT v.version, length(v.envelope) > 0, \
             s.cur_version = v.version AND s.cur_envelope IS NOT NULL \
             FROM versions v JOIN secrets s ON s.id = v.secret_id \
             WHERE s.name = ?1 ORDER BY v.version",
        )
        .unwrap();
    stmt.query_map([name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

/// How many times the current envelope of `name` occurs in the closed vault file.
fn copies_in_file(db: &Path, name: &str) -> usize {
    let envelope: Vec<u8> = rusqlite::Connection::open(db)
        .unwrap()
        .query_row(
            "SELECT cur_envelope FROM secrets WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .unwrap();
    let bytes = std::fs::read(db).unwrap();
    bytes
        .windows(envelope.len())
        .filter(|w| *w == envelope.as_slice())
        .count()
}

async fn value(vault: &LocalVault, n: &str, selector: &VersionSelector) -> (String, String) {
    let v = vault.get(&name(n), selector).await.unwrap();
    (
        v.version.to_string(),
        String::from_utf8(v.value.expose_secret().to_vec()).unwrap(),
    )
}

fn version(n: u32) -> VersionSelector {
    VersionSelector::Version(VersionId::from(u64::from(n)))
}

#[tokio::test]
async fn the_current_envelope_is_stored_once_and_every_version_stays_readable() {
    let f = Fixture::new();
    let vault = LocalVault::create(f.db(), f.key()).await.unwrap();
    let db = name("app/db");
    for v in ["one", "two", "three"] {
        vault
            .put(&db, &secret(v), &PutOptions::default())
            .await
            .unwrap();
    }
    // Version 3 is current: its envelope is in the secret's row only.
    assert_eq!(
        placement(&f.db(), "app/db"),
        [(1, true, false), (2, true, false), (3, false, true)]
    );
    assert_eq!(
        value(&vault, "app/db", &version(1)).await,
        ("1".into(), "one".into())
    );
    assert_eq!(
        value(&vault, "app/db", &version(3)).await,
        ("3".into(), "three".into())
    );

    // Moving CURRENT back to 1 moves the envelopes in the same transaction.
    vault
        .set_stage(&db, &Stage::Current, Some(&VersionId::from(1u64)))
        .await
        .unwrap();
    assert_eq!(
        placement(&f.db(), "app/db"),
        [(1, false, true), (2, true, false), (3, true, false)]
    );
    assert_eq!(
        value(&vault, "app/db", &VersionSelector::Current).await,
        ("1".into(), "one".into())
    );
    assert_eq!(
        value(&vault, "app/db", &version(3)).await,
        ("3".into(), "three".into())
    );
    assert_eq!(
        value(&vault, "app/db", &VersionSelector::Stage(Stage::Previous)).await,
        ("3".into(), "three".into())
    );

    // A version written without CURRENT leaves the current envelope where it is.
    let pending = PutOptions {
        stages: vec![Stage::Pending],
        ..PutOptions::default()
    };
    vault.put(&db, &secret("four"), &pending).await.unwrap();
    assert_eq!(
        placement(&f.db(), "app/db"),
        [
            (1, false, true),
            (2, true, false),
            (3, true, false),
            (4, true, false)
        ]
    );

    // A DEK rotation re-encrypts every version, the current one in the secret's row.
    vault.rotate_dek(&db).await.unwrap();
    assert_eq!(
        placement(&f.db(), "app/db"),
        [
            (1, false, true),
            (2, true, false),
            (3, true, false),
            (4, true, false)
        ]
    );
    for (n, v) in [(1, "one"), (2, "two"), (3, "three"), (4, "four")] {
        assert_eq!(
            value(&vault, "app/db", &version(n)).await,
            (n.to_string(), v.into())
        );
    }
    let report = vault.verify().await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.versions_ok, 4);
    let described = vault.describe(&db).await.unwrap();
    assert_eq!(described.versions.len(), 4);
    drop(vault);
    // Not even the file's free space holds a second copy.
    assert_eq!(copies_in_file(&f.db(), "app/db"), 1);
}

#[tokio::test]
async fn an_imported_secret_stores_its_envelope_once() {
    let f = Fixture::new();
    let vault = LocalVault::create(f.db(), f.key()).await.unwrap();
    vault
        .import(vec![
            (name("bulk/a"), secret("value-a")),
            (name("bulk/b"), secret("value-b")),
        ])
        .await
        .unwrap();
    assert_eq!(placement(&f.db(), "bulk/a"), [(1, false, true)]);
    let conn = rusqlite::Connection::open(f.db()).unwrap();
    let stored: i64 = conn
        .query_row(
            "SELECT (SELECT count(*) FROM versions WHERE length(envelope) > 0) + \
             (SELECT count(*) FROM secrets WHERE cur_envelope IS NOT NULL)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, 2, "one stored envelope per version");
    drop(conn);
    assert_eq!(
        value(&vault, "bulk/b", &version(1)).await,
        ("1".into(), "value-b".into())
    );
    drop(vault);
    assert_eq!(copies_in_file(&f.db(), "bulk/a"), 1);
}
