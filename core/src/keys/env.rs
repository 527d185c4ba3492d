//! [`EnvKey`]: a master key given as base64 in an environment variable (containers, CI).
//!
//! The variable must decode to exactly 32 bytes. The decoded key goes straight into locked
//! memory and the copy of the variable's text that Rust hands us is wiped; the process
//! environment block itself cannot be wiped (it belongs to the C runtime and is visible in
//! `/proc/PID/environ` to the same user), which is the price of this provider.
//!
//! One version; [`KeyProvider::rotate`](super::KeyProvider::rotate) returns `Unsupported`.
//!
//! Erasure: it holds no namespace keys, so erasing a namespace destroys its KEKs in the vault
//! file only and reports `backups_covered: false`: a copy of the vault taken before, with the
//! same variable, still reads the namespace. Use the local key file where erasure must reach
//! backups.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::{Zeroize, Zeroizing};

use super::data_key::{DataKey, KEY_LEN};
use super::ids::{KeyId, KeyVersion};
use super::provider::{MasterKeys, local_provider};
use crate::error::{Error, Result};
use crate::secret::Secret;

/// A master key from an environment variable holding base64 of 32 bytes.
#[derive(Debug)]
pub struct EnvKey {
    keys: MasterKeys,
    /// The variable it was read from, to read it again in a forked child.
    var: Option<String>,
}

impl EnvKey {
    /// Reads `var`. Errors: `Config` if it is unset, not base64, or not 32 bytes; the message
    /// names the variable, never its content.
    pub fn from_env(id: KeyId, var: &str) -> Result<EnvKey> {
        let mut text = std::env::var(var).map_err(|_| {
            Error::config(format!(
                "environment variable {var} is not set (or not UTF-8); set it to base64 of 32 \
                 random bytes, e.g. `head -c32 /dev/urandom | base64`"
            ))
        })?;
        let key = Self::decode(id, text.trim(), var);
        text.zeroize();
        let mut key = key?;
        key.var = Some(var.to_owned());
        Ok(key)
    }

    /// Decodes base64 text directly (for keys handed over by other means). `source` names
    /// where it came from, for error messages.
    pub fn from_base64(id: KeyId, text: &str, source: &str) -> Result<EnvKey> {
        Self::decode(id, text.trim(), source)
    }

    fn decode(id: KeyId, text: &str, source: &str) -> Result<EnvKey> {
        // Room for a few bytes too many so a wrong length is reported as such.
        let mut buf = Zeroizing::new([0u8; KEY_LEN + 16]);
        let bad = || {
            Error::config(format!(
                "{source} must be base64 of exactly {KEY_LEN} bytes"
            ))
        };
        let n = STANDARD
            .decode_slice(text.as_bytes(), &mut buf[..])
            .map_err(|_| bad())?;
        if n != KEY_LEN {
            return Err(bad());
        }
        let material = Secret::key_with(KEY_LEN, |dst| {
            dst.copy_from_slice(&buf[..KEY_LEN]);
            Ok(())
        })?;
        let key = DataKey::from_secret(id.clone(), KeyVersion::FIRST, material)?;
        Ok(EnvKey {
            keys: MasterKeys::new(
                id,
                KeyVersion::FIRST,
                BTreeMap::from([(KeyVersion::FIRST, Arc::new(key))]),
            )?,
            var: None,
        })
    }
}

local_provider!(EnvKey, |this| Err(Error::new(
    crate::ErrorKind::Unsupported,
    format!(
        "environment key {} has one version and cannot rotate; set a new key and rewrap the keyring under a new provider",
        this.keys.id()
    )
)), reopen: |this| match &this.var {
    Some(var) => Ok(Arc::new(EnvKey::from_env(this.keys.id().clone(), var)?)),
    None => Err(Error::new(
        crate::ErrorKind::Unsupported,
        format!(
            "environment key {} was given as text, not read from a variable, and cannot be \
             read again; make it again in the child process",
            this.keys.id()
        ),
    )),
});
