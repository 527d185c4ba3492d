//! Fork: a process forked from one holding sealbox objects (a pre-fork server's workers,
//! Python `multiprocessing`, Celery prefork) never gets zeros, a wiped key or a hang from what
//! it inherited, and gets a working client from `reopen`.
//!
//! The threat: secret memory is `MADV_WIPEONFORK`, so in the child every cached value and key
//! reads as zeros and the parent's threads are gone. Before this was handled, a cache hit in
//! the child returned an all-zero value with success, an inherited key handed ring a zeroed
//! key object, and the audit queue blocked once full. Each test forks a real child that runs
//! real calls and reports back through a pipe; the parent waits with a deadline, so a hang
//! fails the test instead of stalling it.

use std::io::Read;
use std::os::fd::FromRawFd;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sealbox::audit::{AuditEvent, verify_file};
use sealbox::keys::{DataKey, Envelope, KeyId, KeyVersion, LocalKeyFile};
use sealbox::store::local::LocalVault;
use sealbox::store::memory::MemoryStore;
use sealbox::store::{SecretName, SecretStore, VersionSelector};
use sealbox::{BlockingSealbox, ErrorKind, ExposeSecret, Principal, Sealbox, Secret};

const NAME: &str = "predis/prod/api/auth-token";
const VALUE: &str = "hmac-signing-key-0123456789abcdef";
/// How long a child may take before it counts as hung.
const CHILD_DEADLINE: Duration = Duration::from_secs(10);

/// Forking tests run one at a time: a fork while another test of this binary is inside
/// sealbox could copy a lock it holds into the child.
fn serial() -> MutexGuard<'static, ()> {
    static FORKS: Mutex<()> = Mutex::new(());
    FORKS.lock().unwrap_or_else(|p| p.into_inner())
}

fn secret(v: &str) -> Secret {
    Secret::from_mut_slice(&mut v.as_bytes().to_vec()).unwrap()
}

