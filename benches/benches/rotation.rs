//! Rotation costs, each beside its raw baseline in the same run:
//!
//! * `rotation_local/*`: one rotation of one secret on the local vault, all four steps
//!   (`generated` rotator, a 32-byte base64url token), through `RotationEngine`
//!   (`sealbox_engine`: lease and resume record in the vault, every step recorded), beside
//!   the store calls a rotation cannot do without, made directly on the same `LocalVault`
//!   (`direct_store`: put the value `PENDING`, move `CURRENT` to it, remove `PENDING`).
//! * `rotation_aws/*`: the same on moto, beside the same three calls made directly through
//!   the AWS SDK (`sdk_calls`: `PutSecretValue` with `AWSPENDING`, `UpdateSecretVersionStage`
//!   moving `AWSCURRENT`, `UpdateSecretVersionStage` removing `AWSPENDING`). Target: the
//!   engine's overhead <= 10%. Needs `SEALBOX_TEST_AWS_ENDPOINT`
//!   (`eval "$(scripts/moto.sh env)"`); without it the group prints why and measures nothing.
//! * `rotation_readers/*`: cache hits of a hot set of 64 secrets while another thread rotates
//!   8 other secrets of the same client back to back (store writes, audit-less, the rotated
//!   names dropped from the cache), beside the `HashMap` floor read under the same load.
//!   Target: the hit's cache-hit target, <= 2.5x the floor.
//!
//! With `--bench` each group also prints paired figures (`GROUP/paired`: the two sides in
//! alternating order, p50 of each and their ratio; `rotation_readers/rotated`: rounds of one
//! burst of each side in turn, quartiles of the rounds' ratios), the ones to read on a noisy
//! machine. `cargo test -p sealbox-benches --bench rotation` runs each side once.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::config::{Credentials, SharedCredentialsProvider};
use criterion::{Criterion, criterion_group, criterion_main};
use sealbox::keys::{KeyId, KeyProvider, LocalKeyFile};
use sealbox::rotation::{Generated, Generator, NewValue, RotationEngine};
use sealbox::store::local::LocalVault;
use sealbox::store::{PutOptions, SecretName, SecretStore, Stage, VersionId};
use sealbox_aws::{AwsConfig, AwsSecretsManager};
use sealbox_benches::{
    BurstSide, floor_map, hit_client, memory_store, name, paired_times, ratio_quartiles, read_hit,
    rotated_bursts, value,
};

