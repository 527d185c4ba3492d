//! Envelope format v1: the one ciphertext format sealbox writes.
//!
//! ```text
//! offset  size  field
//! 0       4     magic "SBXE"
//! 4       1     format version (1)
//! 5       1     algorithm id (1 = AES-256-GCM)
//! 6       1     key id length n (1..=128)
//! 7       n     key id (ASCII, see KeyId)
//! 7+n     4     key version (big-endian, >= 1)
//! 11+n    12    nonce (random, 96 bits)
//! 23+n    ...   ciphertext
//! end-16  16    GCM tag
//! ```
//!
//! The header (bytes `0 .. 23+n`) is authenticated: the AEAD's associated data is the header
//! followed by the caller's context (for the vault: store, namespace, name, version and key
//! ids), so an envelope cannot be moved to another record or have its header edited.
//!
//! # Stored without its key's part of the header
//! A store that keeps an envelope beside the record of the key that sealed it (the local vault
//! keeps a value beside its wrapped DEK, a wrapped DEK beside its namespace) need not store
//! the bytes that record already holds: magic, format, algorithm, key id length, key id and
//! key version (`11 + n` bytes). [`Envelope::detach_header`] drops them and
//! [`Envelope::attach_header`] rebuilds them from the key's id and version before opening.
//! The rebuilt header is still the first part of the associated data, so nothing loses
//! authentication: a body stored beside the wrong key's record rebuilds a header that was
//! never sealed and fails the tag ([`ErrorKind::Integrity`]).
//!
//! [`Envelope::parse`] is total: every input gives a view or a typed error, never a panic
//! (fuzzed by `fuzz/fuzz_targets/envelope_parse.rs`). Errors: [`ErrorKind::Truncated`] when
//! bytes run out, [`ErrorKind::UnsupportedVersion`] for an unknown format version or algorithm,
//! [`ErrorKind::Integrity`] for a malformed header or a failed tag, [`ErrorKind::WrongKey`]
//! when the envelope names a different key than the one given.
//!
//! Nonces come from the operating system (ring's `SystemRandom`: one `getrandom` call per
//! seal), never from a userspace generator. A userspace generator's state is copied into a
//! forked child, so two workers forked from one parent would draw the same nonces and wrap
//! their DEKs under one KEK with a repeated nonce, which leaks GCM's authentication key. The
//! kernel's pool is not copied by `fork`; `core/tests/keys_fork.rs` checks this with real
//! forks. Every key also carries a use counter (see [`DataKey`]) and DEKs are per secret.

use ring::aead::{Aad, NONCE_LEN, Nonce, Tag};
use ring::rand::{SecureRandom, SystemRandom};

use super::data_key::DataKey;
use super::ids::{KeyVersion, MAX_KEY_ID_LEN};
use crate::error::{Error, ErrorKind, Result};
use crate::secret::Secret;

/// The four bytes every envelope starts with.
pub const MAGIC: [u8; 4] = *b"SBXE";
/// The only format version this build writes and reads.
pub const FORMAT_V1: u8 = 1;
/// Length of the GCM tag at the end of every envelope.
pub const TAG_LEN: usize = 16;

const FIXED_HEADER: usize = 4 + 1 + 1 + 1; // magic, version, algorithm, key id length
const STACK_AAD: usize = 320;

/// The AEAD named in an envelope header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// AES-256-GCM, 96-bit nonce, 128-bit tag (ring). Id 1.
    Aes256Gcm,
}

impl Algorithm {
    /// The byte written in headers.
    pub const fn id(self) -> u8 {
        match self {
            Algorithm::Aes256Gcm => 1,
        }
    }

    fn from_id(id: u8) -> Option<Algorithm> {
        match id {
            1 => Some(Algorithm::Aes256Gcm),
            _ => None,
        }
    }
}

/// A parsed envelope borrowing the input; nothing is decrypted yet.
#[derive(Clone, Copy)]
pub struct EnvelopeView<'a> {
    header: &'a [u8],
    algorithm: Algorithm,
    key_id: &'a str,
    key_version: KeyVersion,
    nonce: [u8; NONCE_LEN],
    ciphertext: &'a [u8],
    tag: &'a [u8],
}

