//! The C ABI called from Rust, so `cargo test` covers its contract without a C compiler:
//! outputs only on success, NULL and invalid UTF-8 as codes, secrets outliving the client.
//! The full suite (every pointer parameter, threads, memory scan, sanitizers, valgrind) is the
//! C and C++ one run by `scripts/test-c.sh`.

use std::ffi::{CStr, c_char};
use std::ptr::{null, null_mut};

use sealbox_c::*;

fn open() -> *mut sb_client {
    let mut c = null_mut();
    // SAFETY: the out-pointer is a local.
    assert_eq!(unsafe { sb_client_open_memory(&mut c) }, sb_result::Ok);
    c
}

fn last_error() -> String {
    let mut buf = [0 as c_char; 256];
    let mut n = 0usize;
    // SAFETY: buf has 256 bytes; n is a local.
    let r = unsafe { sb_last_error_message(buf.as_mut_ptr(), buf.len(), &mut n) };
    assert_eq!(r, sb_result::Ok);
    // SAFETY: sb_last_error_message NUL-terminated the buffer.
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// A new vault directory under `dir` and a key file path beside it, as C strings.
fn vault_paths(dir: &std::path::Path) -> (std::ffi::CString, std::ffi::CString) {
    std::fs::create_dir(dir.join("vault")).expect("mkdir");
    let cpath =
        |p: &str| std::ffi::CString::new(dir.join(p).to_string_lossy().as_bytes()).expect("path");
    (cpath("vault"), cpath("master.key"))
}

fn data(s: *const sb_secret) -> Vec<u8> {
    let mut p = null();
    let mut len = 0usize;
    // SAFETY: s is live; outputs are locals; the view is copied before s can be freed.
    unsafe {
        assert_eq!(sb_secret_data(s, &mut p, &mut len), sb_result::Ok);
        std::slice::from_raw_parts(p, len).to_vec()
    }
}

#[test]
fn put_then_get_returns_the_bytes_and_a_version() {
    let c = open();
    let name = c"app/db";
    // SAFETY: c is live, the name is NUL-terminated, the data is 5 readable bytes, outputs
    // are locals, and every handle is freed once.
    unsafe {
        assert_eq!(
            sb_put(c, name.as_ptr(), b"s3cr3".as_ptr(), 5),
            sb_result::Ok
        );
        let mut s = null_mut();
        assert_eq!(sb_get(c, name.as_ptr(), &mut s), sb_result::Ok);
        assert_eq!(data(s), b"s3cr3");
        let mut v = null();
        let mut vlen = 0usize;
        assert_eq!(sb_secret_version(s, &mut v, &mut vlen), sb_result::Ok);
        assert!(vlen > 0);
        sb_client_free(c);
        // The secret outlives its client.
        assert_eq!(data(s), b"s3cr3");
        sb_secret_free(s);
    }
}

#[test]
fn a_failed_call_writes_no_output_and_has_no_side_effect() {
    let c = open();
    let sentinel = 0x5ea1 as *mut sb_secret;
    let mut s = sentinel;
    // SAFETY: c is live; NULL and invalid UTF-8 are what is being tested.
    unsafe {
        assert_eq!(sb_get(c, null(), &mut s), sb_result::NullParameter);
        assert_eq!(
            sb_get(c, c"a/\xff".as_ptr(), &mut s),
            sb_result::InvalidUtf8
        );
        assert_eq!(
            sb_get(c, c"a/missing".as_ptr(), &mut s),
            sb_result::NotFound
        );
        assert_eq!(s, sentinel);
        assert!(last_error().contains("a/missing"));
        // A put refused for a NULL buffer writes nothing to the store.
        assert_eq!(
            sb_put(c, c"a/b".as_ptr(), null(), 0),
            sb_result::NullParameter
        );
        assert_eq!(sb_get(c, c"a/b".as_ptr(), &mut s), sb_result::NotFound);
        sb_client_free(c);
    }
}

#[test]
fn get_n_takes_a_length_and_shares_the_cached_value() {
    let c = open();
    // The name sits inside a longer buffer with no NUL after it: only `name_len` bytes count.
    let buf = b"app/db/password-and-more";
    let name_len = "app/db/password".len();
    // SAFETY: c is live; buf holds at least name_len bytes; outputs are locals; every
    // secret is freed once.
    unsafe {
        assert_eq!(
            sb_put(c, c"app/db/password".as_ptr(), b"pw".as_ptr(), 2),
            sb_result::Ok
        );
        let (mut a, mut b) = (null_mut(), null_mut());
        assert_eq!(
            sb_get_n(c, buf.as_ptr().cast(), name_len, &mut a),
            sb_result::Ok
        );
        assert_eq!(
            sb_get(c, c"app/db/password".as_ptr(), &mut b),
            sb_result::Ok
        );
        assert_eq!(data(a), b"pw");
        // Two hits hand out the one cached value, not copies of it.
        let (mut pa, mut pb) = (null(), null());
        let mut len = 0usize;
        assert_eq!(sb_secret_data(a, &mut pa, &mut len), sb_result::Ok);
        assert_eq!(sb_secret_data(b, &mut pb, &mut len), sb_result::Ok);
        assert_eq!(pa, pb);
        sb_secret_free(a);
        sb_secret_free(b);

        let sentinel = 0x5ea1 as *mut sb_secret;
        let mut s = sentinel;
        assert_eq!(sb_get_n(c, null(), 0, &mut s), sb_result::NullParameter);
        assert_eq!(
            sb_get_n(c, b"a/\xff".as_ptr().cast(), 3, &mut s),
            sb_result::InvalidUtf8
        );
        assert_eq!(
            sb_get_n(c, buf.as_ptr().cast(), name_len, null_mut()),
            sb_result::NullParameter
        );
        assert_eq!(
            sb_get_n(null(), buf.as_ptr().cast(), name_len, &mut s),
            sb_result::NullParameter
        );
        assert_eq!(s, sentinel);
        sb_client_free(c);
    }
}

#[test]
fn a_field_secret_reads_and_frees_like_any_other() {
    let c = open();
    let json = br#"{"username":"app","password":"hunter2"}"#;
    // SAFETY: c is live; names are NUL-terminated; outputs are locals; freed once.
    unsafe {
        assert_eq!(
            sb_put(c, c"app/db".as_ptr(), json.as_ptr(), json.len()),
            sb_result::Ok
        );
        let mut f = null_mut();
        assert_eq!(
            sb_get_field(c, c"app/db".as_ptr(), c"password".as_ptr(), &mut f),
            sb_result::Ok
        );
        assert_eq!(data(f), b"hunter2");
        let mut v = null();
        let mut vlen = 0usize;
        assert_eq!(sb_secret_version(f, &mut v, &mut vlen), sb_result::Ok);
        assert!(vlen > 0);
        sb_client_free(c);
        assert_eq!(data(f), b"hunter2");
        sb_secret_free(f);
    }
}

#[test]
fn list_iterates_then_reports_done() {
    let c = open();
    // SAFETY: c is live; names are NUL-terminated; outputs are locals; handles freed once.
    unsafe {
        for n in [c"p/a", c"p/b", c"q/c"] {
            assert_eq!(sb_put(c, n.as_ptr(), b"v".as_ptr(), 1), sb_result::Ok);
        }
        let mut it = null_mut();
        assert_eq!(sb_list(c, c"p/".as_ptr(), &mut it), sb_result::Ok);
        let mut names = Vec::new();
        let (mut p, mut len) = (null(), 0usize);
        while sb_list_next(it, &mut p, &mut len) == sb_result::Ok {
            names.push(
                String::from_utf8_lossy(std::slice::from_raw_parts(p.cast::<u8>(), len))
                    .into_owned(),
            );
        }
        assert_eq!(sb_list_next(it, &mut p, &mut len), sb_result::Done);
        names.sort();
        assert_eq!(names, ["p/a", "p/b"]);
        sb_list_free(it);
        sb_client_free(c);
    }
}

#[test]
fn the_local_vault_round_trips_across_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (vault, key) = vault_paths(dir.path());
    // SAFETY: paths and names are NUL-terminated; outputs are locals; handles freed once.
    unsafe {
        let mut c = null_mut();
        assert_eq!(
            sb_client_open_local(vault.as_ptr(), key.as_ptr(), &mut c),
            sb_result::Ok,
            "{}",
            last_error()
        );
        assert_eq!(
            sb_put(
                c,
                c"predis/prod/api/auth-token".as_ptr(),
                b"tok".as_ptr(),
                3
            ),
            sb_result::Ok
        );
        sb_client_free(c);
        let mut c = null_mut();
        assert_eq!(
            sb_client_open_local(vault.as_ptr(), key.as_ptr(), &mut c),
            sb_result::Ok
        );
        let mut s = null_mut();
        assert_eq!(
            sb_get(c, c"predis/prod/api/auth-token".as_ptr(), &mut s),
            sb_result::Ok
        );
        assert_eq!(data(s), b"tok");
        sb_secret_free(s);
        sb_client_free(c);
    }
}

