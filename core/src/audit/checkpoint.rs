//! Checkpoints: where the chain stood (`seq`, `hash`) at a moment, MACed under the chain key and
//! published away from the log, so that a log cut back or rolled back to an older copy is found
//! even when whoever did it also rewrote the `.head` anchor.
//!
//! What each place protects against (the log and its anchor live on one disk, and the chain key
//! is by default a file beside them):
//!
//! * **The `.head` anchor** beside the log: accidents only (a copy that lost its tail, a disk
//!   that dropped the last writes). Whoever can write the log can delete the anchor, restore an
//!   old one, or, holding the key, sign a new one.
//! * **syslog / journald** ([`Checkpoints::syslog`]): a copy on another host when the host's
//!   syslog forwards it there (rsyslog, syslog-ng, systemd-journal-remote). Kept only on this
//!   host, root can rewrite it like the log.
//! * **A store's versions** ([`Checkpoints::store`]): each checkpoint is a new version of one
//!   secret, and the store keeps the history. As strong as the store's access control and
//!   history: a cloud store where this host may add versions but not delete them (AWS Secrets
//!   Manager with a policy that denies `DeleteSecret` and `UpdateSecretVersionStage`) keeps the
//!   checkpoints out of a local attacker's reach; the local vault, on the same disk, protects no
//!   more than the anchor. AWS keeps about 100 versions without a stage; the newest checkpoint
//!   is the one that catches a cut.
//!
//! A checkpoint is published every `every` events or every `interval` (whichever comes first,
//! when the writer next writes or catches up) and when the log closes. Store checkpoints are
//! written on the audit writer thread: a slow store delays the writer (not the callers, while
//! their queues hold) once per checkpoint.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::chain::AuditKey;
use super::sink::{AuditRecord, AuditSink};
use crate::error::{Error, ErrorKind, Result};
use crate::secret::Secret;
use crate::store::{PutOptions, SecretName, SecretStore, VersionSelector};

/// The syslog socket used when none is configured.
pub const DEFAULT_SYSLOG_SOCKET: &str = "/dev/log";

/// Where the chain stood at a moment, signed with the chain key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// `seq` of the last line written when the checkpoint was taken.
    pub seq: u64,
    /// That line's hash.
    pub hash: String,
    /// When the checkpoint was taken (RFC 3339, UTC).
    pub time: String,
    /// `HMAC-SHA256(chain key, "sealbox-audit-checkpoint:SEQ:HASH:TIME")`, hex.
    pub mac: String,
}

impl Checkpoint {
    /// Signs a checkpoint of the chain at `seq` (whose line has `hash`), taken at `time`.
    pub fn sign(key: &AuditKey, seq: u64, hash: &str, time: SystemTime) -> Checkpoint {
        let time = humantime::format_rfc3339_millis(time).to_string();
        let mac = key.mac_hex(mac_input(seq, hash, &time).as_bytes());
        Checkpoint {
            seq,
            hash: hash.to_owned(),
            time,
            mac,
        }
    }

    /// Whether the MAC verifies under `key` (the checkpoint was made with this log's key).
    pub fn verifies(&self, key: &AuditKey) -> bool {
        key.verify_hex(
            mac_input(self.seq, &self.hash, &self.time).as_bytes(),
            &self.mac,
        )
    }

    /// One line of JSON (no spaces): the value of a store checkpoint and the end of a syslog one.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses [`Checkpoint::to_json`]'s output.
    pub fn from_json(text: &[u8]) -> Option<Checkpoint> {
        serde_json::from_slice(text).ok()
    }

    /// Parses a syslog message (or a line of a syslog file) that carries a checkpoint: the JSON
    /// after its last space.
    pub fn from_syslog_message(message: &str) -> Option<Checkpoint> {
        let message = message.trim_end();
        let json = message.rsplit(' ').next()?;
        Checkpoint::from_json(json.as_bytes())
    }
}

fn mac_input(seq: u64, hash: &str, time: &str) -> String {
    format!("sealbox-audit-checkpoint:{seq}:{hash}:{time}")
}

