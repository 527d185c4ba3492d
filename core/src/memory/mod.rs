//! Locked memory for secrets.
//!
//! INTERIM: this file holds the public contract (`LockedBuf`, `MemoryPolicy`,
//! `harden_process`); the arena implementation (mmap, mlock, MADV_DONTDUMP, MADV_WIPEONFORK,
//! guard pages, shared slots) replaces the heap-backed body below.

use crate::error::Result;
use zeroize::Zeroize;

/// What to do when the kernel refuses to lock memory (RLIMIT_MEMLOCK reached).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MemoryPolicy {
    /// Fail the allocation with [`crate::ErrorKind::MemoryLock`].
    Strict,
    /// Continue with unlocked (but still dump-excluded and wiped) memory, report it through a
    /// `tracing` warning, the `sealbox_memory_lock_failures_total` counter and
    /// [`crate::Secret::is_locked`].
    #[default]
    BestEffort,
}

/// A fixed-size, zero-initialised buffer in locked memory, wiped when dropped.
pub struct LockedBuf {
    bytes: Box<[u8]>,
}

impl LockedBuf {
    /// Allocates `len` zeroed bytes under `policy`.
    pub fn alloc(len: usize, policy: MemoryPolicy) -> Result<LockedBuf> {
        let _ = policy;
        Ok(LockedBuf {
            bytes: vec![0u8; len].into_boxed_slice(),
        })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Whether the pages holding this buffer are locked in RAM.
    pub fn is_locked(&self) -> bool {
        false
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
}

impl Drop for LockedBuf {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl std::fmt::Debug for LockedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockedBuf")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// The process-wide default policy used by constructors that take none.
pub fn default_policy() -> MemoryPolicy {
    MemoryPolicy::BestEffort
}

/// Sets the process-wide default policy.
pub fn set_default_policy(policy: MemoryPolicy) {
    let _ = policy;
}

/// Hardens the process for holding secrets: `RLIMIT_CORE = 0` and `PR_SET_DUMPABLE = 0`.
pub fn harden_process() -> Result<()> {
    Err(crate::Error::new(
        crate::ErrorKind::Unsupported,
        "harden_process is not built yet",
    ))
}
