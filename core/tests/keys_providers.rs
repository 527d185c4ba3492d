//! Master key providers: the local key file, the passphrase key and the environment key.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use sealbox::keys::{
    EnvKey, KeyId, KeyProvider, KeyVersion, LocalKeyFile, PassphraseCost, PassphraseKey,
};
use sealbox::{ErrorKind, Secret, SecretString};

fn id(s: &str) -> KeyId {
    KeyId::new(s).unwrap()
}

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn key_file_is_created_0600_and_reopens_with_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    let created = LocalKeyFile::open_or_create(id("local"), &path).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(fs::metadata(&path).unwrap().len(), 4 + 1 + 4 + 2 + 36 + 32);
    let dek = Secret::random(32).unwrap();
    let wrapped = created.wrap(b"ctx", &dek).await.unwrap();
    let reopened = LocalKeyFile::open_or_create(id("local"), &path).unwrap();
    assert!(reopened.unwrap(b"ctx", &wrapped).await.unwrap().ct_eq(&dek));
    assert_eq!(
        created
            .key_check(KeyVersion::FIRST)
            .await
            .unwrap()
            .unwrap()
            .as_bytes(),
        reopened
            .key_check(KeyVersion::FIRST)
            .await
            .unwrap()
            .unwrap()
            .as_bytes()
    );
}

#[tokio::test]
async fn key_file_rotation_is_persisted_and_keeps_old_versions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    let file = LocalKeyFile::open_or_create(id("local"), &path).unwrap();
    let dek = Secret::random(32).unwrap();
    let old = file.wrap(b"", &dek).await.unwrap();
    assert_eq!(file.rotate().await.unwrap().get(), 2);
    assert_eq!(file.rotate().await.unwrap().get(), 3);
    assert_eq!(mode(&path), 0o600);
    let new = file.wrap(b"", &dek).await.unwrap();
    assert_eq!(new.master_version.get(), 3);
    let reopened = LocalKeyFile::open(id("local"), &path).unwrap();
    assert_eq!(reopened.current_version().await.unwrap().get(), 3);
    assert!(reopened.unwrap(b"", &old).await.unwrap().ct_eq(&dek));
    assert!(reopened.unwrap(b"", &new).await.unwrap().ct_eq(&dek));
    // No temporary files are left behind (only the key file and its lock file).
    let mut names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["master.key", "master.key.lock"]);
}

#[tokio::test]
async fn two_processes_rotating_the_same_key_file_lose_no_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    let a = LocalKeyFile::open_or_create(id("local"), &path).unwrap();
    let b = LocalKeyFile::open(id("local"), &path).unwrap();
    assert_eq!(a.rotate().await.unwrap().get(), 2);
    // B has not seen v2; its rotation re-reads the file and makes v3 instead of a second v2.
    assert_eq!(b.rotate().await.unwrap().get(), 3);
    let dek = Secret::random(32).unwrap();
    let by_a = a.wrap(b"", &dek).await.unwrap();
    let by_b = b.wrap(b"", &dek).await.unwrap();
    assert_eq!(
        (by_a.master_version.get(), by_b.master_version.get()),
        (2, 3)
    );
    // Each unwraps the other's, re-reading the file for a version it has not loaded.
    assert!(a.unwrap(b"", &by_b).await.unwrap().ct_eq(&dek));
    assert!(b.unwrap(b"", &by_a).await.unwrap().ct_eq(&dek));
    let fresh = LocalKeyFile::open(id("local"), &path).unwrap();
    assert_eq!(fresh.current_version().await.unwrap().get(), 3);
    assert!(fresh.unwrap(b"", &by_a).await.unwrap().ct_eq(&dek));
}

#[test]
fn key_file_readable_by_group_or_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    LocalKeyFile::open_or_create(id("local"), &path).unwrap();
    for bad in [0o644, 0o640, 0o604, 0o620, 0o660] {
        fs::set_permissions(&path, fs::Permissions::from_mode(bad)).unwrap();
        let err = LocalKeyFile::open(id("local"), &path).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{bad:o}");
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
    LocalKeyFile::open(id("local"), &path).unwrap();
}

