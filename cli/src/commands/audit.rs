//! `sealbox audit verify FILE`: checks an audit log's keyed hash chain.
//!
//! FILE is the active file (the files rotated out of it, `FILE.NNNN...`, are verified first,
//! in order, as one chain) or a directory holding one log.
//!
//! The chain key is the one the writers used: `--audit-key-file`; else `FILE.key` beside the
//! log; else, with `--config`, the config's `audit.key_file` or the key its local vault keeps
//! wrapped by its master key (where a config with a local vault keeps it). A key file is
//! refused when it is a symlink, another user's, or accessible by group or others.
//! Verification never creates a key file: a missing one is a config error, not a fresh key
//! that would make every line look edited.
//!
//! A log without its `FILE.head` anchor fails (`missing_anchor`) unless `--allow-unanchored`.
//! The anchor only catches accidents: whoever can write the log can rewrite it. With
//! `--checkpoints STORE/NAME` (and `--config`) the log is also checked against every checkpoint
//! the writers published as versions of that secret, which catches a log cut or rolled back by
//! someone on the host as far as the store's access control and history keep them out.

use std::path::{Path, PathBuf};

use sealbox::audit::{
    AuditKey, CheckpointTarget, VerifyOptions, VerifyReport, default_key_path, log_files,
    read_checkpoints, verify_file_with,
};
use sealbox::config::{Config, ProviderRegistry};
use sealbox::{Error, ErrorKind, Result};
use serde::Serialize;

use crate::args::AuditCommand;
use crate::output::{Outcome, Report};

#[derive(Debug, Serialize)]
struct ProblemRow {
    file: String,
    line: u64,
    kind: &'static str,
    detail: String,
}

#[derive(Debug, Serialize)]
struct AuditVerifyReport {
    file: String,
    /// The files verified as one chain (rotated ones first).
    files: Vec<String>,
    /// The seq the kept chain starts at when retention deleted older files.
    retention_cut: Option<u64>,
    ok: bool,
    lines: u64,
    last_seq: Option<u64>,
    /// Whether the `.head` anchor is beside the file (without it a cut-off tail goes
    /// unnoticed).
    anchored: bool,
    /// Published checkpoints the log was checked against.
    checkpoints: u64,
    /// Torn lines recovered: fragments a writer left cut off mid-line, each followed by the
    /// next writer's signed `torn_tail_recovered` line (their events are lost; the chain
    /// holds).
    cut_off_lines: Vec<u64>,
    problem: Option<ProblemRow>,
}

