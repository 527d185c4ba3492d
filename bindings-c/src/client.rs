//! `sb_client`: opening a client and every call that goes through it.

use std::ffi::c_char;
use std::sync::Arc;

use sealbox::client::{BlockingSealbox, SecretHandle};
use sealbox::config::open_local_vault;
use sealbox::store::memory::MemoryStore;
use sealbox::store::{DeleteOptions, PutOptions, Stage, VersionId, VersionSelector};
use sealbox::{Error, Sealbox, Secret};

use crate::boundary::{Failure, ffi_boundary, ffi_free_boundary};
use crate::handle::{BoxedHandle, out_param, write_out};
use crate::params;
use crate::result::sb_result;
use crate::secret::sb_secret;

/// A sealbox client: policy, cache, audit and stores behind one handle.
///
/// Thread-safe: one client may be used from any number of threads at once. Free it with
/// `sb_client_free` once no thread uses it any more; secrets it returned stay valid after that.
#[derive(Debug)]
pub struct sb_client {
    _private: [u8; 0],
}

impl BoxedHandle for sb_client {
    type Rust = BlockingSealbox;
}

// The C contract promises a thread-safe client; keep the compiler checking it.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<BlockingSealbox>();
};

/// Opens a client from a YAML config file (stores, routes, cache, audit, policy).
///
/// `config_path` is a NUL-terminated path (any bytes). On success writes the new client to
/// `*client_out`; free it with `sb_client_free`. `SB_RESULT_CONFIG` reports a malformed file,
/// `SB_RESULT_IO` an unreadable one.
///
/// # Safety
/// `config_path` is NULL or NUL-terminated; `client_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_client_open(
    config_path: *const c_char,
    client_out: *mut *mut sb_client,
) -> sb_result {
    ffi_boundary("sb_client_open", || {
        // SAFETY: NULL or NUL-terminated by contract.
        let path = unsafe { params::path(config_path, "config_path") }?;
        let out = out_param(client_out, "client_out")?;
        crate::providers::register_missing();
        let client = BlockingSealbox::from_config(path)?;
        // SAFETY: checked non-NULL, writable by contract.
        unsafe { write_out(out, sb_client::into_raw(client)) };
        Ok(())
    })
}

/// Opens a client over the integrated local vault in directory `dir` (or a vault file path),
/// creating the vault if there is none, with the master key in `key_file` (sealbox's key file
/// format, mode 0600), created with a fresh random key if it does not exist. The client has
/// the default cache and no audit sink or policy; use `sb_client_open` with a config for
/// those.
///
/// Errors: `SB_RESULT_CONFIG` for a key file or vault with loose permissions or another
/// format, `SB_RESULT_WRONG_KEY` when the key does not open the vault, `SB_RESULT_IO` for
/// unreadable paths, `SB_RESULT_INTEGRITY` for a damaged vault.
///
/// # Safety
/// `dir` and `key_file` are NULL or NUL-terminated; `client_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_client_open_local(
    dir: *const c_char,
    key_file: *const c_char,
    client_out: *mut *mut sb_client,
) -> sb_result {
    ffi_boundary("sb_client_open_local", || {
        // SAFETY: NULL or NUL-terminated by contract.
        let dir = unsafe { params::path(dir, "dir") }?;
        // SAFETY: NULL or NUL-terminated by contract.
        let key_file = unsafe { params::path(key_file, "key_file") }?;
        let out = out_param(client_out, "client_out")?;
        // Opening runs on a short-lived runtime: the vault keeps no task on it, and the
        // client below brings its own.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting a runtime to open the local vault", e))?;
        let vault = rt.block_on(open_local_vault(dir, key_file))?;
        drop(rt);
        let client = Sealbox::builder().store(vault).build()?.blocking()?;
        // SAFETY: checked non-NULL, writable by contract.
        unsafe { write_out(out, sb_client::into_raw(client)) };
        Ok(())
    })
}

