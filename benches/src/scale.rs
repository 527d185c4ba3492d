//! The scale rig behind the `local_scale` bench: a local vault of N secrets (64-byte values)
//! beside bare `rusqlite` holding the same data, in one temporary directory, and the figures
//! criterion does not measure (bytes on disk per version, open time) plus interleaved timings
//! of `get`, durable `put` and a 1000-name `list` on both sides.
//!
//! The vault is used only through its public API (`LocalVault`, `SecretStore`), so the rig
//! measures whatever schema the vault has. The bare side keeps the table shape of the first
//! vault schema (`secrets`, `versions`, `stages`, read with the same join), without
//! encryption, keys or Rust layers: the baseline the README's vault rows have always used, so
//! figures compare across vault versions. A single-table read by name (`floor`) is timed
//! beside it, the least any SQLite point read costs.
//!
//! Generation goes through [`LocalVault::import`] (one transaction per 20 000 secrets, every
//! secret its own data key and version 1), not one durable `put` per secret: a million
//! fsyncs would take an hour.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use sealbox::keys::{KeyId, KeyProvider, LocalKeyFile};
use sealbox::store::local::LocalVault;
use sealbox::store::{ListOptions, PutOptions, SecretName, SecretStore, VersionSelector};
use sealbox::{ExposeSecret, Secret};

/// Bytes of every value.
pub const VALUE_LEN: usize = 64;
/// Names under one list prefix (`tenant-T/group-GGGG/`).
pub const GROUP: usize = 1000;
/// Secrets per import transaction.
const IMPORT_CHUNK: usize = 20_000;
/// Sizes of a `cargo bench` run.
pub const BENCH_SIZES: [usize; 3] = [1_000, 100_000, 1_000_000];
/// Overrides the sizes: `SEALBOX_SCALE_SIZES=1000,100000` (multiples of 1000).
pub const SIZES_ENV: &str = "SEALBOX_SCALE_SIZES";
/// Free disk a run needs per secret in the temporary directory: the vault (about 450 B a
/// version at schema v1), the bare copy (about 250 B), the floor table (about 100 B), the
/// journal of one import transaction and the versions the `put` benches add, with room to
/// spare for a larger schema. 1M secrets: about 2 GB.
pub const DISK_PER_SECRET: u64 = 2048;
/// Fixed part of the disk a run needs (journals, key file, criterion's own output).
pub const DISK_FIXED: u64 = 64 << 20;

/// The sizes to run: [`SIZES_ENV`] when set, else [`BENCH_SIZES`] under `cargo bench`
/// (criterion's `--bench` argument) and 1000 alone in test mode (`cargo test --bench`).
pub fn sizes() -> Result<Vec<usize>, String> {
    match std::env::var(SIZES_ENV) {
        Ok(text) => parse_sizes(&text),
        Err(_) if std::env::args().any(|a| a == "--bench") => Ok(BENCH_SIZES.to_vec()),
        Err(_) => Ok(vec![GROUP]),
    }
}

/// Parses `1000,100000`: positive multiples of [`GROUP`].
pub fn parse_sizes(text: &str) -> Result<Vec<usize>, String> {
    text.split(',')
        .map(|s| {
            let s = s.trim().replace('_', "");
            match s.parse::<usize>() {
                Ok(n) if n > 0 && n.is_multiple_of(GROUP) => Ok(n),
                _ => Err(format!(
                    "{SIZES_ENV}: {s:?} is not a positive multiple of {GROUP} (e.g. 1000,100000)"
                )),
            }
        })
        .collect()
}

/// The `i`th secret's name: groups of [`GROUP`] names share the prefix [`group_prefix`], and
/// ten namespaces (`tenant-0` .. `tenant-9`) share the groups.
pub fn name(i: usize) -> String {
    format!("{}secret-{i:07}", group_prefix(i / GROUP))
}

/// The list prefix of group `g`, under which exactly [`GROUP`] names sit.
pub fn group_prefix(g: usize) -> String {
    format!("tenant-{}/group-{g:04}/", g % 10)
}

/// The `i`th secret's 64-byte value (its bytes depend on `i`).
pub fn value_bytes(i: usize) -> [u8; VALUE_LEN] {
    let mut v = [0u8; VALUE_LEN];
    for (j, b) in v.iter_mut().enumerate() {
        *b = (i.wrapping_mul(31).wrapping_add(j * 7) % 251) as u8;
    }
    v
}

