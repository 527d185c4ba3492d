//! `KmsMasterKey`: an AWS KMS key as sealbox's master key.
//!
//! The master key never leaves KMS: sealbox sends a KEK (32 bytes) to `Encrypt` and stores the
//! ciphertext blob, and sends the blob to `Decrypt` to get the KEK back. Every call binds an
//! encryption context (sealbox's purpose, the namespace and the KEK version), so a wrapped KEK
//! cannot be unwrapped for another namespace; KMS logs the context in CloudTrail, so it never
//! holds anything secret. `Decrypt` names the key id too, so a blob sealed by another key is
//! refused instead of silently using whatever key KMS finds in the blob.
//!
//! Rotation: KMS's automatic key rotation is transparent (old blobs keep decrypting); moving to
//! a *different* KMS key is a master-key rotation in sealbox's terms: unwrap with the old
//! provider, wrap with the new one.
//!
//! Erasure: KMS holds the master key only, no key per namespace, so erasing a namespace
//! destroys its wrapped KEKs in the vault file only and reports `backups_covered: false`: a
//! copy of the vault taken before still unwraps them through KMS while the key is enabled.
//! Old KMS key material cannot be retired from sealbox (`retire_below` is `Unsupported`).
//!
//! Every wrap and unwrap first asks `DescribeKey` whether the key is enabled (one more call,
//! needs `kms:DescribeKey`), so a disabled or deleted key fails with a clear `AccessDenied`.
//!
//! Memory: the plaintext KEK passes through the SDK's request/response buffers (see the crate
//! docs); sealbox's own copy lives in a locked [`Secret`].

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_kms::Client;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeyState, KeyUsageType};
use sealbox::keys::{KeyId, KeyProvider, KeyVersion, WrappedKey};
use sealbox::{Error, ErrorKind, ExposeSecret, Result, Secret};
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use crate::config::AwsConfig;
use crate::error::{self, Call};

const SERVICE: &str = "KMS";
/// The encryption-context key under which sealbox's wrap context (hex) is bound.
const CONTEXT_KEY: &str = "sealbox:context";
/// KMS `Encrypt` takes at most 4096 bytes of plaintext.
pub const MAX_PLAINTEXT_LEN: usize = 4096;

/// An AWS KMS symmetric key (id, ARN, alias name `alias/...` or alias ARN) that wraps and
/// unwraps sealbox KEKs. Cheap to clone.
#[derive(Clone)]
pub struct KmsMasterKey {
    client: Client,
    key_id: String,
    provider_id: KeyId,
    /// The master version, learnt from `ListKeyRotations` on first use.
    version: Arc<Mutex<Option<KeyVersion>>>,
}

impl std::fmt::Debug for KmsMasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsMasterKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// What `DescribeKey` says about the key, for checks and status output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KmsKeyInfo {
    /// The key's ARN.
    pub arn: String,
    /// The key id (UUID).
    pub key_id: String,
    /// Whether the key can be used now.
    pub enabled: bool,
    /// The key state as KMS spells it (`Enabled`, `Disabled`, `PendingDeletion`, ...).
    pub state: String,
}

impl KmsMasterKey {
    /// Connects with `config` and uses `config.kms_key_id`.
    pub async fn connect(config: &AwsConfig) -> Result<KmsMasterKey> {
        let key_id = config.kms_key_id.clone().ok_or_else(|| {
            Error::config("the AWS KMS key provider needs `kms_key_id` (key id, ARN or alias/NAME)")
        })?;
        let sdk = config.load_sdk_config().await?;
        KmsMasterKey::from_sdk_config(&sdk, key_id)
    }

    /// Builds the provider on an SDK configuration the caller loaded.
    pub fn from_sdk_config(sdk: &SdkConfig, key_id: impl Into<String>) -> Result<KmsMasterKey> {
        let key_id = key_id.into();
        if key_id.is_empty() {
            return Err(Error::config("the AWS KMS key id is empty"));
        }
        let provider_id = KeyId::new(format!("aws-kms:{key_id}")).map_err(|e| {
            Error::config(format!(
                "KMS key id {key_id:?} cannot name a key provider: {e}"
            ))
        })?;
        Ok(KmsMasterKey {
            client: Client::new(sdk),
            key_id,
            provider_id,
            version: Arc::new(Mutex::new(None)),
        })
    }

