//! `GcpSecretManager`: the [`SecretStore`] over GCP Secret Manager.
//!
//! Mapping (see [`crate::names`] for ids and aliases):
//! - a name is a secret id under `projects/P` (or `projects/P/locations/L`), after the prefix;
//! - a version is GCP's version number (`"1"`, `"2"`, ...);
//! - stages are version aliases: `CURRENT` is `current`, and so on. A secret that has no
//!   `current` alias (one another tool made) reads its latest version as `CURRENT`;
//! - tags are labels (so they must be valid labels: lower-case keys and values); the
//!   description is the annotation `sealbox-description`;
//! - values are written with their CRC32C, which GCP checks on write; every read checks the
//!   CRC32C GCP returns against the bytes received and fails with `Integrity` on a mismatch.
//!
//! **Writes are commits of aliases.** `put` adds a version (GCP's `AddSecretVersion` takes no
//! condition), then moves the aliases in one `UpdateSecret` conditional on the etag read
//! before. Readers follow aliases, so a version is visible to sealbox only once its alias
//! update lands. Compare-and-set is therefore atomic: of several writers expecting the same
//! current version exactly one alias update succeeds; the others see `FAILED_PRECONDITION`,
//! re-read, find `current` moved, destroy the version they added and answer `Conflict`. A
//! version whose alias update could not be sent at all (a crash, an outage) stays unaliased:
//! invisible to sealbox, visible as `latest` to tools that read `latest`. What is not atomic:
//! a secret without a `current` alias whose `latest` another tool moves between the check and
//! the alias update.
//!
//! **Idempotency tokens** are recorded in the same conditional update, as the annotation
//! `sealbox-idem-<hash of the token>` naming the version (never the value). A retried put
//! compares its value with that version's value and returns it, or answers `Conflict`. The
//! newest 20 tokens are kept.
//!
//! **Delete and restore.** GCP deletes a secret at once and for good. A soft delete here
//! marks the secret (annotation `sealbox-deleted-at`), moves its version aliases into the
//! annotation `sealbox-deleted-aliases` and sets GCP's `expire_time` to the end of the
//! recovery window, so GCP itself purges it then; all in one update conditional on the etag.
//! sealbox hides a marked secret from `get`, `list` and writes; `restore` removes the mark and
//! the expiry (putting back an expiry the secret had before) and puts the aliases back. What
//! restore cannot do: bring back a secret after the window (GCP has purged it) or after a
//! force delete. Other GCP clients find no alias on a soft-deleted secret, but still read its
//! versions by number until it expires.
//!
//! **Reads.** A read by stage (`CURRENT` included) is one call: `AccessSecretVersion` by
//! alias, whose answer names the version. Since a soft-deleted secret has no aliases, an
//! alias that answers is a live secret's. The result carries the stage it was read by;
//! `describe` lists every stage of every version. A read by version number, and a read by
//! stage that found nothing, also read the secret's metadata (concurrently with the value):
//! to hide a soft-deleted secret, to tell a missing secret from a missing stage or a disabled
//! version, and to read `latest` as `CURRENT` for a secret with no `current` alias.
//!
//! Memory: values pass through the Google client as `bytes::Bytes` and its JSON (base64)
//! request and response bodies, which sealbox cannot wipe. The decoded value is moved into
//! locked memory and its buffer wiped; the client's other buffers are freed, not wiped.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use google_cloud_gax::error::rpc::Code;
use google_cloud_secretmanager_v1::client::SecretManagerService;
use google_cloud_secretmanager_v1::model;
use google_cloud_wkt::{FieldMask, Timestamp};
use sealbox::store::{
    Capabilities, DeleteOptions, ListEntry, ListOptions, ListPage, PutOptions, SecretMetadata,
    SecretName, SecretStore, SecretVersion, Stage, VersionId, VersionInfo, VersionSelector,
};
use sealbox::{Error, ErrorKind, ExposeSecret, Result, Secret};
use zeroize::Zeroizing;

use crate::config::{GcpConfig, ReplicationConfig};
use crate::error::{self, Call};
use crate::names::{self, CURRENT, PREVIOUS};

/// GCP's limit for one payload.
pub const MAX_VALUE_LEN: usize = 65_536;
/// The page size asked for when the caller names none.
const DEFAULT_PAGE: usize = 100;
/// GCP's page limit.
const MAX_PAGE: usize = 25_000;
/// Conditional alias updates tried before a put gives up under contention.
const MAX_ROUNDS: usize = 16;
/// Idempotency tokens remembered per secret.
const MAX_TOKENS: usize = 20;

