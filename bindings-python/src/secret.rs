//! `sealbox.Secret`: a secret value held by Python code, in locked memory, never printed.
//!
//! The object owns a private copy of the value in a [`LockedBuf`], so closing it wipes bytes
//! that nothing else shares (a cached copy inside the client is the cache's business). The
//! value is reachable only through `with secret as view:` (a read-only `memoryview` on the
//! locked bytes, no copy), `reveal()` / `reveal_bytes()` (explicit copies) and `equals()`
//! (constant time).
//!
//! Views and wiping: `__enter__` hands out a `memoryview` on an internal exporter object and
//! counts buffer exports. Closing (leaving the `with` block or `close()`) releases the views it
//! handed out, then zeroes the bytes in place. Should a derived view still be exported (a slice
//! of the view kept past the block, a `memoryview(view)`, ...), the zeroed buffer stays mapped
//! until the last export is released: such a view reads zeros, never freed memory. The bytes
//! are freed (and wiped again by `LockedBuf`'s drop) when the last export goes.

use std::ffi::c_int;
use std::sync::{Mutex, MutexGuard};

use pyo3::exceptions::{PyBufferError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyMemoryView, PyString, PyTuple};
use pyo3::{PyTraverseError, PyVisit, ffi};
use sealbox::client::SecretHandle;
use sealbox::memory::{self, LockedBuf};
use sealbox::process::ProcessStamp;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::errors::{BindingError, BindingResult};

/// A secret value read from a store. See the module documentation of `sealbox` for usage.
#[pyclass(module = "sealbox._native", name = "Secret", frozen)]
#[derive(Debug)]
pub struct PySecret {
    name: String,
    version: String,
    stages: Vec<String>,
    state: Mutex<SecretState>,
}

/// The mutable part, behind a mutex so the class can be `frozen` (shared freely between
/// threads). The lock is never held while Python code runs or the GIL is released.
#[derive(Debug)]
struct SecretState {
    /// The value; `None` once closed and no export remains.
    bytes: Option<LockedBuf>,
    closed: bool,
    /// Live buffer exports (memoryviews and anything derived from them).
    exports: usize,
    /// The memoryviews `__enter__` handed out, released on close.
    views: Vec<Py<PyMemoryView>>,
    /// The bytes are wiped in a process forked after this secret was read: there it raises
    /// `Forked` rather than hand out zeros.
    stamp: ProcessStamp,
}

impl SecretState {
    /// The bytes if the secret is still open (and this is the process that read it).
    fn open_bytes(&self) -> PyResult<&[u8]> {
        match (&self.bytes, self.closed) {
            (Some(b), false) => {
                self.stamp
                    .check("secret")
                    .map_err(|e| PyErr::from(BindingError::from(e)))?;
                Ok(b.as_slice())
            }
            _ => Err(closed_error()),
        }
    }
}

fn closed_error() -> PyErr {
    PyValueError::new_err("the secret is closed; read it again from the client")
}

impl PySecret {
    /// Copies the handle's value into a fresh locked buffer owned by the new object.
    pub(crate) fn from_handle(handle: &SecretHandle) -> BindingResult<PySecret> {
        handle.check_process()?;
        Self::from_parts(
            handle.name().as_str(),
            handle.version().as_str(),
            handle
                .stages()
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect(),
            handle.expose_secret(),
        )
    }

