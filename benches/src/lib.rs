//! Shared helpers for the benches.

pub mod scale;

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sealbox::audit::{AuditLog, FsyncPolicy};
use sealbox::cache::CacheConfig;
use sealbox::keys::{KeyId, KeyProvider, LocalKeyFile};
use sealbox::store::local::LocalVault;
use sealbox::store::memory::MemoryStore;
use sealbox::store::{PutOptions, SecretName, SecretStore, VersionSelector};
use sealbox::{BlockingSealbox, Principal, Result, Sealbox, Secret};

/// The name of the `i`th bench secret.
pub fn name(i: usize) -> String {
    format!("predis/prod/service-{i:04}/api-key")
}

/// A 64-byte bench value.
pub fn value() -> Secret {
    Secret::init_with(64, |b| {
        b.iter_mut().enumerate().for_each(|(i, x)| *x = i as u8);
        Ok(())
    })
    .expect("a 64-byte secret")
}

/// A new local vault in `dir` (master key file included) holding `count` secrets, named by
/// [`name`], each [`value`].
pub async fn filled_vault(dir: &Path, count: usize) -> Result<Arc<LocalVault>> {
    let key: Arc<dyn KeyProvider> = Arc::new(LocalKeyFile::open_or_create(
        KeyId::new("local")?,
        dir.join("master.key"),
    )?);
    let vault = Arc::new(LocalVault::create(dir, key).await?);
    let items = (0..count)
        .map(|i| Ok((SecretName::new(name(i))?, value())))
        .collect::<Result<_>>()?;
    vault.import(items).await?;
    Ok(vault)
}

/// The `MODE COUNT` arguments of an instruction-count driver (`benches/examples`), `MODE`
/// one of `modes`; anything else prints the usage and exits with status 2.
pub fn mode_and_count(program: &str, modes: &[&str]) -> (String, usize) {
    let mut args = std::env::args().skip(1);
    match (args.next(), args.next().and_then(|n| n.parse().ok())) {
        (Some(mode), Some(count)) if modes.contains(&mode.as_str()) => (mode, count),
        _ => {
            eprintln!("usage: {program} {} COUNT", modes.join("|"));
            std::process::exit(2);
        }
    }
}

/// The optional `ROUNDS` argument of a rounds driver (`benches/examples`), 5 when absent;
/// anything but a positive count prints the usage and exits with status 2.
pub fn rounds_arg(program: &str) -> usize {
    match std::env::args().nth(1).map(|r| r.parse::<usize>()) {
        None => 5,
        Some(Ok(r)) if r > 0 => r,
        Some(_) => {
            eprintln!("usage: {program} [ROUNDS]");
            std::process::exit(2);
        }
    }
}

/// The miss benchmarks' rig: a local vault of 1024 secrets, a client with the default cache
/// over it, and the secret both read. The `cache` bench and the miss drivers in
/// `benches/examples` share it, so their figures stay comparable.
#[derive(Debug)]
pub struct MissRig {
    /// The runtime both sides run on (one thread, as a blocking caller's).
    pub rt: tokio::runtime::Runtime,
    /// The vault, read directly by the baseline.
    pub vault: Arc<LocalVault>,
    /// The client over `vault`.
    pub client: Sealbox,
    /// The secret's name, as the client is given it.
    pub name: String,
    /// The same, as the store is given it.
    pub secret_name: SecretName,
    _dir: tempfile::TempDir,
}

impl MissRig {
    /// A new rig (in a temporary directory, removed on drop).
    pub fn new() -> MissRig {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let vault = rt
            .block_on(filled_vault(dir.path(), 1024))
            .expect("a filled vault");
        let client = Sealbox::builder()
            .store(vault.clone())
            .principal(Principal::new("svc:bench"))
            .build()
            .expect("a client");
        let name = name(7);
        let secret_name = SecretName::new(name.clone()).expect("a valid name");
        MissRig {
            rt,
            vault,
            client,
            name,
            secret_name,
            _dir: dir,
        }
    }

    /// Makes the client's next read a miss: the cache emptied (`first`: a first read, which
    /// routes and inserts a new entry), or the secret's entry invalidated (refreshed in place).
    pub fn prepare(&self, first: bool) {
        let cache = self.client.cache().expect("the rig's client has a cache");
        if first {
            cache.clear();
        } else {
            cache.invalidate("default", &self.secret_name);
        }
    }

    /// A client get (`client`) or a direct `LocalVault::get`, after an untimed
    /// [`MissRig::prepare`]; only the call is timed, not the drop of what it returned.
    pub fn timed(&self, client: bool, first: bool) -> Duration {
        self.prepare(first);
        let start = Instant::now();
        if client {
            let got = self.rt.block_on(self.client.get(&self.name));
            let elapsed = start.elapsed();
            drop(black_box(got.expect("a client read")));
            elapsed
        } else {
            let got = self
                .rt
                .block_on(self.vault.get(&self.secret_name, &VersionSelector::Current));
            let elapsed = start.elapsed();
            drop(black_box(got.expect("a direct read")));
            elapsed
        }
    }
}

