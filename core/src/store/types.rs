//! The vocabulary every store shares: names, references, versions, stages, options, metadata.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use compact_str::{CompactString, ToCompactString};

use crate::error::{Error, Result};
use crate::secret::Secret;

/// A validated secret name: a `/`-separated path such as `predis/prod/database/password`.
///
/// Rules (checked once, here): 1 to 512 bytes; segments non-empty; each segment uses only ASCII
/// letters, digits and `-_.+=@`; no segment is `.` or `..`; no leading or trailing `/`. These
/// names map onto every provider's naming rules (AWS allows `/_+=.@-`, Vault paths, GCP ids
/// after mapping `/`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretName(Arc<str>);

impl SecretName {
    /// Maximum length in bytes.
    pub const MAX_LEN: usize = 512;

    /// Validates `name`.
    ///
    /// ```
    /// use sealbox::store::SecretName;
    /// let n = SecretName::new("predis/prod/database/password").unwrap();
    /// assert_eq!(n.namespace(), "predis");
    /// assert!(SecretName::new("../etc/passwd").is_err());
    /// ```
    pub fn new(name: impl AsRef<str>) -> Result<SecretName> {
        let name = name.as_ref();
        if let Some(plain) = Self::plain(name) {
            return Ok(plain);
        }
        if name.is_empty() || name.len() > Self::MAX_LEN {
            return Err(Error::invalid_input(format!(
                "a secret name must be 1 to {} bytes long",
                Self::MAX_LEN
            )));
        }
        Self::check_closely(name)?;
        Ok(SecretName(Arc::from(name)))
    }

    /// `name` as a secret name if it passes the quick check, else `None` (which means "not
    /// plainly a name", not "invalid"). Such a name holds no `:` and no `#`, so a reference
    /// that passes is a bare name: the router's fast path.
    #[inline]
    pub(crate) fn plain(name: &str) -> Option<SecretName> {
        (!name.is_empty() && name.len() <= Self::MAX_LEN && Self::plainly_valid(name.as_bytes()))
            .then(|| SecretName(Arc::from(name)))
    }

    /// The name as a shared string: a cache keyed by the name keeps this, not a copy.
    pub(crate) fn shared(&self) -> &Arc<str> {
        &self.0
    }

    /// The precise check, which also says what is wrong. Every non-ASCII byte is refused, so
    /// checking bytes is checking chars.
    fn check_closely(name: &str) -> Result<()> {
        let bytes = name.as_bytes();
        let mut start = 0;
        for i in 0..=bytes.len() {
            let b = bytes.get(i).copied().unwrap_or(b'/');
            if b == b'/' {
                if matches!(&bytes[start..i], b"" | b"." | b"..") {
                    return Err(Error::invalid_input(format!(
                        "secret name {name:?} has an empty, '.' or '..' path segment"
                    )));
                }
                start = i + 1;
            } else if !Self::allowed(b) {
                let c = name[i..].chars().next().unwrap_or('?');
                return Err(Error::invalid_input(format!(
                    "secret name {:?} contains {c:?}; use ASCII letters, digits, '/' and -_.+=@",
                    name.escape_default().to_string()
                )));
            }
        }
        Ok(())
    }

    /// The common case without branches per byte (names are validated on every cache miss):
    /// only allowed bytes, no empty segment, and no `.` at all. `false` means "look closer",
    /// not "invalid".
    fn plainly_valid(bytes: &[u8]) -> bool {
        static ALLOWED: [bool; 256] = crate::bytes::ascii_alnum_and(b"-_+=@/");
        let mut ok = true;
        let mut prev = b'/';
        for &b in bytes {
            ok &= ALLOWED[b as usize] & !(b == b'/' && prev == b'/');
            prev = b;
        }
        ok & (prev != b'/')
    }