/// Reads every checkpoint kept as a version of `name` in `store`, oldest first.
///
/// A secret that is missing is `NotFound` (no checkpoint was published yet, or the name is not
/// the configured one); a version that is not a checkpoint is an `Integrity` error naming it.
pub async fn read_checkpoints(
    store: &dyn SecretStore,
    name: &SecretName,
) -> Result<Vec<Checkpoint>> {
    let meta = store.describe(name).await?;
    let mut out = Vec::with_capacity(meta.versions.len());
    for v in &meta.versions {
        let value = store
            .get(name, &VersionSelector::Version(v.version.clone()))
            .await?;
        let text = secrecy::ExposeSecret::expose_secret(&value.value);
        let checkpoint = Checkpoint::from_json(text).ok_or_else(|| {
            Error::new(
                ErrorKind::Integrity,
                format!(
                    "version {} of {name} is not an audit checkpoint; \
                         is this the checkpoint secret of this log?",
                    v.version
                ),
            )
        })?;
        out.push(checkpoint);
    }
    Ok(out)
}

/// Where checkpoints go, and how often. Handed to [`super::AuditLogBuilder::checkpoints`].
pub struct Checkpoints {
    every: u64,
    interval: Duration,
    targets: Vec<Box<dyn Publisher>>,
}

impl std::fmt::Debug for Checkpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoints")
            .field("every", &self.every)
            .field("interval", &self.interval)
            .field(
                "to",
                &self.targets.iter().map(|t| t.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Default for Checkpoints {
    fn default() -> Self {
        Checkpoints {
            every: default_every(),
            interval: default_interval(),
            targets: Vec::new(),
        }
    }
}

impl Checkpoints {
    /// No targets yet; every 1000 events or 60 s.
    pub fn new() -> Checkpoints {
        Checkpoints::default()
    }

    /// A checkpoint after this many events (at least 1).
    pub fn every(mut self, events: u64) -> Self {
        self.every = events.max(1);
        self
    }

    /// A checkpoint at least this often while events come.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sends each checkpoint to the syslog datagram socket at `socket` (`/dev/log` for the
    /// host's syslog or journald), facility `auth`, tag `sealbox-audit`. Protects the log as
    /// far as the host's syslog forwards to another host.
    pub fn syslog(mut self, socket: impl Into<PathBuf>, log: &Path) -> Self {
        self.targets.push(Box::new(SyslogTarget {
            socket: socket.into(),
            log: log.display().to_string(),
            logger: None,
        }));
        self
    }

    /// Writes each checkpoint as a new version of `name` in `store`. Protects the log as far as
    /// the store's access control and version history reach.
    pub fn store(mut self, store: Arc<dyn SecretStore>, name: SecretName) -> Self {
        self.targets.push(Box::new(StoreTarget {
            store,
            name,
            runtime: None,
        }));
        self
    }

    /// Whether no target was given.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    pub(crate) fn into_sink(self, key: AuditKey) -> CheckpointSink {
        CheckpointSink {
            key,
            every: self.every,
            interval: self.interval,
            targets: self.targets,
            pending: None,
            since: 0,
            last: Instant::now(),
            retry_at: None,
        }
    }
}

fn default_every() -> u64 {
    1000
}

fn default_interval() -> Duration {
    Duration::from_secs(60)
}

/// The `audit.checkpoints` config section:
/// `{every: 1000, interval: 60s, to: [syslog, {syslog: {socket: PATH}}, {store: STORE/NAME}]}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// A checkpoint after this many events (default 1000).
    #[serde(default = "default_every")]
    pub every: u64,
    /// A checkpoint at least this often while events come (default 60 s).
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Where checkpoints go (one or more).
    pub to: Vec<CheckpointTarget>,
}

/// One place checkpoints go.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "TargetSpec")]
pub enum CheckpointTarget {
    /// The syslog datagram socket (default `/dev/log`).
    Syslog {
        /// The socket path.
        socket: PathBuf,
    },
    /// Versions of the secret `name` in the configured store `store`.
    Store {
        /// The store id (`default` for a config's single `secrets:` store).
        store: String,
        /// The checkpoint secret.
        name: SecretName,
    },
}

impl CheckpointTarget {
    /// Parses `STORE/NAME`: a configured store's id, then the checkpoint secret's name.
    pub fn parse_store(reference: &str) -> Result<CheckpointTarget> {
        let (store, name) = reference.split_once('/').ok_or_else(|| {
            Error::config(
                "a checkpoint store is given as STORE/NAME: a configured store id, a slash, \
                 and the checkpoint secret's name",
            )
        })?;
        if store.is_empty() {
            return Err(Error::config(
                "a checkpoint store is given as STORE/NAME; the store id is empty",
            ));
        }
        Ok(CheckpointTarget::Store {
            store: store.to_owned(),
            name: SecretName::new(name)?,
        })
    }
}

