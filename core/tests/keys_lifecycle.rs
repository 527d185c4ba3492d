//! The key lifecycle of the local vault, as a specification: rotation gives fresh keys (never
//! rewraps the same ones), retirement destroys old KEK versions, use counts are persisted and
//! shared, status reports ages, uses and due dates, and a key at its limit that cannot rotate
//! fails with `KeyExhausted`.
//!
//! The central test plays the leak: a copy of the vault and its key file is taken, the live
//! vault rotates and retires, and then every KEK and every DEK recoverable from the copy is
//! tried on every envelope of the rotated vault. The keys are recovered from the files alone
//! (master key file -> wrapped KEKs -> wrapped DEKs), the way an attacker holding the copy
//! would, so the test does not trust the vault's own code to report them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sealbox::keys::{
    DataKey, Envelope, KeyId, KeyProvider, KeyRole, KeyVersion, LocalKeyFile, NamespaceKeys,
    RotationPeriod, WrappedDek,
};
use sealbox::store::local::{KeyInfo, KeyState, LocalVault, LocalVaultOptions};
use sealbox::store::{PutOptions, SecretName, SecretStore, VersionId, VersionSelector};
use sealbox::{ErrorKind, ExposeSecret, Secret};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn key_at(path: &Path) -> Arc<dyn KeyProvider> {
    Arc::new(LocalKeyFile::open_or_create(KeyId::new("local").unwrap(), path).unwrap())
}

fn secret(v: &[u8]) -> Secret {
    Secret::init_with(v.len(), |d| {
        d.copy_from_slice(v);
        Ok(())
    })
    .unwrap()
}

fn name(s: &str) -> SecretName {
    s.parse().unwrap()
}

async fn put(vault: &LocalVault, n: &str, value: &[u8]) -> sealbox::Result<()> {
    vault
        .put(&name(n), &secret(value), &PutOptions::default())
        .await
        .map(drop)
}

async fn value_of(vault: &LocalVault, n: &str, version: &str) -> Vec<u8> {
    let v = vault
        .get(&name(n), &VersionSelector::Version(VersionId::new(version)))
        .await
        .unwrap();
    v.value.expose_secret().to_vec()
}

fn sql(db: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(db).unwrap()
}

/// A consistent copy of the vault file (SQLite's own `VACUUM INTO`, so WAL content is in it).
fn copy_vault(db: &Path, to: &Path) {
    sql(db)
        .execute("VACUUM INTO ?1", [to.to_str().unwrap()])
        .unwrap();
}

// ------------------------------------------------------------------- keys recovered from files

/// The associated data the keyring binds into a wrapped KEK (mirrors `keyring.rs`).
fn kek_context(ns: &str, version: KeyVersion) -> Vec<u8> {
    let mut c = b"sealbox/kek/v1".to_vec();
    c.push(ns.len() as u8);
    c.extend_from_slice(ns.as_bytes());
    c.extend_from_slice(&version.to_be_bytes());
    c
}

/// The associated data of a wrapped DEK (mirrors `keyring.rs`).
fn dek_context(ns: &str, dek: &WrappedDek) -> Vec<u8> {
    let id = dek.dek_id().as_str();
    let mut c = b"sealbox/dek/v1".to_vec();
    c.push(ns.len() as u8);
    c.extend_from_slice(ns.as_bytes());
    c.push(id.len() as u8);
    c.extend_from_slice(id.as_bytes());
    c.extend_from_slice(&dek.dek_version().to_be_bytes());
    c
}

/// The associated data of a stored value (mirrors `store/local/mod.rs`).
fn value_aad(store_id: &str, ns: &str, name: &str, version: i64, dek: &WrappedDek) -> Vec<u8> {
    let mut aad = b"sealbox/local/value/v1\0".to_vec();
    for part in [store_id, ns, name] {
        aad.extend_from_slice(part.as_bytes());
        aad.push(0);
    }
    aad.extend_from_slice(&version.to_be_bytes());
    aad.extend_from_slice(dek.dek_id().as_str().as_bytes());
    aad.push(0);
    aad.extend_from_slice(&dek.dek_version().to_be_bytes());
    aad
}

