//! `MemoryStore`: a complete store held in process memory, for tests and embedding.
//!
//! Values are kept as [`Secret`]s (locked memory); nothing is persisted.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;

use super::{
    Capabilities, DeleteOptions, ListEntry, ListOptions, ListPage, PutOptions, SecretMetadata,
    SecretName, SecretStore, SecretVersion, Stage, VersionId, VersionInfo, VersionSelector,
};
use crate::error::{Error, ErrorKind, Result};
use crate::process::ProcessStamp;
use crate::secret::Secret;

/// An in-memory store with versions, stages, compare-and-set and soft delete.
///
/// ```
/// # tokio_test_block(async {
/// use sealbox::store::{memory::MemoryStore, SecretStore, SecretName, PutOptions, VersionSelector};
/// use sealbox::{Secret, ExposeSecret};
/// let store = MemoryStore::new();
/// let name = SecretName::new("app/api/token").unwrap();
/// let mut raw = *b"s3cr3t";
/// store.put(&name, &Secret::from_mut_slice(&mut raw).unwrap(), &PutOptions::default()).await.unwrap();
/// let got = store.get(&name, &VersionSelector::Current).await.unwrap();
/// assert_eq!(got.value.expose_secret(), b"s3cr3t");
/// # });
/// # fn tokio_test_block(f: impl std::future::Future<Output = ()>) {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<BTreeMap<SecretName, Entry>>,
    /// The values are wiped in a forked child: there every call answers `Forked`.
    stamp: ProcessStamp,
}

#[derive(Debug)]
struct Entry {
    versions: Vec<StoredVersion>,
    created: SystemTime,
    updated: SystemTime,
    last_rotated: Option<SystemTime>,
    description: Option<String>,
    tags: BTreeMap<String, String>,
    deleted: Option<SystemTime>,
    tokens: BTreeMap<String, VersionId>,
}

#[derive(Debug)]
struct StoredVersion {
    id: VersionId,
    value: Secret,
    stages: Vec<Stage>,
    created: SystemTime,
}

const DEFAULT_PAGE: usize = 100;

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<SecretName, Entry>>> {
        self.stamp.check("memory store")?;
        self.inner
            .lock()
            .map_err(|_| Error::internal("memory store lock poisoned"))
    }
}

fn not_found(name: &SecretName) -> Error {
    Error::not_found(format!("secret {name} does not exist"))
}

impl Entry {
    fn with_stage(&self, stage: &Stage) -> Option<usize> {
        self.versions.iter().position(|v| v.stages.contains(stage))
    }

    fn current_id(&self) -> Option<VersionId> {
        self.with_stage(&Stage::Current)
            .map(|i| self.versions[i].id.clone())
    }

    /// Puts `stage` on version `idx`, removing it elsewhere; CURRENT pushes the old current to
    /// PREVIOUS.
    fn move_stage(&mut self, stage: &Stage, idx: usize, now: SystemTime) {
        let old = self.with_stage(stage);
        if old == Some(idx) {
            return;
        }
        if let Some(old) = old {
            self.versions[old].stages.retain(|s| s != stage);
            if *stage == Stage::Current {
                for v in &mut self.versions {
                    v.stages.retain(|s| *s != Stage::Previous);
                }
                self.versions[old].stages.push(Stage::Previous);
                self.last_rotated = Some(now);
            }
        }
        self.versions[idx].stages.retain(|s| s != stage);
        self.versions[idx].stages.push(stage.clone());
    }

    fn metadata(&self, name: &SecretName) -> SecretMetadata {
        SecretMetadata {
            name: name.clone(),
            versions: self
                .versions
                .iter()
                .map(|v| VersionInfo {
                    version: v.id.clone(),
                    stages: v.stages.clone(),
                    created: Some(v.created),
                })
                .collect(),
            created: Some(self.created),
            updated: Some(self.updated),
            last_rotated: self.last_rotated,
            description: self.description.clone(),
            tags: self.tags.clone(),
            rotation_period: None,
            deleted: self.deleted,
        }
    }
}

