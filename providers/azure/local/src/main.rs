//! `local-key-vault`: the local Azure Key Vault as a process, for tests outside Rust (the Python
//! interop test, the Python and C binding tests).
//!
//! ```text
//! local-key-vault [--until-stdin-closes] [--client CLIENT_ID=CLIENT_SECRET]...
//! ```
//!
//! Listens on a free port of 127.0.0.1 and prints, as the first line of stdout once it accepts
//! connections, one JSON object: `vault_url`, `authority_host` (its token endpoint's host),
//! `tenant` and `ca_pem` (the CA a client must trust). Each `--client` registers a service
//! principal whose client-credentials grant the token endpoint accepts. Serves until killed,
//! or, with `--until-stdin-closes`, until its stdin reaches end of file: a test that holds the
//! write end of a pipe cannot leave the server running behind it, even if it dies.

use std::io::{Read, Write};

use sealbox_azure_local::LocalKeyVault;

const USAGE: &str = "usage: local-key-vault [--until-stdin-closes] [--client ID=SECRET]...";

fn main() {
    let mut watch_stdin = false;
    let mut clients = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--until-stdin-closes" => watch_stdin = true,
            "--client" => match args.next().as_deref().and_then(|c| c.split_once('=')) {
                Some((id, secret)) if !id.is_empty() && !secret.is_empty() => {
                    clients.push((id.to_owned(), secret.to_owned()));
                }
                _ => {
                    eprintln!("local-key-vault: --client needs ID=SECRET; {USAGE}");
                    std::process::exit(2);
                }
            },
            other => {
                eprintln!("local-key-vault: unknown argument {other:?}; {USAGE}");
                std::process::exit(2);
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("local-key-vault: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let server = runtime.block_on(LocalKeyVault::start());
    for (id, secret) in &clients {
        server.add_client(id, secret);
    }
    let info = serde_json::json!({
        "vault_url": server.vault_url(),
        "authority_host": server.authority_host(),
        "tenant": server.tenant(),
        "ca_pem": server.ca_pem(),
    });
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{info}").and_then(|()| out.flush()).is_err() {
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
