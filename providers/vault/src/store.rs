//! `VaultKv`: the [`SecretStore`] over a Vault KV v2 mount (and, read-only, KV v1).
//!
//! Mapping:
//! - a name is the path `<prefix>/<name>` inside the mount;
//! - a version is a KV version number (`"1"`, `"2"`, ...);
//! - stages live in the secret's **custom metadata**: `sealbox-stage-current: "3"`,
//!   `sealbox-stage-pending`, `sealbox-stage-previous`, `sealbox-stage-<label>`. A secret
//!   with no stage key (one another tool wrote) reads its latest live version as `CURRENT`;
//! - tags are the other custom-metadata keys (keys starting `sealbox-` are sealbox's own);
//!   the description is `sealbox-description`;
//! - values are `{"value": text}` or `{"value_base64": ...}` (see [`crate::value`]).
//!
//! **Writes and stage moves cannot race.** KV v2 checks `cas` on data writes but offers no
//! check on metadata writes, and a stage move is a metadata write. So every change of a
//! secret (put, stage move, delete, restore) runs under a per-secret lease held in the same
//! mount at `.sealbox-locks/<path>`, itself taken with a `cas` write (the lease names its
//! holder and ends 30 s later; an expired lease is taken over, again by `cas`). Under the
//! lease the writer reads the metadata, checks `expected_current`, writes the data with
//! `cas` = the version it read (a writer outside sealbox that slipped in makes this a
//! `Conflict`), then writes the new stage map, then ends the lease with one more `cas` write.
//! A writer that dies between the data and the metadata write leaves a version no stage
//! points at: invisible to sealbox readers (which follow `sealbox-stage-current`), visible as
//! "latest" to other tools. Readers take no lease: a read by stage is one call (`GET data`,
//! whose answer carries the custom metadata) when the stage is on the latest version, two
//! otherwise.
//!
//! **Idempotency tokens** are custom-metadata keys `sealbox-idem-<hash>` naming the version
//! (never the value); the newest 8 are kept.
//!
//! **Delete.** A soft delete marks the secret (`sealbox-deleted-at`, `sealbox-purge-after`,
//! and `sealbox-deleted-versions`), then soft-deletes those versions (`POST delete`);
//! `restore` undeletes exactly those (`POST undelete`) and removes the marks. Vault does not
//! purge soft-deleted versions by itself: the purge time is reported by `describe`, and
//! `restore` works until someone force-deletes. A force delete is `DELETE metadata` (every
//! version destroyed, metadata gone) and drops the secret's lease key too.
//!
//! **KV v1** mounts have one unversioned value per path: the store is read-only there
//! (`capabilities().write == false`), each secret's one version is `"1"` with `CURRENT`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use sealbox::store::{
    Capabilities, DeleteOptions, ListEntry, ListOptions, ListPage, PutOptions, SecretMetadata,
    SecretName, SecretStore, SecretVersion, Stage, VersionId, VersionInfo, VersionSelector,
};
use sealbox::{Error, ErrorKind, ExposeSecret, Result, Secret};
use serde_json::Value;
use vaultrs::api::kv2::requests::{
    ReadSecretRequest, SetSecretMetadataRequest, SetSecretRequestOptions,
};
use vaultrs::api::kv2::responses::{ReadSecretMetadataResponse, ReadSecretResponse};
use vaultrs::error::ClientError;

use crate::auth::Session;
use crate::config::VaultConfig;
use crate::error::{self, Call};
use crate::value;

/// Largest value accepted: Vault's default storage entry limit is 512 KiB (Consul's and
/// Raft's defaults alike), and binary values grow by a third as base64.
pub const MAX_VALUE_LEN: usize = 256 * 1024;
/// Where the per-secret leases live, at the root of the mount.
pub const LOCK_ROOT: &str = ".sealbox-locks";
/// Prefix of sealbox's own custom-metadata keys (never tags).
pub const RESERVED_PREFIX: &str = "sealbox-";
/// Prefix of the stage keys.
pub const STAGE_PREFIX: &str = "sealbox-stage-";
/// The description.
pub const KEY_DESCRIPTION: &str = "sealbox-description";
/// Marks a soft-deleted secret (RFC 3339 time of the delete).
pub const KEY_DELETED_AT: &str = "sealbox-deleted-at";
/// End of the recovery window of a soft-deleted secret (RFC 3339).
pub const KEY_PURGE_AFTER: &str = "sealbox-purge-after";
/// The versions a soft delete deleted (comma-separated), which `restore` undeletes.
pub const KEY_DELETED_VERSIONS: &str = "sealbox-deleted-versions";
/// Prefix of the idempotency-token keys.
pub const KEY_TOKEN_PREFIX: &str = "sealbox-idem-";
/// Idempotency tokens remembered per secret.
const MAX_TOKENS: usize = 8;
/// Vault's limits on custom metadata.
const MAX_CUSTOM_KEYS: usize = 64;
const MAX_CUSTOM_KEY_LEN: usize = 128;
const MAX_CUSTOM_VALUE_LEN: usize = 512;
/// How long a lease lasts, and how long a writer waits for one.
const LEASE: Duration = Duration::from_secs(30);
const LEASE_WAIT: Duration = Duration::from_secs(20);
/// The page size asked for when the caller names none.
const DEFAULT_PAGE: usize = 100;

/// The Vault KV store. Cheap to clone.
#[derive(Clone)]
pub struct VaultKv {
    session: Arc<Session>,
    mount: String,
    prefix: Option<String>,
    kv_version: u8,
    max_versions: Option<u64>,
    delete_version_after: Option<String>,
}

