//! Knowing the vault: which findings are values stored in sealbox, and which version.
//!
//! Every version of every secret (and every top-level field of a JSON object secret) is read
//! into locked memory and reduced to an HMAC-SHA-256 tag under a key drawn at random for this
//! run; findings are tagged the same way and looked up. The index holds only tags, lives only
//! in this process, and is useless after it: no plaintext, and no digest an attacker could test
//! guesses against, is ever written anywhere.

use std::collections::HashMap;

use ring::hmac;
use ring::rand::SystemRandom;
use sealbox::store::{ListOptions, SecretName, SecretStore, VersionSelector};
use sealbox::{Error, ErrorKind, ExposeSecret, Result, Secret};
use serde::Serialize;

use crate::finding::Finding;

/// A stored secret whose value equals a finding's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VaultMatch {
    /// The secret's name.
    pub name: String,
    /// The JSON field holding the value, when the secret is a JSON object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The version id.
    pub version: String,
    /// Stages on that version (`CURRENT`, `PREVIOUS`, ...).
    pub stages: Vec<String>,
    /// Whether it is the version readers get now; `false` is a leaked old credential.
    pub current: bool,
}

impl VaultMatch {
    /// "the CURRENT value of a/b" or "an older version (3, PREVIOUS) of a/b: a leaked old
    /// credential".
    pub fn human(&self) -> String {
        let what = match &self.field {
            Some(field) => format!("field `{field}` of {}", self.name),
            None => self.name.clone(),
        };
        if self.current {
            format!(
                "in the vault: the CURRENT value of {what} (version {})",
                self.version
            )
        } else {
            let stages = if self.stages.is_empty() {
                String::new()
            } else {
                format!(", {}", self.stages.join(", "))
            };
            format!(
                "in the vault: an older version ({}{stages}) of {what}: a leaked old credential, \
                 rotated out but still in the file",
                self.version
            )
        }
    }
}

/// Keyed digests of the vault's values.
pub struct VaultIndex {
    key: hmac::Key,
    entries: HashMap<[u8; 32], Vec<VaultMatch>>,
    /// Secrets listed.
    pub secrets: u64,
    /// Versions read and indexed.
    pub versions: u64,
    /// Versions that could not be read (destroyed, or denied by policy) and so are not known.
    pub unreadable: u64,
}

impl std::fmt::Debug for VaultIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultIndex")
            .field("secrets", &self.secrets)
            .field("versions", &self.versions)
            .field("unreadable", &self.unreadable)
            .finish_non_exhaustive()
    }
}

