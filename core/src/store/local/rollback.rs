//! Rollback detection: a vault replaced by an older copy of itself is refused on open.
//!
//! The vault keeps a write counter (`meta.write_count`), raised by one in the transaction of
//! every put, delete, restore, stage move, import, purge and erasure. The counter is also
//! recorded outside the vault, in the master key provider ([`KeyProvider::record_store_counter`];
//! the local key file keeps one per store id): at most every [`PUBLISH_EVERY`] writes of a
//! handle, when the last handle of a process is dropped, and by `verify`. On open, a vault
//! whose counter is below the recorded one is an older copy: `Integrity`, naming how many
//! writes it is behind.
//!
//! The window: a copy taken less than `PUBLISH_EVERY` writes (of one process) before the
//! replacement, and since the last close or verify, is not detected. Writes are never slowed
//! by a key-file write each, and reads do no work for this at all. Providers that keep no
//! counter (passphrase, environment, KMS, PKCS#11) detect nothing; `verify` says so.

use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, OptionalExtension};

use super::schema::sql_error;
use crate::error::{Error, ErrorKind, Result};
use crate::keys::KeyProvider;

/// A handle records its write counter in the key provider at most every this many writes.
pub const PUBLISH_EVERY: u64 = 32;

/// The `meta` key marking a file written by `backup_to` (its value: when, in ms).
pub(crate) const BACKUP_MARK: &str = "backup_taken";

/// Raises the vault's write counter inside the write transaction `tx`; returns the new value.
pub(crate) fn bump(tx: &Connection) -> Result<u64> {
    tx.prepare_cached(
        "INSERT INTO meta (key, value) VALUES ('write_count', '1') \
         ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1 \
         RETURNING CAST(value AS INTEGER)",
    )
    .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
    .map(|n| n.max(0) as u64)
    .map_err(|e| sql_error("counting the write", e))
}

/// The vault's write counter (0 for a vault that never counted).
pub(crate) fn stored(conn: &Connection) -> Result<u64> {
    conn.query_row(
        "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'write_count'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .optional()
    .map(|n| n.unwrap_or(0).max(0) as u64)
    .map_err(|e| sql_error("reading the write counter", e))
}

/// Whether the file is a backup written by `backup_to`.
pub(crate) fn is_backup(conn: &Connection) -> Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM meta WHERE key = ?1)",
        [BACKUP_MARK],
        |r| r.get(0),
    )
    .map_err(|e| sql_error("reading the vault's metadata", e))
}

/// The error for a vault `behind` writes behind what its key provider recorded.
pub(crate) fn behind_error(path: &std::path::Path, count: u64, recorded: u64) -> Error {
    Error::new(
        ErrorKind::Integrity,
        format!(
            "vault {} is older than its key file says: {} writes behind (the file holds write \
             {count}, the key file recorded {recorded}); it was replaced by an older copy of \
             itself. If you put a backup in place on purpose, run `sealbox backup restore \
             FILE` with it instead; otherwise restore the latest backup and find out who \
             replaced the file",
            path.display(),
            recorded - count
        ),
    )
}

/// One handle's view of the counter.
#[derive(Debug)]
pub(crate) struct Counter {
    store_id: String,
    /// The highest count this handle committed or found on open.
    committed: AtomicU64,
    /// The highest count this handle recorded in (or read from) the key provider.
    published: AtomicU64,
    /// How many writes the file was behind on open (only nonzero with `allow_rollback`).
    pub(crate) behind: u64,
    /// Whether the key provider keeps counters.
    pub(crate) detection: bool,
}

/// What [`Counter::open`] found.
pub(crate) enum Opened {
    Ok(Counter),
    Behind { count: u64, recorded: u64 },
}

impl Counter {
    /// Compares the vault's counter (read by `count`) with what `provider` recorded for
    /// `store_id`, and records it when nothing was (the vault's first open with this key
    /// file). The recorded counter is read first: another process may commit and record
    /// between the two reads, and only this order never mistakes that for a rollback.
    pub(crate) fn open(
        provider: &dyn KeyProvider,
        store_id: &str,
        count: impl FnOnce() -> Result<u64>,
    ) -> Result<Opened> {
        let recorded = provider.store_counter(store_id)?;
        let count = count()?;
        let (detection, recorded) = match recorded {
            Some(recorded) => (true, recorded),
            None => match provider.record_store_counter(store_id, count, false) {
                Ok(kept) => (kept, count),
                Err(e) => {
                    tracing::warn!(
                        target: "sealbox::local",
                        error = %e,
                        "could not record the vault's write counter in the key file; a copy \
                         of the vault put in its place will not be detected"
                    );
                    (false, count)
                }
            },
        };
        if count < recorded {
            return Ok(Opened::Behind { count, recorded });
        }
        Ok(Opened::Ok(Counter {
            store_id: store_id.to_owned(),
            committed: AtomicU64::new(count),
            published: AtomicU64::new(recorded),
            behind: 0,
            detection,
        }))
    }

    /// A handle on a file `behind` writes behind (opened with `allow_rollback`).
    pub(crate) fn behind(store_id: &str, count: u64, recorded: u64) -> Counter {
        Counter {
            store_id: store_id.to_owned(),
            committed: AtomicU64::new(count),
            published: AtomicU64::new(recorded),
            behind: recorded - count,
            detection: true,
        }
    }

    /// Refuses writes through a handle on an older copy: they would raise its counter past
    /// the recorded one and hide the rollback.
    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.behind > 0 {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!(
                    "this vault file is {} writes behind its key file (an older copy, opened \
                     only to read or verify it); it cannot be written to. Restore it with \
                     `sealbox backup restore FILE` to use it",
                    self.behind
                ),
            ));
        }
        Ok(())
    }

    /// After a write transaction committed `count`: records it in the provider when
    /// [`PUBLISH_EVERY`] writes went unrecorded. A failure is logged: the write is committed.
    pub(crate) fn committed(&self, provider: &dyn KeyProvider, count: u64) {
        self.committed.fetch_max(count, Ordering::AcqRel);
        if count >= self.published.load(Ordering::Acquire) + PUBLISH_EVERY
            && let Err(e) = self.publish(provider)
        {
            tracing::warn!(
                target: "sealbox::local",
                error = %e,
                "could not record the vault's write counter in the key file"
            );
        }
    }

    /// Records the highest committed count in the provider, if it is not there yet.
    pub(crate) fn publish(&self, provider: &dyn KeyProvider) -> Result<()> {
        if !self.detection || self.behind > 0 {
            return Ok(());
        }
        let count = self.committed.load(Ordering::Acquire);
        if count <= self.published.load(Ordering::Acquire) {
            return Ok(());
        }
        provider.record_store_counter(&self.store_id, count, false)?;
        self.published.fetch_max(count, Ordering::AcqRel);
        Ok(())
    }
}
