//! Several processes on one local vault.
//!
//! - Four processes make a mix of `get`, durable `put`, `list` and stage moves on the same 64
//!   secrets at once. No operation fails (in particular none reports the database busy or
//!   locked: the vault waits for the write lock itself), and afterwards `verify` is clean and
//!   every write a process was told succeeded reads back: each acknowledged version holds its
//!   value, each secret has exactly the acknowledged versions, and each process's own stage
//!   sits on the version it last moved it to.
//! - A process holding a write transaction open does not block readers in another process
//!   (WAL), and a writer waits for it for at most the vault's busy timeout, then gets
//!   `Unavailable` saying so; once the lock is free the write goes through.
//!
//! The other processes are this test binary re-executed with an environment variable set.
//! `SEALBOX_STRESS_OPS` sets the operations per process (default 10 000).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sealbox::keys::{KeyId, KeyProvider, LocalKeyFile};
use sealbox::store::local::{LocalVault, LocalVaultOptions, database_path};
use sealbox::store::{
    ListOptions, PutOptions, SecretName, SecretStore, Stage, VersionId, VersionSelector,
};
use sealbox::{ErrorKind, ExposeSecret, Secret};

const STRESS_CHILD: &str = "SEALBOX_STRESS_CHILD";
const STRESS_INDEX: &str = "SEALBOX_STRESS_INDEX";
const STRESS_OPS: &str = "SEALBOX_STRESS_OPS";
const HOLD_CHILD: &str = "SEALBOX_HOLD_CHILD";
const PROCESSES: usize = 4;
const NAMES: usize = 64;
/// How long the holder keeps its write transaction open.
const HOLD: Duration = Duration::from_secs(4);

fn key(dir: &Path) -> Arc<dyn KeyProvider> {
    Arc::new(
        LocalKeyFile::open_or_create(KeyId::new("local").unwrap(), dir.join("master.key")).unwrap(),
    )
}

fn secret_name(k: usize) -> SecretName {
    format!("stress/secret-{k:02}").parse().unwrap()
}

fn secret(text: &str) -> Secret {
    Secret::init_with(text.len(), |d| {
        d.copy_from_slice(text.as_bytes());
        Ok(())
    })
    .unwrap()
}

fn ops_per_process() -> usize {
    std::env::var(STRESS_OPS)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000)
}

