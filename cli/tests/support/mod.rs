//! The scratch vault and process helpers both end-to-end test files use.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A scratch directory with a vault path and a key path in it (created by `init`).
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    /// An empty scratch directory: no vault yet.
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    /// A fresh vault made by `sealbox init`.
    pub fn init() -> Scratch {
        let s = Scratch::new();
        let o = s.run(&["init"], b"");
        assert_eq!(code(&o), 0, "init: {}", stderr(&o));
        s
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn vault(&self) -> PathBuf {
        self.dir.path().join("vault.db")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.path().join("master.key")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `sealbox` with this scratch's vault and key in the environment.
    pub fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        self.run_with_key(&self.key(), args, stdin)
    }

    /// Runs `sealbox` with this scratch's vault and another key file.
    pub fn run_with_key(&self, key: &Path, args: &[&str], stdin: &[u8]) -> Output {
        run_with_env(
            args,
            stdin,
            &[("SEALBOX_VAULT", &self.vault()), ("SEALBOX_KEY_FILE", key)],
        )
    }

    /// Runs and requires success; returns stdout.
    pub fn ok(&self, args: &[&str], stdin: &[u8]) -> String {
        let o = self.run(args, stdin);
        assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
        stdout(&o)
    }

    /// Runs with `--json` and requires success; returns the parsed document.
    pub fn json(&self, args: &[&str], stdin: &[u8]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.ok(&all, stdin);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
    }
}

/// Runs the `sealbox` binary with only the given `SEALBOX_*` variables set.
pub fn run_with_env(args: &[&str], stdin: &[u8], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sealbox"));
    cmd.args(args)
        .env_remove("SEALBOX_VAULT")
        .env_remove("SEALBOX_KEY_FILE")
        .env_remove("SEALBOX_CONFIG")
        .env_remove("SEALBOX_AUDIT_KEY_FILE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn sealbox");
    let mut input = child.stdin.take().expect("stdin");
    // The child may exit before reading (usage errors); a broken pipe is fine then.
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().expect("wait for sealbox")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().expect("sealbox exited by signal")
}
