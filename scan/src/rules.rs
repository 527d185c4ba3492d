//! Detection rules as data: the built-in TOML file, compiled in, plus a user's own file.
//!
//! A rule is an id, a description, keywords, a regex whose named group `secret` is the
//! credential, and examples. Keywords are a prefilter: a file is matched against a rule's regex
//! only when one of its keywords occurs in it, so most files cost one Aho-Corasick pass.

use std::path::Path;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use globset::{Glob, GlobSet, GlobSetBuilder};
use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use sealbox::{Error, Result};
use serde::Deserialize;

/// The built-in rules (`scan/rules/default.toml`).
pub const BUILTIN_RULES: &str = include_str!("../rules/default.toml");

/// A rules file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default, rename = "rule")]
    rules: Vec<RuleDef>,
    #[serde(default)]
    allowlist: AllowlistDef,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    id: String,
    description: String,
    keywords: Vec<String>,
    regex: String,
    #[serde(default)]
    entropy: Option<f64>,
    #[serde(default)]
    needs_digit: bool,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    allow_match: Vec<String>,
    #[serde(default)]
    positive: Vec<String>,
    #[serde(default)]
    negative: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowlistDef {
    #[serde(default)]
    values: Vec<String>,
    #[serde(default)]
    paths: Vec<String>,
}

/// One compiled rule.
#[derive(Debug)]
pub struct Rule {
    /// Stable id, e.g. `aws-access-key-id`.
    pub id: String,
    /// What it finds, for people.
    pub description: String,
    /// Lines the rule must report (checked by the rules' own tests).
    pub positive: Vec<String>,
    /// Lines the rule must not report.
    pub negative: Vec<String>,
    pub(crate) regex: Regex,
    pub(crate) secret_group: usize,
    pub(crate) entropy: Option<f64>,
    pub(crate) needs_digit: bool,
    pub(crate) allow: Vec<Regex>,
    /// Regexes over the whole match (key and value): one that matches drops the finding.
    pub(crate) allow_match: Vec<Regex>,
}

/// A compiled rule set: the rules, one `RegexSet` over all of them, the keyword automaton and
/// the allowlists.
#[derive(Debug)]
pub struct Rules {
    pub(crate) rules: Vec<Rule>,
    pub(crate) set: RegexSet,
    pub(crate) keywords: AhoCorasick,
    /// For each keyword pattern, the rule it belongs to.
    pub(crate) keyword_rule: Vec<usize>,
    pub(crate) allow_values: Vec<Regex>,
    pub(crate) allow_paths: GlobSet,
}

impl Rules {
    /// The built-in rules only.
    pub fn builtin() -> Result<Rules> {
        Rules::compile(
            parse(BUILTIN_RULES, "the built-in rules")?,
            RulesFile::default(),
        )
    }

    /// The built-in rules extended by the rules file `text` (named `origin` in errors): a rule
    /// with a built-in id replaces it, a new one is added after the built-in ones, and the
    /// file's allowlist is added to the built-in one.
    /// The examples of every rule are checked (a user's rule that misses its own positive
    /// example is refused, not silently useless).
    pub fn builtin_with(text: &str, origin: &str) -> Result<Rules> {
        let rules = Rules::compile(
            parse(BUILTIN_RULES, "the built-in rules")?,
            parse(text, origin)?,
        )?;
        let failures = rules.check_examples()?;
        if let Some(first) = failures.first() {
            return Err(Error::config(format!(
                "{origin}: {first}{}; fix the rule or its examples",
                match failures.len() {
                    1 => String::new(),
                    n => format!(" (and {} more)", n - 1),
                }
            )));
        }
        Ok(rules)
    }

    /// The built-in rules, extended by the file at `path` when one is given.
    pub fn load(path: Option<&Path>) -> Result<Rules> {
        match path {
            None => Rules::builtin(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::config(format!(
                        "cannot read the rules file {}: {e}; check --rules",
                        path.display()
                    ))
                })?;
                Rules::builtin_with(&text, &path.display().to_string())
            }
        }
    }

    /// The rules, in priority order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether `path` is on the allowlist of paths never scanned.
    pub fn path_allowed(&self, path: &Path) -> bool {
        self.allow_paths.is_match(path)
    }

    fn compile(base: RulesFile, extra: RulesFile) -> Result<Rules> {
        let mut defs = base.rules;
        for def in extra.rules {
            match defs.iter_mut().find(|d| d.id == def.id) {
                Some(slot) => *slot = def,
                None => defs.push(def),
            }
        }
        let mut rules = Vec::with_capacity(defs.len());
        let mut keywords = Vec::new();
        let mut keyword_rule = Vec::new();
        for (i, def) in defs.into_iter().enumerate() {
            if def.keywords.iter().all(|k| k.is_empty()) {
                return Err(Error::config(format!(
                    "rule `{}` has no keyword; give it at least one word that every match contains",
                    def.id
                )));
            }
            for k in def.keywords.iter().filter(|k| !k.is_empty()) {
                keywords.push(k.clone());
                keyword_rule.push(i);
            }
            let regex = compile_regex(&def.regex, &def.id)?;
            let secret_group = regex
                .capture_names()
                .position(|n| n == Some("secret"))
                .ok_or_else(|| {
                    Error::config(format!(
                        "rule `{}`: its regex has no `(?P<secret>...)` group saying which part \
                         is the credential",
                        def.id
                    ))
                })?;
            let allow = def
                .allow
                .iter()
                .map(|a| compile_regex(a, &def.id))
                .collect::<Result<Vec<_>>>()?;
            let allow_match = def
                .allow_match
                .iter()
                .map(|a| compile_regex(a, &def.id))
                .collect::<Result<Vec<_>>>()?;
            rules.push(Rule {
                id: def.id,
                description: def.description,
                positive: def.positive,
                negative: def.negative,
                regex,
                secret_group,
                entropy: def.entropy,
                needs_digit: def.needs_digit,
                allow,
                allow_match,
            });
        }
        for (i, r) in rules.iter().enumerate() {
            if rules[..i].iter().any(|o| o.id == r.id) {
                return Err(Error::config(format!("rule id `{}` is used twice", r.id)));
            }
        }
        let set = RegexSetBuilder::new(rules.iter().map(|r| r.regex.as_str()))
            .unicode(false)
            .build()
            .map_err(|e| Error::config(format!("the rules do not compile together: {e}")))?;
        let keywords = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&keywords)
            .map_err(|e| Error::config(format!("the rules' keywords do not compile: {e}")))?;
        let allow_values = base
            .allowlist
            .values
            .iter()
            .chain(&extra.allowlist.values)
            .map(|v| compile_regex(v, "allowlist"))
            .collect::<Result<Vec<_>>>()?;
        let mut paths = GlobSetBuilder::new();
        for p in base.allowlist.paths.iter().chain(&extra.allowlist.paths) {
            paths.add(Glob::new(p).map_err(|e| {
                Error::config(format!("allowlist path `{p}` is not a valid glob: {e}"))
            })?);
        }
        let allow_paths = paths
            .build()
            .map_err(|e| Error::config(format!("the allowlist paths do not compile: {e}")))?;
        Ok(Rules {
            rules,
            set,
            keywords,
            keyword_rule,
            allow_values,
            allow_paths,
        })
    }
}

