//! `AwsSecretsManager`: the [`SecretStore`] over AWS Secrets Manager.
//!
//! Mapping:
//! - a name is the AWS secret id, under the optional prefix (`prefix/NAME`);
//! - a version is the AWS version id (a UUID);
//! - stages are staging labels (`CURRENT` = `AWSCURRENT`, see [`crate::stage`]);
//! - every read names a stage or a version id explicitly, never AWS's "default" version;
//! - values that are valid UTF-8 are written as `SecretString` (so JSON secrets work with the
//!   console, boto3 and `get_field`), others as `SecretBinary`; both are read back.
//!
//! What AWS cannot do, and what this store does instead:
//! - **No atomic compare-and-set.** `PutOptions::expected_current` is checked with a
//!   `DescribeSecret` before the write, so two writers can both pass the check; the capability
//!   `compare_and_set` is therefore `false`. Creating a new secret (`expected_current:
//!   Some(None)`) *is* atomic: `CreateSecret` fails if the name exists. A writer that needs an
//!   atomic compare-and-set on an existing secret gives an idempotency token made from the
//!   version it expects (the rotation lease does): the token becomes the new version's id,
//!   which AWS lets exist once, so of two such writers the second gets `Conflict`.
//! - **A version needs at least one stage**, so `PutOptions::stages` must not be empty.
//! - **Recovery windows are whole days from 7 to 30**; shorter or longer windows are refused.
//!
//! Memory: the value travels through the SDK, which keeps its own copies that sealbox cannot
//! wipe: the request input (`String`/`Blob`) and the serialised JSON request body on `put`, the
//! raw response body and the parsed output on `get`. sealbox takes the parsed value out of the
//! SDK's output at once, copies it into locked memory and wipes that `String`/`Vec`; the SDK's
//! other buffers are freed (not wiped) when the call returns. TLS buffers in rustls are the
//! same. Use the local vault if values must never sit in unlocked heap memory.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput;
use aws_sdk_secretsmanager::primitives::{Blob, DateTime};
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType, SecretVersionsListEntry, Tag};
use sealbox::store::{
    Capabilities, DeleteOptions, ListEntry, ListOptions, ListPage, PutOptions, SecretMetadata,
    SecretName, SecretStore, SecretVersion, Stage, VersionId, VersionInfo, VersionSelector,
};
use sealbox::{Error, ErrorKind, ExposeSecret, Result, Secret};
use zeroize::Zeroizing;

use crate::config::AwsConfig;
use crate::error::{self, Call};
use crate::stage::{self, AWS_CURRENT, AWS_PREVIOUS};

const SERVICE: &str = "Secrets Manager";
/// AWS's limit for one value (SecretString or SecretBinary).
pub const MAX_VALUE_LEN: usize = 65_536;
/// AWS's page limit for ListSecrets and ListSecretVersionIds.
const MAX_PAGE: usize = 100;
const DAY: u64 = 24 * 3600;

/// The AWS Secrets Manager store. Cheap to clone (the SDK client is an `Arc` inside).
#[derive(Clone)]
pub struct AwsSecretsManager {
    client: Client,
    prefix: Option<String>,
    kms_key_id: Option<String>,
}

impl std::fmt::Debug for AwsSecretsManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsSecretsManager")
            .field("prefix", &self.prefix)
            .field("kms_key_id", &self.kms_key_id)
            .finish_non_exhaustive()
    }
}

impl AwsSecretsManager {
    /// Connects with `config`: the standard credential chain, the optional role, region,
    /// endpoint, timeouts and retries from `config`.
    pub async fn connect(config: &AwsConfig) -> Result<AwsSecretsManager> {
        let sdk = config.load_sdk_config().await?;
        AwsSecretsManager::from_sdk_config(&sdk, config)
    }

