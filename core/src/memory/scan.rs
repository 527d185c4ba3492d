//! Test support: searching this process's memory for a value, and asking the kernel whether a
//! page is locked. The same method as `core/tests/memory_protection.rs`, for unit tests that
//! reach crate-private keys.
//!
//! The value is known only XOR-masked, so searching for it never plants a plain copy.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use zeroize::{Zeroize, Zeroizing};

use crate::secret::Secret;
use secrecy::ExposeSecret;

/// A value known only as `masked = value ^ mask`.
pub(crate) struct Masked {
    mask: Vec<u8>,
    masked: Vec<u8>,
}

impl Masked {
    pub(crate) fn of(value: &[u8]) -> Masked {
        let mask = Secret::random(value.len())
            .unwrap()
            .expose_secret()
            .to_vec();
        let masked = value.iter().zip(&mask).map(|(v, m)| v ^ m).collect();
        Masked { mask, masked }
    }

    fn matches(&self, window: &[u8]) -> bool {
        window
            .iter()
            .zip(&self.mask)
            .zip(&self.masked)
            .all(|((w, m), x)| w ^ m == *x)
    }
}

/// Readable regions of this process, `(start, end)`.
fn readable_regions() -> Vec<(usize, usize)> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let (lo, hi) = parts.next()?.split_once('-')?;
            let perms = parts.next()?;
            let path = parts.nth(3).unwrap_or("");
            // [vvar] and [vsyscall] cannot be read through /proc/self/mem.
            let skip = !perms.starts_with('r') || path.starts_with("[vvar") || path == "[vsyscall]";
            (!skip).then(|| {
                (
                    usize::from_str_radix(lo, 16).unwrap(),
                    usize::from_str_radix(hi, 16).unwrap(),
                )
            })
        })
        .collect()
}

/// Addresses in this process's readable memory where the value occurs.
pub(crate) fn find_copies(value: &Masked) -> Vec<usize> {
    const BLOCK: usize = 1 << 20;
    let n = value.mask.len();
    let mut mem = File::open("/proc/self/mem").unwrap();
    // Holds copies of memory, so it is wiped after every block and never reallocated.
    let mut buf = Zeroizing::new(vec![0u8; BLOCK + n]);
    let mut hits = Vec::new();
    for (start, end) in readable_regions() {
        let mut addr = start;
        while addr < end {
            let want = (end - addr).min(BLOCK + n);
            let Ok(got) = mem
                .seek(SeekFrom::Start(addr as u64))
                .and_then(|_| read_full(&mut mem, &mut buf[..want]))
            else {
                break;
            };
            for i in 0..got.saturating_sub(n - 1) {
                if buf[i] ^ value.mask[0] == value.masked[0] && value.matches(&buf[i..i + n]) {
                    hits.push(addr + i);
                }
            }
            buf[..].zeroize();
            if got < want || got < n {
                break;
            }
            // Overlap blocks by n - 1 bytes so no occurrence straddles a boundary unseen.
            addr += (got - (n - 1)).max(1);
        }
    }
    hits.sort_unstable();
    hits.dedup();
    hits
}

fn read_full(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match f.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if filled > 0 && e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Whether the kernel reports the mapping holding `addr` as locked (`lo` in smaps' VmFlags).
pub(crate) fn is_locked_page(addr: usize) -> bool {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((lo, hi)) = first.split_once('-')
            && let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
        {
            inside = lo <= addr && addr < hi;
        } else if inside && let Some(flags) = line.strip_prefix("VmFlags:") {
            return flags.split_whitespace().any(|f| f == "lo");
        }
    }
    panic!("no mapping holds {addr:#x}");
}