    /// A secret from its metadata and bytes (copied into locked memory).
    pub(crate) fn from_parts(
        name: &str,
        version: &str,
        stages: Vec<String>,
        value: &[u8],
    ) -> BindingResult<PySecret> {
        let mut bytes = LockedBuf::alloc(value.len(), memory::default_policy())?;
        bytes.as_mut_slice().copy_from_slice(value);
        Ok(PySecret {
            name: name.to_owned(),
            version: version.to_owned(),
            stages,
            state: Mutex::new(SecretState {
                bytes: Some(bytes),
                closed: false,
                exports: 0,
                views: Vec::new(),
                stamp: ProcessStamp::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, SecretState> {
        // A poisoned lock only means a panic happened while it was held; the state is still a
        // valid value (every update is a single assignment), so carry on rather than crash.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn refuse_copy(&self) -> PyErr {
        PyTypeError::new_err(
            "a sealbox.Secret cannot be pickled or copied; pass the secret's name and read it \
             again where it is needed, or use reveal() for an explicit copy",
        )
    }
}

#[pymethods]
impl PySecret {
    /// The secret's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The store's version id of this value.
    #[getter]
    fn version(&self) -> &str {
        &self.version
    }

    /// The first stage on this version when it was read (`"CURRENT"`, ...), or None.
    #[getter]
    fn stage(&self) -> Option<&str> {
        self.stages.first().map(String::as_str)
    }

    /// Every stage on this version when it was read.
    #[getter]
    fn stages<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.stages)
    }

    /// Whether the secret was closed (its bytes wiped).
    #[getter]
    fn closed(&self) -> bool {
        self.lock().closed
    }

    /// Whether the bytes sit in memory locked against swapping. False after close.
    #[getter]
    fn locked(&self) -> bool {
        let st = self.lock();
        !st.closed && st.bytes.as_ref().is_some_and(LockedBuf::is_locked)
    }

    /// Returns a read-only `memoryview` on the locked bytes (no copy). Leaving the block wipes
    /// the bytes and releases the view.
    fn __enter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyMemoryView>> {
        let py = slf.py();
        slf.get().lock().open_bytes()?;
        let exporter = Bound::new(
            py,
            SecretBuffer {
                secret: slf.clone().unbind(),
            },
        )?;
        let view = PyMemoryView::from(exporter.as_any())?;
        slf.get().lock().views.push(view.clone().unbind());
        Ok(view)
    }

    /// Closes the secret (wipes the bytes); exceptions propagate.
    fn __exit__(
        slf: &Bound<'_, Self>,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _traceback: &Bound<'_, PyAny>,
    ) -> bool {
        Self::close(slf);
        false
    }

    /// Wipes the bytes and invalidates the views handed out by `with`. Idempotent.
    fn close(slf: &Bound<'_, Self>) {
        let views = {
            let mut st = slf.get().lock();
            if st.closed {
                return;
            }
            st.closed = true;
            std::mem::take(&mut st.views)
        };
        // Releasing a view can call back into `__releasebuffer__`, which takes the lock, so the
        // lock is not held here.
        for view in views {
            // `release()` fails only when the view itself has exports of its own (a
            // `memoryview(view)`); those keep the buffer mapped and read the zeros below.
            if let Err(e) = view.bind(slf.py()).call_method0("release") {
                drop(e);
            }
        }
        let mut st = slf.get().lock();
        if let Some(bytes) = st.bytes.as_mut() {
            bytes.as_mut_slice().zeroize();
        }
        if st.exports == 0 {
            st.bytes = None;
        }
    }

    /// Returns the value as a new `str`: an explicit copy into ordinary (unlocked, never
    /// wiped) Python memory. Prefer `with secret as view:` where the API you call takes bytes.
    ///
    /// Raises `InvalidInput` if the value is not UTF-8, `ValueError` if the secret is closed.
    fn reveal<'py>(&self, py: Python<'py>) -> BindingResult<Bound<'py, PyString>> {
        let st = self.lock();
        let bytes = st.open_bytes()?;
        let text = std::str::from_utf8(bytes).map_err(|_| {
            sealbox::Error::invalid_input("the secret is not UTF-8 text; use reveal_bytes()")
        })?;
        Ok(PyString::new(py, text))
    }

    /// Returns the value as new `bytes`: an explicit copy into ordinary (unlocked, never wiped)
    /// Python memory. Raises `ValueError` if the secret is closed.
    fn reveal_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let st = self.lock();
        Ok(PyBytes::new(py, st.open_bytes()?))
    }

