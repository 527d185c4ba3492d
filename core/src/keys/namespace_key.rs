//! Namespace keys: one random key per namespace, held by the key provider outside the vault
//! file (the local key file keeps them beside the master versions). A namespace's KEKs are
//! wrapped under a key derived from BOTH the master key and the namespace key, so destroying
//! the namespace key in the provider makes every copy of the vault taken before (backups, WAL
//! frames, free pages) unreadable for that namespace, while the master key still opens the
//! other namespaces of those copies.
//!
//! The derivation is HKDF-SHA-256 (ring): input key material `master || namespace key`, info
//! naming the scheme, the namespace and the namespace key's tag. The derived key's id in the
//! envelope header is `ns:<tag>`, which is how an unwrap recognises a namespace-bound KEK and
//! finds its namespace key (or learns that it was destroyed).

use ring::hkdf;
use secrecy::ExposeSecret;

use super::data_key::{DataKey, KEY_LEN};
use super::ids::KeyId;
use crate::error::{Error, ErrorKind, Result};
use crate::secret::Secret;

/// Bytes of a namespace key's tag (random, names the key in envelope headers).
pub(crate) const TAG_LEN: usize = 8;

/// The envelope key-id prefix of a key derived from a namespace key.
const ID_PREFIX: &str = "ns:";

const SALT: &[u8] = b"sealbox/namespace-wrap/v1";

/// One namespace's key: the scoped namespace name (`<store id>/<namespace>`), a random tag and
/// 32 random bytes in locked memory.
pub(crate) struct NamespaceKey {
    pub(crate) name: String,
    pub(crate) tag: [u8; TAG_LEN],
    pub(crate) material: Secret,
}

impl std::fmt::Debug for NamespaceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamespaceKey")
            .field("name", &self.name)
            .field("tag", &hex::encode(self.tag))
            .finish_non_exhaustive()
    }
}

impl NamespaceKey {
    /// A fresh random key (and tag) for `name`.
    pub(crate) fn generate(name: &str) -> Result<NamespaceKey> {
        let tag_bytes = Secret::random(TAG_LEN)?;
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(tag_bytes.expose_secret());
        Ok(NamespaceKey {
            name: name.to_owned(),
            tag,
            material: Secret::key_with(KEY_LEN, |dst| {
                ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), dst)
                    .map_err(|_| Error::internal("OS random generator failed"))
            })?,
        })
    }

    /// The key id a key derived from this namespace key carries in envelope headers.
    pub(crate) fn derived_id(&self) -> Result<KeyId> {
        KeyId::new(format!("{ID_PREFIX}{}", hex::encode(self.tag)))
    }

    /// The wrapping key for this namespace under `master`: HKDF-SHA-256 over both keys. It
    /// keeps the master key's version, so envelope headers still say which master it needs.
    pub(crate) fn derive(&self, master: &DataKey) -> Result<DataKey> {
        let ikm = Secret::key_with(2 * KEY_LEN, |dst| {
            dst[..KEY_LEN].copy_from_slice(master.material().expose_secret());
            dst[KEY_LEN..].copy_from_slice(self.material.expose_secret());
            Ok(())
        })?;
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(ikm.expose_secret());
        let name_len = [u8::try_from(self.name.len()).unwrap_or(u8::MAX)];
        let info: [&[u8]; 4] = [SALT, &name_len, self.name.as_bytes(), &self.tag];
        let okm = prk
            .expand(&info, hkdf::HKDF_SHA256)
            .map_err(|_| Error::internal("HKDF refused a 32-byte output"))?;
        let material = Secret::key_with(KEY_LEN, |dst| {
            okm.fill(dst)
                .map_err(|_| Error::internal("HKDF could not fill 32 bytes"))
        })?;
        DataKey::from_secret(self.derived_id()?, master.version(), material)
    }
}

/// The namespace key tag named by an envelope key id, if it is a derived (`ns:`) id.
pub(crate) fn tag_of(key_id: &str) -> Option<[u8; TAG_LEN]> {
    let hex_tag = key_id.strip_prefix(ID_PREFIX)?;
    let bytes = hex::decode(hex_tag).ok()?;
    <[u8; TAG_LEN]>::try_from(bytes).ok()
}

/// The error for a KEK wrapped under a namespace key that is no longer there.
pub(crate) fn destroyed(tag: &[u8; TAG_LEN], provider: &KeyId) -> Error {
    Error::new(
        ErrorKind::KeyDestroyed,
        format!(
            "the namespace key ns:{} is not in master key {provider}: the namespace was \
             erased, so this copy of its keys can never be read again",
            hex::encode(tag)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyVersion;

    fn master() -> DataKey {
        DataKey::generate(KeyId::new("local").unwrap(), KeyVersion::FIRST).unwrap()
    }

    #[test]
    fn the_wrapping_key_needs_both_the_master_and_the_namespace_key() {
        let m = master();
        let a = NamespaceKey::generate("store/a").unwrap();
        let ka = a.derive(&m).unwrap();
        let sealed = crate::keys::Envelope::seal(&ka, b"ctx", b"kek bytes").unwrap();
        // Same inputs: same key.
        let again = a.derive(&m).unwrap();
        assert!(crate::keys::Envelope::open(&again, b"ctx", &sealed).is_ok());
        // Another namespace key with the same tag and name but other bytes: no.
        let other = NamespaceKey {
            name: a.name.clone(),
            tag: a.tag,
            material: Secret::random(KEY_LEN).unwrap(),
        };
        let wrong = other.derive(&m).unwrap();
        assert_eq!(
            crate::keys::Envelope::open(&wrong, b"ctx", &sealed)
                .unwrap_err()
                .kind(),
            ErrorKind::Integrity
        );
        // Another master: no.
        let wrong = a.derive(&master()).unwrap();
        assert!(crate::keys::Envelope::open(&wrong, b"ctx", &sealed).is_err());
        assert_eq!(tag_of(ka.id().as_str()), Some(a.tag));
        assert_eq!(tag_of("local"), None);
    }
}
