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
use crate::memory;

/// At most this many unwrapped KEKs are cached, across namespaces and versions.
const KEK_CACHE_MAX: usize = 1024;

/// Cached KEKs stay within `1 / KEK_CACHE_SHARE` of the memlock budget (they are always
/// locked); beyond that, other namespaces' KEKs are dropped and unwrapped again when needed.
const KEK_CACHE_SHARE: usize = 8;
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

/// First byte of [`WrappedDek::to_compact`] when the DEK id is `dek:` and 24 lowercase hex
/// digits (the ids stores generate), kept as the 12 bytes they spell.
const COMPACT_HEX_ID: u8 = 1;
/// First byte of [`WrappedDek::to_compact`] for any other DEK id, kept length-prefixed.
const COMPACT_LITERAL_ID: u8 = 2;
/// The prefix of generated DEK ids that [`COMPACT_HEX_ID`] implies.
const HEX_ID_PREFIX: &str = "dek:";
const HEX_ID_BYTES: usize = 12;

impl WrappedDek {
    /// The form for a store that keeps the wrapped DEK in a record naming its namespace:
    /// what [`WrappedDek::to_bytes`] holds less the bytes that namespace implies (the record's
    /// magic and format, the envelope header's part naming the KEK, see
    /// [`Envelope::detach_header`]), and a generated id (`dek:` + 24 hex digits) as its 12
    /// bytes:
    ///
    /// ```text
    /// 1      form: 1 = generated id (12 bytes follow), 2 = other id (length byte, id)
    /// 12|1+n DEK id
    /// 1..5   DEK version (unsigned LEB128, shortest form)
    /// 1..5   KEK version (likewise)
    /// 60     the envelope's nonce, sealed key and tag
    /// ```
    ///
    /// Everything dropped is still authenticated: the rebuilt header and the DEK's AAD
    /// (namespace, DEK id and version) are associated data of the unwrap.
    pub fn to_compact(&self) -> Vec<u8> {
        let id = self.dek_id.as_str();
        let view = Envelope::parse(&self.envelope).ok();
        let (kek_version, body) = match view.and_then(|v| {
            Envelope::detach_header(&self.envelope, v.key_id(), v.key_version())
                .ok()
                .map(|b| (v.key_version(), b))
        }) {
            Some(found) => found,
            // `WrappedDek`s are only made from parsed envelopes.
            None => (KeyVersion::FIRST, &self.envelope[..]),
        };
        let mut out = Vec::with_capacity(2 + id.len() + 8 + body.len());
        match hex_id(id) {
            Some(raw) => {
                out.push(COMPACT_HEX_ID);
                out.extend_from_slice(&raw);
            }
            None => {
                out.push(COMPACT_LITERAL_ID);
                // KeyId guarantees at most 128 bytes.
                out.push(id.len() as u8);
                out.extend_from_slice(id.as_bytes());
            }
        }
        put_varint(&mut out, self.dek_version.get());
        put_varint(&mut out, kek_version.get());
        out.extend_from_slice(body);
        out
    }

    /// Parses [`WrappedDek::to_compact`] output kept for namespace `namespace`. Total: never
    /// panics; `Truncated` or `Integrity` on bad input.
    pub fn from_compact(namespace: &str, bytes: &[u8]) -> Result<WrappedDek> {
        let short = || Error::new(ErrorKind::Truncated, "wrapped DEK record is truncated");
        let malformed =
            |what: &str| Error::new(ErrorKind::Integrity, format!("wrapped DEK record: {what}"));
        let (id, rest) = match bytes.first() {
            Some(&COMPACT_HEX_ID) => {
                let raw = bytes.get(1..1 + HEX_ID_BYTES).ok_or_else(short)?;
                (
                    format!("{HEX_ID_PREFIX}{}", hex::encode(raw)),
                    &bytes[1 + HEX_ID_BYTES..],
                )
            }
            Some(&COMPACT_LITERAL_ID) => {
                let len = usize::from(*bytes.get(1).ok_or_else(short)?);
                let raw = bytes.get(2..2 + len).ok_or_else(short)?;
                let id = std::str::from_utf8(raw).map_err(|_| malformed("invalid DEK id"))?;
                (id.to_owned(), &bytes[2 + len..])
            }
            Some(_) => return Err(malformed("unknown form")),
            None => return Err(short()),
        };
        let dek_id = KeyId::new(id).map_err(|_| malformed("invalid DEK id"))?;
        let version = |rest: &mut &[u8]| {
            let (v, len) = get_varint(rest).ok_or_else(|| malformed("bad key version"))?;
            *rest = &rest[len..];
            KeyVersion::new(v).map_err(|_| malformed("key version 0"))
        };
        let mut rest = rest;
        let dek_version = version(&mut rest)?;
        let kek_version = version(&mut rest)?;
        let envelope = Envelope::attach_header(namespace, kek_version, rest);
        Envelope::parse(&envelope)?;
        Ok(WrappedDek {
            dek_id,
            dek_version,
            envelope,
        })
    }
}

