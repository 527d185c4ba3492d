//! The key hierarchy as a store uses it: KEKs per namespace, DEKs per secret, rotation,
//! rewrapping, retirement, shredding and wrong-key detection.

use std::sync::Arc;

use sealbox::keys::{
    EnvKey, Envelope, KeyId, KeyProvider, KeyStorage, KeyVersion, Keyring, LocalKeyFile,
    MemoryKeyStorage, WrappedDek,
};
use sealbox::{ErrorKind, ExposeSecret};

fn id(s: &str) -> KeyId {
    KeyId::new(s).unwrap()
}

fn env_key(seed: u8) -> Arc<dyn KeyProvider> {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode([seed; 32]);
    Arc::new(EnvKey::from_base64(id("env"), &text, "test key").unwrap())
}

struct Vault {
    _dir: tempfile::TempDir,
    storage: Arc<MemoryKeyStorage>,
    keyring: Keyring,
}

async fn vault() -> Vault {
    let dir = tempfile::tempdir().unwrap();
    let provider =
        Arc::new(LocalKeyFile::open_or_create(id("local"), dir.path().join("master.key")).unwrap());
    let storage = Arc::new(MemoryKeyStorage::new());
    let keyring = Keyring::open(provider, storage.clone()).await.unwrap();
    Vault {
        _dir: dir,
        storage,
        keyring,
    }
}

/// Encrypts `value` for `name` the way the vault does: a DEK per secret, AAD binding the name.
async fn write(keyring: &Keyring, ns: &KeyId, name: &str, value: &[u8]) -> (WrappedDek, Vec<u8>) {
    let (dek, wrapped) = keyring.new_dek(ns, id(name)).await.unwrap();
    let env = Envelope::seal(&dek, name.as_bytes(), value).unwrap();
    (wrapped, env)
}

async fn read(
    keyring: &Keyring,
    ns: &KeyId,
    name: &str,
    dek: &WrappedDek,
    env: &[u8],
) -> sealbox::Result<Vec<u8>> {
    let dek = keyring.unwrap_dek(ns, dek).await?;
    Ok(Envelope::open(&dek, name.as_bytes(), env)?
        .expose_secret()
        .to_vec())
}

#[tokio::test]
async fn a_secret_round_trips_through_kek_and_dek() {
    let v = vault().await;
    let ns = id("predis/prod");
    let (dek, env) = write(&v.keyring, &ns, "predis/prod/database/password", b"hunter2").await;
    assert_eq!(dek.namespace(), "predis/prod");
    assert_eq!(dek.kek_version(), KeyVersion::FIRST);
    let bytes = dek.to_bytes();
    let dek = WrappedDek::from_bytes(&bytes).unwrap();
    assert_eq!(
        read(&v.keyring, &ns, "predis/prod/database/password", &dek, &env)
            .await
            .unwrap(),
        b"hunter2"
    );
    // A cold keyring over the same storage and key file reads it too.
    v.keyring.clear_cache();
    assert_eq!(
        read(&v.keyring, &ns, "predis/prod/database/password", &dek, &env)
            .await
            .unwrap(),
        b"hunter2"
    );
}

#[tokio::test]
async fn a_dek_cannot_be_used_in_another_namespace_or_under_another_name() {
    let v = vault().await;
    let (dek, env) = write(&v.keyring, &id("tenant-a"), "s", b"v").await;
    v.keyring.current_kek(&id("tenant-b")).await.unwrap();
    let err = v
        .keyring
        .unwrap_dek(&id("tenant-b"), &dek)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongKey);
    let unwrapped = v.keyring.unwrap_dek(&id("tenant-a"), &dek).await.unwrap();
    assert_eq!(
        Envelope::open(&unwrapped, b"t", &env).unwrap_err().kind(),
        ErrorKind::Integrity
    );
}

#[tokio::test]
async fn kek_rotation_then_rewrap_keeps_data_readable_and_retirement_is_enforced() {
    let v = vault().await;
    let ns = id("ns");
    let (old_dek, env) = write(&v.keyring, &ns, "a", b"value-a").await;
    let v2 = v.keyring.rotate_kek(&ns).await.unwrap();
    assert_eq!(v2.get(), 2);
    // Old KEK still unwraps until retired.
    assert_eq!(
        read(&v.keyring, &ns, "a", &old_dek, &env).await.unwrap(),
        b"value-a"
    );
    let new_dek = v.keyring.rewrap_dek(&ns, &old_dek).await.unwrap();
    assert_eq!(new_dek.kek_version(), v2);
    assert_eq!(new_dek.dek_version(), old_dek.dek_version());
    v.keyring.set_min_decryption_version(&ns, v2).await.unwrap();
    assert_eq!(
        read(&v.keyring, &ns, "a", &new_dek, &env).await.unwrap(),
        b"value-a"
    );
    let err = read(&v.keyring, &ns, "a", &old_dek, &env)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::KeyRetired);
    // Retiring the current version or above is refused.
    let err = v
        .keyring
        .set_min_decryption_version(&ns, KeyVersion::new(3).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    // Rewrapping an already-current DEK is a no-op.
    assert_eq!(v.keyring.rewrap_dek(&ns, &new_dek).await.unwrap(), new_dek);
}