fn value(i: usize) -> Secret {
    let bytes = value_bytes(i);
    Secret::init_with(VALUE_LEN, |d| {
        d.copy_from_slice(&bytes);
        Ok(())
    })
    .expect("a 64-byte secret")
}

/// The disk a run of `n` secrets needs.
pub fn disk_needed(n: usize) -> u64 {
    n as u64 * DISK_PER_SECRET + DISK_FIXED
}

/// `Err(reason)` when `dir`'s file system has less free space than a run of `n` needs.
pub fn check_disk(dir: &Path, n: usize) -> Result<(), String> {
    let need = disk_needed(n);
    let free = fs4::available_space(dir)
        .map_err(|e| format!("cannot read the free space of {}: {e}", dir.display()))?;
    if free < need {
        return Err(format!(
            "{} has {} MB free, a run of {n} secrets needs {} MB (set TMPDIR to a larger \
             file system)",
            dir.display(),
            free >> 20,
            need >> 20
        ));
    }
    Ok(())
}

/// A cheap deterministic index sequence over `0..n` (spreads reads over the whole vault).
#[derive(Debug)]
pub struct Picker(u64, usize);

impl Picker {
    /// A sequence seeded with `seed` (non-zero) over `0..n`.
    pub fn new(seed: u64, n: usize) -> Picker {
        Picker(seed | 1, n)
    }

    /// The next index.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % self.1 as u64) as usize
    }
}

/// One size's vault and bare copies, in a temporary directory removed on drop.
#[derive(Debug)]
pub struct Rig {
    /// Secrets stored.
    pub n: usize,
    /// The runtime the vault's calls run on (one thread, as a blocking caller's).
    pub rt: tokio::runtime::Runtime,
    /// The vault (`None` only while [`Rig::open_times`] reopens it).
    vault: Option<LocalVault>,
    /// The bare copy, the vault's v1 table shape (likewise).
    raw: Option<Connection>,
    /// The floor: `name -> value`, one table.
    pub floor: Connection,
    /// Names, by index.
    pub names: Vec<SecretName>,
    dir: tempfile::TempDir,
    /// How long the vault's generation took.
    pub vault_build: Duration,
    /// How long the bare copy's generation took.
    pub raw_build: Duration,
}

fn key_path(dir: &Path) -> PathBuf {
    dir.join("master.key")
}

fn raw_path(dir: &Path) -> PathBuf {
    dir.join("raw.sqlite3")
}

fn floor_path(dir: &Path) -> PathBuf {
    dir.join("floor.sqlite3")
}

fn open_key(dir: &Path) -> Arc<dyn KeyProvider> {
    Arc::new(
        LocalKeyFile::open(KeyId::new("local").expect("a key id"), key_path(dir))
            .expect("the key file"),
    )
}

impl Rig {
    /// Generates `n` secrets (a multiple of [`GROUP`]) in a new temporary directory, or
    /// says why not (too little free disk). Panics when generation fails.
    pub fn build(n: usize) -> Result<Rig, String> {
        assert!(
            n > 0 && n.is_multiple_of(GROUP),
            "sizes are multiples of {GROUP}"
        );
        let dir = tempfile::tempdir().expect("a temporary directory");
        check_disk(dir.path(), n)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let started = Instant::now();
        let vault = rt.block_on(async {
            let key: Arc<dyn KeyProvider> = Arc::new(LocalKeyFile::open_or_create(
                KeyId::new("local")?,
                key_path(dir.path()),
            )?);
            let vault = LocalVault::create(dir.path(), key).await?;
            for start in (0..n).step_by(IMPORT_CHUNK) {
                let items = (start..n.min(start + IMPORT_CHUNK))
                    .map(|i| Ok((SecretName::new(name(i))?, value(i))))
                    .collect::<sealbox::Result<_>>()?;
                vault.import(items).await?;
            }
            Ok::<_, sealbox::Error>(vault)
        });
        let vault = vault.unwrap_or_else(|e| panic!("generating the vault: {e}"));
        let vault_build = started.elapsed();
        let started = Instant::now();
        let raw = build_raw(&raw_path(dir.path()), n).expect("generating the bare copy");
        let floor = build_floor(&floor_path(dir.path()), n).expect("generating the floor");
        let raw_build = started.elapsed();
        let names = (0..n)
            .map(|i| SecretName::new(name(i)).expect("a valid name"))
            .collect();
        Ok(Rig {
            n,
            rt,
            vault: Some(vault),
            raw: Some(raw),
            floor,
            names,
            dir,
            vault_build,
            raw_build,
        })
    }

