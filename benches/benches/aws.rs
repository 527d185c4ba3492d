//! AWS Secrets Manager reads against moto, each beside its raw baseline in the same run:
//!
//! - `aws_miss`: one round trip. `sdk_get_secret_value` is the bare SDK call (explicit
//!   `AWSCURRENT` stage, output dropped); `sealbox_store_get` is `AwsSecretsManager::get` on the
//!   *same* SDK client (same connection pool), which adds the name mapping, moving the value
//!   into locked memory and wiping the SDK's copy. Target: at most 5% slower.
//! - `aws_cache_hit`: the same secret from a warm cache. `aws_caching_crate` is AWS's
//!   `aws_secretsmanager_caching` client; `sealbox_cached_get` is `Sealbox::get` with its cache.
//!   Target: sealbox at least 5x faster. Both loops run inside one `block_on` (async callers).
//!
//! Needs `SEALBOX_TEST_AWS_ENDPOINT` (`eval "$(scripts/moto.sh env)"`); without it the bench
//! prints why and measures nothing.

use std::hint::black_box;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::config::{Credentials, SharedCredentialsProvider};
use aws_secretsmanager_caching::SecretsManagerCachingClient;
use criterion::{Criterion, criterion_group, criterion_main};
use sealbox::cache::CacheConfig;
use sealbox::store::{PutOptions, SecretName, SecretStore, VersionSelector};
use sealbox::{ExposeSecret, Sealbox, Secret};
use sealbox_aws::{AwsConfig, AwsSecretsManager};

fn bench(c: &mut Criterion) {
    let Ok(endpoint) = std::env::var("SEALBOX_TEST_AWS_ENDPOINT") else {
        eprintln!(
            "aws bench skipped: SEALBOX_TEST_AWS_ENDPOINT is not set \
             (run `eval \"$(scripts/moto.sh env)\"` first)"
        );
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let unique = format!(
        "bench/{}-{}",
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
    let name = SecretName::new("predis/prod/database").expect("name");
    let id = store.secret_id(&name);
    let mut doc =
        br#"{"username":"predis","password":"bench-value","host":"db.internal","port":5432}"#
            .to_vec();
    let value = Secret::from_mut_slice(&mut doc).expect("secret");
    rt.block_on(store.put(&name, &value, &PutOptions::default()))
        .expect("seed the bench secret");

    let sdk_client = store.sdk_client().clone();
    let mut miss = c.benchmark_group("aws_miss");
    miss.bench_function("sdk_get_secret_value", |b| {
        b.iter(|| {
            let out = rt
                .block_on(
                    sdk_client
                        .get_secret_value()
                        .secret_id(&id)
                        .version_stage("AWSCURRENT")
                        .send(),
                )
                .expect("sdk get");
            black_box(out.secret_string().map(str::len))
        })
    });
    miss.bench_function("sealbox_store_get", |b| {
        b.iter(|| {
            let got = rt
                .block_on(store.get(&name, &VersionSelector::Current))
                .expect("store get");
            black_box(got.value.expose_secret().len())
        })
    });
    miss.finish();

    let ttl = Duration::from_secs(3600);
    let caching = rt
        .block_on(SecretsManagerCachingClient::from_builder(
            aws_sdk_secretsmanager::config::Builder::from(&sdk),
            NonZeroUsize::new(1000).expect("non-zero"),
            ttl,
            false,
        ))
        .expect("caching client");
    let client = Sealbox::builder()
        .store(store.clone())
        .cache(CacheConfig {
            ttl,
            ..CacheConfig::default()
        })
        .build()
        .expect("sealbox");
    // Warm both caches.
    rt.block_on(caching.get_secret_value(&id, None, None, false))
        .expect("warm caching crate");
    rt.block_on(client.get(name.as_str()))
        .expect("warm sealbox");

    let mut hit = c.benchmark_group("aws_cache_hit");
    // Both are async APIs called from async code, as services use them: the loop runs inside
    // one `block_on`, so entering the runtime is not part of either figure.
    hit.bench_function("aws_caching_crate", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    let out = caching
                        .get_secret_value(&id, None, None, false)
                        .await
                        .expect("cached get");
                    black_box(out.secret_string.as_ref().map(String::len));
                }
                started.elapsed()
            })
        })
    });
    hit.bench_function("sealbox_cached_get", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    let h = client.get(name.as_str()).await.expect("sealbox cached get");
                    black_box(h.expose_secret().len());
                }
                started.elapsed()
            })
        })
    });
    hit.finish();

    let _ = rt.block_on(store.delete(
        &name,
        &sealbox::store::DeleteOptions {
            force: true,
            ..Default::default()
        },
    ));
}

criterion_group!(benches, bench);
criterion_main!(benches);
