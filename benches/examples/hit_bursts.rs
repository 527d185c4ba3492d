//! The audited-hit burst figures alone, in rounds, for comparing versions in alternating
//! processes (a full `cache` run takes minutes; this takes about half of one). As the `cache`
//! bench's `rotated` lines: per round, one burst each of the `HashMap` floor, the unaudited
//! client and the audited one, rotating which goes first, for 20 000 gets over 1024 secrets
//! and 1000 gets over a hot set of 64; it prints the rounds' median times and ratio p50s:
//!
//! ```text
//! cargo build --release -p sealbox-benches --example hit_bursts
//! target/release/examples/hit_bursts 5
//! ```
use sealbox_benches::{
    audited_rotation, floor_map, hit_client, median_time, memory_store, name, ratio_quartiles,
    rounds_arg,
};

const KEYS: usize = 1024;

fn main() {
    let rounds = rounds_arg("hit_bursts");
    let names: Vec<String> = (0..KEYS).map(name).collect();
    let floor = floor_map(&names);
    let store = memory_store(KEYS);
    let plain = hit_client(store.clone(), false, None, KEYS);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let audited = hit_client(store.clone(), false, Some((dir.path(), 32_768)), KEYS);
    let hot_dir = tempfile::tempdir().expect("a temporary directory");
    let audited_hot = hit_client(store, false, Some((hot_dir.path(), 1024)), KEYS);
    let groups = [
        (
            "1024 secrets, bursts of 20 000",
            &names[..],
            20_000,
            40,
            &audited,
        ),
        (
            "hot set of 64, bursts of 1000",
            &names[..64],
            1000,
            400,
            &audited_hot,
        ),
    ];
    // Round 0 warms up and is not printed.
    for round in 0..=rounds {
        for (label, names, len, n, audited) in groups {
            let times = audited_rotation(n, len, names, &floor, &plain, audited);
            if round > 0 {
                println!(
                    "round {round}, {label}: floor {:.1} ns, no audit {:.1} ns ({:.2}x), \
                     audited {:.1} ns ({:.2}x)",
                    median_time(&times, 0),
                    median_time(&times, 1),
                    ratio_quartiles(&times, 1, 0)[1],
                    median_time(&times, 2),
                    ratio_quartiles(&times, 2, 0)[1],
                );
            }
        }
    }
}