    /// The vault.
    pub fn vault(&self) -> &LocalVault {
        self.vault.as_ref().expect("the rig's vault is open")
    }

    fn raw(&self) -> &Connection {
        self.raw.as_ref().expect("the rig's bare copy is open")
    }

    /// The vault's `get` of secret `i`'s current version: its value's length.
    pub fn vault_get(&self, i: usize) -> usize {
        let v = self
            .rt
            .block_on(self.vault().get(&self.names[i], &VersionSelector::Current))
            .expect("a vault get");
        v.value.len()
    }

    /// The vault's durable `put` of a new version of secret `i`.
    pub fn vault_put(&self, i: usize, value: &Secret) {
        self.rt
            .block_on(
                self.vault()
                    .put(&self.names[i], value, &PutOptions::default()),
            )
            .expect("a vault put");
    }

    /// The vault's listing of group `g` (one page of [`GROUP`] names): how many it listed.
    pub fn vault_list(&self, g: usize) -> usize {
        let options = ListOptions {
            prefix: group_prefix(g),
            page_size: Some(GROUP),
            ..ListOptions::default()
        };
        self.rt
            .block_on(self.vault().list(&options))
            .expect("a vault list")
            .entries
            .len()
    }

    /// The bare point read of secret `i` (the same join over the same table shape).
    pub fn raw_get(&self, i: usize) -> usize {
        raw_get(self.raw(), self.names[i].as_str()).len()
    }

    /// The bare durable write of a new version of secret `i`.
    pub fn raw_put(&mut self, i: usize) {
        raw_put(
            self.raw.as_mut().expect("the rig's bare copy is open"),
            self.names[i].as_str(),
        );
    }

    /// The bare listing of group `g`: how many names it listed.
    pub fn raw_list(&self, g: usize) -> usize {
        raw_list(self.raw(), g)
    }

    /// The floor: one table read by name.
    pub fn floor_get(&self, i: usize) -> usize {
        floor_get(&self.floor, self.names[i].as_str()).len()
    }

    /// Bytes on disk per stored version, vault and bare copy, with every journal
    /// checkpointed into its database file (what the versions cost at rest).
    pub fn bytes_per_version(&self) -> (f64, f64) {
        // Closing the vault's last connection checkpoints and removes its journal.
        self.vault().close_idle();
        let vault = self.vault().disk_usage().expect("the vault's size") as f64;
        self.raw()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .expect("a checkpoint");
        let raw = file_size(&raw_path(self.dir.path())) as f64;
        (vault / self.n as f64, raw / self.n as f64)
    }

    /// Median of `rounds` opens, each from closed files with a warm page cache: the vault
    /// (`LocalVault::open`, its checks included, then one `get`); the bare copy (open,
    /// connection settings, one read); the bare copy with `PRAGMA quick_check`, the
    /// structure check the vault runs on open. Every handle of the rig is replaced.
    pub fn open_times(&mut self, rounds: usize) -> OpenTimes {
        let dir = self.dir.path().to_path_buf();
        let first = self.names[0].clone();
        let mut vault = Vec::with_capacity(rounds);
        let mut raw = Vec::with_capacity(rounds);
        let mut checked = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            // The old handle goes first, so that its files are closed when the timer starts.
            self.vault = None;
            let started = Instant::now();
            let reopened = self.rt.block_on(async {
                let v = LocalVault::open(&dir, open_key(&dir)).await?;
                v.get(&first, &VersionSelector::Current).await?;
                Ok::<_, sealbox::Error>(v)
            });
            vault.push(started.elapsed());
            self.vault = Some(reopened.expect("the vault reopens"));

            self.raw = None;
            let started = Instant::now();
            let conn = open_raw(&raw_path(&dir)).expect("the bare copy reopens");
            raw_get(&conn, first.as_str());
            raw.push(started.elapsed());
            drop(conn);
            let started = Instant::now();
            let conn = open_raw(&raw_path(&dir)).expect("the bare copy reopens");
            let ok: String = conn
                .query_row("PRAGMA quick_check", [], |r| r.get(0))
                .expect("a quick check");
            assert_eq!(ok, "ok", "the bare copy's structure check");
            raw_get(&conn, first.as_str());
            checked.push(started.elapsed());
            self.raw = Some(conn);
        }
        OpenTimes {
            vault: median(&mut vault),
            raw: median(&mut raw),
            raw_checked: median(&mut checked),
        }
    }
}

