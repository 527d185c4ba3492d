//! The library's log events (`tracing`) on standard error: warnings by default, the level from
//! `SEALBOX_LOG` (an `EnvFilter` directive such as `error`, `info` or `sealbox=debug`).
//!
//! sealbox's own events never carry a value (messages and fields are errors, names, paths and
//! modes). Other crates' events are capped at `info` whatever `SEALBOX_LOG` says: HTTP and SDK
//! debug and trace events can carry request and response bodies, which is where a value sent
//! to or read from a remote store would be.

use std::io::IsTerminal;

use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

/// The variable that sets the level.
pub const ENV: &str = "SEALBOX_LOG";

/// Installs the subscriber. A malformed `SEALBOX_LOG` falls back to warnings, and says so.
pub fn install() {
    let filter = match std::env::var(ENV) {
        Ok(directives) => EnvFilter::try_new(&directives).unwrap_or_else(|e| {
            eprintln!("sealbox: warning: {ENV} is not a valid log filter ({e}); logging warnings");
            EnvFilter::new("warn")
        }),
        Err(_) => EnvFilter::new("warn"),
    };
    let layer = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_filter(filter.and(filter_fn(may_log)));
    // Only fails when a subscriber is already installed, which `main` never does.
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// sealbox's events at any level, other crates' only up to `info`.
fn may_log(meta: &Metadata<'_>) -> bool {
    is_ours(meta.target()) || *meta.level() <= Level::INFO
}

fn is_ours(target: &str) -> bool {
    target == "sealbox" || target.starts_with("sealbox::") || target.starts_with("sealbox_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sealbox_targets_pass_below_info() {
        assert!(is_ours("sealbox::store::file"));
        assert!(is_ours("sealbox_aws::secrets_manager"));
        assert!(!is_ours("sealboxed"));
        assert!(!is_ours("aws_smithy_runtime::client"));
        // `tracing` orders levels by verbosity: the cap keeps warn and info, drops debug.
        assert!(Level::WARN <= Level::INFO);
        assert!(Level::DEBUG > Level::INFO);
    }
}
