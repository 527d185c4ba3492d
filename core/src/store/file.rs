//! `FileStore`: read-only secrets from a single file or from a directory tree.
//!
//! Two layouts:
//! - **One file** ([`FileStore::file`]), e.g. a `password_file`: one name maps to one path.
//! - **A directory** ([`FileStore::dir`]), e.g. a Secrets Store CSI mount
//!   (`/mnt/secrets-store/<name>`) or a Docker/Kubernetes secrets directory: every regular file
//!   below the root is a secret, nested directories map to `/` in names
//!   (`root/predis/prod/db` is `predis/prod/db`). Entries whose name starts with `.` are skipped
//!   (Kubernetes keeps its atomic-update machinery in `..data` and timestamped `..2024_...`
//!   directories); symlinks are followed (the CSI driver publishes files as symlinks) but never
//!   out of the root.
//!
//! Values are read straight into a [`Secret`] and cached with the file's identity (device,
//! inode, size, mtime and ctime, from one `stat`). Every `get` re-checks that identity and
//! re-reads the file when it changed, so rotated mounts are picked up without a restart and an
//! unchanged file costs one `stat`. The version id is derived from the identity: it changes when
//! the file is replaced, and `get(Version(old id))` is `NotFound` after a change. A file
//! rewritten in place within one timestamp tick with the same size is not noticed until its
//! next change; atomic replacement (rename, the Kubernetes symlink swap) always is. A read that
//! loses a race with the symlink swap (the directory it resolved was removed before the open)
//! resolves the name again and reads the new directory: a rotation never reads as `NotFound`.
//!
//! Files other users can access (`mode & 0o007 != 0`) are handled per [`PermissionCheck`]:
//! warned about once per file by default (CSI mounts are often `0644`), or refused.
//!
//! File I/O here is synchronous: secret files are small and usually on tmpfs.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{File, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;

use super::{
    Capabilities, DeleteOptions, ListOptions, ListPage, PutOptions, SecretMetadata, SecretName,
    SecretStore, SecretVersion, Stage, VersionId, VersionInfo, VersionSelector, listing,
};
use crate::error::{Error, ErrorKind, Result};
use crate::process::ProcessStamp;
use crate::secret::Secret;

/// What to do with a secret file that other users can read or write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PermissionCheck {
    /// Read it silently.
    Allow,
    /// Read it and log a `tracing` warning (once per file).
    #[default]
    Warn,
    /// Refuse to read it with an [`ErrorKind::Io`] error that says how to fix the mode.
    Refuse,
}

/// How deep [`FileStore::dir`] descends; deeper trees are a misconfiguration or a loop.
const MAX_DEPTH: usize = 16;

/// How many `..data` swaps one read follows before it reports what it found; each retry
/// needs a swap to have happened, so this only bounds a writer swapping without pause.
const MAX_SWAPS_PER_READ: usize = 64;

/// How many more times a read looks at a symlinked name that led nowhere twice running.
const MAX_UNRESOLVED_RETRIES: usize = 4;

/// Read-only store over one file or a directory tree; see the [module docs](self).
///
/// ```no_run
/// use sealbox::store::file::{FileStore, PermissionCheck};
/// let csi = FileStore::dir("/mnt/secrets-store").unwrap().permissions(PermissionCheck::Refuse);
/// let one = FileStore::file("predis/prod/database/password", "/run/secrets/db_password").unwrap();
/// ```
#[derive(Debug)]
pub struct FileStore {
    layout: Layout,
    permissions: PermissionCheck,
    max_value_len: usize,
    cache: Mutex<HashMap<SecretName, Cached>>,
    warned: Mutex<HashSet<PathBuf>>,
    /// The cached values are wiped in a forked child: there every call answers `Forked`.
    stamp: ProcessStamp,
}

#[derive(Clone, Debug)]
enum Layout {
    File { name: SecretName, path: PathBuf },
    Dir { root: PathBuf },
}

/// Where a read of one name goes.
#[derive(Debug)]
struct Target {
    /// The path to open: the configured one for a single file, the resolved one in a
    /// directory; `None` when nothing is there.
    path: Option<PathBuf>,
    /// What the name's symlinks resolved to, `None` when they lead nowhere: when this changes
    /// between a failed read and the next look, the name was re-pointed meanwhile.
    resolved: Option<PathBuf>,
}

