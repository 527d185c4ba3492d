//! `verify`: every row checked against its MAC, every version decrypted, SQLite's full
//! `integrity_check`, and how far the file is behind its recorded write counter.

use std::sync::Arc;

use super::mac::{self, SecretRow};
use super::schema::{self, sql_error};
use super::{LocalVault, open_value, rollback, value_aad};
use crate::error::{Error, ErrorKind, Result};
use crate::keys::{DataKey, KeyId, WrappedDek};

/// What [`LocalVault::verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Secrets examined (including soft-deleted ones).
    pub secrets: u64,
    /// Versions that decrypted and authenticated.
    pub versions_ok: u64,
    /// Versions left under crypto-shredded keys (an interrupted erasure; not a failure).
    pub versions_shredded: u64,
    /// Versions or secrets that failed, with the reason.
    pub failures: Vec<VerifyFailure>,
    /// Whether the master key provider keeps the vault's write counter, so that an older
    /// copy put in the vault's place is detected (the local key file does; passphrase,
    /// environment, KMS and PKCS#11 masters do not).
    pub rollback_detection: bool,
    /// The vault file's write counter.
    pub write_count: u64,
    /// How many writes the file is behind the counter its key provider recorded (0: none).
    pub writes_behind: u64,
    /// Whether the file is a backup written by [`LocalVault::backup_to`] (not restored).
    pub is_backup: bool,
}

impl VerifyReport {
    /// True when nothing failed and the file is not an older copy of the vault (a backup
    /// may be behind: that is what a backup is).
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty() && (self.writes_behind == 0 || self.is_backup)
    }
}

/// One failed item in a [`VerifyReport`]. Names and versions only, never values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyFailure {
    /// The secret.
    pub name: String,
    /// The version, or `None` when the secret's DEK itself failed.
    pub version: Option<i64>,
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The error message.
    pub message: String,
}

/// One version as `verify` reads it: secret id, name, namespace, wrapped DEK, version,
/// envelope.
type VerifyRow = (i64, String, String, Vec<u8>, i64, Vec<u8>);
impl LocalVault {
    /// Decrypts every version of every secret and runs SQLite's full `integrity_check`.
    /// Structural damage is an `Integrity` error; per-version failures are listed in the
    /// report.
    pub async fn verify(&self) -> Result<VerifyReport> {
        let provider = self.inner.keyring.provider().clone();
        // Record this handle's writes first, so that the comparison below is up to date, and
        // read the recorded counter before the vault's (see `Counter::open`).
        if let Err(e) = self.inner.counter.publish(provider.as_ref()) {
            tracing::warn!(
                target: "sealbox::local",
                error = %e,
                "could not record the vault's write counter in the key file"
            );
        }
        let recorded = provider.store_counter(&self.inner.store_id)?;
        let mac = &self.inner.mac;
        let (rows, write_count, is_backup, set_ok, record_failures, examined) = {
            let conn = self.inner.pool.get()?;
            schema::check_structure(&conn, true)?;
            let write_count = rollback::stored(&conn)?;
            let is_backup = rollback::is_backup(&conn)?;
            let secrets: Vec<SecretRow> = conn
                .prepare(&format!(
                    "SELECT {} FROM secrets ORDER BY id",
                    mac::SECRET_COLUMNS
                ))
                .and_then(|mut s| {
                    s.query_map([], |r| SecretRow::read(r, 0))
                        .and_then(|rows| rows.collect())
                })
                .map_err(|e| sql_error("reading secrets", e))?;
            let examined = secrets.len() as u64;
            let mut rows: Vec<VerifyRow> = Vec::new();
            let mut failures = Vec::new();
            let fail = |name: &str, version: Option<i64>, e: Error| VerifyFailure {
                name: name.to_owned(),
                version,
                kind: e.kind(),
                message: e.message().to_owned(),
            };
            for secret in secrets {
                if let Err(e) = mac.check_secret(&secret) {
                    failures.push(fail(&secret.name, None, e));
                    continue;
                }
                let versions = mac::read_versions(&conn, secret.id)?;
                if let Err(e) = mac::check_complete(&secret.name, secret.next_version, &versions) {
                    failures.push(fail(&secret.name, None, e));
                }
                let current = secret.stage("CURRENT");
                let copy_ok = match (current, &secret.cur_envelope) {
                    (None, None) => true,
                    (Some(v), Some(copy)) => {
                        secret.cur_version == Some(v)
                            && versions
                                .iter()
                                .any(|r| r.version == v && &r.envelope == copy)
                    }
                    _ => false,
                };
                if !copy_ok {
                    failures.push(fail(
                        &secret.name,
                        current,
                        mac::tampered(&format!(
                            "secret {}: the copy of its current version in its record",
                            secret.name
                        )),
                    ));
                }
                for v in versions {
                    if let Err(e) = mac.check_version(&v, &secret) {
                        failures.push(fail(&secret.name, Some(v.version), e));
                        continue;
                    }
                    rows.push((
                        secret.id,
                        secret.name.clone(),
                        secret.namespace.clone(),
                        secret.dek.clone(),
                        v.version,
                        v.envelope,
                    ));
                }
            }
            let set_ok = mac.check_set(&conn)?;
            (rows, write_count, is_backup, set_ok, failures, examined)
        };
        self.clear_key_caches();
        let mut report = VerifyReport {
            rollback_detection: self.inner.counter.detection,
            write_count,
            writes_behind: recorded.map_or(0, |r| r.saturating_sub(write_count)),
            is_backup,
            failures: record_failures,
            secrets: examined,
            ..VerifyReport::default()
        };
        if !set_ok {
            report.failures.push(VerifyFailure {
                name: "(the set of secrets)".to_owned(),
                version: None,
                kind: ErrorKind::Integrity,
                message: mac::tampered(
                    "the set of secrets (a secret's row was deleted, added or renamed): it",
                )
                .message()
                .to_owned(),
            });
        }
        let mut last_secret = None;
        let mut dek: Option<std::result::Result<(Arc<DataKey>, WrappedDek), Error>> = None;
        for (id, name, ns, dek_bytes, version, envelope) in rows {
            if last_secret != Some(id) {
                last_secret = Some(id);
                dek = Some(match KeyId::new(ns.clone()) {
                    Ok(ns) => self.dek(id, &ns, &dek_bytes).await,
                    Err(_) => Err(Error::new(
                        ErrorKind::Integrity,
                        "stored namespace is invalid",
                    )),
                });
                if let Some(Err(e)) = &dek
                    && e.kind() != ErrorKind::KeyDestroyed
                {
                    report.failures.push(VerifyFailure {
                        name: name.clone(),
                        version: None,
                        kind: e.kind(),
                        message: e.message().to_owned(),
                    });
                }
            }
            match &dek {
                Some(Ok((key, wrapped))) => {
                    let aad = value_aad(&self.inner.store_id, &ns, &name, version, wrapped);
                    match open_value(key, &aad, &envelope) {
                        Ok(_) => report.versions_ok += 1,
                        Err(e) => report.failures.push(VerifyFailure {
                            name: name.clone(),
                            version: Some(version),
                            kind: e.kind(),
                            message: e.message().to_owned(),
                        }),
                    }
                }
                Some(Err(e)) if e.kind() == ErrorKind::KeyDestroyed => {
                    report.versions_shredded += 1;
                }
                _ => {}
            }
        }
        Ok(report)
    }
}