#[test]
fn a_staged_put_leaves_current_and_refresh_now_picks_up_another_clients_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (vault, key) = vault_paths(dir.path());
    let name = c"app/rotating";
    let read = |c: *mut sb_client| {
        let mut s = null_mut();
        // SAFETY: c is live, the name is NUL-terminated, the output is a local; freed once.
        unsafe {
            assert_eq!(sb_get(c, name.as_ptr(), &mut s), sb_result::Ok);
            let bytes = data(s);
            sb_secret_free(s);
            bytes
        }
    };
    // SAFETY: paths and names are NUL-terminated; data pointers cover their lengths; outputs
    // are locals; every handle is freed once.
    unsafe {
        let (mut reader, mut writer) = (null_mut(), null_mut());
        assert_eq!(
            sb_client_open_local(vault.as_ptr(), key.as_ptr(), &mut writer),
            sb_result::Ok,
            "{}",
            last_error()
        );
        assert_eq!(
            sb_client_open_local(vault.as_ptr(), key.as_ptr(), &mut reader),
            sb_result::Ok
        );
        assert_eq!(
            sb_put(writer, name.as_ptr(), b"one".as_ptr(), 3),
            sb_result::Ok
        );
        assert_eq!(read(reader), b"one");
        assert_eq!(
            sb_put_stage(
                writer,
                name.as_ptr(),
                b"two".as_ptr(),
                3,
                c"PENDING".as_ptr()
            ),
            sb_result::Ok
        );
        assert_eq!(
            sb_put_stage(
                writer,
                name.as_ptr(),
                b"bad".as_ptr(),
                3,
                c"no spaces!".as_ptr()
            ),
            sb_result::InvalidInput
        );
        assert_eq!(read(writer), b"one", "PENDING leaves CURRENT in place");
        assert_eq!(
            sb_put(writer, name.as_ptr(), b"three".as_ptr(), 5),
            sb_result::Ok
        );
        assert_eq!(read(reader), b"one", "served from the reader's cache");
        assert_eq!(sb_refresh_now(reader, name.as_ptr()), sb_result::Ok);
        assert_eq!(read(reader), b"three");
        assert_eq!(sb_refresh_now(reader, null()), sb_result::NullParameter);
        sb_client_free(reader);
        sb_client_free(writer);
    }
}

