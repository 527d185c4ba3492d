//! `sealbox scan --fix`: rewriting a hard-coded value in an env-style file (`.env`, `*.env`,
//! shell scripts) into a `${VAR}` reference, once the value is in the vault.
//!
//! Only `KEY=value` and `export KEY=value` lines (optionally quoted) are rewritten: there the
//! reference form is unambiguous. Other files are reported and left alone. The original is
//! kept beside the file as `FILE.sealbox-backup` (never overwritten), and the new contents
//! replace the file atomically with the same permissions.

use std::io::Write;
use std::path::{Path, PathBuf};

use sealbox::{Error, ErrorKind, ExposeSecret, Result};
use serde::Serialize;

use crate::finding::{Finding, mask};

/// One planned rewrite of a finding's value.
#[derive(Debug, Clone, Serialize)]
pub struct Edit {
    /// The file.
    pub path: String,
    /// The line.
    pub line: usize,
    /// The variable the value is assigned to (`CLICKHOUSE_PASSWORD`).
    pub variable: String,
    /// What replaces the value (`${CLICKHOUSE_PASSWORD}`).
    pub reference: String,
    #[serde(skip)]
    offset: usize,
    #[serde(skip)]
    len: usize,
}

/// Whether `path` is an env-style file whose assignments take a `${VAR}` reference.
pub fn env_style(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name == ".env"
        || name.starts_with(".env.")
        || [".env", ".sh", ".bash", ".zsh", ".envrc"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

/// The rewrite of `finding` in `text` (the file's contents), if the value sits on a
/// `KEY=value` line of an env-style file and is still where the scan found it.
pub fn plan(finding: &Finding, text: &[u8]) -> Option<Edit> {
    if !env_style(Path::new(&finding.path)) {
        return None;
    }
    let line_start = line_offset(text, finding.line)?;
    let offset = line_start + finding.column - 1;
    let value = finding.value().expose_secret();
    if text.get(offset..offset + value.len())? != value {
        return None;
    }
    let prefix = std::str::from_utf8(&text[line_start..offset]).ok()?;
    let variable = assigned_variable(prefix)?;
    // The value must run to the end of the line or its closing quote: a value inside a longer
    // word (a URL's password) is not a whole assignment.
    let after = text[offset + value.len()..]
        .iter()
        .take_while(|&&b| b != b'\n')
        .copied()
        .collect::<Vec<u8>>();
    let quoted = prefix.ends_with('"') || prefix.ends_with('\'');
    let rest = if quoted {
        after.get(1..).unwrap_or(&[])
    } else {
        &after[..]
    };
    if !rest.iter().all(|b| b.is_ascii_whitespace()) && !rest.trim_ascii_start().starts_with(b"#") {
        return None;
    }
    Some(Edit {
        path: finding.path.clone(),
        line: finding.line,
        reference: format!("${{{variable}}}"),
        variable,
        offset,
        len: value.len(),
    })
}

/// `KEY` of a line prefix `KEY=`, `export KEY="`, ...; `None` for anything else.
fn assigned_variable(prefix: &str) -> Option<String> {
    let p = prefix.trim_start();
    let p = p.strip_prefix("export ").map_or(p, str::trim_start);
    let p = p.strip_suffix(['"', '\'']).unwrap_or(p);
    let key = p.strip_suffix('=')?;
    let ok = !key.is_empty()
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !key.as_bytes()[0].is_ascii_digit();
    ok.then(|| key.to_owned())
}

/// Byte offset where 1-based `line` starts.
fn line_offset(text: &[u8], line: usize) -> Option<usize> {
    if line == 1 {
        return Some(0);
    }
    memchr::memchr_iter(b'\n', text)
        .nth(line - 2)
        .map(|p| p + 1)
}

/// `text` with every edit applied.
pub fn apply(text: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut edits: Vec<&Edit> = edits.iter().collect();
    edits.sort_by_key(|e| e.offset);
    let mut out = Vec::with_capacity(text.len());
    let mut at = 0;
    for e in edits {
        out.extend_from_slice(&text[at..e.offset]);
        out.extend_from_slice(e.reference.as_bytes());
        at = e.offset + e.len;
    }
    out.extend_from_slice(&text[at..]);
    out
}

/// The change as a diff for people: each edited line before (its value masked) and after.
pub fn masked_diff(text: &[u8], edits: &[Edit]) -> String {
    let mut s = String::new();
    for e in edits {
        let Some(start) = line_offset(text, e.line) else {
            continue;
        };
        let end = memchr::memchr(b'\n', &text[start..]).map_or(text.len(), |p| start + p);
        let before = String::from_utf8_lossy(&text[start..e.offset]);
        let after = String::from_utf8_lossy(&text[e.offset + e.len..end]);
        let masked = mask(&text[e.offset..e.offset + e.len]);
        s.push_str(&format!(
            "--- {path}:{line}\n-{before}{masked}{after}\n+{before}{reference}{after}\n",
            path = e.path,
            line = e.line,
            reference = e.reference,
        ));
    }
    s
}

/// Writes `new` over `path`, keeping the original as `path.sealbox-backup` (which must not
/// exist yet). Returns the backup's path.
pub fn rewrite_with_backup(path: &Path, original: &[u8], new: &[u8]) -> Result<PathBuf> {
    let mut backup = path.as_os_str().to_owned();
    backup.push(".sealbox-backup");
    let backup = PathBuf::from(backup);
    let perms = std::fs::metadata(path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
        .permissions();
    let mut b = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&backup)
        .map_err(|e| {
            let kind = if e.kind() == std::io::ErrorKind::AlreadyExists {
                ErrorKind::AlreadyExists
            } else {
                ErrorKind::Io
            };
            Error::new(
                kind,
                format!(
                    "cannot create the backup {}: {e}; move an older backup away first",
                    backup.display()
                ),
            )
        })?;
    b.write_all(original)
        .and_then(|()| b.sync_all())
        .map_err(|e| Error::io(format!("writing {}", backup.display()), e))?;
    std::fs::set_permissions(&backup, perms.clone())
        .map_err(|e| Error::io(format!("setting the mode of {}", backup.display()), e))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".sealbox-tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, new)
        .and_then(|()| std::fs::set_permissions(&tmp, perms))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(format!("rewriting {}", path.display()), e)
        })?;
    Ok(backup)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Rules;

    #[test]
    fn env_assignments_become_references_and_other_shapes_stay() {
        let text = b"HOST=db\nexport DB_PASSWORD=\"Vq3r8TzK2mWxLp7\"\nAPI_TOKEN=Hx4Tq8Lm2Vz6Rk0Pw3Nc7Yb5Gs9Jd1Fa # ci\n\
            URL=postgresql://u:Nc5Hw9Yt2Ra6Km4@db/x\n";
        let rules = Rules::builtin().unwrap();
        let found = rules.scan_bytes("app.env", text).unwrap();
        assert_eq!(found.len(), 3, "{found:?}");
        let edits: Vec<Edit> = found.iter().filter_map(|f| plan(f, text)).collect();
        let vars: Vec<&str> = edits.iter().map(|e| e.variable.as_str()).collect();
        assert_eq!(vars, ["DB_PASSWORD", "API_TOKEN"]);
        assert_eq!(
            apply(text, &edits),
            b"HOST=db\nexport DB_PASSWORD=\"${DB_PASSWORD}\"\nAPI_TOKEN=${API_TOKEN} # ci\n\
              URL=postgresql://u:Nc5Hw9Yt2Ra6Km4@db/x\n"
        );
        let diff = masked_diff(text, &edits);
        assert!(diff.contains("-export DB_PASSWORD=\"Vq3…\""), "{diff}");
        assert!(
            diff.contains("+export DB_PASSWORD=\"${DB_PASSWORD}\""),
            "{diff}"
        );
        assert!(!diff.contains("Vq3r8TzK"), "{diff}");
        // A Python file has no env reference form.
        let py = rules
            .scan_bytes("db.py", b"password = \"Vq3r8TzK2mWxLp7\"\n")
            .unwrap();
        assert!(plan(&py[0], b"password = \"Vq3r8TzK2mWxLp7\"\n").is_none());
    }

    #[test]
    fn the_backup_keeps_the_original_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, b"A=1\n").unwrap();
        let backup = rewrite_with_backup(&path, b"A=1\n", b"A=${A}\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"A=${A}\n");
        assert_eq!(std::fs::read(&backup).unwrap(), b"A=1\n");
        let e = rewrite_with_backup(&path, b"A=${A}\n", b"A=2\n").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&backup).unwrap(), b"A=1\n");
        assert_eq!(std::fs::read(&path).unwrap(), b"A=${A}\n");
    }
}
