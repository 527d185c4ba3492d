//! Audit events and their JSON-lines form.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use crate::client::Principal;
use crate::store::VersionId;

/// Severity of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Normal accesses.
    Info,
    /// Failures and denies.
    Warn,
    /// Monitor alerts and break-glass steps.
    Alert,
}

impl Level {
    /// Lowercase name as written in the log.
    pub const fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Alert => "alert",
        }
    }
}

/// What was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// A value was read (`get`, `get_field`, `get_version`).
    Read,
    /// Metadata was read.
    Describe,
    /// A version was written.
    Write,
    /// A secret was deleted.
    Delete,
    /// Names were listed.
    List,
    /// A rotation step.
    Rotate,
    /// A grant (break-glass, policy change).
    Grant,
    /// A key operation (wrap, unwrap, rotate a key).
    Key,
    /// Crypto-shredding of a namespace.
    Erase,
    /// A monitor alert.
    Alert,
}

impl Action {
    /// Lowercase name as written in the log.
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Describe => "describe",
            Action::Write => "write",
            Action::Delete => "delete",
            Action::List => "list",
            Action::Rotate => "rotate",
            Action::Grant => "grant",
            Action::Key => "key",
            Action::Erase => "erase",
            Action::Alert => "alert",
        }
    }
}

/// How the cache answered a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Served from the cache.
    Hit,
    /// Fetched from the store.
    Miss,
    /// Served from the cache past its TTL because the store failed (stale-if-error).
    Stale,
}

impl CacheOutcome {
    /// Lowercase name as written in the log.
    pub const fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Stale => "stale",
        }
    }
}

/// What an event is about: a secret (or a list prefix), the store and the version.
/// Shared (`Arc`) so a cache hit can reference it without allocating.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// Secret name, list prefix or key id.
    pub name: Box<str>,
    /// Store id, when a store was involved.
    pub store: Option<Arc<str>>,
    /// Version id, when one was read or written.
    pub version: Option<VersionId>,
}

impl Resource {
    /// A resource by name only.
    pub fn named(name: &str) -> Arc<Resource> {
        Arc::new(Resource {
            name: name.into(),
            store: None,
            version: None,
        })
    }
}

/// One audit event. Holds names, ids and outcomes; there is deliberately no field that could
/// hold a secret value.
#[derive(Clone, Debug)]
pub struct AuditEvent {
    /// When the access happened.
    pub timestamp: SystemTime,
    /// Severity.
    pub level: Level,
    /// The action.
    pub action: Action,
    /// Who.
    pub user: Principal,
    /// What.
    pub resource: Arc<Resource>,
    /// Where the request came from (a client IP given by the caller); `None` means this
    /// process, written as `process:PID@HOST`.
    pub source: Option<Arc<str>>,
    /// Whether the access succeeded.
    pub success: bool,
    /// Request id (unique in this process, prefixed with a random per-process tag).
    pub request_id: u64,
    /// Cache outcome for reads.
    pub cache: Option<CacheOutcome>,
    /// Why it failed or was denied, or what an alert is about. Never a value.
    pub reason: Option<Cow<'static, str>>,
    /// Event name override (alerts: `alert.burst`, ...); `None` derives it from the action.
    pub event: Option<&'static str>,
    /// The access policy refused this access.
    pub denied: bool,
}

impl AuditEvent {
    /// A successful access event.
    pub fn access(action: Action, user: Principal, resource: Arc<Resource>) -> AuditEvent {
        AuditEvent {
            timestamp: SystemTime::now(),
            level: Level::Info,
            action,
            user,
            resource,
            source: None,
            success: true,
            request_id: next_request_id(),
            cache: None,
            reason: None,
            event: None,
            denied: false,
        }
    }

    /// Marks the event as a policy deny (level `warn`, event `access.denied`).
    pub fn deny(mut self, reason: impl Into<Cow<'static, str>>) -> AuditEvent {
        self.denied = true;
        self.failed(reason)
    }

    /// Marks the event failed with a reason (level `warn`).
    pub fn failed(mut self, reason: impl Into<Cow<'static, str>>) -> AuditEvent {
        self.success = false;
        self.level = Level::Warn;
        self.reason = Some(reason.into());
        self
    }

