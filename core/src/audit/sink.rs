//! Where audit lines go: an append-only file, `tracing`, a callback.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

use super::chain::{self, AuditKey, ChainHead};
use super::event::AuditEvent;
use super::rotate::{self, Rotation};
use crate::error::{Error, Result};

/// A written event as sinks see it: the event plus its chain fields and JSON line.
#[derive(Debug)]
pub struct AuditRecord<'a> {
    /// The event.
    pub event: &'a AuditEvent,
    /// Its sequence number.
    pub seq: u64,
    /// Its hash (hex).
    pub hash: &'a str,
    /// The full JSON line, without the newline.
    pub line: &'a str,
}

/// A destination for audit lines. Sinks run on the audit writer thread, one batch at a time.
pub trait AuditSink: Send + 'static {
    /// A short name for errors and metrics.
    fn name(&self) -> &str;
    /// Writes a batch (in order). An error means none of the batch can be assumed written.
    fn write_batch(&mut self, records: &[AuditRecord<'_>]) -> io::Result<()>;
    /// Makes durable whatever the sink deferred (the file sink's `.head` anchor). Called when
    /// the writer has caught up: on `flush`, at shutdown and whenever the queue runs empty.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// The chain head already recorded by this sink (a file continued after a restart).
    fn resume_from(&self) -> Option<ChainHead> {
        None
    }
    /// For a sink other writers append to as well (the file sink: sibling worker processes on
    /// one config, other clients in this process): waits for the sink's exclusive lock and
    /// returns where its chain stands now, so the writer signs the next batch from there.
    /// `None`: the sink follows the writer's own chain. After `lock_chain` the writer always
    /// calls [`AuditSink::unlock_chain`], whether or not it then wrote a batch.
    fn lock_chain(&mut self) -> io::Result<Option<SharedTail>> {
        Ok(None)
    }
    /// Releases what [`AuditSink::lock_chain`] took.
    fn unlock_chain(&mut self) {}
    /// A sink that only follows what the other sinks wrote (the checkpoint publisher): it gets
    /// a batch after them and only when one of them wrote it, and its success does not count
    /// as the batch being written.
    fn follows_others(&self) -> bool {
        false
    }
    /// Whether what this sink writes outlives the process (a file, a checkpoint store), so
    /// that strict mode may let an access go once it wrote the access's event. `tracing` and
    /// callbacks are not durable; strict mode needs at least one durable sink that is not a
    /// follower. The writer's chain advances only when every such sink wrote a batch.
    fn durable(&self) -> bool {
        false
    }
    /// Takes back the batch this sink just wrote (called before [`AuditSink::unlock_chain`]),
    /// because another durable sink could not write it: the batch is signed again and
    /// retried, so a sink that keeps it would hold it twice. A durable sink that cannot take
    /// a batch back returns an error and then holds the retried batch as well.
    fn revoke_batch(&mut self) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this audit sink cannot take a batch back",
        ))
    }
}

/// Where a shared sink's chain stands, as [`AuditSink::lock_chain`] found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedTail {
    /// The next seq and the hash the next line must name.
    pub head: ChainHead,
    /// Bytes of a torn last line: a fragment left without its newline by a writer that
    /// stopped mid-line (killed, or the machine crashed). The sink ends that fragment with a
    /// newline, and the next batch starts with a signed [`TORN_TAIL_EVENT`] line so that
    /// `verify_file` can tell the fragment from an edit. A last line that is whole and
    /// continues the chain but lacks only its newline is not torn: the sink adds the newline.
    pub cut_off: Option<u64>,
    /// The file is new (rotated) and the chain continues from the last line of the rotated
    /// file named here: the next batch starts with a signed [`ROTATED_EVENT`] line.
    pub continues: Option<Continues>,
}

/// The rotated file a new file's chain continues from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Continues {
    /// The rotated file's name (in the active file's directory).
    pub file: String,
    /// Its last line's seq.
    pub seq: u64,
    /// Its last line's hash.
    pub hash: String,
}

/// The `event` of the first line of a file started by rotation.
pub const ROTATED_EVENT: &str = "audit.rotated";

