//! Secrets: `/secrets` and `/deletedsecrets`, as `secrets.json` of the 7.5 specification
//! describes them.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use crate::{Attributes, Ctx, Fail, attributes_json, bad_parameter, check_name, now, parse_tags};

/// The service's limit on a secret value (25 KB).
pub const MAX_VALUE: usize = 25 * 1024;
/// How long a deleted secret is kept before the service purges it (the vault's retention).
const RETENTION_DAYS: u64 = 90;
const BACKUP_FORMAT: &str = "sealbox-local-key-vault-secret-backup-1";

#[derive(Clone)]
struct Version {
    id: String,
    value: String,
    content_type: Option<String>,
    tags: BTreeMap<String, String>,
    attrs: Attributes,
}

#[derive(Clone)]
struct Secret {
    /// The name as created: names are case-insensitive, ids keep the first spelling.
    name: String,
    /// Oldest first; the last is the latest.
    versions: Vec<Version>,
}

struct Deleted {
    secret: Secret,
    deleted: u64,
    purge: u64,
}

/// Live and soft-deleted secrets, keyed by lower-case name.
#[derive(Default)]
pub(crate) struct Secrets {
    live: BTreeMap<String, Secret>,
    deleted: BTreeMap<String, Deleted>,
}

fn not_found(what: &str) -> Fail {
    (
        404,
        "SecretNotFound",
        format!(
            "A secret with (name/id) {what} was not found in this key vault. If you recently \
             deleted this secret you may be able to recover it using the correct recovery \
             command. For help resolving this issue, please see \
             https://go.microsoft.com/fwlink/?linkid=2125182"
        ),
        None,
    )
}

fn deleted_not_found(name: &str) -> Fail {
    (
        404,
        "SecretNotFound",
        format!("Deleted Secret not found: {name}"),
        None,
    )
}

fn method_not_allowed(ctx: &Ctx<'_>) -> Fail {
    (
        405,
        "MethodNotAllowed",
        format!(
            "The requested resource does not support http method '{}'.",
            ctx.req.method
        ),
        None,
    )
}

impl Secrets {
    pub(crate) fn names(&self) -> Vec<String> {
        self.live.values().map(|s| s.name.clone()).collect()
    }

    pub(crate) fn route(&mut self, ctx: &Ctx<'_>, seg: &[&str]) -> Result<Option<Value>, Fail> {
        let m = ctx.req.method.as_str();
        match (seg, m) {
            (["secrets"], "GET") => self.list(ctx).map(Some),
            (["secrets", "restore"], "POST") => self.restore(ctx).map(Some),
            (["secrets", name], "PUT") => self.set(ctx, name).map(Some),
            (["secrets", name], "DELETE") => self.delete(ctx, name).map(Some),
            (["secrets", name] | ["secrets", name, ""], "GET") => self.get(ctx, name, "").map(Some),
            (["secrets", name, "versions"], "GET") => self.list_versions(ctx, name).map(Some),
            (["secrets", name, "backup"], "POST") => self.backup(name).map(Some),
            (["secrets", name, version], "GET") => self.get(ctx, name, version).map(Some),
            (["secrets", name] | ["secrets", name, ""], "PATCH") => {
                self.update(ctx, name, "").map(Some)
            }
            (["secrets", name, version], "PATCH") => self.update(ctx, name, version).map(Some),
            (["deletedsecrets"], "GET") => self.list_deleted(ctx).map(Some),
            (["deletedsecrets", name], "GET") => self.get_deleted(ctx, name).map(Some),
            (["deletedsecrets", name], "DELETE") => self.purge(name).map(|()| None),
            (["deletedsecrets", name, "recover"], "POST") => self.recover(ctx, name).map(Some),
            _ => Err(method_not_allowed(ctx)),
        }
    }

    fn bundle(base: &str, s: &Secret, v: &Version, with_value: bool) -> Value {
        let mut m = Map::new();
        if with_value {
            m.insert("value".into(), json!(v.value));
        }
        m.insert(
            "id".into(),
            json!(format!("{base}/secrets/{}/{}", s.name, v.id)),
        );
        if let Some(ct) = &v.content_type {
            m.insert("contentType".into(), json!(ct));
        }
        m.insert("attributes".into(), attributes_json(&v.attrs, true));
        if !v.tags.is_empty() {
            m.insert("tags".into(), json!(v.tags));
        }
        Value::Object(m)
    }

    fn item(base: &str, s: &Secret, v: &Version, versioned: bool) -> Value {
        let mut m = Map::new();
        let id = if versioned {
            format!("{base}/secrets/{}/{}", s.name, v.id)
        } else {
            format!("{base}/secrets/{}", s.name)
        };
        m.insert("id".into(), json!(id));
        m.insert("attributes".into(), attributes_json(&v.attrs, true));
        if !v.tags.is_empty() {
            m.insert("tags".into(), json!(v.tags));
        }
        if let Some(ct) = &v.content_type {
            m.insert("contentType".into(), json!(ct));
        }
        Value::Object(m)
    }

