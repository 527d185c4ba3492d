//! The vault's SQLite schema, its version and migrations, and the checks run before a vault
//! file is trusted: file mode, SQLite header (magic), `PRAGMA quick_check` (SQLite's own
//! judgement of the file, after replaying its WAL), schema version.
//!
//! The schema version lives in the `meta` table. Migrations run in order inside one
//! `BEGIN IMMEDIATE` transaction; a vault written by a newer build (a version above
//! [`SCHEMA_VERSION`]) is refused with `UnsupportedVersion` before anything is written.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::compact::{self, Trust};
use super::mac::{MAC_KEY_ROW, MacKey, StageMap};

use crate::error::{Error, ErrorKind, Result};

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: u32 = 5;

/// The last version reached by SQL alone; the steps to 4 and 5 need the metadata key
/// ([`upgrade_from_3`], [`upgrade_to_5`]).
pub(crate) const SQL_VERSION: u32 = 3;

/// The first version with authenticated metadata (a metadata key, row MACs, the file's
/// application id).
pub(crate) const MAC_VERSION: u32 = 4;

/// 4 -> 5, after the rows are rewritten in the compact forms (see the `compact` module):
/// the namespace index goes (a namespace's secrets are found by name prefix).
const TO_5: &str = "DROP INDEX IF EXISTS secrets_namespace;";

/// 3 -> 4: authenticated metadata, and the secret's row carries its stage map and its current
/// version (whose envelope moves there from `versions`), so a current read touches that row
/// only. The `stages` table is folded into `secrets.stages` and dropped. `versions` is rebuilt
/// keyed by `(secret_id, version)` without a rowid: the key it was always looked up by, and
/// no second index holding the same pair.
const TO_4: &str = r#"
    ALTER TABLE secrets ADD COLUMN stages TEXT NOT NULL DEFAULT '';
    ALTER TABLE secrets ADD COLUMN cur_version INTEGER;
    ALTER TABLE secrets ADD COLUMN cur_envelope BLOB;
    ALTER TABLE secrets ADD COLUMN cur_created INTEGER;
    ALTER TABLE secrets ADD COLUMN mac BLOB;
    CREATE TABLE versions_4 (
        secret_id INTEGER NOT NULL REFERENCES secrets(id) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        envelope BLOB NOT NULL,
        created INTEGER NOT NULL,
        token TEXT,
        mac BLOB,
        PRIMARY KEY (secret_id, version)
    ) WITHOUT ROWID;
    INSERT INTO versions_4 (secret_id, version, envelope, created, token)
        SELECT secret_id, version, envelope, created, token FROM versions;
    DROP TABLE versions;
    ALTER TABLE versions_4 RENAME TO versions;
    CREATE UNIQUE INDEX versions_token ON versions(secret_id, token) WHERE token IS NOT NULL;
"#;