/// Runs `child` in a forked child and returns what it reported: `Ok` or the first failed
/// expectation. The child ends with `_exit` (no destructors of the harness it was copied
/// from); one that does not finish within [`CHILD_DEADLINE`] is killed and reported as hung.
fn in_child(child: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe(2) to fill.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe failed");
    let [read_end, write_end] = fds;
    // SAFETY: the child runs sealbox calls and `_exit`s. The other tests of this binary are
    // held back by `serial`, so no thread of ours is inside sealbox while it forks.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child))
            .unwrap_or_else(|_| Err("the child panicked".to_owned()));
        let (code, message) = match outcome {
            Ok(()) => (0, String::new()),
            Err(m) => (1, m),
        };
        // SAFETY: writes our own bytes to our pipe end, then ends the child at once, as a
        // forked child of a threaded process must.
        unsafe {
            libc::write(write_end, message.as_ptr().cast(), message.len());
            libc::_exit(code);
        }
    }
    // SAFETY: the parent's copy of the write end is not needed; closing it lets the read
    // below see the end of the child's message.
    unsafe { libc::close(write_end) };
    let started = Instant::now();
    let mut status = 0;
    loop {
        // SAFETY: polls our own child.
        let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if done == pid {
            break;
        }
        if started.elapsed() > CHILD_DEADLINE {
            // SAFETY: kills and reaps our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
                libc::close(read_end);
            }
            return Err(format!("the child hung for {CHILD_DEADLINE:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: `read_end` is our open pipe end, owned from here on by the `File`.
    let mut pipe = unsafe { std::fs::File::from_raw_fd(read_end) };
    let mut message = String::new();
    let _ = pipe.read_to_string(&mut message);
    if !libc::WIFEXITED(status) {
        return Err(format!("the child died (wait status {status})"));
    }
    match libc::WEXITSTATUS(status) {
        0 => Ok(()),
        _ => Err(message),
    }
}

/// `Ok` when `result` is a `Forked` error whose message says what to do.
fn expect_forked<T>(call: &str, result: sealbox::Result<T>) -> Result<(), String> {
    match result {
        Err(e) if e.kind() == ErrorKind::Forked && e.message().contains("reopen") => Ok(()),
        Err(e) => Err(format!("{call}: expected Forked, got {e}")),
        Ok(_) => Err(format!("{call}: succeeded in a forked child")),
    }
}

/// Holds the only reference to `value`, so that the child, taking it out, drops the last one
/// (and runs every teardown it could), while the parent's copy stays for the parent.
fn sole<T>(value: T) -> Mutex<Option<T>> {
    Mutex::new(Some(value))
}

fn take<T>(slot: &Mutex<Option<T>>) -> T {
    slot.lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .expect("taken once per process")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_client_warmed_before_fork_answers_forked_in_the_child_never_zeros() {
    let _serial = serial();
    let client = Sealbox::builder()
        .store(Arc::new(MemoryStore::new()))
        .build()
        .unwrap()
        .blocking()
        .unwrap();
    client.put(NAME, &secret(VALUE)).unwrap();
    let held = client.get(NAME).unwrap();
    let hit = client.get_cached(NAME.as_bytes()).expect("cached").unwrap();
    assert_eq!(hit.expose_secret(), VALUE.as_bytes());
    let slot = sole(client);

    in_child(|| {
        let client = take(&slot);
        // The child must not inherit secrets: the value's memory is wiped...
        if held.secret().expose_secret().iter().any(|&b| b != 0) {
            return Err("the child inherited the secret's bytes".into());
        }
        // ...and nothing hands those zeros out as a value.
        match client.get_cached(NAME.as_bytes()) {
            Some(r) => expect_forked("get_cached", r)?,
            None => return Err("get_cached: no answer for a cached name".into()),
        }
        expect_forked("get", client.get(NAME))?;
        expect_forked("get (not cached)", client.get("predis/prod/other"))?;
        expect_forked("get_field", client.get_field(NAME, "f"))?;
        expect_forked("put", client.put(NAME, &secret("child")))?;
        expect_forked("describe", client.describe(NAME))?;
        expect_forked("list", client.list("predis/"))?;
        expect_forked("refresh_now", client.refresh_now(NAME))?;
        expect_forked("flush_audit", client.flush_audit())?;
        expect_forked("a handle read before fork", held.check_process())?;
        expect_forked("a field of a handle read before fork", held.field("f"))?;
        // Dropping what it inherited neither hangs (no runtime workers, no maintenance
        // thread to join) nor crashes.
        drop(hit);
        drop(client);
        Ok(())
    })
    .unwrap();

    // The parent is untouched.
    let client = take(&slot);
    assert_eq!(client.get(NAME).unwrap().expose_secret(), VALUE.as_bytes());
    assert!(held.check_process().is_ok());
}

/// A local vault with a key file, and a client built over it, warmed.
async fn local_client(dir: &Path) -> (Arc<LocalVault>, Sealbox) {
    let key =
        LocalKeyFile::open_or_create(KeyId::new("local").unwrap(), dir.join("master.key")).unwrap();
    let vault = Arc::new(
        LocalVault::open_or_create(dir.join("vault"), Arc::new(key))
            .await
            .unwrap(),
    );
    let client = Sealbox::builder()
        .store(vault.clone())
        .principal(Principal::new("svc:worker"))
        .build()
        .unwrap();
    client.put(NAME, &secret(VALUE)).await.unwrap();
    client.get(NAME).await.unwrap();
    (vault, client)
}

#[test]
fn a_client_reopened_in_the_child_reads_and_writes_the_vault() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (vault, client) = rt.block_on(local_client(dir.path()));
    let client = client.blocking().unwrap();
    let name = SecretName::new(NAME).unwrap();
    let namespace = vault.namespace_of(&name).unwrap();
    let slot = sole((vault, client));

    in_child(|| {
        let (vault, client) = take(&slot);
        let rt = runtime();
        // What the child inherited refuses, down to the keys.
        expect_forked("inherited client", client.get(NAME))?;
        expect_forked(
            "inherited vault",
            rt.block_on(vault.get(&name, &VersionSelector::Current)),
        )?;
        expect_forked(
            "inherited keyring",
            rt.block_on(vault.keyring().current_kek(&namespace)),
        )?;
        let master = vault.keyring().provider();
        expect_forked(
            "inherited master key file",
            rt.block_on(master.wrap(b"ctx", &secret("a key"))),
        )?;
        expect_forked(
            "inherited master key file",
            rt.block_on(master.current_version()),
        )?;
        // Reopened: a client of its own, same principal, reading the parent's value and
        // writing one the parent then reads.
        let fresh = client.reopen().map_err(|e| format!("reopen: {e}"))?;
        if fresh.client().principal().as_str() != "svc:worker" {
            return Err("reopen changed the principal".into());
        }
        let got = fresh
            .get(NAME)
            .map_err(|e| format!("get after reopen: {e}"))?;
        if got.expose_secret() != VALUE.as_bytes() {
            return Err("get after reopen read another value".into());
        }
        let again = fresh.get_cached(NAME.as_bytes()).ok_or("not cached")?;
        if again.map_err(|e| e.to_string())?.expose_secret() != VALUE.as_bytes() {
            return Err("a cache hit after reopen read another value".into());
        }
        fresh
            .put("predis/prod/from-child", &secret("written by the child"))
            .map_err(|e| format!("put after reopen: {e}"))?;
        drop(fresh);
        drop(client);
        drop(vault);
        Ok(())
    })
    .unwrap();

    let (_vault, client) = take(&slot);
    let written = client.get("predis/prod/from-child").unwrap();
    assert_eq!(written.expose_secret(), b"written by the child");
    assert_eq!(client.get(NAME).unwrap().expose_secret(), VALUE.as_bytes());
}

#[test]
fn reopen_in_the_parent_gives_another_client_and_names_what_cannot_be_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (_vault, client) = rt.block_on(local_client(dir.path()));
    let other = rt.block_on(client.reopen()).unwrap();
    let got = rt.block_on(other.get(NAME)).unwrap();
    assert_eq!(got.expose_secret(), VALUE.as_bytes());

    // A file store is made again from its paths.
    let file = dir.path().join("token");
    std::fs::write(&file, "from-a-file").unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let files = Sealbox::builder()
        .store(Arc::new(
            sealbox::store::file::FileStore::file("app/token", &file).unwrap(),
        ))
        .build()
        .unwrap();
    let again = rt.block_on(files.reopen()).unwrap();
    let got = rt.block_on(again.get("app/token")).unwrap();
    assert_eq!(got.expose_secret(), b"from-a-file");

    let memory = Sealbox::builder()
        .store(Arc::new(MemoryStore::new()))
        .build()
        .unwrap();
    let err = rt.block_on(memory.reopen()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.message().contains("memory"), "{err}");
    assert!(err.message().contains("build the client again"), "{err}");
}

#[test]
fn a_config_client_with_an_audit_log_reopens_in_the_child_and_the_log_verifies() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let config = dir.path().join("sealbox.yaml");
    std::fs::write(
        &config,
        format!(
            "secrets:\n  provider: local\n  config: {{path: {}, key_file: {}}}\n\
             principal: svc:web\naudit: {{path: {}}}\n",
            dir.path().join("vault").display(),
            dir.path().join("master.key").display(),
            log.display()
        ),
    )
    .unwrap();
    let client = BlockingSealbox::from_config(&config).unwrap();
    client.put(NAME, &secret(VALUE)).unwrap();
    client.get(NAME).unwrap();
    client.flush_audit().unwrap();
    let audit = client.client().audit_log().unwrap().clone();
    let slot = sole((audit, client));

    in_child(|| {
        let (audit, client) = take(&slot);
        // The inherited log has no writer thread here: it refuses rather than queue events
        // nobody writes (a full queue would block the child).
        let event = AuditEvent::access(
            sealbox::audit::Action::Read,
            Principal::new("svc:web"),
            sealbox::audit::Resource::named(NAME),
        );
        expect_forked("inherited audit log", audit.record(event))?;
        expect_forked("inherited audit flush", audit.flush())?;
        expect_forked("inherited client", client.get(NAME))?;
        let fresh = client.reopen().map_err(|e| format!("reopen: {e}"))?;
        for _ in 0..3 {
            let got = fresh
                .get(NAME)
                .map_err(|e| format!("get after reopen: {e}"))?;
            if got.expose_secret() != VALUE.as_bytes() {
                return Err("get after reopen read another value".into());
            }
        }
        fresh.flush_audit().map_err(|e| format!("flush: {e}"))?;
        drop(fresh);
        drop(audit);
        drop(client);
        Ok(())
    })
    .unwrap();

    let (_audit, client) = take(&slot);
    client.get(NAME).unwrap();
    client.flush_audit().unwrap();
    // The chain key is the vault's (wrapped by its master key), the same in the child.
    let key = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(
            sealbox::config::Config::from_path(&config)
                .unwrap()
                .store_audit_key(&sealbox::config::ProviderRegistry::global_snapshot()),
        )
        .unwrap()
        .unwrap();
    let report = verify_file(&log, &key).unwrap();
    assert!(report.is_ok(), "{report:?}");
    let reads = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"secret.read\""))
        .count();
    // The parent's two reads and the child's three.
    assert_eq!(reads, 5, "{}", std::fs::read_to_string(&log).unwrap());
}

