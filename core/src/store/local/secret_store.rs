//! `SecretStore` for `LocalVault`: reads check the rows they use against their MACs (a store
//! read is a cache miss; the client's cache is in front of it), writes go through `write`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::mac::{self, SecretRow};
use super::schema::sql_error;
use super::write::{WriteOutcome, WriteRequest, move_stage, stages_on, write_tx, write_version};
use super::*;

/// A secret's row as `get` reads it, with the key epoch.
fn get_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "SELECT {}, (SELECT value FROM meta WHERE key = 'key_epoch') FROM secrets \
             WHERE name = ?1",
            mac::SECRET_COLUMNS
        )
    })
}

#[async_trait]
impl SecretStore for LocalVault {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn audit_chain_key(&self) -> Result<Option<Secret>> {
        LocalVault::audit_chain_key(self).await.map(Some)
    }

    /// The vault at the same path, its master key provider reopened (a key file or a key
    /// variable is read again; a passphrase key cannot be and refuses).
    async fn reopen(&self) -> Result<Arc<dyn SecretStore>> {
        let provider = self.inner.keyring.provider().reopen().await?;
        let vault =
            LocalVault::open_with(self.path(), provider, self.inner.options.clone()).await?;
        Ok(Arc::new(vault))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_value_len: self.inner.options.max_value_len,
            ..Capabilities::FULL
        }
    }

    async fn get(&self, name: &SecretName, selector: &VersionSelector) -> Result<SecretVersion> {
        let (row, epoch, version) = {
            let conn = self.inner.pool.get()?;
            let found: Option<(SecretRow, String)> = conn
                .prepare_cached(get_sql())
                .and_then(|mut s| {
                    s.query_row([name.as_str()], |r| {
                        Ok((SecretRow::read(r, 0)?, r.get(19)?))
                    })
                    .optional()
                })
                .map_err(|e| sql_error("reading a secret", e))?;
            let Some((mut row, epoch)) = found else {
                return Err(not_found(name));
            };
            // The row decides everything below (which version, whether deleted): it must be
            // one this vault wrote.
            self.inner.mac.check_secret(&row)?;
            if row.purge_at.is_some() {
                return Err(not_found(name));
            }
            let wanted = match selector {
                VersionSelector::Current => row.cur_version,
                VersionSelector::Stage(stage) => row.stage(stage.as_str()),
                VersionSelector::Version(id) => parse_version(id),
            };
            let no_version =
                || Error::not_found(format!("secret {name} has no version {selector}"));
            let Some(wanted) = wanted else {
                return Err(no_version());
            };
            // The current version, stored in the secret's row, answers most reads; another
            // version costs one more lookup, its own row checked against its MAC.
            let version = if Some(wanted) == row.cur_version
                && let Some(created) = row.cur_created
                && let Some(envelope) = row.cur_envelope.take()
            {
                mac::VersionRow {
                    version: wanted,
                    envelope,
                    created,
                    token: None,
                    mac: None,
                }
            } else {
                match mac::read_version(&conn, row.id, wanted)? {
                    Some(v) => {
                        self.inner.mac.check_version(&v, &row)?;
                        v
                    }
                    None if wanted >= 1 && wanted < row.next_version => {
                        return Err(mac::tampered(&format!(
                            "secret {name}: version {wanted} is missing, although its record \
                             says it was written; the record"
                        )));
                    }
                    None => return Err(no_version()),
                }
            };
            (row, epoch, version)
        };
        self.refresh_epoch(epoch.parse().unwrap_or(-1));
        let ns = KeyId::new(row.namespace.as_str()).map_err(|_| {
            Error::new(
                ErrorKind::Integrity,
                format!("secret {name}: stored namespace is invalid"),
            )
        })?;
        let (dek, wrapped) = self.dek(row.id, &ns, &row.dek).await?;
        let aad = value_aad(
            &self.inner.store_id,
            &row.namespace,
            name.as_str(),
            version.version,
            &wrapped,
        );
        let value = open_value(&dek, &aad, &version.envelope).map_err(|e| {
            Error::new(
                e.kind(),
                format!("secret {name} version {}: {}", version.version, e.message()),
            )
        })?;
        Ok(SecretVersion {
            value,
            version: VersionId::from(version.version),
            stages: stages_on(&row.stage_map(), version.version),
            created: Some(to_time(version.created)),
        })
    }

    async fn put(
        &self,
        name: &SecretName,
        value: &Secret,
        options: &PutOptions,
    ) -> Result<VersionInfo> {
        let max = self.inner.options.max_value_len;
        if value.len() > max {
            return Err(Error::invalid_input(format!(
                "secret {name}: value of {} bytes exceeds the local vault's limit of {max}",
                value.len()
            )));
        }
        let ns = self.namespace_of(name)?;
        self.inner.counter.check_writable()?;
        let mut rotated = false;
        for _ in 0..WRITE_RETRIES {
            let existing: Option<(i64, Vec<u8>, i64, i64, bool)> = {
                let conn = self.inner.pool.get()?;
                conn.prepare_cached(
                    "SELECT id, dek, COALESCE(dek_created, created), dek_uses, \
                     purge_at IS NOT NULL FROM secrets WHERE name = ?1",
                )
                .and_then(|mut s| {
                    s.query_row([name.as_str()], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                    })
                    .optional()
                })
                .map_err(|e| sql_error("reading a secret", e))?
            };
            if let Some((id, _, dek_created, dek_uses, false)) = &existing
                && !rotated
                && self.inner.options.auto_rotate
                && self.dek_due(*dek_created, *dek_uses, SystemTime::now())
            {
                rotated = true;
                match self.rotate_secret(*id).await {
                    Ok(_) => continue,
                    // Too many versions to re-encrypt under one key: write with the old DEK
                    // while it has uses left (the write transaction enforces the limit).
                    Err(e) if e.kind() == ErrorKind::KeyExhausted => {}
                    Err(e) if e.kind() == ErrorKind::Conflict => continue,
                    Err(e) => return Err(e),
                }
            }
            let keys = match &existing {
                Some((id, bytes, ..)) => self
                    .dek(*id, &ns, bytes)
                    .await
                    .map(|(d, w)| (d, w, bytes.clone(), false)),
                None => match self.fresh_kek(&ns).await {
                    Ok(()) => {
                        let dek_id = KeyId::new(format!("dek:{}", random_hex(12)?))?;
                        self.new_dek(&ns, dek_id).await.map(|(d, w)| {
                            let bytes = w.to_compact();
                            (Arc::new(d), w, bytes, true)
                        })
                    }
                    Err(e) => Err(e),
                },
            };
            let (dek, wrapped, wrapped_bytes, creating) = match keys {
                Ok(k) => k,
                // Another process created or rotated this namespace's KEK at the same time.
                Err(e) if e.kind() == ErrorKind::Conflict => {
                    self.clear_key_caches();
                    continue;
                }
                Err(e) => return Err(e),
            };
            let req = WriteRequest {
                name: name.clone(),
                namespace: ns.as_str().to_owned(),
                store_id: self.inner.store_id.clone(),
                dek,
                wrapped,
                wrapped_bytes,
                creating,
                dek_limit: self.dek_limit(),
                kek_limit: self.kek_limit(),
                value: value.try_clone()?,
                options: options.clone(),
                mac: self.inner.mac.clone(),
            };
            let inner = self.inner.clone();
            match blocking(move || {
                let conn = inner.pool.get()?;
                let outcome = write_version(&conn, req)?;
                if let WriteOutcome::Done(_, Some(count)) = &outcome {
                    inner
                        .counter
                        .committed(inner.keyring.provider().as_ref(), *count);
                }
                Ok(outcome)
            })
            .await?
            {
                WriteOutcome::Done(info, _) => return Ok(info),
                WriteOutcome::Retry => continue,
            }
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            format!("secret {name}: too many concurrent changes; retry"),
        ))
    }

    async fn describe(&self, name: &SecretName) -> Result<SecretMetadata> {
        let conn = self.inner.pool.get()?;
        let mac = &self.inner.mac;
        let Some(row) = mac.load_by_name(&conn, name.as_str())? else {
            return Err(not_found(name));
        };
        if row.purge_at.is_some_and(|p| p <= now_ms()) {
            return Err(not_found(name));
        }
        let versions = mac::read_versions(&conn, row.id)?;
        for v in &versions {
            mac.check_version(v, &row)?;
        }
        mac::check_complete(name.as_str(), row.next_version, &versions)?;
        let map = row.stage_map();
        Ok(SecretMetadata {
            name: name.clone(),
            versions: versions
                .iter()
                .map(|v| VersionInfo {
                    version: VersionId::from(v.version),
                    stages: stages_on(&map, v.version),
                    created: Some(to_time(v.created)),
                })
                .collect(),
            created: Some(to_time(row.created)),
            updated: Some(to_time(row.updated)),
            last_rotated: row.last_rotated.map(to_time),
            description: row.description,
            tags: serde_json::from_str(&row.tags).unwrap_or_default(),
            rotation_period: row
                .rotation_period
                .map(|s| Duration::from_secs(s.max(0) as u64)),
            deleted: row.purge_at.map(to_time),
        })
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        let page_size = options
            .page_size
            .unwrap_or(listing::DEFAULT_PAGE)
            .clamp(1, 1000);
        let conn = self.inner.pool.get()?;
        // Names are ASCII below 0x7f, so `prefix..prefix\x7f` is exactly the prefix range.
        let upper = format!("{}\u{7f}", options.prefix);
        let after = options.page_token.clone().unwrap_or_default();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {} FROM secrets \
                 WHERE name >= ?1 AND name < ?2 AND name > ?3 \
                 AND (purge_at IS NULL OR (?4 AND purge_at > ?5)) \
                 ORDER BY name LIMIT ?6",
                mac::SECRET_COLUMNS
            ))
            .map_err(|e| sql_error("listing secrets", e))?;
        let rows: Vec<SecretRow> = stmt
            .query_map(
                params![
                    options.prefix,
                    upper,
                    after,
                    options.include_deleted,
                    now_ms(),
                    (page_size + 1) as i64
                ],
                |r| SecretRow::read(r, 0),
            )
            .and_then(|rows| rows.collect())
            .map_err(|e| sql_error("listing secrets", e))?;
        let more = rows.len() > page_size;
        let mut entries = Vec::with_capacity(page_size);
        for row in rows.into_iter().take(page_size) {
            // A listing shows the name, its delete state and update time: all from the row.
            self.inner.mac.check_secret(&row)?;
            let (updated, purge_at) = (row.updated, row.purge_at);
            let name = SecretName::new(row.name).map_err(|_| {
                Error::new(
                    ErrorKind::Integrity,
                    "local vault holds an invalid secret name",
                )
            })?;
            entries.push(ListEntry {
                name,
                updated: Some(to_time(updated)),
                deleted: purge_at.is_some(),
            });
        }
        let next_page_token = if more {
            entries.last().map(|e| e.name.to_string())
        } else {
            None
        };
        Ok(ListPage {
            entries,
            next_page_token,
        })
    }

    async fn delete(&self, name: &SecretName, options: &DeleteOptions) -> Result<()> {
        let owned = name.as_str().to_owned();
        let force = options.force;
        let purge_at = now_ms().saturating_add(options.recovery_window.as_millis() as i64);
        let mac = self.inner.mac.clone();
        let (changed, purged) = write_tx(&self.inner, "deleting a secret", move |tx| {
            let now = now_ms();
            // Purge what has passed its recovery window while we hold the write lock.
            let purged = purge_due(tx, &mac, now)?;
            let Some(row) = mac.load_by_name(tx, &owned)? else {
                return Ok((0, purged));
            };
            if force {
                mac.delete_secrets(tx, "DELETE FROM secrets WHERE id = ?1 RETURNING id, name", [
                    row.id,
                ])?;
            } else {
                tx.execute(
                    "UPDATE secrets SET purge_at = COALESCE(purge_at, ?2), updated = ?3 WHERE id = ?1",
                    params![row.id, purge_at, now],
                )
                .map_err(|e| sql_error("deleting a secret", e))?;
                mac.seal_secret(tx, row.id)?;
            }
            Ok((1, purged))
        })
        .await?;
        // A purged or force-deleted secret's DEK leaves memory with its rows.
        if force || purged > 0 {
            self.forget_deks();
        }
        if changed == 0 {
            return Err(not_found(name));
        }
        Ok(())
    }

    async fn restore(&self, name: &SecretName) -> Result<()> {
        let owned = name.clone();
        let mac = self.inner.mac.clone();
        write_tx(&self.inner, "restoring a secret", move |tx| {
            let err = |e| sql_error("restoring a secret", e);
            // `Some(None)`: live; `Some(Some(t))`: deleted, restorable until `t`.
            let row = mac.load_by_name(tx, owned.as_str())?;
            let now = now_ms();
            let id = row.as_ref().map_or(0, |r| r.id);
            let purge_at: Option<Option<i64>> = row
                .map(|r| r.purge_at)
                .filter(|p| p.is_none_or(|p| p > now));
            match purge_at {
                None => Err(not_found(&owned)),
                Some(None) => Err(Error::new(
                    ErrorKind::Conflict,
                    format!("secret {owned} is not deleted; nothing to restore"),
                )),
                Some(Some(_)) => {
                    tx.execute("UPDATE secrets SET purge_at = NULL WHERE id = ?1", [id])
                        .map_err(err)?;
                    mac.seal_secret(tx, id)
                }
            }
        })
        .await
    }

    async fn erase_namespace(&self, namespace: &str) -> Result<Erasure> {
        LocalVault::erase_namespace(self, namespace).await
    }

    async fn set_stage(
        &self,
        name: &SecretName,
        stage: &Stage,
        version: Option<&VersionId>,
    ) -> Result<()> {
        if version.is_none() && *stage == Stage::Current {
            return Err(Error::invalid_input(
                "CURRENT cannot be removed, only moved",
            ));
        }
        let owned = name.clone();
        let stage = stage.clone();
        let version = version.cloned();
        let mac = self.inner.mac.clone();
        write_tx(&self.inner, "moving a stage", move |tx| {
            let err = |e| sql_error("moving a stage", e);
            let row = mac
                .load_by_name(tx, owned.as_str())?
                .filter(|r| r.purge_at.is_none())
                .ok_or_else(|| not_found(&owned))?;
            let mut map = row.stage_map();
            let mut rotated = false;
            match version {
                Some(v) => {
                    let n = parse_version(&v)
                        .filter(|n| matches!(mac::read_version(tx, row.id, *n), Ok(Some(_))));
                    let n = n.ok_or_else(|| {
                        Error::not_found(format!("secret {owned} has no version {v}"))
                    })?;
                    rotated = move_stage(&mut map, &stage, n);
                }
                None => {
                    map.0.remove(stage.as_str());
                }
            }
            tx.execute(
                "UPDATE secrets SET stages = ?2, \
                 last_rotated = CASE WHEN ?3 THEN ?4 ELSE last_rotated END, \
                 updated = CASE WHEN ?3 THEN ?4 ELSE updated END WHERE id = ?1",
                params![row.id, map.to_text(), rotated, now_ms()],
            )
            .map_err(err)?;
            mac.seal_secret(tx, row.id)
        })
        .await
    }
}
