//! The target side of a rotation: a [`Rotator`] puts a new value where it is used (a database
//! role, a remote API) and checks it works there.

use async_trait::async_trait;

use crate::error::Result;
use crate::secret::Secret;
use crate::store::{SecretName, VersionId};

use super::engine::NewValue;
use super::generator::Generator;

/// What a rotator step is told about the rotation it serves.
#[derive(Clone, Debug)]
pub struct StepContext<'a> {
    /// The secret rotated.
    pub name: &'a SecretName,
    /// The version the step is about (the pending one; on rollback, the one restored).
    pub version: &'a VersionId,
    /// The version readers get now.
    pub current: Option<&'a VersionId>,
}

/// Puts values on a rotation's target and tests them.
///
/// Every method may run more than once for the same version (a rotation interrupted between
/// `set` and the record of it is resumed with `set` again), so each must be idempotent:
/// setting the password a role already has, or testing again, must succeed.
#[async_trait]
pub trait Rotator: Send + Sync + std::fmt::Debug {
    /// A short name for audit lines and errors (`"generated"`, `"exec"`, ...).
    fn kind(&self) -> &'static str;

    /// Makes `value` valid on the target, beside the current value where the target allows.
    async fn set(&self, step: &StepContext<'_>, value: &Secret) -> Result<()>;

    /// Checks `value` works on the target (a login with it, an authenticated call).
    async fn test(&self, step: &StepContext<'_>, value: &Secret) -> Result<()>;

    /// Makes `value`, an earlier version being restored, valid on the target again. By
    /// default the same as [`Rotator::set`].
    async fn restore(&self, step: &StepContext<'_>, value: &Secret) -> Result<()> {
        self.set(step, value).await
    }

    /// The value a scheduled rotation with this rotator stages, given the `generator` the
    /// secret's type calls for. By default that generator's output; a rotator whose value
    /// depends on the current one (a database user's next credential) makes its own.
    fn pending_value(&self, generator: Generator) -> NewValue {
        NewValue::Generate(generator)
    }
}

/// The rotator with no target: API keys and tokens that sealbox itself hands out, where a new
/// version in the store is the whole rotation. `set` and `test` succeed with nothing to do.
#[derive(Clone, Copy, Debug, Default)]
pub struct Generated;

#[async_trait]
impl Rotator for Generated {
    fn kind(&self) -> &'static str {
        "generated"
    }

    async fn set(&self, _step: &StepContext<'_>, _value: &Secret) -> Result<()> {
        Ok(())
    }

    async fn test(&self, _step: &StepContext<'_>, value: &Secret) -> Result<()> {
        if value.is_empty() {
            return Err(crate::error::Error::invalid_input(
                "the pending value is empty; a generated credential must have a length",
            ));
        }
        Ok(())
    }
}
