//! Migration of vaults written by the previous layouts to schema 5 (the compact rows): schema 3
//! (`fixtures/vault-v3.sqlite3`, made by main before authenticated metadata) and schema 4
//! (`fixtures/vault-v4.sqlite3`, made by main before the compact rows, with the same
//! contents). It runs on open, and afterwards every value, stage, tag, description and
//! deletion reads back as written. An edit made to a schema-4 file before the upgrade is not
//! laundered by it: the upgrade reseals only rows whose schema-4 MAC checks.

#[path = "support/v3_fixture.rs"]
mod v3_fixture;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sealbox::keys::{KeyId, KeyProvider, LocalKeyFile};
use sealbox::store::local::LocalVault;
use sealbox::store::{ListOptions, SecretName, SecretStore, Stage, VersionId, VersionSelector};
use sealbox::{ErrorKind, ExposeSecret};

fn key_at(path: &Path) -> Arc<dyn KeyProvider> {
    Arc::new(LocalKeyFile::open(KeyId::new("local").unwrap(), path).unwrap())
}

/// Copies fixture `vault-vN` into a temporary directory, `0600` as sealbox requires.
fn fixture(version: u32) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let db = dir.path().join("vault.sqlite3");
    let key = dir.path().join("master.key");
    let (from_db, from_key) = (
        format!("vault-v{version}.sqlite3"),
        format!("vault-v{version}.key"),
    );
    for (from, to) in [(from_db, &db), (from_key, &key)] {
        fs::copy(src.join(from), to).unwrap();
        fs::set_permissions(to, fs::Permissions::from_mode(0o600)).unwrap();
    }
    (dir, db, key)
}

