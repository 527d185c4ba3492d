//! Matching one buffer against the rules: keyword prefilter, `RegexSet`, then each candidate
//! rule's own regex for the positions, then entropy, allowlists and inline `sealbox:allow`.

use memchr::memmem;
use sealbox::{Result, Secret};

use crate::finding::{Finding, mask};
use crate::rules::Rules;

/// The inline marker that accepts a finding on its line.
pub const ALLOW_MARKER: &str = "sealbox:allow";

impl Rules {
    /// Every credential in `text`, the contents of `path`, in order of position. Where two
    /// rules find overlapping values the earlier rule wins.
    pub fn scan_bytes(&self, path: &str, text: &[u8]) -> Result<Vec<Finding>> {
        let mut candidates = vec![false; self.rules.len()];
        let mut any = false;
        for m in self.keywords.find_overlapping_iter(text) {
            let rule = self.keyword_rule[m.pattern().as_usize()];
            any |= !candidates[rule];
            candidates[rule] = true;
        }
        if !any {
            return Ok(Vec::new());
        }
        let matched = self.set.matches(text);
        let mut spans: Vec<(usize, usize)> = Vec::new();
        let mut findings = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if !candidates[i] || !matched.matched(i) {
                continue;
            }
            for caps in rule.regex.captures_iter(text) {
                let Some(secret) = caps.get(rule.secret_group) else {
                    continue;
                };
                let (start, end) = (secret.start(), secret.end());
                let value = secret.as_bytes();
                if value.is_empty()
                    || spans.iter().any(|&(s, e)| start < e && s < end)
                    || !self.accepts(rule, value)
                    || rule.allow_match.iter().any(|a| {
                        caps.get(0)
                            .is_some_and(|whole| a.is_match(whole.as_bytes()))
                    })
                    || allowed_inline(text, start, end)
                {
                    continue;
                }
                spans.push((start, end));
                let line_start = memchr::memrchr(b'\n', &text[..start]).map_or(0, |p| p + 1);
                findings.push(Finding {
                    path: path.to_owned(),
                    line: memchr::memchr_iter(b'\n', &text[..start]).count() + 1,
                    column: start - line_start + 1,
                    rule: rule.id.clone(),
                    description: rule.description.clone(),
                    preview: mask(value),
                    length: value.len(),
                    commit: None,
                    fingerprint: String::new(),
                    vault: Vec::new(),
                    value: Secret::init_with(value.len(), |buf| {
                        buf.copy_from_slice(value);
                        Ok(())
                    })?,
                });
            }
        }
        findings.sort_by_key(|f| (f.line, f.column));
        Ok(findings)
    }

    /// Checks every rule against its examples: each positive one must be reported by the rule,
    /// no negative one may be. Returns what failed, naming the rule and the example's index
    /// (never its text).
    pub fn check_examples(&self) -> Result<Vec<String>> {
        let mut failures = Vec::new();
        for rule in &self.rules {
            for (i, example) in rule.positive.iter().enumerate() {
                let found = self.scan_bytes("example", example.as_bytes())?;
                if !found.iter().any(|f| f.rule == rule.id) {
                    failures.push(format!(
                        "rule `{}` misses its positive example {}",
                        rule.id,
                        i + 1
                    ));
                }
            }
            for (i, example) in rule.negative.iter().enumerate() {
                let found = self.scan_bytes("example", example.as_bytes())?;
                if found.iter().any(|f| f.rule == rule.id) {
                    failures.push(format!(
                        "rule `{}` reports its negative example {}",
                        rule.id,
                        i + 1
                    ));
                }
            }
        }
        Ok(failures)
    }

    /// Whether a value the regex found is reported: not a placeholder, random enough, not on
    /// the rule's own allowlist.
    fn accepts(&self, rule: &crate::rules::Rule, value: &[u8]) -> bool {
        if self.allow_values.iter().any(|a| a.is_match(value))
            || rule.allow.iter().any(|a| a.is_match(value))
        {
            return false;
        }
        if rule.needs_digit && !value.iter().any(u8::is_ascii_digit) {
            return false;
        }
        rule.entropy.is_none_or(|min| entropy(value) >= min)
    }
}

/// Whether a line the value spans carries the inline marker.
fn allowed_inline(text: &[u8], start: usize, end: usize) -> bool {
    let from = memchr::memrchr(b'\n', &text[..start]).map_or(0, |p| p + 1);
    let to = memchr::memchr(b'\n', &text[end..]).map_or(text.len(), |p| end + p);
    memmem::find(&text[from..to], ALLOW_MARKER.as_bytes()).is_some()
}