/// Appends `v` as unsigned LEB128 (7 bits a byte, low bits first).
fn put_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads an unsigned LEB128 `u32` in its shortest form: the value and the bytes it took.
fn get_varint(bytes: &[u8]) -> Option<(u32, usize)> {
    let mut v: u64 = 0;
    for (i, b) in bytes.iter().take(5).enumerate() {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            // A last byte of 0 after others is a longer spelling of a shorter number.
            let shortest = i == 0 || *b != 0;
            return (shortest && v <= u64::from(u32::MAX)).then_some((v as u32, i + 1));
        }
    }
    None
}

/// The 12 bytes a generated DEK id (`dek:` + 24 lowercase hex digits) spells, if it is one.
fn hex_id(id: &str) -> Option<[u8; HEX_ID_BYTES]> {
    let digits = id.strip_prefix(HEX_ID_PREFIX)?;
    let lower = digits
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if digits.len() != 2 * HEX_ID_BYTES || !lower {
        return None;
    }
    let mut raw = [0u8; HEX_ID_BYTES];
    hex::decode_to_slice(digits, &mut raw).ok()?;
    Some(raw)
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
    /// Prefixes namespace names given to the provider (`<scope>/<namespace>`), so that two
    /// stores sharing one key file never share a namespace key.
    scope: String,
    cache: RwLock<HashMap<KeyId, Arc<NsState>>>,
    /// How many unwrapped KEKs `cache` holds at most: as many as fit in their share of
    /// RLIMIT_MEMLOCK (KEKs are always locked).
    kek_capacity: usize,
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
        Self::open_scoped(provider, storage, "").await
    }

    /// [`Keyring::open`] for a store whose namespace keys (held by providers that hold them,
    /// see [`KeyProvider::holds_namespace_keys`]) are named `<scope>/<namespace>`: a store
    /// passes its own id, so that two stores sharing one key file never share a namespace key
    /// and erasing a namespace in one leaves the other's alone.
    pub async fn open_scoped(
        provider: Arc<dyn KeyProvider>,
        storage: Arc<dyn KeyStorage>,
        scope: &str,
    ) -> Result<Keyring> {
        let keyring = Keyring {
            provider,
            storage,
            scope: scope.to_owned(),
            cache: RwLock::new(HashMap::new()),
            kek_capacity: memory::keys_within_budget(
                DataKey::locked_footprint(),
                KEK_CACHE_SHARE,
                KEK_CACHE_MAX,
            ),
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
        let material = Envelope::open_key_view(&kek, &context, &view)?;
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

    /// Crypto-shredding: destroys the namespace's key in the provider (when the provider
    /// holds one, see [`KeyProvider::holds_namespace_keys`]), then every KEK version of the
    /// namespace in storage. Every DEK wrapped by them, and so every value they encrypt,
    /// becomes unreadable (`KeyDestroyed`). Nothing else is touched. A later write to the
    /// namespace starts a fresh KEK version under a fresh namespace key.
    ///
    /// The provider's key goes first: once it is gone, every copy of the storage (a backup,
    /// old WAL frames) is unreadable for this namespace, so a crash before the KEK records
    /// are destroyed leaves nothing readable, and running the shred again finishes it.
    /// [`NamespaceShred::reaches_copies`] says whether copies are covered. `NotFound` when the
    /// namespace has neither a key record nor a provider key.
    pub async fn shred_namespace(&self, namespace: &KeyId) -> Result<NamespaceShred> {
        let record = self.storage.load_namespace(namespace)?;
        let unbound = record.as_ref().map_or(0, |r| {
            r.keks
                .iter()
                .filter_map(|k| k.wrapped.as_ref())
                .filter(|w| !self.provider.is_namespace_bound(w))
                .count()
        });
        let live = record
            .as_ref()
            .map_or(0, |r| r.keks.iter().filter(|k| k.wrapped.is_some()).count());
        let provider_key_destroyed = self
            .provider
            .destroy_namespace_key(&self.scoped(namespace))
            .await?;
        if record.is_some() {
            self.write_namespace(namespace, Change::Shred).await?;
        } else if !provider_key_destroyed {
            return Err(Error::not_found(format!(
                "namespace {namespace} has no keys"
            )));
        }
        Ok(NamespaceShred {
            kek_versions_destroyed: live,
            provider_key_destroyed,
            reaches_copies: self.provider.holds_namespace_keys() && unbound == 0,
        })
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
    /// rotation), binding each to its namespace key where the provider holds them. Returns
    /// how many KEK versions were rewrapped.
    pub async fn rewrap_keks(&self) -> Result<usize> {
        self.rewrap_where(true).await
    }

    /// Binds every KEK still wrapped by the master key alone (a store made before namespace
    /// keys) to its namespace key, when the provider holds namespace keys: from then on,
    /// erasing the namespace reaches copies of the store taken after this call. A no-op for
    /// other providers. Returns how many KEK versions were rewrapped.
    pub async fn bind_namespace_keys(&self) -> Result<usize> {
        if !self.provider.holds_namespace_keys() {
            return Ok(0);
        }
        self.rewrap_where(false).await
    }

    /// How many live KEK versions are wrapped by the master key alone although the provider
    /// holds namespace keys (see [`Keyring::bind_namespace_keys`]).
    pub fn unbound_keks(&self) -> Result<usize> {
        if !self.provider.holds_namespace_keys() {
            return Ok(0);
        }
        let mut n = 0;
        for namespace in self.storage.namespaces()? {
            if let Some(record) = self.storage.load_namespace(&namespace)? {
                n += record
                    .keks
                    .iter()
                    .filter_map(|k| k.wrapped.as_ref())
                    .filter(|w| !self.provider.is_namespace_bound(w))
                    .count();
            }
        }
        Ok(n)
    }

    /// Master retirement: rewraps every KEK under the current master version (bound to its
    /// namespace key where the provider holds them), checks that no live KEK is wrapped under
    /// anything older, then has the provider remove every older master version for good
    /// ([`KeyProvider::retire_below`]; the local key file rewrites itself without them).
    /// After this, a copy of the old key file still opens copies of the store taken before,
    /// but nothing in the current key material opens a KEK wrapped under a retired version.
    ///
    /// Only this store's KEKs are checked: when several stores share one key file, rewrap
    /// each of them (`rewrap_keks` or `rotate_master`) before retiring in any.
    /// Errors: `Conflict` when a KEK is still under an old version (another process rotated
    /// meanwhile; run it again), `Unsupported` from providers that cannot retire.
    pub async fn retire_master(&self) -> Result<MasterRetirement> {
        let current = self.provider.current_version().await?;
        self.rewrap_keks().await?;
        for namespace in self.storage.namespaces()? {
            let Some(record) = self.storage.load_namespace(&namespace)? else {
                continue;
            };
            for kek in &record.keks {
                if let Some(w) = &kek.wrapped
                    && (w.master_version < current || &w.provider != self.provider.id())
                {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        format!(
                            "KEK {} of namespace {namespace} is still wrapped under master \
                             {} {}; nothing was retired; run the retirement again",
                            kek.version, w.provider, w.master_version
                        ),
                    ));
                }
            }
        }
        let retired = self.provider.retire_below(current).await?;
        Ok(MasterRetirement { current, retired })
    }

    async fn rewrap_where(&self, stale_master: bool) -> Result<usize> {
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
                let current =
                    wrapped.master_version == master && &wrapped.provider == self.provider.id();
                let bound = !self.provider.holds_namespace_keys()
                    || self.provider.is_namespace_bound(wrapped);
                let due = if stale_master {
                    !current || !bound
                } else {
                    !bound
                };
                if !due {
                    continue;
                }
                let context = kek_context(&namespace, kek.version);
                let material = self.unwrap_kek(&context, wrapped).await?;
                let rewrapped = self
                    .provider
                    .wrap_for_namespace(&self.scoped(&namespace), &context, &material)
                    .await?;
                if current && !self.provider.is_namespace_bound(&rewrapped) {
                    // The provider could not bind it (a read-only key file): nothing gained.
                    continue;
                }
                kek.wrapped = Some(rewrapped);
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
        let unwrap = async {
            let material = self.unwrap_kek(&context, wrapped).await?;
            DataKey::from_secret(namespace.clone(), version, material)
        };
        let key = match unwrap.await {
            // Keys are never left unlocked: make room by dropping the cached KEKs, then retry.
            Err(e) if e.kind() == ErrorKind::MemoryLock => {
                self.evict_keks(namespace, 0);
                let material = self.unwrap_kek(&context, wrapped).await?;
                DataKey::from_secret(namespace.clone(), version, material)?
            }
            other => other?,
        };
        Ok(self.cache_kek(state, Arc::new(key)))
    }

    /// Caches `key` in `state` (or returns the KEK another caller cached first), within the
    /// cache's capacity: other namespaces' KEKs are dropped to make room.
    fn cache_kek(&self, state: &NsState, key: Arc<DataKey>) -> Arc<DataKey> {
        if self.kek_capacity == 0 {
            return key;
        }
        self.evict_keks(&state.record.namespace, self.kek_capacity - 1);
        state.lock().entry(key.version()).or_insert(key).clone()
    }

    /// Drops cached KEKs of namespaces other than `keep` until at most `room` remain cached.
    fn evict_keks(&self, keep: &KeyId, room: usize) {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        let mut cached: usize = cache.values().map(|s| s.lock().len()).sum();
        for (namespace, state) in cache.iter() {
            if cached <= room {
                break;
            }
            if namespace != keep {
                let mut keks = state.lock();
                cached -= keks.len();
                keks.clear();
            }
        }
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

    /// The namespace's name as the provider knows it.
    fn scoped(&self, namespace: &KeyId) -> String {
        if self.scope.is_empty() {
            namespace.as_str().to_owned()
        } else {
            format!("{}/{namespace}", self.scope)
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

    /// Applies `change` to the stored record. The compare-and-set on `revision` can lose to
    /// another process, or to a store that bumps the revision when it counts a KEK use in its
    /// own write transaction; the change is then re-applied to the fresh record (a few times).
    async fn write_namespace(&self, namespace: &KeyId, change: Change) -> Result<Arc<NsState>> {
        self.alive()?;
        let mut attempt = 0;
        loop {
            match self.write_namespace_once(namespace, change).await {
                Err(e) if e.kind() == ErrorKind::Conflict && attempt < CAS_RETRIES => attempt += 1,
                other => return other,
            }
        }
    }

    async fn write_namespace_once(
        &self,
        namespace: &KeyId,
        change: Change,
    ) -> Result<Arc<NsState>> {
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
                let wrapped = self
                    .provider
                    .wrap_for_namespace(&self.scoped(namespace), &context, kek.material())
                    .await?;
                record.keks.push(KekRecord {
                    version,
                    created_at: now,
                    wrapped: Some(wrapped),
                    destroyed_at: None,
                    uses: 0,
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
            self.cache_kek(&state, Arc::new(kek));
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

/// What [`Keyring::shred_namespace`] destroyed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamespaceShred {
    /// KEK versions destroyed in storage (0 when re-running a finished shred).
    pub kek_versions_destroyed: usize,
    /// Whether the provider held a key for the namespace and destroyed it now.
    pub provider_key_destroyed: bool,
    /// Whether copies of the storage taken before (backups, WAL frames, free pages) are
    /// unreadable for this namespace with the current key material: true when the provider
    /// holds namespace keys and every KEK destroyed was bound to one. False for providers
    /// without namespace keys (passphrase, environment, KMS): a copy plus the master key
    /// still reads the namespace.
    pub reaches_copies: bool,
}

/// What [`Keyring::retire_master`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MasterRetirement {
    /// The master version every KEK is now wrapped under.
    pub current: KeyVersion,
    /// The master versions removed from the provider.
    pub retired: Vec<KeyVersion>,
}

/// How many times a namespace record change is re-applied after losing its compare-and-set.
const CAS_RETRIES: usize = 8;

#[derive(Clone, Copy)]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{EnvKey, MemoryKeyStorage};

    fn cached_keks(keyring: &Keyring) -> usize {
        let cache = keyring.cache.read().unwrap();
        cache.values().map(|s| s.lock().len()).sum()
    }

    #[tokio::test]
    async fn the_compact_form_round_trips_and_unwraps_only_in_its_namespace() {
        let master = EnvKey::from_base64(
            KeyId::new("env").unwrap(),
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "test key",
        )
        .unwrap();
        let keyring = Keyring::open(Arc::new(master), Arc::new(MemoryKeyStorage::new()))
            .await
            .unwrap();
        let ns = KeyId::new("app").unwrap();
        let other = KeyId::new("ops").unwrap();
        keyring
            .new_dek(&other, KeyId::new("x").unwrap())
            .await
            .unwrap();
        for (id, len) in [
            ("dek:00112233445566778899aabb", 1 + 12 + 2 + 60),
            ("metadata-mac", 2 + 12 + 2 + 60),
        ] {
            let (dek, wrapped) = keyring.new_dek(&ns, KeyId::new(id).unwrap()).await.unwrap();
            let compact = wrapped.to_compact();
            assert_eq!(compact.len(), len, "{id}");
            assert!(compact.len() < wrapped.to_bytes().len());
            let back = WrappedDek::from_compact("app", &compact).unwrap();
            assert_eq!(back, wrapped);
            let unwrapped = keyring.unwrap_dek(&ns, &back).await.unwrap();
            assert_eq!(
                unwrapped.material().expose_secret(),
                dek.material().expose_secret()
            );
            // Read as another namespace's record, it names a KEK that never sealed it.
            let moved = WrappedDek::from_compact("ops", &compact).unwrap();
            assert!(keyring.unwrap_dek(&other, &moved).await.is_err());
            for cut in 0..compact.len() {
                let _ = WrappedDek::from_compact("app", &compact[..cut]);
            }
        }
        // An id that looks generated but is upper case keeps its spelling.
        let upper = KeyId::new("dek:00112233445566778899AABB").unwrap();
        let (_, wrapped) = keyring.new_dek(&ns, upper).await.unwrap();
        assert_eq!(
            WrappedDek::from_compact("app", &wrapped.to_compact()).unwrap(),
            wrapped
        );
    }

    #[test]
    fn versions_in_the_compact_form_have_one_spelling() {
        for v in [1u32, 127, 128, 300, 16_383, 16_384, u32::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(get_varint(&out), Some((v, out.len())), "{v}");
        }
        assert_eq!(get_varint(&[0x81, 0x00]), None, "a longer spelling of 1");
        assert_eq!(
            get_varint(&[0xff, 0xff, 0xff, 0xff, 0x1f]),
            None,
            "above u32"
        );
        assert_eq!(get_varint(&[0x80, 0x80]), None, "runs out");
    }

    #[tokio::test]
    async fn the_kek_cache_stays_within_its_capacity_and_keys_stay_usable() {
        let master = EnvKey::from_base64(
            KeyId::new("env").unwrap(),
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "test key",
        )
        .unwrap();
        let mut keyring = Keyring::open(Arc::new(master), Arc::new(MemoryKeyStorage::new()))
            .await
            .unwrap();
        assert!(keyring.kek_capacity > 0);
        keyring.kek_capacity = 3;
        let mut wrapped = Vec::new();
        for n in 0..10 {
            let ns = KeyId::new(format!("ns{n}")).unwrap();
            let (_, w) = keyring
                .new_dek(&ns, KeyId::new("dek").unwrap())
                .await
                .unwrap();
            wrapped.push((ns, w));
            assert!(
                cached_keks(&keyring) <= 3,
                "{} cached",
                cached_keks(&keyring)
            );
        }
        // Evicted KEKs are unwrapped again when needed.
        for (ns, w) in &wrapped {
            assert!(keyring.unwrap_dek(ns, w).await.unwrap().is_locked());
            assert!(cached_keks(&keyring) <= 3);
        }
        keyring.kek_capacity = 0;
        keyring.clear_cache();
        let (ns, w) = &wrapped[0];
        keyring.unwrap_dek(ns, w).await.unwrap();
        assert_eq!(cached_keks(&keyring), 0, "capacity 0 caches nothing");
    }
}
