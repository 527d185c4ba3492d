//! Access policy: rules give principals capabilities on secret-name patterns.
//!
//! * With no rules configured every access is allowed (an embedded single-user vault).
//! * Once any rule exists, access is **denied by default**: a call needs an `allow` rule that
//!   matches the principal, the capability and the name, and no matching `deny` rule.
//! * Patterns: `*` matches any run of characters, `/` included (as in IAM resource patterns,
//!   so `predis/prod/*` covers `predis/prod/database/password`); `{var}` matches one segment
//!   (no `/` or `:`) and binds it. A variable bound in the principal pattern must take the same
//!   value in the name pattern, which is how tenants are isolated:
//!   `principals: ["tenant:{id}"]`, `secrets: ["predis/customer/{id}/*"]`.
//! * `admin` implies every other capability.
//!
//! Every deny is audited by the client (see [`crate::audit`]).

mod pattern;

use std::fmt;

use serde::Deserialize;

use crate::client::Principal;
use crate::error::{Error, Result};

pub use pattern::Pattern;

/// What a principal may do to a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    /// `get`, `get_field`, `get_version`, `describe`.
    Read,
    /// `put`, `set_stage`.
    Write,
    /// `delete`, `restore`.
    Delete,
    /// `list`.
    List,
    /// Rotation (create PENDING, promote).
    Rotate,
    /// Everything above plus key operations and erasure.
    Admin,
}

impl Capability {
    /// The lowercase name used in config, audit events and errors.
    pub const fn as_str(self) -> &'static str {
        match self {
            Capability::Read => "read",
            Capability::Write => "write",
            Capability::Delete => "delete",
            Capability::List => "list",
            Capability::Rotate => "rotate",
            Capability::Admin => "admin",
        }
    }

    /// All capabilities (for tests and tables).
    pub const ALL: [Capability; 6] = [
        Capability::Read,
        Capability::Write,
        Capability::Delete,
        Capability::List,
        Capability::Rotate,
        Capability::Admin,
    ];
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a rule grants or refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Grants the capabilities.
    Allow,
    /// Refuses them, overriding any allow.
    Deny,
}

/// One rule: `effect` `capabilities` on `secrets` for `principals`.
#[derive(Clone, Debug)]
pub struct Rule {
    effect: Effect,
    principals: Vec<Pattern>,
    capabilities: Vec<Capability>,
    secrets: Vec<Pattern>,
}

impl Rule {
    /// An allow rule. Patterns are checked here; a bad pattern is a [`crate::ErrorKind::Config`]
    /// error.
    pub fn allow(
        principals: &[&str],
        capabilities: &[Capability],
        secrets: &[&str],
    ) -> Result<Rule> {
        Rule::new(Effect::Allow, principals, capabilities, secrets)
    }

    /// A deny rule.
    pub fn deny(
        principals: &[&str],
        capabilities: &[Capability],
        secrets: &[&str],
    ) -> Result<Rule> {
        Rule::new(Effect::Deny, principals, capabilities, secrets)
    }

    fn new(
        effect: Effect,
        principals: &[&str],
        capabilities: &[Capability],
        secrets: &[&str],
    ) -> Result<Rule> {
        if principals.is_empty() || capabilities.is_empty() || secrets.is_empty() {
            return Err(Error::config(
                "a policy rule needs at least one principal, one capability and one secret pattern",
            ));
        }
        let principals = principals
            .iter()
            .map(|p| Pattern::new(p))
            .collect::<Result<Vec<_>>>()?;
        let secrets = secrets
            .iter()
            .map(|p| Pattern::new(p))
            .collect::<Result<Vec<_>>>()?;
        for s in &secrets {
            for var in s.variables() {
                if !principals.iter().all(|p| p.variables().any(|v| v == var)) {
                    return Err(Error::config(format!(
                        "secret pattern {:?} uses {{{var}}}, which every principal pattern of the rule must bind",
                        s.as_str()
                    )));
                }
            }
        }
        Ok(Rule {
            effect,
            principals,
            capabilities: capabilities.to_vec(),
            secrets,
        })
    }

    fn grants(&self, capability: Capability) -> bool {
        self.capabilities
            .iter()
            .any(|c| *c == capability || *c == Capability::Admin)
    }

    fn matches(&self, principal: &str, capability: Capability, name: &str) -> bool {
        if !self.grants(capability) {
            return false;
        }
        self.principals.iter().any(|p| {
            let mut bindings = pattern::Bindings::default();
            p.matches_binding(principal, &mut bindings)
                && self
                    .secrets
                    .iter()
                    .any(|s| s.matches_with(name, &mut bindings.clone()))
        })
    }
}

/// The outcome of a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed (by a rule, or because no policy is configured).
    Allow,
    /// Refused because no allow rule matched (deny by default).
    DefaultDeny,
    /// Refused by an explicit deny rule.
    ExplicitDeny,
}

impl Decision {
    /// Whether the access may go ahead.
    pub fn is_allowed(self) -> bool {
        self == Decision::Allow
    }