/// A file's identity from one `stat`: when any part changes, the file is re-read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    fn of(m: &Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        }
    }

    fn version(&self) -> VersionId {
        VersionId::new(format!(
            "{:x}.{:x}.{:x}.{:x}",
            self.ino, self.len, self.mtime_ns, self.ctime_ns
        ))
    }
}

#[derive(Debug)]
struct Cached {
    stamp: Stamp,
    value: Secret,
}

impl FileStore {
    /// One secret, `name`, read from the file at `path` (which may not exist yet).
    pub fn file(name: &str, path: impl Into<PathBuf>) -> Result<FileStore> {
        Ok(Self::with_layout(Layout::File {
            name: SecretName::new(name)?,
            path: path.into(),
        }))
    }

    /// Every regular file below `root` (which must exist and be a directory).
    pub fn dir(root: impl AsRef<Path>) -> Result<FileStore> {
        let root = root.as_ref();
        let canonical = std::fs::canonicalize(root).map_err(|e| {
            Error::config(format!(
                "file store directory {} cannot be opened: {e}",
                root.display()
            ))
        })?;
        if !canonical.is_dir() {
            return Err(Error::config(format!(
                "file store root {} is not a directory; use FileStore::file for a single file",
                root.display()
            )));
        }
        Ok(Self::with_layout(Layout::Dir { root: canonical }))
    }

    fn with_layout(layout: Layout) -> FileStore {
        FileStore {
            layout,
            permissions: PermissionCheck::default(),
            max_value_len: Capabilities::READ_ONLY.max_value_len,
            cache: Mutex::new(HashMap::new()),
            warned: Mutex::new(HashSet::new()),
            stamp: ProcessStamp::new(),
        }
    }

    /// How to treat files other users can access (default [`PermissionCheck::Warn`]).
    pub fn permissions(mut self, check: PermissionCheck) -> FileStore {
        self.permissions = check;
        self
    }

    /// The largest file read (default 1 MiB); larger files are `InvalidInput`.
    pub fn max_value_len(mut self, len: usize) -> FileStore {
        self.max_value_len = len;
        self
    }

    /// Where `name` is read from now. A directory store resolves the name's symlinks itself, to
    /// keep reads inside the root.
    fn target(&self, name: &SecretName) -> Result<Target> {
        match &self.layout {
            Layout::File { name: only, path } if only == name => Ok(Target {
                resolved: canonical(path)?,
                path: Some(path.clone()),
            }),
            Layout::File { .. } => Err(not_found(name)),
            Layout::Dir { root } => {
                if name.as_str().split('/').any(|s| s.starts_with('.')) {
                    return Err(not_found(name));
                }
                let joined = root.join(name.as_str());
                let resolved = canonical(&joined)?;
                if let Some(c) = &resolved
                    && !c.starts_with(root)
                {
                    return Err(Error::new(
                        ErrorKind::AccessDenied,
                        format!(
                            "secret {name}: {} links outside the store directory {}; refusing",
                            joined.display(),
                            root.display()
                        ),
                    ));
                }
                Ok(Target {
                    path: resolved.clone(),
                    resolved,
                })
            }
        }
    }

