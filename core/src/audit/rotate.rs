//! Rotation and retention of an audit file, and the set of files one log is made of.
//!
//! A log at `PATH` is the active file `PATH` plus the files rotated out of it, each named
//! `PATH.NNNNNNNNNNNNNNNNNNNN`: the seq of its last line, in 20 digits, so the names sort in
//! chain order. Rotation happens under the active file's lock, when a writer is about to write
//! a batch: it renames the file (whole lines only: never while it ends in a cut-off fragment),
//! and the next batch, in a new file at `PATH`, starts with a signed `audit.rotated` line that
//! continues the chain from the rotated file's last line (seq and hash) and names that file.
//! `seq` runs on across files, so the set verifies as one chain, and the `.head` anchor and
//! published checkpoints (which name a seq and its hash) keep their meaning.
//!
//! Other writers (sibling processes) notice a rotation when they take the lock: a writer
//! checks, after locking, that the file at `PATH` is still the one it has open (device and
//! inode) and otherwise reopens `PATH` and locks again; a writer that finds `PATH` empty
//! continues the chain from the newest rotated file. Whoever writes first into the new file
//! writes the `audit.rotated` line.
//!
//! Retention runs right after a rotation, under the same lock: the oldest rotated files past
//! `retain_files`, or last written more than `retain_days` ago, are deleted, and first the
//! retention record `PATH.retention` (MACed with the chain key) says where the kept chain now
//! starts (seq and previous hash), so that verification accepts that first file's link as a
//! retention cut. A file removed by hand, in the middle or at the start, is still reported.

use std::io::{self, BufRead, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::chain::{AuditKey, ChainHead};
use crate::error::{Error, Result};

/// Digits of the seq in a rotated file's name.
const SEQ_DIGITS: usize = 20;

/// When the file sink rotates its file and how many rotated files it keeps. All off by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate once the file holds this many bytes (it may pass it by one batch).
    pub size: Option<u64>,
    /// Rotate when the time crosses a multiple of this period since 1970 (UTC), counted from
    /// the file's first line: `1d` rotates at midnight UTC.
    pub every: Option<Duration>,
    /// Keep at most this many rotated files (besides the active one).
    pub retain_files: Option<usize>,
    /// Delete rotated files last written longer ago than this.
    pub retain_for: Option<Duration>,
}

impl Rotation {
    /// Whether the file is ever rotated.
    pub fn is_on(&self) -> bool {
        self.size.is_some() || self.every.is_some()
    }

    /// Whether a file of `len` bytes whose first line is dated `started` is due at `now`.
    pub(crate) fn due(&self, len: u64, started: Option<SystemTime>, now: SystemTime) -> bool {
        if len == 0 {
            return false;
        }
        if self.size.is_some_and(|s| len >= s) {
            return true;
        }
        match (self.every, started) {
            (Some(every), Some(started)) if !every.is_zero() => {
                period(started, every) < period(now, every)
            }
            _ => false,
        }
    }
}

fn period(t: SystemTime, every: Duration) -> u128 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
        / every.as_nanos()
}

/// The name a file whose last line has `last_seq` gets when rotated out of `active`.
pub(crate) fn rotated_path(active: &Path, last_seq: u64) -> PathBuf {
    let mut p = active.as_os_str().to_owned();
    p.push(format!(".{last_seq:0SEQ_DIGITS$}"));
    PathBuf::from(p)
}

/// The files rotated out of `active`, oldest first.
pub(crate) fn rotated_files(active: &Path) -> io::Result<Vec<PathBuf>> {
    let dir = parent(active);
    let Some(base) = active.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if rotated_base(name) == Some(base) {
            found.push(entry.path());
        }
    }
    // Fixed-width seqs: the names sort in chain order.
    found.sort();
    Ok(found)
}

