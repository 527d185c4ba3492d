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
//! * Stores: a secret pattern `sb://STORE/PATTERN` covers names in store `STORE` (itself a
//!   pattern: `sb://*/app/*` covers `app/...` in every store), however they are reached. A
//!   pattern without `sb://` covers a name only where its **default route** takes it: the
//!   store a bare `NAME` goes to. So `app/*` allows `app/x` and `sb://default/app/x` when
//!   `app/x` routes to `default`, but not `sb://other/app/x`.
//! * `admin` implies every other capability.
//!
//! Every deny is audited by the client (see [`crate::audit`]).

mod index;
mod pattern;

use std::fmt;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::principal::Principal;

pub use pattern::Pattern;

/// What a principal may do to a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    /// `get`, `get_field`, `get_version`, `describe`.
    Read,
    /// `put` (a new version, staged as the put says).
    Write,
    /// `delete`.
    Delete,
    /// `list`.
    List,
    /// Changing which version readers get without writing one: `set_stage` (promote,
    /// roll back) and `restore` of a deleted secret.
    Rotate,
    /// Everything above plus key operations (rotation, retirement; `*` for the master key,
    /// `NAMESPACE/*` for a namespace's key) and erasure.
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
    secrets: Vec<SecretPattern>,
}

/// A secret pattern: a name pattern, and the stores it covers (`None`: the default route).
#[derive(Clone, Debug)]
struct SecretPattern {
    store: Option<Pattern>,
    name: Pattern,
}

impl SecretPattern {
    fn new(source: &str) -> Result<SecretPattern> {
        let Some(rest) = source.strip_prefix("sb://") else {
            return Ok(SecretPattern {
                store: None,
                name: Pattern::new(source)?,
            });
        };
        match rest.split_once('/') {
            Some((store, name)) if !store.is_empty() && !name.is_empty() => Ok(SecretPattern {
                store: Some(Pattern::new(store)?),
                name: Pattern::new(name)?,
            }),
            _ => Err(Error::config(format!(
                "secret pattern {source:?} must be sb://STORE/NAME-PATTERN (e.g. sb://vault/app/*)"
            ))),
        }
    }

    fn variables(&self) -> impl Iterator<Item = &str> {
        self.store
            .iter()
            .flat_map(Pattern::variables)
            .chain(self.name.variables())
    }

    /// Whether the pattern covers `name` at `at`; its variables are all bound (by the
    /// rule's principal pattern), so it binds nothing.
    fn matches<'a>(
        &'a self,
        at: Location<'a>,
        name: &'a str,
        bindings: &pattern::Bindings<'a>,
    ) -> bool {
        match (&self.store, at.store) {
            (None, _) => at.default_route && self.name.matches_bound(name, bindings),
            (Some(p), Some(store)) => {
                p.matches_bound(store, bindings) && self.name.matches_bound(name, bindings)
            }
            (Some(_), None) => false,
        }
    }
}

/// Where an access lands: the store (when known) and whether the bare name routes there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location<'a> {
    /// The store id, or `None` when the caller does not know it (then only rules without
    /// `sb://` apply, as for a default route).
    pub store: Option<&'a str>,
    /// Whether the access goes where the bare name's route goes (not to a store named
    /// by an `sb://` reference that the name does not route to).
    pub default_route: bool,
}