    /// Runs `op` on `name`'s target, again when it failed with `NotFound` because the name's
    /// symlinks were re-pointed meanwhile. The kubelet's atomic writer (Secrets Store CSI,
    /// projected volumes) renames `..data` to a new directory and then removes the old one, so
    /// a read that resolved the name just before a swap finds nothing there: that is a rotation,
    /// not a missing secret. A name that resolves to the same file twice and is not there is
    /// missing. One whose symlinks lead nowhere twice is looked at a few more times when it is a
    /// symlink: a reader held up across two swaps sees exactly that, and so does a dangling link.
    fn resolving<T>(&self, name: &SecretName, op: impl Fn(&Target) -> Result<T>) -> Result<T> {
        let mut target = self.target(name)?;
        let mut unresolved_again = 0;
        for _ in 0..MAX_SWAPS_PER_READ {
            match op(&target) {
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    let now = self.target(name)?;
                    if now.resolved == target.resolved {
                        if now.resolved.is_some()
                            || unresolved_again == MAX_UNRESOLVED_RETRIES
                            || !self.is_link(name)
                        {
                            return Err(e);
                        }
                        unresolved_again += 1;
                        std::thread::yield_now();
                    }
                    target = now;
                }
                done => return done,
            }
        }
        op(&target)
    }

    /// Whether `name`'s entry (its first path segment in a directory) is a symlink, as the
    /// user-visible names of a kubelet-managed mount are.
    fn is_link(&self, name: &SecretName) -> bool {
        let entry = match &self.layout {
            Layout::File { path, .. } => path.clone(),
            Layout::Dir { root } => root.join(name.as_str().split('/').next().unwrap_or_default()),
        };
        std::fs::symlink_metadata(entry).is_ok_and(|m| m.file_type().is_symlink())
    }

    fn stat(&self, name: &SecretName, target: &Target) -> Result<(PathBuf, Metadata)> {
        let Some(path) = &target.path else {
            return Err(not_found(name));
        };
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => Ok((path.clone(), m)),
            Ok(_) => Err(not_found(name)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(not_found(name)),
            Err(e) => Err(Error::io(format!("stat {}", path.display()), e)),
        }
    }

    fn check_permissions(&self, path: &Path, m: &Metadata) -> Result<()> {
        let mode = m.mode() & 0o777;
        if mode & 0o007 == 0 {
            return Ok(());
        }
        match self.permissions {
            PermissionCheck::Allow => Ok(()),
            PermissionCheck::Warn => {
                let first = self
                    .warned
                    .lock()
                    .map(|mut w| w.insert(path.to_owned()))
                    .unwrap_or(false);
                if first {
                    tracing::warn!(
                        path = %path.display(),
                        mode = format_args!("{mode:o}"),
                        "secret file is accessible to other users; chmod o-rwx it"
                    );
                }
                Ok(())
            }
            PermissionCheck::Refuse => Err(Error::new(
                ErrorKind::Io,
                format!(
                    "secret file {} has mode {mode:o}, accessible to other users; refusing to \
                     read it (chmod 600 it, or relax the file store's permission check)",
                    path.display()
                ),
            )),
        }
    }

    /// The current value and its stamp: one `stat`, and a read only when the file changed.
    fn read(&self, name: &SecretName) -> Result<(Secret, Stamp)> {
        self.resolving(name, |target| self.read_at(name, target))
    }

    fn read_at(&self, name: &SecretName, target: &Target) -> Result<(Secret, Stamp)> {
        let (path, m) = self.stat(name, target)?;
        self.check_permissions(&path, &m)?;
        let stamp = Stamp::of(&m);
        {
            let cache = self.cache()?;
            if let Some(c) = cache.get(name)
                && c.stamp == stamp
            {
                return Ok((c.value.try_clone()?, stamp));
            }
        }
        let mut file = File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => not_found(name),
            _ => Error::io(format!("opening {}", path.display()), e),
        })?;
        // The stamp of what is actually read: the file may have been swapped since the stat.
        let m = file
            .metadata()
            .map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
        self.check_permissions(&path, &m)?;
        let stamp = Stamp::of(&m);
        let value = Secret::from_reader(&mut file, self.max_value_len).map_err(|e| {
            if e.kind() == ErrorKind::InvalidInput {
                Error::invalid_input(format!(
                    "secret file {} is larger than the file store's limit of {} bytes",
                    path.display(),
                    self.max_value_len
                ))
            } else {
                e
            }
        })?;
        self.cache()?.insert(
            name.clone(),
            Cached {
                stamp,
                value: value.try_clone()?,
            },
        );
        Ok((value, stamp))
    }

    fn cache(&self) -> Result<std::sync::MutexGuard<'_, HashMap<SecretName, Cached>>> {
        self.stamp.check("file store")?;
        self.cache
            .lock()
            .map_err(|_| Error::internal("file store cache lock poisoned"))
    }

    fn names(&self) -> Result<BTreeMap<SecretName, SystemTime>> {
        let mut out = BTreeMap::new();
        match &self.layout {
            Layout::File { name, path } => {
                if let Ok(m) = std::fs::metadata(path)
                    && m.is_file()
                {
                    out.insert(name.clone(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH));
                }
            }
            Layout::Dir { root } => walk(root, root, "", 0, &mut out)?,
        }
        Ok(out)
    }
}