fn in_child() -> bool {
    std::env::var(STRESS_CHILD).is_ok() || std::env::var(HOLD_CHILD).is_ok()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// One stress process: `ops` operations, each acknowledged write appended to
/// `acks-INDEX.txt` as `put NAME VERSION VALUE` or `stage NAME STAGE VERSION`. Any failed
/// operation panics, failing the process.
#[test]
fn stress_child() {
    let Ok(dir) = std::env::var(STRESS_CHILD) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let index: usize = std::env::var(STRESS_INDEX).unwrap().parse().unwrap();
    let ops = ops_per_process();
    let mut acks = std::io::BufWriter::new(
        std::fs::File::create(dir.join(format!("acks-{index}.txt"))).unwrap(),
    );
    let own_stage: Stage = format!("p{index}").parse().unwrap();
    let mut seed =
        0x9E37_79B9_7F4A_7C15u64 ^ (index as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut counts = [0usize; 4];
    let mut slowest = Duration::ZERO;
    runtime().block_on(async {
        let vault = LocalVault::open(&dir, key(&dir)).await.unwrap();
        for j in 0..ops {
            let r = next();
            let k = (r >> 8) as usize % NAMES;
            let name = secret_name(k);
            let started = Instant::now();
            let kind = (r % 20) as usize;
            if kind < 8 {
                counts[0] += 1;
                let got = vault.get(&name, &VersionSelector::Current).await;
                let got = got.unwrap_or_else(|e| panic!("p{index} op {j}: get {name}: {e}"));
                assert!(!got.value.is_empty());
            } else if kind < 14 {
                counts[1] += 1;
                let text = format!("p{index}-op{j}");
                let info = vault
                    .put(&name, &secret(&text), &PutOptions::default())
                    .await
                    .unwrap_or_else(|e| panic!("p{index} op {j}: put {name}: {e}"));
                writeln!(acks, "put {name} {} {text}", info.version).unwrap();
            } else if kind < 17 {
                counts[2] += 1;
                let page = vault
                    .list(&ListOptions {
                        prefix: "stress/".into(),
                        page_size: Some(1000),
                        ..ListOptions::default()
                    })
                    .await
                    .unwrap_or_else(|e| panic!("p{index} op {j}: list: {e}"));
                assert_eq!(page.entries.len(), NAMES, "p{index} op {j}: list");
            } else {
                counts[3] += 1;
                let current = vault
                    .get(&name, &VersionSelector::Current)
                    .await
                    .unwrap_or_else(|e| panic!("p{index} op {j}: get {name}: {e}"))
                    .version;
                vault
                    .set_stage(&name, &own_stage, Some(&current))
                    .await
                    .unwrap_or_else(|e| panic!("p{index} op {j}: stage {name}: {e}"));
                writeln!(acks, "stage {name} {own_stage} {current}").unwrap();
            }
            slowest = slowest.max(started.elapsed());
        }
    });
    acks.flush().unwrap();
    // libtest has already printed "test stress_child ... " without a newline.
    println!(
        "\nsummary gets {} puts {} lists {} stages {} slowest_ms {}",
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        slowest.as_millis()
    );
}

#[test]
fn four_processes_of_mixed_operations_fail_nothing_and_lose_no_acknowledged_write() {
    if in_child() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let vault = LocalVault::create(dir.path(), key(dir.path()))
            .await
            .unwrap();
        for k in 0..NAMES {
            vault
                .put(&secret_name(k), &secret("initial"), &PutOptions::default())
                .await
                .unwrap();
        }
    });
    let started = Instant::now();
    let children: Vec<_> = (0..PROCESSES)
        .map(|p| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "stress_child", "--nocapture", "--test-threads=1"])
                .env(STRESS_CHILD, dir.path())
                .env(STRESS_INDEX, p.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (p, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "process {p} failed an operation:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary = stdout
            .lines()
            .find(|l| l.starts_with("summary "))
            .unwrap_or_else(|| panic!("process {p} printed no summary: {stdout}"));
        eprintln!("process {p}: {summary}");
    }
    let elapsed = started.elapsed();

    // What the processes were told: every put's version and value, each process's last stage.
    let mut puts: BTreeMap<String, BTreeMap<u64, String>> = BTreeMap::new();
    let mut stages: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut acknowledged = 0;
    for p in 0..PROCESSES {
        let text = std::fs::read_to_string(dir.path().join(format!("acks-{p}.txt"))).unwrap();
        for line in text.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            match fields.as_slice() {
                ["put", name, version, value] => {
                    let earlier = puts
                        .entry(name.to_string())
                        .or_default()
                        .insert(version.parse().unwrap(), value.to_string());
                    assert!(
                        earlier.is_none(),
                        "two acknowledged puts of {name} got version {version}"
                    );
                }
                ["stage", name, stage, version] => {
                    stages.insert((name.to_string(), stage.to_string()), version.to_string());
                }
                _ => panic!("bad acknowledgement line {line:?}"),
            }
            acknowledged += 1;
        }
    }
    rt.block_on(async {
        let vault = LocalVault::open(dir.path(), key(dir.path())).await.unwrap();
        let report = vault.verify().await.unwrap();
        assert!(report.is_ok(), "verify after the stress run: {report:?}");
        for k in 0..NAMES {
            let name = secret_name(k);
            let acked = puts.get(name.as_str()).map_or(0, BTreeMap::len);
            let meta = vault.describe(&name).await.unwrap();
            assert_eq!(
                meta.versions.len(),
                1 + acked,
                "{name}: versions stored are not the initial one plus the acknowledged puts"
            );
        }
        for (name, versions) in &puts {
            let name: SecretName = name.parse().unwrap();
            for (version, value) in versions {
                let got = vault
                    .get(
                        &name,
                        &VersionSelector::Version(VersionId::from(*version as i64)),
                    )
                    .await
                    .unwrap_or_else(|e| panic!("acknowledged {name} v{version} unreadable: {e}"));
                assert_eq!(
                    got.value.expose_secret(),
                    value.as_bytes(),
                    "{name} v{version} does not hold the acknowledged value"
                );
            }
        }
        for ((name, stage), version) in &stages {
            let name: SecretName = name.parse().unwrap();
            let got = vault
                .get(&name, &VersionSelector::Stage(stage.parse().unwrap()))
                .await
                .unwrap();
            assert_eq!(
                got.version.to_string(),
                *version,
                "{name}: stage {stage} is not where its process last moved it"
            );
        }
    });
    eprintln!(
        "{PROCESSES} processes x {} operations in {elapsed:.1?}; {acknowledged} acknowledged \
         writes read back",
        ops_per_process()
    );
}

