//! Authenticated metadata: every row that decides what a read returns or a listing shows
//! carries an HMAC-SHA-256 under the vault's metadata key, truncated to 128 bits
//! ([`ROW_MAC_LEN`]), checked when a store read uses the row and by `verify`; every write
//! recomputes it inside its transaction.
//!
//! # The key
//! A random 256-bit key made once per vault, wrapped like a DEK under the KEK of the reserved
//! namespace [`META_NAMESPACE`] (a name no secret's namespace can take: secret names have no
//! `:`), and stored wrapped in `meta.mac_key`. It therefore works with every master key
//! provider (key file, passphrase, environment, KMS, PKCS#11: none has to give raw master
//! bytes), follows master rotation and retirement with the other KEKs, and lives unwrapped only
//! in locked memory (a [`DataKey`]).
//!
//! # What each MAC binds
//! Fields are encoded with a type tag and a length, after a label naming the row kind, so no
//! two rows or field lists encode alike.
//! Wrapped DEKs and envelopes are bound as stored (schema 5's compact forms, see the `compact`
//! module); the bytes those forms leave out are rebuilt from MACed columns and are associated
//! data of the AEAD that opens them.
//! - A `secrets` row: the store id, the row id and every column: name, namespace, wrapped DEK,
//!   next version, created, updated, last rotated, description, tags, rotation period, purge
//!   time (delete state and recovery deadline), DEK creation and uses, the stage map
//!   (`CURRENT=3,PREVIOUS=2`) and its current version (number, envelope, created).
//! - A `versions` row: the store id, its secret's row id, version number, envelope, created,
//!   idempotency token. The current version's envelope is stored once, in the secret's row
//!   (its `versions` row holds `x''`), and that row has no MAC of its own unless it holds an
//!   idempotency token: the secret's row binds its number, envelope and creation time, and a
//!   check takes it on the record's word only when it matches those exactly and has no token.
//!   The version leaving the record when CURRENT moves is checked against the record before
//!   it gets its own MAC back, and the one entering is checked against its MAC before it
//!   loses it.
//! - The set of secrets: `meta.secrets_set`, the XOR of a MAC of `(store id, row id, name)`
//!   for every row of `secrets`, kept in step by every insert and delete.
//!
//! # What a row MAC cannot catch, and what does
//! A row MAC says a row is one this vault wrote, not that it is still there or is the latest.
//! - A deleted `versions` row: the secret's row binds `next_version`, and versions are never
//!   deleted one by one, so a missing number is `Integrity` on the read that needs it, in
//!   `describe` and in `verify`.
//! - A deleted (or re-added) `secrets` row: reads of that name say `NotFound`; `verify` finds
//!   the set MAC no longer matches.
//! - A row replaced by its own older copy (from a backup of the same vault), or the whole file
//!   replaced by an older one: the MAC still matches. Rollback detection (the write counter
//!   recorded by the key provider) catches a whole older file; an old row spliced into a
//!   current file is caught only when it no longer fits (version numbers, the set MAC).

use std::collections::BTreeMap;
use std::sync::Arc;

use ring::hmac;
use rusqlite::{Connection, OptionalExtension, params};
use secrecy::ExposeSecret;

use super::schema::sql_error;
use crate::error::{Error, ErrorKind, Result};
use crate::keys::DataKey;

/// The reserved namespace whose KEK wraps the metadata key.
pub(crate) const META_NAMESPACE: &str = "sealbox:metadata";

/// The key id of the metadata key (as a DEK of [`META_NAMESPACE`]).
pub(crate) const MAC_KEY_ID: &str = "metadata-mac";

/// `meta` row holding the wrapped metadata key (hex).
pub(crate) const MAC_KEY_ROW: &str = "mac_key";

/// `meta` row holding the MAC of the set of secrets (hex).
const SET_ROW: &str = "secrets_set";

