//! Two processes and several threads in each increment one counter secret with
//! compare-and-set. No update may be lost (the final value equals the number of successful
//! puts), every successful put creates its own version, and every refusal is a `Conflict`.
//!
//! The second process is this test binary re-executed with `SEALBOX_CAS_CHILD` set.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use sealbox::keys::{KeyId, KeyProvider, LocalKeyFile};
use sealbox::store::local::LocalVault;
use sealbox::store::{PutOptions, SecretName, SecretStore, VersionSelector};
use sealbox::{ErrorKind, ExposeSecret, Secret};

const CHILD_ENV: &str = "SEALBOX_CAS_CHILD";
const THREADS: usize = 4;
const INCREMENTS: usize = 12;

fn key(dir: &Path) -> Arc<dyn KeyProvider> {
    Arc::new(
        LocalKeyFile::open_or_create(KeyId::new("local").unwrap(), dir.join("master.key")).unwrap(),
    )
}

fn counter() -> SecretName {
    "shared/counter".parse().unwrap()
}

/// `THREADS` threads, each with its own runtime and vault handle, each making `INCREMENTS`
/// successful CAS increments. Returns (versions created, conflicts seen).
fn increment_from_threads(dir: &Path, tag: &str) -> (Vec<String>, usize) {
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let dir = dir.to_path_buf();
            let tag = format!("{tag}-{t}");
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let vault = LocalVault::open(&dir, key(&dir)).await.unwrap();
                    let mut versions = Vec::new();
                    let mut conflicts = 0;
                    while versions.len() < INCREMENTS {
                        let current = vault
                            .get(&counter(), &VersionSelector::Current)
                            .await
                            .unwrap();
                        let n: u64 = std::str::from_utf8(current.value.expose_secret())
                            .unwrap()
                            .parse()
                            .unwrap();
                        let next = (n + 1).to_string();
                        let value = Secret::init_with(next.len(), |d| {
                            d.copy_from_slice(next.as_bytes());
                            Ok(())
                        })
                        .unwrap();
                        let options = PutOptions {
                            expected_current: Some(Some(current.version.clone())),
                            ..PutOptions::default()
                        };
                        match vault.put(&counter(), &value, &options).await {
                            Ok(info) => versions.push(info.version.to_string()),
                            Err(e) if e.kind() == ErrorKind::Conflict => conflicts += 1,
                            Err(e) => panic!("{tag}: a CAS put failed with {e}, not Conflict"),
                        }
                    }
                    (versions, conflicts)
                })
            })
        })
        .collect();
    let mut versions = Vec::new();
    let mut conflicts = 0;
    for h in handles {
        let (v, c) = h.join().unwrap();
        versions.extend(v);
        conflicts += c;
    }
    (versions, conflicts)
}

#[test]
fn cas_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (versions, conflicts) = increment_from_threads(Path::new(&dir), "child");
    // libtest has already printed "test cas_child ... " without a newline.
    println!("\nconflicts {conflicts}");
    for v in versions {
        println!("version {v}");
    }
}

#[test]
fn two_processes_and_many_threads_lose_no_update() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let vault = LocalVault::create(dir.path(), key(dir.path()))
            .await
            .unwrap();
        let zero = Secret::init_with(1, |d| {
            d[0] = b'0';
            Ok(())
        })
        .unwrap();
        vault
            .put(&counter(), &zero, &PutOptions::default())
            .await
            .unwrap();
    });

    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "cas_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut versions, parent_conflicts) = increment_from_threads(dir.path(), "parent");
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let child_versions: Vec<String> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("version "))
        .map(str::to_owned)
        .collect();
    let child_conflicts: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("conflicts "))
        .unwrap_or_else(|| panic!("child printed no summary: {stdout}"))
        .parse()
        .unwrap();
    assert_eq!(
        child_versions.len(),
        THREADS * INCREMENTS,
        "child output: {stdout}"
    );
    versions.extend(child_versions);

    let expected = 2 * THREADS * INCREMENTS;
    let distinct: std::collections::BTreeSet<_> = versions.iter().collect();
    assert_eq!(
        distinct.len(),
        expected,
        "two successful puts reported the same version"
    );
    rt.block_on(async {
        let vault = LocalVault::open(dir.path(), key(dir.path())).await.unwrap();
        let got = vault
            .get(&counter(), &VersionSelector::Current)
            .await
            .unwrap();
        assert_eq!(
            got.value.expose_secret(),
            expected.to_string().as_bytes(),
            "lost update: the counter is not the number of successful increments"
        );
        let meta = vault.describe(&counter()).await.unwrap();
        assert_eq!(meta.versions.len(), expected + 1);
        assert!(vault.verify().await.unwrap().is_ok());
    });
    eprintln!(
        "{expected} increments from 2 processes x {THREADS} threads; {} conflicts",
        parent_conflicts + child_conflicts
    );
}
