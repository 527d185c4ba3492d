//! The schema-3 layout (before authenticated metadata), for migration tests that need a bigger
//! old vault than the checked-in fixture: a vault written by today's code is taken back to
//! exactly the tables and columns schema 3 had (the `stages` table rebuilt from each secret's
//! stage map; the MAC columns, the current-version copy and the metadata key's `meta` rows
//! dropped). What stays is the metadata namespace's key record, as after a migration that was
//! killed once the key existed: the old build never reads it.

use std::path::Path;

use sealbox::keys::{Envelope, WrappedDek};

/// The schema-3 `stages` table, as the old build created it.
const STAGES_V3: &str = "CREATE TABLE stages (
        secret_id INTEGER NOT NULL REFERENCES secrets(id) ON DELETE CASCADE,
        stage TEXT NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (secret_id, stage)
    ) WITHOUT ROWID;";

/// Rewrites the closed schema-5 vault at `db` into the schema-3 layout.
pub fn downgrade_to_v3(db: &Path) {
    let mut conn = rusqlite::Connection::open(db).unwrap();
    let tx = conn.transaction().unwrap();
    tx.execute_batch(STAGES_V3).unwrap();
    let maps: Vec<(i64, String)> = tx
        .prepare("SELECT id, stages FROM secrets")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (id, map) in maps {
        for entry in map.split(',').filter(|e| !e.is_empty()) {
            let (stage, version) = entry.split_once('=').unwrap();
            let version: i64 = version.parse().unwrap();
            tx.execute(
                "INSERT INTO stages (secret_id, stage, version) VALUES (?1, ?2, ?3)",
                rusqlite::params![id, stage, version],
            )
            .unwrap();
        }
    }
    // Schema 4 stores the current version's envelope in the secret's row alone and keys
    // `versions` by (secret, version) without a rowid; schema 3 had it in `versions`.
    tx.execute_batch(
        "UPDATE versions SET envelope = (SELECT cur_envelope FROM secrets s \
             WHERE s.id = versions.secret_id) \
         WHERE length(envelope) = 0 AND version = (SELECT cur_version FROM secrets s \
             WHERE s.id = versions.secret_id);
         CREATE TABLE versions_v3 (
             id INTEGER PRIMARY KEY,
             secret_id INTEGER NOT NULL REFERENCES secrets(id) ON DELETE CASCADE,
             version INTEGER NOT NULL,
             envelope BLOB NOT NULL,
             created INTEGER NOT NULL,
             token TEXT,
             UNIQUE (secret_id, version)
         );
         INSERT INTO versions_v3 (secret_id, version, envelope, created, token)
             SELECT secret_id, version, envelope, created, token FROM versions
             ORDER BY secret_id, version;
         DROP TABLE versions;
         ALTER TABLE versions_v3 RENAME TO versions;
         CREATE UNIQUE INDEX versions_token ON versions(secret_id, token) \
             WHERE token IS NOT NULL;",
    )
    .unwrap();
    // Schema 5 keeps wrapped DEKs and envelopes without the header bytes their row implies;
    // schema 3 stored them whole, and indexed secrets by namespace.
    let deks: Vec<(i64, String, Vec<u8>)> = tx
        .prepare("SELECT id, namespace, dek FROM secrets")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (id, namespace, dek) in deks {
        let wrapped = WrappedDek::from_compact(&namespace, &dek).unwrap();
        tx.execute(
            "UPDATE secrets SET dek = ?2 WHERE id = ?1",
            rusqlite::params![id, wrapped.to_bytes()],
        )
        .unwrap();
        let versions: Vec<(i64, Vec<u8>)> = tx
            .prepare("SELECT id, envelope FROM versions WHERE secret_id = ?1")
            .unwrap()
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for (row, body) in versions {
            let envelope =
                Envelope::attach_header(wrapped.dek_id().as_str(), wrapped.dek_version(), &body);
            tx.execute(
                "UPDATE versions SET envelope = ?2 WHERE id = ?1",
                rusqlite::params![row, envelope],
            )
            .unwrap();
        }
    }
    tx.execute_batch(
        "CREATE INDEX secrets_namespace ON secrets(namespace);
         ALTER TABLE secrets DROP COLUMN stages;
         ALTER TABLE secrets DROP COLUMN cur_version;
         ALTER TABLE secrets DROP COLUMN cur_envelope;
         ALTER TABLE secrets DROP COLUMN cur_created;
         ALTER TABLE secrets DROP COLUMN mac;
         DELETE FROM meta WHERE key IN ('mac_key', 'secrets_set');
         UPDATE meta SET value = '3' WHERE key = 'schema_version';",
    )
    .unwrap();
    tx.commit().unwrap();
    conn.execute_batch("VACUUM").unwrap();
}

/// The stored schema version of the vault at `db`.
pub fn schema_version(db: &Path) -> String {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}
