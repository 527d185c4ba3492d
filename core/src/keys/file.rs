//! [`LocalKeyFile`]: master key versions and namespace keys in a local file (0600), created
//! if absent.
//!
//! File format (binary, all integers big-endian):
//!
//! ```text
//! "SBXK"  magic
//! u8      format version (1: master versions only; 2: namespace keys follow them;
//!         3: store counters follow the namespace keys)
//! u32     current version
//! u16     number of versions n (1..=1024)
//! n x     { u32 version, 32 bytes key }   (versions strictly increasing)
//! format 2 only:
//! u16     number of namespace keys m (0..=16384)
//! m x     { u8 name length, name, 8 bytes tag, 32 bytes key }   (names strictly increasing)
//! format 3 only:
//! u16     number of store counters c (0..=16384)
//! c x     { u8 store id length, store id, u64 count }   (ids strictly increasing)
//! 32      SHA-256 of everything above
//! ```
//!
//! A file with no namespace key is written in format 1, and one with no store counter in
//! format 2 at most, so a key file that never served an erasable namespace or a vault's
//! rollback detection stays readable by older builds.
//!
//! Store counters are rollback detection: a local vault records its write counter here (at
//! most every few writes, on close and on verify), and on open a vault whose own counter is
//! below the recorded one is an older copy of itself put in its place.
//!
//! Namespace keys make erasure reach backups: a namespace's KEKs are wrapped under a key
//! derived from the master key and the namespace key (see `namespace_key.rs`), and erasing
//! the namespace removes its key from this file. A vault backup plus this file then cannot
//! read the erased namespace; a copy of this file taken before the erasure still can.
//!
//! The file is read straight into locked memory. It is opened with `O_NOFOLLOW` and its type,
//! mode and owner are checked on the opened descriptor, so nothing can be swapped in between
//! the check and the read. Refusals, each with a typed error: a file readable or writable by
//! group or others ([`ErrorKind::Config`], with the `chmod` to run), a file owned by another
//! user (`Config`, with the `chown` to run), a symlink or non-regular file (`Config`), another
//! format (`Config`), a newer format (`UnsupportedVersion`), a short file (`Truncated`), a
//! wrong size or checksum (`Integrity`).
//!
//! Every change (rotation, retirement, a namespace key added or destroyed) replaces the file
//! atomically (write to a temporary 0600 file created with `O_EXCL | O_NOFOLLOW`, so a link
//! planted at its name is never written through; fsync; rename; fsync the directory), holding
//! an exclusive lock on `<key file>.lock` and re-reading the file under it, so concurrent
//! changes in several processes never lose a version or a namespace key. A process that meets
//! a master version or namespace key it has not loaded re-reads the file before answering
//! `NotFound` or `KeyDestroyed`, and re-reads it whenever it changed before using a namespace
//! key, so a namespace erased by another process is not used here either.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use ring::digest;
use secrecy::ExposeSecret;

use super::data_key::{DataKey, KEY_LEN};
use super::envelope::Envelope;
use super::ids::{KeyId, KeyVersion};
use super::namespace_key::{self, NamespaceKey, TAG_LEN};
use super::provider::{KeyCheck, KeyProvider, MasterKeys, WrappedKey};
use crate::error::{Error, ErrorKind, Result};
use crate::memory::{self, MemoryPolicy};
use crate::secret::Secret;

const MAGIC: [u8; 4] = *b"SBXK";
const FORMAT_MASTER_ONLY: u8 = 1;
const FORMAT_NAMESPACES: u8 = 2;
const FORMAT_COUNTERS: u8 = 3;
const HEAD: usize = 4 + 1 + 4 + 2;
const ENTRY: usize = 4 + KEY_LEN;
const SUM: usize = 32;
const MAX_VERSIONS: usize = 1024;
/// The most namespace keys one key file holds.
pub const MAX_NAMESPACE_KEYS: usize = 16384;
/// The most store counters one key file holds.
const MAX_COUNTERS: usize = 16384;
const MAX_NS_ENTRY: usize = 1 + u8::MAX as usize + TAG_LEN + KEY_LEN;