/// The `event` of the line a writer signs after a torn last line (a fragment another writer,
/// or this process before a crash, left cut off mid-line).
pub const TORN_TAIL_EVENT: &str = "torn_tail_recovered";

/// The name earlier versions gave [`TORN_TAIL_EVENT`]; `verify_file` accepts both.
pub(crate) const LEGACY_TORN_TAIL_EVENT: &str = "audit.cut_off";

/// When the file sink calls `fsync`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// After every batch, before strict-mode accesses are released (the default).
    #[default]
    Batch,
    /// At most once per interval (a crash can lose up to one interval of events).
    Interval(#[serde(with = "humantime_serde")] Duration),
    /// Never (left to the OS).
    Never,
}

/// How stale the file sink's `.head` anchor may get while events keep coming.
const HEAD_EVERY: Duration = Duration::from_millis(100);

/// How long a writer waits for another writer's batch before its own batch fails (and is
/// retried). Writers hold the lock for one batch (milliseconds), so reaching this means a
/// writer is stuck while holding it, not contention.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// How much of the file's end is read first to find its last line: a page (lines are well
/// under 1 KiB), then four times more each time, up to [`TAIL_AT_MOST`].
const TAIL_FIRST: u64 = 1 << 12;

/// The most of the file's end read to find its last line (and a torn fragment after it):
/// an event with a very long name makes a line as long, and a writer killed while appending
/// it leaves a fragment as long. Past this, the file is refused as not ending in a line.
const TAIL_AT_MOST: u64 = 64 << 20;

/// An append-only JSON-lines file, with a `.head` anchor beside it so truncation of the tail
/// is detected too. The file is checked before every batch: if it was removed or replaced, it is
/// reopened at the same path (the new file continues the chain mid-sequence, which
/// `verify_file` reports), and if that fails the batch fails.
///
/// Several writers may share one file (worker processes started from one config, several
/// clients in one process): each batch is written under an exclusive `flock` on the file, and
/// the chain continues from the file's last line as it is then, not from this writer's last
/// batch. See [`AuditSink::lock_chain`].
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    head_path: PathBuf,
    file: File,
    identity: (u64, u64),
    fsync: FsyncPolicy,
    last_sync: Instant,
    /// When the `.head` anchor was last written, and the head it still has to record.
    last_head: Instant,
    unanchored: Option<(u64, String)>,
    resume: Option<ChainHead>,
    head_key: Option<AuditKey>,
    buf: Vec<u8>,
    /// Whether this sink holds the file's lock.
    locked: bool,
    /// The file's length after this sink's last write or tail read, and the chain head then:
    /// while the length is unchanged, no other writer appended and the tail need not be read.
    known_len: Option<u64>,
    known_head: Option<ChainHead>,
    /// The file's last line has no newline (a torn fragment, or a whole line whose newline
    /// was lost): the next batch starts with one.
    newline_first: bool,
    rotation: Rotation,
    /// The time of the open file's first line (time rotation), once read.
    started: Option<((u64, u64), SystemTime)>,
    /// Where the chain stood when the lock was taken, and how to take back the batch being
    /// written under it ([`AuditSink::revoke_batch`]).
    locked_head: Option<ChainHead>,
    undo: Option<Undo>,
}

/// The file sink as it was before the batch it holds the lock for.
#[derive(Debug)]
struct Undo {
    len: u64,
    head: Option<ChainHead>,
    unanchored: Option<(u64, String)>,
    /// The anchor was moved to the batch's last line.
    anchored: bool,
}

impl FileSink {
    /// Opens (or creates, mode 0600) `path` for appending. With the chain `key`, an existing
    /// file's last line must verify (the chain continues after it) and the `.head` anchor is
    /// kept up to date.
    pub fn open(path: &Path, fsync: FsyncPolicy, key: Option<AuditKey>) -> Result<FileSink> {
        FileSink::open_rotating(path, fsync, key, Rotation::default())
    }

