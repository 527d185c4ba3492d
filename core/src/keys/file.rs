//! [`LocalKeyFile`]: master key versions in a local file (0600), created if absent.
//!
//! File format (binary, all integers big-endian):
//!
//! ```text
//! "SBXK"  magic
//! u8      format version (1)
//! u32     current version
//! u16     number of versions n (1..=1024)
//! n x     { u32 version, 32 bytes key }   (versions strictly increasing)
//! 32      SHA-256 of everything above
//! ```
//!
//! The file is read straight into locked memory. It is opened with `O_NOFOLLOW` and its type,
//! mode and owner are checked on the opened descriptor, so nothing can be swapped in between
//! the check and the read. Refusals, each with a typed error: a file readable or writable by
//! group or others ([`ErrorKind::Config`], with the `chmod` to run), a file owned by another
//! user (`Config`, with the `chown` to run), a symlink or non-regular file (`Config`), another
//! format (`Config`), a newer format (`UnsupportedVersion`), a short file (`Truncated`), a
//! wrong size or checksum (`Integrity`).
//!
//! Rotation appends a version and replaces the file atomically (write to a temporary 0600
//! file created with `O_EXCL | O_NOFOLLOW`, so a link planted at its name is never written
//! through; fsync; rename), holding an exclusive lock on `<key file>.lock` and re-reading the
//! file under it, so concurrent rotations in several processes never lose a version. A
//! process that meets a master version it has not loaded (another process rotated) re-reads
//! the file before answering `NotFound`.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ring::digest;
use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use super::data_key::{DataKey, KEY_LEN};
use super::ids::{KeyId, KeyVersion};
use super::provider::{KeyCheck, KeyProvider, MasterKeys, WrappedKey};
use crate::error::{Error, ErrorKind, Result};
use crate::secret::Secret;

const MAGIC: [u8; 4] = *b"SBXK";
const FORMAT: u8 = 1;
const HEAD: usize = 4 + 1 + 4 + 2;
const ENTRY: usize = 4 + KEY_LEN;
const SUM: usize = 32;
const MAX_VERSIONS: usize = 1024;

/// Master key versions (32 random bytes each) in a 0600 file of the format above.
#[derive(Debug)]
pub struct LocalKeyFile {
    path: PathBuf,
    keys: MasterKeys,
    rotation: Mutex<()>,
}