/// Everything a key file holds.
struct Contents {
    current: KeyVersion,
    versions: BTreeMap<KeyVersion, Arc<DataKey>>,
    namespaces: BTreeMap<String, Arc<NamespaceKey>>,
    /// Rollback detection: each store's last recorded write counter, by store id.
    counters: BTreeMap<String, u64>,
}

/// Which file a process last read: a rename gives a new inode, so any change is seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime().saturating_mul(1_000_000_000) + meta.mtime_nsec(),
        }
    }
}

#[derive(Debug, Default)]
struct NamespaceKeys {
    by_name: BTreeMap<String, Arc<NamespaceKey>>,
    stamp: Stamp,
}

impl NamespaceKeys {
    fn by_tag(&self, tag: &[u8; TAG_LEN]) -> Option<Arc<NamespaceKey>> {
        self.by_name.values().find(|k| &k.tag == tag).cloned()
    }
}

/// Master key versions (32 random bytes each) and namespace keys in a 0600 file of the
/// format above.
#[derive(Debug)]
pub struct LocalKeyFile {
    path: PathBuf,
    keys: MasterKeys,
    namespaces: RwLock<NamespaceKeys>,
    rotation: Mutex<()>,
    /// Set once adding a namespace key failed because the file cannot be written (a
    /// read-only mount): the warning is given once per process.
    read_only_warned: AtomicBool,
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
        let (raw, stamp) = read_checked(&path)?;
        let parsed = parse(&id, &path, raw.expose_secret());
        // The checksum's hash state held key bytes in frames below this one.
        memory::wipe_stack();
        let contents = parsed?;
        Ok(LocalKeyFile {
            keys: MasterKeys::new(id, contents.current, contents.versions)?,
            namespaces: RwLock::new(NamespaceKeys {
                by_name: contents.namespaces,
                stamp,
            }),
            path,
            rotation: Mutex::new(()),
            read_only_warned: AtomicBool::new(false),
        })
    }

    fn create(id: KeyId, path: &Path) -> Result<LocalKeyFile> {
        let first = DataKey::generate(id.clone(), KeyVersion::FIRST)?;
        let contents = Contents {
            current: KeyVersion::FIRST,
            versions: BTreeMap::from([(KeyVersion::FIRST, Arc::new(first))]),
            namespaces: BTreeMap::new(),
            counters: BTreeMap::new(),
        };
        let bytes = encode(&contents);
        // The checksum's hash state held key bytes in frames below this one.
        memory::wipe_stack();
        let bytes = bytes?;
        // Link the finished temporary file into place: unlike rename, `hard_link` fails if
        // another process created the key file meanwhile, so no key is ever silently replaced.
        let tmp = write_temp(path, bytes.expose_secret())?;
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                sync_dir(path)?;
                let stamp = fs::symlink_metadata(path)
                    .map(|m| Stamp::of(&m))
                    .unwrap_or_default();
                Ok(LocalKeyFile {
                    keys: MasterKeys::new(id, contents.current, contents.versions)?,
                    namespaces: RwLock::new(NamespaceKeys {
                        by_name: contents.namespaces,
                        stamp,
                    }),
                    path: path.to_path_buf(),
                    rotation: Mutex::new(()),
                    read_only_warned: AtomicBool::new(false),
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

    /// How many namespace keys the file held when this process last read it.
    pub fn namespace_key_count(&self) -> usize {
        self.ns_read().by_name.len()
    }

    /// Removes every master version below `version` from the file, for good: a vault (or a
    /// backup of one) whose KEKs are still wrapped under a removed version can no longer be
    /// opened with this file. Call it through [`crate::keys::Keyring::retire_master`] (or
    /// `LocalVault::retire_master`), which first rewraps every KEK of its vault under the
    /// current version and refuses while any is not; a key file shared by several vaults must
    /// have every one of them rewrapped first. `version` may not exceed the current version.
    /// Returns the versions removed (none when there were none below `version`).
    pub fn retire_versions_below(&self, version: KeyVersion) -> Result<Vec<KeyVersion>> {
        self.edit(|c| {
            if version > c.current {
                return Err(Error::invalid_input(format!(
                    "cannot retire master versions below {version}: the current version of \
                     key file {} is {}",
                    self.path.display(),
                    c.current
                )));
            }
            let old: Vec<KeyVersion> = c.versions.range(..version).map(|(v, _)| *v).collect();
            for v in &old {
                c.versions.remove(v);
            }
            let changed = !old.is_empty();
            Ok((old, changed))
        })
    }

    fn ns_read(&self) -> std::sync::RwLockReadGuard<'_, NamespaceKeys> {
        // Whole-map replacements only: a poisoned lock still holds a consistent map.
        self.namespaces.read().unwrap_or_else(|e| e.into_inner())
    }

    fn adopt_namespaces(&self, by_name: BTreeMap<String, Arc<NamespaceKey>>, stamp: Stamp) {
        let mut ns = self.namespaces.write().unwrap_or_else(|e| e.into_inner());
        *ns = NamespaceKeys { by_name, stamp };
    }

    /// Re-reads the file and adopts versions another process added and the namespace keys
    /// the file holds now (one destroyed elsewhere is dropped here too).
    fn reload(&self) -> Result<()> {
        let (raw, stamp) = read_checked(&self.path)?;
        let parsed = parse(self.keys.id(), &self.path, raw.expose_secret());
        memory::wipe_stack();
        let contents = parsed?;
        self.keys.merge(contents.current, contents.versions)?;
        self.adopt_namespaces(contents.namespaces, stamp);
        Ok(())
    }

    /// Re-reads the file if it changed since this process read it.
    fn reload_if_changed(&self) -> Result<()> {
        let now = fs::symlink_metadata(&self.path)
            .map(|m| Stamp::of(&m))
            .map_err(|e| Error::io(format!("reading key file {}", self.path.display()), e))?;
        if now != self.ns_read().stamp {
            self.reload()?;
        }
        Ok(())
    }

    /// Changes the file: under the process mutex and the lock file, re-reads it, applies `f`
    /// (which says whether it changed anything), replaces the file atomically if so, and makes
    /// what is now on disk this process's view.
    fn edit<R>(&self, f: impl FnOnce(&mut Contents) -> Result<(R, bool)>) -> Result<R> {
        let _guard = self.rotation.lock().unwrap_or_else(|e| e.into_inner());
        // Other processes change the file under the same lock, and it is re-read under it, so
        // no process ever overwrites a version or namespace key another one added.
        let _lock = lock_file(&self.path)?;
        let (raw, mut stamp) = read_checked(&self.path)?;
        let parsed = parse(self.keys.id(), &self.path, raw.expose_secret());
        memory::wipe_stack();
        let mut contents = parsed?;
        drop(raw);
        let (out, changed) = f(&mut contents)?;
        if changed {
            // Write the file first: a key that is not on disk must never wrap anything, and a
            // key removed from memory only once it is gone from disk.
            let bytes = encode(&contents);
            memory::wipe_stack();
            let bytes = bytes?;
            let tmp = write_temp(&self.path, bytes.expose_secret())?;
            drop(bytes);
            fs::rename(&tmp, &self.path).map_err(|e| {
                let _ = fs::remove_file(&tmp);
                Error::io(format!("replacing key file {}", self.path.display()), e)
            })?;
            sync_dir(&self.path)?;
            stamp = fs::symlink_metadata(&self.path)
                .map(|m| Stamp::of(&m))
                .unwrap_or_default();
        }
        self.keys.replace(contents.current, contents.versions)?;
        self.adopt_namespaces(contents.namespaces, stamp);
        Ok(out)
    }

    fn rotate_now(&self) -> Result<KeyVersion> {
        self.edit(|c| {
            let next = c.current.next()?;
            let key = DataKey::generate(self.keys.id().clone(), next)?;
            c.versions.insert(next, Arc::new(key));
            c.current = next;
            Ok((next, true))
        })
    }

    /// The namespace key of `name`, adding one to the file if it has none.
    fn namespace_key(&self, name: &str) -> Result<Arc<NamespaceKey>> {
        if name.is_empty() || name.len() > usize::from(u8::MAX) {
            return Err(Error::invalid_input(format!(
                "a namespace key name must be 1 to 255 bytes, got {}",
                name.len()
            )));
        }
        // Another process may have erased the namespace since: never wrap under a key that is
        // no longer on disk.
        self.reload_if_changed()?;
        if let Some(k) = self.ns_read().by_name.get(name) {
            return Ok(k.clone());
        }
        self.edit(|c| {
            if let Some(k) = c.namespaces.get(name) {
                return Ok((k.clone(), false));
            }
            if c.namespaces.len() >= MAX_NAMESPACE_KEYS {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "key file {} holds {MAX_NAMESPACE_KEYS} namespace keys, its limit; \
                         erase unused namespaces or use another key file",
                        self.path.display()
                    ),
                ));
            }
            let key = Arc::new(NamespaceKey::generate(name)?);
            c.namespaces.insert(name.to_owned(), key.clone());
            Ok((key, true))
        })
    }

    fn unwrap_bound(
        &self,
        tag: &[u8; TAG_LEN],
        context: &[u8],
        wrapped: &WrappedKey,
    ) -> Result<Secret> {
        if &wrapped.provider != self.keys.id() {
            // Same refusal, same words, as a master-wrapped key.
            return self.keys.unwrap(context, wrapped);
        }
        self.reload_if_changed()?;
        let mut ns = self.ns_read().by_tag(tag);
        if ns.is_none() {
            self.reload()?;
            ns = self.ns_read().by_tag(tag);
        }
        let ns = ns.ok_or_else(|| namespace_key::destroyed(tag, self.keys.id()))?;
        let master = match self.keys.version(wrapped.master_version) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.reload()?;
                self.keys.version(wrapped.master_version)?
            }
            other => other?,
        };
        Envelope::open(&ns.derive(&master)?, context, &wrapped.ciphertext)
    }
}