impl std::fmt::Debug for VaultKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultKv")
            .field("address", &self.session.address())
            .field("mount", &self.mount)
            .field("prefix", &self.prefix)
            .field("kv_version", &self.kv_version)
            .finish_non_exhaustive()
    }
}

/// The metadata sealbox uses, parsed from `GET metadata`.
#[derive(Debug)]
struct Meta {
    current_version: u64,
    created: Option<SystemTime>,
    updated: Option<SystemTime>,
    custom: HashMap<String, String>,
    versions: BTreeMap<u64, VersionState>,
}

#[derive(Debug, Clone, Copy)]
struct VersionState {
    created: Option<SystemTime>,
    /// Soft-deleted (its deletion time has passed).
    deleted: bool,
    destroyed: bool,
}

impl VersionState {
    fn live(&self) -> bool {
        !self.deleted && !self.destroyed
    }
}

fn parse_time(s: &str) -> Option<SystemTime> {
    if s.is_empty() {
        return None;
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(SystemTime::from)
}

fn format_time(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Whether a KV `deletion_time` means "deleted now" (it may lie in the future when
/// `delete_version_after` set it).
fn deleted_by(deletion_time: &str) -> bool {
    parse_time(deletion_time).is_some_and(|t| t <= SystemTime::now())
}

impl Meta {
    fn from_response(r: ReadSecretMetadataResponse) -> Meta {
        let versions = r
            .versions
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    k.parse::<u64>().ok()?,
                    VersionState {
                        created: parse_time(&v.created_time),
                        deleted: deleted_by(&v.deletion_time),
                        destroyed: v.destroyed,
                    },
                ))
            })
            .collect();
        Meta {
            current_version: r.current_version,
            created: parse_time(&r.created_time),
            updated: parse_time(&r.updated_time),
            custom: r.custom_metadata.unwrap_or_default(),
            versions,
        }
    }

    fn is_deleted(&self) -> bool {
        self.custom.contains_key(KEY_DELETED_AT)
    }

    /// The version `CURRENT` is on: the stage key, else (no stage keys at all: a secret
    /// another tool wrote) the latest live version.
    fn current(&self) -> Option<u64> {
        current_in(&self.custom, || {
            self.versions
                .iter()
                .rev()
                .find(|(_, s)| s.live())
                .map(|(n, _)| *n)
        })
    }
}

fn current_in(
    custom: &HashMap<String, String>,
    latest_live: impl FnOnce() -> Option<u64>,
) -> Option<u64> {
    let stages = stages_in(custom);
    match stages.get(&Stage::Current) {
        Some(v) => Some(*v),
        None if stages.is_empty() => latest_live(),
        None => None,
    }
}

/// The stage map in custom metadata.
fn stages_in(custom: &HashMap<String, String>) -> BTreeMap<Stage, u64> {
    custom
        .iter()
        .filter_map(|(k, v)| {
            let stage = stage_of_key(k)?;
            Some((stage, v.parse::<u64>().ok()?))
        })
        .collect()
}

/// The custom-metadata key of a stage.
pub fn stage_key(stage: &Stage) -> Result<String> {
    Ok(match stage {
        Stage::Current => format!("{STAGE_PREFIX}current"),
        Stage::Pending => format!("{STAGE_PREFIX}pending"),
        Stage::Previous => format!("{STAGE_PREFIX}previous"),
        Stage::Custom(label) => {
            if ["current", "pending", "previous"]
                .iter()
                .any(|n| n.eq_ignore_ascii_case(label))
            {
                return Err(Error::invalid_input(format!(
                    "stage label {label:?} is a spelling of a named stage; use that stage"
                )));
            }
            format!("{STAGE_PREFIX}{label}")
        }
    })
}

fn stage_of_key(key: &str) -> Option<Stage> {
    let label = key.strip_prefix(STAGE_PREFIX)?;
    match label {
        "current" => Some(Stage::Current),
        "pending" => Some(Stage::Pending),
        "previous" => Some(Stage::Previous),
        other
            if ["current", "pending", "previous"]
                .iter()
                .any(|n| n.eq_ignore_ascii_case(other)) =>
        {
            None
        }
        other => other.parse::<Stage>().ok(),
    }
}

fn stages_on(
    custom: &HashMap<String, String>,
    version: u64,
    fallback_current: Option<u64>,
) -> Vec<Stage> {
    let map = stages_in(custom);
    let mut out: Vec<Stage> = map
        .iter()
        .filter(|(_, v)| **v == version)
        .map(|(s, _)| s.clone())
        .collect();
    if map.is_empty() && fallback_current == Some(version) {
        out.push(Stage::Current);
    }
    out.sort();
    out
}

/// A caller's version id as a KV version number.
fn parse_version(id: &VersionId) -> Option<u64> {
    let s = id.as_str();
    (!s.starts_with('+') && !s.starts_with('0'))
        .then(|| s.parse::<u64>().ok())
        .flatten()
        .filter(|n| *n > 0)
}

/// The custom-metadata key recording an idempotency token (a hash: tokens may be long).
fn token_key(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    format!("{KEY_TOKEN_PREFIX}{}", &hex::encode(digest)[..32])
}

fn check_tag(key: &str, value: &str) -> Result<()> {
    if key.starts_with(RESERVED_PREFIX) {
        return Err(Error::invalid_input(format!(
            "tag {key:?}: keys starting with {RESERVED_PREFIX} are sealbox's own custom \
             metadata"
        )));
    }
    if key.is_empty() || key.len() > MAX_CUSTOM_KEY_LEN || value.len() > MAX_CUSTOM_VALUE_LEN {
        return Err(Error::invalid_input(format!(
            "tag {key:?} cannot be Vault custom metadata: keys are 1 to {MAX_CUSTOM_KEY_LEN} \
             bytes, values at most {MAX_CUSTOM_VALUE_LEN}"
        )));
    }
    Ok(())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // A failure leaves zeros: only jitter and a lease holder id depend on it.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u64::from_le_bytes(b)
}