impl LocalKeyFile {
    /// Opens the key file at `path`, creating it (0600, one random version) if it does not
    /// exist. `id` names this master key in wrapped records (e.g. `"local"`).
    pub fn open_or_create(id: KeyId, path: impl AsRef<Path>) -> Result<LocalKeyFile> {
        let path = path.as_ref();
        match fs::symlink_metadata(path) {
            Ok(_) => Self::open(id, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(id, path),
            Err(e) => Err(Error::io(format!("reading key file {}", path.display()), e)),
        }
    }

    /// Opens an existing key file.
    pub fn open(id: KeyId, path: impl AsRef<Path>) -> Result<LocalKeyFile> {
        let path = path.as_ref().to_path_buf();
        let raw = read_checked(&path)?;
        let (current, versions) = parse(&id, &path, raw.expose_secret())?;
        Ok(LocalKeyFile {
            keys: MasterKeys::new(id, current, versions)?,
            path,
            rotation: Mutex::new(()),
        })
    }

    fn create(id: KeyId, path: &Path) -> Result<LocalKeyFile> {
        let first = DataKey::generate(id.clone(), KeyVersion::FIRST)?;
        let versions = BTreeMap::from([(KeyVersion::FIRST, Arc::new(first))]);
        let bytes = encode(&versions, None, KeyVersion::FIRST)?;
        let keys = MasterKeys::new(id.clone(), KeyVersion::FIRST, versions)?;
        // Link the finished temporary file into place: unlike rename, `hard_link` fails if
        // another process created the key file meanwhile, so no key is ever silently replaced.
        let tmp = write_temp(path, &bytes)?;
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                sync_dir(path)?;
                Ok(LocalKeyFile {
                    path: path.to_path_buf(),
                    keys,
                    rotation: Mutex::new(()),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::open(id, path),
            Err(e) => Err(Error::io(
                format!("creating key file {}", path.display()),
                e,
            )),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Re-reads the file and adopts versions another process added.
    fn reload(&self) -> Result<()> {
        let raw = read_checked(&self.path)?;
        let (current, versions) = parse(self.keys.id(), &self.path, raw.expose_secret())?;
        self.keys.merge(current, versions)
    }

    fn rotate_now(&self) -> Result<KeyVersion> {
        let _guard = self.rotation.lock().unwrap_or_else(|e| e.into_inner());
        // Other processes rotate under the same lock file, and the file is re-read under it,
        // so no process ever overwrites a version another one added.
        let _lock = lock_file(&self.path)?;
        let raw = read_checked(&self.path)?;
        let (current, versions) = parse(self.keys.id(), &self.path, raw.expose_secret())?;
        drop(raw);
        let next = current.next()?;
        let key = DataKey::generate(self.keys.id().clone(), next)?;
        // Write the file first: a version that is not on disk must never wrap anything.
        let bytes = encode(&versions, Some(&key), current)?;
        let tmp = write_temp(&self.path, &bytes)?;
        drop(bytes);
        fs::rename(&tmp, &self.path).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            Error::io(format!("replacing key file {}", self.path.display()), e)
        })?;
        sync_dir(&self.path)?;
        self.keys.merge(current, versions)?;
        self.keys.install(key)?;
        Ok(next)
    }
}

#[async_trait::async_trait]
impl KeyProvider for LocalKeyFile {
    fn id(&self) -> &KeyId {
        self.keys.id()
    }

    async fn current_version(&self) -> Result<KeyVersion> {
        self.keys.current_version()
    }

    async fn wrap(&self, context: &[u8], key: &Secret) -> Result<WrappedKey> {
        self.keys.wrap(context, key)
    }

    async fn unwrap(&self, context: &[u8], wrapped: &WrappedKey) -> Result<Secret> {
        match self.keys.unwrap(context, wrapped) {
            // Another process may have rotated: look at the file again before giving up.
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.reload()?;
                self.keys.unwrap(context, wrapped)
            }
            other => other,
        }
    }

    async fn rotate(&self) -> Result<KeyVersion> {
        self.rotate_now()
    }

    async fn reopen(&self) -> Result<Arc<dyn KeyProvider>> {
        Ok(Arc::new(LocalKeyFile::open(
            self.keys.id().clone(),
            &self.path,
        )?))
    }

    async fn key_check(&self, version: KeyVersion) -> Result<Option<KeyCheck>> {
        if let Err(e) = self.keys.key_check(version) {
            if e.kind() != ErrorKind::NotFound {
                return Err(e);
            }
            self.reload()?;
        }
        self.keys.key_check(version).map(Some)
    }
}

/// Holds an exclusive `flock` on `<key file>.lock` until dropped.
fn lock_file(path: &Path) -> Result<File> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    let lock_path = path.with_file_name(name);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        // A symlink planted at the lock's name would make us create a file where it points.
        .custom_flags(libc::O_NOFOLLOW)
        .open(&lock_path)
        .map_err(|e| Error::io(format!("opening lock file {}", lock_path.display()), e))?;
    fs4::FileExt::lock(&file)
        .map_err(|e| Error::io(format!("locking {}", lock_path.display()), e))?;
    Ok(file)
}

