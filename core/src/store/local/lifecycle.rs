//! The local vault's key lifecycle: DEK rotation (fresh key, versions re-encrypted), KEK
//! rotation with fresh DEKs, retirement (destruction) of old KEK versions, the status of every
//! key against the rotation schedule, and rotation of whatever is due.
//!
//! # What rotation and retirement guarantee
//! - **DEK rotation** ([`LocalVault::rotate_dek`], [`LocalVault::rotate_deks`], and
//!   automatically on write) draws a new random DEK, wraps it under the namespace's current
//!   KEK, and re-encrypts every version of the secret under it in one transaction. Afterwards
//!   no stored version of the secret is sealed under the old DEK: a copy of the old DEK (from
//!   a leaked process, a core dump, an old copy of the vault and its key file) opens nothing
//!   written since. Copies of the vault taken before still hold the old envelopes.
//! - **KEK rotation** ([`LocalVault::rotate_kek`]) makes a new KEK version and rotates every
//!   DEK of the namespace as above (never a rewrap of the same DEK), so neither an old KEK nor
//!   an old DEK opens anything in the rotated vault.
//! - **Retirement** ([`LocalVault::retire_keks`]) first gives a fresh DEK to any secret still
//!   under an old KEK version, then decrypts every version of every secret of the namespace
//!   with the current keys, and only if all of them open destroys the other KEK versions: they
//!   are removed from the vault's key record (not marked), so this vault file can no longer
//!   unwrap them, whatever master key is presented. Old master versions in the key file are
//!   not touched here. The removed record may survive in SQLite's write-ahead log until the
//!   next checkpoint, and in any copy of the vault taken before.
//! - **Use counts** are persisted with the keys (per DEK in its secret's row, per KEK version in
//!   the namespace's key record), incremented in the same transaction as the write that
//!   encrypts, so they count every process and survive restarts. Reads do not count.

use std::time::{Duration, SystemTime};

use rusqlite::{OptionalExtension, params};
use secrecy::ExposeSecret;

use super::key_storage::{count_kek_uses, retire_old_keks};
use super::mac::{ENVELOPE, IN_NAMESPACE, META_NAMESPACE, read_versions};
use super::schema::sql_error;
use super::{
    FileLock, LocalVault, WRITE_RETRIES, blocking, now_ms, open_value, seal_value, to_time,
    value_aad,
};
use crate::error::{Error, ErrorKind, Result};
use crate::keys::{KeyId, KeyRole, KeyVersion, MAX_USES, RotationSchedule, WrappedDek};
use crate::store::SecretName;

/// The result of rotating one secret's DEK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DekRotation {
    /// The secret.
    pub name: String,
    /// The new DEK's version.
    pub dek_version: KeyVersion,
    /// The KEK version that wraps it.
    pub kek_version: KeyVersion,
    /// Versions re-encrypted under it.
    pub versions: u64,
}

/// What [`LocalVault::retire_keks`] did in one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KekRetirement {
    /// The namespace.
    pub namespace: String,
    /// The KEK version kept (the current one).
    pub kept: KeyVersion,
    /// The versions destroyed (removed from the key record).
    pub destroyed: Vec<KeyVersion>,
    /// Secrets that were still under an old KEK and got a fresh DEK first.
    pub deks_rotated: u64,
    /// Versions decrypted under the current keys before anything was destroyed.
    pub versions_verified: u64,
}

/// Whether a key is in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// The version new encryptions use.
    Current,
    /// An older KEK version kept for decryption until `retire_keks` destroys it.
    Previous,
    /// Destroyed (crypto-shredded); listed so the record's history is visible.
    Destroyed,
}

impl KeyState {
    /// `"current"`, `"previous"` or `"destroyed"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            KeyState::Current => "current",
            KeyState::Previous => "previous",
            KeyState::Destroyed => "destroyed",
        }
    }
}

