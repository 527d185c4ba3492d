//! [`Keyring`]: the key hierarchy below the master key. KEKs per namespace (versioned, wrapped
//! by the [`KeyProvider`]), DEKs per secret (wrapped by the namespace's KEK, as
//! [`WrappedDek`]), rotation and rewrapping at both levels, `min_decryption_version`, and
//! crypto-shredding of a namespace.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use secrecy::ExposeSecret;

use super::data_key::{DataKey, KEY_LEN};
use super::envelope::{Envelope, EnvelopeView};
use super::ids::{KeyId, KeyVersion};
use super::provider::{KeyProvider, WrappedKey};
use super::storage::{KekRecord, KeyStorage, NamespaceKeys};
use crate::error::{Error, ErrorKind, Result};
use crate::process::ProcessStamp;

const DEK_MAGIC: [u8; 4] = *b"SBXD";
const DEK_FORMAT: u8 = 1;

/// A DEK wrapped by its namespace's KEK: the DEK's id and version plus an [`Envelope`] whose
/// header names the KEK (key id = namespace, key version = KEK version). Store it beside the
/// secret it encrypts, as [`WrappedDek::to_bytes`].
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedDek {
    dek_id: KeyId,
    dek_version: KeyVersion,
    envelope: Vec<u8>,
}

impl WrappedDek {
    /// The DEK's id (it appears in the envelopes the DEK seals).
    pub fn dek_id(&self) -> &KeyId {
        &self.dek_id
    }

    /// The DEK's version (incremented by [`Keyring::rotate_dek`]).
    pub fn dek_version(&self) -> KeyVersion {
        self.dek_version
    }

    /// The KEK version that wraps it.
    pub fn kek_version(&self) -> KeyVersion {
        self.view()
            .map(|v| v.key_version())
            .unwrap_or(KeyVersion::FIRST)
    }

    /// The namespace whose KEK wraps it.
    pub fn namespace(&self) -> &str {
        self.view().map(|v| v.key_id()).unwrap_or("")
    }

    fn view(&self) -> Result<EnvelopeView<'_>> {
        Envelope::parse(&self.envelope)
    }

    /// Self-describing bytes: `"SBXD"`, format 1, DEK id (length-prefixed), DEK version
    /// (big-endian u32), then the envelope.
    pub fn to_bytes(&self) -> Vec<u8> {
        let id = self.dek_id.as_str().as_bytes();
        let mut out = Vec::with_capacity(4 + 1 + 1 + id.len() + 4 + self.envelope.len());
        out.extend_from_slice(&DEK_MAGIC);
        out.push(DEK_FORMAT);
        // KeyId guarantees at most 128 bytes.
        out.push(id.len() as u8);
        out.extend_from_slice(id);
        out.extend_from_slice(&self.dek_version.to_be_bytes());
        out.extend_from_slice(&self.envelope);
        out
    }

    /// Parses [`WrappedDek::to_bytes`] output. Total: never panics; `Truncated`,
    /// `UnsupportedVersion` or `Integrity` on bad input.
    pub fn from_bytes(bytes: &[u8]) -> Result<WrappedDek> {
        let short = || Error::new(ErrorKind::Truncated, "wrapped DEK record is truncated");
        let malformed =
            |what: &str| Error::new(ErrorKind::Integrity, format!("wrapped DEK record: {what}"));
        let magic = bytes.get(..4).ok_or_else(short)?;
        if magic != DEK_MAGIC {
            return Err(malformed("bad magic bytes"));
        }
        let format = *bytes.get(4).ok_or_else(short)?;
        if format != DEK_FORMAT {
            return Err(Error::new(
                ErrorKind::UnsupportedVersion,
                format!("wrapped DEK record format {format} is not supported by this build"),
            ));
        }
        let id_len = usize::from(*bytes.get(5).ok_or_else(short)?);
        let id = bytes.get(6..6 + id_len).ok_or_else(short)?;
        let id = std::str::from_utf8(id)
            .ok()
            .and_then(|s| KeyId::new(s).ok())
            .ok_or_else(|| malformed("invalid DEK id"))?;
        let v = bytes.get(6 + id_len..10 + id_len).ok_or_else(short)?;
        let version = KeyVersion::new(u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
            .map_err(|_| malformed("DEK version 0"))?;
        let envelope = bytes[10 + id_len..].to_vec();
        Envelope::parse(&envelope)?;
        Ok(WrappedDek {
            dek_id: id,
            dek_version: version,
            envelope,
        })
    }
}