#[derive(Deserialize)]
#[serde(untagged, deny_unknown_fields)]
#[serde(expecting = "`syslog`, `{syslog: {socket: PATH}}` or `{store: STORE/NAME}`")]
enum TargetSpec {
    Name(String),
    Syslog { syslog: SyslogSpec },
    Store { store: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SyslogSpec {
    #[serde(default)]
    socket: Option<PathBuf>,
}

impl TryFrom<TargetSpec> for CheckpointTarget {
    type Error = String;

    fn try_from(spec: TargetSpec) -> std::result::Result<Self, String> {
        match spec {
            TargetSpec::Name(n) if n == "syslog" => Ok(CheckpointTarget::Syslog {
                socket: DEFAULT_SYSLOG_SOCKET.into(),
            }),
            TargetSpec::Name(_) => Err(
                "unknown checkpoint target; use `syslog`, `{syslog: {socket: PATH}}` or \
                 `{store: STORE/NAME}`"
                    .into(),
            ),
            TargetSpec::Syslog { syslog } => Ok(CheckpointTarget::Syslog {
                socket: syslog
                    .socket
                    .unwrap_or_else(|| DEFAULT_SYSLOG_SOCKET.into()),
            }),
            TargetSpec::Store { store } => {
                CheckpointTarget::parse_store(&store).map_err(|e| e.message().to_owned())
            }
        }
    }
}

impl CheckpointConfig {
    /// The [`Checkpoints`] this section describes for the log at `log`, with `store` resolving
    /// a store id to the configured store.
    pub fn resolve(
        &self,
        log: &Path,
        store: &dyn Fn(&str) -> Option<Arc<dyn SecretStore>>,
    ) -> Result<Checkpoints> {
        if self.to.is_empty() {
            return Err(Error::config(
                "checkpoints.to: name at least one target (syslog or a store)",
            ));
        }
        let mut c = Checkpoints::new().every(self.every).interval(self.interval);
        for t in &self.to {
            c = match t {
                CheckpointTarget::Syslog { socket } => c.syslog(socket, log),
                CheckpointTarget::Store { store: id, name } => {
                    let s = store(id).ok_or_else(|| {
                        Error::config(format!(
                            "checkpoints.to: no store named {id:?} (checkpoint stores are the \
                             config's stores; a single `secrets:` store is `default`)"
                        ))
                    })?;
                    c.store(s, name.clone())
                }
            };
        }
        Ok(c)
    }
}

/// One place a checkpoint is published.
trait Publisher: Send + 'static {
    fn name(&self) -> String;
    fn publish(&mut self, checkpoint: &Checkpoint) -> io::Result<()>;
    /// Whether what it publishes is kept (a store's versions), not only sent (syslog).
    fn durable(&self) -> bool {
        false
    }
}

type SyslogLogger = syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>;

struct SyslogTarget {
    socket: PathBuf,
    log: String,
    logger: Option<SyslogLogger>,
}

impl SyslogTarget {
    fn connect(&self) -> io::Result<SyslogLogger> {
        let formatter = syslog::Formatter3164 {
            facility: syslog::Facility::LOG_AUTH,
            hostname: None,
            process: "sealbox-audit".into(),
            pid: std::process::id(),
        };
        syslog::unix_custom(formatter, &self.socket).map_err(|e| {
            io::Error::other(format!(
                "connecting to the syslog socket {}: {e}",
                self.socket.display()
            ))
        })
    }
}

impl Publisher for SyslogTarget {
    fn name(&self) -> String {
        format!("syslog {}", self.socket.display())
    }