    /// [`FileSink::open`], rotating the file per `rotation` (with the chain key only: the new
    /// file's first line is signed) and deleting old rotated files per its retention.
    pub fn open_rotating(
        path: &Path,
        fsync: FsyncPolicy,
        key: Option<AuditKey>,
        rotation: Rotation,
    ) -> Result<FileSink> {
        let file = open_append(path)
            .map_err(|e| Error::io(format!("opening audit file {}", path.display()), e))?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io(format!("reading audit file {}", path.display()), e))?;
        let mut head_path = path.as_os_str().to_owned();
        head_path.push(".head");
        let mut sink = FileSink {
            path: path.to_owned(),
            head_path: head_path.into(),
            file,
            identity: (meta.dev(), meta.ino()),
            fsync,
            last_sync: Instant::now(),
            last_head: Instant::now(),
            unanchored: None,
            resume: None,
            head_key: key,
            buf: Vec::with_capacity(1 << 16),
            locked: false,
            known_len: None,
            known_head: None,
            newline_first: false,
            rotation,
            started: None,
            locked_head: None,
            undo: None,
        };
        // Read under the lock: another process may be appending right now.
        let tail = sink.lock_chain();
        sink.unlock_chain();
        match tail {
            Ok(t) => {
                sink.resume = t.map(|t| t.head).filter(|h| *h != ChainHead::default());
                Ok(sink)
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(Error::new(
                crate::ErrorKind::Integrity,
                format!(
                    "the last line of audit file {} does not verify with the audit key; \
                     run `sealbox audit verify` and start a new file",
                    path.display()
                ),
            )),
            Err(e) => Err(Error::io(
                format!("reading audit file {}", path.display()),
                e,
            )),
        }
    }

    /// The anchor file written beside the log.
    pub fn head_path(&self) -> &Path {
        &self.head_path
    }

    fn ensure_same_file(&mut self) -> io::Result<()> {
        let current = std::fs::metadata(&self.path).map(|m| (m.dev(), m.ino()));
        if current.ok() != Some(self.identity) {
            if self.rotation.is_on() {
                // Most likely rotated by another writer of this log.
                tracing::debug!(
                    target: "sealbox::audit",
                    path = %self.path.display(),
                    "audit file was rotated or replaced; reopening it"
                );
            } else {
                tracing::warn!(
                    target: "sealbox::audit",
                    path = %self.path.display(),
                    "audit file was removed or replaced; reopening it"
                );
            }
            let file = open_append(&self.path)?;
            let meta = file.metadata()?;
            self.identity = (meta.dev(), meta.ino());
            self.file = file;
            self.known_len = None;
        }
        Ok(())
    }