impl std::fmt::Debug for WrappedDek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrappedDek")
            .field("dek_id", &self.dek_id)
            .field("dek_version", &self.dek_version)
            .field("namespace", &self.namespace())
            .field("kek_version", &self.kek_version())
            .finish()
    }
}

/// The key hierarchy over one [`KeyProvider`] and one [`KeyStorage`]. Cheap to share behind an
/// `Arc`; unwrapped KEKs are cached in locked memory.
pub struct Keyring {
    provider: Arc<dyn KeyProvider>,
    storage: Arc<dyn KeyStorage>,
    cache: RwLock<HashMap<KeyId, Arc<NsState>>>,
    // Serialises this process's writers; `save_namespace`'s compare-and-set guards against
    // other processes.
    writer: tokio::sync::Mutex<()>,
    /// Cached KEKs are wiped in a forked child; there every call answers `Forked`.
    stamp: ProcessStamp,
}

struct NsState {
    record: NamespaceKeys,
    keks: Mutex<HashMap<KeyVersion, Arc<DataKey>>>,
}

impl NsState {
    fn new(record: NamespaceKeys, keep: Option<&NsState>) -> NsState {
        let mut keks = HashMap::new();
        if let Some(old) = keep {
            for (v, k) in old.keks() {
                if record.kek(v).is_some_and(|r| r.wrapped.is_some()) {
                    keks.insert(v, k);
                }
            }
        }
        NsState {
            record,
            keks: Mutex::new(keks),
        }
    }