/// Opens a client over an empty in-memory store, for tests and for embedding programs that
/// fill it themselves with `sb_put`. Nothing is persisted.
///
/// # Safety
/// `client_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_client_open_memory(client_out: *mut *mut sb_client) -> sb_result {
    ffi_boundary("sb_client_open_memory", || {
        let out = out_param(client_out, "client_out")?;
        let client = Sealbox::builder()
            .store(Arc::new(MemoryStore::new()))
            .build()?
            .blocking()?;
        // SAFETY: checked non-NULL, writable by contract.
        unsafe { write_out(out, sb_client::into_raw(client)) };
        Ok(())
    })
}

/// Opens a new client made as `client` was, for a process forked after `client` was opened:
/// there `client` answers every call with `SB_RESULT_FORKED` (its cached secrets are wiped
/// and its threads do not exist), and the new client works. A client from `sb_client_open`
/// reads its config file again; one from `sb_client_open_local` opens the vault and key file
/// again. An in-memory client cannot be reopened (its secrets are gone):
/// `SB_RESULT_UNSUPPORTED`. Called in the process that opened `client`, it simply opens
/// another client.
///
/// On success writes the new client to `*client_out`; free it with `sb_client_free`. Free
/// the inherited one too (in a child that releases only what is safe to release there, and
/// leaves the parent's threads and connections alone).
///
/// ```c
/// pid_t pid = fork();
/// if (pid == 0) {
///     sb_client *mine = NULL;
///     if (sb_client_reopen(client, &mine) != SB_RESULT_OK) _exit(1);
///     sb_client_free(client);
///     client = mine;
///     /* ... the worker's loop ... */
/// }
/// ```
///
/// # Safety
/// `client` is NULL or live; `client_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_client_reopen(
    client: *const sb_client,
    client_out: *mut *mut sb_client,
) -> sb_result {
    ffi_boundary("sb_client_reopen", || {
        // SAFETY: NULL or live by contract.
        let client = unsafe { sb_client::borrow(client, "client") }?;
        let out = out_param(client_out, "client_out")?;
        let fresh = client.reopen()?;
        // SAFETY: checked non-NULL, writable by contract.
        unsafe { write_out(out, sb_client::into_raw(fresh)) };
        Ok(())
    })
}

/// Frees a client and its cache. Call `sb_audit_flush` first to be sure every queued audit
/// event is written. Secrets it returned stay valid until freed. NULL is accepted and ignored.
///
/// # Safety
/// `client` is NULL or a live client that no thread uses any more.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_client_free(client: *mut sb_client) {
    ffi_free_boundary("sb_client_free", || {
        // SAFETY: NULL or live and unused from now on, by contract.
        unsafe { sb_client::free(client) }
    })
}

/// Reads the CURRENT version of `name` (a secret name such as `predis/prod/database/password`
/// or an `sb://STORE/NAME` reference). On success writes a new secret to `*secret_out`.
///
/// # Safety
/// `client` is NULL or live; `name` is NULL or NUL-terminated; `secret_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_get(
    client: *const sb_client,
    name: *const c_char,
    secret_out: *mut *mut sb_secret,
) -> sb_result {
    ffi_boundary("sb_get", || {
        // SAFETY: NULL or live by contract.
        let client = unsafe { sb_client::borrow(client, "client") }?;
        // SAFETY: NULL or NUL-terminated by contract.
        let name = unsafe { params::cstr_bytes(name, "name") }?;
        let out = out_param(secret_out, "secret_out")?;
        let handle = get_current(client, name)?;
        // SAFETY: checked non-NULL, writable by contract.
        unsafe { write_out(out, sb_secret::into_raw(handle)) };
        Ok(())
    })
}

