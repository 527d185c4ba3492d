//! `TransitMasterKey`: a Vault Transit key as sealbox's master key.
//!
//! The master key never leaves Vault: sealbox sends a KEK to `transit/encrypt/<key>` and
//! stores Vault's ciphertext (`vault:v3:...`), and sends it to `transit/decrypt/<key>` to get
//! the KEK back. The key is a **derived** key (`derived=true`): every call passes sealbox's
//! wrap context (store, namespace, KEK version: the KEK's AAD) as Transit's `context`, from
//! which Vault derives the encryption key, so a wrapped KEK cannot be unwrapped for another
//! namespace or version. Vault logs the context in its audit log (hashed by default); it
//! holds no secret.
//!
//! Versions: the master version of a wrap is the Transit key version in its ciphertext.
//! [`KeyProvider::rotate`] is `transit/keys/<key>/rotate` (the keyring then rewraps every
//! KEK under the new version); old ciphertexts keep decrypting until
//! [`KeyProvider::retire_below`] raises `min_decryption_version`, after which they fail with
//! `KeyRetired`.
//!
//! Memory: the KEK passes through vaultrs as base64 in ordinary heap strings (request body,
//! response), freed and not wiped; sealbox's own copy lives in a locked [`Secret`].

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sealbox::keys::{KeyId, KeyProvider, KeyVersion, WrappedKey};
use sealbox::{Error, ErrorKind, ExposeSecret, Result, Secret};
use vaultrs::api::transit::requests::{
    CreateKeyRequest, DecryptDataRequest, EncryptDataRequest, UpdateKeyConfigurationRequest,
};
use vaultrs::api::transit::responses::{ReadKeyData, ReadKeyResponse};
use vaultrs::error::ClientError;
use zeroize::Zeroizing;

use crate::auth::Session;
use crate::error::{self, Call};

/// A Transit key (derived, `aes256-gcm96`) that wraps and unwraps sealbox KEKs. Cheap to
/// clone.
#[derive(Clone)]
pub struct TransitMasterKey {
    session: Arc<Session>,
    mount: String,
    key: String,
    provider_id: KeyId,
}

impl std::fmt::Debug for TransitMasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransitMasterKey")
            .field("address", &self.session.address())
            .field("mount", &self.mount)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl TransitMasterKey {
    /// The key `key` on the Transit mount `mount`. When it does not exist and `create`, it is
    /// created (derived `aes256-gcm96`); otherwise a missing key is a `Config` error. A key
    /// that is not derived is refused: its ciphertexts would not be bound to their context.
    pub async fn open(
        session: Arc<Session>,
        mount: &str,
        key: &str,
        create: bool,
    ) -> Result<TransitMasterKey> {
        let provider_id = KeyId::new(format!("vault-transit:{mount}/{key}")).map_err(|e| {
            Error::config(format!(
                "Transit key {mount}/{key} cannot name a key provider: {e}"
            ))
        })?;
        let this = TransitMasterKey {
            session,
            mount: mount.to_owned(),
            key: key.to_owned(),
            provider_id,
        };
        let info = match this.read().await {
            Ok(info) => info,
            Err(e) if e.kind() == ErrorKind::NotFound && create => {
                this.create().await?;
                this.read().await?
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(Error::config(format!(
                    "Transit key {mount}/{key} does not exist; create it with `vault write -f \
                     {mount}/keys/{key} derived=true` ({})",
                    e.message()
                )));
            }
            Err(e) => return Err(e),
        };
        if !info.derived {
            return Err(Error::config(format!(
                "Transit key {mount}/{key} is not a derived key; sealbox binds each wrap to its \
                 context and needs one made with derived=true"
            )));
        }
        Ok(this)
    }

    fn target(&self, what: &str) -> String {
        format!("{}/{what}/{}", self.mount, self.key)
    }

    async fn read(&self) -> Result<ReadKeyResponse> {
        let (mount, key) = (self.mount.as_str(), self.key.as_str());
        self.session
            .run(|c| async move { vaultrs::transit::key::read(&c.client, mount, key).await })
            .await?
            .map_err(|e| {
                error::from_client(
                    Call {
                        operation: "read key",
                        target: &self.target("keys"),
                    },
                    e,
                )
            })
    }

    async fn create(&self) -> Result<()> {
        let (mount, key) = (self.mount.as_str(), self.key.as_str());
        self.session
            .run(|c| async move {
                let endpoint = CreateKeyRequest::builder()
                    .mount(mount)
                    .name(key)
                    .derived(true)
                    .build()
                    .map_err(|_| ClientError::InvalidUpdateParameter)?;
                vaultrs::api::exec_with_empty(&c.client, endpoint).await
            })
            .await?
            .map_err(|e| {
                error::from_client(
                    Call {
                        operation: "create key",
                        target: &self.target("keys"),
                    },
                    e,
                )
            })
    }

    fn latest(info: &ReadKeyResponse) -> Result<u32> {
        match &info.keys {
            ReadKeyData::Symmetric(versions) => versions
                .keys()
                .filter_map(|v| v.parse::<u32>().ok())
                .max()
                .ok_or_else(|| Error::internal("Transit answered a key without versions")),
            ReadKeyData::Asymmetric(_) => Err(Error::config(
                "the Transit key is asymmetric; sealbox needs a symmetric (aes256-gcm96) key",
            )),
        }
    }

    /// The Transit key version in a ciphertext `vault:v<N>:...`.
    fn version_in(ciphertext: &str) -> Option<u32> {
        ciphertext
            .strip_prefix("vault:v")?
            .split(':')
            .next()?
            .parse()
            .ok()
    }
}

