//! Client metrics: hot counters kept in per-thread stripes (a shared atomic would make two
//! threads reading cached secrets fight over one cache line), published to the `metrics` crate
//! and rendered as Prometheus text.
//!
//! Names: `sealbox_gets_total`, `sealbox_cache_hits_total`, `sealbox_cache_misses_total`,
//! `sealbox_cache_stale_total`, `sealbox_denies_total`, `sealbox_writes_total`,
//! `sealbox_rotations_total`, `sealbox_alerts_total`, `sealbox_memory_lock_failures_total`
//! (process-wide: secret memory is shared by every client), `sealbox_audit_events_lost_total`
//! (best-effort audit events dropped; see [`MetricsSnapshot::audit_events_lost`]),
//! `sealbox_store_errors_total{kind}`,
//! `sealbox_store_latency_seconds` (histogram of store calls).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::error::ErrorKind;

const STRIPES: usize = 16;

#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicU64);

/// A counter split over cache-line-padded stripes, one per thread (mod 16).
#[derive(Default)]
pub struct StripedCounter {
    stripes: [Padded; STRIPES],
}

impl std::fmt::Debug for StripedCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StripedCounter({})", self.get())
    }
}

fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    STRIPE.with(|s| {
        let v = s.get();
        if v != usize::MAX {
            return v;
        }
        let v = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
        s.set(v);
        v
    })
}

impl StripedCounter {
    /// Adds one.
    #[inline]
    pub fn incr(&self) {
        self.stripes[stripe()].0.fetch_add(1, Ordering::Relaxed);
    }

    /// The total.
    pub fn get(&self) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .sum()
    }
}

/// The clock store-call latencies are measured with: the TSC where it is reliable (a few
/// nanoseconds a reading, against tens for `Instant::now` on some VMs), else the OS clock.
/// Calibrated once per process, when the first client is built.
pub(crate) fn latency_clock() -> &'static quanta::Clock {
    static CLOCK: std::sync::OnceLock<quanta::Clock> = std::sync::OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

/// When a store call started, on [`latency_clock`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct CallStart(u64);

/// Upper bounds (seconds) of the latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

/// A fixed-bucket histogram (store latencies; off the hit path, but on every miss). Each
/// observation increments the one bucket it falls in; snapshots add them up into the
/// cumulative counts Prometheus expects.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn record(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|bound| secs <= *bound) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

/// Every counter the client keeps.
#[derive(Debug, Default)]
pub struct ClientMetrics {
    /// Reads (`get`, `get_field`) that took the slow path.
    pub gets: StripedCounter,
    /// Reads answered by the cache's hit path (counted once: also a get and a hit).
    pub fast_hits: StripedCounter,
    /// Stale reads answered by the hit path (also counted in `stale`).
    pub fast_stale: StripedCounter,
    /// Reads answered from the cache.
    pub hits: StripedCounter,
    /// Reads that went to the store.
    pub misses: StripedCounter,
    /// Reads served stale because the store failed.
    pub stale: StripedCounter,
    /// Policy denies.
    pub denies: StripedCounter,
    /// Writes and deletes.
    pub writes: StripedCounter,
    /// Rotations.
    pub rotations: StripedCounter,
    /// Alerts raised.
    pub alerts: StripedCounter,
    /// Store latency.
    pub store_latency: Histogram,
    store_errors: Mutex<BTreeMap<&'static str, u64>>,
}

impl ClientMetrics {
    /// Counts a store error by kind (also sent to `metrics` right away).
    pub fn store_error(&self, kind: ErrorKind) {
        metrics::counter!("sealbox_store_errors_total", "kind" => kind.as_str()).increment(1);
        if let Ok(mut m) = self.store_errors.lock() {
            *m.entry(kind.as_str()).or_default() += 1;
        }
    }

    /// Starts timing a store call (finish with [`ClientMetrics::end_store_call`]).
    pub(crate) fn start_store_call(&self) -> CallStart {
        CallStart(latency_clock().raw())
    }

    /// Records the latency of the store call started at `start`.
    pub(crate) fn end_store_call(&self, start: CallStart) {
        let clock = latency_clock();
        self.store_call(clock.delta(start.0, clock.raw()));
    }

    /// Records a store call's latency (also sent to `metrics`).
    pub fn store_call(&self, d: Duration) {
        metrics::histogram!("sealbox_store_latency_seconds").record(d.as_secs_f64());
        self.store_latency.record(d);
    }

    /// A point-in-time copy.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            gets: self.gets.get() + self.fast_hits.get() + self.fast_stale.get(),
            hits: self.hits.get() + self.fast_hits.get(),
            misses: self.misses.get(),
            stale: self.stale.get(),
            denies: self.denies.get(),
            writes: self.writes.get(),
            rotations: self.rotations.get(),
            alerts: self.alerts.get(),
            memory_lock_failures: crate::memory::lock_failures(),
            // Kept by the audit log; the client fills it in (`Sealbox::metrics`).
            audit_events_lost: 0,
            store_errors: self
                .store_errors
                .lock()
                .map(|m| m.clone())
                .unwrap_or_default(),
            latency_buckets: {
                let mut below = 0;
                std::array::from_fn(|i| {
                    below += self.store_latency.buckets[i].load(Ordering::Relaxed);
                    below
                })
            },
            latency_count: self.store_latency.count.load(Ordering::Relaxed),
            latency_sum: Duration::from_nanos(self.store_latency.sum_nanos.load(Ordering::Relaxed)),
        }
    }

    /// Publishes the striped counters to the installed `metrics` recorder as absolute values
    /// (the hot path never calls into the recorder).
    pub fn publish(&self) {
        let s = self.snapshot();
        for (_, name, v) in s.counters() {
            metrics::counter!(name).absolute(v);
        }
    }
}

