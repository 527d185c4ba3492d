//! The `exec` rotator: a command sealbox does not know (a ClickHouse or MySQL script) does the
//! target's part. It is run once per step with the step's name as its last argument (`set`,
//! `test`, `restore`) and the value on its standard input; the value is never in its
//! arguments or environment, where `ps` and `/proc` would show it.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use secrecy::ExposeSecret;

use crate::error::{Error, ErrorKind, Result};
use crate::secret::Secret;

use super::rotator::{Rotator, StepContext};

/// Runs a command for each step. See the module documentation.
#[derive(Clone, Debug)]
pub struct Exec {
    program: PathBuf,
    args: Vec<String>,
    timeout: Duration,
}

impl Exec {
    /// `program` with `args` (the step name is appended); 60 s per step.
    pub fn new(program: impl Into<PathBuf>, args: Vec<String>) -> Exec {
        Exec {
            program: program.into(),
            args,
            timeout: Duration::from_secs(60),
        }
    }

    /// How long a step may run before it is killed and fails.
    pub fn timeout(mut self, timeout: Duration) -> Exec {
        self.timeout = timeout;
        self
    }

    async fn run(&self, step: &'static str, ctx: &StepContext<'_>, value: &Secret) -> Result<()> {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .arg(step)
            .env("SEALBOX_SECRET_NAME", ctx.name.as_str())
            .env("SEALBOX_VERSION", ctx.version.as_str())
            .env("SEALBOX_STEP", step)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Its own process group, so a timeout kills the script's children too.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let program = self.program.display().to_string();
        let timeout = self.timeout;
        let name = ctx.name.to_string();
        // The value is written from its locked buffer; the blocking part runs off the runtime.
        let value = value.try_clone()?;
        tokio::task::spawn_blocking(move || {
            run_blocking(cmd, &program, step, &name, &value, timeout)
        })
        .await
        .map_err(|_| Error::internal("the exec rotator's worker thread panicked"))?
    }
}

fn run_blocking(
    mut cmd: Command,
    program: &str,
    step: &str,
    name: &str,
    value: &Secret,
    timeout: Duration,
) -> Result<()> {
    let mut child = cmd.spawn().map_err(|e| {
        Error::io(
            format!("could not start the exec rotator {program} for {name}; check the path"),
            e,
        )
    })?;
    let mut stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.take(64 * 1024).read_to_end(&mut buf);
        }
        buf
    });
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its input closes the pipe: not an error by itself,
        // its exit status says whether the step worked.
        let _ = stdin.write_all(value.expose_secret());
    }
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > timeout => {
                if let Ok(pgid) = libc::pid_t::try_from(child.id()) {
                    // SAFETY: kill(2) takes plain integers; -pgid names the group the child
                    // leads (process_group(0) above), which it does until we reap it below.
                    unsafe { libc::kill(-pgid, libc::SIGKILL) };
                }
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "the exec rotator {program} ran over {} s at step {step} of {name} and \
                         was killed; raise its timeout or fix the target",
                        timeout.as_secs()
                    ),
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(Error::io(format!("waiting for {program}"), e)),
        }
    };
    let mut err = reader.join().unwrap_or_default();
    if status.success() {
        zeroize::Zeroize::zeroize(&mut err);
        return Ok(());
    }
    let first = first_line(&err, value);
    zeroize::Zeroize::zeroize(&mut err);
    Err(Error::new(
        ErrorKind::Unavailable,
        format!("the exec rotator {program} failed at step {step} of {name} ({status}): {first}"),
    ))
}

/// The first non-empty line of `stderr`, unless it holds the value (a script that echoes its
/// input): then a note saying it was withheld.
fn first_line(stderr: &[u8], value: &Secret) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let v = value.expose_secret();
    let holds_value = !v.is_empty() && line.as_bytes().windows(v.len()).any(|w| w == v);
    if line.is_empty() {
        "no message on stderr".to_owned()
    } else if holds_value {
        "its message held the value and is not shown".to_owned()
    } else {
        line.chars().take(300).collect()
    }
}

#[async_trait]
impl Rotator for Exec {
    fn kind(&self) -> &'static str {
        "exec"
    }

    async fn set(&self, step: &StepContext<'_>, value: &Secret) -> Result<()> {
        self.run("set", step, value).await
    }

    async fn test(&self, step: &StepContext<'_>, value: &Secret) -> Result<()> {
        self.run("test", step, value).await
    }

    async fn restore(&self, step: &StepContext<'_>, value: &Secret) -> Result<()> {
        self.run("restore", step, value).await
    }
}
