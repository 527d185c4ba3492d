//! The audit chain key a vault keeps for the audit logs of clients configured with it.
//!
//! The key is 32 random bytes made once per vault, wrapped by the vault's master key provider
//! (so a KMS or PKCS#11 master, which never reveals its key bytes, wraps it like a KEK) and kept
//! in the `meta` table. Every process that opens the vault with its master key unwraps the same
//! key, so every writer of one log signs one chain, and nothing beside the log holds the key:
//! whoever can write the log's directory cannot sign lines without the master key. Deriving it
//! from a KEK instead would tie it to a key that rotates and is destroyed on retirement; the
//! wrapped key outlives both, and is rewrapped under the current master whenever the master is
//! rotated or retired, so old logs keep verifying.

use rusqlite::OptionalExtension;

use super::schema::sql_error;
use super::{LocalVault, blocking, write_tx};
use crate::error::{Error, Result};
use crate::keys::WrappedKey;
use crate::secret::Secret;

/// The `meta` row holding the wrapped key (JSON of a [`WrappedKey`]).
const META_KEY: &str = "audit_chain_key";

/// The wrapping context: what the key is for, and which vault it belongs to.
fn context(store_id: &str) -> Vec<u8> {
    format!("sealbox/audit-chain-key/v1/{store_id}").into_bytes()
}

impl LocalVault {
    /// The audit chain key of this vault: unwrapped by the master key provider (one call to a
    /// KMS or HSM), created and stored wrapped on first use. Processes racing to create it
    /// all end up with the one that was stored first.
    pub async fn audit_chain_key(&self) -> Result<Secret> {
        let provider = self.inner.keyring.provider().clone();
        let context = context(&self.inner.store_id);
        let wrapped = match self.wrapped_audit_key().await? {
            Some(w) => w,
            None => {
                let fresh = provider.wrap(&context, &Secret::random(32)?).await?;
                let text = serde_json::to_string(&fresh)
                    .map_err(|_| Error::internal("serialising a wrapped key"))?;
                write_tx(&self.inner, "storing the audit chain key", move |tx| {
                    tx.execute(
                        "INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)",
                        rusqlite::params![META_KEY, text],
                    )
                    .map_err(|e| sql_error("storing the audit chain key", e))?;
                    Ok(())
                })
                .await?;
                self.wrapped_audit_key().await?.ok_or_else(|| {
                    Error::internal("the audit chain key was stored but not found")
                })?
            }
        };
        provider.unwrap(&context, &wrapped).await
    }

    /// Rewraps the audit chain key under the current master version when it is under an
    /// older one: after a master rotation, and before a retirement removes the old versions.
    pub(crate) async fn rewrap_audit_chain_key(&self) -> Result<()> {
        let Some(wrapped) = self.wrapped_audit_key().await? else {
            return Ok(());
        };
        let provider = self.inner.keyring.provider().clone();
        let current = provider.current_version().await?;
        if wrapped.provider == *provider.id() && wrapped.master_version == current {
            return Ok(());
        }
        let context = context(&self.inner.store_id);
        let key = provider.unwrap(&context, &wrapped).await?;
        let rewrapped = provider.wrap(&context, &key).await?;
        let (old, new) = match (
            serde_json::to_string(&wrapped),
            serde_json::to_string(&rewrapped),
        ) {
            (Ok(old), Ok(new)) => (old, new),
            _ => return Err(Error::internal("serialising a wrapped key")),
        };
        write_tx(&self.inner, "rewrapping the audit chain key", move |tx| {
            // Only over what was read: another process may have rewrapped it meanwhile.
            tx.execute(
                "UPDATE meta SET value = ?2 WHERE key = ?1 AND value = ?3",
                rusqlite::params![META_KEY, new, old],
            )
            .map_err(|e| sql_error("rewrapping the audit chain key", e))?;
            Ok(())
        })
        .await
    }

    async fn wrapped_audit_key(&self) -> Result<Option<WrappedKey>> {
        let inner = self.inner.clone();
        let text: Option<String> = blocking(move || {
            let conn = inner.pool.get()?;
            conn.query_row("SELECT value FROM meta WHERE key = ?1", [META_KEY], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| sql_error("reading the audit chain key", e))
        })
        .await?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|_| {
                Error::new(
                    crate::ErrorKind::Integrity,
                    format!(
                        "local vault {}: the stored audit chain key is damaged; restore the \
                         vault from a backup",
                        self.path().display()
                    ),
                )
            })
        })
        .transpose()
    }
}
