//! Providers this binding is built with, registered in the global config registry at import
//! so that `Sealbox.open(config)` knows them: the core registers its built-ins (stores
//! `memory`, `env`, `file`, `local`; key providers `key_file`, `passphrase`, `env`); `aws` and
//! the `aws-kms` key provider come from `sealbox-aws`, `gcp` from `sealbox-gcp`, `vault` and the
//! `vault-transit` key provider from `sealbox-vault`, `azure` from `sealbox-azure`, the `pkcs11` key
//! provider from `sealbox-pkcs11`.

use sealbox::config::ProviderRegistry;

/// Registers the providers missing from the global registry.
pub(crate) fn register_missing() {
    let mut registry = ProviderRegistry::global()
        .write()
        .unwrap_or_else(|p| p.into_inner());
    if !registry.stores.names().any(|n| n == "aws") {
        sealbox_aws::register(&mut registry);
    }
    if !registry.stores.names().any(|n| n == sealbox_gcp::PROVIDER) {
        sealbox_gcp::register(&mut registry);
    }
    if !registry
        .stores
        .names()
        .any(|n| n == sealbox_vault::PROVIDER)
    {
        sealbox_vault::register(&mut registry);
    }
    if !registry
        .stores
        .names()
        .any(|n| n == sealbox_azure::PROVIDER)
    {
        sealbox_azure::register(&mut registry);
    }
    if !registry.keys.names().any(|n| n == sealbox_pkcs11::PROVIDER) {
        sealbox_pkcs11::register(&mut registry);
    }
}