impl<'a> EnvelopeView<'a> {
    /// The AEAD.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The id of the key that sealed it (validated as a [`super::KeyId`]).
    pub fn key_id(&self) -> &'a str {
        self.key_id
    }

    /// The version of the key that sealed it.
    pub fn key_version(&self) -> KeyVersion {
        self.key_version
    }

    /// The header bytes that are part of the associated data.
    pub fn header(&self) -> &'a [u8] {
        self.header
    }

    /// Length of the plaintext this envelope decrypts to.
    pub fn plaintext_len(&self) -> usize {
        self.ciphertext.len()
    }
}

impl std::fmt::Debug for EnvelopeView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvelopeView")
            .field("algorithm", &self.algorithm)
            .field("key_id", &self.key_id)
            .field("key_version", &self.key_version)
            .field("plaintext_len", &self.plaintext_len())
            .finish()
    }
}

/// Seals and opens envelopes with a [`DataKey`]. See the module docs for the format.
///
/// ```
/// use sealbox::ExposeSecret;
/// use sealbox::keys::{DataKey, Envelope, KeyId, KeyVersion};
///
/// let key = DataKey::generate(KeyId::new("billing/invoices")?, KeyVersion::FIRST)?;
/// let context = b"invoice 2024-0042"; // binds the ciphertext to its record
/// let sealed = Envelope::seal(&key, context, b"IBAN DE89 3704 0044 0532 0130 00")?;
/// let opened = Envelope::open(&key, context, &sealed)?;
/// assert_eq!(opened.expose_secret(), b"IBAN DE89 3704 0044 0532 0130 00");
/// assert!(Envelope::open(&key, b"invoice 2024-0043", &sealed).is_err());
/// # Ok::<(), sealbox::Error>(())
/// ```
#[derive(Debug)]
pub struct Envelope;

impl Envelope {
    /// Size of an envelope sealing `plaintext_len` bytes under `key`.
    pub fn sealed_len(key: &DataKey, plaintext_len: usize) -> usize {
        header_len(key.id().as_str().len()) + plaintext_len + TAG_LEN
    }

    /// Encrypts `plaintext` under `key`, binding `context` as associated data.
    pub fn seal(key: &DataKey, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(Self::sealed_len(key, plaintext.len()));
        Self::seal_into(key, context, plaintext, &mut out)?;
        Ok(out)
    }

    /// Like [`Envelope::seal`], appending the envelope to `out` (reusing its capacity). On
    /// error `out` is left as it was.
    pub fn seal_into(
        key: &DataKey,
        context: &[u8],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        key.count_use()?;
        let aead = key.aead()?;
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| Error::internal("the operating system's random source failed"))?;

        let start = out.len();
        out.reserve(Self::sealed_len(key, plaintext.len()));
        let id = key.id().as_str().as_bytes();
        out.extend_from_slice(&MAGIC);
        out.push(FORMAT_V1);
        out.push(Algorithm::Aes256Gcm.id());
        // KeyId guarantees 1..=128 bytes, so the length fits the byte.
        out.push(id.len() as u8);
        out.extend_from_slice(id);
        out.extend_from_slice(&key.version().to_be_bytes());
        out.extend_from_slice(&nonce);
        let body = out.len();
        out.extend_from_slice(plaintext);

