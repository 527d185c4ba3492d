//! Secrets in memory, checked from the outside: what the kernel reports about their pages, and
//! whether any copy of a value survives in the process's memory after it is dropped.
//!
//! Every value is generated at run time straight into locked memory; the tests keep only an
//! XOR-masked copy (value ^ random mask), so searching for the value never plants it anywhere.
//! The same tests run a second time as an unprivileged user under a small RLIMIT_MEMLOCK (see
//! `runs_unprivileged_under_a_small_memlock_limit`), where `Strict` must fail and `BestEffort`
//! must degrade.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use sealbox::memory::{self, LOCK_FAILURES_METRIC, MemoryPolicy};
use sealbox::{ErrorKind, ExposeSecret, Secret, SecretString};
use zeroize::{Zeroize, Zeroizing};

// ---------------------------------------------------------------------------------------------
// Helpers: masked values, memory scanning, smaps

/// A value known only as `masked = value ^ mask`, so the test process holds no plain copy.
struct Masked {
    mask: Vec<u8>,
    masked: Vec<u8>,
}

impl Masked {
    fn of(value: &[u8]) -> Masked {
        let mask = Secret::random(value.len())
            .unwrap()
            .expose_secret()
            .to_vec();
        let masked = value.iter().zip(&mask).map(|(v, m)| v ^ m).collect();
        Masked { mask, masked }
    }

    fn len(&self) -> usize {
        self.mask.len()
    }

    /// Whether `window` (of `len()` bytes) is the value, without ever forming the value.
    fn matches(&self, window: &[u8]) -> bool {
        window
            .iter()
            .zip(&self.mask)
            .zip(&self.masked)
            .all(|((w, m), x)| w ^ m == *x)
    }

    /// Whether `text` contains the value.
    fn found_in(&self, text: &[u8]) -> bool {
        text.windows(self.len()).any(|w| self.matches(w))
    }
}

/// Readable regions of this process: `(start, end, description)`.
fn readable_regions() -> Vec<(u64, u64, String)> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let range = parts.next()?;
            let perms = parts.next()?;
            let (lo, hi) = range.split_once('-')?;
            let path = parts.nth(3).unwrap_or("").to_owned();
            // [vvar] and [vsyscall] cannot be read through /proc/self/mem.
            let skip = !perms.starts_with('r') || path.starts_with("[vvar") || path == "[vsyscall]";
            (!skip).then(|| {
                (
                    u64::from_str_radix(lo, 16).unwrap(),
                    u64::from_str_radix(hi, 16).unwrap(),
                    path,
                )
            })
        })
        .collect()
}

/// Addresses in the process's readable memory where the value occurs.
///
/// The scan buffer holds copies of memory (including, while a secret lives, the secret), so it
/// is wiped after every block and never reallocated.
fn find_copies(value: &Masked) -> Vec<u64> {
    const BLOCK: usize = 1 << 20;
    let n = value.len();
    let (first_mask, first_masked) = (value.mask[0], value.masked[0]);
    let mut mem = File::open("/proc/self/mem").unwrap();
    let mut buf = Zeroizing::new(vec![0u8; BLOCK + n]);
    let mut hits = Vec::new();
    for (start, end, _) in readable_regions() {
        let mut addr = start;
        while addr < end {
            let want = ((end - addr) as usize).min(BLOCK + n);
            let got = mem
                .seek(SeekFrom::Start(addr))
                .and_then(|_| read_full(&mut mem, &mut buf[..want]));
            let Ok(got) = got else { break }; // unreadable (e.g. device memory): skip the rest
            let window = &buf[..got];
            // Compare the first byte in masked form, so the value's first byte is never stored.
            for (i, b) in window.iter().enumerate() {
                if b ^ first_mask == first_masked
                    && i + n <= got
                    && value.matches(&window[i..i + n])
                {
                    hits.push(addr + i as u64);
                }
            }
            buf[..].zeroize(); // the slice: `Vec::zeroize` would also truncate it
            if got < want {
                break;
            }
            // Overlap blocks by n - 1 bytes so no occurrence straddles a boundary unseen.
            addr += (got.saturating_sub(n - 1)).max(1) as u64;
            if got < n {
                break;
            }
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

/// The `/proc/self/smaps` block for the mapping containing `addr`: `(perms, VmFlags)`.
fn smaps_entry(addr: usize) -> (String, Vec<String>) {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut current: Option<String> = None;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((lo, hi)) = first.split_once('-')
            && let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
        {
            current = (lo <= addr && addr < hi)
                .then(|| line.split_whitespace().nth(1).unwrap_or("").to_owned());
        } else if let (Some(perms), Some(flags)) = (&current, line.strip_prefix("VmFlags:")) {
            return (
                perms.clone(),
                flags.split_whitespace().map(str::to_owned).collect(),
            );
        }
    }
    panic!("no smaps entry for {addr:#x}");
}

fn vm_flags(addr: usize) -> Vec<String> {
    smaps_entry(addr).1
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap()
}

/// MADV_WIPEONFORK exists from Linux 4.14.
fn kernel_has_wipeonfork() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse::<u32>().ok());
    let (major, minor) = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    (major, minor) >= (4, 14)
}

