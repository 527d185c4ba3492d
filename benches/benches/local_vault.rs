//! Local vault `get` of a 64-byte secret (no client cache in front) and durable `put`, at 1k
//! and 100k stored secrets, each beside the raw baseline: bare `rusqlite` on tables of the same
//! shape (secrets / versions / stages, the same join for reads, the same immediate transaction
//! with `synchronous = FULL` for writes), in the same run. Also prints bytes on disk per stored
//! version for both.
//!
//! Run: `cargo bench -p sealbox-benches --bench local_vault -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rusqlite::{Connection, params};
use sealbox::Secret;
use sealbox::keys::{KeyId, KeyProvider, LocalKeyFile};
use sealbox::store::local::LocalVault;
use sealbox::store::{PutOptions, SecretName, SecretStore, VersionSelector};

const SIZES: [usize; 2] = [1_000, 100_000];
const VALUE_LEN: usize = 64;

fn value(i: usize) -> Secret {
    Secret::init_with(VALUE_LEN, |d| {
        for (j, b) in d.iter_mut().enumerate() {
            *b = (i.wrapping_mul(31).wrapping_add(j * 7) % 251) as u8;
        }
        Ok(())
    })
    .unwrap()
}

fn name(i: usize) -> String {
    format!("tenant-{}/service-{}/secret-{i}", i % 10, i % 97)
}

/// A cheap deterministic index sequence (spreads reads over the whole vault).
struct Picker(u64, usize);

impl Picker {
    fn next(&mut self) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % self.1 as u64) as usize
    }
}

async fn build_vault(dir: &Path, n: usize) -> LocalVault {
    let key: Arc<dyn KeyProvider> = Arc::new(
        LocalKeyFile::open_or_create(KeyId::new("local").unwrap(), dir.join("master.key")).unwrap(),
    );
    let vault = LocalVault::create(dir, key).await.unwrap();
    let started = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(20_000) {
        let items = chunk
            .iter()
            .map(|&i| (SecretName::new(name(i)).unwrap(), value(i)))
            .collect();
        vault.import(items).await.unwrap();
    }
    eprintln!(
        "local_vault/build/{n}: {:?} via LocalVault::import",
        started.elapsed()
    );
    vault
}

/// The raw baseline: the vault's table shape without encryption, keys or Rust layers.
fn build_raw(path: &Path, n: usize) -> Connection {
    let mut conn = Connection::open(path).unwrap();
    conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
        .unwrap();
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;
         PRAGMA cache_size = -8192;
         CREATE TABLE secrets (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
             namespace TEXT NOT NULL, dek BLOB NOT NULL, next_version INTEGER NOT NULL,
             created INTEGER NOT NULL, updated INTEGER NOT NULL, purge_at INTEGER);
         CREATE TABLE versions (id INTEGER PRIMARY KEY, secret_id INTEGER NOT NULL
             REFERENCES secrets(id) ON DELETE CASCADE, version INTEGER NOT NULL,
             envelope BLOB NOT NULL, created INTEGER NOT NULL, UNIQUE (secret_id, version));
         CREATE TABLE stages (secret_id INTEGER NOT NULL, stage TEXT NOT NULL,
             version INTEGER NOT NULL, PRIMARY KEY (secret_id, stage)) WITHOUT ROWID;",
    )
    .unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut s = tx
            .prepare("INSERT INTO secrets (name, namespace, dek, next_version, created, updated) VALUES (?1, ?2, ?3, 2, 0, 0)")
            .unwrap();
        let mut v = tx
            .prepare("INSERT INTO versions (secret_id, version, envelope, created) VALUES (?1, 1, ?2, 0)")
            .unwrap();
        let mut st = tx
            .prepare("INSERT INTO stages (secret_id, stage, version) VALUES (?1, 'CURRENT', 1)")
            .unwrap();
        for i in 0..n {
            s.execute(params![name(i), format!("tenant-{}", i % 10), [0u8; 32]])
                .unwrap();
            let id = tx.last_insert_rowid();
            v.execute(params![id, [1u8; VALUE_LEN]]).unwrap();
            st.execute([id]).unwrap();
        }
    }
    tx.commit().unwrap();
    conn
}

