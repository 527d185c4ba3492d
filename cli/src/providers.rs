//! The provider crates this build registers, so a `--config` file can name their stores
//! (`provider: aws`). Each is a cargo feature of `sealbox-cli`, on by default.

use sealbox::Result;

/// Registers every provider crate compiled in into the process-wide registry that
/// `Sealbox::from_config` reads.
pub fn register() -> Result<()> {
    #[cfg(feature = "aws")]
    sealbox_aws::register_global()?;
    Ok(())
}

/// The names `register` adds, for messages and tests.
#[cfg_attr(not(test), allow(dead_code))]
pub const NAMES: &[&str] = &[
    #[cfg(feature = "aws")]
    "aws",
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
        assert!(registry.stores.names().any(|n| n == "local"));
    }
}
