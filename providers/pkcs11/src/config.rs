//! `Pkcs11Config`: which module, token, PIN and key; and how a `master_key:` block becomes one.
//!
//! ```yaml
//! master_key:
//!   provider: pkcs11
//!   module: /usr/lib/softhsm/libsofthsm2.so   # the HSM vendor's PKCS#11 module
//!   token_label: sealbox                       # or slot: 0x2d5a0a1b (the slot id)
//!   pin_file: /run/secrets/hsm-pin             # or pin: ${HSM_PIN}
//!   key_label: sealbox-master                  # version 1; rotation adds sealbox-master.v2, ...
//!   key_id: 5345414c                           # optional CKA_ID (hex) every version carries
//! ```

use std::path::PathBuf;

use sealbox::config::ProviderConfig;
use sealbox::{Error, Result, SecretString};

/// Which token to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSelector {
    /// The token whose label (CKA_LABEL of the token, `softhsm2-util --init-token --label`) is
    /// this.
    Label(String),
    /// The slot with this id (`pkcs11-tool --list-slots`).
    Slot(u64),
}

/// Settings of the PKCS#11 key provider. `Debug` never shows the PIN.
#[derive(Debug)]
pub struct Pkcs11Config {
    /// Path of the PKCS#11 module (`.so`) the HSM vendor ships.
    pub module: PathBuf,
    /// Which token.
    pub token: TokenSelector,
    /// The user PIN, in locked memory.
    pub pin: SecretString,
    /// The label of the master key's first version; version N (N >= 2) is `LABEL.vN`.
    pub key_label: String,
    /// An optional CKA_ID that every version of the key carries, to tell it from other keys
    /// with the same label.
    pub key_id: Option<Vec<u8>>,
}

impl Pkcs11Config {
    /// The settings of a `master_key: {provider: pkcs11, ...}` block. The PIN is `pin`
    /// (`${VAR}` works) or `pin_file`; errors name the key, never the PIN.
    pub fn from_provider_config(c: &ProviderConfig) -> Result<Pkcs11Config> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)] // the module path and the PIN are read through ProviderConfig
        struct Block {
            module: String,
            token_label: Option<String>,
            slot: Option<serde_json::Value>,
            pin: Option<String>,
            pin_file: Option<String>,
            key_label: String,
            key_id: Option<String>,
        }
        let at = c.key_path();
        let block: Block = c.deserialize()?;
        let module = c
            .path("module")?
            .ok_or_else(|| Error::config(format!("{at}.module: required")))?;
        let token = match (block.token_label, block.slot) {
            (Some(label), None) => TokenSelector::Label(label),
            (None, Some(slot)) => TokenSelector::Slot(slot_id(&slot).ok_or_else(|| {
                Error::config(format!(
                    "{at}.slot: expected a slot id (a number, decimal or 0x hex)"
                ))
            })?),
            _ => {
                return Err(Error::config(format!(
                    "{at}: set either token_label or slot"
                )));
            }
        };
        let pin = c.secret("pin")?.ok_or_else(|| {
            Error::config(format!(
                "{at}: set pin (e.g. pin: ${{HSM_PIN}}) or pin_file (a file holding the PIN)"
            ))
        })?;
        let key_id = block
            .key_id
            .map(|h| {
                hex::decode(h.trim_start_matches("0x")).map_err(|_| {
                    Error::config(format!("{at}.key_id: expected hex digits (the CKA_ID)"))
                })
            })
            .transpose()?;
        let config = Pkcs11Config {
            module,
            token,
            pin,
            key_label: block.key_label,
            key_id,
        };
        config
            .validate()
            .map_err(|e| Error::config(format!("{at}: {}", e.message())))?;
        Ok(config)
    }

    /// Checks what can be checked without the token.
    pub fn validate(&self) -> Result<()> {
        if self.key_label.is_empty() || self.key_label.len() > 100 {
            return Err(Error::config("key_label must be 1 to 100 characters"));
        }
        if !self
            .key_label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:@+".contains(&b))
        {
            return Err(Error::config(
                "key_label may contain only ASCII letters, digits and . _ - / : @ + (it names \
                 the key in wrapped records)",
            ));
        }
        if self.pin.is_empty() {
            return Err(Error::config("the PIN is empty"));
        }
        Ok(())
    }
}

fn slot_id(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => s.parse().ok(),
        },
        _ => None,
    }
}
