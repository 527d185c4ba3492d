//! No error message, `Debug` or `Display` output of the key layer contains key bytes,
//! passphrases or plaintext, in any common encoding.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sealbox::keys::{
    DataKey, EnvKey, Envelope, KeyId, KeyProvider, KeyStorage, KeyVersion, Keyring, LocalKeyFile,
    MemoryKeyStorage, PassphraseCost, PassphraseKey,
};
use sealbox::{Error, ExposeSecret, Secret, SecretString};

fn id(s: &str) -> KeyId {
    KeyId::new(s).unwrap()
}

/// Fails if `text` contains `secret` raw (as text), in hex or in base64.
fn assert_clean(text: &str, secret: &[u8]) {
    let forms = [
        String::from_utf8_lossy(secret).into_owned(),
        hex::encode(secret),
        hex::encode_upper(secret),
        STANDARD.encode(secret),
        format!("{secret:?}"),
    ];
    for form in forms {
        // Very short forms could match by chance; every secret here is long and random.
        assert!(
            form.len() < 8 || !text.contains(&form),
            "leaked {form:?} in {text:?}"
        );
    }
}

fn texts(err: &Error) -> String {
    format!("{err} | {err:?} | {}", err.message())
}

#[test]
fn envelope_errors_and_debug_never_show_key_or_plaintext() {
    let plaintext = Secret::random(48).unwrap();
    let k = DataKey::generate(id("ns/dek"), KeyVersion::FIRST).unwrap();
    let env = Envelope::seal(&k, b"context", plaintext.expose_secret()).unwrap();
    let mut errors = Vec::new();
    let mut tampered = env.clone();
    *tampered.last_mut().unwrap() ^= 1;
    errors.push(Envelope::open(&k, b"context", &tampered).unwrap_err());
    errors.push(Envelope::open(&k, b"other", &env).unwrap_err());
    errors.push(Envelope::open(&k, b"context", &env[..30]).unwrap_err());
    let other = DataKey::generate(id("ns/dek"), KeyVersion::new(2).unwrap()).unwrap();
    errors.push(Envelope::open(&other, b"context", &env).unwrap_err());
    let limited = DataKey::generate(id("k"), KeyVersion::FIRST)
        .unwrap()
        .with_usage_limit(0);
    errors.push(Envelope::seal(&limited, b"", plaintext.expose_secret()).unwrap_err());
    let dbg = format!("{k:?} {:?} {plaintext:?}", Envelope::parse(&env).unwrap());
    let key_bytes = Envelope::open(&k, b"context", &env).unwrap();
    assert_eq!(key_bytes.expose_secret(), plaintext.expose_secret());
    for e in &errors {
        assert_clean(&texts(e), plaintext.expose_secret());
    }
    assert_clean(&dbg, plaintext.expose_secret());
}

#[test]
fn env_key_errors_never_echo_the_variable() {
    let almost = STANDARD.encode(Secret::random(31).unwrap().expose_secret());
    let err = EnvKey::from_base64(id("env"), &almost, "SEALBOX_MASTER_KEY").unwrap_err();
    assert!(!texts(&err).contains(&almost));
    let garbage = format!("{almost}!!");
    let err = EnvKey::from_base64(id("env"), &garbage, "SEALBOX_MASTER_KEY").unwrap_err();
    assert!(!texts(&err).contains(&almost));
    let good = STANDARD.encode(Secret::random(32).unwrap().expose_secret());
    let key = EnvKey::from_base64(id("env"), &good, "SEALBOX_MASTER_KEY").unwrap();
    assert!(!format!("{key:?}").contains(&good));
}

#[test]
fn wrong_passphrase_error_does_not_contain_either_passphrase() {
    let right = "correct-horse-battery-staple-7781";
    let wrong = "incorrect-mule-stapler-4412";
    let cost = PassphraseCost::default();
    let (key, params) = PassphraseKey::create(
        id("pp"),
        &SecretString::from_string(right.into()).unwrap(),
        cost,
    )
    .unwrap();
    let err = PassphraseKey::open(
        id("pp"),
        &SecretString::from_string(wrong.into()).unwrap(),
        &params,
    )
    .unwrap_err();
    let all = format!("{} {key:?} {params:?}", texts(&err));
    assert!(!all.contains(right) && !all.contains(wrong), "{all}");
}