#[test]
fn key_files_of_the_wrong_shape_are_refused_with_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good_path = dir.path().join("good.key");
    LocalKeyFile::open_or_create(id("local"), &good_path).unwrap();
    let good = fs::read(&good_path).unwrap();

    let cases: Vec<(&str, Vec<u8>, ErrorKind)> = vec![
        ("empty", vec![], ErrorKind::Truncated),
        ("short", good[..20].to_vec(), ErrorKind::Truncated),
        ("raw 32 bytes", vec![7u8; 32], ErrorKind::Config),
        (
            "one byte more",
            [&good[..], &[0u8]].concat(),
            ErrorKind::Integrity,
        ),
        (
            "newer format",
            {
                let mut b = good.clone();
                // Formats 2 (namespace keys) and 3 (store counters) are read by this build;
                // 4 is not.
                b[4] = 4;
                b
            },
            ErrorKind::UnsupportedVersion,
        ),
        (
            "flipped key bit",
            {
                let mut b = good.clone();
                b[20] ^= 1;
                b
            },
            ErrorKind::Integrity,
        ),
    ];
    for (name, bytes, kind) in cases {
        let path = dir.path().join(name.replace(' ', "_"));
        fs::write(&path, &bytes).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let err = LocalKeyFile::open(id("local"), &path).unwrap_err();
        assert_eq!(err.kind(), kind, "{name}: {err}");
    }
}

#[test]
fn key_file_symlinks_and_directories_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.key");
    LocalKeyFile::open_or_create(id("local"), &real).unwrap();
    let link = dir.path().join("link.key");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    assert_eq!(
        LocalKeyFile::open(id("local"), &link).unwrap_err().kind(),
        ErrorKind::Config
    );
    assert_eq!(
        LocalKeyFile::open(id("local"), dir.path())
            .unwrap_err()
            .kind(),
        ErrorKind::Config
    );
}

#[tokio::test]
async fn passphrase_key_derives_the_same_key_and_detects_a_wrong_passphrase() {
    let pass = SecretString::from_string("correct horse battery staple".into()).unwrap();
    let (key, params) = PassphraseKey::create(id("pp"), &pass, PassphraseCost::default()).unwrap();
    let dek = Secret::random(32).unwrap();
    let wrapped = key.wrap(b"", &dek).await.unwrap();
    let again = PassphraseKey::open(id("pp"), &pass, &params).unwrap();
    assert!(again.unwrap(b"", &wrapped).await.unwrap().ct_eq(&dek));

    let wrong = SecretString::from_string("Tr0ub4dor&3".into()).unwrap();
    let err = PassphraseKey::open(id("pp"), &wrong, &params).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongKey);

    // Editing the stored cost cannot silently weaken the key: it no longer checks out.
    let mut weakened = params.clone();
    weakened.cost.t_cost = 2;
    assert_eq!(
        PassphraseKey::open(id("pp"), &pass, &weakened)
            .unwrap_err()
            .kind(),
        ErrorKind::WrongKey
    );
    assert_eq!(
        key.rotate().await.unwrap_err().kind(),
        ErrorKind::Unsupported
    );
}

#[tokio::test]
async fn passphrase_params_file_is_0600_json_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.params.json");
    let pass = SecretString::from_string("pass phrase".into()).unwrap();
    let key =
        PassphraseKey::create_file(id("pp"), &pass, PassphraseCost::default(), &path).unwrap();
    assert_eq!(mode(&path), 0o600);
    let json: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(json["algorithm"], "argon2id");
    // What is stored is the default cost, which meets the floor.
    let stored = PassphraseCost {
        m_cost_kib: json["m_cost_kib"].as_u64().unwrap() as u32,
        t_cost: json["t_cost"].as_u64().unwrap() as u32,
        p_cost: json["p_cost"].as_u64().unwrap() as u32,
    };
    assert_eq!(stored, PassphraseCost::default());
    assert!(stored.m_cost_kib >= PassphraseCost::FLOOR.m_cost_kib);
    assert!(stored.t_cost >= PassphraseCost::FLOOR.t_cost);
    assert!(stored.p_cost >= PassphraseCost::FLOOR.p_cost);
    let dek = Secret::random(32).unwrap();
    let wrapped = key.wrap(b"x", &dek).await.unwrap();
    let reopened = PassphraseKey::open_file(id("pp"), &pass, &path).unwrap();
    assert!(reopened.unwrap(b"x", &wrapped).await.unwrap().ct_eq(&dek));
    // Refuses to overwrite an existing parameters file.
    assert_eq!(
        PassphraseKey::create_file(id("pp"), &pass, PassphraseCost::default(), &path)
            .unwrap_err()
            .kind(),
        ErrorKind::Io
    );
}