/// A secret of `len` random bytes, generated in place.
fn random_secret(len: usize) -> Secret {
    Secret::random(len).unwrap()
}

/// Writes `raw` as lowercase hex into `dst` (twice as long), without an intermediate string.
fn hex_into(raw: &[u8], dst: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in raw.iter().enumerate() {
        dst[2 * i] = HEX[(b >> 4) as usize];
        dst[2 * i + 1] = HEX[(b & 15) as usize];
    }
}

// ---------------------------------------------------------------------------------------------
// The kernel's view of live secrets

#[test]
fn live_secret_pages_are_locked_and_excluded_from_dumps() {
    let small = random_secret(64);
    let large = random_secret(10_000);
    for s in [&small, &large] {
        assert!(s.is_locked());
        let flags = vm_flags(s.expose_secret().as_ptr() as usize);
        assert!(flags.iter().any(|f| f == "lo"), "not locked: {flags:?}");
        assert!(
            flags.iter().any(|f| f == "dd"),
            "not MADV_DONTDUMP: {flags:?}"
        );
        if kernel_has_wipeonfork() {
            assert!(
                flags.iter().any(|f| f == "wf"),
                "not MADV_WIPEONFORK: {flags:?}"
            );
        } else {
            eprintln!("kernel older than 4.14: no MADV_WIPEONFORK to check");
        }
    }
    // A large secret has its own mapping with PROT_NONE guard pages on both sides.
    let page = page_size();
    let start = large.expose_secret().as_ptr() as usize;
    assert_eq!(start % page, 0);
    let end = start + 10_000usize.next_multiple_of(page);
    assert_eq!(smaps_entry(start - 1).0, "---p", "no guard page before");
    assert_eq!(smaps_entry(end).0, "---p", "no guard page after");
}

#[test]
fn pages_are_unlocked_when_their_last_secret_is_dropped() {
    // 2 KiB secrets: no other test here uses that size class, so its pages are ours alone.
    let page = page_size();
    let secrets: Vec<Secret> = (0..2 * page / 2048 * 5)
        .map(|_| random_secret(2048))
        .collect();
    let mut pages: Vec<usize> = secrets
        .iter()
        .map(|s| s.expose_secret().as_ptr() as usize / page * page)
        .collect();
    pages.dedup();
    assert!(pages.len() >= 10);
    for &p in &pages {
        assert!(
            vm_flags(p).iter().any(|f| f == "lo"),
            "page {p:#x} not locked"
        );
    }
    // Drop every other secret: every page still holds one, so every page stays locked.
    let (keep, drop_now): (Vec<_>, Vec<_>) = secrets
        .into_iter()
        .enumerate()
        .partition(|(i, _)| i % 2 == 0);
    drop(drop_now);
    for &p in &pages {
        assert!(
            vm_flags(p).iter().any(|f| f == "lo"),
            "page {p:#x} unlocked while in use"
        );
    }
    drop(keep);
    // This thread keeps a couple of freed slots for reuse (their pages stay locked); hand them
    // back so only the pool's own spares remain.
    memory::release_thread_cache();
    let still_locked = pages
        .iter()
        .filter(|&&p| vm_flags(p).iter().any(|f| f == "lo"))
        .count();
    // The arena keeps at most two empty pages per size class locked, to avoid churn.
    assert!(still_locked <= 2, "{still_locked} empty pages still locked");
}