#[tokio::test]
async fn master_rotation_rewraps_every_kek_version() {
    let v = vault().await;
    let (a, env_a) = write(&v.keyring, &id("a"), "x", b"in a").await;
    v.keyring.rotate_kek(&id("a")).await.unwrap();
    let (b, env_b) = write(&v.keyring, &id("b"), "y", b"in b").await;
    let m2 = v.keyring.rotate_master().await.unwrap();
    assert_eq!(m2.get(), 2);
    for ns in ["a", "b"] {
        let record = v.storage.load_namespace(&id(ns)).unwrap().unwrap();
        for kek in &record.keks {
            assert_eq!(
                kek.wrapped.as_ref().unwrap().master_version,
                m2,
                "{ns} {:?}",
                kek.version
            );
        }
    }
    v.keyring.clear_cache();
    assert_eq!(
        read(&v.keyring, &id("a"), "x", &a, &env_a).await.unwrap(),
        b"in a"
    );
    assert_eq!(
        read(&v.keyring, &id("b"), "y", &b, &env_b).await.unwrap(),
        b"in b"
    );
    // Nothing left to rewrap: resuming is a no-op.
    assert_eq!(v.keyring.rewrap_keks().await.unwrap(), 0);
}

#[tokio::test]
async fn dek_rotation_gives_a_new_version_and_the_old_one_stays_readable() {
    let v = vault().await;
    let ns = id("ns");
    let (old, env_old) = write(&v.keyring, &ns, "s", b"one").await;
    let (dek2, wrapped2) = v.keyring.rotate_dek(&ns, &old).await.unwrap();
    assert_eq!(wrapped2.dek_version().get(), 2);
    let env_new = Envelope::seal(&dek2, b"s", b"two").unwrap();
    assert_eq!(
        read(&v.keyring, &ns, "s", &wrapped2, &env_new)
            .await
            .unwrap(),
        b"two"
    );
    assert_eq!(
        read(&v.keyring, &ns, "s", &old, &env_old).await.unwrap(),
        b"one"
    );
    // The old DEK does not open the new envelope.
    let old_key = v.keyring.unwrap_dek(&ns, &old).await.unwrap();
    assert_eq!(
        Envelope::open(&old_key, b"s", &env_new).unwrap_err().kind(),
        ErrorKind::WrongKey
    );
}

#[tokio::test]
async fn shredding_a_namespace_makes_every_value_in_it_unreadable_and_nothing_else() {
    let v = vault().await;
    let gone = id("tenant-gone");
    let kept = id("tenant-kept");
    let (d1, e1) = write(&v.keyring, &gone, "s1", b"x").await;
    v.keyring.rotate_kek(&gone).await.unwrap();
    let (d2, e2) = write(&v.keyring, &gone, "s2", b"y").await;
    let (d3, e3) = write(&v.keyring, &kept, "s3", b"z").await;
    v.keyring.shred_namespace(&gone).await.unwrap();
    for (d, e, n) in [(&d1, &e1, "s1"), (&d2, &e2, "s2")] {
        let err = read(&v.keyring, &gone, n, d, e).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::KeyDestroyed);
    }
    let record = v.storage.load_namespace(&gone).unwrap().unwrap();
    assert!(
        record
            .keks
            .iter()
            .all(|k| k.wrapped.is_none() && k.destroyed_at.is_some())
    );
    assert_eq!(read(&v.keyring, &kept, "s3", &d3, &e3).await.unwrap(), b"z");
    // Also after a restart (cold cache).
    v.keyring.clear_cache();
    assert_eq!(
        read(&v.keyring, &gone, "s1", &d1, &e1)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::KeyDestroyed
    );
    // A later write starts a fresh KEK version above the destroyed ones.
    let (d4, e4) = write(&v.keyring, &gone, "s4", b"new").await;
    assert_eq!(d4.kek_version().get(), 3);
    assert_eq!(
        read(&v.keyring, &gone, "s4", &d4, &e4).await.unwrap(),
        b"new"
    );
}

#[tokio::test]
async fn a_wrong_master_key_is_wrong_key_not_integrity() {
    let storage = Arc::new(MemoryKeyStorage::new());
    let right = Keyring::open(env_key(1), storage.clone()).await.unwrap();
    let (dek, _env) = write(&right, &id("ns"), "s", b"v").await;
    let err = Keyring::open(env_key(2), storage.clone())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongKey);
    assert!(err.to_string().contains("master key env"), "{err}");
    // The right key still works.
    let again = Keyring::open(env_key(1), storage).await.unwrap();
    again.unwrap_dek(&id("ns"), &dek).await.unwrap();
}

