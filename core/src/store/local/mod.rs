//! `LocalVault`: the integrated, embedded default store. One SQLite file (WAL mode, through
//! `rusqlite` with SQLite bundled), every value and every key stored only as envelopes under
//! the key hierarchy.
//!
//! # Layout (schema 5)
//! - `secrets`: one row per secret: name, namespace, its DEK wrapped by the namespace KEK with
//!   the DEK's creation time and use count, metadata, soft-delete purge time, its stage map
//!   (`CURRENT=3,PREVIOUS=2`), its current version (number, envelope, created), and a MAC.
//!   A current read touches this row only (through the name index). There is no index on
//!   `namespace`: a namespace's secrets are found by name prefix.
//! - Ciphertexts are stored without the header bytes their row implies (see the `compact`
//!   module): a wrapped DEK without its namespace's, a value without its DEK's. Both are
//!   rebuilt on read and stay associated data of their AEAD.
//! - `versions`: one row per version: the value sealed with the secret's DEK (empty for the
//!   current version, whose envelope is stored once, in the secret's row, and moves back here
//!   in the transaction that makes another version current), and a MAC.
//! - `key_namespaces`, `master_checks`: the key hierarchy's records ([`crate::keys::KeyStorage`]).
//! - `meta`: schema version, store id, key epoch, write counter, the wrapped metadata key and
//!   the MAC of the set of secrets (and, in a backup, when it was taken).
//!
//! Schema 3 (a `stages` table, no MACs) and schema 4 (whole envelopes, 32-byte MACs) are
//! upgraded on open, each in one transaction; the upgrade from 4 reseals only rows whose MAC
//! checks, so an edit made before it keeps failing after it.
//!
//! # Guarantees
//! - **Binding.** A value's AAD binds the store id, namespace, name, version, and the DEK's id
//!   and version; a DEK's AAD (in the keyring) binds namespace and DEK id. A ciphertext copied
//!   to another row, name, version or vault fails with [`ErrorKind::Integrity`].
//! - **Authenticated metadata.** Every `secrets` and `versions` row, and the set of secrets,
//!   carries an HMAC-SHA-256 (truncated to 128 bits on rows) under the vault's metadata key
//!   (see the `mac` module), checked on
//!   every store read that uses the row and by `verify`: an edited stage, delete state,
//!   deadline, description, tag or version row is [`ErrorKind::Integrity`] naming the secret.
//! - **Atomicity.** Every write is one `BEGIN IMMEDIATE` transaction with `synchronous = FULL`:
//!   when `put` returns, the version is on disk; a crash leaves either all of a write or none.
//! - **Several processes.** SQLite's write lock serialises writers across processes; a write
//!   waiting for it retries after short random pauses (at most 8 ms) for up to
//!   [`LocalVaultOptions::busy_timeout`], then fails with `Unavailable` saying so, so a busy or
//!   locked database never reaches the caller as such. Readers never wait for a writer (WAL).
//!   Compare-and-set is checked inside the write transaction, so it holds across processes
//!   too. Administrative operations (create, rotations, erasure) also take an exclusive file
//!   lock on `<vault>.lock`.
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
mod compact;
mod key_storage;
mod lifecycle;
mod mac;
mod pool;
mod rollback;
mod schema;
mod secret_store;
mod verify;
mod write;

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};

use self::rollback::{Counter, Opened};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{OptionalExtension, params};
use secrecy::ExposeSecret;

pub use self::backup::{BackupInfo, RestoreInfo};
use self::key_storage::{SqliteKeyStorage, count_kek_uses};
pub use self::lifecycle::{DekRotation, DueRotation, KekRetirement, KeyInfo, KeyState, KeyStatus};
use self::mac::{MAC_KEY_ID, MAC_KEY_ROW, META_NAMESPACE, MacKey};
use self::pool::{Pool, open_connection};
pub use self::rollback::PUBLISH_EVERY;
use self::schema::{MAC_VERSION, SCHEMA_VERSION, SQL_VERSION, sql_error};
pub use self::verify::{VerifyFailure, VerifyReport};
use self::write::write_tx;
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
    /// The metadata key: every row that decides a read carries a MAC under it.
    mac: MacKey,
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
fn purge_due(tx: &rusqlite::Transaction<'_>, mac: &MacKey, now: i64) -> Result<usize> {
    mac.delete_secrets(
        tx,
        "DELETE FROM secrets WHERE purge_at IS NOT NULL AND purge_at <= ?1 RETURNING id, name",
        [now],
    )
}

