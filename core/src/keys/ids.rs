//! Names and versions of keys: [`KeyId`] and [`KeyVersion`], validated once at the edge.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The longest key id an envelope header can carry.
pub const MAX_KEY_ID_LEN: usize = 128;

/// The name of a key: a master key (`"local"`), a namespace KEK (`"predis/prod"`) or a DEK
/// (`"predis/prod/database/password"`).
///
/// 1 to [`MAX_KEY_ID_LEN`] bytes of ASCII letters, digits and `. _ - / : @ +`. Ids appear in
/// envelope headers and error messages, so they never hold secret material.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyId(String);

impl KeyId {
    /// Validates `id`.
    pub fn new(id: impl Into<String>) -> Result<KeyId> {
        let id = id.into();
        Self::check(id.as_bytes())?;
        Ok(KeyId(id))
    }

    /// Validates raw header bytes without allocating; used by the envelope parser.
    pub(crate) fn check(bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() || bytes.len() > MAX_KEY_ID_LEN {
            return Err(Error::invalid_input(format!(
                "a key id must be 1 to {MAX_KEY_ID_LEN} bytes long, got {}",
                bytes.len()
            )));
        }
        if !bytes.iter().all(|b| is_id_byte(*b)) {
            return Err(Error::invalid_input(
                "a key id may contain only ASCII letters, digits and . _ - / : @ +",
            ));
        }
        Ok(())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which bytes may appear in a key id: a table, because the envelope parser checks every id
/// byte on the hot path.
const ID_BYTES: [bool; 256] = crate::bytes::ascii_alnum_and(b"._-/:@+");

fn is_id_byte(b: u8) -> bool {
    ID_BYTES[usize::from(b)]
}

impl TryFrom<String> for KeyId {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        KeyId::new(value)
    }
}

impl From<KeyId> for String {
    fn from(value: KeyId) -> Self {
        value.0
    }
}

impl std::str::FromStr for KeyId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        KeyId::new(s)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({:?})", self.0)
    }
}

/// A key's generation, starting at 1. Rotation makes the next one; old ones stay readable
/// until retired.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct KeyVersion(u32);

impl KeyVersion {
    /// The first version of every key.
    pub const FIRST: KeyVersion = KeyVersion(1);

    /// Validates `v` (must be at least 1).
    pub fn new(v: u32) -> Result<KeyVersion> {
        if v == 0 {
            return Err(Error::invalid_input("key versions start at 1"));
        }
        Ok(KeyVersion(v))
    }

    /// The number.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The version after this one.
    pub fn next(self) -> Result<KeyVersion> {
        self.0
            .checked_add(1)
            .map(KeyVersion)
            .ok_or_else(|| Error::invalid_input("key version overflow: no version after 2^32-1"))
    }

    /// Big-endian bytes, as written in envelope headers and AAD.
    pub const fn to_be_bytes(self) -> [u8; 4] {
        self.0.to_be_bytes()
    }
}

impl TryFrom<u32> for KeyVersion {
    type Error = Error;
    fn try_from(value: u32) -> Result<Self> {
        KeyVersion::new(value)
    }
}

impl From<KeyVersion> for u32 {
    fn from(value: KeyVersion) -> Self {
        value.0
    }
}

impl fmt::Display for KeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

impl fmt::Debug for KeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyVersion({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn key_ids_accept_secret_paths_and_refuse_odd_bytes() {
        assert!(KeyId::new("predis/prod/database/password").is_ok());
        assert!(KeyId::new("tenant-a:prod@eu+1.x_y").is_ok());
        for bad in [
            "",
            "has space",
            "new\nline",
            "ü",
            &"a".repeat(MAX_KEY_ID_LEN + 1),
        ] {
            assert_eq!(
                KeyId::new(bad).unwrap_err().kind(),
                ErrorKind::InvalidInput,
                "{bad:?}"
            );
        }
        assert!(KeyId::new("a".repeat(MAX_KEY_ID_LEN)).is_ok());
    }

    #[test]
    fn key_versions_start_at_one_and_do_not_wrap() {
        assert_eq!(
            KeyVersion::new(0).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(KeyVersion::FIRST.next().unwrap().get(), 2);
        assert!(KeyVersion::new(u32::MAX).unwrap().next().is_err());
    }

    #[test]
    fn serde_validates() {
        assert!(serde_json::from_str::<KeyVersion>("0").is_err());
        assert!(serde_json::from_str::<KeyId>("\"a b\"").is_err());
        let id: KeyId = serde_json::from_str("\"ns/a\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"ns/a\"");
    }
}
