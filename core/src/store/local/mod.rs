//! `LocalVault`: the integrated, embedded default store. One SQLite file (WAL mode, through
//! `rusqlite` with SQLite bundled), every value and every key stored only as envelopes under
//! the key hierarchy.
//!
//! # Layout
//! - `secrets`: one row per secret: name, namespace, its DEK wrapped by the namespace KEK with
//!   the DEK's creation time and use count, metadata, soft-delete purge time.
//! - `versions`: one row per version: the value sealed with the secret's DEK.
//! - `stages`: `(secret, stage) -> version` (`CURRENT`, `PENDING`, `PREVIOUS`, custom).
//! - `key_namespaces`, `master_checks`: the key hierarchy's records ([`crate::keys::KeyStorage`]).
//! - `meta`: schema version, store id, key epoch, write counter (and, in a backup, when it was
//!   taken).
//!
//! # Guarantees
//! - **Binding.** A value's AAD binds the store id, namespace, name, version, and the DEK's id
//!   and version; a DEK's AAD (in the keyring) binds namespace and DEK id. A ciphertext copied
//!   to another row, name, version or vault fails with [`ErrorKind::Integrity`].
//! - **Atomicity.** Every write is one `BEGIN IMMEDIATE` transaction with `synchronous = FULL`:
//!   when `put` returns, the version is on disk; a crash leaves either all of a write or none.
//! - **Several processes.** SQLite's locking with a busy timeout serialises writers across
//!   processes; compare-and-set is checked inside the write transaction, so it holds across
//!   processes too. Administrative operations (create, rotations, erasure) also take an
//!   exclusive file lock on `<vault>.lock`.
//! - **Erasure.** [`LocalVault::erase_namespace`] destroys the namespace's key in the master
//!   key provider (the local key file holds one per namespace; KEKs are wrapped under a key
//!   derived from it and the master key), then its KEKs and rows, then truncates the WAL;
//!   deleted pages are zeroed (`secure_delete`). Copies of the vault taken before cannot read
//!   the namespace with the current key material; [`Erasure::backups_covered`] says when a
//!   provider without namespace keys leaves them readable.
//! - **Refusals on open.** A vault file that group or others can access (`Config`), a file
//!   SQLite finds shorter than its header says once its WAL is replayed (`Truncated`), a
//!   non-SQLite or damaged file (`Integrity`, `PRAGMA quick_check`), a schema from a newer
//!   build (`UnsupportedVersion`), a different master key (`WrongKey`, from the stored
//!   key-check value). Nothing is written before these checks pass.
//! - **Rollback detection.** A write counter in the vault, raised in the transaction of every
//!   put, delete, restore, stage move, import, purge and erasure, is recorded outside the vault
//!   in the local key file (per store id) every [`PUBLISH_EVERY`] writes of a handle, when a
//!   process's last handle closes, and by `verify`. Opening a vault whose counter is below the
//!   recorded one fails with `Integrity` naming how many writes it is behind; `verify` (with
//!   [`LocalVaultOptions::allow_rollback`]) reports it. Not covered: a copy less than
//!   `PUBLISH_EVERY` writes old put in place while the writer still runs; key rotations alone
//!   (they do not count); providers other than the key file (passphrase, environment, KMS,
//!   PKCS#11), which keep no counter: `VerifyReport::rollback_detection` is then false.
//!   [`LocalVault::restore_backup`] is the deliberate way back to an older copy.
//! - **Online backups.** [`LocalVault::backup_to`] copies one committed state through SQLite's
//!   backup API while writers run, into a new `0600` file that opens and verifies on its own
//!   with the key material.
//! - **Key lifecycle.** Each KEK and DEK has a use count persisted with it and incremented in
//!   the transaction of every write that encrypts under it; a write rotates a DEK past its
//!   period or half its limit, and fails with [`ErrorKind::KeyExhausted`] when a key is at
//!   its limit and cannot rotate. Rotation gives fresh keys and re-encrypts; retirement
//!   destroys old KEK versions. What each guarantees is in the `lifecycle` module's docs
//!   ([`LocalVault::rotate_dek`], [`LocalVault::rotate_kek`], [`LocalVault::retire_keks`],
//!   [`LocalVault::key_status`], [`LocalVault::rotate_due`]).
//!
//! Reads run on the caller's thread (a WAL reader never waits for writers); writes run under
//! [`tokio::task::spawn_blocking`] because they may wait for another process's write lock.

mod audit_key;
mod backup;
mod key_storage;
mod lifecycle;
mod pool;
mod rollback;
mod schema;

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};

use self::rollback::{Counter, Opened};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use secrecy::ExposeSecret;

pub use self::backup::{BackupInfo, RestoreInfo};
use self::key_storage::{SqliteKeyStorage, count_kek_uses};
pub use self::lifecycle::{DekRotation, DueRotation, KekRetirement, KeyInfo, KeyState, KeyStatus};
use self::pool::{Pool, open_connection};
pub use self::rollback::PUBLISH_EVERY;
use self::schema::{SCHEMA_VERSION, sql_error};
use super::{
    Capabilities, DeleteOptions, Erasure, ListEntry, ListOptions, ListPage, PutOptions,
    SecretMetadata, SecretName, SecretStore, SecretVersion, Stage, VersionId, VersionInfo,
    VersionSelector, listing,
};
use crate::error::{Error, ErrorKind, Result};
use crate::keys::{
    DataKey, Envelope, KeyId, KeyProvider, KeyVersion, Keyring, MAX_USES, RotationSchedule,
    WrappedDek,
};
use crate::memory;
use crate::secret::Secret;

/// The file name used when the vault path is a directory.
pub const DEFAULT_FILE_NAME: &str = "vault.sqlite3";

/// How many times a write restarts after losing an optimistic race (a concurrent first write
/// of the same secret, or a DEK rewrapped underneath it).
const WRITE_RETRIES: usize = 8;

/// At most this many unwrapped DEKs are kept per vault handle; beyond the cache's size a read
/// unwraps the DEK again (about a microsecond under a cached KEK).
const DEK_CACHE_MAX: usize = 4096;

/// The cache keeps its DEKs within `1 / DEK_CACHE_SHARE` of the memlock budget (DEKs are
/// always locked), leaving the rest to KEKs, master keys and secrets.
const DEK_CACHE_SHARE: usize = 4;

/// Settings for [`LocalVault`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalVaultOptions {
    /// How many leading name segments form the namespace (the KEK boundary). Default 1:
    /// `predis/prod/db` is in namespace `predis`; with 2 it is in `predis/prod`.
    pub namespace_depth: usize,
    /// How long a write waits for another process's write lock before `Unavailable`.
    pub busy_timeout: Duration,
    /// Largest value accepted, in bytes (default 1 MiB).
    pub max_value_len: usize,
    /// Rotation periods: master 90 days, KEK 90 days, DEK 30 days, session keys 24 hours by
    /// default. A write to a secret whose DEK is past its period, or past half its
    /// `dek_max_uses`, first rotates that DEK (when `auto_rotate`); a new DEK is wrapped under a
    /// fresh KEK version when the current one is past its period or half its `kek_max_uses`.
    /// [`LocalVault::key_status`] and [`LocalVault::rotate_due`] use the same periods.
    pub schedule: RotationSchedule,
    /// Most values one DEK may encrypt over its life (its persisted use count, shared by every
    /// process), at most [`MAX_USES`].
    pub dek_max_uses: u64,
    /// Most DEKs one KEK version may wrap over its life, at most [`MAX_USES`].
    pub kek_max_uses: u64,
    /// Whether writes rotate the keys they would use when those are due (default `true`).
    /// When off, or when a rotation is impossible, a write that would take a key past its limit
    /// fails with [`ErrorKind::KeyExhausted`] and writes nothing.
    pub auto_rotate: bool,
    /// Open a vault that is older than its key file says (rollback detection, see
    /// `LocalVault`'s docs) instead of refusing with `Integrity`: `verify` and
    /// `backup restore` read such copies. The handle refuses every write. Default `false`.
    pub allow_rollback: bool,
}

impl Default for LocalVaultOptions {
    fn default() -> Self {
        LocalVaultOptions {
            namespace_depth: 1,
            busy_timeout: Duration::from_secs(10),
            max_value_len: Capabilities::FULL.max_value_len,
            schedule: RotationSchedule::default(),
            dek_max_uses: MAX_USES,
            kek_max_uses: MAX_USES,
            auto_rotate: true,
            allow_rollback: false,
        }
    }
}

/// What [`LocalVault::verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Secrets examined (including soft-deleted ones).
    pub secrets: u64,
    /// Versions that decrypted and authenticated.
    pub versions_ok: u64,
    /// Versions left under crypto-shredded keys (an interrupted erasure; not a failure).
    pub versions_shredded: u64,
    /// Versions or secrets that failed, with the reason.
    pub failures: Vec<VerifyFailure>,
    /// Whether the master key provider keeps the vault's write counter, so that an older
    /// copy put in the vault's place is detected (the local key file does; passphrase,
    /// environment, KMS and PKCS#11 masters do not).
    pub rollback_detection: bool,
    /// The vault file's write counter.
    pub write_count: u64,
    /// How many writes the file is behind the counter its key provider recorded (0: none).
    pub writes_behind: u64,
    /// Whether the file is a backup written by [`LocalVault::backup_to`] (not restored).
    pub is_backup: bool,
}

