//! Monitoring: metrics (see [`metrics`]) and detectors that raise [`Alert`]s.
//!
//! The detectors run on the audit writer thread as an [`AuditObserver`], so they see every
//! access in order without adding work to the hit path. Each alert goes into the audit log
//! (level `alert`, event `alert.<kind>`) and to the registered hooks. The hooks run on their
//! own thread (`sealbox-alert-hooks`), fed by a bounded channel, so a slow or stuck hook never
//! stalls the audit writer: when [`HOOK_BACKLOG`] alerts are waiting for the hooks, further
//! alerts skip the hooks (they are still in the audit log and in the `alerts` metric) and a
//! warning says so. Hooks are called after the fact: `flush_audit` does not wait for them.
//!
//! * failed-access bursts: `failed_burst` (default 5) failed accesses by one principal within
//!   `window` (default 1 minute);
//! * access-rate spikes: more than `rate_per_minute` (default 10) reads of one secret by one
//!   principal within a minute (cache hits included);
//! * access outside configured hours (`hours: {start: "08:00", end: "18:00", utc_offset: "+01:00"}`);
//! * unknown sources: a `source_ip` not in `known_sources` (when that list is set).

pub mod metrics;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::audit::{Action, AuditEvent, AuditObserver, Level, Resource};
use crate::error::{Error, Result};
use crate::principal::Principal;
use metrics::ClientMetrics;

/// What an alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AlertKind {
    /// Too many failed accesses by one principal in a short time.
    FailedAccessBurst,
    /// Too many reads of one secret by one principal in a minute.
    RateSpike,
    /// Access outside the configured hours.
    OutsideHours,
    /// Access from a source not in the known list.
    UnknownSource,
}

impl AlertKind {
    /// The audit event name (`alert.failed_burst`, ...).
    pub const fn event_name(self) -> &'static str {
        match self {
            AlertKind::FailedAccessBurst => "alert.failed_burst",
            AlertKind::RateSpike => "alert.rate_spike",
            AlertKind::OutsideHours => "alert.outside_hours",
            AlertKind::UnknownSource => "alert.unknown_source",
        }
    }
}

/// An alert raised by a detector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    /// The detector.
    pub kind: AlertKind,
    /// The principal concerned.
    pub principal: Principal,
    /// The secret (or prefix) concerned.
    pub resource: String,
    /// The source concerned, if any.
    pub source: Option<String>,
    /// Human-readable detail (counts and thresholds; never a value).
    pub detail: String,
    /// When it was raised.
    pub at: SystemTime,
}

/// A function called for every alert (on the audit writer thread: keep it short, hand off to a
/// channel for slow work).
pub type AlertHook = Arc<dyn Fn(&Alert) + Send + Sync>;

/// Business hours in one UTC offset.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Hours {
    /// Start, `HH:MM`.
    pub start: String,
    /// End, `HH:MM` (may be before start for a night shift).
    pub end: String,
    /// Offset from UTC, `+HH:MM` or `-HH:MM` (default `+00:00`).
    #[serde(default)]
    pub utc_offset: Option<String>,
}

impl Hours {
    fn minutes(text: &str, what: &str) -> Result<i64> {
        let bad = || {
            Error::config(format!(
                "monitor.hours.{what}: expected HH:MM, got {text:?}"
            ))
        };
        let (h, m) = text.split_once(':').ok_or_else(bad)?;
        let h: i64 = h.parse().map_err(|_| bad())?;
        let m: i64 = m.parse().map_err(|_| bad())?;
        if !(0..24).contains(&h) || !(0..60).contains(&m) {
            return Err(bad());
        }
        Ok(h * 60 + m)
    }

    fn compile(&self) -> Result<(i64, i64, i64)> {
        let start = Hours::minutes(&self.start, "start")?;
        let end = Hours::minutes(&self.end, "end")?;
        let offset = match &self.utc_offset {
            None => 0,
            Some(o) => {
                let (sign, rest) = match o.as_bytes().first() {
                    Some(b'+') => (1, &o[1..]),
                    Some(b'-') => (-1, &o[1..]),
                    _ => {
                        return Err(Error::config(format!(
                            "monitor.hours.utc_offset: expected +HH:MM or -HH:MM, got {o:?}"
                        )));
                    }
                };
                sign * Hours::minutes(rest, "utc_offset")?
            }
        };
        Ok((start, end, offset))
    }
}

