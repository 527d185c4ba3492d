//! [`DataKey`]: one AES-256-GCM key, its identity, and a use counter that bounds how many
//! random nonces it ever draws.
//!
//! Both the raw 32 bytes and ring's expanded key schedule (`LessSafeKey`) live in locked
//! memory ([`Secret`]) and are wiped when the key drops, so the hot path runs no key schedule
//! per call. Key memory is always locked, whatever the process's [`crate::memory::MemoryPolicy`]:
//! a key that cannot be locked is an [`ErrorKind::MemoryLock`] error, never a key in swappable
//! memory (material handed in unlocked is moved into locked memory first). ring builds the
//! schedule on the stack and moves it into the locked slot; the stack below the call is wiped
//! afterwards (`memory::wipe_stack`), so those copies do not outlive the call either. What is not
//! wiped: CPU registers, and copies in whatever memory a caller's key bytes came from.

use std::mem::{align_of, size_of};
use std::sync::atomic::{AtomicU64, Ordering};

use ring::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
use secrecy::ExposeSecret;

use super::ids::{KeyId, KeyVersion};
use crate::error::{Error, ErrorKind, Result};
use crate::process::ProcessStamp;
use crate::secret::Secret;

/// Length of every sealbox symmetric key (AES-256).
pub const KEY_LEN: usize = 32;

/// The hard limit of encryptions under one key. Random 96-bit nonces collide with probability
/// about n²/2⁹⁷; at 2³⁰ uses that is below 2⁻³⁷, far inside NIST SP 800-38D's 2⁻³² bound.
pub const MAX_USES: u64 = 1 << 30;

/// A symmetric key that seals and opens envelopes: a DEK, a namespace KEK or a local master key.
///
/// Not `Clone`; share it behind an `Arc`. `Debug` shows id, version and use count only.
pub struct DataKey {
    id: KeyId,
    version: KeyVersion,
    material: Secret,
    // A `LessSafeKey` placed at `offset` inside this locked buffer (see `place_schedule`).
    schedule: Secret,
    offset: usize,
    base: usize,
    uses: AtomicU64,
    limit: u64,
    /// Both buffers are wiped in a forked child (ring's schedule, `&'static` included): the
    /// key refuses to run there rather than hand ring a zeroed key object.
    stamp: ProcessStamp,
}