impl VerifyReport {
    /// True when nothing failed and the file is not an older copy of the vault (a backup
    /// may be behind: that is what a backup is).
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty() && (self.writes_behind == 0 || self.is_backup)
    }
}

/// One failed item in a [`VerifyReport`]. Names and versions only, never values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyFailure {
    /// The secret.
    pub name: String,
    /// The version, or `None` when the secret's DEK itself failed.
    pub version: Option<i64>,
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The error message.
    pub message: String,
}

/// The result of [`LocalVault::rotate_kek`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KekRotation {
    /// The namespace's new KEK version.
    pub version: KeyVersion,
    /// Secrets given a fresh DEK under it (their versions re-encrypted).
    pub deks_rotated: u64,
}

/// The integrated local vault; see the [module docs](self).
///
/// ```no_run
/// # async fn demo() -> sealbox::Result<()> {
/// use std::sync::Arc;
/// use sealbox::keys::{KeyId, LocalKeyFile};
/// use sealbox::store::local::LocalVault;
/// let key = Arc::new(LocalKeyFile::open_or_create(KeyId::new("local")?, "/srv/sealbox/master.key")?);
/// let vault = LocalVault::open_or_create("/srv/sealbox", key).await?;
/// assert!(vault.verify().await?.is_ok());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LocalVault {
    inner: Arc<Inner>,
}

/// An unwrapped DEK and the wrapped bytes it came from.
type CachedDek = (Vec<u8>, Arc<DataKey>);

/// Caches `entry` for secret `id` in `deks`, which holds at most `capacity` DEKs (each holds a
/// key schedule in locked memory): others are evicted to make room, and nothing is cached when
/// `capacity` is 0.
fn cache_dek(deks: &mut HashMap<i64, CachedDek>, capacity: usize, id: i64, entry: CachedDek) {
    if capacity == 0 {
        return;
    }
    while deks.len() >= capacity
        && !deks.contains_key(&id)
        && let Some(evict) = deks.keys().next().copied()
    {
        deks.remove(&evict);
    }
    deks.insert(id, entry);
}

/// One version as `verify` reads it: secret id, name, namespace, wrapped DEK, version,
/// envelope.
type VerifyRow = (i64, String, String, Vec<u8>, i64, Vec<u8>);

struct Inner {
    pool: Arc<Pool>,
    keyring: Keyring,
    store_id: String,
    options: LocalVaultOptions,
    /// Unwrapped DEKs by secret row id, with the wrapped bytes they came from.
    deks: Mutex<HashMap<i64, CachedDek>>,
    /// How many DEKs `deks` holds at most: as many as fit in its share of RLIMIT_MEMLOCK.
    dek_capacity: usize,
    /// The `key_epoch` the caches were filled under; a change means keys moved elsewhere.
    epoch: AtomicI64,
    /// The write counter, for rollback detection.
    counter: Counter,
}

impl Drop for Inner {
    /// The last handle of a process records the vault's write counter (rollback detection);
    /// a forked child leaves that to the parent.
    fn drop(&mut self) {
        if !self.pool.in_owner_process() {
            return;
        }
        if let Err(e) = self.counter.publish(self.keyring.provider().as_ref()) {
            tracing::warn!(
                target: "sealbox::local",
                error = %e,
                "could not record the vault's write counter in the key file on close"
            );
        }
    }
}

impl std::fmt::Debug for LocalVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalVault")
            .field("path", &self.inner.pool.path())
            .field("store_id", &self.inner.store_id)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

/// `dir_or_file` as the database path: an existing directory holds [`DEFAULT_FILE_NAME`].
pub fn database_path(dir_or_file: impl AsRef<Path>) -> PathBuf {
    let p = dir_or_file.as_ref();
    if p.is_dir() {
        p.join(DEFAULT_FILE_NAME)
    } else {
        p.to_path_buf()
    }
}

fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// An exclusive advisory lock on `<vault>.lock`, released on drop.
struct FileLock(fs::File);

impl FileLock {
    fn acquire(db: &Path) -> Result<FileLock> {
        let path = lock_path(db);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(format!("opening lock file {}", path.display()), e))?;
        fs4::FileExt::lock(&file)
            .map_err(|e| Error::io(format!("locking {}", path.display()), e))?;
        Ok(FileLock(file))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = fs4::FileExt::unlock(&self.0);
    }
}

