//! The four steps (create, set, test, finish), resume, rollback and the lease.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::audit::{Action, AuditEvent, Level, Resource};
use crate::error::{Error, ErrorKind, Result};
use crate::principal::Principal;
use crate::secret::Secret;
use crate::store::{
    PutOptions, SecretMetadata, SecretName, SecretStore, Stage, VersionId, VersionSelector,
};

use super::generator::Generator;
use super::record::{self, Failure, Lease, Record, Step, Stored};
use super::rotator::{Rotator, StepContext};

/// Where the value of a new version comes from.
pub enum NewValue {
    /// Generated when the `PENDING` version is created.
    Generate(Generator),
    /// Given by the caller (moved into the store, then wiped with the `Secret`).
    Given(Secret),
    /// Made from the `CURRENT` value (none when there is no `CURRENT` version), read under the
    /// rotation's lease just before `PENDING` is written: a value that depends on the one it
    /// replaces, like the alternating-users strategy's "the other user", cannot be made from
    /// a current value another process has since rotated away.
    FromCurrent(DeriveFn),
}

/// Makes a new value from the current one (see [`NewValue::FromCurrent`]).
pub type DeriveFn = Box<dyn FnOnce(Option<&Secret>) -> Result<Secret> + Send>;

impl std::fmt::Debug for NewValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NewValue::Generate(g) => f.debug_tuple("Generate").field(g).finish(),
            NewValue::Given(v) => f.debug_tuple("Given").field(v).finish(),
            NewValue::FromCurrent(_) => f.write_str("FromCurrent(..)"),
        }
    }
}

/// How a call to [`RotationEngine::rotate`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotated {
    /// The version now `CURRENT`.
    pub current: VersionId,
    /// The version now `PREVIOUS` (none on a secret's first version).
    pub previous: Option<VersionId>,
    /// Whether this call resumed an interrupted rotation (its `PENDING` version was kept).
    pub resumed: bool,
}

/// What [`RotationEngine::rollback`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RolledBack {
    /// A finished rotation was undone: `restored` is `CURRENT` again.
    Finished {
        /// The version readers get again.
        restored: VersionId,
        /// The version that was `CURRENT`, now `PREVIOUS`.
        undone: VersionId,
    },
    /// An unfinished rotation was abandoned: its `PENDING` version lost the stage.
    Abandoned {
        /// The abandoned version.
        pending: VersionId,
    },
}

/// What a status shows for one secret. Names, versions and times only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The secret.
    pub name: SecretName,
    /// When its last rotation finished (else when its current version was written).
    pub last_rotated: Option<SystemTime>,
    /// The version staged `PENDING` by an unfinished rotation, and the last step it did.
    pub pending: Option<(VersionId, Option<Step>)>,
    /// The last failure since the last finished rotation.
    pub last_failure: Option<Failure>,
    /// Failed attempts since the last finished rotation.
    pub failures: u32,
    /// The process holding the lease, while one rotates it.
    pub lease: Option<Lease>,
}

type EventSink = Arc<dyn Fn(AuditEvent) + Send + Sync>;

/// Runs rotations over one store. Cheap to clone; every process (or task) that may rotate a
/// secret makes its own, and the lease in the store keeps them from running at once.
#[derive(Clone)]
pub struct RotationEngine {
    store: Arc<dyn SecretStore>,
    store_id: Arc<str>,
    principal: Principal,
    events: Option<EventSink>,
    lease_ttl: Duration,
    holder: String,
}

impl std::fmt::Debug for RotationEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotationEngine")
            .field("store", &self.store.kind())
            .field("store_id", &self.store_id)
            .field("principal", &self.principal)
            .field("lease_ttl", &self.lease_ttl)
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

/// How long a lease lasts unless renewed; every step renews it.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(300);