    fn allowed(b: u8) -> bool {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+' | b'=' | b'@')
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first path segment, the default namespace (tenant or environment) for key isolation.
    pub fn namespace(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }

    /// Whether the name starts with `prefix` (plain string prefix, as `list` uses).
    pub fn starts_with(&self, prefix: &str) -> bool {
        self.0.starts_with(prefix)
    }
}

impl fmt::Debug for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretName({:?})", self.0)
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SecretName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        SecretName::new(s)
    }
}

impl AsRef<str> for SecretName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A reference to a secret, optionally in a named store and to one JSON field:
/// `sb://STORE/NAME#FIELD`, `sb:///NAME` (default store), or a bare `NAME#FIELD`.
///
/// ```
/// use sealbox::store::SecretRef;
/// let r: SecretRef = "sb://aws/predis/prod/database/password#password".parse().unwrap();
/// assert_eq!(r.store.as_deref(), Some("aws"));
/// assert_eq!(r.name.as_str(), "predis/prod/database/password");
/// assert_eq!(r.field.as_deref(), Some("password"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SecretRef {
    /// The store id, `None` for the default route.
    pub store: Option<String>,
    /// The secret name.
    pub name: SecretName,
    /// The JSON field, if any.
    pub field: Option<String>,
}

impl FromStr for SecretRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let (store, rest) = match s.strip_prefix("sb://") {
            Some(rest) => match rest.split_once('/') {
                Some(("", name)) => (None, name),
                Some((store, name)) => (Some(store.to_owned()), name),
                None => {
                    return Err(Error::invalid_input(
                        "a reference must look like sb://STORE/NAME#FIELD",
                    ));
                }
            },
            None => (None, s),
        };
        let (name, field) = match rest.split_once('#') {
            Some((_, "")) => return Err(Error::invalid_input("empty field after '#'")),
            Some((n, f)) => (n, Some(f.to_owned())),
            None => (rest, None),
        };
        Ok(SecretRef {
            store,
            name: SecretName::new(name)?,
            field,
        })
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sb://{}/{}",
            self.store.as_deref().unwrap_or(""),
            self.name
        )?;
        if let Some(field) = &self.field {
            write!(f, "#{field}")?;
        }
        Ok(())
    }
}

/// A store-specific, opaque version id (`"3"` in the local vault, a UUID on AWS).
///
/// Ids of up to 24 bytes are held inline: a cached version's id is then no allocation of
/// its own, to be freed later on whichever thread evicts it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VersionId(CompactString);

