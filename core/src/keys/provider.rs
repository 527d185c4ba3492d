//! The master key: [`KeyProvider`] wraps and unwraps key material so that remote providers
//! (KMS, Key Vault) never reveal the master key, plus the pieces the local providers share.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use ring::hmac;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::data_key::DataKey;
use super::envelope::Envelope;
use super::ids::{KeyId, KeyVersion};
use crate::error::{Error, ErrorKind, Result};
use crate::process::ProcessStamp;
use crate::secret::Secret;

/// Key material wrapped by a [`KeyProvider`]: which provider and master version, and the
/// provider's opaque ciphertext (an [`Envelope`] for the local providers, a KMS blob for
/// remote ones). Serialisable so stores can persist it as they like.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    /// The provider that wrapped it ([`KeyProvider::id`]).
    pub provider: KeyId,
    /// The master key version that wrapped it.
    pub master_version: KeyVersion,
    /// Provider-specific ciphertext.
    #[serde(with = "base64_bytes")]
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrappedKey")
            .field("provider", &self.provider)
            .field("master_version", &self.master_version)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

/// A key-check value: HMAC-SHA-256 of a fixed label under a master key version. Stored beside
/// the wrapped keys, it tells a wrong master key ([`ErrorKind::WrongKey`]) apart from
/// tampered data ([`ErrorKind::Integrity`]) without revealing anything about the key.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyCheck([u8; 32]);

const KEY_CHECK_LABEL: &[u8] = b"sealbox/key-check/v1";

impl KeyCheck {
    /// The check value of `key` (any length).
    pub fn compute(key: &Secret) -> KeyCheck {
        let check = Self::mac(key);
        // ring's HMAC key held the key (XORed with its pads) in frames below this one.
        crate::memory::wipe_stack();
        check
    }

    #[inline(never)]
    fn mac(key: &Secret) -> KeyCheck {
        let mac = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, key.expose_secret()),
            KEY_CHECK_LABEL,
        );
        let mut out = [0u8; 32];
        out.copy_from_slice(mac.as_ref());
        KeyCheck(out)
    }

    /// Constant-time comparison.
    pub fn matches(&self, other: &KeyCheck) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// From 32 stored bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> KeyCheck {
        KeyCheck(bytes)
    }
}

impl TryFrom<String> for KeyCheck {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        let bytes = hex::decode(value.as_bytes())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| Error::invalid_input("a key check value is 64 hex digits"))?;
        Ok(KeyCheck(bytes))
    }
}

impl From<KeyCheck> for String {
    fn from(value: KeyCheck) -> Self {
        hex::encode(value.0)
    }
}

impl std::fmt::Debug for KeyCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyCheck({})", hex::encode(&self.0[..4]))
    }
}

/// A master key source. Implementations: [`super::LocalKeyFile`], [`super::PassphraseKey`],
/// [`super::EnvKey`] here; AWS KMS and Azure Key Vault in provider crates.
///
/// Errors: `NotFound` for a master version the provider does not have, `WrongKey` for
/// ciphertext wrapped by another provider, `Integrity` when unwrapping fails authentication,
/// `Unsupported` from [`KeyProvider::rotate`] where the provider cannot rotate,
/// `Unavailable` for a remote provider that cannot be reached.
#[async_trait]
pub trait KeyProvider: Send + Sync + std::fmt::Debug {
    /// The provider's id, recorded in every [`WrappedKey`] (`"local"`, `"env:SEALBOX_KEY"`).
    fn id(&self) -> &KeyId;

    /// The master version new wraps use.
    async fn current_version(&self) -> Result<KeyVersion>;

    /// Wraps `key` under the current master version, binding `context` (associated data).
    async fn wrap(&self, context: &[u8], key: &Secret) -> Result<WrappedKey>;

    /// Unwraps into locked memory. `context` must equal the one given to `wrap`.
    async fn unwrap(&self, context: &[u8], wrapped: &WrappedKey) -> Result<Secret>;

