//! `Pkcs11MasterKey`: a non-extractable AES-256 key inside a PKCS#11 token as sealbox's master
//! key. KEKs are encrypted and decrypted inside the token; the master key never leaves it.
//!
//! Mechanism: `CKM_AES_GCM` through `C_Encrypt` / `C_Decrypt`, with a fresh 12-byte IV from the
//! operating system per wrap, a 128-bit tag, and the keyring's wrap context (namespace and KEK
//! version) as additional authenticated data, so a wrapped KEK cannot be moved to another
//! namespace. Wrapped form: `0x01` (format), IV (12 bytes), ciphertext and tag.
//!
//! Versions: version 1 is the key labelled `key_label`; version N >= 2 is `key_label.vN`.
//! [`KeyProvider::rotate`] generates the next one in the token (AES-256, `CKA_SENSITIVE`,
//! not `CKA_EXTRACTABLE`, encrypt/decrypt only, with the configured `CKA_ID`), and the keyring
//! rewraps every KEK under it. Older versions stay in the token for unwrapping until an
//! operator deletes them. Versions another process adds are found by label when first needed.

use std::collections::BTreeMap;
use std::ffi::c_ulong;
use std::sync::Mutex;

use async_trait::async_trait;
use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use ring::rand::{SecureRandom, SystemRandom};
use sealbox::keys::{KeyId, KeyProvider, KeyVersion, WrappedKey};
use sealbox::{Error, ErrorKind, ExposeSecret, Result, Secret};
use zeroize::Zeroizing;

use crate::config::Pkcs11Config;
use crate::token::Token;

const FORMAT: u8 = 1;
const IV_LEN: usize = 12;
const TAG_BITS: c_ulong = 128;
const TAG_LEN: usize = 16;
const KEY_BYTES: c_ulong = 32;
const UNWRAPPING: &str = "unwrapping a key (C_Decrypt, CKM_AES_GCM)";

/// A master key held by a PKCS#11 token (any HSM with a PKCS#11 module: AWS CloudHSM,
/// YubiHSM 2, Thales Luna, Entrust nShield, SoftHSM2 ...).
pub struct Pkcs11MasterKey {
    token: Token,
    label: String,
    key_id: Option<Vec<u8>>,
    provider_id: KeyId,
    state: Mutex<State>,
    rotation: Mutex<()>,
}

/// Handles by version (a label normally names one key; if two processes rotated at once it
/// may name two, and unwrapping tries each) and the version new wraps use.
struct State {
    current: KeyVersion,
    handles: BTreeMap<KeyVersion, Vec<ObjectHandle>>,
}

impl std::fmt::Debug for Pkcs11MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11MasterKey")
            .field("token", &self.token.name())
            .field("key_label", &self.label)
            .finish_non_exhaustive()
    }
}

impl Pkcs11MasterKey {
    /// Loads the module, logs in to the token and finds the key's versions. Errors: `Config`
    /// for a module that is missing or not PKCS#11, `NotFound` for a token or key that is not
    /// there, `AccessDenied` for a wrong or locked PIN, `Unavailable` for a token that does not
    /// answer.
    pub fn open(config: Pkcs11Config) -> Result<Pkcs11MasterKey> {
        config.validate()?;
        let token = Token::open(&config.module, &config.token, config.pin)?;
        Self::on_token(token, config.key_label, config.key_id)
    }

    /// [`Pkcs11MasterKey::open`], generating version 1 as [`Pkcs11MasterKey::create`] does
    /// when the token has no version of the key yet (what a config does for a new vault).
    pub fn open_or_create(config: Pkcs11Config) -> Result<Pkcs11MasterKey> {
        config.validate()?;
        let token = Token::open(&config.module, &config.token, config.pin)?;
        let template = search_template(&config.key_id, None);
        let label = config.key_label;
        let keys = token.with_session(&label, "listing the token's AES keys", |s| {
            labels(s, &template)
        })?;
        let ours = |l: &[u8]| std::str::from_utf8(l).is_ok_and(|l| version_of(&label, l).is_some());
        if !keys.iter().any(|(_, l)| ours(l)) {
            let template = generate_template(&config.key_id, &label);
            token.with_session(&label, "generating the master key", |s| {
                s.generate_key(&Mechanism::AesKeyGen, &template)
            })?;
            tracing::info!(token = token.name(), key_label = %label, "generated the PKCS#11 master key");
        }
        Self::on_token(token, label, config.key_id)
    }

