//! The write path of `put`: one `BEGIN IMMEDIATE` transaction that checks the secret's row,
//! adds the version, moves stages and reseals the row's MAC; and `write_tx` for the other
//! writes.

use std::collections::BTreeMap;
use std::sync::Arc;

use rusqlite::{OptionalExtension, params};
use secrecy::ExposeSecret;

use super::key_storage::count_kek_uses;
use super::mac::{self, MacKey, SecretRow, StageMap};
use super::pool::PooledConn;
use super::schema::sql_error;
use super::{
    Inner, blocking, now_ms, open_value, parse_version, rollback, seal_value, to_time, value_aad,
};
use crate::error::{Error, ErrorKind, Result};
use crate::keys::{DataKey, WrappedDek};
use crate::secret::Secret;
use crate::store::{PutOptions, SecretName, Stage, VersionId, VersionInfo};

/// What a write transaction needs; owned so it can move to a blocking thread.
pub(super) struct WriteRequest {
    pub(super) name: SecretName,
    pub(super) namespace: String,
    pub(super) store_id: String,
    pub(super) dek: Arc<DataKey>,
    pub(super) wrapped: WrappedDek,
    pub(super) wrapped_bytes: Vec<u8>,
    /// True when `wrapped` is a fresh DEK for a secret that did not exist at read time.
    pub(super) creating: bool,
    /// Most values the DEK may encrypt (`LocalVaultOptions::dek_max_uses`).
    pub(super) dek_limit: u64,
    /// Most DEKs the KEK may wrap (`LocalVaultOptions::kek_max_uses`).
    pub(super) kek_limit: u64,
    pub(super) value: Secret,
    pub(super) options: PutOptions,
    pub(super) mac: MacKey,
}

pub(super) enum WriteOutcome {
    /// Written (with the vault's new write counter), or answered from an earlier attempt.
    Done(VersionInfo, Option<u64>),
    /// The optimistic read was stale (secret created or DEK changed meanwhile).
    Retry,
}

/// The stages on `version` in `map`, sorted.
pub(super) fn stages_on(map: &StageMap, version: i64) -> Vec<Stage> {
    let mut stages: Vec<Stage> = map
        .on(version)
        .into_iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    stages.sort();
    stages
}

/// Puts `stage` on `version`; moving CURRENT pushes the old current version to PREVIOUS.
/// Returns whether CURRENT moved.
pub(super) fn move_stage(map: &mut StageMap, stage: &Stage, version: i64) -> bool {
    let old = map.0.get(stage.as_str()).copied();
    if old == Some(version) {
        return false;
    }
    if *stage == Stage::Current
        && let Some(old) = old
    {
        map.0.insert(Stage::Previous.as_str().to_owned(), old);
    }
    map.0.insert(stage.as_str().to_owned(), version);
    *stage == Stage::Current && old.is_some()
}