    /// The audit `reason` for a deny.
    pub fn reason(self) -> &'static str {
        match self {
            Decision::Allow => "allowed",
            Decision::DefaultDeny => "no policy rule allows this",
            Decision::ExplicitDeny => "denied by policy rule",
        }
    }
}

/// A set of rules. Empty means "allow everything"; see the module docs.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    rules: Vec<Rule>,
}

impl Policy {
    /// No rules: everything is allowed.
    pub fn allow_all() -> Policy {
        Policy::default()
    }

    /// A policy from rules (deny by default once there is one).
    pub fn new(rules: Vec<Rule>) -> Policy {
        Policy { rules }
    }

    /// Adds a rule.
    pub fn with_rule(mut self, rule: Rule) -> Policy {
        self.rules.push(rule);
        self
    }

    /// Whether any rule is configured.
    pub fn is_enforcing(&self) -> bool {
        !self.rules.is_empty()
    }

    /// Decides whether `principal` may use `capability` on `name` (a secret name or, for
    /// `list`, a prefix).
    pub fn check(&self, principal: &Principal, capability: Capability, name: &str) -> Decision {
        if self.rules.is_empty() {
            return Decision::Allow;
        }
        let who = principal.as_str();
        let mut allowed = false;
        for rule in &self.rules {
            if rule.matches(who, capability, name) {
                match rule.effect {
                    Effect::Deny => return Decision::ExplicitDeny,
                    Effect::Allow => allowed = true,
                }
            }
        }
        if allowed {
            Decision::Allow
        } else {
            Decision::DefaultDeny
        }
    }

    /// Builds a policy from its config section.
    pub fn from_config(config: &PolicyConfig) -> Result<Policy> {
        let mut rules = Vec::with_capacity(config.rules.len());
        for (i, r) in config.rules.iter().enumerate() {
            let principals: Vec<&str> = r.principals.iter().map(String::as_str).collect();
            let secrets: Vec<&str> = r.secrets.iter().map(String::as_str).collect();
            let at = |e: Error| Error::config(format!("policy.rules[{i}]: {}", e.message()));
            if !r.allow.is_empty() {
                rules.push(Rule::allow(&principals, &r.allow, &secrets).map_err(at)?);
            }
            if !r.deny.is_empty() {
                rules.push(Rule::deny(&principals, &r.deny, &secrets).map_err(at)?);
            }
            if r.allow.is_empty() && r.deny.is_empty() {
                return Err(Error::config(format!(
                    "policy.rules[{i}]: a rule needs `allow` or `deny` capabilities"
                )));
            }
        }
        Ok(Policy { rules })
    }
}

/// The `policy:` config section.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// The rules, in any order (deny wins over allow).
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// One rule in config.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Principal patterns (`svc:predis-*`, `tenant:{id}`).
    pub principals: Vec<String>,
    /// Secret-name patterns (`predis/prod/*`).
    pub secrets: Vec<String>,
    /// Capabilities granted.
    #[serde(default)]
    pub allow: Vec<Capability>,
    /// Capabilities refused.
    #[serde(default)]
    pub deny: Vec<Capability>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use Capability::*;

    fn p(name: &str) -> Principal {
        Principal::new(name)
    }

    #[test]
    fn no_rules_allows_everything() {
        let policy = Policy::allow_all();
        for c in Capability::ALL {
            assert!(policy.check(&p("anyone"), c, "a/b").is_allowed());
        }
    }

    #[test]
    fn one_rule_turns_on_default_deny() {
        let policy = Policy::default()
            .with_rule(Rule::allow(&["svc:cache"], &[Read], &["predis/prod/*"]).unwrap());
        assert!(
            policy
                .check(&p("svc:cache"), Read, "predis/prod/database/password")
                .is_allowed()
        );
        assert_eq!(
            policy.check(&p("svc:cache"), Write, "predis/prod/database/password"),
            Decision::DefaultDeny
        );
        assert_eq!(
            policy.check(&p("svc:other"), Read, "predis/prod/database/password"),
            Decision::DefaultDeny
        );
        assert_eq!(
            policy.check(&p("svc:cache"), Read, "predis/staging/database/password"),
            Decision::DefaultDeny
        );
    }

    #[test]
    fn deny_overrides_allow() {
        let policy = Policy::new(vec![
            Rule::allow(&["user:*"], &[Admin], &["*"]).unwrap(),
            Rule::deny(&["user:mallory"], &[Read], &["predis/prod/*"]).unwrap(),
        ]);
        assert!(
            policy
                .check(&p("user:alice"), Read, "predis/prod/x")
                .is_allowed()
        );
        assert_eq!(
            policy.check(&p("user:mallory"), Read, "predis/prod/x"),
            Decision::ExplicitDeny
        );
        assert!(
            policy
                .check(&p("user:mallory"), Write, "predis/prod/x")
                .is_allowed()
        );
    }

    #[test]
    fn variables_must_be_bound_by_the_principal() {
        assert!(Rule::allow(&["svc:*"], &[Read], &["t/{id}/*"]).is_err());
        assert!(Rule::allow(&["tenant:{id}"], &[Read], &["t/{id}/*"]).is_ok());
    }
}