/// Bytes of a row's MAC: HMAC-SHA-256 truncated to 128 bits (RFC 2104 section 5 allows
/// truncation to no less than half the output; RFC 4868's HMAC-SHA-256-128 is the same).
/// A forgery still has to guess 128 bits, and a guess costs a write to the file followed by a
/// read that reports `Integrity`; schema 4 stored all 32 bytes.
pub(crate) const ROW_MAC_LEN: usize = 16;

/// Which layout's MAC encoding: the current one, or schema 4's (read once, by the upgrade,
/// to check each row before it is rewritten and resealed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    V4,
    Current,
}

/// The vault's metadata key and the store id every MAC binds.
#[derive(Clone)]
pub(crate) struct MacKey {
    key: Arc<DataKey>,
    store_id: Arc<str>,
}

/// A canonical encoding of a row's fields: a label, then each field as a tag byte, a length
/// and its bytes.
struct Fields(Vec<u8>);

impl Fields {
    fn new(label: &str, store_id: &str) -> Fields {
        // A secrets row with its wrapped DEK and current envelope encodes to about 550 bytes.
        let mut f = Fields(Vec::with_capacity(768));
        f.bytes(label.as_bytes());
        f.bytes(store_id.as_bytes());
        f
    }

    fn bytes(&mut self, b: &[u8]) -> &mut Fields {
        self.0.push(2);
        self.0.extend_from_slice(&(b.len() as u64).to_be_bytes());
        self.0.extend_from_slice(b);
        self
    }

    fn text(&mut self, t: &str) -> &mut Fields {
        self.bytes(t.as_bytes())
    }

    fn int(&mut self, i: i64) -> &mut Fields {
        self.0.push(1);
        self.0.extend_from_slice(&i.to_be_bytes());
        self
    }

    fn opt_int(&mut self, i: Option<i64>) -> &mut Fields {
        match i {
            Some(i) => self.int(i),
            None => self.null(),
        }
    }

    fn opt_bytes(&mut self, b: Option<&[u8]>) -> &mut Fields {
        match b {
            Some(b) => self.bytes(b),
            None => self.null(),
        }
    }

    fn null(&mut self) -> &mut Fields {
        self.0.push(0);
        self
    }
}

/// Selects the secrets of namespace `?1` through the name index (schema 5 keeps no index on
/// `namespace`): a namespace is the leading segments of its secrets' names, so all of them
/// sort in `?1 .. ?1 || '0'` (`'0'` follows `'/'`), and the `namespace` column keeps exactly
/// that namespace's own.
pub(crate) const IN_NAMESPACE: &str = "name >= ?1 AND name < ?1 || '0' AND namespace = ?1";

/// The columns of a `secrets` row, in [`SECRET_COLUMNS`] order.
pub(crate) const SECRET_COLUMNS: &str = "id, name, namespace, dek, next_version, created, \
    updated, last_rotated, description, tags, rotation_period, purge_at, dek_created, dek_uses, \
    stages, cur_version, cur_envelope, cur_created, mac";

/// One `secrets` row, every column.
#[derive(Clone, Debug)]
pub(crate) struct SecretRow {
    pub id: i64,
    pub name: String,
    pub namespace: String,
    pub dek: Vec<u8>,
    pub next_version: i64,
    pub created: i64,
    pub updated: i64,
    pub last_rotated: Option<i64>,
    pub description: Option<String>,
    pub tags: String,
    pub rotation_period: Option<i64>,
    pub purge_at: Option<i64>,
    /// When the DEK was made; `None`: with the secret (`created`).
    pub dek_created: Option<i64>,
    pub dek_uses: i64,
    pub stages: String,
    pub cur_version: Option<i64>,
    pub cur_envelope: Option<Vec<u8>>,
    pub cur_created: Option<i64>,
    pub mac: Option<Vec<u8>>,
}

