//! The provider crates this build registers, so a `--config` file can name their stores
//! (`provider: aws`), key providers (`master_key: {provider: pkcs11}`) and rotators
//! (`rotator: {postgres: {...}}`). Each is a cargo feature of `sealbox-cli`, on by default.

use sealbox::Result;

/// Registers every provider crate compiled in into the process-wide registry that
/// `Sealbox::from_config` reads.
pub fn register() -> Result<()> {
    #[cfg(feature = "aws")]
    sealbox_aws::register_global()?;
    #[cfg(feature = "gcp")]
    sealbox_gcp::register_global()?;
    #[cfg(feature = "vault")]
    sealbox_vault::register_global()?;
    #[cfg(feature = "azure")]
    sealbox_azure::register_global()?;
    #[cfg(feature = "pkcs11")]
    sealbox_pkcs11::register_global()?;
    #[cfg(feature = "db-rotators")]
    sealbox_db_rotators::register_global()?;
    Ok(())
}

/// The store providers `register` adds, for messages and tests.
#[cfg_attr(not(test), allow(dead_code))]
pub const NAMES: &[&str] = &[
    #[cfg(feature = "aws")]
    "aws",
    #[cfg(feature = "gcp")]
    "gcp",
    #[cfg(feature = "vault")]
    "vault",
    #[cfg(feature = "azure")]
    "azure",
];

/// The rotators `register` adds (beside the built-in `generated` and `exec`).
#[cfg_attr(not(test), allow(dead_code))]
pub const ROTATOR_NAMES: &[&str] = &[
    #[cfg(feature = "db-rotators")]
    "postgres",
    #[cfg(feature = "db-rotators")]
    "mysql",
];

/// The key providers `register` adds.
#[cfg_attr(not(test), allow(dead_code))]
pub const KEY_NAMES: &[&str] = &[
    #[cfg(feature = "aws")]
    "aws-kms",
    #[cfg(feature = "pkcs11")]
    "pkcs11",
    #[cfg(feature = "vault")]
    "vault-transit",
];

#[cfg(test)]
mod tests {
    use super::*;
    use sealbox::config::ProviderRegistry;

    #[test]
    fn registered_providers_are_in_the_global_registry() {
        register().unwrap();
        let registry = ProviderRegistry::global_snapshot();
        for name in NAMES {
            assert!(registry.stores.names().any(|n| n == *name), "{name}");
        }
        for name in KEY_NAMES {
            assert!(registry.keys.names().any(|n| n == *name), "{name}");
        }
        assert!(registry.stores.names().any(|n| n == "local"));
        assert!(registry.keys.names().any(|n| n == "key_file"));
        let rotators = sealbox::rotation::RotatorRegistry::global_snapshot();
        for name in ROTATOR_NAMES {
            assert!(rotators.names().any(|n| n == *name), "{name}");
        }
    }
}
