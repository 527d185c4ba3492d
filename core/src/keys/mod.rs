//! Key hierarchy and envelope encryption: master key ([`KeyProvider`]) -> KEK per namespace ->
//! DEK per secret -> AES-256-GCM [`Envelope`]. See ARCHITECTURE.md, section "Key hierarchy".
//!
//! # Using it from a store (the local vault)
//!
//! 1. Implement [`KeyStorage`] over your database: one [`NamespaceKeys`] record per namespace
//!    (saved with compare-and-set on `revision`, e.g. `UPDATE .. WHERE revision = ?` in a
//!    transaction) and one [`KeyCheck`] per master key version. Both are serde types; a JSON
//!    column is enough. [`MemoryKeyStorage`] is the reference implementation.
//! 2. Open a [`Keyring`] over a [`KeyProvider`] ([`LocalKeyFile`], [`PassphraseKey`],
//!    [`EnvKey`], or a cloud KMS from a provider crate) and the storage. A wrong master key
//!    fails here with [`ErrorKind::WrongKey`](crate::ErrorKind::WrongKey).
//! 3. Writing a new secret: `let (dek, wrapped) = keyring.new_dek(&ns, dek_id).await?`, then
//!    `Envelope::seal(&dek, &aad, value)` where `aad` binds store, namespace, name, version and
//!    key ids; store the envelope and `wrapped.to_bytes()` in the same row/transaction. New
//!    versions of the same secret can reuse the DEK (unwrap it, seal again) until
//!    [`DataKey::needs_rotation`] or the DEK schedule says otherwise.
//! 4. Reading: `WrappedDek::from_bytes`, `keyring.unwrap_dek(&ns, &wrapped)`,
//!    `Envelope::open(&dek, &aad, &envelope)` -> a [`Secret`](crate::Secret) in locked memory.
//! 5. Rotation: [`Keyring::rotate_master`] rewraps KEKs itself (they live in [`KeyStorage`]).
//!    [`Keyring::rotate_kek`] makes a new KEK version. A rewrap ([`Keyring::rewrap_dek`])
//!    keeps the same DEK, so a DEK or old KEK that leaked still opens the data; a store that
//!    wants rotation to limit a leak gives each secret a fresh DEK under the new KEK with
//!    [`Keyring::rotate_dek`], re-encrypts the secret's versions with it, and then destroys the
//!    old KEK versions (the local vault does all three: `LocalVault::rotate_kek`,
//!    `rotate_dek`, `retire_keks`). [`RotationSchedule`] says when each is due; a store counts
//!    each key's uses persistently ([`KekRecord::uses`]) because [`DataKey::uses`] restarts at
//!    zero whenever a key is unwrapped again. [`Keyring::retire_master`] then removes the older
//!    master versions from the provider once every KEK is rewrapped under the current one.
//! 6. Erasure: [`Keyring::shred_namespace`] destroys the namespace's key in the provider
//!    (the local key file holds one per namespace, and KEKs are wrapped under a key derived
//!    from it and the master key), then every KEK version of the namespace; every value in it,
//!    in the store and in any copy of it taken before, then fails with `KeyDestroyed`.
//!    [`NamespaceShred::reaches_copies`] is false for providers without namespace keys
//!    (passphrase, environment, KMS): copies plus the master key still read it. Audit it
//!    (`Sealbox::erase_namespace` does).
//!
//! Callers who encrypt their own records use [`DataKey::generate`] and [`Envelope`] directly.

mod data_key;
mod env;
mod envelope;
mod file;
mod ids;
mod keyring;
mod namespace_key;
mod passphrase;
mod provider;
mod schedule;
mod storage;

pub use data_key::{DataKey, KEY_LEN, MAX_USES};
pub use env::EnvKey;
pub use envelope::{Algorithm, Envelope, EnvelopeView, FORMAT_V1, MAGIC, TAG_LEN};
pub(crate) use file::check_owner;
pub use file::{LocalKeyFile, MAX_NAMESPACE_KEYS};
pub use ids::{KeyId, KeyVersion, MAX_KEY_ID_LEN};
pub use keyring::{Keyring, MasterRetirement, NamespaceShred, WrappedDek};
pub use passphrase::{PassphraseCost, PassphraseKey, PassphraseParams};
pub use provider::{KeyCheck, KeyProvider, WrappedKey};
pub use schedule::{KeyRole, RotationPeriod, RotationSchedule};
pub use storage::{KekRecord, KeyStorage, MemoryKeyStorage, NamespaceKeys};