    /// Makes a new master version current; old versions stay available for `unwrap`.
    async fn rotate(&self) -> Result<KeyVersion>;

    /// The key-check value of `version`, when the provider can compute one. Remote providers
    /// that detect a wrong key themselves return `Ok(None)` (the default).
    async fn key_check(&self, version: KeyVersion) -> Result<Option<KeyCheck>> {
        let _ = version;
        Ok(None)
    }

    /// Whether this provider keeps one key per namespace outside the store (the local key
    /// file does), so that [`KeyProvider::destroy_namespace_key`] reaches copies of the store
    /// taken before an erasure. The default is `false`: passphrase, environment and KMS
    /// providers hold the master key only.
    fn holds_namespace_keys(&self) -> bool {
        false
    }

    /// The write counter last recorded for the store `store_id` (rollback detection: a store
    /// whose own counter is below it is an older copy of itself), or `None` when none was
    /// recorded or the provider keeps none. Only the local key file keeps them; passphrase,
    /// environment, KMS and PKCS#11 masters keep nothing outside the store, so a store under
    /// them cannot detect being replaced by an older copy.
    fn store_counter(&self, store_id: &str) -> Result<Option<u64>> {
        let _ = store_id;
        Ok(None)
    }

    /// Records `count` as the write counter of `store_id`: raised to it, never lowered, unless
    /// `reset` (a deliberate restore of an older copy), which sets it. Returns whether the
    /// provider keeps counters (`false`, the default: nothing was recorded).
    fn record_store_counter(&self, store_id: &str, count: u64, reset: bool) -> Result<bool> {
        let _ = (store_id, count, reset);
        Ok(false)
    }

    /// Wraps the KEK of `namespace` (a name scoped to its store, e.g. `<store id>/<ns>`).
    /// A provider that holds namespace keys binds the wrap to that namespace's key, creating
    /// the key on first use; the default is [`KeyProvider::wrap`].
    async fn wrap_for_namespace(
        &self,
        namespace: &str,
        context: &[u8],
        key: &Secret,
    ) -> Result<WrappedKey> {
        let _ = namespace;
        self.wrap(context, key).await
    }

    /// Whether `wrapped` is bound to one of this provider's namespace keys (made by
    /// [`KeyProvider::wrap_for_namespace`] on a provider that holds them).
    fn is_namespace_bound(&self, wrapped: &WrappedKey) -> bool {
        let _ = wrapped;
        false
    }

    /// Destroys the key of `namespace` for good: every KEK bound to it, in any copy of any
    /// store, can no longer be unwrapped (`KeyDestroyed`). `Ok(true)` when a key was
    /// destroyed, `Ok(false)` when there was none (or the provider holds none).
    async fn destroy_namespace_key(&self, namespace: &str) -> Result<bool> {
        let _ = namespace;
        Ok(false)
    }

    /// Removes every master version below `version` for good, once nothing is wrapped under
    /// them any more ([`crate::keys::Keyring::retire_master`] checks that first). Returns the
    /// versions removed. The default is `Unsupported`.
    async fn retire_below(&self, version: KeyVersion) -> Result<Vec<KeyVersion>> {
        let _ = version;
        Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "master key {} cannot retire old versions here; retire them in the key \
                 service itself",
                self.id()
            ),
        ))
    }

    /// The same master key opened afresh, for a process forked after this provider was made
    /// (see [`Sealbox::reopen`](crate::Sealbox::reopen)): there this one's keys are wiped.
    /// The default refuses with `Unsupported`: the provider has to be made again in the child.
    async fn reopen(&self) -> Result<Arc<dyn KeyProvider>> {
        Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "master key provider {} cannot be reopened from what it keeps; make it again \
                 in the child process",
                self.id()
            ),
        ))
    }
}

/// Master key versions held in this process (locked memory), shared by the local providers.
#[derive(Debug)]
pub(crate) struct MasterKeys {
    id: KeyId,
    state: RwLock<MasterState>,
    /// The versions are wiped in a forked child; there every use answers `Forked`.
    stamp: ProcessStamp,
}