fn schema_version(db: &Path) -> String {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

async fn read(vault: &LocalVault, name: &SecretName, selector: VersionSelector) -> (String, i64) {
    let got = vault.get(name, &selector).await.unwrap();
    (
        String::from_utf8(got.value.expose_secret().to_vec()).unwrap(),
        got.version.as_str().parse().unwrap(),
    )
}

#[tokio::test]
async fn the_schema_3_fixture_migrates_on_open_and_reads_back_in_full() {
    migrates_and_reads_back_in_full(3).await;
}

#[tokio::test]
async fn the_schema_4_fixture_migrates_on_open_and_reads_back_in_full() {
    migrates_and_reads_back_in_full(4).await;
}

/// The compact forms: a wrapped DEK without the namespace's header bytes (75 bytes for a
/// generated id), a value envelope without the DEK's (nonce, ciphertext, tag), 16-byte MACs,
/// and no namespace index.
fn assert_compact(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let (dek, short_envelopes, macs, indexes): (i64, i64, i64, i64) = conn
        .query_row(
            "SELECT (SELECT max(length(dek)) FROM secrets), \
             (SELECT count(*) FROM secrets WHERE substr(cur_envelope, 1, 4) = CAST('SBXE' AS BLOB)) \
              + (SELECT count(*) FROM versions WHERE substr(envelope, 1, 4) = CAST('SBXE' AS BLOB)), \
             (SELECT count(*) FROM secrets WHERE length(mac) != 16) \
              + (SELECT count(*) FROM versions WHERE length(mac) != 16), \
             (SELECT count(*) FROM sqlite_master WHERE name = 'secrets_namespace')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!((dek, short_envelopes, macs, indexes), (75, 0, 0, 0));
}

async fn migrates_and_reads_back_in_full(from: u32) {
    let (_dir, db, key) = fixture(from);
    assert_eq!(schema_version(&db), from.to_string());
    let vault = LocalVault::open(&db, key_at(&key)).await.unwrap();
    assert_eq!(schema_version(&db), "5", "opening migrated the file");
    assert_compact(&db);
    let mut versions = 0;
    for i in 0..v3_fixture::SECRETS {
        let e = v3_fixture::expected(i);
        let name: SecretName = e.name.parse().unwrap();
        versions += e.values.len() as u64;
        let meta = vault.describe(&name).await.unwrap();
        assert_eq!(meta.deleted.is_some(), e.deleted, "{}", e.name);
        assert_eq!(meta.description, e.description, "{}", e.name);
        assert_eq!(meta.tags, e.tags, "{}", e.name);
        assert_eq!(meta.versions.len(), e.values.len(), "{}", e.name);
        for info in &meta.versions {
            let v: i64 = info.version.as_str().parse().unwrap();
            let mut want = Vec::new();
            if v == e.current {
                want.push(Stage::Current);
            }
            if Some(v) == e.pending {
                want.push(Stage::Pending);
            }
            if Some(v) == e.previous {
                want.push(Stage::Previous);
            }
            want.sort();
            assert_eq!(info.stages, want, "{} version {v}", e.name);
        }
        if e.deleted {
            let err = vault
                .get(&name, &VersionSelector::Current)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::NotFound, "{}", e.name);
            continue;
        }
        let current = read(&vault, &name, VersionSelector::Current).await;
        assert_eq!(
            current,
            (e.values[e.current as usize - 1].clone(), e.current)
        );
        for (stage, v) in [(Stage::Pending, e.pending), (Stage::Previous, e.previous)] {
            if let Some(v) = v {
                let got = read(&vault, &name, VersionSelector::Stage(stage)).await;
                assert_eq!(got, (e.values[v as usize - 1].clone(), v), "{}", e.name);
            }
        }
        for (n, value) in e.values.iter().enumerate() {
            let v = n as i64 + 1;
            let got = read(&vault, &name, VersionSelector::Version(VersionId::from(v))).await;
            assert_eq!(got, (value.clone(), v), "{}", e.name);
        }
    }
    let listed = vault
        .list(&ListOptions {
            include_deleted: true,
            page_size: Some(1000),
            ..ListOptions::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.entries.len(), v3_fixture::SECRETS);
    let report = vault.verify().await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.secrets, v3_fixture::SECRETS as u64);
    assert_eq!(report.versions_ok, versions);
    // Each envelope is stored once: the current version's in its secret's row only.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (stored, doubled): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT count(*) FROM versions WHERE length(envelope) > 0) + \
             (SELECT count(*) FROM secrets WHERE cur_envelope IS NOT NULL), \
             (SELECT count(*) FROM versions v JOIN secrets s ON s.id = v.secret_id \
              WHERE v.version = s.cur_version AND length(v.envelope) > 0)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((stored, doubled), (versions as i64, 0));
    drop(conn);
    // A deleted secret restores, and the migrated vault takes writes.
    let deleted: SecretName = v3_fixture::expected(7).name.parse().unwrap();
    vault.restore(&deleted).await.unwrap();
    let got = read(&vault, &deleted, VersionSelector::Current).await;
    assert_eq!(
        got.0,
        v3_fixture::expected(7).values.last().unwrap().clone()
    );
    drop(vault);
    // Opening again migrates nothing and still verifies.
    let vault = LocalVault::open(&db, key_at(&key)).await.unwrap();
    assert!(vault.verify().await.unwrap().is_ok());
}

/// Rows edited in a schema-4 file before it is upgraded keep failing afterwards: the upgrade
/// rewrites every row, but reseals only those whose schema-4 MAC checks, so it cannot turn an
/// attacker's edit into a row the vault vouches for.
#[tokio::test]
async fn edits_made_before_the_upgrade_are_not_laundered_by_it() {
    let (_dir, db, key) = fixture(4);
    // CURRENT moved back to an older version by hand, and a version row's time changed.
    let moved = v3_fixture::expected(1);
    let edited = v3_fixture::expected(3);
    assert_eq!((moved.values.len(), edited.values.len()), (2, 4));
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE secrets SET stages = 'CURRENT=1,PREVIOUS=2' WHERE name = ?1",
        [&moved.name],
    )
    .unwrap();
    conn.execute(
        "UPDATE versions SET created = created + 1 WHERE version = 1 \
         AND secret_id = (SELECT id FROM secrets WHERE name = ?1)",
        [&edited.name],
    )
    .unwrap();
    drop(conn);
    let vault = LocalVault::open(&db, key_at(&key)).await.unwrap();
    assert_eq!(schema_version(&db), "5");
    let moved_name: SecretName = moved.name.parse().unwrap();
    let err = vault
        .get(&moved_name, &VersionSelector::Current)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    let edited_name: SecretName = edited.name.parse().unwrap();
    let err = vault
        .get(
            &edited_name,
            &VersionSelector::Version(VersionId::from(1u64)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    // The edited secret's other versions, and every other secret, read as written.
    let (current, _) = read(&vault, &edited_name, VersionSelector::Current).await;
    assert_eq!(current, *edited.values.last().unwrap());
    let report = vault.verify().await.unwrap();
    let mut failed: Vec<(&str, Option<i64>)> = report
        .failures
        .iter()
        .map(|f| (f.name.as_str(), f.version))
        .collect();
    failed.sort();
    let mut expected = vec![(moved.name.as_str(), None), (edited.name.as_str(), Some(1))];
    expected.sort();
    assert_eq!(failed, expected, "{report:?}");
}
