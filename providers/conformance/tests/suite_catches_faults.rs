//! The suite is only worth something if it fails broken stores: each fault below is injected
//! into an otherwise correct store and must be reported by the check that owns the behaviour.

use async_trait::async_trait;
use sealbox::Result;
use sealbox::Secret;
use sealbox::store::memory::MemoryStore;
use sealbox::store::{
    Capabilities, DeleteOptions, ListOptions, ListPage, PutOptions, SecretMetadata, SecretName,
    SecretStore, SecretVersion, Stage, VersionId, VersionInfo, VersionSelector,
};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    None,
    IgnoresCompareAndSet,
    ListRepeatsAnEntry,
    SoftDeleteKeepsReading,
    PendingPutMovesCurrent,
    DropsLargeValueTail,
}

#[derive(Debug)]
struct Faulty {
    inner: MemoryStore,
    fault: Fault,
}

#[async_trait]
impl SecretStore for Faulty {
    fn kind(&self) -> &'static str {
        "faulty"
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn get(&self, name: &SecretName, selector: &VersionSelector) -> Result<SecretVersion> {
        if self.fault == Fault::SoftDeleteKeepsReading
            && let Ok(meta) = self.inner.describe(name).await
            && meta.deleted.is_some()
        {
            self.inner.restore(name).await?;
            let v = self.inner.get(name, selector).await;
            self.inner.delete(name, &DeleteOptions::default()).await?;
            return v;
        }
        self.inner.get(name, selector).await
    }
    async fn put(
        &self,
        name: &SecretName,
        value: &Secret,
        options: &PutOptions,
    ) -> Result<VersionInfo> {
        let mut options = options.clone();
        match self.fault {
            Fault::IgnoresCompareAndSet => options.expected_current = None,
            Fault::PendingPutMovesCurrent => options.stages.push(Stage::Current),
            Fault::DropsLargeValueTail if value.len() > 1024 => {
                let short = Secret::init_with(1024, |d| {
                    d.copy_from_slice(&sealbox::ExposeSecret::expose_secret(value)[..1024]);
                    Ok(())
                })?;
                return self.inner.put(name, &short, &options).await;
            }
            _ => {}
        }
        self.inner.put(name, value, &options).await
    }
    async fn describe(&self, name: &SecretName) -> Result<SecretMetadata> {
        self.inner.describe(name).await
    }
    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        let mut page = self.inner.list(options).await?;
        if self.fault == Fault::ListRepeatsAnEntry
            && options.page_token.is_some()
            && let Some(first) = page.entries.first().cloned()
        {
            page.entries.insert(0, first);
            page.entries
                .truncate(options.page_size.unwrap_or(usize::MAX));
        }
        Ok(page)
    }
    async fn delete(&self, name: &SecretName, options: &DeleteOptions) -> Result<()> {
        self.inner.delete(name, options).await
    }
    async fn restore(&self, name: &SecretName) -> Result<()> {
        self.inner.restore(name).await
    }
    async fn set_stage(
        &self,
        name: &SecretName,
        stage: &Stage,
        version: Option<&VersionId>,
    ) -> Result<()> {
        self.inner.set_stage(name, stage, version).await
    }
}

async fn run(fault: Fault) -> std::result::Result<(), sealbox_conformance::Failure> {
    let store = Faulty {
        inner: MemoryStore::new(),
        fault,
    };
    sealbox_conformance::run_all(&store, store.capabilities(), "faults").await
}

#[tokio::test]
async fn a_correct_store_passes() {
    run(Fault::None).await.unwrap();
}

#[tokio::test]
async fn each_fault_is_reported_by_its_check() {
    for (fault, check) in [
        (Fault::IgnoresCompareAndSet, "compare_and_set"),
        (Fault::ListRepeatsAnEntry, "list_prefix_and_paging"),
        (Fault::SoftDeleteKeepsReading, "delete_restore_force"),
        (Fault::PendingPutMovesCurrent, "stage_moves"),
        (Fault::DropsLargeValueTail, "large_and_binary_values"),
    ] {
        let failure = run(fault)
            .await
            .expect_err(&format!("{fault:?} went unnoticed"));
        assert_eq!(failure.check, check, "{fault:?}: {failure}");
    }
}
