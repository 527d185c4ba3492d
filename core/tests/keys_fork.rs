//! Envelope nonces stay unique across `fork`.
//!
//! The threat: a server seals once (warming any userspace random generator), then forks
//! workers; two workers that each create a secret wrap their DEKs under the same KEK. If
//! nonces came from a generator whose state the children inherit, both would use the same
//! nonce under one key, which leaks AES-GCM's authentication key. Here two real forked
//! children each load the same key (as workers unwrap the same KEK: key memory is wiped in a
//! forked child, so each child loads its own copy), seal, and report the nonce through a pipe.

use sealbox::keys::{DataKey, Envelope, KeyId, KeyVersion};

const KEY_ID: &str = "ns/kek";
const KEY_BYTES: [u8; 32] = [0x42; 32];

/// The KEK every process loads: the same bytes each time, as unwrapped from one vault.
fn load_kek() -> sealbox::Result<DataKey> {
    let material = sealbox::Secret::init_with(32, |b| {
        b.copy_from_slice(&KEY_BYTES);
        Ok(())
    })?;
    DataKey::from_secret(KeyId::new(KEY_ID)?, KeyVersion::FIRST, material)
}

/// Offset of the 12-byte nonce in an envelope whose key id is `id_len` bytes long.
fn nonce_of(envelope: &[u8], id_len: usize) -> [u8; 12] {
    let at = 7 + id_len + 4;
    envelope[at..at + 12].try_into().unwrap()
}

/// Forks a child that loads the KEK, seals `b"secret"` under it and writes the envelope's
/// nonce to the returned pipe; the child exits with `_exit`, running no destructors or atexit
/// handlers of the test harness it was copied from.
fn fork_sealer() -> (libc::pid_t, libc::c_int) {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe(2) to fill.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe failed");
    let [read_end, write_end] = fds;
    // SAFETY: the child only loads a key, seals, writes to a pipe and calls `_exit`. The
    // harness's other thread waits on a channel and holds no lock the child needs.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let sealed = load_kek().and_then(|key| Envelope::seal(&key, b"ctx", b"secret"));
        let code = match sealed {
            Ok(envelope) => {
                let nonce = nonce_of(&envelope, KEY_ID.len());
                // SAFETY: `nonce` is 12 readable bytes; `write_end` is this child's pipe end.
                let n = unsafe { libc::write(write_end, nonce.as_ptr().cast(), nonce.len()) };
                if n == 12 { 0 } else { 2 }
            }
            Err(_) => 1,
        };
        // SAFETY: ends the child immediately, as a forked child of a threaded process must.
        unsafe { libc::_exit(code) };
    }
    // SAFETY: the parent's copy of the write end is no longer needed.
    unsafe { libc::close(write_end) };
    (pid, read_end)
}

fn collect(pid: libc::pid_t, read_end: libc::c_int) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    let mut got = 0;
    while got < nonce.len() {
        // SAFETY: reads into the unfilled tail of `nonce` from our pipe end.
        let n = unsafe {
            libc::read(
                read_end,
                nonce[got..].as_mut_ptr().cast(),
                nonce.len() - got,
            )
        };
        assert!(n > 0, "child sent {got} of 12 nonce bytes");
        got += n as usize;
    }
    let mut status = 0;
    // SAFETY: waits for our own child; closes our own descriptor.
    unsafe {
        assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
        libc::close(read_end);
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed (status {status})"
    );
    nonce
}

#[test]
fn forked_children_sealing_under_one_key_draw_different_nonces() {
    // Warm up: a lazily created thread-local generator now exists in the parent and would be
    // copied into both children.
    let key = load_kek().unwrap();
    let warm = Envelope::seal(&key, b"ctx", b"warm").unwrap();
    let parent_nonce = nonce_of(&warm, KEY_ID.len());

    let (a_pid, a_pipe) = fork_sealer();
    let a = collect(a_pid, a_pipe);
    let (b_pid, b_pipe) = fork_sealer();
    let b = collect(b_pid, b_pipe);

    assert_ne!(
        a, b,
        "two forked children sealed under one key with the same nonce"
    );
    assert_ne!(a, parent_nonce);
    assert_ne!(b, parent_nonce);
}