        let (head, in_out) = out.split_at_mut(body);
        let sealed = with_aad(&head[start..], context, |aad| {
            aead.seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), aad, in_out)
        });
        match sealed {
            Ok(tag) => {
                out.extend_from_slice(tag.as_ref());
                Ok(())
            }
            Err(_) => {
                // Never leave plaintext behind in the caller's buffer.
                zeroize::Zeroize::zeroize(&mut out[body..]);
                out.truncate(start);
                Err(Error::internal(
                    "AES-256-GCM refused to seal (input too long)",
                ))
            }
        }
    }

    /// Parses the header without decrypting. Total: never panics on any input.
    pub fn parse(bytes: &[u8]) -> Result<EnvelopeView<'_>> {
        if bytes.len() < MAGIC.len() {
            return Err(truncated(bytes.len()));
        }
        if bytes[..4] != MAGIC {
            return Err(Error::new(
                ErrorKind::Integrity,
                "not a sealbox envelope (bad magic bytes): the data is corrupted or was not \
                 written by sealbox",
            ));
        }
        let version = *bytes.get(4).ok_or_else(|| truncated(bytes.len()))?;
        if version != FORMAT_V1 {
            return Err(Error::new(
                ErrorKind::UnsupportedVersion,
                format!(
                    "envelope format version {version} is not supported by this build (it \
                     reads version {FORMAT_V1}); upgrade sealbox"
                ),
            ));
        }
        let alg = *bytes.get(5).ok_or_else(|| truncated(bytes.len()))?;
        let algorithm = Algorithm::from_id(alg).ok_or_else(|| {
            Error::new(
                ErrorKind::UnsupportedVersion,
                format!("envelope algorithm id {alg} is not supported by this build"),
            )
        })?;
        let id_len = usize::from(*bytes.get(6).ok_or_else(|| truncated(bytes.len()))?);
        if id_len == 0 || id_len > MAX_KEY_ID_LEN {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!("envelope header is malformed: key id length {id_len}"),
            ));
        }
        let header_end = header_len(id_len);
        if bytes.len() < header_end + TAG_LEN {
            return Err(truncated(bytes.len()));
        }
        let id_bytes = &bytes[FIXED_HEADER..FIXED_HEADER + id_len];
        let key_id = std::str::from_utf8(id_bytes)
            .ok()
            .filter(|_| super::ids::KeyId::check(id_bytes).is_ok())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Integrity,
                    "envelope header is malformed: invalid key id bytes",
                )
            })?;
        let v = FIXED_HEADER + id_len;
        let mut version_bytes = [0u8; 4];
        version_bytes.copy_from_slice(&bytes[v..v + 4]);
        let key_version = KeyVersion::new(u32::from_be_bytes(version_bytes)).map_err(|_| {
            Error::new(
                ErrorKind::Integrity,
                "envelope header is malformed: key version 0",
            )
        })?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[v + 4..header_end]);
        let tag_at = bytes.len() - TAG_LEN;
        Ok(EnvelopeView {
            header: &bytes[..header_end],
            algorithm,
            key_id,
            key_version,
            nonce,
            ciphertext: &bytes[header_end..tag_at],
            tag: &bytes[tag_at..],
        })
    }

    /// Decrypts `envelope` with `key` into locked memory. `context` must be the bytes given
    /// to [`Envelope::seal`].
    pub fn open(key: &DataKey, context: &[u8], envelope: &[u8]) -> Result<Secret> {
        let view = view_for(key, envelope)?;
        Self::open_view(key, context, &view)
    }

    /// Decrypts an already parsed envelope into locked memory.
    pub fn open_view(key: &DataKey, context: &[u8], view: &EnvelopeView<'_>) -> Result<Secret> {
        Self::open_view_as(key, context, view, false)
    }

    /// Decrypts a wrapped key (a KEK or DEK) into memory that is locked whatever the process's
    /// default policy; fails with [`ErrorKind::MemoryLock`] rather than unwrap a key into
    /// swappable memory.
    pub(crate) fn open_key_view(
        key: &DataKey,
        context: &[u8],
        view: &EnvelopeView<'_>,
    ) -> Result<Secret> {
        Self::open_view_as(key, context, view, true)
    }

    /// [`Envelope::open_key_view`] of unparsed bytes.
    pub(crate) fn open_key(key: &DataKey, context: &[u8], envelope: &[u8]) -> Result<Secret> {
        let view = view_for(key, envelope)?;
        Self::open_view_as(key, context, &view, true)
    }

    #[inline(always)]
    fn open_view_as(
        key: &DataKey,
        context: &[u8],
        view: &EnvelopeView<'_>,
        key_material: bool,
    ) -> Result<Secret> {
        check_key(key, view)?;
        let aead = key.aead()?;
        let tag = Tag::try_from(view.tag).map_err(|_| truncated(view.tag.len()))?;
        let decrypt = |dst: &mut [u8]| {
            dst.copy_from_slice(view.ciphertext);
            with_aad(view.header, context, |aad| {
                aead.open_in_place_separate_tag(
                    Nonce::assume_unique_for_key(view.nonce),
                    aad,
                    tag,
                    dst,
                    0..,
                )
                .map(|_| ())
                .map_err(|_| integrity())
            })
        };
        if key_material {
            Secret::key_with(view.ciphertext.len(), decrypt)
        } else {
            Secret::init_with(view.ciphertext.len(), decrypt)
        }
    }

    /// Decrypts in place for callers that manage their own (locked) buffers: returns the
    /// plaintext as a sub-slice of `envelope`. On failure the ciphertext part of `envelope` may
    /// be left modified.
    pub fn open_in_place<'b>(
        key: &DataKey,
        context: &[u8],
        envelope: &'b mut [u8],
    ) -> Result<&'b mut [u8]> {
        let (header_end, nonce, tag) = {
            let view = view_for(key, envelope)?;
            let tag = Tag::try_from(view.tag).map_err(|_| truncated(view.tag.len()))?;
            (view.header.len(), view.nonce, tag)
        };
        let aead = key.aead()?;
        let tag_at = envelope.len() - TAG_LEN;
        let (header, rest) = envelope.split_at_mut(header_end);
        let body = &mut rest[..tag_at - header_end];
        with_aad(header, context, |aad| {
            aead.open_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                aad,
                tag,
                body,
                0..,
            )
            .map(|_| ())
            .map_err(|_| integrity())
        })?;
        Ok(body)
    }
}