/// As `sb_get`, with the name given as `name_len` bytes at `name` (UTF-8, no NUL needed):
/// for callers that hold names as `(pointer, length)` pairs, such as C++ `std::string_view`,
/// and for hot loops that should not pay a `strlen` per call. `name` must not be NULL, even
/// when `name_len` is 0.
///
/// # Safety
/// `client` is NULL or live; `name` is NULL or points to `name_len` readable bytes;
/// `secret_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_get_n(
    client: *const sb_client,
    name: *const c_char,
    name_len: usize,
    secret_out: *mut *mut sb_secret,
) -> sb_result {
    ffi_boundary("sb_get_n", || {
        // SAFETY: NULL or live by contract.
        let client = unsafe { sb_client::borrow(client, "client") }?;
        // SAFETY: NULL or `name_len` readable bytes by contract.
        let name = unsafe { params::bytes(name.cast::<u8>(), name_len, "name") }?;
        let out = out_param(secret_out, "secret_out")?;
        let handle = get_current(client, name)?;
        // SAFETY: checked non-NULL, writable by contract.
        unsafe { write_out(out, sb_secret::into_raw(handle)) };
        Ok(())
    })
}

/// Reads version `version` (a version id as `sb_secret_version` reports it) of `name`.
///
/// # Safety
/// As `sb_get`; `version` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_get_version(
    client: *const sb_client,
    name: *const c_char,
    version: *const c_char,
    secret_out: *mut *mut sb_secret,
) -> sb_result {
    ffi_boundary("sb_get_version", || {
        // SAFETY: NULL or live by contract.
        let client = unsafe { sb_client::borrow(client, "client") }?;
        // SAFETY: NULL or NUL-terminated by contract.
        let name = unsafe { params::utf8(name, "name") }?;
        // SAFETY: NULL or NUL-terminated by contract.
        let version = unsafe { params::utf8(version, "version") }?;
        let out = out_param(secret_out, "secret_out")?;
        let selector = VersionSelector::Version(VersionId::new(version));
        let handle = client.get_version(name, &selector)?;
        // SAFETY: checked non-NULL, writable by contract.
        unsafe { write_out(out, sb_secret::into_raw(handle)) };
        Ok(())
    })
}

/// Reads the version of `name` that carries stage `stage` (`"CURRENT"`, `"PENDING"`,
/// `"PREVIOUS"` or a custom label).
///
/// # Safety
/// As `sb_get`; `stage` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_get_stage(
    client: *const sb_client,
    name: *const c_char,
    stage: *const c_char,
    secret_out: *mut *mut sb_secret,
) -> sb_result {
    ffi_boundary("sb_get_stage", || {
        // SAFETY: NULL or live by contract.
        let client = unsafe { sb_client::borrow(client, "client") }?;
        // SAFETY: NULL or NUL-terminated by contract.
        let name = unsafe { params::utf8(name, "name") }?;
        // SAFETY: NULL or NUL-terminated by contract.
        let stage: Stage = unsafe { params::utf8(stage, "stage") }?.parse()?;
        let out = out_param(secret_out, "secret_out")?;
        let handle = client.get_version(name, &VersionSelector::Stage(stage))?;
        // SAFETY: checked non-NULL, writable by contract.
        unsafe { write_out(out, sb_secret::into_raw(handle)) };
        Ok(())
    })
}

/// Reads one top-level field of the JSON object stored as the CURRENT version of `name`
/// (`sb_get_field(c, "predis/prod/database", "password", &s)`). The new secret holds just the
/// field's text (numbers and booleans in their JSON spelling) and the version it came from.
/// A missing field is `SB_RESULT_NOT_FOUND`, a value that is not a JSON object
/// `SB_RESULT_INVALID_INPUT`.
///
/// # Safety
/// As `sb_get`; `field` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_get_field(
    client: *const sb_client,
    name: *const c_char,
    field: *const c_char,
    secret_out: *mut *mut sb_secret,
) -> sb_result {
    ffi_boundary("sb_get_field", || {
        // SAFETY: NULL or live by contract.
        let client = unsafe { sb_client::borrow(client, "client") }?;
        // SAFETY: NULL or NUL-terminated by contract.
        let name = unsafe { params::utf8(name, "name") }?;
        // SAFETY: NULL or NUL-terminated by contract.
        let field = unsafe { params::utf8(field, "field") }?;
        let out = out_param(secret_out, "secret_out")?;
        let field = client.get(name)?.field(field)?;
        // SAFETY: checked non-NULL, writable by contract.
        unsafe { write_out(out, sb_secret::into_raw(field)) };
        Ok(())
    })
}

