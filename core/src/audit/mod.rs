//! The audit log: every access becomes a JSON line in a keyed hash chain.
//!
//! ```text
//! {"timestamp":"2026-11-23T11:47:26.123Z","level":"info","event":"secret.read","user":"svc:predis",
//!  "action":"read","resource":"predis/prod/database/password","source_ip":"process:812@host1",
//!  "success":true,"request_id":"9f1c22aa-1f","store":"main","version":"3","cache":"hit",
//!  "reason":null,"seq":41,"prev_hash":"5d0c…","hash":"a11e…"}
//! ```
//!
//! * The hot path only builds an [`AuditEvent`] (names, ids, no value) and enqueues it on a
//!   bounded queue; the writer thread formats, signs and writes batches. In best-effort mode a
//!   full queue makes the caller wait at most [`AuditConfig::max_wait`] (default 1 ms); past
//!   that the event is dropped and counted ([`AuditLog::events_lost`], the client's
//!   `audit_events_lost` metric), and once a sink writes again the writer first signs an
//!   `audit_events_lost` event with the count and the first and last time of the loss into the
//!   chain. Strict mode does not drop the event of an access it lets through: the access fails
//!   instead (events of accesses that already failed are queued best effort in both modes).
//! * `hash = HMAC-SHA256(key, line up to ,"hash")`, and each line names the previous hash and
//!   its `seq`: [`verify_file`] finds the first edited, missing, reordered or broken line. The file
//!   sink also keeps `FILE.head` (the last seq and hash, MACed) so a cut-off tail is found too:
//!   verification fails when the anchor is missing ([`ProblemKind::MissingAnchor`], unless
//!   [`VerifyOptions::allow_unanchored`]), past the log's end, or names another hash than the
//!   log's at its seq (an old anchor put back after the log was cut and written again).
//! * The anchor catches accidents only: whoever can write the log can rewrite the anchor.
//!   [`Checkpoints`] (config `audit.checkpoints`) publish the chain's seq and hash, MACed, to
//!   syslog/journald (safe as far as it is forwarded to another host) and as versions of a
//!   secret in a store (as safe as the store's access control and history);
//!   [`verify_file_with`] checks a log against them ([`ProblemKind::RolledBack`],
//!   [`ProblemKind::HashMismatch`]).
//! * Strict mode ([`AuditMode::Strict`]): an access waits until every durable sink (the file,
//!   a checkpoint store; not `tracing` or callbacks) wrote its event and fails with
//!   `Unavailable` otherwise. A change (write, delete, stage move, restore, erasure) is made
//!   only once its intent (`secret.write.intent`, `"success":null`) is written; its outcome
//!   follows with the same `request_id`, written as it happened even when it cannot be
//!   written in time (the caller then gets `Unavailable` saying the change was made). An
//!   event is never rewritten after it was written: an access refused after its line was
//!   written (its caller gave up waiting for that batch) gets a second line saying so, and
//!   an event still queued when its caller gave up is written as refused. The chain
//!   advances only when every durable sink that keeps lines wrote a batch (a file that
//!   wrote it while another could not cuts it back), so a failed sink has no gap.
//!   Strict mode without such a sink is a config error.
//! * Sinks: [`FileSink`], [`TracingSink`], [`CallbackSink`], or any [`AuditSink`]; several at once.
//!
//! # Several writers, one log
//!
//! The worker processes of one service (gunicorn, uWSGI, Celery: one config, so one audit
//! path) and several clients in one process all append to the same file, and it stays one
//! chain that [`verify_file`] accepts whole. Each writer thread signs and writes a batch under
//! an exclusive `flock` on the log file: it reads where the chain stands (its own last write
//! when the file has not grown since, otherwise the file's last line, which must verify under
//! the key), numbers and chains the batch from there, appends it, fsyncs per the
//! [`FsyncPolicy`], moves the `.head` anchor, and unlocks. `seq` and `prev_hash` are given at
//! write time, so lines from different writers interleave batch by batch in one gapless
//! sequence. The cost is per batch (a lock, a few `stat`s, and a read of the last line after
//! another writer's batch); the hot path is unchanged. A writer waits up to 10 s for the lock
//! (writers hold it for one batch); past that its batch fails and is retried like any sink
//! failure, so readers are never refused because another writer is appending. All writers
//! must use the same key: through a config with a local vault, the key the vault keeps
//! wrapped by its master key (see `LocalVault::audit_chain_key`); otherwise the first process
//! creates `FILE.key` (atomically; the others read it), which is refused when it is a symlink,
//! another user's, or accessible by group or others. Open the client in each worker, after the fork: a child has no copy of its parent's
//! writer thread, and forked copies of one open file would share one lock.
//!
//! A writer that dies mid-line (killed while writing, or a crash) leaves a torn last line: a
//! fragment without its newline. The next writer (another worker, or the service starting
//! again) ends the fragment with a newline, signs a `torn_tail_recovered` line (seq and
//! `prev_hash` continuing from the last complete line, `reason` giving the fragment's length)
//! and goes on; [`verify_file`] accepts a fragment only when such a signed line follows it,
//! and lists it in [`VerifyReport::cut_off_lines`] (its event is lost). When the `.head`
//! anchor already vouched for the cut line, the next writer continues after the anchor
//! instead, so verification reports the loss rather than passing over it. A fragment still at
//! the end of the file is reported as broken. A last line cut just before its newline is
//! whole: the next writer adds the newline and continues after it, recording nothing.

