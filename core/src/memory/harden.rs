//! Process-wide hardening for programs that hold secrets.

use crate::error::{Error, ErrorKind, Result};

/// Hardens the process for holding secrets: `RLIMIT_CORE = 0` (soft and hard, so no core file is
/// ever written) and `PR_SET_DUMPABLE = 0` (no core dumps, and processes of the same user can no
/// longer `ptrace` it or read `/proc/PID/mem`).
///
/// Both settings are irreversible for the process's lifetime (the hard core limit cannot be
/// raised again without privileges) and are inherited by children. `root` (or `CAP_SYS_PTRACE`)
/// can still read the process's memory.
///
/// Fails with [`ErrorKind::Io`] if the kernel refuses either setting and with
/// [`ErrorKind::Unsupported`] on systems without `prctl`.
pub fn harden_process() -> Result<()> {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the fully initialised `rlimit` passed by reference and changes
    // only this process's limits.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::new(
            ErrorKind::Io,
            format!("could not set RLIMIT_CORE to 0: {e}"),
        )
        .with_source(e));
    }
    set_not_dumpable()
}

#[cfg(target_os = "linux")]
fn set_not_dumpable() -> Result<()> {
    // SAFETY: PR_SET_DUMPABLE takes one integer argument and changes only this process's
    // dumpable flag; the unused variadic arguments are passed as zero as the man page asks.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong, 0, 0, 0) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::new(
            ErrorKind::Io,
            format!("could not clear the dumpable flag (PR_SET_DUMPABLE): {e}"),
        )
        .with_source(e));
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn set_not_dumpable() -> Result<()> {
    Err(Error::new(
        ErrorKind::Unsupported,
        "harden_process: PR_SET_DUMPABLE exists only on Linux; RLIMIT_CORE was set to 0",
    ))
}