impl Envelope {
    /// The envelope without the part of its header that names the sealing key (`11 + n`
    /// bytes: magic, format, algorithm, key id length, key id, key version), leaving nonce,
    /// ciphertext and tag; see the module docs. `Integrity` when `envelope` does not start
    /// with exactly that header for `key_id` and `key_version` (it was not sealed by that key,
    /// or is not a format-1 envelope).
    pub fn detach_header<'b>(
        envelope: &'b [u8],
        key_id: &str,
        key_version: KeyVersion,
    ) -> Result<&'b [u8]> {
        let implied = implied_header(key_id, key_version);
        match envelope.strip_prefix(implied.as_slice()) {
            Some(body) if body.len() >= NONCE_LEN + TAG_LEN => Ok(body),
            _ => Err(Error::new(
                ErrorKind::Integrity,
                format!(
                    "envelope is not one sealed by key {key_id} {key_version}: its header \
                     names another key or is damaged"
                ),
            )),
        }
    }

    /// The envelope `body` (from [`Envelope::detach_header`]) with the header of key
    /// `key_id` version `key_version` put back in front, ready for [`Envelope::open`].
    pub fn attach_header(key_id: &str, key_version: KeyVersion, body: &[u8]) -> Vec<u8> {
        let mut out = implied_header(key_id, key_version);
        out.extend_from_slice(body);
        out
    }
}

/// The header bytes before the nonce for a key: magic, format, algorithm, key id length, key
/// id, key version. A key id longer than a header can name gives a header no envelope has.
fn implied_header(key_id: &str, key_version: KeyVersion) -> Vec<u8> {
    let id = key_id.as_bytes();
    let mut out = Vec::with_capacity(FIXED_HEADER + id.len() + 4 + NONCE_LEN + 96);
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT_V1);
    out.push(Algorithm::Aes256Gcm.id());
    out.push(u8::try_from(id.len()).unwrap_or(0));
    out.extend_from_slice(id);
    out.extend_from_slice(&key_version.to_be_bytes());
    out
}

