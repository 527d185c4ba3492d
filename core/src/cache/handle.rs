//! [`SecretHandle`]: a secret as the client returns it, with the version's metadata
//! ([`VersionMeta`]). The cache holds the same handles it answers with, so they live here.

use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use smallvec::SmallVec;

use super::Shared;
use crate::audit::Resource;
use crate::process::ProcessStamp;
use crate::secret::Secret;
use crate::store::{SecretName, Stage, VersionId};

/// What is known about a cached or fetched version, shared by every handle to it.
#[derive(Clone, Debug)]
pub(crate) struct VersionMeta {
    pub(crate) name: SecretName,
    pub(crate) version: VersionId,
    /// Inline for a version with one stage (the usual `CURRENT`): the store's `Vec` is freed
    /// by the reader that made it, not later by whichever thread evicts the version.
    pub(crate) stages: SmallVec<[Stage; 1]>,
    pub(crate) created: Option<SystemTime>,
    /// The id of the store it came from.
    pub(crate) store: Arc<str>,
    /// The audit resource (name, store, version), built on first need (policy, audit or a
    /// failure) and then shared: a miss without either does not copy the name and version.
    resource: OnceLock<Arc<Resource>>,
}

impl VersionMeta {
    /// The metadata of `version` of `name`, read from store `store`.
    pub(crate) fn new(
        name: SecretName,
        store: Arc<str>,
        version: VersionId,
        stages: Vec<Stage>,
        created: Option<SystemTime>,
    ) -> VersionMeta {
        VersionMeta {
            name,
            version,
            // One stage (the usual case) moves into place; collecting takes a loop.
            stages: match <[Stage; 1]>::try_from(stages) {
                Ok(one) => SmallVec::from_buf(one),
                Err(stages) => stages.into_iter().collect(),
            },
            created,
            store,
            resource: OnceLock::new(),
        }
    }

    /// The audit resource of this version.
    #[inline]
    pub(crate) fn resource(&self) -> &Arc<Resource> {
        self.resource.get_or_init(|| {
            Arc::new(Resource {
                name: self.name.as_str().into(),
                store: Some(self.store.clone()),
                version: Some(self.version.clone()),
            })
        })
    }
}

#[derive(Debug)]
pub(crate) struct HandleInner {
    meta: Meta,
    pub(crate) value: Secret,
    /// The value is wiped in a forked child (see [`SecretHandle::check_process`]).
    stamp: ProcessStamp,
}

/// Where a handle's metadata lives: in the handle itself when the handle is the only holder
/// (a fetched or plainly cached version: one allocation on a miss, not two), or shared with
/// the cache entry that decrypts a fresh value per access (sealed mode).
#[derive(Debug)]
enum Meta {
    Own(VersionMeta),
    Shared(Arc<VersionMeta>),
}

impl HandleInner {
    /// A value with metadata of its own.
    pub(crate) fn new(meta: VersionMeta, value: Secret) -> HandleInner {
        HandleInner {
            meta: Meta::Own(meta),
            value,
            stamp: ProcessStamp::new(),
        }
    }

    /// A value whose metadata is shared with others.
    pub(crate) fn shared(meta: Arc<VersionMeta>, value: Secret) -> HandleInner {
        HandleInner {
            meta: Meta::Shared(meta),
            value,
            stamp: ProcessStamp::new(),
        }
    }

    /// The version's metadata.
    #[inline]
    pub(crate) fn meta(&self) -> &VersionMeta {
        match &self.meta {
            Meta::Own(m) => m,
            Meta::Shared(m) => m,
        }
    }

    /// Another value of the same version (a JSON field).
    fn sibling(&self, value: Secret) -> HandleInner {
        HandleInner {
            meta: match &self.meta {
                Meta::Own(m) => Meta::Own(m.clone()),
                Meta::Shared(m) => Meta::Shared(m.clone()),
            },
            value,
            stamp: self.stamp,
        }
    }
}

/// A secret returned by the client: the value (locked memory) plus where it came from.
/// Cloning is cheap (a reference count); dropping the last handle wipes the value. A cache hit returns
/// another handle to the cached value (or, in sealed mode, a freshly decrypted copy).
#[derive(Clone, Debug)]
pub struct SecretHandle {
    inner: Shared<HandleInner>,
}

impl SecretHandle {
    pub(crate) fn from_inner(inner: Shared<HandleInner>) -> SecretHandle {
        SecretHandle { inner }
    }

    /// The secret's name.
    pub fn name(&self) -> &SecretName {
        &self.inner.meta().name
    }

    /// The version id.
    pub fn version(&self) -> &VersionId {
        &self.inner.meta().version
    }

    /// The stages on this version when it was read.
    pub fn stages(&self) -> &[Stage] {
        &self.inner.meta().stages
    }

