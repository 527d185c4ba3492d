//! The miss benchmark's paired figures alone, in rounds, for comparing two versions in
//! alternating processes (a full `cache` run takes minutes; this takes one). Each round times
//! 20 000 pairs of one direct `LocalVault::get` and one client miss, in alternating order,
//! for a refresh miss (the entry invalidated first) and for a first read (the cache emptied
//! first), and prints each side's p50 and the client's overhead:
//!
//! ```text
//! cargo build --release -p sealbox-benches --example miss_pairs
//! target/release/examples/miss_pairs 5
//! ```
//!
//! The heap's layout differs per process and moves the figures by about a point; run each
//! version several times, alternating (`setarch -R` fixes the layout within one binary).
use std::hint::black_box;
use std::time::{Duration, Instant};

use sealbox::store::{SecretName, SecretStore, VersionSelector};
use sealbox::{Principal, Sealbox};
use sealbox_benches::{filled_vault, name};

const PAIRS: usize = 20_000;

fn main() {
    let rounds = match std::env::args().nth(1).map(|r| r.parse::<usize>()) {
        None => 5,
        Some(Ok(r)) if r > 0 => r,
        Some(_) => {
            eprintln!("usage: miss_pairs [ROUNDS]");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let vault = rt.block_on(filled_vault(dir.path(), 1024)).unwrap();
    let cached = Sealbox::builder()
        .store(vault.clone())
        .principal(Principal::new("svc:bench"))
        .build()
        .unwrap();
    let cache = cached.cache().unwrap();
    let n = name(7);
    let sn = SecretName::new(n.clone()).unwrap();
    // One timed call of either side, after an untimed invalidation (or, `first`, clear).
    let timed = |client: bool, first: bool| -> Duration {
        if first {
            cache.clear();
        } else {
            cache.invalidate("default", &sn);
        }
        let start = Instant::now();
        if client {
            let got = rt.block_on(cached.get(&n)).unwrap();
            let elapsed = start.elapsed();
            drop(black_box(got));
            elapsed
        } else {
            let got = rt
                .block_on(vault.get(&sn, &VersionSelector::Current))
                .unwrap();
            let elapsed = start.elapsed();
            drop(black_box(got));
            elapsed
        }
    };
    for i in 0..PAIRS {
        timed(i % 2 == 0, false);
        timed(i % 2 != 0, false);
    }
    for round in 0..rounds {
        for (label, first) in [("refresh", false), ("first", true)] {
            let (mut direct, mut client) = (Vec::new(), Vec::new());
            for i in 0..PAIRS {
                for client_turn in [i % 2 == 0, i % 2 != 0] {
                    let t = timed(client_turn, first).as_nanos();
                    if client_turn {
                        client.push(t);
                    } else {
                        direct.push(t);
                    }
                }
            }
            direct.sort_unstable();
            client.sort_unstable();
            let (d, c) = (direct[PAIRS / 2], client[PAIRS / 2]);
            println!(
                "round {round} {label}: direct {d} ns, client {c} ns, overhead {:+.1}%",
                (c as f64 / d as f64 - 1.0) * 100.0
            );
        }
    }
}