/// The envelope inside a wrapped DEK record (after magic, format, id and version).
fn dek_envelope(dek: &WrappedDek) -> Vec<u8> {
    let bytes = dek.to_bytes();
    bytes[10 + dek.dek_id().as_str().len()..].to_vec()
}

/// One stored version: secret name, namespace, wrapped DEK, version, envelope.
type StoredVersion = (String, String, Vec<u8>, i64, Vec<u8>);

/// One ciphertext of a vault file with the associated data it was sealed with.
struct Target {
    what: String,
    envelope: Vec<u8>,
    aad: Vec<u8>,
}

/// Every key material a holder of `db` and `key_file` can recover, and every ciphertext in
/// `db`.
struct Recovered {
    keks: Vec<(String, Secret)>,
    deks: Vec<(String, Secret)>,
    targets: Vec<Target>,
}

/// Opens `envelope` with raw `material` presented under the id and version its header names,
/// so only the key bits decide.
fn opens(material: &Secret, target: &Target) -> bool {
    let view = Envelope::parse(&target.envelope).unwrap();
    let key = DataKey::from_secret(
        KeyId::new(view.key_id()).unwrap(),
        view.key_version(),
        material.try_clone().unwrap(),
    )
    .unwrap();
    Envelope::open(&key, &target.aad, &target.envelope).is_ok()
}

async fn recover(db: &Path, key_file: &Path) -> Recovered {
    let provider = key_at(key_file);
    let conn = sql(db);
    let store_id: String = conn
        .query_row("SELECT value FROM meta WHERE key = 'store_id'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let records: Vec<String> = conn
        .prepare("SELECT record FROM key_namespaces")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut keks = Vec::new();
    for record in records {
        let record: NamespaceKeys = serde_json::from_str(&record).unwrap();
        let ns = record.namespace.as_str().to_owned();
        // The metadata namespace's KEK wraps only the key that authenticates rows (MACs); it
        // decrypts no secret, so it is not one of the keys this test follows.
        if ns == "sealbox:metadata" {
            continue;
        }
        for kek in &record.keks {
            if let Some(wrapped) = &kek.wrapped {
                let material = provider
                    .unwrap(&kek_context(&ns, kek.version), wrapped)
                    .await
                    .unwrap();
                keks.push((format!("KEK {ns} v{}", kek.version.get()), material));
            }
        }
    }
    let rows: Vec<StoredVersion> = conn
        .prepare(
            // The current version's envelope is stored in the secret's row alone.
            "SELECT s.name, s.namespace, s.dek, v.version, \
             CASE WHEN v.version = s.cur_version THEN s.cur_envelope ELSE v.envelope END \
             FROM secrets s JOIN versions v ON v.secret_id = s.id ORDER BY s.name, v.version",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut deks: Vec<(String, Secret)> = Vec::new();
    let mut targets = Vec::new();
    for (secret_name, ns, dek_bytes, version, envelope) in rows {
        // Schema 5 keeps the wrapped DEK and each value without the header bytes their
        // row implies (the namespace, the DEK); put them back as a holder of the file would.
        let wrapped = WrappedDek::from_compact(&ns, &dek_bytes).unwrap();
        let envelope =
            Envelope::attach_header(wrapped.dek_id().as_str(), wrapped.dek_version(), &envelope);
        let label = format!(
            "DEK {} v{} of {secret_name}",
            wrapped.dek_id().as_str(),
            wrapped.dek_version().get()
        );
        let wrapped_target = Target {
            what: format!("wrapped {label}"),
            envelope: dek_envelope(&wrapped),
            aad: dek_context(&ns, &wrapped),
        };
        if !deks.iter().any(|(l, _)| *l == label) {
            let kek = keks
                .iter()
                .find(|(_, k)| opens(k, &wrapped_target))
                .unwrap_or_else(|| panic!("no KEK of this copy opens {label}"));
            let view_key = {
                let view = Envelope::parse(&wrapped_target.envelope).unwrap();
                DataKey::from_secret(
                    KeyId::new(view.key_id()).unwrap(),
                    view.key_version(),
                    kek.1.try_clone().unwrap(),
                )
                .unwrap()
            };
            let material =
                Envelope::open(&view_key, &wrapped_target.aad, &wrapped_target.envelope).unwrap();
            deks.push((label.clone(), material));
            targets.push(wrapped_target);
        }
        targets.push(Target {
            what: format!("{secret_name} version {version}"),
            aad: value_aad(&store_id, &ns, &secret_name, version, &wrapped),
            envelope,
        });
    }
    Recovered {
        keks,
        deks,
        targets,
    }
}

/// Every ciphertext opens under some key of the same files: the recovery above is the real
/// one, so a failure to open below is the key's doing and not the harness's.
fn assert_self_consistent(r: &Recovered, which: &str) {
    for t in &r.targets {
        assert!(
            r.keks.iter().chain(&r.deks).any(|(_, k)| opens(k, t)),
            "{which}: no key of its own files opens {}",
            t.what
        );
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    db: PathBuf,
    key_file: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        Fixture {
            db: dir.path().join("vault.db"),
            key_file: dir.path().join("master.key"),
            _dir: dir,
        }
    }

    fn path(&self, file: &str) -> PathBuf {
        self._dir.path().join(file)
    }

    async fn create(&self, options: LocalVaultOptions) -> LocalVault {
        LocalVault::create_with(&self.db, key_at(&self.key_file), options)
            .await
            .unwrap()
    }

    async fn open(&self, options: LocalVaultOptions) -> LocalVault {
        LocalVault::open_with(&self.db, key_at(&self.key_file), options)
            .await
            .unwrap()
    }
}

fn find<'a>(keys: &'a [KeyInfo], role: KeyRole, id: &str) -> Vec<&'a KeyInfo> {
    keys.iter()
        .filter(|k| k.role == role && (k.id == id || k.secret.as_deref() == Some(id)))
        .collect()
}

