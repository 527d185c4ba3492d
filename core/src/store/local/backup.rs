//! Online backups: a consistent copy of a live vault, taken through SQLite's online backup API
//! while other connections and processes keep reading and writing it.
//!
//! The whole database is copied in one backup step, which reads it in a single read
//! transaction: in WAL mode that transaction sees one committed state of the vault (writers are
//! not blocked and their later commits are not seen), so a backup holds exactly the writes
//! committed before it started, never part of one. The copy keeps the vault's store id, so it
//! opens and verifies with the same key material, and it is written to a new file created
//! `0600` (never over an existing file or through a symbolic link) and synced to disk with its
//! directory entry before `backup_to` returns.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::pool::Pool;
use super::schema::sql_error;
use crate::error::{Error, ErrorKind, Result};

/// How long a backup waits for a lock held by another connection (a checkpoint or a
/// rollback-journal writer) before giving up.
const BUSY_WAIT: Duration = Duration::from_secs(30);

/// What [`super::LocalVault::backup_to`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupInfo {
    /// The backup file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// The vault's write counter at the moment of the copy (see the module docs of
    /// `LocalVault` on rollback detection).
    pub write_count: u64,
}

/// Copies the vault behind `pool` into a new file at `dest`; see the [module docs](self).
pub(crate) fn backup(pool: &std::sync::Arc<Pool>, dest: &Path) -> Result<BackupInfo> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dest)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "{} already exists; a backup never overwrites a file, choose a new name",
                    dest.display()
                ),
            ),
            _ => Error::io(format!("creating backup file {}", dest.display()), e),
        })?;
    match copy_into(pool, dest, &file) {
        Ok(info) => Ok(info),
        Err(e) => {
            // Leave no partial backup that could be mistaken for a good one.
            let _ = fs::remove_file(dest);
            let mut journal = dest.as_os_str().to_owned();
            journal.push("-journal");
            let _ = fs::remove_file(PathBuf::from(journal));
            Err(e)
        }
    }
}

fn copy_into(pool: &std::sync::Arc<Pool>, dest: &Path, file: &File) -> Result<BackupInfo> {
    let err = |e| sql_error("writing the backup", e);
    let mut target = Connection::open_with_flags(
        dest,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    // The file SQLite opened must be the one created above (not something put in its place).
    let ours = file
        .metadata()
        .map_err(|e| Error::io(format!("reading {}", dest.display()), e))?;
    let now = fs::symlink_metadata(dest)
        .map_err(|e| Error::io(format!("reading {}", dest.display()), e))?;
    if (ours.dev(), ours.ino()) != (now.dev(), now.ino()) {
        return Err(Error::new(
            ErrorKind::Integrity,
            format!(
                "{} was replaced while the backup was being written; nothing was backed up",
                dest.display()
            ),
        ));
    }
    copy_pages(
        &*pool.get()?,
        &mut target,
        "writing the backup",
        "the vault stayed locked for 30 s during the backup; try again",
    )?;
    // Marked, so that `verify` tells a backup (behind the vault by design) from an older
    // copy put in the vault's place; opening it as the vault is refused all the same.
    target
        .execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            rusqlite::params![
                super::rollback::BACKUP_MARK,
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64)
                    .to_string()
            ],
        )
        .map_err(err)?;
    // The copy is a single self-contained file: no WAL beside it.
    target
        .query_row("PRAGMA journal_mode = DELETE", [], |r| {
            r.get::<_, String>(0)
        })
        .map_err(err)?;
    let write_count: i64 = target
        .query_row(
            "SELECT COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'write_count'), 0)",
            [],
            |r| r.get(0),
        )
        .map_err(err)?;
    target.close().map_err(|(_, e)| err(e))?;
    file.sync_all()
        .map_err(|e| Error::io(format!("syncing {}", dest.display()), e))?;
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))?;
    let bytes = file
        .metadata()
        .map_err(|e| Error::io(format!("reading {}", dest.display()), e))?
        .len();
    Ok(BackupInfo {
        path: dest.to_path_buf(),
        bytes,
        write_count: write_count.max(0) as u64,
    })
}

/// Copies every page of `source` into `target` through SQLite's backup API, in one step so in
/// one read transaction (one committed state), waiting up to [`BUSY_WAIT`] while the source
/// is locked; `what` names the operation in SQLite errors, `locked` is the message when the
/// source stays locked.
fn copy_pages(
    source: &Connection,
    target: &mut Connection,
    what: &str,
    locked: &str,
) -> Result<()> {
    let err = |e| sql_error(what, e);
    let backup = Backup::new(source, target).map_err(err)?;
    let started = Instant::now();
    loop {
        match backup.step(-1).map_err(err)? {
            StepResult::Done => return Ok(()),
            StepResult::More | StepResult::Busy | StepResult::Locked
                if started.elapsed() < BUSY_WAIT =>
            {
                thread::sleep(Duration::from_millis(5));
            }
            _ => return Err(Error::new(ErrorKind::Unavailable, locked)),
        }
    }
}

/// What [`super::LocalVault::restore_backup`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreInfo {
    /// The vault file now holding the backup's contents.
    pub vault: PathBuf,
    /// The vault's store id (the backup's, which must be the vault's).
    pub store_id: String,
    /// The restored write counter, now also the one recorded in the key provider.
    pub write_count: u64,
    /// How many writes the key provider had recorded beyond the backup (discarded).
    pub writes_discarded: u64,
    /// Secrets and versions in the restored vault, all decrypted and authenticated first.
    pub secrets: u64,
    /// Versions checked.
    pub versions: u64,
}

/// The store id in the vault file `db`, read without opening it as a vault (it may be an
/// older copy that refuses to open).
pub(crate) fn store_id_of(db: &Path) -> Result<Option<String>> {
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sql_error(&format!("opening {}", db.display()), e))?;
    use rusqlite::OptionalExtension;
    conn.query_row("SELECT value FROM meta WHERE key = 'store_id'", [], |r| {
        r.get(0)
    })
    .optional()
    .map_err(|e| sql_error(&format!("reading the store id of {}", db.display()), e))
}

/// Copies the database behind `source` over the vault file `db` (created `0600` if absent)
/// through the backup API, so that connections other processes hold see either the old or the
/// new contents, and marks it as a vault again (not a backup). Returns the copied counter.
pub(crate) fn copy_over(source: &std::sync::Arc<Pool>, db: &Path, busy: Duration) -> Result<u64> {
    let err = |e| sql_error("restoring the backup", e);
    if fs::symlink_metadata(db).is_err() {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(db)
            .map_err(|e| Error::io(format!("creating {}", db.display()), e))?;
    }
    let mut target = super::pool::open_connection(db, busy, false)?;
    copy_pages(
        &*source.get()?,
        &mut target,
        "restoring the backup",
        "the vault stayed locked for 30 s during the restore; stop the processes using it and \
         try again",
    )?;
    target
        .execute(
            "DELETE FROM meta WHERE key = ?1",
            [super::rollback::BACKUP_MARK],
        )
        .map_err(err)?;
    target
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
        .map_err(err)?;
    target
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(err)?;
    super::rollback::stored(&target)
}