/// A held lease on one secret.
struct Lease {
    path: String,
    version: u64,
}

fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(subtle::ConstantTimeEq::ct_eq(a, b))
}

/// Vault wants a Go duration: whole seconds.
fn go_duration(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

impl VaultKv {
    /// Logs in with `config` and opens its mount.
    pub async fn connect(config: &VaultConfig) -> Result<VaultKv> {
        let session = Session::connect(config).await?;
        VaultKv::with_session(session, config)
    }

    /// The store on a session the caller made (to share one login between stores and the
    /// Transit key provider).
    pub fn with_session(session: Arc<Session>, config: &VaultConfig) -> Result<VaultKv> {
        config.validate()?;
        Ok(VaultKv {
            session,
            mount: config.mount().to_owned(),
            prefix: config.secret_prefix()?,
            kv_version: config.kv_version.unwrap_or(2),
            max_versions: config.max_versions,
            delete_version_after: config.delete_version_after.map(go_duration),
        })
    }

    /// The session (token, renewal) underneath.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// The path of a sealbox name inside the mount (prefix included).
    pub fn path(&self, name: &SecretName) -> Result<String> {
        let path = match &self.prefix {
            Some(p) => format!("{p}/{name}"),
            None => name.to_string(),
        };
        if path
            .strip_prefix(LOCK_ROOT)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        {
            return Err(Error::invalid_input(format!(
                "secret name {name}: {LOCK_ROOT}/ holds sealbox's write leases; use another name"
            )));
        }
        Ok(path)
    }

    fn target(&self, kind: &str, path: &str) -> String {
        format!("{}/{kind}/{path}", self.mount)
    }

    fn read_only(&self) -> bool {
        self.kv_version == 1
    }

    fn refuse_write(&self, op: &str) -> Result<()> {
        if self.read_only() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "the vault store reads the KV v1 mount {} only; {op} needs a KV v2 mount",
                    self.mount
                ),
            ));
        }
        Ok(())
    }

    async fn read_meta(&self, path: &str) -> Result<Option<Meta>> {
        let mount = self.mount.as_str();
        let r = self
            .session
            .run(|c| async move { vaultrs::kv2::read_metadata(&c.client, mount, path).await })
            .await?;
        match r {
            Ok(m) => Ok(Some(Meta::from_response(m))),
            Err(e) if error::status(&e) == Some(404) => Ok(None),
            Err(e) => Err(error::from_client(
                Call {
                    operation: "read metadata",
                    target: &self.target("metadata", path),
                },
                e,
            )),
        }
    }

    /// One version's data and metadata (`None`: the latest); `Ok(None)` on 404 (no secret,
    /// or that version is deleted or destroyed).
    async fn read_data(
        &self,
        path: &str,
        version: Option<u64>,
    ) -> Result<Option<ReadSecretResponse>> {
        let mount = self.mount.as_str();
        let r = self
            .session
            .run(|c| async move {
                let endpoint = ReadSecretRequest::builder()
                    .mount(mount)
                    .path(path)
                    .version(version)
                    .build()
                    .map_err(|_| ClientError::InvalidUpdateParameter)?;
                vaultrs::api::exec_with_result(&c.client, endpoint).await
            })
            .await?;
        match r {
            Ok(d) => Ok(Some(d)),
            Err(e) if error::status(&e) == Some(404) => Ok(None),
            Err(e) => Err(error::from_client(
                Call {
                    operation: "read",
                    target: &self.target("data", path),
                },
                e,
            )),
        }
    }

    /// Writes data with `cas`; `Ok(None)` when the check-and-set failed.
    async fn write_data(&self, path: &str, data: &Value, cas: u64) -> Result<Option<u64>> {
        let mount = self.mount.as_str();
        let cas32 = u32::try_from(cas)
            .map_err(|_| Error::internal(format!("version {cas} is past what vaultrs sends")))?;
        let r = self
            .session
            .run(|c| async move {
                vaultrs::kv2::set_with_options(
                    &c.client,
                    mount,
                    path,
                    data,
                    SetSecretRequestOptions { cas: cas32 },
                )
                .await
            })
            .await?;
        match r {
            Ok(m) => Ok(Some(m.version)),
            Err(e) if error::is_cas_mismatch(&e) => Ok(None),
            Err(e) => Err(error::from_client(
                Call {
                    operation: "write",
                    target: &self.target("data", path),
                },
                e,
            )),
        }
    }

    async fn write_meta(&self, path: &str, custom: &HashMap<String, String>) -> Result<()> {
        if custom.len() > MAX_CUSTOM_KEYS {
            return Err(Error::invalid_input(format!(
                "secret at {path} would have {} custom-metadata keys; Vault allows \
                 {MAX_CUSTOM_KEYS} (tags, stages and sealbox's own keys together)",
                custom.len()
            )));
        }
        let mount = self.mount.as_str();
        let r = self
            .session
            .run(|c| async move {
                let mut b = SetSecretMetadataRequest::builder();
                b.mount(mount).path(path).custom_metadata(custom.clone());
                if let Some(n) = self.max_versions {
                    b.max_versions(n);
                }
                if let Some(d) = &self.delete_version_after {
                    b.delete_version_after(d.clone());
                }
                let endpoint = b.build().map_err(|_| ClientError::InvalidUpdateParameter)?;
                vaultrs::api::exec_with_empty(&c.client, endpoint).await
            })
            .await?;
        r.map_err(|e| {
            error::from_client(
                Call {
                    operation: "write metadata",
                    target: &self.target("metadata", path),
                },
                e,
            )
        })
    }

    async fn versions_op(&self, op: &'static str, path: &str, versions: Vec<u64>) -> Result<()> {
        if versions.is_empty() {
            return Ok(());
        }
        let mount = self.mount.as_str();
        let r = self
            .session
            .run(|c| {
                let versions = versions.clone();
                async move {
                    match op {
                        "delete" => {
                            vaultrs::kv2::delete_versions(&c.client, mount, path, versions).await
                        }
                        "undelete" => {
                            vaultrs::kv2::undelete_versions(&c.client, mount, path, versions).await
                        }
                        _ => vaultrs::kv2::destroy_versions(&c.client, mount, path, versions).await,
                    }
                }
            })
            .await?;
        r.map_err(|e| {
            error::from_client(
                Call {
                    operation: op,
                    target: &self.target(op, path),
                },
                e,
            )
        })
    }

    async fn delete_metadata(&self, path: &str) -> Result<bool> {
        let mount = self.mount.as_str();
        let r = self
            .session
            .run(|c| async move { vaultrs::kv2::delete_metadata(&c.client, mount, path).await })
            .await?;
        match r {
            Ok(()) => Ok(true),
            Err(e) if error::status(&e) == Some(404) => Ok(false),
            Err(e) => Err(error::from_client(
                Call {
                    operation: "delete metadata",
                    target: &self.target("metadata", path),
                },
                e,
            )),
        }
    }

    /// Takes the lease on `path` (see the module docs), waiting up to 20 s for its holder.
    async fn lock(&self, path: &str) -> Result<Lease> {
        let lock_path = format!("{LOCK_ROOT}/{path}");
        let holder = format!("{:016x}", random_u64());
        let deadline = Instant::now() + LEASE_WAIT;
        let mut delay = Duration::from_millis(4);
        loop {
            let (version, held_until) = match self.read_data(&lock_path, None).await? {
                Some(r) => (
                    r.metadata.version,
                    r.data.get("until_ms").and_then(Value::as_u64).unwrap_or(0),
                ),
                None => (
                    self.read_meta(&lock_path)
                        .await?
                        .map_or(0, |m| m.current_version),
                    0,
                ),
            };
            if held_until <= now_ms() {
                let claim = serde_json::json!({
                    "holder": holder,
                    "until_ms": now_ms() + LEASE.as_millis() as u64,
                });
                if let Some(v) = self.write_data(&lock_path, &claim, version).await? {
                    if version == 0 {
                        // Keep only the newest lease records.
                        let mount = self.mount.as_str();
                        let lp = lock_path.as_str();
                        let _ = self
                            .session
                            .run(|c| async move {
                                let mut b = SetSecretMetadataRequest::builder();
                                b.mount(mount).path(lp).max_versions(2u64);
                                let endpoint =
                                    b.build().map_err(|_| ClientError::InvalidUpdateParameter)?;
                                vaultrs::api::exec_with_empty(&c.client, endpoint).await
                            })
                            .await;
                    }
                    return Ok(Lease {
                        path: lock_path,
                        version: v,
                    });
                }
                // Another writer took it between our read and write: look again at once.
                continue;
            }
            if Instant::now() >= deadline {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "secret at {path} stayed locked by another writer for {} s; retry",
                        LEASE_WAIT.as_secs()
                    ),
                ));
            }
            let jitter = Duration::from_millis(random_u64() % (delay.as_millis() as u64 + 1));
            tokio::time::sleep(delay + jitter).await;
            delay = (delay * 2).min(Duration::from_millis(100));
        }
    }

    /// Ends a lease; if it expired and someone else took it over, leaves theirs alone.
    async fn unlock(&self, lease: Lease) {
        let free = serde_json::json!({"holder": "", "until_ms": 0});
        if let Err(e) = self.write_data(&lease.path, &free, lease.version).await {
            tracing::warn!(
                path = %lease.path,
                "vault: could not end a write lease ({e}); it expires by itself in {} s",
                LEASE.as_secs()
            );
        }
    }

    /// Runs `f` under the lease of `path`.
    async fn locked<T>(
        &self,
        path: &str,
        f: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let lease = self.lock(path).await?;
        let out = f.await;
        self.unlock(lease).await;
        out
    }

    /// The live metadata of a secret, or `NotFound` naming it (also when soft-deleted).
    async fn live_meta(&self, name: &SecretName, path: &str) -> Result<Meta> {
        match self.read_meta(path).await? {
            Some(m) if m.is_deleted() => Err(Error::not_found(format!(
                "secret {name} is deleted; restore it to use it"
            ))),
            Some(m) => Ok(m),
            None => Err(Error::not_found(format!("secret {name} does not exist"))),
        }
    }

    fn version_of(
        &self,
        name: &SecretName,
        r: ReadSecretResponse,
        fallback_current: Option<u64>,
        custom: &HashMap<String, String>,
    ) -> Result<SecretVersion> {
        let n = r.metadata.version;
        Ok(SecretVersion {
            value: value::decode(r.data, || format!("secret {name} version {n}"))?,
            version: VersionId::from(n),
            stages: stages_on(custom, n, fallback_current),
            created: parse_time(&r.metadata.created_time),
        })
    }

    async fn get_v1(&self, name: &SecretName, selector: &VersionSelector) -> Result<SecretVersion> {
        let path = self.path(name)?;
        match selector {
            VersionSelector::Current | VersionSelector::Stage(Stage::Current) => {}
            VersionSelector::Version(v) if v.as_str() == "1" => {}
            other => {
                return Err(Error::not_found(format!(
                    "secret {name} has no version {other} (a KV v1 secret has one version, 1)"
                )));
            }
        }
        let mount = self.mount.as_str();
        let p = path.as_str();
        let r = self
            .session
            .run(|c| async move { vaultrs::kv1::get_raw(&c.client, mount, p).await })
            .await?;
        match r {
            Ok(resp) => Ok(SecretVersion {
                value: value::decode(resp.data, || format!("secret {name}"))?,
                version: VersionId::from(1u64),
                stages: vec![Stage::Current],
                created: None,
            }),
            Err(e) if error::status(&e) == Some(404) => {
                Err(Error::not_found(format!("secret {name} does not exist")))
            }
            Err(e) => Err(error::from_client(
                Call {
                    operation: "read",
                    target: &format!("{}/{path}", self.mount),
                },
                e,
            )),
        }
    }

    /// Every name under `dir` (a folder path ending in `/`, or empty) whose path starts with
    /// `full_prefix`, walking sub-folders.
    async fn walk(&self, full_prefix: &str) -> Result<Vec<String>> {
        let start = match full_prefix.rfind('/') {
            Some(i) => full_prefix[..=i].to_owned(),
            None => String::new(),
        };
        let mut out = Vec::new();
        let mut folders = vec![start];
        while let Some(dir) = folders.pop() {
            let mount = self.mount.as_str();
            let d = dir.as_str();
            let kv1 = self.read_only();
            let r = self
                .session
                .run(|c| async move {
                    if kv1 {
                        vaultrs::kv1::list(&c.client, mount, d)
                            .await
                            .map(|r| r.data.keys)
                    } else {
                        vaultrs::kv2::list(&c.client, mount, d).await
                    }
                })
                .await?;
            let keys = match r {
                Ok(k) => k,
                Err(e) if error::status(&e) == Some(404) => continue,
                Err(e) => {
                    return Err(error::from_client(
                        Call {
                            operation: "list",
                            target: &self.target("metadata", &dir),
                        },
                        e,
                    ));
                }
            };
            for k in keys {
                let full = format!("{dir}{k}");
                if full == format!("{LOCK_ROOT}/") {
                    continue;
                }
                if k.ends_with('/') {
                    if full.starts_with(full_prefix) || full_prefix.starts_with(&full) {
                        folders.push(full);
                    }
                } else if full.starts_with(full_prefix) {
                    out.push(full);
                }
            }
        }
        Ok(out)
    }
}

