//! Migration of a vault written by the previous layout.

#[path = "support/v3_fixture.rs"]
mod v3_fixture;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sealbox::Secret;
use sealbox::keys::{KeyId, KeyProvider, LocalKeyFile};
use sealbox::store::local::LocalVault;
use sealbox::store::{DeleteOptions, PutOptions, SecretName, SecretStore};

fn key_at(path: &Path) -> Arc<dyn KeyProvider> {
    Arc::new(LocalKeyFile::open_or_create(KeyId::new("local").unwrap(), path).unwrap())
}

fn secret(v: &str) -> Secret {
    Secret::init_with(v.len(), |d| {
        d.copy_from_slice(v.as_bytes());
        Ok(())
    })
    .unwrap()
}

/// Writes the fixture's vault and key file into `$SEALBOX_FIXTURE_DIR` (run once, by the
/// schema-3 code, to make `fixtures/vault-v3.sqlite3`).
#[tokio::test]
#[ignore = "generates the checked-in fixture"]
async fn generate_v3_fixture() {
    let dir = std::env::var("SEALBOX_FIXTURE_DIR").unwrap();
    let dir = Path::new(&dir);
    let vault = LocalVault::create(dir.join("vault-v3.sqlite3"), key_at(&dir.join("vault-v3.key")))
        .await
        .unwrap();
    for i in 0..v3_fixture::SECRETS {
        let e = v3_fixture::expected(i);
        let name: SecretName = e.name.parse().unwrap();
        for v in 1..=e.values.len() as i64 {
            let options = PutOptions {
                stages: v3_fixture::stages_for(&e, v),
                description: if v == 1 { e.description.clone() } else { None },
                tags: if v == 1 { e.tags.clone() } else { Default::default() },
                ..PutOptions::default()
            };
            let info = vault
                .put(&name, &secret(&e.values[v as usize - 1]), &options)
                .await
                .unwrap();
            assert_eq!(info.version.as_str(), v.to_string());
        }
        if e.deleted {
            let options = DeleteOptions {
                force: false,
                recovery_window: Duration::from_secs(3650 * 86400),
            };
            vault.delete(&name, &options).await.unwrap();
        }
    }
    assert!(vault.verify().await.unwrap().is_ok());
}
