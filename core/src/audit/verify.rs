//! `verify_file`: walks a log and reports the first line that breaks the chain.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::chain::{self, AuditKey, GENESIS};
use super::rotate;
use super::sink::{LEGACY_TORN_TAIL_EVENT, TORN_TAIL_EVENT};
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
    /// The log has no `.head` anchor beside it: it was deleted (with it, a cut-off tail goes
    /// unnoticed). Accepted only with [`VerifyOptions::allow_unanchored`].
    MissingAnchor,
    /// The `.head` anchor or a checkpoint records another hash at its seq than the log's line
    /// there: the log was cut back and written again, or an old anchor was restored.
    HashMismatch,
    /// A published checkpoint records a seq past the log's end: the log was cut or rolled back
    /// to an older copy.
    RolledBack,
}

impl ProblemKind {
    /// The kind's name in reports (`broken`, `edited`, `missing`, `reordered`, `wrong_key`,
    /// `missing_anchor`, `hash_mismatch`, `rolled_back`).
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Broken => "broken",
            ProblemKind::Edited => "edited",
            ProblemKind::Missing => "missing",
            ProblemKind::Reordered => "reordered",
            ProblemKind::WrongKey => "wrong_key",
            ProblemKind::MissingAnchor => "missing_anchor",
            ProblemKind::HashMismatch => "hash_mismatch",
            ProblemKind::RolledBack => "rolled_back",
        }
    }
}

/// What [`verify_file_with`] checks besides the chain.
///
/// What each check protects: the `.head` anchor beside the log catches accidents only (a lost
/// tail); whoever can write the log can rewrite the anchor. Checkpoints published to syslog
/// (forwarded to another host) or to a store's versions catch a log cut or rolled back by a
/// local attacker, as far as that host or the store's access control reaches (see
/// [`super::Checkpoints`]).
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// Accept a log without its `.head` anchor, for a log that never had one. Without it a
    /// missing anchor is a [`ProblemKind::MissingAnchor`]: deleting the anchor is how a cut
    /// tail would be hidden.
    pub allow_unanchored: bool,
    /// Checkpoints published for this log (e.g. [`super::read_checkpoints`]): the log must
    /// reach each one's seq with the same hash there, and each must verify under the key.
    pub checkpoints: Vec<super::Checkpoint>,
}

/// The first problem found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file of the log's set the line is in.
    pub file: PathBuf,
    /// 1-based line number in that file (the line after the last one for a cut-off tail).
    pub line: u64,
    /// The kind.
    pub kind: ProblemKind,
    /// What was expected and what was found (seq numbers, never content).
    pub detail: String,
}

/// The result of verifying a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// The files verified as one chain, in order: the rotated files, then the active file.
    pub files: Vec<PathBuf>,
    /// Where the kept chain starts when retention deleted the files before it (the seq of
    /// the first line, vouched for by the `.retention` record).
    pub retention_cut: Option<u64>,
    /// Lines read.
    pub lines: u64,
    /// `seq` of the last good line.
    pub last_seq: Option<u64>,
    /// Hash of the last good line.
    pub last_hash: Option<String>,
    /// Whether a `.head` anchor is beside the file (checked when the lines verify; without
    /// one, a cut-off tail cannot be detected).
    pub anchored: bool,
    /// How many published checkpoints the log was checked against.
    pub checkpoints: u64,
    /// Torn lines that were recovered: fragments a writer left cut off mid-line (it was killed
    /// or the machine crashed while writing), each followed by the signed
    /// `torn_tail_recovered` line the next writer wrote: the event of such a
    /// line is lost, the chain is not broken. Line numbers within their file.
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
        cut_off_marker: matches!(
            v.get("event").and_then(|e| e.as_str()),
            Some(TORN_TAIL_EVENT | LEGACY_TORN_TAIL_EVENT)
        ),
    })
}