    /// The `event` field: `secret.read`, `access.denied`, `alert.rate_spike`, ...
    pub fn event_name(&self) -> &'static str {
        if let Some(e) = self.event {
            return e;
        }
        if self.denied {
            return "access.denied";
        }
        match self.action {
            Action::Read => "secret.read",
            Action::Describe => "secret.describe",
            Action::Write => "secret.write",
            Action::Delete => "secret.delete",
            Action::List => "secret.list",
            Action::Rotate => "secret.rotate",
            Action::Grant => "access.grant",
            Action::Key => "key.operation",
            Action::Erase => "namespace.erase",
            Action::Alert => "alert",
        }
    }

    /// Whether this event is a policy deny.
    pub fn is_denied(&self) -> bool {
        self.denied
    }

    /// Appends the JSON object without the closing `,"hash":..}` (the part the chain signs).
    pub(crate) fn write_body(&self, out: &mut String, seq: u64, prev_hash: &str) {
        out.push('{');
        field(out, "timestamp", &rfc3339(self.timestamp));
        out.push(',');
        field(out, "level", self.level.as_str());
        out.push(',');
        field(out, "event", self.event_name());
        out.push(',');
        field(out, "user", self.user.as_str());
        out.push(',');
        field(out, "action", self.action.as_str());
        out.push(',');
        field(out, "resource", &self.resource.name);
        out.push(',');
        match &self.source {
            Some(s) => field(out, "source_ip", s),
            None => field(out, "source_ip", process_source()),
        }
        let _ = write!(out, ",\"success\":{}", self.success);
        let _ = write!(
            out,
            ",\"request_id\":\"{:08x}-{:x}\"",
            process_tag(),
            self.request_id
        );
        out.push(',');
        opt_field(out, "store", self.resource.store.as_deref());
        out.push(',');
        opt_field(
            out,
            "version",
            self.resource.version.as_ref().map(|v| v.as_str()),
        );
        out.push(',');
        opt_field(out, "cache", self.cache.map(CacheOutcome::as_str));
        out.push(',');
        opt_field(out, "reason", self.reason.as_deref());
        let _ = write!(out, ",\"seq\":{seq},\"prev_hash\":\"{prev_hash}\"");
    }
}

fn field(out: &mut String, key: &str, value: &str) {
    out.push('"');
    out.push_str(key);
    out.push_str("\":");
    push_json_string(out, value);
}

fn opt_field(out: &mut String, key: &str, value: Option<&str>) {
    match value {
        Some(v) => field(out, key, v),
        None => {
            out.push('"');
            out.push_str(key);
            out.push_str("\":null");
        }
    }
}

fn push_json_string(out: &mut String, value: &str) {
    if value
        .bytes()
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
    {
        out.push('"');
        out.push_str(value);
        out.push('"');
        return;
    }
    // serde_json's escaping is the reference; serialising a &str cannot fail.
    match serde_json::to_string(value) {
        Ok(s) => out.push_str(&s),
        Err(_) => out.push_str("\"\""),
    }
}

fn rfc3339(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    let (y, mo, d) = (dt.year(), dt.month() as u8, dt.day());
    let (h, mi, s, ms) = (dt.hour(), dt.minute(), dt.second(), dt.millisecond());
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

fn process_source() -> &'static str {
    static SOURCE: OnceLock<String> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".to_owned());
        format!("process:{}@{host}", std::process::id())
    })
}

fn process_tag() -> u32 {
    static TAG: OnceLock<u32> = OnceLock::new();
    *TAG.get_or_init(|| {
        let mut b = [0u8; 4];
        // A failed RNG only makes request ids less unique across processes.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
        u32::from_le_bytes(b)
    })
}

/// A new request id (process-unique). Threads reserve blocks of ids so that concurrent
/// callers do not contend on one counter.
pub fn next_request_id() -> u64 {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU64, Ordering};
    const BLOCK: u64 = 1024;
    static NEXT_BLOCK: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static RANGE: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    }
    RANGE.with(|r| {
        let (mut next, mut end) = r.get();
        if next == end {
            next = NEXT_BLOCK.fetch_add(BLOCK, Ordering::Relaxed);
            end = next + BLOCK;
        }
        r.set((next + 1, end));
        next
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_json_with_the_documented_fields() {
        let mut e = AuditEvent::access(
            Action::Read,
            Principal::new("svc:\"quoted\""),
            Arc::new(Resource {
                name: "predis/prod/db".into(),
                store: Some(Arc::from("main")),
                version: Some(VersionId::new("3")),
            }),
        );
        e.cache = Some(CacheOutcome::Hit);
        let mut line = String::new();
        e.write_body(&mut line, 7, "00");
        line.push_str(",\"hash\":\"x\"}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        for key in [
            "timestamp",
            "level",
            "event",
            "user",
            "action",
            "resource",
            "source_ip",
            "success",
            "request_id",
            "store",
            "version",
            "cache",
            "reason",
            "seq",
            "prev_hash",
            "hash",
        ] {
            assert!(v.get(key).is_some(), "{key} missing in {line}");
        }
        assert_eq!(v["user"], "svc:\"quoted\"");
        assert_eq!(v["event"], "secret.read");
        assert_eq!(v["cache"], "hit");
        assert_eq!(v["seq"], 7);
    }
}