fn dek_of<'a>(keys: &'a [KeyInfo], secret: &str) -> &'a KeyInfo {
    let found = find(keys, KeyRole::Dek, secret);
    assert_eq!(found.len(), 1, "one DEK for {secret}");
    found[0]
}

// ---------------------------------------------------------------------------------- the tests

#[tokio::test]
async fn after_rotation_and_retirement_no_key_of_an_old_copy_opens_anything_new() {
    let f = Fixture::new();
    let vault = f.create(LocalVaultOptions::default()).await;
    for (n, value) in [
        ("app/db/password", &b"hunter2"[..]),
        ("app/db/password", b"hunter3"),
        ("app/db/password", b"hunter4"),
        ("app/api/token", b"tok-1"),
        ("billing/stripe", b"sk-1"),
        ("billing/stripe", b"sk-2"),
    ] {
        put(&vault, n, value).await.unwrap();
    }
    // The leak: a copy of the vault and of the key file.
    let old_db = f.path("leaked-vault.db");
    let old_key = f.path("leaked-master.key");
    copy_vault(&f.db, &old_db);
    std::fs::copy(&f.key_file, &old_key).unwrap();

    // The response: a fresh KEK with fresh DEKs per namespace, one more DEK rotation, and
    // retirement of the old KEK versions.
    let app = vault.rotate_kek("app").await.unwrap();
    assert_eq!((app.version.get(), app.deks_rotated), (2, 2));
    let billing = vault.rotate_kek("billing").await.unwrap();
    assert_eq!((billing.version.get(), billing.deks_rotated), (2, 1));
    let again = vault.rotate_dek(&name("app/db/password")).await.unwrap();
    assert_eq!((again.dek_version.get(), again.versions), (3, 3));
    let retired = vault.retire_keks().await.unwrap();
    assert_eq!(retired.len(), 2, "{retired:?}");
    for r in &retired {
        assert_eq!(r.destroyed, vec![KeyVersion::FIRST], "{r:?}");
        assert_eq!(r.kept.get(), 2);
    }
    assert_eq!(retired[0].versions_verified, 4, "app: 3 + 1 versions");

    // Old KEK versions are gone from the new vault's records, not merely marked.
    for ns in ["app", "billing"] {
        let record = vault
            .keyring()
            .namespace_keys(&KeyId::new(ns).unwrap())
            .unwrap()
            .unwrap();
        let versions: Vec<u32> = record.keks.iter().map(|k| k.version.get()).collect();
        assert_eq!(versions, vec![2], "{ns}: {record:?}");
        assert_eq!(record.min_decryption_version.get(), 2);
    }
    // Every value still reads, through the vault and through its own files.
    assert_eq!(value_of(&vault, "app/db/password", "1").await, b"hunter2");
    assert_eq!(value_of(&vault, "app/db/password", "3").await, b"hunter4");
    assert_eq!(value_of(&vault, "billing/stripe", "2").await, b"sk-2");
    assert!(vault.verify().await.unwrap().is_ok());
    drop(vault);

    let old = recover(&old_db, &old_key).await;
    let new = recover(&f.db, &f.key_file).await;
    assert_self_consistent(&old, "the old copy");
    assert_self_consistent(&new, "the rotated vault");
    assert_eq!(old.keks.len(), 2, "the copy holds the two version-1 KEKs");
    assert_eq!(old.deks.len(), 3, "and three DEKs");
    assert_eq!(
        new.keks.len(),
        2,
        "the rotated vault holds only the version-2 KEKs"
    );
    assert_eq!(new.targets.len(), 3 + 6, "3 wrapped DEKs and 6 values");
    for (label, key) in old.keks.iter().chain(&old.deks) {
        for target in &new.targets {
            assert!(
                !opens(key, target),
                "{label} from the old copy opens {} of the rotated vault",
                target.what
            );
        }
    }
}