fn benching() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn token() -> NewValue {
    NewValue::Generate(Generator::Base64Url { bytes: 32 })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Prints `label: direct p50, engine p50, ratio` from [`paired_times`].
fn print_paired(label: &str, direct: &[u128], engine: &[u128]) {
    let p50 = |t: &[u128]| t[t.len() / 2] as f64;
    let (d, e) = (p50(direct), p50(engine));
    println!(
        "{label}: baseline p50 {:.1} us, sealbox_engine p50 {:.1} us, ratio {:.3} ({} pairs)",
        d / 1e3,
        e / 1e3,
        e / d,
        direct.len()
    );
}

/// A bare rotation through the store: the new value `PENDING`, `CURRENT` moved to it,
/// `PENDING` removed.
async fn direct_store_rotation(store: &dyn SecretStore, name: &SecretName) {
    let value = Generator::Base64Url { bytes: 32 }
        .generate()
        .expect("a token");
    let options = PutOptions {
        stages: vec![Stage::Pending],
        ..PutOptions::default()
    };
    let v = store
        .put(name, &value, &options)
        .await
        .expect("put PENDING")
        .version;
    store
        .set_stage(name, &Stage::Current, Some(&v))
        .await
        .expect("promote");
    store
        .set_stage(name, &Stage::Pending, None)
        .await
        .expect("remove PENDING");
}

fn local(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let key: Arc<dyn KeyProvider> = Arc::new(
        LocalKeyFile::open_or_create(KeyId::new("local").expect("id"), dir.path().join("key"))
            .expect("a key file"),
    );
    let vault: Arc<dyn SecretStore> = Arc::new(
        rt.block_on(LocalVault::open_or_create(&dir.path().join("vault"), key))
            .expect("a vault"),
    );
    let (a, b) = seed_two(&rt, vault.as_ref());
    let engine = RotationEngine::new(vault.clone(), "local");
    let engine_rotation = || {
        rt.block_on(engine.rotate(&a, &Generated, token()))
            .expect("an engine rotation");
    };
    let direct_rotation = || rt.block_on(direct_store_rotation(vault.as_ref(), &b));

    let mut g = c.benchmark_group("rotation_local");
    g.sample_size(20);
    g.bench_function("direct_store", |bn| bn.iter(direct_rotation));
    g.bench_function("sealbox_engine", |bn| bn.iter(engine_rotation));
    g.finish();
    if benching() {
        let (direct, engine) = paired_times(200, |engine_turn| {
            let start = Instant::now();
            if engine_turn {
                engine_rotation();
            } else {
                direct_rotation();
            }
            start.elapsed()
        });
        print_paired("rotation_local/paired", &direct, &engine);
    }
}

/// Two secrets with a first version: the engine's and the baseline's, so neither side
/// rotates the other's.
fn seed_two(rt: &tokio::runtime::Runtime, store: &dyn SecretStore) -> (SecretName, SecretName) {
    let a = SecretName::new("predis/prod/api/engine-key").expect("name");
    let b = SecretName::new("predis/prod/api/direct-key").expect("name");
    for n in [&a, &b] {
        rt.block_on(store.put(n, &value(), &PutOptions::default()))
            .expect("seed a secret");
    }
    (a, b)
}

fn aws(c: &mut Criterion) {
    let Ok(endpoint) = std::env::var("SEALBOX_TEST_AWS_ENDPOINT") else {
        eprintln!(
            "rotation_aws skipped: SEALBOX_TEST_AWS_ENDPOINT is not set \
             (run `eval \"$(scripts/moto.sh env)\"` first)"
        );
        return;
    };
    let rt = runtime();
    let unique = format!(
        "bench-rotation/{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let config = AwsConfig {
        region: Some("us-east-1".into()),
        endpoint_url: Some(endpoint),
        prefix: Some(unique),
        ..AwsConfig::default()
    };
    let credentials =
        SharedCredentialsProvider::new(Credentials::new("testing", "testing", None, None, "bench"));
    let sdk = rt
        .block_on(config.load_sdk_config_with(Some(credentials)))
        .expect("sdk config");
    let store = Arc::new(AwsSecretsManager::from_sdk_config(&sdk, &config).expect("store"));
    let (a, b) = seed_two(&rt, store.as_ref());
    let engine = RotationEngine::new(store.clone(), "aws");

    // The baseline keeps its secret's current version itself, as a rotation function does
    // (it is told the token); it lists nothing.
    let client = store.sdk_client().clone();
    let id = store.secret_id(&b);
    let current = std::sync::Mutex::new(
        rt.block_on(store.describe(&b))
            .expect("describe")
            .version_with_stage(&Stage::Current)
            .cloned()
            .map(|v: VersionId| v.as_str().to_owned())
            .expect("a current version"),
    );
    let sdk_rotation = || {
        rt.block_on(async {
            let value = Generator::Base64Url { bytes: 32 }
                .generate()
                .expect("a token");
            let text = std::str::from_utf8(sealbox::ExposeSecret::expose_secret(&value))
                .expect("base64url is text");
            let put = client
                .put_secret_value()
                .secret_id(&id)
                .secret_string(text)
                .version_stages("AWSPENDING")
                .send()
                .await
                .expect("PutSecretValue");
            let new = put.version_id().expect("a version id").to_owned();
            let old = std::mem::replace(&mut *current.lock().expect("lock"), new.clone());
            client
                .update_secret_version_stage()
                .secret_id(&id)
                .version_stage("AWSCURRENT")
                .move_to_version_id(&new)
                .remove_from_version_id(&old)
                .send()
                .await
                .expect("UpdateSecretVersionStage AWSCURRENT");
            client
                .update_secret_version_stage()
                .secret_id(&id)
                .version_stage("AWSPENDING")
                .remove_from_version_id(&new)
                .send()
                .await
                .expect("UpdateSecretVersionStage AWSPENDING");
        })
    };
    let engine_rotation = || {
        rt.block_on(engine.rotate(&a, &Generated, token()))
            .expect("an engine rotation");
    };

    let mut g = c.benchmark_group("rotation_aws");
    g.sample_size(10);
    g.bench_function("sdk_calls", |bn| bn.iter(sdk_rotation));
    g.bench_function("sealbox_engine", |bn| bn.iter(engine_rotation));
    g.finish();
    if benching() {
        let (direct, engine) = paired_times(50, |engine_turn| {
            let start = Instant::now();
            if engine_turn {
                engine_rotation();
            } else {
                sdk_rotation();
            }
            start.elapsed()
        });
        print_paired("rotation_aws/paired", &direct, &engine);
    }
    for n in [&a, &b] {
        let _ = rt.block_on(store.delete(
            n,
            &sealbox::store::DeleteOptions {
                force: true,
                ..Default::default()
            },
        ));
    }
}

const HOT: usize = 64;
const ROTATED: usize = 8;

fn readers(c: &mut Criterion) {
    let names: Vec<String> = (0..HOT).map(name).collect();
    let floor: HashMap<String, Arc<Vec<u8>>> = floor_map(&names);
    let store = memory_store(HOT + ROTATED);
    let client = hit_client(store, false, None, HOT + ROTATED);

    // The rotating thread: the secrets after the hot set, one after another, through the
    // same client (its cache drops each rotated name), until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let rotations = Arc::new(AtomicUsize::new(0));
    let rotator = {
        let sb = client.client().clone();
        let (stop, rotations) = (stop.clone(), rotations.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let n = name(HOT + i % ROTATED);
                rt.block_on(sb.rotation().rotate_with(&n, &Generated, token()))
                    .expect("a rotation");
                rotations.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        })
    };
    // Rotations are running before the first timed hit.
    while rotations.load(Ordering::Relaxed) < 2 {
        std::thread::sleep(Duration::from_millis(1));
    }

    let mut g = c.benchmark_group("rotation_readers");
    let mut i = 0usize;
    let mut next = || {
        i = (i + 1) % HOT;
        &names[i]
    };
    g.bench_function("hashmap_get_arc_clone", |b| {
        b.iter(|| black_box(floor.get(black_box(next().as_str())).cloned()))
    });
    g.bench_function("sealbox_hit_during_rotations", |b| {
        b.iter(|| read_hit(&client, black_box(next().as_str())))
    });
    g.finish();

    if benching() {
        let started = (rotations.load(Ordering::Relaxed), Instant::now());
        let times = rotated_bursts(
            1000,
            HOT * 16,
            &names,
            &[
                BurstSide {
                    get: &|n| drop(black_box(floor.get(n).cloned())),
                    settle: &|| {},
                },
                BurstSide {
                    get: &|n| read_hit(&client, n),
                    settle: &|| {},
                },
            ],
        );
        let per_s = (rotations.load(Ordering::Relaxed) - started.0) as f64
            / started.1.elapsed().as_secs_f64();
        let [p25, p50, p75] = ratio_quartiles(&times, 1, 0);
        println!(
            "rotation_readers/rotated: hit/floor p50 {p50:.2}x (p25-p75 {p25:.2}x-{p75:.2}x), \
             {per_s:.0} rotations/s running beside"
        );
    }
    stop.store(true, Ordering::Relaxed);
    rotator.join().expect("the rotating thread");
}

criterion_group!(benches, local, aws, readers);
criterion_main!(benches);
