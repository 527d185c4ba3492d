//! Rotation through a [`Sealbox`] client: names routed as the client routes them, the
//! `rotate` capability checked under its policy, every step in its audit log, its cache
//! dropped for the rotated secret, and schedules from the `rotation:` section.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::audit::Action;
use crate::client::Sealbox;
use crate::config::ProviderConfig;
use crate::config::rotation::{RotationConfig, RotatorConfig, SecretRotation};
use crate::error::{Error, ErrorKind, Result};
use crate::policy::Capability;
use crate::store::SecretName;

use super::engine::{NewValue, RolledBack, Rotated, RotationEngine, Status};
use super::exec::Exec;
use super::generator::Generator;
use super::policy::CredentialPolicy;
use super::registry::{RotatorRegistry, RotatorSettings};
use super::rotator::{Generated, Rotator};

impl Sealbox {
    /// Rotation through this client (see [`Rotation`]).
    pub fn rotation(&self) -> Rotation<'_> {
        Rotation {
            sb: self,
            schedule: self.rotation_schedule().cloned(),
            rotators: None,
            lease_ttl: super::engine::DEFAULT_LEASE_TTL,
        }
    }
}

/// Rotates secrets through a client. Each call needs the `rotate` capability on the name
/// under the client's policy; the store is reached through the client's routes. The schedule
/// is the client's config's `rotation:` section unless [`Rotation::schedule`] gives one.
#[derive(Debug)]
pub struct Rotation<'a> {
    sb: &'a Sealbox,
    schedule: Option<RotationConfig>,
    rotators: Option<RotatorRegistry>,
    lease_ttl: Duration,
}

/// One scheduled secret's state, as `sealbox rotation status` shows it.
#[derive(Clone, Debug)]
pub struct ScheduledStatus {
    /// The pattern of the `rotation.secrets` entry that covers it.
    pub pattern: String,
    /// Its credential type.
    pub kind: String,
    /// The type's period.
    pub period: Duration,
    /// When the next rotation is due (now or past: due).
    pub next_due: Option<SystemTime>,
    /// The engine's status.
    pub status: Status,
}

/// What [`Rotation::run_due`] did.
#[derive(Debug, Default)]
pub struct DueReport {
    /// Secrets this process rotated.
    pub rotated: Vec<(SecretName, Rotated)>,
    /// Secrets not due, or rotated by another process holding the lease.
    pub skipped: Vec<SecretName>,
    /// Secrets whose rotation failed, with the error.
    pub failed: Vec<(SecretName, Error)>,
}