/// Deletes the secrets whose recovery window ended by `now`; their versions and wrapped DEK
/// go with them (`ON DELETE CASCADE`).
fn purge_due(tx: &rusqlite::Transaction<'_>, now: i64) -> Result<usize> {
    tx.execute(
        "DELETE FROM secrets WHERE purge_at IS NOT NULL AND purge_at <= ?1",
        [now],
    )
    .map_err(|e| sql_error("purging deleted secrets", e))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn to_time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

fn random_hex(bytes: usize) -> Result<String> {
    let r = Secret::random(bytes)?;
    Ok(hex::encode(r.expose_secret()))
}

/// The associated data of a value envelope.
fn value_aad(
    store_id: &str,
    namespace: &str,
    name: &str,
    version: i64,
    dek: &WrappedDek,
) -> Vec<u8> {
    let mut aad = Vec::with_capacity(64 + name.len());
    aad.extend_from_slice(b"sealbox/local/value/v1\0");
    for part in [store_id, namespace, name] {
        aad.extend_from_slice(part.as_bytes());
        aad.push(0);
    }
    aad.extend_from_slice(&version.to_be_bytes());
    aad.extend_from_slice(dek.dek_id().as_str().as_bytes());
    aad.push(0);
    aad.extend_from_slice(&dek.dek_version().to_be_bytes());
    aad
}

/// Opens a value envelope with its row's DEK. The DEK comes from the same row, so an envelope
/// naming another key was moved here from elsewhere: that is `Integrity`, not `WrongKey`.
fn open_value(dek: &DataKey, aad: &[u8], envelope: &[u8]) -> Result<Secret> {
    Envelope::open(dek, aad, envelope).map_err(|e| match e.kind() {
        ErrorKind::WrongKey => Error::new(
            ErrorKind::Integrity,
            "the stored ciphertext belongs to another secret (moved or tampered with)",
        ),
        _ => e,
    })
}

fn parse_version(id: &VersionId) -> Option<i64> {
    id.as_str().parse::<i64>().ok().filter(|v| *v > 0)
}

fn parse_stages(csv: Option<String>) -> Vec<Stage> {
    csv.map(|s| {
        let mut stages: Vec<Stage> = s.split(',').filter_map(|x| x.parse().ok()).collect();
        stages.sort();
        stages
    })
    .unwrap_or_default()
}

fn not_found(name: &SecretName) -> Error {
    Error::not_found(format!("secret {name} does not exist"))
}

impl LocalVault {
    /// Creates a new vault at `dir_or_file` (a directory gets [`DEFAULT_FILE_NAME`] inside;
    /// missing parent directories are created `0700`). Fails with `AlreadyExists` if a vault
    /// is there.
    pub async fn create(
        dir_or_file: impl AsRef<Path>,
        provider: Arc<dyn KeyProvider>,
    ) -> Result<LocalVault> {
        Self::create_with(dir_or_file, provider, LocalVaultOptions::default()).await
    }

    /// [`LocalVault::create`] with options.
    pub async fn create_with(
        dir_or_file: impl AsRef<Path>,
        provider: Arc<dyn KeyProvider>,
        options: LocalVaultOptions,
    ) -> Result<LocalVault> {
        let db = database_path(dir_or_file);
        if let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        }
        {
            let _lock = FileLock::acquire(&db)?;
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&db)
            {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(Error::new(
                        ErrorKind::AlreadyExists,
                        format!(
                            "a local vault already exists at {}; open it instead",
                            db.display()
                        ),
                    ));
                }
                Err(e) => return Err(Error::io(format!("creating {}", db.display()), e)),
            }
            let init = (|| {
                let mut conn = open_connection(&db, options.busy_timeout, true)?;
                conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
                    .map_err(|e| sql_error("enabling WAL", e))?;
                schema::migrate(&mut conn, SCHEMA_VERSION, &random_hex(16)?)?;
                Ok::<_, Error>(())
            })();
            if let Err(e) = init {
                // Leave no half-made vault behind for the next `create`.
                let _ = fs::remove_file(&db);
                return Err(e);
            }
        }
        Self::open_db(db, provider, options).await
    }

    /// Opens an existing vault (`NotFound` if there is none), running the checks listed in
    /// the [module docs](self).
    pub async fn open(
        dir_or_file: impl AsRef<Path>,
        provider: Arc<dyn KeyProvider>,
    ) -> Result<LocalVault> {
        Self::open_with(dir_or_file, provider, LocalVaultOptions::default()).await
    }

    /// [`LocalVault::open`] with options.
    pub async fn open_with(
        dir_or_file: impl AsRef<Path>,
        provider: Arc<dyn KeyProvider>,
        options: LocalVaultOptions,
    ) -> Result<LocalVault> {
        Self::open_db(database_path(dir_or_file), provider, options).await
    }

    /// Opens the vault, creating it first if there is none.
    pub async fn open_or_create(
        dir_or_file: impl AsRef<Path>,
        provider: Arc<dyn KeyProvider>,
    ) -> Result<LocalVault> {
        let db = database_path(dir_or_file);
        if db.exists() {
            return Self::open_db(db, provider, LocalVaultOptions::default()).await;
        }
        match Self::create_with(&db, provider.clone(), LocalVaultOptions::default()).await {
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                Self::open_db(db, provider, LocalVaultOptions::default()).await
            }
            other => other,
        }
    }

    async fn open_db(
        db: PathBuf,
        provider: Arc<dyn KeyProvider>,
        options: LocalVaultOptions,
    ) -> Result<LocalVault> {
        if options.namespace_depth == 0 {
            return Err(Error::config("namespace_depth must be at least 1"));
        }
        schema::check_mode(&db, "local vault file")?;
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        schema::check_mode(Path::new(&wal), "local vault journal")?;
        schema::check_header(&db)?;
        let judged = open_connection(&db, options.busy_timeout, false).and_then(|conn| {
            schema::check_structure(&conn, false)?;
            let version = schema::stored_version(&conn)?;
            Ok((conn, version))
        });
        let (mut conn, version) = judged.map_err(|e| match e.kind() {
            ErrorKind::Integrity => schema::truncation(&db).unwrap_or(e),
            _ => e,
        })?;
        schema::check_version(version)?;
        if version == 0 {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!("{} is an empty database, not a sealbox vault", db.display()),
            ));
        }
        if version < SCHEMA_VERSION {
            let _lock = FileLock::acquire(&db)?;
            schema::migrate(&mut conn, SCHEMA_VERSION, "")?;
        }
        schema::check_tables(&conn)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(|e| sql_error("reading the journal mode", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
                .map_err(|e| sql_error("enabling WAL", e))?;
        }
        let (store_id, epoch): (String, String) = conn
            .query_row(
                "SELECT (SELECT value FROM meta WHERE key = 'store_id'), \
                        (SELECT value FROM meta WHERE key = 'key_epoch')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| sql_error("reading the vault identity", e))?;
        let counter = Counter::open(provider.as_ref(), &store_id, || rollback::stored(&conn))?;
        drop(conn);
        let counter = match counter {
            Opened::Ok(counter) => counter,
            Opened::Behind { count, recorded } if options.allow_rollback => {
                Counter::behind(&store_id, count, recorded)
            }
            Opened::Behind { count, recorded } => {
                return Err(rollback::behind_error(&db, count, recorded));
            }
        };
        let pool = Arc::new(Pool::new(db, options.busy_timeout));
        let storage = Arc::new(SqliteKeyStorage::new(pool.clone()));
        // Namespace keys are named by this vault's id, so vaults sharing one key file never
        // share one (and a backup, which keeps the id, needs the same one).
        let keyring = Keyring::open_scoped(provider, storage, &store_id).await?;
        let vault = LocalVault {
            inner: Arc::new(Inner {
                pool,
                keyring,
                store_id,
                options,
                deks: Mutex::new(HashMap::new()),
                dek_capacity: memory::keys_within_budget(
                    DataKey::locked_footprint(),
                    DEK_CACHE_SHARE,
                    DEK_CACHE_MAX,
                ),
                epoch: AtomicI64::new(epoch.parse().unwrap_or(0)),
                counter,
            }),
        };
        vault.check_keys().await?;
        vault.bind_namespace_keys_if_due().await;
        vault.purge_if_due().await;
        Ok(vault)
    }

    /// The one-time upgrade of a vault made before namespace keys: when the master key
    /// provider holds namespace keys (the local key file) and some KEK is still wrapped by the
    /// master key alone, every such KEK is rewrapped under its namespace key. From then on an
    /// erasure reaches copies of the vault taken after the upgrade; copies taken before it
    /// still hold the old master-only wraps (see `erase_namespace`). A failure is logged,
    /// not fatal: the vault is usable and the next open tries again.
    async fn bind_namespace_keys_if_due(&self) {
        let outcome = async {
            if self.inner.keyring.unbound_keks()? == 0 {
                return Ok(0);
            }
            let _lock = FileLock::acquire(self.path())?;
            let n = self.inner.keyring.bind_namespace_keys().await?;
            self.clear_key_caches();
            checkpoint(&self.inner.pool)?;
            Ok::<_, Error>(n)
        }
        .await;
        match outcome {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                target: "sealbox::local",
                keks = n,
                "bound the vault's namespace keys (KEKs) to namespace keys in the key file"
            ),
            Err(e) => tracing::warn!(
                target: "sealbox::local",
                error = %e,
                "could not bind namespace KEKs to namespace keys on open; erasing a \
                 namespace will not reach vault backups until this succeeds"
            ),
        }
    }

    /// Purges the secrets whose recovery window has passed: their rows, versions and wrapped
    /// DEK are deleted (and overwritten on disk: `secure_delete`). Deleting a secret purges
    /// too, and so does opening the vault, so a deleted secret outlives its window only while
    /// no process opens the vault or deletes from it; a long-running service can call this
    /// on a timer. Returns how many secrets were purged.
    pub async fn purge_deleted(&self) -> Result<u64> {
        let purged = write_tx(&self.inner, "purging deleted secrets", |tx| {
            purge_due(tx, now_ms())
        })
        .await? as u64;
        if purged > 0 {
            self.forget_deks();
            // The purged rows are zeroed in the pages (`secure_delete`); the WAL still holds
            // frames written before, with the wrapped DEKs and values.
            let inner = self.inner.clone();
            blocking(move || checkpoint(&inner.pool)).await?;
        }
        Ok(purged)
    }

    /// The purge on open: a read first, so that opening takes the write lock only when a
    /// recovery window has passed. A failure is logged, not fatal: the vault is usable, and
    /// the next delete or open purges.
    async fn purge_if_due(&self) {
        let due = self.inner.pool.get().and_then(|conn| {
            conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM secrets WHERE purge_at IS NOT NULL AND purge_at <= ?1)",
                [now_ms()],
                |r| r.get::<_, bool>(0),
            )
            .map_err(|e| sql_error("looking for secrets to purge", e))
        });
        let outcome = match due {
            Ok(true) => self.purge_deleted().await.map(drop),
            Ok(false) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            tracing::warn!(
                target: "sealbox::local",
                error = %e,
                "could not purge deleted secrets past their recovery window on open"
            );
        }
    }

    /// Key check on open: the current KEK of one live namespace must unwrap under the master
    /// key, so a wrong provider fails now (`WrongKey`) rather than on the first read.
    async fn check_keys(&self) -> Result<()> {
        let conn = self.inner.pool.get()?;
        let ns: Option<String> = conn
            .query_row(
                "SELECT namespace FROM secrets WHERE purge_at IS NULL LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| sql_error("reading a namespace", e))?;
        drop(conn);
        let Some(ns) = ns else { return Ok(()) };
        let ns = KeyId::new(ns)
            .map_err(|_| Error::new(ErrorKind::Integrity, "stored namespace is invalid"))?;
        match self.inner.keyring.namespace_keys(&ns)? {
            Some(record) if record.current().is_some() => {
                match self.inner.keyring.current_kek(&ns).await {
                    // A copy of the vault taken before that namespace was erased: its key is
                    // gone from the key file, the rest of the copy stays readable.
                    Err(e) if e.kind() == ErrorKind::KeyDestroyed => Ok(()),
                    other => other.map(drop),
                }
            }
            _ => Ok(()),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.inner.pool.path()
    }

    /// This vault's random id (bound into every value's AAD).
    pub fn store_id(&self) -> &str {
        &self.inner.store_id
    }

    /// How many unwrapped DEKs this handle keeps cached at most: as many as fit in a quarter
    /// of `RLIMIT_MEMLOCK` (DEKs are always locked, about 1 KiB each), at most 4096. Beyond it,
    /// a read unwraps its DEK again.
    pub fn dek_cache_capacity(&self) -> usize {
        self.inner.dek_capacity
    }

    /// The keyring (for callers that need key metadata).
    pub fn keyring(&self) -> &Keyring {
        &self.inner.keyring
    }

    /// The namespace of `name` under this vault's `namespace_depth`.
    pub fn namespace_of(&self, name: &SecretName) -> Result<KeyId> {
        let depth = self.inner.options.namespace_depth;
        let ns: Vec<&str> = name.as_str().split('/').take(depth).collect();
        KeyId::new(ns.join("/")).map_err(|_| {
            Error::invalid_input(format!(
                "secret {name}: its namespace cannot name a key (use letters, digits and ._-:@+)"
            ))
        })
    }

    fn refresh_epoch(&self, epoch: i64) {
        if self.inner.epoch.swap(epoch, Ordering::AcqRel) != epoch {
            self.clear_key_caches();
        }
    }

    fn clear_key_caches(&self) {
        self.forget_deks();
        self.inner.keyring.clear_cache();
    }

    /// Drops every cached DEK (their key schedules leave locked memory).
    fn forget_deks(&self) {
        if let Ok(mut deks) = self.inner.deks.lock() {
            deks.clear();
        }
    }

    /// A new DEK for a new secret; like a read, it makes room in locked memory by dropping
    /// the cached DEKs when the budget is spent, rather than fail.
    async fn new_dek(&self, namespace: &KeyId, dek_id: KeyId) -> Result<(DataKey, WrappedDek)> {
        match self.inner.keyring.new_dek(namespace, dek_id.clone()).await {
            Err(e) if e.kind() == ErrorKind::MemoryLock => {
                self.forget_deks();
                self.inner.keyring.new_dek(namespace, dek_id).await
            }
            other => other,
        }
    }

    /// The DEK of secret `id`, from the cache when its wrapped bytes are unchanged.
    async fn dek(
        &self,
        id: i64,
        namespace: &KeyId,
        wrapped_bytes: &[u8],
    ) -> Result<(Arc<DataKey>, WrappedDek)> {
        let wrapped = WrappedDek::from_bytes(wrapped_bytes)?;
        if let Ok(deks) = self.inner.deks.lock()
            && let Some((bytes, dek)) = deks.get(&id)
            && bytes.as_slice() == wrapped_bytes
        {
            return Ok((dek.clone(), wrapped));
        }
        let dek = match self.inner.keyring.unwrap_dek(namespace, &wrapped).await {
            // Keys are never left unlocked: make room by dropping the cached ones, then retry.
            Err(e) if e.kind() == ErrorKind::MemoryLock => {
                self.forget_deks();
                self.inner.keyring.unwrap_dek(namespace, &wrapped).await
            }
            other => other,
        };
        let dek = dek.map_err(|e| match e.kind() {
            // The secret's row holds a DEK wrapped under this namespace's KEK, so its key
            // record existed: it was deleted from the vault since.
            ErrorKind::NotFound => Error::new(
                ErrorKind::Integrity,
                format!(
                    "local vault: namespace {namespace} has no key record although its \
                         secrets hold keys wrapped under it: the key records were altered; \
                         restore the vault from a backup"
                ),
            ),
            _ => e,
        })?;
        let dek = Arc::new(dek);
        if let Ok(mut deks) = self.inner.deks.lock() {
            let entry = (wrapped_bytes.to_vec(), dek.clone());
            cache_dek(&mut deks, self.inner.dek_capacity, id, entry);
        }
        Ok((dek, wrapped))
    }

    /// Decrypts every version of every secret and runs SQLite's full `integrity_check`.
    /// Structural damage is an `Integrity` error; per-version failures are listed in the
    /// report.
    pub async fn verify(&self) -> Result<VerifyReport> {
        let provider = self.inner.keyring.provider().clone();
        // Record this handle's writes first, so that the comparison below is up to date, and
        // read the recorded counter before the vault's (see `Counter::open`).
        if let Err(e) = self.inner.counter.publish(provider.as_ref()) {
            tracing::warn!(
                target: "sealbox::local",
                error = %e,
                "could not record the vault's write counter in the key file"
            );
        }
        let recorded = provider.store_counter(&self.inner.store_id)?;
        let (rows, write_count, is_backup) = {
            let conn = self.inner.pool.get()?;
            schema::check_structure(&conn, true)?;
            let write_count = rollback::stored(&conn)?;
            let is_backup = rollback::is_backup(&conn)?;
            let mut stmt = conn
                .prepare(
                    "SELECT s.id, s.name, s.namespace, s.dek, v.version, v.envelope \
                     FROM secrets s JOIN versions v ON v.secret_id = s.id \
                     ORDER BY s.id, v.version",
                )
                .map_err(|e| sql_error("reading versions", e))?;
            let rows: Vec<VerifyRow> = stmt
                .query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })
                .and_then(|rows| rows.collect())
                .map_err(|e| sql_error("reading versions", e))?;
            (rows, write_count, is_backup)
        };
        self.clear_key_caches();
        let mut report = VerifyReport {
            rollback_detection: self.inner.counter.detection,
            write_count,
            writes_behind: recorded.map_or(0, |r| r.saturating_sub(write_count)),
            is_backup,
            ..VerifyReport::default()
        };
        let mut last_secret = None;
        let mut dek: Option<std::result::Result<(Arc<DataKey>, WrappedDek), Error>> = None;
        for (id, name, ns, dek_bytes, version, envelope) in rows {
            if last_secret != Some(id) {
                last_secret = Some(id);
                report.secrets += 1;
                dek = Some(match KeyId::new(ns.clone()) {
                    Ok(ns) => self.dek(id, &ns, &dek_bytes).await,
                    Err(_) => Err(Error::new(
                        ErrorKind::Integrity,
                        "stored namespace is invalid",
                    )),
                });
                if let Some(Err(e)) = &dek
                    && e.kind() != ErrorKind::KeyDestroyed
                {
                    report.failures.push(VerifyFailure {
                        name: name.clone(),
                        version: None,
                        kind: e.kind(),
                        message: e.message().to_owned(),
                    });
                }
            }
            match &dek {
                Some(Ok((key, wrapped))) => {
                    let aad = value_aad(&self.inner.store_id, &ns, &name, version, wrapped);
                    match open_value(key, &aad, &envelope) {
                        Ok(_) => report.versions_ok += 1,
                        Err(e) => report.failures.push(VerifyFailure {
                            name: name.clone(),
                            version: Some(version),
                            kind: e.kind(),
                            message: e.message().to_owned(),
                        }),
                    }
                }
                Some(Err(e)) if e.kind() == ErrorKind::KeyDestroyed => {
                    report.versions_shredded += 1;
                }
                _ => {}
            }
        }
        Ok(report)
    }

    /// Master-key rotation: the provider makes a new master version and every KEK is
    /// rewrapped under it. Values and DEKs are untouched. Returns the new master version.
    pub async fn rotate_master(&self) -> Result<KeyVersion> {
        let _lock = FileLock::acquire(self.path())?;
        let version = self.inner.keyring.rotate_master().await?;
        self.clear_key_caches();
        self.rewrap_audit_chain_key().await?;
        Ok(version)
    }

    /// Master retirement: every KEK of this vault is rewrapped under the current master
    /// version (bound to its namespace key), checked, and then every older master version is
    /// removed from the key provider for good (the local key file is rewritten without them;
    /// [`Keyring::retire_master`]). Afterwards the current key material opens nothing wrapped
    /// under a retired version: not this vault's old WAL frames, not a backup taken before.
    /// A copy of the old key file still does, with such a backup. When several vaults share
    /// the key file, rewrap each (`rotate_master` or open it after the rotation) first.
    /// `Unsupported` for providers that cannot retire (passphrase, environment, KMS).
    pub async fn retire_master(&self) -> Result<crate::keys::MasterRetirement> {
        let _lock = FileLock::acquire(self.path())?;
        // The audit chain key must not stay under a version about to be removed.
        self.rewrap_audit_chain_key().await?;
        let retired = self.inner.keyring.retire_master().await;
        self.clear_key_caches();
        let retired = retired?;
        let inner = self.inner.clone();
        blocking(move || checkpoint(&inner.pool)).await?;
        Ok(retired)
    }

    /// KEK rotation for `namespace`: a new KEK version, then every secret of the namespace gets
    /// a fresh DEK wrapped under it and its versions are re-encrypted (see
    /// [`LocalVault::rotate_dek`]); a DEK is never merely rewrapped, so a DEK or KEK taken from
    /// an older copy of the vault opens nothing written by this rotation. Old KEK versions stay
    /// (unused) until [`LocalVault::retire_keks`] destroys them. A namespace nothing was ever
    /// written to has no KEK to rotate: `NotFound` (a typo must not create keys).
    pub async fn rotate_kek(&self, namespace: &str) -> Result<KekRotation> {
        let ns = KeyId::new(namespace)?;
        let _lock = FileLock::acquire(self.path())?;
        if self.inner.keyring.namespace_keys(&ns)?.is_none() {
            return Err(Error::not_found(format!(
                "namespace {namespace} has no keys: nothing was written to it"
            )));
        }
        let version = self.inner.keyring.rotate_kek(&ns).await?;
        let deks_rotated = self.rotate_namespace_deks(&ns).await;
        self.clear_key_caches();
        Ok(KekRotation {
            version,
            deks_rotated: deks_rotated?,
        })
    }

    /// Crypto-shreds `namespace`: destroys its namespace key in the master key provider (the
    /// local key file holds one per namespace), then every KEK version stored in this vault,
    /// then deletes its rows, and checkpoints the WAL (`TRUNCATE`) so that no old frame keeps
    /// a wrapped KEK; deleted pages are zeroed (`secure_delete`). Other namespaces are
    /// untouched. Idempotent: re-running completes an interrupted erasure.
    ///
    /// What it reaches, as [`Erasure::backups_covered`] reports it:
    /// - with the local key file, a copy of the vault taken before the erase (a backup, a
    ///   copied WAL) cannot read the namespace with the current key file (`KeyDestroyed`),
    ///   and the copy's other namespaces stay readable. A copy of the key file taken before
    ///   the erase, together with such a vault copy, still reads it: keep key file backups
    ///   apart and rotate them out. KEKs of a vault made before namespace keys are bound to
    ///   them on its first open by this version; copies taken before that open are not
    ///   covered.
    /// - with a provider that holds no namespace keys (passphrase, environment, KMS) only
    ///   this file is covered: a copy taken before, with the master key, still reads the
    ///   namespace, and `backups_covered` is false.
    ///
    /// Errors: `NotFound` when the namespace has no keys and no secrets.
    pub async fn erase_namespace(&self, namespace: &str) -> Result<Erasure> {
        let ns = KeyId::new(namespace)?;
        self.inner.counter.check_writable()?;
        let _lock = FileLock::acquire(self.path())?;
        // Also when the vault holds no key record: the provider may still hold the
        // namespace's key (an interrupted erasure), which a backup's record would need.
        let shred = match self.inner.keyring.shred_namespace(&ns).await {
            Ok(s) => Some(s),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let has_keys = shred.is_some();
        self.clear_key_caches();
        let inner = self.inner.clone();
        let owned = namespace.to_owned();
        let erased = blocking(move || {
            let mut conn = inner.pool.get()?;
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| sql_error("erasing a namespace", e))?;
            let n = tx
                .execute("DELETE FROM secrets WHERE namespace = ?1", [&owned])
                .map_err(|e| sql_error("erasing a namespace", e))? as u64;
            let count = rollback::bump(&tx)?;
            tx.commit()
                .map_err(|e| sql_error("erasing a namespace", e))?;
            inner
                .counter
                .committed(inner.keyring.provider().as_ref(), count);
            drop(conn);
            checkpoint(&inner.pool)?;
            Ok(n)
        })
        .await?;
        if !has_keys && erased == 0 {
            return Err(Error::not_found(format!(
                "namespace {namespace} has no keys and no secrets"
            )));
        }
        Ok(Erasure {
            namespace: namespace.to_owned(),
            secrets_erased: erased,
            key_versions_destroyed: shred.map_or(0, |s| s.kek_versions_destroyed as u64),
            provider_key_destroyed: shred.is_some_and(|s| s.provider_key_destroyed),
            backups_covered: shred.is_some_and(|s| s.reaches_copies),
        })
    }

    /// Bulk import of new secrets in one transaction: each gets its own DEK and version 1,
    /// staged `CURRENT`. All or nothing: if any name already exists the import fails with
    /// `AlreadyExists` and writes nothing. Returns how many secrets were written.
    pub async fn import(&self, items: Vec<(SecretName, Secret)>) -> Result<u64> {
        let max = self.inner.options.max_value_len;
        let now = now_ms();
        let mut rows = Vec::with_capacity(items.len());
        for (name, value) in &items {
            if value.len() > max {
                return Err(Error::invalid_input(format!(
                    "secret {name}: value of {} bytes exceeds the local vault's limit of {max}",
                    value.len()
                )));
            }
            let ns = self.namespace_of(name)?;
            self.fresh_kek(&ns).await?;
            let dek_id = KeyId::new(format!("dek:{}", random_hex(12)?))?;
            let (dek, wrapped) = self.new_dek(&ns, dek_id).await?;
            let aad = value_aad(
                &self.inner.store_id,
                ns.as_str(),
                name.as_str(),
                1,
                &wrapped,
            );
            let envelope = Envelope::seal(&dek, &aad, value.expose_secret())?;
            rows.push((
                name.as_str().to_owned(),
                ns.as_str().to_owned(),
                wrapped.to_bytes(),
                envelope,
                wrapped.kek_version(),
            ));
        }
        drop(items);
        let kek_limit = self.kek_limit();
        write_tx(&self.inner, "importing secrets", move |tx| {
            let err = |e| sql_error("importing secrets", e);
            let mut secret = tx
                .prepare(
                    "INSERT INTO secrets (name, namespace, dek, next_version, created, updated, \
                     dek_created, dek_uses) VALUES (?1, ?2, ?3, 2, ?4, ?4, ?4, 1)",
                )
                .map_err(err)?;
            let mut version = tx
                .prepare("INSERT INTO versions (secret_id, version, envelope, created) VALUES (?1, 1, ?2, ?3)")
                .map_err(err)?;
            let mut stage = tx
                .prepare("INSERT INTO stages (secret_id, stage, version) VALUES (?1, 'CURRENT', 1)")
                .map_err(err)?;
            for (name, ns, dek, envelope, kek_version) in &rows {
                count_kek_uses(tx, ns, *kek_version, 1, kek_limit)?;
                match secret.execute(params![name, ns, dek, now]) {
                    Ok(_) => {}
                    Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
                        return Err(Error::new(
                            ErrorKind::AlreadyExists,
                            format!("secret {name} already exists; nothing was imported"),
                        ));
                    }
                    Err(e) => return Err(err(e)),
                }
                let id = tx.last_insert_rowid();
                version.execute(params![id, envelope, now]).map_err(err)?;
                stage.execute([id]).map_err(err)?;
            }
            Ok(rows.len() as u64)
        })
        .await
    }

    /// Writes a consistent copy of the vault to the new file `dest` through SQLite's online
    /// backup API, while this and other processes keep reading and writing: the copy holds
    /// every write committed before it started and none after. The file is created `0600`
    /// (`AlreadyExists` if anything, even a dangling symbolic link, is at `dest`), is one
    /// self-contained SQLite file, and is synced to disk before this returns. It keeps the
    /// vault's store id, so it opens and verifies with the same key material (and a namespace
    /// erased afterwards is unreadable in it too, see [`LocalVault::erase_namespace`]).
    pub async fn backup_to(&self, dest: impl AsRef<Path>) -> Result<BackupInfo> {
        let dest = dest.as_ref().to_path_buf();
        let pool = self.inner.pool.clone();
        blocking(move || backup::backup(&pool, &dest)).await
    }

    /// Puts the backup `backup` in place as the vault at `dir_or_file`, on purpose: the one
    /// way to go back to an older copy without tripping rollback detection. The backup (any
    /// copy of this vault: same store id) is first opened and verified with `provider`, every
    /// version decrypted and authenticated; then it is copied over the vault file through
    /// SQLite's backup API (under the vault's lock file; other processes should be stopped,
    /// their later writes would be lost), and the write counter recorded in the key provider
    /// is reset to the backup's. Refuses a backup of another vault (`InvalidInput`) and one
    /// that fails verification (`Integrity`).
    pub async fn restore_backup(
        dir_or_file: impl AsRef<Path>,
        backup: impl AsRef<Path>,
        provider: Arc<dyn KeyProvider>,
        options: LocalVaultOptions,
    ) -> Result<RestoreInfo> {
        let db = database_path(dir_or_file);
        let source = LocalVault::open_with(
            backup.as_ref(),
            provider.clone(),
            LocalVaultOptions {
                allow_rollback: true,
                ..options.clone()
            },
        )
        .await?;
        let report = source.verify().await?;
        if let Some(first) = report.failures.first() {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!(
                    "backup {} fails verification ({} item(s), first {}: {}); nothing was restored",
                    backup.as_ref().display(),
                    report.failures.len(),
                    first.name,
                    first.message
                ),
            ));
        }
        let store_id = source.store_id().to_owned();
        // A damaged vault file (the reason to restore) has no readable id: restore over it.
        if db.exists()
            && let Some(live) = backup::store_id_of(&db).ok().flatten()
            && live != store_id
        {
            return Err(Error::invalid_input(format!(
                "{} is a backup of another vault (store {store_id}, not {live}); nothing                      was restored",
                backup.as_ref().display()
            )));
        }
        let recorded = provider.store_counter(&store_id)?.unwrap_or(0);
        let _lock = FileLock::acquire(&db)?;
        let pool = source.inner.pool.clone();
        let (target, busy) = (db.clone(), options.busy_timeout);
        let count = blocking(move || backup::copy_over(&pool, &target, busy)).await?;
        provider.record_store_counter(&store_id, count, true)?;
        Ok(RestoreInfo {
            vault: db,
            store_id,
            write_count: count,
            writes_discarded: recorded.saturating_sub(count),
            secrets: report.secrets,
            versions: report.versions_ok,
        })
    }

    /// Bytes the vault occupies on disk (database file plus write-ahead log).
    pub fn disk_usage(&self) -> Result<u64> {
        let db = self.path();
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        let size = |p: &Path| fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        Ok(size(db) + size(Path::new(&wal)))
    }

    /// Drops idle database connections (they reopen on demand).
    pub fn close_idle(&self) {
        self.inner.pool.clear();
    }
}