    fn deleted_bundle(base: &str, d: &Deleted) -> Value {
        let latest = d.secret.versions.last().expect("a secret has a version");
        let mut v = Self::bundle(base, &d.secret, latest, false);
        v["recoveryId"] = json!(format!("{base}/deletedsecrets/{}", d.secret.name));
        v["deletedDate"] = json!(d.deleted);
        v["scheduledPurgeDate"] = json!(d.purge);
        v
    }

    fn live(&self, name: &str) -> Result<&Secret, Fail> {
        self.live
            .get(&name.to_ascii_lowercase())
            .ok_or_else(|| not_found(name))
    }

    fn version<'a>(s: &'a Secret, name: &str, version: &str) -> Result<&'a Version, Fail> {
        if version.is_empty() {
            return s.versions.last().ok_or_else(|| not_found(name));
        }
        s.versions
            .iter()
            .find(|v| v.id.eq_ignore_ascii_case(version))
            .ok_or_else(|| not_found(&format!("{name}/{version}")))
    }

    fn set(&mut self, ctx: &Ctx<'_>, name: &str) -> Result<Value, Fail> {
        check_name("Secret", name)?;
        let body = ctx.body;
        let value = body["value"]
            .as_str()
            .ok_or_else(|| bad_parameter("Property value is required and must be a string."))?;
        if value.len() > MAX_VALUE {
            return Err(bad_parameter(format!(
                "The secret value is {} bytes; the maximum is {MAX_VALUE}.",
                value.len()
            )));
        }
        let key = name.to_ascii_lowercase();
        if self.deleted.contains_key(&key) {
            return Err((
                409,
                "Conflict",
                format!(
                    "Secret {name} is currently in a deleted but recoverable state, and its name \
                     cannot be reused; in this state, the secret can only be recovered or purged."
                ),
                Some("ObjectIsDeletedButRecoverable"),
            ));
        }
        let mut attrs = Attributes::new();
        attrs.apply(&body["attributes"])?;
        let content_type = match &body["contentType"] {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            _ => return Err(bad_parameter("contentType must be a string")),
        };
        let version = Version {
            id: crate::new_version_id(),
            value: value.to_owned(),
            content_type,
            tags: parse_tags(&body["tags"])?.unwrap_or_default(),
            attrs,
        };
        let secret = self.live.entry(key).or_insert_with(|| Secret {
            name: name.to_owned(),
            versions: Vec::new(),
        });
        secret.versions.push(version);
        let secret = &*secret;
        Ok(Self::bundle(
            ctx.base,
            secret,
            secret.versions.last().unwrap(),
            true,
        ))
    }

    fn get(&self, ctx: &Ctx<'_>, name: &str, version: &str) -> Result<Value, Fail> {
        let s = self.live(name)?;
        let v = Self::version(s, name, version)?;
        if !v.attrs.enabled {
            return Err((
                403,
                "Forbidden",
                "Operation get is not allowed on a disabled secret.".into(),
                Some("SecretDisabled"),
            ));
        }
        Ok(Self::bundle(ctx.base, s, v, true))
    }

    fn update(&mut self, ctx: &Ctx<'_>, name: &str, version: &str) -> Result<Value, Fail> {
        let body = ctx.body;
        let tags = parse_tags(&body["tags"])?;
        let key = name.to_ascii_lowercase();
        let s = self.live.get_mut(&key).ok_or_else(|| not_found(name))?;
        let idx = if version.is_empty() {
            s.versions.len().checked_sub(1)
        } else {
            s.versions
                .iter()
                .position(|v| v.id.eq_ignore_ascii_case(version))
        }
        .ok_or_else(|| not_found(&format!("{name}/{version}")))?;
        // Validate everything before changing anything: an update is all or nothing.
        let mut attrs = s.versions[idx].attrs.clone();
        attrs.apply(&body["attributes"])?;
        let content_type = match &body["contentType"] {
            Value::Null => None,
            Value::String(c) => Some(Some(c.clone())),
            _ => return Err(bad_parameter("contentType must be a string")),
        };
        let v = &mut s.versions[idx];
        attrs.updated = now();
        v.attrs = attrs;
        if let Some(t) = tags {
            v.tags = t;
        }
        if let Some(c) = content_type {
            v.content_type = c;
        }
        let s = &self.live[&key];
        Ok(Self::bundle(ctx.base, s, &s.versions[idx], false))
    }

    fn list(&self, ctx: &Ctx<'_>) -> Result<Value, Fail> {
        let items = self
            .live
            .values()
            .map(|s| Self::item(ctx.base, s, s.versions.last().unwrap(), false))
            .collect();
        ctx.paged("secrets", items)
    }

    fn list_versions(&self, ctx: &Ctx<'_>, name: &str) -> Result<Value, Fail> {
        let s = self.live(name)?;
        let items = s
            .versions
            .iter()
            .map(|v| Self::item(ctx.base, s, v, true))
            .collect();
        ctx.paged(&format!("secrets/{}/versions", s.name), items)
    }

    fn delete(&mut self, ctx: &Ctx<'_>, name: &str) -> Result<Value, Fail> {
        let key = name.to_ascii_lowercase();
        let secret = self.live.remove(&key).ok_or_else(|| not_found(name))?;
        let t = now();
        let d = Deleted {
            secret,
            deleted: t,
            purge: t + RETENTION_DAYS * 86_400,
        };
        let out = Self::deleted_bundle(ctx.base, &d);
        self.deleted.insert(key, d);
        Ok(out)
    }

    fn get_deleted(&self, ctx: &Ctx<'_>, name: &str) -> Result<Value, Fail> {
        let d = self
            .deleted
            .get(&name.to_ascii_lowercase())
            .ok_or_else(|| deleted_not_found(name))?;
        Ok(Self::deleted_bundle(ctx.base, d))
    }

    fn list_deleted(&self, ctx: &Ctx<'_>) -> Result<Value, Fail> {
        let items = self
            .deleted
            .values()
            .map(|d| {
                let mut v = Self::item(
                    ctx.base,
                    &d.secret,
                    d.secret.versions.last().unwrap(),
                    false,
                );
                v["recoveryId"] = json!(format!("{}/deletedsecrets/{}", ctx.base, d.secret.name));
                v["deletedDate"] = json!(d.deleted);
                v["scheduledPurgeDate"] = json!(d.purge);
                v
            })
            .collect();
        ctx.paged("deletedsecrets", items)
    }

    fn purge(&mut self, name: &str) -> Result<(), Fail> {
        self.deleted
            .remove(&name.to_ascii_lowercase())
            .map(|_| ())
            .ok_or_else(|| deleted_not_found(name))
    }

    fn recover(&mut self, ctx: &Ctx<'_>, name: &str) -> Result<Value, Fail> {
        let key = name.to_ascii_lowercase();
        let d = self
            .deleted
            .remove(&key)
            .ok_or_else(|| deleted_not_found(name))?;
        let out = Self::bundle(
            ctx.base,
            &d.secret,
            d.secret.versions.last().unwrap(),
            false,
        );
        self.live.insert(key, d.secret);
        Ok(out)
    }

    fn backup(&self, name: &str) -> Result<Value, Fail> {
        let s = self.live(name)?;
        let versions: Vec<Value> = s
            .versions
            .iter()
            .map(|v| {
                json!({
                    "id": v.id, "value": v.value, "contentType": v.content_type,
                    "tags": v.tags, "enabled": v.attrs.enabled, "nbf": v.attrs.nbf,
                    "exp": v.attrs.exp, "created": v.attrs.created, "updated": v.attrs.updated,
                })
            })
            .collect();
        let blob = json!({"format": BACKUP_FORMAT, "name": s.name, "versions": versions});
        Ok(json!({"value": URL_SAFE_NO_PAD.encode(serde_json::to_vec(&blob).unwrap())}))
    }

    fn restore(&mut self, ctx: &Ctx<'_>) -> Result<Value, Fail> {
        let bad = || bad_parameter("Backup blob is corrupt or was not made by this vault.");
        let raw = ctx.body["value"].as_str().ok_or_else(bad)?;
        let blob: Value = URL_SAFE_NO_PAD
            .decode(raw.trim_end_matches('='))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(bad)?;
        if blob["format"] != BACKUP_FORMAT {
            return Err(bad());
        }
        let name = blob["name"].as_str().ok_or_else(bad)?.to_owned();
        let mut versions = Vec::new();
        for v in blob["versions"].as_array().ok_or_else(bad)? {
            versions.push(Version {
                id: v["id"].as_str().ok_or_else(bad)?.to_owned(),
                value: v["value"].as_str().ok_or_else(bad)?.to_owned(),
                content_type: v["contentType"].as_str().map(str::to_owned),
                tags: parse_tags(&v["tags"])?.unwrap_or_default(),
                attrs: Attributes {
                    enabled: v["enabled"].as_bool().unwrap_or(true),
                    nbf: v["nbf"].as_i64(),
                    exp: v["exp"].as_i64(),
                    created: v["created"].as_u64().unwrap_or(0),
                    updated: v["updated"].as_u64().unwrap_or(0),
                },
            });
        }
        if versions.is_empty() {
            return Err(bad());
        }
        let key = name.to_ascii_lowercase();
        if self.live.contains_key(&key) || self.deleted.contains_key(&key) {
            return Err((
                409,
                "Conflict",
                format!("Secret {name} already exists."),
                None,
            ));
        }
        let secret = Secret { name, versions };
        let out = Self::bundle(ctx.base, &secret, secret.versions.last().unwrap(), false);
        self.live.insert(key, secret);
        Ok(out)
    }
}
