//! A local Azure Key Vault: the data-plane REST API over HTTPS on 127.0.0.1, for tests.
//!
//! It follows Microsoft's published specification of the Key Vault data plane
//! (`specification/keyvault/data-plane/Microsoft.KeyVault/stable/7.5/{secrets,keys}.json` in
//! `Azure/azure-rest-api-specs`, and their `examples/`): secret and key bundles with Unix-time
//! `attributes`, `id`s of the form `https://HOST/secrets/NAME/VERSION` with 32-hex version ids,
//! lists paged with `maxresults` (at most 25) and an absolute `nextLink` carrying a
//! `$skiptoken`, soft delete (`DELETE` keeps the secret under `/deletedsecrets` until it is
//! recovered or purged), opaque backup blobs, and errors as
//! `{"error": {"code", "message", "innererror": {"code"}}}` with the service's status codes
//! (400 `BadParameter`, 401 `Unauthorized`, 403 `Forbidden`/`SecretDisabled`, 404
//! `SecretNotFound`/`KeyNotFound`, 409 `Conflict`). Every response carries `x-ms-request-id`.
//! Names are case-insensitive and keep the case they were created with, as on the service.
//!
//! Authentication is the service's challenge flow: a call without a bearer token gets 401 and
//! `WWW-Authenticate: Bearer authorization="https://HOST/TENANT", resource="https://vault.azure.net"`;
//! tokens come from the server's own Entra ID token endpoint (`POST /TENANT/oauth2/v2.0/token`,
//! client-credentials grant with a client secret the test registered) and expire after the
//! lifetime the test sets. HTTPS uses a CA and a server certificate (for `127.0.0.1` and
//! `localhost`) made at start with `rcgen`; [`LocalKeyVault::ca_pem`] is what clients trust.
//!
//! Tests can inject faults (an HTTP status with an optional `Retry-After`, a delay, a dropped
//! connection) and stop and restart the server on the same port with its data. Known
//! differences from the real service are listed in `providers/azure/README.md`.

mod http;
mod keys;
mod secrets;
mod tls;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use http::{Request, Response};

/// The tenant the server's token endpoint and challenge name unless a test picks another.
pub const DEFAULT_TENANT: &str = "00000000-0000-4000-8000-5ea1b0c5ea1b";
/// The resource Key Vault tokens are for.
pub const RESOURCE: &str = "https://vault.azure.net";
/// The API versions the server accepts: 7.x up to 7.6, and the date-named versions the
/// official SDKs send by default (Rust `azure_security_keyvault_secrets` 1.0: 2025-07-01;
/// Python `azure-keyvault-secrets` 4.12: 2026-04-01).
pub const API_VERSIONS: &[&str] = &[
    "7.0",
    "7.1",
    "7.2",
    "7.3",
    "7.4",
    "7.5",
    "7.6",
    "2025-07-01",
    "2026-04-01",
];

/// A fault applied to the next request(s), in order.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this HTTP status and Key Vault's error body (429 `Throttled`, 503
    /// `ServiceUnavailable`, others `InternalServerError`), with `Retry-After` when given.
    Status {
        /// The HTTP status.
        http: u16,
        /// Seconds for the `Retry-After` header.
        retry_after: Option<u32>,
    },
    /// Wait this long, then serve the request normally.
    Delay(Duration),
    /// Read the request, then close the connection without answering.
    Drop,
}

pub(crate) struct State {
    pub(crate) secrets: secrets::Secrets,
    pub(crate) keys: keys::Keys,
}

struct Auth {
    tenant: String,
    /// client id -> client secret.
    clients: HashMap<String, String>,
    /// issued token -> (client id, expiry as Unix seconds).
    tokens: HashMap<String, (String, u64)>,
    lifetime: Duration,
    /// When false, any request passes (a test of something else).
    required: bool,
}

pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    faults: Mutex<VecDeque<Fault>>,
    auth: Mutex<Auth>,
    requests: AtomicU64,
    next_id: AtomicU64,
    /// `https://127.0.0.1:PORT`, the base of every `id` and `nextLink`.
    pub(crate) base: String,
    log: Mutex<Vec<(String, String)>>,
}

