//! `verify_file`: walks a log and reports the first line that breaks the chain.

use std::io::{BufRead, BufReader};
use std::path::Path;

use super::chain::{self, AuditKey, GENESIS};
use crate::error::{Error, Result};

/// What is wrong with a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// Not a signed audit line (not JSON, no hash, no seq).
    Broken,
    /// The MAC does not match: the line was edited (or signed with another key).
    Edited,
    /// One or more lines are missing before this one (or after the last one, per the anchor).
    Missing,
    /// Lines are out of order.
    Reordered,
}

/// The first problem found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line number (the line after the last one for a cut-off tail).
    pub line: u64,
    /// The kind.
    pub kind: ProblemKind,
    /// What was expected and what was found (seq numbers, never content).
    pub detail: String,
}

/// The result of verifying a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Lines read.
    pub lines: u64,
    /// `seq` of the last good line.
    pub last_seq: Option<u64>,
    /// Hash of the last good line.
    pub last_hash: Option<String>,
    /// Whether a `.head` anchor was found and checked (without one, a cut-off tail cannot be
    /// detected).
    pub anchored: bool,
    /// The first problem, `None` when the file verifies.
    pub problem: Option<Problem>,
}

impl VerifyReport {
    /// Whether the file verified completely.
    pub fn is_ok(&self) -> bool {
        self.problem.is_none()
    }
}

struct Line {
    seq: u64,
    prev: String,
    hash: String,
}

fn parse(key: &AuditKey, text: &str) -> std::result::Result<Line, ProblemKind> {
    let (body, hash) = chain::split_line(text).ok_or(ProblemKind::Broken)?;
    let v: serde_json::Value = serde_json::from_str(text).map_err(|_| ProblemKind::Broken)?;
    let seq = v
        .get("seq")
        .and_then(|s| s.as_u64())
        .ok_or(ProblemKind::Broken)?;
    let prev = v
        .get("prev_hash")
        .and_then(|s| s.as_str())
        .ok_or(ProblemKind::Broken)?
        .to_owned();
    if !key.verify_hex(body.as_bytes(), hash) {
        return Err(ProblemKind::Edited);
    }
    Ok(Line {
        seq,
        prev,
        hash: hash.to_owned(),
    })
}

/// Verifies the audit log at `path` with the chain `key` and reports the first broken, edited,
/// missing or reordered line. The `PATH.head` anchor, when present, is checked too.
///
/// I/O failures are errors; a bad file is an `Ok` report with [`VerifyReport::problem`] set.
pub fn verify_file(path: &Path, key: &AuditKey) -> Result<VerifyReport> {
    let err = |e| Error::io(format!("reading audit file {}", path.display()), e);
    let file = std::fs::File::open(path).map_err(err)?;
    let mut lines = Vec::new();
    for line in BufReader::new(file).lines() {
        lines.push(line.map_err(err)?);
    }
    let mut report = VerifyReport {
        lines: lines.len() as u64,
        last_seq: None,
        last_hash: None,
        anchored: false,
        problem: None,
    };
    let parsed: Vec<std::result::Result<Line, ProblemKind>> =
        lines.iter().map(|l| parse(key, l)).collect();
    let mut prev = GENESIS.to_owned();
    for (i, line) in parsed.iter().enumerate() {
        let expected_seq = i as u64;
        let at = i as u64 + 1;
        let fail = |kind, detail: String| Problem {
            line: at,
            kind,
            detail,
        };
        let line = match line {
            Ok(l) => l,
            Err(kind) => {
                report.problem = Some(fail(*kind, "the line does not verify".into()));
                return Ok(report);
            }
        };
        if line.seq != expected_seq {
            let later = parsed[i + 1..]
                .iter()
                .any(|l| l.as_ref().is_ok_and(|l| l.seq == expected_seq));
            let kind = if line.seq < expected_seq || later {
                ProblemKind::Reordered
            } else {
                ProblemKind::Missing
            };
            report.problem = Some(fail(
                kind,
                format!("expected seq {expected_seq}, found seq {}", line.seq),
            ));
            return Ok(report);
        }
        if line.prev != prev {
            report.problem = Some(fail(
                ProblemKind::Broken,
                format!("seq {} does not follow the previous line's hash", line.seq),
            ));
            return Ok(report);
        }
        prev = line.hash.clone();
        report.last_seq = Some(line.seq);
        report.last_hash = Some(line.hash.clone());
    }
    check_anchor(path, key, &mut report)?;
    Ok(report)
}

fn check_anchor(path: &Path, key: &AuditKey, report: &mut VerifyReport) -> Result<()> {
    let mut head_path = path.as_os_str().to_owned();
    head_path.push(".head");
    let text = match std::fs::read_to_string(&head_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("reading the audit head file", e)),
    };
    report.anchored = true;
    let after_last = report.lines + 1;
    let broken = |detail: &str| Problem {
        line: after_last,
        kind: ProblemKind::Broken,
        detail: detail.to_owned(),
    };
    let v: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(_) => {
            report.problem = Some(broken("the .head anchor is not valid JSON"));
            return Ok(());
        }
    };
    let (Some(seq), Some(hash), Some(mac)) = (
        v.get("seq").and_then(|s| s.as_u64()),
        v.get("hash").and_then(|s| s.as_str()),
        v.get("mac").and_then(|s| s.as_str()),
    ) else {
        report.problem = Some(broken("the .head anchor lacks seq, hash or mac"));
        return Ok(());
    };
    if !key.verify_hex(format!("sealbox-audit-head:{seq}:{hash}").as_bytes(), mac) {
        report.problem = Some(broken("the .head anchor does not verify"));
        return Ok(());
    }
    match report.last_seq {
        Some(last) if last >= seq => Ok(()),
        last => {
            report.problem = Some(Problem {
                line: after_last,
                kind: ProblemKind::Missing,
                detail: format!(
                    "the log ends at seq {}, the anchor records seq {seq}",
                    last.map_or("(none)".to_owned(), |l| l.to_string())
                ),
            });
            Ok(())
        }
    }
}