/// Copies every WAL frame into the database and truncates the WAL to zero bytes, so frames
/// holding rows deleted since (a wrapped KEK, a DEK, a value) are gone from the journal.
/// `Unavailable` when another connection's read kept the checkpoint from finishing: the old
/// frames then stay until a later checkpoint, and the caller is told.
fn checkpoint(pool: &Arc<Pool>) -> Result<()> {
    let conn = pool.get()?;
    let (busy, _log, _done): (i64, i64, i64) = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .map_err(|e| sql_error("checkpointing the journal", e))?;
    if busy != 0 {
        return Err(Error::new(
            ErrorKind::Unavailable,
            "the change is committed, but another reader kept the journal (WAL) from being \
             truncated, so it may still hold the deleted keys; run the command again when \
             readers are idle",
        ));
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| Error::internal("local vault write task panicked or was cancelled"))?
}

/// One row read for `get`.
struct Row {
    secret_id: i64,
    namespace: String,
    dek: Vec<u8>,
    version: i64,
    envelope: Vec<u8>,
    created: i64,
    stages: Option<String>,
    epoch: String,
}

const GET_BY_STAGE: &str = "SELECT s.id, s.namespace, s.dek, v.version, v.envelope, v.created, \
    (SELECT group_concat(stage, ',') FROM stages WHERE secret_id = s.id AND version = v.version), \
    (SELECT value FROM meta WHERE key = 'key_epoch') \
    FROM secrets s \
    JOIN stages st ON st.secret_id = s.id AND st.stage = ?2 \
    JOIN versions v ON v.secret_id = s.id AND v.version = st.version \
    WHERE s.name = ?1 AND s.purge_at IS NULL";