/// Median open times from [`Rig::open_times`].
#[derive(Clone, Copy, Debug)]
pub struct OpenTimes {
    /// `LocalVault::open` and one `get`.
    pub vault: Duration,
    /// Bare open and one read.
    pub raw: Duration,
    /// Bare open, `PRAGMA quick_check` and one read.
    pub raw_checked: Duration,
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort_unstable();
    times[times.len() / 2]
}

/// Times `rounds` rounds of every side in `sides`, each round on the same index from a
/// [`Picker`] seeded with `seed` over `0..over`, the order of the sides rotating from round
/// to round; returns each side's p50 in nanoseconds. The VM's speed drifts over seconds, which
/// moves the sides of one round alike, so these ratios hold where separate windows do not.
pub fn interleaved(
    rounds: usize,
    seed: u64,
    over: usize,
    sides: &mut [&mut dyn FnMut(usize)],
) -> Vec<f64> {
    let mut pick = Picker::new(seed, over);
    let mut times = vec![Vec::with_capacity(rounds); sides.len()];
    for r in 0..rounds {
        let i = pick.next();
        for k in 0..sides.len() {
            let s = (r + k) % sides.len();
            let started = Instant::now();
            (sides[s])(i);
            times[s].push(started.elapsed().as_nanos() as f64);
        }
    }
    times
        .iter_mut()
        .map(|t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect()
}

/// One size's printed figures (nanoseconds, bytes).
#[derive(Clone, Debug)]
pub struct Figures {
    /// Secrets stored.
    pub n: usize,
    /// p50 `get`: vault, bare join, floor.
    pub get: [f64; 3],
    /// p50 durable `put`: vault, bare.
    pub put: [f64; 2],
    /// p50 list of a 1000-name prefix: vault, bare.
    pub list: [f64; 2],
    /// Bytes per version: vault, bare.
    pub bytes: (f64, f64),
    /// Open times.
    pub open: OpenTimes,
}

/// How many interleaved rounds each figure takes; `quick` for test mode.
#[derive(Clone, Copy, Debug)]
pub struct Rounds {
    /// `get` rounds.
    pub get: usize,
    /// `put` rounds.
    pub put: usize,
    /// `list` rounds.
    pub list: usize,
    /// Opens.
    pub open: usize,
}

impl Rounds {
    /// A bench run's rounds.
    pub const BENCH: Rounds = Rounds {
        get: 20_000,
        put: 500,
        list: 500,
        open: 5,
    };
    /// A test run's rounds (checks the rig works, measures nothing worth keeping).
    pub const QUICK: Rounds = Rounds {
        get: 200,
        put: 10,
        list: 10,
        open: 1,
    };
}

impl Rig {
    /// Measures this size's figures (bytes and open times first, before `put` adds
    /// versions) and prints them.
    pub fn report(&mut self, rounds: Rounds) -> Figures {
        let n = self.n;
        eprintln!(
            "local_scale/build/{n}: vault {:.1?} (LocalVault::import, {IMPORT_CHUNK} a \
             transaction), bare copies {:.1?}",
            self.vault_build, self.raw_build
        );
        let bytes = self.bytes_per_version();
        eprintln!(
            "local_scale/bytes_per_version/{n}: vault {:.1} B, bare table {:.1} B, {:.2}x",
            bytes.0,
            bytes.1,
            bytes.0 / bytes.1
        );
        let open = self.open_times(rounds.open);
        eprintln!(
            "local_scale/open/{n} (warm page cache, median of {}): vault {:.2?} (open with its \
             checks + one get), bare {:.2?} (open + one read), bare with quick_check {:.2?}",
            rounds.open, open.vault, open.raw, open.raw_checked
        );
        let get = {
            let this = &*self;
            let (mut v, mut r, mut f) = (
                |i: usize| {
                    black_box(this.vault_get(i));
                },
                |i: usize| {
                    black_box(this.raw_get(i));
                },
                |i: usize| {
                    black_box(this.floor_get(i));
                },
            );
            interleaved(
                rounds.get,
                0x9E37_79B9_7F4A_7C15,
                n,
                &mut [&mut v, &mut r, &mut f],
            )
        };
        eprintln!(
            "local_scale/get/{n} (p50 of {} interleaved rounds): vault {:.0} ns, bare join {:.0} \
             ns, {:.2}x; floor (one table by name) {:.0} ns, {:.2}x",
            rounds.get,
            get[0],
            get[1],
            get[0] / get[1],
            get[2],
            get[0] / get[2]
        );
        let list = {
            let this = &*self;
            let (mut v, mut r) = (
                |g: usize| assert_eq!(this.vault_list(g), GROUP),
                |g: usize| assert_eq!(this.raw_list(g), GROUP),
            );
            interleaved(
                rounds.list,
                0xA076_1D64_78BD_642F,
                n / GROUP,
                &mut [&mut v, &mut r],
            )
        };
        eprintln!(
            "local_scale/list_1000/{n} (p50 of {} interleaved rounds): vault {:.0} ns, bare {:.0} \
             ns, {:.2}x",
            rounds.list,
            list[0],
            list[1],
            list[0] / list[1]
        );
        let put = {
            let value = value(7);
            let this = std::cell::RefCell::new(&mut *self);
            let (mut v, mut r) = (
                |i: usize| this.borrow().vault_put(i, &value),
                |i: usize| this.borrow_mut().raw_put(i),
            );
            interleaved(rounds.put, 0xD1B5_4A32_D192_ED03, n, &mut [&mut v, &mut r])
        };
        eprintln!(
            "local_scale/put_durable/{n} (p50 of {} interleaved rounds): vault {:.1} us, bare \
             {:.1} us, {:.2}x",
            rounds.put,
            put[0] / 1e3,
            put[1] / 1e3,
            put[0] / put[1]
        );
        Figures {
            n,
            get: [get[0], get[1], get[2]],
            put: [put[0], put[1]],
            list: [list[0], list[1]],
            bytes,
            open,
        }
    }
}

/// Prints every size's figures as table rows, then the growth of `get` from the smallest
/// size to each larger one (vault and bare). Sizes are measured minutes apart, so growth
/// compares figures of separate windows: read it over several runs.
pub fn print_summary(all: &[Figures], skipped: &[(usize, String)]) {
    eprintln!("\nlocal_scale summary (p50s of interleaved rounds; ratios vault / bare):");
    eprintln!(
        "| secrets | get vault / bare / floor | put | list 1000 | bytes per version | open vault / bare / bare+quick_check |"
    );
    eprintln!("|---|---|---|---|---|---|");
    for f in all {
        eprintln!(
            "| {} | {:.2} / {:.2} / {:.2} us ({:.2}x, {:.2}x floor) | {:.0} / {:.0} us ({:.2}x) | {:.0} / {:.0} us ({:.2}x) | {:.1} / {:.1} B ({:.2}x) | {:.1?} / {:.1?} / {:.1?} |",
            f.n,
            f.get[0] / 1e3,
            f.get[1] / 1e3,
            f.get[2] / 1e3,
            f.get[0] / f.get[1],
            f.get[0] / f.get[2],
            f.put[0] / 1e3,
            f.put[1] / 1e3,
            f.put[0] / f.put[1],
            f.list[0] / 1e3,
            f.list[1] / 1e3,
            f.list[0] / f.list[1],
            f.bytes.0,
            f.bytes.1,
            f.bytes.0 / f.bytes.1,
            f.open.vault,
            f.open.raw,
            f.open.raw_checked,
        );
    }
    if let Some(base) = all.first() {
        for f in &all[1..] {
            eprintln!(
                "local_scale/get_growth/{}->{}: vault {:.2}x, bare {:.2}x, floor {:.2}x",
                base.n,
                f.n,
                f.get[0] / base.get[0],
                f.get[1] / base.get[1],
                f.get[2] / base.get[2]
            );
        }
    }
    for (n, reason) in skipped {
        eprintln!("local_scale/{n}: skipped: {reason}");
    }
}

fn open_raw(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))?;
    // The vault's connection settings.
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;
         PRAGMA cache_size = -8192;",
    )?;
    Ok(conn)
}

