//! # sealbox-pkcs11
//!
//! A PKCS#11 token (an HSM: AWS CloudHSM, YubiHSM 2, Thales Luna, Entrust nShield, or SoftHSM2
//! for development) as sealbox's master key: [`Pkcs11MasterKey`] keeps a non-extractable
//! AES-256 key in the token and wraps the local vault's KEKs with it inside the token
//! (`CKM_AES_GCM`, the wrap context as AAD). The master key never enters this process.
//!
//! In a config file, after [`register`]:
//!
//! ```yaml
//! secrets:
//!   provider: local
//!   config:
//!     path: ./vault
//!     master_key:
//!       provider: pkcs11
//!       module: /usr/lib/softhsm/libsofthsm2.so
//!       token_label: sealbox
//!       pin_file: /run/secrets/hsm-pin
//!       key_label: sealbox-master
//! ```
//!
//! Calls into the module are synchronous (a local token answers in microseconds; a network
//! HSM in about a millisecond) and happen once per namespace KEK unwrap, which the keyring
//! caches. See the crate README for what the token holds, rotation, and the errors.
#![warn(missing_docs)]

mod config;
mod error;
mod key;
mod token;

pub use config::{Pkcs11Config, TokenSelector};
pub use key::Pkcs11MasterKey;

use std::sync::Arc;

use sealbox::config::{ProviderConfig, ProviderRegistry};
use sealbox::keys::KeyProvider;

/// The key provider's name in a `master_key:` block (`provider: pkcs11`).
pub const PROVIDER: &str = "pkcs11";

/// Registers the `pkcs11` key provider:
///
/// ```
/// let mut registry = sealbox::config::ProviderRegistry::with_builtins();
/// sealbox_pkcs11::register(&mut registry);
/// assert!(registry.keys.names().any(|n| n == "pkcs11"));
/// ```
///
/// The block's settings are those of [`Pkcs11Config`]: `module`, `token_label` or `slot`,
/// `pin` or `pin_file`, `key_label`, optional `key_id` (hex). When the local store creates a
/// new vault and the token has no key with that label, the key is generated in the token
/// (AES-256, sensitive, never extractable); for an existing vault a missing key is
/// `NotFound`.
pub fn register(registry: &mut ProviderRegistry) {
    registry
        .keys
        .register(PROVIDER, |c: ProviderConfig| async move {
            let config = Pkcs11Config::from_provider_config(&c)?;
            // A new vault (and only a new vault) may generate its key in the token.
            let key = if c.may_create() {
                Pkcs11MasterKey::open_or_create(config)?
            } else {
                Pkcs11MasterKey::open(config)?
            };
            Ok(Arc::new(key) as Arc<dyn KeyProvider>)
        });
}

/// [`register`] into the process-wide registry that `Sealbox::from_config` uses.
pub fn register_global() -> sealbox::Result<()> {
    let mut registry = ProviderRegistry::global()
        .write()
        .map_err(|_| sealbox::Error::internal("the global provider registry lock is poisoned"))?;
    register(&mut registry);
    Ok(())
}
