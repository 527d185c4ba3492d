//! Values passed into `put`: `bytes`, `bytearray`, `memoryview` or `str`, copied straight into
//! locked memory.
//!
//! A `bytearray` is the one input the caller can hand over for wiping: after a successful store
//! call it is zeroed in place. `bytes` and `str` are immutable in Python and a `memoryview`
//! belongs to whoever made it, so those are copied and left alone.

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView, PyString};
use sealbox::Secret;
use zeroize::Zeroize;

use crate::errors::{BindingError, BindingResult};

/// A value copied into a [`Secret`], plus the source buffer when it is to be wiped afterwards.
///
/// Holding the buffer keeps the `bytearray` exported, so Python refuses to resize it (and move
/// its bytes) until the wipe.
pub(crate) struct SecretInput {
    secret: Secret,
    wipe_after: Option<PyUntypedBuffer>,
}

impl SecretInput {
    /// Copies `value` into locked memory. Raises `TypeError` for any other type (`None`
    /// included) and `InvalidInput` for a `str` that cannot be encoded as UTF-8; no message
    /// contains the value.
    pub(crate) fn extract(value: &Bound<'_, PyAny>) -> BindingResult<SecretInput> {
        if let Ok(s) = value.cast::<PyString>() {
            // `to_str` fails only for lone surrogates; its UnicodeEncodeError would quote the
            // offending character, so it is replaced by a message without content.
            let text = s.to_str().map_err(|_| {
                sealbox::Error::invalid_input(
                    "the str value cannot be encoded as UTF-8 (it contains lone surrogates)",
                )
            })?;
            let secret = copy_into_secret(text.as_bytes())?;
            return Ok(SecretInput {
                secret,
                wipe_after: None,
            });
        }
        let wipe = value.is_instance_of::<PyByteArray>();
        if !(wipe || value.is_instance_of::<PyBytes>() || value.is_instance_of::<PyMemoryView>()) {
            let type_name = value.get_type().name()?;
            return Err(PyTypeError::new_err(format!(
                "a secret value must be bytes, bytearray, memoryview or str, not {type_name}"
            ))
            .into());
        }
        let buffer = PyUntypedBuffer::get(value)?;
        if !buffer.is_c_contiguous() {
            return Err(PyTypeError::new_err("a memoryview value must be C-contiguous").into());
        }
        // SAFETY: the buffer is held (exported) for the whole borrow, it is C-contiguous and
        // `len_bytes` long, and the GIL is held, so no Python code can mutate or free it while
        // the bytes are copied.
        let bytes = unsafe {
            std::slice::from_raw_parts(buffer.buf_ptr().cast::<u8>(), buffer.len_bytes())
        };
        let secret = copy_into_secret(bytes)?;
        Ok(SecretInput {
            secret,
            wipe_after: (wipe && !buffer.readonly()).then_some(buffer),
        })
    }

    /// The value in locked memory.
    pub(crate) fn secret(&self) -> &Secret {
        &self.secret
    }

    /// Zeroes the source `bytearray`, if there was one, and releases it.
    pub(crate) fn wipe_source(mut self, py: Python<'_>) {
        if let Some(buffer) = self.wipe_after.take() {
            // SAFETY: the buffer is a writable, C-contiguous export of a bytearray, still held
            // (so the bytearray cannot be resized or freed), and the caller holds the GIL (the
            // `py` token), so no other code touches the bytes during the wipe.
            let bytes = unsafe {
                std::slice::from_raw_parts_mut(buffer.buf_ptr().cast::<u8>(), buffer.len_bytes())
            };
            bytes.zeroize();
            buffer.release(py);
        }
    }
}

fn copy_into_secret(bytes: &[u8]) -> Result<Secret, BindingError> {
    Ok(Secret::init_with(bytes.len(), |dst| {
        dst.copy_from_slice(bytes);
        Ok(())
    })?)
}
