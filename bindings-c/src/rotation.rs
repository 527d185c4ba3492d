//! Rotation through a client: `sb_rotate`, `sb_rollback`, and `sb_rotation_status` with the
//! accessors of what it returns. Names, versions, times and reasons only; never a value.

use std::ffi::c_char;

use sealbox::rotation::{Exec, Generator, NewValue, Status};

use crate::boundary::{Failure, ffi_boundary, ffi_free_boundary};
use crate::client::{borrow_client, sb_client};
use crate::handle::{BoxedHandle, out_param, write_out};
use crate::metadata::unix_seconds;
use crate::params;
use crate::result::sb_result;

/// One secret's rotation state, from `sb_rotation_status`: last rotation time, the version an
/// unfinished rotation staged `PENDING`, the last failure and the failure count. Never holds a
/// value. Free it with `sb_rotation_state_free`.
#[derive(Debug)]
pub struct sb_rotation_state {
    _private: [u8; 0],
}

impl BoxedHandle for sb_rotation_state {
    type Rust = Status;
}

/// The `exec` rotator for `command[0..command_len]`, or `None` for the schedule's rotator.
///
/// # Safety
/// As [`params::utf8_array`] when `command_len` is not 0.
unsafe fn command_rotator(
    command: *const *const c_char,
    command_len: usize,
) -> Result<Option<Exec>, Failure> {
    if command.is_null() && command_len == 0 {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    let argv = unsafe { params::utf8_array(command, command_len, "command") }?;
    let Some((program, args)) = argv.split_first() else {
        return Err(Failure::new(
            sb_result::InvalidInput,
            "command_len is 0 with a non-NULL command: give the program and its arguments, or \
             NULL and 0 for the schedule's rotator"
                .to_owned(),
        ));
    };
    let args = args.iter().map(|a| (*a).to_owned()).collect();
    Ok(Some(Exec::new(program, args)))
}

/// Rotates `name` now: creates a `PENDING` version, sets it on the target, tests it there and
/// promotes it to `CURRENT` (the old one becomes `PREVIOUS`); an interrupted rotation of it is
/// resumed instead. Needs the `rotate` capability under the client's policy.
///
/// With `command` NULL and `command_len` 0, the rotator and the new value come from the config
/// file's rotation schedule (`generated` and a random token without one). Else `command` is
/// `command_len` NUL-terminated strings, a program and its arguments, run for each step with
/// the step's name (`set`, `test`) appended and the new value (a random base64url token) on its
/// standard input; a non-zero exit fails the step.
///
/// On failure `CURRENT` is unchanged, the attempt shows in `sb_rotation_status`, and the code
/// says why (`SB_RESULT_UNAVAILABLE` for a failed command or target, `SB_RESULT_ACCESS_DENIED`,
/// `SB_RESULT_CONFLICT` while another process rotates it, ...).
///
/// # Safety
/// `client` is NULL or live; `name` is NULL or NUL-terminated; `command` is NULL or points to
/// `command_len` pointers, each NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_rotate(
    client: *const sb_client,
    name: *const c_char,
    command: *const *const c_char,
    command_len: usize,
) -> sb_result {
    ffi_boundary("sb_rotate", || {
        // SAFETY: NULL or live by contract.
        let client = unsafe { borrow_client(client) }?;
        // SAFETY: NULL or NUL-terminated by contract.
        let name = unsafe { params::utf8(name, "name") }?;
        // SAFETY: NULL, or `command_len` pointers each NULL or NUL-terminated, by contract.
        let exec = unsafe { command_rotator(command, command_len) }?;
        let rotation = client.client().rotation();
        match exec {
            Some(exec) => client.run(rotation.rotate_with(
                name,
                &exec,
                NewValue::Generate(Generator::Base64Url { bytes: 32 }),
            ))?,
            None => client.run(rotation.rotate(name))?,
        };
        Ok(())
    })
}

/// Undoes `name`'s last rotation (its `PREVIOUS` version becomes `CURRENT` again, and the
/// target gets it back) or abandons its unfinished one (`PENDING` is dropped). The target is
/// told through the schedule's rotator, or through `command` (the step name is `restore`),
/// as `sb_rotate` takes it.
///
/// # Safety
/// As `sb_rotate`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_rollback(
    client: *const sb_client,
    name: *const c_char,
    command: *const *const c_char,
    command_len: usize,
) -> sb_result {
    ffi_boundary("sb_rollback", || {
        // SAFETY: NULL or live by contract.
        let client = unsafe { borrow_client(client) }?;
        // SAFETY: NULL or NUL-terminated by contract.
        let name = unsafe { params::utf8(name, "name") }?;
        // SAFETY: as in `sb_rotate`.
        let exec = unsafe { command_rotator(command, command_len) }?;
        let rotation = client.client().rotation();
        match exec {
            Some(exec) => client.run(rotation.rollback_with(name, &exec))?,
            None => client.run(rotation.rollback(name))?,
        };
        Ok(())
    })
}

/// Reads `name`'s rotation state. On success writes a new status handle to `*status_out`.
///
/// # Safety
/// `client` is NULL or live; `name` is NULL or NUL-terminated; `status_out` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_rotation_status(
    client: *const sb_client,
    name: *const c_char,
    status_out: *mut *mut sb_rotation_state,
) -> sb_result {
    ffi_boundary("sb_rotation_status", || {
        // SAFETY: NULL or live by contract.
        let client = unsafe { borrow_client(client) }?;
        // SAFETY: NULL or NUL-terminated by contract.
        let name = unsafe { params::utf8(name, "name") }?;
        let out = out_param(status_out, "status_out")?;
        let status = client.run(client.client().rotation().status_of(name))?;
        // SAFETY: checked non-NULL, writable by contract.
        unsafe { write_out(out, sb_rotation_state::into_raw(status)) };
        Ok(())
    })
}

