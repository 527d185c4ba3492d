//! Shared set-up for the tests against a real moto server.
//!
//! The endpoint comes from `SEALBOX_TEST_AWS_ENDPOINT` (`scripts/moto.sh env` prints it). Without
//! it a test prints why it skips and returns, unless `CI` is set: CI must never skip.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_secretsmanager::config::{Credentials, SharedCredentialsProvider};
use sealbox::store::SecretName;
use sealbox_aws::{AwsConfig, AwsSecretsManager};

pub const ENDPOINT_VAR: &str = "SEALBOX_TEST_AWS_ENDPOINT";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The moto endpoint, or `None` (with a printed reason) when a developer has none.
pub fn endpoint(test: &str) -> Option<String> {
    match std::env::var(ENDPOINT_VAR) {
        Ok(e) if !e.is_empty() => Some(e),
        _ if in_ci() => panic!(
            "{ENDPOINT_VAR} is not set but CI is: the AWS tests must run against moto in CI \
             (start it with `eval \"$(scripts/moto.sh env)\"`)"
        ),
        _ => {
            eprintln!(
                "SKIPPED {test}: {ENDPOINT_VAR} is not set; run `eval \"$(scripts/moto.sh env)\"` \
                 to test against moto"
            );
            None
        }
    }
}

/// Static test credentials (moto accepts any).
pub fn test_credentials() -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(Credentials::new(
        "testing",
        "testing",
        None,
        None,
        "sealbox-tests",
    ))
}

/// An `AwsConfig` for moto at `endpoint`.
pub fn moto_config(endpoint: &str) -> AwsConfig {
    AwsConfig {
        region: Some("us-east-1".into()),
        endpoint_url: Some(endpoint.to_owned()),
        ..AwsConfig::default()
    }
}

pub async fn sdk_config(config: &AwsConfig) -> SdkConfig {
    config
        .load_sdk_config_with(Some(test_credentials()))
        .await
        .expect("SDK config for moto")
}

/// A unique path segment, so tests sharing one moto server never see each other's secrets.
pub fn unique(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{tag}-{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A store on moto whose names all live under a fresh prefix.
pub async fn store(endpoint: &str, tag: &str) -> AwsSecretsManager {
    let config = AwsConfig {
        prefix: Some(format!("sealbox-tests/{}", unique(tag))),
        ..moto_config(endpoint)
    };
    AwsSecretsManager::from_sdk_config(&sdk_config(&config).await, &config).unwrap()
}

pub fn name(s: &str) -> SecretName {
    SecretName::new(s).unwrap()
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python that has boto3: `SEALBOX_TEST_PYTHON`, else the venv `scripts/moto.sh` makes.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("SEALBOX_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    repo_root().join("target/moto-venv/bin/python")
}

/// The `moto_server` executable: `SEALBOX_TEST_MOTO_SERVER`, else the venv's.
pub fn moto_server_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SEALBOX_TEST_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    repo_root().join("target/moto-venv/bin/moto_server")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Held by the one `OwnMoto` of this process. Two tests starting servers at once could draw
/// the same free port, or one could draw the port another has just stopped and is about to
/// restart on: the loser's server fails to bind and exits, and its test talks to (and later
/// kills) the winner's.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A moto server this test owns, so it can stop and restart it. Killed on drop.
pub struct OwnMoto {
    pub port: u16,
    child: Option<Child>,
    _turn: MutexGuard<'static, ()>,
}

impl OwnMoto {
    /// Starts a server on a free port. A start that loses its port to another process is
    /// retried on a new one.
    pub fn start() -> OwnMoto {
        // A test that panicked while holding the turn has already killed its server (drop).
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let mut m = OwnMoto {
            port: free_port(),
            child: None,
            _turn: turn,
        };
        for _ in 0..3 {
            match m.try_start() {
                Ok(()) => return m,
                Err(why) => {
                    eprintln!("moto on {}: {why}; trying another port", m.port);
                    m.port = free_port();
                }
            }
        }
        panic!("moto did not start on three ports in a row")
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and waits until it answers.
    pub fn restart(&mut self) {
        if let Err(why) = self.try_start() {
            panic!("moto did not restart on {}: {why}", self.port);
        }
    }

    /// Spawns the server and waits until the port answers while the child still runs. A child
    /// that exits has lost the port (to a socket left by the server before it, or to another
    /// process), so whatever answers there is not ours.
    fn try_start(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "moto is already running");
        let bin = moto_server_bin();
        let mut child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("the server exited ({status})"));
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("no answer within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // A server that could not bind exits right after it reports the error; give it the
        // time to do so before trusting the answer.
        std::thread::sleep(Duration::from_millis(300));
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!(
                "the server exited after the port answered ({status})"
            ));
        }
        self.child = Some(child);
        Ok(())
    }

    /// Kills the server (like a crash) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnMoto {
    fn drop(&mut self) {
        self.stop();
    }
}
