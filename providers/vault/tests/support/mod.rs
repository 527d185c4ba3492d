//! A real Vault server for the tests: the `vault` binary built from the Go module proxy by
//! `scripts/vault-server.sh ensure` (found through `SEALBOX_VAULT_BIN`, else the cache path
//! `~/.cache/sealbox/vault-1.21.0/vault`), started in dev mode (in-memory storage, unsealed,
//! KV v2 at `secret/`) on a free loopback port with `HOME` in a temporary directory (dev
//! mode writes `~/.vault-token` there), and stopped by pid when the guard drops.
//!
//! Without the binary a test says why it skips, unless `CI` is set: CI must never skip.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sealbox::Secret;
use sealbox::store::SecretName;
use sealbox_vault::{AuthConfig, VaultConfig, VaultKv};
use tempfile::TempDir;

/// The version the wrapper module in `providers/vault/server` builds.
pub const VAULT_VERSION: &str = "1.21.0";
/// The dev server's root token.
pub const ROOT_TOKEN: &str = "sealbox-test-root";

/// Where the binary is: `SEALBOX_VAULT_BIN`, else the cache path. `None` (after saying
/// why) when it is missing outside CI; a panic in CI.
pub fn vault_binary(test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("SEALBOX_VAULT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home =
                std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
            home.join(format!(".cache/sealbox/vault-{VAULT_VERSION}/vault"))
        });
    if path.is_file() {
        return Some(path);
    }
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    assert!(
        !ci,
        "{test}: no Vault server binary at {} (run scripts/vault-server.sh ensure, or set \
         SEALBOX_VAULT_BIN); CI must not skip it",
        path.display()
    );
    eprintln!(
        "SKIPPED {test}: no Vault binary at {}; run scripts/vault-server.sh ensure",
        path.display()
    );
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A running dev-mode Vault; killed by pid on drop.
pub struct VaultServer {
    child: Child,
    pub port: u16,
    pub home: TempDir,
    pub log: PathBuf,
    bin: PathBuf,
}

impl VaultServer {
    /// Starts a dev server, or returns `None` (outside CI) when there is no binary.
    pub fn start(test: &str) -> Option<VaultServer> {
        let bin = vault_binary(test)?;
        let home = tempfile::Builder::new()
            .prefix("sealbox-vault-home")
            .tempdir()
            .expect("tempdir");
        let log = home.path().join("vault.log");
        let out = std::fs::File::create(&log).unwrap();
        let port = free_port();
        let child = Command::new(&bin)
            .args(["server", "-dev", "-dev-no-store-token"])
            .arg(format!("-dev-root-token-id={ROOT_TOKEN}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .env_clear()
            .env("HOME", home.path())
            .env("PATH", "/usr/bin:/bin")
            .current_dir(home.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start vault");
        let mut server = VaultServer {
            child,
            port,
            home,
            log,
            bin,
        };
        server.wait_ready();
        Some(server)
    }

    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("vault exited at start ({status}):\n{}", self.log_text());
            }
            let healthy = self
                .cli(&["status", "-format=json"])
                .is_ok_and(|o| String::from_utf8_lossy(&o).contains("\"sealed\": false"));
            if healthy {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "vault not ready after 60 s:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "vault dev server ready on {} in {:?}",
            self.address(),
            started.elapsed()
        );
    }

    /// Runs the `vault` CLI against this server as root; stdout on success.
    pub fn cli(&self, args: &[&str]) -> Result<Vec<u8>, String> {
        let out = Command::new(&self.bin)
            .args(args)
            .env_clear()
            .env("HOME", self.home.path())
            .env("VAULT_ADDR", self.address())
            .env("VAULT_TOKEN", ROOT_TOKEN)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Like [`VaultServer::cli`], panicking with Vault's answer on failure.
    pub fn must(&self, args: &[&str]) -> String {
        match self.cli(args) {
            Ok(o) => String::from_utf8_lossy(&o).into_owned(),
            Err(e) => panic!("vault {args:?} failed: {e}"),
        }
    }

    /// A config for this server with the root token and `prefix`.
    pub fn config(&self, prefix: &str) -> VaultConfig {
        VaultConfig {
            address: self.address(),
            prefix: (!prefix.is_empty()).then(|| prefix.to_owned()),
            auth: Some(AuthConfig::Token {
                token: Some(ROOT_TOKEN.into()),
                token_file: None,
            }),
            timeout: Some(Duration::from_secs(10)),
            ..VaultConfig::default()
        }
    }

    /// A store on this server as root.
    pub async fn store(&self, prefix: &str) -> VaultKv {
        VaultKv::connect(&self.config(prefix)).await.unwrap()
    }
}

impl Drop for VaultServer {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) with a plain pid and signal; the pid is our unreaped child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn name(s: &str) -> SecretName {
    SecretName::new(s).unwrap()
}

pub fn secret(b: &[u8]) -> Secret {
    Secret::from_mut_slice(&mut b.to_vec()).unwrap()
}
