//! Scanning directory trees with ripgrep's walker (`ignore`): .gitignore and friends, hidden
//! files included (`.env` is where credentials hide) but never `.git/`, binary files and
//! oversized files skipped, files read and matched on every core.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use ignore::{WalkBuilder, WalkState};
use sealbox::Result;
use serde::Serialize;

use crate::finding::Finding;
use crate::rules::Rules;

/// How much of a file is looked at to decide it is binary (as git and ripgrep do: a NUL byte).
const BINARY_PROBE: usize = 8 * 1024;

/// Walk settings.
#[derive(Debug, Clone)]
pub struct WalkOptions {
    /// Also scan files that .gitignore, .ignore and git's excludes leave out.
    pub no_ignore: bool,
    /// Files larger than this are skipped (and counted).
    pub max_file_size: u64,
    /// Walker threads (0: one per core).
    pub threads: usize,
}

impl Default for WalkOptions {
    fn default() -> Self {
        WalkOptions {
            no_ignore: false,
            max_file_size: 16 * 1024 * 1024,
            threads: 0,
        }
    }
}

/// What a scan found and what it looked at.
#[derive(Debug, Default, Serialize)]
pub struct ScanReport {
    /// Findings, sorted by path then position.
    pub findings: Vec<Finding>,
    /// Files read and matched.
    pub files_scanned: u64,
    /// Bytes read and matched.
    pub bytes_scanned: u64,
    /// Files skipped as binary.
    pub skipped_binary: u64,
    /// Files skipped as larger than the limit.
    pub skipped_large: u64,
    /// Files or directories that could not be read: the scan is incomplete.
    pub errors: Vec<String>,
}

impl ScanReport {
    /// Sorts findings by path, then position, so output is stable whatever the thread order.
    pub fn sort(&mut self) {
        self.findings
            .sort_by(|a, b| (&a.path, a.line, a.column).cmp(&(&b.path, b.line, b.column)));
    }
}

/// Outcome of looking at one file's bytes.
pub(crate) enum Content {
    /// Text to match.
    Text(Vec<u8>),
    /// Contains a NUL byte near the start.
    Binary,
    /// Over the size limit.
    TooLarge,
}

/// Reads `path` unless it is too large or binary.
pub(crate) fn read_text(path: &Path, max: u64) -> std::io::Result<Content> {
    let meta = std::fs::metadata(path)?;
    if meta.len() > max {
        return Ok(Content::TooLarge);
    }
    let bytes = std::fs::read(path)?;
    Ok(classify(bytes))
}

pub(crate) fn classify(bytes: Vec<u8>) -> Content {
    if memchr::memchr(0, &bytes[..bytes.len().min(BINARY_PROBE)]).is_some() {
        Content::Binary
    } else {
        Content::Text(bytes)
    }
}

/// Scans every file under `paths` (files or directories) in parallel.
pub fn scan_paths(rules: &Rules, paths: &[PathBuf], options: &WalkOptions) -> Result<ScanReport> {
    let Some((first, rest)) = paths.split_first() else {
        return Ok(ScanReport::default());
    };
    let mut builder = WalkBuilder::new(first);
    for p in rest {
        builder.add(p);
    }
    builder
        .hidden(false)
        .require_git(false)
        .git_ignore(!options.no_ignore)
        .git_exclude(!options.no_ignore)
        .git_global(!options.no_ignore)
        .ignore(!options.no_ignore)
        .parents(!options.no_ignore)
        .threads(options.threads)
        .filter_entry(|e| e.file_name() != ".git");

    let shared = Shared {
        rules,
        max_file_size: options.max_file_size,
        findings: Mutex::new(Vec::new()),
        errors: Mutex::new(Vec::new()),
        failure: Mutex::new(None),
        files: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        binary: AtomicU64::new(0),
        large: AtomicU64::new(0),
    };
    builder.build_parallel().run(|| {
        let shared = &shared;
        Box::new(move |entry| shared.visit(entry))
    });
    if let Some(e) = into_inner(shared.failure) {
        return Err(e);
    }
    let mut report = ScanReport {
        findings: into_inner(shared.findings),
        files_scanned: shared.files.into_inner(),
        bytes_scanned: shared.bytes.into_inner(),
        skipped_binary: shared.binary.into_inner(),
        skipped_large: shared.large.into_inner(),
        errors: into_inner(shared.errors),
    };
    report.sort();
    report.errors.sort();
    Ok(report)
}