/// Counter values at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsSnapshot {
    /// See [`ClientMetrics`].
    pub gets: u64,
    /// See [`ClientMetrics`].
    pub hits: u64,
    /// See [`ClientMetrics`].
    pub misses: u64,
    /// See [`ClientMetrics`].
    pub stale: u64,
    /// See [`ClientMetrics`].
    pub denies: u64,
    /// See [`ClientMetrics`].
    pub writes: u64,
    /// See [`ClientMetrics`].
    pub rotations: u64,
    /// See [`ClientMetrics`].
    pub alerts: u64,
    /// Times the kernel refused to lock secret memory in this process (every client of the
    /// process reports the same count): above zero, some secrets are not locked against
    /// swapping (`MemoryPolicy::BestEffort`) or some allocations failed (`Strict`). Raise
    /// `RLIMIT_MEMLOCK` to fix.
    pub memory_lock_failures: u64,
    /// Audit events dropped by this client's audit log: best-effort events that found the
    /// queue full for longer than the audit `max_wait` (a sink failing or too slow), and events
    /// still unwritten when the writer gave up at shutdown. Each drop is also recorded in the
    /// chain as an `audit_events_lost` event once a sink writes again. In strict mode an
    /// access is refused rather than its event dropped; only the events of accesses that
    /// already failed (queued without waiting, whatever the mode) can be counted here.
    pub audit_events_lost: u64,
    /// Store errors by kind.
    pub store_errors: BTreeMap<&'static str, u64>,
    /// Cumulative bucket counts for [`LATENCY_BUCKETS`].
    pub latency_buckets: [u64; LATENCY_BUCKETS.len()],
    /// Number of store calls timed.
    pub latency_count: u64,
    /// Total time in store calls.
    pub latency_sum: Duration,
}

impl MetricsSnapshot {
    /// Every counter as (short name, metric name, value): the short name keys the language
    /// bindings' dicts (`gets`, `hits`, ...), the metric name is what `metrics` and
    /// Prometheus see.
    ///
    /// ```
    /// let m = sealbox::monitor::metrics::MetricsSnapshot { hits: 3, ..Default::default() };
    /// assert!(m.counters().contains(&("hits", "sealbox_cache_hits_total", 3)));
    /// ```
    pub fn counters(&self) -> [(&'static str, &'static str, u64); 10] {
        [
            ("gets", "sealbox_gets_total", self.gets),
            ("hits", "sealbox_cache_hits_total", self.hits),
            ("misses", "sealbox_cache_misses_total", self.misses),
            ("stale", "sealbox_cache_stale_total", self.stale),
            ("denies", "sealbox_denies_total", self.denies),
            ("writes", "sealbox_writes_total", self.writes),
            ("rotations", "sealbox_rotations_total", self.rotations),
            ("alerts", "sealbox_alerts_total", self.alerts),
            (
                "memory_lock_failures",
                crate::memory::LOCK_FAILURES_METRIC,
                self.memory_lock_failures,
            ),
            (
                "audit_events_lost",
                "sealbox_audit_events_lost_total",
                self.audit_events_lost,
            ),
        ]
    }

    /// Prometheus text exposition format (version 0.0.4).
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        for (_, name, v) in self.counters() {
            let _ = writeln!(out, "# TYPE {name} counter\n{name} {v}");
        }
        let _ = writeln!(out, "# TYPE sealbox_store_errors_total counter");
        for (kind, v) in &self.store_errors {
            let _ = writeln!(out, "sealbox_store_errors_total{{kind=\"{kind}\"}} {v}");
        }
        let _ = writeln!(out, "# TYPE sealbox_store_latency_seconds histogram");
        for (bound, count) in LATENCY_BUCKETS.iter().zip(self.latency_buckets) {
            let _ = writeln!(
                out,
                "sealbox_store_latency_seconds_bucket{{le=\"{bound}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "sealbox_store_latency_seconds_bucket{{le=\"+Inf\"}} {}\nsealbox_store_latency_seconds_sum {}\nsealbox_store_latency_seconds_count {}",
            self.latency_count,
            self.latency_sum.as_secs_f64(),
            self.latency_count
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn striped_counts_add_up_across_threads() {
        let c = std::sync::Arc::new(StripedCounter::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| c.incr()))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(c.get(), 4000);
    }

    #[test]
    fn prometheus_text_has_counters_and_histogram() {
        let m = ClientMetrics::default();
        m.hits.incr();
        m.store_error(ErrorKind::Unavailable);
        m.store_call(Duration::from_micros(300));
        let text = m.snapshot().render_prometheus();
        assert!(text.contains("sealbox_cache_hits_total 1\n"), "{text}");
        assert!(text.contains("sealbox_store_errors_total{kind=\"unavailable\"} 1"));
        assert!(text.contains("sealbox_store_latency_seconds_bucket{le=\"0.0005\"} 1"));
        assert!(text.contains("sealbox_store_latency_seconds_bucket{le=\"0.00025\"} 0"));
        assert!(text.contains("sealbox_store_latency_seconds_count 1"));
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = ClientMetrics::default();
        m.store_call(Duration::from_micros(50));
        m.store_call(Duration::from_micros(300));
        m.store_call(Duration::from_millis(3));
        m.store_call(Duration::from_secs(3));
        let snap = m.snapshot();
        assert_eq!(snap.latency_count, 4);
        assert_eq!(
            snap.latency_buckets,
            [1, 1, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3],
            "le=2.5 leaves out the 3 s call, which only +Inf counts"
        );
    }
}