/// Parses an envelope that should be sealed by `key`. When the header names exactly that key
/// (the normal case) the id bytes are compared with the key's own id instead of being
/// validated byte by byte; anything else goes through the full parser for the precise error.
fn view_for<'b>(key: &DataKey, bytes: &'b [u8]) -> Result<EnvelopeView<'b>> {
    let id = key.id().as_str().as_bytes();
    let header_end = header_len(id.len());
    let v = FIXED_HEADER + id.len();
    let expected = bytes.len() >= header_end + TAG_LEN
        && bytes[..4] == MAGIC
        && bytes[4] == FORMAT_V1
        && bytes[5] == Algorithm::Aes256Gcm.id()
        && usize::from(bytes[6]) == id.len()
        && &bytes[FIXED_HEADER..v] == id
        && bytes[v..v + 4] == key.version().to_be_bytes();
    if !expected {
        let view = Envelope::parse(bytes)?;
        check_key(key, &view)?;
        return Ok(view);
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&bytes[v + 4..header_end]);
    let tag_at = bytes.len() - TAG_LEN;
    Ok(EnvelopeView {
        header: &bytes[..header_end],
        algorithm: Algorithm::Aes256Gcm,
        // Equal to the key's id, which `KeyId` validated (ASCII); `from_utf8` cannot fail.
        key_id: std::str::from_utf8(&bytes[FIXED_HEADER..v]).map_err(|_| {
            Error::new(ErrorKind::Integrity, "envelope header is malformed: key id")
        })?,
        key_version: key.version(),
        nonce,
        ciphertext: &bytes[header_end..tag_at],
        tag: &bytes[tag_at..],
    })
}

fn header_len(id_len: usize) -> usize {
    FIXED_HEADER + id_len + 4 + NONCE_LEN
}

fn check_key(key: &DataKey, view: &EnvelopeView<'_>) -> Result<()> {
    if view.key_id != key.id().as_str() || view.key_version != key.version() {
        return Err(Error::new(
            ErrorKind::WrongKey,
            format!(
                "envelope was sealed with key {} {}, not with the given key {} {}",
                view.key_id,
                view.key_version,
                key.id(),
                key.version()
            ),
        ));
    }
    Ok(())
}

fn truncated(len: usize) -> Error {
    Error::new(
        ErrorKind::Truncated,
        format!("envelope truncated: {len} bytes is shorter than its header says"),
    )
}

fn integrity() -> Error {
    Error::new(
        ErrorKind::Integrity,
        "envelope failed authentication: it was tampered with, corrupted, or opened with a \
         different context (name, version or store) than it was sealed with",
    )
}