/// The running server. Stopped on drop.
pub struct LocalKeyVault {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tls: Arc<tls::Tls>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LocalKeyVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKeyVault")
            .field("addr", &self.addr)
            .field("running", &self.task.is_some())
            .finish_non_exhaustive()
    }
}

impl LocalKeyVault {
    /// Starts on a free port of 127.0.0.1 with a fresh CA and server certificate.
    pub async fn start() -> LocalKeyVault {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                secrets: secrets::Secrets::default(),
                keys: keys::Keys::default(),
            }),
            faults: Mutex::new(VecDeque::new()),
            auth: Mutex::new(Auth {
                tenant: DEFAULT_TENANT.to_owned(),
                clients: HashMap::new(),
                tokens: HashMap::new(),
                lifetime: Duration::from_secs(3600),
                required: true,
            }),
            requests: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            base: format!("https://{addr}"),
            log: Mutex::new(Vec::new()),
        });
        let tls = Arc::new(tls::Tls::generate());
        let task = Some(tokio::spawn(http::serve(
            listener,
            tls.acceptor(),
            shared.clone(),
        )));
        LocalKeyVault {
            addr,
            shared,
            tls,
            task,
        }
    }

    /// The vault URL, `https://127.0.0.1:PORT/`.
    pub fn vault_url(&self) -> String {
        format!("{}/", self.shared.base)
    }

    /// The authority host for Entra ID credentials: the same server (`https://127.0.0.1:PORT`).
    pub fn authority_host(&self) -> String {
        self.shared.base.clone()
    }

    /// The tenant the token endpoint serves.
    pub fn tenant(&self) -> String {
        self.shared.auth.lock().unwrap().tenant.clone()
    }

    /// The PEM of the CA that signed the server's certificate: what a client trusts.
    pub fn ca_pem(&self) -> String {
        self.tls.ca_pem.clone()
    }

    /// Registers a service principal: its client id and client secret.
    pub fn add_client(&self, client_id: &str, client_secret: &str) {
        self.shared
            .auth
            .lock()
            .unwrap()
            .clients
            .insert(client_id.to_owned(), client_secret.to_owned());
    }

    /// How long tokens issued from now on live (default one hour).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.shared.auth.lock().unwrap().lifetime = lifetime;
    }

    /// Accepts calls without a token (for tests of something other than authentication).
    pub fn allow_anonymous(&self) {
        self.shared.auth.lock().unwrap().required = false;
    }

    /// Stops listening and drops every open connection (like a killed process).
    pub fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Listens again on the same port with the same data and certificate.
    pub async fn restart(&mut self) {
        self.stop();
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("rebinding {}: {e}", self.addr),
            }
        };
        self.task = Some(tokio::spawn(http::serve(
            listener,
            self.tls.acceptor(),
            self.shared.clone(),
        )));
    }

    /// Queues `fault` for the next `times` requests.
    pub fn inject(&self, fault: Fault, times: usize) {
        let mut q = self.shared.faults.lock().unwrap();
        for _ in 0..times {
            q.push_back(fault.clone());
        }
    }

    /// Requests received so far (faulted and challenged ones included).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// (method, path) of every request received.
    pub fn log(&self) -> Vec<(String, String)> {
        self.shared.log.lock().unwrap().clone()
    }

    /// Names (as created) of the live secrets.
    pub fn secret_names(&self) -> Vec<String> {
        self.shared.state.lock().unwrap().secrets.names()
    }

    /// Answers one request as the server would, without HTTP (the examples test uses this).
    pub fn handle(&self, req: &Request) -> Response {
        handle(&self.shared, req)
    }
}