fn parse_signed(key: &AuditKey, text: Option<&str>) -> Option<Line> {
    text.and_then(|t| parse(key, t)).filter(|l| l.signed)
}

/// Verifies the audit log at `path` (its active file, whose rotated files beside it are verified
/// first, in order, as one chain; or a directory holding one log) with the chain `key` and
/// reports the first broken, edited,
/// missing or reordered line, then checks the `PATH.head` anchor: a log without one is a
/// [`ProblemKind::MissingAnchor`], an anchor past the log's end is [`ProblemKind::Missing`], an
/// anchor whose hash is not the log's at its seq is [`ProblemKind::HashMismatch`]. The same as
/// [`verify_file_with`] with default options.
pub fn verify_file(path: &Path, key: &AuditKey) -> Result<VerifyReport> {
    verify_file_with(path, key, &VerifyOptions::default())
}

/// A place the log's hash at a seq is recorded: the anchor or a checkpoint.
struct Target {
    seq: u64,
    hash: String,
    /// `None`: the `.head` anchor; otherwise the checkpoint's time.
    checkpoint: Option<String>,
    /// The line holding `seq`, and whether its hash matched.
    found: Option<(Pos, bool)>,
}

impl Target {
    fn what(&self) -> String {
        match &self.checkpoint {
            None => "the .head anchor".to_owned(),
            Some(time) => format!("the checkpoint of {time}"),
        }
    }
}