//!
//! # Months of events
//!
//! [`AuditLogBuilder::rotate_size`] and [`AuditLogBuilder::rotate_every`] (config
//! `rotate_size`, `rotate_every`) rotate the file under the same lock: it is renamed
//! `FILE.<seq of its last line, 20 digits>` and the next file starts with a signed
//! `audit.rotated` line continuing the chain (seq and hash) and naming that file, so
//! [`verify_file`] given the active file or its directory verifies the whole set as one chain
//! and reports a missing or reordered file. Retention (`retain_files`, `retain_days`) deletes
//! the oldest rotated files after a rotation and records the cut, MACed, in `FILE.retention`.
//! A sibling process notices a rotation when it takes the lock (the path names another inode:
//! it reopens and locks again; an empty file continues the newest rotated one). See `rotate.rs`.
//! [`AuditLogBuilder::coalesce`] writes the cache hits of one secret by one principal within an
//! interval as one event with `count`, `first` and `last`, on the writer thread.

mod chain;
mod checkpoint;
mod coalesce;
mod event;
mod queue;
mod rotate;
mod sink;
mod verify;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, bounded};
use serde::Deserialize;

pub use chain::{AuditKey, ChainHead, GENESIS};
pub use checkpoint::{
    Checkpoint, CheckpointConfig, CheckpointTarget, Checkpoints, DEFAULT_SYSLOG_SOCKET,
    read_checkpoints,
};
pub use event::{Action, AuditEvent, CacheOutcome, Coalesced, Level, Resource, next_request_id};
pub use rotate::{Rotation, log_files};
pub use sink::{
    AuditRecord, AuditSink, CallbackSink, Continues, FileSink, FsyncPolicy, ROTATED_EVENT,
    SharedTail, TORN_TAIL_EVENT, TracingSink,
};
pub use verify::{
    Problem, ProblemKind, VerifyOptions, VerifyReport, verify_file, verify_file_with,
};
pub use writer::EVENTS_LOST_EVENT;

use crate::error::{Error, ErrorKind, Result};
use crate::principal::Principal;
use crate::process::ProcessBound;
use queue::{Control, GAVE_UP, Item, PushError, Queue, Record, Refusal, TAKEN, WAITING, Waiter};
use writer::Writer;

/// Sees every event on the writer thread, in order, and may add events (the monitor's alerts).
pub trait AuditObserver: Send + 'static {
    /// Called once per event; push extra events (alerts) into `out`.
    fn observe(&mut self, event: &AuditEvent, out: &mut Vec<AuditEvent>);
}

/// What happens when no sink can write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditMode {
    /// Accesses go ahead; events wait in memory and are retried. When the queue is full an
    /// access waits at most `max_wait`, then its event is dropped and counted (see
    /// [`AuditLog::events_lost`]). The default.
    #[default]
    BestEffort,
    /// An access goes ahead only once every durable sink (the file, a checkpoint store)
    /// wrote its event; a change only once its intent is written, its outcome following.
    /// Needs a durable sink that keeps events (an audit file).
    Strict,
}