    /// Takes the file's exclusive lock, waiting at most [`LOCK_WAIT`] for another writer's
    /// batch. The lock is taken on the file now at the path (a rotation may replace it while
    /// this waits).
    fn lock(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + LOCK_WAIT;
        let mut pause = Duration::from_micros(50);
        loop {
            self.ensure_same_file()?;
            match fs4::FileExt::try_lock(&self.file) {
                Ok(()) => {
                    let now = std::fs::metadata(&self.path).map(|m| (m.dev(), m.ino()));
                    if now.ok() == Some(self.identity) {
                        self.locked = true;
                        return Ok(());
                    }
                    let _ = fs4::FileExt::unlock(&self.file);
                    continue;
                }
                Err(fs4::TryLockError::WouldBlock) => {}
                Err(fs4::TryLockError::Error(e)) => return Err(e),
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "another writer has held the lock of audit file {} for over {} s",
                        self.path.display(),
                        LOCK_WAIT.as_secs()
                    ),
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(2));
        }
    }

    /// Where the chain stands in the locked file of length `len`, and whether the file's last
    /// line lacks its newline.
    fn read_tail(&self, key: &AuditKey, len: u64) -> io::Result<(SharedTail, bool)> {
        let (last, fragment) = tail_of(&self.file, key, len)?;
        // A file without a complete line that has rotated files beside it continues the
        // newest one's chain.
        let mut continues = None;
        let head = match last {
            Some(head) => head,
            None => match rotate::rotated_files(&self.path)?.last() {
                Some(previous) => {
                    let head = last_head_of(previous, key)?;
                    continues = Some(Continues {
                        file: previous
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        seq: head.next_seq.saturating_sub(1),
                        hash: head.prev_hash.clone(),
                    });
                    head
                }
                None => self.known_head.clone().unwrap_or_default(),
            },
        };
        let cut_off = fragment.as_ref().map(|f| f.len() as u64);
        // Cut just before its newline, the last line is whole: nothing was lost.
        if let Some(fragment) = &fragment
            && let Some(after) = line_after(key, fragment, &head)
        {
            let tail = SharedTail {
                head: after,
                cut_off: None,
                continues: None,
            };
            return Ok((tail, true));
        }
        let tail = SharedTail {
            head: self.after_anchor(key, head, len == 0 || cut_off.is_some()),
            cut_off,
            continues,
        };
        Ok((tail, cut_off.is_some()))
    }

    /// The time of the open file's first line, read once per file (time rotation only).
    fn started(&mut self) -> Option<SystemTime> {
        self.rotation.every?;
        if let Some((identity, t)) = self.started
            && identity == self.identity
        {
            return Some(t);
        }
        let t = rotate::first_line(&self.path).ok().flatten()?.2?;
        self.started = Some((self.identity, t));
        Some(t)
    }

    /// Renames the locked file (whose chain stands at `head`) to its rotated name, deletes
    /// what retention no longer keeps, and opens and locks a new file at the path.
    fn rotate(&mut self, key: &AuditKey, head: &ChainHead) -> io::Result<()> {
        let Some(last_seq) = head.next_seq.checked_sub(1) else {
            return Ok(());
        };
        let to = rotate::rotated_path(&self.path, last_seq);
        if to.exists() {
            // Not reached by writers of one chain (seqs only grow); never overwrite a file.
            tracing::warn!(
                target: "sealbox::audit",
                path = %to.display(),
                "a rotated audit file with this name exists already; not rotating"
            );
            return Ok(());
        }
        if let Err(e) = std::fs::rename(&self.path, &to) {
            // The batch still goes into the current file; rotation is tried again next batch.
            tracing::warn!(
                target: "sealbox::audit",
                path = %self.path.display(),
                error = %e,
                "could not rotate the audit file; writing on in it"
            );
            return Ok(());
        }
        let sync = self.fsync == FsyncPolicy::Batch;
        if sync && let Err(e) = rotate::sync_dir(&self.path) {
            tracing::warn!(target: "sealbox::audit", error = %e, "could not sync the audit directory after a rotation");
        }
        let retained = rotate::retain(&self.path, &self.rotation, key, sync, &|p| {
            last_head_of(p, key)
        });
        if let Err(e) = retained {
            tracing::warn!(
                target: "sealbox::audit",
                path = %self.path.display(),
                error = %e,
                "could not delete old rotated audit files; retrying at the next rotation"
            );
        }
        // The new file, opened here so that this writer usually writes its first line; a
        // sibling that locks it first writes it instead (the same line, from the same tail).
        self.unlock_chain();
        let file = open_append(&self.path)?;
        let meta = file.metadata()?;
        self.identity = (meta.dev(), meta.ino());
        self.file = file;
        self.known_len = None;
        self.lock()
    }

    /// Where the chain stands in the locked file, from what this sink knows while the file's
    /// length is unchanged.
    fn tail(&mut self, key: &AuditKey) -> io::Result<SharedTail> {
        let len = self.file.metadata()?.len();
        if self.known_len == Some(len)
            && let Some(head) = &self.known_head
        {
            return Ok(SharedTail {
                head: head.clone(),
                cut_off: None,
                continues: None,
            });
        }
        let (tail, newline_first) = self.read_tail(key, len)?;
        self.newline_first = newline_first;
        if !newline_first && tail.continues.is_none() {
            self.known_len = Some(len);
            self.known_head = Some(tail.head.clone());
        }
        Ok(tail)
    }

    /// `head`, or the chain after the `.head` anchor's line when `suspect` (the file is empty
    /// or ends in a cut-off fragment) and the anchor vouches for more lines than the file
    /// holds: the next batch then continues after the lost lines, and `verify_file` reports
    /// them instead of the chain passing over them.
    fn after_anchor(&self, key: &AuditKey, head: ChainHead, suspect: bool) -> ChainHead {
        if !suspect {
            return head;
        }
        match read_anchor(&self.head_path, key) {
            Some((seq, hash)) if seq >= head.next_seq => ChainHead {
                next_seq: seq + 1,
                prev_hash: hash,
            },
            _ => head,
        }
    }

    fn write_head(&self, seq: u64, hash: &str) -> io::Result<()> {
        let Some(key) = &self.head_key else {
            return Ok(());
        };
        let mac = chain::head_mac(key, seq, hash);
        // One temp path for every writer of this log: they write it only under the lock.
        let mut tmp = self.head_path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            writeln!(f, "{{\"seq\":{seq},\"hash\":\"{hash}\",\"mac\":\"{mac}\"}}")?;
            if self.fsync == FsyncPolicy::Batch {
                f.sync_data()?;
            }
        }
        std::fs::rename(&tmp, &self.head_path)
    }

    fn write_locked(&mut self, records: &[AuditRecord<'_>]) -> io::Result<()> {
        let Some(last) = records.last() else {
            return Ok(());
        };
        let len = match self.known_len {
            Some(len) => len,
            None => self.file.metadata()?.len(),
        };
        self.undo = Some(Undo {
            len,
            head: self.locked_head.clone().or_else(|| self.known_head.clone()),
            unanchored: self.unanchored.clone(),
            anchored: false,
        });
        self.buf.clear();
        if std::mem::take(&mut self.newline_first) {
            self.buf.push(b'\n');
        }
        for r in records {
            self.buf.extend_from_slice(r.line.as_bytes());
            self.buf.push(b'\n');
        }
        self.known_len = None;
        let sync = match self.fsync {
            FsyncPolicy::Batch => true,
            FsyncPolicy::Interval(every) => self.last_sync.elapsed() >= every,
            FsyncPolicy::Never => false,
        };
        let written = self.file.write_all(&self.buf).and_then(|()| {
            if sync {
                self.file.sync_data()?;
                self.last_sync = Instant::now();
            }
            Ok(())
        });
        if let Err(e) = written {
            // A full disk takes part of a batch: its whole lines would verify, and the
            // retried batch would hold them again. The file is cut back to before the batch
            // (under the lock, nothing was appended after it); if even that fails, the next
            // batch finds the fragment and marks it cut off.
            if let Err(undo) = self.revoke_batch() {
                tracing::warn!(
                    target: "sealbox::audit",
                    path = %self.path.display(),
                    error = %undo,
                    "could not cut a failed audit batch back out of the file"
                );
            }
            return Err(e);
        }
        self.known_len = Some(self.file.metadata()?.len());
        self.known_head = Some(ChainHead {
            next_seq: last.seq + 1,
            prev_hash: last.hash.to_owned(),
        });
        // The anchor is rewritten (temp file + rename) with every synced batch, and otherwise
        // at most every HEAD_EVERY and when the writer catches up: a rename per batch costs
        // more than the batch on filesystems that discard freed blocks synchronously. A stale
        // anchor is still valid, it just vouches for fewer lines.
        if sync || self.last_head.elapsed() >= HEAD_EVERY {
            // The lines are in the file now: a failed anchor (a full disk) must not fail the
            // batch, or the writer would sign and append the same events again. The anchor is
            // retried at the next flush.
            if let Some(undo) = &mut self.undo {
                undo.anchored = true;
            }
            match self.write_head(last.seq, last.hash) {
                Ok(()) => {
                    self.unanchored = None;
                    self.last_head = Instant::now();
                }
                Err(e) => {
                    tracing::warn!(
                        target: "sealbox::audit",
                        path = %self.head_path.display(),
                        error = %e,
                        "could not move the audit anchor; retrying at the next flush"
                    );
                    self.unanchored = Some((last.seq, last.hash.to_owned()));
                }
            }
        } else {
            self.unanchored = Some((last.seq, last.hash.to_owned()));
        }
        Ok(())
    }
}

