//! Rotation: the four steps AWS rotation functions use (create a `PENDING` version, set it
//! on the target, test it, promote it), resumable and undoable, one process at a time.
//!
//! * [`RotationEngine`] runs the steps over any [`SecretStore`](crate::store::SecretStore)
//!   with stages. Each step is keyed by the pending version and recorded in the store, so a
//!   rotation killed between any two steps resumes where it stopped; a failure leaves
//!   `CURRENT` as it was and records the attempt; [`RotationEngine::rollback`] undoes.
//! * A lease in the same store (a compare-and-set record with an expiry) keeps two processes,
//!   on one host or many, from rotating one secret at once.
//! * A [`Generator`] makes passwords (meeting a [`CredentialPolicy`], SOC2's by default),
//!   hex and base64url tokens and API keys from the OS CSPRNG, straight into locked memory.
//! * A [`Rotator`] puts the new value on its target and tests it there; [`Generated`] is the
//!   one with no target, [`Exec`] runs a command with the value on its standard input;
//!   others (`postgres`, `mysql`) come from rotator crates through the [`RotatorRegistry`].
//!
//! * Through a client, [`Sealbox::rotation`](crate::Sealbox::rotation) checks the `rotate`
//!   capability, routes, audits into the client's log and runs schedules (`run_due`).
//!
//! Every step is an audit event (`rotation_started`, `rotation_set`, `rotation_tested`,
//! `rotation_finished`, `rotation_failed` at alert level, `rotation_rolled_back`) and counts
//! in `sealbox_rotation_steps_total{step,outcome}`.

mod client;
mod engine;
mod exec;
pub mod generator;
pub mod policy;
mod record;
mod registry;
mod rotator;

pub use client::{DueReport, Rotation, ScheduledStatus};
pub use engine::{
    DEFAULT_LEASE_TTL, DeriveFn, NewValue, RolledBack, Rotated, RotationEngine, Status,
};
pub use exec::Exec;
pub use generator::Generator;
pub use policy::{CredentialPolicy, Violation};
pub use record::{Failure, Lease, Step, record_name};
pub use registry::{RotatorFactory, RotatorFuture, RotatorRegistry, RotatorSettings};
pub use rotator::{Generated, Rotator, StepContext};