/// Runs `child` in a forked copy of this process and returns its raw wait status. `child` must
/// only read memory and make async-signal-safe calls (the test process has other threads).
fn in_forked_child(child: impl FnOnce() -> i32) -> i32 {
    // SAFETY: fork duplicates this process; the child below only reads memory, calls setrlimit
    // and _exit (async-signal-safe), so the other threads' locks cannot deadlock it.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: setrlimit reads the struct; a crash below then leaves no core file.
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };
        let code = child();
        // SAFETY: _exit ends the child without running the parent's atexit handlers.
        unsafe { libc::_exit(code) }
    }
    let mut status = 0;
    // SAFETY: waits for the child created above; `status` is a valid out-pointer.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    status
}

#[test]
fn a_forked_child_sees_secrets_as_zeros() {
    if !kernel_has_wipeonfork() {
        eprintln!("SKIPPED: kernel older than 4.14 has no MADV_WIPEONFORK");
        return;
    }
    let small = Secret::init_with(64, |b| {
        b.fill(0x5a);
        Ok(())
    })
    .unwrap();
    let large = Secret::init_with(9000, |b| {
        b.fill(0x5a);
        Ok(())
    })
    .unwrap();
    let spans = [
        (small.expose_secret().as_ptr(), 64),
        (large.expose_secret().as_ptr(), 9000),
    ];
    let status = in_forked_child(|| {
        let zeroed = spans.iter().all(|&(ptr, len)| {
            // SAFETY: the secrets' memory stays mapped in the child (wiped, not unmapped).
            (0..len).all(|i| unsafe { ptr.add(i).read_volatile() } == 0)
        });
        if zeroed { 0 } else { 1 }
    });
    assert!(libc::WIFEXITED(status), "child crashed: {status:#x}");
    assert_eq!(libc::WEXITSTATUS(status), 0, "the child saw secret bytes");
    // The parent's copy is untouched.
    assert!(small.expose_secret().iter().all(|&b| b == 0x5a));
    assert!(large.expose_secret().iter().all(|&b| b == 0x5a));
}

#[test]
fn running_off_either_end_of_a_large_secret_faults() {
    let s = random_secret(5000);
    let start = s.expose_secret().as_ptr();
    let data_len = 5000usize.next_multiple_of(page_size());
    for offset in [-1isize, data_len as isize] {
        let status = in_forked_child(|| {
            // SAFETY: deliberately reads the guard page just outside the secret's data pages;
            // this is expected to kill the child with SIGSEGV.
            let byte = unsafe { start.offset(offset).read_volatile() };
            i32::from(byte)
        });
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSEGV,
            "reading at offset {offset} did not fault: status {status:#x}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// No copy survives

#[test]
fn no_copy_of_a_value_survives_its_drop() {
    let s = random_secret(32);
    let value = Masked::of(s.expose_secret());
    let at = s.expose_secret().as_ptr() as u64;
    // Positive control: while the secret lives the scan finds it, exactly where it is.
    assert_eq!(find_copies(&value), vec![at]);
    drop(s);
    assert_eq!(find_copies(&value), Vec::<u64>::new());
}

#[test]
fn try_clone_and_string_conversion_leave_no_copy() {
    let s = random_secret(48);
    let value = Masked::of(s.expose_secret());
    let c = s.try_clone().unwrap();
    assert_eq!(find_copies(&value).len(), 2);
    drop(s);
    drop(c);
    assert!(find_copies(&value).is_empty());
}

#[test]
fn reading_into_a_secret_leaves_no_copy_behind() {
    // A reader that produces random bytes straight into the buffer it is given, 100 at a
    // time. 1000 bytes make `from_reader` grow its locked buffer twice (256 -> 512 -> 1001),
    // wiping each smaller one.
    struct RandomSource {
        left: usize,
    }
    impl Read for RandomSource {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.left).min(100);
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut buf[..n])
                .map_err(|_| std::io::Error::other("rng"))?;
            self.left -= n;
            Ok(n)
        }
    }
    let mut src = RandomSource { left: 1000 };
    let s = Secret::from_reader(&mut src, 1000).unwrap();
    assert_eq!(s.len(), 1000);
    let prefix = Masked::of(&s.expose_secret()[..32]);
    // Only the final buffer holds the bytes: the 256- and 512-byte ones were wiped.
    assert_eq!(
        find_copies(&prefix),
        vec![s.expose_secret().as_ptr() as u64]
    );
    drop(s);
    assert!(find_copies(&prefix).is_empty());
}

