//! `sealbox scan --fix`: rewriting a hard-coded value into a reference, once the value is in
//! the vault.
//!
//! Two shapes are rewritten, where the reference form is unambiguous:
//! * env-style files (`.env`, `*.env`, shell): a `KEY=value` or `export KEY=value` line
//!   (optionally quoted) becomes `KEY=${KEY}` ([`mod@env`]);
//! * YAML and JSON config files: a value that is a whole string scalar of a mapping key
//!   becomes the secret's reference `sb:///NAME`, which a sealbox client resolves ([`config`]).
//!
//! Anything else (a password inside a URL or a connection string, a value in code) is reported
//! and left alone. Only the value's bytes change: the rest of the file, its comments, quoting
//! and layout, stays byte for byte. The original is kept beside the file as
//! `FILE.sealbox-backup` (never overwritten), and the new contents replace the file atomically
//! with the same permissions.

pub mod config;
pub mod env;

use std::io::Write;
use std::path::{Path, PathBuf};

use sealbox::{Error, ErrorKind, ExposeSecret, Result};
use serde::Serialize;

use crate::finding::{Finding, mask};

/// The reference scheme a config value is rewritten to: `sb:///NAME` names the secret in the
/// store its name routes to, as a bare name does.
pub const REFERENCE_SCHEME: &str = "sb:///";

/// What a rewritten value becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Form {
    /// `${KEY}`: the environment supplies it (env-style files).
    EnvVar,
    /// `sb:///NAME`: a sealbox reference (YAML and JSON).
    SecretRef,
}

/// One planned rewrite of a finding's value.
#[derive(Debug, Clone, Serialize)]
pub struct Edit {
    /// The file.
    pub path: String,
    /// The line.
    pub line: usize,
    /// What the value is assigned to: the variable (`CLICKHOUSE_PASSWORD`) or the config key's
    /// path (`spring.datasource.password`).
    pub key: String,
    /// The reference form.
    pub form: Form,
    /// What replaces the value (`${CLICKHOUSE_PASSWORD}`, `sb:///billing/db-password`); for a
    /// [`Form::SecretRef`] set by [`Edit::refer_to`] once the secret's name is chosen.
    pub reference: String,
    #[serde(skip)]
    offset: usize,
    #[serde(skip)]
    len: usize,
}

impl Edit {
    /// The last part of a secret name this key suggests: lower case, with `_`, `.` and any
    /// byte a name cannot hold turned into `-` (`CLICKHOUSE_PASSWORD` and
    /// `clickhouse.password` both give `clickhouse-password`).
    pub fn name_hint(&self) -> String {
        let hint: String = self
            .key
            .chars()
            .map(|c| match c {
                'a'..='z' | '0'..='9' | '-' => c,
                'A'..='Z' => c.to_ascii_lowercase(),
                _ => '-',
            })
            .collect();
        let hint = hint.trim_matches('-');
        if hint.is_empty() {
            "value".to_owned()
        } else {
            hint.to_owned()
        }
    }

    /// Points the edit at the secret `name` now holding the value (a `${KEY}` reference does
    /// not name it and stays as it is).
    pub fn refer_to(&mut self, name: &str) {
        if self.form == Form::SecretRef {
            self.reference = format!("{REFERENCE_SCHEME}{name}");
        }
    }
}

/// The rewrite of `finding` in `text` (the file's contents), if the file's format has a
/// reference form, the value is a whole assigned value there, and it is still where the scan
/// found it.
pub fn plan(finding: &Finding, text: &[u8]) -> Option<Edit> {
    let path = Path::new(&finding.path);
    let (offset, end) = span(finding, text)?;
    let len = end - offset;
    let (key, form) = if env::env_style(path) {
        (env::assigned_variable(text, offset, len)?, Form::EnvVar)
    } else if config::yaml(path) {
        (config::yaml_key(text, offset, len)?, Form::SecretRef)
    } else if config::json(path) {
        (config::json_key(text, offset, len)?, Form::SecretRef)
    } else {
        return None;
    };
    let reference = match form {
        Form::EnvVar => format!("${{{key}}}"),
        Form::SecretRef => String::new(),
    };
    Some(Edit {
        path: finding.path.clone(),
        line: finding.line,
        key,
        form,
        reference,
        offset,
        len,
    })
}