impl VaultKv {
    fn capabilities_now(&self) -> Capabilities {
        if self.read_only() {
            return Capabilities {
                list_paging: true,
                max_value_len: MAX_VALUE_LEN,
                ..Capabilities::READ_ONLY
            };
        }
        Capabilities {
            write: true,
            versions: true,
            stages: true,
            compare_and_set: true,
            soft_delete: true,
            list_paging: true,
            binary: true,
            cheap_describe: true,
            max_value_len: MAX_VALUE_LEN,
        }
    }

    async fn get_now(
        &self,
        name: &SecretName,
        selector: &VersionSelector,
    ) -> Result<SecretVersion> {
        if self.read_only() {
            return self.get_v1(name, selector).await;
        }
        let path = self.path(name)?;
        if let VersionSelector::Version(id) = selector {
            let Some(n) = parse_version(id) else {
                self.live_meta(name, &path).await?;
                return Err(Error::not_found(format!(
                    "secret {name} has no version {id}"
                )));
            };
            return match self.read_data(&path, Some(n)).await? {
                Some(r) => {
                    let custom = r.metadata.custom_metadata.clone().unwrap_or_default();
                    if custom.contains_key(KEY_DELETED_AT) {
                        return Err(Error::not_found(format!(
                            "secret {name} is deleted; restore it to use it"
                        )));
                    }
                    // The fallback CURRENT needs the latest version: only for foreign secrets.
                    let fallback = if stages_in(&custom).is_empty() {
                        self.read_meta(&path).await?.and_then(|m| m.current())
                    } else {
                        None
                    };
                    self.version_of(name, r, fallback, &custom)
                }
                None => {
                    let meta = self.live_meta(name, &path).await?;
                    Err(match meta.versions.get(&n) {
                        Some(s) if s.destroyed => {
                            Error::not_found(format!("secret {name} version {n} is destroyed"))
                        }
                        Some(_) => Error::not_found(format!(
                            "secret {name} version {n} is deleted in Vault (undelete it there \
                             to read it)"
                        )),
                        None => Error::not_found(format!("secret {name} has no version {n}")),
                    })
                }
            };
        }
        let stage = match selector {
            VersionSelector::Stage(s) => s.clone(),
            _ => Stage::Current,
        };
        // One call when the stage is on the latest version: its answer carries the metadata.
        let mut latest = self.read_data(&path, None).await?;
        let (custom, latest_version, fallback) = match &mut latest {
            Some(r) => {
                let custom = r.metadata.custom_metadata.take().unwrap_or_default();
                let v = r.metadata.version;
                (custom, Some(v), Some(v))
            }
            None => {
                let meta = self.live_meta(name, &path).await?;
                let fallback = meta.current();
                (meta.custom, None, fallback)
            }
        };
        if custom.contains_key(KEY_DELETED_AT) {
            return Err(Error::not_found(format!(
                "secret {name} is deleted; restore it to use it"
            )));
        }
        let map = stages_in(&custom);
        let target = match (&stage, map.get(&stage)) {
            (_, Some(v)) => *v,
            (Stage::Current, None) if map.is_empty() => fallback
                .ok_or_else(|| Error::not_found(format!("secret {name} has no live version")))?,
            _ => {
                return Err(Error::not_found(format!(
                    "secret {name} has no version staged {stage}"
                )));
            }
        };
        let fallback = if map.is_empty() { Some(target) } else { None };
        if latest_version == Some(target)
            && let Some(r) = latest
        {
            return self.version_of(name, r, fallback, &custom);
        }
        match self.read_data(&path, Some(target)).await? {
            Some(r) => self.version_of(name, r, fallback, &custom),
            None => Err(Error::not_found(format!(
                "secret {name}: version {target}, staged {stage}, is deleted or destroyed in \
                 Vault"
            ))),
        }
    }

