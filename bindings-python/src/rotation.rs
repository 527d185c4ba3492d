//! Rotation through the client: what `Sealbox.rotate`, `rollback` and `rotation_status`
//! return. Names, versions, times and reasons only; never a value.

use std::time::Duration;

use pyo3::prelude::*;
use sealbox::rotation::{Exec, RolledBack, Rotated, Status};

use crate::metadata::datetime;

/// How a rotation ended: the version now `CURRENT`, the one now `PREVIOUS`, and whether an
/// interrupted rotation was resumed (its `PENDING` value kept).
#[pyclass(module = "sealbox._native", name = "Rotated", frozen, get_all)]
#[derive(Debug)]
pub struct PyRotated {
    current: String,
    previous: Option<String>,
    resumed: bool,
}

#[pymethods]
impl PyRotated {
    fn __repr__(&self) -> String {
        format!(
            "Rotated(current='{}', previous={}, resumed={})",
            self.current,
            self.previous
                .as_deref()
                .map_or_else(|| "None".to_owned(), |p| format!("'{p}'")),
            if self.resumed { "True" } else { "False" }
        )
    }
}

impl From<Rotated> for PyRotated {
    fn from(r: Rotated) -> PyRotated {
        PyRotated {
            current: r.current.as_str().to_owned(),
            previous: r.previous.map(|p| p.as_str().to_owned()),
            resumed: r.resumed,
        }
    }
}

/// What a rollback did: `outcome` is `"rolled_back"` (a finished rotation undone: `version` is
/// `CURRENT` again, `undone` the version that was) or `"abandoned"` (an unfinished rotation
/// dropped: `version` is no longer `PENDING`).
#[pyclass(module = "sealbox._native", name = "RolledBack", frozen, get_all)]
#[derive(Debug)]
pub struct PyRolledBack {
    outcome: &'static str,
    version: String,
    undone: Option<String>,
}

#[pymethods]
impl PyRolledBack {
    fn __repr__(&self) -> String {
        format!(
            "RolledBack(outcome='{}', version='{}')",
            self.outcome, self.version
        )
    }
}

impl From<RolledBack> for PyRolledBack {
    fn from(r: RolledBack) -> PyRolledBack {
        match r {
            RolledBack::Finished { restored, undone } => PyRolledBack {
                outcome: "rolled_back",
                version: restored.as_str().to_owned(),
                undone: Some(undone.as_str().to_owned()),
            },
            RolledBack::Abandoned { pending } => PyRolledBack {
                outcome: "abandoned",
                version: pending.as_str().to_owned(),
                undone: None,
            },
        }
    }
}

/// One secret's rotation state: when it was last rotated (UTC `datetime`), the version an
/// unfinished rotation staged `PENDING` and the last step it did, the last failure since the
/// last finished rotation (when, at which step, why) and how many, and the process holding
/// the rotation lease while one rotates it.
#[pyclass(module = "sealbox._native", name = "RotationStatus", frozen, get_all)]
#[derive(Debug)]
pub struct PyRotationStatus {
    name: String,
    last_rotated: Option<Py<PyAny>>,
    pending: Option<String>,
    pending_step: Option<&'static str>,
    last_failure_at: Option<Py<PyAny>>,
    last_failure_step: Option<&'static str>,
    last_failure_reason: Option<String>,
    failures: u32,
    lease_holder: Option<String>,
}

#[pymethods]
impl PyRotationStatus {
    fn __repr__(&self) -> String {
        format!(
            "RotationStatus(name='{}', pending={}, failures={})",
            self.name,
            self.pending
                .as_deref()
                .map_or_else(|| "None".to_owned(), |p| format!("'{p}'")),
            self.failures
        )
    }
}

impl PyRotationStatus {
    pub(crate) fn new(py: Python<'_>, s: Status) -> PyResult<PyRotationStatus> {
        let (failure_at, failure_step, failure_reason) = match s.last_failure {
            Some(f) => (
                datetime(
                    py,
                    Some(std::time::UNIX_EPOCH + Duration::from_millis(f.at_ms)),
                )?,
                Some(f.step.as_str()),
                Some(f.reason),
            ),
            None => (None, None, None),
        };
        Ok(PyRotationStatus {
            name: s.name.as_str().to_owned(),
            last_rotated: datetime(py, s.last_rotated)?,
            pending: s.pending.as_ref().map(|(v, _)| v.as_str().to_owned()),
            pending_step: s
                .pending
                .as_ref()
                .and_then(|(_, step)| step.map(|st| st.as_str())),
            last_failure_at: failure_at,
            last_failure_step: failure_step,
            last_failure_reason: failure_reason,
            failures: s.failures,
            lease_holder: s.lease.map(|l| l.holder),
        })
    }
}

/// The `exec` rotator for a `command` argument: the program and its arguments (the step name
/// is appended, the value goes to its standard input), with an optional per-step timeout.
pub(crate) fn exec_rotator(command: Vec<String>, timeout: Option<f64>) -> sealbox::Result<Exec> {
    let Some((program, args)) = command.split_first() else {
        return Err(sealbox::Error::invalid_input(
            "command needs a program: command=[PROGRAM, ARG...]",
        ));
    };
    let mut exec = Exec::new(program, args.to_vec());
    if let Some(t) = timeout {
        let t = Duration::try_from_secs_f64(t).map_err(|_| {
            sealbox::Error::invalid_input("timeout must be a positive number of seconds")
        })?;
        exec = exec.timeout(t);
    }
    Ok(exec)
}