#[async_trait]
impl KeyProvider for TransitMasterKey {
    fn id(&self) -> &KeyId {
        &self.provider_id
    }

    async fn current_version(&self) -> Result<KeyVersion> {
        KeyVersion::new(Self::latest(&self.read().await?)?)
    }

    async fn wrap(&self, context: &[u8], key: &Secret) -> Result<WrappedKey> {
        let (mount, name) = (self.mount.as_str(), self.key.as_str());
        let plaintext = Zeroizing::new(STANDARD.encode(key.expose_secret()));
        let context = STANDARD.encode(context);
        let (p, ctx) = (plaintext.as_str(), context.as_str());
        let out = self
            .session
            .run(|c| async move {
                let endpoint = EncryptDataRequest::builder()
                    .mount(mount)
                    .name(name)
                    .plaintext(p)
                    .context(ctx)
                    .build()
                    .map_err(|_| ClientError::InvalidUpdateParameter)?;
                vaultrs::api::exec_with_result(&c.client, endpoint).await
            })
            .await?
            .map_err(|e| {
                error::from_client(
                    Call {
                        operation: "encrypt",
                        target: &self.target("encrypt"),
                    },
                    e,
                )
            })?;
        let version = Self::version_in(&out.ciphertext).ok_or_else(|| {
            Error::internal("Transit answered a ciphertext without a vault:vN: prefix")
        })?;
        Ok(WrappedKey {
            provider: self.provider_id.clone(),
            master_version: KeyVersion::new(version)?,
            ciphertext: out.ciphertext.into_bytes(),
        })
    }

    async fn unwrap(&self, context: &[u8], wrapped: &WrappedKey) -> Result<Secret> {
        if wrapped.provider != self.provider_id {
            return Err(Error::new(
                ErrorKind::WrongKey,
                format!(
                    "this key was wrapped by {}, not by {}",
                    wrapped.provider, self.provider_id
                ),
            ));
        }
        let ciphertext = std::str::from_utf8(&wrapped.ciphertext)
            .ok()
            .filter(|c| Self::version_in(c).is_some())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Integrity,
                    "a Transit-wrapped key is not a vault:vN: ciphertext",
                )
            })?;
        let (mount, name) = (self.mount.as_str(), self.key.as_str());
        let context = STANDARD.encode(context);
        let ctx = context.as_str();
        let out = self
            .session
            .run(|c| async move {
                let endpoint = DecryptDataRequest::builder()
                    .mount(mount)
                    .name(name)
                    .ciphertext(ciphertext)
                    .context(ctx)
                    .build()
                    .map_err(|_| ClientError::InvalidUpdateParameter)?;
                vaultrs::api::exec_with_result(&c.client, endpoint).await
            })
            .await?
            .map_err(|e| {
                let text = error::texts(&e).join("; ");
                let err = error::from_client(
                    Call {
                        operation: "decrypt",
                        target: &self.target("decrypt"),
                    },
                    e,
                );
                if text.contains("disallowed by policy") {
                    error::rekind(
                        &err,
                        ErrorKind::KeyRetired,
                        format!(
                            "{}: this Transit key version is below min_decryption_version",
                            err.message()
                        ),
                    )
                } else if text.contains("authentication failed")
                    || text.contains("message authentication")
                {
                    error::rekind(
                        &err,
                        ErrorKind::Integrity,
                        format!(
                            "{} (the wrapped key belongs to another context or key, or is \
                             damaged)",
                            err.message()
                        ),
                    )
                } else {
                    err
                }
            })?;
        let mut plaintext = Zeroizing::new(out.plaintext);
        let decoded = Zeroizing::new(STANDARD.decode(plaintext.as_bytes()).map_err(|_| {
            Error::new(
                ErrorKind::Integrity,
                "Transit answered a plaintext that is not base64",
            )
        })?);
        plaintext.clear();
        Secret::from_zeroizing(decoded)
    }

    async fn rotate(&self) -> Result<KeyVersion> {
        let (mount, key) = (self.mount.as_str(), self.key.as_str());
        self.session
            .run(|c| async move { vaultrs::transit::key::rotate(&c.client, mount, key).await })
            .await?
            .map_err(|e| {
                error::from_client(
                    Call {
                        operation: "rotate",
                        target: &self.target("keys"),
                    },
                    e,
                )
            })?;
        self.current_version().await
    }

    async fn retire_below(&self, version: KeyVersion) -> Result<Vec<KeyVersion>> {
        let info = self.read().await?;
        let before = u32::try_from(info.min_decryption_version.max(1)).unwrap_or(u32::MAX);
        if version.get() <= before {
            return Ok(Vec::new());
        }
        let (mount, key) = (self.mount.as_str(), self.key.as_str());
        let min = u64::from(version.get());
        self.session
            .run(|c| async move {
                let endpoint = UpdateKeyConfigurationRequest::builder()
                    .mount(mount)
                    .name(key)
                    .min_decryption_version(min)
                    .build()
                    .map_err(|_| ClientError::InvalidUpdateParameter)?;
                vaultrs::api::exec_with_empty(&c.client, endpoint).await
            })
            .await?
            .map_err(|e| {
                error::from_client(
                    Call {
                        operation: "configure key",
                        target: &self.target("keys"),
                    },
                    e,
                )
            })?;
        (before..version.get()).map(KeyVersion::new).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_comes_from_the_ciphertext_prefix() {
        assert_eq!(TransitMasterKey::version_in("vault:v3:abc"), Some(3));
        assert_eq!(TransitMasterKey::version_in("vault:v12:"), Some(12));
        assert_eq!(TransitMasterKey::version_in("vault:x3:abc"), None);
        assert_eq!(TransitMasterKey::version_in("v3:abc"), None);
    }
}