/// The vault's metadata key, unwrapped from `meta.mac_key`; a vault of schema 4 is then
/// upgraded to schema 5 in one transaction (`schema::upgrade_to_5`). For a vault of schema 3
/// (made by an earlier build, or `create` interrupted) a new key is made and the vault
/// upgraded to schema 5 in one transaction (`schema::upgrade_from_3`).
async fn open_mac_key(pool: &Arc<Pool>, keyring: &Keyring, store_id: &str) -> Result<MacKey> {
    let ns = KeyId::new(META_NAMESPACE)?;
    let stored = |pool: &Arc<Pool>| -> Result<(u32, Option<String>)> {
        let conn = pool.get()?;
        let version = schema::stored_version(&conn)?;
        let key = conn
            .query_row(
                "SELECT value FROM meta WHERE key = ?1",
                [MAC_KEY_ROW],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| sql_error("reading the metadata key", e))?;
        Ok((version, key))
    };
    let (version, key) = stored(pool)?;
    if version >= MAC_VERSION {
        let Some(hex_key) = key else {
            return Err(Error::new(
                ErrorKind::Integrity,
                "local vault: its metadata key record is missing from `meta`: the file was \
                 edited outside sealbox; restore it from a backup",
            ));
        };
        let wrapped = hex::decode(&hex_key)
            .ok()
            .and_then(|b| WrappedDek::from_bytes(&b).ok())
            .ok_or_else(|| mac::tampered("the vault's metadata key record"))?;
        if keyring.namespace_keys(&ns)?.is_none() {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!(
                    "local vault: the key record of namespace {META_NAMESPACE}, which wraps \
                     the vault's metadata key, is missing: the key records were altered; \
                     restore the vault from a backup"
                ),
            ));
        }
        let key = keyring
            .unwrap_dek(&ns, &wrapped)
            .await
            .map_err(|e| match e.kind() {
                ErrorKind::WrongKey => Error::new(
                    ErrorKind::Integrity,
                    format!(
                        "local vault: its metadata key cannot be unwrapped ({}): the key records \
                     were altered; restore it from a backup",
                        e.message()
                    ),
                ),
                _ => e,
            })?;
        let mac = MacKey::new(Arc::new(key), store_id);
        if version < SCHEMA_VERSION {
            let (pool, mac) = (pool.clone(), mac.clone());
            let upgraded = blocking(move || {
                let _lock = FileLock::acquire(pool.path())?;
                let mut conn = pool.get()?;
                schema::upgrade_to_5(&mut conn, &mac)
            })
            .await?;
            if upgraded == MAC_VERSION {
                tracing::info!(
                    target: "sealbox::local",
                    "upgraded the vault to schema 5 (compact rows)"
                );
            }
        }
        return Ok(mac);
    }
    let (key, wrapped) = keyring.new_dek(&ns, KeyId::new(MAC_KEY_ID)?).await?;
    let mac = MacKey::new(Arc::new(key), store_id);
    let wrapped_hex = hex::encode(wrapped.to_bytes());
    let upgraded = {
        let (pool, mac) = (pool.clone(), mac.clone());
        blocking(move || {
            let _lock = FileLock::acquire(pool.path())?;
            let mut conn = pool.get()?;
            schema::upgrade_from_3(&mut conn, &mac, &wrapped_hex)
        })
        .await?
    };
    if upgraded == SQL_VERSION {
        tracing::info!(
            target: "sealbox::local",
            "upgraded the vault to schema 5 (authenticated metadata, compact rows)"
        );
        return Ok(mac);
    }
    // Another process upgraded first, with its own key.
    Box::pin(open_mac_key(pool, keyring, store_id)).await
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

/// Seals a value for storage beside its DEK's record: the envelope without the header part
/// naming the DEK, which the row's wrapped DEK implies (see [`Envelope::detach_header`]).
fn seal_value(dek: &DataKey, aad: &[u8], value: &[u8]) -> Result<Vec<u8>> {
    let envelope = Envelope::seal(dek, aad, value)?;
    Envelope::detach_header(&envelope, dek.id().as_str(), dek.version()).map(<[u8]>::to_vec)
}

/// Opens a stored value (from [`seal_value`]) with its row's DEK, whose id and version
/// rebuild the envelope's header. The header is associated data, so a value moved here from
/// another secret fails authentication: `Integrity`.
fn open_value(dek: &DataKey, aad: &[u8], stored: &[u8]) -> Result<Secret> {
    let envelope = Envelope::attach_header(dek.id().as_str(), dek.version(), stored);
    Envelope::open(dek, aad, &envelope).map_err(|e| match e.kind() {
        ErrorKind::WrongKey | ErrorKind::Truncated => Error::new(
            ErrorKind::Integrity,
            "the stored ciphertext is damaged or belongs to another secret (moved or tampered \
             with)",
        ),
        _ => e,
    })
}