#[derive(Debug)]
struct MasterState {
    current: KeyVersion,
    versions: BTreeMap<KeyVersion, Arc<DataKey>>,
}

impl MasterKeys {
    /// `versions` must contain `current`.
    pub(crate) fn new(
        id: KeyId,
        current: KeyVersion,
        versions: BTreeMap<KeyVersion, Arc<DataKey>>,
    ) -> Result<MasterKeys> {
        if !versions.contains_key(&current) {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!("master key {id}: current version {current} is missing"),
            ));
        }
        Ok(MasterKeys {
            id,
            state: RwLock::new(MasterState { current, versions }),
            stamp: ProcessStamp::new(),
        })
    }

    pub(crate) fn id(&self) -> &KeyId {
        &self.id
    }

    pub(crate) fn current_version(&self) -> Result<KeyVersion> {
        self.check()?;
        Ok(self.read().current)
    }

    /// `Forked` in a process forked after these keys were loaded.
    pub(crate) fn check(&self) -> Result<()> {
        self.stamp.check("master key")
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, MasterState> {
        // A panic while holding the lock cannot leave the map half-updated (single inserts),
        // so a poisoned lock is still consistent.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces every version held with `versions` (the key file after an edit that may
    /// have removed some).
    pub(crate) fn replace(
        &self,
        current: KeyVersion,
        versions: BTreeMap<KeyVersion, Arc<DataKey>>,
    ) -> Result<()> {
        self.check()?;
        if !versions.contains_key(&current) {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!(
                    "master key {}: current version {current} is missing",
                    self.id
                ),
            ));
        }
        let mut state = self
            .state
            .write()
            .map_err(|_| Error::internal("master key state lock poisoned"))?;
        state.current = current;
        state.versions = versions;
        Ok(())
    }

    /// The master version `version`.
    pub(crate) fn version(&self, version: KeyVersion) -> Result<Arc<DataKey>> {
        self.check()?;
        self.read().versions.get(&version).cloned().ok_or_else(|| {
            Error::not_found(format!(
                "master key {} has no version {version}: it was retired, or an older key file was restored",
                self.id
            ))
        })
    }

    /// The current master version's key.
    pub(crate) fn current_key(&self) -> Result<Arc<DataKey>> {
        self.check()?;
        let state = self.read();
        state
            .versions
            .get(&state.current)
            .cloned()
            .ok_or_else(|| Error::internal("current master version missing"))
    }

    pub(crate) fn wrap(&self, context: &[u8], key: &Secret) -> Result<WrappedKey> {
        self.check()?;
        let master = self.current_key()?;
        Ok(WrappedKey {
            provider: self.id.clone(),
            master_version: master.version(),
            ciphertext: Envelope::seal(&master, context, key.expose_secret())?,
        })
    }

    pub(crate) fn unwrap(&self, context: &[u8], wrapped: &WrappedKey) -> Result<Secret> {
        self.check()?;
        if wrapped.provider != self.id {
            return Err(Error::new(
                ErrorKind::WrongKey,
                format!(
                    "key was wrapped by master key provider {}, but provider {} is configured",
                    wrapped.provider, self.id
                ),
            ));
        }
        let master = self.version(wrapped.master_version)?;
        Envelope::open_key(&master, context, &wrapped.ciphertext)
    }

    pub(crate) fn key_check(&self, version: KeyVersion) -> Result<KeyCheck> {
        self.check()?;
        Ok(KeyCheck::compute(self.version(version)?.material()))
    }

    /// Adds versions this process has not seen (another process rotated) and moves
    /// `current` forward if the newcomer is newer. Versions already held are kept as they are.
    pub(crate) fn merge(
        &self,
        current: KeyVersion,
        versions: BTreeMap<KeyVersion, Arc<DataKey>>,
    ) -> Result<()> {
        self.check()?;
        let mut state = self
            .state
            .write()
            .map_err(|_| Error::internal("master key state lock poisoned"))?;
        for (v, key) in versions {
            state.versions.entry(v).or_insert(key);
        }
        if current > state.current && state.versions.contains_key(&current) {
            state.current = current;
        }
        Ok(())
    }
}