fn parse(text: &str, origin: &str) -> Result<RulesFile> {
    toml::from_str(text)
        .map_err(|e| Error::config(format!("{origin}: not a valid rules file: {e}")))
}

/// Rules match bytes, not Unicode text: `\b`, `\s` and classes are ASCII and a negated class
/// matches any byte, which keeps the automata small and the scan on the fast DFA path.
fn compile_regex(pattern: &str, id: &str) -> Result<Regex> {
    RegexBuilder::new(pattern)
        .unicode(false)
        .build()
        .map_err(|e| Error::config(format!("rule `{id}`: the regex does not compile: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_rules_compile_and_cover_the_issue_list() {
        let rules = Rules::builtin().unwrap();
        let ids: Vec<&str> = rules.rules().iter().map(|r| r.id.as_str()).collect();
        for id in [
            "aws-access-key-id",
            "aws-secret-access-key",
            "gcp-service-account",
            "gcp-api-key",
            "azure-storage-key",
            "azure-client-secret",
            "private-key",
            "jwt",
            "github-token",
            "gitlab-token",
            "slack-token",
            "stripe-key",
            "url-password",
            "connection-string-password",
            "password-assignment",
            "password-ini",
            "password-unquoted",
            "generic-secret",
        ] {
            assert!(ids.contains(&id), "no built-in rule {id}");
        }
        for r in rules.rules() {
            assert!(
                !r.positive.is_empty(),
                "rule {} has no positive example",
                r.id
            );
            assert!(
                !r.negative.is_empty(),
                "rule {} has no negative example",
                r.id
            );
        }
    }

    #[test]
    fn a_user_file_replaces_and_adds_rules() {
        let extra = r#"
            [allowlist]
            paths = ["**/fixtures/**"]
            [[rule]]
            id = "internal-token"
            description = "ACME internal token"
            keywords = ["acme_"]
            regex = '''\b(?P<secret>acme_[a-z0-9]{24})\b'''
            positive = ["t = acme_0123456789abcdefghijklmn"]
            negative = ["t = acme_short"]
            [[rule]]
            id = "jwt"
            description = "JWT, stricter"
            keywords = ["eyJhbGci"]
            regex = '''(?P<secret>eyJhbGci[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)'''
        "#;
        let rules = Rules::builtin_with(extra, "mine.toml").unwrap();
        let builtin = Rules::builtin().unwrap();
        assert_eq!(rules.rules().len(), builtin.rules().len() + 1);
        assert_eq!(rules.rules().last().unwrap().id, "internal-token");
        let jwt = rules.rules().iter().find(|r| r.id == "jwt").unwrap();
        assert_eq!(jwt.description, "JWT, stricter");
        assert!(rules.path_allowed(Path::new("src/fixtures/keys.txt")));
        assert!(!rules.path_allowed(Path::new("src/keys.txt")));
    }

    #[test]
    fn bad_rules_are_config_errors_that_name_the_rule() {
        let no_group = r#"
            [[rule]]
            id = "nogroup"
            description = "x"
            keywords = ["x"]
            regex = 'x+'
        "#;
        let e = Rules::builtin_with(no_group, "mine.toml").unwrap_err();
        assert_eq!(e.kind(), sealbox::ErrorKind::Config);
        assert!(e.message().contains("nogroup"), "{e}");
        let bad_regex = r#"
            [[rule]]
            id = "broken"
            description = "x"
            keywords = ["x"]
            regex = '(?P<secret>x'
        "#;
        let e = Rules::builtin_with(bad_regex, "mine.toml").unwrap_err();
        assert!(e.message().contains("broken"), "{e}");
        let no_keyword = r#"
            [[rule]]
            id = "nokw"
            description = "x"
            keywords = []
            regex = '(?P<secret>x)'
        "#;
        let e = Rules::builtin_with(no_keyword, "mine.toml").unwrap_err();
        assert!(e.message().contains("nokw"), "{e}");
        let e = Rules::builtin_with("[[rule]]\nid = 3", "mine.toml").unwrap_err();
        assert!(e.message().contains("mine.toml"), "{e}");
    }
}