    /// The key id as configured (id, ARN or alias).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The KMS key's rotations so far (automatic and on demand), all pages.
    async fn rotation_count(&self, key_id: &str) -> Result<u32> {
        let mut count = 0usize;
        let mut marker = None;
        loop {
            let page = self
                .client
                .list_key_rotations()
                .key_id(key_id)
                .set_marker(marker)
                .send()
                .await
                .map_err(|e| self.explain(error::from_sdk(self.call("ListKeyRotations"), e)))?;
            count += page.rotations.map_or(0, |r| r.len());
            match page.next_marker {
                Some(m) if page.truncated && !m.is_empty() => marker = Some(m),
                _ => break,
            }
        }
        u32::try_from(count).map_err(|_| Error::internal("KMS reports too many rotations"))
    }

    /// The SDK client underneath.
    pub fn sdk_client(&self) -> &Client {
        &self.client
    }

    fn call(&self, operation: &'static str) -> Call<'_> {
        Call {
            service: SERVICE,
            operation,
            target: &self.key_id,
        }
    }

    /// `DescribeKey`: whether the key exists, is symmetric ENCRYPT_DECRYPT and is enabled.
    pub async fn describe(&self) -> Result<KmsKeyInfo> {
        let out = self
            .client
            .describe_key()
            .key_id(&self.key_id)
            .send()
            .await
            .map_err(|e| error::from_sdk(self.call("DescribeKey"), e))?;
        let meta = out
            .key_metadata
            .ok_or_else(|| Error::internal("KMS DescribeKey answered without key metadata"))?;
        if let Some(usage) = &meta.key_usage
            && *usage != KeyUsageType::EncryptDecrypt
        {
            return Err(Error::config(format!(
                "KMS key {} has usage {}; sealbox needs a symmetric ENCRYPT_DECRYPT key",
                self.key_id,
                usage.as_str()
            )));
        }
        Ok(KmsKeyInfo {
            arn: meta.arn.clone().unwrap_or_default(),
            key_id: meta.key_id.clone(),
            enabled: meta.enabled
                && meta
                    .key_state
                    .as_ref()
                    .is_none_or(|s| *s == KeyState::Enabled),
            state: meta
                .key_state
                .as_ref()
                .map_or_else(|| "Unknown".to_owned(), |s| s.as_str().to_owned()),
        })
    }

    /// Fails with `AccessDenied` unless the key is enabled. KMS itself refuses a disabled key
    /// on `Encrypt`/`Decrypt`; asking first gives a clear message everywhere, including
    /// emulators that do not enforce key state.
    pub async fn ensure_usable(&self) -> Result<KmsKeyInfo> {
        let info = self.describe().await?;
        if !info.enabled {
            return Err(Error::new(
                ErrorKind::AccessDenied,
                format!(
                    "KMS key {} ({}) is {}: enable it (kms:EnableKey) or cancel its deletion \
                     to open secrets sealed by it",
                    self.key_id, info.arn, info.state
                ),
            ));
        }
        Ok(info)
    }

    /// Encrypts `plaintext` (a KEK) under the KMS key, bound to `context`. Returns KMS's
    /// ciphertext blob, which is safe to store anywhere.
    pub async fn encrypt_key(
        &self,
        plaintext: &Secret,
        context: &BTreeMap<String, String>,
    ) -> Result<Vec<u8>> {
        if plaintext.is_empty() || plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(Error::invalid_input(format!(
                "KMS wraps 1 to {MAX_PLAINTEXT_LEN} bytes; got {}",
                plaintext.len()
            )));
        }
        self.ensure_usable().await?;
        let out = self
            .client
            .encrypt()
            .key_id(&self.key_id)
            .plaintext(Blob::new(plaintext.expose_secret()))
            .set_encryption_context(Some(context.clone().into_iter().collect()))
            .send()
            .await
            .map_err(|e| self.explain(error::from_sdk(self.call("Encrypt"), e)))?;
        out.ciphertext_blob
            .map(Blob::into_inner)
            .ok_or_else(|| Error::internal("KMS Encrypt answered without a ciphertext"))
    }