    fn keks(&self) -> Vec<(KeyVersion, Arc<DataKey>)> {
        self.lock().iter().map(|(v, k)| (*v, k.clone())).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<KeyVersion, Arc<DataKey>>> {
        // Single inserts only: a poisoned map is still consistent.
        self.keks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Keyring {
    /// Opens the hierarchy. Verifies the provider's current master version against the
    /// stored key-check value (recording it on first use): a different master key gives
    /// [`ErrorKind::WrongKey`] here, before anything is unwrapped.
    pub async fn open(
        provider: Arc<dyn KeyProvider>,
        storage: Arc<dyn KeyStorage>,
    ) -> Result<Keyring> {
        let keyring = Keyring {
            provider,
            storage,
            cache: RwLock::new(HashMap::new()),
            writer: tokio::sync::Mutex::new(()),
            stamp: ProcessStamp::new(),
        };
        let current = keyring.provider.current_version().await?;
        keyring.verify_master(current).await?;
        Ok(keyring)
    }

    /// The master key provider.
    pub fn provider(&self) -> &Arc<dyn KeyProvider> {
        &self.provider
    }

    /// A copy of the namespace's stored record (KEK versions, states, policy).
    pub fn namespace_keys(&self, namespace: &KeyId) -> Result<Option<NamespaceKeys>> {
        self.alive()?;
        self.storage.load_namespace(namespace)
    }

    /// The namespace's current KEK, creating version 1 on first use.
    pub async fn current_kek(&self, namespace: &KeyId) -> Result<Arc<DataKey>> {
        let state = match self.state(namespace)? {
            Some(s) if s.record.current().is_some() => s,
            _ => {
                self.write_namespace(namespace, Change::EnsureCurrent)
                    .await?
            }
        };
        let version = state
            .record
            .current()
            .map(|k| k.version)
            .ok_or_else(|| Error::internal("namespace has no current KEK after creation"))?;
        self.kek_in(&state, version).await
    }

    /// A new DEK (version 1) with id `dek_id` under the namespace's current KEK. Seal values
    /// with the returned key and store the [`WrappedDek`] beside them.
    pub async fn new_dek(&self, namespace: &KeyId, dek_id: KeyId) -> Result<(DataKey, WrappedDek)> {
        let dek = DataKey::generate(dek_id, KeyVersion::FIRST)?;
        let wrapped = self.wrap_dek(namespace, &dek).await?;
        Ok((dek, wrapped))
    }

    /// DEK rotation: a new random DEK with the same id and the next version, wrapped under the
    /// current KEK. The caller re-encrypts the secret with it and replaces the wrapped DEK.
    pub async fn rotate_dek(
        &self,
        namespace: &KeyId,
        old: &WrappedDek,
    ) -> Result<(DataKey, WrappedDek)> {
        let dek = DataKey::generate(old.dek_id.clone(), old.dek_version.next()?)?;
        let wrapped = self.wrap_dek(namespace, &dek).await?;
        Ok((dek, wrapped))
    }

    /// Unwraps a DEK. Errors: `WrongKey` if it belongs to another namespace, `NotFound` for a
    /// KEK version the namespace never had, `KeyRetired` below `min_decryption_version`,
    /// `KeyDestroyed` after shredding, `Integrity` if the record was tampered with.
    pub async fn unwrap_dek(&self, namespace: &KeyId, wrapped: &WrappedDek) -> Result<DataKey> {
        let view = Envelope::parse(&wrapped.envelope)?;
        if view.key_id() != namespace.as_str() {
            return Err(Error::new(
                ErrorKind::WrongKey,
                format!(
                    "DEK {} belongs to namespace {}, not {namespace}",
                    wrapped.dek_id,
                    view.key_id()
                ),
            ));
        }
        let kek = self.kek(namespace, view.key_version()).await?;
        if view.plaintext_len() != KEY_LEN {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!("wrapped DEK {} has the wrong length", wrapped.dek_id),
            ));
        }
        let context = dek_context(namespace, &wrapped.dek_id, wrapped.dek_version);
        let material = Envelope::open_view(&kek, &context, &view)?;
        DataKey::from_secret(wrapped.dek_id.clone(), wrapped.dek_version, material)
    }

    /// KEK rotation step 2: rewraps one DEK under the namespace's current KEK (a no-op copy
    /// if it already is). A store calls this for every DEK of the namespace after
    /// [`Keyring::rotate_kek`], then may retire old KEK versions with
    /// [`Keyring::set_min_decryption_version`].
    pub async fn rewrap_dek(&self, namespace: &KeyId, wrapped: &WrappedDek) -> Result<WrappedDek> {
        let current = self.current_kek(namespace).await?;
        if Envelope::parse(&wrapped.envelope)?.key_version() == current.version() {
            return Ok(wrapped.clone());
        }
        let dek = self.unwrap_dek(namespace, wrapped).await?;
        self.wrap_dek(namespace, &dek).await
    }

    /// KEK rotation step 1: a new KEK version becomes current; old versions stay for
    /// unwrapping until retired. Returns the new version.
    pub async fn rotate_kek(&self, namespace: &KeyId) -> Result<KeyVersion> {
        let state = self.write_namespace(namespace, Change::Rotate).await?;
        state
            .record
            .current()
            .map(|k| k.version)
            .ok_or_else(|| Error::internal("namespace has no current KEK after rotation"))
    }

    /// Refuses KEK versions below `version` for decryption from now on (`KeyRetired`). It
    /// cannot exceed the current version.
    pub async fn set_min_decryption_version(
        &self,
        namespace: &KeyId,
        version: KeyVersion,
    ) -> Result<()> {
        self.write_namespace(namespace, Change::MinVersion(version))
            .await
            .map(|_| ())
    }

    /// Crypto-shredding: destroys every KEK version of the namespace. Every DEK wrapped by
    /// them, and so every value they encrypt, becomes unreadable (`KeyDestroyed`). Nothing
    /// else is touched. A later write to the namespace starts a fresh KEK version.
    pub async fn shred_namespace(&self, namespace: &KeyId) -> Result<()> {
        self.write_namespace(namespace, Change::Shred)
            .await
            .map(|_| ())
    }

    /// Master rotation: the provider makes a new master version, then every KEK version of
    /// every namespace is rewrapped under it. Returns the new master version.
    pub async fn rotate_master(&self) -> Result<KeyVersion> {
        let version = self.provider.rotate().await?;
        self.verify_master(version).await?;
        self.rewrap_keks().await?;
        Ok(version)
    }

    /// Rewraps every KEK not under the current master version (resumes an interrupted master
    /// rotation). Returns how many KEK versions were rewrapped.
    pub async fn rewrap_keks(&self) -> Result<usize> {
        self.alive()?;
        let mut count = 0;
        for namespace in self.storage.namespaces()? {
            let _guard = self.writer.lock().await;
            let master = self.provider.current_version().await?;
            let Some(mut record) = self.storage.load_namespace(&namespace)? else {
                continue;
            };
            let mut changed = 0;
            for kek in &mut record.keks {
                let Some(wrapped) = &kek.wrapped else {
                    continue;
                };
                if wrapped.master_version == master && &wrapped.provider == self.provider.id() {
                    continue;
                }
                let context = kek_context(&namespace, kek.version);
                let material = self.unwrap_kek(&context, wrapped).await?;
                kek.wrapped = Some(self.provider.wrap(&context, &material).await?);
                changed += 1;
            }
            if changed > 0 {
                record.revision += 1;
                self.storage.save_namespace(&record)?;
                self.replace_state(record);
                count += changed;
            }
        }
        Ok(count)
    }

    /// Re-reads the namespace's record from storage, dropping cached KEKs that another
    /// process destroyed or that no longer exist. This process's cache otherwise only learns of
    /// other processes' rotation, retirement or shredding on its next write to the namespace
    /// or when it meets an unknown KEK version; a store shared by several processes calls this
    /// when it sees the namespace's record change.
    pub fn refresh(&self, namespace: &KeyId) -> Result<()> {
        if self.reload(namespace)?.is_none() {
            self.cache
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(namespace);
        }
        Ok(())
    }

    /// Forgets every cached KEK (they are wiped once no caller holds them).
    pub fn clear_cache(&self) {
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    async fn wrap_dek(&self, namespace: &KeyId, dek: &DataKey) -> Result<WrappedDek> {
        // Wrap under the KEK that is current in storage, not in a possibly stale cache: another
        // process may have rotated and retired the version this one last saw.
        self.reload(namespace)?;
        let mut kek = self.current_kek(namespace).await?;
        if kek.needs_rotation() {
            // Old KEK versions stay readable, so rotating early costs nothing but a record.
            self.rotate_kek(namespace).await?;
            kek = self.current_kek(namespace).await?;
        }
        let context = dek_context(namespace, dek.id(), dek.version());
        let envelope = Envelope::seal(&kek, &context, dek.material().expose_secret())?;
        Ok(WrappedDek {
            dek_id: dek.id().clone(),
            dek_version: dek.version(),
            envelope,
        })
    }

    async fn kek(&self, namespace: &KeyId, version: KeyVersion) -> Result<Arc<DataKey>> {
        let mut state = self.state(namespace)?;
        // Another process may have rotated or shredded since this one cached the record.
        if state
            .as_ref()
            .is_none_or(|s| s.record.kek(version).is_none())
        {
            state = self.reload(namespace)?;
        }
        let state =
            state.ok_or_else(|| Error::not_found(format!("namespace {namespace} has no keys")))?;
        self.kek_in(&state, version).await
    }

    /// `Forked` in a process forked after this keyring was opened. Every path to a key or a
    /// record goes through one of the functions that call this.
    fn alive(&self) -> Result<()> {
        self.stamp.check("keyring")
    }

    async fn kek_in(&self, state: &NsState, version: KeyVersion) -> Result<Arc<DataKey>> {
        self.alive()?;
        let namespace = &state.record.namespace;
        let record = state.record.kek(version).ok_or_else(|| {
            Error::not_found(format!(
                "namespace {namespace} has no KEK version {version}"
            ))
        })?;
        let Some(wrapped) = &record.wrapped else {
            return Err(Error::new(
                ErrorKind::KeyDestroyed,
                format!(
                    "KEK {version} of namespace {namespace} was destroyed (crypto-shredded); \
                     data under it can never be read again"
                ),
            ));
        };
        if version < state.record.min_decryption_version {
            return Err(Error::new(
                ErrorKind::KeyRetired,
                format!(
                    "KEK {version} of namespace {namespace} is retired (min_decryption_version \
                     is {}); the data must be rewrapped before retiring its key",
                    state.record.min_decryption_version
                ),
            ));
        }
        if let Some(k) = state.lock().get(&version) {
            return Ok(k.clone());
        }
        let context = kek_context(namespace, version);
        let material = self.unwrap_kek(&context, wrapped).await?;
        let key = Arc::new(DataKey::from_secret(namespace.clone(), version, material)?);
        Ok(state.lock().entry(version).or_insert(key).clone())
    }

    async fn unwrap_kek(&self, context: &[u8], wrapped: &WrappedKey) -> Result<crate::Secret> {
        match self.provider.unwrap(context, wrapped).await {
            Ok(material) if material.len() == KEY_LEN => Ok(material),
            Ok(_) => Err(Error::new(
                ErrorKind::Integrity,
                "an unwrapped KEK has the wrong length",
            )),
            Err(e) if e.kind() == ErrorKind::Integrity => {
                // Tell a wrong master key apart from a tampered record.
                let id = &wrapped.provider;
                let v = wrapped.master_version;
                let check = self.provider.key_check(v).await.ok().flatten();
                let stored = self.storage.master_check(id, v)?;
                match (check, stored) {
                    (Some(c), Some(s)) if !c.matches(&s) => Err(wrong_master(id, v)),
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn verify_master(&self, version: KeyVersion) -> Result<()> {
        self.alive()?;
        let Some(check) = self.provider.key_check(version).await? else {
            return Ok(());
        };
        let id = self.provider.id();
        match self.storage.master_check(id, version)? {
            Some(stored) if stored.matches(&check) => Ok(()),
            Some(_) => Err(wrong_master(id, version)),
            None => self.storage.save_master_check(id, version, &check),
        }
    }

    fn state(&self, namespace: &KeyId) -> Result<Option<Arc<NsState>>> {
        self.alive()?;
        if let Some(s) = self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(namespace)
        {
            return Ok(Some(s.clone()));
        }
        self.reload(namespace)
    }

    fn reload(&self, namespace: &KeyId) -> Result<Option<Arc<NsState>>> {
        self.alive()?;
        Ok(self
            .storage
            .load_namespace(namespace)?
            .map(|r| self.replace_state(r)))
    }

    fn replace_state(&self, record: NamespaceKeys) -> Arc<NsState> {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        let namespace = record.namespace.clone();
        let state = Arc::new(NsState::new(record, cache.get(&namespace).map(|s| &**s)));
        cache.insert(state.record.namespace.clone(), state.clone());
        state
    }

    async fn write_namespace(&self, namespace: &KeyId, change: Change) -> Result<Arc<NsState>> {
        self.alive()?;
        let _guard = self.writer.lock().await;
        let stored = self.storage.load_namespace(namespace)?;
        let now = now_secs();
        let mut new_kek: Option<DataKey> = None;
        let mut record = match stored {
            Some(r) => r,
            None => match change {
                Change::EnsureCurrent | Change::Rotate => NamespaceKeys {
                    namespace: namespace.clone(),
                    revision: 0,
                    min_decryption_version: KeyVersion::FIRST,
                    keks: Vec::new(),
                },
                Change::MinVersion(_) | Change::Shred => {
                    return Err(Error::not_found(format!(
                        "namespace {namespace} has no keys"
                    )));
                }
            },
        };
        match change {
            Change::EnsureCurrent if record.current().is_some() => {
                drop(_guard);
                return self
                    .state(namespace)?
                    .ok_or_else(|| Error::internal("namespace vanished from storage"));
            }
            Change::EnsureCurrent | Change::Rotate => {
                let version = match record.latest_version() {
                    Some(v) => v.next()?,
                    None => KeyVersion::FIRST,
                };
                let kek = DataKey::generate(namespace.clone(), version)?;
                let context = kek_context(namespace, version);
                let wrapped = self.provider.wrap(&context, kek.material()).await?;
                record.keks.push(KekRecord {
                    version,
                    created_at: now,
                    wrapped: Some(wrapped),
                    destroyed_at: None,
                });
                new_kek = Some(kek);
            }
            Change::MinVersion(min) => {
                let current = record.current().map(|k| k.version).ok_or_else(|| {
                    Error::new(
                        ErrorKind::KeyDestroyed,
                        format!("namespace {namespace} is shredded"),
                    )
                })?;
                if min > current {
                    return Err(Error::invalid_input(format!(
                        "min_decryption_version {min} is above the current KEK {current} of \
                         namespace {namespace}"
                    )));
                }
                record.min_decryption_version = min;
            }
            Change::Shred => {
                for kek in &mut record.keks {
                    if kek.wrapped.take().is_some() {
                        kek.destroyed_at = Some(now);
                    }
                }
            }
        }
        record.revision += 1;
        self.storage.save_namespace(&record)?;
        if matches!(change, Change::Shred) {
            // Drop cached KEKs of the namespace rather than carrying them over.
            self.cache
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(namespace);
        }
        let state = self.replace_state(record);
        if let Some(kek) = new_kek {
            state.lock().insert(kek.version(), Arc::new(kek));
        }
        Ok(state)
    }
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("provider", &self.provider.id())
            .field("storage", &self.storage)
            .finish_non_exhaustive()
    }
}

enum Change {
    EnsureCurrent,
    Rotate,
    MinVersion(KeyVersion),
    Shred,
}

fn wrong_master(id: &KeyId, version: KeyVersion) -> Error {
    Error::new(
        ErrorKind::WrongKey,
        format!(
            "master key {id} {version} is not the key this store's keys were wrapped with \
             (key check mismatch); check the key file, passphrase or variable"
        ),
    )
}

/// Associated data of a KEK wrapped by the master key.
fn kek_context(namespace: &KeyId, version: KeyVersion) -> Vec<u8> {
    let ns = namespace.as_str().as_bytes();
    let mut c = Vec::with_capacity(16 + ns.len() + 4);
    c.extend_from_slice(b"sealbox/kek/v1");
    c.push(ns.len() as u8);
    c.extend_from_slice(ns);
    c.extend_from_slice(&version.to_be_bytes());
    c
}

/// Associated data of a DEK wrapped by a KEK: binds namespace, DEK id and DEK version.
fn dek_context(namespace: &KeyId, dek_id: &KeyId, version: KeyVersion) -> Vec<u8> {
    let ns = namespace.as_str().as_bytes();
    let id = dek_id.as_str().as_bytes();
    let mut c = Vec::with_capacity(16 + ns.len() + id.len() + 4);
    c.extend_from_slice(b"sealbox/dek/v1");
    c.push(ns.len() as u8);
    c.extend_from_slice(ns);
    c.push(id.len() as u8);
    c.extend_from_slice(id);
    c.extend_from_slice(&version.to_be_bytes());
    c
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