/// Migration `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1: the base schema.
    r#"
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE secrets (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        namespace TEXT NOT NULL,
        dek BLOB NOT NULL,
        next_version INTEGER NOT NULL,
        created INTEGER NOT NULL,
        updated INTEGER NOT NULL,
        last_rotated INTEGER,
        description TEXT,
        tags TEXT NOT NULL DEFAULT '{}',
        rotation_period INTEGER,
        purge_at INTEGER
    );
    CREATE INDEX secrets_namespace ON secrets(namespace);
    CREATE TABLE versions (
        id INTEGER PRIMARY KEY,
        secret_id INTEGER NOT NULL REFERENCES secrets(id) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        envelope BLOB NOT NULL,
        created INTEGER NOT NULL,
        token TEXT,
        UNIQUE (secret_id, version)
    );
    CREATE UNIQUE INDEX versions_token ON versions(secret_id, token) WHERE token IS NOT NULL;
    CREATE TABLE stages (
        secret_id INTEGER NOT NULL REFERENCES secrets(id) ON DELETE CASCADE,
        stage TEXT NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (secret_id, stage)
    ) WITHOUT ROWID;
    CREATE TABLE key_namespaces (
        namespace TEXT PRIMARY KEY,
        revision INTEGER NOT NULL,
        record TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE master_checks (
        provider TEXT NOT NULL,
        version INTEGER NOT NULL,
        check_value TEXT NOT NULL,
        PRIMARY KEY (provider, version)
    ) WITHOUT ROWID;
    INSERT INTO meta (key, value) VALUES ('key_epoch', '0');
    "#,
    // 1 -> 2: soft-deleted secrets are found by purge time without a scan.
    "CREATE INDEX secrets_purge ON secrets(purge_at) WHERE purge_at IS NOT NULL;",
    // 2 -> 3: key lifecycle. Each secret's DEK records when it was made and how many values
    // it has encrypted (persisted, shared by processes); a master key version records when
    // this vault first saw it. Existing DEKs date from their secret's creation and have
    // encrypted one value per stored version.
    r#"
    ALTER TABLE secrets ADD COLUMN dek_created INTEGER;
    ALTER TABLE secrets ADD COLUMN dek_uses INTEGER NOT NULL DEFAULT 0;
    UPDATE secrets SET dek_created = created,
        dek_uses = (SELECT count(*) FROM versions WHERE versions.secret_id = secrets.id);
    ALTER TABLE master_checks ADD COLUMN created INTEGER;
    "#,
];

/// Maps a SQLite error to a sealbox kind: corruption is `Integrity`, a locked database
/// `Unavailable`, a full disk or I/O failure `Io`.
pub(crate) fn sql_error(context: &str, e: rusqlite::Error) -> Error {
    use rusqlite::ffi::ErrorCode;
    // A value of another type than the vault ever writes there: the file was edited.
    let edited = matches!(
        e,
        rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::Utf8Error(..)
    );
    // The vault's statements are fixed: one naming a table or column that is not there means
    // the schema was altered (a table dropped or renamed), not a bug of the caller.
    let sqlite_says = match &e {
        rusqlite::Error::SqliteFailure(_, Some(m)) => m.as_str(),
        rusqlite::Error::SqlInputError { msg, .. } => msg.as_str(),
        _ => "",
    };
    let altered = sqlite_says.starts_with("no such table")
        || sqlite_says.starts_with("no such column")
        || sqlite_says.contains("has no column named");
    if altered {
        // SQLite's own words, without the statement text it may append.
        let what = sqlite_says.to_owned();
        return Error::new(
            ErrorKind::Integrity,
            format!(
                "local vault: {context}: {what}: the vault's tables were altered; restore it \
                 from a backup"
            ),
        )
        .with_source(e);
    }
    let kind = match e.sqlite_error_code() {
        _ if edited => ErrorKind::Integrity,
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => ErrorKind::Integrity,
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => ErrorKind::Unavailable,
        Some(
            ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure
            | ErrorCode::CannotOpen
            | ErrorCode::PermissionDenied
            | ErrorCode::ReadOnly,
        ) => ErrorKind::Io,
        _ => ErrorKind::Internal,
    };
    let hint = match kind {
        ErrorKind::Integrity => "; the vault file is damaged: restore it from a backup",
        ErrorKind::Unavailable => "; another process holds the vault lock, retry later",
        _ => "",
    };
    Error::new(kind, format!("local vault: {context}: {e}{hint}")).with_source(e)
}