/// Collects regular files below `dir` as names relative to `root`.
fn walk(
    root: &Path,
    dir: &Path,
    prefix: &str,
    depth: usize,
    out: &mut BTreeMap<SecretName, SystemTime>,
) -> Result<()> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let Some(file_name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if file_name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        // Follow symlinks, but only to places inside the root (this also stops loops).
        let Ok(canonical) = std::fs::canonicalize(&path) else {
            continue;
        };
        if !canonical.starts_with(root) {
            continue;
        }
        let Ok(m) = std::fs::metadata(&canonical) else {
            continue;
        };
        let rel = format!("{prefix}{file_name}");
        if m.is_dir() {
            walk(root, &canonical, &format!("{rel}/"), depth + 1, out)?;
        } else if m.is_file()
            && let Ok(name) = SecretName::new(rel)
        {
            out.insert(name, m.modified().unwrap_or(SystemTime::UNIX_EPOCH));
        }
    }
    Ok(())
}

/// `path` with every symlink resolved, or `None` when it leads nowhere.
fn canonical(path: &Path) -> Result<Option<PathBuf>> {
    match std::fs::canonicalize(path) {
        Ok(p) => Ok(Some(p)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("resolving {}", path.display()), e)),
    }
}

fn not_found(name: &SecretName) -> Error {
    Error::not_found(format!("secret {name} does not exist in the file store"))
}

#[async_trait]
impl SecretStore for FileStore {
    fn kind(&self) -> &'static str {
        "file"
    }

    /// The same files, with an empty cache.
    async fn reopen(&self) -> Result<Arc<dyn SecretStore>> {
        let mut fresh = Self::with_layout(self.layout.clone());
        fresh.permissions = self.permissions;
        fresh.max_value_len = self.max_value_len;
        Ok(Arc::new(fresh))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            list_paging: true,
            cheap_describe: true,
            max_value_len: self.max_value_len,
            ..Capabilities::READ_ONLY
        }
    }

    async fn get(&self, name: &SecretName, selector: &VersionSelector) -> Result<SecretVersion> {
        let (value, stamp) = self.read(name)?;
        let version = stamp.version();
        let matches = match selector {
            VersionSelector::Current | VersionSelector::Stage(Stage::Current) => true,
            VersionSelector::Stage(_) => false,
            VersionSelector::Version(id) => *id == version,
        };
        if !matches {
            return Err(Error::not_found(format!(
                "secret {name} has no version {selector}: a file secret has only its current \
                 content, version {version}"
            )));
        }
        Ok(SecretVersion {
            value,
            version,
            stages: vec![Stage::Current],
            created: None,
        })
    }

    async fn put(&self, _: &SecretName, _: &Secret, _: &PutOptions) -> Result<VersionInfo> {
        Err(Error::unsupported("put", "file (read-only)"))
    }

    async fn describe(&self, name: &SecretName) -> Result<SecretMetadata> {
        let (_, m) = self.resolving(name, |target| self.stat(name, target))?;
        let updated = m.modified().ok();
        Ok(SecretMetadata {
            name: name.clone(),
            versions: vec![VersionInfo {
                version: Stamp::of(&m).version(),
                stages: vec![Stage::Current],
                created: updated,
            }],
            created: None,
            updated,
            last_rotated: None,
            description: None,
            tags: BTreeMap::new(),
            rotation_period: None,
            deleted: None,
        })
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        let names = self.names()?;
        let set: BTreeSet<SecretName> = names.keys().cloned().collect();
        Ok(listing::page(&set, options, |n| names.get(n).copied()))
    }

    async fn delete(&self, _: &SecretName, _: &DeleteOptions) -> Result<()> {
        Err(Error::unsupported("delete", "file (read-only)"))
    }

    async fn restore(&self, _: &SecretName) -> Result<()> {
        Err(Error::unsupported("restore", "file (read-only)"))
    }

    async fn set_stage(&self, _: &SecretName, _: &Stage, _: Option<&VersionId>) -> Result<()> {
        Err(Error::unsupported("set_stage", "file (read-only)"))
    }
}
