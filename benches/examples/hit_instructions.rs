//! A driver for counting the instructions of a cache hit with and without audit, which on a
//! shared VM are steadier than times. Run it under callgrind with `plain` and `audit` and
//! the same count; `BlockingSealbox::get`'s inclusive count divided by the count is the cost
//! of one hit. Hits go in bursts of 1000 over 64 secrets, the audit log flushed between
//! bursts, as in the `hit_audit_hotset` benchmark:
//!
//! ```text
//! cargo build --release -p sealbox-benches --example hit_instructions
//! valgrind --tool=callgrind target/release/examples/hit_instructions audit 200000
//! callgrind_annotate --inclusive=yes callgrind.out.<pid> | grep BlockingSealbox::get
//! ```
//!
//! Under valgrind the audit writer's SHA-256 runs without the CPU's SHA extensions (valgrind
//! does not emulate them), so read the writer's cost from the `audit` benchmark, not here.
use sealbox_benches::{hit_client, memory_store, mode_and_count, name};

fn main() {
    let (mode, n_iter) = mode_and_count("hit_instructions", &["plain", "audit"]);
    let names: Vec<String> = (0..64).map(name).collect();
    let dir = tempfile::tempdir().unwrap();
    let audit = (mode == "audit").then_some((dir.path(), 1024));
    let c = hit_client(memory_store(names.len()), false, audit, names.len());
    for i in 0..n_iter {
        std::hint::black_box(c.get(&names[i % names.len()]).unwrap());
        if i % 1000 == 999 {
            c.flush_audit().unwrap();
        }
    }
}