/// The `audit:` config section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Turn auditing off entirely (default on when the section is present).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The JSON-lines file.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// When the file is fsynced.
    #[serde(default)]
    pub fsync: FsyncPolicy,
    /// The chain key file (32+ raw bytes; refused when a symlink, another user's, or
    /// accessible by group or others). Default, through a config: a `PATH.key` already beside
    /// the log; else the key the default store keeps under its master key (a local vault);
    /// else `PATH.key`, created with 0600.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Also emit every line through `tracing`.
    #[serde(default)]
    pub tracing: bool,
    /// `best_effort` or `strict`.
    #[serde(default)]
    pub mode: AuditMode,
    /// Events each thread can have queued before it waits (best effort: at most `max_wait`,
    /// then drops); 1 to 65 536.
    /// Each recording thread holds a ring of this many 16-byte slots: a cached read takes
    /// one, plus one for its principal and one for its time when they differ from its
    /// thread's previous read.
    #[serde(default = "default_capacity")]
    pub queue_capacity: usize,
    /// How long a strict-mode access waits for its event to be written.
    #[serde(default = "default_strict_timeout", with = "humantime_serde")]
    pub strict_timeout: Duration,
    /// Best effort: how long an access waits for room in a full queue before its event is
    /// dropped and counted as lost (default 1 ms).
    #[serde(default = "default_max_wait", with = "humantime_serde")]
    pub max_wait: Duration,
    /// Checkpoints of the chain published away from the log (syslog, a store's versions), so
    /// that `sealbox audit verify --checkpoints` finds a log cut or rolled back together with
    /// its `.head` anchor. See [`Checkpoints`] for what each target protects.
    #[serde(default)]
    pub checkpoints: Option<CheckpointConfig>,
    /// Rotate the file once it holds this many bytes: a number of bytes or `64MiB`, `500MB`,
    /// `1GiB` (see [`Rotation`]).
    #[serde(default, deserialize_with = "rotate::deserialize_size")]
    pub rotate_size: Option<u64>,
    /// Rotate the file when the time crosses a multiple of this period (UTC): `1d` rotates at
    /// midnight UTC, `1h` on the hour.
    #[serde(default, with = "humantime_serde")]
    pub rotate_every: Option<Duration>,
    /// Keep at most this many rotated files; older ones are deleted after a rotation.
    #[serde(default)]
    pub retain_files: Option<usize>,
    /// Delete rotated files last written more than this many days ago (after a rotation).
    #[serde(default)]
    pub retain_days: Option<u32>,
    /// Coalesce cache hits of one secret by one principal within this interval into one
    /// event with `count`, `first` and `last` (off by default; see [`AuditLogBuilder::coalesce`]).
    #[serde(default, with = "humantime_serde")]
    pub coalesce: Option<Duration>,
}

fn yes() -> bool {
    true
}

fn default_capacity() -> usize {
    1024
}

fn default_strict_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_max_wait() -> Duration {
    Duration::from_millis(1)
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            enabled: true,
            path: None,
            fsync: FsyncPolicy::default(),
            key_file: None,
            tracing: false,
            mode: AuditMode::default(),
            queue_capacity: default_capacity(),
            strict_timeout: default_strict_timeout(),
            max_wait: default_max_wait(),
            checkpoints: None,
            rotate_size: None,
            rotate_every: None,
            retain_files: None,
            retain_days: None,
            coalesce: None,
        }
    }
}

impl AuditConfig {
    /// Checks what the section says on its own: strict mode needs an audit file (tracing is
    /// not durable, and checkpoints keep no events).
    pub fn validate(&self) -> Result<()> {
        if self.enabled && self.mode == AuditMode::Strict && self.path.is_none() {
            return Err(Error::config(format!(
                "audit: {}",
                strict_needs_a_durable_sink().message()
            )));
        }
        Ok(())
    }
}

/// The key file used for a log at `path` when none is configured: `PATH.key`.
pub fn default_key_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".key");
    PathBuf::from(p)
}