impl DataKey {
    /// A fresh random key from the OS CSPRNG, in locked memory.
    ///
    /// Fails with [`ErrorKind::MemoryLock`] when the key cannot be locked (`RLIMIT_MEMLOCK`).
    pub fn generate(id: KeyId, version: KeyVersion) -> Result<DataKey> {
        let material = Secret::key_with(KEY_LEN, |dst| {
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), dst)
                .map_err(|_| Error::internal("OS random generator failed"))
        })?;
        Self::from_secret(id, version, material)
    }

    /// Takes existing key material (exactly [`KEY_LEN`] bytes). Material in unlocked memory is
    /// copied into locked memory and the original wiped; fails with [`ErrorKind::MemoryLock`]
    /// when that is impossible.
    pub fn from_secret(id: KeyId, version: KeyVersion, material: Secret) -> Result<DataKey> {
        if material.len() != KEY_LEN {
            return Err(Error::invalid_input(format!(
                "key {id} {version}: key material must be {KEY_LEN} bytes, got {}",
                material.len()
            )));
        }
        let material = material.into_locked_key()?;
        let placed = place_schedule(&material);
        // ring built the schedule in stack frames below this one: wipe its copies of the key.
        crate::memory::wipe_stack();
        let (schedule, offset) = placed?;
        let base = schedule.expose_secret().as_ptr() as usize;
        Ok(DataKey {
            id,
            version,
            material,
            schedule,
            offset,
            base,
            uses: AtomicU64::new(0),
            limit: MAX_USES,
            stamp: ProcessStamp::new(),
        })
    }

    /// Lowers the encryption limit below [`MAX_USES`] (e.g. for a tighter policy or a test).
    /// Values above [`MAX_USES`] are capped.
    pub fn with_usage_limit(mut self, limit: u64) -> DataKey {
        self.limit = limit.min(MAX_USES);
        self
    }

    /// The key's id.
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// The key's version.
    pub fn version(&self) -> KeyVersion {
        self.version
    }

    /// How many encryptions this in-memory key has performed. The count is per process: a
    /// key unwrapped again starts from zero. The local vault therefore also keeps a persisted
    /// count per KEK and DEK, shared by every process and incremented in the transaction that
    /// stores each encryption, and rotates DEKs on a schedule.
    pub fn uses(&self) -> u64 {
        self.uses.load(Ordering::Relaxed).min(self.limit)
    }

    /// True once half of the encryption limit is spent: make a new key soon.
    pub fn needs_rotation(&self) -> bool {
        self.uses.load(Ordering::Relaxed) >= self.limit / 2
    }

    /// Whether the key's memory (its bytes and its schedule) is locked in RAM. Always `true`:
    /// a key that cannot be locked is never made. For monitoring and tests.
    pub fn is_locked(&self) -> bool {
        self.material.is_locked() && self.schedule.is_locked()
    }

    /// Bytes of locked memory one key occupies (its bytes and its schedule), for sizing caches
    /// of keys to the memlock budget.
    pub(crate) fn locked_footprint() -> usize {
        crate::memory::locked_footprint(KEY_LEN)
            + crate::memory::locked_footprint(
                size_of::<LessSafeKey>() + align_of::<LessSafeKey>() - 1,
            )
    }

    /// The raw key bytes, for wrapping under a higher key.
    pub(crate) fn material(&self) -> &Secret {
        &self.material
    }

    /// Counts one encryption, refusing once the limit is reached.
    pub(crate) fn count_use(&self) -> Result<()> {
        // Relaxed is enough: the counter only bounds a total, it orders nothing else.
        let before = self.uses.fetch_add(1, Ordering::Relaxed);
        if before >= self.limit {
            // Keep the counter from wrapping however long callers keep trying.
            self.uses.store(self.limit, Ordering::Relaxed);
            return Err(Error::new(
                ErrorKind::KeyExhausted,
                format!(
                    "key {} {} reached its limit of {} encryptions and is retired for \
                     encryption; rotate it (a new DEK) and re-encrypt",
                    self.id, self.version, self.limit
                ),
            ));
        }
        Ok(())
    }

    /// ring's key, kept in locked memory.
    pub(crate) fn aead(&self) -> Result<&LessSafeKey> {
        self.stamp.check("key")?;
        let bytes = self.schedule.expose_secret();
        // The schedule was written at a fixed address; a memory layer that moved slot contents
        // would make the read below unsound, so check instead of assuming.
        if bytes.as_ptr() as usize != self.base {
            return Err(Error::internal("locked key schedule moved in memory"));
        }
        // SAFETY: `place_schedule` wrote a valid `LessSafeKey` at `offset` (aligned, in bounds)
        // of this buffer, whose address is unchanged (checked above). The buffer is never
        // written again until the `Secret` drops and wipes it, and `LessSafeKey` has no
        // interior mutability, so a shared reference for `&self`'s lifetime is sound.
        Ok(unsafe { &*bytes.as_ptr().add(self.offset).cast::<LessSafeKey>() })
    }
}

