//! `local-secret-manager`: the local GCP Secret Manager as a process, for tests and benches
//! outside Rust (the Python and C binding tests, `benches/benches/gcp.rs` runs it in-process).
//!
//! ```text
//! local-secret-manager [--until-stdin-closes]
//! ```
//!
//! Listens on a free port of 127.0.0.1, prints its endpoint (`http://127.0.0.1:PORT`) as the
//! first line of stdout once it accepts connections, and serves anonymous calls until it is
//! killed, or, with `--until-stdin-closes`, until its stdin reaches end of file: a test that
//! holds the write end of a pipe cannot leave the server running behind it, even if it dies.

use std::io::{Read, Write};

use sealbox_gcp_local::LocalSecretManager;

fn main() {
    let watch_stdin = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--until-stdin-closes") => true,
        Some(other) => {
            eprintln!(
                "local-secret-manager: unknown argument {other:?}; usage: local-secret-manager [--until-stdin-closes]"
            );
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("local-secret-manager: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let server = runtime.block_on(LocalSecretManager::start());
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{}", server.endpoint())
        .and_then(|()| out.flush())
        .is_err()
    {
        std::process::exit(1);
    }
    drop(out);
    if watch_stdin {
        // Blocks this thread (the runtime's workers serve) until the pipe's writer is gone.
        let mut sink = [0u8; 256];
        let mut stdin = std::io::stdin().lock();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        drop(server);
    } else {
        runtime.block_on(std::future::pending::<()>());
    }
}