    /// When the version was created, where the store knows.
    pub fn created(&self) -> Option<SystemTime> {
        self.inner.meta().created
    }

    /// The id of the store it came from.
    pub fn store(&self) -> &str {
        &self.inner.meta().store
    }

    /// The audit resource (name, store, version) of this version.
    pub(crate) fn resource(&self) -> &Arc<Resource> {
        self.inner.meta().resource()
    }

    /// The value.
    ///
    /// In a process forked after the value was read, the value's memory is wiped
    /// (`MADV_WIPEONFORK`) and reads as zeros: a program that may fork with handles alive
    /// checks [`SecretHandle::check_process`] first (the C and Python bindings do).
    pub fn secret(&self) -> &Secret {
        &self.inner.value
    }

    /// `Ok` in the process the value was read in; [`crate::ErrorKind::Forked`] in a process
    /// forked since, where the value is wiped. Read the secret again there, from a client
    /// opened (or reopened) in that process.
    #[inline]
    pub fn check_process(&self) -> crate::error::Result<()> {
        self.inner.stamp.check("secret")
    }

    /// One top-level field of this version's JSON object, as a handle of its own: the field's
    /// text (numbers and booleans in their JSON spelling) in fresh locked memory, with this
    /// version's name, version id and stages. Errors as [`Secret::json_field`].
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use sealbox::{ExposeSecret, Sealbox, Secret, store::memory::MemoryStore};
    /// # let client = Sealbox::builder().store(Arc::new(MemoryStore::new())).build()?.blocking()?;
    /// # client.put("predis/prod/database", &Secret::from_zeroizing(br#"{"password":"pw"}"#.to_vec().into())?)?;
    /// let db = client.get("predis/prod/database")?;
    /// let password = db.field("password")?;
    /// assert_eq!(password.expose_secret(), b"pw");
    /// assert_eq!(password.version(), db.version());
    /// # Ok::<(), sealbox::Error>(())
    /// ```
    pub fn field(&self, field: &str) -> crate::error::Result<SecretHandle> {
        self.check_process()?;
        let value = self.inner.value.json_field(field)?.into_secret();
        Ok(SecretHandle::from_inner(Shared::new(
            self.inner.sibling(value),
        )))
    }

    /// Several top-level fields of this version's JSON object, each a handle of its own as
    /// [`SecretHandle::field`] makes, from one parse, in the order of `fields`. A missing
    /// field fails the whole call with [`crate::ErrorKind::NotFound`] naming the field; errors
    /// otherwise as [`Secret::json_fields`].
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use sealbox::{ExposeSecret, Sealbox, Secret, store::memory::MemoryStore};
    /// # let client = Sealbox::builder().store(Arc::new(MemoryStore::new())).build()?.blocking()?;
    /// # client.put("predis/prod/aws", &Secret::from_zeroizing(br#"{"access_key_id":"AK","secret_access_key":"SK"}"#.to_vec().into())?)?;
    /// let creds = client.get("predis/prod/aws")?;
    /// let [key_id, secret] = <[_; 2]>::try_from(creds.fields(&["access_key_id", "secret_access_key"])?)
    ///     .expect("two fields asked, two returned");
    /// assert_eq!((key_id.expose_secret(), secret.expose_secret()), (&b"AK"[..], &b"SK"[..]));
    /// # Ok::<(), sealbox::Error>(())
    /// ```
    pub fn fields(&self, fields: &[&str]) -> crate::error::Result<Vec<SecretHandle>> {
        self.check_process()?;
        let values = self.inner.value.json_fields(fields)?;
        Ok(values
            .into_iter()
            .map(|v| SecretHandle::from_inner(Shared::new(self.inner.sibling(v.into_secret()))))
            .collect())
    }

    /// Gives the handle up as one opaque pointer, for language bindings: the C ABI hands this
    /// pointer to C as its secret handle, so a cache hit costs a count increment and no
    /// allocation. Turn it back with [`SecretHandle::from_raw`] exactly once, or the value
    /// is never wiped.
    pub fn into_raw(self) -> *const RawSecretHandle {
        Shared::into_raw(self.inner).cast::<RawSecretHandle>()
    }

    /// Takes back a handle given up by [`SecretHandle::into_raw`].
    ///
    /// # Safety
    /// `ptr` came from [`SecretHandle::into_raw`] and has not been taken back before; after
    /// this call the pointer must not be used again except through the returned handle.
    pub unsafe fn from_raw(ptr: *const RawSecretHandle) -> SecretHandle {
        // SAFETY: by the caller's contract `ptr` is the pointer `Shared::into_raw` returned
        // for a `Shared<HandleInner>` whose count has not been taken back yet.
        let inner = unsafe { Shared::from_raw(ptr.cast::<HandleInner>()) };
        SecretHandle { inner }
    }