impl SecretRow {
    /// Reads the row from columns `at..at + 19` of `r`.
    pub(crate) fn read(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<SecretRow> {
        Ok(SecretRow {
            id: r.get(at)?,
            name: r.get(at + 1)?,
            namespace: r.get(at + 2)?,
            dek: r.get(at + 3)?,
            next_version: r.get(at + 4)?,
            created: r.get(at + 5)?,
            updated: r.get(at + 6)?,
            last_rotated: r.get(at + 7)?,
            description: r.get(at + 8)?,
            tags: r.get(at + 9)?,
            rotation_period: r.get(at + 10)?,
            purge_at: r.get(at + 11)?,
            dek_created: r.get(at + 12)?,
            dek_uses: r.get(at + 13)?,
            stages: r.get(at + 14)?,
            cur_version: r.get(at + 15)?,
            cur_envelope: r.get(at + 16)?,
            cur_created: r.get(at + 17)?,
            mac: r.get(at + 18)?,
        })
    }

    /// The stage map (`stage -> version`).
    pub(crate) fn stage_map(&self) -> StageMap {
        StageMap::parse(&self.stages)
    }

    /// The version `stage` is on.
    pub(crate) fn stage(&self, stage: &str) -> Option<i64> {
        self.stage_map().0.get(stage).copied()
    }
}

/// A secret's stages, `stage -> version`, stored in its row as `CURRENT=3,PREVIOUS=2`
/// (sorted by stage, so one map has one spelling).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct StageMap(pub BTreeMap<String, i64>);

impl StageMap {
    pub(crate) fn parse(s: &str) -> StageMap {
        StageMap(
            s.split(',')
                .filter_map(|p| {
                    let (stage, v) = p.split_once('=')?;
                    Some((stage.to_owned(), v.parse().ok()?))
                })
                .collect(),
        )
    }

    pub(crate) fn to_text(&self) -> String {
        let mut out = String::new();
        for (stage, v) in &self.0 {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(stage);
            out.push('=');
            out.push_str(&v.to_string());
        }
        out
    }

    /// The stages on `version`, in the map's order.
    pub(crate) fn on(&self, version: i64) -> Vec<String> {
        self.0
            .iter()
            .filter(|(_, v)| **v == version)
            .map(|(s, _)| s.clone())
            .collect()
    }
}

impl MacKey {
    pub(crate) fn new(key: Arc<DataKey>, store_id: &str) -> MacKey {
        MacKey {
            key,
            store_id: store_id.into(),
        }
    }

    fn sign(&self, fields: &Fields) -> hmac::Tag {
        let key = hmac::Key::new(hmac::HMAC_SHA256, self.key.material().expose_secret());
        hmac::sign(&key, &fields.0)
    }

    /// A row's MAC: HMAC-SHA-256 truncated to its first [`ROW_MAC_LEN`] bytes.
    fn row_mac(&self, fields: &Fields) -> [u8; ROW_MAC_LEN] {
        let mut out = [0u8; ROW_MAC_LEN];
        out.copy_from_slice(&self.sign(fields).as_ref()[..ROW_MAC_LEN]);
        out
    }

    /// Whether `mac` is the row MAC of `fields` (in constant time).
    fn check(&self, fields: &Fields, mac: Option<&[u8]>) -> bool {
        mac.is_some_and(|m| {
            m.len() == ROW_MAC_LEN
                && bool::from(subtle::ConstantTimeEq::ct_eq(m, &self.row_mac(fields)[..]))
        })
    }

    /// Whether `mac` is the schema-4 MAC of `fields` (full HMAC-SHA-256), for the upgrade.
    fn check_v4(&self, fields: &Fields, mac: Option<&[u8]>) -> bool {
        let key = hmac::Key::new(hmac::HMAC_SHA256, self.key.material().expose_secret());
        mac.is_some_and(|m| hmac::verify(&key, &fields.0, m).is_ok())
    }

    fn secret_fields(&self, r: &SecretRow) -> Fields {
        self.secret_fields_as(Layout::Current, r)
    }