/// Runs `f` with AAD = `header || context`, on the stack when it fits so the hot path
/// allocates nothing.
fn with_aad<R>(header: &[u8], context: &[u8], f: impl FnOnce(Aad<&[u8]>) -> R) -> R {
    let total = header.len() + context.len();
    if total <= STACK_AAD {
        let mut buf = [0u8; STACK_AAD];
        buf[..header.len()].copy_from_slice(header);
        buf[header.len()..total].copy_from_slice(context);
        f(Aad::from(&buf[..total]))
    } else {
        let mut buf = Vec::with_capacity(total);
        buf.extend_from_slice(header);
        buf.extend_from_slice(context);
        f(Aad::from(&buf[..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyId;
    use secrecy::ExposeSecret;

    fn key(id: &str, v: u32) -> DataKey {
        DataKey::generate(KeyId::new(id).unwrap(), KeyVersion::new(v).unwrap()).unwrap()
    }

    #[test]
    fn round_trip_and_layout() {
        let k = key("ns/dek", 3);
        let env = Envelope::seal(&k, b"ctx", b"hello").unwrap();
        assert_eq!(env.len(), Envelope::sealed_len(&k, 5));
        assert_eq!(&env[..4], b"SBXE");
        assert_eq!(env[4], 1);
        assert_eq!(env[5], 1);
        assert_eq!(env[6], 6);
        assert_eq!(&env[7..13], b"ns/dek");
        assert_eq!(&env[13..17], &[0, 0, 0, 3]);
        let view = Envelope::parse(&env).unwrap();
        assert_eq!(view.key_id(), "ns/dek");
        assert_eq!(view.key_version().get(), 3);
        assert_eq!(view.plaintext_len(), 5);
        assert_eq!(
            Envelope::open(&k, b"ctx", &env).unwrap().expose_secret(),
            b"hello"
        );
    }

    #[test]
    fn nonces_differ_between_seals() {
        let k = key("k", 1);
        let a = Envelope::seal(&k, b"", b"same").unwrap();
        let b = Envelope::seal(&k, b"", b"same").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn long_context_takes_the_heap_path() {
        let k = key("k", 1);
        let ctx = vec![0xA5; 4 * STACK_AAD];
        let env = Envelope::seal(&k, &ctx, b"x").unwrap();
        assert_eq!(
            Envelope::open(&k, &ctx, &env).unwrap().expose_secret(),
            b"x"
        );
        let mut other = ctx.clone();
        other[3 * STACK_AAD] ^= 1;
        assert_eq!(
            Envelope::open(&k, &other, &env).unwrap_err().kind(),
            ErrorKind::Integrity
        );
    }

    #[test]
    fn open_in_place_returns_the_plaintext_slice() {
        let k = key("k", 1);
        let mut env = Envelope::seal(&k, b"c", b"in place").unwrap();
        let pt = Envelope::open_in_place(&k, b"c", &mut env).unwrap();
        assert_eq!(pt, b"in place");
    }

    #[test]
    fn a_detached_body_opens_only_with_its_own_key_s_header() {
        let k = key("k", 1);
        let env = Envelope::seal(&k, b"ctx", b"value").unwrap();
        let body = Envelope::detach_header(&env, "k", KeyVersion::FIRST).unwrap();
        assert_eq!(
            body.len(),
            NONCE_LEN + 5 + TAG_LEN,
            "only nonce, ciphertext and tag stay"
        );
        let rebuilt = Envelope::attach_header("k", KeyVersion::FIRST, body);
        assert_eq!(rebuilt, env);
        assert_eq!(
            Envelope::open(&k, b"ctx", &rebuilt)
                .unwrap()
                .expose_secret(),
            b"value"
        );
        // Another key's header is refused on detach, and a body given another key's header
        // fails authentication even under a key of that name.
        let v2 = KeyVersion::new(2).unwrap();
        assert_eq!(
            Envelope::detach_header(&env, "k", v2).unwrap_err().kind(),
            ErrorKind::Integrity
        );
        assert_eq!(
            Envelope::detach_header(&env, "other", KeyVersion::FIRST)
                .unwrap_err()
                .kind(),
            ErrorKind::Integrity
        );
        let other = DataKey::from_secret(
            KeyId::new("k").unwrap(),
            v2,
            k.material().try_clone().unwrap(),
        )
        .unwrap();
        let forged = Envelope::attach_header("k", v2, body);
        assert_eq!(
            Envelope::open(&other, b"ctx", &forged).unwrap_err().kind(),
            ErrorKind::Integrity
        );
    }

    #[test]
    fn seal_into_appends_after_existing_bytes() {
        let k = key("k", 1);
        let mut out = b"prefix".to_vec();
        Envelope::seal_into(&k, b"", b"v", &mut out).unwrap();
        assert_eq!(&out[..6], b"prefix");
        assert_eq!(
            Envelope::open(&k, b"", &out[6..]).unwrap().expose_secret(),
            b"v"
        );
    }

    #[test]
    fn distinct_kinds_for_each_failure() {
        let k = key("k", 1);
        let env = Envelope::seal(&k, b"", b"data").unwrap();
        let kind = |b: &[u8]| Envelope::open(&k, b"", b).unwrap_err().kind();
        assert_eq!(kind(&env[..3]), ErrorKind::Truncated);
        assert_eq!(kind(&env[..env.len() - 21]), ErrorKind::Truncated);
        let mut v2 = env.clone();
        v2[4] = 2;
        assert_eq!(kind(&v2), ErrorKind::UnsupportedVersion);
        let mut alg = env.clone();
        alg[5] = 9;
        assert_eq!(kind(&alg), ErrorKind::UnsupportedVersion);
        let mut tag = env.clone();
        *tag.last_mut().unwrap() ^= 1;
        assert_eq!(kind(&tag), ErrorKind::Integrity);
        let mut magic = env.clone();
        magic[0] = b'X';
        assert_eq!(kind(&magic), ErrorKind::Integrity);
        let other = key("k", 2);
        assert_eq!(
            Envelope::open(&other, b"", &env).unwrap_err().kind(),
            ErrorKind::WrongKey
        );
        assert_eq!(
            Envelope::open(&k, b"other", &env).unwrap_err().kind(),
            ErrorKind::Integrity
        );
    }

    #[test]
    fn empty_plaintext_is_fine() {
        let k = key("k", 1);
        let env = Envelope::seal(&k, b"", b"").unwrap();
        assert!(Envelope::open(&k, b"", &env).unwrap().is_empty());
    }
}
