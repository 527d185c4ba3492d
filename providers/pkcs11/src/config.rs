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
        if c.value()
            .get("pin")
            .is_some_and(serde_json::Value::is_number)
        {
            // YAML reads `pin: 0123` as the number 123; a PIN is text.
            return Err(Error::config(format!(
                "{at}.pin: write the PIN as a quoted string (pin: \"0123\"), so that leading \
                 zeros are kept"
            )));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use sealbox::ExposeSecret;

    fn parse(value: serde_json::Value) -> Result<Pkcs11Config> {
        Pkcs11Config::from_provider_config(&ProviderConfig::new(
            "pkcs11",
            "secrets.config.master_key",
            value,
            Some(PathBuf::from("/etc/sealbox")),
        ))
    }

    #[test]
    fn a_block_becomes_a_config_and_its_errors_name_the_key_but_never_the_pin() {
        let c = parse(serde_json::json!({
            "module": "lib/softhsm2.so", "slot": "0x10", "pin": "0042", "key_label": "m",
            "key_id": "0a0b"
        }))
        .unwrap();
        assert_eq!(c.module, PathBuf::from("/etc/sealbox/lib/softhsm2.so"));
        assert_eq!(c.token, TokenSelector::Slot(16));
        assert_eq!(c.pin.expose_secret(), "0042");
        assert_eq!(c.key_id, Some(vec![10, 11]));
        assert!(!format!("{c:?}").contains("0042"));

        let base = serde_json::json!({
            "module": "/m.so", "token_label": "t", "key_label": "m", "pin": "1"
        });
        let with = |k: &str, v: serde_json::Value| {
            let mut b = base.clone();
            b[k] = v;
            parse(b).unwrap_err().message().to_owned()
        };
        let e = with("pin", serde_json::json!(987654));
        assert!(
            e.starts_with("secrets.config.master_key.pin: write the PIN"),
            "{e}"
        );
        assert!(!e.contains("987654"), "{e}");
        let mut no_pin = base.clone();
        no_pin.as_object_mut().unwrap().remove("pin");
        let e = parse(no_pin).unwrap_err().message().to_owned();
        assert!(e.contains("set pin"), "{e}");
        let e = with("slot", serde_json::json!(1));
        assert!(e.contains("either token_label or slot"), "{e}");
        let e = with("key_label", serde_json::json!("has space"));
        assert!(e.contains("key_label may contain only"), "{e}");
        let e = with("pin_code", serde_json::json!("s3cr3t-pin"));
        assert!(e.contains("unknown field `pin_code`"), "{e}");
        assert!(!e.contains("s3cr3t-pin"), "{e}");
    }
}
