//! `verify_file`: walks a log and reports the first line that breaks the chain.

use std::io::{BufRead, BufReader};
use std::path::Path;

use super::chain::{self, AuditKey, GENESIS};
use super::sink::CUT_OFF_EVENT;
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
    /// No line verifies with the key, though the lines are well-formed and chained: the log
    /// was written with another key.
    WrongKey,
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
    /// Whether a `.head` anchor is beside the file (checked when the lines verify; without
    /// one, a cut-off tail cannot be detected).
    pub anchored: bool,
    /// Lines that are fragments a writer left cut off mid-line (it stopped while writing), each
    /// followed by the signed `audit.cut_off` line the next writer wrote: the event of such a
    /// line is lost, the chain is not broken.
    pub cut_off_lines: Vec<u64>,
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
    /// The MAC verifies under the key.
    signed: bool,
    /// The line a writer signs after a fragment left cut off.
    cut_off_marker: bool,
}

/// A well-formed line (its MAC not yet trusted), or `None` when it is not one.
fn parse(key: &AuditKey, text: &str) -> Option<Line> {
    let (body, hash) = chain::split_line(text)?;
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let seq = v.get("seq").and_then(|s| s.as_u64())?;
    let prev = v.get("prev_hash").and_then(|s| s.as_str())?.to_owned();
    Some(Line {
        seq,
        prev,
        hash: hash.to_owned(),
        signed: key.verify_hex(body.as_bytes(), hash),
        cut_off_marker: v.get("event").and_then(|e| e.as_str()) == Some(CUT_OFF_EVENT),
    })
}

fn parse_signed(key: &AuditKey, text: Option<&str>) -> Option<Line> {
    text.and_then(|t| parse(key, t)).filter(|l| l.signed)
}