/// `BASE` when `name` is `BASE.` followed by a rotated file's seq.
fn rotated_base(name: &str) -> Option<&str> {
    let (base, seq) = name.rsplit_once('.')?;
    (seq.len() == SEQ_DIGITS && seq.bytes().all(|b| b.is_ascii_digit()) && !base.is_empty())
        .then_some(base)
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The files of the log `path` names, in chain order, and its active file: `path` is the
/// active file (its rotated files are found beside it) or a directory holding one log.
pub fn log_files(path: &Path) -> Result<(PathBuf, Vec<PathBuf>)> {
    let active = if path.is_dir() {
        active_in(path)?
    } else {
        path.to_owned()
    };
    let mut files = rotated_files(&active).map_err(|e| {
        Error::io(
            format!("listing the audit files of {}", active.display()),
            e,
        )
    })?;
    if active.exists() || files.is_empty() {
        files.push(active.clone());
    }
    Ok((active, files))
}

/// The one log in `dir`: the active file name its rotated files and side files share.
fn active_in(dir: &Path) -> Result<PathBuf> {
    let listing =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    let mut bases: Vec<String> = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let base = match rotated_base(name) {
            Some(b) => b,
            None if [".head", ".key", ".retention", ".tmp"]
                .iter()
                .any(|s| name.ends_with(s)) =>
            {
                continue;
            }
            None if entry.path().is_file() => name,
            None => continue,
        };
        if !bases.iter().any(|b| b == base) {
            bases.push(base.to_owned());
        }
    }
    // A log has an anchor or rotated files; other files beside it (a config) are not logs.
    let logs: Vec<&String> = bases
        .iter()
        .filter(|b| {
            dir.join(format!("{b}.head")).exists()
                || rotated_files(&dir.join(b)).is_ok_and(|r| !r.is_empty())
        })
        .collect();
    if let [one] = logs.as_slice() {
        return Ok(dir.join(one));
    }
    match bases.as_slice() {
        [one] => Ok(dir.join(one)),
        [] => Err(Error::new(
            crate::ErrorKind::NotFound,
            format!("no audit log in {}", dir.display()),
        )),
        many => Err(Error::invalid_input(format!(
            "{} holds several audit logs ({}); name the active file of the one to verify",
            dir.display(),
            many.join(", ")
        ))),
    }
}

/// The retention record beside `active`.
pub(crate) fn retention_path(active: &Path) -> PathBuf {
    let mut p = active.as_os_str().to_owned();
    p.push(".retention");
    PathBuf::from(p)
}

fn retention_mac_input(seq: u64, prev_hash: &str) -> String {
    format!("sealbox-audit-retention:{seq}:{prev_hash}")
}

/// Where the kept chain starts after retention deleted older files (seq, previous hash), when
/// the record is there and verifies under `key`.
pub(crate) fn read_retention(active: &Path, key: &AuditKey) -> Option<ChainHead> {
    let text = std::fs::read(retention_path(active)).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&text).ok()?;
    let seq = v.get("seq")?.as_u64()?;
    let prev = v.get("prev_hash")?.as_str()?;
    let mac = v.get("mac")?.as_str()?;
    key.verify_hex(retention_mac_input(seq, prev).as_bytes(), mac)
        .then(|| ChainHead {
            next_seq: seq,
            prev_hash: prev.to_owned(),
        })
}

/// Deletes the rotated files of `active` that `rotation` no longer keeps (the oldest), after
/// recording where the kept chain starts. Called under the active file's lock. `last_head`
/// reads where the chain stands after a file (its last line's seq + 1 and hash).
pub(crate) fn retain(
    active: &Path,
    rotation: &Rotation,
    key: &AuditKey,
    sync: bool,
    last_head: &dyn Fn(&Path) -> io::Result<ChainHead>,
) -> io::Result<()> {
    if rotation.retain_files.is_none() && rotation.retain_for.is_none() {
        return Ok(());
    }
    let files = rotated_files(active)?;
    let by_count = rotation
        .retain_files
        .map_or(0, |keep| files.len().saturating_sub(keep));
    let by_age = match rotation.retain_for {
        Some(age) => {
            let now = SystemTime::now();
            files
                .iter()
                .take_while(|f| {
                    std::fs::metadata(f)
                        .and_then(|m| m.modified())
                        .is_ok_and(|t| now.duration_since(t).is_ok_and(|d| d > age))
                })
                .count()
        }
        None => 0,
    };
    let drop = by_count.max(by_age);
    let Some(last_dropped) = drop.checked_sub(1).map(|i| &files[i]) else {
        return Ok(());
    };
    let start = last_head(last_dropped)?;
    write_retention(active, key, &start, &files[..drop], sync)?;
    for f in &files[..drop] {
        std::fs::remove_file(f)?;
    }
    if sync {
        sync_dir(active)?;
    }
    Ok(())
}