/// Byte offset where 1-based `line` starts.
pub(crate) fn line_offset(text: &[u8], line: usize) -> Option<usize> {
    if line == 1 {
        return Some(0);
    }
    memchr::memchr_iter(b'\n', text)
        .nth(line - 2)
        .map(|p| p + 1)
}

/// The bytes of the line holding `offset`: from its start to `offset`, and from `end` to the
/// line's end (without the newline).
pub(crate) fn around(text: &[u8], offset: usize, end: usize) -> (&[u8], &[u8]) {
    let start = memchr::memrchr(b'\n', &text[..offset]).map_or(0, |p| p + 1);
    let stop = memchr::memchr(b'\n', &text[end..]).map_or(text.len(), |p| end + p);
    let after = &text[end..stop];
    (
        &text[start..offset],
        after.strip_suffix(b"\r").unwrap_or(after),
    )
}

/// Whether what follows a value on its line is nothing, or only a comment starting with
/// `comment`.
pub(crate) fn rest_is_blank_or_comment(rest: &[u8], comment: &[u8]) -> bool {
    let rest = rest.trim_ascii();
    rest.is_empty() || (!comment.is_empty() && rest.starts_with(comment))
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

/// Where `finding`'s value is in `text`, if it is still there: its byte range.
pub fn span(finding: &Finding, text: &[u8]) -> Option<(usize, usize)> {
    let offset = line_offset(text, finding.line)? + finding.column - 1;
    let value = finding.value().expose_secret();
    (text.get(offset..offset + value.len())? == value).then_some((offset, offset + value.len()))
}

/// The change as a diff for people: each edited line before and after, with every value in
/// `hidden` (the byte ranges of all the values found in the file, edited or not) masked, so a
/// line holding a second credential shows none of it.
pub fn masked_diff(text: &[u8], edits: &[Edit], hidden: &[(usize, usize)]) -> String {
    let mut lines: Vec<(usize, &str)> = edits.iter().map(|e| (e.line, e.path.as_str())).collect();
    lines.sort_unstable();
    lines.dedup();
    let mut s = String::new();
    for (line, path) in lines {
        let Some(start) = line_offset(text, line) else {
            continue;
        };
        let end = memchr::memchr(b'\n', &text[start..]).map_or(text.len(), |p| start + p);
        let end = if text[..end].ends_with(b"\r") {
            end - 1
        } else {
            end
        };
        s.push_str(&format!(
            "--- {path}:{line}\n-{}\n+{}\n",
            masked_line(text, start, end, hidden, &[]),
            masked_line(text, start, end, hidden, edits),
        ));
    }
    s
}

/// `text[start..end]` with `edits` applied and the values at `hidden` masked.
fn masked_line(
    text: &[u8],
    start: usize,
    end: usize,
    hidden: &[(usize, usize)],
    edits: &[Edit],
) -> String {
    let mut out = Vec::new();
    let mut at = start;
    while at < end {
        if let Some(e) = edits.iter().find(|e| e.offset == at) {
            out.extend_from_slice(e.reference.as_bytes());
            at += e.len.max(1);
        } else if let Some(&(s, e)) = hidden.iter().find(|&&(s, _)| s == at) {
            out.extend_from_slice(mask(&text[s..e]).as_bytes());
            at = e.max(at + 1);
        } else {
            out.push(text[at]);
            at += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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

    /// The edits --fix would make in `text` as file `path`, each pointed at `prefix/hint`.
    fn planned(path: &str, text: &[u8]) -> Vec<Edit> {
        let rules = Rules::builtin().unwrap();
        rules
            .scan_bytes(path, text)
            .unwrap()
            .iter()
            .filter_map(|f| plan(f, text))
            .map(|mut e| {
                e.refer_to(&format!("app/{}", e.name_hint()));
                e
            })
            .collect()
    }

    fn keys(edits: &[Edit]) -> Vec<&str> {
        edits.iter().map(|e| e.key.as_str()).collect()
    }

    #[test]
    fn env_assignments_become_references_and_other_shapes_stay() {
        let text = b"HOST=db\nexport DB_PASSWORD=\"Vq3r8TzK2mWxLp7\"\nAPI_TOKEN=Hx4Tq8Lm2Vz6Rk0Pw3Nc7Yb5Gs9Jd1Fa # ci\n\
            URL=postgresql://u:Nc5Hw9Yt2Ra6Km4@db/x\n";
        let rules = Rules::builtin().unwrap();
        assert_eq!(rules.scan_bytes("app.env", text).unwrap().len(), 3);
        let edits = planned("app.env", text);
        assert_eq!(keys(&edits), ["DB_PASSWORD", "API_TOKEN"]);
        assert_eq!(edits[0].name_hint(), "db-password");
        assert_eq!(
            apply(text, &edits),
            b"HOST=db\nexport DB_PASSWORD=\"${DB_PASSWORD}\"\nAPI_TOKEN=${API_TOKEN} # ci\n\
              URL=postgresql://u:Nc5Hw9Yt2Ra6Km4@db/x\n"
        );
        let hidden: Vec<(usize, usize)> = rules
            .scan_bytes("app.env", text)
            .unwrap()
            .iter()
            .filter_map(|f| span(f, text))
            .collect();
        let diff = masked_diff(text, &edits, &hidden);
        assert!(diff.contains("-export DB_PASSWORD=\"Vq3…\""), "{diff}");
        assert!(
            diff.contains("+export DB_PASSWORD=\"${DB_PASSWORD}\""),
            "{diff}"
        );
        assert!(!diff.contains("Vq3r8TzK"), "{diff}");
        // A Python file has no reference form.
        assert!(planned("db.py", b"password = \"Vq3r8TzK2mWxLp7\"\n").is_empty());
    }

    /// Only the value's bytes change: comments, quoting, indentation, key order, other values
    /// and CRLF line ends are kept.
    #[test]
    fn yaml_values_become_sb_references_and_nothing_else_changes() {
        let text = "# billing settings\r\nspring:\r\n  datasource:\r\n    url: jdbc:mysql://db/billing\r\n    \
            password: Vq3r8TzK2mWxLp7   # rotated monthly\r\n  rabbitmq:\r\n    password: \"Nc5Hw9Yt2Ra6Km4\"\r\n\
            app: &app\r\n  - name: gitlab\r\n    token: 'glpat-AX3K12C7OBgEq6f1Vxcj'\r\n\
            hooks:\r\n  url: https://ops:Hx4Tq8Lm2Vz6Rk0P@hooks.internal/x\r\n";
        let edits = planned("application.yml", text.as_bytes());
        assert_eq!(
            keys(&edits),
            [
                "spring.datasource.password",
                "spring.rabbitmq.password",
                "app.token"
            ]
        );
        let want = "# billing settings\r\nspring:\r\n  datasource:\r\n    url: jdbc:mysql://db/billing\r\n    \
            password: sb:///app/spring-datasource-password   # rotated monthly\r\n  rabbitmq:\r\n    \
            password: \"sb:///app/spring-rabbitmq-password\"\r\napp: &app\r\n  - name: gitlab\r\n    \
            token: 'sb:///app/app-token'\r\nhooks:\r\n  url: https://ops:Hx4Tq8Lm2Vz6Rk0P@hooks.internal/x\r\n";
        assert_eq!(
            String::from_utf8(apply(text.as_bytes(), &edits)).unwrap(),
            want
        );
        // The URL's password is inside a longer scalar: no reference form, left alone.
        let rules = Rules::builtin().unwrap();
        let url = rules
            .scan_bytes("application.yml", text.as_bytes())
            .unwrap();
        assert!(
            url.iter()
                .any(|f| f.rule == "url-password" && plan(f, text.as_bytes()).is_none())
        );
    }

    #[test]
    fn yaml_values_with_escapes_or_in_flow_or_list_scalars_are_left() {
        for text in [
            "password: \"Vq3r8T\\tzK2mWxLp7\"\n",
            "db: {password: Vq3r8TzK2mWxLp7}\n",
            "env:\n  - DB_PASSWORD=Vq3r8TzK2mWxLp7\n",
        ] {
            assert!(planned("x.yaml", text.as_bytes()).is_empty(), "{text}");
        }
    }

    #[test]
    fn json_string_members_become_sb_references_and_nothing_else_changes() {
        let text = "{\n  \"ConnectionStrings\": {\n    \"Sql\": \"Server=tcp:db,1433;User ID=u;Password=Vq3r8TzK2mWxLp7;\"\n  },\n\
            \"AzureAd\": {\"TenantId\": \"9f0c\", \"ClientSecret\": \"YM58Q~kLImkvIMxDok1DBECCvpKN.nDAuM0gwz25\"},\n\
            \"list\": [{\"api_token\": \"Hx4Tq8Lm2Vz6Rk0Pw3Nc7Yb5Gs9Jd1Fa\"}],\n\
            \"tokens\": [\"Hx4Tq8Lm2Vz6Rk0Pw3Nc7Yb5Gs9Jd1Fb\"]\n}\n";
        let edits = planned("appsettings.json", text.as_bytes());
        assert_eq!(keys(&edits), ["AzureAd.ClientSecret", "list.api_token"]);
        let want = text
            .replace(
                "YM58Q~kLImkvIMxDok1DBECCvpKN.nDAuM0gwz25",
                "sb:///app/azuread-clientsecret",
            )
            .replace(
                "Hx4Tq8Lm2Vz6Rk0Pw3Nc7Yb5Gs9Jd1Fa",
                "sb:///app/list-api-token",
            );
        assert_eq!(
            String::from_utf8(apply(text.as_bytes(), &edits)).unwrap(),
            want
        );
        let rewritten: serde_json::Value = serde_json::from_str(&want).unwrap();
        assert_eq!(
            rewritten["AzureAd"]["ClientSecret"],
            "sb:///app/azuread-clientsecret"
        );
    }

    #[test]
    fn the_diff_masks_every_value_on_an_edited_line() {
        let text = b"{\"a_token\": \"Hx4Tq8Lm2Vz6Rk0Pw3Nc7Yb5Gs9Jd1Fa\", \"db\": \"postgresql://u:Nc5Hw9Yt2Ra6Km4@db/x\", \"b_token\": \"Vq3r8TzK2mWxLp7Vq3r8TzK2mWxLp7q\"}\n";
        let rules = Rules::builtin().unwrap();
        let found = rules.scan_bytes("c.json", text).unwrap();
        assert_eq!(found.len(), 3);
        let hidden: Vec<(usize, usize)> = found.iter().filter_map(|f| span(f, text)).collect();
        // Only the first token is fixed; the diff still hides the other two.
        let mut edit = plan(&found[0], text).unwrap();
        edit.refer_to("app/a-token");
        let diff = masked_diff(text, &[edit], &hidden);
        for value in ["Hx4Tq8Lm", "Nc5Hw9Yt", "Vq3r8TzK"] {
            assert!(!diff.contains(value), "{diff}");
        }
        assert!(
            diff.contains(
                "+{\"a_token\": \"sb:///app/a-token\", \"db\": \"postgresql://u:Nc5…@db/x\""
            ),
            "{diff}"
        );
    }

    #[test]
    fn json_strings_with_escapes_are_left() {
        // A service-account key: its `\n` escapes are not the key's bytes.
        let text = "{\"type\": \"service_account\", \"private_key\": \"-----BEGIN PRIVATE KEY-----\\nQd0flaRaTtNKp4Og1b7uOKErmuImlF9hAJJQXTBj5N15VFUU19c5OHkPWCSTnx8dAN6jbZXxfIvzZ0r9m7MZ3wbMFwdO93SPxT\\n-----END PRIVATE KEY-----\\n\"}\n";
        let rules = Rules::builtin().unwrap();
        assert_eq!(
            rules.scan_bytes("sa.json", text.as_bytes()).unwrap().len(),
            1
        );
        assert!(planned("sa.json", text.as_bytes()).is_empty());
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