#[tokio::test]
async fn dek_rotation_re_encrypts_every_version_under_a_fresh_key() {
    let f = Fixture::new();
    let vault = f.create(LocalVaultOptions::default()).await;
    for v in [&b"one"[..], b"two", b"three"] {
        put(&vault, "team/key", v).await.unwrap();
    }
    put(&vault, "team/other", b"x").await.unwrap();
    let before = recover(&f.db, &f.key_file).await;

    let r = vault.rotate_dek(&name("team/key")).await.unwrap();
    assert_eq!(
        (r.dek_version.get(), r.kek_version.get(), r.versions),
        (2, 1, 3)
    );
    assert_eq!(vault.rotate_deks("team").await.unwrap(), 2);
    let missing = vault.rotate_dek(&name("team/nope")).await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);

    let after = recover(&f.db, &f.key_file).await;
    assert_self_consistent(&after, "after DEK rotation");
    for (label, key) in &before.deks {
        for t in &after.targets {
            assert!(!opens(key, t), "old {label} opens {}", t.what);
        }
    }
    assert_eq!(value_of(&vault, "team/key", "1").await, b"one");
    assert_eq!(value_of(&vault, "team/key", "3").await, b"three");
    // The re-encryptions are the new DEK's uses.
    let status = vault.key_status(SystemTime::now()).await.unwrap();
    let dek = dek_of(&status.keys, "team/key");
    assert_eq!((dek.version.get(), dek.uses), (3, Some(3)));
}

#[tokio::test]
async fn a_write_rotates_a_dek_past_its_period() {
    let f = Fixture::new();
    // A DEK period of one second (editing the DEK's creation time in the file would be
    // tampering, refused by the row's MAC).
    let mut options = LocalVaultOptions::default();
    options.schedule.dek = RotationPeriod(Duration::from_secs(1));
    let vault = f.create(options).await;
    put(&vault, "svc/token", b"a").await.unwrap();
    put(&vault, "svc/token", b"b").await.unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let status = vault.key_status(SystemTime::now()).await.unwrap();
    assert!(dek_of(&status.keys, "svc/token").is_due);

    put(&vault, "svc/token", b"c").await.unwrap();
    let status = vault.key_status(SystemTime::now()).await.unwrap();
    let dek = dek_of(&status.keys, "svc/token");
    assert_eq!(dek.version.get(), 2, "the write rotated the DEK first");
    assert_eq!(dek.uses, Some(3), "2 re-encrypted versions + the new one");
    assert!(!dek.is_due);
    assert_eq!(value_of(&vault, "svc/token", "1").await, b"a");
    assert_eq!(value_of(&vault, "svc/token", "3").await, b"c");
}