/// Whether `e` is the file system refusing to write the key file or its lock (read-only mount,
/// no write permission on the directory).
fn cannot_write(e: &Error) -> bool {
    e.kind() == ErrorKind::Io
        && std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .and_then(std::io::Error::raw_os_error)
            .is_some_and(|c| c == libc::EROFS || c == libc::EACCES || c == libc::EPERM)
}

/// The namespace key tag `wrapped` is bound to, if it is a local namespace-bound wrap.
fn bound_tag(wrapped: &WrappedKey) -> Option<[u8; TAG_LEN]> {
    Envelope::parse(&wrapped.ciphertext)
        .ok()
        .and_then(|v| namespace_key::tag_of(v.key_id()))
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
        if let Some(tag) = bound_tag(wrapped) {
            return self.unwrap_bound(&tag, context, wrapped);
        }
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

    fn holds_namespace_keys(&self) -> bool {
        true
    }

    fn store_counter(&self, store_id: &str) -> Result<Option<u64>> {
        // The file is replaced whole (rename), so a read without the lock sees one version.
        let (raw, _) = read_checked(&self.path)?;
        let parsed = parse(self.keys.id(), &self.path, raw.expose_secret());
        memory::wipe_stack();
        Ok(parsed?.counters.get(store_id).copied())
    }

    fn record_store_counter(&self, store_id: &str, count: u64, reset: bool) -> Result<bool> {
        self.edit(|c| {
            let old = c.counters.get(store_id).copied();
            let new = if reset {
                count
            } else {
                old.map_or(count, |o| o.max(count))
            };
            if old == Some(new) {
                return Ok((true, false));
            }
            c.counters.insert(store_id.to_owned(), new);
            Ok((true, true))
        })
    }

    async fn wrap_for_namespace(
        &self,
        namespace: &str,
        context: &[u8],
        key: &Secret,
    ) -> Result<WrappedKey> {
        let ns = match self.namespace_key(namespace) {
            Ok(ns) => ns,
            // A key file on a read-only mount (a Kubernetes secret volume) still serves the
            // vault as before namespace keys; the erasure then says it does not reach backups.
            Err(e) if cannot_write(&e) => {
                if !self.read_only_warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        target: "sealbox::keys",
                        error = %e,
                        "key file {} cannot be written, so new namespaces get no namespace key: \
                         their keys are wrapped by the master key alone, and erasing them will \
                         not reach vault backups until the key file is writable and the vault is \
                         opened again",
                        self.path.display()
                    );
                }
                return self.keys.wrap(context, key);
            }
            Err(e) => return Err(e),
        };
        let master = self.keys.current_key()?;
        Ok(WrappedKey {
            provider: self.keys.id().clone(),
            master_version: master.version(),
            ciphertext: Envelope::seal(&ns.derive(&master)?, context, key.expose_secret())?,
        })
    }

    fn is_namespace_bound(&self, wrapped: &WrappedKey) -> bool {
        &wrapped.provider == self.keys.id() && bound_tag(wrapped).is_some()
    }

    async fn destroy_namespace_key(&self, namespace: &str) -> Result<bool> {
        self.edit(|c| {
            let removed = c.namespaces.remove(namespace).is_some();
            Ok((removed, removed))
        })
    }

    async fn retire_below(&self, version: KeyVersion) -> Result<Vec<KeyVersion>> {
        self.retire_versions_below(version)
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

fn read_checked(path: &Path) -> Result<(Secret, Stamp)> {
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
    let max = HEAD + MAX_VERSIONS * ENTRY + 2 + MAX_NAMESPACE_KEYS * MAX_NS_ENTRY + SUM;
    let stamp = Stamp::of(&meta);
    // The file is key material: read it into memory that is locked whatever the default.
    let raw = Secret::from_reader_with_policy(&mut file, max, MemoryPolicy::Strict).map_err(
        |e| match e.kind() {
            ErrorKind::InvalidInput => Error::new(
                ErrorKind::Integrity,
                format!(
                    "key file {} is larger than any valid key file",
                    path.display()
                ),
            ),
            _ => memory::key_lock_error(e),
        },
    )?;
    Ok((raw, stamp))
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

#[inline(never)]
fn parse(id: &KeyId, path: &Path, raw: &[u8]) -> Result<Contents> {
    let shown = path.display();
    let truncated = |len: usize| {
        Error::new(
            ErrorKind::Truncated,
            format!("key file {shown} is truncated ({len} bytes)"),
        )
    };
    if raw.len() < HEAD {
        if raw.len() >= 4 && raw[..4] != MAGIC {
            return Err(not_a_key_file(path));
        }
        return Err(truncated(raw.len()));
    }
    if raw[..4] != MAGIC {
        return Err(not_a_key_file(path));
    }
    let format = raw[4];
    if !(FORMAT_MASTER_ONLY..=FORMAT_COUNTERS).contains(&format) {
        return Err(Error::new(
            ErrorKind::UnsupportedVersion,
            format!(
                "key file {shown} has format {format}; this build reads formats \
                 {FORMAT_MASTER_ONLY} to {FORMAT_COUNTERS}"
            ),
        ));
    }
    let current = be32(&raw[5..9]);
    let count = usize::from(u16::from_be_bytes([raw[9], raw[10]]));
    let masters_end = HEAD + count * ENTRY;
    if count == 0 || count > MAX_VERSIONS {
        return Err(Error::new(
            ErrorKind::Integrity,
            format!("key file {shown} lists {count} key versions"),
        ));
    }
    // The checksum is checked over the whole body before anything inside it is believed.
    if raw.len() < masters_end + SUM {
        return Err(Error::new(
            ErrorKind::Truncated,
            format!(
                "key file {shown} is truncated ({} of at least {} bytes)",
                raw.len(),
                masters_end + SUM
            ),
        ));
    }
    let body = &raw[..raw.len() - SUM];
    let sum = digest::digest(&digest::SHA256, body);
    if sum.as_ref() != &raw[raw.len() - SUM..] {
        if format == FORMAT_MASTER_ONLY && raw.len() != masters_end + SUM {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!(
                    "key file {shown} has the wrong size for {count} key versions ({} bytes)",
                    raw.len()
                ),
            ));
        }
        return Err(Error::new(
            ErrorKind::Integrity,
            format!("key file {shown} failed its checksum: it is corrupted"),
        ));
    }
    let mut versions = BTreeMap::new();
    let mut previous = 0u32;
    for entry in body[HEAD..masters_end].chunks_exact(ENTRY) {
        let v = be32(&entry[..4]);
        if v <= previous {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!("key file {shown} lists versions out of order"),
            ));
        }
        previous = v;
        let version = KeyVersion::new(v)?;
        let material = Secret::key_with(KEY_LEN, |dst| {
            dst.copy_from_slice(&entry[4..]);
            Ok(())
        })?;
        versions.insert(
            version,
            Arc::new(DataKey::from_secret(id.clone(), version, material)?),
        );
    }
    let bad_size = || {
        Error::new(
            ErrorKind::Integrity,
            format!("key file {shown} has the wrong size for its contents"),
        )
    };
    let mut namespaces = BTreeMap::new();
    let mut counters = BTreeMap::new();
    let rest = &body[masters_end..];
    if format == FORMAT_MASTER_ONLY {
        if !rest.is_empty() {
            return Err(bad_size());
        }
    } else {
        let n = rest.get(..2).ok_or_else(bad_size)?;
        let n = usize::from(u16::from_be_bytes([n[0], n[1]]));
        if n > MAX_NAMESPACE_KEYS {
            return Err(bad_size());
        }
        let mut at = 2;
        for _ in 0..n {
            let len = usize::from(*rest.get(at).ok_or_else(bad_size)?);
            let entry = rest
                .get(at + 1..at + 1 + len + TAG_LEN + KEY_LEN)
                .ok_or_else(bad_size)?;
            at += 1 + len + TAG_LEN + KEY_LEN;
            let name = std::str::from_utf8(&entry[..len])
                .ok()
                .filter(|n| !n.is_empty())
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::Integrity,
                        format!("key file {shown} holds an invalid namespace name"),
                    )
                })?;
            if namespaces
                .keys()
                .next_back()
                .is_some_and(|last: &String| last.as_str() >= name)
            {
                return Err(Error::new(
                    ErrorKind::Integrity,
                    format!("key file {shown} lists namespace keys out of order"),
                ));
            }
            let mut tag = [0u8; TAG_LEN];
            tag.copy_from_slice(&entry[len..len + TAG_LEN]);
            let material = Secret::key_with(KEY_LEN, |dst| {
                dst.copy_from_slice(&entry[len + TAG_LEN..]);
                Ok(())
            })?;
            namespaces.insert(
                name.to_owned(),
                Arc::new(NamespaceKey {
                    name: name.to_owned(),
                    tag,
                    material,
                }),
            );
        }
        if format == FORMAT_COUNTERS {
            let n = rest.get(at..at + 2).ok_or_else(bad_size)?;
            let n = usize::from(u16::from_be_bytes([n[0], n[1]]));
            if n > MAX_COUNTERS {
                return Err(bad_size());
            }
            at += 2;
            for _ in 0..n {
                let len = usize::from(*rest.get(at).ok_or_else(bad_size)?);
                let entry = rest.get(at + 1..at + 1 + len + 8).ok_or_else(bad_size)?;
                at += 1 + len + 8;
                let id = std::str::from_utf8(&entry[..len])
                    .ok()
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| {
                        Error::new(
                            ErrorKind::Integrity,
                            format!("key file {shown} holds an invalid store id"),
                        )
                    })?;
                if counters
                    .keys()
                    .next_back()
                    .is_some_and(|last: &String| last.as_str() >= id)
                {
                    return Err(Error::new(
                        ErrorKind::Integrity,
                        format!("key file {shown} lists store counters out of order"),
                    ));
                }
                let mut count = [0u8; 8];
                count.copy_from_slice(&entry[len..]);
                counters.insert(id.to_owned(), u64::from_be_bytes(count));
            }
        }
        if at != rest.len() {
            return Err(bad_size());
        }
    }
    let current = KeyVersion::new(current).map_err(|_| {
        Error::new(
            ErrorKind::Integrity,
            format!("key file {shown} has current version 0"),
        )
    })?;
    if !versions.contains_key(&current) {
        return Err(Error::new(
            ErrorKind::Integrity,
            format!("key file {shown}: current version {current} is missing"),
        ));
    }
    Ok(Contents {
        current,
        versions,
        namespaces,
        counters,
    })
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

