//! `Secret` allocation + drop against a plain heap allocation of the same size.
//!
//! Both sides allocate, write every byte, hand the value to `black_box` and drop it. The
//! `Secret` side additionally locks memory (amortised: pages stay locked while in use) and wipes
//! the slot on drop, which is the price being measured. Target: at most 3x `Box<[u8; 64]>` at
//! 64 bytes.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use sealbox::{MemoryPolicy, Secret};

fn alloc_and_drop<const N: usize>(c: &mut Criterion) {
    let mut group = c.benchmark_group(format!("secret_alloc/{N}B"));
    group.bench_function("box_baseline", |b| {
        b.iter(|| {
            let v = Box::new([black_box(0xa5u8); N]);
            drop(black_box(v));
        })
    });
    group.bench_function("secret", |b| {
        b.iter(|| {
            let s = Secret::init_with_policy(N, MemoryPolicy::BestEffort, |dst| {
                dst.fill(black_box(0xa5));
                Ok(())
            });
            drop(black_box(s));
        })
    });
    group.finish();
}

criterion_group!(benches, alloc_and_drop::<64>, alloc_and_drop::<1024>);
criterion_main!(benches);
