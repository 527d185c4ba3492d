//! The `Sealbox` client: policy, cache, routing, audit and monitoring in front of the stores.
//!
//! INTERIM: this file fixes the public API that the bindings and the CLI build on; the cache,
//! audit, policy, monitor and config behind it are being completed. Calls pass straight through
//! to the routed store for now.

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};
use crate::secret::{Secret, SecretString};
use crate::store::{
    DeleteOptions, ListEntry, ListOptions, PutOptions, SecretMetadata, SecretName, SecretRef,
    SecretStore, SecretVersion, Stage, VersionId, VersionInfo, VersionSelector,
};

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

/// A secret returned by the client: the value (locked memory) plus where it came from.
/// Cheap to hold; dropping the last handle wipes the value.
#[derive(Debug)]
pub struct SecretHandle {
    name: SecretName,
    version: Arc<SecretVersion>,
}

impl SecretHandle {
    /// The secret's name.
    pub fn name(&self) -> &SecretName {
        &self.name
    }

    /// The version id.
    pub fn version(&self) -> &VersionId {
        &self.version.version
    }

    /// The stages on this version when it was read.
    pub fn stages(&self) -> &[Stage] {
        &self.version.stages
    }

    /// The value.
    pub fn secret(&self) -> &Secret {
        &self.version.value
    }
}

impl secrecy::ExposeSecret<[u8]> for SecretHandle {
    fn expose_secret(&self) -> &[u8] {
        secrecy::ExposeSecret::expose_secret(&self.version.value)
    }
}

#[derive(Debug)]
struct Inner {
    default_store: Arc<dyn SecretStore>,
}

/// The client. Cheap to clone (`Arc` inside) and safe to share across threads.
#[derive(Clone, Debug)]
pub struct Sealbox {
    inner: Arc<Inner>,
    principal: Principal,
}

/// Builds a [`Sealbox`].
#[derive(Debug, Default)]
pub struct SealboxBuilder {
    default_store: Option<Arc<dyn SecretStore>>,
    principal: Option<Principal>,
}

impl SealboxBuilder {
    /// The store that names route to unless a route says otherwise.
    pub fn store(mut self, store: Arc<dyn SecretStore>) -> Self {
        self.default_store = Some(store);
        self
    }

    /// The principal for calls that do not name one.
    pub fn principal(mut self, principal: Principal) -> Self {
        self.principal = Some(principal);
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<Sealbox> {
        let default_store = self
            .default_store
            .ok_or_else(|| Error::config("a Sealbox needs at least one store"))?;
        Ok(Sealbox {
            inner: Arc::new(Inner { default_store }),
            principal: self.principal.unwrap_or_default(),
        })
    }
}

impl Sealbox {
    /// Starts a builder.
    pub fn builder() -> SealboxBuilder {
        SealboxBuilder::default()
    }

    /// Loads a YAML config file and builds the client it describes.
    pub async fn from_config(path: impl AsRef<Path>) -> Result<Sealbox> {
        let _ = path.as_ref();
        Err(Error::new(
            ErrorKind::Unsupported,
            "configuration files are not supported yet",
        ))
    }

    /// The same client acting as another principal (for per-request identities).
    pub fn as_principal(&self, principal: Principal) -> Sealbox {
        Sealbox {
            inner: self.inner.clone(),
            principal,
        }
    }

    /// The principal this client acts as.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    fn route(&self, reference: &str) -> Result<(SecretRef, Arc<dyn SecretStore>)> {
        let r: SecretRef = reference.parse()?;
        Ok((r, self.inner.default_store.clone()))
    }

    /// Reads the current version of `name` (a name or `sb://STORE/NAME` reference).
    pub async fn get(&self, name: &str) -> Result<SecretHandle> {
        self.get_version(name, &VersionSelector::Current).await
    }

    /// Reads a chosen version.
    pub async fn get_version(
        &self,
        name: &str,
        selector: &VersionSelector,
    ) -> Result<SecretHandle> {
        let (r, store) = self.route(name)?;
        let version = store.get(&r.name, selector).await?;
        Ok(SecretHandle {
            name: r.name,
            version: Arc::new(version),
        })
    }

    /// Reads one JSON field of the current version (`get_field("predis/prod/db", "password")`).
    pub async fn get_field(&self, name: &str, field: &str) -> Result<SecretString> {
        let h = self.get(name).await?;
        h.secret().json_field(field)
    }

