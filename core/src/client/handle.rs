//! `SecretHandle` and `Principal`.

use std::sync::Arc;
use std::time::SystemTime;

use crate::audit::Resource;
use crate::secret::Secret;
use crate::store::{SecretName, Stage, VersionId};

/// Who is calling: the identity the policy checks and the audit log records.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Principal(Arc<str>);

impl Principal {
    /// A principal by name (`"svc:predis-cache"`, `"user:alice"`).
    pub fn new(name: impl AsRef<str>) -> Principal {
        Principal(Arc::from(name.as_ref()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Principal {
    /// The OS user running the process (`"user:<name>"`), or `"anonymous"`.
    fn default() -> Principal {
        match std::env::var("USER") {
            Ok(u) if !u.is_empty() => Principal::new(format!("user:{u}")),
            _ => Principal::new("anonymous"),
        }
    }
}

/// What is known about a cached or fetched version, shared by every handle to it.
#[derive(Debug)]
pub(crate) struct VersionMeta {
    pub(crate) name: SecretName,
    pub(crate) version: VersionId,
    pub(crate) stages: Vec<Stage>,
    pub(crate) created: Option<SystemTime>,
    /// The audit resource (name, store, version), built once per version.
    pub(crate) resource: Arc<Resource>,
}

#[derive(Debug)]
pub(crate) struct HandleInner {
    pub(crate) meta: Arc<VersionMeta>,
    pub(crate) value: Secret,
}

/// A secret returned by the client: the value (locked memory) plus where it came from.
/// Cloning is cheap (an `Arc`); dropping the last handle wipes the value. A cache hit returns
/// another handle to the cached value (or, in sealed mode, a freshly decrypted copy).
#[derive(Clone, Debug)]
pub struct SecretHandle {
    inner: Arc<HandleInner>,
}

impl SecretHandle {
    pub(crate) fn from_inner(inner: Arc<HandleInner>) -> SecretHandle {
        SecretHandle { inner }
    }

    /// The secret's name.
    pub fn name(&self) -> &SecretName {
        &self.inner.meta.name
    }

    /// The version id.
    pub fn version(&self) -> &VersionId {
        &self.inner.meta.version
    }

    /// The stages on this version when it was read.
    pub fn stages(&self) -> &[Stage] {
        &self.inner.meta.stages
    }

    /// When the version was created, where the store knows.
    pub fn created(&self) -> Option<SystemTime> {
        self.inner.meta.created
    }

    /// The id of the store it came from.
    pub fn store(&self) -> &str {
        self.inner.meta.resource.store.as_deref().unwrap_or("")
    }

    /// The audit resource (name, store, version) of this version.
    pub(crate) fn resource(&self) -> &Arc<Resource> {
        &self.inner.meta.resource
    }

    /// The value.
    pub fn secret(&self) -> &Secret {
        &self.inner.value
    }
}

impl secrecy::ExposeSecret<[u8]> for SecretHandle {
    fn expose_secret(&self) -> &[u8] {
        secrecy::ExposeSecret::expose_secret(&self.inner.value)
    }
}
