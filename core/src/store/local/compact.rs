//! Schema 5's compact row forms, and the rewrite of older rows into them.
//!
//! Schema 5 stores each key's ciphertext without the bytes its row already implies:
//! - `secrets.dek`: the wrapped DEK as [`WrappedDek::to_compact`] (the namespace is the row's);
//! - `versions.envelope`, `secrets.cur_envelope`: the value's envelope without the header
//!   part naming its DEK ([`Envelope::detach_header`]); the row's wrapped DEK names it.
//!
//! Both are rebuilt on read and are still associated data of their AEAD, so nothing loses
//! authentication; row MACs bind the stored (compact) bytes. Rows are MACed with 128-bit tags
//! ([`super::mac::ROW_MAC_LEN`]), and `secrets` has no index on `namespace` (a namespace's
//! secrets are found by name prefix, [`super::mac::IN_NAMESPACE`]).

use rusqlite::{Connection, params};

use super::mac::{self, MacKey};
use super::schema::sql_error;
use crate::error::Result;
use crate::keys::{Envelope, WrappedDek};

/// Which rows an upgrade may vouch for when it reseals them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trust {
    /// Schema 3 had no MACs: every row is taken as it is (as the upgrade to 4 always did).
    Unsealed,
    /// Schema 4: a row is resealed only if its schema-4 MAC checks; one that fails keeps
    /// failing (no MAC), so the upgrade never launders an edit.
    CheckedV4,
}

/// Rewrites secret row `id` (a schema-3 or schema-4 row) and its version rows into the
/// compact forms, in the caller's transaction. With [`Trust::CheckedV4`] the rows are resealed
/// here; with [`Trust::Unsealed`] the caller seals them afterwards (the upgrade from 3 moves
/// the current envelope as it seals). Bytes that do not parse as the form they should have
/// (an edited row) are left as they are and fail on read.
pub(crate) fn compact_secret(tx: &Connection, mac: &MacKey, id: i64, trust: Trust) -> Result<()> {
    let err = |e| sql_error("rewriting a secret in the compact layout", e);
    let Some(row) = mac::read_secret_by_id(tx, id)? else {
        return Ok(());
    };
    // Each version with its envelope wherever stored, as the schema-4 MAC bound it.
    let versions = mac::read_versions(tx, id)?;
    let mut secret_ok = trust == Trust::Unsealed || mac.check_v4_secret(&row);
    let mut versions_ok: Vec<bool> = versions
        .iter()
        .map(|v| trust == Trust::Unsealed || mac.check_v4_version(id, v))
        .collect();
    match WrappedDek::from_bytes(&row.dek) {
        Ok(wrapped) => {
            let (dek_id, dek_version) = (wrapped.dek_id().as_str(), wrapped.dek_version());
            let compact = |envelope: &[u8]| {
                Envelope::detach_header(envelope, dek_id, dek_version)
                    .ok()
                    .map(<[u8]>::to_vec)
            };
            for (v, ok) in versions.iter().zip(versions_ok.iter_mut()) {
                match compact(&v.envelope) {
                    // A version row holding no envelope (the current version's is in the
                    // secret's row, rewritten below) is left as it is.
                    Some(body) => {
                        tx.prepare_cached(
                            "UPDATE versions SET envelope = ?3                              WHERE secret_id = ?1 AND version = ?2 AND length(envelope) > 0",
                        )
                        .and_then(|mut s| s.execute(params![id, v.version, body]))
                        .map_err(err)?;
                    }
                    None => *ok = false,
                }
            }
            let cur = row.cur_envelope.as_deref().map(compact);
            if matches!(cur, Some(None)) {
                secret_ok = false;
            }
            tx.prepare_cached(
                "UPDATE secrets SET dek = ?2, cur_envelope = COALESCE(?3, cur_envelope) \
                 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![id, wrapped.to_compact(), cur.flatten()]))
            .map_err(err)?;
        }
        Err(_) => {
            secret_ok = false;
            versions_ok.iter_mut().for_each(|ok| *ok = false);
        }
    }
    if trust == Trust::CheckedV4 {
        mac.reseal_secret_as_is(tx, id, secret_ok)?;
        for (v, ok) in versions.iter().zip(versions_ok) {
            mac.reseal_version_as_is(tx, id, v.version, ok)?;
        }
    }
    Ok(())
}