/// The bare copy: the vault's v1 table shape (secrets, versions, stages) without encryption,
/// the same 64-byte values and a 32-byte stand-in for each wrapped data key.
fn build_raw(path: &Path, n: usize) -> rusqlite::Result<Connection> {
    let mut conn = open_raw(path)?;
    conn.execute_batch(
        "CREATE TABLE secrets (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
             namespace TEXT NOT NULL, dek BLOB NOT NULL, next_version INTEGER NOT NULL,
             created INTEGER NOT NULL, updated INTEGER NOT NULL, purge_at INTEGER);
         CREATE TABLE versions (id INTEGER PRIMARY KEY, secret_id INTEGER NOT NULL
             REFERENCES secrets(id) ON DELETE CASCADE, version INTEGER NOT NULL,
             envelope BLOB NOT NULL, created INTEGER NOT NULL, UNIQUE (secret_id, version));
         CREATE TABLE stages (secret_id INTEGER NOT NULL, stage TEXT NOT NULL,
             version INTEGER NOT NULL, PRIMARY KEY (secret_id, stage)) WITHOUT ROWID;",
    )?;
    let tx = conn.transaction()?;
    {
        let mut s = tx.prepare(
            "INSERT INTO secrets (name, namespace, dek, next_version, created, updated) \
             VALUES (?1, ?2, ?3, 2, 0, 0)",
        )?;
        let mut v = tx.prepare(
            "INSERT INTO versions (secret_id, version, envelope, created) VALUES (?1, 1, ?2, 0)",
        )?;
        let mut st =
            tx.prepare("INSERT INTO stages (secret_id, stage, version) VALUES (?1, 'CURRENT', 1)")?;
        for i in 0..n {
            s.execute(params![
                name(i),
                format!("tenant-{}", (i / GROUP) % 10),
                [0u8; 32]
            ])?;
            let id = tx.last_insert_rowid();
            v.execute(params![id, value_bytes(i)])?;
            st.execute([id])?;
        }
    }
    tx.commit()?;
    Ok(conn)
}

