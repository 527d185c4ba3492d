//! `sealbox.Sealbox`: the client, wrapping [`BlockingSealbox`].
//!
//! Every store call runs with the GIL released (`Python::detach`), so other Python threads run
//! while one waits on a store, and many threads can call the same client at once. The Python
//! package subclasses this class to add the asyncio variants (`aget`, `aput`, ...).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{IntoPyDict, PyDict, PyType};
use sealbox::client::{BlockingSealbox, Principal};
use sealbox::config::open_local_vault;
use sealbox::rotation::{Generator, NewValue};
use sealbox::store::memory::MemoryStore;
use sealbox::store::{DeleteOptions, PutOptions, Stage, VersionId, VersionSelector};
use sealbox::{ExposeSecret, Sealbox};

use crate::errors::BindingResult;
use crate::memlock::warn_if_unlocked;
use crate::metadata::PySecretMetadata;
use crate::rotation::{PyRolledBack, PyRotated, PyRotationStatus, exec_rotator};
use crate::secret::PySecret;
use crate::value::SecretInput;

/// A sealbox client. Build one with `Sealbox.open(config)`, `Sealbox.local(path, key_file=...)`
/// or `Sealbox.memory()`; share it between threads freely.
#[pyclass(
    module = "sealbox._native",
    name = "Sealbox",
    subclass,
    frozen,
    weakref
)]
#[derive(Debug)]
pub struct PySealbox {
    /// `None` once closed. Read-locked only long enough to clone the client (a few `Arc`s), so
    /// no lock is held while the GIL is released.
    client: RwLock<Option<BlockingSealbox>>,
}

/// Carries a built client into `Sealbox.__new__`, so that constructors create instances of the
/// class they are called on (the Python subclass), not of this base class.
#[pyclass(module = "sealbox._native", name = "_OpenedClient", frozen)]
#[derive(Debug)]
pub struct OpenedClient {
    client: Mutex<Option<BlockingSealbox>>,
}

impl PySealbox {
    fn client(&self) -> PyResult<BlockingSealbox> {
        let guard = self.client.read().unwrap_or_else(|p| p.into_inner());
        guard
            .clone()
            .ok_or_else(|| PyValueError::new_err("the Sealbox client is closed"))
    }

    /// Instantiates `cls` (this class or a subclass) around `client`.
    fn instantiate<'py>(
        cls: &Bound<'py, PyType>,
        client: BlockingSealbox,
    ) -> PyResult<Bound<'py, PyAny>> {
        warn_if_unlocked(cls.py())?;
        let token = Bound::new(
            cls.py(),
            OpenedClient {
                client: Mutex::new(Some(client)),
            },
        )?;
        cls.call1((token,))
    }
}

fn principal_from(name: Option<&str>) -> BindingResult<Option<Principal>> {
    match name {
        None => Ok(None),
        Some("") => Err(sealbox::Error::invalid_input("a principal name must not be empty").into()),
        Some(n) => Ok(Some(Principal::new(n))),
    }
}

fn with_principal(client: BlockingSealbox, principal: Option<Principal>) -> BlockingSealbox {
    match principal {
        Some(p) => client.as_principal(p),
        None => client,
    }
}

/// Opens (or creates) the local vault at `path` with the master key file `key_file` (created
/// with mode 0600 when missing) and builds a client over it.
fn open_local(
    path: &std::path::Path,
    key_file: &std::path::Path,
    principal: Option<Principal>,
    cache: bool,
) -> sealbox::Result<BlockingSealbox> {
    // Opening runs SQLite work through `spawn_blocking`, so it needs a runtime context; the
    // client then gets its own long-lived runtime from `blocking()`.
    let opener = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| sealbox::Error::io("starting a runtime to open the local vault", e))?;
    let vault = opener.block_on(open_local_vault(path, key_file))?;
    let mut builder = Sealbox::builder().store(vault);
    if let Some(p) = principal {
        builder = builder.principal(p);
    }
    if !cache {
        builder = builder.no_cache();
    }
    builder.build()?.blocking()
}