/// The chain head after the last complete line of `file` (of length `len`), `None` when it
/// has none, and the bytes of a fragment after it (a line cut off mid-write, or a whole line
/// that lost its newline). The last line is searched for in the file's last [`TAIL_FIRST`]
/// bytes, then in four times more each time, up to [`TAIL_AT_MOST`]: not found there, the
/// file does not end in a line.
fn tail_of(
    file: &File,
    key: &AuditKey,
    len: u64,
) -> io::Result<(Option<ChainHead>, Option<Vec<u8>>)> {
    use std::os::unix::fs::FileExt as _;
    let mut tail = Vec::new();
    let mut window = 0;
    loop {
        window = (window * 4).clamp(TAIL_FIRST, TAIL_AT_MOST).min(len);
        tail.resize(window as usize, 0);
        file.read_exact_at(&mut tail, len - window)?;
        let whole_file = window == len;
        let wider = || (window < TAIL_AT_MOST).then_some(()).ok_or_else(unverified);
        let complete = match tail.iter().rposition(|&b| b == b'\n') {
            Some(i) => i + 1,
            None if whole_file => 0,
            None => {
                wider()?;
                continue;
            }
        };
        let body = &tail[..complete.saturating_sub(1)];
        let last = match body.iter().rposition(|&b| b == b'\n') {
            Some(i) => Some(&body[i + 1..]),
            None if complete == 0 => None,
            None if whole_file => Some(body),
            None => {
                wider()?;
                continue;
            }
        };
        let head = match last {
            Some(line) => Some(line_head(key, line).ok_or_else(unverified)?),
            None => None,
        };
        let fragment = (complete < tail.len()).then(|| tail[complete..].to_vec());
        return Ok((head, fragment));
    }
}