/// What the walker threads share.
struct Shared<'a> {
    rules: &'a Rules,
    max_file_size: u64,
    findings: Mutex<Vec<Finding>>,
    errors: Mutex<Vec<String>>,
    failure: Mutex<Option<sealbox::Error>>,
    files: AtomicU64,
    bytes: AtomicU64,
    binary: AtomicU64,
    large: AtomicU64,
}

impl Shared<'_> {
    fn visit(&self, entry: std::result::Result<ignore::DirEntry, ignore::Error>) -> WalkState {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                lock(&self.errors).push(e.to_string());
                return WalkState::Continue;
            }
        };
        if !entry.file_type().is_some_and(|t| t.is_file()) || self.rules.path_allowed(entry.path())
        {
            return WalkState::Continue;
        }
        let path = entry.path();
        match read_text(path, self.max_file_size) {
            Err(e) => lock(&self.errors).push(format!("{}: {e}", path.display())),
            Ok(Content::Binary) => {
                self.binary.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Content::TooLarge) => {
                self.large.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Content::Text(text)) => {
                self.files.fetch_add(1, Ordering::Relaxed);
                self.bytes.fetch_add(text.len() as u64, Ordering::Relaxed);
                match self.rules.scan_bytes(&path.display().to_string(), &text) {
                    Ok(found) => lock(&self.findings).extend(found),
                    Err(e) => {
                        *lock(&self.failure) = Some(e);
                        return WalkState::Quit;
                    }
                }
            }
        }
        WalkState::Continue
    }
}

fn into_inner<T>(m: Mutex<T>) -> T {
    m.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// Locks `m`, carrying on past a poisoned lock (a panicking walker thread leaves plain data).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(root: &Path, rel: &str, body: &[u8]) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, body).unwrap();
    }

    #[test]
    fn walks_hidden_files_honours_gitignore_and_skips_binaries_and_dot_git() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let key = b"aws_access_key_id = AKIAZQ37TMKXWKO5AZE6\n";
        write(root, ".env", key);
        write(root, "src/settings.py", key);
        write(root, "build/out.txt", key);
        write(root, ".gitignore", b"build/\n");
        write(root, ".git/config", key);
        let mut binary = key.to_vec();
        binary.push(0);
        write(root, "img.bin", &binary);
        let rules = Rules::builtin().unwrap();
        let report = scan_paths(&rules, &[root.to_path_buf()], &WalkOptions::default()).unwrap();
        let mut paths: Vec<String> = report
            .findings
            .iter()
            .map(|f| {
                Path::new(&f.path)
                    .strip_prefix(root)
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        paths.sort();
        assert_eq!(paths, [".env", "src/settings.py"]);
        assert_eq!(report.skipped_binary, 1);
        assert!(report.errors.is_empty(), "{:?}", report.errors);

        let all = WalkOptions {
            no_ignore: true,
            ..WalkOptions::default()
        };
        let report = scan_paths(&rules, &[root.to_path_buf()], &all).unwrap();
        assert_eq!(report.findings.len(), 3);
    }

    #[test]
    fn oversized_files_are_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "big.txt",
            &b"token = AKIAZQ37TMKXWKO5AZE6\n".repeat(100),
        );
        let options = WalkOptions {
            max_file_size: 1024,
            ..WalkOptions::default()
        };
        let rules = Rules::builtin().unwrap();
        let report = scan_paths(&rules, &[dir.path().to_path_buf()], &options).unwrap();
        assert!(report.findings.is_empty());
        assert_eq!(report.skipped_large, 1);
    }
}