/// Reads several top-level fields of the JSON object stored as the CURRENT version of `name`
/// together: one store read or cache hit, one audit event, one parse. `fields` points to
/// `count` NUL-terminated field names; on success `secrets_out` (an array of `count`
/// pointers) receives one new secret per field, in the order asked, each holding just that
/// field's text in locked memory of its own; free each with `sb_secret_free`. Nothing is
/// written to `secrets_out` on failure.
///
/// ```c
/// const char *names[] = {"host", "port", "username", "password"};
/// sb_secret *db[4];
/// if (sb_get_fields(client, "predis/prod/clickhouse", names, 4, db) == SB_RESULT_OK) { ... }
/// ```
///
/// Errors: `SB_RESULT_NOT_FOUND` for a missing field (the message names the first one
/// missing) or secret; `SB_RESULT_INVALID_INPUT` when the secret is not a JSON object, a
/// field is null, an object or an array, `count` is 0 or a name is given twice;
/// `SB_RESULT_NULL_PARAMETER` for a NULL `fields`, `fields[i]` or `secrets_out`. No message
/// contains a value.
///
/// # Safety
/// As `sb_get`; `fields` is NULL or points to `count` pointers, each NULL or NUL-terminated;
/// `secrets_out` is NULL or points to `count` writable `sb_secret*`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_get_fields(
    client: *const sb_client,
    name: *const c_char,
    fields: *const *const c_char,
    count: usize,
    secrets_out: *mut *mut sb_secret,
) -> sb_result {
    ffi_boundary("sb_get_fields", || {
        // SAFETY: NULL or live by contract.
        let client = unsafe { sb_client::borrow(client, "client") }?;
        // SAFETY: NULL or NUL-terminated by contract.
        let name = unsafe { params::utf8(name, "name") }?;
        // SAFETY: NULL or `count` pointers, each NULL or NUL-terminated, by contract.
        let fields = unsafe { params::utf8_array(fields, count, "fields") }?;
        let out = out_param(secrets_out, "secrets_out")?;
        let handles = client.get_fields(name, &fields)?;
        if handles.len() != count {
            return Err(Error::internal("get_fields returned another number of fields").into());
        }
        for (i, handle) in handles.into_iter().enumerate() {
            // SAFETY: `out` points to `count` writable pointers by contract and i < count.
            unsafe { write_out(out.add(i), sb_secret::into_raw(handle)) };
        }
        Ok(())
    })
}

/// Writes `len` bytes at `data` as the new CURRENT version of `name` (creating the secret if
/// needed). The bytes are copied into locked memory; wiping the caller's buffer afterwards is
/// the caller's job. `data` must not be NULL, even when `len` is 0.
///
/// # Safety
/// `client` is NULL or live; `name` is NULL or NUL-terminated; `data` is NULL or points to
/// `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_put(
    client: *const sb_client,
    name: *const c_char,
    data: *const u8,
    len: usize,
) -> sb_result {
    ffi_boundary("sb_put", || {
        // SAFETY: NULL or live by contract.
        let client = unsafe { sb_client::borrow(client, "client") }?;
        // SAFETY: NULL or NUL-terminated by contract.
        let name = unsafe { params::utf8(name, "name") }?;
        // SAFETY: NULL or `len` readable bytes by contract.
        let data = unsafe { params::bytes(data, len, "data") }?;
        put_bytes(client, name, data, &PutOptions::default())
    })
}

/// Copies `data` into locked memory and writes it as a new version of `name`.
fn put_bytes(
    client: &BlockingSealbox,
    name: &str,
    data: &[u8],
    options: &PutOptions,
) -> Result<(), Failure> {
    let value = Secret::init_with(data.len(), |dst| {
        dst.copy_from_slice(data);
        Ok(())
    })?;
    client.put_with(name, &value, options)?;
    Ok(())
}