    /// Generates version 1 of the key (AES-256, sensitive, never extractable, encrypt and
    /// decrypt only) in the token and opens it. `AlreadyExists` if the token has an AES key
    /// with that label.
    pub fn create(config: Pkcs11Config) -> Result<Pkcs11MasterKey> {
        config.validate()?;
        let token = Token::open(&config.module, &config.token, config.pin)?;
        let label = config.key_label;
        let template = search_template(&config.key_id, Some(&label));
        let existing =
            token.with_session(&label, "looking for the key", |s| s.find_objects(&template))?;
        if !existing.is_empty() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "{} already holds an AES key labelled {label:?}",
                    token.name()
                ),
            ));
        }
        let template = generate_template(&config.key_id, &label);
        token.with_session(&label, "generating the master key", |s| {
            s.generate_key(&Mechanism::AesKeyGen, &template)
        })?;
        Self::on_token(token, label, config.key_id)
    }

    fn on_token(token: Token, label: String, key_id: Option<Vec<u8>>) -> Result<Pkcs11MasterKey> {
        let provider_id = KeyId::new(format!("pkcs11:{label}"))?;
        let key = Pkcs11MasterKey {
            token,
            label,
            key_id,
            provider_id,
            state: Mutex::new(State {
                current: KeyVersion::FIRST,
                handles: BTreeMap::new(),
            }),
            rotation: Mutex::new(()),
        };
        key.rescan()?;
        key.warn_if_exportable();
        Ok(key)
    }

    /// The label of `version`.
    fn version_label(&self, version: KeyVersion) -> String {
        if version == KeyVersion::FIRST {
            self.label.clone()
        } else {
            format!("{}.v{}", self.label, version.get())
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads every version of the key from the token.
    fn rescan(&self) -> Result<()> {
        let template = search_template(&self.key_id, None);
        let found = self
            .token
            .with_session(&self.label, "listing the token's AES keys", |s| {
                labels(s, &template)
            })?;
        let mut handles: BTreeMap<KeyVersion, Vec<ObjectHandle>> = BTreeMap::new();
        for (handle, label) in found {
            if let Some(v) = std::str::from_utf8(&label)
                .ok()
                .and_then(|l| version_of(&self.label, l))
            {
                handles.entry(v).or_default().push(handle);
            }
        }
        let Some(current) = handles.keys().next_back().copied() else {
            return Err(Error::not_found(format!(
                "{} has no AES key labelled {:?}{}; generate one that cannot leave the token, \
                 e.g. with sealbox_pkcs11::Pkcs11MasterKey::create, or check key_label",
                self.token.name(),
                self.label,
                if self.key_id.is_some() {
                    " with the configured key_id"
                } else {
                    ""
                }
            )));
        };
        let mut state = self.state();
        state.current = current;
        state.handles = handles;
        Ok(())
    }

    /// Logs a warning when the current key could be read out of the token.
    fn warn_if_exportable(&self) {
        let Ok(handle) = self.handles(self.current()).map(|h| h[0]) else {
            return;
        };
        let attrs = self
            .token
            .with_session(&self.label, "reading key attributes", |s| {
                s.get_attributes(
                    handle,
                    &[AttributeType::Extractable, AttributeType::Sensitive],
                )
            });
        let exportable = attrs.is_ok_and(|attrs| {
            attrs.iter().any(|a| {
                matches!(a, Attribute::Extractable(true))
                    || matches!(a, Attribute::Sensitive(false))
            })
        });
        if exportable {
            tracing::warn!(
                token = self.token.name(),
                key_label = %self.label,
                "the PKCS#11 master key is extractable or not sensitive, so it can leave the \
                 token; generate one with CKA_EXTRACTABLE false and CKA_SENSITIVE true"
            );
        }
    }

    fn current(&self) -> KeyVersion {
        self.state().current
    }

    /// The token objects of `version`, looked up by label when this process has not seen it.
    fn handles(&self, version: KeyVersion) -> Result<Vec<ObjectHandle>> {
        if let Some(h) = self.state().handles.get(&version) {
            return Ok(h.clone());
        }
        let label = self.version_label(version);
        let template = search_template(&self.key_id, Some(&label));
        let found = self
            .token
            .with_session(&self.label, "looking for the key", |s| {
                s.find_objects(&template)
            })?;
        if found.is_empty() {
            return Err(Error::not_found(format!(
                "{} has no AES key labelled {label:?} ({version} of master key {}); \
                 was it deleted from the token?",
                self.token.name(),
                self.label
            )));
        }
        self.state().handles.insert(version, found.clone());
        Ok(found)
    }

    /// Drops what this process knows about `version`, after the token said a handle is gone.
    fn forget(&self, version: KeyVersion) {
        self.state().handles.remove(&version);
    }

    fn encrypt(&self, version: KeyVersion, context: &[u8], key: &Secret) -> Result<Vec<u8>> {
        let mut iv = [0u8; IV_LEN];
        SystemRandom::new()
            .fill(&mut iv)
            .map_err(|_| Error::internal("the operating system's random source failed"))?;
        let handle = self.handles(version)?[0];
        let out = self.token.with_session(
            &self.label,
            "wrapping a key (C_Encrypt, CKM_AES_GCM)",
            |s| {
                gcm(s, &mut iv.clone(), context, |s, m| {
                    s.encrypt(m, handle, key.expose_secret())
                })
            },
        )?;
        let mut wrapped = Vec::with_capacity(1 + IV_LEN + out.len());
        wrapped.push(FORMAT);
        wrapped.extend_from_slice(&iv);
        wrapped.extend_from_slice(&out);
        Ok(wrapped)
    }

    fn decrypt(&self, version: KeyVersion, context: &[u8], wrapped: &[u8]) -> Result<Secret> {
        if wrapped.len() < 1 + IV_LEN + TAG_LEN {
            return Err(Error::new(
                ErrorKind::Truncated,
                format!(
                    "a key wrapped by PKCS#11 key {} is {} bytes, shorter than any wrapped key",
                    self.label,
                    wrapped.len()
                ),
            ));
        }
        if wrapped[0] != FORMAT {
            return Err(Error::new(
                ErrorKind::UnsupportedVersion,
                format!(
                    "a key wrapped by PKCS#11 key {} has format {}; this build reads {FORMAT}",
                    self.label, wrapped[0]
                ),
            ));
        }
        let (iv, body) = wrapped[1..].split_at(IV_LEN);
        let mut last = None;
        for handle in self.handles(version)? {
            let out = self.token.with_session(&self.label, UNWRAPPING, |s| {
                let mut iv = <[u8; IV_LEN]>::try_from(iv).unwrap_or_default();
                match gcm(s, &mut iv, context, |s, m| s.decrypt(m, handle, body)) {
                    // Wiped when dropped; the secret's own copy is in locked memory.
                    Ok(plain) => Ok(Ok(Zeroizing::new(plain))),
                    // SoftHSM2 reports a GCM tag that does not verify as CKR_GENERAL_ERROR
                    // (real HSMs say CKR_ENCRYPTED_DATA_INVALID). If the session still
                    // answers, the token is fine and the data is what failed.
                    Err(CkError::Pkcs11(RvError::GeneralError, Function::Decrypt))
                        if s.get_session_info().is_ok() =>
                    {
                        Ok(Err(()))
                    }
                    Err(e) => Err(e),
                }
            });
            match out {
                Ok(Ok(plain)) => return Secret::from_zeroizing(plain),
                Ok(Err(())) => last = Some(self.not_authentic()),
                Err(e) if e.kind() == ErrorKind::Integrity => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::internal("a key version without token objects")))
    }

    fn not_authentic(&self) -> Error {
        Error::new(
            ErrorKind::Integrity,
            format!(
                "{UNWRAPPING} on {}: the wrapped key does not authenticate under PKCS#11 key {} \
                 and this context: it was wrapped by another key, for another namespace, or is \
                 damaged",
                self.token.name(),
                self.label
            ),
        )
    }

    /// Runs `op` once more after a `NotFound` (a handle the token no longer knows: the token
    /// was replaced or reloaded), with the version looked up again by label.
    fn again_if_gone<T>(&self, version: KeyVersion, op: impl Fn() -> Result<T>) -> Result<T> {
        match op() {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.forget(version);
                op()
            }
            other => other,
        }
    }

    fn rotate_now(&self) -> Result<KeyVersion> {
        let _one = self.rotation.lock().unwrap_or_else(|p| p.into_inner());
        // Another process may have rotated already: start from what the token holds.
        self.rescan()?;
        let next = self.current().next()?;
        let label = self.version_label(next);
        let template = generate_template(&self.key_id, &label);
        let handle = self.token.with_session(
            &self.label,
            "generating the next master key version",
            |s| s.generate_key(&Mechanism::AesKeyGen, &template),
        )?;
        let mut state = self.state();
        state.handles.insert(next, vec![handle]);
        state.current = next;
        Ok(next)
    }
}

