//! Credential generators: values drawn from the OS CSPRNG straight into locked memory.

use crate::error::{Error, Result};
use crate::secret::Secret;

/// What a new credential looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Generator {
    /// `bytes` random bytes as lowercase hex (`2 * bytes` characters), like `openssl rand -hex`.
    Hex {
        /// Random bytes.
        bytes: usize,
    },
}

impl Generator {
    /// A new value in locked memory.
    pub fn generate(&self) -> Result<Secret> {
        match self {
            Generator::Hex { bytes } => hex_token(*bytes),
        }
    }
}

fn fill_random(dst: &mut [u8]) -> Result<()> {
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), dst)
        .map_err(|_| Error::internal("the OS random generator failed; no value was made"))
}

fn hex_token(bytes: usize) -> Result<Secret> {
    if bytes == 0 {
        return Err(Error::invalid_input(
            "a token needs at least one random byte",
        ));
    }
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    Secret::init_with(bytes * 2, |out| {
        // The random bytes go in the second half and are spelled out in place, front to
        // back: each write lands on bytes already read, so no copy is left outside.
        let (_, tail) = out.split_at_mut(bytes);
        fill_random(tail)?;
        for i in 0..bytes {
            let b = out[bytes + i];
            out[2 * i] = DIGITS[usize::from(b >> 4)];
            out[2 * i + 1] = DIGITS[usize::from(b & 15)];
        }
        Ok(())
    })
}