#[test]
fn passphrase_key_creation_refuses_a_cost_below_the_floor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weak.params.json");
    let pass = SecretString::from_string("pass phrase".into()).unwrap();
    let floor = PassphraseCost::FLOOR;
    assert_eq!(
        (floor.m_cost_kib, floor.t_cost, floor.p_cost),
        (64 * 1024, 3, 4),
        "the floor is RFC 9106's second recommendation"
    );
    let weaker = [
        // OWASP's minimum, the previous default.
        PassphraseCost {
            m_cost_kib: 19 * 1024,
            t_cost: 2,
            p_cost: 1,
        },
        PassphraseCost {
            m_cost_kib: floor.m_cost_kib - 1,
            ..floor
        },
        PassphraseCost {
            t_cost: floor.t_cost - 1,
            ..floor
        },
    ];
    for cost in weaker {
        let err = PassphraseKey::create(id("pp"), &pass, cost).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{cost:?}");
        assert!(err.to_string().contains("65536 KiB"), "{err}");
        let err = PassphraseKey::create_file(id("pp"), &pass, cost, &path).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{cost:?}");
        assert!(!path.exists(), "nothing is written for a refused cost");
    }
}

#[tokio::test]
async fn env_key_takes_base64_of_exactly_32_bytes() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = EnvKey::from_base64(id("env"), &b64.encode([9u8; 32]), "TEST").unwrap();
    let dek = Secret::random(32).unwrap();
    let w = key.wrap(b"", &dek).await.unwrap();
    assert!(key.unwrap(b"", &w).await.unwrap().ct_eq(&dek));
    assert_eq!(
        key.rotate().await.unwrap_err().kind(),
        ErrorKind::Unsupported
    );
    for bad in [
        b64.encode([9u8; 31]),
        b64.encode([9u8; 33]),
        "not base64 !!".to_owned(),
        String::new(),
    ] {
        let err = EnvKey::from_base64(id("env"), &bad, "TEST").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(bad.is_empty() || !err.to_string().contains(&bad), "{err}");
    }
}

#[test]
fn env_key_from_an_unset_variable_names_the_variable() {
    let err = EnvKey::from_env(id("env"), "SEALBOX_TEST_SURELY_UNSET_VARIABLE").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(
        err.to_string()
            .contains("SEALBOX_TEST_SURELY_UNSET_VARIABLE")
    );
}

#[test]
fn env_key_reads_the_process_environment() {
    // PATH is always set but is not base64 of 32 bytes: proves the variable is read and
    // validated (setting variables is unsafe in a multi-threaded test process).
    let err = EnvKey::from_env(id("env"), "PATH").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("must be base64"), "{err}");
}

#[tokio::test]
async fn namespace_keys_live_in_the_key_file_and_die_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    let key = LocalKeyFile::open_or_create(id("local"), &path).unwrap();
    assert_eq!(
        fs::read(&path).unwrap()[4],
        1,
        "no namespace key yet: format 1"
    );
    let kek = Secret::random(32).unwrap();
    let wrapped = key
        .wrap_for_namespace("store/tenant", b"ctx", &kek)
        .await
        .unwrap();
    assert!(key.is_namespace_bound(&wrapped));
    assert!(!key.is_namespace_bound(&key.wrap(b"ctx", &kek).await.unwrap()));
    assert_eq!(fs::read(&path).unwrap()[4], 2);
    // A rotation keeps the namespace key; another process reads both.
    key.rotate().await.unwrap();
    let other = LocalKeyFile::open(id("local"), &path).unwrap();
    assert_eq!(other.namespace_key_count(), 1);
    assert!(other.unwrap(b"ctx", &wrapped).await.unwrap().ct_eq(&kek));
    // A namespace key is covered by the file's checksum like the master versions.
    let mut damaged = fs::read(&path).unwrap();
    let last = damaged.len() - 33;
    damaged[last] ^= 1;
    let bad = dir.path().join("damaged.key");
    fs::write(&bad, &damaged).unwrap();
    fs::set_permissions(&bad, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        LocalKeyFile::open(id("local"), &bad).unwrap_err().kind(),
        ErrorKind::Integrity
    );

    // Destroyed in one process: the other, which holds it in memory, refuses it too.
    assert!(key.destroy_namespace_key("store/tenant").await.unwrap());
    assert!(!key.destroy_namespace_key("store/tenant").await.unwrap());
    let err = other.unwrap(b"ctx", &wrapped).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::KeyDestroyed, "{err}");
    assert_eq!(fs::read(&path).unwrap()[4], 1, "back to format 1");
    // A new key for the same namespace does not open the old wrap.
    key.wrap_for_namespace("store/tenant", b"ctx", &kek)
        .await
        .unwrap();
    assert_eq!(
        key.unwrap(b"ctx", &wrapped).await.unwrap_err().kind(),
        ErrorKind::KeyDestroyed
    );
}