    async fn put_now(
        &self,
        name: &SecretName,
        value: &Secret,
        options: &PutOptions,
    ) -> Result<VersionInfo> {
        self.refuse_write("put")?;
        if value.len() > MAX_VALUE_LEN {
            return Err(Error::invalid_input(format!(
                "secret {name}: a value of {} bytes is over the {MAX_VALUE_LEN}-byte limit of \
                 the vault store",
                value.len()
            )));
        }
        for (k, v) in &options.tags {
            check_tag(k, v)?;
        }
        if let Some(d) = &options.description
            && d.len() > MAX_CUSTOM_VALUE_LEN
        {
            return Err(Error::invalid_input(format!(
                "secret {name}: a description holds at most {MAX_CUSTOM_VALUE_LEN} bytes in \
                 Vault custom metadata"
            )));
        }
        let stage_keys: Vec<(Stage, String)> = options
            .stages
            .iter()
            .map(|s| Ok((s.clone(), stage_key(s)?)))
            .collect::<Result<_>>()?;
        let path = self.path(name)?;
        let mut data = value::encode(value);
        let out = self
            .put_locked(name, value, options, &path, &data, &stage_keys)
            .await;
        value::wipe(&mut data);
        out
    }
}

impl VaultKv {
    async fn put_locked(
        &self,
        name: &SecretName,
        value: &Secret,
        options: &PutOptions,
        path: &str,
        data: &Value,
        stage_keys: &[(Stage, String)],
    ) -> Result<VersionInfo> {
        let path = path.to_owned();
        self.locked(&path, async {
            let meta = self.read_meta(&path).await?;
            if meta.as_ref().is_some_and(Meta::is_deleted) {
                return Err(Error::not_found(format!(
                    "secret {name} is deleted; restore it (or force-delete it) before writing"
                )));
            }
            let mut custom = meta.as_ref().map(|m| m.custom.clone()).unwrap_or_default();
            let current = meta.as_ref().and_then(Meta::current);
            if let Some(token) = &options.idempotency_token {
                let key = token_key(token);
                if let Some(v) = custom.get(&key).and_then(|v| v.parse::<u64>().ok()) {
                    let earlier = self.read_data(&path, Some(v)).await?;
                    let same = match &earlier {
                        Some(r) => {
                            let was = value::decode(r.data.clone(), || {
                                format!("secret {name} version {v}")
                            })?;
                            same_bytes(was.expose_secret(), value.expose_secret())
                        }
                        None => false,
                    };
                    if !same {
                        return Err(Error::new(
                            ErrorKind::Conflict,
                            format!(
                                "secret {name}: this idempotency token was used for another \
                                 value (version {v}); use a new token"
                            ),
                        ));
                    }
                    return Ok(VersionInfo {
                        version: VersionId::from(v),
                        stages: stages_on(&custom, v, current),
                        created: earlier.and_then(|r| parse_time(&r.metadata.created_time)),
                    });
                }
            }
            if let Some(expected) = &options.expected_current {
                let ok = match (expected, current) {
                    (None, None) => true,
                    (Some(e), Some(c)) => parse_version(e) == Some(c),
                    _ => false,
                };
                if !ok {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        format!(
                            "secret {name}: CURRENT is {}, not {}; read it again and retry",
                            current.map_or("absent".to_owned(), |c| c.to_string()),
                            match expected {
                                Some(e) => e.to_string(),
                                None => "absent".to_owned(),
                            }
                        ),
                    ));
                }
            }
            let cas = meta.as_ref().map_or(0, |m| m.current_version);
            let Some(n) = self.write_data(&path, data, cas).await? else {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "secret {name} was written by a client outside sealbox's write lease \
                         (check-and-set failed); retry"
                    ),
                ));
            };
            // A secret another tool wrote gets its implicit CURRENT written down first.
            if stages_in(&custom).is_empty()
                && let Some(c) = current
            {
                custom.insert(stage_key(&Stage::Current)?, c.to_string());
            }
            for (stage, key) in stage_keys {
                if *stage == Stage::Current
                    && let Some(old) = current.filter(|c| *c != n)
                {
                    custom.insert(stage_key(&Stage::Previous)?, old.to_string());
                }
                custom.insert(key.clone(), n.to_string());
            }
            for (k, v) in &options.tags {
                custom.insert(k.clone(), v.clone());
            }
            if let Some(d) = &options.description {
                custom.insert(KEY_DESCRIPTION.into(), d.clone());
            }
            if let Some(token) = &options.idempotency_token {
                custom.insert(token_key(token), n.to_string());
                let mut tokens: Vec<(u64, String)> = custom
                    .iter()
                    .filter(|(k, _)| k.starts_with(KEY_TOKEN_PREFIX))
                    .map(|(k, v)| (v.parse().unwrap_or(0), k.clone()))
                    .collect();
                tokens.sort();
                let excess = tokens.len().saturating_sub(MAX_TOKENS);
                for (_, k) in tokens.into_iter().take(excess) {
                    custom.remove(&k);
                }
            }
            self.write_meta(&path, &custom).await?;
            let created = self
                .read_meta(&path)
                .await
                .ok()
                .flatten()
                .and_then(|m| m.versions.get(&n).and_then(|s| s.created));
            Ok(VersionInfo {
                version: VersionId::from(n),
                stages: stages_on(&custom, n, None),
                created: created.or(Some(SystemTime::now())),
            })
        })
        .await
    }
}