/// Annotation holding the description.
pub const ANNOTATION_DESCRIPTION: &str = "sealbox-description";
/// Annotation marking a soft-deleted secret (RFC 3339 time of the delete).
pub const ANNOTATION_DELETED: &str = "sealbox-deleted-at";
/// Annotation keeping the version aliases of a soft-deleted secret (JSON, alias -> version):
/// a soft delete moves them here, so no alias answers while the secret is deleted.
pub const ANNOTATION_DELETED_ALIASES: &str = "sealbox-deleted-aliases";
/// Annotation keeping an expiry the secret had before a soft delete.
pub const ANNOTATION_PRIOR_EXPIRY: &str = "sealbox-prior-expire-time";
/// Prefix of the annotations recording idempotency tokens.
pub const ANNOTATION_TOKEN_PREFIX: &str = "sealbox-idem-";

/// The GCP Secret Manager store. Cheap to clone (the client is an `Arc` inside).
#[derive(Clone)]
pub struct GcpSecretManager {
    client: SecretManagerService,
    parent: String,
    prefix: Option<String>,
    replication: Option<model::Replication>,
    regional_key: Option<String>,
}

impl std::fmt::Debug for GcpSecretManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcpSecretManager")
            .field("parent", &self.parent)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn call<'a>(operation: &'static str, target: &'a str) -> Call<'a> {
    Call { operation, target }
}

/// The version number at the end of a version's resource name.
fn version_number(resource: &str) -> Option<i64> {
    resource.rsplit_once("/versions/")?.1.parse().ok()
}

/// A caller's version id as a GCP version number (positive integers only).
fn parse_version(id: &VersionId) -> Option<i64> {
    let s = id.as_str();
    (!s.starts_with('+') && !s.starts_with('0'))
        .then(|| s.parse::<i64>().ok())
        .flatten()
        .filter(|n| *n > 0)
}

fn system_time(t: Option<&Timestamp>) -> Option<SystemTime> {
    t.and_then(|t| SystemTime::try_from(*t).ok())
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The stages the aliases of `secret` put on `version` (for a soft-deleted secret, the
/// aliases it will have back when restored).
fn stages_of(secret: &model::Secret, version: i64) -> Vec<Stage> {
    let mut out: Vec<Stage> = aliases_of(secret)
        .iter()
        .filter(|(_, v)| **v == version)
        .filter_map(|(a, _)| names::from_alias(a))
        .collect();
    out.sort();
    out
}

fn is_deleted(secret: &model::Secret) -> bool {
    secret.annotations.contains_key(ANNOTATION_DELETED)
}

/// The secret's aliases; for a soft-deleted one, those its delete put aside.
fn aliases_of(secret: &model::Secret) -> HashMap<String, i64> {
    match secret.annotations.get(ANNOTATION_DELETED_ALIASES) {
        Some(saved) if is_deleted(secret) => serde_json::from_str(saved).unwrap_or_default(),
        _ => secret.version_aliases.clone(),
    }
}

/// The annotation key recording an idempotency token (a hash: tokens may be long or odd).
fn token_key(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    format!("{ANNOTATION_TOKEN_PREFIX}{}", &hex::encode(digest)[..32])
}

/// Checks a tag against GCP's label rules (labels are where tags live).
fn check_label(key: &str, value: &str) -> Result<()> {
    let part = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
    let key_ok = (1..=63).contains(&key.len())
        && key.starts_with(|c: char| c.is_ascii_lowercase())
        && key.chars().all(part);
    let value_ok = value.len() <= 63 && value.chars().all(part);
    if key_ok && value_ok {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "tag {key:?} cannot be a GCP label: keys start with a lower-case letter, keys and \
             values hold at most 63 lower-case letters, digits, '_' or '-'"
        )))
    }
}

/// Moves a payload out of the client's buffer into locked memory, checking its CRC32C.
fn take_payload(
    name: &SecretName,
    version: &str,
    payload: Option<model::SecretPayload>,
) -> Result<Secret> {
    let payload = payload.unwrap_or_default();
    let data = Zeroizing::new(Vec::<u8>::from(payload.data));
    if let Some(expected) = payload.data_crc32c {
        let got = i64::from(crc32c::crc32c(&data));
        if got != expected {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!(
                    "secret {name} version {version}: the value received does not match the \
                     CRC32C GCP sent with it; it was damaged in transit: retry"
                ),
            ));
        }
    }
    Secret::from_zeroizing(data)
}

impl GcpSecretManager {
    /// Connects with `config`: its credentials, endpoint, retries and timeouts.
    pub async fn connect(config: &GcpConfig) -> Result<GcpSecretManager> {
        let client = config.client().await?;
        GcpSecretManager::from_client(client, config)
    }

