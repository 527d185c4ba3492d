//! [`BlockingSealbox`]: the synchronous facade the bindings use. Its cache hits return
//! without entering the runtime; everything else runs on a small runtime of its own.

use super::*;

/// The synchronous facade over [`Sealbox`]; every method blocks the calling thread (cache hits
/// return without entering the runtime). Must not be called from inside an async runtime.
#[derive(Clone, Debug)]
pub struct BlockingSealbox {
    pub(super) client: Sealbox,
    /// Its workers exist only in the process that made it: a forked child never drops it.
    pub(super) rt: Arc<ProcessBound<tokio::runtime::Runtime>>,
}

impl BlockingSealbox {
    /// Opens a client from a YAML config file.
    pub fn from_config(path: impl AsRef<Path>) -> Result<BlockingSealbox> {
        let rt = Sealbox::builder_runtime()?;
        let client = rt.block_on(Sealbox::from_config(path))?;
        Ok(BlockingSealbox {
            client,
            rt: Arc::new(ProcessBound::new(rt)),
        })
    }

    /// Opens a client from a YAML config file with an explicit provider registry.
    pub fn from_config_with(
        path: impl AsRef<Path>,
        registry: &crate::config::ProviderRegistry,
    ) -> Result<BlockingSealbox> {
        let rt = Sealbox::builder_runtime()?;
        let client = rt.block_on(Sealbox::from_config_with(path, registry))?;
        Ok(BlockingSealbox {
            client,
            rt: Arc::new(ProcessBound::new(rt)),
        })
    }

    /// The async client behind this facade.
    pub fn client(&self) -> &Sealbox {
        &self.client
    }

    /// See [`Sealbox::reopen`]: a new client, on a runtime of its own, made as this one was.
    /// In a forked child, call it before the child's first use of the client.
    pub fn reopen(&self) -> Result<BlockingSealbox> {
        let rt = Sealbox::builder_runtime()?;
        let client = rt.block_on(self.client.reopen())?;
        Ok(BlockingSealbox {
            client,
            rt: Arc::new(ProcessBound::new(rt)),
        })
    }

    /// Runs a store call on this facade's runtime; in a forked child, where the runtime's
    /// workers do not exist, answers `Forked` without entering it.
    fn block_on<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
        self.client.alive()?;
        self.rt.block_on(call)
    }

    /// Runs an async call of the client (or of something built on it, such as
    /// [`Sealbox::rotation`]) to completion on this facade's runtime; in a forked child answers
    /// `Forked` without entering it.
    ///
    /// ```no_run
    /// # fn f(sb: &sealbox::BlockingSealbox) -> sealbox::Result<()> {
    /// let done = sb.run(sb.client().rotation().rotate("predis/prod/api/key"))?;
    /// # Ok(()) }
    /// ```
    pub fn run<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
        self.block_on(call)
    }

    /// See [`Sealbox::as_principal`].
    pub fn as_principal(&self, principal: Principal) -> BlockingSealbox {
        BlockingSealbox {
            client: self.client.as_principal(principal),
            rt: self.rt.clone(),
        }
    }

    /// See [`Sealbox::with_source`].
    pub fn with_source(&self, source: impl AsRef<str>) -> BlockingSealbox {
        BlockingSealbox {
            client: self.client.with_source(source),
            rt: self.rt.clone(),
        }
    }

    /// See [`Sealbox::get_cached`].
    #[inline]
    pub fn get_cached(&self, reference: &[u8]) -> Option<Result<SecretHandle>> {
        self.client.get_cached(reference)
    }

    /// See [`Sealbox::get`]. A hit does not enter the runtime.
    pub fn get(&self, name: &str) -> Result<SecretHandle> {
        self.get_bytes(name.as_bytes(), |_| Ok(name))
    }

    /// [`BlockingSealbox::get`] of a name received as bytes (from C, say): a hit needs no
    /// UTF-8 check, as only valid names are cached, and the cache is probed once whatever
    /// the outcome. Only a name the cache does not hold is turned into text, by `text`, whose
    /// error is returned as is.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use sealbox::{Error, ErrorKind, Sealbox, Secret, store::memory::MemoryStore};
    /// # let client = Sealbox::builder().store(Arc::new(MemoryStore::new())).build()?.blocking()?;
    /// # client.put("app/token", &Secret::random(32)?)?;
    /// let text = |b| std::str::from_utf8(b).map_err(|_| Error::invalid_input("name is not UTF-8"));
    /// let token = client.get_bytes(b"app/token", text)?; // a first read: checked, then routed
    /// let hit = |_| -> Result<&str, Error> { unreachable!("a hit checks nothing") };
    /// let again = client.get_bytes(b"app/token", hit)?;
    /// assert_eq!(again.version(), token.version());
    /// let err = client.get_bytes(b"app/\xff", text).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidInput);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn get_bytes<'n, E: From<Error>>(
        &self,
        name: &'n [u8],
        text: impl FnOnce(&'n [u8]) -> std::result::Result<&'n str, E>,
    ) -> std::result::Result<SecretHandle, E> {
        let c = &self.client;
        Ok(match c.start_get(name) {
            Ok(read) => read?,
            // The entry holds the name it was read under: no text needed.
            Err(Missed::Expired(cache, expired)) => {
                self.rt.block_on(c.get_expired(cache, expired))?
            }
            Err(Missed::Absent) => self.rt.block_on(c.get_uncached(text(name)?))?,
        })
    }

    /// See [`Sealbox::get_version`].
    pub fn get_version(&self, name: &str, selector: &VersionSelector) -> Result<SecretHandle> {
        if *selector == VersionSelector::Current {
            return self.get(name);
        }
        self.block_on(self.client.get_version(name, selector))
    }

    /// See [`Sealbox::get_field`].
    pub fn get_field(&self, name: &str, field: &str) -> Result<SecretString> {
        self.get(name)?.secret().json_field(field)
    }

    /// See [`Sealbox::get_fields`]. A hit does not enter the runtime.
    pub fn get_fields(&self, name: &str, fields: &[&str]) -> Result<Vec<SecretHandle>> {
        self.get(name)?.fields(fields)
    }

    /// See [`Sealbox::refresh_now`].
    pub fn refresh_now(&self, name: &str) -> Result<()> {
        self.block_on(self.client.refresh_now(name))
    }

    /// See [`Sealbox::put`].
    pub fn put(&self, name: &str, value: &Secret) -> Result<VersionInfo> {
        self.block_on(self.client.put(name, value))
    }

    /// See [`Sealbox::put_with`].
    pub fn put_with(
        &self,
        name: &str,
        value: &Secret,
        options: &PutOptions,
    ) -> Result<VersionInfo> {
        self.block_on(self.client.put_with(name, value, options))
    }

    /// See [`Sealbox::list`].
    pub fn list(&self, prefix: &str) -> Result<Vec<ListEntry>> {
        self.block_on(self.client.list(prefix))
    }

    /// See [`Sealbox::describe`].
    pub fn describe(&self, name: &str) -> Result<SecretMetadata> {
        self.block_on(self.client.describe(name))
    }

    /// See [`Sealbox::delete`].
    pub fn delete(&self, name: &str, options: &DeleteOptions) -> Result<()> {
        self.block_on(self.client.delete(name, options))
    }

    /// See [`Sealbox::erase_namespace`].
    pub fn erase_namespace(&self, namespace: &str) -> Result<Erasure> {
        self.rt.block_on(self.client.erase_namespace(namespace))
    }

    /// See [`Sealbox::flush_audit`].
    pub fn flush_audit(&self) -> Result<()> {
        self.block_on(self.client.flush_audit())
    }
}