impl Report for AuditVerifyReport {
    fn human(&self) -> String {
        let files = match self.files.len() {
            0 | 1 => String::new(),
            n => format!(" in {n} files"),
        };
        let mut out = match &self.problem {
            None if self.checkpoints > 0 => format!(
                "{}: ok, {} lines verified{files}, against {} checkpoints\n",
                self.file, self.lines, self.checkpoints
            ),
            None => format!("{}: ok, {} lines verified{files}\n", self.file, self.lines),
            Some(p) => format!("{}: line {}: {}: {}\n", p.file, p.line, p.kind, p.detail),
        };
        if let Some(seq) = self.retention_cut {
            out.push_str(&format!(
                "note: the files before seq {seq} were deleted by retention (recorded in the \
                 .retention file)\n"
            ));
        }
        if !self.cut_off_lines.is_empty() {
            out.push_str(&format!(
                "torn tail recovered at line(s) {}: a writer was killed or crashed mid-line \
                 there (that event is lost); the next writer signed a torn_tail_recovered line \
                 and the chain continues (not tampering)\n",
                self.cut_off_lines
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !self.anchored {
            out.push_str(
                "note: no .head anchor beside the file, so lines cut off the end \
                 cannot be detected\n",
            );
        }
        out
    }
}

/// Runs `sealbox audit ...`; `config` is `--config`, where `--checkpoints` finds its store.
pub async fn run(command: AuditCommand, config: Option<&Path>) -> Result<Outcome> {
    let AuditCommand::Verify {
        file,
        audit_key_file,
        allow_unanchored,
        checkpoints,
    } = command;
    let key = chain_key(&file, audit_key_file, config).await?;
    let checkpoints = match checkpoints {
        Some(reference) => load_checkpoints(&reference, config).await?,
        None => Vec::new(),
    };
    let options = VerifyOptions {
        allow_unanchored,
        checkpoints,
    };
    let report = verify_file_with(&file, &key, &options)?;
    Ok(render(&file, &report))
}

/// Every checkpoint kept as a version of `STORE/NAME` in the store of the config.
async fn load_checkpoints(
    reference: &str,
    config: Option<&Path>,
) -> Result<Vec<sealbox::audit::Checkpoint>> {
    let CheckpointTarget::Store { store, name } = CheckpointTarget::parse_store(reference)? else {
        return Err(Error::internal(
            "a store reference parsed as another target",
        ));
    };
    let config = config.ok_or_else(|| {
        Error::config("--checkpoints STORE/NAME needs --config FILE, where the store is defined")
    })?;
    crate::providers::register()?;
    let config = Config::from_path(config)?;
    let store = config
        .build_store(&ProviderRegistry::global_snapshot(), &store)
        .await?;
    let found = read_checkpoints(store.as_ref(), &name)
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => Error::new(
                ErrorKind::NotFound,
                format!(
                    "no audit checkpoints at {reference}: none was published yet, or the \
                     name is not the one under audit.checkpoints.to"
                ),
            ),
            _ => e,
        })?;
    Ok(found)
}

fn render(file: &Path, report: &VerifyReport) -> Outcome {
    let rendered = AuditVerifyReport {
        file: file.display().to_string(),
        files: report
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect(),
        retention_cut: report.retention_cut,
        ok: report.is_ok(),
        lines: report.lines,
        last_seq: report.last_seq,
        anchored: report.anchored,
        checkpoints: report.checkpoints,
        cut_off_lines: report.cut_off_lines.clone(),
        problem: report.problem.as_ref().map(|p| ProblemRow {
            file: p.file.display().to_string(),
            line: p.line,
            kind: p.kind.as_str(),
            detail: p.detail.clone(),
        }),
    };
    match &report.problem {
        None => Outcome::report(&rendered),
        Some(p) => Outcome::failed_report(
            &rendered,
            Error::new(
                ErrorKind::Integrity,
                format!(
                    "audit log {} fails verification at line {} of {} ({})",
                    file.display(),
                    p.line,
                    p.file.display(),
                    p.kind.as_str()
                ),
            ),
        ),
    }
}

/// The chain key, as the writers chose it: `--audit-key-file`; else `FILE.key` beside the log;
/// else, with `--config`, the config's `audit.key_file` or the key its default store keeps
/// under its master key (a local vault).
async fn chain_key(
    file: &Path,
    key_file: Option<PathBuf>,
    config: Option<&Path>,
) -> Result<AuditKey> {
    if let Some(path) = key_file {
        return load_key(&path);
    }
    let beside = default_key_path(&log_files(file)?.0);
    let Some(config) = config.filter(|_| std::fs::symlink_metadata(&beside).is_err()) else {
        return load_key(&beside);
    };
    crate::providers::register()?;
    let config = Config::from_path(config)?;
    if let Some(path) = config.audit_key_file() {
        return load_key(&path);
    }
    config
        .store_audit_key(&ProviderRegistry::global_snapshot())
        .await?
        .ok_or_else(|| {
            Error::config(format!(
                "no audit key for {}: no {} beside it, and the config's default store keeps \
                 no audit key; pass --audit-key-file PATH",
                file.display(),
                beside.display()
            ))
        })
}

/// The chain key in `path`, refused when a symlink, another user's, or readable by group or
/// others (as the writers refuse it).
fn load_key(path: &Path) -> Result<AuditKey> {
    AuditKey::from_file(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => Error::config(format!(
            "audit key file {} does not exist; pass --audit-key-file PATH (or --config CONFIG \
             when the key is kept by the config's vault)",
            path.display()
        )),
        _ => e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealbox::Secret;
    use sealbox::audit::{AuditLog, FsyncPolicy};
    use sealbox::store::memory::MemoryStore;
    use std::sync::Arc;

    /// Writes a real audit log through a client: one write and three reads.
    async fn audited_log(dir: &Path) -> PathBuf {
        let log = dir.join("audit.log");
        let client = sealbox::Sealbox::builder()
            .store(Arc::new(MemoryStore::new()))
            .audit(AuditLog::builder().file(&log, FsyncPolicy::Batch))
            .build()
            .unwrap();
        let mut raw = *b"t0ken";
        let value = Secret::from_mut_slice(&mut raw).unwrap();
        client.put("app/api/token", &value).await.unwrap();
        for _ in 0..3 {
            client.get("app/api/token").await.unwrap();
        }
        client.flush_audit().await.unwrap();
        log
    }

    async fn verify(file: &Path, key: Option<PathBuf>) -> Result<Outcome> {
        run(
            AuditCommand::Verify {
                file: file.to_path_buf(),
                audit_key_file: key,
                allow_unanchored: false,
                checkpoints: None,
            },
            None,
        )
        .await
    }

    fn json(outcome: &Outcome) -> serde_json::Value {
        match outcome {
            Outcome::Report { json, .. } => json.clone(),
            Outcome::Written => serde_json::Value::Null,
        }
    }

    #[tokio::test]
    async fn an_untouched_log_verifies_with_the_key_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = audited_log(dir.path()).await;
        let mut outcome = verify(&log, None).await.unwrap();
        assert!(outcome.take_failure().is_none());
        let j = json(&outcome);
        assert_eq!(j["ok"], true, "{j}");
        assert!(j["lines"].as_u64().unwrap() >= 4, "{j}");
        assert!(!j.to_string().contains("t0ken"));
    }

    #[tokio::test]
    async fn an_edited_line_is_an_integrity_failure_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = audited_log(dir.path()).await;
        let text = std::fs::read_to_string(&log).unwrap();
        let edited = text.replacen("\"success\":true", "\"success\":false", 1);
        assert_ne!(text, edited, "the log has a success field to edit");
        std::fs::write(&log, edited).unwrap();
        let mut outcome = verify(&log, None).await.unwrap();
        let failure = outcome.take_failure().expect("a failure");
        assert_eq!(failure.kind(), ErrorKind::Integrity);
        let j = json(&outcome);
        assert_eq!(j["ok"], false);
        assert_eq!(j["problem"]["kind"], "edited");
        assert_eq!(j["problem"]["line"], 1);
        // The anchor is there, and the report says so although verification stopped early.
        assert_eq!(j["anchored"], true, "{j}");
        let human = match &outcome {
            Outcome::Report { human, .. } => human.clone(),
            Outcome::Written => String::new(),
        };
        assert!(!human.contains("no .head anchor"), "{human}");
    }