impl VersionId {
    /// Wraps a store's version id.
    pub fn new(id: impl Into<String>) -> VersionId {
        // Inlines a short id (the string is freed here); a longer one keeps its buffer.
        VersionId(CompactString::from(id.into()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A numbered version (the local vault's, the memory store's), formatted without allocating.
impl From<u64> for VersionId {
    fn from(n: u64) -> VersionId {
        VersionId(n.to_compact_string())
    }
}

/// A numbered version as SQLite stores it.
impl From<i64> for VersionId {
    fn from(n: i64) -> VersionId {
        VersionId(n.to_compact_string())
    }
}

impl fmt::Display for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A staging label on a version. A stage is on at most one version of a secret at a time.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// The version readers get by default.
    Current,
    /// A version being rotated in, not yet promoted.
    Pending,
    /// The version that was current before the last promotion (for rollback).
    Previous,
    /// Any other label (`[A-Za-z0-9_-]{1,64}`, not one of the three above).
    Custom(String),
}

impl Stage {
    /// The canonical spelling: `CURRENT`, `PENDING`, `PREVIOUS` or the custom label.
    pub fn as_str(&self) -> &str {
        match self {
            Stage::Current => "CURRENT",
            Stage::Pending => "PENDING",
            Stage::Previous => "PREVIOUS",
            Stage::Custom(s) => s,
        }
    }
}

impl FromStr for Stage {
    type Err = Error;
    fn from_str(s: &str) -> Result<Stage> {
        let named = [Stage::Current, Stage::Pending, Stage::Previous];
        Ok(
            match named
                .into_iter()
                .find(|n| n.as_str().eq_ignore_ascii_case(s))
            {
                Some(stage) => stage,
                None => {
                    let ok = !s.is_empty()
                        && s.len() <= 64
                        && s.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if !ok {
                        return Err(Error::invalid_input(
                            "a stage label is 1-64 ASCII letters, digits, '_' or '-'",
                        ));
                    }
                    Stage::Custom(s.to_owned())
                }
            },
        )
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which version `get` reads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum VersionSelector {
    /// The version staged `CURRENT` ("latest" for readers).
    #[default]
    Current,
    /// A specific version id.
    Version(VersionId),
    /// Whatever version carries this stage.
    Stage(Stage),
}

/// As messages name it: `abc` for a version id, `staged PENDING` for a stage (`CURRENT`
/// included), so "secret x has no version abc" reads as text.
impl fmt::Display for VersionSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionSelector::Current => f.write_str("staged CURRENT"),
            VersionSelector::Version(id) => write!(f, "{id}"),
            VersionSelector::Stage(stage) => write!(f, "staged {stage}"),
        }
    }
}

/// One version of a secret, as `get` returns it.
#[derive(Debug)]
pub struct SecretVersion {
    /// The value, in locked memory.
    pub value: Secret,
    /// The version id.
    pub version: VersionId,
    /// Stages on this version at read time.
    pub stages: Vec<Stage>,
    /// When this version was created.
    pub created: Option<SystemTime>,
}

/// Options for [`SecretStore::put`](super::SecretStore::put).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutOptions {
    /// Stages to attach to the new version. Default `[CURRENT]`; moving `CURRENT` moves the old
    /// current version to `PREVIOUS`. `[PENDING]` leaves `CURRENT` where it is (rotation).
    pub stages: Vec<Stage>,
    /// Compare-and-set: fail with `Conflict` unless the `CURRENT` version is this one
    /// (`Some(None)` means: the secret must not exist yet).
    pub expected_current: Option<Option<VersionId>>,
    /// Idempotency token (AWS `ClientRequestToken`): a retried put with the same token and
    /// value creates no second version.
    pub idempotency_token: Option<String>,
    /// Description, set on creation or updated.
    pub description: Option<String>,
    /// Tags to merge into the secret's tags (never secret values).
    pub tags: BTreeMap<String, String>,
}

impl Default for PutOptions {
    fn default() -> Self {
        PutOptions {
            stages: vec![Stage::Current],
            expected_current: None,
            idempotency_token: None,
            description: None,
            tags: BTreeMap::new(),
        }
    }
}

/// Options for [`SecretStore::delete`](super::SecretStore::delete).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteOptions {
    /// Delete at once, with no recovery window. Irreversible.
    pub force: bool,
    /// How long a soft-deleted secret can be restored (AWS allows 7 to 30 days).
    pub recovery_window: Duration,
}

impl Default for DeleteOptions {
    fn default() -> Self {
        DeleteOptions {
            force: false,
            recovery_window: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// A page request for [`SecretStore::list`](super::SecretStore::list).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Only names starting with this prefix.
    pub prefix: String,
    /// At most this many entries (the store may cap it); `None` = store default.
    pub page_size: Option<usize>,
    /// The token from the previous page.
    pub page_token: Option<String>,
    /// Include soft-deleted secrets.
    pub include_deleted: bool,
}

/// One page of names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Entries in this page, sorted by name where the store can sort.
    pub entries: Vec<ListEntry>,
    /// Token for the next page; `None` when this is the last.
    pub next_page_token: Option<String>,
}

/// A listed secret (metadata only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListEntry {
    /// The name.
    pub name: SecretName,
    /// Last change time, where known.
    pub updated: Option<SystemTime>,
    /// Whether the secret is soft-deleted.
    pub deleted: bool,
}

/// Metadata of one version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionInfo {
    /// The version id.
    pub version: VersionId,
    /// Stages on it.
    pub stages: Vec<Stage>,
    /// Creation time.
    pub created: Option<SystemTime>,
}

