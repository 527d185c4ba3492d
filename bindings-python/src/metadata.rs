//! Metadata returned by `describe`: plain, immutable Python objects with no secret content.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use sealbox::store::{SecretMetadata, VersionInfo};

/// One version of a secret: its id, stages and creation time.
#[pyclass(module = "sealbox._native", name = "VersionInfo", frozen, get_all)]
#[derive(Debug)]
pub struct PyVersionInfo {
    /// The store's version id.
    version: String,
    /// The stages on this version (`"CURRENT"`, `"PENDING"`, `"PREVIOUS"` or custom).
    stages: Py<PyTuple>,
    /// When the version was created (UTC `datetime`), if the store knows.
    created: Option<Py<PyAny>>,
}

#[pymethods]
impl PyVersionInfo {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "VersionInfo(version='{}', stages={})",
            self.version,
            self.stages.bind(py).repr()?
        ))
    }
}

impl PyVersionInfo {
    pub(crate) fn new(py: Python<'_>, info: &VersionInfo) -> PyResult<PyVersionInfo> {
        Ok(PyVersionInfo {
            version: info.version.as_str().to_owned(),
            stages: PyTuple::new(py, info.stages.iter().map(|s| s.as_str()))?.unbind(),
            created: datetime(py, info.created)?,
        })
    }
}

/// What a store knows about a secret, without its value.
#[pyclass(module = "sealbox._native", name = "SecretMetadata", frozen)]
#[derive(Debug)]
pub struct PySecretMetadata {
    name: String,
    versions: Py<PyTuple>,
    current_version: Option<String>,
    created: Option<Py<PyAny>>,
    updated: Option<Py<PyAny>>,
    last_rotated: Option<Py<PyAny>>,
    deleted: Option<Py<PyAny>>,
    description: Option<String>,
    tags: BTreeMap<String, String>,
    rotation_period: Option<Py<PyAny>>,
}

impl PySecretMetadata {
    pub(crate) fn new(py: Python<'_>, m: &SecretMetadata) -> PyResult<PySecretMetadata> {
        let versions = m
            .versions
            .iter()
            .map(|v| Py::new(py, PyVersionInfo::new(py, v)?))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(PySecretMetadata {
            name: m.name.as_str().to_owned(),
            versions: PyTuple::new(py, versions)?.unbind(),
            current_version: m
                .version_with_stage(&sealbox::store::Stage::Current)
                .map(|v| v.as_str().to_owned()),
            created: datetime(py, m.created)?,
            updated: datetime(py, m.updated)?,
            last_rotated: datetime(py, m.last_rotated)?,
            deleted: datetime(py, m.deleted)?,
            description: m.description.clone(),
            tags: m.tags.clone(),
            rotation_period: timedelta(py, m.rotation_period)?,
        })
    }
}

#[pymethods]
impl PySecretMetadata {
    /// The secret's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Every known version, oldest first.
    #[getter]
    fn versions(&self, py: Python<'_>) -> Py<PyTuple> {
        self.versions.clone_ref(py)
    }

    /// The id of the version staged `CURRENT`, if any.
    #[getter]
    fn current_version(&self) -> Option<&str> {
        self.current_version.as_deref()
    }

    /// When the secret was created (UTC `datetime`), if known.
    #[getter]
    fn created(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.created.as_ref().map(|d| d.clone_ref(py))
    }

    /// When the secret last changed (UTC `datetime`), if known.
    #[getter]
    fn updated(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.updated.as_ref().map(|d| d.clone_ref(py))
    }

    /// When the secret was last rotated (UTC `datetime`), if ever.
    #[getter]
    fn last_rotated(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.last_rotated.as_ref().map(|d| d.clone_ref(py))
    }

    /// When the secret was soft-deleted (UTC `datetime`), or None.
    #[getter]
    fn deleted(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.deleted.as_ref().map(|d| d.clone_ref(py))
    }

    /// The description, if any.
    #[getter]
    fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The tags, as a new `dict` (changing it changes nothing in the store).
    #[getter]
    fn tags<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in &self.tags {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    /// The rotation period (`timedelta`), if one is set.
    #[getter]
    fn rotation_period(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.rotation_period.as_ref().map(|d| d.clone_ref(py))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "SecretMetadata(name='{}', versions={}, current_version={})",
            self.name,
            self.versions.bind(py).len(),
            match &self.current_version {
                Some(v) => format!("'{v}'"),
                None => "None".to_owned(),
            }
        ))
    }
}

static DATETIME: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static TIMEZONE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static TIMEDELTA: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// A `SystemTime` as an aware UTC `datetime.datetime`.
pub(crate) fn datetime(py: Python<'_>, t: Option<SystemTime>) -> PyResult<Option<Py<PyAny>>> {
    let Some(t) = t else { return Ok(None) };
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    };
    let utc = TIMEZONE
        .import(py, "datetime", "timezone")?
        .getattr("utc")?;
    let dt = DATETIME
        .import(py, "datetime", "datetime")?
        .call_method1("fromtimestamp", (secs, utc))?;
    Ok(Some(dt.unbind()))
}

/// A `Duration` as a `datetime.timedelta`.
fn timedelta(py: Python<'_>, d: Option<Duration>) -> PyResult<Option<Py<PyAny>>> {
    let Some(d) = d else { return Ok(None) };
    let kwargs = PyDict::new(py);
    kwargs.set_item("seconds", d.as_secs_f64())?;
    let td = TIMEDELTA
        .import(py, "datetime", "timedelta")?
        .call((), Some(&kwargs))?;
    Ok(Some(td.unbind()))
}
