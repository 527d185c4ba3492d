//! A small pool of SQLite connections to one vault file, so concurrent callers each get their
//! own connection (SQLite connections are not shareable across threads) and prepared
//! statements stay cached between calls.

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::schema::sql_error;
use crate::error::{Error, Result};
use crate::process::ProcessStamp;

/// Idle connections kept for reuse; more may be open at once under load.
const MAX_IDLE: usize = 8;

#[derive(Debug)]
pub(crate) struct Pool {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
    /// SQLite connections must not be carried across `fork()`: in a child every call answers
    /// `Forked`, and the inherited connections are left alone (never closed there).
    stamp: ProcessStamp,
}

impl Pool {
    pub(crate) fn new(path: PathBuf, busy_timeout: Duration) -> Pool {
        Pool {
            path,
            busy_timeout,
            idle: Mutex::new(Vec::new()),
            stamp: ProcessStamp::new(),
        }
    }

    /// False in a forked child of the process that made the pool.
    pub(crate) fn in_owner_process(&self) -> bool {
        self.stamp.is_current()
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A connection for the caller's exclusive use; it returns to the pool on drop.
    pub(crate) fn get(self: &Arc<Self>) -> Result<PooledConn> {
        self.stamp.check("local vault")?;
        let reused = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match reused {
            Some(c) => c,
            None => open_connection(&self.path, self.busy_timeout, false)?,
        };
        Ok(PooledConn {
            conn: Some(conn),
            pool: Arc::clone(self),
        })
    }

    /// Closes every idle connection (tests that tamper with the file use this).
    pub(crate) fn clear(&self) {
        if !self.stamp.is_current() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if !self.stamp.is_current() {
            // The parent's connections: closing them here could checkpoint or unlink the
            // parent's WAL files under it.
            let idle = std::mem::take(self.idle.get_mut().unwrap_or_else(|p| p.into_inner()));
            std::mem::forget(idle);
        }
    }
}

/// Opens one connection with the vault's per-connection settings: a busy timeout so writers
/// from several processes queue instead of failing, `synchronous = FULL` so a returned `put` is
/// on disk, foreign keys on, `secure_delete` so deleted rows are overwritten, and an 8 MiB
/// page cache so index pages of a large vault stay in memory (reads stay flat as it grows).
pub(crate) fn open_connection(
    path: &Path,
    busy_timeout: Duration,
    create: bool,
) -> Result<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| sql_error(&format!("opening {}", path.display()), e))?;
    conn.busy_timeout(busy_timeout)
        .map_err(|e| sql_error("setting the busy timeout", e))?;
    conn.execute_batch(
        "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL; PRAGMA secure_delete = ON; \
         PRAGMA cache_size = -8192;",
    )
    .map_err(|e| sql_error("configuring the connection", e))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// A pooled connection; derefs to [`Connection`].
#[derive(Debug)]
pub(crate) struct PooledConn {
    conn: Option<Connection>,
    pool: Arc<Pool>,
}

impl Deref for PooledConn {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        // Only `drop` takes the connection out.
        self.conn.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl DerefMut for PooledConn {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        // A connection left inside a transaction (a panic mid-write) is not reused.
        if !conn.is_autocommit() {
            return;
        }
        if let Ok(mut idle) = self.pool.idle.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(conn);
        }
    }
}

/// `Error` for a poisoned or otherwise impossible pool state.
#[allow(dead_code)]
pub(crate) fn pool_error() -> Error {
    Error::internal("local vault connection pool is unusable")
}
