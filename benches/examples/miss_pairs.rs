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
use sealbox_benches::{MissRig, paired_times, rounds_arg};

const PAIRS: usize = 20_000;

fn main() {
    let rounds = rounds_arg("miss_pairs");
    let rig = MissRig::new();
    // Warm-up: the first pairs of a process run slower on both sides.
    paired_times(PAIRS, |client| rig.timed(client, false));
    for round in 0..rounds {
        for (label, first) in [("refresh", false), ("first", true)] {
            let (direct, client) = paired_times(PAIRS, |c| rig.timed(c, first));
            let (d, c) = (direct[PAIRS / 2], client[PAIRS / 2]);
            println!(
                "round {round} {label}: direct {d} ns, client {c} ns, overhead {:+.1}%",
                (c as f64 / d as f64 - 1.0) * 100.0
            );
        }
    }
}