#[test]
fn metrics_are_sized_first_then_copied_with_a_nul() {
    let c = open();
    // SAFETY: c is live; buffers and outputs are locals of the lengths given; NULL is what
    // the first calls test.
    unsafe {
        assert_eq!(
            sb_put(c, c"app/m".as_ptr(), b"v".as_ptr(), 1),
            sb_result::Ok
        );
        let mut s = null_mut();
        assert_eq!(sb_get(c, c"app/m".as_ptr(), &mut s), sb_result::Ok);
        sb_secret_free(s);

        let mut needed = usize::MAX;
        assert_eq!(
            sb_metrics_prometheus(c, null_mut(), 0, null_mut()),
            sb_result::NullParameter
        );
        assert_eq!(
            sb_metrics_prometheus(c, null_mut(), 1, &mut needed),
            sb_result::NullParameter
        );
        assert_eq!(needed, usize::MAX, "no output on a refused call");
        // A size query, then a buffer one byte short of the NUL.
        assert_eq!(
            sb_metrics_prometheus(c, null_mut(), 0, &mut needed),
            sb_result::InsufficientSize
        );
        assert!(needed > 0);
        let mut buf = vec![0x7f as c_char; needed + 1];
        let mut again = 0usize;
        assert_eq!(
            sb_metrics_prometheus(c, buf.as_mut_ptr(), needed, &mut again),
            sb_result::InsufficientSize
        );
        assert_eq!(again, needed);
        assert!(
            buf.iter().all(|&b| b == 0x7f),
            "buf untouched when it is too small"
        );
        assert!(last_error().contains("bytes"));

        assert_eq!(
            sb_metrics_prometheus(c, buf.as_mut_ptr(), buf.len(), &mut again),
            sb_result::Ok
        );
        let text = CStr::from_ptr(buf.as_ptr()).to_str().expect("UTF-8");
        assert_eq!(text.len(), again);
        assert!(text.contains("sealbox_gets_total 1\n"), "{text}");
        assert!(text.contains("sealbox_writes_total 1\n"), "{text}");
        assert!(!text.contains("app/m"), "no secret names");
        sb_client_free(c);
        assert_eq!(
            sb_metrics_prometheus(null(), buf.as_mut_ptr(), buf.len(), &mut again),
            sb_result::NullParameter
        );
    }
}