    /// Runs `f` on the handle behind a pointer from [`SecretHandle::into_raw`] without taking
    /// it back (no reference count traffic): how a binding reads a handle it still owns.
    ///
    /// # Safety
    /// `ptr` came from [`SecretHandle::into_raw`], has not been taken back, and is not taken
    /// back while `f` runs.
    pub unsafe fn with_raw<R>(
        ptr: *const RawSecretHandle,
        f: impl FnOnce(&SecretHandle) -> R,
    ) -> R {
        // SAFETY: forwarded contract; `ManuallyDrop` keeps the borrowed reference count as
        // it is, whatever `f` does.
        let handle = std::mem::ManuallyDrop::new(unsafe { SecretHandle::from_raw(ptr) });
        f(&handle)
    }
}

/// The opaque pointee of [`SecretHandle::into_raw`]: never dereferenced outside sealbox.
#[derive(Debug)]
pub struct RawSecretHandle {
    _private: [u8; 0],
}

impl secrecy::ExposeSecret<[u8]> for SecretHandle {
    fn expose_secret(&self) -> &[u8] {
        secrecy::ExposeSecret::expose_secret(&self.inner.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SecretName;
    use secrecy::ExposeSecret;

    fn handle(value: &[u8]) -> SecretHandle {
        let name = SecretName::new("a/b").unwrap();
        let value = Secret::init_with(value.len(), |d| {
            d.copy_from_slice(value);
            Ok(())
        })
        .unwrap();
        SecretHandle::from_inner(Shared::new(HandleInner::new(
            VersionMeta::new(
                name,
                Arc::from("default"),
                VersionId::new("4"),
                vec![Stage::Current],
                None,
            ),
            value,
        )))
    }

    #[test]
    fn a_handles_count_has_the_lines_around_it_to_itself() {
        // Hits on neighbouring secrets from two threads must not pass lines between cores
        // (see cache/shared.rs): the handle's value is large enough for the block to hold
        // the line before the count's and the three after it.
        let h = handle(b"v");
        Shared::assert_block_holds_lines_around_count(&h.inner, 1, 3);
    }

    #[test]
    fn a_version_keeps_every_stage_it_was_read_with_in_order() {
        let custom = Stage::Custom("blue".into());
        for stages in [
            vec![],
            vec![Stage::Current],
            vec![Stage::Current, custom.clone()],
            vec![Stage::Pending, custom, Stage::Previous],
        ] {
            let meta = VersionMeta::new(
                SecretName::new("a/b").unwrap(),
                Arc::from("default"),
                VersionId::new("4"),
                stages.clone(),
                None,
            );
            assert_eq!(meta.stages.as_slice(), stages.as_slice());
        }
    }

    #[test]
    fn raw_round_trip_keeps_one_reference_and_the_value() {
        let h = handle(b"v1");
        let keep = h.clone();
        let raw = h.into_raw();
        assert_eq!(Shared::count(&keep.inner), 2);
        // SAFETY: `raw` came from into_raw and is taken back once, below.
        let len = unsafe { SecretHandle::with_raw(raw, |h| h.expose_secret().len()) };
        assert_eq!(len, 2);
        assert_eq!(
            Shared::count(&keep.inner),
            2,
            "with_raw leaves the count alone"
        );
        // SAFETY: first and only take-back of `raw`.
        let back = unsafe { SecretHandle::from_raw(raw) };
        assert_eq!(back.expose_secret(), b"v1");
        drop(back);
        assert_eq!(Shared::count(&keep.inner), 1);
    }

    #[test]
    fn field_shares_the_version_and_holds_only_the_field() {
        let h = handle(br#"{"user":"u","password":"p@ss","port":5432}"#);
        let p = h.field("password").unwrap();
        assert_eq!(p.expose_secret(), b"p@ss");
        assert_eq!(p.version().as_str(), "4");
        assert_eq!(p.name().as_str(), "a/b");
        assert_eq!(h.field("port").unwrap().expose_secret(), b"5432");
        assert_eq!(
            h.field("missing").unwrap_err().kind(),
            crate::error::ErrorKind::NotFound
        );
    }

    #[test]
    fn the_audit_resource_is_built_on_first_need_and_then_shared() {
        let h = handle(b"v1");
        assert!(
            h.inner.meta().resource.get().is_none(),
            "a read alone builds none"
        );
        let first = h.resource().clone();
        assert_eq!(&*first.name, "a/b");
        assert_eq!(first.store.as_deref(), Some("default"));
        assert_eq!(first.version.as_ref().map(VersionId::as_str), Some("4"));
        assert!(
            Arc::ptr_eq(&first, h.clone().resource()),
            "every handle to the version shares one resource"
        );
        assert_eq!(h.store(), "default");
    }
}