    /// Compares the value with another `Secret`, `bytes`, `bytearray`, `memoryview` or `str`
    /// in constant time (the length is not hidden). Raises `ValueError` if either secret is
    /// closed and `TypeError` for other types.
    fn equals(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<bool> {
        if let Ok(other_secret) = other.cast::<PySecret>() {
            if other_secret.is(slf) {
                slf.get().lock().open_bytes()?;
                return Ok(true);
            }
            let mine = slf.get().lock();
            let theirs = other_secret.get().lock();
            return Ok(ct_equal(mine.open_bytes()?, theirs.open_bytes()?));
        }
        let st = slf.get().lock();
        let mine = st.open_bytes()?;
        if let Ok(s) = other.cast::<PyString>() {
            let text = s
                .to_str()
                .map_err(|_| PyValueError::new_err("the str cannot be encoded as UTF-8"))?;
            return Ok(ct_equal(mine, text.as_bytes()));
        }
        if other.is_instance_of::<pyo3::types::PyBytes>()
            || other.is_instance_of::<pyo3::types::PyByteArray>()
            || other.is_instance_of::<PyMemoryView>()
        {
            let buffer = pyo3::buffer::PyUntypedBuffer::get(other)?;
            if !buffer.is_c_contiguous() {
                return Err(PyTypeError::new_err("a memoryview must be C-contiguous"));
            }
            // SAFETY: the buffer is exported for the duration of the borrow, C-contiguous and
            // `len_bytes` long; the GIL is held, so it is not mutated while compared.
            let theirs = unsafe {
                std::slice::from_raw_parts(buffer.buf_ptr().cast::<u8>(), buffer.len_bytes())
            };
            return Ok(ct_equal(mine, theirs));
        }
        let type_name = other.get_type().name()?;
        Err(PyTypeError::new_err(format!(
            "equals() takes a Secret, bytes, bytearray, memoryview or str, not {type_name}"
        )))
    }

    fn __repr__(&self) -> String {
        let closed = self.lock().closed;
        let stage = match self.stages.first() {
            Some(s) => format!("'{s}'"),
            None => "None".to_owned(),
        };
        let state = if closed { "closed" } else { "[REDACTED]" };
        format!(
            "Secret(name='{}', version='{}', stage={stage}, value={state})",
            self.name, self.version
        )
    }

    fn __reduce__(&self) -> PyResult<()> {
        Err(self.refuse_copy())
    }

    fn __reduce_ex__(&self, _protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        Err(self.refuse_copy())
    }

    fn __getstate__(&self) -> PyResult<()> {
        Err(self.refuse_copy())
    }

    fn __copy__(&self) -> PyResult<()> {
        Err(self.refuse_copy())
    }

    fn __deepcopy__(&self, _memo: &Bound<'_, PyAny>) -> PyResult<()> {
        Err(self.refuse_copy())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // The views hold exporters that hold this secret: a cycle the GC must see. If the lock
        // is held (an allocation under it triggered the collection), the views are not
        // reported, which only makes the GC keep them alive this round.
        if let Ok(st) = self.state.try_lock() {
            for view in &st.views {
                visit.call(view)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        // Dropping a view may release its buffer, which takes the lock: drop outside it.
        let views = std::mem::take(&mut self.lock().views);
        drop(views);
    }
}

fn ct_equal(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// The buffer exporter behind the `memoryview` that `with secret as view:` yields. Kept
/// separate from `Secret` so that `bytes(secret)`, `hashlib.sha256(secret)` and friends do not
/// silently copy the value: only the view exposes it.
#[pyclass(module = "sealbox._native", name = "_SecretBuffer", frozen)]
#[derive(Debug)]
pub struct SecretBuffer {
    secret: Py<PySecret>,
}

#[pymethods]
impl SecretBuffer {
    /// Fills `view` with a read-only, one-dimensional byte buffer over the locked bytes.
    ///
    /// # Safety
    /// `view` must be null or point to a `Py_buffer` that the caller (CPython) owns.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("no buffer to fill"));
        }
        if flags & ffi::PyBUF_WRITABLE == ffi::PyBUF_WRITABLE {
            return Err(PyBufferError::new_err("a secret view is read-only"));
        }
        let mut st = slf.get().secret.get().lock();
        let bytes = st.open_bytes()?;
        let (ptr, len) = (bytes.as_ptr(), bytes.len());
        let len = isize::try_from(len).map_err(|_| PyBufferError::new_err("secret too large"))?;
        // SAFETY: `view` is non-null and owned by CPython for this call. The buffer memory
        // is the `LockedBuf` of the secret, which `view.obj` (this exporter, holding the
        // secret) keeps alive; the `LockedBuf` is not dropped while `exports > 0` (see
        // `__releasebuffer__` and `PySecret::close`). `format` points at a static C string
        // that consumers only read; `shape` and `strides` point into `view` itself, as
        // `PyBuffer_FillInfo` does.
        unsafe {
            (*view).obj = slf.clone().into_any().into_ptr();
            (*view).buf = ptr.cast_mut().cast();
            (*view).len = len;
            (*view).readonly = 1;
            (*view).itemsize = 1;
            (*view).format = if flags & ffi::PyBUF_FORMAT == ffi::PyBUF_FORMAT {
                c"B".as_ptr().cast_mut()
            } else {
                std::ptr::null_mut()
            };
            (*view).ndim = 1;
            (*view).shape = if flags & ffi::PyBUF_ND == ffi::PyBUF_ND {
                &raw mut (*view).len
            } else {
                std::ptr::null_mut()
            };
            (*view).strides = if flags & ffi::PyBUF_STRIDES == ffi::PyBUF_STRIDES {
                &raw mut (*view).itemsize
            } else {
                std::ptr::null_mut()
            };
            (*view).suboffsets = std::ptr::null_mut();
            (*view).internal = std::ptr::null_mut();
        }
        st.exports += 1;
        Ok(())
    }

    /// Counts the export down; frees the (already wiped) bytes when the secret is closed and
    /// this was the last export.
    ///
    /// # Safety
    /// Called by CPython with a view this exporter filled.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        let mut st = self.secret.get().lock();
        st.exports = st.exports.saturating_sub(1);
        if st.closed && st.exports == 0 {
            st.bytes = None;
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.secret)
    }
}