impl Default for MissRig {
    fn default() -> Self {
        MissRig::new()
    }
}

/// Times `pairs` direct/client pairs, alternating which goes first, and returns each side's
/// times in nanoseconds, sorted. `timed(client)` times one call of either side. Machine drift
/// over seconds moves both sides of a pair alike, so their percentiles' ratios hold steady
/// where separately timed windows do not.
pub fn paired_times(pairs: usize, timed: impl Fn(bool) -> Duration) -> (Vec<u128>, Vec<u128>) {
    let (mut direct, mut client) = (Vec::with_capacity(pairs), Vec::with_capacity(pairs));
    for i in 0..pairs {
        for client_turn in [i % 2 == 0, i % 2 != 0] {
            let t = timed(client_turn).as_nanos();
            if client_turn {
                client.push(t);
            } else {
                direct.push(t);
            }
        }
    }
    direct.sort_unstable();
    client.sort_unstable();
    (direct, client)
}

/// A memory store holding `count` secrets, named by [`name`], each [`value`]: the hit
/// benchmarks' store (a hit never reaches it).
pub fn memory_store(count: usize) -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new());
    for i in 0..count {
        let name = SecretName::new(name(i)).expect("a valid name");
        futures::executor::block_on(store.put(&name, &value(), &PutOptions::default()))
            .expect("a memory-store put");
    }
    store
}

/// The hit benchmarks' client: a one-hour cache (`sealed` or not) over `store`, and with
/// `audit = Some((dir, ring))` an audit log in `dir` (no fsync) whose per-thread rings hold
/// `ring` events. The first `warm` names are read once, so they are cached, and the log is
/// flushed.
pub fn hit_client(
    store: Arc<MemoryStore>,
    sealed: bool,
    audit: Option<(&Path, usize)>,
    warm: usize,
) -> BlockingSealbox {
    let audit = audit.map(|(dir, ring)| AuditSetup {
        dir,
        ring,
        fsync: FsyncPolicy::Never,
        coalesce: None,
    });
    audited_client(store, sealed, audit, warm)
}

/// How a bench client's audit log is set up: the file in `dir`, the per-thread ring, the
/// fsync policy (`Batch` is the config's default, `Never` the fastest) and coalescing.
#[derive(Clone, Copy, Debug)]
pub struct AuditSetup<'a> {
    pub dir: &'a Path,
    pub ring: usize,
    pub fsync: FsyncPolicy,
    pub coalesce: Option<Duration>,
}

/// [`hit_client`] with the audit log set up as given.
pub fn audited_client(
    store: Arc<MemoryStore>,
    sealed: bool,
    audit: Option<AuditSetup<'_>>,
    warm: usize,
) -> BlockingSealbox {
    let mut b = Sealbox::builder()
        .store(store)
        .principal(Principal::new("svc:bench"))
        .cache(CacheConfig {
            ttl: Duration::from_secs(3600),
            capacity: 100_000,
            sealed,
            ..CacheConfig::default()
        });
    if let Some(a) = audit {
        let mut log = AuditLog::builder()
            .file(a.dir.join("audit.jsonl"), a.fsync)
            .queue_capacity(a.ring);
        if let Some(interval) = a.coalesce {
            log = log.coalesce(interval);
        }
        b = b.audit(log);
    }
    let c = b
        .build()
        .and_then(|c| c.blocking())
        .expect("a bench client");
    for i in 0..warm {
        c.get(&name(i)).expect("a first read");
    }
    c.flush_audit().expect("an audit flush");
    c
}

/// The hit benchmarks' floor: each name mapped to a 64-byte value behind an `Arc`, read as
/// a get plus an `Arc` clone.
pub fn floor_map(names: &[String]) -> HashMap<String, Arc<Vec<u8>>> {
    names
        .iter()
        .map(|n| (n.clone(), Arc::new(vec![7u8; 64])))
        .collect()
}

/// One cached get through `client`, its handle read, so that the get is not optimised away.
pub fn read_hit(client: &BlockingSealbox, name: &str) {
    let handle = client.get(name).expect("a cache hit");
    black_box(black_box(handle).version().as_str().len());
}