/// The `monitor:` config section.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MonitorConfig {
    /// Failed accesses per principal within `window` that raise an alert (default 5; 0 = off).
    #[serde(default = "default_burst")]
    pub failed_burst: u32,
    /// The burst window (default 1 minute).
    #[serde(default = "default_window", with = "humantime_serde")]
    pub window: Duration,
    /// Reads per minute of one secret by one principal above which an alert is raised
    /// (default 10; 0 = off).
    #[serde(default = "default_rate")]
    pub rate_per_minute: u32,
    /// Allowed hours; accesses outside raise an alert.
    #[serde(default)]
    pub hours: Option<Hours>,
    /// Known sources (`source_ip` values, including `process:...`); others raise an alert.
    #[serde(default)]
    pub known_sources: Option<Vec<String>>,
}

fn default_burst() -> u32 {
    5
}
fn default_window() -> Duration {
    Duration::from_secs(60)
}
fn default_rate() -> u32 {
    10
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            failed_burst: default_burst(),
            window: default_window(),
            rate_per_minute: default_rate(),
            hours: None,
            known_sources: None,
        }
    }
}

/// A sliding count of timestamps.
#[derive(Debug, Default)]
struct Window {
    times: std::collections::VecDeque<SystemTime>,
    alerted_until: Option<SystemTime>,
}

impl Window {
    /// Adds `now`, drops entries older than `span`, returns the count. Only the latest `cap`
    /// times are kept (enough to tell "at least cap"), so memory stays bounded at any rate.
    fn push(&mut self, now: SystemTime, span: Duration, cap: usize) -> usize {
        self.times.push_back(now);
        while self.times.len() > cap.max(1) {
            self.times.pop_front();
        }
        while let Some(first) = self.times.front() {
            if now.duration_since(*first).unwrap_or_default() > span {
                self.times.pop_front();
            } else {
                break;
            }
        }
        self.times.len()
    }

    /// Whether an alert may fire now (one per window).
    fn may_alert(&mut self, now: SystemTime, span: Duration) -> bool {
        if self.alerted_until.is_some_and(|u| now < u) {
            return false;
        }
        self.alerted_until = Some(now + span);
        true
    }
}

/// Alerts that can wait for the hooks before further ones skip them.
pub const HOOK_BACKLOG: usize = 1024;

/// The detectors. Runs as the audit log's observer.
pub struct Monitor {
    config: MonitorConfig,
    hours: Option<(i64, i64, i64)>,
    /// How many hooks there are, and the channel to the thread that calls them.
    hooks: usize,
    to_hooks: Option<crossbeam_channel::Sender<Alert>>,
    metrics: Arc<ClientMetrics>,
    failures: HashMap<Principal, Window>,
    rates: HashMap<(Principal, Box<str>), Window>,
    last_sweep: SystemTime,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("config", &self.config)
            .field("hooks", &self.hooks)
            .finish_non_exhaustive()
    }
}

impl Monitor {
    /// A monitor with `config`, calling `hooks` for each alert.
    pub fn new(
        config: MonitorConfig,
        hooks: Vec<AlertHook>,
        metrics: Arc<ClientMetrics>,
    ) -> Result<Monitor> {
        let hours = config.hours.as_ref().map(Hours::compile).transpose()?;
        Ok(Monitor {
            config,
            hours,
            hooks: hooks.len(),
            to_hooks: start_hooks(hooks)?,
            metrics,
            failures: HashMap::new(),
            rates: HashMap::new(),
            last_sweep: SystemTime::now(),
        })
    }