    fn secret_fields_as(&self, layout: Layout, r: &SecretRow) -> Fields {
        let label = match layout {
            Layout::V4 => "sealbox/local/secrets-row/v1",
            Layout::Current => "sealbox/local/secrets-row/v2",
        };
        let mut f = Fields::new(label, &self.store_id);
        f.int(r.id)
            .text(&r.name)
            .text(&r.namespace)
            .bytes(&r.dek)
            .int(r.next_version)
            .int(r.created)
            .int(r.updated)
            .opt_int(r.last_rotated)
            .opt_bytes(r.description.as_deref().map(str::as_bytes))
            .text(&r.tags)
            .opt_int(r.rotation_period)
            .opt_int(r.purge_at)
            .opt_int(r.dek_created)
            .int(r.dek_uses)
            .text(&r.stages)
            .opt_int(r.cur_version)
            .opt_bytes(r.cur_envelope.as_deref())
            .opt_int(r.cur_created);
        f
    }

    fn version_fields(
        &self,
        secret_id: i64,
        version: i64,
        envelope: &[u8],
        created: i64,
        token: Option<&str>,
    ) -> Fields {
        self.version_fields_as(
            Layout::Current,
            secret_id,
            version,
            envelope,
            created,
            token,
        )
    }

    fn version_fields_as(
        &self,
        layout: Layout,
        secret_id: i64,
        version: i64,
        envelope: &[u8],
        created: i64,
        token: Option<&str>,
    ) -> Fields {
        let label = match layout {
            Layout::V4 => "sealbox/local/versions-row/v1",
            Layout::Current => "sealbox/local/versions-row/v2",
        };
        let mut f = Fields::new(label, &self.store_id);
        f.int(secret_id)
            .int(version)
            .bytes(envelope)
            .int(created)
            .opt_bytes(token.map(str::as_bytes));
        f
    }

    fn member_fields(&self, id: i64, name: &str) -> Fields {
        let mut f = Fields::new("sealbox/local/secrets-member/v1", &self.store_id);
        f.int(id).text(name);
        f
    }

    /// `Integrity` naming the secret unless `row`'s MAC matches.
    pub(crate) fn check_secret(&self, row: &SecretRow) -> Result<()> {
        if self.check(&self.secret_fields(row), row.mac.as_deref()) {
            return Ok(());
        }
        Err(tampered(&format!(
            "secret {}: its record (stages, current version, delete state, description or \
             tags)",
            row.name
        )))
    }

    /// `Integrity` naming the secret and version unless version row `v` of the secret whose
    /// (checked) record is `row` is one this vault wrote: its own MAC matches, or it has none
    /// and is exactly what the record vouches for (see [`vouched_by_record`]).
    pub(crate) fn check_version(&self, v: &VersionRow, row: &SecretRow) -> Result<()> {
        if vouched_by_record(v, row) {
            return Ok(());
        }
        let f = self.version_fields(
            row.id,
            v.version,
            &v.envelope,
            v.created,
            v.token.as_deref(),
        );
        if self.check(&f, v.mac.as_deref()) {
            return Ok(());
        }
        Err(tampered(&format!(
            "secret {} version {}: its version record",
            row.name, v.version
        )))
    }