/// Holds a write transaction on the vault file for [`HOLD`], printing `holding` once it has
/// the lock and `released` after rolling back.
#[test]
fn hold_child() {
    let Ok(db) = std::env::var(HOLD_CHILD) else {
        return;
    };
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    conn.execute("UPDATE meta SET value = value WHERE key = 'store_id'", [])
        .unwrap();
    println!("\nholding");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(HOLD);
    conn.execute_batch("ROLLBACK").unwrap();
    println!("released");
}

#[test]
fn a_write_transaction_in_another_process_blocks_no_reader_and_a_writer_only_until_the_timeout() {
    if in_child() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let name: SecretName = "app/db".parse().unwrap();
    let bound = Duration::from_millis(500);
    let vault = rt.block_on(async {
        let options = LocalVaultOptions {
            busy_timeout: bound,
            ..LocalVaultOptions::default()
        };
        LocalVault::create_with(dir.path(), key(dir.path()), options)
            .await
            .unwrap()
    });
    rt.block_on(vault.put(&name, &secret("before"), &PutOptions::default()))
        .unwrap();

    let mut holder = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "hold_child", "--nocapture", "--test-threads=1"])
        .env(HOLD_CHILD, database_path(dir.path()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    assert!(
        lines.by_ref().map_while(Result::ok).any(|l| l == "holding"),
        "the holder never took the write lock"
    );
    let held_since = Instant::now();

    // Readers: a second of reads while the other process holds its write transaction.
    let mut reads = 0;
    let mut slowest = Duration::ZERO;
    while held_since.elapsed() < Duration::from_secs(1) {
        let started = Instant::now();
        let got = rt
            .block_on(vault.get(&name, &VersionSelector::Current))
            .unwrap();
        slowest = slowest.max(started.elapsed());
        assert_eq!(got.value.expose_secret(), b"before");
        reads += 1;
    }
    assert!(
        slowest < Duration::from_millis(500),
        "a read waited {slowest:?} for another process's write transaction"
    );

    // A writer waits for the lock up to the busy timeout, then is told so.
    let started = Instant::now();
    let err = rt
        .block_on(vault.put(&name, &secret("during"), &PutOptions::default()))
        .unwrap_err();
    let waited = started.elapsed();
    assert!(
        held_since.elapsed() < HOLD,
        "the holder released before the write gave up; the test proves nothing"
    );
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(
        waited >= bound && waited < bound + Duration::from_millis(1500),
        "the write gave up after {waited:?}, not after its busy timeout of {bound:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("write lock")
            && message.contains("500 ms")
            && message.contains("nothing was written"),
        "{message}"
    );
    assert!(!message.contains("during"), "the value leaked: {message}");

    // Once the holder is gone, writing works again.
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter().any(|l| l == "released"),
        "the holder never released: {rest:?}"
    );
    assert!(holder.wait().unwrap().success());
    rt.block_on(vault.put(&name, &secret("after"), &PutOptions::default()))
        .unwrap();
    let got = rt
        .block_on(vault.get(&name, &VersionSelector::Current))
        .unwrap();
    assert_eq!(got.value.expose_secret(), b"after");
    eprintln!("{reads} reads during the other process's write transaction, slowest {slowest:?}");
}
