//! Provider crates this library is built with, registered in the global config registry
//! before `sb_client_open` reads a config, so its `master_key: {provider: pkcs11}` and its
//! `provider: gcp`, `vault` and `azure` stores work. The `pkcs11` cargo feature (on by default)
//! adds the PKCS#11 (HSM) key provider, the `gcp` feature (on by default) the GCP Secret Manager
//! store, the `vault` feature (on by default) the HashiCorp Vault store and Vault Transit key
//! provider, the `azure` feature (on by default) the Azure Key Vault store.

/// Registers the providers missing from the global registry (idempotent, cheap).
pub(crate) fn register_missing() {
    #[cfg(feature = "gcp")]
    {
        use sealbox::config::ProviderRegistry;
        let present = ProviderRegistry::global_snapshot()
            .stores
            .names()
            .any(|n| n == sealbox_gcp::PROVIDER);
        if !present {
            let mut registry = ProviderRegistry::global()
                .write()
                .unwrap_or_else(|p| p.into_inner());
            sealbox_gcp::register(&mut registry);
        }
    }
    #[cfg(feature = "vault")]
    {
        use sealbox::config::ProviderRegistry;
        let present = ProviderRegistry::global_snapshot()
            .stores
            .names()
            .any(|n| n == sealbox_vault::PROVIDER);
        if !present {
            let mut registry = ProviderRegistry::global()
                .write()
                .unwrap_or_else(|p| p.into_inner());
            sealbox_vault::register(&mut registry);
        }
    }
    #[cfg(feature = "azure")]
    {
        use sealbox::config::ProviderRegistry;
        let present = ProviderRegistry::global_snapshot()
            .stores
            .names()
            .any(|n| n == sealbox_azure::PROVIDER);
        if !present {
            let mut registry = ProviderRegistry::global()
                .write()
                .unwrap_or_else(|p| p.into_inner());
            sealbox_azure::register(&mut registry);
        }
    }
    #[cfg(feature = "pkcs11")]
    {
        use sealbox::config::ProviderRegistry;
        let present = ProviderRegistry::global_snapshot()
            .keys
            .names()
            .any(|n| n == sealbox_pkcs11::PROVIDER);
        if !present {
            let mut registry = ProviderRegistry::global()
                .write()
                .unwrap_or_else(|p| p.into_inner());
            sealbox_pkcs11::register(&mut registry);
        }
    }
}