/// The key file's bytes, in locked memory like every other copy of the master keys.
#[inline(never)]
fn encode(c: &Contents) -> Result<Secret> {
    let count16 = u16::try_from(c.versions.len())
        .ok()
        .filter(|n| usize::from(*n) <= MAX_VERSIONS)
        .ok_or_else(|| {
            Error::invalid_input(format!("a key file holds at most {MAX_VERSIONS} versions"))
        })?;
    if c.counters.len() > MAX_COUNTERS || c.counters.keys().any(|id| id.len() > 255) {
        return Err(Error::invalid_input(format!(
            "a key file holds at most {MAX_COUNTERS} store counters, with ids of at most 255 bytes"
        )));
    }
    let with_counters = !c.counters.is_empty();
    let with_namespaces = with_counters || !c.namespaces.is_empty();
    let counters_len: usize = if with_counters {
        2 + c.counters.keys().map(|id| 1 + id.len() + 8).sum::<usize>()
    } else {
        0
    };
    let ns_len: usize = if with_namespaces {
        2 + c
            .namespaces
            .keys()
            .map(|name| 1 + name.len() + TAG_LEN + KEY_LEN)
            .sum::<usize>()
    } else {
        0
    };
    let body_len = HEAD + c.versions.len() * ENTRY + ns_len + counters_len;
    Secret::key_with(body_len + SUM, |out| {
        let (body, sum) = out.split_at_mut(body_len);
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            body[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(&MAGIC);
        put(&[if with_counters {
            FORMAT_COUNTERS
        } else if with_namespaces {
            FORMAT_NAMESPACES
        } else {
            FORMAT_MASTER_ONLY
        }]);
        put(&c.current.to_be_bytes());
        put(&count16.to_be_bytes());
        for key in c.versions.values() {
            put(&key.version().to_be_bytes());
            put(key.material().expose_secret());
        }
        if with_namespaces {
            // At most MAX_NAMESPACE_KEYS (checked when one is added), which fits in a u16.
            put(&(c.namespaces.len() as u16).to_be_bytes());
            for (name, key) in &c.namespaces {
                // Names are at most 255 bytes (checked when one is added).
                put(&[name.len() as u8]);
                put(name.as_bytes());
                put(&key.tag);
                put(key.material.expose_secret());
            }
        }
        if with_counters {
            put(&(c.counters.len() as u16).to_be_bytes());
            for (id, count) in &c.counters {
                put(&[id.len() as u8]);
                put(id.as_bytes());
                put(&count.to_be_bytes());
            }
        }
        debug_assert_eq!(at, body_len);
        sum.copy_from_slice(digest::digest(&digest::SHA256, body).as_ref());
        Ok(())
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::scan::{Masked, find_copies, is_locked_page};

    #[test]
    fn master_keys_are_only_in_locked_memory_through_create_open_and_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let id = KeyId::new("local").unwrap();
        let created = LocalKeyFile::open_or_create(id.clone(), &path).unwrap();
        let first = Masked::of(
            created
                .keys
                .version(KeyVersion::FIRST)
                .unwrap()
                .material()
                .expose_secret(),
        );
        drop(created);
        assert_eq!(find_copies(&first), Vec::<usize>::new(), "after create");
        let opened = LocalKeyFile::open(id, &path).unwrap();
        opened.rotate_now().unwrap();
        let second = Masked::of(
            opened
                .keys
                .version(KeyVersion::new(2).unwrap())
                .unwrap()
                .material()
                .expose_secret(),
        );
        for key in [&first, &second] {
            let copies = find_copies(key);
            assert!(!copies.is_empty());
            for at in copies {
                assert!(
                    is_locked_page(at),
                    "a master key copy at {at:#x} is unlocked"
                );
            }
        }
        drop(opened);
        assert_eq!(find_copies(&first), Vec::<usize>::new());
        assert_eq!(find_copies(&second), Vec::<usize>::new());
    }
}
