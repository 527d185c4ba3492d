//! YAML and JSON config files: a value that is a whole string scalar of a mapping key becomes a
//! sealbox reference. The key's path (`spring.datasource.password`) names the value; it is
//! found by reading the lines above (YAML indentation) or the document before it (JSON
//! nesting), never by re-serialising the file, so nothing else in it changes.

use std::path::Path;

use super::{around, rest_is_blank_or_comment};

fn extension(path: &Path) -> String {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Whether `path` is a YAML file.
pub fn yaml(path: &Path) -> bool {
    matches!(extension(path).as_str(), "yaml" | "yml")
}

/// Whether `path` is a JSON file.
pub fn json(path: &Path) -> bool {
    extension(path) == "json"
}

/// The key path (`app.gitlab.token`) when the `len` bytes at `offset` are the whole scalar of
/// a block mapping's `KEY: value` line, plain or quoted, followed by at most a comment.
/// A quoted value with an escape or its own quote in it is refused: its bytes in the file are
/// not the string YAML reads.
pub(crate) fn yaml_key(text: &[u8], offset: usize, len: usize) -> Option<String> {
    let (before, after) = around(text, offset, offset + len);
    let before = std::str::from_utf8(before).ok()?;
    let value = &text[offset..offset + len];
    let (head, rest) = match before.as_bytes().last() {
        Some(&q @ (b'"' | b'\'')) => {
            if value.contains(&q) || (q == b'"' && value.contains(&b'\\')) {
                return None;
            }
            (&before[..before.len() - 1], after.strip_prefix(&[q])?)
        }
        _ => {
            // A plain scalar ends at the line's end or at ` #`.
            if !after.is_empty() && !after[0].is_ascii_whitespace() {
                return None;
            }
            (before, after)
        }
    };
    if !rest_is_blank_or_comment(rest, b"#") {
        return None;
    }
    // `KEY:` then at least one blank: a plain `a:b` is a scalar, not a mapping.
    let colon = head.trim_end_matches([' ', '\t']);
    if colon.len() == head.len() {
        return None;
    }
    let (indent, key) = key_of(colon.strip_suffix(':')?)?;
    let mut path = vec![key];
    let line_start = offset - before.len();
    let mut limit = indent;
    for line in text[..line_start].split(|&b| b == b'\n').rev() {
        if limit == 0 {
            break;
        }
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let line = line.trim_end_matches('\r');
        let body = line.trim_start();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        // A parent is a `KEY:` line less indented, whose value is the block below (nothing,
        // or an anchor).
        let Some((head, tail)) = line
            .split_once(": ")
            .or_else(|| line.strip_suffix(':').map(|h| (h, "")))
        else {
            continue;
        };
        let Some((at, key)) = key_of(head) else {
            continue;
        };
        let tail = tail.trim();
        if at < limit && (tail.is_empty() || tail.starts_with('&') || tail.starts_with('#')) {
            path.push(key);
            limit = at;
        }
    }
    path.reverse();
    Some(path.join("."))
}

/// The indentation and key of a mapping line's part before its colon: `  - name` gives
/// (4, "name"); quoted keys are unquoted. `None` for anything that is not a simple key.
fn key_of(head: &str) -> Option<(usize, String)> {
    let mut indent = head.len() - head.trim_start_matches(' ').len();
    let mut key = &head[indent..];
    while let Some(rest) = key.strip_prefix("- ") {
        let more = rest.len() - rest.trim_start_matches(' ').len();
        indent += 2 + more;
        key = &rest[more..];
    }
    let key = match key.as_bytes().first()? {
        b'"' | b'\'' => {
            let q = &key[..1];
            key.strip_prefix(q)?.strip_suffix(q)?
        }
        _ => key,
    };
    let simple = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/' | b' '));
    simple.then(|| (indent, key.to_owned()))
}

/// The key path (`AzureAd.ClientSecret`) when the `len` bytes at `offset` are the whole string
/// value of an object member. A string with an escape in it is refused: its bytes in the file
/// are not the string JSON reads.
pub(crate) fn json_key(text: &[u8], offset: usize, len: usize) -> Option<String> {
    let open = offset.checked_sub(1)?;
    let close = offset + len;
    if text[open] != b'"' || text.get(close) != Some(&b'"') || text[offset..close].contains(&b'\\')
    {
        return None;
    }
    let next = text[close + 1..].iter().find(|b| !b.is_ascii_whitespace());
    if !matches!(next, Some(b',' | b'}')) {
        return None;
    }
    // Walk the document up to the value's opening quote, keeping, for each open container,
    // the key of its member being read (arrays have none).
    let mut frames: Vec<Option<String>> = Vec::new();
    let mut i = 0;
    let mut last_key_pending = false;
    while i < open {
        match text[i] {
            b'"' => {
                let end = string_end(text, i)?;
                if end > open {
                    return None;
                }
                let after = text[end + 1..]
                    .iter()
                    .position(|b| !b.is_ascii_whitespace());
                if after.is_some_and(|p| text[end + 1 + p] == b':') {
                    let key: String = serde_json::from_slice(&text[i..=end]).ok()?;
                    *frames.last_mut()? = Some(key);
                    last_key_pending = true;
                } else {
                    last_key_pending = false;
                }
                i = end + 1;
            }
            b'{' => {
                frames.push(None);
                i += 1;
            }
            b'[' => {
                frames.push(None);
                i += 1;
            }
            b'}' | b']' => {
                frames.pop()?;
                i += 1;
            }
            b',' => {
                last_key_pending = false;
                i += 1;
            }
            _ => i += 1,
        }
    }
    // The value must be what the last key names: `"key": "value"`, not an array element.
    let between = text[..open].trim_ascii_end();
    if !last_key_pending || !between.ends_with(b":") {
        return None;
    }
    let path: Vec<String> = frames.into_iter().flatten().collect();
    (!path.is_empty()).then(|| path.join("."))
}

/// The index of the quote closing the string that opens at `start`.
fn string_end(text: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < text.len() {
        match text[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}