#[tokio::test]
async fn key_file_and_keyring_errors_never_show_master_or_kek_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    let file = Arc::new(LocalKeyFile::open_or_create(id("local"), &path).unwrap());
    let raw = std::fs::read(&path).unwrap();
    let master = raw[15..47].to_vec(); // header 11 bytes, version 4 bytes, then the key
    let storage = Arc::new(MemoryKeyStorage::new());
    let keyring = Keyring::open(file.clone(), storage.clone()).await.unwrap();
    let ns = id("ns");
    let kek = keyring.current_kek(&ns).await.unwrap();
    let (dek, wrapped) = keyring.new_dek(&ns, id("s")).await.unwrap();

    let mut errors = Vec::new();
    let mut corrupt = raw.clone();
    corrupt[20] ^= 1;
    let bad_path = dir.path().join("corrupt.key");
    std::fs::write(&bad_path, &corrupt).unwrap();
    std::fs::set_permissions(
        &bad_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    errors.push(LocalKeyFile::open(id("local"), &bad_path).unwrap_err());
    keyring.shred_namespace(&ns).await.unwrap();
    errors.push(keyring.unwrap_dek(&ns, &wrapped).await.unwrap_err());
    errors.push(
        keyring
            .unwrap_dek(&id("other"), &wrapped)
            .await
            .unwrap_err(),
    );
    let other =
        Arc::new(EnvKey::from_base64(id("local"), &STANDARD.encode([1u8; 32]), "T").unwrap());
    errors.push(Keyring::open(other, storage.clone()).await.unwrap_err());
    let mut texts_all: Vec<String> = errors.iter().map(texts).collect();
    texts_all.push(format!("{file:?} {keyring:?} {kek:?} {dek:?} {wrapped:?}"));
    texts_all.push(format!("{:?}", storage.load_namespace(&ns)));
    for t in &texts_all {
        assert_clean(t, &master);
    }
    assert!(file.current_version().await.is_ok());
}

#[test]
fn the_leak_check_itself_catches_each_encoding() {
    let secret = [0xDEu8, 0xAD, 0xBE, 0xEF, 0x01, 0x02, 0x03, 0x04, 0x05];
    for leak in [
        hex::encode(secret),
        STANDARD.encode(secret),
        format!("{secret:?}"),
    ] {
        let text = format!("error: bad key {leak}");
        assert!(
            std::panic::catch_unwind(|| assert_clean(&text, &secret)).is_err(),
            "{leak}"
        );
    }
    assert_clean("error: nothing here", &secret);
}

#[tokio::test]
async fn a_raw_key_is_not_a_key_file_and_the_error_says_how_to_make_one() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw.key");
    let bytes = Secret::random(32).unwrap();
    std::fs::write(&raw, bytes.expose_secret()).unwrap();
    std::fs::set_permissions(&raw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let err = LocalKeyFile::open(id("local"), &raw).unwrap_err();
    assert_eq!(err.kind(), sealbox::ErrorKind::Config);
    let m = err.message();
    assert!(m.contains(&raw.display().to_string()), "{m}");
    assert!(m.contains("not a sealbox master key file"), "{m}");
    assert!(m.contains("sealbox init"), "says how to make one: {m}");
    assert!(!m.contains("magic"), "jargon: {m}");
    assert_clean(&texts(&err), bytes.expose_secret());
    // the same through a config file
    let yaml = dir.path().join("sealbox.yaml");
    std::fs::write(
        &yaml,
        "secrets: {provider: local, config: {path: ./vault, key_file: ./raw.key}}\n",
    )
    .unwrap();
    let err = sealbox::Sealbox::from_config(&yaml).await.unwrap_err();
    assert!(err.message().contains("sealbox init"), "{err}");
}