#[tokio::test]
async fn a_replaced_key_file_is_wrong_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    let storage = Arc::new(MemoryKeyStorage::new());
    let first = Arc::new(LocalKeyFile::open_or_create(id("local"), &path).unwrap());
    let kr = Keyring::open(first, storage.clone()).await.unwrap();
    write(&kr, &id("ns"), "s", b"v").await;
    std::fs::remove_file(&path).unwrap();
    let second = Arc::new(LocalKeyFile::open_or_create(id("local"), &path).unwrap());
    assert_eq!(
        Keyring::open(second, storage).await.unwrap_err().kind(),
        ErrorKind::WrongKey
    );
}

#[tokio::test]
async fn a_tampered_wrapped_kek_is_integrity_not_wrong_key() {
    let v = vault().await;
    let ns = id("ns");
    let (dek, _) = write(&v.keyring, &ns, "s", b"v").await;
    let mut record = v.storage.load_namespace(&ns).unwrap().unwrap();
    let wrapped = record.keks[0].wrapped.as_mut().unwrap();
    let last = wrapped.ciphertext.len() - 1;
    wrapped.ciphertext[last] ^= 0x01;
    record.revision += 1;
    v.storage.save_namespace(&record).unwrap();
    v.keyring.clear_cache();
    let err = v.keyring.unwrap_dek(&ns, &dek).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity);
}

#[tokio::test]
async fn a_kek_version_the_namespace_never_had_is_not_found() {
    let v = vault().await;
    let ns = id("ns");
    let (dek, _) = write(&v.keyring, &ns, "s", b"v").await;
    // Rebuild the record with the KEK version field bumped (header byte after the id).
    let mut bytes = dek.to_bytes();
    let env_start = 4 + 1 + 1 + 1 + 4; // SBXD, format, id len, "s", dek version
    let version_at = env_start + 7 + ns.as_str().len() + 3;
    bytes[version_at] = 9;
    let forged = WrappedDek::from_bytes(&bytes).unwrap();
    assert_eq!(forged.kek_version().get(), 9);
    assert_eq!(
        v.keyring.unwrap_dek(&ns, &forged).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn concurrent_first_writers_share_one_kek() {
    let v = Arc::new(vault().await);
    let ns = id("ns");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let v = v.clone();
        let ns = ns.clone();
        tasks.push(tokio::spawn(async move {
            write(&v.keyring, &ns, &format!("s{i}"), b"v").await
        }));
    }
    for t in tasks {
        let (dek, _) = t.await.unwrap();
        assert_eq!(dek.kek_version(), KeyVersion::FIRST);
    }
    assert_eq!(
        v.storage.load_namespace(&ns).unwrap().unwrap().keks.len(),
        1
    );
}

#[tokio::test]
async fn two_keyrings_on_one_storage_see_each_others_rotation_retirement_and_shredding() {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode([3u8; 32]);
    let provider = || -> Arc<dyn KeyProvider> {
        Arc::new(EnvKey::from_base64(id("env"), &text, "test key").unwrap())
    };
    let storage = Arc::new(MemoryKeyStorage::new());
    let a = Keyring::open(provider(), storage.clone()).await.unwrap();
    let b = Keyring::open(provider(), storage.clone()).await.unwrap();
    let ns = id("ns");
    let (d1, e1) = write(&a, &ns, "s1", b"one").await;
    assert_eq!(read(&b, &ns, "s1", &d1, &e1).await.unwrap(), b"one");
    // B rotates and retires v1 after rewrapping what it knows of.
    let v2 = b.rotate_kek(&ns).await.unwrap();
    let d1 = b.rewrap_dek(&ns, &d1).await.unwrap();
    b.set_min_decryption_version(&ns, v2).await.unwrap();
    // A's next write uses v2, not its cached v1, so B can read it.
    let (d2, e2) = write(&a, &ns, "s2", b"two").await;
    assert_eq!(d2.kek_version(), v2);
    assert_eq!(read(&b, &ns, "s2", &d2, &e2).await.unwrap(), b"two");
    // Shredding by B reaches A once A refreshes.
    b.shred_namespace(&ns).await.unwrap();
    assert_eq!(
        read(&b, &ns, "s1", &d1, &e1).await.unwrap_err().kind(),
        ErrorKind::KeyDestroyed
    );
    a.refresh(&ns).unwrap();
    assert_eq!(
        read(&a, &ns, "s2", &d2, &e2).await.unwrap_err().kind(),
        ErrorKind::KeyDestroyed
    );
}

#[test]
fn wrapped_dek_parsing_is_total() {
    for len in 0..64 {
        let junk = vec![0xA5u8; len];
        assert!(WrappedDek::from_bytes(&junk).is_err());
        let mut prefixed = b"SBXD\x01\x01s\x00\x00\x00\x01".to_vec();
        prefixed.extend_from_slice(&junk);
        assert!(WrappedDek::from_bytes(&prefixed).is_err());
    }
    let err = WrappedDek::from_bytes(b"SBXD\x02").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsupportedVersion);
    assert_eq!(
        WrappedDek::from_bytes(b"SBX").unwrap_err().kind(),
        ErrorKind::Truncated
    );
}