    /// Builds the store on an SDK configuration the caller loaded (tests, custom credentials),
    /// taking `prefix` and `kms_key_id` from `config`. Timeouts and retries are `sdk`'s: load
    /// it with [`AwsConfig::load_sdk_config_with`] to get sealbox's bounded defaults.
    pub fn from_sdk_config(sdk: &SdkConfig, config: &AwsConfig) -> Result<AwsSecretsManager> {
        Ok(AwsSecretsManager {
            client: Client::new(sdk),
            prefix: config.secret_prefix()?,
            kms_key_id: config.kms_key_id.clone(),
        })
    }

    /// The SDK client underneath, for operations sealbox does not wrap.
    pub fn sdk_client(&self) -> &Client {
        &self.client
    }

    /// The AWS secret id for a sealbox name.
    pub fn secret_id(&self, name: &SecretName) -> String {
        match &self.prefix {
            Some(p) => format!("{p}/{name}"),
            None => name.as_str().to_owned(),
        }
    }

    /// The sealbox name for an AWS secret name, if it lies under the prefix and is a valid name.
    fn name_from_id(&self, id: &str) -> Option<SecretName> {
        let rest = match &self.prefix {
            Some(p) => id.strip_prefix(p.as_str())?.strip_prefix('/')?,
            None => id,
        };
        SecretName::new(rest).ok()
    }

    fn call<'a>(operation: &'static str, target: &'a str) -> Call<'a> {
        Call {
            service: SERVICE,
            operation,
            target,
        }
    }

