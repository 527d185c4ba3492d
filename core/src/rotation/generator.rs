//! Credential generators: values drawn from the OS CSPRNG (`getrandom(2)` through `ring`)
//! straight into locked memory. No byte of a value is ever outside a [`Secret`]'s buffer: the
//! random bytes are drawn into it and mapped onto the alphabet in place.

use base64::Engine as _;

use crate::error::{Error, Result};
use crate::secret::Secret;

use super::policy::CredentialPolicy;

/// What a new credential looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Generator {
    /// A password of `length` characters (at least the policy's minimum) meeting `policy`.
    Password {
        /// Characters.
        length: usize,
        /// The policy every output meets.
        policy: CredentialPolicy,
    },
    /// `bytes` random bytes as lowercase hex (`2 * bytes` characters), like `openssl rand -hex`.
    Hex {
        /// Random bytes.
        bytes: usize,
    },
    /// `bytes` random bytes as unpadded base64url.
    Base64Url {
        /// Random bytes.
        bytes: usize,
    },
    /// `PREFIX_` then `bytes` random bytes as unpadded base64url (`sbk_3x...`): a key a
    /// scanner can recognise by its prefix.
    ApiKey {
        /// The prefix, ASCII letters and digits.
        prefix: String,
        /// Random bytes.
        bytes: usize,
    },
}

impl Generator {
    /// A SOC2 password of 24 characters.
    pub fn soc2_password() -> Generator {
        Generator::Password {
            length: 24,
            policy: CredentialPolicy::SOC2,
        }
    }

    /// A new value in locked memory.
    pub fn generate(&self) -> Result<Secret> {
        match self {
            Generator::Password { length, policy } => password(*length, policy),
            Generator::Hex { bytes } => hex_token(*bytes),
            Generator::Base64Url { bytes } => base64url(b"", *bytes),
            Generator::ApiKey { prefix, bytes } => {
                if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(Error::invalid_input(
                        "an API key prefix is one or more ASCII letters and digits",
                    ));
                }
                base64url(format!("{prefix}_").as_bytes(), *bytes)
            }
        }
    }
}

fn fill_random(dst: &mut [u8]) -> Result<()> {
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), dst)
        .map_err(|_| Error::internal("the OS random generator failed; no value was made"))
}

fn need_bytes(bytes: usize) -> Result<()> {
    if bytes < 16 {
        return Err(Error::invalid_input(
            "a token needs at least 16 random bytes (128 bits)",
        ));
    }
    Ok(())
}

fn hex_token(bytes: usize) -> Result<Secret> {
    need_bytes(bytes)?;
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    Secret::init_with(bytes * 2, |out| {
        // The random bytes go in the second half and are spelled out front to back: each
        // write lands on a byte already read.
        fill_random(&mut out[bytes..])?;
        for i in 0..bytes {
            let b = out[bytes + i];
            out[2 * i] = DIGITS[usize::from(b >> 4)];
            out[2 * i + 1] = DIGITS[usize::from(b & 15)];
        }
        Ok(())
    })
}

fn base64url(prefix: &[u8], bytes: usize) -> Result<Secret> {
    need_bytes(bytes)?;
    let raw = Secret::init_with(bytes, fill_random)?;
    let encoded =
        base64::encoded_len(bytes, false).ok_or_else(|| Error::invalid_input("token too long"))?;
    Secret::init_with(prefix.len() + encoded, |out| {
        out[..prefix.len()].copy_from_slice(prefix);
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode_slice(
                secrecy::ExposeSecret::expose_secret(&raw),
                &mut out[prefix.len()..],
            )
            .map_err(|_| Error::internal("base64 length mismatch"))?;
        Ok(())
    })
}

/// Draws each character by rejection sampling (no modulo bias), in place, until the whole
/// password meets the policy.
fn password(length: usize, policy: &CredentialPolicy) -> Result<Secret> {
    let length = length.max(policy.min_length);
    let alphabet = policy.alphabet();
    let n = alphabet.len();
    // The largest multiple of n that fits in a byte: bytes at or above it are drawn again.
    let limit = 256 - 256 % n;
    if length == 0 {
        return Err(Error::invalid_input("a password needs a length"));
    }
    Secret::init_with(length, |out| {
        for _ in 0..10_000 {
            for slot in out.iter_mut() {
                loop {
                    fill_random(std::slice::from_mut(slot))?;
                    if usize::from(*slot) < limit {
                        break;
                    }
                }
                *slot = alphabet[usize::from(*slot) % n];
            }
            if policy.violations(out).is_empty() {
                return Ok(());
            }
        }
        Err(Error::invalid_input(format!(
            "no {length}-character password met the policy in 10000 draws; lengthen it or relax \
             the policy"
        )))
    })
}