/// The floor: `name -> value` in one table.
fn build_floor(path: &Path, n: usize) -> rusqlite::Result<Connection> {
    let mut conn = open_raw(path)?;
    conn.execute_batch(
        "CREATE TABLE secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;",
    )?;
    let tx = conn.transaction()?;
    {
        let mut s = tx.prepare("INSERT INTO secrets (name, value) VALUES (?1, ?2)")?;
        for i in 0..n {
            s.execute(params![name(i), value_bytes(i)])?;
        }
    }
    tx.commit()?;
    Ok(conn)
}

fn raw_get(conn: &Connection, name: &str) -> Vec<u8> {
    conn.prepare_cached(
        "SELECT v.envelope FROM secrets s \
         JOIN stages st ON st.secret_id = s.id AND st.stage = 'CURRENT' \
         JOIN versions v ON v.secret_id = s.id AND v.version = st.version \
         WHERE s.name = ?1 AND s.purge_at IS NULL",
    )
    .and_then(|mut s| s.query_row([name], |r| r.get(0)))
    .expect("a bare read")
}

fn floor_get(conn: &Connection, name: &str) -> Vec<u8> {
    conn.prepare_cached("SELECT value FROM secrets WHERE name = ?1")
        .and_then(|mut s| s.query_row([name], |r| r.get(0)))
        .expect("a floor read")
}

fn raw_list(conn: &Connection, g: usize) -> usize {
    let prefix = group_prefix(g);
    let upper = format!("{prefix}\u{7f}");
    conn.prepare_cached(
        "SELECT name, updated, purge_at FROM secrets WHERE name >= ?1 AND name < ?2 \
         AND purge_at IS NULL ORDER BY name LIMIT ?3",
    )
    .and_then(|mut s| {
        s.query_map(params![prefix, upper, (GROUP + 1) as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<i64>>(2)?,
            ))
        })?
        .take(GROUP)
        .count_ok()
    })
    .expect("a bare list")
}

trait CountOk {
    fn count_ok(self) -> rusqlite::Result<usize>;
}