impl Drop for LocalKeyVault {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A 32-hex-digit id, the shape of Key Vault's version ids.
pub(crate) fn new_version_id() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A handler's failure: (HTTP status, error code, message, inner error code).
pub(crate) type Fail = (u16, &'static str, String, Option<&'static str>);

pub(crate) fn bad_parameter(msg: impl Into<String>) -> Fail {
    (400, "BadParameter", msg.into(), None)
}

impl Shared {
    fn request_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::SeqCst);
        format!("{n:08x}-5ea1-4b0c-8a2e-{:012x}", now())
    }

    fn error(&self, (status, code, message, inner): Fail) -> Response {
        let mut error = json!({"code": code, "message": message});
        if let Some(inner) = inner {
            error["innererror"] = json!({"code": inner});
        }
        Response::json(status, &json!({ "error": error }))
    }
}

/// One request, start to end: faults are applied by the connection loop before this.
pub(crate) fn handle(shared: &Shared, req: &Request) -> Response {
    shared
        .log
        .lock()
        .unwrap()
        .push((req.method.clone(), req.path.clone()));
    let mut response = route(shared, req).unwrap_or_else(|f| shared.error(f));
    response
        .headers
        .push(("x-ms-request-id".into(), shared.request_id()));
    response
}

fn route(shared: &Shared, req: &Request) -> Result<Response, Fail> {
    let seg: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    // The Entra ID token endpoint: /TENANT/oauth2/v2.0/token.
    if let [tenant, "oauth2", "v2.0", "token"] = seg.as_slice() {
        return Ok(token_endpoint(shared, req, tenant));
    }
    // OpenID discovery, which MSAL (under Python's azure-identity) reads before a token.
    if let [tenant, "v2.0", ".well-known", "openid-configuration"] = seg.as_slice() {
        let base = format!("{}/{tenant}", shared.base);
        return Ok(Response::json(
            200,
            &json!({
                "issuer": format!("{base}/v2.0"),
                "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
                "token_endpoint": format!("{base}/oauth2/v2.0/token"),
                "device_authorization_endpoint": format!("{base}/oauth2/v2.0/devicecode"),
                "response_types_supported": ["code", "id_token", "token"],
                "grant_types_supported": ["client_credentials"],
                "tenant_region_scope": null,
            }),
        ));
    }
    let collection = seg.first().copied().unwrap_or_default();
    if !matches!(
        collection,
        "secrets" | "deletedsecrets" | "keys" | "deletedkeys"
    ) {
        return Err((
            404,
            "NotFound",
            format!("No route for {} {}", req.method, req.path),
            None,
        ));
    }
    if let Err(challenged) = authenticate(shared, req) {
        return Ok(challenged);
    }
    match req.query("api-version") {
        None => {
            return Err(bad_parameter(
                "The api-version query parameter is required.",
            ));
        }
        Some(v) if !API_VERSIONS.contains(&v) => {
            return Err(bad_parameter(format!(
                "The specified version ({v}) is not recognized. Consider using the latest \
                 supported version (7.6)."
            )));
        }
        Some(_) => {}
    }
    let body: Value = if req.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&req.body)
            .map_err(|e| bad_parameter(format!("The request body is not valid JSON: {e}")))?
    };
    let mut state = shared.state.lock().unwrap();
    let ctx = Ctx {
        base: &shared.base,
        req,
        body: &body,
    };
    let out = if collection.contains("keys") {
        state.keys.route(&ctx, &seg)
    } else {
        state.secrets.route(&ctx, &seg)
    }?;
    Ok(match out {
        Some(v) => Response::json(200, &v),
        None => Response::empty(204),
    })
}

/// What a handler sees of a request.
pub(crate) struct Ctx<'a> {
    pub(crate) base: &'a str,
    pub(crate) req: &'a Request,
    pub(crate) body: &'a Value,
}

