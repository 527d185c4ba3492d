//! Audit events and their JSON-lines form.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use crate::principal::Principal;
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

/// The `reason` on reads served stale from the cache (stale-if-error).
pub(crate) const STALE_REASON: &str = "store unavailable; served stale from cache";

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

    /// A secret `name` in store `store`, no version yet (a read or write not yet done).
    pub fn in_store(name: &str, store: Arc<str>) -> Arc<Resource> {
        Arc::new(Resource {
            name: name.into(),
            store: Some(store),
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
    /// An intent: written (strict mode) before a change is made, with `"success":null`
    /// and the event name `<event>.intent`; the change's outcome follows in an event of
    /// its own with the same `request_id`.
    pub intent: bool,
    /// Several cache hits written as this one event (`coalesce`): how many, and the times of
    /// the first (also the event's `timestamp`) and the last.
    pub coalesced: Option<Box<Coalesced>>,
}

/// What a coalesced read event stands for: `count` cache hits between `first` and `last`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Coalesced {
    /// How many hits.
    pub count: u64,
    /// The first hit's time.
    pub first: SystemTime,
    /// The last hit's time.
    pub last: SystemTime,
}

impl AuditEvent {
    /// A successful access event.
    pub fn access(action: Action, user: Principal, resource: Arc<Resource>) -> AuditEvent {
        AuditEvent {
            timestamp: coarse_now(),
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
            coalesced: None,
            intent: false,
        }
    }

    /// A successful read answered by the cache (`cache` is hit or stale; a stale read
    /// carries the stale-if-error reason).
    pub(crate) fn cached_read(
        user: Principal,
        resource: Arc<Resource>,
        cache: CacheOutcome,
    ) -> AuditEvent {
        let mut e = AuditEvent::access(Action::Read, user, resource);
        e.cache = Some(cache);
        if cache == CacheOutcome::Stale {
            e.reason = Some(STALE_REASON.into());
        }
        e
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

    /// The intent to make this change (strict mode writes it before the change): the same
    /// event, request id included, named `<event>.intent`, its success not known yet.
    pub fn as_intent(&self) -> AuditEvent {
        AuditEvent {
            intent: true,
            success: true,
            level: Level::Info,
            reason: None,
            ..self.clone()
        }
    }

    /// This event as the record of an access that was refused (an intent becomes the
    /// change's outcome, not made): what happened, for an event not yet written.
    pub(crate) fn refused(&self, reason: &'static str) -> AuditEvent {
        AuditEvent {
            intent: false,
            ..self.clone()
        }
        .failed(reason)
    }

    /// The `event` field: `secret.read`, `access.denied`, `alert.rate_spike`, ...
    pub fn event_name(&self) -> &'static str {
        if let Some(e) = self.event {
            return e;
        }
        if self.denied {
            return "access.denied";
        }
        if self.intent {
            return match self.action {
                Action::Read => "secret.read.intent",
                Action::Describe => "secret.describe.intent",
                Action::Write => "secret.write.intent",
                Action::Delete => "secret.delete.intent",
                Action::List => "secret.list.intent",
                Action::Rotate => "secret.rotate.intent",
                Action::Grant => "access.grant.intent",
                Action::Key => "key.operation.intent",
                Action::Erase => "namespace.erase.intent",
                Action::Alert => "alert.intent",
            };
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

    /// The `request_id` exactly as the audit line spells it (`"9f1c22aa-1f"`): what an error
    /// of this access carries, so a caller can find the line.
    pub fn request_id_text(&self) -> String {
        let mut out = String::with_capacity(26);
        out.push_str(process_tag());
        push_hex(&mut out, self.request_id);
        out
    }

    /// Appends the JSON object without the closing `,"hash":..}` (the part the chain signs).
    #[cfg(test)]
    pub(crate) fn write_body(&self, out: &mut String, seq: u64, prev_hash: &str) {
        BodyFormat::default().write(self, out, seq, prev_hash);
    }
}

/// Formats event bodies for the writer. Keeps what repeats from line to line (the timestamp
/// down to the second) so a line costs appends, not a calendar computation and allocations.
#[derive(Debug, Default)]
pub(crate) struct BodyFormat {
    /// The Unix second `prefix` spells, plus one (0: nothing cached).
    second: u64,
    /// `"YYYY-MM-DDTHH:MM:SS."`
    prefix: String,
}

impl BodyFormat {
    /// Appends `event`'s JSON object without the closing `,"hash":..}` (the part the chain
    /// signs).
    pub(crate) fn write(&mut self, e: &AuditEvent, out: &mut String, seq: u64, prev_hash: &str) {
        out.push_str("{\"timestamp\":\"");
        self.timestamp(e.timestamp, out);
        out.push_str("\",");
        field(out, "level", e.level.as_str());
        out.push(',');
        field(out, "event", e.event_name());
        out.push(',');
        field(out, "user", e.user.as_str());
        out.push(',');
        field(out, "action", e.action.as_str());
        out.push(',');
        field(out, "resource", &e.resource.name);
        out.push(',');
        match &e.source {
            Some(s) => field(out, "source_ip", s),
            None => field(out, "source_ip", process_source()),
        }
        out.push_str(if e.intent {
            ",\"success\":null,\"request_id\":\""
        } else if e.success {
            ",\"success\":true,\"request_id\":\""
        } else {
            ",\"success\":false,\"request_id\":\""
        });
        out.push_str(process_tag());
        push_hex(out, e.request_id);
        out.push_str("\",");
        opt_field(out, "store", e.resource.store.as_deref());
        out.push(',');
        opt_field(
            out,
            "version",
            e.resource.version.as_ref().map(|v| v.as_str()),
        );
        out.push(',');
        opt_field(out, "cache", e.cache.map(CacheOutcome::as_str));
        out.push(',');
        opt_field(out, "reason", e.reason.as_deref());
        if let Some(c) = &e.coalesced {
            out.push_str(",\"count\":");
            out.push_str(itoa::Buffer::new().format(c.count));
            out.push_str(",\"first\":\"");
            out.push_str(&rfc3339(c.first));
            out.push_str("\",\"last\":\"");
            out.push_str(&rfc3339(c.last));
            out.push('"');
        }
        out.push_str(",\"seq\":");
        out.push_str(itoa::Buffer::new().format(seq));
        out.push_str(",\"prev_hash\":\"");
        out.push_str(prev_hash);
        out.push('"');
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC.
    fn timestamp(&mut self, t: SystemTime, out: &mut String) {
        let Ok(since) = t.duration_since(SystemTime::UNIX_EPOCH) else {
            out.push_str(&rfc3339(t));
            return;
        };
        let second = since.as_secs();
        if self.second != second.wrapping_add(1) {
            let s = rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(second));
            self.prefix.clear();
            // rfc3339 ends in ".000Z"; keep up to and including the dot.
            self.prefix.push_str(&s[..s.len() - 4]);
            self.second = second.wrapping_add(1);
        }
        out.push_str(&self.prefix);
        let ms = since.subsec_millis();
        for d in [ms / 100, ms / 10 % 10, ms % 10] {
            out.push(char::from(b'0' + d as u8));
        }
        out.push('Z');
    }
}

/// Lowercase hex without leading zeros (`0` for zero).
fn push_hex(out: &mut String, v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = DIGITS[(v & 0xf) as usize];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        out.push(char::from(b));
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

/// The per-process prefix of request ids, `"xxxxxxxx-"`.
fn process_tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        let mut b = [0u8; 4];
        // A failed RNG only makes request ids less unique across processes.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
        format!("{:08x}-", u32::from_le_bytes(b))
    })
}

/// The wall clock at kernel-tick resolution (1-4 ms): `CLOCK_REALTIME_COARSE` reads a
/// shared page, where the precise clock costs ~25 ns, a sixth of an audited cache hit.
/// Events within one tick share a timestamp; `seq` orders them.
pub(crate) fn coarse_now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(coarse_unix_nanos())
}

