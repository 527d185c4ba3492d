//! GCP Secret Manager reads against the local Secret Manager (crate `sealbox-gcp-local`, run
//! in-process on a runtime of its own, over loopback HTTP), each beside its raw baseline in
//! the same run:
//!
//! - `gcp_miss`: one read of a 64-byte secret's current version. `bare_access_secret_version`
//!   is the bare call of Google's client (`AccessSecretVersion` of `.../versions/current`, the
//!   payload's length read); `sealbox_store_get` is `GcpSecretManager::get(Current)` on the
//!   *same* client (same connection pool), which adds the name mapping, the CRC32C check and
//!   moving the value into locked memory; `sealbox_client_miss` is `Sealbox::get` with its
//!   cache entry invalidated (untimed) before each call. Each sealbox side runs in one loop
//!   with the bare call, in pairs of alternating order, and each function reports its own
//!   side's time (as `cache`'s `miss_local_vault`). Target (issue 28): at most 5% over the
//!   bare call. With `--bench` it also prints `gcp_miss/paired` and
//!   `gcp_miss/paired_client`: p25/p50/p75 of 2000 pairs, the figures the target is read from.
//! - `gcp_cache_hit`: a cached get of one of 64 secrets through a client over the GCP store,
//!   beside the same client over a `MemoryStore` and the `HashMap` floor of the `cache`
//!   bench's `hit` group: a hit costs what it costs on any store.
//!
//! Run: `cargo bench -p sealbox-benches --bench gcp -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use sealbox::cache::CacheConfig;
use sealbox::store::{PutOptions, SecretName, SecretStore, VersionSelector};
use sealbox::{BlockingSealbox, ExposeSecret, Principal, Sealbox};
use sealbox_benches::{floor_map, memory_store, name, paired_times, value};
use sealbox_gcp::{GcpConfig, GcpSecretManager};
use sealbox_gcp_local::LocalSecretManager;

/// Secrets the hit group cycles through.
const KEYS: usize = 64;
/// Pairs behind each printed `gcp_miss/paired*` line.
const PAIRS: usize = 2000;

struct Rig {
    /// The client side's runtime: two workers, as a service's.
    rt: tokio::runtime::Runtime,
    store: Arc<GcpSecretManager>,
    client: Sealbox,
    name: String,
    secret_name: SecretName,
    /// `projects/P/secrets/ID/versions/current` of that secret.
    current: String,
}

impl Rig {
    fn new(endpoint: &str) -> Rig {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let config = GcpConfig {
            project: "sealbox-bench".into(),
            endpoint: Some(endpoint.to_owned()),
            anonymous: true,
            ..GcpConfig::default()
        };
        let store = Arc::new(
            rt.block_on(GcpSecretManager::connect(&config))
                .expect("a store on the local Secret Manager"),
        );
        for i in 0..KEYS {
            let n = SecretName::new(name(i)).expect("a valid name");
            rt.block_on(store.put(&n, &value(), &PutOptions::default()))
                .expect("seeding a bench secret");
        }
        let client = Sealbox::builder()
            .store(store.clone())
            .principal(Principal::new("svc:bench"))
            .build()
            .expect("a client");
        let name = name(7);
        let secret_name = SecretName::new(name.clone()).expect("a valid name");
        let current = format!(
            "{}/versions/current",
            store.resource(&secret_name).expect("a resource name")
        );
        Rig {
            rt,
            store,
            client,
            name,
            secret_name,
            current,
        }
    }

    /// One timed read: the bare Google call (`side == 0`), `GcpSecretManager::get`
    /// (`side == 1`) or a client miss (`side == 2`, its entry invalidated untimed first).
    /// Only the call is timed, not the drop of what it returned.
    fn timed(&self, side: u8) -> Duration {
        if side == 2 {
            self.client
                .cache()
                .expect("the rig's client has a cache")
                .invalidate("default", &self.secret_name);
        }
        let start = Instant::now();
        match side {
            0 => {
                let out = self
                    .rt
                    .block_on(
                        self.store
                            .client()
                            .access_secret_version()
                            .set_name(&self.current)
                            .send(),
                    )
                    .expect("a bare access");
                let elapsed = start.elapsed();
                black_box(out.payload.map(|p| p.data.len()));
                elapsed
            }
            1 => {
                let got = self
                    .rt
                    .block_on(self.store.get(&self.secret_name, &VersionSelector::Current));
                let elapsed = start.elapsed();
                drop(black_box(got.expect("a store get")));
                elapsed
            }
            _ => {
                let got = self.rt.block_on(self.client.get(&self.name));
                let elapsed = start.elapsed();
                drop(black_box(got.expect("a client miss")));
                elapsed
            }
        }
    }
}