impl Ctx<'_> {
    /// `maxresults` (1 to 25, default 25) and the skip token (an offset) of a list call.
    pub(crate) fn page(&self) -> Result<(usize, usize), Fail> {
        let max = match self.req.query("maxresults") {
            None => 25,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=25).contains(&n) => n,
                _ => {
                    return Err(bad_parameter(format!(
                        "Invalid maxresults {s}: it must be between 1 and 25."
                    )));
                }
            },
        };
        let skip = match self.req.query("$skiptoken") {
            None => 0,
            Some(t) => decode_skip(t).ok_or_else(|| bad_parameter("Invalid $skiptoken."))?,
        };
        Ok((max, skip))
    }

    /// `{"value": items, "nextLink": ...}` for one page of `all`.
    pub(crate) fn paged(&self, path: &str, all: Vec<Value>) -> Result<Value, Fail> {
        let (max, skip) = self.page()?;
        let total = all.len();
        let page: Vec<Value> = all.into_iter().skip(skip).take(max).collect();
        let next = if skip + page.len() < total {
            let api = self.req.query("api-version").unwrap_or("7.5");
            Value::String(format!(
                "{}/{path}?api-version={api}&$skiptoken={}&maxresults={max}",
                self.base,
                encode_skip(skip + page.len())
            ))
        } else {
            Value::Null
        };
        Ok(json!({"value": page, "nextLink": next}))
    }
}

/// Skip tokens are opaque on the service (base64 of a marker); here base64 of an offset.
fn encode_skip(offset: usize) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{{\"offset\":{offset}}}"))
}

fn decode_skip(token: &str) -> Option<usize> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    usize::try_from(v["offset"].as_u64()?).ok()
}

/// 401 with the challenge the SDKs answer by fetching a token for the resource it names.
fn challenge(shared: &Shared, tenant: &str, message: &str) -> Response {
    let mut r = shared.error((401, "Unauthorized", message.to_owned(), None));
    r.headers.push((
        "WWW-Authenticate".into(),
        format!(
            "Bearer authorization=\"{}/{tenant}\", resource=\"{RESOURCE}\"",
            shared.base
        ),
    ));
    r
}

fn authenticate(shared: &Shared, req: &Request) -> Result<(), Response> {
    let mut auth = shared.auth.lock().unwrap();
    if !auth.required {
        return Ok(());
    }
    let tenant = auth.tenant.clone();
    let Some(token) = req
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return Err(challenge(
            shared,
            &tenant,
            "AKV10000: Request is missing a Bearer or PoP token.",
        ));
    };
    let now = now();
    auth.tokens.retain(|_, (_, exp)| *exp > now);
    if !auth.tokens.contains_key(token) {
        return Err(challenge(
            shared,
            &tenant,
            "AKV10022: Invalid audience, or the token has expired or was not issued by this \
             tenant.",
        ));
    }
    Ok(())
}

/// The Entra ID v2.0 token endpoint, client-credentials grant with a client secret. Its errors
/// are OAuth 2 error bodies, as Entra ID sends them.
fn token_endpoint(shared: &Shared, req: &Request, tenant: &str) -> Response {
    let oauth_error = |status: u16, error: &str, description: &str| {
        Response::json(
            status,
            &json!({"error": error, "error_description": description, "error_codes": [7000215]}),
        )
    };
    if req.method != "POST" {
        return oauth_error(405, "invalid_request", "AADSTS900561: POST only.");
    }
    let form = http::parse_form(&req.body);
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let mut auth = shared.auth.lock().unwrap();
    if tenant != auth.tenant {
        return oauth_error(
            400,
            "invalid_tenant",
            &format!("AADSTS90002: Tenant '{tenant}' not found."),
        );
    }
    if get("grant_type") != Some("client_credentials") {
        return oauth_error(
            400,
            "unsupported_grant_type",
            "AADSTS70003: only client_credentials is served by the local Key Vault.",
        );
    }
    let client = get("client_id").unwrap_or_default().to_owned();
    let good = auth
        .clients
        .get(&client)
        .is_some_and(|s| Some(s.as_str()) == get("client_secret"));
    if !good {
        return oauth_error(
            401,
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the \
             request is the client secret value, not the client secret ID.",
        );
    }
    let scope = get("scope").unwrap_or_default();
    if !scope
        .split(' ')
        .any(|s| s == format!("{RESOURCE}/.default"))
    {
        return oauth_error(
            400,
            "invalid_scope",
            &format!("AADSTS70011: The scope '{scope}' is not valid for the local Key Vault."),
        );
    }
    let n = shared.next_id.fetch_add(1, Ordering::SeqCst);
    let token = format!("eyJ0eXAiOiJKV1QifQ.local-{n:016x}-{}", new_version_id());
    let lifetime = auth.lifetime.as_secs();
    auth.tokens
        .insert(token.clone(), (client, now() + lifetime));
    Response::json(
        200,
        &json!({
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": token,
        }),
    )
}