/// Builds an [`AuditLog`].
#[derive(Default)]
pub struct AuditLogBuilder {
    files: Vec<(PathBuf, FsyncPolicy)>,
    sinks: Vec<Box<dyn AuditSink>>,
    key: Option<AuditKey>,
    mode: AuditMode,
    capacity: Option<usize>,
    strict_timeout: Option<Duration>,
    max_wait: Option<Duration>,
    observer: Option<Box<dyn AuditObserver>>,
    /// Where the key came from, when it came from a file (`from_config`), so that a forked
    /// child can load it again (see [`AuditLogBuilder::replica`]).
    key_file: Option<PathBuf>,
    /// Whether `tracing()` was asked for: a sink a replica can make again.
    tracing: bool,
    /// Whether a sink, callback or key was handed over in code: a replica cannot be made.
    handed_over: bool,
    checkpoints: Option<Checkpoints>,
    rotation: Rotation,
    coalesce: Option<Duration>,
}

impl std::fmt::Debug for AuditLogBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLogBuilder")
            .field("files", &self.files)
            .field("sinks", &self.sinks.len())
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl AuditLogBuilder {
    /// Appends to a JSON-lines file.
    pub fn file(mut self, path: impl Into<PathBuf>, fsync: FsyncPolicy) -> Self {
        self.files.push((path.into(), fsync));
        self
    }

    /// Emits every line through `tracing`.
    pub fn tracing(mut self) -> Self {
        self.sinks.push(Box::new(TracingSink));
        self.tracing = true;
        self
    }

    /// Calls `f` for every record.
    pub fn callback(
        self,
        f: impl FnMut(&AuditRecord<'_>) -> std::io::Result<()> + Send + 'static,
    ) -> Self {
        self.sink(Box::new(CallbackSink::new(f)))
    }

    /// Any sink.
    pub fn sink(mut self, sink: Box<dyn AuditSink>) -> Self {
        self.sinks.push(sink);
        self.handed_over = true;
        self
    }

    /// The chain key. Default: `FILE.key` beside the first file (created when missing), or an
    /// ephemeral key without a file.
    pub fn key(mut self, key: AuditKey) -> Self {
        self.key = Some(key);
        self.key_file = None;
        self.handed_over = true;
        self
    }

    /// Best effort or strict.
    pub fn mode(mut self, mode: AuditMode) -> Self {
        self.mode = mode;
        self
    }

    /// Events each thread can have queued before it waits (default 1024, at most 65 536).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity.max(1));
        self
    }

    /// How long a strict-mode access waits for its event (default 5 s).
    pub fn strict_timeout(mut self, timeout: Duration) -> Self {
        self.strict_timeout = Some(timeout);
        self
    }

    /// Best effort: how long an access waits for room in a full queue before its event is
    /// dropped and counted (default 1 ms).
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = Some(max_wait);
        self
    }

    /// Rotates every file once it holds `bytes` bytes (it may pass that by one batch). The
    /// chain continues in the new file: see [`Rotation`].
    pub fn rotate_size(mut self, bytes: u64) -> Self {
        self.rotation.size = Some(bytes.max(1));
        self
    }

    /// Rotates every file when the time crosses a multiple of `every` since 1970 (UTC):
    /// a day rotates at midnight UTC.
    pub fn rotate_every(mut self, every: Duration) -> Self {
        self.rotation.every = Some(every);
        self
    }

    /// Keeps at most `files` rotated files per log, deleting the oldest after a rotation.
    pub fn retain_files(mut self, files: usize) -> Self {
        self.rotation.retain_files = Some(files);
        self
    }

    /// Deletes rotated files last written more than `days` days ago, after a rotation.
    pub fn retain_days(mut self, days: u32) -> Self {
        self.rotation.retain_for = Some(Duration::from_secs(u64::from(days) * 86_400));
        self
    }

    /// Coalesces successful cache hits (`cache: hit`) of one secret by one principal within
    /// `interval` of the first into one `secret.read` event with `count`, `first` and `last`,
    /// written once the interval ends (within about 50 ms more), at a flush and at shutdown.
    /// Misses, stale reads, denials, failures, writes and every other event are never
    /// coalesced. Done on the writer thread: the cache-hit path is unchanged.
    pub fn coalesce(mut self, interval: Duration) -> Self {
        self.coalesce = (!interval.is_zero()).then_some(interval);
        self
    }

    /// Sees every event on the writer thread (the monitor).
    pub fn observer(mut self, observer: Box<dyn AuditObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Publishes checkpoints of the chain (see [`Checkpoints`] for what each target protects).
    pub fn checkpoints(mut self, checkpoints: Checkpoints) -> Self {
        self.checkpoints = Some(checkpoints);
        // Checkpoints hold the parent's stores: a forked child cannot reuse them, so it
        // rebuilds the log from its config (or the caller builds it again), never without them.
        self.handed_over = true;
        self
    }

    /// From the config section (file, key file, tracing, mode, capacity). A section with
    /// checkpoints to a store needs [`AuditLogBuilder::from_config_with_stores`].
    pub fn from_config(config: &AuditConfig) -> Result<AuditLogBuilder> {
        AuditLogBuilder::from_config_with_stores(config, &|_| None)
    }

    /// From the config section, with `stores` resolving the store ids that checkpoint targets
    /// name.
    pub fn from_config_with_stores(
        config: &AuditConfig,
        stores: &dyn Fn(&str) -> Option<Arc<dyn crate::store::SecretStore>>,
    ) -> Result<AuditLogBuilder> {
        let mut b = AuditLog::builder()
            .mode(config.mode)
            .queue_capacity(config.queue_capacity)
            .strict_timeout(config.strict_timeout)
            .max_wait(config.max_wait);
        if let Some(key_file) = &config.key_file {
            b = b.key(AuditKey::load_or_create(key_file)?);
            b.handed_over = false;
            b.key_file = Some(key_file.clone());
        }
        if let Some(path) = &config.path {
            b = b.file(path, config.fsync);
        }
        if config.rotate_every.is_some_and(|e| e.is_zero()) {
            return Err(Error::config("audit.rotate_every must be longer than zero"));
        }
        b.rotation = Rotation {
            size: config.rotate_size.map(|s| s.max(1)),
            every: config.rotate_every,
            retain_files: config.retain_files,
            retain_for: config
                .retain_days
                .map(|d| Duration::from_secs(u64::from(d) * 86_400)),
        };
        if !b.rotation.is_on() && (config.retain_files.is_some() || config.retain_days.is_some()) {
            return Err(Error::config(
                "audit.retain_files and audit.retain_days apply to rotated files: set \
                 audit.rotate_size or audit.rotate_every too",
            ));
        }
        if let Some(interval) = config.coalesce {
            b = b.coalesce(interval);
        }
        if config.tracing {
            b = b.tracing();
        }
        if let Some(c) = &config.checkpoints {
            let log = config
                .path
                .as_deref()
                .unwrap_or(Path::new("(no audit file)"));
            b = b.checkpoints(c.resolve(log, stores)?);
        }
        Ok(b)
    }

    /// What it takes to build the same log in another process (a forked child, see
    /// [`Sealbox::reopen`](crate::Sealbox::reopen)): the same files, mode and limits, the
    /// key read again from its file. `None` when a sink, callback or key was handed over in
    /// code: those cannot be made again from here.
    pub(crate) fn replica(&self) -> Option<AuditReplica> {
        (!self.handed_over).then(|| AuditReplica {
            files: self.files.clone(),
            mode: self.mode,
            capacity: self.capacity,
            strict_timeout: self.strict_timeout,
            max_wait: self.max_wait,
            key_file: self.key_file.clone(),
            tracing: self.tracing,
            rotation: self.rotation,
            coalesce: self.coalesce,
        })
    }

    /// Opens the sinks and starts the writer thread.
    pub fn build(self) -> Result<AuditLog> {
        let key = match (self.key, &self.key_file, self.files.first()) {
            (Some(k), _, _) => k,
            (None, Some(key_file), _) => AuditKey::load_or_create(key_file)?,
            (None, None, Some((path, _))) => AuditKey::load_or_create(&default_key_path(path))?,
            (None, None, None) => AuditKey::ephemeral()?,
        };
        let mut sinks: Vec<Box<dyn AuditSink>> = Vec::new();
        let mut resume: Option<ChainHead> = None;
        for (path, fsync) in &self.files {
            let sink = FileSink::open_rotating(path, *fsync, Some(key.clone()), self.rotation)?;
            if let Some(h) = sink.resume_from() {
                if resume.as_ref().is_some_and(|r| *r != h) {
                    return Err(Error::config(
                        "two audit files continue different chains; give each log its own client",
                    ));
                }
                resume = Some(h);
            }
            sinks.push(Box::new(sink));
        }
        if let Some(c) = self.checkpoints.filter(|c| !c.is_empty()) {
            sinks.push(Box::new(c.into_sink(key.clone())));
        }
        sinks.extend(self.sinks);
        if self.mode == AuditMode::Strict
            && !sinks.iter().any(|s| s.durable() && !s.follows_others())
        {
            return Err(strict_needs_a_durable_sink());
        }
        let capacity = self.capacity.unwrap_or_else(default_capacity);
        let max_wait = self.max_wait.unwrap_or_else(default_max_wait);
        let queue = Arc::new(Queue::new(capacity, max_wait));
        let head = resume.unwrap_or_default();
        let head_out = Arc::new(Mutex::new(head.clone()));
        let healthy = Arc::new(AtomicBool::new(true));
        let writer = Writer {
            queue: queue.clone(),
            sinks,
            key,
            observer: self.observer,
            head,
            head_out: head_out.clone(),
            healthy: healthy.clone(),
            lost: None,
            coalescer: self.coalesce.map(coalesce::Coalescer::new),
        };
        let thread = std::thread::Builder::new()
            .name("sealbox-audit".into())
            .spawn(move || writer.run())
            .map_err(|e| Error::io("starting the audit writer thread", e))?;
        queue.set_writer(thread.thread().clone());
        Ok(AuditLog {
            shared: Arc::new(ProcessBound::new(Shared {
                queue,
                mode: self.mode,
                strict_timeout: self.strict_timeout.unwrap_or_else(default_strict_timeout),
                thread: Mutex::new(Some(thread)),
                head: head_out,
                healthy,
            })),
        })
    }
}