/// One key as [`LocalVault::key_status`] sees it. Ids, versions, times and counts only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// Master, KEK or DEK.
    pub role: KeyRole,
    /// The key's id: the provider's id, the namespace, or the DEK's id.
    pub id: String,
    /// The namespace (KEKs and DEKs).
    pub namespace: Option<String>,
    /// The secret a DEK encrypts.
    pub secret: Option<String>,
    /// The key's version.
    pub version: KeyVersion,
    /// Current, previous or destroyed.
    pub state: KeyState,
    /// When it was made (for a master version: when this vault first saw it); `None` when
    /// the vault never recorded it (a vault made before the key lifecycle).
    pub created: Option<SystemTime>,
    /// Encryptions performed under it, over every process (KEKs: DEKs wrapped; DEKs: values
    /// encrypted); `None` for a master key, whose provider does not report a count.
    pub uses: Option<u64>,
    /// The most encryptions it may perform.
    pub max_uses: Option<u64>,
    /// When its rotation period ends (`created` plus the schedule's period).
    pub due: Option<SystemTime>,
    /// True when it should be rotated now: past its period, or past half its use limit.
    pub is_due: bool,
}

/// Every key of the vault against the schedule, from [`LocalVault::key_status`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyStatus {
    /// The time the status was computed for.
    pub now: SystemTime,
    /// The rotation periods applied.
    pub schedule: RotationSchedule,
    /// The current master version, then each namespace's KEK versions, then each secret's DEK.
    pub keys: Vec<KeyInfo>,
}

/// What [`LocalVault::rotate_due`] rotated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DueRotation {
    /// The new master version, when the master key was due.
    pub master: Option<KeyVersion>,
    /// Namespaces whose KEK was due: the new KEK version and how many DEKs were rotated.
    pub keks: Vec<(String, super::KekRotation)>,
    /// Secrets whose DEK alone was due.
    pub deks: Vec<DekRotation>,
}

/// One version as retirement verifies it: secret id, name, wrapped DEK, version, envelope.
type NamespaceVersion = (i64, String, Vec<u8>, i64, Vec<u8>);

/// A secret's DEK row.
struct DekRow {
    id: i64,
    name: String,
    namespace: String,
    dek: Vec<u8>,
    created: i64,
    uses: i64,
}

impl LocalVault {
    /// Most values one DEK may encrypt.
    pub(super) fn dek_limit(&self) -> u64 {
        self.inner.options.dek_max_uses.clamp(1, MAX_USES)
    }

    /// Most DEKs one KEK version may wrap.
    pub(super) fn kek_limit(&self) -> u64 {
        self.inner.options.kek_max_uses.clamp(1, MAX_USES)
    }

    /// Whether a DEK made at `created_ms` with `uses` encryptions is due at `now`.
    pub(super) fn dek_due(&self, created_ms: i64, uses: i64, now: SystemTime) -> bool {
        let period = self.inner.options.schedule.dek;
        period.due_for_rotation(to_time(created_ms), now)
            || uses.max(0) as u64 >= self.dek_limit() / 2
    }

    /// Before a new DEK is wrapped: makes a new KEK version current when the current one is
    /// past its period or half its use limit (and `auto_rotate` is on). Old versions stay
    /// readable, so this costs one record write and no re-encryption.
    pub(super) async fn fresh_kek(&self, ns: &KeyId) -> Result<()> {
        if !self.inner.options.auto_rotate {
            return Ok(());
        }
        let Some(record) = self.inner.keyring.namespace_keys(ns)? else {
            return Ok(());
        };
        let Some(current) = record.current() else {
            return Ok(());
        };
        let created = SystemTime::UNIX_EPOCH + Duration::from_secs(current.created_at);
        let due = self
            .inner
            .options
            .schedule
            .kek
            .due_for_rotation(created, SystemTime::now())
            || current.uses >= self.kek_limit() / 2;
        if due {
            self.inner.keyring.rotate_kek(ns).await?;
        }
        Ok(())
    }

    /// DEK rotation for one secret: a fresh random DEK (next version of the same DEK id)
    /// wrapped under the namespace's current KEK, and every version of the secret re-encrypted
    /// under it, in one transaction. Soft-deleted secrets rotate too. Errors: `NotFound`;
    /// `KeyExhausted` when the secret has at least `dek_max_uses` versions (a fresh key could
    /// not encrypt them all and still write).
    pub async fn rotate_dek(&self, name: &SecretName) -> Result<DekRotation> {
        let id: Option<i64> = {
            let conn = self.inner.pool.get()?;
            conn.prepare_cached("SELECT id FROM secrets WHERE name = ?1")
                .and_then(|mut s| s.query_row([name.as_str()], |r| r.get(0)).optional())
                .map_err(|e| sql_error("reading a secret", e))?
        };
        let id = id.ok_or_else(|| Error::not_found(format!("secret {name} does not exist")))?;
        self.rotate_secret(id).await
    }