fn write_retention(
    active: &Path,
    key: &AuditKey,
    start: &ChainHead,
    removed: &[PathBuf],
    sync: bool,
) -> io::Result<()> {
    let path = retention_path(active);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mac = key.mac_hex(retention_mac_input(start.next_seq, &start.prev_hash).as_bytes());
    let last_removed = removed
        .last()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let record = serde_json::json!({
        "seq": start.next_seq,
        "prev_hash": start.prev_hash,
        "removed_through": last_removed,
        "time": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        "mac": mac,
    });
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        writeln!(f, "{record}")?;
        if sync {
            f.sync_data()?;
        }
    }
    std::fs::rename(&tmp, &path)
}

/// Makes a rename or delete in `path`'s directory durable.
pub(crate) fn sync_dir(path: &Path) -> io::Result<()> {
    std::fs::File::open(parent(path))?.sync_all()
}

/// The first line's seq, previous hash and time, when the file starts with a readable line.
pub(crate) fn first_line(path: &Path) -> io::Result<Option<(u64, String, Option<SystemTime>)>> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut line = Vec::new();
    // Lines are well under 64 KiB; a longer one is not a log line.
    io::BufReader::new(file)
        .take(1 << 16)
        .read_until(b'\n', &mut line)?;
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(line.trim_ascii_end()) else {
        return Ok(None);
    };
    let (Some(seq), Some(prev)) = (
        v.get("seq").and_then(|s| s.as_u64()),
        v.get("prev_hash").and_then(|s| s.as_str()),
    ) else {
        return Ok(None);
    };
    let time = v
        .get("timestamp")
        .and_then(|t| t.as_str())
        .and_then(|t| humantime::parse_rfc3339(t).ok());
    Ok(Some((seq, prev.to_owned(), time)))
}

/// A size as a number of bytes or a string with a unit (`64MiB`, `500MB`, `1GiB`, `10k`).
pub(crate) fn deserialize_size<'de, D>(d: D) -> std::result::Result<Option<u64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::Deserialize;
    use serde::de::Error as _;
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Option::<Size>::deserialize(d)? {
        None => Ok(None),
        Some(Size::Bytes(b)) => Ok(Some(b)),
        Some(Size::Text(t)) => parse_size(&t).map(Some).ok_or_else(|| {
            D::Error::custom(format!(
                "`{t}` is not a size: write bytes (1048576) or a number and a unit (64MiB, 500MB, 1GiB)"
            ))
        }),
    }
}

fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let unit = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(unit)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_with_and_without_units() {
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_size("500 MB"), Some(500_000_000));
        assert_eq!(parse_size("1gib"), Some(1 << 30));
        assert_eq!(parse_size("12 parsecs"), None);
        assert_eq!(parse_size("MiB"), None);
    }

    use super::*;

    #[test]
    fn rotated_names_sort_in_chain_order_and_name_their_base() {
        let a = rotated_path(Path::new("/x/audit.jsonl"), 9);
        let b = rotated_path(Path::new("/x/audit.jsonl"), 10);
        assert!(a < b);
        let name = b.file_name().unwrap().to_str().unwrap();
        assert_eq!(name, "audit.jsonl.00000000000000000010");
        assert_eq!(rotated_base(name), Some("audit.jsonl"));
        assert_eq!(rotated_base("audit.jsonl.head"), None);
        assert_eq!(rotated_base("audit.jsonl"), None);
    }

    #[test]
    fn a_file_is_due_by_size_or_when_time_crosses_a_period() {
        let r = Rotation {
            size: Some(100),
            every: Some(Duration::from_secs(86_400)),
            ..Rotation::default()
        };
        let day = |d: u64, h: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(d * 86_400 + h);
        assert!(!r.due(0, Some(day(1, 0)), day(5, 0)), "an empty file stays");
        assert!(r.due(100, Some(day(1, 5)), day(1, 6)));
        assert!(!r.due(99, Some(day(1, 5)), day(1, 86_399)));
        assert!(r.due(99, Some(day(1, 86_399)), day(2, 0)), "midnight UTC");
    }
}