/// Verifies the audit log at `path` with the chain `key` and reports the first broken, edited,
/// missing or reordered line. The `PATH.head` anchor, when present, is checked too.
///
/// A fragment a writer left cut off mid-line (it stopped while writing) is not a problem when
/// the next writer's signed `audit.cut_off` line follows it and continues the chain from the
/// line before it: it is listed in [`VerifyReport::cut_off_lines`]. A cut-off fragment at the
/// very end of the file is reported as broken.
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
        cut_off_lines: Vec::new(),
        problem: None,
    };
    // A broken line waiting to see whether a writer's `audit.cut_off` line follows it.
    let mut fragment: Option<u64> = None;
    while let Some(text) = lines.next_line()? {
        report.lines += 1;
        let at = report.lines;
        let expected_seq = report.last_seq.map_or(0, |s| s + 1);
        let expected_prev = report.last_hash.as_deref().unwrap_or(GENESIS);
        let parsed = text.and_then(|t| parse(key, t));
        if let Some(frag) = fragment.take() {
            match &parsed {
                Some(l)
                    if l.signed
                        && l.cut_off_marker
                        && l.seq == expected_seq
                        && l.prev == expected_prev =>
                {
                    report.cut_off_lines.push(frag);
                }
                _ => {
                    report.problem = Some(does_not_verify(frag, ProblemKind::Broken));
                    break;
                }
            }
        }
        let fail = |kind, detail: String| Problem {
            line: at,
            kind,
            detail,
        };
        let line = match parsed {
            Some(l) if l.signed => l,
            None if lines.terminated => {
                fragment = Some(at);
                continue;
            }
            None => {
                report.problem = Some(fail(
                    ProblemKind::Broken,
                    "the last line is cut off (no newline at its end): a writer stopped \
                     while writing it, or is writing it now"
                        .into(),
                ));
                break;
            }
            Some(l) => {
                let kind = if report.last_seq.is_none() && key_differs(path, key, &l, &mut lines)? {
                    report.lines = lines.counted(report.lines);
                    ProblemKind::WrongKey
                } else {
                    ProblemKind::Edited
                };
                report.problem = Some(match kind {
                    ProblemKind::WrongKey => fail(
                        kind,
                        "the audit key does not match this log: no line verifies with it; \
                         use the key the log was written with"
                            .into(),
                    ),
                    _ => does_not_verify(at, kind),
                });
                break;
            }
        };
        if line.seq != expected_seq {
            // Reordered if the expected line comes later (or this one came before), missing
            // otherwise: the rest of the file decides (and is counted here).
            let mut later = false;
            while let Some(rest) = lines.next_line()? {
                report.lines += 1;
                later |= parse_signed(key, rest).is_some_and(|l| l.seq == expected_seq);
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
        if line.prev != expected_prev {
            report.problem = Some(fail(
                ProblemKind::Broken,
                format!("seq {} does not follow the previous line's hash", line.seq),
            ));
            break;
        }
        report.last_seq = Some(line.seq);
        report.last_hash = Some(line.hash);
    }
    if report.problem.is_none()
        && let Some(frag) = fragment
    {
        report.problem = Some(does_not_verify(frag, ProblemKind::Broken));
    }
    if report.problem.is_some() {
        // The report counts every line of the file, and says whether the anchor is there.
        while lines.next_line()?.is_some() {
            report.lines += 1;
        }
        report.anchored = head_path(path).exists();
        return Ok(report);
    }
    check_anchor(path, key, &mut report)?;
    Ok(report)
}

fn does_not_verify(line: u64, kind: ProblemKind) -> Problem {
    Problem {
        line,
        kind,
        detail: "the line does not verify".into(),
    }
}

/// Whether the first line, well-formed but not verifying, fails because the key is not the
/// log's: the next line does not verify either although it names the first line's hash (the
/// lines are chained as written), or, for a one-line log, the anchor does not verify either.
/// Reads (and counts, in `lines`) at most one more line.
fn key_differs(path: &Path, key: &AuditKey, first: &Line, lines: &mut Lines<'_>) -> Result<bool> {
    match lines.next_line()? {
        Some(next) => {
            let differs = next
                .and_then(|t| parse(key, t))
                .is_some_and(|n| !n.signed && n.prev == first.hash);
            lines.extra += 1;
            Ok(differs)
        }
        None => {
            let Ok(text) = std::fs::read(head_path(path)) else {
                return Ok(false);
            };
            let anchor = serde_json::from_slice::<serde_json::Value>(&text).ok();
            let fields = anchor.as_ref().and_then(|v| {
                Some((
                    v.get("seq")?.as_u64()?,
                    v.get("hash")?.as_str()?,
                    v.get("mac")?.as_str()?,
                ))
            });
            Ok(fields.is_some_and(|(seq, hash, mac)| {
                hash == first.hash
                    && !key.verify_hex(format!("sealbox-audit-head:{seq}:{hash}").as_bytes(), mac)
            }))
        }
    }
}

fn head_path(path: &Path) -> std::path::PathBuf {
    let mut head = path.as_os_str().to_owned();
    head.push(".head");
    head.into()
}

/// The lines of a log, as `BufRead::lines` splits them (`\n`, an optional `\r` before it, a
/// last line without one), each `None` when it is not UTF-8.
struct Lines<'a> {
    reader: BufReader<std::fs::File>,
    buf: Vec<u8>,
    path: &'a Path,
    /// Whether the line last returned ended with a newline.
    terminated: bool,
    /// Lines read past the one being judged (by `key_differs`), not yet counted.
    extra: u64,
}

impl<'a> Lines<'a> {
    fn open(path: &'a Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| read_error(path, e))?;
        Ok(Lines {
            reader: BufReader::new(file),
            buf: Vec::new(),
            path,
            terminated: true,
            extra: 0,
        })
    }

    /// `counted` plus the lines read ahead and not yet counted.
    fn counted(&mut self, counted: u64) -> u64 {
        counted + std::mem::take(&mut self.extra)
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
        self.terminated = false;
        if let Some(l) = line.strip_suffix(b"\n") {
            line = l.strip_suffix(b"\r").unwrap_or(l);
            self.terminated = true;
        }
        Ok(Some(std::str::from_utf8(line).ok()))
    }
}

fn read_error(path: &Path, e: std::io::Error) -> Error {
    Error::io(format!("reading audit file {}", path.display()), e)
}

fn check_anchor(path: &Path, key: &AuditKey, report: &mut VerifyReport) -> Result<()> {
    let head_path = head_path(path);
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