    /// Decrypts a blob from [`KmsMasterKey::encrypt_key`] with the same `context`. A blob from another
    /// key or with another context fails with `Integrity` (KMS cannot tell the two apart and
    /// says `InvalidCiphertextException`); a disabled key fails with `AccessDenied`.
    pub async fn decrypt_key(
        &self,
        wrapped: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<Secret> {
        if wrapped.is_empty() {
            return Err(Error::new(
                ErrorKind::Truncated,
                "the KMS-wrapped key is empty",
            ));
        }
        self.ensure_usable().await?;
        let mut out = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(wrapped))
            .set_encryption_context(Some(context.clone().into_iter().collect()))
            .send()
            .await
            .map_err(|e| self.explain(error::from_sdk(self.call("Decrypt"), e)))?;
        let plaintext = out
            .plaintext
            .take()
            .ok_or_else(|| Error::internal("KMS Decrypt answered without a plaintext"))?;
        Secret::from_zeroizing(Zeroizing::new(plaintext.into_inner()))
    }

    /// The KMS encryption context for sealbox's binary wrap context.
    fn context_map(context: &[u8]) -> BTreeMap<String, String> {
        BTreeMap::from([(CONTEXT_KEY.to_owned(), hex::encode(context))])
    }

    /// Adds what to do next to the errors people hit with KMS keys.
    fn explain(&self, err: Error) -> Error {
        let hint = match err.kind() {
            ErrorKind::AccessDenied => {
                " (is the key enabled, and may this principal use kms:Encrypt/kms:Decrypt on it?)"
            }
            ErrorKind::NotFound => " (check kms_key_id: key id, ARN or alias/NAME, and region)",
            ErrorKind::Integrity => {
                " (the blob was sealed by another KMS key or for another namespace, or is damaged)"
            }
            _ => "",
        };
        if hint.is_empty() {
            return err;
        }
        error::rekind(&err, err.kind(), format!("{}{hint}", err.message()))
    }
}

/// Versions: KMS keeps every generation of key material and picks the right one from the
/// blob, so a master "version" here is `1 + the number of rotations` KMS lists for the key.
/// [`KeyProvider::rotate`] asks KMS for an on-demand rotation (`kms:RotateKeyOnDemand`; AWS
/// allows a limited number per key) and the keyring then rewraps every KEK under the new
/// material. Blobs from any earlier generation keep unwrapping.
#[async_trait]
impl KeyProvider for KmsMasterKey {
    fn id(&self) -> &KeyId {
        &self.provider_id
    }

    async fn current_version(&self) -> Result<KeyVersion> {
        let mut cached = self.version.lock().await;
        if let Some(v) = *cached {
            return Ok(v);
        }
        let info = self.describe().await?;
        let rotations = self.rotation_count(&info.key_id).await?;
        let v = KeyVersion::new(rotations.saturating_add(1))?;
        *cached = Some(v);
        Ok(v)
    }

    async fn wrap(&self, context: &[u8], key: &Secret) -> Result<WrappedKey> {
        let master_version = self.current_version().await?;
        let ciphertext = self.encrypt_key(key, &Self::context_map(context)).await?;
        Ok(WrappedKey {
            provider: self.provider_id.clone(),
            master_version,
            ciphertext,
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
        self.decrypt_key(&wrapped.ciphertext, &Self::context_map(context))
            .await
    }

    async fn rotate(&self) -> Result<KeyVersion> {
        let mut cached = self.version.lock().await;
        let info = self.ensure_usable().await?;
        let before = match *cached {
            Some(v) => v,
            None => KeyVersion::new(self.rotation_count(&info.key_id).await?.saturating_add(1))?,
        };
        self.client
            .rotate_key_on_demand()
            .key_id(&info.key_id)
            .send()
            .await
            .map_err(|e| self.explain(error::from_sdk(self.call("RotateKeyOnDemand"), e)))?;
        // AWS finishes the rotation in the background; the new material is used for every
        // Encrypt once it is done, and old blobs decrypt either way.
        let next = before.next()?;
        *cached = Some(next);
        Ok(next)
    }
}