/// The chain head after the last line of the (rotated, complete) file at `path`.
fn last_head_of(path: &Path, key: &AuditKey) -> io::Result<ChainHead> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    tail_of(&file, key, len)?.0.ok_or_else(unverified)
}

fn unverified() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "the last line of the audit file does not verify with the audit key",
    )
}

/// The chain head after `line`, if it is a line signed with `key`.
fn line_head(key: &AuditKey, line: &[u8]) -> Option<ChainHead> {
    let line = std::str::from_utf8(line).ok()?;
    let line = line.strip_suffix('\r').unwrap_or(line);
    let (body, hash) = chain::split_line(line)?;
    if !key.verify_hex(body.as_bytes(), hash) {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let seq = v.get("seq")?.as_u64()?;
    Some(ChainHead {
        next_seq: seq + 1,
        prev_hash: hash.to_owned(),
    })
}

/// The chain head after `line` when it is a line signed with `key` that continues the chain
/// from `head` (its seq and `prev_hash` are the ones `head` expects).
fn line_after(key: &AuditKey, line: &[u8], head: &ChainHead) -> Option<ChainHead> {
    let after = line_head(key, line)?;
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    (after.next_seq == head.next_seq + 1 && v.get("prev_hash")?.as_str()? == head.prev_hash)
        .then_some(after)
}

/// The `.head` anchor's seq and hash, when it is there and verifies under `key`.
pub(crate) fn read_anchor(head_path: &Path, key: &AuditKey) -> Option<(u64, String)> {
    let text = std::fs::read(head_path).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&text).ok()?;
    let seq = v.get("seq")?.as_u64()?;
    let hash = v.get("hash")?.as_str()?;
    let mac = v.get("mac")?.as_str()?;
    key.verify_hex(format!("sealbox-audit-head:{seq}:{hash}").as_bytes(), mac)
        .then(|| (seq, hash.to_owned()))
}

fn open_append(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .read(true)
        .mode(0o600)
        .open(path)
}

impl AuditSink for FileSink {
    fn name(&self) -> &str {
        "file"
    }

    fn write_batch(&mut self, records: &[AuditRecord<'_>]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        if self.locked {
            return self.write_locked(records);
        }
        // Called without `lock_chain` (a caller driving the sink itself): the lines still go
        // in whole, under the lock.
        self.lock()?;
        let written = self.write_locked(records);
        self.unlock_chain();
        written
    }

