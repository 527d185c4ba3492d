//! The `rotation:` section: periods per credential type and which secrets rotate how.
//!
//! ```yaml
//! rotation:
//!   types: {api_key: 30d, user_password: 90d, service_account: 180d, certificate: 365d}
//!   secrets:
//!     "predis/prod/api/*": {type: api_key, rotator: generated}
//!     "predis/prod/clickhouse/password":
//!       type: user_password
//!       rotator: {exec: ["/usr/local/bin/rotate-clickhouse", "--host", "ch1"]}
//!     "predis/prod/postgres/app":
//!       type: user_password
//!       rotator:
//!         postgres: {host: db1, port: 5432, admin_user: admin,
//!                    admin_password_file: /run/secrets/pg-admin, user: app,
//!                    strategy: alternating_users}
//! ```
//!
//! A rotator other than `generated` and `exec` is a map with one key, the name a rotator
//! crate registered ([`crate::rotation::RotatorRegistry`]: `postgres` and `mysql` come from
//! `sealbox-db-rotators`), whose value is that rotator's settings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The SOC2 CC6.2 periods of the Predis plan, used for types the file does not list.
pub const SOC2_PERIODS: [(&str, u64); 4] = [
    ("api_key", 30),
    ("user_password", 90),
    ("service_account", 180),
    ("certificate", 365),
];

/// The whole section.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationConfig {
    /// Credential type -> period (`30d`); the SOC2 periods fill in types not listed.
    #[serde(default, with = "periods")]
    pub types: BTreeMap<String, Duration>,
    /// Secret name pattern (`*` matches any run of characters) -> how it rotates. A name
    /// matched by several takes the longest pattern.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretRotation>,
    /// The config file's directory, which relative paths in rotator settings resolve against.
    #[serde(skip)]
    pub(crate) base_dir: Option<PathBuf>,
}

/// How one secret (or pattern of secrets) rotates.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRotation {
    /// The credential type, a key of `types` (or of the SOC2 periods).
    #[serde(rename = "type")]
    pub kind: String,
    /// The rotator.
    #[serde(default)]
    pub rotator: RotatorConfig,
    /// Length of generated passwords (characters) or tokens (random bytes).
    #[serde(default)]
    pub length: Option<usize>,
}

/// Which rotator: `generated`, `{exec: [PROGRAM, ARG...]}`, or `{NAME: {SETTINGS}}` for one a
/// rotator crate registered.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawRotator")]
pub enum RotatorConfig {
    /// No target: a new version is the whole rotation.
    #[default]
    Generated,
    /// A command (program then arguments) run per step with the value on stdin.
    Exec(Vec<String>),
    /// A rotator from the rotator registry (`postgres`, `mysql`), with its settings.
    Registered {
        /// The registered name.
        name: String,
        /// Its settings, read by its factory (they may hold a password: `Debug` redacts).
        settings: serde_json::Value,
    },
}

impl std::fmt::Debug for RotatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RotatorConfig::Generated => f.write_str("Generated"),
            RotatorConfig::Exec(argv) => f.debug_tuple("Exec").field(argv).finish(),
            RotatorConfig::Registered { name, settings } => f
                .debug_struct("Registered")
                .field("name", name)
                .field("settings", &super::Redacted(settings))
                .finish(),
        }
    }
}