impl RotationEngine {
    /// An engine over `store` (audit lines name it `store_id`).
    pub fn new(store: Arc<dyn SecretStore>, store_id: impl AsRef<str>) -> RotationEngine {
        RotationEngine {
            store,
            store_id: Arc::from(store_id.as_ref()),
            principal: Principal::new("rotation"),
            events: None,
            lease_ttl: DEFAULT_LEASE_TTL,
            holder: holder_id(),
        }
    }

    /// Who the audit events name.
    pub fn principal(mut self, principal: Principal) -> RotationEngine {
        self.principal = principal;
        self
    }

    /// Where every step's audit event goes (a client's
    /// [`record_event`](crate::Sealbox::record_event), a test's list).
    pub fn on_event(mut self, sink: impl Fn(AuditEvent) + Send + Sync + 'static) -> Self {
        self.events = Some(Arc::new(sink));
        self
    }

    /// How long a lease lasts without a step renewing it: a process killed mid-rotation
    /// blocks the secret's rotation this long, and a step must not take longer.
    pub fn lease_ttl(mut self, ttl: Duration) -> RotationEngine {
        self.lease_ttl = ttl;
        self
    }

    /// This engine's lease holder id (`PID@HOST/TAG`).
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Rotates `name`: resumes its unfinished rotation if it has one (keeping that `PENDING`
    /// value, `value` unused), else creates a `PENDING` version from `value`; then sets it on
    /// the target, tests it and promotes it. On failure `CURRENT` is unchanged, the failure is
    /// recorded, `PENDING` stays for the next attempt to resume (or [`rollback`] to abandon),
    /// and the error says which step failed.
    ///
    /// [`rollback`]: RotationEngine::rollback
    pub async fn rotate(
        &self,
        name: &SecretName,
        rotator: &dyn Rotator,
        value: NewValue,
    ) -> Result<Rotated> {
        let mut stored = self.acquire(name).await?;
        let result = self.run(name, rotator, value, &mut stored).await;
        self.conclude(name, &mut stored, result).await
    }

    /// Rotates `name` when its last rotation is older than `period` (or it has an unfinished
    /// one); `None` when it is not due or another process holds its lease. Due-ness is
    /// decided under the lease, so of many processes calling this at once exactly one
    /// rotates.
    pub async fn rotate_if_due(
        &self,
        name: &SecretName,
        rotator: &dyn Rotator,
        value: NewValue,
        period: Duration,
    ) -> Result<Option<Rotated>> {
        // Looked at first without the lease: a fleet running this on a timer writes the
        // record (on AWS, a new version of it) only when there is something to do.
        let peek = record::read(self.store.as_ref(), name).await?;
        if !self.is_due(name, &peek.record, period).await? {
            return Ok(None);
        }
        let mut stored = match self.acquire(name).await {
            Ok(s) => s,
            Err(e) if e.kind() == ErrorKind::Conflict => return Ok(None),
            Err(e) => return Err(e),
        };
        let due = match self.is_due(name, &stored.record, period).await {
            Ok(due) => due,
            Err(e) => {
                let _ = self.release(name, &mut stored).await;
                return Err(e);
            }
        };
        if !due {
            self.release(name, &mut stored).await?;
            return Ok(None);
        }
        let result = self.run(name, rotator, value, &mut stored).await;
        self.conclude(name, &mut stored, result).await.map(Some)
    }

    /// Undoes `name`'s rotation. An unfinished one (a `PENDING` version not yet promoted) is
    /// abandoned: the target gets the current value back and `PENDING` is removed. Else the
    /// last finished one is undone: the target gets the `PREVIOUS` value back, then that
    /// version becomes `CURRENT` again (and the undone one `PREVIOUS`).
    pub async fn rollback(&self, name: &SecretName, rotator: &dyn Rotator) -> Result<RolledBack> {
        let mut stored = self.acquire(name).await?;
        let result = self.run_rollback(name, rotator, &mut stored).await;
        self.conclude(name, &mut stored, result).await
    }

    /// The rotation status of `name`.
    pub async fn status(&self, name: &SecretName) -> Result<Status> {
        let stored = record::read(self.store.as_ref(), name).await?;
        let meta = self.store.describe(name).await?;
        let r = stored.record;
        let last_rotated = r.last_rotated_ms.map(record::from_ms).or_else(|| {
            meta.last_rotated.or_else(|| {
                meta.versions
                    .iter()
                    .find(|v| v.stages.contains(&Stage::Current))
                    .and_then(|v| v.created)
            })
        });
        let pending = unfinished(&meta, &r).map(|v| {
            let done = r
                .pending
                .as_deref()
                .filter(|p| *p == v.as_str())
                .and(r.done);
            (v, done)
        });
        let lease = r.lease.filter(|l| l.expires_ms > record::now_ms());
        Ok(Status {
            name: name.clone(),
            last_rotated,
            pending,
            last_failure: r.last_failure,
            failures: r.failures,
            lease,
        })
    }

    async fn is_due(&self, name: &SecretName, r: &Record, period: Duration) -> Result<bool> {
        let meta = self.store.describe(name).await?;
        if unfinished(&meta, r).is_some() {
            return Ok(true);
        }
        let last = r.last_rotated_ms.map(record::from_ms).or_else(|| {
            meta.versions
                .iter()
                .find(|v| v.stages.contains(&Stage::Current))
                .and_then(|v| v.created)
        });
        Ok(match last {
            Some(t) => SystemTime::now()
                .duration_since(t)
                .is_ok_and(|age| age >= period),
            None => true,
        })
    }

    /// The four steps, each skipped when the record shows it done for this pending version.
    async fn run(
        &self,
        name: &SecretName,
        rotator: &dyn Rotator,
        value: NewValue,
        stored: &mut Stored,
    ) -> std::result::Result<Rotated, (Step, Error)> {
        let meta = self
            .store
            .describe(name)
            .await
            .map_err(|e| (Step::Create, e))?;
        let current = meta.version_with_stage(&Stage::Current).cloned();
        if pending_of(&meta).is_some_and(|p| current.as_ref() == Some(&p))
            && unfinished(&meta, &stored.record).is_none()
        {
            // `PENDING` on the `CURRENT` version, not left by this engine: a rotation that
            // finished elsewhere (AWS's rotation functions leave `AWSPENDING` on the version
            // they promote). Nothing to resume; the label goes before a new version is made.
            self.store
                .set_stage(name, &Stage::Pending, None)
                .await
                .map_err(|e| (Step::Create, e))?;
        }
        // Killed after `PENDING` was removed, before the record said so: the current version
        // is the one the record was rotating, and only the record is left to write.
        let finished_unrecorded = current
            .clone()
            .filter(|c| stored.record.pending.as_deref() == Some(c.as_str()));
        let (pending, resumed) = match (unfinished(&meta, &stored.record), finished_unrecorded) {
            (Some(p), _) | (None, Some(p)) => (p, true),
            (None, None) => (
                self.create(name, current.as_ref(), value, stored)
                    .await
                    .map_err(|e| (Step::Create, e))?,
                false,
            ),
        };
        if current.as_ref() == Some(&pending) {
            // Killed after the promotion, before `PENDING` was removed: only that remains.
            self.finish(name, &pending, stored)
                .await
                .map_err(|e| (Step::Finish, e))?;
            let previous = self
                .store
                .describe(name)
                .await
                .ok()
                .and_then(|m| m.version_with_stage(&Stage::Previous).cloned());
            return Ok(Rotated {
                current: pending,
                previous,
                resumed,
            });
        }
        let step = StepContext {
            name,
            version: &pending,
            current: current.as_ref(),
        };
        for (s, event) in [(Step::Set, "rotation_set"), (Step::Test, "rotation_tested")] {
            if stored.record.has_done(&pending, s) {
                continue;
            }
            let run = async {
                let value = self
                    .store
                    .get(name, &VersionSelector::Version(pending.clone()))
                    .await?
                    .value;
                match s {
                    Step::Set => rotator.set(&step, &value).await?,
                    _ => rotator.test(&step, &value).await?,
                }
                let mut r = stored.record.clone();
                r.pending = Some(pending.as_str().to_owned());
                r.done = Some(s);
                r.lease = Some(self.lease());
                record::write(self.store.as_ref(), name, stored, r).await
            };
            run.await.map_err(|e| (s, e))?;
            self.emit(name, Some(&pending), event, rotator.kind(), None);
            self.count(s, "ok");
        }
        // The promotion is the commit point: before it readers get the old value, after it
        // the new one, and the rotation has happened whatever follows.
        if let Err(e) = self
            .store
            .set_stage(name, &Stage::Current, Some(&pending))
            .await
        {
            // An error does not say the promotion did not happen (a call that timed out
            // after AWS applied it): look, rather than report CURRENT unchanged when it moved.
            let promoted = self
                .store
                .describe(name)
                .await
                .is_ok_and(|m| m.version_with_stage(&Stage::Current) == Some(&pending));
            if !promoted {
                return Err((Step::Finish, e));
            }
        }
        if let Err(e) = self.finish(name, &pending, stored).await {
            // What is left (a PENDING stage on the current version, the record's last
            // rotation time) is cleaned up by the next run of this secret's rotation.
            tracing::warn!(target: "sealbox::rotation", secret = %name, error = %e,
                "rotation promoted; its clean-up failed and is left to the next run");
            self.emit(name, Some(&pending), "rotation_finished", "", None);
            self.count(Step::Finish, "ok");
        }
        Ok(Rotated {
            current: pending,
            previous: current,
            resumed,
        })
    }

    async fn create(
        &self,
        name: &SecretName,
        current: Option<&VersionId>,
        value: NewValue,
        stored: &mut Stored,
    ) -> Result<VersionId> {
        let value = match value {
            NewValue::Given(v) => v,
            NewValue::Generate(g) => g.generate()?,
            NewValue::FromCurrent(derive) => {
                let now = match current {
                    Some(c) => Some(
                        self.store
                            .get(name, &VersionSelector::Version(c.clone()))
                            .await?
                            .value,
                    ),
                    None => None,
                };
                derive(now.as_ref())?
            }
        };
        let options = PutOptions {
            stages: vec![Stage::Pending],
            // A write of a new CURRENT since the describe means someone else changed the
            // secret: stop rather than stage a value beside a version we have not seen.
            expected_current: Some(current.cloned()),
            ..PutOptions::default()
        };
        let info = self.store.put(name, &value, &options).await?;
        drop(value);
        let mut r = stored.record.clone();
        r.pending = Some(info.version.as_str().to_owned());
        r.done = Some(Step::Create);
        r.lease = Some(self.lease());
        record::write(self.store.as_ref(), name, stored, r).await?;
        self.emit(name, Some(&info.version), "rotation_started", "", None);
        self.count(Step::Create, "ok");
        Ok(info.version)
    }

    /// After the promotion: `PENDING` removed, the record says rotated.
    async fn finish(
        &self,
        name: &SecretName,
        pending: &VersionId,
        stored: &mut Stored,
    ) -> Result<()> {
        self.store.set_stage(name, &Stage::Pending, None).await?;
        let mut r = stored.record.clone();
        r.pending = None;
        r.done = None;
        r.last_rotated_ms = Some(record::now_ms());
        r.last_failure = None;
        r.failures = 0;
        r.lease = Some(self.lease());
        record::write(self.store.as_ref(), name, stored, r).await?;
        self.emit(name, Some(pending), "rotation_finished", "", None);
        self.count(Step::Finish, "ok");
        Ok(())
    }

    async fn run_rollback(
        &self,
        name: &SecretName,
        rotator: &dyn Rotator,
        stored: &mut Stored,
    ) -> std::result::Result<RolledBack, (Step, Error)> {
        let fail = |e| (Step::Rollback, e);
        let meta = self.store.describe(name).await.map_err(fail)?;
        let current = meta.version_with_stage(&Stage::Current).cloned();
        let pending = pending_of(&meta).filter(|p| Some(p) != current.as_ref());
        let outcome = if let Some(pending) = pending {
            // Unfinished: the target may hold the pending value; give it the current one.
            if let Some(cur) = &current {
                let value = self
                    .store
                    .get(name, &VersionSelector::Version(cur.clone()))
                    .await
                    .map_err(fail)?
                    .value;
                let step = StepContext {
                    name,
                    version: cur,
                    current: Some(cur),
                };
                rotator.restore(&step, &value).await.map_err(fail)?;
            }
            self.store
                .set_stage(name, &Stage::Pending, None)
                .await
                .map_err(fail)?;
            RolledBack::Abandoned { pending }
        } else {
            let (Some(cur), Some(prev)) = (current, meta.version_with_stage(&Stage::Previous))
            else {
                return Err(fail(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "secret {name} has no PREVIOUS version to roll back to; nothing was \
                         changed"
                    ),
                )));
            };
            let prev = prev.clone();
            let value = self
                .store
                .get(name, &VersionSelector::Version(prev.clone()))
                .await
                .map_err(fail)?
                .value;
            let step = StepContext {
                name,
                version: &prev,
                current: Some(&cur),
            };
            rotator.restore(&step, &value).await.map_err(fail)?;
            self.store
                .set_stage(name, &Stage::Current, Some(&prev))
                .await
                .map_err(fail)?;
            // Moving CURRENT back leaves the undone version PREVIOUS, where a second
            // rollback finds it: rollback twice is a roll forward, as a target would see it.
            RolledBack::Finished {
                restored: prev,
                undone: cur,
            }
        };
        let mut r = stored.record.clone();
        r.pending = None;
        r.done = None;
        r.lease = Some(self.lease());
        record::write(self.store.as_ref(), name, stored, r)
            .await
            .map_err(fail)?;
        let version = match &outcome {
            RolledBack::Finished { restored, .. } => restored,
            RolledBack::Abandoned { pending } => pending,
        };
        self.emit(
            name,
            Some(version),
            "rotation_rolled_back",
            rotator.kind(),
            None,
        );
        self.count(Step::Rollback, "ok");
        Ok(outcome)
    }

    /// Takes the lease on `name`'s rotation: `Conflict` when another process holds it.
    async fn acquire(&self, name: &SecretName) -> Result<Stored> {
        let mut stored = record::read(self.store.as_ref(), name).await?;
        if let Some(lease) = &stored.record.lease
            && lease.holder != self.holder
            && lease.expires_ms > record::now_ms()
        {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "secret {name} is being rotated by {} (lease for {} more s); try again \
                     after it ends",
                    lease.holder,
                    (lease.expires_ms - record::now_ms()).div_ceil(1000)
                ),
            ));
        }
        let mut r = stored.record.clone();
        r.lease = Some(self.lease());
        record::write(self.store.as_ref(), name, &mut stored, r)
            .await
            .map_err(|e| {
                if e.kind() == ErrorKind::Conflict {
                    Error::new(
                        ErrorKind::Conflict,
                        format!(
                            "another process took the rotation lease of {name} first; try \
                             again after its rotation ends"
                        ),
                    )
                } else {
                    e
                }
            })?;
        Ok(stored)
    }

    async fn release(&self, name: &SecretName, stored: &mut Stored) -> Result<()> {
        let mut r = stored.record.clone();
        r.lease = None;
        record::write(self.store.as_ref(), name, stored, r).await
    }

    /// Records the outcome and releases the lease. A failure is recorded (if the record can
    /// still be written) and returned, naming its step.
    async fn conclude<T>(
        &self,
        name: &SecretName,
        stored: &mut Stored,
        result: std::result::Result<T, (Step, Error)>,
    ) -> Result<T> {
        match result {
            Ok(v) => {
                if let Err(e) = self.release(name, stored).await {
                    // The work is done; the lease lapses by itself after its expiry.
                    tracing::warn!(target: "sealbox::rotation", secret = %name, error = %e,
                        "could not release the rotation lease; it expires by itself");
                }
                Ok(v)
            }
            Err((step, e)) => {
                let reason = format!("{}: {}", e.kind().as_str(), e.message());
                self.count(step, "error");
                let pending = stored.record.pending.clone().map(VersionId::new);
                self.emit(
                    name,
                    pending.as_ref(),
                    "rotation_failed",
                    step.as_str(),
                    Some(reason.clone()),
                );
                let mut r = stored.record.clone();
                r.lease = None;
                r.failures = r.failures.saturating_add(1);
                r.last_failure = Some(Failure {
                    at_ms: record::now_ms(),
                    step,
                    reason,
                });
                if let Err(w) = record::write(self.store.as_ref(), name, stored, r).await {
                    tracing::warn!(target: "sealbox::rotation", secret = %name, error = %w,
                        "could not record a failed rotation step");
                }
                Err(Error::new(
                    e.kind(),
                    format!(
                        "rotation of {name} failed at step {}: {}; CURRENT is unchanged, run the \
                         rotation again to resume or roll it back to abandon it",
                        step.as_str(),
                        e.message()
                    ),
                ))
            }
        }
    }

    fn lease(&self) -> Lease {
        Lease {
            holder: self.holder.clone(),
            expires_ms: record::now_ms()
                .saturating_add(u64::try_from(self.lease_ttl.as_millis()).unwrap_or(u64::MAX)),
        }
    }

    fn emit(
        &self,
        name: &SecretName,
        version: Option<&VersionId>,
        event: &'static str,
        detail: &str,
        failure: Option<String>,
    ) {
        let Some(sink) = &self.events else {
            return;
        };
        let resource = Arc::new(Resource {
            name: name.as_str().into(),
            store: Some(self.store_id.clone()),
            version: version.cloned(),
        });
        let mut e = AuditEvent::access(Action::Rotate, self.principal.clone(), resource);
        e.event = Some(event);
        if let Some(reason) = failure {
            // A failed rotation raises an alert: the secret is due and has not changed.
            e = e.failed(Cow::Owned(reason));
            e.level = Level::Alert;
        } else if !detail.is_empty() {
            e.reason = Some(Cow::Owned(format!("rotator {detail}")));
        }
        sink(e);
    }

    fn count(&self, step: Step, outcome: &'static str) {
        metrics::counter!(
            "sealbox_rotation_steps_total",
            "step" => step.as_str(),
            "outcome" => outcome
        )
        .increment(1);
    }
}

/// The version staged `PENDING`, if any.
fn pending_of(meta: &SecretMetadata) -> Option<VersionId> {
    meta.version_with_stage(&Stage::Pending).cloned()
}

/// The version an unfinished rotation staged: `PENDING` on a version that is not `CURRENT`,
/// or on the `CURRENT` one when the record says this engine's rotation promoted it and was
/// stopped before removing the stage. (`PENDING` left on `CURRENT` otherwise marks a finished
/// rotation, as AWS's own rotation functions leave it.)
fn unfinished(meta: &SecretMetadata, r: &Record) -> Option<VersionId> {
    let p = pending_of(meta)?;
    let on_current = meta.version_with_stage(&Stage::Current) == Some(&p);
    (!on_current || r.pending.as_deref() == Some(p.as_str())).then_some(p)
}

/// `PID@HOST/TAG`: unique per engine, readable in a status.
fn holder_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned());
    let mut tag = [0u8; 4];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut tag);
    format!("{}@{host}/{}", std::process::id(), hex::encode(tag))
}
