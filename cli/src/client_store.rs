//! The `Sealbox` client seen as a [`SecretStore`], so the data commands run unchanged through a
//! client built from `--config` (and so through its policy, cache invalidation and audit log).
//!
//! `restore` and `set_stage` go through the client too, so they need the policy's `rotate`.

use async_trait::async_trait;
use sealbox::client::Sealbox;
use sealbox::store::{
    Capabilities, DeleteOptions, ListOptions, ListPage, PutOptions, SecretMetadata, SecretName,
    SecretStore, SecretVersion, Stage, VersionId, VersionInfo, VersionSelector,
};
use sealbox::{Error, Result};

/// A client behind the store trait.
#[derive(Debug)]
pub struct ClientStore {
    client: Sealbox,
}

impl ClientStore {
    /// Wraps `client`.
    pub fn new(client: Sealbox) -> ClientStore {
        ClientStore { client }
    }
}

#[async_trait]
impl SecretStore for ClientStore {
    fn kind(&self) -> &'static str {
        "client"
    }

    fn capabilities(&self) -> Capabilities {
        // The routed stores decide what they accept; the client checks each call itself.
        Capabilities::FULL
    }

    async fn get(&self, name: &SecretName, selector: &VersionSelector) -> Result<SecretVersion> {
        let handle = self.client.get_version(name.as_str(), selector).await?;
        Ok(SecretVersion {
            // The handle may be shared with the client's cache; the command gets its own copy
            // in locked memory.
            value: handle.secret().try_clone()?,
            version: handle.version().clone(),
            stages: handle.stages().to_vec(),
            created: None,
        })
    }

    async fn put(
        &self,
        name: &SecretName,
        value: &sealbox::Secret,
        options: &PutOptions,
    ) -> Result<VersionInfo> {
        self.client.put_with(name.as_str(), value, options).await
    }

    async fn describe(&self, name: &SecretName) -> Result<SecretMetadata> {
        self.client.describe(name.as_str()).await
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        if options.page_token.is_some() {
            return Err(Error::invalid_input(
                "the client lists every page at once; no page token is expected",
            ));
        }
        let entries = self
            .client
            .list(&options.prefix)
            .await?
            .into_iter()
            .filter(|e| options.include_deleted || !e.deleted)
            .collect();
        Ok(ListPage {
            entries,
            next_page_token: None,
        })
    }

    async fn delete(&self, name: &SecretName, options: &DeleteOptions) -> Result<()> {
        self.client.delete(name.as_str(), options).await
    }

    async fn restore(&self, name: &SecretName) -> Result<()> {
        self.client.restore(name.as_str()).await
    }

    async fn set_stage(
        &self,
        name: &SecretName,
        stage: &Stage,
        version: Option<&VersionId>,
    ) -> Result<()> {
        self.client.set_stage(name.as_str(), stage, version).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealbox::store::memory::MemoryStore;
    use sealbox::{ErrorKind, ExposeSecret, Secret};
    use std::sync::Arc;

    #[tokio::test]
    async fn data_operations_pass_through_the_client() {
        let client = Sealbox::builder()
            .store(Arc::new(MemoryStore::new()))
            .build()
            .unwrap();
        let store = ClientStore::new(client);
        let name = SecretName::new("predis/prod/api/auth-token").unwrap();
        let mut raw = *b"t0ken";
        let value = Secret::from_mut_slice(&mut raw).unwrap();
        let info = store
            .put(&name, &value, &PutOptions::default())
            .await
            .unwrap();
        let got = store.get(&name, &VersionSelector::Current).await.unwrap();
        assert_eq!(got.value.expose_secret(), b"t0ken");
        assert_eq!(got.version, info.version);
        let page = store.list(&ListOptions::default()).await.unwrap();
        assert_eq!(page.entries.len(), 1);
        // restore and stage moves reach the store through the client too
        let err = store.restore(&name).await.unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::Conflict,
            "restore of a live secret: {err}"
        );
        store
            .set_stage(&name, &Stage::Previous, Some(&info.version))
            .await
            .unwrap();
    }
}