    /// The store on a client the caller built (custom credentials, tests), taking the
    /// project, location, prefix and replication from `config`.
    pub fn from_client(client: SecretManagerService, config: &GcpConfig) -> Result<Self> {
        config.validate()?;
        let replication = match (&config.location, &config.replication) {
            (Some(_), _) => None,
            (None, None) => {
                Some(model::Replication::new().set_automatic(model::replication::Automatic::new()))
            }
            (None, Some(ReplicationConfig::Automatic { kms_key_name })) => {
                let mut auto = model::replication::Automatic::new();
                if let Some(k) = kms_key_name {
                    auto = auto.set_customer_managed_encryption(
                        model::CustomerManagedEncryption::new().set_kms_key_name(k),
                    );
                }
                Some(model::Replication::new().set_automatic(auto))
            }
            (None, Some(ReplicationConfig::UserManaged { replicas })) => {
                let replicas = replicas.iter().map(|r| {
                    let mut replica =
                        model::replication::user_managed::Replica::new().set_location(&r.location);
                    if let Some(k) = &r.kms_key_name {
                        replica = replica.set_customer_managed_encryption(
                            model::CustomerManagedEncryption::new().set_kms_key_name(k),
                        );
                    }
                    replica
                });
                Some(model::Replication::new().set_user_managed(
                    model::replication::UserManaged::new().set_replicas(replicas),
                ))
            }
        };
        Ok(GcpSecretManager {
            client,
            parent: config.parent(),
            prefix: config.secret_prefix()?,
            replication,
            regional_key: config.kms_key_name.clone(),
        })
    }

    /// The Google client underneath, for operations sealbox does not wrap.
    pub fn client(&self) -> &SecretManagerService {
        &self.client
    }

    /// The GCP secret id of a sealbox name (prefix included).
    pub fn secret_id(&self, name: &SecretName) -> Result<String> {
        match &self.prefix {
            Some(p) => names::secret_id(&format!("{p}/{name}")),
            None => names::secret_id(name.as_str()),
        }
    }

    /// The secret's resource name: `projects/P/secrets/ID`.
    pub fn resource(&self, name: &SecretName) -> Result<String> {
        Ok(format!("{}/secrets/{}", self.parent, self.secret_id(name)?))
    }

    async fn get_secret(&self, resource: &str) -> Result<Option<model::Secret>> {
        match self.client.get_secret().set_name(resource).send().await {
            Ok(s) => Ok(Some(s)),
            Err(e) if error::code(&e) == Some(Code::NotFound) => Ok(None),
            Err(e) => Err(error::from_gax(call("GetSecret", resource), e)),
        }
    }

    /// The secret, or `NotFound` naming it (also when it is soft-deleted, unless `deleted_ok`).
    async fn live_secret(&self, name: &SecretName, resource: &str) -> Result<model::Secret> {
        match self.get_secret(resource).await? {
            Some(s) if !is_deleted(&s) => Ok(s),
            Some(_) => Err(Error::not_found(format!(
                "secret {name} is deleted (recoverable until it expires); restore it to use it"
            ))),
            None => Err(Error::not_found(format!("secret {name} does not exist"))),
        }
    }

    /// The version `CURRENT` is on: the `current` alias, else (a secret no sealbox wrote) the
    /// latest version that is not destroyed.
    async fn current_of(&self, resource: &str, secret: &model::Secret) -> Result<Option<i64>> {
        if let Some(v) = secret.version_aliases.get(CURRENT) {
            return Ok(Some(*v));
        }
        let latest = format!("{resource}/versions/latest");
        match self
            .client
            .get_secret_version()
            .set_name(&latest)
            .send()
            .await
        {
            Ok(v) if v.state != model::secret_version::State::Destroyed => {
                Ok(version_number(&v.name))
            }
            Ok(_) => Ok(None),
            Err(e) if error::code(&e) == Some(Code::NotFound) => Ok(None),
            Err(e) => Err(error::from_gax(call("GetSecretVersion", &latest), e)),
        }
    }

    async fn access(
        &self,
        name: &SecretName,
        resource: &str,
        version: &str,
    ) -> Result<(i64, Secret)> {
        let target = format!("{resource}/versions/{version}");
        let out = self
            .client
            .access_secret_version()
            .set_name(&target)
            .send()
            .await
            .map_err(|e| {
                let code = error::code(&e);
                let err = error::from_gax(call("AccessSecretVersion", &target), e);
                match code {
                    Some(Code::NotFound) => error::rekind(
                        &err,
                        ErrorKind::NotFound,
                        format!("secret {name} has no version {version}"),
                    ),
                    // Disabled or destroyed: there is no value to read.
                    Some(Code::FailedPrecondition) => error::rekind(
                        &err,
                        ErrorKind::NotFound,
                        format!(
                            "secret {name} version {version} is disabled or destroyed ({}); \
                             enable it in GCP to read it",
                            err.message()
                        ),
                    ),
                    _ => err,
                }
            })?;
        let number = version_number(&out.name).ok_or_else(|| {
            Error::internal(format!(
                "AccessSecretVersion for {target} answered with the name {:?}",
                out.name
            ))
        })?;
        let value = take_payload(name, version, out.payload)?;
        Ok((number, value))
    }