    fn publish(&mut self, checkpoint: &Checkpoint) -> io::Result<()> {
        let message = format!(
            "audit checkpoint of {} {}",
            self.log.replace(' ', "_"),
            checkpoint.to_json()
        );
        // One reconnect: syslogd restarts and replaces its socket.
        for attempt in 0..2 {
            let logger = match &mut self.logger {
                Some(l) => l,
                None => self.logger.insert(self.connect()?),
            };
            match logger.notice(message.as_str()) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.logger = None;
                    if attempt == 1 {
                        return Err(io::Error::other(format!(
                            "writing to the syslog socket {}: {e}",
                            self.socket.display()
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

struct StoreTarget {
    store: Arc<dyn SecretStore>,
    name: SecretName,
    /// Made on first use, on the writer thread (stores are async; the writer is not).
    runtime: Option<tokio::runtime::Runtime>,
}

impl Publisher for StoreTarget {
    fn durable(&self) -> bool {
        true
    }

    fn name(&self) -> String {
        format!("store {} secret {}", self.store.kind(), self.name)
    }

    fn publish(&mut self, checkpoint: &Checkpoint) -> io::Result<()> {
        if tokio::runtime::Handle::try_current().is_ok() {
            // Never block a runtime's thread (only the writer thread publishes to stores).
            return Err(io::Error::other(
                "a store checkpoint cannot be written from inside an async runtime",
            ));
        }
        let runtime = match &mut self.runtime {
            Some(r) => r,
            None => self.runtime.insert(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?,
            ),
        };
        let mut json = checkpoint.to_json().into_bytes();
        let value = Secret::from_mut_slice(&mut json).map_err(io::Error::other)?;
        runtime
            .block_on(self.store.put(&self.name, &value, &PutOptions::default()))
            .map(|_| ())
            .map_err(|e| io::Error::other(e.message().to_owned()))
    }
}

/// The sink that publishes checkpoints of the chain the writer signs.
pub(crate) struct CheckpointSink {
    key: AuditKey,
    every: u64,
    interval: Duration,
    targets: Vec<Box<dyn Publisher>>,
    /// The last line written and not yet in a published checkpoint.
    pending: Option<(u64, String)>,
    /// Lines written since the last published checkpoint.
    since: u64,
    last: Instant,
    /// After a failed publish, not before this.
    retry_at: Option<Instant>,
}

impl CheckpointSink {
    fn due(&self) -> bool {
        self.pending.is_some()
            && self.retry_at.is_none_or(|at| Instant::now() >= at)
            && (self.since >= self.every || self.last.elapsed() >= self.interval)
    }

    fn publish(&mut self) -> io::Result<()> {
        let Some((seq, hash)) = self.pending.clone() else {
            return Ok(());
        };
        let checkpoint = Checkpoint::sign(&self.key, seq, &hash, SystemTime::now());
        let mut failed = Vec::new();
        for t in &mut self.targets {
            if let Err(e) = t.publish(&checkpoint) {
                tracing::error!(
                    target: "sealbox::audit",
                    checkpoint_target = %t.name(),
                    error = %e,
                    seq,
                    "audit checkpoint could not be published"
                );
                failed.push(t.name());
            }
        }
        if failed.is_empty() {
            self.pending = None;
            self.since = 0;
            self.last = Instant::now();
            self.retry_at = None;
            Ok(())
        } else {
            // Kept pending and retried (all targets again: a repeated checkpoint is harmless).
            self.retry_at = Some(Instant::now() + self.interval.min(Duration::from_secs(5)));
            Err(io::Error::other(format!(
                "audit checkpoint at seq {seq} not published to {}",
                failed.join(", ")
            )))
        }
    }
}

impl AuditSink for CheckpointSink {
    fn name(&self) -> &str {
        "checkpoints"
    }

    /// A checkpoint vouches only for lines a sink that keeps them (the file) wrote.
    fn follows_others(&self) -> bool {
        true
    }

    /// With a store target: strict mode waits for it as for the file.
    fn durable(&self) -> bool {
        self.targets.iter().any(|t| t.durable())
    }

    fn write_batch(&mut self, records: &[AuditRecord<'_>]) -> io::Result<()> {
        let Some(last) = records.last() else {
            return Ok(());
        };
        self.pending = Some((last.seq, last.hash.to_owned()));
        self.since += records.len() as u64;
        if self.due() { self.publish() } else { Ok(()) }
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.due() { self.publish() } else { Ok(()) }
    }
}

impl Drop for CheckpointSink {
    /// The log closes: what was written since the last checkpoint gets one.
    fn drop(&mut self) {
        if self.pending.is_some() {
            let _ = self.publish();
        }
    }
}
