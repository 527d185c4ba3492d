//! Envelope seal and open (64 B and 4 KiB) beside bare ring AES-256-GCM on the same data.
//!
//! The baseline does what any caller of ring must do for the same job: draw a 96-bit nonce
//! from the OS (ring's `SystemRandom`, one `getrandom` call, as the envelope does: a userspace
//! generator would repeat nonces across `fork`), allocate the output, seal in place; for opening, copy into a fresh buffer and open in place. The envelope adds the
//! header, AAD assembly, the use counter and (for open) a locked `Secret` as output, which is
//! wiped when dropped; `sealbox_open_in_place` shows the envelope's cost without that output.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sealbox::keys::{DataKey, Envelope, KeyId, KeyVersion};

const CONTEXT: &[u8] = b"store=local;ns=predis/prod;name=predis/prod/database/password;v=1";

fn keys() -> (DataKey, LessSafeKey) {
    let raw = [0x5Au8; 32];
    let material = sealbox::Secret::init_with(32, |b| {
        b.copy_from_slice(&raw);
        Ok(())
    })
    .expect("secret");
    let id = KeyId::new("predis/prod/database/password").expect("id");
    let dek = DataKey::from_secret(id, KeyVersion::FIRST, material).expect("key");
    let ring_key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &raw).expect("ring key"));
    (dek, ring_key)
}

fn ring_seal(key: &LessSafeKey, plaintext: &[u8]) -> (Vec<u8>, [u8; NONCE_LEN]) {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new().fill(&mut nonce).expect("OS random");
    let mut out = Vec::with_capacity(plaintext.len() + 16);
    out.extend_from_slice(plaintext);
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(CONTEXT),
        &mut out,
    )
    .expect("seal");
    (out, nonce)
}

fn bench(c: &mut Criterion) {
    for size in [64usize, 4096] {
        // A fresh key per size keeps every run far below the key's 2^30 use limit.
        let (dek, ring_key) = keys();
        let data = vec![0xC3u8; size];
        let label = if size == 64 { "64B" } else { "4KiB" };

        let mut seal = c.benchmark_group(format!("envelope_seal_{label}"));
        seal.throughput(Throughput::Bytes(size as u64));
        seal.bench_function(BenchmarkId::new("ring_baseline", label), |b| {
            b.iter(|| black_box(ring_seal(&ring_key, black_box(&data))))
        });
        seal.bench_function(BenchmarkId::new("sealbox_envelope", label), |b| {
            b.iter(|| Envelope::seal(&dek, CONTEXT, black_box(&data)).expect("seal"))
        });
        seal.finish();

        let (ring_ct, nonce) = ring_seal(&ring_key, &data);
        let envelope = Envelope::seal(&dek, CONTEXT, &data).expect("seal");
        let mut open = c.benchmark_group(format!("envelope_open_{label}"));
        open.throughput(Throughput::Bytes(size as u64));
        open.bench_function(BenchmarkId::new("ring_baseline", label), |b| {
            b.iter(|| {
                let mut buf = black_box(&ring_ct).clone();
                let len = ring_key
                    .open_in_place(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(CONTEXT),
                        &mut buf,
                    )
                    .expect("open")
                    .len();
                black_box((buf, len))
            })
        });
        open.bench_function(BenchmarkId::new("sealbox_envelope", label), |b| {
            b.iter(|| Envelope::open(&dek, CONTEXT, black_box(&envelope)).expect("open"))
        });
        // The same work as the baseline (copy into a heap buffer, open in place), separating
        // the envelope's own cost from the locked, wiped output `open` returns.
        open.bench_function(BenchmarkId::new("sealbox_open_in_place", label), |b| {
            b.iter(|| {
                let mut buf = black_box(&envelope).clone();
                let len = Envelope::open_in_place(&dek, CONTEXT, &mut buf)
                    .expect("open")
                    .len();
                black_box((buf, len))
            })
        });
        open.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
