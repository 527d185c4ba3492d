//! Sealed mode: cached values kept AES-256-GCM-encrypted in memory and decrypted into a fresh
//! [`Secret`] on every access.
//!
//! Everything the mode holds lives in the locked arena (see [`crate::memory`]): dump-excluded,
//! zero in a forked child, wiped when dropped.
//! - The key is a [`DataKey`] made for this cache: its 32 bytes and ring's expanded schedule are
//!   always locked, whatever the process's memory policy (a cache whose key cannot be locked
//!   fails to build with [`ErrorKind::MemoryLock`]).
//! - Each value is one buffer of nonce, tag and ciphertext, allocated under the process's
//!   memory policy like a plain-mode value.
//!
//! - The key is a session key: a new one (the next version) seals values once the current one
//!   is older than the session period of [`RotationSchedule`] (24 hours by default) or has
//!   reached its limit of encryptions. Each sealed value holds the key it was sealed under, so a
//!   rotated-out key opens the values it sealed and is wiped when the last of them leaves the
//!   cache: no key outlives what it protects, and the read path looks up nothing.
//!
//! A plaintext exists only in the handles returned to callers, for as long as they hold them.
//! A disclosure of the cached values' memory alone shows ciphertext, and a changed byte fails
//! authentication ([`ErrorKind::Integrity`]) instead of returning a wrong value. The limit,
//! stated plainly: the key is in the same process, so whoever can read all of the process's
//! memory reads the key too. The key is not shielded as OpenSSH shields its keys (a 16 KiB
//! prekey hashed into the key on every use): that derivation measured about 20 µs per access
//! here (HKDF-SHA256 over 16 KiB plus ring's key setup), a hundred times the ~0.2 µs of a whole
//! sealed hit, so the expanded key stays resident in locked memory instead.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ring::aead::{Aad, NONCE_LEN, Nonce, Tag};
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::ExposeSecret;

use crate::error::{Error, ErrorKind, Result};
use crate::keys::{DataKey, KeyId, KeyRole, KeyVersion, RotationSchedule, TAG_LEN};
use crate::secret::Secret;

/// Bytes in front of a sealed value's ciphertext: its nonce and its tag.
const HEADER_LEN: usize = NONCE_LEN + TAG_LEN;

/// A value sealed under the cache key: `nonce | tag | ciphertext` in one locked buffer.
pub(crate) struct SealedValue {
    bytes: Secret,
    /// The key it was sealed under: a rotated-out key lives as long as the values it sealed.
    key: Arc<DataKey>,
}

impl SealedValue {
    fn parts(&self) -> (&[u8], &[u8], &[u8]) {
        let (nonce, rest) = self.bytes.expose_secret().split_at(NONCE_LEN);
        let (tag, ciphertext) = rest.split_at(TAG_LEN);
        (nonce, tag, ciphertext)
    }
}

/// The key new values are sealed under, and since when.
struct Current {
    key: Arc<DataKey>,
    since: Instant,
}

/// The cache's sealing keys: the current session key (made when the cache is, replaced after
/// `period` or at its use limit), and through the values, the older keys still needed.
pub(crate) struct Sealer {
    current: RwLock<Current>,
    period: Duration,
    rng: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([REDACTED])")
    }
}

impl Sealer {
    /// A new random key in locked memory, replaced after the default session period.
    pub(crate) fn new() -> Result<Sealer> {
        Self::with_period(RotationSchedule::default().period(KeyRole::Session).0)
    }

    /// A new random key in locked memory, replaced once it is `period` old.
    pub(crate) fn with_period(period: Duration) -> Result<Sealer> {
        Ok(Sealer {
            current: RwLock::new(Current {
                key: Arc::new(session_key(KeyVersion::FIRST)?),
                since: Instant::now(),
            }),
            period,
            rng: SystemRandom::new(),
        })
    }