    /// The set digest's contribution of secret row `id` named `name`.
    fn member(&self, id: i64, name: &str) -> [u8; 32] {
        let tag = self.sign(&self.member_fields(id, name));
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Recomputes the MAC of secret row `id` (after the transaction changed it), first
    /// moving its current version's envelope into the row: the envelope of a version that is
    /// no longer current goes back to its `versions` row, the new current version's leaves its
    /// `versions` row (which keeps an empty envelope, `x''`). Each envelope is stored once, and
    /// every `versions` MAC binds the envelope wherever it is stored, so the move reseals
    /// nothing but this row.
    ///
    /// A version row is checked before it moves either way: the one leaving the record gets a
    /// MAC of its own only if the record vouched for it, the one entering loses its MAC (see
    /// [`vouched_by_record`]) only if that MAC matched. So a move never turns an edited row
    /// into one the vault vouches for.
    pub(crate) fn seal_secret(&self, tx: &Connection, id: i64) -> Result<()> {
        let err = |e| sql_error("sealing a secret's record", e);
        // The caller checked the record before changing it, and only this function writes its
        // current-version columns: they are as last sealed.
        let Some(mut row) = read_secret_by_id(tx, id)? else {
            return Ok(());
        };
        let current = row.stage("CURRENT");
        if let (Some(old), Some(envelope)) = (row.cur_version, row.cur_envelope.clone())
            && Some(old) != current
            && let Some((leaving, _)) = stored_version(tx, &row, old)?
        {
            self.check_version(&leaving, &row)?;
            tx.prepare_cached(
                "UPDATE versions SET envelope = ?3 \
                 WHERE secret_id = ?1 AND version = ?2 AND length(envelope) = 0",
            )
            .and_then(|mut s| s.execute(params![id, old, envelope]))
            .map_err(err)?;
            self.seal_version(tx, id, old)?;
        }
        let copy: Option<(i64, Vec<u8>, i64)> = match current {
            Some(v) => match stored_version(tx, &row, v)? {
                None => None,
                Some((entering, own_envelope)) => {
                    self.check_version(&entering, &row)?;
                    if own_envelope {
                        // Written (or re-encrypted) by this transaction: it moves to the
                        // record, whose MAC vouches for it from now on; a row with an
                        // idempotency token (which the record does not hold) keeps its own.
                        tx.prepare_cached(
                            "UPDATE versions SET envelope = x'', \
                             mac = CASE WHEN token IS NULL THEN NULL ELSE mac END \
                             WHERE secret_id = ?1 AND version = ?2",
                        )
                        .and_then(|mut s| s.execute([id, v]))
                        .map_err(err)?;
                    } else if row.cur_version != Some(v) {
                        return Err(tampered(&format!(
                            "secret {}: version {v} has no envelope in either of its \
                             records; the record",
                            row.name
                        )));
                    }
                    Some((v, entering.envelope, entering.created))
                }
            },
            None => None,
        };
        row.cur_version = copy.as_ref().map(|c| c.0);
        row.cur_created = copy.as_ref().map(|c| c.2);
        row.cur_envelope = copy.map(|c| c.1);
        let mac = self.row_mac(&self.secret_fields(&row));
        tx.prepare_cached(
            "UPDATE secrets SET cur_version = ?2, cur_envelope = ?3, cur_created = ?4, \
             mac = ?5 WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.execute(params![
                id,
                row.cur_version,
                row.cur_envelope,
                row.cur_created,
                &mac[..]
            ])
        })
        .map_err(err)?;
        Ok(())
    }

    /// Computes and stores the MAC of version `version` of secret row `secret_id`.
    pub(crate) fn seal_version(&self, tx: &Connection, secret_id: i64, version: i64) -> Result<()> {
        let err = |e| sql_error("sealing a version record", e);
        let Some(v) = read_version(tx, secret_id, version)? else {
            return Ok(());
        };
        let mac = self.row_mac(&self.version_fields(
            secret_id,
            v.version,
            &v.envelope,
            v.created,
            v.token.as_deref(),
        ));
        tx.prepare_cached("UPDATE versions SET mac = ?3 WHERE secret_id = ?1 AND version = ?2")
            .and_then(|mut s| s.execute(params![secret_id, version, &mac[..]]))
            .map_err(err)?;
        Ok(())
    }

    /// Whether `row` carries a valid schema-4 MAC (for the upgrade to schema 5).
    pub(crate) fn check_v4_secret(&self, row: &SecretRow) -> bool {
        self.check_v4(&self.secret_fields_as(Layout::V4, row), row.mac.as_deref())
    }

    /// Whether version row `v` of secret row `secret_id` carries a valid schema-4 MAC.
    pub(crate) fn check_v4_version(&self, secret_id: i64, v: &VersionRow) -> bool {
        let f = self.version_fields_as(
            Layout::V4,
            secret_id,
            v.version,
            &v.envelope,
            v.created,
            v.token.as_deref(),
        );
        self.check_v4(&f, v.mac.as_deref())
    }

    /// Stores the MAC of secret row `id` as it stands (`None`: no valid MAC, so that a row
    /// the upgrade found edited keeps failing its check), without moving any envelope.
    pub(crate) fn reseal_secret_as_is(&self, tx: &Connection, id: i64, valid: bool) -> Result<()> {
        let Some(row) = read_secret_by_id(tx, id)? else {
            return Ok(());
        };
        let mac = valid.then(|| self.row_mac(&self.secret_fields(&row)));
        tx.prepare_cached("UPDATE secrets SET mac = ?2 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![id, mac.as_ref().map(|m| &m[..])]))
            .map_err(|e| sql_error("sealing a secret's record", e))?;
        Ok(())
    }

    /// Stores the MAC of version `version` of secret row `secret_id` as it stands: none for
    /// the current version the record vouches for (see [`vouched_by_record`]), and an empty
    /// one, which never matches, when `valid` is false.
    pub(crate) fn reseal_version_as_is(
        &self,
        tx: &Connection,
        secret_id: i64,
        version: i64,
        valid: bool,
    ) -> Result<()> {
        let set = |mac: Option<&[u8]>| {
            tx.prepare_cached("UPDATE versions SET mac = ?3 WHERE secret_id = ?1 AND version = ?2")
                .and_then(|mut s| s.execute(params![secret_id, version, mac]))
                .map(drop)
                .map_err(|e| sql_error("sealing a version record", e))
        };
        if !valid {
            return set(Some(&[]));
        }
        let Some(row) = read_secret_by_id(tx, secret_id)? else {
            return Ok(());
        };
        match stored_version(tx, &row, version)? {
            Some((v, false)) if v.token.is_none() && row.cur_version == Some(version) => set(None),
            Some(_) => self.seal_version(tx, secret_id, version),
            None => Ok(()),
        }
    }

    /// Reads and checks secret row `id`.
    pub(crate) fn load_by_id(&self, tx: &Connection, id: i64) -> Result<Option<SecretRow>> {
        let row = read_secret_by_id(tx, id)?;
        if let Some(row) = &row {
            self.check_secret(row)?;
        }
        Ok(row)
    }

    /// Reads and checks the row of secret `name`.
    pub(crate) fn load_by_name(&self, tx: &Connection, name: &str) -> Result<Option<SecretRow>> {
        let row = tx
            .prepare_cached(&format!(
                "SELECT {SECRET_COLUMNS} FROM secrets WHERE name = ?1"
            ))
            .and_then(|mut s| s.query_row([name], |r| SecretRow::read(r, 0)).optional())
            .map_err(|e| sql_error("reading a secret", e))?;
        if let Some(row) = &row {
            self.check_secret(row)?;
        }
        Ok(row)
    }

    /// Adds (or removes: XOR is its own inverse) secret row `id` named `name` to the set MAC.
    pub(crate) fn toggle_member(&self, tx: &Connection, id: i64, name: &str) -> Result<()> {
        let mut set = stored_set(tx)?;
        for (s, m) in set.iter_mut().zip(self.member(id, name)) {
            *s ^= m;
        }
        tx.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![SET_ROW, hex::encode(set)]))
            .map_err(|e| sql_error("recording the set of secrets", e))?;
        Ok(())
    }

    /// Deletes the secrets `sql` selects (a `DELETE ... RETURNING id, name`) and takes them
    /// out of the set MAC. Returns how many were deleted.
    pub(crate) fn delete_secrets(
        &self,
        tx: &Connection,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<usize> {
        let gone: Vec<(i64, String)> = tx
            .prepare_cached(sql)
            .and_then(|mut s| {
                s.query_map(params, |r| Ok((r.get(0)?, r.get(1)?)))
                    .and_then(|rows| rows.collect())
            })
            .map_err(|e| sql_error("deleting secrets", e))?;
        for (id, name) in &gone {
            self.toggle_member(tx, *id, name)?;
        }
        Ok(gone.len())
    }

    /// Whether the set MAC matches the rows of `secrets` (ids and names).
    pub(crate) fn check_set(&self, conn: &Connection) -> Result<bool> {
        let stored = stored_set(conn)?;
        let mut stmt = conn
            .prepare("SELECT id, name FROM secrets")
            .map_err(|e| sql_error("reading secrets", e))?;
        let mut rows = stmt
            .query([])
            .map_err(|e| sql_error("reading secrets", e))?;
        let mut set = [0u8; 32];
        while let Some(r) = rows.next().map_err(|e| sql_error("reading secrets", e))? {
            let id: i64 = r.get(0).map_err(|e| sql_error("reading secrets", e))?;
            let name: String = r.get(1).map_err(|e| sql_error("reading secrets", e))?;
            for (s, m) in set.iter_mut().zip(self.member(id, &name)) {
                *s ^= m;
            }
        }
        Ok(bool::from(subtle::ConstantTimeEq::ct_eq(
            &set[..],
            &stored[..],
        )))
    }
}