#[tokio::test]
async fn writes_rotate_at_half_the_use_limit_and_key_exhausted_when_rotation_is_impossible() {
    let f = Fixture::new();
    let options = LocalVaultOptions {
        dek_max_uses: 4,
        ..LocalVaultOptions::default()
    };
    let vault = f.create(options.clone()).await;
    let dek_version = |keys: &[KeyInfo]| dek_of(keys, "svc/k").version.get();
    put(&vault, "svc/k", b"1").await.unwrap();
    put(&vault, "svc/k", b"2").await.unwrap();
    let s = vault.key_status(SystemTime::now()).await.unwrap();
    assert_eq!(dek_version(&s.keys), 1);
    // Uses 2 of 4: the third write rotates first (2 re-encryptions), then writes (3 uses).
    put(&vault, "svc/k", b"3").await.unwrap();
    let s = vault.key_status(SystemTime::now()).await.unwrap();
    assert_eq!(
        (dek_version(&s.keys), dek_of(&s.keys, "svc/k").uses),
        (2, Some(3))
    );
    put(&vault, "svc/k", b"4").await.unwrap();
    let s = vault.key_status(SystemTime::now()).await.unwrap();
    assert_eq!(
        (dek_version(&s.keys), dek_of(&s.keys, "svc/k").uses),
        (3, Some(4))
    );
    // Four versions cannot move to a fresh key allowed four uses, and this one has none
    // left: the write fails with KeyExhausted and writes nothing.
    let err = put(&vault, "svc/k", b"5").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::KeyExhausted, "{err}");
    assert!(!err.message().contains('5'), "no value in the message");
    let meta = vault.describe(&name("svc/k")).await.unwrap();
    assert_eq!(meta.versions.len(), 4);
    let explicit = vault.rotate_dek(&name("svc/k")).await.unwrap_err();
    assert_eq!(explicit.kind(), ErrorKind::KeyExhausted);
    assert_eq!(value_of(&vault, "svc/k", "4").await, b"4");

    // With automatic rotation off, the limit itself is the end.
    let off = LocalVaultOptions {
        dek_max_uses: 2,
        auto_rotate: false,
        ..LocalVaultOptions::default()
    };
    let manual = f.open(off).await;
    put(&manual, "svc/m", b"1").await.unwrap();
    put(&manual, "svc/m", b"2").await.unwrap();
    let err = put(&manual, "svc/m", b"3").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::KeyExhausted, "{err}");
    let s = manual.key_status(SystemTime::now()).await.unwrap();
    assert_eq!(dek_of(&s.keys, "svc/m").uses, Some(2));
}

#[tokio::test]
async fn use_counts_are_shared_by_two_vault_handles_and_survive_reopen() {
    let f = Fixture::new();
    let options = LocalVaultOptions {
        dek_max_uses: 6,
        auto_rotate: false,
        ..LocalVaultOptions::default()
    };
    let a = f.create(options.clone()).await;
    let b = f.open(options.clone()).await;
    for i in 0..3 {
        put(&a, "ns/shared", format!("a{i}").as_bytes())
            .await
            .unwrap();
        put(&b, "ns/shared", format!("b{i}").as_bytes())
            .await
            .unwrap();
    }
    // Each handle sealed only three values with its in-memory key, but the persisted count
    // is the DEK's: six, its limit, so the next write from either handle is refused.
    for handle in [&a, &b] {
        let err = put(handle, "ns/shared", b"x").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::KeyExhausted, "{err}");
    }
    // Reads do not count.
    for _ in 0..10 {
        a.get(&name("ns/shared"), &VersionSelector::Current)
            .await
            .unwrap();
    }
    let s = b.key_status(SystemTime::now()).await.unwrap();
    assert_eq!(dek_of(&s.keys, "ns/shared").uses, Some(6));
    let kek = find(&s.keys, KeyRole::Kek, "ns");
    assert_eq!(kek[0].uses, Some(1), "one DEK wrapped under the KEK");
    drop((a, b));

    let reopened = f.open(options).await;
    let s = reopened.key_status(SystemTime::now()).await.unwrap();
    assert_eq!(dek_of(&s.keys, "ns/shared").uses, Some(6));
    let err = put(&reopened, "ns/shared", b"x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::KeyExhausted);
}

