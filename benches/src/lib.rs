//! Shared helpers for the benches.

use std::path::Path;
use std::sync::Arc;

use sealbox::keys::{KeyId, KeyProvider, LocalKeyFile};
use sealbox::store::SecretName;
use sealbox::store::local::LocalVault;
use sealbox::{Result, Secret};

/// The name of the `i`th bench secret.
pub fn name(i: usize) -> String {
    format!("predis/prod/service-{i:04}/api-key")
}

/// A 64-byte bench value.
pub fn value() -> Secret {
    Secret::init_with(64, |b| {
        b.iter_mut().enumerate().for_each(|(i, x)| *x = i as u8);
        Ok(())
    })
    .expect("a 64-byte secret")
}

/// A new local vault in `dir` (master key file included) holding `count` secrets, named by
/// [`name`], each [`value`].
pub async fn filled_vault(dir: &Path, count: usize) -> Result<Arc<LocalVault>> {
    let key: Arc<dyn KeyProvider> = Arc::new(LocalKeyFile::open_or_create(
        KeyId::new("local")?,
        dir.join("master.key"),
    )?);
    let vault = Arc::new(LocalVault::create(dir, key).await?);
    let items = (0..count)
        .map(|i| Ok((SecretName::new(name(i))?, value())))
        .collect::<Result<_>>()?;
    vault.import(items).await?;
    Ok(vault)
}

/// The `MODE COUNT` arguments of an instruction-count driver (`benches/examples`), `MODE`
/// one of `modes`; anything else prints the usage and exits with status 2.
pub fn mode_and_count(program: &str, modes: &[&str]) -> (String, usize) {
    let mut args = std::env::args().skip(1);
    match (args.next(), args.next().and_then(|n| n.parse().ok())) {
        (Some(mode), Some(count)) if modes.contains(&mode.as_str()) => (mode, count),
        _ => {
            eprintln!("usage: {program} {} COUNT", modes.join("|"));
            std::process::exit(2);
        }
    }
}
