//! SARIF 2.1.0 output (`sealbox scan --format sarif`), the format code-scanning dashboards
//! (GitHub code scanning, GitLab, Azure DevOps) take.
//!
//! One run; the driver lists every rule; each finding is a result at its file, line and column
//! with the masked preview in its message, never the value. Paths relative to the scan's
//! working directory are given relative to `%SRCROOT%` (an upload's repository root); absolute
//! ones as `file:` URIs. Columns are counted in bytes, as every sealbox output counts them;
//! they equal SARIF's default UTF-16 columns on ASCII lines.

use sealbox::ExposeSecret;
use serde_json::{Value, json};

use crate::finding::Finding;
use crate::rules::Rules;
use crate::walk::ScanReport;

/// The schema a SARIF 2.1.0 log names.
pub const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// `report` as a SARIF 2.1.0 log.
pub fn log(report: &ScanReport, rules: &Rules) -> Value {
    let driver_rules: Vec<Value> = rules
        .rules()
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "name": rule_name(&r.id),
                "shortDescription": {"text": r.description},
                "fullDescription": {"text": format!(
                    "{}: a hard-coded credential. Move it into the vault (sealbox scan --fix) \
                     and rotate it if it was ever committed.", r.description)},
                "defaultConfiguration": {"level": "error"},
                "properties": {"tags": ["security", "secret"], "precision": "high"},
            })
        })
        .collect();
    let results: Vec<Value> = report.findings.iter().map(|f| result(f, rules)).collect();
    let notifications: Vec<Value> = report
        .errors
        .iter()
        .map(|e| json!({"level": "error", "message": {"text": e}}))
        .collect();
    json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "sealbox-scan",
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "informationUri": env!("CARGO_PKG_REPOSITORY"),
                "rules": driver_rules,
            }},
            "invocations": [{
                "executionSuccessful": report.errors.is_empty(),
                "toolExecutionNotifications": notifications,
            }],
            "results": results,
        }],
    })
}

fn result(f: &Finding, rules: &Rules) -> Value {
    let mut message = format!("{}: {} ({} bytes)", f.description, f.preview, f.length);
    for m in &f.vault {
        message.push_str("; ");
        message.push_str(&m.human());
    }
    // Where the value ends, from its shape alone (lines and the bytes on its last line).
    let value = f.value().expose_secret();
    let newlines = memchr::memchr_iter(b'\n', value).count();
    let (end_line, end_column) = match memchr::memrchr(b'\n', value) {
        None => (f.line, f.column + value.len()),
        Some(last) => (f.line + newlines, value.len() - last),
    };
    let mut location = json!({"uri": uri(&f.path)});
    if !f.path.starts_with('/') {
        location["uriBaseId"] = json!("%SRCROOT%");
    }
    let mut properties = json!({"preview": f.preview, "length": f.length});
    if let Some(commit) = &f.commit {
        properties["commit"] = json!(commit);
    }
    if !f.vault.is_empty() {
        properties["vault"] = json!(f.vault);
    }
    let mut result = json!({
        "ruleId": f.rule,
        "level": "error",
        "message": {"text": message},
        "locations": [{"physicalLocation": {
            "artifactLocation": location,
            "region": {
                "startLine": f.line,
                "startColumn": f.column,
                "endLine": end_line,
                "endColumn": end_column,
            },
        }}],
        "properties": properties,
    });
    if let Some(i) = rules.rules().iter().position(|r| r.id == f.rule) {
        result["ruleIndex"] = json!(i);
    }
    result
}

/// `aws-access-key-id` as `AwsAccessKeyId`, the form SARIF viewers show as a rule's name.
fn rule_name(id: &str) -> String {
    id.split(['-', '_'])
        .map(|part| {
            let mut c = part.chars();
            c.next()
                .map(|first| first.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// A path as a URI reference: relative (without `./`) for relative paths, `file://` for
/// absolute ones; bytes outside RFC 3986's unreserved set and `/` are percent-encoded.
fn uri(path: &str) -> String {
    let path = path.replace('\\', "/");
    let mut rel = path.as_str();
    while let Some(rest) = rel.strip_prefix("./") {
        rel = rest;
    }
    let mut out = String::new();
    if rel.starts_with('/') {
        out.push_str("file://");
    }
    for &b in rel.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_uri_references() {
        assert_eq!(uri("./src/app.env"), "src/app.env");
        assert_eq!(uri("config/my app.yaml"), "config/my%20app.yaml");
        assert_eq!(uri("/tmp/x/.env"), "file:///tmp/x/.env");
        assert_eq!(uri("ünï.txt"), "%C3%BCn%C3%AF.txt");
    }

    #[test]
    fn a_log_has_the_required_fields_and_no_value() {
        let rules = Rules::builtin().unwrap();
        let key = "-----BEGIN RSA PRIVATE KEY-----\nQd0flaRaTtNKp4Og1b7uOKErmuImlF9hAJJQXTBj5N15VFUU19c5OHkPWCSTnx8dAN6jbZXxfIvzZ0r9m7MZ3wbMFwdO\n-----END RSA PRIVATE KEY-----";
        let text = format!("x = 1\naws_access_key_id = AKIAZQ37TMKXWKO5AZE6\n{key}\n");
        let report = ScanReport {
            findings: rules
                .scan_bytes("./deploy/keys.txt", text.as_bytes())
                .unwrap(),
            ..ScanReport::default()
        };
        let log = log(&report, &rules);
        assert_eq!(log["version"], "2.1.0");
        assert_eq!(log["$schema"], SCHEMA);
        let run = &log["runs"][0];
        assert_eq!(run["tool"]["driver"]["name"], "sealbox-scan");
        assert_eq!(
            run["tool"]["driver"]["rules"].as_array().unwrap().len(),
            rules.rules().len()
        );
        let r = &run["results"][0];
        assert_eq!(r["ruleId"], "aws-access-key-id");
        let i = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(run["tool"]["driver"]["rules"][i]["id"], "aws-access-key-id");
        let loc = &r["locations"][0]["physicalLocation"];
        assert_eq!(loc["artifactLocation"]["uri"], "deploy/keys.txt");
        assert_eq!(loc["artifactLocation"]["uriBaseId"], "%SRCROOT%");
        assert_eq!(loc["region"]["startLine"], 2);
        assert_eq!(loc["region"]["startColumn"], 21);
        assert_eq!(loc["region"]["endColumn"], 41);
        // The key spans three lines and ends after its END line's 29 bytes.
        let region = &run["results"][1]["locations"][0]["physicalLocation"]["region"];
        assert_eq!(
            (region["startLine"].as_u64(), region["endLine"].as_u64()),
            (Some(3), Some(5))
        );
        assert_eq!(region["endColumn"], 30);
        let all = log.to_string();
        assert!(!all.contains("AKIAZQ37"), "{all}");
        assert!(!all.contains("Qd0flaRa"), "{all}");
    }
}