    /// [`LocalVault::rotate_dek`] for every secret of `namespace`. Returns how many were
    /// rotated; `NotFound` when the namespace has no secrets.
    pub async fn rotate_deks(&self, namespace: &str) -> Result<u64> {
        let ns = KeyId::new(namespace)?;
        let n = self.rotate_namespace_deks(&ns).await?;
        if n == 0 {
            return Err(Error::not_found(format!(
                "namespace {namespace} has no secrets"
            )));
        }
        Ok(n)
    }

    pub(super) async fn rotate_namespace_deks(&self, ns: &KeyId) -> Result<u64> {
        let ids: Vec<i64> = {
            let conn = self.inner.pool.get()?;
            conn.prepare_cached(&format!(
                "SELECT id FROM secrets WHERE {IN_NAMESPACE} ORDER BY id"
            ))
            .and_then(|mut s| {
                s.query_map([ns.as_str()], |r| r.get(0))
                    .and_then(|rows| rows.collect())
            })
            .map_err(|e| sql_error("reading secrets", e))?
        };
        let mut n = 0;
        for id in ids {
            match self.rotate_secret(id).await {
                Ok(_) => n += 1,
                // Purged or erased meanwhile: nothing left to rotate.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    /// Rotates the DEK of the secret with row id `id`; see [`LocalVault::rotate_dek`].
    pub(super) async fn rotate_secret(&self, id: i64) -> Result<DekRotation> {
        let inner = &self.inner;
        for _ in 0..WRITE_RETRIES {
            let (name, namespace, old_bytes, next, versions) = {
                let conn = inner.pool.get()?;
                let err = |e| sql_error("reading a secret for DEK rotation", e);
                let head: Option<(String, String, Vec<u8>, i64)> = conn
                    .prepare_cached(
                        "SELECT name, namespace, dek, next_version FROM secrets WHERE id = ?1",
                    )
                    .and_then(|mut s| {
                        s.query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                            .optional()
                    })
                    .map_err(err)?;
                let Some((name, namespace, dek, next)) = head else {
                    return Err(Error::not_found("the secret no longer exists"));
                };
                let versions: Vec<(i64, Vec<u8>)> = read_versions(&conn, id)?
                    .into_iter()
                    .map(|v| (v.version, v.envelope))
                    .collect();
                (name, namespace, dek, next, versions)
            };
            let limit = self.dek_limit();
            if versions.len() as u64 >= limit {
                return Err(Error::new(
                    ErrorKind::KeyExhausted,
                    format!(
                        "secret {name} has {} versions and a data key may encrypt at most \
                         {limit} values, so its versions cannot move to a fresh key; raise the \
                         limit",
                        versions.len()
                    ),
                ));
            }
            let ns = KeyId::new(namespace.as_str())
                .map_err(|_| Error::new(ErrorKind::Integrity, "stored namespace is invalid"))?;
            self.fresh_kek(&ns).await?;
            let (old_dek, old_wrapped) = self.dek(id, &ns, &old_bytes).await?;
            let (new_dek, new_wrapped) = match inner.keyring.rotate_dek(&ns, &old_wrapped).await {
                Err(e) if e.kind() == ErrorKind::Conflict => continue,
                other => other?,
            };
            let mut sealed = Vec::with_capacity(versions.len());
            for (version, envelope) in &versions {
                let old_aad = value_aad(&inner.store_id, &namespace, &name, *version, &old_wrapped);
                let value = open_value(&old_dek, &old_aad, envelope)?;
                let aad = value_aad(&inner.store_id, &namespace, &name, *version, &new_wrapped);
                sealed.push((*version, seal_value(&new_dek, &aad, value.expose_secret())?));
            }
            let count = sealed.len() as u64;
            let new_bytes = new_wrapped.to_compact();
            let kek_version = new_wrapped.kek_version();
            let kek_limit = self.kek_limit();
            let db = inner.clone();
            let owned_ns = namespace.clone();
            let done = blocking(move || {
                let err = |e| sql_error("rotating a DEK", e);
                let conn = db.pool.get()?;
                let tx = conn.begin_write("rotating a DEK")?;
                // The rows are resealed below: check first that they are the vault's own.
                let Some(row) = db.mac.load_by_id(&tx, id)? else {
                    return Ok(false);
                };
                for v in read_versions(&tx, id)? {
                    db.mac.check_version(&v, &row)?;
                }
                // Unchanged DEK and no version added since the read: every version is in
                // `sealed`, so none is left under the old key.
                let changed = tx
                    .prepare_cached(
                        "UPDATE secrets SET dek = ?1, dek_created = ?2, dek_uses = ?3 \
                         WHERE id = ?4 AND dek = ?5 AND next_version = ?6",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            new_bytes,
                            now_ms(),
                            count as i64,
                            id,
                            old_bytes,
                            next
                        ])
                    })
                    .map_err(err)?;
                if changed == 0 {
                    return Ok(false);
                }
                for (version, envelope) in &sealed {
                    tx.prepare_cached(
                        "UPDATE versions SET envelope = ?1 WHERE secret_id = ?2 AND version = ?3",
                    )
                    .and_then(|mut s| s.execute(params![envelope, id, version]))
                    .map_err(err)?;
                    db.mac.seal_version(&tx, id, *version)?;
                }
                db.mac.seal_secret(&tx, id)?;
                match count_kek_uses(&tx, &owned_ns, kek_version, 1, kek_limit) {
                    Err(e) if e.kind() == ErrorKind::Conflict => return Ok(false),
                    other => other?,
                };
                tx.commit().map_err(err)?;
                Ok(true)
            })
            .await?;
            if done {
                // The old DEK leaves this process's memory now; others drop theirs when they
                // see the new wrapped bytes.
                if let Ok(mut deks) = inner.deks.lock() {
                    deks.remove(&id);
                }
                return Ok(DekRotation {
                    name,
                    dek_version: new_wrapped.dek_version(),
                    kek_version,
                    versions: count,
                });
            }
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            "a secret changed too often during its DEK rotation; retry",
        ))
    }

    /// KEK retirement: for every namespace with KEK versions other than the current one,
    /// gives a fresh DEK to each secret still under an old version, decrypts every version of
    /// every secret of the namespace under the current keys, and only when all of them open
    /// destroys the old versions (removed from the key record).
    /// A namespace where something fails keeps its old versions and the error is returned.
    pub async fn retire_keks(&self) -> Result<Vec<KekRetirement>> {
        let _lock = FileLock::acquire(self.path())?;
        let namespaces: Vec<String> = {
            let conn = self.inner.pool.get()?;
            conn.prepare_cached("SELECT namespace FROM key_namespaces ORDER BY namespace")
                .and_then(|mut s| s.query_map([], |r| r.get(0)).and_then(|r| r.collect()))
                .map_err(|e| sql_error("listing namespaces", e))?
        };
        let mut done = Vec::new();
        for namespace in namespaces {
            let ns = KeyId::new(namespace.as_str())
                .map_err(|_| Error::new(ErrorKind::Integrity, "stored namespace is invalid"))?;
            let Some(record) = self.inner.keyring.namespace_keys(&ns)? else {
                continue;
            };
            let Some(current) = record.current().map(|k| k.version) else {
                continue;
            };
            if record.keks.iter().all(|k| k.version == current) {
                continue;
            }
            let mut deks_rotated = 0;
            for row in self.dek_rows(Some(&namespace))? {
                if WrappedDek::from_compact(&row.namespace, &row.dek)?.kek_version() != current {
                    self.rotate_secret(row.id).await.map_err(|e| {
                        Error::new(
                            e.kind(),
                            format!(
                                "retiring the old keys of namespace {namespace}: secret {} could \
                                 not move to a fresh key ({}); nothing was destroyed",
                                row.name,
                                e.message()
                            ),
                        )
                    })?;
                    deks_rotated += 1;
                }
            }
            if namespace == META_NAMESPACE {
                // The metadata key is the one DEK of this namespace.
                self.rewrap_mac_key().await?;
            }
            let versions_verified = self.verify_namespace(&ns, current).await?;
            let inner = self.inner.clone();
            let owned = ns.clone();
            let destroyed = blocking(move || {
                let err = |e| sql_error("retiring KEKs", e);
                let conn = inner.pool.get()?;
                let tx = conn.begin_write("retiring KEKs")?;
                let destroyed = retire_old_keks(&tx, &owned)?;
                tx.commit().map_err(err)?;
                Ok(destroyed)
            })
            .await?;
            self.inner.keyring.refresh(&ns)?;
            self.clear_key_caches();
            done.push(KekRetirement {
                namespace,
                kept: current,
                destroyed,
                deks_rotated,
                versions_verified,
            });
        }
        Ok(done)
    }

    /// Decrypts every version of every secret of `ns` with keys unwrapped afresh, requiring
    /// each DEK to be wrapped under KEK `current`. Returns how many versions opened.
    async fn verify_namespace(&self, ns: &KeyId, current: KeyVersion) -> Result<u64> {
        self.clear_key_caches();
        let rows: Vec<NamespaceVersion> = {
            let conn = self.inner.pool.get()?;
            conn.prepare_cached(&format!(
                "SELECT s.id, s.name, s.dek, v.version, {ENVELOPE} FROM secrets s \
                 JOIN versions v ON v.secret_id = s.id WHERE s.{IN_NAMESPACE} \
                 ORDER BY s.id, v.version"
            ))
            .and_then(|mut s| {
                s.query_map([ns.as_str()], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .and_then(|rows| rows.collect())
            })
            .map_err(|e| sql_error("reading versions", e))?
        };
        let mut opened = 0;
        for (id, name, dek, version, envelope) in rows {
            let failed = |what: String| {
                Error::new(
                    ErrorKind::Integrity,
                    format!(
                        "retiring the old keys of namespace {ns}: secret {name} version \
                         {version} {what}; nothing was destroyed (run `sealbox verify`)"
                    ),
                )
            };
            let (key, wrapped) = self
                .dek(id, ns, &dek)
                .await
                .map_err(|e| failed(format!("has no usable key ({})", e.message())))?;
            if wrapped.kek_version() != current {
                return Err(failed(format!(
                    "is still under KEK {}",
                    wrapped.kek_version()
                )));
            }
            let aad = value_aad(&self.inner.store_id, ns.as_str(), &name, version, &wrapped);
            open_value(&key, &aad, &envelope)
                .map_err(|e| failed(format!("does not decrypt ({})", e.message())))?;
            opened += 1;
        }
        Ok(opened)
    }

    fn dek_rows(&self, namespace: Option<&str>) -> Result<Vec<DekRow>> {
        let conn = self.inner.pool.get()?;
        conn.prepare_cached(
            "SELECT id, name, namespace, dek, COALESCE(dek_created, created), dek_uses \
             FROM secrets WHERE ?1 IS NULL OR namespace = ?1 ORDER BY name",
        )
        .and_then(|mut s| {
            s.query_map([namespace], |r| {
                Ok(DekRow {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    namespace: r.get(2)?,
                    dek: r.get(3)?,
                    created: r.get(4)?,
                    uses: r.get(5)?,
                })
            })
            .and_then(|rows| rows.collect())
        })
        .map_err(|e| sql_error("reading DEKs", e))
    }

    /// Every key of the vault at `now` (pass `SystemTime::now()`, or another time to see what
    /// will be due then): the current master version, each namespace's KEK versions, each
    /// secret's DEK, with creation time, use count, limit and due date. Reads only.
    pub async fn key_status(&self, now: SystemTime) -> Result<KeyStatus> {
        let schedule = self.inner.options.schedule;
        let mut keys = Vec::new();
        let provider = self.inner.keyring.provider();
        let master = provider.current_version().await?;
        let created: Option<i64> = {
            let conn = self.inner.pool.get()?;
            conn.prepare_cached(
                "SELECT created FROM master_checks WHERE provider = ?1 AND version = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![provider.id().as_str(), master.get()], |r| r.get(0))
                    .optional()
            })
            .map_err(|e| sql_error("reading the master key check", e))?
            .flatten()
        };
        let created = created.map(to_time);
        let due = created.and_then(|c| schedule.master.due_at(c));
        keys.push(KeyInfo {
            role: KeyRole::Master,
            id: provider.id().as_str().to_owned(),
            namespace: None,
            secret: None,
            version: master,
            state: KeyState::Current,
            created,
            uses: None,
            max_uses: None,
            due,
            is_due: due.is_some_and(|d| d <= now),
        });
        let namespaces: Vec<String> = {
            let conn = self.inner.pool.get()?;
            conn.prepare_cached("SELECT namespace FROM key_namespaces ORDER BY namespace")
                .and_then(|mut s| s.query_map([], |r| r.get(0)).and_then(|r| r.collect()))
                .map_err(|e| sql_error("listing namespaces", e))?
        };
        let kek_limit = self.kek_limit();
        for namespace in namespaces {
            let ns = KeyId::new(namespace.as_str())
                .map_err(|_| Error::new(ErrorKind::Integrity, "stored namespace is invalid"))?;
            let Some(record) = self.inner.keyring.namespace_keys(&ns)? else {
                continue;
            };
            let current = record.current().map(|k| k.version);
            for kek in &record.keks {
                let created = SystemTime::UNIX_EPOCH + Duration::from_secs(kek.created_at);
                let state = match (&kek.wrapped, Some(kek.version) == current) {
                    (None, _) => KeyState::Destroyed,
                    (Some(_), true) => KeyState::Current,
                    (Some(_), false) => KeyState::Previous,
                };
                let live = state == KeyState::Current;
                let due = live.then(|| schedule.kek.due_at(created)).flatten();
                keys.push(KeyInfo {
                    role: KeyRole::Kek,
                    id: namespace.clone(),
                    namespace: Some(namespace.clone()),
                    secret: None,
                    version: kek.version,
                    state,
                    created: Some(created),
                    uses: Some(kek.uses),
                    max_uses: Some(kek_limit),
                    due,
                    is_due: live && (due.is_some_and(|d| d <= now) || kek.uses >= kek_limit / 2),
                });
            }
        }
        let dek_limit = self.dek_limit();
        for row in self.dek_rows(None)? {
            let wrapped = WrappedDek::from_compact(&row.namespace, &row.dek)?;
            let created = to_time(row.created);
            keys.push(KeyInfo {
                role: KeyRole::Dek,
                id: wrapped.dek_id().as_str().to_owned(),
                namespace: Some(row.namespace),
                secret: Some(row.name),
                version: wrapped.dek_version(),
                state: KeyState::Current,
                created: Some(created),
                uses: Some(row.uses.max(0) as u64),
                max_uses: Some(dek_limit),
                due: schedule.dek.due_at(created),
                is_due: self.dek_due(row.created, row.uses, now),
            });
        }
        Ok(KeyStatus {
            now,
            schedule,
            keys,
        })
    }

    /// Rotates whatever [`LocalVault::key_status`] says is due at `now`: the master key (its
    /// KEKs rewrapped), each namespace whose current KEK is due ([`LocalVault::rotate_kek`],
    /// which gives all its secrets fresh DEKs), then each remaining secret whose DEK is due
    /// ([`LocalVault::rotate_dek`]). Old KEK versions stay until [`LocalVault::retire_keks`].
    pub async fn rotate_due(&self, now: SystemTime) -> Result<DueRotation> {
        let status = self.key_status(now).await?;
        let mut done = DueRotation::default();
        let due = |role: KeyRole| {
            status
                .keys
                .iter()
                .filter(move |k| k.role == role && k.state == KeyState::Current && k.is_due)
        };
        if due(KeyRole::Master).next().is_some() {
            done.master = Some(self.rotate_master().await?);
        }
        let mut rotated_namespaces = Vec::new();
        for kek in due(KeyRole::Kek) {
            let rotation = self.rotate_kek(&kek.id).await?;
            rotated_namespaces.push(kek.id.clone());
            done.keks.push((kek.id.clone(), rotation));
        }
        let due_deks: Vec<&KeyInfo> = due(KeyRole::Dek)
            .filter(|k| {
                k.namespace
                    .as_ref()
                    .is_none_or(|ns| !rotated_namespaces.contains(ns))
            })
            .collect();
        if !due_deks.is_empty() {
            let ids: Vec<(i64, String)> = self
                .dek_rows(None)?
                .into_iter()
                .map(|r| (r.id, r.name))
                .collect();
            for dek in due_deks {
                let Some((id, _)) = ids.iter().find(|(_, n)| Some(n) == dek.secret.as_ref()) else {
                    continue;
                };
                match self.rotate_secret(*id).await {
                    Ok(r) => done.deks.push(r),
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(done)
    }
}