fn last_request_id() -> String {
    let mut buf = [0 as c_char; 128];
    let mut n = 0usize;
    // SAFETY: buf has 128 bytes; n is a local.
    let r = unsafe { sb_last_error_request_id(buf.as_mut_ptr(), buf.len(), &mut n) };
    assert_eq!(r, sb_result::Ok);
    // SAFETY: sb_last_error_request_id NUL-terminated the buffer.
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

#[test]
fn get_fields_fills_the_array_only_on_success() {
    let c = open();
    let json = br#"{"host":"h","port":5432,"password":"pw-not-in-errors"}"#;
    let names = [c"password".as_ptr(), c"host".as_ptr(), c"port".as_ptr()];
    let missing = [c"host".as_ptr(), c"user".as_ptr()];
    // SAFETY: c is live; names are NUL-terminated arrays of the counts given; outputs are
    // local arrays of those counts; each secret is freed once.
    unsafe {
        assert_eq!(
            sb_put(c, c"app/db".as_ptr(), json.as_ptr(), json.len()),
            sb_result::Ok
        );
        let mut out = [null_mut(); 3];
        assert_eq!(
            sb_get_fields(c, c"app/db".as_ptr(), names.as_ptr(), 3, out.as_mut_ptr()),
            sb_result::Ok
        );
        assert_eq!(data(out[0]), b"pw-not-in-errors");
        assert_eq!(data(out[1]), b"h");
        assert_eq!(data(out[2]), b"5432");
        out.iter().for_each(|s| sb_secret_free(*s));

        let sentinel = 0x10 as *mut sb_secret;
        let mut untouched = [sentinel; 2];
        assert_eq!(
            sb_get_fields(
                c,
                c"app/db".as_ptr(),
                missing.as_ptr(),
                2,
                untouched.as_mut_ptr()
            ),
            sb_result::NotFound
        );
        assert_eq!(untouched, [sentinel; 2]);
        let msg = last_error();
        assert!(msg.contains("`user`") && !msg.contains("pw-not"), "{msg}");
        sb_client_free(c);
    }
}

#[test]
fn a_failed_reads_request_id_is_its_audit_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("sealbox.yaml");
    std::fs::write(
        &config,
        "secrets: {provider: memory}\nprincipal: svc:app\naudit: {path: ./audit.jsonl, mode: strict}\n\
         policy:\n  rules:\n    - {principals: [\"svc:app\"], allow: [read], secrets: [\"app/*\"]}\n",
    )
    .expect("config");
    let cpath = std::ffi::CString::new(config.to_string_lossy().as_bytes()).expect("path");
    let mut c = null_mut();
    // SAFETY: paths and names are NUL-terminated; outputs are locals; c is freed once.
    let (denied, missing) = unsafe {
        assert_eq!(sb_client_open(cpath.as_ptr(), &mut c), sb_result::Ok);
        let mut s = null_mut();
        assert_eq!(
            sb_get(c, c"other/x".as_ptr(), &mut s),
            sb_result::AccessDenied
        );
        let denied = last_request_id();
        assert_eq!(
            sb_get(c, c"app/missing".as_ptr(), &mut s),
            sb_result::NotFound
        );
        let missing = last_request_id();
        assert_eq!(sb_audit_flush(c), sb_result::Ok);
        sb_client_free(c);
        (denied, missing)
    };
    let log = std::fs::read_to_string(dir.path().join("audit.jsonl")).expect("log");
    let line_of = |id: &str| {
        log.lines()
            .find(|l| l.contains(&format!("\"request_id\":\"{id}\"")))
            .unwrap_or_else(|| panic!("no line with request id {id:?} in\n{log}"))
            .to_owned()
    };
    assert!(line_of(&denied).contains("\"event\":\"access.denied\""));
    assert!(line_of(&missing).contains("\"reason\":\"not_found\""));
}

#[cfg(feature = "pkcs11")]
#[test]
fn a_config_can_seal_its_vault_with_a_pkcs11_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("sealbox.yaml");
    let module = dir.path().join("no-such-hsm/libvendor-pkcs11.so");
    std::fs::write(
        &config,
        format!(
            "secrets:\n  provider: local\n  config:\n    path: ./vault\n    master_key: {{provider: pkcs11, module: {}, token_label: t, pin: \"1234\", key_label: m}}\n",
            module.display()
        ),
    )
    .expect("config");
    let cpath = std::ffi::CString::new(config.to_string_lossy().as_bytes()).expect("path");
    let mut c = null_mut();
    // SAFETY: the path is NUL-terminated; the out-pointer is a local.
    let r = unsafe { sb_client_open(cpath.as_ptr(), &mut c) };
    // The provider is registered: the error is about the module, not an unknown provider.
    assert_eq!(r, sb_result::Config);
    let message = last_error();
    assert!(message.contains("libvendor-pkcs11.so"), "{message}");
    assert!(!message.contains("unknown provider"), "{message}");
    assert!(c.is_null());
}