#[test]
fn json_field_copies_only_the_field_into_locked_memory() {
    const PREFIX: &[u8] = br#"{"username":"app","password":""#;
    const SUFFIX: &[u8] = br#"","host":"db.internal","port":5432}"#;
    let raw = random_secret(24);
    let doc = Secret::init_with(PREFIX.len() + 48 + SUFFIX.len(), |b| {
        b[..PREFIX.len()].copy_from_slice(PREFIX);
        hex_into(raw.expose_secret(), &mut b[PREFIX.len()..PREFIX.len() + 48]);
        b[PREFIX.len() + 48..].copy_from_slice(SUFFIX);
        Ok(())
    })
    .unwrap();
    drop(raw);
    let password = Masked::of(&doc.expose_secret()[PREFIX.len()..PREFIX.len() + 48]);
    assert_eq!(
        find_copies(&password).len(),
        1,
        "only the document holds it"
    );

    let field = doc.json_field("password").unwrap();
    assert!(password.matches(field.expose_secret().as_bytes()));
    assert!(field.is_locked());
    assert_eq!(doc.json_field("port").unwrap().expose_secret(), "5432");
    // Exactly two copies: the document and the field, both locked; nothing on the heap.
    assert_eq!(find_copies(&password).len(), 2);
    drop(doc);
    assert_eq!(
        find_copies(&password),
        vec![field.expose_secret().as_ptr() as u64]
    );
    drop(field);
    assert!(find_copies(&password).is_empty());
}

#[test]
fn debug_output_and_errors_never_contain_the_value() {
    const PREFIX: &[u8] = br#"{"password":""#;
    let raw = random_secret(16);
    // An unterminated document: the parse fails inside the value.
    let broken = Secret::init_with(PREFIX.len() + 32, |b| {
        b[..PREFIX.len()].copy_from_slice(PREFIX);
        hex_into(raw.expose_secret(), &mut b[PREFIX.len()..]);
        Ok(())
    })
    .unwrap();
    let value = Masked::of(&broken.expose_secret()[PREFIX.len()..]);
    // Not an object: a bare string holding the value.
    let bare = Secret::init_with(34, |b| {
        b[0] = b'"';
        hex_into(raw.expose_secret(), &mut b[1..33]);
        b[33] = b'"';
        Ok(())
    })
    .unwrap();
    drop(raw);
    let as_string = bare.try_clone().unwrap().into_string().unwrap();

    let mut shown = String::new();
    shown += &format!("{broken:?} {broken:#?} {as_string:?}");
    for (doc, kind) in [
        (&broken, ErrorKind::InvalidInput),
        (&bare, ErrorKind::InvalidInput),
    ] {
        let e = doc.json_field("password").unwrap_err();
        assert_eq!(e.kind(), kind);
        shown += &format!("{e} {e:?}");
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            shown += &s.to_string();
            source = s.source();
        }
    }
    assert!(shown.contains("[REDACTED]"));
    assert!(
        !value.found_in(shown.as_bytes()),
        "value leaked into: {shown}"
    );
    drop((broken, bare, as_string));
    // Parsing, failing and formatting left nothing behind (the scan also covers freed heap).
    assert!(find_copies(&value).is_empty());
}