    /// Runs the detectors over one event and returns the alerts it raises.
    pub fn check(&mut self, e: &AuditEvent) -> Vec<Alert> {
        let mut alerts = Vec::new();
        if e.action == Action::Alert {
            return alerts;
        }
        let now = e.timestamp;
        let alert = |kind, detail: String| Alert {
            kind,
            principal: e.user.clone(),
            resource: e.resource.name.to_string(),
            source: e.source.as_deref().map(str::to_owned),
            detail,
            at: now,
        };
        if !e.success && self.config.failed_burst > 0 {
            let span = self.config.window;
            let w = self.failures.entry(e.user.clone()).or_default();
            let n = w.push(now, span, self.config.failed_burst as usize);
            if n >= self.config.failed_burst as usize && w.may_alert(now, span) {
                alerts.push(alert(
                    AlertKind::FailedAccessBurst,
                    format!(
                        "at least {n} failed accesses within {}",
                        humantime::format_duration(span)
                    ),
                ));
            }
        }
        if e.success && e.action == Action::Read && self.config.rate_per_minute > 0 {
            let span = Duration::from_secs(60);
            let w = self
                .rates
                .entry((e.user.clone(), e.resource.name.clone()))
                .or_default();
            let n = w.push(now, span, self.config.rate_per_minute as usize + 1);
            if n > self.config.rate_per_minute as usize && w.may_alert(now, span) {
                alerts.push(alert(
                    AlertKind::RateSpike,
                    format!(
                        "more than {} reads within a minute",
                        self.config.rate_per_minute
                    ),
                ));
            }
        }
        if let Some((start, end, offset)) = self.hours {
            let secs = now
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs() as i64;
            let minute = (secs / 60 + offset).rem_euclid(24 * 60);
            let inside = if start <= end {
                (start..end).contains(&minute)
            } else {
                minute >= start || minute < end
            };
            if !inside {
                alerts.push(alert(
                    AlertKind::OutsideHours,
                    format!(
                        "access at {:02}:{:02} outside configured hours",
                        minute / 60,
                        minute % 60
                    ),
                ));
            }
        }
        if let Some(known) = &self.config.known_sources {
            let source = e.source.as_deref().unwrap_or("process");
            let is_known = known
                .iter()
                .any(|k| k == source || (e.source.is_none() && k == "process"));
            if !is_known {
                alerts.push(alert(
                    AlertKind::UnknownSource,
                    format!("access from unknown source {source}"),
                ));
            }
        }
        self.sweep(now);
        alerts
    }

    /// Forgets idle windows so memory stays bounded by the active principals and secrets.
    fn sweep(&mut self, now: SystemTime) {
        if now.duration_since(self.last_sweep).unwrap_or_default() < Duration::from_secs(60) {
            return;
        }
        self.last_sweep = now;
        let span = self.config.window.max(Duration::from_secs(60));
        let idle = |w: &Window| {
            w.times
                .back()
                .is_none_or(|t| now.duration_since(*t).unwrap_or_default() > span)
        };
        self.failures.retain(|_, w| !idle(w));
        self.rates.retain(|_, w| !idle(w));
    }
}

impl AuditObserver for Monitor {
    fn observe(&mut self, event: &AuditEvent, out: &mut Vec<AuditEvent>) {
        for alert in self.check(event) {
            self.metrics.alerts.incr();
            if let Some(to_hooks) = &self.to_hooks
                && let Err(crossbeam_channel::TrySendError::Full(a)) =
                    to_hooks.try_send(alert.clone())
            {
                tracing::warn!(
                    target: "sealbox::monitor",
                    kind = a.kind.event_name(),
                    "alert hooks are {HOOK_BACKLOG} alerts behind; this alert skips them \
                     (it is in the audit log)"
                );
            }
            let mut e = AuditEvent::access(
                Action::Alert,
                alert.principal.clone(),
                Arc::new(Resource {
                    name: alert.resource.clone().into(),
                    store: event.resource.store.clone(),
                    version: None,
                }),
            );
            e.level = Level::Alert;
            e.event = Some(alert.kind.event_name());
            e.source = event.source.clone();
            e.timestamp = alert.at;
            e.reason = Some(Cow::Owned(alert.detail.clone()));
            out.push(e);
        }
    }
}

