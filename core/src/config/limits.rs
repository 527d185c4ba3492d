//! Bounds on what the YAML parser is given: the file's size and its nesting depth.
//!
//! A config file is a few kilobytes. Without a cap, `--config /dev/zero` reads until memory
//! runs out; without a depth bound, the parser's time grows with the square of the nesting
//! (50,000 unclosed `[` in 100 kB took 20 s). Both are checked before any YAML is parsed.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// The largest config accepted, in bytes.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// The deepest nesting accepted (flow `[`/`{` plus block indentation levels). Real configs
/// use under ten.
pub const MAX_CONFIG_DEPTH: usize = 64;

/// Reads at most [`MAX_CONFIG_BYTES`] + 1 bytes of `path`, so that devices, FIFOs and files
/// that grow while read are bounded too (the size `stat` reports is never trusted).
pub(crate) fn read_capped(path: &Path) -> Result<String> {
    let shown = path.display();
    let file = std::fs::File::open(path)
        .map_err(|e| Error::config(format!("cannot read config file {shown}: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::config(format!("cannot read config file {shown}: {e}")))?;
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(too_large(&format!("config file {shown}")));
    }
    String::from_utf8(bytes)
        .map_err(|_| Error::config(format!("config file {shown} is not UTF-8 text")))
}

fn too_large(what: &str) -> Error {
    Error::config(format!(
        "{what} is larger than {} MiB, the most sealbox reads; a config is a few kilobytes, so \
         check that this is the right file",
        MAX_CONFIG_BYTES >> 20
    ))
}

/// Refuses text over the size cap or nested deeper than [`MAX_CONFIG_DEPTH`].
pub(crate) fn check(text: &str) -> Result<()> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(too_large("the config"));
    }
    if let Some(line) = too_deep(text, MAX_CONFIG_DEPTH) {
        return Err(Error::config(format!(
            "the config nests more than {MAX_CONFIG_DEPTH} levels deep (at line {line}); \
             sealbox configs need a handful"
        )));
    }
    Ok(())
}

/// The line at which `text` first nests deeper than `max`, if it does.
///
/// A linear scan that over-approximates what the parser will build: every `[`/`{` outside a
/// quoted scalar or comment opens a level (inside a block-context plain scalar they do not,
/// but counting them costs only a false refusal of text no config contains), and each block
/// indentation step or compact `- ` / `? ` entry is one more. Quoted scalars (a quote where a
/// node starts: after `: `, `- `, `? `, a tag or anchor, or `[`/`{`/`,` in flow) and comments
/// are skipped so that brackets in them are not counted.
fn too_deep(text: &str, max: usize) -> Option<usize> {
    let mut flow = 0usize;
    let mut indents: Vec<usize> = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut line = 1;
    let mut line_start = true;
    // Whether a node starts here, so that a quote opens a quoted scalar (not mid-scalar).
    let mut value_start = true;
    while i < bytes.len() {
        if line_start {
            line_start = false;
            let indent = bytes[i..].iter().take_while(|b| **b == b' ').count();
            let rest = &bytes[i + indent..];
            let blank = rest
                .first()
                .is_none_or(|b| matches!(b, b'\n' | b'\r' | b'#'));
            if flow == 0 && !blank {
                while indents.last().is_some_and(|top| *top > indent) {
                    indents.pop();
                }
                if indents.last() != Some(&indent) {
                    indents.push(indent);
                }
                // `- - - x` and `? ` nest on one line: each indicator is another level.
                let mut col = indent;
                let mut j = 0;
                while j + 1 < rest.len()
                    && matches!(rest[j], b'-' | b'?')
                    && matches!(rest[j + 1], b' ')
                {
                    col += 2;
                    j += 2;
                    indents.push(col);
                }
                if indents.len() > max {
                    return Some(line);
                }
            }
            i += indent;
            value_start = true;
            continue;
        }
        match bytes[i] {
            b'\n' => {
                line += 1;
                line_start = true;
                i += 1;
                continue;
            }
            b'#' if i == 0 || matches!(bytes[i - 1], b' ' | b'\t' | b'\n') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' if value_start => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    if bytes.get(i) == Some(&b'\n') {
                        line += 1;
                    }
                    i += 1;
                }
            }
            b'\'' if value_start => {
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == b'\'' {
                        if bytes.get(i + 1) == Some(&b'\'') {
                            i += 1;
                        } else {
                            break;
                        }
                    } else if bytes[i] == b'\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
            b'[' | b'{' => {
                flow += 1;
                if flow + indents.len() > max {
                    return Some(line);
                }
            }
            b']' | b'}' => flow = flow.saturating_sub(1),
            _ => {}
        }
        if i >= bytes.len() {
            break; // an unterminated quote runs to the end; the parser reports it
        }
        let next_is_space = bytes
            .get(i + 1)
            .is_none_or(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
        value_start = match bytes[i] {
            b'[' | b'{' => true,
            b',' => flow > 0,
            b' ' | b'\t' => value_start,
            b':' => next_is_space,
            // `- ` and `? ` open a node only where a node could start already
            b'-' | b'?' => value_start && next_is_space,
            // a tag or anchor before a node leaves it at its start
            b'!' | b'&' if value_start => {
                while bytes
                    .get(i + 1)
                    .is_some_and(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
                {
                    i += 1;
                }
                true
            }
            _ => false,
        };
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::too_deep;

    #[test]
    fn counts_flow_and_block_levels_but_not_quoted_brackets() {
        // the top-level mapping is a level too
        assert_eq!(too_deep("a: [[[1]]]\n", 4), None);
        assert_eq!(too_deep("a: [[[[1]]]]\n", 4), Some(1));
        assert_eq!(too_deep("a:\n  b:\n    c:\n      d: 1\n", 3), Some(4));
        assert_eq!(too_deep("a:\n  b:\n    c: 1\n", 3), None);
        assert_eq!(too_deep("- - - - x\n", 3), Some(1));
        assert_eq!(too_deep("a: \"[[[[[[\"\nb: '{{{{{{'\n", 2), None);
        assert_eq!(too_deep("a: 1 # [[[[[[[\n", 2), None);
        assert_eq!(too_deep(&"[".repeat(50_000), 64), Some(1));
        // a quote inside a plain scalar opens nothing, so it cannot hide brackets
        let hidden = format!("a: x-\"\nb: {}\nc: \"\n", "[".repeat(10));
        assert_eq!(too_deep(&hidden, 8), Some(2));
        let hidden = format!("a: x - \"\nb: {}\nc: \"\n", "[".repeat(10));
        assert_eq!(too_deep(&hidden, 8), Some(2));
        // tags and anchors keep a node at its start
        assert_eq!(too_deep("a: !t \"[[[[[[\"\nb: &x '[[[[[['\n", 3), None);
        assert_eq!(too_deep("a: [!t \"a #\", [[[[[[1]]]]]]]\n", 4), Some(1));
    }
}