/// The stored set MAC (all zero for an empty vault that never stored one).
fn stored_set(conn: &Connection) -> Result<[u8; 32]> {
    let hex_set: Option<String> = conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")
        .and_then(|mut s| s.query_row([SET_ROW], |r| r.get(0)).optional())
        .map_err(|e| sql_error("reading the set of secrets", e))?;
    let Some(hex_set) = hex_set else {
        return Ok([0u8; 32]);
    };
    let mut set = [0u8; 32];
    match hex::decode(hex_set) {
        Ok(b) if b.len() == 32 => set.copy_from_slice(&b),
        _ => return Err(tampered("the record of the vault's set of secrets")),
    }
    Ok(set)
}

/// A version's envelope in a query joining `versions v` to `secrets s`: its own row's, or,
/// when that is empty and the version is current, the one in its secret's row (the only copy:
/// see [`MacKey::seal_secret`]). An empty envelope on another version stays empty and fails
/// the version's MAC.
pub(crate) const ENVELOPE: &str = "CASE WHEN length(v.envelope) = 0 AND v.version = s.cur_version \
    THEN s.cur_envelope ELSE v.envelope END";

/// Whether version row `v` (without a MAC of its own) is exactly the current version that the
/// secret's record `row` holds: same number, creation time and envelope, and no idempotency
/// token (the record does not hold one). Such a row needs no MAC: the record's MAC binds
/// every field it has, which saves 16 bytes on the row of every secret's current version. A
/// row with a MAC is never taken on the record's word.
fn vouched_by_record(v: &VersionRow, row: &SecretRow) -> bool {
    v.mac.is_none()
        && v.token.is_none()
        && row.cur_version == Some(v.version)
        && row.cur_created == Some(v.created)
        && row.cur_envelope.as_deref() == Some(&v.envelope[..])
}

