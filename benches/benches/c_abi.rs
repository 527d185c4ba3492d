//! The C ABI's cost on the hot path: `sb_get` + `sb_secret_data` + `sb_secret_free` through
//! the `extern "C"` functions, beside the Rust client's own `get` + `expose_secret` + drop on
//! an identical client in the same run. Target: the C path at most 1.5x the Rust path.

use std::ffi::CStr;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use sealbox::store::memory::MemoryStore;
use sealbox::{ExposeSecret, Sealbox, Secret};
use sealbox_c::{
    sb_client, sb_client_free, sb_client_open_memory, sb_get, sb_get_n, sb_put, sb_result,
    sb_secret, sb_secret_data, sb_secret_free,
};

const NAME: &CStr = c"predis/prod/database/password";
const VALUE: &[u8] = b"0123456789abcdef0123456789abcdef";

fn c_client() -> *mut sb_client {
    let mut client: *mut sb_client = std::ptr::null_mut();
    // SAFETY: the out-pointer is a local; the name is a NUL-terminated literal and VALUE a
    // static buffer of VALUE.len() bytes; the client is live until freed at the end.
    unsafe {
        assert_eq!(sb_client_open_memory(&mut client), sb_result::Ok);
        assert_eq!(
            sb_put(client, NAME.as_ptr(), VALUE.as_ptr(), VALUE.len()),
            sb_result::Ok
        );
    }
    client
}

fn c_get_data_free(client: *const sb_client) -> usize {
    let mut secret: *mut sb_secret = std::ptr::null_mut();
    let mut data: *const u8 = std::ptr::null();
    let mut len = 0usize;
    // SAFETY: client is live; outputs are locals; the secret is freed once, after its view
    // was last used.
    unsafe {
        if sb_get(client, NAME.as_ptr(), &mut secret) != sb_result::Ok {
            return 0;
        }
        if sb_secret_data(secret, &mut data, &mut len) == sb_result::Ok {
            black_box(data);
        }
        sb_secret_free(secret);
    }
    len
}

/// As [`c_get_data_free`] with the length-taking `sb_get_n` (what the C++ wrapper's
/// `std::string_view` overload calls).
fn c_get_n_data_free(client: *const sb_client, name: &[u8]) -> usize {
    let mut secret: *mut sb_secret = std::ptr::null_mut();
    let mut data: *const u8 = std::ptr::null();
    let mut len = 0usize;
    // SAFETY: as in c_get_data_free; `name` is `name.len()` readable bytes.
    unsafe {
        if sb_get_n(client, name.as_ptr().cast(), name.len(), &mut secret) != sb_result::Ok {
            return 0;
        }
        if sb_secret_data(secret, &mut data, &mut len) == sb_result::Ok {
            black_box(data);
        }
        sb_secret_free(secret);
    }
    len
}

fn bench_cache_hit(c: &mut Criterion) {
    let rust = Sealbox::builder()
        .store(Arc::new(MemoryStore::new()))
        .build()
        .and_then(|s| s.blocking())
        .expect("client");
    let value = Secret::init_with(VALUE.len(), |d| {
        d.copy_from_slice(VALUE);
        Ok(())
    })
    .expect("value");
    rust.put(NAME.to_str().expect("utf-8"), &value)
        .expect("put");
    let name = NAME.to_str().expect("utf-8");
    let c_client = c_client();
    assert_eq!(c_get_data_free(c_client), VALUE.len());

    let mut group = c.benchmark_group("get_hit");
    group.bench_function("rust_blocking_get_expose_drop", |b| {
        b.iter(|| {
            let h = rust.get(black_box(name)).expect("get");
            black_box(h.expose_secret().len())
        })
    });
    // Where a difference would go: the C path's name handling (strlen + UTF-8 check), and
    // what a heap-allocated handle per get would cost (the C ABI no longer boxes: an
    // `sb_secret*` is the core's own `Arc` pointer).
    group.bench_function("rust_plus_cstr_utf8", |b| {
        b.iter(|| {
            // SAFETY: NAME is a NUL-terminated literal.
            let n = unsafe { CStr::from_ptr(black_box(NAME.as_ptr())) };
            let h = rust.get(n.to_str().expect("utf-8")).expect("get");
            black_box(h.expose_secret().len())
        })
    });
    group.bench_function("rust_plus_boxed_handle", |b| {
        b.iter(|| {
            let h = black_box(Box::new(rust.get(black_box(name)).expect("get")));
            black_box(h.expose_secret().len())
        })
    });
    group.bench_function("c_sb_get_data_free", |b| {
        b.iter(|| black_box(c_get_data_free(black_box(c_client))))
    });
    let name_bytes = NAME.to_bytes();
    assert_eq!(c_get_n_data_free(c_client, name_bytes), VALUE.len());
    group.bench_function("c_sb_get_n_data_free", |b| {
        b.iter(|| {
            black_box(c_get_n_data_free(
                black_box(c_client),
                black_box(name_bytes),
            ))
        })
    });
    group.finish();
    // SAFETY: created by c_client(), not used after this.
    unsafe { sb_client_free(c_client) };
}

criterion_group!(benches, bench_cache_hit);
criterion_main!(benches);
