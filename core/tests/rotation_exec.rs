//! The `exec` rotator against a real shell script, as a specification: the script gets the
//! step name as its last argument and the value on standard input, and the value is in
//! neither its command line nor its environment (read from its own `/proc/self`); a non-zero
//! exit fails the step with the first line of its stderr, never the value, and leaves
//! `CURRENT` unchanged; a script that runs too long is killed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sealbox::rotation::{Exec, Generator, NewValue, RotationEngine};
use sealbox::store::memory::MemoryStore;
use sealbox::store::{PutOptions, SecretName, SecretStore, VersionSelector};
use sealbox::{ErrorKind, ExposeSecret, Secret};

const SCRIPT: &str = r#"#!/bin/sh
dir="$(dirname "$0")"
for step; do :; done # the last argument
cat > "$dir/stdin-$step"
tr '\0' ' ' < /proc/$$/cmdline > "$dir/cmdline-$step"
tr '\0' '\n' < /proc/$$/environ > "$dir/environ-$step"
if [ -e "$dir/fail-$step" ]; then
  echo "connection refused by db.example:5432" >&2
  echo "second line" >&2
  exit 3
fi
if [ -e "$dir/echo-$step" ]; then
  cat "$dir/stdin-$step" >&2
  exit 1
fi
if [ -e "$dir/hang-$step" ]; then
  sleep 30 &
  echo $! > "$dir/sleep-pid"
  wait
fi
"#;

fn script(dir: &Path) -> Exec {
    let path = dir.join("rotate.sh");
    std::fs::write(&path, SCRIPT).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
    Exec::new(path, vec!["--target".into(), "clickhouse".into()])
}

fn name() -> SecretName {
    "predis/prod/clickhouse/password".parse().unwrap()
}

async fn store() -> Arc<dyn SecretStore> {
    let store = Arc::new(MemoryStore::new());
    let v = Secret::init_with(7, |d| {
        d.copy_from_slice(b"initial");
        Ok(())
    })
    .unwrap();
    store
        .put(&name(), &v, &PutOptions::default())
        .await
        .unwrap();
    store
}

async fn current(store: &dyn SecretStore) -> Vec<u8> {
    let v = store.get(&name(), &VersionSelector::Current).await.unwrap();
    v.value.expose_secret().to_vec()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn the_script_gets_the_value_on_stdin_and_never_in_argv_or_env() {
    let dir = tempfile::tempdir().unwrap();
    let store = store().await;
    let engine = RotationEngine::new(store.clone(), "memory");
    let exec = script(dir.path());
    engine
        .rotate(
            &name(),
            &exec,
            NewValue::Generate(Generator::soc2_password()),
        )
        .await
        .unwrap();
    let value = current(store.as_ref()).await;
    assert_eq!(value.len(), 24);
    for step in ["set", "test"] {
        let stdin = std::fs::read(dir.path().join(format!("stdin-{step}"))).unwrap();
        assert_eq!(stdin, value, "step {step} read the pending value");
        let cmdline = std::fs::read(dir.path().join(format!("cmdline-{step}"))).unwrap();
        assert!(
            String::from_utf8_lossy(&cmdline).ends_with(&format!("--target clickhouse {step} "))
        );
        assert!(!contains(&cmdline, &value));
        let environ = std::fs::read(dir.path().join(format!("environ-{step}"))).unwrap();
        assert!(!contains(&environ, &value));
        let environ = String::from_utf8(environ).unwrap();
        assert!(environ.contains(&format!("SEALBOX_STEP={step}")));
        assert!(environ.contains("SEALBOX_SECRET_NAME=predis/prod/clickhouse/password"));
    }
}

#[tokio::test]
async fn a_failing_step_reports_the_first_stderr_line_and_current_stays() {
    let dir = tempfile::tempdir().unwrap();
    let store = store().await;
    let engine = RotationEngine::new(store.clone(), "memory");
    let exec = script(dir.path());
    std::fs::write(dir.path().join("fail-test"), "").unwrap();
    let err = engine
        .rotate(
            &name(),
            &exec,
            NewValue::Generate(Generator::soc2_password()),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    let msg = err.to_string();
    assert!(
        msg.contains("connection refused by db.example:5432"),
        "{msg}"
    );
    assert!(msg.contains("at step test"), "{msg}");
    assert!(!msg.contains("second line"), "{msg}");
    assert_eq!(current(store.as_ref()).await, b"initial");
    let pending = std::fs::read(dir.path().join("stdin-test")).unwrap();
    assert!(!contains(msg.as_bytes(), &pending));

    // Fixed target: the next run resumes at test with the same value.
    std::fs::remove_file(dir.path().join("fail-test")).unwrap();
    let done = engine
        .rotate(
            &name(),
            &exec,
            NewValue::Generate(Generator::soc2_password()),
        )
        .await
        .unwrap();
    assert!(done.resumed);
    assert_eq!(current(store.as_ref()).await, pending);
}

#[tokio::test]
async fn a_script_that_echoes_the_value_to_stderr_does_not_put_it_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = store().await;
    let engine = RotationEngine::new(store.clone(), "memory");
    std::fs::write(dir.path().join("echo-set"), "").unwrap();
    let err = engine
        .rotate(
            &name(),
            &script(dir.path()),
            NewValue::Generate(Generator::soc2_password()),
        )
        .await
        .unwrap_err();
    let value = std::fs::read(dir.path().join("stdin-set")).unwrap();
    let msg = err.to_string();
    assert!(
        !contains(msg.as_bytes(), &value),
        "the value is in the error"
    );
    assert!(msg.contains("held the value and is not shown"), "{msg}");
    let status = engine.status(&name()).await.unwrap();
    let failure = status.last_failure.unwrap();
    assert!(!contains(failure.reason.as_bytes(), &value));
}

#[tokio::test]
async fn a_step_over_its_timeout_is_killed_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let store = store().await;
    let engine = RotationEngine::new(store.clone(), "memory");
    std::fs::write(dir.path().join("hang-set"), "").unwrap();
    let started = std::time::Instant::now();
    let err = engine
        .rotate(
            &name(),
            &script(dir.path()).timeout(Duration::from_millis(300)),
            NewValue::Generate(Generator::Hex { bytes: 32 }),
        )
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(err.to_string().contains("was killed"), "{err}");
    // The script's own child (`sleep 30`) went with it: nothing holds its stderr open.
    let pid = std::fs::read_to_string(dir.path().join("sleep-pid")).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
    let alive = stat
        .rsplit(')')
        .next()
        .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
        && !stat.is_empty();
    assert!(!alive, "the script's child survived the timeout: {stat}");
    assert_eq!(current(store.as_ref()).await, b"initial");
}