/// Version `version` of `row`'s secret as stored, with its envelope wherever it is (the
/// record's copy when its own is empty and it is the record's current version), and whether
/// its own row held the envelope.
fn stored_version(
    tx: &Connection,
    row: &SecretRow,
    version: i64,
) -> Result<Option<(VersionRow, bool)>> {
    let stored: Option<VersionRow> = tx
        .prepare_cached(
            "SELECT version, envelope, created, token, mac FROM versions \
             WHERE secret_id = ?1 AND version = ?2",
        )
        .and_then(|mut s| {
            s.query_row([row.id, version], |r| {
                Ok(VersionRow {
                    version: r.get(0)?,
                    envelope: r.get(1)?,
                    created: r.get(2)?,
                    token: r.get(3)?,
                    mac: r.get(4)?,
                })
            })
            .optional()
        })
        .map_err(|e| sql_error("reading a version", e))?;
    Ok(stored.map(|mut v| {
        let own = !v.envelope.is_empty();
        if !own && row.cur_version == Some(version) {
            v.envelope = row.cur_envelope.clone().unwrap_or_default();
        }
        (v, own)
    }))
}

/// One `versions` row (its envelope wherever it is stored, see [`ENVELOPE`]).
#[derive(Clone, Debug)]
pub(crate) struct VersionRow {
    pub version: i64,
    pub envelope: Vec<u8>,
    pub created: i64,
    pub token: Option<String>,
    pub mac: Option<Vec<u8>>,
}

