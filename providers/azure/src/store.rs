//! `AzureKeyVault`: the [`SecretStore`] over Azure Key Vault secrets.
//!
//! Mapping (see [`crate::names`] for names and tags):
//! - a sealbox name is one Key Vault secret, its name encoded reversibly;
//! - a version is a Key Vault version id (32 hex digits);
//! - stages are the tag `sealbox-stage` on versions (`CURRENT`, `PREVIOUS,blue`). A secret no
//!   version of which carries a stage (written by another tool) reads its latest version as
//!   `CURRENT`;
//! - tags and the description (`sealbox-description`) are tags of the version sealbox reads
//!   as `CURRENT`; a put copies them forward and merges the new ones (Key Vault allows 15 tags
//!   per version; sealbox uses up to 4);
//! - values that are UTF-8 are stored as they are, so other clients read them as text; other
//!   values are stored base64 with the content type `application/vnd.sealbox.base64`;
//! - `enabled`, `nbf` (not before) and `exp` (expires) are honoured: a version that is
//!   disabled, not yet valid or expired is never served, by version or by stage, and a read of
//!   `CURRENT` whose version is out of its window fails with `NotFound` naming the reason
//!   instead of falling back to an older value;
//! - soft delete is Key Vault's own (`delete_secret`), `restore` is `recover_deleted_secret`,
//!   and `force` deletes and then purges. The recovery window is the vault's retention setting
//!   (7 to 90 days), not the caller's `recovery_window`.
//!
//! **What is not atomic.** Key Vault has no conditional writes. A put creates the version with
//! its stages in one call, then takes those stages off the versions that had them (one
//! `update_secret_properties` each); a reader in between may see two holders and takes the
//! newest. `expected_current` is checked before the write, not atomically, so the store says
//! `compare_and_set: false`: two writers racing on the same expected version can both win.
//! Idempotency tokens (tag `sealbox-idem`, a hash) are likewise found by listing versions.
//!
//! **Reads.** A read of `CURRENT` is one call when the latest version carries `CURRENT` (the
//! common case after a put); otherwise, and for other stages, the versions are listed and the
//! holder read by id. Every read checks the version's `sealbox-name` tag against the name asked
//! for, since Key Vault names ignore case.
//!
//! Memory: values pass through the SDK as `String`s in its JSON bodies, which sealbox cannot
//! wipe. The decoded value is moved into locked memory and its buffer wiped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use azure_security_keyvault_secrets::SecretClient;
use azure_security_keyvault_secrets::models::{
    Secret as KvSecret, SecretAttributes, SecretClientGetSecretOptions,
    SecretClientUpdateSecretPropertiesOptions, SecretProperties, SetSecretParameters,
    UpdateSecretPropertiesParameters,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::TryStreamExt;
use sealbox::store::{
    Capabilities, DeleteOptions, ListEntry, ListOptions, ListPage, PutOptions, SecretMetadata,
    SecretName, SecretStore, SecretVersion, Stage, VersionId, VersionInfo, VersionSelector,
};
use sealbox::{Error, ErrorKind, ExposeSecret, Result, Secret};
use zeroize::Zeroizing;

use crate::config::{AzureConfig, DEFAULT_OPERATION_TIMEOUT};
use crate::error::{self, Call};
use crate::names::{self, CONTENT_TYPE_BASE64, TAG_DESCRIPTION, TAG_NAME, TAG_STAGE, TAG_TOKEN};

/// The largest value sealbox stores: Key Vault's 25 KiB limit on a value, less base64's
/// growth, so that any value, text or binary, fits.
pub const MAX_VALUE_LEN: usize = 25 * 1024 / 4 * 3;
/// The page size asked for when the caller names none.
const DEFAULT_PAGE: usize = 100;
/// Tags Key Vault allows on one version.
const MAX_TAGS: usize = 15;

/// The Azure Key Vault store. Cheap to clone (the client is shared).
#[derive(Clone)]
pub struct AzureKeyVault {
    client: Arc<SecretClient>,
    prefix: Option<String>,
    vault_url: String,
    operation_timeout: Duration,
}

impl std::fmt::Debug for AzureKeyVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureKeyVault")
            .field("vault_url", &self.vault_url)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// What sealbox needs of one version, from a list or a read.
#[derive(Clone, Debug)]
struct Meta {
    id: String,
    tags: BTreeMap<String, String>,
    enabled: bool,
    not_before: Option<SystemTime>,
    expires: Option<SystemTime>,
    created: Option<SystemTime>,
    updated: Option<SystemTime>,
}

impl Meta {
    fn from_parts(
        id: Option<&str>,
        attributes: Option<&SecretAttributes>,
        tags: Option<&HashMap<String, String>>,
    ) -> Option<Meta> {
        let version = id?.trim_end_matches('/').rsplit('/').next()?.to_owned();
        let a = attributes.cloned().unwrap_or_default();
        Some(Meta {
            id: version,
            tags: tags
                .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            enabled: a.enabled.unwrap_or(true),
            not_before: a.not_before.map(SystemTime::from),
            expires: a.expires.map(SystemTime::from),
            created: a.created.map(SystemTime::from),
            updated: a.updated.map(SystemTime::from),
        })
    }

    fn stages(&self) -> Vec<Stage> {
        names::parse_stages(self.tags.get(TAG_STAGE).map(String::as_str))
    }

    /// Why this version may not be served now, if it may not.
    fn unusable(&self) -> Option<String> {
        let now = SystemTime::now();
        if !self.enabled {
            return Some("is disabled".into());
        }
        if let Some(n) = self.not_before
            && n > now
        {
            return Some(format!("is not valid before {}", rfc3339(n)));
        }
        if let Some(e) = self.expires
            && e <= now
        {
            return Some(format!("expired at {}", rfc3339(e)));
        }
        None
    }
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The versions of one secret, oldest first.
struct Versions(Vec<Meta>);

impl Versions {
    /// Whether any version carries a sealbox stage (else the latest is read as `CURRENT`).
    fn staged(&self) -> bool {
        self.0.iter().any(|m| !m.stages().is_empty())
    }

    /// The version carrying `stage`: the newest holder if a write was interrupted between
    /// tagging and untagging; for `CURRENT` on a secret with no stages, the latest version.
    fn holder(&self, stage: &Stage) -> Option<&Meta> {
        if *stage == Stage::Current && !self.staged() {
            return self.0.last();
        }
        self.0.iter().rev().find(|m| m.stages().contains(stage))
    }

    fn get(&self, id: &str) -> Option<&Meta> {
        self.0.iter().find(|m| m.id.eq_ignore_ascii_case(id))
    }

    /// Stages per version as sealbox reports them (the implied `CURRENT` included).
    fn stages_of(&self, m: &Meta) -> Vec<Stage> {
        let mut s = m.stages();
        if !self.staged() && self.0.last().is_some_and(|l| l.id == m.id) {
            s.push(Stage::Current);
        }
        s
    }

    /// The exact sealbox name recorded on the versions, if any.
    fn recorded_name(&self) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find_map(|m| m.tags.get(TAG_NAME))
            .map(String::as_str)
    }
}

fn call<'a>(operation: &'static str, target: &'a str) -> Call<'a> {
    Call { operation, target }
}

fn is_status(err: &azure_core::Error, status: u16) -> bool {
    error::answer(err).is_some_and(|a| a.status == status)
}

/// Tags without sealbox's own (what a caller sees as the secret's tags).
fn user_tags(tags: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    tags.iter()
        .filter(|(k, _)| !k.starts_with("sealbox-"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn to_hash(tags: &BTreeMap<String, String>) -> HashMap<String, String> {
    tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Moves a value out of the SDK's string into locked memory, decoding base64 when sealbox
/// stored it so.
fn take_value(name: &SecretName, version: &str, secret: KvSecret) -> Result<Secret> {
    let base64 = secret.content_type.as_deref() == Some(CONTENT_TYPE_BASE64);
    let text = Zeroizing::new(secret.value.unwrap_or_default().into_bytes());
    if base64 {
        let decoded = STANDARD.decode(&*text).map_err(|_| {
            Error::new(
                ErrorKind::Integrity,
                format!(
                    "secret {name} version {version} is marked base64 ({CONTENT_TYPE_BASE64}) \
                     but is not valid base64; another client changed it"
                ),
            )
        })?;
        Secret::from_zeroizing(Zeroizing::new(decoded))
    } else {
        Secret::from_zeroizing(text)
    }
}

impl AzureKeyVault {
    /// Connects with `config`: its credential, vault, retries and timeouts. Makes no call.
    pub async fn connect(config: &AzureConfig) -> Result<AzureKeyVault> {
        let client = config.secret_client()?;
        AzureKeyVault::from_client(client, config)
    }

    /// The store on a client the caller built (custom credentials, tests), taking the prefix
    /// and timeouts from `config`.
    pub fn from_client(client: SecretClient, config: &AzureConfig) -> Result<AzureKeyVault> {
        config.validate()?;
        Ok(AzureKeyVault {
            client: Arc::new(client),
            prefix: config.secret_prefix()?,
            vault_url: config.vault_url.clone(),
            operation_timeout: config
                .operation_timeout
                .unwrap_or(DEFAULT_OPERATION_TIMEOUT),
        })
    }

    /// The SDK client underneath, for operations sealbox does not wrap.
    pub fn client(&self) -> &SecretClient {
        &self.client
    }

    /// The Key Vault secret name of a sealbox name (with the store prefix).
    pub fn key_vault_name(&self, name: &SecretName) -> Result<String> {
        names::encode(&names::full_name(self.prefix.as_deref(), name))
    }

    fn full(&self, name: &SecretName) -> String {
        names::full_name(self.prefix.as_deref(), name)
    }

    /// The sealbox name of a Key Vault name, if it is one of this store's.
    fn sealbox_name(&self, kv: &str, recorded: Option<&String>) -> Option<SecretName> {
        let decoded = decoded_or_recorded(kv, recorded)?;
        let rest = match &self.prefix {
            Some(p) => decoded.strip_prefix(p.as_str())?.strip_prefix('/')?,
            None => decoded.as_str(),
        };
        SecretName::new(rest).ok()
    }

    /// All versions of `kv`, or `None` when there is no live secret of that name.
    async fn versions(&self, kv: &str) -> Result<Option<Versions>> {
        let pager = self
            .client
            .list_secret_properties_versions(kv, None)
            .map_err(|e| error::from_azure(call("ListSecretVersions", kv), e))?;
        let items: Vec<SecretProperties> = match pager.try_collect().await {
            Ok(items) => items,
            Err(e) if is_status(&e, 404) => return Ok(None),
            Err(e) => return Err(error::from_azure(call("ListSecretVersions", kv), e)),
        };
        let mut metas: Vec<Meta> = items
            .iter()
            .filter_map(|p| {
                Meta::from_parts(p.id.as_deref(), p.attributes.as_ref(), p.tags.as_ref())
            })
            .collect();
        if metas.is_empty() {
            return Ok(None);
        }
        // Oldest first; equal creation seconds keep the service's order.
        metas.sort_by_key(|m| m.created);
        Ok(Some(Versions(metas)))
    }

    /// The live versions of `name`, refusing a secret that another spelling of the name owns.
    async fn live(&self, name: &SecretName, kv: &str) -> Result<Option<Versions>> {
        let Some(versions) = self.versions(kv).await? else {
            return Ok(None);
        };
        let full = self.full(name);
        match versions.recorded_name() {
            Some(recorded) if recorded != full => Err(Error::not_found(format!(
                "secret {name} does not exist; Key Vault secret {kv} holds {recorded:?}, a name \
                 that differs only in case (Key Vault names ignore case)"
            ))),
            _ => Ok(Some(versions)),
        }
    }

    async fn read_version(&self, name: &SecretName, kv: &str, id: &str) -> Result<KvSecret> {
        let options = SecretClientGetSecretOptions {
            secret_version: Some(id.to_owned()),
            ..Default::default()
        };
        match self.client.get_secret(kv, Some(options)).await {
            Ok(r) => r
                .into_model()
                .map_err(|e| error::from_azure(call("GetSecret", kv), e)),
            Err(e) if is_status(&e, 404) => Err(Error::not_found(format!(
                "secret {name} has no version {id}"
            ))),
            Err(e) if is_status(&e, 403) && is_disabled(&e) => Err(Error::not_found(format!(
                "secret {name} version {id} is disabled in Key Vault; enable it or read another \
                 version"
            ))),
            Err(e) => Err(error::from_azure(call("GetSecret", kv), e)),
        }
    }

    /// Reads a version known from a listing, refusing it when it may not be served.
    async fn serve(
        &self,
        name: &SecretName,
        kv: &str,
        versions: &Versions,
        meta: &Meta,
        how: &VersionSelector,
    ) -> Result<SecretVersion> {
        if let Some(why) = meta.unusable() {
            return Err(Error::not_found(format!(
                "secret {name}: version {} ({how}) {why}, so it is not served; put a new \
                 version or change its attributes in Key Vault",
                meta.id
            )));
        }
        let secret = self.read_version(name, kv, &meta.id).await?;
        let value = take_value(name, &meta.id, secret)?;
        Ok(SecretVersion {
            value,
            version: VersionId::new(meta.id.clone()),
            stages: versions.stages_of(meta),
            created: meta.created,
        })
    }

    /// The one-call read of `CURRENT`: the latest version, when it carries `CURRENT`.
    async fn latest_if_current(
        &self,
        name: &SecretName,
        kv: &str,
    ) -> Result<Option<SecretVersion>> {
        let secret = match self.client.get_secret(kv, None).await {
            Ok(r) => r
                .into_model()
                .map_err(|e| error::from_azure(call("GetSecret", kv), e))?,
            Err(e) if is_status(&e, 404) => {
                return Err(Error::not_found(format!("secret {name} does not exist")));
            }
            // A disabled latest version: the listing decides.
            Err(e) if is_status(&e, 403) && is_disabled(&e) => return Ok(None),
            Err(e) => return Err(error::from_azure(call("GetSecret", kv), e)),
        };
        let Some(meta) = Meta::from_parts(
            secret.id.as_deref(),
            secret.attributes.as_ref(),
            secret.tags.as_ref(),
        ) else {
            return Ok(None);
        };
        let stages = meta.stages();
        if !stages.contains(&Stage::Current) || meta.unusable().is_some() {
            return Ok(None);
        }
        if meta
            .tags
            .get(TAG_NAME)
            .is_some_and(|n| *n != self.full(name))
        {
            return Err(Error::not_found(format!(
                "secret {name} does not exist; its Key Vault secret {kv} holds a name that \
                 differs only in case"
            )));
        }
        let value = take_value(name, &meta.id, secret)?;
        Ok(Some(SecretVersion {
            value,
            version: VersionId::new(meta.id.clone()),
            stages,
            created: meta.created,
        }))
    }

    /// Writes `tags` as the whole tag set of version `id`.
    async fn set_tags(&self, kv: &str, id: &str, tags: &BTreeMap<String, String>) -> Result<()> {
        let params = UpdateSecretPropertiesParameters {
            tags: Some(to_hash(tags)),
            ..Default::default()
        };
        let options = SecretClientUpdateSecretPropertiesOptions {
            secret_version: Some(id.to_owned()),
            ..Default::default()
        };
        let body = params
            .try_into()
            .map_err(|e| error::from_azure(call("UpdateSecretProperties", kv), e))?;
        self.client
            .update_secret_properties(kv, body, Some(options))
            .await
            .map_err(|e| error::from_azure(call("UpdateSecretProperties", kv), e))?;
        Ok(())
    }

    /// Applies stage moves to the listed versions: computes each version's new stage set and
    /// rewrites the tags of those that change, versions gaining a stage first.
    async fn apply_stages(
        &self,
        kv: &str,
        versions: &Versions,
        target: BTreeMap<String, BTreeSet<Stage>>,
    ) -> Result<()> {
        let mut gaining = Vec::new();
        let mut losing = Vec::new();
        for m in &versions.0 {
            let before: BTreeSet<Stage> = m.stages().into_iter().collect();
            let after = target.get(&m.id).cloned().unwrap_or_default();
            if before == after {
                continue;
            }
            let mut tags = m.tags.clone();
            let value = names::format_stages(&after.iter().cloned().collect::<Vec<_>>());
            if value.is_empty() {
                tags.remove(TAG_STAGE);
            } else {
                tags.insert(TAG_STAGE.to_owned(), value);
            }
            if after.is_superset(&before) {
                gaining.push((m.id.clone(), tags));
            } else {
                losing.push((m.id.clone(), tags));
            }
        }
        for (id, tags) in gaining.iter().chain(losing.iter()) {
            self.set_tags(kv, id, tags).await?;
        }
        Ok(())
    }

    /// Polls until `check` holds or the operation budget runs out (Key Vault's delete,
    /// recover and purge finish asynchronously on the service).
    async fn settle<F, Fut>(&self, what: &str, mut check: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<bool>>,
    {
        let started = Instant::now();
        let mut delay = Duration::from_millis(50);
        loop {
            if check().await? {
                return Ok(());
            }
            if started.elapsed() > self.operation_timeout {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "Azure Key Vault: {what} did not finish within {:?}; retry later",
                        self.operation_timeout
                    ),
                ));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    async fn purge(&self, kv: &str) -> Result<()> {
        let started = Instant::now();
        loop {
            match self.client.purge_deleted_secret(kv, None).await {
                Ok(_) => break,
                // The delete is still being applied on the service ("ObjectIsBeingDeleted").
                Err(e) if is_status(&e, 409) && started.elapsed() < self.operation_timeout => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(error::from_azure(call("PurgeDeletedSecret", kv), e)),
            }
        }
        // The purge too completes asynchronously: the name is free once the deleted secret
        // is gone.
        self.settle("purge", || async {
            match self.client.get_deleted_secret(kv, None).await {
                Ok(_) => Ok(false),
                Err(e) if is_status(&e, 404) => Ok(true),
                Err(e) => Err(error::from_azure(call("GetDeletedSecret", kv), e)),
            }
        })
        .await
    }

    async fn deleted_meta(&self, kv: &str) -> Result<Option<(Meta, Option<SystemTime>)>> {
        match self.client.get_deleted_secret(kv, None).await {
            Ok(r) => {
                let d = r
                    .into_model()
                    .map_err(|e| error::from_azure(call("GetDeletedSecret", kv), e))?;
                let meta =
                    Meta::from_parts(d.id.as_deref(), d.attributes.as_ref(), d.tags.as_ref());
                let purge = d
                    .scheduled_purge_date
                    .or(d.deleted_date)
                    .map(SystemTime::from);
                Ok(meta.map(|m| (m, purge)))
            }
            Err(e) if is_status(&e, 404) => Ok(None),
            Err(e) => Err(error::from_azure(call("GetDeletedSecret", kv), e)),
        }
    }
}

fn decoded_or_recorded(kv: &str, recorded: Option<&String>) -> Option<String> {
    let decoded = names::decode(kv)?;
    match recorded {
        // The recorded name keeps the case Key Vault may have lost.
        Some(r) if r.eq_ignore_ascii_case(&decoded) => Some(r.clone()),
        _ => Some(decoded),
    }
}

fn is_disabled(err: &azure_core::Error) -> bool {
    error::answer(err).is_some_and(|a| {
        a.inner.as_deref() == Some("SecretDisabled")
            || a.message.as_deref().is_some_and(|m| m.contains("disabled"))
    })
}

#[async_trait]
impl SecretStore for AzureKeyVault {
    fn kind(&self) -> &'static str {
        "azure"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            write: true,
            versions: true,
            stages: true,
            compare_and_set: false,
            soft_delete: true,
            list_paging: true,
            binary: true,
            cheap_describe: false,
            max_value_len: MAX_VALUE_LEN,
        }
    }

    async fn get(&self, name: &SecretName, selector: &VersionSelector) -> Result<SecretVersion> {
        let kv = self.key_vault_name(name)?;
        if *selector == VersionSelector::Current
            && let Some(found) = self.latest_if_current(name, &kv).await?
        {
            return Ok(found);
        }
        let versions = self
            .live(name, &kv)
            .await?
            .ok_or_else(|| Error::not_found(format!("secret {name} does not exist")))?;
        let meta = match selector {
            VersionSelector::Current => versions.holder(&Stage::Current),
            VersionSelector::Stage(s) => versions.holder(s),
            VersionSelector::Version(id) => versions.get(id.as_str()),
        }
        .ok_or_else(|| Error::not_found(format!("secret {name} has no version {selector}")))?;
        self.serve(name, &kv, &versions, meta, selector).await
    }

    async fn put(
        &self,
        name: &SecretName,
        value: &Secret,
        options: &PutOptions,
    ) -> Result<VersionInfo> {
        let kv = self.key_vault_name(name)?;
        let full = self.full(name);
        if value.len() > MAX_VALUE_LEN {
            return Err(Error::invalid_input(format!(
                "secret {name}: the value is {} bytes; the Azure store takes at most \
                 {MAX_VALUE_LEN} (Key Vault's 25 KiB, less base64 for binary values)",
                value.len()
            )));
        }
        for (k, v) in &options.tags {
            if k.starts_with("sealbox-") || k.is_empty() || k.len() > 512 || v.len() > 256 {
                return Err(Error::invalid_input(format!(
                    "tag {k:?} cannot be a Key Vault tag: names are 1-512 characters and do \
                     not start with sealbox- (reserved), values at most 256"
                )));
            }
        }
        // Not `live`: a name taken by another spelling is a conflict for a write.
        let existing = self.versions(&kv).await?;
        if let Some(versions) = &existing
            && let Some(recorded) = versions.recorded_name()
            && recorded != full
        {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "secret {name}: Key Vault secret {kv} already holds {recorded:?}, which \
                     differs only in case; Key Vault names ignore case, so both cannot exist"
                ),
            ));
        }
        let current = existing.as_ref().and_then(|v| v.holder(&Stage::Current));

        if let Some(token) = &options.idempotency_token {
            let tag = names::token_tag(token);
            if let Some(versions) = &existing
                && let Some(prior) = versions
                    .0
                    .iter()
                    .find(|m| m.tags.get(TAG_TOKEN) == Some(&tag))
            {
                let stored = self.read_version(name, &kv, &prior.id).await?;
                let stored = take_value(name, &prior.id, stored)?;
                if stored.ct_eq(value) {
                    return Ok(VersionInfo {
                        version: VersionId::new(prior.id.clone()),
                        stages: versions.stages_of(prior),
                        created: prior.created,
                    });
                }
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "secret {name}: idempotency token already used for version {} with a \
                         different value",
                        prior.id
                    ),
                ));
            }
        }
        match &options.expected_current {
            Some(None) if existing.is_some() => {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("secret {name} already exists (create-only put)"),
                ));
            }
            Some(Some(expected)) if current.map(|c| c.id.as_str()) != Some(expected.as_str()) => {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "secret {name}: CURRENT is {}, not the expected {expected}; re-read and \
                         retry",
                        current.map_or("nothing", |c| c.id.as_str())
                    ),
                ));
            }
            _ => {}
        }

        // Tags: the current version's, the new ones merged in, then sealbox's.
        let mut tags = current.map(|c| user_tags(&c.tags)).unwrap_or_default();
        tags.extend(options.tags.clone());
        let description = options
            .description
            .clone()
            .or_else(|| current.and_then(|c| c.tags.get(TAG_DESCRIPTION).cloned()));
        if let Some(d) = description {
            if d.len() > 256 {
                return Err(Error::invalid_input(
                    "a description on Azure Key Vault is at most 256 characters (it is a tag)",
                ));
            }
            tags.insert(TAG_DESCRIPTION.to_owned(), d);
        }
        tags.insert(TAG_NAME.to_owned(), full.clone());
        let stage_tag = names::format_stages(&options.stages);
        if !stage_tag.is_empty() {
            tags.insert(TAG_STAGE.to_owned(), stage_tag);
        }
        if let Some(token) = &options.idempotency_token {
            tags.insert(TAG_TOKEN.to_owned(), names::token_tag(token));
        }
        if tags.len() > MAX_TAGS {
            return Err(Error::invalid_input(format!(
                "secret {name} would carry {} tags; Key Vault allows {MAX_TAGS} per version and \
                 sealbox uses up to 4",
                tags.len()
            )));
        }

        let (text, content_type) = match std::str::from_utf8(value.expose_secret()) {
            Ok(s) => (Zeroizing::new(s.to_owned()), None),
            Err(_) => (
                Zeroizing::new(STANDARD.encode(value.expose_secret())),
                Some(CONTENT_TYPE_BASE64.to_owned()),
            ),
        };
        let params = SetSecretParameters {
            value: Some(text.to_string()),
            content_type,
            tags: Some(to_hash(&tags)),
            ..Default::default()
        };
        let body = params
            .try_into()
            .map_err(|e| error::from_azure(call("SetSecret", &kv), e))?;
        let created = match self.client.set_secret(&kv, body, None).await {
            Ok(r) => r
                .into_model()
                .map_err(|e| error::from_azure(call("SetSecret", &kv), e))?,
            Err(e) if is_status(&e, 409) => {
                let err = error::from_azure(call("SetSecret", &kv), e);
                return Err(error::rekind(
                    &err,
                    ErrorKind::Conflict,
                    format!(
                        "secret {name} is soft-deleted in Key Vault; restore it, or delete it \
                         with force to reuse the name ({})",
                        err.message()
                    ),
                ));
            }
            Err(e) => return Err(error::from_azure(call("SetSecret", &kv), e)),
        };
        let meta = Meta::from_parts(
            created.id.as_deref(),
            created.attributes.as_ref(),
            created.tags.as_ref(),
        )
        .ok_or_else(|| Error::internal("Key Vault answered a set without a version id"))?;

        // Take the new version's stages off the versions that had them; CURRENT moving makes
        // the old current PREVIOUS.
        if let Some(versions) = &existing {
            let mut target: BTreeMap<String, BTreeSet<Stage>> = versions
                .0
                .iter()
                .map(|m| (m.id.clone(), m.stages().into_iter().collect()))
                .collect();
            let old_current = current.map(|c| c.id.clone());
            for stage in &options.stages {
                for set in target.values_mut() {
                    set.remove(stage);
                }
            }
            if options.stages.contains(&Stage::Current)
                && let Some(old) = old_current
            {
                for set in target.values_mut() {
                    set.remove(&Stage::Previous);
                }
                target.entry(old).or_default().insert(Stage::Previous);
            }
            self.apply_stages(&kv, versions, target).await?;
        }
        Ok(VersionInfo {
            version: VersionId::new(meta.id),
            stages: options.stages.clone(),
            created: meta.created,
        })
    }

    async fn describe(&self, name: &SecretName) -> Result<SecretMetadata> {
        let kv = self.key_vault_name(name)?;
        let Some(versions) = self.live(name, &kv).await? else {
            if let Some((meta, purge)) = self.deleted_meta(&kv).await?
                && meta
                    .tags
                    .get(TAG_NAME)
                    .is_none_or(|n| *n == self.full(name))
            {
                return Ok(SecretMetadata {
                    name: name.clone(),
                    versions: Vec::new(),
                    created: meta.created,
                    updated: meta.updated,
                    last_rotated: None,
                    description: meta.tags.get(TAG_DESCRIPTION).cloned(),
                    tags: user_tags(&meta.tags),
                    rotation_period: None,
                    deleted: Some(purge.unwrap_or_else(SystemTime::now)),
                });
            }
            return Err(Error::not_found(format!("secret {name} does not exist")));
        };
        let current = versions.holder(&Stage::Current).cloned();
        let infos = versions
            .0
            .iter()
            .map(|m| VersionInfo {
                version: VersionId::new(m.id.clone()),
                stages: versions.stages_of(m),
                created: m.created,
            })
            .collect();
        Ok(SecretMetadata {
            name: name.clone(),
            versions: infos,
            created: versions.0.first().and_then(|m| m.created),
            updated: versions.0.iter().filter_map(|m| m.updated).max(),
            last_rotated: current.as_ref().and_then(|c| c.created),
            description: current
                .as_ref()
                .and_then(|c| c.tags.get(TAG_DESCRIPTION).cloned()),
            tags: current.map(|c| user_tags(&c.tags)).unwrap_or_default(),
            rotation_period: None,
            deleted: None,
        })
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        // Key Vault lists every secret of the vault (no prefix filter on the service), so the
        // store reads all pages, keeps its own names, sorts them and pages by name.
        let mut all: BTreeMap<SecretName, ListEntry> = BTreeMap::new();
        let pager = self
            .client
            .list_secret_properties(None)
            .map_err(|e| error::from_azure(call("ListSecrets", "the vault"), e))?;
        let items: Vec<SecretProperties> = pager
            .try_collect()
            .await
            .map_err(|e| error::from_azure(call("ListSecrets", "the vault"), e))?;
        for p in items {
            let Some(kv) = p.id.as_deref().and_then(|id| {
                let rest = id.split("/secrets/").nth(1)?;
                Some(rest.split('/').next()?.to_owned())
            }) else {
                continue;
            };
            let recorded = p.tags.as_ref().and_then(|t| t.get(TAG_NAME));
            if let Some(name) = self.sealbox_name(&kv, recorded) {
                let updated = p
                    .attributes
                    .as_ref()
                    .and_then(|a| a.updated)
                    .map(SystemTime::from);
                all.insert(
                    name.clone(),
                    ListEntry {
                        name,
                        updated,
                        deleted: false,
                    },
                );
            }
        }
        if options.include_deleted {
            let pager = self
                .client
                .list_deleted_secret_properties(None)
                .map_err(|e| error::from_azure(call("ListDeletedSecrets", "the vault"), e))?;
            let items: Vec<_> = pager
                .try_collect()
                .await
                .map_err(|e| error::from_azure(call("ListDeletedSecrets", "the vault"), e))?;
            for p in items {
                let Some(kv) = p.id.as_deref().and_then(|id| {
                    let rest = id.split("/secrets/").nth(1)?;
                    Some(rest.split('/').next()?.to_owned())
                }) else {
                    continue;
                };
                let recorded = p.tags.as_ref().and_then(|t| t.get(TAG_NAME));
                if let Some(name) = self.sealbox_name(&kv, recorded) {
                    all.insert(
                        name.clone(),
                        ListEntry {
                            name,
                            updated: p.deleted_date.map(SystemTime::from),
                            deleted: true,
                        },
                    );
                }
            }
        }
        let size = options.page_size.unwrap_or(DEFAULT_PAGE).max(1);
        let after = options.page_token.as_deref();
        let mut rest = all
            .into_values()
            .filter(|e| e.name.starts_with(&options.prefix))
            .filter(|e| after.is_none_or(|a| e.name.as_str() > a));
        let entries: Vec<ListEntry> = rest.by_ref().take(size).collect();
        let next_page_token = match (rest.next(), entries.last()) {
            (Some(_), Some(last)) => Some(last.name.to_string()),
            _ => None,
        };
        Ok(ListPage {
            entries,
            next_page_token,
        })
    }

    async fn delete(&self, name: &SecretName, options: &DeleteOptions) -> Result<()> {
        let kv = self.key_vault_name(name)?;
        let live = self.live(name, &kv).await?;
        if live.is_none() {
            // Already soft-deleted: only a force delete has something left to do.
            if options.force
                && let Some((meta, _)) = self.deleted_meta(&kv).await?
                && meta
                    .tags
                    .get(TAG_NAME)
                    .is_none_or(|n| *n == self.full(name))
            {
                return self.purge(&kv).await;
            }
            return Err(Error::not_found(format!("secret {name} does not exist")));
        }
        match self.client.delete_secret(&kv, None).await {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => {
                return Err(Error::not_found(format!("secret {name} does not exist")));
            }
            Err(e) => return Err(error::from_azure(call("DeleteSecret", &kv), e)),
        }
        if options.force {
            self.purge(&kv).await?;
        }
        Ok(())
    }

    async fn restore(&self, name: &SecretName) -> Result<()> {
        let kv = self.key_vault_name(name)?;
        match self.client.recover_deleted_secret(&kv, None).await {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => {
                if self.live(name, &kv).await?.is_some() {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        format!("secret {name} is not deleted; nothing to restore"),
                    ));
                }
                return Err(Error::not_found(format!(
                    "secret {name} is not soft-deleted (missing, purged or force-deleted)"
                )));
            }
            Err(e) => return Err(error::from_azure(call("RecoverDeletedSecret", &kv), e)),
        }
        // Recovery completes asynchronously on the service: wait until the secret answers.
        self.settle("recovery", || async {
            Ok(self.versions(&kv).await?.is_some())
        })
        .await
    }

    async fn set_stage(
        &self,
        name: &SecretName,
        stage: &Stage,
        version: Option<&VersionId>,
    ) -> Result<()> {
        let kv = self.key_vault_name(name)?;
        let versions = self
            .live(name, &kv)
            .await?
            .ok_or_else(|| Error::not_found(format!("secret {name} does not exist")))?;
        let mut target: BTreeMap<String, BTreeSet<Stage>> = versions
            .0
            .iter()
            .map(|m| (m.id.clone(), versions.stages_of(m).into_iter().collect()))
            .collect();
        match version {
            None if *stage == Stage::Current => {
                return Err(Error::invalid_input(format!(
                    "secret {name}: CURRENT can be moved to another version but not removed"
                )));
            }
            None => {
                for set in target.values_mut() {
                    set.remove(stage);
                }
            }
            Some(id) => {
                let meta = versions.get(id.as_str()).ok_or_else(|| {
                    Error::not_found(format!("secret {name} has no version {id}"))
                })?;
                let old_current = versions.holder(&Stage::Current).map(|m| m.id.clone());
                for set in target.values_mut() {
                    set.remove(stage);
                }
                if *stage == Stage::Current
                    && let Some(old) = old_current
                    && old != meta.id
                {
                    for set in target.values_mut() {
                        set.remove(&Stage::Previous);
                    }
                    target.entry(old).or_default().insert(Stage::Previous);
                }
                target
                    .entry(meta.id.clone())
                    .or_default()
                    .insert(stage.clone());
            }
        }
        self.apply_stages(&kv, &versions, target).await
    }
}