fn miss(c: &mut Criterion, rig: &Rig) {
    // `paired_times` alternates the order of the bare call and the sealbox side in each pair.
    let pairs =
        |n: usize, side: u8| paired_times(n, |sealbox| rig.timed(if sealbox { side } else { 0 }));
    let total = |times: &[u128]| Duration::from_nanos(times.iter().sum::<u128>() as u64);
    let mut g = c.benchmark_group("gcp_miss");
    g.bench_function("bare_access_secret_version", |b| {
        b.iter_custom(|iters| total(&pairs(iters as usize, 1).0))
    });
    g.bench_function("sealbox_store_get", |b| {
        b.iter_custom(|iters| total(&pairs(iters as usize, 1).1))
    });
    g.bench_function("sealbox_client_miss", |b| {
        b.iter_custom(|iters| total(&pairs(iters as usize, 2).1))
    });
    g.finish();
    if std::env::args().any(|a| a == "--bench") {
        for (label, side, what) in [
            ("paired", 1, "sealbox_store_get"),
            ("paired_client", 2, "sealbox_client_miss"),
        ] {
            let (bare, mine) = pairs(PAIRS, side);
            for (p, q) in [("p25", 0.25), ("p50", 0.5), ("p75", 0.75)] {
                let at = |v: &[u128]| v[(v.len() as f64 * q) as usize];
                let (b, m) = (at(&bare), at(&mine));
                println!(
                    "gcp_miss/{label} {p}: bare_access_secret_version {b} ns, {what} {m} ns, \
                     overhead {:+.1}%",
                    (m as f64 / b as f64 - 1.0) * 100.0
                );
            }
        }
    }
}

/// A one-hour cache over `store`, the first `KEYS` names read once (as the `cache` bench's
/// hit client, without audit).
fn hit_client(store: Arc<dyn SecretStore>) -> BlockingSealbox {
    let c = Sealbox::builder()
        .store(store)
        .principal(Principal::new("svc:bench"))
        .cache(CacheConfig {
            ttl: Duration::from_secs(3600),
            capacity: 100_000,
            ..CacheConfig::default()
        })
        .build()
        .and_then(|c| c.blocking())
        .expect("a bench client");
    for i in 0..KEYS {
        c.get(&name(i)).expect("a first read");
    }
    c
}

fn hit(c: &mut Criterion, rig: &Rig) {
    let names: Vec<String> = (0..KEYS).map(name).collect();
    let floor = floor_map(&names);
    let over_memory = hit_client(memory_store(KEYS));
    let over_gcp = hit_client(rig.store.clone());
    let mut g = c.benchmark_group("gcp_cache_hit");
    let mut i = 0usize;
    let mut next = || {
        i = (i + 1) % KEYS;
        &names[i]
    };
    g.bench_function("hashmap_get_arc_clone", |b| {
        b.iter(|| black_box(floor.get(black_box(next().as_str())).cloned()))
    });
    g.bench_function("sealbox_memory_store", |b| {
        b.iter(|| black_box(over_memory.get(black_box(next().as_str())).unwrap()))
    });
    g.bench_function("sealbox_gcp_store", |b| {
        b.iter(|| black_box(over_gcp.get(black_box(next().as_str())).unwrap()))
    });
    g.finish();
    // Every read above was a hit: the GCP client's hits never reached the server.
    let metrics = over_gcp.client().metrics();
    assert_eq!(metrics.misses, KEYS as u64, "only the warming reads missed");
}

fn bench(c: &mut Criterion) {
    // The server has a runtime (and a worker thread) of its own, as a separate process would.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("the server's runtime");
    let server = server_rt.block_on(LocalSecretManager::start());
    let rig = Rig::new(&server.endpoint());
    let check = rig
        .rt
        .block_on(rig.store.get(&rig.secret_name, &VersionSelector::Current))
        .expect("a first read");
    assert_eq!(check.value.expose_secret(), value().expose_secret());
    miss(c, &rig);
    hit(c, &rig);
    drop(rig);
    server_rt.block_on(async move { drop(server) });
}

criterion_group!(benches, bench);
criterion_main!(benches);
