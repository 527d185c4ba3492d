//! [`KeyStorage`] over the vault's own database: one JSON record per namespace in
//! `key_namespaces`, key-check values in `master_checks`. Every save also bumps the vault's
//! `key_epoch`, which tells other processes to drop cached keys (after a rotation or an
//! erasure elsewhere).

use std::sync::Arc;

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::pool::Pool;
use super::schema::sql_error;
use crate::error::{Error, ErrorKind, Result};
use crate::keys::{KeyCheck, KeyId, KeyStorage, KeyVersion, NamespaceKeys};

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
        let mut conn = self.pool.get()?;
        let json = serde_json::to_string(record)
            .map_err(|_| Error::internal("namespace key record does not serialise"))?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| sql_error("saving namespace keys", e))?;
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
        let mut conn = self.pool.get()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| sql_error("saving the master key check", e))?;
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
                tx.execute(
                    "INSERT INTO master_checks (provider, version, check_value) VALUES (?1, ?2, ?3)",
                    params![provider.as_str(), version.get(), String::from(check.clone())],
                )
                .map_err(|e| sql_error("saving the master key check", e))?;
                tx.commit()
                    .map_err(|e| sql_error("saving the master key check", e))
            }
        }
    }
}
