//! A baseline of accepted findings (`--write-baseline FILE`, then `--baseline FILE`): findings
//! already known and accepted are not reported again, new ones are.
//!
//! A finding is named by a fingerprint: a SHA-256 over the rule, the path, the commit (history
//! scans), the masked preview and length any output shows, and which finding of that rule in
//! that file it is (the first, the second, ...). Never the value, nor a digest of it: a
//! baseline is committed beside the code. Line numbers are left out, so lines added above a
//! finding do not make it new; a different value in its place has another preview or length
//! and is new (one with the same first characters and length is not told apart).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use ring::digest::{SHA256, digest};
use sealbox::{Error, Result};

use crate::finding::Finding;

/// Sets each finding's fingerprint; `findings` are in report order (by path, then position).
pub fn assign(findings: &mut [Finding]) {
    let mut seen: HashMap<(String, String, Option<String>), usize> = HashMap::new();
    for f in findings {
        let n = seen
            .entry((f.path.clone(), f.rule.clone(), f.commit.clone()))
            .or_default();
        *n += 1;
        let text = format!(
            "sealbox-scan/1\0{}\0{}\0{}\0{}\0{}\0{n}",
            f.rule,
            f.path,
            f.commit.as_deref().unwrap_or(""),
            f.preview,
            f.length
        );
        let d = digest(&SHA256, text.as_bytes());
        f.fingerprint = d.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
    }
}

/// The baseline file's text for `findings`: one `FINGERPRINT RULE PATH:LINE` line each.
pub fn render(findings: &[Finding]) -> String {
    let mut s = String::from(
        "# sealbox scan baseline: accepted findings, by fingerprint (the rest of each line is for\n\
         # people). Written by `sealbox scan --write-baseline`; read by `sealbox scan --baseline`.\n",
    );
    for f in findings {
        s.push_str(&format!(
            "{} {} {}:{}\n",
            f.fingerprint, f.rule, f.path, f.line
        ));
    }
    s
}

/// The fingerprints a baseline file lists.
pub fn load(path: &Path) -> Result<BTreeSet<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::config(format!(
            "cannot read the baseline {}: {e}; write one with --write-baseline",
            path.display()
        ))
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    use crate::rules::Rules;

    use super::*;

    fn fingerprints(text: &str) -> Vec<String> {
        let mut found = Rules::builtin()
            .unwrap()
            .scan_bytes("app.env", text.as_bytes())
            .unwrap();
        assign(&mut found);
        found.into_iter().map(|f| f.fingerprint).collect()
    }

    #[test]
    fn fingerprints_survive_moved_lines_and_change_with_the_value() {
        let a = fingerprints(
            "DB_PASSWORD=Vq3r8TzK2mWxLp7\nAPI_TOKEN=Hx4Tq8Lm2Vz6Rk0Pw3Nc7Yb5Gs9Jd1Fa\n",
        );
        let moved = fingerprints(
            "# new\n\nDB_PASSWORD=Vq3r8TzK2mWxLp7\nAPI_TOKEN=Hx4Tq8Lm2Vz6Rk0Pw3Nc7Yb5Gs9Jd1Fa\n",
        );
        assert_eq!(a, moved);
        assert_ne!(a[0], a[1]);
        let other = fingerprints(
            "DB_PASSWORD=Nc5Hw9Yt2Ra6Km4x\nAPI_TOKEN=Hx4Tq8Lm2Vz6Rk0Pw3Nc7Yb5Gs9Jd1Fa\n",
        );
        assert_ne!(a[0], other[0]);
        assert_eq!(a[1], other[1]);
    }

    #[test]
    fn a_baseline_holds_no_value() {
        let mut found = Rules::builtin()
            .unwrap()
            .scan_bytes("app.env", b"DB_PASSWORD=Vq3r8TzK2mWxLp7\n")
            .unwrap();
        assign(&mut found);
        let text = render(&found);
        assert!(!text.contains("Vq3r8TzK"), "{text}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("baseline");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(
            load(&path).unwrap(),
            BTreeSet::from([found[0].fingerprint.clone()])
        );
    }
}