const GET_BY_VERSION: &str = "SELECT s.id, s.namespace, s.dek, v.version, v.envelope, v.created, \
    (SELECT group_concat(stage, ',') FROM stages WHERE secret_id = s.id AND version = v.version), \
    (SELECT value FROM meta WHERE key = 'key_epoch') \
    FROM secrets s \
    JOIN versions v ON v.secret_id = s.id AND v.version = ?2 \
    WHERE s.name = ?1 AND s.purge_at IS NULL";

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        secret_id: r.get(0)?,
        namespace: r.get(1)?,
        dek: r.get(2)?,
        version: r.get(3)?,
        envelope: r.get(4)?,
        created: r.get(5)?,
        stages: r.get(6)?,
        epoch: r.get(7)?,
    })
}

/// A secret's row as a write reads it: id, wrapped DEK, next version, purge time, DEK uses.
type SecretHead = (i64, Vec<u8>, i64, Option<i64>, i64);

/// What a write transaction needs; owned so it can move to a blocking thread.
struct WriteRequest {
    name: SecretName,
    namespace: String,
    store_id: String,
    dek: Arc<DataKey>,
    wrapped: WrappedDek,
    wrapped_bytes: Vec<u8>,
    /// True when `wrapped` is a fresh DEK for a secret that did not exist at read time.
    creating: bool,
    /// Most values the DEK may encrypt (`LocalVaultOptions::dek_max_uses`).
    dek_limit: u64,
    /// Most DEKs the KEK may wrap (`LocalVaultOptions::kek_max_uses`).
    kek_limit: u64,
    value: Secret,
    options: PutOptions,
}