#[test]
fn wiping_constructors_leave_only_the_locked_copy() {
    let raw = random_secret(40);
    let mut text = String::with_capacity(80);
    for b in raw.expose_secret() {
        // Hex straight into the string's buffer.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        text.push(HEX[(b >> 4) as usize] as char);
        text.push(HEX[(b & 15) as usize] as char);
    }
    drop(raw);
    let value = Masked::of(text.as_bytes());
    let s = SecretString::from_string(text).unwrap();
    assert_eq!(find_copies(&value), vec![s.expose_secret().as_ptr() as u64]);
    drop(s);
    assert!(find_copies(&value).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Under a small RLIMIT_MEMLOCK, as an unprivileged user

const CHILD_ENV: &str = "SEALBOX_MEMTEST_CHILD";
const MEMLOCK_LIMIT: usize = 256 * 1024;
const NOBODY: u32 = 65534;

/// The tests above, re-run unprivileged.
const GENERAL_TESTS: &[&str] = &[
    "live_secret_pages_are_locked_and_excluded_from_dumps",
    "a_forked_child_sees_secrets_as_zeros",
    "running_off_either_end_of_a_large_secret_faults",
    "pages_are_unlocked_when_their_last_secret_is_dropped",
    "no_copy_of_a_value_survives_its_drop",
    "try_clone_and_string_conversion_leave_no_copy",
    "reading_into_a_secret_leaves_no_copy_behind",
    "json_field_copies_only_the_field_into_locked_memory",
    "debug_output_and_errors_never_contain_the_value",
    "wiping_constructors_leave_only_the_locked_copy",
];

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Re-runs `tests` of this binary in a child with `CHILD_ENV=mode`; unprivileged (uid/gid
/// 65534, no groups, no capabilities) under an RLIMIT_MEMLOCK of `MEMLOCK_LIMIT` when asked.
fn run_child(mode: &str, tests: &[&str], unprivileged: bool) -> Output {
    let exe = std::env::current_exe().unwrap();
    // The build directory may not be reachable by uid 65534: run a world-readable copy.
    let dir = tempfile::Builder::new()
        .prefix("sealbox-memtest")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.path().join("memory_protection");
    std::fs::copy(&exe, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut cmd = if unprivileged {
        let mut c = Command::new("prlimit");
        c.arg(format!("--memlock={MEMLOCK_LIMIT}:{MEMLOCK_LIMIT}"))
            .arg("setpriv")
            .arg(format!("--reuid={NOBODY}"))
            .arg(format!("--regid={NOBODY}"))
            .arg("--clear-groups")
            .arg(&copy);
        c
    } else {
        Command::new(&copy)
    };
    cmd.args(["--exact", "--test-threads=1", "--nocapture"])
        .args(tests)
        .env(CHILD_ENV, mode)
        .current_dir(dir.path());
    let out = cmd
        .output()
        .expect("could not start the child (the unprivileged run needs prlimit and setpriv from util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child {mode} failed: {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    let expected = format!("test result: ok. {} passed", tests.len());
    assert!(
        stdout.contains(&expected),
        "child {mode} ran other tests:\n{stdout}"
    );
    out
}

#[test]
fn runs_unprivileged_under_a_small_memlock_limit() {
    match std::env::var(CHILD_ENV).as_deref() {
        Ok("strict") => return strict_fails_once_the_limit_is_reached(),
        Ok("best_effort") => return best_effort_degrades_once_the_limit_is_reached(),
        Ok(other) => panic!("unknown child mode {other}"),
        Err(_) => {}
    }
    if !is_root() {
        eprintln!("SKIPPED: switching to uid {NOBODY} with setpriv needs root; CI runs as root");
        return;
    }
    let me = "runs_unprivileged_under_a_small_memlock_limit";
    run_child("general", GENERAL_TESTS, true);
    run_child("strict", &[me], true);
    run_child("best_effort", &[me], true);
}

fn assert_unprivileged() {
    assert!(!is_root(), "the child must not run as root");
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the initialised struct passed by pointer.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    assert_eq!(rc, 0);
    assert_eq!(lim.rlim_cur as usize, MEMLOCK_LIMIT);
}

fn strict_fails_once_the_limit_is_reached() {
    assert_unprivileged();
    let failures_before = memory::stats().lock_failures;
    // A single secret larger than the whole limit.
    let e =
        Secret::init_with_policy(4 * MEMLOCK_LIMIT, MemoryPolicy::Strict, |_| Ok(())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MemoryLock);
    assert!(e.message().contains("RLIMIT_MEMLOCK"));

    // Small secrets until the limit is exhausted.
    let mut held = Vec::new();
    let err = loop {
        match Secret::init_with_policy(1024, MemoryPolicy::Strict, |b| {
            b.fill(7);
            Ok(())
        }) {
            Ok(s) => {
                assert!(s.is_locked());
                held.push(s);
                assert!(
                    held.len() * 1024 <= MEMLOCK_LIMIT,
                    "locked more than the limit allows"
                );
            }
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), ErrorKind::MemoryLock);
    assert!(
        held.len() * 1024 >= MEMLOCK_LIMIT / 4,
        "failed too early: {}",
        held.len()
    );
    // The default policy is honoured by constructors that take none.
    memory::set_default_policy(MemoryPolicy::Strict);
    assert_eq!(
        Secret::random(1024).unwrap_err().kind(),
        ErrorKind::MemoryLock
    );
    assert!(memory::stats().lock_failures >= failures_before + 3);

    // Dropping secrets unlocks their pages and gives the budget back.
    drop(held);
    let again = Secret::random(1024).unwrap();
    assert!(again.is_locked());
}

/// Counts `sealbox_memory_lock_failures_total`.
struct CountingRecorder(Arc<AtomicU64>);

impl metrics::Recorder for CountingRecorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        if key.name() == LOCK_FAILURES_METRIC {
            metrics::Counter::from_arc(self.0.clone())
        } else {
            metrics::Counter::noop()
        }
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

/// Counts warnings (and fails on any event that mentions nothing but a level: it keeps no text).
struct WarningCounter(Arc<AtomicUsize>);

impl tracing::Subscriber for WarningCounter {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn best_effort_degrades_once_the_limit_is_reached() {
    assert_unprivileged();
    let failures = Arc::new(AtomicU64::new(0));
    let warnings = Arc::new(AtomicUsize::new(0));
    metrics::set_global_recorder(CountingRecorder(failures.clone())).unwrap();
    tracing::subscriber::set_global_default(WarningCounter(warnings.clone())).unwrap();

    // Four times the limit in small secrets, each with its own content.
    let count = 4 * MEMLOCK_LIMIT / 1024;
    let held: Vec<Secret> = (0..count)
        .map(|i| {
            Secret::init_with_policy(1024, MemoryPolicy::BestEffort, |b| {
                b.fill(i as u8);
                Ok(())
            })
            .unwrap()
        })
        .collect();
    let unlocked = held.iter().filter(|s| !s.is_locked()).count();
    assert!(unlocked >= count / 2, "only {unlocked} of {count} unlocked");
    assert!(
        held.iter().any(|s| s.is_locked()),
        "nothing was locked at all"
    );
    for (i, s) in held.iter().enumerate() {
        assert!(
            s.expose_secret().iter().all(|&b| b == i as u8),
            "secret {i} corrupted"
        );
    }
    // A large secret degrades the same way.
    let large = Secret::init_with_policy(4 * MEMLOCK_LIMIT, MemoryPolicy::BestEffort, |b| {
        b.fill(0x3c);
        Ok(())
    })
    .unwrap();
    assert!(!large.is_locked());
    assert!(large.expose_secret().iter().all(|&b| b == 0x3c));
    // The default policy is BestEffort.
    let default = Secret::random(1024).unwrap();
    assert!(!default.is_locked());

    // Reported: a counter per failure, one warning per process, the same count in stats().
    let counted = failures.load(Ordering::Relaxed);
    assert!(
        counted > unlocked as u64,
        "counter {counted} < {unlocked} failures"
    );
    assert_eq!(counted, memory::stats().lock_failures);
    assert_eq!(warnings.load(Ordering::Relaxed), 1, "warn exactly once");

    // Still dump-excluded even when not locked.
    let flags = vm_flags(large.expose_secret().as_ptr() as usize);
    assert!(
        flags.iter().any(|f| f == "dd") && !flags.iter().any(|f| f == "lo"),
        "{flags:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// harden_process

#[test]
fn harden_process_disables_core_dumps_and_ptrace_by_peers() {
    if std::env::var(CHILD_ENV).as_deref() == Ok("harden") {
        sealbox::harden_process().unwrap();
        let mut lim = libc::rlimit {
            rlim_cur: 1,
            rlim_max: 1,
        };
        // SAFETY: getrlimit writes into the initialised struct passed by pointer.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut lim) }, 0);
        assert_eq!((lim.rlim_cur, lim.rlim_max), (0, 0));
        // SAFETY: PR_GET_DUMPABLE takes no further arguments and only reads a flag.
        assert_eq!(unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) }, 0);
        return;
    }
    // Hardening is irreversible, so it runs in a child process.
    run_child(
        "harden",
        &["harden_process_disables_core_dumps_and_ptrace_by_peers"],
        false,
    );
}
