//! Crash safety of the schema 3 -> 5 migration: a child process opening (and so migrating) a
//! 10,000-secret schema-3 vault is killed with SIGKILL at random points. After every kill the
//! file is schema 3 or schema 5, never in between, and it opens (migrating if still 3),
//! verifies, and reads back the values written.
//!
//! The child is this test binary re-executed with `SEALBOX_MIGRATE_CHILD` set, running
//! `migrate_child` only.

#[path = "support/v3_layout.rs"]
mod v3_layout;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sealbox::keys::{KeyId, KeyProvider, LocalKeyFile};
use sealbox::store::local::LocalVault;
use sealbox::store::{PutOptions, SecretName, SecretStore, Stage, VersionSelector};
use sealbox::{ExposeSecret, Secret};

const CHILD_ENV: &str = "SEALBOX_MIGRATE_CHILD";
const SECRETS: usize = 10_000;
const KILLS: usize = 8;

fn key(dir: &Path) -> Arc<dyn KeyProvider> {
    Arc::new(
        LocalKeyFile::open_or_create(KeyId::new("local").unwrap(), dir.join("master.key")).unwrap(),
    )
}

fn secret(v: &str) -> Secret {
    Secret::init_with(v.len(), |d| {
        d.copy_from_slice(v.as_bytes());
        Ok(())
    })
    .unwrap()
}

fn name_of(i: usize) -> SecretName {
    format!("ns{}/secret-{i:05}", i % 5).parse().unwrap()
}

fn value_of(i: usize) -> String {
    format!("value of secret {i}")
}

/// The child: opens the vault (which migrates it) and says so.
#[test]
fn migrate_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = Path::new(&dir);
        let _vault = LocalVault::open(dir.join("vault.sqlite3"), key(dir))
            .await
            .unwrap();
        println!("opened");
    });
}

/// A small xorshift for choosing kill times (test scheduling, not cryptography).
struct Jitter(u64);

impl Jitter {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for f in ["vault.sqlite3", "master.key"] {
        fs::copy(from.join(f), to.join(f)).unwrap();
    }
}

fn spawn_child(dir: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "migrate_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_killed_at_random_points_leaves_schema_3_or_4_and_a_vault_that_verifies() {
    let root = tempfile::tempdir().unwrap();
    let pristine = root.path().join("pristine");
    fs::create_dir_all(&pristine).unwrap();
    {
        let vault = LocalVault::create(pristine.join("vault.sqlite3"), key(&pristine))
            .await
            .unwrap();
        let items = (0..SECRETS)
            .map(|i| (name_of(i), secret(&value_of(i))))
            .collect();
        vault.import(items).await.unwrap();
        // Some secrets with a second, pending version: stage rows beyond CURRENT.
        for i in (0..SECRETS).step_by(500) {
            let options = PutOptions {
                stages: vec![Stage::Pending],
                ..PutOptions::default()
            };
            vault
                .put(&name_of(i), &secret("pending"), &options)
                .await
                .unwrap();
        }
    }
    v3_layout::downgrade_to_v3(&pristine.join("vault.sqlite3"));
    assert_eq!(
        v3_layout::schema_version(&pristine.join("vault.sqlite3")),
        "3"
    );

    // How long an uninterrupted migration takes, to spread the kills over it.
    let calibrate = root.path().join("calibrate");
    copy_dir(&pristine, &calibrate);
    let started = Instant::now();
    let out = spawn_child(&calibrate).wait_with_output().unwrap();
    let full = started.elapsed();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("opened"),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        v3_layout::schema_version(&calibrate.join("vault.sqlite3")),
        "5"
    );

    let mut jitter = Jitter(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()));
    let mut found = [0usize; 2];
    for run in 0..KILLS {
        let dir = root.path().join(format!("run{run}"));
        copy_dir(&pristine, &dir);
        let mut child = spawn_child(&dir);
        let at = Duration::from_micros(jitter.next() % (full.as_micros() as u64).max(1));
        std::thread::sleep(at);
        let _ = child.kill();
        let _ = child.wait();
        let db = dir.join("vault.sqlite3");
        let version = v3_layout::schema_version(&db);
        match version.as_str() {
            "3" => found[0] += 1,
            "5" => found[1] += 1,
            other => panic!("run {run}: killed after {at:?}, schema version {other}"),
        }
        let vault = LocalVault::open(&db, key(&dir)).await.unwrap();
        assert_eq!(v3_layout::schema_version(&db), "5");
        let report = vault.verify().await.unwrap();
        assert!(report.is_ok(), "run {run}: {report:?}");
        assert_eq!(report.secrets, SECRETS as u64);
        for i in [0, 1, 499, 500, SECRETS - 1] {
            let got = vault
                .get(&name_of(i), &VersionSelector::Current)
                .await
                .unwrap();
            assert_eq!(got.value.expose_secret(), value_of(i).as_bytes());
        }
        drop(vault);
        fs::remove_dir_all(&dir).unwrap();
    }
    eprintln!(
        "uninterrupted migration (process start to exit) {full:?}; after {KILLS} kills: {} \
         found at schema 3, {} at schema 5",
        found[0], found[1]
    );
}
