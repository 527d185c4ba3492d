//! Keys: create (RSA), get, list versions, rotate, wrapKey and unwrapKey with real RSA-OAEP-256
//! (and RSA1_5), as `keys.json` of the 7.5 specification describes them. The private key never
//! leaves the server, as on the service.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, Pkcs1v15Encrypt, RsaPrivateKey, RsaPublicKey};
use serde_json::{Map, Value, json};

use crate::{Attributes, Ctx, Fail, attributes_json, bad_parameter, check_name, parse_tags};

const ALL_OPS: &[&str] = &[
    "encrypt",
    "decrypt",
    "sign",
    "verify",
    "wrapKey",
    "unwrapKey",
];

struct Version {
    id: String,
    key: RsaPrivateKey,
    kty: String,
    ops: Vec<String>,
    tags: BTreeMap<String, String>,
    attrs: Attributes,
}

struct Key {
    name: String,
    versions: Vec<Version>,
}

/// Keys, by lower-case name.
#[derive(Default)]
pub(crate) struct Keys {
    keys: BTreeMap<String, Key>,
}

fn not_found(what: &str) -> Fail {
    (
        404,
        "KeyNotFound",
        format!(
            "A key with (name/id) {what} was not found in this key vault. If you recently \
             deleted this key you may be able to recover it using the correct recovery \
             command. For help resolving this issue, please see \
             https://go.microsoft.com/fwlink/?linkid=2125182"
        ),
        None,
    )
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Keys {
    pub(crate) fn route(&mut self, ctx: &Ctx<'_>, seg: &[&str]) -> Result<Option<Value>, Fail> {
        let m = ctx.req.method.as_str();
        let out = match (seg, m) {
            (["keys"], "GET") => self.list(ctx)?,
            (["keys", name, "create"], "POST") => self.create(ctx, name)?,
            (["keys", name, "rotate"], "POST") => self.rotate(ctx, name)?,
            (["keys", name, "versions"], "GET") => self.list_versions(ctx, name)?,
            (["keys", name] | ["keys", name, ""], "GET") => self.get(ctx, name, "")?,
            (["keys", name, version], "GET") => self.get(ctx, name, version)?,
            (["keys", name, version, op], "POST") if op.eq_ignore_ascii_case("wrapkey") => {
                self.crypt(ctx, name, version, true)?
            }
            (["keys", name, version, op], "POST") if op.eq_ignore_ascii_case("unwrapkey") => {
                self.crypt(ctx, name, version, false)?
            }
            _ => {
                return Err((
                    405,
                    "MethodNotAllowed",
                    format!(
                        "The requested resource does not support http method '{}'.",
                        ctx.req.method
                    ),
                    None,
                ));
            }
        };
        Ok(Some(out))
    }

    fn kid(base: &str, k: &Key, v: &Version) -> String {
        format!("{base}/keys/{}/{}", k.name, v.id)
    }

    fn bundle(base: &str, k: &Key, v: &Version) -> Value {
        let public = RsaPublicKey::from(&v.key);
        let mut m = Map::new();
        m.insert(
            "key".into(),
            json!({
                "kid": Self::kid(base, k, v),
                "kty": v.kty,
                "key_ops": v.ops,
                "n": b64(&public.n().to_bytes_be()),
                "e": b64(&public.e().to_bytes_be()),
            }),
        );
        m.insert("attributes".into(), attributes_json(&v.attrs, true));
        if !v.tags.is_empty() {
            m.insert("tags".into(), json!(v.tags));
        }
        Value::Object(m)
    }

    fn new_version(body: &Value, like: Option<&Version>) -> Result<Version, Fail> {
        let kty = match (body["kty"].as_str(), like) {
            (Some(k @ ("RSA" | "RSA-HSM")), _) => k.to_owned(),
            (Some(other), _) => {
                return Err(bad_parameter(format!(
                    "The local Key Vault creates RSA keys only, not {other}."
                )));
            }
            (None, Some(l)) => l.kty.clone(),
            (None, None) => return Err(bad_parameter("Property kty is required.")),
        };
        let bits = match (body["key_size"].as_u64(), like) {
            (Some(b @ (2048 | 3072 | 4096)), _) => b as usize,
            (Some(b), _) => {
                return Err(bad_parameter(format!(
                    "RSA key size {b} is not supported; use 2048, 3072 or 4096."
                )));
            }
            (None, Some(l)) => rsa::traits::PublicKeyParts::size(&l.key) * 8,
            (None, None) => 2048,
        };
        let ops: Vec<String> = match (body["key_ops"].as_array(), like) {
            (Some(a), _) => {
                let mut ops = Vec::new();
                for op in a {
                    let op = op.as_str().unwrap_or_default();
                    if !ALL_OPS.contains(&op) {
                        return Err(bad_parameter(format!("Invalid key operation {op}.")));
                    }
                    ops.push(op.to_owned());
                }
                ops
            }
            (None, Some(l)) => l.ops.clone(),
            (None, None) => ALL_OPS.iter().map(|s| (*s).to_owned()).collect(),
        };
        let mut attrs = Attributes::new();
        attrs.apply(&body["attributes"])?;
        let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits).map_err(|e| {
            (
                500,
                "InternalServerError",
                format!("key generation: {e}"),
                None,
            )
        })?;
        Ok(Version {
            id: crate::new_version_id(),
            key,
            kty,
            ops,
            tags: parse_tags(&body["tags"])?
                .or_else(|| like.map(|l| l.tags.clone()))
                .unwrap_or_default(),
            attrs,
        })
    }

    fn create(&mut self, ctx: &Ctx<'_>, name: &str) -> Result<Value, Fail> {
        check_name("Key", name)?;
        let version = Self::new_version(ctx.body, None)?;
        let key = self
            .keys
            .entry(name.to_ascii_lowercase())
            .or_insert_with(|| Key {
                name: name.to_owned(),
                versions: Vec::new(),
            });
        key.versions.push(version);
        Ok(Self::bundle(ctx.base, key, key.versions.last().unwrap()))
    }

    fn rotate(&mut self, ctx: &Ctx<'_>, name: &str) -> Result<Value, Fail> {
        let key = self
            .keys
            .get_mut(&name.to_ascii_lowercase())
            .ok_or_else(|| not_found(name))?;
        let version = Self::new_version(&Value::Null, key.versions.last())?;
        key.versions.push(version);
        Ok(Self::bundle(ctx.base, key, key.versions.last().unwrap()))
    }

    fn find(&self, name: &str, version: &str) -> Result<(&Key, &Version), Fail> {
        let key = self
            .keys
            .get(&name.to_ascii_lowercase())
            .ok_or_else(|| not_found(name))?;
        let v = if version.is_empty() {
            key.versions.last()
        } else {
            key.versions
                .iter()
                .find(|v| v.id.eq_ignore_ascii_case(version))
        }
        .ok_or_else(|| not_found(&format!("{name}/{version}")))?;
        Ok((key, v))
    }

    fn get(&self, ctx: &Ctx<'_>, name: &str, version: &str) -> Result<Value, Fail> {
        let (k, v) = self.find(name, version)?;
        Ok(Self::bundle(ctx.base, k, v))
    }

    fn list(&self, ctx: &Ctx<'_>) -> Result<Value, Fail> {
        let items = self
            .keys
            .values()
            .map(|k| {
                let v = k.versions.last().unwrap();
                json!({
                    "kid": format!("{}/keys/{}", ctx.base, k.name),
                    "attributes": attributes_json(&v.attrs, true),
                })
            })
            .collect();
        ctx.paged("keys", items)
    }

    fn list_versions(&self, ctx: &Ctx<'_>, name: &str) -> Result<Value, Fail> {
        let (k, _) = self.find(name, "")?;
        let items = k
            .versions
            .iter()
            .map(|v| json!({"kid": Self::kid(ctx.base, k, v), "attributes": attributes_json(&v.attrs, true)}))
            .collect();
        ctx.paged(&format!("keys/{}/versions", k.name), items)
    }

    fn crypt(&self, ctx: &Ctx<'_>, name: &str, version: &str, wrap: bool) -> Result<Value, Fail> {
        let (k, v) = self.find(name, version)?;
        let op = if wrap { "wrapKey" } else { "unwrapKey" };
        if !v.attrs.enabled {
            return Err((
                403,
                "Forbidden",
                format!("Operation {op} is not allowed on a disabled key."),
                Some("KeyDisabled"),
            ));
        }
        let now = crate::now() as i64;
        if v.attrs.exp.is_some_and(|e| e <= now) || v.attrs.nbf.is_some_and(|n| n > now) {
            return Err((
                403,
                "Forbidden",
                format!("Operation {op} is not allowed: the key is expired or not yet valid."),
                Some("KeyExpired"),
            ));
        }
        if !v.ops.iter().any(|o| o == op) {
            return Err((
                403,
                "Forbidden",
                format!("Operation {op} is not permitted on this key."),
                Some("KeyOperationForbidden"),
            ));
        }
        let alg = ctx.body["alg"].as_str().unwrap_or_default();
        let data = ctx.body["value"]
            .as_str()
            .and_then(|s| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok())
            .ok_or_else(|| bad_parameter("Property value must be base64url."))?;
        let out = match (alg, wrap) {
            ("RSA-OAEP-256", true) => RsaPublicKey::from(&v.key).encrypt(
                &mut rsa::rand_core::OsRng,
                Oaep::new::<rsa::sha2::Sha256>(),
                &data,
            ),
            ("RSA-OAEP-256", false) => v.key.decrypt(Oaep::new::<rsa::sha2::Sha256>(), &data),
            ("RSA1_5", true) => RsaPublicKey::from(&v.key).encrypt(
                &mut rsa::rand_core::OsRng,
                Pkcs1v15Encrypt,
                &data,
            ),
            ("RSA1_5", false) => v.key.decrypt(Pkcs1v15Encrypt, &data),
            _ => {
                return Err(bad_parameter(format!(
                    "Algorithm {alg:?} is not supported by the local Key Vault; use RSA-OAEP-256 \
                     or RSA1_5."
                )));
            }
        }
        .map_err(|_| {
            bad_parameter(if wrap {
                "The value is too long to wrap with this key.".to_owned()
            } else {
                "The value could not be unwrapped with this key version.".to_owned()
            })
        })?;
        Ok(json!({"kid": Self::kid(ctx.base, k, v), "value": b64(&out)}))
    }
}