struct Shared {
    queue: Arc<Queue>,
    mode: AuditMode,
    strict_timeout: Duration,
    thread: Mutex<Option<JoinHandle<()>>>,
    head: Arc<Mutex<ChainHead>>,
    healthy: Arc<AtomicBool>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Everything queued before this point is written (or retried a few times) first.
        let _ = self.queue.control(Control::Shutdown);
        // The last clone can be dropped on the writer thread itself (an alert hook holding a
        // client); joining there would deadlock, and the thread ends on Shutdown anyway.
        if let Ok(mut t) = self.thread.lock()
            && let Some(t) = t.take()
            && t.thread().id() != std::thread::current().id()
        {
            let _ = t.join();
        }
    }
}

/// An [`AuditLogBuilder`]'s settings without its sinks: plain data a client keeps to build
/// its log again in a forked child.
#[derive(Clone, Debug)]
pub(crate) struct AuditReplica {
    files: Vec<(PathBuf, FsyncPolicy)>,
    mode: AuditMode,
    capacity: Option<usize>,
    strict_timeout: Option<Duration>,
    max_wait: Option<Duration>,
    key_file: Option<PathBuf>,
    tracing: bool,
    rotation: Rotation,
    coalesce: Option<Duration>,
}

impl AuditReplica {
    /// A builder of the same log (no observer: the client adds its own monitor).
    pub(crate) fn builder(&self) -> AuditLogBuilder {
        let mut b = AuditLog::builder().mode(self.mode);
        b.files = self.files.clone();
        b.capacity = self.capacity;
        b.strict_timeout = self.strict_timeout;
        b.max_wait = self.max_wait;
        b.key_file = self.key_file.clone();
        b.rotation = self.rotation;
        b.coalesce = self.coalesce;
        if self.tracing {
            b = b.tracing();
        }
        b
    }
}