/// Refuses a symlink, a file another user owns, and a file that group or others can access,
/// each with the command that fixes it; a missing file passes (SQLite creates it later). The
/// checks run on a descriptor opened with `O_NOFOLLOW`, so they describe the file itself and
/// not where a link points. SQLite opens the path again afterwards (its `SQLITE_OPEN_NOFOLLOW`
/// would also refuse symlinked parent directories, which are legitimate); replacing the file
/// in between takes write access to its directory, which already allows replacing the vault.
pub(crate) fn check_mode(path: &Path, what: &str) -> Result<()> {
    // O_NONBLOCK: a FIFO planted at the path must not hang the open; no effect on files.
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(Error::config(format!(
                "{what} {} is a symlink, which sealbox refuses; point sealbox at the file itself",
                path.display()
            )));
        }
        Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
    if !meta.file_type().is_file() {
        return Err(Error::config(format!(
            "{what} {} is not a regular file; point sealbox at the vault file itself",
            path.display()
        )));
    }
    crate::keys::check_owner(path, what, meta.uid())?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::config(format!(
            "{what} {} has mode {mode:o}, readable or writable by group or others; run \
             `chmod 600 {}` (sealbox refuses to use it as is)",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

/// Checks the start of the file before SQLite sees it: a file too short to hold a database
/// header is `Truncated`, a file that is not SQLite is `Integrity`.
///
/// The file's length is not compared with the header's page count here: while a process
/// checkpoints its WAL into the file (and after one is killed doing so) page 1 already records
/// the grown database while the later pages are still only in the WAL. SQLite replays the WAL
/// and judges the length itself; [`truncation`] names the damage once SQLite has refused.
pub(crate) fn check_header(path: &Path) -> Result<()> {
    let (len, header, read) = read_header(path)?;
    if read < header.len() {
        return Err(Error::new(
            ErrorKind::Truncated,
            format!(
                "local vault {} is {len} bytes, shorter than a database header; restore it \
                 from a backup",
                path.display()
            ),
        ));
    }
    if &header[..16] != b"SQLite format 3\0" {
        return Err(Error::new(
            ErrorKind::Integrity,
            format!(
                "{} is not a sealbox vault (no SQLite header); it may be damaged",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// After SQLite refused the file as damaged: `Truncated` when the file is shorter than its
/// header's page count, so the error says what happened. `None` when the length is not the
/// explanation (or cannot be read), and the caller keeps SQLite's own error.
pub(crate) fn truncation(path: &Path) -> Option<Error> {
    let (len, header, read) = read_header(path).ok()?;
    if read < header.len() {
        return None;
    }
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65536u64,
        n => u64::from(n),
    };
    let pages = u64::from(u32::from_be_bytes([
        header[28], header[29], header[30], header[31],
    ]));
    // The header's page count is valid when its change counter matches "version valid for".
    let counter_valid = header[24..28] == header[92..96];
    (counter_valid && pages > 0 && len < pages * page_size).then(|| {
        Error::new(
            ErrorKind::Truncated,
            format!(
                "local vault {} is {len} bytes but its header records {pages} pages of \
                 {page_size} bytes, and SQLite found the file damaged: it was truncated; \
                 restore it from a backup",
                path.display()
            ),
        )
    })
}

/// The vault's SQLite application id (`PRAGMA application_id`, bytes 68..72 of the file's
/// first page), derived from its store id: a journal (WAL) holding another vault's first page
/// or `meta` rows shows a different id, or an id that does not match the store id it shows.
pub(crate) fn application_id(store_id: &str) -> i32 {
    let d = ring::digest::digest(&ring::digest::SHA256, store_id.as_bytes());
    let b = d.as_ref();
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The application id in the main file's own header, before SQLite replays any journal.
pub(crate) fn file_application_id(path: &Path) -> Result<i32> {
    let (_, header, _) = read_header(path)?;
    Ok(i32::from_be_bytes([
        header[68], header[69], header[70], header[71],
    ]))
}

/// Refuses a vault whose journal (WAL) belongs to another vault file: the id the main file's
/// header holds (`file_id`, read before SQLite replayed the journal; 0 until the first
/// checkpoint after the upgrade to schema 4), the id SQLite now sees, and the store id it now
/// sees must agree.
pub(crate) fn check_application_id(
    conn: &Connection,
    db: &Path,
    file_id: i32,
    store_id: &str,
) -> Result<()> {
    let seen: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| sql_error("reading the application id", e))?;
    let expected = application_id(store_id);
    if seen == expected && (file_id == 0 || file_id == expected) {
        return Ok(());
    }
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    Err(Error::new(
        ErrorKind::Integrity,
        format!(
            "local vault {}: its journal {} belongs to another vault (or the file's header was \
             edited): the pages it holds do not match this file's identity. Nothing was \
             read or written; move the journal aside (it is another vault's uncommitted \
             state) or restore the vault from a backup",
            db.display(),
            Path::new(&wal).display()
        ),
    ))
}

/// The file's length and its first 100 bytes (how many were read).
fn read_header(path: &Path) -> Result<(u64, [u8; 100], usize)> {
    // O_NOFOLLOW and O_NONBLOCK as in `check_mode`: never a link, never hang on a FIFO.
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::not_found(format!(
                "no local vault at {}; create one first",
                path.display()
            )),
            _ => Error::io(format!("opening {}", path.display()), e),
        })?;
    let len = file
        .metadata()
        .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
        .len();
    let mut header = [0u8; 100];
    let mut read = 0;
    while read < header.len() {
        match file.read(&mut header[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }
    Ok((len, header, read))
}

/// Runs `PRAGMA quick_check` (or the slower `integrity_check` when `full`).
pub(crate) fn check_structure(conn: &Connection, full: bool) -> Result<()> {
    let pragma = if full {
        "PRAGMA integrity_check"
    } else {
        "PRAGMA quick_check"
    };
    let mut stmt = conn
        .prepare(pragma)
        .map_err(|e| sql_error("checking the database structure", e))?;
    let problems: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(|e| sql_error("checking the database structure", e))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| sql_error("checking the database structure", e))?;
    if problems.len() == 1 && problems[0] == "ok" {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Integrity,
        format!(
            "local vault failed its structure check ({} problem(s), first: {}); restore it \
             from a backup",
            problems.len(),
            problems.first().map(String::as_str).unwrap_or("?")
        ),
    ))
}

/// The stored schema version, `0` for an empty database.
pub(crate) fn stored_version(conn: &Connection) -> Result<u32> {
    let has_meta: bool = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
        .map_err(|e| sql_error("reading the schema", e))?;
    if !has_meta {
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(|e| sql_error("reading the schema", e))?;
        if tables > 0 {
            let ours: i64 = conn
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN \
                     ('secrets', 'versions', 'stages', 'key_namespaces', 'master_checks')",
                    [],
                    |r| r.get(0),
                )
                .map_err(|e| sql_error("reading the schema", e))?;
            if ours > 0 {
                return Err(Error::new(
                    ErrorKind::Integrity,
                    "local vault has lost its `meta` table (schema version, store id): the \
                     file was altered; restore it from a backup",
                ));
            }
            return Err(Error::config(
                "this SQLite database is not a sealbox vault (it has other tables)",
            ));
        }
        return Ok(0);
    }
    let v: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| sql_error("reading the schema version", e))?;
    v.and_then(|v| v.parse().ok()).ok_or_else(|| {
        Error::new(
            ErrorKind::Integrity,
            "local vault has no readable schema version; it may be damaged",
        )
    })
}

/// The tables every vault of [`SCHEMA_VERSION`] has (version 3 also has `stages`).
const TABLES: &[&str] = &[
    "meta",
    "secrets",
    "versions",
    "key_namespaces",
    "master_checks",
];

/// Refuses a vault missing one of its tables (dropped or renamed by hand): `Integrity`,
/// naming the table, rather than a `no such table` on some later read.
pub(crate) fn check_tables(conn: &Connection, version: u32) -> Result<()> {
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .map_err(|e| sql_error("reading the schema", e))?;
    let present: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| sql_error("reading the schema", e))?;
    let v3 = ["stages"];
    let needed = TABLES
        .iter()
        .chain(v3.iter().filter(|_| version == SQL_VERSION));
    match needed
        .into_iter()
        .find(|t| !present.iter().any(|p| p == *t))
    {
        Some(missing) => Err(Error::new(
            ErrorKind::Integrity,
            format!(
                "local vault is missing its `{missing}` table: the file was altered; restore \
                 it from a backup"
            ),
        )),
        None => Ok(()),
    }
}

/// Refuses a vault from a newer build.
pub(crate) fn check_version(version: u32) -> Result<()> {
    if version > SCHEMA_VERSION {
        return Err(Error::new(
            ErrorKind::UnsupportedVersion,
            format!(
                "local vault schema version {version} is newer than this build understands \
                 ({SCHEMA_VERSION}); upgrade sealbox (the vault was not modified)"
            ),
        ));
    }
    Ok(())
}

/// Brings the schema to `target` (at most [`SQL_VERSION`]) in one transaction, writing
/// `store_id` when the vault is new. Returns the version found before migrating.
pub(crate) fn migrate(conn: &mut Connection, target: u32, store_id: &str) -> Result<u32> {
    let target = target.min(SQL_VERSION);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| sql_error("starting the migration", e))?;
    // Re-read inside the write lock: another process may have migrated meanwhile.
    let from = stored_version(&tx)?;
    check_version(from)?;
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .take(target as usize)
        .skip(from as usize)
    {
        tx.execute_batch(sql)
            .map_err(|e| sql_error(&format!("applying schema migration {}", i + 1), e))?;
    }
    if from == 0 {
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('store_id', ?1)",
            [store_id],
        )
        .map_err(|e| sql_error("recording the store id", e))?;
    }
    if from < target {
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?1)",
            [target.to_string()],
        )
        .map_err(|e| sql_error("recording the schema version", e))?;
    }
    tx.commit()
        .map_err(|e| sql_error("committing the migration", e))?;
    Ok(from)
}

