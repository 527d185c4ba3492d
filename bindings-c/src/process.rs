//! Process-wide protection for services that hold secrets.

use crate::boundary::ffi_boundary;
use crate::result::sb_result;

/// Hardens the calling process for holding secrets: no core dumps (`RLIMIT_CORE = 0`) and
/// not dumpable (`PR_SET_DUMPABLE = 0`, so unprivileged users cannot ptrace it or read its
/// memory). Irreversible for the process and inherited by children; call it early in `main`.
/// `SB_RESULT_IO` when the kernel refuses, `SB_RESULT_UNSUPPORTED` on systems without it.
#[unsafe(no_mangle)]
pub extern "C" fn sb_harden_process() -> sb_result {
    ffi_boundary("sb_harden_process", || {
        sealbox::harden_process()?;
        Ok(())
    })
}