#[pymethods]
impl PySealbox {
    #[new]
    fn new(client: &Bound<'_, PyAny>) -> PyResult<PySealbox> {
        let misuse = || {
            PyTypeError::new_err(
                "create a client with Sealbox.open(), Sealbox.local() or Sealbox.memory()",
            )
        };
        let opened = client.cast::<OpenedClient>().map_err(|_| misuse())?;
        let taken = opened
            .get()
            .client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let client = taken.ok_or_else(misuse)?;
        Ok(PySealbox {
            client: RwLock::new(Some(client)),
        })
    }

    /// Opens a client from a YAML config file (stores, cache, audit, policy).
    #[classmethod]
    #[pyo3(signature = (config_path, *, principal = None))]
    fn open<'py>(
        cls: &Bound<'py, PyType>,
        config_path: PathBuf,
        principal: Option<&str>,
    ) -> BindingResult<Bound<'py, PyAny>> {
        let principal = principal_from(principal)?;
        let client = cls
            .py()
            .detach(|| BlockingSealbox::from_config(&config_path))?;
        Ok(Self::instantiate(cls, with_principal(client, principal))?)
    }

    /// Opens (or creates) the local vault at `path` (a directory or database file), its master
    /// key in `key_file` (a sealbox key file, created with a random 256-bit key and mode 0600
    /// if missing). The cache is on unless `cache=False`.
    #[classmethod]
    #[pyo3(signature = (path, *, key_file, principal = None, cache = true))]
    fn local<'py>(
        cls: &Bound<'py, PyType>,
        path: PathBuf,
        key_file: PathBuf,
        principal: Option<&str>,
        cache: bool,
    ) -> BindingResult<Bound<'py, PyAny>> {
        let principal = principal_from(principal)?;
        let client = cls
            .py()
            .detach(|| open_local(&path, &key_file, principal, cache))?;
        Ok(Self::instantiate(cls, client)?)
    }

    /// A client over a fresh in-memory store (tests, examples); nothing is persisted. The
    /// cache is on unless `cache=False`.
    #[classmethod]
    #[pyo3(signature = (*, principal = None, cache = true))]
    fn memory<'py>(
        cls: &Bound<'py, PyType>,
        principal: Option<&str>,
        cache: bool,
    ) -> BindingResult<Bound<'py, PyAny>> {
        let mut builder = Sealbox::builder().store(Arc::new(MemoryStore::new()));
        if !cache {
            builder = builder.no_cache();
        }
        if let Some(p) = principal_from(principal)? {
            builder = builder.principal(p);
        }
        let client = builder.build()?.blocking()?;
        Ok(Self::instantiate(cls, client)?)
    }

    /// The same client (same stores, cache and audit log) acting as another principal.
    fn as_principal<'py>(
        slf: &Bound<'py, Self>,
        principal: &str,
    ) -> BindingResult<Bound<'py, PyAny>> {
        let principal = principal_from(Some(principal))?.unwrap_or_default();
        let client = slf.get().client()?.as_principal(principal);
        Ok(Self::instantiate(&slf.get_type(), client)?)
    }

    /// The principal this client acts as.
    #[getter]
    fn principal(&self) -> PyResult<String> {
        Ok(self.client()?.client().principal().as_str().to_owned())
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.client
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }

    /// Reads a secret: the `CURRENT` version, or the given `version` id or `stage`.
    #[pyo3(signature = (name, *, version = None, stage = None))]
    fn get(
        &self,
        py: Python<'_>,
        name: &str,
        version: Option<&str>,
        stage: Option<&str>,
    ) -> BindingResult<PySecret> {
        let selector = match (version, stage) {
            (None, None) => VersionSelector::Current,
            (Some(v), None) => VersionSelector::Version(VersionId::new(v)),
            (None, Some(s)) => VersionSelector::Stage(s.parse::<Stage>()?),
            (Some(_), Some(_)) => {
                return Err(sealbox::Error::invalid_input(
                    "pass either version or stage, not both",
                )
                .into());
            }
        };
        let client = self.client()?;
        let handle = py.detach(|| match &selector {
            VersionSelector::Current => client.get(name),
            other => client.get_version(name, other),
        })?;
        let secret = PySecret::from_handle(&handle)?;
        warn_if_unlocked(py)?;
        Ok(secret)
    }

    /// Reads one top-level field of a JSON secret (`{"username", "password", ...}`) as its own
    /// `Secret` (same name, version and stages).
    fn get_field(&self, py: Python<'_>, name: &str, field: &str) -> BindingResult<PySecret> {
        let client = self.client()?;
        let (handle, value) = py.detach(|| -> sealbox::Result<_> {
            let handle = client.get(name)?;
            let value = handle.secret().json_field(field)?;
            Ok((handle, value))
        })?;
        let secret = PySecret::from_parts(
            handle.name().as_str(),
            handle.version().as_str(),
            handle
                .stages()
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect(),
            value.expose_secret().as_bytes(),
        )?;
        warn_if_unlocked(py)?;
        Ok(secret)
    }

    /// Reads several top-level fields of a JSON secret with one read, each as its own
    /// `Secret`, in the order asked (the package's `get_fields` wraps them).
    fn _get_fields(
        &self,
        py: Python<'_>,
        name: &str,
        fields: Vec<String>,
    ) -> BindingResult<Vec<PySecret>> {
        let client = self.client()?;
        let handles = py.detach(|| {
            let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
            client.get_fields(name, &fields)
        })?;
        let secrets = handles
            .iter()
            .map(PySecret::from_handle)
            .collect::<BindingResult<Vec<_>>>()?;
        warn_if_unlocked(py)?;
        Ok(secrets)
    }

    /// Stores `value` (`bytes`, `bytearray`, `memoryview` or `str`) as a new version and
    /// returns its version id. A `bytearray` is zeroed once the value is stored; on error it
    /// is left as it was, so nothing is lost.
    ///
    /// By default the new version becomes `CURRENT`. `stages=["PENDING"]` stores it beside
    /// the current one (a rotation's first step). `expected_current` (a version id) or
    /// `create_only=True` make the write conditional: it fails with `Conflict` if another
    /// writer got there first. A retried put with the same `idempotency_token` and value
    /// creates no second version. `description` and `tags` (names, never values) are set on
    /// the secret.
    #[pyo3(signature = (
        name, value, *, stages = None, expected_current = None, create_only = false,
        idempotency_token = None, description = None, tags = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn put(
        &self,
        py: Python<'_>,
        name: &str,
        value: &Bound<'_, PyAny>,
        stages: Option<Vec<String>>,
        expected_current: Option<String>,
        create_only: bool,
        idempotency_token: Option<String>,
        description: Option<String>,
        tags: Option<BTreeMap<String, String>>,
    ) -> BindingResult<String> {
        let mut options = PutOptions {
            idempotency_token,
            description,
            tags: tags.unwrap_or_default(),
            ..PutOptions::default()
        };
        if let Some(stages) = stages {
            options.stages = stages
                .iter()
                .map(|s| s.parse::<Stage>())
                .collect::<sealbox::Result<_>>()?;
        }
        options.expected_current = match (expected_current, create_only) {
            (None, false) => None,
            (Some(v), false) => Some(Some(VersionId::new(v))),
            (None, true) => Some(None),
            (Some(_), true) => {
                return Err(sealbox::Error::invalid_input(
                    "pass either expected_current or create_only, not both",
                )
                .into());
            }
        };
        let client = self.client()?;
        let input = SecretInput::extract(value)?;
        let info = py.detach(|| client.put_with(name, input.secret(), &options))?;
        input.wipe_source(py);
        warn_if_unlocked(py)?;
        Ok(info.version.as_str().to_owned())
    }

    /// Refetches `name` from its store now and replaces the cached value (after a rotation
    /// elsewhere, say). Raises what the store raised; the cached value is then kept. A client
    /// without a cache has nothing to refresh.
    fn refresh_now(&self, py: Python<'_>, name: &str) -> BindingResult<()> {
        let client = self.client()?;
        py.detach(|| client.refresh_now(name))?;
        Ok(())
    }

    /// The names under `prefix` (all pages), in store order.
    #[pyo3(signature = (prefix = ""))]
    fn list(&self, py: Python<'_>, prefix: &str) -> BindingResult<Vec<String>> {
        let client = self.client()?;
        let entries = py.detach(|| client.list(prefix))?;
        Ok(entries
            .into_iter()
            .filter(|e| !e.deleted)
            .map(|e| e.name.as_str().to_owned())
            .collect())
    }

    /// Metadata of a secret (versions, stages, dates, tags), never its value.
    fn describe(&self, py: Python<'_>, name: &str) -> BindingResult<PySecretMetadata> {
        let client = self.client()?;
        let meta = py.detach(|| client.describe(name))?;
        Ok(PySecretMetadata::new(py, &meta)?)
    }

    /// Deletes a secret: soft delete with the store's recovery window, or at once and for good
    /// with `force=True`.
    #[pyo3(signature = (name, *, force = false))]
    fn delete(&self, py: Python<'_>, name: &str, force: bool) -> BindingResult<()> {
        let client = self.client()?;
        let options = DeleteOptions {
            force,
            ..DeleteOptions::default()
        };
        py.detach(|| client.delete(name, &options))?;
        Ok(())
    }

    /// Rotates `name` now: creates a `PENDING` version, sets it on the target, tests it there
    /// and promotes it to `CURRENT` (the old one becomes `PREVIOUS`), resuming an interrupted
    /// rotation of it instead if there is one. Needs the `rotate` capability.
    ///
    /// The rotator and the new value come from the config's rotation schedule (`generated` and
    /// a random token without one) unless given: `command=[PROGRAM, ARG...]` runs that program
    /// for each step (`set`, `test`; `restore` on rollback) with the value on its standard
    /// input, killed after `timeout` seconds (60 by default); `value` (`bytes`, `bytearray`,
    /// `memoryview` or `str`; a `bytearray` is zeroed once staged) is the new value instead of
    /// a generated one. Raises the step's error (`Unavailable` for a failed command, ...):
    /// `CURRENT` is then unchanged and the failure shows in `rotation_status`.
    #[pyo3(signature = (name, *, value = None, command = None, timeout = None))]
    fn rotate(
        &self,
        py: Python<'_>,
        name: &str,
        value: Option<&Bound<'_, PyAny>>,
        command: Option<Vec<String>>,
        timeout: Option<f64>,
    ) -> BindingResult<PyRotated> {
        let client = self.client()?;
        let input = value.map(SecretInput::extract).transpose()?;
        let given = input
            .as_ref()
            .map(|i| i.secret().try_clone())
            .transpose()?
            .map(NewValue::Given);
        let exec = match command {
            Some(argv) => Some(exec_rotator(argv, timeout)?),
            None if timeout.is_some() => {
                return Err(
                    sealbox::Error::invalid_input("timeout applies only with command").into(),
                );
            }
            None => None,
        };
        let done = py.detach(|| {
            let rotation = client.client().rotation();
            match (exec, given) {
                (Some(exec), Some(v)) => client.run(rotation.rotate_with(name, &exec, v)),
                (Some(exec), None) => client.run(rotation.rotate_with(
                    name,
                    &exec,
                    NewValue::Generate(Generator::Base64Url { bytes: 32 }),
                )),
                (None, Some(v)) => client.run(rotation.rotate_to(name, v)),
                (None, None) => client.run(rotation.rotate(name)),
            }
        })?;
        if let Some(input) = input {
            input.wipe_source(py);
        }
        Ok(done.into())
    }

    /// Undoes `name`'s last rotation (its `PREVIOUS` version becomes `CURRENT` again and the
    /// target is told) or abandons its unfinished one (`PENDING` is dropped). The target is
    /// told through the schedule's rotator, or through `command` as `rotate` runs it.
    #[pyo3(signature = (name, *, command = None, timeout = None))]
    fn rollback(
        &self,
        py: Python<'_>,
        name: &str,
        command: Option<Vec<String>>,
        timeout: Option<f64>,
    ) -> BindingResult<PyRolledBack> {
        let client = self.client()?;
        let exec = command
            .map(|argv| exec_rotator(argv, timeout))
            .transpose()?;
        let done = py.detach(|| {
            let rotation = client.client().rotation();
            match &exec {
                Some(exec) => client.run(rotation.rollback_with(name, exec)),
                None => client.run(rotation.rollback(name)),
            }
        })?;
        Ok(done.into())
    }

    /// `name`'s rotation state (see `RotationStatus`): no value, only versions, times and
    /// failure reasons.
    fn rotation_status(&self, py: Python<'_>, name: &str) -> BindingResult<PyRotationStatus> {
        let client = self.client()?;
        let status = py.detach(|| client.run(client.client().rotation().status_of(name)))?;
        Ok(PyRotationStatus::new(py, status)?)
    }

    /// Writes every queued audit event to the configured sinks.
    fn flush_audit(&self, py: Python<'_>) -> BindingResult<()> {
        let client = self.client()?;
        py.detach(|| client.flush_audit())?;
        Ok(())
    }

    /// This client's counters since it was opened: `gets`, `hits`, `misses`, `stale` (values
    /// served past their TTL while the store failed), `denies`, `writes`, `rotations`,
    /// `alerts`, `memory_lock_failures` (refused `mlock`s in this process, for every client:
    /// above 0, some secrets may be swapped), `audit_events_lost` (best-effort audit events
    /// dropped because no sink could write them in time) and `store_errors` (a dict of store
    /// failures by kind). No names, no values.
    fn metrics<'py>(&self, py: Python<'py>) -> BindingResult<Bound<'py, PyDict>> {
        let m = self.client()?.client().metrics();
        let counts = PyDict::new(py);
        for (name, _, n) in m.counters() {
            counts.set_item(name, n)?;
        }
        counts.set_item("store_errors", m.store_errors.into_py_dict(py)?)?;
        Ok(counts)
    }

    /// This client's metrics as Prometheus text (counters and the store-latency histogram),
    /// to serve from a service's own `/metrics` endpoint.
    fn render_prometheus(&self) -> BindingResult<String> {
        Ok(self.client()?.client().render_prometheus())
    }

    /// Replaces the client with one made as it was (same config file, vault and key file, or
    /// settings; same principal), for a process forked after it was opened: there the
    /// inherited one raises `Forked`. The package calls this in every forked child for every
    /// open client (`os.register_at_fork`). Returns `None`, or why the client could not be
    /// made again (an in-memory client, whose values are gone), in which case it keeps
    /// raising `Forked`.
    fn _reopen_after_fork(&self, py: Python<'_>) -> Option<String> {
        let inherited = self
            .client
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        match py.detach(|| inherited.reopen()) {
            Ok(fresh) => {
                let old = self
                    .client
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .replace(fresh);
                // Dropping the inherited client in the child releases only what is safe
                // there (see `sealbox::process::ProcessBound`).
                drop(old);
                None
            }
            Err(e) => Some(e.to_string()),
        }
    }

    /// Closes the client: later calls raise `ValueError`. Secrets already read stay usable.
    /// Idempotent.
    fn close(&self, py: Python<'_>) {
        let client = self
            .client
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        // Dropping the last handle shuts the runtime down, which waits for its threads.
        py.detach(|| drop(client));
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _traceback: &Bound<'_, PyAny>,
    ) -> bool {
        self.close(py);
        false
    }

    fn __reduce__(&self) -> PyResult<()> {
        Err(PyTypeError::new_err(
            "a sealbox.Sealbox client cannot be pickled; open one in each process",
        ))
    }

    fn __repr__(&self) -> String {
        match self
            .client
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            Some(c) => format!("Sealbox(principal='{}')", c.client().principal().as_str()),
            None => "Sealbox(closed)".to_owned(),
        }
    }
}