#[tokio::test]
async fn a_kek_past_half_its_use_limit_is_replaced_before_it_wraps_another_dek() {
    let f = Fixture::new();
    let options = LocalVaultOptions {
        kek_max_uses: 4,
        ..LocalVaultOptions::default()
    };
    let vault = f.create(options).await;
    for i in 0..3 {
        put(&vault, &format!("ns/s{i}"), b"v").await.unwrap();
    }
    let s = vault.key_status(SystemTime::now()).await.unwrap();
    let keks = find(&s.keys, KeyRole::Kek, "ns");
    let summary: Vec<(u32, KeyState, Option<u64>)> = keks
        .iter()
        .map(|k| (k.version.get(), k.state, k.uses))
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, KeyState::Previous, Some(2)),
            (2, KeyState::Current, Some(1))
        ]
    );
}

#[tokio::test]
async fn status_reports_ages_uses_and_due_dates_and_rotate_due_rotates_what_is_due() {
    let f = Fixture::new();
    let start = SystemTime::now() - Duration::from_secs(1);
    let vault = f.create(LocalVaultOptions::default()).await;
    put(&vault, "web/session", b"s1").await.unwrap();
    put(&vault, "web/session", b"s2").await.unwrap();
    put(&vault, "web/csrf", b"c1").await.unwrap();
    let end = SystemTime::now() + Duration::from_secs(1);

    let status = vault.key_status(SystemTime::now()).await.unwrap();
    assert_eq!(status.schedule.master.0, 90 * DAY);
    assert_eq!(status.schedule.dek.0, 30 * DAY);
    assert_eq!(status.schedule.session.0, DAY);
    let master = find(&status.keys, KeyRole::Master, "local")[0];
    let kek = find(&status.keys, KeyRole::Kek, "web")[0];
    let dek = dek_of(&status.keys, "web/session");
    for (k, period) in [(master, 90u32), (kek, 90), (dek, 30)] {
        let created = k.created.expect("creation time recorded");
        // KEK times are whole seconds.
        assert!(
            created + Duration::from_secs(1) >= start && created <= end,
            "{k:?}"
        );
        assert_eq!(k.due, Some(created + period * DAY), "{k:?}");
        assert!(!k.is_due, "{k:?}");
    }
    assert_eq!(
        (dek.uses, dek.max_uses),
        (Some(2), Some(sealbox::keys::MAX_USES))
    );
    assert_eq!(kek.uses, Some(2), "two DEKs wrapped");

    // In 31 days the DEKs are due, not the KEK or the master key.
    let later = SystemTime::now() + 31 * DAY;
    let status = vault.key_status(later).await.unwrap();
    let due: Vec<(KeyRole, String)> = status
        .keys
        .iter()
        .filter(|k| k.is_due)
        .map(|k| (k.role, k.secret.clone().unwrap_or(k.id.clone())))
        .collect();
    assert_eq!(
        due,
        vec![
            (KeyRole::Dek, "web/csrf".to_owned()),
            (KeyRole::Dek, "web/session".to_owned())
        ]
    );
    let done = vault.rotate_due(later).await.unwrap();
    assert!(done.master.is_none() && done.keks.is_empty(), "{done:?}");
    assert_eq!(done.deks.len(), 2);
    let status = vault.key_status(SystemTime::now()).await.unwrap();
    assert_eq!(dek_of(&status.keys, "web/session").version.get(), 2);

    // In 91 days everything is due: the master key and the KEK (whose rotation gives every
    // secret a fresh DEK).
    let much_later = SystemTime::now() + 91 * DAY;
    let done = vault.rotate_due(much_later).await.unwrap();
    assert_eq!(done.master.map(|v| v.get()), Some(2));
    // The namespace's KEK and the metadata namespace's (which wraps no secret's DEK).
    assert_eq!(done.keks.len(), 2, "{done:?}");
    let web = done.keks.iter().find(|k| k.0 == "web").unwrap();
    assert_eq!(web.1.deks_rotated, 2);
    assert!(done.deks.is_empty(), "the KEK rotation covered the DEKs");
    assert_eq!(value_of(&vault, "web/session", "2").await, b"s2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_two_handles_lose_no_use() {
    let f = Fixture::new();
    let a = f.create(LocalVaultOptions::default()).await;
    let b = f.open(LocalVaultOptions::default()).await;
    let mut tasks = Vec::new();
    for (i, handle) in [a.clone(), b.clone()].into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for j in 0..10 {
                // One secret both write to, and one new secret per write.
                put(&handle, "ns/hot", format!("{i}-{j}").as_bytes())
                    .await
                    .unwrap();
                put(&handle, &format!("ns/new-{i}-{j}"), b"v")
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let s = a.key_status(SystemTime::now()).await.unwrap();
    assert_eq!(dek_of(&s.keys, "ns/hot").uses, Some(20));
    let kek = find(&s.keys, KeyRole::Kek, "ns");
    assert_eq!(kek.len(), 1);
    assert_eq!(
        kek[0].uses,
        Some(21),
        "one DEK per secret: 20 new ones and ns/hot's"
    );
}

fn kek_versions(vault: &LocalVault, ns: &str) -> Vec<u32> {
    vault
        .keyring()
        .namespace_keys(&KeyId::new(ns).unwrap())
        .unwrap()
        .unwrap()
        .keks
        .iter()
        .map(|k| k.version.get())
        .collect()
}

#[tokio::test]
async fn retirement_moves_stragglers_to_fresh_keys_and_destroys_nothing_unless_all_decrypt() {
    let f = Fixture::new();
    let vault = f.create(LocalVaultOptions::default()).await;
    put(&vault, "ops/a", b"alpha").await.unwrap();
    put(&vault, "ops/b", b"beta").await.unwrap();
    // A new KEK version made through the keyring alone leaves both DEKs under version 1.
    vault
        .keyring()
        .rotate_kek(&KeyId::new("ops").unwrap())
        .await
        .unwrap();
    assert_eq!(kek_versions(&vault, "ops"), vec![1, 2]);

    // A damaged version: retirement refuses before destroying anything.
    let conn = sql(&f.db);
    let original: Vec<u8> = conn
        .query_row(
            // Its one version is current: its envelope is stored in the secret's row.
            "SELECT cur_envelope FROM secrets WHERE name = 'ops/b'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let mut damaged = original.clone();
    *damaged.last_mut().unwrap() ^= 1;
    let set = |envelope: &[u8]| {
        conn.execute(
            "UPDATE secrets SET cur_envelope = ?1 WHERE name = 'ops/b'",
            [envelope],
        )
        .unwrap()
    };
    set(&damaged);
    let err = vault.retire_keks().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(err.message().contains("nothing was destroyed"), "{err}");
    assert_eq!(
        kek_versions(&vault, "ops"),
        vec![1, 2],
        "version 1 survives"
    );
    assert_eq!(value_of(&vault, "ops/a", "1").await, b"alpha");

    // Repaired: ops/b gets a fresh DEK under version 2 (ops/a already moved during the refused
    // attempt, which is harmless), both verify, then version 1 is destroyed.
    set(&original);
    let done = vault.retire_keks().await.unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(
        (
            done[0].deks_rotated,
            done[0].versions_verified,
            done[0].destroyed.clone()
        ),
        (1, 2, vec![KeyVersion::FIRST])
    );
    assert_eq!(kek_versions(&vault, "ops"), vec![2]);
    assert_eq!(value_of(&vault, "ops/a", "1").await, b"alpha");
    assert_eq!(value_of(&vault, "ops/b", "1").await, b"beta");
    assert!(
        vault.retire_keks().await.unwrap().is_empty(),
        "nothing left to retire"
    );
}
