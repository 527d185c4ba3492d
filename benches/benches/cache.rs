//! Cache hit and miss costs, each beside its raw baseline in the same run.
//!
//! * `hit/*`: one `get` of a cached 64-byte secret returning a handle, against a
//!   `HashMap<String, Arc<..>>` get plus `Arc` clone (the floor) and a bare `moka::sync::Cache`
//!   get; with and without audit; sealed mode.
//! * `hit_audit_burst/*`: the hot path with audit measured in bursts smaller than the
//!   thread's audit ring, the writer draining between bursts (untimed): what a caller pays per
//!   access when the writer keeps up. `hit/sealbox_audit` is the sustained figure, bounded by
//!   the writer's throughput (`audit/writer_event_sustained`), with `fsync: never` (the
//!   fastest); `hit/sealbox_audit_fsync_batch` is the same with the config's default
//!   `fsync: batch`, and `hit/sealbox_audit_coalesce` with `fsync: batch` and `coalesce: 1s`
//!   (hits of one secret by one principal written as one event a second). `sealbox_no_audit`
//!   is the unaudited client in the same harness.
//! * `hit_audit_hotset/*`: the same for a service's hot set (64 secrets) in bursts that fit
//!   the default per-thread audit ring.
//!   Both burst groups also print `GROUP/rotated` lines: the three sides' bursts in turn,
//!   round after round, and the quartiles of the rounds' ratios to the floor, which a change
//!   in the VM's speed between criterion's windows does not move.
//! * `threads/*`: aggregate hit throughput with 1 and 2 threads (different keys per thread);
//!   the bench also prints `threads/paired`, the ratio from alternating short windows, with
//!   the hashmap's own ratio beside it.
//! * `miss/*`: a miss through the client (policy, single-flight, refresh of the invalidated
//!   entry) against a direct store `get` (MemoryStore).
//! * `miss_local_vault/*`: the same over the local vault, both sides in one paired loop; the
//!   bench also prints the per-call percentiles of longer paired runs, the steadiest figures
//!   on a noisy machine: `miss_local_vault/paired` (a reference read before, so its entry is
//!   refreshed in place: TTL expiry, a local write) and `miss_local_vault/paired_first_read`
//!   (the cache emptied first: route, insert into the index).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use sealbox::audit::{AuditLog, FsyncPolicy};
use sealbox::store::memory::MemoryStore;
use sealbox::store::{SecretName, SecretStore, VersionSelector};
use sealbox::{BlockingSealbox, Principal, Sealbox};
use sealbox_benches::{
    AuditSetup, MissRig, audited_client, audited_rotation, floor_map, hit_client, median_time,
    memory_store, name, paired_times, ratio_quartiles, read_hit,
};

const KEYS: usize = 1024;
/// Per-thread audit ring of the audited client: room for one burst.
const RING: usize = 32_768;

fn store() -> Arc<MemoryStore> {
    memory_store(KEYS)
}

fn client(
    store: Arc<MemoryStore>,
    sealed: bool,
    audit: Option<&std::path::Path>,
) -> BlockingSealbox {
    hit_client(store, sealed, audit.map(|dir| (dir, RING)), KEYS)
}

