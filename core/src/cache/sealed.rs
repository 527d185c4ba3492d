//! Sealed mode: cached values kept AES-256-GCM-encrypted under an ephemeral in-process key and
//! decrypted into a fresh [`Secret`] on every access.
//!
//! The key is derived (HKDF-SHA256) from a 16 KiB random prekey, following OpenSSH's key
//! shielding. Limit, stated plainly: ring keeps the derived AES key schedule in ordinary heap
//! memory for the cache's lifetime, so sealed mode protects cached values against scraping of
//! the cache's own pages and against dumps that miss the key, not against an attacker who can
//! read all of the process's memory.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, Tag, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::ExposeSecret;

use crate::error::{Error, ErrorKind, Result};
use crate::secret::Secret;

const PREKEY_LEN: usize = 16 * 1024;

/// A value sealed under the cache key.
pub(crate) struct SealedValue {
    nonce: [u8; NONCE_LEN],
    tag: [u8; 16],
    ciphertext: Box<[u8]>,
}

/// The ephemeral sealing key.
pub(crate) struct Sealer {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([REDACTED])")
    }
}

impl Sealer {
    /// A new random key (the prekey is wiped after derivation).
    pub(crate) fn new() -> Result<Sealer> {
        let prekey = Secret::random(PREKEY_LEN)?;
        let rng = SystemRandom::new();
        let mut salt = [0u8; 32];
        rng.fill(&mut salt)
            .map_err(|_| Error::internal("OS random generator failed"))?;
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &salt).extract(prekey.expose_secret());
        let okm = prk
            .expand(&[b"sealbox cache sealing key v1"], &AES_256_GCM)
            .map_err(|_| Error::internal("deriving the cache sealing key failed"))?;
        let key = LessSafeKey::new(UnboundKey::from(okm));
        Ok(Sealer { key, rng })
    }

    /// Seals `value`, binding it to `aad` (the cache key).
    pub(crate) fn seal(&self, value: &Secret, aad: &[u8]) -> Result<SealedValue> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| Error::internal("OS random generator failed"))?;
        let mut ciphertext: Box<[u8]> = value.expose_secret().into();
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut ciphertext,
            )
            .map_err(|_| Error::internal("sealing a cached value failed"))?;
        let mut tag_bytes = [0u8; 16];
        tag_bytes.copy_from_slice(tag.as_ref());
        Ok(SealedValue {
            nonce,
            tag: tag_bytes,
            ciphertext,
        })
    }

    /// Decrypts into a fresh locked [`Secret`].
    pub(crate) fn open(&self, sealed: &SealedValue, aad: &[u8]) -> Result<Secret> {
        Secret::init_with(sealed.ciphertext.len(), |dst| {
            dst.copy_from_slice(&sealed.ciphertext);
            self.key
                .open_in_place_separate_tag(
                    Nonce::assume_unique_for_key(sealed.nonce),
                    Aad::from(aad),
                    Tag::from(sealed.tag),
                    dst,
                    0..,
                )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(bytes: &[u8]) -> Secret {
        Secret::from_mut_slice(&mut bytes.to_vec()).unwrap()
    }

    #[test]
    fn round_trips_and_hides_the_plaintext() {
        let s = Sealer::new().unwrap();
        let sealed = s.seal(&secret(b"hunter2-hunter2"), b"k").unwrap();
        assert_ne!(&*sealed.ciphertext, b"hunter2-hunter2");
        assert_eq!(
            s.open(&sealed, b"k").unwrap().expose_secret(),
            b"hunter2-hunter2"
        );
    }

    #[test]
    fn wrong_binding_or_tamper_is_an_integrity_error() {
        let s = Sealer::new().unwrap();
        let mut sealed = s.seal(&secret(b"value"), b"a").unwrap();
        assert_eq!(
            s.open(&sealed, b"b").unwrap_err().kind(),
            ErrorKind::Integrity
        );
        sealed.ciphertext[0] ^= 1;
        assert_eq!(
            s.open(&sealed, b"a").unwrap_err().kind(),
            ErrorKind::Integrity
        );
    }
}
