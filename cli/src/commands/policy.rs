//! `sealbox policy check`: which stored secrets break the credential policy, and which rules.
//!
//! Each secret's `CURRENT` value is read and checked in locked memory; a JSON credential
//! (`{"username", "password", ...}`) has its `password` field checked. The report holds names,
//! the field checked and the rules broken, never a value or a part of one.

use serde::Serialize;

use sealbox::rotation::CredentialPolicy;
use sealbox::store::{ListOptions, SecretStore, VersionSelector};
use sealbox::{ErrorKind, ExposeSecret, Result};

use crate::args::PolicyCommand;
use crate::output::{Outcome, Report};

/// The exit code when a secret breaks the policy (as `scan`'s "found").
pub const BROKEN: u8 = 1;

#[derive(Debug, Serialize)]
struct Broken {
    name: String,
    /// `password` for a JSON credential, else none (the whole value).
    field: Option<&'static str>,
    rules: Vec<String>,
}

#[derive(Debug, Serialize)]
struct CheckReport {
    policy: &'static str,
    checked: usize,
    broken: Vec<Broken>,
}

impl Report for CheckReport {
    fn human(&self) -> String {
        let mut out = String::new();
        for b in &self.broken {
            let at = b.field.map(|f| format!(" (field {f})")).unwrap_or_default();
            out.push_str(&format!("{}{at}: {}\n", b.name, b.rules.join("; ")));
        }
        out.push_str(&format!(
            "{} of {} secrets break the {} policy\n",
            self.broken.len(),
            self.checked,
            self.policy
        ));
        out
    }
}

/// The value to check: a JSON credential's `password` field, else the whole value.
fn checked_value(value: &sealbox::Secret) -> Result<(Option<&'static str>, sealbox::Secret)> {
    match value.json_field("password") {
        Ok(password) => Ok((Some("password"), password.into_secret())),
        // Not JSON, not an object, no such field: the value is the credential.
        Err(e) if matches!(e.kind(), ErrorKind::InvalidInput | ErrorKind::NotFound) => {
            Ok((None, value.try_clone()?))
        }
        Err(e) => Err(e),
    }
}

/// `sealbox policy check [PREFIX...]`.
pub async fn run(store: &dyn SecretStore, command: PolicyCommand) -> Result<Outcome> {
    let PolicyCommand::Check {
        prefixes,
        min_length,
    } = command;
    let (policy, policy_name) = match min_length {
        Some(n) => (CredentialPolicy::length_only(n), "length-only"),
        None => (CredentialPolicy::SOC2, "SOC2"),
    };
    let prefixes = if prefixes.is_empty() {
        vec![String::new()]
    } else {
        prefixes
    };
    let mut names = Vec::new();
    for prefix in prefixes {
        let mut options = ListOptions {
            prefix,
            ..ListOptions::default()
        };
        loop {
            let page = store.list(&options).await?;
            names.extend(
                page.entries
                    .into_iter()
                    .filter(|e| !e.deleted && !e.name.as_str().starts_with("_sealbox/"))
                    .map(|e| e.name),
            );
            match page.next_page_token {
                Some(token) => options.page_token = Some(token),
                None => break,
            }
        }
    }
    names.sort();
    names.dedup();
    let mut broken = Vec::new();
    for name in &names {
        let version = store.get(name, &VersionSelector::Current).await?;
        let (field, value) = checked_value(&version.value)?;
        let rules: Vec<String> = policy
            .violations(value.expose_secret())
            .iter()
            .map(ToString::to_string)
            .collect();
        if !rules.is_empty() {
            broken.push(Broken {
                name: name.to_string(),
                field,
                rules,
            });
        }
    }
    let report = CheckReport {
        policy: policy_name,
        checked: names.len(),
        broken,
    };
    let failed = !report.broken.is_empty();
    let outcome = Outcome::report(&report);
    Ok(if failed {
        outcome.with_exit_code(BROKEN)
    } else {
        outcome
    })
}
