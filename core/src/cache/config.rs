//! The `cache:` config section, its defaults and its checks.

use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

/// The `cache:` config section.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Turn the cache off (every read goes to the store).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How long a value is served without asking the store (default 5 minutes).
    #[serde(default = "default_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// Maximum number of cached secrets (default 10 000).
    #[serde(default = "default_capacity")]
    pub capacity: u64,
    /// Fraction of the TTL after which a hit triggers one background refresh (default 0.8;
    /// 1.0 or more turns refresh-ahead off).
    #[serde(default = "default_refresh_ahead")]
    pub refresh_ahead: f64,
    /// How long past its TTL a value may still be served when the store fails (default 0:
    /// off). An entry nobody refreshes leaves memory (wiped) within about
    /// `(ttl + max_stale + 1 s) x 17/16` (the sweep's delay at most 10 s) of its last fetch.
    #[serde(default, with = "humantime_serde")]
    pub max_stale: Duration,
    /// Keep values AES-256-GCM-encrypted in locked memory and decrypt into a fresh handle per
    /// access. The cache's key is locked whatever the memory policy: building a sealed cache
    /// fails with `MemoryLock` when it cannot be. The key lives in the same process, so this
    /// does not defend against a reader of the whole process's memory.
    #[serde(default)]
    pub sealed: bool,
    /// Ask stores that can describe cheaply whether the version changed before refetching
    /// (default true).
    #[serde(default = "yes")]
    pub version_check: bool,
}

fn yes() -> bool {
    true
}
fn default_ttl() -> Duration {
    Duration::from_secs(300)
}
fn default_capacity() -> u64 {
    10_000
}
fn default_refresh_ahead() -> f64 {
    0.8
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            ttl: default_ttl(),
            capacity: default_capacity(),
            refresh_ahead: default_refresh_ahead(),
            max_stale: Duration::ZERO,
            sealed: false,
            version_check: true,
        }
    }
}

impl CacheConfig {
    pub(super) fn validate(&self) -> Result<()> {
        if self.ttl.is_zero() {
            return Err(Error::config(
                "cache.ttl must be more than zero (or set enabled: false)",
            ));
        }
        if self.capacity == 0 {
            return Err(Error::config("cache.capacity must be at least 1"));
        }
        if self.refresh_ahead.is_nan() || self.refresh_ahead <= 0.0 {
            return Err(Error::config(
                "cache.refresh_ahead must be a fraction above 0 (e.g. 0.8)",
            ));
        }
        Ok(())
    }
}