fn read_checked(path: &Path) -> Result<Secret> {
    // O_NOFOLLOW refuses a symlink at the last component; the checks below run on the opened
    // descriptor, so they describe the very file that is read.
    let mut file = OpenOptions::new()
        .read(true)
        // O_NONBLOCK: a FIFO planted at the path must not hang the open; no effect on files.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => not_regular(path),
            _ => Error::io(format!("reading key file {}", path.display()), e),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| Error::io(format!("reading key file {}", path.display()), e))?;
    if !meta.file_type().is_file() {
        return Err(not_regular(path));
    }
    check_owner(path, "key file", meta.uid())?;
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::config(format!(
            "key file {} is accessible by group or others (mode {mode:04o}); run \
             `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    let max = HEAD + MAX_VERSIONS * ENTRY + SUM;
    Secret::from_reader(&mut file, max).map_err(|e| match e.kind() {
        ErrorKind::InvalidInput => Error::new(
            ErrorKind::Integrity,
            format!(
                "key file {} is larger than any valid key file",
                path.display()
            ),
        ),
        _ => e,
    })
}

fn not_regular(path: &Path) -> Error {
    Error::config(format!(
        "key file {} is not a regular file (symlinks are refused); point sealbox at the file \
         itself",
        path.display()
    ))
}

/// Refuses a file owned by another user than the one this process runs as: whoever owns it
/// can change its mode and contents at will. `what` names the file in the message.
pub(crate) fn check_owner(path: &Path, what: &str, owner: u32) -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if owner != me {
        return Err(Error::config(format!(
            "{what} {} is owned by uid {owner}, not by uid {me} that sealbox runs as; run \
             `chown {me} {}` (as root), or run sealbox as uid {owner}",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

fn parse(
    id: &KeyId,
    path: &Path,
    raw: &[u8],
) -> Result<(KeyVersion, BTreeMap<KeyVersion, Arc<DataKey>>)> {
    let shown = path.display();
    if raw.len() < HEAD {
        if raw.len() >= 4 && raw[..4] != MAGIC {
            return Err(not_a_key_file(path));
        }
        return Err(Error::new(
            ErrorKind::Truncated,
            format!("key file {shown} is truncated ({} bytes)", raw.len()),
        ));
    }
    if raw[..4] != MAGIC {
        return Err(not_a_key_file(path));
    }
    if raw[4] != FORMAT {
        return Err(Error::new(
            ErrorKind::UnsupportedVersion,
            format!(
                "key file {shown} has format {}; this build reads {FORMAT}",
                raw[4]
            ),
        ));
    }
    let current = be32(&raw[5..9]);
    let count = usize::from(u16::from_be_bytes([raw[9], raw[10]]));
    let expected = HEAD + count * ENTRY + SUM;
    if raw.len() < expected {
        return Err(Error::new(
            ErrorKind::Truncated,
            format!(
                "key file {shown} is truncated ({} of {expected} bytes)",
                raw.len()
            ),
        ));
    }
    if raw.len() > expected || count == 0 || count > MAX_VERSIONS {
        return Err(Error::new(
            ErrorKind::Integrity,
            format!(
                "key file {shown} has the wrong size for {count} key versions ({} bytes)",
                raw.len()
            ),
        ));
    }
    let body = &raw[..expected - SUM];
    let sum = digest::digest(&digest::SHA256, body);
    if sum.as_ref() != &raw[expected - SUM..] {
        return Err(Error::new(
            ErrorKind::Integrity,
            format!("key file {shown} failed its checksum: it is corrupted"),
        ));
    }
    let mut versions = BTreeMap::new();
    let mut previous = 0u32;
    for entry in body[HEAD..].chunks_exact(ENTRY) {
        let v = be32(&entry[..4]);
        if v <= previous {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!("key file {shown} lists versions out of order"),
            ));
        }
        previous = v;
        let version = KeyVersion::new(v)?;
        let material = Secret::init_with(KEY_LEN, |dst| {
            dst.copy_from_slice(&entry[4..]);
            Ok(())
        })?;
        versions.insert(
            version,
            Arc::new(DataKey::from_secret(id.clone(), version, material)?),
        );
    }
    let current = KeyVersion::new(current).map_err(|_| {
        Error::new(
            ErrorKind::Integrity,
            format!("key file {shown} has current version 0"),
        )
    })?;
    Ok((current, versions))
}

fn not_a_key_file(path: &Path) -> Error {
    Error::config(format!(
        "{} is not a sealbox master key file (those start with \"SBXK\"; raw key bytes are not \
         one). Point key_file / --key-file at the key file made with the vault, or make a new \
         vault and key with `sealbox init --vault PATH --key-file PATH` (a `provider: local` \
         config also creates its key_file when the file does not exist)",
        path.display()
    ))
}

fn be32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

fn encode(
    versions: &BTreeMap<KeyVersion, Arc<DataKey>>,
    extra: Option<&DataKey>,
    current: KeyVersion,
) -> Result<Zeroizing<Vec<u8>>> {
    let count = versions.len() + usize::from(extra.is_some());
    let count16 = u16::try_from(count)
        .ok()
        .filter(|c| usize::from(*c) <= MAX_VERSIONS)
        .ok_or_else(|| {
            Error::invalid_input(format!("a key file holds at most {MAX_VERSIONS} versions"))
        })?;
    let current = extra.map_or(current, |k| k.version());
    let mut out = Zeroizing::new(Vec::with_capacity(HEAD + count * ENTRY + SUM));
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT);
    out.extend_from_slice(&current.to_be_bytes());
    out.extend_from_slice(&count16.to_be_bytes());
    for key in versions.values().map(|k| &**k).chain(extra) {
        out.extend_from_slice(&key.version().to_be_bytes());
        out.extend_from_slice(key.material().expose_secret());
    }
    let sum = digest::digest(&digest::SHA256, &out);
    out.extend_from_slice(sum.as_ref());
    Ok(out)
}

fn write_temp(path: &Path, bytes: &[u8]) -> Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        Error::config(format!("key file path {} has no file name", path.display()))
    })?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    // A leftover from a crashed run of a process with our pid, or a planted link: unlinking
    // removes the name, never what a link points to.
    let _ = fs::remove_file(&tmp);
    let write = || -> std::io::Result<()> {
        // O_EXCL (create_new) fails on any existing name, a symlink included, and O_NOFOLLOW
        // says so explicitly: the key bytes only ever go into a file this call created.
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(format!("writing key file {}", tmp.display()), e)
    })?;
    Ok(tmp)
}

fn sync_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}