impl<I: Iterator<Item = rusqlite::Result<T>>, T> CountOk for I {
    fn count_ok(self) -> rusqlite::Result<usize> {
        let mut n = 0;
        for row in self {
            row?;
            n += 1;
        }
        Ok(n)
    }
}

/// One immediate transaction with `synchronous = FULL`: the secret's next version, its
/// `CURRENT` stage moved, its row updated.
fn raw_put(conn: &mut Connection, name: &str) {
    let mut write = || -> rusqlite::Result<()> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (id, next): (i64, i64) = tx
            .prepare_cached("SELECT id, next_version FROM secrets WHERE name = ?1")?
            .query_row([name], |r| Ok((r.get(0)?, r.get(1)?)))?;
        tx.prepare_cached(
            "INSERT INTO versions (secret_id, version, envelope, created) VALUES (?1, ?2, ?3, 0)",
        )?
        .execute(params![id, next, [2u8; VALUE_LEN]])?;
        tx.prepare_cached(
            "INSERT OR REPLACE INTO stages (secret_id, stage, version) VALUES (?1, 'CURRENT', ?2)",
        )?
        .execute([id, next])?;
        tx.prepare_cached("UPDATE secrets SET next_version = ?2, updated = 1 WHERE id = ?1")?
            .execute([id, next + 1])?;
        tx.commit()
    };
    write().expect("a bare put");
}

fn file_size(path: &Path) -> u64 {
    let wal = format!("{}-wal", path.display());
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
}

/// Checks a vault read against the bare copy (both must hold secret `i`'s value).
pub fn same_value(rig: &Rig, i: usize) -> bool {
    let got = rig
        .rt
        .block_on(rig.vault().get(&rig.names[i], &VersionSelector::Current))
        .expect("a vault get");
    let raw = rig
        .raw()
        .prepare_cached(
            "SELECT v.envelope FROM secrets s JOIN stages st ON st.secret_id = s.id \
             AND st.stage = 'CURRENT' JOIN versions v ON v.secret_id = s.id \
             AND v.version = st.version WHERE s.name = ?1",
        )
        .and_then(|mut s| {
            s.query_row([rig.names[i].as_str()], |r| r.get::<_, Vec<u8>>(0))
                .optional()
        })
        .expect("a bare read");
    raw.as_deref() == Some(got.value.expose_secret())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_multiples_of_a_group() {
        assert_eq!(parse_sizes("1000, 100_000").unwrap(), vec![1000, 100_000]);
        assert!(parse_sizes("1500").is_err());
        assert!(parse_sizes("0").is_err());
        assert!(parse_sizes("many").is_err());
    }

    #[test]
    fn a_group_prefix_holds_exactly_one_group() {
        let prefix = group_prefix(3);
        let inside = (0..5 * GROUP)
            .filter(|&i| name(i).starts_with(&prefix))
            .count();
        assert_eq!(inside, GROUP);
    }

    /// The rig at 1000 secrets: both sides hold the same values, a list of the group's
    /// prefix returns its 1000 names on both, and one quick report runs (the bench's logic,
    /// in debug; its timings mean nothing here).
    #[test]
    fn the_rig_holds_the_same_data_on_both_sides_and_reports() {
        let mut rig = Rig::build(GROUP).unwrap();
        for i in [0, 1, 499, 999] {
            assert!(
                same_value(&rig, i),
                "secret {i} differs between vault and bare copy"
            );
        }
        assert_eq!(rig.vault_list(0), GROUP);
        assert_eq!(rig.raw_list(0), GROUP);
        let f = rig.report(Rounds::QUICK);
        assert!(f.bytes.0 > 0.0 && f.bytes.1 > 0.0);
        // A vault version holds an envelope and a wrapped key: more than the bare 64 bytes.
        assert!(f.bytes.0 > f.bytes.1, "{:?}", f.bytes);
        // The puts above wrote new versions: the vault still verifies.
        let report = rig.rt.block_on(rig.vault().verify()).unwrap();
        assert!(report.is_ok(), "{report:?}");
    }

    #[test]
    fn too_little_disk_is_a_reason_not_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let reason = check_disk(dir.path(), usize::MAX / 4096).unwrap_err();
        assert!(reason.contains("needs"), "{reason}");
    }
}