/// Implements [`KeyProvider`] for a type with a `keys: MasterKeys` field, given its rotate body.
macro_rules! local_provider {
    ($ty:ty, |$this:ident| $rotate:expr $(, reopen: |$that:ident| $reopen:expr)?) => {
        #[async_trait::async_trait]
        impl $crate::keys::KeyProvider for $ty {
            fn id(&self) -> &$crate::keys::KeyId {
                self.keys.id()
            }
            async fn current_version(&self) -> $crate::Result<$crate::keys::KeyVersion> {
                self.keys.current_version()
            }
            async fn wrap(
                &self,
                context: &[u8],
                key: &$crate::Secret,
            ) -> $crate::Result<$crate::keys::WrappedKey> {
                self.keys.wrap(context, key)
            }
            async fn unwrap(
                &self,
                context: &[u8],
                wrapped: &$crate::keys::WrappedKey,
            ) -> $crate::Result<$crate::Secret> {
                self.keys.unwrap(context, wrapped)
            }
            async fn rotate(&self) -> $crate::Result<$crate::keys::KeyVersion> {
                let $this = self;
                $rotate
            }
            async fn key_check(
                &self,
                version: $crate::keys::KeyVersion,
            ) -> $crate::Result<Option<$crate::keys::KeyCheck>> {
                self.keys.key_check(version).map(Some)
            }
            $(
            async fn reopen(
                &self,
            ) -> $crate::Result<std::sync::Arc<dyn $crate::keys::KeyProvider>> {
                let $that = self;
                $reopen
            }
            )?
        }
    };
}
pub(crate) use local_provider;

mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> MasterKeys {
        let id = KeyId::new("m").unwrap();
        let k = DataKey::generate(id.clone(), KeyVersion::FIRST).unwrap();
        MasterKeys::new(
            id,
            KeyVersion::FIRST,
            BTreeMap::from([(KeyVersion::FIRST, Arc::new(k))]),
        )
        .unwrap()
    }

    #[test]
    fn wrap_unwrap_binds_context_and_provider() {
        let m = keys();
        let dek = Secret::random(32).unwrap();
        let w = m.wrap(b"ctx", &dek).unwrap();
        assert!(m.unwrap(b"ctx", &w).unwrap().ct_eq(&dek));
        assert_eq!(
            m.unwrap(b"other", &w).unwrap_err().kind(),
            ErrorKind::Integrity
        );
        let mut foreign = w.clone();
        foreign.provider = KeyId::new("kms").unwrap();
        assert_eq!(
            m.unwrap(b"ctx", &foreign).unwrap_err().kind(),
            ErrorKind::WrongKey
        );
        let mut future = w;
        future.master_version = KeyVersion::new(9).unwrap();
        assert_eq!(
            m.unwrap(b"ctx", &future).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn key_checks_differ_per_key_and_round_trip_through_serde() {
        let a = KeyCheck::compute(&Secret::random(32).unwrap());
        let b = KeyCheck::compute(&Secret::random(32).unwrap());
        assert!(!a.matches(&b));
        let json = serde_json::to_string(&a).unwrap();
        let back: KeyCheck = serde_json::from_str(&json).unwrap();
        assert!(back.matches(&a));
        assert!(serde_json::from_str::<KeyCheck>("\"abcd\"").is_err());
    }

    #[test]
    fn wrapped_key_serialises_as_json() {
        let m = keys();
        let w = m.wrap(b"", &Secret::random(32).unwrap()).unwrap();
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(serde_json::from_str::<WrappedKey>(&json).unwrap(), w);
        assert!(format!("{w:?}").contains("ciphertext_len"));
    }
}