/// A running audit log. Cheap to clone; the writer stops (after writing everything queued)
/// when the last clone is dropped.
///
/// A log belongs to the process that built it: its writer thread does not exist in a forked
/// child, so there every call answers [`ErrorKind::Forked`] (and dropping it leaves the
/// parent's writer alone); build the log, or reopen the client, in the child.
#[derive(Clone)]
pub struct AuditLog {
    shared: Arc<ProcessBound<Shared>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("mode", &self.shared.mode)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Starts a builder.
    pub fn builder() -> AuditLogBuilder {
        AuditLogBuilder::default()
    }

    /// The mode.
    pub fn mode(&self) -> AuditMode {
        self.shared.mode
    }

    /// Records an event. Best effort: enqueues (waiting at most `max_wait` while the queue is
    /// full, then dropping and counting it). Strict:
    /// waits until a sink wrote it and fails with `Unavailable` when none could.
    pub fn record(&self, event: AuditEvent) -> Result<()> {
        self.alive()?;
        match self.shared.mode {
            AuditMode::BestEffort => self.enqueue(event),
            AuditMode::Strict => self.record_strict(event, Some(ACCESS_REFUSED)),
        }
    }

    /// Enqueues without waiting for the write, whatever the mode (used for events of accesses
    /// that already failed): best effort, as [`AuditLog::record`] is in that mode.
    #[inline]
    pub fn enqueue(&self, event: AuditEvent) -> Result<()> {
        self.alive()?;
        let item = Item {
            event,
            waiter: None,
        };
        self.shared
            .queue
            .push_best_effort(Record::Event(Box::new(item)))
            .map_err(|_| gone())
    }

