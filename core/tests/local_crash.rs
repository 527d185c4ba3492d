//! Crash safety: a child process writing versions is killed with SIGKILL at random points,
//! hundreds of times. After every kill the vault opens, `verify` passes, and every version
//! whose `put` returned before the kill (the child prints `committed ...` after each) is
//! readable with the value written.
//!
//! The child is this test binary re-executed with `SEALBOX_CRASH_CHILD` set, running
//! `crash_child` only.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sealbox::keys::{KeyId, KeyProvider, LocalKeyFile};
use sealbox::store::local::LocalVault;
use sealbox::store::{PutOptions, SecretName, SecretStore, Stage, VersionId, VersionSelector};
use sealbox::{ExposeSecret, Secret};

const CHILD_ENV: &str = "SEALBOX_CRASH_CHILD";
const KILLS: usize = 200;

fn key(dir: &Path) -> Arc<dyn KeyProvider> {
    Arc::new(
        LocalKeyFile::open_or_create(KeyId::new("local").unwrap(), dir.join("master.key")).unwrap(),
    )
}

fn value_for(run: u64, n: u64) -> String {
    format!("run-{run}-write-{n}-{}", "x".repeat((n % 7) as usize * 9))
}

fn name_for(run: u64, n: u64) -> SecretName {
    // Early runs create new namespaces (KEK creation), later ones new secrets (DEK creation),
    // most writes add versions to existing secrets.
    format!("ns{}/secret-{}", run % 6, n % 4).parse().unwrap()
}

/// The child: writes versions as fast as it can, printing each one after `put` returns.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let run: u64 = std::env::var("SEALBOX_CRASH_RUN").unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = Path::new(&dir);
        let vault = LocalVault::open(dir, key(dir)).await.unwrap();
        let started = Instant::now();
        for n in 0.. {
            if started.elapsed() > Duration::from_secs(10) {
                break;
            }
            let name = name_for(run, n);
            let value = value_for(run, n);
            let v = Secret::init_with(value.len(), |d| {
                d.copy_from_slice(value.as_bytes());
                Ok(())
            })
            .unwrap();
            // Every third write goes in as PENDING, exercising stage rows too.
            let options = PutOptions {
                stages: if n % 3 == 2 {
                    vec![Stage::Pending]
                } else {
                    vec![Stage::Current]
                },
                ..PutOptions::default()
            };
            let info = vault.put(&name, &v, &options).await.unwrap();
            println!("committed {n} {}", info.version);
        }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_writers_never_lose_a_committed_version() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    drop(
        LocalVault::create(dir.path(), key(dir.path()))
            .await
            .unwrap(),
    );
    let exe = std::env::current_exe().unwrap();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut jitter = Jitter(seed);
    let mut all: Vec<(SecretName, VersionId, String)> = Vec::new();
    let mut kills_mid_write = 0;
    let started = Instant::now();
    for run in 0..KILLS as u64 {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .env("SEALBOX_CRASH_RUN", run.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (first_tx, first_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            let mut first_tx = Some(first_tx);
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
                let Ok(line) = line else { break };
                if line.starts_with("committed ")
                    && let Some(tx) = first_tx.take()
                {
                    let _ = tx.send(());
                }
                lines.push(line);
            }
            lines
        });
        if run % 5 == 0 {
            // Blind: anywhere in start-up (opening the vault) or the first writes.
            std::thread::sleep(Duration::from_micros(jitter.next() % 40_000));
        } else {
            // Mid-stream: once writes are flowing, at a random point among them.
            let _ = first_rx.recv_timeout(Duration::from_secs(10));
            std::thread::sleep(Duration::from_micros(jitter.next() % 25_000));
        }
        // SIGKILL: no destructors, no flushing, no SQLite cleanup.
        child.kill().unwrap();
        child.wait().unwrap();
        let out = reader.join().unwrap().join("\n");

        let mut committed = Vec::new();
        for line in out.lines().filter_map(|l| l.strip_prefix("committed ")) {
            let (n, version) = line.split_once(' ').unwrap();
            let n: u64 = n.parse().unwrap();
            committed.push((name_for(run, n), VersionId::new(version), value_for(run, n)));
        }
        if !committed.is_empty() {
            kills_mid_write += 1;
        }

        let vault = LocalVault::open(dir.path(), key(dir.path()))
            .await
            .unwrap_or_else(|e| panic!("run {run}: the vault does not open after SIGKILL: {e}"));
        let report = vault.verify().await.unwrap();
        assert!(
            report.is_ok(),
            "run {run}: verify after SIGKILL: {report:?}"
        );
        for (name, version, value) in &committed {
            let got = vault
                .get(name, &VersionSelector::Version(version.clone()))
                .await
                .unwrap_or_else(|e| panic!("run {run}: committed {name} v{version} lost: {e}"));
            assert_eq!(
                got.value.expose_secret(),
                value.as_bytes(),
                "run {run}: {name} v{version}"
            );
        }
        all.extend(committed);
    }
    // At the end, every version any run saw committed is still there.
    let vault = LocalVault::open(dir.path(), key(dir.path())).await.unwrap();
    for (name, version, value) in &all {
        let got = vault
            .get(name, &VersionSelector::Version(version.clone()))
            .await
            .unwrap();
        assert_eq!(got.value.expose_secret(), value.as_bytes());
    }
    let report = vault.verify().await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert!(
        kills_mid_write >= KILLS / 4,
        "only {kills_mid_write} of {KILLS} kills happened after a write; the test is not \
         exercising mid-write crashes"
    );
    eprintln!(
        "{KILLS} SIGKILLs, {kills_mid_write} after at least one committed write, {} committed \
         versions checked, {} versions verified, {:?}",
        all.len(),
        report.versions_ok,
        started.elapsed()
    );
}
