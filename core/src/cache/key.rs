//! Keys of the read index, hashed and compared as bytes.
//!
//! A binding (C, Python) receives names as bytes. Keying the index by bytes lets its hit path
//! look a name up before validating it as UTF-8: every stored key is a `str`, so a name that
//! equals one is valid UTF-8 too, and only misses pay for the validation.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use papaya::Equivalent;

/// A key stored in the index: the reference string the caller passed (shared with the
/// entry, the flight and moka, so a miss allocates it once).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct IndexKey(pub(super) Arc<str>);

impl IndexKey {
    #[cfg(test)]
    pub(super) fn new(key: &str) -> IndexKey {
        IndexKey(key.into())
    }
}

impl Hash for IndexKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        KeyBytes(self.0.as_bytes()).hash(state);
    }
}

/// A lookup by bytes; hashes exactly as the [`IndexKey`] with the same bytes.
#[derive(Clone, Copy, Debug)]
pub(super) struct KeyBytes<'a>(pub(super) &'a [u8]);

impl Hash for KeyBytes<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // `write` alone (no length prefix, no `str` terminator), the same for both types.
        state.write(self.0);
    }
}

impl Equivalent<IndexKey> for KeyBytes<'_> {
    fn equivalent(&self, key: &IndexKey) -> bool {
        self.0 == key.0.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn bytes_and_keys_hash_and_compare_alike() {
        let s = foldhash::fast::RandomState::default();
        let k = IndexKey::new("predis/prod/db");
        assert_eq!(s.hash_one(&k), s.hash_one(KeyBytes(b"predis/prod/db")));
        assert!(KeyBytes(b"predis/prod/db").equivalent(&k));
        assert!(!KeyBytes(b"predis/prod/d").equivalent(&k));
        assert!(!KeyBytes(b"predis/prod/db\xff").equivalent(&k));
    }

    #[test]
    fn a_map_finds_by_bytes_what_was_inserted_by_str() {
        let m = papaya::HashMap::with_hasher(foldhash::fast::RandomState::default());
        m.pin().insert(IndexKey::new("a/b"), 1);
        assert_eq!(m.pin().get(&KeyBytes(b"a/b")), Some(&1));
        assert_eq!(m.pin().get(&KeyBytes(b"a/\xff")), None);
    }
}
