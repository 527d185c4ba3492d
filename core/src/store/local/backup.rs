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
    {
        let source = pool.get()?;
        let backup = Backup::new(&source, &mut target).map_err(err)?;
        let started = Instant::now();
        loop {
            // -1: every page in one step, so in one read transaction: one committed state.
            match backup.step(-1).map_err(err)? {
                StepResult::Done => break,
                StepResult::More | StepResult::Busy | StepResult::Locked
                    if started.elapsed() < BUSY_WAIT =>
                {
                    thread::sleep(Duration::from_millis(5));
                }
                _ => {
                    return Err(Error::new(
                        ErrorKind::Unavailable,
                        "the vault stayed locked for 30 s during the backup; try again",
                    ));
                }
            }
        }
    }
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
