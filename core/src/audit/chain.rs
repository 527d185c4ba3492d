//! The keyed hash chain: every line carries `seq`, `prev_hash` and
//! `hash = HMAC-SHA256(key, line up to ,"hash")`, so an edit, a deletion or a reordering breaks
//! the chain for anyone holding the key.

use std::path::Path;

use ring::hmac;
use secrecy::ExposeSecret;

use crate::error::{Error, Result};
use crate::secret::Secret;

/// `prev_hash` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The marker between the signed body and the hash.
pub(crate) const HASH_MARKER: &str = ",\"hash\":\"";

/// The audit chain key. Held as a ring HMAC key (ring keeps its own copy of the key schedule,
/// outside locked memory: a documented limit, as with every ring key).
#[derive(Clone)]
pub struct AuditKey {
    key: hmac::Key,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey([REDACTED])")
    }
}

impl AuditKey {
    /// A key from secret bytes (at least 32 of them).
    pub fn new(secret: &Secret) -> Result<AuditKey> {
        if secret.len() < 32 {
            return Err(Error::invalid_input("an audit key needs at least 32 bytes"));
        }
        Ok(AuditKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret.expose_secret()),
        })
    }

    /// A fresh random key that lives only in this process.
    pub fn ephemeral() -> Result<AuditKey> {
        AuditKey::new(&Secret::random(32)?)
    }

    /// Reads the key from `path` (32+ raw bytes), or creates it there with mode 0600 when the
    /// file does not exist yet. An existing file is checked as [`AuditKey::from_file`] does.
    pub fn load_or_create(path: &Path) -> Result<AuditKey> {
        match AuditKey::from_file(path) {
            Err(e) if e.kind() == crate::ErrorKind::NotFound => {
                let key = Secret::random(32)?;
                if create_private(path, key.expose_secret())? {
                    AuditKey::new(&key)
                } else {
                    // Another process (a sibling worker on the same config) created it first.
                    AuditKey::from_file(path)
                }
            }
            other => other,
        }
    }

    /// Reads the key from the existing file `path` (32+ raw bytes). Whoever can read the chain
    /// key can sign lines that verify, and whoever owns the file can change it, so the file is
    /// refused (`Config`, naming the file and the fix) when it is a symlink or not a regular
    /// file, owned by another user than the one this process runs as, or accessible by group
    /// or others. The checks run on the descriptor opened with `O_NOFOLLOW`, so they describe
    /// the very file that is read. A missing file is `NotFound`.
    pub fn from_file(path: &Path) -> Result<AuditKey> {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        let shown = path.display();
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            // O_NONBLOCK: a FIFO planted at the path must not hang the open.
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| match (e.kind(), e.raw_os_error()) {
                (std::io::ErrorKind::NotFound, _) => Error::new(
                    crate::ErrorKind::NotFound,
                    format!("audit key file {shown} does not exist"),
                ),
                (_, Some(libc::ELOOP)) => not_regular(path),
                _ => Error::io(format!("opening audit key file {shown}"), e),
            })?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io(format!("reading audit key file {shown}"), e))?;
        if !meta.file_type().is_file() {
            return Err(not_regular(path));
        }
        crate::keys::check_owner(path, "audit key file", meta.uid())?;
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::config(format!(
                "audit key file {shown} is accessible by group or others (mode {mode:04o}): \
                 whoever reads it can sign audit lines; run `chmod 600 {shown}`, and start a \
                 new key and log if others may have read it"
            )));
        }
        let key = Secret::from_reader(&mut file, 1024)?;
        AuditKey::new(&key).map_err(|_| {
            Error::config(format!(
                "audit key file {shown} must hold at least 32 bytes"
            ))
        })
    }

    pub(crate) fn mac_hex(&self, data: &[u8]) -> String {
        let mut out = String::with_capacity(64);
        self.push_mac_hex(data, &mut out);
        out
    }

    /// Appends the hex MAC of `data` to `out` (the writer's per-line path: no allocation).
    pub(crate) fn push_mac_hex(&self, data: &[u8], out: &mut String) {
        let tag = hmac::sign(&self.key, data);
        let mut hex = [0u8; 64];
        if hex::encode_to_slice(tag.as_ref(), &mut hex).is_ok() {
            // Hex digits are ASCII.
            out.push_str(std::str::from_utf8(&hex).unwrap_or_default());
        }
    }

    pub(crate) fn verify_hex(&self, data: &[u8], expected_hex: &str) -> bool {
        match hex::decode(expected_hex) {
            Ok(tag) => hmac::verify(&self.key, data, &tag).is_ok(),
            Err(_) => false,
        }
    }
}

fn not_regular(path: &Path) -> Error {
    Error::config(format!(
        "audit key file {} is not a regular file (symlinks are refused); point the config's \
         audit.key_file at the file itself",
        path.display()
    ))
}

/// Creates `path` (mode 0600) holding `bytes`, or returns `false` when it already exists.
/// The key is written to a temporary file first and linked into place, so a process that
/// races this one sees either no key file or the whole key, never a short one.
fn create_private(path: &Path, bytes: &[u8]) -> Result<bool> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tmp.push(format!(".{}-{n}.tmp", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()));
    let linked = written.and_then(|_| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::io(
            format!("creating audit key file {}", path.display()),
            e,
        )),
    }
}

/// Where the chain stands: the next `seq` and the hash the next line must name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainHead {
    /// Sequence number of the next line.
    pub next_seq: u64,
    /// Hash of the last line ([`GENESIS`] before the first).
    pub prev_hash: String,
}

impl Default for ChainHead {
    fn default() -> Self {
        ChainHead {
            next_seq: 0,
            prev_hash: GENESIS.to_owned(),
        }
    }
}

/// Splits a line into its signed body and the hash, if it has the expected shape.
pub(crate) fn split_line(line: &str) -> Option<(&str, &str)> {
    let at = line.rfind(HASH_MARKER)?;
    let (body, rest) = line.split_at(at);
    let hash = rest.strip_prefix(HASH_MARKER)?.strip_suffix("\"}")?;
    Some((body, hash))
}

/// The MAC that anchors the head file.
pub(crate) fn head_mac(key: &AuditKey, seq: u64, hash: &str) -> String {
    key.mac_hex(format!("sealbox-audit-head:{seq}:{hash}").as_bytes())
}