#[test]
fn a_key_loaded_before_fork_refuses_to_seal_or_open_in_the_child() {
    let _serial = serial();
    let key = DataKey::generate(KeyId::new("ns/kek").unwrap(), KeyVersion::FIRST).unwrap();
    let sealed = Envelope::seal(&key, b"ctx", b"value").unwrap();
    in_child(|| {
        // ring's key object lies in wiped memory here; using it would be undefined behaviour.
        expect_forked("seal", Envelope::seal(&key, b"ctx", b"value"))?;
        expect_forked("open", Envelope::open(&key, b"ctx", &sealed))?;
        Ok(())
    })
    .unwrap();
    assert_eq!(
        Envelope::open(&key, b"ctx", &sealed)
            .unwrap()
            .expose_secret(),
        b"value"
    );
}

/// A fork while another thread is allocating and freeing secrets: the child must not inherit
/// a secret-memory lock that thread held (it does not exist in the child to release it), or
/// the child's first secret of that size would wait forever.
#[test]
fn a_fork_while_another_thread_allocates_secrets_leaves_the_child_able_to_allocate() {
    let _serial = serial();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hammer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let sizes = [32usize, 64, 128, 256, 512, 1024, 2048, 4096];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // More than a thread caches, so frees and allocations reach the shared pools.
                let held: Vec<Secret> = (0..64)
                    .map(|i| Secret::random(sizes[i % sizes.len()]).unwrap())
                    .collect();
                drop(held);
            }
        })
    };
    for round in 0..200 {
        let outcome = in_child(|| {
            for size in [32usize, 64, 128, 256, 512, 1024, 2048, 4096] {
                let held: Vec<Secret> = (0..64).map(|_| Secret::random(size).unwrap()).collect();
                drop(held);
            }
            Ok(())
        });
        if let Err(e) = outcome {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            hammer.join().unwrap();
            panic!("fork {round}: {e}");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    hammer.join().unwrap();
}

/// Bytes of this process's memory locked in RAM (`VmLck` in `/proc/self/status`).
fn locked_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// `mlock` is not inherited by a child: a secret the child allocates must lock its page
/// again, not trust the parent's record that the page is locked (and report itself locked
/// while it could be swapped).
#[test]
fn a_secret_made_in_a_forked_child_is_locked_in_the_child() {
    let _serial = serial();
    let parent_secret = Secret::random(48).unwrap();
    assert!(parent_secret.is_locked(), "this machine cannot lock memory");
    assert!(locked_kib() > 0);
    in_child(|| {
        if locked_kib() != 0 {
            return Err(format!("the child starts with {} kB locked", locked_kib()));
        }
        let mine = Secret::random(48).map_err(|e| e.to_string())?;
        if !mine.is_locked() {
            return Err("the child's secret reports itself unlocked".into());
        }
        if locked_kib() == 0 {
            return Err("the child's secret claims a lock, but nothing is locked".into());
        }
        Ok(())
    })
    .unwrap();
}