    /// `Forked` in a process forked after the log was built.
    #[inline]
    fn alive(&self) -> Result<()> {
        self.shared.stamp().check("audit log")
    }

    /// Records a successful read served from the cache: the hot path. The client checked the
    /// process already (the log was built with it), so this does not again. `tick` is when the
    /// cache answered, on its coarse monotonic clock. In best-effort mode without a per-call
    /// source it queues a 16-byte record (see `queue.rs`); otherwise the same event as
    /// [`AuditLog::record`].
    #[inline]
    pub(crate) fn record_cached_read(
        &self,
        user: &Principal,
        source: Option<&Arc<str>>,
        resource: &Arc<Resource>,
        cache: CacheOutcome,
        tick: u64,
    ) -> Result<()> {
        if self.shared.mode == AuditMode::BestEffort && source.is_none() {
            return self
                .shared
                .queue
                .push_read(tick, user, resource, cache)
                .map_err(|_| gone());
        }
        let mut e = AuditEvent::cached_read(user.clone(), resource.clone(), cache);
        e.source = source.cloned();
        self.record(e)
    }

    /// Strict mode: writes the intent of a change (`<event>.intent`, `"success":null`, the
    /// event's request id) and waits until every durable sink wrote it; the change may be
    /// made only then. When it fails (`Unavailable`), the log says the change was refused,
    /// never that it was made. Best effort: nothing (the outcome alone is recorded).
    pub fn record_intent(&self, event: &AuditEvent) -> Result<()> {
        self.alive()?;
        match self.shared.mode {
            AuditMode::BestEffort => Ok(()),
            AuditMode::Strict => self.record_strict(event.as_intent(), Some(CHANGE_REFUSED)),
        }
    }

    /// Records the outcome of a change whose intent [`AuditLog::record_intent`] wrote. The
    /// change happened (or failed) whatever the log does, so the event is written as it is,
    /// however late: strict mode waits for it and fails with `Unavailable` when the durable
    /// sinks did not all write it in time, but never records the change as refused.
    pub fn record_outcome(&self, event: AuditEvent) -> Result<()> {
        self.alive()?;
        match self.shared.mode {
            AuditMode::BestEffort => self.enqueue(event),
            AuditMode::Strict => self.record_strict(event, None),
        }
    }