fn hit(c: &mut Criterion) {
    let names: Vec<String> = (0..KEYS).map(name).collect();
    let floor = floor_map(&names);
    let moka_cache: moka::sync::Cache<String, Arc<Vec<u8>>> = moka::sync::Cache::new(100_000);
    for n in &names {
        moka_cache.insert(n.clone(), Arc::new(vec![7u8; 64]));
    }
    let st = store();
    let plain = client(st.clone(), false, None);
    let sealed = client(st.clone(), true, None);
    let dir = tempfile::tempdir().unwrap();
    let audited = client(st.clone(), false, Some(dir.path()));
    let batch_dir = tempfile::tempdir().unwrap();
    let audited_batch = audited_client(
        st.clone(),
        false,
        Some(AuditSetup {
            dir: batch_dir.path(),
            ring: RING,
            fsync: FsyncPolicy::Batch,
            coalesce: None,
        }),
        KEYS,
    );
    let coalesce_dir = tempfile::tempdir().unwrap();
    let audited_coalesce = audited_client(
        st.clone(),
        false,
        Some(AuditSetup {
            dir: coalesce_dir.path(),
            ring: RING,
            fsync: FsyncPolicy::Batch,
            coalesce: Some(Duration::from_secs(1)),
        }),
        KEYS,
    );

    let mut g = c.benchmark_group("hit");
    let mut i = 0usize;
    let mut next = || {
        i = (i + 1) % KEYS;
        &names[i]
    };
    g.bench_function("hashmap_get_arc_clone", |b| {
        b.iter(|| black_box(floor.get(black_box(next().as_str())).cloned()))
    });
    g.bench_function("moka_sync_get", |b| {
        b.iter(|| black_box(moka_cache.get(black_box(next().as_str()))))
    });
    g.bench_function("sealbox", |b| {
        b.iter(|| black_box(plain.get(black_box(next().as_str())).unwrap()))
    });
    g.bench_function("sealbox_sealed", |b| {
        b.iter(|| black_box(sealed.get(black_box(next().as_str())).unwrap()))
    });
    g.bench_function("sealbox_audit", |b| {
        b.iter(|| black_box(audited.get(black_box(next().as_str())).unwrap()))
    });
    g.bench_function("sealbox_audit_fsync_batch", |b| {
        b.iter(|| black_box(audited_batch.get(black_box(next().as_str())).unwrap()))
    });
    g.bench_function("sealbox_audit_coalesce", |b| {
        b.iter(|| black_box(audited_coalesce.get(black_box(next().as_str())).unwrap()))
    });
    g.finish();
    drop((audited_batch, audited_coalesce));

    // Below the audit client's ring, so a burst measures the hot path (queueing), not
    // backpressure from the writer; and many times the key count, so the caches are warm
    // again after the untimed flush between bursts (with bursts of ~1 pass over the keys,
    // every access is a first touch after the writer ran and the figure is cache misses).
    const BURST: u64 = 20_000;
    const _: () = assert!(BURST < RING as u64);
    burst_group(
        c,
        "hit_audit_burst",
        BURST,
        &names,
        &floor,
        &plain,
        &audited,
    );

    // A service's hot set: 64 secrets, bursts of 1000 hits that fit the default per-thread
    // ring (1024 events, 16 KiB, so it stays in cache), the writer draining between bursts.
    let hot: Vec<String> = names[..64].to_vec();
    let hot_dir = tempfile::tempdir().unwrap();
    let audited_hot = hit_client(st.clone(), false, Some((hot_dir.path(), 1024)), KEYS);
    burst_group(
        c,
        "hit_audit_hotset",
        1_000,
        &hot,
        &floor,
        &plain,
        &audited_hot,
    );
}

/// The floor, the unaudited client and the audited one, in bursts of `len` gets over
/// `names` with the audit log flushed (untimed) between bursts.
fn burst_group(
    c: &mut Criterion,
    group: &str,
    len: u64,
    names: &[String],
    floor: &HashMap<String, Arc<Vec<u8>>>,
    plain: &BlockingSealbox,
    audited: &BlockingSealbox,
) {
    let read = |client: &BlockingSealbox, n: &str| {
        read_hit(client, n);
        Some(())
    };
    let mut g = c.benchmark_group(group);
    g.bench_function("hashmap_get_arc_clone", |b| {
        b.iter_custom(|iters| {
            burst(
                iters,
                len,
                || {},
                |n| black_box(floor.get(n).cloned()).map(drop),
                names,
            )
        })
    });
    // The same calls without audit, in the same harness: what recording adds.
    g.bench_function("sealbox_no_audit", |b| {
        b.iter_custom(|iters| burst(iters, len, || {}, |n| read(plain, n), names))
    });
    g.bench_function("sealbox_audit", |b| {
        b.iter_custom(|iters| {
            burst(
                iters,
                len,
                || audited.flush_audit().unwrap(),
                |n| read(audited, n),
                names,
            )
        })
    });
    g.finish();
    if std::env::args().any(|a| a == "--bench") {
        rotated_figures(group, len as usize, names, floor, plain, audited);
    }
}