    async fn add_version(&self, resource: &str, value: &Secret) -> Result<i64> {
        let bytes = value.expose_secret();
        let payload = model::SecretPayload::new()
            .set_data(bytes::Bytes::copy_from_slice(bytes))
            .set_data_crc32c(i64::from(crc32c::crc32c(bytes)));
        let v = self
            .client
            .add_secret_version()
            .set_parent(resource)
            .set_payload(payload)
            .send()
            .await
            .map_err(|e| error::from_gax(call("AddSecretVersion", resource), e))?;
        version_number(&v.name).ok_or_else(|| {
            Error::internal(format!(
                "AddSecretVersion for {resource} answered with the name {:?}",
                v.name
            ))
        })
    }

    /// Best effort: a version that lost its race is destroyed so nobody reads it as `latest`.
    async fn discard(&self, resource: &str, version: Option<i64>) {
        if let Some(v) = version {
            let target = format!("{resource}/versions/{v}");
            if let Err(e) = self
                .client
                .destroy_secret_version()
                .set_name(&target)
                .send()
                .await
            {
                tracing::warn!(
                    version = %target,
                    "could not destroy a version that lost a compare-and-set: {}",
                    error::from_gax(call("DestroySecretVersion", &target), e)
                );
            }
        }
    }

    async fn create(
        &self,
        resource: &str,
        id: &str,
        options: &PutOptions,
    ) -> Result<model::Secret> {
        let mut secret = model::Secret::new()
            .set_labels(options.tags.clone())
            .set_annotations(
                options
                    .description
                    .iter()
                    .map(|d| (ANNOTATION_DESCRIPTION.to_owned(), d.clone())),
            );
        if let Some(r) = &self.replication {
            secret = secret.set_replication(r.clone());
        }
        if let Some(k) = &self.regional_key {
            secret = secret.set_customer_managed_encryption(
                model::CustomerManagedEncryption::new().set_kms_key_name(k),
            );
        }
        self.client
            .create_secret()
            .set_parent(&self.parent)
            .set_secret_id(id)
            .set_secret(secret)
            .send()
            .await
            .map_err(|e| error::from_gax(call("CreateSecret", resource), e))
    }

    /// `UpdateSecret` of `fields` conditional on `secret.etag`. `Ok(None)` when the etag no
    /// longer matches (someone else changed the secret since it was read).
    async fn update_if_unchanged(
        &self,
        resource: &str,
        secret: model::Secret,
        fields: &[&str],
    ) -> Result<Option<model::Secret>> {
        let secret = secret.set_name(resource);
        match self
            .client
            .update_secret()
            .set_secret(secret)
            .set_update_mask(FieldMask::default().set_paths(fields.iter().copied()))
            .send()
            .await
        {
            Ok(s) => Ok(Some(s)),
            Err(e) if error::code(&e) == Some(Code::FailedPrecondition) => Ok(None),
            Err(e) => Err(error::from_gax(call("UpdateSecret", resource), e)),
        }
    }

    async fn all_versions(&self, resource: &str) -> Result<Vec<model::SecretVersion>> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .client
                .list_secret_versions()
                .set_parent(resource)
                .set_page_size(MAX_PAGE as i32)
                .set_page_token(token)
                .send()
                .await
                .map_err(|e| error::from_gax(call("ListSecretVersions", resource), e))?;
            out.extend(page.versions);
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            token = page.next_page_token;
        }
    }

    /// `get` with the secret's metadata read beside the value (two calls, concurrent): reads
    /// by version number, and the cases where a read by alias found nothing, so the error
    /// says why (missing, soft-deleted, disabled version) or CURRENT falls back to `latest`.
    async fn get_checked(
        &self,
        name: &SecretName,
        resource: &str,
        selector: &VersionSelector,
    ) -> Result<SecretVersion> {
        let reference: String = match selector {
            VersionSelector::Current => CURRENT.to_owned(),
            VersionSelector::Stage(stage) => names::to_alias(stage)?.to_owned(),
            VersionSelector::Version(id) => match parse_version(id) {
                Some(n) => n.to_string(),
                None => {
                    return Err(Error::not_found(format!(
                        "secret {name} has no version {id} (GCP versions are numbers)"
                    )));
                }
            },
        };
        // Metadata (deleted mark, aliases) and value in one round trip of latency.
        let (secret, value) = futures::join!(
            self.live_secret(name, resource),
            self.access(name, resource, &reference)
        );
        let secret = secret?;
        let (number, value) = match value {
            Ok(v) => v,
            // A secret without a `current` alias (written by another tool): CURRENT is latest.
            Err(e)
                if e.kind() == ErrorKind::NotFound
                    && *selector == VersionSelector::Current
                    && !secret.version_aliases.contains_key(CURRENT) =>
            {
                self.access(name, resource, "latest").await?
            }
            Err(e) => {
                return Err(match selector {
                    VersionSelector::Stage(s) if e.message().contains("has no version") => {
                        error::rekind(
                            &e,
                            ErrorKind::NotFound,
                            format!("secret {name} has no version staged {s}"),
                        )
                    }
                    _ => e,
                });
            }
        };
        let mut stages = stages_of(&secret, number);
        if !secret.version_aliases.contains_key(CURRENT) && *selector == VersionSelector::Current {
            stages.push(Stage::Current);
        }
        Ok(SecretVersion {
            value,
            version: VersionId::from(number as u64),
            stages,
            created: None,
        })
    }

    /// A put retried with a recorded token: the recorded version when the value is the same.
    async fn replay(
        &self,
        name: &SecretName,
        resource: &str,
        secret: &model::Secret,
        recorded: &str,
        value: &Secret,
    ) -> Result<VersionInfo> {
        let (number, existing) = self.access(name, resource, recorded).await?;
        if !existing.ct_eq(value) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "secret {name}: this idempotency token was used for version {number} with a \
                     different value"
                ),
            ));
        }
        Ok(VersionInfo {
            version: VersionId::from(number as u64),
            stages: stages_of(secret, number),
            created: None,
        })
    }
}

