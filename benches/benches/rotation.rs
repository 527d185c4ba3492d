//! One rotation of one secret (all four steps: create `PENDING`, set, test, promote) on the
//! local vault and on the memory store, each beside its raw baseline in the same run:
//!
//! - `raw_put_pending_and_promote`: the least a rotation must write: a new version staged
//!   `PENDING` (`put`) then `CURRENT` moved to it (`set_stage`, which moves the old one to
//!   `PREVIOUS`), with the same generated 32-byte token, straight on the store.
//! - `engine_rotate`: `RotationEngine::rotate` with the `generated` rotator (set and test have
//!   nothing to do on a target, so the difference is the engine's own work: the lease taken
//!   and released by compare-and-set in the store, a record of each step for resume, the
//!   checks that keep `CURRENT` untouched on failure, and the audit events).
//!
//! The target (rotation overhead <= 10%) is stated against the same calls made
//! directly; report `engine_rotate / raw_put_pending_and_promote` per store from one run.
//!
//! Run: `cargo bench -p sealbox-benches --bench rotation -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sealbox::keys::{KeyId, KeyProvider, LocalKeyFile};
use sealbox::rotation::{Generated, Generator, NewValue, RotationEngine};
use sealbox::store::local::LocalVault;
use sealbox::store::memory::MemoryStore;
use sealbox::store::{PutOptions, SecretName, SecretStore, Stage};

const TOKEN: Generator = Generator::Base64Url { bytes: 32 };

/// The baseline: `put` a `PENDING` version, then move `CURRENT` to it.
async fn raw_rotation(store: &dyn SecretStore, name: &SecretName) {
    let value = TOKEN.generate().expect("generate");
    let options = PutOptions {
        stages: vec![Stage::Pending],
        ..PutOptions::default()
    };
    let info = store.put(name, &value, &options).await.expect("put");
    store
        .set_stage(name, &Stage::Current, Some(&info.version))
        .await
        .expect("promote");
    store
        .set_stage(name, &Stage::Pending, None)
        .await
        .expect("unstage");
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = rt.block_on(async {
        let key: Arc<dyn KeyProvider> = Arc::new(
            LocalKeyFile::open_or_create(
                KeyId::new("local").unwrap(),
                dir.path().join("master.key"),
            )
            .expect("key"),
        );
        LocalVault::create(dir.path(), key).await.expect("vault")
    });
    let stores: [(&str, Arc<dyn SecretStore>); 2] = [
        ("local", Arc::new(vault)),
        ("memory", Arc::new(MemoryStore::new())),
    ];
    let mut group = c.benchmark_group("rotation");
    for (kind, store) in stores {
        let raw_name = SecretName::new("bench/raw/api-key").expect("name");
        let engine_name = SecretName::new("bench/engine/api-key").expect("name");
        rt.block_on(async {
            for name in [&raw_name, &engine_name] {
                let first = TOKEN.generate().expect("generate");
                store
                    .put(name, &first, &PutOptions::default())
                    .await
                    .expect("seed");
            }
        });
        let engine = RotationEngine::new(store.clone(), kind);
        group.bench_function(BenchmarkId::new("raw_put_pending_and_promote", kind), |b| {
            b.iter(|| rt.block_on(raw_rotation(store.as_ref(), black_box(&raw_name))));
        });
        group.bench_function(BenchmarkId::new("engine_rotate", kind), |b| {
            b.iter(|| {
                rt.block_on(engine.rotate(
                    black_box(&engine_name),
                    &Generated,
                    NewValue::Generate(TOKEN),
                ))
                .expect("rotate")
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
