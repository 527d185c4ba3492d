//! `Secret` and `SecretString`: values in locked memory, wiped on drop, never printed.
//!
//! Both own their bytes in a [`LockedBuf`] (see [`crate::memory`] for what that protects and
//! what it cannot). Access is explicit through [`ExposeSecret::expose_secret`], so every place
//! that touches a value is easy to find in review. There is no `Clone`, `Display`, `Serialize` or
//! `PartialEq`: copies are made with [`Secret::try_clone`], comparisons with
//! [`Secret::ct_eq`] (constant time), and `Debug` prints `[REDACTED]`.
//!
//! Constructors avoid stray copies: [`Secret::init_with`] fills locked memory in place,
//! [`Secret::from_reader`] reads straight into it, and the constructors that take a buffer
//! ([`Secret::from_mut_slice`], [`Secret::from_zeroizing`], [`SecretString::from_mut_str`],
//! [`SecretString::from_string`]) wipe their source. A copy the caller made before calling them
//! is beyond their reach.

use std::io::Read;

use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, ErrorKind, Result};
use crate::memory::{self, LockedBuf, MemoryPolicy};

mod json;

/// First buffer size `from_reader` tries; it doubles (into a new locked buffer) as needed.
const INITIAL_READ_CAPACITY: usize = 256;

/// Secret bytes in locked memory. `Debug` prints `[REDACTED]`; no `Clone`, `Display`,
/// `Serialize` or `PartialEq`; compare with [`Secret::ct_eq`].
pub struct Secret {
    buf: LockedBuf,
}

impl Secret {
    /// Allocates `len` bytes under the default memory policy and lets `init` fill them in place.
    #[inline]
    pub fn init_with(len: usize, init: impl FnOnce(&mut [u8]) -> Result<()>) -> Result<Secret> {
        Self::init_with_policy(len, memory::default_policy(), init)
    }

    /// Like [`Secret::init_with`] with an explicit policy.
    #[inline(always)]
    pub fn init_with_policy(
        len: usize,
        policy: MemoryPolicy,
        init: impl FnOnce(&mut [u8]) -> Result<()>,
    ) -> Result<Secret> {
        let mut buf = LockedBuf::alloc(len, policy)?;
        init(buf.as_mut_slice())?;
        Ok(Secret { buf })
    }

    /// Allocates `len` bytes of key material and lets `init` fill them in place. Key material is
    /// always locked, whatever the default policy: this fails with
    /// [`ErrorKind::MemoryLock`] rather than hold a key in swappable memory.
    pub(crate) fn key_with(
        len: usize,
        init: impl FnOnce(&mut [u8]) -> Result<()>,
    ) -> Result<Secret> {
        let mut buf = memory::alloc_key(len)?;
        init(buf.as_mut_slice())?;
        Ok(Secret { buf })
    }

