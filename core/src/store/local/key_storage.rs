//! [`KeyStorage`] over the vault's own database: one JSON record per namespace in
//! `key_namespaces`, key-check values in `master_checks`. Every save also bumps the vault's
//! `key_epoch`, which tells other processes to drop cached keys (after a rotation or an
//! erasure elsewhere).
//!
//! Two changes run inside the vault's own write transactions instead of through
//! [`KeyStorage`]: counting KEK uses ([`count_kek_uses`], in the transaction that stores the
//! wrapped DEK, so the count is exact across processes) and destroying retired KEK versions
//! ([`retire_old_keks`], in the transaction that checks no DEK still needs them).

use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};

use super::mac::IN_NAMESPACE;
use super::pool::Pool;
use super::schema::sql_error;
use crate::error::{Error, ErrorKind, Result};
use crate::keys::{KeyCheck, KeyId, KeyStorage, KeyVersion, NamespaceKeys, WrappedDek};

#[derive(Debug)]
pub(crate) struct SqliteKeyStorage {
    pool: Arc<Pool>,
}

impl SqliteKeyStorage {
    pub(crate) fn new(pool: Arc<Pool>) -> SqliteKeyStorage {
        SqliteKeyStorage { pool }
    }
}

fn damaged(what: &str) -> Error {
    Error::new(
        ErrorKind::Integrity,
        format!("local vault: the stored {what} is unreadable; the vault may be damaged"),
    )
}

fn load_in(tx: &Connection, namespace: &str) -> Result<Option<NamespaceKeys>> {
    let raw: Option<String> = tx
        .prepare_cached("SELECT record FROM key_namespaces WHERE namespace = ?1")
        .and_then(|mut s| s.query_row([namespace], |r| r.get(0)).optional())
        .map_err(|e| sql_error("reading namespace keys", e))?;
    raw.map(|r| serde_json::from_str(&r).map_err(|_| damaged("namespace key record")))
        .transpose()
}

/// Stores `record` with its revision bumped, inside the caller's transaction (which already
/// holds the write lock, so no compare is needed).
fn store_in(tx: &Connection, record: &mut NamespaceKeys) -> Result<()> {
    record.revision += 1;
    let json = serde_json::to_string(record)
        .map_err(|_| Error::internal("namespace key record does not serialise"))?;
    tx.prepare_cached("UPDATE key_namespaces SET revision = ?2, record = ?3 WHERE namespace = ?1")
        .and_then(|mut s| {
            s.execute(params![
                record.namespace.as_str(),
                record.revision as i64,
                json
            ])
        })
        .map_err(|e| sql_error("saving namespace keys", e))?;
    Ok(())
}

/// Counts `n` DEKs wrapped under KEK `version` of `namespace`, inside the write transaction
/// that stores them. Returns the new count.
///
/// Errors: `Conflict` when that KEK version is no longer live (another process rotated and
/// retired it, or erased the namespace, since the DEK was wrapped): the caller wraps again
/// under fresh keys. `KeyExhausted` when the count would pass `limit`; nothing is written.
pub(crate) fn count_kek_uses(
    tx: &Connection,
    namespace: &str,
    version: KeyVersion,
    n: u64,
    limit: u64,
) -> Result<u64> {
    let gone = || {
        Error::new(
            ErrorKind::Conflict,
            format!(
                "KEK {version} of namespace {namespace} was rotated away while a key was \
                 wrapped under it; retry"
            ),
        )
    };
    let mut record = load_in(tx, namespace)?.ok_or_else(gone)?;
    let kek = record
        .keks
        .iter_mut()
        .find(|k| k.version == version && k.wrapped.is_some())
        .ok_or_else(gone)?;
    let uses = kek.uses.saturating_add(n);
    if uses > limit {
        return Err(Error::new(
            ErrorKind::KeyExhausted,
            format!(
                "KEK {version} of namespace {namespace} has wrapped {} data keys, its limit is \
                 {limit}; run `sealbox keys rotate --namespace {namespace}` (or enable \
                 automatic rotation)",
                kek.uses
            ),
        ));
    }
    kek.uses = uses;
    store_in(tx, &mut record)?;
    Ok(uses)
}

/// Destroys every KEK version of `namespace` but the current one: they are removed from the
/// record (not marked), and `min_decryption_version` becomes the current version. Runs inside
/// the caller's write transaction and first re-checks that every secret of the namespace has
/// its DEK wrapped under the current KEK, so no row can be left under a destroyed key;
/// otherwise `Conflict` and nothing changes. Returns the versions destroyed.
pub(crate) fn retire_old_keks(tx: &Connection, namespace: &KeyId) -> Result<Vec<KeyVersion>> {
    let Some(mut record) = load_in(tx, namespace.as_str())? else {
        return Ok(Vec::new());
    };
    let Some(current) = record.current().map(|k| k.version) else {
        return Ok(Vec::new());
    };
    let deks: Vec<Vec<u8>> = tx
        .prepare_cached(&format!("SELECT dek FROM secrets WHERE {IN_NAMESPACE}"))
        .and_then(|mut s| {
            s.query_map([namespace.as_str()], |r| r.get(0))
                .and_then(|rows| rows.collect())
        })
        .map_err(|e| sql_error("reading DEKs", e))?;
    for bytes in &deks {
        if WrappedDek::from_compact(namespace.as_str(), bytes)?.kek_version() != current {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "a secret of namespace {namespace} was written under an old KEK while its \
                     keys were being retired; run the retirement again"
                ),
            ));
        }
    }
    let retired: Vec<KeyVersion> = record
        .keks
        .iter()
        .map(|k| k.version)
        .filter(|v| *v != current)
        .collect();
    if retired.is_empty() {
        return Ok(retired);
    }
    record.keks.retain(|k| k.version == current);
    record.min_decryption_version = current;
    store_in(tx, &mut record)?;
    tx.execute(
        "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'key_epoch'",
        [],
    )
    .map_err(|e| sql_error("retiring KEKs", e))?;
    Ok(retired)
}

