//! `sealbox rotate` and `sealbox rotation status`: the library's rotation engine, with the
//! config's `rotation:` schedule. Reports hold names, versions, times and errors, never values.

use std::time::SystemTime;

use serde::Serialize;

use sealbox::rotation::{RolledBack, Rotation};
use sealbox::{Error, Result};

use crate::args::{RotateArgs, RotationCommand};
use crate::output::{Outcome, Report, time_text, timestamp};
use crate::session::Session;

async fn rotation<'a>(
    sb: &'a sealbox::Sealbox,
    schedule: Option<sealbox::config::rotation::RotationConfig>,
) -> Rotation<'a> {
    match schedule {
        Some(s) => sb.rotation().schedule(s),
        None => sb.rotation(),
    }
}

#[derive(Debug, Serialize)]
struct Rotated {
    name: String,
    current: String,
    previous: Option<String>,
    resumed: bool,
}

impl Report for Rotated {
    fn human(&self) -> String {
        format!(
            "rotated {}: version {} is CURRENT{}{}\n",
            self.name,
            self.current,
            self.previous
                .as_ref()
                .map(|p| format!(", {p} is PREVIOUS"))
                .unwrap_or_default(),
            if self.resumed {
                " (resumed an interrupted rotation)"
            } else {
                ""
            }
        )
    }
}

#[derive(Debug, Serialize)]
struct RolledBackReport {
    name: String,
    outcome: &'static str,
    version: String,
}

impl Report for RolledBackReport {
    fn human(&self) -> String {
        match self.outcome {
            "abandoned" => format!(
                "abandoned the unfinished rotation of {}: version {} is no longer PENDING\n",
                self.name, self.version
            ),
            _ => format!(
                "rolled back {}: version {} is CURRENT again\n",
                self.name, self.version
            ),
        }
    }
}

#[derive(Debug, Serialize)]
struct DueFailure {
    name: String,
    error: String,
}

#[derive(Debug, Serialize)]
struct DueReport {
    rotated: Vec<Rotated>,
    skipped: Vec<String>,
    failed: Vec<DueFailure>,
}

impl Report for DueReport {
    fn human(&self) -> String {
        let mut out = String::new();
        for r in &self.rotated {
            out.push_str(&r.human());
        }
        for f in &self.failed {
            out.push_str(&format!("FAILED {}: {}\n", f.name, f.error));
        }
        out.push_str(&format!(
            "{} rotated, {} not due or rotated elsewhere, {} failed\n",
            self.rotated.len(),
            self.skipped.len(),
            self.failed.len()
        ));
        out
    }
}

/// `sealbox rotate NAME`, `sealbox rotate --due`, `sealbox rotate --rollback NAME`.
pub async fn rotate(session: &Session, args: RotateArgs) -> Result<Outcome> {
    let (sb, schedule) = session.rotation_client().await?;
    let rotation = rotation(&sb, schedule).await;
    if args.due {
        let report = rotation.run_due().await?;
        let mut first_failure = None;
        let out = DueReport {
            rotated: report
                .rotated
                .into_iter()
                .map(|(n, d)| Rotated {
                    name: n.to_string(),
                    current: d.current.to_string(),
                    previous: d.previous.map(|p| p.to_string()),
                    resumed: d.resumed,
                })
                .collect(),
            skipped: report.skipped.iter().map(ToString::to_string).collect(),
            failed: report
                .failed
                .into_iter()
                .map(|(n, e)| {
                    let f = DueFailure {
                        name: n.to_string(),
                        error: e.to_string(),
                    };
                    first_failure.get_or_insert(e);
                    f
                })
                .collect(),
        };
        return Ok(match first_failure {
            Some(e) => Outcome::failed_report(&out, e),
            None => Outcome::report(&out),
        });
    }
    let name = args
        .name
        .ok_or_else(|| Error::invalid_input("name a secret to rotate, or give --due"))?;
    if args.rollback {
        let (outcome, version) = match rotation.rollback(&name).await? {
            RolledBack::Finished { restored, .. } => ("rolled_back", restored),
            RolledBack::Abandoned { pending } => ("abandoned", pending),
        };
        return Ok(Outcome::report(&RolledBackReport {
            name,
            outcome,
            version: version.to_string(),
        }));
    }
    let done = rotation.rotate(&name).await?;
    Ok(Outcome::report(&Rotated {
        name,
        current: done.current.to_string(),
        previous: done.previous.map(|p| p.to_string()),
        resumed: done.resumed,
    }))
}

#[derive(Debug, Serialize)]
struct FailureRow {
    at: Option<String>,
    step: &'static str,
    reason: String,
}

#[derive(Debug, Serialize)]
struct StatusRow {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    pattern: String,
    period_days: u64,
    last_rotated: Option<String>,
    next_due: Option<String>,
    due: bool,
    pending: Option<String>,
    pending_step: Option<&'static str>,
    last_failure: Option<FailureRow>,
    failures: u32,
    lease_holder: Option<String>,
}

#[derive(Debug, Serialize)]
struct StatusReport {
    secrets: Vec<StatusRow>,
}

impl Report for StatusReport {
    fn human(&self) -> String {
        let mut out = String::from("NAME\tTYPE\tLAST ROTATED\tNEXT DUE\tLAST FAILURE\n");
        for r in &self.secrets {
            let failure = r
                .last_failure
                .as_ref()
                .map(|f| format!("{} at {}: {}", time_text(&f.at), f.step, f.reason))
                .unwrap_or_else(|| "-".to_owned());
            out.push_str(&format!(
                "{}\t{}\t{}\t{}{}\t{}\n",
                r.name,
                r.kind,
                time_text(&r.last_rotated),
                time_text(&r.next_due),
                if r.due { " (due)" } else { "" },
                failure
            ));
        }
        out
    }
}

/// `sealbox rotation status`.
pub async fn run(session: &Session, command: RotationCommand) -> Result<Outcome> {
    let RotationCommand::Status = command;
    let (sb, schedule) = session.rotation_client().await?;
    let rotation = rotation(&sb, schedule).await;
    let now = SystemTime::now();
    let secrets = rotation
        .status()
        .await?
        .into_iter()
        .map(|s| StatusRow {
            name: s.status.name.to_string(),
            kind: s.kind,
            pattern: s.pattern,
            period_days: s.period.as_secs() / 86_400,
            last_rotated: timestamp(s.status.last_rotated),
            next_due: timestamp(s.next_due),
            due: s.next_due.is_none_or(|t| t <= now) || s.status.pending.is_some(),
            pending: s.status.pending.as_ref().map(|(v, _)| v.to_string()),
            pending_step: s
                .status
                .pending
                .as_ref()
                .and_then(|(_, step)| step.map(|s| s.as_str())),
            last_failure: s.status.last_failure.map(|f| FailureRow {
                at: timestamp(Some(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(f.at_ms),
                )),
                step: f.step.as_str(),
                reason: f.reason,
            }),
            failures: s.status.failures,
            lease_holder: s.status.lease.map(|l| l.holder),
        })
        .collect();
    Ok(Outcome::report(&StatusReport { secrets }))
}
