//! A coarse monotonic clock for the hit path: TTL checks need milliseconds, not nanoseconds,
//! and `CLOCK_MONOTONIC_COARSE` costs a few nanoseconds where `Instant::now` costs ~20.

/// Nanoseconds on a monotonic clock with a few milliseconds of resolution.
#[cfg(target_os = "linux")]
pub(crate) fn now_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call, and
    // CLOCK_MONOTONIC_COARSE exists on every Linux since 2.6.32; the call only writes `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    if rc != 0 {
        return fallback_nanos();
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Nanoseconds on a monotonic clock.
#[cfg(not(target_os = "linux"))]
pub(crate) fn now_nanos() -> u64 {
    fallback_nanos()
}

fn fallback_nanos() -> u64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    // Offset by one hour so "0" never means "now" for a freshly started process.
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX) + 3_600_000_000_000
}

/// Stands for "no reading": a value [`now_nanos`] does not return (it would take 584 years of
/// uptime), for answers that were not timed.
pub(crate) const NO_TICK: u64 = u64::MAX;

/// A duration in nanoseconds, saturating.
pub(crate) fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarse_clock_moves_forward() {
        let a = now_nanos();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let b = now_nanos();
        assert!(b > a, "{a} then {b}");
        assert!(b - a >= 20_000_000, "advanced only {} ns", b - a);
    }
}