    /// Every version of a secret with its labels and creation time, all pages.
    async fn all_versions(&self, id: &str) -> Result<Vec<SecretVersionsListEntry>> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_secret_version_ids()
                .secret_id(id)
                .include_deprecated(true)
                .max_results(MAX_PAGE as i32)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| error::from_sdk(Self::call("ListSecretVersionIds", id), e))?;
            out.extend(page.versions.unwrap_or_default());
            match page.next_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }

    /// `DescribeSecret` and every version, concurrently (one round trip of latency). A missing
    /// secret ends both at once with `NotFound` from `DescribeSecret` (ListSecretVersionIds is
    /// not asked to say it: moto answers 500 there).
    async fn described_versions(
        &self,
        name: &SecretName,
        id: &str,
    ) -> Result<(DescribeSecretOutput, Vec<SecretVersionsListEntry>)> {
        let describe = async {
            self.client
                .describe_secret()
                .secret_id(id)
                .send()
                .await
                .map_err(|e| {
                    not_found_as_name(error::from_sdk(Self::call("DescribeSecret", id), e), name)
                })
        };
        futures::try_join!(describe, self.all_versions(id))
    }

    /// `UpdateSecretVersionStage`: puts `label` on `to` (or removes it with `None`), taking it
    /// from `from`.
    async fn move_label(
        &self,
        id: &str,
        label: &str,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<()> {
        self.client
            .update_secret_version_stage()
            .secret_id(id)
            .version_stage(label)
            .set_remove_from_version_id(from.map(str::to_owned))
            .set_move_to_version_id(to.map(str::to_owned))
            .send()
            .await
            .map_err(|e| error::from_sdk(Self::call("UpdateSecretVersionStage", id), e))?;
        Ok(())
    }

    /// `RestoreSecret`: cancels a scheduled deletion (and succeeds on a live secret).
    async fn restore_secret(&self, name: &SecretName, id: &str) -> Result<()> {
        self.client
            .restore_secret()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| {
                not_found_as_name(error::from_sdk(Self::call("RestoreSecret", id), e), name)
            })?;
        Ok(())
    }

    /// Whether the secret is scheduled for deletion (`None` when it does not exist).
    async fn deleted_state(&self, id: &str) -> Result<Option<bool>> {
        match self.client.describe_secret().secret_id(id).send().await {
            Ok(d) => Ok(Some(d.deleted_date.is_some())),
            Err(e) if error::code(&e) == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(error::from_sdk(Self::call("DescribeSecret", id), e)),
        }
    }

    async fn create(
        &self,
        name: &SecretName,
        id: &str,
        value: &Secret,
        labels: &[&str],
        token: Option<String>,
        options: &PutOptions,
    ) -> Result<VersionInfo> {
        let tags: Vec<Tag> = options
            .tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        let mut request = self
            .client
            .create_secret()
            .name(id)
            .set_client_request_token(token)
            .set_description(options.description.clone())
            .set_kms_key_id(self.kms_key_id.clone())
            .set_tags((!tags.is_empty()).then_some(tags));
        request = match std::str::from_utf8(value.expose_secret()) {
            Ok(text) => request.secret_string(text),
            Err(_) => request.secret_binary(Blob::new(value.expose_secret())),
        };
        let out = request.send().await.map_err(|e| {
            let err = error::from_sdk(Self::call("CreateSecret", id), e);
            if err.kind() == ErrorKind::AlreadyExists {
                error::rekind(
                    &err,
                    ErrorKind::Conflict,
                    format!("secret {name} already exists (expected it not to)"),
                )
            } else {
                err
            }
        })?;
        let version = out
            .version_id
            .ok_or_else(|| Error::internal("CreateSecret answered without a version id"))?;
        // CreateSecret always labels the first version AWSCURRENT; other stages are added.
        let mut stages = vec![Stage::Current];
        for label in labels.iter().filter(|l| **l != AWS_CURRENT) {
            self.move_label(id, label, None, Some(&version)).await?;
            stages.extend(stage::from_label(label));
        }
        Ok(VersionInfo {
            version: VersionId::new(version),
            stages,
            created: Some(SystemTime::now()),
        })
    }

    async fn put_value(
        &self,
        name: &SecretName,
        id: &str,
        value: &Secret,
        labels: &[&str],
        token: Option<String>,
    ) -> Result<VersionInfo> {
        let mut request = self
            .client
            .put_secret_value()
            .secret_id(id)
            .set_client_request_token(token)
            .set_version_stages(Some(labels.iter().map(|l| (*l).to_owned()).collect()));
        request = match std::str::from_utf8(value.expose_secret()) {
            Ok(text) => request.secret_string(text),
            Err(_) => request.secret_binary(Blob::new(value.expose_secret())),
        };
        let out = request.send().await.map_err(|e| {
            let code = error::code(&e).map(str::to_owned);
            let err = error::from_sdk(Self::call("PutSecretValue", id), e);
            match code.as_deref() {
                // Same idempotency token, different value: AWS refuses to change a version.
                Some("ResourceExistsException") => error::rekind(
                    &err,
                    ErrorKind::Conflict,
                    format!("secret {name}: idempotency token reused with a different value"),
                ),
                // Writing to a secret scheduled for deletion.
                Some("InvalidRequestException") => error::rekind(
                    &err,
                    ErrorKind::Conflict,
                    format!(
                        "secret {name} cannot take a new version now ({}); if it is deleted, restore it first",
                        err.message()
                    ),
                ),
                _ => err,
            }
        })?;
        let version = out
            .version_id
            .ok_or_else(|| Error::internal("PutSecretValue answered without a version id"))?;
        Ok(VersionInfo {
            version: VersionId::new(version),
            stages: stage::from_labels(out.version_stages.iter().flatten()),
            created: Some(SystemTime::now()),
        })
    }

    /// Applies description and tag changes after `PutSecretValue` (which takes neither).
    async fn update_metadata(&self, id: &str, options: &PutOptions) -> Result<()> {
        if let Some(description) = &options.description {
            self.client
                .update_secret()
                .secret_id(id)
                .description(description)
                .send()
                .await
                .map_err(|e| error::from_sdk(Self::call("UpdateSecret", id), e))?;
        }
        if !options.tags.is_empty() {
            let tags = options
                .tags
                .iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect();
            self.client
                .tag_resource()
                .secret_id(id)
                .set_tags(Some(tags))
                .send()
                .await
                .map_err(|e| error::from_sdk(Self::call("TagResource", id), e))?;
        }
        Ok(())
    }
}

