//! A finding: where a credential is and which rule found it, with the value itself held in
//! locked memory and never serialised or printed.

use sealbox::Secret;
use serde::Serialize;

use crate::vault::VaultMatch;

/// The most characters of a value any output shows.
pub const PREVIEW_CHARS: usize = 4;

/// One credential found.
#[derive(Debug, Serialize)]
pub struct Finding {
    /// The file, as walked (or as git names it for staged changes and history).
    pub path: String,
    /// 1-based line of the value's first byte.
    pub line: usize,
    /// 1-based byte column of the value's first byte.
    pub column: usize,
    /// The rule's id.
    pub rule: String,
    /// The rule's description.
    pub description: String,
    /// At most the value's first [`PREVIEW_CHARS`] characters (fewer for short values), then `…`.
    pub preview: String,
    /// The value's length in bytes.
    pub length: usize,
    /// The commit that added it (history scans).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Names this finding in a baseline ([`crate::baseline`]); set by
    /// [`crate::baseline::assign`], empty before.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fingerprint: String,
    /// The secrets in the vault holding this value, when a vault was given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vault: Vec<VaultMatch>,
    /// The value, in locked memory: compared with the vault, never written out.
    #[serde(skip)]
    pub(crate) value: Secret,
}

impl Finding {
    /// The value found (for vault matching and `--fix`); never print it.
    pub fn value(&self) -> &Secret {
        &self.value
    }

    /// One line for people: `path:line:column: rule: description: AKIA…`, plus what the vault
    /// knows of it.
    pub fn human(&self) -> String {
        let mut s = format!(
            "{}:{}:{}: {}: {}: {}",
            self.path, self.line, self.column, self.rule, self.description, self.preview
        );
        if let Some(commit) = &self.commit {
            s.push_str(&format!(" (commit {commit})"));
        }
        for m in &self.vault {
            s.push_str(&format!("\n    {}", m.human()));
        }
        s
    }
}

/// The masked preview of `value`: its first characters, at most [`PREVIEW_CHARS`] and at most a
/// quarter of the value (a short password shows one character or none), then `…`.
pub fn mask(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    let total = text.chars().count();
    let shown = PREVIEW_CHARS.min(total / 4);
    let mut out: String = text.chars().take(shown).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_show_at_most_four_characters_and_a_quarter_of_short_values() {
        assert_eq!(mask(b"AKIAZQ37TMKXWKO5AZE6"), "AKIA…");
        assert_eq!(mask(b"hunter22"), "hu…");
        assert_eq!(mask(b"abc"), "…");
        assert_eq!(mask("pässwörd-lång".as_bytes()), "päs…");
    }
}