#[async_trait]
impl SecretStore for GcpSecretManager {
    fn kind(&self) -> &'static str {
        "gcp"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            write: true,
            versions: true,
            stages: true,
            compare_and_set: true,
            soft_delete: true,
            list_paging: true,
            binary: true,
            cheap_describe: false,
            max_value_len: MAX_VALUE_LEN,
        }
    }

    async fn get(&self, name: &SecretName, selector: &VersionSelector) -> Result<SecretVersion> {
        let resource = self.resource(name)?;
        let stage = match selector {
            VersionSelector::Current => Stage::Current,
            VersionSelector::Stage(stage) => stage.clone(),
            VersionSelector::Version(_) => {
                return self.get_checked(name, &resource, selector).await;
            }
        };
        // By stage: one call, the access by alias. A soft delete moves every alias into an
        // annotation in the same conditional update that marks the secret (see `delete`), so
        // an alias that answers belongs to a live secret; and the answer names the version.
        // The stages reported are the one read by; `describe` lists every stage.
        let read = self.access(name, &resource, names::to_alias(&stage)?).await;
        match read {
            Ok((number, value)) => Ok(SecretVersion {
                value,
                version: VersionId::from(number as u64),
                stages: vec![stage],
                created: None,
            }),
            // Missing, deleted, no `current` alias (another tool's secret) or a disabled
            // version: the metadata tells which.
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.get_checked(name, &resource, selector).await
            }
            Err(e) => Err(e),
        }
    }

    async fn put(
        &self,
        name: &SecretName,
        value: &Secret,
        options: &PutOptions,
    ) -> Result<VersionInfo> {
        if value.len() > MAX_VALUE_LEN {
            return Err(Error::invalid_input(format!(
                "GCP Secret Manager values are at most {MAX_VALUE_LEN} bytes; this one has {}",
                value.len()
            )));
        }
        let mut aliases: Vec<&str> = Vec::with_capacity(options.stages.len());
        for s in &options.stages {
            let a = names::to_alias(s)?;
            if !aliases.contains(&a) {
                aliases.push(a);
            }
        }
        for (k, v) in &options.tags {
            check_label(k, v)?;
        }
        let id = self.secret_id(name)?;
        let resource = format!("{}/secrets/{id}", self.parent);
        let token = options.idempotency_token.as_deref().map(token_key);
        let mut added: Option<i64> = None;

        for _ in 0..MAX_ROUNDS {
            let (secret, fresh) = match self.get_secret(&resource).await? {
                Some(s) if is_deleted(&s) => {
                    self.discard(&resource, added).await;
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        format!("secret {name} is deleted; restore it before writing"),
                    ));
                }
                Some(s) => (s, false),
                None => {
                    if let Some(Some(expected)) = &options.expected_current {
                        return Err(Error::new(
                            ErrorKind::Conflict,
                            format!(
                                "secret {name} does not exist; expected current version \
                                 {expected}"
                            ),
                        ));
                    }
                    match self.create(&resource, &id, options).await {
                        Ok(s) => (s, true),
                        // Another writer created it first: read it and go on.
                        Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                        Err(e) => return Err(e),
                    }
                }
            };
            // Our alias update may have landed although its answer was lost.
            if let Some(n) = added
                && secret.version_aliases.values().any(|v| *v == n)
            {
                return Ok(VersionInfo {
                    version: VersionId::from(n as u64),
                    stages: stages_of(&secret, n),
                    created: Some(SystemTime::now()),
                });
            }
            if let Some(key) = &token
                && let Some(recorded) = secret.annotations.get(key)
            {
                let out = self.replay(name, &resource, &secret, recorded, value).await;
                self.discard(&resource, added).await;
                return out;
            }
            let current = if fresh {
                None
            } else {
                self.current_of(&resource, &secret).await?
            };
            match &options.expected_current {
                Some(None) if current.is_some() || !fresh && added.is_none() => {
                    self.discard(&resource, added).await;
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        format!("secret {name} already exists (expected it not to)"),
                    ));
                }
                Some(Some(expected)) if current != parse_version(expected) => {
                    self.discard(&resource, added).await;
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        format!("secret {name}: current version is not the expected {expected}"),
                    ));
                }
                _ => {}
            }
            let n = match added {
                Some(n) => n,
                None => {
                    let n = self.add_version(&resource, value).await?;
                    added = Some(n);
                    n
                }
            };

            let mut new_aliases = secret.version_aliases.clone();
            let mut moving: Vec<&str> = aliases.clone();
            if current.is_none() && !moving.contains(&CURRENT) {
                // The first version of a secret is CURRENT whatever else it carries.
                moving.insert(0, CURRENT);
            }
            for a in &moving {
                if *a == CURRENT
                    && let Some(old) = current
                    && old != n
                {
                    new_aliases.insert(PREVIOUS.to_owned(), old);
                }
                new_aliases.insert((*a).to_owned(), n);
            }
            let mut annotations = secret.annotations.clone();
            if let Some(d) = &options.description {
                annotations.insert(ANNOTATION_DESCRIPTION.to_owned(), d.clone());
            }
            if let Some(key) = &token {
                annotations.insert(key.clone(), n.to_string());
                let mut tokens: Vec<(i64, String)> = annotations
                    .iter()
                    .filter(|(k, _)| k.starts_with(ANNOTATION_TOKEN_PREFIX))
                    .map(|(k, v)| (v.parse().unwrap_or(0), k.clone()))
                    .collect();
                tokens.sort();
                let excess = tokens.len().saturating_sub(MAX_TOKENS);
                for (_, k) in tokens.into_iter().take(excess) {
                    annotations.remove(&k);
                }
            }
            let mut fields = vec!["version_aliases", "annotations"];
            let mut update = model::Secret::new()
                .set_etag(secret.etag.clone())
                .set_version_aliases(new_aliases)
                .set_annotations(annotations);
            if !options.tags.is_empty() && !fresh {
                let mut labels: HashMap<String, String> = secret.labels.clone();
                labels.extend(options.tags.clone());
                update = update.set_labels(labels);
                fields.push("labels");
            }
            match self.update_if_unchanged(&resource, update, &fields).await? {
                Some(updated) => {
                    return Ok(VersionInfo {
                        version: VersionId::from(n as u64),
                        stages: stages_of(&updated, n),
                        created: Some(SystemTime::now()),
                    });
                }
                // Changed since we read it: read again and re-check (the next round).
                None => continue,
            }
        }
        self.discard(&resource, added).await;
        Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "secret {name} changed under this write {MAX_ROUNDS} times in a row (many \
                 concurrent writers); retry"
            ),
        ))
    }

    async fn describe(&self, name: &SecretName) -> Result<SecretMetadata> {
        let resource = self.resource(name)?;
        let (secret, versions) =
            futures::join!(self.get_secret(&resource), self.all_versions(&resource));
        let Some(secret) = secret? else {
            return Err(Error::not_found(format!("secret {name} does not exist")));
        };
        let mut versions: Vec<model::SecretVersion> = versions?
            .into_iter()
            .filter(|v| v.state != model::secret_version::State::Destroyed)
            .collect();
        versions.sort_by_key(|v| version_number(&v.name));
        let fallback_current = (!aliases_of(&secret).contains_key(CURRENT))
            .then(|| versions.last().and_then(|v| version_number(&v.name)))
            .flatten();
        let infos: Vec<VersionInfo> = versions
            .iter()
            .filter_map(|v| {
                let n = version_number(&v.name)?;
                let mut stages = stages_of(&secret, n);
                if fallback_current == Some(n) {
                    stages.insert(0, Stage::Current);
                }
                Some(VersionInfo {
                    version: VersionId::from(n as u64),
                    stages,
                    created: system_time(v.create_time.as_ref()),
                })
            })
            .collect();
        let deleted = if is_deleted(&secret) {
            Some(system_time(secret.expire_time().map(|b| &**b)).unwrap_or_else(SystemTime::now))
        } else {
            None
        };
        let tags: BTreeMap<String, String> = secret.labels.clone().into_iter().collect();
        Ok(SecretMetadata {
            name: name.clone(),
            updated: infos.iter().filter_map(|v| v.created).max(),
            versions: infos,
            created: system_time(secret.create_time.as_ref()),
            last_rotated: None,
            description: secret.annotations.get(ANNOTATION_DESCRIPTION).cloned(),
            tags,
            rotation_period: None,
            deleted,
        })
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        // Names map to ids prefix by prefix, so the id prefix selects exactly the names.
        let full_prefix = match &self.prefix {
            Some(p) => format!("{p}/{}", options.prefix),
            None => options.prefix.clone(),
        };
        let id_prefix = names::secret_id(&full_prefix).unwrap_or_else(|_| {
            // Too long to be an id: no secret can be under it; the filter below finds none.
            "_".repeat(names::MAX_ID_LEN + 1)
        });
        let page_size = options.page_size.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        let page = self
            .client
            .list_secrets()
            .set_parent(&self.parent)
            .set_page_size(page_size as i32)
            .set_page_token(options.page_token.clone().unwrap_or_default())
            .send()
            .await
            .map_err(|e| error::from_gax(call("ListSecrets", &self.parent), e))?;
        let mut entries: Vec<ListEntry> =
            page.secrets
                .iter()
                .filter_map(|s| {
                    let id = s.name.rsplit_once("/secrets/")?.1;
                    if !id.starts_with(&id_prefix) {
                        return None;
                    }
                    let name = names::name_of_id(id, self.prefix.as_deref())?;
                    let deleted = is_deleted(s);
                    (name.starts_with(&options.prefix) && (options.include_deleted || !deleted))
                        .then(|| ListEntry {
                            name,
                            updated: system_time(s.create_time.as_ref()),
                            deleted,
                        })
                })
                .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(ListPage {
            entries,
            next_page_token: (!page.next_page_token.is_empty()).then_some(page.next_page_token),
        })
    }

    async fn delete(&self, name: &SecretName, options: &DeleteOptions) -> Result<()> {
        let resource = self.resource(name)?;
        let Some(secret) = self.get_secret(&resource).await? else {
            return Err(Error::not_found(format!("secret {name} does not exist")));
        };
        if options.force {
            return self
                .client
                .delete_secret()
                .set_name(&resource)
                .send()
                .await
                .map_err(|e| {
                    let code = error::code(&e);
                    let err = error::from_gax(call("DeleteSecret", &resource), e);
                    if code == Some(Code::NotFound) {
                        error::rekind(
                            &err,
                            ErrorKind::NotFound,
                            format!("secret {name} does not exist"),
                        )
                    } else {
                        err
                    }
                });
        }
        if options.recovery_window.is_zero() {
            return Err(Error::invalid_input(
                "a soft delete needs a recovery window above zero; use force to delete at once",
            ));
        }
        if is_deleted(&secret) {
            return Ok(());
        }
        let window = Duration::from_secs(options.recovery_window.as_secs().max(1));
        let purge_at = Timestamp::try_from(SystemTime::now() + window)
            .map_err(|_| Error::invalid_input("the recovery window is too long"))?;
        let mut annotations = secret.annotations.clone();
        annotations.insert(ANNOTATION_DELETED.to_owned(), now_rfc3339());
        if let Some(prior) = secret.expire_time() {
            annotations.insert(ANNOTATION_PRIOR_EXPIRY.to_owned(), String::from(**prior));
        }
        // The aliases go aside in the same update: a read by stage is then one call (no alias
        // answers for a deleted secret), and other GCP clients reading by alias find nothing.
        let aliases = serde_json::to_string(&secret.version_aliases)
            .map_err(|e| Error::internal(format!("recording the aliases of secret {name}: {e}")))?;
        annotations.insert(ANNOTATION_DELETED_ALIASES.to_owned(), aliases);
        let update = model::Secret::new()
            .set_etag(secret.etag.clone())
            .set_annotations(annotations)
            .set_version_aliases(HashMap::<String, i64>::new())
            .set_expire_time(purge_at);
        match self
            .update_if_unchanged(
                &resource,
                update,
                &["annotations", "version_aliases", "expire_time"],
            )
            .await?
        {
            Some(_) => Ok(()),
            None => Err(Error::new(
                ErrorKind::Conflict,
                format!("secret {name} changed while it was being deleted; retry"),
            )),
        }
    }

    async fn restore(&self, name: &SecretName) -> Result<()> {
        let resource = self.resource(name)?;
        let Some(secret) = self.get_secret(&resource).await? else {
            return Err(Error::not_found(format!(
                "secret {name} does not exist (never written, force-deleted, or purged by GCP \
                 at the end of its recovery window)"
            )));
        };
        if !is_deleted(&secret) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("secret {name} is not deleted; nothing to restore"),
            ));
        }
        // The aliases the delete put aside, beside any another tool added since.
        let mut aliases = aliases_of(&secret);
        for (alias, version) in &secret.version_aliases {
            aliases.entry(alias.clone()).or_insert(*version);
        }
        let mut annotations = secret.annotations.clone();
        annotations.remove(ANNOTATION_DELETED);
        annotations.remove(ANNOTATION_DELETED_ALIASES);
        let prior = annotations
            .remove(ANNOTATION_PRIOR_EXPIRY)
            .and_then(|t| Timestamp::try_from(&t).ok());
        let mut update = model::Secret::new()
            .set_etag(secret.etag.clone())
            .set_annotations(annotations)
            .set_version_aliases(aliases);
        if let Some(t) = prior {
            update = update.set_expire_time(t);
        }
        match self
            .update_if_unchanged(
                &resource,
                update,
                &["annotations", "version_aliases", "expire_time"],
            )
            .await?
        {
            Some(_) => Ok(()),
            None => Err(Error::new(
                ErrorKind::Conflict,
                format!("secret {name} changed while it was being restored; retry"),
            )),
        }
    }

    async fn set_stage(
        &self,
        name: &SecretName,
        stage: &Stage,
        version: Option<&VersionId>,
    ) -> Result<()> {
        let alias = names::to_alias(stage)?;
        if version.is_none() && *stage == Stage::Current {
            return Err(Error::invalid_input(
                "CURRENT cannot be removed, only moved",
            ));
        }
        let resource = self.resource(name)?;
        let target = match version {
            None => None,
            Some(v) => Some(
                parse_version(v)
                    .ok_or_else(|| Error::not_found(format!("secret {name} has no version {v}")))?,
            ),
        };
        for _ in 0..MAX_ROUNDS {
            let secret = self.live_secret(name, &resource).await?;
            if let Some(n) = target {
                let v = format!("{resource}/versions/{n}");
                match self.client.get_secret_version().set_name(&v).send().await {
                    Ok(sv) if sv.state == model::secret_version::State::Destroyed => {
                        return Err(Error::invalid_input(format!(
                            "secret {name} version {n} is destroyed; a stage cannot point at it"
                        )));
                    }
                    Ok(_) => {}
                    Err(e) if error::code(&e) == Some(Code::NotFound) => {
                        return Err(Error::not_found(format!(
                            "secret {name} has no version {n}"
                        )));
                    }
                    Err(e) => return Err(error::from_gax(call("GetSecretVersion", &v), e)),
                }
            }
            let holder = secret.version_aliases.get(alias).copied();
            if holder == target {
                return Ok(());
            }
            let mut aliases = secret.version_aliases.clone();
            match target {
                None => {
                    aliases.remove(alias);
                }
                Some(n) => {
                    if *stage == Stage::Current {
                        let old = match holder {
                            Some(h) => Some(h),
                            None => self.current_of(&resource, &secret).await?,
                        };
                        if let Some(old) = old.filter(|o| *o != n) {
                            aliases.insert(PREVIOUS.to_owned(), old);
                        }
                    }
                    aliases.insert(alias.to_owned(), n);
                }
            }
            let update = model::Secret::new()
                .set_etag(secret.etag.clone())
                .set_version_aliases(aliases);
            if self
                .update_if_unchanged(&resource, update, &["version_aliases"])
                .await?
                .is_some()
            {
                return Ok(());
            }
        }
        Err(Error::new(
            ErrorKind::Conflict,
            format!("secret {name} kept changing while its stage {stage} was moved; retry"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(version_number("projects/1/secrets/a/versions/12"), Some(12));
        assert_eq!(version_number("projects/1/secrets/a"), None);
    }

    #[test]
    fn tags_must_be_labels() {
        check_label("team", "platform").unwrap();
        check_label("tier", "").unwrap();
        for (k, v) in [
            ("Team", "x"),
            ("1x", "x"),
            ("team", "Platform"),
            ("t", "a b"),
        ] {
            assert_eq!(
                check_label(k, v).unwrap_err().kind(),
                ErrorKind::InvalidInput,
                "{k}={v}"
            );
        }
    }

    #[test]
    fn payloads_with_a_wrong_crc32c_are_integrity_errors() {
        let name = SecretName::new("a").unwrap();
        let good = model::SecretPayload::new()
            .set_data(bytes::Bytes::from_static(b"value"))
            .set_data_crc32c(i64::from(crc32c::crc32c(b"value")));
        assert_eq!(
            take_payload(&name, "1", Some(good))
                .unwrap()
                .expose_secret(),
            b"value"
        );
        let bad = model::SecretPayload::new()
            .set_data(bytes::Bytes::from_static(b"valuf"))
            .set_data_crc32c(i64::from(crc32c::crc32c(b"value")));
        let err = take_payload(&name, "1", Some(bad)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Integrity);
    }

    #[test]
    fn token_annotations_are_valid_annotation_keys() {
        let k = token_key("conformance-token-0123456789abcdef-0123456789ab");
        assert!(k.len() <= 63);
        assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        assert_eq!(
            k,
            token_key("conformance-token-0123456789abcdef-0123456789ab")
        );
    }
}