/// Prints the burst group's ratios from [`rotated_bursts`]: the floor, the unaudited and the
/// audited client in turn, a burst each per round, the audit log flushed untimed around the
/// audited burst. Criterion's windows for the three run seconds apart, and this VM's speed
/// moves by 1.5x over seconds; the rounds' ratios do not.
fn rotated_figures(
    group: &str,
    len: usize,
    names: &[String],
    floor: &HashMap<String, Arc<Vec<u8>>>,
    plain: &BlockingSealbox,
    audited: &BlockingSealbox,
) {
    // About two seconds for each group, most of it the writer's flushes.
    let rounds = (1_500_000 / len).clamp(60, 1000);
    let times = audited_rotation(rounds, len, names, floor, plain, audited);
    for (side, label) in [(1, "sealbox_no_audit"), (2, "sealbox_audit")] {
        let [p25, p50, p75] = ratio_quartiles(&times, side, 0);
        println!(
            "{group}/rotated {label}: {:.1} ns against hashmap_get_arc_clone {:.1} ns \
             (medians of {rounds} rounds); ratio p25 {p25:.2}x, p50 {p50:.2}x, p75 {p75:.2}x",
            median_time(&times, side),
            median_time(&times, 0),
        );
    }
}

/// Times `iters` calls in bursts of at most `burst`, running `between` (untimed) after each.
fn burst(
    iters: u64,
    burst: u64,
    between: impl Fn(),
    f: impl Fn(&str) -> Option<()>,
    names: &[String],
) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0u64;
    let mut k = 0usize;
    while done < iters {
        let n = burst.min(iters - done);
        let start = Instant::now();
        for _ in 0..n {
            k = (k + 1) % names.len();
            black_box(f(&names[k]));
        }
        total += start.elapsed();
        done += n;
        between();
    }
    total
}