/// Expands `material` into a `LessSafeKey` written straight into a locked buffer. Never
/// inlined, so that every stack copy ring makes lies below the caller, which wipes them.
///
/// `LessSafeKey` has no `Drop` glue (its fields are plain arrays and a `&'static`), so never
/// running its destructor loses nothing; the bytes are wiped when the `Secret` drops.
#[inline(never)]
fn place_schedule(material: &Secret) -> Result<(Secret, usize)> {
    let size = size_of::<LessSafeKey>();
    let align = align_of::<LessSafeKey>();
    let mut offset = 0;
    let schedule = Secret::key_with(size + align - 1, |buf| {
        let ptr = buf.as_mut_ptr();
        offset = ptr.align_offset(align);
        if offset.checked_add(size).is_none_or(|end| end > buf.len()) {
            return Err(Error::internal(
                "cannot align key schedule in locked memory",
            ));
        }
        let unbound = UnboundKey::new(&AES_256_GCM, material.expose_secret())
            .map_err(|_| Error::internal("AES-256-GCM rejected a 32-byte key"))?;
        // SAFETY: `ptr + offset` is aligned for `LessSafeKey` and `offset + size <= buf.len()`
        // (checked above), and `buf` is exclusively borrowed, so the write is in bounds and
        // overwrites nothing that needs dropping.
        unsafe {
            ptr.add(offset)
                .cast::<LessSafeKey>()
                .write(LessSafeKey::new(unbound))
        };
        Ok(())
    })?;
    Ok((schedule, offset))
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("id", &self.id)
            .field("version", &self.version)
            .field("uses", &self.uses())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> DataKey {
        DataKey::generate(KeyId::new("t").unwrap(), KeyVersion::FIRST).unwrap()
    }

    #[test]
    fn a_key_is_locked_and_leaves_no_copy_outside_locked_memory() {
        use crate::memory::scan::{Masked, find_copies, is_locked_page};
        let k = key();
        assert!(k.is_locked());
        let value = Masked::of(k.material().expose_secret());
        // The material and the schedule (whose first round keys are the key): both locked. The
        // stack frames ring built the schedule in were wiped.
        let copies = find_copies(&value);
        assert!(copies.len() >= 2, "{copies:x?}");
        for at in &copies {
            assert!(
                is_locked_page(*at),
                "a copy of the key at {at:#x} is unlocked"
            );
        }
        drop(k);
        assert_eq!(find_copies(&value), Vec::<usize>::new());
    }

    #[test]
    fn refuses_material_of_the_wrong_length() {
        let short = Secret::random(16).unwrap();
        let err =
            DataKey::from_secret(KeyId::new("t").unwrap(), KeyVersion::FIRST, short).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn the_locked_schedule_is_the_key_it_was_built_from() {
        // Same material, two placements: both must produce identical ciphertext.
        let k = key();
        let copy = DataKey::from_secret(
            KeyId::new("t").unwrap(),
            KeyVersion::FIRST,
            k.material().try_clone().unwrap(),
        )
        .unwrap();
        let nonce = [7u8; 12];
        let mut a = *b"sixteen byte msg";
        let mut b = a;
        let ta = k
            .aead()
            .unwrap()
            .seal_in_place_separate_tag(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::empty(),
                &mut a,
            )
            .unwrap();
        let tb = copy
            .aead()
            .unwrap()
            .seal_in_place_separate_tag(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::empty(),
                &mut b,
            )
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(ta.as_ref(), tb.as_ref());
        assert_ne!(&a, b"sixteen byte msg");
    }

    #[test]
    fn use_counter_refuses_past_the_limit_and_flags_rotation_at_half() {
        let k = key().with_usage_limit(4);
        assert!(!k.needs_rotation());
        k.count_use().unwrap();
        k.count_use().unwrap();
        assert!(k.needs_rotation());
        k.count_use().unwrap();
        k.count_use().unwrap();
        for _ in 0..3 {
            assert_eq!(k.count_use().unwrap_err().kind(), ErrorKind::KeyExhausted);
        }
        assert_eq!(k.uses(), 4);
    }

    #[test]
    fn limit_is_capped_and_debug_shows_no_material() {
        let k = key().with_usage_limit(u64::MAX);
        assert_eq!(k.limit, MAX_USES);
        let dbg = format!("{k:?}");
        assert!(dbg.contains("DataKey") && dbg.contains("uses"));
        assert!(!dbg.contains(&hex::encode(k.material().expose_secret())));
    }
}