/// [`rotated_bursts`] of the floor, the unaudited client and the audited one (its log flushed
/// untimed around each of its bursts), in that order in each round's row.
pub fn audited_rotation(
    rounds: usize,
    len: usize,
    names: &[String],
    floor: &HashMap<String, Arc<Vec<u8>>>,
    plain: &BlockingSealbox,
    audited: &BlockingSealbox,
) -> Vec<Vec<f64>> {
    let flush = || audited.flush_audit().expect("an audit flush");
    rotated_bursts(
        rounds,
        len,
        names,
        &[
            BurstSide {
                get: &|n| drop(black_box(floor.get(n).cloned())),
                settle: &|| {},
            },
            BurstSide {
                get: &|n| read_hit(plain, n),
                settle: &|| {},
            },
            BurstSide {
                get: &|n| read_hit(audited, n),
                settle: &flush,
            },
        ],
    )
}

/// One contender in [`rotated_bursts`].
pub struct BurstSide<'a> {
    /// One get of a name.
    pub get: &'a dyn Fn(&str),
    /// Runs untimed before and after the side's timed burst: the audited client flushes its
    /// log there, so each burst starts with a drained ring and leaves none of its writing to
    /// the next side's burst.
    pub settle: &'a dyn Fn(),
}

impl std::fmt::Debug for BurstSide<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BurstSide").finish_non_exhaustive()
    }
}

/// Per-get nanoseconds of each side (`[round][side]`) over `rounds` rounds. A round times one
/// burst of `len` gets over `names` (in turn) per side, each after an untimed get of every
/// name and the side's settle, and rotates which side goes first. The sides of a round run
/// within milliseconds of each other, so a change in the VM's speed moves them alike, where
/// criterion's windows seconds apart can catch one side at another speed.
pub fn rotated_bursts(
    rounds: usize,
    len: usize,
    names: &[String],
    sides: &[BurstSide<'_>],
) -> Vec<Vec<f64>> {
    let mut times = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let mut row = vec![0.0; sides.len()];
        for turn in 0..sides.len() {
            let s = (round + turn) % sides.len();
            let side = &sides[s];
            names.iter().for_each(|n| (side.get)(n));
            (side.settle)();
            let start = Instant::now();
            for n in names.iter().cycle().take(len) {
                (side.get)(black_box(n));
            }
            row[s] = start.elapsed().as_nanos() as f64 / len as f64;
            (side.settle)();
        }
        times.push(row);
    }
    times
}

/// The 25th, 50th and 75th percentiles of `times[r][side] / times[r][base]` over the rounds.
pub fn ratio_quartiles(times: &[Vec<f64>], side: usize, base: usize) -> [f64; 3] {
    let mut ratios: Vec<f64> = times.iter().map(|row| row[side] / row[base]).collect();
    ratios.sort_by(f64::total_cmp);
    [0.25, 0.5, 0.75].map(|q| ratios[((ratios.len() as f64 * q) as usize).min(ratios.len() - 1)])
}

/// The median of `times[r][side]` over the rounds.
pub fn median_time(times: &[Vec<f64>], side: usize) -> f64 {
    let mut t: Vec<f64> = times.iter().map(|row| row[side]).collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};

    #[test]
    fn rotated_bursts_runs_every_side_each_round_in_turn() {
        let names: Vec<String> = (0..3).map(name).collect();
        let order = RefCell::new(Vec::new());
        let gets = [Cell::new(0), Cell::new(0)];
        let settles = [Cell::new(0), Cell::new(0)];
        let get = |i: usize| {
            let (order, gets) = (&order, &gets);
            move |_: &str| {
                gets[i].set(gets[i].get() + 1);
                if order.borrow().last() != Some(&i) {
                    order.borrow_mut().push(i);
                }
            }
        };
        let (g0, g1) = (get(0), get(1));
        let (s0, s1) = (
            || settles[0].set(settles[0].get() + 1),
            || settles[1].set(settles[1].get() + 1),
        );
        let times = rotated_bursts(
            4,
            10,
            &names,
            &[
                BurstSide {
                    get: &g0,
                    settle: &s0,
                },
                BurstSide {
                    get: &g1,
                    settle: &s1,
                },
            ],
        );
        assert_eq!(times.len(), 4);
        assert!(times.iter().all(|row| row.len() == 2));
        // Per round and side: one untimed pass over the names, then the burst.
        assert_eq!(gets.map(|g| g.get()), [4 * 13, 4 * 13]);
        assert_eq!(settles.map(|s| s.get()), [8, 8]);
        // Rounds run 0 1, 1 0, 0 1, 1 0: a side that ends one round starts the next, so the
        // runs of gets alternate five times.
        assert_eq!(*order.borrow(), vec![0, 1, 0, 1, 0]);
    }

    #[test]
    fn ratio_quartiles_and_median_read_the_rounds() {
        let times: Vec<Vec<f64>> = (1..=8).map(|i| vec![10.0, 10.0 * i as f64]).collect();
        assert_eq!(ratio_quartiles(&times, 1, 0), [3.0, 5.0, 7.0]);
        assert_eq!(median_time(&times, 1), 50.0);
        assert_eq!(median_time(&times, 0), 10.0);
    }
}
