//! Env-style files (`.env`, `*.env`, shell scripts): `KEY=value` and `export KEY=value` lines,
//! optionally quoted, whose value becomes `${KEY}`.

use std::path::Path;

use super::{around, rest_is_blank_or_comment};

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

/// `KEY` when the `len` bytes at `offset` are the whole value of a `KEY=value` line (its
/// closing quote, then at most a comment, may follow); `None` for anything else, such as a
/// password inside a URL.
pub(crate) fn assigned_variable(text: &[u8], offset: usize, len: usize) -> Option<String> {
    let (before, after) = around(text, offset, offset + len);
    let prefix = std::str::from_utf8(before).ok()?;
    let p = prefix.trim_start();
    let p = p.strip_prefix("export ").map_or(p, str::trim_start);
    let (p, quote) = match p.strip_suffix(['"', '\'']) {
        Some(rest) => (rest, prefix.as_bytes().last().copied()),
        None => (p, None),
    };
    let key = p.strip_suffix('=')?;
    let ok = !key.is_empty()
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !key.as_bytes()[0].is_ascii_digit();
    let rest = match quote {
        Some(q) => after.strip_prefix(&[q])?,
        None => after,
    };
    (ok && rest_is_blank_or_comment(rest, b"#")).then(|| key.to_owned())
}