impl<'a> Rotation<'a> {
    /// Uses `schedule` (a config file's `rotation:` section) for rotators, generators and
    /// periods.
    pub fn schedule(mut self, schedule: RotationConfig) -> Rotation<'a> {
        self.schedule = Some(schedule);
        self
    }

    /// The registry a schedule's `{NAME: {SETTINGS}}` rotators are built from (default: the
    /// global one, [`RotatorRegistry::global`]).
    pub fn rotators(mut self, registry: RotatorRegistry) -> Rotation<'a> {
        self.rotators = Some(registry);
        self
    }

    /// How long a rotation's lease lasts without a step renewing it.
    pub fn lease_ttl(mut self, ttl: Duration) -> Rotation<'a> {
        self.lease_ttl = ttl;
        self
    }

    /// Rotates `name` now with the rotator and generator its schedule entry gives (the
    /// `generated` rotator and a 32-byte base64url token without one), resuming an
    /// interrupted rotation.
    pub async fn rotate(&self, name: &str) -> Result<Rotated> {
        let (rotator, value) = self.plan(name).await?;
        self.rotate_with(name, rotator.as_ref(), value).await
    }

    /// Rotates `name` to `value` (a value the caller made, say) with the rotator its schedule
    /// entry gives.
    pub async fn rotate_to(&self, name: &str, value: NewValue) -> Result<Rotated> {
        let (rotator, _) = self.plan(name).await?;
        self.rotate_with(name, rotator.as_ref(), value).await
    }

    /// Rotates `name` with `rotator` and `value`.
    pub async fn rotate_with(
        &self,
        name: &str,
        rotator: &dyn Rotator,
        value: NewValue,
    ) -> Result<Rotated> {
        let (engine, secret) = self.engine(name)?;
        let out = engine.rotate(&secret, rotator, value).await;
        self.dropped_from_cache(name);
        out
    }

    /// Undoes `name`'s last rotation, or abandons its unfinished one (see
    /// [`RotationEngine::rollback`]), telling the target through its scheduled rotator.
    pub async fn rollback(&self, name: &str) -> Result<RolledBack> {
        let (rotator, _) = self.plan(name).await?;
        let (engine, secret) = self.engine(name)?;
        let out = engine.rollback(&secret, rotator.as_ref()).await;
        self.dropped_from_cache(name);
        out
    }

    /// Undoes `name`'s last rotation with `rotator` (the one it was rotated with, when that is
    /// not the schedule's).
    pub async fn rollback_with(&self, name: &str, rotator: &dyn Rotator) -> Result<RolledBack> {
        let (engine, secret) = self.engine(name)?;
        let out = engine.rollback(&secret, rotator).await;
        self.dropped_from_cache(name);
        out
    }

    /// Rotates every scheduled secret whose period has passed. Safe to run from every
    /// process of a fleet on a timer: the lease lets one rotate each secret, the others
    /// skip it.
    pub async fn run_due(&self) -> Result<DueReport> {
        let mut report = DueReport::default();
        for (name, rule) in self.scheduled().await? {
            let period = self.period(&rule)?;
            let (rotator, value) = self.plan(name.as_str()).await?;
            let (engine, secret) = self.engine(name.as_str())?;
            match engine
                .rotate_if_due(&secret, rotator.as_ref(), value, period)
                .await
            {
                Ok(Some(done)) => {
                    self.dropped_from_cache(name.as_str());
                    report.rotated.push((name, done));
                }
                Ok(None) => report.skipped.push(name),
                Err(e) => report.failed.push((name, e)),
            }
        }
        Ok(report)
    }

    /// The status of every scheduled secret.
    pub async fn status(&self) -> Result<Vec<ScheduledStatus>> {
        let mut out = Vec::new();
        for (name, rule) in self.scheduled().await? {
            let period = self.period(&rule)?;
            let (engine, secret) = self.engine(name.as_str())?;
            let status = engine.status(&secret).await?;
            let pattern = self
                .schedule
                .as_ref()
                .and_then(|s| s.rule_for(name.as_str()))
                .map(|(p, _)| p.to_owned())
                .unwrap_or_default();
            out.push(ScheduledStatus {
                pattern,
                kind: rule.kind.clone(),
                period,
                next_due: status.last_rotated.map(|t| t + period),
                status,
            });
        }
        Ok(out)
    }

    /// The status of one secret.
    pub async fn status_of(&self, name: &str) -> Result<Status> {
        let (engine, secret) = self.engine(name)?;
        engine.status(&secret).await
    }

    fn period(&self, rule: &SecretRotation) -> Result<Duration> {
        self.schedule
            .as_ref()
            .and_then(|s| s.period(&rule.kind))
            .ok_or_else(|| {
                Error::config(format!(
                    "rotation type {} has no period; add it under rotation.types (e.g. {}: 30d)",
                    rule.kind, rule.kind
                ))
            })
    }

    /// Every existing secret some schedule pattern covers, with its rule.
    async fn scheduled(&self) -> Result<Vec<(SecretName, SecretRotation)>> {
        let schedule = self.schedule.as_ref().ok_or_else(|| {
            Error::config(
                "no rotation schedule: add a rotation: section to the config file or give one \
                 with Rotation::schedule",
            )
        })?;
        let mut out: Vec<(SecretName, SecretRotation)> = Vec::new();
        for pattern in schedule.secrets.keys() {
            let prefix = pattern.split('*').next().unwrap_or("");
            for entry in self.sb.list(prefix).await? {
                let name = entry.name;
                if entry.deleted
                    || name.as_str().starts_with("_sealbox/")
                    || out.iter().any(|(n, _)| *n == name)
                {
                    continue;
                }
                if let Some((p, rule)) = schedule.rule_for(name.as_str())
                    && p == pattern
                {
                    out.push((name, rule.clone()));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The rotator and value source for `name`.
    async fn plan(&self, name: &str) -> Result<(Arc<dyn Rotator>, NewValue)> {
        let rule = self.schedule.as_ref().and_then(|s| s.rule_for(name));
        let Some((pattern, rule)) = rule else {
            return Ok((
                Arc::new(Generated),
                NewValue::Generate(Generator::Base64Url { bytes: 32 }),
            ));
        };
        let generator = Self::generator(name, rule)?;
        let rotator: Arc<dyn Rotator> = match &rule.rotator {
            RotatorConfig::Generated => Arc::new(Generated),
            RotatorConfig::Exec(argv) => {
                let (program, args) = argv.split_first().ok_or_else(|| {
                    Error::config(format!("the exec rotator of {name} names no program"))
                })?;
                Arc::new(Exec::new(program, args.to_vec()))
            }
            RotatorConfig::Registered {
                name: rotator,
                settings,
            } => {
                let at = format!("rotation.secrets.{pattern:?}.rotator.{rotator}");
                let config = ProviderConfig::new(
                    rotator.clone(),
                    at,
                    settings.clone(),
                    self.schedule
                        .as_ref()
                        .and_then(|s| s.base_dir())
                        .map(Path::to_path_buf),
                );
                let settings = RotatorSettings::new(config, generator.clone(), self.sb.clone());
                let registry = match &self.rotators {
                    Some(r) => r.clone(),
                    None => RotatorRegistry::global_snapshot(),
                };
                registry.build(rotator, settings).await?
            }
        };
        let value = rotator.pending_value(generator);
        Ok((rotator, value))
    }

    /// The generator `rule`'s credential type calls for.
    fn generator(name: &str, rule: &SecretRotation) -> Result<Generator> {
        Ok(match rule.kind.as_str() {
            "api_key" => Generator::ApiKey {
                prefix: "sbk".into(),
                bytes: rule.length.unwrap_or(32),
            },
            "user_password" | "service_account" => Generator::Password {
                length: rule.length.unwrap_or(24),
                policy: CredentialPolicy::SOC2,
            },
            "certificate" => {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "{name} is a certificate: certificates are issued, not generated; \
                         rotate it by writing the new one as PENDING with the rotator that \
                         installs it (RotationEngine with NewValue::Given)"
                    ),
                ));
            }
            _ => Generator::Base64Url {
                bytes: rule.length.unwrap_or(32),
            },
        })
    }

    /// The engine for `name`'s store, after checking the `rotate` capability.
    fn engine(&self, name: &str) -> Result<(RotationEngine, SecretName)> {
        let route = self.sb.router().resolve(name)?;
        let resource = route.resource();
        self.sb
            .authorize(Capability::Rotate, Action::Rotate, &resource)?;
        let sb = self.sb.clone();
        let engine = RotationEngine::new(route.store.clone(), &route.store_id)
            .principal(self.sb.principal().clone())
            .lease_ttl(self.lease_ttl)
            .on_event(move |event| {
                if let Err(e) = sb.record_event(event) {
                    tracing::error!(target: "sealbox::rotation", error = %e,
                        "could not record a rotation audit event");
                }
            });
        Ok((engine, route.name))
    }

    fn dropped_from_cache(&self, name: &str) {
        if let (Some(cache), Ok(route)) = (self.sb.cache(), self.sb.router().resolve(name)) {
            cache.invalidate(&route.store_id, &route.name);
        }
    }
}