/// The YAML forms of a rotator (a name, or a map with one key).
#[derive(Deserialize)]
#[serde(untagged)]
enum RawRotator {
    Name(String),
    Exec(ExecSpec),
    Registered(BTreeMap<String, serde_json::Value>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecSpec {
    exec: Vec<String>,
}

impl TryFrom<RawRotator> for RotatorConfig {
    type Error = String;
    fn try_from(raw: RawRotator) -> Result<RotatorConfig, String> {
        match raw {
            RawRotator::Name(n) if n == "generated" => Ok(RotatorConfig::Generated),
            RawRotator::Name(n) => Err(format!(
                "unknown rotator {n:?}; use generated, {{exec: [PROGRAM, ARG...]}} or a \
                 registered rotator with its settings, like {{postgres: {{host: ..., user: ...}}}}"
            )),
            RawRotator::Exec(ExecSpec { exec }) if exec.is_empty() => {
                Err("an exec rotator needs a program: {exec: [PROGRAM, ARG...]}".to_owned())
            }
            RawRotator::Exec(ExecSpec { exec }) => Ok(RotatorConfig::Exec(exec)),
            RawRotator::Registered(map) if map.len() == 1 => {
                let Some((name, settings)) = map.into_iter().next() else {
                    return Err("a rotator map needs one key".to_owned());
                };
                if !settings.is_object() && !settings.is_null() {
                    return Err(format!(
                        "the settings of rotator {name:?} must be a mapping, like \
                         {{{name}: {{host: ..., user: ...}}}}"
                    ));
                }
                Ok(RotatorConfig::Registered { name, settings })
            }
            RawRotator::Registered(map) => Err(format!(
                "a rotator map names one rotator, this one names {}: {}",
                map.len(),
                map.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

impl RotationConfig {
    /// The directory relative paths in rotator settings resolve against (the config file's).
    pub fn base_dir(&self) -> Option<&Path> {
        self.base_dir.as_deref()
    }

    /// The period of credential type `kind`.
    pub fn period(&self, kind: &str) -> Option<Duration> {
        self.types.get(kind).copied().or_else(|| {
            SOC2_PERIODS
                .iter()
                .find(|(k, _)| *k == kind)
                .map(|(_, days)| Duration::from_secs(days * 86_400))
        })
    }

    /// The rule for `name`: the longest matching pattern.
    pub fn rule_for(&self, name: &str) -> Option<(&str, &SecretRotation)> {
        self.secrets
            .iter()
            .filter(|(pattern, _)| matches(pattern.as_bytes(), name.as_bytes()))
            .max_by_key(|(pattern, _)| pattern.len())
            .map(|(p, r)| (p.as_str(), r))
    }
}

/// `*` matches any run of characters, `/` included (as policy patterns do).
fn matches(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|i| matches(rest, &name[i..])),
        Some((c, rest)) => name.first() == Some(c) && matches(rest, &name[1..]),
    }
}

mod periods {
    use super::*;
    use serde::Deserializer;

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Duration>, D::Error> {
        let raw = BTreeMap::<String, String>::deserialize(d)?;
        raw.into_iter()
            .map(|(k, v)| {
                humantime::parse_duration(&v)
                    .map(|p| (k.clone(), p))
                    .map_err(|e| {
                        serde::de::Error::custom(format!(
                            "rotation type {k}: period {v:?} is not a duration like 30d ({e})"
                        ))
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_example_parses_and_soc2_fills_in() {
        let c: RotationConfig = serde_norway::from_str(
            r#"
types: {api_key: 7d}
secrets:
  "predis/prod/api/*": {type: api_key, rotator: generated}
  "predis/prod/api/special": {type: user_password, rotator: {exec: ["/bin/true"]}}
"#,
        )
        .unwrap();
        assert_eq!(c.period("api_key"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(
            c.period("certificate"),
            Some(Duration::from_secs(365 * 86_400))
        );
        assert_eq!(c.period("nope"), None);
        assert_eq!(c.rule_for("predis/prod/api/key").unwrap().1.kind, "api_key");
        let (_, special) = c.rule_for("predis/prod/api/special").unwrap();
        assert_eq!(
            special.rotator,
            RotatorConfig::Exec(vec!["/bin/true".into()])
        );
        assert!(c.rule_for("predis/dev/api/key").is_none());
        for bad in [
            "{type: x, rotator: magic}",
            "{type: x, rotator: {exec: []}}",
        ] {
            let text = format!("secrets: {{\"a/*\": {bad}}}");
            assert!(
                serde_norway::from_str::<RotationConfig>(&text).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_registered_rotator_keeps_its_settings_and_debug_hides_the_password() {
        let c: RotationConfig = serde_norway::from_str(
            r#"
secrets:
  "db/*":
    type: user_password
    rotator: {postgres: {host: db1, admin_user: admin, admin_password: hunter2-inline, user: app}}
"#,
        )
        .unwrap();
        let RotatorConfig::Registered { name, settings } = &c.rule_for("db/app").unwrap().1.rotator
        else {
            panic!("not a registered rotator");
        };
        assert_eq!(name, "postgres");
        assert_eq!(settings["user"], "app");
        let debug = format!("{c:?}");
        assert!(debug.contains("postgres"), "{debug}");
        assert!(!debug.contains("hunter2-inline"), "{debug}");
        for bad in [
            "{type: x, rotator: {postgres: {}, mysql: {}}}",
            "{type: x, rotator: {postgres: [1, 2]}}",
            "{type: x, rotator: postgres}",
        ] {
            let text = format!("secrets: {{\"a/*\": {bad}}}");
            let e = serde_norway::from_str::<RotationConfig>(&text).unwrap_err();
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
    }
}
