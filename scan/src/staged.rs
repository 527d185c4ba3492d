//! Scanning what is staged for the next commit (`sealbox scan --staged`, the pre-commit hook).
//!
//! Each staged file is matched whole, as it is in the index (so a rule that needs context, such
//! as a service-account JSON whose `"type"` line did not change, still sees it), and a finding
//! is kept only when its value touches a line the commit adds. Git is asked through its own
//! command (`git diff --cached`, `git cat-file`): it is there wherever a commit is being made,
//! and it knows the repository's configuration (worktrees, alternates, attributes) exactly.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use sealbox::{Error, ErrorKind, ExposeSecret, Result};

use crate::rules::Rules;
use crate::walk::{Content, ScanReport, classify};

/// Scans the changes staged in the git repository at (or above) `repo`.
pub fn scan_staged(rules: &Rules, repo: &Path, max_file_size: u64) -> Result<ScanReport> {
    let names = git(
        repo,
        &[
            "diff",
            "--cached",
            "--name-only",
            "-z",
            "--no-renames",
            "--diff-filter=ACM",
        ],
    )?;
    let mut report = ScanReport::default();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        if rules.path_allowed(Path::new(&name)) {
            continue;
        }
        let blob = git(repo, &["cat-file", "blob", &format!(":{name}")])?;
        if blob.len() as u64 > max_file_size {
            report.skipped_large += 1;
            continue;
        }
        let text = match classify(blob) {
            Content::Text(t) => t,
            Content::Binary => {
                report.skipped_binary += 1;
                continue;
            }
            Content::TooLarge => continue,
        };
        report.files_scanned += 1;
        report.bytes_scanned += text.len() as u64;
        let diff = git(
            repo,
            &[
                "diff",
                "--cached",
                "--unified=0",
                "--no-color",
                "--no-ext-diff",
                "--no-renames",
                "--",
                &format!(":(top,literal){name}"),
            ],
        )?;
        let added = added_lines(&diff);
        for f in rules.scan_bytes(&name, &text)? {
            let last = f.line + memchr::memchr_iter(b'\n', f.value().expose_secret()).count();
            if added.range(f.line..=last).next().is_some() {
                report.findings.push(f);
            }
        }
    }
    report.sort();
    Ok(report)
}

/// The line numbers (in the new file) that a `--unified=0` diff adds.
pub(crate) fn added_lines(diff: &[u8]) -> BTreeSet<usize> {
    let mut added = BTreeSet::new();
    let mut next: Option<usize> = None;
    for line in diff.split(|&b| b == b'\n') {
        if let Some(rest) = line.strip_prefix(b"@@ ") {
            // `@@ -a,b +c,d @@`: the new side starts at line c.
            next = rest
                .split(|&b| b == b' ')
                .find_map(|part| part.strip_prefix(b"+"))
                .and_then(|new| new.split(|&b| b == b',').next())
                .and_then(|start| std::str::from_utf8(start).ok()?.parse().ok());
        } else if let Some(n) = next.as_mut() {
            if line.starts_with(b"+") {
                added.insert(*n);
                *n += 1;
            } else if !line.starts_with(b"-") && !line.starts_with(b"\\") {
                // Context (none with --unified=0) or the next file's header.
                next = None;
            }
        }
    }
    added
}

/// Runs `git -C repo ARGS` and returns its standard output.
pub(crate) fn git(repo: &Path, args: &[&str]) -> Result<Vec<u8>> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("cannot run git: {e}; install git, or scan paths instead"),
            )
            .with_source(e)
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(Error::invalid_input(format!(
            "git {} in {} failed: {}",
            args.first().copied().unwrap_or(""),
            repo.display(),
            stderr.trim()
        )));
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_lines_follow_the_hunk_headers() {
        let diff = b"diff --git a/x b/x\nindex 1..2 100644\n--- a/x\n+++ b/x\n\
            @@ -3 +3,2 @@\n-old\n+new three\n+new four\n@@ -10,0 +12 @@\n+twelve\n";
        let got: Vec<usize> = added_lines(diff).into_iter().collect();
        assert_eq!(got, [3, 4, 12]);
    }
}