/// Key Vault's attribute object from its parts (absent ones left out, as the service does).
pub(crate) fn attributes_json(a: &Attributes, recovery: bool) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("enabled".into(), json!(a.enabled));
    if let Some(n) = a.nbf {
        m.insert("nbf".into(), json!(n));
    }
    if let Some(e) = a.exp {
        m.insert("exp".into(), json!(e));
    }
    m.insert("created".into(), json!(a.created));
    m.insert("updated".into(), json!(a.updated));
    if recovery {
        m.insert("recoveryLevel".into(), json!("Recoverable+Purgeable"));
        m.insert("recoverableDays".into(), json!(90));
    }
    Value::Object(m)
}

/// The attributes every object version has.
#[derive(Clone, Debug)]
pub(crate) struct Attributes {
    pub(crate) enabled: bool,
    pub(crate) nbf: Option<i64>,
    pub(crate) exp: Option<i64>,
    pub(crate) created: u64,
    pub(crate) updated: u64,
}

impl Attributes {
    pub(crate) fn new() -> Attributes {
        let t = now();
        Attributes {
            enabled: true,
            nbf: None,
            exp: None,
            created: t,
            updated: t,
        }
    }

    /// Applies `{"enabled", "nbf", "exp"}` from a request; other fields are read-only.
    pub(crate) fn apply(&mut self, v: &Value) -> Result<(), Fail> {
        if v.is_null() {
            return Ok(());
        }
        if !v.is_object() {
            return Err(bad_parameter("attributes must be an object"));
        }
        if let Some(e) = v.get("enabled") {
            self.enabled = e
                .as_bool()
                .ok_or_else(|| bad_parameter("attributes.enabled must be a boolean"))?;
        }
        for (field, slot) in [("nbf", &mut self.nbf), ("exp", &mut self.exp)] {
            match v.get(field) {
                None => {}
                Some(Value::Null) => *slot = None,
                Some(n) => {
                    *slot = Some(n.as_i64().ok_or_else(|| {
                        bad_parameter(format!("attributes.{field} must be Unix seconds"))
                    })?);
                }
            }
        }
        self.updated = now();
        Ok(())
    }
}

/// Tags from a request: a JSON object of strings, at most 15, as the service allows.
pub(crate) fn parse_tags(v: &Value) -> Result<Option<BTreeMap<String, String>>, Fail> {
    match v {
        Value::Null => Ok(None),
        Value::Object(m) => {
            if m.len() > 15 {
                return Err(bad_parameter("A maximum of 15 tags is allowed."));
            }
            let mut out = BTreeMap::new();
            for (k, v) in m {
                let v = v
                    .as_str()
                    .ok_or_else(|| bad_parameter(format!("Tag {k} must be a string.")))?;
                if k.len() > 512 || v.len() > 256 {
                    return Err(bad_parameter(format!(
                        "Tag {k} is too long (names up to 512, values up to 256 characters)."
                    )));
                }
                out.insert(k.clone(), v.to_owned());
            }
            Ok(Some(out))
        }
        _ => Err(bad_parameter("tags must be an object of strings")),
    }
}

/// Object names: `^[0-9a-zA-Z-]+$`, 1 to 127 characters.
pub(crate) fn check_name(kind: &str, name: &str) -> Result<(), Fail> {
    let ok = (1..=127).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(bad_parameter(format!(
            "The request URI contains an invalid name: {name}. {kind} names must match \
             ^[0-9a-zA-Z-]{{1,127}}$."
        )))
    }
}
