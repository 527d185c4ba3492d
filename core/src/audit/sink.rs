//! Where audit lines go: an append-only file, `tracing`, a callback.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::chain::{self, AuditKey, ChainHead};
use super::event::AuditEvent;
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
}

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

/// An append-only JSON-lines file, with a `.head` anchor beside it so truncation of the tail
/// is detected too. The file is checked before every batch: if it was removed or replaced, it is
/// reopened at the same path (the new file continues the chain mid-sequence, which
/// `verify_file` reports), and if that fails the batch fails.
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
}

impl FileSink {
    /// Opens (or creates, mode 0600) `path` for appending. With the chain `key`, an existing
    /// file's last line must verify (the chain continues after it) and the `.head` anchor is
    /// kept up to date.
    pub fn open(path: &Path, fsync: FsyncPolicy, key: Option<AuditKey>) -> Result<FileSink> {
        let file = open_append(path)
            .map_err(|e| Error::io(format!("opening audit file {}", path.display()), e))?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io(format!("reading audit file {}", path.display()), e))?;
        let head_key = key;
        let resume = match &head_key {
            Some(k) => last_line_head(path, k)?,
            None => None,
        };
        let mut head_path = path.as_os_str().to_owned();
        head_path.push(".head");
        Ok(FileSink {
            path: path.to_owned(),
            head_path: head_path.into(),
            file,
            identity: (meta.dev(), meta.ino()),
            fsync,
            last_sync: Instant::now(),
            last_head: Instant::now(),
            unanchored: None,
            resume,
            head_key,
            buf: Vec::with_capacity(1 << 16),
        })
    }

    /// The anchor file written beside the log.
    pub fn head_path(&self) -> &Path {
        &self.head_path
    }

    fn ensure_same_file(&mut self) -> io::Result<()> {
        let current = std::fs::metadata(&self.path).map(|m| (m.dev(), m.ino()));
        if current.ok() != Some(self.identity) {
            tracing::warn!(
                target: "sealbox::audit",
                path = %self.path.display(),
                "audit file was removed or replaced; reopening it"
            );
            let file = open_append(&self.path)?;
            let meta = file.metadata()?;
            self.identity = (meta.dev(), meta.ino());
            self.file = file;
        }
        Ok(())
    }

    fn write_head(&self, seq: u64, hash: &str) -> io::Result<()> {
        let Some(key) = &self.head_key else {
            return Ok(());
        };
        let mac = chain::head_mac(key, seq, hash);
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
}

fn open_append(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .read(true)
        .mode(0o600)
        .open(path)
}

/// Reads the last line of an existing log and returns where the chain continues.
fn last_line_head(path: &Path, key: &AuditKey) -> Result<Option<ChainHead>> {
    let err = |e| Error::io(format!("reading audit file {}", path.display()), e);
    let mut f = File::open(path).map_err(err)?;
    let len = f.metadata().map_err(err)?.len();
    if len == 0 {
        return Ok(None);
    }
    let window = len.min(1 << 16);
    f.seek(SeekFrom::Start(len - window)).map_err(err)?;
    let mut tail = Vec::with_capacity(window as usize);
    f.read_to_end(&mut tail).map_err(err)?;
    let text = String::from_utf8_lossy(&tail);
    let Some(last) = text.trim_end_matches('\n').rsplit('\n').next() else {
        return Ok(None);
    };
    let bad = || {
        Error::new(
            crate::ErrorKind::Integrity,
            format!(
                "the last line of audit file {} does not verify with the audit key; \
                 run `sealbox audit verify` and start a new file",
                path.display()
            ),
        )
    };
    let (body, hash) = chain::split_line(last).ok_or_else(bad)?;
    if !key.verify_hex(body.as_bytes(), hash) {
        return Err(bad());
    }
    let v: serde_json::Value = serde_json::from_str(last).map_err(|_| bad())?;
    let seq = v.get("seq").and_then(|s| s.as_u64()).ok_or_else(bad)?;
    Ok(Some(ChainHead {
        next_seq: seq + 1,
        prev_hash: hash.to_owned(),
    }))
}

impl AuditSink for FileSink {
    fn name(&self) -> &str {
        "file"
    }

    fn write_batch(&mut self, records: &[AuditRecord<'_>]) -> io::Result<()> {
        let Some(last) = records.last() else {
            return Ok(());
        };
        self.ensure_same_file()?;
        self.buf.clear();
        for r in records {
            self.buf.extend_from_slice(r.line.as_bytes());
            self.buf.push(b'\n');
        }
        self.file.write_all(&self.buf)?;
        let sync = match self.fsync {
            FsyncPolicy::Batch => true,
            FsyncPolicy::Interval(every) => self.last_sync.elapsed() >= every,
            FsyncPolicy::Never => false,
        };
        if sync {
            self.file.sync_data()?;
            self.last_sync = Instant::now();
        }
        // The anchor is rewritten (temp file + rename) with every synced batch, and otherwise
        // at most every HEAD_EVERY and when the writer catches up: a rename per batch costs
        // more than the batch on filesystems that discard freed blocks synchronously. A stale
        // anchor is still valid, it just vouches for fewer lines.
        if sync || self.last_head.elapsed() >= HEAD_EVERY {
            self.unanchored = None;
            self.write_head(last.seq, last.hash)?;
            self.last_head = Instant::now();
        } else {
            self.unanchored = Some((last.seq, last.hash.to_owned()));
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some((seq, hash)) = self.unanchored.take() {
            if let Err(e) = self.write_head(seq, &hash) {
                self.unanchored = Some((seq, hash));
                return Err(e);
            }
            self.last_head = Instant::now();
        }
        Ok(())
    }

    fn resume_from(&self) -> Option<ChainHead> {
        self.resume.clone()
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