impl VaultIndex {
    /// An empty index under a fresh random key.
    pub fn new() -> Result<VaultIndex> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new()).map_err(|_| {
            Error::new(
                ErrorKind::Internal,
                "the system random generator failed; cannot key the vault index",
            )
        })?;
        Ok(VaultIndex {
            key,
            entries: HashMap::new(),
            secrets: 0,
            versions: 0,
            unreadable: 0,
        })
    }

    /// Reads every version of every secret of `store` into the index.
    pub async fn build(store: &dyn SecretStore) -> Result<VaultIndex> {
        let mut index = VaultIndex::new()?;
        let mut options = ListOptions::default();
        loop {
            let page = store.list(&options).await?;
            for entry in &page.entries {
                index.secrets += 1;
                index.add_secret(store, &entry.name).await?;
            }
            match page.next_page_token {
                Some(token) => options.page_token = Some(token),
                None => break,
            }
        }
        Ok(index)
    }

    async fn add_secret(&mut self, store: &dyn SecretStore, name: &SecretName) -> Result<()> {
        let meta = match store.describe(name).await {
            Ok(m) => m,
            Err(e) if skippable(&e) => {
                self.unreadable += 1;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        for info in &meta.versions {
            let selector = VersionSelector::Version(info.version.clone());
            let version = match store.get(name, &selector).await {
                Ok(v) => v,
                Err(e) if skippable(&e) => {
                    self.unreadable += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            self.versions += 1;
            let stages: Vec<String> = info.stages.iter().map(|s| s.as_str().to_owned()).collect();
            let entry = |field: Option<String>| VaultMatch {
                name: name.as_str().to_owned(),
                field,
                version: info.version.as_str().to_owned(),
                stages: stages.clone(),
                current: info.stages.contains(&sealbox::store::Stage::Current),
            };
            self.insert(version.value.expose_secret(), entry(None));
            for (field, value) in json_fields(&version.value) {
                self.insert(value.as_secret().expose_secret(), entry(Some(field)));
            }
        }
        Ok(())
    }

    /// Indexes `value` (and, if it ends in a newline as `echo | sealbox put` leaves, the value
    /// without it) as `m`.
    pub fn insert(&mut self, value: &[u8], m: VaultMatch) {
        let trimmed = value.trim_ascii_end();
        if trimmed.is_empty() {
            return;
        }
        if trimmed.len() != value.len() {
            self.insert_exact(trimmed, m.clone());
        }
        self.insert_exact(value, m);
    }

    fn insert_exact(&mut self, value: &[u8], m: VaultMatch) {
        let slot = self.entries.entry(self.tag(value)).or_default();
        if !slot.contains(&m) {
            slot.push(m);
        }
    }

    /// The stored secrets whose value is `value`, current versions first.
    pub fn lookup(&self, value: &Secret) -> Vec<VaultMatch> {
        let mut found = self
            .entries
            .get(&self.tag(value.expose_secret()))
            .cloned()
            .unwrap_or_default();
        found.sort_by(|a, b| b.current.cmp(&a.current).then(a.name.cmp(&b.name)));
        found
    }

    /// Fills in each finding's `vault` field.
    pub fn annotate(&self, findings: &mut [Finding]) {
        for f in findings {
            f.vault = self.lookup(f.value());
        }
    }

    fn tag(&self, value: &[u8]) -> [u8; 32] {
        let tag = hmac::sign(&self.key, value);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

/// Denied or gone: the index goes on without that secret, and says how many it missed.
fn skippable(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::NotFound | ErrorKind::AccessDenied | ErrorKind::KeyDestroyed
    )
}

/// The top-level string fields of a JSON object secret, each in locked memory; nothing for any
/// other value. Only the field names pass through ordinary memory.
fn json_fields(value: &Secret) -> Vec<(String, sealbox::SecretString)> {
    let bytes = value.expose_secret();
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Vec::new();
    }
    // Values are skipped unread (`IgnoredAny`); parse errors are dropped unread, as
    // serde_json's messages can quote the input.
    let Ok(names) =
        serde_json::from_slice::<HashMap<String, serde::de::IgnoredAny>>(bytes).map(|m| {
            let mut names: Vec<String> = m.into_keys().collect();
            names.sort();
            names
        })
    else {
        return Vec::new();
    };
    names
        .into_iter()
        .filter_map(|name| {
            let v = value.json_field(&name).ok()?;
            Some((name, v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, current: bool) -> VaultMatch {
        VaultMatch {
            name: name.into(),
            field: None,
            version: "1".into(),
            stages: if current {
                vec!["CURRENT".into()]
            } else {
                vec![]
            },
            current,
        }
    }

    fn secret(b: &[u8]) -> Secret {
        Secret::init_with(b.len(), |buf| {
            buf.copy_from_slice(b);
            Ok(())
        })
        .unwrap()
    }

    #[test]
    fn looks_up_by_value_and_trailing_newline_free_value() {
        let mut index = VaultIndex::new().unwrap();
        index.insert(b"Vq3r8TzK2mWx\n", m("a/db/password", true));
        assert_eq!(
            index.lookup(&secret(b"Vq3r8TzK2mWx")),
            [m("a/db/password", true)]
        );
        assert_eq!(
            index.lookup(&secret(b"Vq3r8TzK2mWx\n")),
            [m("a/db/password", true)]
        );
        assert!(index.lookup(&secret(b"Vq3r8TzK2mW")).is_empty());
    }

    #[test]
    fn two_runs_key_their_digests_differently() {
        let (a, b) = (VaultIndex::new().unwrap(), VaultIndex::new().unwrap());
        assert_ne!(a.tag(b"Vq3r8TzK2mWx"), b.tag(b"Vq3r8TzK2mWx"));
    }

    #[test]
    fn json_object_secrets_are_indexed_by_field() {
        let fields = json_fields(&secret(
            br#"{"username": "cspm", "password": "Vq3r8TzK2mWx"}"#,
        ));
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["password", "username"]);
        assert!(json_fields(&secret(b"Vq3r8TzK2mWx")).is_empty());
        assert!(json_fields(&secret(b"{not json")).is_empty());
    }
}