    /// Writes a new CURRENT version.
    pub async fn put(&self, name: &str, value: &Secret) -> Result<VersionInfo> {
        self.put_with(name, value, &PutOptions::default()).await
    }

    /// Writes a new version with options (stages, compare-and-set, ...).
    pub async fn put_with(
        &self,
        name: &str,
        value: &Secret,
        options: &PutOptions,
    ) -> Result<VersionInfo> {
        let (r, store) = self.route(name)?;
        store.put(&r.name, value, options).await
    }

    /// Lists every name under `prefix` (all pages).
    pub async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>> {
        let store = self.inner.default_store.clone();
        let mut options = ListOptions {
            prefix: prefix.to_owned(),
            ..ListOptions::default()
        };
        let mut out = Vec::new();
        loop {
            let page = store.list(&options).await?;
            out.extend(page.entries);
            match page.next_page_token {
                Some(t) => options.page_token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// Metadata of `name`.
    pub async fn describe(&self, name: &str) -> Result<SecretMetadata> {
        let (r, store) = self.route(name)?;
        store.describe(&r.name).await
    }

    /// Deletes `name`.
    pub async fn delete(&self, name: &str, options: &DeleteOptions) -> Result<()> {
        let (r, store) = self.route(name)?;
        store.delete(&r.name, options).await
    }

    /// Writes every queued audit event to the sinks.
    pub async fn flush_audit(&self) -> Result<()> {
        Ok(())
    }

    /// A synchronous facade running on its own small runtime, for bindings and sync programs.
    pub fn blocking(&self) -> Result<BlockingSealbox> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sealbox")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the sealbox runtime", e))?;
        Ok(BlockingSealbox {
            client: self.clone(),
            rt: Arc::new(rt),
        })
    }
}

/// The synchronous facade over [`Sealbox`]; every method blocks the calling thread.
/// Must not be called from inside an async runtime.
#[derive(Clone, Debug)]
pub struct BlockingSealbox {
    client: Sealbox,
    rt: Arc<tokio::runtime::Runtime>,
}

impl BlockingSealbox {
    /// Opens a client from a YAML config file.
    pub fn from_config(path: impl AsRef<Path>) -> Result<BlockingSealbox> {
        let rt = Sealbox::builder_runtime()?;
        let client = rt.block_on(Sealbox::from_config(path))?;
        Ok(BlockingSealbox {
            client,
            rt: Arc::new(rt),
        })
    }

    /// The async client behind this facade.
    pub fn client(&self) -> &Sealbox {
        &self.client
    }

    /// See [`Sealbox::as_principal`].
    pub fn as_principal(&self, principal: Principal) -> BlockingSealbox {
        BlockingSealbox {
            client: self.client.as_principal(principal),
            rt: self.rt.clone(),
        }
    }

    /// See [`Sealbox::get`].
    pub fn get(&self, name: &str) -> Result<SecretHandle> {
        self.rt.block_on(self.client.get(name))
    }

    /// See [`Sealbox::get_version`].
    pub fn get_version(&self, name: &str, selector: &VersionSelector) -> Result<SecretHandle> {
        self.rt.block_on(self.client.get_version(name, selector))
    }

    /// See [`Sealbox::get_field`].
    pub fn get_field(&self, name: &str, field: &str) -> Result<SecretString> {
        self.rt.block_on(self.client.get_field(name, field))
    }

    /// See [`Sealbox::put`].
    pub fn put(&self, name: &str, value: &Secret) -> Result<VersionInfo> {
        self.rt.block_on(self.client.put(name, value))
    }

    /// See [`Sealbox::list`].
    pub fn list(&self, prefix: &str) -> Result<Vec<ListEntry>> {
        self.rt.block_on(self.client.list(prefix))
    }

    /// See [`Sealbox::describe`].
    pub fn describe(&self, name: &str) -> Result<SecretMetadata> {
        self.rt.block_on(self.client.describe(name))
    }

    /// See [`Sealbox::delete`].
    pub fn delete(&self, name: &str, options: &DeleteOptions) -> Result<()> {
        self.rt.block_on(self.client.delete(name, options))
    }

    /// See [`Sealbox::flush_audit`].
    pub fn flush_audit(&self) -> Result<()> {
        self.rt.block_on(self.client.flush_audit())
    }
}

impl Sealbox {
    fn builder_runtime() -> Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sealbox")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the sealbox runtime", e))
    }
}