/// The `.head` anchor as read before the walk.
enum Anchor {
    Absent,
    Invalid(&'static str),
    Valid,
}

/// [`verify_file`] with options: published checkpoints to check the log against, and whether
/// a log without its anchor is accepted.
///
/// Checkpoint problems come before anchor problems (a checkpoint kept away from the host is the
/// stronger evidence): a checkpoint that does not verify under the key is
/// [`ProblemKind::Broken`], one past the log's end is [`ProblemKind::RolledBack`], one whose hash
/// differs from the log's at its seq is [`ProblemKind::HashMismatch`].
///
/// A fragment a writer left cut off mid-line (it stopped while writing) is not a problem when
/// the next writer's signed `torn_tail_recovered` line follows it and continues the chain from the
/// line before it: it is listed in [`VerifyReport::cut_off_lines`]. A cut-off fragment at the
/// very end of the file is reported as broken.
///
/// I/O failures are errors; a bad file is an `Ok` report with [`VerifyReport::problem`] set
/// (bytes that are not UTF-8 text included: a broken line). The file is read once, a line at a
/// time, so a log of any size verifies in constant memory.
pub fn verify_file_with(
    path: &Path,
    key: &AuditKey,
    options: &VerifyOptions,
) -> Result<VerifyReport> {
    let (active, files) = rotate::log_files(path)?;
    let path = active.as_path();
    let mut lines = Lines::open(files.clone())?;
    let mut report = VerifyReport {
        files,
        retention_cut: None,
        lines: 0,
        last_seq: None,
        last_hash: None,
        anchored: false,
        checkpoints: options.checkpoints.len() as u64,
        cut_off_lines: Vec::new(),
        problem: None,
    };
    let mut targets: Vec<Target> = options
        .checkpoints
        .iter()
        .filter(|c| c.verifies(key))
        .map(|c| Target {
            seq: c.seq,
            hash: c.hash.clone(),
            checkpoint: Some(c.time.clone()),
            found: None,
        })
        .collect();
    let anchor = read_anchor(path, key, &mut targets)?;
    targets.sort_by_key(|t| t.seq);
    let mut next_target = 0usize;
    // Where the chain starts: seq 0, or where retention cut it (the record must name the
    // first line's seq and previous hash).
    let (mut start_seq, mut start_prev) = (0u64, GENESIS.to_owned());
    if let Some(first) = report.files.first()
        && let Ok(Some((seq, prev, _))) = rotate::first_line(first)
        && seq != 0
        && let Some(cut) = rotate::read_retention(path, key)
        && cut.next_seq == seq
        && cut.prev_hash == prev
    {
        (start_seq, start_prev) = (seq, prev);
        report.retention_cut = Some(seq);
    }
    // A broken line waiting to see whether a writer's `torn_tail_recovered` line follows it.
    // Anywhere else, a line that is not a signed line is tampering (or damage).
    let mut fragment: Option<Pos> = None;
    while let Some(text) = lines.next_line()? {
        let parsed = text.and_then(|t| parse(key, t));
        report.lines += 1;
        let at = lines.pos();
        let expected_seq = report.last_seq.map_or(start_seq, |s| s + 1);
        let expected_prev = report.last_hash.as_deref().unwrap_or(&start_prev);
        if let Some(frag) = fragment.take() {
            match &parsed {
                Some(l)
                    if l.signed
                        && l.cut_off_marker
                        && l.seq == expected_seq
                        && l.prev == expected_prev =>
                {
                    report.cut_off_lines.push(frag.line);
                }
                _ => {
                    report.problem = Some(does_not_verify(&lines, frag, ProblemKind::Broken));
                    break;
                }
            }
        }
        let line = match parsed {
            Some(l) if l.signed => l,
            None if lines.terminated => {
                fragment = Some(at);
                continue;
            }
            None => {
                report.problem = Some(problem_at(
                    &lines,
                    at,
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
                    ProblemKind::WrongKey => problem_at(
                        &lines,
                        at,
                        kind,
                        "the audit key does not match this log: no line verifies with it; \
                         use the key the log was written with"
                            .into(),
                    ),
                    _ => does_not_verify(&lines, at, kind),
                });
                break;
            }
        };
        if line.seq != expected_seq {
            // Reordered if the expected line comes later (or this one came before), missing
            // otherwise: the rest of the set decides (and is counted here).
            let problem_file = lines.path_of(at);
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
            let mut detail = format!("expected seq {expected_seq}, found seq {}", line.seq);
            if at.line == 1 && at.file > 0 {
                detail.push_str(
                    " at the start of a rotated file: a file of the set is missing or out of order",
                );
            } else if at.line == 1 && report.last_seq.is_none() && expected_seq == 0 {
                detail.push_str(
                    ": the files before it were removed, and no retention record vouches for it",
                );
            }
            report.problem = Some(Problem {
                file: problem_file,
                line: at.line,
                kind,
                detail,
            });
            break;
        }
        if line.prev != expected_prev {
            report.problem = Some(problem_at(
                &lines,
                at,
                ProblemKind::Broken,
                format!("seq {} does not follow the previous line's hash", line.seq),
            ));
            break;
        }
        while let Some(t) = targets.get_mut(next_target)
            && t.seq <= line.seq
        {
            if t.seq == line.seq {
                t.found = Some((at, t.hash == line.hash));
            }
            next_target += 1;
        }
        report.last_seq = Some(line.seq);
        report.last_hash = Some(line.hash);
    }
    if report.problem.is_none()
        && let Some(frag) = fragment
    {
        report.problem = Some(does_not_verify(&lines, frag, ProblemKind::Broken));
    }
    if report.problem.is_some() {
        // The report counts every line of the set, and says whether the anchor is there.
        while lines.next_line()?.is_some() {
            report.lines += 1;
        }
        report.anchored = head_path(path).exists();
        return Ok(report);
    }
    report.anchored = !matches!(anchor, Anchor::Absent);
    let after_last = lines.after_last();
    report.problem = checkpoint_problem(key, options, &targets, &report, &lines, after_last)
        .or_else(|| anchor_problem(&anchor, options, &targets, &report, &lines, after_last));
    Ok(report)
}

/// The first checkpoint that does not verify, that the log does not reach, or whose hash the
/// log does not have at its seq.
fn checkpoint_problem(
    key: &AuditKey,
    options: &VerifyOptions,
    targets: &[Target],
    report: &VerifyReport,
    lines: &Lines,
    after_last: Pos,
) -> Option<Problem> {
    if let Some(c) = options.checkpoints.iter().find(|c| !c.verifies(key)) {
        return Some(Problem {
            file: lines.path_of(after_last),
            line: after_last.line,
            kind: ProblemKind::Broken,
            detail: format!(
                "the checkpoint of {} (seq {}) does not verify with the audit key: it was not \
                 published for this log, or it was forged",
                c.time, c.seq
            ),
        });
    }
    let checkpoints = targets.iter().filter(|t| t.checkpoint.is_some());
    if let Some(t) = checkpoints
        .clone()
        .rev()
        .find(|t| Some(t.seq) > report.last_seq)
    {
        return Some(Problem {
            file: lines.path_of(after_last),
            line: after_last.line,
            kind: ProblemKind::RolledBack,
            detail: format!(
                "the log ends at {}, but {} records seq {}: the log was cut or rolled back to an \
                 older copy",
                ends_at(report),
                t.what(),
                t.seq
            ),
        });
    }
    checkpoints.into_iter().find_map(|t| mismatch(t, lines))
}

fn ends_at(report: &VerifyReport) -> String {
    report
        .last_seq
        .map_or_else(|| "no line".to_owned(), |l| format!("seq {l}"))
}

fn mismatch(t: &Target, lines: &Lines) -> Option<Problem> {
    match t.found {
        Some((at, false)) => Some(Problem {
            file: lines.path_of(at),
            line: at.line,
            kind: ProblemKind::HashMismatch,
            detail: format!(
                "{} records another hash at seq {}: the log was cut back and written again, or \
                 an old anchor was put back",
                t.what(),
                t.seq
            ),
        }),
        _ => None,
    }
}

fn anchor_problem(
    anchor: &Anchor,
    options: &VerifyOptions,
    targets: &[Target],
    report: &VerifyReport,
    lines: &Lines,
    after_last: Pos,
) -> Option<Problem> {
    let problem = |kind, detail: String| {
        Some(Problem {
            file: lines.path_of(after_last),
            line: after_last.line,
            kind,
            detail,
        })
    };
    match anchor {
        Anchor::Absent if options.allow_unanchored => None,
        Anchor::Absent => problem(
            ProblemKind::MissingAnchor,
            "missing anchor: no .head file beside the log, so lines cut off its end cannot be \
             detected; it was deleted, or the log never had one (then pass --allow-unanchored)"
                .into(),
        ),
        Anchor::Invalid(detail) => problem(ProblemKind::Broken, (*detail).to_owned()),
        Anchor::Valid => {
            let t = targets.iter().find(|t| t.checkpoint.is_none())?;
            if Some(t.seq) > report.last_seq {
                return problem(
                    ProblemKind::Missing,
                    format!(
                        "the log ends at {}, the anchor records seq {}",
                        report
                            .last_seq
                            .map_or("(none)".to_owned(), |l| l.to_string()),
                        t.seq
                    ),
                );
            }
            mismatch(t, lines)
        }
    }
}

fn problem_at(lines: &Lines, at: Pos, kind: ProblemKind, detail: String) -> Problem {
    Problem {
        file: lines.path_of(at),
        line: at.line,
        kind,
        detail,
    }
}

fn does_not_verify(lines: &Lines, at: Pos, kind: ProblemKind) -> Problem {
    Problem {
        file: lines.path_of(at),
        line: at.line,
        kind,
        detail: "the line does not verify".into(),
    }
}

/// Whether the first line, well-formed but not verifying, fails because the key is not the
/// log's: the next line does not verify either although it names the first line's hash (the
/// lines are chained as written), or, for a one-line log, the anchor does not verify either.
/// Reads (and counts, in `lines`) at most one more line.
fn key_differs(path: &Path, key: &AuditKey, first: &Line, lines: &mut Lines) -> Result<bool> {
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

/// A line's place in the set: the file's index and the 1-based line number in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pos {
    file: usize,
    line: u64,
}

/// The lines of a log's files in order, as `BufRead::lines` splits them (`\n`, an optional
/// `\r` before it, a last line without one), each `None` when it is not UTF-8.
struct Lines {
    files: Vec<PathBuf>,
    /// The file being read (its index) and its reader.
    current: usize,
    reader: Option<BufReader<std::fs::File>>,
    /// Lines returned from the current file.
    line: u64,
    buf: Vec<u8>,
    /// Whether the line last returned ended with a newline.
    terminated: bool,
    /// Lines read past the one being judged (by `key_differs`), not yet counted.
    extra: u64,
}

impl Lines {
    fn open(files: Vec<PathBuf>) -> Result<Self> {
        let mut lines = Lines {
            files,
            current: 0,
            reader: None,
            line: 0,
            buf: Vec::new(),
            terminated: true,
            extra: 0,
        };
        lines.open_current()?;
        Ok(lines)
    }