/// [`coarse_now`] as nanoseconds since 1970 (what the hot path stores).
#[cfg(target_os = "linux")]
#[inline]
pub(crate) fn coarse_unix_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call, and
    // CLOCK_REALTIME_COARSE exists on every Linux since 2.6.32; the call only writes `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    match (rc, u64::try_from(ts.tv_sec), u64::try_from(ts.tv_nsec)) {
        (0, Ok(secs), Ok(nanos)) => secs.saturating_mul(1_000_000_000).saturating_add(nanos),
        _ => precise_unix_nanos(),
    }
}

#[cfg(not(target_os = "linux"))]
#[inline]
pub(crate) fn coarse_unix_nanos() -> u64 {
    precise_unix_nanos()
}

fn precise_unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
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

    #[test]
    fn event_timestamps_follow_the_wall_clock_within_a_tick() {
        let before = SystemTime::now();
        let e = AuditEvent::access(Action::Read, Principal::new("u"), Resource::named("a/b"));
        let after = SystemTime::now();
        let tick = Duration::from_millis(20);
        assert!(e.timestamp <= after, "{:?} after {after:?}", e.timestamp);
        assert!(
            e.timestamp + tick >= before,
            "{:?} long before {before:?}",
            e.timestamp
        );
    }

    #[test]
    fn the_request_id_text_is_the_lines_request_id() {
        let e = AuditEvent::access(Action::Read, Principal::new("u"), Resource::named("a/b"));
        let mut line = String::new();
        e.write_body(&mut line, 0, "");
        let v: serde_json::Value = serde_json::from_str(&format!("{line}}}")).unwrap();
        assert_eq!(v["request_id"].as_str(), Some(e.request_id_text().as_str()));
    }

    #[test]
    fn timestamps_and_request_ids_keep_their_format_across_seconds() {
        let mut f = BodyFormat::default();
        let base = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_000_000_007);
        for (offset_ms, expected) in [
            (0, "2026-11-18T11:06:40.007Z"),
            (992, "2026-11-18T11:06:40.999Z"),
            (993, "2026-11-18T11:06:41.000Z"),
            (86_400_000, "2026-11-19T11:06:40.007Z"),
        ] {
            let mut e =
                AuditEvent::access(Action::Read, Principal::new("u"), Resource::named("a/b"));
            e.timestamp = base + Duration::from_millis(offset_ms);
            e.request_id = 0x1f;
            let mut line = String::new();
            f.write(&e, &mut line, 0, "00");
            line.push_str(",\"hash\":\"x\"}");
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(v["timestamp"], expected, "{line}");
            let id = v["request_id"].as_str().unwrap();
            assert!(id.len() == 11 && id.ends_with("-1f"), "{id}");
        }
        let mut zero = String::new();
        push_hex(&mut zero, 0);
        push_hex(&mut zero, u64::MAX);
        assert_eq!(zero, "0ffffffffffffffff");
    }
}
