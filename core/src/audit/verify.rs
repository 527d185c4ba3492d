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
/// I/O failures are errors; a bad file is an `Ok` report with [`VerifyReport::problem`] set
/// (bytes that are not UTF-8 text included: a broken line). The file is read once, a line at a
/// time, so a log of any size verifies in constant memory.
pub fn verify_file(path: &Path, key: &AuditKey) -> Result<VerifyReport> {
    let mut lines = Lines::open(path)?;
    let mut report = VerifyReport {
        lines: 0,
        last_seq: None,
        last_hash: None,
        anchored: false,
        problem: None,
    };
    while let Some(text) = lines.next_line()? {
        let expected_seq = report.lines;
        report.lines += 1;
        let at = report.lines;
        let fail = |kind, detail: String| Problem {
            line: at,
            kind,
            detail,
        };
        let line = match text.map_or(Err(ProblemKind::Broken), |t| parse(key, t)) {
            Ok(l) => l,
            Err(kind) => {
                report.problem = Some(fail(kind, "the line does not verify".into()));
                break;
            }
        };
        if line.seq != expected_seq {
            // Reordered if the expected line comes later (or this one came before), missing
            // otherwise: the rest of the file decides (and is counted here).
            let mut later = false;
            while let Some(rest) = lines.next_line()? {
                report.lines += 1;
                later |= rest.is_some_and(|t| parse(key, t).is_ok_and(|l| l.seq == expected_seq));
            }
            let kind = if line.seq < expected_seq || later {
                ProblemKind::Reordered
            } else {
                ProblemKind::Missing
            };
            report.problem = Some(fail(
                kind,
                format!("expected seq {expected_seq}, found seq {}", line.seq),
            ));
            break;
        }
        if line.prev != report.last_hash.as_deref().unwrap_or(GENESIS) {
            report.problem = Some(fail(
                ProblemKind::Broken,
                format!("seq {} does not follow the previous line's hash", line.seq),
            ));
            break;
        }
        report.last_seq = Some(line.seq);
        report.last_hash = Some(line.hash);
    }
    if report.problem.is_some() {
        // The report counts every line of the file.
        while lines.next_line()?.is_some() {
            report.lines += 1;
        }
        return Ok(report);
    }
    check_anchor(path, key, &mut report)?;
    Ok(report)
}

/// The lines of a log, as `BufRead::lines` splits them (`\n`, an optional `\r` before it, a
/// last line without one), each `None` when it is not UTF-8.
struct Lines<'a> {
    reader: BufReader<std::fs::File>,
    buf: Vec<u8>,
    path: &'a Path,
}

impl<'a> Lines<'a> {
    fn open(path: &'a Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| read_error(path, e))?;
        Ok(Lines {
            reader: BufReader::new(file),
            buf: Vec::new(),
            path,
        })
    }

    /// The next line (`Some(None)`: not text), or `None` at the end of the file.
    fn next_line(&mut self) -> Result<Option<Option<&str>>> {
        self.buf.clear();
        let n = self
            .reader
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| read_error(self.path, e))?;
        if n == 0 {
            return Ok(None);
        }
        let mut line = &self.buf[..];
        if let Some(l) = line.strip_suffix(b"\n") {
            line = l.strip_suffix(b"\r").unwrap_or(l);
        }
        Ok(Some(std::str::from_utf8(line).ok()))
    }
}

fn read_error(path: &Path, e: std::io::Error) -> Error {
    Error::io(format!("reading audit file {}", path.display()), e)
}

fn check_anchor(path: &Path, key: &AuditKey, report: &mut VerifyReport) -> Result<()> {
    let mut head_path = path.as_os_str().to_owned();
    head_path.push(".head");
    // Bytes: an anchor that is not UTF-8 is a broken anchor, not a read failure.
    let text = match std::fs::read(&head_path) {
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
    let v: serde_json::Value = match serde_json::from_slice(&text) {
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