impl Location<'_> {
    /// The name's default route, store not known: what [`Policy::check`] assumes.
    pub const DEFAULT_ROUTE: Location<'static> = Location {
        store: None,
        default_route: true,
    };
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
        let compiled = secrets
            .iter()
            .map(|p| SecretPattern::new(p))
            .collect::<Result<Vec<_>>>()?;
        for (s, source) in compiled.iter().zip(secrets) {
            for var in s.variables() {
                if !principals.iter().all(|p| p.variables().any(|v| v == var)) {
                    return Err(Error::config(format!(
                        "secret pattern {source:?} uses {{{var}}}, which every principal pattern of the rule must bind",
                    )));
                }
            }
        }
        let secrets = compiled;
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

    /// Whether the rule applies through its principal pattern `which`.
    fn matches_via(&self, which: usize, principal: &str, at: Location<'_>, name: &str) -> bool {
        let mut bindings = pattern::Bindings::default();
        self.principals[which].matches_binding(principal, &mut bindings)
            && self.secrets.iter().any(|s| s.matches(at, name, &bindings))
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
///
/// Rules are indexed by their principal patterns' literal prefixes when added, so a check
/// looks only at the rules whose principal patterns can match the caller (with 10,000 rules,
/// a handful instead of all of them).
#[derive(Clone, Default)]
pub struct Policy {
    rules: Vec<Rule>,
    index: index::PrincipalIndex,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// No rules: everything is allowed.
    pub fn allow_all() -> Policy {
        Policy::default()
    }

    /// A policy from rules (deny by default once there is one).
    pub fn new(rules: Vec<Rule>) -> Policy {
        rules
            .into_iter()
            .fold(Policy::default(), |policy, rule| policy.with_rule(rule))
    }

    /// Adds a rule.
    pub fn with_rule(mut self, rule: Rule) -> Policy {
        let at = self.rules.len();
        for (which, p) in rule.principals.iter().enumerate() {
            self.index.insert(p, at, which);
        }
        self.rules.push(rule);
        self
    }

    /// Whether any rule is configured.
    pub fn is_enforcing(&self) -> bool {
        !self.rules.is_empty()
    }

    /// Decides whether `principal` may use `capability` on `name` (a secret name or, for
    /// `list`, a prefix) reached through its default route.
    pub fn check(&self, principal: &Principal, capability: Capability, name: &str) -> Decision {
        self.check_at(principal, capability, Location::DEFAULT_ROUTE, name)
    }

    /// Decides whether `principal` may use `capability` on `name` in the store `at`.
    pub fn check_at(
        &self,
        principal: &Principal,
        capability: Capability,
        at: Location<'_>,
        name: &str,
    ) -> Decision {
        if self.rules.is_empty() {
            return Decision::Allow;
        }
        let who = principal.as_str();
        let mut allowed = false;
        let mut denied = false;
        self.index.candidates(who, |rule, which| {
            let rule = &self.rules[rule];
            // An allow already found needs no second one; a deny always counts.
            let useful = rule.effect == Effect::Deny || !allowed;
            if useful && rule.grants(capability) && rule.matches_via(which, who, at, name) {
                match rule.effect {
                    Effect::Deny => denied = true,
                    Effect::Allow => allowed = true,
                }
            }
            !denied
        });
        if denied {
            Decision::ExplicitDeny
        } else if allowed {
            Decision::Allow
        } else {
            Decision::DefaultDeny
        }
    }

    /// Builds a policy from its config section.
    pub fn from_config(config: &PolicyConfig) -> Result<Policy> {
        let mut policy = Policy::default();
        for (i, r) in config.rules.iter().enumerate() {
            let principals: Vec<&str> = r.principals.iter().map(String::as_str).collect();
            let secrets: Vec<&str> = r.secrets.iter().map(String::as_str).collect();
            let at = |e: Error| Error::config(format!("policy.rules[{i}]: {}", e.message()));
            if !r.allow.is_empty() {
                policy =
                    policy.with_rule(Rule::allow(&principals, &r.allow, &secrets).map_err(at)?);
            }
            if !r.deny.is_empty() {
                policy = policy.with_rule(Rule::deny(&principals, &r.deny, &secrets).map_err(at)?);
            }
            if r.allow.is_empty() && r.deny.is_empty() {
                return Err(Error::config(format!(
                    "policy.rules[{i}]: a rule needs `allow` or `deny` capabilities"
                )));
            }
        }
        Ok(policy)
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
    /// Secret-name patterns (`predis/prod/*`), each covering the names' default routes, or
    /// naming stores: `sb://STORE/PATTERN`.
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

    /// The decision by trying every rule, as before the index existed.
    fn check_every_rule(
        policy: &Policy,
        who: &str,
        capability: Capability,
        name: &str,
    ) -> Decision {
        if policy.rules.is_empty() {
            return Decision::Allow;
        }
        let mut allowed = false;
        for rule in &policy.rules {
            let applies = rule.grants(capability)
                && (0..rule.principals.len())
                    .any(|w| rule.matches_via(w, who, Location::DEFAULT_ROUTE, name));
            if applies {
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

    #[test]
    fn the_principal_index_decides_as_trying_every_rule_does() {
        let principals = [
            "svc:a",
            "svc:ab",
            "svc:*",
            "svc:a*",
            "*",
            "*:a",
            "tenant:{id}",
            "{id}:x",
            "é:*",
            "é",
            "user:alice",
        ];
        let secrets = ["*", "a/*", "t/{id}/*", "x", "a/b"];
        let mut rules = Vec::new();
        for (i, p) in principals.iter().enumerate() {
            for (j, s) in secrets.iter().enumerate() {
                if s.contains("{id}") && !p.contains("{id}") {
                    continue;
                }
                let caps = [Capability::ALL[(i + j) % 6]];
                let rule = if (i * 7 + j) % 5 == 0 {
                    Rule::deny(&[p], &caps, &[s])
                } else {
                    let second = if s.contains("{id}") {
                        "x:{id}"
                    } else {
                        "svc:extra"
                    };
                    Rule::allow(&[p, second], &caps, &[s])
                };
                rules.push(rule.unwrap());
            }
        }
        let who = [
            "svc:a",
            "svc:ab",
            "svc:abc",
            "svc:",
            "svc",
            "tenant:a",
            "tenant:",
            "a:x",
            "é",
            "é:1",
            "user:alice",
            "user:bob",
            "svc:extra",
            "",
            "e",
        ];
        let names = ["a/b", "a/c", "t/a/x", "t/b/x", "x", "y", "a"];
        for n in 0..rules.len() {
            let policy = Policy::new(rules[..n].to_vec());
            for w in who {
                for c in Capability::ALL {
                    for name in names {
                        assert_eq!(
                            policy.check(&p(w), c, name),
                            check_every_rule(&policy, w, c, name),
                            "{n} rules, {w} {c} {name}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn variables_must_be_bound_by_the_principal() {
        assert!(Rule::allow(&["svc:*"], &[Read], &["t/{id}/*"]).is_err());
        assert!(Rule::allow(&["tenant:{id}"], &[Read], &["t/{id}/*"]).is_ok());
    }
}
