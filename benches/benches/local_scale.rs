//! The local vault at 1k, 100k and 1M secrets (64-byte values), each size beside bare
//! `rusqlite` holding the same data, generated in a temporary directory in the same run:
//! `get` of the current version (no client cache), durable `put`, `list` of a 1000-name
//! prefix, and, printed before criterion's groups, bytes on disk per version, open time and
//! interleaved p50s of the three operations (`sealbox_benches::scale`). A summary with the
//! growth of `get` from the smallest size follows the last size.
//!
//! Run: `cargo bench -p sealbox-benches --bench local_scale -- --warm-up-time 1 --measurement-time 3`
//! (about 2 GB free in the temporary directory for 1M; a size without room is skipped, with
//! the reason printed). `SEALBOX_SCALE_SIZES=1000,100000` picks sizes; in test mode
//! (`cargo test -p sealbox-benches --bench local_scale`) the default is 1000 alone.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sealbox::Secret;
use sealbox_benches::scale::{self, GROUP, Picker, Rig, Rounds};

fn bench(c: &mut Criterion) {
    let sizes = scale::sizes().unwrap_or_else(|reason| {
        eprintln!("local_scale: {reason}");
        std::process::exit(2);
    });
    let rounds = if std::env::args().any(|a| a == "--bench") {
        Rounds::BENCH
    } else {
        Rounds::QUICK
    };
    let value = Secret::init_with(scale::VALUE_LEN, |d| {
        d.fill(7);
        Ok(())
    })
    .expect("a 64-byte secret");
    let (mut figures, mut skipped) = (Vec::new(), Vec::new());
    for n in sizes {
        let mut rig = match Rig::build(n) {
            Ok(rig) => rig,
            Err(reason) => {
                eprintln!("local_scale/{n}: skipped: {reason}");
                skipped.push((n, reason));
                continue;
            }
        };
        figures.push(rig.report(rounds));

        let mut group = c.benchmark_group("local_scale_get_64B");
        let mut pick = Picker::new(0x9E37_79B9_7F4A_7C15, n);
        group.bench_function(BenchmarkId::new("vault", n), |b| {
            b.iter(|| black_box(rig.vault_get(pick.next())))
        });
        let mut pick = Picker::new(0x9E37_79B9_7F4A_7C15, n);
        group.bench_function(BenchmarkId::new("raw_rusqlite", n), |b| {
            b.iter(|| black_box(rig.raw_get(pick.next())))
        });
        group.finish();

        let mut group = c.benchmark_group("local_scale_list_1000");
        let mut pick = Picker::new(0xA076_1D64_78BD_642F, n / GROUP);
        group.bench_function(BenchmarkId::new("vault", n), |b| {
            b.iter(|| black_box(rig.vault_list(pick.next())))
        });
        let mut pick = Picker::new(0xA076_1D64_78BD_642F, n / GROUP);
        group.bench_function(BenchmarkId::new("raw_rusqlite", n), |b| {
            b.iter(|| black_box(rig.raw_list(pick.next())))
        });
        group.finish();

        let mut group = c.benchmark_group("local_scale_put_durable_64B");
        let mut pick = Picker::new(0xD1B5_4A32_D192_ED03, n);
        group.bench_function(BenchmarkId::new("vault", n), |b| {
            b.iter(|| rig.vault_put(pick.next(), &value))
        });
        let mut pick = Picker::new(0xD1B5_4A32_D192_ED03, n);
        group.bench_function(BenchmarkId::new("raw_rusqlite", n), |b| {
            b.iter(|| rig.raw_put(pick.next()))
        });
        group.finish();
        // The temporary directory goes before the next size is generated.
        drop(rig);
    }
    scale::print_summary(&figures, &skipped);
}

criterion_group!(benches, bench);
criterion_main!(benches);