/// An AWS `ClientRequestToken` (32 to 64 characters) for a caller's idempotency token: valid
/// tokens pass through (so tokens other tools use stay interoperable); others become the
/// hex SHA-256 of the token, which is deterministic, so retries stay idempotent.
pub(crate) fn client_request_token(token: &str) -> String {
    let passes = (32..=64).contains(&token.len())
        && token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if passes {
        token.to_owned()
    } else {
        hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            token.as_bytes(),
        ))
    }
}

/// AWS version ids are 32 to 64 characters; anything else cannot name a version.
fn plausible_version_id(id: &VersionId) -> bool {
    (32..=64).contains(&id.as_str().len())
}

fn system_time(t: Option<&DateTime>) -> Option<SystemTime> {
    t.and_then(|t| SystemTime::try_from(*t).ok())
}

/// Moves the SDK's copy of a value into locked memory and wipes that copy.
fn take_value(name: &SecretName, string: Option<String>, binary: Option<Blob>) -> Result<Secret> {
    let bytes = match (string, binary) {
        (Some(s), _) => Zeroizing::new(s.into_bytes()),
        (None, Some(b)) => Zeroizing::new(b.into_inner()),
        (None, None) => {
            return Err(Error::not_found(format!(
                "secret {name}: this version has no value (neither SecretString nor SecretBinary)"
            )));
        }
    };
    Secret::from_zeroizing(bytes)
}

fn recovery_days(window: Duration) -> Result<i64> {
    let days = window.as_secs().div_ceil(DAY) as i64;
    if !(7..=30).contains(&days) {
        return Err(Error::invalid_input(format!(
            "AWS Secrets Manager keeps deleted secrets 7 to 30 days; a recovery window of {} \
             is out of range (use force to delete at once)",
            humantime::format_duration(window)
        )));
    }
    Ok(days)
}