/// The version of the key `base` that `label` names: `base` is 1, `base.vN` is N (N >= 2).
fn version_of(base: &str, label: &str) -> Option<KeyVersion> {
    if label == base {
        return Some(KeyVersion::FIRST);
    }
    let n: u32 = label.strip_prefix(base)?.strip_prefix(".v")?.parse().ok()?;
    (n >= 2).then(|| KeyVersion::new(n).ok()).flatten()
}

/// The objects `template` finds, with their labels.
fn labels(
    s: &Session,
    template: &[Attribute],
) -> cryptoki::error::Result<Vec<(ObjectHandle, Vec<u8>)>> {
    let mut labelled = Vec::new();
    for handle in s.find_objects(template)? {
        for a in s.get_attributes(handle, &[AttributeType::Label])? {
            if let Attribute::Label(bytes) = a {
                labelled.push((handle, bytes));
            }
        }
    }
    Ok(labelled)
}

/// Sets up `CKM_AES_GCM` with `iv`, `context` as AAD and a 128-bit tag, and runs `op` with it.
fn gcm<T>(
    s: &Session,
    iv: &mut [u8; IV_LEN],
    context: &[u8],
    op: impl FnOnce(&Session, &Mechanism<'_>) -> cryptoki::error::Result<T>,
) -> cryptoki::error::Result<T> {
    let params = GcmParams::new(iv, context, TAG_BITS.into())?;
    op(s, &Mechanism::AesGcm(params))
}

/// AES secret keys (with `label` and the configured id, when given).
fn search_template(key_id: &Option<Vec<u8>>, label: Option<&str>) -> Vec<Attribute> {
    let mut t = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
    ];
    if let Some(l) = label {
        t.push(Attribute::Label(l.as_bytes().to_vec()));
    }
    if let Some(id) = key_id {
        t.push(Attribute::Id(id.clone()));
    }
    t
}