/// 4 -> 5 in one transaction: every secret's wrapped DEK and envelopes rewritten in the
/// compact forms, each row resealed only if its schema-4 MAC checks (see
/// [`compact::compact_secret`]), the namespace index dropped, version 5 recorded. A crash at
/// any point leaves version 4 untouched or version 5 complete. Returns the version found
/// (another process may have upgraded first: then nothing is done).
pub(crate) fn upgrade_to_5(conn: &mut Connection, mac: &MacKey) -> Result<u32> {
    let err = |e| sql_error("upgrading the vault to schema 5", e);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let from = stored_version(&tx)?;
    check_version(from)?;
    if from != MAC_VERSION {
        return Ok(from);
    }
    check_tables(&tx, from)?;
    for id in secret_ids(&tx)? {
        compact::compact_secret(&tx, mac, id, Trust::CheckedV4)?;
    }
    tx.execute_batch(TO_5).map_err(err)?;
    tx.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?1)",
        [SCHEMA_VERSION.to_string()],
    )
    .map_err(err)?;
    tx.commit().map_err(err)?;
    Ok(from)
}

fn secret_ids(tx: &Connection) -> Result<Vec<i64>> {
    tx.prepare("SELECT id FROM secrets ORDER BY id")
        .and_then(|mut s| {
            s.query_map([], |r| r.get(0))
                .and_then(|rows| rows.collect())
        })
        .map_err(|e| sql_error("reading secrets", e))
}