pub(super) fn write_version(conn: &PooledConn, req: WriteRequest) -> Result<WriteOutcome> {
    let err = |e| sql_error("writing a version", e);
    let now = now_ms();
    let tx = conn.begin_write("writing a version")?;
    let name = req.name.as_str();
    let mac = &req.mac;
    let row: Option<SecretRow> = mac.load_by_name(&tx, name)?;
    let (row, version, current) = match (row, req.creating) {
        (None, true) => {
            if let Some(Some(_)) = &req.options.expected_current {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "secret {name} does not exist, so its current version is not the expected one"
                    ),
                ));
            }
            // The new DEK's use is counted below with the other writes; its KEK's use here, in
            // the transaction that stores the wrapped DEK.
            match count_kek_uses(
                &tx,
                &req.namespace,
                req.wrapped.kek_version(),
                1,
                req.kek_limit,
            ) {
                Err(e) if e.kind() == ErrorKind::Conflict => return Ok(WriteOutcome::Retry),
                other => other?,
            };
            tx.prepare_cached(
                "INSERT INTO secrets (name, namespace, dek, next_version, created, updated, \
                 dek_uses) VALUES (?1, ?2, ?3, 1, ?4, ?4, 0)",
            )
            .and_then(|mut s| s.execute(params![name, req.namespace, req.wrapped_bytes, now]))
            .map_err(err)?;
            let id = tx.last_insert_rowid();
            mac.toggle_member(&tx, id, name)?;
            let row = SecretRow {
                id,
                name: name.to_owned(),
                namespace: req.namespace.clone(),
                dek: req.wrapped_bytes.clone(),
                next_version: 1,
                created: now,
                updated: now,
                last_rotated: None,
                description: None,
                tags: "{}".to_owned(),
                rotation_period: None,
                purge_at: None,
                // A DEK made with its secret dates from the secret's creation.
                dek_created: None,
                dek_uses: 0,
                stages: String::new(),
                cur_version: None,
                cur_envelope: None,
                cur_created: None,
                mac: None,
            };
            (row, 1, None)
        }
        (Some(row), false) if row.dek == req.wrapped_bytes => {
            if row.purge_at.is_some() {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("secret {name} is deleted; restore it before writing"),
                ));
            }
            // A retried put answers with the version its first attempt created, even when
            // CURRENT has moved since: only the reply was lost.
            if let Some(token) = &req.options.idempotency_token {
                let earlier: Option<i64> = tx
                    .prepare_cached(
                        "SELECT version FROM versions WHERE secret_id = ?1 AND token = ?2",
                    )
                    .and_then(|mut s| s.query_row(params![row.id, token], |r| r.get(0)).optional())
                    .map_err(err)?;
                if let Some(v) = earlier
                    && let Some(stored) = mac::read_version(&tx, row.id, v)?
                {
                    mac.check_version(&stored, &row)?;
                    let aad = value_aad(&req.store_id, &req.namespace, name, v, &req.wrapped);
                    let value = open_value(&req.dek, &aad, &stored.envelope)?;
                    if !value.ct_eq(&req.value) {
                        return Err(Error::new(
                            ErrorKind::Conflict,
                            format!(
                                "secret {name}: idempotency token reused with a different value"
                            ),
                        ));
                    }
                    return Ok(WriteOutcome::Done(
                        VersionInfo {
                            version: VersionId::from(v),
                            stages: stages_on(&row.stage_map(), v),
                            created: Some(to_time(stored.created)),
                        },
                        None,
                    ));
                }
            }
            // Checked in the write transaction, against the count every process shares.
            if row.dek_uses.max(0) as u64 >= req.dek_limit {
                return Err(Error::new(
                    ErrorKind::KeyExhausted,
                    format!(
                        "secret {name}: its data key has encrypted {} values, its limit \
                         of {}, and could not be rotated automatically; run `sealbox keys \
                         rotate --secret {name}` or raise the limit (nothing was written)",
                        row.dek_uses, req.dek_limit
                    ),
                ));
            }
            let current = row.stage("CURRENT");
            let next = row.next_version;
            (row, next, current)
        }
        _ => return Ok(WriteOutcome::Retry),
    };
    let secret_id = row.id;
    if let Some(expected) = &req.options.expected_current {
        let expected = expected.as_ref().map(|v| parse_version(v).unwrap_or(-1));
        if expected != current {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("secret {name}: current version is not the expected one"),
            ));
        }
    }
    let aad = value_aad(&req.store_id, &req.namespace, name, version, &req.wrapped);
    let envelope = seal_value(&req.dek, &aad, req.value.expose_secret())?;
    tx.prepare_cached(
        "INSERT INTO versions (secret_id, version, envelope, created, token) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| {
        s.execute(params![secret_id, version, envelope, now, req.options.idempotency_token])
    })
    .map_err(err)?;
    mac.seal_version(&tx, secret_id, version)?;
    let mut stages = req.options.stages.clone();
    // The first version of a secret is always CURRENT, whatever stages were asked for.
    if current.is_none() && !stages.contains(&Stage::Current) {
        stages.push(Stage::Current);
    }
    let mut map = row.stage_map();
    let mut rotated = false;
    for stage in &stages {
        rotated |= move_stage(&mut map, stage, version);
    }
    let tags: Option<String> = if req.options.tags.is_empty() {
        None
    } else {
        let mut merged: BTreeMap<String, String> =
            serde_json::from_str(&row.tags).unwrap_or_default();
        merged.extend(req.options.tags.clone());
        Some(serde_json::to_string(&merged).map_err(|_| Error::internal("tags do not serialise"))?)
    };
    tx.prepare_cached(
        "UPDATE secrets SET next_version = ?2, updated = ?3, dek_uses = dek_uses + 1, \
         last_rotated = CASE WHEN ?4 THEN ?3 ELSE last_rotated END, \
         description = COALESCE(?5, description), tags = COALESCE(?6, tags), stages = ?7 \
         WHERE id = ?1",
    )
    .and_then(|mut s| {
        s.execute(params![
            secret_id,
            version + 1,
            now,
            rotated,
            req.options.description,
            tags,
            map.to_text()
        ])
    })
    .map_err(err)?;
    mac.seal_secret(&tx, secret_id)?;
    let stages = stages_on(&map, version);
    let count = rollback::bump(&tx)?;
    tx.commit().map_err(err)?;
    Ok(WriteOutcome::Done(
        VersionInfo {
            version: VersionId::from(version),
            stages,
            created: Some(to_time(now)),
        },
        Some(count),
    ))
}

/// Runs `f` in a write transaction on a blocking thread.
pub(super) async fn write_tx<T: Send + 'static>(
    inner: &Arc<Inner>,
    context: &'static str,
    f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T> + Send + 'static,
) -> Result<T> {
    inner.counter.check_writable()?;
    let inner = inner.clone();
    blocking(move || {
        let conn = inner.pool.get()?;
        let tx = conn.begin_write(context)?;
        let out = f(&tx)?;
        let count = rollback::bump(&tx)?;
        tx.commit().map_err(|e| sql_error(context, e))?;
        inner
            .counter
            .committed(inner.keyring.provider().as_ref(), count);
        Ok(out)
    })
    .await
}
