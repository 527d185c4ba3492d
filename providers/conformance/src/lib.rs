//! The behaviour suite every sealbox store runs: `pub async fn`s taking `&dyn SecretStore` plus
//! its capabilities. This crate is the one place that says what a store must do.