/// Reads version `version` of secret row `secret_id` (unchecked).
pub(crate) fn read_version(
    conn: &Connection,
    secret_id: i64,
    version: i64,
) -> Result<Option<VersionRow>> {
    conn.prepare_cached(&format!(
        "SELECT v.version, {ENVELOPE}, v.created, v.token, v.mac FROM versions v \
         JOIN secrets s ON s.id = v.secret_id WHERE v.secret_id = ?1 AND v.version = ?2"
    ))
    .and_then(|mut s| {
        s.query_row([secret_id, version], |r| {
            Ok(VersionRow {
                version: r.get(0)?,
                envelope: r.get(1)?,
                created: r.get(2)?,
                token: r.get(3)?,
                mac: r.get(4)?,
            })
        })
        .optional()
    })
    .map_err(|e| sql_error("reading a version", e))
}

/// Every version row of secret row `secret_id`, by version (unchecked).
pub(crate) fn read_versions(conn: &Connection, secret_id: i64) -> Result<Vec<VersionRow>> {
    conn.prepare_cached(&format!(
        "SELECT v.version, {ENVELOPE}, v.created, v.token, v.mac FROM versions v \
         JOIN secrets s ON s.id = v.secret_id WHERE v.secret_id = ?1 ORDER BY v.version"
    ))
    .and_then(|mut s| {
        s.query_map([secret_id], |r| {
            Ok(VersionRow {
                version: r.get(0)?,
                envelope: r.get(1)?,
                created: r.get(2)?,
                token: r.get(3)?,
                mac: r.get(4)?,
            })
        })
        .and_then(|rows| rows.collect())
    })
    .map_err(|e| sql_error("reading versions", e))
}

/// `Integrity` unless `versions` is exactly `1..next_version` (versions are never deleted
/// one by one, so a gap is a deleted row).
pub(crate) fn check_complete(name: &str, next_version: i64, versions: &[VersionRow]) -> Result<()> {
    let expected = (next_version - 1).max(0);
    let in_order = versions
        .iter()
        .enumerate()
        .all(|(i, v)| v.version == i as i64 + 1);
    if versions.len() as i64 == expected && in_order {
        return Ok(());
    }
    Err(tampered(&format!(
        "secret {name}: its version rows ({} present, {expected} written)",
        versions.len()
    )))
}

pub(crate) fn read_secret_by_id(conn: &Connection, id: i64) -> Result<Option<SecretRow>> {
    conn.prepare_cached(&format!(
        "SELECT {SECRET_COLUMNS} FROM secrets WHERE id = ?1"
    ))
    .and_then(|mut s| s.query_row([id], |r| SecretRow::read(r, 0)).optional())
    .map_err(|e| sql_error("reading a secret", e))
}

/// The error for a row whose MAC does not match.
pub(crate) fn tampered(what: &str) -> Error {
    Error::new(
        ErrorKind::Integrity,
        format!(
            "local vault: {what} does not match its MAC: the file was edited outside sealbox; \
             restore it from a backup"
        ),
    )
}