/// Shannon entropy of `value`, in bits per byte.
pub fn entropy(value: &[u8]) -> f64 {
    if value.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in value {
        counts[usize::from(b)] += 1;
    }
    let n = value.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealbox::ExposeSecret;

    fn rules() -> Rules {
        Rules::builtin().unwrap()
    }

    /// The rules file is its own specification: every positive example is reported by its
    /// rule and no negative example is.
    #[test]
    fn every_rule_reports_its_positive_examples_and_none_of_its_negative_ones() {
        let failures = rules().check_examples().unwrap();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn a_user_rule_that_misses_its_own_example_is_refused() {
        let extra = r#"
            [[rule]]
            id = "acme"
            description = "ACME token"
            keywords = ["acme_"]
            regex = '''\b(?P<secret>acme_[a-z]{24})\b'''
            positive = ["t = acme_0123456789abcdefghijklmn"]
        "#;
        let e = Rules::builtin_with(extra, "mine.toml").unwrap_err();
        assert!(
            e.message().contains("`acme` misses its positive example 1"),
            "{e}"
        );
        assert!(!e.message().contains("0123456789"), "{e}");
    }

    #[test]
    fn findings_give_line_column_rule_and_a_masked_preview() {
        let text = b"# config\nname = svc\naws_access_key_id = AKIAZQ37TMKXWKO5AZE6\n";
        let found = rules().scan_bytes("cfg.ini", text).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        let f = &found[0];
        assert_eq!((f.line, f.column), (3, 21));
        assert_eq!(f.rule, "aws-access-key-id");
        assert_eq!(f.preview, "AKIA…");
        assert_eq!(f.value().expose_secret(), b"AKIAZQ37TMKXWKO5AZE6");
    }

    #[test]
    fn an_inline_marker_accepts_the_finding_on_its_line_only() {
        let text = b"a = AKIAZQ37TMKXWKO5AZE6  # sealbox:allow (revoked test key)\n\
                     b = AKIADQVFVAD5YTT4MGFS\n";
        let found = rules().scan_bytes("x", text).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].line, 2);
    }

    #[test]
    fn overlapping_rules_report_a_value_once() {
        // Both the AWS rule and the generic one match this line.
        let text = b"export AWS_SECRET_ACCESS_KEY=\"pw/NFxibJia51V+7NPQFe6HdeHcTuSZwPlYjmkKj\"\n";
        let found = rules().scan_bytes("x", text).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].rule, "aws-secret-access-key");
    }

    /// The shapes of the user documents: the AVESA guide's shell export and Python read of a
    /// secret, and the CSPM decision's .env file and Python connection.
    #[test]
    fn the_user_documents_examples() {
        let rules = rules();
        // Placeholders and reads from a secrets manager are not findings.
        let clean = b"export CLICKHOUSE_HOST=\"your-host.clickhouse.cloud\"\n\
            export CLICKHOUSE_PASSWORD=\"your-secure-password\"\n\
            secret = client.get_secret_value(SecretId='cspm/db')\n\
            db_password = json.loads(secret['SecretString'])['password']\n\
            secret = client.get_secret(\"db-password\")\n";
        let found = rules.scan_bytes("docs.sh", clean).unwrap();
        assert!(found.is_empty(), "{found:?}");
        // The hard-coded versions they replaced are.
        let dirty = b"CLICKHOUSE_PASSWORD=Vq3r8TzK2mWx\n\
            DATABASE_URL=postgresql://cspm:Vq3r8TzK2mWx@db.internal:5432/cspm\n\
            AZURE_CLIENT_SECRET=YM58Q~kLImkvIMxDok1DBECCvpKN.nDAuM0gwz25\n\
            conn = psycopg2.connect(host=\"db\", user=\"cspm\", password=\"Vq3r8TzK2mWx\")\n";
        let found = rules.scan_bytes(".env", dirty).unwrap();
        let got: Vec<(usize, &str)> = found.iter().map(|f| (f.line, f.rule.as_str())).collect();
        assert_eq!(
            got,
            [
                (1, "password-unquoted"),
                (2, "url-password"),
                (3, "azure-client-secret"),
                (4, "password-assignment"),
            ]
        );
    }

    #[test]
    fn a_file_without_keywords_is_not_matched() {
        let text = "fn main() { println!(\"hello\"); }\n".repeat(1000);
        assert!(
            rules()
                .scan_bytes("x.rs", text.as_bytes())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn entropy_of_uniform_and_random_values() {
        assert_eq!(entropy(b"aaaaaaaa"), 0.0);
        assert!((entropy(b"abcdefgh") - 3.0).abs() < 1e-9);
        assert!(entropy(b"AeNjTWAy1zBFXoyEDFC8JnL41kI3UQDt") > 4.0);
    }
}
