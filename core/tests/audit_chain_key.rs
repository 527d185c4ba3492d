//! The audit chain key: whoever holds it can sign lines that verify. With a local vault in the
//! config, the key is kept in the vault wrapped by its master key (nothing beside the log);
//! a key file still works without a vault, but only one that is this user's own regular file
//! and readable by nobody else.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sealbox::audit::{AuditKey, ProblemKind, default_key_path, verify_file};
use sealbox::config::{Config, ProviderRegistry};
use sealbox::{BlockingSealbox, ErrorKind, Secret};

fn secret(v: &str) -> Secret {
    Secret::from_mut_slice(&mut v.as_bytes().to_vec()).unwrap()
}

fn write_key(path: &Path, mode: u32) {
    std::fs::write(path, [5u8; 32]).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A config without a vault (a memory store), its log at `DIR/audit.jsonl`, plus `extra`
/// audit settings.
fn memory_config(dir: &Path, extra: &str) -> (PathBuf, PathBuf) {
    let log = dir.join("audit.jsonl");
    let config = dir.join("sealbox.yaml");
    std::fs::write(
        &config,
        format!(
            "secrets: {{provider: memory}}\nprincipal: svc:web\naudit: {{path: {}{extra}}}\n",
            log.display()
        ),
    )
    .unwrap();
    (config, log)
}

fn open_error(config: &Path) -> sealbox::Error {
    match BlockingSealbox::from_config(config) {
        Ok(_) => panic!("the client opened with an unsafe audit key file"),
        Err(e) => e,
    }
}

fn opens_and_audits(config: &Path) {
    let c = BlockingSealbox::from_config(config).unwrap();
    c.put("app/db", &secret("v")).unwrap();
    c.flush_audit().unwrap();
}

#[test]
fn a_chain_key_file_group_or_world_accessible_is_refused_naming_the_file_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let (config, log) = memory_config(dir.path(), "");
    let key = default_key_path(&log);
    for mode in [0o640, 0o604, 0o620, 0o666] {
        write_key(&key, mode);
        let e = open_error(&config);
        assert_eq!(e.kind(), ErrorKind::Config, "mode {mode:o}: {e}");
        let m = e.message();
        assert!(m.contains(&key.display().to_string()), "{m}");
        assert!(m.contains(&format!("chmod 600 {}", key.display())), "{m}");
        assert!(!log.exists() || std::fs::read(&log).unwrap().is_empty());
    }
    write_key(&key, 0o600);
    opens_and_audits(&config);

    // The same for a key file the config names.
    let named = dir.path().join("chain.key");
    write_key(&named, 0o644);
    let (config, _) = memory_config(dir.path(), &format!(", key_file: {}", named.display()));
    let e = open_error(&config);
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.message().contains(&named.display().to_string()));
}

#[test]
fn a_chain_key_file_that_is_a_symlink_is_refused_and_never_created_through() {
    let dir = tempfile::tempdir().unwrap();
    let (config, log) = memory_config(dir.path(), "");
    let key = default_key_path(&log);
    let elsewhere = dir.path().join("elsewhere.key");
    write_key(&elsewhere, 0o600);
    std::os::unix::fs::symlink(&elsewhere, &key).unwrap();
    let e = open_error(&config);
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.message().contains("symlink"), "{}", e.message());
    assert!(e.message().contains(&key.display().to_string()));

    // A link to where no key is yet: nothing is created where it points.
    std::fs::remove_file(&key).unwrap();
    let target = dir.path().join("planted.key");
    std::os::unix::fs::symlink(&target, &key).unwrap();
    let e = open_error(&config);
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(!target.exists());
}

#[test]
fn a_chain_key_file_owned_by_another_user_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (config, log) = memory_config(dir.path(), "");
    let key = default_key_path(&log);
    write_key(&key, 0o600);
    // Only root can give a file away; the CI runs the suite as root.
    if std::os::unix::fs::chown(&key, Some(65534), None).is_err() {
        eprintln!("skipped: not running as root, cannot make a file another user owns");
        return;
    }
    let e = open_error(&config);
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        e.message().contains("owned by uid 65534"),
        "{}",
        e.message()
    );
}

/// A config whose default store is a local vault under the key file `master`.
fn vault_config(dir: &Path, log: &Path) -> PathBuf {
    let config = dir.join("sealbox.yaml");
    std::fs::write(
        &config,
        format!(
            "secrets:\n  provider: local\n  config:\n    path: {}\n    master_key: {{provider: key_file, path: {}}}\nprincipal: svc:web\naudit: {{path: {}}}\n",
            dir.join("vault").display(),
            dir.join("master.key").display(),
            log.display()
        ),
    )
    .unwrap();
    config
}

fn vault_key(config: &Path) -> AuditKey {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        Config::from_path(config)
            .unwrap()
            .store_audit_key(&ProviderRegistry::global_snapshot())
            .await
            .unwrap()
            .expect("the vault keeps an audit key")
    })
}

#[test]
fn with_a_local_vault_the_chain_key_is_wrapped_by_its_master_key_and_none_lies_beside_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let config = vault_config(dir.path(), &log);
    opens_and_audits(&config);
    // A second process-like open of the same config continues the same chain.
    opens_and_audits(&config);
    assert!(
        !default_key_path(&log).exists(),
        "a chain key file was written beside the log"
    );
    let key = vault_key(&config);
    let report = verify_file(&log, &key).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.lines, 2);

    // Another vault (another master key) keeps another key: it does not verify this log.
    let other_dir = tempfile::tempdir().unwrap();
    let other_log = other_dir.path().join("audit.jsonl");
    let other = vault_config(other_dir.path(), &other_log);
    opens_and_audits(&other);
    let p = verify_file(&log, &vault_key(&other))
        .unwrap()
        .problem
        .unwrap();
    assert_eq!(p.kind, ProblemKind::WrongKey);
}

#[test]
fn the_vault_chain_key_outlives_master_rotation_and_retirement() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let config = vault_config(dir.path(), &log);
    opens_and_audits(&config);
    let before = vault_key(&config);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let vault = sealbox::config::open_local_vault(
            &dir.path().join("vault"),
            &dir.path().join("master.key"),
        )
        .await
        .unwrap();
        vault.rotate_master().await.unwrap();
        let retired = vault.retire_master().await.unwrap();
        assert!(
            !retired.retired.is_empty(),
            "the first master version is gone"
        );
    });
    // The service opens again: same key, the chain goes on.
    opens_and_audits(&config);
    let report = verify_file(&log, &vault_key(&config)).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.lines, 2);
    assert!(verify_file(&log, &before).unwrap().is_ok());
}

#[test]
fn a_log_started_with_a_key_file_keeps_it_when_a_vault_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let config = vault_config(dir.path(), &log);
    let file = default_key_path(&log);
    write_key(&file, 0o600);
    opens_and_audits(&config);
    let key = AuditKey::from_file(&file).unwrap();
    assert!(verify_file(&log, &key).unwrap().is_ok());
}
