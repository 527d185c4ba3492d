//! Key material is never in unlocked memory, whatever the memory policy: under a small
//! RLIMIT_MEMLOCK a key operation either succeeds with every key locked or fails with
//! `MemoryLock`, and the caches of unwrapped keys shrink to fit the budget instead.
//!
//! Each test re-runs itself in a child process as an unprivileged user (uid 65534, without
//! CAP_IPC_LOCK, which would ignore the limit) under a given RLIMIT_MEMLOCK, through `prlimit`
//! and `setpriv` from util-linux. The default policy stays `BestEffort` throughout: values may
//! run unlocked there, keys may not.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::Arc;

use sealbox::cache::CacheConfig;
use sealbox::keys::{DataKey, KeyId, KeyProvider, KeyVersion, LocalKeyFile};
use sealbox::memory::{self, MemoryPolicy};
use sealbox::store::local::LocalVault;
use sealbox::store::memory::MemoryStore;
use sealbox::store::{PutOptions, SecretName, SecretStore, VersionSelector};
use sealbox::{ErrorKind, ExposeSecret, Sealbox, Secret};

const CHILD_ENV: &str = "SEALBOX_MEMORY_KEYS_CHILD";
const NOBODY: u32 = 65534;
const KIB: usize = 1024;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `test` of this binary again as uid 65534 under an RLIMIT_MEMLOCK of `limit` bytes;
/// returns whether this process is that child (and should run the test's body).
fn in_child_under_limit(test: &str, limit: usize) -> bool {
    if std::env::var_os(CHILD_ENV).is_some() {
        assert!(!is_root(), "the child must not run as root");
        assert_eq!(memory::memlock_limit(), Some(limit));
        assert_eq!(memory::default_policy(), MemoryPolicy::BestEffort);
        return true;
    }
    if !is_root() {
        eprintln!("SKIPPED: switching to uid {NOBODY} with setpriv needs root; CI runs as root");
        return false;
    }
    // The build directory may not be reachable by uid 65534: run a world-readable copy.
    let dir = tempfile::Builder::new()
        .prefix("sealbox-memkeys")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.path().join("memory_keys");
    std::fs::copy(std::env::current_exe().unwrap(), &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("prlimit")
        .arg(format!("--memlock={limit}:{limit}"))
        .arg("setpriv")
        .arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .arg("--clear-groups")
        .arg(&copy)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .current_dir("/tmp")
        .output()
        .expect("could not start the child (needs prlimit and setpriv from util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "child failed: {}\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

fn key_id(s: &str) -> KeyId {
    KeyId::new(s).unwrap()
}

/// Locked memory one key takes: a 32-byte slot for its bytes and a 1 KiB slot for ring's
/// schedule.
const KEY_FOOTPRINT: usize = 32 + 1024;

#[test]
fn keys_are_locked_or_refused_never_unlocked() {
    const LIMIT: usize = 64 * KIB;
    if !in_child_under_limit("keys_are_locked_or_refused_never_unlocked", LIMIT) {
        return;
    }
    // Keys until the budget is spent: every one locked, then a MemoryLock error that names it.
    let mut keys = Vec::new();
    let refused = loop {
        match DataKey::generate(key_id("dek"), KeyVersion::FIRST) {
            Ok(k) => {
                assert!(k.is_locked(), "key {} is not locked", keys.len());
                keys.push(k);
                assert!(keys.len() * KEY_FOOTPRINT <= LIMIT, "locked past the limit");
            }
            Err(e) => break e,
        }
    };
    assert_eq!(refused.kind(), ErrorKind::MemoryLock);
    let message = refused.message();
    assert!(
        message.contains("RLIMIT_MEMLOCK is 64 KiB") && message.contains("key material"),
        "{message}"
    );
    assert!(keys.len() >= 8, "refused too early, after {}", keys.len());

    // Values may still run unlocked under BestEffort: fill the page the keys' bytes share
    // until new 32-byte values land on a page that cannot be locked.
    let mut values: Vec<Secret> = Vec::new();
    while values.last().is_none_or(|v| v.is_locked()) {
        values.push(Secret::random(32).unwrap());
    }
    let unlocked = Secret::random(32).unwrap();
    assert!(!unlocked.is_locked());
    let unlocked_too = Secret::random(32).unwrap();
    assert!(!unlocked_too.is_locked());
    // Such material is not accepted as a key while nothing can be locked ...
    let e = DataKey::from_secret(key_id("kek"), KeyVersion::FIRST, unlocked).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MemoryLock);
    // ... and once locked memory is free again, it is moved into it.
    keys.truncate(keys.len() / 2);
    let k = DataKey::from_secret(key_id("kek"), KeyVersion::FIRST, unlocked_too).unwrap();
    assert!(k.is_locked());
    drop(values);

    // A sealed cache's key is a key too: no cache is built around an unlocked one.
    let spend: Vec<DataKey> =
        std::iter::from_fn(|| DataKey::generate(key_id("x"), KeyVersion::FIRST).ok()).collect();
    let sealed = Sealbox::builder()
        .store(Arc::new(MemoryStore::new()))
        .cache(CacheConfig {
            sealed: true,
            ..CacheConfig::default()
        })
        .build();
    assert_eq!(sealed.unwrap_err().kind(), ErrorKind::MemoryLock);
    drop(spend);
}

#[tokio::test(flavor = "current_thread")]
async fn a_vault_under_a_small_limit_shrinks_its_key_caches_and_keeps_working() {
    const LIMIT: usize = 256 * KIB;
    if !in_child_under_limit(
        "a_vault_under_a_small_limit_shrinks_its_key_caches_and_keeps_working",
        LIMIT,
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let provider: Arc<dyn KeyProvider> = Arc::new(
        LocalKeyFile::open_or_create(key_id("local"), dir.path().join("master.key")).unwrap(),
    );
    let vault = LocalVault::create(dir.path(), provider).await.unwrap();
    // A quarter of the budget, about 1 KiB per DEK.
    let capacity = vault.dek_cache_capacity();
    assert!(
        capacity * KEY_FOOTPRINT <= LIMIT / 4 && capacity >= LIMIT / 4 / (2 * KEY_FOOTPRINT),
        "{capacity} DEKs cached under a {LIMIT}-byte limit"
    );

    // More DEKs (one per secret) and KEKs (one per namespace) than the whole budget holds:
    // 300 DEKs and 150 KEKs are about 475 KiB of keys.
    let names: Vec<SecretName> = (0..300)
        .map(|i| format!("ns{}/secret{i}", i / 2).parse().unwrap())
        .collect();
    for (i, name) in names.iter().enumerate() {
        let value = Secret::init_with(8, |b| {
            b.copy_from_slice(&(i as u64).to_be_bytes());
            Ok(())
        })
        .unwrap();
        vault
            .put(name, &value, &PutOptions::default())
            .await
            .unwrap_or_else(|e| panic!("put {i}: {e}"));
    }
    for round in 0..2 {
        for (i, name) in names.iter().enumerate() {
            let got = vault
                .get(name, &VersionSelector::Current)
                .await
                .unwrap_or_else(|e| panic!("round {round}, get {i}: {e}"));
            assert_eq!(got.value.expose_secret(), (i as u64).to_be_bytes());
        }
    }
    // The keys the vault holds stayed within the budget, leaving room for more.
    let extra = DataKey::generate(key_id("extra"), KeyVersion::FIRST).unwrap();
    assert!(extra.is_locked());
}

#[tokio::test(flavor = "current_thread")]
async fn with_no_memlock_budget_a_vault_refuses_to_run_its_keys_unlocked() {
    if !in_child_under_limit(
        "with_no_memlock_budget_a_vault_refuses_to_run_its_keys_unlocked",
        0,
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let e =
        LocalKeyFile::open_or_create(key_id("local"), dir.path().join("master.key")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MemoryLock);
    assert!(
        e.message().contains("RLIMIT_MEMLOCK is 0 bytes"),
        "{}",
        e.message()
    );
    // A value still works unlocked under the default BestEffort policy.
    assert!(!Secret::random(32).unwrap().is_locked());
}