#[async_trait]
impl SecretStore for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::FULL
    }

    async fn get(&self, name: &SecretName, selector: &VersionSelector) -> Result<SecretVersion> {
        let map = self.lock()?;
        let entry = map
            .get(name)
            .filter(|e| e.deleted.is_none())
            .ok_or_else(|| not_found(name))?;
        let idx = match selector {
            VersionSelector::Current => entry.with_stage(&Stage::Current),
            VersionSelector::Stage(stage) => entry.with_stage(stage),
            VersionSelector::Version(id) => entry.versions.iter().position(|v| &v.id == id),
        }
        .ok_or_else(|| Error::not_found(format!("secret {name} has no version {selector}")))?;
        let v = &entry.versions[idx];
        Ok(SecretVersion {
            value: v.value.try_clone()?,
            version: v.id.clone(),
            stages: v.stages.clone(),
            created: Some(v.created),
        })
    }

    async fn put(
        &self,
        name: &SecretName,
        value: &Secret,
        options: &PutOptions,
    ) -> Result<VersionInfo> {
        let max = self.capabilities().max_value_len;
        if value.len() > max {
            return Err(Error::invalid_input(format!(
                "secret {name}: value of {} bytes exceeds the memory store's limit of {max}",
                value.len()
            )));
        }
        let now = SystemTime::now();
        let mut map = self.lock()?;
        if let Some(e) = map.get(name)
            && e.deleted.is_some()
        {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("secret {name} is deleted; restore it before writing"),
            ));
        }
        // A retried put (same token, same value) answers with the version the first attempt
        // created, even when CURRENT has moved since: the caller's compare-and-set already
        // succeeded once, only its reply was lost.
        if let (Some(token), Some(entry)) = (&options.idempotency_token, map.get(name))
            && let Some(id) = entry.tokens.get(token)
        {
            let v =
                entry.versions.iter().find(|v| &v.id == id).ok_or_else(|| {
                    Error::internal("idempotency token points at a missing version")
                })?;
            if !v.value.ct_eq(value) {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("secret {name}: idempotency token reused with a different value"),
                ));
            }
            return Ok(VersionInfo {
                version: v.id.clone(),
                stages: v.stages.clone(),
                created: Some(v.created),
            });
        }
        let current = map.get(name).and_then(Entry::current_id);
        if let Some(expected) = &options.expected_current
            && *expected != current
        {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("secret {name}: current version is not the expected one"),
            ));
        }
        let entry = map.entry(name.clone()).or_insert_with(|| Entry {
            versions: Vec::new(),
            created: now,
            updated: now,
            last_rotated: None,
            description: None,
            tags: BTreeMap::new(),
            deleted: None,
            tokens: BTreeMap::new(),
        });
        let id = VersionId::from(entry.versions.len() as u64 + 1);
        entry.versions.push(StoredVersion {
            id: id.clone(),
            value: value.try_clone()?,
            stages: Vec::new(),
            created: now,
        });
        let idx = entry.versions.len() - 1;
        // The first version of a secret is always CURRENT, whatever stages were asked for.
        let mut stages = options.stages.clone();
        if current.is_none() && !stages.contains(&Stage::Current) {
            stages.push(Stage::Current);
        }
        for stage in &stages {
            entry.move_stage(stage, idx, now);
        }
        if let Some(token) = &options.idempotency_token {
            entry.tokens.insert(token.clone(), id.clone());
        }
        if options.description.is_some() {
            entry.description = options.description.clone();
        }
        entry.tags.extend(options.tags.clone());
        entry.updated = now;
        let v = &entry.versions[idx];
        Ok(VersionInfo {
            version: id,
            stages: v.stages.clone(),
            created: Some(now),
        })
    }

    async fn describe(&self, name: &SecretName) -> Result<SecretMetadata> {
        let map = self.lock()?;
        map.get(name)
            .map(|e| e.metadata(name))
            .ok_or_else(|| not_found(name))
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        let map = self.lock()?;
        let page_size = options.page_size.unwrap_or(DEFAULT_PAGE).max(1);
        let mut entries = Vec::new();
        let mut next_page_token = None;
        let start = options.page_token.clone().unwrap_or_default();
        for (name, e) in map
            .range::<SecretName, _>(..)
            .filter(|(n, _)| n.as_str() > start.as_str())
        {
            if !name.starts_with(&options.prefix)
                || (e.deleted.is_some() && !options.include_deleted)
            {
                continue;
            }
            if entries.len() == page_size {
                next_page_token = entries.last().map(|e: &ListEntry| e.name.to_string());
                break;
            }
            entries.push(ListEntry {
                name: name.clone(),
                updated: Some(e.updated),
                deleted: e.deleted.is_some(),
            });
        }
        Ok(ListPage {
            entries,
            next_page_token,
        })
    }

    async fn delete(&self, name: &SecretName, options: &DeleteOptions) -> Result<()> {
        let mut map = self.lock()?;
        if options.force {
            return map.remove(name).map(drop).ok_or_else(|| not_found(name));
        }
        let entry = map.get_mut(name).ok_or_else(|| not_found(name))?;
        if entry.deleted.is_none() {
            entry.deleted = Some(SystemTime::now() + options.recovery_window);
        }
        Ok(())
    }

    async fn restore(&self, name: &SecretName) -> Result<()> {
        let mut map = self.lock()?;
        let entry = map.get_mut(name).ok_or_else(|| not_found(name))?;
        if entry.deleted.take().is_none() {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("secret {name} is not deleted; nothing to restore"),
            ));
        }
        Ok(())
    }

    async fn set_stage(
        &self,
        name: &SecretName,
        stage: &Stage,
        version: Option<&VersionId>,
    ) -> Result<()> {
        let now = SystemTime::now();
        let mut map = self.lock()?;
        let entry = map
            .get_mut(name)
            .filter(|e| e.deleted.is_none())
            .ok_or_else(|| not_found(name))?;
        match version {
            Some(id) => {
                let idx = entry
                    .versions
                    .iter()
                    .position(|v| &v.id == id)
                    .ok_or_else(|| {
                        Error::not_found(format!("secret {name} has no version {id}"))
                    })?;
                entry.move_stage(stage, idx, now);
            }
            None if *stage == Stage::Current => {
                return Err(Error::invalid_input(
                    "CURRENT cannot be removed, only moved",
                ));
            }
            None => {
                for v in &mut entry.versions {
                    v.stages.retain(|s| s != stage);
                }
            }
        }
        entry.updated = now;
        Ok(())
    }
}
