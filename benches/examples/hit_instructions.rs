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
use std::sync::Arc;
use std::time::Duration;

use sealbox::audit::{AuditLog, FsyncPolicy};
use sealbox::cache::CacheConfig;
use sealbox::store::memory::MemoryStore;
use sealbox::store::{PutOptions, SecretName, SecretStore};
use sealbox::{Principal, Sealbox};
use sealbox_benches::{mode_and_count, name, value};

fn main() {
    let (mode, n_iter) = mode_and_count("hit_instructions", &["plain", "audit"]);
    let store = Arc::new(MemoryStore::new());
    let names: Vec<String> = (0..64).map(name).collect();
    for n in &names {
        futures::executor::block_on(store.put(
            &SecretName::new(n.clone()).unwrap(),
            &value(),
            &PutOptions::default(),
        ))
        .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let mut b = Sealbox::builder()
        .store(store)
        .principal(Principal::new("svc:bench"))
        .cache(CacheConfig {
            ttl: Duration::from_secs(3600),
            ..CacheConfig::default()
        });
    if mode == "audit" {
        b = b.audit(
            AuditLog::builder()
                .file(dir.path().join("audit.jsonl"), FsyncPolicy::Never)
                .queue_capacity(1024),
        );
    }
    let c = b.build().unwrap().blocking().unwrap();
    for n in &names {
        c.get(n).unwrap();
    }
    c.flush_audit().unwrap();
    for i in 0..n_iter {
        std::hint::black_box(c.get(&names[i % names.len()]).unwrap());
        if i % 1000 == 999 {
            c.flush_audit().unwrap();
        }
    }
}