/// What `describe` returns: everything but values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretMetadata {
    /// The name.
    pub name: SecretName,
    /// Versions, oldest first (stores may omit versions that carry no stage).
    pub versions: Vec<VersionInfo>,
    /// Creation time of the secret.
    pub created: Option<SystemTime>,
    /// Last write time.
    pub updated: Option<SystemTime>,
    /// Last time a rotation promoted a version.
    pub last_rotated: Option<SystemTime>,
    /// Description.
    pub description: Option<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Rotation period, if one is configured for this secret.
    pub rotation_period: Option<Duration>,
    /// When soft-deleted, the time it will be purged.
    pub deleted: Option<SystemTime>,
}

impl SecretMetadata {
    /// The version carrying `stage`, if any.
    pub fn version_with_stage(&self, stage: &Stage) -> Option<&VersionId> {
        self.versions
            .iter()
            .find(|v| v.stages.contains(stage))
            .map(|v| &v.version)
    }
}

/// What a store can do; the conformance suite and the cache read this.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// `put`, `delete`, `set_stage` work (false for env/file).
    pub write: bool,
    /// Old versions stay readable by id.
    pub versions: bool,
    /// Stages beyond `CURRENT` are supported.
    pub stages: bool,
    /// `expected_current` is enforced atomically.
    pub compare_and_set: bool,
    /// Soft delete with recovery and `restore`.
    pub soft_delete: bool,
    /// `list` pages with tokens.
    pub list_paging: bool,
    /// Binary (non-UTF-8) values round-trip.
    pub binary: bool,
    /// `describe` is cheap enough for the cache's version check.
    pub cheap_describe: bool,
    /// Largest value the store accepts, in bytes.
    pub max_value_len: usize,
}

impl Capabilities {
    /// Everything supported (memory and local stores).
    pub const FULL: Capabilities = Capabilities {
        write: true,
        versions: true,
        stages: true,
        compare_and_set: true,
        soft_delete: true,
        list_paging: true,
        binary: true,
        cheap_describe: true,
        max_value_len: 1 << 20,
    };

