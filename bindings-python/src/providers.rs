//! Store providers this binding is built with, registered in the global config registry at
//! import so that `Sealbox.open(config)` knows them: the core registers its built-ins
//! (`memory`, `env`, `file`, `local`); `aws` comes from `sealbox-aws`.

use sealbox::config::ProviderRegistry;

/// Registers the providers missing from the global registry.
pub(crate) fn register_missing() {
    let mut registry = ProviderRegistry::global()
        .write()
        .unwrap_or_else(|p| p.into_inner());
    if !registry.stores.names().any(|n| n == "aws") {
        sealbox_aws::register(&mut registry);
    }
}