#[async_trait]
impl SecretStore for VaultKv {
    fn kind(&self) -> &'static str {
        "vault"
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities_now()
    }

    async fn get(&self, name: &SecretName, selector: &VersionSelector) -> Result<SecretVersion> {
        self.get_now(name, selector).await
    }

    async fn put(
        &self,
        name: &SecretName,
        value: &Secret,
        options: &PutOptions,
    ) -> Result<VersionInfo> {
        self.put_now(name, value, options).await
    }

    async fn describe(&self, name: &SecretName) -> Result<SecretMetadata> {
        let path = self.path(name)?;
        if self.read_only() {
            let v = self.get_v1(name, &VersionSelector::Current).await?;
            return Ok(SecretMetadata {
                name: name.clone(),
                versions: vec![VersionInfo {
                    version: v.version,
                    stages: v.stages,
                    created: None,
                }],
                created: None,
                updated: None,
                last_rotated: None,
                description: None,
                tags: BTreeMap::new(),
                rotation_period: None,
                deleted: None,
            });
        }
        let Some(meta) = self.read_meta(&path).await? else {
            return Err(Error::not_found(format!("secret {name} does not exist")));
        };
        let deleted_secret = meta.is_deleted();
        let fallback = meta.current();
        let versions: Vec<VersionInfo> = meta
            .versions
            .iter()
            .filter(|(_, s)| !s.destroyed && (deleted_secret || !s.deleted))
            .map(|(n, s)| VersionInfo {
                version: VersionId::from(*n),
                stages: stages_on(&meta.custom, *n, fallback),
                created: s.created,
            })
            .collect();
        let tags = meta
            .custom
            .iter()
            .filter(|(k, _)| !k.starts_with(RESERVED_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let deleted = deleted_secret.then(|| {
            meta.custom
                .get(KEY_PURGE_AFTER)
                .and_then(|t| parse_time(t))
                .unwrap_or_else(SystemTime::now)
        });
        Ok(SecretMetadata {
            name: name.clone(),
            versions,
            created: meta.created,
            updated: meta.updated,
            last_rotated: None,
            description: meta.custom.get(KEY_DESCRIPTION).cloned(),
            tags,
            rotation_period: None,
            deleted,
        })
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        let full_prefix = match &self.prefix {
            Some(p) => format!("{p}/{}", options.prefix),
            None => options.prefix.clone(),
        };
        let strip = self.prefix.as_ref().map(|p| format!("{p}/"));
        let mut names: Vec<SecretName> = self
            .walk(&full_prefix)
            .await?
            .into_iter()
            .filter_map(|full| {
                let rest = match &strip {
                    Some(p) => full.strip_prefix(p.as_str())?.to_owned(),
                    None => full,
                };
                SecretName::new(rest).ok()
            })
            .filter(|n| n.starts_with(&options.prefix))
            .collect();
        names.sort();
        if let Some(after) = &options.page_token {
            names.retain(|n| n.as_str() > after.as_str());
        }
        let page_size = options.page_size.unwrap_or(DEFAULT_PAGE).max(1);
        let mut entries = Vec::new();
        let mut rest = names.into_iter().peekable();
        while entries.len() < page_size {
            let batch: Vec<SecretName> = rest.by_ref().take(page_size - entries.len()).collect();
            if batch.is_empty() {
                break;
            }
            if self.read_only() {
                entries.extend(batch.into_iter().map(|name| ListEntry {
                    name,
                    updated: None,
                    deleted: false,
                }));
                continue;
            }
            let metas = futures::future::join_all(batch.iter().map(|n| async move {
                let path = self.path(n)?;
                self.read_meta(&path).await
            }))
            .await;
            for (name, meta) in batch.into_iter().zip(metas) {
                let Some(meta) = meta? else { continue };
                let deleted = meta.is_deleted();
                if deleted && !options.include_deleted {
                    continue;
                }
                entries.push(ListEntry {
                    name,
                    updated: meta.updated,
                    deleted,
                });
            }
        }
        let next_page_token = match (rest.peek(), entries.last()) {
            (Some(_), Some(last)) => Some(last.name.to_string()),
            _ => None,
        };
        Ok(ListPage {
            entries,
            next_page_token,
        })
    }

    async fn delete(&self, name: &SecretName, options: &DeleteOptions) -> Result<()> {
        self.refuse_write("delete")?;
        let path = self.path(name)?;
        if options.force {
            self.locked(&path, async {
                // Vault answers DELETE metadata of a missing path with 204 as well.
                if self.read_meta(&path).await?.is_none() || !self.delete_metadata(&path).await? {
                    return Err(Error::not_found(format!("secret {name} does not exist")));
                }
                Ok(())
            })
            .await?;
            // The lease key goes too (best effort: it holds no value, and the lease above
            // was just ended).
            let _ = self.delete_metadata(&format!("{LOCK_ROOT}/{path}")).await;
            return Ok(());
        }
        if options.recovery_window.is_zero() {
            return Err(Error::invalid_input(
                "a soft delete needs a recovery window above zero; use force to delete at once",
            ));
        }
        self.locked(&path, async {
            let Some(meta) = self.read_meta(&path).await? else {
                return Err(Error::not_found(format!("secret {name} does not exist")));
            };
            if meta.is_deleted() {
                return Ok(());
            }
            let live: Vec<u64> = meta
                .versions
                .iter()
                .filter(|(_, s)| s.live())
                .map(|(n, _)| *n)
                .collect();
            let mut custom = meta.custom.clone();
            let now = SystemTime::now();
            custom.insert(KEY_DELETED_AT.into(), format_time(now));
            custom.insert(
                KEY_PURGE_AFTER.into(),
                format_time(now + options.recovery_window),
            );
            custom.insert(
                KEY_DELETED_VERSIONS.into(),
                live.iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            );
            // Mark first: a crash after the mark leaves a secret that reads as deleted and
            // that restore brings back.
            self.write_meta(&path, &custom).await?;
            self.versions_op("delete", &path, live).await
        })
        .await
    }

    async fn restore(&self, name: &SecretName) -> Result<()> {
        self.refuse_write("restore")?;
        let path = self.path(name)?;
        self.locked(&path, async {
            let Some(meta) = self.read_meta(&path).await? else {
                return Err(Error::not_found(format!(
                    "secret {name} does not exist (never written or force-deleted)"
                )));
            };
            if !meta.is_deleted() {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("secret {name} is not deleted; nothing to restore"),
                ));
            }
            let versions: Vec<u64> = meta
                .custom
                .get(KEY_DELETED_VERSIONS)
                .map(|s| s.split(',').filter_map(|v| v.parse().ok()).collect())
                .unwrap_or_default();
            self.versions_op("undelete", &path, versions).await?;
            let mut custom = meta.custom.clone();
            for k in [KEY_DELETED_AT, KEY_PURGE_AFTER, KEY_DELETED_VERSIONS] {
                custom.remove(k);
            }
            self.write_meta(&path, &custom).await
        })
        .await
    }

    async fn set_stage(
        &self,
        name: &SecretName,
        stage: &Stage,
        version: Option<&VersionId>,
    ) -> Result<()> {
        self.refuse_write("set_stage")?;
        let key = stage_key(stage)?;
        if version.is_none() && *stage == Stage::Current {
            return Err(Error::invalid_input(
                "CURRENT cannot be removed, only moved",
            ));
        }
        let path = self.path(name)?;
        let target = match version {
            None => None,
            Some(v) => Some(
                parse_version(v)
                    .ok_or_else(|| Error::not_found(format!("secret {name} has no version {v}")))?,
            ),
        };
        self.locked(&path, async {
            let meta = self.live_meta(name, &path).await?;
            if let Some(n) = target {
                match meta.versions.get(&n) {
                    None => {
                        return Err(Error::not_found(format!(
                            "secret {name} has no version {n}"
                        )));
                    }
                    Some(s) if !s.live() => {
                        return Err(Error::invalid_input(format!(
                            "secret {name} version {n} is deleted or destroyed; a stage cannot \
                             point at it"
                        )));
                    }
                    Some(_) => {}
                }
            }
            let mut custom = meta.custom.clone();
            let current = meta.current();
            if stages_in(&custom).is_empty()
                && let Some(c) = current
            {
                custom.insert(stage_key(&Stage::Current)?, c.to_string());
            }
            let holder = stages_in(&custom).get(stage).copied();
            if holder == target {
                return Ok(());
            }
            match target {
                None => {
                    custom.remove(&key);
                }
                Some(n) => {
                    if *stage == Stage::Current
                        && let Some(old) = holder.filter(|o| *o != n)
                    {
                        custom.insert(stage_key(&Stage::Previous)?, old.to_string());
                    }
                    custom.insert(key.clone(), n.to_string());
                }
            }
            self.write_meta(&path, &custom).await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_map_to_custom_metadata_keys_and_back() {
        for (stage, key) in [
            (Stage::Current, "sealbox-stage-current"),
            (Stage::Pending, "sealbox-stage-pending"),
            (Stage::Previous, "sealbox-stage-previous"),
            (Stage::Custom("blue".into()), "sealbox-stage-blue"),
        ] {
            assert_eq!(stage_key(&stage).unwrap(), key);
            assert_eq!(stage_of_key(key), Some(stage));
        }
        assert!(stage_key(&Stage::Custom("Current".into())).is_err());
        assert_eq!(stage_of_key("sealbox-stage-Current"), None);
        assert_eq!(stage_of_key("team"), None);
    }

    #[test]
    fn a_secret_without_stage_keys_reads_its_latest_live_version_as_current() {
        let mut custom = HashMap::new();
        assert_eq!(current_in(&custom, || Some(4)), Some(4));
        custom.insert("sealbox-stage-pending".to_owned(), "5".to_owned());
        assert_eq!(current_in(&custom, || Some(5)), None);
        custom.insert("sealbox-stage-current".to_owned(), "3".to_owned());
        assert_eq!(current_in(&custom, || Some(5)), Some(3));
    }

    #[test]
    fn version_ids_are_positive_numbers() {
        assert_eq!(parse_version(&VersionId::new("3")), Some(3));
        for bad in [
            "0",
            "-1",
            "03",
            "+3",
            "latest",
            "00000000-0000-4000-8000-00000000dead",
        ] {
            assert_eq!(parse_version(&VersionId::new(bad)), None, "{bad}");
        }
    }

    #[test]
    fn reserved_and_oversized_tags_are_refused() {
        check_tag("team", "platform").unwrap();
        assert!(check_tag("sealbox-stage-current", "1").is_err());
        assert!(check_tag(&"k".repeat(129), "v").is_err());
        assert!(check_tag("k", &"v".repeat(513)).is_err());
    }
}