    /// The key to seal one more value under (counted as one use): the current one while it
    /// is younger than the period and below its limit, else its successor.
    fn key_for_seal(&self) -> Result<Arc<DataKey>> {
        let usable = |c: &Current| c.since.elapsed() < self.period && c.key.count_use().is_ok();
        {
            let c = self.current.read().unwrap_or_else(|e| e.into_inner());
            if usable(&c) {
                return Ok(c.key.clone());
            }
        }
        // Replacements are whole: a poisoned lock still holds a consistent key.
        let mut c = self.current.write().unwrap_or_else(|e| e.into_inner());
        if usable(&c) {
            // Another thread rotated meanwhile.
            return Ok(c.key.clone());
        }
        let key = Arc::new(session_key(c.key.version().next()?)?);
        key.count_use()?;
        *c = Current {
            key: key.clone(),
            since: Instant::now(),
        };
        Ok(key)
    }

    /// Seals `value`, binding it to `aad` (the cache key).
    pub(crate) fn seal(&self, value: &Secret, aad: &[u8]) -> Result<SealedValue> {
        // Random nonces: the key's use counter bounds how many it ever draws.
        let key = self.key_for_seal()?;
        let aead = key.aead()?;
        let plain = value.expose_secret();
        let bytes = Secret::init_with(HEADER_LEN + plain.len(), |buf| {
            let (nonce, rest) = buf.split_at_mut(NONCE_LEN);
            let (tag, ciphertext) = rest.split_at_mut(TAG_LEN);
            self.rng
                .fill(nonce)
                .map_err(|_| Error::internal("OS random generator failed"))?;
            ciphertext.copy_from_slice(plain);
            let computed = aead
                .seal_in_place_separate_tag(nonce_of(nonce)?, Aad::from(aad), ciphertext)
                .map_err(|_| Error::internal("sealing a cached value failed"))?;
            tag.copy_from_slice(computed.as_ref());
            Ok(())
        })?;
        Ok(SealedValue { bytes, key })
    }

    /// Decrypts into a fresh locked [`Secret`]; a changed byte or another `aad` is an
    /// [`ErrorKind::Integrity`] error.
    pub(crate) fn open(&self, sealed: &SealedValue, aad: &[u8]) -> Result<Secret> {
        let aead = sealed.key.aead()?;
        let (nonce, tag, ciphertext) = sealed.parts();
        let tag = Tag::try_from(tag).map_err(|_| Error::internal("sealed value without a tag"))?;
        Secret::init_with(ciphertext.len(), |dst| {
            dst.copy_from_slice(ciphertext);
            aead.open_in_place_separate_tag(nonce_of(nonce)?, Aad::from(aad), tag, dst, 0..)
                .map(|_| ())
                .map_err(|_| {
                    Error::new(
                        ErrorKind::Integrity,
                        "a sealed cache entry failed authentication (memory corruption?)",
                    )
                })
        })
    }
}

fn session_key(version: KeyVersion) -> Result<DataKey> {
    DataKey::generate(KeyId::new("sealbox-cache")?, version)
}