/// 3 -> 5 in one transaction: the columns of schema 4, each secret's stage map and
/// current-version copy, its wrapped DEK and envelopes in the compact forms, a MAC on every
/// row and the set MAC (under `mac`, whose wrapped form `wrapped_key` is stored in `meta`),
/// the `stages` table and the namespace index dropped, version 5 recorded. A crash at any
/// point leaves version 3 untouched or version 5 complete. Returns the version found (another
/// process may have upgraded first: then nothing is done).
pub(crate) fn upgrade_from_3(
    conn: &mut Connection,
    mac: &MacKey,
    wrapped_key: &str,
) -> Result<u32> {
    let err = |e| sql_error("upgrading the vault to schema 5", e);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let from = stored_version(&tx)?;
    check_version(from)?;
    if from != SQL_VERSION {
        return Ok(from);
    }
    check_tables(&tx, from)?;
    tx.execute_batch(TO_4).map_err(err)?;
    let mut maps: BTreeMap<i64, StageMap> = BTreeMap::new();
    {
        let mut stmt = tx
            .prepare("SELECT secret_id, stage, version FROM stages")
            .map_err(err)?;
        let rows: Vec<(i64, String, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|rows| rows.collect())
            .map_err(err)?;
        for (id, stage, version) in rows {
            maps.entry(id).or_default().0.insert(stage, version);
        }
    }
    for (id, map) in &maps {
        tx.execute(
            "UPDATE secrets SET stages = ?2 WHERE id = ?1",
            params![id, map.to_text()],
        )
        .map_err(err)?;
    }
    for id in secret_ids(&tx)? {
        compact::compact_secret(&tx, mac, id, Trust::Unsealed)?;
    }
    let versions: Vec<(i64, i64)> = tx
        .prepare("SELECT secret_id, version FROM versions")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|rows| rows.collect())
        })
        .map_err(err)?;
    for (id, version) in versions {
        mac.seal_version(&tx, id, version)?;
    }
    let secrets: Vec<(i64, String)> = tx
        .prepare("SELECT id, name FROM secrets")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|rows| rows.collect())
        })
        .map_err(err)?;
    for (id, name) in secrets {
        mac.seal_secret(&tx, id)?;
        mac.toggle_member(&tx, id, &name)?;
    }
    tx.execute_batch("DROP TABLE stages").map_err(err)?;
    tx.execute_batch(TO_5).map_err(err)?;
    let store_id: String = tx
        .query_row("SELECT value FROM meta WHERE key = 'store_id'", [], |r| {
            r.get(0)
        })
        .map_err(err)?;
    tx.execute_batch(&format!(
        "PRAGMA application_id = {}",
        application_id(&store_id)
    ))
    .map_err(err)?;
    tx.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
        params![MAC_KEY_ROW, wrapped_key],
    )
    .map_err(err)?;
    tx.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?1)",
        [SCHEMA_VERSION.to_string()],
    )
    .map_err(err)?;
    tx.commit().map_err(err)?;
    Ok(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        Connection::open_in_memory().unwrap()
    }

    #[test]
    fn a_new_database_migrates_to_the_current_version() {
        let mut c = conn();
        assert_eq!(migrate(&mut c, SQL_VERSION, "s1").unwrap(), 0);
        assert_eq!(stored_version(&c).unwrap(), SQL_VERSION);
        // Idempotent.
        assert_eq!(migrate(&mut c, SQL_VERSION, "s1").unwrap(), SQL_VERSION);
    }

    #[test]
    fn an_older_schema_is_upgraded_in_place() {
        let mut c = conn();
        migrate(&mut c, 1, "s1").unwrap();
        assert_eq!(stored_version(&c).unwrap(), 1);
        c.execute(
            "INSERT INTO secrets (name, namespace, dek, next_version, created, updated) \
             VALUES ('a', 'a', x'00', 1, 0, 0)",
            [],
        )
        .unwrap();
        assert_eq!(migrate(&mut c, SQL_VERSION, "ignored").unwrap(), 1);
        assert_eq!(stored_version(&c).unwrap(), SQL_VERSION);
        let idx: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'secrets_purge'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(idx, 1);
        let rows: i64 = c
            .query_row("SELECT count(*) FROM secrets", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1, "migration keeps data");
        let id: String = c
            .query_row("SELECT value FROM meta WHERE key='store_id'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(id, "s1");
    }

    #[test]
    fn a_newer_schema_is_refused_untouched() {
        let mut c = conn();
        migrate(&mut c, SQL_VERSION, "s1").unwrap();
        c.execute(
            "UPDATE meta SET value = '99' WHERE key = 'schema_version'",
            [],
        )
        .unwrap();
        let err = migrate(&mut c, SQL_VERSION, "s1").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnsupportedVersion);
        assert_eq!(stored_version(&c).unwrap(), 99);
    }

    #[test]
    fn a_foreign_database_is_refused() {
        let mut c = conn();
        c.execute_batch("CREATE TABLE users (id INTEGER)").unwrap();
        assert_eq!(
            migrate(&mut c, SQL_VERSION, "s").unwrap_err().kind(),
            ErrorKind::Config
        );
    }
}