    /// Read-only, single version (env, file).
    pub const READ_ONLY: Capabilities = Capabilities {
        write: false,
        versions: false,
        stages: false,
        compare_and_set: false,
        soft_delete: false,
        list_paging: false,
        binary: true,
        cheap_describe: false,
        max_value_len: 1 << 20,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        for ok in ["a", "predis/prod/database/password", "x.y/z_1/a-b+c=d@e"] {
            assert!(SecretName::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "a/../b",
            ".",
            "a b",
            "ä",
            "a\0b",
            &"x".repeat(513),
        ] {
            assert!(SecretName::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_fast_check_never_accepts_what_the_precise_check_refuses() {
        // Every string of up to 5 characters over an alphabet with each kind of byte.
        let alphabet = ['a', '/', '.', '-', ' ', 'é'];
        let mut names = vec![String::new()];
        let mut checked = 0;
        for _ in 0..5 {
            names = names
                .iter()
                .flat_map(|n| alphabet.iter().map(move |c| format!("{n}{c}")))
                .collect();
            for n in &names {
                if SecretName::plainly_valid(n.as_bytes()) {
                    assert!(SecretName::check_closely(n).is_ok(), "{n:?}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 100, "the fast path took only {checked} names");
    }

    #[test]
    fn the_fast_check_takes_exactly_the_plain_bytes() {
        for b in 0..=255u8 {
            let plain = b.is_ascii_alphanumeric() || b"-_+=@".contains(&b);
            let name = [b'a', b, b'z'];
            let between = plain || b == b'/';
            assert_eq!(SecretName::plainly_valid(&name), between, "byte {b:#04x}");
            assert_eq!(
                SecretName::plainly_valid(&[b]),
                plain,
                "byte {b:#04x} alone"
            );
        }
        // A long name, and the same with one bad byte at its start, middle or end.
        let long = "predis/prod/service-0007/api-key".repeat(8);
        assert!(SecretName::plainly_valid(long.as_bytes()));
        for (i, bad) in [(0, b'/'), (100, b'.'), (255, b'/'), (40, 0x80)] {
            let mut bytes = long.clone().into_bytes();
            bytes[i] = bad;
            if bad == b'/' && i > 0 {
                bytes[i - 1] = b'/';
            }
            assert!(!SecretName::plainly_valid(&bytes), "{bad:#04x} at {i}");
        }
        assert!(!SecretName::plainly_valid(b""));
    }

    #[test]
    fn references_parse() {
        let r: SecretRef = "predis/prod/db#password".parse().unwrap();
        assert_eq!((r.store, r.field.as_deref()), (None, Some("password")));
        let r: SecretRef = "sb:///a/b".parse().unwrap();
        assert_eq!(r.store, None);
        assert_eq!(r.to_string(), "sb:///a/b");
        assert!("sb://store".parse::<SecretRef>().is_err());
        assert!("a#".parse::<SecretRef>().is_err());
    }

    #[test]
    fn stages_parse_case_insensitively() {
        assert_eq!("current".parse::<Stage>().unwrap(), Stage::Current);
        assert_eq!(
            "AWSCURRENT".parse::<Stage>().unwrap(),
            Stage::Custom("AWSCURRENT".into())
        );
        assert!("bad label".parse::<Stage>().is_err());
        assert_eq!("Previous".parse::<Stage>().unwrap(), Stage::Previous);
        assert_eq!("pending".parse::<Stage>().unwrap(), Stage::Pending);
        // A prefix of a named stage is a label of its own.
        assert_eq!(
            "CURR".parse::<Stage>().unwrap(),
            Stage::Custom("CURR".into())
        );
    }

    #[test]
    fn version_ids_compare_as_their_text_however_they_are_held() {
        let uuid = "00000000-0000-4000-8000-00000000dead"; // longer than the inline 24 bytes
        assert_eq!(VersionId::new(uuid).as_str(), uuid);
        assert_eq!(VersionId::new(uuid.to_string()), VersionId::new(uuid));
        assert_eq!(VersionId::from(17u64), VersionId::new("17"));
        assert_eq!(VersionId::from(17i64).to_string(), "17");
        assert_eq!(VersionId::from(u64::MAX).as_str(), u64::MAX.to_string());
        let inline = "x".repeat(24);
        assert_eq!(VersionId::new(inline.clone()).as_str(), inline);
        // Ordered as text, as a String id was: "10" before "9".
        assert!(VersionId::from(10u64) < VersionId::from(9u64));
        assert!(VersionId::new(uuid) > VersionId::new("0"));
    }
}

/// What [`super::SecretStore::erase_namespace`] destroyed, and which copies it reaches.
/// Names and counts only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Erasure {
    /// The namespace erased.
    pub namespace: String,
    /// Secrets deleted from the store.
    pub secrets_erased: u64,
    /// Namespace key (KEK) versions destroyed in the store.
    pub key_versions_destroyed: u64,
    /// Whether the master key provider held a key of this namespace outside the store and
    /// destroyed it (the local key file does; passphrase, environment and KMS providers do
    /// not).
    pub provider_key_destroyed: bool,
    /// Whether copies of the store taken before the erasure (backups, old WAL frames, free
    /// pages) are now unreadable for this namespace with the current key material. When
    /// false, such a copy plus the master key still reads the namespace.
    pub backups_covered: bool,
}

impl Erasure {
    /// One sentence on what was destroyed and what is not covered, for audit lines and
    /// operators. Never holds a value.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "erased {} secret(s) and {} key version(s) of namespace {}",
            self.secrets_erased, self.key_versions_destroyed, self.namespace
        );
        if self.provider_key_destroyed {
            out.push_str("; its namespace key in the master key provider is destroyed");
        }
        if self.backups_covered {
            out.push_str(
                "; copies of the vault taken before cannot read it with the current key \
                 material (an old copy of the key file still can)",
            );
        } else {
            out.push_str(
                "; NOT covered: copies of the vault taken before, with the master key, still \
                 read it (the master key provider holds no namespace keys, or some keys \
                 predate namespace keys)",
            );
        }
        out
    }
}