impl KeyStorage for SqliteKeyStorage {
    fn load_namespace(&self, namespace: &KeyId) -> Result<Option<NamespaceKeys>> {
        let conn = self.pool.get()?;
        let raw: Option<String> = conn
            .prepare_cached("SELECT record FROM key_namespaces WHERE namespace = ?1")
            .and_then(|mut s| s.query_row([namespace.as_str()], |r| r.get(0)).optional())
            .map_err(|e| sql_error("reading namespace keys", e))?;
        raw.map(|r| serde_json::from_str(&r).map_err(|_| damaged("namespace key record")))
            .transpose()
    }

    fn save_namespace(&self, record: &NamespaceKeys) -> Result<()> {
        let conn = self.pool.get()?;
        let json = serde_json::to_string(record)
            .map_err(|_| Error::internal("namespace key record does not serialise"))?;
        let tx = conn.begin_write("saving namespace keys")?;
        let stored: Option<i64> = tx
            .query_row(
                "SELECT revision FROM key_namespaces WHERE namespace = ?1",
                [record.namespace.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| sql_error("saving namespace keys", e))?;
        let expected = record.revision.checked_sub(1).filter(|r| *r > 0);
        if stored.map(|r| r as u64) != expected {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "namespace {} keys were changed by another writer; retry",
                    record.namespace
                ),
            ));
        }
        tx.execute(
            "INSERT OR REPLACE INTO key_namespaces (namespace, revision, record) VALUES (?1, ?2, ?3)",
            params![record.namespace.as_str(), record.revision as i64, json],
        )
        .map_err(|e| sql_error("saving namespace keys", e))?;
        tx.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'key_epoch'",
            [],
        )
        .map_err(|e| sql_error("saving namespace keys", e))?;
        tx.commit()
            .map_err(|e| sql_error("saving namespace keys", e))
    }

    fn namespaces(&self) -> Result<Vec<KeyId>> {
        let conn = self.pool.get()?;
        let mut stmt = conn
            .prepare_cached("SELECT namespace FROM key_namespaces ORDER BY namespace")
            .map_err(|e| sql_error("listing namespaces", e))?;
        let names: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| sql_error("listing namespaces", e))?;
        names
            .into_iter()
            .map(|n| KeyId::new(n).map_err(|_| damaged("namespace name")))
            .collect()
    }

    fn master_check(&self, provider: &KeyId, version: KeyVersion) -> Result<Option<KeyCheck>> {
        let conn = self.pool.get()?;
        let raw: Option<String> = conn
            .prepare_cached(
                "SELECT check_value FROM master_checks WHERE provider = ?1 AND version = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![provider.as_str(), version.get()], |r| r.get(0))
                    .optional()
            })
            .map_err(|e| sql_error("reading the master key check", e))?;
        raw.map(|r| KeyCheck::try_from(r).map_err(|_| damaged("master key check")))
            .transpose()
    }

    fn save_master_check(
        &self,
        provider: &KeyId,
        version: KeyVersion,
        check: &KeyCheck,
    ) -> Result<()> {
        let conn = self.pool.get()?;
        let tx = conn.begin_write("saving the master key check")?;
        let stored: Option<String> = tx
            .query_row(
                "SELECT check_value FROM master_checks WHERE provider = ?1 AND version = ?2",
                params![provider.as_str(), version.get()],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| sql_error("saving the master key check", e))?;
        match stored {
            Some(s) => {
                let stored = KeyCheck::try_from(s).map_err(|_| damaged("master key check"))?;
                if stored.matches(check) {
                    Ok(())
                } else {
                    Err(Error::new(
                        ErrorKind::Conflict,
                        format!(
                            "a different key check is recorded for {provider} version {version}"
                        ),
                    ))
                }
            }
            None => {
                // `created`: when this vault first saw the version, the start of its schedule.
                tx.execute(
                    "INSERT INTO master_checks (provider, version, check_value, created) \
                     VALUES (?1, ?2, ?3, ?4)",
                    params![
                        provider.as_str(),
                        version.get(),
                        String::from(check.clone()),
                        super::now_ms()
                    ],
                )
                .map_err(|e| sql_error("saving the master key check", e))?;
                tx.commit()
                    .map_err(|e| sql_error("saving the master key check", e))
            }
        }
    }
}