#[async_trait]
impl SecretStore for AwsSecretsManager {
    fn kind(&self) -> &'static str {
        "aws"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            write: true,
            versions: true,
            stages: true,
            // Checked with DescribeSecret before the write, not atomically: see the module doc.
            compare_and_set: false,
            soft_delete: true,
            list_paging: true,
            binary: true,
            cheap_describe: true,
            max_value_len: MAX_VALUE_LEN,
        }
    }

    async fn get(&self, name: &SecretName, selector: &VersionSelector) -> Result<SecretVersion> {
        let id = self.secret_id(name);
        let request = self.client.get_secret_value().secret_id(&id);
        let request = match selector {
            VersionSelector::Current => request.version_stage(AWS_CURRENT),
            VersionSelector::Stage(s) => request.version_stage(stage::to_label(s)?),
            VersionSelector::Version(v) => {
                if !plausible_version_id(v) {
                    return Err(Error::not_found(format!(
                        "secret {name} has no version {v}"
                    )));
                }
                request.version_id(v.as_str())
            }
        };
        let mut out = request.send().await.map_err(|e| {
            let code = error::code(&e).map(str::to_owned);
            let err = error::from_sdk(Self::call("GetSecretValue", &id), e);
            match code.as_deref() {
                Some("ResourceNotFoundException") => error::rekind(
                    &err,
                    ErrorKind::NotFound,
                    format!(
                        "secret {name} or its {} does not exist",
                        match selector {
                            VersionSelector::Current => "CURRENT version".to_owned(),
                            VersionSelector::Stage(s) => format!("{s} stage"),
                            VersionSelector::Version(v) => format!("version {v}"),
                        }
                    ),
                ),
                Some("InvalidRequestException") => error::rekind(
                    &err,
                    ErrorKind::NotFound,
                    format!("secret {name} is scheduled for deletion; restore it to read it"),
                ),
                _ => err,
            }
        })?;
        let value = take_value(name, out.secret_string.take(), out.secret_binary.take())?;
        let version = out
            .version_id
            .take()
            .ok_or_else(|| Error::internal("GetSecretValue answered without a version id"))?;
        Ok(SecretVersion {
            value,
            version: VersionId::new(version),
            stages: stage::from_labels(out.version_stages.iter().flatten()),
            created: system_time(out.created_date.as_ref()),
        })
    }

    async fn put(
        &self,
        name: &SecretName,
        value: &Secret,
        options: &PutOptions,
    ) -> Result<VersionInfo> {
        if options.stages.is_empty() {
            return Err(Error::invalid_input(
                "AWS Secrets Manager needs at least one stage on a new version; \
                 use [PENDING] to write without changing CURRENT",
            ));
        }
        if value.len() > MAX_VALUE_LEN {
            return Err(Error::invalid_input(format!(
                "AWS Secrets Manager values are at most {MAX_VALUE_LEN} bytes; this one has {}",
                value.len()
            )));
        }
        let mut labels = Vec::with_capacity(options.stages.len());
        for s in &options.stages {
            let label = stage::to_label(s)?;
            if !labels.contains(&label) {
                labels.push(label);
            }
        }
        let token = options
            .idempotency_token
            .as_deref()
            .map(client_request_token);
        let id = self.secret_id(name);

        match &options.expected_current {
            Some(None) => {
                return self.create(name, &id, value, &labels, token, options).await;
            }
            Some(Some(expected)) => {
                // Not atomic (AWS has no conditional write): a writer between this check and
                // the put is not detected. Capabilities say compare_and_set = false.
                let meta = self.describe(name).await.map_err(|e| {
                    if e.kind() == ErrorKind::NotFound {
                        Error::new(
                            ErrorKind::Conflict,
                            format!(
                                "secret {name} does not exist; expected current version {expected}"
                            ),
                        )
                    } else {
                        e
                    }
                })?;
                if meta.version_with_stage(&Stage::Current) != Some(expected) {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        format!("secret {name}: current version is not the expected one"),
                    ));
                }
                if meta.deleted.is_some() {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        format!("secret {name} is deleted; restore it before writing"),
                    ));
                }
                // The describe just said it exists and is not deleted: no second look.
                let info = self.put_value(name, &id, value, &labels, token).await?;
                self.update_metadata(&id, options).await?;
                return Ok(info);
            }
            None => {}
        }

        // Moto accepts writes to deleted secrets where AWS refuses; check so both behave alike.
        match self.deleted_state(&id).await? {
            Some(true) => Err(Error::new(
                ErrorKind::Conflict,
                format!("secret {name} is deleted; restore it before writing"),
            )),
            Some(false) => {
                let info = self.put_value(name, &id, value, &labels, token).await?;
                self.update_metadata(&id, options).await?;
                Ok(info)
            }
            None => match self
                .create(name, &id, value, &labels, token.clone(), options)
                .await
            {
                // Another writer created it between our check and our create: add a version.
                Err(e) if e.kind() == ErrorKind::Conflict => {
                    let info = self.put_value(name, &id, value, &labels, token).await?;
                    self.update_metadata(&id, options).await?;
                    Ok(info)
                }
                other => other,
            },
        }
    }

    async fn describe(&self, name: &SecretName) -> Result<SecretMetadata> {
        let id = self.secret_id(name);
        let (d, versions) = self.described_versions(name, &id).await?;
        let mut versions: Vec<(Option<SystemTime>, VersionInfo)> = versions
            .into_iter()
            .filter_map(|v| {
                let created = system_time(v.created_date.as_ref());
                Some((
                    created,
                    VersionInfo {
                        version: VersionId::new(v.version_id?),
                        stages: stage::from_labels(v.version_stages.iter().flatten()),
                        created,
                    },
                ))
            })
            .collect();
        // Oldest first; the sort is stable, so AWS's order breaks ties in creation time.
        versions.sort_by_key(|(created, _)| *created);
        let tags: BTreeMap<String, String> = d
            .tags
            .unwrap_or_default()
            .into_iter()
            .filter_map(|t| Some((t.key?, t.value.unwrap_or_default())))
            .collect();
        Ok(SecretMetadata {
            name: name.clone(),
            versions: versions.into_iter().map(|(_, v)| v).collect(),
            created: system_time(d.created_date.as_ref()),
            updated: system_time(d.last_changed_date.as_ref()),
            last_rotated: system_time(d.last_rotated_date.as_ref()),
            description: d.description,
            tags,
            rotation_period: d
                .rotation_rules
                .and_then(|r| r.automatically_after_days)
                .and_then(|days| u64::try_from(days).ok())
                .map(|days| Duration::from_secs(days * DAY)),
            deleted: system_time(d.deleted_date.as_ref()),
        })
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        let full_prefix = match &self.prefix {
            Some(p) => format!("{p}/{}", options.prefix),
            None => options.prefix.clone(),
        };
        let page_size = options.page_size.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
        // AWS's name filter is a case-insensitive prefix match: filter exactly below.
        let filter = (!full_prefix.is_empty()).then(|| {
            vec![
                Filter::builder()
                    .key(FilterNameStringType::Name)
                    .values(full_prefix.clone())
                    .build(),
            ]
        });
        let out = self
            .client
            .list_secrets()
            .set_filters(filter)
            .max_results(page_size as i32)
            .set_next_token(options.page_token.clone())
            .include_planned_deletion(options.include_deleted)
            .send()
            .await
            .map_err(|e| error::from_sdk(Self::call("ListSecrets", &full_prefix), e))?;
        let mut entries: Vec<ListEntry> = out
            .secret_list
            .unwrap_or_default()
            .into_iter()
            .filter(|s| options.include_deleted || s.deleted_date.is_none())
            .filter_map(|s| {
                let name = self.name_from_id(s.name.as_deref()?)?;
                name.starts_with(&options.prefix).then(|| ListEntry {
                    name,
                    updated: system_time(s.last_changed_date.as_ref()),
                    deleted: s.deleted_date.is_some(),
                })
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(ListPage {
            entries,
            next_page_token: out.next_token.filter(|t| !t.is_empty()),
        })
    }

    async fn delete(&self, name: &SecretName, options: &DeleteOptions) -> Result<()> {
        let id = self.secret_id(name);
        let state = self.deleted_state(&id).await?;
        let Some(already_deleted) = state else {
            return Err(Error::not_found(format!("secret {name} does not exist")));
        };
        if options.force {
            if already_deleted {
                // A scheduled deletion cannot be shortened in place: undo it, then force.
                self.restore_secret(name, &id).await?;
            }
            self.client
                .delete_secret()
                .secret_id(&id)
                .force_delete_without_recovery(true)
                .send()
                .await
                .map_err(|e| error::from_sdk(Self::call("DeleteSecret", &id), e))?;
            return Ok(());
        }
        let days = recovery_days(options.recovery_window)?;
        if already_deleted {
            return Ok(());
        }
        self.client
            .delete_secret()
            .secret_id(&id)
            .recovery_window_in_days(days)
            .send()
            .await
            .map_err(|e| error::from_sdk(Self::call("DeleteSecret", &id), e))?;
        Ok(())
    }

    async fn restore(&self, name: &SecretName) -> Result<()> {
        let id = self.secret_id(name);
        // RestoreSecret succeeds on a live secret; the trait says that is a conflict. (A missing
        // secret goes on to RestoreSecret, whose NotFound names the secret.)
        if self.deleted_state(&id).await? == Some(false) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("secret {name} is not deleted; nothing to restore"),
            ));
        }
        self.restore_secret(name, &id).await
    }

    async fn set_stage(
        &self,
        name: &SecretName,
        stage: &Stage,
        version: Option<&VersionId>,
    ) -> Result<()> {
        let label = stage::to_label(stage)?;
        let id = self.secret_id(name);
        let (described, versions) = self.described_versions(name, &id).await?;
        if described.deleted_date.is_some() {
            return Err(Error::not_found(format!(
                "secret {name} is scheduled for deletion; restore it to change its stages"
            )));
        }
        let holder_of = |label: &str| -> Option<String> {
            versions
                .iter()
                .find(|v| v.version_stages.iter().flatten().any(|l| l == label))
                .and_then(|v| v.version_id.clone())
        };
        let holder = holder_of(label);
        let Some(target) = version else {
            if *stage == Stage::Current {
                return Err(Error::invalid_input(
                    "CURRENT cannot be removed, only moved",
                ));
            }
            return match holder {
                Some(h) => self.move_label(&id, label, Some(&h), None).await,
                None => Ok(()),
            };
        };
        if !versions
            .iter()
            .any(|v| v.version_id.as_deref() == Some(target.as_str()))
        {
            return Err(Error::not_found(format!(
                "secret {name} has no version {target}"
            )));
        }
        if holder.as_deref() == Some(target.as_str()) {
            return Ok(());
        }
        self.move_label(&id, label, holder.as_deref(), Some(target.as_str()))
            .await?;
        if *stage == Stage::Current
            && let Some(old_current) = holder
        {
            // AWS moves AWSPREVIOUS to the old current version itself; make sure of it
            // rather than rely on it, since emulators differ.
            let now = self.all_versions(&id).await?;
            let labels_of = |vid: &str| -> Vec<String> {
                now.iter()
                    .find(|v| v.version_id.as_deref() == Some(vid))
                    .map(|v| v.version_stages.clone().unwrap_or_default())
                    .unwrap_or_default()
            };
            if !labels_of(&old_current).iter().any(|l| l == AWS_PREVIOUS) {
                let previous = now
                    .iter()
                    .find(|v| v.version_stages.iter().flatten().any(|l| l == AWS_PREVIOUS))
                    .and_then(|v| v.version_id.clone());
                self.move_label(&id, AWS_PREVIOUS, previous.as_deref(), Some(&old_current))
                    .await?;
            }
        }
        Ok(())
    }
}