/// A 256-bit AES key that lives in the token, can never be read out, and only encrypts and
/// decrypts.
fn generate_template(key_id: &Option<Vec<u8>>, label: &str) -> Vec<Attribute> {
    let mut t = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::ValueLen(KEY_BYTES.into()),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Sign(false),
        Attribute::Verify(false),
        Attribute::Derive(false),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    if let Some(id) = key_id {
        t.push(Attribute::Id(id.clone()));
    }
    t
}

#[async_trait]
impl KeyProvider for Pkcs11MasterKey {
    fn id(&self) -> &KeyId {
        &self.provider_id
    }

    async fn current_version(&self) -> Result<KeyVersion> {
        self.token.check_process(&self.label)?;
        Ok(self.current())
    }

    async fn wrap(&self, context: &[u8], key: &Secret) -> Result<WrappedKey> {
        let version = self.current();
        let ciphertext = self.again_if_gone(version, || self.encrypt(version, context, key))?;
        Ok(WrappedKey {
            provider: self.provider_id.clone(),
            master_version: version,
            ciphertext,
        })
    }

    async fn unwrap(&self, context: &[u8], wrapped: &WrappedKey) -> Result<Secret> {
        if wrapped.provider != self.provider_id {
            return Err(Error::new(
                ErrorKind::WrongKey,
                format!(
                    "this key was wrapped by master key provider {}, but {} is configured",
                    wrapped.provider, self.provider_id
                ),
            ));
        }
        let version = wrapped.master_version;
        self.again_if_gone(version, || {
            self.decrypt(version, context, &wrapped.ciphertext)
        })
    }

    async fn rotate(&self) -> Result<KeyVersion> {
        self.rotate_now()
    }
}
