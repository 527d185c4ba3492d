//! Persistence of the key hierarchy is the store's business: [`KeyStorage`] is the small
//! trait a store implements (the local vault in SQLite), over serialisable records.
//! [`MemoryKeyStorage`] is the in-memory implementation for tests and the memory store.
//!
//! What is stored, per namespace, as one [`NamespaceKeys`] record: every KEK version wrapped
//! by the master key (or marked destroyed) with its creation time and use count,
//! `min_decryption_version`, and a revision for compare-and-set. Retired versions are removed
//! from the record altogether (see `LocalVault::retire_keks`). Per master key version: a [`KeyCheck`]. DEKs are not here: a store keeps
//! each [`super::WrappedDek`] beside the secret it encrypts.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::ids::{KeyId, KeyVersion};
use super::provider::{KeyCheck, WrappedKey};
use crate::error::{Error, ErrorKind, Result};

/// One KEK version of a namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KekRecord {
    /// The KEK version.
    pub version: KeyVersion,
    /// When it was created (seconds since the Unix epoch).
    pub created_at: u64,
    /// The KEK wrapped by the master key; `None` once destroyed.
    pub wrapped: Option<WrappedKey>,
    /// When it was destroyed (crypto-shredding), if it was.
    pub destroyed_at: Option<u64>,
    /// How many DEKs this KEK version has wrapped, over every process and every unwrap of it.
    /// A store that persists it increments it in the transaction that stores each wrapped DEK
    /// (the local vault does); records written before the count existed read as 0.
    #[serde(default)]
    pub uses: u64,
}

/// Every KEK version of one namespace plus its decryption policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceKeys {
    /// The namespace, which is also the KEK's key id in envelopes.
    pub namespace: KeyId,
    /// Incremented by every save; [`KeyStorage::save_namespace`] compares it.
    pub revision: u64,
    /// KEK versions below this are refused for decryption (`KeyRetired`).
    pub min_decryption_version: KeyVersion,
    /// All KEK versions, oldest first; the last one not destroyed is current.
    pub keks: Vec<KekRecord>,
}

impl NamespaceKeys {
    /// The newest KEK version that is not destroyed.
    pub fn current(&self) -> Option<&KekRecord> {
        self.keks.iter().rev().find(|k| k.wrapped.is_some())
    }

    /// The record of `version`.
    pub fn kek(&self, version: KeyVersion) -> Option<&KekRecord> {
        self.keks.iter().find(|k| k.version == version)
    }

    /// The highest version ever created (destroyed or not).
    pub fn latest_version(&self) -> Option<KeyVersion> {
        self.keks.last().map(|k| k.version)
    }
}

/// Where the key hierarchy persists. Implementations must make each call atomic (one SQLite
/// transaction): the keyring relies on [`KeyStorage::save_namespace`] being a compare-and-set
/// so two writers cannot both create or rotate a namespace's KEK.
///
/// Calls are synchronous and expected to be quick local I/O.
pub trait KeyStorage: Send + Sync + std::fmt::Debug {
    /// The namespace's record, if it has keys.
    fn load_namespace(&self, namespace: &KeyId) -> Result<Option<NamespaceKeys>>;

    /// Stores `record` if the stored revision is `record.revision - 1` (or, for revision 1, no
    /// record exists); otherwise fails with [`ErrorKind::Conflict`] and changes nothing.
    fn save_namespace(&self, record: &NamespaceKeys) -> Result<()>;

    /// Every namespace with a record.
    fn namespaces(&self) -> Result<Vec<KeyId>>;

    /// The key-check value recorded for a master key version.
    fn master_check(&self, provider: &KeyId, version: KeyVersion) -> Result<Option<KeyCheck>>;

    /// Records the key-check value of a master key version (first writer wins; a second,
    /// different value must be refused with [`ErrorKind::Conflict`]).
    fn save_master_check(
        &self,
        provider: &KeyId,
        version: KeyVersion,
        check: &KeyCheck,
    ) -> Result<()>;
}

