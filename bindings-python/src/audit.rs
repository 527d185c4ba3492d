//! `sealbox.audit_verify`: checks an audit log's keyed hash chain from Python.

use std::path::{Path, PathBuf};

use pyo3::prelude::*;
use sealbox::audit::{
    AuditKey, VerifyOptions, VerifyReport, default_key_path, log_files, verify_file_with,
};

use crate::errors::BindingResult;

/// The outcome of verifying an audit log. `ok` is true when every line verified; otherwise
/// `problem_line`, `problem_kind` (`"broken"`, `"edited"`, `"missing"`, `"reordered"`,
/// `"wrong_key"`, `"missing_anchor"`, `"hash_mismatch"`, `"rolled_back"`) and
/// `problem_detail` (sequence numbers, never content) describe the first problem.
#[pyclass(module = "sealbox._native", name = "AuditReport", frozen, get_all)]
#[derive(Debug)]
pub struct PyAuditReport {
    /// Whether the whole file verified.
    ok: bool,
    /// Lines read.
    lines: u64,
    /// `seq` of the last good line.
    last_seq: Option<u64>,
    /// Whether the `.head` anchor is beside the log (checked when the lines verify; it detects
    /// a cut-off tail).
    anchored: bool,
    /// Lines that are fragments a writer left cut off mid-line, each marked by the next
    /// writer's signed `torn_tail_recovered` line (their events are lost; the chain holds).
    cut_off_lines: Vec<u64>,
    /// The files verified as one chain (rotated ones first, then the active file).
    files: Vec<String>,
    /// Where the kept chain starts when retention deleted older files.
    retention_cut: Option<u64>,
    /// The file of the first problem.
    problem_file: Option<String>,
    /// 1-based line number of the first problem, in `problem_file`.
    problem_line: Option<u64>,
    /// The kind of the first problem.
    problem_kind: Option<&'static str>,
    /// What was expected and what was found.
    problem_detail: Option<String>,
}

#[pymethods]
impl PyAuditReport {
    fn __repr__(&self) -> String {
        match (&self.problem_line, &self.problem_kind) {
            (Some(line), Some(kind)) => format!(
                "AuditReport(ok=False, lines={}, problem={kind} at line {line})",
                self.lines
            ),
            _ => format!(
                "AuditReport(ok=True, lines={}, anchored={})",
                self.lines,
                if self.anchored { "True" } else { "False" }
            ),
        }
    }

    fn __bool__(&self) -> bool {
        self.ok
    }
}

impl From<VerifyReport> for PyAuditReport {
    fn from(r: VerifyReport) -> Self {
        let ok = r.is_ok();
        let (problem_file, problem_line, problem_kind, problem_detail) = match r.problem {
            Some(p) => (
                Some(p.file.display().to_string()),
                Some(p.line),
                Some(p.kind.as_str()),
                Some(p.detail),
            ),
            None => (None, None, None, None),
        };
        PyAuditReport {
            ok,
            lines: r.lines,
            last_seq: r.last_seq,
            anchored: r.anchored,
            cut_off_lines: r.cut_off_lines,
            files: r.files.iter().map(|f| f.display().to_string()).collect(),
            retention_cut: r.retention_cut,
            problem_file,
            problem_line,
            problem_kind,
            problem_detail,
        }
    }
}

/// Reads the chain key from `path` without ever creating one (a verifier must not invent keys),
/// refusing a symlink, another user's file, or one readable by group or others.
fn read_key(path: &Path) -> sealbox::Result<AuditKey> {
    AuditKey::from_file(path).map_err(|e| match e.kind() {
        sealbox::ErrorKind::NotFound => sealbox::Error::io(
            format!("opening audit key {}", path.display()),
            std::io::ErrorKind::NotFound.into(),
        ),
        _ => e,
    })
}

/// The chain key a config's writers use when no key file lies beside the log.
fn config_key(config: &Path) -> sealbox::Result<AuditKey> {
    let config = sealbox::config::Config::from_path(config)?;
    if let Some(file) = config.audit_key_file() {
        return read_key(&file);
    }
    // The vault is opened through `spawn_blocking`: it needs a runtime context.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| sealbox::Error::io("starting a runtime to open the config's store", e))?;
    runtime
        .block_on(config.store_audit_key(&sealbox::config::ProviderRegistry::global_snapshot()))?
        .ok_or_else(|| {
            sealbox::Error::config(
                "no audit key: no key file beside the log, and the config's default store keeps \
                 no audit key; pass key_file",
            )
        })
}

/// Verifies the audit log at `path` (its keyed hash chain and `.head` anchor; `path` is the
/// active file, whose rotated files are verified first as one chain, or a directory holding
/// one log) with the key in `key_file`; by default `PATH.key` beside the log, or when there
/// is none and `config` is given, the config's `audit.key_file` or the key its local vault
/// keeps under its master key. A tampered file is a report with
/// `ok == False`; an unreadable file or key raises. A log without its anchor is a
/// `"missing_anchor"` problem unless `allow_unanchored` (for a log that never had one).
#[pyfunction]
#[pyo3(signature = (path, *, key_file = None, allow_unanchored = false, config = None))]
pub(crate) fn audit_verify(
    py: Python<'_>,
    path: PathBuf,
    key_file: Option<PathBuf>,
    allow_unanchored: bool,
    config: Option<PathBuf>,
) -> BindingResult<PyAuditReport> {
    let report = py.detach(|| {
        let beside = default_key_path(&log_files(&path)?.0);
        let key = match (key_file, config) {
            (Some(file), _) => read_key(&file)?,
            (None, Some(config)) if std::fs::symlink_metadata(&beside).is_err() => {
                config_key(&config)?
            }
            (None, _) => read_key(&beside)?,
        };
        let options = VerifyOptions {
            allow_unanchored,
            ..VerifyOptions::default()
        };
        verify_file_with(&path, &key, &options)
    })?;
    Ok(report.into())
}