/// Writes `len` bytes at `data` as a new version of `name` carrying `stage` alone:
/// `"PENDING"` stores it beside the CURRENT version (a rotation's first step; read it back
/// with `sb_get_stage`), `"CURRENT"` is `sb_put`. Otherwise as `sb_put`. A malformed stage
/// is `SB_RESULT_INVALID_INPUT` and nothing is written.
///
/// # Safety
/// As `sb_put`; `stage` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_put_stage(
    client: *const sb_client,
    name: *const c_char,
    data: *const u8,
    len: usize,
    stage: *const c_char,
) -> sb_result {
    ffi_boundary("sb_put_stage", || {
        // SAFETY: NULL or live by contract.
        let client = unsafe { sb_client::borrow(client, "client") }?;
        // SAFETY: NULL or NUL-terminated by contract.
        let name = unsafe { params::utf8(name, "name") }?;
        // SAFETY: NULL or `len` readable bytes by contract.
        let data = unsafe { params::bytes(data, len, "data") }?;
        // SAFETY: NULL or NUL-terminated by contract.
        let stage: Stage = unsafe { params::utf8(stage, "stage") }?.parse()?;
        let options = PutOptions {
            stages: vec![stage],
            ..PutOptions::default()
        };
        put_bytes(client, name, data, &options)
    })
}

/// Refetches `name` from its store now and replaces the cached value (after a rotation
/// elsewhere). A store failure is returned and the cached value is kept. A client without a
/// cache has nothing to refresh.
///
/// # Safety
/// `client` is NULL or live; `name` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_refresh_now(
    client: *const sb_client,
    name: *const c_char,
) -> sb_result {
    ffi_boundary("sb_refresh_now", || {
        // SAFETY: NULL or live by contract.
        let client = unsafe { sb_client::borrow(client, "client") }?;
        // SAFETY: NULL or NUL-terminated by contract.
        let name = unsafe { params::utf8(name, "name") }?;
        client.refresh_now(name)?;
        Ok(())
    })
}

/// Deletes `name`: a soft delete that can be undone within the store's recovery window, or,
/// with `force`, an immediate and irreversible one.
///
/// # Safety
/// `client` is NULL or live; `name` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_delete(
    client: *const sb_client,
    name: *const c_char,
    force: bool,
) -> sb_result {
    ffi_boundary("sb_delete", || {
        // SAFETY: NULL or live by contract.
        let client = unsafe { sb_client::borrow(client, "client") }?;
        // SAFETY: NULL or NUL-terminated by contract.
        let name = unsafe { params::utf8(name, "name") }?;
        let options = DeleteOptions {
            force,
            ..DeleteOptions::default()
        };
        client.delete(name, &options)?;
        Ok(())
    })
}

/// Writes every queued audit event to the audit sinks and waits until they are written.
///
/// # Safety
/// `client` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_audit_flush(client: *const sb_client) -> sb_result {
    ffi_boundary("sb_audit_flush", || {
        // SAFETY: NULL or live by contract.
        let client = unsafe { sb_client::borrow(client, "client") }?;
        client.flush_audit()?;
        Ok(())
    })
}

/// `get` for a name given as bytes: a cache hit needs no UTF-8 check (only valid names are
/// cached), a name the cache does not hold is checked first, and the cache is probed once.
/// Every output was checked before this runs, so a hit's audit event is never recorded for a
/// call that then fails.
fn get_current(client: &BlockingSealbox, name: &[u8]) -> Result<SecretHandle, Failure> {
    client.get_bytes(name, |n| params::name_str(n, "name"))
}

/// Borrows the Rust client behind a handle (for the list, describe and metrics modules).
///
/// # Safety
/// As [`BoxedHandle::borrow`].
pub(crate) unsafe fn borrow_client<'a>(
    client: *const sb_client,
) -> Result<&'a BlockingSealbox, Failure> {
    // SAFETY: forwarded contract.
    unsafe { sb_client::borrow(client, "client") }
}
