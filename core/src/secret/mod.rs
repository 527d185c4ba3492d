//! `Secret` and `SecretString`: values in locked memory, wiped on drop, never printed.
//!
//! INTERIM: public contract only; constructors, JSON field access and the memory tests are
//! completed together with the arena.

use std::io::Read;

use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, ErrorKind, Result};
use crate::memory::{self, LockedBuf, MemoryPolicy};

/// Secret bytes in locked memory. `Debug` prints `[REDACTED]`; no `Clone`, `Display`,
/// `Serialize` or `PartialEq`; compare with [`Secret::ct_eq`].
pub struct Secret {
    buf: LockedBuf,
}

impl Secret {
    /// Allocates `len` bytes under the default memory policy and lets `init` fill them in place.
    pub fn init_with(len: usize, init: impl FnOnce(&mut [u8]) -> Result<()>) -> Result<Secret> {
        Self::init_with_policy(len, memory::default_policy(), init)
    }

    /// Like [`Secret::init_with`] with an explicit policy.
    pub fn init_with_policy(
        len: usize,
        policy: MemoryPolicy,
        init: impl FnOnce(&mut [u8]) -> Result<()>,
    ) -> Result<Secret> {
        let mut buf = LockedBuf::alloc(len, policy)?;
        init(buf.as_mut_slice())?;
        Ok(Secret { buf })
    }

    /// Copies `src` into locked memory and wipes `src`.
    pub fn from_mut_slice(src: &mut [u8]) -> Result<Secret> {
        let s = Self::init_with(src.len(), |dst| {
            dst.copy_from_slice(src);
            Ok(())
        });
        src.zeroize();
        s
    }

    /// Takes a `Zeroizing` buffer; the buffer is wiped when this returns.
    pub fn from_zeroizing(mut src: Zeroizing<Vec<u8>>) -> Result<Secret> {
        Self::from_mut_slice(&mut src)
    }

    /// Reads at most `max_len` bytes from `reader` straight into locked memory.
    pub fn from_reader(reader: &mut dyn Read, max_len: usize) -> Result<Secret> {
        let mut tmp = Zeroizing::new(Vec::new());
        reader
            .take(max_len as u64 + 1)
            .read_to_end(&mut tmp)
            .map_err(|e| Error::io("reading secret", e))?;
        if tmp.len() > max_len {
            return Err(Error::invalid_input(format!(
                "secret longer than {max_len} bytes"
            )));
        }
        Self::from_zeroizing(tmp)
    }

    /// `len` random bytes from the OS CSPRNG.
    pub fn random(len: usize) -> Result<Secret> {
        Self::init_with(len, |dst| {
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), dst)
                .map_err(|_| Error::internal("OS random generator failed"))
        })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Whether the bytes are in locked memory.
    pub fn is_locked(&self) -> bool {
        self.buf.is_locked()
    }

    /// Constant-time equality (length is not hidden).
    pub fn ct_eq(&self, other: &Secret) -> bool {
        self.ct_eq_bytes(other.expose_secret())
    }

    /// Constant-time comparison against plain bytes.
    pub fn ct_eq_bytes(&self, other: &[u8]) -> bool {
        self.buf.as_slice().ct_eq(other).into()
    }

    /// An explicit copy into a new locked slot.
    pub fn try_clone(&self) -> Result<Secret> {
        Self::init_with(self.len(), |dst| {
            dst.copy_from_slice(self.buf.as_slice());
            Ok(())
        })
    }

    /// Validates UTF-8 and converts into a [`SecretString`] without copying.
    pub fn into_string(self) -> Result<SecretString> {
        if std::str::from_utf8(self.buf.as_slice()).is_err() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "secret is not valid UTF-8",
            ));
        }
        Ok(SecretString { inner: self })
    }

    /// Reads one top-level field of a JSON object secret (`{"username","password",...}`) into a
    /// new locked [`SecretString`]. Numbers and booleans are returned in their JSON spelling.
    pub fn json_field(&self, field: &str) -> Result<SecretString> {
        let _ = field;
        Err(Error::new(
            ErrorKind::Unsupported,
            "json_field is not built yet",
        ))
    }
}

impl ExposeSecret<[u8]> for Secret {
    fn expose_secret(&self) -> &[u8] {
        self.buf.as_slice()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

/// A UTF-8 secret in locked memory. Same guarantees as [`Secret`].
pub struct SecretString {
    inner: Secret,
}

impl SecretString {
    /// Copies `src` into locked memory and wipes `src`.
    pub fn from_mut_str(src: &mut str) -> Result<SecretString> {
        // SAFETY: INTERIM
        let bytes = unsafe { src.as_bytes_mut() };
        Secret::from_mut_slice(bytes)?.into_string()
    }

    /// Takes a `String`, wiping its buffer.
    pub fn from_string(mut src: String) -> Result<SecretString> {
        let s = Secret::init_with(src.len(), |dst| {
            dst.copy_from_slice(src.as_bytes());
            Ok(())
        });
        src.zeroize();
        s?.into_string()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Whether the bytes are in locked memory.
    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &SecretString) -> bool {
        self.inner.ct_eq(&other.inner)
    }

    /// The bytes as a [`Secret`].
    pub fn into_secret(self) -> Secret {
        self.inner
    }

    /// Borrow as bytes.
    pub fn as_secret(&self) -> &Secret {
        &self.inner
    }
}

impl ExposeSecret<str> for SecretString {
    fn expose_secret(&self) -> &str {
        // The constructor validated UTF-8 and the bytes are never mutated afterwards.
        std::str::from_utf8(self.inner.expose_secret()).unwrap_or("")
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretString([REDACTED])")
    }
}