/// [`KeyStorage`] in memory.
#[derive(Debug, Default)]
pub struct MemoryKeyStorage {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    namespaces: BTreeMap<KeyId, NamespaceKeys>,
    checks: HashMap<(KeyId, KeyVersion), KeyCheck>,
}

impl MemoryKeyStorage {
    /// Empty storage.
    pub fn new() -> MemoryKeyStorage {
        MemoryKeyStorage::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        // Every mutation is a single insert, so a poisoned lock still holds consistent data.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl KeyStorage for MemoryKeyStorage {
    fn load_namespace(&self, namespace: &KeyId) -> Result<Option<NamespaceKeys>> {
        Ok(self.lock().namespaces.get(namespace).cloned())
    }

    fn save_namespace(&self, record: &NamespaceKeys) -> Result<()> {
        let mut inner = self.lock();
        let stored = inner.namespaces.get(&record.namespace).map(|r| r.revision);
        let expected = record.revision.checked_sub(1).filter(|r| *r > 0);
        if stored != expected {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "keys of namespace {} were changed by another writer; retry",
                    record.namespace
                ),
            ));
        }
        inner
            .namespaces
            .insert(record.namespace.clone(), record.clone());
        Ok(())
    }

    fn namespaces(&self) -> Result<Vec<KeyId>> {
        Ok(self.lock().namespaces.keys().cloned().collect())
    }

    fn master_check(&self, provider: &KeyId, version: KeyVersion) -> Result<Option<KeyCheck>> {
        Ok(self
            .lock()
            .checks
            .get(&(provider.clone(), version))
            .cloned())
    }

    fn save_master_check(
        &self,
        provider: &KeyId,
        version: KeyVersion,
        check: &KeyCheck,
    ) -> Result<()> {
        let mut inner = self.lock();
        let slot = inner
            .checks
            .entry((provider.clone(), version))
            .or_insert_with(|| check.clone());
        if !slot.matches(check) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("master key {provider} {version} already has a different key check"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(revision: u64) -> NamespaceKeys {
        NamespaceKeys {
            namespace: KeyId::new("ns").unwrap(),
            revision,
            min_decryption_version: KeyVersion::FIRST,
            keks: Vec::new(),
        }
    }

    #[test]
    fn save_is_a_compare_and_set_on_revision() {
        let s = MemoryKeyStorage::new();
        assert_eq!(
            s.save_namespace(&record(2)).unwrap_err().kind(),
            ErrorKind::Conflict
        );
        s.save_namespace(&record(1)).unwrap();
        assert_eq!(
            s.save_namespace(&record(1)).unwrap_err().kind(),
            ErrorKind::Conflict
        );
        s.save_namespace(&record(2)).unwrap();
        assert_eq!(
            s.save_namespace(&record(4)).unwrap_err().kind(),
            ErrorKind::Conflict
        );
        assert_eq!(
            s.load_namespace(&KeyId::new("ns").unwrap())
                .unwrap()
                .unwrap()
                .revision,
            2
        );
        assert_eq!(s.namespaces().unwrap().len(), 1);
    }

    #[test]
    fn a_master_check_cannot_be_replaced() {
        let s = MemoryKeyStorage::new();
        let id = KeyId::new("local").unwrap();
        let a = KeyCheck::from_bytes([1; 32]);
        let b = KeyCheck::from_bytes([2; 32]);
        s.save_master_check(&id, KeyVersion::FIRST, &a).unwrap();
        s.save_master_check(&id, KeyVersion::FIRST, &a).unwrap();
        let err = s.save_master_check(&id, KeyVersion::FIRST, &b).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert!(
            s.master_check(&id, KeyVersion::FIRST)
                .unwrap()
                .unwrap()
                .matches(&a)
        );
    }
}
