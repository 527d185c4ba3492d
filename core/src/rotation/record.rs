//! The rotation record of one secret, kept in the store beside it: the lease (who rotates it
//! now, until when), the step an unfinished rotation reached, and the last outcome.
//!
//! The record is a secret of its own, `_sealbox/rotation/NAME`, in the same store, so every
//! process that reaches the store sees it. It holds names, ids and times, never a value.
//! Every write of it is a compare-and-set on the version read before: a process that lost
//! its lease (it expired and another took it) learns so on its next write and stops.
//!
//! On a store whose compare-and-set is not atomic (AWS Secrets Manager checks the current
//! version, then writes), the write also carries an idempotency token made from the version
//! it replaces. Every store keeps the contract that a token names one value: of two
//! processes that read the same version and write different records, the second gets
//! `Conflict` from the store itself, however close together the two writes come (on AWS the
//! token is the new version's `ClientRequestToken`, which can name only one version).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::secret::Secret;
use crate::store::{PutOptions, SecretName, SecretStore, Stage, VersionId, VersionSelector};

use secrecy::ExposeSecret;

/// The steps of a rotation, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// A `PENDING` version was written.
    Create,
    /// The target accepted the pending value.
    Set,
    /// The target answered with the pending value.
    Test,
    /// `PENDING` became `CURRENT`.
    Finish,
    /// A finished rotation was undone, or an unfinished one abandoned.
    Rollback,
}

impl Step {
    /// The lowercase name, as the exec rotator's argument and metric labels spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Step::Create => "create",
            Step::Set => "set",
            Step::Test => "test",
            Step::Finish => "finish",
            Step::Rollback => "rollback",
        }
    }
}

/// Who holds the lease on a secret's rotation, and until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// `PID@HOST/TAG` of the holding process.
    pub holder: String,
    /// Milliseconds since the Unix epoch after which another process may take the lease.
    pub expires_ms: u64,
}

/// The last failed attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The step that failed.
    pub step: Step,
    /// The error's kind and message (error messages never carry values).
    pub reason: String,
}

/// What the store keeps about a secret's rotation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The lease, while a process rotates the secret.
    #[serde(default)]
    pub lease: Option<Lease>,
    /// The version staged `PENDING` by the unfinished rotation.
    #[serde(default)]
    pub pending: Option<String>,
    /// The last step done for `pending`.
    #[serde(default)]
    pub done: Option<Step>,
    /// When the last rotation finished, in milliseconds since the Unix epoch.
    #[serde(default)]
    pub last_rotated_ms: Option<u64>,
    /// The last failure since the last finished rotation.
    #[serde(default)]
    pub last_failure: Option<Failure>,
    /// Failed attempts since the last finished rotation.
    #[serde(default)]
    pub failures: u32,
}

impl Record {
    /// Whether the unfinished rotation of version `pending` has done `step`.
    pub(crate) fn has_done(&self, pending: &VersionId, step: Step) -> bool {
        self.pending.as_deref() == Some(pending.as_str()) && self.done.is_some_and(|d| d >= step)
    }
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    to_ms(SystemTime::now())
}

pub(crate) fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// The name of `name`'s rotation record.
pub fn record_name(name: &SecretName) -> Result<SecretName> {
    SecretName::new(format!("_sealbox/rotation/{name}"))
}

/// A record as read, with the version a compare-and-set write must name.
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) record: Record,
    pub(crate) version: Option<VersionId>,
}

/// The idempotency token of the one version that may follow `version` of the record
/// `rec_name`: 64 hex digits, so AWS takes it as the new version's id as it is.
fn successor_token(rec_name: &SecretName, version: &VersionId) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"sealbox rotation record successor\0");
    ctx.update(rec_name.as_str().as_bytes());
    ctx.update(b"\0");
    ctx.update(version.as_str().as_bytes());
    hex::encode(ctx.finish())
}

/// Reads `name`'s record (an empty one when there is none).
pub(crate) async fn read(store: &dyn SecretStore, name: &SecretName) -> Result<Stored> {
    let rec_name = record_name(name)?;
    match store.get(&rec_name, &VersionSelector::Current).await {
        Ok(v) => {
            let record = serde_json::from_slice(v.value.expose_secret()).map_err(|e| {
                Error::new(
                    ErrorKind::Integrity,
                    format!(
                        "the rotation record {rec_name} is not valid ({e}); delete it to start \
                         the rotation record afresh"
                    ),
                )
            })?;
            Ok(Stored {
                record,
                version: Some(v.version),
            })
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Stored {
            record: Record::default(),
            version: None,
        }),
        Err(e) => Err(e),
    }
}

/// Writes `record` over the version `stored` was read at; `Conflict` when another process
/// wrote it since.
pub(crate) async fn write(
    store: &dyn SecretStore,
    name: &SecretName,
    stored: &mut Stored,
    record: Record,
) -> Result<()> {
    let rec_name = record_name(name)?;
    let json = serde_json::to_vec(&record)
        .map_err(|e| Error::internal(format!("rotation record not encodable: {e}")))?;
    let value = Secret::init_with(json.len(), |d| {
        d.copy_from_slice(&json);
        Ok(())
    })?;
    let cas_is_atomic = store.capabilities().compare_and_set;
    let options = PutOptions {
        stages: vec![Stage::Current],
        expected_current: Some(stored.version.clone()),
        // A creation is atomic on every store (it fails when the name exists).
        idempotency_token: match &stored.version {
            Some(v) if !cas_is_atomic => Some(successor_token(&rec_name, v)),
            _ => None,
        },
        // Given once, when the record is made: on AWS a description is a call of its own.
        description: stored
            .version
            .is_none()
            .then(|| format!("sealbox rotation record of {name} (no values)")),
        ..PutOptions::default()
    };
    let info = store.put(&rec_name, &value, &options).await.map_err(|e| {
        if e.kind() == ErrorKind::Conflict {
            Error::new(
                ErrorKind::Conflict,
                format!(
                    "another process changed the rotation record of {name} (its lease expired \
                     and was taken over); this attempt stopped, the other one goes on"
                ),
            )
        } else {
            e
        }
    })?;
    stored.version = Some(info.version);
    stored.record = record;
    Ok(())
}