/// Starts the thread that calls `hooks` for each alert sent to it; it ends when the monitor
/// (the sender) is dropped. Not joined: a hook may hold the client whose drop ends it.
fn start_hooks(hooks: Vec<AlertHook>) -> Result<Option<crossbeam_channel::Sender<Alert>>> {
    if hooks.is_empty() {
        return Ok(None);
    }
    let (tx, rx) = crossbeam_channel::bounded::<Alert>(HOOK_BACKLOG);
    std::thread::Builder::new()
        .name("sealbox-alert-hooks".into())
        .spawn(move || {
            for alert in rx {
                for hook in &hooks {
                    let call = std::panic::AssertUnwindSafe(|| hook(&alert));
                    if std::panic::catch_unwind(call).is_err() {
                        tracing::error!(target: "sealbox::monitor", "an alert hook panicked");
                    }
                }
            }
        })
        .map_err(|e| Error::io("starting the alert hook thread", e))?;
    Ok(Some(tx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(user: &str, name: &str, success: bool, at: SystemTime) -> AuditEvent {
        let mut e = AuditEvent::access(Action::Read, Principal::new(user), Resource::named(name));
        e.timestamp = at;
        if !success {
            e = e.deny("no policy rule allows this");
        }
        e
    }

    fn monitor(config: MonitorConfig) -> Monitor {
        Monitor::new(config, vec![], Arc::default()).unwrap()
    }

    #[test]
    fn fifth_failure_in_a_minute_raises_one_burst_alert() {
        let mut m = monitor(MonitorConfig::default());
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut kinds = vec![];
        for i in 0..8 {
            let t = t0 + Duration::from_secs(i);
            kinds.extend(
                m.check(&event("user:eve", "a/b", false, t))
                    .into_iter()
                    .map(|a| a.kind),
            );
        }
        assert_eq!(kinds, vec![AlertKind::FailedAccessBurst]);
        // failures spread over more than the window do not alert
        let mut m = monitor(MonitorConfig::default());
        for i in 0..8 {
            let t = t0 + Duration::from_secs(i * 20);
            assert!(m.check(&event("user:eve", "a/b", false, t)).is_empty());
        }
    }

    #[test]
    fn eleventh_read_in_a_minute_is_a_spike_per_secret_and_principal() {
        let mut m = monitor(MonitorConfig::default());
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        for i in 0..10 {
            let t = t0 + Duration::from_secs(i);
            assert!(m.check(&event("svc:a", "x/1", true, t)).is_empty());
            assert!(m.check(&event("svc:b", "x/1", true, t)).is_empty());
            assert!(m.check(&event("svc:a", "x/2", true, t)).is_empty());
        }
        let a = m.check(&event("svc:a", "x/1", true, t0 + Duration::from_secs(11)));
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].kind, AlertKind::RateSpike);
        assert_eq!(a[0].resource, "x/1");
    }

    #[test]
    fn hours_and_sources() {
        let mut m = monitor(MonitorConfig {
            hours: Some(Hours {
                start: "08:00".into(),
                end: "18:00".into(),
                utc_offset: Some("+02:00".into()),
            }),
            known_sources: Some(vec!["10.0.0.1".into(), "process".into()]),
            ..MonitorConfig::default()
        });
        let day = SystemTime::UNIX_EPOCH + Duration::from_secs(20_000 * 86_400);
        // 07:00 UTC = 09:00 local: inside
        assert!(
            m.check(&event("u", "a", true, day + Duration::from_secs(7 * 3600)))
                .is_empty()
        );
        // 17:00 UTC = 19:00 local: outside
        let a = m.check(&event("u", "a", true, day + Duration::from_secs(17 * 3600)));
        assert_eq!(
            a.iter().map(|a| a.kind).collect::<Vec<_>>(),
            vec![AlertKind::OutsideHours]
        );
        let mut e = event("u", "a", true, day + Duration::from_secs(7 * 3600));
        e.source = Some(Arc::from("203.0.113.9"));
        let a = m.check(&e);
        assert_eq!(
            a.iter().map(|a| a.kind).collect::<Vec<_>>(),
            vec![AlertKind::UnknownSource]
        );
        assert!(
            Monitor::new(
                MonitorConfig {
                    hours: Some(Hours {
                        start: "25:00".into(),
                        end: "1:00".into(),
                        utc_offset: None
                    }),
                    ..MonitorConfig::default()
                },
                vec![],
                Arc::default()
            )
            .is_err()
        );
    }
}