    #[tokio::test]
    async fn a_missing_key_is_a_config_error_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = audited_log(dir.path()).await;
        let absent = dir.path().join("absent.key");
        let err = verify(&log, Some(absent.clone())).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(!absent.exists());
    }

    #[tokio::test]
    async fn another_key_is_reported_as_the_wrong_key_not_as_an_edit() {
        let dir = tempfile::tempdir().unwrap();
        let log = audited_log(dir.path()).await;
        let other = dir.path().join("other.key");
        std::fs::write(&other, [7u8; 32]).unwrap();
        std::fs::set_permissions(&other, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let mut outcome = verify(&log, Some(other)).await.unwrap();
        assert_eq!(outcome.take_failure().unwrap().kind(), ErrorKind::Integrity);
        let j = json(&outcome);
        assert_eq!(j["problem"]["kind"], "wrong_key", "{j}");
        assert_eq!(j["problem"]["line"], 1, "{j}");
        let detail = j["problem"]["detail"].as_str().unwrap();
        assert!(
            detail.contains("audit key does not match this log"),
            "{detail}"
        );
    }

    fn human(outcome: &Outcome) -> String {
        match outcome {
            Outcome::Report { human, .. } => human.clone(),
            Outcome::Written => String::new(),
        }
    }

    #[tokio::test]
    async fn a_recovered_torn_tail_is_reported_as_such_not_as_tampering() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let log = audited_log(dir.path()).await;
        // A writer killed mid-line: half a line, no newline.
        let text = std::fs::read_to_string(&log).unwrap();
        let last = text.lines().last().unwrap();
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(&last.as_bytes()[..last.len() / 2]).unwrap();
        drop(f);
        let torn_at = text.lines().count() as u64 + 1;
        let mut outcome = verify(&log, None).await.unwrap();
        assert!(
            outcome.take_failure().is_some(),
            "a torn tail nobody recovered fails"
        );
        // The next writer (the service starting again) recovers it.
        audited_log(dir.path()).await;
        let mut outcome = verify(&log, None).await.unwrap();
        assert!(outcome.take_failure().is_none(), "{}", human(&outcome));
        let j = json(&outcome);
        assert_eq!(j["ok"], true, "{j}");
        assert_eq!(j["cut_off_lines"], serde_json::json!([torn_at]), "{j}");
        let h = human(&outcome);
        assert!(h.contains(": ok,"), "{h}");
        assert!(
            h.contains(&format!("torn tail recovered at line(s) {torn_at}")),
            "{h}"
        );
        assert!(h.contains("not tampering"), "{h}");
    }

    #[tokio::test]
    async fn a_key_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = audited_log(dir.path()).await;
        let key = default_key_path(&log);
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        let err = verify(&log, None).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(
            err.message()
                .contains(&format!("chmod 600 {}", key.display())),
            "{}",
            err.message()
        );
    }
}