    /// This value as key material: itself when its pages are locked, otherwise a copy in locked
    /// memory (the unlocked original is wiped as it drops). Fails with
    /// [`ErrorKind::MemoryLock`] when nothing can be locked.
    pub(crate) fn into_locked_key(self) -> Result<Secret> {
        if self.is_locked() {
            return Ok(self);
        }
        Self::key_with(self.len(), |dst| {
            dst.copy_from_slice(self.buf.as_slice());
            Ok(())
        })
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
    ///
    /// The bytes never pass through an unprotected buffer of sealbox's own: the reader writes
    /// into a locked buffer, and when that fills up a bigger locked buffer is allocated, the
    /// bytes copied over and the old buffer wiped. (Buffers *inside* the reader, such as a
    /// `BufReader`'s or the kernel's, are out of reach.) More than `max_len` bytes is an
    /// [`ErrorKind::InvalidInput`] error, and everything read so far is wiped.
    pub fn from_reader(reader: &mut dyn Read, max_len: usize) -> Result<Secret> {
        Self::from_reader_with_policy(reader, max_len, memory::default_policy())
    }

    /// Like [`Secret::from_reader`] with an explicit policy.
    pub fn from_reader_with_policy(
        reader: &mut dyn Read,
        max_len: usize,
        policy: MemoryPolicy,
    ) -> Result<Secret> {
        // One byte beyond `max_len` tells "exactly max_len" from "too long".
        let limit = max_len.saturating_add(1);
        let mut buf = LockedBuf::alloc(limit.min(INITIAL_READ_CAPACITY), policy)?;
        let mut filled = 0;
        loop {
            if filled == buf.len() {
                if buf.len() == limit {
                    break;
                }
                let mut bigger = LockedBuf::alloc(buf.len().saturating_mul(2).min(limit), policy)?;
                bigger.as_mut_slice()[..filled].copy_from_slice(buf.as_slice());
                buf = bigger; // the old buffer is wiped as it drops
            }
            match reader.read(&mut buf.as_mut_slice()[filled..]) {
                Ok(0) => break,
                // A reader claiming more than the slice it got is broken; never index past it.
                Ok(n) => filled = (filled + n).min(buf.len()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("reading a secret", e)),
            }
        }
        if filled > max_len {
            return Err(Error::invalid_input(format!(
                "secret longer than {max_len} bytes; nothing was kept"
            )));
        }
        buf.truncate(filled);
        Ok(Secret { buf })
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
    /// new locked [`SecretString`]. Strings are returned unescaped; numbers and booleans in their
    /// JSON spelling (`5432`, `true`; floats in Rust's shortest round-trip form, `1.5`, `1e300`).
    ///
    /// The document is parsed in place: an unescaped string value is copied straight from this
    /// secret's locked memory into the new one, and no other field's value is copied anywhere.
    /// A string value that contains escapes (`\"`, `\n`, `\u00e9`, ...) is unescaped by
    /// `serde_json` into its internal scratch buffer on the ordinary heap, which is freed without
    /// being wiped: store such values unescaped (or base64) where that matters.
    ///
    /// Errors: [`ErrorKind::InvalidInput`] when the secret is not a JSON object, is not valid
    /// JSON, or the field is `null`, an object or an array; [`ErrorKind::NotFound`] when the
    /// field is missing. When a key repeats, the last value wins (as in `serde_json::Value`).
    /// Error messages name the field and a position, never a value.
    pub fn json_field(&self, field: &str) -> Result<SecretString> {
        json::field(self.buf.as_slice(), field, memory::default_policy())
    }

    /// Reads several top-level fields of a JSON object in one parse, each into its own locked
    /// buffer, in the order of `fields`: for a credential read as a whole (`host`, `port`,
    /// `username`, `password`). Errors as [`Secret::json_field`]; a missing field fails the
    /// whole read (nothing is returned) with [`ErrorKind::NotFound`] naming it; an empty list
    /// or a name asked for twice is [`ErrorKind::InvalidInput`].
    pub fn json_fields(&self, fields: &[&str]) -> Result<Vec<SecretString>> {
        json::fields(self.buf.as_slice(), fields, memory::default_policy())
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
    /// Copies `src` into locked memory and wipes `src` (even when allocation fails).
    pub fn from_mut_str(src: &mut str) -> Result<SecretString> {
        let copied = Secret::init_with(src.len(), |dst| {
            dst.copy_from_slice(src.as_bytes());
            Ok(())
        });
        src.zeroize();
        // The bytes came from a `str`, so they are valid UTF-8 without checking again.
        Ok(SecretString { inner: copied? })
    }

    /// Takes a `String`, wiping its whole buffer (capacity included) before returning.
    pub fn from_string(mut src: String) -> Result<SecretString> {
        let s = Self::from_mut_str(src.as_mut_str());
        src.zeroize();
        s
    }

    /// Reads one top-level field of a JSON object; see [`Secret::json_field`].
    pub fn json_field(&self, field: &str) -> Result<SecretString> {
        self.inner.json_field(field)
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

#[cfg(test)]
mod tests {
    use std::io::{self, Read};

    use super::*;

    /// Hands out `data` in pieces of at most `step` bytes, interrupting before each piece.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
        interrupt: bool,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.interrupt = !self.interrupt;
            if self.interrupt {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + 3) as u8).collect()
    }

    #[test]
    fn secrets_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Secret>();
        assert_send_sync::<SecretString>();
    }

    #[test]
    fn from_reader_grows_across_slots_and_mappings() {
        for len in [0, 1, 255, 256, 257, 2048, 5000, 70_000] {
            let data = pattern(len);
            let mut r = Trickle {
                data: &data,
                step: 1000,
                interrupt: false,
            };
            let s = Secret::from_reader(&mut r, 70_000).unwrap();
            assert_eq!(s.expose_secret(), &data[..], "len {len}");
            assert!(s.is_locked());
        }
    }

    #[test]
    fn from_reader_accepts_exactly_max_len_and_rejects_more() {
        let data = pattern(300);
        let s = Secret::from_reader(&mut &data[..], 300).unwrap();
        assert_eq!(s.len(), 300);
        let e = Secret::from_reader(&mut &data[..], 299).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().contains("299"));
        let e = Secret::from_reader(&mut &data[..], 0).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn from_reader_reports_io_errors() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::BrokenPipe, "pipe closed"))
            }
        }
        let e = Secret::from_reader(&mut Broken, 10).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
    }

    #[test]
    fn buffer_constructors_wipe_their_source() {
        let mut raw = *b"correct horse";
        let s = Secret::from_mut_slice(&mut raw).unwrap();
        assert_eq!(s.expose_secret(), b"correct horse");
        assert_eq!(raw, [0; 13]);

        let mut text = String::from("battery staple");
        let s = SecretString::from_mut_str(text.as_mut_str()).unwrap();
        assert_eq!(s.expose_secret(), "battery staple");
        assert!(text.bytes().all(|b| b == 0));

        let z = Zeroizing::new(b"zeroizing".to_vec());
        assert_eq!(
            Secret::from_zeroizing(z).unwrap().expose_secret(),
            b"zeroizing"
        );
        let st = SecretString::from_string("owned".to_owned()).unwrap();
        assert_eq!(st.expose_secret(), "owned");
    }

    #[test]
    fn a_failing_initialiser_fails_the_constructor() {
        let e = Secret::init_with(16, |b| {
            b.fill(1);
            Err(Error::internal("generator failed"))
        })
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Internal);
    }

    #[test]
    fn equality_is_explicit_and_length_aware() {
        let a = Secret::from_mut_slice(&mut b"abc".to_vec()).unwrap();
        let b = a.try_clone().unwrap();
        let c = Secret::from_mut_slice(&mut b"abd".to_vec()).unwrap();
        assert!(a.ct_eq(&b));
        assert!(!a.ct_eq(&c));
        assert!(!a.ct_eq_bytes(b"ab"));
        assert!(a.ct_eq_bytes(b"abc"));
        let r1 = Secret::random(32).unwrap();
        let r2 = Secret::random(32).unwrap();
        assert!(!r1.ct_eq(&r2), "two random 32-byte secrets collided");
    }

    #[test]
    fn into_string_checks_utf8() {
        let bad = Secret::from_mut_slice(&mut [0xff, 0xfe]).unwrap();
        assert_eq!(
            bad.into_string().unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        let good = Secret::from_mut_slice(&mut "é".as_bytes().to_vec()).unwrap();
        assert_eq!(good.into_string().unwrap().expose_secret(), "é");
    }

    #[test]
    fn debug_is_redacted() {
        let s = SecretString::from_string("hunter2".to_owned()).unwrap();
        assert_eq!(format!("{s:?}"), "SecretString([REDACTED])");
        assert_eq!(format!("{:?}", s.as_secret()), "Secret([REDACTED])");
        assert_eq!(format!("{:#?}", s.into_secret()), "Secret([REDACTED])");
    }

    #[test]
    fn json_field_works_on_both_types() {
        let doc =
            SecretString::from_string(r#"{"username":"u","password":"p"}"#.to_owned()).unwrap();
        assert_eq!(doc.json_field("password").unwrap().expose_secret(), "p");
        assert_eq!(
            doc.as_secret()
                .json_field("username")
                .unwrap()
                .expose_secret(),
            "u"
        );
    }
}