fn parse_version(id: &VersionId) -> Option<i64> {
    id.as_str().parse::<i64>().ok().filter(|v| *v > 0)
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
                schema::migrate(&mut conn, SQL_VERSION, &random_hex(16)?)?;
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
        let file_id = schema::file_application_id(&db)?;
        let judged = open_connection(&db, options.busy_timeout, false).and_then(|conn| {
            // Until the checks below pass, closing this connection must not checkpoint the
            // journal into the file: a journal from another vault would overwrite it.
            conn.set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                true,
            )
            .map_err(|e| sql_error("configuring the connection", e))?;
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
        if version < SQL_VERSION {
            let _lock = FileLock::acquire(&db)?;
            schema::migrate(&mut conn, SQL_VERSION, "")?;
        }
        schema::check_tables(&conn, version.max(SQL_VERSION))?;
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
        if version >= MAC_VERSION {
            schema::check_application_id(&conn, &db, file_id, &store_id)?;
        }
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
        let mac = open_mac_key(&pool, &keyring, &store_id).await?;
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
                mac,
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
        let mac = self.inner.mac.clone();
        let purged = write_tx(&self.inner, "purging deleted secrets", move |tx| {
            purge_due(tx, &mac, now_ms())
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

    /// Rewraps the metadata key under the current KEK of its namespace (after that KEK
    /// rotated), so that retiring the old KEK versions leaves it readable. Its bytes, and so
    /// every MAC, stay the same.
    pub(super) async fn rewrap_mac_key(&self) -> Result<()> {
        let ns = KeyId::new(META_NAMESPACE)?;
        let stored: String = {
            let conn = self.inner.pool.get()?;
            conn.query_row(
                "SELECT value FROM meta WHERE key = ?1",
                [MAC_KEY_ROW],
                |r| r.get(0),
            )
            .map_err(|e| sql_error("reading the metadata key", e))?
        };
        let wrapped = hex::decode(&stored)
            .ok()
            .and_then(|b| WrappedDek::from_bytes(&b).ok())
            .ok_or_else(|| mac::tampered("the vault's metadata key record"))?;
        let rewrapped = hex::encode(
            self.inner
                .keyring
                .rewrap_dek(&ns, &wrapped)
                .await?
                .to_bytes(),
        );
        // A key operation, like the KEK rewraps: not counted as a write (rollback detection).
        let pool = self.inner.pool.clone();
        blocking(move || {
            pool.get()?
                .execute(
                    "UPDATE meta SET value = ?2 WHERE key = ?1",
                    params![MAC_KEY_ROW, rewrapped],
                )
                .map(drop)
                .map_err(|e| sql_error("rewrapping the metadata key", e))
        })
        .await
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
        let wrapped = WrappedDek::from_compact(namespace.as_str(), wrapped_bytes)?;
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
        if namespace == META_NAMESPACE {
            self.rewrap_mac_key().await?;
        }
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
        if namespace == META_NAMESPACE {
            return Err(Error::invalid_input(format!(
                "namespace {namespace} holds the vault's metadata key, not secrets; it cannot \
                 be erased (delete the vault file to destroy everything)"
            )));
        }
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
            let conn = inner.pool.get()?;
            let tx = conn.begin_write("erasing a namespace")?;
            let n = inner.mac.delete_secrets(
                &tx,
                &format!(
                    "DELETE FROM secrets WHERE {} RETURNING id, name",
                    mac::IN_NAMESPACE
                ),
                [&owned],
            )? as u64;
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
            let envelope = seal_value(&dek, &aad, value.expose_secret())?;
            rows.push((
                name.as_str().to_owned(),
                ns.as_str().to_owned(),
                wrapped.to_compact(),
                envelope,
                wrapped.kek_version(),
            ));
        }
        drop(items);
        let kek_limit = self.kek_limit();
        let mac = self.inner.mac.clone();
        write_tx(&self.inner, "importing secrets", move |tx| {
            let err = |e| sql_error("importing secrets", e);
            let mut secret = tx
                .prepare(
                    "INSERT INTO secrets (name, namespace, dek, next_version, created, updated, \
                     dek_uses, stages) VALUES (?1, ?2, ?3, 2, ?4, ?4, 1, 'CURRENT=1')",
                )
                .map_err(err)?;
            let mut version = tx
                .prepare("INSERT INTO versions (secret_id, version, envelope, created) VALUES (?1, 1, ?2, ?3)")
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
                mac.seal_version(tx, id, 1)?;
                mac.seal_secret(tx, id)?;
                mac.toggle_member(tx, id, name)?;
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