    fn flush(&mut self) -> io::Result<()> {
        let Some((seq, hash)) = self.unanchored.take() else {
            return Ok(());
        };
        let anchored = self.lock().and_then(|()| {
            // When another writer appended since, the anchor is theirs to move on.
            if self.file.metadata()?.len() == self.known_len.unwrap_or(u64::MAX) {
                self.write_head(seq, &hash)?;
            }
            Ok(())
        });
        self.unlock_chain();
        match anchored {
            Ok(()) => {
                self.last_head = Instant::now();
                Ok(())
            }
            Err(e) => {
                self.unanchored = Some((seq, hash));
                Err(e)
            }
        }
    }

    fn resume_from(&self) -> Option<ChainHead> {
        self.resume.clone()
    }

    fn lock_chain(&mut self) -> io::Result<Option<SharedTail>> {
        self.lock()?;
        let Some(key) = self.head_key.clone() else {
            return Ok(None);
        };
        let mut tail = self.tail(&key)?;
        // Whole lines only: a file ending in a fragment is rotated after the next batch.
        if self.rotation.is_on() && tail.cut_off.is_none() && !self.newline_first {
            let len = self.file.metadata()?.len();
            let started = self.started();
            if self.rotation.due(len, started, SystemTime::now()) {
                self.rotate(&key, &tail.head)?;
                tail = self.tail(&key)?;
            }
        }
        self.locked_head = Some(tail.head.clone());
        Ok(Some(tail))
    }

    fn durable(&self) -> bool {
        true
    }

    fn revoke_batch(&mut self) -> io::Result<()> {
        let Some(undo) = self.undo.take() else {
            return Ok(());
        };
        if !self.locked {
            return Err(io::Error::other(
                "an audit batch can only be taken back under the file's lock",
            ));
        }
        // Under the lock no other writer appended after the batch: cutting the file back
        // removes exactly its lines. The tail is read again before the next batch.
        self.known_len = None;
        self.file.set_len(undo.len)?;
        if self.fsync != FsyncPolicy::Never {
            self.file.sync_data()?;
        }
        self.known_head = undo.head.clone();
        self.unanchored = undo.unanchored;
        if undo.anchored {
            // The anchor named a line that is gone now: it names the line before the batch.
            match undo.head.filter(|h| h.next_seq > 0) {
                Some(h) => self.write_head(h.next_seq - 1, &h.prev_hash)?,
                None => match std::fs::remove_file(&self.head_path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                },
            }
        }
        Ok(())
    }

    fn unlock_chain(&mut self) {
        self.undo = None;
        self.locked_head = None;
        if std::mem::take(&mut self.locked) {
            let _ = fs4::FileExt::unlock(&self.file);
        }
    }
}

/// Writes every line as a `tracing` event at INFO on target `sealbox::audit`.
#[derive(Debug, Default)]
pub struct TracingSink;

impl AuditSink for TracingSink {
    fn name(&self) -> &str {
        "tracing"
    }

    fn write_batch(&mut self, records: &[AuditRecord<'_>]) -> io::Result<()> {
        for r in records {
            tracing::info!(target: "sealbox::audit", "{}", r.line);
        }
        Ok(())
    }
}

type RecordFn = Box<dyn FnMut(&AuditRecord<'_>) -> io::Result<()> + Send>;

/// Calls a function for every record (an error return fails the batch for this sink).
pub struct CallbackSink {
    f: RecordFn,
}

impl CallbackSink {
    /// Wraps `f`.
    pub fn new(f: impl FnMut(&AuditRecord<'_>) -> io::Result<()> + Send + 'static) -> Self {
        CallbackSink { f: Box::new(f) }
    }
}

impl std::fmt::Debug for CallbackSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallbackSink")
    }
}

impl AuditSink for CallbackSink {
    fn name(&self) -> &str {
        "callback"
    }

    fn write_batch(&mut self, records: &[AuditRecord<'_>]) -> io::Result<()> {
        records.iter().try_for_each(|r| (self.f)(r))
    }
}