/// Rewrites an AWS not-found for a whole secret into sealbox's wording, keeping the request id.
fn not_found_as_name(err: Error, name: &SecretName) -> Error {
    if err.kind() != ErrorKind::NotFound {
        return err;
    }
    error::rekind(
        &err,
        ErrorKind::NotFound,
        format!("secret {name} does not exist"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_idempotency_tokens_are_hashed_deterministically() {
        let t = client_request_token("retry-1");
        assert_eq!(t.len(), 64);
        assert_eq!(t, client_request_token("retry-1"));
        assert_ne!(t, client_request_token("retry-2"));
        let uuid = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";
        assert_eq!(client_request_token(uuid), uuid);
    }

    #[test]
    fn recovery_windows_are_whole_days_from_7_to_30() {
        assert_eq!(recovery_days(Duration::from_secs(7 * DAY)).unwrap(), 7);
        assert_eq!(recovery_days(Duration::from_secs(30 * DAY)).unwrap(), 30);
        assert_eq!(recovery_days(Duration::from_secs(7 * DAY - 1)).unwrap(), 7);
        for bad in [Duration::from_secs(3600), Duration::from_secs(31 * DAY)] {
            let err = recovery_days(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput);
        }
    }

    #[test]
    fn values_move_out_of_the_sdk_into_a_secret() {
        let name = SecretName::new("a/b").unwrap();
        let s = take_value(&name, Some("text".to_owned()), None).unwrap();
        assert_eq!(s.expose_secret(), b"text");
        let b = take_value(&name, None, Some(Blob::new(vec![0u8, 255]))).unwrap();
        assert_eq!(b.expose_secret(), &[0u8, 255]);
        let err = take_value(&name, None, None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }
}