/// Writes when the secret was last rotated (else when its current version was written), in
/// seconds since the Unix epoch, to `*unix_seconds_out`. `SB_RESULT_NOT_FOUND` when unknown.
///
/// # Safety
/// `status` is NULL or live; `unix_seconds_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_rotation_state_last_rotated(
    status: *const sb_rotation_state,
    unix_seconds_out: *mut i64,
) -> sb_result {
    ffi_boundary("sb_rotation_state_last_rotated", || {
        // SAFETY: NULL or live by contract.
        let s = unsafe { sb_rotation_state::borrow(status, "status") }?;
        let out = out_param(unix_seconds_out, "unix_seconds_out")?;
        let t = s.last_rotated.ok_or_else(|| {
            Failure::new(
                sb_result::NotFound,
                format!("no rotation or write time is known for {}", s.name),
            )
        })?;
        // SAFETY: checked non-NULL, writable by contract.
        unsafe { write_out(out, unix_seconds(t)) };
        Ok(())
    })
}

/// Gives the version an unfinished rotation staged `PENDING` as `*id_out`/`*len_out` (UTF-8,
/// not NUL-terminated, valid until `sb_rotation_state_free`). `SB_RESULT_NOT_FOUND` when no
/// rotation is unfinished.
///
/// # Safety
/// `status` is NULL or live; `id_out` and `len_out` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_rotation_state_pending(
    status: *const sb_rotation_state,
    id_out: *mut *const c_char,
    len_out: *mut usize,
) -> sb_result {
    ffi_boundary("sb_rotation_state_pending", || {
        // SAFETY: NULL or live by contract.
        let s = unsafe { sb_rotation_state::borrow(status, "status") }?;
        let id_out = out_param(id_out, "id_out")?;
        let len_out = out_param(len_out, "len_out")?;
        let (id, _) = s.pending.as_ref().ok_or_else(|| {
            Failure::new(
                sb_result::NotFound,
                format!("{} has no unfinished rotation", s.name),
            )
        })?;
        // SAFETY: checked non-NULL, writable by contract.
        unsafe {
            write_out(id_out, id.as_str().as_ptr().cast::<c_char>());
            write_out(len_out, id.as_str().len());
        }
        Ok(())
    })
}

/// Writes the number of failed attempts since the last finished rotation to `*count_out`.
///
/// # Safety
/// `status` is NULL or live; `count_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_rotation_state_failures(
    status: *const sb_rotation_state,
    count_out: *mut u32,
) -> sb_result {
    ffi_boundary("sb_rotation_state_failures", || {
        // SAFETY: NULL or live by contract.
        let s = unsafe { sb_rotation_state::borrow(status, "status") }?;
        let out = out_param(count_out, "count_out")?;
        // SAFETY: checked non-NULL, writable by contract.
        unsafe { write_out(out, s.failures) };
        Ok(())
    })
}

/// Gives the last failure since the last finished rotation: the step that failed (`create`,
/// `set`, `test`, `finish`, ...) as `*step_out`/`*step_len_out` and the reason (no value in
/// it) as `*reason_out`/`*reason_len_out`, all UTF-8, not NUL-terminated, valid until
/// `sb_rotation_state_free`. `SB_RESULT_NOT_FOUND` when there was none.
///
/// # Safety
/// `status` is NULL or live; the four outputs are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_rotation_state_last_failure(
    status: *const sb_rotation_state,
    step_out: *mut *const c_char,
    step_len_out: *mut usize,
    reason_out: *mut *const c_char,
    reason_len_out: *mut usize,
) -> sb_result {
    ffi_boundary("sb_rotation_state_last_failure", || {
        // SAFETY: NULL or live by contract.
        let s = unsafe { sb_rotation_state::borrow(status, "status") }?;
        let step_out = out_param(step_out, "step_out")?;
        let step_len_out = out_param(step_len_out, "step_len_out")?;
        let reason_out = out_param(reason_out, "reason_out")?;
        let reason_len_out = out_param(reason_len_out, "reason_len_out")?;
        let f = s.last_failure.as_ref().ok_or_else(|| {
            Failure::new(
                sb_result::NotFound,
                format!(
                    "no rotation of {} failed since the last one finished",
                    s.name
                ),
            )
        })?;
        let step = f.step.as_str();
        // SAFETY: checked non-NULL, writable by contract.
        unsafe {
            write_out(step_out, step.as_ptr().cast::<c_char>());
            write_out(step_len_out, step.len());
            write_out(reason_out, f.reason.as_ptr().cast::<c_char>());
            write_out(reason_len_out, f.reason.len());
        }
        Ok(())
    })
}

/// Frees a rotation status. NULL is accepted and ignored.
///
/// # Safety
/// `status` is NULL or live and not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_rotation_state_free(status: *mut sb_rotation_state) {
    ffi_free_boundary("sb_rotation_state_free", || {
        // SAFETY: NULL or live and never used again, by contract.
        unsafe { sb_rotation_state::free(status) }
    })
}