enum WriteOutcome {
    /// Written (with the vault's new write counter), or answered from an earlier attempt.
    Done(VersionInfo, Option<u64>),
    /// The optimistic read was stale (secret created or DEK changed meanwhile).
    Retry,
}

fn current_version(tx: &Connection, secret_id: i64) -> Result<Option<i64>> {
    tx.prepare_cached("SELECT version FROM stages WHERE secret_id = ?1 AND stage = 'CURRENT'")
        .and_then(|mut s| s.query_row([secret_id], |r| r.get(0)).optional())
        .map_err(|e| sql_error("reading the current version", e))
}

fn stages_of(tx: &Connection, secret_id: i64, version: i64) -> Result<Vec<Stage>> {
    let csv: Option<String> = tx
        .prepare_cached(
            "SELECT group_concat(stage, ',') FROM stages WHERE secret_id = ?1 AND version = ?2",
        )
        .and_then(|mut s| s.query_row([secret_id, version], |r| r.get(0)))
        .map_err(|e| sql_error("reading stages", e))?;
    Ok(parse_stages(csv))
}

/// Puts `stage` on `version`; moving CURRENT pushes the old current version to PREVIOUS.
/// Returns whether CURRENT moved.
fn move_stage(tx: &Connection, secret_id: i64, stage: &Stage, version: i64) -> Result<bool> {
    let err = |e| sql_error("moving a stage", e);
    let old: Option<i64> = tx
        .prepare_cached("SELECT version FROM stages WHERE secret_id = ?1 AND stage = ?2")
        .and_then(|mut s| {
            s.query_row(params![secret_id, stage.as_str()], |r| r.get(0))
                .optional()
        })
        .map_err(err)?;
    if old == Some(version) {
        return Ok(false);
    }
    if *stage == Stage::Current
        && let Some(old) = old
    {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO stages (secret_id, stage, version) VALUES (?1, 'PREVIOUS', ?2)",
        )
        .and_then(|mut s| s.execute([secret_id, old]))
        .map_err(err)?;
    }
    tx.prepare_cached(
        "INSERT OR REPLACE INTO stages (secret_id, stage, version) VALUES (?1, ?2, ?3)",
    )
    .and_then(|mut s| s.execute(params![secret_id, stage.as_str(), version]))
    .map_err(err)?;
    Ok(*stage == Stage::Current && old.is_some())
}

fn write_version(conn: &mut Connection, req: WriteRequest) -> Result<WriteOutcome> {
    let err = |e| sql_error("writing a version", e);
    let now = now_ms();
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let name = req.name.as_str();
    let row: Option<SecretHead> = tx
        .prepare_cached(
            "SELECT id, dek, next_version, purge_at, dek_uses FROM secrets WHERE name = ?1",
        )
        .and_then(|mut s| {
            s.query_row([name], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .optional()
        })
        .map_err(err)?;
    let (secret_id, version, current) = match (row, req.creating) {
        (None, true) => {
            if let Some(Some(_)) = &req.options.expected_current {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "secret {name} does not exist, so its current version is not the expected one"
                    ),
                ));
            }
            // The new DEK's use is counted below with the other writes; its KEK's use here, in
            // the transaction that stores the wrapped DEK.
            match count_kek_uses(
                &tx,
                &req.namespace,
                req.wrapped.kek_version(),
                1,
                req.kek_limit,
            ) {
                Err(e) if e.kind() == ErrorKind::Conflict => return Ok(WriteOutcome::Retry),
                other => other?,
            };
            tx.prepare_cached(
                "INSERT INTO secrets (name, namespace, dek, next_version, created, updated, \
                 dek_created, dek_uses) VALUES (?1, ?2, ?3, 1, ?4, ?4, ?4, 0)",
            )
            .and_then(|mut s| s.execute(params![name, req.namespace, req.wrapped_bytes, now]))
            .map_err(err)?;
            (tx.last_insert_rowid(), 1, None)
        }
        (Some((id, dek, next, purge_at, dek_uses)), false) if dek == req.wrapped_bytes => {
            if purge_at.is_some() {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("secret {name} is deleted; restore it before writing"),
                ));
            }
            // A retried put answers with the version its first attempt created, even when
            // CURRENT has moved since: only the reply was lost.
            if let Some(token) = &req.options.idempotency_token {
                let earlier: Option<(i64, Vec<u8>, i64)> = tx
                    .prepare_cached(
                        "SELECT version, envelope, created FROM versions WHERE secret_id = ?1 AND token = ?2",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![id, token], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                            .optional()
                    })
                    .map_err(err)?;
                if let Some((v, envelope, created)) = earlier {
                    let aad = value_aad(&req.store_id, &req.namespace, name, v, &req.wrapped);
                    let stored = open_value(&req.dek, &aad, &envelope)?;
                    if !stored.ct_eq(&req.value) {
                        return Err(Error::new(
                            ErrorKind::Conflict,
                            format!(
                                "secret {name}: idempotency token reused with a different value"
                            ),
                        ));
                    }
                    return Ok(WriteOutcome::Done(
                        VersionInfo {
                            version: VersionId::from(v),
                            stages: stages_of(&tx, id, v)?,
                            created: Some(to_time(created)),
                        },
                        None,
                    ));
                }
            }
            // Checked in the write transaction, against the count every process shares.
            if dek_uses.max(0) as u64 >= req.dek_limit {
                return Err(Error::new(
                    ErrorKind::KeyExhausted,
                    format!(
                        "secret {name}: its data key has encrypted {dek_uses} values, its limit \
                         of {}, and could not be rotated automatically; run `sealbox keys \
                         rotate --secret {name}` or raise the limit (nothing was written)",
                        req.dek_limit
                    ),
                ));
            }
            (id, next, current_version(&tx, id)?)
        }
        _ => return Ok(WriteOutcome::Retry),
    };
    if let Some(expected) = &req.options.expected_current {
        let expected = expected.as_ref().map(|v| parse_version(v).unwrap_or(-1));
        if expected != current {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("secret {name}: current version is not the expected one"),
            ));
        }
    }
    let aad = value_aad(&req.store_id, &req.namespace, name, version, &req.wrapped);
    let envelope = Envelope::seal(&req.dek, &aad, req.value.expose_secret())?;
    tx.prepare_cached(
        "INSERT INTO versions (secret_id, version, envelope, created, token) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| {
        s.execute(params![secret_id, version, envelope, now, req.options.idempotency_token])
    })
    .map_err(err)?;
    let mut stages = req.options.stages.clone();
    // The first version of a secret is always CURRENT, whatever stages were asked for.
    if current.is_none() && !stages.contains(&Stage::Current) {
        stages.push(Stage::Current);
    }
    let mut rotated = false;
    for stage in &stages {
        rotated |= move_stage(&tx, secret_id, stage, version)?;
    }
    let tags: Option<String> = if req.options.tags.is_empty() {
        None
    } else {
        let stored: String = tx
            .prepare_cached("SELECT tags FROM secrets WHERE id = ?1")
            .and_then(|mut s| s.query_row([secret_id], |r| r.get(0)))
            .map_err(err)?;
        let mut merged: BTreeMap<String, String> =
            serde_json::from_str(&stored).unwrap_or_default();
        merged.extend(req.options.tags.clone());
        Some(serde_json::to_string(&merged).map_err(|_| Error::internal("tags do not serialise"))?)
    };
    tx.prepare_cached(
        "UPDATE secrets SET next_version = ?2, updated = ?3, dek_uses = dek_uses + 1, \
         last_rotated = CASE WHEN ?4 THEN ?3 ELSE last_rotated END, \
         description = COALESCE(?5, description), tags = COALESCE(?6, tags) WHERE id = ?1",
    )
    .and_then(|mut s| {
        s.execute(params![
            secret_id,
            version + 1,
            now,
            rotated,
            req.options.description,
            tags
        ])
    })
    .map_err(err)?;
    let stages = stages_of(&tx, secret_id, version)?;
    let count = rollback::bump(&tx)?;
    tx.commit().map_err(err)?;
    Ok(WriteOutcome::Done(
        VersionInfo {
            version: VersionId::from(version),
            stages,
            created: Some(to_time(now)),
        },
        Some(count),
    ))
}