    fn record_strict(&self, event: AuditEvent, refusal: Option<Refusal>) -> Result<()> {
        let (tx, rx) = bounded(1);
        let timeout = self.shared.strict_timeout;
        let deadline = std::time::Instant::now() + timeout;
        let state = Arc::new(AtomicU8::new(WAITING));
        let item = Item {
            event,
            waiter: Some(Waiter {
                answer: tx,
                state: state.clone(),
                refusal,
            }),
        };
        match self
            .shared
            .queue
            .push(Record::Event(Box::new(item)), true, Some(deadline))
        {
            Ok(()) => {}
            Err(PushError::TimedOut) => return Err(strict_failed()),
            Err(PushError::Closed) => return Err(gone()),
        }
        let answered = |ok: bool| if ok { Ok(()) } else { Err(strict_failed()) };
        match rx.recv_deadline(deadline) {
            Ok(ok) => return answered(ok),
            Err(RecvTimeoutError::Disconnected) => return Err(gone()),
            Err(RecvTimeoutError::Timeout) => {}
        }
        // Still queued: give up, and the writer writes the event as refused. Taken into a
        // batch already: that batch's answer decides, so the log and the caller agree; past
        // a second timeout the caller gives up even so, and the writer follows the line
        // with one saying the access was refused.
        let mut waited = false;
        loop {
            match state.compare_exchange(WAITING, GAVE_UP, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Err(strict_timed_out(timeout)),
                Err(GAVE_UP) => return Err(strict_timed_out(timeout)),
                Err(TAKEN) if !waited => {
                    waited = true;
                    match rx.recv_timeout(timeout) {
                        Ok(ok) => return answered(ok),
                        Err(RecvTimeoutError::Disconnected) => return Err(gone()),
                        Err(RecvTimeoutError::Timeout) => {}
                    }
                    if state
                        .compare_exchange(TAKEN, GAVE_UP, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        return Err(strict_timed_out(timeout));
                    }
                }
                // Answered: the answer is in the channel (or on its way).
                Err(_) => {
                    return match rx.recv() {
                        Ok(ok) => answered(ok),
                        Err(_) => Err(gone()),
                    };
                }
            }
        }
    }

    /// Waits until every event recorded before this call is written. Fails with `Unavailable`
    /// when no sink could write them (they stay queued and are retried).
    pub fn flush(&self) -> Result<()> {
        self.alive()?;
        let (tx, rx) = bounded(1);
        self.shared
            .queue
            .control(Control::Flush(tx))
            .map_err(|_| gone())?;
        match rx.recv() {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::new(
                ErrorKind::Unavailable,
                "no audit sink could write the queued events; they are kept and retried",
            )),
            Err(_) => Err(gone()),
        }
    }

    /// Events dropped so far: best-effort events that found the queue full for longer than
    /// `max_wait`, and events still unwritten when the writer gave up at shutdown. Every drop
    /// is also recorded in the chain as an `audit_events_lost` event once a sink writes again.
    pub fn events_lost(&self) -> u64 {
        self.shared.queue.lost_total()
    }

    /// Whether the last batch reached at least one sink. Strict mode refuses writes up front
    /// while this is false, so a store is not changed without a record.
    pub fn is_healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Acquire)
    }

    /// The chain head after the last written batch (the next seq and the last hash): an anchor
    /// to compare a verified file against.
    pub fn head(&self) -> ChainHead {
        self.shared
            .head
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default()
    }
}

fn gone() -> Error {
    Error::internal("the audit writer thread stopped; audit events cannot be recorded")
}

/// What a refused read (or any access but a change) is written as.
const ACCESS_REFUSED: Refusal = Refusal {
    timed_out: "strict mode: the audit log did not take this event within strict_timeout; \
                the access was refused",
    not_written: "strict mode: not every durable audit sink could write this event; the \
                  access was refused",
};

/// What a refused change's intent is written as: the change's outcome, not made.
const CHANGE_REFUSED: Refusal = Refusal {
    timed_out: "strict mode: the intent was not written within strict_timeout; no change \
                was made",
    not_written: "strict mode: not every durable audit sink could write the intent; no \
                  change was made",
};

fn strict_needs_a_durable_sink() -> Error {
    Error::config(
        "audit mode strict needs a durable sink that keeps the events: set audit.path (an \
         audit file), or add a sink whose durable() is true; tracing and callbacks are not \
         durable, and checkpoints keep no events",
    )
}

fn strict_timed_out(timeout: Duration) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!(
            "the audit log did not record this access within strict_timeout ({}) and audit \
             mode is strict; check the audit sinks",
            humantime::format_duration(timeout)
        ),
    )
}

fn strict_failed() -> Error {
    Error::new(
        ErrorKind::Unavailable,
        "not every durable audit sink could record this access and audit mode is strict; \
         check the audit sinks",
    )
}