    fn open_current(&mut self) -> Result<()> {
        self.reader = match self.files.get(self.current) {
            Some(path) => Some(BufReader::new(
                std::fs::File::open(path).map_err(|e| read_error(path, e))?,
            )),
            None => None,
        };
        self.line = 0;
        Ok(())
    }

    /// Where the line last returned is.
    fn pos(&self) -> Pos {
        Pos {
            file: self.current,
            line: self.line,
        }
    }

    /// The line after the last one of the last file.
    fn after_last(&self) -> Pos {
        Pos {
            file: self.current.min(self.files.len().saturating_sub(1)),
            line: self.line + 1,
        }
    }

    fn path_of(&self, at: Pos) -> PathBuf {
        self.files.get(at.file).cloned().unwrap_or_default()
    }

    /// `counted` plus the lines read ahead and not yet counted.
    fn counted(&mut self, counted: u64) -> u64 {
        counted + std::mem::take(&mut self.extra)
    }

    /// The next line (`Some(None)`: not text), or `None` at the end of the last file.
    fn next_line(&mut self) -> Result<Option<Option<&str>>> {
        loop {
            let Some(reader) = self.reader.as_mut() else {
                return Ok(None);
            };
            self.buf.clear();
            let n = reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| read_error(&self.files[self.current], e))?;
            if n > 0 {
                break;
            }
            if self.current + 1 >= self.files.len() {
                return Ok(None);
            }
            self.current += 1;
            self.open_current()?;
        }
        self.line += 1;
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

/// Reads the `.head` anchor; a valid one becomes a target of the walk.
fn read_anchor(path: &Path, key: &AuditKey, targets: &mut Vec<Target>) -> Result<Anchor> {
    // Bytes: an anchor that is not UTF-8 is a broken anchor, not a read failure.
    let text = match std::fs::read(head_path(path)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Anchor::Absent),
        Err(e) => return Err(Error::io("reading the audit head file", e)),
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&text) else {
        return Ok(Anchor::Invalid("the .head anchor is not valid JSON"));
    };
    let (Some(seq), Some(hash), Some(mac)) = (
        v.get("seq").and_then(|s| s.as_u64()),
        v.get("hash").and_then(|s| s.as_str()),
        v.get("mac").and_then(|s| s.as_str()),
    ) else {
        return Ok(Anchor::Invalid("the .head anchor lacks seq, hash or mac"));
    };
    if !key.verify_hex(format!("sealbox-audit-head:{seq}:{hash}").as_bytes(), mac) {
        return Ok(Anchor::Invalid("the .head anchor does not verify"));
    }
    targets.push(Target {
        seq,
        hash: hash.to_owned(),
        checkpoint: None,
        found: None,
    });
    Ok(Anchor::Valid)
}
