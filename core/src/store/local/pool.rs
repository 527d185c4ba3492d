//! A small pool of SQLite connections to one vault file, so concurrent callers each get their
//! own connection (SQLite connections are not shareable across threads) and prepared
//! statements stay cached between calls; and the wait for the vault's write lock.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, TransactionBehavior};

use super::schema::sql_error;
use crate::error::{Error, ErrorKind, Result};
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

/// Opens one connection with the vault's per-connection settings: a busy timeout for the
/// statements that may meet another process's lock outside a write transaction (a read during
/// a journal recovery, a checkpoint; writes wait in [`begin_write`]), `synchronous = FULL` so a returned `put` is
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

impl PooledConn {
    /// `BEGIN IMMEDIATE`, waiting up to the vault's busy timeout for the write lock (see
    /// [`begin_write`]).
    pub(crate) fn begin_write(&self, context: &str) -> Result<Transaction<'_>> {
        begin_write(self, context, self.pool.busy_timeout)
    }
}

/// Longest pause between two tries for the write lock. SQLite's own busy handler sleeps up
/// to 100 ms between tries, so that under steady writes from other processes a waiting
/// writer kept missing the short gaps between their transactions (4 processes writing in a
/// loop: single writes waited up to 1.9 s).
const MAX_PAUSE: Duration = Duration::from_millis(8);

/// Starts a write transaction (`BEGIN IMMEDIATE`, which takes the write lock at once, so a
/// write never fails half-way on a lock). While another connection (any process) holds the
/// lock, it tries again after a short random pause, 0.5 to 1.5 times a pause doubling from
/// 0.25 ms to [`MAX_PAUSE`] (random, so that waiting processes do not retry in step), for at
/// most `bound` in all. Then `Unavailable`, saying how long it waited: a busy or locked
/// database never reaches the caller as such, and a writer never waits forever.
pub(crate) fn begin_write<'c>(
    conn: &'c Connection,
    context: &str,
    bound: Duration,
) -> Result<Transaction<'c>> {
    let started = Instant::now();
    // SQLite's busy handler stays set for the connection's other statements (reads during a
    // WAL recovery, checkpoints); this loop does the waiting for the write lock instead.
    conn.busy_timeout(Duration::ZERO)
        .map_err(|e| sql_error("setting the busy timeout", e))?;
    let result = begin_within(conn, started, bound);
    conn.busy_timeout(bound)
        .map_err(|e| sql_error("setting the busy timeout", e))?;
    result.map_err(|e| match e {
        Some(e) => sql_error(context, e),
        None => Error::new(
            ErrorKind::Unavailable,
            format!(
                "local vault: {context}: another connection held the vault's write lock for \
                 the whole busy timeout ({} ms); nothing was written. Retry, or raise the \
                 vault's busy timeout if writes from other processes take this long",
                bound.as_millis()
            ),
        ),
    })
}

/// The tries of [`begin_write`]: `Err(None)` when the bound passed with the lock held.
fn begin_within(
    conn: &Connection,
    started: Instant,
    bound: Duration,
) -> std::result::Result<Transaction<'_>, Option<rusqlite::Error>> {
    let random = RandomState::new();
    let mut pause = Duration::from_micros(250);
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        match Transaction::new_unchecked(conn, TransactionBehavior::Immediate) {
            Ok(tx) => return Ok(tx),
            Err(e) if is_busy(&e) => {
                let left = bound.saturating_sub(started.elapsed());
                if left.is_zero() {
                    return Err(None);
                }
                // 0.5 to 1.5 times the pause.
                let jitter = 0.5 + (random.hash_one(attempt) % 1024) as f64 / 1024.0;
                std::thread::sleep(pause.mul_f64(jitter).min(left));
                pause = (pause * 2).min(MAX_PAUSE);
            }
            Err(e) => return Err(Some(e)),
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
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