fn nonce_of(bytes: &[u8]) -> Result<Nonce> {
    Nonce::try_assume_unique_for_key(bytes)
        .map_err(|_| Error::internal("sealed value with a malformed nonce"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::scan::{Masked, find_copies, is_locked_page};

    fn secret(bytes: &[u8]) -> Secret {
        Secret::from_mut_slice(&mut bytes.to_vec()).unwrap()
    }

    #[test]
    fn round_trips_and_hides_the_plaintext() {
        let s = Sealer::new().unwrap();
        let sealed = s.seal(&secret(b"hunter2-hunter2"), b"k").unwrap();
        assert_ne!(sealed.parts().2, b"hunter2-hunter2");
        assert_eq!(
            s.open(&sealed, b"k").unwrap().expose_secret(),
            b"hunter2-hunter2"
        );
        let empty = s.seal(&secret(b""), b"k").unwrap();
        assert!(s.open(&empty, b"k").unwrap().is_empty());
    }

    #[test]
    fn wrong_binding_or_any_flipped_byte_is_an_integrity_error() {
        let s = Sealer::new().unwrap();
        let sealed = s.seal(&secret(b"value"), b"a").unwrap();
        assert_eq!(
            s.open(&sealed, b"b").unwrap_err().kind(),
            ErrorKind::Integrity
        );
        // Every byte: nonce, tag and ciphertext.
        for i in 0..sealed.bytes.len() {
            let mut flipped = SealedValue {
                bytes: sealed.bytes.try_clone().unwrap(),
                key: sealed.key.clone(),
            };
            flip(&mut flipped, i);
            assert_eq!(
                s.open(&flipped, b"a").unwrap_err().kind(),
                ErrorKind::Integrity,
                "byte {i}"
            );
        }
        assert_eq!(s.open(&sealed, b"a").unwrap().expose_secret(), b"value");
    }

    fn flip(sealed: &mut SealedValue, at: usize) {
        let mut bytes = sealed.bytes.expose_secret().to_vec();
        bytes[at] ^= 1;
        sealed.bytes = Secret::from_mut_slice(&mut bytes).unwrap();
    }

    #[test]
    fn the_key_and_every_ciphertext_are_in_locked_pages() {
        let s = Sealer::new().unwrap();
        let sealed: Vec<SealedValue> = [1usize, 100, 3000, 10_000]
            .iter()
            .map(|&n| s.seal(&Secret::random(n).unwrap(), b"k").unwrap())
            .collect();
        let key = sealed[0].key.material().expose_secret();
        assert!(sealed[0].key.material().is_locked());
        assert!(is_locked_page(key.as_ptr() as usize), "key not locked");
        for v in &sealed {
            assert!(v.bytes.is_locked());
            let bytes = v.bytes.expose_secret();
            for at in [0, bytes.len() - 1] {
                assert!(
                    is_locked_page(bytes.as_ptr() as usize + at),
                    "ciphertext of {} bytes not locked",
                    bytes.len() - HEADER_LEN
                );
            }
        }
    }

    #[test]
    fn the_key_is_only_in_locked_memory_and_gone_after_drop() {
        let s = Sealer::new().unwrap();
        let sealed = s.seal(&secret(b"a cached value"), b"k").unwrap();
        let key = Masked::of(sealed.key.material().expose_secret());
        let copies = find_copies(&key);
        // Positive control: the key's own bytes and the schedule's first round key (AES-256's
        // first two round keys are the key itself).
        assert!(!copies.is_empty());
        for at in &copies {
            assert!(
                is_locked_page(*at),
                "a copy of the cache key at {at:#x} is outside locked memory"
            );
        }
        drop(s);
        drop(sealed);
        assert_eq!(find_copies(&key), Vec::<usize>::new());
    }

    #[test]
    fn a_session_key_past_its_period_is_replaced_and_lives_only_as_long_as_its_values() {
        let day = Sealer::new().unwrap();
        assert_eq!(day.period, Duration::from_secs(24 * 3600));
        let a = day.seal(&secret(b"a"), b"k").unwrap();
        let b = day.seal(&secret(b"b"), b"k").unwrap();
        assert!(Arc::ptr_eq(&a.key, &b.key), "one key within the period");

        // A period of zero: every seal finds its key too old and makes the next one.
        let s = Sealer::with_period(Duration::ZERO).unwrap();
        let first = s.seal(&secret(b"first"), b"k").unwrap();
        let second = s.seal(&secret(b"second"), b"k").unwrap();
        assert!(!Arc::ptr_eq(&first.key, &second.key));
        assert!(second.key.version() > first.key.version());
        let old = Masked::of(first.key.material().expose_secret());
        // Both open: each value carries the key it was sealed under.
        assert_eq!(s.open(&first, b"k").unwrap().expose_secret(), b"first");
        assert_eq!(s.open(&second, b"k").unwrap().expose_secret(), b"second");
        assert!(!find_copies(&old).is_empty());
        // The rotated-out key goes (wiped) with the last value it sealed.
        assert_eq!(Arc::strong_count(&first.key), 1);
        drop(first);
        assert_eq!(find_copies(&old), Vec::<usize>::new());
    }
}
