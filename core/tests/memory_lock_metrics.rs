//! A memory-lock failure is visible without a `tracing` subscriber: every client's metrics
//! (`MetricsSnapshot::counters`, hence Prometheus text and the bindings' metrics) count it.
//!
//! The test re-runs itself in a child under an RLIMIT_MEMLOCK of 0 and without
//! CAP_IPC_LOCK (`prlimit` and `setpriv` from util-linux), where every `mlock` fails.

use std::process::Command;
use std::sync::Arc;

use sealbox::store::memory::MemoryStore;
use sealbox::{Sealbox, Secret};

const CHILD_ENV: &str = "SEALBOX_LOCK_METRICS_CHILD";
const ME: &str = "lock_failures_show_in_every_clients_metrics_and_prometheus_text";

#[test]
fn lock_failures_show_in_every_clients_metrics_and_prometheus_text() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return child();
    }
    let exe = std::env::current_exe().unwrap();
    // Root keeps CAP_IPC_LOCK, which ignores the limit: drop it from the bounding set, which
    // root's permitted set is recomputed from at exec.
    let out = Command::new("prlimit")
        .arg("--memlock=0:0")
        .args(["setpriv", "--bounding-set=-ipc_lock"])
        .arg(&exe)
        .args(["--exact", ME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .expect("could not start the child (needs prlimit and setpriv from util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "child failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn child() {
    let c = Sealbox::builder()
        .store(Arc::new(MemoryStore::new()))
        .build()
        .unwrap()
        .blocking()
        .unwrap();
    assert_eq!(
        c.client().metrics().memory_lock_failures,
        0,
        "nothing allocated yet"
    );
    // The default policy (BestEffort) carries on unlocked.
    c.put("app/token", &Secret::random(32).unwrap()).unwrap();
    let token = c.get("app/token").unwrap();
    assert!(
        !token.secret().is_locked(),
        "the limit of 0 must refuse mlock"
    );

    let m = c.client().metrics();
    assert!(m.memory_lock_failures > 0);
    let (_, metric, n) = m
        .counters()
        .into_iter()
        .find(|(short, _, _)| *short == "memory_lock_failures")
        .expect("the counter is among the binding-visible counters");
    assert_eq!(metric, "sealbox_memory_lock_failures_total");
    assert!(n > 0);
    let text = c.client().render_prometheus();
    let line = text
        .lines()
        .find(|l| l.starts_with("sealbox_memory_lock_failures_total "))
        .unwrap_or_else(|| panic!("no lock-failure line in:\n{text}"));
    let shown: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(shown > 0, "{line}");
    // Process-wide: a second client reports the same failures.
    let other = Sealbox::builder()
        .store(Arc::new(MemoryStore::new()))
        .build()
        .unwrap();
    assert!(other.metrics().memory_lock_failures >= m.memory_lock_failures);
}