fn raw_get(conn: &Connection, name: &str) -> Vec<u8> {
    conn.prepare_cached(
        "SELECT v.envelope FROM secrets s \
         JOIN stages st ON st.secret_id = s.id AND st.stage = 'CURRENT' \
         JOIN versions v ON v.secret_id = s.id AND v.version = st.version \
         WHERE s.name = ?1 AND s.purge_at IS NULL",
    )
    .unwrap()
    .query_row([name], |r| r.get(0))
    .unwrap()
}

fn raw_put(conn: &mut Connection, name: &str) {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    let (id, next): (i64, i64) = tx
        .prepare_cached("SELECT id, next_version FROM secrets WHERE name = ?1")
        .unwrap()
        .query_row([name], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    tx.prepare_cached(
        "INSERT INTO versions (secret_id, version, envelope, created) VALUES (?1, ?2, ?3, 0)",
    )
    .unwrap()
    .execute(params![id, next, [2u8; VALUE_LEN]])
    .unwrap();
    tx.prepare_cached(
        "INSERT OR REPLACE INTO stages (secret_id, stage, version) VALUES (?1, 'CURRENT', ?2)",
    )
    .unwrap()
    .execute([id, next])
    .unwrap();
    tx.prepare_cached("UPDATE secrets SET next_version = ?2, updated = 1 WHERE id = ?1")
        .unwrap()
        .execute([id, next + 1])
        .unwrap();
    tx.commit().unwrap();
}

fn file_size(path: &Path) -> u64 {
    let wal = format!("{}-wal", path.display());
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for n in SIZES {
        let dir = tempfile::tempdir().unwrap();
        let vault = rt.block_on(build_vault(dir.path(), n));
        let raw_path = dir.path().join("raw.sqlite3");
        let mut raw = build_raw(&raw_path, n);
        // Checkpointed sizes: what the stored versions cost at rest.
        vault.close_idle();
        raw.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        let vault_bytes = vault.disk_usage().unwrap();
        let raw_bytes = file_size(&raw_path);
        eprintln!(
            "local_vault/bytes_per_version/{n}: vault {:.1} B, raw baseline {:.1} B ({} B / {} B total)",
            vault_bytes as f64 / n as f64,
            raw_bytes as f64 / n as f64,
            vault_bytes,
            raw_bytes
        );

        let names: Vec<SecretName> = (0..n).map(|i| SecretName::new(name(i)).unwrap()).collect();
        let mut group = c.benchmark_group("local_vault_get_64B");
        let mut pick = Picker(0x9E37_79B9_7F4A_7C15, n);
        group.bench_function(BenchmarkId::new("vault", n), |b| {
            b.iter(|| {
                let name = &names[pick.next()];
                let v = rt
                    .block_on(vault.get(name, &VersionSelector::Current))
                    .unwrap();
                black_box(v.value.len())
            })
        });
        let mut pick = Picker(0x9E37_79B9_7F4A_7C15, n);
        group.bench_function(BenchmarkId::new("raw_rusqlite", n), |b| {
            b.iter(|| black_box(raw_get(&raw, names[pick.next()].as_str()).len()))
        });
        group.finish();

        let mut group = c.benchmark_group("local_vault_put_durable_64B");
        let mut pick = Picker(0xD1B5_4A32_D192_ED03, n);
        let v = value(7);
        group.bench_function(BenchmarkId::new("vault", n), |b| {
            b.iter(|| {
                let name = &names[pick.next()];
                black_box(
                    rt.block_on(vault.put(name, &v, &PutOptions::default()))
                        .unwrap(),
                )
            })
        });
        let mut pick = Picker(0xD1B5_4A32_D192_ED03, n);
        group.bench_function(BenchmarkId::new("raw_rusqlite", n), |b| {
            b.iter(|| raw_put(&mut raw, names[pick.next()].as_str()))
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
