//! The built-in key providers a store's `master_key:` block can name. Provider crates register
//! theirs in the same registry (`aws-kms` from `sealbox-aws`, `pkcs11` from `sealbox-pkcs11`).
//!
//! ```yaml
//! secrets:
//!   provider: local
//!   config:
//!     path: ./vault
//!     master_key: {provider: key_file, path: ./master.key}
//!     # or {provider: env, var: SEALBOX_MASTER_KEY}
//!     # or {provider: passphrase, passphrase_file: /run/secrets/pass, params_file: ./params.json,
//!     #     cost: {m_cost_kib: 65536, t_cost: 3, p_cost: 4}}
//!     # or {provider: aws-kms, key_id: alias/sealbox, region: eu-west-1}
//!     # or {provider: pkcs11, module: /usr/lib/softhsm/libsofthsm2.so, token_label: sealbox,
//!     #     pin_file: /run/secrets/hsm-pin, key_label: sealbox-master}
//! ```
//!
//! Every built-in provider names its master key [`LOCAL_MASTER_KEY_ID`], as the older flat
//! settings of the `local` store (`key_file:`, `key_env:`, `passphrase:`) do, so a vault keeps
//! opening when its config moves from those settings to a `master_key:` block.

use std::sync::Arc;

use super::{LOCAL_MASTER_KEY_ID, ProviderConfig, ProviderRegistry};
use crate::error::{Error, Result};
use crate::keys::{EnvKey, KeyId, KeyProvider, LocalKeyFile, PassphraseCost, PassphraseKey};
use crate::secret::SecretString;

/// Registers the `key_file`, `passphrase` and `env` key providers in `registry`.
pub fn register_builtin_key_providers(registry: &mut ProviderRegistry) {
    registry
        .keys
        .register("key_file", |c: ProviderConfig| async move { key_file(&c) });
    registry.keys.register(
        "passphrase",
        |c: ProviderConfig| async move { passphrase(&c) },
    );
    registry
        .keys
        .register("env", |c: ProviderConfig| async move { env(&c) });
}

fn id() -> Result<KeyId> {
    KeyId::new(LOCAL_MASTER_KEY_ID)
}

fn required<T>(c: &ProviderConfig, key: &str, v: Option<T>) -> Result<T> {
    v.ok_or_else(|| Error::config(format!("{}.{key}: required", c.key_path())))
}

/// `{provider: key_file, path: ./master.key}`: a sealbox key file, created when absent unless
/// the store says `create: false`.
fn key_file(c: &ProviderConfig) -> Result<Arc<dyn KeyProvider>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // read through ProviderConfig::path so it resolves
    struct KeyFileConfig {
        path: String,
    }
    let _: KeyFileConfig = c.deserialize()?;
    let path = required(c, "path", c.path("path")?)?;
    let key = if c.may_create() {
        LocalKeyFile::open_or_create(id()?, &path)?
    } else {
        LocalKeyFile::open(id()?, &path)?
    };
    Ok(Arc::new(key))
}

/// `{provider: env, var: NAME}`: base64 of 32 bytes in an environment variable.
fn env(c: &ProviderConfig) -> Result<Arc<dyn KeyProvider>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct EnvConfig {
        var: String,
    }
    let parsed: EnvConfig = c.deserialize()?;
    Ok(Arc::new(EnvKey::from_env(id()?, &parsed.var)?))
}

/// `{provider: passphrase, passphrase | passphrase_file | passphrase_env, params_file, cost}`:
/// Argon2id from a passphrase; `cost` applies when the parameters file is created.
fn passphrase(c: &ProviderConfig) -> Result<Arc<dyn KeyProvider>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // secrets and paths are read through ProviderConfig
    struct PassphraseConfig {
        passphrase: Option<String>,
        passphrase_file: Option<String>,
        passphrase_env: Option<String>,
        params_file: Option<String>,
        cost: Option<Cost>,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Cost {
        m_cost_kib: u32,
        t_cost: u32,
        p_cost: u32,
    }
    let at = c.key_path();
    let parsed: PassphraseConfig = c.deserialize()?;
    let inline = c.secret("passphrase")?;
    let passphrase = match (inline, parsed.passphrase_env) {
        (Some(_), Some(_)) => {
            return Err(Error::config(format!(
                "{at}: set one of passphrase, passphrase_file or passphrase_env"
            )));
        }
        (Some(p), None) => p,
        (None, Some(var)) => {
            let value = std::env::var(&var).map_err(|_| {
                Error::config(format!(
                    "{at}.passphrase_env: environment variable {var} is not set (or not UTF-8)"
                ))
            })?;
            SecretString::from_string(value)?
        }
        (None, None) => {
            return Err(Error::config(format!(
                "{at}: set one of passphrase, passphrase_file or passphrase_env"
            )));
        }
    };
    let params = required(c, "params_file", c.path("params_file")?)?;
    let key = if params.exists() || !c.may_create() {
        PassphraseKey::open_file(id()?, &passphrase, &params)?
    } else {
        let cost = parsed
            .cost
            .map_or_else(PassphraseCost::default, |k| PassphraseCost {
                m_cost_kib: k.m_cost_kib,
                t_cost: k.t_cost,
                p_cost: k.p_cost,
            });
        PassphraseKey::create_file(id()?, &passphrase, cost, &params)
            .map_err(|e| Error::new(e.kind(), format!("{at}: {}", e.message())))?
    };
    Ok(Arc::new(key))
}