/// Runs `f` in a write transaction on a blocking thread.
async fn write_tx<T: Send + 'static>(
    inner: &Arc<Inner>,
    context: &'static str,
    f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T> + Send + 'static,
) -> Result<T> {
    inner.counter.check_writable()?;
    let inner = inner.clone();
    blocking(move || {
        let mut conn = inner.pool.get()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| sql_error(context, e))?;
        let out = f(&tx)?;
        let count = rollback::bump(&tx)?;
        tx.commit().map_err(|e| sql_error(context, e))?;
        inner
            .counter
            .committed(inner.keyring.provider().as_ref(), count);
        Ok(out)
    })
    .await
}

#[async_trait]
impl SecretStore for LocalVault {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn audit_chain_key(&self) -> Result<Option<Secret>> {
        LocalVault::audit_chain_key(self).await.map(Some)
    }

    /// The vault at the same path, its master key provider reopened (a key file or a key
    /// variable is read again; a passphrase key cannot be and refuses).
    async fn reopen(&self) -> Result<Arc<dyn SecretStore>> {
        let provider = self.inner.keyring.provider().reopen().await?;
        let vault =
            LocalVault::open_with(self.path(), provider, self.inner.options.clone()).await?;
        Ok(Arc::new(vault))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_value_len: self.inner.options.max_value_len,
            ..Capabilities::FULL
        }
    }

    async fn get(&self, name: &SecretName, selector: &VersionSelector) -> Result<SecretVersion> {
        let row = {
            let conn = self.inner.pool.get()?;
            let result = match selector {
                VersionSelector::Current => conn.prepare_cached(GET_BY_STAGE).and_then(|mut s| {
                    s.query_row(params![name.as_str(), "CURRENT"], read_row)
                        .optional()
                }),
                VersionSelector::Stage(stage) => {
                    conn.prepare_cached(GET_BY_STAGE).and_then(|mut s| {
                        s.query_row(params![name.as_str(), stage.as_str()], read_row)
                            .optional()
                    })
                }
                VersionSelector::Version(id) => match parse_version(id) {
                    Some(v) => conn.prepare_cached(GET_BY_VERSION).and_then(|mut s| {
                        s.query_row(params![name.as_str(), v], read_row).optional()
                    }),
                    None => Ok(None),
                },
            };
            let row = result.map_err(|e| sql_error("reading a secret", e))?;
            match row {
                Some(row) => row,
                None => {
                    let exists: bool = conn
                        .prepare_cached(
                            "SELECT 1 FROM secrets WHERE name = ?1 AND purge_at IS NULL",
                        )
                        .and_then(|mut s| s.exists([name.as_str()]))
                        .map_err(|e| sql_error("reading a secret", e))?;
                    return Err(if exists {
                        Error::not_found(format!("secret {name} has no version {selector}"))
                    } else {
                        not_found(name)
                    });
                }
            }
        };
        self.refresh_epoch(row.epoch.parse().unwrap_or(-1));
        let ns = KeyId::new(row.namespace.as_str()).map_err(|_| {
            Error::new(
                ErrorKind::Integrity,
                format!("secret {name}: stored namespace is invalid"),
            )
        })?;
        let (dek, wrapped) = self.dek(row.secret_id, &ns, &row.dek).await?;
        let aad = value_aad(
            &self.inner.store_id,
            &row.namespace,
            name.as_str(),
            row.version,
            &wrapped,
        );
        let value = open_value(&dek, &aad, &row.envelope).map_err(|e| {
            Error::new(
                e.kind(),
                format!("secret {name} version {}: {}", row.version, e.message()),
            )
        })?;
        Ok(SecretVersion {
            value,
            version: VersionId::from(row.version),
            stages: parse_stages(row.stages),
            created: Some(to_time(row.created)),
        })
    }

    async fn put(
        &self,
        name: &SecretName,
        value: &Secret,
        options: &PutOptions,
    ) -> Result<VersionInfo> {
        let max = self.inner.options.max_value_len;
        if value.len() > max {
            return Err(Error::invalid_input(format!(
                "secret {name}: value of {} bytes exceeds the local vault's limit of {max}",
                value.len()
            )));
        }
        let ns = self.namespace_of(name)?;
        self.inner.counter.check_writable()?;
        let mut rotated = false;
        for _ in 0..WRITE_RETRIES {
            let existing: Option<(i64, Vec<u8>, i64, i64, bool)> = {
                let conn = self.inner.pool.get()?;
                conn.prepare_cached(
                    "SELECT id, dek, COALESCE(dek_created, created), dek_uses, \
                     purge_at IS NOT NULL FROM secrets WHERE name = ?1",
                )
                .and_then(|mut s| {
                    s.query_row([name.as_str()], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                    })
                    .optional()
                })
                .map_err(|e| sql_error("reading a secret", e))?
            };
            if let Some((id, _, dek_created, dek_uses, false)) = &existing
                && !rotated
                && self.inner.options.auto_rotate
                && self.dek_due(*dek_created, *dek_uses, SystemTime::now())
            {
                rotated = true;
                match self.rotate_secret(*id).await {
                    Ok(_) => continue,
                    // Too many versions to re-encrypt under one key: write with the old DEK
                    // while it has uses left (the write transaction enforces the limit).
                    Err(e) if e.kind() == ErrorKind::KeyExhausted => {}
                    Err(e) if e.kind() == ErrorKind::Conflict => continue,
                    Err(e) => return Err(e),
                }
            }
            let keys = match &existing {
                Some((id, bytes, ..)) => self
                    .dek(*id, &ns, bytes)
                    .await
                    .map(|(d, w)| (d, w, bytes.clone(), false)),
                None => match self.fresh_kek(&ns).await {
                    Ok(()) => {
                        let dek_id = KeyId::new(format!("dek:{}", random_hex(12)?))?;
                        self.new_dek(&ns, dek_id).await.map(|(d, w)| {
                            let bytes = w.to_bytes();
                            (Arc::new(d), w, bytes, true)
                        })
                    }
                    Err(e) => Err(e),
                },
            };
            let (dek, wrapped, wrapped_bytes, creating) = match keys {
                Ok(k) => k,
                // Another process created or rotated this namespace's KEK at the same time.
                Err(e) if e.kind() == ErrorKind::Conflict => {
                    self.clear_key_caches();
                    continue;
                }
                Err(e) => return Err(e),
            };
            let req = WriteRequest {
                name: name.clone(),
                namespace: ns.as_str().to_owned(),
                store_id: self.inner.store_id.clone(),
                dek,
                wrapped,
                wrapped_bytes,
                creating,
                dek_limit: self.dek_limit(),
                kek_limit: self.kek_limit(),
                value: value.try_clone()?,
                options: options.clone(),
            };
            let inner = self.inner.clone();
            match blocking(move || {
                let mut conn = inner.pool.get()?;
                let outcome = write_version(&mut conn, req)?;
                if let WriteOutcome::Done(_, Some(count)) = &outcome {
                    inner
                        .counter
                        .committed(inner.keyring.provider().as_ref(), *count);
                }
                Ok(outcome)
            })
            .await?
            {
                WriteOutcome::Done(info, _) => return Ok(info),
                WriteOutcome::Retry => continue,
            }
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            format!("secret {name}: too many concurrent changes; retry"),
        ))
    }

    async fn describe(&self, name: &SecretName) -> Result<SecretMetadata> {
        let conn = self.inner.pool.get()?;
        let err = |e| sql_error("describing a secret", e);
        type Head = (
            i64,
            i64,
            i64,
            Option<i64>,
            Option<String>,
            String,
            Option<i64>,
            Option<i64>,
        );
        let head: Option<Head> = conn
            .prepare_cached(
                "SELECT id, created, updated, last_rotated, description, tags, rotation_period, purge_at \
                 FROM secrets WHERE name = ?1",
            )
            .and_then(|mut s| {
                s.query_row([name.as_str()], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
                })
                .optional()
            })
            .map_err(err)?;
        let Some((
            id,
            created,
            updated,
            last_rotated,
            description,
            tags,
            rotation_period,
            purge_at,
        )) = head
        else {
            return Err(not_found(name));
        };
        if purge_at.is_some_and(|p| p <= now_ms()) {
            return Err(not_found(name));
        }
        let mut stages: HashMap<i64, Vec<Stage>> = HashMap::new();
        {
            let mut stmt = conn
                .prepare_cached("SELECT version, stage FROM stages WHERE secret_id = ?1")
                .map_err(err)?;
            let rows: Vec<(i64, String)> = stmt
                .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|rows| rows.collect())
                .map_err(err)?;
            for (v, s) in rows {
                if let Ok(s) = s.parse() {
                    stages.entry(v).or_default().push(s);
                }
            }
        }
        let mut stmt = conn
            .prepare_cached(
                "SELECT version, created FROM versions WHERE secret_id = ?1 ORDER BY version",
            )
            .map_err(err)?;
        let versions: Vec<(i64, i64)> = stmt
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(err)?;
        Ok(SecretMetadata {
            name: name.clone(),
            versions: versions
                .into_iter()
                .map(|(v, c)| {
                    let mut st = stages.remove(&v).unwrap_or_default();
                    st.sort();
                    VersionInfo {
                        version: VersionId::from(v),
                        stages: st,
                        created: Some(to_time(c)),
                    }
                })
                .collect(),
            created: Some(to_time(created)),
            updated: Some(to_time(updated)),
            last_rotated: last_rotated.map(to_time),
            description,
            tags: serde_json::from_str(&tags).unwrap_or_default(),
            rotation_period: rotation_period.map(|s| Duration::from_secs(s.max(0) as u64)),
            deleted: purge_at.map(to_time),
        })
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        let page_size = options
            .page_size
            .unwrap_or(listing::DEFAULT_PAGE)
            .clamp(1, 1000);
        let conn = self.inner.pool.get()?;
        // Names are ASCII below 0x7f, so `prefix..prefix\x7f` is exactly the prefix range.
        let upper = format!("{}\u{7f}", options.prefix);
        let after = options.page_token.clone().unwrap_or_default();
        let mut stmt = conn
            .prepare_cached(
                "SELECT name, updated, purge_at FROM secrets \
                 WHERE name >= ?1 AND name < ?2 AND name > ?3 \
                 AND (purge_at IS NULL OR (?4 AND purge_at > ?5)) \
                 ORDER BY name LIMIT ?6",
            )
            .map_err(|e| sql_error("listing secrets", e))?;
        let rows: Vec<(String, i64, Option<i64>)> = stmt
            .query_map(
                params![
                    options.prefix,
                    upper,
                    after,
                    options.include_deleted,
                    now_ms(),
                    (page_size + 1) as i64
                ],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .and_then(|rows| rows.collect())
            .map_err(|e| sql_error("listing secrets", e))?;
        let more = rows.len() > page_size;
        let mut entries = Vec::with_capacity(page_size);
        for (name, updated, purge_at) in rows.into_iter().take(page_size) {
            let name = SecretName::new(name).map_err(|_| {
                Error::new(
                    ErrorKind::Integrity,
                    "local vault holds an invalid secret name",
                )
            })?;
            entries.push(ListEntry {
                name,
                updated: Some(to_time(updated)),
                deleted: purge_at.is_some(),
            });
        }
        let next_page_token = if more {
            entries.last().map(|e| e.name.to_string())
        } else {
            None
        };
        Ok(ListPage {
            entries,
            next_page_token,
        })
    }

    async fn delete(&self, name: &SecretName, options: &DeleteOptions) -> Result<()> {
        let owned = name.as_str().to_owned();
        let force = options.force;
        let purge_at = now_ms().saturating_add(options.recovery_window.as_millis() as i64);
        let (changed, purged) = write_tx(&self.inner, "deleting a secret", move |tx| {
            let now = now_ms();
            // Purge what has passed its recovery window while we hold the write lock.
            let purged = purge_due(tx, now)?;
            let n = if force {
                tx.execute("DELETE FROM secrets WHERE name = ?1", [&owned])
            } else {
                tx.execute(
                    "UPDATE secrets SET purge_at = COALESCE(purge_at, ?2), updated = ?3 WHERE name = ?1",
                    params![owned, purge_at, now],
                )
            }
            .map_err(|e| sql_error("deleting a secret", e))?;
            Ok((n, purged))
        })
        .await?;
        // A purged or force-deleted secret's DEK leaves memory with its rows.
        if force || purged > 0 {
            self.forget_deks();
        }
        if changed == 0 {
            return Err(not_found(name));
        }
        Ok(())
    }

    async fn restore(&self, name: &SecretName) -> Result<()> {
        let owned = name.clone();
        write_tx(&self.inner, "restoring a secret", move |tx| {
            let err = |e| sql_error("restoring a secret", e);
            // `Some(None)`: live; `Some(Some(t))`: deleted, restorable until `t`.
            let purge_at: Option<Option<i64>> = tx
                .query_row(
                    "SELECT purge_at FROM secrets WHERE name = ?1 AND (purge_at IS NULL OR purge_at > ?2)",
                    params![owned.as_str(), now_ms()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err)?;
            match purge_at {
                None => Err(not_found(&owned)),
                Some(None) => Err(Error::new(
                    ErrorKind::Conflict,
                    format!("secret {owned} is not deleted; nothing to restore"),
                )),
                Some(Some(_)) => tx
                    .execute(
                        "UPDATE secrets SET purge_at = NULL WHERE name = ?1",
                        [owned.as_str()],
                    )
                    .map(drop)
                    .map_err(err),
            }
        })
        .await
    }

    async fn erase_namespace(&self, namespace: &str) -> Result<Erasure> {
        LocalVault::erase_namespace(self, namespace).await
    }

    async fn set_stage(
        &self,
        name: &SecretName,
        stage: &Stage,
        version: Option<&VersionId>,
    ) -> Result<()> {
        if version.is_none() && *stage == Stage::Current {
            return Err(Error::invalid_input(
                "CURRENT cannot be removed, only moved",
            ));
        }
        let owned = name.clone();
        let stage = stage.clone();
        let version = version.cloned();
        write_tx(&self.inner, "moving a stage", move |tx| {
            let err = |e| sql_error("moving a stage", e);
            let id: i64 = tx
                .query_row(
                    "SELECT id FROM secrets WHERE name = ?1 AND purge_at IS NULL",
                    [owned.as_str()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err)?
                .ok_or_else(|| not_found(&owned))?;
            match version {
                Some(v) => {
                    let n = parse_version(&v).filter(|n| {
                        tx.query_row(
                            "SELECT 1 FROM versions WHERE secret_id = ?1 AND version = ?2",
                            [id, *n],
                            |_| Ok(()),
                        )
                        .is_ok()
                    });
                    let n = n.ok_or_else(|| {
                        Error::not_found(format!("secret {owned} has no version {v}"))
                    })?;
                    if move_stage(tx, id, &stage, n)? {
                        tx.execute(
                            "UPDATE secrets SET last_rotated = ?2, updated = ?2 WHERE id = ?1",
                            [id, now_ms()],
                        )
                        .map_err(err)?;
                    }
                }
                None => {
                    tx.execute(
                        "DELETE FROM stages WHERE secret_id = ?1 AND stage = ?2",
                        params![id, stage.as_str()],
                    )
                    .map_err(err)?;
                }
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyVersion;

    fn entry() -> CachedDek {
        let dek = DataKey::generate(KeyId::new("dek").unwrap(), KeyVersion::FIRST).unwrap();
        (vec![1, 2, 3], Arc::new(dek))
    }

    #[test]
    fn the_dek_cache_holds_at_most_its_capacity() {
        let mut deks = HashMap::new();
        for id in 0..20 {
            cache_dek(&mut deks, 5, id, entry());
            assert!(deks.len() <= 5);
            assert!(deks.contains_key(&id), "the newest DEK is cached");
        }
        // Replacing a cached DEK evicts nothing else.
        let before: Vec<i64> = deks.keys().copied().collect();
        cache_dek(&mut deks, 5, before[0], entry());
        assert_eq!(deks.len(), 5);
        let mut none = HashMap::new();
        cache_dek(&mut none, 0, 1, entry());
        assert!(none.is_empty(), "capacity 0 caches nothing");
    }
}
