//! Scanning git history (`sealbox scan --history [--since REF]`): the lines each commit added.
//!
//! `git log -p --unified=0` is read as it streams, one commit and file at a time. The lines a
//! commit added to a file are matched as one text (so a key block added whole is seen whole),
//! and each finding names the commit and the line in that commit's version of the file.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use sealbox::{Error, ErrorKind, Result};

use crate::rules::Rules;
use crate::walk::ScanReport;

/// The lines one commit added to one file.
#[derive(Default)]
struct Added {
    commit: String,
    path: Option<String>,
    text: Vec<u8>,
    /// For each line of `text`, its line number in the commit's file.
    lines: Vec<usize>,
}

/// Scans the commits reachable from HEAD (after `since`, when given) of the repository at
/// `repo`.
pub fn scan_history(
    rules: &Rules,
    repo: &Path,
    since: Option<&str>,
    max_file_size: u64,
) -> Result<ScanReport> {
    let range = match since {
        Some(since) => format!("{since}..HEAD"),
        None => "HEAD".to_owned(),
    };
    let mut child = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args([
            "-c",
            "core.quotepath=off",
            "log",
            "-p",
            "--unified=0",
            "--no-color",
            "--no-ext-diff",
            "--no-renames",
            "--diff-filter=ACM",
            "--format=%x00commit %H",
            &range,
            "--",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("cannot run git for --history: {e}; install git"),
            )
            .with_source(e)
        })?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::internal("git's standard output was not captured"))?;
    let mut report = ScanReport::default();
    let mut current = Added::default();
    let mut next_line: Option<usize> = None;
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::io("reading git log", e))?;
        if n == 0 {
            break;
        }
        let l = line.strip_suffix(b"\n").unwrap_or(&line);
        if let Some(sha) = l.strip_prefix(b"\0commit ") {
            flush(rules, &mut current, &mut report, max_file_size)?;
            current.commit = String::from_utf8_lossy(sha).into_owned();
            next_line = None;
        } else if l.starts_with(b"diff --git ") {
            flush(rules, &mut current, &mut report, max_file_size)?;
            next_line = None;
        } else if let Some(n) = next_line.as_mut() {
            if let Some(added) = l.strip_prefix(b"+") {
                current.text.extend_from_slice(added);
                current.text.push(b'\n');
                current.lines.push(*n);
                *n += 1;
            } else if l.starts_with(b"@@ ") {
                next_line = hunk_start(l);
            }
        } else if let Some(path) = l.strip_prefix(b"+++ b/") {
            current.path = Some(String::from_utf8_lossy(path).into_owned());
        } else if l.starts_with(b"@@ ") {
            next_line = hunk_start(l);
        }
    }
    flush(rules, &mut current, &mut report, max_file_size)?;
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io("waiting for git log", e))?;
    if !out.status.success() {
        return Err(Error::invalid_input(format!(
            "git log in {} failed: {}",
            repo.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    report.sort();
    Ok(report)
}

/// The new-side start line of a hunk header `@@ -a,b +c,d @@`.
fn hunk_start(header: &[u8]) -> Option<usize> {
    header
        .split(|&b| b == b' ')
        .find_map(|part| part.strip_prefix(b"+"))
        .and_then(|new| new.split(|&b| b == b',').next())
        .and_then(|start| std::str::from_utf8(start).ok()?.parse().ok())
}

/// Matches what `current` holds and empties it for the next file (keeping the commit).
fn flush(
    rules: &Rules,
    current: &mut Added,
    report: &mut ScanReport,
    max_file_size: u64,
) -> Result<()> {
    let text = std::mem::take(&mut current.text);
    let lines = std::mem::take(&mut current.lines);
    let Some(path) = current.path.take() else {
        return Ok(());
    };
    if text.is_empty() || rules.path_allowed(Path::new(&path)) {
        return Ok(());
    }
    if text.len() as u64 > max_file_size {
        report.skipped_large += 1;
        return Ok(());
    }
    if memchr::memchr(0, &text).is_some() {
        report.skipped_binary += 1;
        return Ok(());
    }
    report.files_scanned += 1;
    report.bytes_scanned += text.len() as u64;
    for mut f in rules.scan_bytes(&path, &text)? {
        f.line = lines.get(f.line - 1).copied().unwrap_or(f.line);
        f.commit = Some(current.commit.clone());
        report.findings.push(f);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hunk_headers_give_the_new_start_line() {
        assert_eq!(hunk_start(b"@@ -0,0 +1,3 @@"), Some(1));
        assert_eq!(hunk_start(b"@@ -7 +9 @@ fn main()"), Some(9));
    }
}