/// A floor value alone on its cache lines (two, for the adjacent-line prefetcher).
#[repr(align(128))]
struct Padded(#[allow(dead_code)] Vec<u8>);

fn threads(c: &mut Criterion) {
    let st = store();
    let plain = client(st.clone(), false, None);
    let names: Vec<String> = (0..KEYS).map(name).collect();
    // Each value on its own cache lines: small `Arc`s allocated one after another share
    // lines, and two threads bumping neighbouring counts would measure false sharing, not
    // the machine's scaling.
    let floor: HashMap<String, Arc<Padded>> = names
        .iter()
        .map(|n| (n.clone(), Arc::new(Padded(vec![7u8; 64]))))
        .collect();
    let mut g = c.benchmark_group("threads");
    // Each iteration is one get per thread; time per iteration = time for `threads` gets.
    for t in [1usize, 2] {
        g.bench_function(format!("sealbox_{t}"), |b| {
            b.iter_custom(|iters| {
                parallel(t, iters, |tid, k| {
                    black_box(plain.get(&names[(k * 2 + tid) % KEYS]).unwrap());
                })
            })
        });
        g.bench_function(format!("hashmap_{t}"), |b| {
            b.iter_custom(|iters| {
                parallel(t, iters, |tid, k| {
                    black_box(floor.get(&names[(k * 2 + tid) % KEYS]).cloned());
                })
            })
        });
    }
    g.finish();
    if std::env::args().any(|a| a == "--bench") {
        // Scaling depends on the CPU's prefetchers and on what shares its cores: name it.
        println!(
            "threads/paired on {} ({} CPUs available)",
            cpu_model(),
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        paired_scaling("sealbox", |tid, k| {
            black_box(plain.get(&names[(k * 2 + tid) % KEYS]).unwrap());
        });
        paired_scaling("hashmap", |tid, k| {
            black_box(floor.get(&names[(k * 2 + tid) % KEYS]).cloned());
        });
    }
}

/// The CPU's model name, from `/proc/cpuinfo` where there is one.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "an unknown CPU".to_owned())
}

/// Prints the 1 -> 2 thread throughput ratio from alternating short windows (1 thread, then 2,
/// and so on): drift and a busy neighbour on the VM move both windows of a pair alike, where
/// criterion's separate 5-second windows catch them in one and not the other. The hashmap
/// line is the machine's own scaling in the same run.
fn paired_scaling(label: &str, f: impl Fn(usize, usize) + Sync) {
    const PAIRS: usize = 200;
    const GETS: u64 = 100_000;
    let mut ratios = Vec::with_capacity(PAIRS);
    for _ in 0..PAIRS {
        // Per-get time of one thread, and per round of two concurrent gets.
        let one = parallel(1, GETS, &f).as_secs_f64();
        let two = parallel(2, GETS, &f).as_secs_f64();
        ratios.push(2.0 * one / two);
    }
    ratios.sort_by(f64::total_cmp);
    let at = |q: f64| ratios[(ratios.len() as f64 * q) as usize];
    println!(
        "threads/paired {label}: 1 -> 2 threads throughput p25 {:.2}x, p50 {:.2}x, p75 {:.2}x",
        at(0.25),
        at(0.5),
        at(0.75)
    );
}

fn parallel(threads: usize, iters: u64, f: impl Fn(usize, usize) + Sync) -> Duration {
    let barrier = std::sync::Barrier::new(threads);
    let start = std::sync::Mutex::new(None::<Instant>);
    std::thread::scope(|s| {
        for tid in 0..threads {
            let (f, barrier, start) = (&f, &barrier, &start);
            s.spawn(move || {
                barrier.wait();
                if tid == 0 {
                    *start.lock().unwrap() = Some(Instant::now());
                }
                for k in 0..iters as usize {
                    f(tid, k);
                }
            });
        }
    });
    start
        .lock()
        .unwrap()
        .map_or(Duration::ZERO, |s| s.elapsed())
}

fn miss(c: &mut Criterion) {
    let st = store();
    let cached = Sealbox::builder()
        .store(st.clone())
        .principal(Principal::new("svc:bench"))
        .build()
        .unwrap();
    let uncached = Sealbox::builder()
        .store(st.clone())
        .principal(Principal::new("svc:bench"))
        .no_cache()
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let n = name(7);
    let sn = SecretName::new(n.clone()).unwrap();
    let mut g = c.benchmark_group("miss");
    g.bench_function("direct_store_get", |b| {
        b.iter(|| black_box(rt.block_on(st.get(&sn, &VersionSelector::Current)).unwrap()))
    });
    g.bench_function("client_without_cache", |b| {
        b.iter(|| black_box(rt.block_on(uncached.get(&n)).unwrap()))
    });
    g.bench_function("client_cache_miss", |b| {
        b.iter_batched(
            || cached.cache().unwrap().invalidate("default", &sn),
            |_| black_box(rt.block_on(cached.get(&n)).unwrap()),
            BatchSize::PerIteration,
        )
    });
    // What moka alone costs per insert, for reading the miss overhead.
    let moka_cache: moka::sync::Cache<String, Arc<Vec<u8>>> = moka::sync::Cache::new(100_000);
    let payload = Arc::new(vec![7u8; 64]);
    g.bench_function("moka_insert_baseline", |b| {
        b.iter(|| moka_cache.insert(n.clone(), payload.clone()))
    });
    g.bench_function("direct_store_get_batched_baseline", |b| {
        b.iter_batched(
            || cached.cache().unwrap().invalidate("default", &sn),
            |_| black_box(rt.block_on(st.get(&sn, &VersionSelector::Current)).unwrap()),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// The miss target's own terms: a client cache miss over the local vault against a direct
/// `LocalVault::get` of the same secret. Both functions run the same paired loop: each
/// iteration makes one direct get and one client miss, in alternating order, with the cache
/// entry invalidated untimed before each, and each function times only its own side. So both
/// sides see the same allocator and CPU-cache state. (Timed in separate loops, the
/// SQLite-heavy direct side and the allocation-heavy client side left each other different
/// states, and the ratio moved by 10 points between runs.)
fn miss_local(c: &mut Criterion) {
    let rig = MissRig::new();
    // One timed call of either side, the cache entry invalidated untimed first (the client
    // then refreshes it in place) or, for `first`, the cache emptied (a first read).
    let one = |client_turn: bool| rig.timed(client_turn, false);
    // Both sides run in the one paired loop; each function reports its own side's total.
    let paired = |iters: u64, time_client: bool| {
        let (direct, client) = paired_times(iters as usize, one);
        let mine = if time_client { client } else { direct };
        Duration::from_nanos(mine.iter().sum::<u128>() as u64)
    };
    let mut g = c.benchmark_group("miss_local_vault");
    g.bench_function("direct_vault_get", |b| {
        b.iter_custom(|iters| paired(iters, false))
    });
    g.bench_function("client_cache_miss", |b| {
        b.iter_custom(|iters| paired(iters, true))
    });
    g.finish();
    if std::env::args().any(|a| a == "--bench") {
        paired_percentiles("paired", 20_000, one);
        paired_percentiles("paired_first_read", 20_000, |c| rig.timed(c, true));
    }
}

/// Times `pairs` direct/client pairs (alternating which goes first) and prints both sides'
/// per-call percentiles and their ratio. Machine drift over seconds moves both sides of a
/// pair alike, so these ratios hold steady where criterion's separate windows do not.
fn paired_percentiles(label: &str, pairs: usize, timed: impl Fn(bool) -> Duration) {
    let (direct, client) = paired_times(pairs, timed);
    for (p, q) in [("p25", 0.25), ("p50", 0.5), ("p75", 0.75)] {
        let at = |v: &[u128]| v[(v.len() as f64 * q) as usize];
        let (d, c) = (at(&direct), at(&client));
        println!(
            "miss_local_vault/{label} {p}: direct_vault_get {d} ns, client_cache_miss {c} ns, \
             overhead {:+.1}%",
            (c as f64 / d as f64 - 1.0) * 100.0
        );
    }
}

/// Sustained audit throughput: events enqueued and flushed to a file, per event, with
/// `fsync: never` (the fastest) and the config's default `fsync: batch`.
fn audit_writer(c: &mut Criterion) {
    use sealbox::audit::{Action, AuditEvent, Resource};
    let resource = Arc::new(Resource {
        name: name(1).into(),
        store: Some(Arc::from("default")),
        version: Some(sealbox::store::VersionId::new("1")),
    });
    let who = Principal::new("svc:bench");
    let mut g = c.benchmark_group("audit");
    for (label, fsync) in [
        ("writer_event_sustained", FsyncPolicy::Never),
        ("writer_event_sustained_fsync_batch", FsyncPolicy::Batch),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::builder()
            .file(dir.path().join("audit.jsonl"), fsync)
            .build()
            .unwrap();
        g.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    log.enqueue(AuditEvent::access(
                        Action::Read,
                        who.clone(),
                        resource.clone(),
                    ))
                    .unwrap();
                }
                log.flush().unwrap();
                start.elapsed()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, hit, threads, miss, miss_local, audit_writer);
criterion_main!(benches);
